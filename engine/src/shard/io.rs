//! The shard's one I/O boundary: every operation the shard asks of the
//! kernel is an [`Op`], and [`Shard::submit`] is the one place that turns
//! an `Op` into io_uring entries. The rest of the shard decides *what* to
//! do; only this file knows how io_uring spells it.
//!
//! Each op carries the token its completion comes back with (kind in the
//! top byte, the connection's generation and slot below), so a completion
//! for a connection that has since closed misses its slot and is dropped.

use std::os::fd::RawFd;

use durin_net::Token;
use io_uring::{opcode, squeue, types};

use super::{kind, Shard};

/// Sent to a connection refused at the connection cap, then it is closed.
static REJECT_RESPONSE: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 37\r\nConnection: close\r\n\r\nServer at its connection limit, retry";

/// One operation for the kernel.
pub(super) enum Op {
    /// A multishot accept on the shard's listener number `listener` (0:
    /// HTTP, 1: the shared RPC port, 2: this shard's RPC port).
    Accept { fd: RawFd, listener: u32 },
    /// Cancels the operation submitted with `target`.
    Cancel { target: Token, token: Token },
    /// Receives into `len` bytes at `ptr`.
    Recv {
        fd: RawFd,
        ptr: *mut u8,
        len: u32,
        token: Token,
    },
    /// A multishot receive into buffers of the provided-buffer ring
    /// `group`.
    RecvMulti { fd: RawFd, group: u16, token: Token },
    /// Sends `len` bytes at `ptr`.
    Send {
        fd: RawFd,
        ptr: *const u8,
        len: u32,
        token: Token,
    },
    /// Closes a descriptor nothing else is in flight on.
    Close { fd: RawFd },
    /// Refuses an accepted connection: `503` first if it speaks HTTP, then
    /// close.
    Reject { fd: RawFd, http: bool },
    /// Reads the 8-byte counter of the shard's eventfd into `buf`.
    ReadWake { fd: RawFd, buf: *mut u8 },
    /// A group's log record: a write at `offset`, linked to an
    /// `fdatasync` that starts only once the whole record is written. Both
    /// completions carry the low 32 bits of the group's sequence number.
    LogWrite {
        fd: RawFd,
        ptr: *const u8,
        len: u32,
        offset: u64,
        group: u32,
    },
}

impl Shard {
    /// Queues `op` on the shard's ring.
    ///
    /// # Safety
    /// Every buffer `op` points into must stay allocated, and must be
    /// neither moved nor touched by the shard, until the op's completion
    /// (the last one, for a multishot op) has arrived.
    pub(super) unsafe fn submit(&mut self, op: Op) -> std::io::Result<()> {
        // SAFETY (of each push below): the caller guarantees the buffers
        // outlive the op; the static reject response lives forever.
        unsafe {
            match op {
                Op::Accept { fd, listener } => self.ring.push(
                    opcode::AcceptMulti::new(types::Fd(fd))
                        .flags(libc::SOCK_CLOEXEC)
                        .build()
                        .user_data(Token::new(kind::ACCEPT, 0, listener).0),
                ),
                Op::Cancel { target, token } => self.ring.push(
                    opcode::AsyncCancel::new(target.0)
                        .build()
                        .user_data(token.0),
                ),
                Op::Recv {
                    fd,
                    ptr,
                    len,
                    token,
                } => self.ring.push(
                    opcode::Recv::new(types::Fd(fd), ptr, len)
                        .build()
                        .user_data(token.0),
                ),
                Op::RecvMulti { fd, group, token } => self.ring.push(
                    opcode::RecvMulti::new(types::Fd(fd), group)
                        .build()
                        .user_data(token.0),
                ),
                Op::Send {
                    fd,
                    ptr,
                    len,
                    token,
                } => self.ring.push(
                    opcode::Send::new(types::Fd(fd), ptr, len)
                        .build()
                        .user_data(token.0),
                ),
                Op::Close { fd } => self.ring.push(close(fd)),
                Op::Reject { fd, http } => {
                    if http {
                        let len = REJECT_RESPONSE.len() as u32;
                        self.ring.push(
                            opcode::Send::new(types::Fd(fd), REJECT_RESPONSE.as_ptr(), len)
                                .build()
                                .flags(squeue::Flags::IO_LINK)
                                .user_data(Token::new(kind::REJECT, 0, 0).0),
                        )?;
                    }
                    self.ring.push(close(fd))
                }
                Op::ReadWake { fd, buf } => self.ring.push(
                    opcode::Read::new(types::Fd(fd), buf, 8)
                        .build()
                        .user_data(Token::new(kind::WAKE, 0, 0).0),
                ),
                Op::LogWrite {
                    fd,
                    ptr,
                    len,
                    offset,
                    group,
                } => {
                    self.ring.push(
                        opcode::Write::new(types::Fd(fd), ptr, len)
                            .offset(offset)
                            .build()
                            .flags(squeue::Flags::IO_LINK)
                            .user_data(Token::new(kind::WAL_WRITE, 0, group).0),
                    )?;
                    self.ring.push(
                        opcode::Fsync::new(types::Fd(fd))
                            .flags(types::FsyncFlags::DATASYNC)
                            .build()
                            .user_data(Token::new(kind::WAL_SYNC, 0, group).0),
                    )
                }
            }
        }
    }
}

fn close(fd: RawFd) -> squeue::Entry {
    opcode::Close::new(types::Fd(fd))
        .build()
        .user_data(Token::new(kind::CLOSE, 0, 0).0)
}
