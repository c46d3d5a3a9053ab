//! The staging database `<data_dir>/staging.duckdb`: opened read-write with the idempotent
//! DDL of `sql/meta/` (the only place tables are declared), or read-only for the commands that
//! only look; and the typed error every DuckDB failure becomes, with the fix chosen by the
//! kind of failure. The run tables are written by `runs.rs` only.

use std::path::{Path, PathBuf};

use arrow::array::{Array, AsArray};
use duckdb::{AccessMode, Config as DuckConfig, Connection, params};

use crate::error::{Error, Result};
use crate::store::DataDir;

/// Idempotent DDL, applied on every open, in order.
pub const META_SQL: &[(&str, &str)] = &[
    (
        "meta/001_runs.sql",
        include_str!("../../sql/meta/001_runs.sql"),
    ),
    (
        "meta/002_macros.sql",
        include_str!("../../sql/meta/002_macros.sql"),
    ),
    (
        "meta/003_report.sql",
        include_str!("../../sql/meta/003_report.sql"),
    ),
    (
        "meta/004_incremental.sql",
        include_str!("../../sql/meta/004_incremental.sql"),
    ),
    (
        "meta/005_history.sql",
        include_str!("../../sql/meta/005_history.sql"),
    ),
    (
        "meta/006_run_warnings.sql",
        include_str!("../../sql/meta/006_run_warnings.sql"),
    ),
];

pub use crate::store::data_dir::{DB_FILE, TEMP_DIR};

/// An open staging database.
pub struct Staging {
    pub conn: Connection,
    pub path: PathBuf,
}

impl Staging {
    /// Opens (creating if needed) `<data_dir>/staging.duckdb` and applies the meta DDL.
    pub fn open(data_dir: &Path) -> Result<Staging> {
        crate::fs::create_private_dir(data_dir)?;
        let path = data_dir.join(DB_FILE);
        let conn = match Connection::open(&path) {
            Ok(conn) => conn,
            Err(e) if never_finished(&path) => {
                set_aside(DataDir::new(data_dir))?;
                tracing::warn!(error = %e, "the staging database's creation never finished (the process was stopped while DuckDB wrote its header); it was set aside and created again");
                Connection::open(&path).map_err(|e| db_error(&path, "opening", e))?
            }
            Err(e) => return Err(db_error(&path, "opening", e)),
        };
        for (name, sql) in META_SQL {
            conn.execute_batch(sql)
                .map_err(|e| db_error(&path, &format!("applying sql/{name}"), e))?;
        }
        Ok(Staging { conn, path })
    }

    /// Opens `<data_dir>/staging.duckdb` read-only (it must exist): for commands that only
    /// look (`sql`, `runs`, `report`, serve's status), which then never apply DDL or take
    /// DuckDB's write lock from a running extract.
    pub fn open_read_only(data_dir: &Path) -> Result<Staging> {
        let path = data_dir.join(DB_FILE);
        if !path.is_file() {
            return Err(Error::Usage(format!(
                "no staging database at {} yet: run `m365-connector extract` (or `run`) first",
                path.display()
            )));
        }
        let cfg = DuckConfig::default()
            .access_mode(AccessMode::ReadOnly)
            .map_err(|e| db_error(&path, "configuring read-only access", e))?;
        let conn =
            Connection::open_with_flags(&path, cfg).map_err(|e| db_error(&path, "opening", e))?;
        Ok(Staging { conn, path })
    }

    /// A second connection to the same open database (same settings, memory limit included),
    /// for a query that runs on another thread beside this connection's: the load writes
    /// the Parquet export on one while it reads people for the text exports on the other.
    pub fn try_clone(&self) -> Result<Staging> {
        let conn = self
            .conn
            .try_clone()
            .map_err(|e| db_error(&self.path, "opening a second connection", e))?;
        Ok(Staging {
            conn,
            path: self.path.clone(),
        })
    }

    /// Caps DuckDB's memory at `mib` and lets it spill to `<data_dir>/.duckdb-tmp` beyond:
    /// transform and load then need the same memory at any tenant size (DuckDB's own default,
    /// 80 % of RAM, grows with the tenant until the machine runs out).
    pub fn limit_memory(&self, mib: u64) -> Result<()> {
        let dir = self.path.with_file_name(TEMP_DIR);
        crate::fs::create_private_dir(&dir)?;
        self.conn
            .execute_batch(&format!(
                "SET memory_limit = '{mib}MiB'; SET temp_directory = {};",
                crate::sql::quote_literal(&dir.display().to_string())
            ))
            .map_err(|e| db_error(&self.path, "setting the memory limit", e))
    }

