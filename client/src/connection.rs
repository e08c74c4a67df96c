//! One TCP connection to one port of a durin server: the handshake, then
//! request frames out and response frames in, every step under a deadline.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use durin_proto::rpc::{
    self, status, Decoded, ObjectRef, ProtoError, RequestHeader, ResponseHeader, ServerHello,
    PROTOCOL_VERSION,
};

use crate::ClientError;

/// How much a read asks the socket for at once.
const READ_CHUNK_BYTES: usize = 64 * 1024;

/// A response: its header and its payload.
pub(crate) type Response = (ResponseHeader, Vec<u8>);

/// One connection. Not shared: the client keeps each behind a mutex.
pub(crate) struct Connection {
    stream: TcpStream,
    /// Receive storage; `read_buf[read_start..read_end]` is received and not
    /// yet decoded. It grows to at most one frame (`4 + frame_bytes_max`)
    /// plus one read chunk, because the socket is read only while the frame
    /// at the front is incomplete.
    read_buf: Vec<u8>,
    read_start: usize,
    read_end: usize,
    /// Encoded requests not yet written.
    write_buf: Vec<u8>,
    /// Reused so encoding a request reuses its strings' memory.
    header: RequestHeader,
    next_request_id: u64,
    frame_bytes_max: usize,
    /// Set when the stream is out of step with the requests in flight and
    /// the connection must not be used again.
    broken: bool,
}

impl Connection {
    /// Connects to `addr` and does the handshake. A refusal is
    /// [`ClientError::Refused`]; an accepted hello is returned for the
    /// caller to check against what it expects of this port.
    pub(crate) fn open(
        addr: SocketAddr,
        deadline: Instant,
        frame_bytes_max: usize,
    ) -> Result<(Connection, ServerHello), ClientError> {
        let stream = TcpStream::connect_timeout(&addr, remaining(deadline)?)?;
        // Requests are small and latency-bound; batching is done by
        // pipelining, not by Nagle's algorithm.
        stream.set_nodelay(true)?;
        let mut connection = Connection {
            stream,
            read_buf: Vec::new(),
            read_start: 0,
            read_end: 0,
            write_buf: Vec::new(),
            header: RequestHeader {
                request_id: 0,
                class: String::new(),
                object: ObjectRef::Id([0; 16]),
                method: String::new(),
            },
            next_request_id: 1,
            // The length field is 32 bits; a larger limit means no limit.
            frame_bytes_max: frame_bytes_max.min(u32::MAX as usize),
            broken: false,
        };
        connection
            .write_buf
            .extend_from_slice(&rpc::encode_client_hello(PROTOCOL_VERSION));
        connection.flush(deadline)?;
        let hello = loop {
            if let Some((hello, used)) = rpc::decode_server_hello(connection.unread())? {
                connection.consume(used);
                break hello;
            }
            connection.fill(deadline)?;
        };
        if !hello.accepted {
            return Err(ClientError::Refused {
                reason: hello.reason,
            });
        }
        Ok((connection, hello))
    }

    /// Encodes a request into the write buffer (sent by [`flush`]) and
    /// returns its ID. A request over the frame limit is not queued.
    ///
    /// [`flush`]: Connection::flush
    pub(crate) fn push_request(
        &mut self,
        class: &str,
        object: &ObjectRef,
        method: &str,
        payload: &[u8],
    ) -> Result<u64, ClientError> {
        // Checked first so that encoding never meets a payload too long
        // for the 32-bit length field.
        if payload.len() > self.frame_bytes_max {
            let max = self.frame_bytes_max;
            return Err(ClientError::RequestTooLarge {
                bytes: payload.len(),
                max,
            });
        }
        let request_id = self.next_request_id;
        fill_header(&mut self.header, request_id, class, object, method);
        let start = self.write_buf.len();
        rpc::encode_request(&mut self.write_buf, &self.header, payload);
        let frame_bytes = self.write_buf.len() - start - 4;
        if frame_bytes > self.frame_bytes_max {
            self.write_buf.truncate(start);
            let max = self.frame_bytes_max;
            return Err(ClientError::RequestTooLarge {
                bytes: frame_bytes,
                max,
            });
        }
        // ID 0 is reserved for errors of the connection: never send it.
        self.next_request_id = self.next_request_id.wrapping_add(1).max(1);
        Ok(request_id)
    }

    /// The ID the next pushed request gets; IDs go up by one per request.
    pub(crate) fn next_request_id(&self) -> u64 {
        self.next_request_id
    }

    /// Whether the connection must be closed rather than reused.
    pub(crate) fn is_broken(&self) -> bool {
        self.broken
    }

