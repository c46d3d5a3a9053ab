//! Records Graph listed more than once, counted before the run is committed.
//!
//! Graph's pages are eventually consistent and can repeat a user across page boundaries
//! (and a partitioned walk overlaps its ranges by design); a report can repeat a row. The
//! raw landing keeps every copy as sent (it is the audit trail), and staging keeps one per
//! key: the copy from the latest page (`sql/staging/stg_graph__users.sql`, and the report
//! views in the transform). This module counts what staging will drop, so the manifest and
//! `run_streams` say how many copies there were and which keys' copies differed.
//!
//! Counting runs in DuckDB over the landed Parquet (bounded by `memory_limit_mib`, spilling
//! to `.duckdb-tmp`), not in a hash set in the extract, so its memory does not grow with
//! the tenant.

use std::collections::BTreeMap;
use std::path::Path;

use duckdb::Connection;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::manifest::{DuplicateKey, Duplicates, StreamManifest};
use crate::mapping::{quote_ident, quote_literal};
use crate::streams::Report;

/// Keys whose copies differ, listed in the manifest (the rest are counted).
const EXAMPLES: usize = 5;

/// Fills `duplicates` of every stream with landed files in `dir`.
pub(super) fn count_all(
    cfg: &Config,
    dir: &Path,
    streams: &mut BTreeMap<String, StreamManifest>,
) -> Result<()> {
    let conn = open(cfg)?;
    for (stream, s) in streams.iter_mut() {
        if s.files.is_empty() || s.rows < 2 {
            continue;
        }
        let Some((key, copy)) = key_of(stream, s) else {
            continue;
        };
        let files: Vec<String> = s
            .files
            .iter()
            .map(|f| quote_literal(&dir.join(&f.file).display().to_string()))
            .collect();
        s.duplicates = count(&conn, stream, &files.join(", "), &key, &copy)?;
    }
    Ok(())
}

/// The key expression and the "same copy" expression of a stream, or `None` when its records
/// have no key (organization, subscribed SKUs are small and keyed by nothing a person uses).
fn key_of(stream: &str, s: &StreamManifest) -> Option<(String, String)> {
    if stream == "users" {
        return Some((
            "json_extract_string(record, '$.id')".into(),
            "record".into(),
        ));
    }
    let report = Report::from_stream(stream)?;
    if !s.columns.iter().any(|c| c == report.user_column()) {
        return None;
    }
    let key = quote_ident(report.user_column());
    // A copy is the same when every cell is, surplus cells (`_extra`) included.
    let mut cells: Vec<String> = s.columns.iter().map(|c| quote_ident(c)).collect();
    cells.push(quote_ident(crate::land::EXTRA_COLUMN));
    Some((key, format!("row({})", cells.join(", "))))
}

fn open(cfg: &Config) -> Result<Connection> {
    let fail = |e: duckdb::Error| {
        Error::Internal(format!(
            "counting repeated records with DuckDB (in memory): {e}"
        ))
    };
    let conn = Connection::open_in_memory().map_err(fail)?;
    let tmp = cfg.pipeline.data_dir.join(crate::staging::TEMP_DIR);
    crate::extract::create_private_dir(&tmp)?;
    conn.execute_batch(&format!(
        "SET memory_limit = '{}MiB'; SET temp_directory = {}; SET preserve_insertion_order = false;",
        cfg.pipeline.memory_limit_mib,
        quote_literal(&tmp.display().to_string())
    ))
    .map_err(fail)?;
    Ok(conn)
}

fn count(
    conn: &Connection,
    stream: &str,
    files: &str,
    key: &str,
    copy: &str,
) -> Result<Duplicates> {
    let fail = |e: duckdb::Error| {
        Error::Internal(format!(
            "counting repeated records of the {stream} stream: {e}"
        ))
    };
    conn.execute_batch(&format!(
        "CREATE OR REPLACE TEMP TABLE repeated AS
         SELECT {key} AS k, count(*) AS copies, count(DISTINCT {copy}) AS variants,
                min(_page) AS first_page, max(_page) AS last_page,
                min(_row) AS first_row, max(_row) AS last_row
         FROM read_parquet([{files}])
         WHERE {key} IS NOT NULL AND trim({key}) <> ''
         GROUP BY ALL HAVING count(*) > 1;"
    ))
    .map_err(fail)?;
    let (copies, changed): (i64, i64) = conn
        .query_row(
            "SELECT coalesce(sum(copies - 1), 0)::BIGINT, count(*) FILTER (WHERE variants > 1)
             FROM repeated",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .map_err(fail)?;
    let mut stmt = conn
        .prepare(&format!(
            "SELECT k, first_page, last_page, first_row, last_row FROM repeated
             WHERE variants > 1 ORDER BY k LIMIT {EXAMPLES}"
        ))
        .map_err(fail)?;
    let examples = stmt
        .query_map([], |r| {
            Ok(DuplicateKey {
                key: r.get(0)?,
                first_page: r.get::<_, i64>(1)? as u64,
                last_page: r.get::<_, i64>(2)? as u64,
                first_row: r.get::<_, i64>(3)? as u64,
                last_row: r.get::<_, i64>(4)? as u64,
            })
        })
        .map_err(fail)?
        .collect::<duckdb::Result<Vec<_>>>()
        .map_err(fail)?;
    conn.execute_batch("DROP TABLE repeated").map_err(fail)?;
    Ok(Duplicates {
        copies: copies as u64,
        changed: changed as u64,
        examples,
    })
}
