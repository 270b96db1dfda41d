//! Bad registries and bad images: each refused with exit status 125 and
//! one line naming what was wrong, and nothing left behind.

use super::*;

#[track_caller]
fn refused(homes: &Homes, reference: &str, extra: &[&str], needles: &[&str]) {
    let name = unique("bad");
    let mut args = vec!["--create", &name, "--image", reference];
    args.extend_from_slice(extra);
    let out = homes.run(&args).output();
    assert_refused(&out, needles);
    assert_eq!(out.stderr_str().lines().count(), 1, "more than one line:\n{}", out.report());
    homes.assert_absent(&name);
}

#[test]
fn unknown_tags_foreign_platforms_and_unknown_layer_types_are_refused() {
    let registry = Registry::start(Serve::Http);
    registry.push("foreign", "test/bad", "foreign", None);
    registry.push("odd", "test/bad", "odd", None);
    let homes = Homes::new("badimg");
    let host = &registry.host;
    let insecure = ["--insecure-registry"];
    refused(&homes, &format!("{host}/test/bad:nosuch"), &insecure, &["does not exist", "nosuch"]);
    refused(&homes, &format!("{host}/test/none:1"), &insecure, &["does not exist"]);
    refused(
        &homes,
        &format!("{host}/test/bad:foreign"),
        &insecure,
        &["has no image for linux/", "it offers linux/arm64/v8, linux/s390x"],
    );
    refused(
        &homes,
        &format!("{host}/test/bad:odd"),
        &insecure,
        &["media type", "application/vnd.example.unknown"],
    );
    refused(&homes, "UPPER/case:1", &insecure, &["not an image reference"]);
}

#[test]
fn plain_http_and_certificates_that_do_not_verify_need_insecure_registry() {
    let http = Registry::start(Serve::Http);
    http.push("v1", "test/app", "1", None);
    let homes = Homes::new("insecure");
    refused(&homes, &format!("{}/test/app:1", http.host), &[], &["over HTTPS", "--insecure-registry"]);
    let https = Registry::start(Serve::Https);
    https.push("v1", "test/app", "1", None);
    // The system's CA store does not know the tests' authority.
    refused(&homes, &format!("{}/test/app:1", https.host), &[], &["over HTTPS", "--insecure-registry"]);
    // With it, it works; and --insecure-registry accepts the certificate
    // without it.
    let name = unique("insecure");
    let out = homes
        .run(&[
            "-q",
            "--create",
            &name,
            "--image",
            &format!("{}/test/app:1", https.host),
            "--insecure-registry",
        ])
        .output();
    out.assert_ok();
    assert_eq!(homes.marker(&name), "v1");
}

#[test]
fn tampered_oversized_and_cut_off_layers_are_refused() {
    let registry = Registry::start(Serve::Http);
    registry.push("v1", "test/evil", "1", None);
    let homes = Homes::new("evil");
    for (mode, needles) in [
        ("tamper", &["layer 1", "does not match its digest"][..]),
        ("oversize", &["layer 1", "has more than the", "bytes the manifest says"][..]),
        ("cut", &["layer 1", "broke off at byte", "retries"][..]),
    ] {
        let proxy = Proxy::start(&registry, mode);
        refused(&homes, &format!("{}/test/evil:1", proxy.host), &["--insecure-registry"], needles);
    }
}
