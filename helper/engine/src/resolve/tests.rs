//! The walk against `openat2` on the same hostile trees: both must open the
//! same object or fail with the same errno, for every path, resolve flag
//! set and open flag set below.

use std::fmt::Write as _;
use std::fs;
use std::os::unix::fs::{symlink, MetadataExt};
use std::path::PathBuf;

use nix::fcntl::open as open_path;
use nix::mount::{mount, MsFlags};
use nix::sys::stat::Mode;
use nix::unistd::mkfifo;

use super::*;

const IN_ROOT: ResolveFlag = ResolveFlag::RESOLVE_IN_ROOT;
const BENEATH: ResolveFlag = ResolveFlag::RESOLVE_BENEATH;
const NO_SYMLINKS: ResolveFlag = ResolveFlag::RESOLVE_NO_SYMLINKS;
const NO_MAGICLINKS: ResolveFlag = ResolveFlag::RESOLVE_NO_MAGICLINKS;
const NO_XDEV: ResolveFlag = ResolveFlag::RESOLVE_NO_XDEV;

/// A scratch directory, removed at the end.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let p = std::env::temp_dir().join(format!("distrorun-resolve-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir(&p).unwrap_or_else(|e| panic!("mkdir {}: {e}", p.display()));
        Scratch(p)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// What an open came to: the object opened (device, inode, type), or the
/// errno.
fn outcome(r: Result<OwnedFd, Errno>) -> Result<(u64, u64, u32), Errno> {
    r.and_then(|fd| fstat(&fd)).map(|st| (st.st_dev, st.st_ino, st.st_mode & libc::S_IFMT))
}

fn kernel(dir: &OwnedFd, path: &str, flags: OFlag, resolve: ResolveFlag) -> Result<(u64, u64, u32), Errno> {
    let how = OpenHow::new().flags(flags | OFlag::O_CLOEXEC).resolve(resolve);
    // EAGAIN: a rename elsewhere on the machine raced a `..`; the kernel
    // asks for another try.
    let mut r = openat2(dir, path, how);
    for _ in 0..100 {
        if r.as_ref().err() != Some(&Errno::EAGAIN) {
            break;
        }
        r = openat2(dir, path, how);
    }
    assert_ne!(
        r.as_ref().err(),
        Some(&Errno::ENOSYS),
        "these tests compare the walk with openat2, which needs Linux 5.6"
    );
    outcome(r)
}

fn walked(dir: &OwnedFd, path: &str, flags: OFlag, resolve: ResolveFlag) -> Result<(u64, u64, u32), Errno> {
    outcome(walk(dir.as_fd(), Path::new(path), flags | OFlag::O_CLOEXEC, resolve))
}

