//! The kv class's JSON bodies on arbitrary bytes: a transaction and an
//! alarm. Properties: nothing panics; an accepted transaction has at most
//! the allowed number of operations, and written back as JSON (values as
//! base64, so any bytes survive) parses to the same operations; an
//! accepted alarm time is never past the latest allowed.
#![no_main]

#[path = "../../engine/src/classes/kv/body.rs"]
mod body;

use base64::Engine as _;
use body::{parse_alarm, parse_transaction, TxOp, TRANSACTION_OPS_MAX};
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};

const LATEST_MS: u64 = 8_640_000_000_000_000;

fn encoded(value: &[u8]) -> Value {
    Value::String(base64::engine::general_purpose::STANDARD.encode(value))
}

fuzz_target!(|data: &[u8]| {
    if let Ok(ops) = parse_transaction(data) {
        assert!(ops.len() <= TRANSACTION_OPS_MAX);
        let written: Vec<Value> = ops
            .iter()
            .map(|op| match op {
                TxOp::Put { key, value } => {
                    json!({"op": "put", "key": key, "value_base64": encoded(value)})
                }
                TxOp::Delete { key } => json!({"op": "delete", "key": key}),
                TxOp::Check { key, value: None } => json!({"op": "check", "key": key}),
                TxOp::Check { key, value: Some(v) } => {
                    json!({"op": "check", "key": key, "value_base64": encoded(v)})
                }
            })
            .collect();
        let again = serde_json::to_vec(&json!({ "ops": written })).unwrap();
        assert_eq!(parse_transaction(&again).as_ref(), Ok(&ops));
    }
    let now_ms = data.len() as u64 * 1_000_000_007;
    if let Ok(at_ms) = parse_alarm(data, now_ms, LATEST_MS) {
        assert!(at_ms <= LATEST_MS);
    }
});
