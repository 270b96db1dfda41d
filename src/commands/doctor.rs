//! `--doctor`: checks this machine for this caller, one line per finding,
//! each `ok`, `warning` or `problem`, with the command that fixes it.
//! Warnings are what only some uses need (the helper where user namespaces
//! work, subordinate ids); any problem makes distrorun exit 125.

use std::fmt::Write as _;
use std::path::Path;

use distrorun_config::access::{self, Caller};
use distrorun_config::cdi::{Registry, Trust};
use distrorun_config::gpu as devices;
use distrorun_config::{load, paths, trust, Found, Origin};
use distrorun_engine::{mount, Error};
use nix::errno::Errno;
use nix::unistd::AccessFlags;

use crate::machine::{Facts, Helper};
use crate::subids::Ids;
use crate::tree::private_dir;
use crate::{output, places, tree};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Level {
    Ok,
    Warning,
    Problem,
}

#[derive(Default)]
struct Report {
    text: String,
    problems: usize,
}

impl Report {
    fn line(&mut self, level: Level, what: &str, fix: Option<&str>) {
        let word = match level {
            Level::Ok => "ok",
            Level::Warning => "warning",
            Level::Problem => {
                self.problems += 1;
                "problem"
            }
        };
        let _ = match fix {
            Some(fix) if level != Level::Ok => writeln!(self.text, "{word}: {what}; fix: {fix}"),
            _ => writeln!(self.text, "{word}: {what}"),
        };
    }
}

/// `--doctor`.
pub fn doctor() -> Result<(), Error> {
    let caller = places::caller()?;
    let facts = Facts::probe(&caller);
    let ids = (!caller.uid.is_root()).then(|| Ids::read(&caller));
    let mut r = Report::default();
    check_machine(&mut r, &caller, &facts);
    let (system, user) = places::config_dirs();
    check_system_configs(&mut r, &system);
    if let Some(ids) = &ids {
        check_subids(&mut r, ids);
        check_data_dir(&mut r);
    }
    let gpu = check_devices(&mut r);
    check_distros(&mut r, &caller, &system, user.as_deref(), gpu.as_ref());
    output::print(&r.text);
    match r.problems {
        0 => Ok(()),
        1 => {
            Err(Error::msg("--doctor found 1 problem; each line starting with `problem:` says how to fix it"))
        }
        n => Err(Error::msg(format!(
            "--doctor found {n} problems; each line starting with `problem:` says how to fix it"
        ))),
    }
}

/// User namespaces and the helper, judged from the machine's facts.
fn check_machine(r: &mut Report, caller: &Caller, facts: &Facts) {
    let userns = &facts.userns;
    if caller.uid.is_root() {
        r.line(
            Level::Ok,
            "the caller is root: distrorun uses a private mount namespace, and no user namespace",
            None,
        );
    } else {
        match (&userns.forbidden, &userns.note) {
            (None, None) => r.line(Level::Ok, "unprivileged user namespaces are usable", None),
            (None, Some(note)) => {
                r.line(Level::Ok, &format!("unprivileged user namespaces are usable: {note}"), None);
            }
            (Some(why), _) => {
                // Not fatal where the helper can take over, but per-user
                // distros and `--backend userns` need them.
                let level = if facts.helper.problem().is_none() { Level::Warning } else { Level::Problem };
                r.line(
                    level,
                    &format!("unprivileged user namespaces are not usable: {why}"),
                    userns.fix.as_deref(),
                );
            }
        }
    }
    r.line(Level::Ok, &format!("kernel {}", crate::machine::kernel_facilities()), None);
    let needed = userns.forbidden.is_some() && !caller.uid.is_root();
    check_helper(r, &facts.helper, &paths::helper_path(), needed);
}

