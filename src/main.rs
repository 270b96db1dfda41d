//! distrorun: runs a command inside another Linux distribution's user-space
//! files, without isolating it from the user's system.

#![forbid(unsafe_code)]

mod backend;
mod cli;
mod create;
mod doctor;
mod export;
mod info;
mod remove;
mod run;
mod subids;

use std::process::ExitCode;

fn main() -> ExitCode {
    match run::run(std::env::args_os().skip(1)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            distrorun_engine::note(format_args!("{err}"));
            if let Some(hint) = err.hint() {
                eprintln!("{hint}");
            }
            ExitCode::from(err.exit_status())
        }
    }
}
