//! Mounts, and the lookups that lead to them. Every mount is made on
//! descriptors, so no path is resolved twice. Two forms stand behind this
//! one interface: the new mount API (`open_tree`, `mount_setattr`,
//! `move_mount`, Linux 5.12), which copies a tree detached and sets
//! attributes on all of it in one call, and, on older kernels,
//! [`crate::legacy`]'s `mount(2)` on `/proc/self/fd` names. The form is
//! decided once per launch, by whether the kernel knows `mount_setattr`;
//! lookups use `openat2` until its first `ENOSYS`.

use std::ffi::CString;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};

use distrorun_config::Attrs;
use nix::errno::Errno;
use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag, AT_FDCWD};
use nix::mount::{mount, MsFlags};
use nix::sys::statfs::{
    fstatfs, BPF_FS_MAGIC, CGROUP2_SUPER_MAGIC, CGROUP_SUPER_MAGIC, DEBUGFS_MAGIC, PROC_SUPER_MAGIC,
    SECURITYFS_MAGIC, SYSFS_MAGIC, TRACEFS_MAGIC,
};

use crate::{legacy, sys, Error};

const UNKNOWN: u8 = 0;
const PRESENT: u8 = 1;
const MISSING: u8 = 2;

/// Whether this kernel has the whole new mount API, asked once.
static NEW_MOUNT_API: AtomicU8 = AtomicU8::new(UNKNOWN);
/// Whether this kernel has `openat2`: present until its first `ENOSYS`.
static OPENAT2: AtomicU8 = AtomicU8::new(UNKNOWN);

/// True when the kernel has `mount_setattr` (5.12), and with it every call
/// of the new mount API, which are older.
pub fn new_mount_api() -> bool {
    match NEW_MOUNT_API.load(Ordering::Relaxed) {
        PRESENT => true,
        MISSING => false,
        _ => {
            let present = sys::mount_setattr_exists();
            NEW_MOUNT_API.store(if present { PRESENT } else { MISSING }, Ordering::Relaxed);
            present
        }
    }
}

/// True until `openat2` has once answered `ENOSYS`.
pub fn has_openat2() -> bool {
    OPENAT2.load(Ordering::Relaxed) != MISSING
}

/// `openat2`, or `None` once the kernel has said it has no such call.
fn try_openat2(dir: std::os::fd::BorrowedFd, path: &Path, how: OpenHow) -> Option<Result<OwnedFd, Errno>> {
    if !has_openat2() {
        return None;
    }
    match openat2(dir, path, how) {
        Err(Errno::ENOSYS) => {
            OPENAT2.store(MISSING, Ordering::Relaxed);
            None
        }
        other => {
            OPENAT2.store(PRESENT, Ordering::Relaxed);
            Some(other)
        }
    }
}

/// Which form of each step this kernel gets, for `-v`, `--info` and
/// `--doctor`.
pub fn facilities() -> String {
    let mounts = if new_mount_api() {
        "mounts with open_tree, mount_setattr and move_mount"
    } else {
        "mounts with mount(2) on /proc/self/fd and a remount per submount (no mount_setattr: Linux before 5.12)"
    };
    let lookups = if has_openat2() && sys::openat2_exists() {
        "lookups with openat2"
    } else {
        "lookups by an O_PATH|O_NOFOLLOW walk (no openat2: Linux before 5.6)"
    };
    format!("{mounts}; {lookups}")
}

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
    open_host(path, OFlag::O_PATH)
}

/// [`open_source`] with other open flags, for host files that are read.
pub fn open_host(path: &Path, flags: OFlag) -> Result<OwnedFd, Errno> {
    let how = OpenHow::new().flags(flags | OFlag::O_CLOEXEC).resolve(ResolveFlag::RESOLVE_NO_MAGICLINKS);
    match try_openat2(AT_FDCWD, path, how) {
        Some(result) => result,
        None => legacy::open_host(path, flags),
    }
}

