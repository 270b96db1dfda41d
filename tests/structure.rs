//! The shape of the code, checked on every `cargo test`: the front end's
//! modules import only the ones below them, in the order
//! docs/architecture.md lists them, so there is no import circle; a command
//! never imports another command; no function in `src/` is over 60 lines,
//! and no test file over 600.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

const MAX_FUNCTION_LINES: usize = 60;
const MAX_TEST_FILE_LINES: usize = 600;
/// Over the limit, and waiting for its split by topic.
const LONG_TEST_FILES: &[&str] = &[];

/// Where the map of the code, and with it the order of the layers, lives.
const ARCHITECTURE: &str = "docs/architecture.md";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            out.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out.sort();
    out
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn shown(path: &Path) -> String {
    path.strip_prefix(repo()).unwrap_or(path).display().to_string()
}

/// Functions as rustfmt lays them out: `fn` opens a line, and the body
/// closes with a `}` at the same indentation. `(name, first line, lines)`.
fn functions(text: &str) -> Vec<(String, usize, usize)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let trimmed = line.trim_start();
        let indent = &line[..line.len() - trimmed.len()];
        let rest = ["pub(crate) ", "pub(super) ", "pub ", "const ", "async ", "unsafe ", "extern \"C\" "]
            .iter()
            .fold(trimmed, |s, prefix| s.strip_prefix(prefix).unwrap_or(s));
        let Some(signature) = rest.strip_prefix("fn ") else { continue };
        let name: String = signature.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
        if line.trim_end().ends_with(';') || line.trim_end().ends_with('}') {
            continue;
        }
        let close = format!("{indent}}}");
        if let Some(end) = lines[i..].iter().position(|l| *l == close) {
            out.push((name, i + 1, end + 1));
        }
    }
    out
}

#[test]
fn no_function_in_src_is_over_60_lines() {
    let mut long = Vec::new();
    let files = rust_files(&repo().join("src"));
    assert!(files.len() > 10, "too few files found under src/");
    for file in files {
        for (name, line, count) in functions(&read(&file)) {
            if count > MAX_FUNCTION_LINES {
                long.push(format!("{}:{line}: {name} has {count} lines", shown(&file)));
            }
        }
    }
    assert!(long.is_empty(), "functions over {MAX_FUNCTION_LINES} lines:\n{}", long.join("\n"));
}

#[test]
fn no_test_file_is_over_600_lines() {
    let mut long = Vec::new();
    for file in rust_files(&repo().join("tests")) {
        let count = read(&file).lines().count();
        if count > MAX_TEST_FILE_LINES && !LONG_TEST_FILES.contains(&shown(&file).as_str()) {
            long.push(format!("{} has {count} lines", shown(&file)));
        }
    }
    assert!(long.is_empty(), "test files over {MAX_TEST_FILE_LINES} lines:\n{}", long.join("\n"));
}

/// The front end's modules, top first, as docs/architecture.md lists them
/// under `src/`: `main.rs`, `cli.rs`, `commands/`, ...
fn layers() -> Vec<String> {
    let map = read(&repo().join(ARCHITECTURE));
    let mut lines = map.lines().skip_while(|l| !l.starts_with("src/"));
    lines.next().expect("the architecture lists src/");
    let layers: Vec<String> = lines
        .take_while(|l| l.is_empty() || l.starts_with(' '))
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect();
    assert!(layers.len() > 8, "too few modules listed under src/ in {ARCHITECTURE}: {layers:?}");
    layers
}

/// The module of `src/` a file belongs to, as the architecture names it: `cli.rs`,
/// or `commands/` for everything under `src/commands`.
fn module_of(file: &Path) -> String {
    let relative = file.strip_prefix(repo().join("src")).expect("a file under src/");
    let mut parts = relative.iter();
    let first = parts.next().expect("a path").to_string_lossy().into_owned();
    if parts.next().is_some() {
        format!("{first}/")
    } else {
        first
    }
}

