//! The property for the setuid helper's side of the hand-off: whatever
//! words and environment bytes a caller gives it, parsing never panics,
//! refusals are sentences, and what is accepted means exactly what
//! `distrorun` would have sent for it.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;

use distrorun_config::handoff::{decode_environment, encode_environment, HelperArgs};

/// Checks one input, read as NUL-separated argument words; panics (which
/// the fuzzers report) when the property fails.
pub fn check(data: &[u8]) {
    let words: Vec<OsString> = data.split(|&b| b == 0).map(|w| OsString::from_vec(w.to_vec())).collect();
    match HelperArgs::parse(words.clone()) {
        Ok(args) => {
            let again = HelperArgs::parse(args.to_words());
            assert_eq!(again.as_ref().ok(), Some(&args), "round trip changed {words:?}");
        }
        Err(e) => assert!(!e.to_string().trim().is_empty(), "empty refusal for {words:?}"),
    }
    match decode_environment(data) {
        Ok(vars) => assert_eq!(encode_environment(&vars), data, "environment round trip"),
        Err(e) => assert!(!e.to_string().trim().is_empty(), "empty refusal for the environment"),
    }
}

/// The seed corpus: an argv as `distrorun` writes it and an environment,
/// compiled in so that the stable fuzzer needs nothing at run time.
pub const SEEDS: &[&[u8]] = &[include_bytes!("../seeds-handoff/args"), include_bytes!("../seeds-handoff/environ")];

/// Words the mutator splices in: every option the helper knows, and `--`.
pub const DICTIONARY: &[&str] = &["--env-fd", "-v", "-d", "--extra-volume", "--", "=", "\0"];
