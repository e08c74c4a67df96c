//! A shard: one pinned thread, one io_uring ring, one store, its objects.
//!
//! # The flow of one request
//!
//! 1. The kernel hands an accepted connection to whichever shard's
//!    `SO_REUSEPORT` listener it chose; the shard arms a receive on it.
//! 2. Bytes arrive ([`Shard::on_recv`]). The shard parses every complete
//!    request in the buffer, in order ([`http`]).
//! 3. For each request it computes the object's ID from the class and the
//!    name in the path, and the owning shard from the ID.
//!    - Owned here: the object runs at once ([`objects`]). Its response is
//!      written to the connection's output, held behind the output gate if
//!      the object has a write that is not yet durable.
//!    - Owned elsewhere: the raw request goes to the owner through the
//!      pair's queue ([`crate::mesh`]); the connection parses nothing more
//!      until the reply is back, so responses stay in order. The owner runs
//!      the object, holds the reply until its write is durable, and sends
//!      it back.
//! 4. At the end of the loop turn the turn's writes become one group: its
//!    log record is written and `fdatasync`ed through the same ring (if the
//!    previous group's sync is done; else the group keeps filling). The
//!    mesh wakes peers it sent to, and every connection with sendable
//!    output gets a send.
//! 5. When the sync completes, held output up to that group's sequence
//!    number is released, and the applier thread moves the group into
//!    fjall.
//!
//! The loop blocks in `io_uring_enter` until a completion, the next timer,
//! or a wake-up through the shard's eventfd (from a peer shard or the
//! applier) ends the wait.
//!
//! # One turn of the loop ([`Shard::run_loop`])
//!
//! 1. Read the clock (monotonic for timers, wall for objects).
//! 2. Handle every completion the ring has: accepts, receives (HTTP, RPC
//!    and WebSocket input is parsed and served here), sends, the log's
//!    writes and syncs (a durable group releases the output it held).
//! 3. Drain the mesh: requests other shards forwarded, replies to ours,
//!    calls between objects, connections handed over; then the work this
//!    shard queued for its own objects.
//! 4. Take the applier's answers (applied groups leave the overlay).
//! 5. Fire due timers: connection deadlines, the idle-object sweep, alarms,
//!    overdue calls, accepts paused for want of descriptors.
//! 6. Close the turn's writes into a group and submit its log record.
//! 7. Service every connection touched this turn: write the sendable
//!    output, close or re-arm it ([`conns`]).
//! 8. Wake the peers this turn sent to, publish metrics, and wait.
//!
//! Every operation for the kernel is an [`io::Op`], submitted in one place
//! ([`io`]); the parts decide what to do and return what happened.

/// What an event runs with, borrowed field by field so that the object
/// table can be borrowed beside it.
macro_rules! event_env {
    ($shard:ident) => {
        $crate::shard::objects::EventEnv {
            registry: &$shard.registry,
            store: &mut $shard.store,
            now_ms: $shard.wall_ms,
            effects: &mut $shard.effects,
            sockets: &mut $shard.sockets,
            upgrade: &mut $shard.upgrade,
        }
    };
}

mod alarms;
mod calls;
mod conns;
mod http;
mod io;
pub mod objects;
mod routing;
mod rpc;
mod stop;
mod websocket;

use std::collections::VecDeque;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use durin_net::http::Limits;
use durin_net::ring::Completion;
use durin_net::Ring;
use durin_storage::{Layout, Seq, ShardStore, StoreOptions, WalProgress, WalWrite};

use crate::config::ServerConfig;
use crate::mesh::{Mesh, MeshMsg, ShardWaker};
use crate::metrics::{self, ShardMetrics};
use crate::object::Response;
use crate::registry::Registry;
use crate::timer::TimerWheel;
use objects::Objects;

/// Submission and completion kinds, in the top byte of a token.
mod kind {
    pub const ACCEPT: u8 = 1;
    pub const RECV: u8 = 2;
    pub const SEND: u8 = 3;
    pub const WAKE: u8 = 4;
    pub const CANCEL: u8 = 5;
    pub const CLOSE: u8 = 6;
    pub const REJECT: u8 = 7;
    pub const WAL_WRITE: u8 = 8;
    pub const WAL_SYNC: u8 = 9;
    pub const WS_RECV: u8 = 10;
}

