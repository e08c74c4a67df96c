//! SQL storage: a real SQLite database per object, its pages in the
//! shard's store.
//!
//! ```
//! use durin::object::{Context, DurableObject, Request, Response};
//! use durin::sql::SqlValue;
//!
//! struct Todos;
//! impl DurableObject for Todos {
//!     fn fetch(&mut self, req: &Request<'_>, res: &mut Response, ctx: &mut Context<'_>) {
//!         let mut sql = ctx.sql();
//!         sql.exec("CREATE TABLE IF NOT EXISTS todo (id INTEGER PRIMARY KEY, text TEXT)", &[])
//!             .expect("a fixed statement");
//!         let text = String::from_utf8_lossy(req.body).into_owned();
//!         sql.exec("INSERT INTO todo (text) VALUES (?)", &[SqlValue::Text(text)])
//!             .expect("an insert within the limits");
//!         let count = sql.exec("SELECT count(*) FROM todo", &[]).expect("a count");
//!         res.text(200, &format!("{:?}", count.rows[0][0]));
//!     }
//! }
//! ```
//!
//! How it is built, step by step for one event:
//!
//! 1. The object's first SQL call opens its connection (once per stay in
//!    memory) over the durin VFS ([`vfs`]): the database file is the key
//!    range `id · 0x02 · page_no` of the shard's store. An object that
//!    never calls [`Context::sql`] opens nothing.
//! 2. The event's first statement opens a transaction. Statements read
//!    pages through the VFS (the store's overlay, then fjall) and change
//!    them in SQLite's page cache only.
//! 3. When the event ends the shard commits it: the dirty pages become
//!    store writes of the event's group, beside its KV writes. The output
//!    gate holds the event's answers until that group is durable. (With
//!    `locking_mode=EXCLUSIVE` SQLite bumps page 1's change counter only
//!    in the first transaction of a connection: a one-row insert writes
//!    one page, not two.)
//! 4. A handler that panics drops the connection and rolls the store back
//!    to before the event: SQL and KV changes go together. An error inside
//!    [`Context::transaction_sync`] rolls back to its savepoint.

use std::fmt;

use crate::object::{Context, StorageError, TransactionError};

mod conn;
pub(crate) mod file;
pub(crate) mod guard;
mod page;
pub(crate) mod vfs;

#[cfg(test)]
mod tests;

pub(crate) use conn::SqlDb;
pub use file::PAGE_BYTES;

/// A value in a row or a bound parameter.
#[derive(Debug, Clone, PartialEq)]
pub enum SqlValue {
    Null,
    Integer(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

/// What a statement returned.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SqlRows {
    pub column_names: Vec<String>,
    pub rows: Vec<Vec<SqlValue>>,
    /// Rows the statement returned, or stepped over in full scans if that
    /// is more (SQLite's `SQLITE_STMTSTATUS_FULLSCAN_STEP`).
    pub rows_read: u64,
    /// Rows inserted, updated or deleted.
    pub rows_written: u64,
}

/// Limits on what an object's SQL may do, set per class. The database's
/// size limit is the class's storage limit
/// ([`StorageLimits::object_bytes_max`](crate::object::StorageLimits)).
#[derive(Debug, Clone, Copy)]
pub struct SqlLimits {
    pub statement_bytes_max: usize,
    pub bound_params_max: usize,
    /// A string, a blob, or a row.
    pub value_bytes_max: usize,
    pub columns_max: usize,
    /// A statement running longer is interrupted.
    pub statement_time_ms: u64,
    /// Rows one statement may return, in bytes (values plus 8 each).
    pub result_bytes_max: usize,
    /// SQLite's page cache per connection.
    pub cache_bytes_max: usize,
    /// An object's connection closes after this long without an event
    /// (the object may stay in memory; its next SQL call reopens it).
    pub idle_close_ms: u64,
}

impl SqlLimits {
    /// Cloudflare's limits (100 KB statements, 100 parameters, 2 MB
    /// strings, blobs and rows, 100 columns), a 100 ms budget per
    /// statement, 16 MiB of rows per answer, a 256 KiB page cache, and
    /// connections closed after 10 s idle.
    pub const DEFAULT: SqlLimits = SqlLimits {
        statement_bytes_max: 100_000,
        bound_params_max: 100,
        value_bytes_max: 2_000_000,
        columns_max: 100,
        statement_time_ms: 100,
        result_bytes_max: 16 << 20,
        cache_bytes_max: 256 << 10,
        idle_close_ms: 10_000,
    };
}

impl Default for SqlLimits {
    fn default() -> Self {
        SqlLimits::DEFAULT
    }
}

/// Why an SQL call failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum SqlError {
    /// SQLite failed the statement (a syntax error, a constraint).
    Sql { code: &'static str, message: String },
    /// durin does not allow the statement, and says why.
    Refused { reason: String },
    /// A limit was reached: its setting's name and value.
    Limit {
        limit: &'static str,
        max: u64,
        message: String,
    },
    /// The statement ran past its time budget and was interrupted.
    Interrupted { budget_ms: u64 },
    /// The storage under the database failed.
    Storage(StorageError),
    /// SQL is not available in this context (an object built outside a
    /// shard, as in some unit tests).
    Unavailable,
}

impl fmt::Display for SqlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SqlError::Sql { code, message } => write!(f, "{message} ({code})"),
            SqlError::Refused { reason } => write!(f, "not allowed: {reason}"),
            SqlError::Limit {
                limit,
                max,
                message,
            } => write!(f, "{message}: over the limit {limit} = {max}"),
            SqlError::Interrupted { budget_ms } => write!(
                f,
                "the statement ran longer than its {budget_ms} ms budget and was interrupted"
            ),
            SqlError::Storage(e) => write!(f, "storage: {e}"),
            SqlError::Unavailable => f.write_str("SQL storage is not available here"),
        }
    }
}

