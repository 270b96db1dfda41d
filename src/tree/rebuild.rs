//! The first layers of a new tree built from an old tree's layer record:
//! directories made anew with the owner, mode and attributes the record
//! gives, files hard-linked from where the old tree or its stash has them,
//! each checked first to be still the file the unpack left. The top-level
//! subtrees are split between two threads: making directories and links is
//! the file system's work, which the other core can share.

use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;

use nix::errno::Errno;
use nix::fcntl::{openat, AtFlags, OFlag};
use nix::sys::stat::{fchmod, fstatat, mkdirat, Mode};
use nix::unistd::{fchown, linkat, Gid, Uid};

use super::layers::{self, DirMeta, Identity, Kind, Old, Parents, Record};
use super::unpack::shown;

/// Why the old tree could not be built on.
pub struct Mismatch(pub String);

/// What was built: the entries, for the new tree's record, and the
/// directory times to set once the tree is complete.
#[derive(Default)]
pub struct Rebuilt {
    pub entries: Vec<(Vec<u8>, u16, Kind)>,
    pub dir_times: Vec<(Vec<u8>, i64)>,
}

impl Rebuilt {
    fn append(&mut self, mut other: Rebuilt) {
        self.entries.append(&mut other.entries);
        self.dir_times.append(&mut other.dir_times);
    }
}

/// Builds the entries of `plan` (in path order) below `root`.
pub fn rebuild(root: &OwnedFd, old: &Old, plan: &[&Record]) -> Result<Rebuilt, Mismatch> {
    let (first, rest) = match plan.split_first() {
        Some((r, rest)) if r.path.is_empty() => (Some(r), rest),
        _ => (None, plan),
    };
    let mut out = Rebuilt::default();
    if let Some(r) = first {
        Builder::new(root, old).entry(r, &mut out)?;
    }
    let (a, b) = rest.split_at(halfway(rest));
    let (done_a, done_b) = std::thread::scope(|s| {
        let other = s.spawn(|| Builder::new(root, old).all(b));
        (Builder::new(root, old).all(a), other.join())
    });
    out.append(done_a?);
    out.append(done_b.map_err(|_| Mismatch("a thread linking files from it failed".into()))??);
    Ok(out)
}

/// Where `plan` splits in two near its middle, between two top-level
/// entries, so that no directory is on one side and its contents on the
/// other.
fn halfway(plan: &[&Record]) -> usize {
    let top = |r: &Record| r.path.split(|b| *b == b'/').next().map(<[u8]>::to_vec);
    let mid = plan.len() / 2;
    let Some(here) = plan.get(mid).map(|r| top(r)) else { return plan.len() };
    mid + plan[mid..].iter().position(|r| top(r) != here).unwrap_or(plan.len() - mid)
}

struct Builder<'a> {
    root: &'a OwnedFd,
    old: &'a Old,
    from: Parents,
    to: Parents,
}

