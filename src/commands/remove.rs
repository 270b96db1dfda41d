//! `distrorun --remove NAME [--yes]`: a per-user distro's tree and config,
//! removed inside its namespace by descriptors, never across a mount point.

use std::ffi::{OsStr, OsString};
use std::io::{BufRead, IsTerminal, Write};
use std::os::fd::OwnedFd;
use std::path::Path;

use distrorun_config::{IdMode, Origin};
use distrorun_engine::Error;
use nix::errno::Errno;
use nix::fcntl::{open, renameat2, AtFlags, OFlag, RenameFlags};
use nix::sys::stat::{fstat, fstatat, Mode};

use crate::tree::marker;
use crate::tree::namelock::NameLock;
use crate::tree::remove;
use crate::{error, places, subids};

/// `distrorun --remove NAME [--yes]`. Removes only what `--create` wrote:
/// the config must name `NAME` in distrorun's data directory, and the tree
/// there must be the one the marker names; anything else is refused before
/// a file is touched.
pub fn remove(name: &str, yes: bool) -> Result<(), Error> {
    let caller = places::caller()?;
    let found = places::find_config(name)?;
    let not_ours = |why: String| {
        Error::msg(format!(
            "distro {name} ({}) was not made by distrorun --create: {why}; remove its tree and config yourself",
            found.path.display()
        ))
    };
    if found.origin == Origin::System {
        return Err(Error::msg(format!(
            "distro {name} is a system distro ({}); --remove removes only per-user distros",
            found.path.display()
        ))
        .with_hint("an admin removes a system distro by hand"));
    }
    if found.distro.ids != IdMode::Subuid {
        return Err(not_ours("it does not map subordinate ids".into()));
    }
    let dir = found.distro.dir.clone();
    let data = places::data_dir()?;
    let data_fd = match open(&data, OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::ENOENT) => return Err(not_ours(format!("{} does not exist", data.display()))),
        Err(e) => return Err(Error::sys(format!("open {}", data.display()), e)),
    };
    let in_data_dir = dir.file_name() == Some(OsStr::new(name))
        && dir.parent().is_some_and(|parent| same_dir(parent, &data_fd));
    if !in_data_dir {
        return Err(not_ours(format!(
            "its directory {} is not {}",
            dir.display(),
            data.join(name).display()
        )));
    }
    let _lock = NameLock::acquire(&data_fd, &data, name, "remove")?;
    let present = marked_entries(&data_fd, &data, name)?;
    if present.is_empty() && !marker::exists(&data_fd, name) {
        return Err(not_ours(format!("{} has no tree it made", data.display())));
    }
    if !yes && !confirm(name, &dir, &found.path)? {
        return Err(Error::msg(format!("distro {name} was not removed")));
    }
    let ids = subids::keep_id(&caller)?;
    subids::enter_keep_id(&ids)?;
    remove_marked(&data_fd, &data, name, &present, &found.path)
}

/// Which of `.NAME.partial` and `NAME` are there, each checked against the
/// marker: one that distrorun did not make is refused with its path.
fn marked_entries(data_fd: &OwnedFd, data: &Path, name: &str) -> Result<Vec<OsString>, Error> {
    let hidden = places::partial_name(name);
    let mut present = Vec::new();
    for entry in [hidden.as_os_str(), OsStr::new(name)] {
        match fstatat(data_fd, entry, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(_) => {
                marker::require(data_fd, data, name, &entry.to_string_lossy())?;
                present.push(entry.to_owned());
            }
            Err(Errno::ENOENT) => {}
            Err(e) => return Err(Error::sys(format!("look at {}", data.join(entry).display()), e)),
        }
    }
    Ok(present)
}

/// Renamed first, then the config deleted: an interrupted removal leaves a
/// hidden leftover that the next --create of the name cleans up, never a
/// distro that looks usable.
fn remove_marked(
    data_fd: &OwnedFd,
    data: &Path,
    name: &str,
    present: &[OsString],
    config: &Path,
) -> Result<(), Error> {
    let hidden = places::partial_name(name);
    if present.iter().any(|e| e == hidden.as_os_str()) {
        remove::remove_leftover(data_fd, &hidden, data)?;
    }
    let moved = present.iter().any(|e| e == name);
    if moved {
        renameat2(data_fd, name, data_fd, hidden.as_os_str(), RenameFlags::RENAME_NOREPLACE)
            .map_err(|e| Error::sys(format!("move {} aside for removal", data.join(name).display()), e))?;
    }
    std::fs::remove_file(config).map_err(|e| error::io(format!("remove {}", config.display()), &e))?;
    if moved {
        remove::remove_leftover(data_fd, &hidden, data)?;
    }
    marker::unmark(data_fd, data, name)?;
    for key in update_trees(data, name) {
        remove::reap_marked(data_fd, data, &key, &places::keyed_entry(&key))?;
    }
    Ok(())
}

/// The marker keys of the trees `--update` left: one it was building when
/// it was stopped, and old ones kept for runs that were still in them.
fn update_trees(data: &Path, name: &str) -> Vec<String> {
    let next = places::next_key(name);
    let Ok(entries) = std::fs::read_dir(data) else { return Vec::new() };
    let mut keys: Vec<String> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.strip_prefix('.').map(str::to_owned))
        .filter(|key| *key == next || places::is_old_key(key, name))
        .collect();
    keys.sort();
    keys
}

/// Whether `path` is the directory open as `dir`.
fn same_dir(path: &Path, dir: &OwnedFd) -> bool {
    match (nix::sys::stat::stat(path), fstat(dir)) {
        (Ok(a), Ok(b)) => (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino),
        _ => false,
    }
}

/// Asks on the terminal. Without one, and without `--yes`, nothing is removed.
fn confirm(name: &str, dir: &Path, config: &Path) -> Result<bool, Error> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Err(Error::msg(format!(
            "not removing distro {name} without confirmation: standard input is not a terminal"
        ))
        .with_hint("pass --yes to remove it without asking"));
    }
    eprint!(
        "distrorun: remove distro {name}, its tree {} and its config {}? [y/N] ",
        dir.display(),
        config.display()
    );
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    stdin.lock().read_line(&mut answer).map_err(|e| Error::msg(format!("cannot read the answer: {e}")))?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes"))
}
