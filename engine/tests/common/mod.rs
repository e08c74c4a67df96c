//! What the tests of an embedded server share: options for a server on an
//! ephemeral loopback port, and a one-shot HTTP GET.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use durin::server::ServerOptions;

/// How long a one-shot request may take to be answered.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(20);

/// A server of `shards` shards on 127.0.0.1 (ephemeral ports), its data in
/// `data_dir`, with binary RPC on an ephemeral port if `rpc`.
pub fn loopback_options(data_dir: &Path, shards: usize, rpc: bool) -> ServerOptions {
    ServerOptions {
        listen: "127.0.0.1:0".parse().expect("addr"),
        rpc_listen: rpc.then(|| "127.0.0.1:0".parse().expect("addr")),
        rpc_shard_base_port: 0,
        data_dir: data_dir.to_path_buf(),
        shards,
        cpus: None,
        partitions: None,
    }
}

/// `GET path` on a connection of its own (`Connection: close`): the status
/// and the body.
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(ANSWER_TIMEOUT))
        .expect("timeout");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut text = String::new();
    stream.read_to_string(&mut text).expect("read");
    let status = text[9..12].parse().expect("a status");
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}
