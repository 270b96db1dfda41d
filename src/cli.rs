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
    /// show distro NAME: its config, volumes, OS, whether you may use it,
    /// and the backend you would get
    #[argh(option, arg_name = "NAME")]
    pub info: Option<String>,
    /// with --list or --info: print JSON, for scripts
    #[argh(switch)]
    pub json: bool,
    /// check this machine for you, and say what to fix
    #[argh(switch)]
    pub doctor: bool,
    /// print the version and the compiled-in paths
    #[argh(switch)]
    pub version: bool,
    /// create the per-user distro NAME from --tarball FILE, --oci PATH,
    /// --image REF or --debian SUITE
    #[argh(option, arg_name = "NAME")]
    pub create: Option<String>,
    /// with --create: a rootfs tarball, plain, gzip, xz or zstd
    #[argh(option, arg_name = "FILE")]
    pub tarball: Option<PathBuf>,
    /// with --create: an OCI image layout directory, an oci-archive or a
    /// docker save tarball
    #[argh(option, arg_name = "PATH")]
    pub oci: Option<PathBuf>,
    /// with --oci: the image to take, where there are several
    #[argh(option, arg_name = "TAG")]
    pub tag: Option<String>,
    /// with --create: an image from a container registry, as podman names
    /// it (registry/repo:tag, repo:tag, repo@sha256:...)
    #[argh(option, arg_name = "REF")]
    pub image: Option<String>,
    /// with --image or --update: allow plain HTTP and a certificate that
    /// does not verify
    #[argh(switch)]
    pub insecure_registry: bool,
    /// pull the image distro NAME was made from again, and swap in the new
    /// tree if it changed
    #[argh(option, arg_name = "NAME")]
    pub update: Option<String>,
    /// with --create: build a Debian or derivative SUITE with mmdebstrap
    #[argh(option, arg_name = "SUITE")]
    pub debian: Option<String>,
    /// with --debian: the mirror (default: the one the host's apt uses)
    #[argh(option, arg_name = "URL")]
    pub mirror: Option<String>,
    /// with --debian: more packages, separated by commas
    #[argh(option, arg_name = "PKG,...")]
    pub include: Option<String>,
    /// with --create, as root: a system distro, root-owned, configured in
    /// SYSCONFDIR/distrorun.d
    #[argh(switch)]
    pub system: bool,
    /// with --system: where the tree goes (default /var/lib/distrorun)
    #[argh(option, arg_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// with --create: no progress bar and no summary line
    #[argh(switch, short = 'q')]
    pub quiet: bool,
    /// remove the per-user distro NAME: its tree and its config
    #[argh(option, arg_name = "NAME")]
    pub remove: Option<String>,
    /// with --remove: do not ask for confirmation
    #[argh(switch)]
    pub yes: bool,
    /// run as root inside a per-user distro (over your subordinate ids), to
    /// maintain it
    #[argh(switch)]
    pub root: bool,
    /// write a launcher for APP, a desktop file of distro NAME, to your
    /// applications menu: --export NAME APP
    #[argh(option, arg_name = "NAME")]
    pub export: Option<String>,
    /// write a wrapper script for TOOL, a program of distro NAME, to
    /// ~/.local/bin: --export-bin NAME TOOL
    #[argh(option, arg_name = "NAME")]
    pub export_bin: Option<String>,
    /// remove what --export or --export-bin wrote: --unexport NAME APP|TOOL
    #[argh(option, arg_name = "NAME")]
    pub unexport: Option<String>,
    /// the distro to run in
    #[argh(positional)]
    pub name: Option<String>,
}

/// What the command line asks for. Made once per run and consumed at once,
/// so the size of its largest variant costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
pub enum Parsed {
    Run {
        opts: Options,
        name: String,
        command: Vec<OsString>,
    },
    /// `--help` or `--version`: print this on stdout and exit 0.
    Print(String),
    /// `--list`, as JSON with `--json`.
    List {
        json: bool,
    },
    /// `--info NAME`, as JSON with `--json`.
    Info {
        name: String,
        json: bool,
    },
    /// `--doctor`.
    Doctor,
    /// `--create NAME SOURCE`.
    Create(crate::create::CreateArgs),
    /// `--export`, `--export-bin` or `--unexport`.
    Export(crate::export::Request),
    /// `--remove NAME [--yes]`.
    Remove {
        name: String,
        yes: bool,
    },
}

const TAKES_VALUE: &[&str] = &[
    "-d",
    "--directory",
    "--backend",
    "--extra-volume",
    "--info",
    "--create",
    "--tarball",
    "--oci",
    "--tag",
    "--image",
    "--update",
    "--debian",
    "--mirror",
    "--include",
    "--state-dir",
    "--remove",
    "--export",
    "--export-bin",
    "--unexport",
];

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
    if let Some(query) = query(&opts, &split) {
        return query;
    }
    if let Some(parsed) = lifecycle(&opts, &split)? {
        return Ok(parsed);
    }
    if let Some(request) = export(&opts, &split)? {
        return Ok(Parsed::Export(request));
    }
    match opts.name.clone() {
        Some(name) => Ok(Parsed::Run { opts, name, command: split.command }),
        None => Err(Error::Usage("no distro name given".into())),
    }
}

