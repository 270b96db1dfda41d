//! `user_db`: the caller's identity inside the distro.
//!
//! [`prepare`] runs before any mount, as the caller and with no capability:
//! it reads the distro's `/etc/passwd` and `/etc/group` through the distro
//! directory's descriptor, and only when they lack the caller does it ask
//! the host's NSS (and, for `"host"`, read the host's own files). The merge
//! itself is the pure [`distrorun_config::userdb`].
//!
//! [`stage`] and [`install`] run with the right to mount, in the private
//! mount namespace: the merged files go into a ramfs made with
//! `fsopen`/`fsmount` (`mount(2)` on older kernels), which only this
//! namespace ever holds, beneath the new root and hidden by it, so the host
//! never sees it and no other user can reach it; each file is bound, read-only, over its place in the new
//! root. Nothing is ever written into the distro tree.

use std::ffi::{CStr, CString};
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use distrorun_config::load::read_upto;
use distrorun_config::plan::IDENTITY_FILES;
use distrorun_config::userdb::{self, GroupEntry, Limits, Merged, PasswdEntry};
use distrorun_config::{errno_of, nss};
use distrorun_config::{Attrs, Plan, UserDb};
use nix::errno::Errno;
use nix::fcntl::{openat, OFlag};
use nix::sys::stat::{fstat, Mode, SFlag};
use nix::unistd::{Gid, Uid};

use crate::{mount, Error, Log};

/// The largest identity file read; a bigger one is not a passwd file.
const MAX_FILE: u64 = 16 << 20;

/// The uid the kernel shows for an owner that the user namespace does not
/// map (`/proc/sys/kernel/overflowuid`, 65534 unless an admin changed it).
const OVERFLOW_UID: u32 = 65534;

/// Who the caller is, by the kernel's real ids, and how much to trust the
/// files read on the way: the setuid helper accepts only root's files, the
/// unprivileged backends also the caller's own and, in a user namespace,
/// root's shown as unmapped.
#[derive(Debug, Clone)]
pub struct Lookup {
    pub uid: Uid,
    pub gid: Gid,
    /// The supplementary groups the process holds, which the command keeps.
    pub groups: Vec<Gid>,
    pub only_root_files: bool,
}

/// The files to provide, merged and checked, ready for [`install`].
#[derive(Debug)]
pub struct Prepared {
    merged: Merged,
}

/// Decides what the command's identity files hold; None when the distro's
/// own are used unchanged, and `-v` says why.
pub fn prepare(
    plan: &Plan,
    distro_dir: &OwnedFd,
    lookup: &Lookup,
    log: Log,
) -> Result<Option<Prepared>, Error> {
    let mode = match plan.identity_files() {
        (Some(mode), _) => mode,
        (None, Some(volume)) => {
            log.step(format_args!(
                "user_db {}: the volume on {} provides the identity files",
                plan.user_db.as_str(),
                volume.display()
            ));
            return Ok(None);
        }
        (None, None) => return Ok(None),
    };
    let tag = mode.as_str();
    let Some(passwd) = read_distro_file(plan, distro_dir, IDENTITY_FILES[0], lookup)? else {
        log.step(format_args!(
            "user_db {tag}: distro {} has no /etc/passwd; its files are used unchanged",
            plan.distro
        ));
        return Ok(None);
    };
    let Some(group) = read_distro_file(plan, distro_dir, IDENTITY_FILES[1], lookup)? else {
        log.step(format_args!(
            "user_db {tag}: distro {} has no /etc/group; its files are used unchanged",
            plan.distro
        ));
        return Ok(None);
    };
    let (uid, gid) = (lookup.uid.as_raw(), lookup.gid.as_raw());
    if mode == UserDb::Caller && userdb::has_id(&passwd, uid) && userdb::has_id(&group, gid) {
        log.step(format_args!(
            "user_db {tag}: the distro knows uid {uid} and gid {gid}; its files are used unchanged"
        ));
        return Ok(None);
    }
    // A group the distro already has by id keeps the distro's entry, so
    // with "caller" it need not be asked of NSS at all.
    let known_inside = |gid: Gid| mode != UserDb::Host && userdb::has_id(&group, gid.as_raw());
    let Some((me, my_groups)) = caller_from_nss(lookup, log, tag, known_inside) else { return Ok(None) };
    let merged = match mode {
        UserDb::Host => {
            let host_passwd = read_host_file(Path::new("/etc/passwd"), lookup)?.unwrap_or_default();
            let host_group = read_host_file(Path::new("/etc/group"), lookup)?.unwrap_or_default();
            let limits = read_host_file(Path::new("/etc/login.defs"), lookup)?
                .map_or_else(Limits::default, |t| Limits::from_login_defs(&t));
            userdb::merge_host(&passwd, &group, &host_passwd, &host_group, limits, &me, &my_groups)
        }
        UserDb::Caller | UserDb::Distro => userdb::merge_caller(&passwd, &group, &me, &my_groups),
    };
    for why in &merged.skipped {
        log.step(format_args!("user_db {tag}: left out {why}"));
    }
    if mode == UserDb::Caller && merged.is_unchanged() {
        log.step(format_args!("user_db {tag}: nothing to add; the distro's files are used unchanged"));
        return Ok(None);
    }
    for (file, lines) in [(IDENTITY_FILES[0], &merged.added_users), (IDENTITY_FILES[1], &merged.added_groups)]
    {
        for line in lines {
            log.step(format_args!(
                "user_db {tag}: {file} + {}",
                String::from_utf8_lossy(line.trim_ascii_end())
            ));
        }
    }
    Ok(Some(Prepared { merged }))
}

