//! The one unpacker: writes a tar stream into a tree, through descriptors.
//!
//! It runs inside the per-user namespace, so owners are written as the
//! archive names them and come out right when the tree is later run under
//! the same mapping. Every member is resolved relative to the tree's root
//! descriptor: parents with `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS)`,
//! the last component never followed. So a member named `../x` or `/x` is
//! refused, and so is one written through a symlink that an earlier member
//! made (`d -> /etc`, then `d/passwd`), the classic tar escape.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use distrorun_engine::resolve;
use distrorun_engine::Error;
use nix::errno::Errno;
use nix::fcntl::{openat, AtFlags, OFlag, ResolveFlag};
use nix::sys::stat::{fchmod, fstatat, futimens, mkdirat, utimensat, Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchown, fchownat, linkat, mkfifoat, symlinkat, unlinkat, Gid, Uid, UnlinkatFlags};

use super::layers::{self, DirMeta, Displace, Ledger, Stash};
use super::limits::{self, human_bytes, Budget, Limits, Room};
use super::sparse::{HoleWriter, PaxSparse};
use super::tar_guard::{self, TarGuard};
use super::xattr_policy::XattrPolicy;
use crate::tree::remove;

/// What an unpack did, for the summary line.
#[derive(Debug, Default, Clone, Copy)]
pub struct Stats {
    pub entries: u64,
    pub bytes: u64,
    /// Device nodes: they cannot be made without privilege, and the
    /// distro's `/dev` comes from the host anyway.
    pub devices: u64,
    /// Owners outside the mapping, left as the caller's.
    pub unmapped: u64,
    /// Extended attributes the kernel refused (`trusted.*` and the like).
    pub xattrs: u64,
    /// Privileged extended attributes not applied as root (see
    /// [`XattrPolicy`]).
    pub dropped_xattrs: u64,
    /// Layers taken from the old tree by `--update`, and their entries.
    pub reused_layers: u64,
    pub reused_entries: u64,
}

/// How to treat OCI whiteouts (`.wh.NAME`, `.wh..wh..opq`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Whiteouts {
    /// A plain rootfs tarball: `.wh.` names are ordinary files.
    Literal,
    /// An image layer: they delete what lower layers made.
    Apply,
}

pub struct Unpacker {
    root: OwnedFd,
    /// The last parent directory opened, which the next member most likely
    /// shares.
    parent: Option<(Vec<u8>, OwnedFd)>,
    /// Directory times, set once their contents are written.
    dir_times: Vec<(Vec<u8>, i64)>,
    /// Paths this layer wrote, which an opaque whiteout keeps.
    layer_paths: std::collections::HashSet<Vec<u8>>,
    budget: Budget,
    /// The file system's free room before anything was written, for the
    /// refusal when it runs out.
    room: Option<Room>,
    xattr_policy: XattrPolicy,
    /// The layer record, for an image's layers.
    track: Option<Track>,
    pub stats: Stats,
}

/// The layer record being kept, and the layer being unpacked (from 1).
struct Track {
    ledger: Ledger,
    stash: Stash,
    layer: u16,
}

pub use super::rebuild::Mismatch;

/// Progress reports: bytes of archive members written so far.
pub trait Progress {
    fn advance(&mut self, entries: u64, bytes: u64);
}

impl Unpacker {
    /// `root` must be a directory opened `O_RDONLY | O_DIRECTORY`.
    pub fn new(root: OwnedFd, limits: Limits, xattr_policy: XattrPolicy) -> Unpacker {
        // Modes come from the archive as they are.
        nix::sys::stat::umask(Mode::empty());
        let free_at_start = Room::of(&root).ok();
        Unpacker {
            room: free_at_start,
            root,
            parent: None,
            dir_times: Vec::new(),
            layer_paths: std::collections::HashSet::new(),
            budget: Budget::new(limits),
            xattr_policy,
            track: None,
            stats: Stats::default(),
        }
    }

    /// Keeps a layer record of what each layer writes, moving what a layer
    /// replaces of an earlier one's into `stash`.
    pub fn track(&mut self, ledger: Ledger, stash: OwnedFd) {
        self.track = Some(Track { ledger, stash: Stash::new(stash), layer: 0 });
    }

