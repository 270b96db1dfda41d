//! `distrorun --update NAME`: a distro made from an image pulls the same
//! reference again and, when its digest changed, gets the new tree built
//! beside the old one (through the same create flow, under the same lock)
//! and swapped in with one `renameat2(RENAME_EXCHANGE)`. A run in progress
//! keeps the tree it started in: the old tree moves to a hidden name of its
//! own, and a later update (or `--remove`) deletes it once no process of
//! the caller has it as its root. That is checked before entering the user
//! namespace, where the caller's other runs, each in a namespace of its
//! own, can no longer be looked at. No run can start in an old tree, so
//! what is unused then stays unused. A failed update changes nothing.
//!
//! The new tree (`.NAME+next`) and each old one (`.NAME+old-DIGEST-PID`)
//! carry markers of their own: `+` is in no distro name, so these names
//! are never another distro's, and only a directory a marker names is ever
//! deleted.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::Instant;

use distrorun_config::Origin as ConfigOrigin;
use distrorun_engine::Error;
use nix::errno::Errno;
use nix::fcntl::{renameat2, AtFlags, RenameFlags};
use nix::sys::stat::fstatat;

use super::in_use::{Tree, Usage};
use super::{build_at, write_config, Config, Opened, Place, Report};
use crate::cli::CreateArgs;
use crate::places::{self, keyed_entry as entry, next_key, old_prefix};
use crate::registry::Origin;
use crate::tree::marker::{self, Stage};
use crate::tree::remove;

/// The distro as it is before the update.
pub struct Previous {
    pub origin: Origin,
    pub dir: PathBuf,
    /// Whether a run is in the tree: its files are then not shared with
    /// the new tree, where that run could go on writing into them.
    pub in_use: bool,
}

/// The config of the distro to update, which must have been made from an
/// image, and be a per-user distro (or, with `--system`, a system one).
pub fn previous(name: &str, config_dir: &Path, system: bool) -> Result<Previous, Error> {
    let found = places::find_config(name)?;
    let expected = if system { ConfigOrigin::System } else { ConfigOrigin::User };
    if found.origin != expected || found.path.parent() != Some(config_dir) {
        return Err(Error::msg(format!(
            "distro {name} ({}) is {}; --update{} updates {} distros",
            found.path.display(),
            if system { "not a system distro" } else { "a system distro" },
            if system { " --system" } else { "" },
            if system { "system" } else { "per-user" },
        )));
    }
    let Some(origin) = crate::registry::origin_of(&found) else {
        return Err(Error::msg(format!(
            "distro {name} was not made from a registry image ({} names none), so --update has nothing to pull; to rebuild it, --remove it and --create it again from its source",
            found.path.display()
        )));
    };
    Ok(Previous { origin, dir: found.distro.dir.clone(), in_use: true })
}

/// Whether the registry still serves what the distro was made from; says
/// so unless quiet.
pub fn up_to_date(name: &str, previous: &Previous, now: Option<&Origin>, quiet: bool) -> bool {
    let same = now.is_some_and(|o| o.digest == previous.origin.digest);
    if same && !quiet {
        eprintln!(
            "distrorun: distro {name} is up to date: {} is still {}",
            previous.origin.reference, previous.origin.digest
        );
    }
    same
}

/// The tree must be the one create made, where create makes it.
pub fn check_tree(name: &str, previous: &Previous, data: &Path) -> Result<(), Error> {
    if previous.dir == data.join(name) {
        return Ok(());
    }
    Err(Error::msg(format!(
        "distro {name}'s tree is {}, not {} where --create put it; --update replaces only trees it made",
        previous.dir.display(),
        data.join(name).display()
    )))
}

/// The marker keys of old trees of earlier updates that no run uses any
/// more, and whether one uses the distro's tree; looked at before
/// entering the user namespace.
pub fn usage(data: &Path, name: &str, previous: &mut Previous) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(data) else { return Vec::new() };
    let old: Vec<(String, Tree)> = entries
        .flatten()
        .filter_map(|e| {
            let key = e.file_name().to_str()?.strip_prefix('.')?.to_owned();
            let meta = std::fs::symlink_metadata(e.path()).ok()?;
            (places::is_old_key(&key, name) && meta.is_dir()).then(|| (key, Tree::new(&e.path(), &meta)))
        })
        .collect();
    let usage = Usage::scan();
    previous.in_use = std::fs::symlink_metadata(&previous.dir)
        .map_or(true, |meta| usage.uses(&Tree::new(&previous.dir, &meta)));
    old.into_iter().filter(|(_, tree)| !usage.uses(tree)).map(|(key, _)| key).collect()
}

/// An interrupted update's new tree, and the `unused` old trees, each only
/// where its marker names it.
pub fn clean_leftovers(data_fd: &OwnedFd, data: &Path, name: &str, unused: &[String]) -> Result<(), Error> {
    let next = next_key(name);
    match fstatat(data_fd, entry(&next).as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(_) => reap(data_fd, data, &next)?,
        Err(Errno::ENOENT) => marker::unmark(data_fd, data, &next)?,
        Err(e) => return Err(Error::sys(format!("look at {}", data.join(entry(&next)).display()), e)),
    }
    for key in unused {
        reap(data_fd, data, key)?;
    }
    Ok(())
}

