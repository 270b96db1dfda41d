//! Attacks that once got through: privileged reads of the caller's
//! descriptor, configs shown to callers who may not read them, name lookups
//! that crashed the binaries, and volume checks that could be raced or
//! fooled by a symlink into the kernel's file systems.

use std::fs;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

use nix::fcntl::{fcntl, FcntlArg, SealFlag};
use nix::sys::memfd::{memfd_create, MFdFlags};

use super::*;

/// Runs the helper as the test user with the descriptor `env` on fd 3.
fn helper_with_fd(env: OwnedFd, args: &[&str]) -> Output {
    let mut cmd = helper_args(args).command();
    cmd.stdin(env);
    timed(cmd, RUN_TIMEOUT)
}

/// A memfd holding `bytes` with exactly `seals` set.
fn memfd_with_seals(bytes: &[u8], seals: SealFlag) -> OwnedFd {
    let fd = memfd_create(c"distrorun-environ", MFdFlags::MFD_ALLOW_SEALING | MFdFlags::MFD_CLOEXEC)
        .expect("memfd_create");
    let mut file = fs::File::from(fd);
    std::io::Write::write_all(&mut file, bytes).expect("writing the memfd");
    if !seals.is_empty() {
        fcntl(&file, FcntlArg::F_ADD_SEALS(seals)).expect("sealing the memfd");
    }
    file.into()
}

// ---------------------------------------------------------------------------
// The environment descriptor
// ---------------------------------------------------------------------------

/// procfs decides how much of a PCI device's configuration space to return
/// from the reader's capabilities at read time: 64 bytes for a user, 4096
/// for `CAP_SYS_ADMIN`. The helper must never be that reader.
#[test]
fn env_fd_on_a_capability_checked_proc_file_is_refused() {
    let pci = Path::new("/proc/bus/pci/00/00.0");
    assert!(pci.exists(), "{} is needed for this attack and this machine has none", pci.display());
    let d = TestDistro::standard("pci-env");
    let out = user_sh(
        "exec 3</proc/bus/pci/00/00.0; exec \"$@\"",
        &[HELPER, "--env-fd", "3", &d.name, "/usr/bin/cat", "/proc/self/environ"],
    )
    .output();
    assert_refused(&out, &["descriptor 3", "sealed memfd"]);
}

#[test]
fn env_fd_that_is_a_regular_file_is_refused() {
    let d = TestDistro::standard("regular-env");
    let out = with_env_fd_on_stdin(&helper_args(&[&d.name, "/bin/true"]), &EnvFd::regular_file(&env_bytes()));
    assert_refused(&out, &["descriptor 3", "sealed memfd"]);
}

#[test]
fn env_fd_memfd_missing_any_seal_is_refused() {
    let d = TestDistro::standard("unsealed-env");
    let all =
        SealFlag::F_SEAL_SEAL | SealFlag::F_SEAL_WRITE | SealFlag::F_SEAL_GROW | SealFlag::F_SEAL_SHRINK;
    for missing in
        [SealFlag::F_SEAL_SEAL, SealFlag::F_SEAL_WRITE, SealFlag::F_SEAL_GROW, SealFlag::F_SEAL_SHRINK, all]
    {
        let out = helper_with_fd(memfd_with_seals(&env_bytes(), all - missing), &[&d.name, "/bin/true"]);
        assert_refused(&out, &["descriptor 3", "sealed memfd"]);
    }
}

#[test]
fn env_fd_with_a_run_of_nul_bytes_is_refused_in_bounded_memory() {
    let d = TestDistro::standard("nul-env");
    // 16 MiB of NULs is 16 million empty entries: refused by their count,
    // before one is allocated, with 256 MiB of address space to do it in.
    let nuls = vec![0u8; 16 << 20];
    let script = "ulimit -v 262144; exec 3<&0 0</dev/null; exec \"$@\"";
    let out = with_env_fd_on_stdin(
        &user_sh(script, &[HELPER, "--env-fd", "3", &d.name, "/bin/true"]),
        &EnvFd::sealed_memfd(&nuls),
    );
    assert_refused(&out, &["entries"]);
}

