//! The raw system calls that neither std nor nix wraps, and the few places
//! that must touch process-global C state. This is the only module in
//! distrorun with `unsafe`; every block says why it is sound, and every
//! function here is safe to call: where soundness depends on the state of
//! the process (a single thread), the function checks it itself.

#![allow(unsafe_code)]

use std::ffi::{CStr, CString};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use std::sync::atomic::{AtomicU8, Ordering};

use nix::errno::Errno;
use nix::sys::signal::{signal, SigHandler, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::ForkResult;

// From <linux/mount.h> and <linux/fcntl.h>; fixed kernel ABI.
pub const OPEN_TREE_CLONE: libc::c_uint = 1;
pub const OPEN_TREE_CLOEXEC: libc::c_uint = 0o2_000_000; // O_CLOEXEC
pub const AT_RECURSIVE: libc::c_uint = 0x8000;
pub const AT_EMPTY_PATH: libc::c_uint = 0x1000;
pub const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x04;
pub const MOVE_MOUNT_T_EMPTY_PATH: libc::c_uint = 0x40;
pub const MOUNT_ATTR_RDONLY: u64 = 0x01;
pub const MOUNT_ATTR_NOSUID: u64 = 0x02;
pub const MOUNT_ATTR_NODEV: u64 = 0x04;
pub const MOUNT_ATTR_NOEXEC: u64 = 0x08;

/// `struct mount_attr` (`MOUNT_ATTR_SIZE_VER0`).
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
    let fd = RawFd::try_from(ret).map_err(|_| Errno::EOVERFLOW)?;
    // SAFETY: on success open_tree returns a new descriptor that nothing else
    // owns, so taking ownership of it here is the only owner.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
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
            &raw const attr,
            std::mem::size_of::<MountAttr>(),
        )
    })?;
    Ok(())
}

/// Whether the kernel has `mount_setattr` (Linux 5.12): asked with a
/// descriptor that cannot be valid, so the call fails either way, with
/// `ENOSYS` only where it does not exist.
pub fn mount_setattr_exists() -> bool {
    // SAFETY: a null attribute pointer with size 0 is never dereferenced;
    // the kernel rejects the call before looking at anything but its
    // arguments.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            -1,
            std::ptr::null::<libc::c_char>(),
            0,
            std::ptr::null::<MountAttr>(),
            0,
        )
    };
    !(ret < 0 && Errno::last() == Errno::ENOSYS)
}

/// Whether the kernel has `openat2` (Linux 5.6), asked with a descriptor
/// that cannot be valid, for reports; lookups find out by their first call.
pub fn openat2_exists() -> bool {
    // SAFETY: with a size of 0 the kernel reads nothing through the null
    // pointers; the call fails either way.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            -1,
            std::ptr::null::<libc::c_char>(),
            std::ptr::null::<libc::c_void>(),
            0,
        )
    };
    !(ret < 0 && Errno::last() == Errno::ENOSYS)
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

// From <linux/mount.h>; fixed kernel ABI.
const FSOPEN_CLOEXEC: libc::c_uint = 1;
const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
const FSMOUNT_CLOEXEC: libc::c_uint = 1;

/// `fsopen(fs_type, FSOPEN_CLOEXEC)`: a file system context, to be
/// configured and then created with [`fsconfig_create`].
pub fn fsopen(fs_type: &CStr) -> Result<OwnedFd, Errno> {
    // SAFETY: `fs_type` is a valid NUL-terminated string that outlives the
    // call, and the flags are plain integers.
    let ret = check(unsafe { libc::syscall(libc::SYS_fsopen, fs_type.as_ptr(), FSOPEN_CLOEXEC) })?;
    let fd = RawFd::try_from(ret).map_err(|_| Errno::EOVERFLOW)?;
    // SAFETY: on success fsopen returns a new descriptor that nothing else
    // owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `open_tree(dirfd, name, flags)`: a detached copy of the mount of the
/// entry `name` in the directory `dirfd`, which must be a plain name there
/// (no `/`), so that nothing but that one entry is ever looked up.
pub fn open_tree_at(dirfd: BorrowedFd, name: &CStr, flags: libc::c_uint) -> Result<OwnedFd, Errno> {
    if name.to_bytes().contains(&b'/') || name.is_empty() {
        return Err(Errno::EINVAL);
    }
    // SAFETY: `name` is a valid NUL-terminated string that outlives the
    // call; `dirfd` is a live descriptor borrowed for its duration.
    let ret = check(unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            dirfd.as_raw_fd(),
            name.as_ptr(),
            flags | libc::AT_SYMLINK_NOFOLLOW as libc::c_uint,
        )
    })?;
    let fd = RawFd::try_from(ret).map_err(|_| Errno::EOVERFLOW)?;
    // SAFETY: on success open_tree returns a new descriptor that nothing else
    // owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `fsconfig(fd, FSCONFIG_CMD_CREATE, NULL, NULL, 0)`: makes the superblock.
