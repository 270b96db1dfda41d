//! Support for the integration tests. They run as root (after `ci/test-setup`)
//! and run the installed binaries as an unprivileged user through `dropto`,
//! because the behaviour under test is what an ordinary user gets.
//!
//! Each test crate uses a different subset of this module.
#![allow(dead_code)]

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fmt::Write as _;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{chown, MetadataExt, PermissionsExt};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

pub const BIN: &str = "/var/lib/distrorun-test/bin/distrorun";
pub const SEAM_BIN: &str = "/var/lib/distrorun-test/bin/distrorun-seam";
pub const HELPER: &str = "/var/lib/distrorun-test/libexec/distrorun/distrorun-helper";
pub const DROPTO: &str = "/var/lib/distrorun-test/bin/dropto";
pub const CONF_DIR: &str = "/var/lib/distrorun-test/etc/distrorun.d";
pub const SYSCONFDIR: &str = "/var/lib/distrorun-test/etc";
pub const LIBEXECDIR: &str = "/var/lib/distrorun-test/libexec";
pub const ROOTS_DIR: &str = "/var/lib/distrorun-test/roots";
pub const GUEST: &str = "/var/cache/distrorun-test/guest";
pub const GUEST_SUITE_FILE: &str = "/var/cache/distrorun-test/guest.suite";
pub const USER: &str = "distrorun-test";
pub const OTHER_USER: &str = "distrorun-other";
pub const GROUP: &str = "distrorun-tg";
pub const STANDARD_VOLUMES: &str = r#"["/dev", "/home", "/tmp", "/run"]"#;

/// Longest a single run may take before the test fails instead of hanging.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(60);

const SETUP_HINT: &str = "run `make test` (or `ci/test-setup` as root, then `cargo test`)";

fn check_setup() -> Result<(), String> {
    if !nix::unistd::geteuid().is_root() {
        return Err("the integration tests must run as root: they drop to the test users themselves".into());
    }
    let suite =
        fs::read_to_string(GUEST_SUITE_FILE).map_err(|e| format!("cannot read {GUEST_SUITE_FILE}: {e}"))?;
    if suite.trim().is_empty() {
        return Err(format!("{GUEST_SUITE_FILE} is empty"));
    }
    for f in ["bin/sh", "usr/bin/cat", "etc/os-release"] {
        let p = Path::new(GUEST).join(f);
        fs::metadata(&p).map_err(|e| format!("the guest tree lacks {}: {e}", p.display()))?;
    }
    for bin in [BIN, SEAM_BIN, DROPTO] {
        let m = fs::metadata(bin).map_err(|e| format!("{bin}: {e}"))?;
        if m.uid() != 0 || m.permissions().mode() & 0o7777 != 0o755 {
            return Err(format!(
                "{bin} must be root-owned with mode 0755, is uid {} mode {:o}",
                m.uid(),
                m.permissions().mode() & 0o7777
            ));
        }
    }
    let m = fs::metadata(HELPER).map_err(|e| format!("{HELPER}: {e}"))?;
    if m.uid() != 0 || m.gid() != 0 || m.permissions().mode() & 0o7777 != 0o4755 {
        return Err(format!(
            "{HELPER} must be root:root with mode 4755, is {}:{} mode {:o}",
            m.uid(),
            m.gid(),
            m.permissions().mode() & 0o7777
        ));
    }
    for u in [USER, OTHER_USER] {
        match nix::unistd::User::from_name(u) {
            Ok(Some(_)) => {}
            Ok(None) => return Err(format!("the user {u} does not exist")),
            Err(e) => return Err(format!("looking up the user {u}: {e}")),
        }
    }
    let group = match nix::unistd::Group::from_name(GROUP) {
        Ok(Some(g)) => g,
        Ok(None) => return Err(format!("the group {GROUP} does not exist")),
        Err(e) => return Err(format!("looking up the group {GROUP}: {e}")),
    };
    if !group.mem.iter().any(|m| m == USER) {
        return Err(format!("{USER} is not a member of {GROUP}"));
    }
    Ok(())
}

