//! The handshake: the client's 16-byte hello and the server's answer.

use super::{ProtoError, CLIENT_HELLO_BYTES, MAGIC};

/// The bytes of a server hello before its reason.
pub const SERVER_HELLO_FIXED_BYTES: usize = 27;

/// `shard_index` on the wire for the shared port.
const SHARED_PORT_INDEX: u32 = u32::MAX;

/// The server's answer to a client hello.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerHello {
    /// Whether the server will serve this connection.
    pub accepted: bool,
    /// The protocol version the server speaks.
    pub version: u16,
    /// How many shards the server runs.
    pub shards: u32,
    /// How many storage partitions its data directory has.
    pub partitions: u32,
    /// The shard behind this port; `None` on the shared port.
    pub shard_index: Option<u32>,
    /// Shard `i` listens on `shard_base_port + i`; `None` if shards have no
    /// ports of their own.
    pub shard_base_port: Option<u16>,
    /// Why the client was refused (may be empty when accepted).
    pub reason: String,
}

/// The client's hello for protocol `version`.
pub fn encode_client_hello(version: u16) -> [u8; CLIENT_HELLO_BYTES] {
    let mut hello = [0u8; CLIENT_HELLO_BYTES];
    hello[..8].copy_from_slice(&MAGIC);
    hello[8..10].copy_from_slice(&version.to_le_bytes());
    // Bytes 10..16 are reserved and stay zero.
    hello
}

/// The version a client asks for. `Ok(None)`: fewer than 16 bytes yet.
/// The magic is checked on whatever prefix has arrived, so a peer that
/// speaks another protocol is refused without waiting for 16 bytes. The
/// reserved bytes are ignored so that a later version may use them.
pub fn decode_client_hello(buf: &[u8]) -> Result<Option<u16>, ProtoError> {
    check_magic_prefix(buf)?;
    if buf.len() < CLIENT_HELLO_BYTES {
        return Ok(None);
    }
    Ok(Some(u16::from_le_bytes([buf[8], buf[9]])))
}

/// Appends the server's hello to `out`. A reason longer than `u16::MAX`
/// bytes is cut at a character boundary, since its length field is a u16.
pub fn encode_server_hello(hello: &ServerHello, out: &mut Vec<u8>) {
    let reason = truncate_utf8(&hello.reason, usize::from(u16::MAX));
    let reason_len = u16::try_from(reason.len()).expect("the reason was cut to u16::MAX bytes");
    out.reserve(SERVER_HELLO_FIXED_BYTES + reason.len());
    out.extend_from_slice(&MAGIC);
    out.push(if hello.accepted { 0 } else { 1 });
    out.extend_from_slice(&hello.version.to_le_bytes());
    out.extend_from_slice(&hello.shards.to_le_bytes());
    out.extend_from_slice(&hello.partitions.to_le_bytes());
    out.extend_from_slice(&hello.shard_index.unwrap_or(SHARED_PORT_INDEX).to_le_bytes());
    out.extend_from_slice(&hello.shard_base_port.unwrap_or(0).to_le_bytes());
    out.extend_from_slice(&reason_len.to_le_bytes());
    out.extend_from_slice(reason.as_bytes());
}

/// The server's hello at the start of `buf` and the bytes it used;
/// `Ok(None)` if it has not all arrived.
pub fn decode_server_hello(buf: &[u8]) -> Result<Option<(ServerHello, usize)>, ProtoError> {
    check_magic_prefix(buf)?;
    if buf.len() < SERVER_HELLO_FIXED_BYTES {
        return Ok(None);
    }
    let u16_at = |at: usize| u16::from_le_bytes([buf[at], buf[at + 1]]);
    let u32_at = |at: usize| u32::from_le_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]);
    let accepted = match buf[8] {
        0 => true,
        1 => false,
        _ => {
            return Err(ProtoError::Malformed(
                "server hello status is neither 0 nor 1",
            ))
        }
    };
    let reason_len = usize::from(u16_at(25));
    let len = SERVER_HELLO_FIXED_BYTES + reason_len;
    let Some(reason) = buf.get(SERVER_HELLO_FIXED_BYTES..len) else {
        return Ok(None);
    };
    let reason = std::str::from_utf8(reason)
        .map_err(|_| ProtoError::Malformed("server hello reason is not UTF-8"))?;
    let shard_index = u32_at(19);
    let shard_base_port = u16_at(23);
    let hello = ServerHello {
        accepted,
        version: u16_at(9),
        shards: u32_at(11),
        partitions: u32_at(15),
        shard_index: (shard_index != SHARED_PORT_INDEX).then_some(shard_index),
        shard_base_port: (shard_base_port != 0).then_some(shard_base_port),
        reason: reason.to_owned(),
    };
    Ok(Some((hello, len)))
}

