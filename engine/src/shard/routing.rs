//! Where a request for an object goes: one function for binary RPC
//! requests and calls between objects, so both get the same checks.

use durin_proto::rpc::{status, ObjectRef, RequestHeader};

use super::Shard;
use crate::ObjectId;

/// Longest object name, after percent-decoding (HTTP paths, RPC requests
/// and calls alike).
pub const OBJECT_NAME_BYTES_MAX: usize = 512;

/// Where an RPC request or a call goes.
pub(super) enum Route {
    Local { class: u16, id: ObjectId },
    Remote { owner: u32 },
    Error { status: u16, message: String },
}

impl Shard {
    /// Where an RPC request, or a call between objects, goes: the owner
    /// of its object, or why there is none.
    pub(super) fn route_rpc(&self, header: &RequestHeader) -> Route {
        let Some((class, _)) = self.registry.find(&header.class) else {
            return Route::Error {
                status: status::UNKNOWN_CLASS,
                message: format!("no class `{}`", header.class),
            };
        };
        let id = match &header.object {
            ObjectRef::Name(name) if name.len() > OBJECT_NAME_BYTES_MAX => {
                return Route::Error {
                    status: status::BAD_OBJECT,
                    message: format!("object name longer than {OBJECT_NAME_BYTES_MAX} bytes"),
                }
            }
            ObjectRef::Name(name) => ObjectId::from_name(&header.class, name),
            ObjectRef::Id(bytes) => ObjectId(*bytes),
        };
        let owner = self.store.layout().shard_of(&id.0, self.shards);
        if owner == self.index {
            Route::Local { class, id }
        } else {
            Route::Remote { owner }
        }
    }
}
