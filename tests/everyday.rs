//! `--list --json`, `--info NAME [--json]` and `--doctor`, run by the test
//! user against the real guest tree and the installed setuid helper.
//!
//! Every test takes `global_state_lock()`: `--list` and `--doctor` read every
//! config in the system directory, so the configs of one test must not show
//! up in another's findings, and one test lowers a sysctl.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};

use distrorun_testkit::*;
use serde_json::Value;

fn json(out: &Output) -> Value {
    out.assert_code(0);
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", out.report()))
}

fn entry<'a>(list: &'a Value, name: &str) -> &'a Value {
    list.as_array()
        .unwrap_or_else(|| panic!("--list --json is not an array: {list}"))
        .iter()
        .find(|e| e["name"] == name)
        .unwrap_or_else(|| panic!("{name} is not in --list --json: {list}"))
}

/// The guest's own `PRETTY_NAME`, read here rather than assumed.
fn guest_pretty_name() -> String {
    let text =
        fs::read_to_string(Path::new(GUEST).join("usr/lib/os-release")).expect("the guest's os-release");
    let line = text.lines().find_map(|l| l.strip_prefix("PRETTY_NAME=")).expect("PRETTY_NAME in the guest");
    line.trim_matches('"').to_owned()
}

#[test]
fn list_json_describes_each_distro_for_this_caller() {
    let _g = global_state_lock();
    let usable = TestDistro::standard("ev-ok");
    let missing = TestDistro::with_dir("ev-nodir", Path::new("/nonexistent/distrorun-tree"), "");
    let denied = TestDistro::with_dir("ev-denied", Path::new(GUEST), &format!("users: [{OTHER_USER:?}],"));
    let mine = UserDistro::standard("ev-mine");

    let list = json(&Run::user(&["--list", "--json"]).output());
    let e = entry(&list, &usable.name);
    assert_eq!(e["origin"], "system", "{e}");
    assert_eq!(e["config"], usable.conf.to_str().unwrap(), "{e}");
    assert_eq!(e["directory"], GUEST, "{e}");
    assert_eq!(e["directory_exists"], true, "{e}");
    assert_eq!(e["backend"], "userns", "{e}");
    assert_eq!(e["may_use"], true, "{e}");

    let e = entry(&list, &missing.name);
    assert_eq!(e["directory"], "/nonexistent/distrorun-tree", "{e}");
    assert_eq!(e["directory_exists"], false, "{e}");

    let e = entry(&list, &denied.name);
    assert_eq!(e["may_use"], false, "{e}");
    let problem = e["problem"].as_str().unwrap_or_else(|| panic!("no reason given: {e}"));
    assert!(problem.contains("may not use") && problem.contains(USER), "{e}");

    let e = entry(&list, &mine.name);
    assert_eq!(e["origin"], "user", "{e}");
    assert_eq!(e["config"], mine.conf.to_str().unwrap(), "{e}");
    assert_eq!(e["backend"], "userns", "{e}");

    // Where the kernel refuses user namespaces, the same caller would get
    // the helper for a system distro, and nothing for a per-user one.
    let list = json(&Run::user(&["--list", "--json"]).deny_userns("EPERM").output());
    assert_eq!(entry(&list, &usable.name)["backend"], "helper", "{list}");
    let e = entry(&list, &mine.name);
    assert_eq!(e["backend"], Value::Null, "{e}");
    assert_eq!(e["may_use"], false, "{e}");
    assert!(e["problem"].as_str().is_some_and(|p| p.contains("setuid helper")), "{e}");

    // The plain --list has the same names.
    let plain = Run::user(&["--list"]).output();
    plain.assert_code(0);
    for d in [&usable.name, &missing.name, &denied.name, &mine.name] {
        assert!(plain.stdout_str().lines().any(|l| l.split('\t').next() == Some(d)), "{}", plain.report());
    }
}

