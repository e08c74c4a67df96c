//! `doc`: a Yjs document per object, served to unmodified y-websocket
//! clients (the seed's Collaboration Hub).
//!
//! ```js
//! new WebsocketProvider('ws://127.0.0.1:8080/doc', 'my-doc', ydoc)
//! ```
//! connects to the object `doc/my-doc`: the room name is everything after
//! `/doc/`, slashes included; the query string is ignored.
//!
//! - **WebSocket** (`/doc/{name}` with `Upgrade`): the y-websocket protocol
//!   ([`protocol`]), one message per frame. On connect the server sends
//!   SyncStep1 and the present awareness states; a client's SyncStep1 is
//!   answered with SyncStep2 to it alone; an update is validated, logged,
//!   and sent to the room's other sockets once it is durable (the output
//!   gate); awareness is relayed with the JavaScript rules ([`awareness`]).
//! - **HTTP**: `GET /doc/{name}` → the document as a v1 update
//!   (`?sv=BASE64` → only what a peer at that state vector lacks);
//!   `GET /doc/{name}/state-vector`; `POST /doc/{name}` with a v1 update
//!   → applied, logged, broadcast, `204`; a bad update → `400` and nothing
//!   stored. A document whose name ends in `/state-vector` is reached over
//!   HTTP with its last slash percent-encoded (`/doc/a%2Fstate-vector`);
//!   WebSocket names never lose a suffix.
//! - **Storage** ([`store`]): a snapshot plus a log of updates; compacted
//!   by alarm when the log passes its limits and when the room empties.
//! - **Memory**: the loaded document ([`ydoc`]) is a cache, loaded when a
//!   sync needs it and dropped after `doc_idle_ms` without one, even while
//!   sockets stay open; rooms hibernate like chat rooms, each socket's
//!   awareness clients in its attachment.
//!
//! Close codes: 1003 a text message; 1007 a malformed message or update;
//! 1009 a message over `update_bytes_max` or an awareness state over
//! `awareness_state_bytes_max`; 4413 the document would pass
//! `doc_bytes_max`; 4429 a socket announcing more than 4 awareness
//! clients; 1011 a storage failure.
//!
//! ```toml
//! [classes.doc]
//! update_bytes_max = 1048576          # a larger message closes with 1009
//! doc_bytes_max = 16777216            # snapshot + log; past it 4413 / 413
//! awareness_state_bytes_max = 4000    # one client's JSON state (at most 4000)
//! compact_log_entries = 500           # compact when the log passes this ...
//! compact_log_bytes = 1048576         # ... or this
//! doc_idle_ms = 30000                 # drop the loaded document after this
//! ```

pub mod awareness;
mod config;
mod http;
pub mod protocol;
pub mod store;
pub mod ydoc;

use std::sync::Arc;

use crate::config::ConfigError;
use crate::object::{
    AlarmError, Context, DurableObject, Message, NamePath, ObjectClass, Request, Response,
    StorageError, WebSocket,
};
use crate::ObjectId;
use awareness::{Refused, Relay};
pub use config::DocConfig;
use protocol::Decoded;
use store::Meta;
use ydoc::{YDoc, YError};

/// Close codes the class answers with (see the module's table).
pub mod close {
    pub const TEXT_MESSAGE: u16 = 1003;
    pub const MALFORMED: u16 = 1007;
    pub const TOO_LARGE: u16 = 1009;
    pub const STORAGE_FAILED: u16 = 1011;
    pub const DOC_TOO_LARGE: u16 = 4413;
    pub const TOO_MANY_CLIENTS: u16 = 4429;
}

pub struct DocClass {
    config: Arc<DocConfig>,
}

impl ObjectClass for DocClass {
    fn create(&self, _id: &ObjectId, _ctx: &mut Context<'_>) -> Box<dyn DurableObject> {
        Box::new(DocRoom {
            config: Arc::clone(&self.config),
            meta: None,
            doc: None,
            doc_used_ms: 0,
            relay: None,
        })
    }

