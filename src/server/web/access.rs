//! Who may use the status page, and which requests may change something.
//!
//! - Loopback listeners need nothing: whoever can reach them is on the machine already.
//! - Any other address needs the access token (`serve --access-token-env NAME`): as a bearer
//!   token (`Authorization: Bearer …`, for Prometheus and scripts) or through the login form,
//!   which sets a session cookie (HttpOnly, SameSite=Strict) naming a random session, never
//!   the token. Tokens and sessions are compared in constant time.
//! - A POST (Run now, log in/out) must carry this process's CSRF token and come from this
//!   origin (its `Origin`, `Referer` or `Sec-Fetch-Site` headers, when a browser sends them).

use std::net::SocketAddr;
use std::sync::Mutex;

use axum::http::HeaderMap;
use axum::http::header::{AUTHORIZATION, COOKIE, HOST, ORIGIN, REFERER};
use subtle::ConstantTimeEq;

use crate::error::{Error, Result};

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "m365c_session";

/// Sessions kept at most (a login beyond drops the oldest).
const MAX_SESSIONS: usize = 1000;

pub struct Access {
    /// The token a non-loopback listener requires; `None` on loopback.
    token: Option<String>,
    csrf: String,
    sessions: Mutex<Vec<String>>,
}

impl Access {
    /// The access rules for a listener on `addr`. A non-loopback address without a token
    /// refuses to start: an open status page would let anyone on the network run connectors.
    pub fn for_listener(addr: SocketAddr, token_env: Option<&str>) -> Result<Access> {
        let token = match token_env {
            Some(name) => match std::env::var(name) {
                Ok(t) if t.trim().len() >= 16 => Some(t.trim().to_string()),
                Ok(t) if !t.trim().is_empty() => {
                    return Err(Error::Usage(format!(
                        "the access token in ${name} is too short ({} characters): use at least 16, e.g. the output of `openssl rand -hex 32`",
                        t.trim().len()
                    )));
                }
                _ => {
                    return Err(Error::Usage(format!(
                        "--access-token-env names ${name}, which is not set or empty: set it to a long random token (e.g. `openssl rand -hex 32`) in the server's environment"
                    )));
                }
            },
            None => None,
        };
        if token.is_none() && !addr.ip().is_loopback() {
            return Err(Error::Usage(format!(
                "serve --listen {addr} is not a loopback address, and the status page can run connectors: give it an access token with --access-token-env NAME (an environment variable holding a long random token, e.g. `openssl rand -hex 32`), or listen on 127.0.0.1"
            )));
        }
        Ok(Access {
            token,
            csrf: random_hex(),
            sessions: Mutex::new(Vec::new()),
        })
    }

    /// Whether requests need the token.
    pub fn required(&self) -> bool {
        self.token.is_some()
    }

    /// The token of this process's forms.
    pub fn csrf(&self) -> &str {
        &self.csrf
    }

    /// Whether the request may see the pages: no token required, the bearer token, or a
    /// session of ours in its cookie.
    pub fn allows(&self, headers: &HeaderMap) -> bool {
        let Some(token) = &self.token else {
            return true;
        };
        if let Some(bearer) = headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
        {
            return same(bearer.trim(), token);
        }
        match cookie(headers, SESSION_COOKIE) {
            Some(session) => {
                let sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
                // Every session is compared, so the time says nothing about which matched.
                sessions
                    .iter()
                    .fold(false, |found, s| found | same(session, s))
            }
            None => false,
        }
    }

    /// A new session when `offered` is the token.
    pub fn log_in(&self, offered: &str) -> Option<String> {
        let token = self.token.as_ref()?;
        if !same(offered.trim(), token) {
            return None;
        }
        let session = random_hex();
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        if sessions.len() >= MAX_SESSIONS {
            sessions.remove(0);
        }
        sessions.push(session.clone());
        Some(session)
    }

    pub fn log_out(&self, headers: &HeaderMap) {
        if let Some(session) = cookie(headers, SESSION_COOKIE) {
            let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
            sessions.retain(|s| !same(session, s));
        }
    }

    /// Whether a POST may change something: our CSRF token, from our own origin.
    pub fn may_post(
        &self,
        headers: &HeaderMap,
        csrf: &str,
    ) -> std::result::Result<(), &'static str> {
        if !same(csrf, &self.csrf) {
            return Err("the form's token is missing or stale: reload the page and try again");
        }
        if !same_origin(headers) {
            return Err("this request came from another site, which may not change anything here");
        }
        Ok(())
    }
}

/// The `Set-Cookie` value of a session.
pub fn session_cookie(session: &str) -> String {
    format!("{SESSION_COOKIE}={session}; Path=/; HttpOnly; SameSite=Strict")
}

/// The `Set-Cookie` value that ends a session.
pub fn cleared_cookie() -> String {
    format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0")
}

fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// A browser's POST names where it comes from; a request from a page of another origin is
/// refused. Clients that send none of these headers (curl, scripts) still need the CSRF token.
fn same_origin(headers: &HeaderMap) -> bool {
    let header = |h: &str| headers.get(h).and_then(|v| v.to_str().ok());
    if let Some(site) = header("sec-fetch-site")
        && !matches!(site, "same-origin" | "none")
    {
        return false;
    }
    let (origin, referer) = (header(ORIGIN.as_str()), header(REFERER.as_str()));
    let Some(host) = header(HOST.as_str()) else {
        return origin.is_none() && referer.is_none();
    };
    let ours = |url: &str| {
        ["http://", "https://"].iter().any(|scheme| {
            url.strip_prefix(scheme)
                .and_then(|rest| rest.strip_prefix(host))
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        })
    };
    match (origin, referer) {
        (Some(origin), _) => ours(origin),
        (None, Some(referer)) => ours(referer),
        (None, None) => true,
    }
}

/// 128 random bits from the operating system, as hex.
fn random_hex() -> String {
    let mut bytes = [0u8; 16];
    // The OS's generator; if it ever failed, a token from the per-process hash keys is still
    // unguessable from outside, but say so.
    if getrandom::fill(&mut bytes).is_err() {
        tracing::warn!("the operating system's random generator failed; using a weaker one");
        bytes[..8].copy_from_slice(&crate::random::u64().to_le_bytes());
        bytes[8..].copy_from_slice(&crate::random::u64().to_le_bytes());
    }
    crate::digest::hex(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn guarded() -> Access {
        // SAFETY: tests of this module are the only readers of this variable.
        unsafe { std::env::set_var("M365C_TEST_ACCESS_TOKEN", "0123456789abcdef0123") };
        Access::for_listener(
            "0.0.0.0:8765".parse().unwrap(),
            Some("M365C_TEST_ACCESS_TOKEN"),
        )
        .unwrap()
    }

    #[test]
    fn a_non_loopback_listener_needs_a_token() {
        let e = Access::for_listener("0.0.0.0:8765".parse().unwrap(), None)
            .err()
            .unwrap();
        assert!(e.to_string().contains("--access-token-env"), "{e}");
        let open = Access::for_listener("127.0.0.1:8765".parse().unwrap(), None).unwrap();
        assert!(open.allows(&HeaderMap::new()));
        assert!(Access::for_listener("[::1]:1".parse().unwrap(), None).is_ok());
        let e = Access::for_listener("0.0.0.0:1".parse().unwrap(), Some("M365C_TEST_UNSET_VAR"))
            .err()
            .unwrap();
        assert!(e.to_string().contains("M365C_TEST_UNSET_VAR"), "{e}");
    }

    #[test]
    fn the_token_or_a_session_lets_a_request_in() {
        let a = guarded();
        assert!(!a.allows(&HeaderMap::new()));
        assert!(a.allows(&headers(&[(
            "authorization",
            "Bearer 0123456789abcdef0123"
        )])));
        assert!(!a.allows(&headers(&[(
            "authorization",
            "Bearer 0123456789abcdef0124"
        )])));
        assert!(a.log_in("wrong").is_none());
        let s = a.log_in("0123456789abcdef0123").unwrap();
        assert!(!s.contains("0123456789abcdef0123"));
        let with = headers(&[("cookie", &format!("a=b; {SESSION_COOKIE}={s}"))]);
        assert!(a.allows(&with));
        a.log_out(&with);
        assert!(!a.allows(&with));
        assert!(session_cookie(&s).contains("HttpOnly; SameSite=Strict"));
    }

    #[test]
    fn a_post_needs_the_csrf_token_and_our_origin() {
        let a = Access::for_listener("127.0.0.1:8765".parse().unwrap(), None).unwrap();
        let csrf = a.csrf().to_string();
        assert_eq!(csrf.len(), 32);
        let host = ("host", "127.0.0.1:8765");
        assert!(a.may_post(&headers(&[host]), &csrf).is_ok());
        assert!(a.may_post(&headers(&[host]), "").is_err());
        assert!(
            a.may_post(
                &headers(&[host, ("origin", "http://127.0.0.1:8765")]),
                &csrf
            )
            .is_ok()
        );
        assert!(
            a.may_post(&headers(&[host, ("origin", "http://evil.example")]), &csrf)
                .is_err()
        );
        assert!(
            a.may_post(
                &headers(&[host, ("origin", "http://127.0.0.1:8765.evil")]),
                &csrf
            )
            .is_err()
        );
        assert!(
            a.may_post(
                &headers(&[host, ("referer", "http://evil.example/x")]),
                &csrf
            )
            .is_err()
        );
        assert!(
            a.may_post(&headers(&[host, ("sec-fetch-site", "cross-site")]), &csrf)
                .is_err()
        );
        assert!(
            a.may_post(&headers(&[host, ("sec-fetch-site", "same-origin")]), &csrf)
                .is_ok()
        );
    }
}
