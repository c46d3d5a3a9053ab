//! The export's files from one read of a run's people, each format on its own thread.
//!
//! Before, each file was a DuckDB `COPY` of its own after a first read that checked the key
//! order: four scans of a million wide rows, one after the other, and the CSV and JSON Lines
//! read back to hash them. Now DuckDB writes the Parquet on a second connection while this
//! thread streams the people once as Arrow batches, checks their key order as they pass, and
//! hands each batch to a JSON Lines and a CSV thread that format it (`text.rs`), hash it and
//! write it. Memory stays flat: a few batches in flight, never the whole export.
//!
//! The transform stores people in key order, so the read takes them as stored (a sort of a
//! million wide rows is what made exports need a gigabyte). That is checked, never assumed:
//! when a key is out of order the files written so far are dropped and written again from a
//! read sorted by DuckDB.

use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::{Scope, ScopedJoinHandle};

use arrow::array::{Array, AsArray};
use arrow::datatypes::{Int64Type, UInt64Type};

use super::ExportFormat;
use super::hashed_file::{HashedFile, Written};
use super::text::{Batch, CsvText, JsonLines, Layout, SortKey, TextError};
use crate::error::{Error, Result};
use crate::sql::{quote_ident, quote_literal};
use crate::store::{Staging, db_error};

/// The attribute the exports are sorted by.
pub const KEY: &str = "User.ExternalId";

/// Batches in flight to each text thread: enough to keep both cores busy, few enough that
/// memory does not grow with the tenant (a batch is DuckDB's chunk of 2,048 rows).
const IN_FLIGHT: usize = 4;

/// A text thread writes once this much is formatted (fewer, larger writes).
const WRITE_AT: usize = 1 << 20;

/// What to export: the run's people columns (without `_run_id`), the `_source` of its JSON
/// lines, and the files.
pub struct Export<'a> {
    pub staging: &'a Staging,
    pub run_id: &'a str,
    pub columns: &'a [(String, String)],
    pub source: [(&'a str, &'a str); 4],
    pub dir: &'a Path,
    /// Sorted, without repeats.
    pub formats: &'a [ExportFormat],
}

/// The files written, in the order of `formats`, and the people in each.
pub struct Files {
    pub people: u64,
    pub written: Vec<(ExportFormat, Written)>,
}

/// Whether a read takes people as stored or sorted by DuckDB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Order {
    Stored,
    Sorted,
}

/// Writes the files, in one read of people when they are stored in key order and in two
/// (the second sorted) when they are not.
pub fn write_files(export: &Export) -> Result<Files> {
    if !export.columns.iter().any(|(n, _)| n == KEY) {
        return Err(Error::Usage(format!(
            "the people of run {} have no {KEY:?} column, which the exports are sorted by: map it in the mapping file (`{KEY},id,,yes,`)",
            export.run_id
        )));
    }
    // A key whose order Rust cannot check as DuckDB sorts it is sorted from the start.
    let order = if key_layout(export).sortable(KEY).is_some() {
        Order::Stored
    } else {
        Order::Sorted
    };
    if let Some(files) = write_once(export, order)? {
        return Ok(files);
    }
    tracing::debug!("people are not stored in key order: the export reads them sorted");
    for format in export.formats {
        let file = export.dir.join(format.file_name());
        std::fs::remove_file(&file)
            .or_else(|e| match e.kind() {
                std::io::ErrorKind::NotFound => Ok(()),
                _ => Err(e),
            })
            .map_err(|e| Error::io(format!("removing {}", file.display()), e))?;
    }
    write_once(export, Order::Sorted)?
        .ok_or_else(|| Error::Internal("people read with ORDER BY came out of key order".into()))
}

/// The layout of the key column alone: what the read selects when no text file is asked for
/// (it still counts the people and checks their order).
fn key_layout(export: &Export) -> Layout {
    let key: Vec<(String, String)> = export
        .columns
        .iter()
        .filter(|(n, _)| n == KEY)
        .cloned()
        .collect();
    Layout::new(&key, false, false)
}

