//! Installing and removing: `make install`/`make uninstall` into a scratch
//! DESTDIR, the Debian 12 toolchain set-up in a clean environment, and the
//! Debian package, built once, checked with lintian, installed on this
//! machine, run by the test user under both backends, and purged.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use distrorun_testkit::*;

/// A release build inside dpkg-buildpackage, on a shared machine.
const DEB_BUILD_TIMEOUT: Duration = Duration::from_secs(60 * 60);
const MARKER: &str = "/var/lib/distrorun-test/pkgtest-installed";
const PKG_HELPER: &str = "/usr/libexec/distrorun/distrorun-helper";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn sh(program: &str, args: &[&str], timeout: Duration) -> Output {
    let mut cmd = Command::new(program);
    cmd.args(args).current_dir(repo());
    timed(cmd, timeout)
}

/// Every path below `dir`, relative to it.
fn tree(dir: &Path) -> BTreeSet<PathBuf> {
    let mut found = BTreeSet::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in fs::read_dir(&d).unwrap_or_else(|e| panic!("cannot read {}: {e}", d.display())) {
            let path = e.unwrap().path();
            if path.is_dir() && !path.is_symlink() {
                todo.push(path.clone());
            }
            found.insert(path.strip_prefix(dir).unwrap().to_path_buf());
        }
    }
    found
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn make(args: &[&str]) -> Output {
    let out = sh("make", &[&["-s", "--no-print-directory"], args].concat(), RUN_TIMEOUT);
    out.assert_code(0);
    out
}

#[test]
fn make_uninstall_removes_exactly_what_make_install_installed() {
    // The installed test binaries stand in for a release build, so that the
    // test exercises the install rules without another build.
    let scratch = TempDir::new("pkg-destdir");
    let release = scratch.join("build/fakehost/release");
    fs::create_dir_all(&release).unwrap();
    fs::copy(BIN, release.join("distrorun")).unwrap();
    fs::copy(HELPER, release.join("distrorun-helper")).unwrap();
    let dest = scratch.join("dest");
    fs::create_dir(&dest).unwrap();
    let vars = |prefix: &str| {
        vec![
            format!("DESTDIR={}", dest.display()),
            format!("PREFIX={prefix}"),
            format!("TARGET_DIR={}", scratch.join("build").display()),
            "HOST=fakehost".to_owned(),
        ]
    };
    for prefix in ["/usr/local", "/opt/distrorun"] {
        let install = [vec!["install-files".to_owned()], vars(prefix)].concat();
        make(&strs(&install));
        // Twice, as a package build or an upgrade would.
        make(&strs(&install));
        let p = dest.join(prefix.trim_start_matches('/'));
        let expect = [
            ("bin/distrorun", 0o755),
            ("libexec/distrorun/distrorun-helper", 0o4755),
            ("share/man/man1/distrorun.1", 0o644),
            ("share/man/man5/distrorun.conf.5", 0o644),
            ("share/bash-completion/completions/distrorun", 0o644),
            ("share/zsh/site-functions/_distrorun", 0o644),
            ("share/fish/vendor_completions.d/distrorun.fish", 0o644),
        ];
        for (file, mode) in expect {
            let meta =
                fs::metadata(p.join(file)).unwrap_or_else(|e| panic!("{prefix}/{file} not installed: {e}"));
            assert_eq!(meta.permissions().mode() & 0o7777, mode, "{prefix}/{file}");
            assert_eq!(meta.uid(), 0, "{prefix}/{file}");
        }
        assert!(p.join("etc/distrorun.d").is_dir(), "no {prefix}/etc/distrorun.d");
        assert_eq!(
            fs::read(p.join("share/man/man1/distrorun.1")).unwrap(),
            fs::read(repo().join("man/distrorun.1")).unwrap()
        );

        make(&strs(&[vec!["uninstall".to_owned()], vars(prefix)].concat()));
        let left = tree(&dest);
        assert!(left.is_empty(), "make uninstall PREFIX={prefix} left: {left:?}");
    }

    // An admin's config is not make's to remove, nor the directories above it.
    make(&strs(&[vec!["install-files".to_owned()], vars("/usr/local")].concat()));
    let conf = dest.join("usr/local/etc/distrorun.d/mine.conf");
    fs::write(&conf, "(dir: \"/srv/x\")").unwrap();
    make(&strs(&[vec!["uninstall".to_owned()], vars("/usr/local")].concat()));
    let left: Vec<PathBuf> = tree(&dest).into_iter().collect();
    let want: Vec<PathBuf> = [
        "usr",
        "usr/local",
        "usr/local/etc",
        "usr/local/etc/distrorun.d",
        "usr/local/etc/distrorun.d/mine.conf",
    ]
    .iter()
    .map(PathBuf::from)
    .collect();
    assert_eq!(left, want);
}

