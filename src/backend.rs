//! Choosing the backend, before the point of no return.
//!
//! A process inside a new user namespace can no longer gain privilege from
//! a setuid program, so the fallback to the helper must be decided before
//! `unshare(CLONE_NEWUSER)` succeeds. [`distrorun_engine::userns::enter`]
//! reports every way a kernel forbids user namespaces while nothing has
//! changed yet; this module turns that into the next step.

use std::os::unix::fs::MetadataExt;

use distrorun_config::access::Caller;
use distrorun_config::{paths, BackendChoice, Found, Origin};
use distrorun_engine::userns::{Forbidden, Simulate};
use distrorun_engine::Error;

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
    check_helper(&paths::helper_path(), why)
}

fn check_helper(helper: &std::path::Path, why: &str) -> Result<(), Error> {
    let problem = match std::fs::metadata(helper) {
        Err(_) => "is not installed",
        Ok(m) if m.uid() != 0 || m.mode() & 0o4000 == 0 => "is not setuid root",
        Ok(_) => return Ok(()),
    };
    Err(Error::msg(format!("{why}, and the setuid helper {} {problem}", helper.display()))
        .with_hint("ask the admin to install distrorun-helper setuid root (make install as root)"))
}

/// Whether to bind the identity files the way kernels before 6.15 need,
/// where the kernel would take the direct way: the test suite's switch for
/// testing that path on a new kernel; compiled only into test builds.
pub fn identity_via_etc() -> bool {
    #[cfg(feature = "test-seams")]
    if std::env::var_os("DISTRORUN_TEST_IDENTITY_VIA_ETC").is_some_and(|v| v == "1") {
        return true;
    }
    false
}

/// The test suite's stand-in for Ubuntu's `AppArmor` restriction; compiled
/// only into test builds of distrorun, never into the helper.
pub fn simulation() -> Simulate {
    #[cfg(feature = "test-seams")]
    if std::env::var_os("DISTRORUN_TEST_USERNS_UNUSABLE").is_some_and(|v| v == "1") {
        return Simulate::UnusableNamespace;
    }
    Simulate::Nothing
}

#[cfg(test)]
mod tests {
    use super::*;
    use distrorun_config::Distro;
    use nix::unistd::{Gid, Uid};

    fn found(origin: Origin, backend: BackendChoice) -> Found {
        Found {
            name: "x".into(),
            path: "/cfg/x.conf".into(),
            origin,
            distro: Distro {
                dir: "/srv/x".into(),
                mapped_volumes: vec![],
                users: None,
                groups: None,
                allow_setuid: false,
                backend,
                ids: distrorun_config::IdMode::Own,
                user_db: distrorun_config::UserDb::Caller,
            },
        }
    }

    fn user() -> Caller {
        Caller { uid: Uid::from_raw(1000), gid: Gid::from_raw(1000), groups: vec![] }
    }

    fn forbidden() -> Forbidden {
        Forbidden("unshare(CLONE_NEWUSER) failed: Operation not permitted".into())
    }

    #[test]
    fn root_always_gets_a_plain_mount_namespace() {
        let root = Caller { uid: Uid::from_raw(0), gid: Gid::from_raw(0), groups: vec![] };
        let d = decide(Some(BackendChoice::Helper), &found(Origin::System, BackendChoice::Auto), &root);
        assert_eq!(d.unwrap(), Decision::Root);
    }

    #[test]
    fn the_command_line_wins_over_the_config() {
        let f = found(Origin::System, BackendChoice::Helper);
        assert_eq!(decide(None, &f, &user()).unwrap(), Decision::Helper { reason: None });
        assert_eq!(
            decide(Some(BackendChoice::Userns), &f, &user()).unwrap(),
            Decision::Userns { strict: true }
        );
        let auto = found(Origin::System, BackendChoice::Auto);
        assert_eq!(decide(None, &auto, &user()).unwrap(), Decision::Userns { strict: false });
    }

    #[test]
    fn per_user_distros_never_reach_the_helper() {
        let f = found(Origin::User, BackendChoice::Auto);
        let err = decide(Some(BackendChoice::Helper), &f, &user()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot run per-user distro x (/cfg/x.conf) through the setuid helper: the setuid helper reads only system configs"
        );
        let err = fall_back(&f, forbidden(), false).unwrap_err();
        assert!(
            err.to_string().contains("it needs user namespaces, and unshare(CLONE_NEWUSER) failed"),
            "{err}"
        );
    }

    #[test]
    fn an_explicit_userns_choice_does_not_fall_back() {
        let err = fall_back(&found(Origin::System, BackendChoice::Auto), forbidden(), true).unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot use the userns backend for distro x: unshare(CLONE_NEWUSER) failed: Operation not permitted"
        );
        assert!(err.hint().unwrap().contains("--backend helper"));
    }

    #[test]
    fn falling_back_needs_an_installed_setuid_helper() {
        let why = "unshare(CLONE_NEWUSER) failed: Operation not permitted";
        let err = check_helper(std::path::Path::new("/nonexistent/distrorun-helper"), why).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("{why}, and the setuid helper /nonexistent/distrorun-helper is not installed")
        );
        // Root's own, but not setuid, on every system this builds on.
        let err = check_helper(std::path::Path::new("/bin/sh"), why).unwrap_err();
        assert!(err.to_string().ends_with("/bin/sh is not setuid root"), "{err}");
    }

    #[test]
    fn descriptions_say_why() {
        assert_eq!(Decision::Helper { reason: Some("because".into()) }.describe(), "helper (because)");
        assert_eq!(Decision::Userns { strict: false }.describe(), "userns (auto)");
    }
}
