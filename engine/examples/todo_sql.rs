//! A per-user todo list on SQL storage: each user is an object with its
//! own SQLite database (a table and an index), and every answer that
//! follows a change is sent only once the change is durable.
//!
//! Run: `cargo run --release -p durin --example todo_sql`, then
//! `curl -X POST localhost:8080/todo/ada/add -d 'buy milk'`,
//! `curl -X POST localhost:8080/todo/ada/done/1` and
//! `curl localhost:8080/todo/ada`.

use durin::config::Config;
use durin::object::{Context, DurableObject, ObjectClass, Request, Response};
use durin::server::{ServerBuilder, ServerOptions};
use durin::sql::{SqlError, SqlValue};
use durin::ObjectId;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Longest todo text accepted.
const TEXT_BYTES_MAX: usize = 1024;
/// Most todos listed at once.
const LIST_MAX: usize = 100;

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS todo (
        id INTEGER PRIMARY KEY,
        text TEXT NOT NULL,
        done INTEGER NOT NULL DEFAULT 0,
        created_ms INTEGER NOT NULL);
    CREATE INDEX IF NOT EXISTS todo_open ON todo (done, created_ms);";

struct Todos;

impl Todos {
    fn add(&self, text: &str, ctx: &mut Context<'_>) -> Result<i64, SqlError> {
        let now = ctx.now_ms() as i64;
        let rows = ctx.sql().exec(
            "INSERT INTO todo (text, created_ms) VALUES (?, ?) RETURNING id",
            &[SqlValue::Text(text.to_string()), SqlValue::Integer(now)],
        )?;
        Ok(match rows.rows.first().and_then(|r| r.first()) {
            Some(SqlValue::Integer(id)) => *id,
            _ => 0,
        })
    }

    fn list(&self, ctx: &mut Context<'_>) -> Result<String, SqlError> {
        // The index serves this: open todos first, oldest first.
        let rows = ctx.sql().exec(
            "SELECT id, text, done FROM todo ORDER BY done, created_ms LIMIT ?",
            &[SqlValue::Integer(LIST_MAX as i64)],
        )?;
        let mut out = String::new();
        for row in &rows.rows {
            if let [SqlValue::Integer(id), SqlValue::Text(text), SqlValue::Integer(done)] = &row[..]
            {
                let mark = if *done != 0 { "x" } else { " " };
                out.push_str(&format!("[{mark}] {id}: {text}\n"));
            }
        }
        Ok(out)
    }
}

impl DurableObject for Todos {
    fn fetch(&mut self, req: &Request<'_>, res: &mut Response, ctx: &mut Context<'_>) {
        let result = match (req.method, req.path) {
            ("POST", "/add") => match std::str::from_utf8(req.body) {
                Ok(text) if !text.is_empty() && text.len() <= TEXT_BYTES_MAX => {
                    self.add(text, ctx).map(|id| format!("added {id}\n"))
                }
                _ => {
                    res.text(400, "the body must be 1 to 1024 bytes of UTF-8");
                    return;
                }
            },
            ("POST", path) if path.starts_with("/done/") => {
                let id = path["/done/".len()..].parse::<i64>().unwrap_or(-1);
                ctx.sql()
                    .exec(
                        "UPDATE todo SET done = 1 WHERE id = ?",
                        &[SqlValue::Integer(id)],
                    )
                    .map(|r| format!("{} updated\n", r.rows_written))
            }
            ("GET", "") => self.list(ctx),
            _ => {
                res.text(404, "Not found");
                return;
            }
        };
        match result {
            Ok(text) => res.text(200, &text),
            Err(e) => res.text(500, &e.to_string()),
        };
    }
}

struct TodosClass;

impl ObjectClass for TodosClass {
    fn create(&self, _id: &ObjectId, ctx: &mut Context<'_>) -> Box<dyn DurableObject> {
        // The schema is created on first use; its pages commit with the
        // object's first event.
        if let Err(e) = ctx.sql().exec(SCHEMA, &[]) {
            eprintln!("todo schema: {e}");
        }
        Box::new(Todos)
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let server = ServerBuilder::new() // the built-in classes stay available
        .class("todo", TodosClass)
        .start(ServerOptions::default(), Config::default())?;
    println!("durin listening on http://{}", server.addr());
    server.wait();
    Ok(())
}
