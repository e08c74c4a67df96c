//! Request bytes, formatted once and stamped out per request.
//!
//! Everything but the key is fixed for a run, so the request is kept as
//! ready-made byte strings around the key's positions: the request line up
//! to the first `{key}`, the path between keys, and the rest of the request
//! line with every header and the body. Writing one request is a few
//! `memcpy`s plus the key's digits into the connection's send buffer, which
//! keeps its capacity: nothing is allocated per request.
//!
//! ```
//! use loadgen::{keys::{KeyDist, KeySampler}, request::{RequestSpec, RequestTemplate}};
//! use loadgen::target::Target;
//! let target = Target::parse("http://127.0.0.1:8080/ratelimit/{key}").unwrap();
//! let template = RequestTemplate::new(&target, &RequestSpec::default()).unwrap();
//! let mut keys = KeySampler::new(&KeyDist::Hot, 1, 0);
//! let mut out = Vec::new();
//! template.write(&mut keys, &mut out);
//! assert_eq!(out, b"GET /ratelimit/hot HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n");
//! ```

use crate::keys::{write_decimal, KeySampler};
use crate::target::Target;

/// Largest request the template may produce (headers and body together);
/// a bigger one is a mistake on the command line, not a load test.
pub const REQUEST_BYTES_MAX: usize = 1024 * 1024;

/// What the user asked to send, apart from the URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestSpec {
    pub method: String,
    /// Extra headers, each `Name: value`.
    pub headers: Vec<String>,
    pub body: Vec<u8>,
}

impl Default for RequestSpec {
    fn default() -> Self {
        RequestSpec {
            method: "GET".into(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }
}

/// The fixed parts of every request; see the module documentation.
#[derive(Debug, Clone)]
pub struct RequestTemplate {
    /// `METHOD <path up to the first key>`, or the whole request when the
    /// path has no key.
    head: Vec<u8>,
    /// The path between consecutive keys.
    middles: Vec<Vec<u8>>,
    /// The rest of the path, ` HTTP/1.1`, the headers and the body.
    tail: Vec<u8>,
    /// Whether the response will carry no body whatever its headers say.
    head_only: bool,
}

impl RequestTemplate {
    pub fn new(target: &Target, spec: &RequestSpec) -> Result<RequestTemplate, String> {
        let method = &spec.method;
        if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(format!(
                "`{method}` is not an HTTP method (upper-case letters, e.g. GET or POST)"
            ));
        }
        let mut head = format!("{method} {}", target.path_parts[0]).into_bytes();
        let last = target.path_parts.len() - 1;
        let middles = target.path_parts[1..last.max(1)]
            .iter()
            .map(|part| part.clone().into_bytes())
            .collect();
        let mut tail = Vec::new();
        if last > 0 {
            tail.extend_from_slice(target.path_parts[last].as_bytes());
        }
        tail.extend_from_slice(b" HTTP/1.1\r\nHost: ");
        tail.extend_from_slice(target.authority.as_bytes());
        tail.extend_from_slice(b"\r\n");
        let mut has_length = false;
        for header in &spec.headers {
            let (name, _) = header
                .split_once(':')
                .ok_or_else(|| format!("header `{header}` needs the form `Name: value`"))?;
            let name = name.trim();
            if name.is_empty() || !name.bytes().all(is_token_byte) {
                return Err(format!("header `{header}` has no valid name"));
            }
            if header.bytes().any(|b| b == b'\r' || b == b'\n') {
                return Err(format!("header `{header}` must be one line"));
            }
            if name.eq_ignore_ascii_case("host") {
                return Err("the Host header comes from the URL".into());
            }
            if name.eq_ignore_ascii_case("content-length") {
                return Err("Content-Length is set from --body".into());
            }
            if name.eq_ignore_ascii_case("transfer-encoding") {
                return Err("Transfer-Encoding is not supported; --body sends a sized body".into());
            }
            tail.extend_from_slice(header.as_bytes());
            tail.extend_from_slice(b"\r\n");
        }
        // A body, or a method that normally carries one, gets its length;
        // a GET without a body gets no header, as browsers and wrk do.
        if !spec.body.is_empty() || matches!(method.as_str(), "POST" | "PUT" | "PATCH") {
            tail.extend_from_slice(b"Content-Length: ");
            write_decimal(spec.body.len() as u64, &mut tail);
            tail.extend_from_slice(b"\r\n");
            has_length = true;
        }
        tail.extend_from_slice(b"\r\n");
        if has_length {
            tail.extend_from_slice(&spec.body);
        }
        if last == 0 {
            head.append(&mut tail);
        }
        let template = RequestTemplate {
            head,
            middles,
            tail,
            head_only: method == "HEAD",
        };
        if template.fixed_bytes() > REQUEST_BYTES_MAX {
            return Err(format!(
                "a request would be {} bytes, more than the {REQUEST_BYTES_MAX} allowed",
                template.fixed_bytes()
            ));
        }
        Ok(template)
    }

    /// Appends one request to `out`, drawing a key per `{key}` in the path.
    /// Every `{key}` of one request gets its own draw.
    pub fn write(&self, keys: &mut KeySampler, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.head);
        if self.has_key() {
            keys.write_next(out);
            for middle in &self.middles {
                out.extend_from_slice(middle);
                keys.write_next(out);
            }
            out.extend_from_slice(&self.tail);
        }
    }

