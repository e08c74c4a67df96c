//! One WebSocket worker thread: its ring, its rooms and every client in
//! them, its own statistics. Rooms are never split between workers, so a
//! message's deliveries are all seen by the thread that sent it.
//!
//! The phases of a run, as one worker goes through them:
//! 1. Connect: clients are started a batch at a time (at most
//!    `CONNECTS_IN_FLIGHT_MAX` under way); each connects, sends its upgrade
//!    request, reads the 101 and waits for its own join message. A client
//!    that fails, or is not joined within `--timeout`, is counted and left
//!    out.
//! 2. Wait: the worker says it is ready and keeps its clients served
//!    (pings answered) until every worker is; the last one sets the start
//!    of the measured phase for all.
//! 3. Measure, for `--duration`: senders send (see [`super::traffic`]),
//!    deliveries are timed.
//! 4. Finish: every client sends a close frame and waits, boundedly, for
//!    the server's.
//!
//! Every submission's `user_data` names the operation and the client's
//! slot. A slot is never reused, so a completion always finds its client.

use std::io;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use io_uring::{types, IoUring};

use super::client::{Client, ClientState};
use super::frame;
use super::plan::{Senders, WsRun};
use super::pool::{BufferPool, POOL_BUFFERS};
use super::stats::WsStats;
use crate::ring::build_ring;
use crate::rng::Rng;
use crate::schedule::Schedule;
use crate::socket;

/// Connects (with their handshakes and joins) one worker has under way at
/// once, so that a large run does not overflow the server's accept queue.
pub const CONNECTS_IN_FLIGHT_MAX: usize = 512;
/// How often timeouts are checked.
pub(super) const HOUSEKEEPING_NS: u64 = 10_000_000;
/// How long a worker that is ready waits between looks at the others.
const WAIT_POLL_NS: u64 = 1_000_000;
/// How long the end of the run waits for the servers' close frames and
/// for the kernel to return every operation.
const FINISH_GRACE_NS: u64 = 5_000_000_000;
/// The slot named by the pool's provide-buffer submissions.
pub(super) const POOL_SLOT: usize = u32::MAX as usize;
/// Completions copied out of the ring per pass.
pub(super) const COMPLETION_BATCH: usize = 256;
/// Not yet set: the measured phase has not started.
const NOT_STARTED: u64 = u64::MAX;

/// What the workers of a run share: the clock and the start line.
#[derive(Debug)]
pub struct Shared {
    /// Every time in the run counts from here, so that a message's send
    /// time means the same on every thread.
    pub epoch: Instant,
    pub threads: usize,
    /// Workers whose connect phase is over.
    pub ready_workers: AtomicUsize,
    /// When the measured phase starts, in ns since `epoch`.
    pub measure_start_ns: AtomicU64,
}

impl Shared {
    pub fn new(threads: usize) -> Shared {
        Shared {
            epoch: Instant::now(),
            threads,
            ready_workers: AtomicUsize::new(0),
            measure_start_ns: AtomicU64::new(NOT_STARTED),
        }
    }

    pub fn now_ns(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// The start of the measured phase, once set.
    pub fn measure_start(&self) -> Option<u64> {
        match self.measure_start_ns.load(Ordering::Acquire) {
            NOT_STARTED => None,
            start => Some(start),
        }
    }
}

/// Counters the main thread reads for the progress line, one cache line
/// per worker.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct LiveCounters {
    pub joined: AtomicU64,
    pub messages: AtomicU64,
    pub deliveries: AtomicU64,
    pub errors: AtomicU64,
}

/// One room as its worker holds it.
pub(super) struct Room {
    /// The room's index in the run, which names it.
    pub global: usize,
    /// The worker's slot of its first client; the rest follow.
    pub first_slot: usize,
    /// Clients in the room now: joined and not down.
    pub members: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    Connect,
    Measure,
    Finish,
}

