//! The setuid helper's mount namespace counts against the caller's quota,
//! not root's.
//!
//! The kernel charges a new mount namespace to the effective uid that
//! creates it, up to `user.max_mnt_namespaces` per user. Were the helper to
//! create it as root, a user who keeps namespaces alive (a command can pass
//! `/proc/self/ns/mnt` out over a socket) could use up root's quota, and
//! with it every other user's helper and root's own `unshare -m`.
//!
//! The limit cannot be lowered for a cheap test: that needs `CAP_SYS_RESOURCE`,
//! which root lacks on the test machines. So this test fills root's quota
//! for real, holding every mount namespace root may have, and then runs the
//! helper as the test user: it must still work. It is a test binary of its
//! own so that no other test runs while root cannot create a namespace.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use distrorun_testkit::*;

/// Fills root's quota of mount namespaces and holds it until dropped.
struct Hoard {
    child: std::process::Child,
    held: u64,
}

impl Hoard {
    fn fill() -> Hoard {
        let dir = TempDir::new_in(TEST_ROOT, "hoarder");
        let bin = compile_support(&dir.path, "mntns_hoarder", &[]);
        let mut child = Command::new(&bin)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start mntns_hoarder");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).expect("read from mntns_hoarder");
        let held = line
            .strip_prefix("exhausted ")
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("mntns_hoarder did not fill the quota: {line:?}"));
        Hoard { child, held }
    }
}

impl Drop for Hoard {
    fn drop(&mut self) {
        // Closing its stdin lets it go; the namespaces die with its children.
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

fn root_can_unshare() -> bool {
    Command::new("unshare").args(["-m", "true"]).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
}

#[test]
fn helper_mount_namespace_is_charged_to_the_caller_not_root() {
    require_setup();
    let d = TestDistro::standard("ns-quota");
    let hoard = Hoard::fill();
    assert!(!root_can_unshare(), "root's quota should be full after {} namespaces", hoard.held);
    let out = Run::user(&["--backend", "helper", &d.name, "/bin/true"]).output();
    let direct_ok = out.code == Some(0);
    drop(hoard);
    assert!(direct_ok, "with root's quota full, the helper failed for the user:\n{}", out.report());
    // The namespaces are freed as their holders exit; wait so that nothing
    // after this test finds root's quota still full.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !root_can_unshare() {
        assert!(Instant::now() < deadline, "root's mount namespace quota was not released");
        std::thread::sleep(Duration::from_millis(50));
    }
}
