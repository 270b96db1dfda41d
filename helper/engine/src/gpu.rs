//! Devices: the files a [`GpuPlan`] brings in, made visible where the
//! distro's own loaders look, with nothing written into the tree.
//!
//! [`prepare`] runs before any mount, as the caller and with no capability:
//! it opens every host file (through the trust walk under the setuid
//! helper), reads each library's ELF class, checks the device nodes, and
//! builds the private `ld.so.cache`: the distro's own, read through the
//! distro directory, plus the vendor libraries.
//!
//! [`stage`] and [`install`] run with the right to mount, as `user_db`'s
//! do: a ramfs that only the private namespace holds, beneath the new root,
//! gets one directory per distro directory that receives files; each holds
//! that directory's own entries (bound from the tree, symlinks copied) and
//! the vendor files (bound from the host), and is bound, read-only, nosuid
//! and nodev, over its original. The private cache is bound over
//! `/etc/ld.so.cache`.

use std::ffi::{CString, OsStr, OsString};
use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use distrorun_config::cdi::Trust;
use distrorun_config::gpu::{self, GpuPlan, Place, Source, LD_CACHE, LIB32_DIR, LIB_DIR};
use distrorun_config::load::read_upto;
use distrorun_config::schema::is_within;
use distrorun_config::{errno_of, ldcache, trust, Attrs, Plan};
use nix::dir::Dir;
use nix::errno::Errno;
use nix::fcntl::{openat, openat2, readlinkat, AtFlags, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{fstat, fstatat, mkdirat, Mode, SFlag};
use nix::sys::uio::pread;
use nix::unistd::symlinkat;

use crate::userdb::write_file;
use crate::{mount, sys, Error, Log};

/// The largest distro `ld.so.cache` read.
const MAX_CACHE: u64 = 64 << 20;
/// The most entries of one distro directory shown beside the vendor files.
const MAX_ENTRIES: usize = 4096;

/// The bound directories: read-only, and nothing in them gains privilege.
const READ_ONLY: Attrs = Attrs { read_only: true, nosuid: true, nodev: true, noexec: false };

enum Item {
    Bind(OwnedFd),
    Link(CString),
    Contents(Vec<u8>),
}

/// Everything opened and decided, ready for [`stage`] and [`install`].
pub struct Prepared {
    /// Inside paths, each under one of [`gpu::MERGED_DIRS`].
    files: Vec<(PathBuf, Item)>,
    /// None when no library is added.
    cache: Option<Vec<u8>>,
    /// `NAME=VALUE` for the command's environment.
    pub env: Vec<String>,
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared").field("files", &self.files.len()).finish_non_exhaustive()
    }
}

fn device_error(msg: String, hint: Option<String>) -> Error {
    let e = Error::msg(msg);
    match hint {
        Some(h) => e.with_hint(h),
        None => e,
    }
}