/// Panics with the reason (and the fix: run `make test`) unless the test
/// environment is complete.
pub fn require_setup() {
    static SETUP: OnceLock<Result<(), String>> = OnceLock::new();
    if let Err(why) = SETUP.get_or_init(check_setup) {
        panic!("the test environment is not ready: {why}; {SETUP_HINT}");
    }
}

pub fn guest_suite() -> String {
    fs::read_to_string(GUEST_SUITE_FILE)
        .unwrap_or_else(|e| panic!("cannot read {GUEST_SUITE_FILE}: {e}; {SETUP_HINT}"))
        .trim()
        .to_owned()
}

/// The uid and primary gid of a user.
pub fn user_ids(name: &str) -> (u32, u32) {
    match nix::unistd::User::from_name(name) {
        Ok(Some(u)) => (u.uid.as_raw(), u.gid.as_raw()),
        other => panic!("cannot look up the user {name}: {other:?}"),
    }
}

pub fn group_id(name: &str) -> u32 {
    match nix::unistd::Group::from_name(name) {
        Ok(Some(g)) => g.gid.as_raw(),
        other => panic!("cannot look up the group {name}: {other:?}"),
    }
}

pub fn home_of(name: &str) -> PathBuf {
    match nix::unistd::User::from_name(name) {
        Ok(Some(u)) => u.dir,
        other => panic!("cannot look up the user {name}: {other:?}"),
    }
}

/// A name no other test in this run uses, valid as a distro name:
/// "TAG-PID-COUNTER".
pub fn unique(tag: &str) -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    format!("{tag}-{}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed))
}

fn write_root_file(path: &Path, contents: &[u8], mode: u32) {
    fs::write(path, contents).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    chown(path, Some(0), Some(0)).unwrap_or_else(|e| panic!("chown {}: {e}", path.display()));
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}

/// A system config CONF_DIR/NAME.conf (root-owned 0644), removed on drop.
#[derive(Debug)]
pub struct TestDistro {
    pub name: String,
    pub conf: PathBuf,
}

impl TestDistro {
    /// `ron` is written verbatim.
    pub fn with_config(tag: &str, ron: &str) -> TestDistro {
        require_setup();
        let name = unique(tag);
        let conf = Path::new(CONF_DIR).join(format!("{name}.conf"));
        write_root_file(&conf, ron.as_bytes(), 0o644);
        TestDistro { name, conf }
    }

    /// The shared guest with the standard volumes.
    pub fn standard(tag: &str) -> TestDistro {
        Self::with_dir(tag, Path::new(GUEST), "")
    }

    /// `dir` with the standard volumes, plus `extra_keys` (each ending in a
    /// comma, e.g. "allow_setuid: true,").
    pub fn with_dir(tag: &str, dir: &Path, extra_keys: &str) -> TestDistro {
        Self::with_config(tag, &ron_config(dir, STANDARD_VOLUMES, extra_keys))
    }

    /// `dir` with the given volume list (RON text) and extra keys.
    pub fn with_volumes(tag: &str, dir: &Path, volumes: &str, extra_keys: &str) -> TestDistro {
        Self::with_config(tag, &ron_config(dir, volumes, extra_keys))
    }
}

impl Drop for TestDistro {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.conf);
    }
}

/// A config in RON with `dir`, `mapped_volumes` and any further keys.
pub fn ron_config(dir: &Path, volumes: &str, extra_keys: &str) -> String {
    format!(
        "(\n    dir: {:?},\n    mapped_volumes: {volumes},\n    {extra_keys}\n)\n",
        dir.to_str().expect("test paths are UTF-8")
    )
}

/// A per-user config ~USER/.config/distrorun.d/NAME.conf owned by the user,
/// removed on drop.
#[derive(Debug)]
pub struct UserDistro {
    pub name: String,
    pub conf: PathBuf,
}

