//! Per-user distros: `--create` from a rootfs tarball, run with real owners
//! over the test user's subordinate ids, `--root` to maintain them,
//! `--remove`, and the refusals of bad input. Everything runs as the
//! unprivileged test user, whose ranges `ci/setup.d/20-per-user.sh` sets,
//! except `--system`, which root runs.
//!
//! One module per topic; the `attacks_*` ones attack a property with
//! hostile input made by third-party tools or a short script. Each starts
//! with `use super::*;`, which brings in the test kit and the helpers below.

pub use distrorun_testkit::*;
pub use std::fs;
pub use std::os::unix::fs::{MetadataExt, PermissionsExt};
pub use std::path::{Path, PathBuf};
pub use std::process::Command;
pub use std::time::{Duration, Instant};

mod attacks_archives;
mod attacks_concurrency;
mod attacks_launcher;
mod attacks_oci;
mod attacks_origin;
mod attacks_other_users;
mod attacks_remove;
mod attacks_system;
mod debian;
mod images;
mod maintain_and_remove;
mod tarballs;

/// Made by ci/setup.d/20-per-user.sh from the guest tree.
const GUEST_TAR: &str = "/var/lib/distrorun-test/per-user/guest.tar";
const GUEST_TAR_ZST: &str = "/var/lib/distrorun-test/per-user/guest.tar.zst";

/// The user with no subordinate ids (only the second NSS module knows it).
const NO_SUBIDS_USER: &str = "distrorun-extra";

/// A test's own `XDG_DATA_HOME` and `XDG_CONFIG_HOME`, so that tests running
/// side by side never see each other's distros.
struct Homes {
    base: TempDir,
    user: &'static str,
}

impl Homes {
    fn new(tag: &str) -> Homes {
        Self::for_user(USER, tag)
    }

    fn for_user(user: &'static str, tag: &str) -> Homes {
        let base = TempDir::owned_by(user, tag);
        let (uid, gid) = user_ids(user);
        for sub in ["data", "config"] {
            let p = base.join(sub);
            fs::create_dir(&p).unwrap_or_else(|e| panic!("mkdir {}: {e}", p.display()));
            std::os::unix::fs::chown(&p, Some(uid), Some(gid)).expect("chown");
        }
        Homes { base, user }
    }

    fn run(&self, args: &[&str]) -> Run {
        Run::as_user(self.user, args)
            .env("XDG_DATA_HOME", self.base.join("data"))
            .env("XDG_CONFIG_HOME", self.base.join("config"))
            .timeout(Duration::from_secs(300))
    }

    fn tree(&self, name: &str) -> PathBuf {
        self.base.join("data/distrorun").join(name)
    }

    fn partial(&self, name: &str) -> PathBuf {
        self.base.join(format!("data/distrorun/.{name}.partial"))
    }

    fn config(&self, name: &str) -> PathBuf {
        self.base.join(format!("config/distrorun.d/{name}.conf"))
    }

    /// Quietly: the summary line is checked where it is the subject.
    fn create(&self, name: &str, tarball: &str) -> Output {
        self.run(&["-q", "--create", name, "--tarball", tarball]).output()
    }

    /// Nothing under the name, in the data or the config directory.
    #[track_caller]
    fn assert_absent(&self, name: &str) {
        assert!(fs::symlink_metadata(self.tree(name)).is_err(), "{} exists", self.tree(name).display());
        assert!(fs::symlink_metadata(self.config(name)).is_err(), "{} exists", self.config(name).display());
        let listed = self.run(&["--list"]).output();
        listed.assert_ok();
        assert!(
            !listed.stdout_str().lines().any(|l| l.split('\t').next() == Some(name)),
            "--list shows {name}:\n{}",
            listed.report()
        );
    }
}

/// The first subordinate uid and gid of `user`.
fn subid_start(user: &str) -> (u32, u32) {
    let first = |file: &str| -> u32 {
        let text = fs::read_to_string(file).unwrap_or_else(|e| panic!("cannot read {file}: {e}"));
        text.lines()
            .find_map(|l| {
                let mut f = l.split(':');
                (f.next() == Some(user)).then(|| f.next().and_then(|s| s.parse().ok())).flatten()
            })
            .unwrap_or_else(|| panic!("{user} has no range in {file}; run ci/test-setup"))
    };
    (first("/etc/subuid"), first("/etc/subgid"))
}

fn require_file(path: &str) {
    assert!(
        Path::new(path).is_file(),
        "{path} is missing: run ci/test-setup (ci/setup.d/20-per-user.sh makes it)"
    );
}

/// Builds archives with GNU tar in a root-owned scratch directory.
struct Evil {
    dir: TempDir,
}

impl Evil {
    fn new() -> Evil {
        Evil { dir: TempDir::new("evil") }
    }

    fn path(&self, name: &str) -> String {
        path_str(&self.dir.join(name)).to_owned()
    }

    fn make(&self, name: &str, script: &str) -> String {
        sh(&format!("cd {}; {script}", self.dir.str()));
        let p = self.path(name);
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).expect("chmod");
        p
    }
}

#[track_caller]
fn assert_create_refused(homes: &Homes, tarball: &str, needles: &[&str]) {
    let name = unique("bad");
    let out = homes.create(&name, tarball);
    assert_refused(&out, needles);
    homes.assert_absent(&name);
    assert!(fs::symlink_metadata(homes.partial(&name)).is_err(), "the temporary tree was left behind");
}
