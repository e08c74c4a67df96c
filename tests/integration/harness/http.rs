//! A tiny blocking HTTP/1.1 client over `std::net::TcpStream`.
//!
//! A [`Conn`] is one keep-alive connection. It can send a well-formed
//! request, or any raw bytes, and read responses one at a time (bodies framed
//! by `Content-Length`, chunked, or the close of the connection). Every read
//! has a deadline, so a server that never answers fails the test instead of
//! hanging it.

use super::json;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Default deadline for one response (or for the close of a connection).
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// A response head larger than this is a server bug, not something to buffer.
const RESPONSE_HEAD_BYTES_MAX: usize = 64 * 1024;

const READ_CHUNK_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub reason: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first header with this name, compared case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON; panics with the body if it is not JSON.
    pub fn json(&self) -> json::Value {
        json::parse(&self.text())
            .unwrap_or_else(|error| panic!("response body is not JSON ({error}): {self}"))
    }

    /// Whether the response says the server will close the connection.
    pub fn says_close(&self) -> bool {
        self.header("connection").is_some_and(|value| {
            value
                .split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("close"))
        })
    }

    /// Asserts the Content-Type is `application/json` (parameters allowed).
    pub fn assert_json_content_type(&self) {
        let content_type = self.header("content-type").unwrap_or("");
        let media_type = content_type.split(';').next().unwrap_or("").trim();
        assert!(
            media_type.eq_ignore_ascii_case("application/json"),
            "expected Content-Type application/json, got {content_type:?} in {self}"
        );
    }
}

impl fmt::Display for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "HTTP {} {} {:?} body={:?}",
            self.status,
            self.reason,
            self.headers,
            self.text()
        )
    }
}

/// Why a response could not be read.
#[derive(Debug)]
pub enum ReadError {
    /// Nothing (more) arrived before the deadline.
    Timeout {
        waited: Duration,
        partial: Vec<u8>,
    },
    /// The server closed (FIN or reset) before a whole response arrived.
    Closed {
        partial: Vec<u8>,
    },
    /// The bytes are not an HTTP/1.1 response.
    Malformed {
        why: String,
        partial: Vec<u8>,
    },
    Io(io::Error),
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::Timeout { waited, partial } => write!(
                f,
                "no complete response within {waited:?}; received {:?}",
                String::from_utf8_lossy(partial)
            ),
            ReadError::Closed { partial } => write!(
                f,
                "connection closed before a complete response; received {:?}",
                String::from_utf8_lossy(partial)
            ),
            ReadError::Malformed { why, partial } => write!(
                f,
                "malformed response ({why}); received {:?}",
                String::from_utf8_lossy(partial)
            ),
            ReadError::Io(error) => write!(f, "I/O error: {error}"),
        }
    }
}

/// What one attempt to read more bytes gave.
enum Fill {
    Data,
    Eof,
}

/// One keep-alive HTTP/1.1 connection.
pub struct Conn {
    stream: TcpStream,
    /// Bytes received but not yet consumed as part of a response.
    buffer: Vec<u8>,
    timeout: Duration,
}

impl Conn {
    pub fn connect(addr: SocketAddr) -> io::Result<Conn> {
        let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
        stream.set_nodelay(true)?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        Ok(Conn {
            stream,
            buffer: Vec::new(),
            timeout: IO_TIMEOUT,
        })
    }

