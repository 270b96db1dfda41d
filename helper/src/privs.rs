//! The setuid helper's privilege, as explicit state.
//!
//! [`Privileged`] is created once, after checking that this really is a
//! setuid-root process started by an unprivileged user in the initial user
//! namespace. It is consumed by [`Privileged::drop_for_good`], which returns
//! the [`Unprivileged`] token that exec requires. The helper never infers
//! its state from `geteuid()` later on (bubblewrap's CVE-2020-5291).

use std::collections::HashSet;

use caps::{CapSet, Capability};
use distrorun_config::access::Caller;
use nix::errno::Errno;
use nix::sys::prctl;
use nix::unistd::{getresgid, getresuid, setfsgid, setfsuid, setgroups, setresgid, setresuid, setuid, Uid};

use crate::Error;

/// Proof that the process holds root's privilege on behalf of `caller`.
#[derive(Debug)]
pub struct Privileged {
    caller: Caller,
}

/// Proof that every privilege has been dropped and the drop was verified.
#[derive(Debug)]
pub struct Unprivileged {
    _private: (),
}

/// The capabilities the helper uses while privileged. Everything else is
/// removed from the effective set at once, so that, for example,
/// CAP_DAC_OVERRIDE or CAP_SYS_PTRACE can never help a path lookup.
const NEEDED: [Capability; 4] =
    [Capability::CAP_SYS_ADMIN, Capability::CAP_SETUID, Capability::CAP_SETGID, Capability::CAP_SETPCAP];

impl Privileged {
    /// Checks the process is setuid root run by a non-root user in the
    /// initial user namespace, makes it undumpable (so the caller cannot
    /// ptrace it or read its memory), and trims the effective capabilities.
    pub fn acquire() -> Result<Privileged, Error> {
        let uids = getresuid().map_err(|e| Error::sys("read the process's user ids", e))?;
        let gids = getresgid().map_err(|e| Error::sys("read the process's group ids", e))?;
        if !uids.effective.is_root() {
            let helper = distrorun_config::paths::helper_path();
            let helper = helper.display();
            return Err(Error::msg("distrorun-helper is not setuid root").with_hint(format!(
                "as root: chown root:root {helper} && chmod 4755 {helper}, on a filesystem without nosuid"
            )));
        }
        if uids.real.is_root() {
            return Err(Error::msg(
                "distrorun-helper is for unprivileged callers; root runs distrorun directly",
            ));
        }
        prctl::set_dumpable(false).map_err(|e| Error::sys("make the helper undumpable", e))?;
        check_initial_user_namespace()?;
        let wanted: HashSet<Capability> = NEEDED.into_iter().collect();
        caps::set(None, CapSet::Effective, &wanted)
            .map_err(|e| Error::msg(format!("cannot trim the helper's capabilities: {e}")))?;
        let groups =
            crate::sys::supplementary_groups().map_err(|e| Error::sys("read the caller's groups", e))?;
        Ok(Privileged { caller: Caller { uid: uids.real, gid: gids.real, groups } })
    }

    pub fn caller(&self) -> &Caller {
        &self.caller
    }

    /// From here on every path lookup, and every permission check on it,
    /// is made as the caller: the helper never reaches a path the caller
    /// could not reach. The kernel also drops the file-system capabilities
    /// from the effective set while the fsuid is not 0.
    pub fn resolve_as_caller(&self) -> Result<(), Error> {
        setfsgid(self.caller.gid);
        setfsuid(self.caller.uid);
        // Both calls return the previous value; asking again reads it back.
        if setfsuid(self.caller.uid) != self.caller.uid || setfsgid(self.caller.gid) != self.caller.gid {
            return Err(Error::msg("cannot switch the file-system ids to the caller's"));
        }
        Ok(())
    }

    /// Drops every privilege, in the order that keeps each step possible,
    /// and verifies the result. `allow_setuid` keeps the bounding set and
    /// leaves out no_new_privs, so that setuid programs inside the distro
    /// still work: the admin's explicit choice for that distro.
    pub fn drop_for_good(self, allow_setuid: bool) -> Result<Unprivileged, Error> {
        let Caller { uid, gid, ref groups } = self.caller;
        if !allow_setuid {
            // Needs CAP_SETPCAP, so it comes before the ids change.
            clear_bounding_set()?;
        }
        setgroups(groups).map_err(|e| Error::sys("restore the caller's supplementary groups", e))?;
        setresgid(gid, gid, gid).map_err(|e| Error::sys("set the caller's group ids", e))?;
        setresuid(uid, uid, uid).map_err(|e| Error::sys("set the caller's user ids", e))?;
        // Clearing the permitted set clears the effective set with it.
        for set in [CapSet::Permitted, CapSet::Inheritable, CapSet::Ambient] {
            caps::clear(None, set)
                .map_err(|e| Error::msg(format!("cannot clear the {set:?} capability set: {e}")))?;
        }
        if !allow_setuid {
            prctl::set_no_new_privs().map_err(|e| Error::sys("set no_new_privs", e))?;
        }
        verify_dropped(uid)?;
        Ok(Unprivileged { _private: () })
    }
}

/// Drops every capability from the bounding set, so that no file capability
/// or setuid binary can bring one back. A capability this kernel does not
/// know cannot be dropped, and is not there to begin with.
fn clear_bounding_set() -> Result<(), Error> {
    for cap in caps::all() {
        if caps::drop(None, CapSet::Bounding, cap).is_err()
            && caps::has_cap(None, CapSet::Bounding, cap).is_ok()
        {
            return Err(Error::msg(format!("cannot drop {cap} from the capability bounding set")));
        }
    }
    Ok(())
}

/// A process that is "root" only inside a user namespace must not be taken
/// for the real thing: only the initial namespace maps every id to itself.
fn check_initial_user_namespace() -> Result<(), Error> {
    let map = std::fs::read_to_string("/proc/self/uid_map")
        .map_err(|e| Error::msg(format!("cannot read /proc/self/uid_map: {e}")))?;
    let fields: Vec<&str> = map.split_whitespace().collect();
    if fields != ["0", "0", "4294967295"] {
        return Err(Error::msg("distrorun-helper refuses to run inside a user namespace"));
    }
    Ok(())
}

/// The drop must be irreversible and complete; anything else aborts the run
/// before the command starts.
fn verify_dropped(uid: Uid) -> Result<(), Error> {
    let lost = |what: &str| Error::msg(format!("privilege drop failed: {what}; refusing to run the command"));
    if setuid(Uid::from_raw(0)) != Err(Errno::EPERM) {
        return Err(lost("setuid(0) did not fail with EPERM"));
    }
    let ids = getresuid().map_err(|e| Error::sys("read the user ids after the drop", e))?;
    if [ids.real, ids.effective, ids.saved] != [uid; 3] {
        return Err(lost("a user id is not the caller's"));
    }
    // The ambient set is never larger than permitted and inheritable both,
    // so these three being empty proves it empty too.
    for set in [CapSet::Effective, CapSet::Permitted, CapSet::Inheritable] {
        match caps::read(None, set) {
            Ok(held) if held.is_empty() => {}
            _ => return Err(lost("a capability set is not empty")),
        }
    }
    Ok(())
}
