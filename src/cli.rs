//! The command line: `distrorun [OPTIONS] NAME [--] [COMMAND [ARG...]]`.

use std::ffi::OsString;
use std::path::PathBuf;

use argh::FromArgs;
use distrorun_config::{args, paths, BackendChoice, Error};

#[derive(FromArgs, Debug)]
/// Run a command inside another Linux distribution's user-space files,
/// without isolating it: same user, groups, environment, directory and
/// terminal.
#[argh(
    note = "NAME names SYSCONFDIR/distrorun.d/NAME.conf or, for user namespaces only,\n$XDG_CONFIG_HOME (default ~/.config)/distrorun.d/NAME.conf. Options come before NAME;\neverything after it is the command. Without a command, runs $SHELL.",
    error_code(125, "distrorun itself failed"),
    error_code(126, "the command was found but cannot be executed"),
    error_code(127, "the command was not found in the distro")
)]
pub struct Options {
    /// print each step on stderr
    #[argh(switch, short = 'v')]
    pub verbose: bool,
    /// print what would be done, and run nothing
    #[argh(switch, short = 'n')]
    pub dry_run: bool,
    /// run in DIR inside the distro instead of the current directory
    #[argh(option, short = 'd', arg_name = "DIR")]
    pub directory: Option<PathBuf>,
    /// auto (the default: userns where the kernel allows it, else helper),
    /// userns or helper
    #[argh(option)]
    pub backend: Option<BackendChoice>,
    /// bind-mount the host directory DIR at the same path inside; repeatable
    #[argh(option, arg_name = "DIR")]
    pub extra_volume: Vec<PathBuf>,
    /// list the configured distros and where each is defined
    #[argh(switch, short = 'l')]
    pub list: bool,
    /// print the version and the compiled-in paths
    #[argh(switch)]
    pub version: bool,
    /// the distro to run in
    #[argh(positional)]
    pub name: Option<String>,
}

/// What the command line asks for.
pub enum Parsed {
    Run {
        opts: Options,
        name: String,
        command: Vec<OsString>,
    },
    /// `--help` or `--version`: print this on stdout and exit 0.
    Print(String),
    /// `--list`.
    List,
}

const TAKES_VALUE: &[&str] = &["-d", "--directory", "--backend", "--extra-volume"];

pub fn parse(argv: impl IntoIterator<Item = OsString>) -> Result<Parsed, Error> {
    let split = args::split(argv, TAKES_VALUE)?;
    let mut words: Vec<&str> = split.options.iter().map(String::as_str).collect();
    words.extend(split.name.as_deref());
    let opts = Options::from_args(&["distrorun"], &words).map_err(|exit| {
        // argh prints help with status Ok and usage errors with status Err.
        match exit.status {
            Ok(()) => Error::Usage(String::new()),
            Err(()) => {
                Error::Usage(lowercase_first(exit.output.lines().next().unwrap_or("invalid arguments")))
            }
        }
    });
    let opts = match opts {
        Ok(opts) => opts,
        Err(Error::Usage(msg)) if msg.is_empty() => return Ok(Parsed::Print(help())),
        Err(e) => return Err(e),
    };
    if opts.version {
        return Ok(Parsed::Print(version()));
    }
    if opts.list {
        return Ok(Parsed::List);
    }
    match opts.name.clone() {
        Some(name) => Ok(Parsed::Run { opts, name, command: split.command }),
        None => Err(Error::Usage("no distro name given".into())),
    }
}

fn help() -> String {
    match Options::from_args(&["distrorun"], &["--help"]) {
        // argh knows nothing of the command after NAME, which is split off
        // before it parses; the usage line says it.
        Err(exit) => exit.output.replacen("[--] [<name>]", "NAME [--] [COMMAND [ARG...]]", 1),
        Ok(_) => String::new(),
    }
}

/// argh's messages start with a capital; distrorun's sentences do not.
fn lowercase_first(msg: &str) -> String {
    let mut chars = msg.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

fn version() -> String {
    format!(
        "distrorun {}\nsysconfdir: {}\nlibexecdir: {}\nhelper: {}\n",
        env!("CARGO_PKG_VERSION"),
        paths::SYSCONFDIR,
        paths::LIBEXECDIR,
        paths::helper_path().display()
    )
}
