//! Stage 1, extract: Graph → raw Parquet under `raw/.partial-<run_id>/`, committed by
//! writing the manifest last and renaming the directory to `raw/<run_id>/`.
//!
//! Sign-in happens before anything touches the disk, so a wrong secret leaves nothing
//! behind. The users walk runs concurrently with the small streams and the eight reports;
//! each report is requested once (the 14 calls / 10 minutes budget). Any stream failing
//! fails the run: the partial directory is removed and earlier runs are untouched.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use indicatif::ProgressBar;
use reqwest::Url;
use tokio::task::JoinSet;

use crate::concealment::{self, Setting, Tally};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::graph::paging::{Page, Pager};
use crate::graph::report_csv::ReportReader;
use crate::graph::{CallCounts, CallStats, GraphClient, reports};
use crate::land::{CsvLander, JsonLander, LandedFile, Lineage};
use crate::manifest::{Concealment, RunManifest, StreamManifest, Warning};
use crate::output::Progress;
use crate::streams::{Report, USER_SELECT, USERS_PAGE_SIZE};

/// Rows per Parquet batch when converting a report CSV.
const CSV_BATCH_ROWS: usize = 2_048;

/// A committed extract run.
#[derive(Debug, Clone)]
pub struct Extracted {
    pub run_id: String,
    pub dir: PathBuf,
    pub manifest: RunManifest,
}

/// A new run id: sortable UTC time plus a random suffix, e.g. `20261128T020000Z-7f3a`.
pub fn new_run_id(at: DateTime<Utc>) -> String {
    format!(
        "{}-{:04x}",
        at.format("%Y%m%dT%H%M%SZ"),
        crate::random::u64() as u16
    )
}

/// Runs the extract stage for `cfg` and commits the run.
pub async fn extract(cfg: &Config, progress: &Progress) -> Result<Extracted> {
    let secret = cfg.secret()?;
    let started_at = Utc::now();
    let run_id = new_run_id(started_at);
    let client = Arc::new(GraphClient::new(cfg, secret)?);

    // The run is a row in the staging database from here on, so a refused sign-in is on
    // record too (nothing else is written before sign-in succeeds).
    crate::staging::Staging::open(&cfg.pipeline.data_dir)?
        .begin_extract(cfg, &run_id, started_at)?;
    let outcome = sign_in_land_and_commit(cfg, &client, &run_id, started_at, progress).await;
    let staging = crate::staging::Staging::open(&cfg.pipeline.data_dir)?;
    match &outcome {
        Ok(run) => {
            staging.finish_extract(&run.manifest, (Utc::now() - started_at).as_seconds_f64())?
        }
        Err(e) => staging.fail(&run_id, "extract", &e.to_string()),
    }
    outcome
}

/// Signs in (and checks consent) before anything lands.
async fn sign_in_land_and_commit(
    cfg: &Config,
    client: &Arc<GraphClient>,
    run_id: &str,
    started_at: DateTime<Utc>,
    progress: &Progress,
) -> Result<Extracted> {
    let login = progress.line("sign-in");
    login.set_message(format!("tenant {}", cfg.tenant.tenant_id));
    client.token().await?;
    client.check_roles().await?;
    login.finish_with_message("ok");
    land_and_commit(cfg, client, run_id, started_at, progress).await
}

/// Lands every stream into a partial directory and commits it.
async fn land_and_commit(
    cfg: &Config,
    client: &Arc<GraphClient>,
    run_id: &str,
    started_at: DateTime<Utc>,
    progress: &Progress,
) -> Result<Extracted> {
    let run_id = run_id.to_string();
    let raw = cfg.raw_dir();
    create_private_dir(&raw)?;
    let partial = raw.join(format!(".partial-{run_id}"));
    create_private_dir(&partial)?;
    tracing::info!(run_id = %run_id, dir = %partial.display(), "extract started");

    let landed = land_streams(client, cfg, &run_id, &partial, progress).await;
    let (streams, setting) = match landed {
        Ok(v) => v,
        Err(e) => {
            remove_partial(&partial);
            return Err(e);
        }
    };

    let manifest = build_manifest(cfg, client, &run_id, started_at, streams, setting);
    let dir = raw.join(&run_id);
    let commit = manifest
        .write(&partial)
        .and_then(|_| std::fs::rename(&partial, &dir))
        .and_then(|_| sync_dir(&raw));
    if let Err(e) = commit {
        remove_partial(&partial);
        return Err(Error::io(
            format!("committing run {run_id} in {}", raw.display()),
            e,
        ));
    }
    tracing::info!(run_id = %run_id, users = manifest.users(), "extract committed");
    Ok(Extracted {
        run_id,
        dir,
        manifest,
    })
}