/// Opens and checks what `gpu` names; None when no device was asked for.
pub fn prepare(
    plan: &Plan,
    gpu: &GpuPlan,
    distro_dir: &OwnedFd,
    trust: Trust,
    log: Log,
) -> Result<Option<Prepared>, Error> {
    if gpu.is_empty() {
        return Ok(None);
    }
    // Before any host file is opened: their lookups too are newer calls.
    require_new_mount_api(plan)?;
    for note in &gpu.notes {
        log.step(format_args!("{note}"));
    }
    check_nodes(plan, gpu)?;
    let mut files: Vec<(PathBuf, Item)> = Vec::with_capacity(gpu.files.len());
    let mut entries: Vec<ldcache::Entry> = Vec::new();
    // (link, target)
    let mut sonames: Vec<(String, String)> = Vec::new();
    let mut links: Vec<(String, String)> = Vec::new();
    for f in &gpu.files {
        let (inside, item) = match (&f.place, &f.source) {
            (Place::Library(name), Source::Host(host)) => {
                let (fd, flags, soname) = open_library(host, trust)?;
                let dir = if ldcache::is_native(flags) { LIB_DIR } else { LIB32_DIR };
                let inside = Path::new(dir).join(name);
                entries.push(cache_entry(flags, name, &inside));
                // ldconfig's soname link, which a spec leaves to its
                // update-ldcache hook; only for a soname of the same
                // library (libcuda.so.1 for libcuda.so.550.1), so that no
                // other name takes a distro library's place in the cache.
                if let Some(soname) =
                    soname.filter(|so| so != name && stem(so).is_some() && stem(so) == stem(name))
                {
                    sonames.push((soname, name.clone()));
                }
                (inside, Item::Bind(fd))
            }
            (Place::Library(name), Source::Link(target)) => {
                links.push((name.clone(), target.clone()));
                continue;
            }
            (Place::At(inside), Source::Host(host)) => (inside.clone(), Item::Bind(open_host(host, trust)?)),
            (Place::At(inside), Source::Contents(bytes)) => (inside.clone(), Item::Contents(bytes.clone())),
            (Place::At(inside), Source::Link(target)) => {
                (inside.clone(), Item::Link(cstring(target.as_bytes())?))
            }
            (Place::Library(name), Source::Contents(_)) => {
                return Err(device_error(format!("a library {name} cannot be given as contents"), None))
            }
        };
        log.step(format_args!("devices: {} ({})", inside.display(), describe(f)));
        files.push((inside, item));
    }
    // Links after every library, sonames first, so that each finds its
    // target's directory and class.
    for (name, target) in sonames.into_iter().chain(links) {
        let Some(t) = entries.iter().find(|e| e.key == target.as_bytes()).cloned() else {
            log.step(format_args!("devices: skip {name} -> {target}: the target is not brought in"));
            continue;
        };
        let dir = if ldcache::is_native(t.flags) { LIB_DIR } else { LIB32_DIR };
        let inside = Path::new(dir).join(&name);
        if files.iter().any(|(p, _)| *p == inside) {
            continue;
        }
        entries.push(cache_entry(t.flags, &name, &inside));
        log.step(format_args!("devices: {} (-> {target})", inside.display()));
        files.push((inside, Item::Link(cstring(target.as_bytes())?)));
    }
    if files.is_empty() && gpu.env.is_empty() {
        // AMD and Intel through /dev alone: nothing to add.
        return Ok(None);
    }
    let cache =
        if entries.is_empty() { None } else { Some(private_cache(plan, distro_dir, trust, &entries)?) };
    if cache.is_some() {
        log.step(format_args!(
            "devices: {LD_CACHE}: the distro's, plus {} vendor libraries (private, read-only)",
            entries.len()
        ));
    }
    Ok(Some(Prepared { files, cache, env: gpu.env.clone() }))
}

/// The distro's own `ld.so.cache` with the vendor libraries added.
fn private_cache(
    plan: &Plan,
    distro_dir: &OwnedFd,
    trust: Trust,
    entries: &[ldcache::Entry],
) -> Result<Vec<u8>, Error> {
    let distro_cache = read_distro_cache(plan, distro_dir, trust)?;
    let Some(parsed) = ldcache::parse(&distro_cache) else {
        return Err(device_error(
            format!(
                "cannot provide device libraries in distro {}: its {LD_CACHE} is not in a format distrorun reads",
                plan.distro
            ),
            Some("run ldconfig as root inside the distro".into()),
        ));
    };
    Ok(ldcache::write(&ldcache::merge(parsed, entries)))
}

/// A host library, opened as [`open_host`] opens files, with its cache
/// flags and its soname.
fn open_library(host: &Path, trust: Trust) -> Result<(OwnedFd, i32, Option<String>), Error> {
    let fd = open_host(host, trust)?;
    let flags = elf_flags(&fd).ok_or_else(|| {
        device_error(
            format!("cannot use {} as a library: it is not an ELF shared object", host.display()),
            None,
        )
    })?;
    let soname = ldcache::elf_soname(|at, buf| pread(fd.as_fd(), buf, i64::try_from(at).ok()?).ok())
        .and_then(|s| String::from_utf8(s).ok());
    Ok((fd, flags, soname))
}

/// A library name up to its `.so`.
fn stem(name: &str) -> Option<&str> {
    name.find(".so").map(|i| &name[..i])
}

fn describe(f: &gpu::GpuFile) -> String {
    match &f.source {
        Source::Host(p) => format!("from {}", p.display()),
        Source::Link(t) => format!("-> {t}"),
        Source::Contents(_) => "rewritten to name its library by soname".into(),
    }
}

