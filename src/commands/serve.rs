//! The connector server: `serve --connectors DIR [--server NAME] [--once]`.
//!
//! It hosts every connector file in DIR whose `server` matches, runs each *active* one at
//! its scheduled times, and re-reads the folder on every wake, so added, changed and removed
//! files take effect without a restart. A file that does not parse is reported once (per
//! change) and skipped. A run holds a lock file in its connector's data directory, so the same
//! connector never runs twice at once, whether in this process or in a second server. One
//! connector failing is logged and recorded in its staging database; the others go on.
//!
//! When is a connector due? At each instant of its schedule after its last run (the newest
//! row in its `runs` table). A connector that never ran waits for its first scheduled instant
//! after the server first saw it; `serve --once` (for cron / Task Scheduler) runs it at once.
//! Missed instants (server down, a long run) are caught up by one run, not one per instant.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use chrono::{DateTime, Utc};
use tokio::task::JoinSet;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::load::ExportFormat;
use crate::output::Progress;

/// Wall-clock time for the server; tests inject a virtual one.
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
    /// Waits until `t`; `false` means the server should stop (a virtual clock's end).
    fn sleep_until(
        &self,
        t: DateTime<Utc>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send + '_>>;
    /// A virtual clock jumps instead of waiting, so the server lets running connectors finish
    /// before it moves time on (otherwise a jump would skip their next instants).
    fn is_virtual(&self) -> bool {
        false
    }
}

/// The real clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
    fn sleep_until(
        &self,
        t: DateTime<Utc>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send + '_>> {
        Box::pin(async move {
            let wait = (t - Utc::now()).to_std().unwrap_or_default();
            tokio::time::sleep(wait).await;
            true
        })
    }
}

/// A virtual clock for tests: `sleep_until` jumps to the instant, and stops the server once
/// time would pass `end`.
pub struct ManualClock {
    now: Mutex<DateTime<Utc>>,
    end: DateTime<Utc>,
}

impl ManualClock {
    pub fn new(start: DateTime<Utc>, end: DateTime<Utc>) -> ManualClock {
        ManualClock {
            now: Mutex::new(start),
            end,
        }
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.lock().unwrap_or_else(|e| e.into_inner())
    }
    fn sleep_until(
        &self,
        t: DateTime<Utc>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send + '_>> {
        Box::pin(async move {
            if t > self.end {
                return false;
            }
            let mut now = self.now.lock().unwrap_or_else(|e| e.into_inner());
            if t > *now {
                *now = t;
            }
            true
        })
    }
    fn is_virtual(&self) -> bool {
        true
    }
}

/// How a scheduled run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Succeeded {
        run_id: String,
        kept: u64,
    },
    Failed(String),
    /// Another run of this connector (this or another process) holds its lock.
    Locked,
}

/// One run the server started, for logs and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunEvent {
    pub connector: String,
    pub file: PathBuf,
    /// The clock's time when the run started (virtual in tests).
    pub at: DateTime<Utc>,
    pub outcome: Outcome,
}

/// Settings of one server.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub dir: PathBuf,
    pub server: String,
    pub once: bool,
    /// How often the folder is re-read when nothing is due sooner.
    pub rescan_seconds: i64,
}

/// A connector file as last read.
struct Entry {
    stamp: Option<(SystemTime, u64)>,
    config: Option<Config>,
    /// When the server first saw this file: the anchor of a never-run connector.
    first_seen: DateTime<Utc>,
    /// When the newest run started (from the staging database, then from our own runs).
    last_run: Option<DateTime<Utc>>,
}

/// The connector server.
pub struct Server {
    opts: ServeOptions,
    clock: Arc<dyn Clock>,
    entries: BTreeMap<PathBuf, Entry>,
    running: BTreeMap<PathBuf, tokio::task::AbortHandle>,
    /// Every run started, in order.
    pub events: Arc<Mutex<Vec<RunEvent>>>,
}

