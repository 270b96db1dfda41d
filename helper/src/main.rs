//! distrorun-helper: distrorun's setuid-root backend, for kernels that
//! forbid unprivileged user namespaces.
//!
//! It does only the mounts and the root switch, then drops every privilege
//! and execs the command in the same process, so the command is still the
//! caller's direct child. It trusts nothing the caller controls: it acts as
//! the caller from its first step, with its capabilities out of effect
//! except while it mounts; its config comes only from the compiled-in
//! system directory after ownership checks, read as the caller; and the
//! caller's environment arrives on a sealed memfd and is handed on without
//! being acted on.
//!
//! `run` lists every step in the order it happens.

#![no_main]

mod envfd;
mod nss;
mod privs;

use std::convert::Infallible;
use std::ffi::{c_int, CString};

use distrorun_config::access::Caller;
use distrorun_config::cdi::Trust;
use distrorun_config::handoff::HelperArgs;
use distrorun_config::{access, load, paths, trust, Plan};
use distrorun_engine::exec::{self, Env};
use distrorun_engine::{gpu, note, rootfs, sys, userdb, Error, Log};
use std::os::fd::OwnedFd;

use crate::privs::{Privileged, Unprivileged};

distrorun_engine::c_main!(start);

/// The whole helper, to its exit status; it enters at its own C `main`
/// ([`distrorun_engine::c_main!`]), skipping Rust's runtime start-up.
#[cfg_attr(test, allow(dead_code))]
fn start() -> c_int {
    // The default hook reads RUST_BACKTRACE; the helper reads no variable.
    std::panic::set_hook(Box::new(|_| note(format_args!("internal error in distrorun-helper"))));
    match run() {
        Ok(never) => match never {},
        Err(err) => c_int::from(err.report()),
    }
}

fn run() -> Result<Infallible, Error> {
    // 1. Check the privilege and pin it as explicit state; become
    //    undumpable; from here on act as the caller, no capability in effect.
    let privileged = Privileged::acquire()?;
    //    What the host's files do not answer about users and groups, NSS
    //    answers through getent run as nobody, never as the caller.
    distrorun_config::nss::set_runner(nss::getent_as_nobody);
    // 2. Forget the environment the caller gave this process, and never let
    //    a closed 0, 1 or 2 turn a file opened later into stderr.
    sys::clear_own_environment().map_err(|e| Error::sys("clear the helper's own environment", e))?;
    exec::ensure_standard_streams()?;
    // 3. The command line, in the one format distrorun writes.
    let args = HelperArgs::parse(std::env::args_os().skip(1))?;
    let log = Log { verbose: args.verbose };
    // 4. The caller's environment, from the sealed memfd, kept for the exec.
    let env = Env::Given(envfd::read(args.env_fd)?);
    // 5. The config, from the system directory only, after trust checks,
    //    read with the caller's rights.
    let found = load::load_trusted(&args.name)?;
    // 6. Access control: the distro's users and groups.
    access::check(&found.name, &found.distro, privileged.caller())?;
    // 7. The plan, from the trusted config and the caller's request.
    let plan = make_plan(&found, args, &env)?;
    // 8. A private mount namespace, charged to the caller: nothing below
    //    reaches the host.
    privileged.enter_mount_namespace()?;
    // 9. The distro directory must be root's and not writable by others.
    let distro_dir = trust::open_trusted_dir(&plan.root)?;
    // 10. The caller's identity inside (user_db): the distro's /etc/passwd
    //     and /etc/group from the root-owned tree, and, only where they lack
    //     the caller, the caller's entry and groups as the host's NSS gives
    //     them to the helper itself for its real ids; never anything from
    //     the caller's environment or files. No capability in effect.
    let identity = userdb::prepare(&plan, &distro_dir, &identity_lookup(privileged.caller()), log)?;
    // 11. The devices asked for (--device, --gpu, the config's devices):
    //     the CDI specs re-read by the helper itself, only root's in root's
    //     directories; every host file opened through the same trust walk,
    //     as the caller; the distro's ld.so.cache only if root's.
    let devices = prepare_devices(&plan, &distro_dir, log)?;
    // 12. The mounts, the identity files, the device files and the root
    //     switch, the same engine as the userns backend; CAP_SYS_ADMIN is
    //     in effect only while it mounts.
    rootfs::enter(&plan, distro_dir, &privileged, identity.as_ref(), devices.as_ref(), log)?;
    // 13. The working directory, the command's path, and the devices'
    //     variables added to the caller's environment, as the caller.
    exec::enter_workdir(&plan, log)?;
    let command = exec::argv(&plan)?;
    let env = env.with_added(devices.as_ref().map_or(&[], |d| &d.env[..]))?;
    // 14. Drop every privilege, for good, and verify it.
    let unprivileged = privileged.drop_for_good(plan.allow_setuid)?;
    // 15. Become the command.
    Err(exec_as_caller(unprivileged, &plan, &command, &env, log))
}

/// The caller as the kernel's real ids and groups name them, which the
/// helper read itself at step 1, for its own NSS lookups; only root's
/// files are trusted on the way.
fn identity_lookup(caller: &Caller) -> userdb::Lookup {
    userdb::Lookup { uid: caller.uid, gid: caller.gid, groups: caller.groups.clone(), only_root_files: true }
}

/// What the devices bring in, decided under the helper's trust rules.
fn prepare_devices(plan: &Plan, distro_dir: &OwnedFd, log: Log) -> Result<Option<gpu::Prepared>, Error> {
    let wanted = distrorun_config::gpu::resolve(&plan.devices, Trust::RootOnly)?;
    gpu::prepare(plan, &wanted, distro_dir, Trust::RootOnly, log)
}

fn make_plan(found: &load::Found, args: HelperArgs, env: &Env) -> Result<Plan, Error> {
    let plan = Plan::for_caller(
        found,
        args.directory.as_deref(),
        &args.extra_volumes,
        &args.devices,
        args.command,
        env.get("PWD").as_deref(),
        env.get("SHELL").as_deref(),
    )?;
    // `load_trusted` reads nowhere else; a plan from any other config would
    // mean a bug that hands the caller's file to a privileged process.
    if !plan.config.starts_with(paths::system_config_dir()) {
        return Err(Error::msg(format!(
            "refusing config {}: the helper uses only {}",
            plan.config.display(),
            paths::system_config_dir().display()
        )));
    }
    Ok(plan)
}

/// Takes the proof of the drop, so that exec cannot happen before it.
fn exec_as_caller(_proof: Unprivileged, plan: &Plan, argv: &[CString], env: &Env, log: Log) -> Error {
    exec::exec(plan, argv, env, log)
}
