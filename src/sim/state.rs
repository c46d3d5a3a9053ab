//! Shared state of a running simulator: options, counters, issued tokens, report budgets.
//!
//! Everything here is small and bounded by client behaviour (tokens issued, report calls in
//! the last ten minutes), never by tenant size.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::faults::{Decision, Faults, Target};
use super::prng::{Rng, mix, salt};
use super::tenant::Tenant;
use super::{SimOptions, SimStats};
use crate::streams::Report;

/// Report calls allowed per report API in [`REPORT_WINDOW`] (graph-api.md §4); the
/// simulator's defaults for [`SimOptions::report_budget`] and `report_window`.
pub const REPORT_BUDGET: usize = 14;
pub const REPORT_WINDOW: Duration = Duration::from_secs(600);
/// Graph's identity-reports limit, which listing users with `signInActivity` draws on.
pub const SIGN_IN_BUDGET: usize = 5;
pub const SIGN_IN_WINDOW: Duration = Duration::from_secs(10);

/// Counters behind [`SimStats`].
#[derive(Default)]
pub struct Counters {
    pub requests: Mutex<BTreeMap<String, u64>>,
    pub total_requests: AtomicU64,
    pub tokens_issued: AtomicU64,
    pub status_429: AtomicU64,
    pub status_503: AtomicU64,
    pub status_504: AtomicU64,
    pub resets: AtomicU64,
    pub truncated: AtomicU64,
    pub slow: AtomicU64,
    pub token_expired_401: AtomicU64,
    pub download_authorization_headers: AtomicU64,
    pub report_budget_429: AtomicU64,
    pub html_200: AtomicU64,
    pub download_expired: AtomicU64,
    pub delta_gone_410: AtomicU64,
    pub cut_close: AtomicU64,
    pub bad_length: AtomicU64,
    pub repeat_users_pages: AtomicU64,
    pub repeat_users: AtomicU64,
    pub repeat_users_changed_pages: AtomicU64,
    pub repeat_users_changed: AtomicU64,
    pub redirect_hops: AtomicU64,
    pub redirect_loops: AtomicU64,
    pub trickled: AtomicU64,
    pub html_download: AtomicU64,
    pub repeat_rows: AtomicU64,
    pub ranges: AtomicU64,
    pub count_requests: AtomicU64,
    pub ru_spent: AtomicU64,
    pub ru_throttled: AtomicU64,
    pub bytes_raw: AtomicU64,
    pub bytes_wire: AtomicU64,
    pub sign_in_requests: AtomicU64,
    pub sign_in_throttled: AtomicU64,
    pub expanded_pages: AtomicU64,
}

/// Increments one counter.
pub fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// Adds `n` to one counter.
pub fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

impl Counters {
    /// Counts one request of an endpoint family.
    pub fn request(&self, family: &str) {
        bump(&self.total_requests);
        let mut map = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        *map.entry(family.to_string()).or_default() += 1;
    }

    pub fn snapshot(&self) -> SimStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        SimStats {
            requests: self
                .requests
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
            total_requests: get(&self.total_requests),
            tokens_issued: get(&self.tokens_issued),
            status_429: get(&self.status_429),
            status_503: get(&self.status_503),
            status_504: get(&self.status_504),
            resets: get(&self.resets),
            truncated: get(&self.truncated),
            slow: get(&self.slow),
            token_expired_401: get(&self.token_expired_401),
            download_authorization_headers: get(&self.download_authorization_headers),
            report_budget_429: get(&self.report_budget_429),
            html_200: get(&self.html_200),
            download_expired: get(&self.download_expired),
            delta_gone_410: get(&self.delta_gone_410),
            cut_close: get(&self.cut_close),
            bad_length: get(&self.bad_length),
            repeat_users_pages: get(&self.repeat_users_pages),
            repeat_users: get(&self.repeat_users),
            repeat_users_changed_pages: get(&self.repeat_users_changed_pages),
            repeat_users_changed: get(&self.repeat_users_changed),
            redirect_hops: get(&self.redirect_hops),
            redirect_loops: get(&self.redirect_loops),
            trickled: get(&self.trickled),
            html_download: get(&self.html_download),
            repeat_rows: get(&self.repeat_rows),
            ranges: get(&self.ranges),
            count_requests: get(&self.count_requests),
            ru_spent: get(&self.ru_spent),
            ru_throttled: get(&self.ru_throttled),
            bytes_raw: get(&self.bytes_raw),
            bytes_wire: get(&self.bytes_wire),
            sign_in_requests: get(&self.sign_in_requests),
            sign_in_throttled: get(&self.sign_in_throttled),
            expanded_pages: get(&self.expanded_pages),
        }
    }
}

