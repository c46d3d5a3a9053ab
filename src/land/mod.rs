//! Raw landing: Graph records and report rows written to Parquet as they arrive, each row
//! with its lineage (`_run_id`, `_stream`, `_page`, `_row`, `_extracted_at`).
//!
//! JSON records are stored as the exact text Graph sent (column `record`), so nothing Graph
//! sent is lost, including fields we did not ask for. Report rows get one nullable text
//! column per CSV header name, so columns are matched by name, never by position. Files are
//! written under a `.tmp` name, hashed while written, and renamed when complete.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{
    ArrayRef, Int32Array, Int64Array, StringArray, StringBuilder, TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use chrono::{DateTime, Utc};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::digest::hex;
use report_csv::CsvColumns;

pub mod report_csv;
pub mod report_typed;
pub mod users_typed;

/// Lineage columns every landed row carries, in order.
pub const LINEAGE_COLUMNS: [&str; 5] = ["_run_id", "_stream", "_page", "_row", "_extracted_at"];
/// JSON streams: the record exactly as Graph sent it.
pub const RECORD_COLUMN: &str = "record";
/// Report streams: CSV cells beyond the header, as a JSON array (rare; never dropped).
pub const EXTRA_COLUMN: &str = "_extra";

/// Rows per Parquet row group: bounds writer memory whatever the tenant size.
const ROW_GROUP_ROWS: usize = 8_192;

/// A landing failure, naming the file.
#[derive(Debug, thiserror::Error)]
#[error("writing {path}: {message}")]
pub struct LandError {
    pub path: PathBuf,
    pub message: String,
}

/// One committed file, as listed in the run manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LandedFile {
    /// File name inside the run directory.
    pub file: String,
    pub rows: u64,
    pub bytes: u64,
    pub sha256: String,
}

/// Which run and stream the rows belong to.
#[derive(Debug, Clone)]
pub struct Lineage {
    pub run_id: String,
    pub stream: String,
}

/// A `Write` that hashes and counts what passes through it.
struct HashingFile {
    file: File,
    hasher: Sha256,
    bytes: u64,
}

impl Write for HashingFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

/// A Parquet file being written; shared by the JSON and CSV landers.
struct ParquetFile {
    writer: ArrowWriter<HashingFile>,
    schema: SchemaRef,
    tmp: PathBuf,
    path: PathBuf,
    rows: u64,
    /// `_row` of this file's first row: a stream landed in several files numbers on.
    first_row: u64,
    lineage: Lineage,
}

impl ParquetFile {
    fn create(
        dir: &Path,
        name: &str,
        schema: SchemaRef,
        lineage: Lineage,
        first_row: u64,
    ) -> Result<Self, LandError> {
        let path = dir.join(format!("{name}.parquet"));
        let tmp = dir.join(format!("{name}.parquet.tmp"));
        let err = |m: String| LandError {
            path: path.clone(),
            message: m,
        };
        let file = File::create(&tmp).map_err(|e| err(e.to_string()))?;
        let props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
            .set_created_by(concat!("m365-connector ", env!("CARGO_PKG_VERSION")).to_string())
            .build();
        let sink = HashingFile {
            file,
            hasher: Sha256::new(),
            bytes: 0,
        };
        let writer = ArrowWriter::try_new(sink, schema.clone(), Some(props))
            .map_err(|e| err(e.to_string()))?;
        Ok(ParquetFile {
            writer,
            schema,
            tmp,
            path,
            rows: 0,
            first_row,
            lineage,
        })
    }

    /// Lineage arrays for `n` rows of page `page`, numbered from the stream's row count.
    fn lineage_arrays(&self, n: usize, page: i32, at: DateTime<Utc>) -> Vec<ArrayRef> {
        let first = (self.first_row + self.rows) as i64;
        vec![
            Arc::new(StringArray::from_iter_values(std::iter::repeat_n(
                self.lineage.run_id.as_str(),
                n,
            ))),
            Arc::new(StringArray::from_iter_values(std::iter::repeat_n(
                self.lineage.stream.as_str(),
                n,
            ))),
            Arc::new(Int32Array::from_iter_values(std::iter::repeat_n(page, n))),
            Arc::new(Int64Array::from_iter_values(first..first + n as i64)),
            Arc::new(
                TimestampMicrosecondArray::from_iter_values(std::iter::repeat_n(
                    at.timestamp_micros(),
                    n,
                ))
                .with_timezone("UTC"),
            ),
        ]
    }

    fn write(&mut self, columns: Vec<ArrayRef>) -> Result<(), LandError> {
        let batch = RecordBatch::try_new(self.schema.clone(), columns)
            .map_err(|e| self.err(e.to_string()))?;
        self.rows += batch.num_rows() as u64;
        self.writer
            .write(&batch)
            .map_err(|e| self.err(e.to_string()))
    }

