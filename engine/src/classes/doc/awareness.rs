//! The awareness relay: who is present in a room, with the JavaScript
//! rules of y-protocols (not yrs's `Awareness`, whose clocks differ).
//!
//! - An entry is taken when its clock is newer than the one known for its
//!   client (a client never seen counts as clock 0), or when it removes a
//!   present client with the same clock.
//! - A removal keeps the client's clock, so an older state cannot bring it
//!   back.
//! - Each socket owns the client IDs it announced; when it closes they are
//!   removed with their current clock, and the room is told.
//! - Every entry taken is sent to every socket, its sender included: a
//!   lone client's renewal coming back is what keeps its 30 s liveness
//!   timer from reconnecting it.
//! - A state not renewed for [`OUTDATED_MS`] is removed, as the reference
//!   server's awareness does (clients renew every 15 s). The relay checks
//!   at each of the room's events, not on a timer of its own.
//!
//! The relay lives in the object only as a cache: each socket's owned
//! clients and their last states are its attachment, so a room that
//! hibernated rebuilds the relay from its sockets when it wakes.

use std::collections::{BTreeMap, VecDeque};

use super::protocol::{self, AwarenessEntry, ProtocolError, Reader};
use crate::object::WebSocket;

/// Client IDs one socket may own (a y-websocket client owns one).
pub const CLIENTS_PER_SOCKET_MAX: usize = 4;
/// The largest configurable awareness state: four of them fit a socket's
/// 16 KiB attachment.
pub const STATE_BYTES_MAX_LIMIT: usize = 4000;
/// Removed clients whose clock is remembered; past it the oldest is
/// forgotten (a state with its old clock could then come back).
pub const REMOVED_CLIENTS_MAX: usize = 4096;

/// A state not renewed for this long is removed (y-protocols'
/// `outdatedTimeout`).
pub const OUTDATED_MS: u64 = 30_000;

/// The attachment format's version byte.
const ATTACHMENT_VERSION: u8 = 1;

#[derive(Debug, Clone, PartialEq, Eq)]
struct Client {
    clock: u64,
    /// JSON text; `None` once removed.
    state: Option<Box<str>>,
    owner: Option<WebSocket>,
    /// When its state was last set or renewed.
    updated_ms: u64,
}

/// What one socket sent that the relay cannot take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    StateTooLarge { bytes: usize, max: usize },
    TooManyClients { max: usize },
}

/// A room's awareness states.
#[derive(Debug, Default)]
pub struct Relay {
    clients: BTreeMap<u64, Client>,
    removed: VecDeque<u64>,
}

