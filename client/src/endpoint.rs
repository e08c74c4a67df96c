//! The connections of one server port: a fixed table of slots, each empty
//! or holding one connection, each behind its own mutex.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, TryLockError};
use std::time::Instant;

use durin_proto::rpc::{ProtoError, ServerHello};

use crate::connection::Connection;
use crate::{ClientError, ClientOptions, SHARDS_MAX};

/// The server's shard layout, fixed when the client connects: routing
/// depends on it, so every later connection must report the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Layout {
    pub(crate) shards: u32,
    pub(crate) partitions: u32,
}

impl Layout {
    /// The layout a server advertises, if the client can route by it.
    pub(crate) fn from_hello(hello: &ServerHello) -> Result<Layout, ClientError> {
        if hello.shards == 0 || hello.shards > SHARDS_MAX {
            return Err(ProtoError::Malformed("the server advertises 0 or too many shards").into());
        }
        if hello.partitions == 0 {
            return Err(ProtoError::Malformed("the server advertises 0 partitions").into());
        }
        Ok(Layout {
            shards: hello.shards,
            partitions: hello.partitions,
        })
    }
}

type Slot = Option<Connection>;

/// One port's connections.
pub(crate) struct Endpoint {
    addr: SocketAddr,
    /// The shard this port serves, as its hello must say; `None` for the
    /// shared port.
    shard: Option<u32>,
    slots: Box<[Mutex<Slot>]>,
    /// Where the search for a free slot starts, rotated per use so threads
    /// spread over the slots.
    next_slot: AtomicUsize,
}

impl Endpoint {
    pub(crate) fn new(addr: SocketAddr, shard: Option<u32>, connections: usize) -> Endpoint {
        assert!(connections > 0, "a port has at least one connection slot");
        let slots = (0..connections).map(|_| Mutex::new(None)).collect();
        Endpoint {
            addr,
            shard,
            slots,
            next_slot: AtomicUsize::new(0),
        }
    }

    /// Puts an already open connection in the first slot.
    pub(crate) fn install(&self, connection: Connection) {
        *self.lock(0) = Some(connection);
    }

    /// Runs `exchange` on a connection of this port, opening one if the
    /// slot is empty. The connection is dropped afterwards if the exchange
    /// left it unusable.
    pub(crate) fn with_connection<R>(
        &self,
        layout: &Layout,
        options: &ClientOptions,
        deadline: Instant,
        exchange: impl FnOnce(&mut Connection) -> Result<R, ClientError>,
    ) -> Result<R, ClientError> {
        let mut slot = self.take_slot();
        let connection = match &mut *slot {
            Some(connection) => connection,
            empty => empty.insert(self.open(layout, options, deadline)?),
        };
        let result = exchange(connection);
        let broken = match &result {
            Err(error) => error.breaks_connection() || connection.is_broken(),
            Ok(_) => connection.is_broken(),
        };
        if broken {
            *slot = None;
        }
        result
    }

    fn open(
        &self,
        layout: &Layout,
        options: &ClientOptions,
        deadline: Instant,
    ) -> Result<Connection, ClientError> {
        let (connection, hello) = Connection::open(self.addr, deadline, options.frame_bytes_max)?;
        if hello.shard_index != self.shard {
            return Err(
                ProtoError::Malformed("the port serves another shard than advertised").into(),
            );
        }
        if Layout::from_hello(&hello)? != *layout {
            return Err(ProtoError::Malformed(
                "the server's shard layout changed since connecting",
            )
            .into());
        }
        Ok(connection)
    }

    /// A free slot if there is one, else waits for one.
    fn take_slot(&self) -> MutexGuard<'_, Slot> {
        let first = self.next_slot.fetch_add(1, Ordering::Relaxed) % self.slots.len();
        for k in 0..self.slots.len() {
            let index = (first + k) % self.slots.len();
            match self.slots[index].try_lock() {
                Ok(slot) => return slot,
                Err(TryLockError::Poisoned(_)) => return self.lock(index),
                Err(TryLockError::WouldBlock) => {}
            }
        }
        self.lock(first)
    }

    /// Locks slot `index`. A thread that panicked mid-exchange left its
    /// connection in an unknown state, so a poisoned slot is emptied.
    fn lock(&self, index: usize) -> MutexGuard<'_, Slot> {
        self.slots[index].lock().unwrap_or_else(|poisoned| {
            let mut slot = poisoned.into_inner();
            *slot = None;
            self.slots[index].clear_poison();
            slot
        })
    }
}
