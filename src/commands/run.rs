//! One run, from the command line to the exec: resolve the config into a
//! plan, pick the backend, and hand the plan to the engine.

use std::ffi::{CString, OsString};
use std::fmt::Write as _;
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

use distrorun_config::access::{self, Caller};
use distrorun_config::handoff::{self, HelperArgs};
use distrorun_config::{load, paths, Command, Found, Origin, Plan};
use distrorun_engine::rootfs::{self, AlreadyHeld};
use distrorun_engine::userdb::{self, Lookup};
use distrorun_engine::{exec, sys, userns, Env, Error, Log};
use nix::errno::Errno;
use nix::fcntl::{fcntl, open, FcntlArg, OFlag};
use nix::sys::memfd::{memfd_create, MFdFlags};
use nix::sys::stat::Mode;
use nix::unistd::{execve, getresgid, getresuid, write};

use crate::backend::{self, Decision};
use crate::cli::{self, Options, Parsed};
use crate::commands::{doctor, info};

/// Runs distrorun. Returns only for `--help`, `--version`, `--list`,
/// `--info`, `--doctor` and `--dry-run`; otherwise the process becomes the command, or fails.
pub fn run(argv: impl IntoIterator<Item = OsString>) -> Result<(), Error> {
    let (opts, name, command) = match cli::parse(argv)? {
        Parsed::Print(text) => {
            // Asked for explicitly; a closed stdout is not worth an error.
            let _ = std::io::stdout().write_all(text.as_bytes());
            return Ok(());
        }
        Parsed::List { json: false } => {
            list();
            return Ok(());
        }
        Parsed::List { json: true } => return info::list_json(),
        Parsed::Info { name, json } => return info::info(&name, json),
        Parsed::Doctor => return doctor::doctor(),
        Parsed::Create(request) => return crate::commands::create::create(&request, &caller()?),
        Parsed::Remove { name, yes } => return crate::tree::remove::remove(&name, yes, &caller()?),
        Parsed::Export(request) => return crate::commands::export::run(&request),
        Parsed::Run { opts, name, command } => (opts, name, command),
    };
    let log = Log { verbose: opts.verbose || opts.dry_run };
    let caller = caller()?;
    let found = find_config(&name)?;
    let origin = if found.origin == Origin::System { "system" } else { "user" };
    log.step(format_args!("config {} ({origin})", found.path.display()));
    access::check(&found.name, &found.distro, &caller)?;
    let fake_root = crate::subids::check_root(opts.root, &found, &caller)?;
    let decision = backend::decide(opts.backend, &found, &caller)?;
    let lookup = identity_lookup(&caller, fake_root);
    if opts.dry_run {
        // The helper trusts only root's files; a dry run judges as it would.
        let helper = matches!(decision, Decision::Helper { .. });
        let lookup = lookup.map(|l| Lookup { only_root_files: helper, ..l });
        describe(&make_plan(&found, &opts, command)?, &decision, lookup.as_ref(), log);
        return Ok(());
    }
    // The plan is made only where it is carried out: the helper makes its
    // own from the trusted config, and is told nothing it would have to trust.
    match enter(decision, &found, &caller, log)? {
        Entered::Namespaces => {
            if fake_root {
                crate::subids::become_root()?;
            }
            Err(build_and_exec(&make_plan(&found, &opts, command)?, lookup.as_ref(), log))
        }
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
fn enter(decision: Decision, found: &Found, caller: &Caller, log: Log) -> Result<Entered, Error> {
    let decision = match decision {
        Decision::Userns { strict } => match crate::subids::enter(found, caller, backend::simulation())? {
            Ok(()) => Decision::Userns { strict },
            Err(forbidden) => backend::fall_back(found, forbidden, strict).map_err(doctor::point_to)?,
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

/// Whose identity `user_db` provides inside: none for root, or for `--root`
/// in a per-user distro, who maintain the distro and must see and change its
/// own files (adding a package may add a system user).
fn identity_lookup(caller: &Caller, fake_root: bool) -> Option<Lookup> {
    (!caller.uid.is_root() && !fake_root).then_some(Lookup {
        uid: caller.uid,
        gid: caller.gid,
        groups: caller.groups.clone(),
        only_root_files: false,
        via_etc: backend::identity_via_etc(),
    })
}

/// The userns and root backends: the engine runs in this very process.
fn build_and_exec(plan: &Plan, lookup: Option<&Lookup>, log: Log) -> Error {
    let steps = || -> Result<Vec<CString>, Error> {
        let dir = open(&plan.root, OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
            .map_err(|e| {
                Error::sys(format!("open the directory {} of distro {}", plan.root.display(), plan.distro), e)
            })?;
        let identity = match lookup {
            Some(lookup) => userdb::prepare(plan, &dir, lookup, log)?,
            None => None,
        };
        rootfs::enter(plan, &dir, &AlreadyHeld, identity.as_ref(), log)?;
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
    let fd = match sys::current_environ()
        .map_err(|e| Error::sys("read distrorun's environment", e))
        .and_then(|vars| environment_memfd(&vars))
    {
        Ok(fd) => fd,
        Err(e) => return e,
    };
    // The helper needs a free descriptor to start (the dynamic loader opens
    // libraries, and fails with a message that reads like "not found"). The
    // probe's copy is close-on-exec, so exec frees it again.
    if let Err(e) = fcntl(&fd, FcntlArg::F_DUPFD_CLOEXEC(0)) {
        return Error::sys("keep a file descriptor free for the setuid helper", e)
            .with_hint("raise the open-files limit (ulimit -n)");
    }
    let handoff = HelperArgs {
        env_fd: fd.as_raw_fd(),
        verbose: opts.verbose,
        directory: opts.directory.clone(),
        extra_volumes: opts.extra_volume.clone(),
        name: name.to_owned(),
        command: command.to_vec(),
    };
    let words = std::iter::once(helper.clone().into_os_string()).chain(handoff.to_words());
    let Ok(argv) = words.map(|w| CString::new(w.into_vec())).collect::<Result<Vec<CString>, _>>() else {
        return Error::msg("an argument contains a NUL byte");
    };
    if let Err(e) = sys::restore_sigpipe() {
        return Error::sys("restore the SIGPIPE disposition", e);
    }
    let Err(e) = execve(argv[0].as_c_str(), &argv, &[] as &[CString]);
    doctor::point_to(Error::sys(format!("run the setuid helper {}", helper.display()), e))
}

/// A sealed memfd holding `vars` in the hand-off format. It is not
/// close-on-exec: the helper inherits it, and finds it sealed, which is
/// how it knows it can trust its contents not to change.
fn environment_memfd(vars: &[CString]) -> Result<OwnedFd, Error> {
    let fail = |e| Error::sys("pass the environment to the setuid helper", e);
    let bytes = handoff::encode_environment(vars);
    let fd = memfd_create(c"distrorun-environ", MFdFlags::MFD_ALLOW_SEALING).map_err(fail)?;
    let mut rest = &bytes[..];
    while !rest.is_empty() {
        match write(&fd, rest) {
            Ok(n) => rest = &rest[n..],
            Err(Errno::EINTR) => {}
            Err(e) => return Err(fail(e)),
        }
    }
    fcntl(&fd, FcntlArg::F_ADD_SEALS(handoff::environment_seals())).map_err(fail)?;
    Ok(fd)
}

/// Who runs distrorun. It must never run with privilege it was not started
/// with: the privileged part is the helper, and only the helper.
pub(crate) fn caller() -> Result<Caller, Error> {
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

pub(crate) fn find_config(name: &str) -> Result<Found, Error> {
    Ok(load::find(name, &paths::system_config_dir(), user_config_dir().as_deref())?)
}

pub(crate) fn user_config_dir() -> Option<PathBuf> {
    let xdg = std::env::var_os("XDG_CONFIG_HOME");
    let home = std::env::var_os("HOME");
    load::user_config_dir(xdg.as_deref().map(Path::new), home.as_deref().map(Path::new))
}

/// `--list`: one line per distro, `NAME<TAB>system|user<TAB>CONFIG`.
fn list() {
    let (system, user) = (paths::system_config_dir(), user_config_dir());
    let mut out = String::new();
    for (name, origin) in load::list(&system, user.as_deref()) {
        let (dir, kind) = match origin {
            Origin::System => (system.as_path(), "system"),
            Origin::User => (user.as_deref().unwrap_or(Path::new("")), "user"),
        };
        let ids = if origin == Origin::User { crate::subids::list_column(&name) } else { "" };
        let _ = writeln!(out, "{name}\t{kind}\t{}{ids}", dir.join(format!("{name}.conf")).display());
    }
    // What --export and --export-bin wrote: NAME<TAB>export<TAB>WHAT<TAB>FILE.
    out.push_str(&crate::commands::export::list_lines());
    // Asked for explicitly; a closed stdout is not worth an error.
    let _ = std::io::stdout().write_all(out.as_bytes());
}

fn make_plan(found: &Found, opts: &Options, command: Vec<OsString>) -> Result<Plan, Error> {
    Ok(Plan::for_caller(
        found,
        opts.directory.as_deref(),
        &opts.extra_volume,
        command,
        std::env::var_os("PWD").as_deref(),
        std::env::var_os("SHELL").as_deref(),
    )?)
}

/// `--dry-run`: the plan, in the words `-v` uses, and nothing done.
fn describe(plan: &Plan, decision: &Decision, lookup: Option<&Lookup>, log: Log) {
    log.step(format_args!("backend {}", decision.describe()));
    log.step(format_args!("root {} ({})", plan.root.display(), plan.root_attrs));
    for m in &plan.mounts {
        let optional = if m.optional { ", if it exists" } else { "" };
        log.step(format_args!("mount {} on {} ({}){optional}", m.src.display(), m.dst.display(), m.attrs));
    }
    match lookup {
        // The entries it would add, read and looked up as a run would. Like
        // the rest of a dry run, what would fail is shown, not fatal.
        Some(lookup) => {
            let shown =
                open(&plan.root, OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
                    .map_err(|e| Error::sys(format!("open the directory {}", plan.root.display()), e))
                    .and_then(|dir| userdb::prepare(plan, &dir, lookup, log));
            if let Err(e) = shown {
                log.step(format_args!("user_db {}: {e}", plan.user_db.as_str()));
            }
        }
        None => log.step(format_args!("user_db {}: not applied for root", plan.user_db.as_str())),
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
