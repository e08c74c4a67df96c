//! The objects living on one shard: created on first use, one event at a
//! time, evicted when idle.

use std::panic::{catch_unwind, AssertUnwindSafe};

use durin_storage::{Seq, ShardStore};

use crate::object::{Context, DurableObject, Request, Response};
use crate::registry::Registry;
use crate::id::IdMap;
use crate::ObjectId;

/// Slots checked per eviction sweep, so that a sweep's cost is bounded
/// whatever the number of objects.
pub const SWEEP_SLOTS_MAX: usize = 4096;

struct Slot {
    id: ObjectId,
    class: u16,
    object: Box<dyn DurableObject>,
    last_used_ms: u64,
    /// The last write any event of this object made. Output of the object
    /// waits until it is durable, even output of a later read-only event:
    /// that output may reveal the write.
    last_write_seq: Seq,
}

/// What running an event produced for the output gate.
pub struct Outcome {
    /// The sequence number the response must wait for, if any.
    pub gate: Option<Seq>,
    /// Whether the handler panicked (the response is then a 500).
    pub panicked: bool,
    /// Whether the object was constructed for this event.
    pub created: bool,
}

/// The shard's object table.
#[derive(Default)]
pub struct Objects {
    slots: Vec<Option<Slot>>,
    free: Vec<u32>,
    index: IdMap<u32>,
    sweep_cursor: usize,
}

impl Objects {
    /// Objects in memory.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Whether no object is in memory.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Runs `fetch` on the object `id` of class `class`, creating it first
    /// if it is not in memory. A panic in the constructor or the handler is
    /// caught: the response becomes a 500 and the object is dropped, so the
    /// next event rebuilds it from storage.
    #[allow(clippy::too_many_arguments)]
    pub fn fetch(
        &mut self,
        registry: &Registry,
        class: u16,
        id: ObjectId,
        req: &Request<'_>,
        res: &mut Response,
        store: &mut ShardStore,
        now_ms: u64,
    ) -> Outcome {
        res.reset();
        let mut created = false;
        let index = match self.index.get(&id) {
            Some(&i) => i,
            None => {
                let mut ctx = Context::new(id, now_ms, store);
                let entry = registry.get(class);
                let built = catch_unwind(AssertUnwindSafe(|| entry.class.create(&id, &mut ctx)));
                let wrote = ctx.wrote;
                let Ok(object) = built else {
                    res.text(500, "Internal Server Error");
                    return Outcome {
                        gate: gate_for(wrote.unwrap_or(0), store),
                        panicked: true,
                        created: false,
                    };
                };
                created = true;
                self.insert(Slot {
                    id,
                    class,
                    object,
                    last_used_ms: now_ms,
                    last_write_seq: wrote.unwrap_or(0),
                })
            }
        };
        let slot = self.slots[index as usize]
            .as_mut()
            .expect("indexed slots are occupied");
        debug_assert_eq!(slot.class, class, "an ID belongs to one class");
        slot.last_used_ms = now_ms;
        let mut ctx = Context::new(id, now_ms, store);
        let result = catch_unwind(AssertUnwindSafe(|| slot.object.fetch(req, res, &mut ctx)));
        if let Some(seq) = ctx.wrote {
            slot.last_write_seq = seq;
        }
        let gate = gate_for(slot.last_write_seq, store);
        if result.is_err() {
            res.reset();
            res.text(500, "Internal Server Error");
            self.remove(index);
            return Outcome {
                gate,
                panicked: true,
                created,
            };
        }
        Outcome {
            gate,
            panicked: false,
            created,
        }
    }

    fn insert(&mut self, slot: Slot) -> u32 {
        let id = slot.id;
        let index = match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = Some(slot);
                i
            }
            None => {
                self.slots.push(Some(slot));
                (self.slots.len() - 1) as u32
            }
        };
        self.index.insert(id, index);
        index
    }

    fn remove(&mut self, index: u32) {
        if let Some(slot) = self.slots[index as usize].take() {
            self.index.remove(&slot.id);
            self.free.push(index);
        }
    }

    /// Evicts objects idle for longer than their class's idle timeout,
    /// checking at most [`SWEEP_SLOTS_MAX`] slots. Returns how many left.
    /// An object whose last write is not durable yet stays: dropping it
    /// would forget that its output must wait.
    pub fn sweep(&mut self, registry: &Registry, now_ms: u64, durable_seq: Seq) -> u64 {
        let mut evicted = 0;
        let n = self.slots.len();
        for _ in 0..n.min(SWEEP_SLOTS_MAX) {
            self.sweep_cursor = (self.sweep_cursor + 1) % n;
            let index = self.sweep_cursor;
            let idle = self.slots[index].as_ref().is_some_and(|s| {
                let timeout = registry.get(s.class).common.idle_timeout_ms;
                now_ms.saturating_sub(s.last_used_ms) >= timeout && s.last_write_seq <= durable_seq
            });
            if idle {
                self.remove(index as u32);
                evicted += 1;
            }
        }
        evicted
    }
}

fn gate_for(last_write_seq: Seq, store: &ShardStore) -> Option<Seq> {
    (last_write_seq > store.durable_seq()).then_some(last_write_seq)
}
