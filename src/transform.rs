//! Stage 2, transform: one committed run's raw Parquet → typed staging tables → `int_people`
//! (joins, licences, last_seen_date, the date filter) → the mapped people → `people` and
//! `rejects` for that run. Never calls Graph: a transform can be re-run at will and gives
//! identical content.
//!
//! The models are SQL files with one SELECT each, run in the fixed order of [`MODELS`]; the
//! runner wraps each in `CREATE OR REPLACE TABLE`. Run parameters are typed variables
//! (`SET VARIABLE`), never spliced user text. Everything happens in one transaction: a
//! failure leaves the database as it was.

use std::path::{Path, PathBuf};
use std::time::Instant;

use duckdb::params;
use sha2::{Digest, Sha256};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::manifest::{RunManifest, committed_runs};
use crate::mapping::Mapping;
use crate::sql::{quote_ident, quote_literal};
use crate::staging::{Staging, db_error};
use crate::streams::Report;

/// The models, in the order they run. Names are paths under `sql/`.
pub const MODELS: &[(&str, &str)] = &[
    (
        "staging/stg_graph__users",
        include_str!("../sql/staging/stg_graph__users.sql"),
    ),
    (
        "staging/stg_graph__organization",
        include_str!("../sql/staging/stg_graph__organization.sql"),
    ),
    (
        "staging/stg_graph__subscribed_skus",
        include_str!("../sql/staging/stg_graph__subscribed_skus.sql"),
    ),
    (
        "staging/stg_reports__office365_active_user_detail",
        include_str!("../sql/staging/stg_reports__office365_active_user_detail.sql"),
    ),
    (
        "staging/stg_reports__office365_activations_user_detail",
        include_str!("../sql/staging/stg_reports__office365_activations_user_detail.sql"),
    ),
    (
        "staging/stg_reports__m365_app_user_detail",
        include_str!("../sql/staging/stg_reports__m365_app_user_detail.sql"),
    ),
    (
        "staging/stg_reports__mailbox_usage_detail",
        include_str!("../sql/staging/stg_reports__mailbox_usage_detail.sql"),
    ),
    (
        "staging/stg_reports__email_activity_user_detail",
        include_str!("../sql/staging/stg_reports__email_activity_user_detail.sql"),
    ),
    (
        "staging/stg_reports__onedrive_usage_account_detail",
        include_str!("../sql/staging/stg_reports__onedrive_usage_account_detail.sql"),
    ),
    (
        "staging/stg_reports__sharepoint_activity_user_detail",
        include_str!("../sql/staging/stg_reports__sharepoint_activity_user_detail.sql"),
    ),
    (
        "staging/stg_reports__teams_user_activity_user_detail",
        include_str!("../sql/staging/stg_reports__teams_user_activity_user_detail.sql"),
    ),
    (
        "intermediate/int_people",
        include_str!("../sql/intermediate/int_people.sql"),
    ),
    (
        "intermediate/int_report_rows_unmatched",
        include_str!("../sql/intermediate/int_report_rows_unmatched.sql"),
    ),
    (
        "intermediate/int_report_period",
        include_str!("../sql/intermediate/int_report_period.sql"),
    ),
    (
        "intermediate/int_license_counts",
        include_str!("../sql/intermediate/int_license_counts.sql"),
    ),
    // Small per-run aggregates for the run report (src/report/), persisted by `persist`.
    (
        "intermediate/int_usage_by_service",
        include_str!("../sql/intermediate/int_usage_by_service.sql"),
    ),
    (
        "intermediate/int_last_seen_histogram",
        include_str!("../sql/intermediate/int_last_seen_histogram.sql"),
    ),
    (
        "intermediate/int_office_usage",
        include_str!("../sql/intermediate/int_office_usage.sql"),
    ),
    // The mapping CSV compiles into `int_people_mapped` here (see `mapping.rs`).
    (
        "marts/out_people_checked",
        include_str!("../sql/marts/out_people_checked.sql"),
    ),
    (
        "marts/out_people",
        include_str!("../sql/marts/out_people.sql"),
    ),
    (
        "marts/out_rejects",
        include_str!("../sql/marts/out_rejects.sql"),
    ),
];

