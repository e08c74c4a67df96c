//! One worker: a pinned thread's ring, its listener and its connections.
//!
//! The flow of one request:
//! 1. The multishot accept posts a completion carrying the new socket; the
//!    connection takes a slot in the slab and a receive is submitted.
//! 2. The receive completes; the connection parses every complete request in
//!    its buffer and queues one response per request.
//! 3. A send of the queued responses and the next receive are submitted
//!    together, and go to the kernel with the next `submit_and_wait`.
//! 4. The send completes; a partial send is resubmitted for the rest, and
//!    responses queued in the meantime go out next.
//!
//! Every submission's `user_data` names the operation, the slot and the slot's
//! generation. A slot is only released once none of its operations is in
//! flight, so a completion always finds the connection it was submitted for;
//! the generation is there to catch it loudly if that ever stops being true.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use io_uring::{cqueue, opcode, squeue, types, IoUring};

use crate::conn::Conn;

/// Submission queue entries; a full queue is flushed to the kernel, so this
/// bounds a batch rather than the number of operations in flight.
const SQ_ENTRIES: u32 = 4096;
/// Connections one worker serves at once; further ones are closed on accept.
const CONNS_MAX: usize = 16_000;
/// Completion queue entries. Each connection has at most one receive and one
/// send in flight, and there is one accept, so the queue cannot overflow; if
/// the kernel ever did buffer overflowed completions, draining the queue and
/// entering again delivers them.
const CQ_ENTRIES: u32 = 32_768;
const _: () = assert!(CQ_ENTRIES as usize > 2 * CONNS_MAX);
/// Completions copied out of the ring per pass.
const COMPLETION_BATCH: usize = 256;

/// `user_data` layout: operation in the top 2 bits, generation in the next
/// 30, slot in the low 32.
const OP_SHIFT: u32 = 62;
const GENERATION_SHIFT: u32 = 32;
const GENERATION_MASK: u32 = (1 << 30) - 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Accept = 0,
    Recv = 1,
    Send = 2,
}

fn token(op: Op, slot: usize, generation: u32) -> u64 {
    let slot = u32::try_from(slot).expect("slots are bounded by CONNS_MAX");
    ((op as u64) << OP_SHIFT)
        | (u64::from(generation & GENERATION_MASK) << GENERATION_SHIFT)
        | u64::from(slot)
}

fn untoken(user_data: u64) -> (Op, usize, u32) {
    let op = match user_data >> OP_SHIFT {
        0 => Op::Accept,
        1 => Op::Recv,
        2 => Op::Send,
        other => unreachable!("no operation is tagged {other}"),
    };
    let generation = (user_data >> GENERATION_SHIFT) as u32 & GENERATION_MASK;
    (op, user_data as u32 as usize, generation)
}

#[derive(Debug, Clone, Copy)]
struct Completion {
    user_data: u64,
    result: i32,
    flags: u32,
}

/// A worker's state; it lives on, and must only be used from, the thread that
/// created it (the ring is set up single-issuer).
pub struct Worker {
    ring: IoUring,
    listener: OwnedFd,
    conns: Vec<Conn>,
    free_slots: Vec<usize>,
    /// Reused between passes so that draining allocates nothing.
    completions: Vec<Completion>,
}

impl Worker {
    /// Sets up the ring and arms the accept; call on the worker's own thread.
    pub fn new(listener: OwnedFd) -> io::Result<Self> {
        let mut worker = Worker {
            ring: build_ring()?,
            listener,
            conns: Vec::new(),
            free_slots: Vec::new(),
            completions: Vec::with_capacity(COMPLETION_BATCH),
        };
        worker.submit_accept();
        worker.ring.submit()?;
        Ok(worker)
    }

    /// Serves connections until the ring itself fails.
    pub fn run(mut self) -> io::Result<()> {
        loop {
            if let Err(err) = self.ring.submit_and_wait(1) {
                if !is_transient(&err) {
                    return Err(err);
                }
            }
            self.drain_completions();
        }
    }

    /// Handles completions until the queue is empty. They are copied out
    /// first: handlers submit new work, and emptying the queue lets the
    /// kernel flush any completions it had to hold back.
    fn drain_completions(&mut self) {
        let mut batch = std::mem::take(&mut self.completions);
        loop {
            batch.clear();
            batch.extend(
                self.ring
                    .completion()
                    .take(COMPLETION_BATCH)
                    .map(|cqe| Completion {
                        user_data: cqe.user_data(),
                        result: cqe.result(),
                        flags: cqe.flags(),
                    }),
            );
            if batch.is_empty() {
                break;
            }
            for completion in &batch {
                self.handle(*completion);
            }
        }
        self.completions = batch;
    }