    fn name_path(&self) -> NamePath {
        NamePath::Rest {
            suffixes: &["/state-vector"],
        }
    }
}

/// Registers the class under `doc` in a builder.
pub fn factory(table: &mut toml::Table) -> Result<Arc<dyn ObjectClass>, ConfigError> {
    Ok(Arc::new(DocClass {
        config: Arc::new(DocConfig::from_config(table)?),
    }))
}

/// Why an update was not taken.
#[derive(Debug)]
enum UpdateRefused {
    TooLarge { bytes: usize, max: usize },
    Malformed(YError),
    DocTooLarge { bytes: u64, max: u64 },
    Storage(StorageError),
}

impl UpdateRefused {
    fn close_code(&self) -> u16 {
        match self {
            UpdateRefused::TooLarge { .. } => close::TOO_LARGE,
            UpdateRefused::Malformed(_) => close::MALFORMED,
            UpdateRefused::DocTooLarge { .. } => close::DOC_TOO_LARGE,
            UpdateRefused::Storage(_) => close::STORAGE_FAILED,
        }
    }

    fn http_status(&self) -> u16 {
        match self {
            UpdateRefused::TooLarge { .. } | UpdateRefused::DocTooLarge { .. } => 413,
            UpdateRefused::Malformed(_) => 400,
            UpdateRefused::Storage(_) => 500,
        }
    }
}

impl std::fmt::Display for UpdateRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UpdateRefused::TooLarge { bytes, max } => {
                write!(f, "update of {bytes} bytes, at most {max}")
            }
            UpdateRefused::Malformed(e) => write!(f, "update {e}"),
            UpdateRefused::DocTooLarge { bytes, max } => {
                write!(f, "document would be {bytes} bytes, at most {max}")
            }
            UpdateRefused::Storage(e) => write!(f, "storage: {e}"),
        }
    }
}

struct DocRoom {
    config: Arc<DocConfig>,
    /// The stored document's meta record, once read.
    meta: Option<Meta>,
    /// The loaded document, a cache of what storage holds.
    doc: Option<YDoc>,
    /// When a sync last needed the loaded document.
    doc_used_ms: u64,
    /// The awareness relay, rebuilt from the sockets' attachments.
    relay: Option<Relay>,
}

impl DurableObject for DocRoom {
    fn fetch(&mut self, req: &Request<'_>, res: &mut Response, ctx: &mut Context<'_>) {
        self.drop_idle_doc(ctx.now_ms());
        match (req.path, req.method) {
            ("", _) if req.is_websocket_upgrade() => self.join(res, ctx),
            ("", "GET") => self.get_doc(req, res, ctx),
            ("", "POST") => self.post_update(req, res, ctx),
            ("", _) => {
                res.method_not_allowed("GET, POST");
            }
            ("/state-vector", "GET") => self.get_state_vector(res, ctx),
            ("/state-vector", _) => {
                res.method_not_allowed("GET");
            }
            _ => {
                res.text(404, "Not found");
            }
        }
    }

    fn websocket_message(&mut self, ws: WebSocket, msg: Message<'_>, ctx: &mut Context<'_>) {
        self.drop_idle_doc(ctx.now_ms());
        self.remove_outdated_awareness(ctx);
        let bytes = match msg {
            Message::Binary(bytes) => bytes,
            Message::Text(_) => {
                let reason = "the y-websocket protocol is binary";
                self.refuse(ws, close::TEXT_MESSAGE, reason, ctx);
                return;
            }
        };
        if bytes.len() > self.config.update_bytes_max {
            let reason = format!(
                "message of {} bytes, at most {}",
                bytes.len(),
                self.config.update_bytes_max
            );
            self.refuse(ws, close::TOO_LARGE, &reason, ctx);
            return;
        }
        match protocol::decode(bytes) {
            Ok(Decoded::Step1(sv)) => self.answer_step1(ws, sv, ctx),
            Ok(Decoded::Step2(update) | Decoded::Update(update)) => {
                if let Err(e) = self.take_update(Some(ws), update, ctx) {
                    log::debug!("doc {}: update refused: {e}", ctx.id());
                    self.refuse(ws, e.close_code(), &e.to_string(), ctx);
                }
            }
            Ok(Decoded::Awareness(payload)) => self.take_awareness(ws, payload, ctx),
            Ok(Decoded::QueryAwareness) => {
                let relay = self.relay(ctx);
                let present = relay.present();
                if !present.is_empty() {
                    let frame = relay.encode(&present);
                    let _ = ctx.send(ws, Message::Binary(&frame));
                }
            }
            Ok(Decoded::Auth) => {}
            Err(e) => {
                log::debug!("doc {}: malformed message: {e}", ctx.id());
                self.refuse(ws, close::MALFORMED, &e.to_string(), ctx);
            }
        }
    }