/// Audits: SELECTs returning offending rows; zero rows = pass.
pub const AUDITS: &[(&str, &str)] = &[
    (
        "audits/assert_people__unique_external_id",
        include_str!("../sql/audits/assert_people__unique_external_id.sql"),
    ),
    (
        "audits/assert_people__required_present",
        include_str!("../sql/audits/assert_people__required_present.sql"),
    ),
    (
        "audits/assert_people__shared_email",
        include_str!("../sql/audits/assert_people__shared_email.sql"),
    ),
];

/// Audits whose findings are warnings, not failures.
const WARNING_AUDITS: &[&str] = &["audits/assert_people__shared_email"];

/// The friendly SKU names shipped with the connector.
pub const SKU_NAMES: &str = include_str!("../mappings/sku_names.csv");

/// What a transform did.
#[derive(Debug, Clone)]
pub struct Transformed {
    pub run_id: String,
    pub users: u64,
    pub kept: u64,
    pub filtered_out: u64,
    pub rejected: u64,
    /// (report, reason, rows, explanation) of report rows that became no person.
    pub unmatched: Vec<(String, String, u64, String)>,
    /// (audit, offending rows) for audits that found something.
    pub audit_findings: Vec<(String, u64)>,
    pub concealed: bool,
    /// sha256 of the run's `people` content, ordered by key: equal runs hash equal.
    pub people_sha256: String,
    pub seconds: f64,
}

/// One SQL model to run.
struct Model {
    name: String,
    sql: String,
}

