//! Lookups confined to a directory, as `openat2` (Linux 5.6) makes them,
//! and the same lookups by hand on older kernels, after the first `ENOSYS`.
//!
//! [`open`] takes `openat2`'s own resolve flags. The walk that stands in for
//! it understands the ones distrorun uses, with the same meaning:
//!
//! - `RESOLVE_IN_ROOT`: the directory is `/`. An absolute path or absolute
//!   symlink starts again there, and `..` there stays there.
//! - `RESOLVE_BENEATH`: an absolute path or symlink, or `..` at the
//!   directory, fails with `EXDEV`.
//! - `RESOLVE_NO_SYMLINKS`: any symlink on the way fails with `ELOOP`; a
//!   last one is opened as itself with `O_PATH | O_NOFOLLOW`, and is
//!   otherwise refused as `openat` refuses it with `O_NOFOLLOW`.
//! - `RESOLVE_NO_MAGICLINKS`: always in force in the walk, and stricter
//!   there: every symlink that lies on procfs (where all magic links live)
//!   fails with `ELOOP`, ordinary ones such as `/proc/self` included.
//! - `RESOLVE_NO_XDEV`: entering another mount fails with `EXDEV`. Each
//!   object opened is compared with the start by device and by the mount
//!   id `/proc/self/fdinfo` gives its descriptor (there since Linux 3.15;
//!   `statx` has it only since 5.8), so a mount of another file system and
//!   a bind mount of the same one, even of a directory onto itself, are
//!   both caught, with no race: a descriptor's mount never changes. Not
//!   caught: an automount point is triggered before it is refused (the
//!   kernel refuses it untriggered), and without `/proc` the lookup fails
//!   with the error of reading it rather than going on unchecked.
//!
//! Each component is opened with `O_PATH | O_NOFOLLOW` relative to the one
//! before and checked with `fstat`, so a symlink is always seen as itself
//! and read through its own descriptor. `..` never asks the file system:
//! the walk keeps the descriptors of the directories it came through and
//! goes back to the one before, which is where the kernel's `..` leads too
//! when nothing is renamed meanwhile; when something is, the walk still
//! stays below the start (the kernel returns `EAGAIN` instead). Other
//! differences, all refusals of what no caller asks for: `O_CREAT` and
//! `O_TMPFILE` (`EINVAL`), and paths that go more than [`MAX_DEPTH`]
//! directories deep (`ENAMETOOLONG`), as each level holds a descriptor.

use std::ffi::OsStr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use nix::errno::Errno;
use nix::fcntl::{openat, openat2, readlinkat, AtFlags, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{fstat, fstatat, FileStat, Mode, SFlag};
use nix::sys::statfs::{fstatfs, PROC_SUPER_MAGIC};

/// The most symlinks one lookup may pass through, as the kernel's own.
const MAX_SYMLINKS: usize = 40;
/// The deepest a walk goes, in directories held open at once.
pub const MAX_DEPTH: usize = 1024;
/// `PATH_MAX`, the terminating NUL included.
const PATH_MAX: usize = 4096;

/// Set by the first `ENOSYS` from `openat2`.
static NO_OPENAT2: AtomicBool = AtomicBool::new(false);

/// Opens `path` relative to `dir` with open flags `flags` and `openat2`'s
/// `resolve` flags: with `openat2` while the kernel has it, by the walk this
/// module describes after its first `ENOSYS` (and for a lookup `openat2`
/// gives up on with `EAGAIN`). `resolve` must hold `RESOLVE_IN_ROOT` or
/// `RESOLVE_BENEATH`.
pub fn open(dir: &impl AsFd, path: &Path, flags: OFlag, resolve: ResolveFlag) -> Result<OwnedFd, Errno> {
    if !NO_OPENAT2.load(Ordering::Relaxed) {
        let how = OpenHow::new().flags(flags | OFlag::O_CLOEXEC).resolve(resolve);
        match openat2(dir.as_fd(), path, how) {
            Err(Errno::ENOSYS) => NO_OPENAT2.store(true, Ordering::Relaxed),
            // A rename anywhere raced a `..` the kernel could not vouch
            // for; the walk, which never looks `..` up, answers instead.
            Err(Errno::EAGAIN) => {}
            other => return other,
        }
    }
    walk(dir.as_fd(), path, flags | OFlag::O_CLOEXEC, resolve)
}

/// Whether [`open`] has fallen back to the walk in this process.
pub fn walking() -> bool {
    NO_OPENAT2.load(Ordering::Relaxed)
}

/// Where a walk started, for `RESOLVE_NO_XDEV`.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Mount {
    dev: u64,
    id: u64,
}

