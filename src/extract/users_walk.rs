//! The users walk in parallel (`[pipeline] users_concurrency` > 1): `userPrincipalName`
//! partitions ([`super::partitions`]) walked at once, each with its own next links, into one
//! writer.
//!
//! 1. **Probe**: the first page of `/users` with `$count=true` (`ConsistencyLevel:
//!    eventual`) says how many users there are and samples their UPNs. A tenant that fits
//!    on it is done in one request; otherwise the probe page is set aside (the ranges fetch
//!    its users again) and the sample's quantiles become the range bounds.
//! 2. **Ranges**, `users_concurrency` at a time, in bound order (the plan makes them about
//!    equal). Each range's first page carries its own `$count`; a range much larger than
//!    planned is split again at its own sample's quantiles, so the walk's wall time approaches
//!    pages × latency ÷ concurrency instead of waiting on the biggest letter.
//! 3. **Fallbacks**: Graph refusing `ge`/`le` (400 on a range's first request) restarts the
//!    walk over `startswith` partitions of every allowed first character; refusing those too,
//!    one serial walk. Each step is a warning in the manifest.
//!
//! The writer numbers pages in arrival order (staging keeps the latest page's copy of a
//! user), drops a record another range already landed (the same `id`: bounds are shared),
//! closes a Parquet segment every `checkpoint_pages` pages and saves a checkpoint with every
//! range's next link as of the closed segments: a killed run continues each range where its
//! committed pages end. A 429 pauses every range (one throttle in `GraphClient`).

use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use indicatif::ProgressBar;
use reqwest::Url;
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::partitions::{Part, PartState, WalkState, starts_with_parts};
use super::resume::{self, Checkpoint, discard_segments, landed_manifest};
use super::users_delta;
use super::{StreamCtx, StreamResult, cancelled_error};
use crate::error::{Error, Result};
use crate::graph::paging::{Page, Pager};
use crate::graph::{CallStats, GraphError, Headers};
use crate::land::{JsonLander, Lineage, RECORD_COLUMN};
use crate::manifest::{DeltaSync, PartitionedWalk, Strategy, StreamManifest, Warning};
use crate::streams::{Stream, USERS_PAGE_SIZE, users_page_size, users_path};

const STREAM: &str = Stream::Users.name();

/// Range sizes are estimated from a 999-user sample: plan as if each were this much larger.
const SAMPLE_MARGIN: f64 = 1.15;

/// A range whose `$count` exceeds its planned size by this factor is split again.
const RESPLIT_FACTOR: f64 = 1.5;

/// Splits of splits: bounds grow one character per level at most.
const MAX_DEPTH: u8 = 3;

/// What the walk tells the writer.
enum ToWriter {
    /// New partitions (ids follow the existing ones), and the one they replace.
    Plan {
        added: Vec<PartState>,
        replaces: Option<usize>,
    },
    Page {
        part: usize,
        at: DateTime<Utc>,
        page: Box<Page>,
        next: Option<Url>,
    },
}

/// How a partition's walk ended.
enum PartEnd {
    Done,
    /// Too big for one slot: these finer ranges replace it (none of its pages landed).
    Split(Vec<Part>),
}

/// Graph refused a partition's filter: the strategy must change.
struct Refused(String);

