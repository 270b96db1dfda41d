//! Devices: what a run that asks for them brings in, decided before any
//! mount. The sources are CDI specs ([`crate::cdi`]) or, for NVIDIA where
//! no spec describes it, the host's driver files found as
//! `nvidia-container-cli list` finds them: the vendor libraries through the
//! host's `ld.so.cache`, the tools, and the loader JSONs.
//!
//! Only vendor files are added, each to a place the distro's own loaders
//! search: libraries to a private directory that a private `ld.so.cache`
//! (the distro's, plus those libraries) names, tools to `/usr/local/bin`,
//! loader JSONs to the loaders' directories under `/usr/share`. The guest's
//! glvnd, Vulkan loader and Mesa stay its own.

use std::fs::File;
use std::path::{Path, PathBuf};

use crate::cdi::{self, Edits, Registry, Trust};
use crate::load::read_upto;
use crate::schema::is_within;
use crate::{ldcache, specdata, trust, Error};

/// The private library directories inside, for this machine's ELF class
/// and for 32-bit libraries.
pub const LIB_DIR: &str = "/usr/local/lib/distrorun-gpu";
pub const LIB32_DIR: &str = "/usr/local/lib/distrorun-gpu32";
pub const BIN_DIR: &str = "/usr/local/bin";
pub const LD_CACHE: &str = "/etc/ld.so.cache";

/// The distro directories that receive files: each is shown as a private,
/// read-only copy holding its own entries (bound from the tree) and the
/// vendor files, so that nothing of the tree is hidden or changed. They
/// must exist in the tree.
pub const MERGED_DIRS: [&str; 7] = [
    "/usr/local/lib",
    "/usr/local/bin",
    "/usr/share/vulkan/icd.d",
    "/usr/share/vulkan/implicit_layer.d",
    "/usr/share/glvnd/egl_vendor.d",
    "/usr/share/egl/egl_external_platform.d",
    "/usr/share/nvidia",
];

/// The loader directories a JSON file is recognised in, on the host, and
/// the one it goes to inside.
const JSON_DIRS: [(&str, &str); 5] = [
    ("vulkan/icd.d", "/usr/share/vulkan/icd.d"),
    ("vulkan/implicit_layer.d", "/usr/share/vulkan/implicit_layer.d"),
    ("glvnd/egl_vendor.d", "/usr/share/glvnd/egl_vendor.d"),
    ("egl/egl_external_platform.d", "/usr/share/egl/egl_external_platform.d"),
    ("vulkan/explicit_layer.d", "/usr/share/vulkan/explicit_layer.d"),
];

/// Stems of NVIDIA's vendor libraries, as in Apptainer's `nvliblist.conf`
/// and libnvidia-container, without the glvnd dispatch libraries (libGL,
/// libGLX, libEGL, libGLdispatch, libOpenGL, libGLES*), which must stay the
/// distro's own.
const NVIDIA_LIBS: &[&str] = &[
    "libcuda",
    "libcudadebugger",
    "libnvcuvid",
    "libnvoptix",
    "libnvidia-",
    "libGLX_nvidia",
    "libEGL_nvidia",
    "libGLESv1_CM_nvidia",
    "libGLESv2_nvidia",
    "libvdpau_nvidia",
    "libnvcuvid",
];

/// NVIDIA's tools.
const NVIDIA_BINS: &[&str] = &[
    "nvidia-smi",
    "nvidia-debugdump",
    "nvidia-persistenced",
    "nvidia-cuda-mps-control",
    "nvidia-cuda-mps-server",
];

/// NVIDIA's loader JSONs and data files, where drivers put them.
const NVIDIA_FILES: &[&str] = &[
    "/usr/share/glvnd/egl_vendor.d/10_nvidia.json",
    "/etc/glvnd/egl_vendor.d/10_nvidia.json",
    "/usr/share/vulkan/icd.d/nvidia_icd.json",
    "/etc/vulkan/icd.d/nvidia_icd.json",
    "/usr/share/vulkan/implicit_layer.d/nvidia_layers.json",
    "/etc/vulkan/implicit_layer.d/nvidia_layers.json",
    "/usr/share/egl/egl_external_platform.d/10_nvidia_wayland.json",
    "/usr/share/egl/egl_external_platform.d/15_nvidia_gbm.json",
    "/usr/share/nvidia/nvoptix.bin",
];

