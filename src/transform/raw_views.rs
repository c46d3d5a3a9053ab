//! The run's landed Parquet as views `raw_<stream>`, the only way models read raw data:
//! report views add documented columns a file lacks, users views have their typed columns
//! (computed from the records for runs landed before typed landing), and a record listed
//! twice is used once.

use std::path::Path;

use crate::error::{Error, Result};
use crate::land::{report_typed, users_typed};
use crate::manifest::RunManifest;
use crate::sql::quote_ident;
use crate::store::{Staging, db_error};
use crate::streams::{Report, Stream};

/// Views `raw_<stream>` over the run's Parquet files (persistent, so `sql` and the `duckdb`
/// CLI can read the staging views of the run last transformed). Report views add every
/// documented column the file lacks as NULL, so models match columns by name and never fail
/// on a column Microsoft dropped; columns Microsoft added stay in the raw file. A stream
/// whose manifest counted records listed twice uses one copy of each (the last); without
/// copies there is nothing to rank, and no window over a million rows is computed.
pub fn create_raw_views(staging: &Staging, manifest: &RunManifest, dir: &Path) -> Result<()> {
    // The views outlive this process: they name the files by absolute path, so `sql` and the
    // `duckdb` CLI read them from any folder.
    let absolute = std::fs::canonicalize(dir)
        .map_err(|e| Error::io(format!("finding {}", dir.display()), e))?;
    let dir = absolute.as_path();
    // What an earlier transform on this connection left to hide persistent views (the users
    // snapshot, the stored people) must not hide this run's.
    let mut sql = String::from(
        "DROP VIEW IF EXISTS temp.main.raw_users; DROP TABLE IF EXISTS temp.main.raw_users_snapshot;
         DROP VIEW IF EXISTS temp.main.out_people;\n",
    );
    for (stream, s) in &manifest.streams {
        if s.files.is_empty() {
            continue;
        }
        // A stream landed in segments is one view over all its files, in order.
        let source = s.parquet_source(dir);
        let report = Report::from_stream(stream);
        let present = if report.is_some() || stream == Stream::Users.name() {
            parquet_columns(staging, &source)?
        } else {
            Vec::new()
        };
        let select = match report {
            Some(r) => {
                let missing = |c: &str| !present.iter().any(|p| p == c);
                let mut extra: String = r
                    .documented_columns()
                    .iter()
                    .filter(|c| missing(c))
                    .map(|c| format!(", NULL::VARCHAR AS {}", quote_ident(c)))
                    .collect();
                if missing(report_typed::USER_KEY_COLUMN) {
                    // Landed before typed landing: the same columns, cast here.
                    extra.push_str(&report_typed::typed_projection_sql(r, &present));
                } else {
                    for (name, cell) in r.typed_columns() {
                        let typed = report_typed::typed_name(name, *cell);
                        if missing(&typed) {
                            extra.push_str(&format!(
                                ", NULL::{} AS {}",
                                cell.sql_type(),
                                quote_ident(&typed)
                            ));
                        }
                    }
                }
                format!("SELECT *{extra} FROM {source}")
            }
            None if stream == Stream::Users.name() => users_select(&present, &source),
            None => format!("SELECT * FROM {source}"),
        };
        let key = match report {
            Some(r) => Some(r.row_key_sql()),
            None if stream == Stream::Users.name() => Some("id".to_string()),
            None => None,
        };
        let view = quote_ident(&format!("raw_{stream}"));
        let body = match key {
            // Rows that name nobody are all kept.
            Some(key) if !s.duplicates.is_empty() => format!(
                "SELECT * FROM ({select}) QUALIFY {key} IS NULL OR row_number() OVER (PARTITION BY {key} ORDER BY _page DESC, _row DESC) = 1"
            ),
            _ => select,
        };
        sql.push_str(&format!("CREATE OR REPLACE VIEW {view} AS {body};\n"));
    }
    // Optional streams a run did not land read as empty, so models need no two versions.
    let sign_ins = Stream::SignIns.name();
    if manifest
        .streams
        .get(sign_ins)
        .is_none_or(|s| s.files.is_empty())
    {
        sql.push_str(&format!(
            "CREATE OR REPLACE VIEW {} AS SELECT NULL::VARCHAR AS _run_id, NULL::VARCHAR AS _stream,
             NULL::INTEGER AS _page, NULL::BIGINT AS _row, NULL::TIMESTAMPTZ AS _extracted_at,
             NULL::VARCHAR AS record WHERE false;\n",
            quote_ident(&format!("raw_{sign_ins}"))
        ));
    }
    for needed in Stream::all().map(Stream::name) {
        if !manifest.streams.contains_key(needed) {
            return Err(Error::Usage(format!(
                "run {} has no {needed} stream in its manifest; extract a new run",
                manifest.run_id
            )));
        }
    }
    staging
        .conn
        .execute_batch(&sql)
        .map_err(|e| db_error(&staging.path, "opening the run's raw Parquet", e))
}

/// The users as landed: typed columns beside `record`, or, for a run landed before typed
/// landing, the same columns computed from `record` (slower, same values).
fn users_select(present: &[String], source: &str) -> String {
    if present.iter().any(|c| c == users_typed::MARKER_COLUMN) {
        format!("SELECT * FROM {source}")
    } else {
        users_from_records(source)
    }
}

/// Typed users columns computed from the `record`s of `source` (a run landed before typed
/// landing, or the incremental snapshot).
pub fn users_from_records(source: &str) -> String {
    format!(
        "SELECT _run_id, _stream, _page, _row, _extracted_at, record{}\n FROM {source})",
        users_typed::json_projection_sql("record")
    )
}

fn parquet_columns(staging: &Staging, source: &str) -> Result<Vec<String>> {
    let mut stmt = staging
        .conn
        .prepare(&format!("DESCRIBE SELECT * FROM {source}"))
        .map_err(|e| db_error(&staging.path, "reading a Parquet schema", e))?;
    stmt.query_map([], |r| r.get::<_, String>(0))
        .and_then(|rows| rows.collect::<duckdb::Result<Vec<_>>>())
        .map_err(|e| db_error(&staging.path, "reading a Parquet schema", e))
}
