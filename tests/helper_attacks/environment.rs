//! A hostile environment at the helper: nothing in it reaches the helper's
//! loader, libc or config lookup, and the command gets exactly the
//! environment from the env fd.

use std::fs;
use std::os::unix::ffi::OsStrExt;

use super::*;

/// Loader, libc and Rust variables aimed at a user-writable directory: the
/// helper loads nothing from there, behaves as usual, and the command gets
/// exactly the environment from the env fd.
#[test]
fn hostile_environment_changes_nothing_in_the_helper() {
    require_setup();
    let d = TestDistro::standard("hostile-env");
    let libdir = TempDir::owned_by(USER, "libdir");
    let markers = TempDir::new("markers").with_mode(0o777);
    let define = format!("-DMARKER_DIR=\"{}\"", markers.path.display());
    let lib = compile_support(&libdir.path, "attack_preload", &["-shared", "-fPIC", &define]);
    let lib = lib.with_extension("so");
    fs::rename(libdir.path.join("attack_preload"), &lib).unwrap();
    let markers_left =
        || fs::read_dir(&markers.path).unwrap().flatten().map(|e| e.file_name()).collect::<Vec<_>>();

    let hostile = concat!(
        "export LD_PRELOAD=\"$1\" LD_AUDIT=\"$1\" LD_LIBRARY_PATH=\"$2\" GCONV_PATH=\"$2\" ",
        "LD_DEBUG=all LD_DEBUG_OUTPUT=\"$2/ld-debug\" LD_BIND_NOW=1 LD_SHOW_AUXV=1 ",
        "MALLOC_CHECK_=3 MALLOC_PERTURB_=165 MALLOC_ARENA_MAX=1 GLIBC_TUNABLES=glibc.malloc.check=3 ",
        "LOCPATH=\"$2\" NLSPATH=\"$2/%N\" HOSTALIASES=\"$2/hosts\" TMPDIR=\"$2\" TZDIR=\"$2\" ",
        "RUST_BACKTRACE=full RUST_LIB_BACKTRACE=1 RUST_MIN_STACK=1 RUST_LOG=trace ",
        "LANG=xx_XX.bogus LC_ALL=xx_XX.bogus PATH=\"$2\" IFS=/ ",
        "DISTRORUN_SYSCONFDIR=\"$2\" DISTRORUN_LIBEXECDIR=\"$2\" XDG_CONFIG_HOME=\"$2\"; ",
        "shift 2; exec 3<&0 0</dev/null; exec \"$@\"",
    );
    let lib_s = path_str(&lib);
    let dir_s = path_str(&libdir.path);

    let debug_files = || {
        fs::read_dir(&libdir.path)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.file_name().is_some_and(|n| n.as_bytes().starts_with(b"ld-debug")))
            .collect::<Vec<_>>()
    };

    // dash, not bash: bash warns on stderr about the bogus locale.
    let dash = |args: &[&str]| {
        let mut all = vec!["-c", hostile, "sh"];
        all.extend_from_slice(args);
        Run::user(&all).bin("/bin/sh")
    };

    // The library works: an ordinary program run this way loads it.
    dash(&[lib_s, dir_s, "/bin/true"]).output();
    assert!(!markers_left().is_empty(), "control failed: the preload library was not loaded by /bin/true");
    for m in markers_left() {
        fs::remove_file(markers.path.join(m)).unwrap();
    }
    for f in debug_files() {
        fs::remove_file(f).unwrap();
    }

    let env = env_bytes();
    let run = dash(&[lib_s, dir_s, HELPER, "--env-fd", "3", &d.name, "/usr/bin/cat", "/proc/self/environ"]);
    let out = with_env_on_stdin(&run, &env);
    assert_no_panic(&out);
    out.assert_ok();
    assert_eq!(out.stdout, env, "the command's environment differs from the one on the env fd");
    assert!(markers_left().is_empty(), "the preload library was loaded: {:?}", markers_left());
    assert!(debug_files().is_empty(), "the loader wrote debug output for the helper: {:?}", debug_files());

    // Without --env-fd the same environment gets the same refusal as always.
    let run = dash(&[lib_s, dir_s, HELPER, &d.name, "/bin/true"]);
    assert_refused(&with_env_on_stdin(&run, &env), &[]);
    assert!(markers_left().is_empty(), "the preload library was loaded: {:?}", markers_left());
}

/// `DISTRORUN_SYSCONFDIR`, `XDG_CONFIG_HOME` and `HOME` point at configs the user
/// wrote; the helper knows only its compiled-in directory.
#[test]
fn helper_takes_no_config_from_its_environment() {
    require_setup();
    let name = unique("env-conf");
    let evil = TempDir::owned_by(USER, "env-conf");
    let conf = format!(r#"(dir: "{GUEST}", mapped_volumes: ["/root"], allow_setuid: true)"#);
    for sub in ["etc/distrorun.d", "cfg/distrorun.d", "home/.config/distrorun.d"] {
        fs::create_dir_all(evil.path.join(sub)).unwrap();
        fs::write(evil.path.join(sub).join(format!("{name}.conf")), &conf).unwrap();
    }
    let out = with_env_on_stdin(
        &helper_args(&[&name, "/bin/true"])
            .env("DISTRORUN_SYSCONFDIR", evil.path.join("etc"))
            .env("XDG_CONFIG_HOME", evil.path.join("cfg"))
            .env("HOME", evil.path.join("home")),
        &env_bytes(),
    );
    assert_refused(&out, &[&name, CONF_DIR]);
    assert!(!out.stderr_str().contains(path_str(&evil.path)), "the helper looked at the user's directory");
}

#[test]
fn huge_helper_environment_changes_nothing() {
    require_setup();
    let d = TestDistro::standard("huge-env");
    let big = "x".repeat(100 * 1024);
    let mut run = helper_args(&[&d.name, "/usr/bin/cat", "/proc/self/environ"]);
    for i in 0..12 {
        run = run.env(format!("HUGE_{i}"), &big);
    }
    let env = env_bytes();
    let out = with_env_on_stdin(&run, &env);
    out.assert_ok();
    assert_eq!(out.stdout, env);
}
