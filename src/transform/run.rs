//! One transform of one committed run, in one transaction: the phases in their order. A
//! failure rolls everything back, so the database is as it was; bad input (a mapping error)
//! is not even recorded as a failed run, since it says nothing about the run.

use std::path::Path;
use std::time::Instant;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::manifest::{RunManifest, committed_runs};
use crate::sql::quote_literal;
use crate::store::runs::TransformRecord;
use crate::store::{Stage, Staging, db_error};

use super::audits::run_audits;
use super::catalogue::{LoadedModel, load_models, sql_sha256};
use super::mapping::Mapping;
use super::runner::{Runner, parts_for};
use super::{persist, raw_views, seeds, users_snapshot, warnings};

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
    /// The date filter the transform applied (also in `runs.date_filter_days`).
    pub date_filter_days: u32,
}

/// Everything a transform reads, checked before any SQL runs.
struct Inputs<'a> {
    cfg: &'a Config,
    manifest: RunManifest,
    /// `raw/<run_id>/`.
    dir: std::path::PathBuf,
    mapping: Mapping,
    models: Vec<LoadedModel>,
    sku_names: Vec<(String, String, String)>,
    sql_sha256: String,
    started: Instant,
}

/// Runs the transform for `run_id` (default: the newest committed run).
pub fn transform(cfg: &Config, run_id: Option<&str>) -> Result<Transformed> {
    let started = Instant::now();
    let raw = crate::store::DataDir::new(&cfg.pipeline.data_dir).raw();
    let run_id = pick_run(&raw, run_id)?;
    let dir = raw.join(&run_id);
    let manifest = RunManifest::read(&dir)
        .map_err(|e| Error::io(format!("reading the manifest of run {run_id}"), e))?;
    let mapping =
        Mapping::load(cfg.pipeline.mappings.as_deref()).map_err(|e| Error::Usage(e.to_string()))?;
    let models = load_models(cfg.pipeline.sql_dir.as_deref())?;
    let inputs = Inputs {
        cfg,
        manifest,
        dir,
        mapping,
        sql_sha256: sql_sha256(&models),
        models,
        sku_names: seeds::parse_sku_names(seeds::SKU_NAMES)?,
        started,
    };

    let staging = Staging::open(&cfg.pipeline.data_dir)?;
    staging.limit_memory(cfg.pipeline.memory_limit_mib)?;
    let exec = |sql: &str, doing: &str| {
        staging
            .conn
            .execute_batch(sql)
            .map_err(|e| db_error(&staging.path, doing, e))
    };
    exec("BEGIN TRANSACTION", "starting the transform")?;
    match in_transaction(&staging, &inputs) {
        Ok(t) => {
            crate::failpoint::hit("transform.before_commit");
            exec("COMMIT", "committing the transform")?;
            Ok(t)
        }
        Err(e) => {
            let _ = staging.conn.execute_batch("ROLLBACK");
            if !matches!(e, Error::Usage(_)) {
                staging.fail(&run_id, Stage::Transform, &e.to_string());
            }
            Err(e)
        }
    }
}

