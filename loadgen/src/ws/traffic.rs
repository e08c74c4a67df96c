//! The chat itself, on top of the worker's I/O: reading frames and
//! messages, timing deliveries, and deciding when each sender sends.
//!
//! The flow of one message in closed loop:
//! 1. A sender whose last message is settled writes `lg:<sender>:<seq>:<now>`
//!    as a masked text frame and notes in its outbox how many others are in
//!    the room.
//! 2. Each other client of the room receives the server's JSON for it; the
//!    delivery's latency is now minus the time in the text, and the
//!    sender's outbox entry counts one recipient down.
//! 3. When the count reaches zero (every other client has it), or the
//!    message has waited `--timeout` (counted as a timeout), the sender
//!    sends its next.
//!
//! In open loop (`--rate`) a sender sends whenever the schedule says a
//! message is due, with up to `OUTBOX_MAX` undelivered, and the time in
//! the text is the intended send time, so a stalled server is charged for
//! every message it kept waiting.

use super::chat::{self, Delivery, ServerMessage};
use super::client::{ClientState, Outgoing};
use super::frame::{self, FrameError, Header, Opcode};
use super::handshake::{self, BadHead};
use super::plan::Senders;
use super::worker::{Phase, Worker};
use crate::schedule::Schedule;

/// Open loop: messages one sender may have undelivered; past it, due
/// messages wait (and are reported as unsent if the run ends first).
pub const OUTBOX_MAX: usize = 1024;
/// The largest message reassembled from fragments.
pub const MESSAGE_BYTES_MAX: usize = 64 * 1024;
/// Close code for a frame loadgen cannot read (RFC 6455 section 7.4.1).
const CLOSE_PROTOCOL_ERROR: u16 = 1002;
const CLOSE_TOO_BIG: u16 = 1009;

impl Worker {
    /// Reads what a receive brought: the handshake's response, then
    /// frames. Bytes of an unfinished frame are kept for the next receive.
    pub(super) fn on_bytes(&mut self, slot: usize, data: &[u8]) {
        let mut carry = std::mem::take(&mut self.clients[slot].carry);
        if carry.is_empty() {
            let consumed = self.read_frames(slot, data);
            carry.extend_from_slice(&data[consumed..]);
        } else {
            carry.extend_from_slice(data);
            let consumed = self.read_frames(slot, &carry);
            carry.drain(..consumed);
        }
        let client = &mut self.clients[slot];
        if client.is_up() {
            client.carry = carry;
        }
    }

    /// Handles every whole frame at the start of `data`; returns the bytes
    /// used.
    fn read_frames(&mut self, slot: usize, data: &[u8]) -> usize {
        let mut pos = 0;
        if self.clients[slot].state == ClientState::Handshaking {
            match handshake::read_head(data) {
                Ok(None) => return 0,
                Err(BadHead) => {
                    self.stats.errors.protocol += 1;
                    self.shut(slot);
                    return data.len();
                }
                Ok(Some(head)) if head.status != 101 => {
                    self.stats.record_handshake_status(head.status);
                    self.shut(slot);
                    return data.len();
                }
                Ok(Some(head)) => {
                    self.clients[slot].state = ClientState::Open;
                    pos = head.len;
                }
            }
        }
        while self.clients[slot].is_up() {
            let rest = &data[pos..];
            let header = match frame::read_header(rest) {
                Ok(Some(header)) => header,
                Ok(None) => break,
                Err(err) => {
                    let code = match err {
                        FrameError::Malformed => CLOSE_PROTOCOL_ERROR,
                        FrameError::TooLarge => CLOSE_TOO_BIG,
                    };
                    self.protocol_error(slot, code);
                    return data.len();
                }
            };
            let end = header.header_len + header.payload_len;
            if rest.len() < end {
                break;
            }
            self.on_frame(slot, header, &rest[header.header_len..end]);
            pos += end;
        }
        pos
    }

    /// The server broke the protocol: say so with `code` and leave.
    fn protocol_error(&mut self, slot: usize, code: u16) {
        self.stats.errors.protocol += 1;
        let mask = self.mask();
        let client = &mut self.clients[slot];
        frame::write_close(client.pending(), code, mask);
        client.shut_when_sent = true;
        self.start_send(slot);
        if self.clients[slot].all_sent() {
            self.shut(slot);
        }
    }