impl Server {
    pub fn new(opts: ServeOptions, clock: Arc<dyn Clock>) -> Server {
        Server {
            opts,
            clock,
            entries: BTreeMap::new(),
            running: BTreeMap::new(),
            events: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// Serves until the clock says stop or `shutdown` resolves; `--once` returns after one pass.
    pub async fn run(&mut self, shutdown: impl std::future::Future<Output = ()>) -> Result<()> {
        if !self.opts.dir.is_dir() {
            return Err(Error::Usage(format!(
                "{} is not a folder of connector files (*.toml)",
                self.opts.dir.display()
            )));
        }
        tokio::pin!(shutdown);
        let mut tasks: JoinSet<(PathBuf, RunEvent)> = JoinSet::new();
        loop {
            let now = self.clock.now();
            self.rescan(now);
            for (path, cfg) in self.due(now) {
                self.start(&mut tasks, path, cfg, now);
            }
            if self.opts.once || self.clock.is_virtual() {
                while let Some(done) = tasks.join_next().await {
                    self.finished(done);
                }
                if self.opts.once {
                    return Ok(());
                }
            }
            let wake = self.next_wake(now);
            tokio::select! {
                keep_going = self.clock.sleep_until(wake) => {
                    if !keep_going {
                        break;
                    }
                }
                Some(done) = tasks.join_next(), if !tasks.is_empty() => self.finished(done),
                _ = &mut shutdown => {
                    tracing::warn!(running = tasks.len(), "shutting down: stopping running connectors");
                    tasks.abort_all();
                    while tasks.join_next().await.is_some() {}
                    self.clean_interrupted();
                    return Ok(());
                }
            }
        }
        while let Some(done) = tasks.join_next().await {
            self.finished(done);
        }
        Ok(())
    }

    /// Re-reads the folder: new, changed and removed files.
    fn rescan(&mut self, now: DateTime<Utc>) {
        let mut seen = Vec::new();
        let entries = match std::fs::read_dir(&self.opts.dir) {
            Ok(e) => e,
            Err(e) => {
                tracing::error!(dir = %self.opts.dir.display(), error = %e, "cannot read the connectors folder");
                return;
            }
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().and_then(|e| e.to_str()) != Some("toml") {
                continue;
            }
            seen.push(path.clone());
            let stamp = entry
                .metadata()
                .ok()
                .map(|m| (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len()));
            let known = self.entries.get(&path).map(|e| e.stamp);
            if known == Some(stamp) {
                continue;
            }
            let config = match Config::load(&path) {
                Ok(c) => {
                    tracing::info!(file = %path.display(), connector = %c.connector.name, schedule = %c.schedule.plan.describe(), active = c.connector.active, "connector loaded");
                    Some(c)
                }
                Err(e) => {
                    tracing::error!("skipping {e}");
                    None
                }
            };
            let last_run = config.as_ref().and_then(last_run_started);
            let first_seen = self.entries.get(&path).map(|e| e.first_seen).unwrap_or(now);
            self.entries.insert(
                path,
                Entry {
                    stamp,
                    config,
                    first_seen,
                    last_run,
                },
            );
        }
        let removed: Vec<PathBuf> = self
            .entries
            .keys()
            .filter(|p| !seen.contains(p))
            .cloned()
            .collect();
        for p in removed {
            tracing::info!(file = %p.display(), "connector file removed");
            self.entries.remove(&p);
        }
    }

    /// Active connectors of this server that are due at `now` and not running.
    fn due(&self, now: DateTime<Utc>) -> Vec<(PathBuf, Config)> {
        let mut due = Vec::new();
        for (path, e) in &self.entries {
            let Some(cfg) = &e.config else { continue };
            if !cfg.connector.active || !self.hosts(cfg) || self.running.contains_key(path) {
                continue;
            }
            let is_due = match e.last_run {
                None if self.opts.once => true,
                None => {
                    cfg.schedule
                        .plan
                        .next_after(e.first_seen - chrono::Duration::seconds(1))
                        <= now
                }
                Some(last) => cfg.schedule.plan.next_after(last) <= now,
            };
            if is_due {
                due.push((path.clone(), cfg.clone()));
            }
        }
        due
    }

    /// Whether this server hosts the connector (its `server` names this server).
    fn hosts(&self, cfg: &Config) -> bool {
        cfg.connector.server.eq_ignore_ascii_case(&self.opts.server)
    }

    /// The next instant anything is due, or the rescan interval.
    fn next_wake(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        let mut wake = now + chrono::Duration::seconds(self.opts.rescan_seconds);
        for (path, e) in &self.entries {
            let Some(cfg) = &e.config else { continue };
            if !cfg.connector.active || !self.hosts(cfg) || self.running.contains_key(path) {
                continue;
            }
            let anchor = e
                .last_run
                .unwrap_or(e.first_seen - chrono::Duration::seconds(1))
                .max(now);
            wake = wake.min(cfg.schedule.plan.next_after(anchor));
        }
        wake
    }

    fn start(
        &mut self,
        tasks: &mut JoinSet<(PathBuf, RunEvent)>,
        path: PathBuf,
        cfg: Config,
        now: DateTime<Utc>,
    ) {
        if let Some(e) = self.entries.get_mut(&path) {
            e.last_run = Some(now);
        }
        let name = cfg.connector.name.clone();
        tracing::info!(connector = %name, file = %path.display(), "run starting");
        let p = path.clone();
        let handle = tasks.spawn(async move {
            let outcome = run_locked(&cfg).await;
            let event = RunEvent {
                connector: name,
                file: p.clone(),
                at: now,
                outcome,
            };
            (p, event)
        });
        self.running.insert(path, handle);
    }

    fn finished(&mut self, done: std::result::Result<(PathBuf, RunEvent), tokio::task::JoinError>) {
        let Ok((path, event)) = done else { return };
        self.running.remove(&path);
        match &event.outcome {
            Outcome::Succeeded { run_id, kept } => {
                tracing::info!(connector = %event.connector, %run_id, kept, "run succeeded")
            }
            Outcome::Failed(e) => {
                tracing::error!(connector = %event.connector, error = %e, "run failed; the other connectors go on")
            }
            Outcome::Locked => {
                tracing::warn!(connector = %event.connector, "skipped: another run of this connector holds its lock")
            }
        }
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(event);
    }

    /// After a shutdown: in-progress extracts are never committed, and their partial
    /// directories are kept, as after a kill, so the connector's next run resumes them
    /// (`extract/resume.rs`, within its age limit) instead of fetching everything again. Their
    /// `running` rows are marked failed with that said.
    fn clean_interrupted(&mut self) {
        for path in std::mem::take(&mut self.running).into_keys() {
            let Some(cfg) = self.entries.get(&path).and_then(|e| e.config.clone()) else {
                continue;
            };
            if let Ok(staging) = crate::store::Staging::open(&cfg.pipeline.data_dir) {
                let _ = staging.fail_running(
                    "interrupted: the server shut down; the next run resumes its partial extract",
                );
            }
        }
    }
}

/// Runs one connector while holding the lock in its data directory.
async fn run_locked(cfg: &Config) -> Outcome {
    let _lock = match ConnectorLock::acquire(&cfg.pipeline.data_dir) {
        Ok(Some(l)) => l,
        Ok(None) => return Outcome::Locked,
        Err(e) => return Outcome::Failed(e.to_string()),
    };
    match crate::pipeline::run(cfg, &Progress::hidden(), &ExportFormat::ALL).await {
        Ok(o) => Outcome::Succeeded {
            run_id: o.extracted.run_id,
            kept: o.transformed.kept,
        },
        Err(e) => Outcome::Failed(e.to_string()),
    }
}

/// An exclusive lock on `<data_dir>/.lock`, released when dropped (or when the process dies).
pub struct ConnectorLock {
    _file: File,
}

impl ConnectorLock {
    /// `Ok(None)` when another run holds it.
    pub fn acquire(data_dir: &Path) -> Result<Option<ConnectorLock>> {
        crate::fs::create_private_dir(data_dir)?;
        let path = crate::store::DataDir::new(data_dir).lock();
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
        match file.try_lock() {
            Ok(()) => Ok(Some(ConnectorLock { _file: file })),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => {
                Err(Error::io(format!("locking {}", path.display()), e))
            }
        }
    }
}

/// When the newest recorded run of this connector started.
fn last_run_started(cfg: &Config) -> Option<DateTime<Utc>> {
    // Read-only: status never applies DDL or takes the write lock from a running extract.
    let staging = crate::store::Staging::open_read_only(&cfg.pipeline.data_dir).ok()?;
    let text: Option<String> = staging
        .conn
        .query_row(
            "SELECT strftime(max(started_at), '%Y-%m-%dT%H:%M:%SZ') FROM runs WHERE connector = ?",
            duckdb::params![cfg.connector.name],
            |r| r.get(0),
        )
        .ok()?;
    text.and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
        .map(|t| t.with_timezone(&Utc))
}

/// One row of `status`.
#[derive(Debug, Clone)]
pub struct StatusRow {
    pub file: String,
    pub connector: String,
    pub server: String,
    pub active: bool,
    pub schedule: String,
    pub last_run: String,
    pub next_run: String,
}

/// The `status` table for every connector file in `dir`.
pub fn status(dir: &Path, now: DateTime<Utc>) -> Result<String> {
    let mut rows = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(format!("reading {}", dir.display()), e))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().and_then(|e| e.to_str()) == Some("toml"))
        .collect();
    files.sort();
    for path in files {
        let file = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        match Config::load(&path) {
            Err(e) => rows.push(StatusRow {
                file,
                connector: "(invalid file)".into(),
                server: String::new(),
                active: false,
                schedule: String::new(),
                last_run: e.to_string(),
                next_run: String::new(),
            }),
            Ok(cfg) => {
                let last = last_run_summary(&cfg).unwrap_or_else(|| "never".into());
                let next = if cfg.connector.active {
                    cfg.schedule
                        .plan
                        .next_after(now)
                        .format("%Y-%m-%d %H:%M UTC")
                        .to_string()
                } else {
                    "(inactive)".into()
                };
                rows.push(StatusRow {
                    file,
                    connector: cfg.connector.name.clone(),
                    server: cfg.connector.server.clone(),
                    active: cfg.connector.active,
                    schedule: cfg.schedule.plan.describe(),
                    last_run: last,
                    next_run: next,
                });
            }
        }
    }
    Ok(render_status(&rows))
}

