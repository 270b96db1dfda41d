//! The setuid helper's privilege, as explicit state.
//!
//! [`Privileged::acquire`] runs first. It checks that this is a setuid-root
//! process started by an unprivileged user in the initial user namespace,
//! makes it undumpable, and then becomes the caller: the effective and
//! file-system ids are the caller's from then on, and the effective
//! capability set is empty. What stays is root as the saved uid and four
//! capabilities in the permitted set, the most any later step may raise.
//!
//! So every file the helper opens and every path it resolves is judged as
//! the caller's, with no capability to override the answer, and the mount
//! namespace it creates is counted against the caller's limit
//! (`user.max_mnt_namespaces`), not root's: the kernel charges a namespace
//! to the effective uid that creates it. `CAP_SYS_ADMIN` is raised only for
//! the mounts ([`MountPrivilege`]), and the other three only for the drop.
//!
//! [`Privileged::drop_for_good`] consumes the state and returns the
//! [`Unprivileged`] token that exec requires. The helper never infers its
//! state from `geteuid()` (bubblewrap's CVE-2020-5291).

use distrorun_config::access::Caller;
use distrorun_engine::rootfs::MountPrivilege;
use distrorun_engine::sys::{self, cap_bit, CapSets, CAP_SETGID, CAP_SETPCAP, CAP_SETUID, CAP_SYS_ADMIN};
use distrorun_engine::{userns, Error};
use nix::errno::Errno;
use nix::sys::prctl;
use nix::unistd::{getresgid, getresuid, setfsuid, setgroups, setresgid, setresuid, setuid, Uid};

/// Proof that the process holds root's privilege, unused, on behalf of `caller`.
#[derive(Debug)]
pub struct Privileged {
    caller: Caller,
}

/// Proof that every privilege has been dropped and the drop was verified.
#[derive(Debug)]
pub struct Unprivileged {
    _private: (),
}

/// Every capability the helper ever uses; the rest leave the permitted set
/// before anything else happens.
const PERMITTED: u64 =
    cap_bit(CAP_SYS_ADMIN) | cap_bit(CAP_SETUID) | cap_bit(CAP_SETGID) | cap_bit(CAP_SETPCAP);
/// For the mounts, and for creating the mount namespace.
const MOUNTING: u64 = cap_bit(CAP_SYS_ADMIN);
/// For the drop: the bounding set, the groups, the ids.
const DROPPING: u64 = cap_bit(CAP_SETUID) | cap_bit(CAP_SETGID) | cap_bit(CAP_SETPCAP);

