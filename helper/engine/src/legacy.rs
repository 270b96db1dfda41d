//! The second form of the few engine steps that use system calls newer than
//! Linux 4.18, for kernels that answer them with `ENOSYS`. [`crate::mount`]
//! picks the form; nothing else calls this module.
//!
//! - **Lookups** (`openat2` before 5.6): one `openat(O_PATH | O_NOFOLLOW)`
//!   per component, each checked with `fstat` before the next, so a symlink
//!   is seen as itself and refused (or, on the host side, followed by hand
//!   unless it lies on procfs, where magic links live). `..` never occurs:
//!   the callers pass only plain components.
//! - **Binds** (`open_tree`/`move_mount` before 5.2, `mount_setattr` before
//!   5.12): `mount(MS_BIND | MS_REC)` with both ends named as
//!   `/proc/self/fd/N`, so each end is the object already opened and
//!   checked, never a path looked up again. The kernel attaches a bind made
//!   this way exactly as it attaches a moved `open_tree` copy (both go
//!   through the same copy and attach code), so propagation is the same:
//!   every mount of the namespace is already a slave, and so is each copy.
//! - **Attributes** (`mount_setattr` before 5.12): after the bind, each
//!   mount of the new tree (the mounts `/proc/self/mountinfo` shows that
//!   were not there before) is opened by a symlink-refusing walk from the
//!   tree's root and remounted with `MS_REMOUNT | MS_BIND`, with the flags
//!   of the mount that descriptor lies on (`fstatvfs`) plus the plan's, as
//!   bubblewrap does: a flag is only ever added, and the flags a user
//!   namespace locks are passed back unchanged. Mountinfo is read again to
//!   check that every new mount has the plan's flags, so a path swapped
//!   during the walk makes the run fail rather than leave one without.
//!   (Mount ids of descriptors are not used: `/proc/self/fdinfo` is closed
//!   to an undumpable process before Linux 5.14, and `statx` has them only
//!   since 5.8.)
//! - **The identity ramfs** (`fsopen`/`fsmount` before 5.2): mounted with
//!   `mount(2)` on the host's `/proc/sys` in the private namespace, where
//!   nothing later looks, and detached with the host's root by the root
//!   switch.

use std::ffi::{CString, OsStr};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use distrorun_config::Attrs;
use nix::errno::Errno;
use nix::fcntl::{openat, readlinkat, OFlag, AT_FDCWD};
use nix::mount::{mount, MsFlags};
use nix::sys::stat::{fstat, Mode, SFlag};
use nix::sys::statfs::{fstatfs, FsType, PROC_SUPER_MAGIC};
use nix::sys::statvfs::{fstatvfs, FsFlags};

/// `RAMFS_MAGIC` from <linux/magic.h>, which libc does not export.
const RAMFS_MAGIC: FsType = FsType(0x8584_58f6);

/// The most symlinks a host path may pass through, as the kernel's own.
const MAX_SYMLINKS: usize = 40;

/// The path by which `mount(2)` reaches exactly the object `fd` names.
fn proc_fd(fd: &OwnedFd) -> String {
    format!("/proc/self/fd/{}", fd.as_raw_fd())
}

fn file_type(fd: &OwnedFd) -> Result<SFlag, Errno> {
    Ok(SFlag::from_bits_truncate(fstat(fd.as_fd())?.st_mode) & SFlag::S_IFMT)
}

/// An opened object and, when it is not the walk's start, the directory and
/// name it was found by: what attaching on it needs to reach the mount
/// that ends up on top.
pub struct Walked {
    pub fd: OwnedFd,
    pub entry: Option<(OwnedFd, CString)>,
}

