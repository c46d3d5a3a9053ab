//! The Microsoft Graph source: sign-in, paging, usage reports and the retry loop they share.
//!
//! One [`GraphClient`] serves a whole run. It holds the cached token and the run-wide wait
//! budget, and counts requests per stream in [`CallStats`] for the manifest.

pub mod auth;
pub mod complete;
pub mod error;
pub mod paging;
pub mod rate_limit;
pub mod reports;
pub mod retry;
pub mod transport;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::Url;
use reqwest::header::HeaderMap;
use serde::Serialize;

use crate::config::{Config, Secret};
pub use error::{GraphError, RequestIds};
use error::{GraphErrorBody, graph_fix};
use retry::{RetryPolicy, Verdict, classify_status, parse_retry_after};
use transport::{NetFailure, NetPolicy, SystemResolver};

/// Request counters for one stream (or the login), reported in the run manifest.
#[derive(Debug, Default)]
pub struct CallStats {
    pub requests: AtomicU64,
    pub retries: AtomicU64,
    pub throttled: AtomicU64,
    pub waited_ms: AtomicU64,
    pub stalled: AtomicU64,
    pub stalled_ms: AtomicU64,
    /// Response body bytes as read, after reqwest's gzip decoding.
    pub bytes: AtomicU64,
}

/// A plain snapshot of [`CallStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct CallCounts {
    pub requests: u64,
    pub retries: u64,
    pub throttled: u64,
    pub waited_ms: u64,
    /// Requests cut at their deadline (no answer, or a body still trickling in): counted
    /// apart from throttling, as they cost time without Graph asking for a wait.
    #[serde(default)]
    pub stalled: u64,
    /// Time those requests took before they were cut.
    #[serde(default)]
    pub stalled_ms: u64,
    /// Body bytes received, decoded (Graph sends gzip when asked; reqwest decodes it, so
    /// the compressed size is not visible here: the simulator's stats measure it).
    #[serde(default)]
    pub bytes_decoded: u64,
}

impl CallStats {
    pub fn snapshot(&self) -> CallCounts {
        CallCounts {
            requests: self.requests.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            throttled: self.throttled.load(Ordering::Relaxed),
            waited_ms: self.waited_ms.load(Ordering::Relaxed),
            stalled: self.stalled.load(Ordering::Relaxed),
            stalled_ms: self.stalled_ms.load(Ordering::Relaxed),
            bytes_decoded: self.bytes.load(Ordering::Relaxed),
        }
    }
    pub(crate) fn bump(counter: &AtomicU64, by: u64) {
        counter.fetch_add(by, Ordering::Relaxed);
    }
}

/// Fresh tokens tried for one request when a token that never worked is refused with 401
/// (wrong tenant or cloud: more tokens will not help).
const MAX_TOKEN_REFRESHES: u32 = 3;

/// Fresh tokens tried for one request when tokens that had worked are refused (expired or
/// revoked mid-run): bounded too, but generously, as each one is a real renewal.
const MAX_TOKEN_RENEWALS: u32 = 10;

/// Unusable bodies (cut JSON, an HTML page with status 200, a body shorter than its
/// Content-Length, a download that ends inside a record) retried per request before the
/// request fails; each retry backs off and counts against the wait cap.
pub(crate) const MAX_BAD_BODIES: u32 = 5;

/// Redirect hops followed from a report's download URL (Graph's 302 is the first, not
/// counted); more is a misconfigured proxy or CDN, not a report.
const MAX_DOWNLOAD_HOPS: usize = 5;

/// A silent connection is given up after this long even when the request's total deadline
/// is further away (the total deadline is what bounds a trickle).
const MAX_READ_TIMEOUT: Duration = Duration::from_secs(60);

/// Connection and wait bounds of one client.
#[derive(Debug, Clone, Copy)]
struct Limits {
    connect: Duration,
    /// Total deadline of a Graph or token request.
    request: Duration,
    /// Total deadline of a report download.
    download: Duration,
    /// How long an unreachable host is retried (see [`NetPolicy::Bounded`]).
    unreachable: Duration,
}

