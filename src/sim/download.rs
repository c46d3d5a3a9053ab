//! The report download host (`reports.office.com` in real life): pre-authenticated,
//! short-lived URLs that serve the CSV with a BOM.
//!
//! The URL token is self-contained (report, period, expiry, MAC), so the host keeps no state
//! per report request. It needs no `Authorization` header; one sent anyway is counted, since
//! a client that forwards the Graph bearer token to another host leaks it.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::AUTHORIZATION;
use hyper::{Method, Request, Response, StatusCode};

use super::csv_body::CsvBody;
use super::faults::{Failure, Target};
use super::overrides::OverrideHost;
use super::respond::{self, Ctx, Resp};
use super::state::{State, bump};
use crate::streams::Report;

/// How long a download URL stays valid.
pub const DOWNLOAD_TTL: Duration = Duration::from_secs(300);

/// Bytes of a download sent before a simulated reset.
const RESET_AFTER_BYTES: usize = 8 * 1024;

/// Mints the opaque token of a download URL for `r`, valid for [`DOWNLOAD_TTL`].
pub fn mint(state: &State, r: Report, period_days: u32, now: DateTime<Utc>) -> String {
    let idx = Report::ALL.iter().position(|x| *x == r).unwrap_or(0) as u8;
    let expires = now.timestamp_millis() + DOWNLOAD_TTL.as_millis() as i64;
    let nonce = state.new_guid();
    let mut payload = vec![1u8, idx];
    payload.extend_from_slice(&(period_days as u16).to_le_bytes());
    payload.extend_from_slice(&expires.to_le_bytes());
    payload.extend_from_slice(&nonce.as_bytes()[..8]);
    let mac = state.mac(&payload);
    payload.extend_from_slice(&mac);
    URL_SAFE_NO_PAD.encode(payload)
}

/// Why a token was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum TokenError {
    Invalid,
    Expired,
}

/// Checks a download token: `(report, period_days)`.
pub fn open(state: &State, token: &str, now: DateTime<Utc>) -> Result<(Report, u32), TokenError> {
    let b = URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| TokenError::Invalid)?;
    if b.len() != 28 || b[0] != 1 {
        return Err(TokenError::Invalid);
    }
    let (payload, mac) = b.split_at(20);
    if state.mac(payload) != mac {
        return Err(TokenError::Invalid);
    }
    let r = *Report::ALL
        .get(payload[1] as usize)
        .ok_or(TokenError::Invalid)?;
    let period = u16::from_le_bytes([payload[2], payload[3]]) as u32;
    let mut exp = [0u8; 8];
    exp.copy_from_slice(&payload[4..12]);
    if now.timestamp_millis() >= i64::from_le_bytes(exp) {
        return Err(TokenError::Expired);
    }
    Ok((r, period))
}

fn not_found(ctx: &Ctx) -> Resp {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?><Error><Code>ReportNotFound</Code>\
         <Message>The report download link is invalid or has expired. Request the report again from Microsoft Graph.</Message>\
         <RequestId>{}</RequestId></Error>",
        ctx.request_id
    );
    let mut r = Response::new(respond::full(body));
    *r.status_mut() = StatusCode::NOT_FOUND;
    r.headers_mut().insert(
        "content-type",
        hyper::header::HeaderValue::from_static("application/xml"),
    );
    with_request_id(&mut r, ctx);
    r
}

/// The download host tags responses with a request id too, for support tickets.
fn with_request_id(r: &mut Resp, ctx: &Ctx) {
    if let Ok(v) = hyper::header::HeaderValue::from_str(&ctx.request_id) {
        r.headers_mut().insert("request-id", v);
    }
}

/// Handles one request to the download host.
pub async fn handle(state: &Arc<State>, req: Request<Incoming>, ctx: Ctx) -> io::Result<Resp> {
    state.stats.request("download");
    if req.headers().contains_key(AUTHORIZATION) {
        bump(&state.stats.download_authorization_headers);
    }
    if let Some(o) = state
        .overrides
        .take(OverrideHost::Download, req.uri().path())
    {
        return Ok(o.response(&ctx));
    }
    let token = req
        .uri()
        .path()
        .strip_prefix("/data/download/")
        .map(str::to_string);
    if req.method() != Method::GET {
        let mut r = not_found(&ctx);
        *r.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
        return Ok(r);
    }
    let Some(Ok((r, period))) = token.map(|t| open(state, &t, ctx.now)) else {
        return Ok(not_found(&ctx));
    };

    let (f, d) = state.decide(Target::Download);
    if d.slow {
        bump(&state.stats.slow);
        tokio::time::sleep(Duration::from_millis(f.slow_ms)).await;
    }
    match d.failure {
        Some(Failure::DownloadExpired) => {
            bump(&state.stats.download_expired);
            return Ok(not_found(&ctx));
        }
        Some(failure) => {
            if let Some(resp) = respond::status_failure(state, &f, failure, &ctx) {
                return Ok(resp);
            }
        }
        None => {}
    }

    let tenant = state.tenant;
    let body = CsvBody::new(tenant.report_header(r), tenant.report_rows_for(r, period));
    let mut resp = Response::new(body.boxed_unsync());
    resp.headers_mut().insert(
        "content-type",
        hyper::header::HeaderValue::from_static("application/octet-stream"),
    );
    with_request_id(&mut resp, &ctx);
    if d.failure == Some(Failure::Reset) {
        bump(&state.stats.resets);
        return Ok(respond::reset(resp, RESET_AFTER_BYTES));
    }
    Ok(resp)
}