    fn handle(&mut self, completion: Completion) {
        let (op, slot, generation) = untoken(completion.user_data);
        if op == Op::Accept {
            self.on_accept(completion.result, completion.flags);
            return;
        }
        let conn = &self.conns[slot];
        assert_eq!(
            conn.generation & GENERATION_MASK,
            generation,
            "a completion outlived its connection"
        );
        match op {
            Op::Recv => self.on_recv(slot, completion.result),
            Op::Send => self.on_send(slot, completion.result),
            Op::Accept => unreachable!("handled above"),
        }
    }

    fn on_accept(&mut self, result: i32, flags: u32) {
        if result >= 0 {
            // SAFETY: a successful accept returns a new descriptor we own.
            let fd = unsafe { OwnedFd::from_raw_fd(result) };
            // At CONNS_MAX the connection is refused by closing it at once.
            if let Some(slot) = self.take_slot() {
                self.conns[slot].fd = Some(fd);
                self.progress(slot);
            }
        }
        // Failed accepts (an aborted handshake, EMFILE) are not fatal: the
        // listener keeps accepting once the condition clears.
        if !cqueue::more(flags) {
            self.submit_accept();
        }
    }

    fn on_recv(&mut self, slot: usize, result: i32) {
        let conn = &mut self.conns[slot];
        conn.recv_in_flight = false;
        if conn.closing {
            self.release_if_idle(slot);
            return;
        }
        match result {
            n if n > 0 => conn.on_received(n as usize),
            // The client is done sending; answer what it sent, then close.
            0 => conn.peer_closed = true,
            err if is_transient_errno(-err) => {}
            _ => {
                self.close(slot);
                return;
            }
        }
        self.progress(slot);
    }

    fn on_send(&mut self, slot: usize, result: i32) {
        let conn = &mut self.conns[slot];
        conn.send_in_flight = false;
        if conn.closing {
            self.release_if_idle(slot);
            return;
        }
        match result {
            n if n > 0 => conn.on_sent(n as usize),
            err if err < 0 && is_transient_errno(-err) => {}
            _ => {
                self.close(slot);
                return;
            }
        }
        self.progress(slot);
    }

    /// Moves a connection forward after any event: sends what is queued,
    /// parses requests held in the buffer, keeps a receive armed, and closes
    /// once a client that asked to close has its last response.
    fn progress(&mut self, slot: usize) {
        self.start_send(slot);
        let conn = &mut self.conns[slot];
        // The send above may have drained the responses that held parsing
        // back. Parsing moves bytes in the receive buffer, so it waits while
        // the kernel may be writing into it.
        if !conn.recv_in_flight && conn.parse_requests().is_err() {
            self.close(slot);
            return;
        }
        self.start_send(slot);
        self.start_recv(slot);
        let conn = &self.conns[slot];
        // With nothing in flight and nothing queued, parsing found no further
        // complete request, so a client that is done has every answer.
        let done = conn.close_after_send || conn.peer_closed;
        if done && !conn.send_in_flight && conn.all_sent() {
            self.close(slot);
        }
    }

    fn start_send(&mut self, slot: usize) {
        let conn = &mut self.conns[slot];
        let generation = conn.generation;
        let fd = conn_fd(conn);
        let Some(bytes) = conn.next_send() else {
            return;
        };
        let len = u32::try_from(bytes.len()).expect("send buffers are bounded far below 4 GiB");
        let entry = opcode::Send::new(types::Fd(fd), bytes.as_ptr(), len)
            .flags(libc::MSG_NOSIGNAL)
            .build()
            .user_data(token(Op::Send, slot, generation));
        conn.send_in_flight = true;
        // SAFETY: the bytes belong to the connection's send buffer, which is
        // neither moved nor freed while `send_in_flight` is set.
        unsafe { push(&mut self.ring, &entry) };
    }

