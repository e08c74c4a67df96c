//! SQL storage against its promises: results identical to a file-backed
//! SQLite, rollback with the event, the guard rails and the limits.

use super::*;
use crate::object::{Context, Effects, StorageLimits};
use crate::ObjectId;
use durin_storage::{wal, Layout, ShardStore, StoreOptions, WalProgress};

fn open_store(dir: &std::path::Path) -> ShardStore {
    let layout = Layout::open_or_create(dir, 1).expect("layout");
    wal::recover(&layout).expect("recover");
    ShardStore::open(&layout, 0, 1, StoreOptions::default(), Box::new(|| {})).expect("open")
}

/// Makes the open group durable the way a shard's ring would, then lets
/// the applier move it into fjall, so later reads come from fjall.
fn make_durable(store: &mut ShardStore) {
    let Some(write) = store.flush() else {
        return;
    };
    // SAFETY: the store keeps `ptr..ptr+len` alive until the sync is
    // reported; `fd` is its open log segment.
    let written = unsafe {
        libc::pwrite(
            write.fd,
            write.ptr.cast(),
            write.len as usize,
            write.offset as i64,
        )
    };
    assert_eq!(written, write.len as isize, "pwrite to the log");
    store
        .on_wal_write(write.seq, written as i32)
        .expect("write completes");
    // SAFETY: fdatasync on the store's open log descriptor.
    let synced = unsafe { libc::fdatasync(write.fd) };
    let progress = store.on_wal_sync(write.seq, synced).expect("sync");
    assert!(matches!(progress, WalProgress::Durable));
    for _ in 0..1000 {
        store.poll_applier().expect("applier");
        if store.is_settled() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// One object and its connection, run event by event as a shard would.
struct Harness {
    store: ShardStore,
    db: Option<SqlDb>,
    id: ObjectId,
    limits: StorageLimits,
    sql_limits: SqlLimits,
}

impl Harness {
    fn new(store: ShardStore) -> Self {
        Harness {
            store,
            db: None,
            id: ObjectId::from_name("sql", b"object"),
            limits: StorageLimits::default(),
            // Semantics, not speed: a debug build on a busy machine can
            // take longer than the default budget over thousands of
            // pages. The tests of the budget set their own.
            sql_limits: SqlLimits {
                statement_time_ms: 10_000,
                ..SqlLimits::DEFAULT
            },
        }
    }

    /// Runs `f` as one event; commits its SQL at the end, or rolls the
    /// event back if `f` returns `Err` (as a panicking handler would be).
    fn event<R>(&mut self, f: impl FnOnce(&mut Context<'_>) -> R) -> R {
        let savepoint = self.store.savepoint();
        let mut effects = Effects::default();
        let mut ctx = Context::new(
            self.id,
            "sql",
            1_000,
            &mut self.store,
            &self.limits,
            None,
            &mut effects,
        )
        .with_sql(&mut self.db, &self.sql_limits);
        let r = f(&mut ctx);
        let end = end_event(&mut ctx);
        crate::object::storage::persist_size(&mut ctx);
        drop(ctx);
        match end {
            EventEnd::Committed => {}
            EventEnd::Lost | EventEnd::Failed(_) => {
                self.store.rollback_to(savepoint);
                self.db = None;
            }
        }
        self.store.release();
        r
    }

    /// Like a panicking handler: the event's writes are rolled back and
    /// the connection dropped.
    fn failed_event(&mut self, f: impl FnOnce(&mut Context<'_>)) {
        let savepoint = self.store.savepoint();
        let mut effects = Effects::default();
        let mut ctx = Context::new(
            self.id,
            "sql",
            1_000,
            &mut self.store,
            &self.limits,
            None,
            &mut effects,
        )
        .with_sql(&mut self.db, &self.sql_limits);
        f(&mut ctx);
        drop(ctx);
        if let Some(db) = self.db.take() {
            close(db, &mut self.store);
        }
        self.store.rollback_to(savepoint);
        self.store.release();
    }

    fn exec(&mut self, query: &str, params: &[SqlValue]) -> Result<SqlRows, SqlError> {
        self.event(|ctx| ctx.sql().exec(query, params))
    }

    fn evict(&mut self) {
        self.db = None;
    }
}

fn text(s: &str) -> SqlValue {
    SqlValue::Text(s.to_string())
}

#[test]
fn rows_written_in_one_event_are_read_back_in_the_next() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut h = Harness::new(open_store(dir.path()));
    h.exec(
        "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, data BLOB)",
        &[],
    )
    .expect("create");
    let inserted = h
        .exec(
            "INSERT INTO t (name, data) VALUES (?, ?), (?, NULL)",
            &[text("a"), SqlValue::Blob(vec![0, 1, 2]), text("b")],
        )
        .expect("insert");
    assert_eq!(inserted.rows_written, 2);
    h.evict();
    let rows = h
        .exec("SELECT id, name, data FROM t ORDER BY id", &[])
        .expect("select");
    assert_eq!(rows.column_names, ["id", "name", "data"]);
    assert_eq!(
        rows.rows,
        vec![
            vec![
                SqlValue::Integer(1),
                text("a"),
                SqlValue::Blob(vec![0, 1, 2])
            ],
            vec![SqlValue::Integer(2), text("b"), SqlValue::Null],
        ]
    );
    assert_eq!(rows.rows_read, 2);
    let size = h.event(|ctx| ctx.sql().database_size()).expect("size");
    assert_eq!(
        size,
        2 * PAGE_BYTES as u64,
        "the schema page and the table's"
    );
}

#[test]
fn a_failed_event_leaves_neither_its_sql_nor_its_kv_writes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut h = Harness::new(open_store(dir.path()));
    h.exec("CREATE TABLE t (v INTEGER)", &[]).expect("create");
    h.failed_event(|ctx| {
        ctx.sql()
            .exec("INSERT INTO t VALUES (1)", &[])
            .expect("insert");
        ctx.storage().put(b"k", b"v").expect("put");
    });
    let rows = h.exec("SELECT count(*) FROM t", &[]).expect("count");
    assert_eq!(rows.rows, vec![vec![SqlValue::Integer(0)]]);
    let kv = h.event(|ctx| ctx.storage().get(b"k").expect("get"));
    assert_eq!(kv, None);
}

#[test]
fn an_error_inside_transaction_sync_rolls_back_its_sql_and_kv_writes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut h = Harness::new(open_store(dir.path()));
    h.exec("CREATE TABLE t (v INTEGER UNIQUE)", &[])
        .expect("create");
    h.event(|ctx| {
        ctx.sql()
            .exec("INSERT INTO t VALUES (1)", &[])
            .expect("insert before");
        let failed: Result<(), TransactionError<SqlError>> = ctx.transaction_sync(|ctx| {
            ctx.sql().exec("INSERT INTO t VALUES (2)", &[])?;
            ctx.storage().put(b"inside", b"x").expect("put");
            // A nested level that succeeds is still undone with its parent.
            ctx.transaction_sync(|ctx| ctx.sql().exec("INSERT INTO t VALUES (3)", &[]))
                .map_err(|TransactionError::Aborted(e)| e)?;
            // A failed check: the unique constraint.
            ctx.sql().exec("INSERT INTO t VALUES (1)", &[])?;
            Ok(())
        });
        assert!(failed.is_err());
        let kept: Result<(), TransactionError<SqlError>> = ctx.transaction_sync(|ctx| {
            ctx.sql().exec("INSERT INTO t VALUES (4)", &[])?;
            Ok(())
        });
        assert!(kept.is_ok());
        assert_eq!(ctx.storage().get(b"inside").expect("get"), None);
    });
    h.evict();
    let rows = h.exec("SELECT v FROM t ORDER BY v", &[]).expect("select");
    assert_eq!(
        rows.rows,
        vec![vec![SqlValue::Integer(1)], vec![SqlValue::Integer(4)]]
    );
}

#[test]
fn guard_rails_refuse_with_a_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut h = Harness::new(open_store(dir.path()));
    let refused = |h: &mut Harness, query: &str, why: &str| match h.exec(query, &[]) {
        Err(SqlError::Refused { reason }) => {
            assert!(reason.contains(why), "{query}: {reason}")
        }
        other => panic!("{query}: expected a refusal, got {other:?}"),
    };
    refused(&mut h, "BEGIN", "transaction_sync");
    refused(&mut h, "COMMIT", "transaction_sync");
    refused(&mut h, "SAVEPOINT a", "transaction_sync");
    refused(&mut h, "ATTACH 'x.db' AS x", "ATTACH");
    refused(&mut h, "SELECT load_extension('x')", "load_extension");
    refused(&mut h, "CREATE TABLE _durin_x (a)", "reserved");
    refused(&mut h, "CREATE TABLE _DURIN_y (a)", "reserved");
    refused(&mut h, "PRAGMA journal_mode = WAL", "journal_mode");
    refused(&mut h, "PRAGMA page_size = 8192", "read but not set");
    refused(&mut h, "PRAGMA locking_mode", "locking_mode");
    h.exec("PRAGMA page_size", &[])
        .expect("page_size is readable");
    h.exec("PRAGMA foreign_keys = OFF", &[])
        .expect("allowed boolean");
    h.exec("CREATE TABLE t (a)", &[]).expect("create");
    // After durin's own BEGIN and COMMIT are prepared and cached, the
    // same texts from a user are still refused.
    h.event(|ctx| {
        ctx.sql()
            .exec("INSERT INTO t VALUES (1)", &[])
            .expect("insert");
        for query in ["BEGIN", "COMMIT", "commit", "ROLLBACK", "END"] {
            let r = ctx.sql().exec(query, &[]);
            assert!(matches!(r, Err(SqlError::Refused { .. })), "{query}: {r:?}");
        }
    });
    let count = h.exec("SELECT count(*) FROM t", &[]).expect("count");
    assert_eq!(count.rows, vec![vec![SqlValue::Integer(1)]]);
    let info = h.exec("PRAGMA table_info(t)", &[]).expect("table_info");
    assert_eq!(info.rows.len(), 1);
    h.exec("PRAGMA quick_check", &[]).expect("quick_check");
}

