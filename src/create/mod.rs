//! `distrorun --create NAME SOURCE`: a per-user distro from a rootfs
//! tarball, written by distrorun's own unpacker inside the per-user
//! namespace, so that owners come out as the archive names them.
//!
//! The tree is built as `DATA/.NAME.partial` and renamed to `DATA/NAME`
//! only when complete; the config is written last, under a temporary name
//! and renamed. So an interrupted create never leaves a tree or a config
//! that looks usable, and the next create of the name cleans up.

pub mod archive;
pub mod debian;
pub mod oci;
pub mod source;
pub mod tarball;
pub mod unpack;
pub mod update;

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::io::Write as _;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use distrorun_config::access::Caller;
use distrorun_config::{name, paths};
use distrorun_engine::userns::{self, KeepId};
use distrorun_engine::Error;
use nix::errno::Errno;
use nix::fcntl::{open, openat, renameat2, AtFlags, OFlag, RenameFlags};
use nix::sys::stat::{fstatat, mkdirat, Mode, SFlag};
use nix::unistd::{fchownat, Gid, Uid};

use crate::remove;
use unpack::{Progress, Stats, Unpacker, Whiteouts};

/// What `--create` was asked for.
#[derive(Debug, Clone)]
pub struct CreateArgs {
    pub name: String,
    pub source: Source,
    pub quiet: bool,
    /// A system distro, made by root: real ids, the state directory and
    /// `SYSCONFDIR/distrorun.d`.
    pub system: bool,
    /// With `system`: where the tree goes instead of [`SYSTEM_STATE_DIR`].
    pub state_dir: Option<PathBuf>,
    /// `--update`: the distro exists, and its tree is replaced.
    pub update: bool,
}

/// Where `--system` puts trees unless `--state-dir` says otherwise.
pub const SYSTEM_STATE_DIR: &str = "/var/lib/distrorun";

#[derive(Debug, Clone)]
pub enum Source {
    Tarball(PathBuf),
    Oci {
        path: PathBuf,
        tag: Option<String>,
    },
    Debian(debian::Debian),
    /// `--image REF`, from a registry; plain HTTP and unverified
    /// certificates only with `insecure`.
    Image {
        reference: String,
        insecure: bool,
    },
    /// `--update`: the image the distro's config names.
    Update {
        insecure: bool,
    },
}

/// A source, opened as the caller before anything is written.
enum Opened {
    Tarball { input: std::fs::File, size: u64, what: String },
    Image { image: Arc<dyn source::ImageSource>, what: String, origin: Option<crate::registry::Origin> },
    Debian(debian::Running),
}

impl Opened {
    fn open(source: &Source, quiet: bool, system: bool) -> Result<Opened, Error> {
        match source {
            Source::Tarball(file) => {
                let input = tarball::open(file)?;
                let size = input.metadata().map_or(0, |m| m.len());
                Ok(Opened::Tarball { input, size, what: format!("the tarball {}", file.display()) })
            }
            Source::Oci { path, tag } => {
                let image = oci::Image::open(path, tag.as_deref())?;
                Ok(Opened::Image { what: image.what.clone(), image: Arc::new(image), origin: None })
            }
            Source::Image { reference, insecure } => {
                let remote = crate::registry::Remote::open(reference, *insecure)?;
                let origin = crate::registry::Origin {
                    reference: remote.reference.to_string(),
                    digest: remote.digest.clone(),
                };
                Ok(Opened::Image { what: remote.pinned(), image: Arc::new(remote), origin: Some(origin) })
            }
            Source::Debian(suite) => Ok(Opened::Debian(suite.start(quiet, system)?)),
            Source::Update { .. } => Err(Error::msg("--update reads its image from the config")),
        }
    }

    fn what(&self) -> &str {
        match self {
            Opened::Tarball { what, .. } | Opened::Image { what, .. } => what,
            Opened::Debian(running) => &running.what,
        }
    }
}

/// Mount points a desktop user's volumes need, and the two distrorun
/// always mounts; made where the tree lacks them.
const MOUNT_POINTS: &[&str] = &["dev", "home", "tmp", "run", "proc", "sys"];