/// The phases, in order: run variables, raw views (or the users snapshot), seeds, models with
/// the mapping, the people stored, audits, the rest persisted, the people hash, the run's
/// record. An audit error rolls the stored people back with everything else.
fn in_transaction(staging: &Staging, inputs: &Inputs) -> Result<Transformed> {
    let manifest = &inputs.manifest;
    let concealed = manifest.concealment.concealed();
    set_run_variables(staging, manifest, inputs.cfg.date_filter_days, concealed)?;
    raw_views::create_raw_views(staging, manifest, &inputs.dir)?;
    // Incremental users: the snapshot, brought to this run, becomes `raw_users`.
    let users_sync = users_snapshot::sync_snapshot(staging, manifest, &inputs.dir)?;
    seeds::load_sku_names(staging, &inputs.sku_names)?;

    let mut runner = Runner::new(staging);
    run_models(staging, &mut runner, inputs)?;
    let t = Instant::now();
    persist::persist_people(staging)?;
    let stored = runner.count("SELECT count(*) FROM out_people", "counting people")?;
    runner.timed("marts/out_people", stored, t);

    let t = Instant::now();
    let audit_findings = run_audits(&runner, &inputs.mapping)?;
    let offending = audit_findings.iter().map(|(_, n)| n).sum();
    runner.timed("audits", offending, t);

    let count = |sql: &str| runner.count(sql, "counting people");
    let users = count("SELECT count(*) FROM int_people")?;
    let filtered_out = users - count("SELECT count(*) FROM int_people WHERE kept_by_date_filter")?;
    let kept = count("SELECT count(*) FROM out_people")?;
    let rejected = count("SELECT count(*) FROM out_rejects")?;
    let managers = warnings::UnresolvedManagers {
        not_in_run_users: count(
            "SELECT count(*) FROM int_people WHERE manager_unresolved = 'not_in_run_users'",
        )?,
        org_contacts: count(
            "SELECT count(*) FROM int_people WHERE manager_unresolved = 'org_contact'",
        )?,
    };
    let t = Instant::now();
    persist::persist(staging, &audit_findings)?;
    runner.timed("persist", rejected, t);
    let t = Instant::now();
    let people_sha256 = persist::people_sha256(staging)?;
    runner.timed("people_sha256", kept, t);
    let unmatched = unmatched_rows(staging)?;

    let warnings = warnings::run_warnings(manifest, &audit_findings, rejected, managers);
    let seconds = inputs.started.elapsed().as_secs_f64();
    staging.record_transform(&TransformRecord {
        manifest,
        date_filter_days: inputs.cfg.date_filter_days,
        users,
        kept,
        filtered_out,
        rejected,
        concealed,
        seconds,
        mapping_sha256: &inputs.mapping.sha256,
        sql_sha256: &inputs.sql_sha256,
        from_snapshot: users_sync.is_some(),
        steps: &runner.steps,
        warnings: &warnings,
    })?;

    Ok(Transformed {
        run_id: manifest.run_id.clone(),
        users,
        kept,
        filtered_out,
        rejected,
        unmatched,
        audit_findings,
        concealed,
        people_sha256,
        seconds,
        date_filter_days: inputs.cfg.date_filter_days,
    })
}

/// Run parameters, as typed variables: user text is never spliced into the models.
fn set_run_variables(
    staging: &Staging,
    manifest: &RunManifest,
    date_filter_days: u32,
    concealed: bool,
) -> Result<()> {
    staging
        .conn
        .execute_batch(&format!(
            "SET VARIABLE run_id = {}; SET VARIABLE run_date = DATE '{}'; SET VARIABLE date_filter_days = {}; SET VARIABLE concealed = {}; SET VARIABLE report_period = {}; SET VARIABLE managers_read = {}; SET VARIABLE sign_ins_read = {}; SET VARIABLE parts = 1; SET VARIABLE part = 0;",
            quote_literal(&manifest.run_id),
            manifest.run_date.format("%Y-%m-%d"),
            date_filter_days,
            concealed,
            quote_literal(&manifest.report_period),
            manifest.managers_read(),
            manifest.sign_ins_read()
        ))
        .map_err(|e| db_error(&staging.path, "setting run variables", e))
}

/// The catalogue's models in order, the compiled mapping where the catalogue puts it, and
/// partitioned models in as many parts as the users and the memory limit need.
fn run_models(staging: &Staging, runner: &mut Runner, inputs: &Inputs) -> Result<()> {
    for m in &inputs.models {
        if m.model.after_mapping {
            let columns = staging.columns("int_people")?;
            let select = inputs
                .mapping
                .compile(&columns)
                .map_err(|e| Error::Usage(e.to_string()))?;
            runner.view("mapping/int_people_mapped", &select)?;
        }
        if m.model.view {
            runner.view(m.model.name, &m.sql)?;
            continue;
        }
        let parts = if m.model.partitioned {
            let users = runner.count("SELECT count(*) FROM raw_users", "counting users")?;
            parts_for(users, inputs.cfg.pipeline.memory_limit_mib)
        } else {
            1
        };
        runner.model(m.model.name, &m.sql, parts)?;
    }
    Ok(())
}

/// Report rows that became no person, by report and reason.
fn unmatched_rows(staging: &Staging) -> Result<Vec<(String, String, u64, String)>> {
    let fail = |e| db_error(&staging.path, "reading unmatched rows", e);
    let mut stmt = staging
        .conn
        .prepare("SELECT report, reason, rows, explanation FROM int_report_rows_unmatched")
        .map_err(fail)?;
    stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, i64>(2)? as u64,
            r.get::<_, String>(3)?,
        ))
    })
    .and_then(|rows| rows.collect::<duckdb::Result<Vec<_>>>())
    .map_err(fail)
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