/// Opens `path` below `dir` one plain component at a time, refusing every
/// symlink (`ELOOP`), as `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS)`
/// does; `..` and `/` components are dropped, as there. The last component
/// is opened with `last_flags` plus `O_NOFOLLOW`.
pub fn open_beneath(dir: &OwnedFd, path: &Path, last_flags: OFlag) -> Result<Walked, Errno> {
    let parts: Vec<&OsStr> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(name) => Some(name),
            _ => None,
        })
        .collect();
    let Some((last, dirs)) = parts.split_last() else {
        let fd = openat(dir.as_fd(), ".", last_flags | OFlag::O_CLOEXEC, Mode::empty())?;
        return Ok(Walked { fd, entry: None });
    };
    let mut cur: Option<OwnedFd> = None;
    for name in dirs {
        let at = cur.as_ref().unwrap_or(dir);
        let next =
            openat(at.as_fd(), *name, OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC, Mode::empty())?;
        match file_type(&next)? {
            SFlag::S_IFLNK => return Err(Errno::ELOOP),
            SFlag::S_IFDIR => cur = Some(next),
            _ => return Err(Errno::ENOTDIR),
        }
    }
    let parent = match cur {
        Some(fd) => fd,
        None => openat(dir.as_fd(), ".", OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty())?,
    };
    let fd = openat(parent.as_fd(), *last, last_flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC, Mode::empty())?;
    if file_type(&fd)? == SFlag::S_IFLNK {
        return Err(Errno::ELOOP);
    }
    let name = CString::new(last.as_bytes()).map_err(|_| Errno::EINVAL)?;
    Ok(Walked { fd, entry: Some((parent, name)) })
}

/// Opens a host path as the caller sees it, following ordinary symlinks by
/// hand but refusing any symlink on procfs (`ELOOP`), where the magic links
/// that lead into other processes' mounts live: what
/// `openat2(RESOLVE_NO_MAGICLINKS)` does, a little stricter.
pub fn open_host(path: &Path, last_flags: OFlag) -> Result<OwnedFd, Errno> {
    if !path.is_absolute() {
        return Err(Errno::EINVAL);
    }
    let mut stack: Vec<std::ffi::OsString> = Vec::new();
    let push = |stack: &mut Vec<std::ffi::OsString>, p: &Path| {
        for c in p.components().rev() {
            match c {
                Component::Normal(n) => stack.push(n.to_owned()),
                Component::ParentDir => stack.push("..".into()),
                _ => {}
            }
        }
    };
    let root = || nix::fcntl::open("/", OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty());
    push(&mut stack, path);
    let mut cur = root()?;
    let mut opened_last = false;
    let mut links = 0;
    while let Some(name) = stack.pop() {
        let last = stack.is_empty();
        let flags = if last { last_flags | OFlag::O_NOFOLLOW } else { OFlag::O_PATH | OFlag::O_NOFOLLOW };
        let next = match openat(cur.as_fd(), name.as_os_str(), flags | OFlag::O_CLOEXEC, Mode::empty()) {
            // The last component opened for reading or writing: a symlink
            // there fails with ELOOP and is followed below like the others.
            Err(Errno::ELOOP) if last && !last_flags.contains(OFlag::O_PATH) => None,
            Err(e) => return Err(e),
            Ok(fd) if file_type(&fd)? == SFlag::S_IFLNK => None,
            Ok(fd) => Some(fd),
        };
        opened_last = false;
        if let Some(fd) = next {
            cur = fd;
            opened_last = last;
        } else {
            links += 1;
            if links > MAX_SYMLINKS || fstatfs(cur.as_fd())?.filesystem_type() == PROC_SUPER_MAGIC {
                return Err(Errno::ELOOP);
            }
            let target = PathBuf::from(readlinkat(cur.as_fd(), name.as_os_str())?);
            if target.is_absolute() {
                cur = root()?;
            }
            push(&mut stack, &target);
        }
    }
    if opened_last {
        return Ok(cur);
    }
    // A path that ends in `/`, `..` or a symlink to a directory names the
    // directory reached last.
    openat(cur.as_fd(), ".", last_flags | OFlag::O_CLOEXEC, Mode::empty())
}

/// Opens the directory `fd` names again by its name in its parent, which
/// reaches the mount stacked on it last; the name comes from the kernel's
/// own record of the path, and [`bind`] checks that the result is the same
/// file.
pub fn entry_of(dir: &OwnedFd) -> Result<(OwnedFd, CString), Errno> {
    let path = readlinkat(AT_FDCWD, proc_fd(dir).as_str())?;
    let path = Path::new(&path);
    let name = path.file_name().ok_or(Errno::EBUSY)?;
    let parent =
        openat(dir.as_fd(), "..", OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())?;
    let name = CString::new(name.as_bytes()).map_err(|_| Errno::EINVAL)?;
    Ok((parent, name))
}

