//! A connection's receive buffer for length-prefixed frames.
//!
//! Received bytes live in `buf[parsed..filled]`. A frame is decoded in
//! place once all of it has arrived; while the frame at the front is
//! incomplete and the buffer is full, the buffer first moves the frame to
//! its start and then grows, up to the limit the caller names for what may
//! be incomplete (a hello, a frame), so a peer cannot make it grow without
//! bound.

use crate::stats::Failure;

/// The buffer a connection starts with; durin's answers are a few dozen
/// bytes, so this holds hundreds of them.
const RECV_BUF_BYTES: usize = 16 * 1024;

#[derive(Debug)]
pub struct RecvBuf {
    buf: Vec<u8>,
    parsed: usize,
    filled: usize,
}

impl Default for RecvBuf {
    fn default() -> Self {
        Self::new()
    }
}

impl RecvBuf {
    pub fn new() -> RecvBuf {
        RecvBuf {
            buf: vec![0; RECV_BUF_BYTES],
            parsed: 0,
            filled: 0,
        }
    }

    /// Where the next receive writes; never empty, since [`Self::make_room`]
    /// runs whenever decoding stops for want of bytes.
    pub fn window(&mut self) -> &mut [u8] {
        &mut self.buf[self.filled..]
    }

    pub fn on_received(&mut self, n: usize) {
        assert!(n > 0, "a zero-byte receive is end of stream");
        assert!(self.filled + n <= self.buf.len());
        self.filled += n;
    }

    /// The bytes received and not yet decoded.
    pub fn unparsed(&self) -> &[u8] {
        &self.buf[self.parsed..self.filled]
    }

    /// Drops the first `n` undecoded bytes: a frame was taken.
    pub fn consume(&mut self, n: usize) {
        assert!(
            self.parsed + n <= self.filled,
            "only decoded bytes are consumed"
        );
        self.parsed += n;
        if self.parsed == self.filled {
            self.parsed = 0;
            self.filled = 0;
        }
    }

    /// Ensures there is room to receive after an incomplete front of at
    /// most `incomplete_max` bytes; a front that already fills that much
    /// will never complete, and fails the connection.
    pub fn make_room(&mut self, incomplete_max: usize) -> Result<(), Failure> {
        if self.filled < self.buf.len() {
            return Ok(());
        }
        if self.parsed > 0 {
            self.buf.copy_within(self.parsed..self.filled, 0);
            self.filled -= self.parsed;
            self.parsed = 0;
            return Ok(());
        }
        if self.buf.len() >= incomplete_max {
            return Err(Failure::Protocol);
        }
        let grown = (self.buf.len() * 2).min(incomplete_max);
        self.buf.resize(grown, 0);
        Ok(())
    }

    /// Drops whatever is buffered, for a fresh connection in the same slot,
    /// and gives back what a large frame made it grow by.
    pub fn reset(&mut self) {
        self.parsed = 0;
        self.filled = 0;
        if self.buf.len() > RECV_BUF_BYTES {
            self.buf.truncate(RECV_BUF_BYTES);
            self.buf.shrink_to(RECV_BUF_BYTES);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fill(recv: &mut RecvBuf, byte: u8) -> usize {
        let window = recv.window();
        window.fill(byte);
        let n = window.len();
        recv.on_received(n);
        n
    }

    #[test]
    fn compacts_before_it_grows_and_grows_to_its_limit() {
        let mut recv = RecvBuf::new();
        fill(&mut recv, 1);
        recv.consume(10);
        recv.make_room(RECV_BUF_BYTES).unwrap();
        assert_eq!(recv.window().len(), 10, "compacted, not grown");
        fill(&mut recv, 2);
        assert_eq!(recv.make_room(RECV_BUF_BYTES), Err(Failure::Protocol));
        recv.make_room(3 * RECV_BUF_BYTES).unwrap();
        assert_eq!(recv.buf.len(), 2 * RECV_BUF_BYTES);
        fill(&mut recv, 3);
        recv.make_room(3 * RECV_BUF_BYTES).unwrap();
        assert_eq!(recv.buf.len(), 3 * RECV_BUF_BYTES);
        fill(&mut recv, 4);
        assert_eq!(recv.make_room(3 * RECV_BUF_BYTES), Err(Failure::Protocol));
        assert_eq!(recv.unparsed()[0], 1);
        recv.reset();
        assert_eq!(recv.buf.len(), RECV_BUF_BYTES);
        assert!(recv.unparsed().is_empty());
    }
}
