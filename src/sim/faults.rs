//! Fault injection: what can go wrong, how often, and the deterministic dice that decide.
//!
//! A fault spec is a comma-separated list of `key=value` items (see [`Faults::from_str`]).
//! Each request draws its faults from a splitmix64 stream keyed by the seed and the request's
//! sequence number, so a failing run can be replayed with the same seed and request order.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};

use super::prng::{Rng, salt};

/// How a throttled or unavailable response advertises `Retry-After`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RetryAfterMode {
    /// Whole seconds, rounded up: `Retry-After: 2`.
    Integer,
    /// Fractional seconds, as in Graph's throttling sample: `Retry-After: 2.128`.
    Decimal,
    /// An RFC 7231 date: `Retry-After: Wed, 21 Oct 2026 07:28:00 GMT`.
    HttpDate,
    /// No header at all: the client must back off on its own.
    Absent,
    /// Cycles Integer, Decimal, HttpDate, Absent across successive responses.
    #[default]
    Mixed,
}

impl FromStr for RetryAfterMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "integer" | "int" | "seconds" => Ok(RetryAfterMode::Integer),
            "decimal" | "fractional" => Ok(RetryAfterMode::Decimal),
            "http-date" | "httpdate" | "date" => Ok(RetryAfterMode::HttpDate),
            "absent" | "none" => Ok(RetryAfterMode::Absent),
            "mixed" => Ok(RetryAfterMode::Mixed),
            _ => Err(format!(
                "unknown retry-after mode '{s}' (expected integer, decimal, http-date, absent or mixed)"
            )),
        }
    }
}

impl fmt::Display for RetryAfterMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RetryAfterMode::Integer => "integer",
            RetryAfterMode::Decimal => "decimal",
            RetryAfterMode::HttpDate => "http-date",
            RetryAfterMode::Absent => "absent",
            RetryAfterMode::Mixed => "mixed",
        })
    }
}

/// What to inject. Probabilities are per request, 0.0–1.0; all zero by default.
#[derive(Debug, Clone, PartialEq)]
pub struct Faults {
    /// 429 TooManyRequests with Retry-After.
    pub p429: f64,
    /// 503 serviceNotAvailable with Retry-After.
    pub p503: f64,
    /// 504 gatewayTimeout with Retry-After.
    pub p504: f64,
    /// Headers and part of the body are sent, then the connection is dropped.
    pub reset: f64,
    /// A JSON body cut mid-document, with a matching Content-Length and a 200.
    pub truncate: f64,
    /// The response is delayed by `slow_ms`.
    pub slow: f64,
    pub slow_ms: u64,
    /// Every Nth Graph request with a valid token is answered 401 as if the token had
    /// expired; that token stays dead, so the client must fetch a new one.
    pub token_expiry_every: Option<u64>,
    pub retry_after: RetryAfterMode,
    /// Seconds advertised in Retry-After.
    pub retry_after_secs: f64,
    /// The token endpoint answers AADSTS7000222 (expired client secret).
    pub expired_secret: bool,
    /// A Graph JSON response is replaced by an HTML error page with status 200.
    pub html_200: f64,
    /// A valid report download URL answers 404 as if it had expired.
    pub download_expired: f64,
    /// A `/users` page holds fewer users than `$top` (sometimes none) but still links on.
    pub short_page: f64,
    /// A `/users/delta` delta link answers 410 Gone: the client must resync in full.
    pub delta_expired: f64,
    /// A report download is sent close-delimited (HTTP/1.0, `Connection: close`, neither
    /// Content-Length nor chunked) and cut inside a data record at about half the report; the
    /// connection then ends with a clean EOF, so the client sees no error, only a last line
    /// without a line break and with fewer cells than the header.
    pub cut_close: f64,
    /// A Graph JSON response or a download advertises a Content-Length 1000 bytes larger than
    /// the body it sends, then the connection closes: reqwest's body read fails.
    pub bad_length: f64,
    /// A `/users` next page (not `/users/delta`, not the first page) starts with the last 1–3
    /// users of the previous page again, byte-identical, as eventually consistent paging does.
    pub repeat_users: f64,
    /// As `repeat_users`, but the repeated copy differs from the one served before: its
    /// `jobTitle` (or, when not selected, its `displayName`) ends in " (updated)".
    pub repeat_users_changed: f64,
    /// Every report download URL first answers `302 Found` this many times (0–10), each hop
    /// to another path on the download host, before the CSV is served.
    pub redirects: u8,
    /// A download answers `302 Found` with its own URL as Location: a loop.
    pub redirect_loop: f64,
    /// A Graph JSON response or download body is sent slowly: 256 bytes at once, then
    /// `trickle_bytes` every `trickle_ms`.
    pub trickle: f64,
    pub trickle_ms: u64,
    pub trickle_bytes: u64,
    /// A download answers 200 `text/html` with a proxy's sign-in page instead of the CSV.
    pub html_download: f64,
    /// A report download serves every 25th data row that names a user twice in a row,
    /// byte-identical (an `(Unknown)` row is not repeated: its copies cannot be told apart
    /// from two unknown users).
    pub repeat_rows: f64,
}