/// The caller's own entry and groups, as the host's NSS gives them for the
/// kernel's real ids: never from the caller's environment or files. None,
/// with a note for `-v`, when NSS does not know the caller.
fn caller_from_nss(
    lookup: &Lookup,
    log: Log,
    tag: &str,
    known_inside: impl Fn(Gid) -> bool,
) -> Option<(PasswdEntry, Vec<GroupEntry>)> {
    let uid = lookup.uid;
    let Some(me) = nss::user_by_uid(uid.as_raw()) else {
        log.step(format_args!("user_db {tag}: the host knows no user with uid {uid}; nothing to add"));
        return None;
    };
    let me = PasswdEntry { passwd: b"x".to_vec(), ..me };
    // The groups the command will hold, as the kernel has them: the real
    // gid (after newgrp not the passwd one) and the supplementary groups.
    // Asking the kernel rather than getgrouplist spares walking every NSS
    // module, which loads each one, when the files already name them all.
    // Each id is asked once: the real gid is usually the passwd one too,
    // and among the supplementary groups.
    let mut asked = Vec::with_capacity(lookup.groups.len() + 2);
    for gid in [lookup.gid.as_raw(), me.gid].into_iter().chain(lookup.groups.iter().map(|g| g.as_raw())) {
        if !asked.contains(&gid) && !known_inside(Gid::from_raw(gid)) {
            asked.push(gid);
        }
    }
    let groups = nss::groups_by_gid(&asked)
        .into_iter()
        .map(|g| GroupEntry { passwd: b"x".to_vec(), members: vec![], ..g })
        .collect();
    Some((me, groups))
}

/// Reads one of the distro's identity files through the distro directory,
/// never through a symlink (the merged file is bound on exactly this path,
/// which must not lead elsewhere). None when it does not exist.
fn read_distro_file(
    plan: &Plan,
    distro_dir: &OwnedFd,
    file: &str,
    lookup: &Lookup,
) -> Result<Option<Vec<u8>>, Error> {
    let host = plan.host_target(Path::new(file));
    let flags = OFlag::O_RDONLY | OFlag::O_NONBLOCK;
    let fd = match mount::open_beneath(distro_dir, Path::new(file), flags) {
        Ok(fd) => fd,
        Err(Errno::ENOENT) => return Ok(None),
        Err(Errno::ELOOP | Errno::EXDEV) => {
            return Err(Error::msg(format!(
                "cannot provide the caller's identity in distro {}: {} is or passes through a symlink",
                plan.distro,
                host.display()
            ))
            .with_hint(set_distro_hint(plan)))
        }
        Err(e) => return Err(Error::sys(format!("open {} of distro {}", host.display(), plan.distro), e)),
    };
    read_checked(fd, &host, lookup).map(Some).map_err(|e| e.with_hint(set_distro_hint(plan)))
}

