//! Mount targets: a symlink in a target's path is refused, never followed,
//! whether the distro ships it or the caller plants or races it in; paths
//! the caller names are resolved with the caller's rights; nothing mounted
//! for a run is shared with the host.

use std::fs::{self, Permissions};
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use super::*;

/// Mounts a payload directory on DST in a guest copy prepared by `prepare`;
/// the target path holds a symlink, so the run must be refused, and the
/// payload must never appear over the guest's (or the host's) /etc.
fn symlinked_target_is_refused(b: Backend, tag: &str, dst: &str, prepare: impl FnOnce(&Path)) {
    require_setup();
    let copy = GuestCopy::new(tag);
    prepare(&copy.path);
    let payload = TempDir::new_in(TEST_ROOT, tag);
    let marker = format!("payload-{}", unique(tag));
    payload.file(&marker, b"payload", 0o644, 0);
    let distro = TestDistro::with_config(
        tag,
        &format!(
            r#"(dir: "{}", mapped_volumes: ["/dev", (src: "{}", dst: "{dst}")])"#,
            copy.path.display(),
            payload.path.display()
        ),
    );
    let etc_before = host_mounts_under(Path::new("/etc"));
    let probe = format!("test -e /etc/{marker} && echo MOUNTED-OVER-ETC; true");
    let out = Run::user(&[&distro.name, "/bin/sh", "-c", &probe]).backend(b).output();
    assert!(
        !out.stdout_str().contains("MOUNTED-OVER-ETC"),
        "the symlink was followed: the payload covers /etc inside; stderr:\n{}",
        out.stderr_str()
    );
    assert!(!Path::new("/etc").join(&marker).exists(), "the payload was mounted over the host's /etc");
    assert_eq!(host_mounts_under(Path::new("/etc")), etc_before, "host /etc mounts changed");
    assert_no_host_mounts(&copy.path);
    assert_refused(&out, &[dst]);
}

/// The user's own symlink in the host /tmp, which the config maps in.
fn user_planted_symlink_case(b: Backend) {
    require_setup();
    let copy = GuestCopy::new("planted");
    let payload = TempDir::new_in(TEST_ROOT, "planted");
    let marker = format!("payload-{}", unique("planted"));
    payload.file(&marker, b"payload", 0o644, 0);
    let link = PathBuf::from(format!("/tmp/attack-{}", unique("planted-link")));
    let _cleanup = Remove(vec![link.clone()]);
    user_sh("ln -s /etc \"$1\"", &[path_str(&link)]).output().assert_ok();
    let distro = TestDistro::with_config(
        "planted",
        &format!(
            r#"(dir: "{}", mapped_volumes: ["/dev", "/tmp", (src: "{}", dst: "{}")])"#,
            copy.path.display(),
            payload.path.display(),
            link.display()
        ),
    );
    let probe = format!("test -e /etc/{marker} && echo MOUNTED-OVER-ETC; true");
    let out = Run::user(&[&distro.name, "/bin/sh", "-c", &probe]).backend(b).output();
    assert!(!out.stdout_str().contains("MOUNTED-OVER-ETC"), "the user's symlink was followed");
    assert_no_host_mounts(&copy.path);
    assert_refused(&out, &[path_str(&link)]);
}

/// Mounts made for the run stay in the run's namespace: none is shared.
fn no_mount_inside_is_shared(b: Backend) {
    require_setup();
    let d = TestDistro::standard("noshared");
    let out = Run::user(&[&d.name, "/bin/cat", "/proc/self/mountinfo"]).backend(b).output();
    out.assert_ok();
    let text = out.stdout_str();
    let shared: Vec<&str> = text.lines().filter(|l| l.contains(" shared:")).collect();
    assert!(shared.is_empty(), "shared mounts inside the run:\n{}", shared.join("\n"));
    assert_no_host_mounts(Path::new(GUEST));
}

/// `--extra-volume` and `-d` are resolved with the caller's rights: a
/// directory below one the caller cannot search stays out of reach.
fn caller_paths_are_resolved_as_the_caller(b: Backend) {
    require_setup();
    let secret = TempDir::new_in(TEST_ROOT, "secret").with_mode(0o700);
    let open = secret.path.join("open");
    fs::create_dir(&open).unwrap();
    fs::set_permissions(&open, Permissions::from_mode(0o755)).unwrap();
    fs::write(open.join("secret"), "TOPSECRET-CONTENT").unwrap();
    fs::set_permissions(open.join("secret"), Permissions::from_mode(0o644)).unwrap();
    let copy = GuestCopy::new("reach");
    // The mount point exists inside, so only the caller's rights can refuse.
    fs::create_dir_all(copy.path.join(open.strip_prefix("/").unwrap())).unwrap();
    let d = TestDistro::with_dir("reach", &copy.path, "");
    let inside_secret = open.join("secret");

    let out = Run::user(&["--extra-volume", path_str(&open), &d.name, "/bin/cat", path_str(&inside_secret)])
        .backend(b)
        .output();
    assert!(!out.stdout_str().contains("TOPSECRET"), "a directory the caller cannot reach was bound in");
    assert_refused(&out, &[path_str(&open)]);

    // The same through a symlink the user made.
    let link = PathBuf::from(format!("/tmp/attack-{}", unique("reach-link")));
    let _cleanup = Remove(vec![link.clone()]);
    user_sh("ln -s \"$1\" \"$2\"", &[path_str(&open), path_str(&link)]).output().assert_ok();
    let out = Run::user(&["--extra-volume", path_str(&link), &d.name, "/bin/cat", path_str(&inside_secret)])
        .backend(b)
        .output();
    assert!(
        !out.stdout_str().contains("TOPSECRET"),
        "a symlink let the caller bind in an unreachable directory"
    );
    assert_eq!(out.code, Some(125), "stderr:\n{}", out.stderr_str());
    assert_no_panic(&out);

    // The guest's /root is 0700 root: the caller may not start there.
    let out = Run::user(&["-d", "/root", &d.name, "/bin/pwd"]).backend(b).output();
    assert!(
        !out.stdout_str().contains("/root"),
        "the command started in a directory the caller cannot enter"
    );
    assert_refused(&out, &["/root"]);
    assert_no_host_mounts(&copy.path);
}

