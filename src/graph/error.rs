//! Graph and identity-platform failures, each turned into a message that says what to do.
//!
//! Classification follows the reference: branch on the OAuth `error` / Graph `code` and the
//! AADSTS number, never on the free text. Every error keeps Graph's `request-id` (or the
//! login's trace id) so an admin can quote it to Microsoft support.

use std::fmt;

use serde::Deserialize;

/// Identifiers that tie one failed request to Microsoft's logs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestIds {
    /// Our `client-request-id` header.
    pub client_request_id: String,
    /// Graph's `request-id` response header (or innerError), or the login's `trace_id`.
    pub request_id: Option<String>,
}

impl RequestIds {
    /// Ids for a new request: a fresh `client-request-id`, no answer yet.
    pub fn fresh() -> RequestIds {
        RequestIds {
            client_request_id: crate::random::guid(),
            request_id: None,
        }
    }
}

impl fmt::Display for RequestIds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "client-request-id {}", self.client_request_id)?;
        if let Some(r) = &self.request_id {
            write!(f, ", request-id {r}")?;
        }
        Ok(())
    }
}

/// Why a Graph conversation failed. Variants exist where callers branch (retry, re-request a
/// report, exit code); the text is for the admin.
#[derive(Debug, thiserror::Error)]
pub enum GraphError {
    /// The token endpoint refused us (bad secret, wrong tenant, ...).
    #[error("sign-in failed: {summary}\n  fix: {fix}\n  ({ids})")]
    Login {
        /// e.g. `AADSTS7000215`.
        code: Option<String>,
        summary: String,
        fix: String,
        ids: RequestIds,
    },
    /// The token lacks application permissions (admin consent missing).
    #[error(
        "the access token lacks the application permission(s) {}: admin consent is missing.\n  fix: in Entra admin center > App registrations > your app > API permissions, add the Microsoft Graph *application* permissions {} and click \"Grant admin consent\" (User.Read is delegated-only and does not count for app-only access)",
        missing.join(", "), missing.join(", ")
    )]
    MissingRoles { missing: Vec<String> },
    /// Graph answered with an error status we do not retry.
    #[error("{method} {url} failed: HTTP {status} {code}: {message}\n  fix: {fix}\n  ({ids})")]
    Api {
        method: &'static str,
        url: String,
        status: u16,
        code: String,
        message: String,
        fix: String,
        ids: RequestIds,
    },
    /// A body we cannot use (HTML page, cut JSON, missing `value`), after retries.
    #[error("{url}: unexpected response body: {problem}\n  fix: {fix}\n  ({ids})")]
    BadBody {
        url: String,
        problem: String,
        fix: String,
        ids: RequestIds,
    },
    /// Network-level failure that outlasted the retry budget.
    #[error(
        "{url}: {problem}\n  fix: check network access to the host (proxy, firewall, DNS); the run waited {waited_s:.1} s in total\n  ({ids})"
    )]
    Transport {
        url: String,
        problem: String,
        waited_s: f64,
        ids: RequestIds,
    },
    /// A host that cannot be reached in a way waiting does not cure (a name that does not
    /// resolve, a refused connection, a certificate that does not verify, a proxy that wants
    /// credentials), after `[pipeline] unreachable_seconds` of tries at most.
    #[error("{problem}\n  fix: {fix}\n  (tried for {tried_s:.1} s; nothing was committed; {ids})")]
    Unreachable {
        problem: String,
        fix: String,
        tried_s: f64,
        ids: RequestIds,
    },
    /// A report download's redirect chain could not be followed (a loop, too many hops, a
    /// scheme other than https).
    #[error(
        "report download {url}: {problem}\n  fix: a proxy or CDN between this machine and reports.office.com is redirecting downloads wrongly; allow the download host through unmodified, then run again"
    )]
    DownloadRedirect { url: String, problem: String },
    /// A report download that never arrived whole, after retries: its length did not match
    /// its Content-Length, or a close-delimited body ended inside a record.
    #[error(
        "the {report} usage report never arrived complete ({tries} downloads): {problem}; nothing was committed\n  fix: something between this machine and the download host cuts long downloads (a proxy's size or time limit, an unstable VPN); raise or lift that limit for reports.office.com, then run again"
    )]
    IncompleteDownload {
        report: String,
        problem: String,
        tries: u32,
    },
    /// Throttling or backoff would exceed `pipeline.max_wait_seconds`.
    #[error(
        "{url}: still throttled or failing (HTTP {status}); waiting another {next_wait_s:.1} s would pass the cap of {cap_s} s (waited {waited_s:.1} s so far); nothing was committed\n  fix: {fix}\n  ({ids})"
    )]
    WaitCapExceeded {
        url: String,
        status: u16,
        waited_s: f64,
        /// The wait Graph asked for (Retry-After) or the next backoff step.
        next_wait_s: f64,
        cap_s: u64,
        fix: String,
        ids: RequestIds,
    },
    /// `@odata.nextLink` pointed somewhere we must not send the token.
    #[error(
        "refusing to follow @odata.nextLink to {link:?}: it leaves the Graph host {graph_host}, and the bearer token is only ever sent to Graph\n  fix: this is a Graph or proxy fault; report it with the request id ({ids})"
    )]
    ForeignNextLink {
        link: String,
        graph_host: String,
        ids: RequestIds,
    },
    /// The same `@odata.nextLink` came back twice.
    #[error(
        "@odata.nextLink {link:?} was returned twice: stopping instead of looping forever\n  fix: run again; if it repeats, report it to Microsoft with the request id ({ids})"
    )]
    NextLinkLoop { link: String, ids: RequestIds },
    /// A report's download URL no longer works (expired); the report must be requested again.
    #[error(
        "report download {url} failed with HTTP {status}: the pre-authenticated URL has expired or is invalid, also after requesting the report again\n  fix: download URLs are valid for minutes only; check that nothing between this host and Microsoft (a proxy, TLS inspection, antivirus scanning) delays downloads, then run again"
    )]
    DownloadExpired { url: String, status: u16 },
    /// The downloaded report is not a usage-report CSV (an HTML page, a JSON error, a file a
    /// proxy converted): landing it would turn garbage into columns.
    #[error(
        "{}\n  fix: something between this host and Microsoft (a proxy, TLS inspection, a sign-in page) answered instead of the report, or converted it; check proxies, then run again",
        not_a_report(report, start)
    )]
    NotAReport { report: String, start: String },
    /// Local I/O while streaming a download.
    #[error("writing {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl GraphError {
    /// A copy of this error for another request that shared the failed attempt (a sign-in
    /// waited for by several streams). I/O errors keep their kind and text.
    pub fn duplicate(&self) -> GraphError {
        use GraphError as E;
        match self {
            E::Login {
                code,
                summary,
                fix,
                ids,
            } => E::Login {
                code: code.clone(),
                summary: summary.clone(),
                fix: fix.clone(),
                ids: ids.clone(),
            },
            E::MissingRoles { missing } => E::MissingRoles {
                missing: missing.clone(),
            },
            E::Api {
                method,
                url,
                status,
                code,
                message,
                fix,
                ids,
            } => E::Api {
                method,
                url: url.clone(),
                status: *status,
                code: code.clone(),
                message: message.clone(),
                fix: fix.clone(),
                ids: ids.clone(),
            },
            E::BadBody {
                url,
                problem,
                fix,
                ids,
            } => E::BadBody {
                url: url.clone(),
                problem: problem.clone(),
                fix: fix.clone(),
                ids: ids.clone(),
            },
            E::Transport {
                url,
                problem,
                waited_s,
                ids,
            } => E::Transport {
                url: url.clone(),
                problem: problem.clone(),
                waited_s: *waited_s,
                ids: ids.clone(),
            },
            E::Unreachable {
                problem,
                fix,
                tried_s,
                ids,
            } => E::Unreachable {
                problem: problem.clone(),
                fix: fix.clone(),
                tried_s: *tried_s,
                ids: ids.clone(),
            },
            E::DownloadRedirect { url, problem } => E::DownloadRedirect {
                url: url.clone(),
                problem: problem.clone(),
            },
            E::IncompleteDownload {
                report,
                problem,
                tries,
            } => E::IncompleteDownload {
                report: report.clone(),
                problem: problem.clone(),
                tries: *tries,
            },
            E::WaitCapExceeded {
                url,
                status,
                waited_s,
                next_wait_s,
                cap_s,
                fix,
                ids,
            } => E::WaitCapExceeded {
                url: url.clone(),
                status: *status,
                waited_s: *waited_s,
                next_wait_s: *next_wait_s,
                cap_s: *cap_s,
                fix: fix.clone(),
                ids: ids.clone(),
            },
            E::ForeignNextLink {
                link,
                graph_host,
                ids,
            } => E::ForeignNextLink {
                link: link.clone(),
                graph_host: graph_host.clone(),
                ids: ids.clone(),
            },
            E::NextLinkLoop { link, ids } => E::NextLinkLoop {
                link: link.clone(),
                ids: ids.clone(),
            },
            E::DownloadExpired { url, status } => E::DownloadExpired {
                url: url.clone(),
                status: *status,
            },
            E::NotAReport { report, start } => E::NotAReport {
                report: report.clone(),
                start: start.clone(),
            },
            E::Io { path, source } => E::Io {
                path: path.clone(),
                source: std::io::Error::new(source.kind(), source.to_string()),
            },
        }
    }

    /// The HTTP status Graph refused a request with, for errors that have one.
    pub fn status(&self) -> Option<u16> {
        match self {
            GraphError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// The token endpoint's error body (graph-api.md §1).
#[derive(Debug, Deserialize, Default)]
pub struct LoginErrorBody {
    #[serde(default)]
    pub error: String,
    #[serde(default)]
    pub error_description: String,
    #[serde(default)]
    pub error_codes: Vec<i64>,
    #[serde(default)]
    pub trace_id: Option<String>,
    #[serde(default)]
    pub correlation_id: Option<String>,
}

/// Summary and fix for a refused sign-in. `tenant` and `client_id` are echoed (they are
/// identifiers, not secrets); the secret never is.
pub fn login_advice(
    body: &LoginErrorBody,
    tenant: &str,
    client_id: &str,
    cloud: &str,
) -> (Option<String>, String, String) {
    let code = body
        .error_codes
        .first()
        .map(|c| format!("AADSTS{c}"))
        .or_else(|| {
            body.error_description
                .split(':')
                .next()
                .filter(|s| s.starts_with("AADSTS"))
                .map(str::to_string)
        });
    // First line of the description, without the trace/correlation block.
    let first_line = body
        .error_description
        .lines()
        .next()
        .unwrap_or("")
        .trim()
        .to_string();
    let summary = if first_line.is_empty() {
        format!("{} (no description)", body.error)
    } else {
        first_line
    };
    let num = code.as_deref().and_then(|c| c.strip_prefix("AADSTS"));
    let fix = match num {
        Some("7000215") => "the client secret is wrong. In Entra admin center > App registrations > your app > Certificates & secrets, copy the secret's *Value* column (shown only right after creation), NOT its *Secret ID*, into the environment variable or file named in [tenant]; if the value is lost, create a new secret".to_string(),
        Some("7000222") => "the client secret has expired. Create a new client secret under App registrations > your app > Certificates & secrets, put its Value in the env var/file named in [tenant], and delete the expired one".to_string(),
        Some("700016") => format!("no application {client_id} exists in tenant {tenant}. Check client_id (App registrations > your app > Overview > Application (client) ID) and tenant_id, that the app is registered in (or consented for) this tenant, and that cloud = \"{cloud}\" is the app's cloud"),
        Some("90002") => format!("tenant {tenant} was not found in the {cloud} cloud. Check tenant_id (Entra admin center > Overview > Directory (tenant) ID) and the cloud setting (usgov/usgov-dod/china tenants live in their own clouds)"),
        Some("900023") => format!("{tenant:?} is not a valid tenant identifier. Use the Directory (tenant) ID GUID or a verified domain like contoso.onmicrosoft.com"),
        Some("7000229") => "the app has no service principal in this tenant. An admin must consent to the app in this tenant (Enterprise applications), or use a single-tenant app registered here".to_string(),
        Some("7000112") => "the application is disabled in this tenant. Re-enable it under Enterprise applications > your app > Properties".to_string(),
        Some("53003") => "a Conditional Access policy for workload identities blocked the sign-in. Exclude this app from the policy or allow this network location".to_string(),
        Some("90038") => "the tenant belongs to a national cloud: set [tenant] cloud to usgov, usgov-dod or china".to_string(),
        Some("70011") | Some("700022") | Some("700023") => "the requested scope is invalid for this cloud; check [tenant] cloud".to_string(),
        Some("50196") | Some("90055") => "the identity platform is throttling token requests for this tenant; wait a few minutes and run again".to_string(),
        _ => match body.error.as_str() {
            "invalid_client" => "the client credentials were rejected: check client_id and the secret value".to_string(),
            "unauthorized_client" => "the app is not authorised in this tenant: check client_id, tenant_id and admin consent".to_string(),
            "temporarily_unavailable" => "the identity platform is temporarily unavailable; run again later".to_string(),
            _ => "check tenant_id, client_id, the secret and the cloud in the connector file; `m365-connector check` walks through each".to_string(),
        },
    };
    (code, summary, fix)
}

/// Graph's error body: `{"error":{"code","message","innerError":{"request-id",...}}}`.
#[derive(Debug, Deserialize, Default)]
pub struct GraphErrorBody {
    #[serde(default)]
    pub error: GraphErrorInner,
}

#[derive(Debug, Deserialize, Default)]
pub struct GraphErrorInner {
    #[serde(default)]
    pub code: String,
    #[serde(default)]
    pub message: String,
    #[serde(default, rename = "innerError", alias = "innererror")]
    pub inner: Option<serde_json::Value>,
}

impl GraphErrorBody {
    /// Parses a Graph error body; anything else yields an empty body (code "unknown").
    pub fn parse(bytes: &[u8]) -> GraphErrorBody {
        serde_json::from_slice(bytes).unwrap_or_default()
    }

    /// `innerError.request-id`, when present.
    pub fn request_id(&self) -> Option<String> {
        self.error
            .inner
            .as_ref()
            .and_then(|i| i.get("request-id"))
            .and_then(|v| v.as_str())
            .map(str::to_string)
    }
}

/// What to do about a non-retryable Graph error, by status and code.
pub fn graph_fix(status: u16, code: &str, what: &str) -> String {
    match (status, code) {
        (_, "Authorization_RequestDenied") => format!(
            "the app may not read {what}: grant the Microsoft Graph application permissions Directory.Read.All and Organization.Read.All and click \"Grant admin consent\" (Entra admin center > App registrations > your app > API permissions)"
        ),
        (_, "S2SUnauthorized") => "the app may not read usage reports: grant the Microsoft Graph application permission Reports.Read.All and click \"Grant admin consent\"".to_string(),
        (_, "Authentication_RequestFromNonPremiumTenantOrB2CTenant") => "signInActivity needs Entra ID P1/P2 and AuditLog.Read.All; the connector does not request it by default".to_string(),
        (401, _) => "the access token was rejected: check that tenant_id and cloud match the app's registration, then run again".to_string(),
        (403, _) => format!("access to {what} was denied: check the app's application permissions and admin consent; Conditional Access may also block app-only access"),
        (404, _) => format!("{what} was not found: the endpoint may not exist in this cloud (usage reports are global-cloud only in v1.0)"),
        (400, _) => "Graph rejected the request as invalid; report it as a connector bug with the request id".to_string(),
        _ => "run again later; if it persists, report it with the request id".to_string(),
    }
}

/// What is wrong with a body that is not a report, without the fix: also the problem of a
/// report that a proxy answered inline (retried as a bad Graph body first).
pub fn not_a_report(report: &str, start: &str) -> String {
    format!(
        "the {report} usage report is not the documented CSV: its header has none of the documented columns (the file starts with {start:?})"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(json: &str) -> LoginErrorBody {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn secret_id_hint() {
        let b = body(
            r#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID.\r\nTrace ID: 1\r\nCorrelation ID: 2","error_codes":[7000215]}"#,
        );
        let (code, summary, fix) = login_advice(&b, "t", "c", "global");
        assert_eq!(code.as_deref(), Some("AADSTS7000215"));
        assert!(summary.starts_with("AADSTS7000215: Invalid client secret"));
        assert!(!summary.contains("Trace ID"));
        assert!(fix.contains("NOT its *Secret ID*"));
    }

    #[test]
    fn each_known_code_has_specific_advice() {
        for (code, needle) in [
            (7000222, "expired"),
            (700016, "no application c exists in tenant t"),
            (90002, "was not found in the global cloud"),
            (900023, "not a valid tenant identifier"),
        ] {
            let b = body(&format!(
                r#"{{"error":"x","error_description":"AADSTS{code}: text","error_codes":[{code}]}}"#
            ));
            let (_, _, fix) = login_advice(&b, "t", "c", "global");
            assert!(fix.contains(needle), "{code}: {fix}");
        }
    }

    #[test]
    fn graph_codes() {
        assert!(
            graph_fix(403, "Authorization_RequestDenied", "users").contains("Directory.Read.All")
        );
        assert!(graph_fix(401, "S2SUnauthorized", "reports").contains("Reports.Read.All"));
        let b = GraphErrorBody::parse(br#"{"error":{"code":"Authorization_RequestDenied","message":"Insufficient privileges to complete the operation.","innerError":{"request-id":"abc"}}}"#);
        assert_eq!(b.error.code, "Authorization_RequestDenied");
        assert_eq!(b.request_id().as_deref(), Some("abc"));
        assert_eq!(GraphErrorBody::parse(b"<html>").error.code, "");
    }
}
