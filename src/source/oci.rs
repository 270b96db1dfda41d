//! OCI images as a sequence of tar streams: an image layout directory (as
//! skopeo and umoci write it), an `oci-archive` (the same layout in a tar
//! file), or a `docker save` tarball.
//!
//! The index leads to a manifest, the manifest to the config and the
//! layers, each named by its sha256 digest. Every blob is hashed as it is
//! read and refused when its digest or size does not match; a layer is
//! checked when its last byte has been read, so a bad one fails the create
//! and its tree is deleted with the rest of the temporary tree.
//!
//! The files of an image directory are opened beneath it without following
//! a symlink (a blob that links to `/dev/zero`, or, for root making a
//! `--system` distro from a directory a user controls, to `/etc/shadow`, is
//! refused), must be regular files, and a blob must be exactly the size its
//! descriptor declares; a stream is cut off the moment it passes it.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use distrorun_engine::resolve;
use distrorun_engine::Error;
use nix::errno::Errno;
use nix::fcntl::{open, OFlag, ResolveFlag};
use nix::sys::stat::{fstat, Mode, SFlag};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::error;
use crate::source::tarball;

/// JSON documents of an image are small; anything larger is refused
/// rather than read into memory.
const MAX_JSON: u64 = 16 << 20;

const INDEX_TYPES: &[&str] =
    &["application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json"];

#[derive(Deserialize)]
struct Index {
    manifests: Vec<Descriptor>,
}

#[derive(Deserialize, Clone)]
struct Descriptor {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    digest: String,
    size: u64,
    #[serde(default)]
    annotations: HashMap<String, String>,
    #[serde(default)]
    platform: Option<Platform>,
}

#[derive(Deserialize, Clone)]
struct Platform {
    architecture: String,
    os: String,
}

#[derive(Deserialize)]
struct Manifest {
    config: Descriptor,
    layers: Vec<Descriptor>,
}

/// One entry of a `docker save` tarball's `manifest.json`.
#[derive(Deserialize)]
struct DockerManifest {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers")]
    layers: Vec<String>,
}

#[derive(Deserialize)]
struct ImageConfig {
    rootfs: RootFs,
}

#[derive(Deserialize)]
struct RootFs {
    diff_ids: Vec<String>,
}

/// Where an image's files are: a directory, or members of a tar file.
enum Store {
    Dir(OwnedFd),
    Archive { file: Arc<File>, members: HashMap<String, (u64, u64)> },
}

/// A layer to apply: where its blob is, and what it must hash to.
pub struct Layer {
    path: String,
    digest: String,
    size: Option<u64>,
}

impl Layer {
    /// The blob's size, where the image says it.
    pub fn size(&self) -> Option<u64> {
        self.size
    }

    pub fn digest(&self) -> &str {
        &self.digest
    }
}

/// An image, resolved down to its layers, ready to be read.
pub struct Image {
    store: Store,
    pub layers: Vec<Layer>,
    /// Names the image in messages.
    pub what: String,
}

