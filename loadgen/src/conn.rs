//! One client connection's buffers and bookkeeping, without any I/O.
//!
//! The worker owns the ring; a `Conn` says which bytes to send next, and
//! its protocol [`Session`] where to receive and which requests are waiting
//! for their responses. At most
//! one connect, one receive and one send are in flight per connection, and
//! while one is in flight its buffer is never touched: the kernel holds a
//! raw pointer to it.
//!
//! Requests are written into the pending half of its [`SendBuffers`] while
//! the other half is with the kernel. Both keep their capacity, as does the
//! session's table of requests awaiting responses (bounded by `--pipeline`),
//! so the steady state allocates nothing.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use crate::keys::KeySampler;
use crate::protocol::{InFlight, Protocol, Session};
use crate::send_buffers::SendBuffers;

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

pub struct Conn<S> {
    pub fd: Option<OwnedFd>,
    pub state: ConnState,
    /// Bumped each time the slot goes idle, so that completions can be
    /// checked against the connection they were submitted for.
    pub generation: u32,
    /// The connection's index among all of the run's connections; it fixes
    /// the connection's place in the open-loop schedule.
    pub global_index: u64,
    /// Which of the worker's targets (addresses, each with its keys) this
    /// connection goes to.
    pub target: usize,
    pub connect_in_flight: bool,
    pub recv_in_flight: bool,
    pub send_in_flight: bool,
    /// Connect attempts that failed in a row; sets the reconnect backoff.
    pub connect_failures: u32,
    /// Open loop: requests of this connection whose send time has come.
    pub due: u64,
    /// Requests this connection has written (open loop: schedule slots used).
    pub issued: u64,

    pub session: S,
    in_flight_max: usize,
    send: SendBuffers,
}

impl<S: Session> Conn<S> {
    /// A connection slot to `target` that allows `in_flight_max`
    /// outstanding requests.
    pub fn new(
        global_index: u64,
        target: usize,
        session: S,
        in_flight_max: usize,
        request_bytes: usize,
    ) -> Conn<S> {
        assert!(in_flight_max > 0, "a connection must be able to send");
        // Enough for a full pipeline of ordinary requests; large bodies grow
        // the buffers once, up to the bound the plan checked.
        let send_bytes = (request_bytes * in_flight_max).min(SEND_BUF_START_BYTES);
        Conn {
            fd: None,
            state: ConnState::Idle { at_ns: 0 },
            generation: 0,
            global_index,
            target,
            connect_in_flight: false,
            recv_in_flight: false,
            send_in_flight: false,
            connect_failures: 0,
            due: 0,
            issued: 0,
            session,
            in_flight_max,
            send: SendBuffers::with_capacity(send_bytes),
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
        self.state == ConnState::Open
            && self.session.ready()
            && self.session.in_flight_count() < self.in_flight_max
    }

    /// The connection has just opened: queues what the protocol says first.
    pub fn open<P: Protocol<Session = S>>(&mut self, protocol: &mut P, now_ns: u64) {
        self.state = ConnState::Open;
        protocol.on_open(&mut self.session, self.send.pending(), now_ns);
    }

    /// Writes one request for `keys`' next key, remembering its origin.
    pub fn write_request<P: Protocol<Session = S>>(
        &mut self,
        protocol: &mut P,
        keys: &mut KeySampler,
        origin_ns: u64,
        now_ns: u64,
    ) {
        assert!(self.can_write());
        let request = InFlight {
            origin_ns,
            written_ns: now_ns,
        };
        protocol.write_request(&mut self.session, keys, request, self.send.pending());
        self.issued += 1;
    }

    pub fn in_flight_count(&self) -> usize {
        self.session.in_flight_count()
    }

    /// Forgets every request awaiting a response, returning how many there
    /// were: the connection failed and they will never be answered.
    pub fn abandon_in_flight(&mut self) -> u64 {
        self.session.abandon_in_flight()
    }

    /// The bytes for the next send, if a send should be submitted now.
    pub fn next_send(&mut self) -> Option<&[u8]> {
        if self.state != ConnState::Open || self.send_in_flight {
            return None;
        }
        self.send.next_bytes()
    }

    /// Accounts for `n` bytes of the in-flight send having gone out.
    pub fn on_sent(&mut self, n: usize) {
        self.send.on_sent(n);
    }

    /// Readies the slot for its next connection, keeping its buffers.
    pub fn reset(&mut self, reconnect_at_ns: u64) {
        assert!(
            self.idle_in_kernel(),
            "the kernel may still use the buffers"
        );
        assert_eq!(
            self.session.in_flight_count(),
            0,
            "abandoned requests are counted first"
        );
        self.fd = None;
        self.state = ConnState::Idle {
            at_ns: reconnect_at_ns,
        };
        self.generation = self.generation.wrapping_add(1);
        self.session.reset();
        self.send.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::KeyDist;
    use crate::protocol::{Http, HttpSession};
    use crate::request::{RequestSpec, RequestTemplate};
    use crate::target::Target;

    fn open_conn(in_flight_max: usize) -> (Conn<HttpSession>, Http, KeySampler) {
        let target = Target::parse("http://127.0.0.1:1/").unwrap();
        let template = RequestTemplate::new(&target, &RequestSpec::default()).unwrap();
        let mut http = Http { template };
        let session = http.session(0, in_flight_max);
        let mut conn = Conn::new(0, 0, session, in_flight_max, http.request_bytes());
        conn.open(&mut http, 0);
        (conn, http, KeySampler::new(&KeyDist::Hot, 1, 0))
    }

    fn take_oldest(conn: &mut Conn<HttpSession>, http: &mut Http) -> Option<u64> {
        let bytes = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
        conn.session.recv_window()[..bytes.len()].copy_from_slice(bytes);
        conn.session.on_received(bytes.len());
        let answer = http.next_answer(&mut conn.session).unwrap()?;
        Some(answer.request.origin_ns)
    }

    #[test]
    fn pipelines_up_to_the_limit_and_answers_in_order() {
        let (mut conn, mut http, mut keys) = open_conn(2);
        conn.write_request(&mut http, &mut keys, 10, 11);
        conn.write_request(&mut http, &mut keys, 20, 21);
        assert!(!conn.can_write());
        let request_bytes = http.request_bytes();
        let bytes = conn.next_send().unwrap().len();
        assert_eq!(bytes, 2 * request_bytes);
        conn.send_in_flight = true;
        assert_eq!(conn.next_send(), None);
        assert_eq!(take_oldest(&mut conn, &mut http), Some(10));
        assert!(conn.can_write());
        // Written while the first send is with the kernel: goes out next.
        conn.write_request(&mut http, &mut keys, 30, 31);
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
        let (mut conn, mut http, mut keys) = open_conn(1);
        conn.write_request(&mut http, &mut keys, 1, 1);
        let _ = conn.next_send();
        conn.abandon_in_flight();
        let capacity = conn.send.capacity();
        conn.reset(5);
        assert_eq!(conn.state, ConnState::Idle { at_ns: 5 });
        assert_eq!(conn.generation, 1);
        assert_eq!(conn.send.capacity(), capacity);
        assert_eq!(conn.next_send(), None);
    }
}
