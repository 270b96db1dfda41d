//! Mistakes in configs and on the command line: each ends with status 125 and
//! an error that says what is wrong and where, never a panic.

use distrorun_testkit::*;
use std::path::Path;

/// The config written verbatim under a fresh name, run as the test user.
fn run_config(tag: &str, ron: &str) -> (TestDistro, Output) {
    let d = TestDistro::with_config(tag, ron);
    let out = Run::user(&[&d.name, "true"]).output();
    (d, out)
}

#[test]
fn a_missing_config_names_the_directories_searched() {
    let name = unique("absent");
    let out = Run::user(&[&name, "true"]).output();
    out.assert_own_error()
        .assert_stderr_has(&name)
        .assert_stderr_has(CONF_DIR)
        .assert_stderr_has(&format!("{}/.config/distrorun.d", home_of(USER).display()));
}

#[test]
fn a_missing_config_honours_xdg_config_home_in_the_search() {
    let name = unique("absent-xdg");
    Run::user(&[&name, "true"])
        .env("XDG_CONFIG_HOME", "/tmp/distrorun-xdg-elsewhere")
        .output()
        .assert_own_error()
        .assert_stderr_has("/tmp/distrorun-xdg-elsewhere/distrorun.d");
}

#[test]
fn a_syntax_error_shows_file_line_and_column() {
    let ron = format!("(\n    dir: {GUEST:?},\n    mapped_volumes: [\"/dev\" \"/tmp\"],\n)\n");
    let (d, out) = run_config("syntax", &ron);
    out.assert_own_error().assert_stderr_has(&format!("{}:3:", d.conf.display()));
}

#[test]
fn an_unknown_key_is_refused_by_name() {
    let (d, out) =
        run_config("unknownkey", &ron_config(Path::new(GUEST), STANDARD_VOLUMES, "mapped_volumez: [],"));
    out.assert_own_error().assert_stderr_has(d.conf.to_str().unwrap()).assert_stderr_has("mapped_volumez");
}

#[test]
fn a_relative_dir_is_refused() {
    let (_d, out) =
        run_config("reldir", &ron_config(Path::new("var/cache/distrorun-test/guest"), STANDARD_VOLUMES, ""));
    out.assert_own_error().assert_stderr_has("var/cache/distrorun-test/guest");
}

#[test]
fn a_dir_with_dot_dot_is_refused() {
    let dir = "/var/cache/distrorun-test/../distrorun-test/guest";
    let (_d, out) = run_config("dotdot", &ron_config(Path::new(dir), STANDARD_VOLUMES, ""));
    out.assert_own_error().assert_stderr_has(dir);
}

#[test]
fn an_empty_dir_is_refused() {
    let (d, out) = run_config("emptydir", &ron_config(Path::new(""), STANDARD_VOLUMES, ""));
    out.assert_own_error().assert_stderr_has(d.conf.to_str().unwrap());
}

