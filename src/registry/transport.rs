//! HTTP to one registry, and to the token services and blob stores it
//! sends the client to. Every request is checked against one policy, per
//! endpoint (scheme, host and port), whoever named the URL:
//!
//! - TLS is verified against the system's CA store (or `SSL_CERT_FILE`).
//!   Plain HTTP and certificates that do not verify are accepted only from
//!   the image's own registry with `--insecure-registry`, or from a host
//!   that registries.conf marks `insecure = true`; never from a token realm
//!   or a redirect target because the registry named it.
//! - Redirects are followed by hand, so that each hop meets the same
//!   policy: none from HTTPS to plain HTTP, and no `Authorization` header
//!   past the endpoint it was meant for.
//! - Credentials go to the registry itself and to a token realm whose
//!   connection is at least as strong as the registry's, nowhere else.
//! - Manifests and tokens have an overall deadline (`--timeout`); blobs a
//!   least speed (`--speed-limit` over `--speed-time`, checked in `blob`).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Read;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use distrorun_engine::Error;
use url::Url;

use super::auth::{self, Challenge, Credentials};
use super::reference::{self, Reference};

/// The largest manifest or index read, as containers/image allows.
pub const MAX_MANIFEST: u64 = 4 << 20;
/// The largest token answer read.
const MAX_TOKEN: u64 = 1 << 20;
/// Hops followed for one request.
const MAX_REDIRECTS: usize = 8;

/// How the network may be used: which registry may skip TLS checks, and
/// how long a transfer may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    /// `--insecure-registry`: the image's own registry (its host and port)
    /// may speak plain HTTP or show a certificate that does not verify.
    pub insecure: bool,
    /// `--timeout`: the most one manifest, index or token request may take,
    /// from connecting to its last byte.
    pub timeout: Duration,
    /// `--speed-limit` and `--speed-time`: a blob download that brings fewer
    /// than `speed_limit` bytes a second for `speed_time` is given up.
    pub speed_limit: u64,
    pub speed_time: Duration,
}

impl Default for Network {
    fn default() -> Network {
        Network {
            insecure: false,
            timeout: Duration::from_secs(60),
            speed_limit: 1024,
            speed_time: Duration::from_secs(30),
        }
    }
}

/// Where a request goes: the unit that TLS checks, credentials and the
/// insecure exceptions are scoped to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Endpoint {
    pub https: bool,
    pub host: String,
    pub port: u16,
}

impl Endpoint {
    fn of(url: &Url) -> Result<Endpoint, String> {
        let https = match url.scheme() {
            "https" => true,
            "http" => false,
            other => return Err(format!("{url} is not an HTTP or HTTPS URL ({other})")),
        };
        let host = url.host_str().filter(|h| !h.is_empty()).ok_or_else(|| format!("{url} names no host"))?;
        let port = url.port_or_known_default().unwrap_or(if https { 443 } else { 80 });
        Ok(Endpoint { https, host: host.to_ascii_lowercase(), port })
    }

