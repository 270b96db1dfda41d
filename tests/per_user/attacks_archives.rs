//! Hostile archives that are valid tar: sparse members that must stay
//! sparse, extension headers that declare gigabytes, compression bombs and
//! archives of countless tiny entries.

use super::*;
use std::os::unix::fs::FileExt;

const GIB: u64 = 1 << 30;

/// A 1 GiB file that holds two words: one in the middle, one at the end.
fn sparse_source(evil: &Evil) {
    evil.make(
        "big",
        "truncate -s 1G big; printf middle | dd of=big bs=1 seek=536870912 conv=notrunc status=none;\
         printf end >> big",
    );
}

#[track_caller]
fn assert_sparse_copy(homes: &Homes, name: &str) {
    let file = homes.tree(name).join("big");
    let meta = fs::symlink_metadata(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    assert_eq!(meta.len(), GIB + 3, "the size of {}", file.display());
    let allocated = meta.blocks() * 512;
    assert!(allocated < (1 << 20), "{} allocates {allocated} bytes for a file of holes", file.display());
    let f = fs::File::open(&file).expect("open");
    let mut buf = [0u8; 6];
    f.read_exact_at(&mut buf, 536_870_912).expect("read");
    assert_eq!(&buf, b"middle");
    let mut end = [0u8; 3];
    f.read_exact_at(&mut end, GIB).expect("read");
    assert_eq!(&end, b"end");
    let mut zero = [1u8; 4096];
    f.read_exact_at(&mut zero, 4096).expect("read");
    assert!(zero.iter().all(|b| *b == 0));
    let made_up: Vec<_> = fs::read_dir(homes.tree(name))
        .expect("the tree")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("GNUSparseFile"))
        .map(|e| e.path())
        .collect();
    assert!(made_up.is_empty(), "the made-up name was written: {made_up:?}");
}

/// GNU tar's sparse formats: old GNU (`S` members) and the three PAX ones.
#[test]
fn sparse_members_are_written_as_holes() {
    let homes = Homes::new("sparse");
    let evil = Evil::new();
    sparse_source(&evil);
    for (file, flags) in [
        ("gnu.tar", "--format=gnu"),
        ("pax00.tar", "--format=posix --sparse-version=0.0"),
        ("pax01.tar", "--format=posix --sparse-version=0.1"),
        ("pax10.tar", "--format=posix --sparse-version=1.0"),
    ] {
        let tarball = evil.make(file, &format!("tar --sparse {flags} --numeric-owner -cf {file} big"));
        let size = fs::metadata(&tarball).expect("tarball").len();
        assert!(size < 64 << 10, "{file} is {size} bytes: tar did not store the file as sparse");
        let name = unique("sparse");
        let out = homes.create(&name, &tarball);
        out.assert_ok();
        assert_sparse_copy(&homes, &name);
    }
}

/// A header of `kind` declaring `size` bytes, followed by `data_mib` MiB of
/// zeros, as a short Python script writes it with `tarfile`, compressed by
/// `compressor`.
fn declaring(evil: &Evil, file: &str, kind: &str, size: u64, data_mib: u64, compressor: &str) -> String {
    evil.make(
        file,
        &format!(
            r#"python3 - <<'PY' | {compressor} > {file}
import sys, tarfile
t = tarfile.TarInfo("x" * 10)
t.type = {kind}
t.size = {size}
out = sys.stdout.buffer
out.write(t.tobuf(tarfile.GNU_FORMAT))
zeros = bytes(1 << 20)
for _ in range({data_mib}):
    out.write(zeros)
PY"#
        ),
    )
}

