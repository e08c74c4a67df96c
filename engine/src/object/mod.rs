//! The object model: what user code implements.
//!
//! A class is registered once per server under a name (`counter`,
//! `ratelimit`, or one of your own). For every object of the class the
//! shard that owns its ID calls [`ObjectClass::create`] on first use; the
//! object then receives one event at a time, each handler running to
//! completion before the next starts. Handlers are plain synchronous Rust.
//!
//! ```
//! use durin::object::{Context, DurableObject, ObjectClass, Request, Response};
//! use durin::ObjectId;
//!
//! /// Counts visits, and remembers the count across restarts.
//! struct Visits { count: u64 }
//!
//! impl DurableObject for Visits {
//!     fn fetch(&mut self, _req: &Request<'_>, res: &mut Response, ctx: &mut Context<'_>) {
//!         self.count += 1;
//!         ctx.storage().put(b"count", &self.count.to_le_bytes()).expect("8 bytes fit the limits");
//!         res.json(200).body_mut().extend_from_slice(self.count.to_string().as_bytes());
//!     }
//! }
//!
//! struct VisitsClass;
//! impl ObjectClass for VisitsClass {
//!     fn create(&self, _id: &ObjectId, ctx: &mut Context<'_>) -> Box<dyn DurableObject> {
//!         let count = ctx.storage().get(b"count").ok().flatten()
//!             .and_then(|v| v.as_slice().try_into().ok())
//!             .map(u64::from_le_bytes)
//!             .unwrap_or(0);
//!         Box::new(Visits { count })
//!     }
//! }
//! ```

use durin_storage::{Seq, ShardStore};

pub(crate) mod storage;
pub(crate) mod websocket;

pub use storage::{
    ListOptions, Storage, StorageError, StorageLimits, TransactionError, WriteOptions,
    ALARM_AT_MS_MAX,
};

pub use websocket::{
    Message, WebSocket, WebSocketError, ATTACHMENT_BYTES_MAX, AUTO_RESPONSE_BYTES_MAX, TAGS_MAX,
    TAG_BYTES_MAX,
};

use crate::ObjectId;

/// An object: one live instance per ID, one event at a time.
pub trait DurableObject: 'static {
    /// Handles an HTTP request addressed to this object. `res` arrives
    /// empty with status 200; fill it in.
    fn fetch(&mut self, req: &Request<'_>, res: &mut Response, ctx: &mut Context<'_>);

    /// Runs when the object's alarm fires. An error (or a panic) makes the
    /// shard retry it with exponential backoff, unless the class turned
    /// retries off.
    fn alarm(&mut self, _ctx: &mut Context<'_>) -> Result<(), AlarmError> {
        Ok(())
    }

    /// Receives the reply to a call this object made with
    /// [`Context::call`], as an event of its own: the object handled other
    /// events while the call was away.
    fn call_reply(
        &mut self,
        _call: CallId,
        _reply: Result<&[u8], CallError>,
        _ctx: &mut Context<'_>,
    ) {
    }

    /// Receives a whole message from one of its WebSockets. An object that
    /// hibernated is rebuilt for it, with all its sockets still open.
    fn websocket_message(&mut self, _ws: WebSocket, _msg: Message<'_>, _ctx: &mut Context<'_>) {}

    /// A socket it did not close itself has closed: `code` is the peer's
    /// close code (1005 if it gave none, 1006 if the connection ended
    /// without a close frame). The close handshake is already answered.
    fn websocket_close(
        &mut self,
        _ws: WebSocket,
        _code: u16,
        _reason: &str,
        _ctx: &mut Context<'_>,
    ) {
    }

    /// A socket failed (a protocol violation, a message over the limit, or
    /// a peer too slow to read what it is sent) and was closed with the
    /// matching close code; no `websocket_close` follows.
    fn websocket_error(&mut self, _ws: WebSocket, _error: &str, _ctx: &mut Context<'_>) {}

    /// Handles a binary RPC call of `method` with `payload`, writing the
    /// result's bytes into `out`. Output waits behind the output gate like
    /// a response.
    fn rpc(
        &mut self,
        _method: &str,
        _payload: &[u8],
        _out: &mut Vec<u8>,
        _ctx: &mut Context<'_>,
    ) -> Result<(), RpcError> {
        Err(RpcError::UnknownMethod)
    }
}