/// Retry state of one request across its attempts.
#[derive(Debug, Default)]
pub(crate) struct Attempts {
    n: u32,
    /// When the host was first found unreachable (DNS, refused, TLS) in an unbroken row.
    unreachable_since: Option<Instant>,
}

/// Extra headers of one Graph request.
#[derive(Debug, Clone, Copy, Default)]
pub struct Headers {
    /// `Prefer: <value>`.
    pub prefer: Option<&'static str>,
    /// `ConsistencyLevel: eventual`: needed by `$count` and advanced queries, on every page.
    pub eventual: bool,
    /// The budget beyond resource units the request draws on (every attempt waits for it).
    pub budget: rate_limit::Budget,
}

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
    token: tokio::sync::Mutex<auth::TokenCache>,
    /// Sign-in attempts finished: a request that waited for another's sign-in shares its
    /// outcome instead of signing in again (single flight).
    sign_ins: AtomicU64,
    limits: Limits,
    /// Hashes of tokens Graph has accepted at least once: a 401 for one of those means
    /// expiry or revocation, not a misconfiguration.
    proven_tokens: std::sync::Mutex<std::collections::HashSet<u64>>,
    retry: RetryPolicy,
    /// Until when every request waits because one was throttled (429 or 503 with a wait):
    /// Graph's budget is per app and tenant, so the ranges of a partitioned walk slow down
    /// together instead of each finding the limit on its own.
    paused_until: std::sync::Mutex<Option<tokio::time::Instant>>,
    /// Requests that list sign-in activity: Graph allows 5 per 10 s per app and tenant.
    identity_reports: rate_limit::SlidingWindow,
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
        let p = &cfg.pipeline;
        GraphClient::build(
            cfg,
            secret,
            Limits {
                connect: Duration::from_secs(30),
                request: Duration::from_secs(p.request_timeout_seconds),
                download: Duration::from_secs(p.download_timeout_seconds),
                unreachable: Duration::from_secs(p.unreachable_seconds),
            },
        )
    }

    /// A client for `check`, the pre-flight checklist: an admin at the console wants its
    /// verdict in seconds, so a host that does not resolve, refuses or fails TLS is tried for
    /// a few seconds only (a couple of quick tries), and connecting gives up after 5 s.
    pub fn preflight(cfg: &Config, secret: Secret) -> Result<GraphClient, GraphError> {
        let p = &cfg.pipeline;
        GraphClient::build(
            cfg,
            secret,
            Limits {
                connect: Duration::from_secs(5),
                request: Duration::from_secs(p.request_timeout_seconds.min(30)),
                download: Duration::from_secs(p.download_timeout_seconds),
                unreachable: Duration::from_secs(p.unreachable_seconds.min(3)),
            },
        )
    }

    fn build(cfg: &Config, secret: Secret, limits: Limits) -> Result<GraphClient, GraphError> {
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
            // The total deadline bounds a trickling body; the read timeout a silent one.
            .timeout(limits.request)
            .read_timeout(limits.request.min(MAX_READ_TIMEOUT))
            .connect_timeout(limits.connect)
            .dns_resolver(Arc::new(SystemResolver))
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
            token: tokio::sync::Mutex::default(),
            sign_ins: AtomicU64::new(0),
            limits,
            proven_tokens: std::sync::Mutex::default(),
            retry: RetryPolicy::new(
                Duration::from_millis(cfg.pipeline.retry_base_ms),
                Duration::from_secs(cfg.pipeline.max_wait_seconds),
            ),
            paused_until: std::sync::Mutex::default(),
            identity_reports: rate_limit::SlidingWindow::identity_reports(),
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
        self.execute(url, stats, what, Headers::default(), accept)
            .await
    }

    /// [`GraphClient::get_graph`] with extra request headers: `Prefer` (e.g.
    /// `odata.maxpagesize=999` for `/users/delta`, which takes no `$top`) or
    /// `ConsistencyLevel: eventual` (advanced queries: `$count`, filters beyond the default).
    pub async fn get_graph_with<T>(
        &self,
        url: &Url,
        stats: &CallStats,
        what: &str,
        headers: Headers,
        accept: impl Fn(Reply) -> Result<T, (String, RequestIds)>,
    ) -> Result<T, GraphError> {
        self.execute(url, stats, what, headers, accept).await
    }

    /// GET a pre-authenticated download URL (never with the token), following the download
    /// host's own redirects: up to [`MAX_DOWNLOAD_HOPS`], https only (http to loopback), a
    /// loop is an error. Returns the response with its headers read and the URL it came from.
    pub(crate) async fn get_download(
        &self,
        first: &Url,
        stats: &CallStats,
        tries: &mut Attempts,
    ) -> Result<(reqwest::Response, Url), GraphError> {
        'retry: loop {
            let mut url = first.clone();
            let mut visited = vec![first.clone()];
            loop {
                let ids = RequestIds::fresh();
                CallStats::bump(&stats.requests, 1);
                let sent = self
                    .http
                    .get(url.clone())
                    .timeout(self.limits.download)
                    .send()
                    .await;
                let resp = match sent {
                    Ok(r) => r,
                    Err(e) => {
                        let failure = NetFailure::classify(&e, false);
                        self.after_net_failure(&url, failure, true, tries, stats, &ids)
                            .await?;
                        continue 'retry;
                    }
                };
                tries.unreachable_since = None;
                let status = resp.status().as_u16();
                if resp.status().is_success() {
                    return Ok((resp, url));
                }
                if resp.status().is_redirection() {
                    url = next_hop(&url, resp.headers(), &mut visited)?;
                    continue;
                }
                if matches!(status, 401 | 403 | 404 | 410) {
                    return Err(GraphError::DownloadExpired {
                        url: redact_query(&url),
                        status,
                    });
                }
                if status == 407 {
                    let failure = NetFailure::ProxyAuth;
                    return Err(GraphError::Unreachable {
                        problem: failure.problem(&url, self.limits.download),
                        fix: failure.fix(&url),
                        tried_s: 0.0,
                        ids,
                    });
                }
                if classify_status(status) == Verdict::Fail {
                    return Err(GraphError::Api {
                        method: "GET",
                        url: redact_query(&url),
                        status,
                        code: String::new(),
                        message: format!(
                            "the report download host {} refused the request",
                            transport::host_of(&url)
                        ),
                        fix: download_refusal_fix(status),
                        ids,
                    });
                }
                let ra = retry_after(resp.headers());
                self.wait_status(&url, status, ra, &mut tries.n, stats, &ids)
                    .await?;
                continue 'retry;
            }
        }
    }

    async fn execute<T>(
        &self,
        url: &Url,
        stats: &CallStats,
        what: &str,
        headers: Headers,
        accept: impl Fn(Reply) -> Result<T, (String, RequestIds)>,
    ) -> Result<T, GraphError> {
        let mut tries = Attempts::default();
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
            let req = match headers.prefer {
                Some(p) => req.header("Prefer", p),
                None => req,
            };
            let req = if headers.eventual {
                req.header("ConsistencyLevel", "eventual")
            } else {
                req
            };
            self.wait_for_pause().await;
            let permit = match headers.budget {
                rate_limit::Budget::IdentityReports => Some(self.identity_reports.acquire().await),
                rate_limit::Budget::ResourceUnits => None,
            };
            let token = self.token().await?;
            let req = req.bearer_auth(token.expose());
            CallStats::bump(&stats.requests, 1);
            let sent = req.send().await;
            if let Some(p) = permit {
                self.identity_reports.answered(p).await;
            }
            let resp = match sent {
                Ok(r) => r,
                Err(e) => {
                    let failure = NetFailure::classify(&e, false);
                    self.after_net_failure(url, failure, false, &mut tries, stats, &ids)
                        .await?;
                    continue;
                }
            };
            tries.unreachable_since = None;
            let status = resp.status().as_u16();
            let headers = resp.headers().clone();
            ids.request_id = headers
                .get("request-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let declared = declared_length(&resp);
            let body = match resp.bytes().await {
                Ok(b) => {
                    CallStats::bump(&stats.bytes, b.len() as u64);
                    b
                }
                Err(e) => {
                    // Connection reset, a body shorter than its Content-Length, a chunked
                    // stream ending in error, or a trickle past the deadline: the whole
                    // request is retried.
                    let failure = NetFailure::classify(&e, true);
                    self.after_net_failure(url, failure, false, &mut tries, stats, &ids)
                        .await?;
                    continue;
                }
            };
            if (200..400).contains(&status) {
                self.prove(&token, true);
                // A body is used only when proven complete; hyper already refuses a short
                // one, this names the mismatch if anything between lets one through.
                let cut = declared.filter(|n| *n != body.len() as u64).map(|n| {
                    format!(
                        "received {} of the {n} bytes its Content-Length announced",
                        body.len()
                    )
                });
                let verdict = match cut {
                    Some(problem) => Err((problem, ids)),
                    None => accept(Reply {
                        status,
                        headers,
                        body,
                        ids,
                    }),
                };
                match verdict {
                    Ok(v) => return Ok(v),
                    Err((problem, ids)) => {
                        bad_bodies += 1;
                        if bad_bodies > MAX_BAD_BODIES {
                            return Err(GraphError::BadBody {
                                url: redact_query(url),
                                problem,
                                fix: "Graph (or a proxy in between) returned something other than the documented answer; check proxies, then run again and report the request id if it persists".into(),
                                ids,
                            });
                        }
                        tracing::warn!(url = %redact_query(url), %problem, "unusable response body; retrying");
                        self.wait_transient(url, &problem, &mut tries.n, stats, &ids)
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
                self.wait_status(url, status, ra, &mut tries.n, stats, &ids)
                    .await?;
                continue;
            }
            if status == 407 {
                let failure = NetFailure::ProxyAuth;
                return Err(GraphError::Unreachable {
                    problem: failure.problem(url, self.limits.request),
                    fix: failure.fix(url),
                    tried_s: 0.0,
                    ids,
                });
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

    /// Decides about a failed attempt at the transport level: fail now (proxy credentials),
    /// retry for at most `unreachable_seconds` (DNS, refused, TLS), or retry under the run's
    /// wait cap (resets, stalls). A stall is logged and counted apart from throttling.
    pub(crate) async fn after_net_failure(
        &self,
        url: &Url,
        failure: NetFailure,
        download: bool,
        tries: &mut Attempts,
        stats: &CallStats,
        ids: &RequestIds,
    ) -> Result<(), GraphError> {
        let deadline = if download {
            self.limits.download
        } else {
            self.limits.request
        };
        let problem = failure.problem(url, deadline);
        if let NetFailure::Stalled { .. } = failure {
            CallStats::bump(&stats.stalled, 1);
            CallStats::bump(&stats.stalled_ms, deadline.as_millis() as u64);
            tracing::warn!(host = %transport::host_of(url), path = url.path(), seconds = deadline.as_secs_f64(), "request stalled; retrying");
        }
        match failure.policy() {
            NetPolicy::Transient => {
                self.wait_transient(url, &problem, &mut tries.n, stats, ids)
                    .await
            }
            NetPolicy::FailNow => Err(GraphError::Unreachable {
                problem,
                fix: failure.fix(url),
                tried_s: 0.0,
                ids: ids.clone(),
            }),
            NetPolicy::Bounded => {
                let since = *tries.unreachable_since.get_or_insert_with(Instant::now);
                let wait = self.retry.backoff(tries.n);
                let tried = since.elapsed();
                if tried + wait > self.limits.unreachable || !self.retry.reserve(wait) {
                    return Err(GraphError::Unreachable {
                        problem,
                        fix: failure.fix(url),
                        tried_s: tried.as_secs_f64(),
                        ids: ids.clone(),
                    });
                }
                tries.n += 1;
                CallStats::bump(&stats.retries, 1);
                CallStats::bump(&stats.waited_ms, wait.as_millis() as u64);
                tracing::warn!(kind = failure.kind(), %problem, retry_in_s = wait.as_secs_f64(), gives_up_in_s = (self.limits.unreachable.saturating_sub(tried)).as_secs_f64(), "cannot reach the host; retrying for [pipeline] unreachable_seconds");
                tokio::time::sleep(wait).await;
                Ok(())
            }
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
        if status == 429 || retry_after.is_some() {
            self.pause_all(wait);
        }
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

    /// Holds every request of this client back for `wait` (see `paused_until`).
    fn pause_all(&self, wait: Duration) {
        let until = tokio::time::Instant::now() + wait;
        let mut p = self.paused_until.lock().unwrap_or_else(|e| e.into_inner());
        if p.is_none_or(|t| t < until) {
            *p = Some(until);
        }
    }

    /// Waits while another request's throttling pauses the client.
    async fn wait_for_pause(&self) {
        let until = *self.paused_until.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(t) = until
            && t > tokio::time::Instant::now()
        {
            tokio::time::sleep_until(t).await;
        }
    }

    /// Waits after a transient failure (a reset, a stall, an unusable body) with exponential
    /// backoff under the run's wait cap.
    pub(crate) async fn wait_transient(
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

/// The next URL of a download redirect chain, or why it must not be followed.
fn next_hop(from: &Url, headers: &HeaderMap, visited: &mut Vec<Url>) -> Result<Url, GraphError> {
    let refuse = |problem: String| GraphError::DownloadRedirect {
        url: redact_query(from),
        problem,
    };
    let location = headers
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| refuse("a redirect without a Location header".into()))?;
    let next = from
        .join(location)
        .map_err(|e| refuse(format!("a redirect to an invalid URL ({e})")))?;
    match next.scheme() {
        "https" => {}
        "http" if crate::config::is_loopback(&next) => {}
        other => {
            return Err(refuse(format!(
                "a redirect to {} over {other}: only https is followed",
                redact_query(&next)
            )));
        }
    }
    if visited.contains(&next) {
        return Err(refuse(format!(
            "a redirect loop: {} points back to a URL already visited",
            redact_query(from)
        )));
    }
    if visited.len() > MAX_DOWNLOAD_HOPS {
        return Err(refuse(format!(
            "more than {MAX_DOWNLOAD_HOPS} redirects after Graph's"
        )));
    }
    visited.push(next.clone());
    Ok(next)
}

/// The fix for a download host's 4xx that is not an expired URL.
fn download_refusal_fix(status: u16) -> String {
    match status {
        400 => "the download URL was altered on the way: check that no proxy rewrites URLs or strips their query, then run again".into(),
        405 | 406 | 415 => "a proxy or content filter changed the request: allow reports.office.com through unmodified".into(),
        429 => "the download host is throttling; run again later".into(),
        _ => "a proxy or content filter between this machine and the download host refuses it: allow reports.office.com (and its redirects) through, then run again".into(),
    }
}

/// The body length a response announces, when the bytes we read are the bytes it counts
/// (no Content-Encoding: a decoded body has another length).
fn declared_length(resp: &reqwest::Response) -> Option<u64> {
    if resp
        .headers()
        .contains_key(reqwest::header::CONTENT_ENCODING)
    {
        return None;
    }
    resp.headers()
        .get(reqwest::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, chrono::Utc::now()))
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
