//! The WebSocket object API through an embedded server with a class of its
//! own: tags, attachments, sends, closes by the object, the close and error
//! events, binary messages, limits, and a handler panic.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use durin::config::Config;
use durin::object::{
    Context, Deferred, DurableObject, Message, ObjectClass, Request, Response, WebSocket,
    WebSocketError, ATTACHMENT_BYTES_MAX,
};
use durin::server::ServerBuilder;
use durin::ObjectId;
use tungstenite::Message as WsMessage;

mod common;
use common::{http_get, start_embedded, Embedded};

/// `GET /{name}/ws?tags=a,b&who=N` accepts a socket; every message is a
/// command (see `websocket_message`); the close and error events are
/// recorded in storage and read back with `GET /{name}/events`.
#[derive(Default)]
struct Lab {
    /// A response deferred while accepting (`?defer=1`), given later.
    deferred: Option<Deferred>,
}

impl DurableObject for Lab {
    fn fetch(&mut self, req: &Request<'_>, res: &mut Response, ctx: &mut Context<'_>) {
        match req.path {
            "/ws" => {
                let tags = req.query_param("tags").unwrap_or_default();
                let tags: Vec<&str> = tags.split(',').filter(|t| !t.is_empty()).collect();
                match ctx.accept_websocket(&tags) {
                    Ok(ws) => {
                        let who = req.query_param("who").unwrap_or_default();
                        ctx.serialize_attachment(ws, who.as_bytes()).expect("small");
                        if req.query_param("defer").is_some() {
                            self.deferred = Some(ctx.defer());
                        }
                    }
                    Err(e) => {
                        res.text(400, &e.to_string());
                    }
                }
            }
            "/events" => {
                let events = ctx
                    .storage()
                    .get(b"events")
                    .expect("read")
                    .unwrap_or_default();
                res.text(200, &String::from_utf8_lossy(&events));
            }
            _ => {
                res.text(404, "Not found");
            }
        }
    }

    fn websocket_message(&mut self, ws: WebSocket, msg: Message<'_>, ctx: &mut Context<'_>) {
        let text = match msg {
            Message::Binary(bytes) => {
                let mut reversed = bytes.to_vec();
                reversed.reverse();
                ctx.send(ws, Message::Binary(&reversed)).expect("open");
                return;
            }
            Message::Text(text) => text,
        };
        let reply = match text.split_once(':').unwrap_or((text, "")) {
            ("whoami", _) => {
                String::from_utf8_lossy(ctx.deserialize_attachment(ws).expect("open")).into_owned()
            }
            ("tags", _) => ctx.websocket_tags(ws).join(","),
            ("count", tag) => ctx.websockets(Some(tag)).len().to_string(),
            ("to", rest) => {
                let (tag, message) = rest.split_once(':').expect("to:TAG:MESSAGE");
                for socket in ctx.websockets(Some(tag)) {
                    ctx.send(socket, Message::Text(message)).expect("open");
                }
                return;
            }
            ("attach", value) => {
                ctx.serialize_attachment(ws, value.as_bytes())
                    .expect("small");
                return;
            }
            ("attach-too-big", _) => {
                let big = vec![b'x'; ATTACHMENT_BYTES_MAX + 1];
                match ctx.serialize_attachment(ws, &big) {
                    Err(WebSocketError::AttachmentTooLarge { .. }) => "refused".to_string(),
                    other => format!("unexpected {other:?}"),
                }
            }
            ("close", _) => {
                ctx.close_websocket(ws, 4001, "closed by the object")
                    .expect("open");
                // Nothing may be sent after the close.
                assert_eq!(
                    ctx.send(ws, Message::Text("late")),
                    Err(WebSocketError::Closed)
                );
                return;
            }
            ("bad-close", _) => match ctx.close_websocket(ws, 1006, "") {
                Err(WebSocketError::InvalidCloseCode(1006)) => "refused".to_string(),
                other => format!("unexpected {other:?}"),
            },
            ("respond", _) => {
                // The deferred response of an accepted upgrade goes nowhere.
                if let Some(deferred) = self.deferred.take() {
                    let mut response = Response::default();
                    response.text(200, "too late");
                    ctx.respond(deferred, response);
                }
                "responded".to_string()
            }
            ("panic", _) => {
                ctx.storage().put(b"panicked", b"yes").expect("small");
                panic!("a handler panics on purpose");
            }
            _ => format!("unknown command {text}"),
        };
        ctx.send(ws, Message::Text(&reply)).expect("open");
    }

    fn websocket_close(&mut self, ws: WebSocket, code: u16, _reason: &str, ctx: &mut Context<'_>) {
        let who =
            String::from_utf8_lossy(ctx.deserialize_attachment(ws).unwrap_or(b"?")).into_owned();
        record(ctx, &format!("close {who} {code};"));
    }

    fn websocket_error(&mut self, ws: WebSocket, error: &str, ctx: &mut Context<'_>) {
        let who =
            String::from_utf8_lossy(ctx.deserialize_attachment(ws).unwrap_or(b"?")).into_owned();
        record(ctx, &format!("error {who} {error};"));
    }
}

fn record(ctx: &mut Context<'_>, event: &str) {
    let mut events = ctx
        .storage()
        .get(b"events")
        .expect("read")
        .unwrap_or_default();
    events.extend_from_slice(event.as_bytes());
    ctx.storage().put(b"events", &events).expect("small");
}

struct LabClass;
impl ObjectClass for LabClass {
    fn create(&self, _id: &ObjectId, _ctx: &mut Context<'_>) -> Box<dyn DurableObject> {
        Box::new(Lab::default())
    }
}

