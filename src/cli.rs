//! The command line: `distrorun [OPTIONS] NAME [--] [COMMAND [ARG...]]`.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use argh::FromArgs;
use distrorun_config::{args, paths, BackendChoice, Error};

use crate::registry::{Network, Wanted};
use crate::source::debian::Debian;
use crate::tree::limits::Limits;

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
    /// bring in the device NAME, a CDI name such as nvidia.com/gpu=all;
    /// repeatable
    #[argh(option, arg_name = "NAME")]
    pub device: Vec<String>,
    /// bring in every GPU this host describes (CDI specs, or NVIDIA's
    /// driver without one)
    #[argh(switch)]
    pub gpu: bool,
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
    /// with --image or --update: let the image's registry (its host and
    /// port only) speak plain HTTP or show a certificate that does not
    /// verify
    #[argh(switch)]
    pub insecure_registry: bool,
    /// with --image: always (the default) asks the registry for the
    /// manifest, missing only where the blob cache lacks the image, never
    /// uses the cache alone
    #[argh(option, arg_name = "POLICY")]
    pub pull: Option<crate::registry::Pull>,
    /// with --image: the image for OS/ARCH[/VARIANT] from a multi-platform
    /// image (default: this machine's)
    #[argh(option, arg_name = "OS/ARCH")]
    pub platform: Option<String>,
    /// show the blob cache: its size, and which distros each blob serves
    #[argh(switch)]
    pub cache: bool,
    /// remove the blobs no distro's image uses from the blob cache
    #[argh(switch)]
    pub cache_prune: bool,
    /// with --cache-prune: empty the blob cache
    #[argh(switch)]
    pub all: bool,
    /// with --image or --update: the most SECONDS a manifest or token
    /// request may take (default 60)
    #[argh(option, arg_name = "SECONDS")]
    pub timeout: Option<u64>,
    /// with --image or --update: give a layer download up when it brings
    /// fewer than BYTES a second for --speed-time (default 1K)
    #[argh(option, arg_name = "BYTES")]
    pub speed_limit: Option<String>,
    /// with --image or --update: how long a download may stay under
    /// --speed-limit (default 30 seconds)
    #[argh(option, arg_name = "SECONDS")]
    pub speed_time: Option<u64>,
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
    /// with --create: the most the source may unpack to (default 64G)
    #[argh(option, arg_name = "SIZE")]
    pub max_size: Option<String>,
    /// with --create: the most entries the source may hold (default 500000)
    #[argh(option, arg_name = "N")]
    pub max_entries: Option<u64>,
    /// with --system: apply this security.* extended attribute from the
    /// source, such as security.capability (others are dropped)
    #[argh(option, arg_name = "NAME")]
    pub keep_xattr: Vec<String>,
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

/// What the command line asks for: one command, with only the arguments
/// that command uses. Made once per run and consumed at once, so the size
/// of its largest variant costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
pub enum Command {
    /// `NAME [COMMAND...]`: run in the distro.
    Run(RunArgs),
    /// `--help` or `--version`: print this on stdout and exit 0.
    Print(String),
    /// `--list`, as JSON with `--json`.
    List { json: bool },
    /// `--info NAME`, as JSON with `--json`.
    Info { name: String, json: bool },
    /// `--doctor`.
    Doctor,
    /// `--create NAME SOURCE`.
    Create(CreateArgs),
    /// `--remove NAME [--yes]`.
    Remove { name: String, yes: bool },
    /// `--export`, `--export-bin` or `--unexport`.
    Export(ExportRequest),
    /// `--cache`, or `--cache-prune [--all]`; root's with `--system`.
    Cache { prune: bool, all: bool, system: bool },
}

/// A run: the distro, the command, and the options that shape the run.
#[derive(Debug, Clone)]
pub struct RunArgs {
    pub name: String,
    pub command: Vec<OsString>,
    pub verbose: bool,
    pub dry_run: bool,
    pub directory: Option<PathBuf>,
    pub backend: Option<BackendChoice>,
    pub extra_volume: Vec<PathBuf>,
    /// `--device` names, then "gpu" for `--gpu`.
    pub devices: Vec<String>,
    pub root: bool,
}

/// What `--create` was asked for.
#[derive(Debug, Clone)]
pub struct CreateArgs {
    pub name: String,
    pub source: Source,
    pub quiet: bool,
    /// A system distro, made by root: real ids, the state directory and
    /// `SYSCONFDIR/distrorun.d`.
    pub system: bool,
    /// With `system`: where the tree goes instead of `/var/lib/distrorun`.
    pub state_dir: Option<PathBuf>,
    /// How much the create may write.
    pub limits: Limits,
    /// `security.*` attributes a system create applies (`--keep-xattr`).
    pub keep_xattrs: Vec<String>,
    /// `--update`: the distro exists, and its tree is replaced.
    pub update: bool,
}

