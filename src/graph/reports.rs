//! Usage reports: Graph answers `302 Found` with a short-lived, pre-authenticated download
//! URL on another host. We follow it ourselves, without the Authorization header, and stream
//! the CSV to a file (a million-user report must not sit in memory).

use std::path::Path;

use reqwest::Url;
use tokio::io::AsyncWriteExt;

use super::complete::{CsvProof, Framing};
use super::transport::NetFailure;
use super::{CallStats, GraphClient, GraphError, Reply, RequestIds, redact_query};
use crate::config::is_loopback;
use crate::land::report_csv::ReportReader;
use crate::streams::Report;

/// How often a report is requested again when its download URL has expired. Each request
/// counts against the 14 calls / 10 minutes budget of that report API.
const MAX_REQUESTS_PER_REPORT: u32 = 3;

/// What Graph answered to the report call.
enum Answer {
    Redirect(Url),
    /// Some proxies follow the redirect themselves; the CSV then arrives directly (already
    /// proven complete and a report by [`redirect_target`]).
    Inline(bytes::Bytes),
}

/// Downloads `report` for `period` into `dest`; returns the number of bytes written.
///
/// The file is written only from a download proven complete (see [`super::complete`]) whose
/// header is a usage report's (not a proxy's HTML page). Anything else is a failed transfer:
/// downloaded again, and the report requested again when the download URL no longer works,
/// up to [`super::MAX_BAD_BODIES`] times under the run's wait cap. Never landed, never
/// "repaired".
pub async fn download_report(
    client: &GraphClient,
    report: Report,
    period: &str,
    dest: &Path,
    stats: &CallStats,
) -> Result<u64, GraphError> {
    let url = client.v1(&report.path(period))?;
    let mut requests = 0;
    let mut bad = BadDownloads::default();
    loop {
        requests += 1;
        let answer = client
            .get_graph(&url, stats, "usage reports", |r: Reply| {
                redirect_target(r, report)
            })
            .await?;
        let location = match answer {
            Answer::Inline(body) => {
                write_all(dest, &body).await?;
                return Ok(body.len() as u64);
            }
            Answer::Redirect(loc) => loc,
        };
        match stream_to_file(client, report, &location, dest, stats, &mut bad).await {
            Ok(n) => return Ok(n),
            Err(GraphError::DownloadExpired { url, status })
                if requests < MAX_REQUESTS_PER_REPORT + bad.count =>
            {
                tracing::warn!(report = %report, %url, status, "report download URL expired or single-use; requesting the report again");
            }
            Err(e) => return Err(e),
        }
    }
}

/// Failed transfers of one report so far (cut bodies, pages that are not the report).
#[derive(Debug, Default)]
struct BadDownloads {
    count: u32,
    tries: super::Attempts,
}

fn redirect_target(r: Reply, report: Report) -> Result<Answer, (String, RequestIds)> {
    if r.status == 200 {
        // Already framed by Content-Length or chunks (checked by the client); the CSV
        // must still be a report, and a close-delimited one must end on a record.
        let mut proof = CsvProof::new();
        proof.feed(&r.body);
        let framing = if r.headers.contains_key(reqwest::header::CONTENT_LENGTH)
            || r.headers.contains_key(reqwest::header::TRANSFER_ENCODING)
        {
            Framing::Framed
        } else {
            Framing::CloseDelimited
        };
        // Not a report at all says more than "cut short", so it is checked first.
        if let Err(GraphError::NotAReport { report, start }) = is_a_report(&proof, report) {
            return Err((super::error::not_a_report(&report, &start), r.ids));
        }
        if let Err(problem) = proof.verdict(framing) {
            return Err((problem, r.ids));
        }
        return Ok(Answer::Inline(r.body));
    }
    if !(300..400).contains(&r.status) {
        return Err((
            format!("HTTP {} where a 302 redirect was expected", r.status),
            r.ids,
        ));
    }
    let Some(loc) = r
        .headers
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
    else {
        return Err(("a redirect without a Location header".into(), r.ids));
    };
    let url = match Url::parse(loc) {
        Ok(u) => u,
        Err(e) => return Err((format!("a redirect to an invalid URL ({e})"), r.ids)),
    };
    match url.scheme() {
        "https" => Ok(Answer::Redirect(url)),
        "http" if is_loopback(&url) => Ok(Answer::Redirect(url)),
        _ => Err((
            format!(
                "a redirect to {} over plain http or an unknown scheme; refusing",
                redact_query(&url)
            ),
            r.ids,
        )),
    }
}

