//! `--root` to maintain a distro, `--remove`, and a create killed part-way.

use super::*;

/// A package with one program, built with dpkg-deb.
fn build_deb(dir: &Path, marker: &str) -> PathBuf {
    let root = dir.join("pkg");
    fs::create_dir_all(root.join("DEBIAN")).expect("mkdir");
    fs::create_dir_all(root.join("usr/bin")).expect("mkdir");
    fs::write(
        root.join("DEBIAN/control"),
        "Package: distrorun-hello\nVersion: 1.0\nArchitecture: all\nMaintainer: distrorun tests <root@localhost>\nDescription: a test package\n",
    )
    .expect("write control");
    let program = root.join("usr/bin/distrorun-hello");
    fs::write(&program, format!("#!/bin/sh\necho {marker}\n")).expect("write program");
    fs::set_permissions(&program, fs::Permissions::from_mode(0o755)).expect("chmod");
    let deb = dir.join("distrorun-hello.deb");
    let out = Command::new("dpkg-deb")
        .args(["--root-owner-group", "--build"])
        .arg(&root)
        .arg(&deb)
        .output()
        .expect("dpkg-deb is needed (ci/setup.d/20-per-user.sh installs dpkg-dev)");
    assert!(out.status.success(), "dpkg-deb failed: {}", String::from_utf8_lossy(&out.stderr));
    fs::set_permissions(&deb, fs::Permissions::from_mode(0o644)).expect("chmod");
    deb
}

#[test]
fn root_maintains_the_distro_and_the_caller_runs_what_it_installed() {
    require_file(GUEST_TAR);
    let homes = Homes::new("fakeroot");
    let name = unique("root");
    homes.create(&name, GUEST_TAR).assert_ok();
    let debs = TempDir::new("deb");
    let marker = format!("hello from {name}");
    let deb = build_deb(&debs.path, &marker);

    // uid 0 inside, with the caller's environment byte for byte.
    let run = homes.run(&["--root", &name, "sh", "-c", "id -u; id -g; cat /proc/$$/environ"]);
    let expected_env = run.environ_bytes();
    let out = run.output();
    out.assert_ok();
    let mut want = b"0\n0\n".to_vec();
    want.extend_from_slice(&expected_env);
    assert_eq!(out.stdout, want, "{}", out.report());

    // apt installs a local package (it drops to _apt to read it).
    let out = homes.run(&["--root", &name, "apt-get", "install", "-y", path_str(&deb)]).output();
    out.assert_code(0);
    let out =
        homes.run(&["--root", &name, "dpkg-query", "-W", "-f", "${Status}", "distrorun-hello"]).output();
    out.assert_ok();
    assert_eq!(out.stdout_str(), "install ok installed", "{}", out.report());
    let program = fs::symlink_metadata(homes.tree(&name).join("usr/bin/distrorun-hello")).expect("installed");
    assert_eq!(program.uid(), subid_start(USER).0, "dpkg made it root's inside");

    // The caller runs it as themself.
    let (uid, _) = user_ids(USER);
    let out = homes.run(&[&name, "sh", "-c", "distrorun-hello; id -u"]).output();
    out.assert_ok();
    assert_eq!(out.stdout_str(), format!("{marker}\n{uid}\n"), "{}", out.report());

    // passwd works as root inside: it rewrites /etc/shadow.
    let out = homes.run(&["--root", &name, "passwd", "-l", "root"]).output();
    out.assert_ok();
    let shadow = fs::read_to_string(homes.tree(&name).join("etc/shadow")).expect("read shadow as root");
    assert!(shadow.lines().any(|l| l.starts_with("root:!")), "root is not locked:\n{shadow}");
}

#[test]
fn root_is_refused_where_it_cannot_map_root() {
    let system = TestDistro::standard("sysroot");
    let out = Run::user(&["--root", &system.name, "true"]).output();
    assert_refused(&out, &["--root needs real root", &system.name]);
    assert!(out.stderr_str().contains("sudo distrorun"), "{}", out.report());

    let own = UserDistro::standard("ownroot");
    let out = Run::user(&["--root", &own.name, "true"]).output();
    assert_refused(&out, &["--root", "subuid"]);
}