    /// Whether a table (or view) exists.
    pub fn table_exists(&self, name: &str) -> Result<bool> {
        let n: i64 = self
            .conn
            .query_row(
                "SELECT count(*) FROM duckdb_tables() WHERE table_name = ? AND NOT temporary",
                params![name],
                |r| r.get(0),
            )
            .map_err(|e| db_error(&self.path, "inspecting tables", e))?;
        Ok(n > 0)
    }

    /// Column names and types of a table, in order.
    pub fn columns(&self, table: &str) -> Result<Vec<(String, String)>> {
        let mut stmt = self
            .conn
            .prepare("SELECT column_name, data_type FROM duckdb_columns() WHERE table_name = ? ORDER BY column_index")
            .map_err(|e| db_error(&self.path, "inspecting columns", e))?;
        let rows = stmt
            .query_map(params![table], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })
            .and_then(|rows| rows.collect::<duckdb::Result<Vec<_>>>())
            .map_err(|e| db_error(&self.path, "inspecting columns", e))?;
        Ok(rows)
    }

    /// Streams `sql`'s rows as text (every column cast to VARCHAR, NULL as `None`) into `row`
    /// in Arrow batches, so no result is ever held whole. `row` returns `Ok(false)` to stop.
    pub fn for_each_text_row(
        &self,
        sql: &str,
        doing: &str,
        mut row: impl FnMut(&[Option<&str>]) -> Result<bool>,
    ) -> Result<()> {
        let fail = |e| db_error(&self.path, doing, e);
        let mut stmt = self.conn.prepare(sql).map_err(fail)?;
        for batch in stmt.stream_arrow([]).map_err(fail)? {
            let batch = batch.map_err(fail)?;
            let arrays = batch
                .columns()
                .iter()
                .map(|c| arrow::compute::cast(c, &arrow::datatypes::DataType::Utf8))
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| Error::Internal(format!("{doing} in {}: {e}", self.path.display())))?;
            let columns: Vec<_> = arrays.iter().map(|c| c.as_string::<i32>()).collect();
            let mut cells: Vec<Option<&str>> = Vec::with_capacity(columns.len());
            for i in 0..batch.num_rows() {
                cells.clear();
                cells.extend(columns.iter().map(|c| c.is_valid(i).then(|| c.value(i))));
                if !row(&cells)? {
                    return Ok(());
                }
            }
        }
        Ok(())
    }
}

/// Bytes of DuckDB's file header (a main header and two database headers of 4 KiB): a shorter
/// file is one whose creation was cut off, and it cannot hold any data.
const DUCKDB_HEADER_BYTES: u64 = 3 * 4096;

/// Whether the database file exists but is shorter than DuckDB's header.
fn never_finished(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.len() < DUCKDB_HEADER_BYTES)
}

/// Moves a database whose creation never finished, and its log, out of the way (kept, not
/// deleted: nothing is ever removed that might be someone's data).
fn set_aside(dir: DataDir) -> Result<()> {
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ").to_string();
    let aside = dir.db_set_aside(&stamp);
    std::fs::rename(dir.db(), &aside)
        .map_err(|e| Error::io(format!("setting aside {}", dir.db().display()), e))?;
    let wal = dir.db_wal();
    if wal.exists() {
        let to = aside.with_file_name(format!(
            "{}.wal",
            aside.file_name().unwrap_or_default().to_string_lossy()
        ));
        std::fs::rename(&wal, &to)
            .map_err(|e| Error::io(format!("setting aside {}", wal.display()), e))?;
    }
    Ok(())
}

/// What kind of failure a DuckDB error is, from the exception type DuckDB names first in its
/// message (`Out of Memory Error: ...`, `IO Error: ...`): the fix an admin needs depends on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbErrorKind {
    /// The memory limit was reached and spilling could not help.
    OutOfMemory,
    /// Another process holds the database file's lock.
    Locked,
    /// The disk under the data directory is full.
    DiskFull,
    /// The connector's user may not read or write a file DuckDB needs.
    PermissionDenied,
    /// Anything else: a bug, or a model or query that is wrong.
    Other,
}

impl DbErrorKind {
    pub fn of(e: &duckdb::Error) -> DbErrorKind {
        match e {
            duckdb::Error::DuckDBFailure(_, Some(message)) => DbErrorKind::of_message(message),
            _ => DbErrorKind::Other,
        }
    }

