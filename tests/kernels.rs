//! Real kernels, booted under qemu: Debian 11's 5.10, which lacks
//! `mount_setattr` and so takes the older mount path, and the newest Debian
//! kernel. Each boots a small initramfs made here: busybox, the installed
//! test build (the helper setuid root), a small distro tree and a script
//! that runs as an unprivileged user and prints one `CHECK` line per check.
//! There, the kernel's own switches (`kernel.unprivileged_userns_clone`,
//! `user.max_user_namespaces`) forbid user namespaces, which a seccomp
//! filter on the host can only imitate.
//!
//! ci/setup.d/60-kernels.sh fetches the kernels into KERNELS and installs
//! qemu; software emulation (TCG), because KVM is not usable everywhere.

use std::fs;
use std::os::unix::fs::{chown, symlink, PermissionsExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use distrorun_testkit::*;

const KERNELS: &str = "/var/cache/distrorun-test/kernels";
const QEMU: &str = "qemu-system-x86_64";
const BOOT_TIMEOUT: Duration = Duration::from_secs(300);
const HELPER: &str = "/var/lib/distrorun-test/libexec/distrorun/distrorun-helper";
const CONF_DIR_INSIDE: &str = "/var/lib/distrorun-test/etc/distrorun.d";
const TESTER_UID: u32 = 1000;

/// The initramfs's init: the initial ramfs can never be pivoted away from,
/// so everything moves to a tmpfs, which becomes the root.
const INIT: &str = r"#!/bin/busybox sh
/bin/busybox mkdir /newroot
/bin/busybox mount -t tmpfs -o mode=0755 tmpfs /newroot
for e in bin etc home root srv var stage2; do /bin/busybox cp -a /$e /newroot/; done
/bin/busybox mkdir -p /newroot/proc /newroot/sys /newroot/dev /newroot/tmp /newroot/run
exec /bin/busybox switch_root /newroot /stage2
";

/// The script that runs the checks, as root; every check runs as `tester`
/// through busybox su.
const STAGE2: &str = r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mkdir -p /dev/pts /dev/shm /run /tmp
mount -t devpts devpts /dev/pts
mount -t tmpfs -o mode=1777 tmpfs /tmp
chmod 1777 /tmp
mount -t tmpfs tmpfs /run
echo "KERNEL $(uname -r)"
check() { # NAME EXPECTED ACTUAL
	if [ "$2" = "$3" ]; then echo "CHECK $1 PASS"; else echo "CHECK $1 FAIL expected [$2] got [$3]"; fi
}
contains() { # NAME NEEDLE TEXT
	case "$3" in *"$2"*) echo "CHECK $1 PASS" ;; *) echo "CHECK $1 FAIL no [$2] in [$(echo "$3" | tr '\n' '|')]" ;; esac
}
as_tester() { su tester -s /bin/sh -c "$1" 2>&1; }
no_mounts_left() { # NAME
	check "$1" 0 "$(grep -c /srv/guest /proc/self/mountinfo)"
}
run_probe='cd /home/tester/work && FOO="a b" distrorun --backend BACKEND k sh -c '\''echo "$(id -u) $(id -g) $PWD $FOO"; exit 7'\''; echo "status $?"'
for b in userns helper; do
	out=$(as_tester "$(echo "$run_probe" | sed "s/BACKEND/$b/")")
	check "$b-run" "1000 1000 /home/tester/work a b
status 7" "$out"
	no_mounts_left "$b-nothing-mounted-on-the-host"
	out=$(as_tester "distrorun --backend $b -v k true")
	contains "$b-verbose-kernel-facilities" "kernel: mounts with" "$out"
	out=$(as_tester "distrorun --backend $b k /bin/euid")
	check "$b-allow-setuid-off" 1000 "$out"
	out=$(as_tester "distrorun --backend $b k-link true; echo status \$?")
	contains "$b-symlinked-mount-point-refused" "symlink" "$out"
	contains "$b-symlinked-mount-point-status" "status 125" "$out"
	out=$(as_tester "cd /home/tester/work && PWD=/root distrorun --backend $b k pwd")
	check "$b-hostile-pwd-ignored" /home/tester/work "$out"
