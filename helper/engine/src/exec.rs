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

use crate::binfmt;
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

impl Env {
    /// This environment with `vars` (`NAME=VALUE`, from the devices' specs)
    /// added, each replacing a variable of the same name. Unchanged, and
    /// still inherited, when there are none.
    pub fn with_added(self, vars: &[String]) -> Result<Env, Error> {
        if vars.is_empty() {
            return Ok(self);
        }
        let mut all = match self {
            Env::Inherited => {
                crate::sys::current_environ().map_err(|e| Error::sys("read distrorun's environment", e))?
            }
            Env::Given(vars) => vars,
        };
        for var in vars {
            let Some((name, _)) = var.split_once('=').filter(|(n, _)| !n.is_empty()) else {
                return Err(Error::msg(format!("a device spec sets {var:?}, which is not NAME=VALUE")));
            };
            let prefix = format!("{name}=");
            all.retain(|v| !v.to_bytes().starts_with(prefix.as_bytes()));
            all.push(
                CString::new(var.as_bytes())
                    .map_err(|_| Error::msg("a device spec's variable holds a NUL byte"))?,
            );
        }
        Ok(Env::Given(all))
    }
}

/// Makes sure 0, 1 and 2 are open (on /dev/null where the caller closed
/// them), so that no file opened later becomes a standard stream.
pub fn ensure_standard_streams() -> Result<(), Error> {
    crate::sys::ensure_standard_fds()
        .map_err(|e| Error::sys("open /dev/null on a closed standard descriptor", e))
}

/// Changes to the plan's working directory inside the distro. Nothing runs
/// when it does not exist: relative paths in the command would silently
/// name something else.
pub fn enter_workdir(plan: &Plan, log: Log) -> Result<(), Error> {
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
pub fn exec(plan: &Plan, argv: &[CString], env: &Env, log: Log) -> Error {
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
            Errno::ENOENT if stat(name.as_c_str()).is_ok() => cannot_execute(plan, name_bytes, Errno::ENOENT),
            Errno::ENOENT | Errno::ENOTDIR => not_found(plan, name_bytes),
            e => cannot_execute(plan, name_bytes, e),
        };
    }
    let path_var = env.get("PATH").map(OsStringExt::into_vec);
    let candidates = search_path(name_bytes, path_var.as_deref());
    let mut denied = None;
    let mut absent = Vec::new();
    for (i, candidate) in candidates.iter().enumerate() {
        let errno = try_exec(candidate, argv, env, log);
        match after_failed_exec(errno, || stat(candidate.as_c_str()).is_ok()) {
            Search::Continue if errno == Errno::ENOENT => absent.push(i),
            Search::Continue => {}
            Search::RememberDenied => denied = denied.or(Some((i, errno))),
            Search::Stop => return cannot_execute(plan, candidate.as_bytes(), errno),
        }
    }
    // Nothing ran. Only now, off the launch's path, is a candidate that
    // failed with ENOENT looked at again: one that is there names an
    // interpreter that is not, and that is what the caller needs to hear.
    let broken =
        absent.into_iter().find(|&i| stat(candidates[i].as_c_str()).is_ok()).map(|i| (i, Errno::ENOENT));
    let first = match (denied, broken) {
        (Some(d), Some(b)) => Some(if d.0 < b.0 { d } else { b }),
        (d, b) => d.or(b),
    };
    match first {
        Some((i, e)) => cannot_execute(plan, candidates[i].as_bytes(), e),
        None => not_found(plan, name_bytes),
    }
}

/// The paths `execvp` tries for a command name without a slash, in order:
/// one per entry of `PATH` (glibc's default when it is unset), where an
/// empty entry means the current directory.
fn search_path(name: &[u8], path_var: Option<&[u8]>) -> Vec<CString> {
    path_var
        .unwrap_or(DEFAULT_PATH)
        .split(|&b| b == b':')
        .filter_map(|dir| {
            let dir = if dir.is_empty() { Path::new(".") } else { Path::new(OsStr::from_bytes(dir)) };
            CString::new(dir.join(OsStr::from_bytes(name)).into_os_string().into_vec()).ok()
        })
        .collect()
}

/// What the PATH search does after one candidate failed to exec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Search {
    Continue,
    /// It is there but may not be run: keep searching, and fail with 126
    /// rather than 127 if nothing else is found.
    RememberDenied,
    /// Found, and broken in a way no later candidate can mend.
    Stop,
}

/// execvp's rule. `exists` is asked only for EACCES, where a directory of
/// PATH the caller cannot search hides nothing. ENOENT goes on searching,
/// as execvp does, even where the file is there and its interpreter is
/// not: a later directory of PATH may hold a command that runs.
fn after_failed_exec(errno: Errno, exists: impl FnOnce() -> bool) -> Search {
    match errno {
        Errno::EACCES if exists() => Search::RememberDenied,
        Errno::EACCES | Errno::ENOENT | Errno::ENOTDIR | Errno::ENAMETOOLONG | Errno::ELOOP => {
            Search::Continue
        }
        _ => Search::Stop,
    }
}