/// Runs the transform for `run_id` (default: the newest committed run).
pub fn transform(cfg: &Config, run_id: Option<&str>) -> Result<Transformed> {
    let started = Instant::now();
    let raw = cfg.raw_dir();
    let run_id = pick_run(&raw, run_id)?;
    let dir = raw.join(&run_id);
    let manifest = RunManifest::read(&dir)
        .map_err(|e| Error::io(format!("reading the manifest of run {run_id}"), e))?;
    // The mapping and the models are checked before any SQL runs.
    let mapping =
        Mapping::load(cfg.pipeline.mappings.as_deref()).map_err(|e| Error::Usage(e.to_string()))?;
    let models = load_models(cfg.pipeline.sql_dir.as_deref())?;
    let sku_names = parse_sku_names(SKU_NAMES)?;
    let sql_hash = sql_sha256(&models);

    let staging = Staging::open(&cfg.pipeline.data_dir)?;
    staging.limit_memory(cfg.pipeline.memory_limit_mib)?;
    let conn = &staging.conn;
    let exec = |sql: &str, doing: &str| {
        conn.execute_batch(sql)
            .map_err(|e| db_error(&staging.path, doing, e))
    };
    exec("BEGIN TRANSACTION", "starting the transform")?;
    let result = run_in_transaction(
        &staging,
        &manifest,
        cfg.date_filter_days,
        &dir,
        &mapping,
        &models,
        &sku_names,
        &sql_hash,
        cfg.pipeline.memory_limit_mib,
        started,
    );
    match result {
        Ok(t) => {
            crate::failpoint::hit("transform.before_commit");
            exec("COMMIT", "committing the transform")?;
            Ok(t)
        }
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            // Bad input (a mapping error) says nothing about the run: the database stays as it
            // was. Anything else is a failed transform of this run.
            if !matches!(e, Error::Usage(_)) {
                staging.fail(&run_id, "transform", &e.to_string());
            }
            Err(e)
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn run_in_transaction(
    staging: &Staging,
    manifest: &RunManifest,
    date_filter_days: u32,
    dir: &Path,
    mapping: &Mapping,
    models: &[Model],
    sku_names: &[(String, String, String)],
    sql_hash: &str,
    memory_limit_mib: u64,
    started: Instant,
) -> Result<Transformed> {
    let conn = &staging.conn;
    let path = &staging.path;
    let run_id = manifest.run_id.as_str();
    let concealed = manifest.concealment.concealed();

    // Run parameters: typed values only.
    conn.execute_batch(&format!(
        "SET VARIABLE run_id = {}; SET VARIABLE run_date = DATE '{}'; SET VARIABLE date_filter_days = {}; SET VARIABLE concealed = {}; SET VARIABLE report_period = {}; SET VARIABLE parts = 1; SET VARIABLE part = 0;",
        quote_literal(run_id),
        manifest.run_date.format("%Y-%m-%d"),
        date_filter_days,
        concealed,
        quote_literal(&manifest.report_period)
    ))
    .map_err(|e| db_error(path, "setting run variables", e))?;

    create_raw_views(staging, manifest, dir)?;
    // Incremental users: the snapshot, brought to this run, becomes `raw_users`.
    let users_sync = crate::incremental::sync_snapshot(staging, manifest, dir)?;
    load_sku_names(staging, sku_names)?;

    let mut seq = 0i32;
    let mut steps: Vec<(i32, String, u64, f64)> = Vec::new();
    let mut run_model = |name: &str, sql: &str, parts: u64| -> Result<u64> {
        let t = Instant::now();
        let table = name.rsplit('/').next().unwrap_or(name);
        for part in 0..parts {
            let statement = if part == 0 {
                format!("CREATE OR REPLACE TABLE {} AS\n{sql}", quote_ident(table))
            } else {
                format!("INSERT INTO {}\n{sql}", quote_ident(table))
            };
            conn.execute_batch(&format!(
                "SET VARIABLE parts = {parts}; SET VARIABLE part = {part};\n{statement}"
            ))
            .map_err(|e| {
                let text = e.to_string();
                let hint = crate::staging::hint_for(&text);
                Error::Internal(format!("model sql/{name}.sql failed: {text}{hint}"))
            })?;
        }
        conn.execute_batch("SET VARIABLE parts = 1; SET VARIABLE part = 0;")
            .map_err(|e| db_error(path, "resetting the model parts", e))?;
        let rows: i64 = conn
            .query_row(
                &format!("SELECT count(*) FROM {}", quote_ident(table)),
                [],
                |r| r.get(0),
            )
            .map_err(|e| db_error(path, "counting rows", e))?;
        seq += 1;
        crate::failpoint::hit("transform.model");
        steps.push((
            seq,
            name.to_string(),
            rows as u64,
            t.elapsed().as_secs_f64(),
        ));
        Ok(rows as u64)
    };
    for m in models {
        if m.name == "marts/out_people_checked" {
            let columns = staging.columns("int_people")?;
            let select = mapping
                .compile(&columns)
                .map_err(|e| Error::Usage(e.to_string()))?;
            run_model("mapping/int_people_mapped", &select, 1)?;
        }
        let parts = if m.sql.contains("m365_in_part") {
            let users: i64 = conn
                .query_row("SELECT count(*) FROM stg_graph__users", [], |r| r.get(0))
                .map_err(|e| db_error(path, "counting users", e))?;
            parts_for(users.max(0) as u64, memory_limit_mib)
        } else {
            1
        };
        run_model(&m.name, &m.sql, parts)?;
    }

    // The steps after the models are timed too, so `run_steps` accounts for the whole run.
    let mut timed = |name: &str, rows: u64, since: Instant| {
        seq += 1;
        steps.push((seq, name.to_string(), rows, since.elapsed().as_secs_f64()));
    };
    let t = Instant::now();
    let mut audit_findings = Vec::new();
    for (name, sql) in AUDITS {
        let needs_email = sql.contains("\"User.Email\"");
        if needs_email && !mapping.rows.iter().any(|r| r.target == "User.Email") {
            continue;
        }
        let n: i64 = conn
            .query_row(&format!("SELECT count(*) FROM ({sql})"), [], |r| r.get(0))
            .map_err(|e| Error::Internal(format!("audit sql/{name}.sql failed: {e}")))?;
        if n > 0 {
            if !WARNING_AUDITS.contains(name) {
                return Err(Error::Internal(format!(
                    "audit sql/{name}.sql found {n} offending rows: the export would be wrong, so nothing was committed; query it with `m365-connector sql` to see them"
                )));
            }
            audit_findings.push((name.to_string(), n as u64));
        }
    }

    let offending = audit_findings.iter().map(|(_, n)| n).sum();
    timed("audits", offending, t);

    let count = |sql: &str| -> Result<u64> {
        conn.query_row(sql, [], |r| r.get::<_, i64>(0))
            .map(|n| n as u64)
            .map_err(|e| db_error(path, "counting", e))
    };
    let users = count("SELECT count(*) FROM int_people")?;
    let kept_by_filter = count("SELECT count(*) FROM int_people WHERE kept_by_date_filter")?;
    let kept = count("SELECT count(*) FROM out_people")?;
    let rejected = count("SELECT count(*) FROM out_rejects")?;
    let t = Instant::now();
    persist(staging, &audit_findings)?;
    timed("persist", kept, t);
    let t = Instant::now();
    let people_sha256 = people_sha256(staging)?;
    timed("people_sha256", kept, t);
    let mut unmatched = Vec::new();
    {
        let mut stmt = conn
            .prepare("SELECT report, reason, rows, explanation FROM int_report_rows_unmatched")
            .map_err(|e| db_error(path, "reading unmatched rows", e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)? as u64,
                    r.get::<_, String>(3)?,
                ))
            })
            .and_then(|rows| rows.collect::<duckdb::Result<Vec<_>>>())
            .map_err(|e| db_error(path, "reading unmatched rows", e))?;
        unmatched.extend(rows);
    }

    let seconds = started.elapsed().as_secs_f64();
    conn.execute(
        "DELETE FROM run_steps WHERE run_id = ? AND stage = 'transform'",
        params![run_id],
    )
    .map_err(|e| db_error(path, "recording steps", e))?;
    for (seq, name, rows, secs) in &steps {
        conn.execute(
            "INSERT INTO run_steps VALUES (?, ?, 'transform', ?, ?, ?, now()::TIMESTAMP)",
            params![run_id, seq, name, rows, secs],
        )
        .map_err(|e| db_error(path, "recording steps", e))?;
    }
    let updated = conn
        .execute(
            "UPDATE runs SET transform_status = 'succeeded', transform_seconds = ?, people_kept = ?, filtered_out = ?,
                 rejected = ?, mapping_sha256 = ?, sql_sha256 = ?, concealed_names = ?, date_filter_days = ?
             WHERE run_id = ?",
            params![seconds, kept, users - kept_by_filter, rejected, mapping.sha256, sql_hash, concealed, date_filter_days, run_id],
        )
        .map_err(|e| db_error(path, "recording the transform", e))?;
    if updated == 0 {
        // A run extracted before the database existed (or copied in): record it now.
        conn.execute(
            "INSERT INTO runs (run_id, connector, server, tenant_id, status, extract_status, transform_status,
                 started_at, run_date, date_filter_days, report_period, users_fetched, people_kept, filtered_out,
                 rejected, concealed_names, transform_seconds, mapping_sha256, sql_sha256, warnings)
             VALUES (?, ?, ?, ?, 'running', 'succeeded', 'succeeded', CAST(? AS TIMESTAMP), CAST(? AS DATE), ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            params![
                run_id,
                manifest.connector,
                manifest.server,
                manifest.tenant_id,
                manifest.started_at.naive_utc().to_string(),
                manifest.run_date.to_string(),
                date_filter_days,
                manifest.report_period,
                users,
                kept,
                users - kept_by_filter,
                rejected,
                concealed,
                seconds,
                mapping.sha256,
                sql_hash,
                serde_json::to_string(&manifest.warnings).unwrap_or_else(|_| "[]".into()),
            ],
        )
        .map_err(|e| db_error(path, "recording the transform", e))?;
    }
    if users_sync.is_some() {
        // The users this run covers: the snapshot, not only the changes fetched (those are
        // in run_streams and run_users_sync), so the report's funnel adds up.
        conn.execute(
            "UPDATE runs SET users_fetched = ? WHERE run_id = ?",
            params![users, run_id],
        )
        .map_err(|e| db_error(path, "recording the transform", e))?;
    }

    Ok(Transformed {
        run_id: run_id.to_string(),
        users,
        kept,
        filtered_out: users - kept_by_filter,
        rejected,
        unmatched,
        audit_findings,
        concealed,
        people_sha256,
        seconds,
    })
}

