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
use crate::graph::{CallCounts, CallStats, GraphClient, GraphError, redact_query, reports};
use crate::incremental::{self, Start};
use crate::land::{CsvLander, JsonLander, Lineage};
use crate::manifest::{
    Concealment, DeltaSync, RunManifest, SYNC_DELTA, SYNC_FULL, StreamManifest, Warning,
};
use crate::output::Progress;
use crate::resume::{self, Checkpoint, Resumed};
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

/// Runs the extract stage for `cfg` and commits the run. An extract interrupted earlier is
/// resumed (see [`crate::resume`]): same run id, finished streams kept.
pub async fn extract(cfg: &Config, progress: &Progress) -> Result<Extracted> {
    let secret = cfg.secret()?;
    let client = Arc::new(GraphClient::new(cfg, secret)?);

    // The run is a row in the staging database from here on, so a refused sign-in is on
    // record too (nothing else is written before sign-in succeeds).
    let staging = crate::staging::Staging::open(&cfg.pipeline.data_dir)?;
    let resumed = resume::prepare(cfg, &staging, Utc::now())?;
    let (run_id, started_at) = match &resumed {
        Some(r) => {
            tracing::info!(run_id = %r.run_id, streams_kept = r.done.len(), users_pages_kept = r.pages_kept(), "resuming an interrupted extract");
            (r.run_id.clone(), r.started_at)
        }
        None => {
            let now = Utc::now();
            let id = new_run_id(now);
            staging.begin_extract(cfg, &id, now)?;
            (id, now)
        }
    };
    // Incremental users: where the stored delta link lets this run continue.
    let users_plan = if cfg.pipeline.incremental {
        let stored = incremental::stored_link(&staging, &cfg.connector.name)?;
        Some(incremental::plan(cfg, stored.as_ref()))
    } else {
        None
    };
    drop(staging);
    let outcome = sign_in_land_and_commit(
        cfg, &client, &run_id, started_at, resumed, users_plan, progress,
    )
    .await;
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
    resumed: Option<Resumed>,
    users_plan: Option<Start>,
    progress: &Progress,
) -> Result<Extracted> {
    let login = progress.line("sign-in");
    login.set_message(format!("tenant {}", cfg.tenant.tenant_id));
    client.token().await?;
    client.check_roles().await?;
    login.finish_with_message("ok");
    crate::failpoint::hit("extract.signed_in");
    land_and_commit(
        cfg, client, run_id, started_at, resumed, users_plan, progress,
    )
    .await
}

/// Lands every stream into a partial directory and commits it.
async fn land_and_commit(
    cfg: &Config,
    client: &Arc<GraphClient>,
    run_id: &str,
    started_at: DateTime<Utc>,
    resumed: Option<Resumed>,
    users_plan: Option<Start>,
    progress: &Progress,
) -> Result<Extracted> {
    let run_id = run_id.to_string();
    let raw = cfg.raw_dir();
    create_private_dir(&raw)?;
    let partial = raw.join(format!("{}{run_id}", resume::PARTIAL_PREFIX));
    let resumed = match resumed {
        Some(r) => r,
        None => {
            create_private_dir(&partial)?;
            resume::start(&partial, cfg, &run_id, started_at)?;
            Resumed::default()
        }
    };
    tracing::info!(run_id = %run_id, dir = %partial.display(), "extract started");

    let manifest = match resumed.manifest.clone() {
        // Killed between writing the manifest and renaming the directory: just commit.
        Some(m) => m,
        None => {
            let landed = land_streams(
                client, cfg, &run_id, &partial, &resumed, users_plan, progress,
            )
            .await;
            let (streams, setting) = match landed {
                Ok(v) => v,
                Err(e) => {
                    remove_partial(&partial);
                    return Err(e);
                }
            };
            let mut m = build_manifest(cfg, client, &run_id, started_at, streams, setting);
            if !resumed.run_id.is_empty() {
                m.warnings.push(resumed_warning(&resumed));
            }
            m
        }
    };
    let dir = raw.join(&run_id);
    let commit = manifest
        .write(&partial)
        .map_err(|e| Error::io(format!("writing the manifest in {}", partial.display()), e))
        .and_then(|_| {
            crate::failpoint::hit("extract.manifest_written");
            resume::remove_markers(&partial)
        })
        .and_then(|_| {
            std::fs::rename(&partial, &dir)
                .and_then(|_| sync_dir(&raw))
                .map_err(|e| Error::io(format!("committing run {run_id} in {}", raw.display()), e))
        });
    if let Err(e) = commit {
        remove_partial(&partial);
        return Err(e);
    }
    crate::failpoint::hit("extract.committed");
    tracing::info!(run_id = %run_id, users = manifest.users(), "extract committed");
    Ok(Extracted {
        run_id,
        dir,
        manifest,
    })
}

