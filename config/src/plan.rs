//! The plan: config plus command line turned into plain data, before any
//! system call. The engine only carries a plan out, so everything that is
//! decided here is unit-testable without privilege, and `--dry-run` and
//! `--verbose` show exactly what will be done.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::path::{Path, PathBuf};

use crate::schema::{depth, is_within, path_problem};
use crate::{Error, Found, UserDb};

/// The files that `user_db` provides, as paths inside the distro.
pub const IDENTITY_FILES: [&str; 2] = ["/etc/passwd", "/etc/group"];

/// Mount attributes, applied recursively to a mount and all its submounts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Attrs {
    pub read_only: bool,
    pub nosuid: bool,
    pub nodev: bool,
    pub noexec: bool,
}

impl Attrs {
    const HOST: Attrs = Attrs { read_only: false, nosuid: true, nodev: true, noexec: false };
    const DEV: Attrs = Attrs { read_only: false, nosuid: true, nodev: false, noexec: false };
    const KERNEL: Attrs = Attrs { read_only: false, nosuid: true, nodev: true, noexec: true };
}

impl fmt::Display for Attrs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = [
            (self.read_only, "ro"),
            (!self.read_only, "rw"),
            (self.nosuid, "nosuid"),
            (self.nodev, "nodev"),
            (self.noexec, "noexec"),
        ];
        let on: Vec<&str> = names.iter().filter(|(set, _)| *set).map(|(_, n)| *n).collect();
        f.write_str(&on.join(","))
    }
}

/// Who asked for a mount; it decides how errors are worded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VolumeOrigin {
    /// /proc and /sys, always mounted.
    Kernel,
    /// `mapped_volumes` in the config.
    Config,
    /// `--extra-volume` on the command line.
    Extra,
}

/// What the engine verifies on a volume's source once it has opened it,
/// before mounting it. The checks run on the open descriptor, so the path
/// is looked up once and what is checked is what is mounted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SourceChecks {
    /// It must be a directory that the caller may search, judged by the
    /// caller's real ids and no capability.
    pub caller_may_search: bool,
    /// It must not lie on procfs, sysfs or another kernel file system,
    /// whatever path led there.
    pub not_kernel_fs: bool,
}

impl SourceChecks {
    /// A path the caller names: it must give them nothing they could not
    /// reach themselves, and nothing of the kernel's beyond /proc and /sys,
    /// which are always mounted anyway.
    const CALLER: SourceChecks = SourceChecks { caller_may_search: true, not_kernel_fs: true };
}

/// One recursive bind of a host path onto a path inside the distro.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountSpec {
    pub src: PathBuf,
    /// Inside the distro, relative to its root.
    pub dst: PathBuf,
    pub attrs: Attrs,
    pub optional: bool,
    pub origin: VolumeOrigin,
    pub checks: SourceChecks,
}

/// What to exec once inside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Argv(Vec<OsString>),
    /// No command given: the caller's `$SHELL` if the distro has it, else /bin/sh.
    Shell {
        preferred: Option<PathBuf>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub distro: String,
    pub config: PathBuf,
    /// The distro's root directory on the host.
    pub root: PathBuf,
    pub root_attrs: Attrs,
    /// In the order they are made: parents before children.
    pub mounts: Vec<MountSpec>,
    /// The working directory inside the distro.
    pub workdir: PathBuf,
    /// True when `workdir` came from the caller's current directory rather
    /// than `--directory`, for the wording of the error when it is missing.
    pub workdir_is_cwd: bool,
    pub command: Command,
    /// Setuid programs inside may gain privilege (helper backend only).
    pub allow_setuid: bool,
    /// Which `/etc/passwd` and `/etc/group` the command sees.
    pub user_db: UserDb,
    /// The devices asked for, by the config and the command line, in that
    /// order, each once; what they bring in is [`crate::gpu::resolve`]'s.
    pub devices: Vec<String>,
}

/// Everything the plan is made from, gathered by the caller.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    pub found: &'a Found,
    pub extra_volumes: &'a [PathBuf],
    pub directory: Option<&'a Path>,
    /// The caller's current directory on the host, absolute.
    pub cwd: &'a Path,
    pub command: Vec<OsString>,
    /// The caller's `$SHELL`.
    pub shell: Option<PathBuf>,
    /// `--device` and `--gpu`, in the order given.
    pub devices: &'a [String],
}

