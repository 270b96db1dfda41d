//! A distro's origin, the image and digest `--update` pulls again, comes
//! from a registry pull only: a tarball or an OCI layout whose name
//! carries a config's comment lines cannot forge it, per user or system.

use super::*;
use std::net::TcpListener;

/// Below `dir`, a path whose last components spell the lines a config
/// names its image with (after a first line to end the sentence they are
/// written into), aimed at the test's own listener; its parents made.
fn forged_path(dir: &TempDir, port: u16) -> PathBuf {
    let path = dir.join(format!("d\n// image: 127.0.0.1:{port}/rt/evil:v1\n// digest: sha256:00"));
    let parent = path.parent().expect("a parent");
    fs::create_dir_all(parent).unwrap_or_else(|e| panic!("mkdir -p {}: {e}", parent.display()));
    path
}

/// A listener nothing may connect to, on a port of its own.
fn trap() -> (TcpListener, u16) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback listener");
    let port = listener.local_addr().expect("its address").port();
    listener.set_nonblocking(true).expect("a non-blocking listener");
    (listener, port)
}

/// Nothing names the forged image: not `--info`, not the config; and
/// `--update` refuses without connecting anywhere.
#[track_caller]
fn assert_not_forged(run: &dyn Fn(&[&str]) -> Run, name: &str, config: &Path, trap: &(TcpListener, u16)) {
    let forged = format!("127.0.0.1:{}", trap.1);
    let info = run(&["--info", name, "--json"]).output();
    info.assert_ok();
    let v: serde_json::Value = serde_json::from_slice(&info.stdout).expect("--info --json is JSON");
    assert!(!v["image"].to_string().contains(&forged), "--info names the forged image: {}", v["image"]);
    let text = fs::read_to_string(config).expect("the config");
    let lines: Vec<&str> =
        text.lines().filter(|l| l.starts_with("// image:") || l.starts_with("// digest:")).collect();
    assert!(lines.is_empty(), "the name wrote origin lines into {}: {lines:?}\n{text}", config.display());
    let out = run(&["--update", name]).timeout(Duration::from_secs(30)).output();
    assert_refused(&out, &["not made from a registry image"]);
    assert!(trap.0.accept().is_err(), "--update connected to {forged}");
}

/// A small OCI layout (one layer with /etc/marker) made in `dir` and
/// moved to `path`.
fn layout_at(dir: &TempDir, path: &Path) {
    sh(&format!(
        "cd {d}; mkdir -p r/etc; echo oci > r/etc/marker
        tar --numeric-owner --owner=0 --group=0 -C r -cf r.tar .
        umoci init --layout layout; umoci new --image layout:t; umoci raw add-layer --image layout:t r.tar
        chmod -R a+rX layout",
        d = dir.str()
    ));
    fs::rename(dir.join("layout"), path).expect("move the layout");
}

#[test]
fn a_file_name_cannot_forge_the_image_a_distro_was_made_from() {
    require_file(GUEST_TAR);
    let trap = trap();
    let homes = Homes::new("forge");
    let run = |args: &[&str]| homes.run(args);

    let files = TempDir::owned_by(USER, "forge-tar");
    let tarball = forged_path(&files, trap.1);
    fs::hard_link(GUEST_TAR, &tarball).expect("link the guest tarball under the forged name");
    let name = unique("forgetar");
    homes.run(&["-q", "--create", &name, "--tarball", path_str(&tarball)]).output().assert_ok();
    assert_not_forged(&run, &name, &homes.config(&name), &trap);
}

#[test]
fn a_directory_name_cannot_forge_the_image_an_oci_distro_was_made_from() {
    let trap = trap();
    let homes = Homes::new("forgeoci");
    let run = |args: &[&str]| homes.run(args);
    let layouts = TempDir::new("forge-oci");
    let layout = forged_path(&layouts, trap.1);
    layout_at(&layouts, &layout);
    let name = unique("forgeoci");
    homes.run(&["-q", "--create", &name, "--oci", path_str(&layout)]).output().assert_ok();
    assert_not_forged(&run, &name, &homes.config(&name), &trap);
}

#[test]
fn a_file_name_cannot_forge_the_image_of_a_system_distro() {
    require_file(GUEST_TAR);
    let trap = trap();
    let files = TempDir::new("forge-sys");
    let tarball = forged_path(&files, trap.1);
    fs::hard_link(GUEST_TAR, &tarball).expect("link the guest tarball under the forged name");
    let state = TempDir::new("forge-state");
    let name = unique("forgesys");
    let config = Path::new(CONF_DIR).join(format!("{name}.conf"));
    let _cleanup = Remove(vec![config.clone()]);
    Run::root(&[
        "-q",
        "--create",
        &name,
        "--system",
        "--state-dir",
        state.str(),
        "--tarball",
        path_str(&tarball),
    ])
    .timeout(Duration::from_secs(120))
    .output()
    .assert_ok();
    let run = |args: &[&str]| {
        let mut with_system = args.to_vec();
        if args.first() == Some(&"--update") {
            with_system.push("--system");
        }
        Run::root(&with_system)
    };
    assert_not_forged(&run, &name, &config, &trap);
    // A system distro is removed by hand: its config goes with `_cleanup`,
    // its tree with the state directory.
}
