//! The identity resource-unit (RU) budget: a token bucket per app and tenant
//! (graph-perf.md §4).
//!
//! `/users`, `/users/delta`, `/organization`, `/subscribedSkus` and `/users/$count` draw
//! resource units from a bucket that holds 3,500 / 5,000 / 8,000 RU (tenants under 50, up to
//! 500, over 500 users) and refills continuously over 10 seconds. A request that would
//! overdraw it is answered 429 and costs nothing. The simulator has one app and one tenant,
//! so it has one bucket.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Graph's bucket capacity for a tenant of `users` users.
pub fn graph_capacity(users: u64) -> u64 {
    match users {
        u if u < 50 => 3_500,
        u if u <= 500 => 5_000,
        _ => 8_000,
    }
}

/// What a request's query does to its cost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Modifiers {
    pub select: bool,
    pub expand: bool,
    /// `$top` below 20.
    pub small_top: bool,
}

/// The cost in RU of a request with `base` cost (users 2, subscribedSkus 3, else 1): `$select`
/// −1, `$expand` +1, `$top` < 20 −1, at least 1.
pub fn cost(base: u64, m: Modifiers) -> u64 {
    let c = base as i64 - i64::from(m.select) + i64::from(m.expand) - i64::from(m.small_top);
    c.max(1) as u64
}

/// A token bucket of resource units.
pub struct Budget {
    capacity: u64,
    window: Duration,
    /// (units available, when last refilled)
    state: Mutex<(f64, Instant)>,
}

impl Budget {
    pub fn new(capacity: u64, window: Duration) -> Budget {
        Budget {
            capacity,
            window: window.max(Duration::from_millis(1)),
            state: Mutex::new((capacity as f64, Instant::now())),
        }
    }

    /// Units regained per second.
    fn rate(&self) -> f64 {
        self.capacity as f64 / self.window.as_secs_f64()
    }

    /// Takes `cost` units, or returns the whole seconds (at least 1) until they are back.
    pub fn charge(&self, cost: u64) -> Result<(), u64> {
        let now = Instant::now();
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let elapsed = now.duration_since(s.1).as_secs_f64();
        s.0 = (s.0 + elapsed * self.rate()).min(self.capacity as f64);
        s.1 = now;
        let need = cost as f64;
        if s.0 >= need {
            s.0 -= need;
            return Ok(());
        }
        // More than the capacity can never be had: wait for a full bucket.
        let missing = need.min(self.capacity as f64) - s.0;
        let secs = (missing / self.rate()).ceil();
        Err(if secs.is_finite() && secs >= 1.0 {
            secs as u64
        } else {
            1
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn costs_follow_graph() {
        let m = Modifiers::default();
        assert_eq!(cost(2, m), 2);
        let sel = Modifiers { select: true, ..m };
        assert_eq!(cost(2, sel), 1);
        assert_eq!(
            cost(
                2,
                Modifiers {
                    small_top: true,
                    ..sel
                }
            ),
            1
        );
        assert_eq!(cost(3, Modifiers { expand: true, ..m }), 4);
        assert_eq!(cost(1, sel), 1);
        assert_eq!(
            (graph_capacity(49), graph_capacity(50), graph_capacity(501)),
            (3_500, 5_000, 8_000)
        );
    }

    #[test]
    fn the_bucket_empties_and_says_how_long_to_wait() {
        let b = Budget::new(4, Duration::from_secs(8));
        assert_eq!(b.charge(2), Ok(()));
        assert_eq!(b.charge(2), Ok(()));
        // 0.5 RU per second: 2 RU take 4 s.
        assert_eq!(b.charge(2), Err(4));
        assert_eq!(b.charge(100), Err(8));
    }
}
