//! The run's landed Parquet as views `raw_<stream>`, the only way models read raw data:
//! report views add documented columns a file lacks and use a row listed twice once.

use std::path::Path;

use crate::error::{Error, Result};
use crate::manifest::RunManifest;
use crate::sql::quote_ident;
use crate::store::{Staging, db_error};
use crate::streams::{Report, Stream};

/// Views `raw_<stream>` over the run's Parquet files. Report views add every documented
/// column the file lacks as NULL, so models match columns by name and never fail on a
/// column Microsoft dropped; columns Microsoft added stay in the raw file.
pub fn create_raw_views(staging: &Staging, manifest: &RunManifest, dir: &Path) -> Result<()> {
    let mut sql = String::new();
    for (stream, s) in &manifest.streams {
        if s.files.is_empty() {
            continue;
        }
        // A stream landed in segments is one view over all its files, in order.
        let source = s.parquet_source(dir);
        let extra: Vec<String> = match Report::from_stream(stream) {
            Some(r) => {
                let present = parquet_columns(staging, &source)?;
                r.documented_columns()
                    .iter()
                    .filter(|c| !present.iter().any(|p| p == *c))
                    .map(|c| format!(", NULL::VARCHAR AS {}", quote_ident(c)))
                    .collect()
            }
            None => Vec::new(),
        };
        // A report row listed twice (counted in the run manifest) is used once: the last
        // copy in the file. Rows that name nobody are all kept.
        let dedupe = match Report::from_stream(stream) {
            Some(r) => {
                let key = r.row_key_sql();
                format!(
                    " QUALIFY {key} IS NULL OR row_number() OVER (PARTITION BY {key} ORDER BY _page DESC, _row DESC) = 1"
                )
            }
            None => String::new(),
        };
        sql.push_str(&format!(
            "CREATE OR REPLACE TEMP VIEW {} AS SELECT * FROM (SELECT *{} FROM {source}){dedupe};\n",
            quote_ident(&format!("raw_{stream}")),
            extra.join("")
        ));
    }
    // Optional streams a run did not land read as empty, so models need no two versions.
    let sign_ins = Stream::SignIns.name();
    if manifest
        .streams
        .get(sign_ins)
        .is_none_or(|s| s.files.is_empty())
    {
        sql.push_str(&format!(
            "CREATE OR REPLACE TEMP VIEW {} AS SELECT NULL::VARCHAR AS _run_id, NULL::VARCHAR AS _stream,
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

fn parquet_columns(staging: &Staging, source: &str) -> Result<Vec<String>> {
    let mut stmt = staging
        .conn
        .prepare(&format!("DESCRIBE SELECT * FROM {source}"))
        .map_err(|e| db_error(&staging.path, "reading a Parquet schema", e))?;
    stmt.query_map([], |r| r.get::<_, String>(0))
        .and_then(|rows| rows.collect::<duckdb::Result<Vec<_>>>())
        .map_err(|e| db_error(&staging.path, "reading a Parquet schema", e))
}
