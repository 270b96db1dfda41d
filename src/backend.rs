//! Choosing the backend, before the point of no return.
//!
//! A process inside a new user namespace can no longer gain privilege from
//! a setuid program, so the fallback to the helper must be decided before
//! `unshare(CLONE_NEWUSER)` succeeds. [`distrorun_engine::userns::enter`]
//! reports every way a kernel forbids user namespaces while nothing has
//! changed yet; this module turns that into the next step.

use distrorun_config::access::{self, Caller};
use distrorun_config::{paths, BackendChoice, Found, Origin};
use distrorun_engine::userns::Forbidden;
use distrorun_engine::Error;
use serde::Serialize;

use crate::machine::{Facts, Helper};

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

/// What to do when the kernel forbids user namespaces, given the state of
/// the setuid helper.
pub fn fall_back(
    found: &Found,
    forbidden: Forbidden,
    strict: bool,
    helper: &Helper,
) -> Result<Decision, Error> {
    let Forbidden(why) = forbidden;
    if strict {
        return Err(Error::msg(format!("cannot use the userns backend for distro {}: {why}", found.name))
            .with_hint("use --backend helper, or --backend auto to fall back to it"));
    }
    require_system_config(found, &format!("it needs user namespaces, and {why}"))?;
    if let Some(problem) = helper.problem() {
        return Err(Error::msg(format!(
            "{why}, and the setuid helper {} {problem}",
            paths::helper_path().display()
        ))
        .with_hint("ask the admin to install distrorun-helper setuid root (make install as root)"));
    }
    Ok(Decision::Helper { reason: Some(why) })
}

/// The backend a caller would get, and why; `backend` is None when there is
/// none it could use.
#[derive(Debug, Clone, Serialize)]
pub struct Prediction {
    pub backend: Option<&'static str>,
    pub why: String,
}

/// Predicts the backend from the machine's facts, through the same
/// [`decide`] and [`fall_back`] a run takes, with the config's choice.
pub fn predict(found: &Found, caller: &Caller, facts: &Facts) -> Prediction {
    let some = |b, why: &str| Prediction { backend: Some(b), why: why.to_owned() };
    let none = |why: String| Prediction { backend: None, why };
    match decide(None, found, caller) {
        Ok(Decision::Root) => {
            some("root", "the caller is root: a private mount namespace, no user namespace")
        }
        Ok(Decision::Helper { .. }) => match facts.helper.problem() {
            None => some("helper", "the config asks for the helper"),
            Some(problem) => none(format!(
                "the config asks for the helper, but the setuid helper {} {problem}",
                paths::helper_path().display()
            )),
        },
        Ok(Decision::Userns { strict }) => match (&facts.userns.forbidden, strict) {
            (None, true) => some("userns", "the config asks for user namespaces, and they are usable"),
            (None, false) => some("userns", "user namespaces are usable"),
            (Some(why), true) => none(format!("the config asks for user namespaces, but {why}")),
            (Some(why), false) => match fall_back(found, Forbidden(why.clone()), false, &facts.helper) {
                Ok(_) => Prediction {
                    backend: Some("helper"),
                    why: format!("user namespaces are not usable ({why}), so the setuid helper"),
                },
                Err(e) => none(e.to_string()),
            },
        },
        Err(e) => none(format!("the config asks for the helper, but {e}")),
    }
}

