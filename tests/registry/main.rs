//! Distros from container registries: `--create NAME --image REF` and
//! `--update NAME` against a real registry (Debian's docker-registry,
//! distribution 2.8) that the tests start on loopback, over HTTPS with a
//! certificate authority made by openssl and over plain HTTP, with images
//! that umoci builds and skopeo pushes. A small proxy (proxy.py) stands
//! in front of one where a registry must misbehave. Everything is pulled
//! as the unprivileged test user; `ci/setup.d/50-registry.sh` installs the
//! tools.

mod archives;
mod attacks;
mod cache;
mod pull;
mod refusals;
mod reuse;
mod update;

use distrorun_testkit::*;
use std::fmt::Write as _;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const REGISTRY_BIN: &str = "/usr/bin/docker-registry";
pub const USER_NAME: &str = "pull";
pub const PASSWORD: &str = "correct horse";

/// A test's own data, config and runtime directories, so that tests side
/// by side never see each other's distros or credentials.
pub struct Homes {
    pub base: TempDir,
}

impl Homes {
    pub fn new(tag: &str) -> Homes {
        let base = TempDir::owned_by(USER, tag);
        let (uid, gid) = user_ids(USER);
        for sub in
            ["data", "config", "runtime", "home", "config/containers", "runtime/containers", "home/.docker"]
        {
            let p = base.join(sub);
            fs::create_dir(&p).unwrap_or_else(|e| panic!("mkdir {}: {e}", p.display()));
            std::os::unix::fs::chown(&p, Some(uid), Some(gid)).expect("chown");
        }
        fs::set_permissions(base.join("runtime"), fs::Permissions::from_mode(0o700)).expect("chmod");
        Homes { base }
    }

    pub fn run(&self, args: &[&str]) -> Run {
        Run::as_user(USER, args)
            .env("XDG_DATA_HOME", self.base.join("data"))
            .env("XDG_CONFIG_HOME", self.base.join("config"))
            .env("XDG_RUNTIME_DIR", self.base.join("runtime"))
            .env("XDG_CACHE_HOME", self.base.join("cache"))
            .env("HOME", self.base.join("home"))
            .timeout(Duration::from_secs(300))
    }

    pub fn tree(&self, name: &str) -> PathBuf {
        self.base.join("data/distrorun").join(name)
    }

    /// The blob cache's blobs.
    pub fn blobs(&self) -> PathBuf {
        self.base.join("cache/distrorun/sha256")
    }

    pub fn config(&self, name: &str) -> PathBuf {
        self.base.join(format!("config/distrorun.d/{name}.conf"))
    }

    /// Writes a file the test user reads, under the test's base.
    pub fn write(&self, rel: &str, text: &str) {
        let p = self.base.join(rel);
        fs::write(&p, text).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
        let (uid, gid) = user_ids(USER);
        std::os::unix::fs::chown(&p, Some(uid), Some(gid)).expect("chown");
    }

    /// Nothing under the name, and no temporary tree.
    #[track_caller]
    pub fn assert_absent(&self, name: &str) {
        let data = self.base.join("data/distrorun");
        let left: Vec<String> = fs::read_dir(&data)
            .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        assert!(!left.iter().any(|f| f.contains(name)), "left behind in {}: {left:?}", data.display());
        assert!(fs::symlink_metadata(self.config(name)).is_err(), "{} exists", self.config(name).display());
    }

    /// `cat /etc/marker` inside the distro.
    #[track_caller]
    pub fn marker(&self, name: &str) -> String {
        let out = self.run(&[name, "cat", "/etc/marker"]).output();
        out.assert_ok();
        out.stdout_str().trim().to_owned()
    }
}

fn require_tool(path: &str) {
    assert!(
        Path::new(path).exists(),
        "{path} is missing: run ci/test-setup (ci/setup.d/50-registry.sh installs it)"
    );
}