/// Names a call an object made, to match its reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CallId(pub u64);

/// Why a call to another object failed: the RPC status and its message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallError {
    pub status: u16,
    pub message: String,
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({})",
            self.message,
            durin_proto::rpc::status::name(self.status)
        )
    }
}

/// A response the object promised to give later (see
/// [`Context::defer`]): keep it, and pass it to [`Context::respond`] or
/// [`Context::respond_rpc`] when the answer is known.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Deferred(pub(crate) u64);

/// A call to another object, made during an event.
pub(crate) struct OutgoingCall {
    pub call: CallId,
    pub class: String,
    pub object: durin_proto::rpc::ObjectRef,
    pub method: String,
    pub payload: Vec<u8>,
}

/// The answer to a deferred response.
pub(crate) enum DeferredReply {
    Http(Response),
    Rpc(Result<Vec<u8>, (u16, String)>),
}

/// What an event asked the shard to do besides storage: calls to make,
/// responses it deferred or gave late. The shard reuses one.
#[derive(Default)]
pub(crate) struct Effects {
    next_call: u64,
    next_deferred: u64,
    pub calls: Vec<OutgoingCall>,
    /// This event's own response comes later, under this id.
    pub deferred: Option<u64>,
    pub responses: Vec<(u64, DeferredReply)>,
    /// Messages and closes for WebSockets.
    pub ws: websocket::WsEffects,
}

impl Effects {
    /// Forgets what a failed event asked for (ids stay unique).
    pub(crate) fn clear(&mut self) {
        self.calls.clear();
        self.deferred = None;
        self.responses.clear();
        self.ws.clear();
    }
}

/// Why an RPC call failed; each maps to a status on the wire.
#[derive(Debug)]
#[non_exhaustive]
pub enum RpcError {
    /// The object has no such method.
    UnknownMethod,
    /// The payload is not what the method takes.
    BadArgument(String),
    /// A storage limit or failure.
    Storage(StorageError),
    /// An SQL statement failed or was refused.
    Sql(crate::sql::SqlError),
}

impl std::fmt::Display for RpcError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RpcError::UnknownMethod => f.write_str("unknown method"),
            RpcError::BadArgument(why) => write!(f, "bad argument: {why}"),
            RpcError::Storage(e) => write!(f, "{e}"),
            RpcError::Sql(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for RpcError {}

/// The wire status of an RPC error.
pub(crate) fn rpc_status(e: &RpcError) -> u16 {
    use durin_proto::rpc::status;
    match e {
        RpcError::UnknownMethod => status::UNKNOWN_METHOD,
        RpcError::BadArgument(_) => status::BAD_ARGUMENT,
        RpcError::Storage(_) => status::STORAGE_LIMIT,
        RpcError::Sql(crate::sql::SqlError::Limit { .. }) => status::STORAGE_LIMIT,
        RpcError::Sql(crate::sql::SqlError::Interrupted { .. }) => status::TIMEOUT,
        RpcError::Sql(crate::sql::SqlError::Storage(_) | crate::sql::SqlError::Unavailable) => {
            status::INTERNAL
        }
        RpcError::Sql(_) => status::BAD_ARGUMENT,
    }
}

impl From<StorageError> for RpcError {
    fn from(e: StorageError) -> Self {
        RpcError::Storage(e)
    }
}

/// Why an alarm handler failed; the alarm is retried.
#[derive(Debug)]
pub struct AlarmError(pub String);

impl std::fmt::Display for AlarmError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for AlarmError {}

/// A class of objects: constructs an instance from its ID and storage.
pub trait ObjectClass: Send + Sync + 'static {
    fn create(&self, id: &ObjectId, ctx: &mut Context<'_>) -> Box<dyn DurableObject>;

    /// How the router reads an object's name out of `/{class}/...`.
    fn name_path(&self) -> NamePath {
        NamePath::Segment
    }
}

/// How the router finds an object's name in a request's path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NamePath {
    /// `/{class}/{name}/rest`: the name is one segment, and what follows
    /// it is the request's [`path`](Request::path).
    Segment,
    /// `/{class}/{name...}`: the name is the whole rest of the path,
    /// slashes included. A request that is not a WebSocket upgrade and
    /// whose raw path ends in one of `suffixes` (each starting with `/`)
    /// has that suffix as its path and the part before it as the name; a
    /// name that itself ends so is reached by percent-encoding its last
    /// slash (`%2F`). An upgrade's name is always the whole rest.
    Rest { suffixes: &'static [&'static str] },
}

