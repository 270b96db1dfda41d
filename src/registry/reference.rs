//! Image references as podman reads them: `registry/repo:tag`, `repo:tag`,
//! `repo@sha256:HEX`, with unqualified names resolved through
//! `unqualified-search-registries` in registries.conf.

use std::path::{Path, PathBuf};

use distrorun_engine::Error;

/// Docker Hub's name in references, and the host its API is served from.
pub const DOCKER_HUB: &str = "docker.io";
const DOCKER_HUB_API: &str = "registry-1.docker.io";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// `host[:port]` as written (docker.io for Docker Hub).
    pub registry: String,
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

impl Reference {
    /// Parses `text`; a name without a registry gets `search`'s first entry,
    /// else docker.io, and Docker Hub's one-part names get `library/`.
    pub fn parse(text: &str, search: &[String]) -> Result<Reference, Error> {
        let bad = |why: &str| Error::msg(format!("{text:?} is not an image reference: {why}"));
        if text.is_empty() || text.len() > 4096 {
            return Err(bad("it is empty or too long"));
        }
        let (rest, digest) = match text.split_once('@') {
            Some((rest, digest)) => {
                check_digest(digest).map_err(|()| bad("the digest is not sha256:<64 hex digits>"))?;
                (rest, Some(digest.to_owned()))
            }
            None => (text, None),
        };
        let (name, tag) = match rest.rfind(':') {
            Some(i) if !rest[i..].contains('/') => (&rest[..i], Some(rest[i + 1..].to_owned())),
            _ => (rest, None),
        };
        if let Some(tag) = &tag {
            let ok = !tag.is_empty()
                && tag.len() <= 128
                && tag.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
                && !tag.starts_with(['.', '-']);
            if !ok {
                return Err(bad("the tag may hold letters, digits, '_', '.' and '-' only"));
            }
        }
        let (registry, path) = match name.split_once('/') {
            Some((first, path)) if first.contains(['.', ':']) || first == "localhost" => {
                (first.to_owned(), path.to_owned())
            }
            _ => (search.first().cloned().unwrap_or_else(|| DOCKER_HUB.to_owned()), name.to_owned()),
        };
        if registry.is_empty()
            || !registry.bytes().all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
        {
            return Err(bad("the registry is not a host name with an optional port"));
        }
        let path =
            if registry == DOCKER_HUB && !path.contains('/') { format!("library/{path}") } else { path };
        let component_ok = |c: &str| {
            !c.is_empty()
                && c.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
                && c.starts_with(|ch: char| ch.is_ascii_alphanumeric())
                && c.ends_with(|ch: char| ch.is_ascii_alphanumeric())
        };
        if path.len() > 255 || !path.split('/').all(component_ok) {
            return Err(bad("a repository name is lowercase letters, digits and separators"));
        }
        let tag = if tag.is_none() && digest.is_none() { Some("latest".to_owned()) } else { tag };
        Ok(Reference { registry, repository: path, tag, digest })
    }

    /// The host the API is served from.
    pub fn api_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            DOCKER_HUB_API
        } else {
            &self.registry
        }
    }

    /// What to ask `/v2/REPO/manifests/` for: the digest when there is one.
    pub fn manifest_key(&self) -> &str {
        self.digest.as_deref().or(self.tag.as_deref()).unwrap_or("latest")
    }
}

impl std::fmt::Display for Reference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

pub fn check_digest(digest: &str) -> Result<(), ()> {
    match digest.strip_prefix("sha256:") {
        Some(hex)
            if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) =>
        {
            Ok(())
        }
        _ => Err(()),
    }
}

/// `unqualified-search-registries` as podman reads it: the user's
/// registries.conf when there is one, else the system's.
pub fn search_registries() -> Vec<String> {
    let user = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
        .map(|dir| dir.join("containers/registries.conf"));
    for file in user.iter().map(PathBuf::as_path).chain([Path::new("/etc/containers/registries.conf")]) {
        if let Ok(text) = std::fs::read_to_string(file) {
            return search_list(&text);
        }
    }
    Vec::new()
}

/// The value of `unqualified-search-registries`, a TOML array of strings
/// at the top level (before the first table), possibly over several lines.
fn search_list(text: &str) -> Vec<String> {
    let mut value = String::new();
    let mut collecting = false;
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        if collecting {
            value.push_str(line);
        } else {
            if line.starts_with('[') {
                break;
            }
            let Some((key, rest)) = line.split_once('=') else { continue };
            if key.trim() != "unqualified-search-registries" {
                continue;
            }
            collecting = true;
            value.push_str(rest);
        }
        if value.contains(']') {
            break;
        }
    }
    let Some(inner) = value.trim().strip_prefix('[').and_then(|v| v.split(']').next()) else {
        return Vec::new();
    };
    inner
        .split(',')
        .map(|s| s.trim().trim_matches(|c| c == '"' || c == '\'').to_owned())
        .filter(|s| !s.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str, search: &[&str]) -> String {
        let search: Vec<String> = search.iter().map(|s| (*s).to_owned()).collect();
        Reference::parse(text, &search).map_or_else(|e| format!("error: {e}"), |r| r.to_string())
    }

    #[test]
    fn references_resolve_as_podman_resolves_them() {
        assert_eq!(parsed("debian", &[]), "docker.io/library/debian:latest");
        assert_eq!(parsed("debian:12", &[]), "docker.io/library/debian:12");
        assert_eq!(parsed("user/app:1", &[]), "docker.io/user/app:1");
        assert_eq!(
            parsed("ubi9/ubi:9.4", &["registry.access.redhat.com", "docker.io"]),
            "registry.access.redhat.com/ubi9/ubi:9.4"
        );
        assert_eq!(parsed("127.0.0.1:5000/x/y", &[]), "127.0.0.1:5000/x/y:latest");
        assert_eq!(parsed("localhost/x:t", &[]), "localhost/x:t");
        let hex = "0".repeat(64);
        assert_eq!(parsed(&format!("quay.io/a/b@sha256:{hex}"), &[]), format!("quay.io/a/b@sha256:{hex}"));
        for bad in ["", "UPPER/case", "a/b:t@sha256:xyz", "a//b", "a:b:c", "reg.io/-x"] {
            assert!(parsed(bad, &[]).starts_with("error"), "{bad}");
        }
    }

    #[test]
    fn search_registries_are_read_from_the_top_level_array() {
        let conf = "# c\nunqualified-search-registries = [\"registry.fedoraproject.org\",\n 'docker.io']\n[[registry]]\nunqualified-search-registries = [\"no\"]\n";
        assert_eq!(search_list(conf), ["registry.fedoraproject.org", "docker.io"]);
        assert!(search_list("[aliases]\nunqualified-search-registries = [\"x\"]").is_empty());
    }
}