type StreamResult = Result<(String, StreamManifest)>;

/// What every stream task of a run shares.
#[derive(Clone)]
struct StreamCtx {
    client: Arc<GraphClient>,
    /// The run's partial directory.
    dir: PathBuf,
    run_id: String,
    /// Becomes `true` when another stream failed.
    cancel: tokio::sync::watch::Receiver<bool>,
}

async fn land_streams(
    client: &Arc<GraphClient>,
    cfg: &Config,
    run_id: &str,
    dir: &Path,
    progress: &Progress,
) -> Result<(BTreeMap<String, StreamManifest>, Setting)> {
    let mut tasks: JoinSet<StreamResult> = JoinSet::new();
    // One failing stream stops the others at their next await point. Tasks are never
    // aborted: their blocking Parquet writers must finish before the directory is removed.
    let (cancel, cancelled) = tokio::sync::watch::channel(false);

    let users_url = client.v1(&format!(
        "/users?$select={}&$top={USERS_PAGE_SIZE}",
        USER_SELECT.join(",")
    ))?;
    let users_bar = progress.line("users");
    let ctx = StreamCtx {
        client: client.clone(),
        dir: dir.to_path_buf(),
        run_id: run_id.to_string(),
        cancel: cancelled,
    };
    tasks.spawn(land_collection(
        ctx.clone(),
        "users",
        users_url,
        "users",
        users_bar,
    ));
    for (stream, path, what) in [
        ("organization", "/organization", "the organization"),
        ("subscribed_skus", "/subscribedSkus", "subscribed licences"),
    ] {
        tasks.spawn(land_collection(
            ctx.clone(),
            stream,
            client.v1(path)?,
            what,
            ProgressBar::hidden(),
        ));
    }
    let reports_bar = progress.line("reports");
    reports_bar.set_message(format!("0/{}", Report::ALL.len()));
    for report in Report::ALL {
        tasks.spawn(land_report(
            ctx.clone(),
            report,
            cfg.pipeline.report_period.clone(),
        ));
    }

    let setting = report_settings(client).await;
    let mut streams = BTreeMap::new();
    let mut reports_done = 0;
    while let Some(joined) = tasks.join_next().await {
        let result = joined.map_err(|e| Error::Internal(format!("an extract task failed: {e}")))?;
        match result {
            Ok((name, manifest)) => {
                if Report::from_stream(&name).is_some() {
                    reports_done += 1;
                    reports_bar.set_message(format!("{reports_done}/{}", Report::ALL.len()));
                }
                streams.insert(name, manifest);
            }
            Err(e) => {
                let _ = cancel.send(true);
                while tasks.join_next().await.is_some() {}
                return Err(e);
            }
        }
    }
    reports_bar.finish();
    Ok((streams, setting))
}

/// Lands a paged JSON collection. Pages are fetched while the previous one is written:
/// a bounded channel feeds a blocking writer, so memory stays at a few pages.
async fn land_collection(
    ctx: StreamCtx,
    stream: &'static str,
    first: Url,
    what: &'static str,
    bar: ProgressBar,
) -> StreamResult {
    let StreamCtx {
        client,
        dir,
        run_id,
        mut cancel,
    } = ctx;
    let stats = CallStats::default();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(i32, DateTime<Utc>, Page)>(4);
    let lineage = Lineage {
        run_id,
        stream: stream.to_string(),
    };
    let writer = tokio::task::spawn_blocking(move || -> Result<LandedFile> {
        let mut lander = JsonLander::create(&dir, stream, lineage)?;
        while let Some((page_no, at, page)) = rx.blocking_recv() {
            lander.write_page(
                page_no,
                at,
                page.records.iter().map(|r| &page.body[r.clone()]),
            )?;
        }
        Ok(lander.finish()?)
    });

    let mut pager = Pager::new(first, client.graph_url());
    let mut pages = 0u64;
    let mut rows = 0u64;
    let walked: Result<()> = async {
        loop {
            let next = tokio::select! {
                next = pager.next_page(&client, &stats, what) => next?,
                _ = cancel.wait_for(|c| *c) => return Err(cancelled_error()),
            };
            let Some(page) = next else { break };
            pages += 1;
            rows += page.len() as u64;
            bar.set_message(format!("{rows} ({pages} pages)"));
            if tx.send((pages as i32, Utc::now(), page)).await.is_err() {
                break; // the writer failed; its error is reported below
            }
        }
        Ok(())
    }
    .await;
    drop(tx);
    let written = writer
        .await
        .map_err(|e| Error::Internal(format!("the {stream} writer failed: {e}")))?;
    walked?;
    let file = written?;
    bar.finish_with_message(format!("{rows} ({pages} pages)"));
    Ok((
        stream.to_string(),
        StreamManifest {
            rows: file.rows,
            files: vec![file],
            pages,
            calls: stats.snapshot(),
            ..StreamManifest::default()
        },
    ))
}