fn set_distro_hint(plan: &Plan) -> String {
    format!(
        "fix the file, or set user_db: \"distro\" in {} to use the tree's files as they are",
        plan.config.display()
    )
}

/// Reads a host file; None when it does not exist.
fn read_host_file(path: &Path, lookup: &Lookup) -> Result<Option<Vec<u8>>, Error> {
    match mount::open_host(path, OFlag::O_RDONLY | OFlag::O_NONBLOCK) {
        Ok(fd) => read_checked(fd, path, lookup).map(Some),
        Err(Errno::ENOENT) => Ok(None),
        Err(e) => Err(Error::sys(format!("open {} on the host", path.display()), e)),
    }
}

/// The whole file, once it is known to be a regular file that no other
/// user can change: what another user could write must never become
/// anyone's identity.
fn read_checked(fd: OwnedFd, shown: &Path, lookup: &Lookup) -> Result<Vec<u8>, Error> {
    let st = fstat(fd.as_fd()).map_err(|e| Error::sys(format!("examine {}", shown.display()), e))?;
    let untrusted = |why: &str| {
        Error::msg(format!("refusing to use {} for the caller's identity: {why}", shown.display()))
    };
    if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFREG {
        return Err(untrusted("it is not a regular file"));
    }
    let owner_ok = st.st_uid == 0
        || (!lookup.only_root_files && (st.st_uid == lookup.uid.as_raw() || st.st_uid == OVERFLOW_UID));
    if !owner_ok {
        return Err(untrusted(&format!("it is owned by uid {}", st.st_uid)));
    }
    if st.st_mode & 0o022 != 0 {
        return Err(untrusted("it is writable by group or others"));
    }
    read_upto(File::from(fd), u64::try_from(st.st_size).unwrap_or(0), MAX_FILE)
        .map_err(|e| Error::msg(format!("cannot read {}: {e}", shown.display())))?
        .ok_or_else(|| untrusted("it is larger than 16 MiB"))
}

/// The attributes of the ramfs and of every bind cloned from it.
const READ_ONLY: Attrs = Attrs { read_only: true, nosuid: true, nodev: true, noexec: true };

