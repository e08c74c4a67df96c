//! How a database page is stored: its zero runs left out.
//!
//! Every commit writes whole 4 KiB pages, and many of their bytes are
//! zeros: a table's last leaf fills up one row at a time with the gap
//! between its cell pointers and its cells still zero, and page 1 holds a
//! 100-byte header and a small schema. Leaving zero runs out cuts the
//! bytes each commit puts in the log (the write amplification PERF.md
//! measures: 4,178 → 2,187 bytes per single-row insert into a table of a
//! few thousand rows) at the cost of one pass over the page to encode and
//! decode it. A small change to a stored page is kept as a delta instead
//! ([`diff`], [`apply`]): 2,187 → 344 bytes per such insert.
//!
//! ```text
//! 0x00 | 4096 bytes                                   a raw page
//! 0x01 | (zeros u16 LE, literal_len u16 LE, literal)*  zero runs left out
//! ```

use super::file::PAGE_BYTES;

const RAW: u8 = 0x00;
const RUNS: u8 = 0x01;
/// Shorter zero runs stay in the literal: a run header costs 4 bytes.
const ZERO_RUN_MIN: usize = 8;

/// Why stored bytes are not a page.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct CorruptPage;

/// Encodes `page` into `out` (cleared first).
pub(crate) fn encode(page: &[u8], out: &mut Vec<u8>) {
    assert_eq!(page.len(), PAGE_BYTES, "whole pages are stored");
    out.clear();
    out.push(RUNS);
    let mut i = 0;
    while i < PAGE_BYTES {
        let zeros = page[i..].iter().take_while(|&&b| b == 0).count();
        i += zeros;
        let start = i;
        while i < PAGE_BYTES && !zero_run_at(page, i) {
            i += 1;
        }
        push_u16(out, zeros);
        push_u16(out, i - start);
        out.extend_from_slice(&page[start..i]);
        if out.len() > PAGE_BYTES {
            out.clear();
            out.push(RAW);
            out.extend_from_slice(page);
            return;
        }
    }
}

/// Whether a zero run worth leaving out starts at `i`.
fn zero_run_at(page: &[u8], i: usize) -> bool {
    page[i] == 0
        && (i + ZERO_RUN_MIN > PAGE_BYTES || page[i..i + ZERO_RUN_MIN].iter().all(|&b| b == 0))
}

fn push_u16(out: &mut Vec<u8>, n: usize) {
    let n = u16::try_from(n).expect("runs are shorter than a page");
    out.extend_from_slice(&n.to_le_bytes());
}

/// Decodes `stored` into `page`, checking every length.
pub(crate) fn decode(stored: &[u8], page: &mut [u8]) -> Result<(), CorruptPage> {
    assert_eq!(page.len(), PAGE_BYTES, "whole pages are read");
    match stored.split_first() {
        Some((&RAW, body)) if body.len() == PAGE_BYTES => {
            page.copy_from_slice(body);
            Ok(())
        }
        Some((&RUNS, mut body)) => {
            let mut pos = 0;
            while pos < PAGE_BYTES {
                let (zeros, literal, rest) = run_header(body).ok_or(CorruptPage)?;
                let end = pos + zeros + literal;
                if end > PAGE_BYTES || rest.len() < literal {
                    return Err(CorruptPage);
                }
                page[pos..pos + zeros].fill(0);
                page[pos + zeros..end].copy_from_slice(&rest[..literal]);
                body = &rest[literal..];
                pos = end;
            }
            if body.is_empty() {
                Ok(())
            } else {
                Err(CorruptPage)
            }
        }
        _ => Err(CorruptPage),
    }
}

fn run_header(body: &[u8]) -> Option<(usize, usize, &[u8])> {
    let zeros = u16::from_le_bytes(body.get(0..2)?.try_into().ok()?);
    let literal = u16::from_le_bytes(body.get(2..4)?.try_into().ok()?);
    Some((usize::from(zeros), usize::from(literal), &body[4..]))
}

/// Gaps of equal bytes shorter than this stay inside a delta's range:
/// a range header costs 4 bytes.
const DELTA_GAP_MIN: usize = 8;

