//! Load over WebSocket: chat rooms with fan-out, every delivery timed.
//!
//! `R` rooms of `N` clients each connect to the server's chat endpoint
//! (`{room}` in the URL becomes `r0` .. `r<R-1>`, and each client adds
//! `name=c<i>`). Once every client has joined, the measured phase starts:
//! senders (all clients, one per room, or none) send text messages that
//! carry their send time, and each of the room's other clients times its
//! delivery. In closed loop a sender sends its next message once the last
//! has reached the whole room; with `--rate` messages leave on an open-loop
//! schedule and latency counts from their intended send time. With
//! `--senders none` the clients only connect and stay idle, which is how
//! the server's memory per idle connection is measured.
//!
//! ```text
//! loadgen ws --url 'ws://127.0.0.1:8080/chat/{room}/websocket' \
//!     --rooms 100 --clients-per-room 10 --senders all --duration 10s --json
//! loadgen ws --url 'ws://127.0.0.1:8080/chat/{room}/websocket' \
//!     --rooms 1000 --clients-per-room 100 --senders none --duration 60s
//! ```
//!
//! The parts: [`plan`] checks the flags; [`handshake`] and [`frame`] speak
//! RFC 6455 (client side, masked frames); [`chat`] writes and reads the
//! chat's messages; [`worker`] runs a thread's phases and [`io`] its ring,
//! with receive buffers from a shared [`pool`], [`client`] holds one
//! client's state and [`traffic`] decides what is sent and when; [`stats`]
//! counts, [`report`] prints and [`run`] ties the threads together.

pub mod chat;
pub mod client;
pub mod frame;
pub mod handshake;
pub mod io;
pub mod plan;
pub mod pool;
pub mod report;
pub mod run;
pub mod stats;
pub mod traffic;
pub mod worker;

pub use plan::{WsArgs, WsRun};
pub use run::run_ws;