#[test]
fn extension_headers_that_declare_gigabytes_are_refused_at_their_header() {
    let homes = Homes::new("longname");
    let evil = Evil::new();
    // 512 MiB of long name and of PAX records, squeezed by zstd into a few
    // kilobytes; only a few megabytes are there, the rest is declared.
    for (file, kind, what) in [
        ("longname.tar.zst", "tarfile.GNUTYPE_LONGNAME", "a GNU long name"),
        ("longlink.tar.zst", "tarfile.GNUTYPE_LONGLINK", "a GNU long link target"),
        ("pax.tar.zst", "tarfile.XHDTYPE", "a PAX header"),
        ("paxg.tar.zst", "tarfile.XGLTYPE", "a PAX global header"),
    ] {
        let tarball = declaring(&evil, file, kind, 512 << 20, 16, "zstd -q");
        let name = unique("ext");
        let started = Instant::now();
        let out = homes.create(&name, &tarball);
        assert_refused(&out, &[what, "bytes distrorun accepts"]);
        assert!(started.elapsed() < Duration::from_secs(20), "{file} took {:?}", started.elapsed());
        homes.assert_absent(&name);
        assert!(fs::symlink_metadata(homes.partial(&name)).is_err(), "the temporary tree was left behind");
    }
}

/// Compression bombs in the three compressions: a few hundred kilobytes
/// that unpack to far more than the limit, refused at the member that
/// passes it; and a member declaring 100 GiB, refused by the default limit.
#[test]
fn compression_bombs_are_stopped_by_the_size_limit() {
    let homes = Homes::new("bomb");
    let evil = Evil::new();
    evil.make(
        "zeros.tar",
        "mkdir z; for i in 1 2 3 4 5; do head -c 41943040 /dev/zero > z/f$i; done;\
         tar --sort=name --numeric-owner -cf zeros.tar z",
    );
    for (file, compressor) in
        [("bomb.tar.gz", "gzip -9"), ("bomb.tar.xz", "xz -T1"), ("bomb.tar.zst", "zstd -q -19")]
    {
        let tarball = evil.make(file, &format!("{compressor} -c zeros.tar > {file}"));
        let size = fs::metadata(&tarball).expect("tarball").len();
        assert!(size < 1 << 20, "{file} is {size} bytes, no bomb");
        let name = unique("bomb");
        let out = homes.run(&["-q", "--create", &name, "--tarball", &tarball, "--max-size", "100M"]).output();
        assert_refused(&out, &["unpacks to more than 100.0 MiB", "z/f3"]);
        assert!(out.stderr_str().contains("--max-size"), "no hint of the option:\n{}", out.report());
        homes.assert_absent(&name);
        assert!(fs::symlink_metadata(homes.partial(&name)).is_err(), "the temporary tree was left behind");
        // Raised, the same archive is a distro.
        let name = unique("bomb");
        homes.run(&["-q", "--create", &name, "--tarball", &tarball, "--max-size", "1G"]).output().assert_ok();
        assert_eq!(fs::metadata(homes.tree(&name).join("z/f5")).expect("z/f5").len(), 41_943_040);
    }
    let huge = declaring(&evil, "huge.tar.gz", "tarfile.REGTYPE", 100 * GIB, 4, "gzip -1");
    let name = unique("huge");
    let out = homes.create(&name, &huge);
    assert_refused(&out, &["unpacks to more than 64.0 GiB", "declares 100.0 GiB"]);
    homes.assert_absent(&name);
    // Within the size limit but not within the disk: the free space is
    // checked against what the member declares, before it is written.
    let vast = declaring(&evil, "vast.tar.gz", "tarfile.REGTYPE", 500 << 40, 4, "gzip -1");
    let out = homes.run(&["-q", "--create", &name, "--tarball", &vast, "--max-size", "1000T"]).output();
    assert_refused(&out, &["declares 500.0 TiB", "file system of the new tree has"]);
    homes.assert_absent(&name);
}

