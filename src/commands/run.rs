//! One run, from the command line to the exec: resolve the config into a
//! plan, pick the backend, and hand the plan to the engine.

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;
use std::path::Path;

use distrorun_config::access::{self, Caller};
use distrorun_config::cdi::Trust;
use distrorun_config::gpu as devices;
use distrorun_config::handoff::{self, HelperArgs};
use distrorun_config::{paths, Command, Found, Plan};
use distrorun_engine::gpu;
use distrorun_engine::rootfs::{self, AlreadyHeld};
use distrorun_engine::userdb::{self, Lookup};
use distrorun_engine::{exec, sys, userns, Env, Error, Log};
use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg};
use nix::sys::memfd::{memfd_create, MFdFlags};
use nix::unistd::{execve, write};

use crate::backend::{self, Decision};
use crate::cli::RunArgs;
use crate::machine::{self, Helper};
use crate::{places, subids, tree};

/// Runs the command in the distro: returns only for `--dry-run`; otherwise
/// the process becomes the command, or fails.
pub fn run(mut args: RunArgs) -> Result<(), Error> {
    let log = Log { verbose: args.verbose || args.dry_run };
    let caller = places::caller()?;
    let found = places::find_config(&args.name)?;
    log.step(format_args!("config {} ({})", found.path.display(), places::origin_word(found.origin)));
    access::check(&found.name, &found.distro, &caller)?;
    let fake_root = subids::check_root(args.root, &found, &caller)?;
    let decision = backend::decide(args.backend, &found, &caller)?;
    let lookup = identity_lookup(&caller, fake_root);
    if args.dry_run {
        // The helper trusts only root's files; a dry run judges as it would.
        let helper = matches!(decision, Decision::Helper { .. });
        let lookup = lookup.map(|l| Lookup { only_root_files: helper, ..l });
        describe(&make_plan(&found, &mut args)?, &decision, lookup.as_ref(), log);
        return Ok(());
    }
    // The plan is made only where it is carried out: the helper makes its
    // own from the trusted config, and is told nothing it would have to trust.
    match enter(decision, &found, &caller, log)? {
        Entered::Namespaces => {
            if fake_root {
                subids::become_root()?;
            }
            Err(build_and_exec(&make_plan(&found, &mut args)?, lookup.as_ref(), log))
        }
        Entered::Nothing => Err(exec_helper(args)),
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
        Decision::Userns { strict } => match subids::enter(found, caller, machine::simulation())? {
            Ok(()) => Decision::Userns { strict },
            Err(forbidden) => {
                let helper = Helper::probe(&paths::helper_path());
                backend::fall_back(found, forbidden, strict, &helper).map_err(machine::point_to)?
            }
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
    })
}

/// The userns and root backends: the engine runs in this very process.
fn build_and_exec(plan: &Plan, lookup: Option<&Lookup>, log: Log) -> Error {
    let steps = || -> Result<(Vec<CString>, Env), Error> {
        let dir = tree::open_distro(&plan.root, &plan.distro)?;
        let identity = match lookup {
            Some(lookup) => userdb::prepare(plan, &dir, lookup, log)?,
            None => None,
        };
        let wanted = devices::resolve(&plan.devices, Trust::Caller)?;
        let devices = gpu::prepare(plan, &wanted, &dir, Trust::Caller, log)?;
        rootfs::enter(plan, dir, &AlreadyHeld, identity.as_ref(), devices.as_ref(), log)?;
        exec::enter_workdir(plan, log)?;
        let env = Env::Inherited.with_added(devices.as_ref().map_or(&[], |d| &d.env[..]))?;
        Ok((exec::argv(plan)?, env))
    };
    match steps() {
        Ok((argv, env)) => exec::exec(plan, &argv, &env, log),
        Err(e) => e,
    }
}

/// The helper backend: exec the setuid helper by its compiled-in path, with
/// an empty environment, the caller's environment on a sealed memfd, and
/// only what it cannot derive itself: the name, the options and the command.
fn exec_helper(run: RunArgs) -> Error {
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
        verbose: run.verbose,
        directory: run.directory,
        extra_volumes: run.extra_volume,
        devices: run.devices,
        name: run.name,
        command: run.command,
    };
    let words = std::iter::once(helper.clone().into_os_string()).chain(handoff.to_words());
    let Ok(argv) = words.map(|w| CString::new(w.into_vec())).collect::<Result<Vec<CString>, _>>() else {
        return Error::msg("an argument contains a NUL byte");
    };
    if let Err(e) = sys::restore_sigpipe() {
        return Error::sys("restore the SIGPIPE disposition", e);
    }
    let Err(e) = execve(argv[0].as_c_str(), &argv, &[] as &[CString]);
    machine::point_to(Error::sys(format!("run the setuid helper {}", helper.display()), e))
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

/// The plan, taking the command out of `args`: a run makes it once, and
/// the hand-off to the helper, which makes its own, never needs both.
fn make_plan(found: &Found, args: &mut RunArgs) -> Result<Plan, Error> {
    Ok(Plan::for_caller(
        found,
        args.directory.as_deref(),
        &args.extra_volume,
        &args.devices,
        std::mem::take(&mut args.command),
        std::env::var_os("PWD").as_deref(),
        std::env::var_os("SHELL").as_deref(),
    )?)
}

/// The devices a run would bring in, resolved as the backend would (the
/// helper trusts only root's specs and files).
fn describe_devices(plan: &Plan, decision: &Decision, log: Log) {
    if plan.devices.is_empty() {
        return;
    }
    let trust = if matches!(decision, Decision::Helper { .. }) { Trust::RootOnly } else { Trust::Caller };
    match devices::resolve(&plan.devices, trust) {
        Ok(wanted) => {
            for note in &wanted.notes {
                log.step(format_args!("{note}"));
            }
            for node in &wanted.nodes {
                log.step(format_args!("devices: node {} (through the /dev volume)", node.display()));
            }
            for f in &wanted.files {
                let place = match &f.place {
                    devices::Place::Library(name) => format!("{}/{name}", devices::LIB_DIR),
                    devices::Place::At(p) => p.display().to_string(),
                };
                let from = match &f.source {
                    devices::Source::Host(p) => format!("from {}", p.display()),
                    devices::Source::Link(t) => format!("-> {t}"),
                    devices::Source::Contents(_) => "rewritten".into(),
                };
                log.step(format_args!("devices: {place} ({from})"));
            }
            for var in &wanted.env {
                log.step(format_args!("devices: environment {var}"));
            }
        }
        Err(e) => log.step(format_args!("devices: {e}")),
    }
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
            let shown = tree::open_distro(&plan.root, &plan.distro)
                .and_then(|dir| userdb::prepare(plan, &dir, lookup, log));
            if let Err(e) = shown {
                log.step(format_args!("user_db {}: {e}", plan.user_db.as_str()));
            }
        }
        None => log.step(format_args!("user_db {}: not applied for root", plan.user_db.as_str())),
    }
    describe_devices(plan, decision, log);
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
