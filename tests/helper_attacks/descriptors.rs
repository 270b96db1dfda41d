//! Hostile descriptors: the env fd's number and kind, its contents, and
//! whatever else the caller leaves open or closed.

use std::fs;
use std::io::Write;
use std::process::Stdio;
use std::thread;
use std::time::{Duration, Instant};

use super::*;

#[test]
fn env_fd_is_required_and_must_be_a_number_of_an_open_descriptor() {
    require_setup();
    let d = TestDistro::standard("env-fd-args");
    let cases: Vec<Vec<&str>> = vec![
        vec![&d.name, "/bin/true"],
        vec!["--env-fd"],
        vec!["--env-fd", "99999999999", &d.name, "/bin/true"],
        vec!["--env-fd", "2147483647", &d.name, "/bin/true"],
        vec!["--env-fd", "-1", &d.name, "/bin/true"],
        vec!["--env-fd", "abc", &d.name, "/bin/true"],
        vec!["--env-fd", "", &d.name, "/bin/true"],
        vec!["--env-fd", "0x0", &d.name, "/bin/true"],
        vec!["--env-fd", " 0", &d.name, "/bin/true"],
        vec!["--env-fd", "57", &d.name, "/bin/true"],
    ];
    for args in cases {
        eprintln!("helper {args:?}");
        // fd 57 is closed explicitly, whatever the harness leaves open.
        let mut all = vec![HELPER];
        all.extend_from_slice(&args);
        let out = with_env_on_stdin(&user_sh("exec 57>&-; exec \"$@\"", &all), &env_bytes());
        assert_refused(&out, &[]);
    }
}

#[test]
fn env_fd_that_is_a_directory_or_write_only_is_refused() {
    require_setup();
    let d = TestDistro::standard("env-fd-kind");
    let writable = TempDir::owned_by(USER, "env-fd-kind");
    let file = writable.file("env", &env_bytes(), 0o666, 0);
    for script in ["exec 5</; exec \"$@\"", "exec 5>>\"$0\"; exec \"$@\""] {
        let mut cmd =
            Run::user(&["-c", script, path_str(&file), HELPER, "--env-fd", "5", &d.name, "/bin/true"])
                .bin("/bin/sh")
                .command();
        cmd.stdin(Stdio::null());
        eprintln!("{script}");
        assert_refused(&timed(cmd, RUN_TIMEOUT), &[]);
    }
}

#[test]
fn env_fd_that_is_a_pipe_is_refused_without_hanging() {
    require_setup();
    let d = TestDistro::standard("env-fd-pipe");
    let quick = Duration::from_secs(20);

    // A pipe whose writer never closes.
    let mut cmd = helper_args(&[&d.name, "/bin/true"]).command();
    cmd.stdin(Stdio::piped());
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let held = child.stdin.take();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > quick {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the helper blocked reading an env pipe that never ends");
        }
        thread::sleep(Duration::from_millis(10));
    }
    drop(held);
    let out = Output::from(child.wait_with_output().unwrap());
    assert_refused(&out, &[]);

    // A pipe carrying more than the 16 MiB cap.
    let mut cmd = helper_args(&[&d.name, "/bin/true"]).command();
    cmd.stdin(Stdio::piped());
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let feeder = thread::spawn(move || {
        let chunk = vec![b'a'; 1 << 20];
        for _ in 0..17 {
            if stdin.write_all(&chunk).is_err() {
                break;
            }
        }
    });
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > quick {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the helper hung on a 17 MiB env pipe");
        }
        thread::sleep(Duration::from_millis(10));
    }
    let out = Output::from(child.wait_with_output().unwrap());
    let _ = feeder.join();
    assert_refused(&out, &[]);
}

#[test]
fn env_file_over_16_mib_is_refused() {
    require_setup();
    let d = TestDistro::standard("env-big");
    let mut env = Vec::with_capacity((16 << 20) + 64);
    let mut i = 0;
    while env.len() <= 16 << 20 {
        env.extend_from_slice(format!("V{i}=").as_bytes());
        env.extend_from_slice(&[b'v'; 4000]);
        env.push(0);
        i += 1;
    }
    // In a sealed memfd, as distrorun hands it over: only the size is wrong.
    let out = with_env_on_stdin(&helper_args(&[&d.name, "/bin/true"]), &env);
    assert_refused(&out, &[]);
}

/// The helper passes the caller's environment on unread, so odd entries
/// (no `=`, empty, an empty name, bytes that are not UTF-8, none at all) are
/// the command's business and must run. Only data without its final NUL is
/// refused: it was cut short, and the last entry cannot be told apart from
/// a fragment.
#[test]
fn malformed_env_entries_never_crash_the_helper() {
    require_setup();
    let d = TestDistro::standard("env-bad");
    for env in [&b"NOEQUALS\0"[..], b"\0\0\0", b"=value\0", b"A=1\0\xff\xfe=\x80\0", b""] {
        let out = with_env_on_stdin(&helper_args(&[&d.name, "/bin/true"]), env);
        out.assert_ok();
    }
    let out = with_env_on_stdin(&helper_args(&[&d.name, "/bin/true"]), b"A=1");
    assert_refused(&out, &["NUL"]);
}