#[test]
fn a_relative_volume_is_refused() {
    let (_d, out) = run_config("relvol", &ron_config(Path::new(GUEST), r#"["/dev", "tmp"]"#, ""));
    out.assert_own_error().assert_stderr_has("tmp");
}

#[test]
fn a_volume_with_dot_dot_is_refused() {
    let (_d, out) = run_config("dotdotvol", &ron_config(Path::new(GUEST), r#"["/dev", "/tmp/../etc"]"#, ""));
    out.assert_own_error().assert_stderr_has("/tmp/../etc");
}

#[test]
fn a_bad_backend_value_in_a_config_is_refused() {
    let (d, out) =
        run_config("badbackendkey", &ron_config(Path::new(GUEST), STANDARD_VOLUMES, "backend: sideways,"));
    out.assert_own_error().assert_stderr_has(d.conf.to_str().unwrap());
}

#[test]
fn bad_distro_names_get_one_clear_error() {
    for name in ["../x", "a/b", ".x", "", "-x", "x y", &"a".repeat(65)] {
        let out = Run::user(&[name, "true"]).output();
        out.assert_own_error();
        let err = out.stderr_str();
        assert!(
            err.lines().count() <= 2,
            "one error line (and perhaps a hint) for {name:?}:\n{}",
            out.report()
        );
    }
}

#[test]
fn a_name_of_64_characters_is_valid() {
    // Longest allowed: the error is "no config", not "invalid name".
    let name = "a".repeat(64);
    let out = Run::user(&[&name, "true"]).output();
    out.assert_own_error().assert_stderr_has(CONF_DIR);
}

#[test]
fn an_old_libconfig_file_is_answered_with_its_ron_equivalent() {
    let old = format!("dir = {GUEST:?};\nmapped_volumes = [\"/dev\", \"/home\", \"/tmp\"];\n");
    let (d, out) = run_config("libconfig", &old);
    out.assert_own_error()
        .assert_stderr_has(d.conf.to_str().unwrap())
        .assert_stderr_has(&format!("dir: {GUEST:?}"))
        .assert_stderr_has("mapped_volumes: [");
}

#[test]
fn an_unknown_option_is_refused() {
    let d = TestDistro::standard("badopt");
    Run::user(&["--no-such-option", &d.name, "true"])
        .output()
        .assert_own_error()
        .assert_stderr_has("--no-such-option");
}

#[test]
fn an_option_without_its_value_is_refused() {
    for args in [&["-d"][..], &["--directory"], &["--backend"], &["--extra-volume"]] {
        Run::user(args).output().assert_own_error();
    }
}

#[test]
fn an_unknown_backend_is_refused() {
    let d = TestDistro::standard("bogusbackend");
    Run::user(&["--backend", "bogus", &d.name, "true"])
        .output()
        .assert_own_error()
        .assert_stderr_has("bogus");
}

#[test]
fn no_distro_name_is_a_usage_error() {
    Run::user(&[]).output().assert_own_error();
}

#[test]
fn options_after_the_name_belong_to_the_command() {
    let d = TestDistro::standard("argv");
    let out = Run::user(&[&d.name, "echo", "--backend", "-v", "--", "x"]).output();
    out.assert_ok();
    assert_eq!(out.stdout_str(), "--backend -v -- x\n");
    let out = Run::user(&[&d.name, "--", "echo", "-d", "/"]).output();
    out.assert_ok();
    assert_eq!(out.stdout_str(), "-d /\n");
}

#[test]
fn version_names_the_compiled_in_paths() {
    let out = Run::user(&["--version"]).output();
    out.assert_ok();
    let text = out.stdout_str();
    assert!(text.starts_with("distrorun "), "{}", out.report());
    for line in [
        format!("sysconfdir: {SYSCONFDIR}"),
        format!("libexecdir: {LIBEXECDIR}"),
        format!("helper: {HELPER}"),
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line:?}:\n{}", out.report());
    }
}

#[test]
fn help_succeeds() {
    let out = Run::user(&["--help"]).output();
    out.assert_code(0);
    assert!(
        (out.stdout_str() + &out.stderr_str()).contains("--backend"),
        "help should list the options:\n{}",
        out.report()
    );
}

#[test]
fn list_names_system_and_per_user_distros_with_their_files() {
    let system = TestDistro::standard("listed");
    let user = UserDistro::standard("listed-user");
    let out = Run::user(&["--list"]).output();
    out.assert_ok();
    let lines: Vec<String> = out.stdout_str().lines().map(str::to_owned).collect();
    let system_line = format!("{}\tsystem\t{}", system.name, system.conf.display());
    let user_line = format!("{}\tuser\t{}", user.name, user.conf.display());
    assert!(lines.contains(&system_line), "missing {system_line:?}:\n{}", out.report());
    assert!(lines.contains(&user_line), "missing {user_line:?}:\n{}", out.report());
}
