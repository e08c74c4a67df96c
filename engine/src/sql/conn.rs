//! One object's SQLite connection and its event transaction.
//!
//! The connection opens on the object's first SQL call, on the shard's
//! thread, over the durin VFS (its database "file" is named by the
//! object's ID). The first statement of an event opens a transaction;
//! the shard commits it when the event ends, so its dirty pages become
//! writes of the event's storage group. `transaction_sync` levels are
//! SQLite savepoints inside it.
//!
//! Every call here that may read or write the database runs inside an
//! [`IoScope`](super::vfs::IoScope) the caller installed.

use std::time::{Duration, Instant};

use rusqlite::fallible_iterator::FallibleIterator;
use rusqlite::limits::Limit;
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, ErrorCode, OpenFlags};

use super::{file, guard, vfs, SqlError, SqlLimits, SqlRows, SqlValue};
use crate::ObjectId;

/// durin's own statements, prepared once per connection. A cached
/// statement skips the authorizer, so a user's statement with the same
/// text is refused before it could reach the cache.
const BEGIN_SQL: &str = "BEGIN";
const COMMIT_SQL: &str = "COMMIT";
/// The table-valued form: SQLite re-prepares a plain `PRAGMA page_count`
/// every time it runs (~3 % of a point read over HTTP); this one stays
/// prepared.
const PAGE_COUNT_SQL: &str = "SELECT page_count FROM pragma_page_count()";
const FREELIST_COUNT_SQL: &str = "PRAGMA freelist_count";
const INTERNAL_SQL: [&str; 4] = [BEGIN_SQL, COMMIT_SQL, PAGE_COUNT_SQL, FREELIST_COUNT_SQL];

/// Prepared statements kept per connection.
pub const STATEMENT_CACHE_CAPACITY: usize = 16;
/// Lookaside slots per connection and their size: none. SQLite's default
/// (120 KiB) would dominate an idle connection, and a probe of a small
/// object's connection (`probe_connection_memory`) found 56 bytes of a
/// smaller 8 KiB one ever used; small allocations go to the allocator.
pub const LOOKASIDE_SLOT_BYTES: i32 = 0;
pub const LOOKASIDE_SLOTS: i32 = 0;

/// An object's open database.
pub(crate) struct SqlDb {
    conn: Connection,
    /// The event's transaction is open.
    in_txn: bool,
    /// Savepoints made for `transaction_sync` levels (1 = the outermost).
    savepoints: u32,
    /// SQLite rolled the event's transaction back by itself (an interrupt
    /// or a full database mid-write): the event must not commit anything.
    lost: bool,
}

impl rusqlite::ToSql for SqlValue {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self {
            SqlValue::Null => ValueRef::Null,
            SqlValue::Integer(i) => ValueRef::Integer(*i),
            SqlValue::Real(f) => ValueRef::Real(*f),
            SqlValue::Text(t) => ValueRef::Text(t.as_bytes()),
            SqlValue::Blob(b) => ValueRef::Blob(b),
        }))
    }
}

impl SqlValue {
    fn from_ref(v: ValueRef<'_>) -> SqlValue {
        match v {
            ValueRef::Null => SqlValue::Null,
            ValueRef::Integer(i) => SqlValue::Integer(i),
            ValueRef::Real(f) => SqlValue::Real(f),
            ValueRef::Text(t) => SqlValue::Text(String::from_utf8_lossy(t).into_owned()),
            ValueRef::Blob(b) => SqlValue::Blob(b.to_vec()),
        }
    }

    /// Bytes a value counts against a result's size.
    fn bytes(&self) -> usize {
        match self {
            SqlValue::Text(t) => t.len() + 8,
            SqlValue::Blob(b) => b.len() + 8,
            _ => 8,
        }
    }
}