#[test]
fn limits_are_refused_naming_the_limit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut h = Harness::new(open_store(dir.path()));
    h.limits.object_bytes_max = 64 * PAGE_BYTES as u64;
    h.sql_limits.value_bytes_max = 10_000;
    h.sql_limits.statement_time_ms = 20;
    let limit_of = |r: Result<SqlRows, SqlError>| match r {
        Err(SqlError::Limit { limit, .. }) => limit,
        other => panic!("expected a limit, got {other:?}"),
    };
    let long = format!("SELECT '{}'", "x".repeat(100_001));
    assert_eq!(limit_of(h.exec(&long, &[])), "statement_bytes_max");
    let many = vec![SqlValue::Integer(1); 101];
    assert_eq!(limit_of(h.exec("SELECT 1", &many)), "bound_params_max");
    let wide = format!(
        "SELECT {}",
        (0..101)
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(",")
    );
    assert_eq!(limit_of(h.exec(&wide, &[])), "columns_max");
    h.exec("CREATE TABLE t (b BLOB)", &[]).expect("create");
    let big = SqlValue::Blob(vec![7; 10_001]);
    assert_eq!(
        limit_of(h.exec("INSERT INTO t VALUES (?)", &[big])),
        "value_bytes_max"
    );
    // Growing past the storage limit (64 pages) fails the statement.
    let mut full = None;
    for _ in 0..100 {
        let r = h.exec(
            "INSERT INTO t VALUES (?)",
            &[SqlValue::Blob(vec![1; 9_000])],
        );
        if r.is_err() {
            full = Some(r);
            break;
        }
    }
    assert_eq!(
        limit_of(full.expect("the limit is reached")),
        "storage_bytes_max"
    );
    let size = h.event(|ctx| ctx.sql().database_size()).expect("size");
    assert!(size <= 64 * PAGE_BYTES as u64, "{size}");
    let spin = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) \
                SELECT count(*) FROM c";
    assert!(matches!(
        h.exec(spin, &[]),
        Err(SqlError::Interrupted { budget_ms: 20 })
    ));
    h.exec("SELECT count(*) FROM t", &[])
        .expect("the connection works after an interrupt");
}

