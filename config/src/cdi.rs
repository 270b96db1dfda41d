//! CDI specs (the Container Device Interface, specs 0.3 to 1.1): found in
//! the spec directories, read, and the devices a run asks for resolved to
//! their container edits.
//!
//! A spec is host configuration. Under the setuid helper only specs that
//! pass the same trust walk as the configs count (root-owned, in root-owned
//! directories, writable by neither group nor others, symlinks only through
//! such directories); any other spec is left out with a note, exactly as
//! if it were absent.

use std::fs::File;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use nix::fcntl::{open, OFlag};
use nix::sys::stat::Mode;

use crate::load::read_upto;
use crate::specdata::{self, Value};
use crate::{trust, Error};

/// The spec directories, in order; a later one wins for the same device.
pub const SPEC_DIRS: &str = env!("DISTRORUN_CDI_DIRS");

/// The largest spec read.
const MAX_SPEC: u64 = 4 << 20;
/// The most specs read from one directory.
const MAX_SPECS: usize = 256;

pub fn spec_dirs() -> Vec<PathBuf> {
    SPEC_DIRS.split(':').filter(|d| !d.is_empty()).map(PathBuf::from).collect()
}

/// Whose files count: the setuid helper trusts only root's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trust {
    RootOnly,
    Caller,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Edits {
    pub env: Vec<String>,
    pub device_nodes: Vec<DeviceNode>,
    pub mounts: Vec<Mount>,
    pub hooks: Vec<Hook>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceNode {
    /// Inside the container.
    pub path: PathBuf,
    /// On the host; `path` when the spec gives none.
    pub host_path: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub host_path: PathBuf,
    pub container_path: PathBuf,
    pub options: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hook {
    pub hook_name: String,
    pub path: PathBuf,
    pub args: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    pub file: PathBuf,
    pub version: String,
    /// `vendor.com/class`.
    pub kind: String,
    pub edits: Edits,
    pub devices: Vec<(String, Edits)>,
}

/// The specs found, and a note for each file that was left out.
#[derive(Debug, Default)]
pub struct Registry {
    pub specs: Vec<Spec>,
    pub notes: Vec<String>,
}

impl Registry {
    /// Reads every spec in the spec directories.
    pub fn load(trust: Trust) -> Registry {
        let mut reg = Registry::default();
        for dir in spec_dirs() {
            reg.load_dir(&dir, trust);
        }
        reg
    }

    pub fn load_dir(&mut self, dir: &Path, trust: Trust) {
        let mut names = match std::fs::read_dir(dir) {
            Ok(entries) => entries
                .filter_map(Result::ok)
                .map(|e| e.file_name())
                .filter(|n| {
                    let n = Path::new(n);
                    matches!(n.extension().and_then(|e| e.to_str()), Some("json" | "yaml" | "yml"))
                })
                .collect::<Vec<_>>(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            Err(e) => {
                self.notes.push(format!("CDI: cannot read {}: {e}", dir.display()));
                return;
            }
        };
        names.sort();
        if names.len() > MAX_SPECS {
            self.notes.push(format!("CDI: only the first {MAX_SPECS} specs in {} are read", dir.display()));
            names.truncate(MAX_SPECS);
        }
        for name in names {
            let file = dir.join(name);
            match read_spec(&file, trust) {
                Ok(spec) => self.specs.push(spec),
                Err(why) => self.notes.push(format!("CDI: left out {}: {why}", file.display())),
            }
        }
    }

    /// The spec that defines `kind=device` last (a later directory wins),
    /// and the device's edits.
    pub fn find(&self, kind: &str, device: &str) -> Option<(&Spec, &Edits)> {
        self.specs
            .iter()
            .rev()
            .filter(|s| s.kind == kind)
            .find_map(|s| s.devices.iter().find(|(n, _)| n == device).map(|(_, e)| (s, e)))
    }

    /// Every qualified device name, in the order found, the later
    /// duplicates left out.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for s in &self.specs {
            for (d, _) in &s.devices {
                let q = format!("{}={d}", s.kind);
                if !names.contains(&q) {
                    names.push(q);
                }
            }
        }
        names
    }

    /// The edits of the named devices: each spec's own edits once, then each
    /// device's, in the order asked. The file each came from is kept for
    /// messages.
    pub fn resolve(&self, names: &[String]) -> Result<Vec<(String, Edits)>, Error> {
        let mut out: Vec<(String, Edits)> = Vec::new();
        let mut seen_specs: Vec<PathBuf> = Vec::new();
        for name in names {
            let (kind, device) = split_name(name)?;
            let Some((spec, edits)) = self.find(kind, device) else {
                return Err(Error::Device {
                    msg: format!("no CDI spec describes device {name}"),
                    hint: Some(self.hint_for(kind)),
                });
            };
            if !seen_specs.contains(&spec.file) {
                seen_specs.push(spec.file.clone());
                out.push((format!("{} (its common edits)", spec.file.display()), spec.edits.clone()));
            }
            out.push((format!("{} (device {name})", spec.file.display()), edits.clone()));
        }
        Ok(out)
    }

    fn hint_for(&self, kind: &str) -> String {
        let known: Vec<String> = self.names().into_iter().filter(|n| n.starts_with(kind)).collect();
        let dirs: Vec<String> = spec_dirs().iter().map(|d| d.display().to_string()).collect();
        if known.is_empty() {
            format!(
                "the specs are read from {}; generate one (nvidia-ctk cdi generate for NVIDIA), or see --doctor",
                dirs.join(" and ")
            )
        } else {
            format!("the devices of {kind} are {}", known.join(", "))
        }
    }
}

/// `vendor.com/class=device`, checked as CDI names are.
pub fn split_name(name: &str) -> Result<(&str, &str), Error> {
    let bad = |why: &str| Error::Device {
        msg: format!("invalid device name {name:?}: {why}"),
        hint: Some("a CDI device name is VENDOR/CLASS=DEVICE, for example nvidia.com/gpu=all".into()),
    };
    let (kind, device) = name.split_once('=').ok_or_else(|| bad("it has no '='"))?;
    let (vendor, class) = kind.split_once('/').ok_or_else(|| bad("its kind has no '/'"))?;
    let word = |s: &str, extra: &[u8]| {
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || extra.contains(&b))
    };
    if !word(vendor, b"._-") || !word(class, b"_-") || !word(device, b"._-:") {
        return Err(bad("it holds characters a CDI name may not"));
    }
    Ok((kind, device))
}

