//! `report`: one run as a self-contained HTML page an admin can open offline, print, or mail:
//! who was imported and why others were left out, licences that could be reclaimed, activity
//! per service, Office usage, identity hygiene (managers, sign-ins, shared addresses,
//! directory sync), warnings with their fixes, timings, and the last runs.
//!
//! Every figure on the page is the result of a query under `sql/report/` (one SELECT per
//! section, parameterised by the `run_id` variable), so `m365-connector sql` gives the same
//! numbers. The queries read the staging database read-only: the per-run aggregates they need
//! are persisted by the transform (`usage_by_service`, `last_seen_histogram`,
//! `office_usage`, `license_counts`, `identity_hygiene`), never the wide per-user tables.
//!
//! [`page`] turns the query results into what each section shows, which the templates under
//! `templates/report/` lay out ([`crate::html`], escaping every value from data); [`svg`]
//! draws the charts.

mod page;
mod svg;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use duckdb::Connection;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::sql::quote_literal;
use crate::store::db_error;

/// One report query: `sql/report/<name>.sql`.
#[derive(Debug, Clone, Copy)]
pub struct Query {
    /// File stem without the `report_` prefix; also the section's `data-metric` prefix.
    pub name: &'static str,
    pub sql: &'static str,
    /// Whether the first column names the row (`data-metric="<name>.<key>.<column>"`) or the
    /// query returns one row (`data-metric="<name>.<column>"`).
    pub keyed: bool,
}

macro_rules! report_query {
    ($name:literal, $keyed:expr) => {
        Query {
            name: $name,
            sql: include_str!(concat!("../../sql/report/report_", $name, ".sql")),
            keyed: $keyed,
        }
    };
}

/// The report queries, in page order.
pub const QUERIES: &[Query] = &[
    report_query!("run", false),
    report_query!("funnel", false),
    report_query!("rejects", true),
    report_query!("unmatched", true),
    report_query!("licences", true),
    report_query!("activity", true),
    report_query!("last_seen", true),
    report_query!("activations", true),
    report_query!("apps", true),
    report_query!("identity", true),
    report_query!("warnings", true),
    report_query!("stages", true),
    report_query!("requests", true),
    report_query!("history", true),
];

/// The file name of a run's report, next to its exports in `out/<run_id>/`.
pub const REPORT_FILE: &str = "report.html";

/// One value of a query result.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Null,
    Bool(bool),
    Int(i64),
    Num(f64),
    Text(String),
}

impl Cell {
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Cell::Int(n) => Some(*n),
            Cell::Num(f) => Some(*f as i64),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Cell::Int(n) => Some(*n as f64),
            Cell::Num(f) => Some(*f),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> bool {
        matches!(self, Cell::Bool(true))
    }

    /// The value as text ("" for NULL).
    pub fn text(&self) -> String {
        match self {
            Cell::Null => String::new(),
            Cell::Bool(b) => b.to_string(),
            Cell::Int(n) => n.to_string(),
            Cell::Num(f) => f.to_string(),
            Cell::Text(s) => s.clone(),
        }
    }

    fn from_duckdb(v: duckdb::types::Value) -> Cell {
        use duckdb::types::Value as V;
        match v {
            V::Null => Cell::Null,
            V::Boolean(b) => Cell::Bool(b),
            V::TinyInt(n) => Cell::Int(n.into()),
            V::SmallInt(n) => Cell::Int(n.into()),
            V::Int(n) => Cell::Int(n.into()),
            V::BigInt(n) => Cell::Int(n),
            V::UTinyInt(n) => Cell::Int(n.into()),
            V::USmallInt(n) => Cell::Int(n.into()),
            V::UInt(n) => Cell::Int(n.into()),
            V::UBigInt(n) => i64::try_from(n).map_or(Cell::Num(n as f64), Cell::Int),
            V::HugeInt(n) => i64::try_from(n).map_or(Cell::Num(n as f64), Cell::Int),
            V::Float(f) => Cell::Num(f.into()),
            V::Double(f) => Cell::Num(f),
            V::Decimal(d) => d
                .to_string()
                .parse()
                .map_or_else(|_| Cell::Text(d.to_string()), Cell::Num),
            V::Text(s) | V::Enum(s) => Cell::Text(s),
            V::Date32(days) => Cell::Text(
                chrono::DateTime::from_timestamp(i64::from(days) * 86_400, 0)
                    .map(|d| d.date_naive().to_string())
                    .unwrap_or_default(),
            ),
            other => Cell::Text(format!("{other:?}")),
        }
    }
}

/// A query result.
#[derive(Debug, Clone, Default)]
pub struct Table {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Cell>>,
    /// The tables the query reads do not exist yet (a database from before the report).
    pub missing: bool,
}

