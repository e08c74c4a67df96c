//! SIGKILL mid-stream: every append that was answered is there after the
//! restart, and nothing whose ack was answered is handed out again.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use crate::harness::Server;
use crate::queue_client::{ack, pull};

#[test]
fn sigkill_keeps_answered_appends_and_never_redelivers_answered_acks() {
    let mut server = Server::start(2);
    let appended: Arc<Mutex<BTreeSet<u64>>> = Arc::default();
    let acked: Arc<Mutex<BTreeSet<u64>>> = Arc::default();
    // Acks sent whose answer may not have come back: they may or may not
    // have applied when the server died.
    let ack_sent: Arc<Mutex<BTreeSet<u64>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    thread::scope(|scope| {
        for producer in 0..3 {
            let conn = server.connect();
            let (appended, stop) = (Arc::clone(&appended), Arc::clone(&stop));
            scope.spawn(move || produce(conn, producer, &appended, &stop));
        }
        let conn = server.connect();
        let (answered, sent, stop2) =
            (Arc::clone(&acked), Arc::clone(&ack_sent), Arc::clone(&stop));
        scope.spawn(move || consume(conn, &answered, &sent, &stop2));
        thread::sleep(Duration::from_millis(1000));
        // On a loaded machine the first acks may take longer: wait for
        // both sides to be under way, then kill mid-stream.
        crate::harness::eventually(Duration::from_secs(10), || {
            !acked.lock().expect("not poisoned").is_empty()
        });
        server.kill9();
        stop.store(true, Ordering::SeqCst);
    });
    server.restart(2);
    let appended = appended.lock().expect("not poisoned").clone();
    let acked = acked.lock().expect("not poisoned").clone();
    let ack_sent = ack_sent.lock().expect("not poisoned").clone();
    assert!(
        appended.len() >= 3,
        "the producers got going: {}",
        appended.len()
    );
    assert!(!acked.is_empty(), "the consumer got going");
    let mut conn = server.connect();
    let mut left = BTreeSet::new();
    loop {
        let got = pull(&mut conn, "crash", "max=1000&unordered=true");
        if got.is_empty() {
            break;
        }
        for m in &got {
            assert!(
                !acked.contains(&m.seq),
                "seq {} was acked, yet handed out again",
                m.seq
            );
            assert!(left.insert(m.seq), "seq {} handed out twice", m.seq);
        }
        // Acked as it goes, so that the in-flight limit never ends the drain.
        let seqs: Vec<u64> = got.iter().map(|m| m.seq).collect();
        assert_eq!(ack(&mut conn, "crash", &seqs), seqs.len() as u64);
    }
    for seq in &appended {
        assert!(
            left.contains(seq) || ack_sent.contains(seq),
            "answered append {seq} is lost"
        );
    }
}

/// Appends until stopped, recording each answered sequence number.
fn produce(
    mut conn: crate::harness::Conn,
    producer: usize,
    appended: &Mutex<BTreeSet<u64>>,
    stop: &AtomicBool,
) {
    for i in 0.. {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let path = "/queue/crash/messages";
        let body = format!("{producer}:{i}");
        let Ok(response) = conn.try_request("POST", path, &[], body.as_bytes()) else {
            return;
        };
        assert_eq!(response.status, 200, "{response}");
        let seq = response.json().u64_field("first_seq");
        appended.lock().expect("not poisoned").insert(seq);
    }
}

/// Pulls and acks every batch until stopped, recording the acks sent and
/// those answered.
fn consume(
    mut conn: crate::harness::Conn,
    acked: &Mutex<BTreeSet<u64>>,
    sent: &Mutex<BTreeSet<u64>>,
    stop: &AtomicBool,
) {
    while !stop.load(Ordering::SeqCst) {
        let path = "/queue/crash/pull?max=5&visibility_ms=100&wait_ms=100";
        let Ok(response) = conn.try_request("POST", path, &[], b"") else {
            return;
        };
        let got = crate::queue_client::messages_of(&response.json());
        if got.is_empty() {
            continue;
        }
        let seqs: Vec<u64> = got.iter().map(|m| m.seq).collect();
        let list: Vec<String> = seqs.iter().map(u64::to_string).collect();
        let body = format!("{{\"seqs\": [{}]}}", list.join(","));
        sent.lock()
            .expect("not poisoned")
            .extend(seqs.iter().copied());
        let Ok(response) = conn.try_request("POST", "/queue/crash/ack", &[], body.as_bytes())
        else {
            return;
        };
        assert_eq!(response.status, 200, "{response}");
        acked.lock().expect("not poisoned").extend(seqs);
    }
}

#[test]
fn sequence_numbers_continue_after_a_restart() {
    let mut server = Server::start(2);
    let mut conn = server.connect();
    crate::queue_client::append_batch(&mut conn, "cont", &["a", "b"]);
    let got = pull(&mut conn, "cont", "max=1");
    ack(&mut conn, "cont", &[got[0].seq]);
    server.kill9();
    server.restart(2);
    let mut conn = server.connect();
    assert_eq!(crate::queue_client::append(&mut conn, "cont", "c"), 3);
    let rest = pull(&mut conn, "cont", "max=10");
    assert_eq!(rest.iter().map(|m| m.seq).collect::<Vec<_>>(), [2, 3]);
}
