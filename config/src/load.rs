//! Finding, reading and parsing `NAME.conf`.
//!
//! System configs live in `SYSCONFDIR/distrorun.d/`. Per-user configs live in
//! `${XDG_CONFIG_HOME:-$HOME/.config}/distrorun.d/` and are read only by the
//! unprivileged front end; the setuid helper calls [`load_trusted`], which
//! never looks anywhere else.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;

use crate::{errno_of, libconfig, name, paths, trust, Distro, Error};

/// Non-blocking, so that a FIFO named like a config cannot hang the open.
const OPEN_FLAGS: i32 = nix::fcntl::OFlag::O_NONBLOCK.bits() | nix::fcntl::OFlag::O_NOCTTY.bits();

/// Configs larger than this are refused: a distro config is a few lines.
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// Where a config came from. Only system configs may be used by the helper.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Origin {
    System,
    User,
}

/// A config that was found and parsed.
#[derive(Debug, Clone)]
pub struct Found {
    pub name: String,
    pub path: PathBuf,
    pub origin: Origin,
    pub distro: Distro,
}

/// The per-user config directory, from the caller's `XDG_CONFIG_HOME` and
/// `HOME`. Relative values are ignored, as the XDG spec requires.
pub fn user_config_dir(xdg_config_home: Option<&Path>, home: Option<&Path>) -> Option<PathBuf> {
    let base = match xdg_config_home.filter(|p| p.is_absolute()) {
        Some(dir) => dir.to_path_buf(),
        None => home.filter(|p| p.is_absolute())?.join(".config"),
    };
    Some(base.join("distrorun.d"))
}

/// Finds NAME in the system directory and, if given, the per-user one.
pub fn find(name: &str, system_dir: &Path, user_dir: Option<&Path>) -> Result<Found, Error> {
    name::validate(name)?;
    let file = format!("{name}.conf");
    let system = system_dir.join(&file);
    let user = user_dir.map(|d| d.join(&file));
    let system_text = read_if_present(&system)?;
    // A per-user directory the caller cannot read (a HOME left over from
    // another user, as `su` without `-` keeps it) holds no config of theirs.
    let user_text = match &user {
        Some(path) => match read_if_present(path) {
            Err(Error::Io { errno: Errno::EACCES, .. }) => None,
            other => other?,
        },
        None => None,
    };
    let (path, text, origin) = match (system_text, user_text, user) {
        (Some(_), Some(_), Some(user)) => return Err(Error::Ambiguous { name: name.into(), system, user }),
        (Some(text), _, _) => (system, text, Origin::System),
        (None, Some(text), Some(user)) => (user, text, Origin::User),
        (None, _, user) => {
            let mut searched = vec![system_dir.to_path_buf()];
            searched.extend(user.and_then(|u| u.parent().map(Path::to_path_buf)));
            return Err(Error::NotFound { name: name.into(), searched });
        }
    };
    let distro = parse(&path, &text)?;
    Ok(Found { name: name.into(), path, origin, distro })
}

/// The distros configured in the system and per-user directories, sorted by
/// name. Files whose names are outside the grammar are not distros.
pub fn list(system_dir: &Path, user_dir: Option<&Path>) -> Vec<(String, Origin)> {
    let mut found = Vec::new();
    for (dir, origin) in [(Some(system_dir), Origin::System), (user_dir, Origin::User)] {
        let Some(entries) = dir.and_then(|d| std::fs::read_dir(d).ok()) else {
            continue;
        };
        for entry in entries.flatten() {
            let file = entry.file_name();
            let Some(name) = file.to_str().and_then(|f| f.strip_suffix(".conf")) else {
                continue;
            };
            if name::validate(name).is_ok() {
                found.push((name.to_owned(), origin));
            }
        }
    }
    found.sort();
    found
}