/// The top-level modules `text` imports through `crate::`.
fn imports(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (i, _) in text.match_indices("crate::") {
        let rest = &text[i + "crate::".len()..];
        let names: Vec<&str> = match rest.strip_prefix('{') {
            Some(group) => group.split('}').next().unwrap_or("").split(',').collect(),
            None => vec![rest],
        };
        for name in names {
            let name: String = name.trim().chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            if !name.is_empty() {
                out.insert(name);
            }
        }
    }
    out
}

#[test]
fn modules_import_only_the_ones_below_them() {
    let layers = layers();
    let rank = |module: &str| {
        layers.iter().position(|l| l == module || *l == format!("{module}.rs") || *l == format!("{module}/"))
    };
    let mut wrong = Vec::new();
    for file in rust_files(&repo().join("src")) {
        let module = module_of(&file);
        let Some(own) = rank(&module) else {
            wrong.push(format!("{}: module {module} is not listed in {ARCHITECTURE}", shown(&file)));
            continue;
        };
        for imported in imports(&read(&file)) {
            let why = match rank(&imported) {
                Some(r) if r == own && module == "commands/" => "a command imports another command",
                Some(r) if r >= own => continue,
                Some(_) => "it is listed above the importer",
                None => "it is not listed in the architecture",
            };
            wrong.push(format!("{}: imports crate::{imported}: {why}", shown(&file)));
        }
    }
    assert!(wrong.is_empty(), "imports against the layering in {ARCHITECTURE}:\n{}", wrong.join("\n"));
}

#[test]
fn the_checks_see_what_they_check() {
    let text = "fn short() {\n}\n\n    pub fn long(\n        a: u8,\n    ) {\n        x;\n    }\n";
    assert_eq!(functions(text), [("short".to_owned(), 1, 2), ("long".to_owned(), 4, 5)]);
    let names: Vec<String> =
        imports("use crate::backend::{self, X};\nuse crate::{output, places};\ncrate::tree::open()")
            .into_iter()
            .collect();
    assert_eq!(names, ["backend", "output", "places", "tree"]);
}

/// The `rust-version` the workspace declares is the oldest Rust that builds
/// it: no locked crate asks for a newer one. The scripts install the
/// distribution's toolchain by that number (Debian 12's `rustc-web` and
/// Debian 13's `rustc` are 1.85 in their main suites), debian/control
/// names it, and cargo refuses a crate whose own `rust-version` is above
/// the compiler's: a dependency update that raises it must raise the
/// declared one too, or be held back. Crates for other systems are left
/// out, as they are never built.
#[test]
fn no_locked_crate_needs_a_newer_rust_than_the_workspace_declares() {
    let out = std::process::Command::new(env!("CARGO"))
        .args(["metadata", "--locked", "--offline", "--format-version", "1", "--manifest-path"])
        .arg(repo().join("Cargo.toml"))
        // Only the crates built here are downloaded: a macOS-only one in
        // the lock has no sources to read.
        .arg("--filter-platform")
        .arg(format!("{}-unknown-linux-gnu", std::env::consts::ARCH))
        .output()
        .expect("cannot run cargo metadata");
    assert!(out.status.success(), "cargo metadata failed: {}", String::from_utf8_lossy(&out.stderr));
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("cargo metadata's JSON");
    let version = |v: &str| v.split('.').map(|p| p.parse::<u32>().unwrap_or(0)).collect::<Vec<_>>();
    let declared = read(&repo().join("Cargo.toml"))
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = \"")?.strip_suffix('"').map(str::to_owned))
        .expect("rust-version in Cargo.toml");
    let newer: Vec<String> = meta["packages"]
        .as_array()
        .expect("a package list")
        .iter()
        .filter_map(|p| {
            let wants = p["rust_version"].as_str()?;
            (version(wants) > version(&declared)).then(|| {
                format!(
                    "{} {} needs Rust {wants}",
                    p["name"].as_str().unwrap_or("?"),
                    p["version"].as_str().unwrap_or("?")
                )
            })
        })
        .collect();
    assert!(newer.is_empty(), "the workspace declares Rust {declared}, but:\n{}", newer.join("\n"));
}
