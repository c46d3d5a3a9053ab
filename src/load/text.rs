//! The people rows as JSON Lines and CSV text, formatted in Rust from the Arrow batches of the
//! export's one read, byte for byte what DuckDB and the csv crate wrote when each file was a
//! `COPY` of its own: one read of the people feeds both files, and neither needs a second scan.
//!
//! The rules, from DuckDB's source (`extension/json/json_functions/copy_json.cpp`,
//! `json_create.cpp`, yyjson's writer, `DateToStringCast`) and checked against DuckDB itself by
//! the tests below:
//! - A JSON line is DuckDB's `to_json(struct_pack(*))` of the row: `{"key":value,...}` with no
//!   spaces, keys in column order, then `\n`. Strings escape `"`, `\` and the control
//!   characters (`\b \t \n \f \r`, the others as `\u00XX` in upper-case hex); everything else
//!   (non-ASCII, DEL, `/`) is copied as is.
//! - CSV is RFC 4180 with CRLF, written by the csv crate as before, so its quoting is the same
//!   code; only the cell texts are made here, and they are DuckDB's casts to VARCHAR.
//! - Text, booleans (`true`/`false`), integers up to 64 bits, dates and lists of text are
//!   formatted here: they are most of the columns and cheap to get exactly right. Timestamps are
//!   RFC 3339 text from DuckDB's `strftime` in the SELECT, as before. Every other type a mapping
//!   can give (doubles, decimals, HUGEINT from a `sum`, UUIDs, structs, other lists, ...) is
//!   rendered by DuckDB in the SELECT: `to_json(col)` for the JSON value and the old CSV cast for
//!   the cell, so its text is DuckDB's own by construction and Rust only places it.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Date32Array, Int64Array, ListArray, StringArray,
    UInt64Array,
};
use arrow::datatypes::{DataType, Date32Type, Field, Int64Type, UInt64Type};
use arrow::record_batch::RecordBatch;

use crate::sql::quote_ident;

/// Why a batch of people could not be written as text. Neither should happen with DuckDB as it
/// is; both name what to report.
#[derive(Debug, thiserror::Error)]
pub enum TextError {
    /// DuckDB handed a column over in an Arrow type its kind does not expect.
    #[error(
        "people column {column:?} ({duck_type}) came from DuckDB as Arrow {arrow}, which the export cannot write as text; please report this with the mapping that made the column"
    )]
    ArrowType {
        column: String,
        duck_type: String,
        arrow: String,
    },
    /// The read gave a different number of columns than the SELECT asked for.
    #[error("the people read gave {found} columns where the export selected {expected}")]
    Shape { expected: usize, found: usize },
    /// A layout made without this file's columns was used to write it (a bug).
    #[error("people column {0:?} was not read for this file")]
    NotSelected(String),
    /// The csv crate refused a record (it writes into memory, so this is a bug).
    #[error("formatting a CSV row: {0}")]
    Csv(#[from] csv::Error),
}

/// How a column is read from DuckDB and written, chosen by its DuckDB type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// VARCHAR.
    Text,
    Bool,
    /// TINYINT … BIGINT.
    Int,
    /// UTINYINT … UBIGINT.
    UInt,
    Date,
    /// Any TIMESTAMP type: read as DuckDB's RFC 3339 text.
    Timestamp,
    /// VARCHAR[].
    TextList,
    /// Anything else: DuckDB's own JSON value and CSV text, read as text.
    Duck,
}

impl Kind {
    fn of(duck_type: &str) -> Kind {
        match duck_type {
            "VARCHAR" => Kind::Text,
            "BOOLEAN" => Kind::Bool,
            "TINYINT" | "SMALLINT" | "INTEGER" | "BIGINT" => Kind::Int,
            "UTINYINT" | "USMALLINT" | "UINTEGER" | "UBIGINT" => Kind::UInt,
            "DATE" => Kind::Date,
            "VARCHAR[]" => Kind::TextList,
            t if t.starts_with("TIMESTAMP") && !t.ends_with(']') => Kind::Timestamp,
            _ => Kind::Duck,
        }
    }

    /// The Arrow type the formatting reads (DuckDB's narrower or view types are cast to it).
    fn arrow_type(self) -> DataType {
        match self {
            Kind::Text | Kind::Timestamp | Kind::Duck => DataType::Utf8,
            Kind::Bool => DataType::Boolean,
            Kind::Int => DataType::Int64,
            Kind::UInt => DataType::UInt64,
            Kind::Date => DataType::Date32,
            Kind::TextList => DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
        }
    }

