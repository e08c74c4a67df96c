//! A blocking client for durin's binary RPC protocol ([`durin_proto::rpc`]).
//!
//! [`Client::connect`] opens a connection to the server's shared RPC port
//! and learns the server's layout from the handshake: how many shards and
//! partitions it runs, and whether each shard listens on a port of its own.
//! If it does (and [`ClientOptions::shard_aware`] is on), the client
//! computes each object's ID and owning shard exactly as the server does
//! and sends the request straight to that shard's port, saving the server
//! a hop between cores. Connections to shard ports open on first use.
//!
//! ```no_run
//! use durin_client::{Call, Client, ClientOptions, ObjectRef};
//!
//! # fn main() -> Result<(), durin_client::ClientError> {
//! let client = Client::connect("127.0.0.1:7070".parse().unwrap(), ClientOptions::default())?;
//!
//! // A rate limiter per key: take one unit, or learn when to retry.
//! let decision = client.ratelimit_check("api-key:42", 1)?;
//! if !decision.allowed {
//!     println!("slow down: retry in {} ms", decision.retry_after_ms);
//! }
//!
//! // A counter and a key-value object.
//! let visits = client.counter_increment("visits:/home")?;
//! let cart = ObjectRef::Name(b"cart:42".to_vec());
//! client.kv_put(&cart, b"apples", b"3")?;
//! assert_eq!(client.kv_get(&cart, b"apples")?, Some(b"3".to_vec()));
//!
//! // Any class and method, raw payloads; many requests in flight at once.
//! let pages: Vec<ObjectRef> = (0..100).map(|i| ObjectRef::Name(format!("page:{i}").into_bytes())).collect();
//! let calls: Vec<Call> = pages
//!     .iter()
//!     .map(|page| Call { class: "counter", object: page, method: "increment", payload: b"" })
//!     .collect();
//! for result in client.call_many(&calls) {
//!     let value = result?;
//!     assert_eq!(value.len(), 8);
//! }
//! # let _ = visits;
//! # Ok(())
//! # }
//! ```
//!
//! # Threads
//!
//! A `Client` is `Sync`: share it (`Arc<Client>`) between threads. Each
//! port has [`ClientOptions::connections_per_shard`] connections, each
//! behind a mutex that is held for one whole exchange (one call, or one
//! window of a pipelined batch). A thread takes a free connection of the
//! port it needs, and waits for one when all are busy; so up to that many
//! threads use a port at once, and more simply queue.
//!
//! # Failures
//!
//! Every call has a deadline ([`ClientOptions::timeout`]). A timeout, a
//! socket error or a protocol error closes the connection it happened on,
//! since what is still in flight on it is unknown; the next call opens a
//! new one. An error status from the server ([`ClientError::Server`])
//! leaves the connection in use.

mod connection;
mod endpoint;
mod error;
mod helpers;
mod pipeline;
pub mod sharding;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

pub use durin_proto::rpc::builtin::RateLimitDecision;
pub use durin_proto::rpc::{status, ObjectRef, ProtoError, ServerHello, FRAME_BYTES_MAX_DEFAULT};
pub use durin_proto::ObjectId;
pub use error::ClientError;

use connection::Connection;
use endpoint::{Endpoint, Layout};

/// The most shards a server may advertise: a larger number is refused as
/// a protocol error rather than allocating a connection table for it.
pub const SHARDS_MAX: u32 = 4096;

/// The most connections a client keeps per port; larger settings are
/// lowered to it.
pub const CONNECTIONS_PER_SHARD_MAX: usize = 64;

/// How a [`Client`] connects and calls.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Send each request to the port of the shard that owns its object,
    /// when the server has such ports. Default: true.
    pub shard_aware: bool,
    /// Connections per port, opened on demand: how many threads can use a
    /// port at once. Default 1; 0 counts as 1, and more than
    /// [`CONNECTIONS_PER_SHARD_MAX`] counts as that.
    pub connections_per_shard: usize,
    /// The deadline of each call, connecting included; for
    /// [`Client::call_many`], of each window of its batch. Default 5 s.
    pub timeout: Duration,
    /// The largest frame (`frame_len`) sent or accepted. Default
    /// [`FRAME_BYTES_MAX_DEFAULT`], as the server's.
    pub frame_bytes_max: usize,
    /// The most requests [`Client::call_many`] has in flight on one
    /// connection before it reads their responses. Default 256; 0 counts
    /// as 1.
    pub pipeline_depth_max: usize,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            shard_aware: true,
            connections_per_shard: 1,
            timeout: Duration::from_secs(5),
            frame_bytes_max: FRAME_BYTES_MAX_DEFAULT,
            pipeline_depth_max: 256,
        }
    }
}

/// One request of a [`Client::call_many`] batch.
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    pub class: &'a str,
    pub object: &'a ObjectRef,
    pub method: &'a str,
    pub payload: &'a [u8],
}

