//! Choosing the backend: `auto` uses a user namespace where the kernel
//! allows one and falls back to the setuid helper where it does not, and
//! the command cannot tell which of the two ran it.
//!
//! Every test here takes `global_state_lock()`: one of them lowers the real
//! `user.max_user_namespaces` sysctl, which would make the userns runs of
//! the others fall back too. The lock serialises only within this test
//! binary; cargo runs test binaries one after another, so no other suite
//! runs while the sysctl is lowered.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::process::{Command, Stdio};

use distrorun_testkit::*;

const MAX_USERNS: &str = "/proc/sys/user/max_user_namespaces";
const SEAM_VAR: &str = "DISTRORUN_TEST_USERNS_UNUSABLE";

/// Sets `user.max_user_namespaces` and puts the old value back on drop,
/// which also runs when the test panics.
struct MaxUserNamespaces {
    saved: String,
}

impl MaxUserNamespaces {
    fn set(value: &str) -> std::io::Result<MaxUserNamespaces> {
        let saved = fs::read_to_string(MAX_USERNS)?.trim().to_owned();
        fs::write(MAX_USERNS, value)?;
        Ok(MaxUserNamespaces { saved })
    }
}

impl Drop for MaxUserNamespaces {
    fn drop(&mut self) {
        if let Err(e) = fs::write(MAX_USERNS, &self.saved) {
            // Leaving the sysctl at 0 would break every later test: say so loudly.
            eprintln!("FAILED to restore {MAX_USERNS} to {}: {e}", self.saved);
        }
    }
}

/// The `distrorun: backend ...` line of a -v run.
fn backend_line(out: &Output) -> String {
    let err = out.stderr_str();
    err.lines()
        .find(|l| l.starts_with("distrorun: backend "))
        .unwrap_or_else(|| panic!("no `distrorun: backend` line in:\n{err}"))
        .to_owned()
}

fn assert_fell_back(out: &Output, reasons: &[&str]) {
    out.assert_code(0);
    let line = backend_line(out);
    assert!(line.starts_with("distrorun: backend helper"), "did not fall back to the helper: {line}");
    assert!(
        reasons.iter().any(|r| line.contains(r)),
        "the fallback line gives no reason naming any of {reasons:?}: {line}"
    );
}

/// What the command sees, gathered the same way for every configuration:
/// its environment, uid, gid, working directory and exit status.
struct Seen {
    environ: Vec<u8>,
    ids_and_cwd: String,
    code: Option<i32>,
}

fn configure(run: Run) -> Run {
    run.clear_env()
        .env("HOME", format!("/home/{USER}"))
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("LANG", "C.UTF-8")
        .env("WEIRD", "tab\tnewline\nequals=sign \u{1}")
        .env(OsStr::from_bytes(b"RAW"), OsStr::from_bytes(b"\xff\xfe not utf-8"))
        .cwd(format!("/home/{USER}"))
}

fn observe(make: impl Fn(&[&str]) -> Run) -> Seen {
    let env_run = configure(make(&["/usr/bin/cat", "/proc/self/environ"])).output();
    env_run.assert_ok();
    let ids = configure(make(&["/bin/sh", "-c", "id -u; id -g; pwd -P; exit 42"])).output();
    assert!(ids.stderr.is_empty(), "{}", ids.stderr_str());
    Seen { environ: env_run.stdout, ids_and_cwd: ids.stdout_str(), code: ids.code }
}

fn sorted_entries(environ: &[u8]) -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> =
        environ.split(|b| *b == 0).filter(|e| !e.is_empty()).map(<[u8]>::to_vec).collect();
    v.sort();
    v
}

/// The fallback run must be indistinguishable, to the command, from a run
/// in a user namespace, and both must match what the caller set.
fn assert_same_as_userns(name: &str, fallback: &Seen) {
    let userns = observe(|cmd| {
        let mut args = vec![name];
        args.extend_from_slice(cmd);
        Run::user(&args).backend(Backend::Userns)
    });
    assert_eq!(fallback.environ, userns.environ, "the environment differs between backends");
    let want: Vec<Vec<u8>> = sorted_entries(
        b"HOME=/home/distrorun-test\0PATH=/usr/local/bin:/usr/bin:/bin\0LANG=C.UTF-8\0WEIRD=tab\tnewline\nequals=sign \x01\0RAW=\xff\xfe not utf-8\0",
    );
    assert_eq!(sorted_entries(&fallback.environ), want, "the environment is not the caller's");
    let (uid, gid) = user_ids(USER);
    assert_eq!(fallback.ids_and_cwd, format!("{uid}\n{gid}\n/home/{USER}\n"));
    assert_eq!(fallback.ids_and_cwd, userns.ids_and_cwd);
    assert_eq!(fallback.code, Some(42));
    assert_eq!(fallback.code, userns.code);
}

