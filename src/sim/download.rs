//! The report download host (`reports.office.com` in real life): pre-authenticated,
//! short-lived URLs that serve the CSV with a BOM.
//!
//! The URL token is self-contained (report, period, expiry, MAC), so the host keeps no state
//! per report request. It needs no `Authorization` header; one sent anyway is counted, since
//! a client that forwards the Graph bearer token to another host leaks it.
//!
//! With `redirects=N`, a URL first answers `302 Found` N times, each hop to
//! `/data/download/{token}/hop-{k}` (k = 1..=N) on this host; hop N (or a URL naming a hop
//! past N) serves the CSV. Hops roll no fault dice: the faults are decided where the CSV is
//! served, as without hops.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, HOST, HeaderValue, LOCATION};
use hyper::{Method, Request, Response, StatusCode};

use super::csv_body::{CsvBody, CutCsvBody};
use super::faults::Failure;
use super::overrides::OverrideHost;
use super::respond::{self, Ctx, Resp};
use super::state::{State, bump};
use super::tenant::Tenant;
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

/// The path of hop `hop` of a download URL (0: the URL the report call handed out).
fn hop_path(token: &str, hop: u8) -> String {
    if hop == 0 {
        format!("/data/download/{token}")
    } else {
        format!("/data/download/{token}/hop-{hop}")
    }
}

/// Splits `/data/download/{token}[/hop-{k}]`; `None` for anything else.
fn parse_path(path: &str) -> Option<(&str, u8)> {
    let rest = path.strip_prefix("/data/download/")?;
    match rest.split_once('/') {
        None => Some((rest, 0)),
        Some((token, hop)) => Some((token, hop.strip_prefix("hop-")?.parse().ok()?)),
    }
}

/// `302 Found` to `location`, with no body.
fn found(ctx: &Ctx, location: &str) -> Resp {
    let mut r = Response::new(respond::empty());
    *r.status_mut() = StatusCode::FOUND;
    if let Ok(v) = HeaderValue::from_str(location) {
        r.headers_mut().insert(LOCATION, v);
    }
    with_request_id(&mut r, ctx);
    r
}

/// The URL the client asked for, as it named the host (`Host`), for `redirect-loop`.
fn request_url(state: &State, req: &Request<Incoming>) -> String {
    let path = req
        .uri()
        .path_and_query()
        .map_or_else(|| req.uri().path().to_string(), |p| p.as_str().to_string());
    match req.headers().get(HOST).and_then(|h| h.to_str().ok()) {
        Some(host) => format!("http://{host}{path}"),
        None => format!("{}{path}", state.download_url),
    }
}

/// `html-download`: what a web proxy that wants an interactive sign-in serves instead of
/// the file, with a 200.
fn sign_in_page(ctx: &Ctx) -> Resp {
    let body = format!(
        "<!DOCTYPE html><html><head><title>Sign in to continue</title>\
         <meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\"></head>\
         <body><form method=\"post\" action=\"/proxy/sign-in\"><h1>Sign in to continue</h1>\
         <p>Your organization requires you to sign in before you can reach this site.</p>\
         <label>User name <input type=\"text\" name=\"username\"></label>\
         <label>Password <input type=\"password\" name=\"password\"></label>\
         <button type=\"submit\">Sign in</button></form><p>Reference: {}</p></body></html>\r\n",
        ctx.request_id
    );
    let mut r = Response::new(respond::full(body));
    r.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    r.headers_mut()
        .insert("cache-control", HeaderValue::from_static("no-store"));
    with_request_id(&mut r, ctx);
    r
}