/// A connection to a durin server over its binary RPC protocol. See the
/// [crate documentation](crate) for an example.
pub struct Client {
    options: ClientOptions,
    hello: ServerHello,
    layout: Layout,
    shared: Endpoint,
    /// One per shard when requests go straight to their shard; else empty.
    shards: Box<[Endpoint]>,
}

impl Client {
    /// Connects to the server's shared RPC port at `addr` and does the
    /// handshake. A server that refuses (say, for the protocol version)
    /// gives [`ClientError::Refused`] with its reason.
    pub fn connect(addr: SocketAddr, options: ClientOptions) -> Result<Client, ClientError> {
        let mut options = options;
        options.connections_per_shard = options
            .connections_per_shard
            .clamp(1, CONNECTIONS_PER_SHARD_MAX);
        options.pipeline_depth_max = options.pipeline_depth_max.max(1);
        let deadline = deadline_after(options.timeout);
        let (connection, hello) = Connection::open(addr, deadline, options.frame_bytes_max)?;
        let layout = Layout::from_hello(&hello)?;
        let shared = Endpoint::new(addr, hello.shard_index, options.connections_per_shard);
        shared.install(connection);
        let shards = match hello.shard_base_port {
            Some(base_port) if options.shard_aware => {
                shard_endpoints(addr, base_port, &layout, &options)?
            }
            _ => Box::default(),
        };
        Ok(Client {
            options,
            hello,
            layout,
            shared,
            shards,
        })
    }

    /// What the server said in its handshake: its version and layout.
    pub fn server(&self) -> &ServerHello {
        &self.hello
    }

    /// Whether requests go straight to the shard that owns their object.
    pub fn is_shard_aware(&self) -> bool {
        !self.shards.is_empty()
    }

    /// The shard that owns `object` of `class`, as the server computes it.
    pub fn shard_of(&self, class: &str, object: &ObjectRef) -> u32 {
        durin_proto::shard_of(
            &object.id(class),
            self.layout.partitions,
            self.layout.shards,
        )
    }

    /// Calls `method` of `object` in `class` with `payload` and waits for
    /// the response payload.
    pub fn call(
        &self,
        class: &str,
        object: &ObjectRef,
        method: &str,
        payload: &[u8],
    ) -> Result<Vec<u8>, ClientError> {
        let deadline = deadline_after(self.options.timeout);
        let endpoint = self.endpoint(self.endpoint_index(class, object));
        endpoint.with_connection(&self.layout, &self.options, deadline, |connection| {
            let request_id = connection.push_request(class, object, method, payload)?;
            connection.flush(deadline)?;
            let (header, payload) = connection.read_response(deadline)?;
            if header.request_id != request_id {
                return Err(connection.unexpected_response(header));
            }
            response_result(header, payload)
        })
    }

    /// The endpoint a request for `object` of `class` goes to: a shard's
    /// index, or `self.shards.len()` for the shared port.
    fn endpoint_index(&self, class: &str, object: &ObjectRef) -> usize {
        if self.shards.is_empty() {
            return 0;
        }
        self.shard_of(class, object) as usize
    }

    fn endpoint(&self, index: usize) -> &Endpoint {
        self.shards.get(index).unwrap_or(&self.shared)
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("server", &self.hello)
            .field("shard_aware", &self.is_shard_aware())
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// The endpoints of shard ports `base_port..base_port + shards`.
fn shard_endpoints(
    addr: SocketAddr,
    base_port: u16,
    layout: &Layout,
    options: &ClientOptions,
) -> Result<Box<[Endpoint]>, ClientError> {
    let last_port = u32::from(base_port) + layout.shards - 1;
    if last_port > u32::from(u16::MAX) {
        return Err(ProtoError::Malformed("the server's shard ports run past port 65535").into());
    }
    Ok((0..layout.shards)
        .map(|shard| {
            let port =
                base_port + u16::try_from(shard).expect("checked: every shard port fits in u16");
            Endpoint::new(
                SocketAddr::new(addr.ip(), port),
                Some(shard),
                options.connections_per_shard,
            )
        })
        .collect())
}

/// A response's payload if its status is OK, else the server's error.
fn response_result(
    header: durin_proto::rpc::ResponseHeader,
    payload: Vec<u8>,
) -> Result<Vec<u8>, ClientError> {
    if header.status == status::OK {
        Ok(payload)
    } else {
        Err(ClientError::Server {
            status: header.status,
            message: header.message,
        })
    }
}

/// `timeout` from now; a timeout too long to represent means "no deadline"
/// in practice, so it is cut to a year.
fn deadline_after(timeout: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(timeout)
        .unwrap_or_else(|| now + Duration::from_secs(365 * 24 * 3600))
}