impl Table {
    /// Row `row`'s value of column `name` (NULL when there is no such row or column).
    pub fn get(&self, row: usize, name: &str) -> &Cell {
        const NULL: &Cell = &Cell::Null;
        self.columns
            .iter()
            .position(|c| c == name)
            .and_then(|i| self.rows.get(row).and_then(|r| r.get(i)))
            .unwrap_or(NULL)
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
}

/// Every query's result for one run.
#[derive(Debug, Clone)]
pub struct ReportData {
    pub run_id: String,
    pub tables: BTreeMap<&'static str, Table>,
}

impl ReportData {
    /// The result of query `name` (empty when unknown).
    pub fn table(&self, name: &str) -> &Table {
        static EMPTY: Table = Table {
            columns: Vec::new(),
            rows: Vec::new(),
            missing: false,
        };
        self.tables.get(name).unwrap_or(&EMPTY)
    }
}

/// Runs every report query for `run_id` on `conn`.
pub fn gather(conn: &Connection, db: &Path, run_id: &str) -> Result<ReportData> {
    conn.execute_batch(&format!("SET VARIABLE run_id = {}", quote_literal(run_id)))
        .map_err(|e| db_error(db, "setting the report's run", e))?;
    let mut tables = BTreeMap::new();
    for q in QUERIES {
        let table = match run_query(conn, q.sql) {
            Ok(t) => t,
            // A database the transform has not written the report tables to yet: the
            // section says how to fill it instead of failing the whole page.
            Err(e) if e.to_string().contains("does not exist") => Table {
                missing: true,
                ..Table::default()
            },
            Err(e) => {
                return Err(Error::Internal(format!(
                    "report query sql/report/report_{}.sql failed on {}: {e}",
                    q.name,
                    db.display()
                )));
            }
        };
        tables.insert(q.name, table);
    }
    Ok(ReportData {
        run_id: run_id.to_string(),
        tables,
    })
}

fn run_query(conn: &Connection, sql: &str) -> duckdb::Result<Table> {
    let mut stmt = conn.prepare(sql)?;
    let mut rows = stmt.query([])?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        let n = row.as_ref().column_count();
        let mut cells = Vec::with_capacity(n);
        for i in 0..n {
            cells.push(Cell::from_duckdb(row.get::<_, duckdb::types::Value>(i)?));
        }
        out.push(cells);
    }
    drop(rows);
    let columns = stmt.column_names();
    Ok(Table {
        columns,
        rows: out,
        missing: false,
    })
}

/// The page for `data`.
pub fn render(data: &ReportData) -> Result<String> {
    page::page(data).map_err(|e| Error::Internal(format!("laying out the report: {e}")))
}

/// A rendered report.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub run_id: String,
    pub html: String,
    pub seconds: f64,
}

/// Renders the report of `run_id` (default: the newest transformed run) from the staging
/// database, opened read-only.
pub fn render_run(cfg: &Config, run_id: Option<&str>) -> Result<Rendered> {
    let started = Instant::now();
    let crate::store::Staging { conn, path: db } =
        crate::store::Staging::open_read_only(&cfg.pipeline.data_dir)?;
    let run_id = pick_run(&conn, &db, run_id)?;
    let data = gather(&conn, &db, &run_id)?;
    Ok(Rendered {
        run_id,
        html: render(&data)?,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// A report written to disk.
#[derive(Debug, Clone)]
pub struct Written {
    pub run_id: String,
    pub path: PathBuf,
    pub bytes: u64,
    pub seconds: f64,
}

/// Renders the report of `run_id` and writes it to `output` (default:
/// `<data_dir>/out/<run_id>/report.html`), atomically and readable by its owner only.
pub fn write(cfg: &Config, run_id: Option<&str>, output: Option<&Path>) -> Result<Written> {
    let started = Instant::now();
    let r = render_run(cfg, run_id)?;
    let path = match output {
        Some(p) => p.to_path_buf(),
        None => {
            let dir = crate::store::DataDir::new(&cfg.pipeline.data_dir).export(&r.run_id);
            crate::fs::create_private_dir(&dir)?;
            dir.join(REPORT_FILE)
        }
    };
    write_atomic(&path, r.html.as_bytes())?;
    Ok(Written {
        run_id: r.run_id,
        path,
        bytes: r.html.len() as u64,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// The given run (it must be in `runs`) or the newest transformed one.
fn pick_run(conn: &Connection, db: &Path, wanted: Option<&str>) -> Result<String> {
    let found: Option<String> = conn
        .query_row(
            "SELECT max(run_id) FROM runs WHERE CASE WHEN ?::VARCHAR IS NULL THEN transform_status = 'succeeded' ELSE run_id = ? END",
            duckdb::params![wanted, wanted],
            |r| r.get(0),
        )
        .map_err(|e| db_error(db, "finding the run to report", e))?;
    found.ok_or_else(|| {
        Error::Usage(match wanted {
            Some(id) => format!(
                "run {id:?} is not in {}: `m365-connector runs -c FILE` lists the runs",
                db.display()
            ),
            None => format!(
                "no transformed run in {} yet: run `m365-connector run -c FILE` first; `m365-connector runs -c FILE` lists the runs",
                db.display()
            ),
        })
    })
}

/// Writes `bytes` to a temporary file next to `path` (mode 0600), syncs it and renames it
/// over `path`: a reader never sees half a report.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| REPORT_FILE.to_string());
    let tmp = dir.join(format!(".{name}.tmp-{:08x}", crate::random::u64() as u32));
    let result = (|| -> std::io::Result<()> {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)
    })();
    result.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(format!("writing the report {}", path.display()), e)
    })
}
