//! What running a command through distrorun means: the command runs as if
//! started directly, only with the guest's files as its root. Each test runs
//! as an unprivileged user once per backend; the root caller and per-user
//! configs have their own tests at the end.

use distrorun_testkit::*;
use std::ffi::OsStr;
use std::fs;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

mod exec_errors;
mod mounts;

/// `distrorun --backend B NAME CMD...` as the test user.
fn run_in(b: Backend, d: &TestDistro, cmd: &[&str]) -> Run {
    let mut args = vec![d.name.as_str()];
    args.extend_from_slice(cmd);
    Run::user(&args).backend(b)
}

fn mountinfo_inside(b: Backend, d: &TestDistro) -> Vec<MountInfo> {
    let out = run_in(b, d, &["cat", "/proc/self/mountinfo"]).output();
    out.assert_ok();
    parse_mountinfo(&out.stdout_str())
}

fn readlink(p: &str) -> String {
    fs::read_link(p).unwrap_or_else(|e| panic!("readlink {p}: {e}")).to_string_lossy().into_owned()
}

fn run_host(program: &str, args: &[&str]) {
    let out =
        Command::new(program).args(args).output().unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(out.status.success(), "{program} {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// A directory under /tmp that is a shared mount on the host, so that mounts
/// made below it later propagate into mount namespaces copied from the host.
/// systemd makes every mount shared; the directory is made shared explicitly
/// so the tests mean the same on hosts without systemd.
struct SharedDir {
    dir: TempDir,
}

impl SharedDir {
    fn new(tag: &str) -> SharedDir {
        let dir = TempDir::owned_by(USER, tag);
        run_host("mount", &["--bind", dir.str(), dir.str()]);
        run_host("mount", &["--make-shared", dir.str()]);
        SharedDir { dir }
    }
}

impl Drop for SharedDir {
    fn drop(&mut self) {
        // Lazy and recursive: a command still running inside may hold it.
        let _ = Command::new("umount").args(["-R", "-l", self.dir.str()]).status();
    }
}

/// Runs `script_body` with $SHELL (bash) under script(1), so that it has a
/// fresh pseudo-terminal as its controlling terminal, in `run`'s
/// environment; returns stdout with the terminal's \r removed. `feed` is
/// written to the terminal once `wait_for` exists.
fn under_pty(script_body: &str, run: &Run, wait_for: Option<(&Path, &[u8])>) -> String {
    let mut child = Command::new("script")
        .args(["-qec", script_body, "/dev/null"])
        .env_clear()
        .envs(run.env_map())
        .current_dir(run.cwd_path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot run script(1) from bsdutils");
    let mut stdin = child.stdin.take().expect("piped stdin");
    if let Some((marker, feed)) = wait_for {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !marker.exists() {
            if child.try_wait().expect("try_wait").is_some() || Instant::now() > deadline {
                let out = child.wait_with_output().expect("wait");
                panic!(
                    "{} never appeared; script -qec {script_body:?} ended with {:?}\nstdout: {}\nstderr: {}",
                    marker.display(),
                    out.status,
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            thread::sleep(Duration::from_millis(5));
        }
        // Give the command time to exec past the marker.
        thread::sleep(Duration::from_millis(100));
        std::io::Write::write_all(&mut stdin, feed).expect("writing to the terminal");
    }
    let out = child.wait_with_output().expect("waiting for script(1)");
    drop(stdin);
    assert!(
        out.status.success(),
        "script -qec {script_body:?} failed: {:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).replace('\r', "")
}

per_backend! {
    fn the_command_replaces_distrorun_keeping_its_pid_and_parent(b) {
        let d = TestDistro::standard("pid");
        let run = run_in(b, &d, &["sh", "-c", "echo $$ $PPID"]);
        let child = run.command().spawn().expect("spawn");
        let pid = child.id();
        let out = child.wait_with_output().expect("wait");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("{pid} {}\n", std::process::id()),
            "the command must run as the very process started, a child of the caller; stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn the_exit_status_is_the_commands(b) {
        let d = TestDistro::standard("status");
        for code in [0, 1, 42, 124, 255] {
            run_in(b, &d, &["sh", "-c", &format!("exit {code}")])
                .output()
                .assert_code(code);
        }
    }

    fn the_sigpipe_disposition_is_the_callers(b) {
        // An ignored signal stays ignored across exec, so a runtime that
        // ignores SIGPIPE for itself would hand that on: `cmd | head` would
        // then see EPIPE errors instead of dying quietly.
        let d = TestDistro::standard("sigpipe");
        let status = ["grep", "SigIgn", "/proc/self/status"];
        let sigpipe_ignored = |out: &Output| {
            out.assert_ok();
            let text = out.stdout_str();
            let mask = text.split_whitespace().nth(1).unwrap_or_else(|| panic!("no SigIgn in {text:?}"));
            u64::from_str_radix(mask, 16).expect("hex mask") & (1 << (13 - 1)) != 0
        };
        assert!(!sigpipe_ignored(&run_in(b, &d, &status).output()), "SIGPIPE must stay at its default");
        let mut wrapped = vec!["-c", "trap '' PIPE; exec \"$0\" \"$@\"", BIN, "--backend", b.flag(), &d.name];
        wrapped.extend(status);
        assert!(sigpipe_ignored(&Run::user(&wrapped).bin("/bin/sh").output()), "an ignored SIGPIPE must stay ignored");
    }

    fn death_by_a_signal_is_the_commands(b) {
        let d = TestDistro::standard("signal");
        for (sig, name) in [(15, "TERM"), (9, "KILL")] {
            let out = run_in(b, &d, &["sh", "-c", &format!("kill -{name} $$")]).output();
            assert_eq!(out.status.signal(), Some(sig), "{}", out.report());
        }
    }

    fn stdin_stdout_and_stderr_are_the_callers_own(b) {
        let d = TestDistro::standard("stdio");
        let run = run_in(b, &d, &[
            "sh", "-c",
            "readlink /proc/$$/fd/0 /proc/$$/fd/1 /proc/$$/fd/2; read line; echo \"got $line\"; echo to-stderr >&2",
        ]);
        let mut cmd = run.command();
        cmd.stdin(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn");
        let ours = |fd: i32| readlink(&format!("/proc/self/fd/{fd}"));
        let expected = format!(
            "{}\n{}\n{}\ngot hello\n",
            ours(child.stdin.as_ref().unwrap().as_raw_fd()),
            ours(child.stdout.as_ref().unwrap().as_raw_fd()),
            ours(child.stderr.as_ref().unwrap().as_raw_fd()),
        );
        std::io::Write::write_all(child.stdin.as_mut().unwrap(), b"hello\n").unwrap();
        let out = child.wait_with_output().expect("wait");
        assert_eq!(String::from_utf8_lossy(&out.stdout), expected,
            "the command's fds 0-2 must be the pipes the caller passed");
        assert_eq!(String::from_utf8_lossy(&out.stderr), "to-stderr\n");
    }

    fn the_controlling_terminal_is_the_callers(b) {
        let d = TestDistro::standard("tty");
        let probe = "tty; cut -d' ' -f7 /proc/self/stat; if : </dev/tty; then echo has-ctty; fi";
        let inner = run_in(b, &d, &["sh", "-c", probe]);
        let out = under_pty(&format!("{probe}; {}", inner.shell_words()), &inner, None);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 6, "unexpected output: {out:?}");
        assert!(lines[0].starts_with("/dev/pts/"), "{out:?}");
        assert_eq!(lines[..3], lines[3..], "inside: terminal, tty_nr, ctty vs outside");
    }

    fn ctrl_c_on_the_terminal_interrupts_the_command(b) {
        let d = TestDistro::standard("ctrlc");
        let marks = TempDir::owned_by(USER, "ctrlc");
        let started = marks.join("started");
        let inner = run_in(b, &d, &[
            "sh", "-c", &format!("touch {}; exec sleep 100", started.display()),
        ]);
        // The trap keeps the outer shell alive to report; the command still
        // starts with SIGINT at its default action.
        let body = format!("trap : INT; {}; echo status=$?", inner.shell_words());
        let out = under_pty(&body, &inner, Some((&started, b"\x03")));
        assert!(out.contains("status=130"),
            "Ctrl-C must kill the command by SIGINT (status 130 in the shell): {out:?}");
    }

    fn the_environment_arrives_byte_for_byte(b) {
        let d = TestDistro::standard("env");
        let non_utf8 = OsStr::from_bytes(b"caf\xe9 \xff\xfe\x80");
        let long = "x".repeat(100_000);
        let run = run_in(b, &d, &["cat", "/proc/self/environ"])
            // Variables glibc strips from setuid programs' environments.
            .env("LD_LIBRARY_PATH", "/nonexistent/lib:/opt/vendor/lib")
            .env("LD_BIND_NOW", "1")
            .env("TMPDIR", "/tmp/elsewhere")
            .env("GCONV_PATH", "/nonexistent/gconv")
            .env("MALLOC_ARENA_MAX", "2")
            .env("GLIBC_TUNABLES", "glibc.malloc.arena_max=2")
            .env("LOCALDOMAIN", "example.invalid")
            .env("HOSTALIASES", "/nonexistent/hosts")
            .env("NLSPATH", "/nonexistent/%N")
            .env("RES_OPTIONS", "ndots:3")
            .env("TZDIR", "/nonexistent/zoneinfo")
            // Values that a line- or UTF-8-based transport would damage.
            .env("MULTI_LINE", "line one\nline two\n")
            .env("NOT_UTF8", non_utf8)
            .env("EMPTY", "")
            .env("EQUALS", "a=b==c")
            .env("SPACES", "  leading and trailing  ")
            .env("LONG", &long);
        let expected = run.environ_bytes();
        let out = run.output();
        assert_eq!(out.code, Some(0), "{}", out.report());
        if out.stdout != expected {
            let split = |v: &[u8]| -> Vec<String> {
                v.split(|c| *c == 0)
                    .map(|s| String::from_utf8_lossy(&s[..s.len().min(80)]).into_owned())
                    .collect()
            };
            panic!(
                "the environment inside differs\n  expected: {:?}\n  got:      {:?}",
                split(&expected),
                split(&out.stdout)
            );
        }
    }

    fn uid_and_gid_are_the_callers(b) {
        let d = TestDistro::standard("ids");
        let (uid, gid) = user_ids(USER);
        let out = run_in(b, &d, &["sh", "-c", "id -u; id -g"]).output();
        out.assert_ok();
        assert_eq!(out.stdout_str(), format!("{uid}\n{gid}\n"));
    }

    fn supplementary_groups_still_grant_access(b) {
        let d = TestDistro::standard("groups");
        let dir = TempDir::new("groups");
        let group_file = dir.file("group-readable", b"group secret\n", 0o640, group_id(GROUP));
        let root_file = dir.file("root-only", b"root secret\n", 0o600, 0);
        let script = format!(
            "cat {}; if cat {} 2>/dev/null; then echo LEAKED; else echo denied; fi",
            group_file.display(),
            root_file.display()
        );
        let out = run_in(b, &d, &["sh", "-c", &script]).output();
        out.assert_ok();
        assert_eq!(out.stdout_str(), "group secret\ndenied\n");
    }

    fn the_working_directory_is_kept(b) {
        let d = TestDistro::standard("cwd");
        let dir = TempDir::new("cwd");
        let out = run_in(b, &d, &["pwd"]).cwd(&dir.path).output();
        out.assert_ok();
        assert_eq!(out.stdout_str(), format!("{}\n", dir.str()));
    }

    fn a_working_directory_inside_the_guest_tree_maps_to_its_path_inside(b) {
        let d = TestDistro::standard("cwdtree");
        let out = run_in(b, &d, &["pwd"])
            .cwd(Path::new(GUEST).join("usr/share"))
            .output();
        out.assert_ok();
        assert_eq!(out.stdout_str(), "/usr/share\n");
    }

    fn a_working_directory_missing_inside_is_an_error_and_nothing_runs(b) {
        let d = TestDistro::standard("nocwd");
        // /var/tmp is not a volume: the directory exists only on the host.
        let host_only = TempDir::new_in("/var/tmp", "nocwd");
        let marks = TempDir::owned_by(USER, "nocwd-marks");
        let marker = marks.join("ran");
        let out = run_in(b, &d, &["touch", marker.to_str().unwrap()])
            .cwd(&host_only.path)
            .output();
        out.assert_own_error()
            .assert_stderr_has(host_only.str())
            .assert_stderr_has("--directory");
        assert!(!marker.exists(), "the command ran although its directory is missing");
    }

    fn the_directory_option_sets_the_working_directory_inside(b) {
        let d = TestDistro::standard("diropt");
        let out = Run::user(&["-d", "/etc", &d.name, "pwd"]).backend(b).output();
        out.assert_ok();
        assert_eq!(out.stdout_str(), "/etc\n");
        let out = Run::user(&["--directory", "/usr/share", &d.name, "pwd"]).backend(b).output();
        out.assert_ok();
        assert_eq!(out.stdout_str(), "/usr/share\n");
    }

    fn a_relative_directory_option_is_relative_to_the_working_directory(b) {
        let d = TestDistro::standard("reldir");
        let dir = TempDir::new("reldir");
        fs::create_dir(dir.join("sub")).unwrap();
        let out = Run::user(&["-d", "sub", &d.name, "pwd"]).backend(b).cwd(&dir.path).output();
        out.assert_ok();
        assert_eq!(out.stdout_str(), format!("{}/sub\n", dir.str()));
    }

    fn a_command_not_found_inside_exits_127(b) {
        let d = TestDistro::standard("notfound");
        // gcc exists on the host (the setup uses it) but not in a minbase guest.
        assert!(Path::new("/usr/bin/gcc").exists(), "this test needs gcc on the host");
        for cmd in ["gcc", "/usr/bin/gcc", "no-such-command-anywhere"] {
            let out = run_in(b, &d, &[cmd]).output();
            out.assert_code(127);
            assert!(out.stderr_str().starts_with("distrorun: "), "{}", out.report());
            out.assert_stderr_has(cmd);
        }
    }

    fn a_command_that_cannot_be_executed_exits_126(b) {
        let d = TestDistro::standard("noexec");
        for cmd in ["/etc/passwd", "/usr"] {
            let out = run_in(b, &d, &[cmd]).output();
            out.assert_code(126);
            assert!(out.stderr_str().starts_with("distrorun: "), "{}", out.report());
            out.assert_stderr_has(cmd);
        }
    }

    fn distroruns_own_errors_exit_125(b) {
        Run::user(&["no-such-distro-here", "true"])
            .backend(b)
            .output()
            .assert_own_error()
            .assert_stderr_has("no-such-distro-here");
    }

    fn a_successful_run_prints_nothing(b) {
        let d = TestDistro::standard("quiet");
        let out = run_in(b, &d, &["true"]).output();
        out.assert_ok();
        assert!(out.stdout.is_empty(), "{}", out.report());
    }

    fn verbose_describes_the_config_backend_mounts_and_exec(b) {
        let d = TestDistro::standard("verbose");
        let out = Run::user(&["-v", &d.name, "true"]).backend(b).output();
        out.assert_code(0);
        assert!(out.stdout.is_empty(), "{}", out.report());
        let err = out.stderr_str();
        for line in err.lines() {
            assert!(line.starts_with("distrorun: "), "line {line:?} of:\n{err}");
        }
        let has = |prefix: &str| err.lines().any(|l| l.starts_with(prefix));
        assert!(has(&format!("distrorun: config {} (system)", d.conf.display())), "{err}");
        assert!(has(&format!("distrorun: backend {}", b.flag())), "{err}");
        assert!(has(&format!("distrorun: root {GUEST} (")), "{err}");
        assert!(has("distrorun: mount /tmp on "), "{err}");
        assert!(has("distrorun: exec "), "{err}");
        // The form of the mount steps this kernel, or the filter, calls for.
        let form = if old_kernel_requested() { "mounts with mount(2)" } else { "mounts with open_tree" };
        assert!(has(&format!("distrorun: kernel: {form}")), "{err}");
    }

    fn dry_run_prints_the_plan_and_runs_nothing(b) {
        let d = TestDistro::standard("dryrun");
        let marks = TempDir::owned_by(USER, "dryrun");
        let marker = marks.join("ran");
        let out = Run::user(&["--dry-run", &d.name, "touch", marker.to_str().unwrap()]).backend(b).output();
        out.assert_code(0);
        assert!(out.stdout.is_empty(), "{}", out.report());
        out.assert_stderr_has("distrorun: exec ");
        assert!(!marker.exists(), "--dry-run ran the command");
        let out = Run::user(&["-n", &d.name, "touch", marker.to_str().unwrap()]).backend(b).output();
        out.assert_code(0);
        assert!(!marker.exists(), "-n ran the command");
    }

    fn without_a_command_the_users_shell_runs(b) {
        let d = TestDistro::standard("shell");
        let out = Run::user(&[&d.name])
            .backend(b)
            .env("SHELL", "/bin/bash")
            .stdin(b"echo \"bash $BASH_VERSION\"\n")
            .output();
        out.assert_ok();
        assert!(out.stdout_str().starts_with("bash 5."), "{}", out.report());
    }

    fn without_a_command_and_no_such_shell_inside_sh_runs_with_a_note(b) {
        let d = TestDistro::standard("noshell");
        let out = Run::user(&[&d.name])
            .backend(b)
            .env("SHELL", "/bin/zsh-not-there")
            .stdin(b"echo fallback; echo \"$BASH_VERSION\"\n")
            .output();
        out.assert_code(0);
        assert_eq!(out.stdout_str(), "fallback\n\n", "{}", out.report());
        assert_eq!(
            out.stderr_str(),
            format!("distrorun: $SHELL (/bin/zsh-not-there) does not exist in distro {}; running /bin/sh\n", d.name)
        );
    }
}

fn listing(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

#[test]
fn the_harness_passes_the_environment_through_unchanged() {
    // The environment tests compare against Run::environ_bytes(); this proves
    // that dropto and Command deliver exactly that.
    let run = Run::user(&["/proc/self/environ"])
        .bin("/usr/bin/cat")
        .env("ZZ", "last")
        .env("AA", "first")
        .env("NOT_UTF8", OsStr::from_bytes(b"\xff"));
    let expected = run.environ_bytes();
    let out = run.output();
    out.assert_ok();
    assert_eq!(out.stdout, expected);
}

#[test]
fn root_runs_as_root_in_a_private_mount_namespace_without_a_user_namespace() {
    let d = TestDistro::standard("root");
    let out = Run::root(&[
        &d.name,
        "sh",
        "-c",
        "cat /proc/self/uid_map; id -u; readlink /proc/self/ns/user /proc/self/ns/mnt",
    ])
    .output();
    out.assert_ok();
    let text = out.stdout_str();
    let lines: Vec<String> =
        text.lines().map(|l| l.split_whitespace().collect::<Vec<_>>().join(" ")).collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert_eq!(lines[0], "0 0 4294967295", "root must not be in a user namespace");
    assert_eq!(lines[1], "0");
    assert_eq!(lines[2], readlink("/proc/self/ns/user"), "same user namespace as the host");
    assert_ne!(lines[3], readlink("/proc/self/ns/mnt"), "a private mount namespace");
}

#[test]
fn roots_mounts_never_reach_the_host() {
    let d = TestDistro::standard("rootclean");
    let marks = TempDir::new("rootclean");
    let started = marks.join("started");
    let mut child = Run::root(&[&d.name, "sh", "-c", &format!("touch {}; exec sleep 60", started.display())])
        .command()
        .spawn()
        .expect("spawn");
    wait_for_file(&started, Duration::from_secs(30), "root's command inside");
    let during = host_mounts_under(Path::new(GUEST));
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(during.is_empty(), "host mounts under the guest:\n{}", during.join("\n"));
    let after = host_mounts_under(Path::new(GUEST));
    assert!(after.is_empty(), "host mounts under the guest:\n{}", after.join("\n"));
}

#[test]
fn a_per_user_config_works_with_the_userns_backend() {
    let mine = UserDistro::standard("mine");
    let name = &mine.name;
    let out = Run::user(&["-v", name, "cat", "/etc/os-release"]).backend(Backend::Userns).output();
    out.assert_code(0);
    assert!(out.stdout_str().contains(&format!("VERSION_CODENAME={}", guest_suite())), "{}", out.report());
    out.assert_stderr_has(&format!("distrorun: config {} (user)", mine.conf.display()));
    // auto chooses userns here, so the per-user config works without a flag.
    Run::user(&[name, "true"]).output().assert_ok();
}

#[test]
fn the_same_name_in_system_and_user_config_is_an_error_naming_both() {
    let system = TestDistro::standard("both");
    let user = UserDistro::new(USER, &system.name, &ron_config(Path::new(GUEST), STANDARD_VOLUMES, ""));
    Run::user(&[&system.name, "true"])
        .output()
        .assert_own_error()
        .assert_stderr_has(system.conf.to_str().unwrap())
        .assert_stderr_has(user.conf.to_str().unwrap());
}

#[test]
fn the_helper_backend_refuses_a_per_user_config() {
    let mine = UserDistro::standard("mine-helper");
    Run::user(&[&mine.name, "true"])
        .backend(Backend::Helper)
        .output()
        .assert_own_error()
        .assert_stderr_has("helper");
}
