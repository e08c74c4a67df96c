//! durin RPC as a worker speaks it: the hello when a connection opens,
//! request frames stamped out per key, response frames matched by ID.
//!
//! Encoding reuses one request header per worker: per request only its ID
//! and object name change, and the frame is serialized straight into the
//! connection's send buffer. rkyv's serializer keeps its scratch arena per
//! thread, so after the first request nothing is allocated.

use durin_proto::rpc::builtin::{self, RateLimitDecision};
use durin_proto::rpc::{
    self, status, Decoded, ObjectRef, RequestHeader, ServerHello, PROTOCOL_VERSION,
};

use super::recv::RecvBuf;
use super::table::InFlightTable;
use crate::keys::{write_key, KeySampler};
use crate::protocol::{Answer, InFlight, Protocol, Session};
use crate::stats::{Failure, StatusKind};

/// The largest response frame accepted (its `frame_len`), as durin's own
/// default limit; a larger one fails the connection.
pub const RESPONSE_FRAME_BYTES_MAX: usize = rpc::FRAME_BYTES_MAX_DEFAULT;

/// What a shard's own port must say about itself in its hello.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExpectedShard {
    pub shard: u32,
    pub shards: u32,
    pub partitions: u32,
}

impl ExpectedShard {
    fn matches(&self, hello: &ServerHello) -> bool {
        hello.shard_index == Some(self.shard)
            && hello.shards == self.shards
            && hello.partitions == self.partitions
    }
}

/// One class and method called with one payload, on one object per key.
#[derive(Debug, Clone)]
pub struct Rpc {
    /// Reused per request: only the ID and the object's name change.
    header: RequestHeader,
    payload: Vec<u8>,
    /// Decode `ratelimit.check` answers to count denials.
    decode_decisions: bool,
    /// What target `i`'s hello must say, when it is a shard's own port.
    expected: Vec<Option<ExpectedShard>>,
    /// Bytes of one request for a short key, to size buffers.
    request_bytes: usize,
    /// A refusal's reason is shown once per worker, not once per attempt.
    refusal_reported: bool,
}

impl Rpc {
    /// Calls `class.method(payload)`; `expected[i]` is what target `i`'s
    /// hello must say (`None`: anything accepted).
    pub fn new(
        class: &str,
        method: &str,
        payload: Vec<u8>,
        expected: Vec<Option<ExpectedShard>>,
    ) -> Rpc {
        let header = RequestHeader {
            request_id: u64::MAX,
            class: class.to_string(),
            object: ObjectRef::Name(b"k0000000000".to_vec()),
            method: method.to_string(),
        };
        let mut sample = Vec::new();
        rpc::encode_request(&mut sample, &header, &payload);
        Rpc {
            header,
            payload,
            decode_decisions: class == builtin::RATELIMIT_CLASS
                && method == builtin::RATELIMIT_CHECK,
            expected,
            request_bytes: sample.len(),
            refusal_reported: false,
        }
    }

    /// The hello at the front of the session's buffer: `Ok(true)` once it
    /// is in and accepted.
    fn read_hello(&mut self, session: &mut RpcSession) -> Result<bool, Failure> {
        let decoded = rpc::decode_server_hello(session.recv.unparsed());
        let Some((hello, used)) = decoded.map_err(|_| Failure::Protocol)? else {
            session.recv.make_room(HELLO_BYTES_MAX)?;
            return Ok(false);
        };
        session.recv.consume(used);
        if !hello.accepted {
            if !self.refusal_reported {
                self.refusal_reported = true;
                eprintln!(
                    "loadgen: the server refused the RPC handshake: {}",
                    hello.reason
                );
            }
            return Err(Failure::Refused);
        }
        if session
            .expected
            .is_some_and(|expected| !expected.matches(&hello))
        {
            // The port is not the shard it was taken for: every request
            // would cross cores, which the run claims not to measure.
            return Err(Failure::Protocol);
        }
        session.hello_sent_ns = None;
        Ok(true)
    }
}

/// The largest server hello: its fixed part and a reason of `u16::MAX` bytes.
const HELLO_BYTES_MAX: usize = rpc::SERVER_HELLO_FIXED_BYTES + u16::MAX as usize;

