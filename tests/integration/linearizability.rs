//! A linearizability checker for histories that clients record against a
//! server (Wing and Gong's search, with Lowe's memo of visited
//! configurations), and the counter as a sequential model.
//!
//! A history is the operations clients made, each with the time it was
//! called, the time its answer came back, and the answer. An operation
//! whose answer never came (the connection broke, the server was killed)
//! has no return time: it may have taken effect at any point after its
//! call, or never. The history is linearizable if some order of the
//! operations respects real time (one that returned before another was
//! called comes first), gives every answered operation the answer the
//! model gives, and includes every answered operation. Linearizability is
//! local, so histories of different objects are checked apart.

use std::collections::{BTreeSet, HashSet};
use std::hash::Hash;

/// A sequential specification.
pub trait Model: Clone + Eq + Hash {
    type Input: PartialEq;
    type Output: PartialEq;
    /// Applies `input` to the state, returning what it answers.
    fn step(&mut self, input: &Self::Input) -> Self::Output;
}

/// One operation of a history. Times are any monotonic clock, in any unit.
#[derive(Debug, Clone)]
pub struct Operation<I, O> {
    pub call: u64,
    /// `None`: no answer came back; the outcome is unknown.
    pub answer: Option<(u64, O)>,
    pub input: I,
}

/// A counter: increments answer the value after them, reads the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Counter(pub u64);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CounterOp {
    Increment,
    Read,
}

impl Model for Counter {
    type Input = CounterOp;
    type Output = u64;
    fn step(&mut self, input: &CounterOp) -> u64 {
        if *input == CounterOp::Increment {
            self.0 += 1;
        }
        self.0
    }
}

/// Checks `history` against `initial`; on failure says how far the
/// longest linearizable prefix got. `budget` bounds the configurations
/// visited (the search is exponential in the worst case).
pub fn check<M: Model>(
    initial: M,
    history: &[Operation<M::Input, M::Output>],
    budget: usize,
) -> Result<(), String> {
    let n = history.len();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by_key(|&i| history[i].call);
    let ret = |i: usize| history[i].answer.as_ref().map_or(u64::MAX, |(at, _)| *at);
    let answered_total = history.iter().filter(|op| op.answer.is_some()).count();
    // Unanswered operations with equal inputs are interchangeable: if a
    // linearization places a later-called one and not an earlier one, the
    // earlier one fits in its place as well. So they are placed in call
    // order, which keeps the search from trying every subset of them.
    let mut unanswered_before: Vec<Option<usize>> = vec![None; n];
    let mut unanswered: Vec<usize> = Vec::new();
    for &i in &order {
        if history[i].answer.is_none() {
            unanswered_before[i] = unanswered
                .iter()
                .rev()
                .copied()
                .find(|&j| history[j].input == history[i].input);
            unanswered.push(i);
        }
    }
    // The set of placed operations is keyed in the memo by a 128-bit
    // Zobrist hash (the XOR of a random word per placed operation).
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut word = || {
        seed = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = seed;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let keys: Vec<u128> = (0..n)
        .map(|_| (u128::from(word()) << 64) | u128::from(word()))
        .collect();

    let mut seen: HashSet<(u128, M)> = HashSet::new();
    let mut done = vec![false; n];
    let mut placed_key = 0u128;
    // Positions in `order` not yet placed, and their return times: the
    // earliest return bounds which operation may come next.
    let mut open_positions: BTreeSet<usize> = (0..n).collect();
    let mut open_returns: BTreeSet<(u64, usize)> = (0..n).map(|i| (ret(i), i)).collect();
    let mut answered_done = 0;
    // Each frame: the operation placed, the state before it, and the
    // position of the next candidate to try when it is taken back.
    let mut stack: Vec<(usize, M, usize)> = Vec::new();
    let mut state = initial;
    let mut next = 0;
    let mut deepest = 0;
    loop {
        if answered_done == answered_total {
            return Ok(());
        }
        if seen.len() > budget {
            return Err(format!(
                "undecided after {budget} configurations ({deepest} of {n} operations placed)"
            ));
        }
        let horizon = open_returns.first().map_or(u64::MAX, |&(at, _)| at);
        let mut placed = None;
        for &position in open_positions.range(next..) {
            let i = order[position];
            if history[i].call > horizon {
                break;
            }
            if unanswered_before[i].is_some_and(|j| !done[j]) {
                continue;
            }
            let mut after = state.clone();
            let output = after.step(&history[i].input);
            let fits = match &history[i].answer {
                Some((_, expected)) => *expected == output,
                // One that changes nothing may as well be left out.
                None => after != state,
            };
            if fits && seen.insert((placed_key ^ keys[i], after.clone())) {
                placed = Some((position, after));
                break;
            }
        }
        if let Some((position, after)) = placed {
            let i = order[position];
            done[i] = true;
            placed_key ^= keys[i];
            open_positions.remove(&position);
            open_returns.remove(&(ret(i), i));
            if history[i].answer.is_some() {
                answered_done += 1;
            }
            stack.push((position, std::mem::replace(&mut state, after), position + 1));
            deepest = deepest.max(stack.len());
            next = 0;
            continue;
        }
        // Nothing fits here: take the last placement back, try the next.
        let Some((position, before, resume)) = stack.pop() else {
            return Err(format!(
                "not linearizable: at most {deepest} of {n} operations can be placed"
            ));
        };
        let i = order[position];
        done[i] = false;
        placed_key ^= keys[i];
        open_positions.insert(position);
        open_returns.insert((ret(i), i));
        if history[i].answer.is_some() {
            answered_done -= 1;
        }
        state = before;
        next = resume;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(call: u64, ret: Option<u64>, input: CounterOp, out: u64) -> Operation<CounterOp, u64> {
        Operation {
            call,
            answer: ret.map(|at| (at, out)),
            input,
        }
    }
    use CounterOp::{Increment as Inc, Read};

    #[test]
    fn overlapping_increments_may_take_either_order() {
        let h = [
            op(0, Some(10), Inc, 2),
            op(1, Some(9), Inc, 1),
            op(11, Some(12), Read, 2),
        ];
        assert!(check(Counter(0), &h, 10_000).is_ok());
    }

    #[test]
    fn a_read_may_not_go_back_in_time() {
        let h = [
            op(0, Some(1), Inc, 1),
            op(2, Some(3), Inc, 2),
            op(4, Some(5), Read, 1),
        ];
        assert!(check(Counter(0), &h, 10_000).is_err());
    }

    #[test]
    fn an_unanswered_increment_may_have_happened_or_not() {
        let happened = [op(0, None, Inc, 0), op(5, Some(6), Inc, 2)];
        assert!(check(Counter(0), &happened, 10_000).is_ok());
        let not = [op(0, None, Inc, 0), op(5, Some(6), Inc, 1)];
        assert!(check(Counter(0), &not, 10_000).is_ok());
        let lost = [op(0, Some(1), Inc, 1), op(2, Some(3), Inc, 1)];
        assert!(
            check(Counter(0), &lost, 10_000).is_err(),
            "a lost acknowledged increment"
        );
    }

    #[test]
    fn a_sequential_history_of_thousands_checks_quickly() {
        let mut h = Vec::new();
        for k in 0..3000u64 {
            h.push(op(2 * k, Some(2 * k + 3), Inc, k + 1));
        }
        // Neighbours overlap, yet each answer pins its place.
        assert!(check(Counter(0), &h, 1_000_000).is_ok());
    }
}