/// The volumes of a new per-user distro's config.
const DEFAULT_VOLUMES: &str = r#"    mapped_volumes: [
        // What a desktop user needs: devices (GPU, sound, /dev/shm, /dev/pts),
        // your files, the X11 socket, and /run/user/UID (Wayland, D-Bus,
        // PipeWire). Remove what you do not want.
        "/dev", "/home", "/tmp", "/run",
        // So that package managers reach the network.
        "/etc/resolv.conf",
    ],
"#;

/// The leftover name of an interrupted create or remove.
pub fn partial_name(name: &str) -> PathBuf {
    PathBuf::from(format!(".{name}.partial"))
}

/// `${XDG_DATA_HOME:-~/.local/share}/distrorun`.
pub fn data_dir() -> Result<PathBuf, Error> {
    let xdg = std::env::var_os("XDG_DATA_HOME").map(PathBuf::from).filter(|p| p.is_absolute());
    let home = std::env::var_os("HOME").map(PathBuf::from).filter(|p| p.is_absolute());
    match (xdg, home) {
        (Some(dir), _) => Ok(dir.join("distrorun")),
        (None, Some(home)) => Ok(home.join(".local/share/distrorun")),
        (None, None) => {
            Err(Error::msg("cannot tell where per-user distros go: neither XDG_DATA_HOME nor HOME is set"))
        }
    }
}

/// Enters a user namespace with the keep-id mapping, as the per-user
/// distro's files were written and are run.
pub fn enter_namespace(ids: &KeepId) -> Result<(), Error> {
    match userns::enter_keep_id(ids, false)? {
        Ok(()) => Ok(()),
        Err(forbidden) => {
            Err(Error::msg(format!("per-user distros need user namespaces, and {}", forbidden.0)))
        }
    }
}