    fn err(&self, message: String) -> LandError {
        LandError {
            path: self.path.clone(),
            message,
        }
    }

    /// Writes the footer, syncs, and renames the file to its final name.
    fn finish(self) -> Result<LandedFile, LandError> {
        let path = self.path.clone();
        let err = |m: String| LandError {
            path: path.clone(),
            message: m,
        };
        let sink = self.writer.into_inner().map_err(|e| err(e.to_string()))?;
        sink.file.sync_all().map_err(|e| err(e.to_string()))?;
        std::fs::rename(&self.tmp, &self.path).map_err(|e| err(e.to_string()))?;
        Ok(LandedFile {
            file: self
                .path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            rows: self.rows,
            bytes: sink.bytes,
            sha256: hex(&sink.hasher.finalize()),
        })
    }
}

fn lineage_fields() -> Vec<Field> {
    vec![
        Field::new("_run_id", DataType::Utf8, false),
        Field::new("_stream", DataType::Utf8, false),
        Field::new("_page", DataType::Int32, false),
        Field::new("_row", DataType::Int64, false),
        Field::new(
            "_extracted_at",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
    ]
}

/// Lands a JSON stream (users, organization, subscribed SKUs) page by page. The users
/// stream also gets its typed columns ([`users_typed`]).
pub struct JsonLander {
    file: ParquetFile,
    typed: Option<users_typed::TypedBuilders>,
}

impl JsonLander {
    pub fn create(dir: &Path, name: &str, lineage: Lineage) -> Result<Self, LandError> {
        Self::create_at(dir, name, lineage, 0)
    }

    /// A further file of a stream landed in segments; its `_row` numbering starts at
    /// `first_row`, so (`_run_id`, `_stream`, `_row`) stays a key across the files.
    pub fn create_at(
        dir: &Path,
        name: &str,
        lineage: Lineage,
        first_row: u64,
    ) -> Result<Self, LandError> {
        let mut fields = lineage_fields();
        fields.push(Field::new(RECORD_COLUMN, DataType::Utf8, false));
        let typed = (lineage.stream == crate::streams::Stream::Users.name())
            .then(users_typed::TypedBuilders::new);
        if typed.is_some() {
            fields.extend(users_typed::fields());
        }
        let schema = Arc::new(Schema::new(fields));
        Ok(JsonLander {
            file: ParquetFile::create(dir, name, schema, lineage, first_row)?,
            typed,
        })
    }

    /// Appends the records of one page (raw JSON texts).
    pub fn write_page<'a>(
        &mut self,
        page: i32,
        at: DateTime<Utc>,
        records: impl ExactSizeIterator<Item = &'a [u8]>,
    ) -> Result<(), LandError> {
        let n = records.len();
        let mut builder = StringBuilder::with_capacity(n, 1024 * n);
        for r in records {
            let text = std::str::from_utf8(r)
                .map_err(|e| self.file.err(format!("record is not UTF-8: {e}")))?;
            builder.append_value(text);
            if let Some(t) = &mut self.typed {
                t.append(text);
            }
        }
        let mut columns = self.file.lineage_arrays(n, page, at);
        columns.push(Arc::new(builder.finish()));
        if let Some(t) = &mut self.typed {
            columns.extend(t.finish());
        }
        self.file.write(columns)
    }

    /// Rows written to this file so far.
    pub fn rows(&self) -> u64 {
        self.file.rows
    }

    pub fn finish(self) -> Result<LandedFile, LandError> {
        self.file.finish()
    }
}

/// Lands a report CSV: one text column per header name, then the report's typed columns
/// ([`report_typed`]).
pub struct CsvLander {
    file: ParquetFile,
    width: usize,
    typed: Option<(report_typed::TypedColumns, report_typed::TypedBuilders)>,
}

impl CsvLander {
    pub fn create(
        dir: &Path,
        name: &str,
        header: &[String],
        lineage: Lineage,
    ) -> Result<Self, LandError> {
        let mut fields = lineage_fields();
        fields.extend(header.iter().map(|h| Field::new(h, DataType::Utf8, true)));
        fields.push(Field::new(EXTRA_COLUMN, DataType::Utf8, true));
        let typed = crate::streams::Report::from_stream(&lineage.stream).map(|r| {
            let t = report_typed::TypedColumns::new(r, header);
            let b = t.builders();
            (t, b)
        });
        if let Some((t, _)) = &typed {
            fields.extend(t.fields(header));
        }
        let schema = Arc::new(Schema::new(fields));
        Ok(CsvLander {
            file: ParquetFile::create(dir, name, schema, lineage, 0)?,
            width: header.len(),
            typed,
        })
    }