/// What a fresh Debian 12 machine without rustup gets: no cargo in PATH
/// but the distribution's, and no home.
#[test]
fn ensure_rust_uses_the_packaged_toolchain_without_rustup() {
    let want = fs::read_to_string(repo().join("Cargo.toml"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = \""))
        .and_then(|v| v.strip_suffix('"'))
        .expect("rust-version in Cargo.toml")
        .to_owned();
    let mut cmd = Command::new("env");
    cmd.args([
        "-i",
        "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME=/nonexistent",
        "bash",
        "-c",
        ". ci/lib.sh && ensure_rust && ensure_rust_tools && command -v cargo && rustc --version",
    ])
    .current_dir(repo());
    let out = timed(cmd, Duration::from_secs(600));
    out.assert_code(0);
    let text = out.stdout_str();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("/usr/bin/cargo"), "{}", out.report());
    let version = lines.next().and_then(|l| l.split_whitespace().nth(1)).expect("rustc --version");
    let num = |v: &str| v.split('.').map(|p| p.parse::<u32>().unwrap_or(0)).collect::<Vec<_>>();
    assert!(num(version) >= num(&want), "packaged Rust {version} is older than {want}:\n{}", out.report());
}

/// Purges the package and removes the test's config, also when the test
/// fails half-way, so that the machine is left as it was found.
struct Installed {
    conf: PathBuf,
}

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.conf);
        if Command::new("dpkg-query").args(["-W", "distrorun"]).output().is_ok_and(|o| o.status.success()) {
            let out = sh("apt-get", &["purge", "-y", "-qq", "distrorun"], Duration::from_secs(300));
            if !out.status.success() {
                eprintln!("FAILED to purge the distrorun package:\n{}", out.report());
                return;
            }
        }
        let _ = fs::remove_file(MARKER);
    }
}

/// The lintian tags that may remain, each explained in docs/packaging.md.
const EXPECTED_LINTIAN: &[&str] = &["elevated-privileges", "shared-library-lacks-prerequisites"];

#[test]
fn the_debian_package_builds_installs_runs_and_purges_cleanly() {
    // Before the long build, not after it.
    require_setup();
    let installed = Command::new("dpkg-query").args(["-W", "-f", "${Status}", "distrorun"]).output();
    assert!(
        Path::new(MARKER).exists() || !installed.as_ref().is_ok_and(|o| o.status.success() && !o.stdout.is_empty()),
        "a distrorun package is installed on this machine; the packaging test installs and purges its own, so remove that one first"
    );
    let out_dir = TempDir::new("pkg-deb");
    let deb = build_deb(&out_dir);
    let paths = check_contents(&deb);
    check_lintian(&deb);
    install_run_and_purge(&deb, &paths);
}

/// `make deb`, once: the one package this test installs.
fn build_deb(out_dir: &TempDir) -> String {
    let built = sh("make", &["deb", &format!("DEB_OUT={}", out_dir.str())], DEB_BUILD_TIMEOUT);
    built.assert_code(0);
    let debs: Vec<PathBuf> = fs::read_dir(out_dir.str())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "deb"))
        .collect();
    assert_eq!(debs.len(), 1, "make deb made {debs:?}:\n{}", built.report());
    debs[0].to_str().unwrap().to_owned()
}

/// What the package holds, and with which modes; returns its paths.
fn check_contents(deb: &str) -> Vec<String> {
    let listing = sh("dpkg-deb", &["-c", deb], RUN_TIMEOUT);
    listing.assert_code(0);
    let entries: Vec<(String, String)> = listing
        .stdout_str()
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f[0].to_owned(), f[5].trim_start_matches('.').trim_end_matches('/').to_owned())
        })
        .collect();
    let mode_of = |path: &str| {
        entries.iter().find(|(_, p)| p == path).map_or_else(
            || panic!("{path} is not in the package:\n{}", listing.stdout_str()),
            |(m, _)| m.clone(),
        )
    };
    assert_eq!(mode_of(PKG_HELPER), "-rwsr-xr-x");
    assert_eq!(mode_of("/usr/bin/distrorun"), "-rwxr-xr-x");
    for path in [
        "/etc/distrorun.d",
        "/etc/apparmor.d/distrorun",
        "/usr/share/man/man1/distrorun.1.gz",
        "/usr/share/man/man5/distrorun.conf.5.gz",
        "/usr/share/bash-completion/completions/distrorun",
        "/usr/share/zsh/vendor-completions/_distrorun",
        "/usr/share/fish/vendor_completions.d/distrorun.fish",
    ] {
        mode_of(path);
    }
    entries.into_iter().map(|(_, p)| p).collect()
}