/// Ring size: submissions per batch before an early submit.
const RING_ENTRIES: u32 = 4096;
/// How often idle objects are looked for.
const SWEEP_INTERVAL_MS: u64 = 250;
/// Timer wheel: 4 ms ticks, 1024 slots (about 4 s of near window).
const TIMER_TICK_MS: u64 = 4;
const TIMER_SLOTS: usize = 1024;

/// Everything a shard thread needs to start.
pub struct ShardSetup {
    pub index: u32,
    pub shards: u32,
    pub cpu: Option<usize>,
    pub server: ServerConfig,
    /// The HTTP listener, then (if RPC is on) the shared RPC listener and
    /// this shard's own RPC listener.
    pub listeners: Vec<OwnedFd>,
    pub rpc_shard_base_port: Option<u16>,
    pub layout: Layout,
    pub store_options: StoreOptions,
    /// Every partition, opened once by the server.
    pub partitions: Arc<durin_storage::OpenPartitions>,
    pub registry: Arc<Registry>,
    pub routes: Arc<Vec<crate::registry::RouteEntry>>,
    pub metrics: Arc<ShardMetrics>,
    pub all_metrics: Arc<Vec<Arc<ShardMetrics>>>,
    pub waker: Arc<ShardWaker>,
    /// Set when the server is asked to stop.
    pub stopping: Arc<std::sync::atomic::AtomicBool>,
    pub mesh: Mesh,
}

/// What a timer entry is for.
#[derive(Clone, Copy, Debug)]
enum Timer {
    Conn {
        index: u32,
        generation: u32,
    },
    Sweep,
    AlarmScan,
    Alarm {
        id: crate::ObjectId,
        at_ms: u64,
    },
    /// Time to fail the calls whose replies are overdue.
    CallSweep,
    /// Time to accept again on a listener paused for want of descriptors.
    AcceptResume {
        listener: u32,
    },
}

/// What the shard needs to speak binary RPC.
struct RpcSettings {
    frame_bytes_max: usize,
    shard_base_port: Option<u16>,
}

/// One shard. Owned by, and only ever touched from, its own thread.
pub struct Shard {
    index: u32,
    shards: u32,
    ring: Ring,
    listeners: Vec<OwnedFd>,
    rpc: RpcSettings,
    /// Reused for an RPC handler's result and its response frame.
    rpc_out: Vec<u8>,
    rpc_reply: Vec<u8>,
    conns: conns::ConnTable,
    store: ShardStore,
    objects: Objects,
    registry: Arc<Registry>,
    routes: Arc<Vec<crate::registry::RouteEntry>>,
    mesh: Mesh,
    waker: Arc<ShardWaker>,
    stopping: Arc<std::sync::atomic::AtomicBool>,
    /// When this shard ends at the latest, once it is stopping (ms on its
    /// monotonic clock).
    stop_by_ms: Option<u64>,
    timers: TimerWheel<Timer>,
    server: ServerConfig,
    limits: Limits,
    metrics: Arc<ShardMetrics>,
    all_metrics: Arc<Vec<Arc<ShardMetrics>>>,
    /// Reused for every object response.
    res: Response,
    /// Reused for percent-decoding object names.
    name_buf: Vec<u8>,
    completions: Vec<Completion>,
    inbound: Vec<MeshMsg>,
    fired: Vec<Timer>,
    /// Connections to look at before the turn ends (send, close, re-arm).
    dirty: Vec<u32>,
    /// Connections whose output waits behind the gate.
    gated: Vec<u32>,
    /// What may leave once its sequence number is durable, in order.
    held: VecDeque<(Seq, calls::Delivery)>,
    /// Work for this shard's own objects, done next turn.
    local_work: VecDeque<calls::LocalWork>,
    /// Calls objects made whose replies have not come back, by call ID:
    /// the caller's class and ID, and when the reply is overdue.
    pending_calls: std::collections::HashMap<u64, calls::PendingCall>,
    /// Responses objects deferred, by id: the object and where it goes.
    deferred: std::collections::HashMap<u64, (crate::ObjectId, calls::ReplyTarget)>,
    /// What the current event asked for besides storage.
    effects: crate::object::Effects,
    /// Every open WebSocket of this shard's objects.
    sockets: crate::object::websocket::Sockets,
    /// The upgrade request the current `fetch` may accept.
    upgrade: Option<crate::object::websocket::Upgrade>,
    /// What objects sent on WebSockets this turn.
    outbox: websocket::Outbox,
    ws_limits: durin_net::ws::Limits,
    /// Receive buffers of WebSocket connections (`None`: the kernel has no
    /// buffer rings; each connection then receives into its own buffer).
    recv_ring: Option<durin_net::BufRing>,
    /// Reused for received WebSocket bytes.
    ws_scratch: Vec<u8>,
    /// The eventfd read's target; boxed so its address is stable.
    wake_buf: Box<u64>,
    accept_armed: Vec<bool>,
    /// Accepting is paused on these listeners until their resume timer.
    accept_paused: Vec<bool>,
    /// The pause after the next failed accept for want of descriptors;
    /// doubles while accepts keep failing, back to the minimum once one
    /// succeeds (the end of the episode, which was logged once).
    accept_backoff_ms: u64,
    /// Alarms due before this (wall clock, ms) are in the timer wheel.
    alarms_scanned_until_ms: u64,
    started: Instant,
    /// Milliseconds since the shard started (monotonic), for timers.
    mono_ms: u64,
    /// Milliseconds since the Unix epoch, for objects.
    wall_ms: u64,
    /// Run after the object table shrank (see `StoreOptions::idle_hook`):
    /// the evicted objects were freed on this thread, and the allocator
    /// returns their pages sooner when asked.
    idle_hook: Option<fn()>,
}