fn reap(data_fd: &OwnedFd, data: &Path, key: &str) -> Result<(), Error> {
    remove::reap_marked(data_fd, data, key, &entry(key))
}

/// Builds the new tree beside the old, swaps the two, rewrites the config
/// with the new digest, and moves the old tree aside.
pub fn rebuild(
    place: &Place,
    opened: Opened,
    args: &CreateArgs,
    previous: &Previous,
    started: Instant,
) -> Result<(), Error> {
    let name = args.name.as_str();
    let what = opened.what().to_owned();
    let origin = opened.origin();
    let next = next_key(name);
    let image = opened.image();
    if previous.in_use && !args.quiet {
        eprintln!(
            "distrorun: every layer is unpacked again: a run is still in the old tree, whose files the new tree must not share"
        );
    }
    let old = (!previous.in_use).then_some(name);
    let (stats, new_fd) = build_at(place, &entry(&next), &next, opened, args, old)?;
    let old_fd = open_tree(place, Path::new(name))?;
    swap(place, name, &new_fd, &old_fd).inspect_err(|_| {
        let _ = reap(place.data_fd, place.data, &next);
    })?;
    let tree = place.data.join(name);
    let config = Config { what: &what, origin: origin.as_ref(), system: args.system };
    if let Err(e) = write_config(place, &config, name, &tree, RenameFlags::empty()) {
        // The old tree back in place, so that the config and the tree agree.
        if swap(place, name, &old_fd, &new_fd).is_ok() {
            let _ = reap(place.data_fd, place.data, &next);
        }
        return Err(e);
    }
    if !args.quiet {
        let new = origin.as_ref().map_or("?", |o| o.digest.as_str());
        eprintln!(
            "distrorun: updated distro {name} from {}: {} -> {new}",
            previous.origin.reference, previous.origin.digest
        );
    }
    let report = Report { stats: &stats, started, origin: origin.as_ref(), image, quiet: args.quiet };
    super::report("rebuilt", name, &tree, &report);
    keep_old(place, name, previous, &old_fd, args.quiet)
}

fn open_tree(place: &Place, at: &Path) -> Result<OwnedFd, Error> {
    nix::fcntl::openat(
        place.data_fd,
        at.as_os_str(),
        nix::fcntl::OFlag::O_RDONLY
            | nix::fcntl::OFlag::O_DIRECTORY
            | nix::fcntl::OFlag::O_NOFOLLOW
            | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| Error::sys(format!("open {}", place.data.join(at).display()), e))
}

/// Exchanges `.NAME+next` and `NAME`, where `to_name` is to become `NAME`.
/// Both markers name both trees while the exchange happens, so that an
/// interruption at any point leaves each tree marked; afterwards each
/// names its own.
fn swap(place: &Place, name: &str, to_name: &OwnedFd, to_next: &OwnedFd) -> Result<(), Error> {
    let (data_fd, data) = (place.data_fd, place.data);
    let next = next_key(name);
    let both = [(to_name, Stage::Complete), (to_next, Stage::Complete)];
    marker::mark(data_fd, data, name, &both)?;
    marker::mark(data_fd, data, &next, &both)?;
    renameat2(data_fd, entry(&next).as_os_str(), data_fd, name, RenameFlags::RENAME_EXCHANGE)
        .map_err(|e| Error::sys(format!("swap the new tree with {}", data.join(name).display()), e))?;
    marker::mark(data_fd, data, name, &[(to_name, Stage::Complete)])?;
    marker::mark(data_fd, data, &next, &[(to_next, Stage::Complete)])
}

/// The old tree, now at `.NAME+next`, under a name and marker of its own,
/// where a run still in it keeps it until the next update or remove.
fn keep_old(
    place: &Place,
    name: &str,
    previous: &Previous,
    old_fd: &OwnedFd,
    quiet: bool,
) -> Result<(), Error> {
    let (data_fd, data) = (place.data_fd, place.data);
    let short = previous.origin.digest.trim_start_matches("sha256:").get(..12).unwrap_or("tree").to_owned();
    let key = format!("{}{short}-{}", old_prefix(name), std::process::id());
    let next = next_key(name);
    marker::mark(data_fd, data, &key, &[(old_fd, Stage::Complete)])?;
    renameat2(
        data_fd,
        entry(&next).as_os_str(),
        data_fd,
        entry(&key).as_os_str(),
        RenameFlags::RENAME_NOREPLACE,
    )
    .map_err(|e| Error::sys(format!("move the old tree aside to {}", data.join(entry(&key)).display()), e))?;
    marker::unmark(data_fd, data, &next)?;
    if !quiet {
        eprintln!(
            "distrorun: the old tree stays as {} for runs still in it; the next --update {name} deletes it once none is",
            data.join(entry(&key)).display()
        );
    }
    Ok(())
}
