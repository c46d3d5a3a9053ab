//! `sql` and `runs`: read-only queries on the staging database, printed as a table, CSV or
//! JSON (via Arrow, so every DuckDB type prints faithfully).

use std::path::Path;

use arrow::record_batch::RecordBatch;

use crate::cli::SqlFormat;
use crate::error::{Error, Result};
use crate::store::Staging;

/// Runs `sql` on `<data_dir>/staging.duckdb` opened read-only and renders the result.
pub fn query(data_dir: &Path, sql: &str, format: SqlFormat) -> Result<String> {
    let Staging { conn, .. } = Staging::open_read_only(data_dir)?;
    let mut stmt = conn
        .prepare(sql)
        .map_err(|e| Error::Usage(format!("query failed: {e}")))?;
    let batches: Vec<RecordBatch> = stmt
        .query_arrow([])
        .map_err(|e| Error::Usage(format!("query failed: {e}")))?
        .collect();
    render(&batches, format)
}

fn render(batches: &[RecordBatch], format: SqlFormat) -> Result<String> {
    let fail = |e: arrow::error::ArrowError| Error::Internal(format!("formatting the result: {e}"));
    match format {
        SqlFormat::Table => Ok(format!(
            "{}\n",
            arrow::util::pretty::pretty_format_batches(batches).map_err(fail)?
        )),
        SqlFormat::Csv => {
            let mut out = Vec::new();
            {
                let mut w = arrow::csv::WriterBuilder::new()
                    .with_header(true)
                    .build(&mut out);
                for b in batches {
                    w.write(b).map_err(fail)?;
                }
            }
            Ok(String::from_utf8_lossy(&out).into_owned())
        }
        SqlFormat::Json => {
            let mut out = Vec::new();
            {
                let mut w = arrow::json::LineDelimitedWriter::new(&mut out);
                for b in batches {
                    w.write(b).map_err(fail)?;
                }
                w.finish().map_err(fail)?;
            }
            Ok(String::from_utf8_lossy(&out).into_owned())
        }
    }
}

/// The `runs` overview query.
pub const RUNS_SQL: &str = "SELECT run_id, status, extract_status AS extract, transform_status AS transform,
    users_fetched AS fetched, people_kept AS kept, filtered_out, rejected,
    round(coalesce(extract_seconds, 0) + coalesce(transform_seconds, 0), 1) AS seconds,
    requests, throttled, concealed_names AS concealed,
    (SELECT string_agg(w->>'code', ', ') FROM (SELECT unnest(CAST(warnings AS JSON[])) AS w)) AS warnings
FROM runs ORDER BY run_id";