impl SqlDb {
    /// Opens `id`'s database and sets it up.
    pub(crate) fn open(
        id: &ObjectId,
        limits: &SqlLimits,
        db_bytes_max: u64,
    ) -> Result<SqlDb, SqlError> {
        if !vfs::register() {
            return Err(SqlError::Sql {
                code: "SQLITE_ERROR",
                message: "the durin VFS could not be registered".into(),
            });
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let vfs_name = vfs::VFS_NAME.to_str().expect("the VFS name is ASCII");
        let mut conn = Connection::open_with_flags_and_vfs(id.to_hex(), flags, vfs_name)
            .map_err(|e| plain_error(&e))?;
        shrink_lookaside(&conn);
        configure(&mut conn, limits, db_bytes_max).map_err(|e| plain_error(&e))?;
        Ok(SqlDb {
            conn,
            in_txn: false,
            savepoints: 0,
            lost: false,
        })
    }

    /// Runs `query` (one statement or several, separated by `;`) with
    /// `params` bound in order; the rows are those of the last statement
    /// that returns columns.
    pub(crate) fn exec(
        &mut self,
        query: &str,
        params: &[SqlValue],
        limits: &SqlLimits,
        db_bytes_max: u64,
        tx_depth: u32,
    ) -> Result<SqlRows, SqlError> {
        check_sizes(query, params, limits)?;
        if INTERNAL_SQL.contains(&query) {
            return Err(SqlError::Refused {
                reason: guard::TRANSACTION_REFUSAL.into(),
            });
        }
        if self.lost {
            return Err(SqlError::Refused {
                reason: "an earlier statement of this event failed in a way that rolled back \
                         its SQL transaction; the event's writes will not be committed"
                    .into(),
            });
        }
        if is_vacuum(query) {
            return self.vacuum(query, tx_depth, limits, db_bytes_max);
        }
        self.begin(tx_depth)
            .map_err(|e| self.map_error(e, limits, db_bytes_max))?;
        let deadline = Instant::now() + Duration::from_millis(limits.statement_time_ms);
        guard::set_deadline(Some(deadline));
        let result = self.run(query, params, limits);
        guard::set_deadline(None);
        result.map_err(|e| self.map_error(e, limits, db_bytes_max))
    }

    fn run(
        &self,
        query: &str,
        params: &[SqlValue],
        limits: &SqlLimits,
    ) -> Result<SqlRows, RunError> {
        let changes_before = self.conn.total_changes();
        let mut rows = SqlRows::default();
        // One statement, the common case, is prepared once and cached.
        // Preparing several fails (a later one may name a table an
        // earlier one creates): they run one by one instead.
        let used = match self.conn.prepare_cached(query) {
            Ok(mut stmt) => run_statement(&mut stmt, params, &mut rows, limits)?,
            Err(_) => {
                let mut batch = rusqlite::Batch::new(&self.conn, query);
                let mut used = 0;
                while let Some(mut stmt) = batch.next()? {
                    used += run_statement(&mut stmt, &params[used..], &mut rows, limits)?;
                }
                used
            }
        };
        if used != params.len() {
            return Err(RunError::Params(format!(
                "{} parameters were given, the statement takes {used}",
                params.len()
            )));
        }
        rows.rows_written = self.conn.total_changes() - changes_before;
        Ok(rows)
    }

    /// `VACUUM` rewrites the database and cannot run inside a
    /// transaction: the event's transaction commits first (its writes
    /// stay in the event's storage group, atomic with the rest).
    fn vacuum(
        &mut self,
        query: &str,
        tx_depth: u32,
        limits: &SqlLimits,
        db_bytes_max: u64,
    ) -> Result<SqlRows, SqlError> {
        if tx_depth > 0 {
            return Err(SqlError::Refused {
                reason: "VACUUM cannot run inside transaction_sync".into(),
            });
        }
        if query.trim().trim_end_matches(';').trim_end().len() > "vacuum".len() {
            return Err(SqlError::Refused {
                reason: "only a plain VACUUM is allowed (no schema name, no INTO)".into(),
            });
        }
        self.commit()
            .map_err(|e| self.map_error(e, limits, db_bytes_max))?;
        let deadline = Instant::now() + Duration::from_millis(limits.statement_time_ms);
        guard::set_deadline(Some(deadline));
        // VACUUM attaches a temporary database of its own, which the
        // authorizer would refuse to a user's statement.
        let result = guard::internal(|| self.conn.execute_batch("VACUUM"));
        guard::set_deadline(None);
        result.map_err(|e| self.map_error(e.into(), limits, db_bytes_max))?;
        Ok(SqlRows::default())
    }

    /// Opens the event's transaction if needed, and the savepoints of
    /// the `transaction_sync` levels active now.
    fn begin(&mut self, tx_depth: u32) -> Result<(), RunError> {
        if !self.in_txn {
            guard::internal(|| self.run_cached(BEGIN_SQL))?;
            self.in_txn = true;
        }
        while self.savepoints < tx_depth {
            let name = savepoint_name(self.savepoints + 1);
            guard::internal(|| self.conn.execute_batch(&format!("SAVEPOINT {name}")))?;
            self.savepoints += 1;
        }
        Ok(())
    }

    /// Ends `transaction_sync` level `depth`: keeps its changes (`keep`)
    /// or rolls them back.
    pub(crate) fn end_savepoint(&mut self, depth: u32, keep: bool) -> Result<(), SqlError> {
        assert!(self.savepoints <= depth, "inner levels end first");
        if self.savepoints < depth || self.lost {
            return Ok(());
        }
        let name = savepoint_name(depth);
        let sql = if keep {
            format!("RELEASE {name}")
        } else {
            format!("ROLLBACK TO {name}; RELEASE {name}")
        };
        let result = guard::internal(|| execute_all(&self.conn, &sql));
        self.savepoints = depth - 1;
        result.map_err(|e| plain_error(&e))
    }

    /// Commits the event's transaction, writing its dirty pages through
    /// the VFS.
    pub(crate) fn commit(&mut self) -> Result<(), RunError> {
        self.savepoints = 0;
        if !self.in_txn {
            return Ok(());
        }
        self.in_txn = false;
        guard::internal(|| self.run_cached(COMMIT_SQL))?;
        Ok(())
    }

    /// The raw handle, for SQLite's status counters in tests.
    #[cfg(test)]
    pub(crate) fn handle(&self) -> *mut rusqlite::ffi::sqlite3 {
        // SAFETY: only read by sqlite3_db_status while the connection lives.
        unsafe { self.conn.handle() }
    }

    /// Whether the event's transaction was lost (see `lost`); clears it.
    pub(crate) fn take_lost(&mut self) -> bool {
        std::mem::take(&mut self.lost)
    }

    /// (page_count − freelist_count) × page_size. Two statements, each
    /// prepared once per connection: one join of three table-valued
    /// pragma functions cost ~80 µs to prepare on a new connection. The page
    /// size is durin's: it sets it before the database has a page.
    pub(crate) fn database_size(&self) -> Result<u64, SqlError> {
        guard::internal(|| {
            let count = |sql| {
                self.conn
                    .prepare_cached(sql)?
                    .query_row([], |r| r.get::<_, i64>(0))
            };
            Ok(count(PAGE_COUNT_SQL)? - count(FREELIST_COUNT_SQL)?)
        })
        .map(|pages: i64| pages.max(0) as u64 * file::PAGE_BYTES as u64)
        .map_err(|e: rusqlite::Error| plain_error(&e))
    }

    /// Runs one of durin's fixed statements, prepared once per connection.
    fn run_cached(&self, sql: &str) -> rusqlite::Result<()> {
        self.conn.prepare_cached(sql)?.execute([]).map(|_| ())
    }

    fn map_error(&mut self, e: RunError, limits: &SqlLimits, db_bytes_max: u64) -> SqlError {
        if self.in_txn && self.conn.is_autocommit() {
            // SQLite rolled back the whole transaction (SQLITE_FULL and
            // SQLITE_INTERRUPT may): the earlier statements of this event
            // are gone, so none of the event's writes may stay.
            self.in_txn = false;
            self.savepoints = 0;
            self.lost = true;
        }
        if let Some(reason) = guard::take_refusal() {
            return SqlError::Refused { reason };
        }
        match e {
            RunError::Params(message) => SqlError::Sql {
                code: "SQLITE_RANGE",
                message,
            },
            RunError::ResultTooLarge => SqlError::Limit {
                limit: "result_bytes_max",
                max: limits.result_bytes_max as u64,
                message: "the statement's rows are too large to return at once".into(),
            },
            RunError::Sqlite(e) => sqlite_error(&e, limits, db_bytes_max),
        }
    }
}

/// Why running statements failed, before it is told to the user.
pub(crate) enum RunError {
    Sqlite(rusqlite::Error),
    Params(String),
    ResultTooLarge,
}

impl From<rusqlite::Error> for RunError {
    fn from(e: rusqlite::Error) -> Self {
        RunError::Sqlite(e)
    }
}

fn check_sizes(query: &str, params: &[SqlValue], limits: &SqlLimits) -> Result<(), SqlError> {
    if query.len() > limits.statement_bytes_max {
        return Err(SqlError::Limit {
            limit: "statement_bytes_max",
            max: limits.statement_bytes_max as u64,
            message: format!("the statement is {} bytes long", query.len()),
        });
    }
    if params.len() > limits.bound_params_max {
        return Err(SqlError::Limit {
            limit: "bound_params_max",
            max: limits.bound_params_max as u64,
            message: format!("{} parameters were given", params.len()),
        });
    }
    Ok(())
}

/// Binds `params` (at least as many as the statement takes), runs the
/// statement, and appends what it returned. Returns how many parameters
/// it took.
fn run_statement(
    stmt: &mut rusqlite::Statement<'_>,
    params: &[SqlValue],
    rows: &mut SqlRows,
    limits: &SqlLimits,
) -> Result<usize, RunError> {
    let wanted = stmt.parameter_count();
    if params.len() < wanted {
        return Err(RunError::Params(format!(
            "the statement takes {wanted} parameters, {} were given",
            params.len()
        )));
    }
    for (i, value) in params[..wanted].iter().enumerate() {
        stmt.raw_bind_parameter(i + 1, value)?;
    }
    let columns = stmt.column_count();
    if columns > 0 {
        rows.column_names = stmt.column_names().map(String::from).collect();
        rows.rows.clear();
    }
    let mut bytes = 0usize;
    let mut returned = 0u64;
    {
        let mut out = stmt.raw_query();
        while let Some(row) = out.next()? {
            let mut values = Vec::with_capacity(columns);
            for c in 0..columns {
                let value = SqlValue::from_ref(row.get_ref(c)?);
                bytes += value.bytes();
                values.push(value);
            }
            if bytes > limits.result_bytes_max {
                return Err(RunError::ResultTooLarge);
            }
            rows.rows.push(values);
            returned += 1;
        }
    }
    let scanned = stmt.get_status(rusqlite::StatementStatus::FullscanStep);
    rows.rows_read += returned.max(scanned.max(0) as u64);
    Ok(wanted)
}

/// Runs every statement of `sql` to completion (durin's own statements).
fn execute_all(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    let mut batch = rusqlite::Batch::new(conn, sql);
    while let Some(mut stmt) = batch.next()? {
        let mut rows = stmt.raw_query();
        while rows.next()?.is_some() {}
    }
    Ok(())
}

fn savepoint_name(depth: u32) -> String {
    format!("{}sp_{depth}", guard::RESERVED_PREFIX)
}

/// Whether the statement is a `VACUUM`.
fn is_vacuum(query: &str) -> bool {
    let word = query.trim_start().as_bytes();
    word.len() >= 6
        && word[..6].eq_ignore_ascii_case(b"vacuum")
        && word
            .get(6)
            .is_none_or(|b| !b.is_ascii_alphanumeric() && *b != b'_')
}

/// Shrinks the connection's lookaside memory (see [`LOOKASIDE_SLOTS`]).
fn shrink_lookaside(conn: &Connection) {
    // SAFETY: the handle is open and has run no statement, so no
    // lookaside memory is in use; SQLite allocates the buffer itself
    // (NULL) and the arguments have the types SQLITE_DBCONFIG_LOOKASIDE
    // takes (void*, int, int).
    unsafe {
        rusqlite::ffi::sqlite3_db_config(
            conn.handle(),
            rusqlite::ffi::SQLITE_DBCONFIG_LOOKASIDE,
            std::ptr::null_mut::<std::ffi::c_void>(),
            LOOKASIDE_SLOT_BYTES,
            LOOKASIDE_SLOTS,
        );
    }
}

fn configure(conn: &mut Connection, limits: &SqlLimits, db_bytes_max: u64) -> rusqlite::Result<()> {
    let limit = |n: usize| i32::try_from(n).unwrap_or(i32::MAX);
    conn.set_limit(Limit::SQLITE_LIMIT_LENGTH, limit(limits.value_bytes_max))?;
    conn.set_limit(
        Limit::SQLITE_LIMIT_SQL_LENGTH,
        limit(limits.statement_bytes_max),
    )?;
    conn.set_limit(Limit::SQLITE_LIMIT_COLUMN, limit(limits.columns_max))?;
    conn.set_limit(
        Limit::SQLITE_LIMIT_VARIABLE_NUMBER,
        limit(limits.bound_params_max),
    )?;
    conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_DEFENSIVE, true)?;
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_TRUSTED_SCHEMA,
        false,
    )?;
    let max_pages = (db_bytes_max / file::PAGE_BYTES as u64).max(2);
    let cache_kib = limits.cache_bytes_max / 1024;
    // Journal and temp files in memory, the file never shared (so the page
    // cache stays valid across transactions), and dirty pages never spilled
    // to the "file" before commit: the store holds only committed pages,
    // so a rollback is SQLite's own and needs no undo in the store.
    conn.execute_batch(&format!(
        "PRAGMA page_size = {page};
         PRAGMA locking_mode = EXCLUSIVE;
         PRAGMA journal_mode = MEMORY;
         PRAGMA temp_store = MEMORY;
         PRAGMA synchronous = OFF;
         PRAGMA cache_size = -{cache_kib};
         PRAGMA cache_spill = OFF;
         PRAGMA max_page_count = {max_pages};",
        page = file::PAGE_BYTES
    ))?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE_CAPACITY);
    conn.authorizer(Some(guard::authorize))?;
    conn.progress_handler(guard::PROGRESS_OPS, Some(guard::past_deadline))?;
    Ok(())
}

