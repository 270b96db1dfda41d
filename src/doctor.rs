//! `--doctor`: checks this machine for this caller, one line per finding,
//! each `ok`, `warning` or `problem`, with the command that fixes it.
//! Warnings are what only some uses need (the helper where user namespaces
//! work, subordinate ids); any problem makes distrorun exit 125.

use std::fmt::Write as _;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use distrorun_config::access::{self, Caller};
use distrorun_config::{load, paths, trust, Found, Origin};
use distrorun_engine::{mount, sys, userns, Error};
use nix::errno::Errno;
use nix::fcntl::{open, OFlag};
use nix::sys::stat::Mode;
use nix::sys::statvfs::{statvfs, FsFlags};
use nix::unistd::User;

use crate::{backend, info, run};

const USERNS_CLONE: &str = "/proc/sys/kernel/unprivileged_userns_clone";
const MAX_USERNS: &str = "/proc/sys/user/max_user_namespaces";
const APPARMOR_RESTRICT: &str = "/proc/sys/kernel/apparmor_restrict_unprivileged_userns";
const APPARMOR_PROFILES: &str = "/sys/kernel/security/apparmor/profiles";

/// Whether this caller can use a user namespace, and if not, why and what
/// fixes it.
pub struct Userns {
    pub forbidden: Option<String>,
    pub fix: Option<String>,
    /// A note on a setting that is on but does not stop this caller.
    pub note: Option<String>,
}

impl Userns {
    /// Probes in a forked child, which enters the namespace exactly as a
    /// run would; this process is left as it was. The reason is read from
    /// the settings that can forbid it.
    pub fn probe(caller: &Caller) -> Userns {
        if caller.uid.is_root() {
            return Userns { forbidden: None, fix: None, note: None };
        }
        let (uid, gid, simulate) = (caller.uid, caller.gid, backend::simulation());
        let usable = sys::in_child(|| matches!(userns::enter(uid, gid, simulate), Ok(Ok(()))));
        let restricted = read_setting(APPARMOR_RESTRICT).as_deref() == Some("1");
        match usable {
            Ok(true) => Userns {
                forbidden: None,
                fix: None,
                note: restricted.then(|| {
                    "kernel.apparmor_restrict_unprivileged_userns is 1, and distrorun's AppArmor profile grants them"
                        .to_owned()
                }),
            },
            Ok(false) => {
                let (why, fix) = explain(restricted);
                Userns { forbidden: Some(why), fix: Some(fix), note: None }
            }
            Err(e) => Userns {
                forbidden: Some(format!("cannot fork to probe user namespaces: {}", e.desc())),
                fix: Some("run distrorun --doctor from a single-threaded shell".to_owned()),
                note: None,
            },
        }
    }
}

fn read_setting(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok().map(|s| s.trim().to_owned())
}

/// The setting that forbids user namespaces, most specific first.
fn explain(restricted: bool) -> (String, String) {
    let persist = "and put the same line, without `sysctl -w`, in /etc/sysctl.d/50-distrorun.conf";
    if read_setting(USERNS_CLONE).as_deref() == Some("0") {
        return (
            "kernel.unprivileged_userns_clone is 0".into(),
            format!("sysctl -w kernel.unprivileged_userns_clone=1 as root, {persist}"),
        );
    }
    if read_setting(MAX_USERNS).as_deref() == Some("0") {
        return (
            "user.max_user_namespaces is 0".into(),
            format!("sysctl -w user.max_user_namespaces=15000 as root, {persist}"),
        );
    }
    if restricted {
        let profile = Path::new("/etc/apparmor.d/distrorun");
        return if apparmor_profile_loaded() {
            (
                "kernel.apparmor_restrict_unprivileged_userns is 1, and the loaded distrorun profile does not cover this binary".into(),
                format!(
                    "make the path in {} name {} and reload it: apparmor_parser -r {}",
                    profile.display(),
                    std::env::current_exe().map_or_else(|_| "distrorun".into(), |p| p.display().to_string()),
                    profile.display()
                ),
            )
        } else {
            (
                "kernel.apparmor_restrict_unprivileged_userns is 1, and no distrorun AppArmor profile is loaded".into(),
                format!(
                    "as root: apparmor_parser -r {} (installed by the package, or by make install-apparmor)",
                    profile.display()
                ),
            )
        };
    }
    if seccomp_filtered() {
        return (
            "a seccomp filter on this process forbids creating user namespaces (Seccomp: 2 in /proc/self/status), as container runtimes install".into(),
            "allow unshare and clone with CLONE_NEWUSER in the container's seccomp profile, or use the setuid helper".into(),
        );
    }
    (
        "the kernel refuses to create a user namespace, for a reason none of kernel.unprivileged_userns_clone, user.max_user_namespaces, AppArmor and seccomp explains".into(),
        "check the kernel's configuration (CONFIG_USER_NS) and security modules, or use the setuid helper".into(),
    )
}