impl Image {
    /// Opens the image at `path` (a directory or a tar file) and picks the
    /// manifest by `tag`, or the only one. A compressed archive is
    /// decompressed to at most `max_bytes` (`--max-size`).
    pub fn open(path: &Path, tag: Option<&str>, max_bytes: u64) -> Result<Image, Error> {
        let what = format!("the image {}", path.display());
        let meta = std::fs::metadata(path).map_err(|e| error::io(format!("open {what}"), &e))?;
        let store = if meta.is_dir() {
            Store::Dir(
                open(path, OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
                    .map_err(|e| Error::sys(format!("open {what}"), e))?,
            )
        } else {
            Store::archive(path, &what, max_bytes)?
        };
        let mut image = Image { store, layers: Vec::new(), what };
        if image.store.has("index.json") {
            image.layers = image.oci_layers(tag)?;
        } else if image.store.has("manifest.json") {
            image.layers = image.docker_layers(tag)?;
        } else {
            return Err(Error::msg(format!(
                "{} is neither an OCI image layout (no index.json) nor a docker save tarball (no manifest.json)",
                image.what
            )));
        }
        let limit = crate::registry::manifest::MAX_LAYERS;
        if image.layers.len() > limit {
            return Err(Error::msg(format!(
                "{} has {} layers; distrorun unpacks images of at most {limit}",
                image.what,
                image.layers.len()
            )));
        }
        Ok(image)
    }

    /// A reader of layer `layer`'s blob that hashes what it reads.
    pub fn layer(&self, layer: &Layer) -> Result<Checked<Box<dyn Read + Send>>, Error> {
        let blob = self.store.open(&layer.path, &self.what, layer.size)?;
        Ok(Checked::new(blob, &layer.digest, layer.size, &layer.path))
    }

    fn oci_layers(&self, tag: Option<&str>) -> Result<Vec<Layer>, Error> {
        let index: Index = self.json("index.json", None)?;
        let mut chosen = self.choose(&index.manifests, tag)?;
        // An index may lead to another (a multi-platform image).
        for _ in 0..4 {
            let blob = self.blob(&chosen)?;
            if !INDEX_TYPES.contains(&chosen.media_type.as_str()) && !looks_like_index(&blob) {
                let manifest: Manifest = self.parse(&blob, &chosen.digest)?;
                // Read and checked, though distrorun needs nothing from it.
                self.blob(&manifest.config)?;
                return manifest
                    .layers
                    .iter()
                    .map(|d| {
                        Ok(Layer {
                            path: blob_path(&d.digest, &self.what)?,
                            digest: d.digest.clone(),
                            size: Some(d.size),
                        })
                    })
                    .collect();
            }
            let nested: Index = self.parse(&blob, &chosen.digest)?;
            chosen = self.for_this_machine(&nested.manifests)?;
        }
        Err(Error::msg(format!("{}: its indexes nest too deeply", self.what)))
    }

    fn docker_layers(&self, tag: Option<&str>) -> Result<Vec<Layer>, Error> {
        let entries: Vec<DockerManifest> = self.json("manifest.json", None)?;
        let tags = |m: &DockerManifest| m.repo_tags.clone().unwrap_or_default();
        let entry = match (tag, entries.as_slice()) {
            (None, [only]) => only,
            (Some(tag), _) => entries
                .iter()
                .find(|m| tags(m).iter().any(|t| tag_matches(t, tag)))
                .ok_or_else(|| self.no_tag(tag, &entries.iter().flat_map(tags).collect::<Vec<_>>()))?,
            (None, _) => return Err(self.many(&entries.iter().flat_map(tags).collect::<Vec<_>>())),
        };
        // The config is named by its digest, and lists the digests of the
        // uncompressed layers; `docker save` stores them uncompressed.
        let config_hex = entry.config.trim_start_matches("blobs/sha256/").trim_end_matches(".json");
        let config: ImageConfig = self.json(&entry.config, Some(&format!("sha256:{config_hex}")))?;
        if config.rootfs.diff_ids.len() != entry.layers.len() {
            return Err(Error::msg(format!(
                "{}: manifest.json lists {} layers and the config {}",
                self.what,
                entry.layers.len(),
                config.rootfs.diff_ids.len()
            )));
        }
        Ok(entry
            .layers
            .iter()
            .zip(&config.rootfs.diff_ids)
            .map(|(path, digest)| Layer { path: path.clone(), digest: digest.clone(), size: None })
            .collect())
    }

    fn choose(&self, manifests: &[Descriptor], tag: Option<&str>) -> Result<Descriptor, Error> {
        let names = |d: &Descriptor| -> Vec<String> {
            ["org.opencontainers.image.ref.name", "io.containerd.image.name"]
                .iter()
                .filter_map(|k| d.annotations.get(*k).cloned())
                .collect()
        };
        match (tag, manifests) {
            (_, []) => Err(Error::msg(format!("{} holds no image", self.what))),
            (None, [only]) => Ok(only.clone()),
            (None, _) => Err(self.many(&manifests.iter().flat_map(names).collect::<Vec<_>>())),
            (Some(tag), _) => manifests
                .iter()
                .find(|d| names(d).iter().any(|n| tag_matches(n, tag)))
                .cloned()
                .ok_or_else(|| self.no_tag(tag, &manifests.iter().flat_map(names).collect::<Vec<_>>())),
        }
    }

    fn for_this_machine(&self, manifests: &[Descriptor]) -> Result<Descriptor, Error> {
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            other => other,
        };
        manifests
            .iter()
            .find(|d| d.platform.as_ref().is_some_and(|p| p.os == "linux" && p.architecture == arch))
            .cloned()
            .ok_or_else(|| Error::msg(format!("{} has no image for linux/{arch}", self.what)))
    }

    fn many(&self, tags: &[String]) -> Error {
        Error::msg(format!("{} holds several images; choose one with --tag", self.what))
            .with_hint(format!("its tags: {}", if tags.is_empty() { "none".into() } else { tags.join(", ") }))
    }

    fn no_tag(&self, tag: &str, tags: &[String]) -> Error {
        Error::msg(format!("{} has no image tagged {tag:?}", self.what))
            .with_hint(format!("its tags: {}", if tags.is_empty() { "none".into() } else { tags.join(", ") }))
    }