impl Relay {
    /// Applies one socket's entries; returns the client IDs whose entry
    /// was taken (to be sent to every socket).
    pub fn apply(
        &mut self,
        from: WebSocket,
        entries: &[AwarenessEntry<'_>],
        state_bytes_max: usize,
        now_ms: u64,
    ) -> Result<Vec<u64>, Refused> {
        if let Some(e) = entries.iter().find(|e| e.state.len() > state_bytes_max) {
            return Err(Refused::StateTooLarge {
                bytes: e.state.len(),
                max: state_bytes_max,
            });
        }
        let mut taken = Vec::new();
        for entry in entries {
            let known = self.clients.get(&entry.client_id);
            let clock = known.map_or(0, |c| c.clock);
            let present = known.is_some_and(|c| c.state.is_some());
            let newer = clock < entry.clock;
            let removes_present = clock == entry.clock && entry.is_removal() && present;
            if !(newer || removes_present) {
                continue;
            }
            if entry.is_removal() {
                if known.is_none() {
                    // JavaScript records the clock but reports nothing.
                    self.remember_removed(entry.client_id, entry.clock);
                    continue;
                }
                self.remember_removed(entry.client_id, entry.clock);
            } else {
                let owned = self.owned_by(from);
                let already = owned.contains(&entry.client_id);
                if !already && owned.len() >= CLIENTS_PER_SOCKET_MAX {
                    return Err(Refused::TooManyClients {
                        max: CLIENTS_PER_SOCKET_MAX,
                    });
                }
                self.clients.insert(
                    entry.client_id,
                    Client {
                        clock: entry.clock,
                        state: Some(entry.state.into()),
                        owner: Some(from),
                        updated_ms: now_ms,
                    },
                );
            }
            taken.push(entry.client_id);
        }
        Ok(taken)
    }

    /// Removes the clients `ws` owns, keeping their clocks; returns those
    /// that were present.
    pub fn remove_socket(&mut self, ws: WebSocket) -> Vec<u64> {
        let owned = self.owned_by(ws);
        let mut removed = Vec::new();
        for id in owned {
            let Some(client) = self.clients.get(&id) else {
                continue;
            };
            if client.state.is_some() {
                removed.push(id);
            }
            let clock = client.clock;
            self.remember_removed(id, clock);
        }
        removed
    }

    /// Removes the states not renewed for [`OUTDATED_MS`], keeping their
    /// clocks; returns their IDs and the sockets that owned them.
    pub fn remove_outdated(&mut self, now_ms: u64) -> Vec<(u64, Option<WebSocket>)> {
        let outdated: Vec<(u64, Option<WebSocket>, u64)> = self
            .clients
            .iter()
            .filter(|(_, c)| {
                c.state.is_some() && now_ms.saturating_sub(c.updated_ms) >= OUTDATED_MS
            })
            .map(|(&id, c)| (id, c.owner, c.clock))
            .collect();
        for &(id, _, clock) in &outdated {
            self.remember_removed(id, clock);
        }
        outdated
            .into_iter()
            .map(|(id, owner, _)| (id, owner))
            .collect()
    }

    /// The client IDs `ws` owns and that are present.
    pub fn owned_by(&self, ws: WebSocket) -> Vec<u64> {
        self.clients
            .iter()
            .filter(|(_, c)| c.owner == Some(ws) && c.state.is_some())
            .map(|(&id, _)| id)
            .collect()
    }

    /// The present clients.
    pub fn present(&self) -> Vec<u64> {
        self.clients
            .iter()
            .filter(|(_, c)| c.state.is_some())
            .map(|(&id, _)| id)
            .collect()
    }

    /// An awareness message with the current entries of `ids` (a removed
    /// client as `null` with its clock).
    pub fn encode(&self, ids: &[u64]) -> Vec<u8> {
        let entries: Vec<AwarenessEntry<'_>> = ids
            .iter()
            .filter_map(|id| {
                let c = self.clients.get(id)?;
                Some(AwarenessEntry {
                    client_id: *id,
                    clock: c.clock,
                    state: c.state.as_deref().unwrap_or("null"),
                })
            })
            .collect();
        protocol::encode_awareness(entries.into_iter())
    }

    /// The attachment that records what `ws` owns.
    pub fn attachment_of(&self, ws: WebSocket) -> Vec<u8> {
        let owned = self.owned_by(ws);
        let mut out = vec![ATTACHMENT_VERSION];
        protocol::write_var_uint(&mut out, owned.len() as u64);
        for id in owned {
            let c = &self.clients[&id];
            protocol::write_var_uint(&mut out, id);
            protocol::write_var_uint(&mut out, c.clock);
            protocol::write_var_bytes(&mut out, c.state.as_deref().unwrap_or("null").as_bytes());
        }
        out
    }

    /// Takes back what a socket's attachment recorded (after a wake); the
    /// newer clock wins where two sockets claim one client.
    pub fn restore(
        &mut self,
        ws: WebSocket,
        attachment: &[u8],
        now_ms: u64,
    ) -> Result<(), ProtocolError> {
        let Some((&version, rest)) = attachment.split_first() else {
            return Ok(());
        };
        if version != ATTACHMENT_VERSION {
            return Ok(());
        }
        let mut r = Reader::new(rest);
        let count = r.var_uint("attachment count")?;
        for _ in 0..count.min(CLIENTS_PER_SOCKET_MAX as u64) {
            let client_id = r.var_uint("attachment client")?;
            let clock = r.var_uint("attachment clock")?;
            let state = r.var_string("attachment state")?;
            let newer = self.clients.get(&client_id).is_none_or(|c| c.clock < clock);
            if newer {
                self.clients.insert(
                    client_id,
                    Client {
                        clock,
                        state: Some(state.into()),
                        owner: Some(ws),
                        // The renewal time is not kept: a woken room
                        // gives every state a full timeout again.
                        updated_ms: now_ms,
                    },
                );
            }
        }
        Ok(())
    }

    fn remember_removed(&mut self, id: u64, clock: u64) {
        self.clients.insert(
            id,
            Client {
                clock,
                state: None,
                owner: None,
                updated_ms: 0,
            },
        );
        self.removed.push_back(id);
        while self.removed.len() > REMOVED_CLIENTS_MAX {
            let Some(old) = self.removed.pop_front() else {
                break;
            };
            if self.clients.get(&old).is_some_and(|c| c.state.is_none()) {
                self.clients.remove(&old);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: WebSocket = WebSocket {
        index: 1,
        generation: 0,
    };
    const B: WebSocket = WebSocket {
        index: 2,
        generation: 0,
    };

    fn entry(client_id: u64, clock: u64, state: &str) -> AwarenessEntry<'_> {
        AwarenessEntry {
            client_id,
            clock,
            state,
        }
    }

    #[test]
    fn a_newer_clock_wins_and_an_older_one_is_ignored() {
        let mut relay = Relay::default();
        assert_eq!(relay.apply(A, &[entry(7, 0, "{}")], 100, 0), Ok(vec![]));
        assert_eq!(
            relay.apply(A, &[entry(7, 2, "{\"a\":1}")], 100, 0),
            Ok(vec![7])
        );
        assert_eq!(
            relay.apply(A, &[entry(7, 1, "{\"a\":0}")], 100, 0),
            Ok(vec![])
        );
        assert_eq!(relay.present(), vec![7]);
    }

    #[test]
    fn a_renewal_with_the_same_state_is_taken_to_be_echoed() {
        let mut relay = Relay::default();
        relay.apply(A, &[entry(7, 1, "{}")], 100, 0).expect("taken");
        assert_eq!(relay.apply(A, &[entry(7, 2, "{}")], 100, 0), Ok(vec![7]));
    }

    #[test]
    fn a_null_state_removes_with_the_same_clock_and_keeps_it() {
        let mut relay = Relay::default();
        relay.apply(A, &[entry(7, 3, "{}")], 100, 0).expect("taken");
        assert_eq!(relay.apply(B, &[entry(7, 3, "null")], 100, 0), Ok(vec![7]));
        assert!(relay.present().is_empty());
        assert_eq!(
            relay.apply(A, &[entry(7, 3, "{}")], 100, 0),
            Ok(vec![]),
            "the removal kept clock 3"
        );
        let frame = relay.encode(&[7]);
        let Ok(protocol::Decoded::Awareness(payload)) = protocol::decode(&frame) else {
            panic!("awareness");
        };
        assert_eq!(
            protocol::decode_awareness(payload).expect("decodes"),
            [entry(7, 3, "null")]
        );
    }

    #[test]
    fn closing_a_socket_removes_the_clients_it_owns() {
        let mut relay = Relay::default();
        relay.apply(A, &[entry(7, 1, "{}")], 100, 0).expect("taken");
        relay.apply(B, &[entry(8, 1, "{}")], 100, 0).expect("taken");
        assert_eq!(relay.remove_socket(A), vec![7]);
        assert_eq!(relay.present(), vec![8]);
        assert_eq!(relay.remove_socket(A), Vec::<u64>::new());
    }

    #[test]
    fn limits_are_refused_with_what_was_exceeded() {
        let mut relay = Relay::default();
        assert_eq!(
            relay.apply(A, &[entry(7, 1, "{\"long\":1}")], 4, 0),
            Err(Refused::StateTooLarge { bytes: 10, max: 4 })
        );
        for id in 0..CLIENTS_PER_SOCKET_MAX as u64 {
            relay
                .apply(A, &[entry(id, 1, "{}")], 100, 0)
                .expect("taken");
        }
        assert_eq!(
            relay.apply(A, &[entry(99, 1, "{}")], 100, 0),
            Err(Refused::TooManyClients {
                max: CLIENTS_PER_SOCKET_MAX
            })
        );
    }

    #[test]
    fn attachments_rebuild_the_relay_after_a_wake() {
        let mut relay = Relay::default();
        relay
            .apply(A, &[entry(7, 4, "{\"n\":1}")], 100, 0)
            .expect("taken");
        let attachment = relay.attachment_of(A);
        let mut woken = Relay::default();
        woken.restore(A, &attachment, 0).expect("restores");
        assert_eq!(woken.present(), vec![7]);
        assert_eq!(woken.encode(&[7]), relay.encode(&[7]));
        assert_eq!(woken.remove_socket(A), vec![7]);
    }

    #[test]
    fn a_state_not_renewed_for_30_s_is_removed_with_its_clock() {
        let mut relay = Relay::default();
        relay.apply(A, &[entry(7, 1, "{}")], 100, 0).expect("taken");
        relay.apply(B, &[entry(8, 1, "{}")], 100, 0).expect("taken");
        relay
            .apply(B, &[entry(8, 2, "{}")], 100, 20_000)
            .expect("renewed");
        assert!(relay.remove_outdated(29_999).is_empty());
        assert_eq!(relay.remove_outdated(30_000), vec![(7, Some(A))]);
        assert_eq!(relay.present(), vec![8]);
        assert_eq!(
            relay.apply(A, &[entry(7, 1, "{}")], 100, 30_000),
            Ok(vec![])
        );
    }
}