/// The helper matters when user namespaces are unusable: then it is the
/// only way in, and what is wrong with it is a problem, not a warning.
fn check_helper(r: &mut Report, helper: &Helper, path: &Path, needed: bool) {
    let shown = path.display();
    let Some(problem) = helper.problem() else {
        r.line(Level::Ok, &format!("the setuid helper {shown} is installed setuid root"), None);
        return;
    };
    let fix = match helper {
        Helper::Ready | Helper::Missing(_) => "as root, make install (or install the distrorun package)".to_owned(),
        Helper::NotRoot { .. } => format!("as root: chown root:root {shown} && chmod 4755 {shown}"),
        Helper::NotSetuid { .. } => format!(
            "as root: chmod 4755 {shown} (in a Debian package: dpkg-statoverride --update --add root root 4755 {shown})"
        ),
        Helper::NoSuid => format!(
            "remount that file system without nosuid (findmnt -T {shown}), or install distrorun elsewhere"
        ),
        Helper::Unchecked(_) => format!("check the file system of {shown} (findmnt -T {shown})"),
    };
    let bad = if needed { Level::Problem } else { Level::Warning };
    r.line(bad, &format!("the setuid helper {shown} {problem}"), Some(&fix));
}

fn check_system_configs(r: &mut Report, system: &Path) {
    if !system.exists() {
        r.line(
            Level::Warning,
            &format!("the system config directory {} does not exist", system.display()),
            Some(&format!("as root: install -d -m 0755 {}", system.display())),
        );
        return;
    }
    let fix = |p: &Path| {
        format!(
            "as root: chown root:root {0} && chmod go-w {0} (and each directory the message names)",
            p.display()
        )
    };
    match trust::open_trusted_dir(system) {
        Ok(_) => r.line(
            Level::Ok,
            &format!("the system config directory {} is trusted by the helper", system.display()),
            None,
        ),
        Err(e) => {
            r.line(Level::Problem, &e.to_string(), Some(&fix(system)));
            return;
        }
    }
    for (name, origin) in load::list(system, None) {
        if origin != Origin::System {
            continue;
        }
        let path = system.join(format!("{name}.conf"));
        match trust::open_trusted_file(&path) {
            Ok(_) => {}
            Err(e) => r.line(Level::Problem, &e.to_string(), Some(&fix(&path))),
        }
    }
}

/// Subordinate ids, which per-user distros made without root need, judged
/// by the parser and the program lookup that `--create` uses.
fn check_subids(r: &mut Report, ids: &Ids) {
    let who = &ids.name;
    let files = [
        ("/etc/subuid", "--add-subuids", &ids.uids, "newuidmap", &ids.newuidmap),
        ("/etc/subgid", "--add-subgids", &ids.gids, "newgidmap", &ids.newgidmap),
    ];
    for (file, flag, range, tool, program) in files {
        match range {
            Ok(range) => r.line(
                Level::Ok,
                &format!("{file} has a range for {who}: {} ids from {}", range.count, range.start),
                None,
            ),
            Err(_) => r.line(
                Level::Warning,
                &format!(
                    "{file} has no usable range for {who}; per-user distros owned through subordinate ids need one"
                ),
                Some(&format!(
                    "as root: usermod {flag} 100000-165535 {who} (pick a range no other user has)"
                )),
            ),
        }
        match program {
            Some(path) => r.line(Level::Ok, &format!("{tool} is installed as {}", path.display()), None),
            None => r.line(
                Level::Warning,
                &format!("{tool} is not installed"),
                Some("as root: apt-get install uidmap"),
            ),
        }
    }
}

/// Per-user trees run their setuid files as the owner's subordinate ids:
/// a data directory others can enter gives those ids to anyone.
fn check_data_dir(r: &mut Report) {
    let Ok(data) = places::data_dir() else { return };
    if let Some(mode) = private_dir::open_to_others(&data) {
        r.line(
            Level::Problem,
            &format!(
                "the per-user distro directory {} has mode {mode:04o}: other users can enter it and run its trees' setuid files as your subordinate ids",
                data.display()
            ),
            Some(&format!("chmod 700 {}", data.display())),
        );
    }
}

/// What the host's GPUs need of every distro: the newest glibc its
/// driver's libraries need, when NVIDIA's are found.
struct HostGpu {
    glibc: Option<(u32, u32)>,
}

