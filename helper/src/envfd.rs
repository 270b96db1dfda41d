//! The caller's environment, from the descriptor `distrorun` hands over.
//!
//! glibc deletes `LD_LIBRARY_PATH`, `TMPDIR`, `GCONV_PATH`, `MALLOC_*` and more from
//! the environment of every setuid program, so an inherited environment
//! would not reach the command intact. `distrorun` writes its environment
//! into a sealed memfd instead (the format is in
//! [`distrorun_config::handoff`]), and the helper execs the command with
//! exactly those bytes. argv would show it to every user in /proc/PID/cmdline.
//!
//! The descriptor is the caller's, so it is treated as hostile: it is
//! opened anew as the caller, with no capability in effect (see
//! [`crate::privs`]), and only the sealed memfd that `distrorun` makes is
//! read. A file in procfs or sysfs that answers differently to a reader
//! with capabilities, a pipe that never ends, a file the caller cannot
//! read: all are refused before a byte is read.

use std::ffi::CString;
use std::io::Read;
use std::os::fd::RawFd;
use std::os::unix::fs::OpenOptionsExt;

use distrorun_config::errno_of;
use distrorun_config::handoff::{self, MAX_ENVIRONMENT_BYTES};
use distrorun_engine::Error;
use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag, SealFlag};

/// Reads the environment from the inherited descriptor `fd`, then closes
/// `fd` so that the command does not inherit it.
pub fn read(fd: RawFd) -> Result<Vec<CString>, Error> {
    if (0..=2).contains(&fd) {
        // Taking over stdin, stdout or stderr would close them for the command.
        return Err(Error::msg(format!("descriptor {fd} is a standard stream, not an environment")));
    }
    let bytes = read_sealed(fd)?;
    // The copy opened above is closed already; this is the inherited one.
    nix::unistd::close(fd).map_err(|e| Error::sys(format!("close descriptor {fd}"), e))?;
    handoff::decode_environment(&bytes).map_err(Error::from)
}

fn read_sealed(fd: RawFd) -> Result<Vec<u8>, Error> {
    let fail = |e: Errno| Error::sys(format!("read the environment from descriptor {fd}"), e);
    let refuse = || Error::msg(format!("descriptor {fd} is not the sealed memfd that distrorun passes"));
    let link = format!("/proc/self/fd/{fd}");
    // Only the type, through the link, before any open: opening a FIFO or a
    // device can block or act.
    let meta = std::fs::metadata(&link).map_err(|e| fail(errno_of(&e)))?;
    if !meta.file_type().is_file() {
        return Err(refuse());
    }
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags((OFlag::O_NONBLOCK | OFlag::O_NOCTTY).bits())
        .open(&link)
        .map_err(|e| fail(errno_of(&e)))?;
    // A file that is not a memfd (or tmpfs file) cannot hold seals at all.
    let seals = match fcntl(&file, FcntlArg::F_GET_SEALS) {
        Ok(bits) => SealFlag::from_bits_truncate(bits),
        Err(Errno::EINVAL) => return Err(refuse()),
        Err(e) => return Err(fail(e)),
    };
    if !seals.contains(handoff::environment_seals()) {
        return Err(refuse());
    }
    let size = file.metadata().map_err(|e| fail(errno_of(&e)))?.len();
    if size > u64::try_from(MAX_ENVIRONMENT_BYTES).unwrap_or(u64::MAX) {
        return Err(Error::msg(format!("the environment on descriptor {fd} is larger than 16 MiB")));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    // Sealed against growing, but read no more than the size checked.
    (&mut file).take(size).read_to_end(&mut bytes).map_err(|e| fail(errno_of(&e)))?;
    Ok(bytes)
}
