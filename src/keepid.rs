//! The per-user keep-id namespace for `ids: "subuid"` distros, made once
//! and joined on every launch.
//!
//! Only the setuid `newuidmap` and `newgidmap` may write maps over the
//! subordinate ranges, and starting them costs two setuid execs and a fork.
//! So the first launch starts a holder: a process outside the caller's
//! session and process tree that enters a new user namespace, has its maps
//! written, and then only waits. Its pid is kept in the caller's runtime
//! directory, a tmpfs that no other user may enter and that a reboot
//! empties. Every launch joins the holder's
//! user namespace with `setns` and makes a fresh mount namespace of its own,
//! so each run still starts from the host's mounts, keeps its PID and execs
//! the command in place.
//!
//! A namespace is joined only when the process named is alive, runs as the
//! caller, and its user namespace has exactly the maps this launch would
//! write; the check happens while a pidfd pins the process, so a reused pid
//! is never mistaken for the holder. Anything else (no state, a dead holder,
//! a pid now used by another process) makes a new holder under a lock, so that two first
//! launches at once start one holder between them.
//!
//! Without a runtime directory (under `su`, cron, or ssh without
//! `pam_systemd`), the state goes to `/tmp/distrorun-UID`, as podman falls
//! back to a directory of its own in `/tmp`. Another user may create that
//! name first, as a directory, a file or a symlink: it is used only when it
//! is a directory (never followed through a symlink) that is the caller's
//! and that no one else may enter, checked on the descriptor every later
//! step goes through. A name someone else planted costs the caller the
//! joined namespace, never its safety: the launch then writes its own maps,
//! as it does wherever the holder cannot be started.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use distrorun_engine::userns::{self, Forbidden, KeepId, MapRange};
use distrorun_engine::{sys, Error};
use nix::errno::Errno;
use nix::fcntl::{open, openat, renameat, Flock, FlockArg, OFlag};
use nix::sched::{setns, unshare, CloneFlags};
use nix::sys::stat::{fstat, mkdirat, Mode, SFlag};
use nix::unistd::{getpid, unlinkat, Uid, UnlinkatFlags};

/// The state file's name in the runtime directory.
const STATE: &str = "distrorun-keepid";
const LOCK: &str = "distrorun-keepid.lock";
/// Where the state goes without a runtime directory: `/tmp/distrorun-UID`.
const TMP: &str = "/tmp";
const TMP_PREFIX: &str = "distrorun-";

/// Enters the keep-id user namespace and a new mount namespace. `Ok(Err(_))`
/// means the kernel forbids user namespaces and nothing has changed.
pub fn enter(ids: &KeepId, uid: Uid) -> Result<Result<(), Forbidden>, Error> {
    let Some(dir) = state_dir(uid) else { return userns::enter_keep_id(ids, true) };
    if let Some(ns) = read_state(&dir, uid).and_then(|pid| holder_namespace(pid, ids, uid)) {
        return join(&ns, ids);
    }
    // Made under the lock, so that a concurrent first launch waits and then
    // joins the holder this one starts.
    let Ok(lock_file) = open_private(&dir, LOCK, OFlag::O_RDWR | OFlag::O_CREAT, uid) else {
        return userns::enter_keep_id(ids, true);
    };
    let Ok(_held) = Flock::lock(lock_file, FlockArg::LockExclusive) else {
        return userns::enter_keep_id(ids, true);
    };
    if let Some(ns) = read_state(&dir, uid).and_then(|pid| holder_namespace(pid, ids, uid)) {
        return join(&ns, ids);
    }
    if let Some(pid) = start_holder(ids) {
        if let Some(ns) = holder_namespace(pid, ids, uid) {
            write_state(&dir, pid, uid);
            return join(&ns, ids);
        }
    }
    userns::enter_keep_id(ids, true)
}

