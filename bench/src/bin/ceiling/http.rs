//! Just enough HTTP/1.1 request framing to answer pipelined requests.
//!
//! The ceiling server never looks at the method or the path: it only needs to
//! know where one request ends and the next begins. A request is its header
//! block, up to and including the blank line, plus `Content-Length` bytes of
//! body. Everything else about the request is ignored.
//!
//! ```text
//! GET / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\n...
//! |<-------- header_len -------->|<- next request ...
//! ```

/// What the server needs to know about one request's header block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestHead {
    /// Bytes of body that follow the header block and must be skipped.
    pub body_bytes: u64,
    /// The client asked for the connection to close after this response.
    pub close: bool,
}

/// A header block the server cannot frame; the connection is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadError {
    /// `Content-Length` is not a plain decimal number.
    BadContentLength,
    /// A chunked body cannot be skipped without decoding it, which the ceiling
    /// server deliberately does not do.
    TransferEncoding,
}

/// Finds the end of the header block: the index just past `\r\n\r\n`.
///
/// Requests are scanned once per receive, so this skips ahead by the largest
/// step the byte under the cursor allows instead of testing every window.
pub fn find_head_end(buf: &[u8]) -> Option<usize> {
    // `end` is the index of the final `\n` of a candidate `\r\n\r\n`.
    let mut end = 3;
    while end < buf.len() {
        match buf[end] {
            b'\n' => {
                if &buf[end - 3..end] == b"\r\n\r" {
                    return Some(end + 1);
                }
                // This `\n` can still be the pattern's second byte, which puts
                // the pattern's end two bytes further on.
                end += 2;
            }
            // A `\r` can be the pattern's first or third byte.
            b'\r' => end += 1,
            // Any other byte rules out every window that contains it.
            _ => end += 4,
        }
    }
    None
}

/// Reads the headers the framing depends on from a complete header block.
pub fn parse_head(head: &[u8]) -> Result<RequestHead, HeadError> {
    let mut lines = head.split(|&b| b == b'\n');
    let request_line = lines.next().unwrap_or_default();
    // HTTP/1.0 closes by default; HTTP/1.1 keeps the connection alive.
    let mut close = trim(request_line).ends_with(b"HTTP/1.0");
    let mut body_bytes = 0;
    for line in lines {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], trim(&line[colon + 1..]));
        if name.eq_ignore_ascii_case(b"content-length") {
            body_bytes = parse_decimal(value).ok_or(HeadError::BadContentLength)?;
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            return Err(HeadError::TransferEncoding);
        } else if name.eq_ignore_ascii_case(b"connection") {
            if value.eq_ignore_ascii_case(b"close") {
                close = true;
            } else if value.eq_ignore_ascii_case(b"keep-alive") {
                close = false;
            }
        }
    }
    Ok(RequestHead { body_bytes, close })
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

fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &d| {
        if !d.is_ascii_digit() {
            return None;
        }
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive_head_end(buf: &[u8]) -> Option<usize> {
        buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
    }

    #[test]
    fn head_end_matches_naive_search() {
        // Every string over this alphabet up to length 9 covers all overlaps
        // of `\r\n\r\n` with itself and with ordinary bytes.
        let alphabet = [b'\r', b'\n', b'a'];
        for len in 0..=9u32 {
            for mut code in 0..3usize.pow(len) {
                let mut buf = Vec::new();
                for _ in 0..len {
                    buf.push(alphabet[code % 3]);
                    code /= 3;
                }
                assert_eq!(find_head_end(&buf), naive_head_end(&buf), "{buf:?}");
            }
        }
    }

    #[test]
    fn parses_framing_headers() {
        let head = b"POST /x HTTP/1.1\r\nHost: a\r\ncontent-LENGTH:  12 \r\n\r\n";
        assert_eq!(
            parse_head(head),
            Ok(RequestHead {
                body_bytes: 12,
                close: false
            })
        );
        let head = b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n";
        assert!(parse_head(head).is_ok_and(|h| h.close));
        let head = b"GET / HTTP/1.0\r\n\r\n";
        assert!(parse_head(head).is_ok_and(|h| h.close));
        let head = b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n";
        assert!(parse_head(head).is_ok_and(|h| !h.close));
    }

    #[test]
    fn rejects_what_it_cannot_frame() {
        let head = b"POST / HTTP/1.1\r\nContent-Length: 1x\r\n\r\n";
        assert_eq!(parse_head(head), Err(HeadError::BadContentLength));
        let head = b"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n";
        assert_eq!(parse_head(head), Err(HeadError::BadContentLength));
        let head = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(parse_head(head), Err(HeadError::TransferEncoding));
    }
}
