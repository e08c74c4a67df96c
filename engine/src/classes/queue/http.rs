//! The queue's HTTP routes: parsing, limits and JSON answers.

use base64::Engine as _;
use serde::Deserialize;
use serde_json::{json, Value as Json};

use crate::object::{percent_decode_component, Context, Request, Response, StorageError};

use super::delivery::{self, Waiter, Want};
use super::push::Target;
use super::{store, Queue, CONSUMER_TAG};
pub(super) use crate::classes::{error, respond_json};

/// Most sequence numbers one ack may list.
pub const ACK_SEQS_MAX: usize = 10_000;
/// Default and largest `limit` of a dead-letter listing.
pub const DEAD_LIMIT_DEFAULT: usize = 100;
pub const DEAD_LIMIT_MAX: usize = 1000;
/// Defaults of a pull and a socket consumer.
const PULL_MAX_DEFAULT: u64 = 10;
const VISIBILITY_MS_DEFAULT: u64 = 30_000;
const SOCKET_IN_FLIGHT_DEFAULT: u64 = 100;

fn storage_error(res: &mut Response, e: &StorageError) {
    match e {
        StorageError::ObjectTooLarge { .. } => error(res, 507, &e.to_string()),
        StorageError::ValueTooLarge { .. } | StorageError::KeyTooLarge { .. } => {
            error(res, 413, &e.to_string())
        }
        _ => error(res, 500, &e.to_string()),
    }
}

/// Bytes as a JSON field: `name` if UTF-8, else `name_base64`.
pub(super) fn put_bytes(map: &mut serde_json::Map<String, Json>, name: &str, bytes: &[u8]) {
    match std::str::from_utf8(bytes) {
        Ok(text) => map.insert(name.to_string(), Json::String(text.to_string())),
        Err(_) => map.insert(
            format!("{name}_base64"),
            Json::String(base64::engine::general_purpose::STANDARD.encode(bytes)),
        ),
    };
}

/// Fills `res` with `{"messages": [{"seq": n, "body": …}, …]}`.
pub(super) fn messages(res: &mut Response, handed: &delivery::Handed) {
    let list: Vec<Json> = handed
        .iter()
        .map(|(seq, body)| {
            let mut map = serde_json::Map::new();
            map.insert("seq".into(), (*seq).into());
            put_bytes(&mut map, "body", body);
            Json::Object(map)
        })
        .collect();
    respond_json(res, 200, &json!({ "messages": list }));
}

/// An acknowledgement, from HTTP or a socket.
pub(super) enum Ack {
    Seqs(Vec<u64>),
    Through(u64),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AckBody {
    seqs: Option<Vec<u64>>,
    through: Option<u64>,
    /// The socket spelling of `seqs`.
    ack: Option<Vec<u64>>,
}

pub(super) fn parse_ack(body: &[u8]) -> Result<Ack, String> {
    let parsed: AckBody =
        serde_json::from_slice(body).map_err(|e| format!("malformed ack: {e}"))?;
    let ack = match (parsed.seqs.or(parsed.ack), parsed.through) {
        (Some(seqs), None) => Ack::Seqs(seqs),
        (None, Some(through)) => Ack::Through(through),
        _ => return Err("give exactly one of seqs and through".into()),
    };
    if let Ack::Seqs(seqs) = &ack {
        if seqs.len() > ACK_SEQS_MAX {
            return Err(format!("an ack lists at most {ACK_SEQS_MAX} seqs"));
        }
    }
    Ok(ack)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Batch {
    messages: Vec<String>,
}

/// The query's parameters, decoded; an error names what is wrong.
fn params(query: Option<&str>, known: &[&str]) -> Result<Vec<(String, String)>, String> {
    let mut out: Vec<(String, String)> = Vec::new();
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let decode =
            |s: &str| percent_decode_component(s, true).and_then(|v| String::from_utf8(v).ok());
        let (Some(name), Some(value)) = (decode(name), decode(value)) else {
            return Err("invalid percent-encoding in the query".into());
        };
        if !known.contains(&name.as_str()) {
            return Err(format!(
                "unknown option `{name}` (known: {})",
                known.join(", ")
            ));
        }
        if out.iter().any(|(n, _)| *n == name) {
            return Err(format!("option `{name}` given more than once"));
        }
        out.push((name, value));
    }
    Ok(out)
}

/// Parameter `name` as a number from `min` to `max`.
fn number(
    params: &[(String, String)],
    name: &str,
    default: u64,
    min: u64,
    max: u64,
) -> Result<u64, String> {
    match params.iter().find(|(n, _)| n == name) {
        None => Ok(default),
        Some((_, v)) => v
            .parse::<u64>()
            .ok()
            .filter(|n| (min..=max).contains(n))
            .ok_or_else(|| format!("{name} must be a number from {min} to {max}")),
    }
}

fn boolean(params: &[(String, String)], name: &str) -> Result<bool, String> {
    match params
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
    {
        None | Some("false") => Ok(false),
        Some("true") | Some("") => Ok(true),
        Some(_) => Err(format!("{name} must be true or false")),
    }
}

impl Queue {
    pub(super) fn route(&mut self, req: &Request<'_>, res: &mut Response, ctx: &mut Context<'_>) {
        match (req.method, req.path) {
            ("POST", "/messages") => self.append(req, res, ctx),
            ("POST", "/pull") => self.pull(req, res, ctx),
            ("POST", "/ack") => match parse_ack(req.body) {
                Ok(ack) => match self.ack(ctx, &ack) {
                    Ok(acked) => respond_json(res, 200, &json!({ "acked": acked })),
                    Err(e) => storage_error(res, &e),
                },
                Err(why) => error(res, 400, &why),
            },
            ("GET", "/consume") => self.consume(req, res, ctx),
            ("PUT", "/push") => self.set_push(req.body, res, ctx),
            ("GET", "/push") => match &self.push.target {
                Some(t) => respond_json(res, 200, &json!(t)),
                None => error(res, 404, "this queue has no push target"),
            },
            ("DELETE", "/push") => match self.push.set_target(ctx, None) {
                Ok(()) => respond_json(res, 200, &json!({ "ok": true })),
                Err(e) => storage_error(res, &e),
            },
            ("GET", "/dead") => dead(req.query, res, ctx),
            ("DELETE", "/dead") => match self.clear_dead(ctx) {
                Ok(n) => respond_json(res, 200, &json!({ "deleted": n })),
                Err(e) => storage_error(res, &e),
            },
            ("GET", "") => self.stats(res, ctx),
            (_, "/messages" | "/pull" | "/ack") => {
                res.method_not_allowed("POST");
            }
            (_, "/consume" | "") => {
                res.method_not_allowed("GET");
            }
            (_, "/dead") => {
                res.method_not_allowed("GET, DELETE");
            }
            (_, "/push") => {
                res.method_not_allowed("GET, PUT, DELETE");
            }
            _ => {
                res.text(404, "Not found");
            }
        }
    }

