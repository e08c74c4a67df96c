//! Ordering under concurrent producers and consumers: every append gets a
//! distinct, dense sequence number, each producer's messages keep their
//! order, and ordered consumers together see the queue in sequence order,
//! each message exactly once when every lease is acknowledged in time.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::thread;

use crate::harness::Server;
use crate::queue_client::{ack, append, pull, Msg};

const PRODUCERS: usize = 4;
const PER_PRODUCER: usize = 50;
const CONSUMERS: usize = 3;

#[test]
fn concurrent_producers_and_consumers_keep_the_order() {
    let server = Server::start(2);
    let total = PRODUCERS * PER_PRODUCER;
    let delivered: Arc<Mutex<Vec<Msg>>> = Arc::default();
    thread::scope(|scope| {
        for producer in 0..PRODUCERS {
            let mut conn = server.connect();
            scope.spawn(move || {
                let mut last = 0;
                for i in 0..PER_PRODUCER {
                    let seq = append(&mut conn, "order", &format!("{producer}:{i}"));
                    assert!(seq > last, "a producer's appends are ordered");
                    last = seq;
                }
            });
        }
        for _ in 0..CONSUMERS {
            let mut conn = server.connect();
            let delivered = Arc::clone(&delivered);
            scope.spawn(move || loop {
                if delivered.lock().expect("not poisoned").len() >= total {
                    return;
                }
                let got = pull(&mut conn, "order", "max=7&wait_ms=200&visibility_ms=30000");
                if got.is_empty() {
                    continue;
                }
                // Recorded before the ack: ordered delivery hands nothing
                // else out until these are acknowledged.
                delivered
                    .lock()
                    .expect("not poisoned")
                    .extend(got.iter().cloned());
                let seqs: Vec<u64> = got.iter().map(|m| m.seq).collect();
                assert_eq!(ack(&mut conn, "order", &seqs), seqs.len() as u64);
            });
        }
    });
    let delivered = delivered.lock().expect("not poisoned");
    let seqs: Vec<u64> = delivered.iter().map(|m| m.seq).collect();
    let expected: Vec<u64> = (1..=total as u64).collect();
    assert_eq!(seqs, expected, "each message once, in sequence order");
    let mut per_producer: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for m in delivered.iter() {
        let (producer, i) = m.body.split_once(':').expect("producer:index");
        per_producer
            .entry(producer.to_string())
            .or_default()
            .push(i.parse().expect("an index"));
    }
    for (producer, indices) in per_producer {
        let expected: Vec<usize> = (0..PER_PRODUCER).collect();
        assert_eq!(indices, expected, "producer {producer}'s order");
    }
}