// The steps of a create (and of an update, which is one) in the order they
// happen, which reads best in one place.
#[allow(clippy::too_many_lines)]
pub fn create(args: &CreateArgs, caller: &Caller) -> Result<(), Error> {
    let started = Instant::now();
    let name = args.name.as_str();
    name::validate(name)?;
    if args.system && !caller.uid.is_root() {
        return Err(Error::msg(format!("--create {name} --system makes a system distro, which needs root"))
            .with_hint(format!("run: sudo distrorun --create {name} --system ..., or leave out --system")));
    }
    let config_dir = if args.system {
        paths::system_config_dir()
    } else {
        crate::run::user_config_dir().ok_or_else(|| {
            Error::msg("cannot tell where per-user configs go: neither XDG_CONFIG_HOME nor HOME is set")
        })?
    };
    let previous = if args.update { Some(update::previous(name, &config_dir, args.system)?) } else { None };
    for conf in
        [paths::system_config_dir().join(format!("{name}.conf")), config_dir.join(format!("{name}.conf"))]
    {
        if previous.is_none() && conf.symlink_metadata().is_ok() {
            return Err(Error::msg(format!("distro {name} already exists: {}", conf.display()))
                .with_hint(format!("choose another name, or remove it first (distrorun --remove {name})")));
        }
    }
    let data = match (&args.system, &args.state_dir) {
        (true, Some(dir)) if dir.is_absolute() => dir.clone(),
        (true, Some(dir)) => {
            return Err(Error::msg(format!("--state-dir {} is not an absolute path", dir.display())))
        }
        (true, None) => PathBuf::from(SYSTEM_STATE_DIR),
        (false, Some(_)) => return Err(Error::msg("--state-dir goes with --system")),
        (false, None) => data_dir()?,
    };
    // Root writes a system distro with the real ids; a user's goes through
    // the keep-id mapping.
    let ids = if args.system { None } else { Some(crate::subids::keep_id(caller)?) };
    let source = match (&args.source, &previous) {
        (Source::Update { insecure }, Some(p)) => {
            Source::Image { reference: p.origin.reference.clone(), insecure: *insecure }
        }
        (source, _) => source.clone(),
    };
    let opened = Opened::open(&source, args.quiet, args.system)?;
    let what = opened.what().to_owned();
    let origin = match &opened {
        Opened::Image { origin, .. } => origin.clone(),
        _ => None,
    };
    if let Some(previous) = &previous {
        if update::up_to_date(name, previous, origin.as_ref(), args.quiet) {
            return Ok(());
        }
        update::check_tree(name, previous, &data)?;
    }
    let unused_old = if previous.is_some() { update::unused_old_trees(&data, name) } else { Vec::new() };
    for dir in [&data, &config_dir] {
        std::fs::create_dir_all(dir).map_err(|e| {
            Error::msg(format!("cannot create {}: {}", dir.display(), tarball::errno_text(&e)))
        })?;
    }
    let data_fd = open_dir(&data)?;
    let config_fd = open_dir(&config_dir)?;
    if let Some(ids) = &ids {
        enter_namespace(ids)?;
    }

    let partial = partial_name(name);
    if previous.is_some() {
        update::clean_leftovers(&data_fd, &data, name, &unused_old)?;
    } else {
        clean_leftovers(&data_fd, &data, name, &partial)?;
    }
    mkdirat(&data_fd, partial.as_os_str(), Mode::S_IRWXU)
        .map_err(|e| Error::sys(format!("create {}", data.join(&partial).display()), e))?;
    let root = openat(
        &data_fd,
        partial.as_os_str(),
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Error::sys(format!("open {}", data.join(&partial).display()), e))?;
    let built = build(root, opened, args.quiet).and_then(|stats| {
        if args.system {
            trusted_root(&data_fd, &partial)?;
        }
        Ok(stats)
    });
    let stats = match built {
        Ok(stats) => stats,
        Err(e) => {
            // Bad input leaves nothing behind; should this fail too, the next
            // create of the name cleans up.
            let _ = remove::remove_leftover(&data_fd, &partial, &data);
            return Err(e);
        }
    };
    let tree = data.join(name);
    let config = Config {
        fd: &config_fd,
        dir: &config_dir,
        what: &what,
        origin: origin.as_ref(),
        system: args.system,
    };
    if let Some(previous) = &previous {
        return update::swap(&data_fd, &data, name, &config, previous, args.quiet, &|| {
            summary("rebuilt", name, &tree, &stats, started, None);
        });
    }
    renameat2(&data_fd, partial.as_os_str(), &data_fd, name, RenameFlags::RENAME_NOREPLACE).map_err(|e| {
        Error::sys(format!("move the new tree into place at {}", data.join(name).display()), e)
    })?;
    write_config(&config, name, &tree, RenameFlags::RENAME_NOREPLACE)?;
    if !args.quiet {
        summary("created", name, &tree, &stats, started, origin.as_ref());
    }
    Ok(())
}

/// Unpacks the source into the new tree `root` and adds the mount points.
fn build(root: OwnedFd, opened: Opened, quiet: bool) -> Result<Stats, Error> {
    let mount_root = nix::unistd::dup(&root).map_err(|e| Error::sys("duplicate a descriptor", e))?;
    let mut unpacker = Unpacker::new(root);
    let result = match opened {
        Opened::Tarball { input, size, what } => {
            let mut bar = Bar::new(quiet, size);
            let (stream, _) = tarball::decompressed(CountingReader::new(input, bar.read_counter()), &what)?;
            let stream = tarball::read_ahead(stream);
            let result = unpacker.unpack(stream, &what, Whiteouts::Literal, &mut bar);
            bar.clear();
            result
        }
        Opened::Image { image, .. } => {
            let mut bar = source::ImageBar::new(quiet, &image.sizes());
            let result = source::apply(&mut unpacker, &image, &mut bar);
            bar.clear();
            result
        }
        Opened::Debian(running) => unpack_mmdebstrap(&mut unpacker, running, quiet),
    };
    result?;
    make_mount_points(&mount_root)?;
    unpacker.finish()?;
    Ok(unpacker.stats)
}

