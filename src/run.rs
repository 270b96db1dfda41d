//! One run, from the command line to the exec: resolve the config into a
//! plan, pick the backend, and hand the plan to the engine.

use std::ffi::{CString, OsString};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use distrorun_config::access::{self, Caller};
use distrorun_config::{load, paths, plan, Command, Found, Origin, Plan, Request};
use distrorun_helper::{envfd, exec, rootfs, sys, userns, Env, Error, Log};
use nix::fcntl::{fcntl, open, FcntlArg, OFlag};
use nix::sys::stat::Mode;
use nix::unistd::{execve, getresgid, getresuid};

use crate::backend::{self, Decision};
use crate::cli::{self, Options, Parsed};

/// Runs distrorun. Returns only for `--help`, `--version`, `--list` and
/// `--dry-run`; otherwise the process becomes the command, or fails.
pub fn run(argv: impl IntoIterator<Item = OsString>) -> Result<(), Error> {
    let (opts, name, command) = match cli::parse(argv)? {
        Parsed::Print(text) => {
            // Asked for explicitly; a closed stdout is not worth an error.
            let _ = std::io::stdout().write_all(text.as_bytes());
            return Ok(());
        }
        Parsed::List => return list(),
        Parsed::Run { opts, name, command } => (opts, name, command),
    };
    let log = Log { verbose: opts.verbose || opts.dry_run };
    let caller = caller()?;
    let found = find_config(&name)?;
    let origin = if found.origin == Origin::System { "system" } else { "user" };
    log.step(format_args!("config {} ({origin})", found.path.display()));
    access::check(&found.name, &found.distro, &caller)?;
    let decision = backend::decide(opts.backend, &found, &caller)?;
    if opts.dry_run {
        describe(&make_plan(&found, &opts, command)?, &decision, &log);
        return Ok(());
    }
    // The plan is made only where it is carried out: the helper makes its
    // own from the trusted config, and is told nothing it would have to trust.
    match enter(decision, &found, &caller, &log)? {
        Entered::Namespaces => Err(build_and_exec(&make_plan(&found, &opts, command)?, &log)),
        Entered::Nothing => Err(exec_helper(&opts, &name, &command)),
    }
}

/// Where [`enter`] left the process.
enum Entered {
    /// In the backend's namespaces: the engine runs here.
    Namespaces,
    /// Unchanged: the setuid helper takes over.
    Nothing,
}

/// Enters the namespaces of the chosen backend, falling back to the helper
/// where the kernel forbids user namespaces and the choice allows it.
fn enter(decision: Decision, found: &Found, caller: &Caller, log: &Log) -> Result<Entered, Error> {
    let decision = match decision {
        Decision::Userns { strict } => match userns::enter(caller.uid, caller.gid, backend::simulation())? {
            Ok(()) => Decision::Userns { strict },
            Err(forbidden) => backend::fall_back(found, forbidden, strict)?,
        },
        Decision::Root => {
            userns::enter_mount_namespace()?;
            Decision::Root
        }
        helper @ Decision::Helper { .. } => helper,
    };
    log.step(format_args!("backend {}", decision.describe()));
    Ok(match decision {
        Decision::Helper { .. } => Entered::Nothing,
        Decision::Root | Decision::Userns { .. } => Entered::Namespaces,
    })
}