pub fn fsconfig_create(fs: BorrowedFd) -> Result<(), Errno> {
    // SAFETY: FSCONFIG_CMD_CREATE takes no key or value, so the null
    // pointers are never read; `fs` is live for the call.
    check(unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            FSCONFIG_CMD_CREATE,
            std::ptr::null::<libc::c_char>(),
            std::ptr::null::<libc::c_void>(),
            0,
        )
    })?;
    Ok(())
}

/// `fsmount(fd, FSMOUNT_CLOEXEC, attrs)`: a detached mount of the created
/// file system, in no namespace's tree, so that nobody else can see it.
pub fn fsmount(fs: BorrowedFd, attrs: u64) -> Result<OwnedFd, Errno> {
    let attrs = libc::c_uint::try_from(attrs).map_err(|_| Errno::EINVAL)?;
    // SAFETY: fsmount takes a live descriptor and plain integers, and
    // touches no memory of ours.
    let ret = check(unsafe { libc::syscall(libc::SYS_fsmount, fs.as_raw_fd(), FSMOUNT_CLOEXEC, attrs) })?;
    let fd = RawFd::try_from(ret).map_err(|_| Errno::EOVERFLOW)?;
    // SAFETY: on success fsmount returns a new descriptor that nothing else
    // owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The process's environment exactly as it is, entries without `=` included
/// (std's `vars_os` drops those, and the environment must pass unchanged).
/// Refused with EBUSY while another thread could change it underneath.
pub fn current_environ() -> Result<Vec<CString>, Errno> {
    require_single_thread()?;
    let mut out = Vec::new();
    // SAFETY: the process has a single thread (checked just above, and only
    // this thread could start another), and this loop changes nothing, so
    // `environ` is a stable NULL-terminated array of valid C strings for its
    // whole duration; each string is copied out.
    unsafe {
        let mut p = C_ENVIRON;
        while !p.is_null() && !(*p).is_null() {
            out.push(CStr::from_ptr(*p).to_owned());
            p = p.add(1);
        }
    }
    Ok(out)
}

extern "C" {
    #[link_name = "environ"]
    static C_ENVIRON: *const *const libc::c_char;
}

/// Empties the process's own environment, so that no library it calls (NSS
/// modules among them) can act on a variable a hostile caller put there.
/// Refused with EBUSY while another thread could be reading it.
pub fn clear_own_environment() -> Result<(), Errno> {
    require_single_thread()?;
    // SAFETY: the process has a single thread (checked just above) and holds
    // no reference into the environment; clearenv only resets libc's array.
    if unsafe { libc::clearenv() } != 0 {
        return Err(Errno::last());
    }
    Ok(())
}

/// Fails with EBUSY unless this process has exactly one thread. Several
/// functions here are sound only then: a second thread could change the
/// environment while it is read, or hold a lock across `fork`. Once the
/// check passes it stays true until this very thread starts another, so a
/// check right before the operation is enough.
fn require_single_thread() -> Result<(), Errno> {
    // A task directory links its two parents plus one entry per thread.
    let st = nix::sys::stat::stat("/proc/self/task")?;
    if st.st_nlink == 3 {
        Ok(())
    } else {
        Err(Errno::EBUSY)
    }
}

/// The process's supplementary groups. nix's `getgroups` sizes its buffer
/// from `/proc/sys/kernel/ngroups_max`, a file read on every launch; asking
/// the kernel for the count first costs one cheap system call instead.
pub fn supplementary_groups() -> Result<Vec<nix::unistd::Gid>, Errno> {
    // SAFETY: with a size of 0, getgroups only returns the count and writes
    // nothing through the null pointer.
    let count = unsafe { libc::getgroups(0, std::ptr::null_mut()) };
    if count < 0 {
        return Err(Errno::last());
    }
    let mut gids: Vec<libc::gid_t> = vec![0; usize::try_from(count).map_err(|_| Errno::EINVAL)?];
    // SAFETY: `gids` has room for exactly `count` entries, the size passed;
    // the process is single-threaded, so its groups cannot grow in between.
    let got = unsafe { libc::getgroups(count, gids.as_mut_ptr()) };
    if got < 0 {
        return Err(Errno::last());
    }
    gids.truncate(usize::try_from(got).map_err(|_| Errno::EINVAL)?);
    Ok(gids.into_iter().map(nix::unistd::Gid::from_raw).collect())
}

/// Defines the program's C `main`, which calls `$start` (a `fn() -> c_int`)
/// and returns its status. Both binaries enter here rather than through
/// Rust's usual start-up, which polls the standard descriptors, reads
/// /proc/self/maps, installs signal handlers and an alternate signal stack,
/// and ignores SIGPIPE: work every launch would pay for programs that only
/// prepare an exec, and that a setuid program is better without. std works
/// as usual, and the arguments come from `std::env::args_os`.
///
/// `no_mangle` counts as unsafe code, since two items exporting one name
/// would clash at link time; this is the one place that exports `main`, and
/// the function runs no unsafe code. Test builds keep the harness's `main`.
#[macro_export]
macro_rules! c_main {
    ($start:path) => {
        #[cfg(not(test))]
        #[allow(unsafe_code)]
        #[no_mangle]
        pub extern "C" fn main(
            _argc: ::std::ffi::c_int,
            _argv: *const *const ::std::ffi::c_char,
        ) -> ::std::ffi::c_int {
            $start()
        }
    };
}

/// Opens /dev/null on whichever of 0, 1 and 2 the caller left closed, so
/// that no file opened later becomes a standard stream of the command.
/// Both binaries enter at their own C `main` ([`c_main!`]), which skips the
/// Rust runtime's own version of this.
pub fn ensure_standard_fds() -> Result<(), Errno> {
    for fd in 0..3 {
        if !fd_is_open(fd) {
            // open() returns the lowest free descriptor, which is this one;
            // it stays open for the life of the process, on purpose.
            let null = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/null")
                .map_err(|e| distrorun_config::errno_of(&e))?;
            std::mem::forget(null);
        }
    }
    Ok(())
}

/// True when `fd` is an open descriptor of this process.
pub fn fd_is_open(fd: RawFd) -> bool {
    // SAFETY: F_GETFD only queries the descriptor table; an invalid number
    // yields EBADF and no other effect.
    unsafe { libc::fcntl(fd, libc::F_GETFD) >= 0 }
}

/// Runs `probe` in a forked child and reports whether it returned true.
/// Used to try a step that cannot be undone in this process.
/// Refused with EBUSY in a process with more than one thread.
pub fn in_child(probe: impl FnOnce() -> bool) -> Result<bool, Errno> {
    require_single_thread()?;
    // SAFETY: the process has a single thread (checked just above), so the
    // child is a faithful copy with no lock held by another thread; the child
    // only makes system calls and leaves with `_exit`, never returning into
    // the caller's code or running its destructors.
    match unsafe { nix::unistd::fork() }? {
        ForkResult::Child => {
            let ok = probe();
            // SAFETY: `_exit` ends the child at once, which is what a forked
            // child of a Rust program must do.
            unsafe { libc::_exit(i32::from(!ok)) }
        }
        ForkResult::Parent { child } => loop {
            match waitpid(child, None) {
                Ok(WaitStatus::Exited(_, code)) => return Ok(code == 0),
                Ok(WaitStatus::Signaled(..)) => return Ok(false),
                Ok(_) | Err(Errno::EINTR) => {}
                Err(e) => return Err(e),
            }
        },
    }
}

/// Runs `cmd` to its end as `uid` and `gid` with no supplementary group,
/// and so, once the ids are switched, with no capability at all: for a
/// program the setuid helper runs on nobody's behalf, which the caller can
/// then neither trace nor signal. Needs `CAP_SETUID` and `CAP_SETGID` in the
/// permitted set; the parent's own state is untouched.
pub fn output_as(
    cmd: &mut std::process::Command,
    uid: u32,
    gid: u32,
) -> std::io::Result<std::process::Output> {
    use std::os::unix::process::CommandExt;
    require_single_thread().map_err(std::io::Error::from)?;
    let switch = move || -> std::io::Result<()> {
        let sets = capget()?;
        capset(CapSets { effective: cap_bit(CAP_SETUID) | cap_bit(CAP_SETGID), ..sets })?;
        nix::unistd::setgroups(&[])?;
        let (u, g) = (nix::unistd::Uid::from_raw(uid), nix::unistd::Gid::from_raw(gid));
        nix::unistd::setresgid(g, g, g)?;
        nix::unistd::setresuid(u, u, u)?;
        Ok(())
    };
    // SAFETY: the process has a single thread (checked above), so the
    // forked child holds no lock another thread could own; the closure only
    // makes system calls (capget, capset, setgroups, setresgid, setresuid)
    // and touches no state shared with the parent.
    unsafe { cmd.pre_exec(switch) };
    cmd.output()
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
        if libc::sigaction(libc::SIGPIPE, std::ptr::null(), &raw mut old) != 0 {
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

/// Ends the process by `sig`, as if it had not been caught, so that the
/// caller's shell sees the signal (a script's loop stops at Ctrl-C); for a
/// program that caught it to clean up first.
pub fn die_of(sig: Signal) -> ! {
    // SAFETY: installing SIG_DFL runs no code of ours in signal context.
    let _ = unsafe { signal(sig, SigHandler::SigDfl) };
    let mut set = nix::sys::signal::SigSet::empty();
    set.add(sig);
    let _ = set.thread_unblock();
    let _ = nix::sys::signal::raise(sig);
    // Only where the signal was ignored by force: the shell's number for it.
    std::process::exit(128 + sig as i32)
}

/// Capabilities as the kernel's 64-bit masks: bit N is capability N.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CapSets {
    pub effective: u64,
    pub permitted: u64,
    pub inheritable: u64,
}

// From <linux/capability.h>; fixed kernel ABI.
pub const CAP_SETGID: u32 = 6;
pub const CAP_SETUID: u32 = 7;
pub const CAP_SETPCAP: u32 = 8;
pub const CAP_SYS_ADMIN: u32 = 21;
const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// The bit of capability `cap` in a mask.
pub const fn cap_bit(cap: u32) -> u64 {
    1 << cap
}

/// `struct __user_cap_header_struct`.
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

/// `struct __user_cap_data_struct`; version 3 takes two, low and high words.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

fn low(mask: u64) -> u32 {
    u32::try_from(mask & u64::from(u32::MAX)).unwrap_or(u32::MAX)
}

fn high(mask: u64) -> u32 {
    low(mask >> 32)
}

/// The calling thread's capability sets.
pub fn capget() -> Result<CapSets, Errno> {
    let mut header = CapHeader { version: LINUX_CAPABILITY_VERSION_3, pid: 0 };
    let mut data = [CapData::default(); 2];
    // SAFETY: the header names version 3, for which the kernel writes exactly
    // two `CapData` entries, the size of `data`; both outlive the call.
    check(unsafe { libc::syscall(libc::SYS_capget, &raw mut header, data.as_mut_ptr()) })?;
    let join = |lo: u32, hi: u32| u64::from(lo) | (u64::from(hi) << 32);
    Ok(CapSets {
        effective: join(data[0].effective, data[1].effective),
        permitted: join(data[0].permitted, data[1].permitted),
        inheritable: join(data[0].inheritable, data[1].inheritable),
    })
}

/// Sets the calling thread's capability sets in one system call. The kernel
/// refuses to add to permitted, or to make effective what is not permitted.
pub fn capset(sets: CapSets) -> Result<(), Errno> {
    let mut header = CapHeader { version: LINUX_CAPABILITY_VERSION_3, pid: 0 };
    let data = [
        CapData {
            effective: low(sets.effective),
            permitted: low(sets.permitted),
            inheritable: low(sets.inheritable),
        },
        CapData {
            effective: high(sets.effective),
            permitted: high(sets.permitted),
            inheritable: high(sets.inheritable),
        },
    ];
    // SAFETY: the header names version 3, for which the kernel reads exactly
    // two `CapData` entries, the size of `data`; both outlive the call.
    check(unsafe { libc::syscall(libc::SYS_capset, &raw mut header, data.as_ptr()) })?;
    Ok(())
}

/// Removes `cap` from the bounding set. EINVAL means this kernel has no such
/// capability.
pub fn capbset_drop(cap: u32) -> Result<(), Errno> {
    // SAFETY: PR_CAPBSET_DROP takes plain integers and touches no memory of ours.
    let ret = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(cap), 0, 0, 0) };
    check(ret.into()).map(drop)
}

