//! The client against a fake server in threads: the handshake, routing,
//! pipelining with out-of-order answers, and every way a call can fail.

mod fake_server;

use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use durin_client::{
    Call, Client, ClientError, ClientOptions, ObjectId, ObjectRef, ProtoError, RateLimitDecision,
};
use durin_proto::rpc::{self, builtin, status, ResponseHeader, ServerHello};
use fake_server::{accepting, handshake, listener, serve, serve_connections, Requests};

fn name(text: &str) -> ObjectRef {
    ObjectRef::Name(text.as_bytes().to_vec())
}

/// Answers every request with its payload.
fn echo(_: &rpc::RequestHeader, payload: &[u8]) -> fake_server::Answer {
    (status::OK, "", payload.to_vec())
}

#[test]
fn a_call_round_trips_through_the_handshake() {
    let (listener, addr) = listener();
    serve(listener, accepting(4, 64), |header, payload| {
        let mut answer = format!("{}.{}:", header.class, header.method).into_bytes();
        if let ObjectRef::Name(name) = &header.object {
            answer.extend_from_slice(name);
        }
        answer.extend_from_slice(payload);
        (status::OK, "", answer)
    });
    let client = Client::connect(addr, ClientOptions::default()).unwrap();
    assert_eq!(client.server().shards, 4);
    assert_eq!(client.server().partitions, 64);
    assert!(
        !client.is_shard_aware(),
        "the server advertised no shard ports"
    );
    let answer = client
        .call("counter", &name("visits"), "get", b"+x")
        .unwrap();
    assert_eq!(answer, b"counter.get:visits+x");
}

#[test]
fn pipelined_responses_answered_in_reverse_are_matched_by_id() {
    let (listener, addr) = listener();
    serve_connections(listener, |_, stream| {
        let mut requests = Requests::new(stream);
        handshake(&mut requests.stream, &accepting(1, 1));
        // The first two requests are answered second first, always.
        let first = requests.next().unwrap();
        let second = requests.next().unwrap();
        for (header, payload) in [second, first] {
            requests.respond(header.request_id, status::OK, "", &payload);
        }
        // Later ones in reverse order of whatever arrived together.
        loop {
            let batch = requests.next_batch();
            if batch.is_empty() {
                return;
            }
            for (header, payload) in batch.into_iter().rev() {
                requests.respond(header.request_id, status::OK, "", &payload);
            }
        }
    });
    let options = ClientOptions {
        pipeline_depth_max: 100,
        ..ClientOptions::default()
    };
    let client = Client::connect(addr, options).unwrap();
    let object = name("o");
    for count in [2, 600] {
        let payloads: Vec<Vec<u8>> = (0..count).map(|i: u32| i.to_le_bytes().to_vec()).collect();
        let calls: Vec<Call> = payloads
            .iter()
            .map(|payload| Call {
                class: "c",
                object: &object,
                method: "m",
                payload,
            })
            .collect();
        let results = client.call_many(&calls);
        assert_eq!(results.len(), count as usize);
        for (result, payload) in results.into_iter().zip(&payloads) {
            assert_eq!(&result.unwrap(), payload);
        }
    }
}

#[test]
fn a_refused_version_is_a_typed_error_with_the_reason() {
    let (listener, addr) = listener();
    serve_connections(listener, |_, mut stream| {
        let refusal = ServerHello {
            accepted: false,
            reason: "protocol version 1 is not supported".into(),
            ..accepting(1, 1)
        };
        handshake(&mut stream, &refusal);
    });
    match Client::connect(addr, ClientOptions::default()) {
        Err(ClientError::Refused { reason }) => {
            assert_eq!(reason, "protocol version 1 is not supported")
        }
        other => panic!("expected a refusal, got {:?}", other.map(|_| ())),
    }
}

#[test]
fn a_peer_that_is_not_durin_is_a_protocol_error() {
    let (listener, addr) = listener();
    serve_connections(listener, |_, mut stream| {
        let _ = stream.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n");
    });
    match Client::connect(addr, ClientOptions::default()) {
        Err(ClientError::Protocol(ProtoError::BadMagic)) => {}
        other => panic!("expected bad magic, got {:?}", other.map(|_| ())),
    }
}

