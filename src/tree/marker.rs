//! "This directory was made by `distrorun --create`": a file `.NAME.tree`
//! next to the tree, naming the tree directory's device and inode. Create
//! writes it right after it makes the directory; a rename keeps the inode,
//! so it names the tree as `.NAME.partial`, as `NAME`, and as the
//! `.NAME.partial` that `--remove` renames it to. Only a directory the
//! marker names is ever deleted as a leftover or by `--remove`: a directory
//! of the same name that someone else made (a web site in a shared state
//! directory, a user's own files named by a hand-written config) is never
//! taken for one.
//!
//! The marker also says how far the create got: `building` until the
//! config is written, `complete` after. A complete tree whose config is not
//! where this run looks (another `XDG_CONFIG_HOME`, say) is a distro, not a
//! leftover, and only `--remove` deletes it.

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::Path;

use distrorun_engine::Error;
use nix::errno::Errno;
use nix::fcntl::{openat, renameat, AtFlags, OFlag};
use nix::sys::stat::{fstat, fstatat, FileStat, Mode, SFlag};
use nix::unistd::{unlinkat, UnlinkatFlags};

const MAGIC: &str = "distrorun-created-tree";

fn marker_name(name: &str) -> String {
    format!(".{name}.tree")
}

/// How far the create of a marked tree got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Building,
    Complete,
}

impl Stage {
    fn word(self) -> &'static str {
        match self {
            Stage::Building => "building",
            Stage::Complete => "complete",
        }
    }
}

fn identity(st: &FileStat, stage: Stage) -> String {
    format!("{MAGIC} {} {} {}\n", st.st_dev, st.st_ino, stage.word())
}

/// Marks the directories open as `trees` as distrorun's own under `key`
/// (a distro's name, or a name of its own for a tree an update builds or
/// keeps), in `dir_fd`. Several at once while an update exchanges two
/// trees, so that an interruption leaves each still marked.
pub fn mark(dir_fd: &OwnedFd, dir: &Path, key: &str, trees: &[(&OwnedFd, Stage)]) -> Result<(), Error> {
    let marker = marker_name(key);
    let fail = |e: Errno| Error::sys(format!("write {}", dir.join(&marker).display()), e);
    let mut text = String::new();
    for (tree, stage) in trees {
        text.push_str(&identity(&fstat(*tree).map_err(fail)?, *stage));
    }
    let temp = format!("{marker}.partial");
    let _ = unlinkat(dir_fd, temp.as_str(), UnlinkatFlags::NoRemoveDir);
    let fd = openat(
        dir_fd,
        temp.as_str(),
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::S_IRUSR | Mode::S_IWUSR,
    )
    .map_err(fail)?;
    std::fs::File::from(fd).write_all(text.as_bytes()).map_err(|e| fail(distrorun_config::errno_of(&e)))?;
    renameat(dir_fd, temp.as_str(), dir_fd, marker.as_str()).map_err(fail)
}

/// The stage of `entry` in `dir_fd` if it is the directory distro
/// `name`'s marker names. A missing marker, or one that is not a small
/// regular file, marks nothing.
pub fn stage(dir_fd: &OwnedFd, name: &str, entry: &str) -> Result<Option<Stage>, Errno> {
    let st = fstatat(dir_fd, entry, AtFlags::AT_SYMLINK_NOFOLLOW)?;
    if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFDIR {
        return Ok(None);
    }
    let fd = match openat(
        dir_fd,
        marker_name(name).as_str(),
        OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(Errno::ENOENT | Errno::ELOOP) => return Ok(None),
        Err(e) => return Err(e),
    };
    let mst = fstat(&fd)?;
    if SFlag::from_bits_truncate(mst.st_mode) & SFlag::S_IFMT != SFlag::S_IFREG {
        return Ok(None);
    }
    let mut text = String::new();
    if std::fs::File::from(fd).take(1024).read_to_string(&mut text).is_err() {
        return Ok(None);
    }
    Ok(text
        .split_inclusive('\n')
        .find_map(|line| [Stage::Building, Stage::Complete].into_iter().find(|s| line == identity(&st, *s))))
}

/// Whether distro `name` has a marker at all.
pub fn exists(dir_fd: &OwnedFd, name: &str) -> bool {
    fstatat(dir_fd, marker_name(name).as_str(), AtFlags::AT_SYMLINK_NOFOLLOW).is_ok()
}

/// Refuses, naming its path, to treat `entry` as distro `name`'s tree
/// unless the marker names it; returns how far its create got.
pub fn require(dir_fd: &OwnedFd, dir: &Path, name: &str, entry: &str) -> Result<Stage, Error> {
    let path = dir.join(entry);
    match stage(dir_fd, name, entry) {
        Ok(Some(stage)) => Ok(stage),
        Ok(None) => Err(Error::msg(format!(
            "refusing to delete {}: distrorun --create did not make it",
            path.display()
        ))
        .with_hint("move it away or delete it yourself if it should go")),
        Err(e) => Err(Error::sys(format!("look at {}", path.display()), e)),
    }
}

/// Drops distro `name`'s marker, once its tree is gone.
pub fn unmark(dir_fd: &OwnedFd, dir: &Path, name: &str) -> Result<(), Error> {
    let marker = marker_name(name);
    match unlinkat(dir_fd, marker.as_str(), UnlinkatFlags::NoRemoveDir) {
        Ok(()) | Err(Errno::ENOENT) => Ok(()),
        Err(e) => Err(Error::sys(format!("remove {}", dir.join(&marker).display()), e)),
    }
}
