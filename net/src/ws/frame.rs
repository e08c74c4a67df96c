//! Frames: decoding what a client sends, encoding what the server sends.

use std::io::Cursor;
use std::ops::Range;

use tungstenite::protocol::frame::coding::{Control, Data, OpCode};
use tungstenite::protocol::frame::FrameHeader;

/// The largest payload of a control frame (RFC 6455 §5.5).
pub const CONTROL_PAYLOAD_BYTES_MAX: usize = 125;
/// The longest frame header: 2 bytes, an 8-byte length and a 4-byte mask.
pub const FRAME_HEADER_BYTES_MAX: usize = 14;

/// Close codes durin sends or checks (RFC 6455 §7.4.1).
pub mod close_code {
    pub const NORMAL: u16 = 1000;
    pub const GOING_AWAY: u16 = 1001;
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// No code was present in the close frame (never sent on the wire).
    pub const NO_STATUS: u16 = 1005;
    /// The connection ended without a close frame (never sent on the wire).
    pub const ABNORMAL: u16 = 1006;
    pub const INVALID_PAYLOAD: u16 = 1007;
    pub const POLICY_VIOLATION: u16 = 1008;
    pub const MESSAGE_TOO_BIG: u16 = 1009;
    pub const INTERNAL_ERROR: u16 = 1011;

    /// Whether a peer may send `code` in a close frame.
    pub fn is_valid_on_wire(code: u16) -> bool {
        matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
    }
}

/// What a connection accepts.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The largest message, after reassembling its fragments.
    pub message_bytes_max: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            message_bytes_max: 1 << 20,
        }
    }
}

/// Why a connection must be failed: the close code to send and a reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WsError {
    pub code: u16,
    pub reason: &'static str,
}

impl WsError {
    const fn protocol(reason: &'static str) -> WsError {
        WsError {
            code: close_code::PROTOCOL_ERROR,
            reason,
        }
    }
}

impl std::fmt::Display for WsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (close code {})", self.reason, self.code)
    }
}

/// Where a decoded message's bytes are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// In the slice given to [`Decoder::decode`], already unmasked.
    Input(Range<usize>),
    /// In the decoder's reassembly buffer ([`Decoder::message`]).
    Reassembled,
}

impl Payload {
    /// The payload's bytes, given the slice passed to `decode`.
    pub fn bytes<'a>(&self, input: &'a [u8], decoder: &'a Decoder) -> &'a [u8] {
        match self {
            Payload::Input(range) => &input[range.clone()],
            Payload::Reassembled => decoder.message(),
        }
    }
}

/// One decoded frame's meaning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A complete message; text is valid UTF-8.
    Message {
        text: bool,
        payload: Payload,
    },
    /// A fragment of a message, kept by the decoder.
    Fragment,
    Ping(Range<usize>),
    Pong,
    /// The peer's close frame; `code` is `None` when it carried none.
    Close {
        code: Option<u16>,
        reason: Range<usize>,
    },
}

/// Turns a client's bytes into events, reassembling fragmented messages.
#[derive(Debug, Default)]
pub struct Decoder {
    /// The kind of the fragmented message in progress (`Some(true)`: text).
    fragmented: Option<bool>,
    reassembly: Vec<u8>,
}

impl Decoder {
    /// Decodes the first frame of `input`, unmasking its payload in place.
    /// Returns `None` while the frame is incomplete (nothing is consumed),
    /// else the event and how many bytes the frame took. A frame whose
    /// declared length takes its message past the limit fails at once,
    /// before its payload is buffered.
    pub fn decode(
        &mut self,
        input: &mut [u8],
        limits: &Limits,
    ) -> Result<Option<(Event, usize)>, WsError> {
        let mut cursor = Cursor::new(&input[..]);
        let (header, length) = match FrameHeader::parse(&mut cursor) {
            Ok(Some(parsed)) => parsed,
            Ok(None) => return Ok(None),
            Err(_) => return Err(WsError::protocol("reserved opcode")),
        };
        let head_bytes = cursor.position() as usize;
        self.check_header(&header, length, limits)?;
        let length = length as usize;
        if input.len() - head_bytes < length {
            return Ok(None);
        }
        let range = head_bytes..head_bytes + length;
        let mask = header.mask.expect("checked: client frames are masked");
        apply_mask(&mut input[range.clone()], mask);
        let event = self.interpret(header.opcode, header.is_final, input, range)?;
        Ok(Some((event, head_bytes + length)))
    }

