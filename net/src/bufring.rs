//! A provided-buffer ring: receive buffers shared by all of a shard's
//! long-lived connections.
//!
//! A receive armed with buffer selection names no buffer; the kernel takes
//! one from this ring only when bytes arrive, and the completion says which.
//! The shard copies the bytes out at once and hands the buffer back. So an
//! idle WebSocket holds no receive buffer at all, and a shard's receive
//! memory is the ring's, whatever the number of connections.

use std::alloc::{alloc_zeroed, Layout};
use std::io;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::types::BufRingEntry;

use crate::ring::Ring;

/// Alignment the kernel asks of the ring's entries.
const PAGE_BYTES: usize = 4096;

pub struct BufRing {
    group: u16,
    entries: u16,
    buf_bytes: usize,
    /// `entries` ring entries of 16 bytes, page-aligned, shared with the kernel.
    ring: *mut BufRingEntry,
    /// `entries` buffers of `buf_bytes`, back to back.
    bufs: Box<[u8]>,
    /// Our copy of the tail; the kernel reads the shared one.
    tail: u16,
}

impl BufRing {
    /// Registers a ring of `entries` (a power of two, at most 32,768)
    /// buffers of `buf_bytes` each as buffer group `group` of `ring`.
    pub fn register(
        ring: &Ring,
        group: u16,
        entries: u16,
        buf_bytes: usize,
    ) -> io::Result<BufRing> {
        assert!(entries.is_power_of_two(), "the kernel wants a power of two");
        assert!(entries <= 32768, "the kernel's limit on ring entries");
        let ring_layout = Layout::from_size_align(
            usize::from(entries) * std::mem::size_of::<BufRingEntry>(),
            PAGE_BYTES,
        )
        .expect("a valid layout");
        // SAFETY: the layout has a non-zero size.
        let mem = unsafe { alloc_zeroed(ring_layout) }.cast::<BufRingEntry>();
        assert!(!mem.is_null(), "allocating the buffer ring failed");
        let mut this = BufRing {
            group,
            entries,
            buf_bytes,
            ring: mem,
            bufs: vec![0u8; usize::from(entries) * buf_bytes].into_boxed_slice(),
            tail: 0,
        };
        // SAFETY: the ring memory lives (unmoved) as long as `this`, which
        // unregisters it before freeing it.
        unsafe {
            ring.submitter()
                .register_buf_ring_with_flags(mem as u64, entries, group, 0)?;
        }
        for bid in 0..entries {
            this.push(bid);
        }
        this.publish();
        Ok(this)
    }

    /// The buffer group receives name.
    pub fn group(&self) -> u16 {
        self.group
    }

    /// The bytes the kernel put into buffer `bid`.
    pub fn data(&mut self, bid: u16, len: usize) -> &mut [u8] {
        assert!(len <= self.buf_bytes, "a completion within its buffer");
        let start = usize::from(bid) * self.buf_bytes;
        &mut self.bufs[start..start + len]
    }

    /// Gives buffer `bid` back to the kernel.
    pub fn recycle(&mut self, bid: u16) {
        assert!(bid < self.entries, "a buffer of this ring");
        self.push(bid);
        self.publish();
    }

    fn push(&mut self, bid: u16) {
        let slot = usize::from(self.tail & (self.entries - 1));
        let addr = self.bufs[usize::from(bid) * self.buf_bytes..].as_mut_ptr();
        // SAFETY: `slot` is within the ring's `entries` entries; the kernel
        // reads an entry only once the tail says it is there.
        let entry = unsafe { &mut *self.ring.add(slot) };
        entry.set_addr(addr as u64);
        entry.set_len(self.buf_bytes as u32);
        entry.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    fn publish(&self) {
        // SAFETY: the tail field lives inside the first entry, and is shared
        // with the kernel as an atomic u16 (liburing stores it with release).
        unsafe {
            let tail = BufRingEntry::tail(self.ring).cast_mut().cast::<AtomicU16>();
            (*tail).store(self.tail, Ordering::Release);
        }
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        // A shard drops its ring only as the process ends; the kernel may
        // still be tearing the io_uring down and writing into these
        // buffers, so they are left to the process's exit rather than freed.
        let bufs = std::mem::take(&mut self.bufs);
        std::mem::forget(bufs);
    }
}
