//! Memory per idle WebSocket: opens N chat sockets against a running durin,
//! lets them go quiet (their rooms hibernate), and reports how much the
//! server's resident memory grew per connection.
//!
//! ```text
//! ws_idle --addr 127.0.0.1:8080 --pid $(pidof durin) --connections 100000 \
//!     --room-size 10 --settle-secs 15
//! ```
//!
//! Connections are opened from 127.0.0.2, 127.0.0.3, ... (at most 20,000
//! per source address, since one address has about 28,000 ephemeral ports),
//! with plain blocking sockets: the point is the server's memory, not the
//! client's speed. The server must allow that many connections per shard
//! (`connections_max_per_shard`) and both processes enough descriptors.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpStream};
use std::os::fd::FromRawFd;
use std::time::{Duration, Instant};

use clap::Parser;

/// Connections per source address.
const PER_SOURCE_MAX: usize = 20_000;

#[derive(Parser)]
struct Args {
    /// The server's HTTP address.
    #[arg(long)]
    addr: SocketAddrV4,
    /// The server's process ID, to read its resident memory.
    #[arg(long)]
    pid: u32,
    #[arg(long, default_value_t = 10_000)]
    connections: usize,
    /// Sockets per chat room.
    #[arg(long, default_value_t = 10)]
    room_size: usize,
    /// Seconds to wait once all are open (rooms hibernate after 10 s by
    /// default).
    #[arg(long, default_value_t = 15)]
    settle_secs: u64,
}

fn main() {
    let args = Args::parse();
    raise_fd_limit();
    let before = rss_kib(args.pid);
    let started = Instant::now();
    let mut sockets = Vec::with_capacity(args.connections);
    for i in 0..args.connections {
        let source = Ipv4Addr::new(127, 0, 0, 2 + (i / PER_SOURCE_MAX) as u8);
        let room = i / args.room_size;
        let path = format!("/chat/idle-{room}/websocket?name=c{i}");
        let stream = connect_from(source, args.addr)
            .unwrap_or_else(|e| panic!("connection {i} from {source}: {e}"));
        sockets.push(upgrade(stream, &path).unwrap_or_else(|e| panic!("upgrade {i}: {e}")));
        if (i + 1) % 10_000 == 0 {
            eprintln!(
                "{} open after {:.1} s",
                i + 1,
                started.elapsed().as_secs_f64()
            );
        }
    }
    let opened_secs = started.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_secs(args.settle_secs));
    let after = rss_kib(args.pid);
    let alive = sockets.iter().filter(|s| still_open(s)).count();
    let per_conn = (after.saturating_sub(before) as f64 * 1024.0) / args.connections as f64;
    println!(
        "{{\"connections\": {}, \"still_open\": {}, \"open_secs\": {:.1}, \"rss_before_kib\": {}, \"rss_after_kib\": {}, \"bytes_per_connection\": {:.0}}}",
        args.connections, alive, opened_secs, before, after, per_conn
    );
}

/// A TCP connection to `to` from `source` (any port).
fn connect_from(source: Ipv4Addr, to: SocketAddrV4) -> std::io::Result<TcpStream> {
    // SAFETY: plain socket calls on a descriptor this function owns until
    // it is wrapped in a TcpStream (or closed on error by that stream).
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let stream = TcpStream::from_raw_fd(fd);
        let bind = sockaddr(SocketAddrV4::new(source, 0));
        let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        if libc::bind(fd, (&bind as *const libc::sockaddr_in).cast(), len) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let dest = sockaddr(to);
        if libc::connect(fd, (&dest as *const libc::sockaddr_in).cast(), len) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(stream)
    }
}

fn sockaddr(addr: SocketAddrV4) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: addr.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*addr.ip()).to_be(),
        },
        sin_zero: [0; 8],
    }
}

/// Sends the upgrade request and reads the `101` head.
fn upgrade(mut stream: TcpStream, path: &str) -> Result<TcpStream, String> {
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let mut reader = BufReader::new(stream.try_clone().map_err(|e| e.to_string())?);
    let mut line = String::new();
    reader.read_line(&mut line).map_err(|e| e.to_string())?;
    if !line.starts_with("HTTP/1.1 101") {
        return Err(format!("answered {line:?}"));
    }
    loop {
        line.clear();
        reader.read_line(&mut line).map_err(|e| e.to_string())?;
        if line == "\r\n" {
            break;
        }
    }
    // Join messages may follow; they stay unread in the kernel's buffers.
    Ok(stream)
}

fn still_open(stream: &TcpStream) -> bool {
    let mut buf = [0u8; 1];
    stream.set_nonblocking(true).ok();
    // Data (unread joins) or would-block: open. Zero: closed by the server.
    let mut s = stream;
    !matches!(s.read(&mut buf), Ok(0))
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("the server runs");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

fn raise_fd_limit() {
    // SAFETY: getrlimit/setrlimit on a local struct.
    unsafe {
        let mut limit: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}
