//! A tree's layer record: which layer of its image wrote each entry, and
//! where what a later layer replaced or whited out was put aside. With it,
//! `--update` builds the new tree of an image that shares its first layers
//! with the old one by hard-linking the old tree's files of those layers,
//! instead of fetching and unpacking them again.
//!
//! The record lives beside the tree, in `.+layers-INO` of the data
//! directory (INO: the tree directory's inode, which every rename of the
//! tree keeps), marked as distrorun's own like the trees: the record file
//! `ledger`, and `stash/K/PATH`, where layer K moved the entry PATH that an
//! earlier layer had written. Moving costs a rename where deleting would
//! cost an unlink, and only entries later layers replace are ever there.
//!
//! A file is taken from the old tree only when it is still the very file
//! the unpack left: same inode, size, modification time, type, mode and
//! owner. A distro's tree is its user's to change; a file changed in place,
//! replaced, or deleted since makes the update unpack every layer again,
//! and says why. Directories are made anew from the record, never linked.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io::Write as _;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use distrorun_engine::Error;
use nix::errno::Errno;
use nix::fcntl::{openat, renameat, AtFlags, OFlag};
use nix::sys::stat::{fstat, fstatat, mkdirat, FileStat, Mode};

use super::marker::{self, Stage};
use super::unpack::{open_in_root, shown};

const MAGIC: &[u8] = b"distrorun-layers 1\n";
const RECORD: &str = "ledger";
const STASH: &str = "stash";

/// The key of the record of the tree whose directory has inode `ino`.
pub fn key(ino: u64) -> String {
    format!("+layers-{ino}")
}

/// What the unpack left of a file: what must still hold for it to be
/// taken into another tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    ino: u64,
    size: i64,
    mtime: (i64, i64),
    mode: u32,
    uid: u32,
    gid: u32,
}

impl Identity {
    pub fn of(st: &FileStat) -> Identity {
        Identity {
            ino: st.st_ino,
            size: st.st_size,
            mtime: (st.st_mtime, st.st_mtime_nsec),
            mode: st.st_mode,
            uid: st.st_uid,
            gid: st.st_gid,
        }
    }

    pub fn ino(&self) -> u64 {
        self.ino
    }
}

/// A directory as the unpack left it; the time is the archive's, set at
/// the end, and absent for a directory made only as a parent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirMeta {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: Option<i64>,
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Dir(DirMeta),
    /// Anything else; its identity is taken once the unpack is over.
    Other(Option<Identity>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub path: Vec<u8>,
    /// The layer that wrote it, from 1.
    pub written: u16,
    /// The layer that replaced or deleted it, 0 while it is in place. A
    /// file is then in `stash/DISPLACED/PATH`; a directory whose metadata
    /// a later layer only changed stays where it is.
    pub displaced: u16,
    pub kind: Kind,
}

/// What to do with an entry a layer is about to replace or delete.
#[derive(Debug, PartialEq, Eq)]
pub enum Displace {
    /// Move it to `stash/LAYER/PATH`: an earlier layer's entry is in it.
    Stash,
    /// Delete it: it holds only what this layer wrote, or nothing recorded.
    Remove,
}

/// The record of one tree.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Ledger {
    /// The tree's directory inode, so that a record is never read for
    /// another tree that got the same inode.
    pub tree: u64,
    /// The layers' digests, in order.
    pub layers: Vec<String>,
    /// How extended attributes were treated: a tree unpacked otherwise is
    /// not the same tree.
    pub policy: String,
    /// The fewest layers this record can rebuild the tree of: a tree that
    /// was itself built from another's first N layers does not know what
    /// those layers replaced among themselves.
    pub since: u16,
    records: Vec<Record>,
    live: BTreeMap<Vec<u8>, usize>,
}

impl Ledger {
    pub fn new(tree: u64, layers: Vec<String>, policy: String, since: u16) -> Ledger {
        Ledger { tree, layers, policy, since, ..Ledger::default() }
    }

    /// A record of the same tree and image with nothing in it yet.
    pub fn emptied(&self) -> Ledger {
        Ledger::new(self.tree, self.layers.clone(), self.policy.clone(), 1)
    }

    fn push(&mut self, record: Record) {
        let path = record.path.clone();
        self.records.push(record);
        self.live.insert(path, self.records.len() - 1);
    }