fn cancelled_error() -> Error {
    Error::Internal("stopped because another stream of the run failed".into())
}

/// Downloads one report and lands it, noting how its user names look.
async fn land_report(ctx: StreamCtx, report: Report, period: String) -> StreamResult {
    let StreamCtx {
        client,
        dir,
        run_id,
        mut cancel,
    } = ctx;
    let stats = CallStats::default();
    let csv_path = dir.join(format!("{}.csv.download", report.stream()));
    let downloaded = tokio::select! {
        d = reports::download_report(&client, report, &period, &csv_path, &stats) => d?,
        _ = cancel.wait_for(|c| *c) => return Err(cancelled_error()),
    };
    let at = Utc::now();
    let lineage = Lineage {
        run_id,
        stream: report.stream().to_string(),
    };
    let (file, names, columns, invalid, ragged) =
        tokio::task::spawn_blocking(move || -> Result<_> {
            let ctx = |e| {
                Error::io(
                    format!("reading the {report} report {}", csv_path.display()),
                    e,
                )
            };
            let mut reader = ReportReader::open(&csv_path).map_err(ctx)?;
            let header: Vec<String> = if reader.header().is_empty() {
                report
                    .documented_columns()
                    .iter()
                    .map(|c| c.to_string())
                    .collect()
            } else {
                reader.header().to_vec()
            };
            let user_col = header.iter().position(|h| h == report.user_column());
            let mut lander = CsvLander::create(&dir, report.stream(), &header, lineage)?;
            let mut names = Tally::default();
            loop {
                let batch = reader.next_batch(CSV_BATCH_ROWS).map_err(ctx)?;
                if batch.is_empty() {
                    break;
                }
                for row in &batch {
                    names.add(user_col.and_then(|i| row.cells[i].as_deref()));
                }
                lander.write_rows(at, &batch)?;
            }
            let file = lander.finish()?;
            std::fs::remove_file(&csv_path).map_err(ctx)?;
            Ok((
                file,
                names,
                reader.header().to_vec(),
                reader.invalid_utf8_cells,
                reader.ragged_rows,
            ))
        })
        .await
        .map_err(|e| Error::Internal(format!("landing the {report} report failed: {e}")))??;
    if invalid > 0 || ragged > 0 {
        tracing::warn!(report = %report, invalid_utf8_cells = invalid, ragged_rows = ragged, "report CSV needed repairs");
    }
    Ok((
        report.stream().to_string(),
        StreamManifest {
            rows: file.rows,
            files: vec![file],
            pages: 1,
            calls: stats.snapshot(),
            downloaded_bytes: Some(downloaded),
            names: Some(names),
            columns,
        },
    ))
}

/// `GET /admin/reportSettings`: a 403 (the usual answer, as the app lacks
/// ReportSettings.Read.All) or any other failure just means "unknown".
async fn report_settings(client: &GraphClient) -> Setting {
    let Ok(url) = client.v1("/admin/reportSettings") else {
        return Setting::Unknown;
    };
    let stats = CallStats::default();
    match client
        .get_graph(&url, &stats, "report settings", |r| {
            Ok::<_, (String, _)>(concealment::parse_report_settings(&r.body))
        })
        .await
    {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!(error = %e, "report settings not readable; concealment is detected from the reports");
            Setting::Unknown
        }
    }
}

