//! What the status page, `/metrics` and the health checks show: one snapshot of every
//! connector file of the folder, published by the scheduler and read by every request.
//!
//! Requests never open a staging database: the scheduler alone knows which connector is
//! running, and a database is read (read-only) only when its connector is not running in
//! this process and its files changed since the last read. Two hundred page loads during a
//! run therefore cost the run nothing, and a page never waits for DuckDB's lock.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use crate::config::Config;
use crate::error::Result;
use crate::manifest::Warning;
use crate::store::{DataDir, Staging, db_error};

/// Runs of one connector kept for its page (newest first); older ones stay in its database.
pub const HISTORY_LIMIT: usize = 500;

/// The shared board.
#[derive(Default)]
pub struct Board {
    snapshot: RwLock<Snapshot>,
    /// Unix seconds of the scheduler loop's last turn (`/healthz`).
    heartbeat: AtomicI64,
    /// The first scan is published and the listener bound (`/readyz`).
    ready: AtomicBool,
    /// Set when the server is shutting down (`/readyz` then says so).
    stopping: AtomicBool,
}

impl Board {
    pub fn snapshot(&self) -> Snapshot {
        self.snapshot
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn publish(&self, snapshot: Snapshot) {
        *self.snapshot.write().unwrap_or_else(|e| e.into_inner()) = snapshot;
    }

    pub fn beat(&self, now: DateTime<Utc>) {
        self.heartbeat.store(now.timestamp(), Ordering::Relaxed);
    }

    /// When the scheduler loop last turned; `None` before its first turn.
    pub fn last_beat(&self) -> Option<DateTime<Utc>> {
        match self.heartbeat.load(Ordering::Relaxed) {
            0 => None,
            s => DateTime::from_timestamp(s, 0),
        }
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed) && !self.stopping.load(Ordering::Relaxed)
    }

    pub fn set_stopping(&self) {
        self.stopping.store(true, Ordering::Relaxed);
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Relaxed)
    }
}

/// Every connector file of the folder as last scanned.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// The name this server runs under (`serve --server`).
    pub server: String,
    pub scanned_at: Option<DateTime<Utc>>,
    /// By file name.
    pub connectors: Vec<Card>,
    /// Files that do not parse, with their `file:line` error.
    pub bad_files: Vec<BadFile>,
}

impl Snapshot {
    /// The connector of that name (names are matched as typed; the first file wins).
    pub fn connector(&self, name: &str) -> Option<&Card> {
        self.connectors.iter().find(|c| c.name == name)
    }
}

#[derive(Debug, Clone)]
pub struct BadFile {
    pub file: String,
    pub error: String,
}

/// One connector as its page shows it.
#[derive(Debug, Clone)]
pub struct Card {
    pub name: String,
    /// The file's name within the folder.
    pub file: String,
    pub path: PathBuf,
    pub server: String,
    /// Its `server` is this server's name.
    pub hosted: bool,
    pub active: bool,
    pub schedule: String,
    pub time_zone: Tz,
    /// The next scheduled run when this server hosts it and it is active.
    pub next_run: Option<DateTime<Utc>>,
    /// When the run in progress in this process started.
    pub running_since: Option<DateTime<Utc>>,
    pub data_dir: PathBuf,
    /// The file as loaded (its secret is never shown: `Secret` redacts itself).
    pub config: Arc<Config>,
    pub history: History,
}

/// What a connector's staging database says about its runs.
#[derive(Debug, Clone, Default)]
pub struct History {
    /// Newest first, at most [`HISTORY_LIMIT`].
    pub runs: Vec<RunRow>,
    /// Runs by status, over every run of the database.
    pub by_status: Vec<(String, u64)>,
    /// Sums over every run: Graph requests, throttled answers, milliseconds waited.
    pub requests: u64,
    pub throttled: u64,
    pub waited_ms: u64,
    /// The warnings of the newest run, with their fixes.
    pub last_warnings: Vec<Warning>,
    /// Why the database could not be read at the last try (the figures are then older).
    pub read_error: Option<String>,
    /// The database's files as last read, to read again only when they change.
    pub stamp: Option<Vec<(u64, SystemTime)>>,
}

impl History {
    pub fn last(&self) -> Option<&RunRow> {
        self.runs.first()
    }

    pub fn last_success(&self) -> Option<&RunRow> {
        self.runs.iter().find(|r| r.status == "succeeded")
    }

    pub fn total(&self) -> u64 {
        self.by_status.iter().map(|(_, n)| n).sum()
    }
}

/// One row of the `runs` table.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRow {
    pub run_id: String,
    pub status: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub users_fetched: Option<i64>,
    pub people_kept: Option<i64>,
    pub rejected: Option<i64>,
    pub requests: Option<i64>,
    pub throttled: Option<i64>,
    pub warnings: u64,
    pub error: Option<String>,
}