/// Binds the tree at `source` (recursively) on `target`, adds `attrs` to
/// every mount of the copy (the mounts not in `before`), and returns a
/// descriptor of the copy's root. `entry` is the directory and name
/// `target` was found by: looking the name up again reaches the mount on
/// top, the new one, which must be the source itself (the root of a bind
/// is its source). `before` is needed only with `attrs`, and is read here
/// if missing.
pub fn bind(
    source: OwnedFd,
    target: OwnedFd,
    entry: (OwnedFd, CString),
    attrs: Attrs,
    before: Option<Snapshot>,
) -> Result<OwnedFd, Errno> {
    let st = fstat(source.as_fd())?;
    let wanted = ms_flags(attrs);
    let before = match (wanted.is_empty(), before) {
        (true, _) => None,
        (false, Some(before)) => Some(before),
        (false, None) => Some(snapshot()?),
    };
    let foreseen = before.as_ref().and_then(|b| forecast(b, &source, wanted));
    mount(
        Some(proc_fd(&source).as_str()),
        proc_fd(&target).as_str(),
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )?;
    // The namespace has new mounts now, whatever follows.
    remember(None);
    drop((source, target));
    let flags = OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let top = openat(entry.0.as_fd(), entry.1.as_c_str(), flags, Mode::empty())?;
    drop(entry);
    let now = fstat(top.as_fd())?;
    if (st.st_dev, st.st_ino) != (now.st_dev, now.st_ino) {
        return Err(Errno::EBUSY);
    }
    if let Some(before) = before {
        add_attrs(&top, wanted, &before, foreseen)?;
    }
    Ok(top)
}

/// Mounts a new ramfs (nosuid, nodev, noexec) where nothing looks once the
/// mounts are made, and returns its root: the host's `/proc/sys` in this
/// private namespace, which the root switch detaches with the host's root.
pub fn ramfs() -> Result<OwnedFd, Errno> {
    let proc = open_host(Path::new("/proc"), OFlag::O_PATH | OFlag::O_DIRECTORY)?;
    if fstatfs(proc.as_fd())?.filesystem_type() != PROC_SUPER_MAGIC {
        return Err(Errno::EXDEV);
    }
    let flags = OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    let spot = openat(proc.as_fd(), "sys", flags, Mode::empty())?;
    remember(None);
    mount(
        Some("ramfs"),
        proc_fd(&spot).as_str(),
        Some("ramfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some("mode=0755"),
    )?;
    drop(spot);
    let top = openat(proc.as_fd(), "sys", flags, Mode::empty())?;
    drop(proc);
    if fstatfs(top.as_fd())?.filesystem_type() != RAMFS_MAGIC {
        return Err(Errno::EBUSY);
    }
    Ok(top)
}

/// Makes the ramfs from [`ramfs`] read-only, with its other flags kept.
pub fn seal_ramfs(ramfs: &OwnedFd, attrs: Attrs) -> Result<(), Errno> {
    remount(ramfs, own_flags(ramfs)? | ms_flags(attrs))
}

/// One line of `/proc/self/mountinfo`: the fields the older form needs.
#[derive(Debug, PartialEq, Eq)]
struct MountLine {
    id: u64,
    parent: u64,
    point: Vec<u8>,
    flags: MsFlags,
}

/// The mounts of this namespace at one moment, as mountinfo showed them.
#[derive(Clone)]
pub struct Snapshot(Arc<Vec<MountLine>>);

impl Snapshot {
    fn has(&self, id: u64) -> bool {
        self.0.iter().any(|m| m.id == id)
    }
}

/// What the last [`bind`] checked, all of this namespace's mounts: what the
/// next bind starts from, without reading mountinfo once more. Any other
/// mount made here forgets it.
static KNOWN: std::sync::Mutex<Option<Snapshot>> = std::sync::Mutex::new(None);

fn remember(now: Option<Snapshot>) {
    if let Ok(mut known) = KNOWN.lock() {
        *known = now;
    }
}

/// The mounts in this namespace now.
pub fn snapshot() -> Result<Snapshot, Errno> {
    if let Some(known) = KNOWN.lock().ok().and_then(|k| k.clone()) {
        return Ok(known);
    }
    Ok(Snapshot(Arc::new(read_mountinfo()?)))
}

fn read_mountinfo() -> Result<Vec<MountLine>, Errno> {
    use std::io::Read;
    // Plain reads until the end: procfs reports no size, and each read
    // returns at most the kernel's one-page buffer, whatever is asked.
    let mut f = std::fs::File::open("/proc/self/mountinfo").map_err(|e| distrorun_config::errno_of(&e))?;
    let mut text = vec![0u8; 16 << 10];
    let mut len = 0;
    loop {
        if len == text.len() {
            text.resize(len * 2, 0);
        }
        match f.read(&mut text[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(distrorun_config::errno_of(&e)),
        }
    }
    Ok(parse_mountinfo(&text[..len]))
}

/// The mounts that are not in `before`: the one among them whose parent is
/// older (the root of the copy just made), the others, parents first, and
/// all mounts now.
fn new_mounts(before: &Snapshot) -> Result<(MountLine, Vec<MountLine>, Snapshot), Errno> {
    let all = read_mountinfo()?;
    let new: Vec<&MountLine> = all.iter().filter(|m| !before.has(m.id)).collect();
    let is_new = |id: u64| new.iter().any(|m| m.id == id);
    let mut roots = new.iter().filter(|m| !is_new(m.parent));
    let (Some(root), None) = (roots.next(), roots.next()) else { return Err(Errno::EBUSY) };
    let root = MountLine { point: root.point.clone(), ..**root };
    let below = new
        .iter()
        .filter(|m| m.id != root.id)
        .map(|m| MountLine { point: m.point.clone(), ..**m })
        .collect();
    Ok((root, below, Snapshot(Arc::new(all))))
}

/// A mount with another stacked on its root is out of everyone's reach,
/// and stays as it is; the one on top gets the flags.
fn covered(m: &MountLine, all: &[MountLine]) -> bool {
    all.iter().any(|o| o.parent == m.id && o.point == m.point)
}

/// `point` relative to `dir` (no leading `/`, empty for `dir` itself), if
/// it lies at or below it.
fn below_dir<'a>(point: &'a [u8], dir: &[u8]) -> Option<&'a [u8]> {
    if dir == b"/" {
        return point.strip_prefix(b"/");
    }
    match point.strip_prefix(dir)? {
        [] => Some(&[]),
        [b'/', rel @ ..] => Some(rel),
        _ => None,
    }
}