fn build_manifest(
    cfg: &Config,
    client: &GraphClient,
    run_id: &str,
    started_at: DateTime<Utc>,
    streams: BTreeMap<String, StreamManifest>,
    setting: Setting,
) -> RunManifest {
    let concealed_reports: Vec<String> = streams
        .iter()
        .filter(|(_, s)| s.names.is_some_and(|n| n.is_concealed()))
        .map(|(name, _)| name.clone())
        .collect();
    let concealment = Concealment {
        setting,
        concealed_reports,
    };
    let mut warnings = Vec::new();
    if concealment.concealed() {
        let which = if concealment.concealed_reports.is_empty() {
            "the report settings say so".to_string()
        } else {
            format!("seen in {}", concealment.concealed_reports.join(", "))
        };
        warnings.push(Warning {
            code: "concealed_names".into(),
            message: format!(
                "usage reports conceal user names ({which}): report rows cannot be joined to users, so activity-based attributes stay empty and the date filter uses directory dates only"
            ),
            fix: concealment::FIX.into(),
        });
    }
    for (name, s) in &streams {
        let Some(report) = Report::from_stream(name) else {
            continue;
        };
        let missing: Vec<&str> = report
            .documented_columns()
            .iter()
            .filter(|c| !s.columns.is_empty() && !s.columns.iter().any(|h| h == *c))
            .copied()
            .collect();
        if !missing.is_empty() {
            warnings.push(Warning {
                code: "report_columns_missing".into(),
                message: format!("the {name} report lacks documented columns: {}", missing.join(", ")),
                fix: "none needed: the missing values are treated as empty; report it if attributes you rely on come from them".into(),
            });
        }
        if s.columns.is_empty() && s.rows == 0 {
            warnings.push(Warning {
                code: "report_empty".into(),
                message: format!("the {name} report was empty (no header)"),
                fix: "usage data can lag 24–48 hours; if it stays empty, check the tenant's reports in the admin center".into(),
            });
        }
    }
    let counts: Vec<CallCounts> = streams.values().map(|s| s.calls).collect();
    let login = client.login_stats.snapshot();
    let sum = |f: fn(&CallCounts) -> u64| counts.iter().map(f).sum::<u64>() + f(&login);
    let waited_ms = sum(|c| c.waited_ms);
    if waited_ms > 0 {
        warnings.push(Warning {
            code: "throttled".into(),
            message: format!(
                "Graph throttled or failed transiently: the run waited {:.1} s in total ({} retries)",
                waited_ms as f64 / 1000.0,
                sum(|c| c.retries)
            ),
            fix: "none needed; schedule runs at night or at weekends to meet less throttling".into(),
        });
    }
    RunManifest {
        format: 1,
        run_id: run_id.to_string(),
        connector: cfg.connector.name.clone(),
        server: cfg.connector.server.clone(),
        tenant_id: cfg.tenant.tenant_id.clone(),
        started_at,
        finished_at: Utc::now(),
        run_date: started_at.date_naive(),
        report_period: cfg.pipeline.report_period.clone(),
        date_filter_days: cfg.date_filter_days,
        requests: sum(|c| c.requests),
        retries: sum(|c| c.retries),
        throttled: sum(|c| c.throttled),
        waited_ms,
        login,
        streams,
        concealment,
        warnings,
    }
}

/// Removes an uncommitted run directory. A file a cancelled download was still creating can
/// make one attempt fail with "directory not empty", so it is retried briefly.
pub fn remove_partial(dir: &Path) {
    for _ in 0..20 {
        match std::fs::remove_dir_all(dir) {
            Ok(()) => return,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(50)),
        }
    }
    tracing::warn!(dir = %dir.display(), "could not remove the uncommitted run directory; it is never used and can be deleted");
}

/// Creates a directory (and parents) readable by its owner only.
pub fn create_private_dir(path: &Path) -> Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(path)
        .map_err(|e| Error::io(format!("creating {}", path.display()), e))
}

/// Makes a rename inside `dir` durable (directories can be opened and synced on Unix).
#[cfg(unix)]
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> std::io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn run_ids_sort_by_time() {
        let a = new_run_id(Utc.with_ymd_and_hms(2026, 11, 28, 2, 0, 0).unwrap());
        let b = new_run_id(Utc.with_ymd_and_hms(2026, 11, 28, 2, 0, 1).unwrap());
        assert!(a.starts_with("20261128T020000Z-") && a.len() == 21, "{a}");
        assert!(a < b);
    }
}
