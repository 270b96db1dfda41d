//! Per-user distros: `--create` from a rootfs tarball, run with real owners
//! over the test user's subordinate ids, `--root` to maintain them,
//! `--remove`, and the refusals of bad input. Everything runs as the
//! unprivileged test user, whose ranges `ci/setup.d/20-per-user.sh` sets.

use distrorun_testkit::*;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Made by ci/setup.d/20-per-user.sh from the guest tree.
const GUEST_TAR: &str = "/var/lib/distrorun-test/per-user/guest.tar";
const GUEST_TAR_ZST: &str = "/var/lib/distrorun-test/per-user/guest.tar.zst";

/// The user with no subordinate ids (only the second NSS module knows it).
const NO_SUBIDS_USER: &str = "distrorun-extra";

/// A test's own `XDG_DATA_HOME` and `XDG_CONFIG_HOME`, so that tests running
/// side by side never see each other's distros.
struct Homes {
    base: TempDir,
    user: &'static str,
}

impl Homes {
    fn new(tag: &str) -> Homes {
        Self::for_user(USER, tag)
    }

    fn for_user(user: &'static str, tag: &str) -> Homes {
        let base = TempDir::owned_by(user, tag);
        let (uid, gid) = user_ids(user);
        for sub in ["data", "config"] {
            let p = base.join(sub);
            fs::create_dir(&p).unwrap_or_else(|e| panic!("mkdir {}: {e}", p.display()));
            std::os::unix::fs::chown(&p, Some(uid), Some(gid)).expect("chown");
        }
        Homes { base, user }
    }

    fn run(&self, args: &[&str]) -> Run {
        Run::as_user(self.user, args)
            .env("XDG_DATA_HOME", self.base.join("data"))
            .env("XDG_CONFIG_HOME", self.base.join("config"))
            .timeout(Duration::from_secs(300))
    }

    fn tree(&self, name: &str) -> PathBuf {
        self.base.join("data/distrorun").join(name)
    }

    fn partial(&self, name: &str) -> PathBuf {
        self.base.join(format!("data/distrorun/.{name}.partial"))
    }

    fn config(&self, name: &str) -> PathBuf {
        self.base.join(format!("config/distrorun.d/{name}.conf"))
    }

    /// Quietly: the summary line is checked where it is the subject.
    fn create(&self, name: &str, tarball: &str) -> Output {
        self.run(&["-q", "--create", name, "--tarball", tarball]).output()
    }

    /// Nothing under the name, in the data or the config directory.
    #[track_caller]
    fn assert_absent(&self, name: &str) {
        assert!(fs::symlink_metadata(self.tree(name)).is_err(), "{} exists", self.tree(name).display());
        assert!(fs::symlink_metadata(self.config(name)).is_err(), "{} exists", self.config(name).display());
        let listed = self.run(&["--list"]).output();
        listed.assert_ok();
        assert!(
            !listed.stdout_str().lines().any(|l| l.split('\t').next() == Some(name)),
            "--list shows {name}:\n{}",
            listed.report()
        );
    }
}

/// The first subordinate uid and gid of `user`.
fn subid_start(user: &str) -> (u32, u32) {
    let first = |file: &str| -> u32 {
        let text = fs::read_to_string(file).unwrap_or_else(|e| panic!("cannot read {file}: {e}"));
        text.lines()
            .find_map(|l| {
                let mut f = l.split(':');
                (f.next() == Some(user)).then(|| f.next().and_then(|s| s.parse().ok())).flatten()
            })
            .unwrap_or_else(|| panic!("{user} has no range in {file}; run ci/test-setup"))
    };
    (first("/etc/subuid"), first("/etc/subgid"))
}

fn sh(script: &str) {
    let out = Command::new("sh").arg("-ec").arg(script).output().expect("cannot run sh");
    assert!(out.status.success(), "{script} failed: {}", String::from_utf8_lossy(&out.stderr));
}

fn require_file(path: &str) {
    assert!(
        Path::new(path).is_file(),
        "{path} is missing: run ci/test-setup (ci/setup.d/20-per-user.sh makes it)"
    );
}

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

/// Builds archives with GNU tar in a root-owned scratch directory.
struct Evil {
    dir: TempDir,
}

impl Evil {
    fn new() -> Evil {
        Evil { dir: TempDir::new("evil") }
    }

