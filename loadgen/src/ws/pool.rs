//! The receive buffers a worker's clients share.
//!
//! Every open client keeps a receive armed, but most of them are idle most
//! of the time, so none owns a buffer: each receive asks the kernel to pick
//! one of the worker's pool (io_uring provided buffers) when data arrives.
//! The worker reads the bytes, keeps what it must, and hands the buffer
//! straight back. A receive that finds the pool empty fails with `ENOBUFS`
//! and is armed again on the next loop turn.

/// Buffers in one worker's pool.
pub const POOL_BUFFERS: u16 = 1024;
/// Bytes per buffer, and so the most one receive returns.
pub const BUFFER_BYTES: usize = 4096;
/// The buffer group the pool is registered as.
pub const BUFFER_GROUP: u16 = 0;

/// The default is an empty pool, left behind while the real one is lent
/// out.
#[derive(Default)]
pub struct BufferPool {
    memory: Box<[u8]>,
}

impl BufferPool {
    pub fn new() -> BufferPool {
        BufferPool {
            memory: vec![0u8; usize::from(POOL_BUFFERS) * BUFFER_BYTES].into_boxed_slice(),
        }
    }

    /// The first `len` bytes of buffer `id`.
    pub fn bytes(&self, id: u16, len: usize) -> &[u8] {
        assert!(id < POOL_BUFFERS && len <= BUFFER_BYTES);
        let start = usize::from(id) * BUFFER_BYTES;
        &self.memory[start..start + len]
    }

    /// Where buffer `id` starts, for handing it to the kernel.
    pub fn buffer_ptr(&mut self, id: u16) -> *mut u8 {
        assert!(id < POOL_BUFFERS);
        self.memory[usize::from(id) * BUFFER_BYTES..].as_mut_ptr()
    }
}
