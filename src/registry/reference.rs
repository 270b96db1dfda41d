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

/// The user's `containers` config directory.
fn user_containers_dir() -> Option<PathBuf> {
    std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
        .map(|dir| dir.join("containers"))
}

/// The text of registries.conf as podman picks it: the user's when there
/// is one, else the system's.
fn main_registries_conf() -> Option<String> {
    let user = user_containers_dir().map(|d| d.join("registries.conf"));
    let text = user
        .iter()
        .map(PathBuf::as_path)
        .chain([Path::new("/etc/containers/registries.conf")])
        .find_map(|file| std::fs::read_to_string(file).ok());
    text
}

/// `unqualified-search-registries` as podman reads it.
pub fn search_registries() -> Vec<String> {
    main_registries_conf().map(|text| search_list(&text)).unwrap_or_default()
}

/// The locations registries.conf marks `insecure = true` (and the v1
/// `[registries.insecure]` list), from the main file and the drop-ins of
/// `registries.conf.d`, the system's and the user's.
pub fn insecure_registries() -> Vec<String> {
    let mut texts: Vec<String> = main_registries_conf().into_iter().collect();
    let dirs = [Some(PathBuf::from("/etc/containers")), user_containers_dir()];
    for dir in dirs.into_iter().flatten() {
        let Ok(entries) = std::fs::read_dir(dir.join("registries.conf.d")) else { continue };
        let mut files: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "conf"))
            .collect();
        files.sort();
        texts.extend(files.iter().filter_map(|f| std::fs::read_to_string(f).ok()));
    }
    texts.iter().flat_map(|t| insecure_list(t)).collect()
}

/// The insecure locations of one registries.conf: each `[[registry]]`
/// table's `location` (or `prefix`) where it says `insecure = true`, and
/// the v1 `[registries.insecure]` `registries` array.
fn insecure_list(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut table = String::new();
    let (mut location, mut insecure) = (None::<String>, false);
    let flush = |found: &mut Vec<String>, location: &mut Option<String>, insecure: &mut bool| {
        if let Some(l) = location.take().filter(|_| *insecure) {
            found.push(l);
        }
        *insecure = false;
    };
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.starts_with('[') {
            flush(&mut found, &mut location, &mut insecure);
            line.trim_matches(|c| c == '[' || c == ']').trim().clone_into(&mut table);
            continue;
        }
        let Some((key, value)) = line.split_once('=') else { continue };
        let (key, value) = (key.trim(), value.trim());
        let string = || value.trim_matches(|c| c == '"' || c == '\'').to_owned();
        match (table.as_str(), key) {
            ("registry", "location") => location = Some(string()),
            ("registry", "prefix") if location.is_none() => location = Some(string()),
            ("registry", "insecure") => insecure = value == "true",
            ("registries.insecure", "registries") => found.extend(string_array(value)),
            _ => {}
        }
    }
    flush(&mut found, &mut location, &mut insecure);
    found
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
    string_array(&value)
}

/// A TOML array of strings on one line, `["a", 'b']`.
fn string_array(value: &str) -> Vec<String> {
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
    fn insecure_locations_are_read_from_registry_tables_and_the_v1_list() {
        let conf = "[[registry]]\nlocation = \"127.0.0.1:5612\"\ninsecure = true\n[[registry]]\nlocation = \"quay.io\"\n[[registry]]\nprefix = \"lab.example/x\"\ninsecure = true # by hand\n[registries.insecure]\nregistries = ['old.example:5000']\n";
        assert_eq!(insecure_list(conf), ["127.0.0.1:5612", "lab.example/x", "old.example:5000"]);
        assert!(insecure_list("insecure = true\nlocation = \"x\"\n").is_empty());
    }

    #[test]
    fn search_registries_are_read_from_the_top_level_array() {
        let conf = "# c\nunqualified-search-registries = [\"registry.fedoraproject.org\",\n 'docker.io']\n[[registry]]\nunqualified-search-registries = [\"no\"]\n";
        assert_eq!(search_list(conf), ["registry.fedoraproject.org", "docker.io"]);
        assert!(search_list("[aliases]\nunqualified-search-registries = [\"x\"]").is_empty());
    }
}
