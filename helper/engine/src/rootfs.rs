//! Builds the new root in the current (already private) mount namespace and
//! switches to it:
//!
//! 1. every mount becomes a slave of the host's;
//! 2. a recursive copy of the distro directory is mounted on top of itself,
//!    so that it is a mount point that `pivot_root` accepts; the ramfs with
//!    the merged identity files (`user_db`), if any, goes between the two;
//! 3. each volume is cloned from the host and attached inside, parents
//!    before children;
//! 4. the merged identity files, if any (`user_db`), are bound over the
//!    distro's `/etc/passwd` and `/etc/group`;
//! 5. `pivot_root` into it, and the host's root is detached.
//!
//! `pivot_root` rather than `chroot`: a chrooted process may not create user
//! namespaces, and programs that sandbox themselves (Chromium, Electron
//! apps, bwrap, flatpak) must work inside.

use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use distrorun_config::{MountSpec, Plan, SourceChecks, VolumeOrigin};
use nix::errno::Errno;
use nix::fcntl::AtFlags;
use nix::mount::{umount2, MntFlags};
use nix::sys::stat::{fstat, SFlag};
use nix::unistd::{chdir, faccessat, fchdir, pivot_root, AccessFlags};

use crate::mount::{self, explain};
use crate::{gpu, userdb, Error, Log};

/// How the engine gets the right to mount. The userns backend already holds
/// it in its own namespace; the setuid helper holds `CAP_SYS_ADMIN` in its
/// permitted set only, and raises it into the effective set just for
/// `steps`, so that nothing else it does runs with it.
pub trait MountPrivilege {
    fn mounting<T>(&self, steps: impl FnOnce() -> Result<T, Error>) -> Result<T, Error>;
}

/// The userns and root backends: the process holds the right all along.
#[derive(Debug, Clone, Copy)]
pub struct AlreadyHeld;

impl MountPrivilege for AlreadyHeld {
    fn mounting<T>(&self, steps: impl FnOnce() -> Result<T, Error>) -> Result<T, Error> {
        steps()
    }
}

/// Steps 1 to 5. `distro_dir` is the distro directory, opened (`O_PATH`)
/// after entering the mount namespace, so that it names a mount of it; it
/// is closed once the new root is attached.
/// Each volume's source is opened and checked as the caller, with no
/// capability; the right to mount is used only for the mount itself. One
/// volume at a time, so that a config's length never decides how many
/// descriptors the run needs.
///
/// `identity` holds the merged `/etc/passwd` and `/etc/group` that
/// [`userdb::prepare`] made, as the caller, before this step; they are
/// bound after the volumes, so that the files they cover are the distro's.
pub fn enter(
    plan: &Plan,
    distro_dir: OwnedFd,
    privilege: &impl MountPrivilege,
    identity: Option<&userdb::Prepared>,
    devices: Option<&gpu::Prepared>,
    log: Log,
) -> Result<(), Error> {
    // Everything after the root is attached goes through the new root's
    // descriptor; the distro directory's is closed then, which keeps the
    // run within the descriptors it always needed.
    if log.verbose {
        log.step(format_args!("kernel: {}", mount::facilities()));
    }
    let (root, staged, staged_gpu) = privilege.mounting(|| {
        mount::make_rslave()?;
        let tree = clone_root(plan, &distro_dir)?;
        // Cloned first, so that the staged ramfs is not in the copy.
        let staged = identity.map(|prepared| userdb::stage(plan, &distro_dir, prepared)).transpose()?;
        let staged_gpu = devices.map(|_| gpu::stage(plan, &distro_dir)).transpose()?;
        let root = attach_root(plan, distro_dir, tree, log)?;
        Ok((root, staged, staged_gpu))
    })?;
    for spec in &plan.mounts {
        if let Some(source) = open_source(plan, spec, log)? {
            privilege.mounting(|| bind_volume(plan, &root, spec, source, log))?;
        }
    }
    privilege.mounting(|| settle(plan))?;
    if let (Some(staged), Some(prepared)) = (staged_gpu, devices) {
        privilege.mounting(|| gpu::install(plan, &root, &staged, prepared, log))?;
    }
    if let Some(staged) = staged {
        privilege.mounting(|| userdb::install(plan, &root, &staged, log))?;
    }
    privilege.mounting(|| {
        settle(plan)?;
        switch_root(plan, &root)
    })
}

