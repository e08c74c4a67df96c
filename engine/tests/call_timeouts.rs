//! A call whose callee never answers fails with a timeout after the
//! server's `call_timeout_ms`, so its caller can answer its own client and
//! is not kept in memory forever; a reply that comes later is dropped.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use durin::config::Config;
use durin::object::{
    CallError, CallId, Context, Deferred, DurableObject, ObjectClass, Request, Response, RpcError,
};
use durin::server::ServerBuilder;
use durin::ObjectId;
use durin_client::ObjectRef;

mod common;
use common::{http_get, start_embedded};

/// Takes every call and never answers it.
struct Sink;

impl DurableObject for Sink {
    fn fetch(&mut self, _req: &Request<'_>, res: &mut Response, _ctx: &mut Context<'_>) {
        res.text(404, "Not found");
    }

    fn rpc(
        &mut self,
        _method: &str,
        _payload: &[u8],
        _out: &mut Vec<u8>,
        ctx: &mut Context<'_>,
    ) -> Result<(), RpcError> {
        // Promised, never given.
        let _never_given = ctx.defer();
        Ok(())
    }
}

/// `GET /caller/{name}` calls the sink and answers with how the call ended.
#[derive(Default)]
struct Caller {
    pending: HashMap<CallId, Deferred>,
}

impl DurableObject for Caller {
    fn fetch(&mut self, _req: &Request<'_>, _res: &mut Response, ctx: &mut Context<'_>) {
        let call = ctx.call("sink", ObjectRef::Name(b"hole".to_vec()), "wait", b"");
        let deferred = ctx.defer();
        self.pending.insert(call, deferred);
    }

    fn call_reply(&mut self, call: CallId, reply: Result<&[u8], CallError>, ctx: &mut Context<'_>) {
        let deferred = self.pending.remove(&call).expect("one reply per call");
        let mut response = Response::default();
        match reply {
            Ok(_) => response.text(200, "answered"),
            Err(e) => response.text(504, &format!("{e}")),
        };
        ctx.respond(deferred, response);
    }
}

struct SinkClass;
impl ObjectClass for SinkClass {
    fn create(&self, _id: &ObjectId, _ctx: &mut Context<'_>) -> Box<dyn DurableObject> {
        Box::new(Sink)
    }
}

struct CallerClass;
impl ObjectClass for CallerClass {
    fn create(&self, _id: &ObjectId, _ctx: &mut Context<'_>) -> Box<dyn DurableObject> {
        Box::new(Caller::default())
    }
}

#[test]
fn an_unanswered_call_times_out() {
    let config = Config::parse("[server]\ncall_timeout_ms = 300\n").expect("valid");
    let builder = ServerBuilder::new()
        .class("sink", SinkClass)
        .class("caller", CallerClass);
    let server = start_embedded(builder, 2, false, config);
    for name in ["a", "b", "c"] {
        let started = Instant::now();
        let (status, body) = http_get(server.addr(), &format!("/caller/{name}"));
        let waited = started.elapsed();
        assert_eq!(status, 504, "{body}");
        assert!(body.contains("no reply within 300 ms"), "{body}");
        assert!(body.contains("timeout"), "{body}");
        // Overdue calls are looked for every 300 ms here (the timeout).
        assert!(waited >= Duration::from_millis(300), "{waited:?}");
        assert!(waited < Duration::from_secs(5), "{waited:?}");
    }
}
