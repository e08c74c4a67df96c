//! durin's binary RPC protocol, version 1.
//!
//! A client opens a TCP connection, the two sides exchange hellos, and from
//! then on both send frames: the client sends requests, the server answers
//! each with one response carrying the same `request_id`. A client may have
//! many requests in flight on one connection (pipelining), and the server
//! may answer them in any order, so a client matches responses by ID.
//!
//! ```
//! use durin_proto::rpc::{self, Decoded, ObjectRef, RequestHeader};
//!
//! let header = RequestHeader {
//!     request_id: 7,
//!     class: "counter".into(),
//!     object: ObjectRef::Name(b"visits".to_vec()),
//!     method: "increment".into(),
//! };
//! let mut wire = Vec::new();
//! rpc::encode_request(&mut wire, &header, b"");
//! match rpc::decode_request(&wire, rpc::FRAME_BYTES_MAX_DEFAULT).unwrap() {
//!     Decoded::Frame { header: decoded, payload, len } => {
//!         assert_eq!(decoded, header);
//!         assert!(payload.is_empty());
//!         assert_eq!(len, wire.len());
//!     }
//!     Decoded::Incomplete => unreachable!("the whole frame is in the buffer"),
//! }
//! ```
//!
//! # Handshake
//!
//! The client speaks first, 16 bytes:
//!
//! | bytes | field                                |
//! |-------|--------------------------------------|
//! | 8     | magic `b"DURINRPC"`                  |
//! | 2     | protocol version, u16 LE             |
//! | 2     | reserved, 0 (ignored by the server)  |
//! | 4     | reserved, 0 (ignored by the server)  |
//!
//! The server answers, 27 bytes plus the reason:
//!
//! | bytes      | field                                                   |
//! |------------|---------------------------------------------------------|
//! | 8          | magic `b"DURINRPC"`                                     |
//! | 1          | status: 0 accepted, 1 refused                           |
//! | 2          | server protocol version, u16 LE                         |
//! | 4          | shards, u32 LE                                          |
//! | 4          | partitions, u32 LE                                      |
//! | 4          | shard index of this port, u32 LE (`u32::MAX`: the shared port) |
//! | 2          | shard base port, u16 LE (0: no per-shard ports)         |
//! | 2          | reason_len, u16 LE                                      |
//! | reason_len | reason, UTF-8 (why a client was refused; may be empty)  |
//!
//! The server closes a refused connection after its hello. When it
//! advertises a base port, shard `i` also listens on port `base + i`, and a
//! shard-aware client sends each request straight to the shard that owns
//! the object ([`crate::shard_of`]).
//!
//! # Frames
//!
//! After the handshake, both directions carry frames:
//!
//! | bytes      | field                                                   |
//! |------------|---------------------------------------------------------|
//! | 4          | frame_len, u32 LE: the bytes after this field           |
//! | 4          | header_len, u32 LE                                      |
//! | header_len | header: an rkyv 0.8 archive of [`RequestHeader`] or [`ResponseHeader`] |
//! | the rest   | payload, opaque to the protocol                         |
//!
//! A receiver never trusts a length from the wire: `frame_len` is checked
//! against its maximum ([`FRAME_BYTES_MAX_DEFAULT`] unless configured) as
//! soon as its four bytes arrive, `header_len` against `frame_len`, and the
//! header is copied into an aligned buffer and validated (bytecheck) before
//! it is read. A response's `status` is one of [`status`]; its `message`
//! says why a request failed and is empty on success. The payload formats
//! of the built-in classes are in [`builtin`].
//!
//! Request ID 0 is reserved: clients number their requests from 1, and a
//! response with ID 0 reports an error of the connection rather than of a
//! request (the server sends one with [`status::FRAME_TOO_LARGE`] or
//! [`status::MALFORMED`] before closing a connection whose frame it
//! refused). A request with ID 0 is refused as malformed.

pub mod builtin;
mod error;
mod frame;
mod hello;

pub use error::ProtoError;
pub use frame::{
    decode_request, decode_response, encode_request, encode_response, Decoded, ObjectRef,
    RequestHeader, ResponseHeader,
};
pub use hello::{
    decode_client_hello, decode_server_hello, encode_client_hello, encode_server_hello,
    ServerHello, SERVER_HELLO_FIXED_BYTES,
};

/// The protocol version this crate speaks.
pub const PROTOCOL_VERSION: u16 = 1;

/// The first eight bytes of both hellos.
pub const MAGIC: [u8; 8] = *b"DURINRPC";

/// The size of the client's hello.
pub const CLIENT_HELLO_BYTES: usize = 16;

/// The default limit on `frame_len`, the bytes of a frame after its length
/// field. A larger frame is refused from its length alone.
pub const FRAME_BYTES_MAX_DEFAULT: usize = 1 << 20;

/// Status codes of a response.
pub mod status {
    /// The call succeeded; the payload is the method's result.
    pub const OK: u16 = 0;
    /// The server has no class of that name.
    pub const UNKNOWN_CLASS: u16 = 1;
    /// The class has no method of that name.
    pub const UNKNOWN_METHOD: u16 = 2;
    /// The payload is not what the method takes.
    pub const BAD_ARGUMENT: u16 = 3;
    /// The request frame was larger than the server accepts.
    pub const FRAME_TOO_LARGE: u16 = 4;
    /// The server failed; the message says how.
    pub const INTERNAL: u16 = 5;
    /// The object's storage is full.
    pub const STORAGE_LIMIT: u16 = 6;
    /// The object reference is not valid for the class.
    pub const BAD_OBJECT: u16 = 7;
    /// A call between objects got no reply within the server's
    /// `call_timeout_ms`.
    pub const TIMEOUT: u16 = 8;
    /// A frame could not be read (sent with request ID 0 before the server
    /// closes the connection: nothing after it can be trusted).
    pub const MALFORMED: u16 = 9;

    /// A short name for `code`, for error messages.
    pub fn name(code: u16) -> &'static str {
        match code {
            OK => "ok",
            UNKNOWN_CLASS => "unknown class",
            UNKNOWN_METHOD => "unknown method",
            BAD_ARGUMENT => "bad argument",
            FRAME_TOO_LARGE => "frame too large",
            INTERNAL => "internal error",
            STORAGE_LIMIT => "storage limit",
            BAD_OBJECT => "bad object",
            TIMEOUT => "timeout",
            MALFORMED => "malformed",
            _ => "unknown status",
        }
    }
}
