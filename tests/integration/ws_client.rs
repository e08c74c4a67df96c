//! A blocking WebSocket client for the tests: tungstenite over std's
//! `TcpStream`, plus raw frames for what a well-behaved client never sends.
//!
//! ```ignore
//! let mut alice = Ws::connect(&server, "/chat/r/websocket?name=alice");
//! assert_eq!(alice.recv_json().str_field("type"), "join");
//! alice.send_text("hi");
//! ```

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::{Message, WebSocket};

use crate::harness::json::{self, Value};
use crate::harness::Server;

/// How long a test waits for a message it expects.
pub const RECV_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Ws {
    pub inner: WebSocket<TcpStream>,
}

/// What the server ended a connection with.
#[derive(Debug, PartialEq, Eq)]
pub enum Ending {
    /// A close frame with this code.
    Close(u16),
    /// The connection closed (or reset) without a close frame.
    Dropped,
}

impl Ws {
    /// Connects and upgrades; panics (with the answer) if the server does
    /// not answer 101.
    pub fn connect(server: &Server, path: &str) -> Ws {
        Ws::try_connect(server, path).unwrap_or_else(|e| panic!("upgrade of {path} failed: {e}"))
    }

    pub fn try_connect(server: &Server, path: &str) -> Result<Ws, String> {
        let stream = TcpStream::connect(server.addr()).map_err(|e| e.to_string())?;
        stream
            .set_read_timeout(Some(RECV_TIMEOUT))
            .expect("timeouts can be set");
        stream.set_nodelay(true).expect("nodelay can be set");
        let url = format!("ws://{}{}", server.addr(), path);
        match tungstenite::client::client(url.as_str(), stream) {
            Ok((inner, _response)) => Ok(Ws { inner }),
            Err(tungstenite::HandshakeError::Failure(e)) => Err(e.to_string()),
            Err(e) => Err(format!("{e:?}")),
        }
    }

    pub fn set_timeout(&mut self, timeout: Duration) {
        self.inner
            .get_mut()
            .set_read_timeout(Some(timeout))
            .expect("timeouts can be set");
    }

    pub fn send_text(&mut self, text: &str) {
        self.inner
            .send(Message::text(text))
            .expect("the message can be sent");
    }

    /// The next text message (pongs and pings skipped); panics on a close
    /// or a timeout.
    pub fn recv_text(&mut self) -> String {
        loop {
            match self.inner.read() {
                Ok(Message::Text(text)) => return text.to_string(),
                Ok(Message::Ping(_) | Message::Pong(_)) => continue,
                other => panic!("expected a text message, got {other:?}"),
            }
        }
    }

    pub fn recv_json(&mut self) -> Value {
        let text = self.recv_text();
        json::parse(&text).unwrap_or_else(|e| panic!("{text:?} is not JSON: {e}"))
    }

    /// Checks that no message arrives within `wait`.
    pub fn expect_silence(&mut self, wait: Duration) {
        self.set_timeout(wait);
        match self.inner.read() {
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            other => panic!("expected no message, got {other:?}"),
        }
        self.set_timeout(RECV_TIMEOUT);
    }

    /// Reads until the server ends the connection, skipping messages.
    pub fn ending(&mut self) -> Ending {
        loop {
            match self.inner.read() {
                Ok(Message::Close(frame)) => {
                    return Ending::Close(frame.map_or(1005, |f| u16::from(f.code)))
                }
                Ok(_) => continue,
                Err(tungstenite::Error::Io(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    panic!("the server did not end the connection within the timeout")
                }
                Err(_) => return Ending::Dropped,
            }
        }
    }

    /// Starts the close handshake with `code`.
    pub fn close(&mut self, code: u16) {
        let frame = tungstenite::protocol::CloseFrame {
            code: CloseCode::from(code),
            reason: "".into(),
        };
        self.inner.close(Some(frame)).expect("close can be sent");
    }

    /// Writes raw bytes under tungstenite (for frames it would refuse to
    /// send).
    pub fn send_raw(&mut self, bytes: &[u8]) {
        let stream = self.inner.get_mut();
        stream.write_all(bytes).expect("raw bytes can be sent");
        stream.flush().expect("flush");
    }

    /// After the server's close frame: whether the server then closed the
    /// TCP connection (reads end) within the timeout.
    pub fn tcp_closed(&mut self) -> bool {
        let mut buf = [0u8; 256];
        loop {
            match self.inner.get_mut().read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return false
                }
                Err(_) => return true,
            }
        }
    }
}

/// A client frame: `first` is the FIN/opcode byte; masked unless `mask` is
/// `None`.
pub fn frame(first: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut out = vec![first];
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => out.push(mask_bit | n as u8),
        n if n <= 0xffff => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    match mask {
        Some(mask) => {
            out.extend_from_slice(&mask);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        }
        None => out.extend_from_slice(payload),
    }
    out
}

/// A masked client frame.
pub fn masked(first: u8, payload: &[u8]) -> Vec<u8> {
    frame(first, payload, Some([0x11, 0x22, 0x33, 0x44]))
}
