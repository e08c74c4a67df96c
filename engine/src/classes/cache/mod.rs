//! `cache`: a cache coordinator, one object per namespace, for consistent
//! invalidation of caches held elsewhere (edge caches, app servers).
//!
//! | request | answer |
//! | --- | --- |
//! | `PUT /cache/{ns}/keys/{key}?ttl_ms=T&if_version=V` (body: the value) | `{"version": v}`; 409 if `if_version` is not the entry's version (0: must not exist) |
//! | `GET /cache/{ns}/keys/{key}` | `{"value": …, "version": v, "expires_at_ms": …}`, or 404 |
//! | `DELETE /cache/{ns}/keys/{key}?if_version=V` | `{"version": v, "deleted": true\|false}`; 409 on a mismatch |
//! | `POST /cache/{ns}/invalidate` with `{"keys": […], "prefixes": […]}` | `{"version": v, "invalidated": n}` |
//! | `GET /cache/{ns}/subscribe?since=V` (WebSocket) | changes as `{"key", "version", "op"}` |
//! | `GET /cache/{ns}` | `{"version": v, "compacted_through": c, "subscribers": n}` |
//!
//! Every change (put, delete, invalidation of a key or a prefix) takes the
//! namespace's next version and is logged. Subscribers get each change
//! after it is durable (the output gate holds the message with the
//! write), in version order because the object runs one event at a time.
//! A subscriber that reconnects with `since=V` first gets every logged
//! change after V; if some were compacted away (or V is from the future)
//! it gets `{"op": "reset", "version": v}` instead and must drop what it
//! cached: no invalidation is ever missed silently. Subscribers keep
//! nothing in the object, so a namespace with only quiet subscribers
//! hibernates like a chat room.
//!
//! An entry past its TTL reads as absent; no change is pushed when it
//! expires, since every subscriber got `expires_at_ms` with the put's
//! version and expires it on its own clock.
//!
//! ```toml
//! [classes.cache]
//! entry_bytes_max = 65536     # one value (413)
//! ttl_ms_max = 2592000000     # longest TTL (400)
//! changes_max = 10000         # changes kept for catching up (older: reset)
//! invalidate_max = 1000       # keys + prefixes in one invalidation (413),
//!                             # and keys one prefix may cover (413)
//! subscribers_max = 10000     # subscribers of one namespace (429)
//! ```

mod store;

use std::sync::Arc;

use serde::Deserialize;
use serde_json::{json, Value as Json};

use crate::config::{reject_unknown, take_u64, ConfigError};
use crate::object::{
    percent_decode_component, query_param, Context, DurableObject, Message, ObjectClass, Request,
    Response, StorageError, TransactionError, WebSocket,
};
use crate::ObjectId;

use store::{Entry, Meta};

use super::{error, respond_json};
use crate::object::storage::LIST_ENTRIES_MAX;

const SUBSCRIBER_TAG: &str = "subscriber";

crate::metrics::class_metrics! { CacheMetrics, "cache", {
    /// Changes made (puts, deletes, invalidations of a key or a prefix).
    changes_total,
    /// Entries removed by invalidations.
    entries_invalidated_total,
    /// Writes refused because `if_version` did not match (409).
    version_conflicts_total,
    /// Changes sent to subscribers (live, or catching up).
    changes_sent_total,
    /// Resets sent to subscribers that asked for changes no longer kept.
    resets_sent_total,
} }

#[derive(Debug, Clone)]
pub struct Limits {
    pub entry_bytes_max: u64,
    pub ttl_ms_max: u64,
    pub changes_max: u64,
    pub invalidate_max: u64,
    pub subscribers_max: u64,
}

pub struct CacheClass {
    limits: Arc<Limits>,
}

impl CacheClass {
    pub fn from_config(table: &mut toml::Table) -> Result<CacheClass, ConfigError> {
        let mut take = |key: &str, default: u64| take_u64(table, "cache", key, default);
        let limits = Limits {
            entry_bytes_max: take("entry_bytes_max", 64 * 1024)?,
            ttl_ms_max: take("ttl_ms_max", 30 * 24 * 3_600_000)?,
            changes_max: take("changes_max", 10_000)?,
            invalidate_max: take("invalidate_max", 1000)?,
            subscribers_max: take("subscribers_max", 10_000)?,
        };
        reject_unknown(table, "cache")?;
        if limits.changes_max > LIST_ENTRIES_MAX as u64 {
            return Err(ConfigError(format!(
                "classes.cache.changes_max must be at most {LIST_ENTRIES_MAX}"
            )));
        }
        Ok(CacheClass {
            limits: Arc::new(limits),
        })
    }
}

