//! distrorun-helper: distrorun's setuid-root backend, for kernels that
//! forbid unprivileged user namespaces.
//!
//! It does only the mounts and the root switch, then drops every privilege
//! and execs the command in the same process, so the command is still the
//! caller's direct child. It trusts nothing the caller controls: its config
//! comes only from the compiled-in system directory after ownership checks,
//! paths are resolved with the caller's file-system ids, and the caller's
//! environment arrives on a descriptor and is handed on without being read.
//!
//! `run` lists every step in the order it happens.

#![deny(unsafe_code)]
#![no_main]

use std::convert::Infallible;
use std::ffi::{c_char, c_int};
use std::ffi::{CString, OsString};
use std::path::PathBuf;

use argh::FromArgs;
use distrorun_config::{access, args, load, paths, plan, trust, Plan, Request};
use distrorun_helper::privs::{Privileged, Unprivileged};
use distrorun_helper::{envfd, exec, note, rootfs, userns, Env, Error, Log};

#[derive(FromArgs)]
/// distrorun's setuid-root backend. distrorun runs it when user namespaces
/// are forbidden; it is not meant to be run by hand.
struct Options {
    /// descriptor holding the caller's environment (NUL-separated entries)
    #[argh(option)]
    env_fd: Option<i32>,
    /// print each step on stderr
    #[argh(switch, short = 'v')]
    verbose: bool,
    /// run in DIR inside the distro instead of the current directory
    #[argh(option, short = 'd')]
    directory: Option<PathBuf>,
    /// bind-mount the host directory DIR at the same path inside
    #[argh(option)]
    extra_volume: Vec<PathBuf>,
    /// the distro
    #[argh(positional)]
    name: String,
}

/// The C entry point, called once by the C runtime. Rust's usual start-up
/// is skipped on purpose: it reads /proc/self/maps, installs signal handlers
/// and an alternate signal stack, and sets SIGPIPE to ignored, none of which
/// a program that only prepares an exec needs, and all of which a setuid
/// program is better without. std works as usual; the arguments come from
/// `std::env::args_os`.
// SAFETY: exporting `main` is what `no_main` requires; the arguments are not
// used, so nothing here depends on their validity.
#[allow(unsafe_code)]
#[no_mangle]
pub extern "C" fn main(_argc: c_int, _argv: *const *const c_char) -> c_int {
    // The default hook reads RUST_BACKTRACE; the helper reads no variable.
    std::panic::set_hook(Box::new(|_| note(format_args!("internal error in distrorun-helper"))));
    match run() {
        Ok(never) => match never {},
        Err(err) => {
            note(format_args!("{err}"));
            if let Some(hint) = err.hint() {
                eprintln!("{hint}");
            }
            c_int::from(err.exit_status())
        }
    }
}

fn run() -> Result<Infallible, Error> {
    // 1. Check the privilege, pin it as explicit state, become undumpable.
    let privileged = Privileged::acquire()?;
    // 2. Forget the environment the caller gave this process, and never let
    //    a closed 0, 1 or 2 turn a file opened later into stderr.
    distrorun_helper::sys::clear_own_environment();
    ensure_standard_fds()?;
    // 3. The command line: distro name, options, command. Nothing else.
    let (opts, command) = parse_args()?;
    let log = Log { verbose: opts.verbose };
    // 4. The caller's environment, from the descriptor, kept for the exec.
    let env = read_environment(&opts)?;
    // 5. The config, from the system directory only, after trust checks.
    let found = load::load_trusted(&opts.name)?;
    // 6. Access control: the distro's users and groups.
    access::check(&found.name, &found.distro, privileged.caller())?;
    // 7. From here on, every path is resolved as the caller.
    privileged.resolve_as_caller()?;
    // 8. The plan, from the trusted config and the caller's request.
    let plan = make_plan(&found, &opts, command, &env)?;
    // 9. A private mount namespace: nothing below reaches the host.
    userns::enter_mount_namespace()?;
    // 10. The distro directory must be root's and not writable by others.
    let distro_dir = trust::open_trusted_dir(&plan.root)?;
    // 11. The mounts and the root switch, the same engine as the userns backend.
    rootfs::enter(&plan, distro_dir, &log)?;
    // 12. The working directory and the command's path, still as the caller.
    exec::enter_workdir(&plan, &log)?;
    let argv = exec::argv(&plan)?;
    // 13. Drop every privilege, for good, and verify it.
    let unprivileged = privileged.drop_for_good(plan.allow_setuid)?;
    // 14. Become the command.
    Err(exec_as_caller(unprivileged, &plan, &argv, &env, &log))
}

fn ensure_standard_fds() -> Result<(), Error> {
    for fd in 0..3 {
        if !distrorun_helper::sys::fd_is_open(fd) {
            // open() returns the lowest free descriptor, which is this one.
            let null = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/null")
                .map_err(|e| Error::msg(format!("cannot open /dev/null: {e}")))?;
            std::mem::forget(null);
        }
    }
    Ok(())
}

fn parse_args() -> Result<(Options, Vec<OsString>), Error> {
    let split =
        args::split(std::env::args_os().skip(1), &["--env-fd", "-d", "--directory", "--extra-volume"])?;
    let mut words: Vec<&str> = split.options.iter().map(String::as_str).collect();
    words.extend(split.name.as_deref());
    let opts = Options::from_args(&["distrorun-helper"], &words).map_err(|exit| {
        let text = exit.output.trim().to_owned();
        match exit.status {
            Ok(()) => Error::msg(text).with_kind(distrorun_helper::Kind::Setup),
            Err(()) => {
                Error::msg(format!("invalid helper arguments: {}", text.lines().next().unwrap_or("?")))
            }
        }
    })?;
    Ok((opts, split.command))
}

fn read_environment(opts: &Options) -> Result<Env, Error> {
    let fd = opts
        .env_fd
        .ok_or_else(|| Error::msg("distrorun-helper needs --env-fd: run distrorun, not the helper"))?;
    envfd::read(fd).map(Env::Given)
}

fn make_plan(found: &load::Found, opts: &Options, command: Vec<OsString>, env: &Env) -> Result<Plan, Error> {
    let cwd = plan::base_dir(env.get("PWD").as_deref(), opts.directory.as_deref())?;
    let request = Request {
        found,
        extra_volumes: &opts.extra_volume,
        directory: opts.directory.as_deref(),
        cwd: &cwd,
        command,
        shell: env.get("SHELL").map(PathBuf::from),
    };
    let plan = Plan::new(request)?;
    debug_assert!(plan.config.starts_with(paths::system_config_dir()));
    Ok(plan)
}

/// Takes the proof of the drop, so that exec cannot happen before it.
fn exec_as_caller(_proof: Unprivileged, plan: &Plan, argv: &[CString], env: &Env, log: &Log) -> Error {
    exec::exec(plan, argv, env, log)
}
