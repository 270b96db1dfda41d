//! `distrorun --update NAME`: a distro made from an image pulls the same
//! reference again and, when its digest changed, gets the new tree built
//! beside the old one (through the same create flow) and swapped in with
//! one `renameat2(RENAME_EXCHANGE)`. A run in progress keeps the tree it
//! started in: the old tree moves to a hidden name, and a later update
//! deletes it once no process of the caller has it as its root. That is
//! checked before entering the user namespace, where the caller's other
//! runs, each in a namespace of its own, can no longer be looked at. No run
//! can start in an old tree, so what is unused then stays unused. A failed
//! update changes nothing.

use std::ffi::OsStr;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use distrorun_config::Origin as ConfigOrigin;
use distrorun_engine::Error;
use nix::errno::Errno;
use nix::fcntl::{renameat2, AtFlags, RenameFlags};
use nix::sys::stat::fstatat;

use super::{partial_name, write_config, Config};
use crate::registry::Origin;
use crate::remove;

/// The distro as it is before the update.
pub struct Previous {
    pub origin: Origin,
    pub dir: PathBuf,
}

/// The config of the distro to update, which must have been made from an
/// image, and be a per-user distro (or, with `--system`, a system one).
pub fn previous(name: &str, config_dir: &Path, system: bool) -> Result<Previous, Error> {
    let found = crate::run::find_config(name)?;
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
    let text = std::fs::read_to_string(&found.path).map_err(|e| {
        Error::msg(format!("cannot read {}: {}", found.path.display(), super::tarball::errno_text(&e)))
    })?;
    let Some(origin) = Origin::from_config(&text) else {
        return Err(Error::msg(format!(
            "distro {name} was not made from a registry image ({} names none), so --update has nothing to pull; to rebuild it, --remove it and --create it again from its source",
            found.path.display()
        )));
    };
    Ok(Previous { origin, dir: found.distro.dir.clone() })
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

fn old_prefix(name: &str) -> String {
    format!(".{name}.old.")
}

/// Old trees of earlier updates that no run uses any more; looked at
/// before entering the user namespace.
pub fn unused_old_trees(data: &Path, name: &str) -> Vec<PathBuf> {
    let prefix = old_prefix(name);
    let Ok(entries) = std::fs::read_dir(data) else { return Vec::new() };
    entries
        .flatten()
        .map(|e| PathBuf::from(e.file_name()))
        .filter(|file| file.as_os_str().as_bytes().starts_with(prefix.as_bytes()))
        .filter(|file| {
            std::fs::symlink_metadata(data.join(file)).is_ok_and(|m| m.is_dir() && !in_use(m.dev(), m.ino()))
        })
        .collect()
}

/// An interrupted update's `.NAME.partial`, and the `unused` old trees.
pub fn clean_leftovers(data_fd: &OwnedFd, data: &Path, name: &str, unused: &[PathBuf]) -> Result<(), Error> {
    let partial = partial_name(name);
    match fstatat(data_fd, partial.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(_) => remove::remove_leftover(data_fd, &partial, data)?,
        Err(Errno::ENOENT) => {}
        Err(e) => return Err(Error::sys(format!("look at {}", data.join(&partial).display()), e)),
    }
    for old in unused {
        remove::remove_leftover(data_fd, old, data)?;
    }
    Ok(())
}

/// Whether a process this caller can see has the directory as its root:
/// a run in progress in it.
fn in_use(dev: u64, ino: u64) -> bool {
    let Ok(procs) = std::fs::read_dir("/proc") else { return true };
    procs.flatten().any(|p| {
        p.file_name().as_bytes().iter().all(u8::is_ascii_digit)
            && std::fs::metadata(p.path().join("root")).is_ok_and(|m| m.dev() == dev && m.ino() == ino)
    })
}

/// Swaps the new tree (`.NAME.partial`) with the old one, rewrites the
/// config with the new digest, and moves the old tree aside.
pub fn swap(
    data_fd: &OwnedFd,
    data: &Path,
    name: &str,
    config: &Config,
    previous: &Previous,
    quiet: bool,
    summary: &dyn Fn(),
) -> Result<(), Error> {
    let partial = partial_name(name);
    let tree = data.join(name);
    let exchange = || {
        renameat2(data_fd, partial.as_os_str(), data_fd, name, RenameFlags::RENAME_EXCHANGE)
            .map_err(|e| Error::sys(format!("swap the new tree with {}", tree.display()), e))
    };
    if let Err(e) = exchange() {
        let _ = remove::remove_leftover(data_fd, &partial, data);
        return Err(e);
    }
    if let Err(e) = write_config(config, name, &tree, RenameFlags::empty()) {
        // The old tree back in place, so that the config and the tree agree.
        if exchange().is_ok() {
            let _ = remove::remove_leftover(data_fd, &partial, data);
        }
        return Err(e);
    }
    if !quiet {
        let new = config.origin.map_or("?", |o| o.digest.as_str());
        eprintln!(
            "distrorun: updated distro {name} from {}: {} -> {new}",
            previous.origin.reference, previous.origin.digest
        );
        summary();
    }
    // The old tree, now at the partial name, under a name of its own.
    let short = previous.origin.digest.trim_start_matches("sha256:").get(..12).unwrap_or("tree").to_owned();
    let kept = format!("{}{short}.{}", old_prefix(name), std::process::id());
    renameat2(data_fd, partial.as_os_str(), data_fd, OsStr::new(&kept), RenameFlags::RENAME_NOREPLACE)
        .map_err(|e| Error::sys(format!("move the old tree aside to {}", data.join(&kept).display()), e))?;
    if !quiet {
        eprintln!(
            "distrorun: the old tree stays as {} for runs still in it; the next --update {name} deletes it once none is",
            data.join(&kept).display()
        );
    }
    Ok(())
}

/// `--update NAME [--insecure-registry] [--system] [-q]`, which takes no
/// source (the config names it) and combines with no other action.
pub fn parse(
    opts: &crate::cli::Options,
    stray: bool,
) -> Result<Option<crate::cli::Parsed>, distrorun_config::Error> {
    use distrorun_config::Error as Usage;
    let Some(name) = &opts.update else { return Ok(None) };
    let fail = |msg: String| Err(Usage::Usage(msg));
    if opts.create.is_some() || opts.remove.is_some() {
        return fail("--update cannot be combined with --create or --remove".into());
    }
    if stray {
        return fail(format!("--update {name} takes no distro name or command after it"));
    }
    let sources = [opts.tarball.is_some(), opts.oci.is_some(), opts.image.is_some(), opts.debian.is_some()];
    if sources.contains(&true) || opts.tag.is_some() || opts.mirror.is_some() || opts.include.is_some() {
        return fail(format!("--update {name} takes no source: it pulls the image its config names"));
    }
    if opts.state_dir.is_some() {
        return fail("--state-dir goes with --create NAME --system".into());
    }
    Ok(Some(crate::cli::Parsed::Create(super::CreateArgs {
        name: name.clone(),
        source: super::Source::Update { insecure: opts.insecure_registry },
        quiet: opts.quiet,
        system: opts.system,
        state_dir: None,
        update: true,
    })))
}
