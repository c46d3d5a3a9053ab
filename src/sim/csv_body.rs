//! Response bodies generated on the fly: the report CSV (whole, or cut inside a record for
//! `cut-close`), and wrappers that spoil a body: a connection reset part-way, a body shorter
//! than its Content-Length (`bad-length`), a body sent a few bytes at a time (`trickle`).
//!
//! The CSV is produced chunk by chunk from the row iterator as hyper polls for data, so a
//! million-row report costs one chunk of memory, never the whole file.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};

/// The UTF-8 byte-order mark real report downloads start with.
pub const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Target size of one body chunk.
const CHUNK: usize = 32 * 1024;

/// Appends one RFC 4180 record with a CRLF line ending. Fields are quoted when they hold a
/// comma, quote, CR or LF, or start/end with whitespace (so spreadsheet tools keep it).
pub fn write_record<S: AsRef<str>>(out: &mut Vec<u8>, fields: &[S]) {
    for (n, f) in fields.iter().enumerate() {
        if n > 0 {
            out.push(b',');
        }
        write_field(out, f.as_ref());
    }
    out.extend_from_slice(b"\r\n");
}

fn needs_quotes(f: &str) -> bool {
    f.bytes().any(|b| matches!(b, b',' | b'"' | b'\r' | b'\n'))
        || f.starts_with(char::is_whitespace)
        || f.ends_with(char::is_whitespace)
}

/// Appends one field, quoted if it must be; true if it was.
fn write_field(out: &mut Vec<u8>, f: &str) -> bool {
    if needs_quotes(f) {
        out.push(b'"');
        for b in f.bytes() {
            if b == b'"' {
                out.push(b'"');
            }
            out.push(b);
        }
        out.push(b'"');
        true
    } else {
        out.extend_from_slice(f.as_bytes());
        false
    }
}

/// Whether a record has a quoted field other than its last one (where `cut-close` can cut
/// inside quotes and still leave fewer cells than the header).
fn has_inner_quoted<S: AsRef<str>>(fields: &[S]) -> bool {
    let inner = fields.len().saturating_sub(1).max(1).min(fields.len());
    fields[..inner].iter().any(|f| needs_quotes(f.as_ref()))
}

/// The start of `fields` encoded as a record and cut short, never after a line break.
///
/// With `quoted`, the cut lands inside the first quoted field other than the last (after its
/// opening quote, before its closing one, and not between the two quotes of an escaped
/// quote), if there is one. Otherwise it lands in the middle of an unquoted field other than
/// the last, preferring fields near the middle of the record: a reader then sees fewer cells
/// than the header and no final line break. The cut never splits a UTF-8 character.
pub fn cut_record<S: AsRef<str>>(fields: &[S], quoted: bool) -> Vec<u8> {
    let mut out = Vec::new();
    // (start, end, quoted) of every field's bytes.
    let mut spans = Vec::with_capacity(fields.len());
    for (n, f) in fields.iter().enumerate() {
        if n > 0 {
            out.push(b',');
        }
        let start = out.len();
        let q = write_field(&mut out, f.as_ref());
        spans.push((start, out.len(), q));
    }
    // Fields other than the last (a single-field record: that field).
    let inner = fields.len().saturating_sub(1).max(1).min(fields.len());
    let boundary = |p: usize| p < out.len() && (out[p] & 0xC0) != 0x80;
    let no_break = |p: usize| !matches!(out[p - 1], b'\r' | b'\n');
    // The first valid position nearest the middle of `lo..=hi`.
    let nearest = |lo: usize, hi: usize, ok: &dyn Fn(usize) -> bool| -> Option<usize> {
        if lo > hi {
            return None;
        }
        let mid = lo + (hi - lo) / 2;
        (0..=hi - lo).find_map(|d| {
            [mid.checked_sub(d), mid.checked_add(d)]
                .into_iter()
                .flatten()
                .find(|p| (lo..=hi).contains(p) && ok(*p))
        })
    };
    let mut cut = None;
    if quoted {
        cut = spans[..inner]
            .iter()
            .filter(|(_, _, q)| *q)
            .find_map(|&(start, end, _)| {
                // Inside the quotes: an even number of quote bytes since the opening one.
                let inside = |p: usize| {
                    boundary(p)
                        && no_break(p)
                        && out[start + 1..p].iter().filter(|b| **b == b'"').count() % 2 == 0
                };
                nearest(start + 1, end - 1, &inside)
            });
    }
    if cut.is_none() {
        let mid = inner / 2;
        let mut order: Vec<usize> = (0..inner).collect();
        order.sort_by_key(|i| i.abs_diff(mid));
        cut = order
            .iter()
            .map(|i| spans[*i])
            .filter(|(start, end, q)| !q && end - start >= 2)
            .find_map(|(start, end, _)| {
                nearest(start + 1, end - 1, &|p| boundary(p) && no_break(p))
            });
    }
    // No field to cut inside (e.g. all empty): stop after the first byte that ends no line.
    let cut = cut
        .or_else(|| {
            nearest(1, out.len().saturating_sub(1), &|p| {
                boundary(p) && no_break(p)
            })
        })
        .unwrap_or(out.len().min(1));
    out.truncate(cut);
    out
}