/// Loads NAME from the compiled-in system directory only, after checking
/// that the file and every directory above it are owned by root and not
/// writable by group or others. This is the helper's only way to a config.
pub fn load_trusted(name: &str) -> Result<Found, Error> {
    name::validate(name)?;
    let path = paths::system_config_dir().join(format!("{name}.conf"));
    let file = match trust::open_trusted_file(&path) {
        Err(Error::Io { errno: Errno::ENOENT, .. }) => {
            return Err(Error::NotFound { name: name.into(), searched: vec![paths::system_config_dir()] })
        }
        other => other?,
    };
    let text = read_capped(File::from(file), &path)?;
    let distro = parse(&path, &text)?;
    Ok(Found { name: name.into(), path, origin: Origin::System, distro })
}

/// Parses and validates config text; `path` only names the file in errors.
pub fn parse(path: &Path, text: &str) -> Result<Distro, Error> {
    let distro = match Distro::from_ron(text) {
        Ok(d) => d,
        Err(_) if libconfig::looks_like_libconfig(text) => {
            return Err(Error::OldFormat { path: path.into(), ron: libconfig::to_ron(text) })
        }
        Err(e) => {
            return Err(Error::Syntax {
                path: path.into(),
                line: e.span.start.line,
                col: e.span.start.col,
                msg: e.code.to_string(),
            })
        }
    };
    distro.validate().map_err(|msg| Error::Invalid { path: path.into(), msg })?;
    Ok(distro)
}

fn read_if_present(path: &Path) -> Result<Option<String>, Error> {
    match OpenOptions::new().read(true).custom_flags(OPEN_FLAGS).open(path) {
        Ok(file) => read_capped(file, path).map(Some),
        Err(e) => match errno_of(&e) {
            Errno::ENOENT | Errno::ENOTDIR => Ok(None),
            errno => Err(Error::io("open", path, errno)),
        },
    }
}

/// Reads a regular file of at most [`MAX_CONFIG_BYTES`].
fn read_capped(file: File, path: &Path) -> Result<String, Error> {
    let meta = file.metadata().map_err(|e| Error::io("stat", path, errno_of(&e)))?;
    if !meta.file_type().is_file() {
        return Err(Error::Invalid { path: path.into(), msg: "is not a regular file".into() });
    }
    let bytes = read_upto(file, meta.len(), MAX_CONFIG_BYTES)
        .map_err(|e| Error::io("read", path, errno_of(&e)))?
        .ok_or_else(|| Error::Invalid { path: path.into(), msg: "is larger than 1 MiB".into() })?;
    String::from_utf8(bytes)
        .map_err(|_| Error::Invalid { path: path.into(), msg: "is not valid UTF-8".into() })
}