fn read_spec(file: &Path, trust: Trust) -> Result<Spec, String> {
    let fd: OwnedFd = match trust {
        Trust::RootOnly => trust::open_trusted_file(file).map_err(|e| e.to_string())?,
        Trust::Caller => open(file, OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK, Mode::empty())
            .map_err(|e| e.desc().to_owned())?,
    };
    let file_handle = File::from(fd);
    let meta = file_handle.metadata().map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("it is not a regular file".into());
    }
    let bytes = read_upto(file_handle, meta.len(), MAX_SPEC)
        .map_err(|e| e.to_string())?
        .ok_or("it is larger than 4 MiB")?;
    let text = String::from_utf8(bytes).map_err(|_| "it is not UTF-8")?;
    spec_from(file, &specdata::parse(&text)?)
}

fn spec_from(file: &Path, v: &Value) -> Result<Spec, String> {
    let version = v.get("cdiVersion").and_then(Value::as_str).ok_or("it has no cdiVersion")?.to_owned();
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(u32::MAX));
    let (major, minor) = (parts.next().unwrap_or(u32::MAX), parts.next().unwrap_or(u32::MAX));
    if !(major == 0 && (3..=8).contains(&minor) || major == 1 && minor <= 1) {
        return Err(format!("cdiVersion {version} is not one of 0.3.0 to 1.1.x"));
    }
    let kind = v.get("kind").and_then(Value::as_str).ok_or("it has no kind")?.to_owned();
    split_name(&format!("{kind}=x")).map_err(|e| e.to_string())?;
    let edits = v.get("containerEdits").map(edits_from).transpose()?.unwrap_or_default();
    let mut devices = Vec::new();
    for d in v.get("devices").map(Value::items).unwrap_or_default() {
        let name = d.get("name").and_then(Value::as_str).ok_or("a device has no name")?.to_owned();
        let edits = d.get("containerEdits").map(edits_from).transpose()?.unwrap_or_default();
        devices.push((name, edits));
    }
    Ok(Spec { file: file.to_path_buf(), version, kind, edits, devices })
}