impl UserDistro {
    pub fn new(user: &str, name: &str, ron: &str) -> UserDistro {
        require_setup();
        let (uid, gid) = user_ids(user);
        let home = home_of(user);
        let mut dir = home.clone();
        for part in [".config", "distrorun.d"] {
            dir.push(part);
            match fs::create_dir(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => panic!("cannot create {}: {e}", dir.display()),
            }
            chown(&dir, Some(uid), Some(gid)).unwrap_or_else(|e| panic!("chown {}: {e}", dir.display()));
            fs::set_permissions(&dir, fs::Permissions::from_mode(0o755))
                .unwrap_or_else(|e| panic!("chmod {}: {e}", dir.display()));
        }
        let conf = dir.join(format!("{name}.conf"));
        fs::write(&conf, ron).unwrap_or_else(|e| panic!("cannot write {}: {e}", conf.display()));
        chown(&conf, Some(uid), Some(gid)).unwrap_or_else(|e| panic!("chown {}: {e}", conf.display()));
        fs::set_permissions(&conf, fs::Permissions::from_mode(0o644))
            .unwrap_or_else(|e| panic!("chmod {}: {e}", conf.display()));
        UserDistro { name: name.to_owned(), conf }
    }
}

impl Drop for UserDistro {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.conf);
    }
}

/// A hard-linked copy of the guest (`cp -al`) under ROOTS_DIR, root-owned,
/// that a test may change by adding or removing entries. Files are shared
/// with the guest, so they must never be written in place. Removed on drop,
/// unless something is mounted below it.
#[derive(Debug)]
pub struct GuestCopy {
    pub path: PathBuf,
}

