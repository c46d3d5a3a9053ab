//! The users delta walk of an incremental connector (`[pipeline] incremental = true`): where
//! the walk starts and what Graph's refusals of a stored link mean.
//!
//! Extract walks `/users/delta?$select=<USER_SELECT>` in full when no usable delta link is
//! stored (the first run, after a resync, or when the tenant or the selection changed), and
//! from the stored link otherwise, landing the records exactly as Graph sent them (changes,
//! and `@removed` entries for removed users) as the `users` stream. The manifest says which
//! kind of sync it was, which run the changes apply to and the new delta link
//! ([`crate::manifest::DeltaSync`]). A stored link Graph refuses (410 Gone,
//! `syncStateNotFound`, `resyncRequired`) is replaced by a full sync in the same run, with a
//! `delta_resync` warning. The snapshot the changes merge into is transform's
//! (`transform/users_snapshot.rs`); the link is stored there, with the snapshot.

use reqwest::Url;

use crate::config::Config;
use crate::graph::{GraphError, RequestIds};
use crate::manifest::{StreamManifest, Warning};
use crate::store::delta_links::StoredLink;
use crate::streams::user_select;

/// `Prefer` header of delta requests: `/users/delta` takes no `$top`.
pub const DELTA_PREFER: &str = "odata.maxpagesize=999";

/// The first request of a full delta sync (with the manager relationship when `manager`).
pub fn full_sync_path(manager: bool) -> String {
    format!("/users/delta?$select={}", user_select(manager))
}

/// Where the users walk of an incremental run starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    /// Every user, from `/users/delta?$select=…`; `reason` says why (for the log).
    Full { reason: String },
    /// The changes since run `from_run`, from its delta link.
    Delta { link: Url, from_run: String },
}

/// Decides how the users of an incremental run are fetched.
pub fn plan(cfg: &Config, stored: Option<&StoredLink>) -> Start {
    let full = |reason: &str| Start::Full {
        reason: reason.to_string(),
    };
    let Some(s) = stored else {
        return full("no delta link is stored yet (first incremental run)");
    };
    let Some(link) = &s.link else {
        return full("the last transformed run ended without a delta link");
    };
    if !s.tenant_id.eq_ignore_ascii_case(&cfg.tenant.tenant_id) {
        return full("the stored delta link was made for another tenant");
    }
    if s.user_select != user_select(cfg.pipeline.manager) {
        return full(
            "the stored delta link tracks another $select (the connector was upgraded, or [pipeline] manager changed)",
        );
    }
    match check_delta_link(link, &cfg.tenant.graph_url) {
        Ok(link) => Start::Delta {
            link,
            from_run: s.run_id.clone(),
        },
        Err(_) => full("the stored delta link is not on the configured Graph host"),
    }
}

/// A delta link is followed (and stored) only on the Graph origin, like a next link: it is
/// requested with the bearer token.
pub fn check_delta_link(link: &str, graph: &Url) -> std::result::Result<Url, GraphError> {
    let url = Url::parse(link).ok().filter(|u| {
        u.origin() == graph.origin() && u.username().is_empty() && u.password().is_none()
    });
    url.ok_or_else(|| GraphError::BadBody {
        url: graph.to_string(),
        problem: format!(
            "@odata.deltaLink leaves the Graph host {}: it is never stored or followed",
            graph.host_str().unwrap_or("")
        ),
        fix: "this is a Graph or proxy fault; run again, and report it with the request id if it repeats".into(),
        ids: RequestIds::default(),
    })
}

/// Whether Graph refused a delta link for good: the client must sync in full again
/// (graph-api.md §2: 410 Gone, `syncStateNotFound`, `resyncRequired`).
pub fn is_resync(e: &GraphError) -> bool {
    match e {
        GraphError::Api { status, code, .. } => {
            *status == 410
                || code.eq_ignore_ascii_case("syncStateNotFound")
                || code.eq_ignore_ascii_case("resyncRequired")
        }
        _ => false,
    }
}

/// What Graph said, without the link (a credential of sorts).
pub fn resync_reason(e: &GraphError) -> String {
    match e {
        GraphError::Api {
            status,
            code,
            message,
            ids,
            ..
        } => format!("HTTP {status} {code}: {message} ({ids})"),
        other => other.to_string(),
    }
}

/// The warnings an incremental users stream earns in the run manifest.
pub fn warnings(s: &StreamManifest) -> Vec<Warning> {
    let mut w = Vec::new();
    if let Some(reason) = &s.delta.resync {
        w.push(Warning {
            code: "delta_resync".into(),
            message: format!(
                "Graph refused the stored users delta link ({reason}), so this run fetched every user again (a full sync) instead of the changes"
            ),
            fix: "none needed: the next run continues incrementally from this run's delta link. Delta links expire after 7 days without use, so schedule an incremental connector at least weekly".into(),
        });
    }
    if s.delta.sync.is_some() && s.delta.delta_link.is_none() {
        w.push(Warning {
            code: "delta_link_missing".into(),
            message: "the users delta walk ended without an @odata.deltaLink, so the next run fetches every user again (a full sync)".into(),
            fix: "none needed; if it happens every run, report it to Microsoft with a request id from the log".into(),
        });
    }
    w
}
