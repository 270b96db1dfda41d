//! Pulls that work: over HTTPS verified through `SSL_CERT_FILE`, over plain
//! HTTP with --insecure-registry, unqualified names through
//! registries.conf, multi-platform indexes and Docker manifest lists,
//! passwords, bearer tokens, redirects, and a transfer resumed after the
//! connection broke.

use super::*;

fn auth_json(host: &str, user: &str, password: &str) -> String {
    let pair = sh(&format!("printf '%s' '{user}:{password}' | base64 -w0"));
    format!("{{\"auths\": {{\"{host}\": {{\"auth\": \"{pair}\"}}}}}}")
}

#[test]
fn an_image_over_https_becomes_a_distro_that_info_describes() {
    let registry = Registry::start(Serve::Https);
    registry.push("v1", "test/tls", "1", None);
    let digest = registry.digest("test/tls", "1");
    let homes = Homes::new("tls");
    let name = unique("tls");
    let reference = format!("{}/test/tls:1", registry.host);
    let out =
        homes.run(&["--create", &name, "--image", &reference]).env("SSL_CERT_FILE", registry.ca()).output();
    // Succeeds with its summary line on stderr.
    out.assert_code(0);
    // Not a terminal: no progress, only the summary, which names the digest.
    let err = out.stderr_str();
    assert_eq!(err.lines().count(), 1, "{}", out.report());
    assert!(err.contains(&format!("created distro {name}")) && err.contains(&digest), "{}", out.report());
    assert_eq!(homes.marker(&name), "v1");
    // Owners as the layer says: root inside.
    let owner = homes.run(&[&name, "ls", "-ln", "/etc/marker"]).output();
    owner.assert_ok();
    assert_eq!(owner.stdout_str().split_whitespace().nth(2), Some("0"), "{}", owner.report());

    let info = homes.run(&["--info", &name]).output();
    info.assert_ok();
    let text = info.stdout_str();
    assert!(text.contains(&format!("image:        {reference}\n")), "{}", info.report());
    assert!(text.contains(&format!("digest:       {digest}\n")), "{}", info.report());
    let json = homes.run(&["--info", &name, "--json"]).output();
    json.assert_ok();
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).expect("--info --json is JSON");
    assert_eq!(v["image"]["reference"], reference.as_str(), "{}", json.report());
    assert_eq!(v["image"]["digest"], digest.as_str(), "{}", json.report());

    // Quiet: nothing at all.
    let quiet = unique("tlsq");
    let out = homes
        .run(&["-q", "--create", &quiet, "--image", &reference])
        .env("SSL_CERT_FILE", registry.ca())
        .output();
    out.assert_ok();
    assert!(out.stderr.is_empty() && out.stdout.is_empty(), "{}", out.report());
}

#[test]
fn plain_http_with_insecure_registry_and_unqualified_names_through_registries_conf() {
    let registry = Registry::start(Serve::Http);
    registry.push("v2", "team/app", "2", None);
    let homes = Homes::new("http");
    homes.write(
        "config/containers/registries.conf",
        &format!("# the tests' registry first\nunqualified-search-registries = [\"{}\", \"docker.io\"]\n\n[[registry]]\nlocation = \"x\"\n", registry.host),
    );
    let name = unique("http");
    let out = homes.run(&["-q", "--create", &name, "--image", "team/app:2", "--insecure-registry"]).output();
    out.assert_ok();
    assert_eq!(homes.marker(&name), "v2");
    let config = fs::read_to_string(homes.config(&name)).expect("the config");
    assert!(
        config.contains(&format!("image: (reference: \"{}/team/app:2\", digest: ", registry.host)),
        "{config}"
    );
}

#[test]
fn a_multi_platform_index_and_a_docker_manifest_list_give_this_machines_image() {
    let registry = Registry::start(Serve::Http);
    registry.push("multi", "test/multi", "oci", None);
    registry.push("multi", "test/multi", "docker", Some("v2s2"));
    let list =
        sh(&format!("skopeo inspect --raw --tls-verify=false docker://{}/test/multi:docker", registry.host));
    assert!(
        list.contains("application/vnd.docker.distribution.manifest.list.v2+json"),
        "not a manifest list: {list}"
    );
    let homes = Homes::new("multi");
    for tag in ["oci", "docker"] {
        let name = unique(&format!("multi{tag}"));
        let reference = format!("{}/test/multi:{tag}", registry.host);
        homes
            .run(&["-q", "--create", &name, "--image", &reference, "--insecure-registry"])
            .output()
            .assert_ok();
        assert_eq!(homes.marker(&name), "v1");
        // The digest recorded is the index's, which is what the tag names.
        let config = fs::read_to_string(homes.config(&name)).expect("the config");
        assert!(config.contains(&format!("digest: \"{}\")", registry.digest("test/multi", tag))), "{config}");
    }
    // By digest, the same.
    let by_digest = format!("{}/test/multi@{}", registry.host, registry.digest("test/multi", "oci"));
    let name = unique("multidigest");
    homes.run(&["-q", "--create", &name, "--image", &by_digest, "--insecure-registry"]).output().assert_ok();
    assert_eq!(homes.marker(&name), "v1");
}

#[test]
fn stored_credentials_open_a_registry_with_a_password_and_a_wrong_one_is_refused() {
    let registry = Registry::start(Serve::HttpsPassword);
    registry.push("v1", "private/app", "1", None);
    let reference = format!("{}/private/app:1", registry.host);
    let homes = Homes::new("auth");
    let create = |name: &str| {
        homes
            .run(&["-q", "--create", name, "--image", &reference])
            .env("SSL_CERT_FILE", registry.ca())
            .output()
    };
    // None stored: refused, saying what to do.
    let name = unique("noauth");
    let out = create(&name);
    assert_refused(&out, &["wants a user name and password", "none is stored"]);
    homes.assert_absent(&name);
    // Podman's file, with a wrong password.
    homes.write("runtime/containers/auth.json", &auth_json(&registry.host, USER_NAME, "wrong"));
    let name = unique("badauth");
    let out = create(&name);
    assert_refused(&out, &["refused the credentials", "auth.json"]);
    homes.assert_absent(&name);
    // The right one.
    homes.write("runtime/containers/auth.json", &auth_json(&registry.host, USER_NAME, PASSWORD));
    let name = unique("auth");
    create(&name).assert_ok();
    assert_eq!(homes.marker(&name), "v1");
    // Docker's file, when podman's has nothing for the registry.
    homes.write("runtime/containers/auth.json", "{\"auths\": {}}");
    homes.write("home/.docker/config.json", &auth_json(&registry.host, USER_NAME, PASSWORD));
    let name = unique("dockerauth");
    create(&name).assert_ok();
    assert_eq!(homes.marker(&name), "v1");
}

#[test]
fn bearer_tokens_redirects_and_a_broken_transfer_resumed() {
    let registry = Registry::start(Serve::Http);
    registry.push("v2", "test/net", "1", None);
    let homes = Homes::new("net");
    for mode in ["bearer", "redirect", "cut-once"] {
        let proxy = Proxy::start(&registry, mode);
        let name = unique(mode);
        let reference = format!("{}/test/net:1", proxy.host);
        let out =
            homes.run(&["-q", "--create", &name, "--image", &reference, "--insecure-registry"]).output();
        out.assert_ok();
        assert_eq!(homes.marker(&name), "v2", "through the {mode} proxy");
    }
}