    /// Whether responses to this request have no body (a `HEAD`).
    pub fn head_only(&self) -> bool {
        self.head_only
    }

    /// Bytes of one request apart from its keys.
    pub fn fixed_bytes(&self) -> usize {
        self.head.len() + self.middles.iter().map(Vec::len).sum::<usize>() + self.tail.len()
    }

    fn has_key(&self) -> bool {
        // Without a key the whole request was folded into `head`.
        !self.tail.is_empty()
    }
}

/// A byte allowed in a header name (RFC 9110 `tchar`).
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::KeyDist;

    fn template(url: &str, spec: &RequestSpec) -> Result<RequestTemplate, String> {
        RequestTemplate::new(&Target::parse(url).unwrap(), spec)
    }

    fn one(template: &RequestTemplate, dist: &KeyDist) -> String {
        let mut keys = KeySampler::new(dist, 3, 0);
        let mut out = Vec::new();
        template.write(&mut keys, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn fills_each_key_and_keeps_the_rest() {
        let t = template(
            "http://localhost:9/a/{key}/b/{key}?q=1",
            &RequestSpec::default(),
        )
        .unwrap();
        let request = one(&t, &KeyDist::Uniform { keys: 1 });
        assert_eq!(
            request,
            "GET /a/k0/b/k0?q=1 HTTP/1.1\r\nHost: localhost:9\r\n\r\n"
        );
    }

    #[test]
    fn a_path_without_a_key_is_one_fixed_request() {
        let t = template("http://127.0.0.1:1/", &RequestSpec::default()).unwrap();
        assert_eq!(
            one(&t, &KeyDist::Hot),
            "GET / HTTP/1.1\r\nHost: 127.0.0.1:1\r\n\r\n"
        );
        assert_eq!(t.fixed_bytes(), one(&t, &KeyDist::Hot).len());
    }

    #[test]
    fn posts_carry_their_body_and_headers() {
        let spec = RequestSpec {
            method: "POST".into(),
            headers: vec!["X-Test: yes".into()],
            body: b"{\"n\":1}".to_vec(),
        };
        let t = template("http://127.0.0.1:1/counter/{key}/increment", &spec).unwrap();
        assert_eq!(
            one(&t, &KeyDist::Hot),
            "POST /counter/hot/increment HTTP/1.1\r\nHost: 127.0.0.1:1\r\nX-Test: yes\r\n\
             Content-Length: 7\r\n\r\n{\"n\":1}"
        );
        let empty = RequestSpec {
            method: "POST".into(),
            ..RequestSpec::default()
        };
        let t = template("http://127.0.0.1:1/x", &empty).unwrap();
        assert!(one(&t, &KeyDist::Hot).ends_with("Content-Length: 0\r\n\r\n"));
    }

    #[test]
    fn refuses_bad_methods_and_headers() {
        let url = "http://127.0.0.1:1/";
        for method in ["", "get", "G ET", "GET\r\n"] {
            let spec = RequestSpec {
                method: method.into(),
                ..RequestSpec::default()
            };
            assert!(template(url, &spec).is_err(), "method `{method}`");
        }
        for header in [
            "NoColon",
            ": empty",
            "Bad Name: x",
            "Host: other",
            "content-length: 3",
            "Transfer-Encoding: chunked",
            "X: a\r\nY: b",
        ] {
            let spec = RequestSpec {
                headers: vec![header.into()],
                ..RequestSpec::default()
            };
            assert!(template(url, &spec).is_err(), "header `{header}`");
        }
        let huge = RequestSpec {
            method: "POST".into(),
            body: vec![b'x'; REQUEST_BYTES_MAX],
            ..RequestSpec::default()
        };
        assert!(template(url, &huge).is_err());
    }
}
