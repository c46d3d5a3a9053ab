//! The staging database `data/staging.duckdb`: opened with the idempotent DDL of
//! `sql/meta/`, and the run bookkeeping every stage writes (a run is a row, `running`
//! first, `succeeded` only once its data is durable).

use std::path::{Path, PathBuf};

use arrow::array::{Array, AsArray};
use chrono::{DateTime, Utc};
use duckdb::{AccessMode, Config as DuckConfig, Connection, params};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::manifest::RunManifest;

/// Idempotent DDL, applied on every open, in order.
pub const META_SQL: &[(&str, &str)] = &[
    (
        "meta/001_runs.sql",
        include_str!("../sql/meta/001_runs.sql"),
    ),
    (
        "meta/002_macros.sql",
        include_str!("../sql/meta/002_macros.sql"),
    ),
    (
        "meta/003_report.sql",
        include_str!("../sql/meta/003_report.sql"),
    ),
    (
        "meta/004_incremental.sql",
        include_str!("../sql/meta/004_incremental.sql"),
    ),
];

pub use crate::store::data_dir::{DB_FILE, TEMP_DIR};

/// An open staging database.
pub struct Staging {
    pub conn: Connection,
    pub path: PathBuf,
}

impl Staging {
    /// Opens (creating if needed) `<data_dir>/staging.duckdb` and applies the meta DDL.
    pub fn open(data_dir: &Path) -> Result<Staging> {
        crate::fs::create_private_dir(data_dir)?;
        let path = data_dir.join(DB_FILE);
        let conn = Connection::open(&path).map_err(|e| db_error(&path, "opening", e))?;
        for (name, sql) in META_SQL {
            conn.execute_batch(sql).map_err(|e| {
                Error::Internal(format!("applying sql/{name} to {}: {e}", path.display()))
            })?;
        }
        Ok(Staging { conn, path })
    }

    /// Caps DuckDB's memory at `mib` and lets it spill to `<data_dir>/.duckdb-tmp` beyond:
    /// transform and load then need the same memory at any tenant size (DuckDB's own default,
    /// 80 % of RAM, grows with the tenant until the machine runs out).
    pub fn limit_memory(&self, mib: u64) -> Result<()> {
        let dir = self.path.with_file_name(TEMP_DIR);
        crate::fs::create_private_dir(&dir)?;
        self.conn
            .execute_batch(&format!(
                "SET memory_limit = '{mib}MiB'; SET temp_directory = {};",
                crate::sql::quote_literal(&dir.display().to_string())
            ))
            .map_err(|e| db_error(&self.path, "setting the memory limit", e))
    }

