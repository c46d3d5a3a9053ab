//! What went wrong on the wire, told apart so each failure gets its own message, fix and
//! retry policy: a name that does not resolve or a certificate that does not verify will not
//! heal by waiting 15 minutes, a reset or a stall usually will.
//!
//! reqwest reports connection problems as one opaque error with a chain of causes. The chain
//! is read by type wherever a type exists: our own resolver's [`Unresolved`], `std::io`'s
//! error kinds, rustls' certificate errors. Only the CONNECT tunnel's 407 is known by its
//! text, because reqwest words it as a plain string error.

use std::error::Error as StdError;
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use reqwest::Url;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// The host name of a URL, for messages (never its query).
pub fn host_of(url: &Url) -> String {
    url.host_str().unwrap_or("(no host)").to_string()
}

/// A host name the system resolver could not turn into an address.
#[derive(Debug)]
pub struct Unresolved {
    pub host: String,
    pub cause: std::io::Error,
}

impl fmt::Display for Unresolved {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} does not resolve: {}", self.host, self.cause)
    }
}

impl StdError for Unresolved {}

/// The system resolver (getaddrinfo, as reqwest's default), with a typed error: a DNS
/// failure is then known by its type in the error chain, not by hyper's wording.
#[derive(Debug, Default)]
pub struct SystemResolver;

impl Resolve for SystemResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let found = tokio::net::lookup_host((host.as_str(), 0)).await;
            match found {
                Ok(addrs) => {
                    let addrs: Vec<SocketAddr> = addrs.collect();
                    Ok(Box::new(addrs.into_iter()) as Addrs)
                }
                Err(cause) => Err(Box::new(Unresolved {
                    host: host.clone(),
                    cause,
                }) as _),
            }
        })
    }
}

/// A failed attempt at the transport level, classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetFailure {
    /// The host (Graph, login, the download host or the proxy) does not resolve.
    Unresolved { host: String },
    /// Nothing listens at the host's port (or a firewall rejects).
    Refused,
    /// The server's certificate did not verify (unknown issuer, expired, wrong name).
    Certificate { detail: String },
    /// The TLS handshake failed for another reason (not TLS on that port, protocol mismatch).
    Tls { detail: String },
    /// The proxy wants credentials (HTTP 407 on CONNECT).
    ProxyAuth,
    /// The request's deadline passed: no answer in time, or a body that trickled.
    Stalled { receiving: bool },
    /// The connection broke: reset, closed early, cut mid-body.
    Interrupted { detail: String },
}

/// What the retry loop does with a [`NetFailure`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetPolicy {
    /// Fail now: waiting cannot help (missing proxy credentials).
    FailNow,
    /// Retry for at most `[pipeline] unreachable_seconds`, then fail with the fix: a wrong
    /// name, proxy or certificate rarely heals, but a DNS or proxy blip may.
    Bounded,
    /// Retry under the run's wait cap (resets, stalls).
    Transient,
}