fn apparmor_profile_loaded() -> bool {
    std::fs::read_to_string(APPARMOR_PROFILES)
        .is_ok_and(|t| t.lines().any(|l| l.split_whitespace().next() == Some("distrorun")))
}

fn seccomp_filtered() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|t| {
        t.lines().any(|l| l.split_once(':').is_some_and(|(k, v)| k == "Seccomp" && v.trim() == "2"))
    })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Level {
    Ok,
    Warning,
    Problem,
}

#[derive(Default)]
struct Report {
    text: String,
    problems: usize,
}

impl Report {
    fn line(&mut self, level: Level, what: &str, fix: Option<&str>) {
        let word = match level {
            Level::Ok => "ok",
            Level::Warning => "warning",
            Level::Problem => {
                self.problems += 1;
                "problem"
            }
        };
        let _ = match fix {
            Some(fix) if level != Level::Ok => writeln!(self.text, "{word}: {what}; fix: {fix}"),
            _ => writeln!(self.text, "{word}: {what}"),
        };
    }
}

/// Ends the hint of an error whose cause is the machine (no usable user
/// namespace, no usable helper) with a pointer to `--doctor`.
pub fn point_to(e: Error) -> Error {
    let hint = match e.hint() {
        Some(h) => format!("{h}; distrorun --doctor says what this machine lacks"),
        None => "distrorun --doctor says what this machine lacks".to_owned(),
    };
    e.with_hint(hint)
}

/// `--doctor`.
pub fn doctor() -> Result<(), Error> {
    let caller = run::caller()?;
    let mut r = Report::default();
    let userns = Userns::probe(&caller);
    if caller.uid.is_root() {
        r.line(
            Level::Ok,
            "the caller is root: distrorun uses a private mount namespace, and no user namespace",
            None,
        );
    } else {
        match (&userns.forbidden, &userns.note) {
            (None, None) => r.line(Level::Ok, "unprivileged user namespaces are usable", None),
            (None, Some(note)) => {
                r.line(Level::Ok, &format!("unprivileged user namespaces are usable: {note}"), None);
            }
            (Some(why), _) => {
                // Not fatal where the helper can take over, but per-user
                // distros and `--backend userns` need them.
                let level = if info::helper_problem().is_none() { Level::Warning } else { Level::Problem };
                r.line(
                    level,
                    &format!("unprivileged user namespaces are not usable: {why}"),
                    userns.fix.as_deref(),
                );
            }
        }
    }
    check_helper(&mut r, userns.forbidden.is_some() && !caller.uid.is_root());
    let (system, user) = info::config_dirs();
    check_system_configs(&mut r, &system);
    if !caller.uid.is_root() {
        check_subids(&mut r, &caller);
        check_data_dir(&mut r);
    }
    check_distros(&mut r, &caller, &system, user.as_deref());
    let _ = std::io::stdout().write_all(r.text.as_bytes());
    match r.problems {
        0 => Ok(()),
        1 => {
            Err(Error::msg("--doctor found 1 problem; each line starting with `problem:` says how to fix it"))
        }
        n => Err(Error::msg(format!(
            "--doctor found {n} problems; each line starting with `problem:` says how to fix it"
        ))),
    }
}