/// The whole of `file`, which fstat gave `size` bytes, or None when it
/// holds more than `max`. Sized from `size`, so that a file that does not
/// change as it is read comes in one `read`: every small file distrorun
/// reads on its way to a launch (configs, identity files, nsswitch.conf)
/// goes through here.
pub fn read_upto(file: File, size: u64, max: u64) -> std::io::Result<Option<Vec<u8>>> {
    let mut bytes = Vec::with_capacity(usize::try_from(size.min(max)).unwrap_or(0) + 1);
    file.take(max + 1).read_to_end(&mut bytes)?;
    Ok((bytes.len() as u64 <= max).then_some(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    /// A scratch directory with `sys` and `user` below it, removed when
    /// the test ends.
    struct TempDir(PathBuf);

    impl std::ops::Deref for TempDir {
        type Target = Path;
        fn deref(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn tempdir(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("distrorun-load-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("sys")).unwrap();
        fs::create_dir_all(dir.join("user")).unwrap();
        TempDir(dir)
    }

    #[test]
    fn read_upto_reads_the_whole_file_up_to_its_cap_whatever_size_it_is_told() {
        let dir = tempdir("upto");
        let path = dir.join("f");
        fs::write(&path, b"12345").unwrap();
        let read = |size, max| read_upto(File::open(&path).unwrap(), size, max).unwrap();
        assert_eq!(read(5, 5), Some(b"12345".to_vec()));
        assert_eq!(read(0, 5), Some(b"12345".to_vec()), "a file that grew is still read whole");
        assert_eq!(read(99, 5), Some(b"12345".to_vec()), "one that shrank too");
        assert_eq!(read(5, 4), None, "one over the cap");
    }

    #[test]
    fn missing_config_lists_the_directories_searched() {
        let d = tempdir("missing");
        let err = find("nope", &d.join("sys"), Some(&d.join("user"))).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("no config for distro nope"), "{msg}");
        assert!(msg.contains(&d.join("sys").display().to_string()), "{msg}");
        assert!(msg.contains(&d.join("user").display().to_string()), "{msg}");
    }

    #[test]
    fn same_name_in_both_places_names_both_files() {
        let d = tempdir("both");
        fs::write(d.join("sys/x.conf"), "(dir: \"/srv/x\")").unwrap();
        fs::write(d.join("user/x.conf"), "(dir: \"/srv/y\")").unwrap();
        let msg = find("x", &d.join("sys"), Some(&d.join("user"))).unwrap_err().to_string();
        assert!(msg.contains("sys/x.conf") && msg.contains("user/x.conf"), "{msg}");
    }

    #[test]
    fn list_shows_both_directories_and_skips_what_is_not_a_distro() {
        let d = tempdir("list");
        for f in ["sys/b.conf", "sys/.hidden.conf", "sys/notes.txt", "user/a.conf"] {
            fs::write(d.join(f), "").unwrap();
        }
        let got = list(&d.join("sys"), Some(&d.join("user")));
        assert_eq!(got, [("a".to_owned(), Origin::User), ("b".to_owned(), Origin::System)]);
    }

    #[test]
    fn user_config_is_found_and_marked_as_such() {
        let d = tempdir("user");
        fs::write(d.join("user/x.conf"), "(dir: \"/srv/y\")").unwrap();
        let found = find("x", &d.join("sys"), Some(&d.join("user"))).unwrap();
        assert_eq!(found.origin, Origin::User);
    }

    #[test]
    fn a_fifo_named_like_a_config_is_refused_without_blocking() {
        let d = tempdir("fifo");
        nix::unistd::mkfifo(&d.join("sys/x.conf"), nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
        let msg = find("x", &d.join("sys"), None).unwrap_err().to_string();
        assert!(msg.contains("not a regular file"), "{msg}");
    }

    #[test]
    fn syntax_errors_carry_file_line_and_column() {
        let err = parse(
            Path::new("/etc/x.conf"),
            "(\n  dir: \"/srv/x\",\n  mapped_volumes: [\"/dev\" \"/home\"],\n)",
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("/etc/x.conf:3:"), "{msg}");
    }

    #[test]
    fn old_format_error_shows_the_ron_equivalent() {
        let err =
            parse(Path::new("/etc/x.conf"), "dir: \"/srv/x\"\nmapped_volumes: [\"/dev\"]\n").unwrap_err();
        assert!(err.to_string().contains("old libconfig format"));
        let hint = err.hint().unwrap();
        assert!(hint.contains("dir: \"/srv/x\""), "{hint}");
        let ron_text = hint.split_once('\n').unwrap().1;
        assert!(parse(Path::new("x"), ron_text).is_ok(), "{ron_text}");
    }

    #[test]
    fn xdg_config_home_wins_over_home_and_relative_values_are_ignored() {
        let got = user_config_dir(Some(Path::new("/x/cfg")), Some(Path::new("/home/u")));
        assert_eq!(got.unwrap(), Path::new("/x/cfg/distrorun.d"));
        let got = user_config_dir(Some(Path::new("rel")), Some(Path::new("/home/u")));
        assert_eq!(got.unwrap(), Path::new("/home/u/.config/distrorun.d"));
        assert_eq!(user_config_dir(None, None), None);
    }
}