    /// A blob named by `d`, read whole and checked.
    fn blob(&self, d: &Descriptor) -> Result<Vec<u8>, Error> {
        let path = blob_path(&d.digest, &self.what)?;
        if d.size > MAX_JSON {
            return Err(Error::msg(format!(
                "{}: the blob {} is too large for a manifest",
                self.what, d.digest
            )));
        }
        let blob = self.store.open(&path, &self.what, Some(d.size))?;
        let mut reader = Checked::new(blob, &d.digest, Some(d.size), &path);
        let mut bytes = Vec::new();
        reader.read_to_end(&mut bytes).map_err(|e| error::io(format!("read {path} in {}", self.what), &e))?;
        reader.verify(&self.what)?;
        Ok(bytes)
    }

    /// A JSON file of the image, checked against `digest` if given.
    fn json<T: for<'de> Deserialize<'de>>(&self, path: &str, digest: Option<&str>) -> Result<T, Error> {
        let mut reader = self.store.open(path, &self.what, None)?.take(MAX_JSON + 1);
        let mut bytes = Vec::new();
        reader.read_to_end(&mut bytes).map_err(|e| error::io(format!("read {path} in {}", self.what), &e))?;
        if let Some(digest) = digest {
            let got = format!("sha256:{:x}", Sha256::digest(&bytes));
            if got != digest {
                return Err(Error::msg(format!(
                    "{}: {path} does not match its digest {digest} (it hashes to {got})",
                    self.what
                )));
            }
        }
        self.parse(&bytes, path)
    }

    fn parse<T: for<'de> Deserialize<'de>>(&self, bytes: &[u8], name: &str) -> Result<T, Error> {
        serde_json::from_slice(bytes)
            .map_err(|e| Error::msg(format!("{}: {name} is not valid: {e}", self.what)))
    }
}

/// `--tag` names an image as its full name, without the registry
/// (`docker.io/` is implied by docker), or by the tag alone.
fn tag_matches(name: &str, tag: &str) -> bool {
    name == tag
        || name.strip_suffix(tag).is_some_and(|rest| rest.ends_with('/'))
        || (!tag.contains(':')
            && name.rsplit_once(':').is_some_and(|(_, short)| short == tag && !short.contains('/')))
}

fn looks_like_index(blob: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(blob)
        .is_ok_and(|v| v.get("manifests").is_some() && v.get("layers").is_none())
}

/// `blobs/sha256/HEX` for a digest, which must be sha256 and well formed:
/// it becomes a path.
fn blob_path(digest: &str, what: &str) -> Result<String, Error> {
    match digest.strip_prefix("sha256:") {
        Some(hex)
            if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) =>
        {
            Ok(format!("blobs/sha256/{hex}"))
        }
        _ => Err(Error::msg(format!(
            "{what}: unsupported or malformed digest {digest:?}; distrorun reads sha256 digests"
        ))),
    }
}

impl Store {
    /// Indexes the members of an uncompressed tar file by path, so that
    /// blobs can be read in the order the manifest lists them.
    fn archive(path: &Path, what: &str, max_bytes: u64) -> Result<Store, Error> {
        let file = open(path, OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC, Mode::empty())
            .map_err(|e| Error::sys(format!("open {what}"), e))
            .and_then(|fd| regular(fd, what))?;
        let mut head = [0u8; 8];
        let n = file.read_at(&mut head, 0).unwrap_or(0);
        let file = if tarball::Compression::detect(&head[..n]) == tarball::Compression::None {
            file
        } else {
            super::archive::decompressed_copy(file, what, max_bytes)?
        };
        // The tar crate quotes bytes of the header it choked on as they are:
        // escaped, so that the refusal stays one line whatever they hold.
        let corrupt = |e: io::Error| {
            Error::msg(format!("{what} is corrupt or truncated: {}", e.to_string().escape_debug()))
        };
        let mut members = HashMap::new();
        let mut archive = tar::Archive::new(&file);
        for entry in archive.entries_with_seek().map_err(corrupt)? {
            let entry = entry.map_err(corrupt)?;
            if entry.header().entry_type().is_file() {
                let name = String::from_utf8_lossy(&entry.path_bytes()).trim_start_matches("./").to_owned();
                members.insert(name, (entry.raw_file_position(), entry.size()));
            }
        }
        Ok(Store::Archive { file: Arc::new(file), members })
    }

    fn has(&self, path: &str) -> bool {
        match self {
            Store::Dir(dir) => beneath(dir, path).is_ok_and(|fd| {
                fstat(&fd)
                    .is_ok_and(|st| SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFREG)
            }),
            Store::Archive { members, .. } => members.contains_key(path),
        }
    }