/// A worker's state; it lives on, and must only be used from, the thread
/// that created it (the ring is set up single-issuer).
pub struct Worker {
    pub(super) ring: IoUring,
    pub(super) pool: BufferPool,
    pub(super) clients: Vec<Client>,
    pub(super) rooms: Vec<Room>,
    /// Slots of the clients that send, in order of their global sender
    /// index, which is the open-loop schedule's order.
    pub(super) senders: Vec<usize>,
    pub(super) schedule: Option<Schedule>,
    pub(super) run: Arc<WsRun>,
    pub(super) shared: Arc<Shared>,
    pub(super) live: Arc<LiveCounters>,
    pub(super) stats: WsStats,
    pub(super) rng: Rng,
    pub(super) phase: Phase,
    pub(super) measure_start_ns: u64,
    pub(super) timeout_ns: u64,
    /// Slots whose receive found the pool empty, to arm again.
    pub(super) starved: Vec<usize>,
    /// The next client to start in the connect phase.
    pub(super) next_to_start: usize,
    pub(super) connecting_now: usize,
    /// The kernel reads these while a connect is in flight.
    pub(super) sockaddr: Box<(libc::sockaddr_storage, libc::socklen_t)>,
    pub(super) connect_timeout: Box<types::Timespec>,
    /// Reused to build each upgrade request's path and message's text.
    pub(super) scratch: Vec<u8>,
    pub(super) completions: Vec<(u64, i32, u32)>,
}

impl Worker {
    /// Sets up the ring, the pool and the clients of `rooms` (global room
    /// indices, ascending); call on the worker's own thread.
    pub fn new(
        run: Arc<WsRun>,
        rooms: &[usize],
        shared: Arc<Shared>,
        live: Arc<LiveCounters>,
        index: usize,
    ) -> io::Result<Worker> {
        assert!(!rooms.is_empty(), "a worker holds at least one room");
        let per_room = run.clients_per_room;
        let mut clients = Vec::with_capacity(rooms.len() * per_room);
        let mut senders = Vec::new();
        let mut sender_globals = Vec::new();
        let mut worker_rooms = Vec::with_capacity(rooms.len());
        for (local, &room) in rooms.iter().enumerate() {
            worker_rooms.push(Room {
                global: room,
                first_slot: clients.len(),
                members: 0,
            });
            for i in 0..per_room {
                let global = (room * per_room + i) as u64;
                let sender = match run.senders {
                    Senders::All => Some(global),
                    Senders::One => (i == 0).then_some(room as u64),
                    Senders::None => None,
                };
                if let Some(sender_global) = sender {
                    senders.push(clients.len());
                    sender_globals.push(sender_global);
                }
                clients.push(Client::new(global, local, sender.is_some()));
            }
        }
        let schedule = match (run.rate, sender_globals.is_empty()) {
            (Some(rate), false) => Some(Schedule::new(
                rate,
                run.senders_total() as u64,
                sender_globals,
            )),
            _ => None,
        };
        // A receive per client, a send for some, connects with their
        // timeouts, cancels and the pool's returns.
        let cq_entries = (2 * clients.len() + 3 * CONNECTS_IN_FLIGHT_MAX + 1024)
            .next_power_of_two()
            .min(crate::ring::CQ_ENTRIES_MAX);
        let timeout = run.timeout;
        let mut worker = Worker {
            ring: build_ring(cq_entries as u32)?,
            pool: BufferPool::new(),
            clients,
            rooms: worker_rooms,
            senders,
            schedule,
            sockaddr: Box::new(socket::to_sockaddr(run.addr)),
            connect_timeout: Box::new(
                types::Timespec::new()
                    .sec(timeout.as_secs())
                    .nsec(timeout.subsec_nanos()),
            ),
            timeout_ns: duration_ns(timeout),
            run,
            shared,
            live,
            stats: WsStats::new(),
            rng: Rng::new(crate::cli::time_seed(), index as u64),
            phase: Phase::Connect,
            measure_start_ns: 0,
            starved: Vec::new(),
            next_to_start: 0,
            connecting_now: 0,
            scratch: Vec::with_capacity(256),
            completions: Vec::with_capacity(COMPLETION_BATCH),
        };
        worker.provide_buffers(0, POOL_BUFFERS);
        Ok(worker)
    }

