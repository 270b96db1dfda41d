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
//!   mount of the new tree that lacks one of the plan's flags is opened by a
//!   symlink-refusing walk from the tree's root and remounted with
//!   `MS_REMOUNT | MS_BIND`, with the flags of the mount that descriptor
//!   lies on (`fstatvfs`) plus the plan's, as bubblewrap does: a flag is
//!   only ever added, and the flags a user namespace locks are passed back
//!   unchanged. Which mounts those are is foreseen from the mounts before
//!   the bind (the source's submounts, found by its path, and their
//!   flags), since a bind copies each with its flags; siblings are opened
//!   from their directory, walked once.
//! - **The check** of the attributes: `/proc/self/mountinfo`, read before
//!   the first copy, is read again once the copies are in place (before a
//!   copy that goes inside one of them, another mount, or the root
//!   switch), and every mount it shows that was not there before must
//!   have the flags of the copy it belongs to. Mountinfo lists mounts in
//!   the order they were made, and no copy went inside another, so the
//!   root of each copy is one of the new mounts whose parent is older, in
//!   the order of the copies (each must also lie where its copy went),
//!   and every other new mount belongs to the root its parents lead to:
//!   mount ids, not paths, decide. Those that lack a flag (a mount the
//!   forecast missed: a source below a copy made since the last read) are
//!   remounted as mountinfo names them, by the symlink-refusing walk from
//!   `/`, and mountinfo is read once more, where none may lack one. A
//!   path swapped during any walk makes the run fail rather than leave a
//!   mount without a flag, and so does a mount the host made meanwhile
//!   outside the copies. (Mount ids of descriptors are not used:
//!   `/proc/self/fdinfo` is closed to an undumpable process before Linux
//!   5.14, and `statx` has them only since 5.8.)
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
    push(&mut stack, path);
    // `None` stands for `/`, reached by absolute names, which saves opening
    // it (and closing it) for every path.
    let mut cur: Option<OwnedFd> = None;
    let mut opened_last = false;
    let mut links = 0;
    while let Some(name) = stack.pop() {
        let last = stack.is_empty();
        let flags = if last { last_flags | OFlag::O_NOFOLLOW } else { OFlag::O_PATH | OFlag::O_NOFOLLOW };
        let (dir, name) = in_dir(cur.as_ref(), &name);
        let next = match openat(dir, name.as_os_str(), flags | OFlag::O_CLOEXEC, Mode::empty()) {
            // The last component opened for reading or writing: a symlink
            // there fails with ELOOP and is followed below like the others.
            Err(Errno::ELOOP) if last && !last_flags.contains(OFlag::O_PATH) => None,
            Err(e) => return Err(e),
            Ok(fd) if file_type(&fd)? == SFlag::S_IFLNK => None,
            Ok(fd) => Some(fd),
        };
        opened_last = false;
        if let Some(fd) = next {
            cur = Some(fd);
            opened_last = last;
        } else {
            links += 1;
            let on_proc = match &cur {
                Some(fd) => fstatfs(fd.as_fd())?,
                None => nix::sys::statfs::statfs("/")?,
            }
            .filesystem_type()
                == PROC_SUPER_MAGIC;
            if links > MAX_SYMLINKS || on_proc {
                return Err(Errno::ELOOP);
            }
            let target = PathBuf::from(readlinkat(dir, name.as_os_str())?);
            if target.is_absolute() {
                cur = None;
            }
            push(&mut stack, &target);
        }
    }
    match cur {
        Some(fd) if opened_last => Ok(fd),
        // A path that ends in `/`, `..` or a symlink to a directory names
        // the directory reached last.
        Some(fd) => openat(fd.as_fd(), ".", last_flags | OFlag::O_CLOEXEC, Mode::empty()),
        None => nix::fcntl::open("/", last_flags | OFlag::O_CLOEXEC, Mode::empty()),
    }
}