fn cstring(bytes: &[u8]) -> Result<CString, Error> {
    CString::new(bytes).map_err(|_| Error::msg("a device file name contains a NUL byte"))
}

fn cache_entry(flags: i32, name: &str, inside: &Path) -> ldcache::Entry {
    ldcache::Entry {
        flags,
        key: name.as_bytes().to_vec(),
        value: inside.as_os_str().as_bytes().to_vec(),
        hwcap: 0,
    }
}

/// Device nodes come with the `/dev` volume; each must be there.
fn check_nodes(plan: &Plan, gpu: &GpuPlan) -> Result<(), Error> {
    if gpu.nodes.is_empty() {
        return Ok(());
    }
    let dev_mapped = plan.mounts.iter().any(|m| m.dst == Path::new("/dev") && m.src == Path::new("/dev"));
    if !dev_mapped {
        return Err(device_error(
            format!(
                "the devices {} need /dev, which distro {} does not map",
                gpu.devices.join(", "),
                plan.distro
            ),
            Some(format!("add \"/dev\" to mapped_volumes in {}", plan.config.display())),
        ));
    }
    for node in &gpu.nodes {
        match nix::sys::stat::stat(node) {
            Ok(st)
                if matches!(
                    SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT,
                    SFlag::S_IFCHR | SFlag::S_IFBLK
                ) => {}
            Ok(_) => {
                return Err(device_error(
                    format!("cannot use device node {}: it is not a device", node.display()),
                    None,
                ))
            }
            Err(e) => return Err(device_error(
                format!("cannot use device node {}: {}", node.display(), e.desc()),
                Some(
                    "load the driver's kernel module (the node appears with it), or check the device name"
                        .into(),
                ),
            )),
        }
    }
    Ok(())
}

/// A host file to bind: under the helper through the trust walk (root's,
/// in root's directories, not writable by others), else as the caller.
fn open_host(path: &Path, trust: Trust) -> Result<OwnedFd, Error> {
    let fd = match trust {
        Trust::RootOnly => {
            trust::open_trusted_file(path).map_err(|e| Error::msg(format!("cannot use device file: {e}")))?
        }
        Trust::Caller => {
            let how = OpenHow::new()
                .flags(OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)
                .resolve(ResolveFlag::RESOLVE_NO_MAGICLINKS);
            openat2(nix::fcntl::AT_FDCWD, path, how)
                .map_err(|e| Error::sys(format!("open device file {}", path.display()), e))?
        }
    };
    let st = fstat(fd.as_fd()).map_err(|e| Error::sys(format!("examine {}", path.display()), e))?;
    if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFREG {
        return Err(Error::msg(format!(
            "cannot use device file {}: it is not a regular file",
            path.display()
        )));
    }
    Ok(fd)
}

fn elf_flags(fd: &OwnedFd) -> Option<i32> {
    let mut header = [0u8; 20];
    let n = pread(fd.as_fd(), &mut header, 0).ok()?;
    ldcache::flags_for_elf(&header[..n])
}

/// The distro's `/etc/ld.so.cache`, through the distro directory, never
/// through a symlink; under the helper only root's.
fn read_distro_cache(plan: &Plan, distro_dir: &OwnedFd, trust: Trust) -> Result<Vec<u8>, Error> {
    let host = plan.host_target(Path::new(LD_CACHE));
    let how = OpenHow::new()
        .flags(OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK)
        .resolve(
            ResolveFlag::RESOLVE_IN_ROOT
                | ResolveFlag::RESOLVE_NO_SYMLINKS
                | ResolveFlag::RESOLVE_NO_MAGICLINKS,
        );
    let fd = openat2(distro_dir.as_fd(), &LD_CACHE[1..], how).map_err(|e| {
        let err = Error::sys(format!("open {} of distro {}", host.display(), plan.distro), e);
        if e == Errno::ENOENT {
            err.with_hint(
                "device libraries are named in a private copy of it; run ldconfig as root inside the distro",
            )
        } else {
            err
        }
    })?;
    let st = fstat(fd.as_fd()).map_err(|e| Error::sys(format!("examine {}", host.display()), e))?;
    let regular = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFREG;
    if !regular || (trust == Trust::RootOnly && (st.st_uid != 0 || st.st_mode & 0o022 != 0)) {
        return Err(Error::msg(format!(
            "refusing to use {}: it is not a regular file of root's that only root can change",
            host.display()
        )));
    }
    read_upto(File::from(fd), u64::try_from(st.st_size).unwrap_or(0), MAX_CACHE)
        .map_err(|e| Error::sys(format!("read {}", host.display()), errno_of(&e)))?
        .ok_or_else(|| Error::msg(format!("refusing to use {}: it is larger than 64 MiB", host.display())))
}

