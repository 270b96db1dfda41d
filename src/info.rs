//! `--list --json` and `--info NAME [--json]`: what a distro is, and
//! whether and how this caller may use it, worked out without entering it.
//!
//! The backend is predicted the way `run` picks it, except that whether user
//! namespaces are usable is probed in a throw-away child: the front end
//! itself must stay able to exec the setuid helper afterwards.

use std::fmt::Write as _;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use distrorun_config::access::{self, Caller};
use distrorun_config::{load, paths, BackendChoice, Found, Origin};
use distrorun_engine::{mount, Error};
use nix::errno::Errno;
use nix::fcntl::{open, openat2, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::Mode;
use serde::Serialize;

use crate::doctor::Userns;
use crate::run;

/// The backend a caller would get, and why; `backend` is None when there is
/// none it could use.
#[derive(Debug, Clone, Serialize)]
pub struct Prediction {
    pub backend: Option<&'static str>,
    pub why: String,
}

/// Predicts the backend as `run` would choose it, from the config's choice.
pub fn predict(found: &Found, caller: &Caller, userns: &Userns) -> Prediction {
    let some = |b, why: &str| Prediction { backend: Some(b), why: why.to_owned() };
    let none = |why: String| Prediction { backend: None, why };
    if caller.uid.is_root() {
        return some("root", "the caller is root: a private mount namespace, no user namespace");
    }
    let helper = || match helper_problem() {
        _ if found.origin == Origin::User => {
            Err("per-user distros never go through the setuid helper, which reads only system configs"
                .to_owned())
        }
        Some(problem) => Err(format!("the setuid helper {} {problem}", paths::helper_path().display())),
        None => Ok(()),
    };
    match found.distro.backend {
        BackendChoice::Helper => match helper() {
            Ok(()) => some("helper", "the config asks for the helper"),
            Err(why) => none(format!("the config asks for the helper, but {why}")),
        },
        BackendChoice::Userns => match &userns.forbidden {
            None => some("userns", "the config asks for user namespaces, and they are usable"),
            Some(why) => none(format!("the config asks for user namespaces, but {why}")),
        },
        BackendChoice::Auto => match (&userns.forbidden, helper()) {
            (None, _) => some("userns", "user namespaces are usable"),
            (Some(why), Ok(())) => Prediction {
                backend: Some("helper"),
                why: format!("user namespaces are not usable ({why}), so the setuid helper"),
            },
            (Some(why), Err(helper_why)) => {
                none(format!("user namespaces are not usable ({why}), and {helper_why}"))
            }
        },
    }
}

/// Why the installed helper cannot be used, or None when it can.
pub fn helper_problem() -> Option<&'static str> {
    match std::fs::metadata(paths::helper_path()) {
        Err(_) => Some("is not installed"),
        Ok(m) if m.uid() != 0 => Some("is not owned by root"),
        Ok(m) if m.mode() & 0o4000 == 0 => Some("is not setuid"),
        Ok(_) => None,
    }
}

/// Whether this caller may use the distro, and the reason when not.
fn may_use(found: &Found, caller: &Caller, prediction: &Prediction) -> (bool, Option<String>) {
    if let Err(e) = access::check(&found.name, &found.distro, caller) {
        return (false, Some(e.to_string()));
    }
    match prediction.backend {
        Some(_) => (true, None),
        None => (false, Some(prediction.why.clone())),
    }
}

#[derive(Serialize)]
struct ListEntry {
    name: String,
    origin: &'static str,
    config: String,
    /// None when the config could not be read.
    directory: Option<String>,
    directory_exists: bool,
    backend: Option<&'static str>,
    may_use: bool,
    /// Why the config cannot be used at all, or why this caller may not.
    problem: Option<String>,
}

fn origin_word(origin: Origin) -> &'static str {
    match origin {
        Origin::System => "system",
        Origin::User => "user",
    }
}

