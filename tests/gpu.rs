//! Devices: the host's NVIDIA userspace (Debian's, from non-free, installed
//! by ci/setup.d/60-gpu.sh with no kernel module) inside the guest tree of
//! another Debian release, through a CDI spec in the shape `nvidia-ctk cdi
//! generate` writes and without one, on both backends; and the trust rules
//! the setuid helper applies to specs and to the files they name.
//!
//! On a machine with an NVIDIA GPU (its driver loaded), the same tests
//! expect `nvidia-smi` to succeed and CUDA to count the devices.

use distrorun_testkit::*;
use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::MutexGuard;

/// The test build's CDI directories (`DISTRORUN_CDI_DIRS` in ci/test-setup).
const ETC_SPECS: &str = "/var/lib/distrorun-test/cdi/etc";
const RUN_SPECS: &str = "/var/lib/distrorun-test/cdi/run";
const NVIDIA_SPEC: &str = "/var/lib/distrorun-test/cdi/etc/nvidia.yaml";

/// True where a real NVIDIA driver is loaded.
fn hardware() -> bool {
    Path::new("/proc/driver/nvidia/version").exists()
}

/// Every test here changes or depends on the spec directories; they run one
/// at a time, with the set-up checked first.
fn setup() -> MutexGuard<'static, ()> {
    let guard = global_state_lock();
    for needed in [NVIDIA_SPEC, "/usr/bin/nvidia-smi", "/dev/nvidiactl", "/dev/nvidia0", "/dev/nvidia-uvm"] {
        assert!(Path::new(needed).exists(), "{needed} is missing: run ci/test-setup (ci/setup.d/60-gpu.sh)");
    }
    guard
}

/// A spec file in a spec directory, removed on drop.
struct SpecFile(PathBuf);

impl SpecFile {
    fn new(dir: &str, name: &str, text: &str, mode: u32) -> SpecFile {
        let path = Path::new(dir).join(name);
        fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).expect("chmod the spec");
        SpecFile(path)
    }
}

impl Drop for SpecFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

/// Puts the moved NVIDIA spec back on drop.
struct SpecBack(PathBuf);

impl Drop for SpecBack {
    fn drop(&mut self) {
        let _ = fs::rename(&self.0, NVIDIA_SPEC);
    }
}

/// A spec of a kind of its own, whose one device `x` sets `MARK=1` and
/// mounts `host_file` as a library.
fn marker_spec(kind: &str, host_file: Option<&str>) -> String {
    let mounts = host_file.map_or(String::new(), |f| {
        format!(r#","mounts":[{{"hostPath":"{f}","containerPath":"/usr/lib/x86_64-linux-gnu/libmark.so.1","options":["ro","nosuid","nodev","bind"]}}]"#)
    });
    format!(
        r#"{{"cdiVersion":"0.6.0","kind":"{kind}","devices":[{{"name":"x","containerEdits":{{"env":["MARK=1"]{mounts}}}}}]}}"#
    )
}

fn run(b: Backend, d: &TestDistro, opts: &[&str], script: &str) -> Output {
    let mut args: Vec<&str> = opts.to_vec();
    args.extend([d.name.as_str(), "sh", "-c", script]);
    Run::user(&args).backend(b).output()
}

/// What programs inside see of the driver: the loader's cache, a dlopen
/// and cuInit through ctypes, nvidia-smi, the loaders' JSONs, and the
/// guest's own glvnd.
const PROBE: &str = r#"
for l in libcuda.so.1 libnvidia-ml.so.1 libGLX_nvidia.so.0 libEGL_nvidia.so.0 libGLX.so.0 libEGL.so.1; do
    printf 'cache %s %s\n' "$l" "$(/sbin/ldconfig -p | awk -v l="$l" '$1 == l { print $NF; exit }')"
done
python3 -c '
import ctypes
cuda = ctypes.CDLL("libcuda.so.1")
print("cuInit", cuda.cuInit(0))
n = ctypes.c_int(-1)
print("count", cuda.cuDeviceGetCount(ctypes.byref(n)), n.value)
ctypes.CDLL("libnvidia-ml.so.1")
print("nvml loaded")
'
nvidia-smi -L > /tmp/smi.$$ 2>&1; echo "smi $?"; head -n 1 /tmp/smi.$$; rm -f /tmp/smi.$$
for j in /usr/share/vulkan/icd.d/nvidia_icd.json /usr/share/glvnd/egl_vendor.d/10_nvidia.json; do
    test -s "$j" && echo "json $j"
done
echo "env NVIDIA_VISIBLE_DEVICES=${NVIDIA_VISIBLE_DEVICES-unset}"
"#;

/// The value after `prefix ` on the line starting with it.
fn field<'a>(text: &'a str, prefix: &str) -> &'a str {
    text.lines()
        .find_map(|l| l.strip_prefix(prefix).and_then(|r| r.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("no line {prefix:?} in:\n{text}"))
}