/// Lands every user as the users stream, `concurrency` partitions at once. An incremental
/// connector's full sync (`sync`) first takes a delta link as of now (`$deltatoken=latest`):
/// the next run continues from it, and changes made during the walk arrive then (applied
/// by id, last occurrence winning), so no 200-a-page `/users/delta` round is needed.
pub(super) async fn land_users(
    ctx: StreamCtx,
    concurrency: usize,
    sync: Option<DeltaSync>,
    from: Option<Checkpoint>,
    bar: ProgressBar,
) -> StreamResult {
    let stats = Arc::new(CallStats::default());
    let resumed_walk = from.as_ref().filter(|c| c.walk.is_some());
    let delta = match sync {
        None => DeltaSync::default(),
        Some(mut s) => {
            let kept = resumed_walk.and_then(|c| c.delta.delta_link.clone());
            s.delta_link = Some(match kept {
                Some(link) => link,
                None => latest_link(&ctx, &stats).await?,
            });
            s
        }
    };
    let started = std::time::Instant::now();
    let (landed, summary, repeat_free) =
        land_users_walk(&ctx, concurrency, from.clone(), delta.clone(), &stats, &bar).await?;
    tracing::info!(
        users = landed.rows,
        pages = landed.pages,
        ranges = summary.ranges,
        seconds = started.elapsed().as_secs_f64(),
        "users walked"
    );
    bar.finish_with_message(format!(
        "{} ({} pages, {} ranges, {})",
        landed.rows,
        landed.pages,
        summary.ranges,
        summary.strategy.words()
    ));
    let manifest = StreamManifest {
        delta,
        partitions: Some(summary),
        duplicates_counted: repeat_free,
        managers: ctx.cfg.pipeline.manager,
        ..landed_manifest(landed, stats.snapshot(), from.as_ref())
    };
    resume::mark_done(&ctx.dir, STREAM, &manifest)?;
    Ok((STREAM.to_string(), manifest))
}

/// A delta link as of now: `/users/delta?$select=…&$deltatoken=latest` answers no users,
/// only the link.
async fn latest_link(ctx: &StreamCtx, stats: &CallStats) -> Result<String> {
    let url = ctx.client.v1(&format!(
        "{}&$deltatoken=latest",
        users_delta::full_sync_path(ctx.cfg.pipeline.manager)
    ))?;
    let page = ctx
        .client
        .get_graph(&url, stats, Stream::Users.what(), |r| {
            Page::parse(r.body, r.ids)
        })
        .await?;
    let link = page.delta_link.ok_or_else(|| {
        Error::Graph(GraphError::BadBody {
            url: crate::graph::redact_query(&url),
            problem: "the answer to $deltatoken=latest has no @odata.deltaLink".into(),
            fix: "run again; if it repeats, set [pipeline] incremental = false and report it with the request id".into(),
            ids: page.ids.clone(),
        })
    })?;
    Ok(users_delta::check_delta_link(&link, ctx.client.graph_url())?.to_string())
}

/// The warnings a partitioned walk earns in the run manifest.
pub fn warnings(s: &StreamManifest) -> Vec<Warning> {
    let Some(w) = &s.partitions else {
        return Vec::new();
    };
    let mut out = Vec::new();
    if !w.fallbacks.is_empty() {
        out.push(Warning {
            code: "users_partition_fallback".into(),
            message: format!(
                "Graph refused the users partition filter ({}), so the users were walked as {} instead: slower, but every user was fetched",
                w.fallbacks.join("; "),
                w.strategy.words()
            ),
            fix: "none needed; if a proxy rewrites Graph queries, let $filter through unchanged. Set [pipeline] users_concurrency = 1 to walk serially without trying".into(),
        });
    }
    if let Some(n) = w.count
        && n != w.distinct
    {
        out.push(Warning {
            code: "users_count_mismatch".into(),
            message: format!(
                "Graph's $count said {} users before the walk, and the walk landed {} distinct users",
                crate::human::thousands(n),
                crate::human::thousands(w.distinct)
            ),
            fix: "none needed if users were added or removed during the run ($count is eventually consistent); if the difference stays on the next runs, run with users_concurrency = 1 and report it".into(),
        });
    }
    out
}