per_backend! {
    fn absolute_symlink_as_mount_target_is_refused(b) {
        symlinked_target_is_refused(b, "sym-abs", "/tmp/.X11-unix", |root| {
            symlink("/etc", root.join("tmp/.X11-unix")).unwrap();
        });
    }

    fn relative_symlink_as_mount_target_is_refused(b) {
        symlinked_target_is_refused(b, "sym-rel", "/tmp/.X11-unix", |root| {
            symlink("../etc", root.join("tmp/.X11-unix")).unwrap();
        });
    }

    fn symlink_in_an_intermediate_component_of_a_target_is_refused(b) {
        symlinked_target_is_refused(b, "sym-mid", "/opt/link/sub", |root| {
            // Following the link would succeed: /etc/sub exists in the copy.
            fs::create_dir_all(root.join("etc/sub")).unwrap();
            fs::create_dir_all(root.join("opt")).unwrap();
            symlink("/etc", root.join("opt/link")).unwrap();
        });
    }

    fn symlink_planted_by_the_user_under_a_mapped_tmp_is_refused(b) {
        user_planted_symlink_case(b);
    }

    fn mounts_inside_are_never_shared_with_the_host(b) {
        no_mount_inside_is_shared(b);
    }

    fn extra_volume_and_directory_are_resolved_with_the_callers_rights(b) {
        caller_paths_are_resolved_as_the_caller(b);
    }
}

/// The user flips a mount target under the mapped /tmp between a directory
/// and a symlink to /etc while the helper sets up mounts. Whatever the
/// timing, the payload never lands on /etc: each run either mounts on the
/// real directory or refuses.
#[test]
fn racing_a_mount_target_between_directory_and_symlink_gains_nothing() {
    require_setup();
    let copy = GuestCopy::new("race");
    let payload = TempDir::new_in(TEST_ROOT, "race");
    let marker = format!("payload-{}", unique("race"));
    payload.file(&marker, b"payload", 0o644, 0);
    let target = PathBuf::from(format!("/tmp/attack-{}", unique("race-target")));
    let _cleanup = Remove(vec![target.clone()]);
    let distro = TestDistro::with_config(
        "race",
        &format!(
            r#"(dir: "{}", mapped_volumes: ["/dev", "/tmp", (src: "{}", dst: "{}")])"#,
            copy.path.display(),
            payload.path.display(),
            target.display()
        ),
    );
    let mut flip = user_sh(
        "while :; do rm -rf \"$1\"; mkdir \"$1\"; rm -rf \"$1\"; ln -s /etc \"$1\"; done",
        &[path_str(&target)],
    )
    .command();
    flip.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    // A group of its own, so that the mkdir or ln it is running dies with
    // the loop and cannot leave the target behind after the cleanup.
    std::os::unix::process::CommandExt::process_group(&mut flip, 0);
    let mut flipper = flip.spawn().unwrap();
    let probe = format!("test -e /etc/{marker} && echo MOUNTED-OVER-ETC; true");
    let mut outcomes = (0, 0);
    let mut failure = None;
    for _ in 0..80 {
        let mut cmd = Run::user(&[&distro.name, "/bin/sh", "-c", &probe]).backend(Backend::Helper).command();
        cmd.stdin(Stdio::null());
        let out = timed(cmd, RUN_TIMEOUT);
        if out.stdout_str().contains("MOUNTED-OVER-ETC") {
            failure = Some("the payload was mounted over /etc through the symlink".to_string());
            break;
        }
        match out.code {
            Some(0) => outcomes.0 += 1,
            Some(125) => {
                outcomes.1 += 1;
                let err = out.stderr_str();
                if !err.starts_with("distrorun: ") || err.contains("panicked") {
                    failure = Some(format!("unclean refusal:\n{err}"));
                    break;
                }
            }
            other => {
                failure = Some(format!("unexpected exit {other:?}; stderr:\n{}", out.stderr_str()));
                break;
            }
        }
    }
    let group = nix::unistd::Pid::from_raw(i32::try_from(flipper.id()).expect("a pid fits in i32"));
    let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
    let _ = flipper.wait();
    eprintln!("race: {} runs mounted on the directory, {} refused", outcomes.0, outcomes.1);
    if let Some(f) = failure {
        panic!("{f}");
    }
    assert_no_host_mounts(&copy.path);
}