const NVIDIA_NODES: &[&str] =
    &["/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools", "/dev/nvidia-modeset"];

/// The most files one run brings in; a spec naming more is not a driver.
pub const MAX_FILES: usize = 1024;

/// Where a file goes inside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    /// A shared library, by name: the engine puts it in [`LIB_DIR`] or
    /// [`LIB32_DIR`] by its ELF class, and names it in the private cache.
    Library(String),
    /// A path inside, under one of [`MERGED_DIRS`].
    At(PathBuf),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A host file, bound read-only.
    Host(PathBuf),
    /// A symlink to this target, beside a library.
    Link(String),
    /// Contents written here (a loader JSON whose library path was made
    /// a bare name).
    Contents(Vec<u8>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuFile {
    pub place: Place,
    pub source: Source,
}

/// What a run with devices adds, all decided before any mount.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GpuPlan {
    /// The devices asked for, as given.
    pub devices: Vec<String>,
    /// `NAME=VALUE`, added to the command's environment.
    pub env: Vec<String>,
    /// Host device nodes that must be present through the `/dev` volume.
    pub nodes: Vec<PathBuf>,
    pub files: Vec<GpuFile>,
    /// For `-v`: which specs and hooks applied, and what was left out.
    pub notes: Vec<String>,
}

impl GpuPlan {
    pub fn is_empty(&self) -> bool {
        self.devices.is_empty()
    }

    fn add(&mut self, place: Place, source: Source) -> Result<(), Error> {
        if self.files.iter().any(|f| f.place == place) {
            return Ok(());
        }
        if self.files.len() >= MAX_FILES {
            return Err(Error::Device {
                msg: format!("the devices name more than {MAX_FILES} files"),
                hint: None,
            });
        }
        self.files.push(GpuFile { place, source });
        Ok(())
    }
}

/// What `--gpu` stands for: every GPU device of every spec (its `all`
/// device where it has one), and NVIDIA's driver found without a spec
/// where no spec describes it.
pub const GPU_ALL: &str = "gpu";

/// Resolves the devices asked for into a plan. Nothing is read when
/// `devices` is empty: a run that asks for none pays nothing.
pub fn resolve(devices: &[String], trust: Trust) -> Result<GpuPlan, Error> {
    let plan = GpuPlan { devices: devices.to_vec(), ..GpuPlan::default() };
    if devices.is_empty() {
        return Ok(plan);
    }
    resolve_with(plan, &Registry::load(trust), trust)
}

/// [`resolve`] with the specs already read.
fn resolve_with(mut plan: GpuPlan, registry: &Registry, trust: Trust) -> Result<GpuPlan, Error> {
    let devices = plan.devices.clone();
    plan.notes.extend(registry.notes.iter().cloned());
    let mut names: Vec<String> = Vec::new();
    let mut nvidia_without_spec = false;
    for d in &devices {
        if d == GPU_ALL {
            let gpus = gpu_devices(registry);
            if !gpus.iter().any(|n| n.starts_with("nvidia.com/")) && nvidia_present(trust) {
                nvidia_without_spec = true;
            }
            names.extend(gpus);
            continue;
        }
        let (kind, device) = cdi::split_name(d)?;
        if registry.find(kind, device).is_none() && kind == "nvidia.com/gpu" && !has_kind(registry, kind) {
            nvidia_without_spec = true;
            if device != "all" {
                plan.nodes.push(PathBuf::from(format!("/dev/nvidia{device}")));
            }
            continue;
        }
        names.push(d.clone());
    }
    names.dedup();
    for (from, edits) in registry.resolve(&names)? {
        apply(&mut plan, &from, &edits, trust)?;
    }
    if nvidia_without_spec {
        discover_nvidia(&mut plan, trust)?;
    }
    if names.is_empty() && !nvidia_without_spec {
        plan.notes.push("devices: no CDI spec or NVIDIA driver here; /dev/dri, if mapped, is the GPU".into());
    }
    Ok(plan)
}

fn has_kind(reg: &Registry, kind: &str) -> bool {
    reg.specs.iter().any(|s| s.kind == kind)
}