/// mmdebstrap's tar stream, as it comes. When the stream breaks off
/// because mmdebstrap failed, its failure is the error; when distrorun
/// refused the stream, mmdebstrap is stopped.
fn unpack_mmdebstrap(
    unpacker: &mut Unpacker,
    mut running: debian::Running,
    quiet: bool,
) -> Result<(), Error> {
    let Some(stdout) = running.child.stdout.take() else {
        running.abandon();
        return Err(Error::msg("cannot read mmdebstrap's output"));
    };
    let what = running.what.clone();
    let mut bar = Bar::new(quiet, 0);
    let result = tarball::decompressed(CountingReader::new(stdout, bar.read_counter()), &what)
        .and_then(|(stream, _)| unpacker.unpack(stream, &what, Whiteouts::Literal, &mut bar));
    bar.clear();
    match result {
        Ok(()) => running.finish(),
        Err(ours) => {
            // Its output is closed by now: a mmdebstrap still writing dies
            // of SIGPIPE, which is then no failure of its own.
            match running.finish() {
                Err(theirs) if !running_died_of_sigpipe(&theirs) => Err(theirs),
                _ => Err(ours),
            }
        }
    }
}

fn running_died_of_sigpipe(err: &Error) -> bool {
    err.to_string().contains("signal: 13")
}

fn open_dir(dir: &Path) -> Result<OwnedFd, Error> {
    open(dir, OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(|e| Error::sys(format!("open {}", dir.display()), e))
}

/// A `.NAME.partial` tree left by an interrupted create or remove, and a
/// `NAME` tree without a config (interrupted between the two renames), are
/// distrorun's own leftovers in its own directory.
fn clean_leftovers(data_fd: &OwnedFd, data: &Path, name: &str, partial: &Path) -> Result<(), Error> {
    for leftover in [partial, Path::new(name)] {
        match fstatat(data_fd, leftover.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR => {
                remove::remove_leftover(data_fd, leftover, data)?;
            }
            Ok(_) => {
                nix::unistd::unlinkat(data_fd, leftover.as_os_str(), nix::unistd::UnlinkatFlags::NoRemoveDir)
                    .map_err(|e| Error::sys(format!("remove {}", data.join(leftover).display()), e))?;
            }
            Err(Errno::ENOENT) => {}
            Err(e) => return Err(Error::sys(format!("look at {}", data.join(leftover).display()), e)),
        }
    }
    Ok(())
}

/// The mount points the default volumes need, owned by root inside.
fn make_mount_points(root: &OwnedFd) -> Result<(), Error> {
    let (uid, gid) = (Some(Uid::from_raw(0)), Some(Gid::from_raw(0)));
    let fail =
        |what: &str, e: Errno| Error::sys(format!("create the mount point /{what} in the new tree"), e);
    for dir in MOUNT_POINTS {
        match mkdirat(root, *dir, Mode::from_bits_truncate(0o755)) {
            Ok(()) => {
                fchownat(root, *dir, uid, gid, AtFlags::AT_SYMLINK_NOFOLLOW).map_err(|e| fail(dir, e))?;
            }
            Err(Errno::EEXIST) => {}
            Err(e) => return Err(fail(dir, e)),
        }
    }
    match mkdirat(root, "etc", Mode::from_bits_truncate(0o755)) {
        Ok(()) => {
            fchownat(root, "etc", uid, gid, AtFlags::AT_SYMLINK_NOFOLLOW).map_err(|e| fail("etc", e))?;
        }
        Err(Errno::EEXIST) => {}
        Err(e) => return Err(fail("etc", e)),
    }
    let etc = unpack::open_in_root(root, b"etc", OFlag::O_RDONLY | OFlag::O_DIRECTORY)
        .map_err(|e| fail("etc/resolv.conf", e))?;
    // A symlink (to systemd-resolved's stub, say) cannot be a mount point:
    // distrorun never mounts through one.
    match fstatat(&etc, "resolv.conf", AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFLNK => {
            nix::unistd::unlinkat(&etc, "resolv.conf", nix::unistd::UnlinkatFlags::NoRemoveDir)
                .map_err(|e| fail("etc/resolv.conf", e))?;
        }
        Ok(_) => return Ok(()),
        Err(Errno::ENOENT) => {}
        Err(e) => return Err(fail("etc/resolv.conf", e)),
    }
    let file = openat(
        &etc,
        "resolv.conf",
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o644),
    )
    .map_err(|e| fail("etc/resolv.conf", e))?;
    nix::unistd::fchown(&file, uid, gid).map_err(|e| fail("etc/resolv.conf", e))
}

