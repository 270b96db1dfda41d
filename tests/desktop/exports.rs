//! Launchers and wrapper scripts on the host (`--export`, `--export-bin`)
//! that start the guest's programs.

use super::*;

/// A copy of the guest with a program that records where it ran and the
/// arguments it got, a desktop entry for it whose `Exec` line needs the
/// specification's quoting, and an icon in the hicolor theme.
struct DemoApp {
    copy: GuestCopy,
    icon: Vec<u8>,
}

impl DemoApp {
    fn new() -> DemoApp {
        let copy = GuestCopy::new("export");
        let script = copy.inside("/usr/local/bin/distrorun-demo");
        fs::write(
            &script,
            "#!/bin/sh\nout=$1\nshift\n{ grep '^VERSION_CODENAME=' /etc/os-release; for a in \"$@\"; do printf '[%s]\\n' \"$a\"; done; } > \"$out.tmp\"\nmv \"$out.tmp\" \"$out\"\n",
        )
        .expect("write the demo program");
        fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).expect("chmod");
        copy.mkdir("/usr/share/applications");
        fs::write(
            copy.inside("/usr/share/applications/distrorun-demo.desktop"),
            // The title argument is `It's "quoted" $HOME \ 100%`: quoted as
            // the specification says, then with every backslash doubled.
            "[Desktop Entry]\nType=Application\nName=Distrorun Demo\nName[de]=Distrorun-Demo\n\
             Exec=distrorun-demo @OUT@ --title \"It's \\\\\"quoted\\\\\" \\\\$HOME \\\\\\\\ 100%%\" %f\n\
             TryExec=distrorun-demo\nIcon=distrorun-demo\nStartupWMClass=DistrorunDemo\nTerminal=false\n",
        )
        .expect("write the demo desktop entry");
        let icon = b"\x89PNG\r\n\x1a\nthe demo icon".to_vec();
        let icon_dir = copy.mkdir("/usr/share/icons/hicolor/48x48/apps");
        fs::write(icon_dir.join("distrorun-demo.png"), &icon).expect("write the demo icon");
        DemoApp { copy, icon }
    }

    /// What the program writes when run inside with `args`.
    fn expected(args: &[&str]) -> String {
        let mut s = format!("VERSION_CODENAME={}\n", guest_suite());
        for a in args {
            s.push('[');
            s.push_str(a);
            s.push_str("]\n");
        }
        s
    }
}

fn wait_for_output(path: &Path) -> String {
    let deadline = Instant::now() + WAIT;
    while !path.exists() {
        assert!(Instant::now() < deadline, "{} did not appear within {WAIT:?}", path.display());
        thread::sleep(Duration::from_millis(20));
    }
    fs::read_to_string(path).expect("read the program's output")
}

