//! `queue`: ordered, durable processing per queue, one object per queue.
//!
//! | request | answer |
//! | --- | --- |
//! | `POST /queue/{name}/messages` (body: one message; or with `Content-Type: application/json`, `{"messages": ["…", …]}`) | `{"first_seq": n, "count": k}` once durable |
//! | `POST /queue/{name}/pull?max=N&visibility_ms=V&wait_ms=W&unordered=true` | `{"messages": [{"seq": n, "body": "…"}, …]}` |
//! | `POST /queue/{name}/ack` with `{"seqs": [n, …]}` or `{"through": n}` | `{"acked": k}` once durable |
//! | `GET /queue/{name}/consume?max_in_flight=N&visibility_ms=V&unordered=true` (WebSocket) | pushes `{"messages": […]}`; takes `{"ack": [n, …]}` or `{"through": n}`, answers `{"acked": k}` |
//! | `PUT /queue/{name}/push` with `{"class", "object", "method", "max_attempts", "backoff_ms"}` | `{"ok": true}`: each message becomes an RPC call |
//! | `GET`/`DELETE /queue/{name}/push` | the target, or `{"ok": true}` |
//! | `GET /queue/{name}/dead?limit=N` | `{"messages": [{"seq", "body", "error", "attempts"}, …]}` |
//! | `DELETE /queue/{name}/dead` | `{"deleted": n}` |
//! | `GET /queue/{name}` | `{"next_seq", "count", "bytes", "in_flight", "waiters", "consumers", "push", "dead"}` |
//!
//! The flow of one message: an append stores it under the next sequence
//! number and answers once it is durable; a pull (or a socket consumer
//! with room) leases it for `visibility_ms`; an ack deletes it and answers
//! once the delete is durable, so an acknowledged message is never handed
//! out again. A lease that ends makes the message available again
//! (at-least-once). A long-poll (`wait_ms`) is a deferred response, served
//! by the event that makes messages available or by the alarm at its
//! deadline; the alarm is the queue's one timer (deadlines, lease ends,
//! push retries).
//!
//! ```toml
//! [classes.queue]
//! message_bytes_max = 65536        # one message (413 past it)
//! batch_messages_max = 1000        # messages in one append (413)
//! queue_messages_max = 100000      # stored, unacknowledged (507 past it)
//! queue_bytes_max = 67108864       # their bytes (507)
//! pull_messages_max = 1000         # `max` of one pull (400)
//! visibility_ms_max = 43200000     # longest lease (400)
//! wait_ms_max = 30000              # longest long-poll (400)
//! waiters_max = 1000               # long-polls waiting at once (429)
//! in_flight_max = 10000            # leased messages at once (429)
//! socket_in_flight_max = 1000      # `max_in_flight` of one socket (400)
//! dead_letters_max = 10000         # kept; when full, push pauses on the
//!                                  # failing message until they are cleared
//! ```

mod delivery;
mod http;
mod push;
mod store;

use std::sync::Arc;

use durin_proto::rpc::ObjectRef;

use crate::config::{reject_unknown, take_u64, ConfigError};
use crate::object::{
    AlarmError, CallError, CallId, Context, DurableObject, Message, ObjectClass, Request, Response,
    WebSocket, ATTACHMENT_BYTES_MAX,
};
use crate::ObjectId;

use delivery::{Delivery, Holder, Want};
use push::Push;
use store::Meta;

crate::metrics::class_metrics! { QueueMetrics, "queue", {
    /// Messages stored by appends.
    messages_appended_total,
    /// Messages handed out (leased) to a pull or a consumer socket.
    messages_delivered_total,
    /// Leases that ended without an acknowledgement (the message is
    /// handed out again).
    leases_expired_total,
    /// Messages deleted by an acknowledgement.
    messages_acked_total,
    /// Push calls made.
    push_calls_total,
    /// Push calls that failed (retried with backoff, or dead-lettered).
    push_failures_total,
    /// Messages moved to the dead letters.
    messages_dead_lettered_total,
} }

/// The tag of consumer sockets.
const CONSUMER_TAG: &str = "consumer";
/// Most leases one socket can hold: its attachment keeps them (16 bytes
/// each, 13 of settings) within [`ATTACHMENT_BYTES_MAX`].
pub const SOCKET_IN_FLIGHT_LIMIT: u64 = 1000;
const _: () = assert!(13 + SOCKET_IN_FLIGHT_LIMIT as usize * 16 <= ATTACHMENT_BYTES_MAX);
/// Most dead letters a queue can be configured to keep: clearing them is
/// one listing, which returns at most this many.
pub const DEAD_LETTERS_LIMIT: u64 = crate::object::storage::LIST_ENTRIES_MAX as u64;

