//! Ctrl-C, SIGTERM and SIGHUP while `--create` or `--update` writes a
//! tree: they are blocked from the start, and a thread of their own takes
//! them, so that the create stops at its next step and cleans up as on
//! any error (the tree it was writing removed, nothing half-made left),
//! and distrorun then dies of the signal, as the caller's shell expects.
//!
//! The watching thread starts only once the create may have threads: the
//! keep-id user namespace is entered by a single-threaded process.

use std::io;
use std::sync::atomic::{AtomicI32, Ordering};

use distrorun_engine::Error;
use nix::sys::signal::{kill, SigSet, Signal};
use nix::unistd::Pid;

/// The signal taken, or 0.
static TAKEN: AtomicI32 = AtomicI32::new(0);
/// A child the create waits on (mmdebstrap), passed the signal on, or 0.
static CHILD: AtomicI32 = AtomicI32::new(0);

fn signals() -> SigSet {
    let mut set = SigSet::empty();
    for sig in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        set.add(sig);
    }
    set
}

/// Holds the signals back from this thread and every thread it starts;
/// one that arrives stays pending until [`watch`] takes it.
pub fn block() -> Result<(), Error> {
    signals().thread_block().map_err(|e| Error::sys("block SIGINT, SIGTERM and SIGHUP", e))
}

/// Starts the thread that takes the signals.
pub fn watch() {
    std::thread::spawn(|| loop {
        let Ok(sig) = signals().wait() else { return };
        TAKEN.store(sig as i32, Ordering::SeqCst);
        let child = CHILD.load(Ordering::SeqCst);
        if child > 0 {
            let _ = kill(Pid::from_raw(child), Signal::SIGTERM);
        }
    });
}

/// The signal taken, if any.
pub fn taken() -> Option<Signal> {
    Signal::try_from(TAKEN.load(Ordering::SeqCst)).ok()
}

/// A child to pass a taken signal on to, until it is waited for.
pub fn set_child(pid: Option<u32>) {
    let raw = pid.and_then(|p| i32::try_from(p).ok()).unwrap_or(0);
    CHILD.store(raw, Ordering::SeqCst);
    if raw > 0 && taken().is_some() {
        let _ = kill(Pid::from_raw(raw), Signal::SIGTERM);
    }
}

/// The error that stops a create that was told to stop.
pub fn error(sig: Signal) -> Error {
    Error::msg(format!("interrupted by {}; what was written is removed", sig.as_str()))
}

/// `Err` once a signal is taken: checked between the steps of a create.
pub fn check() -> Result<(), Error> {
    taken().map_or(Ok(()), |sig| Err(error(sig)))
}

/// The same for a reader.
pub fn check_io() -> io::Result<()> {
    match taken() {
        // Not ErrorKind::Interrupted, which readers retry.
        Some(sig) => Err(io::Error::other(format!("interrupted by {}", sig.as_str()))),
        None => Ok(()),
    }
}
