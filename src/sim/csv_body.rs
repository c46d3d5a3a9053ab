//! Response bodies generated on the fly: the report CSV, and a wrapper that breaks a body
//! part-way to simulate a connection reset.
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
        let f = f.as_ref();
        let needs_quotes = f.bytes().any(|b| matches!(b, b',' | b'"' | b'\r' | b'\n'))
            || f.starts_with(char::is_whitespace)
            || f.ends_with(char::is_whitespace);
        if needs_quotes {
            out.push(b'"');
            for b in f.bytes() {
                if b == b'"' {
                    out.push(b'"');
                }
                out.push(b);
            }
            out.push(b'"');
        } else {
            out.extend_from_slice(f.as_bytes());
        }
    }
    out.extend_from_slice(b"\r\n");
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
}
