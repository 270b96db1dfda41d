//! Compressed image archives: an `oci-archive` or a `docker save` file
//! that gzip, xz or zstd compressed. Their members are read in the order
//! the manifest names them, which a compressed stream cannot seek to, so
//! the archive is decompressed once, as it is read, into an unnamed
//! temporary file (`O_TMPFILE`, gone when distrorun exits however it
//! exits), and read from there like an uncompressed one.
//!
//! A small archive can expand without end (zeros compress a million to
//! one), and the temporary directory is shared with every user and
//! service. So the copy is bounded, before a byte is written, by
//! `--max-size` (the tree it is unpacked to may be no larger) and by the
//! room in the temporary directory less a tenth of its file system, which
//! it leaves to everyone else.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use distrorun_engine::Error;
use nix::fcntl::{open, OFlag};
use nix::sys::stat::Mode;

use super::tarball;
use crate::tree::limits::human_bytes;

/// Where the decompressed copy goes: `$TMPDIR`, else /var/tmp, which is
/// meant for large files and usually not in memory as /tmp may be.
fn temp_dir() -> PathBuf {
    std::env::var_os("TMPDIR")
        .map(PathBuf::from)
        .filter(|d| d.is_absolute())
        .unwrap_or_else(|| "/var/tmp".into())
}

/// What the copy may take of the file system `fd` is on: what is free to
/// the caller, less a tenth of the file system.
fn room(fd: impl AsFd, dir: &Path) -> Result<(u64, u64), Error> {
    let st = nix::sys::statvfs::fstatvfs(fd)
        .map_err(|e| Error::sys(format!("examine the file system of {}", dir.display()), e))?;
    let block = st.fragment_size();
    let free = st.blocks_available().saturating_mul(block);
    let reserve = st.blocks().saturating_mul(block) / 10;
    Ok((free.saturating_sub(reserve), free))
}

/// `file`, decompressed into an unnamed temporary file of at most
/// `max_bytes`.
pub fn decompressed_copy(file: File, what: &str, max_bytes: u64) -> Result<File, Error> {
    let dir = temp_dir();
    let fd = open(&dir, OFlag::O_TMPFILE | OFlag::O_RDWR | OFlag::O_CLOEXEC, Mode::from_bits_truncate(0o600))
        .map_err(|e| {
            Error::sys(format!("create a temporary file in {} to decompress {what} into", dir.display()), e)
        })?;
    let (room, free) = room(&fd, &dir)?;
    let mut copy = File::from(fd);
    let (stream, _) = tarball::decompressed(file, what)?;
    let bound = max_bytes.min(room);
    let copied = copy_upto(stream, &mut copy, bound)
        .map_err(|e| crate::error::io(format!("decompress {what} into {}", dir.display()), &e))?;
    if copied > bound {
        return Err(if bound == max_bytes {
            Error::msg(format!("{what} decompresses to more than --max-size {}", human_bytes(max_bytes)))
        } else {
            Error::msg(format!(
                "{what} decompresses to more than the {} distrorun may use in {} ({} free, of which a tenth of the file system is left to others); set TMPDIR to a directory with more room",
                human_bytes(room),
                dir.display(),
                human_bytes(free)
            ))
        });
    }
    // Indexed from its start, as an uncompressed archive is.
    std::io::Seek::rewind(&mut copy)
        .map_err(|e| crate::error::io(format!("read back the decompressed {what}"), &e))?;
    Ok(copy)
}

/// Copies at most `bound + 1` bytes, so that the caller sees a stream
/// that runs over without its whole being written.
fn copy_upto(stream: impl Read, to: &mut impl Write, bound: u64) -> std::io::Result<u64> {
    std::io::copy(&mut stream.take(bound.saturating_add(1)), to)
}

#[cfg(test)]
mod tests {
    use super::copy_upto;

    #[test]
    fn the_copy_stops_one_byte_past_its_bound() {
        let mut out = Vec::new();
        assert_eq!(copy_upto(std::io::repeat(0), &mut out, 1000).unwrap(), 1001);
        assert_eq!(out.len(), 1001);
        let mut out = Vec::new();
        assert_eq!(copy_upto(&b"abc"[..], &mut out, 1000).unwrap(), 3);
    }
}
