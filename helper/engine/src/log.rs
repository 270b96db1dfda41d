//! `-v` output: one line per step on stderr, in the order the steps run.

use std::io::Write;

#[derive(Debug, Clone, Copy, Default)]
pub struct Log {
    pub verbose: bool,
}

impl Log {
    pub fn step(&self, args: std::fmt::Arguments) {
        if self.verbose {
            note(args);
        }
    }
}

/// A line on stderr that is always shown, such as the shell fallback note.
pub fn note(args: std::fmt::Arguments) {
    // stderr may be closed by the caller; a lost note must not stop the run.
    let _ = writeln!(std::io::stderr().lock(), "distrorun: {args}");
}
