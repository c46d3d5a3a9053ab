//! The Microsoft Graph source: sign-in, paging, usage reports and the retry loop they share.
//!
//! One [`GraphClient`] serves a whole run. It holds the cached token and the run-wide wait
//! budget, and counts requests per stream in [`CallStats`] for the manifest.

pub mod auth;
pub mod error;
pub mod paging;
pub mod report_csv;
pub mod reports;
pub mod retry;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use reqwest::Url;
use reqwest::header::HeaderMap;
use serde::Serialize;

use crate::config::{Config, Secret};
pub use error::{GraphError, RequestIds};
use error::{GraphErrorBody, graph_fix};
use retry::{RetryPolicy, Verdict, classify_status, parse_retry_after};

/// Request counters for one stream (or the login), reported in the run manifest.
#[derive(Debug, Default)]
pub struct CallStats {
    pub requests: AtomicU64,
    pub retries: AtomicU64,
    pub throttled: AtomicU64,
    pub waited_ms: AtomicU64,
}

/// A plain snapshot of [`CallStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct CallCounts {
    pub requests: u64,
    pub retries: u64,
    pub throttled: u64,
    pub waited_ms: u64,
}

impl CallStats {
    pub fn snapshot(&self) -> CallCounts {
        CallCounts {
            requests: self.requests.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            throttled: self.throttled.load(Ordering::Relaxed),
            waited_ms: self.waited_ms.load(Ordering::Relaxed),
        }
    }
    fn bump(counter: &AtomicU64, by: u64) {
        counter.fetch_add(by, Ordering::Relaxed);
    }
}

/// Fresh tokens tried for one request when a token that never worked is refused with 401
/// (wrong tenant or cloud: more tokens will not help).
const MAX_TOKEN_REFRESHES: u32 = 3;

/// Fresh tokens tried for one request when tokens that had worked are refused (expired or
/// revoked mid-run): bounded too, but generously, as each one is a real renewal.
const MAX_TOKEN_RENEWALS: u32 = 10;

/// Unusable bodies (cut JSON, an HTML page with status 200) retried per request before the
/// request fails; each retry backs off and counts against the wait cap.
const MAX_BAD_BODIES: u32 = 5;

/// A complete response: status, headers and the whole body (pages are ~1 MB at most).
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub ids: RequestIds,
}

/// Everything needed to talk to one tenant's Graph.
pub struct GraphClient {
    http: reqwest::Client,
    login_url: Url,
    graph_url: Url,
    tenant_id: String,
    client_id: String,
    secret: Secret,
    scope: String,
    cloud: &'static str,
    token: tokio::sync::Mutex<Option<auth::CachedToken>>,
    /// Hashes of tokens Graph has accepted at least once: a 401 for one of those means
    /// expiry or revocation, not a misconfiguration.
    proven_tokens: std::sync::Mutex<std::collections::HashSet<u64>>,
    retry: RetryPolicy,
    /// Counters for token requests.
    pub login_stats: CallStats,
}

impl std::fmt::Debug for GraphClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GraphClient")
            .field("graph_url", &self.graph_url.as_str())
            .field("tenant_id", &self.tenant_id)
            .finish_non_exhaustive()
    }
}

impl GraphClient {
    /// Builds a client for the connector; the secret is passed separately so loading it can
    /// fail with its own config error.
    pub fn new(cfg: &Config, secret: Secret) -> Result<GraphClient, GraphError> {
        let mut builder = reqwest::Client::builder();
        if let Some(path) = &cfg.tenant.ca_bundle {
            let certs =
                crate::config::load_ca_bundle(path).map_err(|problem| GraphError::Transport {
                    url: cfg.tenant.graph_url.to_string(),
                    problem,
                    waited_s: 0.0,
                    ids: RequestIds::default(),
                })?;
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder
            // Redirects are followed by our code, so the token never reaches another host.
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(cfg.pipeline.request_timeout_seconds))
            .connect_timeout(Duration::from_secs(30))
            .user_agent(concat!("m365-connector/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| GraphError::Transport {
                url: cfg.tenant.graph_url.to_string(),
                problem: format!("cannot build the HTTP client: {e}"),
                waited_s: 0.0,
                ids: RequestIds::default(),
            })?;
        Ok(GraphClient {
            http,
            login_url: cfg.tenant.login_url.clone(),
            graph_url: cfg.tenant.graph_url.clone(),
            tenant_id: cfg.tenant.tenant_id.clone(),
            client_id: cfg.tenant.client_id.clone(),
            secret,
            scope: cfg.tenant.scope.clone(),
            cloud: cfg.tenant.cloud.name(),
            token: tokio::sync::Mutex::new(None),
            proven_tokens: std::sync::Mutex::default(),
            retry: RetryPolicy::new(
                Duration::from_millis(cfg.pipeline.retry_base_ms),
                Duration::from_secs(cfg.pipeline.max_wait_seconds),
            ),
            login_stats: CallStats::default(),
        })
    }

