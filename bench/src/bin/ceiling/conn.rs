//! One connection's buffers and state, without any I/O.
//!
//! The worker owns the ring; a `Conn` only says which bytes to receive into,
//! which bytes to send next, and what the bytes that arrived mean. At most one
//! receive and one send are in flight per connection, and while one is in
//! flight its buffer is never touched: the kernel holds a raw pointer to it.
//!
//! Responses are built in `pending` while `sending` is with the kernel; when a
//! send completes the two swap. Neither buffer is reallocated under an
//! in-flight send, and both keep their capacity across requests and across
//! the connections that reuse this slot, so the steady state allocates nothing.

use std::os::fd::OwnedFd;

use crate::http::{self, HeadError};

/// The whole answer to every request.
pub const RESPONSE: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok";

/// Receive buffer a connection starts with; fits any ordinary request.
const RECV_BUF_BYTES: usize = 4 * 1024;
/// A header block larger than this closes the connection.
pub const RECV_BUF_BYTES_MAX: usize = 64 * 1024;
/// Responses queued behind the in-flight send before the connection stops
/// reading requests; the client has to read its responses to send more.
const PENDING_BYTES_MAX: usize = 64 * 1024;
/// Send-buffer capacity a slot keeps for its next connection; a burst of
/// pipelined requests can grow it further, but not for the slot's lifetime.
const SEND_BUF_KEEP_BYTES: usize = 16 * 1024;

/// Why a connection must be closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The request header outgrew `RECV_BUF_BYTES_MAX`.
    HeadTooLarge,
    /// The header block cannot be framed.
    BadHead(HeadError),
}

pub struct Conn {
    /// The socket; `None` while the slot is free.
    pub fd: Option<OwnedFd>,
    /// Bumped each time the slot is released, so completions can be checked
    /// against the connection they were submitted for.
    pub generation: u32,
    /// The connection is being torn down: no new operations are submitted and
    /// the slot is released once nothing is in flight.
    pub closing: bool,
    pub recv_in_flight: bool,
    pub send_in_flight: bool,
    /// The client asked to close after its last response is sent.
    pub close_after_send: bool,
    /// The client shut its side down; what it sent is answered, then the
    /// connection closes.
    pub peer_closed: bool,

    /// Received bytes live in `recv_buf[parsed..filled]`.
    recv_buf: Vec<u8>,
    parsed: usize,
    filled: usize,
    /// Body bytes of the current request still to be skipped.
    body_left_bytes: u64,

    /// Bytes with the kernel; `sending[sent..]` is still to go.
    sending: Vec<u8>,
    sent: usize,
    /// Responses waiting for the in-flight send to finish.
    pending: Vec<u8>,
}

impl Conn {
    pub fn new() -> Self {
        Conn {
            fd: None,
            generation: 0,
            closing: false,
            recv_in_flight: false,
            send_in_flight: false,
            close_after_send: false,
            peer_closed: false,
            recv_buf: vec![0; RECV_BUF_BYTES],
            parsed: 0,
            filled: 0,
            body_left_bytes: 0,
            sending: Vec::with_capacity(SEND_BUF_KEEP_BYTES),
            sent: 0,
            pending: Vec::with_capacity(SEND_BUF_KEEP_BYTES),
        }
    }

    /// Whether a receive should be submitted now.
    pub fn wants_recv(&self) -> bool {
        !self.closing
            && !self.recv_in_flight
            && !self.close_after_send
            && !self.peer_closed
            && self.pending.len() < PENDING_BYTES_MAX
    }

    /// Where the next receive writes: the free tail of the receive buffer.
    pub fn recv_window(&mut self) -> &mut [u8] {
        assert!(!self.recv_in_flight, "one receive at a time");
        &mut self.recv_buf[self.filled..]
    }

    /// Accounts for `n` bytes received into `recv_window`.
    pub fn on_received(&mut self, n: usize) {
        assert!(n > 0, "a zero-byte receive is end of stream");
        assert!(self.filled + n <= self.recv_buf.len());
        self.filled += n;
    }

    /// Answers every complete request in the receive buffer, stopping early
    /// when enough responses are queued; leaves room for the next receive.
    pub fn parse_requests(&mut self) -> Result<(), CloseReason> {
        assert!(!self.recv_in_flight, "the kernel may be writing the buffer");
        let mut head_incomplete = false;
        while !self.close_after_send && self.pending.len() < PENDING_BYTES_MAX {
            self.skip_body();
            if self.body_left_bytes > 0 {
                break;
            }
            let unparsed = &self.recv_buf[self.parsed..self.filled];
            let Some(head_len) = http::find_head_end(unparsed) else {
                head_incomplete = true;
                break;
            };
            let head = http::parse_head(&unparsed[..head_len]).map_err(CloseReason::BadHead)?;
            self.pending.extend_from_slice(RESPONSE);
            self.parsed += head_len;
            self.body_left_bytes = head.body_bytes;
            self.close_after_send = head.close;
        }
        if self.close_after_send {
            // Whatever the client pipelined after asking to close is dropped.
            self.parsed = self.filled;
        }
        self.make_room(head_incomplete)
    }

    fn skip_body(&mut self) {
        let available = (self.filled - self.parsed) as u64;
        let skip = self.body_left_bytes.min(available);
        self.parsed += skip as usize;
        self.body_left_bytes -= skip;
    }

