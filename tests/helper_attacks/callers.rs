//! Who may start the helper, and use which distro: a user other than root,
//! through the installed setuid-root copy only, as `users` and `groups`
//! allow.

use std::fs::{self, Permissions};
use std::os::unix::fs::{chown, PermissionsExt};

use super::*;

/// users/groups decide alike under every backend.
fn access_lists_are_enforced(b: Backend) {
    require_setup();
    let volumes = format!(r#"dir: "{GUEST}", mapped_volumes: {STANDARD_VOLUMES}"#);

    let d = TestDistro::with_config("acl-users", &format!(r#"({volumes}, users: ["nobody-else"])"#));
    let out = Run::user(&[&d.name, "/bin/true"]).backend(b).output();
    assert_refused(&out, &[USER, &d.name]);

    let d = TestDistro::with_config("acl-group", &format!(r#"({volumes}, groups: ["{GROUP}"])"#));
    Run::user(&[&d.name, "/bin/true"]).backend(b).output().assert_ok();

    let d = TestDistro::with_config("acl-me", &format!(r#"({volumes}, users: ["{USER}"])"#));
    Run::user(&[&d.name, "/bin/true"]).backend(b).output().assert_ok();

    let d = TestDistro::with_config("acl-nogroup", &format!(r#"({volumes}, users: [], groups: ["root"])"#));
    let out = Run::user(&[&d.name, "/bin/true"]).backend(b).output();
    assert_refused(&out, &[USER, &d.name]);

    // The same group list that admits the test user refuses another user.
    let _lock = other_user_lock();
    let d = TestDistro::with_config("acl-other", &format!(r#"({volumes}, groups: ["{GROUP}"])"#));
    let out = Run::as_user(OTHER_USER, &[&d.name, "/bin/true"]).backend(b).output();
    assert_refused(&out, &[OTHER_USER, &d.name]);
}

per_backend! {
    fn users_and_groups_lists_decide_alike_on_every_backend(b) {
        access_lists_are_enforced(b);
    }
}

#[test]
fn helper_refuses_root_as_caller() {
    require_setup();
    let d = TestDistro::standard("as-root");
    let env = EnvFd::sealed_memfd(&env_bytes());
    let mut cmd = helper_as(None, &[&d.name, "/bin/true"]).command();
    cmd.stdin(env.open());
    assert_refused(&timed(cmd, RUN_TIMEOUT), &["root"]);
}

#[test]
fn helper_copies_that_are_not_setuid_root_refuse() {
    require_setup();
    let d = TestDistro::standard("not-suid");
    let dir = TempDir::new_in(TEST_ROOT, "not-suid");
    let plain = dir.path.join("plain-helper");
    fs::copy(HELPER, &plain).unwrap();
    fs::set_permissions(&plain, Permissions::from_mode(0o755)).unwrap();
    let user_suid = dir.path.join("user-suid-helper");
    fs::copy(HELPER, &user_suid).unwrap();
    let (uid, gid) = user_ids(USER);
    chown(&user_suid, Some(uid), Some(gid)).unwrap();
    fs::set_permissions(&user_suid, Permissions::from_mode(0o4755)).unwrap();
    for copy in [&plain, &user_suid] {
        let run = Run::user(&["-c", ENV_ON_3, "bash", path_str(copy), "--env-fd", "3", &d.name, "/bin/true"])
            .bin("/bin/bash");
        let out = with_env_on_stdin(&run, &env_bytes());
        assert_refused(&out, &["setuid"]);
    }
}

#[test]
fn helper_rechecks_users_list_itself() {
    require_setup();
    let d = TestDistro::with_config(
        "acl-direct",
        &format!(r#"(dir: "{GUEST}", mapped_volumes: {STANDARD_VOLUMES}, users: ["nobody-else"])"#),
    );
    let out = with_env_on_stdin(&helper_args(&[&d.name, "/bin/true"]), &env_bytes());
    assert_refused(&out, &[USER, &d.name]);
}
