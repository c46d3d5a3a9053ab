//! The data directory's layout, a contract (DESIGN.md, "Data directory"): every path in it
//! is spelled here and nowhere else.
//!
//! ```text
//! <data_dir>/.lock                     held by the one process extracting this connector
//! <data_dir>/raw/<run_id>/             a committed extract (renamed into place, never changed)
//! <data_dir>/raw/.partial-<run_id>/    an extract under way or interrupted (resume reads it)
//! <data_dir>/staging.duckdb            the staging database (rebuildable from raw/)
//! <data_dir>/staging.duckdb.incomplete-<t>  one whose creation was cut off, set aside
//! <data_dir>/.duckdb-tmp/              DuckDB's spill space
//! <data_dir>/out/<run_id>/             a committed export (and the run's report)
//! <data_dir>/out/.tmp-<run_id>-<n>/    an export being written (`.old-*`: one being replaced)
//! ```

use std::path::{Path, PathBuf};

/// The staging database's file name.
pub const DB_FILE: &str = "staging.duckdb";
/// DuckDB's spill directory's name.
pub const TEMP_DIR: &str = ".duckdb-tmp";
/// Prefix of uncommitted run directories under `raw/`.
pub const PARTIAL_PREFIX: &str = ".partial-";
/// Prefixes of an export being written, or being replaced, under `out/`.
const EXPORT_TEMP_PREFIXES: [&str; 2] = [".tmp-", ".old-"];

/// A connector's data directory (`[pipeline] data_dir`).
#[derive(Debug, Clone, Copy)]
pub struct DataDir<'a>(&'a Path);

impl<'a> DataDir<'a> {
    pub fn new(root: &'a Path) -> DataDir<'a> {
        DataDir(root)
    }

    pub fn root(&self) -> &Path {
        self.0
    }

    /// The connector lock's file.
    pub fn lock(&self) -> PathBuf {
        self.0.join(".lock")
    }

    /// The raw-landing root.
    pub fn raw(&self) -> PathBuf {
        self.0.join("raw")
    }

    /// Where run `run_id` is landed before it is committed.
    pub fn partial_run(&self, run_id: &str) -> PathBuf {
        self.raw().join(format!("{PARTIAL_PREFIX}{run_id}"))
    }

    /// The run id of a partial run's directory name, if it is one.
    pub fn partial_run_id(name: &str) -> Option<&str> {
        name.strip_prefix(PARTIAL_PREFIX)
    }

    pub fn db(&self) -> PathBuf {
        self.0.join(DB_FILE)
    }

    /// DuckDB's write-ahead log next to the database.
    pub fn db_wal(&self) -> PathBuf {
        self.0.join(format!("{DB_FILE}.wal"))
    }

    /// Where a database file whose creation never finished is set aside (`stamp`: when).
    pub fn db_set_aside(&self, stamp: &str) -> PathBuf {
        self.0.join(format!("{DB_FILE}.incomplete-{stamp}"))
    }

    pub fn db_temp(&self) -> PathBuf {
        self.0.join(TEMP_DIR)
    }

    /// The exports' root.
    pub fn out(&self) -> PathBuf {
        self.0.join("out")
    }

    /// Run `run_id`'s committed export (and report).
    pub fn export(&self, run_id: &str) -> PathBuf {
        self.out().join(run_id)
    }

    /// A fresh folder to write run `run_id`'s export in, beside where it goes.
    pub fn export_temp(&self, run_id: &str, nonce: u32) -> PathBuf {
        self.out()
            .join(format!("{}{run_id}-{nonce:08x}", EXPORT_TEMP_PREFIXES[0]))
    }

    /// Whether a name under `out/` is an interrupted export's leftover.
    pub fn is_export_leftover(name: &str) -> bool {
        EXPORT_TEMP_PREFIXES.iter().any(|p| name.starts_with(p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_layout_is_the_documented_one() {
        let d = DataDir::new(Path::new("/d"));
        assert_eq!(d.raw(), Path::new("/d/raw"));
        assert_eq!(d.partial_run("R1"), Path::new("/d/raw/.partial-R1"));
        assert_eq!(DataDir::partial_run_id(".partial-R1"), Some("R1"));
        assert_eq!(DataDir::partial_run_id("R1"), None);
        assert_eq!(d.db(), Path::new("/d/staging.duckdb"));
        assert_eq!(d.db_temp(), Path::new("/d/.duckdb-tmp"));
        assert_eq!(d.lock(), Path::new("/d/.lock"));
        assert_eq!(d.export("R1"), Path::new("/d/out/R1"));
        assert_eq!(
            d.export_temp("R1", 255),
            Path::new("/d/out/.tmp-R1-000000ff")
        );
        assert!(DataDir::is_export_leftover(".tmp-R1-000000ff"));
        assert!(DataDir::is_export_leftover(".old-R1"));
        assert!(!DataDir::is_export_leftover("R1"));
    }
}
