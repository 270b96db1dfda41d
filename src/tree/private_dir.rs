//! The per-user data directory, `${XDG_DATA_HOME}/distrorun`, is its
//! owner's alone (mode 0700, as podman keeps its storage). The trees in it
//! are owned through the owner's subordinate ids, and their setuid files
//! run as those ids: a user who could reach them could run those files and,
//! with the ids they give, write into the owner's trees. Made so on first
//! use, and put right by the next `--create` where an older one is open.

use std::os::fd::OwnedFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::Path;

use distrorun_engine::Error;
use nix::fcntl::{open, OFlag};
use nix::sys::stat::{fchmod, fstat, Mode};
use nix::unistd::Uid;

use crate::error;

/// The permission bits that let others in.
const OTHERS: u32 = 0o077;

/// Creates `dir` (its parents as `mkdir -p` would) owned by `owner` and
/// private to it, and opens it. An existing one that others can enter is
/// closed to them; one owned by anyone else is refused.
pub fn ensure(dir: &Path, owner: Uid) -> Result<OwnedFd, Error> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| error::io(format!("create {}", dir.display()), &e))?;
    let fd =
        open(dir, OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC, Mode::empty())
            .map_err(|e| Error::sys(format!("open {}", dir.display()), e))?;
    let st = fstat(&fd).map_err(|e| Error::sys(format!("examine {}", dir.display()), e))?;
    if st.st_uid != owner.as_raw() {
        return Err(Error::msg(format!(
            "{} is owned by uid {}, not by you: per-user distros go only in a directory of your own",
            dir.display(),
            st.st_uid
        )));
    }
    if st.st_mode & OTHERS != 0 {
        fchmod(&fd, Mode::S_IRWXU)
            .map_err(|e| Error::sys(format!("make {} private (mode 0700)", dir.display()), e))?;
    }
    Ok(fd)
}

/// The mode of `dir` if others can enter it, for `--doctor`.
pub fn open_to_others(dir: &Path) -> Option<u32> {
    let meta = std::fs::symlink_metadata(dir).ok()?;
    (meta.is_dir() && meta.mode() & OTHERS != 0).then_some(meta.mode() & 0o7777)
}
