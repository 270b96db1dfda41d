//! Trees handled through descriptors: opening a distro's directory,
//! opening inside it as if it were `/`, removing without following a
//! symlink or crossing a mount point, and unpacking tar streams.

pub mod remove;
pub mod unpack;

use std::os::fd::OwnedFd;
use std::path::Path;

use distrorun_engine::Error;
use nix::errno::Errno;
use nix::fcntl::{open, OFlag};
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
