//! A start reads a fjall journal whose tail a crash or a full disk tore in
//! the middle of an entry's header: the torn batch is dropped, everything
//! before it is there, and the start does not panic (debug builds did, on a
//! `debug_assert!` in fjall's entry decoder, until the workspace turned
//! fjall's debug assertions off; see the root Cargo.toml).

use durin_storage::{Layout, OpenPartitions, StoreOptions};

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[test]
fn a_journal_torn_inside_an_entry_header_loses_only_the_torn_batch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let layout = Layout::open_or_create(dir.path(), 1).expect("layout");
    let options = StoreOptions::default();
    {
        let partitions = OpenPartitions::open_all(&layout, &options).expect("open");
        let (db, keyspace) = partitions.get(0).expect("partition 0 is open");
        let mut first = db.batch();
        first.insert(keyspace, b"kept-key".as_slice(), b"kept".as_slice());
        first.commit().expect("commit");
        let mut second = db.batch();
        second.insert(keyspace, b"torn-key".as_slice(), b"torn".as_slice());
        second.commit().expect("commit");
        db.persist(fjall::PersistMode::SyncAll).expect("persist");
    }
    // Zero everything from the torn entry's on-disk value length on (the
    // four bytes before its key), as a write cut there leaves it in the
    // preallocated journal: its value length reads 4, its on-disk length 0.
    let journal = dir.path().join("partition-0000").join("0.jnl");
    let mut bytes = std::fs::read(&journal).expect("the journal is where fjall 3.1 puts it");
    let key_at = find(&bytes, b"torn-key").expect("the torn entry's key is in the journal");
    assert!(find(&bytes, b"kept-key").is_some_and(|kept| kept < key_at));
    let cut = key_at - 4;
    let end = (key_at + 64).min(bytes.len());
    bytes[cut..end].fill(0);
    std::fs::write(&journal, &bytes).expect("rewrite the journal");

    let partitions = OpenPartitions::open_all(&layout, &options).expect("the start survives");
    let (_, keyspace) = partitions.get(0).expect("partition 0 is open");
    let kept = keyspace.get(b"kept-key").expect("get");
    assert_eq!(kept.as_deref(), Some(&b"kept"[..]));
    assert!(keyspace.get(b"torn-key").expect("get").is_none());
}
