//! `--update` builds the layers an image shares with the old tree from the
//! old tree, by hard links, and fetches nothing of them: the tree it makes
//! is the tree a fresh create of the new image makes, entry for entry, even
//! where the old top layer replaced, whited out or made opaque what the
//! base has. Where the old tree was changed since it was unpacked, or what
//! its top layer put aside is gone, every layer is unpacked again, and the
//! update says why.

use super::*;

/// The `keep1` and `keep2` images of the test layout: one base layer, and
/// a top layer each that replaces a file, a symlink and a directory's
/// mode, whites out a file and a directory, and makes a directory opaque.
/// Every entry has one old time, so that only what distrorun itself makes
/// has a new one.
pub const KEEP_LAYERS: &str = r"
    mkdir -p keep/base/bin keep/base/etc keep/base/opt/dir keep/base/opt/opq keep/base/srv keep/base/usr
    cp /usr/bin/busybox keep/base/bin/
    for c in sh cat ls echo; do ln -s busybox keep/base/bin/$c; done
    echo keep > keep/base/etc/keep; echo base > keep/base/etc/over; echo gone > keep/base/etc/gone
    echo a > keep/base/opt/dir/a; echo b > keep/base/opt/dir/b
    echo x > keep/base/opt/opq/x; echo y > keep/base/opt/opq/y
    echo s > keep/base/srv/setuid; chmod 4755 keep/base/srv/setuid
    echo h > keep/base/usr/h1; ln keep/base/usr/h1 keep/base/usr/h2
    ln -s ../etc/keep keep/base/srv/ln; mkfifo keep/base/srv/fifo
    mkdir -p keep/top1/etc keep/top1/opt/opq
    echo keep1 > keep/top1/etc/marker; echo top1 > keep/top1/etc/over; : > keep/top1/etc/.wh.gone
    : > keep/top1/opt/.wh.dir; : > keep/top1/opt/opq/.wh..wh..opq; echo z > keep/top1/opt/opq/z
    chmod 0750 keep/top1/etc
    mkdir -p keep/top2/etc keep/top2/opt/dir keep/top2/srv
    echo keep2 > keep/top2/etc/marker; echo top2 > keep/top2/etc/over; : > keep/top2/opt/.wh.opq
    echo notalink > keep/top2/srv/ln; echo c > keep/top2/opt/dir/c; chmod 0700 keep/top2/opt
    for t in base top1 top2; do
        tar --numeric-owner --owner=0 --group=0 --mtime=@1000000000 -C keep/$t -cf keep/$t.tar .
    done
    for v in 1 2; do
        umoci new --image layout:keep$v
        umoci raw add-layer --image layout:keep$v keep/base.tar
        umoci raw add-layer --image layout:keep$v keep/top$v.tar
    done";

/// Every entry of a tree, with its type, mode, owner, size, time, content
/// and the entry it is a hard link of, read as root. Times that no archive
/// set (the mount points distrorun makes) read as `new`.
const LISTING: &str = r#"
import hashlib, os, stat, sys
root = sys.argv[1]
paths = [root]
for d, dirs, files in os.walk(root):
    paths += [os.path.join(d, n) for n in dirs + files]
first = {}
for p in sorted(paths):
    st = os.lstat(p)
    rel = os.path.relpath(p, root)
    line = f"{rel} {stat.filemode(st.st_mode)} {st.st_uid} {st.st_gid}"
    if stat.S_ISDIR(st.st_mode):
        line += f" {st.st_mtime_ns if st.st_mtime < 1.5e9 else 'new'}"
    elif st.st_ino in first:
        line += f" = {first[st.st_ino]}"
    else:
        first[st.st_ino] = rel
        line += f" {st.st_size} {st.st_mtime_ns if st.st_mtime < 1.5e9 else 'new'}"
        if stat.S_ISREG(st.st_mode):
            line += " " + hashlib.sha256(open(p, "rb").read()).hexdigest()
        if stat.S_ISLNK(st.st_mode):
            line += " -> " + os.readlink(p)
    print(line)
"#;

fn listing(tree: &Path) -> String {
    let out = Command::new("python3").arg("-c").arg(LISTING).arg(tree).output().expect("run python3");
    assert!(out.status.success(), "listing {}: {}", tree.display(), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The update's tree is entry for entry the fresh create's.
#[track_caller]
fn assert_same_tree(updated: &Path, fresh: &Path) {
    let (a, b) = (listing(updated), listing(fresh));
    if a != b {
        let diff: Vec<String> = a
            .lines()
            .filter(|l| !b.lines().any(|m| m == *l))
            .map(|l| format!("- {l}"))
            .chain(b.lines().filter(|l| !a.lines().any(|m| m == *l)).map(|l| format!("+ {l}")))
            .collect();
        panic!(
            "{} (-) differs from a fresh create {} (+):\n{}",
            updated.display(),
            fresh.display(),
            diff.join("\n")
        );
    }
    assert!(a.contains("etc/marker "), "the listing is empty:\n{a}");
}

fn data_entries(homes: &Homes, prefix: &str) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(homes.base.join("data/distrorun"))
        .expect("the data directory")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(prefix))
        .collect();
    names.sort();
    names
}