#[test]
fn info_shows_config_volumes_os_access_and_backend() {
    let _g = global_state_lock();
    let d = TestDistro::with_volumes(
        "ev-info",
        Path::new(GUEST),
        r#"["/dev", "/tmp", (src: "/usr/share/doc", dst: "/opt/nowhere", read_only: true)]"#,
        "",
    );
    let out = Run::user(&["--info", &d.name]).output();
    out.assert_code(0);
    let text = out.stdout_str();
    assert!(text.contains(&format!("config:       {} (system)", d.conf.display())), "{text}");
    assert!(text.contains(&format!("directory:    {GUEST} (exists)")), "{text}");
    assert!(text.contains(&format!("os:           {}", guest_pretty_name())), "{text}");
    assert!(text.contains("  /dev -> /dev (rw): target exists"), "{text}");
    assert!(text.contains("  /usr/share/doc -> /opt/nowhere (ro): target missing"), "{text}");
    assert!(text.contains("may use:      yes"), "{text}");
    assert!(text.contains("would run as: userns: user namespaces are usable"), "{text}");

    let v = json(&Run::user(&["--info", &d.name, "--json"]).output());
    assert_eq!(v["name"], d.name.as_str());
    assert_eq!(v["pretty_name"], guest_pretty_name().as_str(), "{v}");
    let vols = v["volumes"].as_array().expect("volumes");
    let targets: Vec<(&str, &str)> =
        vols.iter().map(|v| (v["target"].as_str().unwrap(), v["target_inside"].as_str().unwrap())).collect();
    assert_eq!(
        targets,
        [
            ("/proc", "exists"),
            ("/sys", "exists"),
            ("/dev", "exists"),
            ("/tmp", "exists"),
            ("/opt/nowhere", "missing")
        ],
        "{v}"
    );
    assert_eq!(v["backend"], "userns", "{v}");
    // The keys a config leaves out show with their defaults.
    assert_eq!((&v["ids"], &v["user_db"]), (&Value::from("own"), &Value::from("caller")), "{v}");

    // Under a seccomp filter, why the helper, and for whom it is not usable.
    let v = json(&Run::user(&["--info", &d.name, "--json"]).deny_userns("EPERM").output());
    assert_eq!(v["backend"], "helper", "{v}");
    assert!(v["backend_why"].as_str().is_some_and(|w| w.contains("seccomp")), "{v}");

    let denied =
        TestDistro::with_dir("ev-info-denied", Path::new(GUEST), &format!("users: [{OTHER_USER:?}],"));
    let out = Run::user(&["--info", &denied.name]).output();
    out.assert_code(0);
    assert!(
        out.stdout_str()
            .contains(&format!("may use:      no: user {USER} may not use distro {}", denied.name)),
        "{}",
        out.report()
    );
}

#[test]
fn info_and_list_refuse_what_they_cannot_take() {
    let _g = global_state_lock();
    assert_refused(
        &Run::user(&["--info", "no-such-distro-here"]).output(),
        &["no config for distro no-such-distro-here"],
    );
    assert_refused(&Run::user(&["--info", "../etc"]).output(), &["invalid distro name"]);
    assert_refused(&Run::user(&["--json"]).output(), &["--json goes with --list or --info"]);
    assert_refused(&Run::user(&["--list", "x", "true"]).output(), &["--list takes no distro name"]);
    assert_refused(&Run::user(&["--list", "--doctor"]).output(), &["cannot be combined"]);
}

#[test]
fn doctor_is_quiet_about_a_healthy_machine() {
    let _g = global_state_lock();
    let d = TestDistro::standard("ev-doc-ok");
    let out = Run::user(&["--doctor"]).output();
    out.assert_code(0);
    let text = out.stdout_str();
    assert!(text.lines().all(|l| l.starts_with("ok: ") || l.starts_with("warning: ")), "{text}");
    assert!(text.contains("ok: unprivileged user namespaces are usable"), "{text}");
    assert!(text.contains(&format!("ok: the setuid helper {HELPER} is installed setuid root")), "{text}");
    assert!(text.contains(&format!("ok: the system config directory {CONF_DIR} is trusted")), "{text}");
    assert!(
        text.contains(&format!("ok: distro {}: {GUEST} and every mount point it needs exist", d.name)),
        "{text}"
    );

    let out = Run::root(&["--doctor"]).output();
    out.assert_code(0);
    assert!(out.stdout_str().contains("ok: the caller is root"), "{}", out.report());
}

