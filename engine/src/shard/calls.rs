//! Calls between objects, and responses given later.
//!
//! An object calls another with [`Context::call`](crate::object::Context::call)
//! and goes on: the call is an RPC frame sent to the callee's shard (or
//! queued on this one), and its reply comes back as a later `call_reply`
//! event for the caller. Nothing waits, so a chain A → B → A cannot
//! deadlock: A's second event simply runs when B's call arrives.
//!
//! A handler that cannot answer at once (because it called someone)
//! defers its response; the shard remembers where the response must go —
//! a connection here, a forwarding shard, or a caller object — and sends it
//! when the object gives it. Everything an event sends, calls included,
//! leaves only once the event's writes are durable (the output gate).

use std::collections::VecDeque;

use durin_net::http::{write_response, ResponseHead};
use durin_proto::rpc::{
    self, decode_request, decode_response, encode_request, status, Decoded, RequestHeader,
};
use durin_storage::Seq;

use super::objects::Outcome;
use super::routing::Route;
use super::Shard;
use crate::mesh::MeshMsg;
use crate::metrics;
use crate::object::{CallError, CallId, DeferredReply, Response};
use crate::ObjectId;

/// How often overdue calls are looked for (or the call timeout, if
/// shorter).
pub(super) const CALL_SWEEP_INTERVAL_MS: u64 = 1_000;

/// A call whose reply has not come back.
pub(super) struct PendingCall {
    pub class: u16,
    pub caller: ObjectId,
    /// On the shard's monotonic clock.
    pub overdue_at_ms: u64,
}

/// Where a deferred response goes once the object gives it.
#[derive(Debug, Clone, Copy)]
pub(super) enum ReplyTarget {
    /// An HTTP connection of this shard, waiting with its pipeline paused.
    HttpLocal { token: u64, keep_alive: bool },
    /// An HTTP request another shard forwarded.
    HttpRemote {
        from: u32,
        token: u64,
        keep_alive: bool,
    },
    /// An RPC connection of this shard.
    RpcLocal { token: u64, request_id: u64 },
    /// An RPC request another shard forwarded.
    RpcRemote {
        from: u32,
        token: u64,
        request_id: u64,
    },
    /// A call from another object.
    Call {
        shard: u32,
        class: u16,
        caller: ObjectId,
        call: u64,
    },
}

/// Something to send once it may leave.
pub(super) enum Delivery {
    Mesh { to: u32, msg: MeshMsg },
    HttpLocal { token: u64, bytes: Vec<u8> },
    RpcLocal { token: u64, bytes: Vec<u8> },
    Local(LocalWork),
}

/// Work for this shard's own objects, done on the next loop turn (never
/// inside another object's event).
pub(super) enum LocalWork {
    /// A call frame for an object this shard owns, from `caller`.
    Call {
        shard: u32,
        class: u16,
        caller: ObjectId,
        frame: Vec<u8>,
    },
    /// The reply frame to a call `caller` made.
    CallReply {
        class: u16,
        caller: ObjectId,
        frame: Vec<u8>,
    },
    /// A late response for an HTTP connection of this shard.
    HttpReply { token: u64, bytes: Vec<u8> },
    /// A late response frame for an RPC connection of this shard.
    RpcReply { token: u64, bytes: Vec<u8> },
}

impl Shard {
    /// Sends `delivery` now, or once `gate` is durable.
    pub(super) fn deliver_gated(&mut self, gate: Option<Seq>, delivery: Delivery) {
        match gate {
            Some(seq) if seq > self.store.durable_seq() => self.held.push_back((seq, delivery)),
            _ => self.deliver(delivery),
        }
    }

    pub(super) fn deliver(&mut self, delivery: Delivery) {
        match delivery {
            Delivery::Mesh { to, msg } => self.mesh.send(to, msg),
            // A connection of this shard may be in the middle of being
            // served right now: its reply waits for the next turn.
            Delivery::HttpLocal { token, bytes } => self
                .local_work
                .push_back(LocalWork::HttpReply { token, bytes }),
            Delivery::RpcLocal { token, bytes } => self
                .local_work
                .push_back(LocalWork::RpcReply { token, bytes }),
            Delivery::Local(work) => self.local_work.push_back(work),
        }
    }

    /// Does what every event needs afterwards, whatever started it: counts
    /// a construction or a panic, schedules the alarm it set, and sends
    /// the calls it made and the deferred responses it gave.
    pub(super) fn after_event<R>(&mut self, class: u16, caller: ObjectId, outcome: &Outcome<R>) {
        if outcome.created {
            metrics::add(&self.metrics.objects_created_total, 1);
        }
        if outcome.result.is_none() {
            metrics::add(&self.metrics.handler_panics_total, 1);
        }
        if let Some(at_ms) = outcome.alarm_set {
            self.schedule_alarm(class, caller, at_ms);
        }
        self.send_effects(class, caller, outcome.gate);
    }

