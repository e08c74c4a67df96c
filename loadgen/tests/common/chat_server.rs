//! A small chat server for loadgen's WebSocket tests, on tungstenite and a
//! thread per client, speaking the protocol durin's chat example speaks:
//!
//! - `GET /chat/<room>/websocket?name=<name>` upgrades;
//! - on join, `{"type":"join","name":N}` to every socket of the room, the
//!   new one included;
//! - a text T from N goes to every *other* socket of the room as
//!   `{"sender":N,"text":T,"timestamp":ms}`;
//! - on close, `{"type":"leave","name":N}` to the others.
//!
//! To exercise loadgen's frame reader it sends each join message in two
//! fragments and pings every client once it has joined.

use std::collections::HashMap;
use std::io::ErrorKind;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tungstenite::protocol::frame::coding::{Data, OpCode};
use tungstenite::protocol::frame::Frame;
use tungstenite::{Error, Message, WebSocket};

/// What the server counted, for the tests to check.
#[derive(Debug, Default)]
pub struct ServerCounts {
    pub joined: AtomicU64,
    /// Text messages received from clients.
    pub texts: AtomicU64,
    pub pongs: AtomicU64,
    /// Close frames received from clients.
    pub closes: AtomicU64,
    /// Connections that ended without a close frame.
    pub dropped: AtomicU64,
}

type Rooms = Arc<Mutex<HashMap<String, Vec<(u64, String, Sender<Out>)>>>>;

/// What one client's thread is asked to send.
enum Out {
    Text(String),
    /// A message in two fragments.
    Fragmented(String),
}

pub struct ChatServer {
    pub addr: SocketAddr,
    pub counts: Arc<ServerCounts>,
}

impl ChatServer {
    /// Listens on 127.0.0.1 at a free port; runs until the test ends.
    pub fn start() -> ChatServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
        let addr = listener.local_addr().expect("bound");
        let counts = Arc::new(ServerCounts::default());
        let rooms: Rooms = Arc::default();
        let server_counts = Arc::clone(&counts);
        thread::spawn(move || {
            for (id, stream) in listener.incoming().enumerate() {
                let Ok(stream) = stream else { continue };
                let (rooms, counts) = (Arc::clone(&rooms), Arc::clone(&server_counts));
                thread::spawn(move || serve(stream, id as u64, &rooms, &counts));
            }
        });
        ChatServer { addr, counts }
    }

    pub fn url(&self) -> String {
        format!("ws://{}/chat/{{room}}/websocket", self.addr)
    }
}

// tungstenite's handshake callback returns its error response by value.
#[allow(clippy::result_large_err)]
fn serve(stream: TcpStream, id: u64, rooms: &Rooms, counts: &ServerCounts) {
    let mut target = (String::new(), String::new());
    let callback = |request: &Request, response: Response| -> Result<Response, ErrorResponse> {
        let path = request.uri().path();
        let room = path
            .strip_prefix("/chat/")
            .and_then(|rest| rest.strip_suffix("/websocket"));
        let name = request
            .uri()
            .query()
            .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("name=")));
        match (room, name) {
            (Some(room), Some(name)) => {
                target = (room.to_string(), name.to_string());
                Ok(response)
            }
            _ => {
                let mut refusal = ErrorResponse::new(None);
                *refusal.status_mut() = tungstenite::http::StatusCode::NOT_FOUND;
                Err(refusal)
            }
        }
    };
    let Ok(mut socket) = tungstenite::accept_hdr(stream, callback) else {
        return;
    };
    let (room, name) = target;
    socket
        .get_ref()
        .set_read_timeout(Some(Duration::from_millis(1)))
        .expect("a read timeout");
    let (tx, rx) = channel();
    {
        let mut rooms = rooms.lock().unwrap();
        let members = rooms.entry(room.clone()).or_default();
        members.push((id, name.clone(), tx));
        let join = format!(r#"{{"type":"join","name":"{name}"}}"#);
        for (_, _, member) in members.iter() {
            let _ = member.send(Out::Fragmented(join.clone()));
        }
    }
    counts.joined.fetch_add(1, Ordering::Relaxed);
    let _ = socket.send(Message::Ping(b"hi".to_vec().into()));
    let clean = chat(&mut socket, &rx, &room, id, &name, rooms, counts);
    let mut rooms = rooms.lock().unwrap();
    let members = rooms
        .get_mut(&room)
        .expect("the room exists while it has members");
    members.retain(|(member, _, _)| *member != id);
    let leave = format!(r#"{{"type":"leave","name":"{name}"}}"#);
    for (_, _, member) in members.iter() {
        let _ = member.send(Out::Text(leave.clone()));
    }
    if !clean {
        counts.dropped.fetch_add(1, Ordering::Relaxed);
    }
}

/// Relays until the client leaves; true when it closed with a close frame.
fn chat(
    socket: &mut WebSocket<TcpStream>,
    outbox: &Receiver<Out>,
    room: &str,
    id: u64,
    name: &str,
    rooms: &Rooms,
    counts: &ServerCounts,
) -> bool {
    let mut closing = false;
    loop {
        while let Ok(out) = outbox.try_recv() {
            if closing {
                // Nothing may follow the close reply tungstenite queued.
                continue;
            }
            let sent = match out {
                Out::Text(text) => socket.write(Message::text(text)),
                Out::Fragmented(text) => {
                    let (head, tail) = text.split_at(text.len() / 2);
                    let first =
                        Frame::message(head.as_bytes().to_vec(), OpCode::Data(Data::Text), false);
                    let rest = Frame::message(
                        tail.as_bytes().to_vec(),
                        OpCode::Data(Data::Continue),
                        true,
                    );
                    socket
                        .write(Message::Frame(first))
                        .and_then(|()| socket.write(Message::Frame(rest)))
                }
            };
            if sent.is_err() {
                return closing;
            }
        }
        match socket.flush() {
            Ok(()) => {}
            Err(Error::Io(err)) if is_wait(err.kind()) => {}
            Err(_) => return closing,
        }
        match socket.read() {
            Ok(Message::Text(text)) => {
                counts.texts.fetch_add(1, Ordering::Relaxed);
                let ms = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis());
                let message = format!(
                    r#"{{"sender":"{name}","text":"{}","timestamp":{ms}}}"#,
                    escape(text.as_str())
                );
                let rooms = rooms.lock().unwrap();
                for (member, _, sender) in &rooms[room] {
                    if *member != id {
                        let _ = sender.send(Out::Text(message.clone()));
                    }
                }
            }
            Ok(Message::Pong(_)) => {
                counts.pongs.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Message::Close(_)) => {
                counts.closes.fetch_add(1, Ordering::Relaxed);
                closing = true;
            }
            Ok(_) => {}
            Err(Error::Io(err)) if is_wait(err.kind()) => {}
            Err(Error::ConnectionClosed) => return closing,
            Err(_) => return closing,
        }
    }
}

fn is_wait(kind: ErrorKind) -> bool {
    matches!(kind, ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

fn escape(text: &str) -> String {
    text.replace('\\', "\\\\").replace('"', "\\\"")
}