// ---------------------------------------------------------------------------
// Configs the caller may not read
// ---------------------------------------------------------------------------

const SECRET: &str = "s3cret-licence-key-7f1d";

/// A root-owned config of mode 0600 with a secret in it, that does not
/// admit the test user.
fn secret_config(tag: &str, text: &str) -> TestDistro {
    let d = TestDistro::with_config(tag, text);
    fs::set_permissions(&d.conf, fs::Permissions::from_mode(0o600)).expect("chmod 0600 the config");
    d
}

fn assert_permission_denied_without_the_secret(d: &TestDistro) {
    for (how, out) in through_helper(&d.name) {
        assert_refused(&out, &["Permission denied"]);
        assert!(
            !out.stderr_str().contains(SECRET),
            "{how} showed the unreadable config's secret:\n{}",
            out.report()
        );
    }
    // The front end, reading as the user, says the same.
    let out = Run::user(&[&d.name, "/bin/true"]).output();
    assert_refused(&out, &["Permission denied"]);
}

#[test]
fn unreadable_config_in_the_old_format_is_not_shown() {
    let d = secret_config(
        "secret-old",
        &format!("dir: \"{GUEST}\"\nmapped_volumes: [\"/dev\"]\nusers: [\"root\"]\nlicence: \"{SECRET}\"\n"),
    );
    assert_permission_denied_without_the_secret(&d);
}

#[test]
fn unreadable_config_with_an_unknown_field_is_not_quoted() {
    let d =
        secret_config("secret-ron", &format!("(\n    dir: \"{GUEST}\",\n    licence_{SECRET}: true,\n)\n"));
    assert_permission_denied_without_the_secret(&d);
}

#[test]
fn unreadable_config_with_an_invalid_path_is_not_quoted() {
    let d = secret_config("secret-path", &format!("(\n    dir: \"relative/{SECRET}\",\n)\n"));
    assert_permission_denied_without_the_secret(&d);
}

// ---------------------------------------------------------------------------
// Name lookups through NSS
// ---------------------------------------------------------------------------

/// With `systemd` after `files` in nsswitch.conf, a lookup that misses
/// `files` loads `libnss_systemd`. It must come back as "no such name", never
/// as a crash.
#[test]
fn access_lists_naming_unknown_users_and_groups_refuse_cleanly() {
    let nss = fs::read_to_string("/etc/nsswitch.conf").expect("read /etc/nsswitch.conf");
    let uses_systemd = nss.lines().any(|l| l.starts_with("group:") && l.contains("systemd"));
    assert!(
        uses_systemd,
        "this test needs `systemd` in the group line of /etc/nsswitch.conf (ci/test-setup adds it)"
    );
    let d = TestDistro::with_dir(
        "nss-unknown",
        Path::new(GUEST),
        r#"users: ["dr-nosuchuser"], groups: ["dr-nosuchgroup"],"#,
    );
    for (_, out) in through_helper(&d.name) {
        assert_refused(&out, &["may not use distro"]);
    }
    let out = Run::user(&["--backend", "userns", &d.name, "/bin/true"]).output();
    assert_refused(&out, &["may not use distro"]);
}

fn assert_extra_user_admitted(d: &TestDistro) {
    for b in [Backend::Userns, Backend::Helper] {
        let out = Run::as_user(EXTRA_USER, &[&d.name, "/usr/bin/id", "-u"]).backend(b).output();
        out.assert_ok();
        assert_eq!(out.stdout_str().trim(), user_ids(EXTRA_USER).0.to_string(), "{}", out.report());
    }
}

#[test]
fn user_known_only_to_a_second_nss_module_is_admitted_by_name() {
    require_extra_user();
    let d = TestDistro::with_dir("nss-extra-user", Path::new(GUEST), &format!("users: [\"{EXTRA_USER}\"],"));
    assert_extra_user_admitted(&d);
}

