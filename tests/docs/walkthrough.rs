//! The README's walk-through, run as written: every `$ ` line of its
//! section, as the test user in a home of its own, against a registry this
//! test starts on loopback (HTTPS, its certificate authority given through
//! `SSL_CERT_FILE`). The one change to a command is the registry's address
//! in place of `docker.io`; each output line the README shows must be in
//! the command's output, with `/home/alice` and `alice` read as the test
//! user's home and name.
//!
//! The image stands in for `debian:trixie`: busybox, Debian 13's
//! `/etc/os-release`, and an `apt-get` that installs the one package the
//! walk-through names from files the image carries, since the tests reach
//! no Debian mirror. Everything distrorun does with it is real.

use super::*;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

const SECTION: &str = "\n## Five minutes with distrorun\n";
const REGISTRY_BIN: &str = "/usr/bin/docker-registry";

/// One command of the walk-through and the output lines shown under it.
#[derive(Debug)]
struct Step {
    command: String,
    output: Vec<String>,
}

/// The `$ ` lines of the walk-through's code blocks, in order.
fn steps(readme: &str) -> Vec<Step> {
    let section = readme.split(SECTION).nth(1).expect("README has a section \"Five minutes with distrorun\"");
    let section = section.split("\n## ").next().unwrap_or(section);
    let mut steps: Vec<Step> = Vec::new();
    let mut fenced = false;
    for line in section.lines() {
        if line.starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if !fenced {
            continue;
        }
        if let Some(command) = line.strip_prefix("$ ") {
            steps.push(Step { command: command.to_owned(), output: vec![] });
        } else if let Some(step) = steps.last_mut() {
            step.output.push(line.to_owned());
        }
    }
    steps
}

/// The stand-in image in an OCI layout at `dir/layout`, tag `trixie`.
fn build_image(dir: &TempDir) {
    for tool in ["/usr/bin/umoci", "/usr/bin/skopeo", "/usr/bin/busybox", "/usr/bin/openssl", REGISTRY_BIN] {
        assert!(Path::new(tool).exists(), "{tool} is missing: run ci/test-setup (ci/setup.d/50-registry.sh)");
    }
    let pkg = "r/var/lib/walkthrough/gnome-calculator";
    sh(&format!(
        r#"cd {d}
        mkdir -p r/bin r/etc r/usr/bin {pkg}/usr/bin {pkg}/usr/share/applications {pkg}/usr/share/icons/hicolor/scalable/apps
        cp /usr/bin/busybox r/bin/
        for c in sh cat ls echo cp mkdir grep; do ln -s busybox r/bin/$c; done
        printf '%s\n' 'PRETTY_NAME="Debian GNU/Linux 13 (trixie)"' 'NAME="Debian GNU/Linux"' 'VERSION_ID="13"' \
            'VERSION="13 (trixie)"' 'VERSION_CODENAME=trixie' 'ID=debian' > r/etc/os-release
        printf '%s\n' '#!/bin/sh' 'case "$1" in' 'update) exit 0 ;;' \
            'install) shift; for p; do case "$p" in -*) ;; *) cp -a "/var/lib/walkthrough/$p/." / || exit 100 ;; esac; done ;;' \
            '*) exit 100 ;;' 'esac' > r/usr/bin/apt-get
        printf '%s\n' '#!/bin/sh' 'grep ^VERSION_CODENAME= /etc/os-release > "$HOME/calculator-ran"' > {pkg}/usr/bin/gnome-calculator
        printf '%s\n' '[Desktop Entry]' 'Type=Application' 'Name=Calculator' 'Exec=gnome-calculator' \
            'Icon=org.gnome.Calculator' 'Categories=GNOME;GTK;Utility;Calculator;' \
            > {pkg}/usr/share/applications/org.gnome.Calculator.desktop
        echo '<svg xmlns="http://www.w3.org/2000/svg"/>' > {pkg}/usr/share/icons/hicolor/scalable/apps/org.gnome.Calculator.svg
        chmod 0755 r/usr/bin/apt-get {pkg}/usr/bin/gnome-calculator
        tar --numeric-owner --owner=0 --group=0 -C r -cf layer.tar .
        umoci init --layout layout
        umoci new --image layout:trixie
        umoci raw add-layer --image layout:trixie layer.tar
        chmod -R a+rX ."#,
        d = dir.str()
    ));
}

/// docker-registry over HTTPS on a loopback port, stopped on drop.
struct Registry {
    child: Child,
    host: String,
    dir: TempDir,
}