    /// `https://graph.microsoft.com/v1.0` + `path` (path starts with `/`).
    pub fn v1(&self, path: &str) -> Result<Url, GraphError> {
        let base = self.graph_url.as_str().trim_end_matches('/');
        Url::parse(&format!("{base}/v1.0{path}")).map_err(|e| GraphError::BadBody {
            url: path.to_string(),
            problem: format!("cannot build a URL: {e}"),
            fix: "report this as a connector bug".into(),
            ids: RequestIds::default(),
        })
    }

    /// The Graph host root; next links must stay on it.
    pub fn graph_url(&self) -> &Url {
        &self.graph_url
    }

    /// Total time this run has waited on throttling and backoff.
    pub fn waited(&self) -> Duration {
        self.retry.waited()
    }

    /// GET a Graph URL with the bearer token, retrying transient failures, and hand the
    /// complete reply to `accept`. `accept` returning `Err(problem)` marks the body as
    /// unusable (cut JSON, HTML page): it is retried twice, then reported.
    pub async fn get_graph<T>(
        &self,
        url: &Url,
        stats: &CallStats,
        what: &str,
        accept: impl Fn(Reply) -> Result<T, (String, RequestIds)>,
    ) -> Result<T, GraphError> {
        self.execute(url, stats, what, None, accept).await
    }

    /// [`GraphClient::get_graph`] with a `Prefer` header, e.g. `odata.maxpagesize=999` for
    /// `/users/delta`, which takes no `$top`.
    pub async fn get_graph_prefer<T>(
        &self,
        url: &Url,
        stats: &CallStats,
        what: &str,
        prefer: &str,
        accept: impl Fn(Reply) -> Result<T, (String, RequestIds)>,
    ) -> Result<T, GraphError> {
        self.execute(url, stats, what, Some(prefer), accept).await
    }

