//! `delta_links`: per connector, the users delta link of the run its users snapshot is at
//! (declared in `sql/meta/004_incremental.sql`). Extract reads it to plan the users walk;
//! transform stores it with the snapshot, in the same transaction.

use crate::error::Result;
use crate::store::{Staging, db_error};
use crate::streams::user_select;

/// A connector's row of `delta_links`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredLink {
    /// `None`: the run in `run_id` ended without a delta link; the next run syncs in full.
    pub link: Option<String>,
    /// The run whose users `users_current` holds.
    pub run_id: String,
    pub tenant_id: String,
    pub user_select: String,
}

/// The stored delta link of `connector`, if any.
pub fn stored_link(staging: &Staging, connector: &str) -> Result<Option<StoredLink>> {
    let mut stmt = staging
        .conn
        .prepare(
            "SELECT link, run_id, coalesce(tenant_id, ''), coalesce(user_select, '')
             FROM delta_links WHERE connector = ? ORDER BY stored_at DESC LIMIT 1",
        )
        .map_err(|e| db_error(&staging.path, "reading the stored delta link", e))?;
    let mut rows = stmt
        .query_map(duckdb::params![connector], |r| {
            Ok(StoredLink {
                link: r.get(0)?,
                run_id: r.get(1)?,
                tenant_id: r.get(2)?,
                user_select: r.get(3)?,
            })
        })
        .map_err(|e| db_error(&staging.path, "reading the stored delta link", e))?;
    rows.next()
        .transpose()
        .map_err(|e| db_error(&staging.path, "reading the stored delta link", e))
}

/// Replaces `connector`'s stored link with `link` (none: the run ended without one) for the
/// snapshot now at `run_id`; `manager` says whether its walk selected the manager.
pub fn store_link(
    staging: &Staging,
    connector: &str,
    tenant_id: &str,
    link: Option<&str>,
    run_id: &str,
    manager: bool,
) -> Result<()> {
    let conn = &staging.conn;
    conn.execute(
        "DELETE FROM delta_links WHERE connector = ?",
        duckdb::params![connector],
    )
    .and_then(|_| {
        conn.execute(
            "INSERT INTO delta_links VALUES (?, ?, ?, ?, ?, now()::TIMESTAMP)",
            duckdb::params![connector, tenant_id, user_select(manager), link, run_id],
        )
    })
    .map_err(|e| db_error(&staging.path, "storing the delta link", e))?;
    Ok(())
}
