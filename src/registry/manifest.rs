//! Manifests: OCI and Docker v2 schema 2, and the indexes (manifest
//! lists) that lead to one per platform.

use std::collections::HashMap;

use distrorun_engine::Error;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::reference::check_digest;
use super::transport::{Client, Failure, MAX_MANIFEST};

/// The most layers an image may have. containers/storage and overlayfs
/// stop between 128 and 500; an image past that is an attack on the time
/// and the connections a create takes, one request per layer.
pub const MAX_LAYERS: usize = 500;
/// The most entries an index may list.
pub const MAX_INDEX_ENTRIES: usize = 1000;

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// The layer media types distrorun unpacks; the compression is told by the
/// stream's first bytes in any case.
const LAYER_TYPES: &[&str] = &[
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.diff.tar",
];

#[derive(Deserialize, Clone, Debug)]
pub struct Descriptor {
    #[serde(rename = "mediaType", default)]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default)]
    pub platform: Option<Platform>,
}

#[derive(Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(default)]
    pub variant: Option<String>,
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        match &self.variant {
            Some(v) => write!(f, "/{v}"),
            None => Ok(()),
        }
    }
}

#[derive(Deserialize)]
struct Document {
    #[serde(rename = "schemaVersion", default)]
    schema_version: u32,
    #[serde(rename = "mediaType", default)]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Option<Vec<Descriptor>>,
    #[serde(default)]
    layers: Option<Vec<Descriptor>>,
    #[serde(default)]
    config: Option<Descriptor>,
    #[serde(default)]
    annotations: HashMap<String, String>,
}

/// An image resolved to one platform's layers.
pub struct Resolved {
    /// What the reference points to: the index's digest for a
    /// multi-platform image. `--update` compares this.
    pub digest: String,
    pub layers: Vec<Descriptor>,
}

/// The platform this machine runs, in the words of the OCI image spec.
pub fn host_platform() -> Platform {
    let (architecture, variant) = match std::env::consts::ARCH {
        "x86_64" => ("amd64", None),
        "aarch64" => ("arm64", Some("v8")),
        "x86" => ("386", None),
        "arm" => ("arm", Some("v7")),
        "powerpc64" if cfg!(target_endian = "little") => ("ppc64le", None),
        "loongarch64" => ("loong64", None),
        other => (other, None),
    };
    Platform {
        architecture: architecture.to_owned(),
        os: "linux".to_owned(),
        variant: variant.map(str::to_owned),
    }
}

/// Fetches the manifest the reference names and, through an index, the
/// one for this machine.
pub fn resolve(client: &Client, what: &str) -> Result<Resolved, Error> {
    let key = client.reference.manifest_key().to_owned();
    let (top, bytes) = fetch(client, &key, client.reference.digest.as_deref(), what)?;
    let digest = format!("sha256:{:x}", Sha256::digest(&bytes));
    let mut doc = top;
    for _ in 0..4 {
        if let Some(manifests) = doc.manifests.take() {
            check_index(&manifests, what)?;
            let chosen = choose(&manifests, &host_platform(), what)?;
            let (next, _) = fetch(client, &chosen.digest, Some(&chosen.digest), what)?;
            doc = next;
            continue;
        }
        if doc.schema_version == 1 || doc.media_type.as_deref().is_some_and(|t| t.contains("prettyjws")) {
            return Err(Error::msg(format!(
                "{what} is a Docker schema 1 manifest, which distrorun does not read; push it again with a current tool"
            )));
        }
        let layers =
            doc.layers.take().ok_or_else(|| Error::msg(format!("{what}: its manifest lists no layers")))?;
        let Some(config) = &doc.config else {
            return Err(Error::msg(format!("{what}: its manifest has no config")));
        };
        if layers.len() > MAX_LAYERS {
            return Err(Error::msg(format!(
                "{what} has {} layers; distrorun unpacks images of at most {MAX_LAYERS}",
                layers.len()
            )));
        }
        if check_digest(&config.digest).is_err() {
            return Err(Error::msg(format!(
                "{what} has a config with the digest {:?}; distrorun reads sha256 digests",
                config.digest
            )));
        }
        for layer in &layers {
            if !LAYER_TYPES.contains(&layer.media_type.as_str()) {
                return Err(Error::msg(format!(
                    "{what} has a layer of media type {:?}, which distrorun cannot unpack",
                    layer.media_type
                )));
            }
            if check_digest(&layer.digest).is_err() {
                return Err(Error::msg(format!(
                    "{what} has a layer with the digest {:?}; distrorun reads sha256 digests",
                    layer.digest
                )));
            }
        }
        let _ = &doc.annotations;
        return Ok(Resolved { digest, layers });
    }
    Err(Error::msg(format!("{what}: its indexes nest too deeply")))
}

