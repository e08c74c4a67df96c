//! Request parsing on top of httparse, with durin's limits.

use std::fmt;

/// Most headers a request may carry; more is answered 431.
pub const HEADERS_MAX: usize = 64;

/// Limits on what a client may send.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Request line plus headers; past it: 431.
    pub header_bytes_max: usize,
    /// Body (Content-Length); past it: 413.
    pub body_bytes_max: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_bytes_max: 16 * 1024,
            body_bytes_max: 1024 * 1024,
        }
    }
}

/// A complete request, borrowed from the input buffer.
#[derive(Debug)]
pub struct Request<'b, 'h> {
    pub method: &'b str,
    /// The path, without the query string, still percent-encoded.
    pub path: &'b str,
    /// The query string after `?`, if any.
    pub query: Option<&'b str>,
    pub headers: &'h [httparse::Header<'b>],
    pub body: &'b [u8],
    /// Whether the connection stays open after the response.
    pub keep_alive: bool,
    /// Bytes of the buffer this request used (head and body).
    pub len: usize,
}

impl<'b> Request<'b, '_> {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&'b [u8]> {
        self.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    }
}

/// The outcome of parsing the start of a buffer.
#[derive(Debug)]
pub enum Parsed<'b, 'h> {
    /// A whole request (head and body) is in the buffer.
    Complete(Request<'b, 'h>),
    /// More bytes are needed.
    Partial,
    /// The head is whole and valid, its body still to come. The client
    /// asked with `Expect: 100-continue` to be told it may send the body
    /// (`expect_continue`); `head_len` bytes of the buffer are the head.
    AwaitingBody {
        head_len: usize,
        expect_continue: bool,
    },
}

/// The methods of RFC 9110 (and PATCH, RFC 5789): the ones a route may
/// take. Methods are case-sensitive; any other is answered 501.
pub const METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE",
];

/// A request that cannot be served; each maps to a status, after which the
/// connection is closed because the stream can no longer be trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HttpError {
    /// 400: not HTTP/1.x, or an invalid header or Content-Length.
    Malformed,
    /// 431: the head is over the limit or has too many headers.
    HeadersTooLarge,
    /// 413: the declared body is over the limit.
    BodyTooLarge,
    /// 411: a body without Content-Length (chunked transfer coding).
    LengthRequired,
    /// 501: a method this server does not know (methods are
    /// case-sensitive: `get` is not `GET`).
    NotImplemented,
    /// 417: an `Expect` other than `100-continue`.
    ExpectationFailed,
}

impl HttpError {
    pub fn status(self) -> u16 {
        match self {
            HttpError::Malformed => 400,
            HttpError::HeadersTooLarge => 431,
            HttpError::BodyTooLarge => 413,
            HttpError::LengthRequired => 411,
            HttpError::NotImplemented => 501,
            HttpError::ExpectationFailed => 417,
        }
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HttpError::Malformed => "malformed request",
            HttpError::HeadersTooLarge => "request header fields too large",
            HttpError::BodyTooLarge => "request body too large",
            HttpError::LengthRequired => {
                "chunked request bodies are not supported; send Content-Length"
            }
            HttpError::NotImplemented => "method not implemented",
            HttpError::ExpectationFailed => "the only expectation supported is 100-continue",
        })
    }
}