/// Walks every user with `concurrency` partitions at once; `from` is an interrupted run's
/// checkpoint, `delta` what the checkpoints carry for an incremental run.
async fn land_users_walk(
    ctx: &StreamCtx,
    concurrency: usize,
    from: Option<Checkpoint>,
    delta: DeltaSync,
    stats: &Arc<CallStats>,
    bar: &ProgressBar,
) -> Result<(Checkpoint, PartitionedWalk, bool)> {
    let resumed = from.filter(|c| c.walk.is_some());
    let mut prefetched = None;
    let (mut state, mut kept) = match resumed {
        Some(c) => {
            let state = c.walk.clone().unwrap_or_default();
            tracing::info!(
                parts = state.parts.len(),
                pages = c.pages,
                "users: continuing the interrupted partitioned walk"
            );
            (state, c)
        }
        None => {
            discard_segments(&ctx.dir, STREAM)?;
            let (state, probe) = plan(ctx, concurrency, stats).await?;
            prefetched = probe;
            (state, Checkpoint::default())
        }
    };
    kept.delta = delta.clone();
    loop {
        let probe = prefetched.take();
        match walk(ctx, concurrency, &state, kept.clone(), probe, stats, bar).await? {
            Ok(done) => {
                let summary = summarise(&done.0, &done.1);
                // Every id was seen by this process and none came twice in a partition:
                // the users have no repeated records to count.
                let repeat_free = !done.1.seeded && done.1.repeats == 0;
                return Ok((done.0, summary, repeat_free));
            }
            Err(Refused(why)) => {
                let next = match state.strategy {
                    Strategy::Ranges => Strategy::StartsWith,
                    _ => Strategy::Serial,
                };
                tracing::warn!(reason = %why, from = ?state.strategy, to = ?next, "Graph refused the users partition filter; walking again with another partitioning");
                discard_segments(&ctx.dir, STREAM)?;
                state
                    .fallbacks
                    .push(format!("{} refused: {why}", state.strategy.words()));
                state.strategy = next;
                state.parts = match next {
                    Strategy::StartsWith => starts_with_parts()
                        .into_iter()
                        .map(|p| PartState::new(p, MAX_DEPTH))
                        .collect(),
                    _ => vec![PartState::new(Part::All, MAX_DEPTH)],
                };
                kept = Checkpoint {
                    delta: delta.clone(),
                    ..Checkpoint::default()
                };
            }
        }
    }
}

fn summarise(c: &Checkpoint, seen: &Seen) -> PartitionedWalk {
    let w = c.walk.clone().unwrap_or_default();
    PartitionedWalk {
        strategy: w.strategy,
        ranges: w.parts.iter().filter(|p| !p.split).count() as u64,
        splits: w.parts.iter().filter(|p| p.split).count() as u64,
        count: w.count,
        distinct: seen.ids.len() as u64,
        overlap_dropped: seen.dropped,
        fallbacks: w.fallbacks,
    }
}

/// The first request of a partition: 999 users (100 with the manager expanded), the
/// selection, its filter, and its `$count` when `count` (then under `ConsistencyLevel:
/// eventual`, on every page; never with `$expand`, which advanced queries refuse).
fn first_url(ctx: &StreamCtx, part: &Part, count: bool) -> Result<Url> {
    let mut path = users_path(ctx.cfg.pipeline.manager);
    if let Some(f) = part.filter() {
        path.push_str("&$filter=");
        path.push_str(&encode_query_value(&f));
    }
    if count {
        path.push_str("&$count=true");
    }
    Ok(ctx.client.v1(&path)?)
}

