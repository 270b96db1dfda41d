//! Other local users against a user's per-user distros: the data directory
//! is its owner's alone, so the trees' setuid files, owned by the owner's
//! subordinate ids, are out of everyone else's reach.

use super::*;

/// `cmd` as `user`, outside distrorun.
fn as_user(user: &str, cmd: &[&str]) -> Output {
    Run::as_user(user, &cmd[1..]).bin(cmd[0]).timeout(Duration::from_secs(30)).output()
}

#[test]
fn other_users_cannot_enter_a_users_distros_and_doctor_flags_an_open_directory() {
    require_file(GUEST_TAR_ZST);
    let homes = Homes::new("private");
    let data = homes.base.join("data/distrorun");
    // As an older distrorun left it: open to everyone.
    fs::create_dir(&data).expect("mkdir");
    let (uid, gid) = user_ids(USER);
    std::os::unix::fs::chown(&data, Some(uid), Some(gid)).expect("chown");
    fs::set_permissions(&data, fs::Permissions::from_mode(0o755)).expect("chmod");
    let doctor = homes.run(&["--doctor"]).output();
    assert!(
        doctor.stdout_str().lines().any(|l| l.starts_with("problem:")
            && l.contains(path_str(&data))
            && l.contains("other users can enter it")),
        "--doctor does not flag the open data directory:\n{}",
        doctor.report()
    );

    let name = unique("private");
    homes.create(&name, GUEST_TAR_ZST).assert_ok();
    let mode = fs::metadata(&data).expect("the data directory").permissions().mode() & 0o7777;
    assert_eq!(mode, 0o700, "the data directory is {mode:04o}");

    // The attack: another user runs a setuid program of the tree, which
    // would run as the owner's subordinate root, or looks inside at all.
    let tree = homes.tree(&name);
    let su = tree.join("usr/bin/su");
    assert!(su.exists(), "the guest has no /usr/bin/su");
    let out = as_user(OTHER_USER, &["/usr/bin/stat", path_str(&tree.join("etc"))]);
    assert!(!out.status.success(), "{OTHER_USER} could look into the tree:\n{}", out.report());
    assert!(out.stderr_str().contains("Permission denied"), "{}", out.report());
    let out = as_user(OTHER_USER, &[path_str(&su), "-c", "id -u"]);
    assert!(!out.status.success(), "{OTHER_USER} could run the tree's su:\n{}", out.report());
    // The owner still can, through distrorun.
    homes.run(&[&name, "true"]).output().assert_ok();
    let doctor = homes.run(&["--doctor"]).output();
    assert!(!doctor.stdout_str().contains("other users can enter it"), "{}", doctor.report());
}

#[test]
fn a_data_directory_made_by_create_is_private_from_the_start() {
    require_file(GUEST_TAR_ZST);
    let homes = Homes::new("private2");
    let name = unique("private");
    homes.create(&name, GUEST_TAR_ZST).assert_ok();
    let data = homes.base.join("data/distrorun");
    let mode = fs::metadata(&data).expect("the data directory").permissions().mode() & 0o7777;
    assert_eq!(mode, 0o700, "a new data directory is {mode:04o}");
    let out = as_user(OTHER_USER, &["/usr/bin/ls", path_str(&homes.tree(&name))]);
    assert!(!out.status.success(), "{OTHER_USER} could list the tree:\n{}", out.report());
}
