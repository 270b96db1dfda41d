//! `--list [--json]`: the configured distros and where each is defined,
//! with what `--export` wrote; as JSON, with whether and how this caller
//! may use each.

use std::fmt::Write as _;
use std::path::Path;

use distrorun_config::{load, IdMode, Origin};
use distrorun_engine::Error;
use serde::Serialize;

use crate::backend;
use crate::exported::Home;
use crate::machine::Facts;
use crate::output::{self, text};
use crate::places::{self, origin_word};

/// `--list`, as JSON with `--json`.
pub fn list(json: bool) -> Result<(), Error> {
    if json {
        return as_json();
    }
    lines();
    Ok(())
}

/// `--list`: one line per distro, `NAME<TAB>system|user<TAB>CONFIG`.
fn lines() {
    let (system, user) = places::config_dirs();
    let mut out = String::new();
    for (name, origin) in load::list(&system, user.as_deref()) {
        let dir = match origin {
            Origin::System => system.as_path(),
            Origin::User => user.as_deref().unwrap_or(Path::new("")),
        };
        let kind = origin_word(origin);
        let ids = if origin == Origin::User { ids_column(&name) } else { "" };
        let _ = writeln!(out, "{name}\t{kind}\t{}{ids}", dir.join(format!("{name}.conf")).display());
    }
    // What --export and --export-bin wrote: NAME<TAB>export<TAB>WHAT<TAB>FILE.
    if let Ok(home) = Home::from_env() {
        for (distro, what, file) in home.exports() {
            let _ = writeln!(out, "{distro}\texport\t{what}\t{}", file.display());
        }
    }
    output::print(&out);
}

/// The last column for a per-user distro: its id mode, shown only for
/// distros owned through subordinate ids, so that the lines of the others
/// stay as they were.
fn ids_column(name: &str) -> &'static str {
    match places::find_config(name) {
        Ok(found) if found.distro.ids == IdMode::Subuid => "\tids=subuid",
        _ => "",
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
fn as_json() -> Result<(), Error> {
    let caller = places::caller()?;
    let (system, user) = places::config_dirs();
    let mut facts = None;
    let mut entries = Vec::new();
    for (name, origin) in load::list(&system, user.as_deref()) {
        let dir = match origin {
            Origin::System => system.clone(),
            Origin::User => user.clone().unwrap_or_default(),
        };
        let config = dir.join(format!("{name}.conf"));
        let entry = match load::find(&name, &system, user.as_deref()) {
            Ok(found) if found.origin == origin => {
                let facts = facts.get_or_insert_with(|| Facts::probe(&caller));
                let prediction = backend::predict(&found, &caller, facts);
                let (ok, why) = backend::may_use(&found, &caller, &prediction);
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
    output::print_json(&entries)
}
