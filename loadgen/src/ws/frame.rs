//! The WebSocket frame codec (RFC 6455 section 5), client side: frames
//! written by loadgen are masked, frames read from the server must not be.
//!
//! ```
//! use loadgen::ws::frame::{self, Header, Opcode};
//! let mut out = Vec::new();
//! frame::write_client_frame(&mut out, Opcode::Text, b"hi", [1, 2, 3, 4]);
//! assert_eq!(out[..2], [0x81, 0x82]); // FIN + text; masked, 2 bytes
//! let server = [0x81, 0x02, b'h', b'i'];
//! let header = frame::read_header(&server).unwrap().unwrap();
//! assert_eq!((header.opcode, header.fin, header.payload_len), (Opcode::Text, true, 2));
//! ```

/// The largest payload loadgen accepts in one frame from the server; chat
/// messages are a few hundred bytes, so anything near this is a mistake.
pub const FRAME_PAYLOAD_MAX: usize = 64 * 1024;
/// The longest frame header: 2 bytes, 8 of extended length, 4 of mask.
pub const HEADER_BYTES_MAX: usize = 14;
/// Control frames (close, ping, pong) carry at most this much.
pub const CONTROL_PAYLOAD_MAX: usize = 125;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opcode {
    Continuation,
    Text,
    Binary,
    Close,
    Ping,
    Pong,
}

impl Opcode {
    fn from_bits(bits: u8) -> Option<Opcode> {
        Some(match bits {
            0x0 => Opcode::Continuation,
            0x1 => Opcode::Text,
            0x2 => Opcode::Binary,
            0x8 => Opcode::Close,
            0x9 => Opcode::Ping,
            0xA => Opcode::Pong,
            _ => return None,
        })
    }

    fn bits(self) -> u8 {
        match self {
            Opcode::Continuation => 0x0,
            Opcode::Text => 0x1,
            Opcode::Binary => 0x2,
            Opcode::Close => 0x8,
            Opcode::Ping => 0x9,
            Opcode::Pong => 0xA,
        }
    }

    pub fn is_control(self) -> bool {
        matches!(self, Opcode::Close | Opcode::Ping | Opcode::Pong)
    }
}

/// A server frame's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub fin: bool,
    pub opcode: Opcode,
    /// Bytes of header before the payload.
    pub header_len: usize,
    pub payload_len: usize,
}

/// Why a server frame cannot be read; the connection is failed with close
/// code 1002 (or 1009 for a frame that is too large).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// Reserved bits set, an unknown opcode, a masked server frame, a
    /// fragmented or oversized control frame.
    Malformed,
    /// A payload above [`FRAME_PAYLOAD_MAX`].
    TooLarge,
}

/// Reads the header at the start of `bytes`; `Ok(None)` when more bytes are
/// needed to see it whole.
pub fn read_header(bytes: &[u8]) -> Result<Option<Header>, FrameError> {
    let [first, second, ..] = *bytes else {
        return Ok(None);
    };
    if first & 0x70 != 0 {
        return Err(FrameError::Malformed);
    }
    let opcode = Opcode::from_bits(first & 0x0F).ok_or(FrameError::Malformed)?;
    let fin = first & 0x80 != 0;
    if second & 0x80 != 0 {
        // A server must never mask (RFC 6455 section 5.1).
        return Err(FrameError::Malformed);
    }
    let (header_len, payload_len) = match second & 0x7F {
        126 => match bytes.get(2..4) {
            Some(len) => (4, u64::from(u16::from_be_bytes([len[0], len[1]]))),
            None => return Ok(None),
        },
        127 => match bytes.get(2..10) {
            Some(len) => (
                10,
                u64::from_be_bytes(len.try_into().expect("the slice is 8 bytes")),
            ),
            None => return Ok(None),
        },
        len => (2, u64::from(len)),
    };
    if opcode.is_control() && (!fin || payload_len > CONTROL_PAYLOAD_MAX as u64) {
        return Err(FrameError::Malformed);
    }
    if payload_len > FRAME_PAYLOAD_MAX as u64 {
        return Err(FrameError::TooLarge);
    }
    Ok(Some(Header {
        fin,
        opcode,
        header_len,
        payload_len: payload_len as usize,
    }))
}