fn plain_error(e: &rusqlite::Error) -> SqlError {
    match e {
        rusqlite::Error::SqliteFailure(f, message) => SqlError::Sql {
            code: code_name(f.extended_code),
            message: message.clone().unwrap_or_else(|| f.to_string()),
        },
        other => SqlError::Sql {
            code: "SQLITE_ERROR",
            message: other.to_string(),
        },
    }
}

fn sqlite_error(e: &rusqlite::Error, limits: &SqlLimits, db_bytes_max: u64) -> SqlError {
    let rusqlite::Error::SqliteFailure(f, message) = e else {
        return plain_error(e);
    };
    let message = message.clone().unwrap_or_else(|| f.to_string());
    let limit = |limit: &'static str, max: u64| SqlError::Limit {
        limit,
        max,
        message: message.clone(),
    };
    match f.code {
        ErrorCode::OperationInterrupted => SqlError::Interrupted {
            budget_ms: limits.statement_time_ms,
        },
        ErrorCode::DiskFull => limit("storage_bytes_max", db_bytes_max),
        ErrorCode::TooBig => limit("value_bytes_max", limits.value_bytes_max as u64),
        _ if message.starts_with("too many SQL variables") => {
            limit("bound_params_max", limits.bound_params_max as u64)
        }
        _ if message.starts_with("too many columns") => {
            limit("columns_max", limits.columns_max as u64)
        }
        _ => plain_error(e),
    }
}

/// SQLite's name of a result code (its primary code's name).
fn code_name(extended: i32) -> &'static str {
    match extended & 0xff {
        1 => "SQLITE_ERROR",
        2 => "SQLITE_INTERNAL",
        3 => "SQLITE_PERM",
        4 => "SQLITE_ABORT",
        5 => "SQLITE_BUSY",
        6 => "SQLITE_LOCKED",
        7 => "SQLITE_NOMEM",
        8 => "SQLITE_READONLY",
        9 => "SQLITE_INTERRUPT",
        10 => "SQLITE_IOERR",
        11 => "SQLITE_CORRUPT",
        13 => "SQLITE_FULL",
        18 => "SQLITE_TOOBIG",
        19 => "SQLITE_CONSTRAINT",
        20 => "SQLITE_MISMATCH",
        21 => "SQLITE_MISUSE",
        23 => "SQLITE_AUTH",
        25 => "SQLITE_RANGE",
        26 => "SQLITE_NOTADB",
        _ => "SQLITE_ERROR",
    }
}