    fn path(&self, name: &str) -> String {
        path_str(&self.dir.join(name)).to_owned()
    }

    fn make(&self, name: &str, script: &str) -> String {
        sh(&format!("cd {}; {script}", self.dir.str()));
        let p = self.path(name);
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).expect("chmod");
        p
    }
}

#[track_caller]
fn assert_create_refused(homes: &Homes, tarball: &str, needles: &[&str]) {
    let name = unique("bad");
    let out = homes.create(&name, tarball);
    assert_refused(&out, needles);
    homes.assert_absent(&name);
    assert!(fs::symlink_metadata(homes.partial(&name)).is_err(), "the temporary tree was left behind");
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

/// An OCI image made by umoci from the guest tarball plus two layers: the
/// second adds files, the third deletes one of them and one of the guest's
/// through whiteouts, and replaces a directory opaquely. skopeo turns it
/// into an `oci-archive` and a `docker save` tarball. Kept between runs
/// next to the tarball it is made from, and remade when that changes.
struct Image {
    dir: PathBuf,
}

impl Image {
    fn get() -> &'static Image {
        static IMAGE: std::sync::OnceLock<Image> = std::sync::OnceLock::new();
        IMAGE.get_or_init(Image::build)
    }

    fn build() -> Image {
        require_file(GUEST_TAR);
        let dir = PathBuf::from("/var/lib/distrorun-test/per-user/image");
        let done = dir.join("complete");
        let fresh = fs::metadata(&done)
            .and_then(|d| Ok(d.modified()? >= fs::metadata(GUEST_TAR)?.modified()?))
            .unwrap_or(false);
        if !fresh {
            sh(&format!(
                r"rm -rf {d}; mkdir -p {d}; cd {d}
                umoci init --layout layout; umoci new --image layout:t
                umoci raw add-layer --image layout:t {GUEST_TAR}
                mkdir -p two/etc/opq/sub three/etc/opq
                echo old > two/etc/opq/old; echo old > two/etc/opq/sub/old; echo gone > two/etc/gone
                tar --numeric-owner --no-recursion -C two -cf two.tar ./etc/opq ./etc/opq/old ./etc/opq/sub ./etc/opq/sub/old ./etc/gone
                umoci raw add-layer --image layout:t two.tar
                touch three/etc/.wh.gone three/etc/.wh.issue.net three/etc/opq/.wh..wh..opq
                echo new > three/etc/opq/new
                tar --numeric-owner --no-recursion -C three -cf three.tar ./etc/.wh.gone ./etc/.wh.issue.net ./etc/opq ./etc/opq/.wh..wh..opq ./etc/opq/new
                umoci raw add-layer --image layout:t three.tar
                umoci tag --image layout:t other
                skopeo copy -q oci:layout:t oci-archive:archive.tar:t
                skopeo copy -q oci:layout:t docker-archive:docker.tar:distrorun/test:t
                chmod -R a+rX .
                touch complete",
                d = dir.display()
            ));
        }
        Image { dir }
    }

    fn path(&self, p: &str) -> String {
        path_str(&self.dir.join(p)).to_owned()
    }
}

/// What the three layers leave in /etc, seen from inside.
#[track_caller]
fn assert_layers_applied(homes: &Homes, name: &str) {
    let out = homes
        .run(&[
            name,
            "sh",
            "-c",
            "ls -A /etc/opq; ls /etc/gone /etc/issue.net 2>&1; stat -c %U /etc/shadow; true",
        ])
        .output();
    out.assert_ok();
    assert_eq!(
        out.stdout_str(),
        "new\nls: cannot access '/etc/gone': No such file or directory\n\
         ls: cannot access '/etc/issue.net': No such file or directory\nroot\n",
        "{}",
        out.report()
    );
    assert!(Path::new(GUEST).join("etc/issue.net").exists(), "the guest itself has /etc/issue.net");
}

#[test]
fn an_oci_layout_is_applied_layer_by_layer_with_whiteouts() {
    let image = Image::get();
    let homes = Homes::new("oci");
    let name = unique("oci");
    // Two tags: which one must be said.
    let out = homes.run(&["-q", "--create", &name, "--oci", &image.path("layout")]).output();
    assert_refused(&out, &["several images", "--tag"]);
    homes.assert_absent(&name);
    let out =
        homes.run(&["-q", "--create", &name, "--oci", &image.path("layout"), "--tag", "nosuch"]).output();
    assert_refused(&out, &["no image tagged \"nosuch\""]);
    homes.run(&["-q", "--create", &name, "--oci", &image.path("layout"), "--tag", "t"]).output().assert_ok();
    assert_layers_applied(&homes, &name);
}