/// An `O_PATH` descriptor to a file only root may read: a helper that reopens
/// /proc/self/fd/N as root instead of reading the descriptor would leak it.
#[test]
fn env_fd_opened_with_o_path_leaks_nothing() {
    require_setup();
    let d = TestDistro::standard("env-opath");
    let bins = TempDir::new_in(TEST_ROOT, "bins");
    let attack = compile_support(&bins.path, "attack_exec", &[]);
    let secret_dir = TempDir::new_in(TEST_ROOT, "opath");
    let secret = secret_dir.file("secret", b"SECRET_FROM_ROOT=leaked\0", 0o600, 0);
    let out = Run::user(&[
        "opath",
        path_str(&secret),
        "5",
        HELPER,
        "--env-fd",
        "5",
        &d.name,
        "/usr/bin/cat",
        "/proc/self/environ",
    ])
    .bin(path_str(&attack))
    .output();
    assert!(!out.stdout_str().contains("SECRET_FROM_ROOT"), "the helper read a file only root may read");
    assert_refused(&out, &[]);
}

/// A sealed memfd that the caller made itself, on a descriptor of its own
/// choosing, as `distrorun` does.
#[test]
fn env_fd_that_is_a_memfd_is_passed_on_exactly() {
    require_setup();
    let d = TestDistro::standard("env-memfd");
    let bins = TempDir::new_in(TEST_ROOT, "bins");
    let attack = compile_support(&bins.path, "attack_exec", &[]);
    let env = env_bytes();
    let file = bins.file("env", &env, 0o644, 0);
    let out = Run::user(&[
        "memfd",
        path_str(&file),
        "7",
        HELPER,
        "--env-fd",
        "7",
        &d.name,
        "/usr/bin/cat",
        "/proc/self/environ",
    ])
    .bin(path_str(&attack))
    .output();
    out.assert_ok();
    assert_eq!(out.stdout, env);
}

/// With fds 0-2 closed, whatever the helper opens would land on them; the
/// command must find them closed or on /dev/null or /dev/full, never on a
/// file the helper opened, and must hold no other descriptor than those
/// its caller passed (the env fd aside).
#[test]
fn closed_standard_descriptors_do_not_leak_helper_files() {
    require_setup();
    let d = TestDistro::standard("std-closed");
    // Static, and below /tmp, so that it runs inside the guest as well.
    let bins = TempDir::new("fds");
    let report = compile_support(&bins.path, "attack_exec", &["-static"]);
    let report = path_str(&report);
    let env = EnvFd::sealed_memfd(&env_bytes());
    let fds_of = |args: &[&str]| {
        let mut all = vec!["-c", "exec 3<&0 9>&1 0<&- 1>&- 2>&-; exec \"$@\"", "bash"];
        all.extend_from_slice(args);
        let mut cmd = Run::user(&all).bin("/bin/bash").command();
        cmd.stdin(env.open());
        let out = timed(cmd, RUN_TIMEOUT);
        assert_eq!(out.code, Some(0), "{}", out.stderr_str());
        out.stdout_str()
            .lines()
            .map(|l| {
                let (fd, target) = l.split_once(' ').unwrap();
                (fd.to_owned(), target.to_owned())
            })
            .collect::<Vec<_>>()
    };
    // What the caller passes: the same start without the helper.
    let passed = fds_of(&[report, "fds", "9"]);
    let got = fds_of(&[HELPER, "--env-fd", "3", &d.name, report, "fds", "9"]);
    for (fd, target) in &got {
        if ["0", "1", "2"].contains(&fd.as_str()) {
            assert!(
                ["closed", "/dev/null", "/dev/full"].contains(&target.as_str()),
                "the command inherited a helper file on fd {fd}: {target}"
            );
        } else if fd != "3" {
            assert!(
                passed.iter().any(|(f, t)| f == fd && (t == target || t.starts_with("pipe:"))),
                "the command holds fd {fd} ({target}) that its caller did not pass: {passed:?}"
            );
        }
    }

    // An error with every standard descriptor closed: still exit 125, and
    // the env file it was given is untouched. A regular file that only root
    // may write, not a memfd, whose seals would stop any write anyway: a
    // helper that reopened its descriptors as root could write to this one.
    let file = EnvFd::regular_file(&env_bytes());
    let path = path_str(file.path().expect("a regular file has a path"));
    let before = fs::read(path).unwrap();
    let mut cmd = user_sh(
        "exec 0<&- 1>&- 2>&- 9<\"$1\"; shift; exec \"$@\"",
        &[path, HELPER, "--env-fd", "9", "no-such-distro-x", "/bin/true"],
    )
    .command();
    cmd.stdin(Stdio::null());
    let out = timed(cmd, RUN_TIMEOUT);
    assert_eq!(out.code, Some(125), "{:?}", out.status);
    assert_eq!(fs::read(path).unwrap(), before);
}