    /// GET a pre-authenticated download URL (never with the token).
    pub(crate) async fn get_download(
        &self,
        url: &Url,
        stats: &CallStats,
    ) -> Result<reqwest::Response, GraphError> {
        let mut attempt = 0u32;
        loop {
            let ids = RequestIds::fresh();
            CallStats::bump(&stats.requests, 1);
            let sent = self.http.get(url.clone()).send().await;
            match sent {
                Err(e) => {
                    self.wait_transient(url, &e.to_string(), &mut attempt, stats, &ids)
                        .await?;
                }
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    if resp.status().is_success() {
                        return Ok(resp);
                    }
                    if matches!(status, 401 | 403 | 404 | 410) {
                        return Err(GraphError::DownloadExpired {
                            url: redact_query(url),
                            status,
                        });
                    }
                    if classify_status(status) == Verdict::Fail {
                        return Err(GraphError::Api {
                            method: "GET",
                            url: redact_query(url),
                            status,
                            code: String::new(),
                            message: "the report download host refused the request".into(),
                            fix: "run again; the report will be requested anew".into(),
                            ids,
                        });
                    }
                    let ra = retry_after(resp.headers());
                    self.wait_status(url, status, ra, &mut attempt, stats, &ids)
                        .await?;
                }
            }
        }
    }

    async fn execute<T>(
        &self,
        url: &Url,
        stats: &CallStats,
        what: &str,
        prefer: Option<&str>,
        accept: impl Fn(Reply) -> Result<T, (String, RequestIds)>,
    ) -> Result<T, GraphError> {
        let mut attempt = 0u32;
        let mut refreshes = 0u32;
        let mut renewals = 0u32;
        let mut bad_bodies = 0u32;
        loop {
            let mut ids = RequestIds::fresh();
            let req = self
                .http
                .get(url.clone())
                .header("client-request-id", &ids.client_request_id)
                .header("return-client-request-id", "true")
                .header("x-ms-throttle-priority", "Low");
            let req = match prefer {
                Some(p) => req.header("Prefer", p),
                None => req,
            };
            let token = self.token().await?;
            let req = req.bearer_auth(token.expose());
            CallStats::bump(&stats.requests, 1);
            let resp = match req.send().await {
                Ok(r) => r,
                Err(e) => {
                    self.wait_transient(url, &describe(&e), &mut attempt, stats, &ids)
                        .await?;
                    continue;
                }
            };
            let status = resp.status().as_u16();
            let headers = resp.headers().clone();
            ids.request_id = headers
                .get("request-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let body = match resp.bytes().await {
                Ok(b) => b,
                Err(e) => {
                    // Connection reset or timeout mid-body: the whole request is retried.
                    self.wait_transient(url, &describe(&e), &mut attempt, stats, &ids)
                        .await?;
                    continue;
                }
            };
            if (200..400).contains(&status) {
                self.prove(&token, true);
                let reply = Reply {
                    status,
                    headers,
                    body,
                    ids,
                };
                match accept(reply) {
                    Ok(v) => return Ok(v),
                    Err((problem, ids)) => {
                        bad_bodies += 1;
                        if bad_bodies > MAX_BAD_BODIES {
                            return Err(GraphError::BadBody {
                                url: redact_query(url),
                                problem,
                                fix: "Graph (or a proxy in between) returned something that is not the documented JSON; check proxies, then run again and report the request id if it persists".into(),
                                ids,
                            });
                        }
                        tracing::warn!(url = %redact_query(url), %problem, "unusable response body; retrying");
                        self.wait_transient(url, &problem, &mut attempt, stats, &ids)
                            .await?;
                        continue;
                    }
                }
            }
            let err = GraphErrorBody::parse(&body);
            if ids.request_id.is_none() {
                ids.request_id = err.request_id();
            }
            if status == 401 {
                // A token that had worked expired or was revoked: renew it. A token that never
                // worked, again and again, is a real problem (wrong tenant or cloud): give up.
                let counter = if self.prove(&token, false) {
                    (&mut renewals, MAX_TOKEN_RENEWALS)
                } else {
                    (&mut refreshes, MAX_TOKEN_REFRESHES)
                };
                if *counter.0 < counter.1 {
                    *counter.0 += 1;
                    tracing::info!(url = %redact_query(url), code = %err.error.code, "401 from Graph; fetching a fresh token");
                    self.invalidate_token(&token).await;
                    CallStats::bump(&stats.retries, 1);
                    continue;
                }
            }
            if classify_status(status) == Verdict::Retry {
                let ra = retry_after(&headers);
                self.wait_status(url, status, ra, &mut attempt, stats, &ids)
                    .await?;
                continue;
            }
            return Err(GraphError::Api {
                method: "GET",
                url: redact_query(url),
                status,
                code: if err.error.code.is_empty() {
                    "(no error code)".into()
                } else {
                    err.error.code.clone()
                },
                message: if err.error.message.is_empty() {
                    snippet(&body)
                } else {
                    err.error.message.clone()
                },
                fix: graph_fix(status, &err.error.code, what),
                ids,
            });
        }
    }

    /// Whether Graph accepted `token` before; `accepted` records that it just did.
    fn prove(&self, token: &Secret, accepted: bool) -> bool {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        token.expose().hash(&mut h);
        let key = h.finish();
        let mut set = self.proven_tokens.lock().unwrap_or_else(|e| e.into_inner());
        if accepted {
            set.insert(key);
            true
        } else {
            set.contains(&key)
        }
    }

    /// Waits after a throttled/unavailable status, honouring Retry-After.
    async fn wait_status(
        &self,
        url: &Url,
        status: u16,
        retry_after: Option<Duration>,
        attempt: &mut u32,
        stats: &CallStats,
        ids: &RequestIds,
    ) -> Result<(), GraphError> {
        let wait = retry_after.unwrap_or_else(|| self.retry.backoff(*attempt));
        *attempt += 1;
        CallStats::bump(&stats.retries, 1);
        if !self.retry.reserve(wait) {
            return Err(GraphError::WaitCapExceeded {
                url: redact_query(url),
                status,
                waited_s: self.retry.waited().as_secs_f64(),
                next_wait_s: wait.as_secs_f64(),
                cap_s: self.retry.max_total_wait.as_secs(),
                fix: wait_cap_fix(url, status, wait),
                ids: ids.clone(),
            });
        }
        if status == 429 {
            CallStats::bump(&stats.throttled, 1);
        }
        CallStats::bump(&stats.waited_ms, wait.as_millis() as u64);
        tracing::debug!(url = %redact_query(url), status, wait_ms = wait.as_millis() as u64, "retrying after wait");
        tokio::time::sleep(wait).await;
        Ok(())
    }

    /// Waits after a network failure with exponential backoff.
    async fn wait_transient(
        &self,
        url: &Url,
        problem: &str,
        attempt: &mut u32,
        stats: &CallStats,
        ids: &RequestIds,
    ) -> Result<(), GraphError> {
        let wait = self.retry.backoff(*attempt);
        *attempt += 1;
        CallStats::bump(&stats.retries, 1);
        if !self.retry.reserve(wait) {
            return Err(GraphError::Transport {
                url: redact_query(url),
                problem: problem.to_string(),
                waited_s: self.retry.waited().as_secs_f64(),
                ids: ids.clone(),
            });
        }
        CallStats::bump(&stats.waited_ms, wait.as_millis() as u64);
        // A blip stays quiet; an outage (a refused connection, a proxy down) says so from the
        // third try on, instead of waiting out max_wait_seconds in silence.
        if *attempt >= 3 {
            tracing::warn!(host = url.host_str().unwrap_or(""), %problem, attempt = *attempt, retry_in_s = wait.as_secs_f64(), waited_s = self.retry.waited().as_secs_f64(), "connection failing; still retrying until [pipeline] max_wait_seconds is used up");
        } else {
            tracing::debug!(url = %redact_query(url), %problem, wait_ms = wait.as_millis() as u64, "transient failure; retrying");
        }
        tokio::time::sleep(wait).await;
        Ok(())
    }
}

