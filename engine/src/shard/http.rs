//! HTTP on a shard: parsing a connection's input, routing each request to
//! its object (here or on its owner), and writing responses.

use durin_net::http::{
    parse_request, percent_decode, write_response, Parsed, ResponseHead, HEADERS_MAX,
};
use durin_net::{ws, Conn, Token};

use super::calls::{Delivery, ReplyTarget};
use super::conns::arm_deadline;
use super::routing::OBJECT_NAME_BYTES_MAX;
use super::Shard;
use crate::mesh::MeshMsg;
use crate::metrics::{self, ShardMetrics};
use crate::object;
use crate::object::websocket::Upgrade;
use crate::ObjectId;

/// The browser client and the demo chat page.
static CLIENT_JS: &[u8] = include_bytes!("../../static/durin.js");
static CHAT_HTML: &[u8] = include_bytes!("../../static/chat.html");
/// The collaborative editor demo and its bundle (built from
/// engine/static/editor-src by its build.sh).
static EDITOR_HTML: &[u8] = include_bytes!("../../static/editor.html");
static EDITOR_JS: &[u8] = include_bytes!("../../static/editor.js");

/// The interim answer to `Expect: 100-continue`: send the body.
static CONTINUE_RESPONSE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// Where a request goes.
enum Target<'a> {
    Healthz,
    Metrics,
    NotFound,
    BadRequest(&'static str),
    /// A built-in route asked with a method it does not take: 405 with
    /// `Allow`.
    MethodNotAllowed {
        allow: &'static str,
    },
    /// `POST /{class}/new`: a new unique ID.
    NewId,
    /// A file served from the binary.
    Static {
        body: &'static [u8],
        content_type: &'static str,
    },
    Object {
        class: u16,
        id: ObjectId,
        rest: &'a str,
    },
}

/// Appends a plain-text error response and closes the connection after it:
/// after a malformed request the stream can no longer be trusted.
pub(super) fn write_error(conn: &mut Conn, status: u16, message: &str) {
    let head = ResponseHead {
        status,
        content_type: Some("text/plain; charset=utf-8"),
        header_lines: b"",
        keep_alive: false,
    };
    write_response(conn.output(), &head, message.as_bytes());
    conn.closing = true;
    conn.input.clear();
}

/// Answers an upgrade request that cannot be accepted, and closes.
fn write_handshake_error(conn: &mut Conn, e: ws::handshake::HandshakeError) {
    let head = ResponseHead {
        status: e.status,
        content_type: Some("text/plain; charset=utf-8"),
        header_lines: if e.status == 426 {
            ws::handshake::VERSION_HEADER_LINE
        } else {
            b""
        },
        keep_alive: false,
    };
    write_response(conn.output(), &head, e.reason.as_bytes());
    conn.closing = true;
    conn.input.clear();
}

/// Appends a plain-text response; returns the length of its body.
fn write_text(out: &mut Vec<u8>, status: u16, body: &[u8], keep_alive: bool) -> usize {
    let head = ResponseHead {
        status,
        content_type: Some("text/plain; charset=utf-8"),
        header_lines: b"",
        keep_alive,
    };
    write_response(out, &head, body);
    body.len()
}

