//! The shard's connections: the table, and what each socket completion
//! does to it.

use durin_net::ring::Completion;
use durin_net::{Conn, Token};

use super::io::Op;
use super::{kind, Shard, Timer};
use crate::metrics;

/// Output queued beyond this stops reading from the connection, and
/// serving the requests already read, until the peer has read some: a
/// client that pipelines without reading cannot make the shard buffer
/// without bound (a megabyte of small GETs for a large value would
/// otherwise queue gigabytes of responses).
pub(super) const OUTPUT_BYTES_HIGH: usize = 1 << 20;

/// The first pause of accepting after the process ran out of file
/// descriptors, and the longest: without a pause, a multishot accept that
/// fails with EMFILE is re-armed and fails again at once, and the shard
/// spins at 100% CPU while the connections it holds wait.
pub(super) const ACCEPT_BACKOFF_MS_MIN: u64 = 20;
pub(super) const ACCEPT_BACKOFF_MS_MAX: u64 = 1_000;

/// A slab of connections with generation-tagged slots.
pub struct ConnTable {
    slots: Vec<Option<Conn>>,
    generations: Vec<u32>,
    free: Vec<u32>,
    open: usize,
    max: usize,
}

impl ConnTable {
    pub fn new(max: usize) -> ConnTable {
        ConnTable {
            slots: Vec::new(),
            generations: Vec::new(),
            free: Vec::new(),
            open: 0,
            max,
        }
    }

    pub fn open(&self) -> usize {
        self.open
    }

    /// Slots in the table, occupied or not.
    pub fn slot_count(&self) -> u32 {
        self.slots.len() as u32
    }

    pub fn is_full(&self) -> bool {
        self.open >= self.max
    }

    pub(super) fn insert(&mut self, fd: i32) -> (u32, u32) {
        let index = match self.free.pop() {
            Some(i) => i,
            None => {
                self.slots.push(None);
                self.generations.push(0);
                (self.slots.len() - 1) as u32
            }
        };
        let generation = self.generations[index as usize];
        self.slots[index as usize] = Some(Conn::new(fd, generation));
        self.open += 1;
        (index, generation)
    }

    pub(super) fn remove(&mut self, index: u32) -> Option<Conn> {
        let conn = self.slots.get_mut(index as usize)?.take()?;
        // A new generation makes completions and timers of the old
        // connection miss the slot.
        self.generations[index as usize] = (self.generations[index as usize] + 1) & 0x00ff_ffff;
        self.free.push(index);
        self.open -= 1;
        Some(conn)
    }

    pub fn get_mut(&mut self, index: u32, generation: u32) -> Option<&mut Conn> {
        self.slots
            .get_mut(index as usize)?
            .as_mut()
            .filter(|c| c.generation == generation)
    }

    pub(super) fn by_index(&mut self, index: u32) -> Option<&mut Conn> {
        self.slots.get_mut(index as usize)?.as_mut()
    }

    /// Takes a connection out to work on it beside the rest of the shard;
    /// [`put_back`](Self::put_back) returns it.
    pub fn take(&mut self, index: u32, generation: u32) -> Option<Conn> {
        let slot = self.slots.get_mut(index as usize)?;
        if slot.as_ref().is_some_and(|c| c.generation == generation) {
            slot.take()
        } else {
            None
        }
    }

    pub fn put_back(&mut self, index: u32, conn: Conn) {
        let slot = &mut self.slots[index as usize];
        debug_assert!(slot.is_none(), "a taken slot stays empty until put back");
        *slot = Some(conn);
    }
}

impl Shard {
    pub(super) fn on_accept(&mut self, c: Completion) -> std::io::Result<()> {
        let listener = c.token.index();
        if !c.more() {
            self.accept_armed[listener as usize] = false;
        }
        if c.result >= 0 {
            if self.accept_backoff_ms > ACCEPT_BACKOFF_MS_MIN {
                log::warn!(
                    "shard {}: accepting connections again (file descriptors freed)",
                    self.index
                );
                self.accept_backoff_ms = ACCEPT_BACKOFF_MS_MIN;
            }
            self.accept(c.result, listener)?;
        } else if c.result == -libc::EMFILE || c.result == -libc::ENFILE {
            self.pause_accept(listener, c.more())?;
        } else if c.result != -libc::ECANCELED {
            // ECONNABORTED and the like: the listener itself is fine; the
            // connection is lost and the client retries.
            log::debug!(
                "shard {}: accept failed: {}",
                self.index,
                std::io::Error::from_raw_os_error(-c.result)
            );
        }
        let listener_index = listener as usize;
        if !self.accept_armed[listener_index] && !self.accept_paused[listener_index] {
            self.arm_accept(listener)?;
        }
        Ok(())
    }

