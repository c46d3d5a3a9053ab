//! Whether to retry, then how long to wait: classification first, delay second (vector's
//! `RetryLogic`). The delay comes from `Retry-After` (integer, decimal or HTTP-date) or from
//! exponential backoff with jitter; the cap is on total waiting in a run, not on tries.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::random;

/// What one attempt's outcome means for the retry loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Throttled or temporarily unavailable: wait (Retry-After if given) and retry.
    Retry,
    /// Not retryable: surface the error.
    Fail,
}

/// Classifies an HTTP status: 408, 429 and 5xx are transient; other 4xx are not.
pub fn classify_status(status: u16) -> Verdict {
    match status {
        408 | 429 | 500..=599 => Verdict::Retry,
        _ => Verdict::Fail,
    }
}

/// Parses `Retry-After`: delta-seconds (Graph sends integers and decimals like `2.128`) or an
/// HTTP-date. Negative or unparsable values give `None` (backoff applies instead).
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0)
            .then(|| Duration::from_secs_f64(secs.min(86_400.0)));
    }
    let when = DateTime::parse_from_rfc2822(v).ok()?.with_timezone(&Utc);
    Some((when - now).to_std().unwrap_or(Duration::ZERO))
}

/// Backoff and the run-wide wait budget, shared by every stream of a run.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub base: Duration,
    pub max_backoff: Duration,
    pub max_total_wait: Duration,
    waits: Arc<Mutex<Waits>>,
}

/// The run's waiting so far, as the union of the waiting intervals: streams wait side by side
/// (eight reports throttled at once wait once, not eight times), so summing would overcount.
#[derive(Debug)]
struct Waits {
    /// Time covered by at least one wait, up to `until`.
    total: Duration,
    /// When the latest reserved wait ends.
    until: Instant,
}

impl RetryPolicy {
    pub fn new(base: Duration, max_total_wait: Duration) -> Self {
        RetryPolicy {
            base,
            max_backoff: Duration::from_secs(60),
            max_total_wait,
            waits: Arc::new(Mutex::new(Waits {
                total: Duration::ZERO,
                until: Instant::now(),
            })),
        }
    }

    /// Exponential backoff with full jitter in [50 %, 100 %] of `base * 2^attempt`.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exp = self
            .base
            .saturating_mul(1u32 << attempt.min(16))
            .min(self.max_backoff);
        let jitter = 0.5 + 0.5 * random::unit();
        exp.mul_f64(jitter)
    }

    /// Reserves a `wait` starting now from the run's budget; `false` when the run's waiting
    /// time (overlapping waits counted once) would pass the cap.
    pub fn reserve(&self, wait: Duration) -> bool {
        self.reserve_at(Instant::now(), wait)
    }

    fn reserve_at(&self, now: Instant, wait: Duration) -> bool {
        let mut w = self.waits.lock().unwrap_or_else(|e| e.into_inner());
        let end = now + wait;
        let added = end.saturating_duration_since(w.until.max(now));
        if w.total + added > self.max_total_wait {
            return false;
        }
        w.total += added;
        w.until = w.until.max(end);
        true
    }

    /// Time this run has spent waiting (or has reserved to wait), overlapping waits once.
    pub fn waited(&self) -> Duration {
        self.waits.lock().unwrap_or_else(|e| e.into_inner()).total
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn retry_after_forms() {
        let now = Utc.with_ymd_and_hms(2026, 11, 28, 2, 0, 0).unwrap();
        assert_eq!(parse_retry_after("10", now), Some(Duration::from_secs(10)));
        assert_eq!(
            parse_retry_after(" 2.128 ", now),
            Some(Duration::from_millis(2128))
        );
        assert_eq!(
            parse_retry_after("Sat, 28 Nov 2026 02:00:07 GMT", now),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            parse_retry_after("Sat, 28 Nov 2026 01:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("-1", now), None);
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("NaN", now), None);
    }

    #[test]
    fn classification() {
        for s in [408, 429, 500, 502, 503, 504] {
            assert_eq!(classify_status(s), Verdict::Retry, "{s}");
        }
        for s in [400, 401, 403, 404, 410] {
            assert_eq!(classify_status(s), Verdict::Fail, "{s}");
        }
    }

    #[test]
    fn backoff_grows_with_jitter_and_caps() {
        let p = RetryPolicy::new(Duration::from_millis(100), Duration::from_secs(1));
        for attempt in 0..5 {
            let d = p.backoff(attempt);
            let full = Duration::from_millis(100 * (1 << attempt));
            assert!(d >= full / 2 && d <= full, "{attempt}: {d:?}");
        }
        assert!(p.backoff(30) <= Duration::from_secs(60));
    }

    #[test]
    fn budget_caps_total_wait() {
        let p = RetryPolicy::new(Duration::from_millis(100), Duration::from_millis(1000));
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        // Sequential waits add up.
        assert!(p.reserve_at(t0, ms(600)));
        assert!(!p.reserve_at(t0 + ms(600), ms(500)));
        assert!(p.reserve_at(t0 + ms(600), ms(400)));
        assert_eq!(p.waited(), ms(1000));
    }

    #[test]
    fn overlapping_waits_count_once() {
        let p = RetryPolicy::new(Duration::from_millis(100), Duration::from_millis(1000));
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        // Eight streams throttled at once for 900 ms wait 900 ms, not 7.2 s.
        for _ in 0..8 {
            assert!(p.reserve_at(t0, ms(900)));
        }
        assert_eq!(p.waited(), ms(900));
        // A wait reaching past the others adds only its overhang.
        assert!(p.reserve_at(t0 + ms(500), ms(500)));
        assert_eq!(p.waited(), ms(1000));
        assert!(!p.reserve_at(t0 + ms(1000), ms(1)));
    }
}
