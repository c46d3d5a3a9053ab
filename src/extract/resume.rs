//! Resuming an interrupted extract.
//!
//! An extract that dies (SIGKILL, power loss) leaves `raw/.partial-<run_id>/` and a `runs` row
//! whose `extract_status` is still `running`. The partial directory records what is durable:
//! `resume.json` (whose run it is), `<stream>.done.json` for every finished stream and
//! `<stream>.checkpoint.json` for the committed segments of a paged stream, with the next
//! link to continue from. The next extract of the same connector continues that run instead
//! of starting over: finished streams and committed users pages are not fetched again.
//!
//! A partial run is discarded instead, explicitly (logged, and its `runs` row marked failed
//! with the reason), when it is older than [`MAX_AGE_HOURS`] (its report data and run date
//! would be stale), when the connector's configuration changed since, or when its files do not
//! match what its markers promise.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::graph::CallCounts;
use crate::land::LandedFile;
use crate::manifest::{MANIFEST_FILE, RunManifest, StreamManifest, write_json_atomic};
use crate::store::Staging;

/// A partial run older than this is discarded, not resumed.
pub const MAX_AGE_HOURS: i64 = 6;

/// Identifies the run a partial directory belongs to.
const STATE_FILE: &str = "resume.json";

pub use crate::store::data_dir::PARTIAL_PREFIX;

/// Contents of `resume.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartialRun {
    pub run_id: String,
    pub started_at: DateTime<Utc>,
    /// [`Config::fingerprint`] of the configuration the run started with.
    pub fingerprint: String,
}

/// The committed part of a stream landed in segments.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub files: Vec<LandedFile>,
    pub rows: u64,
    pub pages: u64,
    pub calls: CallCounts,
    /// The next link to continue from (on the Graph host, checked again before use).
    pub next: String,
    /// Incremental users: the kind of walk the segments belong to and the link it started
    /// from, so a resumed run continues the same walk (and falls back to the same start).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    #[serde(default, flatten)]
    pub delta: crate::manifest::DeltaSync,
    /// A partitioned users walk: its partitions and how far each got.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub walk: Option<super::partitions::WalkState>,
}

/// What an interrupted run left that can be reused.
#[derive(Debug, Clone, Default)]
pub struct Resumed {
    pub run_id: String,
    pub started_at: DateTime<Utc>,
    pub dir: PathBuf,
    /// Finished streams, as their manifests.
    pub done: BTreeMap<String, StreamManifest>,
    /// Paged streams with committed segments.
    pub checkpoints: BTreeMap<String, Checkpoint>,
    /// A complete manifest: the run only needs renaming into place.
    pub manifest: Option<RunManifest>,
}

impl Resumed {
    /// Users pages that will not be fetched again.
    pub fn pages_kept(&self) -> u64 {
        let users = crate::streams::Stream::Users.name();
        let done = self.done.get(users).map(|s| s.pages);
        done.or_else(|| self.checkpoints.get(users).map(|c| c.pages))
            .unwrap_or(0)
    }
}

/// The marker of a finished stream.
pub fn done_path(dir: &Path, stream: &str) -> PathBuf {
    dir.join(format!("{stream}.done.json"))
}

/// The checkpoint of a paged stream.
pub fn checkpoint_path(dir: &Path, stream: &str) -> PathBuf {
    dir.join(format!("{stream}.checkpoint.json"))
}

/// Starts the bookkeeping of a new partial directory.
pub fn start(dir: &Path, cfg: &Config, run_id: &str, started_at: DateTime<Utc>) -> Result<()> {
    let state = PartialRun {
        run_id: run_id.to_string(),
        started_at,
        fingerprint: cfg.fingerprint(),
    };
    write_marker(&dir.join(STATE_FILE), &state)
}

/// Records a finished stream.
pub fn mark_done(dir: &Path, stream: &str, m: &StreamManifest) -> Result<()> {
    write_marker(&done_path(dir, stream), m)?;
    crate::failpoint::hit("extract.stream_done");
    Ok(())
}

/// Records the committed segments of a paged stream.
pub fn save_checkpoint(dir: &Path, stream: &str, c: &Checkpoint) -> Result<()> {
    write_marker(&checkpoint_path(dir, stream), c)?;
    crate::failpoint::hit("extract.checkpoint");
    Ok(())
}

/// Removes the bookkeeping files before a partial directory is committed.
pub fn remove_markers(dir: &Path) -> Result<()> {
    for entry in read_dir(dir)? {
        let name = entry.file_name().to_string_lossy().into_owned();
        if is_marker(&name) {
            std::fs::remove_file(entry.path())
                .map_err(|e| Error::io(format!("removing {}", entry.path().display()), e))?;
        }
    }
    Ok(())
}