    /// Runs the phases and returns what was measured. A failure of the
    /// ring itself ends the run; the buffers are then leaked, since the
    /// kernel may still hold pointers into them.
    pub fn run(mut self) -> io::Result<WsStats> {
        let result = self.run_phases();
        if result.is_err() {
            std::mem::forget(std::mem::take(&mut self.clients));
            std::mem::forget(std::mem::take(&mut self.pool));
        }
        result.map(|()| self.stats)
    }

    fn run_phases(&mut self) -> io::Result<()> {
        self.connect_phase()?;
        self.wait_for_the_others()?;
        self.measure()?;
        self.finish()
    }

    pub(super) fn now_ns(&self) -> u64 {
        self.shared.now_ns()
    }

    fn connect_phase(&mut self) -> io::Result<()> {
        let deadline_ns = self.now_ns() + duration_ns(self.run.connect_timeout);
        loop {
            let now_ns = self.now_ns();
            self.start_clients(now_ns);
            self.expire_connects(now_ns, now_ns >= deadline_ns);
            if self.next_to_start == self.clients.len() && self.connecting_now == 0 {
                return Ok(());
            }
            self.turn(HOUSEKEEPING_NS)?;
        }
    }

    /// Starts clients until `CONNECTS_IN_FLIGHT_MAX` are under way.
    fn start_clients(&mut self, now_ns: u64) {
        while self.connecting_now < CONNECTS_IN_FLIGHT_MAX
            && self.next_to_start < self.clients.len()
        {
            let slot = self.next_to_start;
            self.next_to_start += 1;
            self.connecting_now += 1;
            self.clients[slot].connecting = true;
            self.clients[slot].started_ns = now_ns;
            self.connect(slot);
        }
    }

    /// Gives up on clients not joined within `--timeout`, or on all that
    /// are not joined when the connect phase is over.
    fn expire_connects(&mut self, now_ns: u64, phase_over: bool) {
        for slot in 0..self.next_to_start {
            let client = &self.clients[slot];
            let late = now_ns.saturating_sub(client.started_ns) >= self.timeout_ns;
            if client.connecting && (late || phase_over) {
                self.stats.errors.timeout += 1;
                self.shut(slot);
            }
        }
    }

    /// The client's own join arrived: it is in its room.
    pub(super) fn on_joined(&mut self, slot: usize) {
        let now_ns = self.now_ns();
        let client = &mut self.clients[slot];
        if client.joined || client.state != ClientState::Open {
            return;
        }
        client.joined = true;
        self.rooms[client.room].members += 1;
        self.stats.record_join(now_ns - client.started_ns);
        self.live
            .joined
            .store(self.stats.joined_total, Ordering::Relaxed);
        self.settle(slot);
    }

    /// The client is out of the connect phase, joined or not.
    pub(super) fn settle(&mut self, slot: usize) {
        let client = &mut self.clients[slot];
        if client.connecting {
            client.connecting = false;
            self.connecting_now -= 1;
        }
    }

    /// Keeps the clients served until every worker is through its connect
    /// phase; the last one through starts the measured phase for all.
    fn wait_for_the_others(&mut self) -> io::Result<()> {
        let ready = self.shared.ready_workers.fetch_add(1, Ordering::AcqRel) + 1;
        if ready == self.shared.threads {
            let start_ns = self.now_ns();
            self.shared
                .measure_start_ns
                .store(start_ns, Ordering::Release);
        }
        loop {
            if let Some(start_ns) = self.shared.measure_start() {
                self.measure_start_ns = start_ns;
                self.stats.connect_phase_ns = start_ns;
                return Ok(());
            }
            self.turn(WAIT_POLL_NS)?;
        }
    }