    /// The next archive is layer `n` (from 0) of the image.
    pub fn begin_layer(&mut self, n: usize) {
        if let Some(t) = &mut self.track {
            t.layer = u16::try_from(n + 1).unwrap_or(u16::MAX);
        }
    }

    /// The layer record, its files' identities filled in, and the stash.
    pub fn sealed_ledger(&mut self) -> Option<Result<Ledger, String>> {
        let mut t = self.track.take()?;
        Some(t.ledger.seal(&self.root, t.stash.fd()).map(|()| t.ledger))
    }

    /// Everything written so far undone, the layer record included, for
    /// a fresh start.
    pub fn restart(&mut self) -> Result<(), Error> {
        remove::empty_dir(&self.root, &|_| false).map_err(|e| Error::sys("empty the new tree", e))?;
        if let Some(t) = &mut self.track {
            remove::empty_dir(t.stash.fd(), &|_| false)
                .map_err(|e| Error::sys("empty the new tree's stash", e))?;
            t.ledger = t.ledger.emptied();
            t.stash.forget_dirs();
        }
        self.parent = None;
        self.dir_times.clear();
        self.stats = Stats::default();
        self.budget = Budget::new(self.budget.limits);
        Ok(())
    }

    /// Builds the first `layers` layers' entries from the old tree (see
    /// [`rebuild`](super::rebuild)). The new record takes them over.
    /// Nothing is fetched or decompressed.
    pub fn reuse(&mut self, old: &layers::Old, layers: u16) -> Result<(), Mismatch> {
        let plan = old
            .ledger
            .prefix(layers)
            .map_err(|why| Mismatch(format!("its layer record is of no use: {why}")))?;
        let Some(track) = &mut self.track else { return Err(Mismatch("no layer record is kept".into())) };
        let built = super::rebuild::rebuild(&self.root, old, &plan)?;
        track.ledger.since = layers;
        for (path, written, kind) in built.entries {
            match kind {
                layers::Kind::Dir(meta) => track.ledger.wrote_dir(&path, written, meta),
                layers::Kind::Other(id) => track.ledger.wrote_other(&path, written, id),
            }
        }
        self.dir_times.extend(built.dir_times);
        self.stats.entries += plan.len() as u64;
        self.stats.reused_entries += plan.len() as u64;
        self.stats.reused_layers += u64::from(layers);
        Ok(())
    }

    /// The entry `name` in `parent` (the member `path`) is about to be
    /// replaced or whited out: an earlier layer's goes to the stash, the
    /// rest is deleted.
    fn displace(&mut self, parent: &OwnedFd, name: &OsStr, path: &[u8]) -> Result<(), Errno> {
        if let Some(t) = &mut self.track {
            if t.ledger.displace(path, t.layer) == Displace::Stash {
                return t.stash.put(parent, name, t.layer, path);
            }
        }
        remove_at(parent, name)
    }

    fn record_other(&mut self, path: &[u8]) {
        if let Some(t) = &mut self.track {
            t.ledger.wrote_other(path, t.layer, None);
        }
    }

    fn record_dir(
        &mut self,
        path: &[u8],
        dir: &OwnedFd,
        mtime: Option<i64>,
        xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    ) -> Result<(), Errno> {
        if let Some(t) = &mut self.track {
            let st = nix::sys::stat::fstat(dir)?;
            let meta = DirMeta { mode: st.st_mode & 0o7777, uid: st.st_uid, gid: st.st_gid, mtime, xattrs };
            t.ledger.wrote_dir(path, t.layer, meta);
        }
        Ok(())
    }