/// Parses the request at the start of `buf`, using `headers` as storage.
pub fn parse_request<'b, 'h>(
    buf: &'b [u8],
    headers: &'h mut [httparse::Header<'b>; HEADERS_MAX],
    limits: &Limits,
) -> Result<Parsed<'b, 'h>, HttpError> {
    let mut req = httparse::Request::new(headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            return if buf.len() > limits.header_bytes_max {
                Err(HttpError::HeadersTooLarge)
            } else {
                Ok(Parsed::Partial)
            };
        }
        Err(httparse::Error::TooManyHeaders) => return Err(HttpError::HeadersTooLarge),
        Err(_) => return Err(HttpError::Malformed),
    };
    if head_len > limits.header_bytes_max {
        return Err(HttpError::HeadersTooLarge);
    }
    let method = req.method.ok_or(HttpError::Malformed)?;
    if !METHODS.contains(&method) {
        return Err(HttpError::NotImplemented);
    }
    let target = req.path.ok_or(HttpError::Malformed)?;
    let minor = req.version.ok_or(HttpError::Malformed)?;
    let headers: &'h [httparse::Header<'b>] = req.headers;
    let framing = Framing::of(headers, minor)?;
    // Checked before the body is awaited, so that a client waiting for
    // `100 Continue` gets its 413 at once instead.
    if framing.content_length > limits.body_bytes_max {
        return Err(HttpError::BodyTooLarge);
    }
    let len = head_len + framing.content_length;
    if buf.len() < len {
        return Ok(Parsed::AwaitingBody {
            head_len,
            expect_continue: framing.expect_continue,
        });
    }
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    Ok(Parsed::Complete(Request {
        method,
        path,
        query,
        headers,
        body: &buf[head_len..len],
        keep_alive: framing.keep_alive,
        len,
    }))
}

/// What the headers say about the body and the connection.
struct Framing {
    content_length: usize,
    keep_alive: bool,
    /// `Expect: 100-continue` on an HTTP/1.1 request (HTTP/1.0 clients
    /// cannot ask it: RFC 9110 10.1.1 has the server ignore it).
    expect_continue: bool,
}

impl Framing {
    fn of(headers: &[httparse::Header<'_>], minor: u8) -> Result<Framing, HttpError> {
        let mut content_length: Option<usize> = None;
        // HTTP/1.1 keeps connections open unless told otherwise; 1.0 closes.
        let mut keep_alive = minor >= 1;
        let mut expect_continue = false;
        for h in headers {
            if h.name.eq_ignore_ascii_case("content-length") {
                let n = parse_content_length(h.value)?;
                if content_length.is_some_and(|prev| prev != n) {
                    return Err(HttpError::Malformed);
                }
                content_length = Some(n);
            } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                return Err(HttpError::LengthRequired);
            } else if h.name.eq_ignore_ascii_case("expect") && minor >= 1 {
                if !h.value.trim_ascii().eq_ignore_ascii_case(b"100-continue") {
                    return Err(HttpError::ExpectationFailed);
                }
                expect_continue = true;
            } else if h.name.eq_ignore_ascii_case("connection") {
                if has_token(h.value, b"close") {
                    keep_alive = false;
                } else if has_token(h.value, b"keep-alive") {
                    keep_alive = true;
                }
            }
        }
        Ok(Framing {
            content_length: content_length.unwrap_or(0),
            keep_alive,
            expect_continue,
        })
    }
}

fn parse_content_length(value: &[u8]) -> Result<usize, HttpError> {
    let digits = value.trim_ascii();
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return Err(HttpError::Malformed);
    }
    Ok(digits.iter().fold(0usize, |n, d| {
        n.saturating_mul(10).saturating_add(usize::from(d - b'0'))
    }))
}

fn has_token(value: &[u8], token: &[u8]) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}

