//! Removing trees by descriptors: for `distrorun --remove`, for the
//! leftovers of an interrupted create, and for the replacing and whiteouts
//! of the unpacker.
//!
//! Every directory is opened relative to its parent's descriptor with
//! `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_XDEV)` (or,
//! before Linux 5.6, the engine's walk that means the same), so a
//! symlink is only ever unlinked, never followed, and a mount point (a bind
//! mount of the same file system included) is never entered; its device is
//! checked too. What cannot be removed for that reason is reported.

use std::ffi::{CStr, OsStr};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use distrorun_engine::resolve;
use distrorun_engine::Error;
use nix::dir::Dir;
use nix::errno::Errno;
use nix::fcntl::{OFlag, ResolveFlag};
use nix::sys::stat::{fstat, Mode, SFlag};
use nix::unistd::{unlinkat, UnlinkatFlags};

/// Removes the directory `name` in `parent` and everything below it.
/// Mount points below it are left in place, and so are their parents: the
/// call then fails with EBUSY.
pub fn remove_tree_at(parent: &OwnedFd, name: &OsStr) -> Result<(), Errno> {
    let mut walk = Walk::default();
    let mut path = name.as_bytes().to_vec();
    remove_dir(parent, name, &mut path, &mut walk)?;
    if walk.left.is_empty() {
        Ok(())
    } else {
        Err(Errno::EBUSY)
    }
}

/// Empties the directory `dir`, keeping the entries for which `keep` is
/// true. Fails with EBUSY if a mount point had to be left.
pub fn empty_dir(dir: &OwnedFd, keep: &dyn Fn(&[u8]) -> bool) -> Result<(), Errno> {
    let mut walk = Walk::default();
    empty(dir, &mut Vec::new(), &mut walk, keep)?;
    if walk.left.is_empty() {
        Ok(())
    } else {
        Err(Errno::EBUSY)
    }
}

/// What a removal left: mount points it did not cross, and the path where
/// it failed, if it did.
#[derive(Default)]
struct Walk {
    left: Vec<Vec<u8>>,
    failed: Option<Vec<u8>>,
}

fn open_subdir(parent: &OwnedFd, name: &OsStr) -> Result<OwnedFd, Errno> {
    resolve::open(
        parent,
        Path::new(name),
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS | ResolveFlag::RESOLVE_NO_XDEV,
    )
}

/// Removes directory `name` in `parent`; `path` names it for the report,
/// `left` collects mount points that were not crossed.
fn remove_dir(parent: &OwnedFd, name: &OsStr, path: &mut Vec<u8>, walk: &mut Walk) -> Result<(), Errno> {
    let parent_dev = fstat(parent)?.st_dev;
    let dir = match open_subdir(parent, name) {
        Ok(dir) => dir,
        Err(Errno::EXDEV) => {
            walk.left.push(path.clone());
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    if fstat(&dir)?.st_dev != parent_dev {
        walk.left.push(path.clone());
        return Ok(());
    }
    let before = walk.left.len();
    empty(&dir, path, walk, &|_| false)?;
    if walk.left.len() > before {
        return Ok(());
    }
    match unlinkat(parent, name, UnlinkatFlags::RemoveDir) {
        // A mount point the walk could not see as one (an empty one).
        Err(Errno::EBUSY) => {
            walk.left.push(path.clone());
            Ok(())
        }
        other => other,
    }
}

fn empty(
    dir: &OwnedFd,
    path: &mut Vec<u8>,
    walk: &mut Walk,
    keep: &dyn Fn(&[u8]) -> bool,
) -> Result<(), Errno> {
    let names = list(dir)?;
    for (name, is_dir) in names {
        if keep(&name) {
            continue;
        }
        let os = OsStr::from_bytes(&name);
        let len = path.len();
        if !path.is_empty() {
            path.push(b'/');
        }
        path.extend_from_slice(&name);
        let result = if is_dir {
            remove_dir(dir, os, path, walk)
        } else {
            match unlinkat(dir, os, UnlinkatFlags::NoRemoveDir) {
                // A directory after all (the type was unknown), or a file
                // mount point.
                Err(Errno::EISDIR) => remove_dir(dir, os, path, walk),
                Err(Errno::EBUSY) => {
                    walk.left.push(path.clone());
                    Ok(())
                }
                other => other,
            }
        };
        if result.is_err() && walk.failed.is_none() {
            walk.failed = Some(path.clone());
        }
        path.truncate(len);
        result?;
    }
    Ok(())
}

/// The entries of `dir` other than `.` and `..`, with whether each is a
/// directory, read in one pass before anything is removed.
pub fn entries(dir: &OwnedFd) -> Result<Vec<(Vec<u8>, bool)>, Errno> {
    list(dir)
}

fn list(dir: &OwnedFd) -> Result<Vec<(Vec<u8>, bool)>, Errno> {
    let reopened =
        nix::fcntl::openat(dir, ".", OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())?;
    let mut d = Dir::from_fd(reopened)?;
    let mut out = Vec::new();
    let mut unknown = Vec::new();
    for entry in d.iter() {
        let entry = entry?;
        let name: &CStr = entry.file_name();
        let bytes = name.to_bytes();
        if bytes == b"." || bytes == b".." {
            continue;
        }
        match entry.file_type() {
            Some(t) => out.push((bytes.to_vec(), t == nix::dir::Type::Directory)),
            None => unknown.push(bytes.to_vec()),
        }
    }
    // File systems that do not report the type in the entry.
    for name in unknown {
        let is_dir =
            nix::sys::stat::fstatat(dir, OsStr::from_bytes(&name), nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)
                .is_ok_and(|st| SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR);
        out.push((name, is_dir));
    }
    Ok(out)
}

/// Removes `parent/name` by descriptors, reporting what had to stay.
pub fn remove_leftover(parent_fd: &OwnedFd, name: &Path, parent: &Path) -> Result<(), Error> {
    // The tree's layer record goes first: one left without its tree would
    // be reaped only with a later tree of the same inode.
    super::layers::reap_of(parent_fd, parent, name)?;
    let mut walk = Walk::default();
    let mut path = name.as_os_str().as_bytes().to_vec();
    remove_dir(parent_fd, name.as_os_str(), &mut path, &mut walk).map_err(|e| {
        let failed = walk.failed.as_deref().unwrap_or(name.as_os_str().as_bytes());
        Error::sys(format!("remove {}", parent.join(OsStr::from_bytes(failed)).display()), e)
    })?;
    match walk.left.first() {
        None => Ok(()),
        Some(first) => {
            let first = parent.join(OsStr::from_bytes(first));
            Err(Error::msg(format!(
                "removed all but {} mount point(s) in {}, such as {}: distrorun never crosses a mount point",
                walk.left.len(),
                parent.join(name).display(),
                first.display()
            ))
            .with_hint(format!("unmount it, then delete {}", parent.join(name).display())))
        }
    }
}

/// Deletes the tree `entry` of `parent` that the marker `key` names, and
/// then the marker; refuses, with its path, one the marker does not name.
pub fn reap_marked(parent_fd: &OwnedFd, parent: &Path, key: &str, entry: &Path) -> Result<(), Error> {
    super::marker::require(parent_fd, parent, key, &entry.to_string_lossy())?;
    remove_leftover(parent_fd, entry, parent)?;
    super::marker::unmark(parent_fd, parent, key)
}