/// Runs shard `setup.index` until the process ends. `ready` is called once
/// the shard serves.
pub fn run(setup: ShardSetup, ready: impl FnOnce(Result<(), String>)) {
    if let Some(cpu) = setup.cpu {
        if let Err(e) = pin_to_cpu(cpu) {
            ready(Err(format!(
                "shard {}: cannot pin to CPU {cpu}: {e}",
                setup.index
            )));
            return;
        }
    }
    let mut shard = match Shard::new(setup) {
        Ok(shard) => shard,
        Err(e) => {
            ready(Err(e));
            return;
        }
    };
    if let Err(e) = shard.arm_initial() {
        ready(Err(format!("shard {}: {e}", shard.index)));
        return;
    }
    ready(Ok(()));
    if let Err(e) = shard.run_loop() {
        // Losing a shard's loop or its store loses availability of its
        // objects; durin stops rather than serve part of the key space or
        // acknowledge writes it could not persist.
        eprintln!("durin: shard {} stopped: {e}", shard.index);
        std::process::exit(crate::server::EXIT_SHARD_STOPPED);
    }
    log::info!("shard {} stopped", shard.index);
}

/// Why the loop stopped, for the one line printed before the process
/// exits. The log's completions carry the store's error inside an
/// `io::Error`.
fn describe_loop_failure(e: &std::io::Error) -> String {
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<durin_storage::Error>())
    {
        Some(storage) => describe_storage_failure(storage),
        None => format!("ring: {e}"),
    }
}

/// A full disk is said plainly: it is the one storage failure an operator
/// fixes without looking further.
fn describe_storage_failure(e: &durin_storage::Error) -> String {
    if e.is_disk_full() {
        format!("storage: the disk is full: {e}")
    } else {
        format!("storage: {e}")
    }
}