impl Plan {
    pub fn new(req: Request) -> Result<Plan, Error> {
        let distro = &req.found.distro;
        let root = distro.dir.clone();
        let mut mounts = vec![kernel_mount("/proc"), kernel_mount("/sys")];
        for v in &distro.mapped_volumes {
            let attrs = if v.dst == Path::new("/dev") { Attrs::DEV } else { Attrs::HOST };
            mounts.push(MountSpec {
                src: v.src.clone(),
                dst: v.dst.clone(),
                attrs: Attrs { read_only: v.read_only, ..attrs },
                optional: v.optional,
                origin: VolumeOrigin::Config,
                checks: SourceChecks::default(),
            });
        }
        // A volume already there, from the config or an earlier option, is
        // not mounted a second time on top of itself.
        let mut present: std::collections::HashSet<(PathBuf, PathBuf)> = match req.extra_volumes {
            [] => std::collections::HashSet::default(),
            _ => distro.mapped_volumes.iter().map(|v| (v.src.clone(), v.dst.clone())).collect(),
        };
        for extra in req.extra_volumes {
            let path = extra_volume_path(extra, req.cwd, &req.found.name, distro.allow_setuid)?;
            if !present.insert((path.clone(), path.clone())) {
                continue;
            }
            mounts.push(MountSpec {
                src: path.clone(),
                dst: path,
                attrs: Attrs::HOST,
                optional: false,
                origin: VolumeOrigin::Extra,
                checks: SourceChecks::CALLER,
            });
        }
        // Stable, so volumes at the same depth keep the config's order.
        mounts.sort_by_cached_key(|m| depth(&m.dst));

        let cwd_inside = inside_path(req.cwd, &root);
        let (workdir, workdir_is_cwd) = match req.directory {
            Some(dir) if dir.is_absolute() => (dir.to_path_buf(), false),
            Some(dir) => (cwd_inside.join(dir), false),
            None => (cwd_inside, true),
        };
        let command = if req.command.is_empty() {
            Command::Shell { preferred: req.shell.filter(|s| s.is_absolute()) }
        } else {
            Command::Argv(req.command)
        };
        Ok(Plan {
            distro: req.found.name.clone(),
            config: req.found.path.clone(),
            root,
            root_attrs: if distro.allow_setuid {
                Attrs::default()
            } else {
                Attrs { nosuid: true, nodev: true, ..Attrs::default() }
            },
            mounts,
            workdir,
            workdir_is_cwd,
            command,
            allow_setuid: distro.allow_setuid,
            user_db: distro.user_db,
            devices: devices(&distro.devices, req.devices)?,
        })
    }

    /// The one way both backends make a plan, from the config and what the
    /// caller asked for. `pwd` and `shell` are the caller's `$PWD` and
    /// `$SHELL`, as the command will see them.
    pub fn for_caller(
        found: &Found,
        directory: Option<&Path>,
        extra_volumes: &[PathBuf],
        devices: &[String],
        command: Vec<OsString>,
        pwd: Option<&OsStr>,
        shell: Option<&OsStr>,
    ) -> Result<Plan, Error> {
        let cwd = base_dir(pwd, directory)?;
        Plan::new(Request {
            found,
            extra_volumes,
            directory,
            cwd: &cwd,
            command,
            shell: shell.map(PathBuf::from),
            devices,
        })
    }

    /// The identity files to provide inside, and where they come from;
    /// None when the distro's own are used. A volume mounted on `/etc`, or
    /// on either file, is the admin's choice of files and wins: the second
    /// value names it.
    pub fn identity_files(&self) -> (Option<UserDb>, Option<&Path>) {
        if self.user_db == UserDb::Distro {
            return (None, None);
        }
        let covering = self
            .mounts
            .iter()
            .find(|m| [IDENTITY_FILES[0], IDENTITY_FILES[1]].iter().any(|f| is_within(Path::new(f), &m.dst)));
        match covering {
            Some(m) => (None, Some(m.dst.as_path())),
            None => (Some(self.user_db), None),
        }
    }

    /// `dst` of a mount as a host path under the distro root, for messages.
    pub fn host_target(&self, dst: &Path) -> PathBuf {
        self.root.join(dst.strip_prefix("/").unwrap_or(dst))
    }
}

/// The config's devices, then the command line's, each once; every name
/// checked, so that a bad one fails before anything is read.
fn devices(config: &[String], asked: &[String]) -> Result<Vec<String>, Error> {
    let mut out: Vec<String> = Vec::with_capacity(config.len() + asked.len());
    for d in config.iter().chain(asked) {
        if d != crate::gpu::GPU_ALL {
            crate::cdi::split_name(d)?;
        }
        if !out.contains(d) {
            out.push(d.clone());
        }
    }
    Ok(out)
}