    fn measure(&mut self) -> io::Result<()> {
        self.phase = Phase::Measure;
        let deadline_ns = self.measure_start_ns + duration_ns(self.run.duration);
        self.start_senders();
        let mut next_housekeeping_ns = 0;
        let mut now_ns = self.now_ns();
        while now_ns < deadline_ns {
            self.release_due(now_ns);
            if now_ns >= next_housekeeping_ns {
                self.expire_messages(now_ns);
                next_housekeeping_ns = now_ns + HOUSEKEEPING_NS;
            }
            let mut wake_ns = deadline_ns.min(next_housekeeping_ns);
            if let Some(schedule) = &self.schedule {
                wake_ns = wake_ns.min(self.measure_start_ns + schedule.next_due_ns());
            }
            self.turn(wake_ns.saturating_sub(now_ns))?;
            now_ns = self.now_ns();
        }
        self.stats.elapsed_ns = now_ns - self.measure_start_ns;
        if self.schedule.is_some() {
            self.stats.unsent_total = self
                .senders
                .iter()
                .map(|&slot| self.clients[slot].due - self.clients[slot].seq)
                .sum();
        }
        Ok(())
    }

    pub(super) fn publish(&self) {
        let live = &self.live;
        live.messages
            .store(self.stats.messages_total, Ordering::Relaxed);
        live.deliveries
            .store(self.stats.deliveries_total, Ordering::Relaxed);
        live.errors
            .store(self.stats.errors_total(), Ordering::Relaxed);
    }

    /// Ends the run: every open client says goodbye with a close frame;
    /// clients are shut once the server answers, or when the grace is up.
    fn finish(&mut self) -> io::Result<()> {
        self.phase = Phase::Finish;
        for slot in 0..self.clients.len() {
            let client = &self.clients[slot];
            match client.state {
                // The server closed this one first; its reply is on the way.
                ClientState::Open if client.shut_when_sent => {}
                ClientState::Open => {
                    let mask = self.mask();
                    let client = &mut self.clients[slot];
                    frame::write_close(client.pending(), 1000, mask);
                    client.state = ClientState::Closing;
                    self.start_send(slot);
                }
                ClientState::Down | ClientState::Closing => {}
                _ => self.shut(slot),
            }
        }
        let give_up_ns = self.now_ns() + FINISH_GRACE_NS;
        loop {
            let closing = self.clients.iter().any(|c| c.state == ClientState::Closing);
            let busy = self
                .clients
                .iter()
                .any(|c| c.state != ClientState::Down || !c.idle_in_kernel());
            if !busy {
                return Ok(());
            }
            let now_ns = self.now_ns();
            if now_ns >= give_up_ns || !closing {
                return self.abandon_at_the_end();
            }
            self.turn((give_up_ns - now_ns).min(HOUSEKEEPING_NS))?;
        }
    }

    /// The grace is up: clients still closing never heard back, and any
    /// other still up is shut too.
    fn abandon_at_the_end(&mut self) -> io::Result<()> {
        for slot in 0..self.clients.len() {
            if self.clients[slot].state == ClientState::Closing {
                self.stats.errors.close_unanswered += 1;
            }
            self.shut(slot);
        }
        let give_up_ns = self.now_ns() + FINISH_GRACE_NS;
        while self.clients.iter().any(|c| !c.idle_in_kernel()) {
            let now_ns = self.now_ns();
            if now_ns >= give_up_ns {
                eprintln!("loadgen: some connections did not close in time; leaving them");
                // The kernel may still write into these buffers: they must
                // never be freed.
                std::mem::forget(std::mem::take(&mut self.clients));
                std::mem::forget(std::mem::take(&mut self.pool));
                return Ok(());
            }
            self.turn((give_up_ns - now_ns).min(HOUSEKEEPING_NS))?;
        }
        Ok(())
    }

    /// A fresh masking key for one frame.
    pub(super) fn mask(&mut self) -> [u8; 4] {
        (self.rng.next_u64() as u32).to_ne_bytes()
    }
}

pub(super) fn duration_ns(duration: std::time::Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}
