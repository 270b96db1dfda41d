//! Attacks on the setuid helper, made as the unprivileged test user against
//! the real guest tree. Every security property of the helper has a test
//! here that tries to break it; each asserts that the attack gained nothing
//! and, where a refusal is expected, that it is one clean `distrorun: ...`
//! sentence with exit status 125.
//!
//! One module per kind of attack. Each starts with `use super::*;`, which
//! brings in the test kit and the ways of reaching the helper below.

mod argv_and_limits;
mod callers;
mod config_trust;
mod descriptors;
mod distro_dir_trust;
mod environment;
mod hardening;
mod inside;
mod killed;
mod mounts;

use std::path::Path;
use std::process::Stdio;
use std::sync::Mutex;

use distrorun_testkit::*;

/// Tests that run as `OTHER_USER` scan the process table for that user's
/// processes, so they must not overlap with each other.
static OTHER_USER_LOCK: Mutex<()> = Mutex::new(());

fn other_user_lock() -> std::sync::MutexGuard<'static, ()> {
    // A test that failed while holding the lock must not fail the rest.
    OTHER_USER_LOCK.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
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

/// Moves the env fd from stdin to fd 3 before starting the helper: the
/// helper refuses to take its environment from a standard stream.
const ENV_ON_3: &str = "exec 3<&0 0</dev/null; exec \"$@\"";

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

fn assert_no_host_mounts(path: &Path) {
    let mounts = host_mounts_under(path);
    assert!(
        mounts.is_empty(),
        "mounts leaked into the host namespace under {}:\n{}",
        path.display(),
        mounts.join("\n")
    );
}

/// Both ways the test user reaches the helper: directly, and through
/// `distrorun --backend helper`. Each runs `/bin/true` in NAME.
fn through_helper(name: &str) -> [(&'static str, Output); 2] {
    let direct = with_env_on_stdin(&helper_args(&[name, "/bin/true"]), &env_bytes());
    let mut cmd = Run::user(&[name, "/bin/true"]).backend(Backend::Helper).command();
    cmd.stdin(Stdio::null());
    let front = timed(cmd, RUN_TIMEOUT);
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