    fn check_header(
        &self,
        header: &FrameHeader,
        length: u64,
        limits: &Limits,
    ) -> Result<(), WsError> {
        if header.rsv1 || header.rsv2 || header.rsv3 {
            return Err(WsError::protocol("reserved bits set without an extension"));
        }
        if header.mask.is_none() {
            return Err(WsError::protocol("client frames must be masked"));
        }
        match header.opcode {
            OpCode::Control(_) => {
                if !header.is_final {
                    return Err(WsError::protocol("fragmented control frame"));
                }
                if length > CONTROL_PAYLOAD_BYTES_MAX as u64 {
                    return Err(WsError::protocol("control frame over 125 bytes"));
                }
            }
            OpCode::Data(data) => {
                let continuing = data == Data::Continue;
                if continuing && self.fragmented.is_none() {
                    return Err(WsError::protocol("continuation frame without a message"));
                }
                if !continuing && self.fragmented.is_some() {
                    return Err(WsError::protocol("new message inside a fragmented one"));
                }
                let so_far = if continuing { self.reassembly.len() } else { 0 };
                if length.saturating_add(so_far as u64) > limits.message_bytes_max as u64 {
                    return Err(WsError {
                        code: close_code::MESSAGE_TOO_BIG,
                        reason: "message over the size limit",
                    });
                }
            }
        }
        Ok(())
    }

    fn interpret(
        &mut self,
        opcode: OpCode,
        is_final: bool,
        input: &[u8],
        range: Range<usize>,
    ) -> Result<Event, WsError> {
        let payload = &input[range.clone()];
        match opcode {
            OpCode::Data(Data::Text | Data::Binary) if is_final => {
                let text = opcode == OpCode::Data(Data::Text);
                if text {
                    check_utf8(payload)?;
                }
                Ok(Event::Message {
                    text,
                    payload: Payload::Input(range),
                })
            }
            OpCode::Data(Data::Text | Data::Binary) => {
                self.fragmented = Some(opcode == OpCode::Data(Data::Text));
                self.reassembly.clear();
                self.reassembly.extend_from_slice(payload);
                Ok(Event::Fragment)
            }
            OpCode::Data(Data::Continue) => {
                self.reassembly.extend_from_slice(payload);
                if !is_final {
                    return Ok(Event::Fragment);
                }
                let text = self.fragmented.take().expect("checked: a message is open");
                if text {
                    check_utf8(&self.reassembly)?;
                }
                Ok(Event::Message {
                    text,
                    payload: Payload::Reassembled,
                })
            }
            OpCode::Control(Control::Ping) => Ok(Event::Ping(range)),
            OpCode::Control(Control::Pong) => Ok(Event::Pong),
            OpCode::Control(Control::Close) => close_event(payload, range),
            OpCode::Data(Data::Reserved(_)) | OpCode::Control(Control::Reserved(_)) => {
                Err(WsError::protocol("reserved opcode"))
            }
        }
    }

    /// The last reassembled message.
    pub fn message(&self) -> &[u8] {
        &self.reassembly
    }

    /// Takes the last reassembled message out of the decoder, so that an
    /// idle connection keeps no memory for it.
    pub fn take_message(&mut self) -> Vec<u8> {
        debug_assert!(self.fragmented.is_none(), "the message is complete");
        std::mem::take(&mut self.reassembly)
    }
}

