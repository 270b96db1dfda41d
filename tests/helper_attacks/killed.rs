//! Killed at any moment: whenever the caller kills the helper (or the front
//! end), no mount is left in the host and no process of the caller's holds
//! root.

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::process::Stdio;
use std::thread;
use std::time::{Duration, Instant};

use super::*;

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

/// SIGKILLs a run after each of a series of delays covering start-up, then
/// checks that nothing was left mounted in the host and that no process of
/// the caller is left holding root.
fn kill_at_every_step(tag: &str, via_front_end: bool) {
    require_setup();
    let _lock = other_user_lock();
    let copy = GuestCopy::new(tag);
    let d = TestDistro::with_dir(tag, &copy.path, "");
    let env = EnvFd::sealed_memfd(&env_bytes());
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
