//! Per-shard counters, exported at `GET /metrics` in Prometheus text format.
//!
//! Each shard writes only its own counters (a plain load and store, no
//! locked instruction); any shard may read all of them to answer a scrape.

use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! shard_metrics {
    ($( $(#[$doc:meta])* $name:ident ),* $(,)?) => {
        /// Counters of one shard.
        #[derive(Default)]
        pub struct ShardMetrics {
            $( $(#[$doc])* pub $name: AtomicU64, )*
        }

        impl ShardMetrics {
            /// Appends every counter of every shard to `out`.
            pub fn render(shards: &[std::sync::Arc<ShardMetrics>], out: &mut String) {
                use std::fmt::Write;
                $(
                    let _ = writeln!(out, "# TYPE durin_{} {}", stringify!($name),
                        if stringify!($name).ends_with("_total") { "counter" } else { "gauge" });
                    for (shard, m) in shards.iter().enumerate() {
                        let _ = writeln!(out, "durin_{}{{shard=\"{}\"}} {}", stringify!($name), shard,
                            m.$name.load(Ordering::Relaxed));
                    }
                )*
            }
        }
    };
}

shard_metrics! {
    /// HTTP requests parsed on this shard.
    http_requests_total,
    /// Binary RPC requests read on this shard.
    rpc_requests_total,
    /// Calls objects of this shard made to other objects.
    calls_made_total,
    /// Calls that got no reply within `call_timeout_ms`.
    calls_timed_out_total,
    /// Calls from other objects served by objects of this shard.
    calls_served_total,
    /// Requests this shard sent to the shard owning their object.
    requests_forwarded_total,
    /// Requests other shards sent to this one.
    requests_received_from_peers_total,
    /// Responses held by the output gate until a write was durable.
    responses_gated_total,
    /// Requests answered 4xx for bad input (400, 408, 411, 413, 431).
    bad_requests_total,
    /// Handler panics caught (answered 500; the object was dropped).
    handler_panics_total,
    /// Alarms whose handler ran.
    alarms_fired_total,
    /// Failed alarms scheduled again with backoff.
    alarms_retried_total,
    /// Alarms dropped after their last retry failed.
    alarms_abandoned_total,
    /// Objects constructed.
    objects_created_total,
    /// Objects evicted from memory after being idle.
    objects_evicted_total,
    /// Objects that left memory while their WebSockets stayed open.
    objects_hibernated_total,
    /// Objects in memory now.
    objects_live,
    /// Objects the shard's object table holds memory for (it shrinks once
    /// most have left).
    objects_capacity,
    /// Bytes in fjall's memtables of this shard's partitions (written, not
    /// yet flushed to tables).
    storage_memtable_bytes,
    /// Bytes in the block caches of this shard's partitions.
    storage_cache_bytes,
    /// Connections accepted.
    connections_accepted_total,
    /// Connections refused because the shard was at its connection cap.
    connections_rejected_total,
    /// Accepts that failed because the process or the system had no file
    /// descriptor left (EMFILE, ENFILE); each pauses accepting a while.
    accept_fd_exhausted_total,
    /// Connections open now.
    connections_open,
    /// Connections closed by a header or idle timeout.
    connections_timed_out_total,
    /// Connections moved to the shard owning the object whose WebSocket
    /// they asked for.
    connections_handed_off_total,
    /// WebSocket upgrades accepted.
    websocket_upgrades_total,
    /// WebSockets open now.
    websockets_open,
    /// Whole WebSocket messages received.
    websocket_messages_received_total,
    /// WebSocket messages sent.
    websocket_messages_sent_total,
    /// Messages answered by an auto-response, without waking the object.
    websocket_auto_responses_total,
    /// WebSockets failed for a protocol error (1002), invalid UTF-8 (1007)
    /// or a message over the limit (1009).
    websocket_protocol_errors_total,
    /// WebSockets closed because their reader fell too far behind (1008).
    websocket_slow_readers_closed_total,
    /// Storage writes made by objects.
    storage_writes_total,
    /// Groups made durable (one log write and sync each).
    storage_groups_committed_total,
    /// Writes in those groups, after deduplication.
    storage_group_writes_committed_total,
    /// Nanoseconds the applier spent inserting durable groups into fjall.
    storage_apply_ns_total,
    /// Bytes of group records written to the shard's log.
    storage_log_bytes_total,
    /// SQL connections open (objects that used SQL and are not idle).
    sql_connections_open,
    /// Loop turns.
    loop_turns_total,
    /// Times the loop blocked waiting for the ring.
    loop_sleeps_total,
}

/// Adds `n` to a counter only its own shard writes.
#[inline]
pub fn add(counter: &AtomicU64, n: u64) {
    counter.store(
        counter.load(Ordering::Relaxed).wrapping_add(n),
        Ordering::Relaxed,
    );
}

/// Sets a gauge only its own shard writes.
#[inline]
pub fn set(gauge: &AtomicU64, value: u64) {
    gauge.store(value, Ordering::Relaxed);
}

/// Counters of a built-in class (`durin_{prefix}_{name}`), kept per
/// thread so that shards share nothing: an event adds to its own shard's
/// copy with a plain load and store, and a scrape sums every thread's.
///
/// ```ignore
/// class_metrics! { QueueMetrics, "queue", {
///     /// Messages appended.
///     appended_total,
/// } }
/// QueueMetrics::add(|m| &m.appended_total, 1);
/// ```
macro_rules! class_metrics {
    ($type:ident, $prefix:literal, { $( $(#[$doc:meta])* $name:ident ),* $(,)? }) => {
        /// One thread's counters of the class.
        #[derive(Default)]
        pub struct $type {
            $( $(#[$doc])* pub $name: std::sync::atomic::AtomicU64, )*
        }

        impl $type {
            /// Every thread's copy (a thread registers its own on first
            /// use; copies of threads that ended still count).
            fn all() -> &'static std::sync::Mutex<Vec<std::sync::Arc<$type>>> {
                static ALL: std::sync::Mutex<Vec<std::sync::Arc<$type>>> =
                    std::sync::Mutex::new(Vec::new());
                &ALL
            }

            /// Adds `n` to the counter `pick` chooses, in this thread's copy.
            #[inline]
            pub fn add(pick: impl FnOnce(&$type) -> &std::sync::atomic::AtomicU64, n: u64) {
                thread_local! {
                    static MINE: std::sync::Arc<$type> = {
                        let mine = std::sync::Arc::new($type::default());
                        $type::all()
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push(std::sync::Arc::clone(&mine));
                        mine
                    };
                }
                MINE.with(|mine| $crate::metrics::add(pick(mine), n));
            }

            /// Takes `n` from a gauge (the sum over threads stays right
            /// when what one thread adds, another takes away).
            #[inline]
            #[allow(dead_code)]
            pub fn sub(pick: impl FnOnce(&$type) -> &std::sync::atomic::AtomicU64, n: u64) {
                $type::add(pick, n.wrapping_neg());
            }

            /// Appends the sum of every thread's counters to `out`, in
            /// Prometheus text format.
            pub fn render(out: &mut String) {
                use std::fmt::Write;
                let all = $type::all().lock().unwrap_or_else(|e| e.into_inner());
                $(
                    let name = stringify!($name);
                    let kind = if name.ends_with("_total") { "counter" } else { "gauge" };
                    let sum = all
                        .iter()
                        .map(|m| m.$name.load(std::sync::atomic::Ordering::Relaxed))
                        .fold(0u64, u64::wrapping_add);
                    let _ = writeln!(out, "# TYPE durin_{}_{name} {kind}", $prefix);
                    let _ = writeln!(out, "durin_{}_{name} {sum}", $prefix);
                )*
            }
        }
    };
}
pub(crate) use class_metrics;