/// Whether `cap` is in the bounding set; EINVAL means this kernel has no
/// such capability.
pub fn capbset_read(cap: u32) -> Result<bool, Errno> {
    // SAFETY: PR_CAPBSET_READ takes plain integers and touches no memory of ours.
    let ret = unsafe { libc::prctl(libc::PR_CAPBSET_READ, libc::c_ulong::from(cap), 0, 0, 0) };
    check(ret.into()).map(|held| held == 1)
}

/// Empties the ambient capability set.
pub fn clear_ambient_capabilities() -> Result<(), Errno> {
    // SAFETY: PR_CAP_AMBIENT_CLEAR_ALL takes plain integers and touches no
    // memory of ours.
    let ret = unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::c_ulong::try_from(libc::PR_CAP_AMBIENT_CLEAR_ALL).unwrap_or_default(),
            0,
            0,
            0,
        )
    };
    check(ret.into()).map(drop)
}

/// A forked child that waits, blocked on a pipe, until [`Waiting::release`]
/// lets it run its work; dropping the handle instead lets it exit without
/// running it. It lets a process hand a step to a child that must stay
/// outside a namespace the parent is about to enter (writing the parent's
/// id maps with newuidmap), while the parent keeps its PID.
pub struct Waiting {
    child: nix::unistd::Pid,
    go: Option<OwnedFd>,
}