impl RunRow {
    pub fn seconds(&self) -> Option<f64> {
        self.finished_at
            .map(|f| (f - self.started_at).num_milliseconds() as f64 / 1000.0)
    }
}

/// The sizes and times of a data directory's database files; `None` when it has none.
pub fn db_stamp(data_dir: &Path) -> Option<Vec<(u64, SystemTime)>> {
    let d = DataDir::new(data_dir);
    let db = std::fs::metadata(d.db()).ok()?;
    let mut stamp = vec![(db.len(), db.modified().ok()?)];
    if let Ok(wal) = std::fs::metadata(d.db_wal()) {
        stamp.push((wal.len(), wal.modified().unwrap_or(SystemTime::UNIX_EPOCH)));
    }
    Some(stamp)
}

/// Reads a connector's runs from its staging database, read-only. A data directory without
/// a database yet has no runs.
pub fn read_history(data_dir: &Path, connector: &str) -> Result<History> {
    let stamp = db_stamp(data_dir);
    if stamp.is_none() {
        return Ok(History::default());
    }
    let staging = Staging::open_read_only(data_dir)?;
    let fail = |e| db_error(&staging.path, "reading the runs for the status page", e);
    let mut stmt = staging
        .conn
        .prepare(
            "SELECT run_id, status, epoch_ms(started_at), epoch_ms(finished_at), users_fetched,
                    people_kept, rejected, requests, throttled,
                    greatest(coalesce(json_array_length(warnings), 0),
                             (SELECT count(*) FROM run_warnings w WHERE w.run_id = r.run_id)),
                    error
             FROM runs r WHERE connector = ? ORDER BY started_at DESC, run_id DESC LIMIT ?",
        )
        .map_err(fail)?;
    let runs = stmt
        .query_map(duckdb::params![connector, HISTORY_LIMIT as i64], |r| {
            let ms = |v: Option<i64>| v.and_then(DateTime::from_timestamp_millis);
            Ok(RunRow {
                run_id: r.get(0)?,
                status: r.get(1)?,
                started_at: ms(r.get(2)?).unwrap_or_default(),
                finished_at: ms(r.get(3)?),
                users_fetched: r.get(4)?,
                people_kept: r.get(5)?,
                rejected: r.get(6)?,
                requests: r.get(7)?,
                throttled: r.get(8)?,
                warnings: r.get::<_, i64>(9)?.max(0) as u64,
                error: r.get(10)?,
            })
        })
        .and_then(|rows| rows.collect::<duckdb::Result<Vec<_>>>())
        .map_err(fail)?;
    let mut stmt = staging
        .conn
        .prepare(
            "SELECT status, count(*) FROM runs WHERE connector = ? GROUP BY status ORDER BY status",
        )
        .map_err(fail)?;
    let by_status = stmt
        .query_map(duckdb::params![connector], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?.max(0) as u64))
        })
        .and_then(|rows| rows.collect::<duckdb::Result<Vec<_>>>())
        .map_err(fail)?;
    let (requests, throttled, waited_ms): (i64, i64, i64) = staging
        .conn
        .query_row(
            "SELECT coalesce(sum(requests), 0)::BIGINT, coalesce(sum(throttled), 0)::BIGINT,
                    coalesce(sum(waited_ms), 0)::BIGINT
             FROM runs WHERE connector = ?",
            duckdb::params![connector],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .map_err(fail)?;
    let last_warnings = match runs.first() {
        Some(run) => run_warnings(&staging, &run.run_id)?,
        None => Vec::new(),
    };
    Ok(History {
        runs,
        by_status,
        requests: requests.max(0) as u64,
        throttled: throttled.max(0) as u64,
        waited_ms: waited_ms.max(0) as u64,
        last_warnings,
        read_error: None,
        stamp,
    })
}

/// A run's warnings: the transform's (`run_warnings`, which repeat the extract's) when it
/// got that far, else the extract's from `runs.warnings`.
fn run_warnings(staging: &Staging, run_id: &str) -> Result<Vec<Warning>> {
    let recorded = staging.warnings(run_id)?;
    if !recorded.is_empty() {
        return Ok(recorded);
    }
    let json: Option<String> = staging
        .conn
        .query_row(
            "SELECT CAST(warnings AS VARCHAR) FROM runs WHERE run_id = ?",
            duckdb::params![run_id],
            |r| r.get(0),
        )
        .map_err(|e| db_error(&staging.path, "reading the run's warnings", e))?;
    Ok(json
        .and_then(|j| serde_json::from_str::<Vec<Warning>>(&j).ok())
        .unwrap_or_default())
}
