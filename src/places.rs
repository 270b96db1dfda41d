//! The caller, and where configs and data live: the system and per-user
//! config directories, the per-user data home, and the names distrorun
//! gives its own leftovers there.

use std::path::{Path, PathBuf};

use distrorun_config::access::Caller;
use distrorun_config::{load, paths, Found, Origin};
use distrorun_engine::{sys, Error};
use nix::unistd::{getresgid, getresuid};

/// Where `--system` puts trees unless `--state-dir` says otherwise.
pub const SYSTEM_STATE_DIR: &str = "/var/lib/distrorun";
/// Root's blob cache, for system distros.
pub const SYSTEM_CACHE_DIR: &str = "/var/cache/distrorun";

/// Who runs distrorun. It must never run with privilege it was not started
/// with: the privileged part is the helper, and only the helper.
pub fn caller() -> Result<Caller, Error> {
    let (u, g) = match (getresuid(), getresgid()) {
        (Ok(u), Ok(g)) => (u, g),
        (Err(e), _) | (_, Err(e)) => return Err(Error::sys("read the caller's ids", e)),
    };
    if u.real != u.effective || u.real != u.saved || g.real != g.effective || g.real != g.saved {
        return Err(Error::msg(
            "distrorun must not be installed setuid or setgid; the setuid part is distrorun-helper",
        ));
    }
    let groups = sys::supplementary_groups().map_err(|e| Error::sys("read the caller's groups", e))?;
    Ok(Caller { uid: u.real, gid: g.real, groups })
}

/// The config of distro `name`: the system's first, then the caller's.
pub fn find_config(name: &str) -> Result<Found, Error> {
    Ok(load::find(name, &paths::system_config_dir(), user_config_dir().as_deref())?)
}

/// `${XDG_CONFIG_HOME:-~/.config}/distrorun.d`, where the environment says.
pub fn user_config_dir() -> Option<PathBuf> {
    let xdg = std::env::var_os("XDG_CONFIG_HOME");
    let home = std::env::var_os("HOME");
    load::user_config_dir(xdg.as_deref().map(Path::new), home.as_deref().map(Path::new))
}

/// The system and per-user config directories, as `--list` reads them.
pub fn config_dirs() -> (PathBuf, Option<PathBuf>) {
    (paths::system_config_dir(), user_config_dir())
}

/// `$HOME`, when it is set to an absolute path.
pub fn home() -> Option<PathBuf> {
    std::env::var_os("HOME").map(PathBuf::from).filter(|h| h.is_absolute())
}

/// `${XDG_DATA_HOME:-~/.local/share}`; a relative value counts as unset,
/// as the XDG Base Directory Specification says.
pub fn data_home() -> Option<PathBuf> {
    std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .filter(|d| d.is_absolute())
        .or_else(|| home().map(|h| h.join(".local/share")))
}

/// `${XDG_DATA_HOME:-~/.local/share}/distrorun`, where per-user trees go.
pub fn data_dir() -> Result<PathBuf, Error> {
    data_home().map(|d| d.join("distrorun")).ok_or_else(|| {
        Error::msg("cannot tell where per-user distros go: neither XDG_DATA_HOME nor HOME is set")
    })
}

/// `${XDG_CACHE_HOME:-~/.cache}/distrorun`, the caller's blob cache, or
/// root's for system distros.
pub fn cache_dir(system: bool) -> Result<PathBuf, Error> {
    if system {
        return Ok(PathBuf::from(SYSTEM_CACHE_DIR));
    }
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .filter(|d| d.is_absolute())
        .or_else(|| home().map(|h| h.join(".cache")))
        .map(|d| d.join("distrorun"))
        .ok_or_else(|| {
            Error::msg("cannot tell where the blob cache goes: neither XDG_CACHE_HOME nor HOME is set")
        })
}

/// The leftover name of an interrupted create or remove.
pub fn partial_name(name: &str) -> PathBuf {
    PathBuf::from(format!(".{name}.partial"))
}

/// The marker key of the tree `--update` builds for distro `name`. `+` is
/// in no distro name, so no other distro's file is ever named like it.
pub fn next_key(name: &str) -> String {
    format!("{name}+next")
}

/// The prefix of the marker keys of old trees `--update` keeps for runs
/// still in them.
pub fn old_prefix(name: &str) -> String {
    format!("{name}+old-")
}

/// Whether `key` (an entry of the data directory without its leading dot)
/// is an old tree of distro `name`'s: its marker's `.tree` and the
/// marker's own temporary file have a dot past the prefix, the key none.
pub fn is_old_key(key: &str, name: &str) -> bool {
    key.strip_prefix(&old_prefix(name)).is_some_and(|rest| !rest.is_empty() && !rest.contains('.'))
}

/// The entry in the data directory of a tree marked under `key`.
pub fn keyed_entry(key: &str) -> PathBuf {
    PathBuf::from(format!(".{key}"))
}

/// How `--list` and `--info` name where a config comes from.
pub fn origin_word(origin: Origin) -> &'static str {
    match origin {
        Origin::System => "system",
        Origin::User => "user",
    }
}
