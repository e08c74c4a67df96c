//! What a worker needs from the protocol its connections speak, and the
//! HTTP/1.1 implementation of it (RPC's is in [`crate::rpc`]).
//!
//! The worker owns the ring, the sockets and the send buffers; a protocol
//! says what to send first when a connection opens (an RPC hello, or
//! nothing), how to write one request for a key, and how to turn received
//! bytes into answers, each matched with the request it answers. Its
//! per-connection state — the receive buffer, the handshake, the requests
//! awaiting answers — is a [`Session`].
//!
//! The worker is generic over the protocol, so nothing on the hot path is
//! dispatched dynamically.

use std::collections::VecDeque;

use crate::keys::KeySampler;
use crate::request::RequestTemplate;
use crate::response::ResponseReader;
use crate::stats::{Failure, StatusKind};

/// A request that was written and awaits its response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InFlight {
    /// What latency is measured from: the send time in closed loop, the
    /// intended send time in open loop.
    pub origin_ns: u64,
    /// When it was written, for the timeout.
    pub written_ns: u64,
}

/// One complete response, matched with its request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub request: InFlight,
    /// The server closes the connection after this response.
    pub close: bool,
    /// A rate-limit check that was answered but denied.
    pub denied: bool,
}

/// One connection's protocol state.
pub trait Session {
    /// Whether requests may be written (the handshake, if any, is done).
    fn ready(&self) -> bool;
    fn in_flight_count(&self) -> usize;
    /// Whether a request, or the handshake, has waited `timeout_ns` or more.
    fn timed_out(&mut self, now_ns: u64, timeout_ns: u64) -> bool;
    /// Forgets every request awaiting a response, returning how many there
    /// were: the connection failed and they will never be answered.
    fn abandon_in_flight(&mut self) -> u64;
    /// Where the next receive writes; never empty.
    fn recv_window(&mut self) -> &mut [u8];
    /// Accounts for `n` bytes received into [`Session::recv_window`].
    fn on_received(&mut self, n: usize);
    /// Whether bytes of an unfinished response are buffered.
    fn mid_response(&self) -> bool;
    /// Readies the session for a new connection, keeping its buffers.
    fn reset(&mut self);
}

/// A protocol, as one worker speaks it on all its connections. It may keep
/// scratch state (an encoder) shared by the connections.
pub trait Protocol {
    type Session: Session;

    /// How the run's status codes read.
    fn status_kind(&self) -> StatusKind;
    /// The bytes one request takes apart from its key, to size buffers.
    fn request_bytes(&self) -> usize;
    /// A session for a connection to target `target` of the worker's
    /// targets, allowing `in_flight_max` requests in flight.
    fn session(&self, target: usize, in_flight_max: usize) -> Self::Session;
    /// The connection has just opened: appends what the client says first.
    fn on_open(&mut self, session: &mut Self::Session, out: &mut Vec<u8>, now_ns: u64);
    /// Appends one request for `keys`' next key to `out` and remembers it.
    fn write_request(
        &mut self,
        session: &mut Self::Session,
        keys: &mut KeySampler,
        request: InFlight,
        out: &mut Vec<u8>,
    );
    /// Takes the next answer off the session's buffer; `Ok(None)` when the
    /// rest has not arrived. An error fails the connection.
    fn next_answer(&mut self, session: &mut Self::Session) -> Result<Option<Answer>, Failure>;
}

/// HTTP/1.1 with a request template; responses come back in order.
#[derive(Debug, Clone)]
pub struct Http {
    pub template: RequestTemplate,
}

#[derive(Debug)]
pub struct HttpSession {
    reader: ResponseReader,
    /// Requests in the order sent, which is the order answered.
    in_flight: VecDeque<InFlight>,
}

impl Session for HttpSession {
    fn ready(&self) -> bool {
        true
    }

    fn in_flight_count(&self) -> usize {
        self.in_flight.len()
    }

    fn timed_out(&mut self, now_ns: u64, timeout_ns: u64) -> bool {
        self.in_flight
            .front()
            .is_some_and(|oldest| now_ns.saturating_sub(oldest.written_ns) >= timeout_ns)
    }

    fn abandon_in_flight(&mut self) -> u64 {
        let count = self.in_flight.len() as u64;
        self.in_flight.clear();
        count
    }

    fn recv_window(&mut self) -> &mut [u8] {
        self.reader.recv_window()
    }

    fn on_received(&mut self, n: usize) {
        self.reader.on_received(n);
    }

    fn mid_response(&self) -> bool {
        self.reader.mid_response()
    }

    fn reset(&mut self) {
        self.reader.reset();
        self.in_flight.clear();
    }
}

impl Protocol for Http {
    type Session = HttpSession;

    fn status_kind(&self) -> StatusKind {
        StatusKind::Http
    }

    fn request_bytes(&self) -> usize {
        self.template.fixed_bytes()
    }

    fn session(&self, _target: usize, in_flight_max: usize) -> HttpSession {
        HttpSession {
            reader: ResponseReader::new(),
            in_flight: VecDeque::with_capacity(in_flight_max),
        }
    }

    fn on_open(&mut self, _session: &mut HttpSession, _out: &mut Vec<u8>, _now_ns: u64) {}

    fn write_request(
        &mut self,
        session: &mut HttpSession,
        keys: &mut KeySampler,
        request: InFlight,
        out: &mut Vec<u8>,
    ) {
        self.template.write(keys, out);
        session.in_flight.push_back(request);
    }

    fn next_answer(&mut self, session: &mut HttpSession) -> Result<Option<Answer>, Failure> {
        let response = match session.reader.next_response(self.template.head_only()) {
            Ok(Some(response)) => response,
            Ok(None) => return Ok(None),
            Err(_) => return Err(Failure::Protocol),
        };
        // A response nobody asked for puts the stream out of step: nothing
        // after it can be trusted.
        let request = session.in_flight.pop_front().ok_or(Failure::Protocol)?;
        Ok(Some(Answer {
            status: response.status,
            request,
            close: response.close,
            denied: false,
        }))
    }
}
