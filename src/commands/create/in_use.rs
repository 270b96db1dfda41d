//! Whether an old tree an update moved aside is still used by a process
//! the caller can see. A run has the tree as its root, but a process can
//! also reach it without that: from another mount namespace it was bound
//! into (a process that pivoted or chrooted elsewhere), through a file it
//! holds open, a library it mapped, or its working directory. Each is
//! looked for; a tree any of them touches is kept for a later update. So
//! is every tree when the processes cannot be looked at, or the tree's
//! place in its file system cannot be told: keeping a tree costs disk
//! space, deleting one in use breaks a program.

use std::collections::HashSet;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// A tree, as the checks see it.
pub struct Tree {
    dev: u64,
    ino: u64,
    /// Its path on the host.
    path: PathBuf,
    /// Its path inside its file system, as mountinfo's `root` field shows
    /// the directories mounted from there; `None` where it cannot be told.
    in_fs: Option<Vec<u8>>,
}

impl Tree {
    pub fn new(path: &Path, meta: &std::fs::Metadata) -> Tree {
        let in_fs = std::fs::read("/proc/self/mountinfo").ok().and_then(|t| path_in_fs(&t, path, meta.dev()));
        Tree { dev: meta.dev(), ino: meta.ino(), path: path.to_owned(), in_fs }
    }
}

/// What the caller's processes use: their roots, the mounts of their
/// namespaces, and the paths of their open files, maps and directories.
pub struct Usage {
    roots: HashSet<(u64, u64)>,
    /// (device, root field) of every mount in every namespace seen.
    mounts: HashSet<(u64, Vec<u8>)>,
    paths: Vec<Vec<u8>>,
    /// Some process could not be looked at in full.
    blind: bool,
}

impl Usage {
    pub fn scan() -> Usage {
        let mut usage =
            Usage { roots: HashSet::new(), mounts: HashSet::new(), paths: Vec::new(), blind: false };
        let Ok(procs) = std::fs::read_dir("/proc") else {
            usage.blind = true;
            return usage;
        };
        let mut namespaces = HashSet::new();
        for p in procs.flatten() {
            if !p.file_name().as_bytes().iter().all(u8::is_ascii_digit) {
                continue;
            }
            // Another user's process, or one already gone: it cannot use
            // the caller's private data directory.
            let Ok(root) = std::fs::metadata(p.path().join("root")) else { continue };
            usage.roots.insert((root.dev(), root.ino()));
            let ns = std::fs::metadata(p.path().join("ns/mnt")).map_or(0, |m| m.ino());
            if namespaces.insert(ns) {
                usage.read_mounts(&p.path());
            }
            usage.read_paths(&p.path());
        }
        usage
    }

    fn read_mounts(&mut self, proc: &Path) {
        let Ok(text) = std::fs::read(proc.join("mountinfo")) else {
            self.blind = true;
            return;
        };
        for line in text.split(|b| *b == b'\n') {
            if let Some((dev, root, _)) = mount_line(line) {
                self.mounts.insert((dev, root));
            }
        }
    }

    fn read_paths(&mut self, proc: &Path) {
        for link in ["cwd", "exe"] {
            if let Ok(target) = std::fs::read_link(proc.join(link)) {
                self.paths.push(target.as_os_str().as_bytes().to_vec());
            }
        }
        if let Ok(fds) = std::fs::read_dir(proc.join("fd")) {
            for fd in fds.flatten() {
                if let Ok(target) = std::fs::read_link(fd.path()) {
                    self.paths.push(target.as_os_str().as_bytes().to_vec());
                }
            }
        }
        if let Ok(maps) = std::fs::read(proc.join("maps")) {
            for line in maps.split(|b| *b == b'\n') {
                // The path is the sixth field, after five that hold no spaces.
                if let Some(at) = line.iter().position(|b| *b == b'/') {
                    self.paths.push(line[at..].to_vec());
                }
            }
        }
    }

    /// Whether anything seen uses the tree.
    pub fn uses(&self, tree: &Tree) -> bool {
        let Some(in_fs) = &tree.in_fs else { return true };
        self.blind
            || self.roots.contains(&(tree.dev, tree.ino))
            || self.mounts.iter().any(|(dev, root)| *dev == tree.dev && beneath(root, in_fs))
            || self.paths.iter().any(|p| beneath(p, tree.path.as_os_str().as_bytes()))
    }
}

/// Whether `path` is `dir` or inside it, by whole components.
fn beneath(path: &[u8], dir: &[u8]) -> bool {
    path.strip_prefix(dir).is_some_and(|rest| rest.is_empty() || rest.starts_with(b"/"))
}

