//! The blob cache that every create and update of one user shares:
//! `${XDG_CACHE_HOME:-~/.cache}/distrorun` (0700, as the data directory),
//! and root's `/var/cache/distrorun` for system distros.
//!
//! - `sha256/HEX`: layers, configs, manifests and indexes, as fetched
//!   (compressed), under their digest. A blob is written to `tmp/` and
//!   renamed there only once its digest checked, so no half-written blob
//!   is ever seen; one read back is checked again (a regular file, of its
//!   declared size, hashing to its name) before it is used, and one that
//!   fails is discarded, with a note, and fetched again.
//! - `locks/HEX`: held while a blob is fetched, so that two creates at
//!   once fetch it once: the second waits for the first, and only for a
//!   blob the first is fetching.
//! - `refs/KEY`: which digest a reference (and platform) last resolved
//!   to, for `--pull missing` and `--pull never`.

use std::fs::File;
use std::io::{self, Read, Seek, Write};
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use distrorun_engine::Error;
use nix::errno::Errno;
use nix::fcntl::{openat, renameat, Flock, FlockArg, OFlag};
use nix::sys::stat::{fstat, mkdirat, Mode, SFlag};
use nix::unistd::{unlinkat, UnlinkatFlags};
use sha2::{Digest, Sha256};

use super::reference::check_digest;
use crate::{places, tree};

pub struct Cache {
    pub dir: PathBuf,
    blobs: OwnedFd,
    tmp: OwnedFd,
    locks: OwnedFd,
    refs: OwnedFd,
}

/// A blob's hex digits, which name its files; `None` for a digest that is
/// not sha256 and well formed.
fn hex(digest: &str) -> Option<&str> {
    check_digest(digest).ok()?;
    digest.strip_prefix("sha256:")
}

