//! Load over durin's binary RPC protocol ([`durin_proto::rpc`]).
//!
//! Each connection says hello first and takes requests once the server
//! accepts; a refusal fails the attempt (counted as `refused`). Every
//! request calls one class's method with one payload on the object named
//! by the next key (`k<i>` or `hot`, the same names `loadgen http` puts in
//! a URL, so both protocols reach the same objects). With `--pipeline N`,
//! N requests are in flight per connection and responses, which the
//! server may send in any order, are matched by request ID. With
//! `--shard-aware`, connections go to the shards' own ports with only the
//! keys each owns ([`shards`]).
//!
//! ```text
//! loadgen rpc --addr 127.0.0.1:7070 --class ratelimit --method check \
//!     --keys uniform:10000 --connections 64 --duration 10s --pipeline 8 --shard-aware
//! ```
//!
//! A response whose status is not `OK` counts as `rpc_status_<n>`. For
//! `ratelimit.check` the decision is decoded and denials are counted apart
//! (`denied`): the server answered, so they are not errors.

pub mod plan;
pub mod recv;
pub mod session;
pub mod shards;
pub mod table;

pub use plan::{run_rpc, RpcRun};
pub use session::Rpc;

const _: () = assert!(crate::cli::PIPELINE_MAX as usize <= table::IN_FLIGHT_MAX);