    fn on_frame(&mut self, slot: usize, header: Header, payload: &[u8]) {
        let client = &mut self.clients[slot];
        match header.opcode {
            Opcode::Ping => {
                self.stats.pings_total += 1;
                let mask = self.mask();
                let client = &mut self.clients[slot];
                frame::write_client_frame(client.pending(), Opcode::Pong, payload, mask);
            }
            Opcode::Pong => {}
            Opcode::Close => self.on_close(slot, frame::close_code(payload)),
            Opcode::Text | Opcode::Binary if client.in_message => {
                self.protocol_error(slot, CLOSE_PROTOCOL_ERROR);
            }
            Opcode::Text | Opcode::Binary if header.fin => self.on_message(slot, payload),
            Opcode::Text | Opcode::Binary => {
                client.in_message = true;
                client.fragments.clear();
                client.fragments.extend_from_slice(payload);
            }
            Opcode::Continuation
                if !client.in_message
                    || client.fragments.len() + payload.len() > MESSAGE_BYTES_MAX =>
            {
                self.protocol_error(slot, CLOSE_PROTOCOL_ERROR);
            }
            Opcode::Continuation => {
                client.fragments.extend_from_slice(payload);
                if header.fin {
                    client.in_message = false;
                    let message = std::mem::take(&mut client.fragments);
                    self.on_message(slot, &message);
                    let client = &mut self.clients[slot];
                    if client.is_up() {
                        // Keeps the capacity for the next fragmented one.
                        client.fragments = message;
                        client.fragments.clear();
                    }
                }
            }
        }
    }

    /// The server's close frame: the answer to loadgen's at the end, or
    /// the server ending the client's session, which is counted by code.
    fn on_close(&mut self, slot: usize, code: u16) {
        let client = &mut self.clients[slot];
        if client.state == ClientState::Closing || client.shut_when_sent {
            self.shut(slot);
            return;
        }
        self.stats.record_close(code);
        let reply = if code == 1005 { 1000 } else { code };
        let mask = self.mask();
        let client = &mut self.clients[slot];
        frame::write_close(client.pending(), reply, mask);
        client.shut_when_sent = true;
        self.start_send(slot);
    }

    fn on_message(&mut self, slot: usize, message: &[u8]) {
        match chat::read(message) {
            ServerMessage::Join { name } => {
                self.stats.joins_total += 1;
                if chat::is_name_of(name, self.clients[slot].global) {
                    self.on_joined(slot);
                }
            }
            ServerMessage::Leave => self.stats.leaves_total += 1,
            ServerMessage::Delivery(delivery) => self.on_delivery(slot, delivery),
            ServerMessage::Other => self.stats.other_messages_total += 1,
        }
    }

    /// One of loadgen's messages reached client `slot`.
    fn on_delivery(&mut self, slot: usize, delivery: Delivery) {
        if self.phase != Phase::Measure {
            // Outside the measured phase: neither counted nor timed.
            return;
        }
        let now_ns = self.now_ns();
        let sender = self.slot_of(delivery.sender);
        let room = self.clients[slot].room;
        let Some(sender) = sender.filter(|&s| s != slot && self.clients[s].room == room) else {
            // Not from another client of this room: the server misrouted it.
            self.stats.errors.protocol += 1;
            return;
        };
        self.stats
            .record_delivery(now_ns.saturating_sub(delivery.origin_ns));
        let client = &mut self.clients[sender];
        let Some(at) = client.outbox.iter().position(|o| o.seq == delivery.seq) else {
            // Its message already timed out, or its room shrank.
            return;
        };
        client.outbox[at].remaining -= 1;
        if client.outbox[at].remaining == 0 {
            client.outbox.remove(at);
            self.stats.completed_total += 1;
            self.send_more(sender, now_ns);
        }
    }

    /// The worker's slot of client `global`, if it is one of this worker's.
    fn slot_of(&self, global: u64) -> Option<usize> {
        let per_room = self.run.clients_per_room as u64;
        let room = usize::try_from(global / per_room).ok()?;
        let local = self.rooms.binary_search_by_key(&room, |r| r.global).ok()?;
        Some(self.rooms[local].first_slot + (global % per_room) as usize)
    }

    /// The sender's place in the run's order of senders (the schedule's).
    fn sender_index(&self, slot: usize) -> u64 {
        let client = &self.clients[slot];
        match self.run.senders {
            Senders::One => self.rooms[client.room].global as u64,
            Senders::All | Senders::None => client.global,
        }
    }

    /// The closed loop's first messages.
    pub(super) fn start_senders(&mut self) {
        if self.schedule.is_some() {
            return;
        }
        let now_ns = self.now_ns();
        for i in 0..self.senders.len() {
            self.send_more(self.senders[i], now_ns);
        }
    }