done
check setuid-bit-works-outside 0 "$(as_tester /srv/guest/bin/euid)"
for switch in kernel.unprivileged_userns_clone user.max_user_namespaces; do
	file=/proc/sys/$(echo $switch | tr . /)
	if [ ! -e "$file" ]; then echo "CHECK $switch-exists FAIL this kernel has no $switch"; continue; fi
	old=$(cat "$file")
	echo 0 >"$file"
	out=$(as_tester "distrorun --backend userns k true; echo status \$?")
	contains "$switch-userns-refused" "status 125" "$out"
	out=$(as_tester "distrorun --backend auto -v k sh -c 'id -u'; echo status \$?")
	contains "$switch-auto-falls-back" "backend helper" "$out"
	contains "$switch-auto-runs" "1000
status 0" "$out"
	no_mounts_left "$switch-nothing-mounted-on-the-host"
	out=$(as_tester "distrorun --doctor")
	contains "$switch-doctor-names-it" "$switch is 0" "$out"
	contains "$switch-doctor-fix" "sysctl -w $switch=" "$out"
	echo "$old" >"$file"
done
echo ALLDONE
poweroff -f
"#;

/// Prints the effective uid: run setuid root, it shows whether the bit took
/// effect.
const EUID_C: &str = "#include <stdio.h>\n#include <unistd.h>\nint main(void){printf(\"%u\\n\",(unsigned)geteuid());return 0;}\n";

fn copy(from: &Path, to: &Path, mode: u32) {
    fs::create_dir_all(to.parent().unwrap()).unwrap();
    fs::copy(from, to).unwrap_or_else(|e| panic!("copy {} to {}: {e}", from.display(), to.display()));
    fs::set_permissions(to, fs::Permissions::from_mode(mode)).unwrap();
}

fn write(path: &Path, text: &str, mode: u32) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// The initramfs tree in `dir`, as root, with the installed test build.
fn build_tree(dir: &Path) {
    for d in ["bin", "proc", "sys", "dev", "tmp", "run", "etc", "root"] {
        fs::create_dir_all(dir.join(d)).unwrap();
    }
    fs::set_permissions(dir.join("root"), fs::Permissions::from_mode(0o700)).unwrap();
    copy(Path::new("/bin/busybox"), &dir.join("bin/busybox"), 0o755);
    copy(Path::new(BIN), &dir.join("bin/distrorun"), 0o755);
    copy(Path::new(HELPER), &dir.join(HELPER.trim_start_matches('/')), 0o4755);
    write(&dir.join("init"), INIT, 0o755);
    write(&dir.join("stage2"), STAGE2, 0o755);
    let passwd = "root:x:0:0:root:/root:/bin/sh\ntester:x:1000:1000:tester:/home/tester:/bin/sh\n";
    let group = "root:x:0:\ntester:x:1000:\n";
    write(&dir.join("etc/passwd"), passwd, 0o644);
    write(&dir.join("etc/group"), group, 0o644);
    fs::create_dir_all(dir.join("home/tester/work")).unwrap();
    chown(dir.join("home/tester/work"), Some(TESTER_UID), Some(TESTER_UID)).unwrap();
    chown(dir.join("home/tester"), Some(TESTER_UID), Some(TESTER_UID)).unwrap();

    // The distro: busybox, a setuid-root probe, its own identity files, the
    // mount points, and one mount point that is a symlink.
    let guest = dir.join("srv/guest");
    for d in ["bin", "etc", "dev", "home", "tmp", "run", "proc", "sys"] {
        fs::create_dir_all(guest.join(d)).unwrap();
    }
    copy(Path::new("/bin/busybox"), &guest.join("bin/busybox"), 0o755);
    for applet in ["sh", "id", "pwd", "true", "echo", "cat"] {
        symlink("busybox", guest.join("bin").join(applet)).unwrap();
    }
    write(&guest.join("etc/passwd"), passwd, 0o644);
    write(&guest.join("etc/group"), group, 0o644);
    symlink("etc", guest.join("data")).unwrap();
    let src = dir.join("euid.c");
    fs::write(&src, EUID_C).unwrap();
    let out =
        Command::new("gcc").args(["-static", "-O2", "-o"]).arg(guest.join("bin/euid")).arg(&src).output();
    match out {
        Ok(o) if o.status.success() => {}
        other => panic!("cannot compile the setuid probe with gcc -static: {other:?}"),
    }
    fs::remove_file(&src).unwrap();
    fs::set_permissions(guest.join("bin/euid"), fs::Permissions::from_mode(0o4755)).unwrap();

    let conf = dir.join(CONF_DIR_INSIDE.trim_start_matches('/'));
    let volumes = r#"["/dev", "/home", "/tmp", "/run"]"#;
    write(&conf.join("k.conf"), &ron_config(Path::new("/srv/guest"), volumes, ""), 0o644);
    let link = r#"["/dev", "/home", (src: "/tmp", dst: "/data/x")]"#;
    write(&conf.join("k-link.conf"), &ron_config(Path::new("/srv/guest"), link, ""), 0o644);
}