/// Registers the class under `cache` in a builder.
pub fn factory(table: &mut toml::Table) -> Result<Arc<dyn ObjectClass>, ConfigError> {
    Ok(Arc::new(CacheClass::from_config(table)?))
}

impl ObjectClass for CacheClass {
    fn create(&self, _id: &ObjectId, ctx: &mut Context<'_>) -> Box<dyn DurableObject> {
        let (meta, broken) = match store::load_meta(&mut ctx.storage()) {
            Ok(meta) => (meta, None),
            Err(e) => (Meta::default(), Some(e.to_string())),
        };
        Box::new(Cache {
            limits: Arc::clone(&self.limits),
            meta,
            broken,
        })
    }
}

struct Cache {
    limits: Arc<Limits>,
    meta: Meta,
    /// The stored state did not read back: every request gets this as a 500.
    broken: Option<String>,
}

fn storage_error(res: &mut Response, e: &StorageError) {
    match e {
        StorageError::KeyTooLarge { .. } | StorageError::ValueTooLarge { .. } => {
            error(res, 413, &e.to_string())
        }
        StorageError::ObjectTooLarge { .. } => error(res, 507, &e.to_string()),
        _ => error(res, 500, &e.to_string()),
    }
}

/// Query parameter `name` as a number; `Err` names the problem.
fn number_param(query: Option<&str>, name: &str) -> Result<Option<u64>, String> {
    match query_param(query, name) {
        None => Ok(None),
        Some(bytes) => std::str::from_utf8(&bytes)
            .ok()
            .and_then(|t| t.parse::<u64>().ok())
            .map(Some)
            .ok_or_else(|| format!("{name} must be a non-negative integer")),
    }
}

/// Changes made: each version and the JSON subscribers get.
type Changes = Vec<(u64, String)>;
/// What a put or delete transaction gives: its changes, or the 409's body.
type Outcome = Result<Result<Changes, Json>, TransactionError<StorageError>>;

/// Why an invalidation did not apply.
enum Abort {
    TooWide(String),
    Storage(StorageError),
}