/// Most hops `redirects=N` accepts.
pub const MAX_REDIRECTS: u8 = 10;

impl Default for Faults {
    fn default() -> Self {
        Faults {
            p429: 0.0,
            p503: 0.0,
            p504: 0.0,
            reset: 0.0,
            truncate: 0.0,
            slow: 0.0,
            slow_ms: 30_000,
            token_expiry_every: None,
            retry_after: RetryAfterMode::Mixed,
            retry_after_secs: 1.0,
            expired_secret: false,
            html_200: 0.0,
            download_expired: 0.0,
            short_page: 0.0,
            delta_expired: 0.0,
            cut_close: 0.0,
            bad_length: 0.0,
            repeat_users: 0.0,
            repeat_users_changed: 0.0,
            redirects: 0,
            redirect_loop: 0.0,
            trickle: 0.0,
            trickle_ms: 200,
            trickle_bytes: 16,
            html_download: 0.0,
            repeat_rows: 0.0,
        }
    }
}

/// A fault spec that could not be parsed; names the offending item.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid fault spec item '{item}': {reason}")]
pub struct FaultSpecError {
    pub item: String,
    pub reason: String,
}

fn probability(item: &str, v: &str) -> Result<f64, FaultSpecError> {
    let p: f64 = v.parse().map_err(|_| FaultSpecError {
        item: item.to_string(),
        reason: format!("'{v}' is not a number"),
    })?;
    if !(0.0..=1.0).contains(&p) {
        return Err(FaultSpecError {
            item: item.to_string(),
            reason: format!("probability {p} is outside 0.0..=1.0"),
        });
    }
    Ok(p)
}

impl FromStr for Faults {
    type Err = FaultSpecError;