/// The helper matters when user namespaces are unusable: then it is the
/// only way in, and what is wrong with it is a problem, not a warning.
fn check_helper(r: &mut Report, needed: bool) {
    let helper = paths::helper_path();
    let shown = helper.display();
    let bad = if needed { Level::Problem } else { Level::Warning };
    let meta = match std::fs::metadata(&helper) {
        Ok(m) => m,
        Err(e) => {
            let errno = Errno::from_raw(e.raw_os_error().unwrap_or(0));
            r.line(
                bad,
                &format!("the setuid helper {shown} cannot be found: {}", errno.desc()),
                Some("as root, make install (or install the distrorun package)"),
            );
            return;
        }
    };
    if meta.uid() != 0 {
        r.line(
            bad,
            &format!("the setuid helper {shown} is owned by uid {}, not root", meta.uid()),
            Some(&format!("as root: chown root:root {shown} && chmod 4755 {shown}")),
        );
    } else if meta.mode() & 0o4000 == 0 {
        r.line(
            bad,
            &format!("the setuid helper {shown} is not setuid (mode {:o})", meta.mode() & 0o7777),
            Some(&format!(
                "as root: chmod 4755 {shown} (in a Debian package: dpkg-statoverride --update --add root root 4755 {shown})"
            )),
        );
    } else {
        match statvfs(&helper) {
            Ok(st) if st.flags().contains(FsFlags::ST_NOSUID) => r.line(
                bad,
                &format!("the setuid helper {shown} lies on a file system mounted nosuid, so it gains nothing"),
                Some(&format!(
                    "remount that file system without nosuid (findmnt -T {shown}), or install distrorun elsewhere"
                )),
            ),
            Ok(_) => r.line(Level::Ok, &format!("the setuid helper {shown} is installed setuid root"), None),
            Err(e) => r.line(
                bad,
                &format!("cannot check the file system of the setuid helper {shown}: {}", e.desc()),
                None,
            ),
        }
    }
}

fn check_system_configs(r: &mut Report, system: &Path) {
    if !system.exists() {
        r.line(
            Level::Warning,
            &format!("the system config directory {} does not exist", system.display()),
            Some(&format!("as root: install -d -m 0755 {}", system.display())),
        );
        return;
    }
    let fix = |p: &Path| {
        format!(
            "as root: chown root:root {0} && chmod go-w {0} (and each directory the message names)",
            p.display()
        )
    };
    match trust::open_trusted_dir(system) {
        Ok(_) => r.line(
            Level::Ok,
            &format!("the system config directory {} is trusted by the helper", system.display()),
            None,
        ),
        Err(e) => {
            r.line(Level::Problem, &e.to_string(), Some(&fix(system)));
            return;
        }
    }
    for (name, origin) in load::list(system, None) {
        if origin != Origin::System {
            continue;
        }
        let path = system.join(format!("{name}.conf"));
        match trust::open_trusted_file(&path) {
            Ok(_) => {}
            Err(e) => r.line(Level::Problem, &e.to_string(), Some(&fix(&path))),
        }
    }
}