/// The directory and name by which to open `name` in `dir`, or in `/` for
/// `None`.
fn in_dir<'a>(dir: Option<&'a OwnedFd>, name: &OsStr) -> (std::os::fd::BorrowedFd<'a>, std::ffi::OsString) {
    if let Some(fd) = dir {
        return (fd.as_fd(), name.to_owned());
    }
    let mut abs = std::ffi::OsString::from("/");
    abs.push(name);
    (AT_FDCWD, abs)
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
/// every mount of the copy, and returns a descriptor of the copy's root.
/// `entry` is the directory and name `target` was found by: looking the
/// name up again reaches the mount on top, the new one, which must be the
/// source itself (the root of a bind is its source).
///
/// The copy's mounts are remounted as foreseen from the mounts before the
/// bind; the check that every one of them has `attrs` is left to
/// [`settle`], which checks the copies made since the last check at once.
/// A copy with other attributes settles those first: [`prepare`] does
/// that before the bind, where it needs fewer descriptors, and this does
/// it again in case it was not called.
pub fn bind(
    source: OwnedFd,
    target: OwnedFd,
    entry: (OwnedFd, CString),
    attrs: Attrs,
) -> Result<OwnedFd, Errno> {
    let st = fstat(source.as_fd())?;
    let wanted = ms_flags(attrs);
    // What prepare recorded for this copy; without it, where the copy goes
    // is not known, and every copy not yet checked is checked first.
    let mut planned = with_state(|s| s.next.take()).filter(|(_, w)| *w == wanted);
    if planned.is_none() {
        settle()?;
        if !wanted.is_empty() {
            prepare(attrs, Path::new("/"))?;
            planned = with_state(|s| s.next.take());
        }
    }
    let foreseen =
        if wanted.is_empty() { None } else { known().and_then(|before| forecast(&before, &source, wanted)) };
    mount(
        Some(proc_fd(&source).as_str()),
        proc_fd(&target).as_str(),
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )?;
    // From here on the namespace has mounts the record has not: they are
    // checked by the next settle, or, with no attributes to check, the
    // record is forgotten.
    with_state(|s| match planned {
        Some(copy) => s.pending.push(copy),
        None => s.known = None,
    });
    drop((source, target));
    let flags = OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let top = openat(entry.0.as_fd(), entry.1.as_c_str(), flags, Mode::empty())?;
    drop(entry);
    let now = fstat(top.as_fd())?;
    if (st.st_dev, st.st_ino) != (now.st_dev, now.st_ino) {
        return Err(Errno::EBUSY);
    }
    if let Some(plan) = foreseen {
        // Errors are left to the check: whatever a remount here missed,
        // settle finds in mountinfo and remounts as found there.
        if plan.root_lacks {
            let _ = add_to(&top, wanted);
        }
        let mut walker = Walker { top: &top, dir: None };
        for rel in &plan.lacking {
            if let Ok(fd) = walker.open(rel) {
                let _ = add_to(&fd, wanted);
            }
        }
    }
    Ok(top)
}

/// Readies a copy that is to get `attrs` and to be attached at `inside`
/// (the path in the new root): checks the copies made since the last check
/// first if this one has no attributes or goes inside one of them (its
/// root would then not tell it from that copy), and reads the mounts there
/// are, if not known, for the next bind to start from.
pub fn prepare(attrs: Attrs, inside: &Path) -> Result<(), Errno> {
    let wanted = ms_flags(attrs);
    let mut dst = Vec::new();
    for c in inside.components() {
        if let Component::Normal(name) = c {
            dst.push(b'/');
            dst.extend_from_slice(name.as_bytes());
        }
    }
    if dst.is_empty() {
        dst.push(b'/');
    }
    let nested = with_state(|s| s.pending.iter().any(|(at, _)| below_dir(&dst, at).is_some()));
    if wanted.is_empty() || nested {
        settle()?;
    }
    if !wanted.is_empty() {
        if known().is_none() {
            let now = Snapshot(Arc::new(read_mountinfo()?));
            with_state(|s| s.known = Some(now));
        }
        with_state(|s| s.next = Some((dst, wanted)));
    }
    Ok(())
}

/// Checks the copies made since the last check: every mount mountinfo shows
/// that was not there then must have the attributes of the copy it belongs
/// to. Those that lack one (a mount the forecast did not know of) are
/// remounted as mountinfo names them, by a symlink-refusing walk from `/`,
/// each with its own flags plus the attributes, and mountinfo is read once
/// more, where none may lack one: a walk led astray cannot leave a mount
/// without. A mount with another stacked on its root is out of everyone's
/// reach, and stays as it is.
pub fn settle() -> Result<(), Errno> {
    let (pending, before) = with_state(|s| (s.pending.clone(), s.known.clone()));
    if pending.is_empty() {
        return Ok(());
    }
    // Copies are only made with a record of the mounts before them.
    let Some(before) = before else { return Err(Errno::EBUSY) };
    let all = read_mountinfo()?;
    let lacking = new_lacking(&before, &all, &pending)?;
    let all = if lacking.is_empty() {
        all
    } else {
        for (point, wanted) in &lacking {
            add_to(&open_from_root(point)?, *wanted)?;
        }
        let all = read_mountinfo()?;
        if !new_lacking(&before, &all, &pending)?.is_empty() {
            return Err(Errno::EBUSY);
        }
        all
    };
    with_state(|s| {
        s.known = Some(Snapshot(Arc::new(all)));
        s.pending.clear();
    });
    Ok(())
}

/// The mounts in `all` that are not in `before` and lack a flag of the
/// copy they belong to, with those flags, but for those with another new
/// one stacked on their root, out of everyone's reach. `copies` are the
/// copies made since `before`, in order, each with where it went inside
/// and its flags. None went inside another (see [`prepare`]), so the root
/// of each is one of the new mounts whose parent is older, and mountinfo
/// lists mounts in the order they were made: the roots, in order, are the
/// copies', in order, and every other new mount belongs to the root its
/// parents lead to. Anything else (a mount the host made meanwhile, a root
/// not where its copy went) fails the check.
fn new_lacking(
    before: &Snapshot,
    all: &[MountLine],
    copies: &[(Vec<u8>, MsFlags)],
) -> Result<Vec<(Vec<u8>, MsFlags)>, Errno> {
    let new: Vec<&MountLine> = all.iter().filter(|m| !before.has(m.id)).collect();
    let index = |id: u64| new.iter().position(|m| m.id == id);
    let roots: Vec<usize> = (0..new.len()).filter(|&i| index(new[i].parent).is_none()).collect();
    if roots.len() != copies.len() {
        return Err(Errno::EBUSY);
    }
    for (&root, (at, _)) in roots.iter().zip(copies) {
        if at.as_slice() != b"/" && !new[root].point.ends_with(at) {
            return Err(Errno::EBUSY);
        }
    }
    let mut lacking = Vec::new();
    for (i, m) in new.iter().enumerate() {
        let mut top = i;
        for _ in 0..=new.len() {
            match index(new[top].parent) {
                Some(parent) => top = parent,
                None => break,
            }
        }
        let copy = roots.iter().position(|&r| r == top).ok_or(Errno::EBUSY)?;
        let wanted = copies[copy].1;
        let covered = new.iter().any(|o| o.parent == m.id && o.point == m.point);
        if !covered && !m.flags.contains(wanted) {
            lacking.push((m.point.clone(), wanted));
        }
    }
    Ok(lacking)
}

/// Opens the mount point `point` (from mountinfo, so with no symlink in it)
/// by the symlink-refusing walk from `/`, holding two descriptors at most.
fn open_from_root(point: &[u8]) -> Result<OwnedFd, Errno> {
    let flags = OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let mut cur = nix::fcntl::open("/", flags | OFlag::O_DIRECTORY, Mode::empty())?;
    for name in point.split(|&b| b == b'/').filter(|n| !n.is_empty()) {
        if name == b".." || name == b"." {
            return Err(Errno::EINVAL);
        }
        let next = openat(cur.as_fd(), OsStr::from_bytes(name), flags, Mode::empty())?;
        if file_type(&next)? == SFlag::S_IFLNK {
            return Err(Errno::ELOOP);
        }
        cur = next;
    }
    Ok(cur)
}

/// Mounts a new ramfs (nosuid, nodev, noexec) where nothing looks once the
/// mounts are made, and returns its root: the host's `/proc/sys` in this
/// private namespace, which the root switch detaches with the host's root.
pub fn ramfs() -> Result<OwnedFd, Errno> {
    settle()?;
    let proc = open_host(Path::new("/proc"), OFlag::O_PATH | OFlag::O_DIRECTORY)?;
    if fstatfs(proc.as_fd())?.filesystem_type() != PROC_SUPER_MAGIC {
        return Err(Errno::EXDEV);
    }
    let flags = OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    let spot = openat(proc.as_fd(), "sys", flags, Mode::empty())?;
    with_state(|s| s.known = None);
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
struct Snapshot(Arc<Vec<MountLine>>);

impl Snapshot {
    fn has(&self, id: u64) -> bool {
        self.0.iter().any(|m| m.id == id)
    }
}

/// What the older form knows of this namespace's mounts: the mounts at the
/// last check (or read), when no mount made since is unaccounted for, and
/// the copies made since then, to be checked.
struct State {
    known: Option<Snapshot>,
    /// The copies made since, in order: where each went inside, and its
    /// attributes.
    pending: Vec<(Vec<u8>, MsFlags)>,
    /// The copy [`prepare`] readied for the next bind.
    next: Option<(Vec<u8>, MsFlags)>,
}

static STATE: std::sync::Mutex<State> =
    std::sync::Mutex::new(State { known: None, pending: Vec::new(), next: None });

fn with_state<T>(f: impl FnOnce(&mut State) -> T) -> T {
    // One thread mounts; a poisoned lock still holds a consistent record.
    let mut state = STATE.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    f(&mut state)
}

fn known() -> Option<Snapshot> {
    with_state(|s| s.known.clone())
}

fn read_mountinfo() -> Result<Vec<MountLine>, Errno> {
    use std::io::Read;
    // Plain reads until the end: procfs reports no size. Each read returns
    // whole lines, at most the kernel's one-page buffer of them, so lines
    // are parsed as they come, in a buffer on the stack; a line longer
    // than it is carried over to the next read.
    let mut f = std::fs::File::open("/proc/self/mountinfo").map_err(|e| distrorun_config::errno_of(&e))?;
    let mut lines = Vec::with_capacity(64);
    let mut buf = [0u8; 8192];
    let mut long: Vec<u8> = Vec::new();
    loop {
        let n = match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(distrorun_config::errno_of(&e)),
        };
        let mut chunk = &buf[..n];
        if !long.is_empty() {
            let Some(end) = find_newline(chunk) else {
                long.extend_from_slice(chunk);
                continue;
            };
            long.extend_from_slice(&chunk[..end]);
            lines.extend(parse_line(&long));
            long.clear();
            chunk = &chunk[end + 1..];
        }
        while let Some(end) = find_newline(chunk) {
            lines.extend(parse_line(&chunk[..end]));
            chunk = &chunk[end + 1..];
        }
        long.extend_from_slice(chunk);
    }
    lines.extend(parse_line(&long));
    Ok(lines)
}

/// The first `\n` in `s`, eight bytes at a time: mountinfo is read once
/// per group of copies, and most of each line is skipped.
fn find_newline(s: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut i = 0;
    for word in s.chunks_exact(8) {
        let mut w = [0u8; 8];
        w.copy_from_slice(word);
        let x = u64::from_le_bytes(w) ^ (ONES * u64::from(b'\n'));
        if x.wrapping_sub(ONES) & !x & HIGH != 0 {
            break;
        }
        i += 8;
    }
    s[i..].iter().position(|&b| b == b'\n').map(|p| i + p)
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
    forecast_at(&before.0, path.as_bytes(), wanted)
}

/// [`forecast`] for a source at `path`, among the mounts `all`.
fn forecast_at(all: &[MountLine], path: &[u8], wanted: MsFlags) -> Option<Forecast> {
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
                let name = OsStr::from_bytes(name);
                // Most mount points are directories, and with O_DIRECTORY a
                // symlink fails to open (ENOTDIR): no fstat is needed.
                match openat(dir.as_fd(), name, flags | OFlag::O_DIRECTORY, Mode::empty()) {
                    Err(Errno::ENOTDIR) => {}
                    other => return other,
                }
                let fd = openat(dir.as_fd(), name, flags, Mode::empty())?;
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

/// One line of mountinfo, its first six fields; the rest is not looked at.
fn parse_line(line: &[u8]) -> Option<MountLine> {
    let num = |f: Option<&[u8]>| f.and_then(|v| std::str::from_utf8(v).ok()).and_then(|v| v.parse().ok());
    let mut fields = line.splitn(7, |&b| b == b' ');
    let id = num(fields.next())?;
    let parent = num(fields.next())?;
    let _dev = fields.next()?;
    let _root = fields.next()?;
    let point = unescape(fields.next()?);
    let flags = options_flags(fields.next()?);
    Some(MountLine { id, parent, point, flags })
}

#[cfg(test)]
fn parse_mountinfo(text: &[u8]) -> Vec<MountLine> {
    text.split(|&b| b == b'\n').filter_map(parse_line).collect()
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

    fn line(id: u64, parent: u64, point: &str, flags: MsFlags) -> MountLine {
        MountLine { id, parent, point: point.as_bytes().to_vec(), flags }
    }

    const KERNEL: MsFlags = MsFlags::MS_NOSUID.union(MsFlags::MS_NODEV).union(MsFlags::MS_NOEXEC);

    #[test]
    fn forecasts_name_the_submounts_below_the_source_that_lack_a_flag() {
        let none = MsFlags::empty();
        let all = vec![
            line(1, 0, "/", none),
            line(2, 1, "/sys", none),
            line(3, 2, "/sys/fs/cgroup", none),
            line(4, 3, "/sys/fs/cgroup/cpu", none),
            line(5, 3, "/sys/fs/cgroup/pids", KERNEL),
            // Stacked on 6: only the one on top is in reach.
            line(6, 2, "/sys/kernel/tracing", none),
            line(7, 6, "/sys/kernel/tracing", none),
            line(8, 1, "/home", none),
        ];
        let f = forecast_at(&all, b"/sys", KERNEL).unwrap();
        assert!(f.root_lacks);
        assert_eq!(
            f.lacking,
            vec![b"fs/cgroup".to_vec(), b"fs/cgroup/cpu".to_vec(), b"kernel/tracing".to_vec()]
        );
        // A directory of a mount: only what lies below it comes along.
        let f = forecast_at(&all, b"/sys/fs", KERNEL).unwrap();
        assert_eq!(f.lacking, vec![b"cgroup".to_vec(), b"cgroup/cpu".to_vec()]);
        let f = forecast_at(&all, b"/home/u", MsFlags::MS_NOSUID).unwrap();
        assert!(f.root_lacks);
        assert!(f.lacking.is_empty());
        // "/sysx" is not below "/sys".
        assert_eq!(below_dir(b"/sysx", b"/sys"), None);
        assert_eq!(below_dir(b"/sys", b"/sys"), Some(&b""[..]));
        assert_eq!(below_dir(b"/sys/a", b"/"), Some(&b"sys/a"[..]));
    }

    #[test]
    fn the_check_holds_each_new_mount_to_the_flags_of_its_own_copy() {
        let none = MsFlags::empty();
        let nosuid = MsFlags::MS_NOSUID;
        let before = Snapshot(Arc::new(vec![line(1, 0, "/", none), line(10, 1, "/r", nosuid)]));
        let copies = vec![(b"/sys".to_vec(), KERNEL), (b"/dev".to_vec(), nosuid)];
        let mut all = vec![
            line(1, 0, "/", none),
            line(10, 1, "/r", nosuid),
            line(11, 10, "/r/sys", KERNEL),
            line(12, 11, "/r/sys/fs/cgroup", nosuid),
            // Covered by 14, which has the flags.
            line(13, 11, "/r/sys/x", none),
            line(14, 13, "/r/sys/x", KERNEL),
            line(15, 10, "/r/dev", nosuid),
            line(16, 15, "/r/dev/pts", nosuid),
            line(17, 15, "/r/dev/shm", none),
        ];
        assert_eq!(
            new_lacking(&before, &all, &copies),
            Ok(vec![(b"/r/sys/fs/cgroup".to_vec(), KERNEL), (b"/r/dev/shm".to_vec(), nosuid)])
        );
        // The copies in another order than made: their roots are not where
        // they went.
        let swapped = vec![copies[1].clone(), copies[0].clone()];
        assert_eq!(new_lacking(&before, &all, &swapped), Err(Errno::EBUSY));
        // A mount the host made meanwhile is a root no copy accounts for.
        all.push(line(18, 1, "/media/stick", none));
        assert_eq!(new_lacking(&before, &all, &copies), Err(Errno::EBUSY));
    }

    #[test]
    fn newlines_are_found_a_word_at_a_time_and_in_the_tail() {
        for len in 0..40 {
            for at in 0..len {
                let mut s = vec![b'a'; len];
                s[at] = b'\n';
                assert_eq!(find_newline(&s), Some(at), "len {len} at {at}");
            }
            assert_eq!(find_newline(&vec![b'a'; len]), None);
        }
        // Bytes just above and below the newline are no match.
        assert_eq!(find_newline(&[0x0b, 0x09, 0x8a, 0xff, 0x0a]), Some(4));
    }

    #[test]
    fn this_processs_mountinfo_reads_whole() {
        let lines = read_mountinfo().unwrap();
        let text = std::fs::read("/proc/self/mountinfo").unwrap();
        assert_eq!(lines.len(), text.split(|&b| b == b'\n').filter(|l| !l.is_empty()).count());
        assert!(lines.iter().any(|m| m.point == b"/"));
    }
}
