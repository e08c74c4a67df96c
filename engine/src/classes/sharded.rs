//! `sharded`: reads of a hot key split over N sub-objects.
//!
//! A hot counter is spread over the counters `{key}~0` … `{key}~{N-1}`:
//! each caller increments one of them (`POST /counter/{key}~{i}/increment`,
//! with i picked by `durin_client::sharding::rendezvous_pick` of the
//! caller's identity, or at random), so the writes land on the shards the
//! N names hash to instead of on one object. Reading the total costs one
//! call per sub-object:
//!
//! - `GET /sharded/{key}/counter?shards=N` → `{"value": sum, "shards": N}`,
//!   from N calls (`counter.get`) made by the object `sharded/{key}`, in
//!   parallel, answered when the last reply is in. A sub-counter that
//!   cannot be read makes the whole read fail with 502 (a partial sum
//!   would be silently wrong).
//!
//! Increments racing a read may or may not be counted; the sum is never
//! more than the increments made so far, since each sub-counter only
//! grows.

use std::collections::HashMap;

use serde_json::json;

use crate::config::{reject_unknown, ConfigError};
use crate::object::{
    query_param, CallError, CallId, Context, Deferred, DurableObject, ObjectClass, Request,
    Response,
};
use crate::ObjectId;
use durin_proto::rpc::{builtin, ObjectRef};

/// Most sub-objects a read may sum (the client's `SUB_OBJECTS_MAX`).
pub const SHARDS_MAX: u32 = 1024;
/// Reads in progress at once per key; more get 429.
pub const READS_IN_FLIGHT_MAX: usize = 256;

pub struct ShardedClass;

impl ShardedClass {
    pub fn from_config(table: &mut toml::Table) -> Result<ShardedClass, ConfigError> {
        reject_unknown(table, "sharded")?;
        Ok(ShardedClass)
    }
}

impl ObjectClass for ShardedClass {
    fn create(&self, _id: &ObjectId, _ctx: &mut Context<'_>) -> Box<dyn DurableObject> {
        Box::new(Sharded::default())
    }
}

/// A read waiting for its sub-objects' replies.
struct Read {
    deferred: Deferred,
    shards: u32,
    remaining: u32,
    sum: u64,
    failed: Option<String>,
}

#[derive(Default)]
struct Sharded {
    /// Reads by a number of their own; calls point at them.
    reads: HashMap<u64, Read>,
    calls: HashMap<CallId, u64>,
    next_read: u64,
}

fn respond_error(res: &mut Response, status: u16, message: &str) {
    res.json(status);
    let _ = serde_json::to_writer(res.body_mut(), &json!({ "error": message }));
}

impl DurableObject for Sharded {
    fn fetch(&mut self, req: &Request<'_>, res: &mut Response, ctx: &mut Context<'_>) {
        match (req.method, req.path) {
            ("GET", "/counter") => self.read_counter(req, res, ctx),
            (_, "/counter") => {
                res.method_not_allowed("GET");
            }
            _ => {
                res.text(404, "Not found");
            }
        }
    }

    fn call_reply(&mut self, call: CallId, reply: Result<&[u8], CallError>, ctx: &mut Context<'_>) {
        let Some(read_id) = self.calls.remove(&call) else {
            return;
        };
        let Some(read) = self.reads.get_mut(&read_id) else {
            return;
        };
        assert!(read.remaining >= 1);
        read.remaining -= 1;
        match reply.map(builtin::decode_counter_value) {
            Ok(Some(value)) => read.sum = read.sum.wrapping_add(value),
            Ok(None) => read.failed = Some("a sub-counter answered a malformed value".into()),
            Err(e) => read.failed = Some(format!("a sub-counter failed: {e}")),
        }
        if read.remaining > 0 {
            return;
        }
        let Some(read) = self.reads.remove(&read_id) else {
            return;
        };
        let mut response = Response::default();
        match read.failed {
            Some(why) => respond_error(&mut response, 502, &why),
            None => {
                response.json(200);
                let body = json!({ "value": read.sum, "shards": read.shards });
                let _ = serde_json::to_writer(response.body_mut(), &body);
            }
        }
        ctx.respond(read.deferred, response);
    }
}

impl Sharded {
    fn read_counter(&mut self, req: &Request<'_>, res: &mut Response, ctx: &mut Context<'_>) {
        let shards = query_param(req.query, "shards")
            .and_then(|v| String::from_utf8(v).ok())
            .and_then(|v| v.parse::<u32>().ok())
            .filter(|n| (1..=SHARDS_MAX).contains(n));
        let Some(shards) = shards else {
            return respond_error(res, 400, &format!("shards must be 1 to {SHARDS_MAX}"));
        };
        // An object knows its ID, not its name: the key comes again in the
        // query, checked against the ID so that it cannot name another.
        let key = query_param(req.query, "key").unwrap_or_default();
        if ObjectId::from_name(ctx.class_name, &key) != *ctx.id() {
            return respond_error(res, 400, "key must repeat the object's name in the path");
        }
        if self.reads.len() >= READS_IN_FLIGHT_MAX {
            return respond_error(
                res,
                429,
                &format!("{READS_IN_FLIGHT_MAX} reads of this key are in progress; try later"),
            );
        }
        let key = String::from_utf8_lossy(&key).into_owned();
        self.next_read += 1;
        let read_id = self.next_read;
        for i in 0..shards {
            let object = ObjectRef::Name(format!("{key}~{i}").into_bytes());
            let call = ctx.call(builtin::COUNTER_CLASS, object, builtin::COUNTER_GET, b"");
            self.calls.insert(call, read_id);
        }
        let deferred = ctx.defer();
        let read = Read {
            deferred,
            shards,
            remaining: shards,
            sum: 0,
            failed: None,
        };
        self.reads.insert(read_id, read);
    }
}
