//! A connection's buffers, and the output gate.
//!
//! Output is appended to `output` as responses are produced. A response
//! that follows a write which is not yet durable is marked with that write's
//! sequence number; nothing from that mark on may reach the kernel until the
//! shard's durable sequence number reaches it. Responses stay in order, so
//! the marks are ordered too and the sendable part is always a prefix.

use std::collections::VecDeque;
use std::os::fd::RawFd;

/// Bytes asked of the kernel per receive.
pub const RECV_CHUNK_BYTES: usize = 4096;

/// What a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnKind {
    Http,
    /// A binary RPC connection before its handshake.
    RpcHello,
    /// A binary RPC connection after its handshake.
    Rpc,
    /// An upgraded WebSocket connection (its state is in [`Conn::ws`]).
    WebSocket,
}

pub struct Conn {
    pub fd: RawFd,
    pub kind: ConnKind,
    /// RPC requests of this connection being served on other shards.
    pub rpc_in_flight: u32,
    /// Accepted on this shard's own RPC port (not the shared one).
    pub on_shard_port: bool,
    pub generation: u32,
    /// Received bytes not yet consumed by the parser.
    pub input: Vec<u8>,
    output: Vec<u8>,
    /// (offset in `output` where a held response starts, sequence it waits for)
    gates: VecDeque<(usize, u64)>,
    sending: Vec<u8>,
    sent: usize,
    pub recv_in_flight: bool,
    pub send_in_flight: bool,
    /// Close once every queued byte is sent; parse nothing more.
    pub closing: bool,
    /// The peer is gone or the connection failed: close without sending.
    pub dead: bool,
    /// A request of this connection is being served on another shard; the
    /// ones behind it wait so that responses stay in order.
    pub awaiting_reply: bool,
    /// When the connection times out, in ms on the shard's clock (0: never).
    pub deadline_ms: u64,
    /// When the pending timer entry for this connection fires (0: none).
    pub timer_at_ms: u64,
    /// Close once the reply to the forwarded request is sent (the request
    /// asked for `Connection: close`).
    pub close_after_reply: bool,
    /// Whether the current deadline is a header timeout (a request is
    /// partly received) rather than keep-alive idleness.
    pub deadline_is_header: bool,
    /// Parsing stopped with requests left in `input` because the output
    /// queued reached its high mark; it goes on once a send completes.
    pub paused_for_output: bool,
    /// Set once the connection is upgraded to a WebSocket.
    pub ws: Option<Box<crate::ws::WsConn>>,
    /// The shard this connection moves to once nothing of it is in flight
    /// (it asked for a WebSocket of an object owned there).
    pub handoff_to: Option<u32>,
}

impl Conn {
    pub fn new(fd: RawFd, generation: u32) -> Conn {
        Conn {
            fd,
            kind: ConnKind::Http,
            rpc_in_flight: 0,
            on_shard_port: false,
            generation,
            input: Vec::with_capacity(RECV_CHUNK_BYTES),
            output: Vec::new(),
            gates: VecDeque::new(),
            sending: Vec::new(),
            sent: 0,
            recv_in_flight: false,
            send_in_flight: false,
            closing: false,
            dead: false,
            awaiting_reply: false,
            deadline_ms: 0,
            timer_at_ms: 0,
            close_after_reply: false,
            deadline_is_header: false,
            paused_for_output: false,
            ws: None,
            handoff_to: None,
        }
    }

    /// The output buffer, for appending a response that may leave as soon
    /// as possible.
    pub fn output(&mut self) -> &mut Vec<u8> {
        &mut self.output
    }

    /// Marks the response about to be appended as held until `seq` is
    /// durable.
    pub fn gate_next(&mut self, seq: u64) {
        debug_assert!(
            self.gates.back().is_none_or(|&(_, s)| s <= seq),
            "gates stay ordered"
        );
        self.gates.push_back((self.output.len(), seq));
    }

    /// Whether output waits behind the gate.
    pub fn has_gated_output(&self) -> bool {
        !self.gates.is_empty()
    }