/// What to do when throttling outlasts the wait cap. A report API's own budget (14 calls
/// per report per 10 minutes) is worth naming: waiting is the only cure, hammering never is.
fn wait_cap_fix(url: &Url, status: u16, wait: Duration) -> String {
    if status == 429 && url.path().contains("/reports/") {
        let at = chrono::Utc::now() + chrono::Duration::from_std(wait).unwrap_or_default();
        format!(
            "this report's call budget (14 calls per report per 10 minutes, shared with every tool using this app) is used up; it is free again at {} UTC. Run again after that, schedule runs at least 10 minutes apart, or raise [pipeline] max_wait_seconds so the run waits",
            at.format("%H:%M:%S")
        )
    } else {
        "run again later (Microsoft throttles per app and tenant; nights and weekends see less), or raise [pipeline] max_wait_seconds".into()
    }
}

fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, chrono::Utc::now()))
}

/// A reqwest error as one line, including the underlying cause (reset, timeout...).
fn describe(e: &reqwest::Error) -> String {
    use std::error::Error as _;
    let mut s = if e.is_timeout() {
        "request timed out ([pipeline] request_timeout_seconds)".to_string()
    } else if e.is_connect() {
        "cannot connect".to_string()
    } else {
        "connection failed".to_string()
    };
    let mut src = e.source();
    while let Some(cause) = src {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        src = cause.source();
    }
    s
}

/// A URL for messages: pre-authenticated download URLs and skip tokens are credentials of
/// a sort, so the query is dropped.
pub fn redact_query(url: &Url) -> String {
    let mut u = url.clone();
    if u.query().is_some() {
        u.set_query(Some("…"));
    }
    if u.path().starts_with("/data/download/") || u.path().contains("download") {
        u.set_path("/…");
    }
    // The URL serialiser percent-encodes the ellipsis; a message shows it as typed.
    u.to_string().replace("%E2%80%A6", "…")
}

/// The start of a body for an error message (HTML error pages, plain text).
pub fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(200)]);
    let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.is_empty() {
        "(empty body)".into()
    } else {
        one_line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacted_urls_read_as_typed() {
        let u = Url::parse("https://graph.microsoft.com/v1.0/users?$top=999&$skiptoken=X").unwrap();
        assert_eq!(redact_query(&u), "https://graph.microsoft.com/v1.0/users?…");
        let d = Url::parse("https://reports.office.com/data/download/abc?sig=s3cr3t").unwrap();
        assert_eq!(redact_query(&d), "https://reports.office.com/…?…");
    }
}