/// The userns and root backends: the engine runs in this very process.
fn build_and_exec(plan: &Plan, log: &Log) -> Error {
    let steps = || -> Result<Vec<CString>, Error> {
        let dir = open(&plan.root, OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
            .map_err(|e| {
                Error::sys(format!("open the directory {} of distro {}", plan.root.display(), plan.distro), e)
            })?;
        rootfs::enter(plan, dir, log)?;
        exec::enter_workdir(plan, log)?;
        exec::argv(plan)
    };
    match steps() {
        Ok(argv) => exec::exec(plan, &argv, &Env::Inherited, log),
        Err(e) => e,
    }
}

/// The helper backend: exec the setuid helper by its compiled-in path, with
/// an empty environment, the caller's environment on a sealed memfd, and
/// only what it cannot derive itself: the name, the options and the command.
fn exec_helper(opts: &Options, name: &str, command: &[OsString]) -> Error {
    let helper = paths::helper_path();
    let fd = match envfd::to_memfd(&sys::current_environ()) {
        Ok(fd) => fd,
        Err(e) => return e,
    };
    // The helper needs a free descriptor to start (a dynamically linked build
    // needs it in its loader, which fails with a message that reads like
    // "not found"). The probe's copy is close-on-exec, so exec frees it again.
    if let Err(e) = fcntl(&fd, FcntlArg::F_DUPFD_CLOEXEC(0)) {
        return Error::sys("keep a file descriptor free for the setuid helper", e)
            .with_hint("raise the open-files limit (ulimit -n)");
    }
    let mut words: Vec<Vec<u8>> = vec![
        helper.as_os_str().as_bytes().to_vec(),
        b"--env-fd".to_vec(),
        fd.as_raw_fd().to_string().into_bytes(),
    ];
    if opts.verbose {
        words.push(b"-v".to_vec());
    }
    if let Some(dir) = &opts.directory {
        words.extend([b"-d".to_vec(), dir.as_os_str().as_bytes().to_vec()]);
    }
    for volume in &opts.extra_volume {
        words.extend([b"--extra-volume".to_vec(), volume.as_os_str().as_bytes().to_vec()]);
    }
    words.extend([name.as_bytes().to_vec(), b"--".to_vec()]);
    words.extend(command.iter().map(|w| w.as_bytes().to_vec()));
    let argv: Result<Vec<CString>, _> = words.into_iter().map(CString::new).collect();
    let Ok(argv) = argv else {
        return Error::msg("an argument contains a NUL byte");
    };
    if let Err(e) = sys::restore_sigpipe() {
        return Error::sys("restore the SIGPIPE disposition", e);
    }
    let Err(e) = execve(argv[0].as_c_str(), &argv, &[] as &[CString]);
    Error::sys(format!("run the setuid helper {}", helper.display()), e)
}

/// Who runs distrorun. It must never run with privilege it was not started
/// with: the privileged part is the helper, and only the helper.
fn caller() -> Result<Caller, Error> {
    let (u, g) = match (getresuid(), getresgid()) {
        (Ok(u), Ok(g)) => (u, g),
        (Err(e), _) | (_, Err(e)) => return Err(Error::sys("read the caller's ids", e)),
    };
    if u.real != u.effective || u.real != u.saved || g.real != g.effective || g.real != g.saved {
        return Err(Error::msg(
            "distrorun must not be installed setuid or setgid; the setuid part is distrorun-helper",
        ));
    }
    let groups = sys::supplementary_groups().map_err(|e| Error::sys("read the caller's groups", e))?;
    Ok(Caller { uid: u.real, gid: g.real, groups })
}

fn find_config(name: &str) -> Result<Found, Error> {
    Ok(load::find(name, &paths::system_config_dir(), user_config_dir().as_deref())?)
}

fn user_config_dir() -> Option<PathBuf> {
    let xdg = std::env::var_os("XDG_CONFIG_HOME");
    let home = std::env::var_os("HOME");
    load::user_config_dir(xdg.as_deref().map(Path::new), home.as_deref().map(Path::new))
}

/// `--list`: one line per distro, `NAME<TAB>system|user<TAB>CONFIG`.
fn list() -> Result<(), Error> {
    let (system, user) = (paths::system_config_dir(), user_config_dir());
    let mut out = String::new();
    for (name, origin) in load::list(&system, user.as_deref()) {
        let (dir, kind) = match origin {
            Origin::System => (system.as_path(), "system"),
            Origin::User => (user.as_deref().unwrap_or(Path::new("")), "user"),
        };
        out.push_str(&format!("{name}\t{kind}\t{}\n", dir.join(format!("{name}.conf")).display()));
    }
    // Asked for explicitly; a closed stdout is not worth an error.
    let _ = std::io::stdout().write_all(out.as_bytes());
    Ok(())
}

fn make_plan(found: &Found, opts: &Options, command: Vec<OsString>) -> Result<Plan, Error> {
    let cwd = plan::base_dir(std::env::var_os("PWD").as_deref(), opts.directory.as_deref())?;
    Ok(Plan::new(Request {
        found,
        extra_volumes: &opts.extra_volume,
        directory: opts.directory.as_deref(),
        cwd: &cwd,
        command,
        shell: std::env::var_os("SHELL").map(PathBuf::from),
    })?)
}

/// `--dry-run`: the plan, in the words `-v` uses, and nothing done.
fn describe(plan: &Plan, decision: &Decision, log: &Log) {
    log.step(format_args!("backend {}", decision.describe()));
    log.step(format_args!("root {} ({})", plan.root.display(), plan.root_attrs));
    for m in &plan.mounts {
        let optional = if m.optional { ", if it exists" } else { "" };
        log.step(format_args!("mount {} on {} ({}){optional}", m.src.display(), m.dst.display(), m.attrs));
    }
    log.step(format_args!("directory {}", plan.workdir.display()));
    match &plan.command {
        Command::Argv(words) => {
            let shown: Vec<String> = words.iter().map(|w| w.to_string_lossy().into_owned()).collect();
            log.step(format_args!("exec {}", shown.join(" ")));
        }
        Command::Shell { preferred } => {
            let shell = preferred.as_deref().unwrap_or(Path::new("/bin/sh"));
            log.step(format_args!("exec {} (or /bin/sh if the distro lacks it)", shell.display()));
        }
    }
}