    /// Sends the calls an event made and the deferred responses it gave,
    /// behind its output gate.
    fn send_effects(&mut self, class: u16, caller: ObjectId, gate: Option<Seq>) {
        self.queue_ws_effects(gate);
        let calls = std::mem::take(&mut self.effects.calls);
        for call in &calls {
            self.objects.wait_more(&caller, 1);
            metrics::add(&self.metrics.calls_made_total, 1);
            // The shard's clock counts whole milliseconds, so the call may
            // have left up to one before `mono_ms` says: the extra one keeps
            // a call from failing before its full timeout has passed.
            let pending = PendingCall {
                class,
                caller,
                overdue_at_ms: self.mono_ms + self.server.call_timeout_ms + 1,
            };
            self.pending_calls.insert(call.call.0, pending);
            let header = RequestHeader {
                request_id: call.call.0,
                class: call.class.clone(),
                object: call.object.clone(),
                method: call.method.clone(),
            };
            let mut frame = self.mesh.buffer();
            encode_request(&mut frame, &header, &call.payload);
            // Routed like an RPC request from a client, with the same
            // checks (an unknown class, a name over the limit).
            let delivery = match self.route_rpc(&header) {
                Route::Local { .. } => Delivery::Local(LocalWork::Call {
                    shard: self.index,
                    class,
                    caller,
                    frame,
                }),
                Route::Remote { owner } => Delivery::Mesh {
                    to: owner,
                    msg: MeshMsg::Call {
                        from: self.index,
                        class,
                        caller,
                        frame,
                    },
                },
                Route::Error { status, message } => {
                    frame.clear();
                    let response = rpc::ResponseHeader {
                        request_id: call.call.0,
                        status,
                        message,
                    };
                    rpc::encode_response(&mut frame, &response, b"");
                    Delivery::Local(LocalWork::CallReply {
                        class,
                        caller,
                        frame,
                    })
                }
            };
            self.deliver_gated(gate, delivery);
        }
        self.effects.calls = calls;
        self.effects.calls.clear();
        let responses = std::mem::take(&mut self.effects.responses);
        for (id, reply) in responses {
            let Some((owner, target)) = self.deferred.remove(&id) else {
                log::warn!(
                    "shard {}: object {caller} answered a deferred response twice",
                    self.index
                );
                continue;
            };
            self.objects.wait_more(&owner, -1);
            let delivery = self.reply_delivery(target, reply);
            self.deliver_gated(gate, delivery);
        }
    }

    /// Remembers where the response an event deferred must go.
    pub(super) fn register_deferred(&mut self, object: ObjectId, target: ReplyTarget) -> bool {
        let Some(id) = self.effects.deferred.take() else {
            return false;
        };
        self.objects.wait_more(&object, 1);
        self.deferred.insert(id, (object, target));
        true
    }

    /// Serializes a late response for its target.
    fn reply_delivery(&mut self, target: ReplyTarget, reply: DeferredReply) -> Delivery {
        let http = |reply: DeferredReply, keep_alive: bool| {
            let response = match reply {
                DeferredReply::Http(response) => response,
                DeferredReply::Rpc(_) => {
                    let mut response = Response::default();
                    response.text(500, "the object answered an HTTP request with an RPC reply");
                    response
                }
            };
            let mut bytes = Vec::new();
            let head = ResponseHead {
                status: response.status,
                content_type: response.content_type,
                header_lines: &response.header_lines,
                keep_alive,
            };
            write_response(&mut bytes, &head, &response.body);
            bytes
        };
        let rpc_frame = |reply: DeferredReply, request_id: u64| {
            let (status, message, payload) = match reply {
                DeferredReply::Rpc(Ok(payload)) => (status::OK, String::new(), payload),
                DeferredReply::Rpc(Err((status, message))) => (status, message, Vec::new()),
                DeferredReply::Http(_) => (
                    status::INTERNAL,
                    "the object answered an RPC with an HTTP response".into(),
                    Vec::new(),
                ),
            };
            let mut bytes = Vec::new();
            rpc::encode_response(
                &mut bytes,
                &rpc::ResponseHeader {
                    request_id,
                    status,
                    message,
                },
                &payload,
            );
            bytes
        };
        match target {
            ReplyTarget::HttpLocal { token, keep_alive } => Delivery::HttpLocal {
                token,
                bytes: http(reply, keep_alive),
            },
            ReplyTarget::HttpRemote {
                from,
                token,
                keep_alive,
            } => Delivery::Mesh {
                to: from,
                msg: MeshMsg::HttpReply {
                    token,
                    bytes: http(reply, keep_alive),
                },
            },
            ReplyTarget::RpcLocal { token, request_id } => Delivery::RpcLocal {
                token,
                bytes: rpc_frame(reply, request_id),
            },
            ReplyTarget::RpcRemote {
                from,
                token,
                request_id,
            } => Delivery::Mesh {
                to: from,
                msg: MeshMsg::RpcReply {
                    token,
                    bytes: rpc_frame(reply, request_id),
                },
            },
            ReplyTarget::Call {
                shard,
                class,
                caller,
                call,
            } => {
                let frame = rpc_frame(reply, call);
                self.call_reply_delivery(shard, class, caller, frame)
            }
        }
    }

