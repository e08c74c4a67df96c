//! The `doc` class's plain HTTP routes: the document, a diff against a
//! state vector, and updates posted.

use base64::Engine as _;

use super::{ydoc, DocRoom};
use crate::object::{Context, Request, Response, StorageError};

impl DocRoom {
    pub(super) fn get_state_vector(&mut self, res: &mut Response, ctx: &mut Context<'_>) {
        match self.loaded(ctx) {
            Ok(doc) => {
                let sv = doc.state_vector();
                binary(res, &sv);
            }
            Err(e) => storage_failed(res, &e),
        }
    }

    pub(super) fn get_doc(&mut self, req: &Request<'_>, res: &mut Response, ctx: &mut Context<'_>) {
        let sv = match req.query_param("sv") {
            None => yrs::StateVector::default(),
            Some(text) => match decode_base64(&text).map(|b| ydoc::decode_state_vector(&b)) {
                Some(Ok(sv)) => sv,
                _ => {
                    res.text(400, "sv must be a base64-encoded v1 state vector");
                    return;
                }
            },
        };
        match self.loaded(ctx) {
            Ok(doc) => {
                let update = doc.diff(&sv);
                binary(res, &update);
            }
            Err(e) => storage_failed(res, &e),
        }
    }

    pub(super) fn post_update(
        &mut self,
        req: &Request<'_>,
        res: &mut Response,
        ctx: &mut Context<'_>,
    ) {
        match self.take_update(None, req.body, ctx) {
            Ok(()) => {
                res.status(204);
            }
            Err(e) => {
                res.text(e.http_status(), &e.to_string());
            }
        }
    }
}

/// Standard or URL-safe base64, padded or not (a `+` that a query string
/// turned into a space counts as `+`).
fn decode_base64(text: &str) -> Option<Vec<u8>> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    let text = text.replace(' ', "+");
    [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
        .iter()
        .find_map(|engine| engine.decode(&text).ok())
}

fn binary(res: &mut Response, bytes: &[u8]) {
    res.status(200)
        .content_type("application/octet-stream")
        .body(bytes);
}

pub(super) fn storage_failed(res: &mut Response, e: &StorageError) {
    log::warn!("doc: storage failed: {e}");
    res.text(500, "storage failed");
}
