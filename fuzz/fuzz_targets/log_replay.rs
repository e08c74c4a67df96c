//! Log replay on arbitrary segment bytes (what a damaged disk could hold).
//! Properties: replay never panics; it applies only whole records (a
//! corrupt one applies nothing of itself); and groups encoded by the log,
//! followed by any bytes, replay to exactly those groups' writes first.
#![no_main]

use arbitrary::Arbitrary;
use durin_storage::wal::{encode_group_for_tests, replay_segment, TestWrite};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input {
    groups: Vec<Vec<(u8, Vec<u8>, Option<Vec<u8>>)>>,
    tail: Vec<u8>,
}

fuzz_target!(|input: Input| {
    // Arbitrary bytes alone.
    let _ = replay_segment(&input.tail, |_| {});
    // Encoded groups, then arbitrary bytes.
    let mut segment = Vec::new();
    let mut expected = Vec::new();
    for (i, group) in input.groups.iter().enumerate() {
        let seq = i as u64 + 1;
        let writes: Vec<TestWrite> = group
            .iter()
            .map(|(p, k, v)| (u32::from(*p), k.clone(), v.clone()))
            .collect();
        for (partition, key, value) in &writes {
            expected.push((seq, *partition, key.clone(), value.clone()));
        }
        encode_group_for_tests(&mut segment, seq, &writes);
    }
    let groups = input.groups.len() as u64;
    segment.extend_from_slice(&input.tail);
    let mut seen = Vec::new();
    let result = replay_segment(&segment, |w| {
        seen.push((w.seq, w.partition, w.key.to_vec(), w.value.map(<[u8]>::to_vec)));
    });
    assert!(seen.len() >= expected.len());
    assert_eq!(&seen[..expected.len()], &expected[..]);
    if let Ok(records) = result {
        assert!(records >= groups);
    }
});
