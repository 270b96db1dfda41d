//! Which config the helper reads: only SYSCONFDIR/distrorun.d/NAME.conf for
//! a NAME inside the grammar, and only when root alone can change it and
//! every directory on the way to it.

use std::ffi::OsStr;
use std::fs::{self, Permissions};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{chown, symlink, PermissionsExt};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use super::*;

/// A NAME outside the grammar, with a trap config placed where a path
/// built from it would lead, so that a missing check shows as a run.
fn bad_names_are_refused(b: Backend) {
    require_setup();
    let t = unique("trap");
    let conf = format!(r#"(dir: "{GUEST}", mapped_volumes: {STANDARD_VOLUMES})"#);
    let parent_trap = Path::new(CONF_DIR).parent().unwrap().join(format!("{t}.conf"));
    let hidden_trap = Path::new(CONF_DIR).join(format!(".{t}.conf"));
    let long = format!("{t}{}", "x".repeat(65 - t.len()));
    let long_trap = Path::new(CONF_DIR).join(format!("{long}.conf"));
    let sub_dir = Path::new(CONF_DIR).join(&t);
    let _cleanup = Remove(vec![parent_trap.clone(), hidden_trap.clone(), long_trap.clone(), sub_dir.clone()]);
    for p in [&parent_trap, &hidden_trap, &long_trap] {
        fs::write(p, &conf).unwrap();
    }
    fs::create_dir(&sub_dir).unwrap();
    fs::write(sub_dir.join("x.conf"), &conf).unwrap();

    let names = [
        format!("../{t}"),
        format!(".{t}"),
        long,
        format!("{t}/x"),
        format!("{t}/../{t}"),
        String::new(),
        ".".into(),
        "..".into(),
        "a b".into(),
        "\u{e9}t\u{e9}".into(),
        "x\ny".into(),
        "-x".into(),
    ];
    for name in &names {
        eprintln!("name {name:?}");
        let out = Run::user(&["--", name.as_str(), "/bin/true"]).backend(b).output();
        assert_refused(&out, &[]);
    }
    let out =
        Run::user(&["--"]).backend(b).arg_os(OsStr::from_bytes(b"\xff\xfe")).arg_os("/bin/true").output();
    assert_refused(&out, &[]);
}

per_backend! {
    fn names_outside_the_grammar_are_refused(b) {
        bad_names_are_refused(b);
    }
}

#[test]
fn names_outside_the_grammar_are_refused_by_the_helper_itself() {
    require_setup();
    let t = unique("htrap");
    let parent_trap = Path::new(CONF_DIR).parent().unwrap().join(format!("{t}.conf"));
    let hidden_trap = Path::new(CONF_DIR).join(format!(".{t}.conf"));
    let _cleanup = Remove(vec![parent_trap.clone(), hidden_trap.clone()]);
    let conf = format!(r#"(dir: "{GUEST}", mapped_volumes: {STANDARD_VOLUMES})"#);
    fs::write(&parent_trap, &conf).unwrap();
    fs::write(&hidden_trap, &conf).unwrap();
    let long = "a".repeat(65);
    for name in [&format!("../{t}"), &format!(".{t}"), "", ".", "..", "a/b", &long, "\u{e9}", "a b", "-v"] {
        eprintln!("name {name:?}");
        let out = with_env_on_stdin(&helper_args(&["--", name, "/bin/true"]), &env_bytes());
        assert_refused(&out, &[]);
    }
    let run = helper_args(&["--"]).arg_os(OsStr::from_bytes(b"\xff")).arg_os("/bin/true");
    assert_refused(&with_env_on_stdin(&run, &env_bytes()), &[]);
}

#[test]
fn config_owned_by_the_user_is_refused() {
    require_setup();
    let d = TestDistro::standard("conf-owned");
    let (uid, gid) = user_ids(USER);
    chown(&d.conf, Some(uid), Some(gid)).unwrap();
    assert_both_refused(&d.name, &[path_str(&d.conf)]);
}

#[test]
fn group_writable_config_is_refused() {
    require_setup();
    let d = TestDistro::standard("conf-0664");
    fs::set_permissions(&d.conf, Permissions::from_mode(0o664)).unwrap();
    assert_both_refused(&d.name, &[path_str(&d.conf)]);
}

#[test]
fn world_writable_config_is_refused() {
    require_setup();
    let d = TestDistro::standard("conf-0666");
    fs::set_permissions(&d.conf, Permissions::from_mode(0o666)).unwrap();
    assert_both_refused(&d.name, &[path_str(&d.conf)]);
}

/// Replaces the config with a root-owned symlink to `target`, which holds
/// a valid config: only the directories on the way make it untrusted.
fn config_symlinked_to(tag: &str, target: &Path) -> TestDistro {
    let d = TestDistro::standard(tag);
    fs::copy(&d.conf, target).unwrap();
    fs::set_permissions(target, Permissions::from_mode(0o644)).unwrap();
    fs::remove_file(&d.conf).unwrap();
    symlink(target, &d.conf).unwrap();
    d
}

#[test]
fn config_symlinked_into_world_writable_tmp_is_refused() {
    require_setup();
    // Root-owned directory and file, but /tmp above them is world-writable.
    let dir = TempDir::new("conf-tmp");
    let d = config_symlinked_to("conf-tmp", &dir.path.join("real.conf"));
    assert_both_refused(&d.name, &["/tmp"]);
}

#[test]
fn config_symlinked_into_a_user_owned_directory_is_refused() {
    require_setup();
    // Below the trusted TEST_ROOT, so that the user-owned directory is the
    // first untrusted component.
    let dir = TempDir::new_in(TEST_ROOT, "conf-user");
    let (uid, gid) = user_ids(USER);
    chown(&dir.path, Some(uid), Some(gid)).unwrap();
    let d = config_symlinked_to("conf-user", &dir.path.join("real.conf"));
    assert_both_refused(&d.name, &[path_str(&dir.path)]);
}

#[test]
fn config_symlinked_into_a_group_writable_directory_is_refused() {
    require_setup();
    let dir = TempDir::new_in(TEST_ROOT, "conf-gw").with_mode(0o775);
    let d = config_symlinked_to("conf-gw", &dir.path.join("real.conf"));
    assert_both_refused(&d.name, &[path_str(&dir.path)]);
}

#[test]
fn config_symlinked_to_a_device_is_refused_without_hanging() {
    require_setup();
    let d = TestDistro::standard("conf-zero");
    fs::remove_file(&d.conf).unwrap();
    symlink("/dev/zero", &d.conf).unwrap();
    assert_both_refused(&d.name, &[]);
}

#[test]
fn config_that_is_a_directory_is_refused() {
    require_setup();
    let name = unique("conf-dir");
    let path = Path::new(CONF_DIR).join(format!("{name}.conf"));
    let _cleanup = Remove(vec![path.clone()]);
    fs::create_dir(&path).unwrap();
    assert_both_refused(&name, &[]);
}

/// A FIFO named NAME.conf: opening it for reading would block forever.
/// Every way in must refuse it promptly.
#[test]
fn fifo_named_like_a_config_is_refused_without_hanging() {
    require_setup();
    let name = unique("conf-fifo");
    let path = Path::new(CONF_DIR).join(format!("{name}.conf"));
    let _cleanup = Remove(vec![path.clone()]);
    nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
    let quick = Duration::from_secs(15);

    let env = EnvFd::sealed_memfd(&env_bytes());
    let mut cmd = helper_args(&[&name, "/bin/true"]).command();
    cmd.stdin(env.open());
    assert_refused(&timed(cmd, quick), &[]);

    for b in [Some(Backend::Helper), Some(Backend::Userns), None] {
        let mut run = Run::user(&[&name, "/bin/true"]);
        if let Some(b) = b {
            run = run.backend(b);
        }
        let mut cmd = run.command();
        cmd.stdin(Stdio::null());
        eprintln!("distrorun with backend {b:?}");
        assert_refused(&timed(cmd, quick), &[]);
    }
}