/// Writes into `out` (cleared first) the ranges where `new` differs from
/// `old`, as `(offset u16 LE, len u16 LE, bytes)*`. Returns false, leaving
/// `out` unspecified, once the delta would be longer than `max` bytes.
pub(crate) fn diff(old: &[u8], new: &[u8], out: &mut Vec<u8>, max: usize) -> bool {
    assert_eq!(old.len(), PAGE_BYTES, "whole pages are compared");
    assert_eq!(new.len(), PAGE_BYTES, "whole pages are compared");
    out.clear();
    let mut i = 0;
    while i < PAGE_BYTES {
        if old[i] == new[i] {
            i += 1;
            continue;
        }
        let start = i;
        let mut end = i + 1;
        // Extend over differing bytes and short equal gaps.
        while end < PAGE_BYTES {
            if old[end] != new[end] {
                end += 1;
                continue;
            }
            let gap = old[end..]
                .iter()
                .zip(&new[end..])
                .take(DELTA_GAP_MIN)
                .take_while(|(a, b)| a == b)
                .count();
            if gap >= DELTA_GAP_MIN || end + gap == PAGE_BYTES {
                break;
            }
            end += gap;
        }
        push_u16(out, start);
        push_u16(out, end - start);
        out.extend_from_slice(&new[start..end]);
        if out.len() > max {
            return false;
        }
        i = end;
    }
    true
}

/// Applies a delta [`diff`] made to `page`, checking every range.
pub(crate) fn apply(delta: &[u8], page: &mut [u8]) -> Result<(), CorruptPage> {
    let mut body = delta;
    while !body.is_empty() {
        let (offset, len, rest) = run_header(body).ok_or(CorruptPage)?;
        if offset + len > page.len() || rest.len() < len || len == 0 {
            return Err(CorruptPage);
        }
        page[offset..offset + len].copy_from_slice(&rest[..len]);
        body = &rest[len..];
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(page: &[u8]) -> usize {
        let mut stored = Vec::new();
        encode(page, &mut stored);
        let mut back = vec![0xaa; PAGE_BYTES];
        decode(&stored, &mut back).expect("decodes");
        assert_eq!(back, page);
        stored.len()
    }

    #[test]
    fn pages_round_trip_and_zero_runs_are_left_out() {
        assert_eq!(round_trip(&[0; PAGE_BYTES]), 5);
        let mut page = vec![0u8; PAGE_BYTES];
        page[..100].fill(7);
        page[4000..].fill(9);
        assert!(round_trip(&page) < 220);
        let noisy: Vec<u8> = (0..PAGE_BYTES).map(|i| (i % 251) as u8 | 1).collect();
        assert_eq!(round_trip(&noisy), PAGE_BYTES + 1, "stored raw");
        let mut sparse = vec![0u8; PAGE_BYTES];
        for i in (0..PAGE_BYTES).step_by(9) {
            sparse[i] = 1;
        }
        round_trip(&sparse);
        let mut tail = vec![1u8; PAGE_BYTES];
        tail[PAGE_BYTES - 3..].fill(0);
        round_trip(&tail);
    }

    #[test]
    fn a_delta_turns_the_old_page_into_the_new_one() {
        let old: Vec<u8> = (0..PAGE_BYTES).map(|i| (i % 7) as u8).collect();
        let mut new = old.clone();
        new[0] = 99;
        new[20..60].fill(5);
        new[64] = 1;
        new[PAGE_BYTES - 1] = 42;
        let mut delta = Vec::new();
        assert!(diff(&old, &new, &mut delta, PAGE_BYTES));
        assert!(delta.len() < 100, "{} bytes", delta.len());
        let mut page = old.clone();
        apply(&delta, &mut page).expect("applies");
        assert_eq!(page, new);
        assert!(diff(&old, &old, &mut delta, PAGE_BYTES));
        assert!(delta.is_empty());
        let other: Vec<u8> = old.iter().map(|b| b ^ 0xff).collect();
        assert!(!diff(&old, &other, &mut delta, PAGE_BYTES / 4), "too big");
        assert_eq!(apply(&[0, 0, 5, 0, 1], &mut page), Err(CorruptPage));
        assert_eq!(
            apply(&[0xff, 0x0f, 4, 0, 1, 2, 3, 4], &mut page),
            Err(CorruptPage)
        );
    }

    #[test]
    fn damaged_records_are_refused() {
        let mut page = vec![0u8; PAGE_BYTES];
        page[10] = 1;
        let mut stored = Vec::new();
        encode(&page, &mut stored);
        let mut out = vec![0u8; PAGE_BYTES];
        assert_eq!(
            decode(&stored[..stored.len() - 1], &mut out),
            Err(CorruptPage)
        );
        let mut longer = stored.clone();
        longer.push(0);
        assert_eq!(decode(&longer, &mut out), Err(CorruptPage));
        assert_eq!(decode(&[2], &mut out), Err(CorruptPage));
        assert_eq!(decode(&[RAW, 1, 2], &mut out), Err(CorruptPage));
    }
}