    /// Out of file descriptors: stops accepting on `listener` for the
    /// backoff period (connections wait in the listen backlog meanwhile),
    /// and says so once per episode. `armed`: the multishot accept is
    /// still armed and must be cancelled.
    fn pause_accept(&mut self, listener: u32, armed: bool) -> std::io::Result<()> {
        metrics::add(&self.metrics.accept_fd_exhausted_total, 1);
        if self.accept_paused[listener as usize] {
            return Ok(());
        }
        if self.accept_backoff_ms == ACCEPT_BACKOFF_MS_MIN {
            log::warn!(
                "shard {}: out of file descriptors (the process's RLIMIT_NOFILE or the system's); \
                 accepting is paused and retried with backoff until some are freed",
                self.index
            );
        }
        self.accept_paused[listener as usize] = true;
        if armed {
            let cancel = Op::Cancel {
                target: Token::new(kind::ACCEPT, 0, listener),
                token: Token::new(kind::CANCEL, 0, 0),
            };
            // SAFETY: a cancel points at no buffer.
            unsafe { self.submit(cancel)? };
        }
        let resume_ms = self.mono_ms + self.accept_backoff_ms;
        self.timers
            .insert(resume_ms, super::Timer::AcceptResume { listener });
        self.accept_backoff_ms = (self.accept_backoff_ms * 2).min(ACCEPT_BACKOFF_MS_MAX);
        Ok(())
    }

    /// The backoff is over: accept on `listener` again.
    pub(super) fn resume_accept(&mut self, listener: u32) {
        self.accept_paused[listener as usize] = false;
        if !self.accept_armed[listener as usize] && self.arm_accept(listener).is_err() {
            // The submission queue is full: try again after another pause.
            self.accept_armed[listener as usize] = false;
            self.accept_paused[listener as usize] = true;
            let resume_ms = self.mono_ms + self.accept_backoff_ms;
            self.timers
                .insert(resume_ms, super::Timer::AcceptResume { listener });
        }
    }

    fn accept(&mut self, fd: i32, listener: u32) -> std::io::Result<()> {
        if self.conns.is_full() || self.stop_by_ms.is_some() {
            // An RPC client has not said hello yet and cannot read an HTTP
            // answer: it only sees the close.
            return self.reject(fd, listener == 0);
        }
        metrics::add(&self.metrics.connections_accepted_total, 1);
        durin_net::socket::set_nodelay(fd);
        let (index, _generation) = self.conns.insert(fd);
        if listener > 0 {
            let conn = self.conns.by_index(index).expect("just inserted");
            conn.kind = durin_net::ConnKind::RpcHello;
            conn.on_shard_port = listener == 2;
        }
        let deadline = self.mono_ms + self.server.header_timeout_ms;
        self.set_deadline(index, deadline, true);
        self.dirty.push(index);
        Ok(())
    }

    /// Refuses a connection at the connection cap: `503` (if it speaks
    /// HTTP), then close.
    pub(super) fn reject(&mut self, fd: i32, http: bool) -> std::io::Result<()> {
        metrics::add(&self.metrics.connections_rejected_total, 1);
        // SAFETY: the reject's answer is a static.
        unsafe { self.submit(Op::Reject { fd, http }) }
    }

    pub(super) fn on_recv(&mut self, c: Completion) -> std::io::Result<()> {
        let (index, generation) = (c.token.index(), c.token.generation());
        let Some(mut conn) = self.conns.take(index, generation) else {
            return Ok(());
        };
        conn.recv_in_flight = false;
        if c.result > 0 {
            // SAFETY: the kernel wrote `result` bytes at the spare capacity
            // handed out by `recv_space` for this very receive, and the
            // buffer was not touched while the receive was in flight.
            unsafe { conn.on_received(c.result as usize) };
            self.process_input(index, &mut conn);
        } else if c.result == 0 {
            // The peer finished sending. Answer what it sent, then close.
            conn.closing = true;
        } else if c.result != -libc::ECANCELED {
            conn.dead = true;
        }
        self.conns.put_back(index, conn);
        self.after_input(index, generation);
        self.dirty.push(index);
        Ok(())
    }