    /// Parses `429=0.1,503=0.05,504=0.01,reset=0.02,truncate=0.01,slow=0.01,slow-ms=2000,
    /// token-expiry=50,retry-after=mixed,retry-after-secs=0.2,expired-secret,html200=0.01,
    /// download-expired=0.1,short-page=0.1,delta-expired=0.1,cut-close=0.05,bad-length=0.01,
    /// repeat-users=0.1,repeat-users-changed=0.05,redirects=3,redirect-loop=0.01,trickle=0.01,
    /// trickle-ms=200,trickle-bytes=16,html-download=0.01,repeat-rows=0.1`. Empty items are ignored; `none` or
    /// an empty string means no faults.
    ///
    /// Probabilities are per request (0.0–1.0). At most one failure hits a request; the
    /// faults that existed before `cut-close` are rolled first and win, so a seed injects
    /// the same old faults whatever new keys are added. `redirects=N` is a whole number
    /// 0–10 (every download, not a probability); `trickle-ms` and `trickle-bytes` (at least 1)
    /// shape `trickle`.
    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let mut f = Faults::default();
        for raw in spec.split(',') {
            let item = raw.trim();
            if item.is_empty() || item.eq_ignore_ascii_case("none") {
                continue;
            }
            let (key, value) = match item.split_once('=') {
                Some((k, v)) => (k.trim().to_ascii_lowercase(), Some(v.trim())),
                None => (item.to_ascii_lowercase(), None),
            };
            let bad = |reason: &str| FaultSpecError {
                item: item.to_string(),
                reason: reason.to_string(),
            };
            let need = || value.ok_or_else(|| bad("expected key=value"));
            match key.as_str() {
                "429" => f.p429 = probability(item, need()?)?,
                "503" => f.p503 = probability(item, need()?)?,
                "504" => f.p504 = probability(item, need()?)?,
                "reset" => f.reset = probability(item, need()?)?,
                "truncate" => f.truncate = probability(item, need()?)?,
                "slow" => f.slow = probability(item, need()?)?,
                "html200" | "html-200" => f.html_200 = probability(item, need()?)?,
                "download-expired" => f.download_expired = probability(item, need()?)?,
                "short-page" => f.short_page = probability(item, need()?)?,
                "delta-expired" => f.delta_expired = probability(item, need()?)?,
                "cut-close" => f.cut_close = probability(item, need()?)?,
                "bad-length" => f.bad_length = probability(item, need()?)?,
                "repeat-users" => f.repeat_users = probability(item, need()?)?,
                "repeat-users-changed" => f.repeat_users_changed = probability(item, need()?)?,
                "redirect-loop" => f.redirect_loop = probability(item, need()?)?,
                "trickle" => f.trickle = probability(item, need()?)?,
                "html-download" => f.html_download = probability(item, need()?)?,
                "repeat-rows" => f.repeat_rows = probability(item, need()?)?,
                "redirects" => {
                    f.redirects = need()?
                        .parse()
                        .ok()
                        .filter(|n| *n <= MAX_REDIRECTS)
                        .ok_or_else(|| bad("redirects must be a whole number from 0 to 10"))?
                }
                "trickle-ms" => {
                    f.trickle_ms = need()?
                        .parse()
                        .map_err(|_| bad("trickle-ms must be a whole number of milliseconds"))?
                }
                "trickle-bytes" => {
                    f.trickle_bytes = need()?
                        .parse()
                        .ok()
                        .filter(|n| (1..=1 << 20).contains(n))
                        .ok_or_else(|| {
                            bad("trickle-bytes must be a whole number from 1 to 1048576")
                        })?
                }
                "slow-ms" => {
                    f.slow_ms = need()?
                        .parse()
                        .map_err(|_| bad("slow-ms must be a whole number of milliseconds"))?
                }
                "token-expiry" => {
                    let n: u64 = need()?.parse().map_err(|_| {
                        bad("token-expiry must be a whole number N (every Nth request)")
                    })?;
                    f.token_expiry_every = if n == 0 { None } else { Some(n) };
                }
                "retry-after" => f.retry_after = need()?.parse().map_err(|e: String| bad(&e))?,
                "retry-after-secs" => {
                    let s: f64 = need()?
                        .parse()
                        .map_err(|_| bad("retry-after-secs must be a number of seconds"))?;
                    if !(0.0..=86_400.0).contains(&s) {
                        return Err(bad("retry-after-secs must be between 0 and 86400"));
                    }
                    f.retry_after_secs = s;
                }
                "expired-secret" => {
                    f.expired_secret = match value {
                        None => true,
                        Some(v) => v
                            .parse()
                            .map_err(|_| bad("expired-secret takes no value, or true/false"))?,
                    }
                }
                _ => {
                    return Err(bad(
                        "unknown fault (known: 429, 503, 504, reset, truncate, slow, slow-ms, token-expiry, \
                         retry-after, retry-after-secs, expired-secret, html200, download-expired, short-page, \
                         delta-expired, cut-close, bad-length, repeat-users, repeat-users-changed, redirects, \
                         redirect-loop, trickle, trickle-ms, trickle-bytes, html-download, repeat-rows)",
                    ));
                }
            }
        }
        Ok(f)
    }
}

impl fmt::Display for Faults {
    /// The canonical spec, parseable by `from_str`; `none` when nothing is injected.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut items = Vec::new();
        for (k, v) in [
            ("429", self.p429),
            ("503", self.p503),
            ("504", self.p504),
            ("reset", self.reset),
            ("truncate", self.truncate),
            ("slow", self.slow),
            ("html200", self.html_200),
            ("download-expired", self.download_expired),
            ("short-page", self.short_page),
            ("delta-expired", self.delta_expired),
            ("cut-close", self.cut_close),
            ("bad-length", self.bad_length),
            ("repeat-users", self.repeat_users),
            ("repeat-users-changed", self.repeat_users_changed),
            ("redirect-loop", self.redirect_loop),
            ("trickle", self.trickle),
            ("html-download", self.html_download),
            ("repeat-rows", self.repeat_rows),
        ] {
            if v > 0.0 {
                items.push(format!("{k}={v}"));
            }
        }
        if self.slow > 0.0 {
            items.push(format!("slow-ms={}", self.slow_ms));
        }
        if let Some(n) = self.token_expiry_every {
            items.push(format!("token-expiry={n}"));
        }
        let default = Faults::default();
        if self.redirects > 0 {
            items.push(format!("redirects={}", self.redirects));
        }
        if self.trickle > 0.0 || self.trickle_ms != default.trickle_ms {
            items.push(format!("trickle-ms={}", self.trickle_ms));
        }
        if self.trickle > 0.0 || self.trickle_bytes != default.trickle_bytes {
            items.push(format!("trickle-bytes={}", self.trickle_bytes));
        }
        if self.expired_secret {
            items.push("expired-secret".to_string());
        }
        if !items.is_empty()
            || self.retry_after != default.retry_after
            || self.retry_after_secs != default.retry_after_secs
        {
            items.push(format!("retry-after={}", self.retry_after));
            items.push(format!("retry-after-secs={}", self.retry_after_secs));
        }
        if items.is_empty() {
            return f.write_str("none");
        }
        f.write_str(&items.join(","))
    }
}

