//! `distrorun --create NAME SOURCE`: a per-user distro from a rootfs
//! tarball, written by distrorun's own unpacker inside the per-user
//! namespace, so that owners come out as the archive names them.
//!
//! The tree is built as `DATA/.NAME.partial` and renamed to `DATA/NAME`
//! only when complete; the config is written last, under a temporary name
//! and renamed. So an interrupted create never leaves a tree or a config
//! that looks usable, and the next create of the name cleans up.

mod in_use;
mod update;

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::io::Write as _;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use distrorun_config::access::Caller;
use distrorun_config::{name, paths};
use distrorun_engine::Error;
use nix::errno::Errno;
use nix::fcntl::{open, openat, renameat2, AtFlags, OFlag, RenameFlags};
use nix::sys::stat::{fstatat, mkdirat, Mode, SFlag};
use nix::unistd::{fchownat, Gid, Uid};

use crate::cli::{CreateArgs, Source};
use crate::output::{Bar, CountingReader};
use crate::registry::Origin;
use crate::source::image::{self, ImageBar, ImageSource};
use crate::source::{debian, oci, tarball};
use crate::tree::interrupt;
use crate::tree::layers::{self, Ledger};
use crate::tree::limits::{human_bytes, Limits};
use crate::tree::marker::{self, Stage};
use crate::tree::namelock::NameLock;
use crate::tree::unpack::{Mismatch, Stats, Unpacker, Whiteouts};
use crate::tree::xattr_policy::XattrPolicy;
use crate::tree::{private_dir, remove};
use crate::{error, places, subids, tree};

/// A source, opened as the caller before anything is written.
enum Opened {
    Tarball { input: std::fs::File, size: u64, what: String },
    Image { image: Arc<dyn ImageSource>, what: String, origin: Option<Origin> },
    Debian(debian::Running),
}

impl Opened {
    fn open(source: &Source, args: &CreateArgs) -> Result<Opened, Error> {
        match source {
            Source::Tarball(file) => {
                let input = tarball::open(file)?;
                let size = input.metadata().map_or(0, |m| m.len());
                Ok(Opened::Tarball { input, size, what: format!("the tarball {}", file.display()) })
            }
            Source::Oci { path, tag } => {
                let image = oci::Image::open(path, tag.as_deref(), args.limits.max_bytes)?;
                Ok(Opened::Image { what: image.what.clone(), image: Arc::new(image), origin: None })
            }
            Source::Image { reference, wanted } => {
                let cache = match crate::registry::Cache::open(args.system) {
                    Ok(cache) => Some(Arc::new(cache)),
                    Err(e) => {
                        eprintln!("distrorun: the blob cache cannot be used ({e}); pulling without it");
                        None
                    }
                };
                let remote = crate::registry::Remote::open(reference, wanted, cache)?;
                let origin = Origin {
                    reference: remote.reference.to_string(),
                    digest: remote.digest.clone(),
                    platform: wanted.platform.as_ref().map(ToString::to_string),
                };
                Ok(Opened::Image { what: remote.pinned(), image: Arc::new(remote), origin: Some(origin) })
            }
            Source::Debian(suite) => Ok(Opened::Debian(suite.start(args.quiet, args.system)?)),
            Source::Update { .. } => Err(Error::msg("--update reads its image from the config")),
        }
    }

    /// Stops what was started for a create that will not happen.
    fn abandon(self) {
        if let Opened::Debian(running) = self {
            running.abandon();
        }
    }

    fn what(&self) -> &str {
        match self {
            Opened::Tarball { what, .. } | Opened::Image { what, .. } => what,
            Opened::Debian(running) => &running.what,
        }
    }

    /// The image, for what the summary says of it.
    fn image(&self) -> Option<Arc<dyn ImageSource>> {
        match self {
            Opened::Image { image, .. } => Some(image.clone()),
            _ => None,
        }
    }

    /// The registry reference and digest, for a distro pulled from one.
    fn origin(&self) -> Option<Origin> {
        match self {
            Opened::Image { origin, .. } => origin.clone(),
            _ => None,
        }
    }
}

