//! Building responses: Graph's headers and error bodies, throttling, and the fault variants
//! of a good response (HTML instead of JSON, a cut body, a dropped connection, a body shorter
//! than its Content-Length, a body sent a few bytes at a time).

use std::io;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use http_body_util::{BodyExt, Full, combinators::UnsyncBoxBody};
use hyper::header::{CONTENT_LENGTH, HeaderName, HeaderValue, RETRY_AFTER};
use hyper::{Response, StatusCode};
use serde_json::json;

use super::csv_body::{CutBody, ShortBody, TrickleBody};
use super::faults::{Failure, Faults, retry_after_value};
use super::overrides::{Override, OverrideHost};
use super::state::{State, bump};

pub type Body = UnsyncBoxBody<Bytes, io::Error>;
pub type Resp = Response<Body>;

/// Graph's JSON content type.
pub const GRAPH_JSON: &str = "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8";

/// Per-request facts every response carries.
pub struct Ctx {
    pub request_id: String,
    pub client_request_id: Option<String>,
    pub now: DateTime<Utc>,
}

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

pub fn empty() -> Body {
    full(Bytes::new())
}

/// A response with Graph's diagnostic headers.
pub fn graph_response(ctx: &Ctx, status: StatusCode, content_type: &str, body: Body) -> Resp {
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(content_type) {
        h.insert("content-type", v);
    }
    if let Ok(v) = HeaderValue::from_str(&ctx.request_id) {
        h.insert("request-id", v);
    }
    if let Some(v) = ctx
        .client_request_id
        .as_deref()
        .and_then(|c| HeaderValue::from_str(c).ok())
    {
        h.insert("client-request-id", v);
    }
    h.insert(
        "x-ms-ags-diagnostic",
        HeaderValue::from_static(r#"{"ServerInfo":{"DataCenter":"Simulator","Slice":"E","Ring":"1","ScaleUnit":"000","RoleInstance":"SIM"}}"#),
    );
    h.insert("odata-version", HeaderValue::from_static("4.0"));
    h.insert("cache-control", HeaderValue::from_static("no-cache"));
    resp
}

pub fn json_response(ctx: &Ctx, status: StatusCode, body: Vec<u8>) -> Resp {
    graph_response(ctx, status, GRAPH_JSON, full(body))
}

fn inner_error(ctx: &Ctx) -> serde_json::Value {
    json!({
        "date": ctx.now.format("%Y-%m-%dT%H:%M:%S").to_string(),
        "request-id": ctx.request_id,
        "client-request-id": ctx.client_request_id.clone().unwrap_or_else(|| ctx.request_id.clone()),
    })
}

/// `{"error":{"code","message","innerError":{date, request-id, client-request-id}}}`
pub fn graph_error(ctx: &Ctx, status: StatusCode, code: &str, message: &str) -> Resp {
    let body = json!({"error": {"code": code, "message": message, "innerError": inner_error(ctx)}});
    json_response(ctx, status, serde_json::to_vec(&body).unwrap_or_default())
}

/// 401 with the `WWW-Authenticate` challenge Graph sends.
pub fn unauthorized(ctx: &Ctx, message: &str) -> Resp {
    let mut r = graph_error(
        ctx,
        StatusCode::UNAUTHORIZED,
        "InvalidAuthenticationToken",
        message,
    );
    r.headers_mut().insert(
        "www-authenticate",
        HeaderValue::from_static(
            r#"Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/oauth2/authorize", client_id="00000003-0000-0000-c000-000000000000""#,
        ),
    );
    r
}

/// A 429 shaped like Graph's throttling sample, with `Retry-After` set when given (injected
/// 429s follow the configured mode; the report budget always sends its real wait in seconds).
pub fn too_many_requests(ctx: &Ctx, retry_after: Option<String>) -> Resp {
    let mut inner = inner_error(ctx);
    inner["code"] = json!("429");
    inner["message"] = json!("Please retry after");
    inner["status"] = json!("429");
    let body = json!({"error": {"code": "TooManyRequests", "innerError": inner, "message": "Please retry again later."}});
    let mut r = json_response(
        ctx,
        StatusCode::TOO_MANY_REQUESTS,
        serde_json::to_vec(&body).unwrap_or_default(),
    );
    if let Some(v) = retry_after.and_then(|v| HeaderValue::from_str(&v).ok()) {
        r.headers_mut().insert(RETRY_AFTER, v);
    }
    r
}

/// An injected 429/503/504, with `Retry-After` per the configured mode. `None` if the
/// failure isn't a status failure.
pub fn status_failure(state: &State, f: &Faults, failure: Failure, ctx: &Ctx) -> Option<Resp> {
    let k = state.throttled.fetch_add(1, Ordering::Relaxed);
    let retry_after = retry_after_value(f.retry_after, f.retry_after_secs, k, ctx.now);
    let mut resp = match failure {
        Failure::Status429 => {
            bump(&state.stats.status_429);
            return Some(too_many_requests(ctx, retry_after));
        }
        Failure::Status503 => {
            bump(&state.stats.status_503);
            graph_error(
                ctx,
                StatusCode::SERVICE_UNAVAILABLE,
                "serviceNotAvailable",
                "The service is temporarily unavailable for maintenance or is overloaded. Please retry after a delay.",
            )
        }
        Failure::Status504 => {
            bump(&state.stats.status_504);
            graph_error(
                ctx,
                StatusCode::GATEWAY_TIMEOUT,
                "UnknownError",
                "The gateway did not receive a timely response from the upstream server.",
            )
        }
        _ => {
            // Not a status failure: give the throttle counter its value back.
            state.throttled.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
    };
    if let Some(v) = retry_after.and_then(|v| HeaderValue::from_str(&v).ok()) {
        resp.headers_mut().insert(RETRY_AFTER, v);
    }
    Some(resp)
}

/// The page a misbehaving proxy or front door serves instead of JSON, with a 200.
pub fn html_200(ctx: &Ctx) -> Resp {
    let body = format!(
        "<!DOCTYPE html>\r\n<html><head><title>Service unavailable</title></head>\r\n<body><h1>Sorry, something went wrong.</h1>\
         <p>The request could not be processed. Please try again later.</p><p>Reference: {}</p></body></html>\r\n",
        ctx.request_id
    );
    graph_response(ctx, StatusCode::OK, "text/html; charset=utf-8", full(body))
}

/// The same response, with its JSON body cut in half and a Content-Length to match.
pub fn truncated(ctx: &Ctx, status: StatusCode, mut body: Vec<u8>) -> Resp {
    // Any strict prefix of a JSON object is invalid JSON.
    let keep = (body.len() / 2).max(1).min(body.len().saturating_sub(1));
    body.truncate(keep);
    json_response(ctx, status, body)
}

/// Headers and the first part of the body, then a dropped connection.
pub fn reset(resp: Resp, cut_at: usize) -> Resp {
    let (parts, body) = resp.into_parts();
    Response::from_parts(parts, CutBody::new(body, cut_at).boxed_unsync())
}

/// How many bytes more than it sends a `bad-length` response advertises.
pub const BAD_LENGTH_EXTRA: u64 = 1000;

/// `bad-length`: the response advertises `Content-Length: true_len + 1000`, sends its
/// `true_len` bytes and then the connection is aborted (hyper, owed the rest, gives up on it).
///
/// What reqwest 0.12 sees (checked in the simulator's tests): `send()` is `Ok` with the
/// status and headers, `content_length()` the advertised, larger value; `chunk()` hands out
/// every byte of the true body, then it and `bytes()` / `text()` fail with a
/// `reqwest::Error` of kind Decode ("error decoding response body", `is_decode()` true,
/// `is_body()` false) whose source is `hyper::Error(Body, IncompleteBody)`, i.e. an EOF
/// before the advertised length.
pub fn bad_length(resp: Resp, true_len: u64) -> Resp {
    let (mut parts, body) = resp.into_parts();
    parts.headers.insert(
        CONTENT_LENGTH,
        HeaderValue::from(true_len + BAD_LENGTH_EXTRA),
    );
    Response::from_parts(parts, ShortBody::new(body).boxed_unsync())
}

/// `trickle`: the same response, its body sent 256 bytes at once, then `trickle-bytes`
/// every `trickle-ms` (a 700 KB page at the defaults takes hours). reqwest 0.12 with a
/// `timeout` (a total deadline per request, body included) gets the headers at once, then,
/// when the deadline passes, a body read error with `is_timeout()` true (kind Decode,
/// source a Body error `TimedOut`).
pub fn trickle(resp: Resp, f: &Faults) -> Resp {
    let (parts, body) = resp.into_parts();
    let body = TrickleBody::new(
        body,
        Duration::from_millis(f.trickle_ms),
        usize::try_from(f.trickle_bytes).unwrap_or(usize::MAX),
    );
    Response::from_parts(parts, body.boxed_unsync())
}

impl Override {
    /// A `200` with Graph's JSON content type, served on every matching Graph request.
    pub fn graph_json(path_prefix: &str, body: impl Into<Bytes>) -> Override {
        Override {
            host: OverrideHost::Graph,
            path_prefix: path_prefix.to_string(),
            status: 200,
            content_type: Some(GRAPH_JSON.to_string()),
            headers: Vec::new(),
            body: body.into(),
            times: None,
        }
    }

    /// The response, with Graph's diagnostic headers (request-id, ...) on the Graph host.
    pub fn response(&self, ctx: &Ctx) -> Resp {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::OK);
        let mut resp = graph_response(ctx, status, "", full(self.body.clone()));
        let h = resp.headers_mut();
        h.remove("content-type");
        if self.host == OverrideHost::Download {
            h.remove("odata-version");
            h.remove("x-ms-ags-diagnostic");
        }
        if let Some(v) = self
            .content_type
            .as_deref()
            .and_then(|c| HeaderValue::from_str(c).ok())
        {
            h.insert("content-type", v);
        }
        for (k, v) in &self.headers {
            if let (Ok(k), Ok(v)) = (
                HeaderName::from_bytes(k.as_bytes()),
                HeaderValue::from_str(v),
            ) {
                h.insert(k, v);
            }
        }
        resp
    }
}