    /// Layer `layer` wrote the directory `path`. An earlier record of the
    /// same directory is superseded, not moved.
    pub fn wrote_dir(&mut self, path: &[u8], layer: u16, meta: DirMeta) {
        if let Some(&i) = self.live.get(path) {
            if matches!(self.records[i].kind, Kind::Dir(_)) {
                self.records[i].displaced = layer;
            }
        }
        self.push(Record { path: path.to_vec(), written: layer, displaced: 0, kind: Kind::Dir(meta) });
    }

    /// Layer `layer` wrote `path`, which is not a directory; `known`: its
    /// identity, where it is a file taken over whole from another tree.
    pub fn wrote_other(&mut self, path: &[u8], layer: u16, known: Option<Identity>) {
        self.push(Record { path: path.to_vec(), written: layer, displaced: 0, kind: Kind::Other(known) });
    }

    /// The live entries at `path` and below it.
    fn subtree(&self, path: &[u8]) -> Vec<(Vec<u8>, usize)> {
        let mut below = path.to_vec();
        below.push(b'/');
        let mut out: Vec<(Vec<u8>, usize)> =
            self.live.get(path).map(|&i| (path.to_vec(), i)).into_iter().collect();
        out.extend(
            self.live
                .range(below.clone()..)
                .take_while(|(p, _)| p.starts_with(&below))
                .map(|(p, &i)| (p.clone(), i)),
        );
        out
    }

    /// Layer `layer` is about to replace or delete `path` and what is below
    /// it: each is recorded as displaced by it, and the answer says whether
    /// an earlier layer's entry is among them, to be kept in the stash.
    pub fn displace(&mut self, path: &[u8], layer: u16) -> Displace {
        let gone = self.subtree(path);
        let earlier = gone.iter().any(|&(_, i)| self.records[i].written < layer);
        for (p, i) in gone {
            self.records[i].displaced = layer;
            self.live.remove(&p);
        }
        if earlier {
            Displace::Stash
        } else {
            Displace::Remove
        }
    }

    /// Fills in each file's identity from where it now is (a move to the
    /// stash keeps it); fails on the first that is not there.
    pub fn seal(&mut self, tree: &OwnedFd, stash: &OwnedFd) -> Result<(), String> {
        let mut dirs = Parents::default();
        for r in &mut self.records {
            if r.written == r.displaced || !matches!(r.kind, Kind::Other(None)) {
                continue;
            }
            let st = dirs.stat(tree, stash, r.displaced, &r.path)?;
            r.kind = Kind::Other(Some(Identity::of(&st)));
        }
        Ok(())
    }

    /// The entries of the tree after its first `layers` layers, each once,
    /// in the order of a walk of the tree.
    pub fn prefix(&self, layers: u16) -> Result<Vec<&Record>, String> {
        if layers < self.since || usize::from(layers) > self.layers.len() {
            return Err(format!(
                "it records how to rebuild layers {}..{} only",
                self.since,
                self.layers.len()
            ));
        }
        let mut out: Vec<&Record> = self
            .records
            .iter()
            .filter(|r| r.written <= layers && (r.displaced == 0 || r.displaced > layers))
            .collect();
        // By components: each directory right before what is in it, and
        // every subtree in one piece (`a`, `a/b`, then `a-b`).
        out.sort_by(|a, b| a.path.split(|c| *c == b'/').cmp(b.path.split(|c| *c == b'/')));
        if let Some(w) = out.windows(2).find(|w| w[0].path == w[1].path) {
            return Err(format!("it names {} twice", shown(&w[0].path)));
        }
        Ok(out)
    }