    /// Changes the deadline for each later read.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.stream
            .local_addr()
            .expect("a connected socket has a local address")
    }

    /// Sends one request and reads its response; panics on any failure.
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Response {
        self.try_request(method, path, headers, body)
            .unwrap_or_else(|error| panic!("{method} {path}: {error}"))
    }

    /// Sends one request and reads its response.
    pub fn try_request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Response, ReadError> {
        let bytes = encode_request(method, path, headers, body);
        self.try_send_raw(&bytes).map_err(ReadError::Io)?;
        self.read_response()
    }

    pub fn get(&mut self, path: &str) -> Response {
        self.request("GET", path, &[], b"")
    }

    pub fn post(&mut self, path: &str, body: &[u8]) -> Response {
        self.request("POST", path, &[], body)
    }

    /// Writes raw bytes; panics if the write fails.
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.try_send_raw(bytes)
            .unwrap_or_else(|error| panic!("writing {} bytes failed: {error}", bytes.len()));
    }

    /// Writes raw bytes; the server may already have closed the connection.
    pub fn try_send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)?;
        self.stream.flush()
    }

    /// Closes our sending half: the server sees end of input.
    pub fn shutdown_write(&mut self) {
        let _ = self.stream.shutdown(Shutdown::Write);
    }

    /// Reads exactly one response.
    pub fn read_response(&mut self) -> Result<Response, ReadError> {
        let deadline = Instant::now() + self.timeout;
        let head_end = loop {
            if let Some(position) = find(&self.buffer, b"\r\n\r\n") {
                break position + 4;
            }
            if self.buffer.len() > RESPONSE_HEAD_BYTES_MAX {
                return Err(self.malformed("response head too large"));
            }
            match self.fill(deadline)? {
                Fill::Data => {}
                Fill::Eof => {
                    return Err(ReadError::Closed {
                        partial: self.buffer.clone(),
                    })
                }
            }
        };
        let head = String::from_utf8_lossy(&self.buffer[..head_end - 4]).into_owned();
        let (status, reason, headers) = parse_head(&head).map_err(|why| self.malformed(&why))?;
        self.buffer.drain(..head_end);
        let mut response = Response {
            status,
            reason,
            headers,
            body: Vec::new(),
        };
        response.body = self.read_body(&response, deadline)?;
        Ok(response)
    }

    /// Reads until the server closes the connection, returning every byte
    /// that arrived after the last response read. A reset counts as closed.
    pub fn read_until_close(&mut self) -> Result<Vec<u8>, ReadError> {
        let deadline = Instant::now() + self.timeout;
        loop {
            match self.fill(deadline)? {
                Fill::Data => {}
                Fill::Eof => return Ok(std::mem::take(&mut self.buffer)),
            }
        }
    }

    /// Asserts the server closes the connection within the timeout without
    /// sending anything more.
    pub fn expect_closed(&mut self, context: &str) {
        match self.read_until_close() {
            Ok(rest) => assert!(
                rest.is_empty(),
                "{context}: expected the connection to close with nothing more sent, got {:?}",
                String::from_utf8_lossy(&rest)
            ),
            Err(error) => panic!("{context}: expected the server to close the connection: {error}"),
        }
    }

    fn read_body(&mut self, response: &Response, deadline: Instant) -> Result<Vec<u8>, ReadError> {
        let chunked = response
            .header("transfer-encoding")
            .is_some_and(|value| value.to_ascii_lowercase().contains("chunked"));
        if chunked {
            return self.read_chunked(deadline);
        }
        if let Some(length) = response.header("content-length") {
            let length: usize = length
                .trim()
                .parse()
                .map_err(|_| self.malformed(&format!("bad Content-Length {length:?}")))?;
            return self.read_exact_body(length, deadline);
        }
        if response.status / 100 == 1 || response.status == 204 || response.status == 304 {
            return Ok(Vec::new());
        }
        // No framing: the body runs until the server closes.
        self.read_until_close()
    }

    fn read_exact_body(&mut self, length: usize, deadline: Instant) -> Result<Vec<u8>, ReadError> {
        while self.buffer.len() < length {
            match self.fill(deadline)? {
                Fill::Data => {}
                Fill::Eof => {
                    return Err(ReadError::Closed {
                        partial: self.buffer.clone(),
                    })
                }
            }
        }
        Ok(self.buffer.drain(..length).collect())
    }

    fn read_chunked(&mut self, deadline: Instant) -> Result<Vec<u8>, ReadError> {
        let mut body = Vec::new();
        loop {
            let line = self.read_line(deadline)?;
            let size_text = line.split(';').next().unwrap_or("").trim().to_string();
            let size = usize::from_str_radix(&size_text, 16)
                .map_err(|_| self.malformed(&format!("bad chunk size {size_text:?}")))?;
            if size == 0 {
                // Trailers, then the empty line.
                while !self.read_line(deadline)?.is_empty() {}
                return Ok(body);
            }
            body.extend(self.read_exact_body(size, deadline)?);
            if !self.read_line(deadline)?.is_empty() {
                return Err(self.malformed("chunk not followed by CRLF"));
            }
        }
    }

    fn read_line(&mut self, deadline: Instant) -> Result<String, ReadError> {
        loop {
            if let Some(position) = find(&self.buffer, b"\r\n") {
                let line: Vec<u8> = self.buffer.drain(..position + 2).collect();
                return Ok(String::from_utf8_lossy(&line[..position]).into_owned());
            }
            match self.fill(deadline)? {
                Fill::Data => {}
                Fill::Eof => {
                    return Err(ReadError::Closed {
                        partial: self.buffer.clone(),
                    })
                }
            }
        }
    }

    /// Reads whatever arrives before `deadline` into the buffer.
    fn fill(&mut self, deadline: Instant) -> Result<Fill, ReadError> {
        let now = Instant::now();
        if now >= deadline {
            return Err(self.timed_out());
        }
        self.stream
            .set_read_timeout(Some(deadline - now))
            .map_err(ReadError::Io)?;
        let mut chunk = vec![0u8; READ_CHUNK_BYTES];
        match self.stream.read(&mut chunk) {
            Ok(0) => Ok(Fill::Eof),
            Ok(n) => {
                self.buffer.extend_from_slice(&chunk[..n]);
                Ok(Fill::Data)
            }
            Err(error) => match error.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Err(self.timed_out()),
                io::ErrorKind::Interrupted => Ok(Fill::Data),
                io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted => Ok(Fill::Eof),
                _ => Err(ReadError::Io(error)),
            },
        }
    }

    fn timed_out(&self) -> ReadError {
        ReadError::Timeout {
            waited: self.timeout,
            partial: self.buffer.clone(),
        }
    }

    fn malformed(&self, why: &str) -> ReadError {
        ReadError::Malformed {
            why: why.to_string(),
            partial: self.buffer.clone(),
        }
    }
}