/// Opens `path` below `dir` as if `dir` were `/`, refusing every symlink on
/// the way (`ELOOP` or `EXDEV`), with `flags` for the last component.
pub fn open_beneath(dir: &OwnedFd, path: &Path, flags: OFlag) -> Result<OwnedFd, Errno> {
    let relative: PathBuf = path.components().filter(|c| matches!(c, Component::Normal(_))).collect();
    let how = OpenHow::new().flags(flags | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW).resolve(
        ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_SYMLINKS | ResolveFlag::RESOLVE_NO_MAGICLINKS,
    );
    let at: &Path = if relative.as_os_str().is_empty() { Path::new(".") } else { &relative };
    match try_openat2(dir.as_fd(), at, how) {
        Some(result) => result,
        None => legacy::open_beneath(dir, &relative, flags).map(|w| w.fd),
    }
}

/// A recursive copy of a mount tree on its way into the new root, with the
/// attributes it is to have.
pub struct Tree(TreeForm);

enum TreeForm {
    /// A detached copy made by `open_tree`, attributes already set.
    Detached(OwnedFd),
    /// Older kernels: the source, copied and given its attributes when it
    /// is attached.
    Pending { source: OwnedFd, attrs: Attrs },
}

/// A recursive copy of the mount tree at `object`, so that submounts such
/// as /dev/pts come along.
pub fn clone_tree(object: &OwnedFd) -> Result<Tree, Errno> {
    if new_mount_api() {
        let flags = sys::OPEN_TREE_CLONE | sys::OPEN_TREE_CLOEXEC | sys::AT_RECURSIVE;
        return sys::open_tree(object.as_fd(), flags).map(|fd| Tree(TreeForm::Detached(fd)));
    }
    let source = nix::unistd::dup(object).map_err(|_| Errno::EMFILE)?;
    Ok(Tree(TreeForm::Pending { source, attrs: Attrs::default() }))
}

/// [`clone_tree`] of a source that is needed for nothing else, which is
/// closed as soon as it is copied, or on older kernels kept until the bind
/// without a second descriptor.
pub fn clone_owned(object: OwnedFd) -> Result<Tree, Errno> {
    if new_mount_api() {
        return clone_tree(&object);
    }
    Ok(Tree(TreeForm::Pending { source: object, attrs: Attrs::default() }))
}

/// Adds the attributes to the tree and every submount in it. Attributes are
/// only ever added: a flag the host set (and, in a user namespace, locked)
/// stays set. `inside` is where the tree goes in the new root (`/` for the
/// root itself), which older kernels need to tell the copies apart.
pub fn set_attrs(tree: &mut Tree, attrs: Attrs, inside: &Path) -> Result<(), Errno> {
    match &mut tree.0 {
        TreeForm::Detached(fd) => set_attrs_fd(fd, attrs),
        TreeForm::Pending { attrs: pending, .. } => {
            *pending = attrs;
            // Now, while the run holds fewer descriptors than when it binds.
            legacy::prepare(attrs, inside)
        }
    }
}

/// [`set_attrs`] of a detached tree the new mount API made.
pub(crate) fn set_attrs_fd(fd: &OwnedFd, attrs: Attrs) -> Result<(), Errno> {
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
    sys::mount_setattr_recursive(fd.as_fd(), set)
}

/// A mount point, opened, with the directory and name it was found by where
/// the older form needs them to reach what is mounted on it.
pub struct Target {
    fd: OwnedFd,
    entry: Option<(OwnedFd, CString)>,
}

impl Target {
    /// The opened mount point.
    pub fn fd(&self) -> &OwnedFd {
        &self.fd
    }

    /// A directory opened elsewhere (the distro directory) as a mount point.
    pub fn dir(fd: OwnedFd) -> Result<Target, Errno> {
        let entry = if new_mount_api() { None } else { Some(legacy::entry_of(&fd)?) };
        Ok(Target { fd, entry })
    }
}