/// Forks a child that runs `work` once released and exits 0 if it returned
/// true, 1 otherwise. Refused with EBUSY in a process with more than one
/// thread.
pub fn fork_waiting(work: impl FnOnce() -> bool) -> Result<Waiting, Errno> {
    require_single_thread()?;
    let (wait_end, go_end) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    // SAFETY: the process has a single thread (checked just above), so the
    // child is a faithful copy with no lock held by another thread; the child
    // leaves with `_exit`, never returning into the caller's code or running
    // its destructors.
    match unsafe { nix::unistd::fork() }? {
        ForkResult::Child => {
            drop(go_end);
            let mut byte = [0u8; 1];
            let released = loop {
                match nix::unistd::read(&wait_end, &mut byte) {
                    Ok(n) => break n == 1,
                    Err(Errno::EINTR) => {}
                    Err(_) => break false,
                }
            };
            let ok = released && work();
            // SAFETY: `_exit` ends the child at once, which is what a forked
            // child of a Rust program must do.
            unsafe { libc::_exit(i32::from(!ok)) }
        }
        ForkResult::Parent { child } => Ok(Waiting { child, go: Some(go_end) }),
    }
}

impl Waiting {
    /// Lets the child run its work, waits for it, and reports whether the
    /// work succeeded.
    pub fn release(mut self) -> Result<bool, Errno> {
        if let Some(go) = self.go.take() {
            nix::unistd::write(&go, &[1])?;
        }
        self.wait()
    }

