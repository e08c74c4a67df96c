//! Typed calls to the built-in classes, in the payload formats of
//! [`durin_proto::rpc::builtin`].

use durin_proto::rpc::builtin::{self, RateLimitDecision};
use durin_proto::rpc::ObjectRef;

use crate::{Client, ClientError};

impl Client {
    /// Takes `cost` from the budget of the rate limiter named `key`, if
    /// the budget allows, and returns the limiter's decision.
    pub fn ratelimit_check(&self, key: &str, cost: u64) -> Result<RateLimitDecision, ClientError> {
        let object = ObjectRef::Name(key.as_bytes().to_vec());
        let mut payload = Vec::with_capacity(8);
        builtin::encode_ratelimit_cost(cost, &mut payload);
        let response = self.call(
            builtin::RATELIMIT_CLASS,
            &object,
            builtin::RATELIMIT_CHECK,
            &payload,
        )?;
        RateLimitDecision::decode(&response).ok_or(ClientError::BadPayload("ratelimit.check"))
    }

    /// The value of the counter named `name`.
    pub fn counter_get(&self, name: &str) -> Result<u64, ClientError> {
        self.counter_call(name, builtin::COUNTER_GET, "counter.get")
    }

    /// Adds one to the counter named `name` and returns its new value.
    pub fn counter_increment(&self, name: &str) -> Result<u64, ClientError> {
        self.counter_call(name, builtin::COUNTER_INCREMENT, "counter.increment")
    }

    fn counter_call(
        &self,
        name: &str,
        method: &str,
        what: &'static str,
    ) -> Result<u64, ClientError> {
        let object = ObjectRef::Name(name.as_bytes().to_vec());
        let response = self.call(builtin::COUNTER_CLASS, &object, method, b"")?;
        builtin::decode_counter_value(&response).ok_or(ClientError::BadPayload(what))
    }

    /// The value of `key` in the key-value object `object`, if set.
    pub fn kv_get(&self, object: &ObjectRef, key: &[u8]) -> Result<Option<Vec<u8>>, ClientError> {
        let mut response = self.call(builtin::KV_CLASS, object, builtin::KV_GET, key)?;
        match builtin::decode_kv_get_response(&response) {
            Some(Some(_)) => {
                // The value is the payload after the found flag; reuse it.
                response.remove(0);
                Ok(Some(response))
            }
            Some(None) => Ok(None),
            None => Err(ClientError::BadPayload("kv.get")),
        }
    }

    /// Sets `key` to `value` in the key-value object `object`.
    pub fn kv_put(&self, object: &ObjectRef, key: &[u8], value: &[u8]) -> Result<(), ClientError> {
        // Checked here so that encoding never meets a key too long for its
        // 32-bit length field.
        let bytes = 4usize.saturating_add(key.len()).saturating_add(value.len());
        if bytes > self.options.frame_bytes_max {
            return Err(ClientError::RequestTooLarge {
                bytes,
                max: self.options.frame_bytes_max,
            });
        }
        let mut payload = Vec::with_capacity(bytes);
        builtin::encode_kv_put(key, value, &mut payload);
        let response = self.call(builtin::KV_CLASS, object, builtin::KV_PUT, &payload)?;
        if !response.is_empty() {
            return Err(ClientError::BadPayload("kv.put"));
        }
        Ok(())
    }

    /// Removes `key` from the key-value object `object`; whether it was set.
    pub fn kv_delete(&self, object: &ObjectRef, key: &[u8]) -> Result<bool, ClientError> {
        let response = self.call(builtin::KV_CLASS, object, builtin::KV_DELETE, key)?;
        builtin::decode_kv_delete_response(&response).ok_or(ClientError::BadPayload("kv.delete"))
    }
}
