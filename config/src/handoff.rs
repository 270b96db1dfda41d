//! The hand-off from `distrorun` to the setuid helper: the helper's command
//! line, and the format of the environment it receives on a descriptor.
//!
//! Both sides use this one definition: `distrorun` builds a [`HelperArgs`]
//! and turns it into words with [`HelperArgs::to_words`], the helper gets it
//! back with [`HelperArgs::parse`]. A flag cannot exist on one side of the
//! privilege boundary and not on the other.

use std::ffi::{CString, OsString};
use std::os::fd::RawFd;
use std::path::PathBuf;

use nix::fcntl::SealFlag;

use crate::{args, name, Error};

/// The helper's command line, without its program name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelperArgs {
    /// The descriptor holding the caller's environment (see [`encode_environment`]).
    pub env_fd: RawFd,
    /// Print each step on stderr.
    pub verbose: bool,
    /// `-d DIR`: the working directory inside the distro.
    pub directory: Option<PathBuf>,
    /// `--extra-volume DIR`, in the order given.
    pub extra_volumes: Vec<PathBuf>,
    /// `--device NAME` and `--gpu` (as the name `gpu`), in the order given;
    /// the helper reads the specs itself.
    pub devices: Vec<String>,
    /// The distro.
    pub name: String,
    /// The command and its arguments, byte for byte.
    pub command: Vec<OsString>,
}

const ENV_FD: &str = "--env-fd";
const VERBOSE: &str = "-v";
const DIRECTORY: &str = "-d";
const EXTRA_VOLUME: &str = "--extra-volume";
const DEVICE: &str = "--device";
const TAKES_VALUE: &[&str] = &[ENV_FD, DIRECTORY, EXTRA_VOLUME, DEVICE];

impl HelperArgs {
    /// The words to pass after the helper's path. The command always
    /// follows `--`, so that no word of it is ever taken for an option.
    pub fn to_words(&self) -> Vec<OsString> {
        let mut words: Vec<OsString> = vec![ENV_FD.into(), self.env_fd.to_string().into()];
        if self.verbose {
            words.push(VERBOSE.into());
        }
        if let Some(dir) = &self.directory {
            words.extend([DIRECTORY.into(), dir.clone().into_os_string()]);
        }
        for volume in &self.extra_volumes {
            words.extend([EXTRA_VOLUME.into(), volume.clone().into_os_string()]);
        }
        for device in &self.devices {
            words.extend([DEVICE.into(), device.into()]);
        }
        words.extend([OsString::from(&self.name), "--".into()]);
        words.extend(self.command.iter().cloned());
        words
    }

    /// Parses the helper's arguments (without its program name). Anything
    /// that [`HelperArgs::to_words`] would not produce is refused.
    pub fn parse(words: impl IntoIterator<Item = OsString>) -> Result<HelperArgs, Error> {
        let split = args::split(words, TAKES_VALUE)?;
        let mut env_fd = None;
        let mut parsed = HelperArgs {
            env_fd: -1,
            verbose: false,
            directory: None,
            extra_volumes: Vec::new(),
            devices: Vec::new(),
            name: String::new(),
            command: split.command,
        };
        let mut options = split.options.into_iter();
        while let Some(option) = options.next() {
            // `split` has already made sure every value-taking option has one.
            let mut value = || options.next().unwrap_or_default();
            match option.as_str() {
                ENV_FD if env_fd.is_some() => return Err(usage("--env-fd is given twice")),
                ENV_FD => env_fd = Some(parse_fd(&value())?),
                VERBOSE => parsed.verbose = true,
                DIRECTORY if parsed.directory.is_some() => return Err(usage("-d is given twice")),
                DIRECTORY => parsed.directory = Some(value().into()),
                EXTRA_VOLUME => parsed.extra_volumes.push(value().into()),
                DEVICE => parsed.devices.push(value()),
                other => return Err(usage(&format!("unknown option {other}"))),
            }
        }
        parsed.name = split.name.ok_or_else(|| usage("no distro name given"))?;
        // Checked here as well as where the config is looked up: a name
        // outside the grammar (one starting with `-`, say) would not come
        // back as the same words.
        name::validate(&parsed.name)?;
        parsed.env_fd = env_fd.ok_or_else(|| usage("--env-fd is missing: run distrorun, not the helper"))?;
        Ok(parsed)
    }
}

fn parse_fd(text: &str) -> Result<RawFd, Error> {
    match text.parse::<RawFd>() {
        Ok(fd) if fd >= 0 => Ok(fd),
        _ => Err(usage(&format!("--env-fd {text:?} is not a descriptor number"))),
    }
}

fn usage(what: &str) -> Error {
    Error::Usage(format!("invalid helper arguments: {what}"))
}

/// The seals `distrorun` puts on the environment's memfd, and that the
/// helper requires: once they are set, nobody can change the contents,
/// its size, or the seals themselves.
pub fn environment_seals() -> SealFlag {
    SealFlag::F_SEAL_SEAL | SealFlag::F_SEAL_WRITE | SealFlag::F_SEAL_GROW | SealFlag::F_SEAL_SHRINK
}

/// The largest environment the helper accepts, in bytes. The kernel limits
/// argv plus environment to a quarter of the stack limit, so no exec could
/// take more.
pub const MAX_ENVIRONMENT_BYTES: usize = 16 << 20;

/// The most entries the helper accepts. Each entry costs an allocation
/// beside its bytes, so the byte limit alone would let a run of NUL bytes
/// cost many times its size in memory. An exec with this many entries
/// already needs a stack limit of 16 MiB for the pointers alone.
pub const MAX_ENVIRONMENT_ENTRIES: usize = 1 << 18;

