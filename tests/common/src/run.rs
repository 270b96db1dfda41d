//! One run of a program as a test user (or root), and what it left.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::setup::require_setup;
use crate::{home_of, BIN, DROPTO, RUN_TIMEOUT, USER};

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

/// The kernel `DISTRORUN_TEST_KERNEL` may name: every run as a test user
/// then happens under dropto's filter that answers ENOSYS for each system
/// call newer than it, so that a suite runs on the older paths.
pub const OLD_KERNEL: &str = "4.18";

/// Whether this test process was asked to run every program as on
/// [`OLD_KERNEL`]; any other value is a mistake in the test command.
pub fn old_kernel_requested() -> bool {
    match std::env::var("DISTRORUN_TEST_KERNEL") {
        Err(_) => false,
        Ok(v) if v == OLD_KERNEL => true,
        Ok(v) => panic!("DISTRORUN_TEST_KERNEL={v}: the test harness can only simulate Linux {OLD_KERNEL}"),
    }
}

/// One run of a binary. By default: BIN as USER via dropto, with a small
/// deterministic environment, cwd "/", stdin empty, stdout and stderr captured.
#[derive(Clone, Debug)]
pub struct Run {
    program: PathBuf,
    user: Option<String>,
    deny_userns: Option<String>,
    old_kernel: bool,
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
            old_kernel: old_kernel_requested(),
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

    /// Runs another binary, e.g. `SEAM_BIN` or `HELPER`, or any program.
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
        p.as_ref().clone_into(&mut self.cwd);
        self
    }

    /// Runs under dropto's filter as on [`OLD_KERNEL`], whatever the
    /// environment asks.
    pub fn old_kernel(mut self) -> Run {
        self.old_kernel = true;
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
    /// `std::process::Command` passes a cleared environment in that order.
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
            if self.old_kernel {
                argv.push(format!("--kernel={OLD_KERNEL}").into());
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
        if self.old_kernel {
            let _ = write!(s, " (calls newer than Linux {OLD_KERNEL} fail with ENOSYS)");
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

    /// The fully built command, for `spawn()` or to change its stdio.
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
        finish(child, self.stdin.clone(), self.timeout, &description)
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
    LAST_RUN.with(|l| description.clone_into(&mut l.borrow_mut()));
    Output { status, code: status.code(), stdout, stderr }
}

/// Runs `cmd` with captured output, failing the test (instead of hanging
/// it) when the run takes longer than `limit`.
pub fn timed(mut cmd: Command, limit: Duration) -> Output {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let shown = format!("{cmd:?}");
    let child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start {shown}: {e}"));
    finish(child, None, limit, &shown)
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
    /// finish(), so that assertions on an Output can say what it came from.
    static LAST_RUN: RefCell<String> = const { RefCell::new(String::new()) };
}

#[derive(Debug)]
pub struct Output {
    pub status: ExitStatus,
    pub code: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl From<std::process::Output> for Output {
    fn from(o: std::process::Output) -> Output {
        Output { status: o.status, code: o.status.code(), stdout: o.stdout, stderr: o.stderr }
    }
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