/// The failure (if any) chosen for one request. At most one; `slow` is separate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    Status429,
    Status503,
    Status504,
    Html200,
    DownloadExpired,
    DeltaExpired,
    Reset,
    Truncate,
    /// Downloads: a close-delimited body cut inside a record, ending in a clean EOF.
    CutClose,
    /// JSON and downloads: Content-Length larger than the body sent.
    BadLength,
    /// Downloads: 302 to the same URL.
    RedirectLoop,
    /// JSON and downloads: the body sent a few bytes at a time.
    Trickle,
    /// Downloads: a proxy sign-in page, 200 `text/html`.
    HtmlDownload,
}

/// The `repeat-users` faults' choice for one `/users` page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repeat {
    /// How many of the previous page's last users come again (1–3).
    pub users: u8,
    /// The copies differ from what was served before (`repeat-users-changed`).
    pub changed: bool,
}

/// Which kind of response a request would get, to pick only applicable faults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// A Graph JSON response.
    GraphJson,
    /// A Graph JSON response to a `/users/delta` delta link (may also be a 410).
    DeltaLink,
    /// The report call's 302.
    ReportRedirect,
    /// The CSV download.
    Download,
}

/// The dice for request number `n`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub failure: Option<Failure>,
    pub slow: bool,
    /// Where a short `/users` page ends, as a fraction of `$top` (`None`: a full page).
    pub short_page: Option<u16>,
    /// `cut-close`: cut inside a quoted field (if the record has one) rather than mid-field.
    pub cut_quoted: bool,
    /// Users of the previous `/users` page to serve again at the start of this one.
    pub repeat: Option<Repeat>,
    /// Downloads: some rows of the CSV are served twice (`repeat-rows`).
    pub repeat_rows: bool,
}

impl Faults {
    /// Rolls the dice for request `n` of a simulator seeded with `seed`.
    pub fn decide(&self, seed: u64, n: u64, target: Target) -> Decision {
        let mut r = Rng::new(seed, n, salt("faults"));
        // Draw every die in a fixed order so one fault's probability doesn't shift another's.
        let rolls = [
            r.unit(),
            r.unit(),
            r.unit(),
            r.unit(),
            r.unit(),
            r.unit(),
            r.unit(),
            r.unit(),
            r.unit(),
        ];
        let slow = r.unit() < self.slow;
        let short = r.unit() < self.short_page;
        let short_at = (r.below(100)) as u16;
        let json = matches!(target, Target::GraphJson | Target::DeltaLink);
        let candidates = [
            (Failure::Status429, self.p429, true),
            (Failure::Status503, self.p503, true),
            (Failure::Status504, self.p504, true),
            (Failure::Html200, self.html_200, json),
            (
                Failure::DownloadExpired,
                self.download_expired,
                target == Target::Download,
            ),
            (
                Failure::DeltaExpired,
                self.delta_expired,
                target == Target::DeltaLink,
            ),
            (Failure::Reset, self.reset, true),
            (Failure::Truncate, self.truncate, json),
        ];
        // The newer faults' dice come after all of the above, so adding them changed no
        // earlier decision; they only hit a request the older faults left alone.
        let newer_rolls = [r.unit(), r.unit(), r.unit(), r.unit(), r.unit()];
        let download = target == Target::Download;
        let body = json || download;
        let newer = [
            (Failure::HtmlDownload, self.html_download, download),
            (Failure::RedirectLoop, self.redirect_loop, download),
            (Failure::BadLength, self.bad_length, body),
            (Failure::CutClose, self.cut_close, download),
            (Failure::Trickle, self.trickle, body),
        ];
        let cut_quoted = r.unit() < 0.5;
        let repeat_same = r.unit() < self.repeat_users;
        let repeat_changed = r.unit() < self.repeat_users_changed;
        let repeat_n = 1 + r.below(3) as u8;
        let repeat_rows = target == Target::Download && r.unit() < self.repeat_rows;
        let failure = candidates
            .iter()
            .zip(rolls)
            .chain(newer.iter().zip(newer_rolls))
            .find(|((_, p, applies), roll)| *applies && *roll < *p)
            .map(|((f, _, _), _)| *f);
        Decision {
            failure,
            slow,
            short_page: short.then_some(short_at),
            cut_quoted,
            repeat: (repeat_same || repeat_changed).then_some(Repeat {
                users: repeat_n,
                changed: repeat_changed,
            }),
            repeat_rows,
        }
    }
}