    /// A file of the image; a blob of `size` bytes when that is given.
    fn open(&self, path: &str, what: &str, size: Option<u64>) -> Result<Box<dyn Read + Send>, Error> {
        if path.split('/').any(|c| c == ".." || c.is_empty()) {
            return Err(Error::msg(format!("{what}: refusing the path {path:?}")));
        }
        let (reader, len): (Box<dyn Read + Send>, u64) = match self {
            Store::Dir(dir) => {
                let file = beneath(dir, path)
                    .map_err(|e| match e {
                        Errno::ELOOP | Errno::EXDEV => Error::msg(format!(
                            "{what}: {path} is a symbolic link; distrorun reads only the image's own files"
                        )),
                        e => Error::sys(format!("open {path} in {what}"), e),
                    })
                    .and_then(|fd| regular(fd, &format!("{path} in {what}")))?;
                let len = file.metadata().map_or(0, |m| m.len());
                (Box::new(file), len)
            }
            Store::Archive { file, members } => {
                let &(start, len) =
                    members.get(path).ok_or_else(|| Error::msg(format!("{what} has no {path}")))?;
                (Box::new(Slice { file: file.clone(), pos: start, end: start + len }), len)
            }
        };
        match size {
            Some(size) if size != len => Err(Error::msg(format!(
                "{what}: the blob {path} has {len} bytes where its descriptor says {size}"
            ))),
            _ => Ok(reader),
        }
    }
}

/// `path` beneath the image directory `dir`, through no symlink
/// (`openat2`, or its walk before Linux 5.6).
fn beneath(dir: &OwnedFd, path: &str) -> Result<OwnedFd, Errno> {
    resolve::open(
        dir,
        Path::new(path),
        OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
        ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS | ResolveFlag::RESOLVE_NO_MAGICLINKS,
    )
}

/// `fd` as a file, if it is a regular one: a FIFO or a device would never
/// end, or never start.
fn regular(fd: OwnedFd, what: &str) -> Result<File, Error> {
    let st = fstat(&fd).map_err(|e| Error::sys(format!("examine {what}"), e))?;
    if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFREG {
        return Err(Error::msg(format!("{what} is not a regular file")));
    }
    Ok(File::from(fd))
}

/// A member of a tar file, read in place.
struct Slice {
    file: Arc<File>,
    pos: u64,
    end: u64,
}

impl Read for Slice {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = usize::try_from(self.end - self.pos).unwrap_or(usize::MAX);
        let want = buf.len().min(left);
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// Hashes and counts what passes through it.
pub struct Checked<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
    digest: String,
    size: Option<u64>,
    name: String,
}

impl<R: Read> Checked<R> {
    fn new(inner: R, digest: &str, size: Option<u64>, name: &str) -> Checked<R> {
        Checked {
            inner,
            hasher: Sha256::new(),
            count: 0,
            digest: digest.to_owned(),
            size,
            name: name.to_owned(),
        }
    }

    /// Reads what is left, then compares the digest and the size.
    pub fn verify(mut self, what: &str) -> Result<(), Error> {
        io::copy(&mut self, &mut io::sink())
            .map_err(|e| error::io(format!("read {} in {what}", self.name), &e))?;
        let got = format!("sha256:{:x}", self.hasher.finalize());
        if got != self.digest {
            return Err(Error::msg(format!(
                "{what}: the blob {} does not match its digest {} (it hashes to {got})",
                self.name, self.digest
            )));
        }
        match self.size {
            Some(size) if size != self.count => Err(Error::msg(format!(
                "{what}: the blob {} has {} bytes where the manifest says {size}",
                self.name, self.count
            ))),
            _ => Ok(()),
        }
    }
}

impl<R: Read> Read for Checked<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        match self.size {
            Some(size) if self.count > size => Err(io::Error::other(format!(
                "the blob {} is longer than the {size} bytes its descriptor declares",
                self.name
            ))),
            _ => Ok(n),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::blob_path;

    #[test]
    fn tags_match_by_full_name_short_name_or_tag() {
        use super::tag_matches;
        assert!(tag_matches("docker.io/distrorun/test:t", "distrorun/test:t"));
        assert!(tag_matches("docker.io/distrorun/test:t", "docker.io/distrorun/test:t"));
        assert!(tag_matches("docker.io/distrorun/test:t", "t"));
        assert!(tag_matches("latest", "latest"));
        assert!(!tag_matches("docker.io/distrorun/test:t", "test:t2"));
        assert!(!tag_matches("docker.io/distrorun/xtest:t", "test:t"));
    }

    #[test]
    fn digests_become_paths_only_when_well_formed() {
        let hex = "a".repeat(64);
        assert_eq!(blob_path(&format!("sha256:{hex}"), "t").unwrap(), format!("blobs/sha256/{hex}"));
        for bad in ["sha256:../../etc/passwd", "sha512:abc", &format!("sha256:{}", "A".repeat(64)), "sha256:"]
        {
            assert!(blob_path(bad, "t").is_err(), "{bad}");
        }
    }
}