/// The GPU devices the specs describe: of each kind whose class is `gpu`,
/// its `all` device if it has one, else every device.
fn gpu_devices(reg: &Registry) -> Vec<String> {
    let mut kinds: Vec<&str> =
        reg.specs.iter().map(|s| s.kind.as_str()).filter(|k| k.ends_with("/gpu")).collect();
    kinds.dedup();
    let mut out = Vec::new();
    for kind in kinds {
        if reg.find(kind, "all").is_some() {
            out.push(format!("{kind}=all"));
        } else {
            out.extend(reg.names().into_iter().filter(|n| n.starts_with(&format!("{kind}="))));
        }
    }
    out
}

/// True when the host has NVIDIA's driver: its control node or libcuda.
pub fn nvidia_present(trust: Trust) -> bool {
    Path::new("/dev/nvidiactl").exists()
        || host_cache(trust).is_some_and(|c| c.iter().any(|e| e.key.starts_with(b"libcuda.so")))
}

fn host_cache(trust: Trust) -> Option<Vec<ldcache::Entry>> {
    let bytes = read_host(Path::new(LD_CACHE), trust, 64 << 20).ok()?;
    ldcache::parse(&bytes)
}

/// A small host file, through the trust walk under the helper.
pub fn read_host(path: &Path, trust: Trust, max: u64) -> Result<Vec<u8>, String> {
    let file = match trust {
        Trust::RootOnly => File::from(trust::open_trusted_file(path).map_err(|e| e.to_string())?),
        Trust::Caller => File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?,
    };
    let size = file.metadata().map_or(0, |m| m.len());
    read_upto(file, size, max)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?
        .ok_or_else(|| format!("{} is too large", path.display()))
}

/// The edits of one spec or device, in the places this run gives them.
fn apply(plan: &mut GpuPlan, from: &str, edits: &Edits, trust: Trust) -> Result<(), Error> {
    plan.notes.push(format!("CDI: applying {from}"));
    plan.env.extend(edits.env.iter().cloned());
    for n in &edits.device_nodes {
        if n.path != n.host_path {
            plan.notes.push(format!(
                "CDI: device node {} is taken from the /dev volume at {}, not from {}",
                n.path.display(),
                n.path.display(),
                n.host_path.display()
            ));
        }
        if !plan.nodes.contains(&n.path) {
            plan.nodes.push(n.path.clone());
        }
    }
    for m in &edits.mounts {
        if std::fs::symlink_metadata(&m.host_path).is_err() {
            return Err(Error::Device {
                msg: format!(
                    "CDI spec {from} names {}, which does not exist on the host",
                    m.host_path.display()
                ),
                hint: Some("regenerate the spec after a driver upgrade (nvidia-ctk cdi generate)".into()),
            });
        }
        place_host_file(plan, &m.host_path, &m.container_path, trust, from)?;
    }
    for h in &edits.hooks {
        apply_hook(plan, h, from)?;
    }
    Ok(())
}

/// Where a host file named by a spec goes, by what it is.
fn place_host_file(
    plan: &mut GpuPlan,
    host: &Path,
    inside: &Path,
    trust: Trust,
    from: &str,
) -> Result<(), Error> {
    let name = inside.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let inside_s = inside.to_string_lossy();
    if is_library_name(&name) && host.is_file() {
        return plan.add(Place::Library(name), Source::Host(host.to_path_buf()));
    }
    if let Some(dir) = json_dir(&inside_s) {
        let source = json_source(host, trust).map_err(|why| Error::Device {
            msg: format!("cannot use {} from {from}: {why}", host.display()),
            hint: None,
        })?;
        return plan.add(Place::At(Path::new(dir).join(&name)), source);
    }
    if name == "nvoptix.bin" {
        return plan.add(Place::At("/usr/share/nvidia/nvoptix.bin".into()), Source::Host(host.to_path_buf()));
    }
    let in_bin = inside.parent().and_then(Path::file_name).is_some_and(|d| d == "bin" || d == "sbin");
    if in_bin && host.is_file() {
        return plan.add(Place::At(Path::new(BIN_DIR).join(&name)), Source::Host(host.to_path_buf()));
    }
    plan.notes.push(format!(
        "CDI: {} from {from} is not brought in (not a library, tool or loader file)",
        inside.display()
    ));
    Ok(())
}

fn is_library_name(name: &str) -> bool {
    name.starts_with("lib") && name.contains(".so")
}