/// The environment as the bytes of `/proc/PID/environ`: each entry
/// followed by a NUL byte.
pub fn encode_environment(vars: &[CString]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(vars.iter().map(|v| v.as_bytes_with_nul().len()).sum());
    for v in vars {
        bytes.extend_from_slice(v.as_bytes_with_nul());
    }
    bytes
}

/// Splits NUL-terminated entries. A missing final NUL means the data was
/// cut short, and is refused rather than guessed at; so are more than
/// [`MAX_ENVIRONMENT_BYTES`] or [`MAX_ENVIRONMENT_ENTRIES`], counted before
/// anything is allocated.
pub fn decode_environment(bytes: &[u8]) -> Result<Vec<CString>, Error> {
    if bytes.len() > MAX_ENVIRONMENT_BYTES {
        return Err(Error::Handoff("the environment passed to the helper is larger than 16 MiB".into()));
    }
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    let Some(body) = bytes.strip_suffix(b"\0") else {
        return Err(Error::Handoff(
            "the environment passed to the helper does not end with a NUL byte".into(),
        ));
    };
    // Counted without allocating: one piece of the body per entry.
    let entries = body.split(|&b| b == 0).count();
    if entries > MAX_ENVIRONMENT_ENTRIES {
        return Err(Error::Handoff(format!(
            "the environment passed to the helper has {entries} entries, more than {MAX_ENVIRONMENT_ENTRIES}"
        )));
    }
    body.split(|&b| b == 0)
        .map(|entry| {
            // Splitting on NUL leaves none inside an entry.
            CString::new(entry).map_err(|_| Error::Handoff("an environment entry holds a NUL byte".into()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStringExt;

    fn full() -> HelperArgs {
        HelperArgs {
            env_fd: 7,
            verbose: true,
            directory: Some("/srv/work dir".into()),
            extra_volumes: vec!["/data".into(), "/scratch".into()],
            devices: vec!["nvidia.com/gpu=all".into(), "gpu".into()],
            name: "rocky9".into(),
            command: vec!["--weird".into(), OsString::from_vec(vec![0xff, b'-', b'v']), "--".into()],
        }
    }

    #[test]
    fn helper_args_survive_the_round_trip() {
        for args in [
            full(),
            HelperArgs {
                env_fd: 3,
                verbose: false,
                directory: None,
                extra_volumes: vec![],
                devices: vec![],
                name: "x".into(),
                command: vec![],
            },
        ] {
            assert_eq!(HelperArgs::parse(args.to_words()).unwrap(), args);
        }
    }

    #[test]
    fn the_command_always_follows_a_double_dash() {
        let words = full().to_words();
        let name_at = words.iter().position(|w| w == "rocky9").unwrap();
        assert_eq!(words[name_at + 1], "--");
        assert_eq!(words[name_at + 2], "--weird");
    }

    fn parse(words: &[&str]) -> Result<HelperArgs, Error> {
        HelperArgs::parse(words.iter().map(OsString::from))
    }

    #[test]
    fn what_distrorun_never_sends_is_refused() {
        for (words, needle) in [
            (&["x"][..], "--env-fd is missing"),
            (&["--env-fd", "3"][..], "no distro name"),
            (&["--env-fd", "3", "--env-fd", "4", "x"][..], "given twice"),
            (&["--env-fd", "-1", "x"][..], "not a descriptor number"),
            (&["--env-fd", "3x", "x"][..], "not a descriptor number"),
            (&["--env-fd", "3", "--backend", "helper", "x"][..], "unknown option --backend"),
            (&["--env-fd", "3", "-d", "/a", "-d", "/b", "x"][..], "-d is given twice"),
            (&["--env-fd"][..], "needs a value"),
            (&["--env-fd", "3", "--", "-b"][..], "invalid distro name"),
        ] {
            let msg = parse(words).unwrap_err().to_string();
            assert!(msg.contains(needle), "{words:?}: {msg}");
        }
    }

    #[test]
    fn inline_option_values_are_accepted() {
        let args = parse(&["--env-fd=5", "--extra-volume=/d", "x", "true"]).unwrap();
        assert_eq!((args.env_fd, args.extra_volumes), (5, vec![PathBuf::from("/d")]));
    }

    #[test]
    fn environment_survives_the_round_trip_byte_for_byte() {
        let vars = vec![
            CString::new("LD_LIBRARY_PATH=/opt/lib").unwrap(),
            CString::new("NOEQUALS").unwrap(),
            CString::new(b"BIN=\xff\xfe\n".to_vec()).unwrap(),
            CString::new("EMPTY=").unwrap(),
            CString::new("").unwrap(),
        ];
        assert_eq!(decode_environment(&encode_environment(&vars)).unwrap(), vars);
    }

    #[test]
    fn truncated_or_oversized_environments_are_refused() {
        assert!(decode_environment(b"A=1\0B=2").is_err());
        assert_eq!(decode_environment(b"").unwrap(), Vec::<CString>::new());
        let too_many = vec![0u8; MAX_ENVIRONMENT_ENTRIES + 1];
        let msg = decode_environment(&too_many).unwrap_err().to_string();
        assert!(msg.contains("entries"), "{msg}");
        assert_eq!(
            decode_environment(&vec![0u8; MAX_ENVIRONMENT_ENTRIES]).unwrap().len(),
            MAX_ENVIRONMENT_ENTRIES
        );
        let too_big = vec![b'a'; MAX_ENVIRONMENT_BYTES + 1];
        assert!(decode_environment(&too_big).unwrap_err().to_string().contains("16 MiB"));
    }
}