impl GuestCopy {
    pub fn new(tag: &str) -> GuestCopy {
        require_setup();
        let path = Path::new(ROOTS_DIR).join(unique(tag));
        let out = Command::new("cp").arg("-al").arg(GUEST).arg(&path).output().expect("cannot run cp");
        assert!(
            out.status.success(),
            "cp -al {GUEST} {} failed: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        GuestCopy { path }
    }

    /// Creates a directory (and its parents) inside the copy, root-owned 0755.
    pub fn mkdir(&self, inside: &str) -> PathBuf {
        let p = self.inside(inside);
        fs::create_dir_all(&p).unwrap_or_else(|e| panic!("mkdir -p {}: {e}", p.display()));
        p
    }

    /// The host path of an absolute path inside the copy.
    pub fn inside(&self, inside: &str) -> PathBuf {
        self.path.join(inside.trim_start_matches('/'))
    }
}

impl Drop for GuestCopy {
    fn drop(&mut self) {
        let mounts = host_mounts_under(&self.path);
        if !mounts.is_empty() {
            // Deleting now would delete through the mounts into host data.
            eprintln!(
                "NOT removing {}: mounts below it on the host:\n{}",
                self.path.display(),
                mounts.join("\n")
            );
            return;
        }
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// A fresh directory, by default root-owned 0755, removed on drop.
#[derive(Debug)]
pub struct TempDir {
    pub path: PathBuf,
}

impl TempDir {
    /// Under /tmp, which the standard volumes map into the guest.
    pub fn new(tag: &str) -> TempDir {
        Self::new_in("/tmp", tag)
    }

    /// Under `parent`, e.g. /var/tmp, which is not mapped into the guest.
    pub fn new_in(parent: &str, tag: &str) -> TempDir {
        let path = Path::new(parent).join(format!("distrorun-test-{}", unique(tag)));
        fs::create_dir(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755))
            .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
        TempDir { path }
    }

    /// Under /tmp, owned by `user`, so that commands run as that user can
    /// leave marker files there.
    pub fn owned_by(user: &str, tag: &str) -> TempDir {
        let d = Self::new(tag);
        let (uid, gid) = user_ids(user);
        chown(&d.path, Some(uid), Some(gid)).unwrap_or_else(|e| panic!("chown {}: {e}", d.path.display()));
        d
    }

    pub fn join(&self, p: impl AsRef<Path>) -> PathBuf {
        self.path.join(p)
    }

    /// The directory's path as &str (test paths are UTF-8).
    pub fn str(&self) -> &str {
        self.path.to_str().expect("test paths are UTF-8")
    }

    /// Writes a root-owned file with the given mode and group.
    pub fn file(&self, name: &str, contents: &[u8], mode: u32, gid: u32) -> PathBuf {
        let p = self.join(name);
        write_root_file(&p, contents, mode);
        chown(&p, Some(0), Some(gid)).unwrap_or_else(|e| panic!("chown {}: {e}", p.display()));
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if host_mounts_under(&self.path).is_empty() {
            let _ = fs::remove_dir_all(&self.path);
        } else {
            eprintln!("NOT removing {}: mounts below it", self.path.display());
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Userns,
    Helper,
}

impl Backend {
    pub fn flag(self) -> &'static str {
        match self {
            Backend::Userns => "userns",
            Backend::Helper => "helper",
        }
    }
}

/// One run of a binary. By default: BIN as USER via dropto, with a small
/// deterministic environment, cwd "/", stdin empty, stdout and stderr captured.
#[derive(Clone, Debug)]
pub struct Run {
    program: PathBuf,
    user: Option<String>,
    deny_userns: Option<String>,
    args: Vec<OsString>,
    env: BTreeMap<OsString, OsString>,
    cwd: PathBuf,
    stdin: Option<Vec<u8>>,
    timeout: Duration,
}

impl Run {
    fn new(user: Option<&str>, args: &[&str]) -> Run {
        require_setup();
        let mut env = BTreeMap::new();
        let mut set = |k: &str, v: &str| env.insert(OsString::from(k), OsString::from(v));
        let login = user.unwrap_or("root");
        let home = home_of(login);
        set("HOME", home.to_str().expect("home directories here are UTF-8"));
        set("USER", login);
        set("LOGNAME", login);
        set("PATH", "/usr/local/bin:/usr/bin:/bin");
        set("SHELL", "/bin/bash");
        set("LANG", "C.UTF-8");
        Run {
            program: PathBuf::from(BIN),
            user: user.map(str::to_owned),
            deny_userns: None,
            args: args.iter().map(OsString::from).collect(),
            env,
            cwd: PathBuf::from("/"),
            stdin: None,
            timeout: RUN_TIMEOUT,
        }
    }

    /// As USER.
    pub fn user(args: &[&str]) -> Run {
        Self::new(Some(USER), args)
    }

    pub fn as_user(user: &str, args: &[&str]) -> Run {
        Self::new(Some(user), args)
    }

    /// Directly as root, without dropto.
    pub fn root(args: &[&str]) -> Run {
        Self::new(None, args)
    }

    /// Runs another binary, e.g. SEAM_BIN or HELPER, or any program.
    pub fn bin(mut self, path: &str) -> Run {
        self.program = PathBuf::from(path);
        self
    }

    /// Prepends "--backend FLAG" to the arguments.
    pub fn backend(mut self, b: Backend) -> Run {
        self.args.splice(0..0, [OsString::from("--backend"), OsString::from(b.flag())]);
        self
    }

    pub fn arg(mut self, a: &str) -> Run {
        self.args.push(a.into());
        self
    }

    /// Appends a raw, possibly non-UTF-8, argument.
    pub fn arg_os(mut self, a: impl AsRef<OsStr>) -> Run {
        self.args.push(a.as_ref().to_owned());
        self
    }

    pub fn env(mut self, k: impl AsRef<OsStr>, v: impl AsRef<OsStr>) -> Run {
        self.env.insert(k.as_ref().to_owned(), v.as_ref().to_owned());
        self
    }

    pub fn env_remove(mut self, k: &str) -> Run {
        self.env.remove(OsStr::new(k));
        self
    }

    /// No environment at all.
    pub fn clear_env(mut self) -> Run {
        self.env.clear();
        self
    }

    pub fn cwd(mut self, p: impl AsRef<Path>) -> Run {
        self.cwd = p.as_ref().to_owned();
        self
    }

    /// Makes creating a user namespace fail with ERRNO ("EPERM" or "ENOSPC").
    pub fn deny_userns(mut self, errno: &str) -> Run {
        self.deny_userns = Some(errno.to_owned());
        self
    }

    pub fn stdin(mut self, bytes: &[u8]) -> Run {
        self.stdin = Some(bytes.to_vec());
        self
    }

    pub fn timeout(mut self, t: Duration) -> Run {
        self.timeout = t;
        self
    }

    /// The working directory the program starts in.
    pub fn cwd_path(&self) -> &Path {
        &self.cwd
    }

    /// The variables the program starts with.
    pub fn env_map(&self) -> &BTreeMap<OsString, OsString> {
        &self.env
    }

    /// The environment the program starts with, exactly as the bytes of
    /// /proc/PID/environ: the variables sorted by name, because
    /// std::process::Command passes a cleared environment in that order.
    pub fn environ_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for (k, v) in &self.env {
            out.extend_from_slice(k.as_bytes());
            out.push(b'=');
            out.extend_from_slice(v.as_bytes());
            out.push(0);
        }
        out
    }

    /// The program and arguments actually executed, dropto included.
    pub fn argv(&self) -> Vec<OsString> {
        let mut argv = Vec::new();
        if let Some(user) = &self.user {
            argv.push(OsString::from(DROPTO));
            if let Some(e) = &self.deny_userns {
                argv.push(format!("--deny-userns={e}").into());
            }
            argv.push(user.into());
            argv.push("--".into());
        }
        argv.push(self.program.clone().into_os_string());
        argv.extend(self.args.iter().cloned());
        argv
    }

    /// The argv quoted for sh, e.g. to run it under script(1).
    pub fn shell_words(&self) -> String {
        self.argv().iter().map(|a| shell_quote(a)).collect::<Vec<_>>().join(" ")
    }

    /// A readable rendering for failure messages.
    pub fn describe(&self) -> String {
        let mut s = String::new();
        if let Some(u) = &self.user {
            let _ = write!(s, "as {u}");
        } else {
            s.push_str("as root");
        }
        if let Some(e) = &self.deny_userns {
            let _ = write!(s, " (user namespaces denied with {e})");
        }
        let _ = write!(s, " in {}: ", self.cwd.display());
        s.push_str(
            &std::iter::once(self.program.clone().into_os_string())
                .chain(self.args.iter().cloned())
                .map(|a| shell_quote(&a))
                .collect::<Vec<_>>()
                .join(" "),
        );
        s
    }

    /// The fully built command, for spawn() or to change its stdio.
    pub fn command(&self) -> Command {
        let argv = self.argv();
        let mut c = Command::new(&argv[0]);
        c.args(&argv[1..])
            .env_clear()
            .envs(&self.env)
            .current_dir(&self.cwd)
            .stdin(if self.stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    }

    /// Runs to completion; panics if it takes longer than the timeout.
    pub fn output(self) -> Output {
        let description = self.describe();
        let child = self.command().spawn().unwrap_or_else(|e| panic!("cannot start {description}: {e}"));
        let out = finish(child, self.stdin.clone(), self.timeout, &description);
        LAST_RUN.with(|l| *l.borrow_mut() = description);
        out
    }
}

/// Waits for `child`, feeding it `stdin` and collecting stdout and stderr
/// (both must be piped). A run longer than `limit` is killed and fails the
/// test, so a hang can never stall the suite.
pub fn finish(mut child: Child, stdin: Option<Vec<u8>>, limit: Duration, description: &str) -> Output {
    let stdin_writer = match (stdin, child.stdin.take()) {
        (Some(bytes), Some(mut pipe)) => Some(thread::spawn(move || {
            // The command may exit without reading; that is its business.
            let _ = pipe.write_all(&bytes);
        })),
        _ => None,
    };
    let mut out_pipe = child.stdout.take().expect("stdout is piped");
    let mut err_pipe = child.stderr.take().expect("stderr is piped");
    let out_reader = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out_pipe.read_to_end(&mut v);
        v
    });
    let err_reader = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err_pipe.read_to_end(&mut v);
        v
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("timed out after {limit:?}: {description}");
            }
            Ok(None) => thread::sleep(Duration::from_millis(2)),
            Err(e) => panic!("waiting for {description}: {e}"),
        }
    };
    // A grandchild that keeps the pipes open would block these joins; the
    // commands the tests run do not leave such processes behind.
    let stdout = out_reader.join().expect("stdout reader");
    let stderr = err_reader.join().expect("stderr reader");
    if let Some(w) = stdin_writer {
        let _ = w.join();
    }
    Output { status, code: status.code(), stdout, stderr }
}

