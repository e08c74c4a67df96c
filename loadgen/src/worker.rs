//! One worker thread: its own ring, its share of the connections, its own
//! statistics. Workers share nothing while they run.
//!
//! The flow of one request:
//! 1. A connection that may send (connected, fewer than `--pipeline`
//!    requests unanswered, and in open loop a send time that has come)
//!    gets the next request written into its pending buffer.
//! 2. A send of everything pending and the standing receive go to the kernel
//!    together with the next `io_uring_enter`, which also waits for
//!    completions until the next timer: the next scheduled request, the next
//!    housekeeping pass, or the end of the run.
//! 3. The receive completes; every complete response in the buffer is
//!    matched with the request it answers (HTTP: the oldest unanswered one;
//!    RPC: the one with its request ID) and its latency recorded. The freed
//!    pipeline slots are refilled at once (step 1).
//!
//! What the bytes are is the [`Protocol`]'s business; the worker only
//! moves them. A protocol with a handshake (RPC) sends its hello when the
//! connection opens and takes requests once the answer is in.
//!
//! Every submission's `user_data` names the operation, the slot and the
//! slot's generation. A slot is only reused once none of its operations is
//! in flight, so a completion always finds the connection it was submitted
//! for; the generation is there to catch it loudly if that ever stops being
//! true. Connects carry a linked timeout, so a target that never answers
//! the handshake cannot hold a slot past `--timeout`.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use io_uring::{opcode, squeue, types, IoUring};

use crate::conn::{Conn, ConnState};
use crate::keys::KeySampler;
use crate::protocol::{Protocol, Session};
use crate::ring::{
    build_ring, is_transient_errno, push, submit_and_wait_ns, token, untoken, Op, CQ_ENTRIES_MAX,
    GENERATION_MASK, SQ_ENTRIES,
};
use crate::schedule::Schedule;
use crate::socket;
use crate::stats::{Failure, Stats};

/// Connections one worker drives; more need more `--threads`.
pub const CONNS_PER_WORKER_MAX: usize = 10_000;
/// Completions a connection can have outstanding at once: a connect and its
/// linked timeout, a cancel, a receive and a send.
const CQES_PER_CONN: usize = 5;
const _: () = assert!(CQES_PER_CONN * CONNS_PER_WORKER_MAX <= CQ_ENTRIES_MAX);
/// Completions copied out of the ring per pass.
const COMPLETION_BATCH: usize = 256;
/// How often timeouts are checked and idle connections reconnected.
const HOUSEKEEPING_NS: u64 = 10_000_000;
/// The first wait before reconnecting after a failed connect; it doubles
/// with each further failure, up to `RECONNECT_BACKOFF_MAX_NS`.
const RECONNECT_BACKOFF_NS: u64 = 10_000_000;
const RECONNECT_BACKOFF_MAX_NS: u64 = 1_000_000_000;
/// How long the end of the run waits for the kernel to return every
/// operation before it gives up and leaks the buffers instead.
const FINISH_GRACE_NS: u64 = 2_000_000_000;

/// Where a worker's connections go, and which keys they ask for there.
pub struct TargetPlan {
    pub addr: SocketAddr,
    pub keys: KeySampler,
}

/// What one worker is asked to do.
pub struct WorkerPlan<P> {
    pub protocol: P,
    /// Connection `g` of the run goes to target `g % targets.len()`.
    pub targets: Vec<TargetPlan>,
    /// Global indices of this worker's connections, ascending.
    pub conns: Vec<u64>,
    pub conns_total: u64,
    pub pipeline: usize,
    /// Open loop at this many requests per second for the whole run.
    pub rate: Option<f64>,
    pub duration: Duration,
    pub timeout: Duration,
}

/// Counters the main thread reads for the progress line, one cache line
/// per worker so that workers do not slow each other down.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct LiveCounters {
    pub responses: AtomicU64,
    pub errors: AtomicU64,
}