impl From<StorageError> for Abort {
    fn from(e: StorageError) -> Self {
        Abort::Storage(e)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InvalidateBody {
    #[serde(default)]
    keys: Vec<String>,
    #[serde(default)]
    prefixes: Vec<String>,
}

impl DurableObject for Cache {
    fn fetch(&mut self, req: &Request<'_>, res: &mut Response, ctx: &mut Context<'_>) {
        if let Some(why) = &self.broken {
            return error(res, 500, why);
        }
        if let Some(encoded) = req.path.strip_prefix("/keys/") {
            let Some(key) = percent_decode_component(encoded, false) else {
                return error(res, 400, "invalid percent-encoding in key");
            };
            return match req.method {
                "PUT" => self.put(&key, req, res, ctx),
                "GET" => get(&key, res, ctx),
                "DELETE" => self.delete(&key, req, res, ctx),
                _ => {
                    res.method_not_allowed("GET, PUT, DELETE");
                }
            };
        }
        match (req.method, req.path) {
            ("POST", "/invalidate") => self.invalidate(req.body, res, ctx),
            ("GET", "/subscribe") => self.subscribe(req, res, ctx),
            ("GET", "") => {
                let body = json!({
                    "version": self.meta.version,
                    "compacted_through": self.meta.compacted_through,
                    "subscribers": ctx.websockets(Some(SUBSCRIBER_TAG)).len(),
                });
                respond_json(res, 200, &body);
            }
            (_, "/invalidate") => {
                res.method_not_allowed("POST");
            }
            (_, "/subscribe" | "") => {
                res.method_not_allowed("GET");
            }
            _ => {
                res.text(404, "Not found");
            }
        }
    }

    /// A subscriber may also ask to catch up over the socket with
    /// `{"since": V}` (after a network blip it did not notice, say).
    fn websocket_message(&mut self, ws: WebSocket, msg: Message<'_>, ctx: &mut Context<'_>) {
        let bytes = match msg {
            Message::Text(text) => text.as_bytes(),
            Message::Binary(bytes) => bytes,
        };
        let since = serde_json::from_slice::<Json>(bytes)
            .ok()
            .and_then(|j| j.get("since").and_then(Json::as_u64));
        match since {
            Some(since) => self.catch_up(ws, since, ctx),
            None => {
                let reply = json!({ "error": "send {\"since\": V} to catch up" });
                let _ = ctx.send(ws, Message::Text(&reply.to_string()));
            }
        }
    }
}

fn get(key: &[u8], res: &mut Response, ctx: &mut Context<'_>) {
    match store::get(&mut ctx.storage(), key) {
        Ok(Some(entry)) if !entry.expired(ctx.now_ms()) => {
            let mut map = serde_json::Map::new();
            match std::str::from_utf8(&entry.value) {
                Ok(text) => map.insert("value".into(), text.into()),
                Err(_) => {
                    use base64::Engine as _;
                    let encoded = base64::engine::general_purpose::STANDARD.encode(&entry.value);
                    map.insert("value_base64".into(), encoded.into())
                }
            };
            map.insert("version".into(), entry.version.into());
            map.insert("expires_at_ms".into(), json!(entry.expires_at_ms));
            respond_json(res, 200, &Json::Object(map));
        }
        Ok(_) => error(res, 404, "no such key"),
        Err(e) => storage_error(res, &e),
    }
}

/// Checks `if_version` against the entry; `Err` is the 409 to send.
fn check_version(
    current: Option<&Entry>,
    if_version: Option<u64>,
    now_ms: u64,
) -> Result<(), Json> {
    let Some(expected) = if_version else {
        return Ok(());
    };
    let actual = current
        .filter(|e| !e.expired(now_ms))
        .map_or(0, |e| e.version);
    if actual == expected {
        return Ok(());
    }
    Err(json!({
        "error": "version mismatch; nothing was changed",
        "version": actual,
    }))
}

impl Cache {
    fn put(&mut self, key: &[u8], req: &Request<'_>, res: &mut Response, ctx: &mut Context<'_>) {
        let params = number_param(req.query, "ttl_ms")
            .and_then(|ttl| Ok((ttl, number_param(req.query, "if_version")?)));
        let (ttl_ms, if_version) = match params {
            Ok(p) => p,
            Err(why) => return error(res, 400, &why),
        };
        if ttl_ms.is_some_and(|t| t == 0 || t > self.limits.ttl_ms_max) {
            let max = self.limits.ttl_ms_max;
            return error(res, 400, &format!("ttl_ms must be 1 to {max}"));
        }
        if req.body.len() as u64 > self.limits.entry_bytes_max {
            let max = self.limits.entry_bytes_max;
            return error(res, 413, &format!("the value is over the {max}-byte limit"));
        }
        let now_ms = ctx.now_ms();
        let changes_max = self.limits.changes_max;
        let mut meta = self.meta;
        // One transaction: a limit that refuses any write leaves neither
        // the entry nor its change behind.
        let result = ctx.storage().transaction(|storage| {
            let current = store::get(storage, key)?;
            if let Err(conflict) = check_version(current.as_ref(), if_version, now_ms) {
                return Ok(Err(conflict));
            }
            let entry = Entry {
                version: meta.version + 1,
                expires_at_ms: ttl_ms.map(|t| now_ms.saturating_add(t)),
                value: req.body.to_vec(),
            };
            store::put(storage, key, &entry)?;
            let change = store::record(storage, &mut meta, key, "put", changes_max)?;
            assert_eq!(change.0, entry.version);
            Ok(Ok(vec![change]))
        });
        self.finish(res, ctx, meta, result);
    }

    fn delete(&mut self, key: &[u8], req: &Request<'_>, res: &mut Response, ctx: &mut Context<'_>) {
        let if_version = match number_param(req.query, "if_version") {
            Ok(v) => v,
            Err(why) => return error(res, 400, &why),
        };
        let now_ms = ctx.now_ms();
        let changes_max = self.limits.changes_max;
        let mut meta = self.meta;
        let result = ctx.storage().transaction(|storage| {
            let current = store::get(storage, key)?;
            if let Err(conflict) = check_version(current.as_ref(), if_version, now_ms) {
                return Ok(Err(conflict));
            }
            store::delete(storage, key)?;
            let change = store::record(storage, &mut meta, key, "delete", changes_max)?;
            Ok(Ok(vec![change]))
        });
        self.finish(res, ctx, meta, result);
    }

    /// Answers a change that ran as a transaction: on success the new meta
    /// stands and every subscriber gets the changes; a conflict is a 409; a
    /// storage error rolled everything back.
    fn finish(&mut self, res: &mut Response, ctx: &mut Context<'_>, meta: Meta, result: Outcome) {
        match result {
            Ok(Ok(changes)) => {
                self.meta = meta;
                CacheMetrics::add(|m| &m.changes_total, changes.len() as u64);
                for (_, change) in &changes {
                    broadcast(ctx, change);
                }
                let version = changes.last().map_or(meta.version, |(v, _)| *v);
                respond_json(res, 200, &json!({ "version": version }));
            }
            Ok(Err(conflict)) => {
                CacheMetrics::add(|m| &m.version_conflicts_total, 1);
                respond_json(res, 409, &conflict)
            }
            Err(TransactionError::Aborted(e)) => storage_error(res, &e),
        }
    }

    fn invalidate(&mut self, body: &[u8], res: &mut Response, ctx: &mut Context<'_>) {
        let parsed: InvalidateBody = match serde_json::from_slice(body) {
            Ok(b) => b,
            Err(e) => return error(res, 400, &format!("malformed invalidation: {e}")),
        };
        let max = self.limits.invalidate_max as usize;
        if parsed.keys.len() + parsed.prefixes.len() > max {
            return error(
                res,
                413,
                &format!("at most {max} keys and prefixes at once"),
            );
        }
        if parsed.keys.is_empty() && parsed.prefixes.is_empty() {
            return error(res, 400, "give keys or prefixes to invalidate");
        }
        let changes_max = self.limits.changes_max;
        let mut meta = self.meta;
        let mut invalidated = 0u64;
        let result = ctx.storage().transaction(|storage| {
            let mut changes = Vec::new();
            for key in &parsed.keys {
                invalidated += u64::from(store::delete(storage, key.as_bytes())?);
                let op = "invalidate";
                changes.push(store::record(storage, &mut meta, key.as_bytes(), op, changes_max)?);
            }
            for prefix in &parsed.prefixes {
                let keys = store::keys_with_prefix(storage, prefix.as_bytes(), max + 1)?;
                if keys.len() > max {
                    // An error rolls back the deletes and changes before it.
                    return Err(Abort::TooWide(format!(
                        "prefix {prefix:?} covers more than {max} keys; nothing was invalidated; use narrower prefixes"
                    )));
                }
                for key in &keys {
                    invalidated += u64::from(store::delete(storage, key)?);
                }
                let op = "invalidate_prefix";
                changes.push(store::record(storage, &mut meta, prefix.as_bytes(), op, changes_max)?);
            }
            Ok(changes)
        });
        match result {
            Ok(changes) => {
                self.meta = meta;
                CacheMetrics::add(|m| &m.changes_total, changes.len() as u64);
                CacheMetrics::add(|m| &m.entries_invalidated_total, invalidated);
                for (_, change) in &changes {
                    broadcast(ctx, change);
                }
                let body = json!({ "version": meta.version, "invalidated": invalidated });
                respond_json(res, 200, &body);
            }
            Err(TransactionError::Aborted(Abort::TooWide(why))) => error(res, 413, &why),
            Err(TransactionError::Aborted(Abort::Storage(e))) => storage_error(res, &e),
        }
    }

    fn subscribe(&mut self, req: &Request<'_>, res: &mut Response, ctx: &mut Context<'_>) {
        if !req.is_websocket_upgrade() {
            return error(res, 400, "Expected WebSocket");
        }
        let since = match number_param(req.query, "since") {
            Ok(s) => s,
            Err(why) => return error(res, 400, &why),
        };
        if ctx.websockets(Some(SUBSCRIBER_TAG)).len() as u64 >= self.limits.subscribers_max {
            let max = self.limits.subscribers_max;
            return error(res, 429, &format!("{max} subscribers already; try later"));
        }
        let ws = match ctx.accept_websocket(&[SUBSCRIBER_TAG]) {
            Ok(ws) => ws,
            Err(e) => return error(res, 400, &e.to_string()),
        };
        if let Some(since) = since {
            self.catch_up(ws, since, ctx);
        }
    }

    /// Sends a subscriber the changes after `since`, or a reset.
    fn catch_up(&mut self, ws: WebSocket, since: u64, ctx: &mut Context<'_>) {
        let meta = self.meta;
        if since < meta.compacted_through || since > meta.version {
            let reset = json!({ "op": "reset", "version": meta.version }).to_string();
            let _ = ctx.send(ws, Message::Text(&reset));
            CacheMetrics::add(|m| &m.resets_sent_total, 1);
            return;
        }
        let limit = (meta.version - since) as usize;
        match store::changes_since(&mut ctx.storage(), since, limit) {
            Ok(changes) => {
                // The log holds every version from compacted_through + 1 on.
                assert_eq!(changes.len(), limit);
                CacheMetrics::add(|m| &m.changes_sent_total, changes.len() as u64);
                for change in changes {
                    let _ = ctx.send(ws, Message::Text(&change));
                }
            }
            Err(e) => {
                log::debug!("cache {}: catching up: {e}", ctx.id());
                let _ = ctx.close_websocket(ws, 4500, "cannot read the change log");
            }
        }
    }
}

/// Sends a change to every subscriber.
fn broadcast(ctx: &mut Context<'_>, change: &str) {
    let subscribers = ctx.websockets(Some(SUBSCRIBER_TAG));
    CacheMetrics::add(|m| &m.changes_sent_total, subscribers.len() as u64);
    for ws in subscribers {
        // A subscriber closing meanwhile catches up when it reconnects.
        let _ = ctx.send(ws, Message::Text(change));
    }
}
