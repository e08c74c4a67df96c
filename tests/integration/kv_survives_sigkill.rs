//! A `kv` write the client has seen acknowledged is durable: SIGKILL right
//! after the last response, restart on the same data, and every
//! acknowledged put, overwrite, delete and transaction is there.

use crate::harness::{Conn, Server};
use crate::kv_client::{assert_ok, delete, get, list, op_delete, op_put, ops, put, transaction};
use std::collections::BTreeMap;
use std::thread;

const OBJECTS: usize = 10;
const THREADS: usize = 4;
const KEYS_PER_OBJECT: usize = 8;

type State = BTreeMap<Vec<u8>, Vec<u8>>;

fn object_name(index: usize) -> String {
    format!("durable-{index}")
}

/// A value that differs per object, key and round, and is not always text
/// or small.
fn value_of(object: usize, key: usize, round: usize) -> Vec<u8> {
    let mut value = format!("{object}/{key}/{round}").into_bytes();
    if key.is_multiple_of(3) {
        value.extend_from_slice(&[0xff, 0x00, 0xfe]);
    }
    if key.is_multiple_of(5) {
        value.extend(std::iter::repeat_n(b'x', 4000 + object));
    }
    value
}

/// Writes object `object` the same way every time: puts, overwrites, a
/// delete and a transaction. Returns the state the writes leave.
fn write_object(conn: &mut Conn, object: usize, round: usize) -> State {
    let name = object_name(object);
    let mut state = State::new();
    for key in 0..KEYS_PER_OBJECT {
        let key_bytes = format!("key-{key:02}").into_bytes();
        let value = value_of(object, key, round);
        put(conn, &name, &key_bytes, &value);
        state.insert(key_bytes, value);
    }
    let overwritten = value_of(object, 1, round + 100);
    put(conn, &name, b"key-01", &overwritten);
    state.insert(b"key-01".to_vec(), overwritten);
    assert!(delete(conn, &name, b"key-02"));
    state.remove(&b"key-02"[..]);
    let tx_value = format!("tx {object}/{round}");
    let body = ops(&[op_put("tx", &tx_value), op_delete("key-03")]);
    assert_ok(&transaction(conn, &name, &body), "the transaction");
    state.insert(b"tx".to_vec(), tx_value.into_bytes());
    state.remove(&b"key-03"[..]);
    state
}

/// Writes every object over several connections at once; returns after the
/// last response arrived.
fn write_all(server: &Server, round: usize) -> Vec<State> {
    let mut states = vec![State::new(); OBJECTS];
    thread::scope(|scope| {
        let workers: Vec<_> = (0..THREADS)
            .map(|worker| {
                let mut conn = server.connect();
                scope.spawn(move || {
                    (worker..OBJECTS)
                        .step_by(THREADS)
                        .map(|object| (object, write_object(&mut conn, object, round)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for worker in workers {
            for (object, state) in worker.join().expect("a writer thread panicked") {
                states[object] = state;
            }
        }
    });
    states
}

fn assert_all(server: &Server, states: &[State], context: &str) {
    let mut conn = server.connect();
    for (object, state) in states.iter().enumerate() {
        let name = object_name(object);
        let want: Vec<(Vec<u8>, Vec<u8>)> = state.clone().into_iter().collect();
        assert_eq!(list(&mut conn, &name, ""), want, "{name} {context}");
        for (key, value) in state {
            assert_eq!(
                get(&mut conn, &name, key).as_ref(),
                Some(value),
                "{name} key {:?} {context}",
                String::from_utf8_lossy(key)
            );
        }
        for gone in [&b"key-02"[..], b"key-03"] {
            assert_eq!(
                get(&mut conn, &name, gone),
                None,
                "{name} deleted key {context}"
            );
        }
    }
}

#[test]
fn acknowledged_kv_writes_survive_sigkill() {
    let mut server = Server::start(3);
    for round in 0..2 {
        let states = write_all(&server, round);
        // Killed the moment the last response is in: nothing gets to flush.
        server.kill9();
        server.restart(3);
        assert_all(&server, &states, &format!("after SIGKILL in round {round}"));
    }
}

#[test]
fn the_last_put_before_sigkill_survives() {
    let mut server = Server::start(2);
    for round in 1..=3u32 {
        let mut conn = server.connect();
        let value = format!("value {round}");
        put(
            &mut conn,
            "last",
            format!("key-{round}").as_bytes(),
            value.as_bytes(),
        );
        put(&mut conn, "last", b"latest", value.as_bytes());
        server.kill9();
        server.restart(2);
        let mut conn = server.connect();
        assert_eq!(
            get(&mut conn, "last", b"latest"),
            Some(value.into_bytes()),
            "after SIGKILL number {round}"
        );
        assert_eq!(
            list(&mut conn, "last", "").len(),
            round as usize + 1,
            "after SIGKILL number {round}"
        );
    }
}
