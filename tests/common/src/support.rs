//! The C programs under tests/support, for what neither a shell nor the
//! test process can do the way an attacker would.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Compiles tests/support/NAME.c with gcc into `dir`, with `extra` flags
/// (e.g. "-static", or "-shared" for a library), executable by everyone.
pub fn compile_support(dir: &Path, name: &str, extra: &[&str]) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../support").join(format!("{name}.c"));
    let out = dir.join(name);
    let status = Command::new("gcc")
        .args(["-O2", "-Wall", "-Wextra", "-Werror"])
        .args(extra)
        .arg("-o")
        .arg(&out)
        .arg(&src)
        .status()
        .expect("gcc is needed for the support programs (ci/test-setup installs it)");
    assert!(status.success(), "gcc failed on {}", src.display());
    fs::set_permissions(&out, fs::Permissions::from_mode(0o755))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", out.display()));
    out
}
