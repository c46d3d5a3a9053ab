//! The run tables (`runs`, `run_streams`, `landed_files`, `run_steps`, `exports`; declared
//! in `sql/meta/`): this file is their only writer, so what a status means and when it
//! changes is read in one place. A run is a row, `running` first, `succeeded` only once its
//! data is durable; a failure keeps its error text.

use std::path::Path;

use chrono::{DateTime, Utc};
use duckdb::params;

use super::db::{Staging, db_error};
use crate::config::Config;
use crate::error::Result;
use crate::manifest::{RunManifest, Warning};

/// A stage of the pipeline, as the run tables name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Extract,
    Transform,
    Load,
}

impl Stage {
    pub fn name(self) -> &'static str {
        match self {
            Stage::Extract => "extract",
            Stage::Transform => "transform",
            Stage::Load => "load",
        }
    }

    /// The `runs` column holding this stage's status.
    fn status_column(self) -> &'static str {
        match self {
            Stage::Extract => "extract_status",
            Stage::Transform => "transform_status",
            Stage::Load => "load_status",
        }
    }
}

/// The status of a run or of one of its stages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Running,
    Succeeded,
    Failed,
}

impl Status {
    pub fn name(self) -> &'static str {
        match self {
            Status::Running => "running",
            Status::Succeeded => "succeeded",
            Status::Failed => "failed",
        }
    }
}

/// One timed step of a stage (`run_steps`).
#[derive(Debug, Clone)]
pub struct Step {
    pub name: String,
    pub rows: u64,
    pub seconds: f64,
}

/// What a transform of a run produced, for `runs` and `run_steps`.
#[derive(Debug)]
pub struct TransformRecord<'a> {
    pub manifest: &'a RunManifest,
    pub date_filter_days: u32,
    /// Users the run covers (with incremental users: the whole snapshot).
    pub users: u64,
    pub kept: u64,
    pub filtered_out: u64,
    pub rejected: u64,
    pub concealed: bool,
    pub seconds: f64,
    pub mapping_sha256: &'a str,
    pub sql_sha256: &'a str,
    /// Whether users came from the incremental snapshot (then `users` replaces the count of
    /// changes the extract fetched).
    pub from_snapshot: bool,
    pub steps: &'a [Step],
    /// All of the run's warnings (the extract's and the transform's), in order.
    pub warnings: &'a [Warning],
}

/// One file of an export (`exports`).
#[derive(Debug)]
pub struct ExportRow<'a> {
    pub file: &'a str,
    pub format: &'a str,
    pub rows: u64,
    pub bytes: u64,
    pub sha256: &'a str,
}

