//! OCI images: layouts, oci-archives and docker save tarballs.

use super::*;

/// An OCI image made by umoci from the guest tarball plus two layers: the
/// second adds files, the third deletes one of them and one of the guest's
/// through whiteouts, and replaces a directory opaquely. skopeo turns it
/// into an `oci-archive` and a `docker save` tarball. Kept between runs
/// next to the tarball it is made from, and remade when that changes.
struct Image {
    dir: PathBuf,
}

impl Image {
    fn get() -> &'static Image {
        static IMAGE: std::sync::OnceLock<Image> = std::sync::OnceLock::new();
        IMAGE.get_or_init(Image::build)
    }

    fn build() -> Image {
        require_file(GUEST_TAR);
        let dir = PathBuf::from("/var/lib/distrorun-test/per-user/image");
        let done = dir.join("complete");
        let fresh = fs::metadata(&done)
            .and_then(|d| Ok(d.modified()? >= fs::metadata(GUEST_TAR)?.modified()?))
            .unwrap_or(false);
        if !fresh {
            sh(&format!(
                r"rm -rf {d}; mkdir -p {d}; cd {d}
                umoci init --layout layout; umoci new --image layout:t
                umoci raw add-layer --image layout:t {GUEST_TAR}
                mkdir -p two/etc/opq/sub three/etc/opq
                echo old > two/etc/opq/old; echo old > two/etc/opq/sub/old; echo gone > two/etc/gone
                tar --numeric-owner --no-recursion -C two -cf two.tar ./etc/opq ./etc/opq/old ./etc/opq/sub ./etc/opq/sub/old ./etc/gone
                umoci raw add-layer --image layout:t two.tar
                touch three/etc/.wh.gone three/etc/.wh.issue.net three/etc/opq/.wh..wh..opq
                echo new > three/etc/opq/new
                tar --numeric-owner --no-recursion -C three -cf three.tar ./etc/.wh.gone ./etc/.wh.issue.net ./etc/opq ./etc/opq/.wh..wh..opq ./etc/opq/new
                umoci raw add-layer --image layout:t three.tar
                umoci tag --image layout:t other
                skopeo copy -q oci:layout:t oci-archive:archive.tar:t
                skopeo copy -q oci:layout:t docker-archive:docker.tar:distrorun/test:t
                chmod -R a+rX .
                touch complete",
                d = dir.display()
            ));
        }
        Image { dir }
    }

    fn path(&self, p: &str) -> String {
        path_str(&self.dir.join(p)).to_owned()
    }
}

/// What the three layers leave in /etc, seen from inside.
#[track_caller]
fn assert_layers_applied(homes: &Homes, name: &str) {
    let out = homes
        .run(&[
            name,
            "sh",
            "-c",
            "ls -A /etc/opq; ls /etc/gone /etc/issue.net 2>&1; stat -c %U /etc/shadow; true",
        ])
        .output();
    out.assert_ok();
    assert_eq!(
        out.stdout_str(),
        "new\nls: cannot access '/etc/gone': No such file or directory\n\
         ls: cannot access '/etc/issue.net': No such file or directory\nroot\n",
        "{}",
        out.report()
    );
    assert!(Path::new(GUEST).join("etc/issue.net").exists(), "the guest itself has /etc/issue.net");
}

#[test]
fn an_oci_layout_is_applied_layer_by_layer_with_whiteouts() {
    let image = Image::get();
    let homes = Homes::new("oci");
    let name = unique("oci");
    // Two tags: which one must be said.
    let out = homes.run(&["-q", "--create", &name, "--oci", &image.path("layout")]).output();
    assert_refused(&out, &["several images", "--tag"]);
    homes.assert_absent(&name);
    let out =
        homes.run(&["-q", "--create", &name, "--oci", &image.path("layout"), "--tag", "nosuch"]).output();
    assert_refused(&out, &["no image tagged \"nosuch\""]);
    homes.run(&["-q", "--create", &name, "--oci", &image.path("layout"), "--tag", "t"]).output().assert_ok();
    assert_layers_applied(&homes, &name);
}

#[test]
fn oci_archives_and_docker_save_tarballs_are_images_too() {
    let image = Image::get();
    let homes = Homes::new("ociarch");
    let archive = unique("ociarchive");
    homes.run(&["-q", "--create", &archive, "--oci", &image.path("archive.tar")]).output().assert_ok();
    assert_layers_applied(&homes, &archive);
    let docker = unique("docker");
    homes
        .run(&["-q", "--create", &docker, "--oci", &image.path("docker.tar"), "--tag", "distrorun/test:t"])
        .output()
        .assert_ok();
    assert_layers_applied(&homes, &docker);
}

#[test]
fn a_layer_that_does_not_match_its_digest_is_refused() {
    let image = Image::get();
    let homes = Homes::new("digest");
    // Beside the image, on its file system: hard links cannot cross to
    // /tmp where that is a file system of its own (a tmpfs, as on Debian 13).
    let bad = TempDir::new_in(path_str(image.dir.parent().expect("the image has a parent")), "badimage");
    // The same layout, hard-linked, with the last layer's blob swapped for
    // another valid gzip'd layer of the same size under the same name, so
    // that only its digest tells them apart: a file of random bytes, its
    // length tried until the layer comes out at that size (deflate's sizes
    // can skip a value, so with fresh bytes a few times over).
    sh(&format!(
        r#"cd {b}; cp -al {layout} layout
        for blob in layout/blobs/sha256/*; do
            if gzip -dc "$blob" 2>/dev/null | cmp -s - {three}; then
                size=$(stat -c %s "$blob"); rm "$blob"; mkdir swap
                for try in $(seq 1 50); do
                    for n in $(seq 0 $size); do
                        head -c $n /dev/urandom > swap/f
                        tar --numeric-owner -C swap -cf - ./f | gzip -n > swap.tar.gz
                        if [ $(stat -c %s swap.tar.gz) -eq $size ]; then
                            mv swap.tar.gz "$blob"; found=1; break 2
                        fi
                    done
                done
            fi
        done
        [ -n "$found" ]; chmod -R a+rX layout"#,
        b = bad.str(),
        layout = image.path("layout"),
        three = image.path("three.tar"),
    ));
    let name = unique("digest");
    let out = homes
        .run(&["-q", "--create", &name, "--oci", &format!("{}/layout", bad.str()), "--tag", "t"])
        .output();
    assert_refused(&out, &["does not match its digest"]);
    homes.assert_absent(&name);
    assert!(fs::symlink_metadata(homes.partial(&name)).is_err(), "the temporary tree was left behind");
}