#[derive(Debug, Clone, Copy)]
struct Completion {
    user_data: u64,
    result: i32,
}

/// One target as a worker holds it.
struct WorkerTarget {
    addr: SocketAddr,
    /// The kernel reads this while a connect is in flight, so it lives on
    /// the heap where moving the worker does not move it.
    sockaddr: Box<(libc::sockaddr_storage, libc::socklen_t)>,
    keys: KeySampler,
}

/// A worker's state; it lives on, and must only be used from, the thread
/// that created it (the ring is set up single-issuer).
pub struct Worker<P: Protocol> {
    ring: IoUring,
    conns: Vec<Conn<P::Session>>,
    protocol: P,
    targets: Vec<WorkerTarget>,
    schedule: Option<Schedule>,
    /// The kernel reads this while a connect is in flight.
    connect_timeout: Box<types::Timespec>,
    stats: Stats,
    live: Arc<LiveCounters>,
    start: Instant,
    deadline_ns: u64,
    timeout_ns: u64,
    next_housekeeping_ns: u64,
    /// The run is over: closed connections stay closed.
    finishing: bool,
    /// Reused between passes so that draining allocates nothing.
    completions: Vec<Completion>,
}

impl<P: Protocol> Worker<P> {
    /// Sets up the ring and the connection slots; call on the worker's own
    /// thread.
    pub fn new(plan: WorkerPlan<P>, live: Arc<LiveCounters>) -> io::Result<Worker<P>> {
        assert!(!plan.conns.is_empty() && plan.conns.len() <= CONNS_PER_WORKER_MAX);
        assert!(
            !plan.targets.is_empty(),
            "a worker has somewhere to connect"
        );
        let cq_entries = (CQES_PER_CONN * plan.conns.len() + 64)
            .next_power_of_two()
            // The kernel wants at least as many completion entries as
            // submission entries.
            .clamp(2 * SQ_ENTRIES as usize, CQ_ENTRIES_MAX);
        let protocol = plan.protocol;
        let request_bytes = protocol.request_bytes() + 32;
        let targets_total = plan.targets.len();
        let conns = plan
            .conns
            .iter()
            .map(|&global| {
                let target = (global % targets_total as u64) as usize;
                let session = protocol.session(target, plan.pipeline);
                Conn::new(global, target, session, plan.pipeline, request_bytes)
            })
            .collect();
        let targets = plan
            .targets
            .into_iter()
            .map(|target| WorkerTarget {
                addr: target.addr,
                sockaddr: Box::new(socket::to_sockaddr(target.addr)),
                keys: target.keys,
            })
            .collect();
        let stats = Stats::new(protocol.status_kind());
        let schedule = plan
            .rate
            .map(|rate| Schedule::new(rate, plan.conns_total, plan.conns.clone()));
        let timeout = plan.timeout;
        Ok(Worker {
            ring: build_ring(cq_entries as u32)?,
            conns,
            protocol,
            targets,
            schedule,
            connect_timeout: Box::new(
                types::Timespec::new()
                    .sec(timeout.as_secs())
                    .nsec(timeout.subsec_nanos()),
            ),
            stats,
            live,
            start: Instant::now(),
            deadline_ns: duration_ns(plan.duration),
            timeout_ns: duration_ns(timeout),
            next_housekeeping_ns: 0,
            finishing: false,
            completions: Vec::with_capacity(COMPLETION_BATCH),
        })
    }

