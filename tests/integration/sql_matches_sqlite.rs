//! The `sql` class over HTTP gives the same results as a plain file-backed
//! SQLite for the same random statements, across object eviction (a short
//! idle timeout) and a server restart with another core count.

use base64::Engine as _;
use serde_json::{json, Value};

use crate::harness::{Conn, Server};

const STATEMENTS: usize = 240;
const SCHEMA: &str = "CREATE TABLE a (k INTEGER, v, w); CREATE INDEX a_k ON a (k); \
    CREATE TABLE b (k INTEGER PRIMARY KEY, v TEXT UNIQUE, n REAL)";

struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// A parameter as JSON (floats are exact binary fractions, so they read
/// back bit for bit).
fn random_param(rng: &mut Rng) -> Value {
    match rng.below(6) {
        0 => Value::Null,
        1 => json!(rng.below(400) as i64 - 200),
        2 => json!(rng.below(1000) as f64 / 4.0),
        3 => json!(format!("s{}", rng.below(60))),
        4 => json!({ "base64": base64::engine::general_purpose::STANDARD.encode(
            (0..rng.below(40)).map(|i| i as u8).collect::<Vec<_>>()) }),
        _ => json!("z".repeat(2000 + rng.below(9000) as usize)),
    }
}

fn random_statement(rng: &mut Rng) -> (String, Vec<Value>) {
    let p = |rng: &mut Rng, n: usize| (0..n).map(|_| random_param(rng)).collect::<Vec<_>>();
    match rng.below(10) {
        0..=2 => ("INSERT INTO a (k, v, w) VALUES (?, ?, ?)".into(), {
            let mut v = vec![json!(rng.below(100))];
            v.extend(p(rng, 2));
            v
        }),
        3 => (
            "INSERT OR REPLACE INTO b (k, v, n) VALUES (?, ?, ?)".into(),
            {
                vec![
                    json!(rng.below(50)),
                    json!(format!("u{}", rng.below(80))),
                    json!(rng.below(100) as f64 / 8.0),
                ]
            },
        ),
        4 => ("UPDATE a SET w = ? WHERE k % 5 = ?".into(), {
            let mut v = p(rng, 1);
            v.push(json!(rng.below(5)));
            v
        }),
        5 => ("DELETE FROM a WHERE k BETWEEN ? AND ?".into(), {
            let lo = rng.below(100);
            vec![json!(lo), json!(lo + 5)]
        }),
        6 => (
            "SELECT a.k, a.v, b.v, b.n FROM a JOIN b ON a.k = b.k ORDER BY a.rowid LIMIT 40".into(),
            vec![],
        ),
        7 => (
            "SELECT typeof(v), count(*), sum(length(w)), avg(k) FROM a GROUP BY 1 ORDER BY 1"
                .into(),
            vec![],
        ),
        8 => (
            "SELECT k, v, w FROM a WHERE k = ? ORDER BY rowid".into(),
            vec![json!(rng.below(100))],
        ),
        _ if rng.below(4) == 0 => ("VACUUM".into(), vec![]),
        _ => ("SELECT count(*), max(k), min(v) FROM a".into(), vec![]),
    }
}

fn oracle_param(v: &Value) -> rusqlite::types::Value {
    use rusqlite::types::Value as V;
    match v {
        Value::Null => V::Null,
        Value::Number(n) => n
            .as_i64()
            .map_or_else(|| V::Real(n.as_f64().expect("f64")), V::Integer),
        Value::String(s) => V::Text(s.clone()),
        Value::Object(o) => V::Blob(
            base64::engine::general_purpose::STANDARD
                .decode(o["base64"].as_str().expect("base64"))
                .expect("valid base64"),
        ),
        other => panic!("not a parameter: {other}"),
    }
}

/// The rows as the `sql` class writes them, or the error's presence.
fn oracle(conn: &rusqlite::Connection, sql: &str, params: &[Value]) -> Result<Value, ()> {
    let mut stmt = conn.prepare(sql).map_err(|_| ())?;
    let columns = stmt.column_count();
    let params: Vec<_> = params.iter().map(oracle_param).collect();
    let mut rows = stmt
        .query(rusqlite::params_from_iter(params))
        .map_err(|_| ())?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(|_| ())? {
        let values: Vec<Value> = (0..columns)
            .map(|c| match row.get_ref(c).expect("column") {
                rusqlite::types::ValueRef::Null => Value::Null,
                rusqlite::types::ValueRef::Integer(i) => json!(i),
                rusqlite::types::ValueRef::Real(f) => json!(f),
                rusqlite::types::ValueRef::Text(t) => json!(String::from_utf8_lossy(t)),
                rusqlite::types::ValueRef::Blob(b) => {
                    json!({ "base64": base64::engine::general_purpose::STANDARD.encode(b) })
                }
            })
            .collect();
        out.push(Value::Array(values));
    }
    Ok(Value::Array(out))
}

fn ours(conn: &mut Conn, sql: &str, params: &[Value]) -> Result<Value, ()> {
    let body = json!({ "sql": sql, "params": params }).to_string();
    let response = conn.post("/sql/diff/query", body.as_bytes());
    if response.status != 200 {
        assert_eq!(response.status, 400, "{sql}: {}", response.text());
        return Err(());
    }
    let value: Value = serde_json::from_slice(&response.body).expect("JSON");
    Ok(value["rows"].clone())
}

#[test]
fn random_statements_over_http_match_a_file_backed_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let oracle_conn = rusqlite::Connection::open(dir.path().join("oracle.db")).expect("oracle");
    oracle_conn.execute_batch(SCHEMA).expect("oracle schema");
    // Objects idle for 30 ms leave memory: most statements find the
    // object rebuilt and its database reopened from the store.
    let mut server = Server::builder()
        .cores(2)
        .config("[classes.sql]\nidle_timeout_ms = 30\nsql_statement_time_ms = 10000\n")
        .start();
    let mut conn = server.connect();
    ours(&mut conn, SCHEMA, &[]).expect("schema");
    let mut rng = Rng(0x5eed_1234_abcd);
    let mut answered = 0;
    for i in 0..STATEMENTS {
        if i == STATEMENTS / 2 {
            server.restart(3);
            conn = server.connect();
        }
        if rng.below(8) == 0 {
            std::thread::sleep(std::time::Duration::from_millis(60));
        }
        let (sql, params) = random_statement(&mut rng);
        let theirs = oracle(&oracle_conn, &sql, &params);
        let got = ours(&mut conn, &sql, &params);
        assert_eq!(got, theirs, "statement {i}: {sql} {params:?}");
        answered += usize::from(got.is_ok());
    }
    assert!(
        answered > STATEMENTS * 3 / 4,
        "only {answered} statements succeeded"
    );
    let check = "SELECT k, v, w FROM a ORDER BY rowid";
    assert_eq!(
        ours(&mut conn, check, &[]),
        oracle(&oracle_conn, check, &[])
    );
}
