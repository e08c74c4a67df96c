//! SQL inserts the client has seen acknowledged are durable: concurrent
//! writers insert numbered rows into shared databases, the server is
//! killed with SIGKILL at a random moment and restarted with another core
//! count, and every acknowledged row is there (a row sent but not
//! acknowledged may be there too; nothing else). Ten cycles by default;
//! `DURIN_CRASH_CYCLES` asks for more.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use crate::harness::{Conn, Server};

const WRITERS: usize = 6;
const CYCLES_DEFAULT: usize = 10;
const CREATE: &str = r#"{"sql": "CREATE TABLE IF NOT EXISTS t (writer INTEGER, seq INTEGER, pad BLOB, PRIMARY KEY (writer, seq))"}"#;

#[derive(Clone, Copy, Default)]
struct WriterState {
    acked: u64,
    sent: u64,
}

fn db_path(writer: usize) -> String {
    // Writers share databases (three of them), never rows.
    format!("/sql/crash-{}/query", writer % 3)
}

/// Inserts rows 1, 2, 3, … until the server dies or `stop`.
fn writer(addr: SocketAddr, writer: usize, state: &mut WriterState, stop: &AtomicBool) {
    let Ok(mut conn) = Conn::connect(addr) else {
        return;
    };
    conn.set_timeout(Duration::from_secs(5));
    let path = db_path(writer);
    match conn.try_request("POST", &path, &[], CREATE.as_bytes()) {
        Ok(r) if r.status == 200 => {}
        Ok(r) => panic!("CREATE answered {}: {}", r.status, r.text()),
        Err(_) => return,
    }
    while !stop.load(Ordering::Relaxed) {
        let seq = state.sent + 1;
        state.sent = seq;
        // Every tenth row is big enough to need overflow pages.
        let pad = if seq.is_multiple_of(10) { 6000 } else { 10 };
        let body = format!(
            r#"{{"sql": "INSERT INTO t VALUES (?, ?, zeroblob(?))", "params": [{writer}, {seq}, {pad}]}}"#
        );
        match conn.try_request("POST", &path, &[], body.as_bytes()) {
            Ok(r) if r.status == 200 => state.acked = seq,
            Ok(r) => panic!("INSERT answered {}: {}", r.status, r.text()),
            Err(_) => return,
        }
    }
}

/// Checks every writer's rows, then continues each writer after what is
/// stored (a row in doubt that was lost is not a gap to come).
fn verify(server: &Server, states: &mut [WriterState], cycle: usize) {
    let mut conn = server.connect();
    for (w, state) in states.iter_mut().enumerate() {
        let body = format!(
            r#"{{"sql": "SELECT count(*), coalesce(max(seq), 0) FROM t WHERE writer = ?", "params": [{w}]}}"#
        );
        let response = conn.post(&db_path(w), body.as_bytes());
        let (count, max) = if response.status == 200 {
            let rows = response.json().get("rows").expect("rows").to_string();
            let inner = rows.trim_start_matches("[[").trim_end_matches("]]");
            let (c, m) = inner.split_once(',').expect("two columns");
            (
                c.parse::<u64>().expect("count"),
                m.parse::<u64>().expect("max"),
            )
        } else {
            assert!(
                response.text().contains("no such table"),
                "{}",
                response.text()
            );
            (0, 0)
        };
        assert_eq!(
            count, max,
            "cycle {cycle}: writer {w} has a gap in its rows"
        );
        assert!(
            max >= state.acked && max <= state.sent,
            "cycle {cycle}: writer {w} has rows up to {max}, but {} was acknowledged and {} the last sent",
            state.acked,
            state.sent
        );
        *state = WriterState {
            acked: max,
            sent: max,
        };
    }
    let check = conn.post("/sql/crash-0/query", br#"{"sql": "PRAGMA quick_check"}"#);
    assert!(
        check.text().contains(r#"[["ok"]]"#) || check.status == 400,
        "{}",
        check.text()
    );
}

#[test]
fn every_acknowledged_sql_insert_survives_sigkill() {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
        ^ u64::from(std::process::id());
    eprintln!("sql crash test seed: {seed}");
    let mut rng = seed | 1;
    // A statement's time budget is wall-clock time: on a machine busy with
    // other work a restarted server's first statements (reading cold
    // pages) can pass the 100 ms default. This test is about durability.
    let mut server = Server::builder()
        .cores(2)
        .config("[classes.sql]\nsql_statement_time_ms = 30000\n")
        .start();
    let mut states = vec![WriterState::default(); WRITERS];
    let mut total_acked = 0;
    let cycles = std::env::var("DURIN_CRASH_CYCLES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(CYCLES_DEFAULT);
    for cycle in 0..cycles {
        let addr = server.addr();
        let stop = AtomicBool::new(false);
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let kill_after = Duration::from_millis(50 + rng % 250);
        thread::scope(|scope| {
            for (w, state) in states.iter_mut().enumerate() {
                let stop = &stop;
                scope.spawn(move || writer(addr, w, state, stop));
            }
            thread::sleep(kill_after);
            server.kill9();
            stop.store(true, Ordering::Relaxed);
        });
        let acked: u64 = states.iter().map(|s| s.acked).sum();
        eprintln!("cycle {cycle}: killed after {kill_after:?}; {acked} rows acknowledged so far");
        total_acked += acked;
        server.restart(if cycle % 2 == 0 { 3 } else { 2 });
        verify(&server, &mut states, cycle);
    }
    assert!(total_acked > 0, "some insert was acknowledged");
}