/// Tells the admin the run continued an interrupted one.
fn resumed_warning(r: &Resumed) -> Warning {
    Warning {
        code: "resumed".into(),
        message: format!(
            "this run continued an extract interrupted earlier (started {} UTC): {} finished streams and {} users pages were kept, not fetched again",
            r.started_at.format("%Y-%m-%d %H:%M:%S"),
            r.done.len(),
            r.pages_kept()
        ),
        fix: "none needed; if the process was killed, see why (out of memory, a service stop or a reboot)".into(),
    }
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
    /// Users pages per Parquet segment and checkpoint.
    segment_pages: u64,
}

async fn land_streams(
    client: &Arc<GraphClient>,
    cfg: &Config,
    run_id: &str,
    dir: &Path,
    resumed: &Resumed,
    users_plan: Option<Start>,
    progress: &Progress,
) -> Result<(BTreeMap<String, StreamManifest>, Setting)> {
    let mut tasks: JoinSet<StreamResult> = JoinSet::new();
    // One failing stream stops the others at their next await point. Tasks are never
    // aborted: their blocking Parquet writers must finish before the directory is removed.
    let (cancel, cancelled) = tokio::sync::watch::channel(false);
    // Streams an interrupted run of this id finished are taken as they are.
    let mut streams = resumed.done.clone();

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
        segment_pages: cfg.pipeline.checkpoint_pages,
    };
    for (stream, first, what, bar) in [
        ("users", users_url, "users", users_bar),
        (
            "organization",
            client.v1("/organization")?,
            "the organization",
            ProgressBar::hidden(),
        ),
        (
            "subscribed_skus",
            client.v1("/subscribedSkus")?,
            "subscribed licences",
            ProgressBar::hidden(),
        ),
    ] {
        if let Some(done) = streams.get(stream) {
            bar.finish_with_message(format!("{} (kept from the interrupted run)", done.rows));
            continue;
        }
        let from = resumed.checkpoints.get(stream).cloned();
        match (&users_plan, stream) {
            (Some(plan), "users") => {
                let full = client.v1(&incremental::full_sync_path())?;
                tasks.spawn(land_users_delta(ctx.clone(), full, plan.clone(), from, bar));
            }
            _ => {
                tasks.spawn(land_collection(ctx.clone(), stream, first, what, from, bar));
            }
        }
    }
    let reports_bar = progress.line("reports");
    let mut reports_done = Report::ALL
        .iter()
        .filter(|r| streams.contains_key(r.stream()))
        .count();
    reports_bar.set_message(format!("{reports_done}/{}", Report::ALL.len()));
    for report in Report::ALL {
        if streams.contains_key(report.stream()) {
            continue;
        }
        tasks.spawn(land_report(
            ctx.clone(),
            report,
            cfg.pipeline.report_period.clone(),
        ));
    }

    let setting = report_settings(client).await;
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

/// One page on its way to the writer: its number, when it arrived, the records, and the link
/// to the page after it (what a checkpoint resumes from).
type PageMsg = (i32, DateTime<Utc>, Page, Option<Url>);

/// Lands a paged JSON collection. Pages are fetched while the previous one is written:
/// a bounded channel feeds a blocking writer, so memory stays at a few pages. Every
/// `segment_pages` pages the current Parquet file is closed and a checkpoint is saved, so
/// an interrupted run resumes after it.
async fn land_collection(
    ctx: StreamCtx,
    stream: &'static str,
    first: Url,
    what: &'static str,
    from: Option<Checkpoint>,
    bar: ProgressBar,
) -> StreamResult {
    let stats = Arc::new(CallStats::default());
    let resumed_at = from.as_ref().and_then(|c| resume_link(&ctx, stream, c));
    let resuming = resumed_at.is_some();
    let (start, done) = match resumed_at {
        Some(next) => (next, from.clone().unwrap_or_default()),
        None => (first.clone(), Checkpoint::default()),
    };
    let landed = match walk_and_land(&ctx, stream, start, what, done, &stats, &bar, false).await {
        Err(Error::Graph(e)) if resuming && e.status().is_some_and(|s| (400..500).contains(&s)) => {
            // Graph no longer honours the stored link (skip tokens do expire).
            tracing::warn!(stream, error = %e, "the checkpoint's next link was refused; fetching the stream from its start");
            let fresh = Checkpoint::default();
            walk_and_land(&ctx, stream, first, what, fresh, &stats, &bar, false).await
        }
        other => other,
    }?;
    bar.finish_with_message(format!("{} ({} pages)", landed.rows, landed.pages));
    let mut calls = stats.snapshot();
    if let Some(c) = &from {
        calls = add_counts(calls, c.calls);
    }
    let manifest = StreamManifest {
        rows: landed.rows,
        files: landed.files,
        pages: landed.pages,
        calls,
        ..StreamManifest::default()
    };
    resume::mark_done(&ctx.dir, stream, &manifest)?;
    Ok((stream.to_string(), manifest))
}

