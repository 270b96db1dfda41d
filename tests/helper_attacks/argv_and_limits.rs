//! Hostile argv and resource limits: unknown options, odd or missing
//! argv[0], and limits too small to work with all get a clean answer.

use std::path::Path;

use super::*;

#[test]
fn unknown_options_are_refused() {
    require_setup();
    let d = TestDistro::standard("argv-opts");
    for args in [
        vec!["--bogus", &d.name, "/bin/true"],
        vec!["-z", &d.name, "/bin/true"],
        vec!["--extra-volume"],
        vec!["-d"],
        vec!["--env-fd=0", "--bogus=1", &d.name],
    ] {
        eprintln!("helper --env-fd 0 {args:?}");
        assert_refused(&with_env_on_stdin(&helper_args(&args), &env_bytes()), &[]);
    }
}

#[test]
fn options_after_the_name_belong_to_the_command() {
    require_setup();
    let d = TestDistro::standard("argv-after");
    let out = with_env_on_stdin(
        &helper_args(&[
            &d.name,
            "/bin/echo",
            "-v",
            "--env-fd",
            "5",
            "--extra-volume",
            "/",
            "-d",
            "/root",
            "--",
            "x",
        ]),
        &env_bytes(),
    );
    out.assert_ok();
    assert_eq!(out.stdout_str(), "-v --env-fd 5 --extra-volume / -d /root -- x\n");
}

#[test]
fn odd_argv0_changes_nothing() {
    require_setup();
    let d = TestDistro::standard("argv0");
    let long = "A".repeat(5000);
    for argv0 in ["", "-", "../../../tmp/evil", "distrorun\nspoofed line", &long] {
        let run = Run::user(&[
            "-c",
            "exec 3<&0 0</dev/null; exec -a \"$1\" \"$2\" --env-fd 3 \"$3\" /bin/echo ran",
            "bash",
            argv0,
            HELPER,
            &d.name,
        ])
        .bin("/bin/bash");
        let out = with_env_on_stdin(&run, &env_bytes());
        out.assert_ok();
        assert_eq!(out.stdout_str(), "ran\n");
    }
}

#[test]
fn empty_argv_is_refused_cleanly() {
    require_setup();
    let bins = TempDir::new_in(TEST_ROOT, "bins");
    let attack = compile_support(&bins.path, "attack_exec", &[]);
    let out = with_env_on_stdin(&Run::user(&["noargv", HELPER]).bin(path_str(&attack)), &env_bytes());
    assert_refused(&out, &[]);
}

/// Closes every descriptor above `$1`, sets `RLIMIT_NOFILE` to `$2`, then
/// runs the rest; the env fd comes in on stdin and goes to fd 3 first.
const LOW_NOFILE: &str = concat!(
    "exec 3<&0 0</dev/null; ",
    "for f in /proc/$$/fd/*; do f=${f##*/}; [ \"$f\" -gt \"$1\" ] && eval \"exec $f>&-\"; done; ",
    "ulimit -n \"$2\" || exit 98; shift 2; exec \"$@\"",
);

#[test]
fn tiny_open_file_limit_gives_a_clean_answer() {
    require_setup();
    let d = TestDistro::standard("nofile");
    // The helper directly: descriptors 0-3 (the env file) stay open; below 5
    // the dynamic loader cannot open the helper's libraries, which would test
    // glibc, not the helper. The front end: descriptors 0-2 stay open, and 4
    // leaves it one descriptor of its own, as a user who set `ulimit -n 4`.
    //
    // Eight descriptors hold everything the helper keeps open at once (the
    // standard streams, the env fd, and while it mounts, the new root, a
    // volume's source and its mount point), so eight and more must run. With
    // fewer, the first open past the limit fails, and the run must stop there
    // with that errno, never carry on with a step left out.
    let cases = [
        // (RLIMIT_NOFILE, through the front end, runs)
        ("5", false, false),
        ("6", false, false),
        ("7", false, false),
        ("8", false, true),
        ("10", false, true),
        ("16", false, true),
        ("4", true, false),
        ("5", true, false),
        ("6", true, false),
        ("8", true, true),
        ("16", true, true),
    ];
    for (n, via_front_end, runs) in cases {
        let mut args = vec!["-c", LOW_NOFILE, "bash"];
        if via_front_end {
            args.extend_from_slice(&["2", n, BIN, "--backend", "helper", &d.name, "/bin/true"]);
        } else {
            args.extend_from_slice(&["3", n, HELPER, "--env-fd", "3", &d.name, "/bin/true"]);
        }
        let out = with_env_on_stdin(&Run::user(&args).bin("/bin/bash"), &env_bytes());
        eprintln!("nofile {n}, front end {via_front_end}: {:?} {}", out.code, out.stderr_str());
        if runs {
            out.assert_ok();
        } else {
            assert_refused(&out, &["Too many open files"]);
        }
        assert_no_host_mounts(Path::new(GUEST));
    }
}

/// `RLIMIT_NPROC` 0 limits making processes, and the helper makes none: it
/// execs the command in its own process. Its real uid is the caller's all
/// along (only its effective and saved uids are root), so giving up root
/// changes no real uid, the one change the kernel holds against the limit
/// at the next exec. The command runs, as if its caller had started it.
#[test]
fn process_limit_of_zero_gives_a_clean_answer() {
    require_setup();
    let d = TestDistro::standard("nproc");
    let run = Run::user(&[
        "--nproc=0:0",
        "--",
        "/bin/bash",
        "-c",
        ENV_ON_3,
        "bash",
        HELPER,
        "--env-fd",
        "3",
        &d.name,
        "/bin/true",
    ])
    .bin("/usr/bin/prlimit");
    let out = with_env_on_stdin(&run, &env_bytes());
    out.assert_ok();
    assert_no_host_mounts(Path::new(GUEST));
}