fn close_event(payload: &[u8], range: Range<usize>) -> Result<Event, WsError> {
    match payload.len() {
        0 => Ok(Event::Close {
            code: None,
            reason: range,
        }),
        1 => Err(WsError::protocol("close frame with a one-byte payload")),
        _ => {
            let code = u16::from_be_bytes([payload[0], payload[1]]);
            if !close_code::is_valid_on_wire(code) {
                return Err(WsError::protocol("invalid close code"));
            }
            check_utf8(&payload[2..])?;
            Ok(Event::Close {
                code: Some(code),
                reason: range.start + 2..range.end,
            })
        }
    }
}

/// XORs `bytes` with the 4-byte `mask`, repeated from the first byte
/// (tungstenite keeps its own version private), eight bytes at a time.
pub fn apply_mask(bytes: &mut [u8], mask: [u8; 4]) {
    let wide = u64::from_ne_bytes([
        mask[0], mask[1], mask[2], mask[3], mask[0], mask[1], mask[2], mask[3],
    ]);
    let mut chunks = bytes.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let word = u64::from_ne_bytes(chunk.try_into().expect("chunks of eight")) ^ wide;
        chunk.copy_from_slice(&word.to_ne_bytes());
    }
    for (i, byte) in chunks.into_remainder().iter_mut().enumerate() {
        *byte ^= mask[i & 3];
    }
}

fn check_utf8(bytes: &[u8]) -> Result<(), WsError> {
    std::str::from_utf8(bytes).map(drop).map_err(|_| WsError {
        code: close_code::INVALID_PAYLOAD,
        reason: "invalid UTF-8 in a text message",
    })
}

/// Appends one unfragmented, unmasked (server) frame.
pub fn write_frame(out: &mut Vec<u8>, opcode: OpCode, payload: &[u8]) {
    let header = FrameHeader {
        is_final: true,
        rsv1: false,
        rsv2: false,
        rsv3: false,
        opcode,
        mask: None,
    };
    header
        .format(payload.len() as u64, out)
        .expect("writing to a Vec cannot fail");
    out.extend_from_slice(payload);
}

/// Appends a close frame with `code` and `reason` (cut to fit a control
/// frame, at a character boundary).
pub fn write_close(out: &mut Vec<u8>, code: u16, reason: &str) {
    let mut end = reason.len().min(CONTROL_PAYLOAD_BYTES_MAX - 2);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut payload = [0u8; CONTROL_PAYLOAD_BYTES_MAX];
    payload[..2].copy_from_slice(&code.to_be_bytes());
    payload[2..2 + end].copy_from_slice(&reason.as_bytes()[..end]);
    write_frame(out, OpCode::Control(Control::Close), &payload[..2 + end]);
}

#[cfg(test)]
mod tests {
    use super::*;

    const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

    /// A masked client frame.
    fn client_frame(first: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![first];
        match payload.len() {
            n if n < 126 => out.push(0x80 | n as u8),
            n if n <= 0xffff => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&MASK);
        let start = out.len();
        out.extend_from_slice(payload);
        apply_mask(&mut out[start..], MASK);
        out
    }

    fn decode_all(bytes: &mut [u8], limits: &Limits) -> Result<Vec<(Event, Vec<u8>)>, WsError> {
        let mut decoder = Decoder::default();
        let mut events = Vec::new();
        let mut pos = 0;
        while let Some((event, used)) = decoder.decode(&mut bytes[pos..], limits)? {
            let slice = &bytes[pos..pos + used];
            let data = match &event {
                Event::Message { payload, .. } => payload.bytes(slice, &decoder).to_vec(),
                Event::Ping(r) | Event::Close { reason: r, .. } => slice[r.clone()].to_vec(),
                _ => Vec::new(),
            };
            events.push((event, data));
            pos += used;
        }
        Ok(events)
    }

    #[test]
    fn fragments_are_reassembled_around_a_control_frame() {
        let mut bytes = client_frame(0x01, b"hel");
        bytes.extend(client_frame(0x89, b"p"));
        bytes.extend(client_frame(0x80, "lo ü".as_bytes()));
        let events = decode_all(&mut bytes, &Limits::default()).expect("valid");
        assert_eq!(events.len(), 3);
        assert_eq!(events[0].0, Event::Fragment);
        assert_eq!(events[1].1, b"p");
        assert_eq!(events[2].1, "hello ü".as_bytes());
    }