/// Mount points a desktop user's volumes need, and the two distrorun
/// always mounts; made where the tree lacks them.
const MOUNT_POINTS: &[&str] = &["dev", "home", "tmp", "run", "proc", "sys"];

/// Where the vendor files of devices are shown, parents first.
const DEVICE_DIRS: &[&str] = &[
    "usr/local/lib",
    "usr/local/bin",
    "usr/share/vulkan",
    "usr/share/vulkan/icd.d",
    "usr/share/vulkan/implicit_layer.d",
    "usr/share/glvnd",
    "usr/share/glvnd/egl_vendor.d",
    "usr/share/egl",
    "usr/share/egl/egl_external_platform.d",
    "usr/share/nvidia",
];

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

/// `--create NAME SOURCE [--system [--state-dir DIR]]`, and `--update
/// NAME`, which is a create of an existing distro's new tree.
pub fn create(args: &CreateArgs) -> Result<(), Error> {
    let started = Instant::now();
    let caller = places::caller()?;
    let name = args.name.as_str();
    name::validate(name)?;
    let (config_dir, data) = destinations(args, &caller)?;
    let previous = if args.update { Some(update::previous(name, &config_dir, args.system)?) } else { None };
    // Root writes a system distro with the real ids; a user's goes through
    // the keep-id mapping.
    let ids = if args.system { None } else { Some(subids::keep_id(&caller)?) };
    let data_fd = open_data_dir(&data, args.system, &caller)?;
    std::fs::create_dir_all(&config_dir)
        .map_err(|e| error::io(format!("create {}", config_dir.display()), &e))?;
    let config_fd = open_dir(&config_dir)?;
    // Held to the end: no other create, update or remove of the name meanwhile.
    let _lock = NameLock::acquire(&data_fd, &data, name, if args.update { "update" } else { "create" })?;
    let Some(previous) = previous else {
        refuse_existing(name, &config_dir)?;
        let opened = Opened::open(&args.source, args)?;
        let ready = ids
            .as_ref()
            .map_or(Ok(()), subids::enter_keep_id)
            .and_then(|()| watch_signals())
            .and_then(|()| clean_leftovers(&data_fd, &data, name, &config_dir));
        if let Err(e) = ready {
            opened.abandon();
            return Err(e);
        }
        let place = Place { data_fd: &data_fd, data: &data, config_fd: &config_fd, config_dir: &config_dir };
        return create_new(&place, opened, args, started);
    };
    let network = match args.source {
        Source::Update { network } => network,
        _ => crate::registry::Network::default(),
    };
    let platform = match previous.origin.platform.as_deref().map(str::parse).transpose() {
        Ok(platform) => platform,
        Err(e) => return Err(Error::msg(format!("distro {name}'s config: its image platform {e}"))),
    };
    let wanted = crate::registry::Wanted { network, pull: crate::registry::Pull::Always, platform };
    let source = Source::Image { reference: previous.origin.reference.clone(), wanted };
    let opened = Opened::open(&source, args)?;
    if update::up_to_date(name, &previous, opened.origin().as_ref(), args.quiet) {
        return Ok(());
    }
    update::check_tree(name, &previous, &data)?;
    // Looked at before entering the namespace, where the caller's other
    // runs can no longer be seen.
    let mut previous = previous;
    let unused = update::usage(&data, name, &mut previous);
    ids.as_ref()
        .map_or(Ok(()), subids::enter_keep_id)
        .and_then(|()| watch_signals())
        .and_then(|()| update::clean_leftovers(&data_fd, &data, name, &unused))?;
    let place = Place { data_fd: &data_fd, data: &data, config_fd: &config_fd, config_dir: &config_dir };
    update::rebuild(&place, opened, args, &previous, started)
}

/// From here on a signal stops the create at its next step, which then
/// cleans up as on any error. Before, nothing is written that a signal's
/// default action could leave half-made.
fn watch_signals() -> Result<(), Error> {
    interrupt::block()?;
    interrupt::watch();
    Ok(())
}

/// Where a distro's tree and config go, opened.
struct Place<'a> {
    data_fd: &'a OwnedFd,
    data: &'a Path,
    config_fd: &'a OwnedFd,
    config_dir: &'a Path,
}