impl Shard {
    /// Serves every complete request in the connection's input, in order,
    /// until one has to wait for another shard.
    pub(super) fn process_input(&mut self, index: u32, conn: &mut Conn) {
        if conn.kind != durin_net::ConnKind::Http {
            return self.process_rpc(index, conn);
        }
        let input = std::mem::take(&mut conn.input);
        let mut consumed = 0;
        while !conn.closing
            && !conn.awaiting_reply
            && !conn.dead
            && consumed < input.len()
            && conn.queued_bytes() < super::conns::OUTPUT_BYTES_HIGH
        {
            let mut headers = [httparse_empty(); HEADERS_MAX];
            let parsed = parse_request(&input[consumed..], &mut headers, &self.limits);
            let req = match parsed {
                Ok(Parsed::Complete(req)) => req,
                Ok(Parsed::Partial) => break,
                Ok(Parsed::AwaitingBody {
                    head_len,
                    expect_continue,
                }) => {
                    // Asked once: when the head has arrived and nothing of
                    // the body yet (a client that did not wait sent some).
                    if expect_continue && input.len() - consumed == head_len {
                        conn.output().extend_from_slice(CONTINUE_RESPONSE);
                    }
                    break;
                }
                Err(e) => {
                    log::debug!("shard {}: bad request: {e}", self.index);
                    metrics::add(&self.metrics.bad_requests_total, 1);
                    write_error(conn, e.status(), &e.to_string());
                    consumed = input.len();
                    break;
                }
            };
            metrics::add(&self.metrics.http_requests_total, 1);
            let (len, keep_alive) = (req.len, req.keep_alive);
            let upgrade = ws::handshake::is_upgrade(req.headers);
            match self.target(req.method, req.path, req.query, upgrade) {
                Target::Object { class, id, rest } => {
                    let owner = self.store.layout().shard_of(&id.0, self.shards);
                    if upgrade && owner != self.index {
                        // The connection itself moves to the owner, with
                        // this request still unread in its input.
                        conn.handoff_to = Some(owner);
                        conn.awaiting_reply = true;
                        break;
                    }
                    if owner == self.index {
                        let key = if upgrade {
                            match ws::handshake::check(req.method, req.headers) {
                                Ok(key) => Some(key),
                                Err(e) => {
                                    metrics::add(&self.metrics.bad_requests_total, 1);
                                    write_handshake_error(conn, e);
                                    consumed = input.len();
                                    break;
                                }
                            }
                        } else {
                            None
                        };
                        self.upgrade = key.map(|_| Upgrade {
                            conn_index: index,
                            conn_generation: conn.generation,
                            accepted: None,
                        });
                        let obj_req = object::Request {
                            method: req.method,
                            path: rest,
                            query: req.query,
                            headers: req.headers,
                            body: req.body,
                        };
                        let token = Token::new(0, conn.generation, index).0;
                        let target = ReplyTarget::HttpLocal { token, keep_alive };
                        let (gate, deferred) = self.run_object(class, id, &obj_req, target);
                        let accepted = self.upgrade.take().and_then(|u| u.accepted);
                        if let (Some(socket), Some(key)) = (accepted, key) {
                            self.become_websocket(conn, socket, key, gate);
                            consumed += len;
                            break;
                        }
                        if deferred {
                            // The pipeline waits for the late response.
                            conn.awaiting_reply = true;
                            conn.close_after_reply = !keep_alive;
                        } else {
                            if let Some(seq) = gate {
                                conn.gate_next(seq);
                            }
                            self.write_object_response(conn.output(), keep_alive);
                        }
                    } else {
                        let mut bytes = self.mesh.buffer();
                        bytes.extend_from_slice(&input[consumed..consumed + len]);
                        let token = Token::new(0, conn.generation, index).0;
                        // The path's tail the object sees is a suffix of the
                        // path (all of it for a configured route).
                        let rest_bytes =
                            u32::try_from(rest.len()).expect("a path fits the header limit");
                        self.mesh.send(
                            owner,
                            MeshMsg::HttpRequest {
                                from: self.index,
                                token,
                                class,
                                id,
                                rest_bytes,
                                bytes,
                            },
                        );
                        metrics::add(&self.metrics.requests_forwarded_total, 1);
                        conn.awaiting_reply = true;
                        conn.close_after_reply = !keep_alive;
                    }
                }
                other => self.write_builtin(other, req.method, conn.output(), keep_alive),
            }
            consumed += len;
            if !keep_alive && !conn.awaiting_reply {
                conn.closing = true;
            }
        }
        conn.paused_for_output = consumed < input.len()
            && conn.queued_bytes() >= super::conns::OUTPUT_BYTES_HIGH
            && !conn.closing
            && !conn.dead;
        conn.input = input;
        conn.input.drain(..consumed.min(conn.input.len()));
        self.update_deadline(index, conn);
    }