enum Stage {
    Header,
    Rows,
    Done,
}

/// A report download: BOM, header line, rows, then one blank line, all CRLF.
pub struct CsvBody {
    header: Vec<String>,
    rows: Box<dyn Iterator<Item = Vec<String>> + Send>,
    stage: Stage,
}

impl CsvBody {
    pub fn new(
        header: Vec<String>,
        rows: impl Iterator<Item = Vec<String>> + Send + 'static,
    ) -> CsvBody {
        CsvBody {
            header,
            rows: Box::new(rows),
            stage: Stage::Header,
        }
    }

    /// The next chunk, or `None` at the end. Synchronous: rows are cheap to generate.
    pub fn next_chunk(&mut self) -> Option<Bytes> {
        let mut buf = Vec::with_capacity(CHUNK + 4096);
        loop {
            match self.stage {
                Stage::Header => {
                    buf.extend_from_slice(BOM);
                    write_record(&mut buf, &self.header);
                    self.stage = Stage::Rows;
                }
                Stage::Rows => match self.rows.next() {
                    Some(row) => write_record(&mut buf, &row),
                    None => {
                        // Real downloads end with blank line(s); readers must skip them.
                        buf.extend_from_slice(b"\r\n");
                        self.stage = Stage::Done;
                    }
                },
                Stage::Done => break,
            }
            if buf.len() >= CHUNK {
                break;
            }
        }
        (!buf.is_empty()).then(|| Bytes::from(buf))
    }

    /// The length of the whole body, generated and counted without keeping it.
    pub fn byte_len(mut self) -> u64 {
        let mut n = 0;
        while let Some(c) = self.next_chunk() {
            n += c.len() as u64;
        }
        n
    }

    /// The whole body at once (tests and small tenants only).
    pub fn collect_all(mut self) -> Vec<u8> {
        let mut out = Vec::new();
        while let Some(c) = self.next_chunk() {
            out.extend_from_slice(&c);
        }
        out
    }
}

impl Body for CsvBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        Poll::Ready(self.get_mut().next_chunk().map(|b| Ok(Frame::data(b))))
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.stage, Stage::Done)
    }
}

/// Rows searched from the cut row on for one with a quoted field (`cut-close`, quoted variant).
const QUOTED_SEARCH: usize = 256;

/// A report download for `cut-close`: BOM, header and rows as [`CsvBody`], but the body ends
/// inside data record number `at_row` (0-based; the last record if the report has fewer)
/// with no line break after it. See [`cut_record`] for where in the record; with `quoted`,
/// the cut moves to the first of the next few records that has a quoted field, if any does.
/// A report without rows is cut inside its header line.
pub struct CutCsvBody {
    header: Vec<String>,
    rows: std::iter::Peekable<Box<dyn Iterator<Item = Vec<String>> + Send>>,
    at_row: u64,
    quoted: bool,
    row: u64,
    stage: Stage,
}

impl CutCsvBody {
    pub fn new(
        header: Vec<String>,
        rows: impl Iterator<Item = Vec<String>> + Send + 'static,
        at_row: u64,
        quoted: bool,
    ) -> CutCsvBody {
        let rows: Box<dyn Iterator<Item = Vec<String>> + Send> = Box::new(rows);
        CutCsvBody {
            header,
            rows: rows.peekable(),
            at_row,
            quoted,
            row: 0,
            stage: Stage::Header,
        }
    }