/// The data record (0-based) a `cut-close` download is cut in: about half of the report
/// (reports hold about 0.9 rows per user), i.e. the first or second record of a tiny one.
fn cut_row(users: u64) -> u64 {
    users.saturating_mul(9) / 20
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
/// The data rows a download serves: the report's, with every 25th row that names a user
/// served twice under `repeat-rows` (counted in `counted`'s stats when given).
fn served_rows(
    tenant: Tenant,
    r: Report,
    period: u32,
    repeat: bool,
    counted: Option<Arc<State>>,
) -> Box<dyn Iterator<Item = Vec<String>> + Send> {
    let rows = tenant.report_rows_for(r, period);
    if !repeat {
        return Box::new(rows);
    }
    Box::new(rows.enumerate().flat_map(move |(i, row)| {
        if i % 25 == 24 && !row.iter().any(|c| c == "(Unknown)") {
            if let Some(state) = &counted {
                bump(&state.stats.repeat_rows);
            }
            vec![row.clone(), row]
        } else {
            vec![row]
        }
    }))
}

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
    let path = req.uri().path().to_string();
    let parsed = parse_path(&path);
    if req.method() != Method::GET {
        let mut r = not_found(&ctx);
        *r.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
        return Ok(r);
    }
    let Some((token, hop)) = parsed else {
        return Ok(not_found(&ctx));
    };
    let Ok((r, period)) = open(state, token, ctx.now) else {
        return Ok(not_found(&ctx));
    };

    let redirects = state.faults().redirects;
    if hop < redirects {
        bump(&state.stats.redirect_hops);
        let next = format!("{}{}", state.download_url, hop_path(token, hop + 1));
        return Ok(found(&ctx, &next));
    }

    let (f, d) = state.decide_download(r);
    if d.slow {
        bump(&state.stats.slow);
        tokio::time::sleep(Duration::from_millis(f.slow_ms)).await;
    }
    match d.failure {
        Some(Failure::DownloadExpired) => {
            bump(&state.stats.download_expired);
            return Ok(not_found(&ctx));
        }
        Some(Failure::HtmlDownload) => {
            bump(&state.stats.html_download);
            return Ok(sign_in_page(&ctx));
        }
        Some(Failure::RedirectLoop) => {
            bump(&state.stats.redirect_loops);
            return Ok(found(&ctx, &request_url(state, &req)));
        }
        Some(failure) => {
            if let Some(resp) = respond::status_failure(state, &f, failure, &ctx) {
                return Ok(resp);
            }
        }
        None => {}
    }

    let tenant = state.tenant;
    let header = tenant.report_header(r);
    let counted = d.repeat_rows.then(|| Arc::clone(state));
    let rows = served_rows(tenant, r, period, d.repeat_rows, counted);
    let mut resp = if d.failure == Some(Failure::CutClose) {
        bump(&state.stats.cut_close);
        let body = CutCsvBody::new(header, rows, cut_row(tenant.users), d.cut_quoted);
        // An HTTP/1.0 response of unknown length: hyper writes it close-delimited (no
        // Content-Length, no chunks), so the end of the connection is the end of the body.
        let mut resp = Response::new(body.boxed_unsync());
        *resp.version_mut() = hyper::Version::HTTP_10;
        resp.headers_mut()
            .insert("connection", HeaderValue::from_static("close"));
        resp
    } else {
        Response::new(CsvBody::new(header, rows).boxed_unsync())
    };
    resp.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("application/octet-stream"),
    );
    with_request_id(&mut resp, &ctx);
    match d.failure {
        Some(Failure::Reset) => {
            bump(&state.stats.resets);
            Ok(respond::reset(resp, RESET_AFTER_BYTES))
        }
        Some(Failure::BadLength) => {
            bump(&state.stats.bad_length);
            // The true length, counted on a second pass (off this thread: a big report
            // takes a while) so that what is advertised is exactly 1000 bytes too many.
            let repeat = d.repeat_rows;
            let len = tokio::task::spawn_blocking(move || {
                let rows = served_rows(tenant, r, period, repeat, None);
                CsvBody::new(tenant.report_header(r), rows).byte_len()
            })
            .await
            .map_err(io::Error::other)?;
            Ok(respond::bad_length(resp, len))
        }
        Some(Failure::Trickle) => {
            bump(&state.stats.trickled);
            Ok(respond::trickle(resp, &f))
        }
        _ => Ok(resp),
    }
}