    /// A partial request (or an RPC handshake) must complete within the
    /// header timeout, counted from its first byte so that trickling bytes
    /// does not extend it; an idle connection is closed after the idle
    /// timeout; a connection waiting on the server has no deadline.
    pub(super) fn update_deadline(&mut self, index: u32, conn: &mut Conn) {
        if conn.kind == durin_net::ConnKind::WebSocket {
            // An open WebSocket has no deadline however quiet it is; a
            // closing one keeps the close-handshake deadline it was given.
            let closing = conn.closing || conn.ws.as_ref().is_some_and(|ws| ws.close_sent);
            if !closing {
                arm_deadline(&mut self.timers, conn, index, 0, false);
            }
            return;
        }
        let waiting = conn.awaiting_reply || conn.rpc_in_flight > 0;
        let partial = !conn.input.is_empty() || conn.kind == durin_net::ConnKind::RpcHello;
        if waiting || conn.closing || conn.dead {
            arm_deadline(&mut self.timers, conn, index, 0, false);
        } else if conn.paused_for_output {
            // Whole requests wait for the peer to read what it was sent:
            // it has the idle timeout to make progress, renewed each time
            // a send completes and serving goes on.
            let deadline = self.mono_ms + self.server.idle_timeout_ms;
            arm_deadline(&mut self.timers, conn, index, deadline, false);
        } else if partial {
            if !conn.deadline_is_header || conn.deadline_ms == 0 {
                let deadline = self.mono_ms + self.server.header_timeout_ms;
                arm_deadline(&mut self.timers, conn, index, deadline, true);
            }
        } else {
            let deadline = self.mono_ms + self.server.idle_timeout_ms;
            arm_deadline(&mut self.timers, conn, index, deadline, false);
        }
    }

