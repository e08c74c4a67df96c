//! The y-websocket wire protocol, as pure functions over bytes.
//!
//! Every WebSocket message is one protocol message: a lib0 variable-length
//! unsigned integer naming its type, then its payload.
//!
//! | type | payload |
//! | --- | --- |
//! | 0 sync | `varUint` step (0 step 1, 1 step 2, 2 update), then `varUint8Array` (a state vector for step 1, a v1 update otherwise) |
//! | 1 awareness | `varUint8Array` holding an awareness update: a count, then per client its id, clock and `varString` JSON state (`null` removes it) |
//! | 2 auth | `varUint` 0 (permission denied) and a `varString` reason |
//! | 3 query awareness | nothing |
//!
//! ```
//! use durin::classes::doc::protocol::{decode, encode_sync_update, Decoded};
//! let frame = encode_sync_update(&[0, 0]);
//! assert!(matches!(decode(&frame), Ok(Decoded::Update(&[0, 0]))));
//! ```
//!
//! y-websocket 3.x decodes only the first message of a frame, so durin
//! sends exactly one per frame and reads only one from each.

use std::fmt;

/// Message types.
pub const MESSAGE_SYNC: u64 = 0;
pub const MESSAGE_AWARENESS: u64 = 1;
pub const MESSAGE_AUTH: u64 = 2;
pub const MESSAGE_QUERY_AWARENESS: u64 = 3;

/// Sync steps.
pub const SYNC_STEP1: u64 = 0;
pub const SYNC_STEP2: u64 = 1;
pub const SYNC_UPDATE: u64 = 2;

/// The largest integer JavaScript holds exactly (lib0 refuses larger).
pub const JS_SAFE_INTEGER_MAX: u64 = (1 << 53) - 1;
/// A lib0 varuint of up to 53 bits takes at most 8 bytes.
const VARUINT_BYTES_MAX: usize = 8;
/// Most entries one awareness update may carry.
pub const AWARENESS_ENTRIES_MAX: usize = 1024;

/// Why a message does not decode.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProtocolError {
    /// The message ended in the middle of a field.
    Truncated {
        what: &'static str,
    },
    /// A varuint longer than 8 bytes or above 2^53 - 1.
    VarUintTooLarge,
    /// Bytes left after the message.
    TrailingBytes {
        bytes: usize,
    },
    UnknownMessageType(u64),
    UnknownSyncStep(u64),
    /// An awareness state that is not UTF-8.
    StateNotUtf8,
    TooManyAwarenessEntries {
        count: u64,
        max: usize,
    },
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolError::Truncated { what } => write!(f, "message truncated in its {what}"),
            ProtocolError::VarUintTooLarge => f.write_str("varuint longer than 53 bits"),
            ProtocolError::TrailingBytes { bytes } => {
                write!(f, "{bytes} bytes after the end of the message")
            }
            ProtocolError::UnknownMessageType(t) => write!(f, "unknown message type {t}"),
            ProtocolError::UnknownSyncStep(s) => write!(f, "unknown sync step {s}"),
            ProtocolError::StateNotUtf8 => f.write_str("awareness state is not UTF-8"),
            ProtocolError::TooManyAwarenessEntries { count, max } => {
                write!(f, "awareness update of {count} entries, at most {max}")
            }
        }
    }
}

impl std::error::Error for ProtocolError {}