#[test]
fn remove_deletes_the_tree_but_never_crosses_a_mount_or_follows_a_symlink() {
    require_file(GUEST_TAR);
    let homes = Homes::new("remove");
    let name = unique("rm");
    homes.create(&name, GUEST_TAR).assert_ok();
    let tree = homes.tree(&name);

    // Host data the removal must not reach: a directory bind-mounted into
    // the tree, and one a symlink in the tree points at.
    let mounted = TempDir::new("bound");
    fs::write(mounted.join("keep"), b"mounted data").expect("write");
    let outside = TempDir::new("outside");
    fs::write(outside.join("keep"), b"outside data").expect("write");
    // Made as the user would make them, in the sticky /tmp of the tree.
    let (uid, gid) = user_ids(USER);
    for (target, link) in [(outside.path.clone(), "tmp/out"), (outside.join("keep"), "tmp/out-file")] {
        std::os::unix::fs::symlink(&target, tree.join(link)).expect("symlink");
        std::os::unix::fs::lchown(tree.join(link), Some(uid), Some(gid)).expect("lchown");
    }
    let mount_point = tree.join("mnt/bound");
    fs::create_dir_all(&mount_point).expect("mkdir");
    sh(&format!("mount --bind {} {}", mounted.str(), mount_point.display()));
    let out = homes.run(&["--remove", &name, "--yes"]).output();
    let unmount_at = match fs::symlink_metadata(homes.partial(&name).join("mnt/bound")) {
        Ok(_) => homes.partial(&name).join("mnt/bound"),
        Err(_) => mount_point.clone(),
    };
    let unmounted = Command::new("umount").arg(&unmount_at).status();
    assert_refused(&out, &["mount point", "never crosses"]);
    assert!(unmounted.is_ok_and(|s| s.success()), "umount {} failed", unmount_at.display());

    assert_eq!(fs::read(mounted.join("keep")).expect("the mounted data survives"), b"mounted data");
    assert_eq!(fs::read(outside.join("keep")).expect("the symlinked data survives"), b"outside data");
    // The tree's own subuid-owned files are gone, and so is the config.
    for gone in
        [tree.join("etc/shadow"), homes.partial(&name).join("etc/shadow"), homes.partial(&name).join("usr")]
    {
        assert!(fs::symlink_metadata(&gone).is_err(), "{} survived", gone.display());
    }
    assert!(fs::symlink_metadata(homes.config(&name)).is_err(), "the config survived");
}

#[test]
fn remove_cleans_up_completely_and_refuses_what_is_not_its_own() {
    require_file(GUEST_TAR);
    let homes = Homes::new("remove2");
    let name = unique("rm");
    homes.create(&name, GUEST_TAR).assert_ok();

    // Not on a terminal and without --yes: nothing happens.
    let out = homes.run(&["--remove", &name]).output();
    assert_refused(&out, &["without confirmation"]);
    assert!(homes.tree(&name).join("etc/shadow").exists());

    let out = homes.run(&["--remove", &name, "--yes"]).output();
    out.assert_ok();
    homes.assert_absent(&name);
    let left: Vec<_> = fs::read_dir(homes.base.join("data/distrorun")).expect("read the data dir").collect();
    assert!(left.is_empty(), "left behind: {left:?}");

    // A tree already deleted by hand: the config goes all the same.
    let gone = unique("gone");
    homes.create(&gone, GUEST_TAR_ZST).assert_ok();
    fs::remove_dir_all(homes.tree(&gone)).expect("delete the tree as root");
    homes.run(&["--remove", &gone, "--yes"]).output().assert_ok();
    homes.assert_absent(&gone);

    let system = TestDistro::standard("sysrm");
    assert_refused(&homes.run(&["--remove", &system.name, "--yes"]).output(), &["system distro"]);
    assert!(Path::new(GUEST).join("etc/shadow").exists());
    let own = UserDistro::standard("ownrm");
    assert_refused(
        &Run::user(&["--remove", &own.name, "--yes"]).output(),
        &["not made by distrorun --create"],
    );
    assert!(own.conf.exists());
}