impl NetFailure {
    /// Classifies a reqwest error; `receiving` says whether the headers had arrived.
    pub fn classify(e: &reqwest::Error, receiving: bool) -> NetFailure {
        if e.is_timeout() {
            return NetFailure::Stalled { receiving };
        }
        let mut src: Option<&(dyn StdError + 'static)> = e.source();
        let mut detail = String::new();
        while let Some(cause) = src {
            if let Some(u) = cause.downcast_ref::<Unresolved>() {
                return NetFailure::Unresolved {
                    host: u.host.clone(),
                };
            }
            if let Some(t) = cause.downcast_ref::<rustls::Error>() {
                return tls_failure(t);
            }
            if let Some(io) = cause.downcast_ref::<std::io::Error>() {
                match io.kind() {
                    std::io::ErrorKind::ConnectionRefused => return NetFailure::Refused,
                    std::io::ErrorKind::TimedOut => return NetFailure::Stalled { receiving },
                    _ => {}
                }
            }
            let text = cause.to_string();
            // The words for a 407 answer to CONNECT: hyper-util's tunnel ("proxy
            // authorization required", what reqwest 0.12 uses) and reqwest's older own one.
            // Neither error type is public, so the text is all there is to go by.
            if text.contains("proxy authorization required")
                || text.contains("proxy authentication required")
            {
                return NetFailure::ProxyAuth;
            }
            if detail.is_empty() || !detail.contains(&text) {
                if !detail.is_empty() {
                    detail.push_str(": ");
                }
                detail.push_str(&text);
            }
            src = next_cause(cause);
        }
        if detail.is_empty() {
            detail = e.to_string();
        }
        NetFailure::Interrupted { detail }
    }

    pub fn policy(&self) -> NetPolicy {
        match self {
            NetFailure::ProxyAuth => NetPolicy::FailNow,
            NetFailure::Unresolved { .. }
            | NetFailure::Refused
            | NetFailure::Certificate { .. }
            | NetFailure::Tls { .. } => NetPolicy::Bounded,
            NetFailure::Stalled { .. } | NetFailure::Interrupted { .. } => NetPolicy::Transient,
        }
    }

    /// A short name for logs and counters.
    pub fn kind(&self) -> &'static str {
        match self {
            NetFailure::Unresolved { .. } => "dns",
            NetFailure::Refused => "refused",
            NetFailure::Certificate { .. } => "certificate",
            NetFailure::Tls { .. } => "tls",
            NetFailure::ProxyAuth => "proxy_auth",
            NetFailure::Stalled { .. } => "stalled",
            NetFailure::Interrupted { .. } => "interrupted",
        }
    }

    /// One line: what happened, naming the host.
    pub fn problem(&self, url: &Url, deadline: Duration) -> String {
        let host = host_of(url);
        match self {
            NetFailure::Unresolved { host: h } if *h == host => {
                format!("{host} does not resolve from this machine")
            }
            NetFailure::Unresolved { host: h } => {
                format!("the proxy {h} (used for {host}) does not resolve from this machine")
            }
            NetFailure::Refused => format!(
                "{host} refused the connection (port {})",
                url.port_or_known_default().unwrap_or(0)
            ),
            NetFailure::Certificate { detail } => {
                format!("the TLS certificate of {host} does not verify: {detail}")
            }
            NetFailure::Tls { detail } => format!("the TLS handshake with {host} failed: {detail}"),
            NetFailure::ProxyAuth => {
                format!("the proxy asked for credentials (HTTP 407) on the way to {host}")
            }
            NetFailure::Stalled { receiving: true } => format!(
                "{host}{} stalled: the body was still arriving after {:.0} s",
                url.path(),
                deadline.as_secs_f64()
            ),
            NetFailure::Stalled { receiving: false } => format!(
                "{host}{} stalled: no answer within {:.0} s",
                url.path(),
                deadline.as_secs_f64()
            ),
            NetFailure::Interrupted { detail } => {
                format!("the connection to {host} broke: {detail}")
            }
        }
    }

    /// What an admin can do about it.
    pub fn fix(&self, url: &Url) -> String {
        let host = host_of(url);
        match self {
            NetFailure::Unresolved { host: h } if *h == host => format!(
                "{host} does not resolve from this machine: check DNS (resolv.conf, VPN, split-horizon DNS), or set HTTPS_PROXY to the proxy this network requires"
            ),
            NetFailure::Unresolved { host: h } => format!(
                "the proxy host {h} does not resolve: correct HTTPS_PROXY / HTTP_PROXY (or unset them on a network without a proxy)"
            ),
            NetFailure::Refused => format!(
                "nothing accepts connections at {host}: check that a firewall allows outbound HTTPS to it, and that HTTPS_PROXY (if set) points at a running proxy"
            ),
            NetFailure::Certificate { .. } => format!(
                "if a proxy inspects TLS, install its root certificate in the system store or set [tenant] ca_bundle to a PEM file holding it; otherwise check the machine's clock and that {host} is the real host"
            ),
            NetFailure::Tls { .. } => format!(
                "check that {host} speaks HTTPS on that port (login_url/graph_url in [tenant]) and that no proxy in between breaks TLS"
            ),
            NetFailure::ProxyAuth => "give the proxy credentials in the proxy URL, e.g. HTTPS_PROXY=http://user:password@proxy:8080, or ask for an exception for login.microsoftonline.com, graph.microsoft.com and reports.office.com".to_string(),
            NetFailure::Stalled { .. } => format!(
                "the link to {host} or a proxy is slow or holding the connection: check proxies and bandwidth; [pipeline] request_timeout_seconds / download_timeout_seconds bound each request"
            ),
            NetFailure::Interrupted { .. } => format!(
                "check network access to {host} (proxy, firewall, VPN); the run retries broken connections on its own"
            ),
        }
    }
}

