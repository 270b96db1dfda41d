//! The caller's subordinate id ranges (`/etc/subuid`, `/etc/subgid`) and
//! the keep-id mapping built over them for per-user distros.

use std::path::PathBuf;

use distrorun_config::access::Caller;
use distrorun_config::{Found, IdMode, Origin};
use distrorun_engine::userns::{self, Forbidden, KeepId, Simulate};
use distrorun_engine::Error;
use nix::unistd::{setgroups, setresgid, setresuid, Gid, Uid};

use crate::machine;

const SUBUID: &str = "/etc/subuid";
const SUBGID: &str = "/etc/subgid";

/// A `start:count` range from one line of a subordinate id file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub start: u32,
    pub count: u32,
}

/// The first range of `owner` (a login name or a numeric id) in the text of
/// `/etc/subuid` or `/etc/subgid`. Malformed lines are skipped, as shadow's
/// own tools do.
pub fn find_range(text: &str, name: &str, id: u32) -> Option<Range> {
    let id = id.to_string();
    text.lines().find_map(|line| {
        let mut fields = line.trim().split(':');
        let (owner, start, count) = (fields.next()?, fields.next()?, fields.next()?);
        if fields.next().is_some() || (owner != name && owner != id) {
            return None;
        }
        let range = Range { start: start.parse().ok()?, count: count.parse().ok()? };
        (range.count > 0).then_some(range)
    })
}

/// The caller's subordinate ids as this machine has them: the ranges (the
/// first valid one of each file, or why there is none) and the programs
/// that map them. `--doctor` reports these; `--create`, `--remove` and a
/// run use them.
pub struct Ids {
    /// The login name, or the uid where there is none.
    pub name: String,
    pub uids: Result<Range, Error>,
    pub gids: Result<Range, Error>,
    pub newuidmap: Option<PathBuf>,
    pub newgidmap: Option<PathBuf>,
}

impl Ids {
    pub fn read(caller: &Caller) -> Ids {
        let name = distrorun_config::nss::user_by_uid(caller.uid.as_raw())
            .map_or_else(|| caller.uid.to_string(), |u| String::from_utf8_lossy(&u.name).into_owned());
        let id = caller.uid.as_raw();
        Ids {
            uids: read_file(SUBUID).and_then(|text| range_in(&text, SUBUID, &name, id)),
            gids: read_file(SUBGID).and_then(|text| range_in(&text, SUBGID, &name, id)),
            newuidmap: machine::program("newuidmap"),
            newgidmap: machine::program("newgidmap"),
            name,
        }
    }

    /// The keep-id maps for `caller`, with the setuid programs that write
    /// them. A missing range or a missing program is an error that names
    /// the fix.
    pub fn keep_id(self, caller: &Caller) -> Result<KeepId, Error> {
        let (uids, gids) = (self.uids?, self.gids?);
        Ok(KeepId {
            uid_map: userns::keep_id_map(caller.uid.as_raw(), uids.start, uids.count),
            gid_map: userns::keep_id_map(caller.gid.as_raw(), gids.start, gids.count),
            newuidmap: installed("newuidmap", self.newuidmap)?,
            newgidmap: installed("newgidmap", self.newgidmap)?,
        })
    }
}

/// The keep-id maps for `caller`, as [`Ids::keep_id`] makes them.
pub fn keep_id(caller: &Caller) -> Result<KeepId, Error> {
    Ids::read(caller).keep_id(caller)
}

/// Enters a user namespace with the keep-id mapping, as the per-user
/// distro's files were written and are run.
pub fn enter_keep_id(ids: &KeepId) -> Result<(), Error> {
    match userns::enter_keep_id(ids, false)? {
        Ok(()) => Ok(()),
        Err(forbidden) => {
            Err(Error::msg(format!("per-user distros need user namespaces, and {}", forbidden.0)))
        }
    }
}