#[test]
fn delete_all_removes_the_database() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut h = Harness::new(open_store(dir.path()));
    h.exec("CREATE TABLE t (a)", &[]).expect("create");
    h.exec("INSERT INTO t VALUES (1)", &[]).expect("insert");
    h.event(|ctx| ctx.storage().delete_all().expect("delete_all"));
    let size = h.event(|ctx| ctx.sql().database_size()).expect("size");
    assert_eq!(size, 0);
    assert!(h.exec("SELECT * FROM t", &[]).is_err(), "the table is gone");
}

/// A small deterministic generator (xorshift64*), so a failing seed
/// replays exactly.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A random value of any type, sometimes big enough to need overflow
/// pages.
fn random_value(rng: &mut Rng) -> SqlValue {
    match rng.below(7) {
        0 => SqlValue::Null,
        1 | 2 => SqlValue::Integer(rng.below(1000) as i64 - 500),
        3 => SqlValue::Real((rng.below(100_000) as f64) / 7.0),
        4 => SqlValue::Text(format!("t{}", rng.below(50))),
        5 => SqlValue::Blob((0..rng.below(64)).map(|i| i as u8).collect()),
        _ => {
            let len = 1000 + rng.below(20_000) as usize;
            SqlValue::Text("x".repeat(len))
        }
    }
}