fn json_dir(inside: &str) -> Option<&'static str> {
    JSON_DIRS.iter().find(|(host, _)| inside.contains(&format!("/{host}/"))).map(|(_, dst)| *dst)
}

/// A loader JSON: bound as it is, or, where its `library_path` is an
/// absolute host path, rewritten to the bare file name, which the loader
/// finds through the private cache (the Vulkan loader does not fall back to
/// the base name of an absolute path).
fn json_source(host: &Path, trust: Trust) -> Result<Source, String> {
    let bytes = read_host(host, trust, 1 << 20)?;
    let text = String::from_utf8(bytes).map_err(|_| "it is not UTF-8".to_owned())?;
    let doc = specdata::parse(&text)?;
    let lib = ["ICD", "layer"]
        .iter()
        .find_map(|k| doc.get(k).and_then(|o| o.get("library_path")))
        .and_then(specdata::Value::as_str);
    match lib {
        Some(path) if path.starts_with('/') => {
            let base =
                Path::new(path).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            Ok(Source::Contents(text.replace(&format!("\"{path}\""), &format!("\"{base}\"")).into_bytes()))
        }
        _ => Ok(Source::Host(host.to_path_buf())),
    }
}

/// `nvidia-cdi-hook` (or `nvidia-ctk hook`) carried out natively where it
/// applies; any other hook is named and skipped.
fn apply_hook(plan: &mut GpuPlan, hook: &cdi::Hook, from: &str) -> Result<(), Error> {
    let prog = hook.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let mut args: &[String] = hook.args.get(1..).unwrap_or_default();
    if prog == "nvidia-ctk" && args.first().is_some_and(|a| a == "hook") {
        args = &args[1..];
    }
    let shown = hook.args.join(" ");
    if prog != "nvidia-cdi-hook" && prog != "nvidia-ctk" {
        plan.notes.push(format!("CDI: skipped hook {shown} from {from}"));
        return Ok(());
    }
    match args.first().map(String::as_str) {
        Some("create-symlinks") => {
            let mut rest = args[1..].iter();
            while let Some(a) = rest.next() {
                let spec = match a.strip_prefix("--link=") {
                    Some(v) => v.to_owned(),
                    None if a == "--link" => rest.next().cloned().unwrap_or_default(),
                    None => continue,
                };
                add_link(plan, &spec, from)?;
            }
        }
        Some("update-ldcache") => {
            plan.notes.push(format!(
                "CDI: update-ldcache from {from}: the private ld.so.cache names the libraries"
            ));
        }
        _ => plan.notes.push(format!("CDI: skipped hook {shown} from {from}")),
    }
    Ok(())
}

/// One `TARGET::LINK` of create-symlinks: a library's other name, made
/// beside it in the private directory.
fn add_link(plan: &mut GpuPlan, spec: &str, from: &str) -> Result<(), Error> {
    let Some((target, link)) = spec.split_once("::") else { return Ok(()) };
    let name = Path::new(link).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    if is_library_name(&name) && !target.contains('/') {
        return plan.add(Place::Library(name), Source::Link(target.to_owned()));
    }
    plan.notes.push(format!(
        "CDI: symlink {link} -> {target} from {from} is not made (outside the library directory)"
    ));
    Ok(())
}

