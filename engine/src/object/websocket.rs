//! WebSockets as an object sees them.
//!
//! An object takes a socket by calling [`Context::accept_websocket`] while
//! handling the upgrade request; the shard answers `101` for it. From then
//! on the socket belongs to the object: its messages arrive as
//! [`DurableObject::websocket_message`](super::DurableObject::websocket_message)
//! events, and the object sends with [`Context::send`]. The socket's tags
//! and attachment live beside the connection, not in the object, so an
//! object whose only activity is open sockets can leave memory
//! (hibernate): the next message rebuilds it from storage and its sockets
//! are all still there.
//!
//! ```
//! use durin::object::{Context, DurableObject, Message, Request, Response, WebSocket};
//!
//! /// Echoes every message to every socket of the object.
//! struct Echo;
//! impl DurableObject for Echo {
//!     fn fetch(&mut self, _req: &Request<'_>, res: &mut Response, ctx: &mut Context<'_>) {
//!         if ctx.accept_websocket(&["echo"]).is_err() {
//!             res.text(400, "Expected WebSocket");
//!         }
//!     }
//!     fn websocket_message(&mut self, _ws: WebSocket, msg: Message<'_>, ctx: &mut Context<'_>) {
//!         for socket in ctx.websockets(Some("echo")) {
//!             let _ = ctx.send(socket, msg);
//!         }
//!     }
//! }
//! ```

use durin_net::ws::close_code;

use super::Context;
use crate::id::IdMap;
use crate::ObjectId;

/// Most tags one socket may carry.
pub const TAGS_MAX: usize = 10;
/// Longest tag.
pub const TAG_BYTES_MAX: usize = 256;
/// Largest attachment of one socket.
pub const ATTACHMENT_BYTES_MAX: usize = 16 * 1024;
/// Longest auto-response request or response.
pub const AUTO_RESPONSE_BYTES_MAX: usize = 2048;

/// A WebSocket an object accepted. It stays valid while the socket is open,
/// across hibernation too; using it after the socket closed gives
/// [`WebSocketError::Closed`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WebSocket {
    pub(crate) index: u32,
    pub(crate) generation: u32,
}

/// A whole message, received or to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message<'a> {
    Text(&'a str),
    Binary(&'a [u8]),
}

/// Why a WebSocket operation was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum WebSocketError {
    /// The request being handled is not a valid WebSocket upgrade on this
    /// connection (or it was already accepted).
    NotAnUpgrade,
    TooManyTags {
        count: usize,
        max: usize,
    },
    TagTooLong {
        bytes: usize,
        max: usize,
    },
    AttachmentTooLarge {
        bytes: usize,
        max: usize,
    },
    AutoResponseTooLong {
        bytes: usize,
        max: usize,
    },
    /// Close codes an application may send: 1000, or 3000 to 4999.
    InvalidCloseCode(u16),
    /// The socket closed, or is closing.
    Closed,
}

impl std::fmt::Display for WebSocketError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WebSocketError::NotAnUpgrade => f.write_str("the request is not a WebSocket upgrade"),
            WebSocketError::TooManyTags { count, max } => {
                write!(f, "{count} tags, at most {max} allowed")
            }
            WebSocketError::TagTooLong { bytes, max } => {
                write!(f, "a tag of {bytes} bytes, at most {max} allowed")
            }
            WebSocketError::AttachmentTooLarge { bytes, max } => {
                write!(f, "an attachment of {bytes} bytes, at most {max} allowed")
            }
            WebSocketError::AutoResponseTooLong { bytes, max } => {
                write!(
                    f,
                    "an auto-response of {bytes} bytes, at most {max} allowed"
                )
            }
            WebSocketError::InvalidCloseCode(code) => write!(f, "close code {code} is not allowed"),
            WebSocketError::Closed => f.write_str("the WebSocket is closed"),
        }
    }
}

impl std::error::Error for WebSocketError {}

/// What an object sends on a socket, kept until the event's output may
/// leave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outgoing {
    Text,
    Binary,
    Close(u16),
}

/// One send or close an event asked for; its bytes are in
/// [`WsEffects::bytes`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct WsSend {
    pub ws: WebSocket,
    pub kind: Outgoing,
    pub start: usize,
    pub len: usize,
}