    /// The bytes of the record; entries no prefix has are left out.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Encoder(MAGIC.to_vec());
        out.u64(self.tree);
        out.u16(self.since);
        out.len(self.layers.len());
        for layer in &self.layers {
            out.bytes(layer.as_bytes());
        }
        out.bytes(self.policy.as_bytes());
        let kept: Vec<&Record> = self.records.iter().filter(|r| r.written != r.displaced).collect();
        out.len(kept.len());
        for r in kept {
            out.bytes(&r.path);
            out.u16(r.written);
            out.u16(r.displaced);
            match &r.kind {
                Kind::Dir(m) => {
                    out.0.push(b'd');
                    out.u32(m.mode);
                    out.u32(m.uid);
                    out.u32(m.gid);
                    out.0.push(u8::from(m.mtime.is_some()));
                    out.i64(m.mtime.unwrap_or(0));
                    out.len(m.xattrs.len());
                    for (name, value) in &m.xattrs {
                        out.bytes(name);
                        out.bytes(value);
                    }
                }
                Kind::Other(id) => {
                    let id =
                        id.unwrap_or(Identity { ino: 0, size: -1, mtime: (0, 0), mode: 0, uid: 0, gid: 0 });
                    out.0.push(b'f');
                    out.u64(id.ino);
                    out.i64(id.size);
                    out.i64(id.mtime.0);
                    out.i64(id.mtime.1);
                    out.u32(id.mode);
                    out.u32(id.uid);
                    out.u32(id.gid);
                }
            }
        }
        out.0
    }

    /// Reads a record back; `None` for anything but a whole, well-formed
    /// one (it lies in a directory its user can write, so it is checked
    /// like any input, though it can only lead to that user's own files).
    pub fn decode(data: &[u8]) -> Option<Ledger> {
        let mut d = Decoder { data: data.strip_prefix(MAGIC)? };
        let tree = d.u64()?;
        let since = d.u16()?;
        let count = d.u32()?;
        let mut layers = Vec::new();
        for _ in 0..count {
            layers.push(String::from_utf8(d.bytes()?.to_vec()).ok()?);
        }
        let policy = String::from_utf8(d.bytes()?.to_vec()).ok()?;
        let mut ledger = Ledger::new(tree, layers, policy, since);
        for _ in 0..d.u32()? {
            let path = d.bytes()?.to_vec();
            // Plain components only, as the unpacker writes them.
            if !path.is_empty() && path.split(|b| *b == b'/').any(|c| matches!(c, b"" | b"." | b"..")) {
                return None;
            }
            let (written, displaced) = (d.u16()?, d.u16()?);
            let kind = match d.byte()? {
                b'd' => {
                    let (mode, uid, gid) = (d.u32()?, d.u32()?, d.u32()?);
                    let has_time = d.byte()? == 1;
                    let time = d.i64()?;
                    let mut xattrs = Vec::new();
                    for _ in 0..d.u32()? {
                        xattrs.push((d.bytes()?.to_vec(), d.bytes()?.to_vec()));
                    }
                    Kind::Dir(DirMeta { mode, uid, gid, mtime: has_time.then_some(time), xattrs })
                }
                b'f' => {
                    let (ino, size, sec, nsec) = (d.u64()?, d.i64()?, d.i64()?, d.i64()?);
                    let (mode, uid, gid) = (d.u32()?, d.u32()?, d.u32()?);
                    Kind::Other(Some(Identity { ino, size, mtime: (sec, nsec), mode, uid, gid }))
                }
                _ => return None,
            };
            if written == 0 {
                return None;
            }
            let record = Record { path, written, displaced, kind };
            if displaced == 0 {
                ledger.push(record);
            } else {
                ledger.records.push(record);
            }
        }
        d.data.is_empty().then_some(ledger)
    }
}

struct Encoder(Vec<u8>);

impl Encoder {
    fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn i64(&mut self, v: i64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    /// A count or length; one past `u32` (which no tree within the
    /// limits has) makes a record that reads back as damaged.
    fn len(&mut self, n: usize) {
        self.u32(u32::try_from(n).unwrap_or(u32::MAX));
    }
    fn bytes(&mut self, b: &[u8]) {
        self.len(b.len());
        self.0.extend_from_slice(b);
    }
}

struct Decoder<'a> {
    data: &'a [u8],
}

impl<'a> Decoder<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.data.len() < n {
            return None;
        }
        let (head, rest) = self.data.split_at(n);
        self.data = rest;
        Some(head)
    }
    fn byte(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2)?.try_into().ok().map(u16::from_le_bytes)
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4)?.try_into().ok().map(u32::from_le_bytes)
    }
    fn u64(&mut self) -> Option<u64> {
        self.take(8)?.try_into().ok().map(u64::from_le_bytes)
    }
    fn i64(&mut self) -> Option<i64> {
        self.take(8)?.try_into().ok().map(i64::from_le_bytes)
    }
    fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = usize::try_from(self.u32()?).ok()?;
        self.take(n)
    }
}

/// Directories of a tree or its stash, opened by path as the walks in path
/// order need them, the last one kept.
#[derive(Default)]
pub struct Parents {
    last: Option<(u16, Vec<u8>, OwnedFd)>,
}