#[test]
fn a_silent_server_times_out_and_the_next_call_reconnects() {
    let (listener, addr) = listener();
    let accepted = serve_connections(listener, |n, stream| {
        let mut requests = Requests::new(stream);
        handshake(&mut requests.stream, &accepting(1, 1));
        while let Some((header, payload)) = requests.next() {
            if n == 0 {
                // Never answer on the first connection; hold it open.
                continue;
            }
            requests.respond(header.request_id, status::OK, "", &payload);
        }
    });
    let options = ClientOptions {
        timeout: Duration::from_millis(300),
        ..ClientOptions::default()
    };
    let client = Client::connect(addr, options).unwrap();
    let started = Instant::now();
    let error = client.call("c", &name("o"), "m", b"lost").unwrap_err();
    assert!(matches!(error, ClientError::Timeout), "{error:?}");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
    // The timed-out connection is closed; a new one serves the next call.
    assert_eq!(
        client.call("c", &name("o"), "m", b"found").unwrap(),
        b"found"
    );
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}

#[test]
fn a_response_to_no_request_in_flight_is_a_protocol_error() {
    let (listener, addr) = listener();
    serve_connections(listener, |_, stream| {
        let mut requests = Requests::new(stream);
        handshake(&mut requests.stream, &accepting(1, 1));
        while let Some((header, _)) = requests.next() {
            requests.respond(header.request_id + 1000, status::OK, "", b"");
        }
    });
    let client = Client::connect(addr, ClientOptions::default()).unwrap();
    let error = client.call("c", &name("o"), "m", b"").unwrap_err();
    assert!(
        matches!(error, ClientError::Protocol(ProtoError::Malformed(_))),
        "{error:?}"
    );
    let object = name("o");
    let calls = [Call {
        class: "c",
        object: &object,
        method: "m",
        payload: b"",
    }; 3];
    for result in client.call_many(&calls) {
        assert!(
            matches!(result, Err(ClientError::Protocol(ProtoError::Malformed(_)))),
            "{result:?}"
        );
    }
}

#[test]
fn a_connection_error_from_the_server_is_passed_on() {
    let (listener, addr) = listener();
    let accepted = serve_connections(listener, |_, stream| {
        let mut requests = Requests::new(stream);
        handshake(&mut requests.stream, &accepting(1, 1));
        if requests.next().is_some() {
            // As the real server does for a frame over its limit: ID 0,
            // then close.
            requests.respond(
                0,
                status::FRAME_TOO_LARGE,
                "a frame of 9 bytes exceeds 8",
                b"",
            );
        }
    });
    let client = Client::connect(addr, ClientOptions::default()).unwrap();
    let error = client.call("c", &name("o"), "m", b"").unwrap_err();
    assert!(
        matches!(
            error,
            ClientError::Server {
                status: status::FRAME_TOO_LARGE,
                ..
            }
        ),
        "{error:?}"
    );
    // The connection was dropped: the next call opens a new one.
    let _ = client.call("c", &name("o"), "m", b"");
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}

#[test]
fn a_server_closing_mid_frame_is_an_error() {
    let (listener, addr) = listener();
    serve_connections(listener, |_, stream| {
        let mut requests = Requests::new(stream);
        handshake(&mut requests.stream, &accepting(1, 1));
        let Some((header, _)) = requests.next() else {
            return;
        };
        let mut frame = Vec::new();
        let response = ResponseHeader {
            request_id: header.request_id,
            status: status::OK,
            message: String::new(),
        };
        rpc::encode_response(&mut frame, &response, b"a payload that never arrives whole");
        let _ = requests.stream.write_all(&frame[..frame.len() / 2]);
        // Dropping the stream closes the connection mid-frame.
    });
    let client = Client::connect(addr, ClientOptions::default()).unwrap();
    let error = client.call("c", &name("o"), "m", b"").unwrap_err();
    assert!(matches!(error, ClientError::Closed), "{error:?}");
}

#[test]
fn server_errors_carry_status_and_message_and_keep_the_connection() {
    let (listener, addr) = listener();
    let accepted = serve(listener, accepting(1, 1), |header, payload| {
        match header.method.as_str() {
            "frobnicate" => (
                status::UNKNOWN_METHOD,
                "counter has no method frobnicate",
                Vec::new(),
            ),
            _ => echo(header, payload),
        }
    });
    let client = Client::connect(addr, ClientOptions::default()).unwrap();
    let error = client
        .call("counter", &name("o"), "frobnicate", b"")
        .unwrap_err();
    match &error {
        ClientError::Server {
            status: code,
            message,
        } => {
            assert_eq!(*code, status::UNKNOWN_METHOD);
            assert_eq!(message, "counter has no method frobnicate");
        }
        other => panic!("expected a server error, got {other:?}"),
    }
    assert!(error.to_string().contains("unknown method"), "{error}");
    assert_eq!(
        client.call("counter", &name("o"), "get", b"ok").unwrap(),
        b"ok"
    );
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}