    /// Drives the load from now until the run's duration is up and returns
    /// what was measured.
    pub fn run(mut self) -> io::Result<Stats> {
        self.start = Instant::now();
        for slot in 0..self.conns.len() {
            self.connect(slot, 0);
        }
        let mut now = self.now_ns();
        while now < self.deadline_ns {
            self.release_due(now);
            if now >= self.next_housekeeping_ns {
                self.housekeeping(now);
                self.next_housekeeping_ns = now + HOUSEKEEPING_NS;
            }
            let mut wake_ns = self.deadline_ns.min(self.next_housekeeping_ns);
            if let Some(schedule) = &self.schedule {
                wake_ns = wake_ns.min(schedule.next_due_ns());
            }
            self.enter(wake_ns.saturating_sub(now))?;
            self.drain_completions();
            self.live
                .responses
                .store(self.stats.responses_total, Ordering::Relaxed);
            self.live
                .errors
                .store(self.stats.errors_total(), Ordering::Relaxed);
            now = self.now_ns();
        }
        self.stats.elapsed_ns = now;
        self.finish()
    }

    fn now_ns(&self) -> u64 {
        duration_ns(self.start.elapsed())
    }

    /// Submits what is queued and waits up to `wait_ns` for a completion.
    /// A failure of the ring itself ends the run; the connections' buffers
    /// are then leaked, since the kernel may still hold pointers into them.
    fn enter(&mut self, wait_ns: u64) -> io::Result<()> {
        let result = self.enter_ring(wait_ns);
        if result.is_err() {
            std::mem::forget(std::mem::take(&mut self.conns));
        }
        result
    }

    fn enter_ring(&mut self, wait_ns: u64) -> io::Result<()> {
        submit_and_wait_ns(&mut self.ring, wait_ns)
    }

    /// Open loop: hands each request whose send time has come to its
    /// connection.
    fn release_due(&mut self, now_ns: u64) {
        let Some(mut schedule) = self.schedule.take() else {
            return;
        };
        while let Some(slot) = schedule.pop_due(now_ns) {
            self.conns[slot].due += 1;
            self.fill(slot, now_ns, Some(&schedule));
            self.start_send(slot);
        }
        self.schedule = Some(schedule);
    }

    /// Writes as many requests as the connection may send now.
    fn fill(&mut self, slot: usize, now_ns: u64, schedule: Option<&Schedule>) {
        let conn = &mut self.conns[slot];
        let keys = &mut self.targets[conn.target].keys;
        let protocol = &mut self.protocol;
        match schedule {
            None => {
                while conn.can_write() {
                    conn.write_request(protocol, keys, now_ns, now_ns);
                }
            }
            Some(schedule) => {
                while conn.can_write() && conn.issued < conn.due {
                    let origin_ns = schedule.intended_ns(conn.global_index, conn.issued);
                    conn.write_request(protocol, keys, origin_ns, now_ns);
                }
            }
        }
    }

    /// Refills a connection after an event, sends, and keeps a receive armed.
    fn progress(&mut self, slot: usize, now_ns: u64) {
        let schedule = self.schedule.take();
        self.fill(slot, now_ns, schedule.as_ref());
        self.schedule = schedule;
        self.start_send(slot);
        self.start_recv(slot);
    }

    /// Times out requests and connects again where a backoff has passed.
    fn housekeeping(&mut self, now_ns: u64) {
        for slot in 0..self.conns.len() {
            let conn = &mut self.conns[slot];
            match conn.state {
                ConnState::Idle { at_ns } if at_ns <= now_ns => self.connect(slot, now_ns),
                ConnState::Open if conn.session.timed_out(now_ns, self.timeout_ns) => {
                    self.close(slot, Some(Failure::Timeout), now_ns);
                }
                _ => {}
            }
        }
    }

    /// Handles completions until the queue is empty. They are copied out
    /// first: handlers submit new work, and emptying the queue lets the
    /// kernel flush any completions it had to hold back.
    fn drain_completions(&mut self) {
        let mut batch = std::mem::take(&mut self.completions);
        loop {
            batch.clear();
            batch.extend(
                self.ring
                    .completion()
                    .take(COMPLETION_BATCH)
                    .map(|cqe| Completion {
                        user_data: cqe.user_data(),
                        result: cqe.result(),
                    }),
            );
            if batch.is_empty() {
                break;
            }
            for completion in &batch {
                self.handle(*completion);
            }
        }
        self.completions = batch;
    }

