//! Configs, guest copies and scratch directories, each removed when dropped.

use std::fs;
use std::os::unix::fs::{chown, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::setup::require_setup;
use crate::{home_of, host_mounts_under, unique, user_ids, CONF_DIR, GUEST, ROOTS_DIR, STANDARD_VOLUMES};

fn write_root_file(path: &Path, contents: &[u8], mode: u32) {
    fs::write(path, contents).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    chown(path, Some(0), Some(0)).unwrap_or_else(|e| panic!("chown {}: {e}", path.display()));
    chmod(path, mode);
}

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {mode:o} {}: {e}", path.display()));
}

/// A config in RON with `dir`, `mapped_volumes` and any further keys.
pub fn ron_config(dir: &Path, volumes: &str, extra_keys: &str) -> String {
    format!(
        "(\n    dir: {:?},\n    mapped_volumes: {volumes},\n    {extra_keys}\n)\n",
        dir.to_str().expect("test paths are UTF-8")
    )
}

/// A system config `CONF_DIR/NAME.conf` (root-owned 0644), removed on drop.
#[derive(Debug)]
pub struct TestDistro {
    pub name: String,
    pub conf: PathBuf,
}

impl TestDistro {
    /// `ron` is written verbatim.
    pub fn with_config(tag: &str, ron: &str) -> TestDistro {
        require_setup();
        let name = unique(tag);
        let conf = Path::new(CONF_DIR).join(format!("{name}.conf"));
        write_root_file(&conf, ron.as_bytes(), 0o644);
        TestDistro { name, conf }
    }

    /// The shared guest with the standard volumes.
    pub fn standard(tag: &str) -> TestDistro {
        Self::with_dir(tag, Path::new(GUEST), "")
    }

    /// `dir` with the standard volumes, plus `extra_keys` (each ending in a
    /// comma, e.g. `allow_setuid: true,`).
    pub fn with_dir(tag: &str, dir: &Path, extra_keys: &str) -> TestDistro {
        Self::with_config(tag, &ron_config(dir, STANDARD_VOLUMES, extra_keys))
    }

    /// `dir` with the given volume list (RON text) and extra keys.
    pub fn with_volumes(tag: &str, dir: &Path, volumes: &str, extra_keys: &str) -> TestDistro {
        Self::with_config(tag, &ron_config(dir, volumes, extra_keys))
    }
}

impl Drop for TestDistro {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.conf);
    }
}

/// A per-user config ~USER/.config/distrorun.d/NAME.conf owned by the user,
/// removed on drop.
#[derive(Debug)]
pub struct UserDistro {
    pub name: String,
    pub conf: PathBuf,
}

impl UserDistro {
    pub fn new(user: &str, name: &str, ron: &str) -> UserDistro {
        require_setup();
        let (uid, gid) = user_ids(user);
        let mut dir = home_of(user);
        for part in [".config", "distrorun.d"] {
            dir.push(part);
            match fs::create_dir(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => panic!("cannot create {}: {e}", dir.display()),
            }
            chown(&dir, Some(uid), Some(gid)).unwrap_or_else(|e| panic!("chown {}: {e}", dir.display()));
            chmod(&dir, 0o755);
        }
        let conf = dir.join(format!("{name}.conf"));
        fs::write(&conf, ron).unwrap_or_else(|e| panic!("cannot write {}: {e}", conf.display()));
        chown(&conf, Some(uid), Some(gid)).unwrap_or_else(|e| panic!("chown {}: {e}", conf.display()));
        chmod(&conf, 0o644);
        UserDistro { name: name.to_owned(), conf }
    }

    /// The test user's own config for the shared guest with the standard
    /// volumes, under a fresh name.
    pub fn standard(tag: &str) -> UserDistro {
        Self::new(crate::USER, &unique(tag), &ron_config(Path::new(GUEST), STANDARD_VOLUMES, ""))
    }
}

impl Drop for UserDistro {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.conf);
    }
}

/// A hard-linked copy of the guest (`cp -al`) under `ROOTS_DIR`, root-owned,
/// that a test may change by adding or removing entries. Files are shared
/// with the guest, so they must never be written in place. Removed on drop,
/// unless something is mounted below it.
#[derive(Debug)]
pub struct GuestCopy {
    pub path: PathBuf,
}

