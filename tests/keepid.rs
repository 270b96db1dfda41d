//! The per-user keep-id namespace: made once, joined by every launch of an
//! `ids: "subuid"` distro, and never joined when it is not the caller's own.
//!
//! Each test gives the test user a runtime directory of its own
//! (`XDG_RUNTIME_DIR`), so that its holder is its own, and kills that
//! holder when it ends.

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use distrorun_testkit::*;

/// What a launch reports from inside: its user namespace, its parent's pid
/// and the shell's, and its uid.
const PROBE: &str = "readlink /proc/self/ns/user; id -u";

struct Keep {
    runtime: TempDir,
    distro: UserDistro,
}

impl Keep {
    fn new(tag: &str) -> Keep {
        let runtime = TempDir::owned_by(USER, tag).with_mode(0o700);
        let ron = ron_config(Path::new(GUEST), STANDARD_VOLUMES, "ids: \"subuid\",");
        let distro = UserDistro::new(USER, &unique(tag), &ron);
        Keep { runtime, distro }
    }

    fn run(&self, args: &[&str]) -> Run {
        let mut all = vec![self.distro.name.as_str()];
        all.extend_from_slice(args);
        Run::as_user(USER, &all).env("XDG_RUNTIME_DIR", &self.runtime.path)
    }

    /// The user namespace a launch ran in.
    fn namespace(&self) -> String {
        let out = self.run(&["sh", "-c", PROBE]).output();
        out.assert_ok();
        let text = out.stdout_str();
        let mut lines = text.lines();
        let ns = lines.next().unwrap_or_default().to_owned();
        assert!(ns.starts_with("user:["), "{}", out.report());
        assert_eq!(lines.next(), Some(user_ids(USER).0.to_string().as_str()), "{}", out.report());
        ns
    }

    fn state(&self) -> PathBuf {
        self.runtime.join("distrorun-keepid")
    }

    fn holder(&self) -> Option<u32> {
        fs::read_to_string(self.state()).ok()?.trim().parse().ok()
    }
}

impl Drop for Keep {
    fn drop(&mut self) {
        if let Some(pid) = self.holder() {
            kill(pid);
        }
    }
}