/// NVIDIA's driver without a spec: its vendor libraries as the host's
/// `ld.so.cache` names them (both ELF classes), its tools, loader JSONs and
/// `nvoptix.bin`, and its device nodes.
fn discover_nvidia(plan: &mut GpuPlan, trust: Trust) -> Result<(), Error> {
    plan.notes.push("devices: NVIDIA's driver from the host, found without a CDI spec".into());
    let cache = host_cache(trust).ok_or_else(|| Error::Device {
        msg: format!("cannot read the host's {LD_CACHE} to find NVIDIA's libraries"),
        hint: Some("run ldconfig as root".into()),
    })?;
    for e in &cache {
        let key = String::from_utf8_lossy(&e.key).into_owned();
        if !NVIDIA_LIBS.iter().any(|stem| key.starts_with(stem)) || !key.contains(".so") {
            continue;
        }
        let path = PathBuf::from(String::from_utf8_lossy(&e.value).into_owned());
        let Ok(real) = std::fs::canonicalize(&path) else { continue };
        let real_name = real.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        plan.add(Place::Library(real_name.clone()), Source::Host(real))?;
        if real_name != key {
            plan.add(Place::Library(key), Source::Link(real_name))?;
        }
    }
    if !plan.files.iter().any(|f| f.place == Place::Library("libcuda.so.1".into())) {
        return Err(Error::Device {
            msg: format!(
                "NVIDIA's driver libraries are not in the host's {LD_CACHE}: libcuda.so.1 is missing"
            ),
            hint: Some("install the NVIDIA driver's userspace on the host, or write a CDI spec".into()),
        });
    }
    for bin in NVIDIA_BINS {
        for dir in ["/usr/bin", "/usr/sbin", "/bin", "/sbin"] {
            let path = Path::new(dir).join(bin);
            if let Ok(real) = std::fs::canonicalize(&path) {
                plan.add(Place::At(Path::new(BIN_DIR).join(bin)), Source::Host(real))?;
                break;
            }
        }
    }
    for file in NVIDIA_FILES {
        let Ok(real) = std::fs::canonicalize(file) else { continue };
        place_host_file(plan, &real, Path::new(file), trust, "the host")?;
    }
    for node in NVIDIA_NODES {
        if Path::new(node).exists() {
            plan.nodes.push(PathBuf::from(node));
        }
    }
    if !plan.nodes.iter().any(|n| {
        n.starts_with("/dev/nvidia")
            && n.to_string_lossy().trim_start_matches("/dev/nvidia").parse::<u32>().is_ok()
    }) {
        for i in 0..64 {
            let node = PathBuf::from(format!("/dev/nvidia{i}"));
            if !node.exists() {
                break;
            }
            plan.nodes.push(node);
        }
    }
    if Path::new("/run/nvidia-persistenced/socket").exists() {
        plan.notes.push(
            "devices: /run/nvidia-persistenced/socket is reached through a /run volume, if mapped".into(),
        );
    }
    Ok(())
}

/// The newest `GLIBC_2.N[.M]` version string in an ELF file's bytes: for a
/// library, near enough the newest glibc it needs; for libc itself, the
/// newest it provides.
pub fn max_glibc(bytes: &[u8]) -> Option<(u32, u32)> {
    const TAG: &[u8] = b"GLIBC_2.";
    let mut best = None;
    let mut at = 0;
    while let Some(i) = bytes[at..].windows(TAG.len()).position(|w| w == TAG) {
        let start = at + i + TAG.len();
        let digits = |from: usize| {
            let len = bytes[from..].iter().take(4).take_while(|b| b.is_ascii_digit()).count();
            (
                std::str::from_utf8(&bytes[from..from + len]).ok().and_then(|t| t.parse::<u32>().ok()),
                from + len,
            )
        };
        let (minor, end) = digits(start);
        if let Some(minor) = minor {
            let patch = match bytes.get(end) {
                Some(b'.') => digits(end + 1).0.unwrap_or(0),
                _ => 0,
            };
            if best.is_none_or(|b| (minor, patch) > b) {
                best = Some((minor, patch));
            }
        }
        at = start;
    }
    best
}

