//! What this machine offers this caller, found out once and handed on as
//! data: whether user namespaces are usable and why not, the state of the
//! setuid helper, and where the programs distrorun runs are installed.
//! `--info`, `--doctor` and the backend choice all read these facts, so
//! they cannot disagree about them.

use std::path::{Path, PathBuf};

use distrorun_config::access::Caller;
use distrorun_config::paths;
use distrorun_engine::userns::{self, Simulate};
use distrorun_engine::{sys, Error};
use nix::errno::Errno;
use nix::sys::stat::stat;
use nix::sys::statvfs::{statvfs, FsFlags};

/// Where the programs distrorun runs (newuidmap, newgidmap, mmdebstrap)
/// are looked for. The list is fixed: `$PATH` must never choose them, since
/// newuidmap and newgidmap write the id maps with privilege.
const BIN_DIRS: &[&str] = &["/usr/bin", "/bin", "/usr/sbin", "/sbin", "/usr/local/bin"];

/// The installed program `name`, from the fixed list of directories.
pub fn program(name: &str) -> Option<PathBuf> {
    BIN_DIRS.iter().map(|dir| Path::new(dir).join(name)).find(|p| p.is_file())
}

/// What a run, `--info` and `--doctor` need to know of this machine.
pub struct Facts {
    pub userns: Userns,
    pub helper: Helper,
}

impl Facts {
    /// Probes the machine for `caller`; costs a fork, so it is done only
    /// where a report is asked for, never on the way to a run.
    pub fn probe(caller: &Caller) -> Facts {
        Facts { userns: Userns::probe(caller), helper: Helper::probe(&paths::helper_path()) }
    }
}

/// The state of the installed setuid helper: the one answer to "can it be
/// used", for the backend's fallback, `--info` and `--doctor` alike.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Helper {
    Ready,
    /// It cannot be examined (ENOENT: it is not there).
    Missing(Errno),
    NotRoot {
        uid: u32,
    },
    NotSetuid {
        mode: u32,
    },
    /// Its file system is mounted nosuid, so executing it gains nothing.
    NoSuid,
    /// Its file system cannot be examined.
    Unchecked(Errno),
}

impl Helper {
    pub fn probe(path: &Path) -> Helper {
        let st = match stat(path) {
            Ok(st) => st,
            Err(e) => return Helper::Missing(e),
        };
        if st.st_uid != 0 {
            return Helper::NotRoot { uid: st.st_uid };
        }
        if st.st_mode & 0o4000 == 0 {
            return Helper::NotSetuid { mode: st.st_mode & 0o7777 };
        }
        match statvfs(path) {
            Ok(fs) if fs.flags().contains(FsFlags::ST_NOSUID) => Helper::NoSuid,
            Ok(_) => Helper::Ready,
            Err(e) => Helper::Unchecked(e),
        }
    }

    /// What is wrong with it, as the end of "the setuid helper PATH ...",
    /// or None when it can be used.
    pub fn problem(&self) -> Option<String> {
        Some(match self {
            Helper::Ready => return None,
            Helper::Missing(Errno::ENOENT) => "is not installed".to_owned(),
            Helper::Missing(e) => format!("cannot be examined: {}", e.desc()),
            Helper::NotRoot { uid } => format!("is owned by uid {uid}, not root"),
            Helper::NotSetuid { mode } => format!("is not setuid (mode {mode:o})"),
            Helper::NoSuid => "lies on a file system mounted nosuid, so it gains nothing".to_owned(),
            Helper::Unchecked(e) => format!("lies on a file system that cannot be checked: {}", e.desc()),
        })
    }
}

const USERNS_CLONE: &str = "/proc/sys/kernel/unprivileged_userns_clone";
const MAX_USERNS: &str = "/proc/sys/user/max_user_namespaces";
const APPARMOR_RESTRICT: &str = "/proc/sys/kernel/apparmor_restrict_unprivileged_userns";
const RHEL7_SWITCH: &str = "/sys/module/user_namespace/parameters/enable";
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
        let (uid, gid, simulate) = (caller.uid, caller.gid, simulation());
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