    pub(super) fn on_send(&mut self, c: Completion) -> std::io::Result<()> {
        let (index, generation) = (c.token.index(), c.token.generation());
        let Some(conn) = self.conns.get_mut(index, generation) else {
            return Ok(());
        };
        conn.send_in_flight = false;
        if c.result < 0 {
            conn.dead = true;
        } else if conn.on_sent(c.result as usize) {
            // A short send: the rest goes out before anything else.
            let op = send_op(conn, index);
            conn.send_in_flight = true;
            // SAFETY: as for every send (see `send_op`).
            return unsafe { self.submit(op) };
        }
        if conn.paused_for_output && conn.queued_bytes() < OUTPUT_BYTES_HIGH {
            conn.paused_for_output = false;
            // Requests already read waited for the peer to read; go on.
            let mut conn = self.conns.take(index, generation).expect("looked up above");
            self.process_input(index, &mut conn);
            self.conns.put_back(index, conn);
            self.after_input(index, generation);
        }
        self.dirty.push(index);
        Ok(())
    }

    /// Sends, closes or re-arms every connection touched this turn.
    pub(super) fn service_dirty(&mut self) -> std::io::Result<()> {
        self.flush_ws_outbox();
        let mut dirty = std::mem::take(&mut self.dirty);
        dirty.sort_unstable();
        dirty.dedup();
        for &index in &dirty {
            self.service(index)?;
        }
        dirty.clear();
        self.dirty = dirty;
        Ok(())
    }

    fn service(&mut self, index: u32) -> std::io::Result<()> {
        let durable = self.store.durable_seq();
        let Some(conn) = self.conns.by_index(index) else {
            return Ok(());
        };
        let generation = conn.generation;
        if conn.dead || (conn.closing && conn.is_drained() && !conn.awaiting_reply) {
            return self.close(index);
        }
        if conn.kind == durin_net::ConnKind::WebSocket {
            self.write_pending_pong(index, generation);
        }
        let Some(conn) = self.conns.by_index(index) else {
            return Ok(());
        };
        if conn.prepare_send(durable) {
            let op = send_op(conn, index);
            conn.send_in_flight = true;
            // SAFETY: as for every send (see `send_op`).
            unsafe { self.submit(op)? };
        }
        let Some(conn) = self.conns.by_index(index) else {
            return Ok(());
        };
        if conn.has_gated_output() {
            self.gated.push(index);
        }
        if let Some(to) = conn.handoff_to {
            if conn.is_drained() && !conn.has_io_in_flight() && !conn.has_gated_output() {
                self.hand_off(index, to);
            }
            return Ok(());
        }
        if conn.kind == durin_net::ConnKind::WebSocket {
            let has_ring = self.recv_ring.is_some();
            let reading = conn
                .ws
                .as_ref()
                .is_some_and(|ws| !ws.close_received && !conn.closing);
            if reading && !conn.recv_in_flight {
                self.arm_ws_recv(index)?;
            }
            let Some(conn) = self.conns.by_index(index) else {
                return Ok(());
            };
            conn.release_idle_buffers(!has_ring);
            return Ok(());
        }
        if conn.closing && !conn.is_drained() && conn.deadline_ms == 0 {
            // A closing connection's last answer must be taken within the
            // idle timeout; a peer that never reads would otherwise keep
            // the connection, and what is queued for it, forever.
            let deadline = self.mono_ms + self.server.idle_timeout_ms;
            arm_deadline(&mut self.timers, conn, index, deadline, false);
        }
        let wants_input = !conn.recv_in_flight
            && !conn.closing
            && !conn.awaiting_reply
            && conn.input.len() <= self.limits.header_bytes_max + self.limits.body_bytes_max;
        if wants_input && conn.output().len() < OUTPUT_BYTES_HIGH {
            let (ptr, len) = conn.recv_space();
            let op = Op::Recv {
                fd: conn.fd,
                ptr,
                len,
                token: Token::new(kind::RECV, generation, index),
            };
            conn.recv_in_flight = true;
            // SAFETY: the receive writes into the spare capacity of the
            // connection's input, which nothing touches until its
            // completion (`recv_in_flight`); the slot keeps the buffer.
            unsafe { self.submit(op)? };
        }
        Ok(())
    }