/// A new distro: its tree built and moved into place, its config written,
/// its marker completed.
fn create_new(place: &Place, opened: Opened, args: &CreateArgs, started: Instant) -> Result<(), Error> {
    let name = args.name.as_str();
    let what = opened.what().to_owned();
    let origin = opened.origin();
    let partial = places::partial_name(name);
    let image = opened.image();
    let (stats, tree_fd) = build_at(place, &partial, name, opened, args, None)?;
    renameat2(place.data_fd, partial.as_os_str(), place.data_fd, name, RenameFlags::RENAME_NOREPLACE)
        .map_err(|e| {
            Error::sys(format!("move the new tree into place at {}", place.data.join(name).display()), e)
        })?;
    let tree = place.data.join(name);
    let config = Config { what: &what, origin: origin.as_ref(), system: args.system };
    write_config(place, &config, name, &tree, RenameFlags::RENAME_NOREPLACE)?;
    marker::mark(place.data_fd, place.data, name, &[(&tree_fd, Stage::Complete)])?;
    report(
        "created",
        name,
        &tree,
        &Report { stats: &stats, started, origin: origin.as_ref(), image, quiet: args.quiet },
    );
    Ok(())
}

/// Where the new distro's config and tree go, once it is sure that the
/// caller may make that kind of distro.
fn destinations(args: &CreateArgs, caller: &Caller) -> Result<(PathBuf, PathBuf), Error> {
    let name = args.name.as_str();
    if args.system && !caller.uid.is_root() {
        return Err(Error::msg(format!("--create {name} --system makes a system distro, which needs root"))
            .with_hint(format!("run: sudo distrorun --create {name} --system ..., or leave out --system")));
    }
    let config_dir = if args.system {
        paths::system_config_dir()
    } else {
        places::user_config_dir().ok_or_else(|| {
            Error::msg("cannot tell where per-user configs go: neither XDG_CONFIG_HOME nor HOME is set")
        })?
    };
    let data = match (&args.system, &args.state_dir) {
        (true, Some(dir)) if dir.is_absolute() => dir.clone(),
        (true, Some(dir)) => {
            return Err(Error::msg(format!("--state-dir {} is not an absolute path", dir.display())))
        }
        (true, None) => PathBuf::from(places::SYSTEM_STATE_DIR),
        (false, Some(_)) => return Err(Error::msg("--state-dir goes with --system")),
        (false, None) => places::data_dir()?,
    };
    Ok((config_dir, data))
}

/// The data directory, opened. A user's is made private to them (others
/// could otherwise reach the trees' setuid files, which run as the user's
/// subordinate ids); root's state directory is root's already.
fn open_data_dir(data: &Path, system: bool, caller: &Caller) -> Result<OwnedFd, Error> {
    if !system {
        return private_dir::ensure(data, caller.uid);
    }
    std::fs::create_dir_all(data).map_err(|e| error::io(format!("create {}", data.display()), &e))?;
    open_dir(data)
}

/// Checked under the name's lock, so that a create that just finished is
/// seen by the one that waited for it.
fn refuse_existing(name: &str, config_dir: &Path) -> Result<(), Error> {
    for conf in
        [paths::system_config_dir().join(format!("{name}.conf")), config_dir.join(format!("{name}.conf"))]
    {
        if conf.symlink_metadata().is_ok() {
            return Err(Error::msg(format!("distro {name} already exists: {}", conf.display()))
                .with_hint(format!("choose another name, or remove it first (distrorun --remove {name})")));
        }
    }
    Ok(())
}