    /// Appends one batch of rows read by [`report_csv::ReportReader::read_into`]: its text
    /// arrays become the file's columns as they are, and the typed columns are parsed from
    /// the same arrays (no cell is copied on the way). A batch of another width than the
    /// header is refused, naming the file.
    pub fn write_batch(&mut self, at: DateTime<Utc>, batch: CsvColumns) -> Result<(), LandError> {
        let n = batch.len();
        if n == 0 {
            return Ok(());
        }
        if batch.cells.len() != self.width {
            return Err(self.file.err(format!(
                "a batch of {} columns for a header of {}",
                batch.cells.len(),
                self.width
            )));
        }
        let mut columns = self.file.lineage_arrays(n, 1, at);
        if let Some((t, b)) = &mut self.typed {
            for r in 0..n {
                t.append(b, |i| batch.cell(i, r));
            }
        }
        let CsvColumns { cells, extra } = batch;
        columns.extend(cells.into_iter().map(|a| Arc::new(a) as ArrayRef));
        columns.push(Arc::new(extra));
        if let Some((_, b)) = &mut self.typed {
            columns.extend(b.finish());
        }
        self.file.write(columns)
    }

    pub fn rows(&self) -> u64 {
        self.file.rows
    }

    pub fn finish(self) -> Result<LandedFile, LandError> {
        self.file.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Array;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    fn lineage() -> Lineage {
        Lineage {
            run_id: "20261128T020000Z-abcd".into(),
            stream: "users".into(),
        }
    }

    #[test]
    fn json_round_trip_is_byte_exact_and_hashed() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let mut l = JsonLander::create(dir, "users", lineage()).unwrap();
        let recs: Vec<&[u8]> = vec![
            br#"{"id":"1","n":"\u00e9 \"q\""}"#,
            "{\"id\":\"2\",\"n\":\"😀 עברית\"}".as_bytes(),
        ];
        l.write_page(1, Utc::now(), recs.clone().into_iter())
            .unwrap();
        l.write_page(2, Utc::now(), recs.clone().into_iter())
            .unwrap();
        let f = l.finish().unwrap();
        assert_eq!((f.file.as_str(), f.rows), ("users.parquet", 4));
        let path = dir.join("users.parquet");
        assert!(!dir.join("users.parquet.tmp").exists());
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(f.bytes, bytes.len() as u64);
        assert_eq!(f.sha256, crate::digest::hex(&Sha256::digest(&bytes)));
        let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(&path).unwrap())
            .unwrap()
            .build()
            .unwrap();
        let mut texts = Vec::new();
        let mut rows = Vec::new();
        for b in reader {
            let b = b.unwrap();
            let rec = b
                .column_by_name("record")
                .unwrap()
                .as_any()
                .downcast_ref::<StringArray>()
                .unwrap()
                .clone();
            let row = b
                .column_by_name("_row")
                .unwrap()
                .as_any()
                .downcast_ref::<Int64Array>()
                .unwrap()
                .clone();
            for i in 0..b.num_rows() {
                texts.push(rec.value(i).as_bytes().to_vec());
                rows.push(row.value(i));
            }
        }
        assert_eq!(texts[1], recs[1]);
        assert_eq!(texts[2], recs[0]);
        assert_eq!(rows, vec![0, 1, 2, 3]);
        tmp.close().unwrap();
    }

    /// Lands `csv` as the stream `stream` in batches of `max` rows and reads the file back
    /// as one batch.
    fn land_csv(csv: &[u8], stream: &str, max: usize) -> RecordBatch {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let mut reader = report_csv::ReportReader::from_reader(csv).unwrap();
        let header = reader.header().to_vec();
        let lineage = Lineage {
            run_id: "20261128T020000Z-abcd".into(),
            stream: stream.into(),
        };
        let mut l = CsvLander::create(dir, "r", &header, lineage).unwrap();
        let mut batch = reader.batch();
        while reader.read_into(&mut batch, max).unwrap() > 0 {
            l.write_batch(Utc::now(), batch.finish()).unwrap();
        }
        let f = l.finish().unwrap();
        let file = File::open(dir.join("r.parquet")).unwrap();
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap();
        let batches: Vec<RecordBatch> = reader.map(Result::unwrap).collect();
        let all = arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap();
        assert_eq!(f.rows, all.num_rows() as u64);
        all
    }

    fn text(b: &RecordBatch, name: &str) -> Vec<Option<String>> {
        let a = b
            .column_by_name(name)
            .unwrap_or_else(|| panic!("no column {name}"))
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        a.iter().map(|v| v.map(String::from)).collect()
    }

    #[test]
    fn csv_columns_by_name_with_nulls_and_extras() {
        let b = land_csv(
            b"User Principal Name,Display Name\na@x\nb@x,,z\n",
            "users",
            10,
        );
        assert_eq!(text(&b, "Display Name"), vec![None, Some(String::new())]);
        assert_eq!(text(&b, "_extra"), vec![None, Some(r#"["z"]"#.to_string())]);
        // Not a report's stream: no typed columns.
        assert!(b.column_by_name(report_typed::USER_KEY_COLUMN).is_none());
    }

    #[test]
    fn a_batch_of_another_width_is_refused_naming_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        let header = vec!["A".to_string(), "B".to_string()];
        let mut l = CsvLander::create(tmp.path(), "r", &header, lineage()).unwrap();
        let mut reader = report_csv::ReportReader::from_reader(&b"A\n1\n"[..]).unwrap();
        let mut batch = reader.batch();
        reader.read_into(&mut batch, 10).unwrap();
        let e = l.write_batch(Utc::now(), batch.finish()).unwrap_err();
        assert!(e.to_string().contains("r.parquet"), "{e}");
        assert_eq!(l.rows(), 0);
    }

    #[test]
    fn report_rows_land_with_their_typed_columns_across_batches() {
        use arrow::array::{BooleanArray, Date32Array, Int64Array};
        let stream = crate::streams::Report::EmailActivityUserDetail.stream();
        let csv = "\u{feff}User Principal Name,Last Activity Date,Send Count,Is Deleted\r\n\
                   Ann@X.com,2026-11-01,3,False\r\n\
                   0123456789ABCDEF0123456789abcdef,,x,True\r\n\
                   \"b@x.com\",\"2026-11-02\"\r\n\
                   \"C@x\r\ny\",1970-01-02, 7 ,yes,extra\r\n\
                   bad\u{ff}@x.com,nope,+2,no\r\n";
        let bytes = csv.as_bytes().to_vec();
        // Invalid UTF-8 must reach the file replaced, so put the byte in by hand.
        let bytes = {
            let mut v = bytes;
            let at = v.windows(4).position(|w| w == b"\xc3\xbf@x").unwrap();
            v.splice(at..at + 2, [0xff]);
            v
        };
        for max in [1, 2, 100] {
            let b = land_csv(&bytes, stream, max);
            assert_eq!(b.num_rows(), 5, "batches of {max}");
            assert_eq!(
                text(&b, "User Principal Name"),
                [
                    "Ann@X.com",
                    "0123456789ABCDEF0123456789abcdef",
                    "b@x.com",
                    "C@x\r\ny",
                    "bad\u{fffd}@x.com"
                ]
                .map(|s| Some(s.to_string()))
            );
            assert_eq!(
                text(&b, "Send Count"),
                vec![
                    Some("3".into()),
                    Some("x".into()),
                    None,
                    Some(" 7 ".into()),
                    Some("+2".into())
                ]
            );
            assert_eq!(
                text(&b, "_extra"),
                vec![None, None, None, Some(r#"["extra"]"#.into()), None]
            );
            assert_eq!(
                text(&b, report_typed::USER_KEY_COLUMN),
                vec![
                    Some("ann@x.com".into()),
                    None,
                    Some("b@x.com".into()),
                    Some("c@x\r\ny".into()),
                    Some("bad\u{fffd}@x.com".into())
                ]
            );
            let col = |name: &str| b.column_by_name(name).unwrap().clone();
            let concealed = col(report_typed::USER_CONCEALED_COLUMN);
            let concealed = concealed.as_any().downcast_ref::<BooleanArray>().unwrap();
            assert_eq!(
                concealed.iter().collect::<Vec<_>>(),
                [false, true, false, false, false].map(Some)
            );
            let date = col("Last Activity Date [date]");
            let date = date.as_any().downcast_ref::<Date32Array>().unwrap();
            assert_eq!(
                date.iter().collect::<Vec<_>>(),
                vec![Some(20_758), None, Some(20_759), Some(1), None]
            );
            let sent = col("Send Count [int]");
            let sent = sent.as_any().downcast_ref::<Int64Array>().unwrap();
            assert_eq!(
                sent.iter().collect::<Vec<_>>(),
                vec![Some(3), None, None, Some(7), Some(2)]
            );
            let deleted = col("Is Deleted [bool]");
            let deleted = deleted.as_any().downcast_ref::<BooleanArray>().unwrap();
            assert_eq!(
                deleted.iter().collect::<Vec<_>>(),
                vec![Some(false), Some(true), None, Some(true), Some(false)]
            );
            let row = col("_row");
            let row = row.as_any().downcast_ref::<Int64Array>().unwrap();
            assert_eq!(row.values().to_vec(), vec![0, 1, 2, 3, 4]);
        }
    }
}
