//! Attacks on the setuid helper, made as the unprivileged test user against
//! the real guest tree. Every security property of the helper has a test
//! here that tries to break it; each asserts that the attack gained nothing
//! and, where a refusal is expected, that it is one clean `distrorun: ...`
//! sentence with exit status 125.

mod common;

use std::ffi::OsStr;
use std::fs::{self, File, Permissions};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{chown, symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use common::*;

/// Root-owned, 0755, on a filesystem without nosuid: scratch directories
/// that the test user may traverse but not change go here.
const TEST_ROOT: &str = "/var/lib/distrorun-test";

/// Longest any single run may take before the test calls it a hang.
const LIMIT: Duration = Duration::from_secs(60);

/// Tests that run as OTHER_USER scan the process table for that user's
/// processes, so they must not overlap with each other.
static OTHER_USER_LOCK: Mutex<()> = Mutex::new(());

fn other_user_lock() -> std::sync::MutexGuard<'static, ()> {
    // A test that failed while holding the lock must not fail the rest.
    OTHER_USER_LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

// ---------------------------------------------------------------------------
// Scaffolding
// ---------------------------------------------------------------------------

/// A directory removed on drop, unless something is still mounted below it
/// (then it is left for `ci/test-setup` to report).
struct Scratch {
    path: PathBuf,
}

impl Scratch {
    fn new(parent: &str, tag: &str, mode: u32) -> Scratch {
        let path = Path::new(parent).join(format!("attack-{}", unique(tag)));
        fs::create_dir(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        fs::set_permissions(&path, Permissions::from_mode(mode)).unwrap();
        Scratch { path }
    }

    /// A directory owned by the test user, in /tmp: a place the attacker controls.
    fn for_user(tag: &str) -> Scratch {
        let s = Scratch::new("/tmp", tag, 0o755);
        let (uid, gid) = user_ids(USER);
        chown(&s.path, Some(uid), Some(gid)).unwrap();
        s
    }

    fn file(&self, name: &str, bytes: &[u8], mode: u32) -> PathBuf {
        let p = self.path.join(name);
        fs::write(&p, bytes).unwrap();
        fs::set_permissions(&p, Permissions::from_mode(mode)).unwrap();
        p
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if host_mounts_under(&self.path).is_empty() {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

/// Paths removed on drop: files, symlinks, FIFOs and (empty) directories
/// that a test placed next to shared state.
struct Remove(Vec<PathBuf>);

impl Drop for Remove {
    fn drop(&mut self) {
        for p in &self.0 {
            if fs::symlink_metadata(p).is_ok_and(|m| m.is_dir()) {
                let _ = fs::remove_dir_all(p);
            } else {
                let _ = fs::remove_file(p);
            }
        }
    }
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("test paths are UTF-8")
}

/// Runs `cmd` with captured output, failing the test (instead of hanging
/// it) when the run takes longer than `limit`.
fn timed(mut cmd: Command, limit: Duration) -> Output {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let shown = format!("{cmd:?}");
    let child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start {shown}: {e}"));
    finish(child, None, limit, &shown)
}

/// The environment the tests hand the helper on its env fd: ordinary
/// variables plus one with a tab, a control byte and a non-UTF-8 byte.
fn env_bytes() -> Vec<u8> {
    let mut v = Vec::new();
    for entry in [
        &b"HOME=/home/distrorun-test"[..],
        b"PATH=/usr/local/bin:/usr/bin:/bin",
        b"LANG=C.UTF-8",
        b"ODD=tab\there \x01 \xff end",
    ] {
        v.extend_from_slice(entry);
        v.push(0);
    }
    v
}

/// A regular, root-owned file holding `bytes`, opened for reading, to be
/// given to the helper as its env fd.
struct EnvFile {
    _dir: Scratch,
    path: PathBuf,
}

impl EnvFile {
    fn new(bytes: &[u8]) -> EnvFile {
        let dir = Scratch::new(TEST_ROOT, "envfile", 0o755);
        let path = dir.file("env", bytes, 0o644);
        EnvFile { _dir: dir, path }
    }

    fn open(&self) -> File {
        File::open(&self.path).unwrap()
    }
}

/// Moves the env file from stdin to fd 3 before starting the helper: the
/// helper refuses to take its environment from a standard stream.
const ENV_ON_3: &str = "exec 3<&0 0</dev/null; exec \"$@\"";

/// Runs `run` with `env`, a regular file, on its stdin; `run` moves it to
/// fd 3 (see [`ENV_ON_3`]) where the helper is told to find it.
fn with_env_on_stdin(run: Run, env: &[u8]) -> Output {
    let file = EnvFile::new(env);
    let mut cmd = run.command();
    cmd.stdin(file.open());
    timed(cmd, LIMIT)
}

/// `distrorun-helper --env-fd 3 ARGS...` as `user` (None: root), with
/// fd 3 taken from stdin.
fn helper_as(user: Option<&str>, args: &[&str]) -> Run {
    let mut all = vec!["-c", ENV_ON_3, "bash", HELPER, "--env-fd", "3"];
    all.extend_from_slice(args);
    match user {
        Some(u) => Run::as_user(u, &all),
        None => Run::root(&all),
    }
    .bin("/bin/bash")
}

/// `distrorun-helper --env-fd 3 ARGS...` as the test user.
fn helper_args(args: &[&str]) -> Run {
    helper_as(Some(USER), args)
}

/// `bash -c SCRIPT bash ARGS...` as the test user: for set-up that must be
/// done by the attacker itself (descriptors, variables, symlinks). bash,
/// not dash, because dash cannot name descriptors above 9.
fn user_sh(script: &str, args: &[&str]) -> Run {
    let mut all = vec!["-c", script, "bash"];
    all.extend_from_slice(args);
    Run::user(&all).bin("/bin/bash")
}

fn assert_no_panic(out: &Output) {
    let err = out.stderr_str();
    for bad in ["panicked", "RUST_BACKTRACE", "stack backtrace"] {
        assert!(!err.contains(bad), "the helper panicked instead of refusing cleanly:\n{err}");
    }
    if let Some(sig) = std::os::unix::process::ExitStatusExt::signal(&out.status) {
        panic!("killed by signal {sig}; stderr:\n{err}");
    }
}

/// A refusal: exit status 125, nothing on stdout, and a first line
/// `distrorun: SENTENCE` that contains every needle; any further lines are
/// hints, never a panic or a backtrace.
fn assert_refused(out: &Output, needles: &[&str]) {
    assert_no_panic(out);
    out.assert_code(125);
    let err = out.stderr_str();
    let first = err.lines().next().unwrap_or("");
    assert!(
        first.starts_with("distrorun: ") && first.len() > "distrorun: ".len(),
        "the refusal is not a `distrorun: ...` sentence:\n{err}"
    );
    for n in needles {
        assert!(first.contains(n), "the refusal does not name {n:?}:\n{err}");
    }
    assert!(err.lines().all(|l| !l.trim().is_empty()), "blank lines in the refusal:\n{err}");
    assert!(out.stdout.is_empty(), "output on stdout along with a refusal: {:?}", out.stdout_str());
}

fn assert_no_host_mounts(path: &Path) {
    let mounts = host_mounts_under(path);
    assert!(
        mounts.is_empty(),
        "mounts leaked into the host namespace under {}:\n{}",
        path.display(),
        mounts.join("\n")
    );
}

/// Compiles tests/support/NAME.c with gcc into `dir`.
fn compile(dir: &Path, name: &str, extra: &[&str]) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support").join(format!("{name}.c"));
    let out = dir.join(name);
    let status = Command::new("gcc")
        .args(["-O2", "-Wall", "-Wextra", "-Werror"])
        .args(extra)
        .arg("-o")
        .arg(&out)
        .arg(&src)
        .status()
        .expect("gcc is needed for the attack programs (ci/test-setup installs it)");
    assert!(status.success(), "gcc failed on {}", src.display());
    fs::set_permissions(&out, Permissions::from_mode(0o755)).unwrap();
    out
}

/// Both ways the test user reaches the helper: directly, and through
/// `distrorun --backend helper`. Each runs `/bin/true` in NAME.
fn through_helper(name: &str) -> [(&'static str, Output); 2] {
    let direct = with_env_on_stdin(helper_args(&[name, "/bin/true"]), &env_bytes());
    let mut cmd = Run::user(&[name, "/bin/true"]).backend(Backend::Helper).command();
    cmd.stdin(Stdio::null());
    let front = timed(cmd, LIMIT);
    [("distrorun-helper", direct), ("distrorun --backend helper", front)]
}

fn assert_both_refused(name: &str, needles: &[&str]) {
    for (how, out) in through_helper(name) {
        eprintln!("checking {how}");
        assert_refused(&out, needles);
    }
}

/// The `Uid:` (or `Gid:`) numbers of a process, from its status file.
fn status_ids(status: &str, key: &str) -> Vec<u32> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .unwrap_or_else(|| panic!("no {key} in:\n{status}"))
        .split_whitespace()
        .map(|n| n.parse().unwrap())
        .collect()
}

fn status_field<'a>(status: &'a str, key: &str) -> &'a str {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .unwrap_or_else(|| panic!("no {key} in:\n{status}"))
        .trim()
}

/// Processes whose real uid is `uid`, as "PID NAME Uid-line"; only those
/// holding root in their effective, saved or filesystem uid when
/// `privileged` is set.
fn processes_of(uid: u32, privileged: bool) -> Vec<String> {
    let mut found = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let pid = entry.file_name();
        if !pid.as_bytes().iter().all(u8::is_ascii_digit) {
            continue;
        }
        // A process may exit between readdir and read: skip it.
        let Ok(status) = fs::read_to_string(entry.path().join("status")) else { continue };
        let Some(line) = status.lines().find(|l| l.starts_with("Uid:")) else { continue };
        let ids = status_ids(&status, "Uid:");
        if ids[0] == uid && (!privileged || ids[1..].contains(&0)) {
            found.push(format!("{} {} {line}", pid.to_string_lossy(), status_field(&status, "Name:")));
        }
    }
    found
}

/// Waits up to `grace` for the list to become empty, then returns what is left.
fn leftover(grace: Duration, f: impl Fn() -> Vec<String>) -> Vec<String> {
    let start = Instant::now();
    loop {
        let left = f();
        if left.is_empty() || start.elapsed() > grace {
            return left;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// A fresh copy of the guest with a setuid-root copy of `id` at
/// /usr/local/bin/suid-id. A copy, never a chmod, because the guest copy
/// shares its files' inodes with the shared guest.
fn guest_with_setuid_id(tag: &str) -> GuestCopy {
    let copy = GuestCopy::new(tag);
    let bin = copy.path.join("usr/local/bin");
    fs::create_dir_all(&bin).unwrap();
    let target = bin.join("suid-id");
    fs::copy(copy.path.join("usr/bin/id"), &target).unwrap();
    chown(&target, Some(0), Some(0)).unwrap();
    fs::set_permissions(&target, Permissions::from_mode(0o4755)).unwrap();
    copy
}

// ---------------------------------------------------------------------------
// Tests run once per backend: what the engine must refuse whoever calls it
// ---------------------------------------------------------------------------

/// Mounts a payload directory on DST in a guest copy prepared by `prepare`;
/// the target path holds a symlink, so the run must be refused, and the
/// payload must never appear over the guest's (or the host's) /etc.
fn symlinked_target_is_refused(b: Backend, tag: &str, dst: &str, prepare: impl FnOnce(&Path)) {
    require_setup();
    let copy = GuestCopy::new(tag);
    prepare(&copy.path);
    let payload = Scratch::new(TEST_ROOT, tag, 0o755);
    let marker = format!("payload-{}", unique(tag));
    payload.file(&marker, b"payload", 0o644);
    let distro = TestDistro::with_config(
        tag,
        &format!(
            r#"(dir: "{}", mapped_volumes: ["/dev", (src: "{}", dst: "{dst}")])"#,
            copy.path.display(),
            payload.path.display()
        ),
    );
    let etc_before = host_mounts_under(Path::new("/etc"));
    let probe = format!("test -e /etc/{marker} && echo MOUNTED-OVER-ETC; true");
    let out = Run::user(&[&distro.name, "/bin/sh", "-c", &probe]).backend(b).output();
    assert!(
        !out.stdout_str().contains("MOUNTED-OVER-ETC"),
        "the symlink was followed: the payload covers /etc inside; stderr:\n{}",
        out.stderr_str()
    );
    assert!(!Path::new("/etc").join(&marker).exists(), "the payload was mounted over the host's /etc");
    assert_eq!(host_mounts_under(Path::new("/etc")), etc_before, "host /etc mounts changed");
    assert_no_host_mounts(&copy.path);
    assert_refused(&out, &[dst]);
}

/// The user's own symlink in the host /tmp, which the config maps in.
fn user_planted_symlink_case(b: Backend) {
    require_setup();
    let copy = GuestCopy::new("planted");
    let payload = Scratch::new(TEST_ROOT, "planted", 0o755);
    let marker = format!("payload-{}", unique("planted"));
    payload.file(&marker, b"payload", 0o644);
    let link = PathBuf::from(format!("/tmp/attack-{}", unique("planted-link")));
    let _cleanup = Remove(vec![link.clone()]);
    user_sh("ln -s /etc \"$1\"", &[path_str(&link)]).output().assert_ok();
    let distro = TestDistro::with_config(
        "planted",
        &format!(
            r#"(dir: "{}", mapped_volumes: ["/dev", "/tmp", (src: "{}", dst: "{}")])"#,
            copy.path.display(),
            payload.path.display(),
            link.display()
        ),
    );
    let probe = format!("test -e /etc/{marker} && echo MOUNTED-OVER-ETC; true");
    let out = Run::user(&[&distro.name, "/bin/sh", "-c", &probe]).backend(b).output();
    assert!(!out.stdout_str().contains("MOUNTED-OVER-ETC"), "the user's symlink was followed");
    assert_no_host_mounts(&copy.path);
    assert_refused(&out, &[path_str(&link)]);
}

/// A NAME outside the grammar, with a trap config placed where a path
/// built from it would lead, so that a missing check shows as a run.
fn bad_names_are_refused(b: Backend) {
    require_setup();
    let t = unique("trap");
    let conf = format!(r#"(dir: "{GUEST}", mapped_volumes: {STANDARD_VOLUMES})"#);
    let parent_trap = Path::new(CONF_DIR).parent().unwrap().join(format!("{t}.conf"));
    let hidden_trap = Path::new(CONF_DIR).join(format!(".{t}.conf"));
    let long = format!("{t}{}", "x".repeat(65 - t.len()));
    let long_trap = Path::new(CONF_DIR).join(format!("{long}.conf"));
    let sub_dir = Path::new(CONF_DIR).join(&t);
    let _cleanup = Remove(vec![parent_trap.clone(), hidden_trap.clone(), long_trap.clone(), sub_dir.clone()]);
    for p in [&parent_trap, &hidden_trap, &long_trap] {
        fs::write(p, &conf).unwrap();
    }
    fs::create_dir(&sub_dir).unwrap();
    fs::write(sub_dir.join("x.conf"), &conf).unwrap();

    let names = [
        format!("../{t}"),
        format!(".{t}"),
        long,
        format!("{t}/x"),
        format!("{t}/../{t}"),
        String::new(),
        ".".into(),
        "..".into(),
        "a b".into(),
        "\u{e9}t\u{e9}".into(),
        "x\ny".into(),
        "-x".into(),
    ];
    for name in &names {
        eprintln!("name {name:?}");
        let out = Run::user(&["--", name.as_str(), "/bin/true"]).backend(b).output();
        assert_refused(&out, &[]);
    }
    let out =
        Run::user(&["--"]).backend(b).arg_os(OsStr::from_bytes(b"\xff\xfe")).arg_os("/bin/true").output();
    assert_refused(&out, &[]);
}

/// users/groups decide alike under every backend.
fn access_lists_are_enforced(b: Backend) {
    require_setup();
    let volumes = format!(r#"dir: "{GUEST}", mapped_volumes: {STANDARD_VOLUMES}"#);

    let d = TestDistro::with_config("acl-users", &format!(r#"({volumes}, users: ["nobody-else"])"#));
    let out = Run::user(&[&d.name, "/bin/true"]).backend(b).output();
    assert_refused(&out, &[USER, &d.name]);

    let d = TestDistro::with_config("acl-group", &format!(r#"({volumes}, groups: ["{GROUP}"])"#));
    Run::user(&[&d.name, "/bin/true"]).backend(b).output().assert_ok();

    let d = TestDistro::with_config("acl-me", &format!(r#"({volumes}, users: ["{USER}"])"#));
    Run::user(&[&d.name, "/bin/true"]).backend(b).output().assert_ok();

    let d = TestDistro::with_config("acl-nogroup", &format!(r#"({volumes}, users: [], groups: ["root"])"#));
    let out = Run::user(&[&d.name, "/bin/true"]).backend(b).output();
    assert_refused(&out, &[USER, &d.name]);

    // The same group list that admits the test user refuses another user.
    let _lock = other_user_lock();
    let d = TestDistro::with_config("acl-other", &format!(r#"({volumes}, groups: ["{GROUP}"])"#));
    let out = Run::as_user(OTHER_USER, &[&d.name, "/bin/true"]).backend(b).output();
    assert_refused(&out, &[OTHER_USER, &d.name]);
}

/// A setuid-root program inside the distro runs with the caller's euid.
fn setuid_programs_gain_nothing(b: Backend) {
    require_setup();
    let copy = guest_with_setuid_id("suid");
    let d = TestDistro::with_dir("suid", &copy.path, "");
    let (uid, _) = user_ids(USER);
    let out = Run::user(&[&d.name, "/usr/local/bin/suid-id", "-u"]).backend(b).output();
    out.assert_ok();
    assert_eq!(out.stdout_str().trim(), uid.to_string(), "a setuid-root program gained its owner's uid");
    assert_no_host_mounts(&copy.path);
}

/// Mounts made for the run stay in the run's namespace: none is shared.
fn no_mount_inside_is_shared(b: Backend) {
    require_setup();
    let d = TestDistro::standard("noshared");
    let out = Run::user(&[&d.name, "/bin/cat", "/proc/self/mountinfo"]).backend(b).output();
    out.assert_ok();
    let text = out.stdout_str();
    let shared: Vec<&str> = text.lines().filter(|l| l.contains(" shared:")).collect();
    assert!(shared.is_empty(), "shared mounts inside the run:\n{}", shared.join("\n"));
    assert_no_host_mounts(Path::new(GUEST));
}

/// `--extra-volume` and `-d` are resolved with the caller's rights: a
/// directory below one the caller cannot search stays out of reach.
fn caller_paths_are_resolved_as_the_caller(b: Backend) {
    require_setup();
    let secret = Scratch::new(TEST_ROOT, "secret", 0o700);
    let open = secret.path.join("open");
    fs::create_dir(&open).unwrap();
    fs::set_permissions(&open, Permissions::from_mode(0o755)).unwrap();
    fs::write(open.join("secret"), "TOPSECRET-CONTENT").unwrap();
    fs::set_permissions(open.join("secret"), Permissions::from_mode(0o644)).unwrap();
    let copy = GuestCopy::new("reach");
    // The mount point exists inside, so only the caller's rights can refuse.
    fs::create_dir_all(copy.path.join(open.strip_prefix("/").unwrap())).unwrap();
    let d = TestDistro::with_dir("reach", &copy.path, "");
    let inside_secret = open.join("secret");

    let out = Run::user(&["--extra-volume", path_str(&open), &d.name, "/bin/cat", path_str(&inside_secret)])
        .backend(b)
        .output();
    assert!(!out.stdout_str().contains("TOPSECRET"), "a directory the caller cannot reach was bound in");
    assert_refused(&out, &[path_str(&open)]);

    // The same through a symlink the user made.
    let link = PathBuf::from(format!("/tmp/attack-{}", unique("reach-link")));
    let _cleanup = Remove(vec![link.clone()]);
    user_sh("ln -s \"$1\" \"$2\"", &[path_str(&open), path_str(&link)]).output().assert_ok();
    let out = Run::user(&["--extra-volume", path_str(&link), &d.name, "/bin/cat", path_str(&inside_secret)])
        .backend(b)
        .output();
    assert!(
        !out.stdout_str().contains("TOPSECRET"),
        "a symlink let the caller bind in an unreachable directory"
    );
    assert_eq!(out.code, Some(125), "stderr:\n{}", out.stderr_str());
    assert_no_panic(&out);

    // The guest's /root is 0700 root: the caller may not start there.
    let out = Run::user(&["-d", "/root", &d.name, "/bin/pwd"]).backend(b).output();
    assert!(
        !out.stdout_str().contains("/root"),
        "the command started in a directory the caller cannot enter"
    );
    assert_refused(&out, &["/root"]);
    assert_no_host_mounts(&copy.path);
}

per_backend! {
    fn absolute_symlink_as_mount_target_is_refused(b) {
        symlinked_target_is_refused(b, "sym-abs", "/tmp/.X11-unix", |root| {
            symlink("/etc", root.join("tmp/.X11-unix")).unwrap();
        });
    }

    fn relative_symlink_as_mount_target_is_refused(b) {
        symlinked_target_is_refused(b, "sym-rel", "/tmp/.X11-unix", |root| {
            symlink("../etc", root.join("tmp/.X11-unix")).unwrap();
        });
    }

    fn symlink_in_an_intermediate_component_of_a_target_is_refused(b) {
        symlinked_target_is_refused(b, "sym-mid", "/opt/link/sub", |root| {
            // Following the link would succeed: /etc/sub exists in the copy.
            fs::create_dir_all(root.join("etc/sub")).unwrap();
            fs::create_dir_all(root.join("opt")).unwrap();
            symlink("/etc", root.join("opt/link")).unwrap();
        });
    }

    fn symlink_planted_by_the_user_under_a_mapped_tmp_is_refused(b) {
        user_planted_symlink_case(b);
    }

    fn names_outside_the_grammar_are_refused(b) {
        bad_names_are_refused(b);
    }

    fn users_and_groups_lists_decide_alike_on_every_backend(b) {
        access_lists_are_enforced(b);
    }

    fn setuid_root_program_inside_keeps_the_callers_uid(b) {
        setuid_programs_gain_nothing(b);
    }

    fn mounts_inside_are_never_shared_with_the_host(b) {
        no_mount_inside_is_shared(b);
    }

    fn extra_volume_and_directory_are_resolved_with_the_callers_rights(b) {
        caller_paths_are_resolved_as_the_caller(b);
    }
}

// ---------------------------------------------------------------------------
// Symlink race on a mount target
// ---------------------------------------------------------------------------

/// The user flips a mount target under the mapped /tmp between a directory
/// and a symlink to /etc while the helper sets up mounts. Whatever the
/// timing, the payload never lands on /etc: each run either mounts on the
/// real directory or refuses.
#[test]
fn racing_a_mount_target_between_directory_and_symlink_gains_nothing() {
    require_setup();
    let copy = GuestCopy::new("race");
    let payload = Scratch::new(TEST_ROOT, "race", 0o755);
    let marker = format!("payload-{}", unique("race"));
    payload.file(&marker, b"payload", 0o644);
    let target = PathBuf::from(format!("/tmp/attack-{}", unique("race-target")));
    let _cleanup = Remove(vec![target.clone()]);
    let distro = TestDistro::with_config(
        "race",
        &format!(
            r#"(dir: "{}", mapped_volumes: ["/dev", "/tmp", (src: "{}", dst: "{}")])"#,
            copy.path.display(),
            payload.path.display(),
            target.display()
        ),
    );
    let mut flip = user_sh(
        "while :; do rm -rf \"$1\"; mkdir \"$1\"; rm -rf \"$1\"; ln -s /etc \"$1\"; done",
        &[path_str(&target)],
    )
    .command();
    flip.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    let mut flipper = flip.spawn().unwrap();
    let probe = format!("test -e /etc/{marker} && echo MOUNTED-OVER-ETC; true");
    let mut outcomes = (0, 0);
    let mut failure = None;
    for _ in 0..80 {
        let mut cmd = Run::user(&[&distro.name, "/bin/sh", "-c", &probe]).backend(Backend::Helper).command();
        cmd.stdin(Stdio::null());
        let out = timed(cmd, LIMIT);
        if out.stdout_str().contains("MOUNTED-OVER-ETC") {
            failure = Some("the payload was mounted over /etc through the symlink".to_string());
            break;
        }
        match out.code {
            Some(0) => outcomes.0 += 1,
            Some(125) => {
                outcomes.1 += 1;
                let err = out.stderr_str();
                if !err.starts_with("distrorun: ") || err.contains("panicked") {
                    failure = Some(format!("unclean refusal:\n{err}"));
                    break;
                }
            }
            other => {
                failure = Some(format!("unexpected exit {other:?}; stderr:\n{}", out.stderr_str()));
                break;
            }
        }
    }
    let _ = flipper.kill();
    let _ = flipper.wait();
    eprintln!("race: {} runs mounted on the directory, {} refused", outcomes.0, outcomes.1);
    if let Some(f) = failure {
        panic!("{f}");
    }
    assert_no_host_mounts(&copy.path);
}

// ---------------------------------------------------------------------------
// Config trust
// ---------------------------------------------------------------------------

#[test]
fn config_owned_by_the_user_is_refused() {
    require_setup();
    let d = TestDistro::standard("conf-owned");
    let (uid, gid) = user_ids(USER);
    chown(&d.conf, Some(uid), Some(gid)).unwrap();
    assert_both_refused(&d.name, &[path_str(&d.conf)]);
}

#[test]
fn group_writable_config_is_refused() {
    require_setup();
    let d = TestDistro::standard("conf-0664");
    fs::set_permissions(&d.conf, Permissions::from_mode(0o664)).unwrap();
    assert_both_refused(&d.name, &[path_str(&d.conf)]);
}

#[test]
fn world_writable_config_is_refused() {
    require_setup();
    let d = TestDistro::standard("conf-0666");
    fs::set_permissions(&d.conf, Permissions::from_mode(0o666)).unwrap();
    assert_both_refused(&d.name, &[path_str(&d.conf)]);
}

/// Replaces the config with a root-owned symlink to `target`, which holds
/// a valid config: only the directories on the way make it untrusted.
fn config_symlinked_to(tag: &str, target: &Path) -> TestDistro {
    let d = TestDistro::standard(tag);
    fs::copy(&d.conf, target).unwrap();
    fs::set_permissions(target, Permissions::from_mode(0o644)).unwrap();
    fs::remove_file(&d.conf).unwrap();
    symlink(target, &d.conf).unwrap();
    d
}

#[test]
fn config_symlinked_into_world_writable_tmp_is_refused() {
    require_setup();
    // Root-owned directory and file, but /tmp above them is world-writable.
    let dir = Scratch::new("/tmp", "conf-tmp", 0o755);
    let d = config_symlinked_to("conf-tmp", &dir.path.join("real.conf"));
    assert_both_refused(&d.name, &["/tmp"]);
}

#[test]
fn config_symlinked_into_a_user_owned_directory_is_refused() {
    require_setup();
    // Below the trusted TEST_ROOT, so that the user-owned directory is the
    // first untrusted component.
    let dir = Scratch::new(TEST_ROOT, "conf-user", 0o755);
    let (uid, gid) = user_ids(USER);
    chown(&dir.path, Some(uid), Some(gid)).unwrap();
    let d = config_symlinked_to("conf-user", &dir.path.join("real.conf"));
    assert_both_refused(&d.name, &[path_str(&dir.path)]);
}

#[test]
fn config_symlinked_into_a_group_writable_directory_is_refused() {
    require_setup();
    let dir = Scratch::new(TEST_ROOT, "conf-gw", 0o775);
    let d = config_symlinked_to("conf-gw", &dir.path.join("real.conf"));
    assert_both_refused(&d.name, &[path_str(&dir.path)]);
}

#[test]
fn config_symlinked_to_a_device_is_refused_without_hanging() {
    require_setup();
    let d = TestDistro::standard("conf-zero");
    fs::remove_file(&d.conf).unwrap();
    symlink("/dev/zero", &d.conf).unwrap();
    assert_both_refused(&d.name, &[]);
}

#[test]
fn config_that_is_a_directory_is_refused() {
    require_setup();
    let name = unique("conf-dir");
    let path = Path::new(CONF_DIR).join(format!("{name}.conf"));
    let _cleanup = Remove(vec![path.clone()]);
    fs::create_dir(&path).unwrap();
    assert_both_refused(&name, &[]);
}

/// A FIFO named NAME.conf: opening it for reading would block forever.
/// Every way in must refuse it promptly.
#[test]
fn fifo_named_like_a_config_is_refused_without_hanging() {
    require_setup();
    let name = unique("conf-fifo");
    let path = Path::new(CONF_DIR).join(format!("{name}.conf"));
    let _cleanup = Remove(vec![path.clone()]);
    nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
    let quick = Duration::from_secs(15);

    let file = EnvFile::new(&env_bytes());
    let mut cmd = helper_args(&[&name, "/bin/true"]).command();
    cmd.stdin(file.open());
    assert_refused(&timed(cmd, quick), &[]);

    for b in [Some(Backend::Helper), Some(Backend::Userns), None] {
        let mut run = Run::user(&[&name, "/bin/true"]);
        if let Some(b) = b {
            run = run.backend(b);
        }
        let mut cmd = run.command();
        cmd.stdin(Stdio::null());
        eprintln!("distrorun with backend {b:?}");
        assert_refused(&timed(cmd, quick), &[]);
    }
}

// ---------------------------------------------------------------------------
// Distro dir trust
// ---------------------------------------------------------------------------

#[test]
fn distro_dir_owned_by_the_user_is_refused() {
    require_setup();
    let copy = GuestCopy::new("dir-owned");
    let (uid, gid) = user_ids(USER);
    chown(&copy.path, Some(uid), Some(gid)).unwrap();
    let d = TestDistro::with_dir("dir-owned", &copy.path, "");
    assert_both_refused(&d.name, &[path_str(&copy.path)]);
    assert_no_host_mounts(&copy.path);
}

#[test]
fn world_writable_distro_dir_is_refused() {
    require_setup();
    let copy = GuestCopy::new("dir-0777");
    fs::set_permissions(&copy.path, Permissions::from_mode(0o777)).unwrap();
    let d = TestDistro::with_dir("dir-0777", &copy.path, "");
    assert_both_refused(&d.name, &[path_str(&copy.path)]);
    assert_no_host_mounts(&copy.path);
}

/// A complete, root-owned guest tree (hard links to the shared guest) below
/// `parent`, so that only the parent's ownership or mode can refuse it.
fn guest_below(parent: &Scratch) -> PathBuf {
    let tree = parent.path.join("guest");
    let status = Command::new("cp").arg("-al").arg(GUEST).arg(&tree).status().unwrap();
    assert!(status.success(), "cp -al {GUEST} {}", tree.display());
    tree
}

#[test]
fn root_owned_distro_dir_below_a_user_owned_parent_is_refused() {
    require_setup();
    let parent = Scratch::new(TEST_ROOT, "dir-parent", 0o755);
    let (uid, gid) = user_ids(USER);
    chown(&parent.path, Some(uid), Some(gid)).unwrap();
    let tree = guest_below(&parent);
    let d = TestDistro::with_dir("dir-parent", &tree, "");
    assert_both_refused(&d.name, &[path_str(&parent.path)]);
    assert_no_host_mounts(&tree);
}

#[test]
fn root_owned_distro_dir_below_a_group_writable_parent_is_refused() {
    require_setup();
    let parent = Scratch::new(TEST_ROOT, "dir-gw", 0o775);
    let group = nix::unistd::Group::from_name(GROUP).unwrap().expect("the test group exists");
    chown(&parent.path, Some(0), Some(group.gid.as_raw())).unwrap();
    let tree = guest_below(&parent);
    let d = TestDistro::with_dir("dir-gw", &tree, "");
    assert_both_refused(&d.name, &[path_str(&parent.path)]);
    assert_no_host_mounts(&tree);
}

#[test]
fn distro_dir_reached_through_a_symlink_the_user_controls_is_refused() {
    require_setup();
    let copy = GuestCopy::new("dir-link");
    let home = PathBuf::from(format!("/home/{USER}"));
    let in_tmp = PathBuf::from(format!("/tmp/attack-{}", unique("dir-link")));
    let in_home = home.join(format!("attack-{}", unique("dir-link")));
    let _cleanup = Remove(vec![in_tmp.clone(), in_home.clone()]);
    for (link, needle) in [(&in_tmp, "/tmp"), (&in_home, path_str(&home))] {
        user_sh("ln -s \"$1\" \"$2\"", &[path_str(&copy.path), path_str(link)]).output().assert_ok();
        let d = TestDistro::with_dir("dir-link", link, "");
        assert_both_refused(&d.name, &[needle]);
    }
    assert_no_host_mounts(&copy.path);
}

// ---------------------------------------------------------------------------
// Who may start the helper, and how
// ---------------------------------------------------------------------------

#[test]
fn helper_is_installed_setuid_root() {
    require_setup();
    let meta = fs::metadata(HELPER).unwrap();
    assert_eq!((meta.uid(), meta.mode() & 0o7777), (0, 0o4755), "{HELPER} must be root:root 4755");
}

#[test]
fn helper_refuses_root_as_caller() {
    require_setup();
    let d = TestDistro::standard("as-root");
    let file = EnvFile::new(&env_bytes());
    let mut cmd = helper_as(None, &[&d.name, "/bin/true"]).command();
    cmd.stdin(file.open());
    assert_refused(&timed(cmd, LIMIT), &["root"]);
}

#[test]
fn helper_copies_that_are_not_setuid_root_refuse() {
    require_setup();
    let d = TestDistro::standard("not-suid");
    let dir = Scratch::new(TEST_ROOT, "not-suid", 0o755);
    let plain = dir.path.join("plain-helper");
    fs::copy(HELPER, &plain).unwrap();
    fs::set_permissions(&plain, Permissions::from_mode(0o755)).unwrap();
    let user_suid = dir.path.join("user-suid-helper");
    fs::copy(HELPER, &user_suid).unwrap();
    let (uid, gid) = user_ids(USER);
    chown(&user_suid, Some(uid), Some(gid)).unwrap();
    fs::set_permissions(&user_suid, Permissions::from_mode(0o4755)).unwrap();
    for copy in [&plain, &user_suid] {
        let run = Run::user(&["-c", ENV_ON_3, "bash", path_str(copy), "--env-fd", "3", &d.name, "/bin/true"])
            .bin("/bin/bash");
        let out = with_env_on_stdin(run, &env_bytes());
        assert_refused(&out, &["setuid"]);
    }
}

#[test]
fn names_outside_the_grammar_are_refused_by_the_helper_itself() {
    require_setup();
    let t = unique("htrap");
    let parent_trap = Path::new(CONF_DIR).parent().unwrap().join(format!("{t}.conf"));
    let hidden_trap = Path::new(CONF_DIR).join(format!(".{t}.conf"));
    let _cleanup = Remove(vec![parent_trap.clone(), hidden_trap.clone()]);
    let conf = format!(r#"(dir: "{GUEST}", mapped_volumes: {STANDARD_VOLUMES})"#);
    fs::write(&parent_trap, &conf).unwrap();
    fs::write(&hidden_trap, &conf).unwrap();
    let long = "a".repeat(65);
    for name in [&format!("../{t}"), &format!(".{t}"), "", ".", "..", "a/b", &long, "\u{e9}", "a b", "-v"] {
        eprintln!("name {name:?}");
        let out = with_env_on_stdin(helper_args(&["--", name, "/bin/true"]), &env_bytes());
        assert_refused(&out, &[]);
    }
    let run = helper_args(&["--"]).arg_os(OsStr::from_bytes(b"\xff")).arg_os("/bin/true");
    assert_refused(&with_env_on_stdin(run, &env_bytes()), &[]);
}

#[test]
fn helper_rechecks_users_list_itself() {
    require_setup();
    let d = TestDistro::with_config(
        "acl-direct",
        &format!(r#"(dir: "{GUEST}", mapped_volumes: {STANDARD_VOLUMES}, users: ["nobody-else"])"#),
    );
    let out = with_env_on_stdin(helper_args(&[&d.name, "/bin/true"]), &env_bytes());
    assert_refused(&out, &[USER, &d.name]);
}

// ---------------------------------------------------------------------------
// Hostile environment at the helper
// ---------------------------------------------------------------------------

/// Loader, libc and Rust variables aimed at a user-writable directory: the
/// helper loads nothing from there, behaves as usual, and the command gets
/// exactly the environment from the env fd.
#[test]
fn hostile_environment_changes_nothing_in_the_helper() {
    require_setup();
    let d = TestDistro::standard("hostile-env");
    let libdir = Scratch::for_user("libdir");
    let markers = Scratch::new("/tmp", "markers", 0o777);
    let define = format!("-DMARKER_DIR=\"{}\"", markers.path.display());
    let lib = compile(&libdir.path, "attack_preload", &["-shared", "-fPIC", &define]);
    let lib = lib.with_extension("so");
    fs::rename(libdir.path.join("attack_preload"), &lib).unwrap();
    let markers_left =
        || fs::read_dir(&markers.path).unwrap().flatten().map(|e| e.file_name()).collect::<Vec<_>>();

    let hostile = concat!(
        "export LD_PRELOAD=\"$1\" LD_AUDIT=\"$1\" LD_LIBRARY_PATH=\"$2\" GCONV_PATH=\"$2\" ",
        "LD_DEBUG=all LD_DEBUG_OUTPUT=\"$2/ld-debug\" LD_BIND_NOW=1 LD_SHOW_AUXV=1 ",
        "MALLOC_CHECK_=3 MALLOC_PERTURB_=165 MALLOC_ARENA_MAX=1 GLIBC_TUNABLES=glibc.malloc.check=3 ",
        "LOCPATH=\"$2\" NLSPATH=\"$2/%N\" HOSTALIASES=\"$2/hosts\" TMPDIR=\"$2\" TZDIR=\"$2\" ",
        "RUST_BACKTRACE=full RUST_LIB_BACKTRACE=1 RUST_MIN_STACK=1 RUST_LOG=trace ",
        "LANG=xx_XX.bogus LC_ALL=xx_XX.bogus PATH=\"$2\" IFS=/ ",
        "DISTRORUN_SYSCONFDIR=\"$2\" DISTRORUN_LIBEXECDIR=\"$2\" XDG_CONFIG_HOME=\"$2\"; ",
        "shift 2; exec 3<&0 0</dev/null; exec \"$@\"",
    );
    let lib_s = path_str(&lib);
    let dir_s = path_str(&libdir.path);

    let debug_files = || {
        fs::read_dir(&libdir.path)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.file_name().is_some_and(|n| n.as_bytes().starts_with(b"ld-debug")))
            .collect::<Vec<_>>()
    };

    // dash, not bash: bash warns on stderr about the bogus locale.
    let dash = |args: &[&str]| {
        let mut all = vec!["-c", hostile, "sh"];
        all.extend_from_slice(args);
        Run::user(&all).bin("/bin/sh")
    };

    // The library works: an ordinary program run this way loads it.
    dash(&[lib_s, dir_s, "/bin/true"]).output();
    assert!(!markers_left().is_empty(), "control failed: the preload library was not loaded by /bin/true");
    for m in markers_left() {
        fs::remove_file(markers.path.join(m)).unwrap();
    }
    for f in debug_files() {
        fs::remove_file(f).unwrap();
    }

    let env = env_bytes();
    let run = dash(&[lib_s, dir_s, HELPER, "--env-fd", "3", &d.name, "/usr/bin/cat", "/proc/self/environ"]);
    let out = with_env_on_stdin(run, &env);
    assert_no_panic(&out);
    out.assert_ok();
    assert_eq!(out.stdout, env, "the command's environment differs from the one on the env fd");
    assert!(markers_left().is_empty(), "the preload library was loaded: {:?}", markers_left());
    assert!(debug_files().is_empty(), "the loader wrote debug output for the helper: {:?}", debug_files());

    // Without --env-fd the same environment gets the same refusal as always.
    let run = dash(&[lib_s, dir_s, HELPER, &d.name, "/bin/true"]);
    assert_refused(&with_env_on_stdin(run, &env), &[]);
    assert!(markers_left().is_empty(), "the preload library was loaded: {:?}", markers_left());
}

/// DISTRORUN_SYSCONFDIR, XDG_CONFIG_HOME and HOME point at configs the user
/// wrote; the helper knows only its compiled-in directory.
#[test]
fn helper_takes_no_config_from_its_environment() {
    require_setup();
    let name = unique("env-conf");
    let evil = Scratch::for_user("env-conf");
    let conf = format!(r#"(dir: "{GUEST}", mapped_volumes: ["/root"], allow_setuid: true)"#);
    for sub in ["etc/distrorun.d", "cfg/distrorun.d", "home/.config/distrorun.d"] {
        fs::create_dir_all(evil.path.join(sub)).unwrap();
        fs::write(evil.path.join(sub).join(format!("{name}.conf")), &conf).unwrap();
    }
    let out = with_env_on_stdin(
        helper_args(&[&name, "/bin/true"])
            .env("DISTRORUN_SYSCONFDIR", evil.path.join("etc"))
            .env("XDG_CONFIG_HOME", evil.path.join("cfg"))
            .env("HOME", evil.path.join("home")),
        &env_bytes(),
    );
    assert_refused(&out, &[&name, CONF_DIR]);
    assert!(!out.stderr_str().contains(path_str(&evil.path)), "the helper looked at the user's directory");
}

#[test]
fn huge_helper_environment_changes_nothing() {
    require_setup();
    let d = TestDistro::standard("huge-env");
    let big = "x".repeat(100 * 1024);
    let mut run = helper_args(&[&d.name, "/usr/bin/cat", "/proc/self/environ"]);
    for i in 0..12 {
        run = run.env(format!("HUGE_{i}"), &big);
    }
    let env = env_bytes();
    let out = with_env_on_stdin(run, &env);
    out.assert_ok();
    assert_eq!(out.stdout, env);
}

// ---------------------------------------------------------------------------
// Hostile descriptors
// ---------------------------------------------------------------------------

#[test]
fn env_fd_is_required_and_must_be_a_number_of_an_open_descriptor() {
    require_setup();
    let d = TestDistro::standard("env-fd-args");
    let cases: Vec<Vec<&str>> = vec![
        vec![&d.name, "/bin/true"],
        vec!["--env-fd"],
        vec!["--env-fd", "99999999999", &d.name, "/bin/true"],
        vec!["--env-fd", "2147483647", &d.name, "/bin/true"],
        vec!["--env-fd", "-1", &d.name, "/bin/true"],
        vec!["--env-fd", "abc", &d.name, "/bin/true"],
        vec!["--env-fd", "", &d.name, "/bin/true"],
        vec!["--env-fd", "0x0", &d.name, "/bin/true"],
        vec!["--env-fd", " 0", &d.name, "/bin/true"],
        vec!["--env-fd", "57", &d.name, "/bin/true"],
    ];
    for args in cases {
        eprintln!("helper {args:?}");
        // fd 57 is closed explicitly, whatever the harness leaves open.
        let mut all = vec![HELPER];
        all.extend_from_slice(&args);
        let out = with_env_on_stdin(user_sh("exec 57>&-; exec \"$@\"", &all), &env_bytes());
        assert_refused(&out, &[]);
    }
}

#[test]
fn env_fd_that_is_a_directory_or_write_only_is_refused() {
    require_setup();
    let d = TestDistro::standard("env-fd-kind");
    let writable = Scratch::for_user("env-fd-kind");
    let file = writable.file("env", &env_bytes(), 0o666);
    for script in ["exec 5</; exec \"$@\"", "exec 5>>\"$0\"; exec \"$@\""] {
        let mut cmd =
            Run::user(&["-c", script, path_str(&file), HELPER, "--env-fd", "5", &d.name, "/bin/true"])
                .bin("/bin/sh")
                .command();
        cmd.stdin(Stdio::null());
        eprintln!("{script}");
        assert_refused(&timed(cmd, LIMIT), &[]);
    }
}

#[test]
fn env_fd_that_is_a_pipe_is_refused_without_hanging() {
    require_setup();
    let d = TestDistro::standard("env-fd-pipe");
    let quick = Duration::from_secs(20);

    // A pipe whose writer never closes.
    let mut cmd = helper_args(&[&d.name, "/bin/true"]).command();
    cmd.stdin(Stdio::piped());
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let held = child.stdin.take();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > quick {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the helper blocked reading an env pipe that never ends");
        }
        thread::sleep(Duration::from_millis(10));
    }
    drop(held);
    let o = child.wait_with_output().unwrap();
    let out = Output { status: o.status, code: o.status.code(), stdout: o.stdout, stderr: o.stderr };
    assert_refused(&out, &[]);

    // A pipe carrying more than the 16 MiB cap.
    let mut cmd = helper_args(&[&d.name, "/bin/true"]).command();
    cmd.stdin(Stdio::piped());
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let feeder = thread::spawn(move || {
        let chunk = vec![b'a'; 1 << 20];
        for _ in 0..17 {
            if stdin.write_all(&chunk).is_err() {
                break;
            }
        }
    });
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > quick {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the helper hung on a 17 MiB env pipe");
        }
        thread::sleep(Duration::from_millis(10));
    }
    let o = child.wait_with_output().unwrap();
    let _ = feeder.join();
    let out = Output { status: o.status, code: o.status.code(), stdout: o.stdout, stderr: o.stderr };
    assert_refused(&out, &[]);
}

#[test]
fn env_file_over_16_mib_is_refused() {
    require_setup();
    let d = TestDistro::standard("env-big");
    let mut env = Vec::with_capacity((16 << 20) + 64);
    let mut i = 0;
    while env.len() <= 16 << 20 {
        env.extend_from_slice(format!("V{i}=").as_bytes());
        env.extend_from_slice(&[b'v'; 4000]);
        env.push(0);
        i += 1;
    }
    let out = with_env_on_stdin(helper_args(&[&d.name, "/bin/true"]), &env);
    assert_refused(&out, &[]);
}

#[test]
fn malformed_env_entries_never_crash_the_helper() {
    require_setup();
    let d = TestDistro::standard("env-bad");
    for env in [&b"NOEQUALS\0"[..], b"\0\0\0", b"=value\0", b"A=1", b"A=1\0\xff\xfe=\x80\0", b""] {
        let out = with_env_on_stdin(helper_args(&[&d.name, "/bin/true"]), env);
        assert_no_panic(&out);
        match out.code {
            Some(0) => assert!(out.stderr.is_empty(), "{}", out.stderr_str()),
            _ => assert_refused(&out, &[]),
        }
    }
}

/// An O_PATH descriptor to a file only root may read: a helper that reopens
/// /proc/self/fd/N as root instead of reading the descriptor would leak it.
#[test]
fn env_fd_opened_with_o_path_leaks_nothing() {
    require_setup();
    let d = TestDistro::standard("env-opath");
    let bins = Scratch::new(TEST_ROOT, "bins", 0o755);
    let attack = compile(&bins.path, "attack_exec", &[]);
    let secret_dir = Scratch::new(TEST_ROOT, "opath", 0o755);
    let secret = secret_dir.file("secret", b"SECRET_FROM_ROOT=leaked\0", 0o600);
    let out = Run::user(&[
        "opath",
        path_str(&secret),
        "5",
        HELPER,
        "--env-fd",
        "5",
        &d.name,
        "/usr/bin/cat",
        "/proc/self/environ",
    ])
    .bin(path_str(&attack))
    .output();
    assert!(!out.stdout_str().contains("SECRET_FROM_ROOT"), "the helper read a file only root may read");
    assert_refused(&out, &[]);
}

#[test]
fn env_fd_that_is_a_memfd_is_passed_on_exactly() {
    require_setup();
    let d = TestDistro::standard("env-memfd");
    let bins = Scratch::new(TEST_ROOT, "bins", 0o755);
    let attack = compile(&bins.path, "attack_exec", &[]);
    let env = env_bytes();
    let file = EnvFile::new(&env);
    let out = Run::user(&[
        "memfd",
        path_str(&file.path),
        "7",
        HELPER,
        "--env-fd",
        "7",
        &d.name,
        "/usr/bin/cat",
        "/proc/self/environ",
    ])
    .bin(path_str(&attack))
    .output();
    out.assert_ok();
    assert_eq!(out.stdout, env);
}

/// With fds 0-2 closed, whatever the helper opens would land on them; the
/// command must find them closed or on /dev/null or /dev/full, never on a
/// file the helper opened, and must hold no other descriptor than those
/// its caller passed (the env fd aside).
#[test]
fn closed_standard_descriptors_do_not_leak_helper_files() {
    require_setup();
    let d = TestDistro::standard("std-closed");
    // Static, and below /tmp, so that it runs inside the guest as well.
    let bins = Scratch::new("/tmp", "fds", 0o755);
    let report = compile(&bins.path, "attack_exec", &["-static"]);
    let report = path_str(&report);
    let env = EnvFile::new(&env_bytes());
    let fds_of = |args: &[&str]| {
        let mut all = vec!["-c", "exec 3<&0 9>&1 0<&- 1>&- 2>&-; exec \"$@\"", "bash"];
        all.extend_from_slice(args);
        let mut cmd = Run::user(&all).bin("/bin/bash").command();
        cmd.stdin(env.open());
        let out = timed(cmd, LIMIT);
        assert_eq!(out.code, Some(0), "{}", out.stderr_str());
        out.stdout_str()
            .lines()
            .map(|l| {
                let (fd, target) = l.split_once(' ').unwrap();
                (fd.to_owned(), target.to_owned())
            })
            .collect::<Vec<_>>()
    };
    // What the caller passes: the same start without the helper.
    let passed = fds_of(&[report, "fds", "9"]);
    let got = fds_of(&[HELPER, "--env-fd", "3", &d.name, report, "fds", "9"]);
    for (fd, target) in &got {
        if ["0", "1", "2"].contains(&fd.as_str()) {
            assert!(
                ["closed", "/dev/null", "/dev/full"].contains(&target.as_str()),
                "the command inherited a helper file on fd {fd}: {target}"
            );
        } else if fd != "3" {
            assert!(
                passed.iter().any(|(f, t)| f == fd && (t == target || t.starts_with("pipe:"))),
                "the command holds fd {fd} ({target}) that its caller did not pass: {passed:?}"
            );
        }
    }

    // An error with every standard descriptor closed: still exit 125, and
    // the env file it was given is untouched.
    let before = fs::read(&env.path).unwrap();
    let mut cmd = user_sh(
        "exec 0<&- 1>&- 2>&- 9<\"$1\"; shift; exec \"$@\"",
        &[path_str(&env.path), HELPER, "--env-fd", "9", "no-such-distro-x", "/bin/true"],
    )
    .command();
    cmd.stdin(Stdio::null());
    let out = timed(cmd, LIMIT);
    assert_eq!(out.code, Some(125), "{:?}", out.status);
    assert_eq!(fs::read(&env.path).unwrap(), before);
}

// ---------------------------------------------------------------------------
// Hostile argv
// ---------------------------------------------------------------------------

#[test]
fn unknown_options_are_refused() {
    require_setup();
    let d = TestDistro::standard("argv-opts");
    for args in [
        vec!["--bogus", &d.name, "/bin/true"],
        vec!["-z", &d.name, "/bin/true"],
        vec!["--extra-volume"],
        vec!["-d"],
        vec!["--env-fd=0", "--bogus=1", &d.name],
    ] {
        eprintln!("helper --env-fd 0 {args:?}");
        assert_refused(&with_env_on_stdin(helper_args(&args), &env_bytes()), &[]);
    }
}

#[test]
fn options_after_the_name_belong_to_the_command() {
    require_setup();
    let d = TestDistro::standard("argv-after");
    let out = with_env_on_stdin(
        helper_args(&[
            &d.name,
            "/bin/echo",
            "-v",
            "--env-fd",
            "5",
            "--extra-volume",
            "/",
            "-d",
            "/root",
            "--",
            "x",
        ]),
        &env_bytes(),
    );
    out.assert_ok();
    assert_eq!(out.stdout_str(), "-v --env-fd 5 --extra-volume / -d /root -- x\n");
}

#[test]
fn odd_argv0_changes_nothing() {
    require_setup();
    let d = TestDistro::standard("argv0");
    let long = "A".repeat(5000);
    for argv0 in ["", "-", "../../../tmp/evil", "distrorun\nspoofed line", &long] {
        let run = Run::user(&[
            "-c",
            "exec 3<&0 0</dev/null; exec -a \"$1\" \"$2\" --env-fd 3 \"$3\" /bin/echo ran",
            "bash",
            argv0,
            HELPER,
            &d.name,
        ])
        .bin("/bin/bash");
        let out = with_env_on_stdin(run, &env_bytes());
        out.assert_ok();
        assert_eq!(out.stdout_str(), "ran\n");
    }
}

#[test]
fn empty_argv_is_refused_cleanly() {
    require_setup();
    let bins = Scratch::new(TEST_ROOT, "bins", 0o755);
    let attack = compile(&bins.path, "attack_exec", &[]);
    let out = with_env_on_stdin(Run::user(&["noargv", HELPER]).bin(path_str(&attack)), &env_bytes());
    assert_refused(&out, &[]);
}

// ---------------------------------------------------------------------------
// Resource limits
// ---------------------------------------------------------------------------

/// Closes every descriptor above `$1`, sets RLIMIT_NOFILE to `$2`, then
/// runs the rest; the env file comes in on stdin and goes to fd 3 first.
const LOW_NOFILE: &str = concat!(
    "exec 3<&0 0</dev/null; ",
    "for f in /proc/$$/fd/*; do f=${f##*/}; [ \"$f\" -gt \"$1\" ] && eval \"exec $f>&-\"; done; ",
    "ulimit -n \"$2\" || exit 98; shift 2; exec \"$@\"",
);

#[test]
fn tiny_open_file_limit_gives_a_clean_answer() {
    require_setup();
    let d = TestDistro::standard("nofile");
    // The helper directly: descriptors 0-3 (the env file) stay open; below 5
    // the dynamic loader cannot open the helper's libraries, which would test
    // glibc, not the helper. The front end: descriptors 0-2 stay open, and 4
    // leaves it one descriptor of its own, as a user who set `ulimit -n 4`.
    let cases = ["5", "6", "7", "8", "10", "16"]
        .map(|n| (n, false))
        .into_iter()
        .chain(["4", "5", "6", "8", "16"].map(|n| (n, true)));
    for (n, via_front_end) in cases {
        {
            let mut args = vec!["-c", LOW_NOFILE, "bash"];
            if via_front_end {
                args.extend_from_slice(&["2", n, BIN, "--backend", "helper", &d.name, "/bin/true"]);
            } else {
                args.extend_from_slice(&["3", n, HELPER, "--env-fd", "3", &d.name, "/bin/true"]);
            }
            let out = with_env_on_stdin(Run::user(&args).bin("/bin/bash"), &env_bytes());
            eprintln!("nofile {n}, front end {via_front_end}: {:?} {}", out.code, out.stderr_str());
            assert_no_panic(&out);
            match out.code {
                Some(0) => assert!(out.stderr.is_empty(), "{}", out.stderr_str()),
                _ => assert_refused(&out, &[]),
            }
            assert_no_host_mounts(Path::new(GUEST));
        }
    }
}

/// RLIMIT_NPROC 0: once the helper takes the caller's uid, the kernel
/// refuses the exec of the command. That must be a clean error too.
#[test]
fn process_limit_of_zero_gives_a_clean_answer() {
    require_setup();
    let d = TestDistro::standard("nproc");
    let run = Run::user(&[
        "--nproc=0:0",
        "--",
        "/bin/bash",
        "-c",
        ENV_ON_3,
        "bash",
        HELPER,
        "--env-fd",
        "3",
        &d.name,
        "/bin/true",
    ])
    .bin("/usr/bin/prlimit");
    let out = with_env_on_stdin(run, &env_bytes());
    assert_no_panic(&out);
    match out.code {
        Some(0) => {}
        Some(125 | 126) => {
            let err = out.stderr_str();
            assert!(err.starts_with("distrorun: "), "{err}");
        }
        other => panic!("exit {other:?}: {}", out.stderr_str()),
    }
    assert_no_host_mounts(Path::new(GUEST));
}

// ---------------------------------------------------------------------------
// Killed at any moment
// ---------------------------------------------------------------------------

/// SIGKILLs a run after each of a series of delays covering start-up, then
/// checks that nothing was left mounted in the host and that no process of
/// the caller is left holding root.
fn kill_at_every_step(tag: &str, via_front_end: bool) {
    require_setup();
    let _lock = other_user_lock();
    let copy = GuestCopy::new(tag);
    let d = TestDistro::with_dir(tag, &copy.path, "");
    let env = EnvFile::new(&env_bytes());
    let (other_uid, _) = user_ids(OTHER_USER);
    assert!(processes_of(other_uid, false).is_empty(), "{OTHER_USER} already has processes");
    let delays = (0..=8000).step_by(100).chain([12_000, 20_000, 40_000]);
    for delay_us in delays {
        let run = if via_front_end {
            Run::as_user(OTHER_USER, &[&d.name, "/bin/sleep", "1"]).backend(Backend::Helper)
        } else {
            helper_as(Some(OTHER_USER), &[&d.name, "/bin/sleep", "1"])
        };
        let mut cmd = run.command();
        cmd.stdin(env.open()).stdout(Stdio::null()).stderr(Stdio::null());
        let mut child = cmd.spawn().unwrap();
        let start = Instant::now();
        while start.elapsed() < Duration::from_micros(delay_us) {
            std::hint::spin_loop();
        }
        let _ = child.kill();
        let _ = child.wait();
        let mounts = host_mounts_under(&copy.path);
        assert!(
            mounts.is_empty(),
            "killed after {delay_us} µs: mounts left in the host:\n{}",
            mounts.join("\n")
        );
        let privileged = processes_of(other_uid, true);
        assert!(
            privileged.is_empty(),
            "killed after {delay_us} µs: privileged processes left:\n{}",
            privileged.join("\n")
        );
    }
    let left = leftover(Duration::from_secs(3), || processes_of(other_uid, false));
    assert!(left.is_empty(), "processes of {OTHER_USER} outlived their killed parent:\n{}", left.join("\n"));
}

#[test]
fn helper_killed_at_any_moment_leaves_no_mounts_and_no_root_process() {
    kill_at_every_step("kill-helper", false);
}

#[test]
fn front_end_killed_at_any_moment_leaves_no_mounts_and_no_root_process() {
    kill_at_every_step("kill-front", true);
}

// ---------------------------------------------------------------------------
// What the command inherits from the helper
// ---------------------------------------------------------------------------

fn assert_unprivileged_status(status: &str) {
    let (uid, gid) = user_ids(USER);
    for cap in ["CapInh:", "CapPrm:", "CapEff:", "CapBnd:", "CapAmb:"] {
        assert_eq!(status_field(status, cap), "0000000000000000", "{cap} not empty:\n{status}");
    }
    assert_eq!(status_field(status, "NoNewPrivs:"), "1", "{status}");
    assert_eq!(status_ids(status, "Uid:"), [uid; 4], "{status}");
    assert_eq!(status_ids(status, "Gid:"), [gid; 4], "{status}");
    let host = Command::new("id").args(["-G", USER]).output().unwrap();
    let mut want: Vec<u32> =
        String::from_utf8(host.stdout).unwrap().split_whitespace().map(|g| g.parse().unwrap()).collect();
    let mut got: Vec<u32> =
        status_field(status, "Groups:").split_whitespace().map(|g| g.parse().unwrap()).collect();
    // The kernel lists supplementary groups only; `id -G` adds the primary one.
    want.retain(|g| *g != gid || got.contains(g));
    want.sort_unstable();
    got.sort_unstable();
    assert_eq!(got, want, "supplementary groups differ from the caller's:\n{status}");
}

#[test]
fn command_runs_with_no_capabilities_no_new_privs_and_only_the_callers_ids() {
    require_setup();
    let d = TestDistro::standard("status");
    let out = Run::user(&[&d.name, "/bin/cat", "/proc/self/status"]).backend(Backend::Helper).output();
    out.assert_ok();
    assert_unprivileged_status(&out.stdout_str());

    let out = with_env_on_stdin(helper_args(&[&d.name, "/bin/cat", "/proc/self/status"]), &env_bytes());
    out.assert_ok();
    assert_unprivileged_status(&out.stdout_str());
}

/// The helper execs in place: the process the caller started becomes the
/// command, with the caller's ids, while nothing shows in the host's mounts.
#[test]
fn running_command_is_the_callers_own_process_and_mounts_stay_private() {
    require_setup();
    let copy = GuestCopy::new("live");
    let d = TestDistro::with_dir("live", &copy.path, "");
    let mut cmd = Run::user(&[&d.name, "/bin/sleep", "30"]).backend(Backend::Helper).command();
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    let mut child = cmd.spawn().unwrap();
    let pid = child.id();
    let start = Instant::now();
    let status = loop {
        let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if comm.trim() == "sleep" {
            break fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        }
        if start.elapsed() > Duration::from_secs(20) || child.try_wait().unwrap().is_some() {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the command never ran in the process that was started (pid {pid}, comm {comm:?})");
        }
        thread::sleep(Duration::from_millis(10));
    };
    let mounts = host_mounts_under(&copy.path);
    let _ = child.kill();
    let _ = child.wait();
    assert!(mounts.is_empty(), "mounts visible in the host while the command runs:\n{}", mounts.join("\n"));
    assert_unprivileged_status(&status);
}

#[test]
fn allow_setuid_lets_setuid_programs_work_and_refuses_extra_volumes() {
    require_setup();
    let copy = guest_with_setuid_id("allow-suid");
    let d = TestDistro::with_dir("allow-suid", &copy.path, "allow_setuid: true,");

    // The documented trade-off: setuid programs in the distro work.
    let out = Run::user(&[&d.name, "/usr/local/bin/suid-id", "-u"]).backend(Backend::Helper).output();
    out.assert_ok();
    assert_eq!(out.stdout_str().trim(), "0", "allow_setuid: the setuid-root program should run as root");
    let out = Run::user(&[&d.name, "/bin/cat", "/proc/self/status"]).backend(Backend::Helper).output();
    out.assert_ok();
    assert_eq!(status_field(&out.stdout_str(), "NoNewPrivs:"), "0");

    // A caller-chosen volume in a distro with working setuid programs would
    // let the caller plant one: refused.
    let out = Run::user(&["--extra-volume", "/tmp", &d.name, "/bin/true"]).backend(Backend::Helper).output();
    assert_refused(&out, &[]);
    let out = with_env_on_stdin(helper_args(&["--extra-volume", "/tmp", &d.name, "/bin/true"]), &env_bytes());
    assert_refused(&out, &[]);
    assert_no_host_mounts(&copy.path);
}