/// sha256 over the run's people as JSON lines in key order (no trailing newline; "" when
/// there are none). Streamed row by row: the whole text of a million people is never held.
/// `people` rows are inserted in key order, so they are read in stored order, which avoids
/// sorting a gigabyte of JSON; the order is checked on the way and, should it ever differ,
/// the hash is taken again with an explicit sort.
fn people_sha256(staging: &Staging) -> Result<String> {
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

/// Users per part of a partitioned model (`int_people`) for each MiB of
/// `[pipeline] memory_limit_mib`: its nine per-user hash tables take about 1 KiB per user, and
/// DuckDB cannot spill them below ~1 GiB at a million users. 1024 MiB: 256,000 users per part.
const USERS_PER_PART_PER_MIB: u64 = 250;

/// Forces the number of `int_people` parts (tests and tuning; unset in production).
pub const PARTS_ENV: &str = "M365_CONNECTOR_PEOPLE_PARTS";

/// How many parts `int_people` is built in, so that memory does not grow with the tenant.
fn parts_for(users: u64, memory_limit_mib: u64) -> u64 {
    if let Some(n) = std::env::var(PARTS_ENV)
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        return n.clamp(1, 1024);
    }
    users
        .div_ceil(memory_limit_mib.max(1) * USERS_PER_PART_PER_MIB)
        .max(1)
}