/// Builds a tree as the entry `at` of the data directory, marked as
/// distrorun's own under `key` from its first moment; on failure, removes
/// what was written. Returns the tree's descriptor too, for the marker that
/// says it is complete. An image's tree gets a layer record; an update
/// builds on the tree `old` where it can.
fn build_at(
    place: &Place,
    at: &Path,
    key: &str,
    opened: Opened,
    args: &CreateArgs,
    old: Option<&str>,
) -> Result<(Stats, OwnedFd), Error> {
    let (data_fd, data) = (place.data_fd, place.data);
    mkdirat(data_fd, at.as_os_str(), Mode::S_IRWXU)
        .map_err(|e| Error::sys(format!("create {}", data.join(at).display()), e))?;
    let root = openat(
        data_fd,
        at.as_os_str(),
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Error::sys(format!("open {}", data.join(at).display()), e))?;
    let policy = XattrPolicy { privileged: args.system, keep: args.keep_xattrs.clone() };
    let tree_fd = nix::unistd::dup(&root).map_err(|e| Error::sys("duplicate a descriptor", e))?;
    let built = marker::mark(data_fd, data, key, &[(&root, Stage::Building)])
        .and_then(|()| record_for(place, &root, &opened, &policy, old, args.quiet))
        .and_then(|record| build(root, opened, args.quiet, args.limits, policy, record.as_ref()))
        .and_then(|stats| {
            if args.system {
                trusted_root(data_fd, at)?;
            }
            Ok(stats)
        });
    match built {
        Ok(stats) => Ok((stats, tree_fd)),
        Err(e) => {
            // Bad input leaves nothing behind; should this fail too, the next
            // create of the name cleans up.
            if remove::remove_leftover(data_fd, at, data).is_ok() {
                let _ = marker::unmark(data_fd, data, key);
            }
            Err(e)
        }
    }
}

/// The layer record an image's new tree gets, and the old tree's an update
/// builds on.
struct Record {
    dir: OwnedFd,
    at: PathBuf,
    ledger: Ledger,
    old: Option<layers::Old>,
}

fn policy_word(policy: &XattrPolicy) -> String {
    format!("privileged={} keep={}", policy.privileged, policy.keep.join(","))
}

fn record_for(
    place: &Place,
    root: &OwnedFd,
    opened: &Opened,
    policy: &XattrPolicy,
    old: Option<&str>,
    quiet: bool,
) -> Result<Option<Record>, Error> {
    let Opened::Image { image, .. } = opened else { return Ok(None) };
    let (key, dir) = layers::make(place.data_fd, place.data, root)?;
    let tree = nix::sys::stat::fstat(root).map_err(|e| Error::sys("look at the new tree", e))?.st_ino;
    let ledger = Ledger::new(tree, image.digests(), policy_word(policy), 1);
    let old = old.and_then(|name| match layers::read(place.data_fd, place.data, name) {
        Ok(old) => Some(old),
        Err(why) => {
            if !quiet {
                eprintln!("distrorun: every layer is unpacked again: the old tree {why}");
            }
            None
        }
    });
    Ok(Some(Record { dir, at: place.data.join(places::keyed_entry(&key)), ledger, old }))
}

/// How many first layers the old tree shares with the new image.
fn shared_layers(old: &Ledger, new: &Ledger) -> u16 {
    if old.policy != new.policy {
        return 0;
    }
    let same = old.layers.iter().zip(&new.layers).take_while(|(a, b)| a == b).count();
    u16::try_from(same).unwrap_or(0)
}

/// Builds the first `shared` layers from the old tree; says why not where
/// it cannot, and starts again from nothing.
fn reuse_old(unpacker: &mut Unpacker, old: &layers::Old, shared: u16, quiet: bool) -> Result<bool, Error> {
    match unpacker.reuse(old, shared) {
        Ok(()) => Ok(true),
        Err(Mismatch(why)) => {
            interrupt::check()?;
            if !quiet {
                eprintln!("distrorun: every layer is unpacked again: the old tree cannot be built on: {why}");
            }
            unpacker.restart()?;
            Ok(false)
        }
    }
}