impl<'a> Builder<'a> {
    fn new(root: &'a OwnedFd, old: &'a Old) -> Builder<'a> {
        Builder { root, old, from: Parents::default(), to: Parents::default() }
    }

    fn all(mut self, plan: &[&Record]) -> Result<Rebuilt, Mismatch> {
        let mut out = Rebuilt::default();
        for r in plan {
            if super::interrupt::taken().is_some() {
                return Err(Mismatch("the update was interrupted".into()));
            }
            self.entry(r, &mut out)?;
        }
        Ok(out)
    }

    fn entry(&mut self, r: &Record, out: &mut Rebuilt) -> Result<(), Mismatch> {
        match &r.kind {
            Kind::Dir(meta) => {
                self.dir(&r.path, meta)?;
                if let Some(t) = meta.mtime {
                    out.dir_times.push((r.path.clone(), t));
                }
            }
            Kind::Other(Some(id)) => self.link(r, id)?,
            Kind::Other(None) => return Err(Mismatch(format!("its layer record lacks {}", shown(&r.path)))),
        }
        out.entries.push((r.path.clone(), r.written, r.kind.clone()));
        Ok(())
    }

    fn dir(&mut self, path: &[u8], meta: &DirMeta) -> Result<(), Mismatch> {
        let (parent, name) = layers::split_last(path);
        let name = OsStr::from_bytes(name);
        let dir = if path.is_empty() {
            nix::unistd::dup(self.root).map_err(|e| failed("reopen", b"/", e))?
        } else {
            let at = self.to.open(self.root, self.root, 0, parent).map_err(|e| failed("open", parent, e))?;
            mkdirat(at, name, Mode::S_IRWXU).map_err(|e| failed("create", path, e))?;
            openat(
                at,
                name,
                OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| failed("open", path, e))?
        };
        restore_dir(&dir, meta).map_err(|e| failed("set the owner, mode and attributes of", path, e))
    }

    fn link(&mut self, r: &Record, id: &Identity) -> Result<(), Mismatch> {
        let (parent, name) = layers::split_last(&r.path);
        let name = OsStr::from_bytes(name);
        let missing = |e| Mismatch(layers::missing(r.displaced, &r.path, e));
        let src = self.from.open(&self.old.tree, &self.old.stash, r.displaced, parent).map_err(missing)?;
        let st = fstatat(src, name, AtFlags::AT_SYMLINK_NOFOLLOW).map_err(missing)?;
        if Identity::of(&st) != *id {
            return Err(Mismatch(format!("{} was changed since it was unpacked", shown(&r.path))));
        }
        let at = self.to.open(self.root, self.root, 0, parent).map_err(|e| failed("open", parent, e))?;
        linkat(src, name, at, name, AtFlags::empty()).map_err(|e| failed("link", &r.path, e))?;
        // Linked by name: the name must still have led to the file checked.
        let linked =
            fstatat(at, name, AtFlags::AT_SYMLINK_NOFOLLOW).map_err(|e| failed("find", &r.path, e))?;
        if linked.st_ino != id.ino() {
            return Err(Mismatch(format!("{} was replaced while it was linked", shown(&r.path))));
        }
        Ok(())
    }
}

fn failed(what: &str, path: &[u8], e: Errno) -> Mismatch {
    Mismatch(format!("cannot {what} {} ({})", shown(path), e.desc()))
}

/// A directory's owner, mode and extended attributes as a layer record
/// has them: owner first, as chown clears the setuid and setgid bits.
fn restore_dir(dir: &OwnedFd, meta: &DirMeta) -> Result<(), Errno> {
    fchown(dir, Some(Uid::from_raw(meta.uid)), Some(Gid::from_raw(meta.gid)))?;
    fchmod(dir, Mode::from_bits_truncate(meta.mode & 0o7777))?;
    if meta.xattrs.is_empty() {
        return Ok(());
    }
    let file = File::from(nix::unistd::dup(dir)?);
    for (name, value) in &meta.xattrs {
        xattr::FileExt::set_xattr(&file, OsStr::from_bytes(name), value)
            .map_err(|e| e.raw_os_error().map_or(Errno::EIO, Errno::from_raw))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(path: &str) -> Record {
        Record { path: path.as_bytes().to_vec(), written: 1, displaced: 0, kind: Kind::Other(None) }
    }

    #[test]
    fn the_halves_never_split_a_subtree() {
        let records: Vec<Record> = ["a", "a/1", "a/2", "a/3", "b", "b/1", "c"].map(record).into();
        let plan: Vec<&Record> = records.iter().collect();
        assert_eq!(halfway(&plan), 4, "after a's subtree");
        let one: Vec<&Record> = plan[..1].to_vec();
        assert_eq!(halfway(&one), 1);
        assert_eq!(halfway(&[]), 0);
        let same: Vec<Record> = ["u", "u/1", "u/2"].map(record).into();
        assert_eq!(halfway(&same.iter().collect::<Vec<_>>()), 3, "one subtree stays whole");
    }
}