/// One attempt; `None` when the people turned out not to be stored in key order.
fn write_once(export: &Export, order: Order) -> Result<Option<Files>> {
    let wants = |f| export.formats.contains(&f);
    let (json, csv) = (wants(ExportFormat::Jsonl), wants(ExportFormat::Csv));
    let layout = if json || csv {
        Layout::new(export.columns, json, csv)
    } else {
        key_layout(export)
    };
    let from = format!(
        "FROM people WHERE _run_id = {}{}",
        quote_literal(export.run_id),
        match order {
            Order::Stored => String::new(),
            Order::Sorted => format!(" ORDER BY {}", quote_ident(KEY)),
        }
    );
    let check = match order {
        Order::Stored => match layout.sortable(KEY) {
            Some(check) => Some(check),
            // Not checkable: never trusted as stored.
            None => return Ok(None),
        },
        Order::Sorted => None,
    };
    let path = |f: ExportFormat| export.dir.join(f.file_name());
    // Its own connection before any thread starts: a failure to open it fails cleanly.
    let parquet = if wants(ExportFormat::Parquet) {
        Some(export.staging.try_clone()?)
    } else {
        None
    };
    std::thread::scope(|scope| {
        let stop_parquet = parquet.as_ref().map(|s| s.conn.interrupt_handle());
        let parquet = parquet
            .map(|staging| {
                let file = path(ExportFormat::Parquet);
                let from = from.as_str();
                spawn(scope, "parquet", move || {
                    write_parquet(&staging, from, &file)
                })
            })
            .transpose()?;
        let mut senders = Vec::new();
        let jsonl = if json {
            let lines = JsonLines::new(layout.clone(), &export.source);
            let (tx, rx) = sync_channel(IN_FLIGHT);
            senders.push(tx);
            let file = path(ExportFormat::Jsonl);
            Some(spawn(scope, "jsonl", move || {
                write_text(&file, rx, |batch, out| lines.write(batch, out))
            })?)
        } else {
            None
        };
        let csv = if csv {
            let mut text = CsvText::new(layout.clone())
                .map_err(|e| text_error(&path(ExportFormat::Csv), e))?;
            let (tx, rx) = sync_channel(IN_FLIGHT);
            senders.push(tx);
            let file = path(ExportFormat::Csv);
            Some(spawn(scope, "csv", move || {
                let mut out = Vec::new();
                text.drain(&mut out);
                write_text_from(&file, rx, out, |batch, out| text.write(batch, out))
            })?)
        } else {
            None
        };
        let read = read_people(export, &layout, &from, check, senders);
        // Out of order, failed, or a text thread gave up: the Parquet is of no use, stop it.
        let finished = matches!(
            read,
            Ok(Read {
                in_order: true,
                complete: true,
                ..
            })
        );
        if let (false, Some(stop)) = (finished, &stop_parquet) {
            stop.interrupt();
        }
        let jsonl = jsonl.map(join).transpose();
        let csv = csv.map(join).transpose();
        let parquet = parquet.map(join).transpose();
        let read = read?;
        if !read.in_order {
            return Ok(None);
        }
        let mut written = Vec::new();
        let complete = read.complete;
        for (format, file) in [
            (ExportFormat::Jsonl, jsonl?),
            (ExportFormat::Csv, csv?),
            (ExportFormat::Parquet, parquet?),
        ] {
            if let Some(file) = file {
                written.push((format, file));
            }
        }
        if !complete {
            return Err(Error::Internal(
                "an export thread stopped taking people without saying why".into(),
            ));
        }
        Ok(Some(Files {
            people: read.people,
            written,
        }))
    })
}

/// What the read of people found.
struct Read {
    people: u64,
    in_order: bool,
    /// False when a text thread stopped taking batches (its join says why).
    complete: bool,
}

/// Streams the people once, counting them, checking the key order (`check`), and sending
/// every batch to each text thread. A thread that stopped has an error of its own, which its
/// join reports; the read just ends.
fn read_people(
    export: &Export,
    layout: &Layout,
    from: &str,
    check: Option<(usize, SortKey)>,
    senders: Vec<SyncSender<Arc<Batch>>>,
) -> Result<Read> {
    let staging = export.staging;
    let fail = |e| db_error(&staging.path, "reading people", e);
    let sql = format!("SELECT {} {from}", layout.select_list());
    let mut stmt = staging.conn.prepare(&sql).map_err(fail)?;
    let mut ascending = check.map(|(at, key)| Ascending::new(at, key));
    let mut people = 0u64;
    for batch in stmt.stream_arrow([]).map_err(fail)? {
        let batch = layout.batch(&batch.map_err(fail)?).map_err(|e| {
            Error::Internal(format!("reading people in {}: {e}", staging.path.display()))
        })?;
        people += batch.rows() as u64;
        if let Some(a) = &mut ascending
            && !a.holds(&batch)
        {
            return Ok(Read {
                people,
                in_order: false,
                complete: false,
            });
        }
        let batch = Arc::new(batch);
        for tx in &senders {
            if tx.send(Arc::clone(&batch)).is_err() {
                return Ok(Read {
                    people,
                    in_order: true,
                    complete: false,
                });
            }
        }
    }
    Ok(Read {
        people,
        in_order: true,
        complete: true,
    })
}