/// Unpacks the source into the new tree `root` and adds the mount points.
fn build(
    root: OwnedFd,
    opened: Opened,
    quiet: bool,
    limits: Limits,
    policy: XattrPolicy,
    record: Option<&Record>,
) -> Result<Stats, Error> {
    let mount_root = nix::unistd::dup(&root).map_err(|e| Error::sys("duplicate a descriptor", e))?;
    let mut unpacker = Unpacker::new(root, limits, policy);
    let mut shared = 0;
    if let Some(r) = record {
        let stash =
            layers::stash_of(&r.dir).map_err(|e| Error::sys(format!("open {}/stash", r.at.display()), e))?;
        unpacker.track(r.ledger.emptied(), stash);
        shared = r.old.as_ref().map_or(0, |old| shared_layers(&old.ledger, &r.ledger));
    }
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
            let mut bar = ImageBar::new(quiet, &image.sizes());
            // The shared layers are linked from the old tree while the
            // first new one is already being fetched.
            let mut prelude = |u: &mut Unpacker| match record.and_then(|r| r.old.as_ref()) {
                Some(old) => reuse_old(u, old, shared, quiet),
                None => Ok(false),
            };
            let result = image::apply(&mut unpacker, &image, &mut bar, usize::from(shared), &mut prelude);
            bar.clear();
            result
        }
        Opened::Debian(running) => unpack_mmdebstrap(&mut unpacker, running, quiet),
    };
    result?;
    make_mount_points(&mount_root)?;
    make_device_dirs(&mount_root)?;
    unpacker.finish()?;
    if let Some(r) = record {
        keep_record(&mut unpacker, r, quiet)?;
    }
    Ok(unpacker.stats)
}

/// The new tree's layer record, its files' identities taken now that the
/// tree is complete. A tree whose record cannot be completed is kept
/// without one: its next update unpacks every layer.
fn keep_record(unpacker: &mut Unpacker, r: &Record, quiet: bool) -> Result<(), Error> {
    match unpacker.sealed_ledger() {
        Some(Ok(ledger)) => layers::write(&r.dir, &r.at, &ledger)?,
        Some(Err(why)) => {
            if let Ok(stash) = layers::stash_of(&r.dir) {
                let _ = remove::empty_dir(&stash, &|_| false);
            }
            if !quiet {
                eprintln!("distrorun: no layer record is kept for the new tree: {why}");
            }
        }
        None => {}
    }
    Ok(())
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
            match running.finish_after_close() {
                Err(theirs) => Err(theirs),
                Ok(()) => Err(ours),
            }
        }
    }
}