impl Staging {
    /// Records the start of an extract: the run row, status `running`. The date filter is not
    /// the extract's: the transform records the one it applied.
    pub fn begin_extract(
        &self,
        cfg: &Config,
        run_id: &str,
        started_at: DateTime<Utc>,
    ) -> Result<()> {
        let running = Status::Running.name();
        self.conn
            .execute(
                "INSERT OR REPLACE INTO runs (run_id, connector, server, tenant_id, status, extract_status,
                     started_at, run_date, report_period, config_fingerprint)
                 VALUES (?, ?, ?, ?, ?, ?, CAST(? AS TIMESTAMP), CAST(? AS DATE), ?, ?)",
                params![
                    run_id,
                    cfg.connector.name,
                    cfg.connector.server,
                    cfg.tenant.tenant_id,
                    running,
                    running,
                    started_at.naive_utc().to_string(),
                    started_at.date_naive().to_string(),
                    cfg.pipeline.report_period,
                    cfg.fingerprint(),
                ],
            )
            .map_err(|e| db_error(&self.path, "recording the run", e))?;
        Ok(())
    }

    /// Records a committed extract: figures per stream and the landed files.
    pub fn finish_extract(&self, m: &RunManifest, seconds: f64) -> Result<()> {
        let tx = || -> duckdb::Result<()> {
            self.conn.execute_batch("BEGIN TRANSACTION")?;
            self.conn.execute(
                "UPDATE runs SET extract_status = ?, status = ?, extract_seconds = ?,
                     users_fetched = ?, requests = ?, retries = ?, throttled = ?, waited_ms = ?,
                     stalled = ?, stalled_ms = ?,
                     concealed_names = ?, warnings = ?, finished_at = CAST(? AS TIMESTAMP)
                 WHERE run_id = ?",
                params![
                    Status::Succeeded.name(),
                    Status::Running.name(),
                    seconds,
                    m.users(),
                    m.requests,
                    m.retries,
                    m.throttled,
                    m.waited_ms,
                    m.stalled,
                    m.stalled_ms,
                    m.concealment.concealed(),
                    serde_json::to_string(&m.warnings).unwrap_or_else(|_| "[]".into()),
                    m.finished_at.naive_utc().to_string(),
                    m.run_id,
                ],
            )?;
            self.conn.execute(
                "DELETE FROM run_streams WHERE run_id = ?",
                params![m.run_id],
            )?;
            self.conn.execute(
                "DELETE FROM landed_files WHERE run_id = ?",
                params![m.run_id],
            )?;
            for (stream, s) in &m.streams {
                self.conn.execute(
                    "INSERT INTO run_streams (run_id, stream, rows, pages, requests, retries,
                         throttled, waited_ms, stalled, stalled_ms, duplicates, duplicates_changed)
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    params![
                        m.run_id,
                        stream,
                        s.rows,
                        s.pages,
                        s.calls.requests,
                        s.calls.retries,
                        s.calls.throttled,
                        s.calls.waited_ms,
                        s.calls.stalled,
                        s.calls.stalled_ms,
                        s.duplicates.copies,
                        s.duplicates.changed
                    ],
                )?;
                for f in &s.files {
                    self.conn.execute(
                        "INSERT INTO landed_files VALUES (?, ?, ?, ?, ?, ?)",
                        params![m.run_id, stream, f.file, f.rows, f.bytes, f.sha256],
                    )?;
                }
            }
            self.conn.execute_batch("COMMIT")
        };
        tx().map_err(|e| {
            let _ = self.conn.execute_batch("ROLLBACK");
            db_error(&self.path, "recording the extract", e)
        })
    }

    /// Marks a run failed at `stage`, keeping the error text for `runs`. Best effort: the
    /// failure being reported matters more than its record.
    pub fn fail(&self, run_id: &str, stage: Stage, error: &str) {
        let sql = format!(
            "UPDATE runs SET status = ?1, {column} = ?1, error = ?2, finished_at = CAST(?3 AS TIMESTAMP) WHERE run_id = ?4",
            column = stage.status_column()
        );
        if let Err(e) = self.conn.execute(
            &sql,
            params![
                Status::Failed.name(),
                error,
                Utc::now().naive_utc().to_string(),
                run_id
            ],
        ) {
            tracing::warn!(error = %e, "could not record the failure in the staging database");
        }
    }

    /// Extracts still `running` whose partial directory will never finish (all but `except`,
    /// the one being resumed) are failed with `reason`.
    pub fn fail_interrupted_extracts(&self, except: Option<&str>, reason: &str) -> Result<()> {
        self.conn
            .execute(
                "UPDATE runs SET status = ?1, extract_status = ?1, error = ?2
                 WHERE extract_status = ?3 AND run_id IS DISTINCT FROM ?4",
                params![
                    Status::Failed.name(),
                    reason,
                    Status::Running.name(),
                    except
                ],
            )
            .map_err(|e| db_error(&self.path, "closing interrupted runs", e))?;
        Ok(())
    }

    /// Every run still `running` is failed with `reason` (serve's shutdown: its partial
    /// extract stays on disk for the next run to resume).
    pub fn fail_running(&self, reason: &str) -> Result<()> {
        self.conn
            .execute(
                "UPDATE runs SET status = ?1, error = ?2 WHERE status = ?3",
                params![Status::Failed.name(), reason, Status::Running.name()],
            )
            .map_err(|e| db_error(&self.path, "closing interrupted runs", e))?;
        Ok(())
    }

    /// Records a transform inside the caller's transaction: its steps, and the run's figures
    /// (a run extracted before the database existed, or copied in, gets its row now).
    pub fn record_transform(&self, t: &TransformRecord) -> Result<()> {
        let fail = |e| db_error(&self.path, "recording the transform", e);
        let m = t.manifest;
        self.record_steps(&m.run_id, Stage::Transform, t.steps)?;
        self.record_warnings(&m.run_id, t.warnings)?;
        let succeeded = Status::Succeeded.name();
        let updated = self
            .conn
            .execute(
                "UPDATE runs SET transform_status = ?, transform_seconds = ?, people_kept = ?, filtered_out = ?,
                     rejected = ?, mapping_sha256 = ?, sql_sha256 = ?, concealed_names = ?, date_filter_days = ?
                 WHERE run_id = ?",
                params![
                    succeeded,
                    t.seconds,
                    t.kept,
                    t.filtered_out,
                    t.rejected,
                    t.mapping_sha256,
                    t.sql_sha256,
                    t.concealed,
                    t.date_filter_days,
                    m.run_id
                ],
            )
            .map_err(fail)?;
        if updated == 0 {
            self.conn
                .execute(
                    "INSERT INTO runs (run_id, connector, server, tenant_id, status, extract_status, transform_status,
                         started_at, run_date, date_filter_days, report_period, users_fetched, people_kept, filtered_out,
                         rejected, concealed_names, transform_seconds, mapping_sha256, sql_sha256, warnings)
                     VALUES (?, ?, ?, ?, ?, ?, ?, CAST(? AS TIMESTAMP), CAST(? AS DATE), ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    params![
                        m.run_id,
                        m.connector,
                        m.server,
                        m.tenant_id,
                        Status::Running.name(),
                        succeeded,
                        succeeded,
                        m.started_at.naive_utc().to_string(),
                        m.run_date.to_string(),
                        t.date_filter_days,
                        m.report_period,
                        t.users,
                        t.kept,
                        t.filtered_out,
                        t.rejected,
                        t.concealed,
                        t.seconds,
                        t.mapping_sha256,
                        t.sql_sha256,
                        serde_json::to_string(&m.warnings).unwrap_or_else(|_| "[]".into()),
                    ],
                )
                .map_err(fail)?;
        }
        if t.from_snapshot {
            // The users this run covers: the snapshot, not only the changes fetched (those are
            // in run_streams and run_users_sync), so the report's funnel adds up.
            self.conn
                .execute(
                    "UPDATE runs SET users_fetched = ? WHERE run_id = ?",
                    params![t.users, m.run_id],
                )
                .map_err(fail)?;
        }
        Ok(())
    }

    /// Replaces the run's warnings.
    fn record_warnings(&self, run_id: &str, warnings: &[Warning]) -> Result<()> {
        let fail = |e| db_error(&self.path, "recording the run's warnings", e);
        self.conn
            .execute("DELETE FROM run_warnings WHERE run_id = ?", params![run_id])
            .map_err(fail)?;
        for (i, w) in warnings.iter().enumerate() {
            self.conn
                .execute(
                    "INSERT INTO run_warnings VALUES (?, ?, ?, ?, ?)",
                    params![run_id, i as i32 + 1, w.code, w.message, w.fix],
                )
                .map_err(fail)?;
        }
        Ok(())
    }

    /// The warnings recorded for a transformed run, in order.
    pub fn warnings(&self, run_id: &str) -> Result<Vec<Warning>> {
        let fail = |e| db_error(&self.path, "reading the run's warnings", e);
        let mut stmt = self
            .conn
            .prepare("SELECT code, message, fix FROM run_warnings WHERE run_id = ? ORDER BY seq")
            .map_err(fail)?;
        stmt.query_map(params![run_id], |r| {
            Ok(Warning {
                code: r.get(0)?,
                message: r.get(1)?,
                fix: r.get(2)?,
            })
        })
        .and_then(|rows| rows.collect::<duckdb::Result<Vec<_>>>())
        .map_err(fail)
    }

    /// Replaces a stage's steps of a run, numbered in order.
    fn record_steps(&self, run_id: &str, stage: Stage, steps: &[Step]) -> Result<()> {
        let fail = |e| db_error(&self.path, "recording steps", e);
        self.conn
            .execute(
                "DELETE FROM run_steps WHERE run_id = ? AND stage = ?",
                params![run_id, stage.name()],
            )
            .map_err(fail)?;
        for (i, s) in steps.iter().enumerate() {
            self.conn
                .execute(
                    "INSERT INTO run_steps VALUES (?, ?, ?, ?, ?, ?, now()::TIMESTAMP)",
                    params![
                        run_id,
                        i as i32 + 1,
                        stage.name(),
                        s.name,
                        s.rows,
                        s.seconds
                    ],
                )
                .map_err(fail)?;
        }
        Ok(())
    }

    /// Records a finished export: its files, and the run as succeeded unless an earlier
    /// stage of it failed.
    pub fn record_load(
        &self,
        run_id: &str,
        dir: &Path,
        files: &[ExportRow],
        seconds: f64,
    ) -> Result<()> {
        let run = || -> duckdb::Result<()> {
            self.conn
                .execute("DELETE FROM exports WHERE run_id = ?", params![run_id])?;
            for f in files {
                self.conn.execute(
                    "INSERT INTO exports VALUES (?, now()::TIMESTAMP, ?, ?, ?, ?, ?, ?)",
                    params![
                        run_id,
                        dir.display().to_string(),
                        f.file,
                        f.format,
                        f.rows,
                        f.bytes,
                        f.sha256
                    ],
                )?;
            }
            self.conn.execute(
                "UPDATE runs SET load_status = ?1, load_seconds = ?2,
                     status = CASE WHEN extract_status = ?3 OR transform_status = ?3 THEN status ELSE ?1 END,
                     finished_at = now()::TIMESTAMP
                 WHERE run_id = ?4",
                params![
                    Status::Succeeded.name(),
                    seconds,
                    Status::Failed.name(),
                    run_id
                ],
            )?;
            Ok(())
        };
        run().map_err(|e| db_error(&self.path, "recording the export", e))
    }
}
