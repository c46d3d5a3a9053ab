//! The users snapshot of an incremental connector: `users_current`, the directory as of the
//! run in `delta_links.run_id`. A full sync replaces it, a delta run merges its changes (the
//! last occurrence of an id wins, `@removed` deletes it and becomes a row of
//! `users_tombstones`). The run's delta link is stored in `delta_links` in the same
//! transaction, so the link never runs ahead of the snapshot: a run that was extracted but
//! never transformed is simply fetched again from the older link by the next run (delta
//! queries are idempotent), and no change is lost. The models then read the snapshot as
//! `raw_users`, so everything downstream is the same as for a full run.

use std::path::Path;

use crate::error::{Error, Result};
use crate::manifest::{RunManifest, StreamManifest, SyncKind, committed_runs};
use crate::sql::quote_literal;
use crate::store::delta_links::{store_link, stored_link};
use crate::store::{Staging, db_error};
use crate::streams::Stream;

/// How a transform brought `users_current` to its run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SnapshotSync {
    pub sync: String,
    /// Users records of the run (changes and tombstones for a delta).
    pub rows_fetched: u64,
    /// Users inserted or replaced by the run (the last occurrence of each id).
    pub upserted: u64,
    /// `@removed` entries of the run.
    pub removed: u64,
    /// Users in the snapshot afterwards.
    pub users: u64,
    /// Earlier runs applied again first, oldest first (when the snapshot was not at the run
    /// this one continues: an older run transformed again, or a lost database).
    pub replayed: Vec<String>,
}

/// For an incremental run, brings the snapshot to `manifest`'s run, records tombstones and
/// the delta link, and points `raw_users` at the snapshot. `None` (and nothing touched) for
/// a run that was not incremental. Runs inside the transform's transaction.
pub fn sync_snapshot(
    staging: &Staging,
    manifest: &RunManifest,
    dir: &Path,
) -> Result<Option<SnapshotSync>> {
    let Some(users) = manifest.streams.get(Stream::Users.name()) else {
        return Ok(None);
    };
    let Some(sync) = users.delta.sync else {
        return Ok(None);
    };
    let connector = manifest.connector.as_str();
    let raw = dir.parent().unwrap_or(dir);
    let snapshot_run = stored_link(staging, connector)?.map(|s| s.run_id);
    let chain = chain(raw, manifest, snapshot_run.as_deref())?;
    let mut last = (0, 0);
    for (run_id, run_dir, s) in &chain {
        last = apply(staging, connector, run_id, run_dir, s)?;
    }
    let conn = &staging.conn;
    let path = &staging.path;
    // Typed once into a temporary table (the staging views read the users several times);
    // inside this transform it hides the persistent `raw_users` view of the run's changes.
    let snapshot = format!(
        "(SELECT _run_id, _stream, _page, (row_number() OVER (ORDER BY id) - 1)::BIGINT AS _row,
                _extracted_at, record
         FROM users_current WHERE connector = {})",
        quote_literal(connector)
    );
    conn.execute_batch(&format!(
        "CREATE OR REPLACE TEMP TABLE raw_users_snapshot AS
         SELECT * EXCLUDE (record) FROM ({});
         CREATE OR REPLACE TEMP VIEW raw_users AS SELECT * FROM raw_users_snapshot;",
        super::raw_views::users_from_records(&snapshot)
    ))
    .map_err(|e| db_error(path, "reading the users snapshot", e))?;
    let snapshot_users: i64 = conn
        .query_row(
            "SELECT count(*) FROM users_current WHERE connector = ?",
            duckdb::params![connector],
            |r| r.get(0),
        )
        .map_err(|e| db_error(path, "counting the users snapshot", e))?;
    store_link(
        staging,
        connector,
        &manifest.tenant_id,
        users.delta.delta_link.as_deref(),
        &manifest.run_id,
        users.managers,
    )?;
    let replayed: Vec<String> = chain
        .iter()
        .map(|(id, _, _)| id.clone())
        .filter(|id| *id != manifest.run_id)
        .collect();
    conn.execute(
        "DELETE FROM run_users_sync WHERE run_id = ?",
        duckdb::params![manifest.run_id],
    )
    .and_then(|_| {
        conn.execute(
            "INSERT INTO run_users_sync VALUES (?, ?, ?, ?, ?, ?, ?, ?, list_filter(string_split(?, ','), lambda x: x <> ''), ?)",
            duckdb::params![
                manifest.run_id,
                connector,
                sync.name(),
                users.delta.delta_from,
                users.rows,
                last.0,
                last.1,
                snapshot_users,
                replayed.join(","),
                users.delta.resync
            ],
        )
    })
    .map_err(|e| db_error(path, "recording the users sync", e))?;
    if !replayed.is_empty() {
        tracing::info!(run_id = %manifest.run_id, replayed = %replayed.join(", "), "rebuilt the users snapshot from earlier runs");
    }
    Ok(Some(SnapshotSync {
        sync: sync.name().to_string(),
        rows_fetched: users.rows,
        upserted: last.0,
        removed: last.1,
        users: snapshot_users as u64,
        replayed,
    }))
}

type ChainLink = (String, std::path::PathBuf, StreamManifest);

