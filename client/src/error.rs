//! The client's one error type.

use std::fmt;
use std::io;

use durin_proto::rpc::{status, ProtoError};

/// Why a call or a connection failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum ClientError {
    /// A socket operation failed (connection refused, reset, ...).
    Io(io::Error),
    /// The call did not finish within [`ClientOptions::timeout`].
    ///
    /// [`ClientOptions::timeout`]: crate::ClientOptions::timeout
    Timeout,
    /// The server closed the connection before answering.
    Closed,
    /// The server refused the handshake; `reason` is its explanation.
    Refused { reason: String },
    /// The server sent bytes that are not valid protocol, or advertised a
    /// layout the client cannot use.
    Protocol(ProtoError),
    /// The server answered with an error status (one of
    /// [`durin_proto::rpc::status`]) and a message.
    Server { status: u16, message: String },
    /// The request's frame would exceed [`ClientOptions::frame_bytes_max`];
    /// it was not sent.
    ///
    /// [`ClientOptions::frame_bytes_max`]: crate::ClientOptions::frame_bytes_max
    RequestTooLarge { bytes: usize, max: usize },
    /// A built-in method's response payload is not in its documented
    /// format ([`durin_proto::rpc::builtin`]); the text names the method.
    BadPayload(&'static str),
    /// A hot key split over `shards` sub-objects: 0, or over `max`
    /// ([`crate::sharding::SUB_OBJECTS_MAX`]).
    SubObjects { shards: u32, max: u32 },
}

impl ClientError {
    /// Whether the connection the error happened on can no longer be
    /// trusted: its stream position or its requests in flight are unknown.
    pub(crate) fn breaks_connection(&self) -> bool {
        match self {
            ClientError::Io(_)
            | ClientError::Timeout
            | ClientError::Closed
            | ClientError::Refused { .. }
            | ClientError::Protocol(_) => true,
            ClientError::Server { .. }
            | ClientError::RequestTooLarge { .. }
            | ClientError::BadPayload(_)
            | ClientError::SubObjects { .. } => false,
        }
    }

    /// A copy of the error for every other call that one failure ended
    /// (an I/O error cannot be cloned, so its kind and text are copied).
    pub(crate) fn duplicate(&self) -> ClientError {
        match self {
            ClientError::Io(error) => {
                ClientError::Io(io::Error::new(error.kind(), error.to_string()))
            }
            ClientError::Timeout => ClientError::Timeout,
            ClientError::Closed => ClientError::Closed,
            ClientError::Refused { reason } => ClientError::Refused {
                reason: reason.clone(),
            },
            ClientError::Protocol(error) => ClientError::Protocol(error.clone()),
            ClientError::Server { status, message } => ClientError::Server {
                status: *status,
                message: message.clone(),
            },
            ClientError::RequestTooLarge { bytes, max } => ClientError::RequestTooLarge {
                bytes: *bytes,
                max: *max,
            },
            ClientError::BadPayload(what) => ClientError::BadPayload(what),
            ClientError::SubObjects { shards, max } => ClientError::SubObjects {
                shards: *shards,
                max: *max,
            },
        }
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Io(error) => write!(f, "durin RPC connection failed: {error}"),
            ClientError::Timeout => f.write_str("durin RPC call timed out"),
            ClientError::Closed => f.write_str("the durin server closed the connection"),
            ClientError::Refused { reason } => {
                write!(f, "the durin server refused the connection: {reason}")
            }
            ClientError::Protocol(error) => write!(f, "durin RPC protocol error: {error}"),
            ClientError::Server {
                status: code,
                message,
            } => {
                write!(
                    f,
                    "durin server error {code} ({}): {message}",
                    status::name(*code)
                )
            }
            ClientError::RequestTooLarge { bytes, max } => {
                write!(
                    f,
                    "a request frame of {bytes} bytes exceeds the limit of {max} bytes"
                )
            }
            ClientError::SubObjects { shards, max } => {
                write!(f, "a key split over {shards} sub-objects; give 1 to {max}")
            }
            ClientError::BadPayload(what) => {
                write!(
                    f,
                    "the server's response to {what} is not in the documented format"
                )
            }
        }
    }
}

impl std::error::Error for ClientError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ClientError::Io(error) => Some(error),
            ClientError::Protocol(error) => Some(error),
            _ => None,
        }
    }
}

impl From<ProtoError> for ClientError {
    fn from(error: ProtoError) -> Self {
        ClientError::Protocol(error)
    }
}

/// Socket errors become [`ClientError::Timeout`] when a socket timeout
/// expired (Linux reports it as `WouldBlock`).
impl From<io::Error> for ClientError {
    fn from(error: io::Error) -> Self {
        match error.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => ClientError::Timeout,
            io::ErrorKind::UnexpectedEof => ClientError::Closed,
            _ => ClientError::Io(error),
        }
    }
}