/// Checks the flags of the copies not checked yet (older kernels only).
fn settle(plan: &Plan) -> Result<(), Error> {
    mount::settle().map_err(|e| {
        mount::error(format!("check the flags of the mounts made for distro {}", plan.distro), e)
    })
}

/// Opens a volume's source on the host and applies the plan's checks to
/// it. An optional volume that does not exist is None.
fn open_source(plan: &Plan, spec: &MountSpec, log: Log) -> Result<Option<OwnedFd>, Error> {
    match mount::open_source(&spec.src) {
        Ok(fd) => {
            check_source(spec, &fd).map_err(|e| source_error(plan, spec, e))?;
            Ok(Some(fd))
        }
        Err(Errno::ENOENT) if spec.optional => {
            log.step(format_args!("skip {}: it does not exist", spec.src.display()));
            Ok(None)
        }
        Err(e) => Err(source_error(plan, spec, e)),
    }
}

/// The plan's checks, on the open descriptor: no path is looked up twice,
/// so swapping the path for a symlink after the open changes nothing.
fn check_source(spec: &MountSpec, source: &OwnedFd) -> Result<(), Errno> {
    let SourceChecks { caller_may_search, not_kernel_fs } = spec.checks;
    if caller_may_search {
        let st = fstat(source.as_fd())?;
        if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFDIR {
            return Err(Errno::ENOTDIR);
        }
        // Without AT_EACCESS the kernel judges by the real ids, the caller's
        // under every backend, and with no capability at all. "." rather
        // than AT_EMPTY_PATH, which only faccessat2 (5.8) takes: looking
        // up "." in the directory needs exactly the right to search it.
        faccessat(source.as_fd(), ".", AccessFlags::X_OK, AtFlags::empty())?;
    }
    if not_kernel_fs && mount::kernel_filesystem(source)?.is_some() {
        return Err(Errno::EXDEV);
    }
    Ok(())
}

/// A recursive copy of the distro directory, with the plan's attributes.
fn clone_root(plan: &Plan, distro_dir: &OwnedFd) -> Result<mount::Tree, Error> {
    let mut tree = mount::clone_tree(distro_dir).map_err(|e| root_error(plan, e))?;
    mount::set_attrs(&mut tree, plan.root_attrs, Path::new("/")).map_err(|e| root_error(plan, e))?;
    Ok(tree)
}

/// Attaches the copy on top of the distro directory (and of whatever was
/// staged on it), and returns the descriptor that names the root of the
/// attached tree, so that every later lookup below it sees the mounts made
/// on it.
fn attach_root(plan: &Plan, distro_dir: OwnedFd, tree: mount::Tree, log: Log) -> Result<OwnedFd, Error> {
    let target = mount::Target::dir(distro_dir).map_err(|e| root_error(plan, e))?;
    let root = mount::attach(tree, target).map_err(|e| root_error(plan, e))?;
    log.step(format_args!("root {} ({})", plan.root.display(), plan.root_attrs));
    Ok(root)
}

fn root_error(plan: &Plan, e: Errno) -> Error {
    mount::error(format!("mount the root of distro {} from {}", plan.distro, plan.root.display()), e)
}