/// Paths in JSON: as text; a byte that is not UTF-8 shows as U+FFFD, as in
/// every other message distrorun prints.
fn text(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// A listed config that cannot be used at all, and why.
fn unusable(name: String, origin: Origin, config: &Path, problem: String) -> ListEntry {
    ListEntry {
        name,
        origin: origin_word(origin),
        config: text(config),
        directory: None,
        directory_exists: false,
        backend: None,
        may_use: false,
        problem: Some(problem),
    }
}

/// `--list --json`.
pub fn list_json() -> Result<(), Error> {
    let caller = run::caller()?;
    let (system, user) = (paths::system_config_dir(), run::user_config_dir());
    let mut userns = None;
    let mut entries = Vec::new();
    for (name, origin) in load::list(&system, user.as_deref()) {
        let dir = match origin {
            Origin::System => system.clone(),
            Origin::User => user.clone().unwrap_or_default(),
        };
        let config = dir.join(format!("{name}.conf"));
        let entry = match load::find(&name, &system, user.as_deref()) {
            Ok(found) if found.origin == origin => {
                let userns = userns.get_or_insert_with(|| Userns::probe(&caller));
                let prediction = predict(&found, &caller, userns);
                let (ok, why) = may_use(&found, &caller, &prediction);
                ListEntry {
                    name,
                    origin: origin_word(origin),
                    config: text(&config),
                    directory: Some(text(&found.distro.dir)),
                    directory_exists: found.distro.dir.is_dir(),
                    backend: prediction.backend,
                    may_use: ok,
                    problem: why,
                }
            }
            Ok(found) => unusable(name, origin, &config, format!("shadowed by {}", found.path.display())),
            Err(e) => unusable(name, origin, &config, e.to_string()),
        };
        entries.push(entry);
    }
    print_json(&entries)
}

fn print_json(value: &impl Serialize) -> Result<(), Error> {
    let mut out =
        serde_json::to_string_pretty(value).map_err(|e| Error::msg(format!("cannot write JSON: {e}")))?;
    out.push('\n');
    // Asked for explicitly; a closed stdout is not worth an error.
    let _ = std::io::stdout().write_all(out.as_bytes());
    Ok(())
}

#[derive(Serialize)]
struct VolumeInfo {
    source: String,
    target: String,
    read_only: bool,
    optional: bool,
    /// `/proc` and `/sys`, which every run mounts.
    always: bool,
    source_exists: bool,
    /// "exists", "missing", "symlink" (refused as a mount point) or
    /// "unknown: ERROR".
    target_inside: String,
}

#[derive(Serialize)]
struct Info {
    name: String,
    origin: &'static str,
    config: String,
    directory: String,
    directory_exists: bool,
    pretty_name: Option<String>,
    users: Option<Vec<String>>,
    groups: Option<Vec<String>>,
    allow_setuid: bool,
    backend_setting: &'static str,
    ids: &'static str,
    user_db: &'static str,
    volumes: Vec<VolumeInfo>,
    may_use: bool,
    why_not: Option<String>,
    backend: Option<&'static str>,
    backend_why: String,
    /// For a distro made from a registry image: its reference and digest.
    image: Option<crate::registry::Origin>,
}

fn backend_word(choice: BackendChoice) -> &'static str {
    match choice {
        BackendChoice::Auto => "auto",
        BackendChoice::Userns => "userns",
        BackendChoice::Helper => "helper",
    }
}

/// `--info NAME [--json]`.
pub fn info(name: &str, json: bool) -> Result<(), Error> {
    let caller = run::caller()?;
    let found = run::find_config(name)?;
    let userns = Userns::probe(&caller);
    let prediction = predict(&found, &caller, &userns);
    let (ok, why_not) = may_use(&found, &caller, &prediction);
    let root = open(&found.distro.dir, OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty());
    let mut volumes = Vec::new();
    for kernel in ["/proc", "/sys"] {
        volumes.push(volume_info(
            Path::new(kernel),
            Path::new(kernel),
            false,
            false,
            true,
            root.as_ref().ok(),
        ));
    }
    for v in &found.distro.mapped_volumes {
        volumes.push(volume_info(&v.src, &v.dst, v.read_only, v.optional, false, root.as_ref().ok()));
    }
    let d = &found.distro;
    let info = Info {
        name: found.name.clone(),
        origin: origin_word(found.origin),
        config: text(&found.path),
        directory: text(&d.dir),
        directory_exists: root.is_ok(),
        pretty_name: root.as_ref().ok().and_then(pretty_name),
        users: d.users.clone(),
        groups: d.groups.clone(),
        allow_setuid: d.allow_setuid,
        backend_setting: backend_word(d.backend),
        ids: d.ids.as_str(),
        user_db: d.user_db.as_str(),
        volumes,
        may_use: ok,
        why_not,
        backend: prediction.backend,
        backend_why: prediction.why,
        image: std::fs::read_to_string(&found.path)
            .ok()
            .and_then(|t| crate::registry::Origin::from_config(&t)),
    };
    if json {
        return print_json(&info);
    }
    // Asked for explicitly; a closed stdout is not worth an error.
    let _ = std::io::stdout().write_all(info_text(&info).as_bytes());
    Ok(())
}