/// The ramfs, attached beneath the new root, as [`crate::userdb::stage`]
/// attaches its own.
#[derive(Debug)]
pub struct Staged {
    ramfs: OwnedFd,
}

/// Devices are shown through detached mount trees: an older kernel is
/// told so before anything is opened or mounted.
fn require_new_mount_api(plan: &Plan) -> Result<(), Error> {
    if mount::new_mount_api() {
        return Ok(());
    }
    Err(Error::msg(format!(
        "cannot bring devices into distro {}: that needs Linux 5.12 or later (open_tree, move_mount, mount_setattr)",
        plan.distro
    )))
}

/// Devices are shown through detached trees (`open_tree`, `move_mount`,
/// `mount_setattr`), which need Linux 5.12; an older kernel is told so
/// before anything is mounted.
pub fn stage(plan: &Plan, under: &OwnedFd) -> Result<Staged, Error> {
    require_new_mount_api(plan)?;
    let ramfs = (|| -> Result<OwnedFd, Errno> {
        let fs = sys::fsopen(c"ramfs")?;
        sys::fsconfig_create(fs.as_fd())?;
        let ramfs = sys::fsmount(fs.as_fd(), sys::MOUNT_ATTR_NOSUID | sys::MOUNT_ATTR_NODEV)?;
        attach(&ramfs, under)?;
        Ok(ramfs)
    })()
    .map_err(|e| {
        mount::error(format!("make the private directory for the devices of distro {}", plan.distro), e)
    })?;
    Ok(Staged { ramfs })
}

/// Fills the ramfs and binds its directories and the cache over their
/// places in the new root. After the volumes, so that what the directories
/// show of the tree is what the command would see.
pub fn install(
    plan: &Plan,
    root: &OwnedFd,
    staged: &Staged,
    prepared: &Prepared,
    log: Log,
) -> Result<(), Error> {
    let ramfs = &staged.ramfs;
    let groups = group_by_mount_point(plan, root, prepared, log)?;
    for (index, (at, ours)) in groups.iter().enumerate() {
        let shown = at.display();
        let fail = |what: &str, e: Errno| {
            mount::error(format!("{what} for the device files in {shown} of distro {}", plan.distro), e)
        };
        let name = cstring(index.to_string().as_bytes())?;
        mkdirat(ramfs.as_fd(), name.as_c_str(), Mode::from_bits_truncate(0o755))
            .map_err(|e| fail("make a directory", e))?;
        let merged = openat(
            ramfs.as_fd(),
            name.as_c_str(),
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| fail("open the private directory", e))?;
        let taken: Vec<OsString> = ours
            .iter()
            .filter_map(|(p, _)| p.strip_prefix(at).ok()?.components().next())
            .map(|c| c.as_os_str().to_os_string())
            .collect();
        mirror(root, at, &merged, &taken).map_err(|e| fail("show the distro's own entries", e))?;
        for (inside, item) in ours {
            let rel = inside.strip_prefix(at).unwrap_or(inside);
            place(&merged, rel, item).map_err(|e| fail(&format!("provide {}", inside.display()), e))?;
        }
    }
    let fail =
        |what: &str, e: Errno| mount::error(format!("{what} for the devices of distro {}", plan.distro), e);
    if let Some(cache) = &prepared.cache {
        write_file(ramfs, c"ld.so.cache", cache).map_err(|e| fail("write the private ld.so.cache", e))?;
    }
    // Parents first: a deeper directory is opened through its parent's
    // private copy once that is attached.
    for (index, (at, _)) in groups.iter().enumerate() {
        let name = cstring(index.to_string().as_bytes())?;
        let copy = sys::open_tree_at(
            ramfs.as_fd(),
            &name,
            sys::OPEN_TREE_CLONE | sys::OPEN_TREE_CLOEXEC | sys::AT_RECURSIVE,
        )
        .map_err(|e| fail(&format!("copy the private {}", at.display()), e))?;
        // On the detached copy: the ramfs itself lies beneath the new
        // root, and a recursive change on it would reach every mount.
        mount::set_attrs_fd(&copy, READ_ONLY).map_err(|e| fail("make the device files read-only", e))?;
        let target = mount::open_target(root, at).map_err(|e| fail(&format!("open {}", at.display()), e))?;
        attach(&copy, target.fd()).map_err(|e| fail(&format!("mount the private {}", at.display()), e))?;
        log.step(format_args!(
            "devices: {}: the distro's entries and the device files ({READ_ONLY})",
            at.display()
        ));
    }
    if prepared.cache.is_none() {
        return Ok(());
    }
    let copy =
        sys::open_tree_at(ramfs.as_fd(), c"ld.so.cache", sys::OPEN_TREE_CLONE | sys::OPEN_TREE_CLOEXEC)
            .map_err(|e| fail("copy the private ld.so.cache", e))?;
    mount::set_attrs_fd(&copy, READ_ONLY).map_err(|e| fail("make the private ld.so.cache read-only", e))?;
    let target = mount::open_target(root, Path::new(LD_CACHE)).map_err(|e| {
        Error::sys(
            format!("open {} of distro {}", plan.host_target(Path::new(LD_CACHE)).display(), plan.distro),
            e,
        )
    })?;
    attach(&copy, target.fd()).map_err(|e| fail("mount the private ld.so.cache", e))?;
    log.step(format_args!("devices: {LD_CACHE} from a private ramfs (read-only)"));
    Ok(())
}