    /// Whether DuckDB's Arrow type `t` holds this kind (and casts losslessly to `arrow_type`).
    fn accepts(self, t: &DataType) -> bool {
        let text =
            |t: &DataType| matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View);
        match self {
            Kind::Text | Kind::Timestamp | Kind::Duck => text(t),
            Kind::Bool => matches!(t, DataType::Boolean),
            Kind::Int => matches!(
                t,
                DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64
            ),
            Kind::UInt => matches!(
                t,
                DataType::UInt8 | DataType::UInt16 | DataType::UInt32 | DataType::UInt64
            ),
            Kind::Date => matches!(t, DataType::Date32),
            Kind::TextList => match t {
                DataType::List(f) | DataType::LargeList(f) => text(f.data_type()),
                _ => false,
            },
        }
    }
}

/// One people column: its kind and where its JSON value and CSV cell are in the read.
#[derive(Debug, Clone)]
struct Column {
    name: String,
    duck_type: String,
    kind: Kind,
    /// `"name":`, with the `,` before it for every column but the first.
    json_key: Vec<u8>,
    json_at: Option<usize>,
    csv_at: Option<usize>,
}

/// How the people columns are read (the SELECT list) and written (which result column feeds
/// which JSON value and CSV cell).
#[derive(Debug, Clone)]
pub struct Layout {
    columns: Vec<Column>,
    select: Vec<String>,
    /// The Kind of each selected result column, with the people column it belongs to.
    results: Vec<(Kind, usize)>,
}

/// RFC 3339 in UTC, as the exports have always written timestamps.
const TIMESTAMP_FORMAT: &str = "'%Y-%m-%dT%H:%M:%SZ'";

impl Layout {
    /// The layout of `columns` (name, DuckDB type, in order) for the JSON Lines (`json`) and
    /// the CSV (`csv`); a column DuckDB renders is selected only for the files asked for.
    pub fn new(columns: &[(String, String)], json: bool, csv: bool) -> Layout {
        let mut layout = Layout {
            columns: Vec::with_capacity(columns.len()),
            select: Vec::with_capacity(columns.len()),
            results: Vec::with_capacity(columns.len()),
        };
        for (i, (name, duck_type)) in columns.iter().enumerate() {
            let kind = Kind::of(duck_type);
            let q = quote_ident(name);
            let mut json_key = Vec::with_capacity(name.len() + 4);
            if i > 0 {
                json_key.push(b',');
            }
            push_json_str(&mut json_key, name);
            json_key.push(b':');
            let (json_at, csv_at) = match kind {
                Kind::Duck => {
                    let json_at = json.then(|| layout.add(format!("to_json({q})"), kind, i));
                    let cell = if duck_type.ends_with("[]") {
                        format!("array_to_string({q}, ';')")
                    } else {
                        format!("CAST({q} AS VARCHAR)")
                    };
                    (json_at, csv.then(|| layout.add(cell, kind, i)))
                }
                Kind::Timestamp => {
                    let at = layout.add(format!("strftime({q}, {TIMESTAMP_FORMAT})"), kind, i);
                    (Some(at), Some(at))
                }
                _ => {
                    let at = layout.add(q, kind, i);
                    (Some(at), Some(at))
                }
            };
            layout.columns.push(Column {
                name: name.clone(),
                duck_type: duck_type.clone(),
                kind,
                json_key,
                json_at,
                csv_at,
            });
        }
        layout
    }

    fn add(&mut self, expr: String, kind: Kind, column: usize) -> usize {
        self.select.push(expr);
        self.results.push((kind, column));
        self.select.len() - 1
    }

    /// The SELECT list, in the order of the result columns.
    pub fn select_list(&self) -> String {
        self.select.join(", ")
    }

    /// The attribute names, in order (the CSV header, the manifest's attributes).
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.columns.iter().map(|c| c.name.as_str())
    }

    /// The result column holding `name` read as it is stored, when the stored order of its
    /// values can be checked in Rust as DuckDB's ORDER BY would sort them: text (byte order)
    /// and integers.
    pub fn sortable(&self, name: &str) -> Option<(usize, SortKey)> {
        let c = self.columns.iter().find(|c| c.name == name)?;
        let key = match c.kind {
            Kind::Text => SortKey::Text,
            Kind::Int => SortKey::Int,
            Kind::UInt => SortKey::UInt,
            _ => return None,
        };
        Some((c.json_at?, key))
    }

    /// A batch as the formatting reads it: each result column checked, and cast to the one
    /// Arrow type its kind is formatted from.
    pub fn batch(&self, batch: &RecordBatch) -> Result<Batch, TextError> {
        if batch.num_columns() != self.results.len() {
            return Err(TextError::Shape {
                expected: self.results.len(),
                found: batch.num_columns(),
            });
        }
        let mut arrays = Vec::with_capacity(self.results.len());
        for (array, (kind, column)) in batch.columns().iter().zip(&self.results) {
            let wanted = kind.arrow_type();
            let type_error = || {
                let c = &self.columns[*column];
                TextError::ArrowType {
                    column: c.name.clone(),
                    duck_type: c.duck_type.clone(),
                    arrow: array.data_type().to_string(),
                }
            };
            if *array.data_type() == wanted {
                arrays.push(Arc::clone(array));
            } else if kind.accepts(array.data_type()) {
                arrays.push(arrow::compute::cast(array, &wanted).map_err(|_| type_error())?);
            } else {
                return Err(type_error());
            }
        }
        Ok(Batch {
            arrays,
            rows: batch.num_rows(),
        })
    }
}