/// The remounts a copy of `source` will need, foreseen from the mounts
/// before the bind: whether the copy's root lacks a flag of `wanted`, and
/// the paths (relative to it, parents first) of the submounts that do.
/// Only a forecast, found by the source's path: the copy's own mounts are
/// read from mountinfo after the remounts, and whatever still lacks a flag
/// then is remounted as found there.
struct Forecast {
    root_lacks: bool,
    lacking: Vec<Vec<u8>>,
}

fn forecast(before: &Snapshot, source: &OwnedFd, wanted: MsFlags) -> Option<Forecast> {
    let path = readlinkat(AT_FDCWD, proc_fd(source).as_str()).ok()?;
    let path = path.as_bytes();
    let all = before.0.as_slice();
    let on = all
        .iter()
        .filter(|m| below_dir(path, &m.point).is_some() && !covered(m, all))
        .max_by_key(|m| m.point.len())?;
    let mut inside = vec![on.id];
    let mut lacking = Vec::new();
    let mut i = 0;
    while let Some(&parent) = inside.get(i) {
        i += 1;
        for m in all.iter().filter(|m| m.parent == parent) {
            // A bind copies only the submounts below the source directory.
            let Some(rel) = below_dir(&m.point, path).filter(|r| !r.is_empty()) else { continue };
            if inside.contains(&m.id) {
                continue;
            }
            inside.push(m.id);
            if !m.flags.contains(wanted) && !covered(m, all) {
                lacking.push(rel.to_vec());
            }
        }
    }
    Some(Forecast { root_lacks: !on.flags.contains(wanted), lacking })
}

/// Opens mount points below the copy's root by the symlink-refusing walk,
/// keeping the directory of the last one: sibling submounts (the cgroup
/// hierarchies under `/sys/fs/cgroup`) are opened from it with one lookup
/// each. It holds one descriptor more than the walk's, never more than
/// the walk holds while it opens a path.
struct Walker<'a> {
    top: &'a OwnedFd,
    dir: Option<(Vec<u8>, OwnedFd)>,
}