#[test]
fn group_known_only_to_a_second_nss_module_admits_its_members() {
    require_extra_user();
    let d =
        TestDistro::with_dir("nss-extra-group", Path::new(GUEST), &format!("groups: [\"{EXTRA_GROUP}\"],"));
    assert_extra_user_admitted(&d);
}

// ---------------------------------------------------------------------------
// --extra-volume sources
// ---------------------------------------------------------------------------

/// A symlink made by the user, outside every mapped volume, into a kernel
/// file system: the path's text names neither /proc nor /sys.
fn kernel_fs_link_is_refused(b: Backend, target: &str) {
    let dir = TempDir::new_in("/var/tmp", "kernel-link");
    let link = dir.join("link");
    symlink(target, &link).expect("symlink");
    let d = TestDistro::standard("kernel-link");
    let out = Run::user(&["--extra-volume", path_str(&link), &d.name, "/bin/true"]).backend(b).output();
    assert_refused(&out, &["--extra-volume", "kernel file system"]);
}

per_backend! {
    fn extra_volume_through_a_symlink_into_procfs_is_refused(b) {
        kernel_fs_link_is_refused(b, "/proc/sys");
    }

    fn extra_volume_through_a_symlink_into_sysfs_is_refused(b) {
        kernel_fs_link_is_refused(b, "/sys/kernel");
    }
}

/// Keeps swapping two paths with `renameat2(RENAME_EXCHANGE)` as the test
/// user until killed; holds the directory of the program it runs.
struct Swapper {
    child: Child,
    _program_dir: TempDir,
}

impl Swapper {
    fn start(a: &Path, b: &Path) -> Swapper {
        let dir = TempDir::new_in(TEST_ROOT, "swapper");
        let bin = compile_support(&dir.path, "exchange_loop", &[]);
        let child = Run::user(&[path_str(a), path_str(b)])
            .bin(path_str(&bin))
            .command()
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the exchange loop");
        Swapper { child, _program_dir: dir }
    }
}

impl Drop for Swapper {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The user swaps an extra volume's path between their own directory and a
/// symlink to /root while the helper opens and checks it. Whatever the
/// timing, /root is never mounted: the search check is made on the very
/// descriptor that is mounted.
#[test]
fn racing_an_extra_volume_between_directory_and_symlink_never_mounts_root() {
    let root_ino = fs::metadata("/root").expect("stat /root");
    assert_eq!(root_ino.mode() & 0o001, 0, "/root must not be searchable by others for this test");
    let d = TestDistro::standard("vol-race");
    let dir = TempDir::owned_by(USER, "vol-race");
    let vol = dir.join("vol");
    let decoy = dir.join("decoy");
    fs::create_dir(&vol).expect("mkdir vol");
    symlink("/root", &decoy).expect("symlink decoy");
    let (uid, gid) = user_ids(USER);
    for p in [&vol, &decoy] {
        std::os::unix::fs::lchown(p, Some(uid), Some(gid)).expect("chown to the user");
    }
    let swapper = Swapper::start(&vol, &decoy);
    let (mut mounted_own, mut refused) = (0, 0);
    for _ in 0..400 {
        let out = Run::user(&[
            "--backend",
            "helper",
            "--extra-volume",
            path_str(&vol),
            &d.name,
            "/usr/bin/stat",
            "-c",
            "%d:%i",
            path_str(&vol),
        ])
        .timeout(Duration::from_secs(20))
        .output();
        if out.code == Some(0) {
            let seen = out.stdout_str();
            let root = format!("{}:{}", root_ino.dev(), root_ino.ino());
            assert_ne!(seen.trim(), root, "/root was mounted as the extra volume:\n{}", out.report());
            mounted_own += 1;
        } else {
            // Refused at the source (the symlink to /root may not be
            // searched) or at the target (a symlink is never a mount point).
            assert_refused(&out, &[]);
            refused += 1;
        }
    }
    drop(swapper);
    let _ = fs::remove_file(&decoy);
    // Both outcomes happen, or the race was never run.
    assert!(mounted_own > 0 && refused > 0, "mounted {mounted_own} times, refused {refused} times");
}