fn bind_volume(
    plan: &Plan,
    root: &OwnedFd,
    spec: &MountSpec,
    source: OwnedFd,
    log: Log,
) -> Result<(), Error> {
    let (src, dst) = (spec.src.display(), spec.dst.display());
    let mut tree = mount::clone_owned(source).map_err(|e| source_error(plan, spec, e))?;
    mount::set_attrs(&mut tree, spec.attrs, &spec.dst)
        .map_err(|e| Error::sys(format!("set {} on the copy of {src}", spec.attrs), e))?;
    let target = mount::open_target(root, &spec.dst).map_err(|e| target_error(plan, spec, e))?;
    mount::attach(tree, target).map_err(|e| {
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

fn source_error(plan: &Plan, spec: &MountSpec, e: Errno) -> Error {
    let src = spec.src.display();
    let err = match (spec.origin, e) {
        // EXDEV from `check_source`: the open source is a kernel file system.
        (VolumeOrigin::Extra, Errno::EXDEV) => {
            return Error::msg(format!(
                "cannot use --extra-volume {src}: it lies on a kernel file system (procfs, sysfs or the like)"
            ))
            .with_hint("/proc and /sys are always mounted inside; name a directory of your own")
        }
        (VolumeOrigin::Extra, _) => Error::sys(format!("use --extra-volume {src}"), e),
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
    // the distro tree, which distrorun must not change. The staged identity
    // ramfs goes with it, in this one unmount.
    pivot_root(".", ".").map_err(|e| Error::sys(what(), e))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(|e| Error::sys("detach the host's root", e))?;
    chdir("/").map_err(|e| Error::sys("change directory to the new root", e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use distrorun_config::Attrs;
    use std::path::PathBuf;

    fn spec(src: &str, dst: &str, origin: VolumeOrigin, checks: SourceChecks) -> MountSpec {
        MountSpec {
            src: src.into(),
            dst: dst.into(),
            attrs: Attrs::default(),
            optional: false,
            origin,
            checks,
        }
    }

    fn plan() -> Plan {
        Plan {
            distro: "x".into(),
            config: PathBuf::from("/etc/distrorun.d/x.conf"),
            root: "/srv/x".into(),
            root_attrs: Attrs::default(),
            mounts: vec![],
            workdir: "/".into(),
            workdir_is_cwd: true,
            command: distrorun_config::Command::Argv(vec![]),
            allow_setuid: false,
            user_db: distrorun_config::UserDb::Distro,
            devices: vec![],
        }
    }

    const CALLER: SourceChecks = SourceChecks { caller_may_search: true, not_kernel_fs: true };

    fn check(path: &str, checks: SourceChecks) -> Result<(), Errno> {
        let fd = mount::open_source(Path::new(path)).expect("open a host path");
        check_source(&spec(path, path, VolumeOrigin::Extra, checks), &fd)
    }

    #[test]
    fn caller_sources_must_be_searchable_directories_off_kernel_file_systems() {
        assert_eq!(check("/usr", CALLER), Ok(()));
        assert_eq!(check("/etc/passwd", CALLER), Err(Errno::ENOTDIR));
        assert_eq!(check("/proc/sys", CALLER), Err(Errno::EXDEV));
        assert_eq!(check("/sys/kernel", CALLER), Err(Errno::EXDEV));
        // The config's own volumes are the admin's choice, checked by nobody.
        assert_eq!(check("/proc/sys", SourceChecks::default()), Ok(()));
        assert_eq!(check("/etc/passwd", SourceChecks::default()), Ok(()));
    }

    #[test]
    fn source_errors_name_the_option_or_the_config() {
        let p = plan();
        let extra = spec("/data", "/data", VolumeOrigin::Extra, CALLER);
        assert_eq!(
            source_error(&p, &extra, Errno::EACCES).to_string(),
            "cannot use --extra-volume /data: Permission denied"
        );
        let kernel = source_error(&p, &extra, Errno::EXDEV);
        assert!(kernel.to_string().contains("kernel file system"), "{kernel}");
        let config = spec("/opt/cad", "/opt/cad", VolumeOrigin::Config, SourceChecks::default());
        let missing = source_error(&p, &config, Errno::ENOENT);
        assert_eq!(missing.to_string(), "cannot open volume /opt/cad on the host: No such file or directory");
        assert!(missing.hint().unwrap().contains("optional: true"), "{:?}", missing.hint());
        assert!(missing.hint().unwrap().contains("/etc/distrorun.d/x.conf"), "{:?}", missing.hint());
    }

    #[test]
    fn target_errors_show_the_host_path_and_the_fix() {
        let p = plan();
        let v = spec("/home", "/home", VolumeOrigin::Config, SourceChecks::default());
        let missing = target_error(&p, &v, Errno::ENOENT);
        assert_eq!(
            missing.to_string(),
            "cannot mount /home on /home in distro x: the mount point /srv/x/home does not exist"
        );
        assert!(missing.hint().unwrap().contains("mkdir -p /srv/x/home"), "{:?}", missing.hint());
        for e in [Errno::ELOOP, Errno::EXDEV] {
            let link = target_error(&p, &v, e);
            assert!(link.to_string().contains("is or passes through a symlink"), "{link}");
        }
    }
}
