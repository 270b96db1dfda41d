//! Who may use a distro: the optional `users` and `groups` lists, checked
//! the same way under every backend so that behaviour never depends on the
//! kernel. Root may always use every distro.

use nix::unistd::{Gid, Uid};

use crate::nss;

use crate::{Distro, Error};

/// The identity of whoever ran distrorun: the real ids, and the
/// supplementary groups the process was started with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub uid: Uid,
    pub gid: Gid,
    pub groups: Vec<Gid>,
}

impl Caller {
    fn in_group(&self, gid: Gid) -> bool {
        self.gid == gid || self.groups.contains(&gid)
    }
}

/// Refuses the caller unless the distro admits them.
pub fn check(name: &str, distro: &Distro, caller: &Caller) -> Result<(), Error> {
    if caller.uid.is_root() || (distro.users.is_none() && distro.groups.is_none()) {
        return Ok(());
    }
    let user_name =
        nss::user_by_uid(caller.uid.as_raw()).map(|u| String::from_utf8_lossy(&u.name).into_owned());
    let by_user = match (&distro.users, &user_name) {
        (Some(users), Some(me)) => users.iter().any(|u| u == me),
        _ => false,
    };
    let by_group =
        distro.groups.iter().flatten().any(
            |g| matches!(nss::group_by_name(g), Some(group) if caller.in_group(Gid::from_raw(group.gid))),
        );
    if by_user || by_group {
        Ok(())
    } else {
        Err(Error::Denied {
            name: name.into(),
            user: user_name.unwrap_or_else(|| format!("with uid {}", caller.uid)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn distro(users: Option<&[&str]>, groups: Option<&[&str]>) -> Distro {
        Distro {
            dir: "/srv/x".into(),
            mapped_volumes: vec![],
            users: users.map(|u| u.iter().map(ToString::to_string).collect()),
            groups: groups.map(|g| g.iter().map(ToString::to_string).collect()),
            allow_setuid: false,
            backend: crate::BackendChoice::default(),
            ids: crate::IdMode::Own,
            user_db: crate::UserDb::Caller,
            image: None,
            devices: vec![],
        }
    }

    // uid 65534 is "nobody" and gid 0 is "root" on every Debian system.
    fn nobody(groups: Vec<Gid>) -> Caller {
        Caller { uid: Uid::from_raw(65534), gid: Gid::from_raw(65534), groups }
    }

    #[test]
    fn without_lists_everyone_is_admitted() {
        assert!(check("x", &distro(None, None), &nobody(vec![])).is_ok());
    }

    #[test]
    fn listed_user_is_admitted_and_others_are_refused() {
        assert!(check("x", &distro(Some(&["nobody"]), None), &nobody(vec![])).is_ok());
        let err = check("x", &distro(Some(&["daemon"]), None), &nobody(vec![])).unwrap_err();
        assert_eq!(err.to_string(), "user nobody may not use distro x: not in its users or groups");
    }

    #[test]
    fn membership_of_a_listed_group_admits() {
        let d = distro(Some(&["daemon"]), Some(&["root"]));
        assert!(check("x", &d, &nobody(vec![Gid::from_raw(0)])).is_ok());
        assert!(check("x", &d, &nobody(vec![Gid::from_raw(5)])).is_err());
    }

    #[test]
    fn root_is_always_admitted() {
        let root = Caller { uid: Uid::from_raw(0), gid: Gid::from_raw(0), groups: vec![] };
        assert!(check("x", &distro(Some(&["daemon"]), Some(&[])), &root).is_ok());
    }
}
