//! Compressed image archives: an `oci-archive` or a `docker save` file
//! that gzip, xz or zstd compressed. Their members are read in the order
//! the manifest names them, which a compressed stream cannot seek to, so
//! the archive is decompressed once, as it is read, into an unnamed
//! temporary file (`O_TMPFILE`, gone when distrorun exits however it
//! exits), and read from there like an uncompressed one.

use std::fs::File;
use std::path::PathBuf;

use distrorun_engine::Error;
use nix::fcntl::{open, OFlag};
use nix::sys::stat::Mode;

use super::tarball;

/// Where the decompressed copy goes: `$TMPDIR`, else /var/tmp, which is
/// meant for large files and usually not in memory as /tmp may be.
fn temp_dir() -> PathBuf {
    std::env::var_os("TMPDIR")
        .map(PathBuf::from)
        .filter(|d| d.is_absolute())
        .unwrap_or_else(|| "/var/tmp".into())
}

/// `file`, decompressed into an unnamed temporary file.
pub fn decompressed_copy(file: File, what: &str) -> Result<File, Error> {
    let dir = temp_dir();
    let fd = open(&dir, OFlag::O_TMPFILE | OFlag::O_RDWR | OFlag::O_CLOEXEC, Mode::from_bits_truncate(0o600))
        .map_err(|e| {
            Error::sys(format!("create a temporary file in {} to decompress {what} into", dir.display()), e)
        })?;
    let mut copy = File::from(fd);
    let (mut stream, _) = tarball::decompressed(file, what)?;
    std::io::copy(&mut stream, &mut copy)
        .map_err(|e| crate::error::io(format!("decompress {what} into {}", dir.display()), &e))?;
    // Indexed from its start, as an uncompressed archive is.
    std::io::Seek::rewind(&mut copy)
        .map_err(|e| crate::error::io(format!("read back the decompressed {what}"), &e))?;
    Ok(copy)
}