/// Quotes a word for sh.
pub fn shell_quote(a: &OsStr) -> String {
    let s = String::from_utf8_lossy(a.as_bytes());
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"/-_.,=:+@%".contains(&b)) {
        s.into_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

thread_local! {
    /// What this thread (each test has its own) last ran through
    /// Run::output(), so that assertions on an Output can say what it came from.
    static LAST_RUN: RefCell<String> = const { RefCell::new(String::new()) };
}

#[derive(Debug)]
pub struct Output {
    pub status: ExitStatus,
    pub code: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Output {
    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    pub fn stderr_str(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }

    /// The run (the last one this test made), its status and its output, for
    /// failure messages.
    pub fn report(&self) -> String {
        let how = match (self.status.code(), self.status.signal()) {
            (Some(c), _) => format!("exit status {c}"),
            (None, Some(s)) => format!("killed by signal {s}"),
            _ => format!("{:?}", self.status),
        };
        format!(
            "{}\n  {how}\n  stdout: {:?}\n  stderr: {:?}",
            LAST_RUN.with(|l| l.borrow().clone()),
            self.stdout_str(),
            self.stderr_str()
        )
    }

    /// Panics, showing the run, unless the exit status is `code`.
    #[track_caller]
    pub fn assert_code(&self, code: i32) -> &Self {
        assert_eq!(self.code, Some(code), "expected exit status {code}:\n{}", self.report());
        self
    }

    /// Exit status 0 and nothing on stderr.
    #[track_caller]
    pub fn assert_ok(&self) -> &Self {
        assert!(
            self.code == Some(0) && self.stderr.is_empty(),
            "expected success and an empty stderr:\n{}",
            self.report()
        );
        self
    }

    /// Status 125 and an error in distrorun's format: the first stderr line
    /// starts "distrorun: ", nothing on stdout, no panic.
    #[track_caller]
    pub fn assert_own_error(&self) -> &Self {
        self.assert_code(125);
        let err = self.stderr_str();
        assert!(
            err.starts_with("distrorun: "),
            "the error must start with \"distrorun: \":\n{}",
            self.report()
        );
        assert!(!err.contains("panicked"), "panicked:\n{}", self.report());
        assert!(self.stdout.is_empty(), "nothing belongs on stdout:\n{}", self.report());
        self
    }

    /// Panics unless stderr contains `needle`.
    #[track_caller]
    pub fn assert_stderr_has(&self, needle: &str) -> &Self {
        assert!(self.stderr_str().contains(needle), "stderr should mention {needle:?}:\n{}", self.report());
        self
    }
}

/// Unescapes a mountinfo field (spaces and the like appear as \040).
fn mountinfo_unescape(field: &str) -> String {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(u8::is_ascii_digit) {
            let digit = |j: usize| u32::from(b[i + j] - b'0');
            out.push((digit(1) * 64 + digit(2) * 8 + digit(3)) as u8);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
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
                tags: f[6..sep].iter().map(|s| s.to_string()).collect(),
                fs_type: f.get(sep + 1).unwrap_or(&"").to_string(),
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

/// Serialises tests that change global state (sysctls, host mounts); hold the
/// guard for the test's duration.
pub fn global_state_lock() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    // One failed test must not fail every later one.
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Waits until `path` exists, panicking with `what` after the timeout.
pub fn wait_for_file(path: &Path, timeout: Duration, what: &str) {
    let deadline = Instant::now() + timeout;
    while !path.exists() {
        assert!(Instant::now() < deadline, "{what}: {} did not appear within {timeout:?}", path.display());
        thread::sleep(Duration::from_millis(5));
    }
}

/// Runs the same test body once per backend: generates `mod userns` and
/// `mod helper`, each with one #[test] per function, the body seeing the
/// backend as the function's parameter.
#[macro_export]
macro_rules! per_backend {
    ($( $(#[$meta:meta])* fn $name:ident($b:ident) $body:block )*) => {
        mod userns {
            #[allow(unused_imports)]
            use super::*;
            $(
                $(#[$meta])*
                #[test]
                fn $name() {
                    let $b = $crate::common::Backend::Userns;
                    $body
                }
            )*
        }
        mod helper {
            #[allow(unused_imports)]
            use super::*;
            $(
                $(#[$meta])*
                #[test]
                fn $name() {
                    let $b = $crate::common::Backend::Helper;
                    $body
                }
            )*
        }
    };
}
