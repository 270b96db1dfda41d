//! Choosing the backend, before the point of no return.
//!
//! A process inside a new user namespace can no longer gain privilege from
//! a setuid program, so the fallback to the helper must be decided before
//! `unshare(CLONE_NEWUSER)` succeeds. [`distrorun_helper::userns::enter`]
//! reports every way a kernel forbids user namespaces while nothing has
//! changed yet; this module turns that into the next step.

use std::os::unix::fs::MetadataExt;

use distrorun_config::access::Caller;
use distrorun_config::{paths, BackendChoice, Found, Origin};
use distrorun_helper::userns::{Forbidden, Simulate};
use distrorun_helper::Error;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The real root caller: a private mount namespace, no user namespace.
    Root,
    /// Try a user namespace; `strict` when the user asked for exactly that.
    Userns { strict: bool },
    /// Exec the setuid helper; `reason` says why user namespaces were not used.
    Helper { reason: Option<String> },
}

impl Decision {
    pub fn describe(&self) -> String {
        match self {
            Decision::Root => "root (the caller is root)".into(),
            Decision::Userns { strict: true } => "userns".into(),
            Decision::Userns { strict: false } => "userns (auto)".into(),
            Decision::Helper { reason: None } => "helper".into(),
            Decision::Helper { reason: Some(why) } => format!("helper ({why})"),
        }
    }
}

/// The first choice, from the command line, the config and the caller.
pub fn decide(cli: Option<BackendChoice>, found: &Found, caller: &Caller) -> Result<Decision, Error> {
    if caller.uid.is_root() {
        return Ok(Decision::Root);
    }
    match cli.unwrap_or(found.distro.backend) {
        BackendChoice::Auto => Ok(Decision::Userns { strict: false }),
        BackendChoice::Userns => Ok(Decision::Userns { strict: true }),
        BackendChoice::Helper => {
            require_system_config(found, "the setuid helper reads only system configs")?;
            Ok(Decision::Helper { reason: None })
        }
    }
}

/// What to do when the kernel forbids user namespaces.
pub fn fall_back(found: &Found, forbidden: Forbidden, strict: bool) -> Result<Decision, Error> {
    let Forbidden(why) = forbidden;
    if strict {
        return Err(Error::msg(format!("cannot use the userns backend for distro {}: {why}", found.name))
            .with_hint("use --backend helper, or --backend auto to fall back to it"));
    }
    require_system_config(found, &format!("it needs user namespaces, and {why}"))?;
    check_helper_installed(&why)?;
    Ok(Decision::Helper { reason: Some(why) })
}

fn require_system_config(found: &Found, why: &str) -> Result<(), Error> {
    match found.origin {
        Origin::System => Ok(()),
        Origin::User => Err(Error::msg(format!(
            "cannot run per-user distro {} ({}) through the setuid helper: {why}",
            found.name,
            found.path.display()
        ))
        .with_hint(format!(
            "ask the admin to install it as {}/{}.conf",
            paths::system_config_dir().display(),
            found.name
        ))),
    }
}

fn check_helper_installed(why: &str) -> Result<(), Error> {
    let helper = paths::helper_path();
    let problem = match std::fs::metadata(&helper) {
        Err(_) => "is not installed",
        Ok(m) if m.uid() != 0 || m.mode() & 0o4000 == 0 => "is not setuid root",
        Ok(_) => return Ok(()),
    };
    Err(Error::msg(format!("{why}, and the setuid helper {} {problem}", helper.display()))
        .with_hint("ask the admin to install distrorun-helper setuid root (make install as root)"))
}

/// The test suite's stand-in for Ubuntu's AppArmor restriction; compiled
/// only into test builds of distrorun, never into the helper.
pub fn simulation() -> Simulate {
    #[cfg(feature = "test-seams")]
    if std::env::var_os("DISTRORUN_TEST_USERNS_UNUSABLE").is_some_and(|v| v == "1") {
        return Simulate::UnusableNamespace;
    }
    Simulate::Nothing
}