    fn websocket_close(&mut self, ws: WebSocket, _code: u16, _reason: &str, ctx: &mut Context<'_>) {
        self.leave(ws, ctx);
    }

    fn websocket_error(&mut self, ws: WebSocket, _error: &str, ctx: &mut Context<'_>) {
        self.leave(ws, ctx);
    }

    fn alarm(&mut self, ctx: &mut Context<'_>) -> Result<(), AlarmError> {
        self.compact(ctx)
            .map_err(|e| AlarmError(format!("compacting the document: {e}")))?;
        if ctx.websockets(None).is_empty() {
            self.doc = None;
        }
        Ok(())
    }
}

impl DocRoom {
    /// Drops the loaded document once no sync has needed it for a while;
    /// updates keep flowing to storage without it.
    fn drop_idle_doc(&mut self, now_ms: u64) {
        if self.doc.is_some() && now_ms.saturating_sub(self.doc_used_ms) >= self.config.doc_idle_ms
        {
            self.doc = None;
        }
    }

    fn meta(&mut self, ctx: &mut Context<'_>) -> Result<Meta, StorageError> {
        if let Some(meta) = self.meta {
            return Ok(meta);
        }
        let meta = store::read_meta(&mut ctx.storage())?;
        self.meta = Some(meta);
        Ok(meta)
    }

    /// The loaded document, loading it from storage if needed.
    fn loaded(&mut self, ctx: &mut Context<'_>) -> Result<&mut YDoc, StorageError> {
        self.doc_used_ms = ctx.now_ms();
        if self.doc.is_none() {
            let meta = self.meta(ctx)?;
            let stored = store::load(&mut ctx.storage(), &meta)?;
            let mut doc = YDoc::new();
            if let Some(snapshot) = &stored.snapshot {
                if let Err(e) = doc.apply(snapshot) {
                    log::warn!("doc {}: the snapshot does not apply: {e}", ctx.id());
                }
            }
            // Each entry decoded when it was logged; one yrs refuses is
            // skipped by every load alike.
            let skipped = doc.apply_all(&stored.log);
            if skipped > 0 {
                log::debug!("doc {}: {skipped} logged updates skipped", ctx.id());
            }
            self.doc = Some(doc);
        }
        Ok(self.doc.as_mut().expect("loaded just above"))
    }

    fn relay(&mut self, ctx: &Context<'_>) -> &mut Relay {
        self.relay.get_or_insert_with(|| {
            let mut relay = Relay::default();
            for ws in ctx.websockets(None) {
                if let Some(attachment) = ctx.deserialize_attachment(ws) {
                    if relay.restore(ws, attachment, ctx.now_ms()).is_err() {
                        log::warn!("doc {}: an awareness attachment does not decode", ctx.id());
                    }
                }
            }
            relay
        })
    }

