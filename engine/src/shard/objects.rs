//! The objects living on one shard: created on first use, one event at a
//! time, evicted when idle.
//!
//! Every event — a request, an alarm — runs inside a storage savepoint:
//! if the handler panics, its writes are rolled back, the object is dropped
//! (the next event rebuilds it from storage), and the shard goes on.

use std::panic::{catch_unwind, AssertUnwindSafe};

use durin_storage::{Seq, ShardStore};

use crate::id::IdMap;
use crate::object::storage::{persist_size, LastLen};
use crate::object::websocket::{Sockets, Upgrade, WsEnv};
use crate::object::{Context, DurableObject, Effects};
use crate::registry::Registry;
use crate::sql::{self, EventEnd, SqlDb};
use crate::ObjectId;

/// Slots checked per eviction sweep, so that a sweep's cost is bounded
/// whatever the number of objects.
pub const SWEEP_SLOTS_MAX: usize = 4096;
/// Below this many slots of capacity the table is never shrunk: small
/// tables cost little and would only be regrown.
const SHRINK_SLOTS_MIN: usize = 1024;
/// The most live objects a shrink moves (the slot vector's copy and the
/// index's rehash are proportional to them), so that one sweep's shrink
/// takes at most a few milliseconds. A table with more live objects keeps
/// its capacity, which is then at most four times what they need.
const SHRINK_LIVE_MAX: usize = 128 * 1024;
/// Open SQL connections per shard by default; past it the connections of
/// other objects close, oldest in the clock's order first.
pub const SQL_CONNECTIONS_MAX_DEFAULT: usize = 8192;

struct Slot {
    id: ObjectId,
    class: u16,
    object: Box<dyn DurableObject>,
    /// Idle time counts from here: the last event's time, or the time the
    /// object asked to stay in memory until, if later.
    idle_since_ms: u64,
    /// The last write any event of this object made that output must wait
    /// for. Output of a later read-only event waits too: it may reveal it.
    last_write_seq: Seq,
    /// The last `allow_unconfirmed` write (waited for only after `sync`).
    last_unconfirmed_seq: Seq,
    /// The object's stored bytes, once an event needed them.
    stored_bytes: Option<u64>,
    /// The stored size of the key it read or wrote last.
    last_len: Option<LastLen>,
    /// Calls it made whose replies have not come back, and responses it
    /// deferred and has not given: an object with either stays in memory.
    waiting: u32,
    /// Its SQL connection, once it used SQL (closed when idle).
    sql: Option<SqlDb>,
}

/// What an event runs with, besides its object.
pub(crate) struct EventEnv<'a> {
    pub registry: &'a Registry,
    pub store: &'a mut ShardStore,
    pub now_ms: u64,
    pub effects: &'a mut Effects,
    pub sockets: &'a mut Sockets,
    /// The upgrade request a `fetch` may accept (`None` for other events).
    pub upgrade: &'a mut Option<Upgrade>,
}

/// What running an event produced.
pub struct Outcome<R> {
    /// The handler's result; `None` if it (or the constructor) panicked.
    pub result: Option<R>,
    /// The sequence number the event's output must wait for, if any.
    pub gate: Option<Seq>,
    /// Whether the object was constructed for this event.
    pub created: bool,
    /// The alarm the event set, for the shard to schedule.
    pub alarm_set: Option<u64>,
}

/// The shard's object table: the objects in memory, packed at the front
/// of one vector (a removal moves the last object into the hole), and
/// their positions by ID. Both shrink once most objects have left (see
/// [`Objects::shrink_if_sparse`]): a million objects touched once must
/// not hold their table's memory after they were all evicted.
pub struct Objects {
    slots: Vec<Slot>,
    index: IdMap<u32>,
    sweep_cursor: usize,
    /// Open SQL connections, and the most there may be.
    sql_open: usize,
    sql_open_max: usize,
    sql_cursor: usize,
}

impl Default for Objects {
    fn default() -> Self {
        Objects::new(SQL_CONNECTIONS_MAX_DEFAULT)
    }
}

impl Objects {
    /// An empty table holding at most `sql_open_max` SQL connections.
    pub fn new(sql_open_max: usize) -> Self {
        assert!(sql_open_max >= 1, "at least one SQL connection per shard");
        Objects {
            slots: Vec::new(),
            index: IdMap::default(),
            sweep_cursor: 0,
            sql_open: 0,
            sql_open_max,
            sql_cursor: 0,
        }
    }

    /// SQL connections open now.
    pub fn sql_open(&self) -> usize {
        self.sql_open
    }