/// A million empty files, a few kilobytes of zstd: refused at the entry
/// limit, with the option that raises it named. The data directory is a
/// tmpfs of its own with inodes to spare past the limit: half a million
/// files would use up those of a /tmp that is a tmpfs (409,600 in a
/// systemd-nspawn container), and with them the room of every test
/// running beside this one. Where the disk fills first is the next test's.
#[test]
fn a_million_tiny_entries_are_stopped_by_the_entry_limit() {
    let homes = Homes::new("entries");
    let _own = OwnTmpfs::mount(homes.base.join("data"), 600_000, 512, homes.user);
    let evil = Evil::new();
    let tarball = evil.make(
        "million.tar.zst",
        r#"python3 - <<'PY' | zstd -q > million.tar.zst
import sys, tarfile
out = sys.stdout.buffer
for i in range(1000000):
    t = tarfile.TarInfo("d%d/f%d" % (i // 1000, i))
    out.write(t.tobuf(tarfile.GNU_FORMAT))
out.write(bytes(1024))
PY"#,
    );
    let name = unique("million");
    let started = Instant::now();
    let out = homes.create(&name, &tarball);
    assert_refused(&out, &["more than 500000 entries"]);
    assert!(out.stderr_str().contains("--max-entries"), "no hint of the option:\n{}", out.report());
    eprintln!("refused a million entries in {:?}", started.elapsed());
    homes.assert_absent(&name);
    assert!(fs::symlink_metadata(homes.partial(&name)).is_err(), "the temporary tree was left behind");
    // The limit is the caller's to set.
    let small = evil.make(
        "ten.tar",
        "mkdir ten; for i in 0 1 2 3 4 5 6 7 8 9; do : > ten/$i; done; tar --numeric-owner -cf ten.tar ten",
    );
    let out = homes.run(&["-q", "--create", &name, "--tarball", &small, "--max-entries", "5"]).output();
    assert_refused(&out, &["more than 5 entries"]);
    homes.run(&["-q", "--create", &name, "--tarball", &small, "--max-entries", "11"]).output().assert_ok();
}

/// A 64 MiB tmpfs the test user owns, for `TMPDIR`; unmounted on drop.
struct SmallTmp {
    dir: TempDir,
}

impl SmallTmp {
    fn mount() -> SmallTmp {
        let dir = TempDir::new("smalltmp");
        let (uid, gid) = user_ids(USER);
        sh(&format!(
            "mount -t tmpfs -o size=64m,mode=0700,uid={uid},gid={gid} distrorun-test-tmp {}",
            dir.str()
        ));
        SmallTmp { dir }
    }

    /// What `df` says is used, in KiB.
    fn used_kib(&self) -> u64 {
        let out = Command::new("df").args(["--output=used", "-k", self.dir.str()]).output().expect("run df");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.lines().last().and_then(|l| l.trim().parse().ok()).unwrap_or_else(|| panic!("df said {text:?}"))
    }
}

impl Drop for SmallTmp {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.str()).status();
    }
}

/// A `docker save` file compressed by zstd: its one layer holds a 1 GiB
/// file of zeros, all of it a few tens of kilobytes. Written as a stream,
/// the layer first (as docker and skopeo put it), hashed on the way for
/// the config's `diff_id`.
const GIB_OF_ZEROS_SAVED: &str = r#"python3 - <<'PY' | zstd -q -19 > zeros.docker.tar.zst
import hashlib, json, sys, tarfile
out = sys.stdout.buffer
GIB = 1 << 30
def member(name, size):
    t = tarfile.TarInfo(name)
    t.size, t.mode = size, 0o644
    return t.tobuf(tarfile.GNU_FORMAT)
def small(name, data):
    out.write(member(name, len(data)) + data + bytes(-len(data) % 512))
inner = member("zeros", GIB)
size = len(inner) + GIB + 1024
out.write(member("layer.tar", size))
h = hashlib.sha256(inner)
out.write(inner)
chunk = bytes(1 << 20)
for _ in range(GIB >> 20):
    h.update(chunk)
    out.write(chunk)
h.update(bytes(1024))
out.write(bytes(1024) + bytes(-size % 512))
rootfs = {"type": "layers", "diff_ids": ["sha256:" + h.hexdigest()]}
small("config.json", json.dumps({"architecture": "amd64", "os": "linux", "config": {}, "rootfs": rootfs}).encode())
small("manifest.json", json.dumps([{"Config": "config.json", "RepoTags": ["distrorun/zeros:1"], "Layers": ["layer.tar"]}]).encode())
out.write(bytes(1024))
PY"#;