    fn of_message(message: &str) -> DbErrorKind {
        let (kind, detail) = message.split_once(" Error:").unwrap_or(("", message));
        match kind.trim() {
            "Out of Memory" => DbErrorKind::OutOfMemory,
            "IO" if detail.contains("lock") => DbErrorKind::Locked,
            "IO" if detail.contains("No space left") => DbErrorKind::DiskFull,
            "IO" if detail.contains("Permission denied") => DbErrorKind::PermissionDenied,
            _ => DbErrorKind::Other,
        }
    }

    /// The fix, appended to the error (`""` when there is nothing an admin can do).
    pub fn hint(self) -> &'static str {
        match self {
            DbErrorKind::OutOfMemory => {
                " (DuckDB reached [pipeline] memory_limit_mib: raise it in the connector file, or free disk space for data_dir/.duckdb-tmp where it spills)"
            }
            DbErrorKind::Locked => {
                " (another process has the staging database open: close the duckdb CLI or the other m365-connector, then retry)"
            }
            DbErrorKind::DiskFull => {
                " (the disk holding data_dir is full: free space there; DuckDB writes staging.duckdb, its WAL and .duckdb-tmp in it)"
            }
            DbErrorKind::PermissionDenied => {
                " (the connector's user may not use this file: give it data_dir and everything in it, owner-only)"
            }
            DbErrorKind::Other => "",
        }
    }
}

/// A DuckDB failure while `doing` something in the database at `path`.
pub fn db_error(path: &Path, doing: &str, source: duckdb::Error) -> Error {
    Error::Store {
        doing: doing.to_string(),
        path: path.to_path_buf(),
        hint: DbErrorKind::of(&source).hint(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(message: &str) -> DbErrorKind {
        DbErrorKind::of_message(message)
    }

    #[test]
    fn the_kind_picks_the_fix() {
        let oom = kind("Out of Memory Error: failed to pin block of size 256.0 KiB");
        assert_eq!(oom, DbErrorKind::OutOfMemory);
        assert!(oom.hint().contains("[pipeline] memory_limit_mib"));
        assert!(oom.hint().contains(".duckdb-tmp"));
        let locked = kind(
            "IO Error: Could not set lock on file \"/d/staging.duckdb\": Conflicting lock is held in /usr/bin/duckdb (PID 7)",
        );
        assert_eq!(locked, DbErrorKind::Locked);
        assert!(locked.hint().contains("another process"));
        assert_eq!(
            kind("IO Error: Could not write file \"/d/.duckdb-tmp/x\": No space left on device"),
            DbErrorKind::DiskFull
        );
        assert_eq!(
            kind("IO Error: Cannot open file \"/d/staging.duckdb\": Permission denied"),
            DbErrorKind::PermissionDenied
        );
        // A column named "lock" in a wrong query is not a lock conflict.
        assert_eq!(
            kind("Binder Error: column \"lock\" not found"),
            DbErrorKind::Other
        );
        assert_eq!(DbErrorKind::Other.hint(), "");
    }

    #[test]
    fn a_database_cut_off_while_created_is_set_aside_and_a_real_one_never_is() {
        let dir = tempfile::tempdir().unwrap();
        let d = DataDir::new(dir.path());
        std::fs::write(d.db(), b"DUCK\0\0\0partial header").unwrap();
        std::fs::write(d.db_wal(), b"torn").unwrap();
        let staging = Staging::open(dir.path()).unwrap();
        assert!(staging.table_exists("runs").unwrap());
        let aside: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".incomplete-"))
            .collect();
        assert_eq!(
            aside.len(),
            2,
            "the file and its log are kept aside: {aside:?}"
        );
        drop(staging);

        // A file as long as a header is not a cut-off creation: it is never moved.
        let other = tempfile::tempdir().unwrap();
        let d = DataDir::new(other.path());
        std::fs::write(d.db(), vec![7u8; 3 * 4096]).unwrap();
        let Err(e) = Staging::open(other.path()) else {
            panic!("a damaged full-size file opened");
        };
        assert!(matches!(e, Error::Store { .. }), "{e}");
        assert_eq!(std::fs::read_dir(other.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_real_failure_names_what_was_done_and_where() {
        let dir = std::env::temp_dir().join(format!("m365-db-{}", crate::random::u64()));
        let staging = Staging::open(&dir).unwrap();
        let e = staging
            .conn
            .execute_batch("SELECT * FROM no_such_table")
            .unwrap_err();
        assert_eq!(DbErrorKind::of(&e), DbErrorKind::Other);
        let text = db_error(&staging.path, "reading runs", e).to_string();
        assert!(text.starts_with("reading runs in "), "{text}");
        assert!(text.contains("staging.duckdb: Catalog Error"), "{text}");
        drop(staging);
        let _ = std::fs::remove_dir_all(dir);
    }
}
