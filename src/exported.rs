//! What `--export` and `--export-bin` wrote on the host: where launchers,
//! icons and scripts go, the markers that make them distrorun's, and
//! finding them again. No file without a marker is ever overwritten or
//! removed.

use std::fs;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use distrorun_engine::Error;
use nix::fcntl::OFlag;

use crate::places;

/// The key that marks a desktop entry as distrorun's: `NAME APP`.
pub const MARK_KEY: &str = "X-Distrorun-Exported";

/// The key naming the icon file distrorun copied for the entry.
pub const ICON_KEY: &str = "X-Distrorun-Icon";

/// The line that marks a wrapper script as distrorun's.
pub const BIN_MARK: &str = "# distrorun-exported:";

/// Desktop entries, icons and scripts larger than this are not read.
pub const MAX_READ: u64 = 4 << 20;

/// Where the user's launchers, icons and scripts go.
pub struct Home {
    pub applications: PathBuf,
    pub icons: PathBuf,
    pub bin: PathBuf,
}

impl Home {
    pub fn from_env() -> Result<Home, Error> {
        let (Some(home), Some(data)) = (places::home(), places::data_home()) else {
            return Err(Error::msg("cannot export: $HOME is not set to an absolute path"));
        };
        Ok(Home {
            applications: data.join("applications"),
            icons: data.join("icons"),
            bin: home.join(".local/bin"),
        })
    }

    /// Every launcher and script distrorun wrote, as `(distro, what, file)`.
    pub fn exports(&self) -> Vec<(String, String, PathBuf)> {
        let mut out = Vec::new();
        for dir in [&self.applications, &self.bin] {
            let Ok(entries) = fs::read_dir(dir) else { continue };
            for entry in entries.flatten() {
                let path = entry.path();
                if let Some((distro, what)) = read_small(&path).ok().and_then(|t| marker(&t)) {
                    out.push((distro, what, path));
                }
            }
        }
        out.sort();
        out
    }
}

/// The distro and the exported app or tool a file of ours names, or None
/// for a file distrorun did not write.
pub fn marker(text: &[u8]) -> Option<(String, String)> {
    let text = String::from_utf8_lossy(text);
    text.lines().find_map(|l| {
        let value = l
            .strip_prefix(MARK_KEY)
            .and_then(|r| r.strip_prefix('='))
            .or_else(|| l.strip_prefix(BIN_MARK))?;
        let (distro, what) = value.trim().split_once(' ')?;
        Some((distro.to_owned(), what.to_owned()))
    })
}

/// A small regular file of the user's, opened without following a symlink
/// and without waiting: a FIFO (or a device) put where a launcher goes is
/// refused, never read.
pub fn read_small(path: &Path) -> std::io::Result<Vec<u8>> {
    let flags = OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK;
    let file = fs::OpenOptions::new().read(true).custom_flags(flags.bits()).open(path)?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::other("it is not a regular file"));
    }
    let mut bytes = Vec::new();
    file.take(MAX_READ).read_to_end(&mut bytes)?;
    Ok(bytes)
}