    /// Unpacks one tar stream. `what` names it in errors. Fails on the
    /// first member that cannot be written safely, and on a stream that is
    /// corrupt or ends early.
    pub fn unpack(
        &mut self,
        stream: impl Read,
        what: &str,
        whiteouts: Whiteouts,
        progress: &mut dyn Progress,
    ) -> Result<(), Error> {
        self.layer_paths.clear();
        let mut tracked = EofTracker { inner: TarGuard::new(stream), eof: false };
        let corrupt = |e: io::Error| match (super::interrupt::taken(), tar_guard::refusal(&e)) {
            (Some(sig), _) => super::interrupt::error(sig),
            (None, Some(refused)) => Error::msg(format!("{what} is refused: it has {refused}")),
            (None, None) => Error::msg(format!("{what} is corrupt or truncated: {e}")),
        };
        {
            let mut archive = tar::Archive::new(&mut tracked);
            let mut entries = archive.entries().map_err(corrupt)?;
            while let Some(entry) = entries.next() {
                let mut entry = entry.map_err(corrupt)?;
                super::interrupt::check()?;
                if let Err(e) = self.member(&mut entry, what, whiteouts) {
                    return Err(match e.errno() {
                        Some(Errno::ENOSPC | Errno::EDQUOT) => {
                            self.out_of_room(&e, &shown(&entry.path_bytes()), entries, what)
                        }
                        _ => e,
                    });
                }
                self.stats.entries += 1;
                progress.advance(1, entry.size());
            }
        }
        // The tar reader also stops, silently, when the stream ends where a
        // header should be: only an end-of-archive block is a proper end.
        if tracked.eof {
            return Err(Error::msg(format!("{what} is truncated: it ends without an end-of-archive block")));
        }
        io::copy(&mut tracked, &mut io::sink()).map_err(corrupt)?;
        Ok(())
    }

    /// The file system ran out of room (`full`, ENOSPC or EDQUOT) at
    /// `member`. An archive that is over a limit should be refused for
    /// that, not for the disk that gave out first: a small disk or a /tmp
    /// with few inodes fills before a million empty files reach the entry
    /// limit. So the rest of the stream is read, its headers counted
    /// against the limits and nothing written; past a limit, that limit is
    /// the refusal. Otherwise the archive is within the limits and does
    /// not fit, and the refusal says how far it got, of how much, and what
    /// room there was.
    fn out_of_room<R: Read>(
        &mut self,
        full: &Error,
        member: &str,
        rest: tar::Entries<'_, R>,
        what: &str,
    ) -> Error {
        let reached = self.stats.entries + 1;
        for entry in rest {
            let Ok(entry) = entry else {
                // A stream that breaks off later is not what stopped this one.
                break;
            };
            let kind = entry.header().entry_type();
            if kind == tar::EntryType::XGlobalHeader {
                continue;
            }
            let declared = if kind.is_file() { entry.size() } else { 0 };
            if let Err(limit) = self.budget.take(declared, &shown(&entry.path_bytes()), what) {
                return limit;
            }
        }
        let (total, bytes) = self.budget.taken();
        let now = self.room_now();
        let ran_out = match now.and_then(|r| r.inodes) {
            Some(0) => "inodes",
            _ => "space",
        };
        let before = self
            .room
            .map_or_else(String::new, |r| format!("; it had {} before the unpack began", r.describe()));
        Error::msg(format!(
            "{what} does not fit on the file system of the new tree: it ran out of {ran_out} at entry {reached} of {total} ({member}: {}), the archive declaring {} in all{before}",
            full.errno().map_or("out of room", Errno::desc),
            human_bytes(bytes),
        ))
        .with_hint("make room on that file system (df -h and df -i show what it has), or keep distros on a larger one")
    }

    fn room_now(&self) -> Option<Room> {
        Room::of(&self.root).ok()
    }

    /// Sets the times of the directories, deepest first, now that nothing
    /// more is written into them.
    pub fn finish(&mut self) -> Result<(), Error> {
        // A directory in several layers gets the time of its last entry.
        let mut set = std::collections::HashSet::new();
        for (path, mtime) in self.dir_times.drain(..).rev() {
            if !set.insert(path.clone()) {
                continue;
            }
            let fd = if path.is_empty() {
                nix::unistd::dup(&self.root).map_err(|e| Error::sys("reopen the tree's root", e))?
            } else {
                match open_in_root(&self.root, &path, OFlag::O_RDONLY | OFlag::O_DIRECTORY) {
                    Ok(fd) => fd,
                    // Replaced or deleted by a later member.
                    Err(Errno::ENOENT | Errno::ENOTDIR | Errno::ELOOP) => continue,
                    Err(e) => return Err(Error::sys(format!("reopen the directory {}", shown(&path)), e)),
                }
            };
            let t = TimeSpec::new(mtime, 0);
            futimens(&fd, &t, &t).map_err(|e| Error::sys(format!("set the times of {}", shown(&path)), e))?;
        }
        Ok(())
    }

