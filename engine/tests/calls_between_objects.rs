//! Calls between objects, through an embedded server (the library path a
//! user takes to register a class of their own): a relay object calls the
//! next object of a chain and answers once the reply comes back as a later
//! event. A → B → A must not deadlock, across shards, over RPC and HTTP.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use durin::config::Config;
use durin::object::{
    CallError, CallId, Context, Deferred, DurableObject, ObjectClass, Request, Response, RpcError,
};
use durin::server::ServerBuilder;
use durin::ObjectId;
use durin_client::{Client, ClientOptions, ObjectRef};

mod common;
use common::{start_embedded, Embedded};

/// Answers `chain` with its own name, followed by the answer of the rest
/// of the chain (`b,a`: call `b` with `a`, then prefix its answer).
struct Relay {
    name: String,
    /// Deferred responses by the call they wait for, and whether each
    /// answers an HTTP request (else an RPC).
    pending: HashMap<CallId, (Deferred, bool)>,
}

enum Next<'a> {
    Done,
    Call(&'a str, &'a str),
}

fn next(path: &str) -> Next<'_> {
    if path.is_empty() {
        return Next::Done;
    }
    match path.split_once(',') {
        Some((first, rest)) => Next::Call(first, rest),
        None => Next::Call(path, ""),
    }
}

impl Relay {
    fn start(&mut self, path: &str, via_http: bool, ctx: &mut Context<'_>) -> Option<String> {
        match next(path) {
            Next::Done => Some(self.name.clone()),
            Next::Call(first, rest) => {
                // A write before the call: the call leaves only once it is
                // durable.
                ctx.storage()
                    .put(b"calls", b"made")
                    .expect("a tiny write fits");
                // `!name` calls a class that does not exist.
                let (class, first) = match first.strip_prefix('!') {
                    Some(name) => ("nope", name),
                    None => ("relay", first),
                };
                let call = ctx.call(
                    class,
                    ObjectRef::Name(first.as_bytes().to_vec()),
                    "chain",
                    rest.as_bytes(),
                );
                let deferred = ctx.defer();
                self.pending.insert(call, (deferred, via_http));
                None
            }
        }
    }
}

impl DurableObject for Relay {
    fn fetch(&mut self, req: &Request<'_>, res: &mut Response, ctx: &mut Context<'_>) {
        let path = req
            .query
            .and_then(|q| q.strip_prefix("path="))
            .unwrap_or("");
        if let Some(answer) = self.start(path, true, ctx) {
            res.text(200, &answer);
        }
    }

    fn rpc(
        &mut self,
        method: &str,
        payload: &[u8],
        out: &mut Vec<u8>,
        ctx: &mut Context<'_>,
    ) -> Result<(), RpcError> {
        if method != "chain" {
            return Err(RpcError::UnknownMethod);
        }
        let path =
            std::str::from_utf8(payload).map_err(|_| RpcError::BadArgument("not UTF-8".into()))?;
        if let Some(answer) = self.start(path, false, ctx) {
            out.extend_from_slice(answer.as_bytes());
        }
        Ok(())
    }

    fn call_reply(&mut self, call: CallId, reply: Result<&[u8], CallError>, ctx: &mut Context<'_>) {
        let Some((deferred, via_http)) = self.pending.remove(&call) else {
            return;
        };
        let answer = match reply {
            Ok(rest) => format!("{}>{}", self.name, String::from_utf8_lossy(rest)),
            Err(e) => format!("{}!{}", self.name, e.message),
        };
        if via_http {
            let mut response = Response::default();
            response.text(200, &answer);
            ctx.respond(deferred, response);
        } else {
            ctx.respond_rpc(deferred, Ok(answer.as_bytes()));
        }
    }
}

struct RelayClass;

impl ObjectClass for RelayClass {
    fn create(&self, id: &ObjectId, _ctx: &mut Context<'_>) -> Box<dyn DurableObject> {
        // Names are recovered from a registry of the test's names.
        let name = NAMES
            .iter()
            .find(|n| ObjectId::from_name("relay", n.as_bytes()) == *id)
            .copied()
            .unwrap_or("?");
        Box::new(Relay {
            name: name.to_string(),
            pending: HashMap::new(),
        })
    }
}

const NAMES: [&str; 6] = ["a", "b", "c", "ha", "hb", "hc"];

fn start() -> Embedded {
    let builder = ServerBuilder::new().class("relay", RelayClass);
    start_embedded(builder, 3, true, Config::default())
}

#[test]
fn a_chain_a_b_a_answers_over_rpc_without_deadlock() {
    let server = start();
    let (rpc, _) = server.rpc_addr().expect("rpc is on");
    let client = Client::connect(rpc, ClientOptions::default()).expect("connect");
    let name = |n: &str| ObjectRef::Name(n.as_bytes().to_vec());
    let answer = client
        .call("relay", &name("a"), "chain", b"b,a")
        .expect("call");
    assert_eq!(String::from_utf8_lossy(&answer), "a>b>a");
    let answer = client
        .call("relay", &name("a"), "chain", b"b,c,a,b")
        .expect("call");
    assert_eq!(String::from_utf8_lossy(&answer), "a>b>c>a>b");
    let answer = client
        .call("relay", &name("c"), "chain", b"")
        .expect("call");
    assert_eq!(String::from_utf8_lossy(&answer), "c");
}

#[test]
fn a_call_to_an_unknown_class_comes_back_as_an_error_reply() {
    let server = start();
    let (rpc, _) = server.rpc_addr().expect("rpc is on");
    let client = Client::connect(rpc, ClientOptions::default()).expect("connect");
    let answer = client
        .call("relay", &ObjectRef::Name(b"a".to_vec()), "chain", b"b,!x")
        .expect("call");
    assert_eq!(String::from_utf8_lossy(&answer), "a>b!no class `nope`");
}

#[test]
fn a_call_to_a_name_over_the_limit_comes_back_as_an_error_reply() {
    let server = start();
    let (rpc, _) = server.rpc_addr().expect("rpc is on");
    let client = Client::connect(rpc, ClientOptions::default()).expect("connect");
    // The same limit a client's RPC request meets: 512 bytes.
    let path = format!("b,{}", "x".repeat(513));
    let answer = client
        .call(
            "relay",
            &ObjectRef::Name(b"a".to_vec()),
            "chain",
            path.as_bytes(),
        )
        .expect("call");
    assert_eq!(
        String::from_utf8_lossy(&answer),
        "a>b!object name longer than 512 bytes"
    );
}

#[test]
fn a_chain_answers_a_deferred_http_request() {
    let server = start();
    let mut stream = TcpStream::connect(server.addr()).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    stream
        .write_all(
            b"GET /relay/ha/chain?path=hb,ha HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .expect("write");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("read");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("ha>hb>ha"), "{answer}");
}