impl Mount {
    fn of(fd: BorrowedFd) -> Result<Mount, Errno> {
        Ok(Mount { dev: fstat(fd)?.st_dev, id: mount_id(fd)? })
    }
}

/// The id of the mount `fd` lies on, from `/proc/self/fdinfo`.
fn mount_id(fd: BorrowedFd) -> Result<u64, Errno> {
    let text = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd()))
        .map_err(|e| e.raw_os_error().map_or(Errno::EIO, Errno::from_raw))?;
    text.lines()
        .find_map(|l| l.strip_prefix("mnt_id:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or(Errno::EOPNOTSUPP)
}

fn file_type(st: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT
}

fn is_symlink_at(dir: BorrowedFd, name: &OsStr) -> bool {
    fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW).is_ok_and(|st| file_type(&st) == SFlag::S_IFLNK)
}

/// Queues the components of `path` so that the first pops first. `.` stays,
/// and a path that ends in `/` gets a last one: the name before it is then
/// not the last, so it must be a directory, followed if it is a symlink.
/// Says whether `path` is absolute.
fn queue(todo: &mut Vec<Vec<u8>>, path: &[u8]) -> bool {
    if path.len() > 1 && path.ends_with(b"/") {
        todo.push(b".".to_vec());
    }
    for part in path.split(|b| *b == b'/').rev() {
        if !part.is_empty() {
            todo.push(part.to_vec());
        }
    }
    path.first() == Some(&b'/')
}

/// The walk that stands in for `openat2` (see the module's comment).
pub fn walk(dir: BorrowedFd, path: &Path, flags: OFlag, resolve: ResolveFlag) -> Result<OwnedFd, Errno> {
    let known = ResolveFlag::RESOLVE_IN_ROOT
        | ResolveFlag::RESOLVE_BENEATH
        | ResolveFlag::RESOLVE_NO_SYMLINKS
        | ResolveFlag::RESOLVE_NO_MAGICLINKS
        | ResolveFlag::RESOLVE_NO_XDEV;
    let in_root = resolve.contains(ResolveFlag::RESOLVE_IN_ROOT);
    if !known.contains(resolve)
        || in_root == resolve.contains(ResolveFlag::RESOLVE_BENEATH)
        || flags.contains(OFlag::O_CREAT)
        || flags.contains(OFlag::O_TMPFILE)
    {
        return Err(Errno::EINVAL);
    }
    let bytes = path.as_os_str().as_bytes();
    if bytes.is_empty() {
        return Err(Errno::ENOENT);
    }
    if bytes.len() >= PATH_MAX {
        return Err(Errno::ENAMETOOLONG);
    }
    let mut walk = Walk {
        dir,
        dirs: Vec::new(),
        todo: Vec::new(),
        links: 0,
        in_root,
        no_symlinks: resolve.contains(ResolveFlag::RESOLVE_NO_SYMLINKS),
        start: if resolve.contains(ResolveFlag::RESOLVE_NO_XDEV) { Some(Mount::of(dir)?) } else { None },
    };
    walk.queue(bytes)?;
    while let Some(part) = walk.todo.pop() {
        let last = walk.todo.is_empty();
        let name = OsStr::from_bytes(&part);
        let link = match part.as_slice() {
            b"." => continue,
            b".." => {
                if walk.dirs.pop().is_none() && !walk.in_root {
                    return Err(Errno::EXDEV);
                }
                continue;
            }
            _ if last => match walk.open_last(name, flags)? {
                Last::Opened(fd) => return Ok(fd),
                Last::Symlink(link) => link,
            },
            _ => match walk.enter(name)? {
                Some(link) => Some(link),
                None => continue,
            },
        };
        walk.follow(name, link.as_ref())?;
    }
    // The path ended in `.`, `..` or `/`: it names the directory reached.
    openat(walk.cur(), ".", flags, Mode::empty())
}