    #[test]
    fn an_incomplete_frame_consumes_nothing() {
        let bytes = client_frame(0x82, &[7u8; 300]);
        let mut decoder = Decoder::default();
        for cut in 0..bytes.len() {
            let mut part = bytes[..cut].to_vec();
            assert_eq!(decoder.decode(&mut part, &Limits::default()), Ok(None));
        }
    }

    #[test]
    fn violations_map_to_their_close_codes() {
        let limits = Limits {
            message_bytes_max: 10,
        };
        let cases: Vec<(Vec<u8>, u16)> = vec![
            (vec![0x81, 0x02, b'h', b'i'], close_code::PROTOCOL_ERROR),
            (client_frame(0x83, b""), close_code::PROTOCOL_ERROR),
            (client_frame(0x89, &[0; 126]), close_code::PROTOCOL_ERROR),
            (client_frame(0x09, b""), close_code::PROTOCOL_ERROR),
            (client_frame(0x80, b"x"), close_code::PROTOCOL_ERROR),
            (client_frame(0xc1, b"x"), close_code::PROTOCOL_ERROR),
            (client_frame(0x88, &[3]), close_code::PROTOCOL_ERROR),
            (
                client_frame(0x88, &[0x03, 0xed]),
                close_code::PROTOCOL_ERROR,
            ),
            (
                client_frame(0x81, &[0xff, 0xfe]),
                close_code::INVALID_PAYLOAD,
            ),
            (client_frame(0x82, &[0; 11]), close_code::MESSAGE_TOO_BIG),
        ];
        for (mut bytes, code) in cases {
            let got = decode_all(&mut bytes, &limits).expect_err("must fail");
            assert_eq!(got.code, code, "{bytes:02x?}: {got}");
        }
    }

    #[test]
    fn a_message_too_big_fails_on_its_header() {
        let limits = Limits {
            message_bytes_max: 100,
        };
        // Only the header of a 1 MiB frame has arrived.
        let mut bytes = client_frame(0x82, &vec![0; 1 << 20]);
        bytes.truncate(14);
        let err = Decoder::default()
            .decode(&mut bytes, &limits)
            .expect_err("too big");
        assert_eq!(err.code, close_code::MESSAGE_TOO_BIG);
        // Fragments count together.
        let mut bytes = client_frame(0x02, &[0; 60]);
        bytes.extend(client_frame(0x80, &[0; 60]));
        let err = decode_all(&mut bytes, &limits).expect_err("too big");
        assert_eq!(err.code, close_code::MESSAGE_TOO_BIG);
    }

    #[test]
    fn close_frames_carry_code_and_reason() {
        let mut payload = 1001u16.to_be_bytes().to_vec();
        payload.extend_from_slice(b"bye");
        let mut bytes = client_frame(0x88, &payload);
        let events = decode_all(&mut bytes, &Limits::default()).expect("valid");
        assert!(matches!(
            events[0].0,
            Event::Close {
                code: Some(1001),
                ..
            }
        ));
        assert_eq!(events[0].1, b"bye");
        let mut out = Vec::new();
        write_close(&mut out, 1000, &"é".repeat(100));
        assert_eq!(out[0], 0x88);
        assert!(usize::from(out[1]) <= CONTROL_PAYLOAD_BYTES_MAX);
        assert!(std::str::from_utf8(&out[4..]).is_ok());
    }

    #[test]
    fn server_frames_use_every_length_form() {
        for len in [0usize, 125, 126, 65535, 65536] {
            let mut out = Vec::new();
            write_frame(&mut out, OpCode::Data(Data::Binary), &vec![1; len]);
            let head = match len {
                0..=125 => 2,
                126..=65535 => 4,
                _ => 10,
            };
            assert_eq!(out.len(), head + len);
            assert_eq!(out[0], 0x82);
        }
    }
}
