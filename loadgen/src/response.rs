//! Just enough HTTP/1.1 response framing to count pipelined responses.
//!
//! A load generator needs three things from a response: its status, where it
//! ends, and whether the server will close the connection after it. A
//! response is its header block up to the blank line plus `Content-Length`
//! bytes of body; the body is skipped as it streams in, never buffered, so
//! only the header block has to fit in the receive buffer.
//!
//! ```
//! use loadgen::response::ResponseReader;
//! let mut reader = ResponseReader::new();
//! let bytes = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 429 T";
//! reader.recv_window()[..bytes.len()].copy_from_slice(bytes);
//! reader.on_received(bytes.len());
//! assert_eq!(reader.next_response(false).unwrap().unwrap().status, 200);
//! assert_eq!(reader.next_response(false).unwrap(), None); // the rest is partial
//! ```

use std::fmt;

/// Receive buffer a connection starts with.
const RECV_BUF_BYTES: usize = 16 * 1024;
/// A response header block larger than this fails the connection.
pub const HEAD_BYTES_MAX: usize = 64 * 1024;

/// One complete response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// The server closes the connection after this response.
    pub close: bool,
}

/// A response that cannot be framed; the connection is dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    /// Not `HTTP/1.x NNN ...`.
    BadStatusLine,
    BadContentLength,
    /// A chunked body, which this reader does not decode.
    Chunked,
    /// A body delimited by the end of the connection; it cannot be told
    /// apart from the next response on a kept-alive connection.
    NoLength,
    /// The header block outgrew [`HEAD_BYTES_MAX`].
    HeadTooLarge,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ParseError::BadStatusLine => "malformed status line",
            ParseError::BadContentLength => "malformed Content-Length",
            ParseError::Chunked => "chunked responses are not supported",
            ParseError::NoLength => "response without Content-Length",
            ParseError::HeadTooLarge => "response header block too large",
        })
    }
}

/// The framing-relevant facts of one header block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Head {
    status: u16,
    body_bytes: u64,
    close: bool,
}

/// A connection's receive buffer and the response being read from it.
#[derive(Debug)]
pub struct ResponseReader {
    /// Received bytes live in `buf[parsed..filled]`.
    buf: Vec<u8>,
    parsed: usize,
    filled: usize,
    /// The response whose body is being skipped, with the bytes still due.
    current: Option<(Response, u64)>,
}

impl Default for ResponseReader {
    fn default() -> Self {
        Self::new()
    }
}

impl ResponseReader {
    pub fn new() -> ResponseReader {
        ResponseReader {
            buf: vec![0; RECV_BUF_BYTES],
            parsed: 0,
            filled: 0,
            current: None,
        }
    }

    /// Where the next receive writes. Never empty: `make_room` runs
    /// after every round of parsing.
    pub fn recv_window(&mut self) -> &mut [u8] {
        &mut self.buf[self.filled..]
    }

    /// Accounts for `n` bytes received into [`Self::recv_window`].
    pub fn on_received(&mut self, n: usize) {
        assert!(n > 0, "a zero-byte receive is end of stream");
        assert!(self.filled + n <= self.buf.len());
        self.filled += n;
    }

    /// Takes the next complete response off the buffer, or `None` when the
    /// rest has not arrived yet. `head_only` says the request was a `HEAD`,
    /// whose response has no body whatever its headers say. Interim (1xx)
    /// responses are skipped.
    pub fn next_response(&mut self, head_only: bool) -> Result<Option<Response>, ParseError> {
        loop {
            if let Some((response, body_left)) = self.current.as_mut() {
                let available = (self.filled - self.parsed) as u64;
                let skip = (*body_left).min(available);
                self.parsed += skip as usize;
                *body_left -= skip;
                if *body_left > 0 {
                    self.make_room(false)?;
                    return Ok(None);
                }
                let response = *response;
                self.current = None;
                return Ok(Some(response));
            }
            let unparsed = &self.buf[self.parsed..self.filled];
            let Some(head_len) = find_head_end(unparsed) else {
                self.make_room(true)?;
                return Ok(None);
            };
            let head = parse_head(&unparsed[..head_len], head_only)?;
            self.parsed += head_len;
            if (100..200).contains(&head.status) && head.status != 101 {
                continue;
            }
            let response = Response {
                status: head.status,
                close: head.close,
            };
            self.current = Some((response, head.body_bytes));
        }
    }

    /// Whether bytes of an unfinished response are buffered.
    pub fn mid_response(&self) -> bool {
        self.current.is_some() || self.parsed < self.filled
    }

