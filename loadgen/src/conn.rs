//! One client connection's buffers and bookkeeping, without any I/O.
//!
//! The worker owns the ring; a `Conn` says which bytes to send next, where
//! to receive, and which requests are waiting for their responses. At most
//! one connect, one receive and one send are in flight per connection, and
//! while one is in flight its buffer is never touched: the kernel holds a
//! raw pointer to it.
//!
//! Requests are written into `pending` while `sending` is with the kernel;
//! when a send completes the two swap. Both keep their capacity, as does the
//! queue of requests awaiting responses (bounded by `--pipeline`), so the
//! steady state allocates nothing.

use std::collections::VecDeque;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use crate::keys::KeySampler;
use crate::request::RequestTemplate;
use crate::response::ResponseReader;

/// Send-buffer capacity a connection starts with, at most.
const SEND_BUF_START_BYTES: usize = 64 * 1024;

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnState {
    /// No socket; connect again at `at_ns` (run time), unless the run is over.
    Idle { at_ns: u64 },
    /// A connect is in flight since `since_ns`.
    Connecting { since_ns: u64 },
    /// Connected: requests go out and responses come back.
    Open,
    /// Shut down; the slot becomes idle once the kernel has returned every
    /// operation on it.
    Closing,
}

/// A request that was written and awaits its response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InFlight {
    /// What latency is measured from: the send time in closed loop, the
    /// intended send time in open loop.
    pub origin_ns: u64,
    /// When it was written, for the timeout.
    pub written_ns: u64,
}

pub struct Conn {
    pub fd: Option<OwnedFd>,
    pub state: ConnState,
    /// Bumped each time the slot goes idle, so that completions can be
    /// checked against the connection they were submitted for.
    pub generation: u32,
    /// The connection's index among all of the run's connections; it fixes
    /// the connection's place in the open-loop schedule.
    pub global_index: u64,
    pub connect_in_flight: bool,
    pub recv_in_flight: bool,
    pub send_in_flight: bool,
    /// Connect attempts that failed in a row; sets the reconnect backoff.
    pub connect_failures: u32,
    /// Open loop: requests of this connection whose send time has come.
    pub due: u64,
    /// Requests this connection has written (open loop: schedule slots used).
    pub issued: u64,

    pub reader: ResponseReader,
    in_flight: VecDeque<InFlight>,
    in_flight_max: usize,
    /// Bytes with the kernel; `sending[sent..]` is still to go.
    sending: Vec<u8>,
    sent: usize,
    /// Requests written while a send is in flight.
    pending: Vec<u8>,
}

impl Conn {
    /// A connection slot that allows `in_flight_max` outstanding requests.
    pub fn new(global_index: u64, in_flight_max: usize, request_bytes: usize) -> Conn {
        assert!(in_flight_max > 0, "a connection must be able to send");
        // Enough for a full pipeline of ordinary requests; large bodies grow
        // the buffers once, up to the bound the plan checked.
        let send_bytes = (request_bytes * in_flight_max).min(SEND_BUF_START_BYTES);
        Conn {
            fd: None,
            state: ConnState::Idle { at_ns: 0 },
            generation: 0,
            global_index,
            connect_in_flight: false,
            recv_in_flight: false,
            send_in_flight: false,
            connect_failures: 0,
            due: 0,
            issued: 0,
            reader: ResponseReader::new(),
            in_flight: VecDeque::with_capacity(in_flight_max),
            in_flight_max,
            sending: Vec::with_capacity(send_bytes),
            sent: 0,
            pending: Vec::with_capacity(send_bytes),
        }
    }

    pub fn raw_fd(&self) -> RawFd {
        self.fd
            .as_ref()
            .expect("a connection holds its socket until it goes idle")
            .as_raw_fd()
    }

    /// Whether nothing of this connection is with the kernel.
    pub fn idle_in_kernel(&self) -> bool {
        !self.connect_in_flight && !self.recv_in_flight && !self.send_in_flight
    }

    /// Whether a request may be written now.
    pub fn can_write(&self) -> bool {
        self.state == ConnState::Open && self.in_flight.len() < self.in_flight_max
    }