fn sha256_hex(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

/// Opens (making it where it is missing) the subdirectory `name` of `dir`,
/// through no symlink.
fn subdir(dir: &OwnedFd, path: &std::path::Path, name: &str) -> Result<OwnedFd, Error> {
    match mkdirat(dir, name, Mode::S_IRWXU) {
        Ok(()) | Err(Errno::EEXIST) => {}
        Err(e) => return Err(Error::sys(format!("create {}", path.join(name).display()), e)),
    }
    openat(
        dir,
        name,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Error::sys(format!("open {}", path.join(name).display()), e))
}

impl Cache {
    /// The caller's cache, or root's for `system`, made private where new.
    pub fn open(system: bool) -> Result<Cache, Error> {
        let dir = places::cache_dir(system)?;
        let fd = tree::private_dir::ensure(&dir, nix::unistd::geteuid())?;
        Ok(Cache {
            blobs: subdir(&fd, &dir, "sha256")?,
            tmp: subdir(&fd, &dir, "tmp")?,
            locks: subdir(&fd, &dir, "locks")?,
            refs: subdir(&fd, &dir, "refs")?,
            dir,
        })
    }

    fn note(&self, hex: &str, why: &str) {
        eprintln!(
            "distrorun: the cached blob sha256:{hex} in {} {why}; it is discarded and fetched again",
            self.dir.display()
        );
    }

    fn discard(&self, hex: &str, why: &str) {
        let _ = unlinkat(&self.blobs, hex, UnlinkatFlags::NoRemoveDir);
        self.note(hex, why);
    }

    /// The cached blob `digest`, checked whole against its name and, where
    /// it is given, its size; `None` where there is none, or one that
    /// fails, which is then discarded.
    pub fn get(&self, digest: &str, size: Option<u64>) -> Option<File> {
        let hex = hex(digest)?;
        let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
        let fd = match openat(&self.blobs, hex, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => return None,
            Err(Errno::ELOOP) => {
                self.discard(hex, "is a symbolic link");
                return None;
            }
            Err(e) => {
                self.discard(hex, &format!("cannot be opened ({})", e.desc()));
                return None;
            }
        };
        let st = fstat(&fd).ok()?;
        if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFREG {
            self.discard(hex, "is not a regular file");
            return None;
        }
        let len = u64::try_from(st.st_size).unwrap_or(0);
        if size.is_some_and(|s| s != len) {
            self.discard(hex, &format!("has {len} bytes where its descriptor says {}", size.unwrap_or(0)));
            return None;
        }
        let mut file = File::from(fd);
        match hash_file(&mut file) {
            Ok(got) if got == hex => Some(file),
            Ok(_) => {
                self.discard(hex, "does not match its digest");
                None
            }
            Err(e) => {
                self.discard(hex, &format!("cannot be read ({e})"));
                None
            }
        }
    }

    /// A small cached blob (a manifest, an index, a config), whole.
    pub fn get_bytes(&self, digest: &str, max: u64) -> Option<Vec<u8>> {
        let file = self.get(digest, None)?;
        let mut bytes = Vec::new();
        file.take(max + 1).read_to_end(&mut bytes).ok()?;
        (bytes.len() as u64 <= max).then_some(bytes)
    }

    /// Stores `bytes`, which the caller checked hash to `digest`.
    pub fn put(self: &Arc<Self>, digest: &str, bytes: &[u8]) {
        if let Some(mut writer) = self.writer(digest, "a manifest") {
            writer.write(bytes);
            writer.commit();
        }
    }

    /// Held while blob `digest` is fetched: waits while another create
    /// fetches it.
    pub fn lock(&self, digest: &str) -> Result<Flock<File>, Error> {
        let hex = hex(digest).ok_or_else(|| Error::msg(format!("{digest:?} is not a sha256 digest")))?;
        let path = || self.dir.join("locks").join(hex);
        let fd = openat(
            &self.locks,
            hex,
            OFlag::O_RDWR | OFlag::O_CREAT | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::S_IRUSR | Mode::S_IWUSR,
        )
        .map_err(|e| Error::sys(format!("open the lock {}", path().display()), e))?;
        Flock::lock(File::from(fd), FlockArg::LockExclusive)
            .map_err(|(_, e)| Error::sys(format!("lock {}", path().display()), e))
    }

    /// A temporary file for blob `digest` (`what` in notes), renamed into
    /// the cache by [`Writer::commit`]; `None`, with a note, where the
    /// cache cannot take it.
    pub fn writer(self: &Arc<Self>, digest: &str, what: &str) -> Option<Writer> {
        let hex = hex(digest)?.to_owned();
        let (name, file) = match self.temp(&hex) {
            Ok(made) => made,
            Err(e) => {
                eprintln!(
                    "distrorun: the blob cache in {} cannot take {what}: {}",
                    self.dir.display(),
                    e.desc()
                );
                return None;
            }
        };
        // A live temporary file is locked; `--cache-prune` removes the rest.
        let file = Flock::lock(file, FlockArg::LockExclusiveNonblock).ok()?;
        Some(Writer { cache: self.clone(), file, name, hex, what: what.to_owned(), failed: false })
    }

    /// The digest `key` (a reference and platform) last resolved to.
    pub fn get_ref(&self, key: &str) -> Option<String> {
        let fd = openat(
            &self.refs,
            sha256_hex(key.as_bytes()).as_str(),
            OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .ok()?;
        let mut text = String::new();
        File::from(fd).take(4096).read_to_string(&mut text).ok()?;
        let (stored, digest) = text.trim_end().split_once('\n')?;
        (stored == key && hex(digest).is_some()).then(|| digest.to_owned())
    }

    /// A new temporary file for `name`, and its name in `tmp/`.
    fn temp(&self, name: &str) -> Result<(String, File), Errno> {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let temp = format!("{name}.{}.{nanos}", std::process::id());
        let flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let fd = openat(&self.tmp, temp.as_str(), flags, Mode::S_IRUSR | Mode::S_IWUSR)?;
        Ok((temp, File::from(fd)))
    }

    /// Records what `key` resolved to.
    pub fn set_ref(&self, key: &str, digest: &str) {
        let name = sha256_hex(key.as_bytes());
        let Ok((temp, mut file)) = self.temp(&name) else { return };
        let written = file.write_all(format!("{key}\n{digest}\n").as_bytes()).and_then(|()| {
            renameat(&self.tmp, temp.as_str(), &self.refs, name.as_str()).map_err(io::Error::from)
        });
        if written.is_err() {
            let _ = unlinkat(&self.tmp, temp.as_str(), UnlinkatFlags::NoRemoveDir);
        }
    }

    /// The names in one of the cache's directories.
    fn names(fd: &OwnedFd) -> Vec<String> {
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
        let Ok(dir) = nix::dir::Dir::openat(fd, ".", flags, Mode::empty()) else { return Vec::new() };
        dir.into_iter()
            .flatten()
            .filter_map(|e| e.file_name().to_str().ok().map(str::to_owned))
            .filter(|n| !n.starts_with('.'))
            .collect()
    }

    /// Every blob: its digest and size.
    pub fn blobs(&self) -> Vec<(String, u64)> {
        let mut out: Vec<(String, u64)> = Cache::names(&self.blobs)
            .into_iter()
            .filter_map(|name| {
                let digest = format!("sha256:{name}");
                hex(&digest)?;
                let st = nix::sys::stat::fstatat(
                    &self.blobs,
                    name.as_str(),
                    nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
                )
                .ok()?;
                Some((digest, u64::try_from(st.st_size).unwrap_or(0)))
            })
            .collect();
        out.sort();
        out
    }

    /// Removes blob `digest`.
    pub fn remove(&self, digest: &str) -> Result<(), Error> {
        let Some(hex) = hex(digest) else { return Ok(()) };
        match unlinkat(&self.blobs, hex, UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => Ok(()),
            Err(e) => Err(Error::sys(format!("remove {}", self.dir.join("sha256").join(hex).display()), e)),
        }
    }

    /// Removes the temporary files no create is writing, and, with `refs`,
    /// every reference; returns the bytes freed.
    pub fn remove_stale(&self, refs: bool) -> u64 {
        let mut freed = 0;
        for (fd, all) in [(&self.tmp, true), (&self.refs, refs)] {
            if !all {
                continue;
            }
            for name in Cache::names(fd) {
                let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
                let Ok(file) = openat(fd, name.as_str(), flags, Mode::empty()) else { continue };
                let size = fstat(&file).map_or(0, |st| u64::try_from(st.st_size).unwrap_or(0));
                // A temporary file a create still writes is locked.
                let idle = Flock::lock(File::from(file), FlockArg::LockExclusiveNonblock).is_ok();
                if idle && unlinkat(fd, name.as_str(), UnlinkatFlags::NoRemoveDir).is_ok() {
                    freed += size;
                }
            }
        }
        freed
    }
}

fn hash_file(file: &mut File) -> io::Result<String> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => hasher.update(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    file.rewind()?;
    Ok(format!("{:x}", hasher.finalize()))
}

/// A blob on its way into the cache. A write that fails (a full disk)
/// drops it, with a note, and the create goes on without caching it.
pub struct Writer {
    cache: Arc<Cache>,
    file: Flock<File>,
    name: String,
    hex: String,
    what: String,
    failed: bool,
}

impl Writer {
    pub fn write(&mut self, bytes: &[u8]) {
        if self.failed {
            return;
        }
        if let Err(e) = self.file.write_all(bytes) {
            self.failed = true;
            let _ = unlinkat(&self.cache.tmp, self.name.as_str(), UnlinkatFlags::NoRemoveDir);
            eprintln!(
                "distrorun: the blob cache in {} cannot take {}: {e}; the create goes on without caching it",
                self.cache.dir.display(),
                self.what
            );
        }
    }

    /// Moves the blob, whose digest its reader checked, into the cache.
    pub fn commit(mut self) {
        if self.failed {
            return;
        }
        self.failed = true;
        if renameat(&self.cache.tmp, self.name.as_str(), &self.cache.blobs, self.hex.as_str()).is_err() {
            let _ = unlinkat(&self.cache.tmp, self.name.as_str(), UnlinkatFlags::NoRemoveDir);
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        if !self.failed {
            let _ = unlinkat(&self.cache.tmp, self.name.as_str(), UnlinkatFlags::NoRemoveDir);
        }
    }
}