#[test]
fn oci_archives_and_docker_save_tarballs_are_images_too() {
    let image = Image::get();
    let homes = Homes::new("ociarch");
    let archive = unique("ociarchive");
    homes.run(&["-q", "--create", &archive, "--oci", &image.path("archive.tar")]).output().assert_ok();
    assert_layers_applied(&homes, &archive);
    let docker = unique("docker");
    homes
        .run(&["-q", "--create", &docker, "--oci", &image.path("docker.tar"), "--tag", "distrorun/test:t"])
        .output()
        .assert_ok();
    assert_layers_applied(&homes, &docker);
}

#[test]
fn a_layer_that_does_not_match_its_digest_is_refused() {
    let image = Image::get();
    let homes = Homes::new("digest");
    let bad = TempDir::new("badimage");
    // The same layout, hard-linked, with the last layer's blob swapped for
    // another valid gzip'd layer under the same name.
    sh(&format!(
        r#"cd {b}; cp -al {layout} layout
        for blob in layout/blobs/sha256/*; do
            if gzip -dc "$blob" 2>/dev/null | cmp -s - {three}; then
                rm "$blob"; tar -C {GUEST} -cf - ./etc/hostname | gzip > "$blob"; found=1
            fi
        done
        [ -n "$found" ]; chmod -R a+rX layout"#,
        b = bad.str(),
        layout = image.path("layout"),
        three = image.path("three.tar"),
    ));
    let name = unique("digest");
    let out = homes
        .run(&["-q", "--create", &name, "--oci", &format!("{}/layout", bad.str()), "--tag", "t"])
        .output();
    assert_refused(&out, &["does not match its digest"]);
    homes.assert_absent(&name);
    assert!(fs::symlink_metadata(homes.partial(&name)).is_err(), "the temporary tree was left behind");
}

/// Where the `--debian` test keeps what it downloads, across runs, as the
/// guest tree is kept.
const MIRROR_CACHE: &str = "/var/cache/distrorun-test/mirror";

/// The host's Debian mirror, from its apt sources: the first URI that ends
/// in `/debian`.
fn host_debian_mirror() -> String {
    let mut files = vec![PathBuf::from("/etc/apt/sources.list")];
    let mut listed: Vec<PathBuf> =
        fs::read_dir("/etc/apt/sources.list.d").into_iter().flatten().flatten().map(|e| e.path()).collect();
    listed.sort();
    files.extend(listed);
    files
        .iter()
        .filter_map(|f| fs::read_to_string(f).ok())
        .flat_map(|text| text.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
        .find(|word| word.starts_with("http") && word.trim_end_matches('/').ends_with("/debian"))
        .unwrap_or_else(|| panic!("no Debian mirror in the host's apt sources; the --debian test needs one"))
}

/// `tests/support/mirror_cache.py` in front of the host's mirror, stopped
/// when dropped.
struct MirrorCache {
    child: std::process::Child,
    url: String,
}

impl MirrorCache {
    fn start() -> MirrorCache {
        use std::io::BufRead;
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/mirror_cache.py");
        let mut child = Command::new("/usr/bin/python3")
            .arg(&script)
            .arg(host_debian_mirror())
            .arg(MIRROR_CACHE)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", script.display()));
        let mut line = String::new();
        let stdout = child.stdout.take().expect("piped stdout");
        std::io::BufReader::new(stdout).read_line(&mut line).expect("read the cache's port");
        let Some(port) = line.strip_prefix("port ").map(str::trim) else {
            panic!("mirror_cache said {line:?}");
        };
        let url = format!("http://127.0.0.1:{port}");
        MirrorCache { child, url }
    }
}

impl Drop for MirrorCache {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

/// mmdebstrap builds the guest's suite from the host's mirror, through a
/// cache that keeps the packages between runs (the network to Debian's
/// archive is needed once per machine, as for the guest tree itself, and
/// for the signed Release files every time).
#[test]
fn a_debian_suite_is_built_by_mmdebstrap_and_unpacked_with_real_owners() {
    let homes = Homes::new("debian");
    let name = unique("deb");
    let suite = guest_suite();
    let cache = MirrorCache::start();
    let out = homes
        .run(&["-q", "--create", &name, "--debian", &suite, "--include", "hello", "--mirror", &cache.url])
        .output();
    drop(cache);
    out.assert_ok();
    let cached = Path::new(MIRROR_CACHE).join("pool");
    assert!(cached.is_dir(), "nothing was kept in {}", cached.display());
    let (uid, _) = user_ids(USER);
    let out = homes
        .run(&[&name, "sh", "-c", "hello; stat -c %U:%G /etc/shadow /var/cache/apt/archives/partial; id -u"])
        .output();
    out.assert_ok();
    assert_eq!(
        out.stdout_str(),
        format!("Hello, world!\nroot:shadow\n_apt:root\n{uid}\n"),
        "{}",
        out.report()
    );
    let config = fs::read_to_string(homes.config(&name)).expect("the config was written");
    assert!(config.contains(&format!("from the {suite} suite built by mmdebstrap")), "{config}");
}

#[test]
fn a_suite_mmdebstrap_cannot_build_is_its_error() {
    let homes = Homes::new("nosuite");
    let name = unique("nosuite");
    let out = homes.run(&["-q", "--create", &name, "--debian", "no-such-suite-here"]).output();
    assert_refused(&out, &["mmdebstrap failed", "no-such-suite-here"]);
    assert!(out.stderr_str().contains("mmdebstrap said:"), "{}", out.report());
    homes.assert_absent(&name);
    assert!(fs::symlink_metadata(homes.partial(&name)).is_err(), "the temporary tree was left behind");
    for (args, needle) in [
        (["--debian", "-x", "--include", "hello"], "invalid suite"),
        (["--debian", "trixie", "--include", "a b"], "invalid --include"),
        (["--debian", "trixie", "--mirror", "--oops"], "invalid mirror"),
    ] {
        let mut all = vec!["-q", "--create", &name];
        all.extend(args);
        assert_refused(&homes.run(&all).output(), &[needle]);
    }
    homes.assert_absent(&name);
}

/// `--system`: root makes a root-owned tree and a system config that the
/// setuid helper trusts, in one command.
#[test]
fn root_creates_a_system_distro_that_the_helper_trusts() {
    require_file(GUEST_TAR);
    let name = unique("system");
    let tree = Path::new(ROOTS_DIR).join(&name);
    let conf = Path::new(CONF_DIR).join(format!("{name}.conf"));
    let _cleanup = Remove(vec![tree.clone(), conf.clone()]);
    let out = Run::user(&["-q", "--create", &name, "--system", "--tarball", GUEST_TAR]).output();
    assert_refused(&out, &["needs root"]);
    assert!(!conf.exists());

    Run::root(&["-q", "--create", &name, "--system", "--state-dir", ROOTS_DIR, "--tarball", GUEST_TAR])
        .output()
        .assert_ok();
    let meta = fs::metadata(&conf).expect("the system config");
    assert_eq!((meta.uid(), meta.mode() & 0o022), (0, 0), "root's, writable by nobody else");
    assert!(
        !fs::read_to_string(&conf).expect("config").contains("ids:"),
        "a system distro maps no subordinate ids"
    );
    let shadow = fs::symlink_metadata(tree.join("etc/shadow")).expect("etc/shadow");
    assert_eq!((shadow.uid(), shadow.gid()), (0, 42), "real owners: root:shadow");
    for backend in [Backend::Helper, Backend::Userns] {
        let out = Run::user(&[&name, "stat", "-c", "%U", "/var/cache/apt/archives/partial"])
            .backend(backend)
            .output();
        out.assert_ok();
        let expected = if backend == Backend::Helper { "_apt\n" } else { "nobody\n" };
        assert_eq!(out.stdout_str(), expected, "{}", out.report());
    }
    assert_refused(&Run::user(&["--root", &name, "true"]).output(), &["needs real root"]);
    assert_refused(&Run::user(&["--remove", &name, "--yes"]).output(), &["system distro"]);
    assert!(tree.join("etc/shadow").exists());
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
        assert!(
            out.stdout_str().contains(&format!("remove distro {name}")),
            "no question:\n{}",
            out.report()
        );
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