fn is_marker(name: &str) -> bool {
    name == STATE_FILE || name.ends_with(".done.json") || name.ends_with(".checkpoint.json")
}

fn write_marker(path: &Path, value: &impl Serialize) -> Result<()> {
    write_json_atomic(path, value).map_err(|e| Error::io(format!("writing {}", path.display()), e))
}

fn read_marker<T: for<'de> Deserialize<'de>>(path: &Path) -> Option<T> {
    let bytes = std::fs::read(path).ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn read_dir(dir: &Path) -> Result<Vec<std::fs::DirEntry>> {
    std::fs::read_dir(dir)
        .and_then(|it| it.collect::<std::io::Result<Vec<_>>>())
        .map_err(|e| Error::io(format!("reading {}", dir.display()), e))
}

/// Looks at what earlier extracts of this connector left in `raw/` and in `runs`: picks the
/// partial run to resume (the newest usable one) and discards the others explicitly.
/// Also records runs that were committed on disk but killed before `runs` said so.
pub fn prepare(cfg: &Config, staging: &Staging, now: DateTime<Utc>) -> Result<Option<Resumed>> {
    let raw = crate::store::DataDir::new(&cfg.pipeline.data_dir).raw();
    recover_committed(&raw, staging)?;
    let mut partials: Vec<PathBuf> = match std::fs::read_dir(&raw) {
        Ok(_) => read_dir(&raw)?
            .into_iter()
            .filter(|e| e.file_name().to_string_lossy().starts_with(PARTIAL_PREFIX))
            .map(|e| e.path())
            .collect(),
        Err(_) => Vec::new(),
    };
    // Run ids sort by time: the newest partial is the one worth resuming.
    partials.sort();
    let mut chosen = None;
    while let Some(dir) = partials.pop() {
        let outcome = if chosen.is_some() {
            Err("a newer interrupted run is resumed instead".to_string())
        } else {
            inspect(&dir, cfg, staging, now)
        };
        match outcome {
            Ok(r) => chosen = Some(r),
            Err(reason) => discard(&dir, staging, &reason),
        }
    }
    // Interrupted extracts whose directory is gone can never finish.
    let resumed_id = chosen.as_ref().map(|r: &Resumed| r.run_id.clone());
    staging.fail_interrupted_extracts(
        resumed_id.as_deref(),
        "interrupted: the process stopped during extract and nothing of it was kept",
    )?;
    Ok(chosen)
}

/// A committed `raw/<run_id>/` whose `runs` row still says the extract is running: the
/// process died between the rename and the database update. The manifest has it all.
fn recover_committed(raw: &Path, staging: &Staging) -> Result<()> {
    let mut stmt = staging
        .conn
        .prepare("SELECT run_id FROM runs WHERE extract_status = 'running'")
        .map_err(|e| crate::store::db_error(&staging.path, "reading runs", e))?;
    let running: Vec<String> = stmt
        .query_map([], |r| r.get(0))
        .and_then(|rows| rows.collect())
        .map_err(|e| crate::store::db_error(&staging.path, "reading runs", e))?;
    for run_id in running {
        let dir = raw.join(&run_id);
        if let Ok(m) = RunManifest::read(&dir) {
            tracing::info!(run_id = %run_id, "recording a run that was committed but not yet recorded");
            let seconds = (m.finished_at - m.started_at).as_seconds_f64();
            staging.finish_extract(&m, seconds)?;
        }
    }
    Ok(())
}

/// Checks a partial directory; `Err(reason)` when it must be discarded.
fn inspect(
    dir: &Path,
    cfg: &Config,
    staging: &Staging,
    now: DateTime<Utc>,
) -> std::result::Result<Resumed, String> {
    let state: PartialRun = read_marker(&dir.join(STATE_FILE))
        .ok_or("it has no readable resume.json (it predates resumable extracts or was torn)")?;
    if now - state.started_at > chrono::Duration::hours(MAX_AGE_HOURS) {
        return Err(format!(
            "it started at {} UTC, more than {MAX_AGE_HOURS} hours ago",
            state.started_at.format("%Y-%m-%d %H:%M")
        ));
    }
    if state.fingerprint != cfg.fingerprint() {
        return Err("the connector's configuration changed since it started".into());
    }
    let status: Option<String> = staging
        .conn
        .query_row(
            "SELECT extract_status FROM runs WHERE run_id = ?",
            duckdb::params![state.run_id],
            |r| r.get(0),
        )
        .ok();
    if status.as_deref() != Some("running") {
        return Err(format!(
            "the staging database has no interrupted extract {} (status {})",
            state.run_id,
            status.as_deref().unwrap_or("missing")
        ));
    }
    let mut r = Resumed {
        run_id: state.run_id,
        started_at: state.started_at,
        dir: dir.to_path_buf(),
        ..Resumed::default()
    };
    if dir.join(MANIFEST_FILE).is_file() {
        let m = RunManifest::read(dir).map_err(|e| e.to_string())?;
        for s in m.streams.values() {
            verify(dir, &s.files)?;
        }
        r.manifest = Some(m);
        return Ok(r);
    }
    let mut keep: Vec<String> = vec![STATE_FILE.to_string()];
    for entry in read_dir(dir).map_err(|e| e.to_string())? {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(stream) = name.strip_suffix(".done.json") {
            let m: StreamManifest =
                read_marker(&entry.path()).ok_or_else(|| format!("{name} is not readable"))?;
            verify(dir, &m.files)?;
            keep.push(name.clone());
            keep.extend(m.files.iter().map(|f| f.file.clone()));
            r.done.insert(stream.to_string(), m);
        }
    }
    for entry in read_dir(dir).map_err(|e| e.to_string())? {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(stream) = name.strip_suffix(".checkpoint.json") {
            if r.done.contains_key(stream) {
                continue;
            }
            let c: Checkpoint =
                read_marker(&entry.path()).ok_or_else(|| format!("{name} is not readable"))?;
            verify(dir, &c.files)?;
            keep.push(name.clone());
            keep.extend(c.files.iter().map(|f| f.file.clone()));
            r.checkpoints.insert(stream.to_string(), c);
        }
    }
    // Whatever no marker vouches for (a half-written segment, a report download) goes.
    for entry in read_dir(dir).map_err(|e| e.to_string())? {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !keep.contains(&name) {
            std::fs::remove_file(entry.path()).map_err(|e| format!("cannot remove {name}: {e}"))?;
        }
    }
    Ok(r)
}

/// Every file a marker lists must be there with the size and sha256 it was landed with.
fn verify(dir: &Path, files: &[LandedFile]) -> std::result::Result<(), String> {
    for f in files {
        let path = dir.join(&f.file);
        let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", f.file))?;
        let sha = crate::digest::hex(&Sha256::digest(&bytes));
        if bytes.len() as u64 != f.bytes || sha != f.sha256 {
            return Err(format!(
                "{} does not match its checkpoint (size or sha256)",
                f.file
            ));
        }
    }
    Ok(())
}

/// Removes a partial directory that will not be resumed and says why.
fn discard(dir: &Path, staging: &Staging, reason: &str) {
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned());
    let run_id = name
        .as_deref()
        .and_then(crate::store::DataDir::partial_run_id)
        .unwrap_or_default()
        .to_string();
    tracing::warn!(run_id = %run_id, %reason, "discarding an interrupted extract; its data will be fetched again");
    crate::fs::remove_partial(dir);
    if !run_id.is_empty() {
        staging.fail(
            &run_id,
            crate::store::Stage::Extract,
            &format!("interrupted, then discarded: {reason}"),
        );
    }
}
/// Removes a stream's checkpoint and segments from the partial directory before its walk
/// starts over: nothing refers to them any more.
pub(super) fn discard_segments(dir: &Path, stream: &str) -> Result<()> {
    let mut doomed = vec![checkpoint_path(dir, stream)];
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

/// The manifest of a landed paged stream. Its calls include those the interrupted run it
/// resumed had made, so a resumed stream reports all the requests its data cost.
pub(super) fn landed_manifest(
    landed: Checkpoint,
    calls: CallCounts,
    resumed_from: Option<&Checkpoint>,
) -> StreamManifest {
    StreamManifest {
        rows: landed.rows,
        files: landed.files,
        pages: landed.pages,
        calls: match resumed_from {
            Some(c) => add_counts(calls, c.calls),
            None => calls,
        },
        ..StreamManifest::default()
    }
}

pub(super) fn add_counts(a: CallCounts, b: CallCounts) -> CallCounts {
    CallCounts {
        requests: a.requests + b.requests,
        retries: a.retries + b.retries,
        throttled: a.throttled + b.throttled,
        waited_ms: a.waited_ms + b.waited_ms,
        stalled: a.stalled + b.stalled,
        stalled_ms: a.stalled_ms + b.stalled_ms,
        bytes_decoded: a.bytes_decoded + b.bytes_decoded,
    }
}
