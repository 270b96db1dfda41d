//! The desktop matrix: real servers on the host (Xvfb with authentication,
//! a headless weston, a session bus, `PulseAudio`, an SSH agent), run as the
//! test user, and real clients inside the guest tree reaching them through
//! distrorun, once per backend. ci/setup.d/30-desktop.sh installs both.

use distrorun_testkit::*;
use std::fs;
use std::io::Read;
use std::os::unix::fs::{chown, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

mod exports;

/// How long a server may take to open its socket, or a window to appear.
const WAIT: Duration = Duration::from_secs(30);

fn run_in(b: Backend, d: &TestDistro, cmd: &[&str]) -> Run {
    let mut args = vec![d.name.as_str()];
    args.extend_from_slice(cmd);
    Run::user(&args).backend(b)
}

fn runtime_dir() -> PathBuf {
    let (uid, _) = user_ids(USER);
    let dir = PathBuf::from(format!("/run/user/{uid}"));
    assert!(dir.is_dir(), "{} is missing; ci/setup.d/30-desktop.sh makes it", dir.display());
    dir
}

/// A host program run as the test user, with the environment a desktop
/// session would give it. Killed, with its process group, when dropped.
struct Server {
    what: String,
    child: Child,
}

impl Server {
    fn start(what: &str, program: &str, args: &[&str], env: &[(&str, &str)]) -> Server {
        let mut run = Run::user(args).bin(program).env("XDG_RUNTIME_DIR", runtime_dir());
        for (k, v) in env {
            run = run.env(k, v);
        }
        let mut cmd = run.command();
        cmd.stdout(Stdio::null()).stderr(Stdio::piped());
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start {what} ({program}): {e}"));
        Server { what: what.to_owned(), child }
    }

    /// Waits for `path` to appear, failing with the server's stderr if it
    /// exits or the wait runs out first.
    fn wait_for(&mut self, path: &Path) {
        let deadline = Instant::now() + WAIT;
        while !path.exists() {
            if let Ok(Some(status)) = self.child.try_wait() {
                let mut err = String::new();
                if let Some(mut e) = self.child.stderr.take() {
                    let _ = e.read_to_string(&mut err);
                }
                panic!("{} exited ({status}) before {} appeared:\n{err}", self.what, path.display());
            }
            assert!(
                Instant::now() < deadline,
                "{}: {} did not appear within {WAIT:?}",
                self.what,
                path.display()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(-i32::try_from(self.child.id()).expect("pids fit in i32"));
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(10));
        }
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

/// A host command as the test user; its output, which must be a success.
fn host_as_user(program: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut run = Run::user(args).bin(program).env("XDG_RUNTIME_DIR", runtime_dir());
    for (k, v) in env {
        run = run.env(k, v);
    }
    run.output()
}

/// A name for this test's socket or display that no other test uses.
fn tag(what: &str) -> String {
    unique(what)
}

/// An X display number that is free: no socket and no lock file.
fn free_display() -> u32 {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    loop {
        let n = 70
            + (std::process::id() % 50) * 10
            + NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 10;
        if !Path::new(&format!("/tmp/.X11-unix/X{n}")).exists()
            && !Path::new(&format!("/tmp/.X{n}-lock")).exists()
        {
            return n;
        }
    }
}

/// Xvfb on display `:N`, with authentication on: only clients that present
/// the cookie, which is in the test user's ~/.Xauthority, may connect.
struct X11 {
    display: String,
    _server: Server,
    _dir: TempDir,
}

impl X11 {
    fn start() -> X11 {
        let n = free_display();
        let display = format!(":{n}");
        let dir = TempDir::owned_by(USER, "xauth").with_mode(0o700);
        let server_auth = dir.join("server.auth");
        let cookie: String = {
            let mut bytes = [0u8; 16];
            fs::File::open("/dev/urandom")
                .and_then(|mut f| f.read_exact(&mut bytes))
                .expect("read /dev/urandom");
            bytes.iter().fold(String::new(), |mut s, b| {
                let _ = std::fmt::Write::write_fmt(&mut s, format_args!("{b:02x}"));
                s
            })
        };
        let server_auth_s = server_auth.to_str().expect("UTF-8 path");
        // xauth notes on stderr that it creates a file; the status is what counts.
        host_as_user("/usr/bin/xauth", &["-q", "-f", server_auth_s, "add", &display, ".", &cookie], &[])
            .assert_code(0);
        // The client's copy, where X clients look by default.
        host_as_user("/usr/bin/xauth", &["-q", "add", &display, ".", &cookie], &[]).assert_code(0);
        let mut server = Server::start(
            "Xvfb",
            "/usr/bin/Xvfb",
            &[&display, "-auth", server_auth_s, "-nolisten", "tcp", "-screen", "0", "640x480x24"],
            &[],
        );
        server.wait_for(Path::new(&format!("/tmp/.X11-unix/X{n}")));
        X11 { display, _server: server, _dir: dir }
    }
}

impl Drop for X11 {
    fn drop(&mut self) {
        let _ = host_as_user("/usr/bin/xauth", &["-q", "remove", &self.display], &[]);
    }
}

/// Polls the host's view of the display until a top-level window named
/// `title` is mapped.
fn wait_for_window(x: &X11, title: &str, client: &mut Child) {
    let deadline = Instant::now() + WAIT;
    loop {
        let out = host_as_user("/usr/bin/xwininfo", &["-root", "-tree"], &[("DISPLAY", &x.display)]);
        out.assert_code(0);
        if out.stdout_str().contains(&format!("\"{title}\"")) {
            return;
        }
        if let Ok(Some(status)) = client.try_wait() {
            let mut err = String::new();
            if let Some(mut e) = client.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            panic!("the client exited ({status}) before its window appeared:\n{err}");
        }
        assert!(Instant::now() < deadline, "no window {title:?} within {WAIT:?}:\n{}", out.stdout_str());
        thread::sleep(Duration::from_millis(100));
    }
}

per_backend! {
    /// config/examples/desktop.conf as shipped, on a copy of the guest
    /// prepared as its comments say: the host's resolver, time zone, hosts
    /// and machine id are what the command reads, and the caller has a name.
    fn the_desktop_example_runs(b) {
        let copy = GuestCopy::new("desktop-example");
        let localtime = copy.inside("/etc/localtime");
        fs::remove_file(&localtime).expect("rm the copy's /etc/localtime symlink");
        for f in ["/etc/localtime", "/etc/hosts", "/etc/machine-id"] {
            if !copy.inside(f).exists() {
                fs::write(copy.inside(f), b"").expect("create a mount point file");
            }
        }
        let example = include_str!("../../config/examples/desktop.conf");
        assert!(example.contains("\"/srv/distros/NAME\""), "the example's dir changed");
        let d = TestDistro::with_config("desktop-example", &example.replace("/srv/distros/NAME", path_str(&copy.path)));
        let out = run_in(b, &d, &["sh", "-c", "cat /etc/resolv.conf /etc/hosts /etc/machine-id /etc/localtime | cksum; id -un"])
            .env_remove("TZ")
            .output();
        out.assert_ok();
        let mut host = Vec::new();
        for f in ["/etc/resolv.conf", "/etc/hosts", "/etc/machine-id", "/etc/localtime"] {
            host.extend(fs::read(f).unwrap_or_else(|e| panic!("read the host's {f}: {e}")));
        }
        let mut cksum = Command::new("cksum").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().expect("cksum");
        std::io::Write::write_all(&mut cksum.stdin.take().expect("piped"), &host).expect("feed cksum");
        let host_sum = String::from_utf8(cksum.wait_with_output().expect("cksum").stdout).expect("cksum prints ASCII");
        assert_eq!(out.stdout_str(), format!("{host_sum}{USER}\n"), "{}", out.report());
    }

    /// Authentication is really on (a client without the cookie is turned
    /// away), and a client inside, with the cookie from ~/.Xauthority,
    /// reaches the display and maps a window that the host sees by name.
    fn x11_with_authentication(b) {
        // One display at a time: xauth rewrites ~/.Xauthority whole.
        let _serial = global_state_lock();
        let d = TestDistro::standard("x11");
        let x = X11::start();
        let refused = host_as_user("/usr/bin/xdpyinfo", &[], &[("DISPLAY", &x.display), ("XAUTHORITY", "/dev/null")]);
        assert_ne!(refused.code, Some(0), "Xvfb let a client in without the cookie:\n{}", refused.report());
        let out = run_in(b, &d, &["xdpyinfo"]).env("DISPLAY", &x.display).output();
        out.assert_code(0);
        assert!(out.stdout_str().contains(&format!("name of display:    {}", x.display)), "{}", out.report());

        let title = tag("distrorun-xlogo");
        let mut client = run_in(b, &d, &["xlogo", "-title", &title, "-geometry", "300x300+170+90"])
            .env("DISPLAY", &x.display)
            .command();
        client.stdout(Stdio::null());
        let mut client = client.spawn().expect("start xlogo through distrorun");
        wait_for_window(&x, &title, &mut client);
        if b == Backend::Userns {
            screenshot(&x);
        }
        let _ = client.kill();
        let _ = client.wait();
    }

    /// A Wayland client inside connects to a headless weston on the host
    /// through $XDG_RUNTIME_DIR/$WAYLAND_DISPLAY.
    fn wayland(b) {
        let d = TestDistro::standard("wayland");
        let socket = tag("wayland-dr");
        let mut weston = Server::start(
            "weston",
            "/usr/bin/weston",
            &["--backend=headless-backend.so", &format!("--socket={socket}"), "--idle-time=0"],
            &[],
        );
        weston.wait_for(&runtime_dir().join(&socket));
        let out = run_in(b, &d, &["wayland-info"])
            .env("XDG_RUNTIME_DIR", runtime_dir())
            .env("WAYLAND_DISPLAY", &socket)
            .output();
        out.assert_code(0);
        assert!(out.stdout_str().contains("'wl_compositor'"), "{}", out.report());
    }

    /// A session bus under /run/user/UID: `dbus-send` inside calls a method
    /// and gets the bus's own answer.
    fn dbus_session_bus(b) {
        let d = TestDistro::standard("dbus");
        let socket = runtime_dir().join(tag("bus-dr"));
        let address = format!("unix:path={}", socket.display());
        let mut bus = Server::start(
            "dbus-daemon",
            "/usr/bin/dbus-daemon",
            &["--session", "--nofork", "--nopidfile", &format!("--address={address}")],
            &[],
        );
        bus.wait_for(&socket);
        let host_id = host_as_user("/usr/bin/dbus-send", &["--session", "--dest=org.freedesktop.DBus", "--type=method_call", "--print-reply", "/", "org.freedesktop.DBus.GetId"], &[("DBUS_SESSION_BUS_ADDRESS", &address)]);
        host_id.assert_ok();
        let out = run_in(b, &d, &["dbus-send", "--session", "--dest=org.freedesktop.DBus", "--type=method_call", "--print-reply", "/", "org.freedesktop.DBus.GetId"])
            .env("DBUS_SESSION_BUS_ADDRESS", &address)
            .output();
        out.assert_ok();
        let id = |o: &Output| o.stdout_str().lines().nth(1).map(|l| l.trim().to_owned()).unwrap_or_default();
        assert!(id(&out).starts_with("string \""), "{}", out.report());
        assert_eq!(id(&out), id(&host_id), "the same bus answers inside and outside:\n{}", out.report());
    }

    /// PulseAudio on the host with a null sink; `pactl info` inside reaches
    /// it, with the cookie in the shared home.
    fn pulseaudio(b) {
        let _serial = global_state_lock();
        let d = TestDistro::standard("pulse");
        let socket = runtime_dir().join(tag("pulse-dr"));
        let script = TempDir::owned_by(USER, "pulse");
        let script_file = script.join("default.pa");
        fs::write(&script_file, format!(
            "load-module module-native-protocol-unix socket={}\nload-module module-null-sink sink_name=distrorun_null\nset-default-sink distrorun_null\n",
            socket.display()
        )).expect("write the PulseAudio script");
        fs::set_permissions(&script_file, fs::Permissions::from_mode(0o644)).expect("chmod");
        let mut pulse = Server::start(
            "pulseaudio",
            "/usr/bin/pulseaudio",
            &["-n", "--daemonize=no", "--exit-idle-time=-1", "--use-pid-file=no", "--disable-shm=yes", "-F", script_file.to_str().expect("UTF-8")],
            &[],
        );
        pulse.wait_for(&socket);
        let server = format!("unix:{}", socket.display());
        let out = run_in(b, &d, &["pactl", "info"]).env("PULSE_SERVER", &server).output();
        out.assert_ok();
        let text = out.stdout_str();
        assert!(text.contains("Server Name: pulseaudio"), "{}", out.report());
        assert!(text.contains("Default Sink: distrorun_null"), "{}", out.report());
    }

    /// Device nodes for GPUs and input are what the host has: the /dev
    /// volume brings them, submounts included.
    fn gpu_and_input_devices_are_the_hosts(b) {
        let d = TestDistro::standard("devices");
        for dir in ["/dev/dri", "/dev/input"] {
            let out = run_in(b, &d, &["sh", "-c", &format!("if [ -d {dir} ]; then ls -A {dir}; else echo absent; fi")]).output();
            out.assert_ok();
            let host = if let Ok(entries) = fs::read_dir(dir) {
                let mut names: Vec<String> =
                    entries.map(|e| e.unwrap().file_name().to_string_lossy().into_owned() + "\n").collect();
                names.sort();
                names.concat()
            } else {
                eprintln!("note: this machine has no {dir}; only its absence inside is checked");
                "absent\n".to_owned()
            };
            let mut inside: Vec<String> = out.stdout_str().lines().map(|l| format!("{l}\n")).collect();
            inside.sort();
            assert_eq!(inside.concat(), host, "{}", out.report());
        }
    }

    /// Programs that sandbox themselves with user namespaces (Chromium,
    /// Electron apps, flatpak) can, under both backends, on a host that
    /// allows user namespaces: the root switch is pivot_root.
    fn self_sandboxing_with_user_namespaces(b) {
        let d = TestDistro::standard("sandbox");
        run_in(b, &d, &["unshare", "-Ur", "true"]).output().assert_ok();
        run_in(b, &d, &["bwrap", "--unshare-all", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "true"])
            .output()
            .assert_ok();
    }

    /// LANG, LC_* and TZ reach the command, and the distro's tzdata turns
    /// the caller's TZ into local time.
    fn locale_and_time_zone(b) {
        let d = TestDistro::standard("tz");
        let out = run_in(b, &d, &["sh", "-c", "echo \"$LANG $LC_TIME\"; date -d @0 '+%Y-%m-%d %H:%M %Z'"])
            .env("LANG", "C.UTF-8")
            .env("LC_TIME", "C.UTF-8")
            .env("TZ", "Asia/Kolkata")
            .output();
        out.assert_ok();
        assert_eq!(out.stdout_str(), "C.UTF-8 C.UTF-8\n1970-01-01 05:30 IST\n", "{}", out.report());
    }

    /// Dotfiles in $HOME are the caller's, and the SSH agent's socket is
    /// reachable: `ssh-add -l` inside lists the key added on the host.
    fn home_and_ssh_agent(b) {
        let d = TestDistro::standard("ssh");
        let home = home_of(USER);
        let dotfile = home.join(format!(".{}", tag("distrorun-dotfile")));
        fs::write(&dotfile, "from the host\n").expect("write a dotfile");
        let (uid, gid) = user_ids(USER);
        chown(&dotfile, Some(uid), Some(gid)).expect("chown the dotfile");
        let _cleanup = Remove(vec![dotfile.clone()]);
        let out = run_in(b, &d, &["sh", "-c", &format!("cat ~/{}", dotfile.file_name().unwrap().to_string_lossy())]).output();
        out.assert_ok();
        assert_eq!(out.stdout_str(), "from the host\n", "{}", out.report());

        let keys = TempDir::owned_by(USER, "ssh").with_mode(0o700);
        let key = keys.join("id_ed25519");
        let key_s = key.to_str().expect("UTF-8");
        host_as_user("/usr/bin/ssh-keygen", &["-q", "-t", "ed25519", "-N", "", "-C", "distrorun-test-key", "-f", key_s], &[]).assert_ok();
        let socket = runtime_dir().join(tag("ssh-agent-dr"));
        let socket_s = socket.to_str().expect("UTF-8").to_owned();
        let mut agent = Server::start("ssh-agent", "/usr/bin/ssh-agent", &["-D", "-a", &socket_s], &[]);
        agent.wait_for(&socket);
        host_as_user("/usr/bin/ssh-add", &["-q", key_s], &[("SSH_AUTH_SOCK", &socket_s)]).assert_code(0);
        let out = run_in(b, &d, &["ssh-add", "-l"]).env("SSH_AUTH_SOCK", &socket_s).output();
        out.assert_ok();
        assert!(out.stdout_str().contains("distrorun-test-key (ED25519)"), "{}", out.report());
    }
}

/// Without user namespaces, only a setuid sandbox can work, as Chrome's
/// `chrome-sandbox` does (bwrap no longer supports setuid use): with
/// `allow_setuid: true` a setuid-root sandbox inside puts the command in new
/// PID and network namespaces, and without it the same program fails
/// cleanly with its own message (the root is nosuid and `no_new_privs` is
/// set), never by a signal.
#[test]
fn helper_setuid_sandbox_needs_allow_setuid() {
    let copy = GuestCopy::new("suid-sandbox");
    let sandbox = compile_support(&copy.inside("/usr/local/bin"), "suid_sandbox", &[]);
    chown(&sandbox, Some(0), Some(0)).expect("chown the sandbox");
    fs::set_permissions(&sandbox, fs::Permissions::from_mode(0o4755)).expect("chmod 4755 the sandbox");
    let cmd = ["/usr/local/bin/suid_sandbox", "sh", "-c", "echo pid $$; id -u"];
    let (uid, _) = user_ids(USER);
    for allow in [true, false] {
        let keys = if allow { "allow_setuid: true," } else { "" };
        let d = TestDistro::with_dir("suid-sandbox", &copy.path, keys);
        let mut args = vec![d.name.as_str()];
        args.extend_from_slice(&cmd);
        let out = Run::user(&args).deny_userns("EPERM").output();
        assert_no_panic(&out);
        if allow {
            out.assert_ok();
            assert_eq!(out.stdout_str(), format!("pid 1\n{uid}\n"), "{}", out.report());
        } else {
            out.assert_code(1);
            assert_eq!(
                out.stderr_str(),
                "suid_sandbox: unshare: Operation not permitted\n",
                "{}",
                out.report()
            );
        }
    }
}

/// The screenshot in docs/desktop.md: the root window of the test's Xvfb, with the
/// guest's xlogo on it, saved into docs/ by this test, never drawn by hand.
fn screenshot(x: &X11) {
    let dest = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/desktop-xlogo.png");
    fs::create_dir_all(dest.parent().unwrap()).expect("mkdir docs");
    // A mapped window may not be drawn yet: wait until the black root
    // window shows the logo's white.
    let deadline = Instant::now() + WAIT;
    let xwd = loop {
        let xwd = Run::user(&["-root", "-silent"]).bin("/usr/bin/xwd").env("DISPLAY", &x.display).output();
        xwd.assert_code(0);
        let mean = convert(&xwd.stdout, &["xwd:-", "-format", "%[fx:mean]", "info:"]);
        let mean: f64 =
            String::from_utf8_lossy(&mean).trim().parse().expect("convert prints the mean as a number");
        if mean > 0.05 {
            break xwd;
        }
        assert!(Instant::now() < deadline, "the window was never drawn (mean brightness {mean})");
        thread::sleep(Duration::from_millis(100));
    };
    // No time stamps, so that the same picture gives the same file and a
    // test run leaves the checkout unchanged.
    let png = convert(&xwd.stdout, &["xwd:-", "-strip", "-define", "png:exclude-chunk=date,time", "png:-"]);
    assert!(png.starts_with(b"\x89PNG"), "convert did not write a PNG");
    fs::write(&dest, &png).unwrap_or_else(|e| panic!("write {}: {e}", dest.display()));
}

/// `convert` (`ImageMagick`) on `input`; its stdout.
fn convert(input: &[u8], args: &[&str]) -> Vec<u8> {
    let mut child = Command::new("/usr/bin/convert")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ImageMagick's convert (ci/setup.d/30-desktop.sh installs it)");
    let mut stdin = child.stdin.take().expect("piped");
    let data = input.to_vec();
    let writer = thread::spawn(move || std::io::Write::write_all(&mut stdin, &data));
    let out = finish(child, None, WAIT, &format!("convert {}", args.join(" ")));
    let _ = writer.join();
    out.assert_code(0);
    out.stdout
}
