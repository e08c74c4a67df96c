//! The protocol's one error type.

use std::fmt;

/// Why bytes from the wire are not valid protocol. Every variant means the
/// peer broke the protocol, so the connection should be closed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProtoError {
    /// The hello does not start with `b"DURINRPC"`: the peer does not speak
    /// this protocol (an HTTP client on the RPC port, say).
    BadMagic,
    /// A frame's `frame_len` exceeds the receiver's maximum.
    FrameTooLarge { len: usize, max: usize },
    /// The bytes are not a valid hello or frame; the text says which part.
    Malformed(&'static str),
}

impl fmt::Display for ProtoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtoError::BadMagic => {
                f.write_str("the peer does not speak durin RPC (bad magic in the hello)")
            }
            ProtoError::FrameTooLarge { len, max } => {
                write!(f, "a frame of {len} bytes exceeds the limit of {max} bytes")
            }
            ProtoError::Malformed(what) => write!(f, "malformed RPC data: {what}"),
        }
    }
}

impl std::error::Error for ProtoError {}
