//! `kv`: an object's storage API over HTTP, for scripts, tests and users
//! who do not write Rust.
//!
//! | request | answer |
//! | --- | --- |
//! | `PUT /kv/{object}/keys/{key}` (body: the value) | `{"ok": true}` once durable |
//! | `GET /kv/{object}/keys/{key}` | the value's bytes, or 404 |
//! | `DELETE /kv/{object}/keys/{key}` | `{"deleted": true\|false}` |
//! | `GET /kv/{object}/list?prefix=&start=&start_after=&end=&reverse=true&limit=N` | `{"entries": [{"key": …, "value": …}]}` |
//! | `POST /kv/{object}/transaction` | `{"ok": true}`, or 409 if a check fails (nothing applied) |
//! | `DELETE /kv/{object}` | `{"deleted": N}` |
//! | `PUT /kv/{object}/alarm` with `{"at_ms": T}` or `{"in_ms": D}` | `{"ok": true}` |
//! | `GET /kv/{object}/alarm` | `{"at_ms": T}` or `{"at_ms": null}` |
//! | `DELETE /kv/{object}/alarm` | `{"ok": true}` |
//!
//! Keys in paths are percent-decoded. A key or value that is not UTF-8
//! comes back as `key_base64` / `value_base64`. When the alarm fires, the
//! object writes `alarm:fired` with the firing time in ms; while the object
//! holds the key `alarm:fail`, its alarm fails instead and counts its
//! attempts in `alarm:attempts` (to see retries).

use base64::Engine as _;
use serde_json::{json, Value as Json};

use super::{error, respond_json};
use crate::config::{reject_unknown, ConfigError};
use crate::object::{
    percent_decode_component, AlarmError, Context, DurableObject, ListOptions, ObjectClass,
    Request, Response, RpcError, StorageError, TransactionError, ALARM_AT_MS_MAX,
};
use crate::ObjectId;
use durin_proto::rpc::builtin;

/// Default and largest `limit` of a list.
pub const LIST_LIMIT_DEFAULT: usize = 1000;
pub const LIST_LIMIT_MAX: usize = 10_000;
pub use body::TRANSACTION_OPS_MAX;

mod body;

use body::TxOp;

/// The kv class.
pub struct KvClass;

impl KvClass {
    /// Builds the class from its config table (no settings of its own).
    pub fn from_config(table: &mut toml::Table) -> Result<KvClass, ConfigError> {
        reject_unknown(table, "kv")?;
        Ok(KvClass)
    }
}

impl ObjectClass for KvClass {
    fn create(&self, _id: &ObjectId, _ctx: &mut Context<'_>) -> Box<dyn DurableObject> {
        Box::new(Kv)
    }
}

struct Kv;

fn storage_error(res: &mut Response, e: &StorageError) {
    match e {
        StorageError::KeyTooLarge { max, .. } => respond_json(
            res,
            413,
            &json!({ "error": e.to_string(), "limit": "key_bytes_max", "max": max }),
        ),
        StorageError::ValueTooLarge { max, .. } => respond_json(
            res,
            413,
            &json!({ "error": e.to_string(), "limit": "value_bytes_max", "max": max }),
        ),
        StorageError::ObjectTooLarge { max, .. } => respond_json(
            res,
            413,
            &json!({ "error": e.to_string(), "limit": "storage_bytes_max", "max": max }),
        ),
        _ => error(res, 500, &e.to_string()),
    }
}

/// Bytes as a JSON field: `name` if UTF-8, else `name_base64`.
fn put_bytes(map: &mut serde_json::Map<String, Json>, name: &str, bytes: &[u8]) {
    match std::str::from_utf8(bytes) {
        Ok(text) => map.insert(name.to_string(), Json::String(text.to_string())),
        Err(_) => map.insert(
            format!("{name}_base64"),
            Json::String(base64::engine::general_purpose::STANDARD.encode(bytes)),
        ),
    };
}

/// The query's parameters, decoded; `None` if one is badly encoded.
fn query_params(query: Option<&str>) -> Option<Vec<(String, Vec<u8>)>> {
    let mut params = Vec::new();
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let name = String::from_utf8(percent_decode_component(name, true)?).ok()?;
        params.push((name, percent_decode_component(value, true)?));
    }
    Some(params)
}