/// `--export` writes a marked launcher with the distro in its name, the
/// icon copied and `StartupWMClass` kept; a desktop's launcher (gio)
/// starting its `Exec` line runs the guest's program with every argument
/// intact; `--list` shows it; a file distrorun did not write is never
/// overwritten; `--unexport` removes launcher and icon.
#[test]
fn exported_launchers_start_the_guests_program() {
    let demo = DemoApp::new();
    let d = TestDistro::with_dir("export", &demo.copy.path, "");
    let data = TempDir::owned_by(USER, "xdg-data");
    let work = TempDir::owned_by(USER, "export-work");
    let out_file = work.join("out");
    let exported =
        Run::user(&["--export", &d.name, "distrorun-demo"]).env("XDG_DATA_HOME", &data.path).output();
    exported.assert_ok();
    let launcher = data.join(format!("applications/distrorun-{}-distrorun-demo.desktop", d.name));
    assert_eq!(exported.stdout_str(), format!("{}\n", launcher.display()), "{}", exported.report());
    let text = fs::read_to_string(&launcher).expect("the launcher exists");
    for want in [
        format!("Name=Distrorun Demo ({})\n", d.name),
        format!("Name[de]=Distrorun-Demo ({})\n", d.name),
        format!("Icon=distrorun-{}-distrorun-demo\n", d.name),
        "StartupWMClass=DistrorunDemo\n".to_owned(),
        format!("TryExec={BIN}\n"),
        format!("X-Distrorun-Exported={} distrorun-demo\n", d.name),
    ] {
        assert!(text.contains(&want), "{want:?} missing from the launcher:\n{text}");
    }
    let icon = data.join(format!("icons/hicolor/48x48/apps/distrorun-{}-distrorun-demo.png", d.name));
    assert_eq!(fs::read(&icon).expect("the icon was copied"), demo.icon);

    // The launcher file still names the output placeholder; a copy with the
    // real path is what a desktop would start.
    let started = data.join("applications/started.desktop");
    fs::write(&started, text.replace("@OUT@", path_str(&out_file))).expect("write the launcher to start");
    let arg = work.join("a file with spaces");
    let gio = Run::user(&["launch", path_str(&started), path_str(&arg)])
        .bin("/usr/bin/gio")
        .env("XDG_DATA_HOME", &data.path)
        .output();
    gio.assert_code(0);
    assert_eq!(
        wait_for_output(&out_file),
        DemoApp::expected(&["--title", "It's \"quoted\" $HOME \\ 100%", path_str(&arg)]),
        "the guest's program did not get its arguments intact; launcher:\n{text}"
    );
    fs::remove_file(&started).expect("rm the started copy");

    let list = Run::user(&["--list"]).env("XDG_DATA_HOME", &data.path).output();
    list.assert_ok();
    let line = format!("{}\texport\tdistrorun-demo\t{}\n", d.name, launcher.display());
    assert!(list.stdout_str().contains(&line), "{}", list.report());

    let removed =
        Run::user(&["--unexport", &d.name, "distrorun-demo"]).env("XDG_DATA_HOME", &data.path).output();
    removed.assert_ok();
    assert!(!launcher.exists() && !icon.exists(), "--unexport left files behind");
    let again =
        Run::user(&["--unexport", &d.name, "distrorun-demo"]).env("XDG_DATA_HOME", &data.path).output();
    assert_refused(&again, &["cannot unexport distrorun-demo", "exported nothing"]);

    // Someone else's launcher at that place stays as it is.
    fs::write(&launcher, "[Desktop Entry]\nName=Mine\n").expect("write a foreign launcher");
    let refused =
        Run::user(&["--export", &d.name, "distrorun-demo"]).env("XDG_DATA_HOME", &data.path).output();
    assert_refused(&refused, &["refusing to overwrite", "distrorun did not write it"]);
    assert_eq!(fs::read_to_string(&launcher).unwrap(), "[Desktop Entry]\nName=Mine\n");
}

/// `--export-bin` writes a marked wrapper to ~/.local/bin that runs the
/// guest's tool with its arguments; `--unexport` with the same path removes
/// it, and refuses a file distrorun did not write.
#[test]
fn exported_tools_run_in_the_guest() {
    let demo = DemoApp::new();
    let d = TestDistro::with_dir("export-bin", &demo.copy.path, "");
    let wrapper = home_of(USER).join(".local/bin/distrorun-demo");
    let _cleanup = Remove(vec![wrapper.clone()]);
    let work = TempDir::owned_by(USER, "export-bin-work");
    let out_file = work.join("out");
    let exported = Run::user(&["--export-bin", &d.name, "/usr/local/bin/distrorun-demo"]).output();
    exported.assert_ok();
    assert_eq!(exported.stdout_str(), format!("{}\n", wrapper.display()), "{}", exported.report());
    let ran = Run::user(&[path_str(&out_file), "one", "two words", "it's"]).bin(path_str(&wrapper)).output();
    ran.assert_ok();
    assert_eq!(wait_for_output(&out_file), DemoApp::expected(&["one", "two words", "it's"]));
    let list = Run::user(&["--list"]).output();
    assert!(
        list.stdout_str().contains(&format!(
            "{}\texport\t/usr/local/bin/distrorun-demo\t{}\n",
            d.name,
            wrapper.display()
        )),
        "{}",
        list.report()
    );
    // A tool is named by its path: its base name names a desktop entry.
    let by_name = Run::user(&["--unexport", &d.name, "distrorun-demo"]).output();
    assert_refused(&by_name, &["cannot unexport distrorun-demo"]);
    assert!(wrapper.exists(), "--unexport by the base name removed the wrapper");
    Run::user(&["--unexport", &d.name, "/usr/local/bin/distrorun-demo"]).output().assert_ok();
    assert!(!wrapper.exists(), "--unexport left the wrapper");
    let missing = Run::user(&["--export-bin", &d.name, "/usr/bin/no-such-tool"]).output();
    assert_refused(&missing, &["cannot export /usr/bin/no-such-tool", "no such file"]);
}
