//! The chat protocol's messages, as loadgen writes and reads them.
//!
//! A client sends plain text; the server wraps it for every other socket of
//! the room as `{"sender":N,"text":T,"timestamp":ms}`, and tells the room
//! `{"type":"join","name":N}` and `{"type":"leave","name":N}`. loadgen's
//! text is `lg:<sender>:<seq>:<origin_ns>`: plain ASCII that JSON escaping
//! leaves alone, naming the sender (its index among the run's clients), the
//! message (the sender's count) and the time latency counts from
//! (nanoseconds since the run's common start).
//!
//! ```
//! use loadgen::ws::chat::{self, Delivery, ServerMessage};
//! let mut text = Vec::new();
//! chat::write_text(&mut text, 7, 3, 1_500);
//! assert_eq!(text, b"lg:7:3:1500");
//! let received = br#"{"sender":"c7","text":"lg:7:3:1500","timestamp":1}"#;
//! assert_eq!(
//!     chat::read(received),
//!     ServerMessage::Delivery(Delivery { sender: 7, seq: 3, origin_ns: 1_500 })
//! );
//! ```

/// The longest text loadgen sends: the prefix and three 20-digit numbers.
pub const TEXT_BYTES_MAX: usize = 3 + 3 * 21;

/// One of loadgen's messages, as delivered to another client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    /// The sender's index among the run's clients.
    pub sender: u64,
    pub seq: u64,
    pub origin_ns: u64,
}

/// What a message from the server is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerMessage<'a> {
    /// Someone joined the room; `name` as the server sent it.
    Join {
        name: &'a [u8],
    },
    Leave,
    Delivery(Delivery),
    /// A message loadgen did not write, or one it cannot read.
    Other,
}

/// Appends the text of message `seq` of client `sender`.
pub fn write_text(out: &mut Vec<u8>, sender: u64, seq: u64, origin_ns: u64) {
    out.extend_from_slice(b"lg:");
    write_decimal(out, sender);
    out.push(b':');
    write_decimal(out, seq);
    out.push(b':');
    write_decimal(out, origin_ns);
}

/// Appends `value` in decimal, without allocating.
pub fn write_decimal(out: &mut Vec<u8>, mut value: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// Reads one server message.
pub fn read(message: &[u8]) -> ServerMessage<'_> {
    if let Some(text) = string_field(message, b"text") {
        return match parse_text(text) {
            Some(delivery) => ServerMessage::Delivery(delivery),
            None => ServerMessage::Other,
        };
    }
    match string_field(message, b"type") {
        Some(b"join") => ServerMessage::Join {
            name: string_field(message, b"name").unwrap_or_default(),
        },
        Some(b"leave") => ServerMessage::Leave,
        _ => ServerMessage::Other,
    }
}

/// The client name loadgen gives client `index`: `c<index>`.
pub fn write_name(out: &mut Vec<u8>, index: u64) {
    out.push(b'c');
    write_decimal(out, index);
}

/// Whether `name` is the name of client `index`.
pub fn is_name_of(name: &[u8], index: u64) -> bool {
    match name.split_first() {
        Some((b'c', digits)) => parse_decimal(digits) == Some(index),
        _ => false,
    }
}

fn parse_text(text: &[u8]) -> Option<Delivery> {
    let rest = text.strip_prefix(b"lg:")?;
    let mut parts = rest.split(|&b| b == b':');
    let delivery = Delivery {
        sender: parse_decimal(parts.next()?)?,
        seq: parse_decimal(parts.next()?)?,
        origin_ns: parse_decimal(parts.next()?)?,
    };
    parts.next().is_none().then_some(delivery)
}

fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 20 {
        return None;
    }
    digits.iter().try_fold(0u64, |value, &digit| {
        if !digit.is_ascii_digit() {
            return None;
        }
        value.checked_mul(10)?.checked_add(u64::from(digit - b'0'))
    })
}

/// The raw value of string field `name` in a flat JSON object: the bytes
/// between its quotes, escapes left as they are. Enough for the server's
/// messages, whose strings loadgen chose to need no escaping.
fn string_field<'a>(json: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    let mut from = 0;
    while let Some(at) = find(&json[from..], name).map(|at| at + from) {
        from = at + name.len();
        let quoted = at > 0 && json[at - 1] == b'"' && json.get(from) == Some(&b'"');
        if !quoted {
            continue;
        }
        let rest = skip_spaces(&json[from + 1..]);
        let Some(rest) = rest.strip_prefix(b":") else {
            continue;
        };
        let rest = skip_spaces(rest).strip_prefix(b"\"")?;
        let mut end = 0;
        while end < rest.len() && rest[end] != b'"' {
            // An escaped character is skipped with its backslash.
            end += if rest[end] == b'\\' { 2 } else { 1 };
        }
        return rest.get(..end);
    }
    None
}

fn skip_spaces(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    &bytes[start..]
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_round_trip_at_their_longest() {
        let mut text = Vec::new();
        write_text(&mut text, u64::MAX, 0, u64::MAX);
        assert!(text.len() <= TEXT_BYTES_MAX);
        let message = [br#"{"sender":"x","text":""#.as_slice(), &text, b"\"}"].concat();
        assert_eq!(
            read(&message),
            ServerMessage::Delivery(Delivery {
                sender: u64::MAX,
                seq: 0,
                origin_ns: u64::MAX
            })
        );
    }

    #[test]
    fn reads_joins_and_leaves_with_or_without_spaces() {
        assert_eq!(
            read(br#"{"type":"join","name":"c12"}"#),
            ServerMessage::Join { name: b"c12" }
        );
        assert_eq!(
            read(br#"{ "type" : "join", "name": "c1" }"#),
            ServerMessage::Join { name: b"c1" }
        );
        assert_eq!(
            read(br#"{"type":"leave","name":"c1"}"#),
            ServerMessage::Leave
        );
        assert!(is_name_of(b"c12", 12));
        assert!(!is_name_of(b"c12", 1));
        assert!(!is_name_of(b"x12", 12));
    }

    #[test]
    fn other_texts_are_not_deliveries() {
        for other in [
            br#"{"sender":"a","text":"hello","timestamp":1}"#.as_slice(),
            br#"{"sender":"a","text":"lg:1:2","timestamp":1}"#,
            br#"{"sender":"a","text":"lg:1:2:3:4","timestamp":1}"#,
            br#"{"sender":"a","text":"lg:1:x:3","timestamp":1}"#,
            br#"{"sender":"a","text":"lg:1:2:99999999999999999999"}"#,
            br#"{"type":"welcome"}"#,
            b"not json",
            br#"{"context":"lg:1:2:3"}"#,
        ] {
            assert_eq!(
                read(other),
                ServerMessage::Other,
                "{}",
                String::from_utf8_lossy(other)
            );
        }
    }

    #[test]
    fn a_name_that_contains_text_is_not_the_text_field() {
        let message = br#"{"sender":"text","text":"lg:1:2:3","timestamp":1}"#;
        assert_eq!(
            read(message),
            ServerMessage::Delivery(Delivery {
                sender: 1,
                seq: 2,
                origin_ns: 3
            })
        );
    }
}
