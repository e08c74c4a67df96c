//! Integration tests that start the real `durin` binary and talk to it over
//! HTTP/1.1, one server per test, each on its own port and data directory.
//!
//! Each module is named for the behaviour it pins down. The harness lives in
//! `harness.rs`; it owns the child process, a tiny blocking HTTP/1.1 client
//! and a minimal JSON reader, so the tests depend on no HTTP or JSON crate.

mod harness;

mod alarm_retries;
mod alarms;
mod bad_input;
mod browser_chat;
mod browser_editor;
mod cache_coordinator;
mod chat_room;
mod cli_validation;
mod connection_cap;
mod counter_basics;
mod counter_histories_are_linearizable;
mod counter_survives_sigkill;
mod crash_keeps_acknowledged_writes;
mod cross_shard_concurrency;
mod full_disk_keeps_acknowledged_writes;
mod header_timeout;
mod hostile_clients;
mod hot_key_sharding;
mod http_keepalive_pipelining;
mod idle_objects_leave_memory;
mod kv_client;
mod kv_delete_all;
mod kv_keys;
mod kv_limits;
mod kv_list;
mod kv_survives_sigkill;
mod kv_transaction;
mod linearizability;
mod object_ids;
mod object_names;
mod queue_basics;
mod queue_client;
mod queue_ordering;
mod queue_push;
mod queue_survives_sigkill;
mod queue_websocket;
mod ratelimit_algorithms;
mod ratelimit_config;
mod ratelimit_survives_sigkill;
mod ratelimit_window;
mod restart_with_other_core_count;
mod rpc;
mod sigterm_drains;
mod sql_api;
mod sql_matches_sqlite;
mod sql_objects_open_no_files;
mod sql_survives_sigkill;
mod startup_and_health;
mod unknown_routes;
mod websocket_hibernation;
mod websocket_protocol;
mod ws_client;
mod yjs_clients;
mod yjs_protocol;
