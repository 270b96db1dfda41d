//! Root making a system distro (`--create --system`) from hostile input: a
//! state directory that already holds a directory of the name, and an
//! archive carrying privileged extended attributes.

use super::*;

/// A directory of the distro's name that distrorun did not make (a web
/// site, say) is never taken for a leftover: refused, with its path, and
/// left as it was; so is a `.NAME.partial` it did not make.
#[test]
fn a_system_create_never_deletes_a_directory_it_did_not_make() {
    require_file(GUEST_TAR_ZST);
    let state = TempDir::new("state");
    for entry in ["{}", ".{}.partial"] {
        let name = unique("www");
        let conf = Path::new(CONF_DIR).join(format!("{name}.conf"));
        let _cleanup = Remove(vec![conf.clone()]);
        let site = state.join(entry.replace("{}", &name));
        fs::create_dir(&site).expect("mkdir");
        fs::write(site.join("index.html"), b"<h1>the web site</h1>").expect("write");
        let out = Run::root(&[
            "-q",
            "--create",
            &name,
            "--system",
            "--state-dir",
            state.str(),
            "--tarball",
            GUEST_TAR_ZST,
        ])
        .timeout(Duration::from_secs(300))
        .output();
        assert_refused(&out, &["refusing to delete", path_str(&site), "did not make it"]);
        assert_eq!(fs::read(site.join("index.html")).expect("the site survives"), b"<h1>the web site</h1>");
        assert!(!conf.exists(), "a config was written");
    }
}

/// `getcap`'s view of a file: empty when it has no capability.
fn getcap(file: &Path) -> String {
    let out = timed(
        {
            let mut c = Command::new("getcap");
            c.arg(file);
            c
        },
        Duration::from_secs(30),
    );
    out.assert_ok();
    out.stdout_str()
}

fn has_xattr(file: &Path, name: &str) -> bool {
    Command::new("python3")
        .args(["-c", "import os, sys; os.getxattr(sys.argv[1], sys.argv[2], follow_symlinks=False)"])
        .arg(file)
        .arg(name)
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The archive gives a copy of `cat` the capability to read any file, and
/// carries a `trusted.*` attribute; as root, neither is applied unless
/// named, and the summary says how many were dropped. Another user then
/// cannot read /etc/shadow through the tree.
#[test]
fn a_system_create_drops_privileged_extended_attributes() {
    let evil = Evil::new();
    let tarball = evil.make(
        "xattrs.tar",
        "mkdir -p t/usr/bin; cp /bin/cat t/usr/bin/reader; setcap cap_dac_read_search+ep t/usr/bin/reader;\
         python3 -c 'import os; [os.setxattr(\"t/usr/bin/reader\", n, b\"1\") for n in (\"trusted.evil\", \"user.kept\")]';\
         tar --numeric-owner --xattrs --xattrs-include='*' -C t -cf xattrs.tar ./usr",
    );
    let listed = timed(
        {
            let mut c = Command::new("tar");
            c.args(["--xattrs", "--xattrs-include=*", "-tvvf", &tarball]);
            c
        },
        Duration::from_secs(30),
    );
    assert!(
        listed.stdout_str().contains("trusted.evil"),
        "tar did not store trusted.evil:\n{}",
        listed.report()
    );
    let state = TempDir::new("xattrs");
    let names = [unique("caps"), unique("caps")];
    let _cleanup = Remove(names.iter().map(|n| Path::new(CONF_DIR).join(format!("{n}.conf"))).collect());
    for (keep, name) in [false, true].into_iter().zip(&names) {
        let mut args = vec!["--create", name, "--system", "--state-dir", state.str(), "--tarball", &tarball];
        if keep {
            args.extend(["--keep-xattr", "security.capability"]);
        }
        let out = Run::root(&args).timeout(Duration::from_secs(120)).output();
        out.assert_code(0);
        let reader = state.join(name).join("usr/bin/reader");
        assert!(!has_xattr(&reader, "trusted.evil"), "trusted.evil was applied to {}", reader.display());
        assert!(has_xattr(&reader, "user.kept"), "user.kept was dropped from {}", reader.display());
        let caps = getcap(&reader);
        if keep {
            assert!(caps.contains("cap_dac_read_search"), "the named capability was dropped: {caps:?}");
            assert!(out.stderr_str().contains("1 privileged extended attributes"), "{}", out.report());
        } else {
            assert_eq!(caps, "", "the file capability was applied");
            assert!(out.stderr_str().contains("2 privileged extended attributes"), "{}", out.report());
            // The attack itself: another user reads /etc/shadow with it.
            let read = Run::as_user(OTHER_USER, &["/etc/shadow"]).bin(path_str(&reader)).output();
            assert!(!read.status.success(), "{OTHER_USER} read /etc/shadow:\n{}", read.report());
        }
    }
}

#[test]
fn keep_xattr_names_only_security_attributes_and_goes_with_system() {
    let out =
        Run::root(&["--create", "x", "--system", "--tarball", "/nonexistent", "--keep-xattr", "trusted.x"])
            .output();
    assert_refused(&out, &["--keep-xattr", "trusted.* never are"]);
    let out =
        Run::user(&["--create", "x", "--tarball", "/nonexistent", "--keep-xattr", "security.capability"])
            .output();
    assert_refused(&out, &["--keep-xattr goes with --system"]);
}