/// The tree packed as an uncompressed newc cpio archive, ownership and
/// modes (the setuid bit) kept.
fn pack(dir: &Path, archive: &Path) {
    let script = format!("cd {} && find . | cpio -o -H newc --quiet > {}", dir.display(), archive.display());
    let st = Command::new("sh").args(["-c", &script]).status().expect("run cpio");
    assert!(st.success(), "packing the initramfs with cpio failed: {st}");
}

/// Boots `label`'s kernel with the test initramfs and checks every line.
fn boot_and_check(label: &str) {
    let kernel = Path::new(KERNELS).join(label).join("vmlinuz");
    assert!(
        kernel.exists(),
        "no kernel at {}: ci/setup.d/60-kernels.sh (run by ci/test-setup and make test) fetches it",
        kernel.display()
    );
    let found = Command::new("sh").args(["-c", &format!("command -v {QEMU}")]).output().expect("run sh");
    assert!(found.status.success(), "{QEMU} is missing: install qemu-system-x86 (make test does)");
    let work = TempDir::new(&format!("kernel-{label}"));
    let tree = work.join("tree");
    build_tree(&tree);
    let initrd = work.join("initrd.cpio");
    pack(&tree, &initrd);
    let start = Instant::now();
    // timeout(1) ends qemu if the boot hangs.
    let child = Command::new("timeout")
        .arg(BOOT_TIMEOUT.as_secs().to_string())
        .arg(QEMU)
        .args(["-machine", "accel=tcg", "-cpu", "max", "-m", "512", "-smp", "1"])
        .args(["-nographic", "-no-reboot", "-kernel"])
        .arg(&kernel)
        .arg("-initrd")
        .arg(&initrd)
        .args(["-append", "console=ttyS0 panic=-1 quiet"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start qemu");
    let out = child.wait_with_output().expect("wait for qemu");
    let console = String::from_utf8_lossy(&out.stdout).replace('\r', "");
    let took = start.elapsed();
    let checks: Vec<&str> = console.lines().filter(|l| l.starts_with("CHECK ")).collect();
    let failed: Vec<&&str> = checks.iter().filter(|l| !l.ends_with(" PASS")).collect();
    let report = format!(
        "kernel {label} ({}), {:.1} s:\n{console}\nqemu stderr: {}",
        console.lines().find(|l| l.contains("KERNEL ")).unwrap_or("did not start the script"),
        took.as_secs_f64(),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(console.contains("ALLDONE"), "the script did not finish; {report}");
    assert!(checks.len() >= 25, "only {} checks ran; {report}", checks.len());
    assert!(failed.is_empty(), "{} checks failed: {failed:#?}\n{report}", failed.len());
    eprintln!("kernel {label}: {} checks passed in {:.1} s", checks.len(), took.as_secs_f64());
}

#[test]
fn debian_11_kernel_5_10() {
    boot_and_check("5.10");
}

#[test]
fn newest_debian_kernel() {
    boot_and_check("newest");
}