/// A mountinfo line's device (as `st_dev` encodes it), its root inside its
/// file system, and its mount point, unescaped.
fn mount_line(line: &[u8]) -> Option<(u64, Vec<u8>, Vec<u8>)> {
    let mut fields = line.split(|b| *b == b' ');
    let (_id, _parent, dev, root, point) =
        (fields.next()?, fields.next()?, fields.next()?, fields.next()?, fields.next()?);
    let dev = std::str::from_utf8(dev).ok()?;
    let (major, minor) = dev.split_once(':')?;
    let dev = nix::sys::stat::makedev(major.parse().ok()?, minor.parse().ok()?);
    Some((dev, unescape(root), unescape(point)))
}

/// mountinfo writes space, tab, newline and backslash as `\ooo`.
fn unescape(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        let octal = field
            .get(i + 1..i + 4)
            .filter(|d| field[i] == b'\\' && d.iter().all(|b| (b'0'..=b'7').contains(b)));
        if let Some(d) = octal {
            out.push(d.iter().fold(0u8, |n, b| n.wrapping_mul(8).wrapping_add(b - b'0')));
            i += 4;
        } else {
            out.push(field[i]);
            i += 1;
        }
    }
    out
}

/// `path`'s place inside its file system: the mount of device `dev` whose
/// mount point is the longest prefix of `path`, its root joined with the
/// rest of `path`.
fn path_in_fs(mountinfo: &[u8], path: &Path, dev: u64) -> Option<Vec<u8>> {
    let path = path.as_os_str().as_bytes();
    let (_, root, point) = mountinfo
        .split(|b| *b == b'\n')
        .filter_map(mount_line)
        .filter(|(d, _, point)| *d == dev && (point == b"/" || beneath(path, point)))
        .max_by_key(|(_, _, point)| point.len())?;
    let rest = if point == b"/" { path } else { &path[point.len()..] };
    let mut joined = if root == b"/" { Vec::new() } else { root };
    joined.extend_from_slice(rest);
    Some(if joined.is_empty() { b"/".to_vec() } else { joined })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &[u8] = b"22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw\n\
        30 22 254:0 /srv/homes /home rw shared:2 - ext4 /dev/vda rw\n\
        41 22 0:5 / /dev rw - devtmpfs udev rw\n\
        50 22 254:0 /srv/homes/u/a\\040b /mnt/x rw - ext4 /dev/vda rw\n";

    #[test]
    fn a_path_is_placed_in_its_file_system_through_the_longest_mount() {
        let dev = nix::sys::stat::makedev(254, 0);
        let at = |p: &str| path_in_fs(MOUNTINFO, Path::new(p), dev).map(|v| String::from_utf8(v).unwrap());
        assert_eq!(
            at("/home/u/.local/share/distrorun/.d+old-1").as_deref(),
            Some("/srv/homes/u/.local/share/distrorun/.d+old-1")
        );
        assert_eq!(at("/var/lib/x").as_deref(), Some("/var/lib/x"));
        assert_eq!(at("/mnt/x/t").as_deref(), Some("/srv/homes/u/a b/t"));
        assert_eq!(path_in_fs(MOUNTINFO, Path::new("/dev/x"), 99), None);
    }

    #[test]
    fn a_tree_bound_elsewhere_is_in_use() {
        let dev = nix::sys::stat::makedev(254, 0);
        let tree = Tree {
            dev,
            ino: 7,
            path: "/home/u/d/.x+old-1".into(),
            in_fs: Some(b"/srv/homes/u/d/.x+old-1".to_vec()),
        };
        let mut usage =
            Usage { roots: HashSet::new(), mounts: HashSet::new(), paths: Vec::new(), blind: false };
        assert!(!usage.uses(&tree));
        usage.mounts.insert((dev, b"/srv/homes/u/d/.x+old-10".to_vec()));
        assert!(!usage.uses(&tree), "a sibling with a longer name is another tree");
        usage.mounts.insert((dev, b"/srv/homes/u/d/.x+old-1/usr".to_vec()));
        assert!(usage.uses(&tree));
        let open = Usage {
            paths: vec![b"/home/u/d/.x+old-1/usr/lib/libc.so.6".to_vec()],
            ..Usage { roots: HashSet::new(), mounts: HashSet::new(), paths: Vec::new(), blind: false }
        };
        assert!(open.uses(&tree));
        let unknown = Tree { in_fs: None, ..tree };
        assert!(Usage { roots: HashSet::new(), mounts: HashSet::new(), paths: Vec::new(), blind: false }
            .uses(&unknown));
    }

    #[test]
    fn mountinfo_escapes_are_undone() {
        assert_eq!(unescape(b"/a\\040b\\134c"), b"/a b\\c");
        assert_eq!(unescape(b"/x\\04"), b"/x\\04");
    }
}