    /// Resolves a path: `/healthz`, `/metrics`, `POST /{class}/new`, or
    /// `/{class}/{name}[/rest]`, where the name may be `id:{32 hex digits}`
    /// to address an object by ID (names starting with `id:` are taken).
    fn target<'a>(
        &mut self,
        method: &str,
        path: &'a str,
        query: Option<&str>,
        upgrade: bool,
    ) -> Target<'a> {
        let target = self.route(method, path, query, upgrade);
        let builtin = matches!(
            target,
            Target::Healthz | Target::Metrics | Target::Static { .. }
        );
        if builtin && !matches!(method, "GET" | "HEAD") {
            return Target::MethodNotAllowed { allow: "GET, HEAD" };
        }
        target
    }

    fn route<'a>(
        &mut self,
        method: &str,
        path: &'a str,
        query: Option<&str>,
        upgrade: bool,
    ) -> Target<'a> {
        match path {
            "/healthz" => return Target::Healthz,
            "/metrics" => return Target::Metrics,
            "/_client/durin.js" => {
                return Target::Static {
                    body: CLIENT_JS,
                    content_type: "text/javascript; charset=utf-8",
                }
            }
            "/_client/chat.html" => {
                return Target::Static {
                    body: CHAT_HTML,
                    content_type: "text/html; charset=utf-8",
                }
            }
            "/_client/editor.html" => {
                return Target::Static {
                    body: EDITOR_HTML,
                    content_type: "text/html; charset=utf-8",
                }
            }
            "/_client/editor.js" => {
                return Target::Static {
                    body: EDITOR_JS,
                    content_type: "text/javascript; charset=utf-8",
                }
            }
            _ => {}
        }
        if let Some(route) = self.routes.iter().find(|r| r.path == path) {
            let name = object::query_param(query, &route.name_param)
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| route.name_default.as_bytes().to_vec());
            if name.len() > OBJECT_NAME_BYTES_MAX {
                return Target::BadRequest("object name longer than 512 bytes");
            }
            let id = ObjectId::from_name(&route.class_name, &name);
            return Target::Object {
                class: route.class,
                id,
                rest: path,
            };
        }
        let Some(after_slash) = path.strip_prefix('/') else {
            return Target::NotFound;
        };
        let Some((class_name, after_class)) = after_slash.split_once('/') else {
            return Target::NotFound;
        };
        let Some((class, entry)) = self.registry.find(class_name) else {
            return Target::NotFound;
        };
        let (encoded_name, rest) = split_name(after_class, entry.class.name_path(), upgrade);
        if encoded_name.is_empty() {
            return Target::NotFound;
        }
        if encoded_name == "new" && rest.is_empty() && method == "POST" {
            return Target::NewId;
        }
        if let Some(hex) = encoded_name.strip_prefix("id:") {
            return match ObjectId::from_hex(hex) {
                Ok(id) => Target::Object { class, id, rest },
                Err(_) => Target::BadRequest("malformed object ID: expected id: and 32 hex digits"),
            };
        }
        self.name_buf.clear();
        if percent_decode(encoded_name, &mut self.name_buf).is_err() {
            return Target::BadRequest("invalid percent-encoding in object name");
        }
        if self.name_buf.len() > OBJECT_NAME_BYTES_MAX {
            return Target::BadRequest("object name longer than 512 bytes");
        }
        let id = ObjectId::from_name(class_name, &self.name_buf);
        Target::Object { class, id, rest }
    }

    /// Writes a built-in route's response; the answer to `HEAD` is the
    /// head of the answer to `GET`.
    fn write_builtin(
        &mut self,
        target: Target<'_>,
        method: &str,
        out: &mut Vec<u8>,
        keep_alive: bool,
    ) {
        let start = out.len();
        let body_bytes = self.write_builtin_response(target, out, keep_alive);
        if method == "HEAD" {
            debug_assert!(out.len() - start >= body_bytes);
            out.truncate(out.len() - body_bytes);
        }
    }

    /// Returns the length of the body it wrote (it ends the output).
    fn write_builtin_response(
        &mut self,
        target: Target<'_>,
        out: &mut Vec<u8>,
        keep_alive: bool,
    ) -> usize {
        let before = out.len();
        let body_bytes = match target {
            Target::Healthz => write_text(out, 200, b"ok", keep_alive),
            Target::Metrics => {
                let mut text = String::new();
                ShardMetrics::render(&self.all_metrics, &mut text);
                crate::classes::queue::QueueMetrics::render(&mut text);
                crate::classes::cache::CacheMetrics::render(&mut text);
                write_text(out, 200, text.as_bytes(), keep_alive)
            }
            Target::NotFound => write_text(out, 404, b"Not found", keep_alive),
            Target::NewId => {
                let body = format!("{{\"id\": \"{}\"}}", ObjectId::new_unique().to_hex());
                let head = ResponseHead {
                    status: 200,
                    content_type: Some("application/json"),
                    header_lines: b"",
                    keep_alive,
                };
                write_response(out, &head, body.as_bytes());
                body.len()
            }
            Target::BadRequest(why) => {
                metrics::add(&self.metrics.bad_requests_total, 1);
                write_text(out, 400, why.as_bytes(), keep_alive)
            }
            Target::MethodNotAllowed { allow } => {
                let body = b"Method not allowed";
                let allow_line = format!("Allow: {allow}\r\n");
                let head = ResponseHead {
                    status: 405,
                    content_type: Some("text/plain; charset=utf-8"),
                    header_lines: allow_line.as_bytes(),
                    keep_alive,
                };
                write_response(out, &head, body);
                body.len()
            }
            Target::Static { body, content_type } => {
                let head = ResponseHead {
                    status: 200,
                    content_type: Some(content_type),
                    header_lines: b"Cache-Control: no-cache\r\n",
                    keep_alive,
                };
                write_response(out, &head, body);
                body.len()
            }
            Target::Object { .. } => unreachable!("objects are served by run_object"),
        };
        debug_assert!(out.len() - before >= body_bytes);
        body_bytes
    }

    /// Runs the object's handler into `self.res`; returns the sequence
    /// number its response must wait for, and whether the object deferred
    /// its response (then `target` is where it will go).
    fn run_object(
        &mut self,
        class: u16,
        id: ObjectId,
        req: &object::Request<'_>,
        target: ReplyTarget,
    ) -> (Option<u64>, bool) {
        self.res.reset();
        let res = &mut self.res;
        let outcome = self
            .objects
            .run(event_env!(self), class, id, |object, ctx| {
                object.fetch(req, res, ctx)
            });
        if self.upgrade.as_ref().is_some_and(|u| u.accepted.is_some()) {
            // Accepting answered the request (101): a response deferred in
            // the same event has nowhere to go, and is dropped.
            self.effects.deferred = None;
        }
        let deferred = self.register_deferred(id, target);
        self.after_event(class, id, &outcome);
        if outcome.result.is_none() {
            // A socket accepted by a handler that then panicked is not
            // kept: the request is answered 500.
            if let Some(socket) = self.upgrade.as_mut().and_then(|u| u.accepted.take()) {
                self.sockets.remove(socket);
            }
            self.res.reset();
            self.res.text(500, "Internal Server Error");
            log::warn!(
                "shard {}: a handler of object {id} panicked; answered 500",
                self.index
            );
        }
        if outcome.gate.is_some() {
            metrics::add(&self.metrics.responses_gated_total, 1);
        }
        (outcome.gate, deferred)
    }

    fn write_object_response(&mut self, out: &mut Vec<u8>, keep_alive: bool) {
        let head = ResponseHead {
            status: self.res.status,
            content_type: self.res.content_type,
            header_lines: &self.res.header_lines,
            keep_alive,
        };
        write_response(out, &head, &self.res.body);
    }

    /// Serves a request another shard forwarded and routed: this shard
    /// owns its object. The request is parsed again for its headers and
    /// body (the origin parsed this exact, complete request), not routed
    /// again.
    pub(super) fn serve_forwarded(
        &mut self,
        from: u32,
        token: u64,
        (class, id, rest_bytes): (u16, ObjectId, u32),
        bytes: Vec<u8>,
    ) {
        metrics::add(&self.metrics.requests_received_from_peers_total, 1);
        debug_assert_eq!(
            self.store.layout().shard_of(&id.0, self.shards),
            self.index,
            "requests are forwarded to the owner of their object"
        );
        let mut reply = self.mesh.buffer();
        let mut headers = [httparse_empty(); HEADERS_MAX];
        let Ok(Parsed::Complete(req)) = parse_request(&bytes, &mut headers, &self.limits) else {
            unreachable!("a forwarded request is a complete, valid request");
        };
        let rest = &req.path[req.path.len() - rest_bytes as usize..];
        let obj_req = object::Request {
            method: req.method,
            path: rest,
            query: req.query,
            headers: req.headers,
            body: req.body,
        };
        let target = ReplyTarget::HttpRemote {
            from,
            token,
            keep_alive: req.keep_alive,
        };
        let (gate, deferred) = self.run_object(class, id, &obj_req, target);
        if deferred {
            self.mesh.recycle(bytes);
            self.mesh.recycle(reply);
            return;
        }
        self.write_object_response(&mut reply, req.keep_alive);
        self.mesh.recycle(bytes);
        let msg = MeshMsg::HttpReply {
            token,
            bytes: reply,
        };
        self.deliver_gated(gate, Delivery::Mesh { to: from, msg });
    }

    /// Delivers a forwarded request's reply to its connection, and goes on
    /// with the requests pipelined behind it.
    pub(super) fn on_reply(&mut self, token: u64, mut bytes: Vec<u8>) {
        let token = Token(token);
        let (index, generation) = (token.index(), token.generation());
        let Some(mut conn) = self.conns.take(index, generation) else {
            // The connection closed while its request was away.
            self.mesh.recycle(bytes);
            return;
        };
        conn.awaiting_reply = false;
        if conn.output().is_empty() {
            std::mem::swap(conn.output(), &mut bytes);
        } else {
            conn.output().extend_from_slice(&bytes);
        }
        self.mesh.recycle(bytes);
        if conn.close_after_reply {
            conn.closing = true;
        }
        self.process_input(index, &mut conn);
        self.conns.put_back(index, conn);
        self.after_input(index, generation);
        self.dirty.push(index);
    }
}

/// Splits what follows `/{class}/` into the encoded object name and the
/// request's path, as the class reads names.
fn split_name(after_class: &str, name_path: object::NamePath, upgrade: bool) -> (&str, &str) {
    match name_path {
        object::NamePath::Segment => match after_class.find('/') {
            Some(i) => (&after_class[..i], &after_class[i..]),
            None => (after_class, ""),
        },
        object::NamePath::Rest { suffixes } => {
            let suffix = suffixes
                .iter()
                .filter(|_| !upgrade)
                .find(|s| after_class.len() > s.len() && after_class.ends_with(*s));
            match suffix {
                Some(s) => after_class.split_at(after_class.len() - s.len()),
                None => (after_class, ""),
            }
        }
    }
}

const fn httparse_empty() -> durin_net::http::Header<'static> {
    durin_net::http::Header {
        name: "",
        value: b"",
    }
}
