//! IDs beyond names: `POST /{class}/new` hands out a unique ID, and
//! `/{class}/id:{hex}/...` addresses an object by ID.

use crate::harness::Server;

fn new_id(server: &Server) -> String {
    let response = server.connect().post("/counter/new", b"");
    assert_eq!(response.status, 200, "{}", response.text());
    let text = response.text();
    let id = text
        .split('"')
        .nth(3)
        .unwrap_or_else(|| panic!("no id in {text}"))
        .to_string();
    assert_eq!(id.len(), 32, "{text}");
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{text}");
    id
}

#[test]
fn a_unique_id_addresses_its_own_object() {
    let server = Server::start(2);
    let (a, b) = (new_id(&server), new_id(&server));
    assert_ne!(a, b);
    let mut conn = server.connect();
    for expected in 1..=3 {
        let response = conn.post(&format!("/counter/id:{a}/increment"), b"");
        assert_eq!(response.text(), format!("{{\"value\": {expected}}}"));
    }
    assert_eq!(
        conn.get(&format!("/counter/id:{a}")).text(),
        "{\"value\": 3}"
    );
    assert_eq!(
        conn.get(&format!("/counter/id:{b}")).text(),
        "{\"value\": 0}"
    );
    // Upper-case hex names the same object.
    assert_eq!(
        conn.get(&format!("/counter/id:{}", a.to_uppercase()))
            .text(),
        "{\"value\": 3}"
    );
    // Reading `new` is the counter named "new", not a new ID.
    assert_eq!(conn.get("/counter/new").text(), "{\"value\": 0}");
}

#[test]
fn a_malformed_id_is_400() {
    let server = Server::start(1);
    let mut conn = server.connect();
    for bad in [
        "id:",
        "id:abc",
        "id:zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz",
        "id:0123456789abcdef0123456789abcdef0",
    ] {
        let response = conn.get(&format!("/counter/{bad}"));
        assert_eq!(response.status, 400, "{bad}: {}", response.text());
    }
}
