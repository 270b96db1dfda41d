//! The raw system calls that neither std nor nix wraps, and the few places
//! that must touch process-global C state. This is the only module in
//! distrorun with `unsafe`; every block says why it is sound.

use std::ffi::{CStr, CString};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use std::sync::atomic::{AtomicU8, Ordering};

use nix::errno::Errno;
use nix::sys::signal::{signal, SigHandler, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::ForkResult;

// From <linux/mount.h> and <linux/fcntl.h>; fixed kernel ABI.
pub const OPEN_TREE_CLONE: libc::c_uint = 1;
pub const OPEN_TREE_CLOEXEC: libc::c_uint = libc::O_CLOEXEC as libc::c_uint;
pub const AT_RECURSIVE: libc::c_uint = 0x8000;
pub const AT_EMPTY_PATH: libc::c_uint = 0x1000;
pub const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x04;
pub const MOVE_MOUNT_T_EMPTY_PATH: libc::c_uint = 0x40;
pub const MOUNT_ATTR_RDONLY: u64 = 0x01;
pub const MOUNT_ATTR_NOSUID: u64 = 0x02;
pub const MOUNT_ATTR_NODEV: u64 = 0x04;
pub const MOUNT_ATTR_NOEXEC: u64 = 0x08;

/// `struct mount_attr` (MOUNT_ATTR_SIZE_VER0).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

fn check(ret: libc::c_long) -> Result<libc::c_long, Errno> {
    if ret < 0 {
        Err(Errno::last())
    } else {
        Ok(ret)
    }
}

/// `open_tree(dirfd, "", flags | AT_EMPTY_PATH)`: a detached copy of the
/// mount tree at the object `dirfd` already refers to.
pub fn open_tree(dirfd: BorrowedFd, flags: libc::c_uint) -> Result<OwnedFd, Errno> {
    let empty = c"";
    // SAFETY: `empty` is a valid NUL-terminated string that outlives the
    // call; `dirfd` is a live descriptor borrowed for its duration.
    let ret = check(unsafe {
        libc::syscall(libc::SYS_open_tree, dirfd.as_raw_fd(), empty.as_ptr(), flags | AT_EMPTY_PATH)
    })?;
    // SAFETY: on success open_tree returns a new descriptor that nothing else
    // owns, so taking ownership of it here is the only owner.
    Ok(unsafe { OwnedFd::from_raw_fd(ret as RawFd) })
}

/// `mount_setattr(fd, "", AT_EMPTY_PATH | AT_RECURSIVE, {set, 0})`: adds
/// attributes to a whole mount tree in one call, whatever its size.
pub fn mount_setattr_recursive(fd: BorrowedFd, attr_set: u64) -> Result<(), Errno> {
    let attr = MountAttr { attr_set, attr_clr: 0, propagation: 0, userns_fd: 0 };
    let empty = c"";
    // SAFETY: `attr` is a properly laid out mount_attr and its size is passed
    // alongside it; `empty` and `fd` outlive the call.
    check(unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            empty.as_ptr(),
            AT_EMPTY_PATH | AT_RECURSIVE,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    })?;
    Ok(())
}

/// `move_mount(from, "", to, "", F_EMPTY_PATH | T_EMPTY_PATH)`: attaches the
/// detached tree `from` on the object `to` refers to. Both ends are
/// descriptors, so no path is looked up again between check and use.
pub fn move_mount(from: BorrowedFd, to: BorrowedFd) -> Result<(), Errno> {
    let empty = c"";
    // SAFETY: both descriptors are live for the call; the paths are valid
    // NUL-terminated empty strings.
    check(unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            from.as_raw_fd(),
            empty.as_ptr(),
            to.as_raw_fd(),
            empty.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH,
        )
    })?;
    Ok(())
}

/// The process's environment exactly as it is, entries without `=` included
/// (std's `vars_os` drops those, and the environment must pass unchanged).
pub fn current_environ() -> Vec<CString> {
    let mut out = Vec::new();
    // SAFETY: distrorun is single-threaded and nothing in it modifies the
    // environment, so `environ` is a stable NULL-terminated array of valid
    // C strings for the duration of this loop; each is copied out.
    unsafe {
        let mut p = environ_ptr();
        while !p.is_null() && !(*p).is_null() {
            out.push(CStr::from_ptr(*p).to_owned());
            p = p.add(1);
        }
    }
    out
}

extern "C" {
    #[link_name = "environ"]
    static C_ENVIRON: *const *const libc::c_char;
}

/// Reads the C global through a function so the `unsafe` stays here.
unsafe fn environ_ptr() -> *const *const libc::c_char {
    // SAFETY: reading a pointer-sized global that libc initialises before
    // main; see `current_environ()` for why it is stable.
    unsafe { C_ENVIRON }
}