/// The file `path` of the stash that distro `name`'s current tree's layer
/// record keeps: what its layer `layer` put aside.
fn stashed(homes: &Homes, name: &str, layer: u16, path: &str) -> PathBuf {
    use std::os::unix::fs::MetadataExt;
    let ino = fs::metadata(homes.tree(name)).expect("the tree").ino();
    homes.base.join(format!("data/distrorun/.+layers-{ino}/stash/{layer}/{path}"))
}

#[test]
fn an_update_builds_the_shared_layers_from_the_old_tree_and_makes_the_tree_a_create_makes() {
    let registry = Registry::start(Serve::Http);
    let homes = Homes::new("reuse");
    // The fresh creates have a cache of their own, so that the update's
    // fetches are its own.
    let others = Homes::new("reuse-fresh");
    let reference = format!("{}/test/reuse:t", registry.host);
    let name = unique("re");
    let fresh = |tag: &str| {
        let other = unique("fresh");
        let r = format!("{}/test/fresh-{tag}:t", registry.host);
        registry.push(tag, &format!("test/fresh-{tag}"), "t", None);
        let out = others.run(&["-q", "--create", &other, "--image", &r, "--insecure-registry"]).output();
        out.assert_ok();
        others.tree(&other)
    };
    let update = || {
        let out = homes.run(&["--update", &name, "--insecure-registry"]).output();
        out.assert_code(0);
        out
    };
    registry.push("keep1", "test/reuse", "t", None);
    homes.run(&["-q", "--create", &name, "--image", &reference, "--insecure-registry"]).output().assert_ok();
    let (fresh1, fresh2) = (fresh("keep1"), fresh("keep2"));
    let cached = cached_base(&homes);

    // keep1 -> keep2: the base from the old tree, not even from the cache.
    fs::remove_file(&cached).expect("remove the base layer from the cache");
    registry.push("keep2", "test/reuse", "t", None);
    let before = registry.blob_gets("test/reuse");
    let out = update();
    let err = out.stderr_str();
    assert!(
        err.contains("took 1 layer (") && err.contains(" entries) from the old tree"),
        "{}",
        out.report()
    );
    assert!(err.contains("fetched 1 layer ("), "{}", out.report());
    assert_eq!(
        registry.blob_gets("test/reuse") - before,
        2,
        "only the top layer and the config:\n{}",
        out.report()
    );
    assert_same_tree(&homes.tree(&name), &fresh2);
    assert_eq!(homes.marker(&name), "keep2");

    // What keep2's top layer put aside is gone: keep2 -> keep1 unpacks
    // every layer, and says why.
    fs::remove_file(stashed(&homes, &name, 2, "etc/over")).expect("remove a stashed file as root");
    registry.push("keep1", "test/reuse", "t", None);
    let out = update();
    assert!(
        out.stderr_str().contains("every layer is unpacked again: the old tree cannot be built on: \"etc/over\" put aside by layer 2 is not there"),
        "{}",
        out.report()
    );
    assert!(!out.stderr_str().contains("from the old tree;"), "{}", out.report());
    assert_same_tree(&homes.tree(&name), &fresh1);

    // keep1 -> keep2 again, built on the tree that was unpacked whole.
    registry.push("keep2", "test/reuse", "t", None);
    let out = update();
    assert!(out.stderr_str().contains("from the old tree"), "{}", out.report());
    assert_same_tree(&homes.tree(&name), &fresh2);

    // keep2 -> keep1, undoing what keep2's top layer replaced.
    registry.push("keep1", "test/reuse", "t", None);
    let out = update();
    assert!(out.stderr_str().contains("from the old tree"), "{}", out.report());
    assert_same_tree(&homes.tree(&name), &fresh1);

    // A base file changed in the distro: not taken into the new tree.
    homes.run(&["--root", &name, "sh", "-c", "echo changed >> /etc/keep"]).output().assert_ok();
    registry.push("keep2", "test/reuse", "t", None);
    let out = update();
    assert!(
        out.stderr_str()
            .contains("the old tree cannot be built on: \"etc/keep\" was changed since it was unpacked"),
        "{}",
        out.report()
    );
    assert_same_tree(&homes.tree(&name), &fresh2);

    // Each tree's record goes with it.
    homes.run(&["--remove", &name, "--yes"]).output().assert_ok();
    assert_eq!(data_entries(&homes, "."), Vec::<String>::new(), "left in the data directory");
}

/// The cached blob of the keep images' base layer: the largest.
fn cached_base(homes: &Homes) -> PathBuf {
    let mut blobs: Vec<(u64, PathBuf)> = fs::read_dir(homes.blobs())
        .expect("the blob cache")
        .flatten()
        .filter_map(|e| Some((e.metadata().ok()?.len(), e.path())))
        .collect();
    blobs.sort();
    blobs.pop().expect("a cached blob").1
}
