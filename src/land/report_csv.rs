//! Reading a usage-report CSV as Microsoft actually serves it: a UTF-8 BOM, CRLF, blank
//! lines, quoted commas and newlines, and columns that appear without notice. Columns are
//! matched by header name, rows are read in batches so memory does not grow with the file.
//!
//! A batch is column-wise ([`CsvBatch`]): each cell is decoded from the CSV record straight
//! into its column's Arrow builder, which the lander writes as it is ([`CsvColumns`]), so no
//! cell becomes a `String` of its own on the way to Parquet.

use std::borrow::Cow;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use arrow::array::{Array, StringArray, StringBuilder};

/// Rows read from a report, column-wise, on their way to Arrow: one text builder per header
/// column that each cell is appended to as it is decoded, and one for the cells beyond the
/// header. Decoding a cell costs no allocation of its own (a report of a million users has
/// tens of millions of cells; as owned strings they were a quarter of the extract's CPU).
///
/// Kept across batches: [`CsvBatch::finish`] hands out the arrays and makes the next batch's
/// buffers as large as this one's, so a report lands with a few allocations per batch.
pub struct CsvBatch {
    cells: Vec<StringBuilder>,
    extra: StringBuilder,
    rows: usize,
}

impl CsvBatch {
    /// An empty batch of `width` header columns (see [`ReportReader::batch`]).
    pub fn new(width: usize) -> CsvBatch {
        CsvBatch {
            cells: (0..width).map(|_| StringBuilder::new()).collect(),
            extra: StringBuilder::new(),
            rows: 0,
        }
    }

    /// Header columns per row.
    pub fn width(&self) -> usize {
        self.cells.len()
    }

    /// Rows appended since the last [`CsvBatch::finish`].
    pub fn len(&self) -> usize {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// The rows appended so far as Arrow arrays; the batch starts empty again, its buffers
    /// sized for as many rows and bytes as this batch held.
    pub fn finish(&mut self) -> CsvColumns {
        let rows = self.rows;
        let mut take = |b: &mut StringBuilder| {
            let bytes = b.values_slice().len();
            std::mem::replace(b, StringBuilder::with_capacity(rows, bytes)).finish()
        };
        let cells = self.cells.iter_mut().map(&mut take).collect();
        let extra = take(&mut self.extra);
        self.rows = 0;
        CsvColumns { cells, extra }
    }
}

/// One batch of report rows as Arrow text arrays, all of the same length.
#[derive(Debug, Clone, PartialEq)]
pub struct CsvColumns {
    /// One array per header column, NULL where a row was too short to have the cell.
    pub cells: Vec<StringArray>,
    /// The cells beyond the header as a JSON array of strings (kept, never dropped); NULL
    /// for a row without any.
    pub extra: StringArray,
}

impl CsvColumns {
    /// Rows in the batch.
    pub fn len(&self) -> usize {
        self.extra.len()
    }

    pub fn is_empty(&self) -> bool {
        self.extra.is_empty()
    }

    /// Header column `column`'s cell in row `row`: `None` when the row lacks it (or when
    /// either index is out of range).
    pub fn cell(&self, column: usize, row: usize) -> Option<&str> {
        let a = self.cells.get(column)?;
        text_at(a, row)
    }

    /// Row `row`'s extra cells as their JSON array, `None` when it has none.
    pub fn extra(&self, row: usize) -> Option<&str> {
        text_at(&self.extra, row)
    }
}

fn text_at(a: &StringArray, row: usize) -> Option<&str> {
    (row < a.len() && a.is_valid(row)).then(|| a.value(row))
}

/// Streaming reader over a downloaded report file (or, through [`ReportReader::from_reader`],
/// over any bytes: the fuzz target feeds it from memory).
pub struct ReportReader<R: Read = BufReader<File>> {
    reader: csv::Reader<R>,
    header: Vec<String>,
    record: csv::ByteRecord,
    /// Cells that were not valid UTF-8 (replaced with U+FFFD and counted for a warning).
    pub invalid_utf8_cells: u64,
    /// Rows whose cell count differed from the header's.
    pub ragged_rows: u64,
    /// Line number of the next record, for messages.
    line: u64,
}

impl ReportReader {
    /// Opens a report file. An empty file (0 bytes) has an empty header.
    pub fn open(path: &Path) -> std::io::Result<ReportReader> {
        let file = File::open(path)?;
        ReportReader::from_reader(BufReader::with_capacity(256 * 1024, file))
    }
}

impl<R: Read> ReportReader<R> {
    /// Reads a report from any source (the header is read now). [`ReportReader::open`] is
    /// this over a buffered file; the fuzz target (`fuzz/fuzz_targets/report_csv.rs`) uses
    /// it on a byte slice.
    pub fn from_reader(source: R) -> std::io::Result<ReportReader<R>> {
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(source);
        let mut first = csv::ByteRecord::new();
        let mut invalid = 0;
        let mut header = Vec::new();
        // Skip leading blank lines; the first non-blank record is the header.
        while reader.read_byte_record(&mut first).map_err(csv_io)? {
            if is_blank(&first) {
                continue;
            }
            header = first
                .iter()
                .map(|f| decode(f, &mut invalid).into_owned())
                .collect::<Vec<_>>();
            break;
        }
        if let Some(h) = header.first_mut()
            && let Some(stripped) = h.strip_prefix('\u{feff}')
        {
            *h = stripped.to_string();
        }
        let header = dedupe(header);
        Ok(ReportReader {
            reader,
            header,
            record: csv::ByteRecord::new(),
            invalid_utf8_cells: invalid,
            ragged_rows: 0,
            line: 2,
        })
    }