/// One random statement and its parameters.
fn random_statement(rng: &mut Rng) -> (String, Vec<SqlValue>) {
    let table = ["a", "b"][rng.below(2) as usize];
    match rng.below(14) {
        0..=4 => (
            format!("INSERT INTO {table} (k, v, w) VALUES (?, ?, ?)"),
            vec![
                SqlValue::Integer(rng.below(300) as i64),
                random_value(rng),
                random_value(rng),
            ],
        ),
        5 => (
            format!("UPDATE {table} SET v = ? WHERE k % 7 = ?"),
            vec![random_value(rng), SqlValue::Integer(rng.below(7) as i64)],
        ),
        6 => (format!("DELETE FROM {table} WHERE k BETWEEN ? AND ?"), {
            let lo = rng.below(300) as i64;
            vec![SqlValue::Integer(lo), SqlValue::Integer(lo + 10)]
        }),
        7 => (
            format!("SELECT k, v, w FROM {table} WHERE k = ? ORDER BY rowid"),
            vec![SqlValue::Integer(rng.below(300) as i64)],
        ),
        8 => (
            format!(
                "SELECT typeof(v), count(*), sum(length(w)), min(k), max(k) FROM {table} \
                 GROUP BY typeof(v) ORDER BY 1"
            ),
            vec![],
        ),
        9 => (
            "SELECT a.k, a.v, b.w FROM a JOIN b ON a.k = b.k ORDER BY a.rowid, b.rowid LIMIT 50"
                .into(),
            vec![],
        ),
        10 => (
            format!("SELECT k, v IS NULL, length(w) FROM {table} ORDER BY k, rowid LIMIT 100"),
            vec![],
        ),
        11 => (
            "INSERT INTO uniq (k, v) VALUES (?, ?)".into(),
            vec![SqlValue::Integer(rng.below(40) as i64), random_value(rng)],
        ),
        12 => (
            format!("INSERT INTO {table} (k, v, w) SELECT k + 1000, v, w FROM {table} LIMIT 20"),
            vec![],
        ),
        _ => ("VACUUM".into(), vec![]),
    }
}

const SCHEMA: &str = "CREATE TABLE a (k INTEGER, v, w);
    CREATE INDEX a_k ON a (k);
    CREATE TABLE b (k INTEGER, v, w);
    CREATE INDEX b_kv ON b (k, v);
    CREATE TABLE uniq (k INTEGER UNIQUE, v);";

