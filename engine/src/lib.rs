//! durin: a thread-per-core engine for the Durable Objects model.
//!
//! Every object has a class and an ID; exactly one instance per ID lives,
//! on the shard (a pinned thread with its own io_uring ring, store and
//! timer wheel) that owns the ID. It runs one event at a time and has
//! transactional storage of its own; what it sends after a write waits
//! until the write is durable.
//!
//! Embedding: register your own classes beside the built-in ones.
//!
//! ```no_run
//! use durin::object::{Context, DurableObject, ObjectClass, Request, Response};
//! use durin::server::{ServerBuilder, ServerOptions};
//! use durin::{config::Config, ObjectId};
//!
//! struct Hello;
//! impl DurableObject for Hello {
//!     fn fetch(&mut self, _req: &Request<'_>, res: &mut Response, ctx: &mut Context<'_>) {
//!         let id = ctx.id().to_hex();
//!         res.text(200, &format!("hello from {id}"));
//!     }
//! }
//! struct HelloClass;
//! impl ObjectClass for HelloClass {
//!     fn create(&self, _id: &ObjectId, _ctx: &mut Context<'_>) -> Box<dyn DurableObject> {
//!         Box::new(Hello)
//!     }
//! }
//!
//! let server = ServerBuilder::new().class("hello", HelloClass)
//!     .start(ServerOptions::default(), Config::default())?;
//! server.wait();
//! # Ok::<(), durin::server::ServerError>(())
//! ```

pub mod classes;
pub mod config;
pub use durin_proto::id;
pub mod keys;
pub mod mesh;
pub mod metrics;
pub mod object;
pub mod registry;
pub mod server;
pub mod shard;
pub mod shrink;
pub mod sql;
pub mod timer;

pub use id::ObjectId;

/// The README's Rust examples compile as doctests, so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;
