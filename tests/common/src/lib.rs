//! Support for the integration tests. They run as root (after `ci/test-setup`)
//! and run the installed binaries as an unprivileged user through `dropto`,
//! because the behaviour under test is what an ordinary user gets.

mod envfd;
mod files;
mod mounts;
mod run;
mod setup;
mod support;

pub use envfd::{with_env_fd_on_stdin, with_env_on_stdin, EnvFd};
pub use files::{ron_config, GuestCopy, Remove, TempDir, TestDistro, UserDistro};
pub use mounts::{host_mounts_under, parse_mountinfo, path_is_under, MountInfo};
pub use run::{finish, old_kernel_requested, shell_quote, timed, Backend, Output, Run, OLD_KERNEL};
pub use setup::{guest_suite, require_setup};
pub use support::compile_support;

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

/// Root-owned, 0755, on a filesystem without nosuid: the installed binaries
/// live here, and scratch directories that the test user may traverse but
/// not change go here.
pub const TEST_ROOT: &str = "/var/lib/distrorun-test";
pub const BIN: &str = "/var/lib/distrorun-test/bin/distrorun";
pub const SEAM_BIN: &str = "/var/lib/distrorun-test/bin/distrorun-seam";
pub const HELPER: &str = "/var/lib/distrorun-test/libexec/distrorun/distrorun-helper";
pub const DROPTO: &str = "/var/lib/distrorun-test/bin/dropto";
pub const CONF_DIR: &str = "/var/lib/distrorun-test/etc/distrorun.d";
pub const SYSCONFDIR: &str = "/var/lib/distrorun-test/etc";
pub const LIBEXECDIR: &str = "/var/lib/distrorun-test/libexec";
pub const ROOTS_DIR: &str = "/var/lib/distrorun-test/roots";
pub const GUEST: &str = "/var/cache/distrorun-test/guest";
pub const GUEST_SUITE_FILE: &str = "/var/cache/distrorun-test/guest.suite";
pub const USER: &str = "distrorun-test";
pub const OTHER_USER: &str = "distrorun-other";
pub const GROUP: &str = "distrorun-tg";
/// A user and a group that only libnss-extrausers knows, set up by
/// `ci/test-setup`: not in /etc/passwd or /etc/group.
pub const EXTRA_USER: &str = "distrorun-extra";
pub const EXTRA_GROUP: &str = "distrorun-xg";
pub const STANDARD_VOLUMES: &str = r#"["/dev", "/home", "/tmp", "/run"]"#;

/// Longest a single run may take before the test fails instead of hanging.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(60);

/// The uid and primary gid of a user.
/// Runs `script` with `sh -e` as root and returns its output; a failure
/// fails the test with what the script printed.
#[track_caller]
pub fn sh(script: &str) -> String {
    let out = std::process::Command::new("sh").arg("-ec").arg(script).output().expect("cannot run sh");
    assert!(
        out.status.success(),
        "{script} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn user_ids(name: &str) -> (u32, u32) {
    match nix::unistd::User::from_name(name) {
        Ok(Some(u)) => (u.uid.as_raw(), u.gid.as_raw()),
        other => panic!("cannot look up the user {name}: {other:?}"),
    }
}

pub fn group_id(name: &str) -> u32 {
    match nix::unistd::Group::from_name(name) {
        Ok(Some(g)) => g.gid.as_raw(),
        other => panic!("cannot look up the group {name}: {other:?}"),
    }
}

pub fn home_of(name: &str) -> PathBuf {
    match nix::unistd::User::from_name(name) {
        Ok(Some(u)) => u.dir,
        other => panic!("cannot look up the user {name}: {other:?}"),
    }
}

/// A name no other test in this run uses, valid as a distro name:
/// "TAG-PID-COUNTER".
pub fn unique(tag: &str) -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    format!("{tag}-{}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// A test path as &str: every path the tests make is UTF-8.
pub fn path_str(p: &std::path::Path) -> &str {
    p.to_str().expect("test paths are UTF-8")
}

/// Serialises tests that change global state (sysctls, host mounts); hold the
/// guard for the test's duration.
pub fn global_state_lock() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    // One failed test must not fail every later one.
    LOCK.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Waits until `path` exists, panicking with `what` after the timeout.
pub fn wait_for_file(path: &std::path::Path, timeout: Duration, what: &str) {
    let deadline = Instant::now() + timeout;
    while !path.exists() {
        assert!(Instant::now() < deadline, "{what}: {} did not appear within {timeout:?}", path.display());
        thread::sleep(Duration::from_millis(5));
    }
}

/// A refusal: exit status 125, nothing on stdout, and a first line
/// `distrorun: SENTENCE` that contains every needle; any further lines are
/// hints, never a panic or a backtrace.
#[track_caller]
pub fn assert_refused(out: &Output, needles: &[&str]) {
    assert_no_panic(out);
    out.assert_code(125);
    let err = out.stderr_str();
    let first = err.lines().next().unwrap_or("");
    assert!(
        first.starts_with("distrorun: ") && first.len() > "distrorun: ".len(),
        "the refusal is not a `distrorun: ...` sentence:\n{}",
        out.report()
    );
    for n in needles {
        assert!(first.contains(n), "the refusal does not name {n:?}:\n{}", out.report());
    }
    assert!(err.lines().all(|l| !l.trim().is_empty()), "blank lines in the refusal:\n{}", out.report());
    assert!(out.stdout.is_empty(), "output on stdout along with a refusal:\n{}", out.report());
}

/// Neither a Rust panic nor death by a signal, whatever the exit status.
#[track_caller]
pub fn assert_no_panic(out: &Output) {
    let err = out.stderr_str();
    for bad in ["panicked", "RUST_BACKTRACE", "stack backtrace"] {
        assert!(!err.contains(bad), "panicked instead of refusing cleanly:\n{}", out.report());
    }
    if let Some(sig) = std::os::unix::process::ExitStatusExt::signal(&out.status) {
        panic!("killed by signal {sig}:\n{}", out.report());
    }
}

/// Runs the same test body once per backend: generates `mod userns` and
/// `mod helper`, each with one #[test] per function, the body seeing the
/// backend as the function's parameter.
#[macro_export]
macro_rules! per_backend {
    ($( $(#[$meta:meta])* fn $name:ident($b:ident) $body:block )*) => {
        mod userns {
            #[allow(unused_imports)]
            use super::*;
            $(
                $(#[$meta])*
                #[test]
                fn $name() {
                    let $b = $crate::Backend::Userns;
                    $body
                }
            )*
        }
        mod helper {
            #[allow(unused_imports)]
            use super::*;
            $(
                $(#[$meta])*
                #[test]
                fn $name() {
                    let $b = $crate::Backend::Helper;
                    $body
                }
            )*
        }
    };
}

/// Fails unless `EXTRA_USER` is known to NSS but not to /etc/passwd.
pub fn require_extra_user() {
    let passwd = std::fs::read_to_string("/etc/passwd").expect("read /etc/passwd");
    assert!(
        !passwd.lines().any(|l| l.starts_with(&format!("{EXTRA_USER}:"))),
        "{EXTRA_USER} must be known only to libnss-extrausers, not /etc/passwd"
    );
    assert!(
        nix::unistd::User::from_name(EXTRA_USER).ok().flatten().is_some(),
        "{EXTRA_USER} is unknown: ci/test-setup installs libnss-extrausers and adds it"
    );
}