/// Opens a mount point inside the new root. The lookup treats `root` as `/`,
/// so `..` and absolute symlinks cannot leave it, and it refuses symlinks
/// altogether: a symlink planted under a world-writable directory of the
/// distro (`tmp/.X11-unix -> ../etc`) must never redirect a mount.
pub fn open_target(root: &OwnedFd, dst: &Path) -> Result<Target, Errno> {
    if new_mount_api() {
        let fd = open_beneath(root, dst, OFlag::O_PATH)?;
        return Ok(Target { fd, entry: None });
    }
    let walked = legacy::open_beneath(root, dst, OFlag::O_PATH)?;
    Ok(Target { fd: walked.fd, entry: walked.entry })
}

/// Attaches `tree` on top of `target`, and returns a descriptor of the
/// attached tree's root, through which later lookups see it. Both are
/// closed as soon as they are no longer needed, so that a bind never holds
/// more descriptors than the steps before it.
pub fn attach(tree: Tree, target: Target) -> Result<OwnedFd, Errno> {
    match tree.0 {
        TreeForm::Detached(fd) => {
            sys::move_mount(fd.as_fd(), target.fd.as_fd())?;
            Ok(fd)
        }
        TreeForm::Pending { source, attrs } => {
            let entry = target.entry.ok_or(Errno::EBUSY)?;
            legacy::bind(source, target.fd, entry, attrs)
        }
    }
}

/// A copy of the single entry `name` of the directory `dir`, no submount.
pub fn clone_entry(dir: &OwnedFd, name: &std::ffi::CStr) -> Result<Tree, Errno> {
    if new_mount_api() {
        let flags = sys::OPEN_TREE_CLONE | sys::OPEN_TREE_CLOEXEC;
        return sys::open_tree_at(dir.as_fd(), name, flags).map(|fd| Tree(TreeForm::Detached(fd)));
    }
    legacy::prepare(Attrs::default(), Path::new("/"))?;
    let flags = OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let source = nix::fcntl::openat(dir.as_fd(), name, flags, nix::sys::stat::Mode::empty())?;
    Ok(Tree(TreeForm::Pending { source, attrs: Attrs::default() }))
}

/// Older kernels check the attributes of several copies at once (see
/// [`crate::legacy`]): this checks those not checked yet, and must run
/// before the new root is entered. With the new mount API every copy has
/// its attributes before it is attached, and this does nothing.
pub fn settle() -> Result<(), Errno> {
    if new_mount_api() {
        return Ok(());
    }
    legacy::settle()
}

/// A new ramfs, nosuid, nodev and noexec, filled by `fill` and then made
/// read-only, seen by this mount namespace only. With the new API it is
/// made detached and attached on `under`, where the new root then hides
/// it; on older kernels it is mounted where nothing looks once the mounts
/// are made (see [`crate::legacy`]), and `under` is not needed. Either way
/// the root switch detaches it with the host's root.
pub fn ramfs(
    under: Option<&OwnedFd>,
    fill: impl FnOnce(&OwnedFd) -> Result<(), Errno>,
    attrs: Attrs,
) -> Result<OwnedFd, Errno> {
    if !new_mount_api() {
        let ramfs = legacy::ramfs()?;
        fill(&ramfs)?;
        legacy::seal_ramfs(&ramfs, attrs)?;
        return Ok(ramfs);
    }
    let fs = sys::fsopen(c"ramfs")?;
    sys::fsconfig_create(fs.as_fd())?;
    let ramfs =
        sys::fsmount(fs.as_fd(), sys::MOUNT_ATTR_NOSUID | sys::MOUNT_ATTR_NODEV | sys::MOUNT_ATTR_NOEXEC)?;
    fill(&ramfs)?;
    set_attrs_fd(&ramfs, attrs)?;
    if let Some(under) = under {
        sys::move_mount(ramfs.as_fd(), under.as_fd())?;
    }
    Ok(ramfs)
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

/// The message for a call that does not exist on this kernel, which the
/// older forms should have made impossible.
pub fn explain(errno: Errno) -> Option<&'static str> {
    (errno == Errno::ENOSYS).then_some("distrorun needs Linux 4.18 or later")
}