/// A compressed archive is decompressed into `TMPDIR` before it is read:
/// the size limit stops it there, and so does the free space, each with a
/// message of its own rather than "No space left on device"; the
/// temporary directory is left as empty as it was.
#[test]
fn a_compressed_archive_never_fills_the_temporary_directory() {
    let homes = Homes::new("tmpfill");
    let evil = Evil::new();
    let archive = evil.make("zeros.docker.tar.zst", GIB_OF_ZEROS_SAVED);
    let size = fs::metadata(&archive).expect("the archive").len();
    assert!(size < 1 << 20, "the archive is {size} bytes, no bomb");
    let tmp = SmallTmp::mount();
    let create = |extra: &[&str]| {
        let name = unique("tmpfill");
        let mut args = vec!["-q", "--create", name.as_str(), "--oci", archive.as_str()];
        args.extend_from_slice(extra);
        let out = homes.run(&args).env("TMPDIR", tmp.dir.str()).timeout(Duration::from_secs(60)).output();
        (name, out)
    };
    for (extra, needles) in
        [(&["--max-size", "1M"][..], &["--max-size"][..]), (&[][..], &[tmp.dir.str(), "free"][..])]
    {
        let (name, out) = create(extra);
        assert_refused(&out, &[]);
        let err = out.stderr_str();
        for needle in needles {
            assert!(err.contains(needle), "the refusal does not name {needle:?}:\n{}", out.report());
        }
        assert!(!err.contains("No space left"), "the temporary directory filled up:\n{}", out.report());
        homes.assert_absent(&name);
        assert!(fs::symlink_metadata(homes.partial(&name)).is_err(), "the temporary tree was left behind");
        assert_eq!(tmp.used_kib(), 0, "the temporary directory is not empty again");
    }
}

/// A tmpfs of `inodes` inodes and `mib` MiB mounted on a directory, owned
/// by `owner`, unmounted on drop.
struct OwnTmpfs {
    at: PathBuf,
}

impl OwnTmpfs {
    fn mount(at: PathBuf, inodes: u64, mib: u64, owner: &str) -> OwnTmpfs {
        let (uid, gid) = user_ids(owner);
        let opts = format!("size={mib}m,nr_inodes={inodes},mode=0755,uid={uid},gid={gid}");
        sh(&format!("mount -t tmpfs -o {opts} distrorun-test {}", at.display()));
        OwnTmpfs { at }
    }
}

impl Drop for OwnTmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.at).status();
    }
}

/// Where the data directory's file system has fewer free inodes than the
/// entry limit, an archive past the limit is still refused for the limit,
/// not for the inodes that ran out first; one within the limit that does
/// not fit is refused for the room, with how far it got and of how much.
#[test]
fn a_file_system_with_few_inodes_does_not_hide_the_entry_limit() {
    let homes = Homes::new("inodes");
    let evil = Evil::new();
    let _small = OwnTmpfs::mount(homes.base.join("data"), 2000, 64, homes.user);
    let many = |n: u32| {
        let file = format!("many{n}.tar");
        evil.make(
            &file,
            &format!(
                r#"python3 - > {file} <<'PY'
import sys, tarfile
out = sys.stdout.buffer
for i in range({n}):
    t = tarfile.TarInfo("d%d/f%d" % (i // 500, i))
    out.write(t.tobuf(tarfile.GNU_FORMAT))
out.write(bytes(1024))
PY"#
            ),
        )
    };
    let past = many(12_000);
    let name = unique("inodes");
    let out = homes.run(&["-q", "--create", &name, "--tarball", &past, "--max-entries", "10000"]).output();
    assert_refused(&out, &["more than 10000 entries"]);
    assert!(!out.stderr_str().contains("does not fit"), "{}", out.report());
    assert!(out.stderr_str().contains("--max-entries"), "no hint of the option:\n{}", out.report());
    homes.assert_absent(&name);
    assert!(fs::symlink_metadata(homes.partial(&name)).is_err(), "the temporary tree was left behind");

    let within = many(5_000);
    let out = homes.run(&["-q", "--create", &name, "--tarball", &within, "--max-entries", "10000"]).output();
    assert_refused(
        &out,
        &["does not fit on the file system of the new tree", "ran out of inodes at entry", "of 5000"],
    );
    assert!(out.stderr_str().contains("free inodes"), "the room there was is not told:\n{}", out.report());
    homes.assert_absent(&name);
    assert!(fs::symlink_metadata(homes.partial(&name)).is_err(), "the temporary tree was left behind");
}
