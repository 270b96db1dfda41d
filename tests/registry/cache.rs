//! The blob cache: a second create fetches no blob, an update only what
//! changed, two creates at once fetch each blob once, `--pull never` works
//! with the registry gone, a damaged cache is noticed and repaired, a full
//! one is noted and passed by, and `--platform` takes another platform's
//! image and says where it cannot run. Blobs are counted in the registry's
//! own access log.

use super::*;

fn create(homes: &Homes, name: &str, reference: &str, extra: &[&str]) -> Output {
    let mut args = vec!["--create", name, "--image", reference, "--insecure-registry"];
    args.extend_from_slice(extra);
    homes.run(&args).output()
}

/// Unmounts a mount the test made, however the test ends; lazily where
/// something still holds it, so that no mount outlives the test.
struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let done = Command::new("umount").arg(&self.0).status().is_ok_and(|s| s.success());
        if !done {
            let _ = Command::new("umount").arg("--lazy").arg(&self.0).status();
        }
    }
}

/// One way to damage a cached blob.
type Damage = dyn Fn(&Path);

fn count(homes: &Homes) -> usize {
    fs::read_dir(homes.blobs()).map_or(0, Iterator::count)
}

fn cached_layers(homes: &Homes) -> Vec<PathBuf> {
    let mut blobs: Vec<PathBuf> =
        fs::read_dir(homes.blobs()).map(|d| d.flatten().map(|e| e.path()).collect()).unwrap_or_default();
    blobs.retain(|p| fs::metadata(p).is_ok_and(|m| m.len() > 100_000));
    blobs
}

#[test]
fn a_second_create_fetches_no_blob_and_an_update_only_the_layer_that_changed() {
    let registry = Registry::start(Serve::Http);
    registry.push("two1", "test/cached", "t", None);
    let homes = Homes::new("cache");
    let reference = format!("{}/test/cached:t", registry.host);
    let (first, second) = (unique("ca"), unique("cb"));

    let out = create(&homes, &first, &reference, &[]);
    out.assert_code(0);
    // Two layers and the config.
    assert_eq!(registry.blob_gets("test/cached"), 3, "{}", out.report());
    assert!(out.stderr_str().contains("fetched 2 layers"), "{}", out.report());

    let out = create(&homes, &second, &reference, &[]);
    out.assert_code(0);
    assert_eq!(registry.blob_gets("test/cached"), 3, "the second create fetched blobs:\n{}", out.report());
    assert!(out.stderr_str().contains("fetched 0 layers (0 B), reused 2 from the cache"), "{}", out.report());
    assert_eq!(homes.marker(&second), "two1");

    registry.push("two2", "test/cached", "t", None);
    let out = homes.run(&["--update", &first, "--insecure-registry"]).output();
    out.assert_code(0);
    // The top layer and the config, not the base layer, which the old
    // tree has.
    assert_eq!(registry.blob_gets("test/cached"), 5, "{}", out.report());
    assert!(out.stderr_str().contains("fetched 1 layer ("), "{}", out.report());
    assert!(out.stderr_str().contains("took 1 layer ("), "{}", out.report());
    assert_eq!(homes.marker(&first), "two2");

    let listing = homes.run(&["--cache"]).output();
    listing.assert_ok();
    let text = listing.stdout_str();
    assert!(
        text.contains(&format!("layer     {first}, {second}"))
            || text.contains(&format!("layer     {second}, {first}")),
        "{text}"
    );
    assert!(
        text.contains(&format!("layer     {second}\n")) && text.contains(&format!("layer     {first}\n")),
        "{text}"
    );

    // --remove leaves the cache alone; --cache-prune then removes what only
    // b used (its top layer, config and manifest), and keeps the base layer.
    let before = count(&homes);
    homes.run(&["--remove", &second, "--yes"]).output().assert_ok();
    assert_eq!(count(&homes), before);
    let pruned = homes.run(&["--cache-prune"]).output();
    pruned.assert_ok();
    assert!(pruned.stdout_str().contains("removed 3 blobs"), "{}", pruned.report());
    assert_eq!(count(&homes), before - 3);

    // With the registry gone, --pull never (and missing) create from the cache.
    drop(registry);
    let third = unique("cc");
    let out = homes.run(&["-q", "--create", &third, "--image", &reference, "--pull", "never"]).output();
    out.assert_ok();
    assert_eq!(homes.marker(&third), "two2");
    let fourth = unique("cd");
    homes.run(&["-q", "--create", &fourth, "--image", &reference, "--pull", "missing"]).output().assert_ok();
    let fifth = unique("ce");
    let out =
        homes.run(&["--create", &fifth, "--image", &format!("{reference}x"), "--pull", "never"]).output();
    assert_refused(&out, &["is not in the blob cache (--pull never)"]);
    homes.assert_absent(&fifth);

    let all = homes.run(&["--cache-prune", "--all"]).output();
    all.assert_ok();
    assert_eq!(count(&homes), 0);
}