#[test]
fn an_oversized_request_is_refused_before_it_is_sent() {
    let (listener, addr) = listener();
    serve(listener, accepting(1, 1), echo);
    let options = ClientOptions {
        frame_bytes_max: 1024,
        ..ClientOptions::default()
    };
    let client = Client::connect(addr, options).unwrap();
    let big = vec![7u8; 2000];
    let error = client.call("c", &name("o"), "m", &big).unwrap_err();
    assert!(
        matches!(
            error,
            ClientError::RequestTooLarge {
                bytes: 2000,
                max: 1024
            }
        ),
        "{error:?}"
    );
    // Just under the limit by payload, over it with the header.
    let error = client.call("c", &name("o"), "m", &big[..1020]).unwrap_err();
    assert!(
        matches!(error, ClientError::RequestTooLarge { max: 1024, .. }),
        "{error:?}"
    );
    // In a batch, only the oversized call fails.
    let object = name("o");
    let calls = [
        Call {
            class: "c",
            object: &object,
            method: "m",
            payload: b"one",
        },
        Call {
            class: "c",
            object: &object,
            method: "m",
            payload: &big,
        },
        Call {
            class: "c",
            object: &object,
            method: "m",
            payload: b"three",
        },
    ];
    let results = client.call_many(&calls);
    assert_eq!(results[0].as_ref().unwrap(), b"one");
    assert!(matches!(
        results[1],
        Err(ClientError::RequestTooLarge { .. })
    ));
    assert_eq!(results[2].as_ref().unwrap(), b"three");
}

#[test]
fn requests_go_straight_to_the_owning_shard() {
    let shards = 3u16;
    let partitions = 16;
    let (listeners, base_port) = fake_server::consecutive_listeners(shards);
    for (shard, listener) in listeners.into_iter().enumerate() {
        let hello = ServerHello {
            shard_index: Some(shard as u32),
            shard_base_port: Some(base_port),
            ..accepting(shards.into(), partitions)
        };
        serve(listener, hello, move |_, _| {
            (status::OK, "", vec![shard as u8])
        });
    }
    let (shared, addr) = listener();
    let hello = ServerHello {
        shard_base_port: Some(base_port),
        ..accepting(shards.into(), partitions)
    };
    serve(shared, hello, |_, _| (status::OK, "", b"shared".to_vec()));

    let client = Client::connect(addr, ClientOptions::default()).unwrap();
    assert!(client.is_shard_aware());
    let mut objects: Vec<ObjectRef> = (0..60).map(|i| name(&format!("key-{i}"))).collect();
    objects.push(ObjectRef::from(ObjectId::new_unique()));
    for object in &objects {
        let owner = durin_proto::shard_of(&object.id("kv"), partitions, shards.into());
        assert_eq!(client.shard_of("kv", object), owner);
        assert_eq!(
            client.call("kv", object, "get", b"k").unwrap(),
            vec![owner as u8]
        );
    }
    let calls: Vec<Call> = objects
        .iter()
        .map(|object| Call {
            class: "kv",
            object,
            method: "get",
            payload: b"k",
        })
        .collect();
    for (result, object) in client.call_many(&calls).into_iter().zip(&objects) {
        assert_eq!(result.unwrap(), vec![client.shard_of("kv", object) as u8]);
    }

    let unaware = ClientOptions {
        shard_aware: false,
        ..ClientOptions::default()
    };
    let client = Client::connect(addr, unaware).unwrap();
    assert!(!client.is_shard_aware());
    assert_eq!(
        client.call("kv", &objects[0], "get", b"k").unwrap(),
        b"shared"
    );
}

#[test]
fn a_shard_port_serving_another_shard_is_a_protocol_error() {
    let (listeners, base_port) = fake_server::consecutive_listeners(1);
    let wrong = ServerHello {
        shard_index: Some(5),
        shard_base_port: Some(base_port),
        ..accepting(1, 1)
    };
    serve(listeners.into_iter().next().unwrap(), wrong, echo);
    let (shared, addr) = listener();
    serve(
        shared,
        ServerHello {
            shard_base_port: Some(base_port),
            ..accepting(1, 1)
        },
        echo,
    );
    let client = Client::connect(addr, ClientOptions::default()).unwrap();
    let error = client.call("kv", &name("o"), "get", b"").unwrap_err();
    assert!(
        matches!(error, ClientError::Protocol(ProtoError::Malformed(_))),
        "{error:?}"
    );
}