/// The config, written under a temporary name and renamed into place, so
/// that it appears whole or not at all.
/// The setuid helper trusts only a distro directory that root owns and
/// nobody else may write; a tarball's own root entry may say otherwise.
fn trusted_root(data_fd: &OwnedFd, partial: &Path) -> Result<(), Error> {
    let fail =
        |e| Error::sys("make the new tree's root directory owned by root and not writable by others", e);
    let root = openat(
        data_fd,
        partial.as_os_str(),
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(fail)?;
    let st = nix::sys::stat::fstat(&root).map_err(fail)?;
    nix::unistd::fchown(&root, Some(Uid::from_raw(0)), Some(Gid::from_raw(0))).map_err(fail)?;
    nix::sys::stat::fchmod(&root, Mode::from_bits_truncate(st.st_mode & 0o755)).map_err(fail)
}

/// Where the config goes, and what it says the distro was made from.
pub struct Config<'a> {
    pub fd: &'a OwnedFd,
    pub dir: &'a Path,
    pub what: &'a str,
    pub origin: Option<&'a crate::registry::Origin>,
    pub system: bool,
}

/// `placing` is `RENAME_NOREPLACE` for a new distro; `--update` replaces
/// its config with an empty set.
fn write_config(config: &Config, name: &str, tree: &Path, placing: RenameFlags) -> Result<(), Error> {
    let (config_fd, config_dir, what, system) = (config.fd, config.dir, config.what, config.system);
    let Some(dir) = tree.to_str().filter(|d| !d.contains(['\n', '"', '\\'])) else {
        return Err(Error::msg(format!(
            "cannot write a config for {}: the path has characters a config cannot hold",
            tree.display()
        )));
    };
    let mut text = String::new();
    let _ = writeln!(text, "// Made by `distrorun --create {name}` from {what}.");
    if let Some(origin) = config.origin {
        text.push_str(&origin.lines());
    }
    if system {
        let _ =
            writeln!(text, "// A system distro: maintain it as root (`sudo distrorun {name} apt-get ...`).");
        text.push_str("(\n");
        let _ = writeln!(text, "    dir: \"{dir}\",");
    } else {
        let _ = writeln!(text, "// Its files are owned through your subordinate ids; run it with");
        let _ = writeln!(text, "// `distrorun {name}`, maintain it with `distrorun --root {name}`.");
        text.push_str("(\n");
        let _ = writeln!(text, "    dir: \"{dir}\",");
        text.push_str("    ids: \"subuid\",\n");
    }
    text.push_str(DEFAULT_VOLUMES);
    text.push_str(")\n");
    let temp = format!(".{name}.conf.partial");
    let fail = |e: Errno| {
        Error::sys(format!("write the config {}", config_dir.join(format!("{name}.conf")).display()), e)
    };
    let _ = nix::unistd::unlinkat(config_fd, temp.as_str(), nix::unistd::UnlinkatFlags::NoRemoveDir);
    let fd = openat(
        config_fd,
        temp.as_str(),
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o644),
    )
    .map_err(fail)?;
    let mut file = std::fs::File::from(fd);
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| fail(Errno::from_raw(e.raw_os_error().unwrap_or(libc_eio()))))?;
    renameat2(
        config_fd,
        temp.as_str(),
        config_fd,
        OsStr::from_bytes(format!("{name}.conf").as_bytes()),
        placing,
    )
    .map_err(fail)
}

const fn libc_eio() -> i32 {
    Errno::EIO as i32
}

