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

const GETENT: &str = "/usr/bin/getent";

/// Restores getent's mode however the test ends.
struct Restore(u32);

impl Drop for Restore {
    fn drop(&mut self) {
        let _ = fs::set_permissions(GETENT, fs::Permissions::from_mode(self.0));
    }
}

fn whoami(b: Backend, d: &TestDistro) -> Output {
    Run::as_user(EXTRA_USER, &[&d.name, "sh", "-c", "whoami 2>/dev/null || echo unnamed"]).backend(b).output()
}

per_backend! {
    /// The name of a user that only a second NSS module knows comes through
    /// getent, under both backends.
    fn a_user_the_files_lack_is_named_through_getent(b) {
        // The lock first: the test below moves the extrausers file aside.
        let _serial = global_state_lock();
        require_extra_user();
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
    let _serial = global_state_lock();
    require_extra_user();
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

/// The pid of a running process named `comm`, waited for while `launch`
/// runs; a launch that ends first is reported.
fn wait_for_process(comm: &str, launch: &mut std::process::Child) -> u32 {
    for _ in 0..1000 {
        if let Ok(Some(status)) = launch.try_wait() {
            let mut err = String::new();
            if let Some(mut e) = launch.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut e, &mut err);
            }
            panic!("distrorun ended ({status}) before any {comm} started: {err}");
        }
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

/// `args` as uid and gid `id`, with no supplementary group (std drops
/// root's groups when it sets the uid), and without looking anyone up: a
/// lookup (setpriv and runuser make one) would block on the FIFO.
fn as_id(id: u32, args: &[&str]) -> std::process::Command {
    use std::os::unix::process::CommandExt;
    let mut c = std::process::Command::new(args[0]);
    c.args(&args[1..])
        .gid(id)
        .uid(id)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", "/")
        .current_dir("/");
    c
}

/// The setuid helper asks NSS through getent as nobody: while getent is
/// held inside an NSS module, the caller can neither read its memory or
/// environment (which ptrace's access check guards) nor signal it.
#[test]
fn helpers_getent_runs_as_nobody_out_of_the_callers_reach() {
    let _serial = global_state_lock();
    require_extra_user();
    let (uid, _) = user_ids(EXTRA_USER);
    let d = TestDistro::standard("nss-nobody");
    let blocking = BlockingPasswd::install();
    // What getent answers through the FIFO is not this test's subject (the
    // name is, in the test above); the launch must only finish.
    let mut launch = as_id(uid, &[BIN, "--backend", "helper", &d.name, "/bin/true"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start distrorun");
    let getent = wait_for_process("getent", &mut launch);
    let uids = status_line(getent, "Uid:");
    let gids = status_line(getent, "Gid:");
    let groups = status_line(getent, "Groups:");
    let environ = as_id(uid, &["cat", &format!("/proc/{getent}/environ")]).output().expect("run cat");
    let signal = as_id(uid, &["kill", "-0", &getent.to_string()]).output().expect("run kill");
    blocking.release();
    let out = launch.wait_with_output().expect("wait for distrorun");
    drop(blocking);
    assert_eq!(uids.split_whitespace().collect::<Vec<_>>(), ["65534"; 4], "getent's uids");
    assert_eq!(gids.split_whitespace().collect::<Vec<_>>(), ["65534"; 4], "getent's gids");
    assert_eq!(groups, "", "getent keeps supplementary groups");
    assert!(!environ.status.success(), "the caller read getent's environment");
    assert!(!signal.status.success(), "the caller could signal getent");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}