/// Percent-encodes a query value (spaces as `%20`, which Graph reads; `+` would be literal).
fn encode_query_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len() * 2);
    for b in v.bytes() {
        match b {
            b'A'..=b'Z'
            | b'a'..=b'z'
            | b'0'..=b'9'
            | b'-'
            | b'.'
            | b'_'
            | b'~'
            | b'('
            | b')'
            | b',' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn counted() -> Headers {
    Headers {
        eventual: true,
        ..Headers::default()
    }
}

/// The probe: one page of every user, with the tenant's `$count`. Decides the ranges; a
/// tenant that fits on the page is done with it (the page comes back to be landed).
async fn plan(
    ctx: &StreamCtx,
    concurrency: usize,
    stats: &CallStats,
) -> Result<(WalkState, Option<Page>)> {
    let what = Stream::Users.what();
    let manager = ctx.cfg.pipeline.manager;
    // With the manager expanded the probe cannot be a page of the walk: `$count` is an
    // advanced query and those refuse `$expand`. It only counts and samples (id and UPN).
    let url = if manager {
        ctx.client.v1(&format!(
            "/users?$select=id,userPrincipalName&$top={USERS_PAGE_SIZE}&$count=true"
        ))?
    } else {
        first_url(ctx, &Part::All, true)?
    };
    let probe = ctx
        .client
        .get_graph_with(&url, stats, what, counted(), |r| Page::parse(r.body, r.ids))
        .await;
    let page = match probe {
        Ok(p) => p,
        // `$count` refused (a proxy stripping ConsistencyLevel, a cloud without it): plan
        // from the sample alone.
        Err(GraphError::Api { status: 400, .. }) => {
            let url = first_url(ctx, &Part::All, false)?;
            ctx.client
                .get_graph(&url, stats, what, |r| Page::parse(r.body, r.ids))
                .await?
        }
        Err(e) => return Err(e.into()),
    };
    let count = page.count;
    if page.next_link.is_none() && !manager {
        // Everyone fits on one page: it is the whole walk.
        let state = WalkState {
            strategy: Strategy::Serial,
            parts: vec![PartState::new(Part::All, MAX_DEPTH)],
            count,
            ..WalkState::default()
        };
        return Ok((state, Some(page)));
    }
    let page_size = users_page_size(manager);
    let users = count.unwrap_or((2 * concurrency * page_size as usize) as u64);
    let ranges = ranges_for(users, concurrency, page_size);
    let sample = upns(&page);
    let refs: Vec<&str> = sample.iter().map(String::as_str).collect();
    let parts = Part::All
        .split(&refs, ranges)
        .unwrap_or_else(|| vec![Part::All]);
    tracing::info!(users = ?count, ranges = parts.len(), "users: walking userPrincipalName ranges in parallel");
    tracing::debug!(ranges = ?parts.iter().map(Part::label).collect::<Vec<_>>(), "users: the planned ranges");
    let state = WalkState {
        strategy: Strategy::Ranges,
        target_users: users.div_ceil(parts.len() as u64),
        parts: parts.into_iter().map(|p| PartState::new(p, 1)).collect(),
        count,
        fallbacks: Vec::new(),
    };
    Ok((state, None))
}

/// How many ranges to cut `users` into for `concurrency` slots: the count whose walk takes
/// the fewest rounds of requests (a round: every slot fetching one page), then the fewest
/// pages (each range ends on a partly filled page). A small tenant gets one page per range
/// and one round; a large one a multiple of the slots, so the slots finish together.
fn ranges_for(users: u64, concurrency: usize, page_size: u32) -> usize {
    let c = concurrency.max(1);
    let pages_each = |k: usize| {
        ((users as f64 * SAMPLE_MARGIN) / (k as f64 * page_size as f64))
            .ceil()
            .max(1.0) as usize
    };
    let one_page_each = ((users as f64 * SAMPLE_MARGIN) / page_size as f64).ceil() as usize;
    let mut candidates: Vec<usize> = (1..=4).map(|j| j * c).collect();
    if one_page_each <= c {
        candidates.push(one_page_each.max(2));
    }
    candidates
        .into_iter()
        .map(|k| {
            (
                k.div_ceil(c) * pages_each(k),
                k * pages_each(k),
                std::cmp::Reverse(k),
            )
        })
        .min()
        .map_or(c, |(_, _, std::cmp::Reverse(k))| k)
}

/// The UPNs of a page's records (the sample bounds are drawn from).
fn upns(page: &Page) -> Vec<String> {
    #[derive(Deserialize)]
    struct Upn {
        #[serde(rename = "userPrincipalName")]
        upn: Option<String>,
    }
    (0..page.len())
        .filter_map(|i| serde_json::from_slice::<Upn>(page.record(i)).ok()?.upn)
        .collect()
}

type Walked = std::result::Result<(Checkpoint, Seen), Refused>;

/// One walk of `state`'s partitions, continuing the segments in `kept`.
async fn walk(
    ctx: &StreamCtx,
    concurrency: usize,
    state: &WalkState,
    kept: Checkpoint,
    probe: Option<Page>,
    stats: &Arc<CallStats>,
    bar: &ProgressBar,
) -> Result<Walked> {
    let (tx, rx) = mpsc::channel::<ToWriter>(concurrency * 2);
    let writer = {
        let (dir, stats, segment_pages) = (ctx.dir.clone(), stats.clone(), ctx.segment_pages);
        let lineage = Lineage {
            run_id: ctx.run_id.clone(),
            stream: STREAM.to_string(),
        };
        let mut kept = kept.clone();
        kept.walk = Some(state.clone());
        tokio::task::spawn_blocking(move || {
            Writer::new(&dir, lineage, kept, segment_pages, &stats)?.run(rx)
        })
    };
    let walked = match probe {
        // The probe held every user: land it as partition 0's only page.
        Some(page) => {
            let msg = ToWriter::Page {
                part: 0,
                at: Utc::now(),
                page: Box::new(page),
                next: None,
            };
            let _ = tx.send(msg).await;
            Ok(Ok(()))
        }
        None => run_parts(ctx, concurrency, state, &tx, stats, bar).await,
    };
    drop(tx);
    let written = writer
        .await
        .map_err(|e| Error::Internal(format!("the users writer failed: {e}")))?;
    match walked {
        Ok(Ok(())) => Ok(Ok(written?)),
        Ok(Err(refused)) => {
            let _ = written;
            Ok(Err(refused))
        }
        Err(e) => Err(e),
    }
}

/// Runs the partitions, `concurrency` at a time, in bound order (planned about equal); a
/// split puts its finer ranges at the front of the queue.
async fn run_parts(
    ctx: &StreamCtx,
    concurrency: usize,
    state: &WalkState,
    tx: &mpsc::Sender<ToWriter>,
    stats: &Arc<CallStats>,
    bar: &ProgressBar,
) -> Result<std::result::Result<(), Refused>> {
    let mut parts: Vec<PartState> = state.parts.clone();
    let mut queue: VecDeque<usize> = (0..parts.len())
        .filter(|i| !parts[*i].done && !parts[*i].split)
        .collect();
    let total_pages = Arc::new(std::sync::atomic::AtomicU64::new(
        parts.iter().map(|p| p.pages).sum(),
    ));
    let mut running: JoinSet<(usize, Result<std::result::Result<PartEnd, Refused>>)> =
        JoinSet::new();
    // A range's own `$count` (to split it again) is an advanced query: not with `$expand`.
    let counted =
        state.strategy == Strategy::Ranges && state.count.is_some() && !ctx.cfg.pipeline.manager;
    let target = state.target_users;
    loop {
        while running.len() < concurrency
            && let Some(id) = queue.pop_front()
        {
            let p = parts[id].clone();
            let job = PartJob {
                ctx: ctx.clone(),
                stats: stats.clone(),
                tx: tx.clone(),
                id,
                resplit: (counted && p.depth < MAX_DEPTH && p.next.is_none()).then_some(target),
                state: p,
                counted,
                pages: total_pages.clone(),
                bar: bar.clone(),
                ranges: parts.iter().filter(|p| !p.split).count(),
            };
            running.spawn(async move { (id, job.run().await) });
        }
        let Some(joined) = running.join_next().await else {
            break;
        };
        let (id, result) =
            joined.map_err(|e| Error::Internal(format!("a users range failed: {e}")))?;
        let stop = match result {
            Ok(Ok(PartEnd::Done)) => None,
            Ok(Ok(PartEnd::Split(finer))) => {
                parts[id].split = true;
                let depth = parts[id].depth + 1;
                let added: Vec<PartState> = finer
                    .into_iter()
                    .map(|p| PartState::new(p, depth))
                    .collect();
                let first = parts.len();
                parts.extend(added.iter().cloned());
                for i in (first..parts.len()).rev() {
                    queue.push_front(i);
                }
                let plan = ToWriter::Plan {
                    added,
                    replaces: Some(id),
                };
                // A closed channel means the writer failed: its error is reported.
                tx.send(plan).await.err().map(|_| Ok(()))
            }
            Ok(Err(refused)) => Some(Err(refused)),
            Err(e) => {
                // The other ranges stop at their next await; the writer finishes their pages.
                running.abort_all();
                while running.join_next().await.is_some() {}
                return Err(e);
            }
        };
        if let Some(stop) = stop {
            running.abort_all();
            while running.join_next().await.is_some() {}
            return Ok(stop);
        }
    }
    Ok(Ok(()))
}

/// One partition's walk.
struct PartJob {
    ctx: StreamCtx,
    stats: Arc<CallStats>,
    tx: mpsc::Sender<ToWriter>,
    id: usize,
    state: PartState,
    /// Ask `$count` on the first page (under `ConsistencyLevel: eventual`).
    counted: bool,
    /// Split again when the first page's `$count` exceeds this many users × the factor.
    resplit: Option<u64>,
    pages: Arc<std::sync::atomic::AtomicU64>,
    bar: ProgressBar,
    ranges: usize,
}

impl PartJob {
    async fn run(self) -> Result<std::result::Result<PartEnd, Refused>> {
        let graph = self.ctx.client.graph_url().clone();
        let resuming = self.state.next.as_deref().and_then(|n| {
            let url = Url::parse(n).ok()?;
            (url.origin() == graph.origin()).then_some(url)
        });
        let fresh = resuming.is_none();
        let start = match resuming {
            Some(u) => u,
            None => first_url(&self.ctx, &self.state.part, self.counted)?,
        };
        let headers = if self.counted {
            counted()
        } else {
            Headers::default()
        };
        let mut pager = Pager::new(start, &graph).with_headers(headers);
        let mut cancel = self.ctx.cancel.clone();
        let mut first = fresh;
        loop {
            let t_page = std::time::Instant::now();
            let next = tokio::select! {
                next = pager.next_page(&self.ctx.client, &self.stats, Stream::Users.what()) => next,
                _ = cancel.wait_for(|c| *c) => return Err(cancelled_error()),
            };
            let page = match next {
                Ok(Some(p)) => p,
                Ok(None) => return Ok(Ok(PartEnd::Done)),
                Err(GraphError::Api {
                    status: 400,
                    code,
                    message,
                    ..
                }) if first && self.state.part.filter().is_some() => {
                    return Ok(Err(Refused(format!("HTTP 400 {code}: {message}"))));
                }
                Err(e) => return Err(e.into()),
            };
            if first
                && let (Some(target), Some(n)) = (self.resplit, page.count)
                && page.next_link.is_some()
                && n as f64 > target as f64 * RESPLIT_FACTOR
            {
                let pieces = n.div_ceil(target.max(1)) as usize;
                let sample = upns(&page);
                let refs: Vec<&str> = sample.iter().map(String::as_str).collect();
                if let Some(finer) = self.state.part.split(&refs, pieces) {
                    tracing::debug!(range = %self.state.part.label(), users = n, pieces = finer.len(), "users: range larger than planned; split again");
                    return Ok(Ok(PartEnd::Split(finer)));
                }
            }
            first = false;
            let total = self
                .pages
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                + 1;
            tracing::debug!(
                stream = STREAM,
                part = self.id,
                page = total,
                ms = t_page.elapsed().as_millis() as u64,
                "page fetched"
            );
            self.bar
                .set_message(format!("{total} pages ({} ranges)", self.ranges));
            let msg = ToWriter::Page {
                part: self.id,
                at: Utc::now(),
                page: Box::new(page),
                next: pager.next_link().cloned(),
            };
            if self.tx.send(msg).await.is_err() {
                return Ok(Ok(PartEnd::Done)); // the writer failed; its error is reported
            }
        }
    }
}

/// Ids landed so far and by which partition: a record another partition landed is dropped.
#[derive(Debug, Default)]
pub(super) struct Seen {
    ids: HashMap<u64, u32>,
    dropped: u64,
    /// Records of an id its own partition had landed already (Graph repeating a user).
    repeats: u64,
    /// Ids came from an interrupted run's files too (their partitions are not known).
    seeded: bool,
}

/// A partition id for users landed before a resume (which partition is not recorded).
const KEPT: u32 = u32::MAX;

fn id_hash(id: &str) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    id.hash(&mut h);
    h.finish()
}

fn record_id(record: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Id {
        id: Option<String>,
    }
    serde_json::from_slice::<Id>(record).ok()?.id
}

impl Seen {
    /// Whether partition `part` may land this record.
    fn admit(&mut self, part: u32, record: &[u8]) -> bool {
        let Some(id) = record_id(record) else {
            return true; // no id: staging reports it; nothing to deduplicate by
        };
        match self.ids.entry(id_hash(&id)) {
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(part);
                true
            }
            std::collections::hash_map::Entry::Occupied(o) if *o.get() == part => {
                self.repeats += 1;
                true
            }
            std::collections::hash_map::Entry::Occupied(_) => {
                self.dropped += 1;
                false
            }
        }
    }

    /// The ids of the users an interrupted run landed.
    fn from_files(dir: &Path, c: &Checkpoint) -> Result<Seen> {
        use parquet::arrow::ProjectionMask;
        use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
        let mut seen = Seen {
            seeded: !c.files.is_empty(),
            ..Seen::default()
        };
        for f in &c.files {
            let path = dir.join(&f.file);
            let bad = |e: String| Error::Internal(format!("reading {}: {e}", path.display()));
            let file = std::fs::File::open(&path)
                .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
            let builder =
                ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| bad(e.to_string()))?;
            let schema = builder.parquet_schema();
            let Some(col) =
                (0..schema.num_columns()).find(|i| schema.column(*i).name() == RECORD_COLUMN)
            else {
                continue;
            };
            let mask = ProjectionMask::leaves(schema, [col]);
            let reader = builder
                .with_projection(mask)
                .build()
                .map_err(|e| bad(e.to_string()))?;
            for batch in reader {
                let batch = batch.map_err(|e| bad(e.to_string()))?;
                let Some(records) = batch
                    .column(0)
                    .as_any()
                    .downcast_ref::<arrow::array::StringArray>()
                else {
                    continue;
                };
                for r in records.iter().flatten() {
                    if let Some(id) = record_id(r.as_bytes()) {
                        seen.ids.insert(id_hash(&id), KEPT);
                    }
                }
            }
        }
        Ok(seen)
    }
}