fn kernel_mount(path: &str) -> MountSpec {
    MountSpec {
        src: path.into(),
        dst: path.into(),
        attrs: Attrs::KERNEL,
        optional: false,
        origin: VolumeOrigin::Kernel,
        checks: SourceChecks::default(),
    }
}

fn extra_volume_path(given: &Path, cwd: &Path, name: &str, allow_setuid: bool) -> Result<PathBuf, Error> {
    let bad = |why: String| Error::BadPath { what: "cannot use --extra-volume", path: given.into(), why };
    if allow_setuid {
        return Err(bad(format!("distro {name} allows setuid programs, so it takes no extra volumes")));
    }
    let path = if given.is_absolute() { given.to_path_buf() } else { cwd.join(given) };
    if let Some(why) = path_problem(&path) {
        return Err(bad(format!("the path {why}")));
    }
    if depth(&path) == 0 {
        return Err(bad("it would cover the distro's root".into()));
    }
    for kernel in ["/proc", "/sys"] {
        if is_within(&path, Path::new(kernel)) {
            return Err(bad(format!("{kernel} is always mounted already")));
        }
    }
    Ok(path)
}

/// The caller's current directory: `$PWD` when it names the same directory
/// as `getcwd()` (so a path through a symlink stays as the user typed it, as
/// `pwd -L` shows it), else the physical path.
pub fn current_dir(pwd: Option<&OsStr>) -> Result<PathBuf, Error> {
    let physical = nix::unistd::getcwd().map_err(|e| Error::io("find", "the current directory", e))?;
    if let Some(pwd) = pwd.map(Path::new).filter(|p| p.is_absolute() && path_problem(p).is_none()) {
        if let (Ok(a), Ok(b)) = (nix::sys::stat::stat(pwd), nix::sys::stat::stat(".")) {
            if (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino) {
                return Ok(pwd.to_path_buf());
            }
        }
    }
    Ok(physical)
}

/// The current directory a plan starts from. When it cannot be found (it
/// was deleted), an absolute `--directory` still lets the run go ahead.
pub fn base_dir(pwd: Option<&OsStr>, directory: Option<&Path>) -> Result<PathBuf, Error> {
    match (current_dir(pwd), directory) {
        (Ok(cwd), _) => Ok(cwd),
        (Err(_), Some(dir)) if dir.is_absolute() => Ok(PathBuf::from("/")),
        (Err(e), _) => Err(e),
    }
}

