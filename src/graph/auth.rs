//! Client-credentials sign-in (v2.0 token endpoint), the token cache, and the `roles` check
//! that turns a missing admin consent into a clear message before Graph answers 403.

use std::time::{Duration, Instant};

use base64::Engine;
use serde::Deserialize;

use super::error::{LoginErrorBody, login_advice};
use super::retry::{Verdict, classify_status};
use super::transport::NetFailure;
use super::{Attempts, GraphClient, GraphError, RequestIds, retry_after};
use crate::config::Secret;

/// Application permissions the connector needs (graph-api.md §0).
pub const REQUIRED_ROLES: &[&str] = &[
    "Directory.Read.All",
    "Organization.Read.All",
    "Reports.Read.All",
];

/// Renew this long before `expires_in` runs out, so a page never starts with a dying token.
const EXPIRY_MARGIN: Duration = Duration::from_secs(300);

#[derive(Clone)]
pub struct CachedToken {
    token: Secret,
    renew_at: Instant,
}

/// A failed sign-in is the answer for this long to requests that did not queue behind it
/// but arrive right after (the streams of one run hit their 401s at nearly the same time).
/// The sign-in itself already retried what can be retried.
const FAILURE_SHARED_FOR: Duration = Duration::from_secs(2);

/// The token, and how the latest sign-in ended when it failed (shared with the requests
/// that queued behind it or came within [`FAILURE_SHARED_FOR`]).
#[derive(Default)]
pub struct TokenCache {
    token: Option<CachedToken>,
    failed: Option<(GraphError, Instant)>,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
}

impl GraphClient {
    /// The current token, fetched or renewed when needed. Single flight: requests that need
    /// a token while a sign-in is under way wait for it and share its outcome, a token or the
    /// failure (an expired secret is one token request, not one per stream).
    pub async fn token(&self) -> Result<Secret, GraphError> {
        let seen = self.sign_ins.load(std::sync::atomic::Ordering::SeqCst);
        let mut cache = self.token.lock().await;
        if let Some(t) = cache.token.as_ref()
            && Instant::now() < t.renew_at
        {
            return Ok(t.token.clone());
        }
        if let Some((failed, at)) = &cache.failed
            && (self.sign_ins.load(std::sync::atomic::Ordering::SeqCst) != seen
                || at.elapsed() < FAILURE_SHARED_FOR)
        {
            return Err(failed.duplicate());
        }
        let outcome = self.fetch_token().await;
        self.sign_ins
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        match outcome {
            Ok(fresh) => {
                let token = fresh.token.clone();
                cache.token = Some(fresh);
                cache.failed = None;
                Ok(token)
            }
            Err(e) => {
                cache.failed = Some((e.duplicate(), Instant::now()));
                Err(e)
            }
        }
    }

    /// Drops the cached token after Graph rejected `rejected`, unless another request has
    /// already replaced it (concurrent 401s then cause one sign-in, not many).
    pub async fn invalidate_token(&self, rejected: &Secret) {
        let mut cache = self.token.lock().await;
        if cache
            .token
            .as_ref()
            .is_some_and(|t| t.token.expose() == rejected.expose())
        {
            cache.token = None;
        }
    }

    /// Roles granted to the app, from the token's `roles` claim. `None` when the token is
    /// not a readable JWT (then the check is skipped and Graph's own 403 speaks).
    pub async fn granted_roles(&self) -> Result<Option<Vec<String>>, GraphError> {
        let token = self.token().await?;
        Ok(roles_claim(token.expose()))
    }

    /// Fails with [`GraphError::MissingRoles`] unless every required role was consented.
    pub async fn check_roles(&self) -> Result<(), GraphError> {
        let Some(roles) = self.granted_roles().await? else {
            return Ok(());
        };
        let missing = missing_roles(&roles);
        if missing.is_empty() {
            Ok(())
        } else {
            Err(GraphError::MissingRoles { missing })
        }
    }