    fn authority(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// How much a connection to an endpoint can be trusted, weakest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Security {
    Plain,
    Unverified,
    Verified,
}

pub struct Client {
    /// `https://host[:port]` or, for an insecure registry that speaks no
    /// TLS, `http://...`.
    pub base: String,
    registry: Endpoint,
    pub reference: Reference,
    pub network: Network,
    /// Hosts registries.conf marks insecure.
    insecure_hosts: Vec<String>,
    credentials: Option<Credentials>,
    /// The `Authorization` value that worked last, for the registry only.
    authorization: Mutex<Option<String>>,
    agents: Mutex<HashMap<Endpoint, ureq::Agent>>,
    verified: OnceLock<Result<Arc<rustls::ClientConfig>, String>>,
}

/// A response, or the status the registry refused with.
pub type Response = ureq::Response;

/// Why a request failed.
pub enum Failure {
    Status(u16, String),
    Transport(String),
    Auth(String),
    /// The policy above refused a hop, or the deadline passed.
    Refused(String),
}

impl Failure {
    /// The failure as a message about `what`, for the cases with nothing
    /// more particular to say.
    pub fn message(self, what: &str) -> String {
        match self {
            Failure::Status(code, msg) => {
                format!("the registry answered {code} for {what} {msg}").trim_end().to_owned()
            }
            Failure::Transport(why) => format!("cannot fetch {what}: {why}"),
            Failure::Auth(why) | Failure::Refused(why) => why,
        }
    }
}

/// What a hop of a request ended in.
enum Hop {
    Done(Response),
    Status(u16, Response),
}

impl Client {
    /// Reaches the registry of `reference` and learns how it wants to be
    /// spoken to (scheme and authentication), by `GET /v2/`.
    pub fn connect(reference: &Reference, network: Network) -> Result<Client, Error> {
        let host = reference.api_host().to_owned();
        let https_base = format!("https://{host}");
        let registry = Url::parse(&https_base)
            .map_err(|e| e.to_string())
            .and_then(|u| Endpoint::of(&u))
            .map_err(|why| Error::msg(format!("the registry {host} is not a host name: {why}")))?;
        let client = Client {
            base: https_base,
            registry,
            reference: reference.clone(),
            network,
            insecure_hosts: reference::insecure_registries(),
            credentials: auth::find(reference)?,
            authorization: Mutex::new(None),
            agents: Mutex::new(HashMap::new()),
            verified: OnceLock::new(),
        };
        let https_failed = match client.ping() {
            Ok(()) => return Ok(client),
            Err(Ping::Tls(why)) if client.insecure_allows(&client.registry) => why,
            Err(Ping::Tls(why)) => {
                return Err(Error::msg(format!(
                    "cannot reach the registry {host} over HTTPS: {why}; plain HTTP and unverified certificates need --insecure-registry"
                )))
            }
            Err(Ping::Other(why)) => return Err(Error::msg(format!("cannot reach the registry {host}: {why}"))),
        };
        let client = Client {
            base: format!("http://{host}"),
            registry: Endpoint { https: false, ..client.registry.clone() },
            ..client
        };
        match client.ping() {
            Ok(()) => Ok(client),
            Err(Ping::Tls(e) | Ping::Other(e)) => Err(Error::msg(format!(
                "cannot reach the registry {host} over HTTPS ({https_failed}) or HTTP ({e})"
            ))),
        }
    }

    fn ping(&self) -> Result<(), Ping> {
        let url = format!("{}/v2/", self.base);
        match self.request(&url, &[], None, Some(self.deadline())) {
            Ok(Hop::Done(_) | Hop::Status(401, _)) => Ok(()),
            Ok(Hop::Status(code, r)) => {
                Err(Ping::Other(format!("GET /v2/ answered {code} {}", r.status_text())))
            }
            Err(Failure::Transport(text)) => {
                // ureq files TLS failures under "connection failed" too.
                let lower = text.to_ascii_lowercase();
                if lower.contains("tls") || lower.contains("certificate") || lower.contains("handshake") {
                    Err(Ping::Tls(text))
                } else {
                    Err(Ping::Other(text))
                }
            }
            Err(f) => Err(Ping::Other(f.message("/v2/"))),
        }
    }

    fn deadline(&self) -> Instant {
        Instant::now() + self.network.timeout
    }

    /// `GET path` (below the base URL), with `Range: bytes=FROM-` when
    /// `from` is not 0, authenticating as the registry asks. Manifests
    /// and indexes (`deadline`) must arrive whole by `--timeout`; a blob's
    /// pace is checked by its reader. Returns the response and the URL it
    /// finally came from.
    pub fn get(
        &self,
        path: &str,
        accept: &str,
        from: u64,
        deadline: Option<Instant>,
    ) -> Result<(Response, String), Failure> {
        let url = format!("{}{path}", self.base);
        let range = format!("bytes={from}-");
        let mut headers = vec![("Accept", accept)];
        if from > 0 {
            headers.push(("Range", range.as_str()));
        }
        let send = |authorization: Option<&str>| {
            let auth = authorization.map(|value| (&self.registry, value));
            self.request(&url, &headers, auth, deadline)
        };
        let current = self.authorization.lock().map_or(None, |a| a.clone());
        let r = match send(current.as_deref())? {
            Hop::Done(r) => return Ok(done(r)),
            Hop::Status(401, r) => r,
            Hop::Status(code, r) => return Err(Failure::Status(code, body_text(r))),
        };
        let value = self.answer(r.header("WWW-Authenticate"))?;
        if let Ok(mut slot) = self.authorization.lock() {
            slot.clone_from(&Some(value.clone()));
        }
        match send(Some(&value))? {
            Hop::Done(r) => Ok(done(r)),
            Hop::Status(401, _) => Err(Failure::Auth(match &self.credentials {
                Some(c) => format!(
                    "the registry {} refused the credentials from {}",
                    self.reference.api_host(),
                    c.from.display()
                ),
                None => format!("the registry {} refused an anonymous pull", self.reference.api_host()),
            })),
            Hop::Status(code, r) => Err(Failure::Status(code, body_text(r))),
        }
    }