    fn handle(&mut self, completion: Completion) {
        let (op, slot, generation) = untoken(completion.user_data);
        if op == Op::Aux {
            return;
        }
        assert_eq!(
            self.conns[slot].generation & GENERATION_MASK,
            generation,
            "a completion outlived its connection"
        );
        match op {
            Op::Connect => self.on_connect(slot, completion.result),
            Op::Recv => self.on_recv(slot, completion.result),
            Op::Send => self.on_send(slot, completion.result),
            Op::Aux => unreachable!("handled above"),
        }
    }

    fn on_connect(&mut self, slot: usize, result: i32) {
        let now_ns = self.now_ns();
        let conn = &mut self.conns[slot];
        conn.connect_in_flight = false;
        if conn.state == ConnState::Closing {
            self.release_if_idle(slot, now_ns);
            return;
        }
        if result < 0 {
            self.stats.errors.connect += 1;
            conn.connect_failures += 1;
            self.close(slot, None, now_ns);
            return;
        }
        conn.open(&mut self.protocol, now_ns);
        if conn.session.ready() {
            // A protocol with a handshake resets this once it is through.
            conn.connect_failures = 0;
        }
        self.stats.connects_total += 1;
        self.progress(slot, now_ns);
    }

    fn on_recv(&mut self, slot: usize, result: i32) {
        let now_ns = self.now_ns();
        let conn = &mut self.conns[slot];
        conn.recv_in_flight = false;
        if conn.state == ConnState::Closing {
            self.release_if_idle(slot, now_ns);
            return;
        }
        match result {
            n if n > 0 => {
                conn.session.on_received(n as usize);
                if !self.read_responses(slot, now_ns) {
                    return;
                }
            }
            0 => {
                // The server closed. Between requests that is its right; with
                // requests unanswered, or a handshake unfinished, it cost
                // them.
                let cost = conn.in_flight_count() > 0
                    || conn.session.mid_response()
                    || !conn.session.ready();
                self.close(slot, cost.then_some(Failure::Eof), now_ns);
                return;
            }
            err if is_transient_errno(-err) => {}
            err => {
                self.close(slot, Some(failure_of(-err)), now_ns);
                return;
            }
        }
        self.progress(slot, now_ns);
    }

    /// Records every complete response; false when the connection had to
    /// close.
    fn read_responses(&mut self, slot: usize, now_ns: u64) -> bool {
        loop {
            let conn = &mut self.conns[slot];
            match self.protocol.next_answer(&mut conn.session) {
                Ok(Some(answer)) => {
                    let latency_ns = now_ns.saturating_sub(answer.request.origin_ns);
                    self.stats.record_response(answer.status, latency_ns);
                    self.stats.denied_total += u64::from(answer.denied);
                    if answer.close {
                        // Requests pipelined behind this one will not be
                        // answered on this connection.
                        let cost = conn.in_flight_count() > 0;
                        self.close(slot, cost.then_some(Failure::Eof), now_ns);
                        return false;
                    }
                }
                Ok(None) => {
                    if conn.session.ready() {
                        conn.connect_failures = 0;
                    }
                    return true;
                }
                Err(failure) => {
                    if failure == Failure::Refused {
                        // Back off as from a failed connect: a server that
                        // refuses will refuse again.
                        conn.connect_failures += 1;
                    }
                    self.close(slot, Some(failure), now_ns);
                    return false;
                }
            }
        }
    }

    fn on_send(&mut self, slot: usize, result: i32) {
        let now_ns = self.now_ns();
        let conn = &mut self.conns[slot];
        conn.send_in_flight = false;
        if conn.state == ConnState::Closing {
            self.release_if_idle(slot, now_ns);
            return;
        }
        match result {
            n if n > 0 => conn.on_sent(n as usize),
            err if err < 0 && is_transient_errno(-err) => {}
            err if err < 0 => {
                self.close(slot, Some(failure_of(-err)), now_ns);
                return;
            }
            _ => {
                self.close(slot, Some(Failure::Io), now_ns);
                return;
            }
        }
        self.start_send(slot);
    }

