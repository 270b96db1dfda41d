//! The property both fuzzers check: whatever bytes a config file holds,
//! parsing it never panics, and an error renders as a sentence whose first
//! line is not empty (distrorun prints it after `distrorun: `). The old
//! libconfig translator obeys the same rule, and whatever it produces is
//! itself parsed.

pub mod handoff;

use std::path::Path;

use distrorun_config::libconfig::{looks_like_libconfig, to_ron};
use distrorun_config::load::parse;

/// Checks one input; panics (which the fuzzers report) when the property fails.
pub fn check(data: &[u8]) {
    // The loader refuses non-UTF-8 files before parsing; the lossy text
    // still exercises the parser with the replacement characters.
    let text = String::from_utf8_lossy(data);
    parse_renders(&text);
    let old = looks_like_libconfig(&text);
    if let Some(ron) = to_ron(&text) {
        parse_renders(&ron);
        assert!(old || ron.starts_with('('), "translation of non-libconfig text: {ron:?}");
    }
}

fn parse_renders(text: &str) {
    if let Err(e) = parse(Path::new("/etc/distrorun.d/fuzz.conf"), text) {
        let msg = e.to_string();
        let first = msg.lines().next().unwrap_or("");
        assert!(!first.trim().is_empty(), "error without a first line: {msg:?} for {text:?}");
        if let Some(hint) = e.hint() {
            assert!(!hint.trim().is_empty(), "empty hint for {text:?}");
        }
    }
}

/// The seed corpus: files under `seeds/`, compiled in so that the stable
/// fuzzer needs nothing at run time.
pub const SEEDS: &[&[u8]] = &[
    include_bytes!("../seeds/minimal.conf"),
    include_bytes!("../seeds/full.conf"),
    include_bytes!("../seeds/volumes.conf"),
    include_bytes!("../seeds/libconfig.conf"),
    include_bytes!("../seeds/libconfig-colon.conf"),
    include_bytes!("../seeds/edge.conf"),
    include_bytes!("../seeds/nested.conf"),
];

/// Tokens a mutation may insert: the schema's keys and values, RON and
/// libconfig punctuation, and text that has broken parsers before.
pub const DICTIONARY: &[&str] = &[
    "dir",
    "mapped_volumes",
    "users",
    "groups",
    "allow_setuid",
    "backend",
    "src",
    "dst",
    "read_only",
    "optional",
    "auto",
    "userns",
    "helper",
    "true",
    "false",
    "Some(",
    "None",
    "(",
    ")",
    "[",
    "]",
    "{",
    "}",
    ",",
    ":",
    ";",
    "=",
    "\"",
    "\\\"",
    "\\u{0}",
    "\\u{ffff}",
    "\\",
    "/*",
    "*/",
    "//",
    "#",
    "\n",
    "\r\n",
    "\"/srv/x\"",
    "\"/\"",
    "\"\"",
    "\"..\"",
    "\"/a/../b\"",
    "\"rel\"",
    "\"/proc/x\"",
    "\"/a\\nb\"",
    "r#\"",
    "\"#",
    "0x",
    "1e309",
    "-0",
    "NaN",
    "inf",
    "'a'",
    "b\"x\"",
    "#![enable(implicit_some)]",
    "#![enable(unwrap_newtypes)]",
    "\u{feff}",
    "\u{2028}",
    "é",
    "\0",
];
