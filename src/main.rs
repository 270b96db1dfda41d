//! distrorun: runs a command inside another Linux distribution's user-space
//! files, without isolating it from the user's system.

// The test harness brings its own `main` for the unit tests.
#![cfg_attr(not(test), no_main)]

mod backend;
mod cli;
mod commands;
mod desktop_entry;
mod error;
mod exported;
mod keepid;
mod machine;
mod output;
mod places;
mod registry;
mod source;
mod subids;
mod tree;

use std::ffi::{c_int, OsString};
use std::io::Write;

use cli::Command;
use distrorun_engine::Error;

distrorun_engine::c_main!(start);

/// One run of distrorun, to its exit status. It enters at its own C `main`
/// ([`distrorun_engine::c_main!`]), so what of Rust's start-up it needs is
/// done here: the standard descriptors, and flushing stdout at the end.
/// SIGPIPE keeps the caller's disposition, so `distrorun --list | head -1`
/// ends as any command in a pipe does.
#[cfg_attr(test, allow(dead_code))]
fn start() -> c_int {
    let status = distrorun_engine::exec::ensure_standard_streams()
        .and_then(|()| dispatch(std::env::args_os().skip(1)));
    // Asked-for output is flushed before exit; a closed stdout is not worth an error.
    let _ = std::io::stdout().flush();
    match status {
        Ok(()) => 0,
        Err(err) => {
            let code = c_int::from(err.report());
            if let Some(sig) = tree::interrupt::taken() {
                distrorun_engine::sys::die_of(sig);
            }
            code
        }
    }
}

/// One command, with the arguments it uses. Returns only where the command
/// does: every one but a run, which becomes the command run, or fails.
#[cfg_attr(test, allow(dead_code))]
fn dispatch(words: impl IntoIterator<Item = OsString>) -> Result<(), Error> {
    match cli::parse(words)? {
        Command::Run(args) => commands::run::run(args),
        Command::Print(text) => {
            output::print(&text);
            Ok(())
        }
        Command::List { json } => commands::list::list(json),
        Command::Info { name, json } => commands::info::info(&name, json),
        Command::Doctor => commands::doctor::doctor(),
        Command::Create(args) => commands::create::create(&args),
        Command::Remove { name, yes } => commands::remove::remove(&name, yes),
        Command::Export(request) => commands::export::run(&request),
        Command::Cache { prune, all, system } => commands::cache::run(prune, all, system),
    }
}