/// A subordinate id file's text; a missing file lists nobody.
fn read_file(file: &str) -> Result<String, Error> {
    match std::fs::read_to_string(file) {
        Ok(text) => Ok(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(crate::error::io(format!("read {file}"), &e)),
    }
}

/// The range of `name` (or `id`) in `text`, the contents of `file`, or the
/// error that names the fix.
fn range_in(text: &str, file: &str, name: &str, id: u32) -> Result<Range, Error> {
    find_range(text, name, id).ok_or_else(|| {
        Error::msg(format!("user {name} has no subordinate id range in {file}, which per-user distros need"))
            .with_hint(format!(
                "ask the admin to run: usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {name}"
            ))
    })
}

fn installed(name: &str, found: Option<PathBuf>) -> Result<PathBuf, Error> {
    found.ok_or_else(|| {
        Error::msg(format!("{name} is not installed; per-user distros need it to map your subordinate ids"))
            .with_hint("install shadow's uidmap package (apt-get install uidmap)")
    })
}

/// Enters the userns backend's namespaces: the keep-id mapping for a
/// distro marked `ids: "subuid"`, the caller's own ids otherwise.
pub fn enter(found: &Found, caller: &Caller, simulate: Simulate) -> Result<Result<(), Forbidden>, Error> {
    match found.distro.ids {
        IdMode::Own => userns::enter(caller.uid, caller.gid, simulate),
        IdMode::Subuid => {
            let ids = keep_id(caller)?;
            crate::keepid::enter(&ids, caller.uid)
        }
    }
}

/// Whether `--root` applies: only to per-user distros mapped over
/// subordinate ids. The real root caller is root already.
pub fn check_root(asked: bool, found: &Found, caller: &Caller) -> Result<bool, Error> {
    if !asked || caller.uid.is_root() {
        return Ok(false);
    }
    if found.origin == Origin::System {
        return Err(Error::msg(format!(
            "--root needs real root for the system distro {}: it maps no ids of yours",
            found.name
        ))
        .with_hint(format!("run: sudo distrorun {} ...", found.name)));
    }
    if found.distro.ids != IdMode::Subuid {
        return Err(Error::msg(format!(
            "--root needs a distro owned through your subordinate ids, and {} ({}) is not marked ids: \"subuid\"",
            found.name,
            found.path.display()
        ))
        .with_hint("distros made by distrorun --create are; add ids: \"subuid\" to a tree made with mmdebstrap --mode=unshare"));
    }
    Ok(true)
}

/// Becomes uid and gid 0 inside the namespace, with no supplementary
/// groups; the command exec'd next then holds root's capabilities there,
/// and only there.
pub fn become_root() -> Result<(), Error> {
    let root = (Uid::from_raw(0), Gid::from_raw(0));
    setgroups(&[root.1]).map_err(|e| Error::sys("drop the supplementary groups for --root", e))?;
    setresgid(root.1, root.1, root.1).map_err(|e| Error::sys("become gid 0 inside the distro", e))?;
    setresuid(root.0, root.0, root.0).map_err(|e| Error::sys("become uid 0 inside the distro", e))
}

#[cfg(test)]
impl Ids {
    /// The ids of user `name` (uid `id`) as these file contents give them.
    pub fn from_texts(name: &str, id: u32, uid_text: &str, gid_text: &str, programs: Option<PathBuf>) -> Ids {
        Ids {
            name: name.to_owned(),
            uids: range_in(uid_text, SUBUID, name, id),
            gids: range_in(gid_text, SUBGID, name, id),
            newuidmap: programs.clone(),
            newgidmap: programs,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{find_range, Range};

    #[test]
    fn ranges_are_found_by_name_or_id() {
        let text = "alice:100000:65536\n# comment\nbad line\n1001:200000:1000\nbob:300000:65536\n";
        assert_eq!(find_range(text, "alice", 1000), Some(Range { start: 100_000, count: 65536 }));
        assert_eq!(find_range(text, "carol", 1001), Some(Range { start: 200_000, count: 1000 }));
        assert_eq!(find_range(text, "dave", 1002), None);
        assert_eq!(find_range("eve:1:0\n", "eve", 5), None);
        assert_eq!(find_range("eve:x:5\n", "eve", 5), None);
    }
}
