//! A program that is there but cannot run is named as such, with what is
//! wrong, and exits 126: never "command not found" for a file that exists.

use super::*;

/// The dynamic loaders of the architectures Debian builds for, by the
/// path their programs name.
const LOADERS: &[&str] = &[
    "/lib64/ld-linux-x86-64.so.2",
    "/lib/ld-linux-aarch64.so.1",
    "/lib/ld-linux-riscv64-lp64d.so.1",
    "/lib64/ld64.so.2",
    "/lib/ld64.so.1",
    "/lib/ld-linux.so.2",
    "/lib/ld-linux-armhf.so.3",
];

/// A 64-bit little-endian ELF executable header for `machine` whose one
/// program header, `PT_INTERP`, names `interp`: as much of a program as the
/// kernel reads before it refuses one.
fn elf64(machine: u16, interp: &str) -> Vec<u8> {
    let mut f = vec![0u8; 64 + 56];
    f[..4].copy_from_slice(b"\x7fELF");
    f[4] = 2; // 64-bit
    f[5] = 1; // little-endian
    f[6] = 1; // version
    f[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    f[18..20].copy_from_slice(&machine.to_le_bytes());
    f[20..24].copy_from_slice(&1u32.to_le_bytes());
    f[32..40].copy_from_slice(&64u64.to_le_bytes()); // e_phoff
    f[52..54].copy_from_slice(&64u16.to_le_bytes()); // e_ehsize
    f[54..56].copy_from_slice(&56u16.to_le_bytes()); // e_phentsize
    f[56..58].copy_from_slice(&1u16.to_le_bytes()); // e_phnum
    f[64..68].copy_from_slice(&3u32.to_le_bytes()); // PT_INTERP
    let offset = f.len() as u64;
    f[72..80].copy_from_slice(&offset.to_le_bytes());
    f[96..104].copy_from_slice(&(interp.len() as u64 + 1).to_le_bytes());
    f.extend_from_slice(interp.as_bytes());
    f.push(0);
    f
}

/// A copy of the guest with an executable file `inside` holding `bytes`.
fn copy_with_program(tag: &str, inside: &str, bytes: &[u8]) -> GuestCopy {
    let copy = GuestCopy::new(tag);
    let path = copy.inside(inside);
    fs::write(&path, bytes).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("chmod");
    copy
}

#[track_caller]
fn assert_cannot_run(out: &Output, wanted: &[&str]) {
    out.assert_code(126);
    let err = out.stderr_str();
    assert!(err.starts_with("distrorun: cannot run "), "{}", out.report());
    assert!(!err.contains("not found"), "a command that is there reported as not found:\n{}", out.report());
    for w in wanted {
        out.assert_stderr_has(w);
    }
}

per_backend! {
    fn a_program_whose_loader_is_missing_names_the_loader_and_exits_126(b) {
        let copy = GuestCopy::new("noloader");
        let loader = LOADERS
            .iter()
            .find(|l| fs::symlink_metadata(copy.inside(l)).is_ok())
            .unwrap_or_else(|| panic!("the guest has none of the loaders {LOADERS:?}"));
        let path = copy.inside(loader);
        fs::remove_file(&path).unwrap_or_else(|e| panic!("remove {}: {e}", path.display()));
        assert!(copy.inside("/usr/bin/cat").exists());
        let d = TestDistro::with_dir("noloader", &copy.path, "");
        for cmd in ["cat", "/usr/bin/cat"] {
            let out = run_in(b, &d, &[cmd, "/etc/os-release"]).output();
            assert_cannot_run(&out, &["/usr/bin/cat", loader, "ELF interpreter", "missing"]);
        }
    }

    fn a_program_for_another_architecture_names_both_and_qemu_user(b) {
        // EM_AARCH64, or EM_S390 on an aarch64 machine.
        let (machine, name) = if cfg!(target_arch = "aarch64") { (22u16, "s390x") } else { (183, "aarch64") };
        let copy = copy_with_program("foreign", "/usr/local/bin/foreign-tool", &elf64(machine, "/lib/ld-linux-foreign.so.1"));
        let d = TestDistro::with_dir("foreign", &copy.path, "");
        for cmd in ["foreign-tool", "/usr/local/bin/foreign-tool"] {
            let out = run_in(b, &d, &[cmd]).output();
            assert_cannot_run(&out, &["/usr/local/bin/foreign-tool", name, "/lib/ld-linux-foreign.so.1", "binfmt_misc", "qemu-user"]);
        }
    }

    fn a_script_whose_interpreter_is_missing_names_the_interpreter(b) {
        let copy = copy_with_program("shebang", "/usr/local/bin/vendor-tool", b"#!/opt/vendor/bin/tclsh -f\nputs hello\n");
        let d = TestDistro::with_dir("shebang", &copy.path, "");
        for cmd in ["vendor-tool", "/usr/local/bin/vendor-tool"] {
            let out = run_in(b, &d, &[cmd]).output();
            assert_cannot_run(&out, &["/usr/local/bin/vendor-tool", "/opt/vendor/bin/tclsh", "#!"]);
        }
    }

    fn a_broken_program_earlier_in_path_does_not_hide_one_that_runs(b) {
        // /usr/local/bin comes before /usr/bin in PATH, as execvp searches.
        let copy = copy_with_program("shadowed", "/usr/local/bin/cat", b"#!/opt/vendor/bin/tclsh\n");
        let d = TestDistro::with_dir("shadowed", &copy.path, "");
        let out = run_in(b, &d, &["cat", "/etc/hostname"]).env("PATH", "/usr/local/bin:/usr/bin:/bin").output();
        out.assert_ok();
    }

    fn a_script_without_a_shebang_line_still_runs_through_sh(b) {
        let copy = copy_with_program("noshebang", "/usr/local/bin/plain-script", b"echo ran by sh\n");
        let d = TestDistro::with_dir("noshebang", &copy.path, "");
        let out = run_in(b, &d, &["plain-script"]).output();
        out.assert_ok();
        assert_eq!(out.stdout_str(), "ran by sh\n");
    }
}
