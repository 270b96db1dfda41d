//! Hands the caller's environment to the setuid helper through a descriptor.
//!
//! glibc deletes LD_LIBRARY_PATH, TMPDIR, GCONV_PATH, MALLOC_* and more from
//! the environment of every setuid program, so an inherited environment
//! would not reach the command intact. `distrorun` writes its environment
//! into a sealed memfd instead, and the helper execs the command with
//! exactly those bytes. Passing it in argv instead would show it to every
//! user in /proc/PID/cmdline.

use std::ffi::CString;
use std::os::fd::{AsFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, SealFlag};
use nix::sys::memfd::{memfd_create, MFdFlags};
use nix::sys::stat::{fstat, SFlag};
use nix::sys::uio::pread;
use nix::unistd::write;

use crate::{sys, Error};

/// The largest environment the helper accepts. The kernel itself limits
/// argv plus environment to a quarter of the stack limit.
pub const MAX_BYTES: usize = 16 << 20;

/// A sealed memfd holding `vars` as NUL-terminated entries, as in
/// /proc/PID/environ. It is not close-on-exec: the helper inherits it.
pub fn to_memfd(vars: &[CString]) -> Result<OwnedFd, Error> {
    let fail = |e| Error::sys("pass the environment to the setuid helper", e);
    let mut bytes = Vec::with_capacity(vars.iter().map(|v| v.as_bytes().len() + 1).sum());
    for v in vars {
        bytes.extend_from_slice(v.as_bytes_with_nul());
    }
    let fd = memfd_create(c"distrorun-environ", MFdFlags::MFD_ALLOW_SEALING).map_err(fail)?;
    let mut rest = &bytes[..];
    while !rest.is_empty() {
        match write(&fd, rest) {
            Ok(n) => rest = &rest[n..],
            Err(Errno::EINTR) => {}
            Err(e) => return Err(fail(e)),
        }
    }
    let seals =
        SealFlag::F_SEAL_SEAL | SealFlag::F_SEAL_WRITE | SealFlag::F_SEAL_GROW | SealFlag::F_SEAL_SHRINK;
    fcntl(&fd, FcntlArg::F_ADD_SEALS(seals)).map_err(fail)?;
    Ok(fd)
}

/// Reads the environment from the inherited descriptor `fd` and closes it.
/// It must be a regular file or memfd (never a pipe or socket, which could
/// block) of at most [`MAX_BYTES`], and hold only complete entries.
pub fn read(fd: RawFd) -> Result<Vec<CString>, Error> {
    let fail = |e| Error::sys(format!("read the environment from descriptor {fd}"), e);
    if (0..=2).contains(&fd) {
        // Taking over stdin, stdout or stderr would close them for the command.
        return Err(Error::msg(format!("descriptor {fd} is a standard stream, not an environment")));
    }
    let fd = sys::adopt_fd(fd).map_err(fail)?;
    let st = fstat(fd.as_fd()).map_err(fail)?;
    if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFREG {
        return Err(Error::msg(format!("descriptor {} is not a regular file or memfd", fd_number(&fd))));
    }
    if st.st_size < 0 || st.st_size as u64 > MAX_BYTES as u64 {
        return Err(Error::msg(format!(
            "the environment on descriptor {} is larger than 16 MiB",
            fd_number(&fd)
        )));
    }
    let mut bytes = vec![0; st.st_size as usize];
    let mut done = 0;
    while done < bytes.len() {
        match pread(fd.as_fd(), &mut bytes[done..], done as i64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(Errno::EINTR) => {}
            Err(e) => return Err(fail(e)),
        }
    }
    bytes.truncate(done);
    parse(&bytes)
}

fn fd_number(fd: &OwnedFd) -> RawFd {
    std::os::fd::AsRawFd::as_raw_fd(fd)
}

/// Splits NUL-terminated entries; a missing final NUL means the data was
/// cut short, and is refused rather than guessed at.
pub fn parse(bytes: &[u8]) -> Result<Vec<CString>, Error> {
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    let Some(body) = bytes.strip_suffix(b"\0") else {
        return Err(Error::msg("the environment passed to the helper does not end with a NUL byte"));
    };
    body.split(|&b| b == 0)
        .map(|entry| {
            CString::new(entry).map_err(|_| Error::msg("the environment holds a NUL byte inside an entry"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn environment_survives_the_round_trip_byte_for_byte() {
        let vars = vec![
            CString::new("LD_LIBRARY_PATH=/opt/lib").unwrap(),
            CString::new("NOEQUALS").unwrap(),
            CString::new(b"BIN=\xff\xfe\n".to_vec()).unwrap(),
            CString::new("EMPTY=").unwrap(),
        ];
        let fd = to_memfd(&vars).unwrap();
        let raw = nix::unistd::dup(&fd).unwrap();
        assert_eq!(read(raw.as_raw_fd()).unwrap(), vars);
        std::mem::forget(raw); // `read` closed it
    }

    #[test]
    fn the_memfd_is_sealed_against_changes() {
        let fd = to_memfd(&[CString::new("A=1").unwrap()]).unwrap();
        assert_eq!(write(&fd, b"B=2\0"), Err(Errno::EPERM));
    }

    #[test]
    fn truncated_or_missing_data_is_refused() {
        assert!(parse(b"A=1\0B=2").is_err());
        assert_eq!(parse(b"").unwrap(), Vec::<CString>::new());
        assert!(read(-1).is_err());
        assert!(read(1).is_err());
        assert!(read(1_000_000).is_err());
    }
}
