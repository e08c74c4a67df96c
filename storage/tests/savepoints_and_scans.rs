//! Savepoints roll writes back exactly; scans merge the overlay with fjall
//! in order, the overlay winning and its deletes hiding stored values.

use std::ops::Bound;

use durin_storage::{wal, Layout, ShardStore, StoreOptions};

fn store(dir: &std::path::Path) -> ShardStore {
    let layout = Layout::open_or_create(dir, 1).expect("layout");
    wal::recover(&layout).expect("recover");
    ShardStore::open(&layout, 0, 1, StoreOptions::default(), Box::new(|| {})).expect("open")
}

const OWNER: [u8; 16] = [1; 16];

fn scan(store: &ShardStore, reverse: bool) -> Vec<(String, String)> {
    let mut out = Vec::new();
    store
        .scan(
            &OWNER,
            (Bound::Included(&b"a"[..]), Bound::Excluded(&b"z"[..])),
            reverse,
            |k, v| {
                out.push((
                    String::from_utf8_lossy(k).into_owned(),
                    String::from_utf8_lossy(v).into_owned(),
                ));
                true
            },
        )
        .expect("scan");
    out
}

/// Makes everything written so far durable and applied to fjall, playing
/// the shard's ring synchronously.
fn settle(store: &mut ShardStore) {
    while let Some(write) = store.flush() {
        // SAFETY: the store keeps the buffer alive until the sync is reported.
        let n = unsafe {
            libc::pwrite(
                write.fd,
                write.ptr.cast(),
                write.len as usize,
                write.offset as i64,
            )
        };
        store.on_wal_write(write.seq, n as i32).expect("write");
        // SAFETY: fdatasync on the store's log descriptor.
        let synced = unsafe { libc::fdatasync(write.fd) };
        store.on_wal_sync(write.seq, synced).expect("sync");
    }
    for _ in 0..200 {
        store.poll_applier().expect("applier");
        if store.is_settled() {
            std::thread::sleep(std::time::Duration::from_millis(5));
            store.poll_applier().expect("applier");
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

#[test]
fn rollback_restores_earlier_values_and_absences() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = store(dir.path());
    store.put(&OWNER, b"a", b"1");
    store.release();
    let savepoint = store.savepoint();
    store.put(&OWNER, b"a", b"2");
    store.put(&OWNER, b"b", b"new");
    store.delete(&OWNER, b"a");
    assert_eq!(store.get_vec(&OWNER, b"a").expect("get"), None);
    store.rollback_to(savepoint);
    store.release();
    assert_eq!(
        store.get_vec(&OWNER, b"a").expect("get"),
        Some(b"1".to_vec())
    );
    assert_eq!(store.get_vec(&OWNER, b"b").expect("get"), None);
    // The rolled-back keys left the open group: only `a` = 1 is made durable.
    settle(&mut store);
    drop(store);
    let store = self::store(dir.path());
    assert_eq!(scan(&store, false), vec![("a".into(), "1".into())]);
}

#[test]
fn scans_merge_pending_and_stored_writes_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = store(dir.path());
    for (k, v) in [("b", "stored"), ("d", "stored"), ("f", "stored")] {
        store.put(&OWNER, k.as_bytes(), v.as_bytes());
    }
    store.release();
    settle(&mut store);
    // Now pending (overlay) writes on top of what fjall holds.
    store.put(&OWNER, b"a", b"pending");
    store.put(&OWNER, b"d", b"newer");
    store.delete(&OWNER, b"f");
    store.put(&OWNER, b"g", b"pending");
    store.release();
    let expected: Vec<(String, String)> = [
        ("a", "pending"),
        ("b", "stored"),
        ("d", "newer"),
        ("g", "pending"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(scan(&store, false), expected);
    let mut reversed = expected.clone();
    reversed.reverse();
    assert_eq!(scan(&store, true), reversed);
    settle(&mut store);
    assert_eq!(
        scan(&store, false),
        expected,
        "the same once everything is in fjall"
    );
}