/// An HTTP request as an object sees it.
pub struct Request<'a> {
    pub method: &'a str,
    /// The path after the object's name: `/increment` for
    /// `/counter/a/increment`, empty for `/counter/a`.
    pub path: &'a str,
    /// The query string, without the `?`.
    pub query: Option<&'a str>,
    pub(crate) headers: &'a [durin_net::http::Header<'a>],
    pub body: &'a [u8],
}

impl<'a> Request<'a> {
    /// The value of the first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&'a [u8]> {
        self.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    }

    /// Whether the request asks for a WebSocket (`Upgrade: websocket`); the
    /// shard has checked the rest of the handshake, so
    /// [`Context::accept_websocket`] succeeds for it.
    pub fn is_websocket_upgrade(&self) -> bool {
        durin_net::ws::handshake::is_upgrade(self.headers)
    }

    /// The first query parameter named `name`, percent-decoded (`+` is a
    /// space), as UTF-8 with invalid bytes replaced; `None` if absent or
    /// badly encoded.
    pub fn query_param(&self, name: &str) -> Option<String> {
        query_param(self.query, name).map(|v| String::from_utf8_lossy(&v).into_owned())
    }

    /// Iterates over all headers as (name, value).
    pub fn headers(&self) -> impl Iterator<Item = (&'a str, &'a [u8])> + '_ {
        self.headers.iter().map(|h| (h.name, h.value))
    }
}

/// The first query parameter named `name`, percent-decoded (`+` is a
/// space); `None` if absent or badly encoded.
pub(crate) fn query_param(query: Option<&str>, name: &str) -> Option<Vec<u8>> {
    for pair in query?.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if key == name {
            return percent_decode_component(value, true);
        }
    }
    None
}

/// Percent-decodes a path segment or query value (`+` is a space in a
/// query). `None` if the encoding is invalid.
pub(crate) fn percent_decode_component(text: &str, plus_is_space: bool) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len());
    let owned;
    let text = if plus_is_space {
        owned = text.replace('+', " ");
        &owned
    } else {
        text
    };
    durin_net::http::percent_decode(text, &mut out).ok()?;
    Some(out)
}

/// The response an object builds. The shard reuses one for every request,
/// so building a response allocates nothing once its buffers have grown.
#[derive(Debug, Default, Clone)]
pub struct Response {
    pub(crate) status: u16,
    pub(crate) content_type: Option<&'static str>,
    pub(crate) header_lines: Vec<u8>,
    pub(crate) body: Vec<u8>,
}

impl Response {
    pub(crate) fn reset(&mut self) {
        self.status = 200;
        self.content_type = None;
        self.header_lines.clear();
        self.body.clear();
    }

    /// Sets the status code (100–999; anything else becomes 500).
    pub fn status(&mut self, status: u16) -> &mut Self {
        self.status = if (100..1000).contains(&status) {
            status
        } else {
            500
        };
        self
    }

    /// Sets the status and `Content-Type: application/json`.
    pub fn json(&mut self, status: u16) -> &mut Self {
        self.content_type = Some("application/json");
        self.status(status)
    }