/// A decoded message, borrowing from the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// Sync step 1: the peer's state vector (v1 encoded).
    Step1(&'a [u8]),
    /// Sync step 2: what the peer has that we lack (a v1 update).
    Step2(&'a [u8]),
    /// An update (v1).
    Update(&'a [u8]),
    /// An awareness update (still encoded; see [`decode_awareness`]).
    Awareness(&'a [u8]),
    /// An auth message; servers ignore what clients send.
    Auth,
    QueryAwareness,
}

/// Reads lib0 encodings from a byte slice.
pub struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes, pos: 0 }
    }

    pub fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    /// A lib0 varuint: 7 bits per byte, least significant first, the high
    /// bit set on every byte but the last.
    pub fn var_uint(&mut self, what: &'static str) -> Result<u64, ProtocolError> {
        let mut value: u64 = 0;
        for i in 0..VARUINT_BYTES_MAX {
            let byte = *self
                .bytes
                .get(self.pos)
                .ok_or(ProtocolError::Truncated { what })?;
            self.pos += 1;
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                if value > JS_SAFE_INTEGER_MAX {
                    return Err(ProtocolError::VarUintTooLarge);
                }
                return Ok(value);
            }
        }
        Err(ProtocolError::VarUintTooLarge)
    }

    /// A lib0 `varUint8Array`: a varuint length, then that many bytes.
    pub fn var_bytes(&mut self, what: &'static str) -> Result<&'a [u8], ProtocolError> {
        let len = self.var_uint(what)?;
        if len > self.remaining() as u64 {
            return Err(ProtocolError::Truncated { what });
        }
        let start = self.pos;
        self.pos += len as usize;
        Ok(&self.bytes[start..self.pos])
    }

    /// A lib0 `varString`: UTF-8 bytes with a varuint length.
    pub fn var_string(&mut self, what: &'static str) -> Result<&'a str, ProtocolError> {
        let bytes = self.var_bytes(what)?;
        std::str::from_utf8(bytes).map_err(|_| ProtocolError::StateNotUtf8)
    }

    fn end(&self) -> Result<(), ProtocolError> {
        match self.remaining() {
            0 => Ok(()),
            bytes => Err(ProtocolError::TrailingBytes { bytes }),
        }
    }
}

/// Appends a lib0 varuint.
pub fn write_var_uint(out: &mut Vec<u8>, mut value: u64) {
    debug_assert!(value <= JS_SAFE_INTEGER_MAX);
    while value >= 0x80 {
        out.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Appends a lib0 `varUint8Array`.
pub fn write_var_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    write_var_uint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// Decodes one whole message; bytes after it are an error (a peer that
/// packs two messages in a frame would lose the second at a 3.x client).
/// Auth messages are the exception: y-websocket's reason string is read
/// but what follows is not checked, as servers ignore them.
pub fn decode(frame: &[u8]) -> Result<Decoded<'_>, ProtocolError> {
    let mut r = Reader::new(frame);
    let decoded = match r.var_uint("message type")? {
        MESSAGE_SYNC => {
            let step = r.var_uint("sync step")?;
            let payload = r.var_bytes("sync payload")?;
            match step {
                SYNC_STEP1 => Decoded::Step1(payload),
                SYNC_STEP2 => Decoded::Step2(payload),
                SYNC_UPDATE => Decoded::Update(payload),
                other => return Err(ProtocolError::UnknownSyncStep(other)),
            }
        }
        MESSAGE_AWARENESS => Decoded::Awareness(r.var_bytes("awareness update")?),
        MESSAGE_AUTH => return Ok(Decoded::Auth),
        MESSAGE_QUERY_AWARENESS => Decoded::QueryAwareness,
        other => return Err(ProtocolError::UnknownMessageType(other)),
    };
    r.end()?;
    Ok(decoded)
}

fn encode_sync(step: u64, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 8);
    write_var_uint(&mut out, MESSAGE_SYNC);
    write_var_uint(&mut out, step);
    write_var_bytes(&mut out, payload);
    out
}

/// Sync step 1 with our state vector.
pub fn encode_sync_step1(state_vector: &[u8]) -> Vec<u8> {
    encode_sync(SYNC_STEP1, state_vector)
}

/// Sync step 2 with what the peer lacks.
pub fn encode_sync_step2(update: &[u8]) -> Vec<u8> {
    encode_sync(SYNC_STEP2, update)
}

/// An update to relay.
pub fn encode_sync_update(update: &[u8]) -> Vec<u8> {
    encode_sync(SYNC_UPDATE, update)
}

/// One client's entry in an awareness update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AwarenessEntry<'a> {
    pub client_id: u64,
    pub clock: u64,
    /// The state as JSON text; `"null"` removes the client.
    pub state: &'a str,
}

impl AwarenessEntry<'_> {
    /// Whether this entry removes its client (its state is JSON `null`).
    pub fn is_removal(&self) -> bool {
        self.state == "null"
    }
}

/// Decodes the payload of an awareness message.
pub fn decode_awareness(payload: &[u8]) -> Result<Vec<AwarenessEntry<'_>>, ProtocolError> {
    let mut r = Reader::new(payload);
    let count = r.var_uint("awareness count")?;
    if count > AWARENESS_ENTRIES_MAX as u64 {
        return Err(ProtocolError::TooManyAwarenessEntries {
            count,
            max: AWARENESS_ENTRIES_MAX,
        });
    }
    let mut entries = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let client_id = r.var_uint("awareness client id")?;
        let clock = r.var_uint("awareness clock")?;
        let state = r.var_string("awareness state")?;
        entries.push(AwarenessEntry {
            client_id,
            clock,
            state,
        });
    }
    r.end()?;
    Ok(entries)
}