/// The class's limits, from `[classes.queue]`.
#[derive(Debug, Clone)]
pub struct Limits {
    pub message_bytes_max: u64,
    pub batch_messages_max: u64,
    pub queue_messages_max: u64,
    pub queue_bytes_max: u64,
    pub pull_messages_max: u64,
    pub visibility_ms_max: u64,
    pub wait_ms_max: u64,
    pub waiters_max: u64,
    pub in_flight_max: u64,
    pub socket_in_flight_max: u64,
    pub dead_letters_max: u64,
}

impl Limits {
    fn from_config(table: &mut toml::Table) -> Result<Limits, ConfigError> {
        let mut take = |key: &str, default: u64| take_u64(table, "queue", key, default);
        let limits = Limits {
            message_bytes_max: take("message_bytes_max", 64 * 1024)?,
            batch_messages_max: take("batch_messages_max", 1000)?,
            queue_messages_max: take("queue_messages_max", 100_000)?,
            queue_bytes_max: take("queue_bytes_max", 64 << 20)?,
            pull_messages_max: take("pull_messages_max", 1000)?,
            visibility_ms_max: take("visibility_ms_max", 12 * 3_600_000)?,
            wait_ms_max: take("wait_ms_max", 30_000)?,
            waiters_max: take("waiters_max", 1000)?,
            in_flight_max: take("in_flight_max", 10_000)?,
            socket_in_flight_max: take("socket_in_flight_max", 1000)?,
            dead_letters_max: take("dead_letters_max", 10_000)?,
        };
        if limits.dead_letters_max > DEAD_LETTERS_LIMIT {
            return Err(ConfigError(format!(
                "classes.queue.dead_letters_max must be at most {DEAD_LETTERS_LIMIT}"
            )));
        }
        if limits.socket_in_flight_max > SOCKET_IN_FLIGHT_LIMIT {
            return Err(ConfigError(format!(
                "classes.queue.socket_in_flight_max must be at most {SOCKET_IN_FLIGHT_LIMIT}"
            )));
        }
        Ok(limits)
    }
}

/// The queue class.
pub struct QueueClass {
    limits: Arc<Limits>,
}

impl QueueClass {
    pub fn from_config(table: &mut toml::Table) -> Result<QueueClass, ConfigError> {
        let limits = Limits::from_config(table)?;
        reject_unknown(table, "queue")?;
        Ok(QueueClass {
            limits: Arc::new(limits),
        })
    }
}

/// Registers the class under `queue` in a builder.
pub fn factory(table: &mut toml::Table) -> Result<Arc<dyn ObjectClass>, ConfigError> {
    Ok(Arc::new(QueueClass::from_config(table)?))
}

impl ObjectClass for QueueClass {
    fn create(&self, _id: &ObjectId, ctx: &mut Context<'_>) -> Box<dyn DurableObject> {
        let loaded = (|| {
            let meta = store::load_meta(ctx)?;
            let push = Push::load(ctx)?;
            let alarm_at_ms = ctx.storage().get_alarm()?;
            Ok::<_, crate::object::StorageError>((meta, push, alarm_at_ms))
        })();
        let (meta, push, alarm_at_ms, broken) = match loaded {
            Ok((meta, push, alarm)) => (meta, push, alarm, None),
            Err(e) => (Meta::default(), Push::default(), None, Some(e.to_string())),
        };
        Box::new(Queue {
            limits: Arc::clone(&self.limits),
            delivery: Delivery {
                floor: 1,
                ..Delivery::default()
            },
            meta,
            push,
            alarm_at_ms,
            sockets_restored: false,
            dirty_sockets: Vec::new(),
            broken,
        })
    }
}

pub(super) struct Queue {
    limits: Arc<Limits>,
    meta: Meta,
    delivery: Delivery,
    push: Push,
    /// The alarm as last set (or read at construction).
    alarm_at_ms: Option<u64>,
    /// Socket leases were read back from the attachments.
    sockets_restored: bool,
    /// Sockets whose leases changed this event (their attachment follows).
    dirty_sockets: Vec<WebSocket>,
    /// The stored state did not read back: every request gets this as a 500.
    broken: Option<String>,
}

impl DurableObject for Queue {
    fn fetch(&mut self, req: &Request<'_>, res: &mut Response, ctx: &mut Context<'_>) {
        if let Some(why) = &self.broken {
            return http::error(res, 500, why);
        }
        self.restore_sockets(ctx);
        self.route(req, res, ctx);
        self.pump(ctx);
    }

