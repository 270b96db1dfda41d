//! Mounts through the new mount API: every mount is made on descriptors, so
//! no path is resolved twice, and attributes are set on a whole tree in one
//! call however many submounts it has. Needs Linux 5.12.

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use distrorun_config::Attrs;
use nix::errno::Errno;
use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag, AT_FDCWD};
use nix::mount::{mount, MsFlags};
use nix::sys::statfs::{
    fstatfs, BPF_FS_MAGIC, CGROUP2_SUPER_MAGIC, CGROUP_SUPER_MAGIC, DEBUGFS_MAGIC, PROC_SUPER_MAGIC,
    SECURITYFS_MAGIC, SYSFS_MAGIC, TRACEFS_MAGIC,
};

use crate::{sys, Error};

/// Makes every mount in this namespace a slave: mounts the host makes later
/// (a USB stick, `/run/user/UID` at login) still propagate in, and nothing
/// done here ever propagates out to the host.
pub fn make_rslave() -> Result<(), Error> {
    mount(None::<&str>, "/", None::<&str>, MsFlags::MS_SLAVE | MsFlags::MS_REC, None::<&str>)
        .map_err(|e| Error::sys("make the mounts of the new namespace slaves of the host's", e))
}

/// Opens a host path as the caller sees it, following ordinary symlinks (the
/// host view is the caller's own) but never /proc magic links, which would
/// let a privileged process reach another process's mounts.
pub fn open_source(path: &Path) -> Result<OwnedFd, Errno> {
    let how =
        OpenHow::new().flags(OFlag::O_PATH | OFlag::O_CLOEXEC).resolve(ResolveFlag::RESOLVE_NO_MAGICLINKS);
    openat2(AT_FDCWD, path, how)
}

/// A detached recursive copy of the mount tree at `object`, so that
/// submounts such as /dev/pts come along.
pub fn clone_tree(object: &OwnedFd) -> Result<OwnedFd, Errno> {
    sys::open_tree(object.as_fd(), sys::OPEN_TREE_CLONE | sys::OPEN_TREE_CLOEXEC | sys::AT_RECURSIVE)
}

/// Adds the attributes to the tree and every submount in it. Attributes are
/// only ever added: a flag the host set (and, in a user namespace, locked)
/// stays set.
pub fn set_attrs(tree: &OwnedFd, attrs: Attrs) -> Result<(), Errno> {
    let mut set = 0;
    for (on, bit) in [
        (attrs.read_only, sys::MOUNT_ATTR_RDONLY),
        (attrs.nosuid, sys::MOUNT_ATTR_NOSUID),
        (attrs.nodev, sys::MOUNT_ATTR_NODEV),
        (attrs.noexec, sys::MOUNT_ATTR_NOEXEC),
    ] {
        if on {
            set |= bit;
        }
    }
    if set == 0 {
        return Ok(());
    }
    sys::mount_setattr_recursive(tree.as_fd(), set)
}

/// Opens a mount point inside the new root. The lookup treats `root` as `/`,
/// so `..` and absolute symlinks cannot leave it, and it refuses symlinks
/// altogether: a symlink planted under a world-writable directory of the
/// distro (`tmp/.X11-unix -> ../etc`) must never redirect a mount.
pub fn open_target(root: &OwnedFd, dst: &Path) -> Result<OwnedFd, Errno> {
    let relative: PathBuf = dst.components().filter(|c| matches!(c, Component::Normal(_))).collect();
    let how = OpenHow::new().flags(OFlag::O_PATH | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW).resolve(
        ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_SYMLINKS | ResolveFlag::RESOLVE_NO_MAGICLINKS,
    );
    let path: &Path = if relative.as_os_str().is_empty() { Path::new(".") } else { &relative };
    openat2(root.as_fd(), path, how)
}

/// Attaches the detached `tree` on top of `target`.
pub fn attach(tree: &OwnedFd, target: &OwnedFd) -> Result<(), Errno> {
    sys::move_mount(tree.as_fd(), target.as_fd())
}

/// The kernel file system `fd` lies on, when it is one whose files are the
/// kernel's own state rather than data: procfs, sysfs and the file systems
/// that are mounted below /sys.
pub fn kernel_filesystem(fd: &OwnedFd) -> Result<Option<&'static str>, Errno> {
    let kind = fstatfs(fd)?.filesystem_type();
    let known = [
        (PROC_SUPER_MAGIC, "procfs"),
        (SYSFS_MAGIC, "sysfs"),
        (CGROUP_SUPER_MAGIC, "cgroup"),
        (CGROUP2_SUPER_MAGIC, "cgroup2"),
        (DEBUGFS_MAGIC, "debugfs"),
        (TRACEFS_MAGIC, "tracefs"),
        (SECURITYFS_MAGIC, "securityfs"),
        (BPF_FS_MAGIC, "bpf"),
    ];
    Ok(known.iter().find(|(magic, _)| *magic == kind).map(|(_, name)| *name))
}

/// A failed mount step, with the kernel-version hint where the call does
/// not exist on this kernel.
pub fn error(what: impl Into<String>, errno: Errno) -> Error {
    let err = Error::sys(what, errno);
    match explain(errno) {
        Some(hint) => err.with_hint(hint),
        None => err,
    }
}

/// The message for a mount API call that does not exist on this kernel.
pub fn explain(errno: Errno) -> Option<&'static str> {
    (errno == Errno::ENOSYS)
        .then_some("distrorun needs Linux 5.12 or later (open_tree, move_mount, mount_setattr, openat2)")
}
