use proptest::prelude::*;

use super::*;
use crate::rpc::{status, FRAME_BYTES_MAX_DEFAULT};

fn request(object: ObjectRef) -> RequestHeader {
    RequestHeader {
        request_id: 0x0102_0304_0506_0708,
        class: "kv".into(),
        object,
        method: "put".into(),
    }
}

fn response() -> ResponseHeader {
    ResponseHeader {
        request_id: 42,
        status: status::BAD_ARGUMENT,
        message: "key too long".into(),
    }
}

fn expect_frame<T: std::fmt::Debug>(
    decoded: Result<Decoded<T>, ProtoError>,
) -> (T, Range<usize>, usize) {
    match decoded {
        Ok(Decoded::Frame {
            header,
            payload,
            len,
        }) => (header, payload, len),
        other => panic!("expected a frame, got {other:?}"),
    }
}

#[test]
fn requests_round_trip() {
    for object in [
        ObjectRef::Name(b"user:1".to_vec()),
        ObjectRef::Id([0xab; 16]),
        ObjectRef::Name(vec![]),
    ] {
        for payload in [&b""[..], b"value bytes", &[7u8; 3000][..]] {
            let header = request(object.clone());
            let mut wire = vec![0xee; 3]; // Frames append: earlier bytes stay.
            encode_request(&mut wire, &header, payload);
            assert_eq!(&wire[..3], &[0xee; 3]);
            let (decoded, range, len) =
                expect_frame(decode_request(&wire[3..], FRAME_BYTES_MAX_DEFAULT));
            assert_eq!(decoded, header);
            assert_eq!(&wire[3..][range], payload);
            assert_eq!(len, wire.len() - 3);
        }
    }
}

#[test]
fn responses_round_trip_back_to_back() {
    let mut wire = Vec::new();
    encode_response(&mut wire, &response(), b"first");
    let first_len = wire.len();
    let ok = ResponseHeader {
        request_id: 43,
        status: status::OK,
        message: String::new(),
    };
    encode_response(&mut wire, &ok, b"");
    let (header, range, len) = expect_frame(decode_response(&wire, FRAME_BYTES_MAX_DEFAULT));
    assert_eq!((header, &wire[range]), (response(), &b"first"[..]));
    assert_eq!(len, first_len);
    let (header, range, len) = expect_frame(decode_response(&wire[len..], FRAME_BYTES_MAX_DEFAULT));
    assert_eq!((header, range.len()), (ok, 0));
    assert_eq!(len, wire.len() - first_len);
}

#[test]
fn every_truncation_is_incomplete() {
    let mut wire = Vec::new();
    encode_request(
        &mut wire,
        &request(ObjectRef::Name(b"n".to_vec())),
        b"payload",
    );
    for cut in 0..wire.len() {
        assert_eq!(
            decode_request(&wire[..cut], FRAME_BYTES_MAX_DEFAULT),
            Ok(Decoded::Incomplete),
            "cut at {cut}"
        );
    }
    let mut wire = Vec::new();
    encode_response(&mut wire, &response(), b"payload");
    for cut in 0..wire.len() {
        assert_eq!(
            decode_response(&wire[..cut], FRAME_BYTES_MAX_DEFAULT),
            Ok(Decoded::Incomplete),
            "cut at {cut}"
        );
    }
}

#[test]
fn oversized_frames_are_refused_from_the_length_alone() {
    let max = 1000;
    let len_only = 1001u32.to_le_bytes();
    assert_eq!(
        decode_request(&len_only, max),
        Err(ProtoError::FrameTooLarge { len: 1001, max })
    );
    assert_eq!(
        decode_response(&u32::MAX.to_le_bytes(), max),
        Err(ProtoError::FrameTooLarge {
            len: u32::MAX as usize,
            max
        })
    );
    // A frame of exactly the maximum is fine.
    let mut wire = Vec::new();
    encode_request(&mut wire, &request(ObjectRef::Id([1; 16])), b"");
    let frame_len = wire.len() - 4;
    assert!(matches!(
        decode_request(&wire, frame_len),
        Ok(Decoded::Frame { .. })
    ));
    assert!(matches!(
        decode_request(&wire, frame_len - 1),
        Err(ProtoError::FrameTooLarge { .. })
    ));
}

#[test]
fn impossible_lengths_are_malformed() {
    // frame_len too short to hold header_len.
    assert!(matches!(
        decode_request(&3u32.to_le_bytes(), 100),
        Err(ProtoError::Malformed(_))
    ));
    // header_len beyond the frame, caught before the body arrives.
    let mut wire = 10u32.to_le_bytes().to_vec();
    wire.extend_from_slice(&7u32.to_le_bytes());
    assert!(matches!(
        decode_request(&wire, 100),
        Err(ProtoError::Malformed(_))
    ));
    // An empty header and one too short to hold either root.
    for header in [&b""[..], &[0xff; 5][..]] {
        let mut wire = ((4 + header.len()) as u32).to_le_bytes().to_vec();
        wire.extend_from_slice(&(header.len() as u32).to_le_bytes());
        wire.extend_from_slice(header);
        assert!(matches!(
            decode_request(&wire, 100),
            Err(ProtoError::Malformed(_))
        ));
        assert!(matches!(
            decode_response(&wire, 100),
            Err(ProtoError::Malformed(_))
        ));
    }
    // A request header whose class is not UTF-8 fails validation.
    let mut wire = Vec::new();
    encode_request(&mut wire, &request(ObjectRef::Id([0; 16])), b"");
    let class_at = wire
        .windows(2)
        .position(|w| w == b"kv")
        .expect("the class is stored inline");
    wire[class_at] = 0xc0; // Never valid in UTF-8 (0xff would end an inline string).
    assert!(matches!(
        decode_request(&wire, 100),
        Err(ProtoError::Malformed(_))
    ));
}

/// Whatever `decode_*` returns for `buf`, it must describe `buf` truthfully.
fn check_decoded<T>(buf: &[u8], decoded: Result<Decoded<T>, ProtoError>) {
    if let Ok(Decoded::Frame { payload, len, .. }) = decoded {
        assert!(len <= buf.len());
        assert!(payload.start <= payload.end && payload.end == len);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_bytes_never_panic(buf in proptest::collection::vec(any::<u8>(), 0..256)) {
        check_decoded(&buf, decode_request(&buf, 200));
        check_decoded(&buf, decode_response(&buf, 200));
        let _ = crate::rpc::decode_client_hello(&buf);
        let _ = crate::rpc::decode_server_hello(&buf);
    }

    #[test]
    fn bit_flips_never_panic(
        name in proptest::collection::vec(any::<u8>(), 0..40),
        payload in proptest::collection::vec(any::<u8>(), 0..40),
        flips in proptest::collection::vec(any::<usize>(), 1..4),
    ) {
        let mut wire = Vec::new();
        encode_request(&mut wire, &request(ObjectRef::Name(name)), &payload);
        encode_response(&mut wire, &response(), &payload);
        for flip in flips {
            let bit = flip % (wire.len() * 8);
            wire[bit / 8] ^= 1 << (bit % 8);
        }
        check_decoded(&wire, decode_request(&wire, FRAME_BYTES_MAX_DEFAULT));
        check_decoded(&wire, decode_response(&wire, FRAME_BYTES_MAX_DEFAULT));
    }
}
