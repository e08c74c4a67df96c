//! The opening handshake (RFC 6455 section 4): an HTTP/1.1 `GET` with
//! `Upgrade: websocket`, answered by `101 Switching Protocols`.
//!
//! loadgen checks the status and nothing else: `Sec-WebSocket-Accept` is a
//! guard against caches and confused servers, not something a load
//! generator aimed at its own server needs to verify.
//!
//! ```
//! use loadgen::ws::handshake::{self, Head};
//! let mut request = Vec::new();
//! handshake::write_request(&mut request, "127.0.0.1:8080", b"/chat/r0/websocket?name=c0", 0);
//! assert!(request.starts_with(b"GET /chat/r0/websocket?name=c0 HTTP/1.1\r\n"));
//! let response = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81";
//! assert_eq!(handshake::read_head(response), Ok(Some(Head { status: 101, len: 56 })));
//! ```

/// The longest response head accepted; a longer one fails the handshake.
pub const HEAD_BYTES_MAX: usize = 8 * 1024;

/// A complete response head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    pub status: u16,
    /// Bytes of head, the blank line included; frames follow.
    pub len: usize,
}

/// A response that is not HTTP, or whose head is too long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadHead;

/// Appends the upgrade request for `path_and_query`; `key_seed` makes each
/// client's `Sec-WebSocket-Key` its own.
pub fn write_request(out: &mut Vec<u8>, authority: &str, path_and_query: &[u8], key_seed: u64) {
    out.extend_from_slice(b"GET ");
    out.extend_from_slice(path_and_query);
    out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    out.extend_from_slice(authority.as_bytes());
    out.extend_from_slice(
        b"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
          Sec-WebSocket-Key: ",
    );
    let mut nonce = [0u8; 16];
    nonce[..8].copy_from_slice(&key_seed.to_le_bytes());
    nonce[8..].copy_from_slice(b"loadgen!");
    base64(out, &nonce);
    out.extend_from_slice(b"\r\n\r\n");
}

/// Reads the response head at the start of `bytes`: `Ok(None)` until the
/// blank line has arrived.
pub fn read_head(bytes: &[u8]) -> Result<Option<Head>, BadHead> {
    let window = &bytes[..bytes.len().min(HEAD_BYTES_MAX)];
    let Some(end) = window.windows(4).position(|w| w == b"\r\n\r\n") else {
        return if bytes.len() >= HEAD_BYTES_MAX {
            Err(BadHead)
        } else {
            Ok(None)
        };
    };
    // "HTTP/1.1 101 ..."
    let line = &bytes[..end];
    let status = line
        .strip_prefix(b"HTTP/1.")
        .and_then(|rest| rest.get(2..5))
        .filter(|digits| digits.iter().all(u8::is_ascii_digit))
        .ok_or(BadHead)?;
    let status = status
        .iter()
        .fold(0u16, |value, digit| value * 10 + u16::from(digit - b'0'));
    Ok(Some(Head {
        status,
        len: end + 4,
    }))
}

/// Standard base64 with padding.
fn base64(out: &mut Vec<u8>, bytes: &[u8]) {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for chunk in bytes.chunks(3) {
        let word = (u32::from(chunk[0]) << 16)
            | (u32::from(chunk.get(1).copied().unwrap_or(0)) << 8)
            | u32::from(chunk.get(2).copied().unwrap_or(0));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(word >> (18 - 6 * i)) as usize & 63]);
            } else {
                out.push(b'=');
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_base64_as_the_rfc_example() {
        let mut out = Vec::new();
        base64(&mut out, b"the sample nonce");
        assert_eq!(out, b"dGhlIHNhbXBsZSBub25jZQ==");
        out.clear();
        base64(&mut out, b"ab");
        assert_eq!(out, b"YWI=");
    }

    #[test]
    fn reads_statuses_once_the_head_is_whole() {
        assert_eq!(read_head(b"HTTP/1.1 101 Switching"), Ok(None));
        assert_eq!(
            read_head(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"),
            Ok(Some(Head {
                status: 404,
                len: 45
            }))
        );
        assert_eq!(read_head(b"SSH-2.0-x\r\n\r\n"), Err(BadHead));
        assert_eq!(read_head(&[b'x'; HEAD_BYTES_MAX]), Err(BadHead));
    }

    #[test]
    fn requests_name_the_key_and_the_host() {
        let mut out = Vec::new();
        write_request(&mut out, "[::1]:9", b"/chat/a/websocket?name=c1", 1);
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("\r\nHost: [::1]:9\r\n"), "{text}");
        assert!(
            text.contains("Sec-WebSocket-Key: AQAAAAAAAABsb2FkZ2VuIQ==\r\n"),
            "{text}"
        );
        assert!(text.ends_with("\r\n\r\n"));
    }
}
