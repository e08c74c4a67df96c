//! Ten thousand objects, each with its own SQL database, live at once:
//! the server opens no file per object (its descriptor count stays flat)
//! and its memory stays bounded by the connection cap. The numbers are
//! printed for PERF.md.

use crate::harness::Server;
use crate::kv_client::metric_total;

const OBJECTS: usize = 10_000;

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

#[test]
fn ten_thousand_databases_open_no_file_each() {
    // Connections stay open for the whole run (the default closes them
    // after 10 s idle): all ten thousand are live at the end.
    let server = Server::builder()
        .cores(2)
        .config("[classes.sql]\nsql_idle_timeout_ms = 600000\nidle_timeout_ms = 600000\n")
        .start();
    let pid = server.pid();
    let mut conn = server.connect();
    let create = br#"{"sql": "CREATE TABLE IF NOT EXISTS t (k INTEGER PRIMARY KEY, v TEXT)"}"#;
    conn.post("/sql/warm/query", create);
    let fds_before = open_fds(pid);
    let rss_before = rss_kib(pid);
    for i in 0..OBJECTS {
        let path = format!("/sql/many-{i}/query");
        let r = conn.post(&path, create);
        assert_eq!(r.status, 200, "{}", r.text());
        let r = conn.post(&path, br#"{"sql": "INSERT INTO t (v) VALUES ('hello')"}"#);
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let fds_after = open_fds(pid);
    let rss_after = rss_kib(pid);
    let open = metric_total(&mut conn, "durin_sql_connections_open");
    eprintln!(
        "{OBJECTS} SQL objects: fds {fds_before} -> {fds_after}, RSS {rss_before} KiB -> {rss_after} KiB ({} bytes per object), {open} SQL connections open",
        (rss_after.saturating_sub(rss_before)) * 1024 / OBJECTS as u64
    );
    // Log segments may roll over meanwhile; nothing grows per object.
    assert!(
        fds_after <= fds_before + 8,
        "descriptors grew from {fds_before} to {fds_after}"
    );
    let r = conn.post(
        "/sql/many-77/query",
        br#"{"sql": "SELECT count(*) FROM t"}"#,
    );
    assert!(r.text().contains("[[1]]"), "{}", r.text());
}
