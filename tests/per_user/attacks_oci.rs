//! Hostile OCI image layouts: blobs that are symlinks (to `/dev/zero`, to a
//! file only root can read), FIFOs, or longer than their descriptors say.
//! Each is refused at once, as the user and as root making a system distro
//! from a directory a user controls.

use super::*;

/// A one-layer image made by umoci in `dir`: `dir/layout`, tag `t`.
fn small_layout(dir: &Path) -> String {
    sh(&format!(
        "cd {}; mkdir l; echo hello > l/hello; tar --numeric-owner -C l -cf layer.tar ./hello;\
         umoci init --layout layout; umoci new --image layout:t; umoci raw add-layer --image layout:t layer.tar;\
         chmod -R a+rX layout",
        dir.display()
    ));
    path_str(&dir.join("layout")).to_owned()
}

/// The blob file of the image's manifest or its first layer.
fn blob(layout: &str, which: &str) -> PathBuf {
    let script = format!(
        r#"import json
idx = json.load(open("{layout}/index.json"))
m = idx["manifests"][0]["digest"]
if "{which}" == "layer":
    m = json.load(open("{layout}/blobs/sha256/" + m.split(":")[1]))["layers"][0]["digest"]
print(m.split(":")[1])"#
    );
    let out = timed(
        {
            let mut c = Command::new("python3");
            c.args(["-c", &script]);
            c
        },
        Duration::from_secs(30),
    );
    out.assert_ok();
    Path::new(layout).join("blobs/sha256").join(out.stdout_str().trim())
}

#[test]
fn oci_blobs_that_link_elsewhere_or_run_past_their_size_are_refused() {
    let homes = Homes::new("ociblob");
    let dir = TempDir::new("ociblob");
    let layout = small_layout(&dir.path);
    // The untouched image is fine.
    let name = unique("oci");
    homes.run(&["-q", "--create", &name, "--oci", &layout]).output().assert_ok();
    for (case, which, how, needle) in [
        ("manifest-zero", "manifest", "ln -sf /dev/zero", "symbolic link"),
        ("layer-zero", "layer", "ln -sf /dev/zero", "symbolic link"),
        ("layer-fifo", "layer", "rm -f BLOB; mkfifo -m 644", "not a regular file"),
        ("layer-longer", "layer", "head -c 1000000 /dev/zero >> BLOB; :", "where its descriptor says"),
    ] {
        let copy = dir.join(case);
        sh(&format!("cp -a {layout} {}", copy.display()));
        let target = blob(path_str(&copy), which);
        let target = path_str(&target);
        sh(&format!("{} {target}", how.replace("BLOB", target)));
        let name = unique("oci");
        let started = Instant::now();
        let out = homes
            .run(&["-q", "--create", &name, "--oci", path_str(&copy)])
            .timeout(Duration::from_secs(30))
            .output();
        assert_refused(&out, &[needle]);
        assert!(started.elapsed() < Duration::from_secs(10), "{case} took {:?}", started.elapsed());
        homes.assert_absent(&name);
        assert!(fs::symlink_metadata(homes.partial(&name)).is_err(), "{case}: the temporary tree was left");
    }
}

/// Root makes a system distro from an image in a directory the test user
/// owns; the user has swapped the layer for a symlink to a file only root
/// can read (whose digest they know). Root must not follow it.
#[test]
fn root_does_not_follow_symlinks_in_an_image_a_user_controls() {
    let dir = TempDir::owned_by(USER, "userimage");
    let layout = small_layout(&dir.path);
    let (uid, gid) = user_ids(USER);
    sh(&format!("chown -R {uid}:{gid} {layout}"));
    let secret = TempDir::new("rootonly").with_mode(0o700);
    let layer = blob(&layout, "layer");
    let hidden = secret.join("layer");
    sh(&format!("mv {} {}; chmod 600 {}", layer.display(), hidden.display(), hidden.display()));
    // As the user: the blob is the user's own symlink.
    let out = Run::as_user(USER, &["/usr/bin/ln", "-s", path_str(&hidden), path_str(&layer)])
        .bin("/usr/bin/env")
        .output();
    out.assert_ok();

    let name = unique("sysoci");
    let state = TempDir::new("sysoci");
    let conf = Path::new(CONF_DIR).join(format!("{name}.conf"));
    let _cleanup = Remove(vec![conf.clone()]);
    let out = Run::root(&["-q", "--create", &name, "--system", "--state-dir", state.str(), "--oci", &layout])
        .timeout(Duration::from_secs(60))
        .output();
    assert_refused(&out, &["symbolic link"]);
    assert!(!conf.exists(), "a system config was written");
    assert!(fs::symlink_metadata(state.join(&name)).is_err(), "a tree was made");
    assert!(
        fs::symlink_metadata(state.join(format!(".{name}.partial"))).is_err(),
        "a temporary tree was left"
    );
}