    fn start_recv(&mut self, slot: usize) {
        let conn = &mut self.conns[slot];
        if !conn.wants_recv() {
            return;
        }
        let generation = conn.generation;
        let fd = conn_fd(conn);
        let window = conn.recv_window();
        assert!(!window.is_empty(), "parsing leaves room to receive");
        let len = u32::try_from(window.len()).expect("receive buffers are bounded at 64 KiB");
        let entry = opcode::Recv::new(types::Fd(fd), window.as_mut_ptr(), len)
            .build()
            .user_data(token(Op::Recv, slot, generation));
        conn.recv_in_flight = true;
        // SAFETY: the window belongs to the connection's receive buffer,
        // which is neither moved nor freed while `recv_in_flight` is set.
        unsafe { push(&mut self.ring, &entry) };
    }

    fn submit_accept(&mut self) {
        let entry = opcode::AcceptMulti::new(types::Fd(self.listener.as_raw_fd()))
            .flags(libc::SOCK_CLOEXEC)
            .build()
            .user_data(token(Op::Accept, 0, 0));
        // SAFETY: a multishot accept points at no memory of ours.
        unsafe { push(&mut self.ring, &entry) };
    }

    fn take_slot(&mut self) -> Option<usize> {
        if let Some(slot) = self.free_slots.pop() {
            return Some(slot);
        }
        if self.conns.len() < CONNS_MAX {
            self.conns.push(Conn::new());
            return Some(self.conns.len() - 1);
        }
        None
    }

    /// Starts tearing a connection down; the slot is released once the
    /// kernel has returned every operation on it.
    fn close(&mut self, slot: usize) {
        let conn = &mut self.conns[slot];
        if conn.closing {
            return;
        }
        conn.closing = true;
        // Shutting the socket down completes an in-flight receive (with end
        // of stream) and send, instead of leaving them waiting on a client.
        // An error here means the socket is already dead, which is the goal.
        // SAFETY: plain syscall on a descriptor the connection owns.
        unsafe { libc::shutdown(conn_fd(conn), libc::SHUT_RDWR) };
        self.release_if_idle(slot);
    }

    fn release_if_idle(&mut self, slot: usize) {
        let conn = &mut self.conns[slot];
        assert!(conn.closing);
        if conn.recv_in_flight || conn.send_in_flight {
            return;
        }
        // Dropping the descriptor closes the socket.
        conn.reset();
        self.free_slots.push(slot);
    }
}

fn conn_fd(conn: &Conn) -> RawFd {
    conn.fd
        .as_ref()
        .expect("a slot in use holds its socket until it is released")
        .as_raw_fd()
}

/// Queues one submission, handing the queue to the kernel first if it is full.
///
/// # Safety
/// Any memory the entry points to must stay valid and unaliased until its
/// completion is reaped.
unsafe fn push(ring: &mut IoUring, entry: &squeue::Entry) {
    loop {
        // SAFETY: forwarded to the caller.
        if unsafe { ring.submission().push(entry) }.is_ok() {
            return;
        }
        if let Err(err) = ring.submit() {
            assert!(is_transient(&err), "io_uring_enter failed: {err}");
        }
    }
}

fn build_ring() -> io::Result<IoUring> {
    // Single-issuer plus deferred task work runs completions only when this
    // thread asks for them, in batches; it was worth 15-30% here.
    let tuned = IoUring::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .setup_cqsize(CQ_ENTRIES)
        .build(SQ_ENTRIES);
    match tuned {
        Ok(ring) => Ok(ring),
        Err(err) => {
            eprintln!("ceiling: falling back to a plain io_uring ({err})");
            IoUring::builder()
                .setup_cqsize(CQ_ENTRIES)
                .build(SQ_ENTRIES)
        }
    }
}

/// `io_uring_enter` errors that clear by themselves: a signal, memory for
/// requests, or held-back completions that the next enter delivers.
fn is_transient(err: &io::Error) -> bool {
    err.raw_os_error().is_some_and(is_transient_errno)
}

fn is_transient_errno(errno: i32) -> bool {
    matches!(errno, libc::EINTR | libc::EAGAIN | libc::EBUSY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_round_trips() {
        for (op, slot, generation) in [
            (Op::Accept, 0, 0),
            (Op::Recv, CONNS_MAX - 1, GENERATION_MASK),
            (Op::Send, 12_345, 7),
        ] {
            assert_eq!(untoken(token(op, slot, generation)), (op, slot, generation));
        }
        // Generations wrap within their bits instead of spilling into the op.
        assert_eq!(
            untoken(token(Op::Recv, 1, GENERATION_MASK + 1)),
            (Op::Recv, 1, 0)
        );
    }
}