/// The running kernel and the form of each engine step it gets: the new
/// mount API and `openat2`, or their older forms.
pub fn kernel_facilities() -> String {
    let release = read_setting("/proc/sys/kernel/osrelease").unwrap_or_else(|| "(unknown)".into());
    format!("Linux {release}: {}", distrorun_engine::mount::facilities())
}

/// True when this process is in a user namespace other than the host's: a
/// container's, whose own limits then apply.
fn in_container_userns() -> bool {
    read_setting("/proc/self/uid_map")
        .is_some_and(|m| m.split_whitespace().collect::<Vec<_>>() != ["0", "0", "4294967295"])
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
    if read_setting(RHEL7_SWITCH).as_deref() == Some("N") {
        return (
            "user namespaces are disabled by the kernel parameter user_namespace.enable=N (RHEL 7)".into(),
            "as root: grubby --args=user_namespace.enable=1 --update-kernel=ALL, and reboot".into(),
        );
    }
    if seccomp_filtered() {
        return (
            "a seccomp filter on this process forbids creating user namespaces (Seccomp: 2 in /proc/self/status), as container runtimes install".into(),
            "allow unshare and clone with CLONE_NEWUSER in the container's seccomp profile, or use the setuid helper".into(),
        );
    }
    if in_container_userns() {
        return (
            "this process runs in a container's user namespace, and the container's limits forbid another inside it (its own user.max_user_namespaces, or the nesting depth of 32)".into(),
            "allow nested user namespaces in the container (raise user.max_user_namespaces inside it, or start it with a runtime option that permits them), or use the setuid helper".into(),
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

/// Ends the hint of an error whose cause is the machine (no usable user
/// namespace, no usable helper) with a pointer to `--doctor`.
pub fn point_to(e: Error) -> Error {
    let hint = match e.hint() {
        Some(h) => format!("{h}; distrorun --doctor says what this machine lacks"),
        None => "distrorun --doctor says what this machine lacks".to_owned(),
    };
    e.with_hint(hint)
}

/// The test suite's stand-in for Ubuntu's `AppArmor` restriction; compiled
/// only into test builds of distrorun, never into the helper.
pub fn simulation() -> Simulate {
    #[cfg(feature = "test-seams")]
    if std::env::var_os("DISTRORUN_TEST_USERNS_UNUSABLE").is_some_and(|v| v == "1") {
        return Simulate::UnusableNamespace;
    }
    Simulate::Nothing
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_newuidmap_only_in_path_is_not_found() {
        let dir = std::env::temp_dir().join(format!("distrorun-path-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let planted = dir.join("newuidmap");
        std::fs::write(&planted, "#!/bin/sh\n").unwrap();
        // Ahead of everything else: were `$PATH` consulted, this would win.
        let path = std::env::var_os("PATH").unwrap_or_default();
        let mut dirs = vec![dir.clone()];
        dirs.extend(std::env::split_paths(&path));
        std::env::set_var("PATH", std::env::join_paths(dirs).unwrap());
        let found = program("newuidmap");
        std::env::set_var("PATH", path);
        std::fs::remove_dir_all(&dir).unwrap();
        assert_ne!(found.as_deref(), Some(planted.as_path()));
        assert!(found.iter().all(|p| BIN_DIRS.iter().any(|d| p.starts_with(d))), "{found:?}");
    }

    #[test]
    fn the_helper_status_is_read_from_the_file() {
        assert_eq!(Helper::probe(Path::new("/nonexistent/distrorun-helper")), Helper::Missing(Errno::ENOENT));
        assert_eq!(
            Helper::probe(Path::new("/nonexistent/distrorun-helper")).problem().as_deref(),
            Some("is not installed")
        );
        // Root's own, but not setuid, on every system this builds on.
        assert!(matches!(Helper::probe(Path::new("/bin/sh")), Helper::NotSetuid { .. }));
    }
}