/// The sends and closes of one event, their bytes in one arena (a message
/// broadcast to many sockets is stored once).
#[derive(Default)]
pub(crate) struct WsEffects {
    pub sends: Vec<WsSend>,
    pub bytes: Vec<u8>,
}

impl WsEffects {
    pub(crate) fn clear(&mut self) {
        self.sends.clear();
        self.bytes.clear();
    }

    fn push(&mut self, ws: WebSocket, kind: Outgoing, payload: &[u8]) {
        let same_as_last = self
            .sends
            .last()
            .is_some_and(|s| &self.bytes[s.start..s.start + s.len] == payload);
        let start = if same_as_last {
            self.sends.last().expect("checked").start
        } else {
            self.bytes.extend_from_slice(payload);
            self.bytes.len() - payload.len()
        };
        self.sends.push(WsSend {
            ws,
            kind,
            start,
            len: payload.len(),
        });
    }
}

/// One accepted socket, as the shard keeps it (outliving its object's
/// time in memory).
pub(crate) struct SocketEntry {
    pub object: ObjectId,
    pub class: u16,
    pub conn_index: u32,
    pub conn_generation: u32,
    pub tags: Vec<Box<str>>,
    pub attachment: Vec<u8>,
    /// The object closed it: nothing more is sent or delivered.
    pub closing: bool,
}

/// A request and its automatic response, answered without waking the
/// object.
pub(crate) struct AutoResponse {
    pub request: Box<[u8]>,
    pub response: Box<[u8]>,
}

/// Every open socket of a shard, by slot and by object. The slot vectors
/// keep their length (a slot's generation must outlive its socket, so that
/// a stale handle never names a new one); they are bounded by the shard's
/// connection cap. The per-object maps shrink once mostly empty.
#[derive(Default)]
pub(crate) struct Sockets {
    slots: Vec<Option<SocketEntry>>,
    generations: Vec<u32>,
    free: Vec<u32>,
    by_object: IdMap<Vec<u32>>,
    auto: IdMap<AutoResponse>,
    open: usize,
}

impl Sockets {
    /// Open sockets.
    pub fn len(&self) -> usize {
        self.open
    }

    pub fn insert(&mut self, entry: SocketEntry) -> WebSocket {
        let object = entry.object;
        let index = match self.free.pop() {
            Some(i) => i,
            None => {
                self.slots.push(None);
                self.generations.push(0);
                (self.slots.len() - 1) as u32
            }
        };
        self.slots[index as usize] = Some(entry);
        self.by_object.entry(object).or_default().push(index);
        self.open += 1;
        WebSocket {
            index,
            generation: self.generations[index as usize],
        }
    }

    pub fn get(&self, ws: WebSocket) -> Option<&SocketEntry> {
        if *self.generations.get(ws.index as usize)? != ws.generation {
            return None;
        }
        self.slots[ws.index as usize].as_ref()
    }

    pub fn get_mut(&mut self, ws: WebSocket) -> Option<&mut SocketEntry> {
        if *self.generations.get(ws.index as usize)? != ws.generation {
            return None;
        }
        self.slots[ws.index as usize].as_mut()
    }

    /// Removes a socket; an object left without sockets forgets its
    /// auto-response too.
    pub fn remove(&mut self, ws: WebSocket) -> Option<SocketEntry> {
        self.get(ws)?;
        let entry = self.slots[ws.index as usize].take()?;
        self.generations[ws.index as usize] = self.generations[ws.index as usize].wrapping_add(1);
        self.free.push(ws.index);
        self.open -= 1;
        if let Some(list) = self.by_object.get_mut(&entry.object) {
            list.retain(|&i| i != ws.index);
            if list.is_empty() {
                self.by_object.remove(&entry.object);
                self.auto.remove(&entry.object);
                crate::shrink::map_if_sparse(&mut self.by_object);
                crate::shrink::map_if_sparse(&mut self.auto);
            }
        }
        Some(entry)
    }

    /// Whether `object` has open sockets.
    pub fn has_sockets(&self, object: &ObjectId) -> bool {
        self.by_object.contains_key(object)
    }