impl Walker<'_> {
    fn open(&mut self, rel: &[u8]) -> Result<OwnedFd, Errno> {
        let (parent, name) = match rel.iter().rposition(|&b| b == b'/') {
            Some(i) => (&rel[..i], &rel[i + 1..]),
            None => (&rel[..0], rel),
        };
        if let Some((at, dir)) = &self.dir {
            if at.as_slice() == parent && !name.is_empty() {
                let flags = OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
                let fd = openat(dir.as_fd(), OsStr::from_bytes(name), flags, Mode::empty())?;
                return match file_type(&fd)? {
                    SFlag::S_IFLNK => Err(Errno::ELOOP),
                    _ => Ok(fd),
                };
            }
        }
        self.dir = None;
        let walked = open_beneath(self.top, Path::new(OsStr::from_bytes(rel)), OFlag::O_PATH)?;
        if let Some((dir, _)) = walked.entry {
            self.dir = Some((parent.to_vec(), dir));
        }
        Ok(walked.fd)
    }
}

/// Gives the mount `fd` lies on the flags `wanted` besides its own.
fn add_to(fd: &OwnedFd, wanted: MsFlags) -> Result<(), Errno> {
    remount(fd, own_flags(fd)? | wanted)
}

/// Adds `wanted` to the mount `top` is the root of and to every mount below
/// it: the mounts that appeared since `before`. Each is remounted with the
/// flags of the very mount its descriptor lies on (`fstatvfs`) plus
/// `wanted`, so whatever mount a walk reaches, it only gains flags. The
/// remounts `forecast` foresaw come first, errors and all left to the
/// check: mountinfo is then read, and every new mount must show `wanted`;
/// those that do not are remounted as mountinfo names them, with any error
/// failing the run, and mountinfo is read once more, where every new mount
/// must show them. A walk led astray cannot leave one without.
fn add_attrs(top: &OwnedFd, wanted: MsFlags, before: &Snapshot, foreseen: Option<Forecast>) -> Result<(), Errno> {
    if let Some(plan) = foreseen {
        if plan.root_lacks {
            let _ = add_to(top, wanted);
        }
        let mut walker = Walker { top, dir: None };
        for rel in &plan.lacking {
            if let Ok(fd) = walker.open(rel) {
                let _ = add_to(&fd, wanted);
            }
        }
    }
    let (root, below, now) = new_mounts(before)?;
    let lacks = |m: &&MountLine| !m.flags.contains(wanted);
    if std::iter::once(&root).chain(below.iter().filter(|m| !covered(m, &below))).all(|m| !lacks(&m)) {
        remember(Some(now));
        return Ok(());
    }
    // Mountinfo names each mount by its id, so a mount it shows with the
    // flags already (most host submounts are nosuid and nodev) is left as
    // it is, with no walk.
    if lacks(&&root) {
        add_to(top, wanted)?;
    }
    let mut walker = Walker { top, dir: None };
    for m in below.iter().filter(|m| !covered(m, &below)).filter(lacks) {
        let rel = below_dir(&m.point, &root.point).filter(|r| !r.is_empty()).ok_or(Errno::EINVAL)?;
        add_to(&walker.open(rel)?, wanted)?;
    }
    drop(walker);
    let (root, below, now) = new_mounts(before)?;
    let lacking = std::iter::once(&root).chain(below.iter().filter(|m| !covered(m, &below)));
    for m in lacking {
        if !m.flags.contains(wanted) {
            return Err(Errno::EBUSY);
        }
    }
    remember(Some(now));
    Ok(())
}

/// The per-mount flags of the mount `fd` lies on, atime mode included,
/// since a user namespace locks that too.
fn own_flags(fd: &OwnedFd) -> Result<MsFlags, Errno> {
    let st = fstatvfs(fd)?.flags();
    let mut f = MsFlags::empty();
    for (on, bit) in [
        (FsFlags::ST_RDONLY, MsFlags::MS_RDONLY),
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
    ] {
        if st.contains(on) {
            f |= bit;
        }
    }
    let atime = if st.contains(FsFlags::ST_NOATIME) {
        MsFlags::MS_NOATIME
    } else if st.contains(FsFlags::ST_RELATIME) {
        MsFlags::MS_RELATIME
    } else {
        MsFlags::MS_STRICTATIME
    };
    Ok(f | atime)
}

fn remount(fd: &OwnedFd, flags: MsFlags) -> Result<(), Errno> {
    mount(
        None::<&str>,
        proc_fd(fd).as_str(),
        None::<&str>,
        MsFlags::MS_REMOUNT | MsFlags::MS_BIND | flags,
        None::<&str>,
    )
}