/// Everything a request handler needs.
pub struct State {
    pub opts: SimOptions,
    pub tenant: Tenant,
    /// The tenant's current epoch: what `/users` serves and where delta links lead.
    pub epoch: super::delta::Epoch,
    pub faults: RwLock<Faults>,
    pub graph_url: String,
    pub download_url: String,
    pub stats: Counters,
    /// Sequence number of fault-eligible requests: the fault dice are keyed by it.
    fault_seq: AtomicU64,
    /// Graph requests that arrived with a valid token (for `token-expiry=N`).
    valid_token_requests: AtomicU64,
    /// Throttled responses so far (cycles Retry-After in mixed mode).
    pub throttled: AtomicU64,
    /// Ids (request-id, trace ids, jti) are unique per simulator instance.
    id_seq: AtomicU64,
    instance: u64,
    /// jti -> revoked, for every token this simulator issued.
    tokens: Mutex<HashMap<String, bool>>,
    /// Downloads served so far per report: their fault dice are keyed by it.
    downloads: Mutex<HashMap<Report, u64>>,
    /// Accepted calls per report API in the last ten minutes.
    report_calls: Mutex<HashMap<Report, VecDeque<Instant>>>,
    /// When the sign-in budget's requests of the last window arrived.
    sign_in_calls: Mutex<VecDeque<Instant>>,
    /// Licence counts, computed once (one pass over the tenant) on first use.
    pub consumed_units: tokio::sync::OnceCell<Vec<u64>>,
    /// Canned responses installed by tests (`Simulator::set_override`).
    pub overrides: super::overrides::Overrides,
    /// Requests dispatched so far: the latency jitter is keyed by it.
    request_seq: AtomicU64,
    /// `/users` pages served (for `advance_epoch_after_users_pages`).
    users_pages: AtomicU64,
    /// Lowercased UPN prefixes for `$filter`, built on first use.
    pub upn_keys: super::filter::UpnKeys,
    /// The identity resource-unit bucket.
    pub budget: super::budget::Budget,
}

impl State {
    pub fn new(opts: SimOptions, graph_url: String, download_url: String) -> State {
        let mut tenant = Tenant {
            seed: opts.seed,
            users: opts.users,
            today: opts.today,
            concealed: opts.concealed,
        };
        if opts.skewed_upns {
            tenant = tenant.with_skewed_upns();
        }
        let capacity = opts
            .ru_budget
            .unwrap_or_else(|| super::budget::graph_capacity(opts.users));
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        State {
            faults: RwLock::new(opts.faults.clone()),
            tenant,
            epoch: super::delta::Epoch::new(opts.epoch),
            graph_url,
            download_url,
            stats: Counters::default(),
            fault_seq: AtomicU64::new(0),
            valid_token_requests: AtomicU64::new(0),
            throttled: AtomicU64::new(0),
            id_seq: AtomicU64::new(0),
            instance: mix(now ^ mix(opts.seed)),
            tokens: Mutex::new(HashMap::new()),
            downloads: Mutex::new(HashMap::new()),
            report_calls: Mutex::new(HashMap::new()),
            sign_in_calls: Mutex::new(VecDeque::new()),
            consumed_units: tokio::sync::OnceCell::new(),
            overrides: Default::default(),
            request_seq: AtomicU64::new(0),
            users_pages: AtomicU64::new(0),
            upn_keys: Default::default(),
            budget: super::budget::Budget::new(capacity, opts.ru_window),
            opts,
        }
    }

    /// The response time of the next request: latency ± a uniform jitter, never below 0.
    pub fn next_latency(&self) -> Duration {
        let n = self.request_seq.fetch_add(1, Ordering::Relaxed);
        let (l, j) = (self.opts.latency_ms, self.opts.jitter_ms);
        if j == 0 {
            return Duration::from_millis(l);
        }
        let draw =
            Rng::new(self.opts.seed, n, salt("latency-jitter")).range(0, j.saturating_mul(2));
        // latency + draw - j, clamped at 0
        Duration::from_millis(l.saturating_add(draw).saturating_sub(j))
    }

    /// Counts one served `/users` page; the page that reaches
    /// `advance_epoch_after_users_pages` moves the tenant on by one epoch (pinned), once.
    pub fn users_page_served(&self) {
        let n = self.users_pages.fetch_add(1, Ordering::Relaxed) + 1;
        if self.opts.advance_epoch_after_users_pages == Some(n) {
            self.epoch.set(self.epoch.get() + 1);
        }
    }