/// Encodes a request. `Host` is added unless given; `Content-Length` is added
/// for a non-empty body or a POST unless given.
pub fn encode_request(method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let has = |name: &str| {
        headers
            .iter()
            .any(|(key, _)| key.eq_ignore_ascii_case(name))
    };
    let mut head = format!("{method} {path} HTTP/1.1\r\n");
    if !has("host") {
        head.push_str("Host: 127.0.0.1\r\n");
    }
    for (key, value) in headers {
        head.push_str(&format!("{key}: {value}\r\n"));
    }
    let framed = has("content-length") || has("transfer-encoding");
    if !framed && (!body.is_empty() || method == "POST" || method == "PUT") {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

type Head = (u16, String, Vec<(String, String)>);

fn parse_head(head: &str) -> Result<Head, String> {
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    if version != "HTTP/1.1" && version != "HTTP/1.0" {
        return Err(format!("status line {status_line:?} is not HTTP/1.x"));
    }
    let status = parts
        .next()
        .and_then(|code| code.parse::<u16>().ok())
        .filter(|code| (100..=599).contains(code))
        .ok_or_else(|| format!("bad status code in {status_line:?}"))?;
    let reason = parts.next().unwrap_or("").to_string();
    let mut headers = Vec::new();
    for line in lines {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| format!("header line {line:?} has no colon"))?;
        headers.push((name.trim().to_string(), value.trim().to_string()));
    }
    Ok((status, reason, headers))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}
