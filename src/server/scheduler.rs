//! The scheduler: hosts every connector file in the folder whose `server` matches, runs each
//! *active* one at its scheduled times, and re-reads the folder on every wake, so added,
//! changed and removed files take effect without a restart. A file that does not parse is
//! reported once (per change) and skipped. A run holds its connector's lock (`lock.rs`), so
//! the same connector never runs twice at once, whether in this process or in a second
//! server. One connector failing is logged and recorded in its staging database; the others
//! go on.
//!
//! When is a connector due? At each instant of its schedule after its last run (the newest
//! row in its `runs` table). A connector that never ran waits for its first scheduled instant
//! after the server first saw it; `serve --once` (for cron / Task Scheduler) runs it at once.
//! Missed instants (server down, a long run) are caught up by one run, not one per instant.
//!
//! Besides its schedule, the loop takes [`Request`]s: Run now from the status page (queued
//! exactly like a scheduled run, through the same lock) and a rescan (SIGHUP). After every
//! change it publishes a [`Snapshot`] to the [`Board`] the web pages read.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

use super::board::{BadFile, Board, Card, History, Snapshot, db_stamp, read_history};
use super::clock::Clock;
use super::lock::ConnectorLock;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::load::ExportFormat;
use crate::output::Progress;

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
    /// On shutdown, how long running connectors may take to finish before they are stopped
    /// (their extracts then resume from their checkpoints on the next run).
    pub grace_seconds: u64,
}

impl ServeOptions {
    pub fn new(dir: PathBuf, server: String) -> ServeOptions {
        ServeOptions {
            dir,
            server,
            once: false,
            rescan_seconds: 30,
            grace_seconds: 30,
        }
    }
}

/// What the status page (or a signal) asks of the scheduler.
#[derive(Debug)]
pub enum Request {
    /// Run this connector now, as if it were due.
    RunNow {
        connector: String,
        reply: oneshot::Sender<RunNow>,
    },
    /// Re-read the folder now (SIGHUP).
    Rescan,
}

/// The answer to Run now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunNow {
    Started,
    /// It is running already (in this process).
    Busy,
    Inactive,
    /// Its `server` names another server.
    NotHosted,
    Unknown,
    Stopping,
}

/// A connector file as last read.
struct Entry {
    stamp: Option<(SystemTime, u64)>,
    /// The file, or why it could not be used.
    config: std::result::Result<Config, String>,
    /// When the server first saw this file: the anchor of a never-run connector.
    first_seen: DateTime<Utc>,
    /// When the newest run started (from the staging database, then from our own runs).
    last_run: Option<DateTime<Utc>>,
    /// Its runs as last read from its staging database.
    history: History,
}

/// The connector server's scheduler.
pub struct Server {
    opts: ServeOptions,
    clock: Arc<dyn Clock>,
    board: Arc<Board>,
    entries: BTreeMap<PathBuf, Entry>,
    /// Running connectors by file: the task, and when it started (the clock's time).
    running: BTreeMap<PathBuf, (tokio::task::AbortHandle, DateTime<Utc>)>,
    sender: mpsc::Sender<Request>,
    receiver: Option<mpsc::Receiver<Request>>,
    /// Every run started, in order.
    pub events: Arc<Mutex<Vec<RunEvent>>>,
}

