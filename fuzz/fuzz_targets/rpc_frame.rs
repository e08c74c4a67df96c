//! Binary RPC on arbitrary bytes: client and server hellos, request and
//! response frames. Properties: nothing panics; a decoded frame lies
//! within the buffer; and a decoded header with its payload, encoded
//! again, decodes to the same.
#![no_main]

use durin_proto::rpc::{
    decode_client_hello, decode_request, decode_response, decode_server_hello, encode_request,
    encode_response, Decoded,
};
use libfuzzer_sys::fuzz_target;

const FRAME_BYTES_MAX: usize = 64 * 1024;

fuzz_target!(|data: &[u8]| {
    let _ = decode_client_hello(data);
    let _ = decode_server_hello(data);
    if let Ok(Decoded::Frame {
        header,
        payload,
        len,
    }) = decode_request(data, FRAME_BYTES_MAX)
    {
        assert!(len <= data.len() && payload.end <= len);
        assert_ne!(header.request_id, 0, "request ID 0 is refused");
        let mut again = Vec::new();
        encode_request(&mut again, &header, &data[payload.clone()]);
        match decode_request(&again, FRAME_BYTES_MAX) {
            Ok(Decoded::Frame { header: h, payload: p, .. }) => {
                assert_eq!(h, header);
                assert_eq!(&again[p], &data[payload]);
            }
            other => panic!("a re-encoded request decoded as {other:?}"),
        }
    }
    if let Ok(Decoded::Frame {
        header,
        payload,
        len,
    }) = decode_response(data, FRAME_BYTES_MAX)
    {
        assert!(len <= data.len() && payload.end <= len);
        let mut again = Vec::new();
        encode_response(&mut again, &header, &data[payload.clone()]);
        match decode_response(&again, FRAME_BYTES_MAX) {
            Ok(Decoded::Frame { header: h, payload: p, .. }) => {
                assert_eq!(h, header);
                assert_eq!(&again[p], &data[payload]);
            }
            other => panic!("a re-encoded response decoded as {other:?}"),
        }
    }
});