    /// Opens a new socket in an idle slot and starts connecting it.
    fn connect(&mut self, slot: usize, now_ns: u64) {
        let conn = &mut self.conns[slot];
        assert!(matches!(conn.state, ConnState::Idle { .. }));
        let target = &self.targets[conn.target];
        let fd = match socket::tcp_socket(target.addr) {
            Ok(fd) => fd,
            Err(_) => {
                // Out of descriptors or memory: count it and try later.
                self.stats.errors.connect += 1;
                conn.connect_failures += 1;
                conn.state = ConnState::Idle {
                    at_ns: now_ns + backoff_ns(conn.connect_failures),
                };
                return;
            }
        };
        let generation = conn.generation;
        let entries = [
            opcode::Connect::new(
                types::Fd(fd.as_raw_fd()),
                (&raw const target.sockaddr.0).cast(),
                target.sockaddr.1,
            )
            .build()
            .flags(squeue::Flags::IO_LINK)
            .user_data(token(Op::Connect, slot, generation)),
            opcode::LinkTimeout::new(&*self.connect_timeout)
                .build()
                .user_data(token(Op::Aux, slot, 0)),
        ];
        conn.fd = Some(fd);
        conn.state = ConnState::Connecting { since_ns: now_ns };
        conn.connect_in_flight = true;
        // SAFETY: the sockaddr and the timespec are boxed in the worker and
        // outlive the ring's use of them (targets are never dropped or
        // replaced while the worker runs).
        unsafe { push(&mut self.ring, &entries) };
    }

    fn start_send(&mut self, slot: usize) {
        let conn = &mut self.conns[slot];
        let generation = conn.generation;
        let Some(bytes) = conn.next_send() else {
            return;
        };
        let len = u32::try_from(bytes.len()).expect("send buffers are bounded by the pipeline");
        let ptr = bytes.as_ptr();
        let entry = opcode::Send::new(types::Fd(conn.raw_fd()), ptr, len)
            .flags(libc::MSG_NOSIGNAL)
            .build()
            .user_data(token(Op::Send, slot, generation));
        conn.send_in_flight = true;
        // SAFETY: the bytes belong to the connection's send buffer, which is
        // neither moved nor freed while `send_in_flight` is set.
        unsafe { push(&mut self.ring, &[entry]) };
    }

    fn start_recv(&mut self, slot: usize) {
        let conn = &mut self.conns[slot];
        if conn.state != ConnState::Open || conn.recv_in_flight {
            return;
        }
        let generation = conn.generation;
        let fd = conn.raw_fd();
        let window = conn.session.recv_window();
        assert!(!window.is_empty(), "parsing leaves room to receive");
        let len = u32::try_from(window.len()).expect("receive buffers are bounded at 64 KiB");
        let entry = opcode::Recv::new(types::Fd(fd), window.as_mut_ptr(), len)
            .build()
            .user_data(token(Op::Recv, slot, generation));
        conn.recv_in_flight = true;
        // SAFETY: the window belongs to the connection's receive buffer,
        // which is neither moved nor freed while `recv_in_flight` is set.
        unsafe { push(&mut self.ring, &[entry]) };
    }

