//! The cross-shard mesh: one bounded lock-free queue per ordered pair of
//! shards, and a way to wake a sleeping shard.
//!
//! A shard pushes messages during its loop turn and wakes each peer it
//! pushed to at most once, at the end of the turn, and only if that peer
//! said it was about to sleep. A queue that is full does not block the
//! sender: the message waits in a local backlog and is retried next turn.
//! The backlog is bounded by what can be outstanding (at most one forwarded
//! request per connection, and connections are capped per shard).

use std::collections::VecDeque;
use std::sync::atomic::{fence, AtomicBool, Ordering};
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender, TrySendError};
use durin_net::socket::EventFd;

/// Capacity of one pair's queue.
pub const QUEUE_CAPACITY: usize = 4096;
/// Most messages taken from one peer's queue per loop turn, so that one
/// busy peer cannot starve the shard's own connections.
pub const DRAIN_PER_TURN_MAX: usize = 1024;
/// Buffers kept for reuse.
const POOL_MAX: usize = 1024;

/// What crosses between shards.
pub enum MeshMsg {
    /// A whole HTTP request (head and body, as received) for an object the
    /// receiver owns, routed by the origin: the object's class and ID, and
    /// how many bytes at the end of the request's path its object sees.
    /// `token` names the origin's connection.
    HttpRequest {
        from: u32,
        token: u64,
        class: u16,
        id: crate::ObjectId,
        rest_bytes: u32,
        bytes: Vec<u8>,
    },
    /// The whole HTTP response to a forwarded request, already past the
    /// owner's output gate.
    HttpReply { token: u64, bytes: Vec<u8> },
    /// A whole RPC request frame for an object the receiver owns.
    RpcRequest {
        from: u32,
        token: u64,
        bytes: Vec<u8>,
    },
    /// The whole response frame to a forwarded RPC request, past the
    /// owner's output gate.
    RpcReply { token: u64, bytes: Vec<u8> },
    /// A call from object `caller` (of class index `class`, on shard
    /// `from`) to an object the receiver owns, as an RPC request frame.
    Call {
        from: u32,
        class: u16,
        caller: crate::ObjectId,
        frame: Vec<u8>,
    },
    /// The reply frame to a call `caller` made.
    CallReply {
        class: u16,
        caller: crate::ObjectId,
        frame: Vec<u8>,
    },
    /// A connection whose request (at the start of `input`) asks for a
    /// WebSocket of an object the receiver owns: the receiver adopts the
    /// socket, which nothing on the sender refers to any more.
    AdoptConn { fd: i32, input: Vec<u8> },
}

/// How other threads wake a shard blocked on its ring.
pub struct ShardWaker {
    sleeping: AtomicBool,
    eventfd: EventFd,
}

impl ShardWaker {
    pub fn new() -> std::io::Result<ShardWaker> {
        Ok(ShardWaker {
            sleeping: AtomicBool::new(false),
            eventfd: EventFd::new()?,
        })
    }

    /// The eventfd the shard keeps a read pending on.
    pub fn eventfd(&self) -> &EventFd {
        &self.eventfd
    }

    /// Wakes the shard if it announced that it is going to sleep. Called
    /// after the message it should see has been pushed.
    pub fn wake(&self) {
        fence(Ordering::SeqCst);
        if self.sleeping.load(Ordering::Relaxed) && self.sleeping.swap(false, Ordering::AcqRel) {
            self.eventfd.notify();
        }
    }

    /// Announces that the shard is about to block. The shard must check its
    /// queues once more after this, and not block if they hold anything.
    pub fn prepare_sleep(&self) {
        self.sleeping.store(true, Ordering::SeqCst);
        fence(Ordering::SeqCst);
    }

    /// The shard is awake again.
    pub fn awake(&self) {
        self.sleeping.store(false, Ordering::Relaxed);
    }
}

struct Peer {
    tx: Sender<MeshMsg>,
    waker: Arc<ShardWaker>,
    backlog: VecDeque<MeshMsg>,
    pushed: bool,
}

/// One shard's end of the mesh.
pub struct Mesh {
    me: u32,
    peers: Vec<Option<Peer>>,
    inbound: Vec<Receiver<MeshMsg>>,
    pool: Vec<Vec<u8>>,
}

/// Builds the mesh for `wakers.len()` shards: one queue per ordered pair.
pub fn build(wakers: &[Arc<ShardWaker>]) -> Vec<Mesh> {
    let n = wakers.len();
    let mut meshes: Vec<Mesh> = (0..n)
        .map(|me| Mesh {
            me: me as u32,
            peers: (0..n).map(|_| None).collect(),
            inbound: Vec::new(),
            pool: Vec::new(),
        })
        .collect();
    for from in 0..n {
        for to in 0..n {
            if from == to {
                continue;
            }
            let (tx, rx) = crossbeam_channel::bounded(QUEUE_CAPACITY);
            meshes[from].peers[to] = Some(Peer {
                tx,
                waker: Arc::clone(&wakers[to]),
                backlog: VecDeque::new(),
                pushed: false,
            });
            meshes[to].inbound.push(rx);
        }
    }
    meshes
}

impl Mesh {
    /// This shard's index.
    pub fn me(&self) -> u32 {
        self.me
    }

    /// A cleared buffer, reused if one is pooled.
    pub fn buffer(&mut self) -> Vec<u8> {
        self.pool.pop().unwrap_or_default()
    }

    /// Returns a buffer to the pool.
    pub fn recycle(&mut self, mut buf: Vec<u8>) {
        if self.pool.len() < POOL_MAX && buf.capacity() <= 64 * 1024 {
            buf.clear();
            self.pool.push(buf);
        }
    }

    /// Queues `msg` for shard `to`.
    pub fn send(&mut self, to: u32, msg: MeshMsg) {
        let peer = self.peers[to as usize]
            .as_mut()
            .expect("a shard never sends to itself");
        peer.pushed = true;
        if !peer.backlog.is_empty() {
            peer.backlog.push_back(msg);
            return;
        }
        match peer.tx.try_send(msg) {
            Ok(()) => {}
            Err(TrySendError::Full(msg)) => peer.backlog.push_back(msg),
            Err(TrySendError::Disconnected(_)) => {}
        }
    }

    /// Retries backlogs and wakes every peer that was sent something this
    /// turn. Called once at the end of each loop turn.
    pub fn flush(&mut self) {
        for peer in self.peers.iter_mut().flatten() {
            while let Some(msg) = peer.backlog.pop_front() {
                match peer.tx.try_send(msg) {
                    Ok(()) => {}
                    Err(TrySendError::Full(msg)) => {
                        peer.backlog.push_front(msg);
                        break;
                    }
                    Err(TrySendError::Disconnected(_)) => {}
                }
            }
            if peer.pushed {
                peer.pushed = false;
                peer.waker.wake();
            }
        }
    }

    /// Whether any backlog is waiting for room in a peer's queue.
    pub fn has_backlog(&self) -> bool {
        self.peers.iter().flatten().any(|p| !p.backlog.is_empty())
    }

    /// Whether any inbound queue holds a message.
    pub fn has_inbound(&self) -> bool {
        self.inbound.iter().any(|rx| !rx.is_empty())
    }

    /// Takes up to [`DRAIN_PER_TURN_MAX`] messages from each peer.
    pub fn drain_into(&mut self, out: &mut Vec<MeshMsg>) {
        for rx in &self.inbound {
            out.extend(rx.try_iter().take(DRAIN_PER_TURN_MAX));
        }
    }
}