/// Err if the bytes received so far already differ from the magic.
fn check_magic_prefix(buf: &[u8]) -> Result<(), ProtoError> {
    let n = buf.len().min(MAGIC.len());
    if buf[..n] == MAGIC[..n] {
        Ok(())
    } else {
        Err(ProtoError::BadMagic)
    }
}

/// The longest prefix of `text` of at most `max` bytes that ends on a
/// character boundary.
fn truncate_utf8(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rpc::PROTOCOL_VERSION;

    fn sample() -> ServerHello {
        ServerHello {
            accepted: false,
            version: PROTOCOL_VERSION,
            shards: 4,
            partitions: 64,
            shard_index: Some(2),
            shard_base_port: Some(7100),
            reason: "version 9 is not supported; this server speaks 1 (é)".into(),
        }
    }

    #[test]
    fn client_hello_round_trips_and_waits_for_sixteen_bytes() {
        let hello = encode_client_hello(PROTOCOL_VERSION);
        assert_eq!(decode_client_hello(&hello), Ok(Some(PROTOCOL_VERSION)));
        for cut in 0..CLIENT_HELLO_BYTES {
            assert_eq!(decode_client_hello(&hello[..cut]), Ok(None), "cut at {cut}");
        }
    }

    #[test]
    fn bad_magic_is_refused_early() {
        assert_eq!(
            decode_client_hello(b"GET / HTTP/1.1\r\n"),
            Err(ProtoError::BadMagic)
        );
        assert_eq!(decode_client_hello(b"GE"), Err(ProtoError::BadMagic));
        assert_eq!(
            decode_server_hello(b"HTTP/1.1 400"),
            Err(ProtoError::BadMagic)
        );
    }

    #[test]
    fn server_hello_round_trips_at_every_cut() {
        for hello in [
            sample(),
            ServerHello {
                accepted: true,
                shard_index: None,
                shard_base_port: None,
                reason: String::new(),
                ..sample()
            },
        ] {
            let mut wire = Vec::new();
            encode_server_hello(&hello, &mut wire);
            wire.extend_from_slice(b"next frame");
            let used = wire.len() - b"next frame".len();
            assert_eq!(decode_server_hello(&wire), Ok(Some((hello.clone(), used))));
            for cut in 0..used {
                assert_eq!(decode_server_hello(&wire[..cut]), Ok(None), "cut at {cut}");
            }
        }
    }

    #[test]
    fn long_reasons_are_cut_on_a_character_boundary() {
        let hello = ServerHello {
            reason: "é".repeat(40_000),
            ..sample()
        };
        let mut wire = Vec::new();
        encode_server_hello(&hello, &mut wire);
        let (decoded, used) = decode_server_hello(&wire).unwrap().unwrap();
        assert_eq!(used, wire.len());
        assert_eq!(decoded.reason.len(), usize::from(u16::MAX) - 1);
    }

    #[test]
    fn bad_status_and_bad_utf8_are_malformed() {
        let mut wire = Vec::new();
        encode_server_hello(&sample(), &mut wire);
        let mut bad_status = wire.clone();
        bad_status[8] = 2;
        assert!(matches!(
            decode_server_hello(&bad_status),
            Err(ProtoError::Malformed(_))
        ));
        let mut bad_text = wire.clone();
        bad_text[SERVER_HELLO_FIXED_BYTES] = 0xff;
        assert!(matches!(
            decode_server_hello(&bad_text),
            Err(ProtoError::Malformed(_))
        ));
    }
}