/// The CDI specs and GPUs of this host, what the helper would make of the
/// specs, and the device nodes the caller cannot open.
fn check_devices(r: &mut Report) -> Option<HostGpu> {
    let registry = Registry::load(Trust::Caller);
    for note in &registry.notes {
        r.line(Level::Warning, note, Some("correct or remove the spec"));
    }
    for spec in &registry.specs {
        let names: Vec<&str> = spec.devices.iter().map(|(n, _)| n.as_str()).collect();
        r.line(
            Level::Ok,
            &format!("CDI spec {}: {} devices {}", spec.file.display(), spec.kind, names.join(", ")),
            None,
        );
        if let Err(e) = trust::open_trusted_file(&spec.file) {
            r.line(
                Level::Warning,
                &format!("the setuid helper ignores CDI spec {}: {e}", spec.file.display()),
                Some("make it and its directories root's and writable only by root"),
            );
        }
        let edits = std::iter::once(&spec.edits).chain(spec.devices.iter().map(|(_, e)| e));
        for missing in edits.flat_map(|e| e.mounts.iter().map(|m| &m.host_path)).filter(|p| !p.exists()) {
            r.line(
                Level::Problem,
                &format!(
                    "CDI spec {} names {}, which does not exist",
                    spec.file.display(),
                    missing.display()
                ),
                Some("regenerate the spec after the driver changed (nvidia-ctk cdi generate)"),
            );
        }
    }
    check_device_nodes(r);
    let wanted = devices::resolve(&[devices::GPU_ALL.to_owned()], Trust::Caller).ok()?;
    let libraries: Vec<&Path> = wanted
        .files
        .iter()
        .filter_map(|f| match (&f.place, &f.source) {
            (devices::Place::Library(_), devices::Source::Host(p)) => Some(p.as_path()),
            _ => None,
        })
        .collect();
    if libraries.is_empty() {
        r.line(Level::Ok, "no GPU here needs files from the host (/dev/dri, if mapped, is enough)", None);
        return None;
    }
    let how = if registry.specs.is_empty() { "found without a CDI spec" } else { "from the CDI specs" };
    r.line(Level::Ok, &format!("--gpu brings in {} host driver libraries, {how}", libraries.len()), None);
    let glibc =
        libraries.iter().filter_map(|p| std::fs::read(p).ok()).filter_map(|b| devices::max_glibc(&b)).max();
    Some(HostGpu { glibc })
}

/// GPU device nodes the caller cannot open, and the group that can.
fn check_device_nodes(r: &mut Report) {
    let mut nodes: Vec<std::path::PathBuf> =
        ["/dev/nvidiactl", "/dev/nvidia0", "/dev/nvidia-uvm", "/dev/kfd"]
            .iter()
            .map(std::path::PathBuf::from)
            .collect();
    if let Ok(dri) = std::fs::read_dir("/dev/dri") {
        nodes.extend(dri.filter_map(Result::ok).map(|e| e.path()).filter(|p| !p.is_dir()));
    }
    for node in nodes.iter().filter(|n| n.exists()) {
        if nix::unistd::access(node.as_path(), AccessFlags::R_OK | AccessFlags::W_OK).is_ok() {
            continue;
        }
        let group = nix::sys::stat::stat(node.as_path())
            .ok()
            .and_then(|st| nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(st.st_gid)).ok().flatten())
            .map_or_else(|| "its group".to_owned(), |g| g.name);
        r.line(
            Level::Warning,
            &format!(
                "you cannot open {} (group {group}): programs inside will not see that GPU",
                node.display()
            ),
            Some(&format!("as root: usermod -aG {group} $USER, then log in again")),
        );
    }
}

