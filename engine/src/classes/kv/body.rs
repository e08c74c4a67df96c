//! The kv class's JSON request bodies, parsed and checked before anything
//! touches storage: a transaction's operations and an alarm's time.
//!
//! Self-contained on purpose (serde, serde_json and base64 only): the
//! fuzz crate compiles this file on its own to fuzz what a client sends,
//! without building the engine.

use base64::Engine as _;
use serde::Deserialize;

/// Most operations in one transaction.
pub const TRANSACTION_OPS_MAX: usize = 1000;

/// One checked operation of a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxOp {
    Put {
        key: String,
        value: Vec<u8>,
    },
    Delete {
        key: String,
    },
    /// Holds if the key's current value equals `value` (`None`: absent).
    Check {
        key: String,
        value: Option<Vec<u8>>,
    },
}

/// Why a body was refused: the HTTP status and a message saying why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub status: u16,
    pub message: String,
}

fn refused(status: u16, message: impl Into<String>) -> Refused {
    Refused {
        status,
        message: message.into(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TransactionBody {
    ops: Vec<Op>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Op {
    op: String,
    key: String,
    #[serde(default)]
    value: Option<String>,
    #[serde(default)]
    value_base64: Option<String>,
}

/// `{"ops": [{"op": "put" | "delete" | "check", "key": K, "value": V |
/// "value_base64": B}]}` → the operations, or `400` (malformed) / `413`
/// (more than [`TRANSACTION_OPS_MAX`] operations).
pub fn parse_transaction(body: &[u8]) -> Result<Vec<TxOp>, Refused> {
    let parsed: TransactionBody = serde_json::from_slice(body)
        .map_err(|e| refused(400, format!("malformed transaction: {e}")))?;
    if parsed.ops.len() > TRANSACTION_OPS_MAX {
        return Err(refused(
            413,
            format!("a transaction has at most {TRANSACTION_OPS_MAX} operations"),
        ));
    }
    parsed
        .ops
        .into_iter()
        .map(|op| {
            let value = match (op.value, op.value_base64) {
                (Some(v), None) => Some(v.into_bytes()),
                (None, Some(b)) => Some(
                    base64::engine::general_purpose::STANDARD
                        .decode(b)
                        .map_err(|_| refused(400, "value_base64 is not valid base64"))?,
                ),
                (None, None) => None,
                (Some(_), Some(_)) => {
                    return Err(refused(400, "give value or value_base64, not both"))
                }
            };
            let key = op.key;
            match (op.op.as_str(), value) {
                ("put", Some(value)) => Ok(TxOp::Put { key, value }),
                ("put", None) => Err(refused(400, "a put needs a value")),
                ("delete", None) => Ok(TxOp::Delete { key }),
                ("delete", Some(_)) => Err(refused(400, "a delete takes no value")),
                ("check", value) => Ok(TxOp::Check { key, value }),
                (other, _) => Err(refused(
                    400,
                    format!("unknown op `{other}` (put, delete or check)"),
                )),
            }
        })
        .collect()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AlarmBody {
    at_ms: Option<u64>,
    in_ms: Option<u64>,
}

/// `{"at_ms": T}` or `{"in_ms": D}` → the alarm's time in ms since the
/// Unix epoch, at most `latest_ms`; else `400` naming what is wrong.
pub fn parse_alarm(body: &[u8], now_ms: u64, latest_ms: u64) -> Result<u64, Refused> {
    let parsed: AlarmBody =
        serde_json::from_slice(body).map_err(|e| refused(400, format!("malformed alarm: {e}")))?;
    let (name, at_ms) = match (parsed.at_ms, parsed.in_ms) {
        (Some(at), None) => ("at_ms", Some(at)),
        (None, Some(d)) => ("in_ms", now_ms.checked_add(d)),
        _ => return Err(refused(400, "give exactly one of at_ms and in_ms")),
    };
    at_ms.filter(|&at| at <= latest_ms).ok_or_else(|| {
        refused(
            400,
            format!("{name} puts the alarm past the latest time an alarm may have, {latest_ms} ms after the Unix epoch"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transaction_ops_are_checked_before_storage() {
        let ops = parse_transaction(
            br#"{"ops": [{"op": "put", "key": "a", "value": "1"},
                         {"op": "put", "key": "b", "value_base64": "AP8="},
                         {"op": "delete", "key": "c"},
                         {"op": "check", "key": "d"},
                         {"op": "check", "key": "e", "value": "x"}]}"#,
        )
        .unwrap();
        assert_eq!(
            ops,
            [
                TxOp::Put {
                    key: "a".into(),
                    value: b"1".to_vec()
                },
                TxOp::Put {
                    key: "b".into(),
                    value: vec![0, 255]
                },
                TxOp::Delete { key: "c".into() },
                TxOp::Check {
                    key: "d".into(),
                    value: None
                },
                TxOp::Check {
                    key: "e".into(),
                    value: Some(b"x".to_vec())
                },
            ]
        );
        for (body, status) in [
            (&br#"{"ops": [{"op": "put", "key": "a"}]}"#[..], 400),
            (
                br#"{"ops": [{"op": "delete", "key": "a", "value": "1"}]}"#,
                400,
            ),
            (
                br#"{"ops": [{"op": "put", "key": "a", "value": "1", "value_base64": "AA=="}]}"#,
                400,
            ),
            (
                br#"{"ops": [{"op": "put", "key": "a", "value_base64": "%%"}]}"#,
                400,
            ),
            (br#"{"ops": [{"op": "swap", "key": "a"}]}"#, 400),
            (br#"{"ops": [], "extra": 1}"#, 400),
            (b"[", 400),
        ] {
            assert_eq!(parse_transaction(body).unwrap_err().status, status);
        }
        let many = format!(
            r#"{{"ops": [{}]}}"#,
            vec![r#"{"op": "delete", "key": "k"}"#; TRANSACTION_OPS_MAX + 1].join(",")
        );
        assert_eq!(parse_transaction(many.as_bytes()).unwrap_err().status, 413);
    }

    #[test]
    fn alarm_times_are_bounded() {
        assert_eq!(parse_alarm(br#"{"at_ms": 5}"#, 100, 1000), Ok(5));
        assert_eq!(parse_alarm(br#"{"in_ms": 5}"#, 100, 1000), Ok(105));
        for body in [
            &br#"{"at_ms": 1001}"#[..],
            br#"{"in_ms": 18446744073709551615}"#,
            br#"{"at_ms": 1, "in_ms": 1}"#,
            br#"{}"#,
            br#"{"at_ms": -1}"#,
        ] {
            assert_eq!(parse_alarm(body, 100, 1000).unwrap_err().status, 400);
        }
    }
}