/// The merged files in a ramfs of their own, attached beneath where the new
/// root goes; made by [`stage`], bound by [`install`]. On kernels without
/// the new mount API the ramfs is made by [`install`] itself.
#[derive(Debug)]
pub struct Staged {
    ramfs: Option<OwnedFd>,
    files: Vec<(&'static str, Vec<u8>)>,
}

/// Writes the prepared files into a new ramfs and attaches it on `under`,
/// the distro directory, after the new root was cloned from it and before
/// that clone is attached on top. Needs the right to mount.
///
/// Attached there, the ramfs is hidden by the new root at once, is never
/// part of it, and is detached together with the host's root in the one
/// lazy unmount that `pivot_root` needs anyway. Left detached, its last
/// descriptor's close would unmount it on its own, and every unmount waits
/// out an RCU grace period: microseconds on an idle machine, milliseconds
/// when the other CPUs are busy. Files are also cloned from an attached
/// mount on every kernel, where kernels before 6.15 refuse a detached one.
pub fn stage(plan: &Plan, under: &OwnedFd, prepared: &Prepared) -> Result<Staged, Error> {
    let files: Vec<_> =
        prepared.files().iter().map(|(inside, contents)| (*inside, contents.to_vec())).collect();
    if !mount::new_mount_api() {
        // Older kernels copy trees when they are attached, which would put
        // a ramfs staged here into the new root; install makes it instead.
        return Ok(Staged { ramfs: None, files });
    }
    let ramfs = make_ramfs(Some(under), &files)
        .map_err(|e| identity_error(plan, "provide /etc/passwd and /etc/group", e))?;
    Ok(Staged { ramfs: Some(ramfs), files: Vec::new() })
}

fn make_ramfs(under: Option<&OwnedFd>, files: &[(&'static str, Vec<u8>)]) -> Result<OwnedFd, Errno> {
    // ramfs, not tmpfs: two small files that never change need no size
    // accounting, swap or per-CPU counters, which a tmpfs sets up and tears
    // down with every mount (10–40 µs a launch). Read-only once written,
    // so that each bind cloned from it is too, with no attribute call of
    // its own.
    let fill = |ramfs: &OwnedFd| {
        for (inside, contents) in files {
            write_file(ramfs, &file_name(inside)?, contents)?;
        }
        Ok(())
    };
    mount::ramfs(under, fill, READ_ONLY)
}

/// Binds the staged files, read-only, over `/etc/passwd` and `/etc/group`
/// in the new root, after the volumes so that the files they cover are the
/// distro's. Needs the right to mount; `root` names the attached new root.
pub fn install(plan: &Plan, root: &OwnedFd, staged: &Staged, log: Log) -> Result<(), Error> {
    let made;
    let ramfs = if let Some(ramfs) = &staged.ramfs {
        ramfs
    } else {
        made = make_ramfs(None, &staged.files)
            .map_err(|e| identity_error(plan, "provide /etc/passwd and /etc/group", e))?;
        &made
    };
    for inside in IDENTITY_FILES {
        let copy = file_name(inside)
            .and_then(|name| mount::clone_entry(ramfs, &name))
            .map_err(|e| identity_error(plan, &format!("bind the merged {inside}"), e))?;
        let target = mount::open_target(root, Path::new(inside)).map_err(|e| {
            Error::sys(
                format!("open {} of distro {}", plan.host_target(Path::new(inside)).display(), plan.distro),
                e,
            )
        })?;
        mount::attach(copy, target)
            .map_err(|e| identity_error(plan, &format!("mount the merged {inside}"), e))?;
    }
    log.step(format_args!(
        "user_db {}: /etc/passwd and /etc/group from a private ramfs (read-only)",
        plan.user_db.as_str()
    ));
    Ok(())
}

impl Prepared {
    fn files(&self) -> [(&'static str, &[u8]); 2] {
        [(IDENTITY_FILES[0], &self.merged.passwd[..]), (IDENTITY_FILES[1], &self.merged.group[..])]
    }
}

/// The name in the ramfs of the file bound on `inside`.
fn file_name(inside: &str) -> Result<CString, Errno> {
    CString::new(inside.trim_start_matches("/etc/")).map_err(|_| Errno::EINVAL)
}

fn identity_error(plan: &Plan, what: &str, e: Errno) -> Error {
    mount::error(format!("{what} for the identity files of distro {}", plan.distro), e)
}

/// A new file `name` in `dir` (a private ramfs) holding `contents`.
pub(crate) fn write_file(dir: &OwnedFd, name: &CStr, contents: &[u8]) -> Result<(), Errno> {
    let fd = openat(
        dir.as_fd(),
        name,
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW,
        Mode::from_bits_truncate(0o644),
    )?;
    File::from(fd).write_all(contents).map_err(|e| errno_of(&e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn lookup(only_root_files: bool) -> Lookup {
        Lookup { uid: nix::unistd::getuid(), gid: nix::unistd::getgid(), groups: vec![], only_root_files }
    }

    fn read(path: &Path, l: &Lookup) -> Result<Vec<u8>, String> {
        read_host_file(path, l).map(Option::unwrap_or_default).map_err(|e| e.to_string())
    }

    #[test]
    fn only_regular_files_that_no_one_else_can_change_are_read() {
        let dir = std::env::temp_dir().join(format!("distrorun-userdb-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("passwd");
        std::fs::write(&file, b"a:x:1:1::/:/bin/sh\n").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        // Owned by whoever runs the tests: the caller's own file.
        assert_eq!(read(&file, &lookup(false)).unwrap(), b"a:x:1:1::/:/bin/sh\n");
        if !nix::unistd::getuid().is_root() {
            assert!(read(&file, &lookup(true)).unwrap_err().contains("owned by uid"));
        }
        for mode in [0o664, 0o646] {
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).unwrap();
            let err = read(&file, &lookup(false)).unwrap_err();
            assert!(err.contains("writable by group or others"), "{err}");
        }
        assert!(read(&dir, &lookup(false)).unwrap_err().contains("not a regular file"));
        assert_eq!(read(&dir.join("missing"), &lookup(false)).unwrap(), b"");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