    /// Ensures the receive buffer has free space at its tail, moving unparsed
    /// bytes to the front, or, when they are the start of one request header
    /// that fills the buffer, growing it up to its maximum.
    fn make_room(&mut self, head_incomplete: bool) -> Result<(), CloseReason> {
        if self.parsed == self.filled {
            self.parsed = 0;
            self.filled = 0;
            return Ok(());
        }
        if self.filled < self.recv_buf.len() {
            return Ok(());
        }
        if self.parsed > 0 {
            self.recv_buf.copy_within(self.parsed..self.filled, 0);
            self.filled -= self.parsed;
            self.parsed = 0;
            return Ok(());
        }
        if !head_incomplete {
            // A buffer full of complete requests waits for the responses to
            // drain (`wants_recv` is false); it does not need to grow.
            return Ok(());
        }
        if self.recv_buf.len() >= RECV_BUF_BYTES_MAX {
            return Err(CloseReason::HeadTooLarge);
        }
        let grown = (self.recv_buf.len() * 2).min(RECV_BUF_BYTES_MAX);
        self.recv_buf.resize(grown, 0);
        Ok(())
    }

    /// The bytes for the next send, if a send should be submitted now.
    pub fn next_send(&mut self) -> Option<&[u8]> {
        if self.closing || self.send_in_flight {
            return None;
        }
        if self.sent == self.sending.len() {
            if self.pending.is_empty() {
                return None;
            }
            self.sending.clear();
            self.sent = 0;
            std::mem::swap(&mut self.sending, &mut self.pending);
        }
        Some(&self.sending[self.sent..])
    }

    /// Accounts for `n` bytes of the in-flight send having gone out.
    pub fn on_sent(&mut self, n: usize) {
        assert!(self.sent + n <= self.sending.len());
        self.sent += n;
    }

    /// Everything queued has been sent.
    pub fn all_sent(&self) -> bool {
        self.sent == self.sending.len() && self.pending.is_empty()
    }

    /// Readies the slot for its next connection, keeping its buffers.
    pub fn reset(&mut self) {
        assert!(!self.recv_in_flight && !self.send_in_flight);
        self.fd = None;
        self.generation = self.generation.wrapping_add(1);
        self.closing = false;
        self.close_after_send = false;
        self.peer_closed = false;
        self.parsed = 0;
        self.filled = 0;
        self.body_left_bytes = 0;
        self.sent = 0;
        self.sending.clear();
        self.pending.clear();
        // A request that grew the buffers should not pin that memory for as
        // long as the slot lives.
        self.recv_buf.truncate(RECV_BUF_BYTES);
        self.recv_buf.shrink_to(RECV_BUF_BYTES);
        self.sending.shrink_to(SEND_BUF_KEEP_BYTES);
        self.pending.shrink_to(SEND_BUF_KEEP_BYTES);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receive(conn: &mut Conn, bytes: &[u8]) {
        let window = conn.recv_window();
        window[..bytes.len()].copy_from_slice(bytes);
        conn.on_received(bytes.len());
    }

    fn drain_sends(conn: &mut Conn) -> usize {
        let mut total = 0;
        while let Some(bytes) = conn.next_send() {
            let n = bytes.len();
            conn.on_sent(n);
            total += n;
        }
        total
    }

    #[test]
    fn answers_pipelined_requests_split_across_receives() {
        let mut conn = Conn::new();
        receive(
            &mut conn,
            b"GET / HTTP/1.1\r\n\r\nPOST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nab",
        );
        assert_eq!(conn.parse_requests(), Ok(()));
        receive(&mut conn, b"cdeGET / HTTP/1.1\r");
        assert_eq!(conn.parse_requests(), Ok(()));
        assert_eq!(drain_sends(&mut conn), 2 * RESPONSE.len());
        receive(&mut conn, b"\n\r\n");
        assert_eq!(conn.parse_requests(), Ok(()));
        assert_eq!(drain_sends(&mut conn), RESPONSE.len());
        assert!(conn.all_sent());
    }

    #[test]
    fn grows_for_a_large_head_then_refuses_past_the_max() {
        let mut conn = Conn::new();
        let mut received = 0;
        let filler = [b'a'; 1024];
        loop {
            let room = conn.recv_window().len().min(filler.len());
            receive(&mut conn, &filler[..room]);
            received += room;
            match conn.parse_requests() {
                Ok(()) => assert!(received < RECV_BUF_BYTES_MAX),
                Err(reason) => {
                    assert_eq!(reason, CloseReason::HeadTooLarge);
                    assert_eq!(received, RECV_BUF_BYTES_MAX);
                    break;
                }
            }
        }
    }

    #[test]
    fn stops_reading_while_responses_back_up() {
        let mut conn = Conn::new();
        let request = b"x\r\n\r\n";
        // The kernel holds a send, so responses can only queue up.
        conn.send_in_flight = true;
        let mut requests = 0;
        while conn.wants_recv() {
            let fit = conn.recv_window().len() / request.len();
            assert!(fit > 0);
            for _ in 0..fit {
                receive(&mut conn, request);
            }
            requests += fit;
            assert_eq!(conn.parse_requests(), Ok(()));
        }
        assert!(conn.pending.len() >= PENDING_BYTES_MAX);
        conn.send_in_flight = false;
        let mut answered_bytes = 0;
        loop {
            assert_eq!(conn.parse_requests(), Ok(()));
            let n = drain_sends(&mut conn);
            if n == 0 {
                break;
            }
            answered_bytes += n;
        }
        assert_eq!(answered_bytes, RESPONSE.len() * requests);
        assert!(conn.wants_recv());
    }
}
