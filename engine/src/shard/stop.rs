//! Stopping a shard cleanly (SIGTERM): no new connections, WebSockets
//! closed with 1001, other connections closed once they are answered; the
//! shard ends when it has no connection left and every group is durable
//! and applied, or after the server's `shutdown_timeout_ms`.

use super::Shard;

impl Shard {
    /// Once the server is stopping (seen on the first turn after it was
    /// asked), drains the connections on every turn.
    pub(super) fn drain_if_stopping(&mut self) {
        if self.stop_by_ms.is_none() {
            if !self.stopping.load(std::sync::atomic::Ordering::Relaxed) {
                return;
            }
            self.stop_by_ms = Some(self.mono_ms + self.server.shutdown_timeout_ms);
            log::info!("shard {} stopping", self.index);
        }
        self.drain_conns();
    }

    /// Whether a stopping shard may end: no connection left and every
    /// group durable and applied, or the shutdown timeout passed.
    pub(super) fn may_end(&self) -> bool {
        let Some(by_ms) = self.stop_by_ms else {
            return false;
        };
        let drained = self.conns.open() == 0 && self.store.is_settled();
        drained || self.mono_ms >= by_ms
    }

    /// Drains the shard's connections for a stop: each WebSocket gets a
    /// close frame with 1001 (going away) after what it is owed; every other
    /// connection closes once nothing of it is in flight (a request being
    /// served elsewhere is answered first). Called on every turn of a stop,
    /// so that connections busy at first are closed when they are done.
    fn drain_conns(&mut self) {
        for index in 0..self.conns.slot_count() {
            let Some(conn) = self.conns.by_index(index) else {
                continue;
            };
            if conn.closing || conn.dead {
                continue;
            }
            if let Some(ws) = conn.ws.as_mut() {
                let socket = crate::object::WebSocket {
                    index: ws.socket,
                    generation: ws.socket_generation,
                };
                if !ws.close_sent {
                    ws.close_sent = true;
                    durin_net::ws::write_close(
                        conn.output(),
                        durin_net::ws::close_code::GOING_AWAY,
                        "server shutting down",
                    );
                }
                conn.closing = true;
                // The server is going away: the object is not told.
                self.sockets.remove(socket);
            } else if !conn.awaiting_reply && conn.rpc_in_flight == 0 && conn.handoff_to.is_none() {
                conn.closing = true;
            }
            self.dirty.push(index);
        }
    }
}