/// Joins the holder's user namespace and makes this run's mount namespace.
/// Where the kernel refuses the join, nothing has changed, and the launch
/// writes its own maps instead.
fn join(ns: &OwnedFd, ids: &KeepId) -> Result<Result<(), Forbidden>, Error> {
    if setns(ns.as_fd(), CloneFlags::CLONE_NEWUSER).is_err() {
        return userns::enter_keep_id(ids, true);
    }
    unshare(CloneFlags::CLONE_NEWNS).map_err(|e| Error::sys("create a mount namespace", e))?;
    Ok(Ok(()))
}

/// The directory the state is kept in, opened: `$XDG_RUNTIME_DIR`, else
/// `/run/user/UID`, else the caller's own directory in `/tmp`.
fn state_dir(uid: Uid) -> Option<OwnedFd> {
    let from_env = std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from).filter(|p| p.is_absolute());
    from_env
        .into_iter()
        .chain([PathBuf::from(format!("/run/user/{uid}"))])
        .find_map(|dir| {
            let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
            open(&dir, flags, Mode::empty()).ok().filter(|fd| private_dir(fd, uid))
        })
        .or_else(|| tmp_dir(uid))
}

/// Whether `fd` is a directory of the caller's that no one else may enter.
fn private_dir(fd: &OwnedFd, uid: Uid) -> bool {
    fstat(fd.as_fd()).is_ok_and(|st| {
        SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR
            && st.st_uid == uid.as_raw()
            && !Mode::from_bits_truncate(st.st_mode).intersects(Mode::S_IRWXG | Mode::S_IRWXO)
    })
}

/// `/tmp/distrorun-UID`, made 0700 when missing, and used only when it is
/// the caller's private directory. /tmp is everyone's to write, so the name
/// may already be another user's (a directory, a file, a symlink): it is
/// opened without following a symlink, and judged on that descriptor,
/// which every later step goes through, so swapping the name afterwards
/// changes nothing either.
fn tmp_dir(uid: Uid) -> Option<OwnedFd> {
    let tmp =
        open(Path::new(TMP), OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty()).ok()?;
    let name = format!("{TMP_PREFIX}{uid}");
    let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let dir = match openat(&tmp, name.as_str(), flags, Mode::empty()) {
        Err(Errno::ENOENT) => {
            // Another launch may make it at the same moment: EEXIST is fine,
            // whoever made it is judged below.
            match mkdirat(&tmp, name.as_str(), Mode::S_IRWXU) {
                Ok(()) | Err(Errno::EEXIST) => openat(&tmp, name.as_str(), flags, Mode::empty()).ok()?,
                Err(_) => return None,
            }
        }
        other => other.ok()?,
    };
    private_dir(&dir, uid).then_some(dir)
}

/// Opens a file of the state directory, never through a symlink, and only
/// when it is the caller's regular file that no one else may write.
fn open_private(dir: &OwnedFd, name: &str, flags: OFlag, uid: Uid) -> Result<File, Errno> {
    let flags = flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let fd = openat(dir, name, flags, Mode::from_bits_truncate(0o600))?;
    let st = fstat(fd.as_fd())?;
    let regular = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFREG;
    if !regular || st.st_uid != uid.as_raw() || st.st_mode & 0o022 != 0 {
        return Err(Errno::EPERM);
    }
    Ok(File::from(fd))
}

/// The holder's pid, when the state file is the caller's.
fn read_state(dir: &OwnedFd, uid: Uid) -> Option<i32> {
    let mut text = String::new();
    open_private(dir, STATE, OFlag::O_RDONLY, uid).ok()?.take(32).read_to_string(&mut text).ok()?;
    text.trim().parse().ok().filter(|p| *p > 1)
}

/// Replaces the state file in one rename, so that a reader sees the old
/// holder or the new one and never half a line.
fn write_state(dir: &OwnedFd, pid: i32, uid: Uid) {
    let tmp = format!("{STATE}.{}", getpid());
    let written = open_private(dir, &tmp, OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL, uid)
        .and_then(|mut f| f.write_all(format!("{pid}\n").as_bytes()).map_err(|_| Errno::EIO));
    if written.is_ok() && renameat(dir, tmp.as_str(), dir, STATE).is_ok() {
        return;
    }
    let _ = unlinkat(dir, tmp.as_str(), UnlinkatFlags::NoRemoveDir);
}