/// One exec attempt. A file the kernel does not recognise (ENOEXEC) is run
/// by /bin/sh, as execvp does for scripts without a `#!` line; an ELF file
/// is not a script, and is left for [`cannot_execute`] to explain.
fn try_exec(path: &CString, argv: &[CString], env: &Env, log: Log) -> Errno {
    if log.verbose && stat(path.as_c_str()).is_ok() {
        log.step(format_args!("exec {}", path.to_string_lossy()));
    }
    let errno = exec_one(path, argv, env);
    if errno != Errno::ENOEXEC || binfmt::is_elf(Path::new(OsStr::from_bytes(path.to_bytes()))) {
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

/// The command is there but did not run. Where the kernel's errno alone
/// would mislead (ENOENT for a missing interpreter, ENOEXEC for another
/// architecture), the file itself says what is wrong.
fn cannot_execute(plan: &Plan, path: &[u8], e: Errno) -> Error {
    let shown = PathBuf::from(OsStr::from_bytes(path));
    let why = matches!(e, Errno::ENOENT | Errno::ENOEXEC).then(|| binfmt::diagnose(&shown)).flatten();
    let Some(why) = why else {
        return Error::sys(format!("run {} in distro {}", shown.display(), plan.distro), e)
            .with_kind(Kind::CannotExecute);
    };
    let err =
        Error::msg(format!("cannot run {} in distro {}: {}", shown.display(), plan.distro, why.describe()))
            .with_kind(Kind::CannotExecute);
    match why.hint() {
        Some(hint) => err.with_hint(hint),
        None => err,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use distrorun_config::Attrs;

    fn plan(command: Command) -> Plan {
        Plan {
            distro: "x".into(),
            config: "/etc/distrorun.d/x.conf".into(),
            root: "/srv/x".into(),
            root_attrs: Attrs::default(),
            mounts: vec![],
            workdir: "/".into(),
            workdir_is_cwd: true,
            command,
            allow_setuid: false,
            user_db: distrorun_config::UserDb::Distro,
            devices: vec![],
        }
    }

    fn words(argv: &[CString]) -> Vec<&str> {
        argv.iter().map(|w| w.to_str().unwrap()).collect()
    }

    #[test]
    fn env_lookup_matches_whole_names_and_keeps_bytes() {
        let env = Env::Given(vec![
            CString::new("PATHX=/wrong").unwrap(),
            CString::new("NOEQUALS").unwrap(),
            CString::new(b"PATH=/a:\xff".to_vec()).unwrap(),
            CString::new("EMPTY=").unwrap(),
        ]);
        assert_eq!(env.get("PATH").unwrap().into_vec(), b"/a:\xff");
        assert_eq!(env.get("EMPTY").unwrap(), "");
        assert_eq!(env.get("NOEQUALS"), None);
        assert_eq!(env.get("PAT"), None);
    }

    #[test]
    fn the_first_of_several_entries_wins_as_getenv_does() {
        let env = Env::Given(vec![CString::new("A=1").unwrap(), CString::new("A=2").unwrap()]);
        assert_eq!(env.get("A").unwrap(), "1");
    }

    #[test]
    fn argv_is_the_command_byte_for_byte() {
        let p = plan(Command::Argv(vec!["ls".into(), "-l".into(), "a b".into()]));
        assert_eq!(words(&argv(&p).unwrap()), ["ls", "-l", "a b"]);
    }

    #[test]
    fn without_a_command_the_shell_runs_or_else_bin_sh() {
        // Run on the host: /bin/sh exists on every system this builds on.
        let p = plan(Command::Shell { preferred: Some("/bin/sh".into()) });
        assert_eq!(words(&argv(&p).unwrap()), ["/bin/sh"]);
        let p = plan(Command::Shell { preferred: Some("/no/such/shell".into()) });
        assert_eq!(words(&argv(&p).unwrap()), ["/bin/sh"]);
        let p = plan(Command::Shell { preferred: None });
        assert_eq!(words(&argv(&p).unwrap()), ["/bin/sh"]);
    }

    #[test]
    fn path_search_follows_execvp() {
        let got = search_path(b"tool", Some(b"/usr/bin::/opt/x/"));
        assert_eq!(words(&got), ["/usr/bin/tool", "./tool", "/opt/x/tool"]);
        assert_eq!(words(&search_path(b"tool", None)), ["/bin/tool", "/usr/bin/tool"]);
    }

    #[test]
    fn a_denied_file_is_remembered_and_a_denied_directory_skipped() {
        assert_eq!(after_failed_exec(Errno::EACCES, || true), Search::RememberDenied);
        assert_eq!(after_failed_exec(Errno::EACCES, || false), Search::Continue);
        for e in [Errno::ENOENT, Errno::ENOTDIR, Errno::ENAMETOOLONG, Errno::ELOOP] {
            assert_eq!(after_failed_exec(e, || unreachable!("only asked for EACCES")), Search::Continue);
        }
        assert_eq!(after_failed_exec(Errno::E2BIG, || true), Search::Stop);
        assert_eq!(after_failed_exec(Errno::ETXTBSY, || true), Search::Stop);
    }

    #[test]
    fn failures_map_to_the_exit_statuses_of_env_and_chroot() {
        let p = plan(Command::Argv(vec![]));
        let missing = not_found(&p, b"nosuch");
        assert_eq!(
            (missing.exit_status(), missing.to_string().as_str()),
            (127, "cannot run nosuch in distro x: command not found")
        );
        let denied = cannot_execute(&p, b"/usr/bin/tool", Errno::EACCES);
        assert_eq!(
            (denied.exit_status(), denied.to_string().as_str()),
            (126, "cannot run /usr/bin/tool in distro x: Permission denied")
        );
    }
}