    fn append(&mut self, req: &Request<'_>, res: &mut Response, ctx: &mut Context<'_>) {
        let is_json = req
            .header("content-type")
            .and_then(|v| v.get(..16))
            .is_some_and(|v| v.eq_ignore_ascii_case(b"application/json"));
        let batch;
        let bodies: Vec<&[u8]> = if is_json {
            batch = match serde_json::from_slice::<Batch>(req.body) {
                Ok(b) => b,
                Err(e) => {
                    return error(
                        res,
                        400,
                        &format!("a JSON append is {{\"messages\": [\"…\", …]}}: {e}"),
                    )
                }
            };
            batch.messages.iter().map(|m| m.as_bytes()).collect()
        } else {
            vec![req.body]
        };
        let limits = &self.limits;
        if bodies.is_empty() {
            return error(res, 400, "a batch needs at least one message");
        }
        if bodies.len() as u64 > limits.batch_messages_max {
            let max = limits.batch_messages_max;
            return error(res, 413, &format!("a batch holds at most {max} messages"));
        }
        if let Some(i) = bodies
            .iter()
            .position(|b| b.len() as u64 > limits.message_bytes_max)
        {
            let max = limits.message_bytes_max;
            return error(
                res,
                413,
                &format!("message {i} is over the {max}-byte limit"),
            );
        }
        let bytes: u64 = bodies.iter().map(|b| b.len() as u64).sum();
        let count = bodies.len() as u64;
        if self.meta.count + count > limits.queue_messages_max
            || self.meta.bytes + bytes > limits.queue_bytes_max
        {
            return respond_json(
                res,
                507,
                &json!({
                    "error": "queue full: acknowledge messages before appending more",
                    "count": self.meta.count,
                    "bytes": self.meta.bytes,
                    "queue_messages_max": limits.queue_messages_max,
                    "queue_bytes_max": limits.queue_bytes_max,
                }),
            );
        }
        match store::append(ctx, &mut self.meta, &bodies) {
            Ok(first_seq) => {
                respond_json(res, 200, &json!({ "first_seq": first_seq, "count": count }))
            }
            Err(e) => storage_error(res, &e),
        }
    }

    fn want(&self, params: &[(String, String)], max_name: &str) -> Result<Want, String> {
        let limits = &self.limits;
        let (default, max) = if max_name == "max" {
            (PULL_MAX_DEFAULT, limits.pull_messages_max)
        } else {
            (SOCKET_IN_FLIGHT_DEFAULT, limits.socket_in_flight_max)
        };
        Ok(Want {
            max: number(params, max_name, default.min(max), 1, max)? as usize,
            visibility_ms: number(
                params,
                "visibility_ms",
                VISIBILITY_MS_DEFAULT.min(limits.visibility_ms_max),
                1,
                limits.visibility_ms_max,
            )?,
            unordered: boolean(params, "unordered")?,
        })
    }

