//! Rootfs tarballs: real owners, compressions, refusals of bad archives.

use super::*;

#[test]
fn a_tarball_becomes_a_distro_with_real_owners() {
    require_file(GUEST_TAR);
    let homes = Homes::new("create");
    let name = unique("tar");
    let out = homes.run(&["--create", &name, "--tarball", GUEST_TAR]).output();
    out.assert_code(0);
    // One summary line, naming what was skipped (the guest's /dev nodes).
    let err = out.stderr_str();
    assert_eq!(err.lines().count(), 1, "{}", out.report());
    assert!(err.contains(&format!("created distro {name}")) && err.contains("entries"), "{}", out.report());
    assert!(
        err.contains("device nodes"),
        "the summary does not count the skipped devices:\n{}",
        out.report()
    );

    let config = fs::read_to_string(homes.config(&name)).expect("the config was written");
    assert!(config.contains(r#"ids: "subuid""#), "{config}");
    for volume in ["\"/dev\"", "\"/home\"", "\"/tmp\"", "\"/run\"", "\"/etc/resolv.conf\""] {
        assert!(config.contains(volume), "the config lacks {volume}:\n{config}");
    }
    let listed = homes.run(&["--list"]).output();
    listed.assert_ok();
    assert!(
        listed
            .stdout_str()
            .lines()
            .any(|l| l.starts_with(&format!("{name}\tuser\t")) && l.ends_with("\tids=subuid")),
        "{}",
        listed.report()
    );

    // On the host the tree is owned through the subordinate range.
    let (uid_base, gid_base) = subid_start(USER);
    let shadow = fs::symlink_metadata(homes.tree(&name).join("etc/shadow")).expect("etc/shadow was unpacked");
    assert_eq!((shadow.uid(), shadow.gid()), (uid_base, gid_base + 42), "etc/shadow is root:shadow inside");
    let passwd = fs::symlink_metadata(homes.tree(&name).join("usr/bin/passwd")).expect("usr/bin/passwd");
    assert_eq!(passwd.mode() & 0o7777, 0o4755, "the setuid bit survives the chown");
    let guest_link = fs::read_link(Path::new(GUEST).join("bin")).expect("the guest has /bin");
    assert_eq!(fs::read_link(homes.tree(&name).join("bin")).expect("bin is a symlink"), guest_link);

    // Inside, the owners are the real ones and the caller is still themself.
    let (uid, gid) = user_ids(USER);
    let out = homes
        .run(&[
            &name,
            "sh",
            "-c",
            "stat -c %U:%G /etc/shadow /var/cache/apt/archives/partial /var/lib/apt/lists/partial /usr/bin/passwd; id -u; id -g",
        ])
        .output();
    out.assert_ok();
    assert_eq!(
        out.stdout_str(),
        format!("root:shadow\n_apt:root\n_apt:root\nroot:root\n{uid}\n{gid}\n"),
        "{}",
        out.report()
    );
}

#[test]
fn compression_is_told_by_content_not_by_name() {
    require_file(GUEST_TAR_ZST);
    let homes = Homes::new("zstd");
    // A name that says nothing: zstd, as its first bytes show.
    let renamed = homes.base.join("rootfs-image");
    fs::copy(GUEST_TAR_ZST, &renamed).expect("copy the zstd tarball");
    let name = unique("zst");
    homes.create(&name, path_str(&renamed)).assert_ok();
    let out = homes.run(&[&name, "stat", "-c", "%U", "/etc/shadow"]).output();
    out.assert_ok();
    assert_eq!(out.stdout_str(), "root\n", "{}", out.report());

    // gzip and xz, made by GNU tar from a part of the guest.
    for (flag, tag) in [("-z", "gz"), ("-J", "xz")] {
        let file = homes.base.join(format!("etc-{tag}.tar.bin"));
        sh(&format!("tar --numeric-owner {flag} -C {GUEST} -cf {} ./etc ./usr/bin/passwd", file.display()));
        fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).expect("chmod");
        let name = unique(tag);
        let out = homes.create(&name, path_str(&file));
        out.assert_ok();
        let passwd = fs::symlink_metadata(homes.tree(&name).join("usr/bin/passwd")).expect("usr/bin/passwd");
        assert_eq!(
            passwd.len(),
            fs::metadata(Path::new(GUEST).join("usr/bin/passwd")).expect("guest passwd").len()
        );
        assert_eq!(passwd.uid(), subid_start(USER).0, "{tag}: {}", out.report());
    }
}

#[test]
fn corrupt_and_truncated_archives_are_refused() {
    let homes = Homes::new("corrupt");
    let evil = Evil::new();
    let corrupt = evil.make("corrupt.tar", "head -c 20000 /dev/urandom > corrupt.tar");
    assert_create_refused(&homes, &corrupt, &["corrupt"]);
    let cut = evil.make(
        "cut.tar",
        &format!("tar --numeric-owner -C {GUEST} -cf whole.tar ./etc ./usr/bin/passwd; head -c $(( $(stat -c %s whole.tar) - 30000 )) whole.tar > cut.tar"),
    );
    assert_create_refused(&homes, &cut, &["truncated"]);
    // Cut right after the first member, where the next header would start:
    // the end-of-archive blocks are missing.
    let cut_at_block = evil.make(
        "cut-block.tar",
        &format!(
            "tar --numeric-owner -C {GUEST} -cf small.tar ./etc/hostname ./etc/passwd;\
             s=$(stat -c %s {GUEST}/etc/hostname); head -c $((512 + (s + 511) / 512 * 512)) small.tar > cut-block.tar"
        ),
    );
    assert_create_refused(&homes, &cut_at_block, &["truncated"]);
    let cut_zstd = evil.make(
        "cut.tar.zst",
        &format!("tar --numeric-owner -C {GUEST} -cf - ./etc | zstd -q > whole.zst; head -c 20000 whole.zst > cut.tar.zst"),
    );
    assert_create_refused(&homes, &cut_zstd, &["truncated"]);
    let empty = evil.make("empty.tar", ": > empty.tar");
    assert_create_refused(&homes, &empty, &["empty"]);
}

#[test]
fn members_that_would_leave_the_tree_are_refused() {
    let homes = Homes::new("escape");
    let evil = Evil::new();
    let target = TempDir::new("target").with_mode(0o777);
    // `..` and absolute names: GNU tar keeps them with -P.
    let dotdot = evil.make("dotdot.tar", "mkdir -p a; echo x > escaped; tar -P -cf dotdot.tar a/../escaped");
    assert_create_refused(&homes, &dotdot, &["'..'"]);
    let absolute = evil.make(
        "absolute.tar",
        &format!("tar -P -cf absolute.tar {}", evil.make("abs-file", "echo x > abs-file")),
    );
    assert_create_refused(&homes, &absolute, &["absolute path"]);
    // The classic: a symlink to the outside, then a file through it.
    let through = evil.make(
        "through.tar",
        &format!(
            "mkdir -p one two/link; ln -s {} one/link; echo pwned > two/link/pwned;\
             tar -C one -cf through.tar link; tar -C two -rf through.tar link/pwned",
            target.str()
        ),
    );
    assert_create_refused(&homes, &through, &["symbolic link", "refusing to follow"]);
    assert!(!target.join("pwned").exists(), "a file was written through the symlink");
    // A directory replaced by a symlink, then written through.
    let replaced = evil.make(
        "replaced.tar",
        &format!(
            "mkdir -p r1/d r2 r3/d; ln -s {} r2/d; echo pwned > r3/d/pwned;\
             tar -C r1 -cf replaced.tar d; tar -C r2 -rf replaced.tar d; tar -C r3 -rf replaced.tar d/pwned",
            target.str()
        ),
    );
    assert_create_refused(&homes, &replaced, &["symbolic link"]);
    assert!(!target.join("pwned").exists(), "a file was written through the symlink");
}

#[test]
fn names_and_sources_are_checked_before_anything_is_written() {
    require_file(GUEST_TAR);
    let homes = Homes::new("names");
    for bad in [".hidden", "a/b", "../up", "-x", &"n".repeat(65)] {
        let out = homes.run(&["--create", bad, "--tarball", GUEST_TAR]).output();
        assert_refused(&out, &["invalid distro name"]);
    }
    assert!(!homes.base.join("data/distrorun").exists(), "something was written for a bad name");

    let out = homes.run(&["--create", "nosource"]).output();
    assert_refused(&out, &["needs a source"]);
    let out = homes.run(&["--create", "missing", "--tarball", "/nonexistent/rootfs.tar"]).output();
    assert_refused(&out, &["/nonexistent/rootfs.tar", "No such file"]);

    // An existing name: the distro is left exactly as it was.
    let name = unique("dup");
    homes.create(&name, GUEST_TAR).assert_ok();
    let before = fs::read(homes.config(&name)).expect("config");
    let out = homes.create(&name, GUEST_TAR);
    assert_refused(&out, &["already exists", &name]);
    assert_eq!(fs::read(homes.config(&name)).expect("config"), before);
    assert!(homes.tree(&name).join("etc/shadow").exists());
    // And a name that a system distro has.
    let system = TestDistro::standard("taken");
    assert_refused(&homes.create(&system.name, GUEST_TAR), &["already exists"]);
}

#[test]
fn a_user_without_subordinate_ids_is_told_the_fix() {
    require_file(GUEST_TAR);
    let homes = Homes::for_user(NO_SUBIDS_USER, "nosubid");
    let name = unique("nosub");
    let out = homes.create(&name, GUEST_TAR);
    assert_refused(&out, &["no subordinate id range", "/etc/subuid"]);
    assert!(out.stderr_str().contains("usermod --add-subuids"), "{}", out.report());
    assert!(!homes.base.join("data/distrorun").exists());
}

/// On a terminal a create shows a progress bar, then its summary; `-q`
/// silences both. (Without a terminal the other tests see one summary line
/// and no bar.)
#[test]
fn progress_shows_on_a_terminal_unless_quiet() {
    require_file(GUEST_TAR_ZST);
    let homes = Homes::new("progress");
    for (quiet, name) in [(false, unique("bar")), (true, unique("quiet"))] {
        let mut args = vec!["--create", &name, "--tarball", GUEST_TAR_ZST];
        if quiet {
            args.insert(0, "-q");
        }
        let run = homes.run(&args);
        // script(1) gives it a pseudo-terminal for stdin, stdout and stderr.
        let mut cmd = Command::new("script");
        cmd.args(["-qec", &run.shell_words(), "/dev/null"]).env_clear().envs(run.env_map()).current_dir("/");
        let out = timed(cmd, Duration::from_secs(300));
        out.assert_code(0);
        let shown = out.stdout_str();
        if quiet {
            assert!(shown.is_empty(), "-q printed:\n{}", out.report());
        } else {
            assert!(
                shown.contains("unpacking [") && shown.contains("entries"),
                "no progress bar:\n{}",
                out.report()
            );
            assert!(shown.contains(&format!("created distro {name}")), "no summary:\n{}", out.report());
        }
        assert!(homes.tree(&name).join("etc/shadow").exists());
    }
}

/// File capabilities (an xattr in the archive, as GNU tar --xattrs stores
/// it) come out as the namespace's own: owned by its root, the start of the
/// caller's range.
#[test]
fn file_capabilities_survive_the_unpack() {
    let homes = Homes::new("caps");
    let evil = Evil::new();
    let tarball = evil.make(
        "caps.tar",
        "mkdir -p t/usr/bin; cp /bin/true t/usr/bin/pinger; setcap cap_net_raw+ep t/usr/bin/pinger;\
         tar --numeric-owner --xattrs --xattrs-include='*' -C t -cf caps.tar ./usr",
    );
    let name = unique("caps");
    homes.create(&name, &tarball).assert_ok();
    let (root_uid, _) = subid_start(USER);
    let program = homes.tree(&name).join("usr/bin/pinger");
    let out = timed(
        {
            let mut c = Command::new("getcap");
            c.arg("-n").arg(&program);
            c
        },
        Duration::from_secs(30),
    );
    out.assert_ok();
    assert_eq!(
        out.stdout_str(),
        format!("{} cap_net_raw=ep [rootid={root_uid}]\n", program.display()),
        "{}",
        out.report()
    );
}
