//! HTTP to one registry: TLS verified against the system's CA store (or
//! `SSL_CERT_FILE`), plain HTTP and unverified certificates only with
//! `--insecure-registry`, the proxy the environment names, and the
//! registry's authentication challenge answered once per repository.

use std::fmt::Write as _;
use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use distrorun_engine::Error;

use super::auth::{self, Challenge, Credentials};
use super::reference::Reference;

/// The largest JSON answer read (manifests, indexes, tokens).
pub const MAX_JSON: u64 = 16 << 20;

pub struct Client {
    agent: ureq::Agent,
    /// `https://host[:port]` or, with `--insecure-registry` and a registry
    /// that speaks no TLS, `http://...`.
    pub base: String,
    pub reference: Reference,
    credentials: Option<Credentials>,
    /// The `Authorization` value that worked last.
    authorization: Mutex<Option<String>>,
}

/// A response, or the status the registry refused with.
pub type Response = ureq::Response;

impl Client {
    /// Reaches the registry of `reference` and learns how it wants to be
    /// spoken to (scheme and authentication), by `GET /v2/`.
    pub fn connect(reference: &Reference, insecure: bool) -> Result<Client, Error> {
        let host = reference.api_host().to_owned();
        let credentials = auth::find(reference)?;
        let https = Client {
            agent: agent("https", &host, insecure)?,
            base: format!("https://{host}"),
            reference: reference.clone(),
            credentials: credentials.clone(),
            authorization: Mutex::new(None),
        };
        match https.ping() {
            Ok(()) => Ok(https),
            Err(Ping::Tls(why)) if insecure => {
                let http = Client {
                    agent: agent("http", &host, insecure)?,
                    base: format!("http://{host}"),
                    reference: reference.clone(),
                    credentials,
                    authorization: Mutex::new(None),
                };
                match http.ping() {
                    Ok(()) => Ok(http),
                    Err(Ping::Tls(e) | Ping::Other(e)) => Err(Error::msg(format!(
                        "cannot reach the registry {host} over HTTPS ({why}) or HTTP ({e})"
                    ))),
                }
            }
            Err(Ping::Tls(why)) => Err(Error::msg(format!(
                "cannot reach the registry {host} over HTTPS: {why}; plain HTTP and unverified certificates need --insecure-registry"
            ))),
            Err(Ping::Other(why)) => Err(Error::msg(format!("cannot reach the registry {host}: {why}"))),
        }
    }

    fn ping(&self) -> Result<(), Ping> {
        match self.agent.get(&format!("{}/v2/", self.base)).call() {
            Ok(_) | Err(ureq::Error::Status(401, _)) => Ok(()),
            Err(ureq::Error::Status(code, r)) => {
                Err(Ping::Other(format!("GET /v2/ answered {code} {}", r.status_text())))
            }
            Err(ureq::Error::Transport(t)) => {
                let text = transport_text(&t);
                // ureq files TLS failures under "connection failed" too.
                let lower = text.to_ascii_lowercase();
                if lower.contains("tls") || lower.contains("certificate") || lower.contains("handshake") {
                    Err(Ping::Tls(text))
                } else {
                    Err(Ping::Other(text))
                }
            }
        }
    }

    /// `GET path` (below the base URL), with `Range: bytes=FROM-` when
    /// `from` is not 0, authenticating as the registry asks. A status other
    /// than 200 or 206 is returned as `Err(Some(status))`.
    pub fn get(&self, path: &str, accept: &str, from: u64) -> Result<Response, Failure> {
        let url = format!("{}{path}", self.base);
        let send = |authorization: Option<&str>| {
            let mut request = self.agent.get(&url).set("Accept", accept);
            if let Some(value) = authorization {
                request = request.set("Authorization", value);
            }
            if from > 0 {
                request = request.set("Range", &format!("bytes={from}-"));
            }
            // Boxed: ureq's error is large, and it is the rare path.
            request.call().map_err(Box::new)
        };
        let current = self.authorization.lock().map_or(None, |a| a.clone());
        match send(current.as_deref()).map_err(|e| *e) {
            Ok(r) => Ok(r),
            Err(ureq::Error::Status(401, r)) => {
                let value = self.answer(r.header("WWW-Authenticate"))?;
                if let Ok(mut slot) = self.authorization.lock() {
                    slot.clone_from(&Some(value.clone()));
                }
                match send(Some(&value)).map_err(|e| *e) {
                    Ok(r) => Ok(r),
                    Err(ureq::Error::Status(401, _)) => Err(Failure::Auth(match &self.credentials {
                        Some(c) => format!(
                            "the registry {} refused the credentials from {}",
                            self.reference.api_host(),
                            c.from.display()
                        ),
                        None => {
                            format!("the registry {} refused an anonymous pull", self.reference.api_host())
                        }
                    })),
                    Err(ureq::Error::Status(code, r)) => Err(Failure::Status(code, body_text(r))),
                    Err(ureq::Error::Transport(t)) => Err(Failure::Transport(transport_text(&t))),
                }
            }
            Err(ureq::Error::Status(code, r)) => Err(Failure::Status(code, body_text(r))),
            Err(ureq::Error::Transport(t)) => Err(Failure::Transport(transport_text(&t))),
        }
    }