    fn alarm(&mut self, ctx: &mut Context<'_>) -> Result<(), AlarmError> {
        if let Some(why) = &self.broken {
            return Err(AlarmError(why.clone()));
        }
        self.alarm_at_ms = None;
        self.restore_sockets(ctx);
        self.pump(ctx);
        Ok(())
    }

    fn call_reply(&mut self, call: CallId, reply: Result<&[u8], CallError>, ctx: &mut Context<'_>) {
        if self.broken.is_some() {
            return;
        }
        self.restore_sockets(ctx);
        if let Err(e) = self.push_reply(call, reply, ctx) {
            log::debug!("queue {}: push reply: {e}", ctx.id());
        }
        self.pump(ctx);
    }

    fn websocket_message(&mut self, ws: WebSocket, msg: Message<'_>, ctx: &mut Context<'_>) {
        if self.broken.is_some() {
            return;
        }
        self.restore_sockets(ctx);
        let bytes = match msg {
            Message::Text(text) => text.as_bytes(),
            Message::Binary(bytes) => bytes,
        };
        let reply = match http::parse_ack(bytes) {
            Ok(ack) => match self.ack(ctx, &ack) {
                Ok(acked) => serde_json::json!({ "acked": acked }),
                Err(e) => serde_json::json!({ "error": e.to_string() }),
            },
            Err(why) => serde_json::json!({ "error": why }),
        };
        let _ = ctx.send(ws, Message::Text(&reply.to_string()));
        self.pump(ctx);
    }

    fn websocket_close(&mut self, ws: WebSocket, _code: u16, _reason: &str, ctx: &mut Context<'_>) {
        self.socket_gone(ws, ctx);
    }

    fn websocket_error(&mut self, ws: WebSocket, _error: &str, ctx: &mut Context<'_>) {
        self.socket_gone(ws, ctx);
    }
}

impl Queue {
    fn socket_gone(&mut self, ws: WebSocket, ctx: &mut Context<'_>) {
        if self.broken.is_some() {
            return;
        }
        self.restore_sockets(ctx);
        // Its messages are available again at once, not at lease end.
        self.delivery.release(Holder::Socket(ws));
        self.pump(ctx);
    }

    /// Reads socket consumers' leases back from their attachments, once per
    /// life in memory (after hibernation they are all that is left).
    fn restore_sockets(&mut self, ctx: &mut Context<'_>) {
        if self.sockets_restored {
            return;
        }
        self.sockets_restored = true;
        for ws in ctx.websockets(Some(CONSUMER_TAG)) {
            let Some((_, leases)) = ctx
                .deserialize_attachment(ws)
                .and_then(delivery::decode_attachment)
            else {
                continue;
            };
            for (seq, until_ms) in leases {
                let holder = Holder::Socket(ws);
                self.delivery
                    .restore(seq, delivery::Lease { until_ms, holder });
            }
        }
    }

    /// Acknowledges messages: deletes them and their leases. Returns how
    /// many were stored.
    fn ack(
        &mut self,
        ctx: &mut Context<'_>,
        ack: &http::Ack,
    ) -> Result<u64, crate::object::StorageError> {
        let removed = match ack {
            http::Ack::Seqs(seqs) => {
                let mut removed = Vec::new();
                for &seq in seqs {
                    if store::remove(ctx, &mut self.meta, seq)? {
                        removed.push(seq);
                    }
                }
                removed
            }
            http::Ack::Through(through) => {
                store::remove_through(ctx, &mut self.meta, self.delivery.floor, *through)?
            }
        };
        if !removed.is_empty() {
            store::store_meta(ctx, &self.meta)?;
        }
        QueueMetrics::add(|m| &m.messages_acked_total, removed.len() as u64);
        for seq in &removed {
            if let Some(lease) = self.delivery.leases.remove(seq) {
                self.mark_dirty(lease.holder);
            }
        }
        Ok(removed.len() as u64)
    }

    fn mark_dirty(&mut self, holder: Holder) {
        if let Holder::Socket(ws) = holder {
            if !self.dirty_sockets.contains(&ws) {
                self.dirty_sockets.push(ws);
            }
        }
    }

    /// Hands out what can be handed out, pushes, and sets the alarm for
    /// the next thing that will need the queue. Runs after every event.
    fn pump(&mut self, ctx: &mut Context<'_>) {
        for (_, holder) in self.delivery.expire(ctx.now_ms()) {
            self.mark_dirty(holder);
        }
        if let Err(e) = self.serve_waiters(ctx) {
            log::debug!("queue {}: serving long-polls: {e}", ctx.id());
        }
        if let Err(e) = self.serve_sockets(ctx) {
            log::debug!("queue {}: serving sockets: {e}", ctx.id());
        }
        if let Err(e) = self.push_next(ctx) {
            log::debug!("queue {}: push: {e}", ctx.id());
        }
        self.save_dirty_sockets(ctx);
        if let Err(e) = self.schedule(ctx) {
            log::debug!("queue {}: alarm: {e}", ctx.id());
        }
    }