    pub fn faults(&self) -> Faults {
        self.faults
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Replaces the faults; `token-expiry=N` counts afresh from here.
    pub fn set_faults(&self, f: Faults) {
        *self.faults.write().unwrap_or_else(|e| e.into_inner()) = f;
        self.valid_token_requests.store(0, Ordering::Relaxed);
    }

    /// Rolls the fault dice for the next fault-eligible request.
    pub fn decide(&self, target: Target) -> (Faults, Decision) {
        let n = self.fault_seq.fetch_add(1, Ordering::Relaxed);
        let f = self.faults();
        let d = f.decide(self.opts.seed, n, target);
        (f, d)
    }

    /// Rolls the fault dice for the next download of report `r`. They are keyed by the
    /// report and how many of its downloads came before, not by the global sequence, so a
    /// seed cuts the same downloads of a report however the client interleaves its streams
    /// (a test of retries then is not left to the scheduler).
    pub fn decide_download(&self, r: Report) -> (Faults, Decision) {
        let k = {
            let mut m = self.downloads.lock().unwrap_or_else(|e| e.into_inner());
            let k = m.entry(r).or_insert(0);
            *k += 1;
            *k - 1
        };
        // Apart from the global sequence's numbers (which never reach 2^40).
        let n = (1u64 << 40) | ((r as u64) << 20) | k;
        let f = self.faults();
        let d = f.decide(self.opts.seed, n, Target::Download);
        (f, d)
    }

    /// A fresh GUID for request-id, trace and correlation ids.
    pub fn new_guid(&self) -> String {
        let n = self.id_seq.fetch_add(1, Ordering::Relaxed);
        Rng::new(self.instance, n, salt("ids")).guid()
    }

    /// A GUID that is stable for the tenant (subscription ids and the like).
    pub fn tenant_guid(&self, n: u64) -> String {
        Rng::new(self.opts.seed, n, salt("tenant-guid")).guid()
    }

    /// Records a newly issued token id.
    pub fn issue_token(&self) -> String {
        let jti = self.new_guid();
        self.tokens
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(jti.clone(), false);
        bump(&self.stats.tokens_issued);
        jti
    }

    /// `Some(revoked)` if this simulator issued the token.
    pub fn token_status(&self, jti: &str) -> Option<bool> {
        self.tokens
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(jti)
            .copied()
    }

    pub fn revoke_token(&self, jti: &str) {
        if let Some(r) = self
            .tokens
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(jti)
        {
            *r = true;
        }
    }

    /// Counts a request with a valid token; true if the token-expiry fault hits it.
    pub fn token_expiry_hits(&self, every: Option<u64>) -> bool {
        let n = self.valid_token_requests.fetch_add(1, Ordering::Relaxed) + 1;
        every.is_some_and(|e| e > 0 && n.is_multiple_of(e))
    }

    /// Admits a report call against its budget, or returns how long until one is free.
    pub fn admit_report_call(&self, r: Report) -> Result<(), Duration> {
        let now = Instant::now();
        let mut calls = self.report_calls.lock().unwrap_or_else(|e| e.into_inner());
        let q = calls.entry(r).or_default();
        while q
            .front()
            .is_some_and(|t| now.duration_since(*t) >= self.opts.report_window)
        {
            q.pop_front();
        }
        if q.len() >= self.opts.report_budget {
            let oldest = q.front().copied().unwrap_or(now);
            return Err(self
                .opts
                .report_window
                .saturating_sub(now.duration_since(oldest)));
        }
        q.push_back(now);
        Ok(())
    }

    /// Admits a `/users` request selecting `signInActivity` against its budget (a sliding
    /// window, like Graph's), or returns how long until one is free.
    pub fn admit_sign_in_call(&self) -> Result<(), Duration> {
        let now = Instant::now();
        let window = self.opts.sign_in_window;
        let mut q = self.sign_in_calls.lock().unwrap_or_else(|e| e.into_inner());
        while q.front().is_some_and(|t| now.duration_since(*t) >= window) {
            q.pop_front();
        }
        if q.len() >= self.opts.sign_in_budget {
            let oldest = q.front().copied().unwrap_or(now);
            return Err(window.saturating_sub(now.duration_since(oldest)));
        }
        q.push_back(now);
        Ok(())
    }

    /// A keyed MAC over a download token's payload, so download URLs can't be forged and
    /// need no server-side storage.
    pub fn mac(&self, payload: &[u8]) -> [u8; 8] {
        let mut h = Sha256::new();
        h.update(self.instance.to_le_bytes());
        h.update(b"download-token");
        h.update(payload);
        let d = h.finalize();
        let mut out = [0u8; 8];
        out.copy_from_slice(&d[..8]);
        out
    }
}