    /// Closes a connection once nothing of it is in the kernel: a pending
    /// receive is cancelled first, and the slot is freed when the last
    /// completion is back.
    fn close(&mut self, index: u32) -> std::io::Result<()> {
        let Some(conn) = self.conns.by_index(index) else {
            return Ok(());
        };
        conn.dead = true;
        if conn.has_io_in_flight() {
            let recv_kind = match conn.kind {
                durin_net::ConnKind::WebSocket => kind::WS_RECV,
                _ => kind::RECV,
            };
            // A send waits in the kernel for as long as the peer does not
            // read: it is cancelled too, or the connection never closes.
            let in_flight = [
                (conn.recv_in_flight, recv_kind),
                (conn.send_in_flight, kind::SEND),
            ];
            let generation = conn.generation;
            for (_, op_kind) in in_flight.into_iter().filter(|(busy, _)| *busy) {
                let cancel = Op::Cancel {
                    target: Token::new(op_kind, generation, index),
                    token: Token::new(kind::CANCEL, generation, index),
                };
                // SAFETY: a cancel points at no buffer.
                unsafe { self.submit(cancel)? };
            }
            return Ok(());
        }
        let conn = self.conns.remove(index).expect("looked up above");
        // SAFETY: a close points at no buffer.
        unsafe { self.submit(Op::Close { fd: conn.fd })? };
        if let Some(ws) = conn.ws {
            let socket = crate::object::WebSocket {
                index: ws.socket,
                generation: ws.socket_generation,
            };
            let gone = super::websocket::Gone::Closed {
                code: durin_net::ws::close_code::ABNORMAL,
                reason: "",
            };
            self.socket_gone(socket, gone);
        }
        Ok(())
    }

    /// Sets when a connection times out; see [`arm_deadline`].
    pub(super) fn set_deadline(&mut self, index: u32, deadline_ms: u64, header: bool) {
        if let Some(conn) = self.conns.by_index(index) {
            arm_deadline(&mut self.timers, conn, index, deadline_ms, header);
        }
    }

    pub(super) fn on_conn_timer(&mut self, index: u32, generation: u32) {
        let now = self.mono_ms;
        let Some(conn) = self.conns.get_mut(index, generation) else {
            return;
        };
        conn.timer_at_ms = 0;
        if conn.deadline_ms == 0 || conn.dead {
            return;
        }
        if conn.deadline_ms > now {
            let (deadline, header) = (conn.deadline_ms, conn.deadline_is_header);
            self.set_deadline(index, deadline, header);
            return;
        }
        metrics::add(&self.metrics.connections_timed_out_total, 1);
        conn.deadline_ms = 0;
        if conn.deadline_is_header && !conn.closing && conn.kind == durin_net::ConnKind::Http {
            metrics::add(&self.metrics.bad_requests_total, 1);
            super::http::write_error(conn, 408, "request header timeout");
        } else {
            // Idle, or not reading what it is sent, or closing and its
            // peer did not take the last answer in time.
            conn.dead = true;
        }
        self.dirty.push(index);
    }
}

/// Sets when `conn` times out; `header` says whether it is a header timeout
/// (answered 408) or keep-alive idleness (closed quietly). One timer entry
/// per connection suffices while it is due no later than the deadline: when
/// it fires early, it re-arms for the current deadline.
pub(super) fn arm_deadline(
    timers: &mut crate::timer::TimerWheel<Timer>,
    conn: &mut Conn,
    index: u32,
    deadline_ms: u64,
    header: bool,
) {
    conn.deadline_ms = deadline_ms;
    conn.deadline_is_header = header;
    if deadline_ms != 0 && (conn.timer_at_ms == 0 || conn.timer_at_ms > deadline_ms) {
        conn.timer_at_ms = deadline_ms;
        timers.insert(
            deadline_ms,
            Timer::Conn {
                index,
                generation: conn.generation,
            },
        );
    }
}

/// The send of what `conn` has prepared and not yet sent.
///
/// Its buffer is the connection's `sending` buffer, which the connection
/// only clears or swaps once the send's completion is recorded
/// (`send_in_flight`), and which its slot keeps while the op is in flight.
fn send_op(conn: &mut Conn, index: u32) -> Op {
    let (ptr, len) = conn.unsent();
    Op::Send {
        fd: conn.fd,
        ptr,
        len,
        token: Token::new(kind::SEND, conn.generation, index),
    }
}