#[derive(Debug, Clone)]
pub enum Source {
    Tarball(PathBuf),
    Oci {
        path: PathBuf,
        tag: Option<String>,
    },
    Debian(Debian),
    /// `--image REF`, from a registry, as `wanted` says.
    Image {
        reference: String,
        wanted: Wanted,
    },
    /// `--update`: the image the distro's config names.
    Update {
        network: Network,
    },
}

/// What `--export`, `--export-bin` or `--unexport` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExportRequest {
    App { distro: String, app: String },
    Bin { distro: String, tool: String },
    Remove { distro: String, what: String },
}

const TAKES_VALUE: &[&str] = &[
    "-d",
    "--directory",
    "--backend",
    "--extra-volume",
    "--device",
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
    "--max-size",
    "--max-entries",
    "--pull",
    "--platform",
    "--timeout",
    "--speed-limit",
    "--speed-time",
    "--keep-xattr",
    "--remove",
    "--export",
    "--export-bin",
    "--unexport",
];

pub fn parse(argv: impl IntoIterator<Item = OsString>) -> Result<Command, Error> {
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
        Err(Error::Usage(msg)) if msg.is_empty() => return Ok(Command::Print(help())),
        Err(e) => return Err(e),
    };
    if opts.version {
        return Ok(Command::Print(version()));
    }
    if let Some(query) = query(&opts, &split) {
        return query;
    }
    if let Some(cache) = cache(&opts, &split)? {
        return Ok(cache);
    }
    if let Some(parsed) = lifecycle(&opts, &split)? {
        return Ok(parsed);
    }
    if let Some(request) = export(&opts, &split)? {
        return Ok(Command::Export(request));
    }
    match opts.name {
        Some(name) => Ok(Command::Run(RunArgs {
            name,
            command: split.command,
            verbose: opts.verbose,
            dry_run: opts.dry_run,
            directory: opts.directory,
            backend: opts.backend,
            extra_volume: opts.extra_volume,
            devices: opts
                .device
                .into_iter()
                .chain(opts.gpu.then(|| distrorun_config::gpu::GPU_ALL.to_owned()))
                .collect(),
            root: opts.root,
        })),
        None => Err(Error::Usage("no distro name given".into())),
    }
}

/// `--cache` and `--cache-prune [--all]`, which take nothing else.
fn cache(opts: &Options, split: &args::Split) -> Result<Option<Command>, Error> {
    if !opts.cache && !opts.cache_prune {
        return if opts.all { Err(Error::Usage("--all goes with --cache-prune".into())) } else { Ok(None) };
    }
    let flag = if opts.cache_prune { "--cache-prune" } else { "--cache" };
    if opts.cache && opts.cache_prune {
        return Err(Error::Usage("--cache and --cache-prune cannot be combined".into()));
    }
    if opts.all && !opts.cache_prune {
        return Err(Error::Usage("--all goes with --cache-prune".into()));
    }
    if split.name.is_some() || opts.create.is_some() || opts.update.is_some() || opts.remove.is_some() {
        return Err(Error::Usage(format!("{flag} takes no distro name, and combines only with --system")));
    }
    Ok(Some(Command::Cache { prune: opts.cache_prune, all: opts.all, system: opts.system }))
}

/// `--list`, `--info` and `--doctor`, which take no distro name or command
/// of their own.
fn query(opts: &Options, split: &args::Split) -> Option<Result<Command, Error>> {
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
        (true, _) => Command::List { json: opts.json },
        (_, Some(name)) => Command::Info { name: name.clone(), json: opts.json },
        _ if opts.json => return Some(Err(Error::Usage("--json goes with --list or --info".into()))),
        _ => Command::Doctor,
    }))
}