fn info_text(i: &Info) -> String {
    let mut s = String::new();
    let list = |l: &Option<Vec<String>>| match l {
        None => "(not set)".to_owned(),
        Some(names) => format!("[{}]", names.join(", ")),
    };
    let _ = writeln!(s, "distro:       {}", i.name);
    let _ = writeln!(s, "config:       {} ({})", i.config, i.origin);
    let exists = if i.directory_exists { "exists" } else { "does not exist" };
    let _ = writeln!(s, "directory:    {} ({exists})", i.directory);
    if let Some(image) = &i.image {
        let _ = writeln!(s, "image:        {}", image.reference);
        let _ = writeln!(s, "digest:       {}", image.digest);
    }
    let _ = writeln!(
        s,
        "os:           {}",
        i.pretty_name.as_deref().unwrap_or("(no PRETTY_NAME in its os-release)")
    );
    let _ = writeln!(s, "users:        {}", list(&i.users));
    let _ = writeln!(s, "groups:       {}", list(&i.groups));
    let _ = writeln!(s, "allow_setuid: {}", i.allow_setuid);
    let _ = writeln!(s, "backend:      {} in the config", i.backend_setting);
    let _ = writeln!(s, "ids:          {}", i.ids);
    let _ = writeln!(s, "user_db:      {}", i.user_db);
    let _ = writeln!(s, "volumes:");
    for v in &i.volumes {
        let mut flags = vec![if v.read_only { "ro" } else { "rw" }];
        if v.optional {
            flags.push("optional");
        }
        if v.always {
            flags.push("always");
        }
        if !v.source_exists {
            flags.push("source missing");
        }
        let _ =
            writeln!(s, "  {} -> {} ({}): target {}", v.source, v.target, flags.join(", "), v.target_inside);
    }
    match &i.why_not {
        None => {
            let _ = writeln!(s, "may use:      yes");
        }
        Some(why) => {
            let _ = writeln!(s, "may use:      no: {why}");
        }
    }
    let _ = writeln!(s, "would run as: {}: {}", i.backend.unwrap_or("nothing"), i.backend_why);
    s
}

fn volume_info(
    src: &Path,
    dst: &Path,
    read_only: bool,
    optional: bool,
    always: bool,
    root: Option<&OwnedFd>,
) -> VolumeInfo {
    let target_inside = match root.map(|r| mount::open_target(r, dst)) {
        None => "unknown: the directory cannot be opened".to_owned(),
        Some(Ok(_)) => "exists".to_owned(),
        Some(Err(Errno::ENOENT)) => "missing".to_owned(),
        Some(Err(Errno::ELOOP)) => "symlink".to_owned(),
        Some(Err(e)) => format!("unknown: {}", e.desc()),
    };
    VolumeInfo {
        source: text(src),
        target: text(dst),
        read_only,
        optional,
        always,
        source_exists: std::fs::symlink_metadata(src).is_ok(),
        target_inside,
    }
}

/// `PRETTY_NAME` from the distro's os-release, looked up with the distro's
/// directory as `/`, since `etc/os-release` is usually an absolute symlink.
fn pretty_name(root: &OwnedFd) -> Option<String> {
    for path in ["etc/os-release", "usr/lib/os-release"] {
        let how = OpenHow::new()
            .flags(OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK | OFlag::O_NOCTTY)
            .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
        let Ok(fd) = openat2(root, Path::new(path), how) else { continue };
        let mut text = String::new();
        let file = std::fs::File::from(fd);
        if !file.metadata().is_ok_and(|m| m.is_file()) {
            continue;
        }
        if std::io::Read::read_to_string(&mut std::io::Read::take(file, 64 * 1024), &mut text).is_err() {
            continue;
        }
        return text.lines().find_map(|l| l.strip_prefix("PRETTY_NAME=")).map(unquote);
    }
    None
}

/// os-release values are shell-quoted; the common forms are handled.
fn unquote(v: &str) -> String {
    let v = v.trim();
    let inner = v
        .strip_prefix('"')
        .and_then(|r| r.strip_suffix('"'))
        .or_else(|| v.strip_prefix('\'').and_then(|r| r.strip_suffix('\'')))
        .unwrap_or(v);
    inner.replace("\\\"", "\"").replace("\\\\", "\\").replace("\\$", "$").replace("\\`", "`")
}

/// The system and per-user config directories, as `--list` reads them.
pub fn config_dirs() -> (PathBuf, Option<PathBuf>) {
    (paths::system_config_dir(), run::user_config_dir())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_release_values_are_unquoted() {
        assert_eq!(unquote("\"Debian GNU/Linux 13 (trixie)\""), "Debian GNU/Linux 13 (trixie)");
        assert_eq!(unquote("'Rocky Linux 9.4'"), "Rocky Linux 9.4");
        assert_eq!(unquote("Plain"), "Plain");
        assert_eq!(unquote("\"a \\\"quoted\\\" word\""), "a \"quoted\" word");
    }
}
