//! `--update NAME`: the same reference pulled again, the new tree swapped
//! in while a run in the old one goes on, and nothing changed when the
//! update fails.

use super::*;
use std::io::Read;

#[test]
fn an_update_swaps_in_the_new_tree_while_a_run_in_the_old_one_finishes() {
    let registry = Registry::start(Serve::Http);
    registry.push("v1", "test/up", "latest", None);
    let old = registry.digest("test/up", "latest");
    let homes = Homes::new("update");
    let name = unique("up");
    let reference = format!("{}/test/up", registry.host);
    homes.run(&["-q", "--create", &name, "--image", &reference, "--insecure-registry"]).output().assert_ok();

    // Nothing new: said, and nothing done.
    let same = homes.run(&["--update", &name, "--insecure-registry"]).output();
    same.assert_code(0);
    assert!(
        same.stderr_str()
            .contains(&format!("is up to date: {}/test/up:latest is still {old}", registry.host)),
        "{}",
        same.report()
    );

    // A run in the old tree that reads it before and after the update.
    let dir = TempDir::owned_by(USER, "update-run");
    let started = dir.join("started");
    let script = format!("cat /etc/marker; touch {0}; while [ ! -e {0}.go ]; do sleep 0.1; done; cat /etc/marker; ls /bin/busybox", started.display());
    let mut running = homes.run(&[&name, "sh", "-c", &script]).command().spawn().expect("start the run");
    wait_for_file(&started, Duration::from_secs(30), "the run in the old tree");

    registry.push("v2", "test/up", "latest", None);
    let new = registry.digest("test/up", "latest");
    assert_ne!(old, new);
    let out = homes.run(&["--update", &name, "--insecure-registry"]).output();
    out.assert_code(0);
    // Its files are not shared with the new tree the run could write into.
    assert!(
        out.stderr_str().contains("every layer is unpacked again: a run is still in the old tree"),
        "{}",
        out.report()
    );
    assert!(
        out.stderr_str().contains(&format!(
            "updated distro {name} from {}/test/up:latest: {old} -> {new}",
            registry.host
        )),
        "{}",
        out.report()
    );
    assert_eq!(homes.marker(&name), "v2");
    let info = homes.run(&["--info", &name]).output();
    assert!(info.stdout_str().contains(&format!("digest:       {new}\n")), "{}", info.report());

    fs::write(format!("{}.go", started.display()), "").expect("let the run go on");
    let status = running.wait().expect("wait for the run");
    let mut stdout = String::new();
    running.stdout.take().expect("piped").read_to_string(&mut stdout).expect("read the run's output");
    assert!(status.success(), "the run in the old tree failed: {status}, {stdout}");
    assert_eq!(stdout, "v1\nv1\n/bin/busybox\n", "the run in progress did not keep its tree");

    // The old tree goes with the next update, now that no run uses it.
    registry.push("v1", "test/up", "latest", None);
    homes.run(&["-q", "--update", &name, "--insecure-registry"]).output().assert_ok();
    let left = trees(&homes);
    assert_eq!(left.len(), 2, "one tree and the old one of the last update: {left:?}");
    assert_eq!(homes.marker(&name), "v1");
}

#[test]
fn a_failed_update_changes_nothing_and_other_sources_are_told_what_to_do() {
    let registry = Registry::start(Serve::Http);
    registry.push("v1", "test/fail", "1", None);
    let homes = Homes::new("upfail");
    let name = unique("upfail");
    let reference = format!("{}/test/fail:1", registry.host);
    homes.run(&["-q", "--create", &name, "--image", &reference, "--insecure-registry"]).output().assert_ok();
    let config = fs::read_to_string(homes.config(&name)).expect("the config");

    // The tag now names an image that cannot be unpacked.
    registry.push("odd", "test/fail", "1", None);
    let out = homes.run(&["--update", &name, "--insecure-registry"]).output();
    assert_refused(&out, &["media type"]);
    // A layer cut off in the middle of the update.
    registry.push("v2", "test/fail", "1", None);
    let proxy = Proxy::start(&registry, "cut");
    let proxied = format!("{}/test/fail:1", proxy.host);
    fs::write(homes.config(&name), config.replace(&reference, &proxied))
        .expect("point the config at the proxy");
    let out = homes.run(&["--update", &name, "--insecure-registry"]).output();
    assert_refused(&out, &["broke off"]);
    fs::write(homes.config(&name), &config).expect("restore the config");
    assert_eq!(fs::read_to_string(homes.config(&name)).expect("the config"), config);
    assert_eq!(homes.marker(&name), "v1");
    let left = trees(&homes);
    assert_eq!(left, std::slice::from_ref(&name), "a failed update left something behind");

    // Without --insecure-registry, as for --create.
    let out = homes.run(&["--update", &name]).output();
    assert_refused(&out, &["--insecure-registry"]);

    // A distro from a tarball has no image to pull.
    let tarball = format!("{}/v1.tar", Images::get().dir.str());
    let other = unique("fromtar");
    homes.run(&["-q", "--create", &other, "--tarball", &tarball]).output().assert_ok();
    let out = homes.run(&["--update", &other]).output();
    assert_refused(&out, &["was not made from a registry image", "--remove it and --create it again"]);
    let out = homes.run(&["--update", &unique("nosuch")]).output();
    assert_refused(&out, &["no config"]);
}

/// The directories in the data directory: the trees, old and new.
fn trees(homes: &Homes) -> Vec<String> {
    let mut trees: Vec<String> = fs::read_dir(homes.base.join("data/distrorun"))
        .expect("the data directory")
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with(".+layers-"))
        .collect();
    trees.sort();
    trees
}
