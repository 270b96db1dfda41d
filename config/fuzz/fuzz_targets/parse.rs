//! The coverage-guided target for cargo-fuzz (nightly); see ../Cargo.toml.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    distrorun_config_fuzz::check(data);
});
