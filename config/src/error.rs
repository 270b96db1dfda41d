use std::fmt;
use std::path::PathBuf;

use nix::errno::Errno;

/// Everything that can be wrong before distrorun touches the kernel. Each
/// variant reads as one sentence that names what was wrong; [`Error::hint`]
/// adds the fix where there is one.
#[derive(Debug)]
pub enum Error {
    /// The command line was malformed.
    Usage(String),
    /// A distro name outside the grammar.
    BadName(String),
    /// No config file for the name.
    NotFound { name: String, searched: Vec<PathBuf> },
    /// Both a system and a per-user config for the name.
    Ambiguous { name: String, system: PathBuf, user: PathBuf },
    /// A system call on a path failed.
    Io { op: &'static str, path: PathBuf, errno: Errno },
    /// A config file is not valid RON for the schema.
    Syntax { path: PathBuf, line: usize, col: usize, msg: String },
    /// A config file written for the old C++ distrorun.
    OldFormat { path: PathBuf, ron: Option<String> },
    /// A config file parsed but says something distrorun refuses.
    Invalid { path: PathBuf, msg: String },
    /// A path failed the ownership and permission checks.
    Untrusted { path: PathBuf, why: String },
    /// The caller is not listed in the distro's `users` or `groups`.
    Denied { name: String, user: String },
    /// A `--extra-volume` or `--directory` argument that cannot be used.
    BadPath { what: &'static str, path: PathBuf, why: String },
    /// What `distrorun` handed the setuid helper is malformed.
    Handoff(String),
    /// A device asked for cannot be provided.
    Device { msg: String, hint: Option<String> },
}

/// The errno an `io::Error` carries; EIO for one the kernel did not report
/// (std's own errors, a short write), never errno 0, which reads as
/// "Unknown errno".
pub fn errno_of(e: &std::io::Error) -> Errno {
    e.raw_os_error().map_or(Errno::EIO, Errno::from_raw)
}

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, errno: Errno) -> Self {
        Error::Io { op, path: path.into(), errno }
    }

    /// A second line for the user: how to fix what went wrong.
    pub fn hint(&self) -> Option<String> {
        match self {
            Error::NotFound { .. } => {
                Some("create NAME.conf in one of those directories; see distrorun(1)".into())
            }
            Error::Ambiguous { .. } => Some("remove or rename one of the two files".into()),
            Error::OldFormat { ron: Some(ron), .. } => {
                Some(format!("the same config in RON:\n{ron}"))
            }
            Error::OldFormat { ron: None, .. } => Some(
                "write it in RON, for example:\n(\n    dir: \"/srv/distros/NAME\",\n    mapped_volumes: [\"/dev\", \"/home\", \"/tmp\", \"/run\"],\n)".into(),
            ),
            Error::Untrusted { .. } => Some(
                "the setuid helper only trusts paths owned by root and not writable by group or others".into(),
            ),
            Error::Usage(_) => Some("run 'distrorun --help' for usage".into()),
            Error::Device { hint, .. } => hint.clone(),
            _ => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Usage(msg) => write!(f, "{msg}"),
            Error::BadName(name) => write!(
                f,
                "invalid distro name {name:?}: a name is 1 to 64 of A-Z a-z 0-9 . _ - and starts with a letter or digit"
            ),
            Error::NotFound { name, searched } => {
                write!(f, "no config for distro {name}; searched ")?;
                let list: Vec<String> = searched.iter().map(|p| p.display().to_string()).collect();
                write!(f, "{}", list.join(", "))
            }
            Error::Ambiguous { name, system, user } => write!(
                f,
                "distro {name} is defined twice, in {} and in {}",
                system.display(),
                user.display()
            ),
            Error::Io { op, path, errno } => {
                write!(f, "cannot {op} {}: {}", path.display(), errno.desc())
            }
            Error::Syntax { path, line, col, msg } => {
                write!(f, "{}:{line}:{col}: {msg}", path.display())
            }
            Error::OldFormat { path, .. } => write!(
                f,
                "{} is in the old libconfig format; distrorun now reads RON",
                path.display()
            ),
            Error::Invalid { path, msg } => write!(f, "{}: {msg}", path.display()),
            Error::Untrusted { path, why } => {
                write!(f, "refusing to trust {}: {why}", path.display())
            }
            Error::Denied { name, user } => {
                write!(f, "user {user} may not use distro {name}: not in its users or groups")
            }
            Error::BadPath { what, path, why } => {
                write!(f, "{what} {}: {why}", path.display())
            }
            Error::Handoff(msg) | Error::Device { msg, .. } => f.write_str(msg),
        }
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_of_keeps_the_kernels_errno_and_never_gives_zero() {
        assert_eq!(errno_of(&std::io::Error::from_raw_os_error(Errno::EACCES as i32)), Errno::EACCES);
        assert_eq!(errno_of(&std::io::Error::other("a short write")), Errno::EIO);
        assert_eq!(errno_of(&std::io::ErrorKind::WriteZero.into()), Errno::EIO);
    }
}
