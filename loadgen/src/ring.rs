//! The io_uring plumbing a worker needs: its ring, how a submission names
//! the connection it belongs to, and how submissions are queued.
//!
//! A worker's ring is set up single-issuer with deferred task work, as the
//! servers' rings are: completions are only processed when the worker enters
//! the kernel to wait, in batches, and never on another thread.

use std::io;

use io_uring::{squeue, types, IoUring};

/// Submission queue entries; a full queue is flushed to the kernel, so this
/// bounds a batch, not the operations in flight.
pub const SQ_ENTRIES: u32 = 1024;
/// The kernel's largest completion queue.
pub const CQ_ENTRIES_MAX: usize = 65_536;

/// `user_data` layout: operation in the top 2 bits, generation in the next
/// 30, slot in the low 32.
const OP_SHIFT: u32 = 62;
const GENERATION_SHIFT: u32 = 32;
pub const GENERATION_MASK: u32 = (1 << 30) - 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
/// What a submission does, as its completion reports it.
pub enum Op {
    Connect = 0,
    Recv = 1,
    Send = 2,
    /// Linked connect timeouts and cancels: their completions carry nothing
    /// the worker needs.
    Aux = 3,
}

/// The `user_data` of operation `op` on connection slot `slot`.
pub fn token(op: Op, slot: usize, generation: u32) -> u64 {
    let slot = u32::try_from(slot).expect("slots are bounded by CONNS_PER_WORKER_MAX");
    ((op as u64) << OP_SHIFT)
        | (u64::from(generation & GENERATION_MASK) << GENERATION_SHIFT)
        | u64::from(slot)
}

/// The operation, slot and generation a completion's `user_data` names.
pub fn untoken(user_data: u64) -> (Op, usize, u32) {
    let op = match user_data >> OP_SHIFT {
        0 => Op::Connect,
        1 => Op::Recv,
        2 => Op::Send,
        _ => Op::Aux,
    };
    let generation = (user_data >> GENERATION_SHIFT) as u32 & GENERATION_MASK;
    (op, user_data as u32 as usize, generation)
}

/// Queues submissions, handing the queue to the kernel first if they do not
/// all fit, so that linked entries always go in together.
///
/// # Safety
/// Any memory the entries point to must stay valid and unaliased until
/// their completions are reaped.
pub unsafe fn push(ring: &mut IoUring, entries: &[squeue::Entry]) {
    loop {
        // SAFETY: forwarded to the caller.
        if unsafe { ring.submission().push_multiple(entries) }.is_ok() {
            return;
        }
        if let Err(err) = ring.submit() {
            assert!(is_transient(&err), "io_uring_enter failed: {err}");
        }
    }
}

/// A ring with room for `cq_entries` completions.
pub fn build_ring(cq_entries: u32) -> io::Result<IoUring> {
    // Single-issuer plus deferred task work runs completions only when this
    // thread asks for them, in batches, as the servers do.
    let tuned = IoUring::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .setup_cqsize(cq_entries)
        .build(SQ_ENTRIES);
    match tuned {
        Ok(ring) => Ok(ring),
        Err(err) => {
            eprintln!("loadgen: falling back to a plain io_uring ({err})");
            IoUring::builder()
                .setup_cqsize(cq_entries)
                .build(SQ_ENTRIES)
        }
    }
}

/// Submits what is queued and, if `wait_ns` is not 0, waits up to that
/// long for a completion. A timeout and the transient errors are not
/// failures: the caller's loop simply turns again.
pub fn submit_and_wait_ns(ring: &mut IoUring, wait_ns: u64) -> io::Result<()> {
    let result = if wait_ns == 0 {
        ring.submit()
    } else {
        let wait = types::Timespec::new()
            .sec(wait_ns / 1_000_000_000)
            .nsec((wait_ns % 1_000_000_000) as u32);
        let args = types::SubmitArgs::new().timespec(&wait);
        ring.submitter().submit_with_args(1, &args)
    };
    match result {
        Ok(_) => Ok(()),
        Err(err) if err.raw_os_error() == Some(libc::ETIME) => Ok(()),
        Err(err) if is_transient(&err) => Ok(()),
        Err(err) => Err(err),
    }
}

/// `io_uring_enter` errors that clear by themselves: a signal, memory for
/// requests, or held-back completions that the next enter delivers.
pub fn is_transient(err: &io::Error) -> bool {
    err.raw_os_error().is_some_and(is_transient_errno)
}

pub fn is_transient_errno(errno: i32) -> bool {
    matches!(errno, libc::EINTR | libc::EAGAIN | libc::EBUSY)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::worker::CONNS_PER_WORKER_MAX;

    #[test]
    fn token_round_trips() {
        for (op, slot, generation) in [
            (Op::Connect, 0, 0),
            (Op::Recv, CONNS_PER_WORKER_MAX - 1, GENERATION_MASK),
            (Op::Send, 12_345, 7),
            (Op::Aux, 3, 0),
        ] {
            assert_eq!(untoken(token(op, slot, generation)), (op, slot, generation));
        }
        assert_eq!(
            untoken(token(Op::Recv, 1, GENERATION_MASK + 1)),
            (Op::Recv, 1, 0)
        );
    }
}