pub fn ms_flags(attrs: Attrs) -> MsFlags {
    let mut f = MsFlags::empty();
    for (on, bit) in [
        (attrs.read_only, MsFlags::MS_RDONLY),
        (attrs.nosuid, MsFlags::MS_NOSUID),
        (attrs.nodev, MsFlags::MS_NODEV),
        (attrs.noexec, MsFlags::MS_NOEXEC),
    ] {
        if on {
            f |= bit;
        }
    }
    f
}

/// The per-mount flags of a mountinfo options field, atime mode included,
/// since a user namespace locks that too.
fn options_flags(opts: &[u8]) -> MsFlags {
    let mut f = MsFlags::empty();
    let mut atime = MsFlags::MS_STRICTATIME;
    for o in opts.split(|&b| b == b',') {
        match o {
            b"ro" => f |= MsFlags::MS_RDONLY,
            b"nosuid" => f |= MsFlags::MS_NOSUID,
            b"nodev" => f |= MsFlags::MS_NODEV,
            b"noexec" => f |= MsFlags::MS_NOEXEC,
            b"noatime" => atime = MsFlags::MS_NOATIME,
            b"relatime" => atime = MsFlags::MS_RELATIME,
            b"nodiratime" => f |= MsFlags::MS_NODIRATIME,
            _ => {}
        }
    }
    f | atime
}

/// Mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        let octal = field.get(i + 1..i + 4).filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match (field[i], octal) {
            (b'\\', Some(d)) => {
                out.push(d.iter().fold(0u8, |acc, c| acc.wrapping_mul(8).wrapping_add(c - b'0')));
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

fn parse_mountinfo(text: &[u8]) -> Vec<MountLine> {
    let num = |f: Option<&[u8]>| f.and_then(|v| std::str::from_utf8(v).ok()).and_then(|v| v.parse().ok());
    text.split(|&b| b == b'\n')
        .filter_map(|line| {
            let mut fields = line.split(|&b| b == b' ');
            let id = num(fields.next())?;
            let parent = num(fields.next())?;
            let _dev = fields.next()?;
            let _root = fields.next()?;
            let point = unescape(fields.next()?);
            let flags = options_flags(fields.next()?);
            Some(MountLine { id, parent, point, flags })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_lines_give_ids_points_and_per_mount_flags() {
        let text = b"22 1 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw\n\
                     30 22 0:5 / /proc/a\\040b ro,noatime - tmpfs t rw\n";
        let lines = parse_mountinfo(text);
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].id, 22);
        assert_eq!(lines[0].point, b"/proc");
        assert_eq!(
            lines[0].flags,
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC | MsFlags::MS_RELATIME
        );
        assert_eq!(lines[1].parent, 22);
        assert_eq!(lines[1].point, b"/proc/a b");
        assert_eq!(lines[1].flags, MsFlags::MS_RDONLY | MsFlags::MS_NOATIME);
    }

    #[test]
    fn walks_refuse_symlinks_below_and_follow_ordinary_ones_on_the_host() {
        let dir = std::env::temp_dir().join(format!("distrorun-legacy-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("a/b")).unwrap();
        let _ = std::fs::remove_file(dir.join("link"));
        std::os::unix::fs::symlink("a", dir.join("link")).unwrap();
        let top = nix::fcntl::open(&dir, OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty()).unwrap();
        assert!(open_beneath(&top, Path::new("a/b"), OFlag::O_PATH).is_ok());
        assert_eq!(open_beneath(&top, Path::new("link/b"), OFlag::O_PATH).err(), Some(Errno::ELOOP));
        assert_eq!(open_beneath(&top, Path::new("link"), OFlag::O_PATH).err(), Some(Errno::ELOOP));
        let via_link = open_host(&dir.join("link/b"), OFlag::O_PATH).unwrap();
        let direct = open_host(&dir.join("a/b"), OFlag::O_PATH).unwrap();
        assert_eq!(fstat(via_link.as_fd()).unwrap().st_ino, fstat(direct.as_fd()).unwrap().st_ino);
        assert_eq!(open_host(Path::new("/proc/self/root/etc"), OFlag::O_PATH).err(), Some(Errno::ELOOP));
        assert!(open_host(Path::new("/etc/passwd"), OFlag::O_RDONLY).is_ok());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