    /// Moves the sendable prefix of the output into the send buffer, if no
    /// send is in flight. Returns whether there is something to send.
    pub fn prepare_send(&mut self, durable_seq: u64) -> bool {
        if self.send_in_flight || self.dead {
            return false;
        }
        while self
            .gates
            .front()
            .is_some_and(|&(_, seq)| seq <= durable_seq)
        {
            self.gates.pop_front();
        }
        let sendable = self
            .gates
            .front()
            .map_or(self.output.len(), |&(offset, _)| offset);
        if sendable == 0 {
            return false;
        }
        debug_assert!(self.sending.is_empty());
        if sendable == self.output.len() {
            std::mem::swap(&mut self.sending, &mut self.output);
        } else {
            self.sending.extend_from_slice(&self.output[..sendable]);
            self.output.drain(..sendable);
            for gate in &mut self.gates {
                gate.0 -= sendable;
            }
        }
        self.sent = 0;
        true
    }

    /// The bytes of the send in flight still to go: (pointer, length).
    pub fn unsent(&self) -> (*const u8, u32) {
        let rest = &self.sending[self.sent..];
        (rest.as_ptr(), u32::try_from(rest.len()).unwrap_or(u32::MAX))
    }

    /// Records `n` bytes sent. Returns whether bytes of this send remain.
    pub fn on_sent(&mut self, n: usize) -> bool {
        self.sent += n;
        assert!(
            self.sent <= self.sending.len(),
            "the kernel sent more than asked"
        );
        if self.sent == self.sending.len() {
            self.sending.clear();
            self.sent = 0;
            return false;
        }
        true
    }

    /// Bytes queued and not yet sent.
    pub fn queued_bytes(&self) -> usize {
        self.output.len() + self.sending.len() - self.sent
    }

    /// Drops every byte not yet handed to the kernel (a send in flight goes
    /// on), and the gates with them.
    pub fn discard_unsent_output(&mut self) {
        self.output.clear();
        self.gates.clear();
    }

    /// Frees the buffers of a connection with nothing queued, so that an
    /// idle long-lived connection keeps none. `input_in_kernel`: a receive
    /// in flight writes into the input buffer (rather than a provided one).
    pub fn release_idle_buffers(&mut self, input_in_kernel: bool) {
        if self.output.is_empty() && self.output.capacity() > 0 {
            self.output = Vec::new();
        }
        if self.sending.is_empty() && !self.send_in_flight && self.sending.capacity() > 0 {
            self.sending = Vec::new();
        }
        let input_busy = input_in_kernel && self.recv_in_flight;
        if self.input.is_empty() && !input_busy && self.input.capacity() > 0 {
            self.input = Vec::new();
        }
        if self.gates.is_empty() && self.gates.capacity() > 0 {
            self.gates = VecDeque::new();
        }
    }

    /// Whether every byte queued so far has been sent.
    pub fn is_drained(&self) -> bool {
        self.output.is_empty() && self.sending.is_empty()
    }

    /// Whether any operation on the socket is still in the kernel.
    pub fn has_io_in_flight(&self) -> bool {
        self.recv_in_flight || self.send_in_flight
    }

    /// Makes room to receive at least [`RECV_CHUNK_BYTES`], and returns the
    /// spare part of the input buffer: (pointer, length).
    pub fn recv_space(&mut self) -> (*mut u8, u32) {
        self.input.reserve(RECV_CHUNK_BYTES);
        let spare = self.input.spare_capacity_mut();
        (
            spare.as_mut_ptr().cast::<u8>(),
            u32::try_from(spare.len()).unwrap_or(u32::MAX),
        )
    }

    /// Records `n` bytes received into the spare part of the input buffer.
    ///
    /// # Safety
    /// The kernel must have written `n` bytes at the pointer last returned
    /// by [`recv_space`](Self::recv_space), and the buffer must not have
    /// been touched since.
    pub unsafe fn on_received(&mut self, n: usize) {
        let len = self.input.len() + n;
        assert!(len <= self.input.capacity(), "received past the buffer");
        // SAFETY: the caller guarantees these bytes were initialised.
        unsafe { self.input.set_len(len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gated_output_waits_for_its_sequence_number() {
        let mut conn = Conn::new(-1, 0);
        conn.output().extend_from_slice(b"free;");
        conn.gate_next(5);
        conn.output().extend_from_slice(b"held;");
        assert!(conn.prepare_send(4));
        assert_eq!(&conn.sending, b"free;");
        assert!(!conn.on_sent(5));
        assert!(!conn.prepare_send(4));
        assert!(conn.prepare_send(5));
        assert_eq!(&conn.sending, b"held;");
        assert!(conn.on_sent(2));
        assert!(!conn.on_sent(3));
        assert!(conn.is_drained());
    }
}
