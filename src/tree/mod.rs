//! Trees handled through descriptors: opening a distro's directory,
//! opening inside it as if it were `/`, removing without following a
//! symlink or crossing a mount point, and unpacking tar streams; and the
//! per-user data directory they live in: kept private, one create or
//! remove of a name at a time, and a marker on every tree distrorun made.

pub mod interrupt;
pub mod layers;
pub mod limits;
pub mod marker;
pub mod namelock;
pub mod private_dir;
mod rebuild;
pub mod remove;
mod sparse;
mod tar_guard;
pub mod unpack;
pub mod xattr_policy;

use std::os::fd::OwnedFd;
use std::path::Path;

use distrorun_engine::resolve;
use distrorun_engine::Error;
use nix::errno::Errno;
use nix::fcntl::{open, OFlag, ResolveFlag};
use nix::sys::stat::Mode;

pub use unpack::open_in_root;

/// The directory `dir` as an `O_PATH` descriptor: a handle to look up
/// paths under, which reads nothing and follows `dir` once, here.
pub fn open_path(dir: &Path) -> Result<OwnedFd, Errno> {
    open(dir, OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
}

/// The directory of distro `name`, as [`open_path`] opens it.
pub fn open_distro(dir: &Path, name: &str) -> Result<OwnedFd, Error> {
    open_path(dir)
        .map_err(|e| Error::sys(format!("open the directory {} of distro {name}", dir.display()), e))
}

/// Opens `path` for reading inside the tree `root` as the caller would see
/// it run there: resolved with `root` as `/`, so that the tree's symlinks,
/// absolute ones included, cannot lead out of it (`openat2`, or before
/// Linux 5.6 the engine's walk that follows them the same way). Never
/// blocks on a FIFO, never takes a terminal.
pub fn open_inside(root: &OwnedFd, path: &Path) -> Result<OwnedFd, Errno> {
    let relative = path.strip_prefix("/").unwrap_or(path);
    resolve::open(
        root,
        relative,
        OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK | OFlag::O_NOCTTY,
        ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS,
    )
}