/// One RPC connection's state.
#[derive(Debug)]
pub struct RpcSession {
    recv: RecvBuf,
    table: InFlightTable,
    /// The server's hello is in and accepted.
    ready: bool,
    /// When the client's hello was written, while its answer is awaited.
    hello_sent_ns: Option<u64>,
    expected: Option<ExpectedShard>,
}

impl Session for RpcSession {
    fn ready(&self) -> bool {
        self.ready
    }

    fn in_flight_count(&self) -> usize {
        self.table.len()
    }

    fn timed_out(&mut self, now_ns: u64, timeout_ns: u64) -> bool {
        match self.hello_sent_ns {
            Some(sent_ns) => now_ns.saturating_sub(sent_ns) >= timeout_ns,
            None => self.table.timed_out(now_ns, timeout_ns),
        }
    }

    fn abandon_in_flight(&mut self) -> u64 {
        self.table.clear()
    }

    fn recv_window(&mut self) -> &mut [u8] {
        self.recv.window()
    }

    fn on_received(&mut self, n: usize) {
        self.recv.on_received(n);
    }

    fn mid_response(&self) -> bool {
        !self.recv.unparsed().is_empty()
    }

    fn reset(&mut self) {
        self.recv.reset();
        self.table.clear();
        self.ready = false;
        self.hello_sent_ns = None;
    }
}

impl Protocol for Rpc {
    type Session = RpcSession;

    fn status_kind(&self) -> StatusKind {
        StatusKind::Rpc
    }

    fn request_bytes(&self) -> usize {
        self.request_bytes
    }

    fn session(&self, target: usize, in_flight_max: usize) -> RpcSession {
        RpcSession {
            recv: RecvBuf::new(),
            table: InFlightTable::new(in_flight_max),
            ready: false,
            hello_sent_ns: None,
            expected: self.expected[target],
        }
    }

    fn on_open(&mut self, session: &mut RpcSession, out: &mut Vec<u8>, now_ns: u64) {
        out.extend_from_slice(&rpc::encode_client_hello(PROTOCOL_VERSION));
        session.hello_sent_ns = Some(now_ns);
    }

    fn write_request(
        &mut self,
        session: &mut RpcSession,
        keys: &mut KeySampler,
        request: InFlight,
        out: &mut Vec<u8>,
    ) {
        assert!(session.ready, "requests follow the handshake");
        self.header.request_id = session.table.insert(request);
        let ObjectRef::Name(name) = &mut self.header.object else {
            unreachable!("the header is built with a name and keeps it");
        };
        name.clear();
        write_key(keys.next_index(), name);
        rpc::encode_request(out, &self.header, &self.payload);
    }

