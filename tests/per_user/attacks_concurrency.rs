//! Two runs of one name at once: a create or remove holds the name's lock
//! for its whole run, and a second one is refused at once.

use super::*;
use std::os::unix::fs::OpenOptionsExt;

/// Every member of `tarball` is in `tree`, but for the device nodes in
/// `/dev`, which the unpacker skips.
#[track_caller]
fn assert_complete(tree: &Path, tarball: &str) {
    let out = timed(
        {
            let mut c = Command::new("tar");
            c.args(["-tf", tarball]);
            c
        },
        Duration::from_secs(60),
    );
    out.assert_ok();
    let listed = out.stdout_str();
    let missing: Vec<&str> = listed
        .lines()
        .map(|l| l.trim_start_matches("./").trim_end_matches('/'))
        .filter(|l| !l.is_empty() && !l.starts_with("dev/") && fs::symlink_metadata(tree.join(l)).is_err())
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} members are missing from {}, such as {:?}",
        missing.len(),
        listed.lines().count(),
        tree.display(),
        &missing[..missing.len().min(5)]
    );
}

#[test]
fn a_second_create_of_a_name_in_progress_is_refused_and_the_first_completes() {
    require_file(GUEST_TAR);
    let homes = Homes::new("twice");
    let name = unique("twice");
    let first = homes.run(&["-q", "--create", &name, "--tarball", GUEST_TAR]);
    let description = first.describe();
    let child = first.command().spawn().expect("spawn the first create");
    // Once the first is writing inside its temporary tree.
    let marker = homes.partial(&name).join("etc");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !marker.exists() {
        assert!(Instant::now() < deadline, "the first create never started writing");
        std::thread::sleep(Duration::from_millis(1));
    }
    let started = Instant::now();
    let second = homes.create(&name, GUEST_TAR_ZST);
    let waited = started.elapsed();
    let first = finish(child, None, Duration::from_secs(300), &description);
    assert_refused(&second, &["another distrorun is creating or removing it"]);
    assert!(
        waited < Duration::from_secs(10),
        "the second create waited {waited:?} instead of failing at once"
    );
    first.assert_ok();
    assert_complete(&homes.tree(&name), GUEST_TAR);
    let out = homes.run(&[&name, "stat", "-c", "%U", "/etc/shadow"]).output();
    out.assert_ok();
    assert_eq!(out.stdout_str(), "root\n");
    // Nothing of the lock is left once both are done.
    let data = homes.base.join("data/distrorun");
    let lock = data.join(format!(".{name}.lock"));
    assert!(fs::symlink_metadata(&lock).is_err(), "{} was left behind", lock.display());
}

/// A create whose tarball is a FIFO holds the name's lock while it waits
/// for the FIFO's writer: the remove meanwhile is refused and deletes
/// nothing, and the create, once it may go on, finds the name taken by a
/// complete distro (its config in another directory) and leaves it be.
#[test]
fn a_remove_while_a_create_of_the_name_runs_is_refused() {
    require_file(GUEST_TAR_ZST);
    let homes = Homes::new("rmrace");
    let name = unique("rmrace");
    homes.create(&name, GUEST_TAR_ZST).assert_ok();
    let other_config = homes.base.join("config2");
    fs::create_dir(&other_config).expect("mkdir");
    let (uid, gid) = user_ids(USER);
    std::os::unix::fs::chown(&other_config, Some(uid), Some(gid)).expect("chown");
    let fifo = homes.base.join("slow.tar");
    sh(&format!("mkfifo -m 666 {}", fifo.display()));
    let holder = homes
        .run(&["-q", "--create", &name, "--tarball", path_str(&fifo)])
        .env("XDG_CONFIG_HOME", &other_config);
    let description = holder.describe();
    let child = holder.command().spawn().expect("spawn");
    // Once the holder has its lock, and the time to reach the FIFO. Without
    // a lock the test goes on all the same, so that the holder is never
    // left waiting on the FIFO.
    let lock = homes.base.join(format!("data/distrorun/.{name}.lock"));
    let deadline = Instant::now() + Duration::from_secs(20);
    while !lock.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let locked = lock.exists();
    std::thread::sleep(Duration::from_millis(200));
    let out = homes.run(&["--remove", &name, "--yes"]).output();
    // Now the holder may read: the whole guest tarball, as an attacker
    // would hope to unpack over the tree.
    let writer = std::thread::spawn({
        let fifo = fifo.clone();
        move || {
            if let Ok(mut w) = fs::OpenOptions::new().write(true).open(&fifo) {
                let _ = std::io::copy(&mut fs::File::open(GUEST_TAR_ZST).expect("open"), &mut w);
            }
        }
    });
    let holder = finish(child, None, Duration::from_secs(300), &description);
    // Unblock the writer if the holder never opened the FIFO.
    let _ = fs::OpenOptions::new().read(true).custom_flags(O_NONBLOCK).open(&fifo);
    let _ = writer.join();
    assert!(locked, "the create took no lock on the name: {} never appeared", lock.display());
    assert_refused(&out, &["another distrorun is creating or removing it"]);
    assert_refused(&holder, &["refusing to delete", "existing distro"]);
    assert!(homes.tree(&name).join("etc/shadow").exists(), "the distro was damaged");
    assert!(homes.config(&name).exists(), "the config is gone");
    homes.run(&[&name, "true"]).output().assert_ok();
}

/// Linux's `O_NONBLOCK`, so that opening the FIFO to read never waits.
const O_NONBLOCK: i32 = 0o4000;