fn start() -> Embedded {
    start_embedded(
        ServerBuilder::new().class("lab", LabClass),
        2,
        false,
        Config::default(),
    )
}

type Ws = tungstenite::WebSocket<TcpStream>;

fn connect(addr: SocketAddr, path: &str) -> Ws {
    let stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let url = format!("ws://{addr}{path}");
    tungstenite::client::client(url.as_str(), stream)
        .unwrap_or_else(|e| panic!("upgrade {path}: {e:?}"))
        .0
}

fn ask(ws: &mut Ws, command: &str) -> String {
    ws.send(WsMessage::text(command)).expect("send");
    recv(ws)
}

fn recv(ws: &mut Ws) -> String {
    match ws.read().expect("a message") {
        WsMessage::Text(text) => text.to_string(),
        other => panic!("expected text, got {other:?}"),
    }
}

fn eventually_events(addr: SocketAddr, object: &str, expected: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, events) = http_get(addr, &format!("/lab/{object}/events"));
        if events == expected {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "events {events:?}, expected {expected:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn tags_attachments_and_targeted_sends() {
    let server = start();
    let addr = server.addr();
    let mut red = connect(addr, "/lab/o/ws?tags=red,warm&who=ann");
    let mut blue = connect(addr, "/lab/o/ws?tags=blue&who=ben");
    assert_eq!(ask(&mut red, "whoami"), "ann");
    assert_eq!(ask(&mut blue, "tags"), "blue");
    assert_eq!(ask(&mut red, "tags"), "red,warm");
    assert_eq!(ask(&mut red, "count:red"), "1");
    blue.send(WsMessage::text("to:red:for the red ones"))
        .expect("send");
    assert_eq!(recv(&mut red), "for the red ones");
    red.send(WsMessage::text("attach:ann2")).expect("send");
    assert_eq!(ask(&mut red, "whoami"), "ann2");
    assert_eq!(ask(&mut red, "attach-too-big"), "refused");
    assert_eq!(ask(&mut red, "bad-close"), "refused");
    red.send(WsMessage::binary(vec![1u8, 2, 3])).expect("send");
    match red.read().expect("a message") {
        WsMessage::Binary(bytes) => assert_eq!(&bytes[..], &[3, 2, 1]),
        other => panic!("expected binary, got {other:?}"),
    }
    // Too many tags: the object's own 400.
    let tags = (0..11).map(|i| i.to_string()).collect::<Vec<_>>().join(",");
    let stream = TcpStream::connect(addr).expect("connect");
    let url = format!("ws://{addr}/lab/o/ws?tags={tags}");
    match tungstenite::client::client(url.as_str(), stream) {
        Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(response))) => {
            assert_eq!(response.status(), 400);
        }
        other => panic!("expected a 400, got {:?}", other.map(|_| ())),
    }
}

#[test]
fn the_object_hears_of_closes_and_errors_but_not_of_its_own_closes() {
    let server = start();
    let addr = server.addr();
    let mut a = connect(addr, "/lab/p/ws?who=a");
    let mut b = connect(addr, "/lab/p/ws?who=b");
    let mut c = connect(addr, "/lab/p/ws?who=c");
    let mut d = connect(addr, "/lab/p/ws?who=d");
    // a closes cleanly with 4000.
    a.close(Some(tungstenite::protocol::CloseFrame {
        code: 4000.into(),
        reason: "".into(),
    }))
    .expect("close");
    eventually_events(addr, "p", "close a 4000;");
    // b's connection just drops.
    drop(b.get_mut().shutdown(std::net::Shutdown::Both));
    drop(b);
    eventually_events(addr, "p", "close a 4000;close b 1006;");
    // c sends an unmasked frame: a protocol error, closed with 1002.
    c.get_mut().write_all(&[0x81, 0x01, b'x']).expect("raw");
    match c.read() {
        Ok(WsMessage::Close(Some(frame))) => assert_eq!(u16::from(frame.code), 1002),
        other => panic!("expected a close frame, got {other:?}"),
    }
    let so_far = "close a 4000;close b 1006;error c client frames must be masked;";
    eventually_events(addr, "p", so_far);
    // The object closes d itself: d gets 4001, the object no event.
    d.send(WsMessage::text("close")).expect("send");
    match d.read() {
        Ok(WsMessage::Close(Some(frame))) => {
            assert_eq!(u16::from(frame.code), 4001);
            assert_eq!(frame.reason.as_str(), "closed by the object");
        }
        other => panic!("expected a close frame, got {other:?}"),
    }
    std::thread::sleep(Duration::from_millis(200));
    eventually_events(addr, "p", so_far);
}

#[test]
fn a_panicking_handler_leaves_the_socket_open() {
    let server = start();
    let addr = server.addr();
    let mut ws = connect(addr, "/lab/q/ws?who=q");
    ws.send(WsMessage::text("panic")).expect("send");
    // The object is rebuilt for the next message; the socket and its
    // attachment are still there.
    assert_eq!(ask(&mut ws, "whoami"), "q");
}

#[test]
fn a_response_deferred_while_accepting_is_dropped() {
    let server = start();
    let addr = server.addr();
    let mut ws = connect(addr, "/lab/d/ws?who=d&defer=1");
    assert_eq!(ask(&mut ws, "respond"), "responded");
    // No HTTP bytes reached the socket: it still speaks WebSocket.
    assert_eq!(ask(&mut ws, "whoami"), "d");
}