impl Server {
    pub fn new(opts: ServeOptions, clock: Arc<dyn Clock>) -> Server {
        let (sender, receiver) = mpsc::channel(64);
        Server {
            board: Arc::new(Board::default()),
            opts,
            clock,
            entries: BTreeMap::new(),
            running: BTreeMap::new(),
            sender,
            receiver: Some(receiver),
            events: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// What the web pages read.
    pub fn board(&self) -> Arc<Board> {
        Arc::clone(&self.board)
    }

    /// Where Run now and rescans are asked for.
    pub fn requests(&self) -> mpsc::Sender<Request> {
        self.sender.clone()
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
        let mut receiver = self
            .receiver
            .take()
            .ok_or_else(|| Error::Internal("the server's loop was started twice".into()))?;
        let mut tasks: JoinSet<(PathBuf, RunEvent)> = JoinSet::new();
        let mut announced = false;
        loop {
            let now = self.clock.now();
            self.beat();
            self.rescan(now);
            for (path, cfg) in self.due(now) {
                self.start(&mut tasks, path, cfg, now);
            }
            self.publish(now);
            if !announced {
                announced = true;
                self.board.set_ready(true);
                super::systemd::ready();
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
                Some(request) = receiver.recv() => self.answer(request, &mut tasks),
                _ = &mut shutdown => {
                    self.shut_down(&mut tasks, &mut receiver).await;
                    return Ok(());
                }
            }
        }
        while let Some(done) = tasks.join_next().await {
            self.finished(done);
        }
        self.publish(self.clock.now());
        Ok(())
    }

    /// The loop is alive: `/healthz` and systemd's watchdog hear of it.
    fn beat(&self) {
        self.board.beat(Utc::now());
        super::systemd::watchdog();
    }

    /// Stops taking runs, gives the running ones `grace_seconds` to finish, and stops the
    /// rest: an interrupted extract is never committed and its partial directory is kept, so
    /// the connector's next run resumes it from its checkpoints.
    async fn shut_down(
        &mut self,
        tasks: &mut JoinSet<(PathBuf, RunEvent)>,
        receiver: &mut mpsc::Receiver<Request>,
    ) {
        self.board.set_stopping();
        receiver.close();
        while let Ok(request) = receiver.try_recv() {
            if let Request::RunNow { reply, .. } = request {
                let _ = reply.send(RunNow::Stopping);
            }
        }
        if !tasks.is_empty() {
            tracing::warn!(
                running = tasks.len(),
                grace_seconds = self.opts.grace_seconds,
                "shutting down: running connectors may finish within the grace period; the others are stopped and resume on their next run"
            );
            let grace = tokio::time::sleep(Duration::from_secs(self.opts.grace_seconds));
            tokio::pin!(grace);
            loop {
                tokio::select! {
                    done = tasks.join_next() => match done {
                        Some(done) => self.finished(done),
                        None => break,
                    },
                    _ = &mut grace => break,
                }
            }
            if !tasks.is_empty() {
                tasks.abort_all();
                while tasks.join_next().await.is_some() {}
                self.clean_interrupted();
            }
        }
        self.publish(self.clock.now());
    }

    fn answer(&mut self, request: Request, tasks: &mut JoinSet<(PathBuf, RunEvent)>) {
        match request {
            Request::Rescan => {
                tracing::info!(dir = %self.opts.dir.display(), "rescanning the connectors folder");
                let now = self.clock.now();
                self.rescan(now);
                self.publish(now);
            }
            Request::RunNow { connector, reply } => {
                let now = self.clock.now();
                let answer = self.run_now(&connector, tasks, now);
                tracing::info!(%connector, answer = ?answer, "run now asked");
                self.publish(now);
                let _ = reply.send(answer);
            }
        }
    }

    fn run_now(
        &mut self,
        name: &str,
        tasks: &mut JoinSet<(PathBuf, RunEvent)>,
        now: DateTime<Utc>,
    ) -> RunNow {
        let found = self.entries.iter().find_map(|(path, e)| match &e.config {
            Ok(cfg) if cfg.connector.name == name => Some((path.clone(), cfg.clone())),
            _ => None,
        });
        let Some((path, cfg)) = found else {
            return RunNow::Unknown;
        };
        if !self.hosts(&cfg) {
            RunNow::NotHosted
        } else if !cfg.connector.active {
            RunNow::Inactive
        } else if self.running.contains_key(&path) {
            RunNow::Busy
        } else {
            self.start(tasks, path, cfg, now);
            RunNow::Started
        }
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
                    Ok(c)
                }
                Err(e) => {
                    tracing::error!("skipping {e}");
                    Err(e.to_string())
                }
            };
            let last_run = config.as_ref().ok().and_then(last_run_started);
            let first_seen = self.entries.get(&path).map(|e| e.first_seen).unwrap_or(now);
            self.entries.insert(
                path,
                Entry {
                    stamp,
                    config,
                    first_seen,
                    last_run,
                    history: History::default(),
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
            let Ok(cfg) = &e.config else { continue };
            if !cfg.connector.active || !self.hosts(cfg) || self.running.contains_key(path) {
                continue;
            }
            if self.next_run(e, cfg).is_some_and(|next| next <= now)
                || (self.opts.once && e.last_run.is_none())
            {
                due.push((path.clone(), cfg.clone()));
            }
        }
        due
    }

    /// The next scheduled instant of a connector (active or not), from its last run or, when
    /// it never ran, from when the server first saw it.
    fn next_run(&self, e: &Entry, cfg: &Config) -> Option<DateTime<Utc>> {
        let anchor = e
            .last_run
            .unwrap_or(e.first_seen - chrono::Duration::seconds(1));
        let next = cfg.schedule.plan.next_after(anchor);
        (next != DateTime::<Utc>::MAX_UTC).then_some(next)
    }

    /// Whether this server hosts the connector (its `server` names this server).
    fn hosts(&self, cfg: &Config) -> bool {
        cfg.connector.server.eq_ignore_ascii_case(&self.opts.server)
    }

    /// The next instant anything is due, or the rescan interval.
    fn next_wake(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        let mut wake = now + chrono::Duration::seconds(self.opts.rescan_seconds);
        if let Some(beat) = super::systemd::watchdog_interval()
            && !self.clock.is_virtual()
        {
            wake = wake.min(now + chrono::Duration::from_std(beat).unwrap_or_default());
        }
        for (path, e) in &self.entries {
            let Ok(cfg) = &e.config else { continue };
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
        self.running.insert(path, (handle, now));
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
        self.publish(self.clock.now());
    }

    /// After a shutdown: in-progress extracts are never committed, and their partial
    /// directories are kept, as after a kill, so the connector's next run resumes them
    /// (`extract/resume.rs`, within its age limit) instead of fetching everything again. Their
    /// `running` rows are marked failed with that said.
    fn clean_interrupted(&mut self) {
        for path in std::mem::take(&mut self.running).into_keys() {
            let Some(Ok(cfg)) = self.entries.get(&path).map(|e| e.config.clone()) else {
                continue;
            };
            if let Ok(staging) = crate::store::Staging::open(&cfg.pipeline.data_dir) {
                let _ = staging.fail_running(
                    "interrupted: the server shut down; the next run resumes its partial extract",
                );
            }
        }
    }

    /// Publishes the board: every file, what runs, and each connector's runs, read again from
    /// its database only when that changed and it is not running here.
    fn publish(&mut self, now: DateTime<Utc>) {
        let mut snapshot = Snapshot {
            server: self.opts.server.clone(),
            scanned_at: Some(now),
            ..Snapshot::default()
        };
        let paths: Vec<PathBuf> = self.entries.keys().cloned().collect();
        for path in paths {
            let running_since = self.running.get(&path).map(|(_, at)| *at);
            let Some(e) = self.entries.get(&path) else {
                continue;
            };
            let file = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let cfg = match &e.config {
                Ok(cfg) => cfg.clone(),
                Err(error) => {
                    snapshot.bad_files.push(BadFile {
                        file,
                        error: error.clone(),
                    });
                    continue;
                }
            };
            let next_run = (cfg.connector.active && self.hosts(&cfg))
                .then(|| self.next_run(e, &cfg))
                .flatten();
            let hosted = self.hosts(&cfg);
            if running_since.is_none() {
                self.refresh_history(&path, &cfg);
            }
            let Some(e) = self.entries.get(&path) else {
                continue;
            };
            snapshot.connectors.push(Card {
                name: cfg.connector.name.clone(),
                file,
                path: path.clone(),
                server: cfg.connector.server.clone(),
                hosted,
                active: cfg.connector.active,
                schedule: cfg.schedule.plan.describe(),
                time_zone: cfg.schedule.plan.timezone,
                next_run,
                running_since,
                data_dir: cfg.pipeline.data_dir.clone(),
                history: e.history.clone(),
                config: Arc::new(cfg),
            });
        }
        self.board.publish(snapshot);
    }

    fn refresh_history(&mut self, path: &PathBuf, cfg: &Config) {
        let Some(e) = self.entries.get_mut(path) else {
            return;
        };
        let stamp = db_stamp(&cfg.pipeline.data_dir);
        if stamp.is_some() && stamp == e.history.stamp {
            return;
        }
        match read_history(&cfg.pipeline.data_dir, &cfg.connector.name) {
            Ok(h) => e.history = h,
            // Another process holds the database (a run started from a shell): keep what
            // was read before, and say why it may be old.
            Err(err) => e.history.read_error = Some(err.to_string()),
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
