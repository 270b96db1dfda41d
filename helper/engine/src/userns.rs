//! The unprivileged backend's namespace: a new user namespace in which the
//! caller's uid and gid map to themselves, plus a new mount namespace.
//!
//! Once `unshare(CLONE_NEWUSER)` has succeeded there is no way back: the
//! process can no longer gain privilege from the setuid helper. So every way
//! the kernel can forbid user namespaces is detected before that point, and
//! the one that only shows after it (`AppArmor` on Ubuntu 23.10+) is probed in
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

/// How to test the unusable-namespace path on kernels without `AppArmor`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Simulate {
    #[default]
    Nothing,
    /// Behave as if `AppArmor` restricted user namespaces.
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

/// One line of an id map: `count` ids from `inside` map to `outside`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MapRange {
    pub inside: u32,
    pub outside: u32,
    pub count: u32,
}

/// The keep-id layout (podman's `--userns=keep-id`): the caller's own id
/// maps to itself, and the ids below and above it map, in order, onto the
/// subordinate range `start .. start + count`. One subordinate id is left
/// unused, because the caller's id takes its place inside.
pub fn keep_id_map(own: u32, start: u32, count: u32) -> Vec<MapRange> {
    let mut map = Vec::with_capacity(3);
    let below = own.min(count);
    if below > 0 {
        map.push(MapRange { inside: 0, outside: start, count: below });
    }
    map.push(MapRange { inside: own, outside: own, count: 1 });
    let above = count.saturating_sub(own).saturating_sub(1);
    if above > 0 {
        if let (Some(inside), Some(outside)) = (own.checked_add(1), start.checked_add(own)) {
            map.push(MapRange { inside, outside, count: above });
        }
    }
    map
}

/// What [`enter_keep_id`] needs: the two maps and the setuid programs that
/// may write them for an unprivileged process.
#[derive(Debug, Clone)]
pub struct KeepId {
    pub uid_map: Vec<MapRange>,
    pub gid_map: Vec<MapRange>,
    pub newuidmap: std::path::PathBuf,
    pub newgidmap: std::path::PathBuf,
}

/// Enters a new user namespace (and a mount namespace if `mount_ns`) whose
/// maps span the caller's subordinate ranges. Only the system's setuid
/// `newuidmap` and `newgidmap` may write such maps, and only for another
/// process, so a child forked beforehand writes them while this process
/// waits: the process keeps its PID, and the command exec'd later is still
/// the shell's direct child. `Ok(Err(_))` means the kernel forbids user
/// namespaces and nothing has changed.
pub fn enter_keep_id(ids: &KeepId, mount_ns: bool) -> Result<Result<(), Forbidden>, Error> {
    let words = |map: &[MapRange]| -> Vec<String> {
        map.iter().flat_map(|r| [r.inside.to_string(), r.outside.to_string(), r.count.to_string()]).collect()
    };
    let (uid_words, gid_words) = (words(&ids.uid_map), words(&ids.gid_map));
    let writer = sys::fork_waiting(|| {
        let parent = nix::unistd::getppid().to_string();
        let start = |program: &std::path::Path, map: &[String]| {
            std::process::Command::new(program)
                .arg(&parent)
                .args(map)
                .stdin(std::process::Stdio::null())
                .spawn()
        };
        // Side by side: each is a setuid exec that reads /etc/subuid.
        let (uid, gid) = (start(&ids.newuidmap, &uid_words), start(&ids.newgidmap, &gid_words));
        let succeeded = |child: std::io::Result<std::process::Child>| {
            child.and_then(|mut c| c.wait()).is_ok_and(|s| s.success())
        };
        let uid_ok = succeeded(uid);
        succeeded(gid) && uid_ok
    })
    .map_err(|e| Error::sys("fork to write the id maps", e))?;
    let mut flags = CloneFlags::CLONE_NEWUSER;
    if mount_ns {
        flags |= CloneFlags::CLONE_NEWNS;
    }
    match unshare(flags) {
        Ok(()) => {}
        Err(
            e
            @ (Errno::EPERM | Errno::ENOSPC | Errno::EINVAL | Errno::EUSERS | Errno::ENOSYS | Errno::EACCES),
        ) => return Ok(Err(Forbidden(format!("unshare(CLONE_NEWUSER) failed: {}", e.desc())))),
        Err(e) => return Err(Error::sys("create a user namespace", e)),
    }
    match writer.release() {
        Ok(true) => Ok(Ok(())),
        Ok(false) => Err(Error::msg(format!(
            "cannot map the subordinate ids: {} or {} refused the maps",
            ids.newuidmap.display(),
            ids.newgidmap.display()
        ))
        .with_hint(
            "check your ranges in /etc/subuid and /etc/subgid (usermod --add-subuids / --add-subgids)",
        )),
        Err(e) => Err(Error::sys("wait for newuidmap and newgidmap", e)),
    }
}

/// A private mount namespace without a user namespace: for the real root
/// caller and the setuid helper, which already hold `CAP_SYS_ADMIN`.
pub fn enter_mount_namespace() -> Result<(), Error> {
    unshare(CloneFlags::CLONE_NEWNS).map_err(|e| Error::sys("create a mount namespace", e))
}

#[cfg(test)]
mod tests {
    use super::{keep_id_map, MapRange};

    fn r(inside: u32, outside: u32, count: u32) -> MapRange {
        MapRange { inside, outside, count }
    }

    #[test]
    fn keep_id_maps_the_caller_to_itself_and_the_rest_onto_the_range() {
        assert_eq!(
            keep_id_map(1001, 100_000, 65536),
            [r(0, 100_000, 1001), r(1001, 1001, 1), r(1002, 101_001, 64534)]
        );
    }

    #[test]
    fn keep_id_with_a_range_smaller_than_the_callers_id() {
        assert_eq!(keep_id_map(5000, 100_000, 1000), [r(0, 100_000, 1000), r(5000, 5000, 1)]);
        assert_eq!(keep_id_map(0, 100_000, 10), [r(0, 0, 1), r(1, 100_000, 9)]);
    }
}