    /// Sets the status and `Content-Type: text/plain`, with `text` as body.
    pub fn text(&mut self, status: u16, text: &str) -> &mut Self {
        self.content_type = Some("text/plain; charset=utf-8");
        self.body.clear();
        self.body.extend_from_slice(text.as_bytes());
        self.status(status)
    }

    /// Answers `405 Method Not Allowed`, with `Allow: {allow}` (the
    /// methods the path takes, e.g. `"GET, PUT"`).
    pub fn method_not_allowed(&mut self, allow: &str) -> &mut Self {
        self.text(405, "Method not allowed");
        self.header("Allow", allow);
        self
    }

    /// Sets the Content-Type.
    pub fn content_type(&mut self, content_type: &'static str) -> &mut Self {
        self.content_type = Some(content_type);
        self
    }

    /// Adds a header. A name or value with a byte that could split the
    /// header (CR, LF, NUL), or a name that is not a token, is dropped and
    /// the call returns false.
    pub fn header(&mut self, name: &str, value: &str) -> bool {
        let name_ok = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        let value_ok = !value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0);
        let reserved = [
            "content-length",
            "connection",
            "transfer-encoding",
            "content-type",
        ]
        .iter()
        .any(|r| name.eq_ignore_ascii_case(r));
        if !name_ok || !value_ok || reserved {
            return false;
        }
        self.header_lines.extend_from_slice(name.as_bytes());
        self.header_lines.extend_from_slice(b": ");
        self.header_lines.extend_from_slice(value.as_bytes());
        self.header_lines.extend_from_slice(b"\r\n");
        true
    }

    /// The body, to write into.
    pub fn body_mut(&mut self) -> &mut Vec<u8> {
        &mut self.body
    }

    /// Replaces the body.
    pub fn body(&mut self, body: &[u8]) -> &mut Self {
        self.body.clear();
        self.body.extend_from_slice(body);
        self
    }
}

/// What a handler may use besides its own state: its ID, the clock, and
/// its storage.
pub struct Context<'s> {
    pub(crate) id: ObjectId,
    pub(crate) class_name: &'s str,
    pub(crate) now_ms: u64,
    pub(crate) store: &'s mut ShardStore,
    pub(crate) limits: &'s StorageLimits,
    /// The object's stored bytes, once known (cached across events by the
    /// shard).
    pub(crate) stored_bytes: Option<u64>,
    /// Whether this event changed `stored_bytes`.
    pub(crate) size_changed: bool,
    /// The last write of this event the output gate waits for.
    pub(crate) wrote: Option<Seq>,
    /// The last write of this event marked `allow_unconfirmed`.
    pub(crate) wrote_unconfirmed: Option<Seq>,
    /// `sync()` was called: the gate waits for unconfirmed writes too.
    pub(crate) synced: bool,
    /// The alarm this event set (the shard schedules it).
    pub(crate) alarm_set: Option<u64>,
    /// The latest time this event asked the object to stay in memory until.
    pub(crate) stay_until_ms: u64,
    pub(crate) key_buf: Vec<u8>,
    /// The stored size of the key this object read or wrote last (cached
    /// across events by the shard), so that writing the same key again,
    /// as most objects do, needs no read of the store to account its size.
    pub(crate) last_len: Option<storage::LastLen>,
    pub(crate) effects: &'s mut Effects,
    /// Sockets, for events run by a shard (absent in unit tests).
    pub(crate) ws: Option<websocket::WsEnv<'s>>,
    /// The object's SQL connection, kept by the shard between events
    /// (`None`: no SQL here, as in some unit tests).
    pub(crate) sql_db: Option<&'s mut Option<crate::sql::SqlDb>>,
    pub(crate) sql_limits: &'s crate::sql::SqlLimits,
    /// `transaction_sync` levels active now.
    pub(crate) tx_depth: u32,
}