    /// Writes one request for `keys`' next key, remembering its origin.
    pub fn write_request(
        &mut self,
        template: &RequestTemplate,
        keys: &mut KeySampler,
        origin_ns: u64,
        now_ns: u64,
    ) {
        assert!(self.can_write());
        template.write(keys, &mut self.pending);
        self.in_flight.push_back(InFlight {
            origin_ns,
            written_ns: now_ns,
        });
        self.issued += 1;
    }

    /// The request the next response answers.
    pub fn take_oldest(&mut self) -> Option<InFlight> {
        self.in_flight.pop_front()
    }

    pub fn oldest(&self) -> Option<&InFlight> {
        self.in_flight.front()
    }

    pub fn in_flight_count(&self) -> usize {
        self.in_flight.len()
    }

    /// Forgets every request awaiting a response, returning how many there
    /// were: the connection failed and they will never be answered.
    pub fn abandon_in_flight(&mut self) -> u64 {
        let count = self.in_flight.len() as u64;
        self.in_flight.clear();
        count
    }

    /// The bytes for the next send, if a send should be submitted now.
    pub fn next_send(&mut self) -> Option<&[u8]> {
        if self.state != ConnState::Open || self.send_in_flight {
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

    /// Readies the slot for its next connection, keeping its buffers.
    pub fn reset(&mut self, reconnect_at_ns: u64) {
        assert!(
            self.idle_in_kernel(),
            "the kernel may still use the buffers"
        );
        assert!(
            self.in_flight.is_empty(),
            "abandoned requests are counted first"
        );
        self.fd = None;
        self.state = ConnState::Idle {
            at_ns: reconnect_at_ns,
        };
        self.generation = self.generation.wrapping_add(1);
        self.reader.reset();
        self.sending.clear();
        self.sent = 0;
        self.pending.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::KeyDist;
    use crate::request::RequestSpec;
    use crate::target::Target;

    fn open_conn(in_flight_max: usize) -> (Conn, RequestTemplate, KeySampler) {
        let target = Target::parse("http://127.0.0.1:1/").unwrap();
        let template = RequestTemplate::new(&target, &RequestSpec::default()).unwrap();
        let mut conn = Conn::new(0, in_flight_max, template.fixed_bytes());
        conn.state = ConnState::Open;
        (conn, template, KeySampler::new(&KeyDist::Hot, 1, 0))
    }

    #[test]
    fn pipelines_up_to_the_limit_and_answers_in_order() {
        let (mut conn, template, mut keys) = open_conn(2);
        conn.write_request(&template, &mut keys, 10, 11);
        conn.write_request(&template, &mut keys, 20, 21);
        assert!(!conn.can_write());
        let request_bytes = template.fixed_bytes();
        let bytes = conn.next_send().unwrap().len();
        assert_eq!(bytes, 2 * request_bytes);
        conn.send_in_flight = true;
        assert_eq!(conn.next_send(), None);
        assert_eq!(conn.take_oldest().map(|r| r.origin_ns), Some(10));
        assert!(conn.can_write());
        // Written while the first send is with the kernel: goes out next.
        conn.write_request(&template, &mut keys, 30, 31);
        conn.send_in_flight = false;
        conn.on_sent(bytes - 1);
        assert_eq!(conn.next_send().unwrap().len(), 1);
        conn.on_sent(1);
        assert_eq!(conn.next_send().unwrap().len(), request_bytes);
        assert_eq!(conn.issued, 3);
        assert_eq!(conn.abandon_in_flight(), 2);
    }

    #[test]
    fn reset_keeps_capacity_and_moves_to_the_next_generation() {
        let (mut conn, template, mut keys) = open_conn(1);
        conn.write_request(&template, &mut keys, 1, 1);
        let _ = conn.next_send();
        conn.abandon_in_flight();
        let capacity = conn.pending.capacity() + conn.sending.capacity();
        conn.reset(5);
        assert_eq!(conn.state, ConnState::Idle { at_ns: 5 });
        assert_eq!(conn.generation, 1);
        assert_eq!(conn.pending.capacity() + conn.sending.capacity(), capacity);
        assert_eq!(conn.next_send(), None);
    }
}