impl Registry {
    fn start() -> Registry {
        let dir = TempDir::new("walk-registry");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free loopback port")
            .port();
        sh(&format!(
            r"cd {d}
            openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj /CN=distrorun-walk-ca 2>/dev/null
            openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=127.0.0.1 2>/dev/null
            printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' > ext
            openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 -extfile ext 2>/dev/null
            chmod a+r ca.pem
            printf 'version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {d}/store\nhttp:\n  addr: 127.0.0.1:{port}\n  tls:\n    certificate: {d}/server.pem\n    key: {d}/server.key\n' > config.yml",
            d = dir.str()
        ));
        let mut child = Command::new(REGISTRY_BIN)
            .args(["serve", &format!("{}/config.yml", dir.str())])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start docker-registry");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("docker-registry exited ({status}) before listening on 127.0.0.1:{port}");
            }
            assert!(
                Instant::now() < deadline,
                "docker-registry is not listening on 127.0.0.1:{port} after 20 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Registry { child, host: format!("127.0.0.1:{port}"), dir }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A new user's home and runtime directory; ends the keep-id holder the
/// walk-through started.
struct NewUser {
    base: TempDir,
}

impl NewUser {
    fn new() -> NewUser {
        let base = TempDir::owned_by(USER, "walk-user");
        let (uid, gid) = user_ids(USER);
        for (sub, mode) in [("home", 0o755), ("runtime", 0o700)] {
            let p = base.join(sub);
            fs::create_dir(&p).unwrap_or_else(|e| panic!("mkdir {}: {e}", p.display()));
            std::os::unix::fs::chown(&p, Some(uid), Some(gid)).expect("chown");
            fs::set_permissions(&p, fs::Permissions::from_mode(mode)).expect("chmod");
        }
        NewUser { base }
    }

    fn home(&self) -> PathBuf {
        self.base.join("home")
    }

    /// `script` in sh as the test user, from the home, with a login's
    /// environment and the test build first in `PATH`.
    fn run(&self, script: &str, ca: &Path) -> Output {
        Run::as_user(USER, &["-c", script])
            .bin("/bin/sh")
            .env("HOME", self.home())
            .env("XDG_RUNTIME_DIR", self.base.join("runtime"))
            .env("PATH", format!("{TEST_ROOT}/bin:/usr/local/bin:/usr/bin:/bin"))
            .env("SSL_CERT_FILE", ca)
            .cwd(self.home())
            .timeout(Duration::from_secs(300))
            .output()
    }
}

impl Drop for NewUser {
    fn drop(&mut self) {
        let state = self.base.join("runtime/distrorun-keepid");
        if let Some(pid) = fs::read_to_string(state).ok().and_then(|t| t.trim().parse::<u32>().ok()) {
            let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
        }
    }
}

#[test]
fn the_walkthrough_finds_its_commands_and_their_output() {
    let steps = steps(&read("README.md"));
    let commands: Vec<&str> = steps.iter().map(|s| s.command.as_str()).collect();
    for want in [
        "distrorun --create deb --image",
        "distrorun deb cat /etc/os-release",
        "distrorun --export",
        "distrorun --doctor",
    ] {
        assert!(
            commands.iter().any(|c| c.starts_with(want)),
            "no `{want}` in the walk-through: {commands:?}"
        );
    }
    let cat = steps.iter().find(|s| s.command.contains("/etc/os-release")).expect("the os-release step");
    assert!(cat.output.iter().any(|l| l.starts_with("PRETTY_NAME=")), "{cat:?}");
}

#[test]
fn a_new_user_following_the_readme_makes_a_distro_from_a_registry_and_runs_in_it() {
    let images = TempDir::new("walk-image");
    build_image(&images);
    let registry = Registry::start();
    sh(&format!(
        "skopeo copy -q --dest-tls-verify=false oci:{}/layout:trixie docker://{}/library/debian:trixie",
        images.str(),
        registry.host
    ));
    let ca = registry.dir.join("ca.pem");
    let user = NewUser::new();
    let home = user.home();
    let home = home.to_str().expect("a UTF-8 home");
    for step in steps(&read("README.md")) {
        let command = step.command.replace("docker.io", &registry.host);
        let out = user.run(&command, &ca);
        assert!(out.status.code() == Some(0), "the README's `{}` failed:\n{}", step.command, out.report());
        let stdout = out.stdout_str();
        for shown in &step.output {
            let want = shown.replace("/home/alice", home).replace("alice", USER);
            assert!(
                stdout.lines().any(|l| l == want),
                "the README shows {shown:?} under `{}`, which printed:\n{}",
                step.command,
                out.report()
            );
        }
    }
    // The launcher on the menu starts the program inside the distro.
    let launcher = format!("{home}/.local/share/applications/distrorun-deb-org.gnome.Calculator.desktop");
    let text = fs::read_to_string(&launcher).unwrap_or_else(|e| panic!("read {launcher}: {e}"));
    let exec = text.lines().find_map(|l| l.strip_prefix("Exec=")).expect("an Exec line");
    assert!(exec.starts_with("distrorun deb ") || exec.contains("/distrorun deb "), "Exec={exec}");
    user.run(exec, &ca).assert_ok();
    let ran = fs::read_to_string(format!("{home}/calculator-ran")).expect("the launcher ran the program");
    assert_eq!(ran, "VERSION_CODENAME=trixie\n", "the program did not run in the distro");
}
