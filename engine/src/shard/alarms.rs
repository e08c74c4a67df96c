//! Alarms on a shard: the index in storage, the near future in the wheel.
//!
//! Every object's alarm is a record beside its data plus an entry in the
//! partition's alarm index, ordered by time. The shard keeps only the
//! alarms due within [`ALARM_WINDOW_MS`] in its timer wheel: a periodic
//! scan moves index entries into the wheel as they come near, so a million
//! alarms set for next month cost index entries on disk and nothing in
//! memory. At start the first scan also finds every alarm that came due
//! while the server was down, and they fire at once.
//!
//! Firing is at least once. A handler that fails (returns an error or
//! panics) is retried with exponential backoff from 2 s (the class's
//! `alarm_retry_backoff_ms`), up to 6 retries, unless the class sets
//! `alarm_retry = false`.

use std::ops::Bound;

use super::{Shard, Timer};
use crate::keys;
use crate::metrics;
use crate::object::storage::{clear_alarm, read_alarm, write_alarm, AlarmRecord};
use crate::ObjectId;

/// Alarms due within this window are held in the timer wheel.
pub const ALARM_WINDOW_MS: u64 = 60_000;
/// How often the index is scanned for alarms coming into the window.
pub const ALARM_SCAN_INTERVAL_MS: u64 = 1_000;
/// Most index entries one scan moves into the wheel; the rest wait for the
/// next scan.
pub const ALARM_SCAN_ENTRIES_MAX: usize = 100_000;
/// Retries of a failing alarm (the first backoff is per class, 2 s by
/// default, doubling after each failure).
pub const ALARM_RETRIES_MAX: u32 = 6;

impl Shard {
    /// Puts an alarm just set by an object into the wheel if the scan has
    /// already passed its time; otherwise a later scan will.
    pub(super) fn schedule_alarm(&mut self, _class: u16, id: ObjectId, at_ms: u64) {
        if at_ms < self.alarms_scanned_until_ms {
            let deadline = self.mono_ms + at_ms.saturating_sub(self.wall_ms);
            self.timers.insert(deadline, Timer::Alarm { id, at_ms });
        }
    }

    /// Moves index entries due before now + [`ALARM_WINDOW_MS`] into the
    /// wheel.
    pub(super) fn scan_alarms(&mut self) {
        let until = self.wall_ms + ALARM_WINDOW_MS;
        let from = keys::alarm_index_from(self.alarms_scanned_until_ms);
        let to = keys::alarm_index_from(until);
        let mut due = Vec::new();
        let partitions: Vec<u32> = self.store.owned_partitions().collect();
        for partition in partitions {
            let range = (Bound::Included(&from[..]), Bound::Excluded(&to[..]));
            let scanned = self
                .store
                .scan_partition(partition, range, false, |key, _| {
                    if let Some(entry) = keys::parse_alarm_index_key(key) {
                        due.push(entry);
                    }
                    due.len() < ALARM_SCAN_ENTRIES_MAX
                });
            if let Err(e) = scanned {
                log::error!("shard {}: scanning the alarm index: {e}", self.index);
                return;
            }
        }
        let mut scanned_until = until;
        if due.len() >= ALARM_SCAN_ENTRIES_MAX {
            // Entries at the last time seen may be cut off; the next scan
            // starts there again (a duplicate in the wheel fires once: the
            // first run clears the record the second one checks).
            scanned_until = due.iter().map(|(at, _)| *at).max().unwrap_or(until);
        }
        for (at_ms, id) in due {
            let deadline = self.mono_ms + at_ms.saturating_sub(self.wall_ms);
            self.timers.insert(deadline, Timer::Alarm { id, at_ms });
        }
        self.alarms_scanned_until_ms = scanned_until;
    }

    /// Runs the alarm of `id` due at `at_ms`, if it is still set for then.
    pub(super) fn fire_alarm(&mut self, id: ObjectId, at_ms: u64) {
        if self.wall_ms < at_ms {
            // The wheel runs on the monotonic clock; the two clocks can
            // disagree by a rounding or a step of the wall clock. Never run
            // an alarm before its time: wait for the rest.
            let deadline = self.mono_ms + (at_ms - self.wall_ms);
            self.timers.insert(deadline, Timer::Alarm { id, at_ms });
            return;
        }
        let record = match read_alarm(&self.store, &id) {
            Ok(Some(record)) if record.at_ms == at_ms => record,
            // Deleted, or moved to another time (which has its own entry).
            Ok(_) => return,
            Err(e) => {
                log::error!("shard {}: alarm of {id}: {e}", self.index);
                return;
            }
        };
        let Some((class, entry)) = self.registry.find(&record.class) else {
            log::warn!(
                "shard {}: alarm of {id} belongs to class `{}`, which is not registered",
                self.index,
                record.class
            );
            return;
        };
        let (retry, backoff_first_ms) = (
            entry.common.alarm_retry,
            entry.common.alarm_retry_backoff_ms,
        );
        metrics::add(&self.metrics.alarms_fired_total, 1);
        let outcome = self
            .objects
            .run(event_env!(self), class, id, |object, ctx| object.alarm(ctx));
        // An alarm has no response of its own to defer.
        self.effects.deferred = None;
        self.after_event(class, id, &outcome);
        if outcome.alarm_set.is_some() {
            // The handler set its next alarm (scheduled above); that one stands.
            return;
        }
        let succeeded = matches!(outcome.result, Some(Ok(())));
        if let Some(Err(e)) = &outcome.result {
            log::debug!("shard {}: alarm of {id} failed: {e}", self.index);
        }
        // The handler may have deleted the alarm itself.
        let current = match read_alarm(&self.store, &id) {
            Ok(Some(current)) if current.at_ms == at_ms => current,
            _ => return,
        };
        if !succeeded && retry && current.retries < ALARM_RETRIES_MAX {
            metrics::add(&self.metrics.alarms_retried_total, 1);
            let backoff = backoff_first_ms.saturating_mul(1 << current.retries);
            let next = AlarmRecord {
                at_ms: self.wall_ms + backoff,
                retries: current.retries + 1,
                class: record.class,
            };
            write_alarm(&mut self.store, &id, Some(&current), &next);
            self.schedule_alarm(class, id, next.at_ms);
        } else {
            if !succeeded {
                metrics::add(&self.metrics.alarms_abandoned_total, 1);
                log::warn!(
                    "shard {}: alarm of {id} failed {} times; giving up",
                    self.index,
                    current.retries + 1
                );
            }
            clear_alarm(&mut self.store, &id, &current);
        }
    }
}
