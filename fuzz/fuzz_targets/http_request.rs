//! The HTTP request parser on arbitrary bytes. Properties: it never
//! panics; a complete request lies within the buffer; no proper prefix of
//! a complete request parses as complete (so a request split across
//! receives is never served early); and a parsed request, written out
//! again, parses to the same request.
#![no_main]

use durin_net::http::{parse_request, Limits, Parsed, HEADERS_MAX};
use libfuzzer_sys::fuzz_target;

fn limits() -> Limits {
    Limits {
        header_bytes_max: 4096,
        body_bytes_max: 4096,
    }
}

/// (method, target, headers, body, keep_alive, len)
type Seen = (String, String, Vec<(String, Vec<u8>)>, Vec<u8>, bool, usize);

fn parse(buf: &[u8]) -> Option<Result<Seen, ()>> {
    let mut headers = [httparse::EMPTY_HEADER; HEADERS_MAX];
    match parse_request(buf, &mut headers, &limits()) {
        Ok(Parsed::Complete(r)) => {
            let target = match r.query {
                Some(q) => format!("{}?{}", r.path, q),
                None => r.path.to_string(),
            };
            let headers = r
                .headers
                .iter()
                .map(|h| (h.name.to_string(), h.value.to_vec()))
                .collect();
            Some(Ok((
                r.method.to_string(),
                target,
                headers,
                r.body.to_vec(),
                r.keep_alive,
                r.len,
            )))
        }
        Ok(Parsed::Partial | Parsed::AwaitingBody { .. }) => None,
        Err(_) => Some(Err(())),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some(Ok(seen)) = parse(data) else {
        return;
    };
    let (method, target, headers, body, keep_alive, len) = seen.clone();
    assert!(len <= data.len());
    assert!(body.len() <= len);
    for cut in [len / 2, len.saturating_sub(1)] {
        if cut < len {
            assert!(
                !matches!(parse(&data[..cut]), Some(Ok(_))),
                "a prefix of {cut} of a {len}-byte request parsed as complete"
            );
        }
    }
    // Written out again (HTTP/1.1 or 1.0 as its keep-alive implies for
    // headers that do not say), it parses the same.
    // The request line, after the empty lines a parser skips before it.
    let start = data[..len]
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(0);
    let line_end = data[start..len]
        .iter()
        .position(|&b| b == b'\n')
        .map_or(len, |end| start + end);
    // The version ends the line (a target may contain "HTTP/1.0" too).
    let line = &data[start..line_end];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let version_minor = if line.ends_with(b"HTTP/1.0") { 0 } else { 1 };
    let mut again = format!("{method} {target} HTTP/1.{version_minor}\r\n").into_bytes();
    for (name, value) in &headers {
        again.extend_from_slice(name.as_bytes());
        again.extend_from_slice(b": ");
        again.extend_from_slice(value);
        again.extend_from_slice(b"\r\n");
    }
    again.extend_from_slice(b"\r\n");
    again.extend_from_slice(&body);
    if again.len() > limits().header_bytes_max + body.len() {
        return;
    }
    if let Some(Ok(reparsed)) = parse(&again) {
        assert_eq!((reparsed.0, reparsed.1, reparsed.3), (method, target, body));
        assert_eq!(reparsed.4, keep_alive);
    }
});
