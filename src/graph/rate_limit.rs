//! A client-side limit for Graph's budgets that count requests rather than resource units:
//! listing users with `signInActivity` is limited to 5 requests per 10 s per app and tenant
//! (graph-perf.md §4, "Identity and access reports"). Keeping under it is cheaper than
//! collecting 429s, whose waits would also pause the rest of the run (one throttle per
//! client, `GraphClient::paused_until`).

use std::collections::VecDeque;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

/// Which budget a request draws on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Budget {
    /// Resource units only (Graph's bucket; 429s pause the client).
    #[default]
    ResourceUnits,
    /// The identity-reports limit: [`SIGN_IN_REQUESTS`] per [`SIGN_IN_WINDOW`].
    IdentityReports,
}

/// Graph's identity-reports limit.
pub const SIGN_IN_REQUESTS: usize = 5;
pub const SIGN_IN_WINDOW: Duration = Duration::from_secs(10);
/// Kept on top of the window: requests leave here and arrive at Graph a little apart.
const MARGIN: Duration = Duration::from_millis(500);

/// At most `max` requests sent in any `window` (a sliding log of send times).
#[derive(Debug)]
pub struct SlidingWindow {
    max: usize,
    window: Duration,
    sent: Mutex<VecDeque<Instant>>,
}

impl SlidingWindow {
    pub fn new(max: usize, window: Duration) -> SlidingWindow {
        SlidingWindow {
            max: max.max(1),
            window: window + MARGIN,
            sent: Mutex::new(VecDeque::new()),
        }
    }

    /// The identity-reports limit.
    pub fn identity_reports() -> SlidingWindow {
        SlidingWindow::new(SIGN_IN_REQUESTS, SIGN_IN_WINDOW)
    }

    /// Waits until one more request fits, and counts it as sent now. Waiters queue in turn
    /// (the lock is held while waiting), so none is starved.
    pub async fn acquire(&self) {
        let mut sent = self.sent.lock().await;
        loop {
            let now = Instant::now();
            while sent
                .front()
                .is_some_and(|t| now.duration_since(*t) >= self.window)
            {
                sent.pop_front();
            }
            if sent.len() < self.max {
                sent.push_back(now);
                return;
            }
            if let Some(oldest) = sent.front().copied() {
                tokio::time::sleep_until(oldest + self.window).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn never_more_than_max_in_any_window() {
        let w = SlidingWindow::new(3, Duration::from_millis(100));
        let start = Instant::now();
        let mut times = Vec::new();
        for _ in 0..7 {
            w.acquire().await;
            times.push(start.elapsed());
        }
        // Three at once, three more once the window (and margin) passed, then one more.
        let spaced = Duration::from_millis(600);
        assert!(times[2] < Duration::from_millis(100), "{times:?}");
        assert!(times[3] >= spaced, "{times:?}");
        for i in 3..times.len() {
            assert!(times[i] - times[i - 3] >= spaced, "{times:?}");
        }
    }
}