    /// Writes the cut record (and, in the quoted variant, the whole records before it).
    fn write_cut(&mut self, first: Vec<String>, buf: &mut Vec<u8>) {
        let mut held = vec![first];
        if self.quoted {
            while !has_inner_quoted(&held[held.len() - 1]) && held.len() < QUOTED_SEARCH {
                match self.rows.next() {
                    Some(r) => held.push(r),
                    None => break,
                }
            }
            if let Some(at) = held.iter().position(|r| has_inner_quoted(r)) {
                for r in &held[..at] {
                    write_record(buf, r);
                }
                buf.extend_from_slice(&cut_record(&held[at], true));
                return;
            }
        }
        buf.extend_from_slice(&cut_record(&held[0], false));
    }

    /// The next chunk, or `None` at the end.
    pub fn next_chunk(&mut self) -> Option<Bytes> {
        let mut buf = Vec::with_capacity(CHUNK + 4096);
        loop {
            match self.stage {
                Stage::Header => {
                    buf.extend_from_slice(BOM);
                    if self.rows.peek().is_none() {
                        buf.extend_from_slice(&cut_record(&self.header, self.quoted));
                        self.stage = Stage::Done;
                    } else {
                        write_record(&mut buf, &self.header);
                        self.stage = Stage::Rows;
                    }
                }
                Stage::Rows => match self.rows.next() {
                    Some(row) if self.row < self.at_row && self.rows.peek().is_some() => {
                        write_record(&mut buf, &row);
                        self.row += 1;
                    }
                    Some(row) => {
                        self.write_cut(row, &mut buf);
                        self.stage = Stage::Done;
                    }
                    None => self.stage = Stage::Done,
                },
                Stage::Done => break,
            }
            if buf.len() >= CHUNK {
                break;
            }
        }
        (!buf.is_empty()).then(|| Bytes::from(buf))
    }

    /// The whole body at once (tests only).
    #[cfg(test)]
    pub fn collect_all(mut self) -> Vec<u8> {
        let mut out = Vec::new();
        while let Some(c) = self.next_chunk() {
            out.extend_from_slice(&c);
        }
        out
    }
}

impl Body for CutCsvBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        Poll::Ready(self.get_mut().next_chunk().map(|b| Ok(Frame::data(b))))
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.stage, Stage::Done)
    }

    // The default size hint (unknown) is the point: with an HTTP/1.0 response, hyper then
    // writes the body close-delimited, and the end of the body is the end of the connection.
}

/// `bad-length`: passes `inner` through with an unknown size hint, so the Content-Length
/// header the caller set (larger than `inner`) is what hyper writes and expects. Before
/// ending, it pauses briefly so the bytes reach the socket; hyper, still owed the rest, then
/// aborts the connection, and the client's body read fails.
pub struct ShortBody<B> {
    inner: B,
    ended: bool,
    pause: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<B> ShortBody<B> {
    pub fn new(inner: B) -> ShortBody<B> {
        ShortBody {
            inner,
            ended: false,
            pause: None,
        }
    }
}

impl<B> Body for ShortBody<B>
where
    B: Body<Data = Bytes, Error = io::Error> + Unpin,
{
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        if !this.ended {
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Ready(None) => this.ended = true,
                other => return other,
            }
        }
        let pause = this
            .pause
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(Duration::from_millis(30))));
        pause.as_mut().poll(cx).map(|()| None)
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

/// `trickle`: sends the first [`TRICKLE_BURST`] bytes of `inner` at once, then `step` bytes
/// every `every`, to the end. The size hint is the inner body's, so a JSON response keeps its
/// true Content-Length.
pub struct TrickleBody<B> {
    inner: B,
    inner_done: bool,
    pending: Bytes,
    burst: usize,
    step: usize,
    every: Duration,
    wait: Option<Pin<Box<tokio::time::Sleep>>>,
}

/// Bytes a trickled body sends before it slows down.
pub const TRICKLE_BURST: usize = 256;

impl<B> TrickleBody<B> {
    pub fn new(inner: B, every: Duration, step: usize) -> TrickleBody<B> {
        TrickleBody {
            inner,
            inner_done: false,
            pending: Bytes::new(),
            burst: TRICKLE_BURST,
            step: step.max(1),
            every,
            wait: None,
        }
    }
}

