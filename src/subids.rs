//! The caller's subordinate id ranges (`/etc/subuid`, `/etc/subgid`) and
//! the keep-id mapping built over them for per-user distros.

use std::path::{Path, PathBuf};

use distrorun_config::access::Caller;
use distrorun_config::{Found, IdMode, Origin};
use distrorun_engine::userns::{self, Forbidden, KeepId, Simulate};
use distrorun_engine::Error;
use nix::unistd::{setgroups, setresgid, setresuid, Gid, Uid};

const SUBUID: &str = "/etc/subuid";
const SUBGID: &str = "/etc/subgid";
/// Where shadow's uidmap package installs them; the list is fixed so that
/// `$PATH` cannot choose the programs that write the maps.
const BIN_DIRS: &[&str] = &["/usr/bin", "/bin", "/usr/sbin", "/sbin", "/usr/local/bin"];

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

/// The keep-id maps for `caller`, with the setuid programs that write them.
/// A missing range or a missing program is an error that names the fix.
pub fn keep_id(caller: &Caller) -> Result<KeepId, Error> {
    let name = distrorun_config::nss::user_by_uid(caller.uid.as_raw())
        .map_or_else(|| caller.uid.to_string(), |u| String::from_utf8_lossy(&u.name).into_owned());
    let uids = range_of(SUBUID, &name, caller.uid.as_raw())?;
    let gids = range_of(SUBGID, &name, caller.uid.as_raw())?;
    Ok(KeepId {
        uid_map: userns::keep_id_map(caller.uid.as_raw(), uids.start, uids.count),
        gid_map: userns::keep_id_map(caller.gid.as_raw(), gids.start, gids.count),
        newuidmap: program("newuidmap")?,
        newgidmap: program("newgidmap")?,
    })
}

fn range_of(file: &str, name: &str, id: u32) -> Result<Range, Error> {
    let text = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(Error::msg(format!("cannot read {file}: {e}"))),
    };
    find_range(&text, name, id).ok_or_else(|| {
        Error::msg(format!("user {name} has no subordinate id range in {file}, which per-user distros need"))
            .with_hint(format!(
                "ask the admin to run: usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {name}"
            ))
    })
}

fn program(name: &str) -> Result<PathBuf, Error> {
    BIN_DIRS.iter().map(|dir| Path::new(dir).join(name)).find(|p| p.is_file()).ok_or_else(|| {
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

/// `--list`'s last column for a per-user distro: its id mode, shown only
/// for distros owned through subordinate ids, so that the lines of the
/// others stay as they were.
pub fn list_column(name: &str) -> &'static str {
    match crate::run::find_config(name) {
        Ok(found) if found.distro.ids == IdMode::Subuid => "\tids=subuid",
        _ => "",
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