type Group<'a> = (PathBuf, Vec<&'a (PathBuf, Item)>);

/// The files by the directory of the tree they are shown in: the one
/// [`gpu::MERGED_DIRS`] names, or, where the distro lacks it, its nearest
/// existing parent below `/usr/share` (a guest without Mesa's Vulkan
/// drivers has `/usr/share/vulkan` at most). Parents first.
fn group_by_mount_point<'a>(
    plan: &Plan,
    root: &OwnedFd,
    prepared: &'a Prepared,
    log: Log,
) -> Result<Vec<Group<'a>>, Error> {
    let mut places: Vec<(&str, Option<PathBuf>)> = Vec::new();
    let mut groups: Vec<Group<'a>> = Vec::new();
    for file in &prepared.files {
        let Some(dir) = gpu::merged_dir_of(&file.0) else { continue };
        let at = if let Some((_, at)) = places.iter().find(|(d, _)| *d == dir) {
            at.clone()
        } else {
            let at = existing_ancestor(root, Path::new(dir)).map_err(|e| {
                let host = plan.host_target(Path::new(dir));
                Error::sys(format!("open {} of distro {}", host.display(), plan.distro), e)
            })?;
            if at.is_none() {
                log.step(format_args!(
                    "devices: skip {dir}: the distro has no such directory (--doctor names it)"
                ));
            }
            places.push((dir, at.clone()));
            at
        };
        let Some(at) = at else {
            if is_within(&file.0, Path::new("/usr/local/lib")) {
                let host = plan.host_target(Path::new("/usr/local/lib"));
                return Err(Error::msg(format!(
                    "cannot provide device libraries in distro {}: {} does not exist",
                    plan.distro,
                    host.display()
                ))
                .with_hint(format!(
                    "distrorun never changes the distro tree; as root, mkdir -p {}",
                    host.display()
                )));
            }
            continue;
        };
        match groups.iter_mut().find(|(p, _)| *p == at) {
            Some((_, files)) => files.push(file),
            None => groups.push((at, vec![file])),
        }
    }
    groups.sort_by_key(|(at, _)| at.components().count());
    Ok(groups)
}

/// `dir`, or its nearest parent that the new root has, no higher than
/// three levels (`/usr/share/vulkan`); None when none of them exists.
fn existing_ancestor(root: &OwnedFd, dir: &Path) -> Result<Option<PathBuf>, Errno> {
    let mut at = dir;
    loop {
        match mount::open_target(root, at) {
            Ok(_) => return Ok(Some(at.to_path_buf())),
            Err(Errno::ENOENT) => match at.parent() {
                // Not /usr/share itself, whose hundreds of entries would
                // each need a bind.
                Some(parent) if parent.components().count() > 3 => at = parent,
                _ => return Ok(None),
            },
            Err(e) => return Err(e),
        }
    }
}

