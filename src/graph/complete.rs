//! Proof that a report download arrived whole, before it is landed.
//!
//! How the body was framed decides what proves it complete:
//! - `Content-Length`: exactly that many bytes arrived (hyper fails a shorter body; the count
//!   is checked again here);
//! - chunked: the terminating zero-length chunk arrived (hyper fails a stream that breaks);
//! - close-delimited (HTTP/1.0 style, neither): the end of the connection says nothing, so
//!   the CSV itself must end on a record boundary: outside any quoted field, and either with
//!   a line break or with a last line holding at least as many cells as the header (and not
//!   ending on a separator, whose next cell never arrived).
//!
//! [`CsvProof`] scans the bytes as they stream to disk (quote state and cell counts only,
//! constant memory) and keeps the header line for the "is this a report at all" check.

/// How a response's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// `Content-Length: n` (and no Content-Encoding).
    Length(u64),
    /// `Transfer-Encoding: chunked`, or HTTP/2 frames: the transport proves the end.
    Framed,
    /// Neither: the body ends when the connection does.
    CloseDelimited,
}

impl Framing {
    pub fn of(resp: &reqwest::Response) -> Framing {
        let h = resp.headers();
        let chunked = h
            .get(reqwest::header::TRANSFER_ENCODING)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
        if chunked || resp.version() >= reqwest::Version::HTTP_2 {
            return Framing::Framed;
        }
        if h.contains_key(reqwest::header::CONTENT_ENCODING) {
            // Decoded bytes are not what Content-Length counts; the decoder fails a cut
            // stream, but a close-delimited compressed body still gets the CSV check.
            return Framing::CloseDelimited;
        }
        match h
            .get(reqwest::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok())
        {
            Some(n) => Framing::Length(n),
            None => Framing::CloseDelimited,
        }
    }
}

/// The longest header line kept for the report check.
const MAX_HEADER_BYTES: usize = 64 * 1024;

/// Streaming scan of a CSV body: where records end, and the header line.
#[derive(Debug, Default)]
pub struct CsvProof {
    bytes: u64,
    in_quotes: bool,
    /// Commas outside quotes on the current line.
    commas: usize,
    /// The current line has something other than whitespace.
    content: bool,
    /// The last byte was a line break outside quotes.
    at_line_end: bool,
    /// The last byte was a separator outside quotes (the next cell never arrived).
    after_separator: bool,
    /// Cells of the first non-blank line.
    header_cells: Option<usize>,
    header: Vec<u8>,
    /// Line number of the current record's start (1-based), for messages.
    line: u64,
    record_line: u64,
}

impl CsvProof {
    pub fn new() -> CsvProof {
        CsvProof {
            line: 1,
            record_line: 1,
            ..CsvProof::default()
        }
    }

    pub fn feed(&mut self, chunk: &[u8]) {
        self.bytes += chunk.len() as u64;
        if self.header_cells.is_none() && self.header.len() < MAX_HEADER_BYTES {
            let room = MAX_HEADER_BYTES - self.header.len();
            self.header
                .extend_from_slice(&chunk[..chunk.len().min(room)]);
        }
        for &b in chunk {
            if b == b'\n' {
                self.line += 1;
            }
            self.after_separator = false;
            if self.in_quotes {
                // `""` inside quotes closes and reopens: the parity stays right.
                if b == b'"' {
                    self.in_quotes = false;
                }
                self.at_line_end = false;
                continue;
            }
            match b {
                b'"' => {
                    self.in_quotes = true;
                    self.content = true;
                    self.at_line_end = false;
                }
                b',' => {
                    self.commas += 1;
                    self.content = true;
                    self.at_line_end = false;
                    self.after_separator = true;
                }
                b'\n' | b'\r' => {
                    if self.content && self.header_cells.is_none() {
                        self.header_cells = Some(self.commas + 1);
                    }
                    self.commas = 0;
                    self.content = false;
                    self.at_line_end = true;
                    self.record_line = self.line;
                }
                b' ' | b'\t' => self.at_line_end = false,
                _ => {
                    self.content = true;
                    self.at_line_end = false;
                }
            }
        }
    }

    /// The first bytes received (up to the header's limit), for messages.
    pub fn start(&self) -> &[u8] {
        &self.header
    }

    /// Bytes seen so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The header line as received (BOM included), once it is complete.
    pub fn header_line(&self) -> &[u8] {
        let end = self
            .header
            .iter()
            .position(|b| *b == b'\n' || *b == b'\r')
            .unwrap_or(self.header.len());
        &self.header[..end]
    }

    /// Whether the body is proven complete under `framing`; `Err` says what is missing.
    ///
    /// Every body must also end on a record boundary, whatever its framing: the framing
    /// proves that what the server sent arrived, the boundary that the server (or a proxy
    /// that re-framed the body) sent a whole report. Microsoft's reports end with a line break.
    pub fn verdict(&self, framing: Framing) -> Result<(), String> {
        if let Framing::Length(n) = framing
            && n != self.bytes
        {
            return Err(format!(
                "received {} of the {n} bytes its Content-Length announced",
                self.bytes
            ));
        }
        self.ends_on_a_record(framing)
    }

    /// The whole body is a byte order mark (and blanks): an empty report.
    fn only_a_bom(&self) -> bool {
        self.header_cells.is_none()
            && self.bytes == self.header.len() as u64
            && self
                .header
                .strip_prefix(b"\xef\xbb\xbf".as_slice())
                .is_some_and(|rest| rest.iter().all(u8::is_ascii_whitespace))
    }

