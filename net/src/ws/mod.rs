//! WebSockets (RFC 6455) over a connection's own buffers.
//!
//! The shard drives the socket; this module only turns bytes into events
//! and events into bytes. A connection starts as HTTP; an upgrade request
//! that its object accepts is answered `101` ([`handshake`]), and from then
//! on received bytes go through a [`Decoder`] and messages are written with
//! [`write_frame`] / [`write_close`]. tungstenite provides the frame-header
//! codec, the masking and the accept key; no tungstenite stream or buffer is
//! involved, so an idle connection holds no read buffer at all.
//!
//! ```
//! use durin_net::ws::{Decoder, Event, Limits, write_frame, OpCode, Data};
//! let mut decoder = Decoder::default();
//! // A masked client text frame "hi" (mask 1,2,3,4).
//! let mut bytes = vec![0x81, 0x82, 1, 2, 3, 4, b'h' ^ 1, b'i' ^ 2];
//! let (event, used) = decoder.decode(&mut bytes, &Limits::default()).unwrap().unwrap();
//! assert_eq!(used, 8);
//! match event {
//!     Event::Message { text: true, payload } => assert_eq!(payload.bytes(&bytes, &decoder), b"hi"),
//!     other => panic!("unexpected {other:?}"),
//! }
//! let mut out = Vec::new();
//! write_frame(&mut out, OpCode::Data(Data::Text), b"hello");
//! assert_eq!(&out[..2], &[0x81, 5]);
//! ```

mod frame;
pub mod handshake;

pub use frame::{
    apply_mask, close_code, write_close, write_frame, Decoder, Event, Limits, Payload, WsError,
    CONTROL_PAYLOAD_BYTES_MAX, FRAME_HEADER_BYTES_MAX,
};
pub use tungstenite::protocol::frame::coding::{Control, Data, OpCode};

/// The WebSocket side of an upgraded connection.
#[derive(Debug, Default)]
pub struct WsConn {
    /// The engine's socket slot for this connection, and its generation.
    pub socket: u32,
    pub socket_generation: u32,
    pub decoder: Decoder,
    /// We sent a close frame: nothing more may be sent.
    pub close_sent: bool,
    /// The peer sent a close frame: nothing more will be read.
    pub close_received: bool,
    /// The payload of the latest ping not yet answered. A pong is written
    /// only when no send is in flight, and a newer ping replaces an older
    /// one (RFC 6455 5.5.3 allows answering only the latest), so a peer
    /// that pings without reading makes the server hold one pong, not one
    /// per ping.
    pub pending_pong: Option<Vec<u8>>,
}