    /// Drops whatever is buffered, for a fresh connection in the same slot.
    pub fn reset(&mut self) {
        self.parsed = 0;
        self.filled = 0;
        self.current = None;
        if self.buf.len() > RECV_BUF_BYTES {
            self.buf.truncate(RECV_BUF_BYTES);
            self.buf.shrink_to(RECV_BUF_BYTES);
        }
    }

    /// Ensures the buffer has free space at its tail, moving unparsed bytes
    /// to the front, or growing it while an incomplete header block fills
    /// it, up to [`HEAD_BYTES_MAX`].
    fn make_room(&mut self, head_incomplete: bool) -> Result<(), ParseError> {
        if self.parsed == self.filled {
            self.parsed = 0;
            self.filled = 0;
            return Ok(());
        }
        if self.filled < self.buf.len() {
            return Ok(());
        }
        if self.parsed > 0 {
            self.buf.copy_within(self.parsed..self.filled, 0);
            self.filled -= self.parsed;
            self.parsed = 0;
            return Ok(());
        }
        assert!(
            head_incomplete,
            "a body is skipped as it arrives, never held"
        );
        if self.buf.len() >= HEAD_BYTES_MAX {
            return Err(ParseError::HeadTooLarge);
        }
        let grown = (self.buf.len() * 2).min(HEAD_BYTES_MAX);
        self.buf.resize(grown, 0);
        Ok(())
    }
}

/// Finds the end of a header block: the index just past `\r\n\r\n`.
fn find_head_end(buf: &[u8]) -> Option<usize> {
    // `end` is the index of the final `\n` of a candidate `\r\n\r\n`; each
    // byte under it rules out as many candidates as it can.
    let mut end = 3;
    while end < buf.len() {
        match buf[end] {
            b'\n' => {
                if &buf[end - 3..end] == b"\r\n\r" {
                    return Some(end + 1);
                }
                end += 2;
            }
            b'\r' => end += 1,
            _ => end += 4,
        }
    }
    None
}

fn parse_head(head: &[u8], head_only: bool) -> Result<Head, ParseError> {
    let mut lines = head.split(|&b| b == b'\n');
    let status_line = trim(lines.next().unwrap_or_default());
    // `HTTP/1.1 200 OK`: the version, a space, three digits, then a space or
    // the end of the line.
    let version = status_line.get(..8).ok_or(ParseError::BadStatusLine)?;
    if !version.starts_with(b"HTTP/1.") || status_line.get(8) != Some(&b' ') {
        return Err(ParseError::BadStatusLine);
    }
    let code = status_line.get(9..12).ok_or(ParseError::BadStatusLine)?;
    if !code.iter().all(u8::is_ascii_digit) || status_line.get(12).is_some_and(|&b| b != b' ') {
        return Err(ParseError::BadStatusLine);
    }
    let status = code
        .iter()
        .fold(0u16, |acc, &digit| acc * 10 + u16::from(digit - b'0'));
    // HTTP/1.0 closes after each response unless it says keep-alive.
    let mut close = version == b"HTTP/1.0";
    let mut length = None;
    let mut chunked = false;
    for line in lines {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], trim(&line[colon + 1..]));
        if name.eq_ignore_ascii_case(b"content-length") {
            let parsed = parse_decimal(value).ok_or(ParseError::BadContentLength)?;
            if length.is_some_and(|previous| previous != parsed) {
                return Err(ParseError::BadContentLength);
            }
            length = Some(parsed);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            chunked = !value.eq_ignore_ascii_case(b"identity");
        } else if name.eq_ignore_ascii_case(b"connection") {
            if value.eq_ignore_ascii_case(b"close") {
                close = true;
            } else if value.eq_ignore_ascii_case(b"keep-alive") {
                close = false;
            }
        }
    }
    // Responses that never have a body (RFC 9112 section 6.3).
    let bodyless = head_only || (100..200).contains(&status) || status == 204 || status == 304;
    let body_bytes = if bodyless {
        0
    } else if chunked {
        return Err(ParseError::Chunked);
    } else {
        length.ok_or(ParseError::NoLength)?
    };
    Ok(Head {
        status,
        body_bytes,
        close,
    })
}

fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |i| i + 1);
    &bytes[start..end]
}