/// What a distro lacks for the devices: the places device files are shown
/// in, and a glibc as new as the host driver's.
fn check_distro_devices(r: &mut Report, found: &Found, root: &std::os::fd::OwnedFd, gpu: &HostGpu) {
    let missing = |p: &&str| matches!(mount::open_target(root, Path::new(p)), Err(Errno::ENOENT));
    let needed: Vec<&str> = ["/usr/local/lib", devices::LD_CACHE].into_iter().filter(missing).collect();
    if !needed.is_empty() {
        let level = if found.distro.devices.is_empty() { Level::Warning } else { Level::Problem };
        r.line(
            level,
            &format!("distro {}: --gpu needs {} inside, which it lacks", found.name, needed.join(" and ")),
            Some("as root: mkdir -p /usr/local/lib inside; run ldconfig inside for /etc/ld.so.cache"),
        );
    }
    // A loader directory is shown through its parent where that exists.
    let shown = |p: &&str| {
        missing(p)
            && Path::new(p)
                .parent()
                .filter(|d| d.components().count() > 3)
                .is_none_or(|d| missing(&d.to_str().unwrap_or("/")))
    };
    let lacking: Vec<String> = devices::MERGED_DIRS
        .into_iter()
        .filter(shown)
        .map(|p| found.distro.dir.join(p.trim_start_matches('/')).display().to_string())
        .collect();
    if !lacking.is_empty() {
        r.line(
            Level::Warning,
            &format!("distro {}: --gpu cannot show vendor files in {}", found.name, lacking.join(", ")),
            Some(&format!("as root: mkdir -p {}", lacking.join(" "))),
        );
    }
    let guest =
        ["usr/lib/x86_64-linux-gnu/libc.so.6", "usr/lib64/libc.so.6", "lib/x86_64-linux-gnu/libc.so.6"]
            .iter()
            .find_map(|p| std::fs::read(found.distro.dir.join(p)).ok())
            .and_then(|b| devices::max_glibc(&b));
    if let (Some(need), Some(have)) = (gpu.glibc, guest) {
        if have < need {
            r.line(
                Level::Problem,
                &format!(
                    "distro {}: its glibc 2.{} is older than the glibc 2.{} the host's GPU driver libraries need",
                    found.name, have.0, need.0
                ),
                Some("use a newer release of the distro, or a driver branch built for older glibc"),
            );
        }
    }
}

fn check_distros(r: &mut Report, caller: &Caller, system: &Path, user: Option<&Path>, gpu: Option<&HostGpu>) {
    for (name, origin) in load::list(system, user) {
        let found = match load::find(&name, system, user) {
            Ok(found) if found.origin == origin => found,
            Ok(_) => continue,
            Err(e) => {
                r.line(Level::Problem, &format!("distro {name}: {e}"), Some("correct the file it names"));
                continue;
            }
        };
        if access::check(&found.name, &found.distro, caller).is_err() {
            continue;
        }
        check_distro(r, &found, gpu);
    }
}