#[test]
fn typed_helpers_speak_the_builtin_payload_formats() {
    let (listener, addr) = listener();
    let counters: Mutex<HashMap<Vec<u8>, u64>> = Mutex::default();
    let kv: Mutex<HashMap<Vec<u8>, Vec<u8>>> = Mutex::default();
    serve(listener, accepting(1, 1), move |header, payload| {
        let ObjectRef::Name(object) = &header.object else {
            return (status::BAD_OBJECT, "names only", Vec::new());
        };
        let mut out = Vec::new();
        match (header.class.as_str(), header.method.as_str()) {
            ("ratelimit", "check") => {
                let cost = builtin::decode_ratelimit_cost(payload).unwrap();
                let decision = RateLimitDecision {
                    allowed: cost <= 10,
                    limit: 10,
                    remaining: 10 - cost.min(10),
                    reset_after_ms: 1000,
                    retry_after_ms: 0,
                };
                decision.encode(&mut out);
            }
            ("counter", method) => {
                let mut counters = counters.lock().unwrap();
                let value = counters.entry(object.clone()).or_default();
                if method == "increment" {
                    *value += 1;
                }
                builtin::encode_counter_value(*value, &mut out);
            }
            ("kv", "get") => {
                let key = [object.as_slice(), payload].concat();
                builtin::encode_kv_get_response(
                    kv.lock().unwrap().get(&key).map(Vec::as_slice),
                    &mut out,
                );
            }
            ("kv", "put") => {
                let (key, value) = builtin::decode_kv_put(payload).unwrap();
                kv.lock()
                    .unwrap()
                    .insert([object.as_slice(), key].concat(), value.to_vec());
            }
            ("kv", "delete") => {
                let key = [object.as_slice(), payload].concat();
                builtin::encode_kv_delete_response(
                    kv.lock().unwrap().remove(&key).is_some(),
                    &mut out,
                );
            }
            _ => return (status::UNKNOWN_CLASS, "no such class", Vec::new()),
        }
        (status::OK, "", out)
    });
    let client = Client::connect(addr, ClientOptions::default()).unwrap();

    let decision = client.ratelimit_check("api-key", 3).unwrap();
    assert!(decision.allowed);
    assert_eq!((decision.limit, decision.remaining), (10, 7));
    assert!(!client.ratelimit_check("api-key", 11).unwrap().allowed);

    assert_eq!(client.counter_get("visits").unwrap(), 0);
    assert_eq!(client.counter_increment("visits").unwrap(), 1);
    assert_eq!(client.counter_increment("visits").unwrap(), 2);
    assert_eq!(client.counter_get("visits").unwrap(), 2);

    let cart = name("cart");
    assert_eq!(client.kv_get(&cart, b"apples").unwrap(), None);
    client.kv_put(&cart, b"apples", b"3").unwrap();
    assert_eq!(
        client.kv_get(&cart, b"apples").unwrap(),
        Some(b"3".to_vec())
    );
    client.kv_put(&cart, b"empty", b"").unwrap();
    assert_eq!(client.kv_get(&cart, b"empty").unwrap(), Some(Vec::new()));
    assert!(client.kv_delete(&cart, b"apples").unwrap());
    assert!(!client.kv_delete(&cart, b"apples").unwrap());

    let error = client.kv_get(&ObjectRef::Id([1; 16]), b"k").unwrap_err();
    assert!(
        matches!(
            error,
            ClientError::Server {
                status: status::BAD_OBJECT,
                ..
            }
        ),
        "{error:?}"
    );
}

#[test]
fn a_wrong_payload_from_the_server_is_a_typed_error() {
    let (listener, addr) = listener();
    serve(listener, accepting(1, 1), |_, _| {
        (status::OK, "", vec![1, 2, 3])
    });
    let client = Client::connect(addr, ClientOptions::default()).unwrap();
    let error = client.counter_get("c").unwrap_err();
    assert!(
        matches!(error, ClientError::BadPayload("counter.get")),
        "{error:?}"
    );
}

#[test]
fn one_client_serves_many_threads() {
    let (listener, addr) = listener();
    let accepted = serve(listener, accepting(1, 1), echo);
    let options = ClientOptions {
        connections_per_shard: 2,
        ..ClientOptions::default()
    };
    let client = Arc::new(Client::connect(addr, options).unwrap());
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let client = Arc::clone(&client);
            thread::spawn(move || {
                for i in 0..100 {
                    let payload = format!("{t}:{i}").into_bytes();
                    assert_eq!(
                        client.call("c", &name("o"), "m", &payload).unwrap(),
                        payload
                    );
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    assert!(
        accepted.load(Ordering::SeqCst) <= 2,
        "at most two connections per port"
    );
}