    /// Objects in memory.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Whether no object is in memory.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Runs one event `f` on object `id` of class `class`, creating the
    /// object first if it is not in memory.
    pub(crate) fn run<R>(
        &mut self,
        env: EventEnv<'_>,
        class: u16,
        id: ObjectId,
        f: impl FnOnce(&mut dyn DurableObject, &mut Context<'_>) -> R,
    ) -> Outcome<R> {
        let EventEnv {
            registry,
            store,
            now_ms,
            effects,
            sockets,
            upgrade,
        } = env;
        effects.clear();
        let entry = registry.get(class);
        let savepoint = store.savepoint();
        let mut new_sql = None;
        let (index, created) = match self.index.get(&id) {
            Some(&i) => (i, false),
            None => {
                let mut ctx = Context::new(
                    id,
                    &entry.name,
                    now_ms,
                    store,
                    &entry.common.limits,
                    None,
                    effects,
                )
                .with_websockets(WsEnv {
                    class,
                    sockets: &mut *sockets,
                    upgrade: &mut *upgrade,
                })
                .with_sql(&mut new_sql, &entry.common.sql);
                let built = catch_unwind(AssertUnwindSafe(|| entry.class.create(&id, &mut ctx)));
                let stored_bytes = ctx.stored_bytes;
                let last_len = ctx.last_len.take();
                // The constructor's SQL transaction stays open: the event
                // that follows commits it with its own.
                drop(ctx);
                let Ok(object) = built else {
                    if let Some(db) = new_sql.take() {
                        sql::close(db, store);
                    }
                    store.rollback_to(savepoint);
                    store.release();
                    effects.clear();
                    return Outcome {
                        result: None,
                        gate: None,
                        created: false,
                        alarm_set: None,
                    };
                };
                let slot = Slot {
                    id,
                    class,
                    object,
                    idle_since_ms: now_ms,
                    last_write_seq: 0,
                    last_unconfirmed_seq: 0,
                    stored_bytes,
                    last_len,
                    waiting: 0,
                    sql: new_sql.take(),
                };
                if slot.sql.is_some() {
                    self.sql_open += 1;
                }
                (self.insert(slot), true)
            }
        };
        let slot = &mut self.slots[index as usize];
        debug_assert_eq!(slot.class, class, "an ID belongs to one class");
        slot.idle_since_ms = slot.idle_since_ms.max(now_ms);
        let had_sql = slot.sql.is_some();
        let mut ctx = Context::new(
            id,
            &entry.name,
            now_ms,
            store,
            &entry.common.limits,
            slot.stored_bytes,
            effects,
        )
        .with_last_len(slot.last_len.take())
        .with_websockets(WsEnv {
            class,
            sockets,
            upgrade,
        })
        .with_sql(&mut slot.sql, &entry.common.sql);
        let result = catch_unwind(AssertUnwindSafe(|| f(&mut *slot.object, &mut ctx)));
        let result = match result {
            Ok(result) => match sql::end_event(&mut ctx) {
                EventEnd::Committed => Ok(result),
                EventEnd::Lost => Err(Some(result)),
                EventEnd::Failed(e) => {
                    log::error!("object {id}: its SQL transaction did not commit: {e}");
                    Err(None)
                }
            },
            Err(_) => Err(None),
        };
        let result = match result {
            Ok(result) => result,
            Err(Some(result)) => {
                // SQLite lost the event's transaction (an interrupted or
                // full write): the handler's answer stands, none of its
                // writes do. The connection goes too: a VACUUM earlier in
                // the event committed pages the rollback takes back.
                drop(ctx);
                if let Some(db) = slot.sql.take() {
                    sql::close(db, store);
                }
                store.rollback_to(savepoint);
                store.release();
                let gate = gate_for(slot.last_write_seq, store);
                self.account_sql(had_sql, index);
                return Outcome {
                    result: Some(result),
                    gate,
                    created,
                    alarm_set: None,
                };
            }
            Err(None) => {
                drop(ctx);
                self.fail_event(store, savepoint, effects, index, had_sql);
                let gate = gate_for(self.slots[index as usize].last_write_seq, store);
                self.remove(index);
                return Outcome {
                    result: None,
                    gate,
                    created,
                    alarm_set: None,
                };
            }
        };
        persist_size(&mut ctx);
        let (wrote, unconfirmed, synced, alarm_set) =
            (ctx.wrote, ctx.wrote_unconfirmed, ctx.synced, ctx.alarm_set);
        slot.idle_since_ms = slot.idle_since_ms.max(ctx.stay_until_ms);
        slot.stored_bytes = ctx.stored_bytes;
        slot.last_len = ctx.last_len.take();
        drop(ctx);
        store.release();
        if let Some(seq) = wrote {
            slot.last_write_seq = seq;
        }
        if let Some(seq) = unconfirmed {
            slot.last_unconfirmed_seq = seq;
        }
        let waits_for = if synced {
            slot.last_write_seq.max(slot.last_unconfirmed_seq)
        } else {
            slot.last_write_seq
        };
        if synced {
            slot.last_write_seq = waits_for;
        }
        self.account_sql(had_sql, index);
        Outcome {
            result: Some(result),
            gate: gate_for(waits_for, store),
            created,
            alarm_set,
        }
    }

    /// Undoes a failed event: closes the object's SQL connection (its
    /// cache holds what is being undone) and rolls the store back.
    fn fail_event(
        &mut self,
        store: &mut ShardStore,
        savepoint: durin_storage::Savepoint,
        effects: &mut Effects,
        index: u32,
        had_sql: bool,
    ) {
        let slot = &mut self.slots[index as usize];
        if let Some(db) = slot.sql.take() {
            sql::close(db, store);
        }
        store.rollback_to(savepoint);
        store.release();
        effects.clear();
        if had_sql {
            self.sql_open -= 1;
        }
    }

    /// Counts a connection the event at `index` opened, and closes others
    /// past the shard's cap.
    fn account_sql(&mut self, had_sql: bool, index: u32) {
        let has_sql = self.slots[index as usize].sql.is_some();
        match (had_sql, has_sql) {
            (false, true) => self.sql_open += 1,
            (true, false) => self.sql_open -= 1,
            _ => {}
        }
        let n = self.slots.len();
        let mut checked = 0;
        while self.sql_open > self.sql_open_max && checked < n {
            self.sql_cursor = (self.sql_cursor + 1) % n;
            checked += 1;
            if self.sql_cursor == index as usize {
                continue;
            }
            // Between events no SQL transaction is open: closing touches
            // no storage.
            if self.slots[self.sql_cursor].sql.take().is_some() {
                self.sql_open -= 1;
            }
        }
    }

    /// Counts calls or deferred responses `id` waits on (`delta` may be
    /// negative). An object that is not in memory (it panicked meanwhile)
    /// is left alone.
    pub fn wait_more(&mut self, id: &ObjectId, delta: i32) {
        if let Some(&index) = self.index.get(id) {
            let slot = &mut self.slots[index as usize];
            slot.waiting = slot.waiting.saturating_add_signed(delta);
        }
    }

    fn insert(&mut self, slot: Slot) -> u32 {
        let index = u32::try_from(self.slots.len()).expect("fewer than 2^32 objects per shard");
        let previous = self.index.insert(slot.id, index);
        assert!(previous.is_none(), "an object is in memory once");
        self.slots.push(slot);
        index
    }

    /// Drops the object at `index`; the last object moves into its place.
    fn remove(&mut self, index: u32) {
        let removed = self.slots.swap_remove(index as usize);
        if removed.sql.is_some() {
            self.sql_open -= 1;
        }
        let found = self.index.remove(&removed.id);
        assert_eq!(found, Some(index), "the index knows where each object is");
        if let Some(moved) = self.slots.get(index as usize) {
            let position = self
                .index
                .get_mut(&moved.id)
                .expect("every object in the table is indexed");
            *position = index;
        }
        debug_assert_eq!(self.slots.len(), self.index.len());
    }

    /// Gives memory back once at most a quarter of the table's capacity is
    /// in use (and it is more than four times [`SHRINK_SLOTS_MIN`]): the
    /// slots and the index shrink to twice the live objects (so that a
    /// table which refills does not regrow at once, and one that was just
    /// shrunk is not shrunk again). Called
    /// after each sweep; the work is proportional to the live objects and
    /// bounded by [`SHRINK_LIVE_MAX`], and each shrink at least halves the
    /// capacity that was grown for objects since evicted, so over time it
    /// costs no more than the growth did.
    pub fn shrink_if_sparse(&mut self) -> bool {
        let live = self.slots.len();
        let target = (live * 2).max(SHRINK_SLOTS_MIN);
        let sparse = |capacity: usize| capacity > 4 * live.max(SHRINK_SLOTS_MIN);
        if live > SHRINK_LIVE_MAX
            || !(sparse(self.slots.capacity()) || sparse(self.index.capacity()))
        {
            return false;
        }
        self.slots.shrink_to(target);
        self.index.shrink_to(target);
        true
    }

    /// Slots the table holds memory for (live or not): what shrinking
    /// bounds.
    pub fn capacity(&self) -> usize {
        self.slots.capacity().max(self.index.capacity())
    }

    /// Evicts objects idle for longer than their class's idle timeout,
    /// checking at most [`SWEEP_SLOTS_MAX`] slots. An object with open
    /// WebSockets hibernates instead, after its class's hibernation timeout
    /// (or stays, if its class does not hibernate): its sockets stay open.
    /// An object whose last write is not durable yet stays: dropping it
    /// would forget that its output must wait.
    pub(crate) fn sweep(
        &mut self,
        registry: &Registry,
        now_ms: u64,
        durable_seq: Seq,
        sockets: &Sockets,
    ) -> Swept {
        let mut swept = Swept::default();
        for _ in 0..self.slots.len().min(SWEEP_SLOTS_MAX) {
            if self.sweep_cursor >= self.slots.len() {
                self.sweep_cursor = 0;
            }
            let index = self.sweep_cursor;
            let s = &self.slots[index];
            let common = &registry.get(s.class).common;
            let settled = s.waiting == 0
                && s.last_write_seq <= durable_seq
                && s.last_unconfirmed_seq <= durable_seq;
            let idle_ms = now_ms.saturating_sub(s.idle_since_ms);
            let hibernates = sockets.has_sockets(&s.id);
            let leaves = if hibernates {
                common.websocket_hibernation && idle_ms >= common.hibernation_timeout_ms
            } else {
                idle_ms >= common.idle_timeout_ms
            };
            if settled && leaves {
                // The last object moves into this slot: the cursor stays,
                // and it is looked at next.
                self.remove(index as u32);
                if hibernates {
                    swept.hibernated += 1;
                } else {
                    swept.evicted += 1;
                }
                if self.slots.is_empty() {
                    break;
                }
                continue;
            }
            if settled && idle_ms >= common.sql.idle_close_ms {
                // Between events no SQL transaction is open: closing
                // touches no storage. The next SQL call reopens it.
                if self.slots[index].sql.take().is_some() {
                    self.sql_open -= 1;
                }
            }
            self.sweep_cursor += 1;
        }
        swept.shrunk = self.shrink_if_sparse();
        swept
    }
}

/// What a sweep took out of memory.
#[derive(Debug, Default)]
pub(crate) struct Swept {
    pub evicted: u64,
    /// Objects whose only activity was open WebSockets.
    pub hibernated: u64,
    /// Whether the table gave memory back.
    pub shrunk: bool,
}

fn gate_for(last_write_seq: Seq, store: &ShardStore) -> Option<Seq> {
    (last_write_seq > store.durable_seq()).then_some(last_write_seq)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::object::{Request, Response};

    struct Idle;

    impl DurableObject for Idle {
        fn fetch(&mut self, _req: &Request<'_>, _res: &mut Response, _ctx: &mut Context<'_>) {}
    }

    fn slot(n: u32) -> Slot {
        let mut id = [0u8; 16];
        id[..4].copy_from_slice(&n.to_le_bytes());
        Slot {
            id: ObjectId(id),
            class: 0,
            object: Box::new(Idle),
            idle_since_ms: 0,
            last_write_seq: 0,
            last_unconfirmed_seq: 0,
            stored_bytes: None,
            last_len: None,
            waiting: 0,
            sql: None,
        }
    }

    /// Every object still reachable by its ID at the position the index
    /// gives.
    fn assert_indexed(objects: &Objects) {
        assert_eq!(objects.slots.len(), objects.index.len());
        for (position, slot) in objects.slots.iter().enumerate() {
            assert_eq!(objects.index.get(&slot.id), Some(&(position as u32)));
        }
    }

    #[test]
    fn removing_objects_keeps_every_other_one_reachable() {
        let mut objects = Objects::default();
        for n in 0..100 {
            objects.insert(slot(n));
        }
        for index in [0, 50, 97, 3, 3, 0] {
            objects.remove(index);
            assert_indexed(&objects);
        }
        assert_eq!(objects.len(), 94);
    }

    #[test]
    fn the_table_gives_memory_back_once_most_objects_left() {
        let mut objects = Objects::default();
        for n in 0..100_000 {
            objects.insert(slot(n));
        }
        let grown = objects.capacity();
        assert!(grown >= 100_000);
        assert!(!objects.shrink_if_sparse(), "a full table keeps its memory");
        while objects.len() > 1_000 {
            objects.remove(0);
        }
        assert!(objects.shrink_if_sparse());
        assert!(!objects.shrink_if_sparse(), "a shrunk table is left alone");
        assert_indexed(&objects);
        assert!(
            objects.capacity() <= 4 * 1_000,
            "{} slots held for 1,000 objects",
            objects.capacity()
        );
        while !objects.is_empty() {
            objects.remove(0);
        }
        objects.shrink_if_sparse();
        assert!(objects.capacity() <= 4 * SHRINK_SLOTS_MIN);
        assert!(!objects.shrink_if_sparse(), "an empty table is left alone");
    }
}