/// Whether this caller may use the distro, and the reason when not.
pub fn may_use(found: &Found, caller: &Caller, prediction: &Prediction) -> (bool, Option<String>) {
    if let Err(e) = access::check(&found.name, &found.distro, caller) {
        return (false, Some(e.to_string()));
    }
    match prediction.backend {
        Some(_) => (true, None),
        None => (false, Some(prediction.why.clone())),
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::Userns;
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
                image: None,
                devices: vec![],
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
        let err = fall_back(&f, forbidden(), false, &Helper::Ready).unwrap_err();
        assert!(
            err.to_string().contains("it needs user namespaces, and unshare(CLONE_NEWUSER) failed"),
            "{err}"
        );
    }

    #[test]
    fn an_explicit_userns_choice_does_not_fall_back() {
        let err = fall_back(&found(Origin::System, BackendChoice::Auto), forbidden(), true, &Helper::Ready)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot use the userns backend for distro x: unshare(CLONE_NEWUSER) failed: Operation not permitted"
        );
        assert!(err.hint().unwrap().contains("--backend helper"));
    }

    #[test]
    fn falling_back_needs_a_usable_setuid_helper() {
        let why = "unshare(CLONE_NEWUSER) failed: Operation not permitted";
        let f = found(Origin::System, BackendChoice::Auto);
        let helper = paths::helper_path();
        let err = fall_back(&f, forbidden(), false, &Helper::Missing(nix::errno::Errno::ENOENT)).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("{why}, and the setuid helper {} is not installed", helper.display())
        );
        let err = fall_back(&f, forbidden(), false, &Helper::NoSuid).unwrap_err();
        assert!(
            err.to_string().ends_with("lies on a file system mounted nosuid, so it gains nothing"),
            "{err}"
        );
        let ok = fall_back(&f, forbidden(), false, &Helper::Ready).unwrap();
        assert_eq!(ok, Decision::Helper { reason: Some(why.into()) });
    }

    fn facts(forbidden: Option<&str>, helper: Helper) -> Facts {
        let userns = Userns { forbidden: forbidden.map(str::to_owned), fix: None, note: None };
        Facts { userns, helper }
    }

    /// What a run would do with these facts: the decision, then the
    /// fallback where user namespaces are forbidden.
    fn run_would(found: &Found, facts: &Facts) -> Option<&'static str> {
        match decide(None, found, &user()).ok()? {
            Decision::Root => Some("root"),
            Decision::Helper { .. } => facts.helper.problem().is_none().then_some("helper"),
            Decision::Userns { strict } => match &facts.userns.forbidden {
                None => Some("userns"),
                Some(why) => {
                    fall_back(found, Forbidden(why.clone()), strict, &facts.helper).ok().map(|_| "helper")
                }
            },
        }
    }

    #[test]
    fn a_helper_on_a_nosuid_mount_is_predicted_unusable() {
        let f = found(Origin::System, BackendChoice::Auto);
        let p = predict(&f, &user(), &facts(Some("user.max_user_namespaces is 0"), Helper::NoSuid));
        assert_eq!(p.backend, None, "{p:?}");
        assert!(p.why.contains("mounted nosuid"), "{p:?}");
        let p = predict(&found(Origin::System, BackendChoice::Helper), &user(), &facts(None, Helper::NoSuid));
        assert_eq!(p.backend, None, "{p:?}");
        assert!(p.why.starts_with("the config asks for the helper, but the setuid helper"), "{p:?}");
    }

    #[test]
    fn predictions_agree_with_what_a_run_would_do() {
        let helpers = [
            Helper::Ready,
            Helper::Missing(nix::errno::Errno::ENOENT),
            Helper::NotRoot { uid: 1000 },
            Helper::NotSetuid { mode: 0o755 },
            Helper::NoSuid,
            Helper::Unchecked(nix::errno::Errno::EIO),
        ];
        let choices = [BackendChoice::Auto, BackendChoice::Userns, BackendChoice::Helper];
        for origin in [Origin::System, Origin::User] {
            for choice in choices {
                for forbidden in [None, Some("kernel.unprivileged_userns_clone is 0")] {
                    for helper in &helpers {
                        let (f, facts) = (found(origin, choice), facts(forbidden, helper.clone()));
                        let p = predict(&f, &user(), &facts);
                        let case = format!("{origin:?} {choice:?} {forbidden:?} {helper:?}: {p:?}");
                        assert_eq!(p.backend, run_would(&f, &facts), "{case}");
                    }
                }
            }
        }
    }

    #[test]
    fn descriptions_say_why() {
        assert_eq!(Decision::Helper { reason: Some("because".into()) }.describe(), "helper (because)");
        assert_eq!(Decision::Userns { strict: false }.describe(), "userns (auto)");
    }
}