/// The run to transform: the given one (must be committed) or the newest.
fn pick_run(raw: &Path, wanted: Option<&str>) -> Result<String> {
    let runs = committed_runs(raw)
        .map_err(|e| Error::io(format!("listing runs in {}", raw.display()), e))?;
    match wanted {
        Some(id) if runs.iter().any(|r| r == id) => Ok(id.to_string()),
        Some(id) => Err(Error::Usage(format!(
            "run {id:?} is not a committed run in {} (interrupted runs are never used); `m365-connector runs -c FILE` lists them",
            raw.display()
        ))),
        None => runs.last().cloned().ok_or_else(|| {
            Error::Usage(format!(
                "no committed run in {}: run `m365-connector extract -c FILE` first",
                raw.display()
            ))
        }),
    }
}

/// Views `raw_<stream>` over the run's Parquet files. Report views add every documented
/// column the file lacks as NULL, so models match columns by name and never fail on a
/// column Microsoft dropped; columns Microsoft added stay in the raw file.
fn create_raw_views(staging: &Staging, manifest: &RunManifest, dir: &Path) -> Result<()> {
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
    for needed in ["users", "organization", "subscribed_skus"]
        .into_iter()
        .chain(Report::ALL.iter().map(|r| r.stream()))
    {
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

/// Parses the SKU name list (Microsoft's "product names and service plan identifiers"
/// layout); returns (sku_id, part number, friendly name), one per SKU.
pub fn parse_sku_names(text: &str) -> Result<Vec<(String, String, String)>> {
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let headers = reader
        .headers()
        .map_err(|e| Error::Usage(format!("mappings/sku_names.csv: {e}")))?
        .clone();
    let idx = |name: &str| {
        headers
            .iter()
            .position(|h| h.trim_start_matches('\u{feff}') == name)
            .ok_or_else(|| {
                Error::Usage(format!(
                    "mappings/sku_names.csv:1: the header lacks {name:?}"
                ))
            })
    };
    let (name_i, part_i, guid_i) = (
        idx("Product_Display_Name")?,
        idx("String_Id")?,
        idx("GUID")?,
    );
    let mut out: Vec<(String, String, String)> = Vec::new();
    for rec in reader.records() {
        let rec = rec.map_err(|e| Error::Usage(format!("mappings/sku_names.csv: {e}")))?;
        let guid = rec.get(guid_i).unwrap_or("").trim().to_ascii_lowercase();
        if !crate::config::is_guid(&guid) {
            let line = rec.position().map(|p| p.line()).unwrap_or(0);
            return Err(Error::Usage(format!(
                "mappings/sku_names.csv:{line}: GUID {guid:?} is not a GUID"
            )));
        }
        if out.iter().any(|(g, _, _)| *g == guid) {
            continue; // one row per service plan in Microsoft's file: keep the first
        }
        out.push((
            guid,
            rec.get(part_i).unwrap_or("").trim().to_string(),
            rec.get(name_i).unwrap_or("").trim().to_string(),
        ));
    }
    Ok(out)
}

fn load_sku_names(staging: &Staging, names: &[(String, String, String)]) -> Result<()> {
    let conn = &staging.conn;
    conn.execute_batch(
        "CREATE OR REPLACE TABLE ref_sku_names (sku_id VARCHAR PRIMARY KEY, sku_part_number VARCHAR, friendly_name VARCHAR)",
    )
    .map_err(|e| db_error(&staging.path, "creating ref_sku_names", e))?;
    let mut app = conn
        .appender("ref_sku_names")
        .map_err(|e| db_error(&staging.path, "loading ref_sku_names", e))?;
    for (g, p, n) in names {
        app.append_row(params![g, p, n])
            .map_err(|e| db_error(&staging.path, "loading ref_sku_names", e))?;
    }
    app.flush()
        .map_err(|e| db_error(&staging.path, "loading ref_sku_names", e))
}

/// Stores the run's people, rejects, unmatched report rows and licence counts. A mapping
/// with different columns than the stored `people` table replaces it (older runs' people
/// were produced by the old mapping; their raw data can be transformed again).
fn persist(staging: &Staging, audit_findings: &[(String, u64)]) -> Result<()> {
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
    let sql = "
        CREATE TABLE IF NOT EXISTS people AS SELECT ''::VARCHAR AS _run_id, * FROM out_people LIMIT 0;
        DELETE FROM people WHERE _run_id = getvariable('run_id');
        -- out_people is sorted by key already; the insert keeps that order.
        INSERT INTO people SELECT getvariable('run_id'), * FROM out_people;
        CREATE TABLE IF NOT EXISTS rejects (run_id VARCHAR, external_id VARCHAR, user_principal_name VARCHAR, reason VARCHAR, source_row BIGINT);
        DELETE FROM rejects WHERE run_id = getvariable('run_id');
        INSERT INTO rejects SELECT getvariable('run_id'), external_id, user_principal_name, reason, source_row FROM out_rejects;
        CREATE TABLE IF NOT EXISTS report_rows_unmatched (run_id VARCHAR, report VARCHAR, reason VARCHAR, rows BIGINT, explanation VARCHAR);
        DELETE FROM report_rows_unmatched WHERE run_id = getvariable('run_id');
        INSERT INTO report_rows_unmatched SELECT getvariable('run_id'), report, reason, rows, explanation FROM int_report_rows_unmatched;
        CREATE TABLE IF NOT EXISTS license_counts (run_id VARCHAR, sku_id VARCHAR, sku_part_number VARCHAR, sku_name VARCHAR,
            capability_status VARCHAR, prepaid_enabled BIGINT, consumed_units BIGINT, assigned_users BIGINT);
        ALTER TABLE license_counts ADD COLUMN IF NOT EXISTS inactive_users BIGINT;
        ALTER TABLE license_counts ADD COLUMN IF NOT EXISTS disabled_users BIGINT;
        DELETE FROM license_counts WHERE run_id = getvariable('run_id');
        INSERT INTO license_counts BY NAME SELECT getvariable('run_id') AS run_id, sku_id, sku_part_number, sku_name,
            capability_status, prepaid_enabled, consumed_units, assigned_users, inactive_users, disabled_users
        FROM int_license_counts;
    ";
    conn.execute_batch(sql)
        .map_err(|e| db_error(path, "storing the run's people", e))?;
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
    DELETE FROM audit_findings WHERE run_id = getvariable('run_id');
";

/// The models to run: built in, or the same file names under `sql_dir`.
fn load_models(sql_dir: Option<&Path>) -> Result<Vec<Model>> {
    MODELS
        .iter()
        .map(|(name, sql)| {
            let sql = match sql_dir {
                None => sql.to_string(),
                Some(dir) => {
                    let path: PathBuf = dir.join(format!("{name}.sql"));
                    std::fs::read_to_string(&path)
                        .map_err(|e| Error::Usage(format!("{}: {e}: [pipeline] sql_dir must hold every model file (copy sql/ from the repository)", path.display())))?
                }
            };
            Ok(Model {
                name: name.to_string(),
                sql,
            })
        })
        .collect()
}

/// sha256 over every model's name and text, in run order.
fn sql_sha256(models: &[Model]) -> String {
    let mut h = Sha256::new();
    for m in models {
        h.update(m.name.as_bytes());
        h.update([0]);
        h.update(m.sql.as_bytes());
        h.update([0]);
    }
    crate::digest::hex(&h.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_grow_with_users_and_shrink_with_memory() {
        assert_eq!(parts_for(0, 1024), 1);
        assert_eq!(parts_for(256_000, 1024), 1);
        assert_eq!(parts_for(256_001, 1024), 2);
        assert_eq!(parts_for(1_000_000, 1024), 4);
        assert_eq!(parts_for(1_000_000, 256), 16);
        assert_eq!(parts_for(1_000_000, 4096), 1);
    }

    #[test]
    fn shipped_sku_names_parse() {
        let names = parse_sku_names(SKU_NAMES).unwrap();
        assert!(names.len() >= 25);
        let e3 = names
            .iter()
            .find(|(g, _, _)| g == "05e9a617-0261-4cee-bb44-138d3ef5d965")
            .unwrap();
        assert_eq!(
            (e3.1.as_str(), e3.2.as_str()),
            ("SPE_E3", "Microsoft 365 E3")
        );
    }

    #[test]
    fn every_model_is_one_select() {
        for (name, sql) in MODELS.iter().chain(AUDITS) {
            let body: String = sql
                .lines()
                .filter(|l| !l.trim_start().starts_with("--"))
                .collect::<Vec<_>>()
                .join("\n");
            let first = body
                .split_whitespace()
                .next()
                .unwrap_or("")
                .to_ascii_uppercase();
            assert!(
                first == "SELECT" || first == "WITH",
                "{name} starts with {first}"
            );
            // Semicolons inside string literals are text, not statement ends.
            let code: String = body.split('\'').step_by(2).collect();
            assert!(
                !code.trim_end().trim_end_matches(';').contains(';'),
                "{name} has several statements"
            );
        }
    }
}
