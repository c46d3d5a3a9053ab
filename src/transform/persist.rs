//! What a transform keeps of a run across runs: its people (the run's one materialisation of
//! them), rejects, unmatched report rows, licence counts and report aggregates, identity
//! hygiene among them (tables declared in `sql/meta/`, except `people`, whose columns follow
//! the mapping), and the hash of its people.

use duckdb::params;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::store::{Staging, db_error};

/// Stores the run's people: the `out_people` view computed once, in key order. A mapping
/// with different columns than the stored `people` table replaces it (older runs' people
/// were produced by the old mapping; their raw data can be transformed again). Afterwards,
/// within this transform, `out_people` reads the stored rows (a temporary view over
/// `people`), so audits and counts see exactly what was stored without computing it again.
pub fn persist_people(staging: &Staging) -> Result<()> {
    let conn = &staging.conn;
    let path = &staging.path;
    let new_cols = staging.columns("out_people")?;
    if staging.table_exists("people")? {
        let old: Vec<(String, String)> = staging
            .columns("people")?
            .into_iter()
            .filter(|(n, _)| n != "_run_id")
            .collect();
        if old != new_cols {
            tracing::warn!(
                "the mapping's attributes changed: the people table is rebuilt; transform older runs again to refill them"
            );
            conn.execute_batch("DROP TABLE people")
                .map_err(|e| db_error(path, "replacing the people table", e))?;
        }
    }
    // out_people is sorted by key; the insert keeps that order. A new table is made from
    // the rows themselves: made empty (`LIMIT 0`) and filled in the same transaction, DuckDB
    // 1.2 answered filters on `_run_id` from the empty table's statistics (0 rows).
    let store = if staging.table_exists("people")? {
        "DELETE FROM people WHERE _run_id = getvariable('run_id');
         INSERT INTO people SELECT getvariable('run_id'), * FROM out_people;"
    } else {
        "CREATE TABLE people AS SELECT CAST(getvariable('run_id') AS VARCHAR) AS _run_id, * FROM out_people;"
    };
    let sql = format!(
        "{store}
         CREATE OR REPLACE TEMP VIEW out_people AS
             SELECT * EXCLUDE (_run_id) FROM main.people WHERE _run_id = getvariable('run_id');"
    );
    conn.execute_batch(&sql)
        .map_err(|e| db_error(path, "storing the run's people", e))
}

/// Stores the run's rejects, unmatched report rows, licence counts, report aggregates and
/// warning-level audit findings (tables declared in sql/meta/).
pub fn persist(staging: &Staging, audit_findings: &[(String, u64)]) -> Result<()> {
    let conn = &staging.conn;
    let path = &staging.path;
    let sql = "
        DELETE FROM rejects WHERE run_id = getvariable('run_id');
        INSERT INTO rejects SELECT getvariable('run_id'), external_id, user_principal_name, reason, source_row FROM out_rejects;
        DELETE FROM report_rows_unmatched WHERE run_id = getvariable('run_id');
        INSERT INTO report_rows_unmatched SELECT getvariable('run_id'), report, reason, rows, explanation FROM int_report_rows_unmatched;
        DELETE FROM license_counts WHERE run_id = getvariable('run_id');
        INSERT INTO license_counts BY NAME SELECT getvariable('run_id') AS run_id, sku_id, sku_part_number, sku_name,
            capability_status, prepaid_enabled, consumed_units, assigned_users, inactive_users, disabled_users
        FROM int_license_counts;
    ";
    conn.execute_batch(sql)
        .map_err(|e| db_error(path, "storing the run's rejects and counts", e))?;
    conn.execute_batch(PERSIST_REPORT_AGGREGATES)
        .map_err(|e| db_error(path, "storing the run's report figures", e))?;
    // Warning-level audit findings, so the run report lists the same warnings as `run`.
    for (audit, rows) in audit_findings {
        conn.execute(
            "INSERT INTO audit_findings VALUES (getvariable('run_id'), ?, ?)",
            params![audit, rows],
        )
        .map_err(|e| db_error(path, "storing the run's audit findings", e))?;
    }
    Ok(())
}

/// The run report's per-run aggregates (tables in sql/meta/003_report.sql), read by
/// `sql/report/*.sql`.
const PERSIST_REPORT_AGGREGATES: &str = "
    DELETE FROM usage_by_service WHERE run_id = getvariable('run_id');
    INSERT INTO usage_by_service BY NAME SELECT getvariable('run_id') AS run_id, * FROM int_usage_by_service;
    DELETE FROM last_seen_histogram WHERE run_id = getvariable('run_id');
    INSERT INTO last_seen_histogram BY NAME SELECT getvariable('run_id') AS run_id, * FROM int_last_seen_histogram;
    DELETE FROM office_usage WHERE run_id = getvariable('run_id');
    INSERT INTO office_usage BY NAME SELECT getvariable('run_id') AS run_id, * FROM int_office_usage;
    DELETE FROM identity_hygiene WHERE run_id = getvariable('run_id');
    INSERT INTO identity_hygiene BY NAME SELECT getvariable('run_id') AS run_id, * FROM int_identity_hygiene;
    DELETE FROM audit_findings WHERE run_id = getvariable('run_id');
";

/// sha256 over the run's people as JSON lines in key order (no trailing newline; "" when
/// there are none). Streamed row by row: the whole text of a million people is never held.
/// `people` rows are inserted in key order, so they are read in stored order, which avoids
/// sorting a gigabyte of JSON; the order is checked on the way and, should it ever differ,
/// the hash is taken again with an explicit sort.
pub fn people_sha256(staging: &Staging) -> Result<String> {
    const PEOPLE: &str =
        "FROM (SELECT * EXCLUDE (_run_id) FROM people WHERE _run_id = getvariable('run_id')) p";
    // Keys compare as text on both sides, whatever type a mapping gives `User.ExternalId`.
    const KEY: &str = "CAST(p.\"User.ExternalId\" AS VARCHAR)";
    let stored = format!("SELECT {KEY}, to_json(p)::VARCHAR {PEOPLE}");
    if let Some(hash) = hash_json_lines(staging, &stored)? {
        return Ok(hash);
    }
    tracing::debug!("people are not stored in key order; hashing them sorted");
    let sorted = format!("{stored} ORDER BY {KEY}");
    hash_json_lines(staging, &sorted)?
        .ok_or_else(|| Error::Internal("hashing people: the sorted rows came out of order".into()))
}

/// The hash of `sql`'s (key, JSON) rows as JSON lines, or `None` when the keys are not in
/// ascending order.
fn hash_json_lines(staging: &Staging, sql: &str) -> Result<Option<String>> {
    let mut hasher = Sha256::new();
    let mut last: Option<String> = None;
    let mut ascending = true;
    staging.for_each_text_row(sql, "hashing people", |cells| {
        let key = cells[0].unwrap_or("");
        if last.as_deref().is_some_and(|l| l > key) {
            ascending = false;
            return Ok(false);
        }
        if last.is_some() {
            hasher.update(b"\n");
        }
        last = Some(key.to_string());
        hasher.update(cells[1].unwrap_or("null").as_bytes());
        Ok(true)
    })?;
    Ok(ascending.then(|| match last {
        Some(_) => crate::digest::hex(&hasher.finalize()),
        None => String::new(),
    }))
}