/// The key column's stored order, compared row by row as DuckDB's `ORDER BY` sorts: text by
/// bytes, integers by value, NULLs last; equal keys may come in any order.
struct Ascending {
    at: usize,
    key: SortKey,
    last_text: Vec<u8>,
    last_int: i128,
    /// Whether a row was seen yet, and whether the last one was NULL.
    seen: bool,
    null_seen: bool,
}

impl Ascending {
    fn new(at: usize, key: SortKey) -> Ascending {
        Ascending {
            at,
            key,
            last_text: Vec::new(),
            last_int: 0,
            seen: false,
            null_seen: false,
        }
    }

    /// Whether `batch` continues the order.
    fn holds(&mut self, batch: &Batch) -> bool {
        let Some(array) = batch.array(self.at) else {
            return false;
        };
        for row in 0..batch.rows() {
            if array.is_null(row) {
                self.null_seen = true;
                self.seen = true;
                continue;
            }
            if self.null_seen {
                return false;
            }
            let ok = match self.key {
                SortKey::Text => {
                    let Some(a) = array.as_string_opt::<i32>() else {
                        return false;
                    };
                    let v = a.value(row).as_bytes();
                    let ok = !self.seen || self.last_text.as_slice() <= v;
                    self.last_text.clear();
                    self.last_text.extend_from_slice(v);
                    ok
                }
                SortKey::Int | SortKey::UInt => {
                    let v = match self.key {
                        SortKey::Int => array
                            .as_primitive_opt::<Int64Type>()
                            .map(|a| i128::from(a.value(row))),
                        _ => array
                            .as_primitive_opt::<UInt64Type>()
                            .map(|a| i128::from(a.value(row))),
                    };
                    let Some(v) = v else {
                        return false;
                    };
                    let ok = !self.seen || self.last_int <= v;
                    self.last_int = v;
                    ok
                }
            };
            self.seen = true;
            if !ok {
                return false;
            }
        }
        true
    }
}

/// Starts a named thread of the export in `scope`.
fn spawn<'scope, 'env, T: Send + 'scope>(
    scope: &'scope Scope<'scope, 'env>,
    name: &str,
    f: impl FnOnce() -> Result<T> + Send + 'scope,
) -> Result<ScopedJoinHandle<'scope, Result<T>>> {
    std::thread::Builder::new()
        .name(format!("load-{name}"))
        .spawn_scoped(scope, f)
        .map_err(|e| Error::io(format!("starting the {name} export thread"), e))
}

fn join<T>(handle: ScopedJoinHandle<'_, Result<T>>) -> Result<T> {
    let name = handle
        .thread()
        .name()
        .unwrap_or("an export thread")
        .to_string();
    handle
        .join()
        .unwrap_or_else(|_| Err(Error::Internal(format!("{name} stopped unexpectedly"))))
}

/// A text file from the batches `rx` brings, formatted by `format`.
fn write_text(
    file: &Path,
    rx: Receiver<Arc<Batch>>,
    format: impl FnMut(&Batch, &mut Vec<u8>) -> std::result::Result<(), TextError>,
) -> Result<Written> {
    write_text_from(file, rx, Vec::new(), format)
}

/// As [`write_text`], after the bytes already in `out` (the CSV header).
fn write_text_from(
    file: &Path,
    rx: Receiver<Arc<Batch>>,
    mut out: Vec<u8>,
    mut format: impl FnMut(&Batch, &mut Vec<u8>) -> std::result::Result<(), TextError>,
) -> Result<Written> {
    let mut hashed = HashedFile::create(file)?;
    out.reserve(2 * WRITE_AT);
    for batch in rx {
        format(&batch, &mut out).map_err(|e| text_error(file, e))?;
        if out.len() >= WRITE_AT {
            hashed.write(&out)?;
            out.clear();
        }
    }
    hashed.write(&out)?;
    hashed.finish()
}

fn text_error(file: &Path, e: TextError) -> Error {
    Error::Internal(format!("writing {}: {e}", file.display()))
}

/// DuckDB's Parquet of the people (the same COPY as ever, so the same bytes), synced and
/// hashed.
fn write_parquet(staging: &Staging, from: &str, file: &Path) -> Result<Written> {
    let target = quote_literal(&file.display().to_string());
    staging
        .conn
        .execute_batch(&format!(
            "COPY (SELECT * EXCLUDE (_run_id) {from}) TO {target} (FORMAT parquet, COMPRESSION zstd)"
        ))
        .map_err(|e| db_error(&staging.path, "writing people.parquet", e))?;
    super::sync_file(file)?;
    let (bytes, sha256) = super::hash_file(file)?;
    Ok(Written { bytes, sha256 })
}
