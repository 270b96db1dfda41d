//! `user_db`: the caller has a name inside. Each test runs once per backend
//! as an unprivileged user against the real guest tree, and checks what
//! programs inside see (`id`, `whoami`, `getent`, `stat`) and that the tree
//! itself is never changed.

use distrorun_testkit::*;
use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;
use std::process::Command;

/// A user whose GECOS field holds characters that are legal in the file
/// but odd: made by ci/setup.d/30-desktop.sh.
const GECOS_USER: &str = "distrorun-gecos";

fn run_in(b: Backend, d: &TestDistro, cmd: &[&str]) -> Run {
    let mut args = vec![d.name.as_str()];
    args.extend_from_slice(cmd);
    Run::user(&args).backend(b)
}

/// What the host's NSS says, as `getent` prints it.
fn host_getent(db: &str, key: &str) -> String {
    let out = Command::new("getent").args([db, key]).output().expect("cannot run getent");
    assert!(out.status.success(), "getent {db} {key} failed on the host");
    String::from_utf8_lossy(&out.stdout).trim_end().to_owned()
}

/// The guest's own line for `name` in `file` (passwd or group).
fn guest_line(file: &str, name: &str) -> String {
    let text = fs::read_to_string(Path::new(GUEST).join("etc").join(file)).expect("the guest has the file");
    text.lines()
        .find(|l| l.split(':').next() == Some(name))
        .unwrap_or_else(|| panic!("the guest's /etc/{file} has no {name}"))
        .to_owned()
}

/// A guest copy whose `/etc/passwd` is replaced by a new file (the copy's
/// files are hard links to the guest's, so they are never written in place).
fn replace_file(copy: &GuestCopy, inside: &str, contents: &[u8], mode: u32) {
    let p = copy.inside(inside);
    fs::remove_file(&p).unwrap_or_else(|e| panic!("rm {}: {e}", p.display()));
    fs::write(&p, contents).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
    fs::set_permissions(&p, fs::Permissions::from_mode(mode)).expect("chmod");
}