    fn member<R: Read>(
        &mut self,
        entry: &mut tar::Entry<R>,
        what: &str,
        whiteouts: Whiteouts,
    ) -> Result<(), Error> {
        let sparse = PaxSparse::of(entry).map_err(|why| {
            Error::msg(format!("{what}: member {} is refused: {why}", shown(&entry.path_bytes())))
        })?;
        let raw = match sparse.as_ref().and_then(|s| s.name.clone()) {
            Some(name) => name,
            None => entry.path_bytes().into_owned(),
        };
        let path = member_path(&raw, what)?;
        let kind = entry.header().entry_type();
        let declared = match &sparse {
            Some(s) => s.real_size,
            None if kind.is_file() || kind == tar::EntryType::GNUSparse => entry.size(),
            None => 0,
        };
        if !matches!(kind, tar::EntryType::XGlobalHeader) {
            self.budget.take(declared, &shown(&raw), what)?;
        }
        let meta = Meta::of(entry);
        if path.is_empty() {
            if kind.is_dir() {
                let root =
                    nix::unistd::dup(&self.root).map_err(|e| Error::sys("reopen the tree's root", e))?;
                self.dir_meta(&root, &path, &meta, entry)?;
                return Ok(());
            }
            return Err(Error::msg(format!("{what}: member {} would replace the tree's root", shown(&raw))));
        }
        let (parent_path, name) = split_last(&path);
        if whiteouts == Whiteouts::Apply {
            if let Some(hidden) = name.strip_prefix(b".wh.") {
                let parent = self.open_parent(parent_path, what)?;
                return self.whiteout(&parent, parent_path, hidden, what);
            }
            self.layer_paths.insert(path.clone());
        }
        let parent = self.open_parent(parent_path, what)?;
        let at = At { parent: &parent, name: OsStr::from_bytes(name), path: &path, what };
        match kind {
            tar::EntryType::Directory => self.write_dir(&at, &meta, entry),
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                self.write_file(&at, &meta, entry, sparse)
            }
            tar::EntryType::Symlink => self.write_symlink(&at, &meta, entry),
            tar::EntryType::Link => self.write_hard_link(&at, entry),
            tar::EntryType::Fifo => self.write_fifo(&at, &meta),
            tar::EntryType::Char | tar::EntryType::Block => {
                self.stats.devices += 1;
                Ok(())
            }
            // Global headers and kinds no rootfs needs carry nothing to write.
            _ => Ok(()),
        }
    }

    fn write_dir<R: Read>(&mut self, at: &At, meta: &Meta, entry: &mut tar::Entry<R>) -> Result<(), Error> {
        match mkdirat(at.parent, at.name, Mode::S_IRWXU) {
            Ok(()) => {}
            Err(Errno::EEXIST) if is_dir_at(at.parent, at.name) => {}
            Err(Errno::EEXIST) => {
                self.displace(at.parent, at.name, at.path).map_err(|e| at.fail("replace", e))?;
                mkdirat(at.parent, at.name, Mode::S_IRWXU).map_err(|e| at.fail("create the directory", e))?;
            }
            Err(e) => return Err(at.fail("create the directory", e)),
        }
        let dir = openat(
            at.parent,
            at.name,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| at.fail("open the directory", e))?;
        self.dir_meta(&dir, at.path, meta, entry)
    }

    fn write_file<R: Read>(
        &mut self,
        at: &At,
        meta: &Meta,
        entry: &mut tar::Entry<R>,
        sparse: Option<PaxSparse>,
    ) -> Result<(), Error> {
        // What the file takes on disk: an old-GNU sparse member's stored
        // data, a PAX sparse member's chunks, another member's size.
        let on_disk = match &sparse {
            Some(s) => s.data_len().unwrap_or_else(|| entry.header().entry_size().unwrap_or(0)),
            None => entry.header().entry_size().unwrap_or(0),
        };
        limits::check_free(&self.root, on_disk, &shown(at.path), at.what)?;
        let flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let perms = Mode::from_bits_truncate(meta.mode & 0o777);
        let fd = match openat(at.parent, at.name, flags, perms) {
            Err(Errno::EEXIST) => {
                self.displace(at.parent, at.name, at.path).map_err(|e| at.fail("replace", e))?;
                openat(at.parent, at.name, flags, perms)
            }
            other => other,
        }
        .map_err(|e| at.fail("create", e))?;
        let file = File::from(fd);
        let size = entry.size();
        let io_error = |e: io::Error| match e.raw_os_error() {
            Some(errno) => at.fail("write", Errno::from_raw(errno)),
            None => Error::msg(format!("{} is corrupt or truncated: {e}", at.what)),
        };
        // The map and the chunks of a PAX sparse member make up its stored
        // size; the sparse writer checks that they do.
        let (copied, size) = if let Some(sparse) = sparse {
            let real = sparse.real_size;
            sparse.write(entry, size, &file).map_err(|why| {
                Error::msg(format!("{}: sparse member {} is refused: {why}", at.what, shown(at.path)))
            })?;
            (real, real)
        } else {
            let mut writer = HoleWriter::new(&file);
            let copied = writer.copy(entry, 0, size).map_err(io_error)?;
            writer.finish(copied).map_err(io_error)?;
            (copied, size)
        };
        self.stats.bytes += copied;
        if copied != size {
            return Err(Error::msg(format!(
                "{} is truncated: member {} has {copied} of its {size} bytes",
                at.what,
                shown(at.path)
            )));
        }
        self.owner_mode(file.as_fd(), meta, true).map_err(|e| at.fail("set the owner and mode of", e))?;
        self.xattrs(&file, entry);
        let t = TimeSpec::new(meta.mtime, 0);
        futimens(&file, &t, &t).map_err(|e| at.fail("set the times of", e))?;
        self.record_other(at.path);
        Ok(())
    }

    fn write_symlink<R: Read>(&mut self, at: &At, meta: &Meta, entry: &tar::Entry<R>) -> Result<(), Error> {
        let target = entry
            .link_name_bytes()
            .ok_or_else(|| Error::msg(format!("{}: symlink {} has no target", at.what, shown(at.path))))?
            .into_owned();
        let target = OsStr::from_bytes(&target);
        match symlinkat(target, at.parent, at.name) {
            Err(Errno::EEXIST) => {
                self.displace(at.parent, at.name, at.path).map_err(|e| at.fail("replace", e))?;
                symlinkat(target, at.parent, at.name)
            }
            other => other,
        }
        .map_err(|e| at.fail("create the symlink", e))?;
        self.owner_and_times_at(at, meta)
    }

    /// A hard link's target is resolved inside the tree like any member, and
    /// its last component is not followed: a link to a symlink links the
    /// symlink.
    fn write_hard_link<R: Read>(&mut self, at: &At, entry: &tar::Entry<R>) -> Result<(), Error> {
        let target_raw = entry
            .link_name_bytes()
            .ok_or_else(|| Error::msg(format!("{}: hard link {} has no target", at.what, shown(at.path))))?
            .into_owned();
        let target = member_path(&target_raw, at.what)?;
        if target.is_empty() {
            return Err(Error::msg(format!(
                "{}: hard link {} names the tree's root",
                at.what,
                shown(at.path)
            )));
        }
        // GNU tar writes a file named twice as a link to itself.
        if target == at.path {
            return Ok(());
        }
        let (tparent_path, tname) = split_last(&target);
        let tparent = self.open_dir(tparent_path).map_err(|e| {
            Error::sys(
                format!("find {}, the target of hard link {} in {}", shown(&target), shown(at.path), at.what),
                e,
            )
        })?;
        let tname = OsStr::from_bytes(tname);
        match linkat(&tparent, tname, at.parent, at.name, AtFlags::empty()) {
            Err(Errno::EEXIST) => {
                self.displace(at.parent, at.name, at.path).map_err(|e| at.fail("replace", e))?;
                linkat(&tparent, tname, at.parent, at.name, AtFlags::empty())
            }
            other => other,
        }
        .map_err(|e| at.fail("create the hard link", e))?;
        self.record_other(at.path);
        Ok(())
    }

    fn write_fifo(&mut self, at: &At, meta: &Meta) -> Result<(), Error> {
        let perms = Mode::from_bits_truncate(meta.mode & 0o777);
        match mkfifoat(at.parent, at.name, perms) {
            Err(Errno::EEXIST) => {
                self.displace(at.parent, at.name, at.path).map_err(|e| at.fail("replace", e))?;
                mkfifoat(at.parent, at.name, perms)
            }
            other => other,
        }
        .map_err(|e| at.fail("create the FIFO", e))?;
        self.owner_and_times_at(at, meta)
    }

    /// Owner and times of an entry that cannot be opened to set them (a
    /// symlink, a FIFO), by its name, never followed; then recorded.
    fn owner_and_times_at(&mut self, at: &At, meta: &Meta) -> Result<(), Error> {
        match fchownat(at.parent, at.name, Some(meta.uid), Some(meta.gid), AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(()) => {}
            Err(Errno::EINVAL) => self.stats.unmapped += 1,
            Err(e) => return Err(at.fail("set the owner of", e)),
        }
        let t = TimeSpec::new(meta.mtime, 0);
        utimensat(at.parent, at.name, &t, &t, UtimensatFlags::NoFollowSymlink)
            .map_err(|e| at.fail("set the times of", e))?;
        self.record_other(at.path);
        Ok(())
    }

    fn dir_meta<R: Read>(
        &mut self,
        dir: &OwnedFd,
        path: &[u8],
        meta: &Meta,
        entry: &mut tar::Entry<R>,
    ) -> Result<(), Error> {
        self.owner_mode(dir.as_fd(), meta, false)
            .map_err(|e| Error::sys(format!("set the owner and mode of the directory {}", shown(path)), e))?;
        let file = File::from(nix::unistd::dup(dir).map_err(|e| Error::sys("duplicate a descriptor", e))?);
        let applied = self.xattrs(&file, entry);
        self.dir_times.push((path.to_vec(), meta.mtime));
        self.record_dir(path, dir, Some(meta.mtime), applied)
            .map_err(|e| Error::sys(format!("look at the directory {}", shown(path)), e))
    }

    /// Owner first, mode after: chown clears the setuid and setgid bits.
    /// `created_with_mode`: the object was created with the permission
    /// bits already (the umask is 0), so only setuid, setgid and sticky
    /// bits, which creation drops, need a second call.
    fn owner_mode(&mut self, fd: BorrowedFd, meta: &Meta, created_with_mode: bool) -> Result<(), Errno> {
        match fchown(fd, Some(meta.uid), Some(meta.gid)) {
            Ok(()) => {}
            Err(Errno::EINVAL) => self.stats.unmapped += 1,
            Err(e) => return Err(e),
        }
        if created_with_mode && meta.mode & 0o7000 == 0 {
            return Ok(());
        }
        fchmod(fd, Mode::from_bits_truncate(meta.mode & 0o7777))
    }

    /// `SCHILY.xattr.*` records: file capabilities (`security.capability`)
    /// and the like, as the [`XattrPolicy`] allows. Set after the owner,
    /// since chown clears capabilities.
    /// Returns those it set.
    fn xattrs<R: Read>(&mut self, file: &File, entry: &mut tar::Entry<R>) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut applied = Vec::new();
        let Ok(Some(exts)) = entry.pax_extensions() else { return applied };
        for ext in exts.flatten() {
            let Some(name) = ext.key_bytes().strip_prefix(b"SCHILY.xattr.") else { continue };
            if !self.xattr_policy.allows(name) {
                self.stats.dropped_xattrs += 1;
                continue;
            }
            if xattr::FileExt::set_xattr(file, OsStr::from_bytes(name), ext.value_bytes()).is_err() {
                self.stats.xattrs += 1;
            } else {
                applied.push((name.to_vec(), ext.value_bytes().to_vec()));
            }
        }
        applied
    }

    /// `.wh..wh..opq` empties `dir` of what lower layers put there;
    /// `.wh.NAME` deletes NAME.
    fn whiteout(
        &mut self,
        parent: &OwnedFd,
        parent_path: &[u8],
        hidden: &[u8],
        what: &str,
    ) -> Result<(), Error> {
        let fail = |e: Errno| Error::sys(format!("apply the whiteout of {} in {what}", shown(hidden)), e);
        let child = |name: &[u8]| {
            let mut p = parent_path.to_vec();
            if !p.is_empty() {
                p.push(b'/');
            }
            p.extend_from_slice(name);
            p
        };
        if hidden == b".wh..opq" {
            if self.track.is_none() {
                let keep = |name: &[u8]| self.layer_paths.contains(&child(name));
                return remove::empty_dir(parent, &keep).map_err(fail);
            }
            for (name, _) in remove::entries(parent).map_err(fail)? {
                let path = child(&name);
                if !self.layer_paths.contains(&path) {
                    self.displace(parent, OsStr::from_bytes(&name), &path).map_err(fail)?;
                }
            }
            return Ok(());
        }
        if hidden.is_empty() || hidden == b"." || hidden == b".." || hidden.contains(&b'/') {
            return Err(Error::msg(format!("{what}: invalid whiteout {}", shown(hidden))));
        }
        match self.displace(parent, OsStr::from_bytes(hidden), &child(hidden)) {
            Ok(()) | Err(Errno::ENOENT) => Ok(()),
            Err(e) => Err(fail(e)),
        }
    }

    /// The member's parent directory, creating missing ones as tar does.
    fn open_parent(&mut self, parent: &[u8], what: &str) -> Result<OwnedFd, Error> {
        if let Some((cached, fd)) = &self.parent {
            if cached == parent {
                return nix::unistd::dup(fd).map_err(|e| Error::sys("duplicate a descriptor", e));
            }
        }
        let fd = match self.open_dir(parent) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => self.make_parents(parent, what)?,
            Err(Errno::ELOOP | Errno::EXDEV | Errno::ENOTDIR) => {
                return Err(Error::msg(format!(
                    "{what}: a member would be written through {}, a symbolic link or a file, not a directory; refusing to follow it",
                    shown(parent)
                )))
            }
            Err(e) => return Err(Error::sys(format!("open the directory {} for {what}", shown(parent)), e)),
        };
        let dup = nix::unistd::dup(&fd).map_err(|e| Error::sys("duplicate a descriptor", e))?;
        self.parent = Some((parent.to_vec(), dup));
        Ok(fd)
    }

    fn open_dir(&self, path: &[u8]) -> Result<OwnedFd, Errno> {
        if path.is_empty() {
            return nix::unistd::dup(&self.root);
        }
        open_in_root(&self.root, path, OFlag::O_RDONLY | OFlag::O_DIRECTORY)
    }

    fn make_parents(&mut self, parent: &[u8], what: &str) -> Result<OwnedFd, Error> {
        let mut dir = nix::unistd::dup(&self.root).map_err(|e| Error::sys("reopen the tree's root", e))?;
        let mut end = 0;
        for part in parent.split(|b| *b == b'/') {
            end += part.len() + usize::from(end > 0);
            let name = OsStr::from_bytes(part);
            let made = match mkdirat(&dir, name, Mode::from_bits_truncate(0o755)) {
                Ok(()) => true,
                Err(Errno::EEXIST) => false,
                Err(e) => {
                    return Err(Error::sys(format!("create the directory {} for {what}", shown(parent)), e))
                }
            };
            dir = openat(
                &dir,
                name,
                OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| match e {
                Errno::ELOOP | Errno::ENOTDIR => Error::msg(format!(
                    "{what}: a member would be written through {}, a symbolic link or a file, not a directory; refusing to follow it",
                    shown(parent)
                )),
                e => Error::sys(format!("open the directory {} for {what}", shown(parent)), e),
            })?;
            if made {
                self.record_dir(&parent[..end], &dir, None, Vec::new())
                    .map_err(|e| Error::sys(format!("look at the directory {}", shown(&parent[..end])), e))?;
            }
        }
        Ok(dir)
    }
}