/// Renders the Retry-After header for the `k`-th throttled response (`None` = omit it).
pub fn retry_after_value(
    mode: RetryAfterMode,
    secs: f64,
    k: u64,
    now: DateTime<Utc>,
) -> Option<String> {
    let mode = match mode {
        RetryAfterMode::Mixed => [
            RetryAfterMode::Integer,
            RetryAfterMode::Decimal,
            RetryAfterMode::HttpDate,
            RetryAfterMode::Absent,
        ][(k % 4) as usize],
        m => m,
    };
    let secs = secs.max(0.0);
    match mode {
        RetryAfterMode::Integer => Some(format!("{}", secs.ceil() as u64)),
        RetryAfterMode::Decimal => Some(format!("{secs:.3}")),
        RetryAfterMode::HttpDate => {
            // Round the target instant up to a whole second so the client never waits less.
            let target_ms = now.timestamp_millis() + (secs * 1000.0).ceil() as i64;
            let whole = (target_ms + 999).div_euclid(1000);
            let at = DateTime::<Utc>::from_timestamp(whole, 0).unwrap_or(now);
            Some(at.format("%a, %d %b %Y %H:%M:%S GMT").to_string())
        }
        RetryAfterMode::Absent | RetryAfterMode::Mixed => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_full_spec() {
        let f: Faults =
            "429=0.1,503=0.05,504=0.01,reset=0.02,truncate=0.01,slow=0.01,slow-ms=2000,\
                         token-expiry=50,retry-after=mixed,retry-after-secs=0.2,expired-secret,\
                         html200=0.01,download-expired=0.1,short-page=0.2,delta-expired=0.3,\
                         cut-close=0.05,bad-length=0.06,repeat-users=0.07,repeat-users-changed=0.08,\
                         redirects=3,redirect-loop=0.09,trickle=0.11,trickle-ms=50,trickle-bytes=4,\
                         html-download=0.12"
                .parse()
                .unwrap();
        assert_eq!(f.p429, 0.1);
        assert_eq!(f.p503, 0.05);
        assert_eq!(f.p504, 0.01);
        assert_eq!(f.reset, 0.02);
        assert_eq!(f.truncate, 0.01);
        assert_eq!(f.slow, 0.01);
        assert_eq!(f.slow_ms, 2000);
        assert_eq!(f.token_expiry_every, Some(50));
        assert_eq!(f.retry_after, RetryAfterMode::Mixed);
        assert_eq!(f.retry_after_secs, 0.2);
        assert!(f.expired_secret);
        assert_eq!(f.html_200, 0.01);
        assert_eq!(f.download_expired, 0.1);
        assert_eq!(f.short_page, 0.2);
        assert_eq!(f.delta_expired, 0.3);
        assert_eq!(f.cut_close, 0.05);
        assert_eq!(f.bad_length, 0.06);
        assert_eq!(f.repeat_users, 0.07);
        assert_eq!(f.repeat_users_changed, 0.08);
        assert_eq!(f.redirects, 3);
        assert_eq!(f.redirect_loop, 0.09);
        assert_eq!(f.trickle, 0.11);
        assert_eq!(f.trickle_ms, 50);
        assert_eq!(f.trickle_bytes, 4);
        assert_eq!(f.html_download, 0.12);
        // Display round-trips.
        let again: Faults = f.to_string().parse().unwrap();
        assert_eq!(again, f);
    }

    #[test]
    fn new_keys_round_trip_alone_and_have_defaults() {
        let d = Faults::default();
        assert_eq!((d.redirects, d.trickle_ms, d.trickle_bytes), (0, 200, 16));
        for spec in [
            "cut-close=1",
            "bad-length=0.5",
            "repeat-users=0.25",
            "repeat-users-changed=1",
            "redirects=10",
            "redirects=0",
            "redirect-loop=0.01",
            "trickle=1",
            "trickle-ms=5",
            "trickle-bytes=1",
            "html-download=1",
        ] {
            let f: Faults = spec.parse().unwrap();
            let again: Faults = f.to_string().parse().unwrap();
            assert_eq!(again, f, "{spec} -> {f}");
        }
        let f: Faults = "trickle=1".parse().unwrap();
        assert_eq!(
            f.to_string(),
            "trickle=1,trickle-ms=200,trickle-bytes=16,retry-after=mixed,retry-after-secs=1"
        );
        assert_eq!("redirects=0".parse::<Faults>().unwrap().to_string(), "none");
    }

    #[test]
    fn old_seeds_inject_the_same_old_faults() {
        // Adding the newer faults (at probability 1 even) changes no decision of the older
        // ones: same failure where an old fault hit, same slow and short-page dice.
        let old: Faults = "429=0.1,503=0.1,reset=0.1,truncate=0.1,slow=0.2,short-page=0.3,\
                           html200=0.1,download-expired=0.1"
            .parse()
            .unwrap();
        let mut new = old.clone();
        new.cut_close = 1.0;
        new.bad_length = 1.0;
        new.trickle = 1.0;
        new.html_download = 1.0;
        new.redirect_loop = 1.0;
        new.repeat_users = 1.0;
        for target in [Target::GraphJson, Target::Download, Target::ReportRedirect] {
            for n in 0..2000 {
                let a = old.decide(5, n, target);
                let b = new.decide(5, n, target);
                assert_eq!((a.slow, a.short_page), (b.slow, b.short_page));
                if a.failure.is_some() {
                    assert_eq!(a.failure, b.failure, "{target:?} {n}");
                } else {
                    // The 302 of a report call has no body: none of the new faults apply.
                    let expected = match target {
                        Target::Download => Some(Failure::HtmlDownload),
                        Target::GraphJson => Some(Failure::BadLength),
                        _ => None,
                    };
                    assert_eq!(b.failure, expected, "{target:?} {n}");
                }
                assert!(a.repeat.is_none());
                assert!(
                    b.repeat
                        .is_some_and(|r| (1..=3).contains(&r.users) && !r.changed)
                );
            }
        }
    }

    #[test]
    fn new_faults_apply_only_where_they_belong() {
        let f: Faults = "cut-close=0.3,bad-length=0.2,redirect-loop=0.1,trickle=0.2,\
                         html-download=0.1,repeat-users=0.3,repeat-users-changed=0.3"
            .parse()
            .unwrap();
        let count = |target, which| {
            (0..4000)
                .filter(|n| f.decide(11, *n, target).failure == Some(which))
                .count()
        };
        for only_downloads in [
            Failure::CutClose,
            Failure::RedirectLoop,
            Failure::HtmlDownload,
        ] {
            assert!(
                count(Target::Download, only_downloads) > 100,
                "{only_downloads:?}"
            );
            assert_eq!(count(Target::GraphJson, only_downloads), 0);
            assert_eq!(count(Target::DeltaLink, only_downloads), 0);
            assert_eq!(count(Target::ReportRedirect, only_downloads), 0);
        }
        for both in [Failure::BadLength, Failure::Trickle] {
            assert!(count(Target::Download, both) > 100, "{both:?}");
            assert!(count(Target::GraphJson, both) > 100, "{both:?}");
            assert_eq!(count(Target::ReportRedirect, both), 0);
        }
        let ds: Vec<_> = (0..4000)
            .map(|n| f.decide(11, n, Target::GraphJson))
            .collect();
        let quoted = ds.iter().filter(|d| d.cut_quoted).count();
        assert!(
            (1700..2300).contains(&quoted),
            "about every other cut: {quoted}"
        );
        let changed = ds
            .iter()
            .filter(|d| d.repeat.is_some_and(|r| r.changed))
            .count();
        let same = ds
            .iter()
            .filter(|d| d.repeat.is_some_and(|r| !r.changed))
            .count();
        assert!((1000..1400).contains(&changed), "{changed}");
        assert!((700..1000).contains(&same), "{same}");
        for k in 1..=3u8 {
            assert!(ds.iter().any(|d| d.repeat.is_some_and(|r| r.users == k)));
        }
    }

    #[test]
    fn empty_and_none_mean_no_faults() {
        assert_eq!("".parse::<Faults>().unwrap(), Faults::default());
        assert_eq!("none".parse::<Faults>().unwrap(), Faults::default());
        assert_eq!(Faults::default().to_string(), "none");
        let f: Faults = " retry-after = http-date , 429 = 1 ".parse().unwrap();
        assert_eq!(f.retry_after, RetryAfterMode::HttpDate);
        assert_eq!(f.p429, 1.0);
    }

    #[test]
    fn bad_specs_name_the_item() {
        for (spec, item) in [
            ("429=2", "429=2"),
            ("429=0.1,bogus=1", "bogus=1"),
            ("503=abc", "503=abc"),
            ("slow-ms=fast", "slow-ms=fast"),
            ("retry-after=sometimes", "retry-after=sometimes"),
            ("429", "429"),
            ("token-expiry=-1", "token-expiry=-1"),
            ("retry-after-secs=-3", "retry-after-secs=-3"),
            ("expired-secret=maybe", "expired-secret=maybe"),
            ("redirects=11", "redirects=11"),
            ("redirects=0.5", "redirects=0.5"),
            ("redirects", "redirects"),
            ("cut-close=1.5", "cut-close=1.5"),
            ("trickle-bytes=0", "trickle-bytes=0"),
            ("trickle-ms=soon", "trickle-ms=soon"),
            ("repeat-users-changed=x", "repeat-users-changed=x"),
        ] {
            let err = spec.parse::<Faults>().unwrap_err();
            assert_eq!(err.item, item, "spec {spec}");
            assert!(err.to_string().contains(item), "{err}");
        }
    }

    #[test]
    fn decisions_are_deterministic_and_follow_probabilities() {
        let f: Faults = "429=0.2,reset=0.1,truncate=0.1".parse().unwrap();
        let a: Vec<_> = (0..1000)
            .map(|n| f.decide(9, n, Target::GraphJson))
            .collect();
        let b: Vec<_> = (0..1000)
            .map(|n| f.decide(9, n, Target::GraphJson))
            .collect();
        assert_eq!(a, b);
        let n429 = a
            .iter()
            .filter(|d| d.failure == Some(Failure::Status429))
            .count();
        assert!((120..280).contains(&n429), "{n429}");
        // Truncation is only for JSON bodies.
        let d: Vec<_> = (0..1000)
            .map(|n| f.decide(9, n, Target::Download))
            .collect();
        assert!(d.iter().all(|d| d.failure != Some(Failure::Truncate)));
        assert!(d.iter().any(|d| d.failure == Some(Failure::Reset)));
        // No faults configured, no failures.
        let none = Faults::default();
        assert!((0..1000).all(|n| none.decide(9, n, Target::GraphJson).failure.is_none()));
    }

    #[test]
    fn retry_after_forms() {
        let now = DateTime::<Utc>::from_timestamp(1_700_000_000, 250_000_000).unwrap();
        assert_eq!(
            retry_after_value(RetryAfterMode::Integer, 0.2, 0, now).as_deref(),
            Some("1")
        );
        assert_eq!(
            retry_after_value(RetryAfterMode::Decimal, 2.128, 0, now).as_deref(),
            Some("2.128")
        );
        assert_eq!(retry_after_value(RetryAfterMode::Absent, 2.0, 0, now), None);
        // 1_700_000_000.25 + 1.0 rounds up to ...002.
        let date = retry_after_value(RetryAfterMode::HttpDate, 1.0, 0, now).unwrap();
        let parsed = DateTime::parse_from_rfc2822(&date).unwrap();
        assert_eq!(parsed.timestamp(), 1_700_000_002);
        let mixed: Vec<_> = (0..4)
            .map(|k| retry_after_value(RetryAfterMode::Mixed, 1.5, k, now))
            .collect();
        assert_eq!(mixed[0].as_deref(), Some("2"));
        assert_eq!(mixed[1].as_deref(), Some("1.500"));
        assert!(mixed[2].as_deref().unwrap().ends_with("GMT"));
        assert_eq!(mixed[3], None);
    }
}