impl DurableObject for Kv {
    fn fetch(&mut self, req: &Request<'_>, res: &mut Response, ctx: &mut Context<'_>) {
        if let Some(encoded) = req.path.strip_prefix("/keys/") {
            let Some(key) = percent_decode_component(encoded, false) else {
                return error(res, 400, "invalid percent-encoding in key");
            };
            return match req.method {
                "PUT" => put(&key, req.body, res, ctx),
                "GET" => get(&key, res, ctx),
                "DELETE" => delete(&key, res, ctx),
                _ => {
                    error(res, 405, "use GET, PUT or DELETE on a key");
                    res.header("Allow", "GET, PUT, DELETE");
                }
            };
        }
        match (req.method, req.path) {
            ("GET", "/list") => list(req.query, res, ctx),
            ("POST", "/transaction") => transaction(req.body, res, ctx),
            ("DELETE", "") => match ctx.storage().delete_all() {
                Ok(n) => respond_json(res, 200, &json!({ "deleted": n })),
                Err(e) => storage_error(res, &e),
            },
            ("PUT", "/alarm") => set_alarm(req.body, res, ctx),
            ("GET", "/alarm") => match ctx.storage().get_alarm() {
                Ok(at) => respond_json(res, 200, &json!({ "at_ms": at })),
                Err(e) => storage_error(res, &e),
            },
            ("DELETE", "/alarm") => match ctx.storage().delete_alarm() {
                Ok(()) => respond_json(res, 200, &json!({ "ok": true })),
                Err(e) => storage_error(res, &e),
            },
            (_, "/list") => {
                res.method_not_allowed("GET");
            }
            (_, "/transaction") => {
                res.method_not_allowed("POST");
            }
            (_, "") => {
                res.method_not_allowed("DELETE");
            }
            (_, "/alarm") => {
                res.method_not_allowed("GET, PUT, DELETE");
            }
            _ => {
                res.text(404, "Not found");
            }
        }
    }

    /// RPC methods: `get` (payload: the key) → found byte and value; `put`
    /// (see [`builtin::encode_kv_put`]) → nothing; `delete` (the key) →
    /// whether it existed, one byte.
    fn rpc(
        &mut self,
        method: &str,
        payload: &[u8],
        out: &mut Vec<u8>,
        ctx: &mut Context<'_>,
    ) -> Result<(), RpcError> {
        match method {
            builtin::KV_GET => {
                ctx.storage()
                    .get_with(payload, |v| builtin::encode_kv_get_response(v, out))?;
            }
            builtin::KV_PUT => {
                let (key, value) = builtin::decode_kv_put(payload).ok_or_else(|| {
                    RpcError::BadArgument("put takes key_len u32 LE, key, value".into())
                })?;
                ctx.storage().put(key, value)?;
            }
            builtin::KV_DELETE => {
                let deleted = ctx.storage().delete(payload)?;
                builtin::encode_kv_delete_response(deleted, out);
            }
            _ => return Err(RpcError::UnknownMethod),
        }
        Ok(())
    }

    fn alarm(&mut self, ctx: &mut Context<'_>) -> Result<(), AlarmError> {
        // A way for scripts and tests to see retries: while the object
        // holds `alarm:fail`, its alarm fails (and counts its attempts).
        let failing = ctx
            .storage()
            .get(b"alarm:fail")
            .map_err(|e| AlarmError(e.to_string()))?;
        if failing.is_some() {
            let attempts = ctx
                .storage()
                .get(b"alarm:attempts")
                .map_err(|e| AlarmError(e.to_string()))?
                .and_then(|v| String::from_utf8(v).ok()?.parse::<u64>().ok())
                .unwrap_or(0);
            // An error keeps the event's writes (only a panic rolls them
            // back), so the attempt count survives the failure.
            let attempts = (attempts + 1).to_string();
            ctx.storage()
                .put(b"alarm:attempts", attempts.as_bytes())
                .map_err(|e| AlarmError(e.to_string()))?;
            return Err(AlarmError(format!(
                "alarm:fail is set (attempt {attempts})"
            )));
        }
        let now = ctx.now_ms().to_string();
        ctx.storage()
            .put(b"alarm:fired", now.as_bytes())
            .map_err(|e| AlarmError(e.to_string()))
    }
}

fn put(key: &[u8], value: &[u8], res: &mut Response, ctx: &mut Context<'_>) {
    match ctx.storage().put(key, value) {
        Ok(()) => respond_json(res, 200, &json!({ "ok": true })),
        Err(e) => storage_error(res, &e),
    }
}

fn get(key: &[u8], res: &mut Response, ctx: &mut Context<'_>) {
    let found = ctx.storage().get_with(key, |v| {
        v.map(|v| {
            res.status(200)
                .content_type("application/octet-stream")
                .body(v);
        })
    });
    match found {
        Ok(Some(())) => {}
        Ok(None) => {
            res.text(404, "Not found");
        }
        Err(e) => storage_error(res, &e),
    }
}