/// The blocking side of the walk: pages into Parquet segments, checkpoints.
struct Writer<'a> {
    dir: std::path::PathBuf,
    lineage: Lineage,
    segment_pages: u64,
    stats: &'a CallStats,
    /// What closed segments hold (saved as the checkpoint).
    committed: Checkpoint,
    /// Partition progress including the open segment.
    parts: Vec<PartState>,
    seen: Seen,
    open: Option<(JsonLander, u64)>,
    pages: u64,
}

impl<'a> Writer<'a> {
    fn new(
        dir: &Path,
        lineage: Lineage,
        kept: Checkpoint,
        segment_pages: u64,
        stats: &'a CallStats,
    ) -> Result<Writer<'a>> {
        let seen = Seen::from_files(dir, &kept)?;
        let parts = kept
            .walk
            .as_ref()
            .map(|w| w.parts.clone())
            .unwrap_or_default();
        Ok(Writer {
            dir: dir.to_path_buf(),
            lineage,
            segment_pages,
            stats,
            pages: kept.pages,
            committed: kept,
            parts,
            seen,
            open: None,
        })
    }

    fn run(mut self, mut rx: mpsc::Receiver<ToWriter>) -> Result<(Checkpoint, Seen)> {
        while let Some(msg) = rx.blocking_recv() {
            match msg {
                ToWriter::Plan { added, replaces } => {
                    if let Some(i) = replaces
                        && let Some(p) = self.parts.get_mut(i)
                    {
                        p.split = true;
                    }
                    self.parts.extend(added);
                }
                ToWriter::Page {
                    part,
                    at,
                    page,
                    next,
                } => self.write(part, at, &page, next)?,
            }
        }
        self.close()?;
        let mut done = self.committed;
        done.next.clear();
        Ok((done, self.seen))
    }

    fn write(
        &mut self,
        part: usize,
        at: DateTime<Utc>,
        page: &Page,
        next: Option<Url>,
    ) -> Result<()> {
        let (lander, in_segment) = match &mut self.open {
            Some(o) => o,
            None => {
                let name = format!("{STREAM}-{:05}", self.committed.files.len() + 1);
                let l = JsonLander::create_at(
                    &self.dir,
                    &name,
                    self.lineage.clone(),
                    self.committed.rows,
                )?;
                self.open.insert((l, 0))
            }
        };
        let seen = &mut self.seen;
        let records: Vec<&[u8]> = (0..page.len())
            .map(|i| page.record(i))
            .filter(|r| seen.admit(part as u32, r))
            .collect();
        self.pages += 1;
        lander.write_page(self.pages as i32, at, records.into_iter())?;
        *in_segment += 1;
        let full = *in_segment >= self.segment_pages;
        if let Some(p) = self.parts.get_mut(part) {
            p.pages += 1;
            p.done = next.is_none();
            p.next = next.map(|u| u.to_string());
        }
        crate::failpoint::hit("extract.page");
        if full {
            self.close()?;
            resume::save_checkpoint(&self.dir, STREAM, &self.committed)?;
        }
        Ok(())
    }

    /// Closes the open segment; the checkpoint now covers its pages.
    fn close(&mut self) -> Result<()> {
        let Some((lander, _)) = self.open.take() else {
            if self.committed.files.is_empty() {
                // A stream with no rows still gets a file: the transform reads its schema.
                let l = JsonLander::create_at(
                    &self.dir,
                    &format!("{STREAM}-00001"),
                    self.lineage.clone(),
                    0,
                )?;
                self.committed.files.push(l.finish()?);
            }
            return self.snapshot();
        };
        self.committed.rows += lander.rows();
        self.committed.files.push(lander.finish()?);
        self.snapshot()
    }

    fn snapshot(&mut self) -> Result<()> {
        self.committed.pages = self.pages;
        self.committed.calls = self.stats.snapshot();
        let mut walk = self.committed.walk.take().unwrap_or_default();
        walk.parts = self.parts.clone();
        self.committed.walk = Some(walk);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_take_the_fewest_rounds_then_the_fewest_pages() {
        // 2,500 users, 8 slots: 3 ranges of one page each, one round.
        assert_eq!(ranges_for(2_500, 8, USERS_PAGE_SIZE), 3);
        // 100,000 users, 16 slots: 8 rounds whichever multiple; the most ranges balance best.
        let k = ranges_for(100_000, 16, USERS_PAGE_SIZE);
        assert_eq!(k % 16, 0, "{k}");
        assert!(
            k.div_ceil(16) * ((100_000.0 * SAMPLE_MARGIN) / (k as f64 * 999.0)).ceil() as usize
                <= 8
        );
        // One slot: one range per page's worth.
        assert!(ranges_for(5_000, 1, USERS_PAGE_SIZE) >= 1);
        assert_eq!(ranges_for(10, 16, USERS_PAGE_SIZE), 2);
        // The manager expanded: pages of 100, so 100,000 users need about 10x the pages and
        // a small tenant more ranges of one page each.
        let k = ranges_for(100_000, 16, 100);
        assert_eq!(k % 16, 0, "{k}");
        assert_eq!(ranges_for(900, 16, 100), 11);
    }

    #[test]
    fn a_user_another_range_landed_is_dropped_and_a_repeat_in_its_own_range_kept() {
        let mut seen = Seen::default();
        let a = br#"{"id":"a","userPrincipalName":"b@x"}"#;
        assert!(seen.admit(0, a));
        assert!(!seen.admit(1, a), "the neighbour range sharing the bound");
        assert!(
            seen.admit(0, a),
            "Graph repeating a user on its own range's next page"
        );
        assert!(seen.admit(1, br#"{"id":"b"}"#));
        assert!(seen.admit(1, br#"{"no":"id"}"#));
        assert_eq!((seen.ids.len(), seen.dropped, seen.repeats), (2, 1, 1));
    }
}
