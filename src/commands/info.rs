//! `--info NAME [--json]`: what a distro is, and whether and how this
//! caller may use it, worked out without entering it.
//!
//! The backend is predicted the way a run picks it, except that whether
//! user namespaces are usable is probed in a throw-away child: the front
//! end itself must stay able to exec the setuid helper afterwards.

use std::fmt::Write as _;
use std::os::fd::OwnedFd;
use std::path::Path;

use distrorun_config::cdi::Trust;
use distrorun_config::gpu as devices;
use distrorun_config::BackendChoice;
use distrorun_engine::{mount, Error};
use nix::errno::Errno;
use serde::Serialize;

use crate::backend;
use crate::machine::Facts;
use crate::output::{self, text};
use crate::places::{self, origin_word};
use crate::tree;

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
    /// The running kernel and the form of each engine step it gets.
    kernel: String,
    /// For a distro made from a registry image: its reference and digest.
    image: Option<crate::registry::Origin>,
    /// The config's `devices`.
    devices: Vec<String>,
    /// What a run would bring in for them, or for `--gpu` when the config
    /// asks for none: "INSIDE <- SOURCE" lines, or the error a run would
    /// give.
    device_files: Vec<String>,
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
    let caller = places::caller()?;
    let found = places::find_config(name)?;
    let facts = Facts::probe(&caller);
    let prediction = backend::predict(&found, &caller, &facts);
    let (ok, why_not) = backend::may_use(&found, &caller, &prediction);
    let root = tree::open_path(&found.distro.dir);
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
        kernel: crate::machine::kernel_facilities(),
        image: crate::registry::origin_of(&found),
        devices: d.devices.clone(),
        device_files: device_files(&d.devices),
    };
    if json {
        return output::print_json(&info);
    }
    output::print(&info_text(&info));
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
    let asked = if i.devices.is_empty() { "none; with --gpu".to_owned() } else { i.devices.join(", ") };
    let _ = writeln!(s, "devices:      {asked}");
    for f in &i.device_files {
        let _ = writeln!(s, "  {f}");
    }
    let _ = writeln!(s, "kernel:       {}", i.kernel);
    s
}

/// What the devices (or `--gpu`) would bring in, resolved as the userns
/// backend does.
fn device_files(asked: &[String]) -> Vec<String> {
    let asked = if asked.is_empty() { vec![devices::GPU_ALL.to_owned()] } else { asked.to_vec() };
    match devices::resolve(&asked, Trust::Caller) {
        Ok(plan) => {
            let mut lines: Vec<String> =
                plan.nodes.iter().map(|n| format!("{} (device node, from /dev)", n.display())).collect();
            lines.extend(plan.files.iter().map(|f| {
                let place = match &f.place {
                    devices::Place::Library(name) => format!("{}/{name}", devices::LIB_DIR),
                    devices::Place::At(p) => p.display().to_string(),
                };
                match &f.source {
                    devices::Source::Host(p) => format!("{place} <- {}", p.display()),
                    devices::Source::Link(t) => format!("{place} -> {t}"),
                    devices::Source::Contents(_) => format!("{place} (rewritten)"),
                }
            }));
            lines.extend(plan.env.iter().map(|v| format!("environment {v}")));
            lines
        }
        Err(e) => vec![format!("error: {e}")],
    }
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
        let Ok(fd) = tree::open_inside(root, Path::new(path)) else { continue };
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