/// A walk under way.
struct Walk<'a> {
    dir: BorrowedFd<'a>,
    /// The directories passed through below `dir`, the current one last.
    dirs: Vec<OwnedFd>,
    /// The components still to walk, the next one last.
    todo: Vec<Vec<u8>>,
    links: usize,
    in_root: bool,
    no_symlinks: bool,
    /// Where the walk started, when it may not leave that mount.
    start: Option<Mount>,
}

/// What the last component came to.
enum Last {
    Opened(OwnedFd),
    /// A symlink to follow, with its descriptor if the open returned one.
    Symlink(Option<OwnedFd>),
}

impl Walk<'_> {
    fn cur(&self) -> BorrowedFd<'_> {
        self.dirs.last().map_or(self.dir, AsFd::as_fd)
    }

    fn same_mount(&self, fd: &OwnedFd) -> Result<(), Errno> {
        match self.start {
            Some(start) if Mount::of(fd.as_fd())? != start => Err(Errno::EXDEV),
            _ => Ok(()),
        }
    }

    /// Queues `path`; an absolute one starts again at `dir`, or fails with
    /// `EXDEV` under `RESOLVE_BENEATH`.
    fn queue(&mut self, path: &[u8]) -> Result<(), Errno> {
        if queue(&mut self.todo, path) {
            if !self.in_root {
                return Err(Errno::EXDEV);
            }
            self.dirs.clear();
        }
        Ok(())
    }

    /// Opens the last component with the caller's flags. Only a symlink
    /// fails with `ELOOP` (or `ENOTDIR` with `O_DIRECTORY`) for the
    /// `O_NOFOLLOW` added here, and it is followed unless the caller's own
    /// flags have `O_NOFOLLOW`; with `O_PATH` it comes back as itself.
    fn open_last(&self, name: &OsStr, flags: OFlag) -> Result<Last, Errno> {
        let follow = !flags.contains(OFlag::O_NOFOLLOW);
        match openat(self.cur(), name, flags | OFlag::O_NOFOLLOW, Mode::empty()) {
            Ok(fd) if follow && file_type(&fstat(&fd)?) == SFlag::S_IFLNK => Ok(Last::Symlink(Some(fd))),
            Ok(fd) => {
                self.same_mount(&fd)?;
                Ok(Last::Opened(fd))
            }
            Err(Errno::ELOOP | Errno::ENOTDIR) if follow && is_symlink_at(self.cur(), name) => {
                Ok(Last::Symlink(None))
            }
            Err(e) => Err(e),
        }
    }

    /// Goes into the directory `name`, or returns the symlink it is.
    fn enter(&mut self, name: &OsStr) -> Result<Option<OwnedFd>, Errno> {
        let fd =
            openat(self.cur(), name, OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC, Mode::empty())?;
        match file_type(&fstat(&fd)?) {
            SFlag::S_IFDIR => {
                self.same_mount(&fd)?;
                if self.dirs.len() >= MAX_DEPTH {
                    return Err(Errno::ENAMETOOLONG);
                }
                self.dirs.push(fd);
                Ok(None)
            }
            SFlag::S_IFLNK => Ok(Some(fd)),
            _ => Err(Errno::ENOTDIR),
        }
    }

    /// Follows the symlink `name` in the current directory, read through
    /// `link`, its own descriptor, where the walk has one.
    fn follow(&mut self, name: &OsStr, link: Option<&OwnedFd>) -> Result<(), Errno> {
        self.links += 1;
        if self.no_symlinks
            || self.links > MAX_SYMLINKS
            || fstatfs(self.cur())?.filesystem_type() == PROC_SUPER_MAGIC
        {
            return Err(Errno::ELOOP);
        }
        let target = match link {
            Some(fd) => readlinkat(fd, "")?,
            None => readlinkat(self.cur(), name)?,
        };
        if target.is_empty() {
            return Err(Errno::ENOENT);
        }
        self.queue(target.as_bytes())
    }
}

#[cfg(test)]
mod tests;