    /// Column names, BOM stripped, duplicates renamed `Name (2)`.
    pub fn header(&self) -> &[String] {
        &self.header
    }

    /// An empty batch as wide as the header, for [`ReportReader::read_into`].
    pub fn batch(&self) -> CsvBatch {
        CsvBatch::new(self.header.len())
    }

    /// Appends up to `max` rows to `batch` and returns how many: 0 at the end of the file.
    /// Each cell goes from the CSV record straight into its column's builder. A batch of
    /// another width than the header is refused (`InvalidInput`): its columns would not be
    /// the header's.
    pub fn read_into(&mut self, batch: &mut CsvBatch, max: usize) -> std::io::Result<usize> {
        let n = self.header.len();
        if batch.width() != n {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!(
                    "a batch of {} columns for a report of {n} columns",
                    batch.width()
                ),
            ));
        }
        let mut read = 0;
        while read < max {
            if !self
                .reader
                .read_byte_record(&mut self.record)
                .map_err(csv_io)?
            {
                break;
            }
            self.line = self
                .record
                .position()
                .map(|p| p.line())
                .unwrap_or(self.line);
            if is_blank(&self.record) {
                continue;
            }
            let len = self.record.len();
            if len != n {
                self.ragged_rows += 1;
            }
            for (f, column) in self.record.iter().zip(&mut batch.cells) {
                column.append_value(decode(f, &mut self.invalid_utf8_cells));
            }
            for column in batch.cells.iter_mut().skip(len) {
                column.append_null();
            }
            if len > n {
                // Rare: cells beyond the header, as the JSON array of their texts.
                let extra: Vec<Cow<str>> = self
                    .record
                    .iter()
                    .skip(n)
                    .map(|f| decode(f, &mut self.invalid_utf8_cells))
                    .collect();
                batch
                    .extra
                    .append_value(serde_json::to_string(&extra).unwrap_or_default());
            } else {
                batch.extra.append_null();
            }
            batch.rows += 1;
            read += 1;
        }
        Ok(read)
    }
}

fn is_blank(r: &csv::ByteRecord) -> bool {
    r.is_empty() || (r.len() == 1 && r[0].iter().all(|b| b.is_ascii_whitespace()))
}

/// A cell's text, borrowed when it is valid UTF-8 (the usual case); otherwise with U+FFFD
/// for the invalid bytes, counted in `invalid`.
fn decode<'a>(bytes: &'a [u8], invalid: &mut u64) -> Cow<'a, str> {
    match std::str::from_utf8(bytes) {
        Ok(s) => Cow::Borrowed(s),
        Err(_) => {
            *invalid += 1;
            String::from_utf8_lossy(bytes)
        }
    }
}

fn dedupe(names: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(names.len());
    for (i, name) in names.into_iter().enumerate() {
        let base = if name.trim().is_empty() {
            format!("Column {}", i + 1)
        } else {
            name
        };
        let mut candidate = base.clone();
        let mut k = 2;
        while out.contains(&candidate) || is_lineage(&candidate) {
            candidate = format!("{base} ({k})");
            k += 1;
        }
        out.push(candidate);
    }
    out
}

/// Names reserved for lineage and typed columns in the landed Parquet.
fn is_lineage(name: &str) -> bool {
    crate::land::LINEAGE_COLUMNS.contains(&name)
        || name == crate::land::EXTRA_COLUMN
        || crate::land::report_typed::is_reserved(name)
}

