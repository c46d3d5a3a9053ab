//! Paged JSON streams (users, organization, subscribed SKUs, the users delta walk): pages
//! land in checkpointed Parquet segments while the next page is fetched.

use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use indicatif::ProgressBar;
use reqwest::Url;

use super::resume::{self, Checkpoint, add_counts, discard_segments, landed_manifest};
use super::users_delta::{self, Start};
use crate::error::{Error, Result};
use crate::graph::paging::{Page, Pager};
use crate::graph::rate_limit::Budget;
use crate::graph::{CallStats, Headers, redact_query};
use crate::land::{JsonLander, Lineage};
use crate::manifest::{DeltaSync, StreamManifest, SyncKind};
use crate::streams::Stream;

use super::{StreamCtx, StreamResult, cancelled_error};

/// One page on its way to the writer: its number, when it arrived, the records, and the link
/// to the page after it (what a checkpoint resumes from).
type PageMsg = (i32, DateTime<Utc>, Page, Option<Url>);

/// Lands a paged JSON collection. Pages are fetched while the previous one is written:
/// a bounded channel feeds a blocking writer, so memory stays at a few pages. Every
/// `segment_pages` pages the current Parquet file is closed and a checkpoint is saved, so
/// an interrupted run resumes after it.
pub(super) async fn land_collection(
    ctx: StreamCtx,
    kind: Stream,
    first: Url,
    from: Option<Checkpoint>,
    bar: ProgressBar,
) -> StreamResult {
    let stream = kind.name();
    let stats = Arc::new(CallStats::default());
    let resumed_at = from.as_ref().and_then(|c| resume_link(&ctx, stream, c));
    let resuming = resumed_at.is_some();
    let (start, done) = match resumed_at {
        Some(next) => (next, from.clone().unwrap_or_default()),
        None => (first.clone(), Checkpoint::default()),
    };
    let landed = match walk_and_land(&ctx, kind, start, done, &stats, &bar, false).await {
        Err(Error::Graph(e)) if resuming && e.status().is_some_and(|s| (400..500).contains(&s)) => {
            // Graph no longer honours the stored link (skip tokens do expire).
            tracing::warn!(stream, error = %e, "the checkpoint's next link was refused; fetching the stream from its start");
            let fresh = Checkpoint::default();
            walk_and_land(&ctx, kind, first, fresh, &stats, &bar, false).await
        }
        other => other,
    }?;
    bar.finish_with_message(format!("{} ({} pages)", landed.rows, landed.pages));
    let manifest = StreamManifest {
        managers: kind == Stream::Users && ctx.cfg.pipeline.manager,
        ..landed_manifest(landed, stats.snapshot(), from.as_ref())
    };
    resume::mark_done(&ctx.dir, stream, &manifest)?;
    Ok((stream.to_string(), manifest))
}

/// Incremental users: `/users/delta`, from the stored delta link (the changes since the run
/// that stored it) or in full (`full`). A delta link Graph refuses for good (410,
/// `syncStateNotFound`, `resyncRequired`) is replaced by a full sync in the same run; the
/// manifest then carries the reason (`delta_resync` warning); with `parallel` slots that full
/// sync is the parallel `/users` walk after a `latest` delta link ([`super::users_walk`]). A
/// killed run resumes the walk it was doing, from its checkpoint.
pub(super) async fn land_users_delta(
    ctx: StreamCtx,
    full: Url,
    plan: Start,
    from: Option<Checkpoint>,
    bar: ProgressBar,
    parallel: usize,
) -> StreamResult {
    const STREAM: &str = Stream::Users.name();
    let stats = Arc::new(CallStats::default());
    // The walk an interrupted run of this id was doing, if its start link is still usable.
    let interrupted = from.as_ref().and_then(|c| {
        let start = users_delta::check_delta_link(c.start.as_deref()?, ctx.client.graph_url());
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
                    sync: Some(SyncKind::Delta),
                    delta_from: Some(from_run),
                    ..DeltaSync::default()
                };
                (link, sync, None)
            }
            Start::Full { reason } => {
                tracing::info!(%reason, "users: full delta sync");
                let sync = DeltaSync {
                    sync: Some(SyncKind::Full),
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
        async move { walk_and_land(ctx, Stream::Users, start, c, stats, bar, true).await }
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
        Err(Error::Graph(e)) if sync.sync == Some(SyncKind::Delta) => {
            users_delta::is_resync(e).then(|| users_delta::resync_reason(e))
        }
        _ => None,
    };
    if let Some(reason) = refused {
        tracing::warn!(%reason, "Graph refused the stored users delta link; fetching every user again (full sync)");
        discard_segments(&ctx.dir, STREAM)?;
        if parallel > 1 {
            let ctx_dir = ctx.dir.clone();
            let sync = DeltaSync {
                sync: Some(SyncKind::Full),
                resync: Some(reason),
                ..DeltaSync::default()
            };
            let (name, m) =
                super::users_walk::land_users(ctx, parallel, Some(sync), None, bar).await?;
            // The refused walk's requests count too.
            let m = StreamManifest {
                calls: add_counts(m.calls, stats.snapshot()),
                ..m
            };
            resume::mark_done(&ctx_dir, STREAM, &m)?;
            return Ok((name, m));
        }
        sync = DeltaSync {
            sync: Some(SyncKind::Full),
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
        sync.sync.unwrap_or(SyncKind::Full)
    ));
    let delta_link = landed.delta.delta_link.clone();
    let manifest = StreamManifest {
        delta: DeltaSync { delta_link, ..sync },
        managers: ctx.cfg.pipeline.manager,
        ..landed_manifest(landed, stats.snapshot(), from.as_ref())
    };
    resume::mark_done(&ctx.dir, STREAM, &manifest)?;
    Ok((STREAM.to_string(), manifest))
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

/// Walks a collection from `start`, continuing the segments in `from`. A `delta` walk asks
/// for 999 users per page with `Prefer` and returns the final `@odata.deltaLink` in
/// `delta.delta_link` of the checkpoint.
async fn walk_and_land(
    ctx: &StreamCtx,
    kind: Stream,
    start: Url,
    from: Checkpoint,
    stats: &Arc<CallStats>,
    bar: &ProgressBar,
    delta: bool,
) -> Result<Checkpoint> {
    let (stream, what) = (kind.name(), kind.what());
    let mut cancel = ctx.cancel.clone();
    let (tx, rx) = tokio::sync::mpsc::channel::<PageMsg>(2);
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

    let headers = Headers {
        prefer: delta.then_some(users_delta::DELTA_PREFER),
        budget: if kind == Stream::SignIns {
            Budget::IdentityReports
        } else {
            Budget::ResourceUnits
        },
        ..Headers::default()
    };
    let mut pager = Pager::new(start, ctx.client.graph_url()).with_headers(headers);
    let mut pages = from.pages;
    let mut rows = from.rows;
    let mut delta_link = None;
    let walked: Result<()> = async {
        loop {
            let t_page = std::time::Instant::now();
            let next = tokio::select! {
                next = pager.next_page(&ctx.client, stats, what) => next?,
                _ = cancel.wait_for(|c| *c) => return Err(cancelled_error()),
            };
            let Some(page) = next else { break };
            if delta && pager.next_link().is_none() {
                delta_link = match &page.delta_link {
                    Some(link) => Some(
                        users_delta::check_delta_link(link, ctx.client.graph_url())?.to_string(),
                    ),
                    None => None,
                };
            }
            pages += 1;
            rows += page.len() as u64;
            tracing::debug!(
                stream,
                page = pages,
                ms = t_page.elapsed().as_millis() as u64,
                "page fetched"
            );
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