/// `--create` and `--remove`, which take the distro's name as their value
/// and no command.
fn lifecycle(opts: &Options, split: &args::Split) -> Result<Option<Command>, Error> {
    let stray = split.name.is_some() || !split.command.is_empty();
    if let Some(update) = update(opts, stray)? {
        return Ok(Some(Command::Create(update)));
    }
    registry_options(opts)?;
    match (&opts.create, &opts.remove) {
        (Some(_), Some(_)) => Err(Error::Usage("--create and --remove cannot be combined".into())),
        (Some(name), None) => {
            if stray {
                return Err(Error::Usage(format!(
                    "--create {name} takes no distro name or command after it"
                )));
            }
            create(opts, name).map(|args| Some(Command::Create(args)))
        }
        (None, Some(name)) => {
            if stray {
                return Err(Error::Usage(format!(
                    "--remove {name} takes no distro name or command after it"
                )));
            }
            Ok(Some(Command::Remove { name: name.clone(), yes: opts.yes }))
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
        (None, None)
            if opts.max_size.is_some() || opts.max_entries.is_some() || !opts.keep_xattr.is_empty() =>
        {
            Err(Error::Usage("--max-size, --max-entries and --keep-xattr go with --create NAME".into()))
        }
        (None, None) => Ok(None),
    }
}

/// The registry's options, which go only where an image is pulled.
fn registry_options(opts: &Options) -> Result<(), Error> {
    if opts.image.is_none() && (opts.pull.is_some() || opts.platform.is_some()) {
        return Err(Error::Usage("--pull and --platform go with --create NAME --image REF".into()));
    }
    if opts.image.is_none()
        && (opts.insecure_registry
            || opts.timeout.is_some()
            || opts.speed_limit.is_some()
            || opts.speed_time.is_some())
    {
        return Err(Error::Usage(
            "--insecure-registry, --timeout, --speed-limit and --speed-time go with --image REF or --update NAME"
                .into(),
        ));
    }
    Ok(())
}

/// `--create NAME` and its one source.
fn create(opts: &Options, name: &str) -> Result<CreateArgs, Error> {
    if opts.tag.is_some() && opts.oci.is_none() {
        return Err(Error::Usage("--tag goes with --oci PATH".into()));
    }
    if (opts.mirror.is_some() || opts.include.is_some()) && opts.debian.is_none() {
        return Err(Error::Usage("--mirror and --include go with --debian SUITE".into()));
    }
    let source = match (&opts.tarball, &opts.oci, &opts.debian, &opts.image) {
        (Some(file), None, None, None) => Source::Tarball(file.clone()),
        (None, Some(path), None, None) => Source::Oci { path: path.clone(), tag: opts.tag.clone() },
        (None, None, Some(suite), None) => Source::Debian(Debian {
            suite: suite.clone(),
            mirror: opts.mirror.clone(),
            include: opts.include.clone(),
        }),
        (None, None, None, Some(reference)) => Source::Image {
            reference: reference.clone(),
            wanted: Wanted {
                network: network(opts)?,
                pull: opts.pull.unwrap_or_default(),
                platform: platform(opts)?,
            },
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
    Ok(CreateArgs {
        name: name.to_owned(),
        source,
        quiet: opts.quiet,
        system: opts.system,
        state_dir: opts.state_dir.clone(),
        limits: limits(opts)?,
        keep_xattrs: keep_xattrs(opts)?,
        update: false,
    })
}

/// `--update NAME [--insecure-registry] [--system] [-q]`, which takes no
/// source (the config names it) and combines with no other action.
fn update(opts: &Options, stray: bool) -> Result<Option<CreateArgs>, Error> {
    let Some(name) = &opts.update else { return Ok(None) };
    if opts.create.is_some() || opts.remove.is_some() {
        return Err(Error::Usage("--update cannot be combined with --create or --remove".into()));
    }
    if stray {
        return Err(Error::Usage(format!("--update {name} takes no distro name or command after it")));
    }
    let sources = [opts.tarball.is_some(), opts.oci.is_some(), opts.image.is_some(), opts.debian.is_some()];
    if sources.contains(&true) || opts.tag.is_some() || opts.mirror.is_some() || opts.include.is_some() {
        return Err(Error::Usage(format!(
            "--update {name} takes no source: it pulls the image its config names"
        )));
    }
    if opts.state_dir.is_some() {
        return Err(Error::Usage("--state-dir goes with --create NAME --system".into()));
    }
    Ok(Some(CreateArgs {
        name: name.clone(),
        source: Source::Update { network: network(opts)? },
        quiet: opts.quiet,
        system: opts.system,
        state_dir: None,
        limits: limits(opts)?,
        keep_xattrs: keep_xattrs(opts)?,
        update: true,
    }))
}

/// `--insecure-registry`, `--timeout`, `--speed-limit` and `--speed-time`,
/// over the defaults.
fn network(opts: &Options) -> Result<Network, Error> {
    let mut network = Network { insecure: opts.insecure_registry, ..Network::default() };
    let seconds = |value: Option<u64>, option: &str| match value {
        Some(0) => Err(Error::Usage(format!("{option} must be at least 1 second"))),
        Some(n) => Ok(Some(Duration::from_secs(n))),
        None => Ok(None),
    };
    if let Some(t) = seconds(opts.timeout, "--timeout")? {
        network.timeout = t;
    }
    if let Some(t) = seconds(opts.speed_time, "--speed-time")? {
        network.speed_time = t;
    }
    if let Some(limit) = &opts.speed_limit {
        network.speed_limit =
            crate::tree::limits::parse_size(limit).map_err(|e| Error::Usage(format!("--speed-limit {e}")))?;
    }
    Ok(network)
}

/// `--platform OS/ARCH[/VARIANT]`.
fn platform(opts: &Options) -> Result<Option<crate::registry::Platform>, Error> {
    opts.platform
        .as_deref()
        .map(|p| p.parse().map_err(|e| Error::Usage(format!("--platform {e}"))))
        .transpose()
}

/// `--max-size` and `--max-entries`, over the defaults.
fn limits(opts: &Options) -> Result<Limits, Error> {
    let mut limits = Limits::default();
    if let Some(size) = &opts.max_size {
        limits.max_bytes =
            crate::tree::limits::parse_size(size).map_err(|e| Error::Usage(format!("--max-size {e}")))?;
    }
    if let Some(n) = opts.max_entries {
        if n == 0 {
            return Err(Error::Usage("--max-entries must be at least 1".into()));
        }
        limits.max_entries = n;
    }
    Ok(limits)
}

/// `--keep-xattr NAME`: only as root, and only names of `security.*`.
fn keep_xattrs(opts: &Options) -> Result<Vec<String>, Error> {
    if !opts.keep_xattr.is_empty() && !opts.system {
        return Err(Error::Usage(
            "--keep-xattr goes with --system: a per-user create keeps what the kernel allows".into(),
        ));
    }
    for name in &opts.keep_xattr {
        crate::tree::xattr_policy::check_keep(name).map_err(Error::Usage)?;
    }
    Ok(opts.keep_xattr.clone())
}

/// `--export NAME APP`, `--export-bin NAME TOOL`, `--unexport NAME WHAT`:
/// the distro is the option's value, and what to export follows it.
fn export(opts: &Options, split: &args::Split) -> Result<Option<ExportRequest>, Error> {
    use ExportRequest as Request;
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
        "distrorun {}\nsysconfdir: {}\nlibexecdir: {}\nhelper: {}\ncdi specs: {}\n",
        env!("CARGO_PKG_VERSION"),
        paths::SYSCONFDIR,
        paths::LIBEXECDIR,
        paths::helper_path().display(),
        distrorun_config::cdi::SPEC_DIRS
    )
}

#[cfg(test)]
mod tests {
    use std::ffi::OsString;

    use super::{parse, Command, Source};

    fn args(words: &[&str]) -> Vec<OsString> {
        words.iter().map(OsString::from).collect()
    }

    fn refused(words: &[&str], needle: &str) {
        match parse(args(words)) {
            Err(e) => assert!(e.to_string().contains(needle), "{words:?}: {e}"),
            Ok(_) => panic!("{words:?} was accepted"),
        }
    }

    #[test]
    fn create_takes_the_name_as_its_value_and_exactly_one_source() {
        let Ok(Command::Create(c)) = parse(args(&["-q", "--create", "x", "--oci", "/img", "--tag", "t"]))
        else {
            panic!("not a create");
        };
        assert_eq!(c.name, "x");
        assert!(c.quiet && !c.system);
        assert!(matches!(c.source, Source::Oci { ref tag, .. } if tag.as_deref() == Some("t")));
        let Ok(Command::Create(c)) = parse(args(&["--create=x", "--debian", "trixie", "--include", "a,b"]))
        else {
            panic!("not a create");
        };
        assert!(
            matches!(c.source, Source::Debian(ref d) if d.suite == "trixie" && d.include.as_deref() == Some("a,b"))
        );
        refused(&["--create", "x"], "needs a source");
        refused(&["--create", "x", "--tarball", "a", "--oci", "b"], "one source");
        refused(&["--create", "x", "--tarball", "a", "--tag", "t"], "--tag goes with --oci");
        refused(&["--create", "x", "--tarball", "a", "--mirror", "m"], "go with --debian");
        refused(&["--create", "x", "--tarball", "a", "name"], "takes no distro name");
        refused(&["--tarball", "a", "name"], "go with --create");
        refused(&["-q", "name"], "go with --create");
    }

    #[test]
    fn remove_takes_the_name_as_its_value() {
        let Ok(Command::Remove { name, yes }) = parse(args(&["--remove", "x", "--yes"])) else {
            panic!("not a remove");
        };
        assert_eq!((name.as_str(), yes), ("x", true));
        refused(&["--remove", "x", "--", "cmd"], "takes no distro name");
        refused(&["--create", "x", "--remove", "y"], "cannot be combined");
        refused(&["--yes", "x"], "--yes goes with --remove");
    }
}