/// The user namespace of process `pid`, when it is a holder this launch may
/// join: alive, the caller's, and mapped exactly as `ids` say. The pidfd
/// pins the process while /proc is read: were it gone by the end, the
/// answers might describe a process that reused the pid.
fn holder_namespace(pid: i32, ids: &KeepId, uid: Uid) -> Option<OwnedFd> {
    let pidfd = sys::pidfd_open(pid).ok()?;
    let proc = PathBuf::from(format!("/proc/{pid}"));
    let dir = open(&proc, OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty()).ok()?;
    if fstat(dir.as_fd()).ok()?.st_uid != uid.as_raw() {
        return None;
    }
    let ns = open(&proc.join("ns/user"), OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty()).ok()?;
    let read = |name: &str| std::fs::read_to_string(proc.join(name)).ok();
    // A holder that was killed but not yet reaped still shows its
    // namespace; it is dead all the same, and is replaced.
    let running = read("stat").is_some_and(|stat| !is_dead(&stat));
    let maps_match = running
        && read("uid_map").is_some_and(|m| same_map(&m, &ids.uid_map))
        && read("gid_map").is_some_and(|m| same_map(&m, &ids.gid_map));
    (maps_match && sys::pidfd_alive(pidfd.as_fd())).then_some(ns)
}

/// Whether a `/proc/PID/stat` line is that of a zombie or a dying process:
/// the state follows the command name, which ends at the last `)`.
fn is_dead(stat: &str) -> bool {
    let state = stat.rfind(')').and_then(|end| stat[end + 1..].split_whitespace().next());
    !matches!(state, Some(s) if s != "Z" && s != "X" && s != "x")
}

/// Whether a `/proc/PID/uid_map` text holds exactly these ranges.
pub fn same_map(text: &str, map: &[MapRange]) -> bool {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let all_match = map.iter().all(|r| {
        lines.next().is_some_and(|line| {
            let n: Vec<u32> = line.split_whitespace().filter_map(|w| w.parse().ok()).collect();
            n == [r.inside, r.outside, r.count]
        })
    });
    all_match && lines.next().is_none()
}

/// Starts the holder and returns its pid once its maps are written; None
/// when it could not be made, which the caller then reports by writing its
/// own maps the usual way.
fn start_holder(ids: &KeepId) -> Option<i32> {
    let report = sys::spawn_detached(|report| {
        let _ = nix::sys::prctl::set_name(c"distrorun-keep");
        if matches!(userns::enter_keep_id(ids, false), Ok(Ok(()))) {
            let _ = nix::unistd::write(&report, getpid().as_raw().to_string().as_bytes());
            drop(report);
            loop {
                nix::unistd::pause();
            }
        }
    })
    .ok()?;
    let mut text = String::new();
    File::from(report).take(32).read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zombies_and_unreadable_states_count_as_dead() {
        assert!(!is_dead("42 (distrorun-keep) S 1 41 41 0 -1"));
        assert!(!is_dead("42 (a) b) R 1"), "a name with a parenthesis");
        assert!(is_dead("42 (distrorun-keep) Z 1 41 41"));
        assert!(is_dead("42 (distrorun-keep) X 1"));
        assert!(is_dead("garbage"));
    }

    #[test]
    fn maps_match_only_when_every_range_is_the_same() {
        let map = userns::keep_id_map(1000, 100_000, 65536);
        let text = "         0     100000       1000\n      1000       1000          1\n      1001     101000      64535\n";
        assert!(same_map(text, &map));
        assert!(!same_map("         0     100000       1000\n      1000       1000          1\n", &map));
        assert!(!same_map(&format!("{text}  70000 300000 1\n"), &map));
        assert!(!same_map(&text.replace("101000", "101001"), &map));
        assert!(!same_map("", &map));
    }
}