fn oracle_exec(
    conn: &rusqlite::Connection,
    query: &str,
    params: &[SqlValue],
) -> Result<Vec<Vec<SqlValue>>, String> {
    let mut stmt = conn.prepare(query).map_err(|e| e.to_string())?;
    let columns = stmt.column_count();
    let mut rows = stmt
        .query(rusqlite::params_from_iter(params.iter()))
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(|e| e.to_string())? {
        let values = (0..columns)
            .map(|c| match row.get_ref(c).expect("column in range") {
                rusqlite::types::ValueRef::Null => SqlValue::Null,
                rusqlite::types::ValueRef::Integer(i) => SqlValue::Integer(i),
                rusqlite::types::ValueRef::Real(f) => SqlValue::Real(f),
                rusqlite::types::ValueRef::Text(t) => {
                    SqlValue::Text(String::from_utf8_lossy(t).into_owned())
                }
                rusqlite::types::ValueRef::Blob(b) => SqlValue::Blob(b.to_vec()),
            })
            .collect();
        out.push(values);
    }
    Ok(out)
}

/// Runs `events` random events of up to 8 statements through durin's VFS
/// and through a file-backed SQLite, evicting the connection and making
/// the log durable (moving pages into fjall) along the way; every result
/// must be identical.
fn differential(seed: u64, events: usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut h = Harness::new(open_store(&dir.path().join("durin")));
    let oracle = rusqlite::Connection::open(dir.path().join("oracle.db")).expect("oracle");
    oracle.execute_batch(SCHEMA).expect("oracle schema");
    h.event(|ctx| ctx.sql().exec(SCHEMA, &[])).expect("schema");
    let mut rng = Rng(seed);
    for event in 0..events {
        let statements: Vec<_> = (0..1 + rng.below(8))
            .map(|_| random_statement(&mut rng))
            .collect();
        let ours: Vec<_> = h.event(|ctx| {
            statements
                .iter()
                .map(|(q, p)| ctx.sql().exec(q, p).map(|r| r.rows))
                .collect()
        });
        for ((query, params), ours) in statements.iter().zip(ours) {
            let theirs = oracle_exec(&oracle, query, params);
            match (&ours, &theirs) {
                (Ok(a), Ok(b)) => assert_eq!(a, b, "seed {seed} event {event}: {query}"),
                (Err(_), Err(_)) => {}
                _ => panic!("seed {seed} event {event}: {query}: {ours:?} vs {theirs:?}"),
            }
        }
        match rng.below(10) {
            0 => h.evict(),
            1 => make_durable(&mut h.store),
            _ => {}
        }
    }
    make_durable(&mut h.store);
    h.evict();
    let check = "SELECT k, v, w FROM a UNION ALL SELECT k, v, w FROM b ORDER BY 1, 2, 3";
    let ours = h.exec(check, &[]).expect("final read").rows;
    assert_eq!(ours, oracle_exec(&oracle, check, &[]).expect("oracle read"));
    let integrity = h.exec("PRAGMA quick_check", &[]).expect("quick_check").rows;
    assert_eq!(integrity, vec![vec![text("ok")]]);
}

#[test]
fn random_statements_give_the_same_results_as_a_file_backed_sqlite() {
    for seed in 1..=3 {
        differential(seed * 0x9e37_79b9, 250);
    }
}

#[test]
fn a_database_of_thousands_of_pages_reads_back_after_eviction() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut h = Harness::new(open_store(dir.path()));
    h.exec("CREATE TABLE big (id INTEGER PRIMARY KEY, body TEXT)", &[])
        .expect("create");
    for batch in 0..40 {
        h.event(|ctx| {
            for i in 0..50 {
                let body = format!("{batch}-{i}-{}", "y".repeat(4000));
                ctx.sql()
                    .exec("INSERT INTO big (body) VALUES (?)", &[SqlValue::Text(body)])
                    .expect("insert");
            }
        });
        if batch % 10 == 9 {
            make_durable(&mut h.store);
        }
    }
    h.evict();
    let size = h.event(|ctx| ctx.sql().database_size()).expect("size");
    assert!(size > 2000 * PAGE_BYTES as u64, "{size}");
    let rows = h
        .exec("SELECT count(*), sum(length(body)) FROM big", &[])
        .expect("count");
    assert_eq!(rows.rows[0][0], SqlValue::Integer(2000));
    let check = h.exec("PRAGMA quick_check", &[]).expect("check").rows;
    assert_eq!(check, vec![vec![text("ok")]]);
}

