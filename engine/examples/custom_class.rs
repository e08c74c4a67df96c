//! Embedding durin with a class of your own.
//!
//! Run: `cargo run --release -p durin --example custom_class`, then
//! `curl -X POST 'localhost:8080/guestbook/main/sign?name=ada'` and
//! `curl localhost:8080/guestbook/main`.
//!
//! A guestbook object keeps its signatures in its own storage; every
//! response that follows a signature is sent only once the signature is
//! durable, so an acknowledged signature survives a crash.

use durin::config::Config;
use durin::object::{Context, DurableObject, ObjectClass, Request, Response};
use durin::server::{ServerBuilder, ServerOptions};
use durin::ObjectId;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Most signatures a guestbook keeps: every collection has a limit.
const SIGNATURES_MAX: usize = 1000;
/// Longest name accepted.
const NAME_BYTES_MAX: usize = 64;

struct Guestbook {
    names: Vec<String>,
}

impl Guestbook {
    fn save(&self, ctx: &mut Context<'_>) -> Result<(), durin::object::StorageError> {
        ctx.storage()
            .put(b"names", self.names.join("\n").as_bytes())
    }
}

impl DurableObject for Guestbook {
    fn fetch(&mut self, req: &Request<'_>, res: &mut Response, ctx: &mut Context<'_>) {
        match (req.method, req.path) {
            ("POST", "/sign") => {
                let name = req
                    .query
                    .and_then(|q| q.strip_prefix("name="))
                    .unwrap_or("anonymous");
                if name.len() > NAME_BYTES_MAX || name.contains('\n') {
                    res.text(400, "name too long");
                } else if self.names.len() >= SIGNATURES_MAX {
                    res.text(409, "the guestbook is full");
                } else {
                    self.names.push(name.to_string());
                    if let Err(e) = self.save(ctx) {
                        // Nothing was written: forget the name again.
                        self.names.pop();
                        res.text(507, &e.to_string());
                        return;
                    }
                    res.text(200, &format!("signed; {} signatures", self.names.len()));
                }
            }
            ("GET", "") => {
                res.text(200, &self.names.join("\n"));
            }
            _ => {
                res.text(404, "Not found");
            }
        }
    }
}

struct GuestbookClass;

impl ObjectClass for GuestbookClass {
    fn create(&self, _id: &ObjectId, ctx: &mut Context<'_>) -> Box<dyn DurableObject> {
        let stored = ctx
            .storage()
            .get(b"names")
            .ok()
            .flatten()
            .unwrap_or_default();
        let text = String::from_utf8_lossy(&stored);
        let names = text
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect();
        Box::new(Guestbook { names })
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let server = ServerBuilder::new() // the built-in classes stay available
        .class("guestbook", GuestbookClass)
        .start(ServerOptions::default(), Config::default())?;
    println!("durin listening on http://{}", server.addr());
    server.wait();
    Ok(())
}
