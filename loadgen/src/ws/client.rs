//! One chat client's state and buffers, without any I/O.
//!
//! A client lives once: it connects, upgrades, joins its room, chats and
//! closes, and is never reconnected (a chat client that drops mid-run is
//! an error to report, not to paper over). At most one connect, one
//! receive and one send are in flight, and while one is, its buffer is not
//! touched: the kernel holds a pointer to it.
//!
//! Frames are written into the pending half of its [`SendBuffers`] while
//! the other half is with the kernel. Received bytes land in the worker's
//! shared buffer pool; a client only keeps bytes of its own (`carry`) when a
//! frame arrived split, and `fragments` only while a fragmented message is
//! reassembled, so an idle client holds almost no memory.

use std::collections::VecDeque;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use crate::send_buffers::SendBuffers;

/// Where a client is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientState {
    /// Not started yet: the connect phase opens clients a batch at a time.
    Waiting,
    /// The TCP connect is in flight.
    Connecting,
    /// The upgrade request is out; the 101 has not arrived.
    Handshaking,
    /// Upgraded: frames flow. Whether the client is in its room yet is
    /// [`Client::joined`].
    Open,
    /// The run is over and loadgen sent its close frame; waiting for the
    /// server's.
    Closing,
    /// Shut down; the socket is closed once the kernel has returned every
    /// operation on it.
    Down,
}

/// A message sent and not yet delivered to all of its room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outgoing {
    pub seq: u64,
    pub written_ns: u64,
    /// Recipients still to see it.
    pub remaining: u32,
}

pub struct Client {
    pub fd: Option<OwnedFd>,
    pub state: ClientState,
    /// The client's index among all of the run's clients; its name is
    /// `c<global>`.
    pub global: u64,
    /// The worker's index of the client's room.
    pub room: usize,
    /// Whether this client sends messages.
    pub sender: bool,
    /// Saw its own join: the server has it in the room.
    pub joined: bool,
    /// Started and neither joined nor down: still in the connect phase.
    pub connecting: bool,
    pub started_ns: u64,
    pub connect_in_flight: bool,
    pub recv_in_flight: bool,
    pub send_in_flight: bool,
    /// The server closed first: shut down once the reply has gone out.
    pub shut_when_sent: bool,
    /// Bytes of a frame, or of the handshake response, that arrived split.
    pub carry: Vec<u8>,
    /// The message being reassembled from fragments.
    pub fragments: Vec<u8>,
    /// A fragmented data message is under way.
    pub in_message: bool,
    /// Messages sent, by sequence number, not yet seen by all of the room.
    pub outbox: VecDeque<Outgoing>,
    /// The next message's sequence number: messages written so far.
    pub seq: u64,
    /// Open loop: messages whose send time has come.
    pub due: u64,
    send: SendBuffers,
}

impl Client {
    pub fn new(global: u64, room: usize, sender: bool) -> Client {
        Client {
            fd: None,
            state: ClientState::Waiting,
            global,
            room,
            sender,
            joined: false,
            connecting: false,
            started_ns: 0,
            connect_in_flight: false,
            recv_in_flight: false,
            send_in_flight: false,
            shut_when_sent: false,
            carry: Vec::new(),
            fragments: Vec::new(),
            in_message: false,
            outbox: VecDeque::new(),
            seq: 0,
            due: 0,
            send: SendBuffers::default(),
        }
    }

    pub fn raw_fd(&self) -> RawFd {
        self.fd
            .as_ref()
            .expect("a client holds its socket until it is down")
            .as_raw_fd()
    }

    /// Whether nothing of this client is with the kernel.
    pub fn idle_in_kernel(&self) -> bool {
        !self.connect_in_flight && !self.recv_in_flight && !self.send_in_flight
    }

    /// Whether frames may be received and sent.
    pub fn is_up(&self) -> bool {
        matches!(
            self.state,
            ClientState::Handshaking | ClientState::Open | ClientState::Closing
        )
    }

    /// Where the next frame is written; it goes out with the next send.
    pub fn pending(&mut self) -> &mut Vec<u8> {
        self.send.pending()
    }

    /// The bytes for the next send, if a send should be submitted now.
    pub fn next_send(&mut self) -> Option<&[u8]> {
        if !self.is_up() || self.send_in_flight {
            return None;
        }
        self.send.next_bytes()
    }

    /// Accounts for `n` bytes of the in-flight send having gone out.
    pub fn on_sent(&mut self, n: usize) {
        self.send.on_sent(n);
        if !self.sender {
            // A client that only listens sends a handshake, the odd pong
            // and a close: its buffer is not worth keeping between them.
            self.send.free_sent();
        }
    }

    /// Whether everything written has gone out.
    pub fn all_sent(&self) -> bool {
        self.send.all_sent()
    }

    /// Frees the buffers of a client that is down for good.
    pub fn release(&mut self) {
        assert!(
            self.idle_in_kernel(),
            "the kernel may still use the buffers"
        );
        self.fd = None;
        self.carry = Vec::new();
        self.fragments = Vec::new();
        self.outbox = VecDeque::new();
        self.send = SendBuffers::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swaps_buffers_and_frees_a_listeners_send_buffer() {
        let mut client = Client::new(0, 0, false);
        client.state = ClientState::Open;
        client.pending().extend_from_slice(b"abc");
        assert_eq!(client.next_send(), Some(b"abc".as_slice()));
        client.send_in_flight = true;
        client.pending().extend_from_slice(b"de");
        assert_eq!(client.next_send(), None);
        client.send_in_flight = false;
        client.on_sent(2);
        assert_eq!(client.next_send(), Some(b"c".as_slice()));
        client.on_sent(1);
        assert_eq!(client.send.sending_capacity(), 0);
        assert!(!client.all_sent());
        assert_eq!(client.next_send(), Some(b"de".as_slice()));
        client.on_sent(2);
        assert!(client.all_sent());
        client.state = ClientState::Down;
        client.pending().push(1);
        assert_eq!(client.next_send(), None);
    }
}