/// The test images, in one OCI layout that umoci builds: `v1` and `v2`, a
/// busybox tree whose /etc/marker says which, one gzip layer each; `two1`
/// and `two2`, the same busybox layer under a second layer whose
/// /etc/marker says which; `keep1` and `keep2`, one base layer under two
/// different top layers that replace, white out and make opaque what the
/// base has (see reuse.rs); `multi`, an index for
/// linux/amd64 and linux/arm64/v8; `foreign`, an index for arm64 and
/// s390x only; `odd`, whose layer has a media type nobody knows.
pub struct Images {
    pub dir: TempDir,
}

impl Images {
    pub fn get() -> &'static Images {
        static IMAGES: std::sync::OnceLock<Images> = std::sync::OnceLock::new();
        IMAGES.get_or_init(Images::build)
    }

    fn build() -> Images {
        for tool in
            ["/usr/bin/umoci", "/usr/bin/skopeo", "/usr/bin/busybox", REGISTRY_BIN, "/usr/bin/htpasswd"]
        {
            require_tool(tool);
        }
        let dir = TempDir::fixed("registry-images");
        let craft = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/registry/craft.py");
        sh(&format!(
            r"cd {d}
            for v in v1 v2; do
                mkdir -p $v/bin $v/etc; cp /usr/bin/busybox $v/bin/
                for c in sh cat sleep ls echo; do ln -s busybox $v/bin/$c; done
                echo $v > $v/etc/marker
                tar --numeric-owner --owner=0 --group=0 -C $v -cf $v.tar .
            done
            umoci init --layout layout
            for v in v1 v2; do umoci new --image layout:$v; umoci raw add-layer --image layout:$v $v.tar; done
            mkdir -p base/bin top1/etc top2/etc; cp /usr/bin/busybox base/bin/
            for c in sh cat sleep ls echo; do ln -s busybox base/bin/$c; done
            echo two1 > top1/etc/marker; echo two2 > top2/etc/marker
            for t in base top1 top2; do tar --numeric-owner --owner=0 --group=0 -C $t -cf $t.tar .; done
            for v in two1 two2; do
                umoci new --image layout:$v; umoci raw add-layer --image layout:$v base.tar
                umoci raw add-layer --image layout:$v top${{v#two}}.tar
            done
            {keep}
            python3 {craft} layout v1 multi index linux/amd64 linux/arm64/v8
            python3 {craft} layout v1 foreign index linux/arm64/v8 linux/s390x
            python3 {craft} layout v1 odd mediatype application/vnd.example.unknown
            chmod -R a+rX .",
            d = dir.str(),
            keep = reuse::KEEP_LAYERS,
        ));
        Images { dir }
    }

    pub fn layout(&self) -> String {
        path_str(&self.dir.join("layout")).to_owned()
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Serve {
    Http,
    Https,
    /// HTTPS with the registry's htpasswd authentication.
    HttpsPassword,
}

/// A registry on a loopback port, stopped on drop.
pub struct Registry {
    child: Child,
    pub host: String,
    pub dir: TempDir,
    pub serve: Serve,
}

fn log_file(path: &Path) -> Stdio {
    fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_or_else(|e| panic!("open {}: {e}", path.display()), Stdio::from)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

#[track_caller]
fn wait_for_port(port: u16, child: &mut Child, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited ({status}) before listening on 127.0.0.1:{port}");
        }
        assert!(Instant::now() < deadline, "{what} is not listening on 127.0.0.1:{port} after 20 s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Registry {
    pub fn start(serve: Serve) -> Registry {
        Images::get();
        let dir = TempDir::new("registry");
        let port = free_port();
        let mut http = format!("  addr: 127.0.0.1:{port}\n");
        let mut auth = String::new();
        if serve != Serve::Http {
            sh(&format!(
                r"cd {d}
                openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj /CN=distrorun-test-ca 2>/dev/null
                openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=127.0.0.1 2>/dev/null
                printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' > ext
                openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 -extfile ext 2>/dev/null
                chmod a+r ca.pem",
                d = dir.str()
            ));
            let _ =
                write!(http, "  tls:\n    certificate: {0}/server.pem\n    key: {0}/server.key\n", dir.str());
        }
        if serve == Serve::HttpsPassword {
            sh(&format!("htpasswd -Bbn {USER_NAME} '{PASSWORD}' > {}/htpasswd", dir.str()));
            auth =
                format!("auth:\n  htpasswd:\n    realm: distrorun-test\n    path: {}/htpasswd\n", dir.str());
        }
        let config = format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: false\nstorage:\n  filesystem:\n    rootdirectory: {}/store\n  delete:\n    enabled: true\nhttp:\n{http}{auth}",
            dir.str()
        );
        fs::write(dir.join("config.yml"), config).expect("write the registry config");
        let mut child = Command::new(REGISTRY_BIN)
            .args(["serve", &format!("{}/config.yml", dir.str())])
            .stdin(Stdio::null())
            .stdout(log_file(&dir.join("access.log")))
            .stderr(log_file(&dir.join("access.log")))
            .spawn()
            .expect("cannot start docker-registry");
        wait_for_port(port, &mut child, "docker-registry");
        Registry { child, host: format!("127.0.0.1:{port}"), dir, serve }
    }

    /// Pushes `tag` of the test layout to `repo:dest` with skopeo; `format`
    /// is skopeo's `--format` (v2s2 makes Docker manifests and lists).
    pub fn push(&self, tag: &str, repo: &str, dest: &str, format: Option<&str>) {
        let mut cmd = format!(
            "skopeo copy -q --all --dest-tls-verify=false oci:{}:{tag} docker://{}/{repo}:{dest}",
            Images::get().layout(),
            self.host
        );
        if let Some(f) = format {
            let _ = write!(cmd, " --format {f}");
        }
        if self.serve == Serve::HttpsPassword {
            let _ = write!(cmd, " --dest-creds '{USER_NAME}:{PASSWORD}'");
        }
        sh(&cmd);
    }

    /// The digest the registry serves for `repo:tag`, as skopeo reads it.
    pub fn digest(&self, repo: &str, tag: &str) -> String {
        let mut cmd = format!("skopeo inspect --raw --tls-verify=false docker://{}/{repo}:{tag}", self.host);
        if self.serve == Serve::HttpsPassword {
            let _ = write!(cmd, " --creds '{USER_NAME}:{PASSWORD}'");
        }
        let sum = sh(&format!("{cmd} | sha256sum"));
        format!("sha256:{}", sum.split_whitespace().next().unwrap_or(""))
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// How many blobs of `repo` the registry has served, from its access
    /// log.
    pub fn blob_gets(&self, repo: &str) -> usize {
        let log = fs::read_to_string(self.dir.join("access.log")).unwrap_or_default();
        let request = format!("\"GET /v2/{repo}/blobs/sha256:");
        log.lines().filter(|l| l.contains(&request)).count()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// proxy.py in front of an HTTP registry, misbehaving as `mode` says.
pub struct Proxy {
    child: Child,
    pub host: String,
    _dir: TempDir,
}

impl Proxy {
    pub fn start(upstream: &Registry, mode: &str) -> Proxy {
        assert!(upstream.serve == Serve::Http, "the proxy speaks plain HTTP to its registry");
        let dir = TempDir::new("proxy");
        let port_file = dir.join("port");
        let upstream_port = upstream.host.rsplit(':').next().unwrap_or("");
        let mut child = Command::new("python3")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/registry/proxy.py"))
            .args([path_str(&port_file), upstream_port, mode])
            .stdin(Stdio::null())
            .spawn()
            .expect("cannot start proxy.py");
        let deadline = Instant::now() + Duration::from_secs(20);
        let port: u16 = loop {
            if let Some(port) = fs::read_to_string(&port_file).ok().and_then(|p| p.trim().parse().ok()) {
                break port;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("proxy.py exited ({status}) before listening");
            }
            assert!(Instant::now() < deadline, "proxy.py did not start in 20 s");
            std::thread::sleep(Duration::from_millis(50));
        };
        wait_for_port(port, &mut child, "proxy.py");
        Proxy { child, host: format!("127.0.0.1:{port}"), _dir: dir }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