    /// A JSON document of at most `max` bytes, read whole by `--timeout`.
    pub fn get_json(&self, path: &str, accept: &str, max: u64) -> Result<Vec<u8>, Failure> {
        let deadline = self.deadline();
        let (response, url) = self.get(path, accept, 0, Some(deadline))?;
        self.read_whole(response, &url, max, deadline)
    }

    fn read_whole(
        &self,
        response: Response,
        url: &str,
        max: u64,
        deadline: Instant,
    ) -> Result<Vec<u8>, Failure> {
        let mut bytes = Vec::new();
        if let Err(e) = response.into_reader().take(max + 1).read_to_end(&mut bytes) {
            return Err(if Instant::now() >= deadline {
                self.late(url)
            } else {
                Failure::Transport(format!("cannot read {url}: {e}"))
            });
        }
        if bytes.len() as u64 > max {
            return Err(Failure::Refused(format!(
                "{url} sent more than {} (the most distrorun reads)",
                human(max)
            )));
        }
        Ok(bytes)
    }

    fn late(&self, url: &str) -> Failure {
        Failure::Refused(format!(
            "{url} did not answer in full within {} s (--timeout)",
            self.network.timeout.as_secs()
        ))
    }

    /// One request, following redirects by hand so that each hop meets the
    /// policy. `auth` is a header value and the one endpoint it may go to.
    fn request(
        &self,
        url: &str,
        headers: &[(&str, &str)],
        auth: Option<(&Endpoint, &str)>,
        deadline: Option<Instant>,
    ) -> Result<Hop, Failure> {
        let mut url = Url::parse(url).map_err(|e| Failure::Refused(format!("{url} is not a URL: {e}")))?;
        for _ in 0..MAX_REDIRECTS {
            let endpoint = Endpoint::of(&url).map_err(Failure::Refused)?;
            let mut request = self.agent(&endpoint, &url)?.request_url("GET", &url);
            for (name, value) in headers {
                request = request.set(name, value);
            }
            if let Some((_, value)) = auth.filter(|(to, _)| **to == endpoint) {
                request = request.set("Authorization", value);
            }
            if let Some(deadline) = deadline {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(self.late(url.as_str()));
                }
                request = request.timeout(left);
            }
            let response = match request.call() {
                Ok(r) => r,
                Err(ureq::Error::Status(code, r)) => return Ok(Hop::Status(code, r)),
                Err(ureq::Error::Transport(_)) if deadline.is_some_and(|d| Instant::now() >= d) => {
                    return Err(self.late(url.as_str()))
                }
                Err(ureq::Error::Transport(t)) => return Err(Failure::Transport(transport_text(&t))),
            };
            if !(300..400).contains(&response.status()) {
                return Ok(Hop::Done(response));
            }
            url = redirect_target(&url, response.header("Location"))?;
        }
        Err(Failure::Refused(format!("{url}: more than {MAX_REDIRECTS} redirects")))
    }

    /// The agent for an endpoint, refusing plain HTTP where the policy does.
    fn agent(&self, endpoint: &Endpoint, url: &Url) -> Result<ureq::Agent, Failure> {
        if !endpoint.https && !self.insecure_allows(endpoint) {
            return Err(Failure::Refused(format!(
                "refusing plain HTTP to {url}: only a registry named with --insecure-registry, or marked insecure in registries.conf, is spoken to without TLS"
            )));
        }
        let mut agents =
            self.agents.lock().map_err(|_| Failure::Refused("the connection pool is poisoned".into()))?;
        if let Some(agent) = agents.get(endpoint) {
            return Ok(agent.clone());
        }
        let tls = if !endpoint.https {
            None
        } else if self.insecure_allows(endpoint) {
            Some(unverified_config().map_err(|e| Failure::Transport(e.to_string()))?)
        } else {
            let config =
                self.verified.get_or_init(|| verified_config().map(Arc::new).map_err(|e| e.to_string()));
            Some(config.clone().map_err(Failure::Transport)?)
        };
        let agent = build_agent(endpoint, tls, self.network.speed_time)
            .map_err(|e| Failure::Transport(e.to_string()))?;
        agents.insert(endpoint.clone(), agent.clone());
        Ok(agent)
    }