    /// The object's open sockets (those it is closing left out), with
    /// `tag` if given.
    pub fn of_object(&self, object: &ObjectId, tag: Option<&str>) -> Vec<WebSocket> {
        let Some(list) = self.by_object.get(object) else {
            return Vec::new();
        };
        list.iter()
            .filter_map(|&index| {
                let entry = self.slots[index as usize].as_ref()?;
                let tagged = tag.is_none_or(|t| entry.tags.iter().any(|x| &**x == t));
                (!entry.closing && tagged).then_some(WebSocket {
                    index,
                    generation: self.generations[index as usize],
                })
            })
            .collect()
    }

    /// The automatic response to `message` for `object`'s sockets, if set
    /// and matching.
    pub fn auto_response(&self, object: &ObjectId, message: &[u8]) -> Option<&[u8]> {
        self.auto
            .get(object)
            .filter(|a| &*a.request == message)
            .map(|a| &*a.response)
    }
}

/// The upgrade request an event is handling, if it is one that may be
/// accepted.
#[derive(Debug)]
pub(crate) struct Upgrade {
    pub conn_index: u32,
    pub conn_generation: u32,
    pub accepted: Option<WebSocket>,
}

/// What an event needs for WebSockets.
pub(crate) struct WsEnv<'s> {
    pub class: u16,
    pub sockets: &'s mut Sockets,
    pub upgrade: &'s mut Option<Upgrade>,
}

impl Context<'_> {
    /// Accepts the WebSocket the request being handled asks for, with up
    /// to [`TAGS_MAX`] tags of at most [`TAG_BYTES_MAX`] bytes. The shard
    /// answers `101` (the response the handler builds is not sent, and a
    /// response it defers is dropped); the socket is in
    /// [`websockets`](Self::websockets) at once.
    pub fn accept_websocket(&mut self, tags: &[&str]) -> Result<WebSocket, WebSocketError> {
        if tags.len() > TAGS_MAX {
            return Err(WebSocketError::TooManyTags {
                count: tags.len(),
                max: TAGS_MAX,
            });
        }
        if let Some(tag) = tags.iter().find(|t| t.len() > TAG_BYTES_MAX) {
            return Err(WebSocketError::TagTooLong {
                bytes: tag.len(),
                max: TAG_BYTES_MAX,
            });
        }
        let id = self.id;
        let env = self.ws.as_mut().ok_or(WebSocketError::NotAnUpgrade)?;
        let upgrade = env
            .upgrade
            .as_mut()
            .filter(|u| u.accepted.is_none())
            .ok_or(WebSocketError::NotAnUpgrade)?;
        let ws = env.sockets.insert(SocketEntry {
            object: id,
            class: env.class,
            conn_index: upgrade.conn_index,
            conn_generation: upgrade.conn_generation,
            tags: tags.iter().map(|t| Box::<str>::from(*t)).collect(),
            attachment: Vec::new(),
            closing: false,
        });
        upgrade.accepted = Some(ws);
        Ok(ws)
    }

    /// This object's open sockets, only those tagged `tag` if given.
    pub fn websockets(&self, tag: Option<&str>) -> Vec<WebSocket> {
        match &self.ws {
            Some(env) => env.sockets.of_object(&self.id, tag),
            None => Vec::new(),
        }
    }

    /// The tags a socket was accepted with.
    pub fn websocket_tags(&self, ws: WebSocket) -> Vec<&str> {
        self.entry(ws)
            .map(|e| e.tags.iter().map(|t| &**t).collect())
            .unwrap_or_default()
    }

    /// Sends a message. It leaves once this event's writes are durable,
    /// after everything sent on the socket before it.
    pub fn send(&mut self, ws: WebSocket, message: Message<'_>) -> Result<(), WebSocketError> {
        self.entry(ws)
            .filter(|e| !e.closing)
            .ok_or(WebSocketError::Closed)?;
        let (kind, payload) = match message {
            Message::Text(text) => (Outgoing::Text, text.as_bytes()),
            Message::Binary(bytes) => (Outgoing::Binary, bytes),
        };
        self.effects.ws.push(ws, kind, payload);
        Ok(())
    }

    /// Closes a socket with `code` (1000, or 3000 to 4999) and a reason
    /// (cut to 123 bytes). No `websocket_close` event follows for it.
    pub fn close_websocket(
        &mut self,
        ws: WebSocket,
        code: u16,
        reason: &str,
    ) -> Result<(), WebSocketError> {
        if code != close_code::NORMAL && !(3000..=4999).contains(&code) {
            return Err(WebSocketError::InvalidCloseCode(code));
        }
        let entry = self.entry_mut(ws).filter(|e| !e.closing);
        let entry = entry.ok_or(WebSocketError::Closed)?;
        entry.closing = true;
        self.effects
            .ws
            .push(ws, Outgoing::Close(code), reason.as_bytes());
        Ok(())
    }

    /// Keeps up to [`ATTACHMENT_BYTES_MAX`] bytes with the socket; they
    /// survive the object's hibernation.
    pub fn serialize_attachment(
        &mut self,
        ws: WebSocket,
        bytes: &[u8],
    ) -> Result<(), WebSocketError> {
        if bytes.len() > ATTACHMENT_BYTES_MAX {
            return Err(WebSocketError::AttachmentTooLarge {
                bytes: bytes.len(),
                max: ATTACHMENT_BYTES_MAX,
            });
        }
        let entry = self.entry_mut(ws).ok_or(WebSocketError::Closed)?;
        entry.attachment.clear();
        entry.attachment.extend_from_slice(bytes);
        entry.attachment.shrink_to_fit();
        Ok(())
    }

    /// The socket's attachment (empty if none was set).
    pub fn deserialize_attachment(&self, ws: WebSocket) -> Option<&[u8]> {
        self.entry(ws).map(|e| e.attachment.as_slice())
    }

    /// Answers `request` (a whole text message) with `response` on every
    /// socket of this object, in the network layer, without waking it.
    pub fn set_websocket_auto_response(
        &mut self,
        request: &str,
        response: &str,
    ) -> Result<(), WebSocketError> {
        let longest = request.len().max(response.len());
        if longest > AUTO_RESPONSE_BYTES_MAX {
            return Err(WebSocketError::AutoResponseTooLong {
                bytes: longest,
                max: AUTO_RESPONSE_BYTES_MAX,
            });
        }
        let id = self.id;
        let env = self.ws.as_mut().ok_or(WebSocketError::Closed)?;
        env.sockets.auto.insert(
            id,
            AutoResponse {
                request: request.as_bytes().into(),
                response: response.as_bytes().into(),
            },
        );
        Ok(())
    }

    /// Stops answering automatically.
    pub fn clear_websocket_auto_response(&mut self) {
        let id = self.id;
        if let Some(env) = self.ws.as_mut() {
            env.sockets.auto.remove(&id);
        }
    }

    fn entry(&self, ws: WebSocket) -> Option<&SocketEntry> {
        let entry = self.ws.as_ref()?.sockets.get(ws)?;
        (entry.object == self.id).then_some(entry)
    }

    fn entry_mut(&mut self, ws: WebSocket) -> Option<&mut SocketEntry> {
        let id = self.id;
        let entry = self.ws.as_mut()?.sockets.get_mut(ws)?;
        (entry.object == id).then_some(entry)
    }
}

