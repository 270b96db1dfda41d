//! The last steps inside the new root: the working directory, the command's
//! path, and the exec that replaces distrorun, so that the command keeps
//! distrorun's PID and is the caller's direct child.

use std::ffi::{CString, OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use distrorun_config::{Command, Plan};
use nix::errno::Errno;
use nix::sys::stat::stat;
use nix::unistd::{chdir, execv, execve};

use crate::error::Kind;
use crate::{log, Error, Log};

/// glibc's default search path when `PATH` is unset.
const DEFAULT_PATH: &[u8] = b"/bin:/usr/bin";

/// The command's environment: distrorun's own (userns and root backends),
/// or the caller's as received on the helper's descriptor.
#[derive(Debug)]
pub enum Env {
    Inherited,
    Given(Vec<CString>),
}

impl Env {
    /// A variable's value, as the command will see it.
    pub fn get(&self, key: &str) -> Option<OsString> {
        match self {
            Env::Inherited => std::env::var_os(key),
            Env::Given(vars) => vars.iter().find_map(|v| {
                let rest = v.to_bytes().strip_prefix(key.as_bytes())?.strip_prefix(b"=")?;
                Some(OsStr::from_bytes(rest).to_os_string())
            }),
        }
    }
}

/// Changes to the plan's working directory inside the distro. Nothing runs
/// when it does not exist: relative paths in the command would silently
/// name something else.
pub fn enter_workdir(plan: &Plan, log: &Log) -> Result<(), Error> {
    let dir = plan.workdir.display();
    match chdir(&plan.workdir) {
        Ok(()) => {
            log.step(format_args!("directory {dir}"));
            Ok(())
        }
        Err(e @ (Errno::ENOENT | Errno::ENOTDIR)) if plan.workdir_is_cwd => Err(Error::msg(format!(
            "the current directory {dir} does not exist in distro {}: {}",
            plan.distro,
            e.desc()
        ))
        .with_hint(format!(
            "use --directory DIR, or make {dir} visible inside with --extra-volume or mapped_volumes in {}",
            plan.config.display()
        ))),
        Err(e) => Err(Error::sys(format!("change directory to {dir} in distro {}", plan.distro), e)),
    }
}

/// The argv to run: the plan's command, or the caller's shell when there is
/// none and the distro has it, else /bin/sh with a note.
pub fn argv(plan: &Plan) -> Result<Vec<CString>, Error> {
    let words: Vec<OsString> = match &plan.command {
        Command::Argv(words) => words.clone(),
        Command::Shell { preferred: Some(shell) } if stat(shell.as_path()).is_ok() => {
            vec![shell.clone().into()]
        }
        Command::Shell { preferred } => {
            if let Some(shell) = preferred {
                log::note(format_args!(
                    "$SHELL ({}) does not exist in distro {}; running /bin/sh",
                    shell.display(),
                    plan.distro
                ));
            }
            vec!["/bin/sh".into()]
        }
    };
    words
        .into_iter()
        .map(|w| CString::new(w.into_vec()).map_err(|_| Error::msg("a command argument contains a NUL byte")))
        .collect()
}

/// Execs `argv`, searching the command's own `PATH` as execvp does: the
/// search happens inside the distro, as the caller. Returns only on failure.
pub fn exec(plan: &Plan, argv: &[CString], env: &Env, log: &Log) -> Error {
    let Some(name) = argv.first() else {
        return Error::msg("no command to run");
    };
    if let Err(e) = crate::sys::restore_sigpipe() {
        return Error::sys("restore the SIGPIPE disposition", e);
    }
    let name_bytes = name.to_bytes();
    if name_bytes.is_empty() {
        return not_found(plan, name_bytes);
    }
    if name_bytes.contains(&b'/') {
        return match try_exec(name, argv, env, log) {
            Errno::ENOENT | Errno::ENOTDIR => not_found(plan, name_bytes),
            e => cannot_execute(plan, name_bytes, e),
        };
    }
    let search = env.get("PATH").map(OsStringExt::into_vec).unwrap_or_else(|| DEFAULT_PATH.to_vec());
    let mut denied = None;
    for dir in search.split(|&b| b == b':') {
        let dir = if dir.is_empty() { Path::new(".") } else { Path::new(OsStr::from_bytes(dir)) };
        let Ok(candidate) = CString::new(dir.join(OsStr::from_bytes(name_bytes)).into_os_string().into_vec())
        else {
            continue;
        };
        match try_exec(&candidate, argv, env, log) {
            // Keep searching, as execvp does, and remember a file that is
            // there but not executable: that makes the failure 126, not 127.
            // A directory of PATH the caller cannot search hides nothing.
            e @ Errno::EACCES if stat(candidate.as_c_str()).is_ok() => denied = Some((candidate, e)),
            Errno::EACCES => {}
            Errno::ENOENT | Errno::ENOTDIR | Errno::ENAMETOOLONG | Errno::ELOOP => {}
            e => return cannot_execute(plan, candidate.as_bytes(), e),
        }
    }
    match denied {
        Some((path, e)) => cannot_execute(plan, path.as_bytes(), e),
        None => not_found(plan, name_bytes),
    }
}

/// One exec attempt. A file the kernel does not recognise (ENOEXEC) is run
/// by /bin/sh, as execvp does for scripts without a `#!` line.
fn try_exec(path: &CString, argv: &[CString], env: &Env, log: &Log) -> Errno {
    if log.verbose && stat(path.as_c_str()).is_ok() {
        log.step(format_args!("exec {}", path.to_string_lossy()));
    }
    let errno = exec_one(path, argv, env);
    if errno != Errno::ENOEXEC {
        return errno;
    }
    let mut sh_argv = vec![c"/bin/sh".to_owned(), path.clone()];
    sh_argv.extend(argv.iter().skip(1).cloned());
    match exec_one(c"/bin/sh", &sh_argv, env) {
        Errno::ENOENT => Errno::ENOEXEC,
        e => e,
    }
}

fn exec_one(path: &std::ffi::CStr, argv: &[CString], env: &Env) -> Errno {
    let result = match env {
        Env::Inherited => execv(path, argv),
        Env::Given(vars) => execve(path, argv, vars),
    };
    match result {
        Err(e) => e,
        Ok(never) => match never {},
    }
}

fn not_found(plan: &Plan, name: &[u8]) -> Error {
    Error::msg(format!(
        "cannot run {} in distro {}: command not found",
        PathBuf::from(OsStr::from_bytes(name)).display(),
        plan.distro
    ))
    .with_kind(Kind::NotFound)
}

fn cannot_execute(plan: &Plan, path: &[u8], e: Errno) -> Error {
    Error::sys(
        format!("run {} in distro {}", PathBuf::from(OsStr::from_bytes(path)).display(), plan.distro),
        e,
    )
    .with_kind(Kind::CannotExecute)
}
