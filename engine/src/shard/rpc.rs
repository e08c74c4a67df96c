//! Binary RPC on a shard: the handshake, frames in, frames out.
//!
//! A connection on the shared RPC port or on this shard's own port starts
//! with a handshake ([`durin_proto::rpc`]), then carries length-prefixed
//! request frames. Unlike HTTP, many requests are in flight at once and
//! responses go out in whatever order they complete, matched by request
//! id: a request for an object owned here is answered at once (behind the
//! output gate), one owned elsewhere goes to its owner through the mesh
//! while the connection keeps reading. A shard-aware client sends each
//! request to its owner's port, so nothing crosses cores.

use durin_net::{Conn, ConnKind, Token};
use durin_proto::rpc::{
    self, decode_client_hello, decode_request, encode_response, encode_server_hello, status,
    Decoded, ProtoError, RequestHeader, ResponseHeader, ServerHello,
};

use super::calls::{Delivery, ReplyTarget};
use super::routing::Route;
use super::Shard;
use crate::mesh::MeshMsg;
use crate::metrics;
use crate::object::RpcError;
use crate::ObjectId;

/// Requests of one connection that may wait on other shards at once; past
/// it the connection reads nothing more until replies come back.
pub const RPC_IN_FLIGHT_MAX: u32 = 1024;