/// `out` ran with -v, so its stderr holds the steps.
fn assert_driver_inside(out: &Output, via_spec: bool) {
    out.assert_code(0);
    let text = out.stdout_str();
    let report = out.report();
    for l in ["libcuda.so.1", "libnvidia-ml.so.1", "libGLX_nvidia.so.0", "libEGL_nvidia.so.0"] {
        let path = field(&text, &format!("cache {l}"));
        assert_eq!(
            path,
            format!("/usr/local/lib/distrorun-gpu/{l}"),
            "{l} through the guest's loader: {report}"
        );
    }
    // glvnd is the guest's own: the guest's files, not the host's.
    for l in ["libGLX.so.0", "libEGL.so.1"] {
        let path = field(&text, &format!("cache {l}"));
        assert!(
            path.starts_with("/lib/x86_64-linux-gnu/") || path.starts_with("/usr/lib/x86_64-linux-gnu/"),
            "{report}"
        );
        let guest = fs::canonicalize(Path::new(GUEST).join(path.trim_start_matches('/')))
            .unwrap_or_else(|e| panic!("the guest has no {path}: {e}"));
        assert!(guest.starts_with(GUEST), "{l} inside is the guest's file {}", guest.display());
    }
    let cu_init: i32 = field(&text, "cuInit").parse().expect("cuInit's result");
    assert!(text.contains("nvml loaded"), "{report}");
    let smi: i32 = field(&text, "smi").parse().expect("nvidia-smi's status");
    if hardware() {
        assert_eq!(cu_init, 0, "cuInit on a machine with the driver loaded: {report}");
        let count = field(&text, "count");
        assert!(count.starts_with("0 ") && !count.ends_with(" 0"), "devices counted: {report}");
        assert_eq!(smi, 0, "{report}");
    } else {
        // The library is found and runs: the driver is what is missing.
        assert_ne!(cu_init, 0, "{report}");
        assert!(![126, 127].contains(&smi), "nvidia-smi was found and ran: {report}");
        assert!(text.contains("couldn't communicate with the NVIDIA driver"), "{report}");
    }
    assert!(text.contains("json /usr/share/vulkan/icd.d/nvidia_icd.json"), "{report}");
    assert!(text.contains("json /usr/share/glvnd/egl_vendor.d/10_nvidia.json"), "{report}");
    let env = field(&text, "env");
    assert_eq!(
        env,
        if via_spec { "NVIDIA_VISIBLE_DEVICES=void" } else { "NVIDIA_VISIBLE_DEVICES=unset" },
        "{report}"
    );
}

/// A listing of the guest tree with sizes, times and modes.
fn listing() -> String {
    let out = Command::new("find")
        .args([GUEST, "-xdev", "-printf", "%p %s %T@ %C@ %m %U %G\n"])
        .output()
        .expect("run find");
    assert!(out.status.success(), "find failed: {}", String::from_utf8_lossy(&out.stderr));
    let mut lines: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect();
    lines.sort();
    lines.join("\n")
}