fn check_distro(r: &mut Report, found: &Found, gpu: Option<&HostGpu>) {
    let dir = &found.distro.dir;
    let root = match tree::open_path(dir) {
        Ok(fd) => fd,
        Err(e) => {
            r.line(
                Level::Problem,
                &format!("distro {}: cannot open its directory {}: {}", found.name, dir.display(), e.desc()),
                Some(&format!(
                    "create the tree there (debootstrap, mmdebstrap) or correct dir in {}",
                    found.path.display()
                )),
            );
            return;
        }
    };
    let mut missing = Vec::new();
    let mut refused = Vec::new();
    let kernel = [Path::new("/proc"), Path::new("/sys")];
    let volumes =
        found.distro.mapped_volumes.iter().filter(|v| !v.optional || v.src.exists()).map(|v| v.dst.as_path());
    for dst in kernel.into_iter().chain(volumes) {
        match mount::open_target(&root, dst) {
            Ok(_) => {}
            Err(Errno::ENOENT) => missing.push(dir.join(dst.strip_prefix("/").unwrap_or(dst))),
            Err(e) => refused.push(format!("{}: {}", dst.display(), e.desc())),
        }
    }
    if let Some(gpu) = gpu {
        check_distro_devices(r, found, &root, gpu);
    }
    if missing.is_empty() && refused.is_empty() {
        r.line(
            Level::Ok,
            &format!("distro {}: {} and every mount point it needs exist", found.name, dir.display()),
            None,
        );
    }
    if !missing.is_empty() {
        let list: Vec<String> = missing.iter().map(|p| p.display().to_string()).collect();
        let owner = if found.origin == Origin::System { "as root" } else { "as the tree's owner" };
        r.line(
            Level::Problem,
            &format!("distro {}: mount points missing inside: {}", found.name, list.join(", ")),
            Some(&format!("{owner}: mkdir -p {}", list.join(" "))),
        );
    }
    if !refused.is_empty() {
        r.line(
            Level::Problem,
            &format!(
                "distro {}: mount points that cannot be used (a symlink is refused): {}",
                found.name,
                refused.join(", ")
            ),
            Some("replace each with a real directory inside the tree"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::Userns;
    use distrorun_config::access::Caller;
    use nix::unistd::{Gid, Uid};

    fn user() -> Caller {
        Caller { uid: Uid::from_raw(1000), gid: Gid::from_raw(1000), groups: vec![] }
    }

    fn machine(forbidden: Option<&str>, helper: Helper) -> Report {
        let userns =
            Userns { forbidden: forbidden.map(str::to_owned), fix: Some("the fix".into()), note: None };
        let mut r = Report::default();
        check_machine(&mut r, &user(), &Facts { userns, helper });
        r
    }

    #[test]
    fn a_helper_on_a_nosuid_mount_is_a_problem_where_it_is_needed() {
        let r = machine(Some("user.max_user_namespaces is 0"), Helper::NoSuid);
        assert_eq!(r.problems, 2, "{}", r.text);
        assert!(r.text.contains("problem: unprivileged user namespaces are not usable"), "{}", r.text);
        assert!(r.text.contains("lies on a file system mounted nosuid"), "{}", r.text);
        assert!(r.text.contains("fix: remount that file system without nosuid"), "{}", r.text);
        // Where user namespaces work, it is only a warning.
        let r = machine(None, Helper::NoSuid);
        assert_eq!(r.problems, 0, "{}", r.text);
        assert!(r.text.contains("warning: the setuid helper"), "{}", r.text);
    }

    #[test]
    fn the_doctor_and_the_backend_agree_on_the_helper() {
        let states = [
            Helper::Ready,
            Helper::Missing(Errno::ENOENT),
            Helper::NotRoot { uid: 1000 },
            Helper::NotSetuid { mode: 0o755 },
            Helper::NoSuid,
            Helper::Unchecked(Errno::EIO),
        ];
        for helper in states {
            let r = machine(Some("kernel.unprivileged_userns_clone is 0"), helper.clone());
            let usable = helper.problem().is_none();
            assert_eq!(r.text.contains("ok: the setuid helper"), usable, "{helper:?}: {}", r.text);
            // Without user namespaces, an unusable helper leaves no way in.
            assert_eq!(r.problems, if usable { 0 } else { 2 }, "{helper:?}: {}", r.text);
        }
    }

    /// The doctor's lines on alice's ids, as these files list them, and
    /// what `--create` would make of the same ids.
    fn subids(text: &str, newuidmap: Option<&str>) -> (String, Result<(), Error>) {
        let ids = Ids::from_texts("alice", 1000, text, text, newuidmap.map(Into::into));
        let mut r = Report::default();
        check_subids(&mut r, &ids);
        (r.text, ids.keep_id(&user()).map(drop))
    }

    #[test]
    fn a_range_create_would_refuse_is_no_range_to_the_doctor() {
        let newuidmap = Some("/usr/bin/newuidmap");
        for bad in ["alice:100000:0\n", "alice:x:65536\n", "alice:100000\n", "alice:1:2:3\n", "bob:1:65536\n"]
        {
            let (text, created) = subids(bad, newuidmap);
            assert!(text.contains("warning: /etc/subuid has no usable range for alice"), "{bad:?}: {text}");
            let err = created.unwrap_err().to_string();
            assert!(err.contains("has no subordinate id range in /etc/subuid"), "{bad:?}: {err}");
        }
        let (text, created) = subids("alice:100000:65536\n", newuidmap);
        assert!(text.contains("ok: /etc/subuid has a range for alice: 65536 ids from 100000"), "{text}");
        assert!(created.is_ok(), "{created:?}");
    }

    #[test]
    fn a_missing_newuidmap_is_a_warning_and_an_error_for_create() {
        let (text, created) = subids("alice:100000:65536\n", None);
        assert!(text.contains("warning: newuidmap is not installed"), "{text}");
        let err = created.unwrap_err().to_string();
        assert!(err.starts_with("newuidmap is not installed"), "{err}");
    }
}
