//! The coverage-guided target for the setuid helper's command line and
//! environment hand-off; see ../Cargo.toml.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    distrorun_config_fuzz::handoff::check(data);
});