    /// Whether the endpoint may speak plain HTTP or show a certificate that
    /// does not verify: the image's registry with `--insecure-registry`,
    /// and what registries.conf marks insecure.
    fn insecure_allows(&self, endpoint: &Endpoint) -> bool {
        let same_registry = endpoint.host == self.registry.host && endpoint.port == self.registry.port;
        (self.network.insecure && same_registry)
            || self.insecure_hosts.iter().any(|location| location_matches(location, endpoint))
    }

    fn security(&self, endpoint: &Endpoint) -> Security {
        match (endpoint.https, self.insecure_allows(endpoint)) {
            (false, _) => Security::Plain,
            (true, true) => Security::Unverified,
            (true, false) => Security::Verified,
        }
    }

    /// The `Authorization` value that answers the challenge: Basic with the
    /// stored credentials, or a bearer token from the realm.
    fn answer(&self, challenge: Option<&str>) -> Result<String, Failure> {
        let host = self.reference.api_host();
        match challenge.and_then(auth::parse_challenge) {
            Some(Challenge::Basic) => match &self.credentials {
                Some(c) => Ok(c.basic()),
                None => Err(Failure::Auth(format!(
                    "the registry {host} wants a user name and password, and none is stored for it (log in with podman login or docker login)"
                ))),
            },
            Some(Challenge::Bearer { realm, service, scope }) => {
                let scope = scope.unwrap_or_else(|| format!("repository:{}:pull", self.reference.repository));
                let mut url = format!("{realm}{}scope={}", if realm.contains('?') { '&' } else { '?' }, auth::query_escape(&scope));
                if let Some(service) = service {
                    let _ = write!(url, "&service={}", auth::query_escape(&service));
                }
                self.token(&realm, &url)
            }
            None => Err(Failure::Auth(format!("the registry {host} wants authentication distrorun cannot give"))),
        }
    }

    /// A bearer token from the realm the registry named, with the stored
    /// credentials only where the realm is reached at least as safely as
    /// the registry itself.
    fn token(&self, realm: &str, url: &str) -> Result<String, Failure> {
        let host = self.reference.api_host();
        let denied = |why: String| Failure::Auth(why);
        let endpoint =
            Url::parse(url).map_err(|e| e.to_string()).and_then(|u| Endpoint::of(&u)).map_err(|why| {
                denied(format!("the registry {host} names a token service that is not usable: {why}"))
            })?;
        if !endpoint.https && !self.insecure_allows(&endpoint) {
            return Err(denied(format!(
                "refusing to ask {realm} for a token over plain HTTP, as the registry {host} says: only a host named with --insecure-registry, or marked insecure in registries.conf, is spoken to without TLS"
            )));
        }
        let basic = match &self.credentials {
            Some(c) if self.security(&endpoint) < self.security(&self.registry) => {
                return Err(denied(format!(
                    "refusing to send the credentials for {host} from {} to the token service {realm}: it is reached less safely than the registry (plain HTTP or an unverified certificate)",
                    c.from.display()
                )))
            }
            Some(c) => Some(c.basic()),
            None => None,
        };
        let deadline = self.deadline();
        let response = match self.request(url, &[], basic.as_deref().map(|b| (&endpoint, b)), Some(deadline))
        {
            Ok(Hop::Done(r)) => r,
            Ok(Hop::Status(code, _)) => {
                return Err(denied(match &self.credentials {
                    Some(c) => format!(
                        "the registry {host}'s token service refused the credentials from {} ({code})",
                        c.from.display()
                    ),
                    None => format!("the registry {host}'s token service refused an anonymous pull ({code})"),
                }))
            }
            Err(Failure::Transport(why)) => {
                return Err(denied(format!("cannot reach {realm} for a token: {why}")))
            }
            Err(f) => return Err(f),
        };
        let final_url = response.get_url().to_owned();
        let body = self.read_whole(response, &final_url, MAX_TOKEN, deadline)?;
        let parsed: auth::TokenAnswer = serde_json::from_slice(&body)
            .map_err(|e| denied(format!("{realm} answered with no token: {e}")))?;
        parsed
            .token
            .or(parsed.access_token)
            .filter(|t| !t.is_empty())
            .map(|t| format!("Bearer {t}"))
            .ok_or_else(|| denied(format!("{realm} answered with no token")))
    }
}

fn done(r: Response) -> (Response, String) {
    let url = r.get_url().to_owned();
    (r, url)
}

