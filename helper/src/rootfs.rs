//! Builds the new root in the current (already private) mount namespace and
//! switches to it:
//!
//! 1. every mount becomes a slave of the host's;
//! 2. a recursive copy of the distro directory is mounted on top of itself,
//!    so that it is a mount point that `pivot_root` accepts;
//! 3. each volume is cloned from the host and attached inside, parents
//!    before children;
//! 4. `pivot_root` into it, and the host's root is detached.
//!
//! pivot_root rather than chroot: a chrooted process may not create user
//! namespaces, and programs that sandbox themselves (Chromium, Electron
//! apps, bwrap, flatpak) must work inside.

use std::os::fd::{AsFd, OwnedFd};

use distrorun_config::{MountSpec, Plan, VolumeOrigin};
use nix::errno::Errno;
use nix::mount::{umount2, MntFlags};
use nix::sys::stat::{fstat, SFlag};
use nix::unistd::{access, chdir, fchdir, pivot_root, AccessFlags};

use crate::mount::{self, explain};
use crate::{Error, Log};

/// Steps 1 to 4. `distro_dir` is the distro directory, opened (`O_PATH`)
/// after entering the mount namespace, so that it names a mount of it.
pub fn enter(plan: &Plan, distro_dir: OwnedFd, log: &Log) -> Result<(), Error> {
    mount::make_rslave()?;
    let root = mount_root(plan, &distro_dir, log)?;
    for spec in &plan.mounts {
        bind_volume(plan, &root, spec, log)?;
    }
    switch_root(plan, &root)
}

fn mount_root(plan: &Plan, distro_dir: &OwnedFd, log: &Log) -> Result<OwnedFd, Error> {
    let dir = plan.root.display();
    let fail = |e: Errno| {
        let err = Error::sys(format!("mount the root of distro {} from {dir}", plan.distro), e);
        match explain(e) {
            Some(hint) => err.with_hint(hint),
            None => err,
        }
    };
    let tree = mount::clone_tree(distro_dir).map_err(fail)?;
    mount::set_attrs(&tree, plan.root_attrs).map_err(fail)?;
    mount::attach(&tree, distro_dir).map_err(fail)?;
    log.step(format_args!("root {dir} ({})", plan.root_attrs));
    // The descriptor from open_tree now names the root of the attached tree,
    // so every later lookup below it sees the mounts made on it.
    Ok(tree)
}

fn bind_volume(plan: &Plan, root: &OwnedFd, spec: &MountSpec, log: &Log) -> Result<(), Error> {
    let (src, dst) = (spec.src.display(), spec.dst.display());
    let source = match mount::open_source(&spec.src) {
        Ok(fd) => fd,
        Err(Errno::ENOENT) if spec.optional => {
            log.step(format_args!("skip {src}: it does not exist"));
            return Ok(());
        }
        Err(e) => return Err(source_error(plan, spec, e)),
    };
    if spec.origin == VolumeOrigin::Extra {
        check_extra_volume(spec, &source)?;
    }
    let tree = mount::clone_tree(&source).map_err(|e| source_error(plan, spec, e))?;
    mount::set_attrs(&tree, spec.attrs)
        .map_err(|e| Error::sys(format!("set {} on the copy of {src}", spec.attrs), e))?;
    let target = mount::open_target(root, &spec.dst).map_err(|e| target_error(plan, spec, e))?;
    mount::attach(&tree, &target).map_err(|e| {
        let err = Error::sys(format!("mount {src} on {dst} in distro {}", plan.distro), e);
        if e == Errno::ENOTDIR {
            err.with_hint("a directory can only be mounted on a directory, and a file on a file")
        } else {
            err
        }
    })?;
    log.step(format_args!("mount {src} on {dst} ({})", spec.attrs));
    Ok(())
}

/// `--extra-volume` must name a directory the caller can enter. The check
/// uses the real ids, which are the caller's under every backend.
fn check_extra_volume(spec: &MountSpec, source: &OwnedFd) -> Result<(), Error> {
    let path = spec.src.display();
    let st = fstat(source.as_fd()).map_err(|e| Error::sys(format!("use --extra-volume {path}"), e))?;
    if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFDIR {
        return Err(Error::sys(format!("use --extra-volume {path}"), Errno::ENOTDIR));
    }
    access(&spec.src, AccessFlags::X_OK).map_err(|e| Error::sys(format!("use --extra-volume {path}"), e))
}

fn source_error(plan: &Plan, spec: &MountSpec, e: Errno) -> Error {
    let src = spec.src.display();
    let err = match spec.origin {
        VolumeOrigin::Extra => Error::sys(format!("use --extra-volume {src}"), e),
        _ => Error::sys(format!("open volume {src} on the host"), e),
    };
    match (explain(e), spec.origin, e) {
        (Some(hint), _, _) => err.with_hint(hint),
        (None, VolumeOrigin::Config, Errno::ENOENT) => err.with_hint(format!(
            "mark it (src: \"{src}\", optional: true) or remove it from mapped_volumes in {}",
            plan.config.display()
        )),
        _ => err,
    }
}

fn target_error(plan: &Plan, spec: &MountSpec, e: Errno) -> Error {
    let dst = spec.dst.display();
    let host = plan.host_target(&spec.dst);
    match e {
        Errno::ENOENT => Error::msg(format!(
            "cannot mount {} on {dst} in distro {}: the mount point {} does not exist",
            spec.src.display(),
            plan.distro,
            host.display()
        ))
        .with_hint(format!(
            "distrorun never changes the distro tree; as root, create it with mkdir -p {} (or touch, for a file volume)",
            host.display()
        )),
        Errno::ELOOP | Errno::EXDEV => Error::msg(format!(
            "refusing to mount on {dst} in distro {}: {} is or passes through a symlink",
            plan.distro,
            host.display()
        ))
        .with_hint("mount points are never resolved through symlinks; replace the symlink with a directory"),
        e => Error::sys(format!("open mount point {} in distro {}", host.display(), plan.distro), e),
    }
}

fn switch_root(plan: &Plan, root: &OwnedFd) -> Result<(), Error> {
    let what = || format!("switch root to {} (pivot_root)", plan.root.display());
    fchdir(root.as_fd()).map_err(|e| Error::sys(what(), e))?;
    // With both arguments ".", the old root ends up stacked on the new one,
    // and detaching "." removes it: no directory for it is ever needed in
    // the distro tree, which distrorun must not change.
    pivot_root(".", ".").map_err(|e| Error::sys(what(), e))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(|e| Error::sys("detach the host's root", e))?;
    chdir("/").map_err(|e| Error::sys("change directory to the new root", e))
}
