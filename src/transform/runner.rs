//! The model runner: each model's SELECT becomes a view or a table named after its file (a
//! table in parts when the catalogue says so), and every table is timed for `run_steps`.

use std::time::Instant;

use crate::error::Result;
use crate::sql::quote_ident;
use crate::store::runs::Step;
use crate::store::{Staging, db_error};

/// Users per part of a partitioned model (`int_people`) for each MiB of
/// `[pipeline] memory_limit_mib`: its nine per-user hash tables take about 1 KiB per user, and
/// DuckDB cannot spill them below ~1 GiB at a million users. 1024 MiB: 256,000 users per part.
const USERS_PER_PART_PER_MIB: u64 = 250;

/// Forces the number of `int_people` parts (tests and tuning; unset in production).
pub const PARTS_ENV: &str = "M365_CONNECTOR_PEOPLE_PARTS";

/// How many parts a partitioned model is built in, so that memory does not grow with the
/// tenant.
pub fn parts_for(users: u64, memory_limit_mib: u64) -> u64 {
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

/// Runs models in one open transaction and keeps the steps it timed.
pub struct Runner<'a> {
    staging: &'a Staging,
    pub steps: Vec<Step>,
}

impl<'a> Runner<'a> {
    pub fn new(staging: &'a Staging) -> Runner<'a> {
        Runner {
            staging,
            steps: Vec::new(),
        }
    }

    /// Makes `name`'s view from `sql`: nothing runs until it is read, so no step is timed.
    /// A table of that name (a database transformed before staging became views) is dropped.
    pub fn view(&mut self, name: &str, sql: &str) -> Result<()> {
        let table = name.rsplit('/').next().unwrap_or(name);
        self.replace_kind(table, "BASE TABLE", "TABLE")?;
        self.staging
            .conn
            .execute_batch(&format!(
                "CREATE OR REPLACE VIEW {} AS\n{sql}",
                quote_ident(table)
            ))
            .map_err(|e| {
                db_error(
                    &self.staging.path,
                    &format!("creating view sql/{name}.sql"),
                    e,
                )
            })
    }

    /// Makes `name`'s table from `sql`, in `parts` parts (`getvariable('part')` tells the SQL
    /// which); returns its rows.
    pub fn model(&mut self, name: &str, sql: &str, parts: u64) -> Result<u64> {
        let t = Instant::now();
        let conn = &self.staging.conn;
        let path = &self.staging.path;
        let table = name.rsplit('/').next().unwrap_or(name);
        self.replace_kind(table, "VIEW", "VIEW")?;
        for part in 0..parts {
            let statement = if part == 0 {
                format!("CREATE OR REPLACE TABLE {} AS\n{sql}", quote_ident(table))
            } else {
                format!("INSERT INTO {}\n{sql}", quote_ident(table))
            };
            conn.execute_batch(&format!(
                "SET VARIABLE parts = {parts}; SET VARIABLE part = {part};\n{statement}"
            ))
            .map_err(|e| db_error(path, &format!("running model sql/{name}.sql"), e))?;
        }
        conn.execute_batch("SET VARIABLE parts = 1; SET VARIABLE part = 0;")
            .map_err(|e| db_error(path, "resetting the model parts", e))?;
        let rows = self.count(
            &format!("SELECT count(*) FROM {}", quote_ident(table)),
            "counting rows",
        )?;
        crate::failpoint::hit("transform.model");
        self.timed(name, rows, t);
        Ok(rows)
    }

    /// Drops `table` when it exists as the other kind of relation (`kind`, dropped with
    /// `DROP {drop}`), so `CREATE OR REPLACE` can make it.
    fn replace_kind(&self, table: &str, kind: &str, drop: &str) -> Result<()> {
        let fail = |e| db_error(&self.staging.path, "replacing a model", e);
        let n: i64 = self
            .staging
            .conn
            .query_row(
                "SELECT count(*) FROM information_schema.tables
                 WHERE table_catalog = current_database() AND table_schema = 'main'
                   AND table_name = ? AND table_type = ?",
                duckdb::params![table, kind],
                |r| r.get(0),
            )
            .map_err(fail)?;
        if n > 0 {
            self.staging
                .conn
                .execute_batch(&format!("DROP {drop} {}", quote_ident(table)))
                .map_err(fail)?;
        }
        Ok(())
    }

    /// Records a step that is not a model (audits, persisting, hashing).
    pub fn timed(&mut self, name: &str, rows: u64, since: Instant) {
        self.steps.push(Step {
            name: name.to_string(),
            rows,
            seconds: since.elapsed().as_secs_f64(),
        });
    }

    /// The single count `sql` selects.
    pub fn count(&self, sql: &str, doing: &str) -> Result<u64> {
        self.staging
            .conn
            .query_row(sql, [], |r| r.get::<_, i64>(0))
            .map(|n| n.max(0) as u64)
            .map_err(|e| db_error(&self.staging.path, doing, e))
    }
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
}