/// What an open connection costs, as SQLite counts its own heap: the
/// number PERF.md quotes. Each connection has run a few statements
/// (schema, an insert, a point read), so its page cache, schema and
/// statement cache hold what a small live object's would.
#[test]
fn an_open_connection_uses_little_memory() {
    const CONNECTIONS: usize = 200;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut h = Harness::new(open_store(dir.path()));
    let mut open = Vec::with_capacity(CONNECTIONS);
    assert!(vfs::register());
    // SAFETY: reads SQLite's global allocation counter.
    let before = unsafe { rusqlite::ffi::sqlite3_memory_used() };
    for i in 0..CONNECTIONS {
        h.id = ObjectId::from_name("sql", format!("mem-{i}").as_bytes());
        h.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)", &[])
            .expect("create");
        h.exec("INSERT INTO t (v) VALUES ('x')", &[])
            .expect("insert");
        h.exec("SELECT v FROM t WHERE id = 1", &[]).expect("select");
        open.push(h.db.take().expect("open"));
    }
    // SAFETY: as above.
    let after = unsafe { rusqlite::ffi::sqlite3_memory_used() };
    let per_connection = (after - before) as usize / CONNECTIONS;
    eprintln!("SQLite heap per open connection: {per_connection} bytes");
    // ~40 KiB when durin configured SQLite first; ~120 KiB when another
    // test's connection initialised SQLite before (the page cache's bulk
    // allocation is then on).
    assert!(per_connection < 160 * 1024, "{per_connection} bytes");
    drop(open);
}

/// Bytes the log takes per single-row insert, each insert its own event
/// and group, into a table that already holds a few thousand rows: the
/// number PERF.md explains (page 1 for its change counter, the table's
/// last leaf, zero runs left out).
#[test]
fn a_single_row_insert_logs_less_than_a_page() {
    const INSERTS: u64 = 300;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut h = Harness::new(open_store(dir.path()));
    h.exec(
        "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, n INTEGER)",
        &[],
    )
    .expect("create");
    h.event(|ctx| {
        for i in 0..3000 {
            ctx.sql()
                .exec(
                    "INSERT INTO t (name, n) VALUES (?, ?)",
                    &[text(&format!("user-{i}")), SqlValue::Integer(i)],
                )
                .expect("insert");
        }
    });
    make_durable(&mut h.store);
    let before = h.store.stats();
    for i in 0..INSERTS {
        h.exec(
            "INSERT INTO t (name, n) VALUES (?, ?)",
            &[text(&format!("user-{i}")), SqlValue::Integer(i as i64)],
        )
        .expect("insert");
        make_durable(&mut h.store);
    }
    let after = h.store.stats();
    let bytes = (after.log_bytes_total - before.log_bytes_total) / INSERTS;
    let writes = (after.group_writes_committed_total - before.group_writes_committed_total) as f64
        / INSERTS as f64;
    eprintln!("log bytes per single-row insert: {bytes} ({writes:.2} page writes)");
    assert!(bytes < 1024, "{bytes} bytes per insert");
}

/// CPU time of this thread, in microseconds.
fn thread_cpu_us() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 * 1e6 + ts.tv_nsec as f64 / 1e3
}

