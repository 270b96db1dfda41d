//! How the caller's entry is found on the host: from `/etc/passwd` and
//! `/etc/group` when nsswitch.conf puts `files` first and they have it, and
//! otherwise through glibc's `getent`, which the setuid helper runs as
//! nobody and only when it is root's and no one else may change it.
//!
//! The user known only to libnss-extrausers (set up by ci/test-setup) is
//! the one whose name must come through `getent`.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use distrorun_testkit::*;

const EXTRA_USER: &str = "distrorun-extra";
const GETENT: &str = "/usr/bin/getent";

fn require_extra_user() {
    let passwd = fs::read_to_string("/etc/passwd").expect("read /etc/passwd");
    assert!(
        !passwd.lines().any(|l| l.starts_with(&format!("{EXTRA_USER}:"))),
        "{EXTRA_USER} must be known only to libnss-extrausers, not /etc/passwd"
    );
    assert!(
        nix::unistd::User::from_name(EXTRA_USER).ok().flatten().is_some(),
        "{EXTRA_USER} is unknown: ci/test-setup installs libnss-extrausers and adds it"
    );
}

/// Restores getent's mode however the test ends.
struct Restore(u32);

impl Drop for Restore {
    fn drop(&mut self) {
        let _ = fs::set_permissions(GETENT, fs::Permissions::from_mode(self.0));
    }
}

fn whoami(b: Backend, d: &TestDistro) -> Output {
    Run::as_user(EXTRA_USER, &[&d.name, "sh", "-c", "id -un 2>/dev/null || echo unnamed"]).backend(b).output()
}

per_backend! {
    /// The name of a user that only a second NSS module knows comes through
    /// getent, under both backends.
    fn a_user_the_files_lack_is_named_through_getent(b) {
        require_extra_user();
        let _serial = global_state_lock();
        let d = TestDistro::standard("nss-getent");
        let out = whoami(b, &d);
        out.assert_ok();
        assert_eq!(out.stdout_str(), format!("{EXTRA_USER}\n"), "{}", out.report());
    }
}

/// A getent that someone besides root could have replaced is never run by
/// the setuid helper: the launch still works, without a name.
#[test]
fn helper_runs_no_getent_that_others_can_write() {
    require_extra_user();
    let _serial = global_state_lock();
    let d = TestDistro::standard("nss-getent-writable");
    let mode = fs::metadata(GETENT).expect("getent is installed").permissions().mode() & 0o7777;
    let restore = Restore(mode);
    fs::set_permissions(GETENT, fs::Permissions::from_mode(mode | 0o020)).expect("chmod g+w getent");
    let out = whoami(Backend::Helper, &d);
    drop(restore);
    out.assert_ok();
    assert_eq!(out.stdout_str(), "unnamed\n", "{}", out.report());
    assert!(Path::new(GETENT).exists());
}

const EXTRAUSERS_PASSWD: &str = "/var/lib/extrausers/passwd";

/// Puts a FIFO where libnss-extrausers reads its passwd file, so that a
/// lookup blocks there until the test writes the file's text into it; the
/// real file is back however the test ends.
struct BlockingPasswd {
    saved: std::path::PathBuf,
    text: Vec<u8>,
}

impl BlockingPasswd {
    fn install() -> BlockingPasswd {
        let saved = Path::new(EXTRAUSERS_PASSWD).with_extension("distrorun-test-saved");
        let text = fs::read(EXTRAUSERS_PASSWD).expect("read the extrausers passwd file");
        fs::rename(EXTRAUSERS_PASSWD, &saved).expect("move the extrausers passwd file aside");
        let guard = BlockingPasswd { saved, text };
        nix::unistd::mkfifo(EXTRAUSERS_PASSWD, nix::sys::stat::Mode::from_bits_truncate(0o644))
            .expect("mkfifo in place of the extrausers passwd file");
        guard
    }

    /// Lets the blocked reader go, with the real file's text.
    fn release(&self) {
        fs::write(EXTRAUSERS_PASSWD, &self.text).expect("write into the FIFO");
    }
}

impl Drop for BlockingPasswd {
    fn drop(&mut self) {
        let _ = fs::remove_file(EXTRAUSERS_PASSWD);
        let _ = fs::rename(&self.saved, EXTRAUSERS_PASSWD);
    }
}

/// The pid of a running process named `comm`, waited for.
fn wait_for_process(comm: &str) -> u32 {
    for _ in 0..1000 {
        for entry in fs::read_dir("/proc").expect("read /proc").flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
            if fs::read_to_string(entry.path().join("comm")).is_ok_and(|c| c.trim() == comm) {
                return pid;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("no process named {comm} appeared");
}

/// The ids line (`Uid:`, `Gid:`, `Groups:`) of a process's status.
fn status_line(pid: u32, key: &str) -> String {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).expect("read the status");
    status.lines().find(|l| l.starts_with(key)).map(|l| l[key.len()..].trim().to_owned()).unwrap_or_default()
}

/// Runs `args` as uid and gid `id`, with no supplementary group, without
/// looking anyone up (a lookup would block on the FIFO).
fn as_id(id: u32, args: &[&str]) -> std::process::Output {
    let ids = [format!("--reuid={id}"), format!("--regid={id}")];
    std::process::Command::new("setpriv")
        .args(&ids)
        .args(["--clear-groups", "--"])
        .args(args)
        .output()
        .expect("run setpriv")
}

/// The setuid helper asks NSS through getent as nobody: while getent is
/// held inside an NSS module, the caller can neither read its memory or
/// environment (which ptrace's access check guards) nor signal it.
#[test]
fn helpers_getent_runs_as_nobody_out_of_the_callers_reach() {
    require_extra_user();
    let _serial = global_state_lock();
    let (uid, _) = user_ids(EXTRA_USER);
    let d = TestDistro::standard("nss-nobody");
    let blocking = BlockingPasswd::install();
    let launch = std::process::Command::new("setpriv")
        .args([format!("--reuid={uid}"), format!("--regid={uid}")])
        .args(["--clear-groups", "--", BIN, "--backend", "helper", &d.name, "id", "-un"])
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .current_dir("/")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start distrorun");
    let getent = wait_for_process("getent");
    let uids = status_line(getent, "Uid:");
    let gids = status_line(getent, "Gid:");
    let groups = status_line(getent, "Groups:");
    let environ = as_id(uid, &["cat", &format!("/proc/{getent}/environ")]);
    let signal = as_id(uid, &["kill", "-0", &getent.to_string()]);
    blocking.release();
    let out = launch.wait_with_output().expect("wait for distrorun");
    drop(blocking);
    assert_eq!(uids.split_whitespace().collect::<Vec<_>>(), ["65534"; 4], "getent's uids");
    assert_eq!(gids.split_whitespace().collect::<Vec<_>>(), ["65534"; 4], "getent's gids");
    assert_eq!(groups, "", "getent keeps supplementary groups");
    assert!(!environ.status.success(), "the caller read getent's environment");
    assert!(!signal.status.success(), "the caller could signal getent");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), format!("{EXTRA_USER}\n"));
}