/// Where a host path appears inside the distro: the same path, except that a
/// path inside the distro's own tree maps to its place under the new root.
pub fn inside_path(host: &Path, root: &Path) -> PathBuf {
    match host.strip_prefix(root) {
        Ok(rest) => Path::new("/").join(rest),
        Err(_) => host.to_path_buf(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Distro, Origin, Volume};

    fn found(volumes: &[&str], allow_setuid: bool) -> Found {
        Found {
            name: "x".into(),
            path: "/etc/distrorun.d/x.conf".into(),
            origin: Origin::System,
            distro: Distro {
                dir: "/srv/distros/x".into(),
                mapped_volumes: volumes
                    .iter()
                    .map(|v| Volume { src: v.into(), dst: v.into(), read_only: false, optional: false })
                    .collect(),
                users: None,
                groups: None,
                allow_setuid,
                backend: crate::BackendChoice::default(),
                ids: crate::IdMode::Own,
                user_db: crate::UserDb::Caller,
                image: None,
                devices: vec![],
            },
        }
    }

    fn plan(f: &Found, extra: &[&str], dir: Option<&str>, cwd: &str, argv: &[&str]) -> Result<Plan, Error> {
        let extra: Vec<PathBuf> = extra.iter().map(PathBuf::from).collect();
        Plan::new(Request {
            found: f,
            extra_volumes: &extra,
            directory: dir.map(Path::new),
            cwd: Path::new(cwd),
            command: argv.iter().map(OsString::from).collect(),
            shell: Some("/bin/zsh".into()),
            devices: &[],
        })
    }

    #[test]
    fn proc_and_sys_are_always_mounted_and_parents_come_first() {
        let f = found(&["/run/user/1000", "/dev", "/run"], false);
        let p = plan(&f, &[], None, "/home/u", &["true"]).unwrap();
        let dsts: Vec<&Path> = p.mounts.iter().map(|m| m.dst.as_path()).collect();
        assert_eq!(
            dsts,
            [
                Path::new("/proc"),
                Path::new("/sys"),
                Path::new("/dev"),
                Path::new("/run"),
                Path::new("/run/user/1000")
            ]
        );
    }

    #[test]
    fn dev_keeps_devices_and_everything_else_is_nosuid_nodev() {
        let f = found(&["/dev", "/home"], false);
        let p = plan(&f, &["/data"], None, "/", &["true"]).unwrap();
        for m in &p.mounts {
            assert!(m.attrs.nosuid, "{m:?}");
            assert_eq!(m.attrs.nodev, m.dst != Path::new("/dev"), "{m:?}");
        }
        assert!(p.root_attrs.nosuid && p.root_attrs.nodev);
    }

    #[test]
    fn allow_setuid_leaves_the_root_suid_and_refuses_extra_volumes() {
        let f = found(&["/home"], true);
        let p = plan(&f, &[], None, "/", &["true"]).unwrap();
        assert!(!p.root_attrs.nosuid && p.allow_setuid);
        let err = plan(&f, &["/data"], None, "/", &["true"]).unwrap_err().to_string();
        assert!(err.contains("allows setuid programs"), "{err}");
    }

    #[test]
    fn cwd_inside_the_distro_tree_maps_to_its_place_under_the_new_root() {
        let f = found(&[], false);
        assert_eq!(
            plan(&f, &[], None, "/srv/distros/x/opt/app", &["true"]).unwrap().workdir,
            Path::new("/opt/app")
        );
        assert_eq!(plan(&f, &[], None, "/srv/distros/x", &["true"]).unwrap().workdir, Path::new("/"));
        assert_eq!(
            plan(&f, &[], None, "/srv/distros/x2/a", &["true"]).unwrap().workdir,
            Path::new("/srv/distros/x2/a")
        );
        assert_eq!(plan(&f, &[], None, "/home/u", &["true"]).unwrap().workdir, Path::new("/home/u"));
    }

    #[test]
    fn directory_option_wins_and_relative_ones_follow_the_cwd() {
        let f = found(&[], false);
        let p = plan(&f, &[], Some("/opt"), "/home/u", &["true"]).unwrap();
        assert_eq!((p.workdir.as_path(), p.workdir_is_cwd), (Path::new("/opt"), false));
        assert_eq!(
            plan(&f, &[], Some("sub"), "/home/u", &["true"]).unwrap().workdir,
            Path::new("/home/u/sub")
        );
    }

    #[test]
    fn identity_files_unless_a_volume_covers_them() {
        let p = plan(&found(&["/home"], false), &[], None, "/", &["true"]).unwrap();
        assert_eq!(p.identity_files(), (Some(UserDb::Caller), None));
        for covering in ["/etc", "/etc/passwd", "/etc/group"] {
            let p = plan(&found(&["/home", covering], false), &[], None, "/", &["true"]).unwrap();
            assert_eq!(p.identity_files(), (None, Some(Path::new(covering))));
        }
        let p = plan(&found(&["/etc/ssl"], false), &[], None, "/", &["true"]).unwrap();
        assert_eq!(p.identity_files().0, Some(UserDb::Caller));
        let p = Plan { user_db: UserDb::Distro, ..p };
        assert_eq!(p.identity_files(), (None, None));
    }

    #[test]
    fn no_command_means_the_callers_shell() {
        let f = found(&[], false);
        assert_eq!(
            plan(&f, &[], None, "/", &[]).unwrap().command,
            Command::Shell { preferred: Some("/bin/zsh".into()) }
        );
    }

    #[test]
    fn extra_volumes_are_made_absolute_and_checked() {
        let f = found(&["/home"], false);
        let p = plan(&f, &["data", "/home", "/home/u/data/"], None, "/home/u", &["true"]).unwrap();
        let extra: Vec<&MountSpec> = p.mounts.iter().filter(|m| m.origin == VolumeOrigin::Extra).collect();
        assert_eq!(extra.len(), 1, "the duplicate of a config volume is dropped");
        assert_eq!(extra[0].dst, Path::new("/home/u/data"));
        assert!(plan(&f, &["/proc/1"], None, "/", &["true"]).is_err());
        assert!(plan(&f, &["/a/../etc"], None, "/", &["true"]).is_err());
        assert!(plan(&f, &["/"], None, "/", &["true"]).is_err());
    }
}
