//! Networking pieces of durin's shards: the per-core io_uring ring, listening
//! sockets, connection buffers with an output gate, and the HTTP/1.1 codec.
//!
//! Nothing here knows about objects or storage. A shard's loop (in the
//! `durin` engine) owns one [`Ring`], one listener and a table of
//! [`Conn`]s; it feeds received bytes to the [`http`] parser and writes
//! responses into a connection's output, marking the ones that must wait for
//! a durable write behind a gate sequence number.
//!
//! ```
//! use durin_net::http::{parse_request, Limits, Parsed, HEADERS_MAX};
//! let limits = Limits::default();
//! let bytes = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
//! let mut headers = [httparse::EMPTY_HEADER; HEADERS_MAX];
//! match parse_request(bytes, &mut headers, &limits) {
//!     Ok(Parsed::Complete(req)) => assert_eq!(req.path, "/healthz"),
//!     other => panic!("unexpected {other:?}"),
//! }
//! ```

pub mod bufring;
pub mod conn;
pub mod http;
pub mod ring;
pub mod socket;
pub mod ws;

pub use bufring::BufRing;
pub use conn::{Conn, ConnKind};
pub use ring::{Ring, Token};