/// Where a member goes: a name in its parent directory.
struct At<'a> {
    parent: &'a OwnedFd,
    name: &'a OsStr,
    path: &'a [u8],
    what: &'a str,
}

impl At<'_> {
    fn fail(&self, verb: &str, e: Errno) -> Error {
        Error::sys(format!("{verb} {} from {}", shown(self.path), self.what), e)
    }
}

/// The owner, mode and time of a member; PAX records win over the header.
struct Meta {
    uid: Uid,
    gid: Gid,
    mode: u32,
    mtime: i64,
}

impl Meta {
    fn of<R: Read>(entry: &mut tar::Entry<R>) -> Meta {
        let h = entry.header();
        let num = |v: io::Result<u64>| v.ok().and_then(|v| u32::try_from(v).ok());
        let (mut uid, mut gid) = (num(h.uid()).unwrap_or(0), num(h.gid()).unwrap_or(0));
        let mode = h.mode().unwrap_or(0o644);
        let mut mtime = h.mtime().ok().and_then(|t| i64::try_from(t).ok()).unwrap_or(0);
        if let Ok(Some(exts)) = entry.pax_extensions() {
            for ext in exts.flatten() {
                let value = ext.value().unwrap_or("");
                match ext.key_bytes() {
                    b"uid" => uid = value.parse().unwrap_or(uid),
                    b"gid" => gid = value.parse().unwrap_or(gid),
                    b"mtime" => {
                        let whole = value.split('.').next().unwrap_or("");
                        mtime = whole.parse().unwrap_or(mtime);
                    }
                    _ => {}
                }
            }
        }
        Meta { uid: Uid::from_raw(uid), gid: Gid::from_raw(gid), mode, mtime }
    }
}