    fn ends_on_a_record(&self, framing: Framing) -> Result<(), String> {
        let (ended, cut) = match framing {
            Framing::CloseDelimited => (
                "the connection closed",
                " (a close-delimited body cut short)",
            ),
            Framing::Length(_) | Framing::Framed => (
                "the body ended",
                " (complete as framed, so cut before the server sent it)",
            ),
        };
        if self.in_quotes {
            return Err(format!(
                "{ended} inside a quoted field (record starting on line {}){cut}",
                self.record_line
            ));
        }
        if self.at_line_end || !self.content {
            return Ok(());
        }
        // A body of only a byte order mark is an empty report, when framed: by the
        // connection's end alone it may be the start of anything.
        if framing != Framing::CloseDelimited && self.only_a_bom() {
            return Ok(());
        }
        let cells = self.commas + 1;
        match self.header_cells {
            // A report without rows whose header has no line break: all the server sent
            // arrived, and whether it is a report's header is checked by its names.
            None if framing != Framing::CloseDelimited => Ok(()),
            None => Err(format!("{ended} before the header line ended{cut}")),
            Some(h) if cells < h => Err(format!(
                "{ended} inside a record: line {} has {cells} of the header's {h} cells and no line break{cut}",
                self.record_line
            )),
            Some(_) if self.after_separator => Err(format!(
                "{ended} right after a separator on line {}, before its last cell{cut}",
                self.record_line
            )),
            Some(_) => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proof(bytes: &[u8]) -> CsvProof {
        let mut p = CsvProof::new();
        // Feed in odd pieces: state must carry across chunk boundaries.
        for c in bytes.chunks(3) {
            p.feed(c);
        }
        p
    }

    const FULL: &[u8] =
        b"\xef\xbb\xbfA,B,C\r\n1,\"x, \"\"y\"\"\",3\r\n4,\"two\r\nlines\",6\r\n\r\n";

    #[test]
    fn a_whole_report_is_complete_however_framed() {
        let p = proof(FULL);
        assert_eq!(p.verdict(Framing::CloseDelimited), Ok(()));
        assert_eq!(p.verdict(Framing::Length(FULL.len() as u64)), Ok(()));
        assert_eq!(p.verdict(Framing::Framed), Ok(()));
        assert_eq!(p.header_line(), b"\xef\xbb\xbfA,B,C");
        // A last record without a final line break but with every cell is complete.
        assert_eq!(
            proof(b"A,B\r\n1,2").verdict(Framing::CloseDelimited),
            Ok(())
        );
        assert_eq!(proof(b"").verdict(Framing::CloseDelimited), Ok(()));
        // Only a byte order mark: an empty report; a header without rows or line break is
        // whole when framed, and unproven when the connection's end is its only end.
        assert_eq!(
            proof(b"\xef\xbb\xbf\r\n").verdict(Framing::Length(5)),
            Ok(())
        );
        assert_eq!(proof(b"\xef\xbb\xbf").verdict(Framing::Framed), Ok(()));
        assert_eq!(proof(b"A,B").verdict(Framing::Framed), Ok(()));
        assert!(proof(b"A,B").verdict(Framing::CloseDelimited).is_err());
    }

    #[test]
    fn every_cut_inside_a_record_is_caught() {
        // Cut FULL after every byte. Complete prefixes: after the header's CR or LF (9, 10),
        // a last line with all 3 cells (24: `...,3`; 42: `...,6`) and line ends outside
        // quotes (25, 26, 43, 44, 45). Inside `"two\r\nlines"` (33, 34) is inside a field.
        let complete = [9, 10, 24, 25, 26, 42, 43, 44, 45];
        for cut in 1..FULL.len() {
            let verdict = proof(&FULL[..cut]).verdict(Framing::CloseDelimited);
            assert_eq!(
                verdict.is_ok(),
                complete.contains(&cut),
                "cut at {cut}: {verdict:?}"
            );
        }
    }

    #[test]
    fn messages_say_where() {
        let e = proof(b"A,B,C\r\n1,2")
            .verdict(Framing::CloseDelimited)
            .unwrap_err();
        assert!(e.contains("line 2 has 2 of the header's 3 cells"), "{e}");
        let e = proof(b"A,B\r\n1,\"ope")
            .verdict(Framing::CloseDelimited)
            .unwrap_err();
        assert!(e.contains("inside a quoted field"), "{e}");
        let e = proof(b"A,B\r\n").verdict(Framing::Length(10)).unwrap_err();
        assert_eq!(e, "received 5 of the 10 bytes its Content-Length announced");
    }

    #[test]
    fn a_framed_body_must_end_on_a_record_too() {
        // Every byte the length announced arrived, but the server sent a cut report.
        let cut = b"A,B,C\r\n1,2";
        let e = proof(cut)
            .verdict(Framing::Length(cut.len() as u64))
            .unwrap_err();
        assert!(e.starts_with("the body ended inside a record"), "{e}");
        let e = proof(b"A,B\r\n1,\"ope")
            .verdict(Framing::Framed)
            .unwrap_err();
        assert!(e.contains("inside a quoted field"), "{e}");
        // A cut anywhere after the header line: framed or not, the same verdict.
        for cut in 10..FULL.len() {
            assert_eq!(
                proof(&FULL[..cut]).verdict(Framing::Framed),
                proof(&FULL[..cut])
                    .verdict(Framing::CloseDelimited)
                    .map_err(|e| e
                        .replace("the connection closed", "the body ended")
                        .replace(
                            " (a close-delimited body cut short)",
                            " (complete as framed, so cut before the server sent it)"
                        )),
                "cut at {cut}"
            );
        }
    }
}
