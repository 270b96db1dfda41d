//! Images from container registries, over the OCI distribution protocol:
//! a reference resolved as podman resolves it, the manifest for this
//! machine's platform, and each layer as a stream checked against its
//! digest and size while it is read. Nothing here runs unless an image is
//! asked for: the run path never touches it.

pub mod auth;
pub mod blob;
pub mod cache;
pub mod manifest;
pub mod reference;
pub mod transport;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use distrorun_engine::Error;

pub use cache::Cache;
pub use manifest::Platform;
pub use reference::Reference;
use transport::Client;
pub use transport::Network;

/// podman's `--pull`: when the registry is asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Pull {
    /// Always ask for the manifest; blobs come from the cache where they
    /// are there.
    #[default]
    Always,
    /// Only where the cache does not have the image.
    Missing,
    /// Never: the cache must have it all.
    Never,
}

impl std::str::FromStr for Pull {
    type Err = String;
    fn from_str(s: &str) -> Result<Pull, String> {
        match s {
            "always" => Ok(Pull::Always),
            "missing" => Ok(Pull::Missing),
            "never" => Ok(Pull::Never),
            other => Err(format!("--pull {other:?}: expected always, missing or never")),
        }
    }
}

/// What a pull is asked for besides the reference.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Wanted {
    pub network: Network,
    pub pull: Pull,
    /// `--platform`; the host's when `None`.
    pub platform: Option<Platform>,
}

/// How many blobs a pull fetched and how many it found in the cache.
#[derive(Default)]
pub struct Transfer {
    fetched: [AtomicU64; 2],
    reused: [AtomicU64; 2],
}

impl Transfer {
    fn count(pair: &[AtomicU64; 2], bytes: u64) {
        pair[0].fetch_add(1, Ordering::Relaxed);
        pair[1].fetch_add(bytes, Ordering::Relaxed);
    }

    /// "fetched 1 layer (12 MiB), reused 1 (800 MiB)".
    pub fn summary(&self) -> String {
        let load = |pair: &[AtomicU64; 2]| (pair[0].load(Ordering::Relaxed), pair[1].load(Ordering::Relaxed));
        let ((f, fb), (r, rb)) = (load(&self.fetched), load(&self.reused));
        let human = crate::tree::limits::human_bytes;
        format!(
            "fetched {f} layer{} ({}), reused {r} from the cache ({})",
            if f == 1 { "" } else { "s" },
            human(fb),
            human(rb)
        )
    }
}

/// An image on a registry, resolved down to its layers.
pub struct Remote {
    /// `None` with `--pull never`, or `--pull missing` and a cached image.
    client: Option<Arc<Client>>,
    cache: Option<Arc<Cache>>,
    pub reference: Reference,
    /// The digest the reference points to (an index's, for a
    /// multi-platform image).
    pub digest: String,
    pub layers: Vec<manifest::Descriptor>,
    /// The platform of the image taken, where the index or config says it.
    pub platform: Option<Platform>,
    pub what: String,
    pub transfer: Transfer,
}

impl Remote {
    /// Resolves `text` and fetches its manifest, from the cache or the
    /// registry as `wanted` says.
    pub fn open(text: &str, wanted: &Wanted, cache: Option<Arc<Cache>>) -> Result<Remote, Error> {
        let reference = Reference::parse(text, &reference::search_registries())?;
        let what = format!("the image {reference}");
        let platform = wanted.platform.clone().unwrap_or_else(manifest::host_platform);
        let key = format!("{reference} {platform}");
        let cached = match (wanted.pull, &cache) {
            (Pull::Always, _) | (_, None) => None,
            (_, Some(cache)) => {
                let top = reference.digest.clone().or_else(|| cache.get_ref(&key));
                match top {
                    Some(top) => manifest::resolve_cached(cache, &top, &platform, &what)?,
                    None => None,
                }
            }
        };
        let (client, resolved) = match cached {
            Some(resolved) => (None, resolved),
            None if wanted.pull == Pull::Never => {
                return Err(Error::msg(format!(
                    "{what} for {platform} is not in the blob cache (--pull never)"
                )))
            }
            None => {
                let client = Client::connect(&reference, wanted.network)?;
                let resolved = manifest::resolve(&client, &what, &platform, cache.as_ref())?;
                if let Some(cache) = &cache {
                    cache.set_ref(&key, &resolved.digest);
                }
                (Some(Arc::new(client)), resolved)
            }
        };
        let mut remote = Remote {
            client,
            cache,
            reference,
            digest: resolved.digest,
            layers: resolved.layers,
            platform: resolved.platform,
            what,
            transfer: Transfer::default(),
        };
        if remote.platform.is_none() {
            remote.platform = remote.config(&resolved.config)?.as_deref().and_then(manifest::config_platform);
        }
        Ok(remote)
    }