/// A member's path as components joined by `/`, with `.` and empty
/// components dropped. Absolute paths and `..` are refused: they can only
/// be meant to leave the tree.
pub fn member_path(raw: &[u8], what: &str) -> Result<Vec<u8>, Error> {
    if raw.first() == Some(&b'/') {
        return Err(Error::msg(format!("{what}: member {} has an absolute path", shown(raw))));
    }
    let mut out = Vec::with_capacity(raw.len());
    for part in raw.split(|b| *b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => {
                return Err(Error::msg(format!(
                    "{what}: member {} leads out of the tree with '..'",
                    shown(raw)
                )))
            }
            part => {
                if !out.is_empty() {
                    out.push(b'/');
                }
                out.extend_from_slice(part);
            }
        }
    }
    Ok(out)
}

fn split_last(path: &[u8]) -> (&[u8], &[u8]) {
    match path.iter().rposition(|b| *b == b'/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (&[], path),
    }
}

/// Opens `path` below `root` as if `root` were `/`, following no symlink
/// and no magic link on the way (`openat2`, or its walk before Linux 5.6).
pub fn open_in_root(root: &OwnedFd, path: &[u8], flags: OFlag) -> Result<OwnedFd, Errno> {
    resolve::open(
        root,
        std::path::Path::new(OsStr::from_bytes(path)),
        flags | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW,
        ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_SYMLINKS | ResolveFlag::RESOLVE_NO_MAGICLINKS,
    )
}