/// Incremental users: `/users/delta`, from the stored delta link (the changes since the run
/// that stored it) or in full (`full`). A delta link Graph refuses for good (410,
/// `syncStateNotFound`, `resyncRequired`) is replaced by a full sync in the same run; the
/// manifest then carries the reason (`delta_resync` warning). A killed run resumes the walk
/// it was doing, from its checkpoint.
async fn land_users_delta(
    ctx: StreamCtx,
    full: Url,
    plan: Start,
    from: Option<Checkpoint>,
    bar: ProgressBar,
) -> StreamResult {
    const STREAM: &str = "users";
    let stats = Arc::new(CallStats::default());
    // The walk an interrupted run of this id was doing, if its start link is still usable.
    let interrupted = from.as_ref().and_then(|c| {
        let start = incremental::check_delta_link(c.start.as_deref()?, ctx.client.graph_url());
        (c.delta.sync.is_some()).then_some((c.clone(), start.ok()?))
    });
    let (start, mut sync, resume_at) = match interrupted {
        Some((c, start)) => {
            let at = resume_link(&ctx, STREAM, &c);
            (start, c.delta.clone(), at.map(|next| (next, c)))
        }
        None => match plan {
            Start::Delta { link, from_run } => {
                tracing::info!(from_run = %from_run, link = %redact_query(&link), "users: fetching the changes since the last transformed run");
                let sync = DeltaSync {
                    sync: Some(SYNC_DELTA.into()),
                    delta_from: Some(from_run),
                    ..DeltaSync::default()
                };
                (link, sync, None)
            }
            Start::Full { reason } => {
                tracing::info!(%reason, "users: full delta sync");
                let sync = DeltaSync {
                    sync: Some(SYNC_FULL.into()),
                    ..DeltaSync::default()
                };
                (full.clone(), sync, None)
            }
        },
    };
    if from.is_some() && resume_at.is_none() {
        // Segments of a walk that cannot be continued: start over cleanly.
        discard_segments(&ctx.dir, STREAM)?;
    }
    let fresh = |start: &Url, sync: &DeltaSync| Checkpoint {
        start: Some(start.to_string()),
        delta: sync.clone(),
        ..Checkpoint::default()
    };
    let walk = |start: Url, c: Checkpoint| {
        let (ctx, stats, bar) = (&ctx, &stats, &bar);
        async move { walk_and_land(ctx, STREAM, start, "users", c, stats, bar, true).await }
    };
    let mut walked = match resume_at {
        Some((next, c)) => match walk(next, c).await {
            Err(Error::Graph(e)) if e.status().is_some_and(|s| (400..500).contains(&s)) => {
                tracing::warn!(stream = STREAM, error = %e, "the checkpoint's next link was refused; walking the users again from the start of this sync");
                discard_segments(&ctx.dir, STREAM)?;
                walk(start.clone(), fresh(&start, &sync)).await
            }
            other => other,
        },
        None => walk(start.clone(), fresh(&start, &sync)).await,
    };
    let refused = match &walked {
        Err(Error::Graph(e)) if sync.sync.as_deref() == Some(SYNC_DELTA) => {
            incremental::is_resync(e).then(|| incremental::resync_reason(e))
        }
        _ => None,
    };
    if let Some(reason) = refused {
        tracing::warn!(%reason, "Graph refused the stored users delta link; fetching every user again (full sync)");
        discard_segments(&ctx.dir, STREAM)?;
        sync = DeltaSync {
            sync: Some(SYNC_FULL.into()),
            resync: Some(reason),
            ..DeltaSync::default()
        };
        walked = walk(full.clone(), fresh(&full, &sync)).await;
    }
    let landed = walked?;
    bar.finish_with_message(format!(
        "{} ({} pages, {} sync)",
        landed.rows,
        landed.pages,
        sync.sync.as_deref().unwrap_or(SYNC_FULL)
    ));
    let mut calls = stats.snapshot();
    if let Some(c) = &from {
        calls = add_counts(calls, c.calls);
    }
    let manifest = StreamManifest {
        rows: landed.rows,
        files: landed.files,
        pages: landed.pages,
        calls,
        delta: DeltaSync {
            delta_link: landed.delta.delta_link,
            ..sync
        },
        ..StreamManifest::default()
    };
    resume::mark_done(&ctx.dir, STREAM, &manifest)?;
    Ok((STREAM.to_string(), manifest))
}