/// A body whose header has none of the report's documented columns is not the report: an
/// HTML sign-in page, a JSON error, a CSV a proxy converted. An empty body is a report with
/// no rows (Microsoft serves those when usage data lags).
fn is_a_report(proof: &CsvProof, report: Report) -> Result<(), GraphError> {
    let line = strip_bom(proof.header_line());
    if line.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(());
    }
    let names = match ReportReader::from_reader(line) {
        Ok(r) => r.header().to_vec(),
        Err(_) => Vec::new(),
    };
    let documented = report.documented_columns();
    if names.iter().any(|h| documented.contains(&h.as_str())) {
        Ok(())
    } else {
        Err(GraphError::NotAReport {
            report: report.to_string(),
            start: super::snippet(strip_bom(proof.start())),
        })
    }
}

fn strip_bom(bytes: &[u8]) -> &[u8] {
    bytes
        .strip_prefix(b"\xef\xbb\xbf".as_slice())
        .unwrap_or(bytes)
}

/// Bytes of a download gathered before each write to its file (the eight reports download
/// at once: 8 MiB in all).
const DOWNLOAD_BUFFER: usize = 1 << 20;

/// Streams the download body to `dest`, retrying transient failures from scratch, and
/// keeps the file only when it is proven complete and a report.
async fn stream_to_file(
    client: &GraphClient,
    report: Report,
    url: &Url,
    dest: &Path,
    stats: &CallStats,
    bad: &mut BadDownloads,
) -> Result<u64, GraphError> {
    loop {
        let (mut resp, at) = client.get_download(url, stats, &mut bad.tries).await?;
        let framing = Framing::of(&resp);
        // Buffered: tokio writes a file on its blocking pool, one hand-off (a thread woken)
        // per write, and a body arrives in many small chunks; unbuffered, those hand-offs
        // were 0.4 s of the 4.1 s CPU of a 100 k-user extract.
        let mut file = tokio::io::BufWriter::with_capacity(DOWNLOAD_BUFFER, create(dest).await?);
        let mut proof = CsvProof::new();
        let mut broke = None;
        loop {
            match resp.chunk().await {
                Ok(Some(chunk)) => {
                    proof.feed(&chunk);
                    file.write_all(&chunk).await.map_err(|e| io(dest, e))?;
                }
                Ok(None) => break,
                Err(e) => {
                    broke = Some(NetFailure::classify(&e, true));
                    break;
                }
            }
        }
        let ids = RequestIds::fresh();
        if let Some(failure) = broke {
            tracing::warn!(report = %report, url = %redact_query(&at), kind = failure.kind(), "report download interrupted; downloading again (never landed)");
            client
                .after_net_failure(&at, failure, true, &mut bad.tries, stats, &ids)
                .await?;
            continue;
        }
        // Not a report at all (a proxy's page) says more than "cut short": checked first.
        let verdict = is_a_report(&proof, report).and_then(|()| {
            proof
                .verdict(framing)
                .map_err(|problem| GraphError::IncompleteDownload {
                    report: report.to_string(),
                    problem,
                    tries: bad.count + 1,
                })
        });
        match verdict {
            Ok(()) => {
                file.flush().await.map_err(|e| io(dest, e))?;
                file.get_ref().sync_all().await.map_err(|e| io(dest, e))?;
                return Ok(proof.bytes());
            }
            Err(e) => {
                drop(file);
                let _ = tokio::fs::remove_file(dest).await;
                bad.count += 1;
                if bad.count > super::MAX_BAD_BODIES {
                    return Err(e);
                }
                let problem = match &e {
                    GraphError::IncompleteDownload { problem, .. } => problem.clone(),
                    other => other.to_string(),
                };
                tracing::warn!(report = %report, url = %redact_query(&at), %problem, "report download failed its completeness check; downloading again (never landed)");
                client
                    .wait_transient(&at, &problem, &mut bad.tries.n, stats, &ids)
                    .await?;
            }
        }
    }
}

async fn create(dest: &Path) -> Result<tokio::fs::File, GraphError> {
    tokio::fs::File::create(dest).await.map_err(|e| io(dest, e))
}

async fn write_all(dest: &Path, body: &[u8]) -> Result<(), GraphError> {
    let mut f = create(dest).await?;
    f.write_all(body).await.map_err(|e| io(dest, e))?;
    f.sync_all().await.map_err(|e| io(dest, e))
}

fn io(path: &Path, source: std::io::Error) -> GraphError {
    GraphError::Io {
        path: path.display().to_string(),
        source,
    }
}