impl std::error::Error for SqlError {}

impl From<StorageError> for SqlError {
    fn from(e: StorageError) -> Self {
        SqlError::Storage(e)
    }
}

/// An object's SQL database, borrowed from its [`Context`].
pub struct Sql<'c, 's> {
    ctx: &'c mut Context<'s>,
}

impl<'s> Context<'s> {
    /// The object's SQL database (opened on first use).
    pub fn sql(&mut self) -> Sql<'_, 's> {
        Sql { ctx: self }
    }

    /// Runs `f` as one transaction over SQL and KV storage: if it returns
    /// an error, every SQL and KV write it made is rolled back. Levels
    /// nest.
    pub fn transaction_sync<R, E>(
        &mut self,
        f: impl FnOnce(&mut Context<'s>) -> Result<R, E>,
    ) -> Result<R, TransactionError<E>> {
        let savepoint = self.store.savepoint();
        let saved = self.storage().snapshot();
        self.tx_depth += 1;
        let depth = self.tx_depth;
        let result = f(self);
        let ended = self.with_db(|db| db.end_savepoint(depth, result.is_ok()));
        self.tx_depth -= 1;
        match (result, ended) {
            (Ok(r), Ok(_) | Err(SqlError::Unavailable)) => Ok(r),
            (Ok(r), Err(e)) => {
                // Releasing a savepoint cannot fail but on a broken
                // connection; the event then commits nothing of its SQL.
                log::warn!("releasing an SQL savepoint failed: {e}");
                Ok(r)
            }
            (Err(e), _) => {
                self.store.rollback_to(savepoint);
                self.storage().restore(saved);
                Err(TransactionError::Aborted(e))
            }
        }
    }

    /// Runs `f` on the object's open connection inside a store scope;
    /// `Unavailable` if there is none (and `open` is false).
    fn with_db<R>(
        &mut self,
        f: impl FnOnce(&mut SqlDb) -> Result<R, SqlError>,
    ) -> Result<R, SqlError> {
        let Some(slot) = self.sql_db.as_deref_mut() else {
            return Err(SqlError::Unavailable);
        };
        let Some(db) = slot.as_mut() else {
            return Err(SqlError::Unavailable);
        };
        let scope = vfs::IoScope::install(self.store);
        let result = f(db);
        let outcome = scope.finish();
        if let Some(seq) = outcome.wrote {
            self.wrote = Some(self.wrote.map_or(seq, |w| w.max(seq)));
        }
        match outcome.error {
            Some(e) => Err(SqlError::Storage(e)),
            None => result,
        }
    }

    /// Opens the object's connection if it has none.
    fn open_db(&mut self) -> Result<(), SqlError> {
        let Some(slot) = self.sql_db.as_deref_mut() else {
            return Err(SqlError::Unavailable);
        };
        if slot.is_some() {
            return Ok(());
        }
        let scope = vfs::IoScope::install(self.store);
        let opened = SqlDb::open(&self.id, self.sql_limits, self.limits.object_bytes_max);
        let outcome = scope.finish();
        if let Some(e) = outcome.error {
            return Err(SqlError::Storage(e));
        }
        *slot = Some(opened?);
        Ok(())
    }
}

impl Sql<'_, '_> {
    /// Runs `query` with `params` bound to its `?` parameters, in order.
    /// Several statements separated by `;` run one after the other, each
    /// taking its parameters in turn; the rows are those of the last one
    /// that returns columns.
    pub fn exec(&mut self, query: &str, params: &[SqlValue]) -> Result<SqlRows, SqlError> {
        self.ctx.open_db()?;
        let limits = *self.ctx.sql_limits;
        let db_bytes_max = self.ctx.limits.object_bytes_max;
        let depth = self.ctx.tx_depth;
        self.ctx
            .with_db(|db| db.exec(query, params, &limits, db_bytes_max, depth))
    }

    /// The bytes the database uses: (page_count − freelist_count) ×
    /// page_size.
    pub fn database_size(&mut self) -> Result<u64, SqlError> {
        self.ctx.open_db()?;
        self.ctx.with_db(|db| db.database_size())
    }
}

/// How an event's SQL ended.
pub(crate) enum EventEnd {
    /// Committed (or nothing to commit).
    Committed,
    /// SQLite lost the event's transaction: nothing of the event may stay.
    Lost,
    /// The commit failed: nothing of the event may stay, and the
    /// connection must go.
    Failed(SqlError),
}

/// Commits the event's SQL transaction, if one is open. Called by the
/// shard after the handler returned, before the size record is written.
pub(crate) fn end_event(ctx: &mut Context<'_>) -> EventEnd {
    let lost = ctx
        .sql_db
        .as_deref_mut()
        .and_then(Option::as_mut)
        .is_some_and(SqlDb::take_lost);
    if lost {
        return EventEnd::Lost;
    }
    let committed = ctx.with_db(|db| {
        db.commit().map_err(|_| SqlError::Sql {
            code: "SQLITE_IOERR",
            message: "the event's SQL transaction did not commit".into(),
        })
    });
    match committed {
        Ok(()) | Err(SqlError::Unavailable) => EventEnd::Committed,
        Err(e) => EventEnd::Failed(e),
    }
}

/// Closes `db` with `store` lent to the VFS, in case closing rolls back
/// an open transaction.
pub(crate) fn close(db: SqlDb, store: &mut durin_storage::ShardStore) {
    let scope = vfs::IoScope::install(store);
    drop(db);
    drop(scope);
}