/// Where a redirect leads, if it may be followed: never from HTTPS to
/// plain HTTP, which would let whoever sits on the path answer for the
/// registry (a manifest fetched by tag has no digest to check it by).
fn redirect_target(from: &Url, location: Option<&str>) -> Result<Url, Failure> {
    let location =
        location.ok_or_else(|| Failure::Refused(format!("{from} redirects without a Location")))?;
    let to = from.join(location).map_err(|e| {
        Failure::Refused(format!("{from} redirects to {location:?}, which is not a URL: {e}"))
    })?;
    if from.scheme() == "https" && to.scheme() != "https" {
        return Err(Failure::Refused(format!(
            "refusing the redirect from {from} to {to}: it leaves HTTPS for plain HTTP"
        )));
    }
    Ok(to)
}

/// Whether a registries.conf `location` (`host`, `host:port` or
/// `*.domain`, maybe with a path) names the endpoint. A location without a
/// port names the host's standard ports.
fn location_matches(location: &str, endpoint: &Endpoint) -> bool {
    let location = location.split('/').next().unwrap_or("").to_ascii_lowercase();
    if let Some(domain) = location.strip_prefix("*.") {
        return endpoint.host.ends_with(&format!(".{domain}"));
    }
    match location.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(':') && port.bytes().all(|b| b.is_ascii_digit()) => {
            host.trim_start_matches('[').trim_end_matches(']') == endpoint.host
                && port.parse() == Ok(endpoint.port)
        }
        _ => {
            location.trim_start_matches('[').trim_end_matches(']') == endpoint.host
                && [80, 443].contains(&endpoint.port)
        }
    }
}

enum Ping {
    /// The TLS handshake (or the protocol) failed: maybe plain HTTP, maybe
    /// a certificate that does not verify.
    Tls(String),
    Other(String),
}

fn body_text(r: Response) -> String {
    let mut body = String::new();
    let _ = r.into_reader().take(4096).read_to_string(&mut body);
    // The registry's error JSON: {"errors":[{"code":"MANIFEST_UNKNOWN","message":"..."}]}
    serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("errors")?.get(0)?.get("message")?.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn human(bytes: u64) -> String {
    crate::tree::limits::human_bytes(bytes)
}

/// A transport error as one line: ureq's own text names the URL and the
/// cause (the TLS alert, the refused connection).
pub fn transport_text(t: &ureq::Transport) -> String {
    let mut text = t.to_string().replace('\n', " ");
    if let Some(source) = std::error::Error::source(t) {
        let cause = source.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text
}

/// An agent for one endpoint: its TLS (if any), its proxy, and a read
/// timeout of `--speed-time`, so that a connection that sends nothing at
/// all is given up as one that sends too little is. Redirects are the
/// client's to follow.
fn build_agent(
    endpoint: &Endpoint,
    tls: Option<Arc<rustls::ClientConfig>>,
    idle: Duration,
) -> Result<ureq::Agent, Error> {
    let mut builder = ureq::AgentBuilder::new()
        .timeout_connect(Duration::from_secs(30))
        .timeout_read(idle)
        .redirects(0)
        .user_agent(concat!("distrorun/", env!("CARGO_PKG_VERSION")));
    if let Some(tls) = tls {
        builder = builder.tls_config(tls);
    }
    let scheme = if endpoint.https { "https" } else { "http" };
    if let Some(proxy) = proxy_for(scheme, &endpoint.authority()) {
        let parsed = ureq::Proxy::new(&proxy).map_err(|e| {
            Error::msg(format!("the proxy {proxy:?} from the environment is not usable: {e}"))
        })?;
        builder = builder.proxy(parsed);
    }
    Ok(builder.build())
}

/// The proxy for `scheme://host` as curl picks it: `https_proxy` or
/// `HTTPS_PROXY` (`http_proxy` for HTTP), unless `no_proxy`/`NO_PROXY`
/// names the host, a domain it is in, or `*`.
fn proxy_for(scheme: &str, host: &str) -> Option<String> {
    let var = |names: &[&str]| names.iter().find_map(|n| std::env::var(n).ok().filter(|v| !v.is_empty()));
    let proxy = if scheme == "https" {
        var(&["https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"])
    } else {
        var(&["http_proxy", "all_proxy", "ALL_PROXY"])
    }?;
    let no_proxy = var(&["no_proxy", "NO_PROXY"]).unwrap_or_default();
    (!bypassed(host, &no_proxy)).then_some(proxy)
}

fn bypassed(host_port: &str, no_proxy: &str) -> bool {
    let host = match host_port.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) && !h.ends_with(':') => h,
        _ => host_port,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
    no_proxy.split(',').map(str::trim).filter(|e| !e.is_empty()).any(|entry| {
        if entry == "*" {
            return true;
        }
        let entry = entry.to_ascii_lowercase();
        if entry == host_port.to_ascii_lowercase() {
            return true;
        }
        let entry = entry.trim_start_matches('*').trim_start_matches('.');
        host == entry || host.ends_with(&format!(".{entry}"))
    })
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn verified_config() -> Result<rustls::ClientConfig, Error> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::msg(format!("cannot set up TLS: {e}")))?;
    let found = rustls_native_certs::load_native_certs();
    let mut roots = rustls::RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        let why = found.errors.first().map_or_else(|| "none found".to_owned(), ToString::to_string);
        let source = std::env::var("SSL_CERT_FILE")
            .map_or_else(|_| "the system's CA store".to_owned(), |f| format!("SSL_CERT_FILE {f}"));
        return Err(Error::msg(format!("cannot load CA certificates from {source}: {why}")));
    }
    Ok(builder.with_root_certificates(roots).with_no_client_auth())
}

