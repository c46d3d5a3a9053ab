//! Canned responses for hostile-input tests: an [`Override`] replaces what the simulator
//! would serve for matching requests with exactly the status, headers and bytes given (an
//! HTML page with a 200, JSON without `value`, a next link to another host, a CSV with
//! invalid UTF-8, ...).
//!
//! Overrides are consulted by the Graph handler after the bearer token is checked (so sign-in
//! and token expiry behave as usual) and by the download host before its URL token is
//! checked (so an override can serve any path, e.g. a `Location` another override sent).
//! Stats count the request under its usual family. The first matching override wins.
//! How an override becomes a response lives with the other responses (`respond.rs`).

use std::sync::Mutex;

use bytes::Bytes;

/// Which listener an override applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverrideHost {
    /// Graph `/v1.0/...` (the login endpoint is never overridden).
    Graph,
    /// The report download host.
    Download,
}

/// A canned response for requests whose (percent-decoded) path starts with `path_prefix`,
/// compared without regard to ASCII case. The query string is not matched.
#[derive(Debug, Clone)]
pub struct Override {
    pub host: OverrideHost,
    /// e.g. `/v1.0/users` or `/v1.0/reports/getMailboxUsageDetail`.
    pub path_prefix: String,
    pub status: u16,
    /// `None`: no Content-Type header at all.
    pub content_type: Option<String>,
    /// Extra headers, e.g. `Location` for a 302.
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    /// `Some(n)`: used for the next `n` matching requests, then dropped; `None`: always.
    pub times: Option<u32>,
}

impl Override {
    fn matches(&self, host: OverrideHost, path: &str) -> bool {
        self.host == host
            && path
                .get(..self.path_prefix.len())
                .is_some_and(|p| p.eq_ignore_ascii_case(&self.path_prefix))
    }
}

/// The installed overrides of one simulator.
#[derive(Default)]
pub struct Overrides(Mutex<Vec<Override>>);

impl Overrides {
    pub fn push(&self, o: Override) {
        self.lock().push(o);
    }

    pub fn clear(&self) {
        self.lock().clear();
    }

    /// The first override matching the request, counting one use of it.
    pub fn take(&self, host: OverrideHost, path: &str) -> Option<Override> {
        let mut list = self.lock();
        let i = list.iter().position(|o| o.matches(host, path))?;
        let o = list[i].clone();
        match &mut list[i].times {
            Some(1) | Some(0) => {
                list.remove(i);
            }
            Some(n) => *n -= 1,
            None => {}
        }
        Some(o)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Override>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_match_wins_and_times_run_out() {
        let list = Overrides::default();
        let mut once = Override::graph_json("/v1.0/users", "once");
        once.times = Some(1);
        list.push(once);
        list.push(Override::graph_json("/V1.0/USERS", "always"));
        assert_eq!(
            list.take(OverrideHost::Graph, "/v1.0/users").unwrap().body,
            "once"
        );
        for _ in 0..3 {
            assert_eq!(
                list.take(OverrideHost::Graph, "/v1.0/users/delta")
                    .unwrap()
                    .body,
                "always"
            );
        }
        assert!(list.take(OverrideHost::Download, "/v1.0/users").is_none());
        assert!(
            list.take(OverrideHost::Graph, "/v1.0/organization")
                .is_none()
        );
        list.clear();
        assert!(list.take(OverrideHost::Graph, "/v1.0/users").is_none());
    }
}