#[test]
fn two_creates_at_once_fetch_each_blob_once() {
    let registry = Registry::start(Serve::Http);
    registry.push("two1", "test/once", "t", None);
    let homes = Homes::new("once");
    let reference = format!("{}/test/once:t", registry.host);
    let names = [unique("oa"), unique("ob")];
    let children: Vec<_> = names
        .iter()
        .map(|n| {
            homes
                .run(&["-q", "--create", n, "--image", &reference, "--insecure-registry"])
                .command()
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start a create")
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().expect("wait for a create");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    for n in &names {
        assert_eq!(homes.marker(n), "two1");
    }
    assert_eq!(registry.blob_gets("test/once"), 3, "a blob was fetched twice");
}

#[test]
fn a_corrupt_truncated_or_planted_cached_blob_is_discarded_and_fetched_again() {
    let registry = Registry::start(Serve::Http);
    registry.push("two1", "test/damaged", "t", None);
    let homes = Homes::new("damaged");
    let reference = format!("{}/test/damaged:t", registry.host);
    create(&homes, &unique("d0"), &reference, &["-q"]).assert_ok();
    let layers = cached_layers(&homes);
    let [layer] = &layers[..] else { panic!("not one large cached layer: {layers:?}") };
    let damage: [(&str, &Damage); 4] = [
        ("does not match its digest", &|p| {
            let mut bytes = fs::read(p).expect("read the blob");
            bytes[1000] ^= 0xff;
            fs::write(p, bytes).expect("write the blob");
        }),
        ("bytes where its descriptor says", &|p| {
            fs::OpenOptions::new().write(true).open(p).and_then(|f| f.set_len(1000)).expect("truncate");
        }),
        ("is a symbolic link", &|p| {
            fs::remove_file(p).expect("rm");
            std::os::unix::fs::symlink("/dev/zero", p).expect("symlink");
        }),
        ("is not a regular file", &|p| {
            fs::remove_file(p).expect("rm");
            sh(&format!("mkfifo {}", p.display()));
        }),
    ];
    for (note, how) in damage {
        how(layer);
        let name = unique("dd");
        let out = create(&homes, &name, &reference, &[]);
        out.assert_code(0);
        assert!(out.stderr_str().contains(note), "{note}:\n{}", out.report());
        assert!(out.stderr_str().contains("discarded and fetched again"), "{}", out.report());
        assert_eq!(homes.marker(&name), "two1", "{note}");
        // Fetched again, whole.
        let meta = fs::symlink_metadata(layer).expect("the blob again");
        assert!(meta.is_file() && meta.len() > 100_000, "{note}: {meta:?}");
    }
}

#[test]
fn a_full_cache_is_noted_and_the_create_goes_on() {
    let registry = Registry::start(Serve::Http);
    registry.push("two1", "test/full", "t", None);
    let homes = Homes::new("full");
    let small = TempDir::new("fullcache");
    sh(&format!("mount -t tmpfs -o size=64k,mode=0755 distrorun-test-cache {}", small.str()));
    let _unmount = Unmount(small.join(""));
    let (uid, gid) = user_ids(USER);
    std::os::unix::fs::chown(small.join(""), Some(uid), Some(gid)).expect("chown");
    let name = unique("fu");
    let out = homes
        .run(&[
            "--create",
            &name,
            "--image",
            &format!("{}/test/full:t", registry.host),
            "--insecure-registry",
        ])
        .env("XDG_CACHE_HOME", small.join(""))
        .output();
    out.assert_code(0);
    assert!(out.stderr_str().contains("cannot take"), "{}", out.report());
    assert!(out.stderr_str().contains("No space left on device"), "{}", out.report());
    assert_eq!(homes.marker(&name), "two1");
}

#[test]
fn platform_takes_another_platforms_image_and_says_where_it_cannot_run() {
    let registry = Registry::start(Serve::Http);
    registry.push("multi", "test/plat", "m", None);
    let homes = Homes::new("plat");
    let reference = format!("{}/test/plat:m", registry.host);
    let name = unique("arm");
    let out = create(&homes, &name, &reference, &["-q", "--platform", "linux/arm64"]);
    out.assert_code(0);
    // The warning comes even with -q: a distro that cannot run here.
    assert!(out.stderr_str().contains("its programs are for linux/arm64/v8"), "{}", out.report());
    assert!(out.stderr_str().contains("qemu-user"), "{}", out.report());
    let config = fs::read_to_string(homes.config(&name)).expect("the config");
    assert!(config.contains("platform: \"linux/arm64\""), "{config}");

    let absent = unique("s390");
    let out = create(&homes, &absent, &reference, &["--platform", "linux/s390x"]);
    assert_refused(&out, &["has no image for linux/s390x", "it offers linux/amd64, linux/arm64/v8"]);
    homes.assert_absent(&absent);
    let bad = homes.run(&["--create", &absent, "--image", &reference, "--platform", "arm64"]).output();
    assert_refused(&bad, &["--platform", "is not a platform"]);
}