/// `--list`, `--info` and `--doctor`, which take no distro name or command
/// of their own.
fn query(opts: &Options, split: &args::Split) -> Option<Result<Parsed, Error>> {
    let asked = [(opts.list, "--list"), (opts.info.is_some(), "--info"), (opts.doctor, "--doctor")];
    let mut given = asked.iter().filter(|(on, _)| *on).map(|(_, flag)| *flag);
    let Some(flag) = given.next() else {
        return opts.json.then(|| Err(Error::Usage("--json goes with --list or --info".into())));
    };
    if let Some(other) = given.next() {
        return Some(Err(Error::Usage(format!("{flag} and {other} cannot be combined"))));
    }
    // A command comes only after a name, so the name is what to name.
    if let Some(extra) = &split.name {
        return Some(Err(Error::Usage(format!(
            "{flag} takes no distro name or command, but {extra:?} follows"
        ))));
    }
    Some(Ok(match (opts.list, &opts.info) {
        (true, _) => Parsed::List { json: opts.json },
        (_, Some(name)) => Parsed::Info { name: name.clone(), json: opts.json },
        _ if opts.json => return Some(Err(Error::Usage("--json goes with --list or --info".into()))),
        _ => Parsed::Doctor,
    }))
}

/// `--create` and `--remove`, which take the distro's name as their value
/// and no command.
fn lifecycle(opts: &Options, split: &args::Split) -> Result<Option<Parsed>, Error> {
    let stray = split.name.is_some() || !split.command.is_empty();
    if let Some(parsed) = crate::create::update::parse(opts, stray)? {
        return Ok(Some(parsed));
    }
    if opts.insecure_registry && opts.image.is_none() {
        return Err(Error::Usage("--insecure-registry goes with --image REF or --update NAME".into()));
    }
    match (&opts.create, &opts.remove) {
        (Some(_), Some(_)) => Err(Error::Usage("--create and --remove cannot be combined".into())),
        (Some(name), None) => {
            if stray {
                return Err(Error::Usage(format!(
                    "--create {name} takes no distro name or command after it"
                )));
            }
            if opts.tag.is_some() && opts.oci.is_none() {
                return Err(Error::Usage("--tag goes with --oci PATH".into()));
            }
            if (opts.mirror.is_some() || opts.include.is_some()) && opts.debian.is_none() {
                return Err(Error::Usage("--mirror and --include go with --debian SUITE".into()));
            }
            let source = match (&opts.tarball, &opts.oci, &opts.debian, &opts.image) {
                (Some(file), None, None, None) => crate::create::Source::Tarball(file.clone()),
                (None, Some(path), None, None) => {
                    crate::create::Source::Oci { path: path.clone(), tag: opts.tag.clone() }
                }
                (None, None, Some(suite), None) => crate::create::Source::Debian(crate::create::debian::Debian {
                    suite: suite.clone(),
                    mirror: opts.mirror.clone(),
                    include: opts.include.clone(),
                }),
                (None, None, None, Some(reference)) => crate::create::Source::Image {
                    reference: reference.clone(),
                    insecure: opts.insecure_registry,
                },
                (None, None, None, None) => {
                    return Err(Error::Usage(format!(
                        "--create {name} needs a source: --tarball FILE, --oci PATH, --image REF or --debian SUITE"
                    )))
                }
                _ => {
                    return Err(Error::Usage(format!(
                        "--create {name} takes one source: --tarball, --oci, --image or --debian"
                    )))
                }
            };
            Ok(Some(Parsed::Create(crate::create::CreateArgs {
                name: name.clone(),
                source,
                quiet: opts.quiet,
                system: opts.system,
                state_dir: opts.state_dir.clone(),
                update: false,
            })))
        }
        (None, Some(name)) => {
            if stray {
                return Err(Error::Usage(format!(
                    "--remove {name} takes no distro name or command after it"
                )));
            }
            Ok(Some(Parsed::Remove { name: name.clone(), yes: opts.yes }))
        }
        (None, None)
            if opts.tarball.is_some()
                || opts.oci.is_some()
                || opts.tag.is_some()
                || opts.image.is_some()
                || opts.debian.is_some()
                || opts.mirror.is_some()
                || opts.include.is_some() =>
        {
            Err(Error::Usage(
                "--tarball, --oci, --tag, --image, --debian, --mirror and --include go with --create NAME"
                    .into(),
            ))
        }
        (None, None) if opts.yes => Err(Error::Usage("--yes goes with --remove NAME".into())),
        (None, None) if opts.system || opts.state_dir.is_some() || opts.quiet => {
            Err(Error::Usage("--system, --state-dir and --quiet go with --create NAME".into()))
        }
        (None, None) => Ok(None),
    }
}

/// `--export NAME APP`, `--export-bin NAME TOOL`, `--unexport NAME WHAT`:
/// the distro is the option's value, and what to export follows it.
fn export(opts: &Options, split: &args::Split) -> Result<Option<crate::export::Request>, Error> {
    use crate::export::Request;
    let asked =
        [("--export", &opts.export), ("--export-bin", &opts.export_bin), ("--unexport", &opts.unexport)];
    let mut given = asked.iter().filter_map(|(flag, v)| v.as_ref().map(|v| (*flag, v.clone())));
    let Some((flag, distro)) = given.next() else { return Ok(None) };
    if let Some((other, _)) = given.next() {
        return Err(Error::Usage(format!("{flag} and {other} cannot be combined")));
    }
    let what = match (&split.name, split.command.as_slice()) {
        (Some(what), []) => what.clone(),
        (None, _) => return Err(Error::Usage(format!("{flag} {distro} needs what to export after it"))),
        (Some(_), _) => {
            return Err(Error::Usage(format!("{flag} {distro} takes one thing to export, not more")))
        }
    };
    Ok(Some(match flag {
        "--export" => Request::App { distro, app: what },
        "--export-bin" => Request::Bin { distro, tool: what },
        _ => Request::Remove { distro, what },
    }))
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
