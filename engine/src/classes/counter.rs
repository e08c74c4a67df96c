//! `counter`: a durable counter.
//!
//! - `POST /counter/{name}/increment` → `{"value": N}`, the value after the
//!   increment, sent once the new value is durable.
//! - `GET /counter/{name}` → `{"value": N}` (0 for a new counter).

use crate::config::{reject_unknown, ConfigError};
use crate::object::{Context, DurableObject, ObjectClass, Request, Response, RpcError};
use crate::ObjectId;
use durin_proto::rpc::builtin;

const VALUE_KEY: &[u8] = b"value";

/// The counter class.
pub struct CounterClass;

impl CounterClass {
    /// Builds the class from its config table (it has no settings).
    pub fn from_config(table: &mut toml::Table) -> Result<CounterClass, ConfigError> {
        reject_unknown(table, "counter")?;
        Ok(CounterClass)
    }
}

impl ObjectClass for CounterClass {
    fn create(&self, _id: &ObjectId, ctx: &mut Context<'_>) -> Box<dyn DurableObject> {
        let value = ctx
            .storage()
            .get_with(VALUE_KEY, |v| {
                v.and_then(|v| <[u8; 8]>::try_from(v).ok())
                    .map(u64::from_le_bytes)
            })
            .expect("reading a counter's value from the shard's own store")
            .unwrap_or(0);
        Box::new(Counter { value })
    }
}

struct Counter {
    value: u64,
}

impl Counter {
    fn respond(&self, res: &mut Response) {
        let body = res.json(200).body_mut();
        body.extend_from_slice(b"{\"value\": ");
        super::push_u64(body, self.value);
        body.push(b'}');
    }
}

impl Counter {
    fn increment(&mut self, ctx: &mut Context<'_>) -> Result<u64, crate::object::StorageError> {
        let next = self.value.wrapping_add(1);
        ctx.storage().put(VALUE_KEY, &next.to_le_bytes())?;
        self.value = next;
        Ok(next)
    }
}

impl DurableObject for Counter {
    /// RPC methods: `get` and `increment`, with an empty payload; the
    /// answer is the value as 8 little-endian bytes.
    fn rpc(
        &mut self,
        method: &str,
        payload: &[u8],
        out: &mut Vec<u8>,
        ctx: &mut Context<'_>,
    ) -> Result<(), RpcError> {
        if !payload.is_empty() {
            return Err(RpcError::BadArgument(
                "counter methods take no payload".into(),
            ));
        }
        let value = match method {
            builtin::COUNTER_GET => self.value,
            builtin::COUNTER_INCREMENT => self.increment(ctx)?,
            _ => return Err(RpcError::UnknownMethod),
        };
        builtin::encode_counter_value(value, out);
        Ok(())
    }

    fn fetch(&mut self, req: &Request<'_>, res: &mut Response, ctx: &mut Context<'_>) {
        match (req.method, req.path) {
            ("POST", "/increment") => {
                match self.increment(ctx) {
                    Ok(_) => self.respond(res),
                    // Only a class configured with tiny storage limits gets here.
                    Err(e) => {
                        res.text(507, &e.to_string());
                    }
                }
            }
            ("GET", "") => self.respond(res),
            (_, "/increment") => {
                res.method_not_allowed("POST");
            }
            (_, "") => {
                res.method_not_allowed("GET");
            }
            _ => {
                res.text(404, "Not found");
            }
        }
    }
}
