//! Hostile registries, served by hostile.py: credentials that must never
//! travel over plain HTTP nor to a server `--insecure-registry` does not
//! name, redirects from HTTPS down to plain HTTP, answers trickled to hold
//! a pull forever, documents listing a hundred thousand layers or
//! manifests or a path for a digest, and an update that must keep an old
//! tree a bind mount still uses. Each refusal is exit status 125 and one
//! line, and leaves nothing behind.

use super::*;
use std::sync::OnceLock;

const HOSTILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/registry/hostile.py");

/// The tests' certificates, made once with openssl: an authority, a
/// certificate it signs for 127.0.0.1 and localhost, and a self-signed one
/// for the same names, which nothing trusts.
struct Certs {
    dir: TempDir,
}

impl Certs {
    fn get() -> &'static Certs {
        static CERTS: OnceLock<Certs> = OnceLock::new();
        CERTS.get_or_init(|| {
            let dir = TempDir::fixed("hostile-certs");
            sh(&format!(
                r#"cd {d}
                ec='-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes'
                san='subjectAltName=IP:127.0.0.1,DNS:localhost'
                openssl req -x509 $ec -keyout ca.key -out ca.pem -days 2 -subj /CN=distrorun-hostile-ca 2>/dev/null
                openssl req $ec -keyout trusted.key -out trusted.csr -subj /CN=localhost 2>/dev/null
                printf '%s\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' "$san" > ext
                openssl x509 -req -in trusted.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out trusted.pem -days 2 -extfile ext 2>/dev/null
                openssl req -x509 $ec -keyout untrusted.key -out untrusted.pem -days 2 -subj /CN=localhost -addext "$san" \
                    -addext basicConstraints=critical,CA:FALSE -addext extendedKeyUsage=serverAuth 2>/dev/null
                chmod a+r ca.pem"#,
                d = dir.str()
            ));
            Certs { dir }
        })
    }

    fn ca() -> PathBuf {
        Certs::get().dir.join("ca.pem")
    }
}

/// How a listener of hostile.py speaks.
#[derive(Clone, Copy)]
enum Tls {
    Plain,
    /// A certificate the tests' authority signed (`SSL_CERT_FILE`).
    Trusted,
    /// A self-signed certificate.
    Untrusted,
}

/// One request hostile.py received.
#[derive(Debug)]
struct Request {
    listener: String,
    method: String,
    path: String,
    /// The Authorization header's scheme, or "-".
    auth: String,
}

/// hostile.py in MODE: the registry on `main`, a second server on `aux`.
struct Hostile {
    child: Child,
    dir: TempDir,
    main: u16,
    aux: u16,
    /// The digest of the image's one layer.
    layer: String,
}

impl Hostile {
    /// `realm` is the token realm, with `{main}` and `{aux}` for the ports.
    fn start(mode: &str, main: Tls, aux: Tls, realm: &str) -> Hostile {
        let certs = Certs::get();
        let dir = TempDir::new("hostile");
        for (listener, tls) in [("main", main), ("aux", aux)] {
            let which = match tls {
                Tls::Plain => continue,
                Tls::Trusted => "trusted",
                Tls::Untrusted => "untrusted",
            };
            for ext in ["pem", "key"] {
                fs::copy(certs.dir.join(format!("{which}.{ext}")), dir.join(format!("{listener}.{ext}")))
                    .expect("copy a certificate");
            }
        }
        let mut child = Command::new("python3")
            .args([HOSTILE, dir.str(), mode, realm])
            .stdin(Stdio::null())
            .spawn()
            .expect("cannot start hostile.py");
        let deadline = Instant::now() + Duration::from_secs(20);
        let info: serde_json::Value = loop {
            if let Some(v) =
                fs::read(dir.join("info.json")).ok().and_then(|t| serde_json::from_slice(&t).ok())
            {
                break v;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("hostile.py exited ({status}) before listening");
            }
            assert!(Instant::now() < deadline, "hostile.py did not start in 20 s");
            std::thread::sleep(Duration::from_millis(50));
        };
        let port = |k: &str| info[k].as_u64().and_then(|p| u16::try_from(p).ok()).expect("a port");
        let layer = info["layer"].as_str().expect("the layer's digest").to_owned();
        Hostile { main: port("main"), aux: port("aux"), layer, child, dir }
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.main)
    }

    fn reference(&self) -> String {
        format!("{}/hostile/app:1", self.host())
    }

    /// The HTTP requests `listener` received (TLS handshakes that failed
    /// are not requests).
    fn reached(&self, listener: &str) -> Vec<Request> {
        let log = fs::read_to_string(self.dir.join("log")).unwrap_or_default();
        log.lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split('\t').collect();
                (f.len() == 4).then(|| Request {
                    listener: f[0].to_owned(),
                    method: f[1].to_owned(),
                    path: f[2].to_owned(),
                    auth: f[3].to_owned(),
                })
            })
            .filter(|r| r.listener == listener && r.method != "TLS-FAILED")
            .collect()
    }
}

