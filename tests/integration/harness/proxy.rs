//! A TCP proxy on loopback that a test puts between two processes to
//! simulate the network between them failing: [`Proxy::partition`] makes
//! it silent (bytes in either direction are dropped and connections stay
//! open, as when packets are lost), [`Proxy::reset`] closes every
//! connection it carries, and [`Proxy::heal`] lets traffic through again.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

const PASS: u8 = 0;
const SILENT: u8 = 1;

struct Shared {
    upstream: SocketAddr,
    mode: AtomicU8,
    stop: AtomicBool,
    /// Both ends of every connection, to close them on reset.
    open: Mutex<Vec<TcpStream>>,
}

pub struct Proxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

impl Proxy {
    /// Listens on an ephemeral loopback port and forwards to `upstream`.
    pub fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("the proxy binds");
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            upstream,
            mode: AtomicU8::new(PASS),
            stop: AtomicBool::new(false),
            open: Mutex::new(Vec::new()),
        });
        let accepting = Arc::clone(&shared);
        thread::spawn(move || accept_loop(listener, accepting));
        Proxy { addr, shared }
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Drops every byte from now on, both ways, keeping connections open.
    pub fn partition(&self) {
        self.shared.mode.store(SILENT, Ordering::SeqCst);
    }

    /// Closes every connection the proxy carries now.
    pub fn reset(&self) {
        for stream in self.shared.open.lock().unwrap().drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }

    /// Forwards again (connections silenced meanwhile may have lost bytes:
    /// a test that heals usually resets too).
    pub fn heal(&self) {
        self.shared.mode.store(PASS, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.reset();
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    while !shared.stop.load(Ordering::SeqCst) {
        let client = match listener.accept() {
            Ok((client, _)) => client,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                thread::sleep(Duration::from_millis(5));
                continue;
            }
            Err(_) => return,
        };
        client.set_nonblocking(false).unwrap();
        let Ok(server) = TcpStream::connect(shared.upstream) else {
            continue;
        };
        {
            let mut open = shared.open.lock().unwrap();
            open.push(client.try_clone().unwrap());
            open.push(server.try_clone().unwrap());
        }
        for (from, to) in [
            (client.try_clone().unwrap(), server.try_clone().unwrap()),
            (server, client),
        ] {
            let shared = Arc::clone(&shared);
            thread::spawn(move || pump(from, to, &shared));
        }
    }
}

/// Copies `from` to `to` while the proxy passes traffic, and drops what
/// it reads while it is silent.
fn pump(mut from: TcpStream, mut to: TcpStream, shared: &Shared) {
    from.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let mut buf = [0u8; 16 * 1024];
    loop {
        if shared.stop.load(Ordering::SeqCst) {
            break;
        }
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
            Err(_) => break,
        };
        if shared.mode.load(Ordering::SeqCst) == SILENT {
            continue;
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An echo server on loopback.
    fn echo() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        thread::spawn(move || {
            for mut stream in listener.incoming().flatten() {
                thread::spawn(move || {
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = stream.read(&mut buf) {
                        if n == 0 || stream.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                });
            }
        });
        addr
    }

    fn round_trip(stream: &mut TcpStream, bytes: &[u8]) -> std::io::Result<Vec<u8>> {
        stream.write_all(bytes)?;
        let mut got = vec![0u8; bytes.len()];
        stream.read_exact(&mut got)?;
        Ok(got)
    }

    #[test]
    fn the_proxy_passes_goes_silent_resets_and_heals() {
        let proxy = Proxy::start(echo());
        let mut conn = TcpStream::connect(proxy.addr()).unwrap();
        conn.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        assert_eq!(round_trip(&mut conn, b"hello").unwrap(), b"hello");

        proxy.partition();
        assert!(
            round_trip(&mut conn, b"lost").is_err(),
            "nothing comes back through a partition"
        );

        proxy.reset();
        let mut buf = [0u8; 8];
        assert!(
            matches!(conn.read(&mut buf), Ok(0) | Err(_)),
            "a reset closes the connection"
        );

        proxy.heal();
        let mut again = TcpStream::connect(proxy.addr()).unwrap();
        again
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        assert_eq!(round_trip(&mut again, b"back").unwrap(), b"back");
    }
}