#[test]
fn doctor_names_a_missing_mount_point_and_the_mkdir_that_fixes_it() {
    let _g = global_state_lock();
    let d = TestDistro::with_volumes("ev-doc-mp", Path::new(GUEST), r#"["/dev", "/srv/not-in-guest"]"#, "");
    let out = Run::user(&["--doctor"]).output();
    out.assert_code(125);
    let want = format!(
        "problem: distro {}: mount points missing inside: {GUEST}/srv/not-in-guest; fix: as root: mkdir -p {GUEST}/srv/not-in-guest",
        d.name
    );
    assert!(out.stdout_str().lines().any(|l| l == want), "no line {want:?}:\n{}", out.report());
    assert!(out.stderr_str().starts_with("distrorun: --doctor found 1 problem"), "{}", out.report());
}

#[test]
fn doctor_names_an_untrusted_system_config() {
    let _g = global_state_lock();
    let d = TestDistro::standard("ev-doc-trust");
    fs::set_permissions(&d.conf, fs::Permissions::from_mode(0o664)).unwrap();
    let out = Run::user(&["--doctor"]).output();
    out.assert_code(125);
    let want = format!("problem: refusing to trust {}: it is writable by its group", d.conf.display());
    assert!(
        out.stdout_str().lines().any(|l| l.starts_with(&want) && l.contains("chmod go-w")),
        "no line starting {want:?} with its fix:\n{}",
        out.report()
    );
}

#[test]
fn doctor_names_a_seccomp_filter_that_forbids_user_namespaces() {
    let _g = global_state_lock();
    let _d = TestDistro::standard("ev-doc-userns");
    let out = Run::user(&["--doctor"]).deny_userns("EPERM").output();
    let text = out.stdout_str();
    // The helper is installed, so the fallback works: a warning, not a problem.
    assert!(
        text.lines()
            .any(|l| l.starts_with("warning: unprivileged user namespaces are not usable: a seccomp filter")),
        "{}",
        out.report()
    );
    out.assert_code(0);
}

#[test]
fn doctor_names_a_zero_user_max_user_namespaces() {
    let _g = global_state_lock();
    let _d = TestDistro::standard("ev-doc-max");
    let run = Run::user(&["--doctor"]);
    let out = match Sysctl::set(MAX_USERNS, "0") {
        Ok(_zero) => run.output(),
        Err(e) => {
            // Root without CAP_SYS_RESOURCE, or under a read-only /proc/sys
            // (in a container), cannot lower the global limit; the same limit of a child user namespace, which
            // is what that namespace's /proc/sys shows, says the same.
            eprintln!("cannot lower the global {MAX_USERNS} ({e}); setting it to 0 in a child user namespace instead");
            let tools = TempDir::new_in(TEST_ROOT, "nsmax");
            let nsmax = compile_support(&tools.path, "attack_nsmax", &[]);
            let mut cmd = Command::new(&nsmax);
            cmd.args(run.argv())
                .env_clear()
                .envs(run.env_map())
                .current_dir(run.cwd_path())
                .stdin(Stdio::null());
            let out = timed(cmd, RUN_TIMEOUT);
            assert_ne!(out.code, Some(99), "attack_nsmax failed: {}", out.report());
            out
        }
    };
    assert!(
        out.stdout_str().lines().any(|l| l.starts_with(
            "warning: unprivileged user namespaces are not usable: user.max_user_namespaces is 0"
        ) && l.contains("fix: sysctl -w user.max_user_namespaces=")),
        "{}",
        out.report()
    );
}

const MAX_USERNS: &str = "/proc/sys/user/max_user_namespaces";

/// Sets a sysctl and puts the old value back on drop, also when a test
/// panics: a sysctl left at 0 would break every later test.
struct Sysctl {
    path: &'static str,
    saved: String,
}

impl Sysctl {
    fn set(path: &'static str, value: &str) -> std::io::Result<Sysctl> {
        let saved = fs::read_to_string(path)?;
        fs::write(path, value)?;
        Ok(Sysctl { path, saved: saved.trim().to_owned() })
    }
}

impl Drop for Sysctl {
    fn drop(&mut self) {
        if let Err(e) = fs::write(self.path, &self.saved) {
            eprintln!("FAILED to restore {} to {}: {e}", self.path, self.saved);
        }
    }
}

#[test]
fn errors_caused_by_the_machine_point_to_doctor() {
    let _g = global_state_lock();
    let mine = UserDistro::standard("ev-hint");
    let out = Run::user(&[&mine.name, "true"]).deny_userns("EPERM").output();
    assert_refused(&out, &["cannot run per-user distro", "through the setuid helper"]);
    let err = out.stderr_str();
    let hint = err.lines().nth(1).unwrap_or("");
    assert!(hint.ends_with("; distrorun --doctor says what this machine lacks"), "{}", out.report());

    let d = TestDistro::standard("ev-hint-strict");
    let out = Run::user(&["--backend", "userns", &d.name, "true"]).deny_userns("EPERM").output();
    assert_refused(&out, &["cannot use the userns backend"]);
    assert!(out.stderr_str().contains("distrorun --doctor says what this machine lacks"), "{}", out.report());
}
