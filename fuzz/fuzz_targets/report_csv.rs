//! The usage-report CSV reader on arbitrary bytes (a report download is untrusted input).
//!
//! Never panics; returns a header and rows or an I/O error with a message; and:
//! - every row has exactly one cell per header column (short rows padded with `None`), and
//!   extra cells are a JSON array of strings;
//! - header names are unique, non-empty and never a lineage column;
//! - reading in batches of 1..=3 rows gives the same rows as one big batch;
//! - a leading UTF-8 BOM changes nothing (Excel and Microsoft both write one);
//! - valid UTF-8 in means no replaced cells.
#![no_main]

use libfuzzer_sys::fuzz_target;
use m365_connector::land::report_csv::{CsvColumns, ReportReader};

const BOM: &[u8] = b"\xef\xbb\xbf";
const LINEAGE: [&str; 6] = [
    "_run_id",
    "_stream",
    "_page",
    "_row",
    "_extracted_at",
    "_extra",
];

/// One row as read: its header cells and its extra cells' JSON.
#[derive(Debug, PartialEq)]
struct Row {
    cells: Vec<Option<String>>,
    extra: Option<String>,
}

struct Read {
    header: Vec<String>,
    rows: Vec<Row>,
    ragged: u64,
    invalid: u64,
}

fn read(data: &[u8], batch: usize) -> Result<Read, String> {
    let mut r = ReportReader::from_reader(data).map_err(|e| e.to_string())?;
    let header = r.header().to_vec();
    let mut rows = Vec::new();
    let mut b = r.batch();
    loop {
        let n = r.read_into(&mut b, batch).map_err(|e| e.to_string())?;
        assert!(n <= batch, "a batch longer than asked for");
        assert_eq!(n, b.len(), "rows read and rows in the batch differ");
        if n == 0 {
            break;
        }
        let columns = b.finish();
        assert!(b.is_empty(), "a finished batch kept its rows");
        rows.extend(owned(&columns));
    }
    Ok(Read {
        header,
        rows,
        ragged: r.ragged_rows,
        invalid: r.invalid_utf8_cells,
    })
}

fn owned(c: &CsvColumns) -> Vec<Row> {
    (0..c.len())
        .map(|r| Row {
            cells: (0..c.cells.len())
                .map(|i| c.cell(i, r).map(String::from))
                .collect(),
            extra: c.extra(r).map(String::from),
        })
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let whole = match read(data, 256) {
        Ok(r) => r,
        Err(e) => {
            assert!(!e.is_empty(), "an error without a message");
            return;
        }
    };
    let n = whole.header.len();
    for (i, h) in whole.header.iter().enumerate() {
        assert!(!h.trim().is_empty(), "empty header name {i}");
        assert!(
            !LINEAGE.contains(&h.as_str()),
            "lineage name {h:?} in header"
        );
        assert!(!whole.header[..i].contains(h), "duplicate header {h:?}");
    }
    for row in &whole.rows {
        assert_eq!(row.cells.len(), n, "row width differs from the header");
        if let Some(extra) = &row.extra {
            assert!(
                row.cells.iter().all(Option::is_some),
                "extra cells on a short row"
            );
            let cells: Vec<String> =
                serde_json::from_str(extra).expect("extra cells are not a JSON array of strings");
            assert!(!cells.is_empty(), "an empty extra array instead of NULL");
        }
    }
    assert!(whole.ragged <= whole.rows.len() as u64);
    if std::str::from_utf8(data).is_ok() {
        assert_eq!(whole.invalid, 0, "valid UTF-8 counted as invalid");
    }

    let batch = 1 + usize::from(data.first().copied().unwrap_or(0) % 3);
    let small = read(data, batch).expect("the same bytes failed in small batches");
    assert_eq!(small.header, whole.header);
    assert_eq!(small.rows, whole.rows, "batch size changed the rows");
    assert_eq!((small.ragged, small.invalid), (whole.ragged, whole.invalid));

    if !data.starts_with(BOM) {
        let with_bom = [BOM, data].concat();
        let b = read(&with_bom, 256).expect("a BOM made the reader fail");
        assert_eq!(b.header, whole.header, "a leading BOM changed the header");
        assert_eq!(b.rows, whole.rows, "a leading BOM changed the rows");
    }
});