fn pin_to_cpu(cpu: usize) -> std::io::Result<()> {
    // SAFETY: a zeroed cpu_set_t is an empty set; CPU_SET writes within it
    // for any cpu below CPU_SETSIZE, which the CLI checks.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

impl Shard {
    fn new(setup: ShardSetup) -> Result<Shard, String> {
        let index = setup.index;
        let ring =
            Ring::new(RING_ENTRIES).map_err(|e| format!("shard {index}: io_uring setup: {e}"))?;
        let committer_waker = Arc::clone(&setup.waker);
        let store = ShardStore::open_with(
            &setup.layout,
            index,
            setup.shards,
            setup.store_options.clone(),
            Box::new(move || committer_waker.wake()),
            &setup.partitions,
        )
        .map_err(|e| format!("shard {index}: opening {}", describe_storage_failure(&e)))?;
        let limits = Limits {
            header_bytes_max: setup.server.header_bytes_max,
            body_bytes_max: setup.server.body_bytes_max,
        };
        let started = Instant::now();
        // DURIN_WS_PLAIN_RECV=1 takes the path of a kernel without buffer
        // rings, so that tests cover it.
        let plain = std::env::var_os("DURIN_WS_PLAIN_RECV").is_some_and(|v| v == "1");
        let registered = if plain {
            Err(std::io::Error::other("DURIN_WS_PLAIN_RECV=1"))
        } else {
            durin_net::BufRing::register(
                &ring,
                0,
                websocket::RECV_RING_ENTRIES,
                websocket::RECV_RING_BUF_BYTES,
            )
        };
        let recv_ring = match registered {
            Ok(r) => Some(r),
            Err(e) => {
                log::warn!("shard {index}: no buffer ring ({e}); WebSockets receive into buffers of their own");
                None
            }
        };
        let ws_limits = durin_net::ws::Limits {
            message_bytes_max: setup.server.websocket_message_bytes_max,
        };
        Ok(Shard {
            sockets: Default::default(),
            upgrade: None,
            outbox: Default::default(),
            ws_limits,
            recv_ring,
            ws_scratch: Vec::new(),
            routes: setup.routes,
            index,
            shards: setup.shards,
            ring,
            rpc: RpcSettings {
                frame_bytes_max: setup.server.rpc_frame_bytes_max,
                shard_base_port: setup.rpc_shard_base_port,
            },
            rpc_out: Vec::new(),
            rpc_reply: Vec::new(),
            accept_armed: vec![false; setup.listeners.len()],
            accept_paused: vec![false; setup.listeners.len()],
            accept_backoff_ms: conns::ACCEPT_BACKOFF_MS_MIN,
            listeners: setup.listeners,
            conns: conns::ConnTable::new(setup.server.connections_max_per_shard),
            store,
            objects: Objects::new(setup.server.sql_connections_max_per_shard),
            registry: setup.registry,
            mesh: setup.mesh,
            waker: setup.waker,
            stopping: setup.stopping,
            stop_by_ms: None,
            timers: TimerWheel::new(TIMER_TICK_MS, TIMER_SLOTS, 0),
            server: setup.server,
            limits,
            metrics: setup.metrics,
            all_metrics: setup.all_metrics,
            res: Response::default(),
            name_buf: Vec::new(),
            completions: Vec::with_capacity(1024),
            inbound: Vec::with_capacity(1024),
            fired: Vec::new(),
            dirty: Vec::new(),
            gated: Vec::new(),
            held: VecDeque::new(),
            local_work: VecDeque::new(),
            deferred: std::collections::HashMap::new(),
            pending_calls: std::collections::HashMap::new(),
            effects: crate::object::Effects::default(),
            wake_buf: Box::new(0),
            alarms_scanned_until_ms: 0,
            started,
            mono_ms: 0,
            wall_ms: wall_clock_ms(),
            idle_hook: setup.store_options.idle_hook,
        })
    }

    fn arm_initial(&mut self) -> std::io::Result<()> {
        for listener in 0..self.listeners.len() {
            self.arm_accept(listener as u32)?;
        }
        self.arm_wake()?;
        self.timers.insert(SWEEP_INTERVAL_MS, Timer::Sweep);
        self.timers
            .insert(calls::CALL_SWEEP_INTERVAL_MS, Timer::CallSweep);
        self.scan_alarms();
        self.timers
            .insert(alarms::ALARM_SCAN_INTERVAL_MS, Timer::AlarmScan);
        self.ring.submit()?;
        Ok(())
    }

    /// Arms a multishot accept on listener `listener` (0: HTTP, 1: the
    /// shared RPC port, 2: this shard's RPC port).
    fn arm_accept(&mut self, listener: u32) -> std::io::Result<()> {
        let fd = self.listeners[listener as usize].as_raw_fd();
        self.accept_armed[listener as usize] = true;
        // SAFETY: an accept points at no buffer.
        unsafe { self.submit(io::Op::Accept { fd, listener }) }
    }

    fn arm_wake(&mut self) -> std::io::Result<()> {
        let fd = self.waker.eventfd().raw();
        let buf: *mut u64 = &mut *self.wake_buf;
        // SAFETY: `wake_buf` is boxed, so its address is stable, and it
        // lives as long as the shard; only this read writes it.
        unsafe {
            self.submit(io::Op::ReadWake {
                fd,
                buf: buf.cast::<u8>(),
            })
        }
    }

    fn tick_clock(&mut self) {
        self.mono_ms = self.started.elapsed().as_millis() as u64;
        self.wall_ms = wall_clock_ms();
    }

    fn run_loop(&mut self) -> Result<(), String> {
        loop {
            self.tick_clock();
            metrics::add(&self.metrics.loop_turns_total, 1);
            let mut completions = std::mem::take(&mut self.completions);
            self.ring.drain_completions(&mut completions);
            for completion in completions.drain(..) {
                self.on_completion(completion)
                    .map_err(|e| describe_loop_failure(&e))?;
            }
            self.completions = completions;
            self.drain_mesh();
            self.store
                .poll_applier()
                .map_err(|e| describe_storage_failure(&e))?;
            self.fire_timers();
            if let Some(write) = self.store.flush() {
                self.submit_wal(write).map_err(|e| format!("ring: {e}"))?;
            }
            self.drain_if_stopping();
            self.service_dirty().map_err(|e| format!("ring: {e}"))?;
            self.mesh.flush();
            self.publish_metrics();
            if self.may_end() {
                return Ok(());
            }
            self.wait().map_err(|e| format!("ring: {e}"))?;
        }
    }

    /// Submits what the turn queued and blocks until there is work.
    fn wait(&mut self) -> std::io::Result<()> {
        if self.mesh.has_inbound()
            || self.store.applier_ready()
            || !self.local_work.is_empty()
            || !self.outbox.is_empty()
        {
            self.ring.submit()?;
            return Ok(());
        }
        self.waker.prepare_sleep();
        if self.mesh.has_inbound() || self.store.applier_ready() {
            self.waker.awake();
            self.ring.submit()?;
            return Ok(());
        }
        let mut timeout = self
            .timers
            .next_deadline()
            .map(|d| Duration::from_millis(d.saturating_sub(self.mono_ms)));
        if self.mesh.has_backlog() {
            // A peer's queue was full; nothing will wake us when it drains.
            timeout = Some(timeout.map_or(Duration::from_millis(1), |t| {
                t.min(Duration::from_millis(1))
            }));
        }
        metrics::add(&self.metrics.loop_sleeps_total, 1);
        let result = self.ring.submit_and_wait(timeout);
        self.waker.awake();
        result
    }

    fn on_completion(&mut self, c: Completion) -> std::io::Result<()> {
        match c.token.kind() {
            kind::ACCEPT => self.on_accept(c),
            kind::RECV => self.on_recv(c),
            kind::WS_RECV => self.on_ws_recv(c),
            kind::SEND => self.on_send(c),
            kind::WAKE => self.arm_wake(),
            kind::WAL_WRITE => {
                let seq = self.store.seq_in_flight(c.token.index());
                self.store
                    .on_wal_write(seq, c.result)
                    .map_err(std::io::Error::other)
            }
            kind::WAL_SYNC => {
                let seq = self.store.seq_in_flight(c.token.index());
                match self
                    .store
                    .on_wal_sync(seq, c.result)
                    .map_err(std::io::Error::other)?
                {
                    WalProgress::Durable => {
                        self.release_gated();
                        Ok(())
                    }
                    WalProgress::AwaitingEarlier => Ok(()),
                    WalProgress::Resubmit(write) => self.submit_wal(write),
                }
            }
            // Cancellations, closes and rejections need no follow-up: the
            // connection's slot was already settled.
            kind::CANCEL | kind::CLOSE | kind::REJECT => Ok(()),
            other => {
                debug_assert!(false, "unknown completion kind {other}");
                Ok(())
            }
        }
    }

    fn drain_mesh(&mut self) {
        let mut inbound = std::mem::take(&mut self.inbound);
        self.mesh.drain_into(&mut inbound);
        for msg in inbound.drain(..) {
            match msg {
                MeshMsg::HttpRequest {
                    from,
                    token,
                    class,
                    id,
                    rest_bytes,
                    bytes,
                } => self.serve_forwarded(from, token, (class, id, rest_bytes), bytes),
                MeshMsg::HttpReply { token, bytes } => self.on_reply(token, bytes),
                MeshMsg::RpcRequest { from, token, bytes } => {
                    self.serve_forwarded_rpc(from, token, bytes)
                }
                MeshMsg::RpcReply { token, bytes } => self.on_rpc_reply(token, bytes),
                MeshMsg::Call {
                    from,
                    class,
                    caller,
                    frame,
                } => self.serve_call(from, class, caller, frame),
                MeshMsg::CallReply {
                    class,
                    caller,
                    frame,
                } => self.on_call_reply(class, caller, frame),
                MeshMsg::AdoptConn { fd, input } => {
                    if let Err(e) = self.adopt(fd, input) {
                        log::warn!("shard {}: adopting a connection: {e}", self.index);
                    }
                }
            }
        }
        self.inbound = inbound;
        self.run_local_work();
    }

    /// Submits a group's log record: a write linked to an `fdatasync`, so
    /// the sync starts only once the whole record is written. The tokens
    /// carry the group's sequence number (its low 32 bits), since several
    /// groups may be in flight.
    fn submit_wal(&mut self, write: WalWrite) -> std::io::Result<()> {
        let op = io::Op::LogWrite {
            fd: write.fd,
            ptr: write.ptr,
            len: write.len,
            offset: write.offset,
            group: write.seq as u32,
        };
        // SAFETY: the store keeps a group's record buffer, and its segment
        // open, until it is told of the write's and the sync's completions.
        unsafe { self.submit(op) }
    }

    /// A group became durable: releases the output that waited for it.
    fn release_gated(&mut self) {
        let durable = self.store.durable_seq();
        while self.held.front().is_some_and(|(seq, _)| *seq <= durable) {
            let (_, delivery) = self.held.pop_front().expect("checked above");
            self.deliver(delivery);
        }
        self.dirty.extend_from_slice(&self.gated);
        self.gated.clear();
    }

    fn fire_timers(&mut self) {
        let mut fired = std::mem::take(&mut self.fired);
        self.timers.advance(self.mono_ms, &mut fired);
        for timer in fired.drain(..) {
            match timer {
                Timer::Sweep => {
                    let durable = self.store.durable_seq();
                    let swept =
                        self.objects
                            .sweep(&self.registry, self.wall_ms, durable, &self.sockets);
                    metrics::add(&self.metrics.objects_evicted_total, swept.evicted);
                    metrics::add(&self.metrics.objects_hibernated_total, swept.hibernated);
                    if let (true, Some(hook)) = (swept.shrunk, self.idle_hook) {
                        hook();
                    }
                    // fjall's figures are sums over its structures: read
                    // them at the sweep's pace, not every loop turn.
                    let memory = self.store.memory();
                    metrics::set(&self.metrics.storage_memtable_bytes, memory.memtable_bytes);
                    metrics::set(&self.metrics.storage_cache_bytes, memory.cache_bytes);
                    self.timers
                        .insert(self.mono_ms + SWEEP_INTERVAL_MS, Timer::Sweep);
                }
                Timer::Conn { index, generation } => self.on_conn_timer(index, generation),
                Timer::AlarmScan => {
                    self.scan_alarms();
                    self.timers.insert(
                        self.mono_ms + alarms::ALARM_SCAN_INTERVAL_MS,
                        Timer::AlarmScan,
                    );
                }
                Timer::Alarm { id, at_ms } => self.fire_alarm(id, at_ms),
                Timer::AcceptResume { listener } => self.resume_accept(listener),
                Timer::CallSweep => {
                    self.sweep_calls();
                    let interval = calls::CALL_SWEEP_INTERVAL_MS.min(self.server.call_timeout_ms);
                    self.timers
                        .insert(self.mono_ms + interval, Timer::CallSweep);
                }
            }
        }
        self.fired = fired;
    }

    fn publish_metrics(&self) {
        let stats = self.store.stats();
        let m = &self.metrics;
        metrics::set(&m.storage_writes_total, stats.writes_total);
        metrics::set(
            &m.storage_groups_committed_total,
            stats.groups_committed_total,
        );
        metrics::set(
            &m.storage_group_writes_committed_total,
            stats.group_writes_committed_total,
        );
        metrics::set(&m.storage_apply_ns_total, stats.apply_ns_total);
        metrics::set(&m.storage_log_bytes_total, stats.log_bytes_total);
        metrics::set(&m.sql_connections_open, self.objects.sql_open() as u64);
        metrics::set(&m.objects_live, self.objects.len() as u64);
        metrics::set(&m.objects_capacity, self.objects.capacity() as u64);
        metrics::set(&m.connections_open, self.conns.open() as u64);
        metrics::set(&m.websockets_open, self.sockets.len() as u64);
    }
}

fn wall_clock_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
