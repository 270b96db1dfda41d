//! Reading mount tables: the host's, and those printed from inside a run.

use std::fs;
use std::path::Path;

/// Unescapes a mountinfo field (spaces and the like appear as \040).
fn mountinfo_unescape(field: &str) -> String {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = field.get(i + 1..i + 4).and_then(|o| u8::from_str_radix(o, 8).ok());
        match octal {
            Some(byte) if b[i] == b'\\' => {
                out.push(byte);
                i += 4;
            }
            _ => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One line of /proc/PID/mountinfo.
#[derive(Debug, Clone)]
pub struct MountInfo {
    /// The path within the mounted filesystem that is mounted.
    pub root: String,
    pub mount_point: String,
    pub options: String,
    /// The optional fields, such as "shared:1" or "master:2".
    pub tags: Vec<String>,
    pub fs_type: String,
    pub line: String,
}

pub fn parse_mountinfo(text: &str) -> Vec<MountInfo> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let f: Vec<&str> = line.split(' ').collect();
            let sep = f
                .iter()
                .position(|x| *x == "-")
                .unwrap_or_else(|| panic!("malformed mountinfo line: {line:?}"));
            MountInfo {
                root: mountinfo_unescape(f[3]),
                mount_point: mountinfo_unescape(f[4]),
                options: f[5].to_owned(),
                tags: f[6..sep].iter().map(ToString::to_string).collect(),
                fs_type: f.get(sep + 1).copied().unwrap_or("").to_owned(),
                line: line.to_owned(),
            }
        })
        .collect()
}

/// True when `p` is `dir` or below it, comparing whole components.
pub fn path_is_under(p: &str, dir: &Path) -> bool {
    Path::new(p).starts_with(dir)
}

/// Lines of the test process's /proc/self/mountinfo (the host's mount
/// namespace) whose mount point is `path` or below it.
pub fn host_mounts_under(path: &Path) -> Vec<String> {
    let text = fs::read_to_string("/proc/self/mountinfo").expect("read /proc/self/mountinfo");
    parse_mountinfo(&text)
        .into_iter()
        .filter(|m| path_is_under(&m.mount_point, path))
        .map(|m| m.line)
        .collect()
}
