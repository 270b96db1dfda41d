//! `--debian` through mmdebstrap, and `--system` distros made by root.

use super::*;

/// Where the `--debian` test keeps what it downloads, across runs, as the
/// guest tree is kept.
const MIRROR_CACHE: &str = "/var/cache/distrorun-test/mirror";

/// The host's Debian mirror, from its apt sources: the first URI that ends
/// in `/debian`.
fn host_debian_mirror() -> String {
    let mut files = vec![PathBuf::from("/etc/apt/sources.list")];
    let mut listed: Vec<PathBuf> =
        fs::read_dir("/etc/apt/sources.list.d").into_iter().flatten().flatten().map(|e| e.path()).collect();
    listed.sort();
    files.extend(listed);
    files
        .iter()
        .filter_map(|f| fs::read_to_string(f).ok())
        .flat_map(|text| text.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
        .find(|word| word.starts_with("http") && word.trim_end_matches('/').ends_with("/debian"))
        .unwrap_or_else(|| panic!("no Debian mirror in the host's apt sources; the --debian test needs one"))
}

/// `tests/support/mirror_cache.py` in front of the host's mirror, stopped
/// when dropped.
struct MirrorCache {
    child: std::process::Child,
    url: String,
}

impl MirrorCache {
    fn start() -> MirrorCache {
        use std::io::BufRead;
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/mirror_cache.py");
        let mut child = Command::new("/usr/bin/python3")
            .arg(&script)
            .arg(host_debian_mirror())
            .arg(MIRROR_CACHE)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", script.display()));
        let mut line = String::new();
        let stdout = child.stdout.take().expect("piped stdout");
        std::io::BufReader::new(stdout).read_line(&mut line).expect("read the cache's port");
        let Some(port) = line.strip_prefix("port ").map(str::trim) else {
            panic!("mirror_cache said {line:?}");
        };
        let url = format!("http://127.0.0.1:{port}");
        MirrorCache { child, url }
    }
}

impl Drop for MirrorCache {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

/// mmdebstrap builds the guest's suite from the host's mirror, through a
/// cache that keeps the packages between runs (the network to Debian's
/// archive is needed once per machine, as for the guest tree itself, and
/// for the signed Release files every time).
#[test]
fn a_debian_suite_is_built_by_mmdebstrap_and_unpacked_with_real_owners() {
    let homes = Homes::new("debian");
    let name = unique("deb");
    let suite = guest_suite();
    let cache = MirrorCache::start();
    let out = homes
        .run(&["-q", "--create", &name, "--debian", &suite, "--include", "hello", "--mirror", &cache.url])
        .output();
    drop(cache);
    out.assert_ok();
    let cached = Path::new(MIRROR_CACHE).join("pool");
    assert!(cached.is_dir(), "nothing was kept in {}", cached.display());
    let (uid, _) = user_ids(USER);
    let out = homes
        .run(&[&name, "sh", "-c", "hello; stat -c %U:%G /etc/shadow /var/cache/apt/archives/partial; id -u"])
        .output();
    out.assert_ok();
    assert_eq!(
        out.stdout_str(),
        format!("Hello, world!\nroot:shadow\n_apt:root\n{uid}\n"),
        "{}",
        out.report()
    );
    let config = fs::read_to_string(homes.config(&name)).expect("the config was written");
    assert!(config.contains(&format!("from the {suite} suite built by mmdebstrap")), "{config}");
}

#[test]
fn a_suite_mmdebstrap_cannot_build_is_its_error() {
    let homes = Homes::new("nosuite");
    let name = unique("nosuite");
    let out = homes.run(&["-q", "--create", &name, "--debian", "no-such-suite-here"]).output();
    assert_refused(&out, &["mmdebstrap failed", "no-such-suite-here"]);
    assert!(out.stderr_str().contains("mmdebstrap said:"), "{}", out.report());
    homes.assert_absent(&name);
    assert!(fs::symlink_metadata(homes.partial(&name)).is_err(), "the temporary tree was left behind");
    for (args, needle) in [
        (["--debian", "-x", "--include", "hello"], "invalid suite"),
        (["--debian", "trixie", "--include", "a b"], "invalid --include"),
        (["--debian", "trixie", "--mirror", "--oops"], "invalid mirror"),
    ] {
        let mut all = vec!["-q", "--create", &name];
        all.extend(args);
        assert_refused(&homes.run(&all).output(), &[needle]);
    }
    homes.assert_absent(&name);
}

/// `--system`: root makes a root-owned tree and a system config that the
/// setuid helper trusts, in one command.
#[test]
fn root_creates_a_system_distro_that_the_helper_trusts() {
    require_file(GUEST_TAR);
    let name = unique("system");
    let tree = Path::new(ROOTS_DIR).join(&name);
    let conf = Path::new(CONF_DIR).join(format!("{name}.conf"));
    let marker = Path::new(ROOTS_DIR).join(format!(".{name}.tree"));
    let _cleanup = Remove(vec![tree.clone(), conf.clone(), marker]);
    let out = Run::user(&["-q", "--create", &name, "--system", "--tarball", GUEST_TAR]).output();
    assert_refused(&out, &["needs root"]);
    assert!(!conf.exists());

    Run::root(&["-q", "--create", &name, "--system", "--state-dir", ROOTS_DIR, "--tarball", GUEST_TAR])
        .output()
        .assert_ok();
    let meta = fs::metadata(&conf).expect("the system config");
    assert_eq!((meta.uid(), meta.mode() & 0o022), (0, 0), "root's, writable by nobody else");
    assert!(
        !fs::read_to_string(&conf).expect("config").contains("ids:"),
        "a system distro maps no subordinate ids"
    );
    let shadow = fs::symlink_metadata(tree.join("etc/shadow")).expect("etc/shadow");
    assert_eq!((shadow.uid(), shadow.gid()), (0, 42), "real owners: root:shadow");
    for backend in [Backend::Helper, Backend::Userns] {
        let out = Run::user(&[&name, "stat", "-c", "%U", "/var/cache/apt/archives/partial"])
            .backend(backend)
            .output();
        out.assert_ok();
        let expected = if backend == Backend::Helper { "_apt\n" } else { "nobody\n" };
        assert_eq!(out.stdout_str(), expected, "{}", out.report());
    }
    assert_refused(&Run::user(&["--root", &name, "true"]).output(), &["needs real root"]);
    assert_refused(&Run::user(&["--remove", &name, "--yes"]).output(), &["system distro"]);
    assert!(tree.join("etc/shadow").exists());
}
