//! The server's clock: the real one, and a virtual one with which tests run months of
//! schedules in a second.

use std::sync::Mutex;

use chrono::{DateTime, Utc};

/// Wall-clock time for the server; tests inject a virtual one.
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
    /// Waits until `t`; `false` means the server should stop (a virtual clock's end).
    fn sleep_until(
        &self,
        t: DateTime<Utc>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send + '_>>;
    /// A virtual clock jumps instead of waiting, so the server lets running connectors finish
    /// before it moves time on (otherwise a jump would skip their next instants).
    fn is_virtual(&self) -> bool {
        false
    }
}

/// The real clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
    fn sleep_until(
        &self,
        t: DateTime<Utc>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send + '_>> {
        Box::pin(async move {
            let wait = (t - Utc::now()).to_std().unwrap_or_default();
            tokio::time::sleep(wait).await;
            true
        })
    }
}

/// A virtual clock for tests: `sleep_until` jumps to the instant, and stops the server once
/// time would pass `end`.
pub struct ManualClock {
    now: Mutex<DateTime<Utc>>,
    end: DateTime<Utc>,
}

impl ManualClock {
    pub fn new(start: DateTime<Utc>, end: DateTime<Utc>) -> ManualClock {
        ManualClock {
            now: Mutex::new(start),
            end,
        }
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.lock().unwrap_or_else(|e| e.into_inner())
    }
    fn sleep_until(
        &self,
        t: DateTime<Utc>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send + '_>> {
        Box::pin(async move {
            if t > self.end {
                return false;
            }
            let mut now = self.now.lock().unwrap_or_else(|e| e.into_inner());
            if t > *now {
                *now = t;
            }
            true
        })
    }
    fn is_virtual(&self) -> bool {
        true
    }
}
