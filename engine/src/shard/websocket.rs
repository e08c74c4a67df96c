//! WebSockets on a shard.
//!
//! 1. An upgrade request is parsed like any request. If its object lives on
//!    another shard, the connection itself moves there (once nothing of it
//!    is in flight), so that its messages never cross cores again.
//! 2. On the owner, the object's `fetch` may accept it; the shard answers
//!    `101` (behind the output gate, like any response) and the connection
//!    becomes a WebSocket.
//! 3. Its receive is a multishot receive that takes a buffer from the
//!    shard's provided-buffer ring only when bytes arrive; the bytes are
//!    copied out and the buffer goes straight back. Whole messages become
//!    `websocket_message` events; pings are answered here, and so is a
//!    message matching the object's auto-response.
//! 4. What objects send is kept per event with its output gate and written
//!    into the connections at the end of the loop turn ([`Outbox`]). A
//!    reader too slow to take what it is sent is closed with 1008; it never
//!    holds up the other sockets.

use std::collections::VecDeque;

use durin_net::ring::Completion;
use durin_net::ws::{self, close_code, Control, Data, Event, OpCode, WsConn};
use durin_net::{Conn, ConnKind, Token};
use durin_storage::Seq;
use io_uring::cqueue;

use super::io::Op;
use super::{kind, Shard};
use crate::metrics;
use crate::object::websocket::{Outgoing, WsSend};
use crate::object::{Message, WebSocket};

/// Buffers in a shard's receive ring, and their size: 4 MiB per shard,
/// whatever the number of connections.
pub(super) const RECV_RING_ENTRIES: u16 = 1024;
pub(super) const RECV_RING_BUF_BYTES: usize = 4096;
/// The buffer group of the receive ring.
const RECV_GROUP: u16 = 0;
/// Scratch buffers larger than this are not kept for reuse.
const SCRATCH_KEEP_BYTES_MAX: usize = 64 * 1024;