    /// The error for a response to no request in flight, which puts the
    /// stream out of step, so the connection is marked broken. A server
    /// that answers an unreadable request with an error status cannot know
    /// its ID; that error is passed on as the server's.
    pub(crate) fn unexpected_response(&mut self, header: ResponseHeader) -> ClientError {
        self.broken = true;
        if header.status == status::OK {
            ProtoError::Malformed("a response to a request that is not in flight").into()
        } else {
            ClientError::Server {
                status: header.status,
                message: header.message,
            }
        }
    }

    /// The bytes queued by [`push_request`](Connection::push_request)
    /// and not yet written.
    pub(crate) fn queued_bytes(&self) -> usize {
        self.write_buf.len()
    }

    /// Writes everything queued.
    pub(crate) fn flush(&mut self, deadline: Instant) -> Result<(), ClientError> {
        let mut written = 0;
        while written < self.write_buf.len() {
            self.stream.set_write_timeout(Some(remaining(deadline)?))?;
            match self.stream.write(&self.write_buf[written..]) {
                Ok(0) => return Err(ClientError::Closed),
                Ok(n) => written += n,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(error.into()),
            }
        }
        self.write_buf.clear();
        Ok(())
    }

    /// Reads the next response, whichever request it answers.
    pub(crate) fn read_response(&mut self, deadline: Instant) -> Result<Response, ClientError> {
        loop {
            match rpc::decode_response(self.unread(), self.frame_bytes_max)? {
                Decoded::Frame {
                    header,
                    payload,
                    len,
                } => {
                    let payload = self.unread()[payload].to_vec();
                    self.consume(len);
                    return Ok((header, payload));
                }
                Decoded::Incomplete => self.fill(deadline)?,
            }
        }
    }

    fn unread(&self) -> &[u8] {
        &self.read_buf[self.read_start..self.read_end]
    }

    fn consume(&mut self, bytes: usize) {
        self.read_start += bytes;
        assert!(
            self.read_start <= self.read_end,
            "consumed only decoded bytes"
        );
        if self.read_start == self.read_end {
            self.read_start = 0;
            self.read_end = 0;
        }
    }

    /// Reads at least one more byte, or fails.
    fn fill(&mut self, deadline: Instant) -> Result<(), ClientError> {
        // The decoder refuses any frame over the limit from its length, and
        // a hello is at most 27 + 65535 bytes, so what is buffered while
        // incomplete stays below this bound, and so does the buffer's growth.
        let incomplete_bytes_max = self
            .frame_bytes_max
            .saturating_add(4)
            .max(rpc::SERVER_HELLO_FIXED_BYTES + usize::from(u16::MAX));
        assert!(
            self.unread().len() < incomplete_bytes_max,
            "read only while a frame is incomplete"
        );
        if self.read_end == self.read_buf.len() && self.read_start > 0 {
            self.read_buf.copy_within(self.read_start..self.read_end, 0);
            self.read_end -= self.read_start;
            self.read_start = 0;
        }
        if self.read_end == self.read_buf.len() {
            self.read_buf
                .resize(self.read_buf.len() + READ_CHUNK_BYTES, 0);
        }
        self.read_end += self.read_into(self.read_end, deadline)?;
        Ok(())
    }

    /// Reads into `read_buf[from..]`, retrying interrupted reads.
    fn read_into(&mut self, from: usize, deadline: Instant) -> Result<usize, ClientError> {
        loop {
            self.stream.set_read_timeout(Some(remaining(deadline)?))?;
            match self.stream.read(&mut self.read_buf[from..]) {
                Ok(0) => return Err(ClientError::Closed),
                Ok(n) => return Ok(n),
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(error.into()),
            }
        }
    }
}

/// Rewrites `header` in place for a new request, reusing its memory.
fn fill_header(header: &mut RequestHeader, id: u64, class: &str, object: &ObjectRef, method: &str) {
    header.request_id = id;
    header.class.clear();
    header.class.push_str(class);
    header.method.clear();
    header.method.push_str(method);
    match (&mut header.object, object) {
        (ObjectRef::Name(name), ObjectRef::Name(new)) => {
            name.clear();
            name.extend_from_slice(new);
        }
        (slot, new) => *slot = new.clone(),
    }
}

/// The time left before `deadline`; [`ClientError::Timeout`] if none.
/// (A zero socket timeout would mean "wait forever", so it is never set.)
pub(crate) fn remaining(deadline: Instant) -> Result<Duration, ClientError> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        Err(ClientError::Timeout)
    } else {
        Ok(left)
    }
}
