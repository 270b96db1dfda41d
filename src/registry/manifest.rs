//! Manifests: OCI and Docker v2 schema 2, and the indexes (manifest
//! lists) that lead to one per platform.

use distrorun_engine::Error;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use std::sync::Arc;

use super::cache::Cache;
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

impl std::str::FromStr for Platform {
    type Err = String;

    /// `OS/ARCH[/VARIANT]`, as podman's `--platform` takes it.
    fn from_str(text: &str) -> Result<Platform, String> {
        let parts: Vec<&str> = text.split('/').collect();
        let word = |w: &&str| {
            !w.is_empty() && w.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        };
        match parts.as_slice() {
            [os, arch, rest @ ..] if rest.len() <= 1 && parts.iter().all(word) => Ok(Platform {
                os: (*os).to_owned(),
                architecture: (*arch).to_owned(),
                variant: rest.first().map(|v| (*v).to_owned()),
            }),
            _ => Err(format!("{text:?} is not a platform such as linux/arm64 or linux/arm/v7")),
        }
    }
}

/// The platform an image config names (its `os`, `architecture` and
/// `variant`).
pub fn config_platform(config: &[u8]) -> Option<Platform> {
    serde_json::from_slice(config).ok()
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
}

/// An image resolved to one platform's layers.
pub struct Resolved {
    /// What the reference points to: the index's digest for a
    /// multi-platform image. `--update` compares this.
    pub digest: String,
    pub layers: Vec<Descriptor>,
    pub config: Descriptor,
    /// The platform the index named for the manifest taken; `None` for a
    /// reference straight to a manifest, whose config says it.
    pub platform: Option<Platform>,
    /// The digests of the indexes and manifests walked through, the top
    /// one first.
    pub manifests: Vec<String>,
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
/// one for `platform`; each one fetched goes into the cache too.
pub fn resolve(
    client: &Client,
    what: &str,
    platform: &Platform,
    cache: Option<&Arc<Cache>>,
) -> Result<Resolved, Error> {
    let key = client.reference.manifest_key().to_owned();
    let (top, bytes) = fetch(client, &key, client.reference.digest.as_deref(), what)?;
    let digest = format!("sha256:{:x}", Sha256::digest(&bytes));
    if let Some(cache) = cache {
        cache.put(&digest, &bytes);
    }
    let resolved = walk(top, digest, platform, what, |d| {
        let (doc, bytes) = fetch(client, d, Some(d), what)?;
        if let Some(cache) = cache {
            cache.put(d, &bytes);
        }
        Ok(Some(doc))
    })?;
    resolved.ok_or_else(|| Error::msg(format!("{what}: its index leads nowhere")))
}

/// The same from the cache alone, starting at the cached manifest or index
/// `top`; `None` where any of them is not cached.
pub fn resolve_cached(
    cache: &Cache,
    top: &str,
    platform: &Platform,
    what: &str,
) -> Result<Option<Resolved>, Error> {
    let read = |d: &str| -> Result<Option<Document>, Error> {
        match cache.get_bytes(d, MAX_MANIFEST) {
            Some(bytes) => parse(&bytes, what).map(Some),
            None => Ok(None),
        }
    };
    let Some(doc) = read(top)? else { return Ok(None) };
    walk(doc, top.to_owned(), platform, what, read)
}

fn parse(bytes: &[u8], what: &str) -> Result<Document, Error> {
    serde_json::from_slice(bytes)
        .map_err(|e| Error::msg(format!("{what}: its manifest is not valid JSON: {e}")))
}

/// From a manifest or index down to one platform's layers, reading each
/// nested manifest through `next`.
fn walk(
    top: Document,
    digest: String,
    platform: &Platform,
    what: &str,
    mut next: impl FnMut(&str) -> Result<Option<Document>, Error>,
) -> Result<Option<Resolved>, Error> {
    let mut doc = top;
    let mut chosen_platform = None;
    let mut walked = vec![digest.clone()];
    for _ in 0..4 {
        if let Some(manifests) = doc.manifests.take() {
            check_index(&manifests, what)?;
            let chosen = choose(&manifests, platform, what)?;
            chosen_platform.clone_from(&chosen.platform);
            walked.push(chosen.digest.clone());
            let Some(nested) = next(&chosen.digest)? else { return Ok(None) };
            doc = nested;
            continue;
        }
        let (layers, config) = check_manifest(doc, what)?;
        return Ok(Some(Resolved { digest, layers, config, platform: chosen_platform, manifests: walked }));
    }
    Err(Error::msg(format!("{what}: its indexes nest too deeply")))
}

/// An image manifest's layers and config, each checked.
fn check_manifest(mut doc: Document, what: &str) -> Result<(Vec<Descriptor>, Descriptor), Error> {
    if doc.schema_version == 1 || doc.media_type.as_deref().is_some_and(|t| t.contains("prettyjws")) {
        return Err(Error::msg(format!(
            "{what} is a Docker schema 1 manifest, which distrorun does not read; push it again with a current tool"
        )));
    }
    let layers =
        doc.layers.take().ok_or_else(|| Error::msg(format!("{what}: its manifest lists no layers")))?;
    let Some(config) = doc.config.take() else {
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
    Ok((layers, config))
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
    Ok((parse(&bytes, what)?, bytes))
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
    fn platforms_are_written_os_architecture_and_variant() {
        let p: Platform = "linux/arm/v7".parse().unwrap();
        assert_eq!(
            (p.os.as_str(), p.architecture.as_str(), p.variant.as_deref()),
            ("linux", "arm", Some("v7"))
        );
        assert_eq!("linux/amd64".parse::<Platform>().unwrap().to_string(), "linux/amd64");
        for bad in ["linux", "linux/", "/amd64", "linux/arm/v7/x", "linux/a b"] {
            assert!(bad.parse::<Platform>().is_err(), "{bad}");
        }
        let config = br#"{"architecture":"arm64","os":"linux","variant":"v8","rootfs":{}}"#;
        assert_eq!(config_platform(config).map(|p| p.to_string()).as_deref(), Some("linux/arm64/v8"));
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