    fn pull(&mut self, req: &Request<'_>, res: &mut Response, ctx: &mut Context<'_>) {
        if self.push.target.is_some() {
            return error(res, 409, "this queue pushes to a target; pull is off");
        }
        let known = ["max", "visibility_ms", "wait_ms", "unordered"];
        let parsed = params(req.query, &known).and_then(|p| {
            let wait_ms = number(&p, "wait_ms", 0, 0, self.limits.wait_ms_max)?;
            Ok((self.want(&p, "max")?, wait_ms))
        });
        let (want, wait_ms) = match parsed {
            Ok(v) => v,
            Err(why) => return error(res, 400, &why),
        };
        for (_, holder) in self.delivery.expire(ctx.now_ms()) {
            self.mark_dirty(holder);
        }
        if self.delivery.leases.len() as u64 >= self.limits.in_flight_max {
            let max = self.limits.in_flight_max;
            return error(
                res,
                429,
                &format!("{max} messages are in flight; ack some first"),
            );
        }
        let leases_max = self.limits.in_flight_max as usize;
        let handed = match self
            .delivery
            .take(ctx, want, delivery::Holder::Pull, leases_max)
        {
            Ok(h) => h,
            Err(e) => return storage_error(res, &e),
        };
        if !handed.is_empty() || wait_ms == 0 {
            return messages(res, &handed);
        }
        if self.delivery.waiters.len() as u64 >= self.limits.waiters_max {
            let max = self.limits.waiters_max;
            return error(
                res,
                429,
                &format!("{max} long-polls already wait on this queue"),
            );
        }
        let deferred = ctx.defer();
        self.delivery.waiters.push_back(Waiter {
            deferred,
            want,
            deadline_ms: ctx.now_ms().saturating_add(wait_ms),
        });
    }

    fn consume(&mut self, req: &Request<'_>, res: &mut Response, ctx: &mut Context<'_>) {
        if !req.is_websocket_upgrade() {
            return error(res, 400, "Expected WebSocket");
        }
        if self.push.target.is_some() {
            return error(res, 409, "this queue pushes to a target; consumers are off");
        }
        let known = ["max_in_flight", "visibility_ms", "unordered"];
        let want = match params(req.query, &known).and_then(|p| self.want(&p, "max_in_flight")) {
            Ok(w) => w,
            Err(why) => return error(res, 400, &why),
        };
        let ws = match ctx.accept_websocket(&[CONSUMER_TAG]) {
            Ok(ws) => ws,
            Err(e) => return error(res, 400, &e.to_string()),
        };
        ctx.serialize_attachment(ws, &delivery::encode_attachment(want, &[]))
            .expect("13 bytes of settings fit an attachment");
    }

    fn set_push(&mut self, body: &[u8], res: &mut Response, ctx: &mut Context<'_>) {
        let target: Target = match serde_json::from_slice(body) {
            Ok(t) => t,
            Err(e) => return error(res, 400, &format!("malformed push target: {e}")),
        };
        if let Some(why) = target.invalid() {
            return error(res, 400, &why);
        }
        if !self.delivery.leases.is_empty() || !self.delivery.waiters.is_empty() {
            return error(
                res,
                409,
                "consumers hold or wait for messages; a queue either pushes or is pulled",
            );
        }
        match self.push.set_target(ctx, Some(target)) {
            Ok(()) => respond_json(res, 200, &json!({ "ok": true })),
            Err(e) => storage_error(res, &e),
        }
    }

    fn stats(&self, res: &mut Response, ctx: &mut Context<'_>) {
        let body = json!({
            "next_seq": self.meta.next_seq,
            "count": self.meta.count,
            "bytes": self.meta.bytes,
            "in_flight": self.delivery.leases.len(),
            "waiters": self.delivery.waiters.len(),
            "consumers": ctx.websockets(Some(CONSUMER_TAG)).len(),
            "push": self.push.target,
            "dead": self.push.dead_count,
        });
        respond_json(res, 200, &body);
    }
}

fn dead(query: Option<&str>, res: &mut Response, ctx: &mut Context<'_>) {
    let limit = params(query, &["limit"]).and_then(|p| {
        number(
            &p,
            "limit",
            DEAD_LIMIT_DEFAULT as u64,
            1,
            DEAD_LIMIT_MAX as u64,
        )
    });
    let limit = match limit {
        Ok(l) => l as usize,
        Err(why) => return error(res, 400, &why),
    };
    let listed = ctx.storage().list(&crate::object::ListOptions {
        prefix: Some(store::DEAD_PREFIX),
        limit: Some(limit),
        ..Default::default()
    });
    match listed {
        Ok(entries) => {
            let list: Vec<Json> = entries
                .iter()
                .filter_map(|(_, v)| serde_json::from_slice(v).ok())
                .collect();
            respond_json(res, 200, &json!({ "messages": list }));
        }
        Err(e) => storage_error(res, &e),
    }
}