/// The error under `cause`. An `io::Error` wrapping another error is looked into: its
/// `source()` skips the wrapped error itself, and hyper-rustls' certificate errors arrive as
/// an `io::Error` inside an `io::Error` around the `rustls::Error`.
fn next_cause<'a>(cause: &'a (dyn StdError + 'static)) -> Option<&'a (dyn StdError + 'static)> {
    if let Some(inner) = cause
        .downcast_ref::<std::io::Error>()
        .and_then(|io| io.get_ref())
    {
        return Some(inner);
    }
    cause.source()
}

fn tls_failure(e: &rustls::Error) -> NetFailure {
    match e {
        rustls::Error::InvalidCertificate(c) => NetFailure::Certificate {
            detail: match c {
                rustls::CertificateError::UnknownIssuer => {
                    "issued by an authority this machine does not trust (unknown issuer)".into()
                }
                rustls::CertificateError::Expired
                | rustls::CertificateError::ExpiredContext { .. } => "expired".into(),
                rustls::CertificateError::NotValidForName
                | rustls::CertificateError::NotValidForNameContext { .. } => {
                    "issued for another host name".into()
                }
                // webpki's words for a self-signed certificate that says it is an authority.
                other if format!("{other:?}").contains("CaUsedAsEndEntity") => {
                    "self-signed: the server presents an authority's own certificate (unknown issuer)"
                        .into()
                }
                other => format!("{other:?}"),
            },
        },
        other => NetFailure::Tls {
            detail: other.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies() {
        assert_eq!(NetFailure::ProxyAuth.policy(), NetPolicy::FailNow);
        assert_eq!(
            NetFailure::Unresolved { host: "x".into() }.policy(),
            NetPolicy::Bounded
        );
        assert_eq!(
            NetFailure::Stalled { receiving: true }.policy(),
            NetPolicy::Transient
        );
    }

    #[test]
    fn messages_name_the_host_and_the_fix() {
        let u = Url::parse("https://login.microsoftonline.com/t/oauth2/v2.0/token").unwrap();
        let f = NetFailure::Unresolved {
            host: "login.microsoftonline.com".into(),
        };
        assert_eq!(
            f.problem(&u, Duration::from_secs(1)),
            "login.microsoftonline.com does not resolve from this machine"
        );
        assert!(f.fix(&u).contains("check DNS"));
        assert!(f.fix(&u).contains("HTTPS_PROXY"));
        let p = NetFailure::Unresolved {
            host: "proxy.corp".into(),
        };
        assert!(
            p.problem(&u, Duration::ZERO)
                .contains("the proxy proxy.corp")
        );
        let s = NetFailure::Stalled { receiving: true };
        let g = Url::parse("https://graph.microsoft.com/v1.0/users?$skiptoken=secret").unwrap();
        let text = s.problem(&g, Duration::from_secs(120));
        assert_eq!(
            text,
            "graph.microsoft.com/v1.0/users stalled: the body was still arriving after 120 s"
        );
        assert!(!text.contains("secret"));
    }

    #[tokio::test]
    async fn an_unresolvable_name_is_typed() {
        let client = reqwest::Client::builder()
            .dns_resolver(std::sync::Arc::new(SystemResolver))
            .build()
            .unwrap();
        let e = client
            .get("https://login.invalid/")
            .send()
            .await
            .unwrap_err();
        assert_eq!(
            NetFailure::classify(&e, false),
            NetFailure::Unresolved {
                host: "login.invalid".into()
            }
        );
    }

    #[tokio::test]
    async fn a_refused_connection_is_typed() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        let e = reqwest::Client::new()
            .get(format!("http://127.0.0.1:{port}/"))
            .send()
            .await
            .unwrap_err();
        assert_eq!(NetFailure::classify(&e, false), NetFailure::Refused);
    }
}