    fn wait(&self) -> Result<bool, Errno> {
        loop {
            match waitpid(self.child, None) {
                Ok(WaitStatus::Exited(_, code)) => return Ok(code == 0),
                Ok(WaitStatus::Signaled(..)) => return Ok(false),
                Ok(_) | Err(Errno::EINTR) => {}
                Err(e) => return Err(e),
            }
        }
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        // Not released: closing the pipe makes the child exit unrun; reap it.
        if self.go.take().is_some() {
            let _ = self.wait();
        }
    }
}

/// A descriptor that names process `pid` for as long as it is held, so that
/// what is learned about it cannot silently come from a later process that
/// reused the number: a pidfd, or before Linux 5.3 (`ENOSYS`) the process's
/// /proc directory, which a later process with the same number never
/// answers through.
pub fn pidfd_open(pid: i32) -> Result<OwnedFd, Errno> {
    // SAFETY: pidfd_open takes a number and flags and returns a new
    // descriptor or -1; no memory is passed.
    let fd = match check(unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) }) {
        Err(Errno::ENOSYS) => {
            let flags =
                nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC;
            return nix::fcntl::open(format!("/proc/{pid}").as_str(), flags, nix::sys::stat::Mode::empty());
        }
        other => other?,
    };
    let fd = RawFd::try_from(fd).map_err(|_| Errno::EBADF)?;
    // SAFETY: the kernel just returned this descriptor, and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Whether the process a [`pidfd_open`] descriptor names is still alive