/// A plain decimal number of at most 18 digits (no sign, no spaces).
fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 18 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(
        digits
            .iter()
            .fold(0, |acc, &d| acc * 10 + u64::from(d - b'0')),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(reader: &mut ResponseReader, bytes: &[u8]) {
        let window = reader.recv_window();
        window[..bytes.len()].copy_from_slice(bytes);
        reader.on_received(bytes.len());
    }

    fn drain(reader: &mut ResponseReader) -> Vec<u16> {
        let mut statuses = Vec::new();
        while let Some(response) = reader.next_response(false).unwrap() {
            statuses.push(response.status);
        }
        statuses
    }

    const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

    #[test]
    fn reads_pipelined_responses_in_one_receive() {
        let mut reader = ResponseReader::new();
        let mut bytes = OK.repeat(3);
        bytes.extend_from_slice(b"HTTP/1.1 429 Too Many Requests\r\ncontent-length:0\r\n\r\n");
        feed(&mut reader, &bytes);
        assert_eq!(drain(&mut reader), [200, 200, 200, 429]);
        assert!(!reader.mid_response());
    }

    #[test]
    fn resumes_responses_split_at_every_byte() {
        let stream = [
            OK,
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 5\r\n\r\nnope!",
            OK,
        ]
        .concat();
        for split in 1..stream.len() {
            let mut reader = ResponseReader::new();
            feed(&mut reader, &stream[..split]);
            let mut statuses = drain(&mut reader);
            feed(&mut reader, &stream[split..]);
            statuses.extend(drain(&mut reader));
            assert_eq!(statuses, [200, 404, 200], "split at {split}");
        }
    }

    #[test]
    fn skips_large_bodies_without_holding_them() {
        let mut reader = ResponseReader::new();
        feed(
            &mut reader,
            b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n",
        );
        let mut left = 100_000;
        while left > 0 {
            assert_eq!(reader.next_response(false).unwrap(), None);
            let room = reader.recv_window().len().min(left);
            feed(&mut reader, &vec![b'x'; room]);
            left -= room;
        }
        assert_eq!(drain(&mut reader), [200]);
        assert_eq!(reader.buf.len(), RECV_BUF_BYTES);
    }

    #[test]
    fn notes_when_the_server_will_close() {
        let mut reader = ResponseReader::new();
        feed(
            &mut reader,
            b"HTTP/1.1 503 Busy\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
        );
        let response = reader.next_response(false).unwrap().unwrap();
        assert_eq!(
            response,
            Response {
                status: 503,
                close: true
            }
        );
        let mut old = ResponseReader::new();
        feed(&mut old, b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n");
        assert!(old.next_response(false).unwrap().unwrap().close);
    }

    #[test]
    fn knows_which_responses_have_no_body() {
        let mut reader = ResponseReader::new();
        feed(
            &mut reader,
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n\
              HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n",
        );
        assert_eq!(drain(&mut reader), [204, 304]);
        let mut head = ResponseReader::new();
        feed(&mut head, b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n");
        assert_eq!(head.next_response(true).unwrap().unwrap().status, 200);
        assert!(!head.mid_response());
    }

    #[test]
    fn refuses_what_it_cannot_frame() {
        let cases: [(&[u8], ParseError); 7] = [
            (b"HTTP/2 200 OK\r\n\r\n", ParseError::BadStatusLine),
            (b"HTTP/1.1 20 OK\r\n\r\n", ParseError::BadStatusLine),
            (b"HTTP/1.1 2000 OK\r\n\r\n", ParseError::BadStatusLine),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
                ParseError::BadContentLength,
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                ParseError::BadContentLength,
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                ParseError::Chunked,
            ),
            (b"HTTP/1.1 200 OK\r\n\r\n", ParseError::NoLength),
        ];
        for (bytes, expected) in cases {
            let mut reader = ResponseReader::new();
            feed(&mut reader, bytes);
            assert_eq!(reader.next_response(false), Err(expected), "{bytes:?}");
        }
        // A status line with no reason phrase is fine.
        let mut reader = ResponseReader::new();
        feed(&mut reader, b"HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n");
        assert_eq!(drain(&mut reader), [200]);
    }

    #[test]
    fn refuses_an_endless_header_block() {
        let mut reader = ResponseReader::new();
        feed(&mut reader, b"HTTP/1.1 200 OK\r\n");
        loop {
            let room = reader.recv_window().len();
            feed(&mut reader, &vec![b'a'; room]);
            match reader.next_response(false) {
                Ok(None) => assert!(reader.buf.len() <= HEAD_BYTES_MAX),
                Err(err) => {
                    assert_eq!(err, ParseError::HeadTooLarge);
                    break;
                }
                Ok(Some(_)) => panic!("no response was complete"),
            }
        }
    }
}