fn fallback_under_seccomp(errno: &str, reasons: &[&str]) {
    require_setup();
    let _lock = global_state_lock();
    let d = TestDistro::standard("fallback");
    let out = Run::user(&["-v", &d.name, "/bin/true"]).deny_userns(errno).output();
    assert_fell_back(&out, reasons);
    let seen = observe(|cmd| {
        let mut args = vec![d.name.as_str()];
        args.extend_from_slice(cmd);
        Run::user(&args).deny_userns(errno)
    });
    assert_same_as_userns(&d.name, &seen);
}

#[test]
fn seccomp_eperm_on_user_namespaces_falls_back_to_the_helper_unnoticed() {
    fallback_under_seccomp("EPERM", &["EPERM", "Operation not permitted"]);
}

#[test]
fn seccomp_enospc_on_user_namespaces_falls_back_to_the_helper_unnoticed() {
    fallback_under_seccomp("ENOSPC", &["ENOSPC", "No space left on device"]);
}

/// The real kernel limit, not a filter. Where root may write the global
/// sysctl (it needs `CAP_SYS_RESOURCE`), the whole run is compared with a
/// userns run. In a container without that capability, or with /proc/sys
/// mounted read-only (Docker, podman, systemd-nspawn), the global limit is
/// left alone and the limit is set in a child user namespace that maps the ids to themselves
/// (`tests/support/attack_nsmax.c`): there the kernel still answers `ENOSPC`
/// from the same limit check and auto must choose the helper for that
/// reason, but the helper then (rightly) refuses to run inside a user
/// namespace, so only the choice and that refusal can be checked. Where
/// even that cannot be arranged, the test fails and says why.
#[test]
fn max_user_namespaces_zero_falls_back_to_the_helper() {
    require_setup();
    let _lock = global_state_lock();
    let d = TestDistro::standard("sysctl");
    let enospc = ["ENOSPC", "No space left on device"];
    match MaxUserNamespaces::set("0") {
        Ok(sysctl) => {
            let out = Run::user(&["-v", &d.name, "/bin/true"]).output();
            assert_fell_back(&out, &enospc);
            let seen = observe(|cmd| {
                let mut args = vec![d.name.as_str()];
                args.extend_from_slice(cmd);
                Run::user(&args)
            });
            let out = Run::user(&[&d.name, "/bin/true"]).backend(Backend::Userns).output();
            assert_refused(&out, &["No space left on device"]);
            drop(sysctl);
            assert_same_as_userns(&d.name, &seen);
        }
        Err(e) => {
            eprintln!(
                "cannot lower the global {MAX_USERNS} ({e}); setting it to 0 in a child user namespace instead"
            );
            let tools = TempDir::new_in(TEST_ROOT, "nsmax");
            let nsmax = compile_support(&tools.path, "attack_nsmax", &[]);
            let in_ns = |run: Run| {
                let argv = run.argv();
                let mut cmd = Command::new(&nsmax);
                cmd.args(&argv)
                    .env_clear()
                    .envs(run.env_map())
                    .current_dir(run.cwd_path())
                    .stdin(Stdio::null());
                timed(cmd, RUN_TIMEOUT)
            };
            let out = in_ns(Run::user(&["-v", &d.name, "/bin/true"]));
            assert_ne!(out.code, Some(99), "attack_nsmax failed: {}", out.stderr_str());
            let line = backend_line(&out);
            assert!(line.starts_with("distrorun: backend helper"), "did not choose the helper: {line}");
            assert!(enospc.iter().any(|r| line.contains(r)), "no ENOSPC reason: {line}");
            // Setuid root there is root only over that namespace, which a
            // caller can make for itself: the helper's refusal is the one
            // right answer.
            assert_no_panic(&out);
            out.assert_code(125);
            let err = out.stderr_str();
            let refusal = err
                .lines()
                .find(|l| !l.starts_with("distrorun: backend") && !l.starts_with("distrorun: config"))
                .unwrap_or_default();
            assert!(
                refusal.starts_with("distrorun: ") && refusal.contains("user namespace"),
                "the helper did not refuse the user namespace cleanly:\n{err}"
            );
            let out = in_ns(Run::user(&[&d.name, "/bin/true"]).backend(Backend::Userns));
            assert_refused(&out, &["No space left on device"]);
        }
    }
}

#[test]
fn backend_userns_under_seccomp_is_refused_with_the_errno() {
    require_setup();
    let _lock = global_state_lock();
    let d = TestDistro::standard("userns-denied");
    for (errno, text) in [("EPERM", "Operation not permitted"), ("ENOSPC", "No space left on device")] {
        let out = Run::user(&[&d.name, "/bin/true"]).backend(Backend::Userns).deny_userns(errno).output();
        assert_refused(&out, &[text]);
    }
}

#[test]
fn backend_helper_works_without_any_denial() {
    require_setup();
    let _lock = global_state_lock();
    let d = TestDistro::standard("helper-plain");
    let out = Run::user(&["-v", &d.name, "/bin/echo", "ran"]).backend(Backend::Helper).output();
    out.assert_code(0);
    assert_eq!(out.stdout_str(), "ran\n");
    assert!(backend_line(&out).starts_with("distrorun: backend helper"), "{}", out.stderr_str());
    let seen = observe(|cmd| {
        let mut args = vec![d.name.as_str()];
        args.extend_from_slice(cmd);
        Run::user(&args).backend(Backend::Helper)
    });
    assert_same_as_userns(&d.name, &seen);
}

