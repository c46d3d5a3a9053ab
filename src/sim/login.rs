//! HTTP glue for `POST /{tenant}/oauth2/v2.0/token` (login.microsoftonline.com).

use std::io;
use std::sync::Arc;

use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};

use super::request::parse_pairs;
use super::respond::{self, Ctx, Resp};
use super::state::State;
use super::token::{self, AadError, Credentials};

/// Largest token request body accepted.
const MAX_FORM_BYTES: usize = 64 * 1024;

/// The `{tenant}` of a token endpoint path, if `path` is one.
pub fn token_path_tenant(path: &str) -> Option<&str> {
    let rest = path.strip_prefix('/')?;
    let (tenant, tail) = rest.split_once('/')?;
    (tail.trim_end_matches('/') == "oauth2/v2.0/token" && !tenant.is_empty()).then_some(tenant)
}

fn aad_response(state: &State, ctx: &Ctx, e: &AadError) -> Resp {
    let trace = state.new_guid();
    // Entra uses the client's client-request-id as the correlation id when it sends one.
    let correlation = ctx
        .client_request_id
        .clone()
        .filter(|c| token::is_guid(c))
        .unwrap_or_else(|| state.new_guid());
    let body = token::aad_error_body(e, &trace, &correlation, ctx.now);
    let mut r = login_response(ctx, respond::full(body));
    *r.status_mut() = StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST);
    if let Ok(v) = HeaderValue::from_str(&trace) {
        r.headers_mut().insert("x-ms-request-id", v);
    }
    r
}

fn login_response(ctx: &Ctx, body: respond::Body) -> Resp {
    let mut r = Response::new(body);
    let h = r.headers_mut();
    h.insert(
        "content-type",
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    h.insert(
        "cache-control",
        HeaderValue::from_static("no-store, no-cache"),
    );
    h.insert("pragma", HeaderValue::from_static("no-cache"));
    if let Some(v) = ctx
        .client_request_id
        .as_deref()
        .and_then(|c| HeaderValue::from_str(c).ok())
    {
        h.insert("client-request-id", v);
    }
    r
}

/// Handles a token request. Faults don't apply here, except `expired-secret`.
pub async fn handle(
    state: &Arc<State>,
    req: Request<Incoming>,
    tenant: String,
    ctx: Ctx,
) -> io::Result<Resp> {
    state.stats.request("token");
    if req.method() != Method::POST {
        let e = AadError {
            status: 400,
            error: "invalid_request",
            code: 900561,
            message: format!(
                "The endpoint only accepts POST, OPTIONS requests. Received a {} request.",
                req.method()
            ),
        };
        return Ok(aad_response(state, &ctx, &e));
    }
    let basic = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = match Limited::new(req.into_body(), MAX_FORM_BYTES)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            let e = AadError {
                status: 400,
                error: "invalid_request",
                code: 90014,
                message: format!(
                    "The request body could not be read (at most {MAX_FORM_BYTES} bytes are accepted)."
                ),
            };
            return Ok(aad_response(state, &ctx, &e));
        }
    };
    let form = std::str::from_utf8(&body)
        .map_err(|e| e.to_string())
        .and_then(|s| parse_pairs(s, true));
    let form = match form {
        Ok(f) => f,
        Err(_) => {
            // The reason may quote the body, which holds the secret: don't echo it.
            let e = AadError {
                status: 400,
                error: "invalid_request",
                code: 90014,
                message: "The request body is not a valid application/x-www-form-urlencoded form."
                    .to_string(),
            };
            return Ok(aad_response(state, &ctx, &e));
        }
    };
    let faults = state.faults();
    let creds = Credentials {
        tenant_id: &state.opts.tenant_id,
        client_id: &state.opts.client_id,
        client_secret: &state.opts.client_secret,
        expired_secret: faults.expired_secret,
    };
    if let Err(e) = token::check_request(&creds, &tenant, &form, basic.as_deref()) {
        return Ok(aad_response(state, &ctx, &e));
    }
    let jti = state.issue_token();
    let lifetime = state.opts.token_lifetime_secs;
    let access_token = token::mint(
        &state.opts.tenant_id,
        &state.opts.client_id,
        &state.opts.roles,
        &jti,
        ctx.now.timestamp(),
        lifetime,
    );
    Ok(login_response(
        &ctx,
        respond::full(token::success_body(&access_token, lifetime)),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_token_paths() {
        assert_eq!(
            token_path_tenant("/contoso.onmicrosoft.com/oauth2/v2.0/token"),
            Some("contoso.onmicrosoft.com")
        );
        assert_eq!(token_path_tenant("/abc/oauth2/v2.0/token/"), Some("abc"));
        assert_eq!(token_path_tenant("/abc/oauth2/token"), None);
        assert_eq!(token_path_tenant("//oauth2/v2.0/token"), None);
        assert_eq!(token_path_tenant("/v1.0/users"), None);
    }
}