fn delete(key: &[u8], res: &mut Response, ctx: &mut Context<'_>) {
    match ctx.storage().delete(key) {
        Ok(deleted) => respond_json(res, 200, &json!({ "deleted": deleted })),
        Err(e) => storage_error(res, &e),
    }
}

fn list(query: Option<&str>, res: &mut Response, ctx: &mut Context<'_>) {
    let Some(params) = query_params(query) else {
        return error(res, 400, "invalid percent-encoding in the query");
    };
    let param = |name: &str| {
        params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    };
    if let Some((unknown, _)) = params.iter().find(|(n, _)| {
        !["prefix", "start", "start_after", "end", "reverse", "limit"].contains(&n.as_str())
    }) {
        return error(res, 400, &format!("unknown list option `{unknown}`"));
    }
    if let Some(repeated) = params
        .iter()
        .enumerate()
        .find(|(i, (n, _))| params[..*i].iter().any(|(m, _)| m == n))
        .map(|(_, (n, _))| n)
    {
        return error(
            res,
            400,
            &format!("list option `{repeated}` given more than once"),
        );
    }
    if param("start").is_some() && param("start_after").is_some() {
        return error(
            res,
            400,
            "give at most one of `start` (inclusive) and `start_after` (exclusive)",
        );
    }
    let reverse = match param("reverse") {
        None | Some(b"false") => false,
        Some(b"true") => true,
        Some(_) => return error(res, 400, "reverse must be true or false"),
    };
    let limit = match param("limit") {
        None => LIST_LIMIT_DEFAULT,
        Some(text) => match std::str::from_utf8(text)
            .ok()
            .and_then(|t| t.parse::<usize>().ok())
        {
            Some(n) if n <= LIST_LIMIT_MAX => n,
            _ => {
                return error(
                    res,
                    400,
                    &format!("limit must be a number from 0 to {LIST_LIMIT_MAX}"),
                )
            }
        },
    };
    let options = ListOptions {
        prefix: param("prefix"),
        start: param("start"),
        start_after: param("start_after"),
        end: param("end"),
        reverse,
        limit: Some(limit),
    };
    match ctx.storage().list(&options) {
        Ok(entries) => {
            let entries: Vec<Json> = entries
                .iter()
                .map(|(k, v)| {
                    let mut map = serde_json::Map::new();
                    put_bytes(&mut map, "key", k);
                    put_bytes(&mut map, "value", v);
                    Json::Object(map)
                })
                .collect();
            respond_json(res, 200, &json!({ "entries": entries }));
        }
        Err(e) => storage_error(res, &e),
    }
}

/// Why a transaction did not apply.
enum Abort {
    CheckFailed(String),
    Storage(StorageError),
}

fn transaction(body: &[u8], res: &mut Response, ctx: &mut Context<'_>) {
    let ops = match body::parse_transaction(body) {
        Ok(ops) => ops,
        Err(refused) => return error(res, refused.status, &refused.message),
    };
    let result = ctx.storage().transaction(|storage| {
        for op in &ops {
            match op {
                TxOp::Put { key, value } => {
                    storage.put(key.as_bytes(), value).map_err(Abort::Storage)?
                }
                TxOp::Delete { key } => {
                    storage.delete(key.as_bytes()).map_err(Abort::Storage)?;
                }
                TxOp::Check { key, value } => {
                    let current = storage.get(key.as_bytes()).map_err(Abort::Storage)?;
                    if current.as_deref() != value.as_deref() {
                        return Err(Abort::CheckFailed(key.clone()));
                    }
                }
            }
        }
        Ok(())
    });
    match result {
        Ok(()) => respond_json(res, 200, &json!({ "ok": true })),
        Err(TransactionError::Aborted(Abort::CheckFailed(key))) => respond_json(
            res,
            409,
            &json!({ "error": "check failed; nothing was applied", "key": key }),
        ),
        Err(TransactionError::Aborted(Abort::Storage(e))) => storage_error(res, &e),
    }
}

fn set_alarm(body: &[u8], res: &mut Response, ctx: &mut Context<'_>) {
    let at_ms = match body::parse_alarm(body, ctx.now_ms(), ALARM_AT_MS_MAX) {
        Ok(at_ms) => at_ms,
        Err(refused) => return error(res, refused.status, &refused.message),
    };
    match ctx.storage().set_alarm(at_ms) {
        Ok(()) => respond_json(res, 200, &json!({ "ok": true, "at_ms": at_ms })),
        Err(e) => storage_error(res, &e),
    }
}