impl Drop for Hostile {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The test user's credentials for `host`, in podman's auth.json.
fn store_credentials(homes: &Homes, host: &str) {
    let pair = sh(&format!("printf '%s' '{USER_NAME}:{PASSWORD}' | base64 -w0"));
    homes.write(
        "config/containers/auth.json",
        &format!("{{\"auths\": {{\"{host}\": {{\"auth\": \"{pair}\"}}}}}}"),
    );
}

/// `--create NAME --image REFERENCE EXTRA...` as the test user, who trusts
/// the tests' authority; killed (failing the test) after `limit`. The
/// name, the run, and how long it took.
fn pull(homes: &Homes, reference: &str, extra: &[&str], limit: Duration) -> (String, Output, Duration) {
    let name = unique("hostile");
    let mut args = vec!["--create", name.as_str(), "--image", reference];
    args.extend_from_slice(extra);
    let started = Instant::now();
    let out = homes.run(&args).env("SSL_CERT_FILE", Certs::ca()).timeout(limit).output();
    let took = started.elapsed();
    (name, out, took)
}

/// A run's exit status and stderr, for a message about several runs.
fn outcome(out: &Output) -> String {
    format!("exit status {:?}, stderr {:?}", out.code, out.stderr_str())
}

const LIMIT: Duration = Duration::from_secs(30);

/// Refused in one line naming every needle, and nothing left behind.
#[track_caller]
fn refused(homes: &Homes, name: &str, out: &Output, needles: &[&str]) {
    assert_refused(out, needles);
    assert_eq!(out.stderr_str().lines().count(), 1, "more than one line:\n{}", out.report());
    homes.assert_absent(name);
}

#[test]
fn credentials_never_go_to_a_plain_http_token_realm() {
    let homes = Homes::new("realmhttp");
    // A registry verified over HTTPS, and one that --insecure-registry
    // lets speak plain HTTP: neither sends the credentials stored for it
    // to a realm on another host:port over plain HTTP.
    let mut pulls = Vec::new();
    for (tls, extra) in [(Tls::Trusted, &[][..]), (Tls::Plain, &["--insecure-registry"][..])] {
        let hostile = Hostile::start("token", tls, Tls::Plain, "http://127.0.0.1:{aux}/token");
        store_credentials(&homes, &hostile.host());
        let (name, out, _) = pull(&homes, &hostile.reference(), extra, LIMIT);
        pulls.push((hostile, name, out));
    }
    let leaks: Vec<String> = pulls
        .iter()
        .map(|(hostile, _, out)| {
            let leaked: Vec<Request> = hostile.reached("aux").into_iter().filter(|r| r.auth != "-").collect();
            (hostile, leaked, out)
        })
        .filter(|(_, leaked, _)| !leaked.is_empty())
        .map(|(h, leaked, out)| format!("realm port {}: {leaked:?}; {}", h.aux, outcome(out)))
        .collect();
    assert!(leaks.is_empty(), "credentials arrived at the plain HTTP realm:\n{}", leaks.join("\n"));
    for (hostile, name, out) in &pulls {
        let realm = format!("http://127.0.0.1:{}/token", hostile.aux);
        refused(&homes, name, out, &["plain HTTP", &realm]);
    }
}

#[test]
fn insecure_registry_covers_the_registrys_own_host_and_port_only() {
    let homes = Homes::new("realmtls");
    // The registry's certificate does not verify, which the flag allows;
    // its realm is elsewhere, as auth.docker.io is docker.io's. With a
    // certificate that verifies, the realm gets the credentials.
    let good = Hostile::start("token", Tls::Untrusted, Tls::Trusted, "https://localhost:{aux}/token");
    store_credentials(&homes, &good.host());
    let (name, out, _) = pull(&homes, &good.reference(), &["-q", "--insecure-registry"], LIMIT);
    out.assert_ok();
    assert_eq!(homes.marker(&name), "hostile");
    let asked = good.reached("aux");
    assert!(
        asked.iter().any(|r| r.path.starts_with("/token") && r.auth == "Basic"),
        "the realm was not asked with the credentials: {asked:?}"
    );
    // With one that does not verify, the flag does not cover it: the
    // handshake fails and no request is sent.
    let bad = Hostile::start("token", Tls::Untrusted, Tls::Untrusted, "https://localhost:{aux}/token");
    store_credentials(&homes, &bad.host());
    let (name, out, _) = pull(&homes, &bad.reference(), &["--insecure-registry"], LIMIT);
    let asked = bad.reached("aux");
    assert!(asked.is_empty(), "credentials arrived at the unverified realm: {asked:?}\n{}", out.report());
    refused(&homes, &name, &out, &[&format!("localhost:{}", bad.aux)]);
    let err = out.stderr_str().to_ascii_lowercase();
    assert!(err.contains("certificate") || err.contains("tls"), "no TLS problem named:\n{}", out.report());
}

#[test]
fn registries_conf_insecure_covers_its_own_location_without_the_flag() {
    let hostile = Hostile::start("serve", Tls::Untrusted, Tls::Plain, "");
    let homes = Homes::new("regconf");
    let conf = |port: u16| format!("[[registry]]\nlocation = \"127.0.0.1:{port}\"\ninsecure = true\n");
    homes.write("config/containers/registries.conf", &conf(hostile.main));
    let (name, out, _) = pull(&homes, &hostile.reference(), &["-q"], LIMIT);
    out.assert_ok();
    assert_eq!(homes.marker(&name), "hostile");
    // An entry for another port is not this registry's.
    homes.write("config/containers/registries.conf", &conf(hostile.aux));
    let (name, out, _) = pull(&homes, &hostile.reference(), &[], LIMIT);
    refused(&homes, &name, &out, &[&hostile.host()]);
}

#[test]
fn https_never_redirects_down_to_plain_http() {
    let homes = Homes::new("redirect");
    let mut pulls = Vec::new();
    for mode in ["redirect-manifest", "redirect-blob", "redirect-token"] {
        let hostile = Hostile::start(mode, Tls::Trusted, Tls::Plain, "https://127.0.0.1:{main}/token");
        store_credentials(&homes, &hostile.host());
        let (name, out, _) = pull(&homes, &hostile.reference(), &[], LIMIT);
        pulls.push((mode, hostile, name, out));
    }
    let followed: Vec<String> = pulls
        .iter()
        .map(|(mode, hostile, _, out)| (mode, hostile.reached("aux"), out))
        .filter(|(_, reached, _)| !reached.is_empty())
        .map(|(mode, reached, out)| format!("{mode}: {reached:?}; {}", outcome(out)))
        .collect();
    assert!(followed.is_empty(), "the plain HTTP target was asked:\n{}", followed.join("\n"));
    for (_, _, name, out) in &pulls {
        refused(&homes, name, out, &["redirect", "plain HTTP"]);
    }
}

#[test]
fn a_trickled_manifest_or_token_runs_into_the_timeout() {
    let homes = Homes::new("trickle");
    for (mode, needle) in [("slow-manifest", "/manifests/"), ("slow-token", "/token")] {
        let hostile = Hostile::start(mode, Tls::Trusted, Tls::Plain, "https://127.0.0.1:{main}/token");
        let (name, out, took) = pull(&homes, &hostile.reference(), &["--timeout", "5"], LIMIT);
        refused(&homes, &name, &out, &["--timeout", needle]);
        assert!(took < Duration::from_secs(20), "{mode}: refused only after {took:?}");
    }
}

#[test]
fn a_trickled_blob_runs_into_the_speed_limit() {
    let homes = Homes::new("crawl");
    let hostile = Hostile::start("slow-blob", Tls::Trusted, Tls::Plain, "");
    let extra = ["--speed-limit", "1K", "--speed-time", "3"];
    let (name, out, took) = pull(&homes, &hostile.reference(), &extra, LIMIT);
    refused(&homes, &name, &out, &["--speed-limit", "/blobs/sha256:"]);
    assert!(took < Duration::from_secs(20), "refused only after {took:?}");
}

#[test]
fn a_pull_stalled_in_a_layer_ends_on_sigterm_and_sigint_and_leaves_nothing() {
    let homes = Homes::new("signal");
    for signal in ["TERM", "INT"] {
        let hostile = Hostile::start("slow-blob", Tls::Trusted, Tls::Plain, "");
        let name = unique("signal");
        let reference = hostile.reference();
        let stderr = fs::File::create(homes.base.join(format!("stderr-{signal}"))).expect("a stderr file");
        let mut child = homes
            .run(&["-q", "--create", &name, "--image", &reference])
            .env("SSL_CERT_FILE", Certs::ca())
            .command()
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start the pull");
        let deadline = Instant::now() + Duration::from_secs(20);
        while !hostile.reached("main").iter().any(|r| r.path.ends_with(&hostile.layer)) {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("the pull ended ({status}) before it reached the layer");
            }
            assert!(Instant::now() < deadline, "the pull did not reach the layer in 20 s");
            std::thread::sleep(Duration::from_millis(50));
        }
        // Some of the layer read and unpacked.
        std::thread::sleep(Duration::from_secs(1));
        let pid = child.id().to_string();
        let sent = Instant::now();
        Run::as_user(USER, &[&format!("-{signal}"), &pid]).bin("/bin/kill").output().assert_ok();
        let status = loop {
            if let Ok(Some(status)) = child.try_wait() {
                break status;
            }
            if sent.elapsed() > Duration::from_secs(10) {
                let _ = child.kill();
                let _ = child.wait();
                panic!("SIG{signal}: the pull still ran 10 s later");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let err = fs::read_to_string(homes.base.join(format!("stderr-{signal}"))).unwrap_or_default();
        eprintln!("SIG{signal}: ended ({status}) after {:?}: {err}", sent.elapsed());
        homes.assert_absent(&name);
    }
}

#[test]
fn thousands_of_layers_or_index_entries_are_refused_at_once() {
    let homes = Homes::new("caps");
    for (mode, needles) in [
        ("many-layers", &["5000 layers", "at most 500"][..]),
        ("huge-layers", &["/manifests/", "sent more than 4.0 MiB"][..]),
        ("many-manifests", &["2000 manifests", "at most 1000"][..]),
        ("huge-manifests", &["/manifests/", "sent more than 4.0 MiB"][..]),
    ] {
        let hostile = Hostile::start(mode, Tls::Trusted, Tls::Plain, "");
        let (name, out, took) = pull(&homes, &hostile.reference(), &[], Duration::from_secs(15));
        refused(&homes, &name, &out, needles);
        eprintln!("{mode}: refused in {took:?}");
    }
}

#[test]
fn an_index_entry_whose_digest_is_a_path_is_refused_before_any_request() {
    let homes = Homes::new("evildigest");
    let hostile = Hostile::start("evil-digest", Tls::Trusted, Tls::Plain, "");
    let (name, out, _) = pull(&homes, &hostile.reference(), &[], LIMIT);
    let strays: Vec<Request> = hostile
        .reached("main")
        .into_iter()
        .filter(|r| r.path.contains("..") || r.path.contains("evil"))
        .collect();
    assert!(
        strays.is_empty(),
        "a path made of the digest reached the registry: {strays:?}\n{}",
        out.report()
    );
    refused(&homes, &name, &out, &["digest"]);
}

/// The old trees of `name`'s updates (directories; their markers are not).
fn old_trees(homes: &Homes, name: &str) -> Vec<String> {
    let prefix = format!(".{name}+old-");
    let mut old: Vec<String> = fs::read_dir(homes.base.join("data/distrorun"))
        .expect("the data directory")
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&prefix))
        .collect();
    old.sort();
    old
}