/// How a key column's stored order is compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    Text,
    Int,
    UInt,
}

/// A batch of people, its columns in the types the formatting reads.
#[derive(Debug, Clone)]
pub struct Batch {
    arrays: Vec<ArrayRef>,
    rows: usize,
}

impl Batch {
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Result column `at`.
    pub fn array(&self, at: usize) -> Option<&ArrayRef> {
        self.arrays.get(at)
    }
}

/// One column of a batch, typed.
enum Cells<'a> {
    Text(&'a StringArray),
    Bool(&'a BooleanArray),
    Int(&'a Int64Array),
    UInt(&'a UInt64Array),
    Date(&'a Date32Array),
    TextList(&'a ListArray, &'a StringArray),
    /// DuckDB's JSON value or CSV text, written as it came.
    Duck(&'a StringArray),
}

impl<'a> Cells<'a> {
    fn of(column: &Column, batch: &'a Batch, at: usize) -> Result<Cells<'a>, TextError> {
        let type_error = || TextError::ArrowType {
            column: column.name.clone(),
            duck_type: column.duck_type.clone(),
            arrow: batch
                .arrays
                .get(at)
                .map_or_else(|| "(missing)".into(), |a| a.data_type().to_string()),
        };
        let array = batch.arrays.get(at).ok_or_else(type_error)?;
        let cells = match column.kind {
            Kind::Text | Kind::Timestamp => array.as_string_opt::<i32>().map(Cells::Text),
            Kind::Duck => array.as_string_opt::<i32>().map(Cells::Duck),
            Kind::Bool => array.as_boolean_opt().map(Cells::Bool),
            Kind::Int => array.as_primitive_opt::<Int64Type>().map(Cells::Int),
            Kind::UInt => array.as_primitive_opt::<UInt64Type>().map(Cells::UInt),
            Kind::Date => array.as_primitive_opt::<Date32Type>().map(Cells::Date),
            Kind::TextList => array.as_list_opt::<i32>().and_then(|l| {
                l.values()
                    .as_string_opt::<i32>()
                    .map(|values| Cells::TextList(l, values))
            }),
        };
        cells.ok_or_else(type_error)
    }

    fn is_null(&self, row: usize) -> bool {
        match self {
            Cells::Text(a) | Cells::Duck(a) => a.is_null(row),
            Cells::Bool(a) => a.is_null(row),
            Cells::Int(a) => a.is_null(row),
            Cells::UInt(a) => a.is_null(row),
            Cells::Date(a) => a.is_null(row),
            Cells::TextList(a, _) => a.is_null(row),
        }
    }

    /// The JSON value of `row`.
    fn json(&self, row: usize, out: &mut Vec<u8>) {
        if self.is_null(row) {
            out.extend_from_slice(b"null");
            return;
        }
        match self {
            Cells::Text(a) => push_json_str(out, a.value(row)),
            Cells::Duck(a) => out.extend_from_slice(a.value(row).as_bytes()),
            Cells::Bool(a) => out.extend_from_slice(bool_text(a.value(row))),
            Cells::Int(a) => push_i64(out, a.value(row)),
            Cells::UInt(a) => push_u64(out, a.value(row)),
            Cells::Date(a) => {
                out.push(b'"');
                push_date(out, a.value(row));
                out.push(b'"');
            }
            Cells::TextList(list, values) => {
                out.push(b'[');
                for (n, i) in elements(list, row).enumerate() {
                    if n > 0 {
                        out.push(b',');
                    }
                    if values.is_null(i) {
                        out.extend_from_slice(b"null");
                    } else {
                        push_json_str(out, values.value(i));
                    }
                }
                out.push(b']');
            }
        }
    }

    /// The CSV cell text of `row` (before the csv crate quotes it): DuckDB's cast to VARCHAR,
    /// a NULL as an empty cell.
    fn csv<'b>(&'b self, row: usize, scratch: &'b mut Vec<u8>) -> &'b [u8] {
        if self.is_null(row) {
            return b"";
        }
        scratch.clear();
        match self {
            Cells::Text(a) | Cells::Duck(a) => return a.value(row).as_bytes(),
            Cells::Bool(a) => return bool_text(a.value(row)),
            Cells::Int(a) => push_i64(scratch, a.value(row)),
            Cells::UInt(a) => push_u64(scratch, a.value(row)),
            Cells::Date(a) => push_date(scratch, a.value(row)),
            // array_to_string(list, ';'): the elements that are not NULL, joined.
            Cells::TextList(list, values) => {
                let mut first = true;
                for i in elements(list, row) {
                    if values.is_null(i) {
                        continue;
                    }
                    if !first {
                        scratch.push(b';');
                    }
                    first = false;
                    scratch.extend_from_slice(values.value(i).as_bytes());
                }
            }
        }
        scratch
    }
}

/// The indexes into a list's values of `row`'s elements.
fn elements(list: &ListArray, row: usize) -> std::ops::Range<usize> {
    let offsets = list.value_offsets();
    let start = offsets.get(row).map_or(0, |o| (*o).max(0) as usize);
    let end = offsets.get(row + 1).map_or(start, |o| (*o).max(0) as usize);
    let len = list.values().len();
    start.min(len)..end.clamp(start.min(len), len)
}

fn bool_text(b: bool) -> &'static [u8] {
    if b { b"true" } else { b"false" }
}

/// Writes people batches as JSON Lines: DuckDB's `to_json` of each row plus `_source`.
#[derive(Debug, Clone)]
pub struct JsonLines {
    layout: Layout,
    /// `,"_source":{...}}` and the line end, the same on every line of a run.
    tail: Vec<u8>,
}

impl JsonLines {
    /// `source`: the `_source` object's fields (name, value), in order.
    pub fn new(layout: Layout, source: &[(&str, &str)]) -> JsonLines {
        let mut tail = Vec::new();
        if !layout.columns.is_empty() {
            tail.push(b',');
        }
        push_json_str(&mut tail, "_source");
        tail.extend_from_slice(b":{");
        for (i, (k, v)) in source.iter().enumerate() {
            if i > 0 {
                tail.push(b',');
            }
            push_json_str(&mut tail, k);
            tail.push(b':');
            push_json_str(&mut tail, v);
        }
        tail.extend_from_slice(b"}}\n");
        JsonLines { layout, tail }
    }

    /// Appends `batch`'s lines to `out`.
    pub fn write(&self, batch: &Batch, out: &mut Vec<u8>) -> Result<(), TextError> {
        let mut cells = Vec::with_capacity(self.layout.columns.len());
        for c in &self.layout.columns {
            let at = c
                .json_at
                .ok_or_else(|| TextError::NotSelected(c.name.clone()))?;
            cells.push((c.json_key.as_slice(), Cells::of(c, batch, at)?));
        }
        for row in 0..batch.rows {
            out.push(b'{');
            for (key, cells) in &cells {
                out.extend_from_slice(key);
                cells.json(row, out);
            }
            out.extend_from_slice(&self.tail);
        }
        Ok(())
    }
}

/// Writes people batches as CSV: RFC 4180, CRLF, a header of the attribute names.
pub struct CsvText {
    layout: Layout,
    builder: csv::WriterBuilder,
    /// The header until it is drained.
    pending: Vec<u8>,
    scratch: Vec<u8>,
}

impl CsvText {
    /// A writer whose first bytes are the header.
    pub fn new(layout: Layout) -> Result<CsvText, TextError> {
        let mut builder = csv::WriterBuilder::new();
        builder
            .terminator(csv::Terminator::CRLF)
            .buffer_capacity(1 << 16);
        let mut pending = Vec::new();
        {
            let mut header = builder.from_writer(&mut pending);
            header.write_record(layout.names())?;
            header.flush().map_err(csv::Error::from)?;
        }
        Ok(CsvText {
            layout,
            builder,
            pending,
            scratch: Vec::new(),
        })
    }

    /// Appends `batch`'s rows to `out` (the header first, if not drained yet). A csv writer
    /// per batch: its state is per record, and each batch's text goes straight into `out`.
    pub fn write(&mut self, batch: &Batch, out: &mut Vec<u8>) -> Result<(), TextError> {
        let mut cells = Vec::with_capacity(self.layout.columns.len());
        for c in &self.layout.columns {
            let at = c
                .csv_at
                .ok_or_else(|| TextError::NotSelected(c.name.clone()))?;
            cells.push(Cells::of(c, batch, at)?);
        }
        self.drain(out);
        let mut writer = self.builder.from_writer(out);
        for row in 0..batch.rows {
            for c in &cells {
                writer.write_field(c.csv(row, &mut self.scratch))?;
            }
            writer.write_record(None::<&[u8]>)?;
        }
        writer.flush().map_err(csv::Error::from)?;
        Ok(())
    }

    /// Appends the header to `out` if no batch has taken it yet (an export of no people).
    pub fn drain(&mut self, out: &mut Vec<u8>) {
        out.append(&mut self.pending);
    }
}

/// yyjson's escapes for each byte: 0 copies it, `u` is `\u00XX`, anything else is `\` + it.
const JSON_ESCAPE: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 0x20 {
        t[b] = b'u';
        b += 1;
    }
    t[0x08] = b'b';
    t[0x09] = b't';
    t[0x0a] = b'n';
    t[0x0c] = b'f';
    t[0x0d] = b'r';
    t[b'"' as usize] = b'"';
    t[b'\\' as usize] = b'\\';
    t
};

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

/// `s` as a JSON string, escaped as DuckDB's yyjson writes it.
fn push_json_str(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape = JSON_ESCAPE[b as usize];
        if escape == 0 {
            continue;
        }
        out.extend_from_slice(&bytes[start..i]);
        if escape == b'u' {
            out.extend_from_slice(b"\\u00");
            out.push(HEX_UPPER[(b >> 4) as usize]);
            out.push(HEX_UPPER[(b & 0x0f) as usize]);
        } else {
            out.push(b'\\');
            out.push(escape);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

fn push_u64(out: &mut Vec<u8>, v: u64) {
    push_padded(out, v, 1);
}

fn push_i64(out: &mut Vec<u8>, v: i64) {
    if v < 0 {
        out.push(b'-');
    }
    push_u64(out, v.unsigned_abs());
}

/// `v` in decimal with at least `width` digits (zeros in front), `width` ≤ 20.
fn push_padded(out: &mut Vec<u8>, mut v: u64, width: usize) {
    let mut digits = [b'0'; 20];
    let mut i = digits.len();
    while v > 0 && i > 0 {
        i -= 1;
        digits[i] = b'0' + (v % 10) as u8;
        v /= 10;
    }
    let first = i.min(digits.len().saturating_sub(width.max(1)));
    out.extend_from_slice(&digits[first..]);
}

/// DuckDB's text of a DATE (days since 1970-01-01): `YYYY-MM-DD`, the year padded to four
/// digits and longer when it needs more, year 0 and before as ` (BC)` years (0 is 1 BC), and
/// DuckDB's infinities as `infinity` / `-infinity`.
fn push_date(out: &mut Vec<u8>, days: i32) {
    if days == i32::MAX {
        out.extend_from_slice(b"infinity");
        return;
    }
    if days == -i32::MAX {
        out.extend_from_slice(b"-infinity");
        return;
    }
    let (year, month, day) = civil_from_days(i64::from(days));
    let bc = year <= 0;
    let year = if bc { 1 - year } else { year };
    push_padded(out, year.unsigned_abs(), 4);
    out.push(b'-');
    push_padded(out, u64::from(month), 2);
    out.push(b'-');
    push_padded(out, u64::from(day), 2);
    if bc {
        out.extend_from_slice(b" (BC)");
    }
}

/// The proleptic Gregorian (year, month, day) of a day count from 1970-01-01, as DuckDB's
/// `Date::Convert` gives it (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::quote_literal;

    fn json_str(s: &str) -> String {
        let mut out = Vec::new();
        push_json_str(&mut out, s);
        String::from_utf8(out).unwrap()
    }

    fn date(days: i32) -> String {
        let mut out = Vec::new();
        push_date(&mut out, days);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn strings_escape_as_yyjson_does() {
        assert_eq!(json_str("plain"), r#""plain""#);
        assert_eq!(json_str(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(json_str("\u{8}\t\n\u{c}\r"), r#""\b\t\n\f\r""#);
        assert_eq!(
            json_str("\u{0}\u{1}\u{b}\u{1f}"),
            r#""\u0000\u0001\u000B\u001F""#
        );
        // Not escaped: '/', DEL, non-ASCII, the JavaScript line separators.
        assert_eq!(json_str("a/b\u{7f}é😀\u{2028}"), "\"a/b\u{7f}é😀\u{2028}\"");
        assert_eq!(json_str(""), r#""""#);
    }

    #[test]
    fn numbers_and_dates() {
        let text = |f: &dyn Fn(&mut Vec<u8>)| {
            let mut out = Vec::new();
            f(&mut out);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(text(&|o| push_i64(o, 0)), "0");
        assert_eq!(text(&|o| push_i64(o, -42)), "-42");
        assert_eq!(text(&|o| push_i64(o, i64::MIN)), "-9223372036854775808");
        assert_eq!(text(&|o| push_u64(o, u64::MAX)), "18446744073709551615");
        assert_eq!(text(&|o| push_padded(o, 7, 4)), "0007");
        assert_eq!(date(0), "1970-01-01");
        assert_eq!(date(19_782), "2024-02-29");
        assert_eq!(date(-719_162), "0001-01-01");
        assert_eq!(date(-719_163), "0001-12-31 (BC)");
        assert_eq!(date(-719_528), "0001-01-01 (BC)");
        assert_eq!(date(2_932_897), "10000-01-01");
        assert_eq!(date(i32::MAX), "infinity");
        assert_eq!(date(-i32::MAX), "-infinity");
    }

    /// The exports as they were written before this module: DuckDB's COPY for JSON Lines
    /// and the csv crate over DuckDB's casts for CSV (the SQL of the old `json_column` and
    /// `csv_column`), over table `t`.
    fn reference(conn: &duckdb::Connection, dir: &std::path::Path) -> (Vec<u8>, Vec<u8>) {
        let columns = columns(conn);
        let json_cols: Vec<String> = columns
            .iter()
            .map(|(n, t)| {
                let q = quote_ident(n);
                if t.starts_with("TIMESTAMP") {
                    format!("strftime({q}, '%Y-%m-%dT%H:%M:%SZ') AS {q}")
                } else {
                    q
                }
            })
            .collect();
        let file = dir.join("reference.jsonl");
        conn.execute_batch(&format!(
            "COPY (SELECT {}, {{'connector': 'c', 'tenant_id': 't\"1', 'run_id': 'R', 'extracted_at': 'x'}} AS _source FROM t) TO {} (FORMAT json)",
            json_cols.join(", "),
            quote_literal(&file.display().to_string())
        ))
        .unwrap();
        let json = std::fs::read(&file).unwrap();
        let cells: Vec<String> = columns
            .iter()
            .map(|(n, t)| {
                let q = quote_ident(n);
                if t.ends_with("[]") {
                    format!("array_to_string({q}, ';')")
                } else if t == "BOOLEAN" {
                    format!("CASE WHEN {q} THEN 'true' WHEN NOT {q} THEN 'false' END")
                } else if t.starts_with("TIMESTAMP") {
                    format!("strftime({q}, '%Y-%m-%dT%H:%M:%SZ')")
                } else {
                    format!("CAST({q} AS VARCHAR)")
                }
            })
            .collect();
        let mut w = csv::WriterBuilder::new()
            .terminator(csv::Terminator::CRLF)
            .from_writer(Vec::new());
        w.write_record(columns.iter().map(|(n, _)| n.as_str()))
            .unwrap();
        let mut stmt = conn
            .prepare(&format!("SELECT {} FROM t", cells.join(", ")))
            .unwrap();
        let mut rows = stmt.query([]).unwrap();
        while let Some(row) = rows.next().unwrap() {
            let record: Vec<String> = (0..columns.len())
                .map(|i| row.get::<_, Option<String>>(i).unwrap().unwrap_or_default())
                .collect();
            w.write_record(&record).unwrap();
        }
        (json, w.into_inner().unwrap())
    }

    fn columns(conn: &duckdb::Connection) -> Vec<(String, String)> {
        let mut stmt = conn
            .prepare("SELECT column_name, data_type FROM duckdb_columns() WHERE table_name = 't' ORDER BY column_index")
            .unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<duckdb::Result<Vec<_>>>()
            .unwrap()
    }

    /// The same files, written here from one Arrow read of `t`.
    fn ours(conn: &duckdb::Connection, json: bool, csv: bool) -> (Vec<u8>, Vec<u8>) {
        let layout = Layout::new(&columns(conn), json, csv);
        let lines = JsonLines::new(
            layout.clone(),
            &[
                ("connector", "c"),
                ("tenant_id", "t\"1"),
                ("run_id", "R"),
                ("extracted_at", "x"),
            ],
        );
        let mut text = CsvText::new(layout.clone()).unwrap();
        let mut stmt = conn
            .prepare(&format!("SELECT {} FROM t", layout.select_list()))
            .unwrap();
        let (mut json_out, mut csv_out) = (Vec::new(), Vec::new());
        for batch in stmt.stream_arrow([]).unwrap() {
            let batch = layout.batch(&batch.unwrap()).unwrap();
            if json {
                lines.write(&batch, &mut json_out).unwrap();
            }
            if csv {
                text.write(&batch, &mut csv_out).unwrap();
            }
        }
        if csv {
            text.drain(&mut csv_out);
        }
        (json_out, csv_out)
    }

    fn assert_same_as_duckdb(conn: &duckdb::Connection) {
        let dir = tempfile::tempdir().unwrap();
        let (want_json, want_csv) = reference(conn, dir.path());
        let (json, csv) = ours(conn, true, true);
        let show = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        assert_eq!(show(&json), show(&want_json), "JSON Lines differ");
        assert_eq!(json, want_json);
        assert_eq!(show(&csv), show(&want_csv), "CSV differs");
        assert_eq!(csv, want_csv);
        // Asked for one file only, the other's DuckDB-rendered columns are not read.
        assert_eq!(ours(conn, true, false).0, want_json);
        assert_eq!(ours(conn, false, true).1, want_csv);
    }

    /// Every column type the default mapping gives, with NULLs, quoting, escapes and unicode,
    /// over more rows than one DuckDB chunk.
    #[test]
    fn the_mapped_types_are_written_as_duckdb_wrote_them() {
        let conn = duckdb::Connection::open_in_memory().unwrap();
        conn.execute_batch(
            r#"
            CREATE TABLE t AS SELECT
                'id-' || lpad(i::VARCHAR, 5, '0') AS "User.ExternalId",
                CASE i % 9
                    WHEN 0 THEN NULL
                    WHEN 1 THEN ''
                    WHEN 2 THEN 'with, comma'
                    WHEN 3 THEN 'with "quotes"'
                    WHEN 4 THEN E'line\nbreak\r\nand\ttab'
                    WHEN 5 THEN 'Zoë Ångström 😀 東京 \ back\slash /'
                    WHEN 6 THEN chr(1) || chr(8) || chr(11) || chr(12) || chr(27) || chr(31) || chr(127)
                    WHEN 7 THEN ' leading and trailing '
                    ELSE 'plain' || i END AS "User.FullName",
                CASE i % 3 WHEN 0 THEN NULL WHEN 1 THEN true ELSE false END AS "User.AccountEnabled",
                CASE WHEN i % 7 = 0 THEN NULL ELSE DATE '2024-01-01' + (i * 37 - 40000)::INTEGER END AS "User.CreatedDate",
                CASE WHEN i % 5 = 0 THEN NULL
                     ELSE TIMESTAMP '2020-02-29 23:59:59.999' + to_seconds(i * 7919) END AS "User.OnPremisesLastSync",
                CASE i % 6
                    WHEN 0 THEN NULL
                    WHEN 1 THEN []::VARCHAR[]
                    WHEN 2 THEN ['one']
                    WHEN 3 THEN ['a;b', 'c,d', 'e"f']
                    WHEN 4 THEN [NULL, 'x', NULL]::VARCHAR[]
                    ELSE ['', E'new\nline', 'ü'] END AS "User.Licenses",
                CASE WHEN i % 4 = 0 THEN NULL ELSE (i * 1234567 - 600000000)::BIGINT END AS "User.MailboxStorageUsedBytes",
                (i % 120 - 60)::TINYINT AS tiny,
                ((i * 13) % 65535 - 32767)::SMALLINT AS small,
                CASE WHEN i % 2 = 0 THEN NULL ELSE (i * -99991)::INTEGER END AS int,
                (i % 256)::UTINYINT AS utiny,
                (i * 1000003)::UBIGINT AS ubig,
                CASE WHEN i = 0 THEN 18446744073709551615::UBIGINT END AS umax,
                CASE WHEN i = 1 THEN (-9223372036854775808)::BIGINT END AS imin,
                "User.FullName" AS "odd ""name"", with ; and é"
            FROM range(5000) r(i)
            "#,
        )
        .unwrap();
        assert_same_as_duckdb(&conn);
    }

    /// DuckDB's whole DATE range, its infinities and BC years: the Rust text is DuckDB's.
    #[test]
    fn every_kind_of_date_is_written_as_duckdb_wrote_it() {
        let conn = duckdb::Connection::open_in_memory().unwrap();
        conn.execute_batch(
            r#"
            CREATE TABLE t AS
            SELECT 'k' || i AS "User.ExternalId", d AS "User.Date" FROM (
                SELECT row_number() OVER () AS i, d FROM (
                    SELECT DATE '1970-01-01' + (i * 997 - 3000000)::INTEGER AS d FROM range(6100) r(i)
                    UNION ALL SELECT unnest([DATE 'infinity', DATE '-infinity', DATE '0001-01-01',
                        DATE '0000-12-31', DATE '0001-03-01 (BC)', DATE '9999-12-31', DATE '10000-01-01',
                        DATE '5881580-07-10', DATE '5877642-06-25 (BC)', DATE '1900-02-28',
                        DATE '2000-02-29', DATE '2100-03-01', NULL])
                )
            )
            "#,
        )
        .unwrap();
        assert_same_as_duckdb(&conn);
    }

    /// Types no default mapping gives but a mapping of other `int_people` columns (a `sum` is a
    /// HUGEINT) or of a custom `sql_dir` can: DuckDB renders them, Rust only places the text.
    #[test]
    fn other_types_are_written_with_duckdbs_own_text() {
        let conn = duckdb::Connection::open_in_memory().unwrap();
        conn.execute_batch(
            r#"
            CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
            CREATE TABLE t AS SELECT
                'k' || i AS "User.ExternalId",
                sum(i) OVER (ORDER BY i) AS hugeint_sum,
                CASE i % 4 WHEN 0 THEN NULL WHEN 1 THEN 1e300 * i WHEN 2 THEN 0.1 * i ELSE -1.0 / 3 END AS dbl,
                CASE i % 5 WHEN 0 THEN 'nan'::DOUBLE WHEN 1 THEN 'inf'::DOUBLE WHEN 2 THEN '-inf'::DOUBLE
                    WHEN 3 THEN -0.0 ELSE 123456789012345678.0 END AS specials,
                (i / 7.0)::FLOAT AS flt,
                (i * 1.25)::DECIMAL(9, 2) AS dec_small,
                (i * 12345.678)::DECIMAL(38, 3) AS dec_big,
                (i * 100000000000000000000000)::HUGEINT AS huge,
                '00000000-0000-0000-0000-00000000000' || (i % 10) AS uuid_text,
                ('00000000-0000-0000-0000-00000000000' || (i % 10))::UUID AS uuid,
                to_seconds(i * 3601) AS ivl,
                TIME '00:00:00' + to_seconds(i) AS tm,
                ('x' || i)::BLOB AS blb,
                (['sad', 'ok', 'happy'])[i % 3 + 1]::mood AS enm,
                {'a': i, 'b': 'x"' || i, 'c': [i, NULL]} AS strct,
                MAP {'k': i} AS mp,
                [DATE '2024-01-01' + i::INTEGER, NULL] AS dates,
                [i, i * 2]::BIGINT[] AS ints,
                [1.5 * i, NULL]::DOUBLE[] AS dbls,
                [i, i + 1, i + 2]::INTEGER[3] AS fixed,
                ('{"n":' || i || ', "s": "a b"}')::JSON AS js,
                (TIMESTAMP '2024-05-01 12:34:56.789' + to_seconds(i))::TIMESTAMP_S AS ts_s,
                (TIMESTAMP '2024-05-01 12:34:56.789' + to_seconds(i))::TIMESTAMP_MS AS ts_ms,
                (TIMESTAMP '2024-05-01 12:34:56.789' + to_seconds(i))::TIMESTAMP_NS AS ts_ns,
                (TIMESTAMP '2024-05-01 12:34:56.789' + to_seconds(i))::TIMESTAMPTZ AS ts_tz
            FROM range(3000) r(i)
            "#,
        )
        .unwrap();
        assert_same_as_duckdb(&conn);
    }

    /// A table of one column: the csv crate quotes an empty field alone on its row.
    #[test]
    fn a_lone_empty_cell_is_quoted_and_no_rows_is_an_empty_file() {
        let conn = duckdb::Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE t AS SELECT unnest(['', NULL, 'a']) AS \"User.ExternalId\"",
        )
        .unwrap();
        assert_same_as_duckdb(&conn);
        conn.execute_batch("DELETE FROM t").unwrap();
        let (json, csv) = ours(&conn, true, true);
        assert!(json.is_empty());
        assert_eq!(csv, b"User.ExternalId\r\n");
        assert_same_as_duckdb(&conn);
    }

    /// A mismatch between what the layout expects and what DuckDB gives is an error naming the
    /// column, never a panic.
    #[test]
    fn an_unexpected_arrow_type_is_an_error_naming_the_column() {
        let conn = duckdb::Connection::open_in_memory().unwrap();
        let layout = Layout::new(&[("User.ExternalId".into(), "VARCHAR".into())], true, true);
        let first = |sql: &str| {
            let mut stmt = conn.prepare(sql).unwrap();
            let mut batches: Vec<RecordBatch> =
                stmt.stream_arrow([]).unwrap().map(|b| b.unwrap()).collect();
            batches.remove(0)
        };
        let batch = first("SELECT 1.5::DOUBLE");
        let e = layout.batch(&batch).unwrap_err();
        assert!(
            e.to_string().contains("\"User.ExternalId\" (VARCHAR)"),
            "{e}"
        );
        let batch = first("SELECT 'a', 'b'");
        assert!(matches!(
            layout.batch(&batch),
            Err(TextError::Shape {
                expected: 1,
                found: 2
            })
        ));
    }
}
