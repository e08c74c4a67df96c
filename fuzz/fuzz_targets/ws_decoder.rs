//! The WebSocket decoder, with reassembly, on arbitrary client bytes fed
//! the way the shard feeds them: whole, or cut at a point the fuzzer picks
//! with the undecoded rest carried over. Properties: it never panics; no
//! message is over the limit; text is UTF-8; control payloads are at most
//! 125 bytes; and the two feedings see the same events.
#![no_main]

use arbitrary::Arbitrary;
use durin_net::ws::{Decoder, Event, Limits, CONTROL_PAYLOAD_BYTES_MAX};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input {
    cut: u16,
    bytes: Vec<u8>,
}

/// What the decoder said, with the bytes it pointed at.
#[derive(Debug, PartialEq)]
enum Seen {
    Message(bool, Vec<u8>),
    Fragment,
    Ping(Vec<u8>),
    Pong,
    Close(Option<u16>, Vec<u8>),
    Failed(u16),
}

const LIMITS: Limits = Limits {
    message_bytes_max: 512,
};

/// Decodes every whole frame of `pending`, keeping an incomplete one;
/// returns false once the connection failed.
fn feed(decoder: &mut Decoder, pending: &mut Vec<u8>, seen: &mut Vec<Seen>) -> bool {
    let mut pos = 0;
    while pos < pending.len() {
        match decoder.decode(&mut pending[pos..], &LIMITS) {
            Ok(None) => break,
            Ok(Some((event, used))) => {
                assert!(used > 0 && pos + used <= pending.len());
                let frame = &pending[pos..pos + used];
                seen.push(match event {
                    Event::Message { text, payload } => {
                        let bytes = payload.bytes(frame, decoder).to_vec();
                        assert!(bytes.len() <= LIMITS.message_bytes_max);
                        if text {
                            assert!(std::str::from_utf8(&bytes).is_ok());
                        }
                        Seen::Message(text, bytes)
                    }
                    Event::Fragment => Seen::Fragment,
                    Event::Ping(r) => {
                        assert!(r.len() <= CONTROL_PAYLOAD_BYTES_MAX);
                        Seen::Ping(frame[r].to_vec())
                    }
                    Event::Pong => Seen::Pong,
                    Event::Close { code, reason } => {
                        assert!(reason.len() <= CONTROL_PAYLOAD_BYTES_MAX);
                        Seen::Close(code, frame[reason].to_vec())
                    }
                });
                pos += used;
            }
            Err(e) => {
                seen.push(Seen::Failed(e.code));
                return false;
            }
        }
    }
    pending.drain(..pos);
    true
}

fn run(bytes: &[u8], cut: usize) -> Vec<Seen> {
    let mut decoder = Decoder::default();
    let mut pending = Vec::new();
    let mut seen = Vec::new();
    for chunk in [&bytes[..cut], &bytes[cut..]] {
        pending.extend_from_slice(chunk);
        if !feed(&mut decoder, &mut pending, &mut seen) {
            break;
        }
    }
    seen
}

fuzz_target!(|input: Input| {
    let cut = usize::from(input.cut) % (input.bytes.len() + 1);
    let whole = run(&input.bytes, input.bytes.len());
    let split = run(&input.bytes, cut);
    assert_eq!(whole, split, "feeding in two parts cut at {cut} changed what was seen");
});