/// How a socket ended, for its object.
pub(super) enum Gone<'a> {
    /// The peer closed it (`clean`: with a close frame).
    Closed { code: u16, reason: &'a str },
    /// It failed: the object gets `websocket_error`.
    Failed(&'a str),
}

/// What objects sent, waiting for the end of the loop turn.
#[derive(Default)]
pub(super) struct Outbox {
    items: VecDeque<(WsSend, Option<Seq>)>,
    bytes: Vec<u8>,
}

impl Outbox {
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

impl Shard {
    /// Arms a WebSocket connection's receive: multishot from the buffer
    /// ring, or a plain receive into its own buffer if the kernel has no
    /// buffer rings.
    pub(super) fn arm_ws_recv(&mut self, index: u32) -> std::io::Result<()> {
        let has_ring = self.recv_ring.is_some();
        let Some(conn) = self.conns.by_index(index) else {
            return Ok(());
        };
        let token = Token::new(kind::WS_RECV, conn.generation, index);
        let fd = conn.fd;
        let op = if has_ring {
            Op::RecvMulti {
                fd,
                group: RECV_GROUP,
                token,
            }
        } else {
            let (ptr, len) = conn.recv_space();
            Op::Recv {
                fd,
                ptr,
                len,
                token,
            }
        };
        conn.recv_in_flight = true;
        // SAFETY: the ring's buffers live as long as the shard; a plain
        // receive writes into the connection's input, which is not touched
        // until its completion (`recv_in_flight`).
        unsafe { self.submit(op) }
    }

    pub(super) fn on_ws_recv(&mut self, c: Completion) -> std::io::Result<()> {
        let (index, generation) = (c.token.index(), c.token.generation());
        let mut data = std::mem::take(&mut self.ws_scratch);
        let buffer = cqueue::buffer_select(c.flags);
        let Some(conn) = self.conns.get_mut(index, generation) else {
            if let (Some(bid), Some(ring)) = (buffer, self.recv_ring.as_mut()) {
                ring.recycle(bid);
            }
            self.ws_scratch = data;
            return Ok(());
        };
        if !c.more() {
            conn.recv_in_flight = false;
        }
        if c.result > 0 {
            let n = c.result as usize;
            match (buffer, self.recv_ring.as_mut()) {
                (Some(bid), Some(ring)) => {
                    data.clear();
                    data.append(&mut conn.input);
                    data.extend_from_slice(ring.data(bid, n));
                    ring.recycle(bid);
                }
                _ => {
                    // SAFETY: a plain receive wrote `n` bytes into the
                    // spare capacity `recv_space` gave it, untouched since.
                    unsafe { conn.on_received(n) };
                    self.ws_scratch = std::mem::replace(&mut data, std::mem::take(&mut conn.input));
                }
            }
            self.process_ws(index, generation, data);
        } else {
            self.ws_scratch = data;
            if c.result == 0 {
                conn.closing = true;
            } else if c.result != -libc::ENOBUFS && c.result != -libc::ECANCELED {
                conn.dead = true;
            }
            // On ENOBUFS every ring buffer is taken: the receive is armed
            // again at the end of the turn, once buffers went back.
        }
        self.dirty.push(index);
        Ok(())
    }

    /// Handles every whole frame in `data` (received bytes, after what was
    /// left over last time); keeps an incomplete frame in the connection.
    pub(super) fn process_ws(&mut self, index: u32, generation: u32, mut data: Vec<u8>) {
        let mut pos = 0;
        while pos < data.len() {
            let Some(conn) = self.conns.get_mut(index, generation) else {
                break;
            };
            if conn.closing || conn.dead {
                pos = data.len();
                break;
            }
            let ws = conn
                .ws
                .as_mut()
                .expect("a WebSocket connection has its state");
            let socket = WebSocket {
                index: ws.socket,
                generation: ws.socket_generation,
            };
            let (event, used) = match ws.decoder.decode(&mut data[pos..], &self.ws_limits) {
                Ok(Some(decoded)) => decoded,
                Ok(None) => break,
                Err(e) => {
                    metrics::add(&self.metrics.websocket_protocol_errors_total, 1);
                    self.fail_socket(index, generation, e.code, e.reason, false);
                    pos = data.len();
                    break;
                }
            };
            let frame = pos..pos + used;
            pos += used;
            match event {
                Event::Fragment | Event::Pong => {}
                Event::Ping(range) => {
                    // Answered when the connection is serviced at the end
                    // of the turn, and only the latest ping.
                    let payload = &data[frame.start + range.start..frame.start + range.end];
                    if !ws.close_sent {
                        let pong = ws.pending_pong.get_or_insert_with(Vec::new);
                        pong.clear();
                        pong.extend_from_slice(payload);
                    }
                }
                Event::Close { code, reason } => {
                    let reason = &data[frame.start + reason.start..frame.start + reason.end];
                    let reason = String::from_utf8_lossy(reason).into_owned();
                    self.on_peer_close(index, generation, socket, code, &reason);
                }
                // A whole frame's payload is handled where it lies; a
                // reassembled message is moved out of the connection.
                Event::Message {
                    text,
                    payload: ws::Payload::Input(r),
                } => {
                    let message = &data[frame.start + r.start..frame.start + r.end];
                    self.on_ws_message(socket, text, message);
                }
                Event::Message {
                    text,
                    payload: ws::Payload::Reassembled,
                } => {
                    let message = ws.decoder.take_message();
                    self.on_ws_message(socket, text, &message);
                }
            }
        }
        if let Some(conn) = self.conns.get_mut(index, generation) {
            if pos < data.len() {
                conn.input.extend_from_slice(&data[pos..]);
            }
        }
        data.clear();
        if data.capacity() <= SCRATCH_KEEP_BYTES_MAX {
            self.ws_scratch = data;
        }
    }

    fn on_ws_message(&mut self, socket: WebSocket, text: bool, bytes: &[u8]) {
        metrics::add(&self.metrics.websocket_messages_received_total, 1);
        let Some(entry) = self.sockets.get(socket).filter(|e| !e.closing) else {
            return;
        };
        let (class, id) = (entry.class, entry.object);
        if text {
            let (conn_index, conn_generation) = (entry.conn_index, entry.conn_generation);
            if let Some(len) = self.sockets.auto_response(&id, bytes).map(<[u8]>::len) {
                // Each auto-response is written on the peer's behalf: it
                // counts against the send queue like any message, so a peer
                // that asks without reading is closed, not buffered for.
                if self.fits_send_queue(conn_index, conn_generation, len) {
                    let response = self
                        .sockets
                        .auto_response(&id, bytes)
                        .expect("matched just above");
                    if let Some(conn) = self.conns.get_mut(conn_index, conn_generation) {
                        ws::write_frame(conn.output(), OpCode::Data(Data::Text), response);
                        self.dirty.push(conn_index);
                    }
                    metrics::add(&self.metrics.websocket_auto_responses_total, 1);
                }
                return;
            }
        }
        let message = if text {
            Message::Text(std::str::from_utf8(bytes).expect("the decoder checked UTF-8"))
        } else {
            Message::Binary(bytes)
        };
        let outcome = self
            .objects
            .run(event_env!(self), class, id, |object, ctx| {
                object.websocket_message(socket, message, ctx)
            });
        self.after_event(class, id, &outcome);
    }

    /// The peer sent a close frame: answer it (unless we closed first),
    /// close the connection once that is sent, and tell the object.
    fn on_peer_close(
        &mut self,
        index: u32,
        generation: u32,
        socket: WebSocket,
        code: Option<u16>,
        reason: &str,
    ) {
        let close_ms = self.server.websocket_close_timeout_ms;
        let Some(conn) = self.conns.get_mut(index, generation) else {
            return;
        };
        let ws = conn
            .ws
            .as_mut()
            .expect("a WebSocket connection has its state");
        ws.close_received = true;
        if !ws.close_sent {
            ws.close_sent = true;
            match code {
                Some(code) => ws::write_close(conn.output(), code, ""),
                None => ws::write_frame(conn.output(), OpCode::Control(Control::Close), b""),
            }
        }
        conn.closing = true;
        let deadline = self.mono_ms + close_ms;
        super::conns::arm_deadline(&mut self.timers, conn, index, deadline, false);
        self.dirty.push(index);
        let code = code.unwrap_or(close_code::NO_STATUS);
        self.socket_gone(socket, Gone::Closed { code, reason });
    }

    /// Fails a connection: a close frame with `code`, then the connection
    /// closes. `discard` drops what was queued and not yet sent (for a
    /// reader that is not reading).
    pub(super) fn fail_socket(
        &mut self,
        index: u32,
        generation: u32,
        code: u16,
        reason: &str,
        discard: bool,
    ) {
        let close_ms = self.server.websocket_close_timeout_ms;
        let Some(conn) = self.conns.get_mut(index, generation) else {
            return;
        };
        let ws = conn
            .ws
            .as_mut()
            .expect("a WebSocket connection has its state");
        let socket = WebSocket {
            index: ws.socket,
            generation: ws.socket_generation,
        };
        if !ws.close_sent {
            ws.close_sent = true;
            if discard {
                conn.discard_unsent_output();
            }
            ws::write_close(conn.output(), code, reason);
        }
        conn.closing = true;
        let deadline = self.mono_ms + close_ms;
        super::conns::arm_deadline(&mut self.timers, conn, index, deadline, false);
        self.dirty.push(index);
        self.socket_gone(socket, Gone::Failed(reason));
    }

    /// A socket ended: its object hears of it (unless it closed the socket
    /// itself), then the socket is forgotten.
    pub(super) fn socket_gone(&mut self, socket: WebSocket, gone: Gone<'_>) {
        let Some(entry) = self.sockets.get_mut(socket) else {
            return;
        };
        let told = !entry.closing;
        entry.closing = true;
        let (class, id) = (entry.class, entry.object);
        if told {
            let outcome = self
                .objects
                .run(event_env!(self), class, id, |object, ctx| match gone {
                    Gone::Closed { code, reason } => {
                        object.websocket_close(socket, code, reason, ctx)
                    }
                    Gone::Failed(error) => object.websocket_error(socket, error, ctx),
                });
            self.after_event(class, id, &outcome);
        }
        self.sockets.remove(socket);
    }

    /// Keeps the event's sends and closes until the end of the turn.
    pub(super) fn queue_ws_effects(&mut self, gate: Option<Seq>) {
        let effects = &mut self.effects.ws;
        let base = self.outbox.bytes.len();
        self.outbox.bytes.extend_from_slice(&effects.bytes);
        for send in &effects.sends {
            let mut send = *send;
            send.start += base;
            self.outbox.items.push_back((send, gate));
        }
        effects.clear();
    }

    /// Writes what objects sent into their connections, each behind its
    /// event's gate.
    pub(super) fn flush_ws_outbox(&mut self) {
        while !self.outbox.is_empty() {
            let mut outbox = std::mem::take(&mut self.outbox);
            for (send, gate) in outbox.items.drain(..) {
                let payload = &outbox.bytes[send.start..send.start + send.len];
                self.write_ws(send, gate, payload);
            }
            outbox.bytes.clear();
            if outbox.bytes.capacity() <= SCRATCH_KEEP_BYTES_MAX && self.outbox.is_empty() {
                self.outbox = outbox;
            }
        }
    }

    fn write_ws(&mut self, send: WsSend, gate: Option<Seq>, payload: &[u8]) {
        let durable = self.store.durable_seq();
        let Some(entry) = self.sockets.get(send.ws) else {
            return;
        };
        let (index, generation) = (entry.conn_index, entry.conn_generation);
        let Some(conn) = self.conns.get_mut(index, generation) else {
            return;
        };
        let ws = conn
            .ws
            .as_mut()
            .expect("a socket's connection is a WebSocket");
        if ws.close_sent {
            return;
        }
        let opcode = match send.kind {
            Outgoing::Text => OpCode::Data(Data::Text),
            Outgoing::Binary => OpCode::Data(Data::Binary),
            Outgoing::Close(code) => {
                ws.close_sent = true;
                if let Some(seq) = gate.filter(|&s| s > durable) {
                    conn.gate_next(seq);
                }
                let reason = String::from_utf8_lossy(payload);
                ws::write_close(conn.output(), code, &reason);
                let deadline = self.mono_ms + self.server.websocket_close_timeout_ms;
                super::conns::arm_deadline(&mut self.timers, conn, index, deadline, false);
                self.dirty.push(index);
                self.sockets.remove(send.ws);
                return;
            }
        };
        if !self.fits_send_queue(index, generation, payload.len()) {
            return;
        }
        let Some(conn) = self.conns.get_mut(index, generation) else {
            return;
        };
        if let Some(seq) = gate.filter(|&s| s > durable) {
            conn.gate_next(seq);
        }
        ws::write_frame(conn.output(), opcode, payload);
        metrics::add(&self.metrics.websocket_messages_sent_total, 1);
        self.dirty.push(index);
    }

    /// Whether a frame with `payload_bytes` fits the socket's send queue
    /// (`websocket_send_queue_bytes_max`). If not, the peer is too slow a
    /// reader: what is queued for it is dropped and it is closed with 1008.
    fn fits_send_queue(&mut self, index: u32, generation: u32, payload_bytes: usize) -> bool {
        let queue_max = self.server.websocket_send_queue_bytes_max;
        let Some(conn) = self.conns.get_mut(index, generation) else {
            return false;
        };
        if conn.queued_bytes() + payload_bytes + ws::FRAME_HEADER_BYTES_MAX <= queue_max {
            return true;
        }
        metrics::add(&self.metrics.websocket_slow_readers_closed_total, 1);
        let reason = "send queue over its limit";
        self.fail_socket(
            index,
            generation,
            close_code::POLICY_VIOLATION,
            reason,
            true,
        );
        false
    }

    /// Writes the pong for the latest ping, once no send is in flight: while
    /// one is (the peer is not reading), newer pings replace the pending
    /// one instead of queueing a pong each.
    pub(super) fn write_pending_pong(&mut self, index: u32, generation: u32) {
        let Some(conn) = self.conns.get_mut(index, generation) else {
            return;
        };
        if conn.send_in_flight {
            return;
        }
        let Some(ws) = conn.ws.as_mut() else {
            return;
        };
        let Some(pong) = ws.pending_pong.take() else {
            return;
        };
        if ws.close_sent || !self.fits_send_queue(index, generation, pong.len()) {
            return;
        }
        if let Some(conn) = self.conns.get_mut(index, generation) {
            ws::write_frame(conn.output(), OpCode::Control(Control::Pong), &pong);
        }
    }

    /// Turns an HTTP connection whose upgrade its object accepted into a
    /// WebSocket: `101` (behind `gate`), then frames.
    pub(super) fn become_websocket(
        &mut self,
        conn: &mut Conn,
        socket: WebSocket,
        key: &[u8],
        gate: Option<Seq>,
    ) {
        metrics::add(&self.metrics.websocket_upgrades_total, 1);
        if let Some(seq) = gate {
            conn.gate_next(seq);
        }
        ws::handshake::write_accept(conn.output(), key);
        conn.kind = ConnKind::WebSocket;
        conn.ws = Some(Box::new(WsConn {
            socket: socket.index,
            socket_generation: socket.generation,
            ..WsConn::default()
        }));
    }

    /// Moves a connection that asked for another shard's WebSocket to that
    /// shard, once nothing of it is in flight or queued here.
    pub(super) fn hand_off(&mut self, index: u32, to: u32) {
        let conn = self.conns.remove(index).expect("the caller looked it up");
        metrics::add(&self.metrics.connections_handed_off_total, 1);
        self.mesh.send(
            to,
            crate::mesh::MeshMsg::AdoptConn {
                fd: conn.fd,
                input: conn.input,
            },
        );
    }

    /// Takes over a connection another shard handed off, and serves the
    /// request it carries.
    pub(super) fn adopt(&mut self, fd: i32, input: Vec<u8>) -> std::io::Result<()> {
        if self.conns.is_full() || self.stop_by_ms.is_some() {
            return self.reject(fd, true);
        }
        let (index, generation) = self.conns.insert(fd);
        let mut conn = self.conns.take(index, generation).expect("just inserted");
        conn.input = input;
        self.process_input(index, &mut conn);
        self.conns.put_back(index, conn);
        self.after_input(index, generation);
        self.dirty.push(index);
        Ok(())
    }

    /// Bytes that followed an accepted upgrade are already frames.
    pub(super) fn after_input(&mut self, index: u32, generation: u32) {
        let Some(conn) = self.conns.get_mut(index, generation) else {
            return;
        };
        if conn.kind == ConnKind::WebSocket && !conn.input.is_empty() {
            let data = std::mem::take(&mut conn.input);
            self.process_ws(index, generation, data);
        }
    }
}