impl Privileged {
    /// Checks the process is setuid root run by a non-root user in the
    /// initial user namespace, makes it undumpable (so the caller cannot
    /// ptrace it or read its memory), and becomes the caller with an empty
    /// effective set.
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
        make_undumpable()?;
        let caller = Caller {
            uid: uids.real,
            gid: gids.real,
            groups: sys::supplementary_groups().map_err(|e| Error::sys("read the caller's groups", e))?,
        };
        sys::capset(CapSets { effective: PERMITTED, permitted: PERMITTED, inheritable: 0 })
            .map_err(|e| Error::sys("limit the helper's capabilities", e))?;
        // The group first, while CAP_SETGID is still effective. Leaving root
        // as the effective uid then empties the effective set; root stays
        // the saved uid, which keeps the permitted set.
        setresgid(gids.real, gids.real, gids.real)
            .map_err(|e| Error::sys("act with the caller's group id", e))?;
        setresuid(uids.real, uids.real, uids.effective)
            .map_err(|e| Error::sys("act with the caller's user id", e))?;
        // Changing the effective uid resets the dumpable flag to the
        // fs.suid_dumpable sysctl; it must stay off whatever that says.
        make_undumpable()?;
        let privileged = Privileged { caller };
        privileged.verify_acting_as_caller()?;
        check_initial_user_namespace()?;
        Ok(privileged)
    }

    pub fn caller(&self) -> &Caller {
        &self.caller
    }

    /// The state `acquire` promises, read back from the kernel.
    fn verify_acting_as_caller(&self) -> Result<(), Error> {
        let ids = getresuid().map_err(|e| Error::sys("read the user ids", e))?;
        let caps = sys::capget().map_err(|e| Error::sys("read the helper's capabilities", e))?;
        // setfsuid returns the previous value; asking for the same reads it.
        let fsuid = setfsuid(self.caller.uid);
        if [ids.real, ids.effective, fsuid] != [self.caller.uid; 3]
            || caps.effective != 0
            || caps.permitted != PERMITTED
        {
            return Err(Error::msg(
                "cannot become the caller before reading the caller's input; refusing to go on",
            ));
        }
        Ok(())
    }

    /// Runs `steps` with exactly `caps` effective, and none again after.
    /// A method, though it reads nothing of `self`: holding a `Privileged`
    /// is what makes raising a capability legitimate.
    #[allow(clippy::unused_self)]
    fn with_capabilities<T>(&self, caps: u64, steps: impl FnOnce() -> Result<T, Error>) -> Result<T, Error> {
        let raise = CapSets { effective: caps, permitted: PERMITTED, inheritable: 0 };
        sys::capset(raise).map_err(|e| Error::sys("raise the helper's capabilities", e))?;
        let result = steps();
        let lower = CapSets { effective: 0, permitted: PERMITTED, inheritable: 0 };
        // A capability left raised would outlive its step: that is fatal.
        sys::capset(lower).map_err(|e| Error::sys("lower the helper's capabilities", e))?;
        result
    }

    /// A private mount namespace, created with the caller's effective uid so
    /// that the kernel counts it against the caller's own limit: were it
    /// counted against root's, a user who keeps namespaces alive could stop
    /// root and every other user from creating any.
    pub fn enter_mount_namespace(&self) -> Result<(), Error> {
        self.with_capabilities(MOUNTING, userns::enter_mount_namespace)
    }

    /// Drops every privilege, in the order that keeps each step possible,
    /// and verifies the result. `allow_setuid` keeps the bounding set and
    /// leaves out `no_new_privs`, so that setuid programs inside the distro
    /// still work: the admin's explicit choice for that distro.
    pub fn drop_for_good(self, allow_setuid: bool) -> Result<Unprivileged, Error> {
        let Caller { uid, gid, ref groups } = self.caller;
        // Raised for good: the last id change below takes every capability
        // away, and an error on the way ends the helper before any exec.
        sys::capset(CapSets { effective: DROPPING, permitted: PERMITTED, inheritable: 0 })
            .map_err(|e| Error::sys("raise the capabilities for the privilege drop", e))?;
        if !allow_setuid {
            clear_bounding_set()?;
        }
        setgroups(groups).map_err(|e| Error::sys("restore the caller's supplementary groups", e))?;
        setresgid(gid, gid, gid).map_err(|e| Error::sys("set the caller's group ids", e))?;
        // With no uid left 0, the kernel empties the permitted and effective
        // sets itself; clearing them again below costs one call and makes the
        // result not depend on that rule.
        setresuid(uid, uid, uid).map_err(|e| Error::sys("set the caller's user ids", e))?;
        sys::capset(CapSets::default()).map_err(|e| Error::sys("clear the capability sets", e))?;
        sys::clear_ambient_capabilities().map_err(|e| Error::sys("clear the ambient capabilities", e))?;
        if !allow_setuid {
            prctl::set_no_new_privs().map_err(|e| Error::sys("set no_new_privs", e))?;
        }
        verify_dropped(uid)?;
        Ok(Unprivileged { _private: () })
    }
}

impl MountPrivilege for Privileged {
    fn mounting<T>(&self, steps: impl FnOnce() -> Result<T, Error>) -> Result<T, Error> {
        self.with_capabilities(MOUNTING, steps)
    }
}

fn make_undumpable() -> Result<(), Error> {
    prctl::set_dumpable(false).map_err(|e| Error::sys("make the helper undumpable", e))
}

/// Drops every capability this kernel knows from the bounding set, so that
/// no file capability or setuid binary can bring one back. The kernel says
/// EINVAL past its last capability, which is where the walk ends.
fn clear_bounding_set() -> Result<(), Error> {
    for cap in 0.. {
        match sys::capbset_drop(cap) {
            Ok(()) => {}
            Err(Errno::EINVAL) => return Ok(()),
            Err(e) => {
                return Err(Error::sys(format!("drop capability {cap} from the bounding set"), e));
            }
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
    match sys::capget() {
        Ok(caps) if caps == CapSets::default() => Ok(()),
        _ => Err(lost("a capability set is not empty")),
    }
}
