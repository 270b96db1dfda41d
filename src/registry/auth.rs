//! Who the registry is told the caller is: credentials from the files
//! podman and docker keep them in, and bearer tokens fetched as the
//! registry's `WWW-Authenticate` challenge says.

use std::fmt::Write as _;
use std::path::PathBuf;

use base64::Engine as _;
use distrorun_engine::Error;
use serde::Deserialize;

use super::reference::{Reference, DOCKER_HUB};

/// A user name and password (or identity token) for one registry.
#[derive(Clone)]
pub struct Credentials {
    pub user: String,
    pub secret: String,
    /// The file they came from, for messages.
    pub from: PathBuf,
}

impl Credentials {
    pub fn basic(&self) -> String {
        let pair = format!("{}:{}", self.user, self.secret);
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(pair))
    }
}

#[derive(Deserialize)]
struct AuthFile {
    #[serde(default)]
    auths: std::collections::HashMap<String, AuthEntry>,
}

#[derive(Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
}

/// The files podman and docker read, in podman's order.
fn auth_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    if let Some(file) = std::env::var_os("REGISTRY_AUTH_FILE") {
        files.push(PathBuf::from(file));
    }
    if let Some(dir) = std::env::var_os("XDG_RUNTIME_DIR") {
        files.push(PathBuf::from(dir).join("containers/auth.json"));
    }
    if let Some(home) = std::env::var_os("HOME").map(PathBuf::from) {
        let config = std::env::var_os("XDG_CONFIG_HOME").map_or_else(|| home.join(".config"), PathBuf::from);
        files.push(config.join("containers/auth.json"));
        let docker = std::env::var_os("DOCKER_CONFIG").map_or_else(|| home.join(".docker"), PathBuf::from);
        files.push(docker.join("config.json"));
    }
    files
}

/// The keys a registry's entry may be stored under: podman's
/// `host/repository` and `host`, and docker's URL forms.
fn keys(reference: &Reference) -> Vec<String> {
    let host = &reference.registry;
    let mut keys = Vec::new();
    let mut repo = reference.repository.as_str();
    loop {
        keys.push(format!("{host}/{repo}"));
        match repo.rsplit_once('/') {
            Some((parent, _)) => repo = parent,
            None => break,
        }
    }
    keys.extend([host.clone(), format!("https://{host}"), format!("http://{host}")]);
    if host == DOCKER_HUB {
        keys.extend(["https://index.docker.io/v1/".to_owned(), "index.docker.io".to_owned()]);
    }
    keys
}

/// The first stored credentials for the reference's registry. A file that
/// cannot be parsed is an error: silently pulling anonymously instead
/// would hide the problem behind an "unauthorized".
pub fn find(reference: &Reference) -> Result<Option<Credentials>, Error> {
    let keys = keys(reference);
    for file in auth_files() {
        let Ok(text) = std::fs::read(&file) else { continue };
        let parsed: AuthFile = serde_json::from_slice(&text).map_err(|e| {
            Error::msg(format!("cannot read the registry credentials in {}: {e}", file.display()))
        })?;
        for key in &keys {
            let Some(entry) = parsed.auths.get(key) else { continue };
            // Entries without `auth` defer to a credential helper, which
            // distrorun does not run.
            let Some(auth) = entry.auth.as_deref().filter(|a| !a.is_empty()) else { continue };
            let bad = || {
                Error::msg(format!(
                    "the registry credentials for {key} in {} are not base64 of USER:PASSWORD",
                    file.display()
                ))
            };
            let decoded = base64::engine::general_purpose::STANDARD.decode(auth.trim()).map_err(|_| bad())?;
            let text = String::from_utf8(decoded).map_err(|_| bad())?;
            let (user, secret) = text.split_once(':').ok_or_else(bad)?;
            return Ok(Some(Credentials { user: user.to_owned(), secret: secret.to_owned(), from: file }));
        }
    }
    Ok(None)
}

/// A `WWW-Authenticate` challenge.
#[derive(Debug, PartialEq, Eq)]
pub enum Challenge {
    Basic,
    Bearer { realm: String, service: Option<String>, scope: Option<String> },
}

/// Parses `Bearer realm="...",service="...",scope="..."` or `Basic ...`.
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, params) = header.split_once(' ').unwrap_or((header, ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return Some(Challenge::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let mut realm = None;
    let mut service = None;
    let mut scope = None;
    let mut rest = params.trim();
    while !rest.is_empty() {
        let (key, after) = rest.split_once('=')?;
        let key = key.trim().trim_start_matches(',').trim().to_ascii_lowercase();
        let after = after.trim_start();
        let (value, next) = if let Some(quoted) = after.strip_prefix('"') {
            let end = quoted.find('"')?;
            (&quoted[..end], &quoted[end + 1..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (&after[..end], &after[end..])
        };
        match key.as_str() {
            "realm" => realm = Some(value.to_owned()),
            "service" => service = Some(value.to_owned()),
            "scope" => scope = Some(value.to_owned()),
            _ => {}
        }
        rest = next.trim_start().trim_start_matches(',').trim_start();
    }
    Some(Challenge::Bearer { realm: realm?, service, scope })
}

/// The JSON a token endpoint answers with.
#[derive(Deserialize)]
pub struct TokenAnswer {
    #[serde(default)]
    pub token: Option<String>,
    #[serde(default)]
    pub access_token: Option<String>,
}

/// `application/x-www-form-urlencoded` escaping for the token query.
pub fn query_escape(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_are_parsed_as_registries_send_them() {
        assert_eq!(
            parse_challenge(
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/debian:pull""#
            ),
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/debian:pull".into()),
            })
        );
        assert_eq!(parse_challenge(r#"Basic realm="Registry Realm""#), Some(Challenge::Basic));
        assert_eq!(parse_challenge("Bearer service=x"), None);
        assert_eq!(parse_challenge("Negotiate"), None);
    }

    #[test]
    fn credentials_are_looked_up_from_the_repository_to_the_host() {
        let r = Reference::parse("docker.io/a/b:1", &[]).unwrap();
        let k = keys(&r);
        assert_eq!(&k[..3], ["docker.io/a/b", "docker.io/a", "docker.io"]);
        assert!(k.contains(&"https://index.docker.io/v1/".to_owned()));
    }
}