fn last_run_summary(cfg: &Config) -> Option<String> {
    // Read-only: status never applies DDL or takes the write lock from a running extract.
    let staging = crate::store::Staging::open_read_only(&cfg.pipeline.data_dir).ok()?;
    staging
        .conn
        .query_row(
            "SELECT status || ' ' || strftime(started_at, '%Y-%m-%d %H:%M') || ' UTC, ' || coalesce(users_fetched, 0) || ' fetched, '
                    || coalesce(people_kept, 0) || ' kept'
             FROM runs WHERE connector = ? ORDER BY started_at DESC LIMIT 1",
            duckdb::params![cfg.connector.name],
            |r| r.get::<_, String>(0),
        )
        .ok()
}

fn render_status(rows: &[StatusRow]) -> String {
    let header = [
        "file",
        "connector",
        "server",
        "active",
        "schedule",
        "last run",
        "next run",
    ];
    let cells: Vec<[String; 7]> = rows
        .iter()
        .map(|r| {
            [
                r.file.clone(),
                r.connector.clone(),
                r.server.clone(),
                if r.active { "yes".into() } else { "no".into() },
                r.schedule.clone(),
                r.last_run.clone(),
                r.next_run.clone(),
            ]
        })
        .collect();
    let mut widths = header.map(|h| h.chars().count());
    for c in &cells {
        for (i, v) in c.iter().enumerate() {
            widths[i] = widths[i].max(v.chars().count());
        }
    }
    let line = |vals: &[String]| {
        vals.iter()
            .enumerate()
            .map(|(i, v)| format!("{v:<w$}", w = widths[i]))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut out = line(&header.map(String::from));
    out.push('\n');
    for c in &cells {
        out.push_str(&line(c));
        out.push('\n');
    }
    out
}
