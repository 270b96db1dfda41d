//! The unprivileged backend's namespace: a new user namespace in which the
//! caller's uid and gid map to themselves, plus a new mount namespace.
//!
//! Once `unshare(CLONE_NEWUSER)` has succeeded there is no way back: the
//! process can no longer gain privilege from the setuid helper. So every way
//! the kernel can forbid user namespaces is detected before that point, and
//! the one that only shows after it (AppArmor on Ubuntu 23.10+) is probed in
//! a throw-away child.

use nix::errno::Errno;
use nix::fcntl::{open, OFlag};
use nix::sched::{unshare, CloneFlags};
use nix::sys::stat::Mode;
use nix::unistd::{write, Gid, Uid};

use crate::{sys, Error};

/// Ubuntu's switch: when 1, unshare succeeds but the new namespace is
/// confined to a profile that denies every capability.
const APPARMOR_RESTRICT: &str = "/proc/sys/kernel/apparmor_restrict_unprivileged_userns";

/// Why user namespaces cannot be used here, for the fallback decision and
/// for the message when there is nothing to fall back to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forbidden(pub String);

/// How to test the unusable-namespace path on kernels without AppArmor.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Simulate {
    #[default]
    Nothing,
    /// Behave as if AppArmor restricted user namespaces.
    UnusableNamespace,
}

/// Enters a new user and mount namespace with the caller's ids mapped to
/// themselves. `Ok(Err(_))` means the kernel forbids it and nothing has
/// changed, so the caller may still fall back to the setuid helper.
pub fn enter(uid: Uid, gid: Gid, simulate: Simulate) -> Result<Result<(), Forbidden>, Error> {
    if let Some(why) = unusable_after_unshare(uid, gid, simulate)? {
        return Ok(Err(Forbidden(why)));
    }
    match unshare(CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNS) {
        Ok(()) => {}
        Err(
            e
            @ (Errno::EPERM | Errno::ENOSPC | Errno::EINVAL | Errno::EUSERS | Errno::ENOSYS | Errno::EACCES),
        ) => return Ok(Err(Forbidden(format!("unshare(CLONE_NEWUSER) failed: {}", e.desc())))),
        Err(e) => return Err(Error::sys("create a user namespace", e)),
    }
    map_ids(uid, gid).map_err(|e| {
        e.with_hint("user namespaces are unusable on this system; ask the admin for the setuid helper and use --backend helper")
    })?;
    Ok(Ok(()))
}

/// Probes, in a child, whether a user namespace would be usable, but only
/// where the kernel is known to create unusable ones: the probe costs a fork.
fn unusable_after_unshare(uid: Uid, gid: Gid, simulate: Simulate) -> Result<Option<String>, Error> {
    let restricted = simulate == Simulate::UnusableNamespace
        || (std::fs::read(APPARMOR_RESTRICT).is_ok_and(|v| v.first() == Some(&b'1'))
            && !confined_by_profile());
    if !restricted {
        return Ok(None);
    }
    let usable = sys::in_child(|| {
        simulate == Simulate::Nothing
            && unshare(CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNS).is_ok()
            && map_ids(uid, gid).is_ok()
            && crate::mount::make_rslave().is_ok()
    })
    .map_err(|e| Error::sys("fork to probe user namespaces", e))?;
    Ok((!usable).then(|| {
        "user namespaces are restricted by AppArmor (kernel.apparmor_restrict_unprivileged_userns=1)"
            .to_owned()
    }))
}

/// Under a profile of its own (`make install-apparmor` grants `userns,`)
/// distrorun is trusted with user namespaces, and the probe's fork is saved.
/// Only unconfined processes land in Ubuntu's restricted profile.
fn confined_by_profile() -> bool {
    let label = std::fs::read("/proc/self/attr/apparmor/current")
        .or_else(|_| std::fs::read("/proc/self/attr/current"));
    label.is_ok_and(|l| !l.is_empty() && !l.starts_with(b"unconfined"))
}

/// Writes the identity maps. `setgroups` must be denied before an
/// unprivileged process may write its gid map; supplementary groups stay in
/// the credentials and keep granting access, shown as nogroup.
fn map_ids(uid: Uid, gid: Gid) -> Result<(), Error> {
    write_proc("/proc/self/setgroups", b"deny")?;
    write_proc("/proc/self/uid_map", format!("{uid} {uid} 1").as_bytes())?;
    write_proc("/proc/self/gid_map", format!("{gid} {gid} 1").as_bytes())
}

/// One `write` call: the kernel takes a map only in a single write.
fn write_proc(path: &str, data: &[u8]) -> Result<(), Error> {
    let fd = open(path, OFlag::O_WRONLY | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(|e| Error::sys(format!("open {path}"), e))?;
    match write(&fd, data) {
        Ok(n) if n == data.len() => Ok(()),
        Ok(_) => Err(Error::sys(format!("write {path}"), Errno::EIO)),
        Err(e) => Err(Error::sys(format!("write {path}"), e)),
    }
}

/// A private mount namespace without a user namespace: for the real root
/// caller and the setuid helper, which already hold CAP_SYS_ADMIN.
pub fn enter_mount_namespace() -> Result<(), Error> {
    unshare(CloneFlags::CLONE_NEWNS).map_err(|e| Error::sys("create a mount namespace", e))
}