#[test]
fn a_killed_create_leaves_nothing_usable_and_the_next_one_succeeds() {
    require_file(GUEST_TAR);
    let homes = Homes::new("killed");
    let name = unique("kill");
    let mut child = homes.run(&["--create", &name, "--tarball", GUEST_TAR]).command().spawn().expect("spawn");
    // Killed part-way: once the unpacker is writing inside the tree.
    let marker = homes.partial(&name).join("etc");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !marker.exists() {
        assert!(Instant::now() < deadline, "the create never started writing");
        assert!(child.try_wait().expect("wait").is_none(), "the create ended before it could be killed");
        std::thread::sleep(Duration::from_millis(1));
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("wait");
    homes.assert_absent(&name);
    let out = homes.run(&[&name, "true"]).output();
    assert_refused(&out, &["no config for distro"]);

    homes.create(&name, GUEST_TAR).assert_ok();
    assert!(fs::symlink_metadata(homes.partial(&name)).is_err(), "the leftover is still there");
    let out = homes.run(&[&name, "stat", "-c", "%U", "/etc/shadow"]).output();
    out.assert_ok();
    assert_eq!(out.stdout_str(), "root\n");
}

/// On a terminal, --remove asks; anything but yes keeps the distro.
#[test]
fn remove_asks_on_a_terminal() {
    require_file(GUEST_TAR_ZST);
    let homes = Homes::new("ask");
    let name = unique("ask");
    homes.create(&name, GUEST_TAR_ZST).assert_ok();
    for (answer, kept) in [("n\n", true), ("yes\n", false)] {
        let run = homes.run(&["--remove", &name]);
        let mut cmd = Command::new("script");
        cmd.args(["-qec", &run.shell_words(), "/dev/null"])
            .env_clear()
            .envs(run.env_map())
            .current_dir("/")
            .stdin(std::process::Stdio::piped());
        let child = {
            cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
            cmd.spawn().expect("script")
        };
        let out =
            finish(child, Some(answer.as_bytes().to_vec()), Duration::from_secs(120), "remove on a terminal");
        // The terminal echoes the answer wherever it was typed, which may
        // be in the middle of the question.
        let shown = out.stdout_str().replace(&answer.replace('\n', "\r\n"), "");
        assert!(shown.contains(&format!("remove distro {name}")), "no question:\n{}", out.report());
        assert_eq!(homes.config(&name).exists(), kept, "answer {answer:?}:\n{}", out.report());
        assert_eq!(homes.tree(&name).exists(), kept, "answer {answer:?}:\n{}", out.report());
        out.assert_code(if kept { 125 } else { 0 });
    }
}

/// With the keep-id mapping the command still replaces distrorun: its
/// parent is the shell that started distrorun, whose pid it sees.
#[test]
fn the_command_is_execd_in_place_under_the_subuid_mapping() {
    require_file(GUEST_TAR_ZST);
    let homes = Homes::new("inplace");
    let name = unique("inplace");
    homes.create(&name, GUEST_TAR_ZST).assert_ok();
    let script = format!("{BIN} {name} sh -c 'echo $PPID'; echo $$");
    let out = homes.run(&["-c", &script]).bin("/bin/sh").output();
    out.assert_ok();
    let lines: Vec<&str> =
        out.stdout.split(|b| *b == b'\n').filter_map(|l| std::str::from_utf8(l).ok()).collect();
    assert!(lines.len() >= 2 && !lines[0].is_empty(), "{}", out.report());
    assert_eq!(lines[0], lines[1], "the command's parent is not the shell:\n{}", out.report());
}