impl Parents {
    /// The directory `path` of the tree (`layer` 0) or of `stash/LAYER`.
    pub fn open(
        &mut self,
        tree: &OwnedFd,
        stash: &OwnedFd,
        layer: u16,
        path: &[u8],
    ) -> Result<&OwnedFd, Errno> {
        let fresh = !matches!(&self.last, Some((l, p, _)) if *l == layer && p == path);
        if fresh {
            let fd = match layer {
                0 => open_dir_in(tree, path)?,
                n => {
                    let mut full = n.to_string().into_bytes();
                    if !path.is_empty() {
                        full.push(b'/');
                        full.extend_from_slice(path);
                    }
                    open_dir_in(stash, &full)?
                }
            };
            self.last = Some((layer, path.to_vec(), fd));
        }
        match &self.last {
            Some((_, _, fd)) => Ok(fd),
            None => Err(Errno::ENOENT),
        }
    }

    fn stat(&mut self, tree: &OwnedFd, stash: &OwnedFd, layer: u16, path: &[u8]) -> Result<FileStat, String> {
        let (parent, name) = split_last(path);
        let dir = self.open(tree, stash, layer, parent).map_err(|e| missing(layer, path, e))?;
        fstatat(dir, OsStr::from_bytes(name), AtFlags::AT_SYMLINK_NOFOLLOW)
            .map_err(|e| missing(layer, path, e))
    }
}

/// Says that the entry `path` of the tree (`layer` 0) or of the stash of
/// `layer` is missing.
pub fn missing(layer: u16, path: &[u8], e: Errno) -> String {
    match layer {
        0 => format!("{} is not there ({})", shown(path), e.desc()),
        n => format!("{} put aside by layer {n} is not there ({})", shown(path), e.desc()),
    }
}

fn open_dir_in(root: &OwnedFd, path: &[u8]) -> Result<OwnedFd, Errno> {
    if path.is_empty() {
        return nix::unistd::dup(root);
    }
    open_in_root(root, path, OFlag::O_RDONLY | OFlag::O_DIRECTORY)
}

pub fn split_last(path: &[u8]) -> (&[u8], &[u8]) {
    match path.iter().rposition(|b| *b == b'/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (&[], path),
    }
}

/// The stash an unpack moves displaced entries into: `stash/LAYER/PATH`,
/// its directories made as needed, private to the caller.
pub struct Stash {
    root: OwnedFd,
    last: Option<(Vec<u8>, OwnedFd)>,
}

impl Stash {
    pub fn new(root: OwnedFd) -> Stash {
        Stash { root, last: None }
    }

    pub fn fd(&self) -> &OwnedFd {
        &self.root
    }

    /// Forgets the directory last made, once the stash was emptied.
    pub fn forget_dirs(&mut self) {
        self.last = None;
    }

    /// Moves `name` in `from` (the entry `path` of the tree) to the stash
    /// of layer `layer`.
    pub fn put(&mut self, from: &OwnedFd, name: &OsStr, layer: u16, path: &[u8]) -> Result<(), Errno> {
        let (parent, _) = split_last(path);
        let mut dir = layer.to_string().into_bytes();
        if !parent.is_empty() {
            dir.push(b'/');
            dir.extend_from_slice(parent);
        }
        if !matches!(&self.last, Some((p, _)) if *p == dir) {
            let fd = self.make(&dir)?;
            self.last = Some((dir, fd));
        }
        let Some((_, to)) = &self.last else { return Err(Errno::ENOENT) };
        renameat(from, name, to, name)
    }

    fn make(&self, dir: &[u8]) -> Result<OwnedFd, Errno> {
        let mut fd = nix::unistd::dup(&self.root)?;
        for part in dir.split(|b| *b == b'/') {
            let part = OsStr::from_bytes(part);
            match mkdirat(&fd, part, Mode::S_IRWXU) {
                Ok(()) | Err(Errno::EEXIST) => {}
                Err(e) => return Err(e),
            }
            fd = openat(
                &fd,
                part,
                OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            )?;
        }
        Ok(fd)
    }
}

