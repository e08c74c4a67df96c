//! HTTP/1.1: request parsing with limits, and response writing.
//!
//! The parser borrows from the connection's input buffer and never copies;
//! the writer appends to the connection's output buffer and never allocates
//! once that buffer has grown to its working size.

mod parse;
mod response;

pub use parse::{parse_request, percent_decode, HttpError, Limits, Parsed, Request, HEADERS_MAX};
pub use response::{reason_phrase, write_response, ResponseHead};

/// A parsed header, borrowed from the input buffer.
pub use httparse::Header;