    /// Starts tearing a connection down, charging `failure` to the requests
    /// it leaves unanswered; the slot goes idle once the kernel has returned
    /// every operation on it.
    fn close(&mut self, slot: usize, failure: Option<Failure>, now_ns: u64) {
        let conn = &mut self.conns[slot];
        let lost = conn.abandon_in_flight();
        if let Some(kind) = failure {
            // A failure costs the requests it left unanswered, and counts
            // once even when there were none.
            self.stats.errors.add(kind, lost.max(1));
        } else if !self.finishing {
            assert_eq!(lost, 0, "a clean close leaves no request unanswered");
        }
        match conn.state {
            ConnState::Open => {
                // Shutting the socket down completes the in-flight receive
                // and send instead of leaving them waiting on the server. An
                // error means the socket is already dead, which is the goal.
                // SAFETY: plain syscall on a descriptor the connection owns.
                unsafe { libc::shutdown(conn.raw_fd(), libc::SHUT_RDWR) };
            }
            ConnState::Connecting { .. } if conn.connect_in_flight => {
                let target = token(Op::Connect, slot, conn.generation);
                let cancel =
                    opcode::AsyncCancel::new(target)
                        .build()
                        .user_data(token(Op::Aux, slot, 0));
                // SAFETY: a cancel points at no memory of ours.
                unsafe { push(&mut self.ring, &[cancel]) };
            }
            ConnState::Closing | ConnState::Idle { .. } => return,
            ConnState::Connecting { .. } => {}
        }
        conn.state = ConnState::Closing;
        self.release_if_idle(slot, now_ns);
    }

    /// Frees a closing slot once nothing of it is with the kernel, and
    /// reconnects it at once unless the last connects failed.
    fn release_if_idle(&mut self, slot: usize, now_ns: u64) {
        let conn = &mut self.conns[slot];
        assert_eq!(conn.state, ConnState::Closing);
        if !conn.idle_in_kernel() {
            return;
        }
        let at_ns = now_ns + backoff_ns(conn.connect_failures);
        // Dropping the descriptor closes the socket.
        conn.reset(at_ns);
        if at_ns <= now_ns && !self.finishing && now_ns < self.deadline_ns {
            self.connect(slot, now_ns);
        }
    }

    /// Ends the run: shuts every connection down, waits (boundedly) for the
    /// kernel to let go of their buffers, and hands back the statistics.
    fn finish(mut self) -> io::Result<Stats> {
        self.finishing = true;
        let now_ns = self.now_ns();
        if self.schedule.is_some() {
            self.stats.unsent_total = self.conns.iter().map(|c| c.due - c.issued).sum();
        }
        for slot in 0..self.conns.len() {
            // Requests still unanswered when time is up are neither answers
            // nor errors: they are simply outside the run.
            self.close(slot, None, now_ns);
        }
        let give_up_ns = now_ns + FINISH_GRACE_NS;
        while self.conns.iter().any(|conn| !conn.idle_in_kernel()) {
            let now_ns = self.now_ns();
            if now_ns >= give_up_ns {
                eprintln!(
                    "loadgen: some connections did not close within {} ms; leaving them",
                    FINISH_GRACE_NS / 1_000_000
                );
                // The kernel may still write into these buffers: they must
                // never be freed.
                std::mem::forget(std::mem::take(&mut self.conns));
                break;
            }
            self.enter((give_up_ns - now_ns).min(HOUSEKEEPING_NS))?;
            self.drain_completions();
        }
        Ok(self.stats)
    }
}

fn duration_ns(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// The wait before the next connect after `failures` failed ones in a row.
fn backoff_ns(failures: u32) -> u64 {
    match failures {
        0 => 0,
        n => RECONNECT_BACKOFF_NS
            .saturating_mul(1 << (n - 1).min(20))
            .min(RECONNECT_BACKOFF_MAX_NS),
    }
}

/// How a socket error is counted.
fn failure_of(errno: i32) -> Failure {
    match errno {
        libc::ECONNRESET | libc::EPIPE | libc::ECONNABORTED => Failure::Reset,
        _ => Failure::Io,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        assert_eq!(backoff_ns(0), 0);
        assert_eq!(backoff_ns(1), RECONNECT_BACKOFF_NS);
        assert_eq!(backoff_ns(2), 2 * RECONNECT_BACKOFF_NS);
        assert_eq!(backoff_ns(40), RECONNECT_BACKOFF_MAX_NS);
    }
}
