//! `Content-Encoding: gzip` when the client allows it, as Graph and the report host do, and
//! the byte counters `bytes_raw` / `bytes_wire`.
//!
//! Every Graph and download response body passes through [`Metered`], which counts it and,
//! for JSON and CSV bodies of a client that sent `Accept-Encoding: gzip`, compresses it as a
//! stream: each body chunk (a whole JSON page, or 32 KB of CSV) is compressed and flushed on
//! its own, so memory stays bounded by one chunk and a trickled body still trickles.
//!
//! Faults keep breaking the body, now on the compressed stream: a reset or a cut inner body
//! ends the gzip stream mid-way (an error reaches hyper, which drops the connection), a
//! truncated JSON page arrives as valid gzip of invalid JSON, and a `bad-length` response
//! (the only one with an explicit Content-Length) is left uncompressed so its lie stays
//! exactly 1000 bytes.

use std::io::{self, Write};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use flate2::Compression;
use flate2::write::GzEncoder;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, SizeHint};
use hyper::header::{CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, HeaderValue, VARY};

use super::respond::{Body as RespBody, Resp};
use super::state::{State, add};

/// Whether an `Accept-Encoding` value allows gzip (`gzip`, `x-gzip` or `*`, with q > 0; an
/// explicit `gzip;q=0` wins over `*`).
pub fn accepts_gzip(value: &str) -> bool {
    let mut star = false;
    for part in value.split(',') {
        let mut fields = part.split(';');
        let coding = fields.next().unwrap_or("").trim().to_ascii_lowercase();
        let q = fields
            .filter_map(|f| {
                f.trim()
                    .strip_prefix("q=")
                    .or_else(|| f.trim().strip_prefix("Q="))
            })
            .find_map(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(1.0);
        match coding.as_str() {
            "gzip" | "x-gzip" => return q > 0.0,
            "*" => star = q > 0.0,
            _ => {}
        }
    }
    star
}

/// Whether a response of this kind is compressed for a client that allows gzip: JSON and the
/// report CSV, not already encoded, without an explicit length.
fn compressible(resp: &Resp) -> bool {
    let h = resp.headers();
    let ct = h
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    (ct.starts_with("application/json") || ct.starts_with("application/octet-stream"))
        && !h.contains_key(CONTENT_ENCODING)
        && !h.contains_key(CONTENT_LENGTH)
}

/// Wraps `resp`'s body in [`Metered`], compressing it when `gzip` is allowed and the body is
/// JSON or CSV.
pub fn meter(state: &Arc<State>, resp: Resp, gzip: bool) -> Resp {
    let compress = gzip && compressible(&resp);
    let (mut parts, body) = resp.into_parts();
    if compress {
        parts
            .headers
            .insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        parts
            .headers
            .insert(VARY, HeaderValue::from_static("Accept-Encoding"));
    }
    let body = Metered {
        inner: body,
        gz: compress.then(|| GzEncoder::new(Vec::new(), Compression::default())),
        state: Arc::clone(state),
        ended: false,
    };
    Resp::from_parts(parts, body.boxed_unsync())
}

/// A body that counts what passes and optionally gzips it chunk by chunk.
pub struct Metered {
    inner: RespBody,
    gz: Option<GzEncoder<Vec<u8>>>,
    state: Arc<State>,
    /// The inner body has ended: never poll it again.
    ended: bool,
}

impl Metered {
    fn wire(&self, n: usize) {
        add(&self.state.stats.bytes_wire, n as u64);
    }
}

impl Body for Metered {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        if this.ended {
            return Poll::Ready(None);
        }
        loop {
            let frame = match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(f) => f,
            };
            match frame {
                Some(Ok(frame)) => {
                    let data = match frame.into_data() {
                        Ok(d) => d,
                        Err(other) => return Poll::Ready(Some(Ok(other))),
                    };
                    add(&this.state.stats.bytes_raw, data.len() as u64);
                    let Some(gz) = this.gz.as_mut() else {
                        this.wire(data.len());
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    };
                    gz.write_all(&data)?;
                    gz.flush()?;
                    let out = std::mem::take(gz.get_mut());
                    if out.is_empty() {
                        continue;
                    }
                    this.wire(out.len());
                    return Poll::Ready(Some(Ok(Frame::data(Bytes::from(out)))));
                }
                Some(Err(e)) => {
                    // The gzip stream stays unfinished: the client sees it cut.
                    this.gz = None;
                    return Poll::Ready(Some(Err(e)));
                }
                None => {
                    this.ended = true;
                    if let Some(gz) = this.gz.take() {
                        let out = gz.finish()?;
                        if !out.is_empty() {
                            this.wire(out.len());
                            return Poll::Ready(Some(Ok(Frame::data(Bytes::from(out)))));
                        }
                    }
                    return Poll::Ready(None);
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended || (self.gz.is_none() && self.inner.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        if self.gz.is_some() {
            SizeHint::default()
        } else {
            self.inner.size_hint()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_encoding_is_read_like_a_server_does() {
        assert!(accepts_gzip("gzip"));
        assert!(accepts_gzip("br, GZIP;q=0.5"));
        assert!(accepts_gzip("*"));
        assert!(accepts_gzip("deflate, x-gzip"));
        assert!(!accepts_gzip("identity"));
        assert!(!accepts_gzip("gzip;q=0"));
        assert!(!accepts_gzip("gzip;q=0, *"));
        assert!(!accepts_gzip(""));
        assert!(!accepts_gzip(";;;,,,q="));
    }
}
