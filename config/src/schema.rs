//! The RON schema of `NAME.conf`, and the checks that serde cannot express.

use std::fmt;
use std::path::{Component, Path, PathBuf};

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

use crate::userdb::UserDb;

/// One distro, as its config file describes it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Distro {
    /// The distro's root directory on the host.
    pub dir: PathBuf,
    /// Host paths bound into the distro, in addition to /proc and /sys.
    #[serde(default)]
    pub mapped_volumes: Vec<Volume>,
    /// When set, only these users may use the distro (root always may).
    #[serde(default)]
    pub users: Option<Vec<String>>,
    /// When set, only members of these groups may use the distro.
    #[serde(default)]
    pub groups: Option<Vec<String>>,
    /// Let setuid programs inside the distro work (helper backend only).
    #[serde(default)]
    pub allow_setuid: bool,
    /// Which backend to use when the command line does not say.
    #[serde(default)]
    pub backend: BackendChoice,
    /// How the user namespace maps ids; `"subuid"` marks a per-user distro
    /// made by `distrorun --create`, owned through the caller's
    /// subordinate ranges.
    #[serde(default)]
    pub ids: IdMode,
    /// Where the command's `/etc/passwd` and `/etc/group` come from:
    /// `"caller"` (the default), `"distro"` or `"host"`.
    #[serde(default)]
    pub user_db: UserDb,
    /// The registry image `distrorun --create --image` made the tree from,
    /// which `--update` pulls again. Written by distrorun as data, so that
    /// no file name it copies into a comment can pose as one; no run reads
    /// it.
    #[serde(default)]
    pub image: Option<ImageOrigin>,
    /// Devices every run of the distro asks for: CDI names
    /// (`nvidia.com/gpu=all`) or `"gpu"` for every GPU the host describes.
    #[serde(default)]
    pub devices: Vec<String>,
}

/// A registry image: the reference as resolved, and the digest pulled.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ImageOrigin {
    pub reference: String,
    pub digest: String,
    /// `--platform`, where it was given: `--update` pulls the same one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
}

impl ImageOrigin {
    /// The value as a config writes it, every string escaped as RON reads
    /// it back.
    pub fn to_ron(&self) -> String {
        let platform =
            self.platform.as_deref().map(|p| format!(", platform: {}", ron_string(p))).unwrap_or_default();
        format!(
            "(reference: {}, digest: {}{platform})",
            ron_string(&self.reference),
            ron_string(&self.digest)
        )
    }
}

/// `s` as a RON string literal.
pub fn ron_string(s: &str) -> String {
    ron::to_string(s).unwrap_or_else(|_| "\"\"".to_owned())
}

/// How the userns backend maps ids for a distro.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum IdMode {
    /// Only the caller's own uid and gid, mapped to themselves.
    #[default]
    Own,
    /// Keep-id over the caller's `/etc/subuid` and `/etc/subgid` ranges:
    /// the caller's ids map to themselves, root and the distro's other ids
    /// onto the ranges, written by newuidmap and newgidmap.
    Subuid,
}

impl IdMode {
    pub fn as_str(self) -> &'static str {
        match self {
            IdMode::Own => "own",
            IdMode::Subuid => "subuid",
        }
    }
}

impl<'de> Deserialize<'de> for IdMode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Written as a string, `ids: "subuid"`, like the paths around it.
        match String::deserialize(d)?.as_str() {
            "own" => Ok(IdMode::Own),
            "subuid" => Ok(IdMode::Subuid),
            other => Err(de::Error::invalid_value(de::Unexpected::Str(other), &"\"own\" or \"subuid\"")),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendChoice {
    /// The user namespace where the kernel allows it, else the helper.
    #[default]
    Auto,
    Userns,
    Helper,
}

impl std::str::FromStr for BackendChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Self::Auto),
            "userns" => Ok(Self::Userns),
            "helper" => Ok(Self::Helper),
            other => Err(format!("unknown backend {other:?}: expected auto, userns or helper")),
        }
    }
}

/// A host path bound into the distro. Written either as a plain string (the
/// same path on both sides) or as `(src: "...", dst: "...", read_only: true)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    pub src: PathBuf,
    pub dst: PathBuf,
    pub read_only: bool,
    /// Skip the volume, instead of failing, when `src` does not exist.
    pub optional: bool,
}

impl<'de> Deserialize<'de> for Volume {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(VolumeVisitor)
    }
}

struct VolumeVisitor;