    /// The image's config, from the cache or the registry (and cached).
    fn config(&self, d: &manifest::Descriptor) -> Result<Option<Vec<u8>>, Error> {
        let cached = || self.cache.as_ref().and_then(|c| c.get_bytes(&d.digest, transport::MAX_MANIFEST));
        if let Some(bytes) = cached() {
            return Ok(Some(bytes));
        }
        // Fetched once, as a layer is, when two creates want it at once.
        let _lock = self.cache.as_ref().map(|c| c.lock(&d.digest)).transpose()?;
        if let Some(bytes) = cached() {
            return Ok(Some(bytes));
        }
        let Some(client) = &self.client else { return Ok(None) };
        if d.size > transport::MAX_MANIFEST {
            return Err(Error::msg(format!("{}: its config is larger than 4 MiB", self.what)));
        }
        let mut blob =
            blob::Blob::open(client.clone(), &d.digest, d.size, format!("the config ({})", d.digest))
                .map_err(|e| Error::msg(format!("{}: {e}", self.what)))?;
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut blob, &mut bytes).map_err(|e| {
            Error::msg(format!("{}: {}", self.what, blob.failure.clone().unwrap_or_else(|| e.to_string())))
        })?;
        if let Some(cache) = &self.cache {
            cache.put(&d.digest, &bytes);
        }
        Ok(Some(bytes))
    }

    /// The reference pinned to what was pulled, as `--info` shows it.
    pub fn pinned(&self) -> String {
        format!("{}@{}", self.reference, self.digest)
    }

    /// Layer `n`: from the cache where it is there whole and checked;
    /// else, once no other create is fetching it, from the registry, into
    /// the cache as it streams.
    pub fn layer(&self, n: usize) -> Result<Layer, Error> {
        let d = &self.layers[n];
        let name = format!("layer {} ({})", n + 1, d.digest);
        let Some(cache) = &self.cache else { return self.fetch(n, &name, None) };
        if let Some(file) = cache.get(&d.digest, Some(d.size)) {
            Transfer::count(&self.transfer.reused, d.size);
            return Ok(Layer::Cached(file));
        }
        let lock = cache.lock(&d.digest)?;
        if let Some(file) = cache.get(&d.digest, Some(d.size)) {
            Transfer::count(&self.transfer.reused, d.size);
            return Ok(Layer::Cached(file));
        }
        let writer = cache.writer(&d.digest, &name);
        self.fetch(n, &name, writer.map(|w| (w, lock)))
    }

    fn fetch(
        &self,
        n: usize,
        name: &str,
        into: Option<(cache::Writer, nix::fcntl::Flock<std::fs::File>)>,
    ) -> Result<Layer, Error> {
        let d = &self.layers[n];
        let Some(client) = &self.client else {
            return Err(Error::msg(format!("{}: {name} is not in the blob cache (--pull never)", self.what)));
        };
        let blob = blob::Blob::open(client.clone(), &d.digest, d.size, name.to_owned())
            .map_err(|e| Error::msg(format!("{}: {e}", self.what)))?;
        Transfer::count(&self.transfer.fetched, d.size);
        Ok(Layer::Fetched { blob: Box::new(blob), into })
    }
}

