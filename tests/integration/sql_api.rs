//! The built-in `sql` class over HTTP and RPC: queries, typed values,
//! batches that apply all or nothing, refused statements, limits, and
//! data that survives a restart with another core count.

use crate::harness::json::Value;
use crate::harness::{Conn, Server};

fn query(conn: &mut Conn, db: &str, body: &str) -> crate::harness::Response {
    conn.post(&format!("/sql/{db}/query"), body.as_bytes())
}

fn ok(conn: &mut Conn, db: &str, body: &str) -> Value {
    let response = query(conn, db, body);
    assert_eq!(response.status, 200, "{body}: {}", response.text());
    response.json()
}

fn rows(value: &Value) -> String {
    value.get("rows").expect("rows").to_string()
}

#[test]
fn queries_return_typed_rows_and_survive_a_restart() {
    let mut server = Server::start(2);
    let mut conn = server.connect();
    ok(
        &mut conn,
        "app",
        r#"{"sql": "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, score REAL, data BLOB)"}"#,
    );
    let inserted = ok(
        &mut conn,
        "app",
        r#"{"sql": "INSERT INTO t (name, score, data) VALUES (?, ?, ?), (?, NULL, NULL)",
            "params": ["ann", 1.5, {"base64": "AAEC"}, "bob"]}"#,
    );
    assert_eq!(inserted.u64_field("rows_written"), 2);
    assert!(inserted.u64_field("database_size") >= 8192);
    let selected = ok(
        &mut conn,
        "app",
        r#"{"sql": "SELECT id, name, score, data FROM t ORDER BY id"}"#,
    );
    assert_eq!(
        selected.get("columns").expect("columns").to_string(),
        r#"["id","name","score","data"]"#
    );
    let expected = r#"[[1,"ann",1.5,{"base64":"AAEC"}],[2,"bob",null,null]]"#;
    assert_eq!(rows(&selected), expected);
    server.restart(3);
    let mut conn = server.connect();
    let again = ok(
        &mut conn,
        "app",
        r#"{"sql": "SELECT id, name, score, data FROM t ORDER BY id"}"#,
    );
    assert_eq!(rows(&again), expected);
    let info = conn.get("/sql/app").json();
    assert_eq!(info.get("tables").expect("tables").to_string(), r#"["t"]"#);
    let deleted = conn.request("DELETE", "/sql/app", &[], b"");
    assert_eq!(deleted.status, 200);
    let info = conn.get("/sql/app").json();
    assert_eq!(info.u64_field("database_size"), 0);
}

#[test]
fn a_failing_batch_applies_nothing_and_names_the_statement() {
    let server = Server::start(2);
    let mut conn = server.connect();
    ok(
        &mut conn,
        "b",
        r#"{"sql": "CREATE TABLE t (v INTEGER UNIQUE)"}"#,
    );
    let batch = r#"{"statements": [
        {"sql": "INSERT INTO t VALUES (1)"},
        {"sql": "INSERT INTO t VALUES (2)"},
        {"sql": "BEGIN"},
        {"sql": "INSERT INTO t VALUES (3)"}]}"#;
    let failed = conn.post("/sql/b/batch", batch.as_bytes());
    assert_eq!(failed.status, 400, "{}", failed.text());
    assert_eq!(failed.json().u64_field("index"), 2);
    assert!(
        failed.text().contains("transaction_sync"),
        "{}",
        failed.text()
    );
    let duplicate = r#"{"statements": [
        {"sql": "INSERT INTO t VALUES (5)"},
        {"sql": "INSERT INTO t VALUES (5)"}]}"#;
    let failed = conn.post("/sql/b/batch", duplicate.as_bytes());
    assert_eq!(failed.status, 400);
    assert_eq!(failed.json().u64_field("index"), 1);
    assert_eq!(failed.json().str_field("code"), "SQLITE_CONSTRAINT");
    let count = ok(&mut conn, "b", r#"{"sql": "SELECT count(*) FROM t"}"#);
    assert_eq!(rows(&count), "[[0]]", "nothing of either batch applied");
    let good = r#"{"statements": [
        {"sql": "INSERT INTO t VALUES (?)", "params": [7]},
        {"sql": "SELECT v FROM t"}]}"#;
    let applied = conn.post("/sql/b/batch", good.as_bytes());
    assert_eq!(applied.status, 200, "{}", applied.text());
    let count = ok(&mut conn, "b", r#"{"sql": "SELECT v FROM t"}"#);
    assert_eq!(rows(&count), "[[7]]");
}

#[test]
fn bad_requests_refusals_and_limits_get_their_statuses() {
    let server = Server::start(1);
    let mut conn = server.connect();
    let cases: &[(&str, u16, &str)] = &[
        ("{not json", 400, "body must be"),
        (r#"{"sql": "SELEC 1"}"#, 400, "SQLITE_ERROR"),
        (r#"{"sql": "ATTACH 'x' AS y"}"#, 400, "ATTACH"),
        (
            r#"{"sql": "PRAGMA journal_mode = OFF"}"#,
            400,
            "journal_mode",
        ),
        (r#"{"sql": "CREATE TABLE _durin_x (a)"}"#, 400, "reserved"),
        (
            r#"{"sql": "SELECT zeroblob(3000000)"}"#,
            413,
            "value_bytes_max",
        ),
        (
            r#"{"sql": "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"}"#,
            408,
            "budget",
        ),
    ];
    for (body, status, says) in cases {
        let response = query(&mut conn, "errs", body);
        assert_eq!(response.status, *status, "{body}: {}", response.text());
        assert!(
            response.text().contains(says),
            "{body}: {}",
            response.text()
        );
    }
    let params: Vec<String> = (0..101).map(|i| i.to_string()).collect();
    let body = format!(r#"{{"sql": "SELECT 1", "params": [{}]}}"#, params.join(","));
    let response = query(&mut conn, "errs", &body);
    assert_eq!(response.status, 413);
    assert!(response.text().contains("bound_params_max"));
    // The object still works after all of that.
    ok(&mut conn, "errs", r#"{"sql": "SELECT 1"}"#);
}

#[test]
fn the_same_operations_work_over_rpc() {
    let server = Server::start(2);
    let (addr, _) = server.rpc_addr();
    let client = durin_client::Client::connect(addr, durin_client::ClientOptions::default())
        .expect("rpc connect");
    let object = durin_proto::rpc::ObjectRef::Name(b"rpc-db".to_vec());
    let call =
        |method: &str, payload: &str| client.call("sql", &object, method, payload.as_bytes());
    call("query", r#"{"sql": "CREATE TABLE t (a)"}"#).expect("create");
    call("query", r#"{"sql": "INSERT INTO t VALUES (42)"}"#).expect("insert");
    let reply = call("query", r#"{"sql": "SELECT a FROM t"}"#).expect("select");
    let text = String::from_utf8(reply).expect("utf8");
    assert!(text.contains(r#""rows":[[42]]"#), "{text}");
    let info = call("info", "").expect("info");
    assert!(String::from_utf8_lossy(&info).contains(r#""tables":["t"]"#));
    let refused = call("query", r#"{"sql": "BEGIN"}"#);
    assert!(refused.is_err(), "BEGIN is refused over RPC too");
}