/// For an insecure registry only: the certificate is not checked, the
/// handshake's signatures still are (so the connection is at least to the
/// holder of the key it shows).
fn unverified_config() -> Result<Arc<rustls::ClientConfig>, Error> {
    let provider = provider();
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::msg(format!("cannot set up TLS: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Unverified(provider)))
        .with_no_client_auth();
    Ok(Arc::new(config))
}

#[derive(Debug)]
struct Unverified(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_proxy_matches_hosts_domains_and_ports() {
        assert!(bypassed("registry.example.com", "example.com"));
        assert!(bypassed("registry.example.com:5000", ".example.com"));
        assert!(bypassed("127.0.0.1:5000", "localhost,127.0.0.1"));
        assert!(bypassed("anything", "*"));
        assert!(!bypassed("notexample.com", "example.com"));
        assert!(!bypassed("quay.io", ""));
    }

    fn endpoint(url: &str) -> Endpoint {
        Endpoint::of(&Url::parse(url).unwrap()).unwrap()
    }

    #[test]
    fn an_insecure_location_names_one_host_and_port() {
        assert!(location_matches("127.0.0.1:5612", &endpoint("https://127.0.0.1:5612/v2/")));
        assert!(location_matches("127.0.0.1:5612/some/repo", &endpoint("http://127.0.0.1:5612/")));
        assert!(!location_matches("127.0.0.1:5612", &endpoint("https://127.0.0.1:5613/")));
        assert!(!location_matches("127.0.0.1:5612", &endpoint("https://localhost:5612/")));
        assert!(location_matches("reg.example", &endpoint("https://reg.example/")));
        assert!(!location_matches("reg.example", &endpoint("https://reg.example:5000/")));
        assert!(location_matches("*.example", &endpoint("https://a.example/")));
        assert!(!location_matches("*.example", &endpoint("https://example/")));
        assert!(!location_matches("*.example", &endpoint("https://a.example.evil/")));
    }

    #[test]
    fn redirects_never_leave_https_for_plain_http() {
        let from = Url::parse("https://r.example/v2/a/manifests/1").unwrap();
        let err = |loc: &str| match redirect_target(&from, Some(loc)) {
            Ok(u) => panic!("followed to {u}"),
            Err(f) => f.message("x"),
        };
        assert!(err("http://r.example/x").contains("leaves HTTPS for plain HTTP"));
        assert!(err("HTTP://other/x").contains("leaves HTTPS for plain HTTP"));
        // A scheme-relative location keeps HTTPS.
        assert_eq!(
            redirect_target(&from, Some("//other/x")).ok().map(|u| u.to_string()),
            Some("https://other/x".into())
        );
        assert_eq!(
            redirect_target(&from, Some("/storage/x")).ok().map(|u| u.to_string()),
            Some("https://r.example/storage/x".into())
        );
        let plain = Url::parse("http://r.example/v2/").unwrap();
        assert!(redirect_target(&plain, Some("https://s.example/b")).is_ok());
        assert!(redirect_target(&plain, None).is_err());
    }

    #[test]
    fn endpoints_carry_their_default_port() {
        assert_eq!(endpoint("https://Quay.IO/v2/").authority(), "quay.io:443");
        assert_eq!(endpoint("http://127.0.0.1/").authority(), "127.0.0.1:80");
        assert!(Endpoint::of(&Url::parse("ftp://x/").unwrap()).is_err());
    }
}
