//! Images from container registries, over the OCI distribution protocol:
//! a reference resolved as podman resolves it, the manifest for this
//! machine's platform, and each layer as a stream checked against its
//! digest and size while it is read. Nothing here runs unless an image is
//! asked for: the run path never touches it.

pub mod auth;
pub mod blob;
pub mod manifest;
pub mod reference;
pub mod transport;

use std::sync::Arc;

use distrorun_engine::Error;

pub use reference::Reference;

/// An image on a registry, resolved down to its layers.
pub struct Remote {
    client: Arc<Client>,
    pub reference: Reference,
    /// The digest the reference points to (an index's, for a
    /// multi-platform image).
    pub digest: String,
    pub layers: Vec<manifest::Descriptor>,
    pub what: String,
}

use transport::Client;

impl Remote {
    /// Resolves `text` and fetches its manifest. `insecure` allows plain
    /// HTTP and certificates that do not verify.
    pub fn open(text: &str, insecure: bool) -> Result<Remote, Error> {
        let reference = Reference::parse(text, &reference::search_registries())?;
        let what = format!("the image {reference}");
        let client = Client::connect(&reference, insecure)?;
        let resolved = manifest::resolve(&client, &what)?;
        Ok(Remote {
            client: Arc::new(client),
            reference,
            digest: resolved.digest,
            layers: resolved.layers,
            what,
        })
    }

    /// The reference pinned to what was pulled, as `--info` shows it.
    pub fn pinned(&self) -> String {
        format!("{}@{}", self.reference, self.digest)
    }

    /// A stream of layer `n`'s blob, checked as it is read.
    pub fn layer(&self, n: usize) -> Result<blob::Blob, Error> {
        let d = &self.layers[n];
        let name = format!("layer {} ({})", n + 1, d.digest);
        blob::Blob::open(self.client.clone(), &d.digest, d.size, name)
            .map_err(|e| Error::msg(format!("{}: {e}", self.what)))
    }
}

/// The image lines of a config that `--create --image` wrote: the
/// reference as given, the reference resolved, and the digest pulled.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Origin {
    pub reference: String,
    pub digest: String,
}

pub const ORIGIN_IMAGE: &str = "// image: ";
pub const ORIGIN_DIGEST: &str = "// digest: ";

impl Origin {
    /// The comment lines for the config.
    pub fn lines(&self) -> String {
        format!("{ORIGIN_IMAGE}{}\n{ORIGIN_DIGEST}{}\n", self.reference, self.digest)
    }

    /// Read back from a config's leading comments.
    pub fn from_config(text: &str) -> Option<Origin> {
        let head = text.lines().take_while(|l| l.starts_with("//"));
        let mut reference = None;
        let mut digest = None;
        for line in head {
            if let Some(r) = line.strip_prefix(ORIGIN_IMAGE) {
                reference = Some(r.trim().to_owned());
            } else if let Some(d) = line.strip_prefix(ORIGIN_DIGEST) {
                digest = Some(d.trim().to_owned());
            }
        }
        Some(Origin { reference: reference?, digest: digest? })
    }
}

#[cfg(test)]
mod tests {
    use super::Origin;

    #[test]
    fn the_origin_reads_back_from_the_config() {
        let o = Origin { reference: "docker.io/library/debian:12".into(), digest: "sha256:ab".into() };
        let config = format!("// Made by x.\n{}(\n    dir: \"/x\",\n)\n// image: no\n", o.lines());
        assert_eq!(Origin::from_config(&config), Some(o));
        assert_eq!(Origin::from_config("(\n)\n"), None);
    }
}