/// (signal 0 sends nothing; a /proc directory answers only while it lives).
pub fn pidfd_alive(pidfd: BorrowedFd) -> bool {
    // SAFETY: signal 0 with no siginfo only checks that the process exists
    // and may be signalled; the descriptor is borrowed, so it stays open.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            0,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    match check(ret) {
        Ok(_) => true,
        // Linux before 5.1, or the /proc directory from before 5.3.
        Err(Errno::ENOSYS | Errno::EBADF) => {
            let flags = nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC;
            nix::fcntl::openat(pidfd, "stat", flags, nix::sys::stat::Mode::empty())
                .is_ok_and(|f| nix::unistd::read(&f, &mut [0u8; 1]).is_ok_and(|n| n == 1))
        }
        Err(_) => false,
    }
}

/// Starts a process that outlives this one and is not its child: a child
/// starts a new session, forks `work` there and exits at once, so the
/// command this process becomes never sees a child it did not start, and
/// the terminal's signals never reach `work`. `work` gets the write end of
/// a pipe whose read end is returned, every other descriptor closed, its
/// standard streams on /dev/null and `/` as its directory; it must not
/// return. Refused with EBUSY in a process with more than one thread.
pub fn spawn_detached(work: impl FnOnce(OwnedFd)) -> Result<OwnedFd, Errno> {
    require_single_thread()?;
    let (read_end, write_end) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    // SAFETY: single-threaded (checked above), so the child is a faithful
    // copy with no lock held by another thread; both forked processes leave
    // only through `_exit`, never returning into the caller's code.
    match unsafe { nix::unistd::fork() }? {
        ForkResult::Child => {
            drop(read_end);
            let forked = nix::unistd::setsid().and_then(|_| {
                // SAFETY: as above; this process is still single-threaded.
                unsafe { nix::unistd::fork() }
            });
            if let Ok(ForkResult::Child) = forked {
                let kept = write_end.as_raw_fd();
                close_all_but(kept);
                let quiet =
                    nix::fcntl::open("/dev/null", nix::fcntl::OFlag::O_RDWR, nix::sys::stat::Mode::empty());
                if let Ok(null) = quiet {
                    // Kept open for good: it may itself be 0, 1 or 2.
                    let null = std::os::fd::IntoRawFd::into_raw_fd(null);
                    for fd in 0..3 {
                        // SAFETY: dup2 onto the standard descriptors, which
                        // this process owns; /dev/null stays open meanwhile.
                        unsafe { libc::dup2(null, fd) };
                    }
                }
                let _ = nix::unistd::chdir("/");
                work(write_end);
            }
            // SAFETY: `_exit` ends a forked child at once, as it must.
            unsafe { libc::_exit(0) }
        }
        ForkResult::Parent { child } => {
            drop(write_end);
            while let Err(Errno::EINTR) = waitpid(child, None) {}
            Ok(read_end)
        }
    }
}

/// Closes every descriptor above 2 but `kept`, in a forked child: with
/// `close_range` (5.9), or on older kernels one by one as /proc/self/fd
/// lists them.
fn close_all_but(kept: RawFd) {
    // SAFETY: close_range only closes descriptors; the ranges leave out 0-2
    // and `kept`.
    let ranged = unsafe {
        (kept <= 3 || libc::syscall(libc::SYS_close_range, 3, kept - 1, 0) == 0)
            && libc::syscall(libc::SYS_close_range, kept + 1, u32::MAX, 0) == 0
    };
    if ranged {
        return;
    }
    let Ok(listed) = std::fs::read_dir("/proc/self/fd") else { return };
    let open: Vec<RawFd> = listed
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|&fd| fd > 2 && fd != kept)
        .collect();
    for fd in open {
        // SAFETY: closing a descriptor this process owns; the one that
        // listed the directory is already closed, and a number no longer
        // open only yields EBADF.
        unsafe { libc::close(fd) };
    }
}
