//! The opening handshake: recognising an upgrade request, checking it, and
//! answering `101 Switching Protocols`.

use crate::http::Header;

/// Why an upgrade request cannot be accepted, with the status to answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HandshakeError {
    pub status: u16,
    pub reason: &'static str,
}

/// The answer to a request for another WebSocket version: RFC 6455 §4.4
/// asks for the versions the server speaks.
pub const VERSION_HEADER_LINE: &[u8] = b"Sec-WebSocket-Version: 13\r\n";

/// Whether a request asks for a WebSocket (its `Upgrade` header names
/// `websocket`). Such a request is checked with [`check`]; it travels to
/// the shard owning its object before anything else happens.
pub fn is_upgrade(headers: &[Header<'_>]) -> bool {
    headers
        .iter()
        .any(|h| h.name.eq_ignore_ascii_case("upgrade") && has_token(h.value, "websocket"))
}

/// Checks an upgrade request and returns its `Sec-WebSocket-Key`.
pub fn check<'h>(method: &str, headers: &[Header<'h>]) -> Result<&'h [u8], HandshakeError> {
    let bad = |reason| HandshakeError {
        status: 400,
        reason,
    };
    if method != "GET" {
        return Err(bad("a WebSocket upgrade must be a GET request"));
    }
    // Two of these say two things at once; which one a proxy in front of
    // the server acted on is unknown, so neither is trusted.
    for (name, reason) in [
        ("upgrade", "more than one `Upgrade` header"),
        (
            "sec-websocket-key",
            "more than one `Sec-WebSocket-Key` header",
        ),
        (
            "sec-websocket-version",
            "more than one `Sec-WebSocket-Version` header",
        ),
    ] {
        if headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(name))
            .count()
            > 1
        {
            return Err(bad(reason));
        }
    }
    if !header(headers, "connection").is_some_and(|v| has_token(v, "upgrade")) {
        return Err(bad("a WebSocket upgrade needs `Connection: Upgrade`"));
    }
    if header(headers, "sec-websocket-version").map(trim) != Some(b"13") {
        return Err(HandshakeError {
            status: 426,
            reason: "only WebSocket version 13 is supported",
        });
    }
    let key = header(headers, "sec-websocket-key")
        .map(trim)
        .ok_or(bad("a WebSocket upgrade needs `Sec-WebSocket-Key`"))?;
    // The key is 16 random bytes in base64: 24 characters ending in `==`.
    let well_formed = key.len() == 24
        && key.ends_with(b"==")
        && key[..22]
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/');
    if !well_formed {
        return Err(bad("malformed `Sec-WebSocket-Key`"));
    }
    Ok(key)
}

/// Appends the `101` response accepting a checked upgrade with `key`.
pub fn write_accept(out: &mut Vec<u8>, key: &[u8]) {
    let accept = tungstenite::handshake::derive_accept_key(key);
    out.extend_from_slice(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ",
    );
    out.extend_from_slice(accept.as_bytes());
    out.extend_from_slice(b"\r\n\r\n");
}

fn header<'h>(headers: &[Header<'h>], name: &str) -> Option<&'h [u8]> {
    headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value)
}

fn has_token(value: &[u8], token: &str) -> bool {
    value
        .split(|&b| b == b',')
        .any(|part| trim(part).eq_ignore_ascii_case(token.as_bytes()))
}

fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|b| !b.is_ascii_whitespace());
    let end = bytes.iter().rposition(|b| !b.is_ascii_whitespace());
    match (start, end) {
        (Some(s), Some(e)) => &bytes[s..=e],
        _ => &[],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h<'a>(name: &'a str, value: &'a str) -> Header<'a> {
        Header {
            name,
            value: value.as_bytes(),
        }
    }

    #[test]
    fn the_rfc_example_key_is_accepted() {
        let headers = [
            h("Upgrade", "websocket"),
            h("Connection", "keep-alive, Upgrade"),
            h("Sec-WebSocket-Version", "13"),
            h("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ];
        assert!(is_upgrade(&headers));
        let key = check("GET", &headers).expect("valid");
        let mut out = Vec::new();
        write_accept(&mut out, key);
        let text = String::from_utf8(out).expect("ASCII");
        assert!(text.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
    }

    #[test]
    fn bad_upgrades_get_their_status() {
        let base = [
            h("Upgrade", "websocket"),
            h("Connection", "Upgrade"),
            h("Sec-WebSocket-Version", "8"),
            h("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ];
        assert_eq!(check("GET", &base).map_err(|e| e.status), Err(426));
        let no_key = [base[0], base[1], h("Sec-WebSocket-Version", "13")];
        assert_eq!(check("GET", &no_key).map_err(|e| e.status), Err(400));
        assert_eq!(check("POST", &base).map_err(|e| e.status), Err(400));
        assert!(!is_upgrade(&[h("Upgrade", "h2c")]));
    }

    #[test]
    fn duplicated_handshake_headers_are_refused() {
        let base = [
            h("Upgrade", "websocket"),
            h("Connection", "Upgrade"),
            h("Sec-WebSocket-Version", "13"),
            h("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ];
        assert!(check("GET", &base).is_ok());
        for extra in [
            h("Sec-WebSocket-Key", "AAAAAAAAAAAAAAAAAAAAAA=="),
            h("Upgrade", "h2c"),
            h("Sec-WebSocket-Version", "8"),
        ] {
            let mut headers = base.to_vec();
            headers.push(extra);
            assert!(is_upgrade(&headers));
            let refused = check("GET", &headers).map_err(|e| e.status);
            assert_eq!(refused, Err(400), "with a second {}", extra.name);
        }
        // `websocket` in a second Upgrade header still asks for one.
        assert!(is_upgrade(&[
            h("Upgrade", "h2c"),
            h("Upgrade", "websocket")
        ]));
    }
}
