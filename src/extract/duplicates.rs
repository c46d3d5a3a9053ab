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
use crate::sql::{quote_ident, quote_literal};
use crate::streams::{Report, Stream};

/// Keys whose copies differ, listed in the manifest (the rest are counted).
const EXAMPLES: usize = 5;

/// Fills `duplicates` of every stream with landed files in `dir` that is not counted yet
/// (reports are counted as they land, see [`count_one`]).
pub(super) fn count_all(
    cfg: &Config,
    dir: &Path,
    streams: &mut BTreeMap<String, StreamManifest>,
) -> Result<()> {
    let mut conn = None;
    for (stream, s) in streams.iter_mut() {
        if s.duplicates_counted {
            continue;
        }
        let conn = match &conn {
            Some(c) => c,
            None => conn.insert(open(cfg)?),
        };
        count_into(conn, dir, stream, s)?;
    }
    Ok(())
}

/// Counts one landed stream's repeated records (a report, right after it lands, while the
/// users walk still runs: the count is then off the run's critical path).
pub(super) fn count_one(
    cfg: &Config,
    dir: &Path,
    stream: &str,
    s: &mut StreamManifest,
) -> Result<()> {
    count_into(&open(cfg)?, dir, stream, s)
}

fn count_into(conn: &Connection, dir: &Path, stream: &str, s: &mut StreamManifest) -> Result<()> {
    s.duplicates_counted = true;
    if s.files.is_empty() || s.rows < 2 {
        return Ok(());
    }
    let Some(key) = key_of(stream, s) else {
        return Ok(());
    };
    let t = std::time::Instant::now();
    s.duplicates = count(conn, stream, &s.parquet_source(dir), &key)?;
    tracing::debug!(
        stream,
        seconds = t.elapsed().as_secs_f64(),
        "repeated records counted"
    );
    Ok(())
}

/// How the records of one stream are told apart: the same definitions staging uses to
/// keep one copy (`stg_graph__users.sql`, `Report::row_key_sql`).
struct Key {
    /// SQL for the key; NULL for a record that names nobody (never counted as a copy).
    key: String,
    /// SQL for the key as people read it, for the examples.
    label: String,
    /// SQL for the whole record: copies are identical when this is.
    copy: String,
}

/// How to tell `stream`'s records apart, or `None` when they have no key (organization and
/// subscribed SKUs are small and keyed by nothing a person uses).
fn key_of(stream: &str, s: &StreamManifest) -> Option<Key> {
    if stream == Stream::Users.name() {
        let id = "json_extract_string(record, '$.id')".to_string();
        return Some(Key {
            label: id.clone(),
            key: id,
            copy: "record".into(),
        });
    }
    let report = Report::from_stream(stream)?;
    if !report
        .key_columns()
        .iter()
        .all(|k| s.columns.iter().any(|c| c == k))
    {
        return None;
    }
    // A copy is the same when every cell is, surplus cells (`_extra`) included.
    let mut cells: Vec<String> = s.columns.iter().map(|c| quote_ident(c)).collect();
    cells.push(quote_ident(crate::land::EXTRA_COLUMN));
    let keys: Vec<String> = report
        .key_columns()
        .iter()
        .map(|c| quote_ident(c))
        .collect();
    Some(Key {
        key: report.row_key_sql(),
        label: format!("concat_ws(' / ', {})", keys.join(", ")),
        copy: format!("row({})", cells.join(", ")),
    })
}

/// DuckDB's memory for counting: the extract stays within its own budget (the count needs
/// little with the two passes, and spills beyond it).
const COUNT_MEMORY_MIB: u64 = 96;

fn open(cfg: &Config) -> Result<Connection> {
    let fail = |e: duckdb::Error| {
        Error::Internal(format!(
            "counting repeated records with DuckDB (in memory): {e}"
        ))
    };
    let conn = Connection::open_in_memory().map_err(fail)?;
    let tmp = crate::store::DataDir::new(&cfg.pipeline.data_dir).db_temp();
    crate::fs::create_private_dir(&tmp)?;
    conn.execute_batch(&format!(
        "SET memory_limit = '{}MiB'; SET threads = 1; SET temp_directory = {}; SET preserve_insertion_order = false;",
        cfg.pipeline.memory_limit_mib.min(COUNT_MEMORY_MIB),
        quote_literal(&tmp.display().to_string())
    ))
    .map_err(fail)?;
    Ok(conn)
}

fn count(conn: &Connection, stream: &str, source: &str, k: &Key) -> Result<Duplicates> {
    let Key { key, label, copy } = k;
    let fail = |e: duckdb::Error| {
        Error::Internal(format!(
            "counting repeated records of the {stream} stream: {e}"
        ))
    };
    // Two passes keep memory small at a million records: first the 64-bit hashes of keys
    // seen more than once (a hash table of integers, not of records), then the copies of
    // just those keys, compared by the hash of the whole record.
    conn.execute_batch(&format!(
        "CREATE OR REPLACE TEMP TABLE repeated_hashes AS
         SELECT hash({key}) AS h FROM {source}
         WHERE {key} IS NOT NULL
         GROUP BY h HAVING count(*) > 1;
         CREATE OR REPLACE TEMP TABLE repeated AS
         SELECT {key} AS k, any_value({label}) AS label, count(*) AS copies,
                count(DISTINCT hash({copy})) AS variants,
                min(_page) AS first_page, max(_page) AS last_page,
                min(_row) AS first_row, max(_row) AS last_row
         FROM {source}
         WHERE {key} IS NOT NULL AND hash({key}) IN (SELECT h FROM repeated_hashes)
         GROUP BY k HAVING count(*) > 1;"
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
            "SELECT label, first_page, last_page, first_row, last_row FROM repeated
             WHERE variants > 1 ORDER BY label LIMIT {EXAMPLES}"
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
