//! Usage reports: Graph answers `302 Found` with a short-lived, pre-authenticated download
//! URL on another host. We follow it ourselves, without the Authorization header, and stream
//! the CSV to a file (a million-user report must not sit in memory).

use std::path::Path;

use reqwest::Url;
use tokio::io::AsyncWriteExt;

use super::{CallStats, GraphClient, GraphError, Reply, RequestIds, redact_query};
use crate::config::is_loopback;
use crate::streams::Report;

/// How often a report is requested again when its download URL has expired. Each request
/// counts against the 14 calls / 10 minutes budget of that report API.
const MAX_REQUESTS_PER_REPORT: u32 = 3;

/// What Graph answered to the report call.
enum Answer {
    Redirect(Url),
    /// Some proxies follow the redirect themselves; the CSV then arrives directly.
    Inline(bytes::Bytes),
}

/// Downloads `report` for `period` into `dest`; returns the number of bytes written.
pub async fn download_report(
    client: &GraphClient,
    report: Report,
    period: &str,
    dest: &Path,
    stats: &CallStats,
) -> Result<u64, GraphError> {
    let url = client.v1(&report.path(period))?;
    let mut requests = 0;
    loop {
        requests += 1;
        let answer = client
            .get_graph(&url, stats, "usage reports", |r: Reply| redirect_target(r))
            .await?;
        let location = match answer {
            Answer::Inline(body) => {
                write_all(dest, &body).await?;
                return Ok(body.len() as u64);
            }
            Answer::Redirect(loc) => loc,
        };
        match stream_to_file(client, &location, dest, stats).await {
            Ok(n) => return Ok(n),
            Err(GraphError::DownloadExpired { url, status })
                if requests < MAX_REQUESTS_PER_REPORT =>
            {
                tracing::warn!(report = %report, %url, status, "report download URL expired; requesting the report again");
            }
            Err(e) => return Err(e),
        }
    }
}

fn redirect_target(r: Reply) -> Result<Answer, (String, RequestIds)> {
    if r.status == 200 {
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

/// Streams the download body to `dest`, retrying transient failures from scratch.
async fn stream_to_file(
    client: &GraphClient,
    url: &Url,
    dest: &Path,
    stats: &CallStats,
) -> Result<u64, GraphError> {
    let mut attempt = 0;
    loop {
        let mut resp = client.get_download(url, stats).await?;
        let mut file = create(dest).await?;
        let mut written = 0u64;
        let mut failure = None;
        loop {
            match resp.chunk().await {
                Ok(Some(chunk)) => {
                    file.write_all(&chunk).await.map_err(|e| io(dest, e))?;
                    written += chunk.len() as u64;
                }
                Ok(None) => break,
                Err(e) => {
                    failure = Some(e.to_string());
                    break;
                }
            }
        }
        match failure {
            None => {
                file.flush().await.map_err(|e| io(dest, e))?;
                file.sync_all().await.map_err(|e| io(dest, e))?;
                return Ok(written);
            }
            Some(problem) => {
                let ids = RequestIds::fresh();
                tracing::warn!(url = %redact_query(url), %problem, "report download interrupted; retrying");
                client
                    .wait_transient(
                        url,
                        &format!("download interrupted: {problem}"),
                        &mut attempt,
                        stats,
                        &ids,
                    )
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
