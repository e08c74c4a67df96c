//! durin's bundled load generator.
//!
//! `loadgen` drives a server over HTTP/1.1, durin's binary RPC or WebSocket
//! chat rooms from one
//! io_uring ring per thread, the way durin itself serves, so that the
//! generator is not the bottleneck of the benchmark it runs. Closed loop by default (each
//! connection sends its next request when a response arrives); `--rate`
//! switches to open loop with latency counted from each request's intended
//! send time. Keys for the URL's `{key}` (or the RPC object's name) come
//! from a uniform, Zipf or single-key distribution. Latencies go into per-thread HdrHistograms that
//! are merged at the end.
//!
//! ```text
//! loadgen http --url 'http://127.0.0.1:8080/ratelimit/{key}' --keys uniform:10000 \
//!     --connections 64 --duration 10s --json
//! loadgen rpc --addr 127.0.0.1:7070 --class ratelimit --method check \
//!     --keys uniform:10000 --connections 64 --duration 10s --pipeline 8 --shard-aware
//! loadgen ws --url 'ws://127.0.0.1:8080/chat/{room}/websocket' --rooms 100 \
//!     --clients-per-room 10 --senders all --duration 10s --json
//! ```
//!
//! The parts, in the order a request meets them: [`cli`] checks the flags
//! and [`target`] the URL; [`keys`] (with [`rng`] and [`zipf`]) picks each
//! key; [`request`] stamps out the request bytes; [`schedule`] says when an
//! open-loop request is due; [`worker`] runs its [`ring`] over [`conn`]ections;
//! [`response`] frames what comes back; [`stats`] counts it and [`report`]
//! prints it; [`run`] ties the threads together. The worker is generic over
//! the [`protocol`]: HTTP's is the template and the response reader above,
//! [`rpc`]'s the hello, frames and request-ID matching. WebSocket chat
//! load, whose rooms tie connections together, has its own worker in [`ws`].

pub mod cli;
pub mod conn;
pub mod duration;
pub mod keys;
pub mod protocol;
pub mod report;
pub mod request;
pub mod response;
pub mod ring;
pub mod rng;
pub mod rpc;
pub mod run;
pub mod schedule;
pub mod send_buffers;
pub mod socket;
pub mod stats;
pub mod target;
pub mod worker;
pub mod ws;
pub mod zipf;
