use std::fmt;
use std::io::Write;

use nix::errno::Errno;

/// How a failure maps to distrorun's exit status, as coreutils' `env` and
/// `chroot` do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// distrorun itself failed: 125.
    Setup,
    /// The command was found but cannot be executed: 126.
    CannotExecute,
    /// The command was not found: 127.
    NotFound,
}

/// An engine failure: a sentence naming the operation and the path, the
/// errno where there is one, and an optional hint with the fix.
#[derive(Debug)]
pub struct Error {
    pub kind: Kind,
    what: String,
    errno: Option<Errno>,
    hint: Option<String>,
}

impl Error {
    /// `cannot WHAT: ERRNO`.
    pub fn sys(what: impl Into<String>, errno: Errno) -> Error {
        Error { kind: Kind::Setup, what: format!("cannot {}", what.into()), errno: Some(errno), hint: None }
    }

    /// A sentence without an errno.
    pub fn msg(what: impl Into<String>) -> Error {
        Error { kind: Kind::Setup, what: what.into(), errno: None, hint: None }
    }

    #[must_use]
    pub fn with_hint(mut self, hint: impl Into<String>) -> Error {
        self.hint = Some(hint.into());
        self
    }

    #[must_use]
    pub fn with_kind(mut self, kind: Kind) -> Error {
        self.kind = kind;
        self
    }

    /// The errno of a failed system call, for a caller that reports some
    /// errors as what they mean (a full disk) rather than where they came.
    pub fn errno(&self) -> Option<Errno> {
        self.errno
    }

    pub fn hint(&self) -> Option<&str> {
        self.hint.as_deref()
    }

    /// Prints the error as both binaries do, `distrorun: SENTENCE` and the
    /// hint on the next line, and returns the exit status it stands for.
    pub fn report(&self) -> u8 {
        crate::note(format_args!("{self}"));
        if let Some(hint) = self.hint() {
            // stderr may be closed by the caller; a lost hint must not stop the exit.
            let _ = writeln!(std::io::stderr().lock(), "{hint}");
        }
        self.exit_status()
    }

    pub fn exit_status(&self) -> u8 {
        match self.kind {
            Kind::Setup => 125,
            Kind::CannotExecute => 126,
            Kind::NotFound => 127,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.errno {
            Some(errno) => write!(f, "{}: {}", self.what, errno.desc()),
            None => f.write_str(&self.what),
        }
    }
}

impl std::error::Error for Error {}

impl From<distrorun_config::Error> for Error {
    fn from(e: distrorun_config::Error) -> Error {
        // The config error already reads as a whole sentence, errno included.
        let hint = e.hint();
        Error { kind: Kind::Setup, what: e.to_string(), errno: None, hint }
    }
}