fn summary(
    verb: &str,
    name: &str,
    tree: &Path,
    stats: &Stats,
    started: Instant,
    origin: Option<&crate::registry::Origin>,
) {
    let from = origin.map(|o| format!(" from {} ({})", o.reference, o.digest)).unwrap_or_default();
    let mut line = format!(
        "distrorun: {verb} distro {name} in {}{from}: {} entries, {} in {:.1} s",
        tree.display(),
        stats.entries,
        human_bytes(stats.bytes),
        started.elapsed().as_secs_f64()
    );
    let skipped: Vec<String> = [
        (stats.devices, "device nodes"),
        (stats.unmapped, "owners outside your subordinate ids"),
        (stats.xattrs, "extended attributes"),
    ]
    .iter()
    .filter(|(n, _)| *n > 0)
    .map(|(n, what)| format!("{n} {what}"))
    .collect();
    if skipped.is_empty() {
        line.push_str("; nothing skipped");
    } else {
        let _ = write!(line, "; skipped {}", skipped.join(", "));
    }
    eprintln!("{line}");
}

#[allow(clippy::cast_precision_loss)]
fn human_bytes(n: u64) -> String {
    const UNITS: &[&str] = &["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Counts the bytes read from the archive file, for the progress bar.
struct CountingReader<R> {
    inner: R,
    count: Arc<AtomicU64>,
}

impl<R> CountingReader<R> {
    fn new(inner: R, count: Arc<AtomicU64>) -> Self {
        CountingReader { inner, count }
    }
}

impl<R: std::io::Read> std::io::Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// A one-line progress bar on stderr, only when stderr is a terminal and
/// not `-q`: the archive read so far against its size, and the entries and
/// bytes written.
struct Bar {
    enabled: bool,
    total: u64,
    read: Arc<AtomicU64>,
    entries: u64,
    bytes: u64,
    last: Instant,
    drawn: bool,
}

impl Bar {
    fn new(quiet: bool, total: u64) -> Bar {
        use std::io::IsTerminal;
        Bar {
            enabled: !quiet && std::io::stderr().is_terminal(),
            total,
            read: Arc::default(),
            entries: 0,
            bytes: 0,
            last: Instant::now(),
            drawn: false,
        }
    }

    fn read_counter(&self) -> Arc<AtomicU64> {
        self.read.clone()
    }

    #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    fn draw(&mut self) {
        const WIDTH: usize = 30;
        // A stream of unknown length (mmdebstrap's) has counts but no bar.
        if self.total == 0 {
            eprint!("\r\x1b[Kunpacking: {} entries, {}", self.entries, human_bytes(self.bytes));
        } else {
            let fraction = (self.read.load(Ordering::Relaxed) as f64 / self.total as f64).min(1.0);
            let filled = (fraction * WIDTH as f64) as usize;
            eprint!(
                "\r\x1b[Kunpacking [{}{}] {:3.0}%  {} entries, {}",
                "#".repeat(filled),
                " ".repeat(WIDTH - filled),
                fraction * 100.0,
                self.entries,
                human_bytes(self.bytes)
            );
        }
        self.drawn = true;
    }

    fn clear(&mut self) {
        if self.drawn {
            eprint!("\r\x1b[K");
            self.drawn = false;
        }
    }
}

impl Progress for Bar {
    fn advance(&mut self, entries: u64, bytes: u64) {
        self.entries += entries;
        self.bytes += bytes;
        if self.enabled && self.last.elapsed().as_millis() >= 100 {
            self.last = Instant::now();
            self.draw();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::OsString;

    use super::Source;
    use crate::cli::{parse, Parsed};

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
        let Ok(Parsed::Create(c)) = parse(args(&["-q", "--create", "x", "--oci", "/img", "--tag", "t"]))
        else {
            panic!("not a create");
        };
        assert_eq!(c.name, "x");
        assert!(c.quiet && !c.system);
        assert!(matches!(c.source, Source::Oci { ref tag, .. } if tag.as_deref() == Some("t")));
        let Ok(Parsed::Create(c)) = parse(args(&["--create=x", "--debian", "trixie", "--include", "a,b"]))
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
        let Ok(Parsed::Remove { name, yes }) = parse(args(&["--remove", "x", "--yes"])) else {
            panic!("not a remove");
        };
        assert_eq!((name.as_str(), yes), ("x", true));
        refused(&["--remove", "x", "--", "cmd"], "takes no distro name");
        refused(&["--create", "x", "--remove", "y"], "cannot be combined");
        refused(&["--yes", "x"], "--yes goes with --remove");
    }
}