/// lintian: no error, and no warning but those docs/packaging.md explains.
fn check_lintian(deb: &str) {
    let lint = sh("lintian", &["--tag-display-limit", "0", deb], Duration::from_secs(600));
    let tags: Vec<String> = lint
        .stdout_str()
        .lines()
        .filter(|l| l.starts_with("E: ") || l.starts_with("W: "))
        .map(str::to_owned)
        .collect();
    let unexplained: Vec<&String> = tags
        .iter()
        .filter(|t| !EXPECTED_LINTIAN.iter().any(|e| t.split_whitespace().nth(2) == Some(e)))
        .collect();
    assert!(unexplained.is_empty(), "lintian tags docs/packaging.md does not explain:\n{}", lint.report());
}

/// Installs the package with apt, runs it as the test user under both
/// backends, checks that dpkg-statoverride holds, purges it, and checks
/// that none of `paths` that was not there before is left.
fn install_run_and_purge(deb: &str, paths: &[String]) {
    let before: Vec<(String, bool)> = paths.iter().map(|p| (p.clone(), Path::new(p).exists())).collect();
    fs::write(MARKER, "").unwrap();
    let name = unique("pkgtest");
    let guard = Installed { conf: PathBuf::from(format!("/etc/distrorun.d/{name}.conf")) };
    let out = sh("apt-get", &["install", "-y", "-qq", deb], Duration::from_secs(600));
    out.assert_code(0);

    let meta = fs::metadata(PKG_HELPER).unwrap();
    assert_eq!((meta.uid(), meta.mode() & 0o7777), (0, 0o4755), "the installed helper is not setuid root");
    let version = Run::root(&["--version"]).bin("/usr/bin/distrorun").output();
    version.assert_code(0);
    assert!(version.stdout_str().contains("sysconfdir: /etc\n"), "{}", version.report());
    assert!(version.stdout_str().contains(&format!("helper: {PKG_HELPER}\n")), "{}", version.report());

    fs::write(&guard.conf, ron_config(Path::new(GUEST), STANDARD_VOLUMES, "")).unwrap();
    fs::set_permissions(&guard.conf, fs::Permissions::from_mode(0o644)).unwrap();
    let os_release = fs::read_to_string(Path::new(GUEST).join("usr/lib/os-release")).unwrap();
    for backend in [Backend::Userns, Backend::Helper] {
        let out = Run::user(&["-v", &name, "cat", "/etc/os-release"])
            .bin("/usr/bin/distrorun")
            .backend(backend)
            .output();
        out.assert_code(0);
        assert_eq!(out.stdout_str(), os_release, "{}", out.report());
        assert!(
            out.stderr_str().contains(&format!("distrorun: backend {}", backend.flag())),
            "{}",
            out.report()
        );
    }

    // An admin's override survives a reinstall: the point of shipping the
    // helper setuid in the package rather than chmod-ing it in a script.
    let ovr =
        sh("dpkg-statoverride", &["--update", "--add", "root", "root", "0755", PKG_HELPER], RUN_TIMEOUT);
    ovr.assert_code(0);
    let reinstall = sh("dpkg", &["-i", deb], Duration::from_secs(300));
    let mode_after = fs::metadata(PKG_HELPER).unwrap().mode() & 0o7777;
    sh("dpkg-statoverride", &["--remove", PKG_HELPER], RUN_TIMEOUT).assert_code(0);
    reinstall.assert_code(0);
    assert_eq!(mode_after, 0o755, "dpkg-statoverride was not honoured on reinstall");

    fs::remove_file(&guard.conf).unwrap();
    let purge = sh("apt-get", &["purge", "-y", "-qq", "distrorun"], Duration::from_secs(300));
    purge.assert_code(0);
    let left: Vec<&String> = before
        .iter()
        .filter(|(p, existed)| !existed && Path::new(p).symlink_metadata().is_ok())
        .map(|(p, _)| p)
        .collect();
    assert!(left.is_empty(), "the purge left {left:?}");
    let status = Command::new("dpkg-query").args(["-W", "distrorun"]).output().unwrap();
    assert!(!status.status.success(), "dpkg still knows distrorun after the purge");
    let info: Vec<_> = fs::read_dir("/var/lib/dpkg/info")
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .filter(|f| f.starts_with("distrorun."))
        .collect();
    assert!(info.is_empty(), "dpkg files left: {info:?}");
    // The test install is untouched.
    let out = Run::root(&["--version"]).output();
    out.assert_code(0);
    assert!(out.stdout_str().contains(&format!("sysconfdir: {SYSCONFDIR}\n")), "{}", out.report());
    drop(guard);
}