    fn join(&mut self, res: &mut Response, ctx: &mut Context<'_>) {
        let step1 = match self.loaded(ctx) {
            Ok(doc) => protocol::encode_sync_step1(&doc.state_vector()),
            Err(e) => return http::storage_failed(res, &e),
        };
        // Rebuild the relay before the new socket joins it.
        self.relay(ctx);
        let ws = match ctx.accept_websocket(&[]) {
            Ok(ws) => ws,
            Err(e) => {
                res.text(400, &e.to_string());
                return;
            }
        };
        let _ = ctx.send(ws, Message::Binary(&step1));
        let relay = self.relay(ctx);
        let present = relay.present();
        if !present.is_empty() {
            let frame = relay.encode(&present);
            let _ = ctx.send(ws, Message::Binary(&frame));
        }
    }

    fn answer_step1(&mut self, ws: WebSocket, sv: &[u8], ctx: &mut Context<'_>) {
        let sv = match ydoc::decode_state_vector(sv) {
            Ok(sv) => sv,
            Err(e) => {
                self.refuse(ws, close::MALFORMED, &format!("state vector {e}"), ctx);
                return;
            }
        };
        match self.loaded(ctx) {
            Ok(doc) => {
                let frame = protocol::encode_sync_step2(&doc.diff(&sv));
                let _ = ctx.send(ws, Message::Binary(&frame));
            }
            Err(e) => {
                log::warn!("doc {}: loading failed: {e}", ctx.id());
                self.refuse(ws, close::STORAGE_FAILED, "storage failed", ctx);
            }
        }
    }

    /// Validates, logs and broadcasts one update (from `from`, or from
    /// HTTP). What is broadcast leaves once the log entry is durable.
    fn take_update(
        &mut self,
        from: Option<WebSocket>,
        update: &[u8],
        ctx: &mut Context<'_>,
    ) -> Result<(), UpdateRefused> {
        if update.len() > self.config.update_bytes_max {
            return Err(UpdateRefused::TooLarge {
                bytes: update.len(),
                max: self.config.update_bytes_max,
            });
        }
        let decoded = ydoc::decode_update(update).map_err(UpdateRefused::Malformed)?;
        if decoded.is_empty() {
            return Ok(());
        }
        let mut meta = self.meta(ctx).map_err(UpdateRefused::Storage)?;
        let bytes = meta.doc_bytes() + update.len() as u64;
        if bytes > self.config.doc_bytes_max {
            return Err(UpdateRefused::DocTooLarge {
                bytes,
                max: self.config.doc_bytes_max,
            });
        }
        if let Some(doc) = self.doc.as_mut() {
            doc.apply(update).map_err(UpdateRefused::Malformed)?;
        }
        if let Err(e) = store::append(&mut ctx.storage(), &mut meta, update) {
            // The loaded document took what storage did not.
            self.doc = None;
            return Err(match e {
                StorageError::ObjectTooLarge { bytes, max } => {
                    UpdateRefused::DocTooLarge { bytes, max }
                }
                e => UpdateRefused::Storage(e),
            });
        }
        self.meta = Some(meta);
        let frame = protocol::encode_sync_update(update);
        for ws in ctx.websockets(None) {
            if Some(ws) != from {
                // A socket closing meanwhile misses it; it syncs on reconnect.
                let _ = ctx.send(ws, Message::Binary(&frame));
            }
        }
        if meta.log_entries > self.config.compact_log_entries
            || meta.log_bytes > self.config.compact_log_bytes
        {
            self.schedule_compaction(ctx);
        }
        Ok(())
    }

    fn schedule_compaction(&mut self, ctx: &mut Context<'_>) {
        let now_ms = ctx.now_ms();
        let mut s = ctx.storage();
        if let Ok(None) = s.get_alarm() {
            if let Err(e) = s.set_alarm(now_ms) {
                log::warn!("doc: scheduling compaction: {e}");
            }
        }
    }

