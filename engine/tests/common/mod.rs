//! What the tests of an embedded server share: a server on an ephemeral
//! loopback port that stops before its data directory goes, and a one-shot
//! HTTP GET.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use durin::config::Config;
use durin::server::{RunningServer, ServerBuilder, ServerOptions};

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

/// A running embedded server and its temporary data directory. Dropping it
/// stops the server and waits for its shards before the directory is
/// removed: a shard whose data directory vanishes stops the whole process,
/// which would take every other test of the binary with it.
pub struct Embedded {
    server: Option<RunningServer>,
    _dir: tempfile::TempDir,
}

impl std::ops::Deref for Embedded {
    type Target = RunningServer;

    fn deref(&self) -> &RunningServer {
        self.server.as_ref().expect("running until dropped")
    }
}

impl Drop for Embedded {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.stop();
            server.wait();
        }
    }
}

/// Starts `builder` with `shards` shards on loopback (binary RPC too if
/// `rpc`) and a fresh temporary data directory.
pub fn start_embedded(
    builder: ServerBuilder,
    shards: usize,
    rpc: bool,
    config: Config,
) -> Embedded {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = builder
        .start(loopback_options(dir.path(), shards, rpc), config)
        .expect("start");
    Embedded {
        server: Some(server),
        _dir: dir,
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