fn csv_io(e: csv::Error) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// `bytes` as a file (removed when the returned handle drops) and a reader on it.
    fn reader(bytes: &[u8]) -> (tempfile::NamedTempFile, ReportReader) {
        let mut t = tempfile::NamedTempFile::new().unwrap();
        t.write_all(bytes).unwrap();
        let r = ReportReader::open(t.path()).unwrap();
        (t, r)
    }

    /// A batch's rows as (cells, extra), for comparing.
    type Rows = Vec<(Vec<Option<String>>, Option<String>)>;

    fn rows(c: &CsvColumns) -> Rows {
        (0..c.len())
            .map(|r| {
                let cells = (0..c.cells.len())
                    .map(|i| c.cell(i, r).map(String::from))
                    .collect();
                (cells, c.extra(r).map(String::from))
            })
            .collect()
    }

    /// Up to `max` rows, read into a fresh batch.
    fn next(r: &mut ReportReader, max: usize) -> Rows {
        let mut b = r.batch();
        let n = r.read_into(&mut b, max).unwrap();
        assert_eq!(n, b.len());
        rows(&b.finish())
    }

    fn some(v: &[&str]) -> Vec<Option<String>> {
        v.iter().map(|c| Some(c.to_string())).collect()
    }

    #[test]
    fn bom_crlf_blank_lines_and_quotes() {
        let data = "\u{feff}Report Refresh Date,User Principal Name,Display Name\r\n\r\n2026-11-26,a@x.com,\"Doe, Jane \"\"JJ\"\"\"\r\n2026-11-26,b@x.com,\"two\r\nlines\"\r\n\r\n\r\n";
        let (_t, mut r) = reader(data.as_bytes());
        assert_eq!(
            r.header(),
            ["Report Refresh Date", "User Principal Name", "Display Name"]
        );
        let rows = next(&mut r, 10);
        assert_eq!(
            rows,
            vec![
                (some(&["2026-11-26", "a@x.com", "Doe, Jane \"JJ\""]), None),
                (some(&["2026-11-26", "b@x.com", "two\r\nlines"]), None),
            ]
        );
        assert!(next(&mut r, 10).is_empty());
        assert_eq!((r.ragged_rows, r.invalid_utf8_cells), (0, 0));
    }

    #[test]
    fn short_and_long_rows_lose_nothing() {
        let (_t, mut r) = reader(b"A,B,C\n1,2\n1,2,3,4,\"5,\"\"six\"\"\"\n,,\n");
        let rows = next(&mut r, 10);
        assert_eq!(
            rows[0],
            (vec![Some("1".into()), Some("2".into()), None], None)
        );
        // The extras as the JSON array of their texts, as serde_json writes a Vec<String>.
        let extra = serde_json::to_string(&["4", "5,\"six\""]).unwrap();
        assert_eq!(extra, r#"["4","5,\"six\""]"#);
        assert_eq!(rows[1], (some(&["1", "2", "3"]), Some(extra)));
        // Empty cells are empty text, not NULL.
        assert_eq!(rows[2], (some(&["", "", ""]), None));
        assert_eq!(r.ragged_rows, 2);
    }

    #[test]
    fn invalid_utf8_is_replaced_and_counted() {
        let (_t, mut r) = reader(b"A,B\xfe\nok,bad\xff\n\xc3,x,\xe2\x82\n");
        assert_eq!(r.header(), ["A", "B\u{fffd}"]);
        let rows = next(&mut r, 10);
        assert_eq!(rows[0], (some(&["ok", "bad\u{fffd}"]), None));
        assert_eq!(
            rows[1],
            (some(&["\u{fffd}", "x"]), Some("[\"\u{fffd}\"]".to_string()))
        );
        // The header's cell, two data cells and one extra cell.
        assert_eq!(r.invalid_utf8_cells, 4);
    }

    #[test]
    fn empty_and_header_only() {
        let (_t, mut r) = reader(b"");
        assert!(r.header().is_empty());
        assert!(next(&mut r, 10).is_empty());
        let (_t, mut r) = reader(b"\xef\xbb\xbfA,B\r\n");
        assert_eq!(r.header(), ["A", "B"]);
        assert!(next(&mut r, 10).is_empty());
    }

    #[test]
    fn duplicate_and_reserved_headers_renamed() {
        let (_t, r) = reader(b"A,A,,_run_id\n");
        assert_eq!(r.header(), ["A", "A (2)", "Column 3", "_run_id (2)"]);
    }

    #[test]
    fn batches_respect_max_and_start_empty_again() {
        let mut data = String::from("A,B\n");
        for i in 0..25 {
            data.push_str(&format!("{i},{}\n", "x".repeat(i)));
        }
        let (_t, mut r) = reader(data.as_bytes());
        let mut b = r.batch();
        let mut all = Vec::new();
        for want in [10, 10, 5, 0] {
            assert_eq!(r.read_into(&mut b, 10).unwrap(), want);
            let c = b.finish();
            assert_eq!((c.len(), b.len()), (want, 0));
            all.extend(rows(&c));
        }
        let expected: Rows = (0..25)
            .map(|i| (some(&[&i.to_string(), &"x".repeat(i)]), None))
            .collect();
        assert_eq!(all, expected);
    }

    #[test]
    fn a_batch_of_another_width_is_refused() {
        let (_t, mut r) = reader(b"A,B\n1,2\n");
        let e = r.read_into(&mut CsvBatch::new(3), 10).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
        assert_eq!(next(&mut r, 10), vec![(some(&["1", "2"]), None)]);
    }

    #[test]
    fn a_cell_out_of_range_is_none() {
        let (_t, mut r) = reader(b"A\n1\n");
        let mut b = r.batch();
        r.read_into(&mut b, 10).unwrap();
        let c = b.finish();
        assert_eq!(c.cell(0, 0), Some("1"));
        assert_eq!((c.cell(1, 0), c.cell(0, 1)), (None, None));
    }
}
