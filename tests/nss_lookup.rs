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