    /// Sends what the sender may send now: in closed loop its next message
    /// once nothing is outstanding, in open loop what has fallen due.
    fn send_more(&mut self, slot: usize, now_ns: u64) {
        match self.schedule.take() {
            None => {
                if self.clients[slot].outbox.is_empty() {
                    self.send_message(slot, now_ns, now_ns);
                }
            }
            Some(schedule) => {
                self.fill(slot, &schedule, now_ns);
                self.schedule = Some(schedule);
            }
        }
    }

    /// Open loop: sends the sender's messages that have fallen due, as far
    /// as its outbox allows.
    fn fill(&mut self, slot: usize, schedule: &Schedule, now_ns: u64) {
        let index = self.sender_index(slot);
        loop {
            let client = &self.clients[slot];
            if client.seq >= client.due || client.outbox.len() >= OUTBOX_MAX {
                return;
            }
            let origin_ns = self.measure_start_ns + schedule.intended_ns(index, client.seq);
            if !self.send_message(slot, origin_ns, now_ns) {
                return;
            }
        }
    }

    /// Open loop: hands each message whose send time has come to its sender.
    pub(super) fn release_due(&mut self, now_ns: u64) {
        let Some(mut schedule) = self.schedule.take() else {
            return;
        };
        let run_ns = now_ns.saturating_sub(self.measure_start_ns);
        while let Some(i) = schedule.pop_due(run_ns) {
            let slot = self.senders[i];
            self.clients[slot].due += 1;
            self.fill(slot, &schedule, now_ns);
        }
        self.schedule = Some(schedule);
    }

    /// Writes and sends one message; false when the client cannot send
    /// (not in its room, leaving, or alone there in closed loop).
    fn send_message(&mut self, slot: usize, origin_ns: u64, now_ns: u64) -> bool {
        let client = &self.clients[slot];
        let members = self.rooms[client.room].members;
        let can = self.phase == Phase::Measure
            && client.state == ClientState::Open
            && client.joined
            && !client.shut_when_sent;
        if !can {
            return false;
        }
        let recipients = members - 1;
        if recipients == 0 && self.schedule.is_none() {
            // Nobody to deliver to, so nothing would ever settle it.
            return false;
        }
        let sender = client.global;
        let seq = client.seq;
        let mask = self.mask();
        self.scratch.clear();
        chat::write_text(&mut self.scratch, sender, seq, origin_ns);
        let client = &mut self.clients[slot];
        frame::write_client_frame(client.pending(), Opcode::Text, &self.scratch, mask);
        if recipients > 0 {
            client.outbox.push_back(Outgoing {
                seq: client.seq,
                written_ns: now_ns,
                remaining: recipients,
            });
        }
        client.seq += 1;
        self.stats.messages_total += 1;
        self.start_send(slot);
        true
    }

    /// Counts messages that waited `--timeout` for their deliveries as
    /// timeouts and lets their senders go on.
    pub(super) fn expire_messages(&mut self, now_ns: u64) {
        for i in 0..self.senders.len() {
            let slot = self.senders[i];
            let mut expired = false;
            let client = &mut self.clients[slot];
            while let Some(oldest) = client.outbox.front() {
                if now_ns.saturating_sub(oldest.written_ns) < self.timeout_ns {
                    break;
                }
                client.outbox.pop_front();
                self.stats.errors.timeout += 1;
                expired = true;
            }
            if expired {
                self.send_more(slot, now_ns);
            }
        }
    }

    /// Client `slot`, a member of its room, is gone: the messages its room
    /// is waiting on need one recipient fewer. (If it had already seen
    /// one, that message settles a delivery early; its sender only moves
    /// on a little sooner.)
    pub(super) fn member_left(&mut self, slot: usize) {
        let room = self.clients[slot].room;
        self.rooms[room].members -= 1;
        self.clients[slot].outbox.clear();
        if self.phase != Phase::Measure {
            return;
        }
        let now_ns = self.now_ns();
        let first = self.rooms[room].first_slot;
        for other in first..first + self.run.clients_per_room {
            let client = &mut self.clients[other];
            if !client.sender || client.outbox.is_empty() {
                continue;
            }
            for outgoing in client.outbox.iter_mut() {
                outgoing.remaining = outgoing.remaining.saturating_sub(1);
            }
            let before = client.outbox.len();
            client.outbox.retain(|outgoing| outgoing.remaining > 0);
            let settled = (before - client.outbox.len()) as u64;
            self.stats.completed_total += settled;
            if settled > 0 {
                self.send_more(other, now_ns);
            }
        }
    }
}
