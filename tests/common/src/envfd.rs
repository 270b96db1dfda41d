//! The descriptor on which the setuid helper takes the caller's environment.
//!
//! The test scripts receive it as their stdin and move it to fd 3 before
//! they start the helper, which refuses to take its environment from a
//! standard stream.

use std::fs::File;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::Path;

use nix::fcntl::{fcntl, FcntlArg, SealFlag};
use nix::sys::memfd::{memfd_create, MFdFlags};

use crate::{timed, Output, Run, TempDir, RUN_TIMEOUT, TEST_ROOT};

/// What a test hands the helper as its environment.
#[derive(Debug)]
pub struct EnvFd {
    bytes: Vec<u8>,
    file: Option<(TempDir, std::path::PathBuf)>,
}

impl EnvFd {
    /// A sealed memfd holding `bytes`, made exactly as `distrorun` makes it
    /// for the helper: the only kind the helper is meant to accept.
    pub fn sealed_memfd(bytes: &[u8]) -> EnvFd {
        EnvFd { bytes: bytes.to_vec(), file: None }
    }

    /// A regular root-owned file (mode 0644) holding `bytes`, for tests about
    /// what the helper does with a descriptor `distrorun` never hands it.
    pub fn regular_file(bytes: &[u8]) -> EnvFd {
        let dir = TempDir::new_in(TEST_ROOT, "envfile");
        let path = dir.file("env", bytes, 0o644, 0);
        EnvFd { bytes: bytes.to_vec(), file: Some((dir, path)) }
    }

    /// The regular file's path; None for a memfd.
    pub fn path(&self) -> Option<&Path> {
        self.file.as_ref().map(|(_, p)| p.as_path())
    }

    /// A new descriptor, read from its start, for one run: a fresh memfd
    /// (reads through one share the offset), or a fresh open of the file.
    /// Close-on-exec, so that only the child it is handed to receives it.
    pub fn open(&self) -> OwnedFd {
        if let Some((_, path)) = &self.file {
            let file = File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
            return file.into();
        }
        let fd = memfd_create(c"distrorun-environ", MFdFlags::MFD_ALLOW_SEALING | MFdFlags::MFD_CLOEXEC)
            .expect("memfd_create");
        let mut file = File::from(fd);
        file.write_all(&self.bytes).expect("writing the environment into the memfd");
        let seals =
            SealFlag::F_SEAL_SEAL | SealFlag::F_SEAL_WRITE | SealFlag::F_SEAL_GROW | SealFlag::F_SEAL_SHRINK;
        fcntl(&file, FcntlArg::F_ADD_SEALS(seals)).expect("sealing the memfd");
        file.into()
    }
}

/// Runs `run` with `env` in a sealed memfd on its stdin, as `distrorun`
/// would hand it over; `run` moves it to the descriptor the helper is told.
pub fn with_env_on_stdin(run: &Run, env: &[u8]) -> Output {
    with_env_fd_on_stdin(run, &EnvFd::sealed_memfd(env))
}

/// Runs `run` with a fresh descriptor from `env` on its stdin.
pub fn with_env_fd_on_stdin(run: &Run, env: &EnvFd) -> Output {
    let mut cmd = run.command();
    cmd.stdin(env.open());
    timed(cmd, RUN_TIMEOUT)
}