/// Kills `pid` and waits until it is gone or a zombie: a holder is no
/// one's child, and where nothing reaps orphans promptly it stays one.
fn kill(pid: u32) {
    let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
    for _ in 0..100 {
        match fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => return,
            Ok(stat) if stat.rsplit(')').next().is_some_and(|rest| rest.trim_start().starts_with('Z')) => {
                return
            }
            Ok(_) => {}
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn ns_of(pid: u32) -> String {
    fs::read_link(format!("/proc/{pid}/ns/user"))
        .unwrap_or_else(|e| panic!("read the user namespace of pid {pid}: {e}"))
        .to_string_lossy()
        .into_owned()
}

/// A process of `user` in a user namespace of its own, made by `unshare`
/// with `args`; killed on drop.
struct Stranger(Child);

impl Stranger {
    fn start(user: &str, args: &[&str]) -> Stranger {
        let child = Command::new("runuser")
            .args(["-u", user, "--", "unshare"])
            .args(args)
            .args(["sleep", "300"])
            .stdin(Stdio::null())
            .spawn()
            .expect("start unshare as another user");
        let s = Stranger(child);
        // Until it has unshared, its namespace is still the initial one.
        let initial = fs::read_link("/proc/self/ns/user").expect("read this process's user namespace");
        let initial = initial.to_string_lossy();
        for _ in 0..200 {
            if s.sleeper().is_some_and(|pid| ns_of(pid) != initial) {
                return s;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("unshare {args:?} as {user} did not enter a user namespace");
    }

    /// The `sleep` that unshare became (runuser's child).
    fn sleeper(&self) -> Option<u32> {
        let children =
            fs::read_to_string(format!("/proc/{}/task/{}/children", self.0.id(), self.0.id())).ok()?;
        children.split_whitespace().next()?.parse().ok()
    }
}

impl Drop for Stranger {
    fn drop(&mut self) {
        if let Some(pid) = self.sleeper() {
            kill(pid);
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn write_state(k: &Keep, pid: u32) {
    let (uid, gid) = user_ids(USER);
    fs::write(k.state(), format!("{pid}\n")).expect("write the state file");
    std::os::unix::fs::chown(k.state(), Some(uid), Some(gid)).expect("chown the state file");
}

#[test]
fn launches_share_one_namespace_made_once() {
    let k = Keep::new("keep-once");
    let first = k.namespace();
    let holder = k.holder().expect("the first launch records its holder");
    assert_eq!(ns_of(holder), first, "the holder's namespace is the one the launch ran in");
    let comm = fs::read_to_string(format!("/proc/{holder}/comm")).unwrap_or_default();
    assert_eq!(comm.trim(), "distrorun-keep");
    assert_eq!(k.namespace(), first, "a second launch joins the same namespace");
    assert_eq!(k.holder(), Some(holder), "and starts no second holder");
}

#[test]
fn the_command_is_execd_in_place_in_the_joined_namespace() {
    let k = Keep::new("keep-inplace");
    k.namespace();
    let script = format!("{BIN} {} sh -c 'echo $PPID'; echo $$", k.distro.name);
    let out =
        Run::as_user(USER, &["-c", &script]).bin("/bin/sh").env("XDG_RUNTIME_DIR", &k.runtime.path).output();
    out.assert_ok();
    let text = out.stdout_str();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.len() == 2 && !lines[0].is_empty(), "{}", out.report());
    assert_eq!(lines[0], lines[1], "the command's parent is not the shell:\n{}", out.report());
}

#[test]
fn the_environment_is_byte_identical_in_the_joined_namespace() {
    let k = Keep::new("keep-env");
    k.namespace();
    let run = k.run(&["cat", "/proc/self/environ"]).env("ODD", "a\u{1}b c=d");
    let expected = run.environ_bytes();
    let out = run.output();
    out.assert_ok();
    assert_eq!(out.stdout, expected, "{}", out.report());
}

#[test]
fn a_dead_holder_is_replaced() {
    let k = Keep::new("keep-dead");
    let first = k.namespace();
    let holder = k.holder().expect("a holder");
    kill(holder);
    let second = k.namespace();
    assert_ne!(second, first, "a dead holder's namespace cannot be joined");
    let new_holder = k.holder().expect("a new holder");
    assert_ne!(new_holder, holder);
    assert_eq!(ns_of(new_holder), second);
}

/// Points the state file at a process of `user` that `unshare ARGS` put in
/// a user namespace of its own, and checks that a launch does not join it.
fn stranger_is_not_joined(tag: &str, user: &str, args: &[&str]) {
    let k = Keep::new(tag);
    let stranger = Stranger::start(user, args);
    let pid = stranger.sleeper().expect("the stranger's pid");
    write_state(&k, pid);
    let ns = k.namespace();
    assert_ne!(ns, ns_of(pid), "the launch joined the namespace of {user}'s unshare {args:?}");
    assert_ne!(k.holder(), Some(pid), "the state file still names the stranger");
}

/// A state file naming another user's process in a namespace of its own
/// (as after the holder died and its pid was reused) is not joined.
#[test]
fn another_users_process_named_by_the_state_file_is_not_joined() {
    stranger_is_not_joined("keep-other", OTHER_USER, &["--user", "--map-root-user"]);
}

/// The caller's own process in a user namespace with other maps (a plain
/// `unshare -U`, or an own-ids distrorun command) is not joined either.
#[test]
fn own_process_with_other_maps_is_not_joined() {
    stranger_is_not_joined("keep-own", USER, &["--user", "--map-current-user"]);
}

#[test]
fn another_user_cannot_join_the_namespace() {
    let k = Keep::new("keep-join");
    k.namespace();
    let holder = k.holder().expect("a holder").to_string();
    let out = Command::new("runuser")
        .args(["-u", OTHER_USER, "--", "nsenter", "--user", "--target", &holder, "true"])
        .output()
        .expect("run nsenter as the other user");
    assert!(!out.status.success(), "{OTHER_USER} joined the keep-id namespace of {USER}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Permission denied") || err.contains("Operation not permitted"), "{out:?}");
}

/// A runtime directory that others may write is not used: the launch still
/// works (through /run/user/UID, or writing its own maps) and leaves no
/// state there for another user to replace.
#[test]
fn a_runtime_directory_others_can_write_is_not_used() {
    let k = Keep::new("keep-open-dir");
    fs::set_permissions(&k.runtime.path, fs::Permissions::from_mode(0o1777)).expect("chmod");
    k.namespace();
    k.namespace();
    assert!(!k.state().exists(), "state written into a directory others can write");
}

/// A state file that is a symlink is not followed, and is replaced.
#[test]
fn a_symlinked_state_file_is_not_followed() {
    let k = Keep::new("keep-link");
    let stranger = Stranger::start(USER, &["--user", "--map-current-user"]);
    let decoy = k.runtime.join("decoy");
    fs::write(&decoy, format!("{}\n", stranger.sleeper().expect("pid"))).expect("write decoy");
    symlink(&decoy, k.state()).expect("symlink");
    k.namespace();
    assert!(!fs::symlink_metadata(k.state()).expect("state").file_type().is_symlink(), "the link was kept");
    assert!(k.holder().is_some());
}

#[test]
fn concurrent_first_launches_start_one_holder() {
    let k = Keep::new("keep-race");
    let launches: Vec<_> = (0..6)
        .map(|_| {
            let run = k.run(&["sh", "-c", PROBE]);
            std::thread::spawn(move || run.output())
        })
        .collect();
    let mut namespaces = vec![];
    for l in launches {
        let out = l.join().expect("launch thread");
        out.assert_ok();
        namespaces.push(out.stdout_str().lines().next().unwrap_or_default().to_owned());
    }
    namespaces.dedup();
    assert_eq!(namespaces.len(), 1, "concurrent first launches ended in several namespaces: {namespaces:?}");
    assert_eq!(ns_of(k.holder().expect("a holder")), namespaces[0]);
}

/// Launches without a runtime directory (as under `su`, cron, or ssh
/// without `pam_systemd`) keep their state in `/tmp/distrorun-UID`. They run
/// as `OTHER_USER`, whom the set-up gives no `/run/user/UID`; the directory
/// in /tmp is one per user, so these tests take turns.
struct NoRuntime {
    distro: UserDistro,
    dir: PathBuf,
    _turn: std::sync::MutexGuard<'static, ()>,
}

static TMP_TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());

impl NoRuntime {
    fn new(tag: &str) -> NoRuntime {
        let turn = TMP_TURN.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let uid = user_ids(OTHER_USER).0;
        assert!(
            !Path::new(&format!("/run/user/{uid}")).exists(),
            "/run/user/{uid} exists: these tests need {OTHER_USER} without a runtime directory"
        );
        let dir = PathBuf::from(format!("/tmp/distrorun-{uid}"));
        let ron = ron_config(Path::new(GUEST), STANDARD_VOLUMES, "ids: \"subuid\",");
        let k = NoRuntime { distro: UserDistro::new(OTHER_USER, &unique(tag), &ron), dir, _turn: turn };
        k.clear();
        k
    }

    /// Ends the holder recorded there and removes whatever is at the name.
    fn clear(&self) {
        if let Some(pid) =
            fs::read_to_string(self.dir.join("distrorun-keepid")).ok().and_then(|t| t.trim().parse().ok())
        {
            kill(pid);
        }
        match fs::symlink_metadata(&self.dir) {
            Ok(m) if m.is_dir() => fs::remove_dir_all(&self.dir).expect("remove the state directory"),
            Ok(_) => fs::remove_file(&self.dir).expect("remove what is at the state directory's name"),
            Err(_) => {}
        }
    }

    /// The user namespace a launch ran in, with neither `XDG_RUNTIME_DIR`
    /// nor /run/user/UID.
    fn namespace(&self) -> String {
        let out = Run::as_user(OTHER_USER, &[&self.distro.name, "sh", "-c", PROBE])
            .env_remove("XDG_RUNTIME_DIR")
            .output();
        out.assert_ok();
        let text = out.stdout_str();
        let mut lines = text.lines();
        let ns = lines.next().unwrap_or_default().to_owned();
        assert!(ns.starts_with("user:["), "{}", out.report());
        assert_eq!(lines.next(), Some(user_ids(OTHER_USER).0.to_string().as_str()), "{}", out.report());
        ns
    }

    /// `OTHER_USER`'s keep-id holders now running.
    fn holders() -> Vec<u32> {
        let uid = user_ids(OTHER_USER).0;
        fs::read_dir("/proc")
            .expect("read /proc")
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| {
                let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
                let owner =
                    fs::metadata(format!("/proc/{pid}")).map(|m| std::os::unix::fs::MetadataExt::uid(&m));
                comm.trim() == "distrorun-keep" && owner.ok() == Some(uid)
            })
            .collect()
    }
}

impl Drop for NoRuntime {
    fn drop(&mut self) {
        self.clear();
    }
}

#[test]
fn without_a_runtime_directory_the_namespace_is_kept_through_a_private_directory_in_tmp() {
    let k = NoRuntime::new("keep-tmp");
    let first = k.namespace();
    let meta = fs::symlink_metadata(&k.dir).expect("the launch made its directory in /tmp");
    assert!(meta.is_dir());
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&meta), user_ids(OTHER_USER).0);
    assert_eq!(meta.permissions().mode() & 0o777, 0o700, "{} is open to others", k.dir.display());
    let holder: u32 = fs::read_to_string(k.dir.join("distrorun-keepid"))
        .expect("the state file")
        .trim()
        .parse()
        .expect("a pid");
    assert_eq!(ns_of(holder), first);
    assert_eq!(k.namespace(), first, "a second launch joins the same namespace");
}

/// Another user (`USER` here) creates the name first: as a directory open
/// to all, as a private directory of its own, as a symlink to a directory
/// of the victim's, and as a file. Each time the victim's launches still
/// run, with the right maps, and write nothing there or through it.
#[test]
fn a_name_another_user_planted_in_tmp_is_never_used() {
    let (attacker, attacker_gid) = user_ids(USER);
    let victim_dir = TempDir::owned_by(OTHER_USER, "keep-victim").with_mode(0o700);
    for plant in ["open directory", "private directory", "symlink", "file"] {
        let k = NoRuntime::new("keep-plant");
        match plant {
            "open directory" | "private directory" => {
                fs::create_dir(&k.dir).expect("plant a directory");
                let mode = if plant == "open directory" { 0o1777 } else { 0o700 };
                fs::set_permissions(&k.dir, fs::Permissions::from_mode(mode)).expect("chmod");
            }
            "symlink" => symlink(&victim_dir.path, &k.dir).expect("plant a symlink"),
            _ => fs::write(&k.dir, "").expect("plant a file"),
        }
        std::os::unix::fs::lchown(&k.dir, Some(attacker), Some(attacker_gid))
            .expect("give it to the attacker");
        let before = NoRuntime::holders();
        let out = Run::as_user(OTHER_USER, &[&k.distro.name, "cat", "/proc/self/uid_map"])
            .env_remove("XDG_RUNTIME_DIR")
            .output();
        out.assert_ok();
        let ranges = out.stdout_str().lines().filter(|l| !l.trim().is_empty()).count();
        assert_eq!(ranges, 3, "{plant}: the keep-id maps are not in place:\n{}", out.report());
        k.namespace();
        let meta = fs::symlink_metadata(&k.dir).expect("the planted name is still there");
        assert_eq!(
            std::os::unix::fs::MetadataExt::uid(&meta),
            attacker,
            "{plant}: the planted name was replaced"
        );
        if meta.is_dir() {
            let entries: Vec<_> =
                fs::read_dir(&k.dir).expect("read the planted directory").flatten().collect();
            assert!(entries.is_empty(), "{plant}: the victim wrote into the planted directory: {entries:?}");
        }
        let through: Vec<_> =
            fs::read_dir(&victim_dir.path).expect("read the symlink's target").flatten().collect();
        assert!(through.is_empty(), "{plant}: the victim wrote through the symlink: {through:?}");
        let started: Vec<u32> = NoRuntime::holders().into_iter().filter(|p| !before.contains(p)).collect();
        assert!(
            started.is_empty(),
            "{plant}: holders {started:?} were started with nowhere safe to record them"
        );
    }
}
