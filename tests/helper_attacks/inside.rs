//! What the command inherits from the helper: the caller's ids and groups,
//! no capabilities, `no_new_privs`, the same process, and setuid programs
//! that gain nothing unless the admin chose `allow_setuid`.

use std::fs::{self, Permissions};
use std::os::unix::fs::{chown, PermissionsExt};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::*;

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

per_backend! {
    fn setuid_root_program_inside_keeps_the_callers_uid(b) {
        setuid_programs_gain_nothing(b);
    }
}

#[test]
fn command_runs_with_no_capabilities_no_new_privs_and_only_the_callers_ids() {
    require_setup();
    let d = TestDistro::standard("status");
    let out = Run::user(&[&d.name, "/bin/cat", "/proc/self/status"]).backend(Backend::Helper).output();
    out.assert_ok();
    assert_unprivileged_status(&out.stdout_str());

    let out = with_env_on_stdin(&helper_args(&[&d.name, "/bin/cat", "/proc/self/status"]), &env_bytes());
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
    let out =
        with_env_on_stdin(&helper_args(&["--extra-volume", "/tmp", &d.name, "/bin/true"]), &env_bytes());
    assert_refused(&out, &[]);
    assert_no_host_mounts(&copy.path);
}