impl Shard {
    /// Handshake, then every complete frame in the connection's input.
    pub(super) fn process_rpc(&mut self, index: u32, conn: &mut Conn) {
        let input = std::mem::take(&mut conn.input);
        let mut consumed = 0;
        while !conn.closing
            && !conn.dead
            && consumed < input.len()
            && conn.queued_bytes() < super::conns::OUTPUT_BYTES_HIGH
        {
            if conn.kind == ConnKind::RpcHello {
                match decode_client_hello(&input[consumed..]) {
                    Ok(None) => break,
                    Ok(Some(version)) => {
                        consumed += rpc::CLIENT_HELLO_BYTES;
                        self.answer_hello(conn, version);
                    }
                    Err(_) => {
                        metrics::add(&self.metrics.bad_requests_total, 1);
                        conn.closing = true;
                    }
                }
                continue;
            }
            if conn.rpc_in_flight >= RPC_IN_FLIGHT_MAX {
                break;
            }
            match decode_request(&input[consumed..], self.rpc.frame_bytes_max) {
                Ok(Decoded::Incomplete) => break,
                Ok(Decoded::Frame {
                    header,
                    payload,
                    len,
                }) => {
                    let frame = &input[consumed..consumed + len];
                    self.serve_rpc_frame(index, conn, &header, &frame[payload], frame);
                    consumed += len;
                }
                Err(e) => {
                    metrics::add(&self.metrics.bad_requests_total, 1);
                    log::debug!("shard {}: bad rpc frame: {e}", self.index);
                    // Say why before closing: the client can act on it.
                    let status = match e {
                        ProtoError::FrameTooLarge { .. } => status::FRAME_TOO_LARGE,
                        _ => status::MALFORMED,
                    };
                    let header = ResponseHeader {
                        request_id: 0,
                        status,
                        message: e.to_string(),
                    };
                    encode_response(conn.output(), &header, b"");
                    // A frame that cannot be read leaves the stream out of
                    // step: nothing after it can be trusted.
                    conn.closing = true;
                    consumed = input.len();
                }
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

    fn answer_hello(&mut self, conn: &mut Conn, version: u16) {
        let accepted = version == rpc::PROTOCOL_VERSION;
        let hello = ServerHello {
            accepted,
            version: rpc::PROTOCOL_VERSION,
            shards: self.shards,
            partitions: self.store.layout().partitions(),
            shard_index: conn_shard_index(conn, self.index),
            shard_base_port: self.rpc.shard_base_port,
            reason: if accepted {
                String::new()
            } else {
                format!(
                    "protocol version {version} is not supported; this server speaks {}",
                    rpc::PROTOCOL_VERSION
                )
            },
        };
        encode_server_hello(&hello, conn.output());
        if accepted {
            conn.kind = ConnKind::Rpc;
        } else {
            conn.closing = true;
        }
    }

    fn serve_rpc_frame(
        &mut self,
        index: u32,
        conn: &mut Conn,
        header: &RequestHeader,
        payload: &[u8],
        frame: &[u8],
    ) {
        metrics::add(&self.metrics.rpc_requests_total, 1);
        match self.route_rpc(header) {
            Route::Local { class, id } => {
                let token = Token::new(0, conn.generation, index).0;
                let target = ReplyTarget::RpcLocal {
                    token,
                    request_id: header.request_id,
                };
                let (gate, deferred) = self.run_rpc(class, id, header, payload, target);
                if deferred {
                    // Counted like a forwarded request: its reply comes later.
                    conn.rpc_in_flight += 1;
                } else {
                    if let Some(seq) = gate {
                        conn.gate_next(seq);
                    }
                    conn.output().extend_from_slice(&self.rpc_reply);
                }
            }
            Route::Remote { owner } => {
                let mut bytes = self.mesh.buffer();
                bytes.extend_from_slice(frame);
                let token = Token::new(0, conn.generation, index).0;
                self.mesh.send(
                    owner,
                    MeshMsg::RpcRequest {
                        from: self.index,
                        token,
                        bytes,
                    },
                );
                metrics::add(&self.metrics.requests_forwarded_total, 1);
                conn.rpc_in_flight += 1;
            }
            Route::Error { status, message } => {
                let response = ResponseHeader {
                    request_id: header.request_id,
                    status,
                    message,
                };
                encode_response(conn.output(), &response, b"");
            }
        }
    }

    /// Runs the object's RPC handler; its whole response frame is left in
    /// `self.rpc_reply`. Returns the sequence number it must wait for, and
    /// whether the object deferred its response (then `target` is where it
    /// will go).
    pub(super) fn run_rpc(
        &mut self,
        class: u16,
        id: ObjectId,
        header: &RequestHeader,
        payload: &[u8],
        target: ReplyTarget,
    ) -> (Option<u64>, bool) {
        let mut out = std::mem::take(&mut self.rpc_out);
        out.clear();
        let method = header.method.as_str();
        let outcome = self
            .objects
            .run(event_env!(self), class, id, |object, ctx| {
                object.rpc(method, payload, &mut out, ctx)
            });
        // A handler that failed answers with its error now, deferred or not.
        let deferred = if matches!(outcome.result, Some(Ok(()))) {
            self.register_deferred(id, target)
        } else {
            self.effects.deferred = None;
            false
        };
        self.after_event(class, id, &outcome);
        let (status, message) = match outcome.result {
            Some(Ok(())) => (status::OK, String::new()),
            Some(Err(RpcError::UnknownMethod)) => (
                status::UNKNOWN_METHOD,
                format!("class `{}` has no method `{method}`", header.class),
            ),
            Some(Err(RpcError::BadArgument(why))) => (status::BAD_ARGUMENT, why),
            Some(Err(RpcError::Storage(e))) => (status::STORAGE_LIMIT, e.to_string()),
            Some(Err(e @ RpcError::Sql(_))) => (crate::object::rpc_status(&e), e.to_string()),
            None => (status::INTERNAL, "the handler panicked".to_string()),
        };
        if status != status::OK {
            out.clear();
        }
        self.rpc_reply.clear();
        let response = ResponseHeader {
            request_id: header.request_id,
            status,
            message,
        };
        encode_response(&mut self.rpc_reply, &response, &out);
        self.rpc_out = out;
        if outcome.gate.is_some() {
            metrics::add(&self.metrics.responses_gated_total, 1);
        }
        (outcome.gate, deferred)
    }

    /// Serves an RPC frame another shard forwarded: this shard owns its object.
    pub(super) fn serve_forwarded_rpc(&mut self, from: u32, token: u64, bytes: Vec<u8>) {
        metrics::add(&self.metrics.requests_received_from_peers_total, 1);
        let Ok(Decoded::Frame {
            header, payload, ..
        }) = decode_request(&bytes, usize::MAX)
        else {
            unreachable!("a forwarded frame was decoded whole by its origin")
        };
        let Route::Local { class, id } = self.route_rpc(&header) else {
            unreachable!("requests are forwarded to the owner of their object")
        };
        let target = ReplyTarget::RpcRemote {
            from,
            token,
            request_id: header.request_id,
        };
        let (gate, deferred) = self.run_rpc(class, id, &header, &bytes[payload], target);
        self.mesh.recycle(bytes);
        if !deferred {
            let mut reply = self.mesh.buffer();
            reply.extend_from_slice(&self.rpc_reply);
            self.deliver_gated(
                gate,
                Delivery::Mesh {
                    to: from,
                    msg: MeshMsg::RpcReply {
                        token,
                        bytes: reply,
                    },
                },
            );
        }
    }

    /// Delivers a forwarded RPC's response to its connection.
    pub(super) fn on_rpc_reply(&mut self, token: u64, bytes: Vec<u8>) {
        let token = Token(token);
        let (index, generation) = (token.index(), token.generation());
        let Some(mut conn) = self.conns.take(index, generation) else {
            self.mesh.recycle(bytes);
            return;
        };
        conn.rpc_in_flight -= 1;
        conn.output().extend_from_slice(&bytes);
        self.mesh.recycle(bytes);
        // The connection may have stopped reading at the in-flight limit.
        self.process_rpc(index, &mut conn);
        self.conns.put_back(index, conn);
        self.dirty.push(index);
    }
}

/// The shard a connection's port belongs to: this shard's own port says
/// so, the shared port says nothing.
fn conn_shard_index(conn: &Conn, shard: u32) -> Option<u32> {
    conn.on_shard_port.then_some(shard)
}
