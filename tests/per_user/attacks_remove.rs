//! `--remove` deletes only what `--create` wrote: a config edited (or
//! written) by hand to name another directory gets nothing deleted.

use super::*;

/// Points `name`'s config at `dir`, as a hand edit would.
fn point_config_at(homes: &Homes, name: &str, dir: &Path) {
    let conf = homes.config(name);
    let text = fs::read_to_string(&conf).expect("the config");
    let tree = homes.tree(name);
    let edited =
        text.replace(&format!("dir: \"{}\"", tree.display()), &format!("dir: \"{}\"", dir.display()));
    assert_ne!(edited, text, "the config does not name {}", tree.display());
    fs::write(&conf, edited).expect("write the config");
}

#[test]
fn remove_refuses_a_config_that_names_a_directory_create_did_not_make() {
    require_file(GUEST_TAR_ZST);
    let homes = Homes::new("rmforeign");
    let (uid, gid) = user_ids(USER);
    // The user's own files, and a hand-made directory inside the data
    // directory under the distro's name.
    let own = homes.base.join("my-files");
    fs::create_dir(&own).expect("mkdir");
    fs::write(own.join("thesis.tex"), b"years of work").expect("write");
    sh(&format!("chown -R {uid}:{gid} {}", own.display()));

    let name = unique("rmf");
    homes.create(&name, GUEST_TAR_ZST).assert_ok();
    let other = unique("rmo");
    homes.create(&other, GUEST_TAR_ZST).assert_ok();
    for (dir, needle) in [
        (own.clone(), "is not"),
        // Another distro's tree: a tree, but not this name's.
        (homes.tree(&other), "is not"),
    ] {
        point_config_at(&homes, &name, &dir);
        let out = homes.run(&["--remove", &name, "--yes"]).output();
        assert_refused(&out, &["was not made by distrorun --create", needle]);
        assert!(homes.config(&name).exists(), "the config was removed");
        point_config_at_tree(&homes, &name, &dir);
    }
    assert_eq!(fs::read(own.join("thesis.tex")).expect("the user's files survive"), b"years of work");
    assert!(homes.tree(&other).join("etc/shadow").exists(), "the other distro was damaged");

    // The tree itself swapped for a directory of the user's own making:
    // in the right place, but not what create made.
    let tree = homes.tree(&name);
    sh(&format!("mv {} {}.moved", tree.display(), tree.display()));
    fs::create_dir(&tree).expect("mkdir");
    fs::write(tree.join("keep"), b"mine").expect("write");
    sh(&format!("chown -R {uid}:{gid} {}", tree.display()));
    let out = homes.run(&["--remove", &name, "--yes"]).output();
    assert_refused(&out, &["refusing to delete", path_str(&tree), "did not make it"]);
    assert_eq!(fs::read(tree.join("keep")).expect("the directory survives"), b"mine");

    // Put back, the distro is removed as ever.
    sh(&format!("rm -rf {t}; mv {t}.moved {t}", t = tree.display()));
    homes.run(&["--remove", &name, "--yes"]).output().assert_ok();
    homes.assert_absent(&name);
}

/// Undoes [`point_config_at`].
fn point_config_at_tree(homes: &Homes, name: &str, dir: &Path) {
    let conf = homes.config(name);
    let text = fs::read_to_string(&conf).expect("the config");
    let tree = homes.tree(name);
    fs::write(
        &conf,
        text.replace(&format!("dir: \"{}\"", dir.display()), &format!("dir: \"{}\"", tree.display())),
    )
    .expect("write the config");
}
