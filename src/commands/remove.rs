//! `distrorun --remove NAME [--yes]`: a per-user distro's tree and config,
//! removed inside its namespace by descriptors, never across a mount point.

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;

use distrorun_config::{IdMode, Origin};
use distrorun_engine::Error;
use nix::errno::Errno;
use nix::fcntl::{open, renameat2, OFlag, RenameFlags};
use nix::sys::stat::Mode;

use crate::tree::remove;
use crate::{places, subids};

/// `distrorun --remove NAME [--yes]`.
pub fn remove(name: &str, yes: bool) -> Result<(), Error> {
    let caller = places::caller()?;
    let found = places::find_config(name)?;
    if found.origin == Origin::System {
        return Err(Error::msg(format!(
            "distro {name} is a system distro ({}); --remove removes only per-user distros",
            found.path.display()
        ))
        .with_hint("an admin removes a system distro by hand"));
    }
    if found.distro.ids != IdMode::Subuid {
        return Err(Error::msg(format!(
            "distro {name} ({}) was not made by distrorun --create; remove its tree and config yourself",
            found.path.display()
        )));
    }
    let dir = found.distro.dir.clone();
    let (Some(parent), Some(base)) = (dir.parent(), dir.file_name()) else {
        return Err(Error::msg(format!("distro {name} has no removable directory {}", dir.display())));
    };
    if !yes && !confirm(name, &dir, &found.path)? {
        return Err(Error::msg(format!("distro {name} was not removed")));
    }
    let ids = subids::keep_id(&caller)?;
    let parent_fd = open(parent, OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(|e| Error::sys(format!("open {}", parent.display()), e))?;
    subids::enter_keep_id(&ids)?;
    // Renamed first, then the config deleted: an interrupted removal leaves
    // a hidden leftover that the next --create of the name cleans up, never
    // a distro that looks usable.
    let hidden = places::partial_name(name);
    match nix::sys::stat::fstatat(&parent_fd, hidden.as_os_str(), nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(_) => remove::remove_leftover(&parent_fd, &hidden, parent)?,
        Err(Errno::ENOENT) => {}
        Err(e) => return Err(Error::sys(format!("look at {}", parent.join(&hidden).display()), e)),
    }
    // A tree already gone (deleted by hand) leaves only the config to remove.
    let moved =
        match renameat2(&parent_fd, base, &parent_fd, hidden.as_os_str(), RenameFlags::RENAME_NOREPLACE) {
            Ok(()) => true,
            Err(Errno::ENOENT) => false,
            Err(e) => return Err(Error::sys(format!("move {} aside for removal", dir.display()), e)),
        };
    std::fs::remove_file(&found.path)
        .map_err(|e| crate::error::io(format!("remove {}", found.path.display()), &e))?;
    if moved {
        remove::remove_leftover(&parent_fd, &hidden, parent)?;
    }
    Ok(())
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
