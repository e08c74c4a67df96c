//! A tiny durin RPC server in threads, for testing the client without the
//! real one: it does the handshake and answers frames as each test says.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;

use durin_proto::rpc::{
    self, Decoded, RequestHeader, ResponseHeader, ServerHello, PROTOCOL_VERSION,
};

/// A hello that accepts, for a server of `shards` shards.
pub fn accepting(shards: u32, partitions: u32) -> ServerHello {
    ServerHello {
        accepted: true,
        version: PROTOCOL_VERSION,
        shards,
        partitions,
        shard_index: None,
        shard_base_port: None,
        reason: String::new(),
    }
}

/// Reads the client's hello and answers with `hello`.
pub fn handshake(stream: &mut TcpStream, hello: &ServerHello) -> u16 {
    let mut client_hello = [0u8; rpc::CLIENT_HELLO_BYTES];
    stream
        .read_exact(&mut client_hello)
        .expect("the client sends its hello");
    let version = rpc::decode_client_hello(&client_hello)
        .expect("the client's hello is valid")
        .expect("16 bytes are a whole hello");
    let mut out = Vec::new();
    rpc::encode_server_hello(hello, &mut out);
    stream.write_all(&out).expect("the client reads the hello");
    version
}

/// Reads request frames from one connection.
pub struct Requests {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

pub type Request = (RequestHeader, Vec<u8>);

impl Requests {
    pub fn new(stream: TcpStream) -> Requests {
        Requests {
            stream,
            buf: Vec::new(),
        }
    }

    /// The next request, waiting for it; `None` once the client closes.
    pub fn next(&mut self) -> Option<Request> {
        loop {
            if let Some(request) = self.decode_buffered() {
                return Some(request);
            }
            let mut chunk = [0u8; 16 * 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// The next request and every further one that has already arrived.
    pub fn next_batch(&mut self) -> Vec<Request> {
        let Some(first) = self.next() else {
            return Vec::new();
        };
        let mut batch = vec![first];
        self.stream
            .set_nonblocking(true)
            .expect("a socket can be made nonblocking");
        let mut chunk = [0u8; 16 * 1024];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(n) if n > 0 => self.buf.extend_from_slice(&chunk[..n]),
                Err(error) if error.kind() == ErrorKind::Interrupted => {}
                _ => break,
            }
        }
        self.stream
            .set_nonblocking(false)
            .expect("a socket can be made blocking");
        while let Some(request) = self.decode_buffered() {
            batch.push(request);
        }
        batch
    }

    fn decode_buffered(&mut self) -> Option<Request> {
        match rpc::decode_request(&self.buf, rpc::FRAME_BYTES_MAX_DEFAULT)
            .expect("the client sends valid frames")
        {
            Decoded::Incomplete => None,
            Decoded::Frame {
                header,
                payload,
                len,
            } => {
                let payload = self.buf[payload].to_vec();
                self.buf.drain(..len);
                Some((header, payload))
            }
        }
    }

    /// Sends one response.
    pub fn respond(&mut self, request_id: u64, status: u16, message: &str, payload: &[u8]) {
        let mut out = Vec::new();
        let header = ResponseHeader {
            request_id,
            status,
            message: message.into(),
        };
        rpc::encode_response(&mut out, &header, payload);
        // The client may have given up (a timeout test): ignore errors.
        let _ = self.stream.write_all(&out);
    }
}

/// What a handler answers: a status, a message and a payload.
pub type Answer = (u16, &'static str, Vec<u8>);

/// Serves every connection on `listener` with `hello`, answering each
/// request in order with `handler`. Returns how many connections it
/// accepted so far, as a shared counter.
pub fn serve<H>(listener: TcpListener, hello: ServerHello, handler: H) -> Arc<AtomicUsize>
where
    H: Fn(&RequestHeader, &[u8]) -> Answer + Send + Sync + 'static,
{
    let handler = Arc::new(handler);
    serve_connections(listener, move |_, stream| {
        let mut requests = Requests::new(stream);
        handshake(&mut requests.stream, &hello);
        while let Some((header, payload)) = requests.next() {
            let (status, message, answer) = handler(&header, &payload);
            requests.respond(header.request_id, status, message, &answer);
        }
    })
}

/// Runs `connection(n, stream)` in a thread for the n-th (from 0)
/// connection accepted on `listener`.
pub fn serve_connections<F>(listener: TcpListener, connection: F) -> Arc<AtomicUsize>
where
    F: Fn(usize, TcpStream) + Send + Sync + 'static,
{
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&accepted);
    let connection = Arc::new(connection);
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let n = counter.fetch_add(1, Ordering::SeqCst);
            let connection = Arc::clone(&connection);
            thread::spawn(move || connection(n, stream));
        }
    });
    accepted
}

/// A listener on a free port of 127.0.0.1.
pub fn listener() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free port on localhost");
    let addr = listener
        .local_addr()
        .expect("a bound listener has an address");
    (listener, addr)
}

/// `n` listeners on consecutive ports, and the first port.
pub fn consecutive_listeners(n: u16) -> (Vec<TcpListener>, u16) {
    for _ in 0..100 {
        let (first, addr) = listener();
        let base = addr.port();
        if base.checked_add(n).is_none() {
            continue;
        }
        let rest: Result<Vec<_>, _> = (1..n)
            .map(|i| TcpListener::bind(("127.0.0.1", base + i)))
            .collect();
        if let Ok(rest) = rest {
            let mut all = vec![first];
            all.extend(rest);
            return (all, base);
        }
    }
    panic!("no {n} consecutive free ports on localhost after 100 tries");
}