    fn take_awareness(&mut self, ws: WebSocket, payload: &[u8], ctx: &mut Context<'_>) {
        let entries = match protocol::decode_awareness(payload) {
            Ok(entries) => entries,
            Err(e) => {
                self.refuse(ws, close::MALFORMED, &e.to_string(), ctx);
                return;
            }
        };
        let state_bytes_max = self.config.awareness_state_bytes_max;
        let now_ms = ctx.now_ms();
        let relay = self.relay(ctx);
        let taken = match relay.apply(ws, &entries, state_bytes_max, now_ms) {
            Ok(taken) => taken,
            Err(Refused::StateTooLarge { bytes, max }) => {
                let reason = format!("awareness state of {bytes} bytes, at most {max}");
                self.refuse(ws, close::TOO_LARGE, &reason, ctx);
                return;
            }
            Err(Refused::TooManyClients { max }) => {
                let reason = format!("more than {max} awareness clients on one socket");
                self.refuse(ws, close::TOO_MANY_CLIENTS, &reason, ctx);
                return;
            }
        };
        if taken.is_empty() {
            return;
        }
        let frame = relay.encode(&taken);
        let attachment = relay.attachment_of(ws);
        if ctx.serialize_attachment(ws, &attachment).is_err() {
            log::warn!("doc {}: an awareness attachment over its limit", ctx.id());
        }
        // The sender too: its renewals coming back keep it connected.
        for socket in ctx.websockets(None) {
            let _ = ctx.send(socket, Message::Binary(&frame));
        }
    }

    /// Removes awareness states not renewed for 30 s and tells the room.
    fn remove_outdated_awareness(&mut self, ctx: &mut Context<'_>) {
        let now_ms = ctx.now_ms();
        let Some(relay) = self.relay.as_mut() else {
            return;
        };
        let outdated = relay.remove_outdated(now_ms);
        if outdated.is_empty() {
            return;
        }
        let ids: Vec<u64> = outdated.iter().map(|&(id, _)| id).collect();
        let frame = relay.encode(&ids);
        let mut owners: Vec<WebSocket> = outdated.iter().filter_map(|&(_, ws)| ws).collect();
        owners.dedup();
        for ws in owners {
            let attachment = relay.attachment_of(ws);
            let _ = ctx.serialize_attachment(ws, &attachment);
        }
        for socket in ctx.websockets(None) {
            let _ = ctx.send(socket, Message::Binary(&frame));
        }
    }

    /// Closes a socket for what it sent. No close event follows a close
    /// the object makes, so its awareness clients are removed here.
    fn refuse(&mut self, ws: WebSocket, code: u16, reason: &str, ctx: &mut Context<'_>) {
        if ctx.close_websocket(ws, code, reason).is_ok() {
            self.leave(ws, ctx);
        }
    }

    fn leave(&mut self, ws: WebSocket, ctx: &mut Context<'_>) {
        let relay = self.relay(ctx);
        let removed = relay.remove_socket(ws);
        let others: Vec<WebSocket> = ctx
            .websockets(None)
            .into_iter()
            .filter(|&s| s != ws)
            .collect();
        if !removed.is_empty() {
            let frame = relay.encode(&removed);
            for socket in &others {
                let _ = ctx.send(*socket, Message::Binary(&frame));
            }
        }
        if others.is_empty() {
            // The room emptied: compact now and let the memory go.
            self.doc = None;
            self.relay = None;
            if self.meta(ctx).is_ok_and(|m| m.log_entries > 0) {
                self.schedule_compaction(ctx);
            }
        }
    }

    /// Writes a snapshot and deletes the log, in this event's transaction.
    fn compact(&mut self, ctx: &mut Context<'_>) -> Result<(), StorageError> {
        let mut meta = self.meta(ctx)?;
        if meta.log_entries == 0 {
            return Ok(());
        }
        let doc = self.loaded(ctx)?;
        let snapshot = doc.snapshot();
        let pending = doc.pending().to_vec();
        store::compact(&mut ctx.storage(), &mut meta, &snapshot, &pending)?;
        self.meta = Some(meta);
        log::debug!(
            "doc {}: compacted to a snapshot of {} bytes",
            ctx.id(),
            snapshot.len()
        );
        Ok(())
    }
}