fn abs_path(v: Option<&Value>, what: &str) -> Result<Option<PathBuf>, String> {
    match v.and_then(Value::as_str) {
        None => Ok(None),
        Some(p) if p.starts_with('/') && !p.split('/').any(|c| c == "..") => Ok(Some(PathBuf::from(p))),
        Some(p) => Err(format!("{what} {p:?} is not an absolute path without '..'")),
    }
}

fn edits_from(v: &Value) -> Result<Edits, String> {
    let mut e = Edits { env: v.get("env").map(Value::strings).unwrap_or_default(), ..Edits::default() };
    for n in v.get("deviceNodes").map(Value::items).unwrap_or_default() {
        let path = abs_path(n.get("path"), "a device node path")?.ok_or("a device node has no path")?;
        let host_path =
            abs_path(n.get("hostPath"), "a device node hostPath")?.unwrap_or_else(|| path.clone());
        e.device_nodes.push(DeviceNode { path, host_path });
    }
    for m in v.get("mounts").map(Value::items).unwrap_or_default() {
        let host_path = abs_path(m.get("hostPath"), "a mount hostPath")?.ok_or("a mount has no hostPath")?;
        let container_path = abs_path(m.get("containerPath"), "a mount containerPath")?
            .ok_or("a mount has no containerPath")?;
        let options = m.get("options").map(Value::strings).unwrap_or_default();
        e.mounts.push(Mount { host_path, container_path, options });
    }
    for h in v.get("hooks").map(Value::items).unwrap_or_default() {
        let hook_name = h.get("hookName").and_then(Value::as_str).unwrap_or_default().to_owned();
        let path = h.get("path").and_then(Value::as_str).map(PathBuf::from).unwrap_or_default();
        let args = h.get("args").map(Value::strings).unwrap_or_default();
        e.hooks.push(Hook { hook_name, path, args });
    }
    Ok(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert_eq!(split_name("nvidia.com/gpu=all").unwrap(), ("nvidia.com/gpu", "all"));
        assert_eq!(split_name("nvidia.com/gpu=GPU-1a2b:0").unwrap().1, "GPU-1a2b:0");
        for bad in ["nvidia.com/gpu", "gpu=all", "a/b=", "a/b=x y", "a/b/c=d"] {
            assert!(split_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn later_directories_win_and_unknown_devices_are_one_error() {
        let dir = std::env::temp_dir().join(format!("distrorun-cdi-{}", std::process::id()));
        let (a, b) = (dir.join("a"), dir.join("b"));
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        std::fs::write(
            a.join("x.json"),
            r#"{"cdiVersion":"0.6.0","kind":"x.com/gpu","containerEdits":{"env":["A=1"]},
                "devices":[{"name":"0","containerEdits":{"deviceNodes":[{"path":"/dev/x0"}]}}]}"#,
        )
        .unwrap();
        std::fs::write(
            b.join("x.yaml"),
            "cdiVersion: 1.0.0\nkind: x.com/gpu\ndevices:\n- name: \"0\"\n  containerEdits:\n    env: [B=2]\n",
        )
        .unwrap();
        std::fs::write(b.join("broken.json"), "{").unwrap();
        let mut reg = Registry::default();
        reg.load_dir(&a, Trust::Caller);
        reg.load_dir(&b, Trust::Caller);
        assert_eq!(reg.notes.len(), 1, "{:?}", reg.notes);
        let edits = reg.resolve(&["x.com/gpu=0".into()]).unwrap();
        assert_eq!(edits.len(), 2);
        assert_eq!(edits[1].1.env, ["B=2"]);
        let err = reg.resolve(&["x.com/gpu=1".into()]).unwrap_err();
        assert_eq!(err.to_string(), "no CDI spec describes device x.com/gpu=1");
        assert!(err.hint().unwrap().contains("x.com/gpu=0"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