impl<B> Body for TrickleBody<B>
where
    B: Body<Data = Bytes, Error = io::Error> + Unpin,
{
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        while this.pending.is_empty() {
            if this.inner_done {
                return Poll::Ready(None);
            }
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => this.pending = data,
                    Err(frame) => return Poll::Ready(Some(Ok(frame))),
                },
                Poll::Ready(None) => {
                    this.inner_done = true;
                    return Poll::Ready(None);
                }
                other => return other,
            }
        }
        if this.burst > 0 {
            let n = this.burst.min(this.pending.len());
            this.burst -= n;
            return Poll::Ready(Some(Ok(Frame::data(this.pending.split_to(n)))));
        }
        let every = this.every;
        let wait = this
            .wait
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(every)));
        match wait.as_mut().poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(()) => {
                this.wait = None;
                let n = this.step.min(this.pending.len());
                Poll::Ready(Some(Ok(Frame::data(this.pending.split_to(n)))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.pending.is_empty() && (self.inner_done || self.inner.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        // What the inner body still holds plus what is waiting here.
        let inner = self.inner.size_hint();
        let extra = self.pending.len() as u64;
        let mut h = SizeHint::new();
        h.set_lower(inner.lower() + extra);
        if let Some(upper) = inner.upper() {
            h.set_upper(upper + extra);
        }
        h
    }
}

/// Passes the first `limit` bytes of `inner` through, then (after a short pause so they are
/// flushed to the socket) fails, which makes hyper drop the connection mid-body.
pub struct CutBody<B> {
    inner: B,
    remaining: usize,
    pause: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<B> CutBody<B> {
    pub fn new(inner: B, limit: usize) -> CutBody<B> {
        CutBody {
            inner,
            remaining: limit,
            pause: None,
        }
    }
}

impl<B> Body for CutBody<B>
where
    B: Body<Data = Bytes, Error = io::Error> + Unpin,
{
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        if this.remaining == 0 {
            let pause = this
                .pause
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(Duration::from_millis(30))));
            return match pause.as_mut().poll(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(()) => Poll::Ready(Some(Err(io::Error::new(
                    io::ErrorKind::ConnectionReset,
                    "simulated connection reset",
                )))),
            };
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                Ok(mut data) => {
                    if data.len() >= this.remaining {
                        data.truncate(this.remaining);
                        this.remaining = 0;
                    } else {
                        this.remaining -= data.len();
                    }
                    Poll::Ready(Some(Ok(Frame::data(data))))
                }
                Err(frame) => Poll::Ready(Some(Ok(frame))),
            },
            // The body ended before the cut: still break the connection.
            Poll::Ready(None) => {
                this.remaining = 0;
                Pin::new(this).poll_frame(cx)
            }
            other => other,
        }
    }

    fn size_hint(&self) -> SizeHint {
        // Advertise the full length, so the client expects bytes it will never get.
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_quoted_per_rfc4180() {
        let mut out = Vec::new();
        write_record(
            &mut out,
            &["plain", "a,b", "say \"hi\"", "line\nbreak", " pad", ""],
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "plain,\"a,b\",\"say \"\"hi\"\"\",\"line\nbreak\",\" pad\",\r\n"
        );
    }

    #[test]
    fn body_has_bom_header_rows_and_trailing_blank_line() {
        let rows = (0..10_000).map(|i| vec![i.to_string(), format!("x,{i}")]);
        let mut body = CsvBody::new(vec!["A".into(), "B".into()], rows);
        let first = body.next_chunk().unwrap();
        assert!(first.starts_with(b"\xEF\xBB\xBFA,B\r\n0,\"x,0\"\r\n"));
        assert!(first.len() <= CHUNK + 4096, "chunks stay small");
        let mut all = first.to_vec();
        all.extend(body.collect_all());
        assert!(all.ends_with(b"9999,\"x,9999\"\r\n\r\n"));
    }

    /// Cells a lenient reader finds in the last record of `body` (after the BOM).
    fn last_record_cells(body: &[u8]) -> usize {
        let mut rdr = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(&body[BOM.len()..]);
        rdr.records().map(|r| r.unwrap().len()).last().unwrap()
    }

    #[test]
    fn records_are_cut_mid_field_or_inside_quotes() {
        let row = [
            "2026-03-13",
            "someone@contoso.com",
            "Doe, \"Jo\"",
            "17",
            "last",
        ];
        let mut whole = Vec::new();
        write_record(&mut whole, &row);
        for quoted in [false, true] {
            let cut = cut_record(&row, quoted);
            assert!(whole.starts_with(&cut) && cut.len() < whole.len() - 2);
            assert!(!cut.ends_with(b"\n") && !cut.ends_with(b"\r"));
            let quotes = cut.iter().filter(|b| **b == b'"').count();
            assert_eq!(quotes % 2 == 1, quoted, "{}", String::from_utf8_lossy(&cut));
            let mut rdr = csv::ReaderBuilder::new()
                .has_headers(false)
                .flexible(true)
                .from_reader(&cut[..]);
            let rec = rdr.records().next().unwrap().unwrap();
            assert!(rec.len() < row.len(), "{rec:?}");
        }
        // Mid-field: the cut field is a strict, non-empty prefix of an unquoted field.
        let cut = String::from_utf8(cut_record(&row, false)).unwrap();
        let last = cut.rsplit(',').next().unwrap();
        assert!(!last.is_empty() && row.iter().any(|f| f.starts_with(last) && f != &last));
        // Without a quoted field (other than the last), the quoted variant cuts mid-field.
        let plain = ["abc", "defgh", "\"only last\""];
        let cut = cut_record(&plain, true);
        assert_eq!(cut.iter().filter(|b| **b == b'"').count(), 0);
        // Never between the two quotes of an escaped quote, never inside a character.
        let tricky = ["\"\"\"\"\"\"", "é€𝄞é€𝄞", "x"];
        for quoted in [false, true] {
            let cut = cut_record(&tricky, quoted);
            assert!(std::str::from_utf8(&cut).is_ok());
            let q = cut.iter().filter(|b| **b == b'"').count();
            if quoted {
                assert_eq!(
                    q % 2,
                    1,
                    "inside the quotes: {}",
                    String::from_utf8_lossy(&cut)
                );
            }
        }
        // Nothing to cut inside: still a partial record without a line break.
        let cut = cut_record(&["", "", ""], false);
        assert_eq!(cut, b",");
    }

    #[test]
    fn cut_csv_bodies_end_inside_the_chosen_record() {
        let header = vec!["A".to_string(), "B".to_string(), "C".to_string()];
        let rows = |n: u64| {
            (0..n).map(|i| {
                let b = if i % 50 == 49 {
                    format!("x,{i}")
                } else {
                    format!("b{i}")
                };
                vec![format!("a{i:04}"), b, format!("c{i}")]
            })
        };
        let clean = CsvBody::new(header.clone(), rows(1000)).collect_all();
        let cut = CutCsvBody::new(header.clone(), rows(1000), 500, false).collect_all();
        assert!(clean.starts_with(&cut) && cut.len() < clean.len());
        let text = String::from_utf8_lossy(&cut).into_owned();
        let tail = text.rsplit("\r\n").next().unwrap();
        assert!(tail.starts_with("a0500,b5"), "{tail}");
        assert_eq!(
            text.matches("\r\n").count(),
            1 + 500,
            "header and 500 whole records"
        );
        assert!(last_record_cells(&cut) < 3);
        // Quoted: moves on to the next record with a quoted field (row 549).
        let cut = CutCsvBody::new(header.clone(), rows(1000), 500, true).collect_all();
        let text = String::from_utf8_lossy(&cut).into_owned();
        let tail = text.rsplit("\r\n").next().unwrap();
        assert!(tail.starts_with("a0549,\"x,"), "{tail}");
        assert_eq!(text.matches('"').count() % 2, 1);
        // Past the end of a short report: its last record; one row: that row.
        for n in [1, 2, 3] {
            let cut = CutCsvBody::new(header.clone(), rows(n), 500, false).collect_all();
            let text = String::from_utf8_lossy(&cut).into_owned();
            assert_eq!(text.matches("\r\n").count() as u64, n, "{text:?}");
            assert!(!text.ends_with('\n'));
        }
        // No rows at all: the header line is cut.
        let cut = CutCsvBody::new(header.clone(), rows(0), 0, false).collect_all();
        assert!(cut.starts_with(BOM) && cut.len() > BOM.len() && !cut.ends_with(b"\n"));
    }
}
