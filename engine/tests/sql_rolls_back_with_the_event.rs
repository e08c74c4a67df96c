//! SQL writes roll back with the event that made them, in a real server:
//! a handler that panics, and a `transaction_sync` whose closure fails a
//! check, leave none of their SQL or KV writes visible after.

mod common;

use durin::config::Config;
use durin::object::{Context, DurableObject, ObjectClass, Request, Response, TransactionError};
use durin::server::ServerBuilder;
use durin::sql::SqlValue;
use durin::ObjectId;

use common::{http_get, start_embedded};

struct Ledger;

impl Ledger {
    fn insert(ctx: &mut Context<'_>, v: i64) {
        ctx.sql()
            .exec("INSERT INTO entry (v) VALUES (?)", &[SqlValue::Integer(v)])
            .expect("insert");
        ctx.storage()
            .put(format!("kv-{v}").as_bytes(), b"x")
            .expect("put");
    }

    fn state(ctx: &mut Context<'_>) -> String {
        let rows = ctx
            .sql()
            .exec(
                "SELECT group_concat(v) FROM (SELECT v FROM entry ORDER BY v)",
                &[],
            )
            .expect("select");
        let keys = ctx.storage().list(&Default::default()).expect("list").len();
        format!("{:?} keys={keys}", rows.rows[0][0])
    }
}

impl DurableObject for Ledger {
    fn fetch(&mut self, req: &Request<'_>, res: &mut Response, ctx: &mut Context<'_>) {
        match req.path {
            "/ok" => Self::insert(ctx, 1),
            "/panic" => {
                Self::insert(ctx, 2);
                panic!("the handler fails after writing");
            }
            "/failed-check" => {
                Self::insert(ctx, 3);
                let r: Result<(), TransactionError<&str>> = ctx.transaction_sync(|ctx| {
                    Self::insert(ctx, 4);
                    Err("balance would go negative")
                });
                assert!(r.is_err());
            }
            _ => {}
        }
        let state = Self::state(ctx);
        res.text(200, &state);
    }
}

struct LedgerClass;

impl ObjectClass for LedgerClass {
    fn create(&self, _id: &ObjectId, ctx: &mut Context<'_>) -> Box<dyn DurableObject> {
        ctx.sql()
            .exec("CREATE TABLE IF NOT EXISTS entry (v INTEGER)", &[])
            .expect("schema");
        Box::new(Ledger)
    }
}

#[test]
fn a_panic_or_a_failed_transaction_sync_leaves_nothing_behind() {
    let server = start_embedded(
        ServerBuilder::new().class("ledger", LedgerClass),
        2,
        false,
        Config::default(),
    );
    let addr = server.addr();
    assert_eq!(
        http_get(addr, "/ledger/a/ok"),
        (200, "Text(\"1\") keys=1".into())
    );
    let (status, _) = http_get(addr, "/ledger/a/panic");
    assert_eq!(status, 500, "a panicking handler answers 500");
    assert_eq!(
        http_get(addr, "/ledger/a/state"),
        (200, "Text(\"1\") keys=1".into()),
        "nothing of the panicking event stays, and the object is rebuilt"
    );
    assert_eq!(
        http_get(addr, "/ledger/a/failed-check"),
        (200, "Text(\"1,3\") keys=2".into()),
        "the failed transaction_sync took back its own writes only"
    );
}