#[cfg(test)]
mod shrink_tests {
    use super::*;

    fn entry(n: u32) -> SocketEntry {
        let mut id = [0u8; 16];
        id[..4].copy_from_slice(&n.to_le_bytes());
        SocketEntry {
            object: ObjectId(id),
            class: 0,
            conn_index: n,
            conn_generation: 0,
            tags: Vec::new(),
            attachment: Vec::new(),
            closing: false,
        }
    }

    #[test]
    fn the_per_object_map_gives_memory_back_once_sockets_closed() {
        let mut sockets = Sockets::default();
        let handles: Vec<WebSocket> = (0..20_000).map(|n| sockets.insert(entry(n))).collect();
        assert!(sockets.by_object.capacity() >= 20_000);
        for &ws in &handles[..19_990] {
            assert!(sockets.remove(ws).is_some());
        }
        assert!(sockets.by_object.capacity() <= 4 * crate::shrink::CAPACITY_KEPT);
        for &ws in &handles[19_990..] {
            assert!(sockets.get(ws).is_some(), "open sockets stay reachable");
        }
        // Handles to closed sockets stay stale after their slots are reused.
        for n in 0..100 {
            sockets.insert(entry(100_000 + n));
        }
        assert!(handles[..19_990]
            .iter()
            .all(|&ws| sockets.get(ws).is_none()));
    }
}
