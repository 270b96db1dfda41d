//! Mounts: the kernel file systems, the volumes, propagation from the host
//! and none back to it, and the switch of the root, once per backend.

use super::*;

per_backend! {
    fn proc_sys_and_the_submounts_of_dev_are_present(b) {
        let d = TestDistro::standard("submounts");
        let mounts = mountinfo_inside(b, &d);
        for want in ["/", "/proc", "/sys", "/dev", "/dev/pts", "/dev/shm", "/home", "/tmp", "/run"] {
            assert!(
                mounts.iter().any(|m| m.mount_point == want),
                "{want} is not a mount point inside:\n{}",
                mounts.iter().map(|m| m.line.as_str()).collect::<Vec<_>>().join("\n")
            );
        }
        run_in(b, &d, &["sh", "-c", "test -e /proc/self/status && test -d /sys/kernel && test -e /dev/pts/ptmx && test -e /dev/null"])
            .output()
            .assert_ok();
    }

    fn a_file_volume_shows_the_host_file(b) {
        let dir = TempDir::new("filevol");
        let host_file = dir.file("hostname", b"from-the-host\n", 0o644, 0);
        let d = TestDistro::with_volumes(
            "filevol",
            Path::new(GUEST),
            &format!(r#"["/dev", "/tmp", (src: {:?}, dst: "/etc/hostname")]"#, host_file.to_str().unwrap()),
            "",
        );
        let out = run_in(b, &d, &["cat", "/etc/hostname"]).output();
        out.assert_ok();
        assert_eq!(out.stdout_str(), "from-the-host\n");
    }

    fn a_read_only_volume_refuses_writes(b) {
        let dir = TempDir::owned_by(USER, "rovol");
        fs::write(dir.join("existing"), "readable\n").unwrap();
        let d = TestDistro::with_volumes(
            "rovol",
            Path::new(GUEST),
            &format!(r#"["/dev", (src: {:?}, dst: "/mnt", read_only: true)]"#, dir.str()),
            "",
        );
        let out = run_in(b, &d, &["sh", "-c", "cat /mnt/existing; touch /mnt/new"]).output();
        assert_ne!(out.code, Some(0), "{}", out.report());
        assert_eq!(out.stdout_str(), "readable\n", "{}", out.report());
        out.assert_stderr_has("Read-only file system");
        assert!(!dir.join("new").exists());
    }

    fn an_extra_volume_appears_inside(b) {
        let copy = GuestCopy::new("xvol");
        let extra = TempDir::new_in("/var/tmp", "xvol");
        extra.file("data", b"extra volume\n", 0o644, 0);
        copy.mkdir(extra.str());
        let d = TestDistro::with_dir("xvol", &copy.path, "");
        let file = extra.join("data");
        let out = Run::user(&["--extra-volume", extra.str(), &d.name, "cat", file.to_str().unwrap()])
            .backend(b)
            .output();
        out.assert_ok();
        assert_eq!(out.stdout_str(), "extra volume\n");
    }

    fn an_extra_volume_the_caller_cannot_access_is_refused(b) {
        let copy = GuestCopy::new("xvoldeny");
        let private = TempDir::new_in("/var/tmp", "xvoldeny");
        fs::set_permissions(&private.path, fs::Permissions::from_mode(0o700)).unwrap();
        copy.mkdir(private.str());
        let d = TestDistro::with_dir("xvoldeny", &copy.path, "");
        Run::user(&["--extra-volume", private.str(), &d.name, "true"])
            .backend(b)
            .output()
            .assert_own_error()
            .assert_stderr_has(private.str());
    }

    fn host_mounts_made_while_running_appear_inside(b) {
        let d = TestDistro::standard("propagate");
        let shared = SharedDir::new("propagate");
        let mnt = shared.dir.join("mnt");
        fs::create_dir(&mnt).unwrap();
        let started = shared.dir.join("started");
        let script = format!(
            "touch {started}; i=0; while [ ! -e {mnt}/file ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done; cat {mnt}/file",
            started = started.display(),
            mnt = mnt.display()
        );
        let child = run_in(b, &d, &["sh", "-c", &script]).command().spawn().expect("spawn");
        wait_for_file(&started, Duration::from_secs(30), "the command inside");
        run_host("mount", &["-t", "tmpfs", "-o", "size=1m", "propagated", mnt.to_str().unwrap()]);
        fs::write(mnt.join("file"), "mounted on the host later\n").unwrap();
        let out = child.wait_with_output().expect("wait");
        let _ = Command::new("umount").arg(&mnt).status();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "mounted on the host later\n",
            "stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn every_mount_inside_has_its_volumes_flags_submounts_included(b) {
        // A volume whose source has submounts the host made without any
        // flag, one stacked on another, bound twice with different flags:
        // each mount of each copy must come out with its volume's flags.
        let vol = TempDir::new("flagsvol");
        let sub = vol.join("sub");
        fs::create_dir(&sub).unwrap();
        run_host("mount", &["-t", "tmpfs", "-o", "size=1m", "flagsvol", sub.to_str().unwrap()]);
        let _unmount = HostMount(sub.clone());
        fs::create_dir(sub.join("deeper")).unwrap();
        run_host("mount", &["-t", "tmpfs", "-o", "size=1m", "flagsvol", sub.join("deeper").to_str().unwrap()]);
        let d = TestDistro::with_volumes(
            "flagsvol",
            Path::new(GUEST),
            &format!(r#"["/dev", "/tmp", (src: {0:?}, dst: "/mnt"), (src: {0:?}, dst: "/opt", read_only: true)]"#, vol.str()),
            "",
        );
        let mounts = mountinfo_inside(b, &d);
        let ids = |m: &MountInfo| -> (String, String) {
            let mut f = m.line.split(' ');
            (f.next().unwrap_or_default().to_owned(), f.next().unwrap_or_default().to_owned())
        };
        let rules: [(&str, &[&str]); 7] = [
            ("/", &["nosuid", "nodev"]),
            ("/proc", &["nosuid", "nodev", "noexec"]),
            ("/sys", &["nosuid", "nodev", "noexec"]),
            ("/dev", &["nosuid"]),
            ("/tmp", &["nosuid", "nodev"]),
            ("/mnt", &["nosuid", "nodev"]),
            ("/opt", &["ro", "nosuid", "nodev"]),
        ];
        let below = |point: &str, dir: &str| dir == "/" || point == dir || point.starts_with(&format!("{dir}/"));
        let mut seen = 0;
        for m in &mounts {
            // A mount with another stacked on its root is out of reach.
            let (id, _) = ids(m);
            if mounts.iter().any(|o| ids(o).1 == id && o.mount_point == m.mount_point) {
                continue;
            }
            let (dir, wanted) = rules.iter().filter(|(dir, _)| below(&m.mount_point, dir)).max_by_key(|(dir, _)| dir.len()).unwrap();
            let have: Vec<&str> = m.options.split(',').collect();
            for flag in *wanted {
                assert!(have.contains(flag), "{} (below {dir}) lacks {flag}:\n{}", m.mount_point, m.line);
            }
            if m.mount_point.starts_with("/mnt/sub") || m.mount_point.starts_with("/opt/sub") {
                seen += 1;
            }
        }
        assert_eq!(seen, 4, "the submounts of both copies of the volume:\n{}", mounts.iter().map(|m| m.line.as_str()).collect::<Vec<_>>().join("\n"));
    }

    fn no_mount_inside_is_shared_with_the_host(b) {
        let d = TestDistro::standard("noshared");
        // Something shared under a volume, which a careless copy would keep shared.
        let _shared = SharedDir::new("noshared");
        let shared: Vec<String> = mountinfo_inside(b, &d)
            .into_iter()
            .filter(|m| m.tags.iter().any(|t| t.starts_with("shared:")))
            .map(|m| m.line)
            .collect();
        assert!(shared.is_empty(), "shared mounts inside would propagate to the host:\n{}", shared.join("\n"));
    }

    fn the_root_is_switched_with_pivot_root_so_user_namespaces_work_inside(b) {
        let d = TestDistro::standard("pivot");
        // A chrooted process cannot create a user namespace: EPERM.
        run_in(b, &d, &["unshare", "-Ur", "true"]).output().assert_ok();
    }

    fn the_guest_is_the_root_inside(b) {
        let d = TestDistro::standard("guestroot");
        let out = run_in(b, &d, &["cat", "/etc/os-release"]).output();
        out.assert_ok();
        let suite = guest_suite();
        assert!(
            out.stdout_str().contains(&format!("VERSION_CODENAME={suite}")),
            "expected the {suite} guest's os-release:\n{}",
            out.stdout_str()
        );
        let mounts = mountinfo_inside(b, &d);
        let root = mounts.iter().find(|m| m.mount_point == "/").expect("a / mount inside");
        assert!(
            root.root.ends_with("/distrorun-test/guest"),
            "/ inside should be the guest tree: {}",
            root.line
        );
    }

    fn a_mount_point_missing_in_the_guest_is_an_error_and_nothing_is_created(b) {
        let copy = GuestCopy::new("nomountpoint");
        let host_only = TempDir::new_in("/var/tmp", "nomountpoint");
        let d = TestDistro::with_volumes(
            "nomountpoint",
            &copy.path,
            &format!(r#"["/dev", "/tmp", {:?}]"#, host_only.str()),
            "",
        );
        let before = listing(&copy.inside("/var/tmp"));
        Run::user(&[&d.name, "true"])
            .backend(b)
            .output()
            .assert_own_error()
            .assert_stderr_has(host_only.str());
        assert!(!copy.inside(host_only.str()).exists(), "distrorun created the mount point in the tree");
        assert_eq!(listing(&copy.inside("/var/tmp")), before);
    }

    fn a_symlink_in_a_mount_point_path_inside_the_guest_is_refused(b) {
        let host_dir = TempDir::new("symlinked");
        // The last component, then an intermediate one.
        for (link, target, dst) in [("/mnt", "/tmp", "/mnt"), ("/opt", "usr/share", "/opt/doc")] {
            let copy = GuestCopy::new("symlinked");
            let at = copy.inside(link);
            fs::remove_dir(&at).unwrap_or_else(|e| panic!("rmdir {}: {e}", at.display()));
            std::os::unix::fs::symlink(target, &at).unwrap();
            let d = TestDistro::with_volumes(
                "symlinked",
                &copy.path,
                &format!(r#"["/dev", (src: {:?}, dst: {dst:?})]"#, host_dir.str()),
                "",
            );
            Run::user(&[&d.name, "true"]).backend(b).output().assert_own_error().assert_stderr_has(dst);
        }
    }

    fn the_host_never_sees_the_mounts_while_a_command_runs(b) {
        let d = TestDistro::standard("hostclean");
        let marks = TempDir::owned_by(USER, "hostclean");
        let started = marks.join("started");
        let mut child = run_in(b, &d, &["sh", "-c", &format!("touch {}; exec sleep 60", started.display())])
            .command()
            .spawn()
            .expect("spawn");
        wait_for_file(&started, Duration::from_secs(30), "the command inside");
        let during = host_mounts_under(Path::new(GUEST));
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(during.is_empty(), "host mounts under the guest while running:\n{}", during.join("\n"));
        let after = host_mounts_under(Path::new(GUEST));
        assert!(after.is_empty(), "host mounts under the guest afterwards:\n{}", after.join("\n"));
    }

    fn killing_distrorun_while_it_starts_leaves_no_mounts_on_the_host(b) {
        let d = TestDistro::standard("killstart");
        for micros in [0, 50, 200, 500, 1_000, 2_000, 3_000, 5_000, 10_000, 20_000] {
            let mut child = run_in(b, &d, &["sleep", "5"]).command().spawn().expect("spawn");
            thread::sleep(Duration::from_micros(micros));
            child.kill().unwrap();
            child.wait().unwrap();
            let left = host_mounts_under(Path::new(GUEST));
            assert!(left.is_empty(), "killed after {micros} µs, the host has mounts under the guest:\n{}", left.join("\n"));
        }
    }
}

/// Unmounts a mount the test made on the host, recursively, however the
/// test ends.
struct HostMount(PathBuf);

impl Drop for HostMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").args(["-R", "-l"]).arg(&self.0).status();
    }
}
