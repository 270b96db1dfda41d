//! The distro directory, like the config, must be root's alone all the way
//! from /.

use std::fs::{self, Permissions};
use std::os::unix::fs::{chown, PermissionsExt};
use std::path::PathBuf;
use std::process::Command;

use super::*;

#[test]
fn distro_dir_owned_by_the_user_is_refused() {
    require_setup();
    let copy = GuestCopy::new("dir-owned");
    let (uid, gid) = user_ids(USER);
    chown(&copy.path, Some(uid), Some(gid)).unwrap();
    let d = TestDistro::with_dir("dir-owned", &copy.path, "");
    assert_both_refused(&d.name, &[path_str(&copy.path)]);
    assert_no_host_mounts(&copy.path);
}

#[test]
fn world_writable_distro_dir_is_refused() {
    require_setup();
    let copy = GuestCopy::new("dir-0777");
    fs::set_permissions(&copy.path, Permissions::from_mode(0o777)).unwrap();
    let d = TestDistro::with_dir("dir-0777", &copy.path, "");
    assert_both_refused(&d.name, &[path_str(&copy.path)]);
    assert_no_host_mounts(&copy.path);
}

/// A complete, root-owned guest tree (hard links to the shared guest) below
/// `parent`, so that only the parent's ownership or mode can refuse it.
fn guest_below(parent: &TempDir) -> PathBuf {
    let tree = parent.path.join("guest");
    let status = Command::new("cp").arg("-al").arg(GUEST).arg(&tree).status().unwrap();
    assert!(status.success(), "cp -al {GUEST} {}", tree.display());
    tree
}

#[test]
fn root_owned_distro_dir_below_a_user_owned_parent_is_refused() {
    require_setup();
    let parent = TempDir::new_in(TEST_ROOT, "dir-parent");
    let (uid, gid) = user_ids(USER);
    chown(&parent.path, Some(uid), Some(gid)).unwrap();
    let tree = guest_below(&parent);
    let d = TestDistro::with_dir("dir-parent", &tree, "");
    assert_both_refused(&d.name, &[path_str(&parent.path)]);
    assert_no_host_mounts(&tree);
}

#[test]
fn root_owned_distro_dir_below_a_group_writable_parent_is_refused() {
    require_setup();
    let parent = TempDir::new_in(TEST_ROOT, "dir-gw").with_mode(0o775);
    let group = nix::unistd::Group::from_name(GROUP).unwrap().expect("the test group exists");
    chown(&parent.path, Some(0), Some(group.gid.as_raw())).unwrap();
    let tree = guest_below(&parent);
    let d = TestDistro::with_dir("dir-gw", &tree, "");
    assert_both_refused(&d.name, &[path_str(&parent.path)]);
    assert_no_host_mounts(&tree);
}

#[test]
fn distro_dir_reached_through_a_symlink_the_user_controls_is_refused() {
    require_setup();
    let copy = GuestCopy::new("dir-link");
    let home = PathBuf::from(format!("/home/{USER}"));
    let in_tmp = PathBuf::from(format!("/tmp/attack-{}", unique("dir-link")));
    let in_home = home.join(format!("attack-{}", unique("dir-link")));
    let _cleanup = Remove(vec![in_tmp.clone(), in_home.clone()]);
    for (link, needle) in [(&in_tmp, "/tmp"), (&in_home, path_str(&home))] {
        user_sh("ln -s \"$1\" \"$2\"", &[path_str(&copy.path), path_str(link)]).output().assert_ok();
        let d = TestDistro::with_dir("dir-link", link, "");
        assert_both_refused(&d.name, &[needle]);
    }
    assert_no_host_mounts(&copy.path);
}