    fn call_reply_delivery(
        &self,
        shard: u32,
        class: u16,
        caller: ObjectId,
        frame: Vec<u8>,
    ) -> Delivery {
        if shard == self.index {
            Delivery::Local(LocalWork::CallReply {
                class,
                caller,
                frame,
            })
        } else {
            Delivery::Mesh {
                to: shard,
                msg: MeshMsg::CallReply {
                    class,
                    caller,
                    frame,
                },
            }
        }
    }

    /// Serves a call from another object: this shard owns the callee.
    pub(super) fn serve_call(&mut self, shard: u32, class: u16, caller: ObjectId, frame: Vec<u8>) {
        metrics::add(&self.metrics.calls_served_total, 1);
        let Ok(Decoded::Frame {
            header, payload, ..
        }) = decode_request(&frame, usize::MAX)
        else {
            unreachable!("call frames are encoded by the shard that sends them")
        };
        let Some((callee_class, _)) = self.registry.find(&header.class) else {
            unreachable!("calls are routed only to registered classes")
        };
        let callee = header.object.id(&header.class);
        let target = ReplyTarget::Call {
            shard,
            class,
            caller,
            call: header.request_id,
        };
        let (gate, deferred) = self.run_rpc(callee_class, callee, &header, &frame[payload], target);
        self.mesh.recycle(frame);
        if !deferred {
            let delivery = self.call_reply_delivery(shard, class, caller, self.rpc_reply.clone());
            self.deliver_gated(gate, delivery);
        }
    }

    /// Delivers a call's reply to its caller as a `call_reply` event.
    pub(super) fn on_call_reply(&mut self, class: u16, caller: ObjectId, frame: Vec<u8>) {
        let Ok(Decoded::Frame {
            header, payload, ..
        }) = decode_response(&frame, usize::MAX)
        else {
            unreachable!("reply frames are encoded by a shard")
        };
        if self.pending_calls.remove(&header.request_id).is_none() {
            // The call timed out and its caller was told so: too late.
            self.mesh.recycle(frame);
            return;
        }
        let reply = if header.status == status::OK {
            Ok(&frame[payload])
        } else {
            Err(CallError {
                status: header.status,
                message: header.message.clone(),
            })
        };
        self.deliver_call_reply(class, caller, CallId(header.request_id), reply);
        self.mesh.recycle(frame);
    }

    /// Fails every call whose reply is overdue: its caller gets a timeout
    /// error instead, and a reply arriving later is dropped. The scan is
    /// over calls in flight only, so memory and time follow what is
    /// outstanding, not the call rate.
    pub(super) fn sweep_calls(&mut self) {
        let now = self.mono_ms;
        let mut overdue: Vec<u64> = self
            .pending_calls
            .iter()
            .filter(|(_, p)| p.overdue_at_ms <= now)
            .map(|(&call, _)| call)
            .collect();
        overdue.sort_unstable();
        for call in overdue {
            let pending = self
                .pending_calls
                .remove(&call)
                .expect("collected from the map just now");
            metrics::add(&self.metrics.calls_timed_out_total, 1);
            let error = CallError {
                status: status::TIMEOUT,
                message: format!("no reply within {} ms", self.server.call_timeout_ms),
            };
            self.deliver_call_reply(pending.class, pending.caller, CallId(call), Err(error));
        }
        // A burst of calls or deferred responses grew these maps.
        crate::shrink::map_if_sparse(&mut self.pending_calls);
        crate::shrink::map_if_sparse(&mut self.deferred);
    }

    fn deliver_call_reply(
        &mut self,
        class: u16,
        caller: ObjectId,
        call: CallId,
        reply: Result<&[u8], CallError>,
    ) {
        self.objects.wait_more(&caller, -1);
        let outcome = self
            .objects
            .run(event_env!(self), class, caller, |object, ctx| {
                object.call_reply(call, reply, ctx)
            });
        // A call_reply has no response of its own to defer.
        self.effects.deferred = None;
        self.after_event(class, caller, &outcome);
    }

    /// Runs the work queued for this shard's own objects.
    /// Work queued while it runs waits for the next turn.
    pub(super) fn run_local_work(&mut self) {
        let mut work: VecDeque<LocalWork> = std::mem::take(&mut self.local_work);
        while let Some(item) = work.pop_front() {
            match item {
                LocalWork::Call {
                    shard,
                    class,
                    caller,
                    frame,
                } => self.serve_call(shard, class, caller, frame),
                LocalWork::CallReply {
                    class,
                    caller,
                    frame,
                } => self.on_call_reply(class, caller, frame),
                LocalWork::HttpReply { token, bytes } => self.on_reply(token, bytes),
                LocalWork::RpcReply { token, bytes } => self.on_rpc_reply(token, bytes),
            }
        }
    }
}