    async fn fetch_token(&self) -> Result<CachedToken, GraphError> {
        let base = self.login_url.as_str().trim_end_matches('/');
        let url = reqwest::Url::parse(&format!("{base}/{}/oauth2/v2.0/token", self.tenant_id))
            .map_err(|e| GraphError::Transport {
                url: base.to_string(),
                problem: format!("cannot build the token URL: {e}"),
                waited_s: 0.0,
                ids: RequestIds::fresh(),
            })?;
        let url_for_errors = url.to_string();
        let form = [
            ("client_id", self.client_id.as_str()),
            ("scope", self.scope.as_str()),
            ("client_secret", self.secret.expose()),
            ("grant_type", "client_credentials"),
        ];
        let stats = &self.login_stats;
        let mut tries = Attempts::default();
        loop {
            let ids = RequestIds::fresh();
            stats
                .requests
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let sent = self
                .http
                .post(url.clone())
                .header("client-request-id", &ids.client_request_id)
                .form(&form)
                .send()
                .await;
            let resp = match sent {
                Ok(r) => r,
                Err(e) => {
                    let failure = NetFailure::classify(&e, false);
                    self.after_net_failure(&url, failure, false, &mut tries, stats, &ids)
                        .await?;
                    continue;
                }
            };
            let status = resp.status().as_u16();
            let headers = resp.headers().clone();
            let body = match resp.bytes().await {
                Ok(b) => b,
                Err(e) => {
                    let failure = NetFailure::classify(&e, true);
                    self.after_net_failure(&url, failure, false, &mut tries, stats, &ids)
                        .await?;
                    continue;
                }
            };
            if status == 200 {
                let parsed: TokenResponse = serde_json::from_slice(&body).map_err(|e| GraphError::BadBody {
                    url: url_for_errors.clone(),
                    problem: format!("the token response is not the documented JSON ({e})"),
                    fix: "check login_url / cloud in [tenant]; a proxy may be answering instead of the identity platform".into(),
                    ids: ids.clone(),
                })?;
                let lifetime = parsed
                    .expires_in
                    .as_ref()
                    .and_then(|v| {
                        v.as_u64()
                            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
                    })
                    .unwrap_or(3599);
                let renew_in = Duration::from_secs(lifetime)
                    .checked_sub(EXPIRY_MARGIN)
                    .unwrap_or(Duration::from_secs(lifetime / 2));
                return Ok(CachedToken {
                    token: Secret::new(parsed.access_token),
                    renew_at: Instant::now() + renew_in,
                });
            }
            let err: LoginErrorBody = serde_json::from_slice(&body).unwrap_or_default();
            let transient = err.error == "temporarily_unavailable"
                || (classify_status(status) == Verdict::Retry && err.error_codes.is_empty());
            if transient {
                self.wait_status(
                    &url,
                    status,
                    retry_after(&headers),
                    &mut tries.n,
                    stats,
                    &ids,
                )
                .await?;
                continue;
            }
            let (code, summary, fix) =
                login_advice(&err, &self.tenant_id, &self.client_id, self.cloud);
            let summary = if err.error.is_empty() && err.error_description.is_empty() {
                format!(
                    "HTTP {status} from {url_for_errors}: {}",
                    super::snippet(&body)
                )
            } else {
                summary
            };
            return Err(GraphError::Login {
                code,
                summary,
                fix,
                ids: RequestIds {
                    request_id: err.trace_id.or(err.correlation_id),
                    ..ids
                },
            });
        }
    }
}

/// Decodes the `roles` claim of a JWT access token. Missing claim = no roles (no consent).
pub fn roles_claim(token: &str) -> Option<Vec<String>> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    if !claims.is_object() {
        return None;
    }
    Some(
        claims
            .get("roles")
            .and_then(|r| r.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default(),
    )
}

/// Required roles not in `granted`. Directory.Read.All also covers Organization.Read.All
/// for what the connector reads, and the ReadWrite variants cover the read ones.
pub fn missing_roles(granted: &[String]) -> Vec<String> {
    let has = |r: &str| {
        granted
            .iter()
            .any(|g| g == r || *g == r.replace(".Read.", ".ReadWrite."))
    };
    REQUIRED_ROLES
        .iter()
        .filter(|r| match **r {
            "Organization.Read.All" => !has(r) && !has("Directory.Read.All"),
            "Directory.Read.All" => !has(r) && !has("User.Read.All"),
            _ => !has(r),
        })
        .map(|r| r.to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(payload: &str) -> String {
        let e = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        format!(
            "{}.{}.sig",
            e.encode("{\"alg\":\"none\"}"),
            e.encode(payload)
        )
    }

    #[test]
    fn roles_from_token() {
        let t = jwt(r#"{"roles":["Reports.Read.All","Directory.Read.All"]}"#);
        assert_eq!(
            roles_claim(&t).unwrap(),
            vec!["Reports.Read.All", "Directory.Read.All"]
        );
        assert!(missing_roles(&roles_claim(&t).unwrap()).is_empty());
        let none = jwt(r#"{"aud":"x"}"#);
        assert_eq!(missing_roles(&roles_claim(&none).unwrap()).len(), 3);
        assert_eq!(roles_claim("opaque-token"), None);
    }

    #[test]
    fn partial_consent_lists_what_is_missing() {
        let granted = vec!["Directory.Read.All".to_string()];
        assert_eq!(missing_roles(&granted), vec!["Reports.Read.All"]);
        let granted = vec!["User.Read.All".to_string(), "Reports.Read.All".to_string()];
        assert_eq!(missing_roles(&granted), vec!["Organization.Read.All"]);
    }
}