/// Which of [`MERGED_DIRS`] a path inside belongs to.
pub fn merged_dir_of(inside: &Path) -> Option<&'static str> {
    MERGED_DIRS.iter().copied().find(|d| is_within(inside, Path::new(d)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hooks_become_links_and_others_are_named() {
        let mut plan = GpuPlan::default();
        let hook = |args: &[&str]| cdi::Hook {
            hook_name: "createContainer".into(),
            path: "/usr/bin/nvidia-cdi-hook".into(),
            args: args.iter().map(|s| (*s).to_owned()).collect(),
        };
        apply_hook(
            &mut plan,
            &hook(&[
                "nvidia-cdi-hook",
                "create-symlinks",
                "--link",
                "libcuda.so.1::/usr/lib/x86_64-linux-gnu/libcuda.so",
                "--link",
                "../libnvidia-allocator.so.1::/usr/lib/x86_64-linux-gnu/gbm/nvidia-drm_gbm.so",
            ]),
            "s",
        )
        .unwrap();
        apply_hook(
            &mut plan,
            &hook(&["nvidia-cdi-hook", "enable-cuda-compat", "--host-driver-version=550"]),
            "s",
        )
        .unwrap();
        assert_eq!(
            plan.files,
            [GpuFile {
                place: Place::Library("libcuda.so".into()),
                source: Source::Link("libcuda.so.1".into())
            }]
        );
        assert!(plan.notes.iter().any(|n| n.contains("nvidia-drm_gbm.so")), "{:?}", plan.notes);
        assert!(
            plan.notes.iter().any(|n| n.contains("skipped hook nvidia-cdi-hook enable-cuda-compat")),
            "{:?}",
            plan.notes
        );
    }

    #[test]
    fn files_go_where_the_guests_loaders_look() {
        assert_eq!(json_dir("/etc/vulkan/icd.d/nvidia_icd.json"), Some("/usr/share/vulkan/icd.d"));
        assert_eq!(
            json_dir("/usr/share/glvnd/egl_vendor.d/10_nvidia.json"),
            Some("/usr/share/glvnd/egl_vendor.d")
        );
        assert!(is_library_name("libcuda.so.550.1") && !is_library_name("nvidia-smi"));
        assert_eq!(
            merged_dir_of(Path::new("/usr/local/lib/distrorun-gpu/libcuda.so.1")),
            Some("/usr/local/lib")
        );
        assert_eq!(
            merged_dir_of(Path::new("/usr/share/vulkan/icd.d/x.json")),
            Some("/usr/share/vulkan/icd.d")
        );
        assert!(!NVIDIA_LIBS
            .iter()
            .any(|s| ["libGLX.so.0", "libEGL.so.1", "libGLdispatch.so.0"].iter().any(|l| l.starts_with(s))));
    }

    #[test]
    fn the_newest_glibc_version_is_found() {
        assert_eq!(max_glibc(b"x GLIBC_2.2.5\0GLIBC_2.34\0GLIBC_2.17\0"), Some((34, 0)));
        assert_eq!(max_glibc(b"GLIBC_2.3.4 GLIBC_2.3.10"), Some((3, 10)));
        assert_eq!(max_glibc(b"GLIBC_PRIVATE"), None);
    }

    #[test]
    fn a_specs_files_go_where_the_distros_loaders_look() {
        let dir = std::env::temp_dir().join(format!("distrorun-gpu-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let icd = dir.join("icd.json");
        std::fs::write(&icd, r#"{"ICD": {"library_path": "/opt/nv/libGLX_nvidia.so.0"}}"#).unwrap();
        let spec = format!(
            "cdiVersion: 0.5.0\nkind: t.example/gpu\ncontainerEdits:\n  env: [A=1]\n  mounts:\n  - hostPath: /bin/sh\n    containerPath: /usr/bin/tool\n  - hostPath: {}\n    containerPath: /etc/vulkan/icd.d/nvidia_icd.json\n  - hostPath: /etc/hostname\n    containerPath: /etc/hostname\ndevices:\n- name: all\n",
            icd.display()
        );
        std::fs::write(dir.join("t.yaml"), spec).unwrap();
        let mut reg = Registry::default();
        reg.load_dir(&dir, Trust::Caller);
        let plan = GpuPlan { devices: vec!["t.example/gpu=all".into()], ..GpuPlan::default() };
        let plan = resolve_with(plan, &reg, Trust::Caller).unwrap();
        assert_eq!(plan.env, ["A=1"]);
        assert_eq!(
            plan.files[0],
            GpuFile {
                place: Place::At("/usr/local/bin/tool".into()),
                source: Source::Host("/bin/sh".into())
            }
        );
        assert_eq!(plan.files[1].place, Place::At("/usr/share/vulkan/icd.d/nvidia_icd.json".into()));
        assert_eq!(
            plan.files[1].source,
            Source::Contents(br#"{"ICD": {"library_path": "libGLX_nvidia.so.0"}}"#.to_vec()),
            "an absolute library path becomes the bare name"
        );
        assert_eq!(plan.files.len(), 2, "{:?}", plan.files);
        assert!(
            plan.notes.iter().any(|n| n.contains("/etc/hostname") && n.contains("not brought in")),
            "{:?}",
            plan.notes
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn no_devices_reads_nothing() {
        assert_eq!(resolve(&[], Trust::Caller).unwrap(), GpuPlan::default());
    }
}
