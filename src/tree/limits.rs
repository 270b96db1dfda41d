//! How much one `--create` may write: a total size and a number of entries,
//! so that a compression bomb (a few megabytes of gzip, xz or zstd that
//! unpack to terabytes) or an archive of millions of empty files is refused
//! with a message, not left to fill the disk or its inodes. Both are checked
//! against what each member's header declares, before the member is
//! written, and the declared size of each file against the free space of
//! the file system the tree is on.
//!
//! The defaults are far above any distribution's root file system (a full
//! Debian desktop is some 10 GiB in 300,000 entries); `--max-size` and
//! `--max-entries` raise or lower them.

use std::os::fd::OwnedFd;

use distrorun_engine::Error;

pub const DEFAULT_MAX_BYTES: u64 = 64 << 30;
pub const DEFAULT_MAX_ENTRIES: u64 = 500_000;

/// Files at least this large have the free space checked before they are
/// written; smaller ones are covered by the margin below.
const CHECK_FREE_FROM: u64 = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_bytes: u64,
    pub max_entries: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits { max_bytes: DEFAULT_MAX_BYTES, max_entries: DEFAULT_MAX_ENTRIES }
    }
}

/// What has been declared so far, against the limits.
#[derive(Debug, Default)]
pub struct Budget {
    pub limits: Limits,
    bytes: u64,
    entries: u64,
}

impl Budget {
    pub fn new(limits: Limits) -> Budget {
        Budget { limits, bytes: 0, entries: 0 }
    }

    /// The entries and declared bytes taken so far.
    pub fn taken(&self) -> (u64, u64) {
        (self.entries, self.bytes)
    }

    /// One more entry, of `size` declared bytes: refused past a limit.
    pub fn take(&mut self, size: u64, member: &str, what: &str) -> Result<(), Error> {
        self.entries += 1;
        if self.entries > self.limits.max_entries {
            return Err(Error::msg(format!(
                "{what} has more than {} entries, the limit for a new distro",
                self.limits.max_entries
            ))
            .with_hint("if the archive is what you meant, raise the limit with --max-entries N"));
        }
        self.bytes = self.bytes.saturating_add(size);
        if self.bytes > self.limits.max_bytes {
            return Err(Error::msg(format!(
                "{what} unpacks to more than {}, the limit for a new distro (at member {member}, which declares {})",
                human_bytes(self.limits.max_bytes),
                human_bytes(size)
            ))
            .with_hint("if the archive is what you meant, raise the limit with --max-size SIZE"));
        }
        Ok(())
    }
}

/// The free room of the file system a tree is on, as `statvfs` tells it.
#[derive(Debug, Clone, Copy)]
pub struct Room {
    pub bytes: u64,
    /// `None` where the file system has no fixed number of inodes (btrfs,
    /// for one, reports none).
    pub inodes: Option<u64>,
}

impl Room {
    pub fn of(tree: &OwnedFd) -> Result<Room, Error> {
        let st = nix::sys::statvfs::fstatvfs(tree)
            .map_err(|e| Error::sys("find the free space of the file system of the new tree", e))?;
        Ok(Room {
            bytes: st.blocks_available().saturating_mul(st.fragment_size()),
            inodes: (st.files() > 0).then(|| st.files_available()),
        })
    }

    /// `50000 free inodes and 1.2 GiB free`.
    pub fn describe(&self) -> String {
        match self.inodes {
            Some(n) => format!("{n} free inodes and {} free", human_bytes(self.bytes)),
            None => format!("{} free", human_bytes(self.bytes)),
        }
    }
}

/// Refuses a file of `size` bytes that the file system holding `tree`
/// has no room for.
pub fn check_free(tree: &OwnedFd, size: u64, member: &str, what: &str) -> Result<(), Error> {
    if size < CHECK_FREE_FROM {
        return Ok(());
    }
    let free = Room::of(tree)?.bytes;
    if size > free {
        return Err(Error::msg(format!(
            "{what}: member {member} declares {}, and the file system of the new tree has {} free",
            human_bytes(size),
            human_bytes(free)
        )));
    }
    Ok(())
}

/// `SIZE` as `--max-size` takes it: bytes, or with a K, M, G or T suffix
/// (powers of 1024, an optional `iB` or `B` after it).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let t = t.strip_suffix("iB").or_else(|| t.strip_suffix('B')).unwrap_or(t);
    let (digits, shift) = match t.char_indices().last() {
        Some((i, 'K' | 'k')) => (&t[..i], 10),
        Some((i, 'M' | 'm')) => (&t[..i], 20),
        Some((i, 'G' | 'g')) => (&t[..i], 30),
        Some((i, 'T' | 't')) => (&t[..i], 40),
        _ => (t, 0),
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(1u64 << shift))
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("{text:?} is not a size such as 500M or 100G"))
}

/// A size as people read it: `1.5 GiB`.
#[allow(clippy::cast_precision_loss)]
pub fn human_bytes(n: u64) -> String {
    const UNITS: &[&str] = &["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes_take_binary_suffixes() {
        assert_eq!(parse_size("100"), Ok(100));
        assert_eq!(parse_size("500M"), Ok(500 << 20));
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        assert_eq!(parse_size("1t"), Ok(1 << 40));
        assert!(parse_size("0").is_err());
        assert!(parse_size("lots").is_err());
        assert!(parse_size("99999999999T").is_err());
    }
}