    /// The `Authorization` value that answers the challenge: Basic with the
    /// stored credentials, or a bearer token from the realm.
    fn answer(&self, challenge: Option<&str>) -> Result<String, Failure> {
        let host = self.reference.api_host();
        let denied = |why: String| Failure::Auth(why);
        match challenge.and_then(auth::parse_challenge) {
            Some(Challenge::Basic) => match &self.credentials {
                Some(c) => Ok(c.basic()),
                None => Err(denied(format!(
                    "the registry {host} wants a user name and password, and none is stored for it (log in with podman login or docker login)"
                ))),
            },
            Some(Challenge::Bearer { realm, service, scope }) => {
                let scope = scope.unwrap_or_else(|| format!("repository:{}:pull", self.reference.repository));
                let mut url = format!("{realm}{}scope={}", if realm.contains('?') { '&' } else { '?' }, auth::query_escape(&scope));
                if let Some(service) = service {
                    let _ = write!(url, "&service={}", auth::query_escape(&service));
                }
                let mut request = self.agent.get(&url);
                if let Some(c) = &self.credentials {
                    request = request.set("Authorization", &c.basic());
                }
                let answer = match request.call() {
                    Ok(r) => r,
                    Err(ureq::Error::Status(code, _)) => {
                        return Err(denied(match &self.credentials {
                            Some(c) => format!(
                                "the registry {host}'s token service refused the credentials from {} ({code})",
                                c.from.display()
                            ),
                            None => format!("the registry {host}'s token service refused an anonymous pull ({code})"),
                        }))
                    }
                    Err(ureq::Error::Transport(t)) => {
                        return Err(denied(format!("cannot reach {realm} for a token: {}", transport_text(&t))))
                    }
                };
                let mut body = Vec::new();
                answer
                    .into_reader()
                    .take(MAX_JSON)
                    .read_to_end(&mut body)
                    .map_err(|e| denied(format!("cannot read the token from {realm}: {e}")))?;
                let parsed: auth::TokenAnswer = serde_json::from_slice(&body)
                    .map_err(|e| denied(format!("{realm} answered with no token: {e}")))?;
                parsed
                    .token
                    .or(parsed.access_token)
                    .filter(|t| !t.is_empty())
                    .map(|t| format!("Bearer {t}"))
                    .ok_or_else(|| denied(format!("{realm} answered with no token")))
            }
            None => Err(denied(format!("the registry {host} wants authentication distrorun cannot give"))),
        }
    }
}

enum Ping {
    /// The TLS handshake (or the protocol) failed: maybe plain HTTP, maybe
    /// a certificate that does not verify.
    Tls(String),
    Other(String),
}

/// Why a request failed.
pub enum Failure {
    Status(u16, String),
    Transport(String),
    Auth(String),
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

fn agent(scheme: &str, host: &str, insecure: bool) -> Result<ureq::Agent, Error> {
    let mut builder = ureq::AgentBuilder::new()
        .timeout_connect(Duration::from_secs(30))
        .timeout_read(Duration::from_secs(60))
        .redirects(8)
        .user_agent(concat!("distrorun/", env!("CARGO_PKG_VERSION")));
    if scheme == "https" {
        builder = builder.tls_config(Arc::new(tls_config(insecure)?));
    }
    if let Some(proxy) = proxy_for(scheme, host) {
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

fn tls_config(insecure: bool) -> Result<rustls::ClientConfig, Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::msg(format!("cannot set up TLS: {e}")))?;
    if insecure {
        return Ok(builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Unverified(provider)))
            .with_no_client_auth());
    }
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

/// `--insecure-registry` over HTTPS: the certificate is not checked, the
/// handshake's signatures still are (so the connection is at least to the
/// holder of the key it shows).
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
    use super::bypassed;

    #[test]
    fn no_proxy_matches_hosts_domains_and_ports() {
        assert!(bypassed("registry.example.com", "example.com"));
        assert!(bypassed("registry.example.com:5000", ".example.com"));
        assert!(bypassed("127.0.0.1:5000", "localhost,127.0.0.1"));
        assert!(bypassed("anything", "*"));
        assert!(!bypassed("notexample.com", "example.com"));
        assert!(!bypassed("quay.io", ""));
    }
}