fn open_dir(dir: &Path) -> Result<OwnedFd, Error> {
    open(dir, OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(|e| Error::sys(format!("open {}", dir.display()), e))
}

/// A `.NAME.partial` tree left by an interrupted create or remove, and a
/// `NAME` tree without a config (interrupted between the two renames), are
/// reaped, under the name's lock, when the marker says distrorun made them;
/// anything else of those names is refused with its path, and so is the
/// complete tree of a distro whose config is elsewhere.
fn clean_leftovers(data_fd: &OwnedFd, data: &Path, name: &str, config_dir: &Path) -> Result<(), Error> {
    let partial = places::partial_name(name);
    let partial = partial.to_str().unwrap_or_default();
    let mut present = Vec::new();
    for leftover in [partial, name] {
        match fstatat(data_fd, leftover, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(_) => {
                let stage = marker::require(data_fd, data, name, leftover)?;
                if leftover == name && stage == Stage::Complete {
                    return Err(Error::msg(format!(
                        "refusing to delete {}: it is the tree of an existing distro {name}, whose config is not in {}",
                        data.join(name).display(),
                        config_dir.display()
                    ))
                    .with_hint(format!("remove it with distrorun --remove {name} where its config is found")));
                }
                present.push(leftover);
            }
            Err(Errno::ENOENT) => {}
            Err(e) => return Err(Error::sys(format!("look at {}", data.join(leftover).display()), e)),
        }
    }
    for leftover in present {
        remove::remove_leftover(data_fd, Path::new(leftover), data)?;
    }
    marker::unmark(data_fd, data, name)
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
    let etc = tree::open_in_root(root, b"etc", OFlag::O_RDONLY | OFlag::O_DIRECTORY)
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

/// The directories a launch with devices shows vendor files in
/// (docs/gpu.md), where the tree has their parent: made now, so that no
/// launch has to show a parent's entries instead, or go without them.
fn make_device_dirs(root: &OwnedFd) -> Result<(), Error> {
    let fail = |what: &str, e: Errno| Error::sys(format!("create /{what} in the new tree"), e);
    for dir in DEVICE_DIRS {
        let (parent, name) = dir.rsplit_once('/').unwrap_or(("", dir));
        let Ok(parent_fd) = tree::open_in_root(root, parent.as_bytes(), OFlag::O_RDONLY | OFlag::O_DIRECTORY)
        else {
            continue;
        };
        match mkdirat(&parent_fd, name, Mode::from_bits_truncate(0o755)) {
            Ok(()) => fchownat(
                &parent_fd,
                name,
                Some(Uid::from_raw(0)),
                Some(Gid::from_raw(0)),
                AtFlags::AT_SYMLINK_NOFOLLOW,
            )
            .map_err(|e| fail(dir, e))?,
            Err(Errno::EEXIST) => {}
            Err(e) => return Err(fail(dir, e)),
        }
    }
    Ok(())
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

/// What a config says the distro was made from.
struct Config<'a> {
    what: &'a str,
    origin: Option<&'a Origin>,
    system: bool,
}

/// `placing` is `RENAME_NOREPLACE` for a new distro; `--update` replaces
/// its config.
fn write_config(
    place: &Place,
    config: &Config,
    name: &str,
    tree: &Path,
    placing: RenameFlags,
) -> Result<(), Error> {
    let (config_fd, config_dir, what, system) =
        (place.config_fd, place.config_dir, config.what, config.system);
    let Some(dir) = tree.to_str().filter(|d| !d.contains(['\n', '"', '\\'])) else {
        return Err(Error::msg(format!(
            "cannot write a config for {}: the path has characters a config cannot hold",
            tree.display()
        )));
    };
    let mut text = String::new();
    let _ = writeln!(text, "// Made by `distrorun --create {name}` from {}.", comment_safe(what));
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
    if let Some(origin) = config.origin {
        let _ = writeln!(text, "    // The image it was made from, which --update pulls again.");
        let _ = writeln!(text, "    image: {},", origin.to_ron());
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
    file.write_all(text.as_bytes()).and_then(|()| file.sync_all()).map_err(|e| {
        error::io(format!("write the config {}", config_dir.join(format!("{name}.conf")).display()), &e)
    })?;
    renameat2(
        config_fd,
        temp.as_str(),
        config_fd,
        OsStr::from_bytes(format!("{name}.conf").as_bytes()),
        placing,
    )
    .map_err(fail)
}

/// `text` for a comment line: a control character (a newline in a file
/// name, say) is written as its escape, so that it cannot end the comment
/// and start a line of config.
fn comment_safe(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { c.escape_default().to_string() } else { c.to_string() })
        .collect()
}

/// What a finished create or update says of itself.
struct Report<'a> {
    stats: &'a Stats,
    started: Instant,
    origin: Option<&'a Origin>,
    image: Option<Arc<dyn ImageSource>>,
    quiet: bool,
}

/// The summary line (unless quiet), and a warning the user must see even
/// so: an image whose programs cannot run here.
fn report(verb: &str, name: &str, tree: &Path, r: &Report) {
    if !r.quiet {
        let note = r.image.as_ref().and_then(|i| i.note());
        summary(verb, name, tree, r.stats, r.started, r.origin, note.as_deref());
    }
    if let Some(warning) = r.image.as_ref().and_then(|i| i.warning()) {
        eprintln!("distrorun: distro {name}: {warning}");
    }
}

fn summary(
    verb: &str,
    name: &str,
    tree: &Path,
    stats: &Stats,
    started: Instant,
    origin: Option<&Origin>,
    note: Option<&str>,
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
        (stats.dropped_xattrs, "privileged extended attributes (trusted.*, security.*; see --keep-xattr)"),
    ]
    .iter()
    .filter(|(n, _)| *n > 0)
    .map(|(n, what)| format!("{n} {what}"))
    .collect();
    if stats.reused_layers > 0 {
        let _ = write!(
            line,
            "; took {} layer{} ({} entries) from the old tree",
            stats.reused_layers,
            if stats.reused_layers == 1 { "" } else { "s" },
            stats.reused_entries
        );
    }
    if let Some(note) = note {
        let _ = write!(line, "; {note}");
    }
    if skipped.is_empty() {
        line.push_str("; nothing skipped");
    } else {
        let _ = write!(line, "; skipped {}", skipped.join(", "));
    }
    eprintln!("{line}");
}
