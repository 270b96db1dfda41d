//! Whether this machine is ready for the integration tests: what
//! `ci/test-setup` makes, checked once per test binary.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::SystemTime;

use crate::{BIN, DROPTO, GROUP, GUEST, GUEST_SUITE_FILE, HELPER, OTHER_USER, SEAM_BIN, USER};

const SETUP_HINT: &str = "run `make test` as root, which prepares the machine and rebuilds and reinstalls \
     the test binaries (or `ci/test-setup`, then `cargo test --features integration`)";

/// The checkout the tests were built from.
fn source_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn check_setup() -> Result<(), String> {
    if !nix::unistd::geteuid().is_root() {
        return Err("the integration tests must run as root: they drop to the test users themselves".into());
    }
    let suite =
        fs::read_to_string(GUEST_SUITE_FILE).map_err(|e| format!("cannot read {GUEST_SUITE_FILE}: {e}"))?;
    if suite.trim().is_empty() {
        return Err(format!("{GUEST_SUITE_FILE} is empty"));
    }
    for f in ["bin/sh", "usr/bin/cat", "etc/os-release"] {
        let p = Path::new(GUEST).join(f);
        fs::metadata(&p).map_err(|e| format!("the guest tree lacks {}: {e}", p.display()))?;
    }
    for bin in [BIN, SEAM_BIN, DROPTO] {
        let m = fs::metadata(bin).map_err(|e| format!("{bin}: {e}"))?;
        if m.uid() != 0 || m.permissions().mode() & 0o7777 != 0o755 {
            return Err(format!(
                "{bin} must be root-owned with mode 0755, is uid {} mode {:o}",
                m.uid(),
                m.permissions().mode() & 0o7777
            ));
        }
    }
    let m = fs::metadata(HELPER).map_err(|e| format!("{HELPER}: {e}"))?;
    if m.uid() != 0 || m.gid() != 0 || m.permissions().mode() & 0o7777 != 0o4755 {
        return Err(format!(
            "{HELPER} must be root:root with mode 4755, is {}:{} mode {:o}",
            m.uid(),
            m.gid(),
            m.permissions().mode() & 0o7777
        ));
    }
    for u in [USER, OTHER_USER] {
        match nix::unistd::User::from_name(u) {
            Ok(Some(_)) => {}
            Ok(None) => return Err(format!("the user {u} does not exist")),
            Err(e) => return Err(format!("looking up the user {u}: {e}")),
        }
    }
    let group = match nix::unistd::Group::from_name(GROUP) {
        Ok(Some(g)) => g,
        Ok(None) => return Err(format!("the group {GROUP} does not exist")),
        Err(e) => return Err(format!("looking up the group {GROUP}: {e}")),
    };
    if !group.mem.iter().any(|m| m == USER) {
        return Err(format!("{USER} is not a member of {GROUP}"));
    }
    check_fresh()
}

/// The tests run the installed binaries, not the ones cargo just built: an
/// installed copy older than the sources would test yesterday's code and
/// report its failures (or passes) against today's.
fn check_fresh() -> Result<(), String> {
    let root = source_root();
    let mut rust = None;
    for dir in ["src", "helper", "config"] {
        newest_source(&root.join(dir), &mut rust).map_err(|e| format!("scanning the sources: {e}"))?;
    }
    let dropto_c = root.join("tests/support/dropto.c");
    let m = fs::metadata(&dropto_c).map_err(|e| format!("{}: {e}", dropto_c.display()))?;
    let dropto = Some((mtime(&m), dropto_c));
    for (bin, source) in [(BIN, &rust), (SEAM_BIN, &rust), (HELPER, &rust), (DROPTO, &dropto)] {
        let Some((changed, source)) = source else { continue };
        let installed = mtime(&fs::metadata(bin).map_err(|e| format!("{bin}: {e}"))?);
        if *changed > installed {
            let shown = source.strip_prefix(&root).unwrap_or(source);
            return Err(format!(
                "{bin} is older than {}, so the installed test binaries are stale",
                shown.display()
            ));
        }
    }
    Ok(())
}

fn mtime(m: &fs::Metadata) -> SystemTime {
    m.modified().expect("Linux file systems record modification times")
}

/// The most recently changed file that goes into the binaries below `dir`:
/// Rust sources, manifests and build scripts. The fuzz targets and any build
/// output are not part of them.
fn newest_source(dir: &Path, newest: &mut Option<(SystemTime, PathBuf)>) -> std::io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let file_type = entry.file_type()?;
        if file_type.is_dir() {
            if name != "target" && name != "fuzz" && !name.as_encoded_bytes().starts_with(b".") {
                newest_source(&entry.path(), newest)?;
            }
            continue;
        }
        let name = name.to_string_lossy();
        if !file_type.is_file() || !(name.ends_with(".rs") || name == "Cargo.toml") {
            continue;
        }
        let changed = mtime(&entry.metadata()?);
        if newest.as_ref().is_none_or(|(t, _)| changed > *t) {
            *newest = Some((changed, entry.path()));
        }
    }
    Ok(())
}

/// Panics with the reason (and the fix: run `make test`) unless the test
/// environment is complete and its binaries are as new as the sources.
pub fn require_setup() {
    static SETUP: OnceLock<Result<(), String>> = OnceLock::new();
    if let Err(why) = SETUP.get_or_init(check_setup) {
        panic!("the test environment is not ready: {why}; {SETUP_HINT}");
    }
}

pub fn guest_suite() -> String {
    fs::read_to_string(GUEST_SUITE_FILE)
        .unwrap_or_else(|e| panic!("cannot read {GUEST_SUITE_FILE}: {e}; {SETUP_HINT}"))
        .trim()
        .to_owned()
}