/// What the first use of an object's database costs, step by step (CPU
/// time; run by hand, a debug build of durin over an optimised SQLite).
#[test]
#[ignore = "a timing probe, run by hand"]
fn probe_open_cost() {
    const N: usize = 300;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut h = Harness::new(open_store(dir.path()));
    let ids: Vec<_> = (0..N)
        .map(|i| ObjectId::from_name("sql", format!("p-{i}").as_bytes()))
        .collect();
    for id in &ids {
        h.id = *id;
        h.db = None;
        h.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)", &[])
            .expect("create");
    }
    type Step<'a> = (&'a str, &'a dyn Fn(&mut Harness));
    let steps: [Step<'_>; 5] = [
        ("open", &|h| h.event(|ctx| ctx.open_db()).expect("open")),
        ("SELECT 1", &|h| {
            h.exec("SELECT 1", &[]).expect("select");
        }),
        ("read the schema", &|h| {
            h.exec("SELECT count(*) FROM sqlite_schema", &[])
                .expect("schema");
        }),
        ("insert", &|h| {
            h.exec("INSERT INTO t (v) VALUES ('x')", &[])
                .expect("insert");
        }),
        ("database_size", &|h| {
            h.event(|ctx| ctx.sql().database_size()).expect("size");
        }),
    ];
    for (name, step) in steps {
        let start = thread_cpu_us();
        for id in &ids {
            h.id = *id;
            h.db = None;
            step(&mut h);
        }
        eprintln!(
            "cold {name}: {:.0} µs",
            (thread_cpu_us() - start) / N as f64
        );
    }
    let start = thread_cpu_us();
    for _ in 0..N {
        h.exec("INSERT INTO t (v) VALUES ('x')", &[])
            .expect("insert");
    }
    eprintln!(
        "warm insert: {:.0} µs",
        (thread_cpu_us() - start) / N as f64
    );
}

#[test]
#[ignore = "a memory probe, run by hand"]
fn probe_connection_memory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut h = Harness::new(open_store(dir.path()));
    h.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)", &[])
        .expect("create");
    h.exec("INSERT INTO t (v) VALUES ('x')", &[])
        .expect("insert");
    h.event(|ctx| ctx.sql().database_size()).expect("size");
    let db = h.db.as_ref().expect("open");
    for (name, op) in [
        ("cache", rusqlite::ffi::SQLITE_DBSTATUS_CACHE_USED),
        ("schema", rusqlite::ffi::SQLITE_DBSTATUS_SCHEMA_USED),
        ("statements", rusqlite::ffi::SQLITE_DBSTATUS_STMT_USED),
        ("lookaside", rusqlite::ffi::SQLITE_DBSTATUS_LOOKASIDE_USED),
    ] {
        let (mut cur, mut hi) = (0, 0);
        // SAFETY: an open handle and two places for the answer.
        unsafe { rusqlite::ffi::sqlite3_db_status(db.handle(), op, &mut cur, &mut hi, 0) };
        eprintln!("{name}: {cur} bytes (high {hi})");
    }
}

/// An interrupted write makes SQLite roll back the whole event
/// transaction: the event must then keep none of its writes, SQL or KV,
/// rather than the KV half of them.
#[test]
fn an_interrupted_write_keeps_none_of_the_events_writes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut h = Harness::new(open_store(dir.path()));
    h.sql_limits.statement_time_ms = 20;
    h.exec("CREATE TABLE t (v INTEGER)", &[]).expect("create");
    h.event(|ctx| {
        ctx.sql()
            .exec("INSERT INTO t VALUES (1)", &[])
            .expect("insert");
        ctx.storage().put(b"k", b"v").expect("put");
        let spin = "INSERT INTO t WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) \
                    SELECT x FROM c";
        let r = ctx.sql().exec(spin, &[]);
        assert!(matches!(r, Err(SqlError::Interrupted { .. })), "{r:?}");
        let after = ctx.sql().exec("SELECT 1", &[]);
        assert!(matches!(after, Err(SqlError::Refused { .. })), "{after:?}");
    });
    let count = h.exec("SELECT count(*) FROM t", &[]).expect("count");
    assert_eq!(count.rows, vec![vec![SqlValue::Integer(0)]]);
    assert_eq!(h.event(|ctx| ctx.storage().get(b"k").expect("get")), None);
}