/// Percent-decodes `input` into `out`. Fails on a `%` not followed by two
/// hex digits.
pub fn percent_decode(input: &str, out: &mut Vec<u8>) -> Result<(), HttpError> {
    let bytes = input.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hi = bytes
                    .get(i + 1)
                    .and_then(|&b| hex_value(b))
                    .ok_or(HttpError::Malformed)?;
                let lo = bytes
                    .get(i + 2)
                    .and_then(|&b| hex_value(b))
                    .ok_or(HttpError::Malformed)?;
                out.push(hi << 4 | lo);
                i += 3;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    Ok(())
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(buf: &[u8]) -> Result<Option<(String, usize, bool)>, HttpError> {
        let mut headers = [httparse::EMPTY_HEADER; HEADERS_MAX];
        match parse_request(buf, &mut headers, &Limits::default())? {
            Parsed::Complete(r) => Ok(Some((r.path.to_string(), r.len, r.keep_alive))),
            Parsed::Partial | Parsed::AwaitingBody { .. } => Ok(None),
        }
    }

    fn awaiting(buf: &[u8]) -> Option<(usize, bool)> {
        let mut headers = [httparse::EMPTY_HEADER; HEADERS_MAX];
        match parse_request(buf, &mut headers, &Limits::default()) {
            Ok(Parsed::AwaitingBody {
                head_len,
                expect_continue,
            }) => Some((head_len, expect_continue)),
            _ => None,
        }
    }

    #[test]
    fn methods_are_case_sensitive_and_unknown_ones_refused() {
        assert!(parse(b"DELETE / HTTP/1.1\r\n\r\n").is_ok());
        for bad in ["get", "Get", "BREW", &"G".repeat(5000)] {
            let request = format!("{bad} / HTTP/1.1\r\n\r\n");
            assert_eq!(
                parse(request.as_bytes()).unwrap_err(),
                HttpError::NotImplemented
            );
        }
    }

    #[test]
    fn a_client_expecting_100_continue_is_told_the_body_is_awaited() {
        let head = b"PUT / HTTP/1.1\r\nExpect: 100-Continue\r\nContent-Length: 5\r\n\r\n";
        assert_eq!(awaiting(head), Some((head.len(), true)));
        let mut with_body = head.to_vec();
        with_body.extend_from_slice(b"ab");
        assert_eq!(awaiting(&with_body), Some((head.len(), true)));
        let plain = b"PUT / HTTP/1.1\r\nContent-Length: 5\r\n\r\n";
        assert_eq!(awaiting(plain), Some((plain.len(), false)));
        // HTTP/1.0 cannot ask: the header is ignored.
        let old = b"PUT / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n";
        assert_eq!(awaiting(old), Some((old.len(), false)));
        let other = b"PUT / HTTP/1.1\r\nExpect: tea\r\nContent-Length: 5\r\n\r\n";
        assert_eq!(parse(other).unwrap_err(), HttpError::ExpectationFailed);
        let too_big = b"PUT / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 9999999\r\n\r\n";
        assert_eq!(parse(too_big).unwrap_err(), HttpError::BodyTooLarge);
    }

    #[test]
    fn parses_a_simple_request_and_its_length() {
        let buf = b"GET /a?x=1 HTTP/1.1\r\nHost: h\r\n\r\nGET /b HTTP/1.1\r\n";
        let (path, len, keep_alive) = parse(buf).expect("ok").expect("complete");
        assert_eq!(path, "/a");
        assert_eq!(len, 32);
        assert!(keep_alive);
    }

    #[test]
    fn waits_for_the_whole_body() {
        assert!(parse(b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nab")
            .expect("ok")
            .is_none());
        let done = parse(b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nabcde").expect("ok");
        assert!(done.is_some());
    }

    #[test]
    fn answers_each_limit_with_its_error() {
        let big = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(17 * 1024));
        assert_eq!(
            parse(big.as_bytes()).unwrap_err(),
            HttpError::HeadersTooLarge
        );
        let body = b"POST / HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n";
        assert_eq!(parse(body).unwrap_err(), HttpError::BodyTooLarge);
        let chunked = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(parse(chunked).unwrap_err(), HttpError::LengthRequired);
        assert_eq!(
            parse(b"\x01\x02garbage\r\n\r\n").unwrap_err(),
            HttpError::Malformed
        );
        let bad_len = b"POST / HTTP/1.1\r\nContent-Length: 1x\r\n\r\n";
        assert_eq!(parse(bad_len).unwrap_err(), HttpError::Malformed);
    }

    #[test]
    fn connection_close_and_http_1_0_end_keep_alive() {
        let (_, _, ka) = parse(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
            .expect("ok")
            .expect("complete");
        assert!(!ka);
        let (_, _, ka) = parse(b"GET / HTTP/1.0\r\n\r\n")
            .expect("ok")
            .expect("complete");
        assert!(!ka);
    }

    #[test]
    fn percent_decoding() {
        let mut out = Vec::new();
        percent_decode("a%2Fb%20c", &mut out).expect("valid");
        assert_eq!(out, b"a/b c");
        assert!(percent_decode("bad%2", &mut Vec::new()).is_err());
        assert!(percent_decode("bad%zz", &mut Vec::new()).is_err());
    }
}