impl<'de> Visitor<'de> for VolumeVisitor {
    type Value = Volume;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a path string or (src: \"...\", dst: \"...\", read_only: bool, optional: bool)")
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Volume, E> {
        Ok(Volume { src: s.into(), dst: s.into(), read_only: false, optional: false })
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Volume, A::Error> {
        let (mut src, mut dst, mut read_only, mut optional) = (None, None, false, false);
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "src" => src = Some(map.next_value::<PathBuf>()?),
                "dst" => dst = Some(map.next_value::<PathBuf>()?),
                "read_only" => read_only = map.next_value()?,
                "optional" => optional = map.next_value()?,
                other => {
                    return Err(de::Error::unknown_field(other, &["src", "dst", "read_only", "optional"]))
                }
            }
        }
        let src = src.ok_or_else(|| de::Error::missing_field("src"))?;
        let dst = dst.unwrap_or_else(|| src.clone());
        Ok(Volume { src, dst, read_only, optional })
    }
}

/// Why a path from a config or the command line is not acceptable, or None.
/// Paths must be absolute and free of `..`, so that what a reader of the
/// config sees is the path distrorun uses.
pub fn path_problem(path: &Path) -> Option<&'static str> {
    if path.as_os_str().is_empty() {
        Some("is empty")
    } else if !path.is_absolute() {
        Some("is not an absolute path")
    } else if path.components().any(|c| c == Component::ParentDir) {
        Some("contains '..'")
    } else if path.as_os_str().as_encoded_bytes().contains(&b'\n') {
        Some("contains a newline")
    } else {
        None
    }
}

/// True when `path` is `base` or lies below it, compared by whole
/// components: `/scratch2` is not below `/scratch`.
pub fn is_within(path: &Path, base: &Path) -> bool {
    let mut path = path.components().filter(|c| *c != Component::CurDir);
    base.components().filter(|c| *c != Component::CurDir).all(|b| path.next() == Some(b))
}

/// Number of normal components, so that parents are mounted before children.
pub fn depth(path: &Path) -> usize {
    path.components().filter(|c| matches!(c, Component::Normal(_))).count()
}

impl Distro {
    /// Parses RON text. `users: ["a"]` is accepted as written, without the
    /// `Some(...)` that plain RON would demand for an optional key.
    pub fn from_ron(text: &str) -> Result<Distro, ron::error::SpannedError> {
        ron::Options::default()
            .with_default_extension(ron::extensions::Extensions::IMPLICIT_SOME)
            .from_str(text)
    }