/// Subordinate ids, which per-user distros made without root need.
fn check_subids(r: &mut Report, caller: &Caller) {
    let name = User::from_uid(caller.uid).ok().flatten().map(|u| u.name);
    let who = name.clone().unwrap_or_else(|| caller.uid.to_string());
    for (file, tool, flag) in
        [("/etc/subuid", "newuidmap", "--add-subuids"), ("/etc/subgid", "newgidmap", "--add-subgids")]
    {
        let listed = std::fs::read_to_string(file).is_ok_and(|t| {
            t.lines().any(|l| {
                let owner = l.split(':').next().unwrap_or("");
                owner == caller.uid.to_string() || Some(owner) == name.as_deref()
            })
        });
        if listed {
            r.line(Level::Ok, &format!("{file} has a range for {who}"), None);
        } else {
            r.line(
                Level::Warning,
                &format!(
                    "{file} has no range for {who}; per-user distros owned through subordinate ids need one"
                ),
                Some(&format!(
                    "as root: usermod {flag} 100000-165535 {who} (pick a range no other user has)"
                )),
            );
        }
        if find_in_path(tool).is_some() {
            r.line(Level::Ok, &format!("{tool} is installed"), None);
        } else {
            r.line(
                Level::Warning,
                &format!("{tool} is not installed"),
                Some("as root: apt-get install uidmap"),
            );
        }
    }
}

fn find_in_path(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into());
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/sbin")])
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

/// Per-user trees run their setuid files as the owner's subordinate ids:
/// a data directory others can enter gives those ids to anyone.
fn check_data_dir(r: &mut Report) {
    let Ok(data) = crate::create::data_dir() else { return };
    if let Some(mode) = crate::private_dir::open_to_others(&data) {
        r.line(
            Level::Problem,
            &format!(
                "the per-user distro directory {} has mode {mode:04o}: other users can enter it and run its trees' setuid files as your subordinate ids",
                data.display()
            ),
            Some(&format!("chmod 700 {}", data.display())),
        );
    }
}

fn check_distros(r: &mut Report, caller: &Caller, system: &Path, user: Option<&Path>) {
    for (name, origin) in load::list(system, user) {
        let found = match load::find(&name, system, user) {
            Ok(found) if found.origin == origin => found,
            Ok(_) => continue,
            Err(e) => {
                r.line(Level::Problem, &format!("distro {name}: {e}"), Some("correct the file it names"));
                continue;
            }
        };
        if access::check(&found.name, &found.distro, caller).is_err() {
            continue;
        }
        check_distro(r, &found);
    }
}

fn check_distro(r: &mut Report, found: &Found) {
    let dir = &found.distro.dir;
    let root = match open(dir, OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty()) {
        Ok(fd) => fd,
        Err(e) => {
            r.line(
                Level::Problem,
                &format!("distro {}: cannot open its directory {}: {}", found.name, dir.display(), e.desc()),
                Some(&format!(
                    "create the tree there (debootstrap, mmdebstrap) or correct dir in {}",
                    found.path.display()
                )),
            );
            return;
        }
    };
    let mut missing = Vec::new();
    let mut refused = Vec::new();
    let kernel = [Path::new("/proc"), Path::new("/sys")];
    let volumes =
        found.distro.mapped_volumes.iter().filter(|v| !v.optional || v.src.exists()).map(|v| v.dst.as_path());
    for dst in kernel.into_iter().chain(volumes) {
        match mount::open_target(&root, dst) {
            Ok(_) => {}
            Err(Errno::ENOENT) => missing.push(dir.join(dst.strip_prefix("/").unwrap_or(dst))),
            Err(e) => refused.push(format!("{}: {}", dst.display(), e.desc())),
        }
    }
    if missing.is_empty() && refused.is_empty() {
        r.line(
            Level::Ok,
            &format!("distro {}: {} and every mount point it needs exist", found.name, dir.display()),
            None,
        );
    }
    if !missing.is_empty() {
        let list: Vec<String> = missing.iter().map(|p| p.display().to_string()).collect();
        let owner = if found.origin == Origin::System { "as root" } else { "as the tree's owner" };
        r.line(
            Level::Problem,
            &format!("distro {}: mount points missing inside: {}", found.name, list.join(", ")),
            Some(&format!("{owner}: mkdir -p {}", list.join(" "))),
        );
    }
    if !refused.is_empty() {
        r.line(
            Level::Problem,
            &format!(
                "distro {}: mount points that cannot be used (a symlink is refused): {}",
                found.name,
                refused.join(", ")
            ),
            Some("replace each with a real directory inside the tree"),
        );
    }
}
