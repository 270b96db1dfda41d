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
pub use transport::Network;

impl Remote {
    /// Resolves `text` and fetches its manifest, as `network` allows.
    pub fn open(text: &str, network: Network) -> Result<Remote, Error> {
        let reference = Reference::parse(text, &reference::search_registries())?;
        let what = format!("the image {reference}");
        let client = Client::connect(&reference, network)?;
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
    (well_formed && first == first_expected)
        .then(|| Origin { reference: reference.to_owned(), digest: digest.to_owned() })
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
