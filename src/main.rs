//! distrorun: runs a command inside another Linux distribution's user-space
//! files, without isolating it from the user's system.

// The test harness brings its own `main` for the unit tests.
#![cfg_attr(not(test), no_main)]

mod backend;
mod cli;
mod create;
mod doctor;
mod export;
mod info;
mod remove;
mod run;
mod subids;

use std::ffi::c_int;
use std::io::Write;

/// The C entry point, as in the setuid helper: Rust's usual start-up reads
/// /proc/self/maps, installs signal handlers and an alternate signal stack,
/// and ignores SIGPIPE, work that every launch would pay for a program that
/// only prepares an exec. What of it distrorun needs is done in [`start`]:
/// the standard descriptors, and flushing stdout at the end. SIGPIPE keeps
/// the caller's disposition, so `distrorun --list | head -1` ends as any
/// command in a pipe does. The arguments come from `std::env::args_os`.
///
/// `no_mangle` is the one exception to the workspace's ban on `unsafe_code`
/// here, as in the helper: this is the only `main`, and it runs no unsafe
/// code. Test builds have the harness's `main` instead.
#[cfg(not(test))]
#[allow(unsafe_code)]
#[no_mangle]
pub extern "C" fn main(_argc: c_int, _argv: *const *const std::ffi::c_char) -> c_int {
    start()
}

/// One run of distrorun, to its exit status.
#[cfg_attr(test, allow(dead_code))]
fn start() -> c_int {
    let status = match distrorun_engine::sys::ensure_standard_fds() {
        Ok(()) => run::run(std::env::args_os().skip(1)),
        Err(e) => Err(distrorun_engine::Error::sys("open /dev/null on a closed standard descriptor", e)),
    };
    // Asked-for output is flushed before exit; a closed stdout is not worth an error.
    let _ = std::io::stdout().flush();
    match status {
        Ok(()) => 0,
        Err(err) => {
            distrorun_engine::note(format_args!("{err}"));
            if let Some(hint) = err.hint() {
                eprintln!("{hint}");
            }
            c_int::from(err.exit_status())
        }
    }
}
