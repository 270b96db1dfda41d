//! The trust checks the setuid helper applies before it believes a path, as
//! sudo does for sudoers: every directory passed through from `/`, and the
//! final file or directory, must be owned by root and writable by neither
//! group nor others. Otherwise a local user could swap what the path names.
//!
//! The walk opens one component at a time with `O_NOFOLLOW` and checks each
//! with `fstat` on the open descriptor, so what is checked is what is used.
//! A symlink met on the way is followed: it sits in a directory already found
//! trusted, so only root can have placed it; its target is walked and
//! checked the same way.

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat, readlinkat, OFlag};
use nix::sys::stat::{fstat, FileStat, Mode, SFlag};

use crate::Error;

/// Symlinks followed in one walk before giving up, as the kernel's ELOOP.
const MAX_SYMLINKS: usize = 40;

/// Opens a regular file for reading after checking it and its directories.
pub fn open_trusted_file(path: &Path) -> Result<OwnedFd, Error> {
    walk(path, Want::File)
}

/// Opens a directory (`O_PATH`) after checking it and its parents.
pub fn open_trusted_dir(path: &Path) -> Result<OwnedFd, Error> {
    walk(path, Want::Dir)
}

#[derive(Clone, Copy, PartialEq)]
enum Want {
    File,
    Dir,
}

fn walk(path: &Path, want: Want) -> Result<OwnedFd, Error> {
    walk_components(path, want).map_err(|e| for_requested(path, e))
}

fn walk_components(path: &Path, want: Want) -> Result<OwnedFd, Error> {
    if !path.is_absolute() {
        return Err(Error::Untrusted { path: path.into(), why: "it is not an absolute path".into() });
    }
    let path_flags = OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let mut pending: VecDeque<OsString> = components(path);
    let mut shown = PathBuf::from("/");
    let mut cur = open_root()?;
    let mut hops = 0;
    while let Some(comp) = pending.pop_front() {
        let last = pending.is_empty();
        let next_shown = if comp == ".." {
            shown.parent().unwrap_or(Path::new("/")).to_path_buf()
        } else {
            shown.join(&comp)
        };
        let fd = openat(cur.as_fd(), comp.as_os_str(), path_flags, Mode::empty())
            .map_err(|e| Error::io("open", &next_shown, e))?;
        let st = fstat(&fd).map_err(|e| Error::io("stat", &next_shown, e))?;
        match SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT {
            SFlag::S_IFLNK => {
                hops += 1;
                if hops > MAX_SYMLINKS {
                    return Err(Error::io("resolve", path, Errno::ELOOP));
                }
                let target = readlinkat(cur.as_fd(), comp.as_os_str())
                    .map_err(|e| Error::io("read symlink", &next_shown, e))?;
                let target = Path::new(&target);
                let mut spliced = components(target);
                spliced.extend(pending);
                pending = spliced;
                if target.is_absolute() {
                    cur = open_root()?;
                    shown = PathBuf::from("/");
                }
            }
            SFlag::S_IFDIR => {
                check_owner_and_mode(&st, &next_shown)?;
                if last && want == Want::File {
                    return Err(untrusted(&next_shown, "it is a directory, not a file"));
                }
                cur = fd;
                shown = next_shown;
            }
            SFlag::S_IFREG if last && want == Want::File => {
                check_owner_and_mode(&st, &next_shown)?;
                return reopen_for_reading(cur.as_fd(), &comp, &st, &next_shown);
            }
            _ => return Err(untrusted(&next_shown, "it is not a directory or a regular file")),
        }
    }
    match want {
        Want::Dir => Ok(cur),
        Want::File => Err(untrusted(path, "it is a directory, not a file")),
    }
}

fn open_root() -> Result<OwnedFd, Error> {
    let fd = nix::fcntl::open("/", OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(|e| Error::io("open", "/", e))?;
    let st = fstat(&fd).map_err(|e| Error::io("stat", "/", e))?;
    check_owner_and_mode(&st, Path::new("/"))?;
    Ok(fd)
}

/// The components of `path` as names to open, `/` dropped and `.` skipped.
fn components(path: &Path) -> VecDeque<OsString> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some(OsStr::from_bytes(b"..").to_os_string()),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
        })
        .collect()
}

/// Owned by root, and writable by neither group nor others.
pub fn check_owner_and_mode(st: &FileStat, path: &Path) -> Result<(), Error> {
    let why = if st.st_uid != 0 {
        format!("is owned by uid {}, not by root", st.st_uid)
    } else if st.st_mode & 0o002 != 0 {
        "is writable by others".to_owned()
    } else if st.st_mode & 0o020 != 0 {
        "is writable by its group".to_owned()
    } else {
        return Ok(());
    };
    Err(Error::Untrusted { path: path.into(), why: format!("it {why}") })
}

/// Names the path that was asked for and, when another one failed the check
/// on the way to it, that one too.
fn for_requested(requested: &Path, err: Error) -> Error {
    match err {
        Error::Untrusted { path, why } if path != requested => Error::Untrusted {
            path: requested.into(),
            why: format!("{}{}", path.display(), why.strip_prefix("it").unwrap_or(&format!(": {why}"))),
        },
        other => other,
    }
}

/// The checked `O_PATH` descriptor cannot be read, so the file is opened again
/// by name and must still be the very inode that was checked.
fn reopen_for_reading(
    dir: std::os::fd::BorrowedFd,
    name: &OsStr,
    checked: &FileStat,
    shown: &Path,
) -> Result<OwnedFd, Error> {
    let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC | OFlag::O_NOCTTY;
    let fd = openat(dir, name, flags, Mode::empty()).map_err(|e| Error::io("open", shown, e))?;
    let st = fstat(&fd).map_err(|e| Error::io("stat", shown, e))?;
    if (st.st_dev, st.st_ino) != (checked.st_dev, checked.st_ino) {
        return Err(untrusted(shown, "it changed while it was being checked"));
    }
    Ok(fd)
}

fn untrusted(path: &Path, why: &str) -> Error {
    Error::Untrusted { path: path.into(), why: why.into() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_owned_system_paths_are_trusted() {
        // Root-owned and not group- or world-writable on every Debian system,
        // and so is every directory above them.
        open_trusted_file(Path::new("/etc/passwd")).unwrap();
        open_trusted_dir(Path::new("/usr/bin")).unwrap();
    }

    #[test]
    fn world_writable_directories_are_refused() {
        let err = open_trusted_dir(Path::new("/tmp")).unwrap_err().to_string();
        assert_eq!(err, "refusing to trust /tmp: it is writable by others");
    }

    #[test]
    fn the_failing_component_and_the_requested_path_are_both_named() {
        let err = open_trusted_dir(Path::new("/tmp/x/y")).unwrap_err().to_string();
        assert_eq!(err, "refusing to trust /tmp/x/y: /tmp is writable by others");
    }

    #[test]
    fn relative_paths_are_refused() {
        assert!(open_trusted_dir(Path::new("etc")).is_err());
    }

    #[test]
    fn a_directory_is_not_accepted_as_a_file() {
        let err = open_trusted_file(Path::new("/usr")).unwrap_err().to_string();
        assert!(err.contains("is a directory"), "{err}");
    }
}