impl Remote {
    /// Where the image cannot run here: for another architecture, with no
    /// qemu-user registered with `binfmt_misc` for it.
    pub fn foreign(&self) -> Option<String> {
        let p = self.platform.as_ref()?;
        let host = manifest::host_platform();
        if p.os == host.os && p.architecture == host.architecture {
            return None;
        }
        let qemu = match p.architecture.as_str() {
            "arm64" => "aarch64",
            "amd64" => "x86_64",
            "386" => "i386",
            "loong64" => "loongarch64",
            other => other,
        };
        let entry = format!("/proc/sys/fs/binfmt_misc/qemu-{qemu}");
        let registered = std::fs::read_to_string(&entry).is_ok_and(|t| t.starts_with("enabled"));
        Some(if registered {
            format!("its programs are for {p}, and run here through qemu-user ({entry})")
        } else {
            format!(
                "its programs are for {p}, which this machine ({host}) does not run: register qemu-user with binfmt_misc for {qemu} (Debian: apt install qemu-user-binfmt) to run them"
            )
        })
    }
}

/// A layer's bytes: a checked file of the cache, or a download that goes
/// into the cache once its digest checked.
pub enum Layer {
    Cached(std::fs::File),
    Fetched { blob: Box<blob::Blob>, into: Option<(cache::Writer, nix::fcntl::Flock<std::fs::File>)> },
}

impl std::io::Read for Layer {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Layer::Cached(file) => file.read(buf),
            Layer::Fetched { blob, into } => {
                let n = blob.read(buf)?;
                if let Some((writer, _)) = into {
                    writer.write(&buf[..n]);
                }
                Ok(n)
            }
        }
    }
}

impl Layer {
    /// Once read to the end: the blob checked (a download's failure, if
    /// any), and a download moved into the cache.
    pub fn failure(&mut self) -> Option<String> {
        match self {
            Layer::Cached(_) => None,
            Layer::Fetched { blob, into } => {
                if let Some(why) = &blob.failure {
                    return Some(why.clone());
                }
                if let Some((writer, _lock)) = into.take() {
                    writer.commit();
                }
                None
            }
        }
    }
}

/// The registry image a distro was made from, as its config keeps it.
pub type Origin = distrorun_config::ImageOrigin;

/// The image distro `name` was made from: the config's `image` field, or,
/// in a config an older distrorun wrote, its leading comments, taken only
/// in the exact form that version wrote for an image (its first line
/// names the same reference and digest), so that no file name copied into
/// a tarball's or layout's comment can pose as an image.
pub fn origin_of(found: &distrorun_config::Found) -> Option<Origin> {
    if let Some(image) = &found.distro.image {
        return Some(image.clone());
    }
    let text = std::fs::read_to_string(&found.path).ok()?;
    legacy_origin(&text, &found.name)
}

fn legacy_origin(text: &str, name: &str) -> Option<Origin> {
    let mut lines = text.lines();
    let (first, image, digest) = (lines.next()?, lines.next()?, lines.next()?);
    let reference = image.strip_prefix("// image: ")?;
    let digest = digest.strip_prefix("// digest: ")?;
    let parsed = Reference::parse(reference, &[]).ok()?;
    let well_formed = parsed.to_string() == reference && reference::check_digest(digest).is_ok();
    let first_expected = format!("// Made by `distrorun --create {name}` from {reference}@{digest}.");
    (well_formed && first == first_expected).then(|| Origin {
        reference: reference.to_owned(),
        digest: digest.to_owned(),
        platform: None,
    })
}

#[cfg(test)]
mod tests {
    use super::legacy_origin;

    #[test]
    fn an_older_config_names_its_image_only_in_the_form_distrorun_wrote() {
        let digest = format!("sha256:{}", "a".repeat(64));
        let written = format!(
            "// Made by `distrorun --create d` from docker.io/library/debian:12@{digest}.\n// image: docker.io/library/debian:12\n// digest: {digest}\n(\n)\n"
        );
        let o = legacy_origin(&written, "d").expect("the origin");
        assert_eq!(
            (o.reference.as_str(), o.digest.as_str()),
            ("docker.io/library/debian:12", digest.as_str())
        );
        assert_eq!(legacy_origin(&written, "other"), None);
        // A tarball whose name carries the two lines.
        let forged = format!(
            "// Made by `distrorun --create d` from the tarball /tmp/d\n// image: 127.0.0.1:5655/rt/evil:v1\n// digest: {digest}.\n(\n)\n"
        );
        assert_eq!(legacy_origin(&forged, "d"), None);
        assert_eq!(legacy_origin("(\n)\n", "d"), None);
    }
}
