//! A connection's outgoing bytes, double-buffered: new bytes are written
//! into `pending` while `sending` is with the kernel (which holds a raw
//! pointer to it); once a send has gone out in full, the two swap. Both keep
//! their capacity, so a steady stream allocates nothing.

/// The send side of one connection (HTTP, RPC or WebSocket).
#[derive(Debug, Default)]
pub struct SendBuffers {
    /// Bytes with the kernel; `sending[sent..]` is still to go.
    sending: Vec<u8>,
    sent: usize,
    /// Bytes written while a send is in flight.
    pending: Vec<u8>,
}

impl SendBuffers {
    /// Buffers that start with room for `bytes` each.
    pub fn with_capacity(bytes: usize) -> SendBuffers {
        SendBuffers {
            sending: Vec::with_capacity(bytes),
            sent: 0,
            pending: Vec::with_capacity(bytes),
        }
    }

    /// Where new bytes are written; they go out with a later send.
    pub fn pending(&mut self) -> &mut Vec<u8> {
        &mut self.pending
    }

    /// The bytes for the next send, if there are any: the rest of the last
    /// send, else everything pending. The caller submits no other send
    /// while one is in flight.
    pub fn next_bytes(&mut self) -> Option<&[u8]> {
        if self.sent == self.sending.len() {
            if self.pending.is_empty() {
                return None;
            }
            self.sending.clear();
            self.sent = 0;
            std::mem::swap(&mut self.sending, &mut self.pending);
        }
        Some(&self.sending[self.sent..])
    }

    /// Accounts for `n` bytes of the in-flight send having gone out.
    pub fn on_sent(&mut self, n: usize) {
        assert!(self.sent + n <= self.sending.len());
        self.sent += n;
    }

    /// Whether everything written has gone out.
    pub fn all_sent(&self) -> bool {
        self.sent == self.sending.len() && self.pending.is_empty()
    }

    /// Frees the buffer of a send that has gone out in full, for a
    /// connection that sends too rarely to keep one.
    pub fn free_sent(&mut self) {
        if self.sent == self.sending.len() {
            self.sending = Vec::new();
            self.sent = 0;
        }
    }

    /// Forgets every byte, keeping the capacity.
    pub fn clear(&mut self) {
        self.sending.clear();
        self.sent = 0;
        self.pending.clear();
    }

    /// Bytes allocated for the buffer with the kernel.
    #[cfg(test)]
    pub(crate) fn sending_capacity(&self) -> usize {
        self.sending.capacity()
    }

    /// Bytes allocated for both buffers.
    pub fn capacity(&self) -> usize {
        self.sending.capacity() + self.pending.capacity()
    }
}