#[test]
fn auto_uses_a_user_namespace_where_the_kernel_allows_it() {
    require_setup();
    let _lock = global_state_lock();
    let d = TestDistro::standard("auto-userns");
    let out = Run::user(&["-v", &d.name, "/bin/true"]).output();
    out.assert_code(0);
    assert!(backend_line(&out).starts_with("distrorun: backend userns"), "{}", out.stderr_str());
}

#[test]
fn config_backend_key_chooses_the_backend() {
    require_setup();
    let _lock = global_state_lock();
    let base = format!(r#"dir: "{GUEST}", mapped_volumes: {STANDARD_VOLUMES}"#);
    let helper = TestDistro::with_config("conf-helper", &format!("({base}, backend: helper)"));
    let out = Run::user(&["-v", &helper.name, "/bin/true"]).output();
    out.assert_code(0);
    assert!(backend_line(&out).starts_with("distrorun: backend helper"), "{}", out.stderr_str());

    let userns = TestDistro::with_config("conf-userns", &format!("({base}, backend: userns)"));
    let out = Run::user(&[&userns.name, "/bin/true"]).deny_userns("EPERM").output();
    assert_refused(&out, &["Operation not permitted"]);
}

// ---------------------------------------------------------------------------
// The AppArmor case (unshare succeeds, the namespace is unusable), through
// the test-only seam
// ---------------------------------------------------------------------------

#[test]
fn unusable_user_namespace_falls_back_to_the_helper() {
    require_setup();
    let _lock = global_state_lock();
    let d = TestDistro::standard("seam-auto");
    let out = Run::user(&["-v", &d.name, "/bin/echo", "ran"]).bin(SEAM_BIN).env(SEAM_VAR, "1").output();
    out.assert_code(0);
    assert_eq!(out.stdout_str(), "ran\n");
    let line = backend_line(&out);
    assert!(line.starts_with("distrorun: backend helper ("), "no fallback with a reason: {line}");
}

#[test]
fn unusable_user_namespace_with_backend_userns_fails_saying_why() {
    require_setup();
    let _lock = global_state_lock();
    let d = TestDistro::standard("seam-userns");
    let out =
        Run::user(&[&d.name, "/bin/true"]).bin(SEAM_BIN).env(SEAM_VAR, "1").backend(Backend::Userns).output();
    assert_refused(&out, &["user namespace"]);
}

#[test]
fn real_binary_ignores_the_seam_variable() {
    require_setup();
    let _lock = global_state_lock();
    let d = TestDistro::standard("seam-real");
    let out = Run::user(&["-v", &d.name, "/usr/bin/cat", "/proc/self/environ"]).env(SEAM_VAR, "1").output();
    out.assert_code(0);
    assert!(backend_line(&out).starts_with("distrorun: backend userns"), "{}", out.stderr_str());
    let entries = sorted_entries(&out.stdout);
    assert!(
        entries.contains(&format!("{SEAM_VAR}=1").into_bytes()),
        "the variable did not reach the command"
    );
}

/// The seam exists only in the test build: neither the installed front end
/// nor the setuid helper contains the variable's name at all.
#[test]
fn only_the_seam_build_knows_the_seam_variable() {
    require_setup();
    let has = |path: &str| {
        let bytes = fs::read(path).unwrap();
        bytes.windows(SEAM_VAR.len()).any(|w| w == SEAM_VAR.as_bytes())
    };
    assert!(has(SEAM_BIN), "{SEAM_BIN} does not mention {SEAM_VAR}: is it the seam build?");
    assert!(!has(BIN), "{BIN} contains the test seam");
    assert!(!has(HELPER), "{HELPER} contains the test seam");
}

// ---------------------------------------------------------------------------
// Per-user configs never reach the helper
// ---------------------------------------------------------------------------

#[test]
fn per_user_config_runs_in_a_user_namespace() {
    require_setup();
    let _lock = global_state_lock();
    let cfg = UserDistro::standard("peruser-ok");
    let out = Run::user(&["-v", &cfg.name, "/bin/true"]).output();
    out.assert_code(0);
    assert!(backend_line(&out).starts_with("distrorun: backend userns"), "{}", out.stderr_str());
}

#[test]
fn per_user_config_with_user_namespaces_forbidden_is_refused_clearly() {
    require_setup();
    let _lock = global_state_lock();
    let cfg = UserDistro::standard("peruser-denied");
    let out = Run::user(&[&cfg.name, "/bin/true"]).deny_userns("EPERM").output();
    assert_refused(&out, &[&cfg.name]);
    let first = out.stderr_str().lines().next().unwrap_or("").to_lowercase();
    assert!(
        ["per-user", "user config", "system config", "namespace"].iter().any(|w| first.contains(w)),
        "the refusal does not say why the helper cannot be used: {first}"
    );

    let out = Run::user(&[&cfg.name, "/bin/true"]).backend(Backend::Helper).output();
    assert_refused(&out, &[&cfg.name]);
}