fn is_dir_at(dir: &OwnedFd, name: &OsStr) -> bool {
    fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW)
        .is_ok_and(|st| SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR)
}

/// Removes `name` in `dir`, a whole directory tree included, without
/// following symlinks or crossing mount points.
fn remove_at(dir: &OwnedFd, name: &OsStr) -> Result<(), Errno> {
    if is_dir_at(dir, name) {
        remove::remove_tree_at(dir, name)
    } else {
        unlinkat(dir, name, UnlinkatFlags::NoRemoveDir)
    }
}

/// A path from an archive, quoted so that odd bytes show as what they are.
pub fn shown(path: &[u8]) -> String {
    format!("{:?}", String::from_utf8_lossy(path))
}

/// Remembers whether the stream reached its end.
struct EofTracker<R> {
    inner: R,
    eof: bool,
}

impl<R: Read> Read for EofTracker<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() {
            self.eof = true;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::member_path;

    #[test]
    fn member_paths_are_normalised() {
        assert_eq!(member_path(b"./etc//passwd", "t").unwrap(), b"etc/passwd");
        assert_eq!(member_path(b"./", "t").unwrap(), b"");
        assert_eq!(member_path(b"usr/bin/", "t").unwrap(), b"usr/bin");
    }

    #[test]
    fn escaping_member_paths_are_refused() {
        assert!(member_path(b"/etc/passwd", "t").unwrap_err().to_string().contains("absolute"));
        assert!(member_path(b"a/../../x", "t").unwrap_err().to_string().contains(".."));
        assert!(member_path(b"..", "t").is_err());
    }
}