per_backend! {
    /// A CDI-named device: the spec's files, hooks and variable.
    fn a_cdi_device_brings_the_driver_in(b) {
        let _g = setup();
        let d = TestDistro::standard("gpu-cdi");
        let out = run(b, &d, &["-v", "--device", "nvidia.com/gpu=all"], PROBE);
        assert_driver_inside(&out, true);
        let err = out.stderr_str();
        assert!(err.contains(&format!("CDI: applying {NVIDIA_SPEC} (device nvidia.com/gpu=all)")), "{}", out.report());
        assert!(err.contains("skipped hook nvidia-cdi-hook enable-cuda-compat"), "{}", out.report());
    }

    /// On a kernel without the new mount API the driver cannot be shown
    /// inside: refused with the reason, before anything is mounted or run.
    fn devices_before_linux_5_12_are_refused_with_the_reason(b) {
        let _g = setup();
        let d = TestDistro::standard("gpu-old");
        for opts in [&["--gpu"][..], &["--device", "nvidia.com/gpu=all"]] {
            let mut args = opts.to_vec();
            args.extend([d.name.as_str(), "sh", "-c", "echo ran"]);
            let out = Run::user(&args).backend(b).old_kernel().output();
            out.assert_own_error();
            out.assert_stderr_has("that needs Linux 5.12 or later (open_tree, move_mount, mount_setattr)");
            assert!(!out.stdout_str().contains("ran"), "the command ran: {}", out.report());
        }
    }

    /// `--gpu` with nvidia-smi, and a launch that leaves the tree exactly
    /// as it was.
    fn gpu_runs_nvidia_smi_and_never_writes_the_tree(b) {
        let _g = setup();
        let d = TestDistro::standard("gpu-smi");
        let before = listing();
        let out = Run::user(&["--gpu", &d.name, "nvidia-smi"]).backend(b).output();
        if hardware() {
            out.assert_ok();
        } else {
            let code = out.code.unwrap_or(-1);
            assert!(![0, 125, 126, 127].contains(&code), "nvidia-smi ran and found no driver: {}", out.report());
            assert!(out.stdout_str().contains("couldn't communicate with the NVIDIA driver"), "{}", out.report());
        }
        assert_eq!(listing(), before, "the guest tree changed during a GPU launch");
    }

    /// Without a spec: the driver as the host's ld.so.cache names it.
    fn without_a_spec_the_hosts_driver_is_found(b) {
        let _g = setup();
        let moved = Path::new(TEST_ROOT).join("cdi/nvidia.yaml.away");
        fs::rename(NVIDIA_SPEC, &moved).expect("move the spec away");
        let _back = SpecBack(moved);
        let d = TestDistro::standard("gpu-nospec");
        let out = run(b, &d, &["-v", "--gpu"], PROBE);
        assert_driver_inside(&out, false);
        assert!(out.stderr_str().contains("found without a CDI spec"), "{}", out.report());
    }

    /// A spec that names a file missing on the host: one clear error.
    fn a_spec_naming_a_missing_file_is_one_error(b) {
        let _g = setup();
        let kind = format!("distrorun-test.example/missing{}", std::process::id());
        let _spec = SpecFile::new(RUN_SPECS, "missing.json", &marker_spec(&kind, Some("/nonexistent/libmark.so.1")), 0o644);
        let d = TestDistro::standard("gpu-missing");
        let out = run(b, &d, &["--device", &format!("{kind}=x")], "true");
        out.assert_own_error();
        assert_refused(&out, &["names /nonexistent/libmark.so.1, which does not exist on the host"]);
    }

    /// A spec the caller could write counts for the caller's own userns
    /// run, and not at all under the helper.
    fn a_spec_writable_by_the_caller_is_ignored_by_the_helper(b) {
        let _g = setup();
        let kind = format!("distrorun-test.example/writable{}", std::process::id());
        let _spec = SpecFile::new(RUN_SPECS, "writable.json", &marker_spec(&kind, None), 0o666);
        let d = TestDistro::standard("gpu-writable");
        let out = run(b, &d, &["--device", &format!("{kind}=x")], "echo MARK=$MARK");
        match b {
            Backend::Userns => assert_eq!(out.assert_ok().stdout_str(), "MARK=1\n"),
            Backend::Helper => assert_refused(&out, &[&format!("no CDI spec describes device {kind}=x")]),
        }
    }

    /// A root-owned symlink in a spec directory to a spec in the caller's
    /// home: the helper's walk meets the caller's directory and stops.
    fn a_spec_symlinked_from_a_user_directory_is_ignored_by_the_helper(b) {
        let _g = setup();
        let kind = format!("distrorun-test.example/linked{}", std::process::id());
        let home = TempDir::owned_by(USER, "gpu-spec");
        let target = home.file("spec.json", marker_spec(&kind, None).as_bytes(), 0o644, group_id(USER));
        let link = Path::new(RUN_SPECS).join("linked.json");
        let _ = fs::remove_file(&link);
        symlink(&target, &link).expect("symlink the spec");
        let _spec = SpecFile(link);
        let d = TestDistro::standard("gpu-linked");
        let out = run(b, &d, &["--device", &format!("{kind}=x")], "echo MARK=$MARK");
        match b {
            Backend::Userns => assert_eq!(out.assert_ok().stdout_str(), "MARK=1\n"),
            Backend::Helper => assert_refused(&out, &[&format!("no CDI spec describes device {kind}=x")]),
        }
    }

    /// A root-owned spec naming a library the caller controls: the helper
    /// refuses to bind it.
    fn a_spec_naming_a_file_the_caller_controls_is_refused_by_the_helper(b) {
        let _g = setup();
        let kind = format!("distrorun-test.example/owned{}", std::process::id());
        let home = TempDir::owned_by(USER, "gpu-lib");
        let lib = fs::read("/usr/lib/x86_64-linux-gnu/libz.so.1").or_else(|_| fs::read("/lib/x86_64-linux-gnu/libz.so.1")).expect("the host's libz");
        let file = home.file("libmark.so.1", &lib, 0o755, group_id(USER));
        let _spec = SpecFile::new(RUN_SPECS, "owned.json", &marker_spec(&kind, Some(path_str(&file))), 0o644);
        let d = TestDistro::standard("gpu-owned");
        let out = run(b, &d, &["--device", &format!("{kind}=x")], "/sbin/ldconfig -p | grep -c libmark.so.1");
        match b {
            Backend::Userns => assert_eq!(out.assert_ok().stdout_str(), "1\n"),
            Backend::Helper => assert_refused(&out, &["refusing to trust"]),
        }
    }

    /// Devices need the /dev volume; a distro without it says so.
    fn devices_without_dev_are_refused(b) {
        let _g = setup();
        let d = TestDistro::with_volumes("gpu-nodev", Path::new(GUEST), r#"["/tmp"]"#, "");
        let out = run(b, &d, &["--device", "nvidia.com/gpu=0"], "true");
        assert_refused(&out, &["need /dev, which distro", "does not map"]);
    }
}

#[test]
fn the_etc_directory_comes_before_the_run_directory() {
    // Both spec directories exist and are root's: the order is the build's.
    for dir in [ETC_SPECS, RUN_SPECS] {
        let st = fs::metadata(dir).unwrap_or_else(|e| panic!("{dir}: {e}"));
        assert!(st.is_dir());
    }
    let out = Run::user(&["--version"]).output();
    out.assert_ok();
    assert!(out.stdout_str().contains(&format!("{ETC_SPECS}:{RUN_SPECS}")), "{}", out.report());
}

/// `--doctor` lists the specs and says which the helper would ignore;
/// `--info` shows what a run would bring in, and from where.
#[test]
fn doctor_and_info_show_the_specs_and_what_a_run_binds() {
    let _g = setup();
    let kind = format!("distrorun-test.example/doctor{}", std::process::id());
    let _spec = SpecFile::new(RUN_SPECS, "doctor.json", &marker_spec(&kind, None), 0o666);
    let out = Run::user(&["--doctor"]).output();
    let text = out.stdout_str();
    assert!(
        text.contains(&format!("ok: CDI spec {NVIDIA_SPEC}: nvidia.com/gpu devices 0, all\n")),
        "{}",
        out.report()
    );
    assert!(
        text.contains(&format!("warning: the setuid helper ignores CDI spec {RUN_SPECS}/doctor.json: ")),
        "{}",
        out.report()
    );
    assert!(text.contains("ok: --gpu brings in "), "{}", out.report());
    let d = TestDistro::standard("gpu-info");
    let out = Run::user(&["--info", &d.name]).output();
    out.assert_ok();
    let text = out.stdout_str();
    assert!(text.contains("devices:      none; with --gpu\n"), "{}", out.report());
    assert!(text.contains("  /usr/local/bin/nvidia-smi <- "), "{}", out.report());
    assert!(text.contains("  /dev/nvidiactl (device node, from /dev)\n"), "{}", out.report());
    assert!(text.contains("  environment NVIDIA_VISIBLE_DEVICES=void\n"), "{}", out.report());
}