/// The runs to apply to the snapshot, oldest first, to bring it to `target`'s run: just the
/// target when the snapshot is at the run it continues (the usual case), at the target itself
/// (a transform run again: merging the same changes twice changes nothing), or when the
/// target is a full sync; otherwise back through `delta_from` to the snapshot's run or to a
/// full sync.
fn chain(raw: &Path, target: &RunManifest, snapshot_run: Option<&str>) -> Result<Vec<ChainLink>> {
    let mut out: Vec<ChainLink> = Vec::new();
    let mut run_id = target.run_id.clone();
    let mut m = target.clone();
    loop {
        let s = m
            .streams
            .get(Stream::Users.name())
            .cloned()
            .unwrap_or_default();
        let sync = s.delta.sync;
        let from = s.delta.delta_from.clone();
        out.push((run_id.clone(), raw.join(&run_id), s));
        let at_snapshot = snapshot_run == Some(run_id.as_str());
        if sync == Some(SyncKind::Full) || (out.len() == 1 && at_snapshot) {
            break;
        }
        if sync != Some(SyncKind::Delta) {
            return Err(Error::Usage(format!(
                "run {run_id} has no incremental users sync, yet run {} continues it; extract a new run",
                target.run_id
            )));
        }
        let Some(from) = from else {
            return Err(Error::Usage(format!(
                "run {run_id} holds users changes but does not say which run they apply to; extract a new run"
            )));
        };
        if snapshot_run == Some(from.as_str()) {
            break;
        }
        if out.len() > 100_000 || out.iter().any(|(id, _, _)| *id == from) {
            return Err(Error::Usage(format!(
                "the users delta runs before {} form a loop at {from}; extract a new run",
                target.run_id
            )));
        }
        let committed = committed_runs(raw)
            .map_err(|e| Error::io(format!("listing runs in {}", raw.display()), e))?;
        if !committed.contains(&from) {
            return Err(Error::Usage(format!(
                "run {} holds the users changes since run {from}, but the users snapshot is at run {} and run {from} is no longer in {} to rebuild it from: transform the newest run instead, or run `m365-connector run` to sync again",
                target.run_id,
                snapshot_run.unwrap_or("(none)"),
                raw.display()
            )));
        }
        m = RunManifest::read(&raw.join(&from))
            .map_err(|e| Error::io(format!("reading the manifest of run {from}"), e))?;
        run_id = from;
    }
    out.reverse();
    Ok(out)
}

/// Applies one run's users to the snapshot: a full sync replaces it, a delta merges into it.
/// Returns (users upserted, `@removed` entries).
fn apply(
    staging: &Staging,
    connector: &str,
    run_id: &str,
    dir: &Path,
    s: &StreamManifest,
) -> Result<(u64, u64)> {
    let conn = &staging.conn;
    let path = &staging.path;
    let files: Vec<String> = s
        .files
        .iter()
        .map(|f| quote_literal(&dir.join(&f.file).display().to_string()))
        .collect();
    if files.is_empty() {
        return Err(Error::Usage(format!(
            "run {run_id} lists no users files in its manifest; extract a new run"
        )));
    }
    let full = s.delta.sync == Some(SyncKind::Full);
    let c = quote_literal(connector);
    let r = quote_literal(run_id);
    // A delta record carries `manager@delta` only when the manager changed (or on the first
    // round): one without it keeps the manager the snapshot had, so it is carried over.
    let replace = if full {
        format!("DELETE FROM users_current WHERE connector = {c};")
    } else {
        format!(
            "UPDATE _users_in AS n
                 SET record = json_merge_patch(n.record, json_object(
                     'manager@delta', json_extract(o.record, '$.\"manager@delta\"'),
                     'manager', json_extract(o.record, '$.manager')))::VARCHAR
             FROM users_current o
             WHERE o.connector = {c} AND o.id = n.id AND NOT n.removed
               AND json_extract(n.record, '$.\"manager@delta\"') IS NULL
               AND json_extract(n.record, '$.manager') IS NULL
               AND (json_extract(o.record, '$.\"manager@delta\"') IS NOT NULL
                    OR json_extract(o.record, '$.manager') IS NOT NULL);
             DELETE FROM users_current WHERE connector = {c}
                 AND id IN (SELECT id FROM _users_in WHERE id IS NOT NULL);"
        )
    };
    let sql = format!(
        "CREATE OR REPLACE TEMP TABLE _users_in AS
         SELECT json_extract_string(record, '$.id') AS id,
                json_extract(record, '$.\"@removed\"') IS NOT NULL AS removed,
                json_extract_string(record, '$.\"@removed\".reason') AS reason,
                record, _run_id, _stream, _page, _row, _extracted_at
         FROM read_parquet([{files}]);
         {replace}
         INSERT INTO users_current
         SELECT {c}, id, record, _run_id, _stream, _page, _row, _extracted_at
         FROM _users_in
         WHERE id IS NOT NULL
         QUALIFY row_number() OVER (PARTITION BY id ORDER BY _page DESC, _row DESC) = 1
             AND NOT removed;
         DELETE FROM users_tombstones WHERE run_id = {r} AND connector = {c};
         INSERT INTO users_tombstones
         SELECT DISTINCT {r}, {c}, id, reason FROM _users_in WHERE removed AND id IS NOT NULL
         ORDER BY ALL;",
        files = files.join(", ")
    );
    conn.execute_batch(&sql)
        .map_err(|e| db_error(path, &format!("merging the users of run {run_id}"), e))?;
    let (removed, without_id): (i64, i64) = conn
        .query_row(
            "SELECT count(*) FILTER (WHERE removed), count(*) FILTER (WHERE id IS NULL)
             FROM _users_in",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .map_err(|e| db_error(path, "counting the users merged", e))?;
    if without_id > 0 {
        tracing::warn!(
            run_id,
            records = without_id,
            "users records without an id were left out of the snapshot"
        );
    }
    let upserted: i64 = conn
        .query_row(
            "SELECT count(*) FROM users_current WHERE connector = ? AND _run_id = ?",
            duckdb::params![connector, run_id],
            |r| r.get(0),
        )
        .map_err(|e| db_error(path, "counting the users merged", e))?;
    conn.execute_batch("DROP TABLE _users_in")
        .map_err(|e| db_error(path, "merging users", e))?;
    Ok((upserted as u64, removed as u64))
}
