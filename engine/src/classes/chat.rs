//! `chat`: the seed's ChatRoom, on hibernatable WebSockets.
//!
//! - `GET /chat/{room}/websocket?name=N` with `Upgrade: websocket` joins
//!   the room (`Anonymous` without a name); without the upgrade: `400
//!   Expected WebSocket`. Every socket of the room, the new one included,
//!   gets `{"type": "join", "name": N}`.
//! - A text message T from N goes to every other socket as
//!   `{"sender": N, "text": T, "timestamp": ms}`.
//! - When N's socket closes the others get `{"type": "leave", "name": N}`.
//! - `GET /chat/{room}/info` answers `{"connectedUsers": [...], "count": n}`.
//!
//! The room keeps nothing in memory: each socket's name is its attachment,
//! so a room whose clients are quiet hibernates and costs no object memory.
//!
//! ```toml
//! [classes.chat]
//! # Optional: a text message answered by the network layer without waking
//! # the room (a client's keep-alive), and the answer.
//! auto_response_request = "ping"
//! auto_response_response = "pong"
//! ```

use std::sync::Arc;

use serde_json::json;

use crate::config::ConfigError;
use crate::object::{
    Context, DurableObject, Message, ObjectClass, Request, Response, WebSocket,
    AUTO_RESPONSE_BYTES_MAX,
};
use crate::ObjectId;

/// Longest name, in bytes.
pub const NAME_BYTES_MAX: usize = 256;

pub struct ChatClass {
    auto_response: Option<Arc<(String, String)>>,
}

impl ChatClass {
    pub fn from_config(table: &mut toml::Table) -> Result<ChatClass, ConfigError> {
        let mut text = |key: &str| match table.remove(key) {
            None => Ok(None),
            Some(toml::Value::String(s)) if s.len() <= AUTO_RESPONSE_BYTES_MAX => Ok(Some(s)),
            Some(_) => Err(ConfigError(format!(
                "classes.chat.{key} must be a string of at most {AUTO_RESPONSE_BYTES_MAX} bytes"
            ))),
        };
        let request = text("auto_response_request")?;
        let response = text("auto_response_response")?;
        let auto_response =
            match (request, response) {
                (Some(request), Some(response)) => Some(Arc::new((request, response))),
                (None, None) => None,
                _ => return Err(ConfigError(
                    "classes.chat: auto_response_request and auto_response_response go together"
                        .into(),
                )),
            };
        Ok(ChatClass { auto_response })
    }
}

impl ObjectClass for ChatClass {
    fn create(&self, _id: &ObjectId, _ctx: &mut Context<'_>) -> Box<dyn DurableObject> {
        Box::new(ChatRoom {
            auto_response: self.auto_response.clone(),
        })
    }
}

/// Registers the class under `chat` in a builder.
pub fn factory(table: &mut toml::Table) -> Result<Arc<dyn ObjectClass>, ConfigError> {
    Ok(Arc::new(ChatClass::from_config(table)?))
}

struct ChatRoom {
    auto_response: Option<Arc<(String, String)>>,
}

impl DurableObject for ChatRoom {
    fn fetch(&mut self, req: &Request<'_>, res: &mut Response, ctx: &mut Context<'_>) {
        match req.path {
            "/websocket" => join(req, res, ctx, self.auto_response.as_deref()),
            "/info" => info(res, ctx),
            _ => {
                res.text(404, "Not found");
            }
        }
    }

    fn websocket_message(&mut self, ws: WebSocket, msg: Message<'_>, ctx: &mut Context<'_>) {
        let text = match msg {
            Message::Text(text) => text.to_string(),
            Message::Binary(bytes) => String::from_utf8_lossy(bytes).into_owned(),
        };
        let sender = name_of(ctx, ws);
        let message = json!({ "sender": sender, "text": text, "timestamp": ctx.now_ms() });
        broadcast(ctx, &message.to_string(), Some(ws));
    }

    fn websocket_close(&mut self, ws: WebSocket, _code: u16, _reason: &str, ctx: &mut Context<'_>) {
        leave(ctx, ws);
    }

    fn websocket_error(&mut self, ws: WebSocket, _error: &str, ctx: &mut Context<'_>) {
        leave(ctx, ws);
    }
}

fn join(
    req: &Request<'_>,
    res: &mut Response,
    ctx: &mut Context<'_>,
    auto_response: Option<&(String, String)>,
) {
    if !req.is_websocket_upgrade() {
        res.text(400, "Expected WebSocket");
        return;
    }
    let name = req
        .query_param("name")
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "Anonymous".to_string());
    if name.len() > NAME_BYTES_MAX {
        res.text(400, "name longer than 256 bytes");
        return;
    }
    let ws = match ctx.accept_websocket(&[]) {
        Ok(ws) => ws,
        Err(e) => {
            res.text(400, &e.to_string());
            return;
        }
    };
    ctx.serialize_attachment(ws, name.as_bytes())
        .expect("a name of at most 256 bytes fits an attachment");
    if let Some((request, response)) = auto_response {
        ctx.set_websocket_auto_response(request, response)
            .expect("checked against the limit when the config was read");
    }
    let message = json!({ "type": "join", "name": name });
    broadcast(ctx, &message.to_string(), None);
}

fn info(res: &mut Response, ctx: &mut Context<'_>) {
    let names: Vec<String> = ctx
        .websockets(None)
        .into_iter()
        .map(|ws| name_of(ctx, ws))
        .collect();
    let body = json!({ "count": names.len(), "connectedUsers": names });
    res.json(200).body(body.to_string().as_bytes());
}

fn leave(ctx: &mut Context<'_>, ws: WebSocket) {
    let name = name_of(ctx, ws);
    let message = json!({ "type": "leave", "name": name });
    broadcast(ctx, &message.to_string(), Some(ws));
}

fn name_of(ctx: &Context<'_>, ws: WebSocket) -> String {
    ctx.deserialize_attachment(ws)
        .map(|bytes| String::from_utf8_lossy(bytes).into_owned())
        .unwrap_or_else(|| "Anonymous".to_string())
}

/// Sends `text` to every open socket of the room but `except`.
fn broadcast(ctx: &mut Context<'_>, text: &str, except: Option<WebSocket>) {
    for ws in ctx.websockets(None) {
        if Some(ws) != except {
            // A socket closing meanwhile simply misses the message.
            let _ = ctx.send(ws, Message::Text(text));
        }
    }
}
