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
mod registry;
mod remove;
mod run;
mod subids;

use std::ffi::c_int;
use std::io::Write;

distrorun_engine::c_main!(start);

/// One run of distrorun, to its exit status. It enters at its own C `main`
/// ([`distrorun_engine::c_main!`]), so what of Rust's start-up it needs is
/// done here: the standard descriptors, and flushing stdout at the end.
/// SIGPIPE keeps the caller's disposition, so `distrorun --list | head -1`
/// ends as any command in a pipe does.
#[cfg_attr(test, allow(dead_code))]
fn start() -> c_int {
    let status = distrorun_engine::exec::ensure_standard_streams()
        .and_then(|()| run::run(std::env::args_os().skip(1)));
    // Asked-for output is flushed before exit; a closed stdout is not worth an error.
    let _ = std::io::stdout().flush();
    match status {
        Ok(()) => 0,
        Err(err) => c_int::from(err.report()),
    }
}
