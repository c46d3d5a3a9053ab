//! Reading a usage-report CSV as Microsoft actually serves it: a UTF-8 BOM, CRLF, blank
//! lines, quoted commas and newlines, and columns that appear without notice. Columns are
//! matched by header name, rows are read in batches so memory does not grow with the file.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

/// One data row: a cell per header column (`None` when the row was short), plus any cells
/// beyond the header (kept, never dropped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsvRow {
    pub cells: Vec<Option<String>>,
    pub extra: Vec<String>,
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
                .map(|f| decode(f, &mut invalid))
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

    /// Up to `max` rows; an empty vector at the end of the file.
    pub fn next_batch(&mut self, max: usize) -> std::io::Result<Vec<CsvRow>> {
        let mut rows = Vec::with_capacity(max.min(4096));
        while rows.len() < max {
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
            let n = self.header.len();
            if self.record.len() != n {
                self.ragged_rows += 1;
            }
            let mut cells = Vec::with_capacity(n);
            let mut extra = Vec::new();
            for (i, f) in self.record.iter().enumerate() {
                let v = decode(f, &mut self.invalid_utf8_cells);
                if i < n {
                    cells.push(Some(v));
                } else {
                    extra.push(v);
                }
            }
            cells.resize(n, None);
            rows.push(CsvRow { cells, extra });
        }
        Ok(rows)
    }
}

fn is_blank(r: &csv::ByteRecord) -> bool {
    r.is_empty() || (r.len() == 1 && r[0].iter().all(|b| b.is_ascii_whitespace()))
}

fn decode(bytes: &[u8], invalid: &mut u64) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_string(),
        Err(_) => {
            *invalid += 1;
            String::from_utf8_lossy(bytes).into_owned()
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

    #[test]
    fn bom_crlf_blank_lines_and_quotes() {
        let data = "\u{feff}Report Refresh Date,User Principal Name,Display Name\r\n\r\n2026-11-26,a@x.com,\"Doe, Jane \"\"JJ\"\"\"\r\n2026-11-26,b@x.com,\"two\r\nlines\"\r\n\r\n\r\n";
        let (_t, mut r) = reader(data.as_bytes());
        assert_eq!(
            r.header(),
            ["Report Refresh Date", "User Principal Name", "Display Name"]
        );
        let rows = r.next_batch(10).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].cells[2].as_deref(), Some("Doe, Jane \"JJ\""));
        assert_eq!(rows[1].cells[2].as_deref(), Some("two\r\nlines"));
        assert!(r.next_batch(10).unwrap().is_empty());
    }

    #[test]
    fn short_and_long_rows_lose_nothing() {
        let (_t, mut r) = reader(b"A,B,C\n1,2\n1,2,3,4,5\n");
        let rows = r.next_batch(10).unwrap();
        assert_eq!(
            rows[0].cells,
            vec![Some("1".into()), Some("2".into()), None]
        );
        assert_eq!(rows[1].extra, vec!["4".to_string(), "5".to_string()]);
        assert_eq!(r.ragged_rows, 2);
    }

    #[test]
    fn invalid_utf8_is_replaced_and_counted() {
        let (_t, mut r) = reader(b"A,B\nok,bad\xff\n");
        let rows = r.next_batch(10).unwrap();
        assert_eq!(rows[0].cells[1].as_deref(), Some("bad\u{fffd}"));
        assert_eq!(r.invalid_utf8_cells, 1);
    }

    #[test]
    fn empty_and_header_only() {
        let (_t, mut r) = reader(b"");
        assert!(r.header().is_empty());
        assert!(r.next_batch(10).unwrap().is_empty());
        let (_t, mut r) = reader(b"\xef\xbb\xbfA,B\r\n");
        assert_eq!(r.header(), ["A", "B"]);
        assert!(r.next_batch(10).unwrap().is_empty());
    }

    #[test]
    fn duplicate_and_reserved_headers_renamed() {
        let (_t, r) = reader(b"A,A,,_run_id\n");
        assert_eq!(r.header(), ["A", "A (2)", "Column 3", "_run_id (2)"]);
    }

    #[test]
    fn batches_respect_max() {
        let mut data = String::from("A\n");
        for i in 0..25 {
            data.push_str(&format!("{i}\n"));
        }
        let (_t, mut r) = reader(data.as_bytes());
        assert_eq!(r.next_batch(10).unwrap().len(), 10);
        assert_eq!(r.next_batch(10).unwrap().len(), 10);
        assert_eq!(r.next_batch(10).unwrap().len(), 5);
        assert!(r.next_batch(10).unwrap().is_empty());
    }
}