impl GuestCopy {
    pub fn new(tag: &str) -> GuestCopy {
        require_setup();
        let path = Path::new(ROOTS_DIR).join(unique(tag));
        let out = Command::new("cp").arg("-al").arg(GUEST).arg(&path).output().expect("cannot run cp");
        assert!(
            out.status.success(),
            "cp -al {GUEST} {} failed: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        GuestCopy { path }
    }

    /// Creates a directory (and its parents) inside the copy, root-owned 0755.
    pub fn mkdir(&self, inside: &str) -> PathBuf {
        let p = self.inside(inside);
        fs::create_dir_all(&p).unwrap_or_else(|e| panic!("mkdir -p {}: {e}", p.display()));
        p
    }

    /// The host path of an absolute path inside the copy.
    pub fn inside(&self, inside: &str) -> PathBuf {
        self.path.join(inside.trim_start_matches('/'))
    }
}

impl Drop for GuestCopy {
    fn drop(&mut self) {
        let mounts = host_mounts_under(&self.path);
        if !mounts.is_empty() {
            // Deleting now would delete through the mounts into host data.
            eprintln!(
                "NOT removing {}: mounts below it on the host:\n{}",
                self.path.display(),
                mounts.join("\n")
            );
            return;
        }
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// A fresh directory, by default root-owned 0755, removed on drop unless
/// something is still mounted below it (then `ci/test-setup` reports it).
#[derive(Debug)]
pub struct TempDir {
    pub path: PathBuf,
}

impl TempDir {
    /// Under /tmp, which the standard volumes map into the guest.
    pub fn new(tag: &str) -> TempDir {
        Self::new_in("/tmp", tag)
    }

    /// Under `parent`: /var/tmp is not mapped into the guest, and `TEST_ROOT`
    /// is a trusted path on a filesystem that honours setuid bits.
    pub fn new_in(parent: &str, tag: &str) -> TempDir {
        let path = Path::new(parent).join(format!("distrorun-test-{}", unique(tag)));
        fs::create_dir(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        chmod(&path, 0o755);
        TempDir { path }
    }

    /// Under /tmp at a fixed name, emptied first: for what a test binary
    /// keeps in a static, whose `Drop` never runs, so that runs leave at
    /// most one copy behind rather than one each.
    pub fn fixed(tag: &str) -> TempDir {
        let path = Path::new("/tmp").join(format!("distrorun-test-{tag}"));
        if fs::symlink_metadata(&path).is_ok() {
            assert!(host_mounts_under(&path).is_empty(), "{} has mounts below it", path.display());
            fs::remove_dir_all(&path).unwrap_or_else(|e| panic!("rm -r {}: {e}", path.display()));
        }
        fs::create_dir(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        chmod(&path, 0o755);
        TempDir { path }
    }

    /// Under /tmp, owned by `user`: a place that user controls, e.g. for
    /// marker files left by commands run as that user.
    pub fn owned_by(user: &str, tag: &str) -> TempDir {
        let d = Self::new(tag);
        let (uid, gid) = user_ids(user);
        chown(&d.path, Some(uid), Some(gid)).unwrap_or_else(|e| panic!("chown {}: {e}", d.path.display()));
        d
    }

    /// The same directory with another mode, e.g. 0700 to keep the test
    /// users out, or 0777 to let them in.
    pub fn with_mode(self, mode: u32) -> TempDir {
        chmod(&self.path, mode);
        self
    }

    pub fn join(&self, p: impl AsRef<Path>) -> PathBuf {
        self.path.join(p)
    }

    /// The directory's path as &str (test paths are UTF-8).
    pub fn str(&self) -> &str {
        self.path.to_str().expect("test paths are UTF-8")
    }

    /// Writes a root-owned file with the given mode and group.
    pub fn file(&self, name: &str, contents: &[u8], mode: u32, gid: u32) -> PathBuf {
        let p = self.join(name);
        write_root_file(&p, contents, mode);
        chown(&p, Some(0), Some(gid)).unwrap_or_else(|e| panic!("chown {}: {e}", p.display()));
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if host_mounts_under(&self.path).is_empty() {
            let _ = fs::remove_dir_all(&self.path);
        } else {
            eprintln!("NOT removing {}: mounts below it", self.path.display());
        }
    }
}

/// Paths removed on drop: files, symlinks, FIFOs and directories that a
/// test placed next to shared state.
#[derive(Debug)]
pub struct Remove(pub Vec<PathBuf>);

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