/// Encodes a whole awareness message (type, then the update).
pub fn encode_awareness<'a>(entries: impl ExactSizeIterator<Item = AwarenessEntry<'a>>) -> Vec<u8> {
    let mut update = Vec::new();
    write_var_uint(&mut update, entries.len() as u64);
    for entry in entries {
        write_var_uint(&mut update, entry.client_id);
        write_var_uint(&mut update, entry.clock);
        write_var_bytes(&mut update, entry.state.as_bytes());
    }
    let mut out = Vec::with_capacity(update.len() + 6);
    write_var_uint(&mut out, MESSAGE_AWARENESS);
    write_var_bytes(&mut out, &update);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varuints_round_trip_at_their_byte_boundaries() {
        for value in [0, 1, 127, 128, 16_383, 16_384, 1 << 32, JS_SAFE_INTEGER_MAX] {
            let mut out = Vec::new();
            write_var_uint(&mut out, value);
            let mut r = Reader::new(&out);
            assert_eq!(r.var_uint("test"), Ok(value));
            assert_eq!(r.remaining(), 0);
        }
        let mut out = Vec::new();
        write_var_uint(&mut out, 300);
        assert_eq!(out, [0xac, 0x02], "lib0's encoding of 300");
    }

    #[test]
    fn a_varuint_past_53_bits_or_without_an_end_is_refused() {
        let endless = [0xff; 9];
        assert_eq!(
            Reader::new(&endless).var_uint("x"),
            Err(ProtocolError::VarUintTooLarge)
        );
        let mut big = vec![0xff; 7];
        big.push(0x7f);
        assert_eq!(
            Reader::new(&big).var_uint("x"),
            Err(ProtocolError::VarUintTooLarge)
        );
        assert_eq!(
            Reader::new(&[0x80]).var_uint("x"),
            Err(ProtocolError::Truncated { what: "x" })
        );
    }

    #[test]
    fn sync_messages_decode_to_their_steps() {
        assert_eq!(decode(&encode_sync_step1(&[0])), Ok(Decoded::Step1(&[0])));
        assert_eq!(
            decode(&encode_sync_step2(&[0, 0])),
            Ok(Decoded::Step2(&[0, 0]))
        );
        assert_eq!(
            decode(&encode_sync_update(&[0, 0])),
            Ok(Decoded::Update(&[0, 0]))
        );
        assert_eq!(decode(&[3]), Ok(Decoded::QueryAwareness));
        assert_eq!(decode(&[2, 0, 1, b'x']), Ok(Decoded::Auth));
    }

    #[test]
    fn malformed_messages_say_what_is_wrong() {
        assert_eq!(
            decode(&[]),
            Err(ProtocolError::Truncated {
                what: "message type"
            })
        );
        assert_eq!(decode(&[9]), Err(ProtocolError::UnknownMessageType(9)));
        assert_eq!(decode(&[0, 5, 0]), Err(ProtocolError::UnknownSyncStep(5)));
        assert_eq!(
            decode(&[0, 2, 10, 0, 0]),
            Err(ProtocolError::Truncated {
                what: "sync payload"
            })
        );
        assert_eq!(
            decode(&[0, 2, 2, 0, 0, 7]),
            Err(ProtocolError::TrailingBytes { bytes: 1 })
        );
        assert_eq!(
            decode(&[3, 3]),
            Err(ProtocolError::TrailingBytes { bytes: 1 })
        );
    }

    #[test]
    fn awareness_updates_round_trip() {
        let entries = [
            AwarenessEntry {
                client_id: 7,
                clock: 3,
                state: r#"{"user":{"name":"a"}}"#,
            },
            AwarenessEntry {
                client_id: JS_SAFE_INTEGER_MAX,
                clock: 0,
                state: "null",
            },
        ];
        let frame = encode_awareness(entries.iter().copied());
        let Ok(Decoded::Awareness(payload)) = decode(&frame) else {
            panic!("an awareness message");
        };
        let decoded = decode_awareness(payload).expect("decodes");
        assert_eq!(decoded, entries);
        assert!(decoded[1].is_removal());
        assert!(!decoded[0].is_removal());
    }

    #[test]
    fn an_awareness_state_that_is_not_utf8_is_refused() {
        let payload = [1, 1, 1, 1, 0xff];
        assert_eq!(decode_awareness(&payload), Err(ProtocolError::StateNotUtf8));
    }
}