/// Shows the entries of `dir` in the new root inside `merged`: directories
/// and files bound, symlinks copied; the names in `taken` left out.
fn mirror(root: &OwnedFd, dir: &Path, merged: &OwnedFd, taken: &[OsString]) -> Result<(), Errno> {
    let rel: PathBuf = Path::new(dir).components().filter(|c| matches!(c, Component::Normal(_))).collect();
    let how = OpenHow::new().flags(OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC).resolve(
        ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_SYMLINKS | ResolveFlag::RESOLVE_NO_MAGICLINKS,
    );
    let fd = openat2(root.as_fd(), &rel, how)?;
    let mut listing = Dir::from_fd(fd)?;
    let mut names: Vec<CString> = Vec::new();
    for entry in listing.iter() {
        let entry = entry?;
        let name = entry.file_name();
        if name == c"." || name == c".." || taken.iter().any(|t| t.as_bytes() == name.to_bytes()) {
            continue;
        }
        if names.len() >= MAX_ENTRIES {
            return Err(Errno::E2BIG);
        }
        names.push(name.to_owned());
    }
    let dirfd = listing.as_fd();
    for name in names {
        let st = fstatat(dirfd, name.as_c_str(), AtFlags::AT_SYMLINK_NOFOLLOW)?;
        match SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT {
            SFlag::S_IFLNK => {
                let target = readlinkat(dirfd, name.as_c_str())?;
                symlinkat(target.as_os_str(), merged.as_fd(), name.as_c_str())?;
            }
            kind => {
                let copy = sys::open_tree_at(
                    dirfd,
                    &name,
                    sys::OPEN_TREE_CLONE | sys::OPEN_TREE_CLOEXEC | sys::AT_RECURSIVE,
                )?;
                let point = make_point(merged, &name, kind == SFlag::S_IFDIR)?;
                attach(&copy, &point)?;
            }
        }
    }
    Ok(())
}

/// Moves the detached tree `tree` onto `target`.
fn attach(tree: &OwnedFd, target: &OwnedFd) -> Result<(), Errno> {
    sys::move_mount(tree.as_fd(), target.as_fd())
}

/// An empty directory or file in `dir` to mount on, opened `O_PATH`.
fn make_point(dir: &OwnedFd, name: &CString, is_dir: bool) -> Result<OwnedFd, Errno> {
    if is_dir {
        mkdirat(dir.as_fd(), name.as_c_str(), Mode::from_bits_truncate(0o755))?;
    } else {
        drop(openat(
            dir.as_fd(),
            name.as_c_str(),
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o644),
        )?);
    }
    openat(dir.as_fd(), name.as_c_str(), OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC, Mode::empty())
}

/// One vendor file at `rel` below `merged`, its directories made.
fn place(merged: &OwnedFd, rel: &Path, item: &Item) -> Result<(), Errno> {
    let mut parts: Vec<&OsStr> = rel
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n),
            _ => None,
        })
        .collect();
    let leaf = CString::new(parts.pop().ok_or(Errno::EINVAL)?.as_bytes()).map_err(|_| Errno::EINVAL)?;
    let mut dir =
        openat(merged.as_fd(), c".", OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())?;
    for part in parts {
        let part = CString::new(part.as_bytes()).map_err(|_| Errno::EINVAL)?;
        match mkdirat(dir.as_fd(), part.as_c_str(), Mode::from_bits_truncate(0o755)) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(e) => return Err(e),
        }
        dir = openat(
            dir.as_fd(),
            part.as_c_str(),
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
    }
    match item {
        Item::Bind(source) => {
            let copy = sys::open_tree(source.as_fd(), sys::OPEN_TREE_CLONE | sys::OPEN_TREE_CLOEXEC)?;
            let point = make_point(&dir, &leaf, false)?;
            attach(&copy, &point)
        }
        Item::Link(target) => symlinkat(OsStr::from_bytes(target.to_bytes()), dir.as_fd(), leaf.as_c_str()),
        Item::Contents(bytes) => write_file(&dir, &leaf, bytes),
    }
}