/// An index's entries, before any is used: a bounded number, each with a
/// well-formed digest, since the chosen one's goes into a URL.
fn check_index(manifests: &[Descriptor], what: &str) -> Result<(), Error> {
    if manifests.len() > MAX_INDEX_ENTRIES {
        return Err(Error::msg(format!(
            "{what}: its index lists {} manifests; distrorun reads indexes of at most {MAX_INDEX_ENTRIES}",
            manifests.len()
        )));
    }
    match manifests.iter().find(|d| check_digest(&d.digest).is_err()) {
        Some(bad) => Err(Error::msg(format!(
            "{what}: its index lists a manifest with the digest {:?}; distrorun reads sha256 digests",
            bad.digest
        ))),
        None => Ok(()),
    }
}

/// The index entry for `host`: the same OS and architecture, and the same
/// variant where both say one.
fn choose<'a>(manifests: &'a [Descriptor], host: &Platform, what: &str) -> Result<&'a Descriptor, Error> {
    let fits = |p: &Platform| p.os == host.os && p.architecture == host.architecture;
    let exact =
        manifests.iter().find(|d| d.platform.as_ref().is_some_and(|p| fits(p) && p.variant == host.variant));
    let loose = || {
        manifests.iter().find(|d| {
            d.platform.as_ref().is_some_and(|p| fits(p) && (p.variant.is_none() || host.variant.is_none()))
        })
    };
    exact.or_else(loose).ok_or_else(|| {
        let offered: Vec<String> = manifests
            .iter()
            .filter_map(|d| d.platform.as_ref())
            // Attestations and signatures hang in indexes as unknown/unknown.
            .filter(|p| p.os != "unknown")
            .map(ToString::to_string)
            .collect();
        let offered = if offered.is_empty() { "none".to_owned() } else { offered.join(", ") };
        Error::msg(format!("{what} has no image for {host}; it offers {offered}"))
    })
}

/// One manifest or index by tag or digest, checked against `digest` when
/// one is expected.
fn fetch(client: &Client, key: &str, digest: Option<&str>, what: &str) -> Result<(Document, Vec<u8>), Error> {
    let path = format!("/v2/{}/manifests/{key}", client.reference.repository);
    let accept = [OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST].join(", ");
    let bytes = client.get_json(&path, &accept, MAX_MANIFEST).map_err(|f| match f {
        Failure::Status(404, _) => {
            Error::msg(format!("{what} does not exist: the registry has no manifest {key}"))
        }
        Failure::Status(401 | 403, msg) => Error::msg(format!("{what}: the registry refused access ({msg})")),
        Failure::Status(code, msg) => Error::msg(
            format!("{what}: the registry answered {code} for the manifest {key} {msg}")
                .trim_end()
                .to_owned(),
        ),
        Failure::Transport(why) => Error::msg(format!("cannot fetch the manifest of {what}: {why}")),
        Failure::Auth(why) | Failure::Refused(why) => Error::msg(format!("{what}: {why}")),
    })?;
    if let Some(digest) = digest {
        let got = format!("sha256:{:x}", Sha256::digest(&bytes));
        if got != digest {
            return Err(Error::msg(format!(
                "{what}: the manifest {digest} the registry sent hashes to {got}"
            )));
        }
    }
    let doc: Document = serde_json::from_slice(&bytes)
        .map_err(|e| Error::msg(format!("{what}: its manifest is not valid JSON: {e}")))?;
    Ok((doc, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(os: &str, arch: &str, variant: Option<&str>) -> Descriptor {
        Descriptor {
            media_type: OCI_MANIFEST.into(),
            digest: format!("sha256:{}", "0".repeat(64)),
            size: 1,
            platform: Some(Platform {
                os: os.into(),
                architecture: arch.into(),
                variant: variant.map(Into::into),
            }),
        }
    }

    #[test]
    fn the_platform_is_chosen_by_os_architecture_and_variant() {
        let index = [
            entry("linux", "arm", Some("v6")),
            entry("linux", "arm", Some("v7")),
            entry("linux", "amd64", None),
        ];
        let host = |a: &str, v: Option<&str>| Platform {
            os: "linux".into(),
            architecture: a.into(),
            variant: v.map(Into::into),
        };
        let arm7 = choose(&index, &host("arm", Some("v7")), "t").unwrap();
        assert_eq!(arm7.platform.as_ref().unwrap().variant.as_deref(), Some("v7"));
        assert!(choose(&index, &host("amd64", None), "t").is_ok());
        let arm64 = [entry("linux", "arm64", None)];
        assert!(choose(&arm64, &host("arm64", Some("v8")), "t").is_ok());
        let err = choose(
            &[entry("linux", "s390x", None), entry("unknown", "unknown", None)],
            &host("amd64", None),
            "the image x",
        )
        .unwrap_err()
        .to_string();
        assert_eq!(err, "the image x has no image for linux/amd64; it offers linux/s390x");
    }
}