/// Removes a stream's checkpoint and segments from the partial directory before its walk
/// starts over: nothing refers to them any more.
fn discard_segments(dir: &Path, stream: &str) -> Result<()> {
    let mut doomed = vec![resume::checkpoint_path(dir, stream)];
    let entries =
        std::fs::read_dir(dir).map_err(|e| Error::io(format!("reading {}", dir.display()), e))?;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(&format!("{stream}-")) && name.contains(".parquet") {
            doomed.push(entry.path());
        }
    }
    for path in doomed {
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(format!("removing {}", path.display()), e)),
        }
    }
    Ok(())
}

/// The checkpoint's next link, if it is still one we may follow (same Graph origin).
fn resume_link(ctx: &StreamCtx, stream: &str, c: &Checkpoint) -> Option<Url> {
    let url = Url::parse(&c.next).ok()?;
    if url.origin() == ctx.client.graph_url().origin() {
        Some(url)
    } else {
        tracing::warn!(
            stream,
            "the checkpoint's next link is not on the Graph host; fetching the stream from its start"
        );
        None
    }
}

fn add_counts(a: CallCounts, b: CallCounts) -> CallCounts {
    CallCounts {
        requests: a.requests + b.requests,
        retries: a.retries + b.retries,
        throttled: a.throttled + b.throttled,
        waited_ms: a.waited_ms + b.waited_ms,
    }
}