    fn serve_waiters(&mut self, ctx: &mut Context<'_>) -> Result<(), crate::object::StorageError> {
        let now_ms = ctx.now_ms();
        let leases_max = self.limits.in_flight_max as usize;
        let mut i = 0;
        while i < self.delivery.waiters.len() {
            let (want, deadline_ms) = {
                let w = &self.delivery.waiters[i];
                (w.want, w.deadline_ms)
            };
            let handed = if self.push.target.is_some() {
                Vec::new()
            } else {
                self.delivery.take(ctx, want, Holder::Pull, leases_max)?
            };
            if handed.is_empty() && deadline_ms > now_ms {
                i += 1;
                continue;
            }
            if let Some(waiter) = self.delivery.waiters.remove(i) {
                let mut response = Response::default();
                http::messages(&mut response, &handed);
                ctx.respond(waiter.deferred, response);
            }
        }
        Ok(())
    }

    fn serve_sockets(&mut self, ctx: &mut Context<'_>) -> Result<(), crate::object::StorageError> {
        if self.push.target.is_some() {
            return Ok(());
        }
        let leases_max = self.limits.in_flight_max as usize;
        for ws in ctx.websockets(Some(CONSUMER_TAG)) {
            let Some((want, _)) = ctx
                .deserialize_attachment(ws)
                .and_then(delivery::decode_attachment)
            else {
                continue;
            };
            let held = self.delivery.held_by(Holder::Socket(ws));
            let room = want.max.saturating_sub(held);
            if room == 0 {
                continue;
            }
            let want = Want { max: room, ..want };
            let handed = self
                .delivery
                .take(ctx, want, Holder::Socket(ws), leases_max)?;
            if handed.is_empty() {
                continue;
            }
            let mut response = Response::default();
            http::messages(&mut response, &handed);
            let text = String::from_utf8_lossy(&response.body).into_owned();
            if ctx.send(ws, Message::Text(&text)).is_err() {
                self.delivery.release(Holder::Socket(ws));
                continue;
            }
            self.mark_dirty(Holder::Socket(ws));
        }
        Ok(())
    }

    /// Writes the leases of sockets that changed into their attachments.
    fn save_dirty_sockets(&mut self, ctx: &mut Context<'_>) {
        for ws in std::mem::take(&mut self.dirty_sockets) {
            let Some((want, _)) = ctx
                .deserialize_attachment(ws)
                .and_then(delivery::decode_attachment)
            else {
                continue;
            };
            let leases: Vec<(u64, u64)> = self
                .delivery
                .leases
                .iter()
                .filter(|(_, l)| l.holder == Holder::Socket(ws))
                .map(|(seq, l)| (*seq, l.until_ms))
                .collect();
            assert!(leases.len() as u64 <= SOCKET_IN_FLIGHT_LIMIT);
            let bytes = delivery::encode_attachment(want, &leases);
            // A socket closed meanwhile has no attachment to keep.
            let _ = ctx.serialize_attachment(ws, &bytes);
        }
    }

    /// Sends the head message to the push target, unless a call is away or
    /// its retry is not due.
    fn push_next(&mut self, ctx: &mut Context<'_>) -> Result<(), crate::object::StorageError> {
        let Some(target) = &self.push.target else {
            return Ok(());
        };
        if self.push.in_flight.is_some() {
            return Ok(());
        }
        let Some((seq, body)) = store::read_from(ctx, self.delivery.floor, 1)?.pop() else {
            return Ok(());
        };
        self.delivery.floor = seq;
        if self.push.not_before_ms(seq) > ctx.now_ms() {
            return Ok(());
        }
        let object = ObjectRef::Name(target.object.as_bytes().to_vec());
        let (class, method) = (target.class.clone(), target.method.clone());
        let call = ctx.call(&class, object, &method, &body);
        QueueMetrics::add(|m| &m.push_calls_total, 1);
        self.push.in_flight = Some((call, seq));
        Ok(())
    }