    /// The checks serde cannot express. Returns the first problem found.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(why) = path_problem(&self.dir) {
            return Err(format!("dir {:?} {why}", self.dir));
        }
        if depth(&self.dir) == 0 {
            return Err("dir must not be /".into());
        }
        for d in &self.devices {
            if d != crate::gpu::GPU_ALL {
                crate::cdi::split_name(d).map_err(|e| format!("devices: {e}"))?;
            }
        }
        // Path's equality and hash are by components, so `/run/` is `/run`.
        let mut seen = std::collections::HashSet::with_capacity(self.mapped_volumes.len());
        for v in &self.mapped_volumes {
            for (what, p) in [("src", &v.src), ("dst", &v.dst)] {
                if let Some(why) = path_problem(p) {
                    return Err(format!("mapped volume {what} {p:?} {why}"));
                }
            }
            if depth(&v.dst) == 0 {
                return Err(format!("mapped volume {:?} would cover the distro's root", v.dst));
            }
            for kernel in ["/proc", "/sys"] {
                if is_within(&v.dst, Path::new(kernel)) {
                    return Err(format!(
                        "mapped volume {:?} lies in {kernel}, which distrorun always mounts itself",
                        v.dst
                    ));
                }
            }
            if !seen.insert(v.dst.as_path()) {
                return Err(format!("mapped volume {:?} is listed twice", v.dst));
            }
        }
        for (what, list) in [("users", &self.users), ("groups", &self.groups)] {
            if let Some(names) = list {
                if let Some(bad) = names.iter().find(|n| n.is_empty() || n.contains(['\0', '\n', ':'])) {
                    return Err(format!("{what} holds an invalid name {bad:?}"));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Distro, String> {
        let d = Distro::from_ron(text).map_err(|e| e.to_string())?;
        d.validate()?;
        Ok(d)
    }

    #[test]
    fn minimal_config_parses_with_defaults() {
        let d = parse(r#"(dir: "/srv/distros/rocky9")"#).unwrap();
        assert_eq!(d.dir, Path::new("/srv/distros/rocky9"));
        assert!(d.mapped_volumes.is_empty());
        assert_eq!(d.backend, BackendChoice::Auto);
        assert!(!d.allow_setuid);
        assert_eq!(d.users, None);
        assert_eq!(d.user_db, UserDb::Caller);
    }

    #[test]
    fn the_desktop_example_parses_and_lists_what_desktops_need() {
        let d = parse(include_str!("../examples/desktop.conf")).unwrap();
        let dsts: Vec<&str> = d.mapped_volumes.iter().map(|v| v.dst.to_str().unwrap()).collect();
        assert_eq!(
            dsts,
            [
                "/dev",
                "/home",
                "/tmp",
                "/run",
                "/etc/resolv.conf",
                "/etc/localtime",
                "/etc/hosts",
                "/etc/machine-id",
                "/media",
                "/mnt"
            ]
        );
        let optional: Vec<bool> = d.mapped_volumes.iter().map(|v| v.optional).collect();
        assert_eq!(optional, [false, false, false, false, false, false, false, false, true, true]);
        assert_eq!(d.user_db, UserDb::Caller);
    }

    #[test]
    fn user_db_takes_three_sources() {
        for (text, want) in [("distro", UserDb::Distro), ("caller", UserDb::Caller), ("host", UserDb::Host)] {
            assert_eq!(parse(&format!(r#"(dir: "/srv/x", user_db: "{text}")"#)).unwrap().user_db, want);
        }
        assert!(parse(r#"(dir: "/srv/x", user_db: "nss")"#).unwrap_err().contains("\"caller\""));
    }

    #[test]
    fn volumes_are_plain_paths_or_structs() {
        let d = parse(
            r#"(dir: "/srv/x", mapped_volumes: ["/dev", (src: "/srv/data", dst: "/data", read_only: true), (src: "/media", optional: true)], backend: helper)"#,
        )
        .unwrap();
        assert_eq!(
            d.mapped_volumes[0],
            Volume { src: "/dev".into(), dst: "/dev".into(), read_only: false, optional: false }
        );
        assert_eq!(
            d.mapped_volumes[1],
            Volume { src: "/srv/data".into(), dst: "/data".into(), read_only: true, optional: false }
        );
        assert_eq!(d.mapped_volumes[2].dst, Path::new("/media"));
        assert!(d.mapped_volumes[2].optional);
        assert_eq!(d.backend, BackendChoice::Helper);
    }

    #[test]
    fn optional_lists_need_no_some() {
        let d = parse(r#"(dir: "/srv/x", users: ["alice"], groups: [])"#).unwrap();
        assert_eq!(d.users, Some(vec!["alice".to_owned()]));
        assert_eq!(d.groups, Some(vec![]));
    }

    #[test]
    fn ids_is_own_or_subuid() {
        assert_eq!(parse(r#"(dir: "/srv/x")"#).unwrap().ids, IdMode::Own);
        assert_eq!(parse(r#"(dir: "/srv/x", ids: "subuid")"#).unwrap().ids, IdMode::Subuid);
        assert!(parse(r#"(dir: "/srv/x", ids: "other")"#).unwrap_err().contains("subuid"));
    }

    #[test]
    fn unknown_keys_are_refused() {
        assert!(parse(r#"(dir: "/srv/x", mapped_volume: [])"#).unwrap_err().contains("mapped_volume"));
        assert!(parse(r#"(dir: "/srv/x", mapped_volumes: [(src: "/a", dest: "/b")])"#)
            .unwrap_err()
            .contains("dest"));
    }

    #[test]
    fn relative_dotdot_empty_and_root_paths_are_refused() {
        assert!(parse(r#"(dir: "")"#).unwrap_err().contains("empty"));
        assert!(parse(r#"(dir: "srv/x")"#).unwrap_err().contains("absolute"));
        assert!(parse(r#"(dir: "/srv/../etc")"#).unwrap_err().contains(".."));
        assert!(parse(r#"(dir: "/")"#).unwrap_err().contains("must not be /"));
        assert!(parse(r#"(dir: "/srv/x", mapped_volumes: ["home"])"#).unwrap_err().contains("absolute"));
        assert!(parse(r#"(dir: "/srv/x", mapped_volumes: [(src: "/a", dst: "/")])"#)
            .unwrap_err()
            .contains("root"));
        assert!(parse(r#"(dir: "/srv/x", mapped_volumes: ["/proc/sys"])"#).unwrap_err().contains("/proc"));
        assert!(parse(r#"(dir: "/srv/x", mapped_volumes: ["/run", "/run/"])"#)
            .unwrap_err()
            .contains("twice"));
    }

    #[test]
    fn paths_compare_by_whole_components() {
        assert!(is_within(Path::new("/scratch/a"), Path::new("/scratch")));
        assert!(is_within(Path::new("/scratch"), Path::new("/scratch/")));
        assert!(!is_within(Path::new("/scratch2"), Path::new("/scratch")));
        assert!(!is_within(Path::new("/scratch2/a"), Path::new("/scratch")));
        assert!(is_within(Path::new("/anything"), Path::new("/")));
    }
}