fn open_dir(p: &Path) -> OwnedFd {
    open_path(p, OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
        .unwrap_or_else(|e| panic!("open {}: {e}", p.display()))
}

/// Every combination; returns the disagreements, one a line, and how many
/// combinations were compared.
fn compare(root: &OwnedFd, paths: &[&str], resolves: &[ResolveFlag], flag_sets: &[OFlag]) -> (String, usize) {
    let mut diffs = String::new();
    let mut n = 0;
    for &resolve in resolves {
        for &flags in flag_sets {
            for path in paths {
                let (k, w) = (kernel(root, path, flags, resolve), walked(root, path, flags, resolve));
                n += 1;
                if k != w {
                    let _ = writeln!(diffs, "{path:?} {resolve:?} {flags:?}: openat2 {k:?}, walk {w:?}");
                }
            }
        }
    }
    (diffs, n)
}

/// The hostile tree: escapes by `..`, absolute symlinks, loops, a chain
/// one longer than the kernel follows, a FIFO, a file used as a directory.
fn hostile_tree(root: &Path) {
    fs::create_dir_all(root.join("etc/dir")).expect("mkdir");
    fs::write(root.join("etc/passwd"), "inside\n").expect("write");
    let links = [
        ("abs_root", "/"),
        ("abs_etc", "/etc"),
        ("abs_passwd", "/etc/passwd"),
        ("up", ".."),
        ("upup", "../.."),
        ("esc", "../../../../etc"),
        ("rel", "etc/passwd"),
        ("loop1", "loop2"),
        ("loop2", "loop1"),
        ("self", "self"),
        ("dangling", "nowhere"),
        ("chain", "abs_etc/../etc/./passwd"),
        ("dirlink", "etc/dir"),
        ("dirslash", "etc/dir/"),
        ("proc_self", "/proc/self"),
        ("etc/dir/back", "../../abs_root"),
        ("etc/dir/dotdot", "../.."),
    ];
    for (name, target) in links {
        symlink(target, root.join(name)).expect("symlink");
    }
    // c0 -> c1 -> ... -> c40 -> etc/passwd: 41 links from c0, 40 from c1.
    for i in 0..40 {
        symlink(format!("c{}", i + 1), root.join(format!("c{i}"))).expect("symlink");
    }
    symlink("etc/passwd", root.join("c40")).expect("symlink");
    mkfifo(&root.join("fifo"), Mode::from_bits_truncate(0o644)).expect("mkfifo");
}

const PATHS: &[&str] = &[
    "etc/passwd",
    "/etc/passwd",
    "/",
    "//etc//passwd",
    "../etc/passwd",
    "..",
    ".",
    "",
    "etc/",
    "etc/.",
    "etc/..",
    "etc/../../etc/passwd",
    "etc/dir/../../..",
    "etc/passwd/",
    "etc/passwd/x",
    "etc/passwd/.",
    "abs_root",
    "abs_root/",
    "abs_root/etc/passwd",
    "abs_root/..",
    "abs_etc/passwd",
    "abs_passwd",
    "up",
    "up/etc/passwd",
    "upup/etc",
    "esc",
    "esc/passwd",
    "rel",
    "loop1",
    "loop1/x",
    "self",
    "dangling",
    "dangling/x",
    "chain",
    "dirlink",
    "dirlink/",
    "dirlink/..",
    "dirslash",
    "dirslash/.",
    "proc_self",
    "proc_self/fd",
    "etc/dir/back/etc/passwd",
    "etc/dir/dotdot/etc/passwd",
    "c0",
    "c1",
    "fifo",
    "nothing",
    "nothing/x",
];

const OPEN_FLAGS: &[OFlag] = &[
    OFlag::O_PATH,
    OFlag::O_PATH.union(OFlag::O_NOFOLLOW),
    OFlag::O_RDONLY.union(OFlag::O_NONBLOCK).union(OFlag::O_NOCTTY),
    OFlag::O_RDONLY.union(OFlag::O_NOFOLLOW).union(OFlag::O_NONBLOCK),
    OFlag::O_RDONLY.union(OFlag::O_DIRECTORY),
    OFlag::O_RDONLY.union(OFlag::O_DIRECTORY).union(OFlag::O_NOFOLLOW),
];

#[test]
fn the_walk_agrees_with_openat2_on_a_hostile_tree() {
    let scratch = Scratch::new("hostile");
    let root_path = scratch.0.join("root");
    fs::create_dir(&root_path).expect("mkdir");
    hostile_tree(&root_path);
    let root = open_dir(&root_path);
    let resolves = [
        IN_ROOT | NO_SYMLINKS | NO_MAGICLINKS,
        BENEATH | NO_SYMLINKS | NO_MAGICLINKS,
        BENEATH | NO_SYMLINKS | NO_XDEV,
        IN_ROOT | NO_MAGICLINKS,
        BENEATH | NO_MAGICLINKS,
        IN_ROOT | NO_MAGICLINKS | NO_XDEV,
    ];
    let (diffs, n) = compare(&root, PATHS, &resolves, OPEN_FLAGS);
    assert!(diffs.is_empty(), "the walk and openat2 disagree:\n{diffs}");
    assert_eq!(n, PATHS.len() * resolves.len() * OPEN_FLAGS.len());

    // What they agree on is the confinement, not a shared mistake.
    let inside = fstat(open_dir(&root_path.join("etc"))).expect("fstat");
    let passwd = fs::metadata(root_path.join("etc/passwd")).expect("stat");
    let r = IN_ROOT | NO_MAGICLINKS;
    let file = OFlag::O_RDONLY;
    for path in ["abs_root/etc/passwd", "esc/passwd", "etc/dir/back/etc/passwd", "chain", "c1"] {
        assert_eq!(walked(&root, path, file, r).map(|o| o.1), Ok(passwd.ino()), "{path}");
    }
    assert_eq!(walked(&root, "upup/etc", OFlag::O_PATH, r).map(|o| o.1), Ok(inside.st_ino));
    assert_eq!(walked(&root, "c0", file, r), Err(Errno::ELOOP));
    assert_eq!(walked(&root, "loop1", file, r), Err(Errno::ELOOP));
    assert_eq!(walked(&root, "esc", file, BENEATH | NO_MAGICLINKS), Err(Errno::EXDEV));
    assert_eq!(walked(&root, "../etc", file, BENEATH | NO_SYMLINKS), Err(Errno::EXDEV));
    assert_eq!(walked(&root, "rel", file, IN_ROOT | NO_SYMLINKS), Err(Errno::ELOOP));
}

#[test]
fn magic_links_are_refused() {
    let proc_self = open_dir(Path::new("/proc/self"));
    for path in ["cwd", "root", "exe", "fd/0", "ns/mnt"] {
        for r in [IN_ROOT | NO_MAGICLINKS, BENEATH | NO_MAGICLINKS] {
            let (k, w) =
                (kernel(&proc_self, path, OFlag::O_PATH, r), walked(&proc_self, path, OFlag::O_PATH, r));
            assert_eq!(w, Err(Errno::ELOOP), "{path} {r:?}");
            assert_eq!(k, w, "{path} {r:?}");
        }
    }
}

#[test]
fn open_falls_back_only_after_enosys() {
    let scratch = Scratch::new("open");
    fs::write(scratch.0.join("f"), "x").expect("write");
    let dir = open_dir(&scratch.0);
    assert!(!walking(), "openat2 is on this kernel");
    let fd = super::open(&dir, Path::new("f"), OFlag::O_RDONLY, IN_ROOT | NO_SYMLINKS).expect("open f");
    assert!(!walking(), "a working openat2 turned the walk on");
    assert_eq!(file_type(&fstat(&fd).expect("fstat")), SFlag::S_IFREG);
}

/// Set in the child that [`mount_crossings`] runs in its own user and
/// mount namespace.
const MOUNT_CHILD: &str = "DISTRORUN_RESOLVE_TEST_MOUNTS";

/// Mount crossings: a tmpfs (another device), a bind mount of the tree's
/// own directory (the same device) and a directory bind-mounted on itself,
/// made in a user and mount namespace of their own.
#[test]
fn mount_crossings() {
    if std::env::var_os(MOUNT_CHILD).is_none() {
        let exe = std::env::current_exe().expect("the test binary's path");
        let out = std::process::Command::new("unshare")
            .args(["--user", "--map-root-user", "--mount", "--propagation", "private", "--"])
            .arg(exe)
            .args(["--exact", "resolve::tests::mount_crossings", "--nocapture", "--test-threads=1"])
            .env(MOUNT_CHILD, "1")
            .output()
            .expect("run unshare (util-linux) for a mount namespace of the test's own");
        let text =
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "the mount test in its own namespaces failed:\n{text}");
        assert!(text.contains("1 passed"), "the mount test did not run in its namespaces:\n{text}");
        return;
    }
    let scratch = Scratch::new("mounts");
    let root_path = scratch.0.join("root");
    fs::create_dir(&root_path).expect("mkdir");
    hostile_tree(&root_path);
    for d in ["sub", "bind", "selfbind"] {
        fs::create_dir(root_path.join(d)).expect("mkdir");
    }
    fs::write(root_path.join("selfbind/f"), "x").expect("write");
    symlink("sub", root_path.join("sublink")).expect("symlink");
    symlink("/sub/f", root_path.join("abs_sub")).expect("symlink");
    let none = None::<&str>;
    mount(Some("tmpfs"), &root_path.join("sub"), Some("tmpfs"), MsFlags::empty(), none).expect("mount tmpfs");
    fs::write(root_path.join("sub/f"), "x").expect("write");
    fs::create_dir(root_path.join("sub/d")).expect("mkdir");
    mount(Some(&root_path.join("etc")), &root_path.join("bind"), none, MsFlags::MS_BIND, none)
        .expect("bind etc");
    let selfbind = root_path.join("selfbind");
    mount(Some(&selfbind), &selfbind, none, MsFlags::MS_BIND, none).expect("bind selfbind on itself");

    let root = open_dir(&root_path);
    let paths = [
        "sub",
        "sub/",
        "sub/f",
        "sub/d/..",
        "sublink/f",
        "abs_sub",
        "bind",
        "bind/passwd",
        "bind/..",
        "selfbind",
        "selfbind/f",
        "etc/passwd",
        "up/sub/f",
    ];
    let resolves = [
        BENEATH | NO_SYMLINKS | NO_XDEV,
        IN_ROOT | NO_SYMLINKS | NO_XDEV,
        IN_ROOT | NO_MAGICLINKS | NO_XDEV,
        IN_ROOT | NO_MAGICLINKS,
        BENEATH | NO_SYMLINKS,
    ];
    let (diffs, _) = compare(&root, &paths, &resolves, OPEN_FLAGS);
    assert!(diffs.is_empty(), "the walk and openat2 disagree:\n{diffs}");
    let dir = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW;
    for path in ["sub", "bind", "selfbind", "sub/f", "selfbind/f"] {
        assert_eq!(
            walked(&root, path, OFlag::O_PATH, BENEATH | NO_SYMLINKS | NO_XDEV),
            Err(Errno::EXDEV),
            "{path}"
        );
    }
    assert_eq!(walked(&root, "abs_sub", OFlag::O_RDONLY, IN_ROOT | NO_XDEV), Err(Errno::EXDEV));
    assert!(walked(&root, "selfbind", dir, BENEATH | NO_SYMLINKS).is_ok());
    // From inside a mount, its own files are no crossing.
    let sub = open_dir(&root_path.join("sub"));
    assert!(walked(&sub, "d", dir, BENEATH | NO_SYMLINKS | NO_XDEV).is_ok());
}