/// The record directory of a tree being built: made (a stale one of a
/// removed tree with the same inode reaped first) and marked.
pub fn make(data_fd: &OwnedFd, data: &Path, tree: &OwnedFd) -> Result<(String, OwnedFd), Error> {
    let ino = fstat(tree).map_err(|e| Error::sys("look at the new tree", e))?.st_ino;
    let key = key(ino);
    let entry = crate::places::keyed_entry(&key);
    let at = data.join(&entry);
    if fstatat(data_fd, entry.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW).is_ok() {
        super::remove::reap_marked(data_fd, data, &key, &entry)?;
    }
    mkdirat(data_fd, entry.as_os_str(), Mode::S_IRWXU)
        .map_err(|e| Error::sys(format!("create {}", at.display()), e))?;
    let dir = open_dir_at(data_fd, entry.as_os_str())
        .map_err(|e| Error::sys(format!("open {}", at.display()), e))?;
    marker::mark(data_fd, data, &key, &[(&dir, Stage::Complete)])?;
    mkdirat(&dir, STASH, Mode::S_IRWXU)
        .map_err(|e| Error::sys(format!("create {}/{STASH}", at.display()), e))?;
    Ok((key, dir))
}

fn open_dir_at(dir: &OwnedFd, name: &OsStr) -> Result<OwnedFd, Errno> {
    openat(
        dir,
        name,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

/// The stash of the record directory `dir`.
pub fn stash_of(dir: &OwnedFd) -> Result<OwnedFd, Errno> {
    open_dir_at(dir, OsStr::new(STASH))
}

/// Writes the record into its directory, whole or not at all.
pub fn write(dir: &OwnedFd, at: &Path, ledger: &Ledger) -> Result<(), Error> {
    let tmp = format!("{RECORD}.tmp");
    let fail = |e: Errno| Error::sys(format!("write {}", at.join(RECORD).display()), e);
    let fd = openat(
        dir,
        tmp.as_str(),
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_TRUNC | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o600),
    )
    .map_err(fail)?;
    std::fs::File::from(fd)
        .write_all(&ledger.encode())
        .map_err(|e| fail(e.raw_os_error().map_or(Errno::EIO, Errno::from_raw)))?;
    renameat(dir, tmp.as_str(), dir, RECORD).map_err(fail)
}

/// A finished tree's record and stash, where they are whole and its own.
pub struct Old {
    pub tree: OwnedFd,
    pub stash: OwnedFd,
    pub ledger: Ledger,
}

/// The record of the tree `name` in the data directory, or why there is
/// none to use.
pub fn read(data_fd: &OwnedFd, data: &Path, name: &str) -> Result<Old, String> {
    let tree =
        open_dir_at(data_fd, OsStr::new(name)).map_err(|e| format!("cannot be opened ({})", e.desc()))?;
    let ino = fstat(&tree).map_err(|e| format!("cannot be looked at ({})", e.desc()))?.st_ino;
    let key = key(ino);
    let entry = crate::places::keyed_entry(&key);
    if marker::require(data_fd, data, &key, &entry.to_string_lossy()).is_err() {
        return Err("has no layer record (an older distrorun made it)".into());
    }
    let dir = open_dir_at(data_fd, entry.as_os_str())
        .map_err(|e| format!("has a layer record that cannot be opened ({})", e.desc()))?;
    let stash = stash_of(&dir).map_err(|e| format!("has a stash that cannot be opened ({})", e.desc()))?;
    let file = openat(&dir, RECORD, OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(|e| format!("has a layer record that cannot be read ({})", e.desc()))?;
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut std::fs::File::from(file), &mut bytes)
        .map_err(|e| format!("has a layer record that cannot be read ({e})"))?;
    let ledger = Ledger::decode(&bytes).ok_or("has a damaged layer record")?;
    if ledger.tree != ino {
        return Err("has another tree's layer record".into());
    }
    Ok(Old { tree, stash, ledger })
}

/// The layer record of the tree `entry` of `parent`, which goes with it.
pub fn reap_of(parent_fd: &OwnedFd, parent: &Path, entry: &Path) -> Result<(), Error> {
    let Ok(st) = fstatat(parent_fd, entry.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW) else { return Ok(()) };
    let key = key(st.st_ino);
    let record = crate::places::keyed_entry(&key);
    if record.as_os_str() == entry.as_os_str() || !marker::exists(parent_fd, &key) {
        return Ok(());
    }
    super::remove::reap_marked(parent_fd, parent, &key, &record)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(mtime: Option<i64>) -> DirMeta {
        DirMeta { mode: 0o40755, uid: 0, gid: 0, mtime, xattrs: vec![(b"user.a".to_vec(), b"1".to_vec())] }
    }

    fn paths(records: &[&Record]) -> Vec<(String, u16)> {
        records.iter().map(|r| (String::from_utf8_lossy(&r.path).into_owned(), r.written)).collect()
    }

    #[test]
    fn each_prefix_has_what_its_layers_left() {
        let mut l = Ledger::new(7, vec!["a".into(), "b".into(), "c".into()], "p".into(), 1);
        l.wrote_dir(b"", 1, dir(Some(1)));
        l.wrote_dir(b"etc", 1, dir(Some(1)));
        l.wrote_other(b"etc/over", 1, None);
        l.wrote_other(b"etc/keep", 1, None);
        l.wrote_dir(b"opt", 1, dir(None));
        l.wrote_other(b"opt/x", 1, None);
        // Layer 2 replaces etc/over, whites out opt, changes etc's metadata.
        assert_eq!(l.displace(b"etc/over", 2), Displace::Stash);
        l.wrote_other(b"etc/over", 2, None);
        assert_eq!(l.displace(b"opt", 2), Displace::Stash);
        l.wrote_dir(b"etc", 2, dir(Some(2)));
        l.wrote_other(b"new", 2, None);
        // Layer 3 replaces its own kind of file only.
        l.wrote_other(b"three", 3, None);
        assert_eq!(l.displace(b"three", 3), Displace::Remove);
        l.wrote_other(b"three", 3, None);

        let one = l.prefix(1).unwrap();
        assert_eq!(
            paths(&one),
            [("", 1), ("etc", 1), ("etc/keep", 1), ("etc/over", 1), ("opt", 1), ("opt/x", 1)]
                .map(|(p, w)| (p.to_owned(), w))
        );
        assert_eq!(one.iter().find(|r| r.path == b"opt/x").unwrap().displaced, 2);
        l.wrote_other(b"etc-x", 2, None);
        l.wrote_other(b"etc/a/b", 2, None);
        let walk: Vec<String> = l.prefix(2).unwrap().iter().map(|r| shown(&r.path)).collect();
        assert_eq!(walk[..4], ["\"\"", "\"etc\"", "\"etc/a/b\"", "\"etc/keep\""].map(String::from));
        assert_eq!(walk[5], "\"etc-x\"");
        l.displace(b"etc-x", 2);
        l.displace(b"etc/a/b", 2);
        let two = l.prefix(2).unwrap();
        assert_eq!(
            paths(&two),
            [("", 1), ("etc", 2), ("etc/keep", 1), ("etc/over", 2), ("new", 2)]
                .map(|(p, w)| (p.to_owned(), w))
        );
        assert_eq!(l.prefix(3).unwrap().len(), 6);
        assert!(l.prefix(0).is_err() && l.prefix(4).is_err());
    }

    #[test]
    fn a_record_reads_back_as_written_and_a_damaged_one_not_at_all() {
        let mut l = Ledger::new(7, vec!["sha256:1".into()], "privileged=false".into(), 1);
        l.wrote_dir(b"", 1, dir(Some(5)));
        l.wrote_other(b"a\nb", 1, None);
        l.wrote_other(b"gone", 1, None);
        l.displace(b"gone", 1);
        l.records[1].kind =
            Kind::Other(Some(Identity { ino: 9, size: 3, mtime: (1, 2), mode: 0o100_644, uid: 1, gid: 2 }));
        let bytes = l.encode();
        let back = Ledger::decode(&bytes).unwrap();
        assert_eq!(back.records.len(), 2, "the entry written and deleted by one layer is left out");
        assert_eq!(back.prefix(1).unwrap(), l.prefix(1).unwrap());
        for cut in 0..bytes.len() {
            assert!(Ledger::decode(&bytes[..cut]).is_none(), "a record cut at {cut} was read");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(Ledger::decode(&longer).is_none());
        for odd in [&b"../x"[..], b"/x", b"a//b", b"a/./b", b"a/"] {
            let mut bad = Ledger::new(7, vec!["sha256:1".into()], String::new(), 1);
            bad.wrote_dir(odd, 1, dir(None));
            assert!(Ledger::decode(&bad.encode()).is_none(), "{} was read", shown(odd));
        }
    }

    #[test]
    fn a_prefix_below_what_the_record_knows_is_refused() {
        let mut l = Ledger::new(7, vec!["a".into(), "b".into()], String::new(), 2);
        l.wrote_other(b"x", 1, None);
        assert!(l.prefix(1).unwrap_err().contains("layers 2..2"));
        assert_eq!(l.prefix(2).unwrap().len(), 1);
    }
}