    fn next_answer(&mut self, session: &mut RpcSession) -> Result<Option<Answer>, Failure> {
        if !session.ready {
            if !self.read_hello(session)? {
                return Ok(None);
            }
            session.ready = true;
        }
        let unparsed = session.recv.unparsed();
        let decoded = rpc::decode_response(unparsed, RESPONSE_FRAME_BYTES_MAX);
        let (header, payload, len) = match decoded.map_err(|_| Failure::Protocol)? {
            Decoded::Frame {
                header,
                payload,
                len,
            } => (header, payload, len),
            Decoded::Incomplete => {
                session.recv.make_room(RESPONSE_FRAME_BYTES_MAX + 4)?;
                return Ok(None);
            }
        };
        // An ID that names no request in flight (0 included: an error of
        // the whole connection) puts the stream out of step.
        let request = session
            .table
            .take(header.request_id)
            .ok_or(Failure::Protocol)?;
        let denied = if self.decode_decisions && header.status == status::OK {
            let decision =
                RateLimitDecision::decode(&unparsed[payload]).ok_or(Failure::Protocol)?;
            !decision.allowed
        } else {
            false
        };
        session.recv.consume(len);
        Ok(Some(Answer {
            status: header.status,
            request,
            close: false,
            denied,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::KeyDist;
    use durin_proto::rpc::{encode_response, encode_server_hello, ResponseHeader};

    fn accepted(shard_index: Option<u32>) -> Vec<u8> {
        let hello = ServerHello {
            accepted: true,
            version: PROTOCOL_VERSION,
            shards: 2,
            partitions: 2,
            shard_index,
            shard_base_port: Some(7071),
            reason: String::new(),
        };
        let mut wire = Vec::new();
        encode_server_hello(&hello, &mut wire);
        wire
    }

    fn response(request_id: u64, status: u16, payload: &[u8]) -> Vec<u8> {
        let header = ResponseHeader {
            request_id,
            status,
            message: String::new(),
        };
        let mut wire = Vec::new();
        encode_response(&mut wire, &header, payload);
        wire
    }

    fn decision(allowed: bool) -> Vec<u8> {
        let mut out = Vec::new();
        RateLimitDecision {
            allowed,
            limit: 10,
            remaining: 9,
            reset_after_ms: 1000,
            retry_after_ms: 0,
        }
        .encode(&mut out);
        out
    }

    fn feed(session: &mut RpcSession, bytes: &[u8]) {
        session.recv_window()[..bytes.len()].copy_from_slice(bytes);
        session.on_received(bytes.len());
    }

    /// A ratelimit.check protocol with an open, handshaken session and the
    /// IDs of `n` requests written on it.
    fn handshaken(n: u64) -> (Rpc, RpcSession, Vec<u64>) {
        let mut rpc = Rpc::new(
            "ratelimit",
            "check",
            1u64.to_le_bytes().to_vec(),
            vec![None],
        );
        let mut session = rpc.session(0, 8);
        let mut out = Vec::new();
        rpc.on_open(&mut session, &mut out, 0);
        assert_eq!(out, rpc::encode_client_hello(PROTOCOL_VERSION));
        assert!(!session.ready());
        feed(&mut session, &accepted(None));
        assert_eq!(rpc.next_answer(&mut session), Ok(None));
        assert!(session.ready());
        let mut keys = KeySampler::new(&KeyDist::Uniform { keys: 100 }, 1, 0);
        let mut ids = Vec::new();
        for n in 0..n {
            out.clear();
            let request = InFlight {
                origin_ns: n,
                written_ns: n,
            };
            rpc.write_request(&mut session, &mut keys, request, &mut out);
            let Decoded::Frame { header, .. } = rpc::decode_request(&out, usize::MAX).unwrap()
            else {
                panic!("a whole frame was written");
            };
            assert_eq!(header.class, "ratelimit");
            assert!(matches!(&header.object, ObjectRef::Name(name) if name.starts_with(b"k")));
            ids.push(header.request_id);
        }
        (rpc, session, ids)
    }

    #[test]
    fn matches_responses_by_id_in_any_order() {
        let (mut rpc, mut session, ids) = handshaken(3);
        let wire = [
            response(ids[2], status::OK, &decision(true)),
            response(ids[0], status::OK, &decision(false)),
            response(ids[1], status::BAD_ARGUMENT, b""),
        ]
        .concat();
        // Split at every byte: frames and answers come out the same.
        for split in 1..wire.len() {
            let (mut rpc2, mut session2, ids2) = handshaken(3);
            assert_eq!(ids2, ids);
            feed(&mut session2, &wire[..split]);
            let mut answers = Vec::new();
            while let Some(answer) = rpc2.next_answer(&mut session2).unwrap() {
                answers.push(answer);
            }
            feed(&mut session2, &wire[split..]);
            while let Some(answer) = rpc2.next_answer(&mut session2).unwrap() {
                answers.push(answer);
            }
            let got: Vec<(u64, u16, bool)> = answers
                .iter()
                .map(|a| (a.request.origin_ns, a.status, a.denied))
                .collect();
            assert_eq!(
                got,
                [
                    (2, 0, false),
                    (0, 0, true),
                    (1, status::BAD_ARGUMENT, false)
                ],
                "split at {split}"
            );
            assert_eq!(session2.in_flight_count(), 0);
            assert!(!session2.mid_response());
        }
        feed(&mut session, &wire);
        assert_eq!(
            rpc.next_answer(&mut session)
                .unwrap()
                .unwrap()
                .request
                .origin_ns,
            2
        );
    }

    #[test]
    fn stray_and_repeated_ids_break_the_stream() {
        let (mut rpc, mut session, ids) = handshaken(2);
        feed(&mut session, &response(ids[0], status::OK, &decision(true)));
        assert!(rpc.next_answer(&mut session).unwrap().is_some());
        feed(&mut session, &response(ids[0], status::OK, &decision(true)));
        assert_eq!(rpc.next_answer(&mut session), Err(Failure::Protocol));

        let (mut rpc, mut session, _) = handshaken(1);
        feed(&mut session, &response(0, status::FRAME_TOO_LARGE, b""));
        assert_eq!(rpc.next_answer(&mut session), Err(Failure::Protocol));
    }

    #[test]
    fn a_malformed_decision_or_frame_is_a_protocol_error() {
        let (mut rpc, mut session, ids) = handshaken(1);
        feed(&mut session, &response(ids[0], status::OK, b"short"));
        assert_eq!(rpc.next_answer(&mut session), Err(Failure::Protocol));

        let (mut rpc, mut session, _) = handshaken(1);
        let mut huge = Vec::new();
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        feed(&mut session, &huge);
        assert_eq!(rpc.next_answer(&mut session), Err(Failure::Protocol));
    }

    #[test]
    fn refusals_and_wrong_shards_fail_the_handshake() {
        let mut rpc = Rpc::new("counter", "get", Vec::new(), vec![None]);
        rpc.refusal_reported = true; // keep the test's stderr quiet
        let mut session = rpc.session(0, 1);
        rpc.on_open(&mut session, &mut Vec::new(), 5);
        let refused = ServerHello {
            accepted: false,
            version: PROTOCOL_VERSION,
            shards: 1,
            partitions: 1,
            shard_index: None,
            shard_base_port: None,
            reason: "version 1 is not supported".into(),
        };
        let mut wire = Vec::new();
        encode_server_hello(&refused, &mut wire);
        feed(&mut session, &wire);
        assert_eq!(rpc.next_answer(&mut session), Err(Failure::Refused));

        let expected = ExpectedShard {
            shard: 1,
            shards: 2,
            partitions: 2,
        };
        let mut rpc = Rpc::new("counter", "get", Vec::new(), vec![Some(expected)]);
        let mut session = rpc.session(0, 1);
        rpc.on_open(&mut session, &mut Vec::new(), 5);
        assert!(session.timed_out(105, 100), "an unanswered hello times out");
        feed(&mut session, &accepted(Some(0)));
        assert_eq!(rpc.next_answer(&mut session), Err(Failure::Protocol));
        session.reset();
        rpc.on_open(&mut session, &mut Vec::new(), 5);
        feed(&mut session, &accepted(Some(1)));
        assert_eq!(rpc.next_answer(&mut session), Ok(None));
        assert!(session.ready());
        assert!(!session.timed_out(u64::MAX, 100));
    }

    #[test]
    fn other_methods_are_not_decoded_as_decisions() {
        let mut rpc = Rpc::new("counter", "increment", Vec::new(), vec![None]);
        let mut session = rpc.session(0, 1);
        rpc.on_open(&mut session, &mut Vec::new(), 0);
        feed(&mut session, &accepted(None));
        assert_eq!(rpc.next_answer(&mut session), Ok(None));
        let mut out = Vec::new();
        let mut keys = KeySampler::new(&KeyDist::Hot, 1, 0);
        let request = InFlight {
            origin_ns: 0,
            written_ns: 0,
        };
        rpc.write_request(&mut session, &mut keys, request, &mut out);
        let Decoded::Frame {
            header, payload, ..
        } = rpc::decode_request(&out, usize::MAX).unwrap()
        else {
            panic!("a whole frame");
        };
        assert_eq!(header.object, ObjectRef::Name(b"hot".to_vec()));
        assert!(out[payload].is_empty());
        feed(
            &mut session,
            &response(header.request_id, status::OK, &7u64.to_le_bytes()),
        );
        let answer = rpc.next_answer(&mut session).unwrap().unwrap();
        assert!(!answer.denied);
    }
}