/// Empties the process's own environment. The setuid helper acts on no
/// variable, and after this neither can any library it calls (NSS modules
/// among them), whatever a hostile caller put there.
pub fn clear_own_environment() {
    // SAFETY: the helper is single-threaded and holds no reference into the
    // environment; clearenv only resets libc's `environ` array.
    unsafe { libc::clearenv() };
}

/// The process's supplementary groups. nix's `getgroups` sizes its buffer
/// from /proc/sys/kernel/ngroups_max, a file read on every launch; asking
/// the kernel for the count first costs one cheap system call instead.
pub fn supplementary_groups() -> Result<Vec<nix::unistd::Gid>, Errno> {
    // SAFETY: with a size of 0, getgroups only returns the count and writes
    // nothing through the null pointer.
    let count = unsafe { libc::getgroups(0, std::ptr::null_mut()) };
    if count < 0 {
        return Err(Errno::last());
    }
    let mut gids: Vec<libc::gid_t> = vec![0; count as usize];
    // SAFETY: `gids` has room for exactly `count` entries, the size passed;
    // the process is single-threaded, so its groups cannot grow in between.
    let got = unsafe { libc::getgroups(count, gids.as_mut_ptr()) };
    if got < 0 {
        return Err(Errno::last());
    }
    gids.truncate(got as usize);
    Ok(gids.into_iter().map(nix::unistd::Gid::from_raw).collect())
}

/// True when `fd` is an open descriptor of this process.
pub fn fd_is_open(fd: RawFd) -> bool {
    // SAFETY: F_GETFD only queries the descriptor table; an invalid number
    // yields EBADF and no other effect.
    unsafe { libc::fcntl(fd, libc::F_GETFD) >= 0 }
}

/// Takes ownership of an inherited descriptor given by number.
pub fn adopt_fd(fd: RawFd) -> Result<OwnedFd, Errno> {
    if fd < 0 || !fd_is_open(fd) {
        return Err(Errno::EBADF);
    }
    // SAFETY: the descriptor is open (checked just above, and the process is
    // single-threaded so it cannot be closed in between) and no other object
    // in this process owns it: it was inherited across exec and is named only
    // by the command line.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Runs `probe` in a forked child and reports whether it returned true.
/// Used to try a step that cannot be undone in this process.
pub fn in_child(probe: impl FnOnce() -> bool) -> Result<bool, Errno> {
    // SAFETY: distrorun is single-threaded, so the child is a faithful copy
    // with no lock held by another thread; the child only makes system calls
    // and leaves with `_exit`, never returning into the caller's code or
    // running its destructors.
    match unsafe { nix::unistd::fork() }? {
        ForkResult::Child => {
            let ok = probe();
            // SAFETY: `_exit` ends the child at once, which is what a forked
            // child of a Rust program must do.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) }
        }
        ForkResult::Parent { child } => loop {
            match waitpid(child, None) {
                Ok(WaitStatus::Exited(_, code)) => return Ok(code == 0),
                Ok(WaitStatus::Signaled(..)) => return Ok(false),
                Ok(_) | Err(Errno::EINTR) => continue,
                Err(e) => return Err(e),
            }
        },
    }
}

/// SIGPIPE's disposition as the process was started with it, recorded by
/// [`RECORD_SIGPIPE`] before Rust's runtime sets it to "ignore". An ignored
/// signal stays ignored across execve, so without restoring it the command
/// would get EPIPE where it expects to die quietly (`yes | head`).
static SIGPIPE_AT_START: AtomicU8 = AtomicU8::new(SIGPIPE_UNKNOWN);
const SIGPIPE_DEFAULT: u8 = 0;
const SIGPIPE_IGNORED: u8 = 1;
const SIGPIPE_UNKNOWN: u8 = 2;

/// Runs from `.init_array`, which the C runtime calls before Rust's `main`.
#[used]
#[link_section = ".init_array"]
static RECORD_SIGPIPE: extern "C" fn() = record_sigpipe;

extern "C" fn record_sigpipe() {
    // SAFETY: an all-zero sigaction is a valid value to be overwritten, and
    // sigaction with a null new action only reads the current disposition.
    let ignored = unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        if libc::sigaction(libc::SIGPIPE, std::ptr::null(), &mut old) != 0 {
            return;
        }
        old.sa_sigaction == libc::SIG_IGN
    };
    SIGPIPE_AT_START.store(if ignored { SIGPIPE_IGNORED } else { SIGPIPE_DEFAULT }, Ordering::Relaxed);
}

/// Puts SIGPIPE back as the caller had it; called right before every exec.
pub fn restore_sigpipe() -> Result<(), Errno> {
    let handler = match SIGPIPE_AT_START.load(Ordering::Relaxed) {
        SIGPIPE_IGNORED => SigHandler::SigIgn,
        _ => SigHandler::SigDfl,
    };
    // SAFETY: installing SIG_IGN or SIG_DFL runs no code of ours in signal
    // context, which is what makes `signal` unsafe in general.
    unsafe { signal(Signal::SIGPIPE, handler) }.map(drop)
}