/// Appends one whole client frame carrying `payload`, masked with `mask`.
pub fn write_client_frame(out: &mut Vec<u8>, opcode: Opcode, payload: &[u8], mask: [u8; 4]) {
    assert!(!opcode.is_control() || payload.len() <= CONTROL_PAYLOAD_MAX);
    out.push(0x80 | opcode.bits());
    let len = payload.len();
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if let Ok(len) = u16::try_from(len) {
        out.push(0x80 | 126);
        out.extend_from_slice(&len.to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&mask);
    let start = out.len();
    out.extend_from_slice(payload);
    apply_mask(&mut out[start..], mask);
}

/// Appends a close frame with `code` and no reason.
pub fn write_close(out: &mut Vec<u8>, code: u16, mask: [u8; 4]) {
    write_client_frame(out, Opcode::Close, &code.to_be_bytes(), mask);
}

/// The status code of a close frame's payload; 1005 (no status) when it
/// has none, as RFC 6455 section 7.1.5 says.
pub fn close_code(payload: &[u8]) -> u16 {
    match payload {
        [high, low, ..] => u16::from_be_bytes([*high, *low]),
        _ => 1005,
    }
}

/// Masks (or unmasks) `bytes` in place.
pub fn apply_mask(bytes: &mut [u8], mask: [u8; 4]) {
    for (i, byte) in bytes.iter_mut().enumerate() {
        *byte ^= mask[i & 3];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unmask(frame: &[u8]) -> (u8, Vec<u8>) {
        let (len, at) = match frame[1] & 0x7F {
            126 => (usize::from(u16::from_be_bytes([frame[2], frame[3]])), 4),
            127 => (
                u64::from_be_bytes(frame[2..10].try_into().unwrap()) as usize,
                10,
            ),
            len => (usize::from(len), 2),
        };
        assert_eq!(frame[1] & 0x80, 0x80, "client frames are masked");
        let mask: [u8; 4] = frame[at..at + 4].try_into().unwrap();
        let mut payload = frame[at + 4..].to_vec();
        assert_eq!(payload.len(), len);
        apply_mask(&mut payload, mask);
        (frame[0], payload)
    }

    #[test]
    fn writes_masked_frames_of_every_length_form() {
        for len in [0, 5, 125, 126, 65_535, 65_536] {
            let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let mut out = Vec::new();
            write_client_frame(&mut out, Opcode::Binary, &payload, [9, 8, 7, 6]);
            assert_eq!(unmask(&out), (0x82, payload), "{len}");
        }
        let mut out = Vec::new();
        write_close(&mut out, 1000, [1, 1, 1, 1]);
        assert_eq!(unmask(&out), (0x88, vec![0x03, 0xE8]));
    }

    #[test]
    fn reads_headers_once_whole() {
        assert_eq!(read_header(&[0x81]), Ok(None));
        assert_eq!(read_header(&[0x01, 126, 1]), Ok(None));
        let header = read_header(&[0x01, 126, 1, 0]).unwrap().unwrap();
        assert_eq!(
            header,
            Header {
                fin: false,
                opcode: Opcode::Text,
                header_len: 4,
                payload_len: 256
            }
        );
        let mut long = vec![0x82, 127];
        long.extend_from_slice(&65_536u64.to_be_bytes());
        assert_eq!(read_header(&long).unwrap().unwrap().payload_len, 65_536);
        assert_eq!(read_header(&long[..9]), Ok(None));
    }

    #[test]
    fn refuses_what_a_server_must_not_send() {
        for bad in [
            [0xC1, 0x00].as_slice(),   // RSV1 without an extension
            &[0x83, 0x00],             // reserved opcode
            &[0x81, 0x80, 0, 0, 0, 0], // masked
            &[0x09, 0x00],             // fragmented ping
            &[0x89, 126, 0, 126],      // ping over 125 bytes
        ] {
            assert_eq!(read_header(bad), Err(FrameError::Malformed), "{bad:?}");
        }
        let mut huge = vec![0x82, 127];
        huge.extend_from_slice(&(FRAME_PAYLOAD_MAX as u64 + 1).to_be_bytes());
        assert_eq!(read_header(&huge), Err(FrameError::TooLarge));
    }

    #[test]
    fn close_codes_default_to_no_status() {
        assert_eq!(close_code(&[0x03, 0xE9, b'x']), 1001);
        assert_eq!(close_code(&[]), 1005);
    }
}