impl<'s> Context<'s> {
    pub(crate) fn new(
        id: ObjectId,
        class_name: &'s str,
        now_ms: u64,
        store: &'s mut ShardStore,
        limits: &'s StorageLimits,
        stored_bytes: Option<u64>,
        effects: &'s mut Effects,
    ) -> Self {
        Context {
            id,
            class_name,
            now_ms,
            store,
            limits,
            stored_bytes,
            size_changed: false,
            wrote: None,
            wrote_unconfirmed: None,
            synced: false,
            alarm_set: None,
            stay_until_ms: 0,
            key_buf: Vec::new(),
            last_len: None,
            effects,
            ws: None,
            sql_db: None,
            sql_limits: &crate::sql::SqlLimits::DEFAULT,
            tx_depth: 0,
        }
    }

    /// Gives the event the object's SQL connection slot.
    pub(crate) fn with_sql(
        mut self,
        db: &'s mut Option<crate::sql::SqlDb>,
        limits: &'s crate::sql::SqlLimits,
    ) -> Self {
        self.sql_db = Some(db);
        self.sql_limits = limits;
        self
    }

    /// Starts the event with what an earlier event of the object learned
    /// about its last key.
    pub(crate) fn with_last_len(mut self, last_len: Option<storage::LastLen>) -> Self {
        self.last_len = last_len;
        self
    }

    pub(crate) fn with_websockets(mut self, env: websocket::WsEnv<'s>) -> Self {
        self.ws = Some(env);
        self
    }

    /// Keeps the object in memory until `at_ms` (wall time, ms): it is not
    /// evicted or hibernated for being idle before then, as if it had an
    /// event at that time. For state that lives only in memory and must
    /// outlive a quiet spell, such as a queue's leases. A restart still
    /// forgets such state; the latest time asked for counts.
    pub fn stay_in_memory_until(&mut self, at_ms: u64) {
        self.stay_until_ms = self.stay_until_ms.max(at_ms);
    }

    /// Calls `method` of another object (on any shard) with `payload`,
    /// without waiting: the reply comes as a later
    /// [`DurableObject::call_reply`] event with the returned id. The call
    /// leaves only once this object's writes so far are durable.
    pub fn call(
        &mut self,
        class: &str,
        object: durin_proto::rpc::ObjectRef,
        method: &str,
        payload: &[u8],
    ) -> CallId {
        self.effects.next_call += 1;
        let call = CallId(self.effects.next_call);
        self.effects.calls.push(OutgoingCall {
            call,
            class: class.to_string(),
            object,
            method: method.to_string(),
            payload: payload.to_vec(),
        });
        call
    }

    /// Promises this request's response for later (from `fetch` or `rpc`):
    /// nothing is sent now, and the connection waits for
    /// [`respond`](Self::respond) (HTTP) or [`respond_rpc`](Self::respond_rpc).
    pub fn defer(&mut self) -> Deferred {
        self.effects.next_deferred += 1;
        let id = self.effects.next_deferred;
        self.effects.deferred = Some(id);
        Deferred(id)
    }

    /// Gives a deferred HTTP response.
    pub fn respond(&mut self, deferred: Deferred, response: Response) {
        self.effects
            .responses
            .push((deferred.0, DeferredReply::Http(response)));
    }

    /// Gives a deferred RPC response.
    pub fn respond_rpc(&mut self, deferred: Deferred, result: Result<&[u8], RpcError>) {
        let reply = result
            .map(<[u8]>::to_vec)
            .map_err(|e| (rpc_status(&e), e.to_string()));
        self.effects
            .responses
            .push((deferred.0, DeferredReply::Rpc(reply)));
    }

    /// The object's ID.
    pub fn id(&self) -> &ObjectId {
        &self.id
    }

    /// Milliseconds since the Unix epoch, read once per loop turn.
    pub fn now_ms(&self) -> u64 {
        self.now_ms
    }

    /// The object's storage.
    pub fn storage(&mut self) -> Storage<'_, 's> {
        Storage { ctx: self }
    }
}