/// The process that holds the bind mount, stopped on drop too.
struct Sleeper(Child);

impl Sleeper {
    fn stop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Sleeper {
    fn drop(&mut self) {
        self.stop();
    }
}

#[test]
fn an_update_keeps_an_old_tree_that_a_bind_mount_still_uses() {
    let registry = Registry::start(Serve::Http);
    registry.push("v1", "test/bound", "latest", None);
    let homes = Homes::new("boundold");
    let name = unique("bound");
    let reference = format!("{}/test/bound", registry.host);
    let update = || homes.run(&["-q", "--update", &name, "--insecure-registry"]).output();
    homes.run(&["-q", "--create", &name, "--image", &reference, "--insecure-registry"]).output().assert_ok();
    // The tree, bound elsewhere in a mount namespace of the user's own;
    // no process has it as its root.
    let target = TempDir::owned_by(USER, "bound-at");
    let ready = homes.base.join("bound");
    let script = format!(
        "mount --bind {} {} && touch {} && exec sleep 120",
        homes.tree(&name).display(),
        target.str(),
        ready.display()
    );
    let mut sleeper = Sleeper(
        Run::as_user(USER, &["-Urm", "sh", "-c", &script])
            .bin("/usr/bin/unshare")
            .command()
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the bind mount's holder"),
    );
    wait_for_file(&ready, Duration::from_secs(20), "the bind mount");
    let through_bind = format!("/proc/{}/root{}/etc/marker", sleeper.0.id(), target.str());

    registry.push("v2", "test/bound", "latest", None);
    update().assert_ok();
    let first = old_trees(&homes, &name);
    assert_eq!(first.len(), 1, "one old tree after the first update: {first:?}");
    registry.push("v1", "test/bound", "latest", None);
    update().assert_ok();
    let old = homes.base.join("data/distrorun").join(&first[0]);
    let kept = old.exists();
    let seen = fs::read_to_string(&through_bind);
    sleeper.stop();
    assert!(kept, "{} was deleted while a bind mount still used it", old.display());
    assert_eq!(seen.ok().as_deref(), Some("v1\n"), "the tree seen through the bind mount lost its files");
    // Once unused, the next update deletes it.
    registry.push("v2", "test/bound", "latest", None);
    update().assert_ok();
    assert!(!old.exists(), "{} outlived its last user", old.display());
}
