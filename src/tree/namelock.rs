//! The per-name lock that `--create` and `--remove` hold for their whole
//! run: an exclusive `flock` on `.NAME.lock` in the directory the tree goes
//! in. The kernel releases it when the process ends, however it ends, so a
//! killed create leaves a leftover that the next run of the name may reap,
//! and never a lock that outlives its holder. Leftovers are only ever
//! reaped while the lock is held, so one run never deletes what another is
//! still writing.
//!
//! The lock file is removed by the run that holds it, when it ends. A run
//! that opened the file just before, and then gets the lock on the removed
//! file, sees that the file is no longer the one at the path and tries
//! again, so two runs never both hold the lock of a name.

use std::os::fd::OwnedFd;
use std::path::Path;

use distrorun_engine::Error;
use nix::errno::Errno;
use nix::fcntl::{openat, AtFlags, Flock, FlockArg, OFlag};
use nix::sys::stat::{fstat, fstatat, Mode, SFlag};
use nix::unistd::{unlinkat, UnlinkatFlags};

/// Held while alive; dropped, it removes its file and is released. A
/// killed holder's lock is released by the kernel, and its file reused.
pub struct NameLock {
    lock: Option<Flock<OwnedFd>>,
    dir: OwnedFd,
    file: String,
}

impl Drop for NameLock {
    fn drop(&mut self) {
        // Removed while still held, so that no other run can be holding it.
        let _ = unlinkat(&self.dir, self.file.as_str(), UnlinkatFlags::NoRemoveDir);
        drop(self.lock.take());
    }
}

/// The lock file's name for distro `name`.
pub fn lock_name(name: &str) -> String {
    format!(".{name}.lock")
}

impl NameLock {
    /// Takes the lock of `name` in `dir_fd` (the directory `dir`), or fails
    /// at once if another run holds it: waiting would only make the second
    /// run fail later, on a name the first one has taken.
    pub fn acquire(dir_fd: &OwnedFd, dir: &Path, name: &str, doing: &str) -> Result<NameLock, Error> {
        let file = lock_name(name);
        let shown = dir.join(&file);
        // A file removed by the holder we waited behind is retried; that
        // happens once per holder at most.
        for _ in 0..100 {
            let fd = openat(
                dir_fd,
                file.as_str(),
                OFlag::O_RDWR | OFlag::O_CREAT | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
                Mode::S_IRUSR | Mode::S_IWUSR,
            )
            .map_err(|e| Error::sys(format!("open the lock file {}", shown.display()), e))?;
            let st = fstat(&fd)
                .map_err(|e| Error::sys(format!("examine the lock file {}", shown.display()), e))?;
            if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFREG {
                return Err(Error::msg(format!("the lock file {} is not a regular file", shown.display())));
            }
            let lock = match Flock::lock(fd, FlockArg::LockExclusiveNonblock) {
                Ok(lock) => lock,
                Err((_, Errno::EWOULDBLOCK)) => {
                    return Err(Error::msg(format!(
                        "cannot {doing} distro {name}: another distrorun is creating or removing it right now (it holds {})",
                        shown.display()
                    ))
                    .with_hint("wait for it to finish, then try again"))
                }
                Err((_, e)) => return Err(Error::sys(format!("lock {}", shown.display()), e)),
            };
            let same = fstatat(dir_fd, file.as_str(), AtFlags::AT_SYMLINK_NOFOLLOW)
                .is_ok_and(|now| (now.st_dev, now.st_ino) == (st.st_dev, st.st_ino));
            if same {
                let dir = nix::unistd::dup(dir_fd).map_err(|e| Error::sys("duplicate a descriptor", e))?;
                return Ok(NameLock { lock: Some(lock), dir, file });
            }
        }
        Err(Error::msg(format!("cannot lock {}: it keeps being replaced", shown.display())))
    }
}