    /// Records the start of an extract: the run row, status `running`.
    pub fn begin_extract(
        &self,
        cfg: &Config,
        run_id: &str,
        started_at: DateTime<Utc>,
    ) -> Result<()> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO runs (run_id, connector, server, tenant_id, status, extract_status,
                     started_at, run_date, date_filter_days, report_period, config_fingerprint)
                 VALUES (?, ?, ?, ?, 'running', 'running', CAST(? AS TIMESTAMP), CAST(? AS DATE), ?, ?, ?)",
                params![
                    run_id,
                    cfg.connector.name,
                    cfg.connector.server,
                    cfg.tenant.tenant_id,
                    started_at.naive_utc().to_string(),
                    started_at.date_naive().to_string(),
                    cfg.date_filter_days,
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
                "UPDATE runs SET extract_status = 'succeeded', status = 'running', extract_seconds = ?,
                     users_fetched = ?, requests = ?, retries = ?, throttled = ?, waited_ms = ?,
                     stalled = ?, stalled_ms = ?,
                     concealed_names = ?, warnings = ?, finished_at = CAST(? AS TIMESTAMP)
                 WHERE run_id = ?",
                params![
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

    /// Marks a run failed at `stage`, keeping the error text for `runs`.
    pub fn fail(&self, run_id: &str, stage: &str, error: &str) {
        let column = match stage {
            "extract" => "extract_status",
            "transform" => "transform_status",
            _ => "load_status",
        };
        let sql = format!(
            "UPDATE runs SET status = 'failed', {column} = 'failed', error = ?, finished_at = CAST(? AS TIMESTAMP) WHERE run_id = ?"
        );
        if let Err(e) = self.conn.execute(
            &sql,
            params![error, Utc::now().naive_utc().to_string(), run_id],
        ) {
            tracing::warn!(error = %e, "could not record the failure in the staging database");
        }
    }

    /// Whether a table (or view) exists.
    pub fn table_exists(&self, name: &str) -> Result<bool> {
        let n: i64 = self
            .conn
            .query_row(
                "SELECT count(*) FROM duckdb_tables() WHERE table_name = ? AND NOT temporary",
                params![name],
                |r| r.get(0),
            )
            .map_err(|e| db_error(&self.path, "inspecting tables", e))?;
        Ok(n > 0)
    }

    /// Column names and types of a table, in order.
    pub fn columns(&self, table: &str) -> Result<Vec<(String, String)>> {
        let mut stmt = self
            .conn
            .prepare("SELECT column_name, data_type FROM duckdb_columns() WHERE table_name = ? ORDER BY column_index")
            .map_err(|e| db_error(&self.path, "inspecting columns", e))?;
        let rows = stmt
            .query_map(params![table], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })
            .and_then(|rows| rows.collect::<duckdb::Result<Vec<_>>>())
            .map_err(|e| db_error(&self.path, "inspecting columns", e))?;
        Ok(rows)
    }

    /// Streams `sql`'s rows as text (every column cast to VARCHAR, NULL as `None`) into `row`
    /// in Arrow batches, so no result is ever held whole. `row` returns `Ok(false)` to stop.
    pub fn for_each_text_row(
        &self,
        sql: &str,
        doing: &str,
        mut row: impl FnMut(&[Option<&str>]) -> Result<bool>,
    ) -> Result<()> {
        let fail = |e| db_error(&self.path, doing, e);
        let mut stmt = self.conn.prepare(sql).map_err(fail)?;
        for batch in stmt.stream_arrow([]).map_err(fail)? {
            let batch = batch.map_err(fail)?;
            let arrays = batch
                .columns()
                .iter()
                .map(|c| arrow::compute::cast(c, &arrow::datatypes::DataType::Utf8))
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| Error::Internal(format!("{doing} in {}: {e}", self.path.display())))?;
            let columns: Vec<_> = arrays.iter().map(|c| c.as_string::<i32>()).collect();
            let mut cells: Vec<Option<&str>> = Vec::with_capacity(columns.len());
            for i in 0..batch.num_rows() {
                cells.clear();
                cells.extend(columns.iter().map(|c| c.is_valid(i).then(|| c.value(i))));
                if !row(&cells)? {
                    return Ok(());
                }
            }
        }
        Ok(())
    }
}

/// The fix for DuckDB errors an admin can act on ("" for the rest).
pub fn hint_for(text: &str) -> &'static str {
    if text.contains("Out of Memory") {
        " (DuckDB reached [pipeline] memory_limit_mib: raise it in the connector file, or free disk space for data_dir/.duckdb-tmp where it spills)"
    } else if text.contains("lock") {
        " (another process has the staging database open: close the duckdb CLI or the other m365-connector, then retry)"
    } else {
        ""
    }
}

/// A DuckDB failure with the database file named.
pub fn db_error(path: &Path, doing: &str, e: duckdb::Error) -> Error {
    let text = e.to_string();
    let hint = hint_for(&text);
    Error::Internal(format!("{doing} in {}: {text}{hint}", path.display()))
}

/// Opens `<data_dir>/staging.duckdb` read-only (it must exist); returns it and its path.
pub fn open_read_only(data_dir: &Path) -> Result<(Connection, PathBuf)> {
    let path = data_dir.join(DB_FILE);
    if !path.is_file() {
        return Err(Error::Usage(format!(
            "no staging database at {} yet: run `m365-connector extract` (or `run`) first",
            path.display()
        )));
    }
    let cfg = DuckConfig::default()
        .access_mode(AccessMode::ReadOnly)
        .map_err(|e| Error::Internal(e.to_string()))?;
    let conn =
        Connection::open_with_flags(&path, cfg).map_err(|e| db_error(&path, "opening", e))?;
    Ok((conn, path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_memory_names_the_knob_and_the_spill_folder() {
        let hint = hint_for("Out of Memory Error: failed to pin block of size 256.0 KiB");
        assert!(hint.contains("[pipeline] memory_limit_mib"), "{hint}");
        assert!(hint.contains(".duckdb-tmp"), "{hint}");
        assert!(hint_for("Conflicting lock is held").contains("another process"));
        assert_eq!(hint_for("Binder Error: column x"), "");
    }
}
