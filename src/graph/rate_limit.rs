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

/// At most `max` requests in any `window` as Graph counts them. Graph sees a request some
/// time between its sending and its answer, and a busy network or server stretches that, so
/// each request counts from when its answer came ([`SlidingWindow::answered`]): the next
/// request leaves only once the `max`-th latest answer is a whole window old, and then no
/// `max + 1` arrivals can fall within one window, whatever the delays.
#[derive(Debug)]
pub struct SlidingWindow {
    max: usize,
    window: Duration,
    /// (permit, when it was sent, or answered once it was)
    sent: Mutex<VecDeque<(u64, Instant)>>,
    next: std::sync::atomic::AtomicU64,
}

/// A request counted against a [`SlidingWindow`]; hand it back when its answer came.
#[derive(Debug)]
#[must_use]
pub struct Permit(u64);

impl SlidingWindow {
    pub fn new(max: usize, window: Duration) -> SlidingWindow {
        SlidingWindow {
            max: max.max(1),
            window: window + MARGIN,
            sent: Mutex::new(VecDeque::new()),
            next: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// The identity-reports limit.
    pub fn identity_reports() -> SlidingWindow {
        SlidingWindow::new(SIGN_IN_REQUESTS, SIGN_IN_WINDOW)
    }

    /// Waits until one more request fits, and counts it as sent now. Waiters queue in turn
    /// (the lock is held while waiting), so none is starved.
    pub async fn acquire(&self) -> Permit {
        let mut sent = self.sent.lock().await;
        loop {
            let now = Instant::now();
            // Only answered (or sent) times a whole window old leave; the log is kept in
            // order of its times by `answered`.
            sent.retain(|(_, t)| now.duration_since(*t) < self.window);
            if sent.len() < self.max {
                let id = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                sent.push_back((id, now));
                return Permit(id);
            }
            let oldest = sent.iter().map(|(_, t)| *t).min().unwrap_or(now);
            // Wake at the oldest's end, or sooner: an answer may move a time later, never
            // earlier, so waking early only loops.
            tokio::time::sleep_until(oldest + self.window).await;
        }
    }

    /// The answer to `permit`'s request came (or it failed): it counts from now.
    pub async fn answered(&self, permit: Permit) {
        let now = Instant::now();
        let mut sent = self.sent.lock().await;
        if let Some(e) = sent.iter_mut().find(|(id, _)| *id == permit.0) {
            e.1 = now;
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
            let p = w.acquire().await;
            times.push(start.elapsed());
            w.answered(p).await;
        }
        // Three at once, three more once the window (and margin) passed, then one more.
        let spaced = Duration::from_millis(600);
        assert!(times[2] < Duration::from_millis(100), "{times:?}");
        assert!(times[3] >= spaced, "{times:?}");
        for i in 3..times.len() {
            assert!(times[i] - times[i - 3] >= spaced, "{times:?}");
        }
    }

    #[tokio::test]
    async fn a_request_counts_from_its_answer() {
        let w = SlidingWindow::new(1, Duration::from_millis(100));
        let p = w.acquire().await;
        // The answer takes 300 ms: the next request waits a window (and margin) after it.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let answered = Instant::now();
        w.answered(p).await;
        let _ = w.acquire().await;
        assert!(answered.elapsed() >= Duration::from_millis(600));
    }
}