    fn push_reply(
        &mut self,
        call: CallId,
        reply: Result<&[u8], CallError>,
        ctx: &mut Context<'_>,
    ) -> Result<(), crate::object::StorageError> {
        let Some((expected, seq)) = self.push.in_flight else {
            return Ok(());
        };
        if call != expected {
            return Ok(());
        }
        self.push.in_flight = None;
        let Some(target) = self.push.target.clone() else {
            return Ok(());
        };
        match reply {
            Ok(_) => {
                if store::remove(ctx, &mut self.meta, seq)? {
                    store::store_meta(ctx, &self.meta)?;
                }
                if self.push.retry.is_some() {
                    self.push.store_retry(ctx, None)?;
                }
            }
            Err(e) => {
                QueueMetrics::add(|m| &m.push_failures_total, 1);
                let failures = self.push.failures(seq) + 1;
                if failures >= target.max_attempts {
                    self.dead_letter(ctx, seq, &e.to_string(), failures)?;
                } else {
                    let retry = push::Retry {
                        seq,
                        failures,
                        not_before_ms: ctx.now_ms() + target.backoff_after_ms(failures),
                    };
                    self.push.store_retry(ctx, Some(retry))?;
                }
            }
        }
        Ok(())
    }

    /// Moves message `seq` to the dead letters; with no room there, the
    /// message stays at the head and is tried again after the longest
    /// backoff, or as soon as the dead letters are cleared.
    fn dead_letter(
        &mut self,
        ctx: &mut Context<'_>,
        seq: u64,
        error: &str,
        attempts: u32,
    ) -> Result<(), crate::object::StorageError> {
        if self.push.dead_count >= self.limits.dead_letters_max {
            let retry = push::Retry {
                seq,
                failures: attempts,
                not_before_ms: ctx.now_ms() + push::BACKOFF_MS_MAX,
            };
            return self.push.store_retry(ctx, Some(retry));
        }
        let key = store::seq_key(store::MESSAGE_PREFIX, seq);
        if let Some(body) = ctx.storage().get(&key)? {
            let mut record = serde_json::Map::new();
            record.insert("seq".into(), seq.into());
            http::put_bytes(&mut record, "body", &body);
            record.insert("error".into(), error.into());
            record.insert("attempts".into(), attempts.into());
            let bytes = serde_json::Value::Object(record).to_string();
            ctx.storage()
                .put(&store::seq_key(store::DEAD_PREFIX, seq), bytes.as_bytes())?;
            self.push.store_dead_count(ctx, self.push.dead_count + 1)?;
            store::remove(ctx, &mut self.meta, seq)?;
            store::store_meta(ctx, &self.meta)?;
            QueueMetrics::add(|m| &m.messages_dead_lettered_total, 1);
        }
        self.push.store_retry(ctx, None)
    }

    /// Deletes every dead letter; a message waiting for room there is
    /// tried again at once.
    fn clear_dead(&mut self, ctx: &mut Context<'_>) -> Result<u64, crate::object::StorageError> {
        let dead = ctx.storage().list(&crate::object::ListOptions {
            prefix: Some(store::DEAD_PREFIX),
            ..Default::default()
        })?;
        let keys: Vec<&[u8]> = dead.iter().map(|(k, _)| k.as_slice()).collect();
        let deleted = ctx.storage().delete_many(&keys)?;
        self.push.store_dead_count(ctx, 0)?;
        let waiting = self
            .push
            .target
            .as_ref()
            .zip(self.push.retry)
            .is_some_and(|(target, retry)| retry.failures >= target.max_attempts);
        if waiting {
            self.push.store_retry(ctx, None)?;
        }
        Ok(deleted)
    }

    /// Sets the alarm for the earliest thing that needs the queue: a
    /// long-poll deadline, a lease ending while someone waits, a push retry
    /// or the watchdog of a call that is away.
    fn schedule(&mut self, ctx: &mut Context<'_>) -> Result<(), crate::object::StorageError> {
        let now_ms = ctx.now_ms();
        let mut wake: Option<u64> = self.delivery.waiters.iter().map(|w| w.deadline_ms).min();
        let waiting =
            !self.delivery.waiters.is_empty() || !ctx.websockets(Some(CONSUMER_TAG)).is_empty();
        if waiting {
            wake = min_some(wake, self.delivery.next_expiry_ms());
        }
        if self.push.target.is_some() && self.meta.count > 0 {
            let at = match self.push.in_flight {
                Some(_) => now_ms + push::WATCHDOG_MS,
                None => self.push.retry.map_or(now_ms, |r| r.not_before_ms),
            };
            wake = min_some(wake, Some(at.max(now_ms)));
        }
        let Some(wake) = wake else {
            return Ok(());
        };
        if self.alarm_at_ms.is_none_or(|at| wake < at) {
            ctx.storage().set_alarm(wake)?;
            self.alarm_at_ms = Some(wake);
        }
        Ok(())
    }
}

fn min_some(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}