/// Walks a collection from `start`, continuing the segments in `from`. A `delta` walk asks
/// for 999 users per page with `Prefer` and returns the final `@odata.deltaLink` in
/// `delta.delta_link` of the checkpoint.
#[allow(clippy::too_many_arguments)]
async fn walk_and_land(
    ctx: &StreamCtx,
    stream: &'static str,
    start: Url,
    what: &'static str,
    from: Checkpoint,
    stats: &Arc<CallStats>,
    bar: &ProgressBar,
    delta: bool,
) -> Result<Checkpoint> {
    let mut cancel = ctx.cancel.clone();
    let (tx, rx) = tokio::sync::mpsc::channel::<PageMsg>(4);
    let writer = {
        let (dir, stats) = (ctx.dir.clone(), stats.clone());
        let lineage = Lineage {
            run_id: ctx.run_id.clone(),
            stream: stream.to_string(),
        };
        let (from, segment_pages) = (from.clone(), ctx.segment_pages);
        tokio::task::spawn_blocking(move || {
            write_segments(&dir, stream, lineage, from, segment_pages, &stats, rx)
        })
    };

    let prefer = delta.then_some(incremental::DELTA_PREFER);
    let mut pager = Pager::new(start, ctx.client.graph_url()).with_prefer(prefer);
    let mut pages = from.pages;
    let mut rows = from.rows;
    let mut delta_link = None;
    let walked: Result<()> = async {
        loop {
            let next = tokio::select! {
                next = pager.next_page(&ctx.client, stats, what) => next?,
                _ = cancel.wait_for(|c| *c) => return Err(cancelled_error()),
            };
            let Some(page) = next else { break };
            if delta && pager.next_link().is_none() {
                delta_link = match &page.delta_link {
                    Some(link) => Some(
                        incremental::check_delta_link(link, ctx.client.graph_url())?.to_string(),
                    ),
                    None => None,
                };
            }
            pages += 1;
            rows += page.len() as u64;
            bar.set_message(format!("{rows} ({pages} pages)"));
            let msg = (pages as i32, Utc::now(), page, pager.next_link().cloned());
            if tx.send(msg).await.is_err() {
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
    let mut done = written?;
    done.delta.delta_link = delta_link;
    Ok(done)
}

/// The blocking side of [`walk_and_land`]: Parquet segments `<stream>-00001.parquet`, …
fn write_segments(
    dir: &Path,
    stream: &str,
    lineage: Lineage,
    from: Checkpoint,
    segment_pages: u64,
    stats: &CallStats,
    mut rx: tokio::sync::mpsc::Receiver<PageMsg>,
) -> Result<Checkpoint> {
    let mut done = from;
    let mut open: Option<(JsonLander, u64)> = None;
    while let Some((page_no, at, page, next)) = rx.blocking_recv() {
        let (lander, in_segment) = match &mut open {
            Some(o) => o,
            None => {
                let name = format!("{stream}-{:05}", done.files.len() + 1);
                let l = JsonLander::create_at(dir, &name, lineage.clone(), done.rows)?;
                open.insert((l, 0))
            }
        };
        lander.write_page(
            page_no,
            at,
            page.records.iter().map(|r| &page.body[r.clone()]),
        )?;
        *in_segment += 1;
        crate::failpoint::hit("extract.page");
        if let Some(next) = next
            && *in_segment >= segment_pages
        {
            let (lander, _) = open.take().expect("a segment is open");
            done.rows += lander.rows();
            done.files.push(lander.finish()?);
            done.pages = page_no as u64;
            done.next = next.to_string();
            done.calls = stats.snapshot();
            resume::save_checkpoint(dir, stream, &done)?;
        } else {
            done.pages = page_no as u64;
        }
    }
    let last = match open {
        Some((lander, _)) => Some(lander),
        // A stream with no rows still gets a file: the transform reads its schema.
        None if done.files.is_empty() => Some(JsonLander::create_at(
            dir,
            &format!("{stream}-00001"),
            lineage,
            0,
        )?),
        None => None,
    };
    if let Some(lander) = last {
        done.rows += lander.rows();
        done.files.push(lander.finish()?);
    }
    done.next.clear();
    Ok(done)
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
        ..
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
    let marker_dir = dir.clone();
    let (file, names, columns, invalid, ragged) =
        tokio::task::spawn_blocking(move || -> Result<_> {
            let ctx = |e| {
                Error::io(
                    format!("reading the {report} report {}", csv_path.display()),
                    e,
                )
            };
            let mut reader = ReportReader::open(&csv_path).map_err(ctx)?;
            // Not one documented column: an HTML page, a JSON error or a CSV a proxy converted
            // to ';', never a usage report. Refused rather than landed as garbage columns.
            let documented = report.documented_columns();
            if !reader.header().is_empty()
                && !reader
                    .header()
                    .iter()
                    .any(|h| documented.contains(&h.as_str()))
            {
                return Err(GraphError::NotAReport {
                    report: report.to_string(),
                    start: file_start(&csv_path),
                }
                .into());
            }
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
    let manifest = StreamManifest {
        rows: file.rows,
        files: vec![file],
        pages: 1,
        calls: stats.snapshot(),
        downloaded_bytes: Some(downloaded),
        names: Some(names),
        columns,
        invalid_utf8_cells: invalid,
        ragged_rows: ragged,
        delta: DeltaSync::default(),
    };
    resume::mark_done(&marker_dir, report.stream(), &manifest)?;
    Ok((report.stream().to_string(), manifest))
}

/// `1 row had` / `3 rows had`.
fn count(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// The first bytes of a file, on one line, for a message.
fn file_start(path: &Path) -> String {
    use std::io::Read;
    let mut head = Vec::with_capacity(200);
    let _ = std::fs::File::open(path).and_then(|f| f.take(200).read_to_end(&mut head));
    let head = head.strip_prefix("\u{feff}".as_bytes()).unwrap_or(&head);
    crate::graph::snippet(head)
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
        if name == "users" {
            warnings.extend(incremental::warnings(s));
        }
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
        if s.invalid_utf8_cells > 0 || s.ragged_rows > 0 {
            let mut what = Vec::new();
            if s.invalid_utf8_cells > 0 {
                what.push(format!(
                    "{} not UTF-8 (landed with U+FFFD in place of the bad bytes)",
                    count(s.invalid_utf8_cells, "cell was", "cells were")
                ));
            }
            if s.ragged_rows > 0 {
                what.push(format!(
                    "{} more or fewer cells than the header (missing cells are empty, surplus cells kept in _extra)",
                    count(s.ragged_rows, "row had", "rows had")
                ));
            }
            warnings.push(Warning {
                code: "report_repaired".into(),
                message: format!("the {name} report needed repairs: {}", what.join("; ")),
                fix: "none needed for the rest of the report; if names or values in it look wrong, report it with the run id".into(),
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
    // Streams wait side by side: the run's waiting is the union of their waits, not the sum.
    let waited_ms = client.waited().as_millis() as u64;
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
