//! Sign-in activity (`[pipeline] sign_in_activity`): the optional `users_sign_in` stream,
//! `/users?$select=id,userPrincipalName,signInActivity&$top=500`, walked serially beside the
//! users walk. It needs AuditLog.Read.All and an Entra ID P1/P2 tenant, and Graph allows 5
//! such requests per 10 s, so the client keeps under that (`graph/rate_limit.rs`): 100,000
//! users are 200 pages, at least 400 s, which the parallel users walk hides.
//!
//! `auto` reads it only when the token's `roles` hold AuditLog.Read.All (otherwise no request
//! is made and nothing changes); `on` tries whatever the roles say. A probe of one user comes
//! first: Graph refusing it (403: no role, or no P1) is a warning with the fix, and the run
//! goes on without sign-in dates.

use indicatif::ProgressBar;

use super::collection::land_collection;
use super::resume::Checkpoint;
use super::{StreamCtx, StreamResult};
use crate::config::SignInActivity;
use crate::graph::paging::Page;
use crate::graph::rate_limit::Budget;
use crate::graph::{CallStats, GraphClient, GraphError, Headers};
use crate::manifest::{StreamManifest, Warning};
use crate::streams::{SIGN_IN_PAGE_SIZE, SIGN_IN_SELECT, Stream};

/// The application permission sign-in activity needs beyond the connector's own.
pub const AUDIT_ROLE: &str = "AuditLog.Read.All";

/// Whether this run reads sign-in activity (before any request but the sign-in).
pub(super) async fn wanted(setting: SignInActivity, client: &GraphClient) -> bool {
    match setting {
        SignInActivity::Off => false,
        SignInActivity::On => true,
        SignInActivity::Auto => match client.granted_roles().await {
            Ok(Some(roles)) => {
                let held = holds_audit_role(&roles);
                if !held {
                    tracing::info!(
                        "sign-in activity not read: the app does not hold AuditLog.Read.All (sign_in_activity = \"auto\")"
                    );
                }
                held
            }
            // An opaque token: no way to know; `on` tries anyway.
            Ok(None) | Err(_) => false,
        },
    }
}

/// Whether `roles` (the token's `roles` claim) hold [`AUDIT_ROLE`].
pub fn holds_audit_role(roles: &[String]) -> bool {
    roles.iter().any(|r| r == AUDIT_ROLE)
}

/// One user's sign-in activity, under the identity-reports budget: whether Graph serves it
/// here (a 403 is its refusal: no role, or no Entra ID P1). `check` asks the same.
pub async fn probe(client: &GraphClient, stats: &CallStats) -> Result<(), GraphError> {
    let url = client.v1(&format!("/users?$select={SIGN_IN_SELECT}&$top=1"))?;
    let headers = Headers {
        budget: Budget::IdentityReports,
        ..Headers::default()
    };
    client
        .get_graph_with(&url, stats, Stream::SignIns.what(), headers, |r| {
            Page::parse(r.body, r.ids)
        })
        .await
        .map(|_| ())
}

/// The first request of the stream.
pub fn first_path() -> String {
    format!("/users?$select={SIGN_IN_SELECT}&$top={SIGN_IN_PAGE_SIZE}")
}

/// Probes with one user, then lands every user's sign-in activity; a refusal lands nothing
/// and says why.
pub(super) async fn land_sign_ins(
    ctx: StreamCtx,
    from: Option<Checkpoint>,
    bar: ProgressBar,
) -> StreamResult {
    let stream = Stream::SignIns;
    let resuming = from.is_some();
    if !resuming {
        let stats = CallStats::default();
        match probe(&ctx.client, &stats).await {
            Ok(_) => {}
            Err(GraphError::Api {
                status: 403,
                code,
                message,
                ..
            }) => {
                bar.finish_with_message("not available");
                let warning = refusal(&code, &message);
                tracing::warn!(code = %warning.code, "{}", warning.message);
                let manifest = StreamManifest {
                    calls: stats.snapshot(),
                    unavailable: Some(warning),
                    ..StreamManifest::default()
                };
                return Ok((stream.name().to_string(), manifest));
            }
            Err(e) => return Err(e.into()),
        }
    }
    let first = ctx.client.v1(&first_path())?;
    land_collection(ctx, stream, first, from, bar).await
}

/// The warning for Graph's 403 to a sign-in activity request (`check` gives its fix too).
pub fn refusal(code: &str, message: &str) -> Warning {
    let premium =
        code.eq_ignore_ascii_case("Authentication_RequestFromNonPremiumTenantOrB2CTenant");
    Warning {
        code: "sign_in_activity_unavailable".into(),
        message: if premium {
            format!(
                "sign-in activity was not read: the tenant has no Entra ID P1 or P2 licence (Graph: 403 {code}: {message}); the date filter uses directory and report dates only"
            )
        } else {
            format!(
                "sign-in activity was not read: the app lacks AuditLog.Read.All (Graph: 403 {code}: {message}); the date filter uses directory and report dates only"
            )
        },
        fix: if premium {
            "license Entra ID P1 or P2 for the tenant (Microsoft 365 E3/E5 and EMS include P1), or set [pipeline] sign_in_activity = \"off\" to stop trying".into()
        } else {
            "grant the app the application permission AuditLog.Read.All and admin consent in Entra ID (App registrations > API permissions), or set [pipeline] sign_in_activity = \"off\"".into()
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_names_the_missing_licence_or_role() {
        let p = refusal("Authentication_RequestFromNonPremiumTenantOrB2CTenant", "x");
        assert!(p.message.contains("P1") && p.fix.contains("sign_in_activity = \"off\""));
        let r = refusal("Authorization_RequestDenied", "Insufficient privileges");
        assert!(r.message.contains("AuditLog.Read.All") && r.fix.contains("admin consent"));
    }
}