per_backend! {
    /// The default, `"caller"`: the caller's name, primary group and
    /// supplementary groups resolve inside, exactly as on the host.
    fn caller_mode_gives_the_caller_a_name(b) {
        let d = TestDistro::standard("udb-caller");
        let (uid, _) = user_ids(USER);
        let out = run_in(b, &d, &["sh", "-c", "id -un; whoami; id -gn; getent passwd $(id -u); getent group distrorun-tg"]).output();
        out.assert_ok();
        let text = out.stdout_str();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], USER, "{}", out.report());
        assert_eq!(lines[1], USER, "{}", out.report());
        assert_eq!(lines[2], USER, "{}", out.report());
        assert_eq!(lines[3], host_getent("passwd", &uid.to_string()), "{}", out.report());
        let tg = group_id(GROUP);
        assert_eq!(lines[4], format!("{GROUP}:x:{tg}:{USER}"), "{}", out.report());
        assert_eq!(lines.len(), 5, "{}", out.report());
    }

    /// The ramfs that holds the merged files is seen inside only through
    /// the two files bound from it, each read-only and without devices,
    /// set-id or exec: its root is mounted nowhere in the new root, and the
    /// distro's /etc is the distro's.
    fn the_identity_ramfs_shows_only_as_its_two_files(b) {
        let d = TestDistro::standard("udb-staged");
        let script = "dev=$(awk '$5 == \"/etc/passwd\" { print $3 }' /proc/self/mountinfo); \
                      awk -v dev=\"$dev\" '$3 == dev { split($0, s, \" - \"); split(s[2], fs, \" \"); \
                          o = $6; sub(/,relatime$/, \"\", o); print $4, $5, o, fs[1] }' /proc/self/mountinfo; \
                      test -s /etc/debian_version && echo etc-is-the-distros";
        let out = run_in(b, &d, &["sh", "-c", script]).output();
        out.assert_ok();
        assert_eq!(
            out.stdout_str(),
            "/passwd /etc/passwd ro,nosuid,nodev,noexec ramfs\n\
             /group /etc/group ro,nosuid,nodev,noexec ramfs\n\
             etc-is-the-distros\n",
            "{}",
            out.report()
        );
    }

    /// The distro's own entries are kept as they are, and never doubled.
    fn caller_mode_keeps_the_distros_entries(b) {
        let d = TestDistro::standard("udb-keep");
        let out = run_in(b, &d, &["sh", "-c", "getent passwd root; getent group root; grep -c '^root:' /etc/passwd"]).output();
        out.assert_ok();
        assert_eq!(
            out.stdout_str(),
            format!("{}\n{}\n1\n", guest_line("passwd", "root"), guest_line("group", "root")),
            "{}",
            out.report()
        );
    }

    /// `"distro"`: the tree's files, untouched, so the caller has no name.
    fn distro_mode_leaves_the_caller_without_a_name(b) {
        let d = TestDistro::with_dir("udb-distro", Path::new(GUEST), "user_db: \"distro\",");
        let out = run_in(b, &d, &["id", "-un"]).output();
        let (uid, _) = user_ids(USER);
        out.assert_code(1);
        assert!(out.stderr_str().contains(&format!("cannot find name for user ID {uid}")), "{}", out.report());
        let tree = fs::read(Path::new(GUEST).join("etc/passwd")).expect("the guest's passwd");
        let inside = run_in(b, &d, &["cat", "/etc/passwd"]).output();
        inside.assert_ok();
        assert_eq!(inside.stdout, tree, "{}", inside.report());
    }

    /// `"host"`: the distro's system entries, the host's regular users.
    fn host_mode_adds_the_hosts_regular_users(b) {
        let d = TestDistro::with_dir("udb-host", Path::new(GUEST), "user_db: \"host\",");
        let (other_uid, _) = user_ids(OTHER_USER);
        let out = run_in(b, &d, &["sh", "-c", "id -un; getent passwd distrorun-other; getent passwd root; getent passwd nobody"]).output();
        out.assert_ok();
        let text = out.stdout_str();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], USER, "{}", out.report());
        assert_eq!(lines[1], host_getent("passwd", &other_uid.to_string()), "{}", out.report());
        assert_eq!(lines[2], guest_line("passwd", "root"), "the distro's root stays: {}", out.report());
        assert_eq!(lines[3], guest_line("passwd", "nobody"), "the distro's nobody stays: {}", out.report());
    }

    /// The merged files are read-only, and the tree's own are never changed.
    fn the_tree_is_never_written(b) {
        let d = TestDistro::standard("udb-ro");
        let before = (fs::read(Path::new(GUEST).join("etc/passwd")).unwrap(), fs::read(Path::new(GUEST).join("etc/group")).unwrap());
        let out = run_in(b, &d, &["sh", "-c", "echo x:x:1:1::/:/bin/sh >> /etc/passwd"]).output();
        assert_ne!(out.code, Some(0), "{}", out.report());
        assert!(out.stderr_str().contains("Read-only file system"), "{}", out.report());
        let after = (fs::read(Path::new(GUEST).join("etc/passwd")).unwrap(), fs::read(Path::new(GUEST).join("etc/group")).unwrap());
        assert!(before == after, "the guest's identity files changed");
        assert!(host_mounts_under(Path::new(GUEST)).is_empty(), "mounts left on the host under {GUEST}");
    }

    /// `-v` names the added lines and where the files come from;
    /// `--dry-run` shows the same lines and runs nothing.
    fn verbose_and_dry_run_show_the_added_entries(b) {
        let d = TestDistro::standard("udb-verbose");
        let line = host_getent("passwd", USER);
        let want = format!("distrorun: user_db caller: /etc/passwd + {line}");
        let out = Run::user(&["-v", &d.name, "true"]).backend(b).output();
        out.assert_code(0).assert_stderr_has(&want).assert_stderr_has("from a private ramfs");
        let out = Run::user(&["--dry-run", &d.name, "touch", "/tmp/never"]).backend(b).output();
        out.assert_code(0).assert_stderr_has(&want);
        let tg = group_id(GROUP);
        out.assert_stderr_has(&format!("/etc/group + {GROUP}:x:{tg}:{USER}"));
        assert!(!out.stderr_str().contains("private ramfs"), "a dry run mounts nothing:\n{}", out.report());
    }

    /// A distro with no /etc/passwd runs as it is, and `-v` says why.
    fn a_distro_without_passwd_runs_unchanged(b) {
        let copy = GuestCopy::new("udb-nopasswd");
        fs::remove_file(copy.inside("/etc/passwd")).expect("rm the copy's passwd");
        let d = TestDistro::with_dir("udb-nopasswd", &copy.path, "");
        let out = Run::user(&["-v", &d.name, "sh", "-c", "test ! -e /etc/passwd && echo absent"]).backend(b).output();
        out.assert_code(0).assert_stderr_has(&format!("user_db caller: distro {} has no /etc/passwd; its files are used unchanged", d.name));
        assert_eq!(out.stdout_str(), "absent\n", "{}", out.report());
    }

    /// When the distro already knows the caller's uid and gid, it is left
    /// alone: its own name for the caller wins and nothing is mounted.
    fn a_distro_that_knows_the_caller_is_left_alone(b) {
        let copy = GuestCopy::new("udb-known");
        let (uid, gid) = user_ids(USER);
        let mut passwd = fs::read(copy.inside("/etc/passwd")).unwrap();
        passwd.extend_from_slice(format!("inside-name:x:{uid}:{gid}::/nonexistent:/bin/sh\n").as_bytes());
        let mut group = fs::read(copy.inside("/etc/group")).unwrap();
        group.extend_from_slice(format!("inside-group:x:{gid}:\n").as_bytes());
        replace_file(&copy, "/etc/passwd", &passwd, 0o644);
        replace_file(&copy, "/etc/group", &group, 0o644);
        let d = TestDistro::with_dir("udb-known", &copy.path, "");
        let out = Run::user(&["-v", &d.name, "sh", "-c", "id -un; id -gn"]).backend(b).output();
        out.assert_code(0).assert_stderr_has(&format!("the distro knows uid {uid} and gid {gid}"));
        assert!(!out.stderr_str().contains("private ramfs"), "{}", out.report());
        assert_eq!(out.stdout_str(), "inside-name\ninside-group\n", "{}", out.report());
    }

    /// The bound file's path must not be a symlink planted in the tree.
    fn a_symlinked_passwd_is_refused(b) {
        let copy = GuestCopy::new("udb-symlink");
        fs::rename(copy.inside("/etc/passwd"), copy.inside("/etc/passwd.real")).unwrap();
        symlink("passwd.real", copy.inside("/etc/passwd")).unwrap();
        let d = TestDistro::with_dir("udb-symlink", &copy.path, "");
        let out = run_in(b, &d, &["true"]).output();
        assert_refused(&out, &["cannot provide the caller's identity", "is or passes through a symlink"]);
        out.assert_stderr_has("user_db: \"distro\"");
    }

    /// A file that others could change never becomes anyone's identity.
    fn a_group_writable_passwd_is_refused(b) {
        let copy = GuestCopy::new("udb-writable");
        let passwd = fs::read(copy.inside("/etc/passwd")).unwrap();
        replace_file(&copy, "/etc/passwd", &passwd, 0o664);
        let d = TestDistro::with_dir("udb-writable", &copy.path, "");
        let out = run_in(b, &d, &["true"]).output();
        assert_refused(&out, &["refusing to use", "/etc/passwd", "writable by group or others"]);
    }

    /// A volume on /etc/passwd is the admin's choice and wins.
    fn a_volume_on_the_file_wins(b) {
        let d = TestDistro::with_volumes("udb-volume", Path::new(GUEST), r#"["/dev", "/home", "/tmp", "/run", "/etc/passwd"]"#, "");
        let out = Run::user(&["-v", &d.name, "cat", "/etc/passwd"]).backend(b).output();
        out.assert_code(0).assert_stderr_has("user_db caller: the volume on /etc/passwd provides the identity files");
        assert_eq!(out.stdout, fs::read("/etc/passwd").unwrap(), "{}", out.report());
    }

    /// A user that only a directory service knows (here libnss-extrausers,
    /// set up by ci/test-setup) gets a name too: the entry comes from the
    /// host's NSS, not from its /etc/passwd.
    fn users_from_other_nss_modules_get_a_name(b) {
        let d = TestDistro::standard("udb-nss");
        let user = "distrorun-extra";
        let (uid, _) = user_ids(user);
        assert!(
            !fs::read_to_string("/etc/passwd").unwrap().lines().any(|l| l.starts_with("distrorun-extra:")),
            "the set-up's extrausers user is in /etc/passwd"
        );
        let out = Run::as_user(user, &[&d.name, "sh", "-c", "id -un; getent passwd $(id -u)"]).backend(b).output();
        out.assert_ok();
        assert_eq!(out.stdout_str(), format!("{user}\n{}\n", host_getent("passwd", &uid.to_string())), "{}", out.report());
    }

    /// GECOS fields with commas, quotes, `#`, `\` and non-ASCII letters
    /// come through intact and do not disturb the file.
    fn odd_gecos_characters_come_through_intact(b) {
        let d = TestDistro::standard("udb-gecos");
        let (uid, _) = user_ids(GECOS_USER);
        let out = Run::as_user(GECOS_USER, &[&d.name, "sh", "-c", "whoami; getent passwd $(id -u); awk -F: 'NF != 7' /etc/passwd"])
            .backend(b)
            .output();
        out.assert_ok();
        let host = host_getent("passwd", &uid.to_string());
        assert!(host.contains("O'Brien"), "the set-up's GECOS user is not as expected: {host}");
        assert_eq!(out.stdout_str(), format!("{GECOS_USER}\n{host}\n"), "{}", out.report());
    }
}

/// Under the helper, the caller's supplementary groups are real inside and
/// named, and files in /home show their owners by name with `"host"`.
#[test]
fn helper_shows_groups_and_home_owners_by_name() {
    let d = TestDistro::with_dir("udb-owners", Path::new(GUEST), "user_db: \"host\",");
    let other_home = home_of(OTHER_USER);
    let out = Run::user(&[&d.name, "sh", "-c", &format!("id -Gn; stat -c %U {}", other_home.display())])
        .backend(Backend::Helper)
        .output();
    out.assert_ok();
    let text = out.stdout_str();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].split(' ').any(|g| g == GROUP), "{}", out.report());
    assert_eq!(lines[1], OTHER_USER, "{}", out.report());
}

/// Root maintains system distros and sees their files as they are.
#[test]
fn root_sees_the_distros_own_files() {
    let d = TestDistro::standard("udb-root");
    let out = Run::root(&["-v", &d.name, "cat", "/etc/passwd"]).output();
    out.assert_code(0);
    assert!(!out.stderr_str().contains("private ramfs"), "{}", out.report());
    assert_eq!(out.stdout, fs::read(Path::new(GUEST).join("etc/passwd")).unwrap(), "{}", out.report());
}
