//! Configuration: the `--config` TOML file.
//!
//! ```toml
//! [server]
//! header_timeout_ms = 10000        # a request's head must arrive within this
//! idle_timeout_ms = 60000          # keep-alive connections idle this long are closed
//! header_bytes_max = 16384         # request line + headers (431 past it)
//! body_bytes_max = 1048576         # request body (413 past it)
//! connections_max_per_shard = 10000
//! rpc_frame_bytes_max = 1048576    # binary RPC frames (error frame and close past it)
//! websocket_message_bytes_max = 1048576      # a bigger message closes its socket with 1009
//! websocket_send_queue_bytes_max = 4194304   # a reader this far behind is closed with 1008
//! websocket_close_timeout_ms = 5000          # wait this long for the peer's close frame
//! call_timeout_ms = 30000          # a call between objects unanswered this long fails
//! shutdown_timeout_ms = 10000      # on SIGTERM, connections get this long to finish
//! wal_groups_in_flight = 2         # log groups each shard writes and syncs at once (1-8)
//! disk_free_bytes_min = 33554432   # a start needs this much free beyond the log to replay (0: no check)
//! storage_cache_bytes_per_partition = 16777216     # fjall block cache of each partition
//! storage_memtable_bytes_per_partition = 16777216  # fjall memtable of each partition (1-32 MiB)
//! storage_idle_flush_ms = 30000    # flush memtables after this long without a write (0: never)
//! transparent_huge_pages = false   # let the heap use THP (faster under load, keeps freed memory)
//! sql_connections_max_per_shard = 8192  # open SQL connections (past it, others close)
//!
//! [classes.ratelimit]              # per-class settings
//! limit = 100
//! window_ms = 60000
//! idle_timeout_ms = 60000          # an object idle this long leaves memory
//! key_bytes_max = 2048             # storage limits of each object (any class)
//! value_bytes_max = 131072
//! storage_bytes_max = 1073741824
//! alarm_retry = true               # retry failed alarms with backoff
//! alarm_retry_backoff_ms = 2000    # the first retry's delay; doubling after
//! websocket_hibernation = true     # objects with only open WebSockets leave memory
//! hibernation_timeout_ms = 10000   # ... after this long without an event
//! sql_statement_bytes_max = 100000 # SQL limits of each object (any class)
//! sql_bound_params_max = 100
//! sql_value_bytes_max = 2000000    # a string, blob or row
//! sql_columns_max = 100
//! sql_statement_time_ms = 100      # a statement running longer is interrupted
//! sql_result_bytes_max = 16777216  # rows one statement returns
//! sql_cache_bytes_max = 262144     # SQLite page cache per open connection
//! sql_idle_timeout_ms = 10000      # an idle object's connection closes
//!
//! # Routes: a path served by one class, the object named by a query
//! # parameter. Without a `routes` key these two (the seed's chat routes)
//! # apply; `routes = []` turns them off.
//! [[routes]]
//! path = "/websocket"
//! class = "chat"
//! name_param = "room"
//! name_default = "default"
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::Deserialize;

/// Limits on a request head beyond which nothing sensible can be served.
pub const HEADER_BYTES_MAX_LIMIT: usize = 1 << 20;
/// The largest request body the server can be configured to accept.
pub const BODY_BYTES_MAX_LIMIT: usize = 64 << 20;
/// The longest key a class can be configured to accept.
pub const KEY_BYTES_MAX_LIMIT: usize = 64 * 1024;
/// The largest value a class can be configured to accept.
pub const VALUE_BYTES_MAX_LIMIT: usize = 32 << 20;
/// The largest WebSocket message the server can be configured to accept.
pub const WEBSOCKET_MESSAGE_BYTES_MAX_LIMIT: usize = 32 << 20;
/// Longest route path.
pub const ROUTE_PATH_BYTES_MAX: usize = 256;
/// Most routes.
pub const ROUTES_MAX: usize = 256;
/// The most connections a shard can be configured to hold.
pub const CONNECTIONS_MAX_LIMIT: usize = 1 << 20;

/// Free space a start needs beyond the log to replay: two memtables'
/// worth (16 MiB each), so the first flushes after the start have room.
pub const DISK_FREE_BYTES_MIN_DEFAULT: u64 = 32 << 20;
/// The most free space a start can be configured to ask for.
pub const DISK_FREE_BYTES_MIN_LIMIT: u64 = 1 << 40;

/// The largest block cache a partition can be configured to have.
pub const STORAGE_CACHE_BYTES_MAX_LIMIT: u64 = 64 << 30;

/// Server-wide settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub header_timeout_ms: u64,
    pub idle_timeout_ms: u64,
    pub header_bytes_max: usize,
    pub body_bytes_max: usize,
    pub connections_max_per_shard: usize,
    /// Largest binary RPC frame; a larger one is answered with an error
    /// frame and the connection closed.
    pub rpc_frame_bytes_max: usize,
    /// Largest WebSocket message (after reassembly); past it the socket is
    /// closed with 1009.
    pub websocket_message_bytes_max: usize,
    /// Bytes queued for one WebSocket beyond which its reader counts as
    /// too slow: the socket is closed with 1008.
    pub websocket_send_queue_bytes_max: usize,
    /// How long a closing WebSocket waits for the peer's close frame.
    pub websocket_close_timeout_ms: u64,
    /// How long an object waits for the reply to a call it made before the
    /// call fails with a timeout (a late reply is dropped).
    pub call_timeout_ms: u64,
    /// On SIGTERM, how long a shard waits for its connections to finish
    /// before it ends anyway.
    pub shutdown_timeout_ms: u64,
    /// Groups of writes each shard's log has written and syncing at once:
    /// with 2, the next group's sync starts while the previous one is
    /// still running. Writes are acknowledged in order either way.
    pub wal_groups_in_flight: usize,
    /// Free space the data directory's filesystem must have at start,
    /// beyond the log left to replay; with less the server refuses to
    /// start and says the disk is full (exit status 75). 0 turns the check
    /// off.
    pub disk_free_bytes_min: u64,
    /// fjall's block cache of each storage partition. It fills as tables
    /// are read and stays full: part of the steady-state memory.
    pub storage_cache_bytes_per_partition: u64,
    /// fjall's memtable of each storage partition (as fjall counts it; the
    /// memory is up to about twice this): writes stay in memory until it
    /// is full, or until [`storage_idle_flush_ms`](Self::storage_idle_flush_ms).
    pub storage_memtable_bytes_per_partition: u64,
    /// After this long without a write, a shard's memtables are flushed
    /// to tables, so an idle server does not hold its last writes in
    /// memory. 0: only full memtables are flushed.
    pub storage_idle_flush_ms: u64,
    /// Whether the process may use transparent huge pages. The allocator
    /// asks for them (`MADV_HUGEPAGE`) on its heap; with them, memory freed
    /// after objects leave stays resident, and khugepaged slowly fills the
    /// freed 4 KiB pages back into 2 MiB ones while the server idles
    /// (PERF.md, memory after eviction). Off by default: the server then
    /// disables THP for itself at start (`PR_SET_THP_DISABLE`).
    pub transparent_huge_pages: bool,
    /// Open SQL connections per shard; past it, other objects' connections
    /// close (they reopen on their next SQL call).
    pub sql_connections_max_per_shard: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            header_timeout_ms: 10_000,
            idle_timeout_ms: 60_000,
            header_bytes_max: 16 * 1024,
            body_bytes_max: 1024 * 1024,
            connections_max_per_shard: 10_000,
            rpc_frame_bytes_max: 1 << 20,
            websocket_message_bytes_max: 1 << 20,
            websocket_send_queue_bytes_max: 4 << 20,
            websocket_close_timeout_ms: 5_000,
            call_timeout_ms: 30_000,
            shutdown_timeout_ms: 10_000,
            wal_groups_in_flight: 2,
            disk_free_bytes_min: DISK_FREE_BYTES_MIN_DEFAULT,
            storage_cache_bytes_per_partition: 16 << 20,
            storage_memtable_bytes_per_partition: 16 << 20,
            storage_idle_flush_ms: 30_000,
            transparent_huge_pages: false,
            sql_connections_max_per_shard: crate::shard::objects::SQL_CONNECTIONS_MAX_DEFAULT,
        }
    }
}

/// Settings every class has, whatever its own.
#[derive(Debug, Clone, Copy)]
pub struct ClassCommon {
    /// An object idle this long leaves memory; its state stays in storage.
    pub idle_timeout_ms: u64,
    /// Limits on what each object of the class stores.
    pub limits: crate::object::StorageLimits,
    /// Whether a failed alarm is retried (6 times, with exponential backoff).
    pub alarm_retry: bool,
    /// The first retry's delay; each further one doubles it.
    pub alarm_retry_backoff_ms: u64,
    /// Whether an object whose only activity is open WebSockets leaves
    /// memory (its sockets stay open; the next message rebuilds it).
    pub websocket_hibernation: bool,
    /// How long such an object stays in memory after its last event.
    pub hibernation_timeout_ms: u64,
    /// Limits on each object's SQL database.
    pub sql: crate::sql::SqlLimits,
}

impl Default for ClassCommon {
    fn default() -> Self {
        ClassCommon {
            idle_timeout_ms: 60_000,
            limits: crate::object::StorageLimits::default(),
            alarm_retry: true,
            alarm_retry_backoff_ms: 2_000,
            websocket_hibernation: true,
            hibernation_timeout_ms: 10_000,
            sql: crate::sql::SqlLimits::DEFAULT,
        }
    }
}

/// The whole configuration file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    /// Per-class tables, passed to each class's factory (which rejects keys
    /// it does not know) after the common keys are taken out.
    pub classes: BTreeMap<String, toml::Table>,
    /// Paths served by a class, the object named by a query parameter;
    /// `None`: the default routes ([`Config::routes`]).
    pub routes: Option<Vec<Route>>,
}

/// A path served by one class: `GET /websocket?room=R` reaches object `R`
/// (or `name_default`) of `class`, which sees the request unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// The exact path (without the query).
    pub path: String,
    pub class: String,
    /// The query parameter naming the object.
    pub name_param: String,
    /// The object's name when the parameter is absent or empty.
    pub name_default: String,
}

/// A configuration that cannot be used, and why.
#[derive(Debug)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("cannot read config file {}: {e}", path.display())))?;
        Self::parse(&text)
            .map_err(|e| ConfigError(format!("config file {}: {}", path.display(), e.0)))
    }

    /// Parses and validates configuration text.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let s = &self.server;
        let check = |ok: bool, what: &str| {
            if ok {
                Ok(())
            } else {
                Err(ConfigError(what.to_string()))
            }
        };
        check(
            s.header_timeout_ms >= 1,
            "server.header_timeout_ms must be at least 1",
        )?;
        check(
            s.idle_timeout_ms >= 1,
            "server.idle_timeout_ms must be at least 1",
        )?;
        check(
            (1024..=HEADER_BYTES_MAX_LIMIT).contains(&s.header_bytes_max),
            "server.header_bytes_max must be between 1024 and 1048576",
        )?;
        check(
            s.body_bytes_max <= BODY_BYTES_MAX_LIMIT,
            "server.body_bytes_max must be at most 67108864",
        )?;
        check(
            (64..=BODY_BYTES_MAX_LIMIT).contains(&s.rpc_frame_bytes_max),
            "server.rpc_frame_bytes_max must be between 64 and 67108864",
        )?;
        check(
            (1..=CONNECTIONS_MAX_LIMIT).contains(&s.connections_max_per_shard),
            "server.connections_max_per_shard must be between 1 and 1048576",
        )?;
        check(
            (125..=WEBSOCKET_MESSAGE_BYTES_MAX_LIMIT).contains(&s.websocket_message_bytes_max),
            "server.websocket_message_bytes_max must be between 125 and 33554432",
        )?;
        check(
            (1024..=1 << 30).contains(&s.websocket_send_queue_bytes_max),
            "server.websocket_send_queue_bytes_max must be between 1024 and 1073741824",
        )?;
        check(
            s.websocket_close_timeout_ms >= 1,
            "server.websocket_close_timeout_ms must be at least 1",
        )?;
        check(
            s.call_timeout_ms >= 1,
            "server.call_timeout_ms must be at least 1",
        )?;
        check(
            (1..=CONNECTIONS_MAX_LIMIT).contains(&s.sql_connections_max_per_shard),
            "server.sql_connections_max_per_shard must be between 1 and 1048576",
        )?;
        check(
            (1..=durin_storage::WAL_GROUPS_IN_FLIGHT_MAX).contains(&s.wal_groups_in_flight),
            "server.wal_groups_in_flight must be between 1 and 8",
        )?;
        check(
            s.disk_free_bytes_min <= DISK_FREE_BYTES_MIN_LIMIT,
            "server.disk_free_bytes_min must be at most 1099511627776",
        )?;
        check(
            (1 << 20..=STORAGE_CACHE_BYTES_MAX_LIMIT)
                .contains(&s.storage_cache_bytes_per_partition),
            "server.storage_cache_bytes_per_partition must be between 1048576 and 68719476736",
        )?;
        check(
            (durin_storage::MEMTABLE_BYTES_MIN..=durin_storage::MEMTABLE_BYTES_MAX)
                .contains(&s.storage_memtable_bytes_per_partition),
            "server.storage_memtable_bytes_per_partition must be between 1048576 and 33554432",
        )?;
        let routes = self.routes();
        check(
            routes.len() <= ROUTES_MAX,
            "at most 256 routes may be configured",
        )?;
        for route in &routes {
            let path_ok = route.path.starts_with('/')
                && route.path.len() <= ROUTE_PATH_BYTES_MAX
                && !route.path.contains(['?', '#', ' '])
                && !["/healthz", "/metrics"].contains(&route.path.as_str())
                && !route.path.starts_with("/_client/");
            if !path_ok {
                return Err(ConfigError(format!(
                    "routes: path `{}` must start with `/`, be at most {ROUTE_PATH_BYTES_MAX} bytes \
                     without `?`, `#` or spaces, and not be a built-in path",
                    route.path
                )));
            }
            if route.name_param.is_empty() || route.name_default.is_empty() {
                return Err(ConfigError(format!(
                    "routes: `{}` needs a name_param and a non-empty name_default",
                    route.path
                )));
            }
        }
        Ok(())
    }

    /// The routes in effect: the configured ones, or by default the seed's
    /// chat routes `/websocket` and `/info` (`?room=`, default `default`).
    pub fn routes(&self) -> Vec<Route> {
        match &self.routes {
            Some(routes) => routes.clone(),
            None => ["/websocket", "/info"]
                .iter()
                .map(|path| Route {
                    path: path.to_string(),
                    class: "chat".to_string(),
                    name_param: "room".to_string(),
                    name_default: "default".to_string(),
                })
                .collect(),
        }
    }

    /// Splits a class's table into the common settings and the class's own.
    pub fn class_settings(&self, class: &str) -> Result<(ClassCommon, toml::Table), ConfigError> {
        let mut table = self.classes.get(class).cloned().unwrap_or_default();
        let mut common = ClassCommon::default();
        common.limits.key_bytes_max = take_u64(
            &mut table,
            class,
            "key_bytes_max",
            common.limits.key_bytes_max as u64,
        )? as usize;
        common.limits.value_bytes_max = take_u64(
            &mut table,
            class,
            "value_bytes_max",
            common.limits.value_bytes_max as u64,
        )? as usize;
        common.limits.object_bytes_max = take_u64(
            &mut table,
            class,
            "storage_bytes_max",
            common.limits.object_bytes_max,
        )?;
        if common.limits.key_bytes_max > KEY_BYTES_MAX_LIMIT {
            return Err(ConfigError(format!(
                "classes.{class}.key_bytes_max must be at most {KEY_BYTES_MAX_LIMIT}"
            )));
        }
        if common.limits.value_bytes_max > VALUE_BYTES_MAX_LIMIT {
            return Err(ConfigError(format!(
                "classes.{class}.value_bytes_max must be at most {VALUE_BYTES_MAX_LIMIT}"
            )));
        }
        common.alarm_retry_backoff_ms = take_u64(
            &mut table,
            class,
            "alarm_retry_backoff_ms",
            common.alarm_retry_backoff_ms,
        )?;
        common.hibernation_timeout_ms = take_u64(
            &mut table,
            class,
            "hibernation_timeout_ms",
            common.hibernation_timeout_ms,
        )?;
        common.sql = take_sql_limits(&mut table, class)?;
        if let Some(value) = table.remove("websocket_hibernation") {
            common.websocket_hibernation = value.as_bool().ok_or_else(|| {
                ConfigError(format!(
                    "classes.{class}.websocket_hibernation must be true or false"
                ))
            })?;
        }
        if let Some(value) = table.remove("alarm_retry") {
            common.alarm_retry = value.as_bool().ok_or_else(|| {
                ConfigError(format!("classes.{class}.alarm_retry must be true or false"))
            })?;
        }
        if let Some(value) = table.remove("idle_timeout_ms") {
            common.idle_timeout_ms = value
                .as_integer()
                .filter(|&n| n >= 1)
                .map(|n| n as u64)
                .ok_or_else(|| {
                    ConfigError(format!(
                        "classes.{class}.idle_timeout_ms must be a positive integer"
                    ))
                })?;
        }
        Ok((common, table))
    }
}

/// The most a class may set an SQL limit to: SQLite's own ceilings for
/// lengths (1 GB) and variables, and a minute per statement.
const SQL_LENGTH_LIMIT: u64 = 1_000_000_000;
const SQL_PARAMS_LIMIT: u64 = 32_766;
const SQL_COLUMNS_LIMIT: u64 = 2_000;
const SQL_STATEMENT_TIME_LIMIT_MS: u64 = 60_000;

/// Reads a class's `sql_*` settings.
fn take_sql_limits(
    table: &mut toml::Table,
    class: &str,
) -> Result<crate::sql::SqlLimits, ConfigError> {
    let d = crate::sql::SqlLimits::DEFAULT;
    let mut take = |key: &str, default: u64, max: u64| -> Result<u64, ConfigError> {
        let value = take_u64(table, class, key, default)?;
        if value > max {
            return Err(ConfigError(format!(
                "classes.{class}.{key} must be at most {max}"
            )));
        }
        Ok(value)
    };
    Ok(crate::sql::SqlLimits {
        statement_bytes_max: take(
            "sql_statement_bytes_max",
            d.statement_bytes_max as u64,
            SQL_LENGTH_LIMIT,
        )? as usize,
        bound_params_max: take(
            "sql_bound_params_max",
            d.bound_params_max as u64,
            SQL_PARAMS_LIMIT,
        )? as usize,
        value_bytes_max: take(
            "sql_value_bytes_max",
            d.value_bytes_max as u64,
            SQL_LENGTH_LIMIT,
        )? as usize,
        columns_max: take("sql_columns_max", d.columns_max as u64, SQL_COLUMNS_LIMIT)? as usize,
        statement_time_ms: take(
            "sql_statement_time_ms",
            d.statement_time_ms,
            SQL_STATEMENT_TIME_LIMIT_MS,
        )?,
        result_bytes_max: take("sql_result_bytes_max", d.result_bytes_max as u64, 1 << 30)?
            as usize,
        cache_bytes_max: take("sql_cache_bytes_max", d.cache_bytes_max as u64, 1 << 30)? as usize,
        idle_close_ms: take("sql_idle_timeout_ms", d.idle_close_ms, u64::MAX)?,
    })
}

/// Reads an optional positive integer setting out of a class table.
pub fn take_u64(
    table: &mut toml::Table,
    class: &str,
    key: &str,
    default: u64,
) -> Result<u64, ConfigError> {
    match table.remove(key) {
        None => Ok(default),
        Some(value) => value
            .as_integer()
            .filter(|&n| n >= 1)
            .map(|n| n as u64)
            .ok_or_else(|| {
                ConfigError(format!("classes.{class}.{key} must be a positive integer"))
            }),
    }
}

/// Fails if a class table still holds keys its class did not take.
pub fn reject_unknown(table: &toml::Table, class: &str) -> Result<(), ConfigError> {
    match table.keys().next() {
        None => Ok(()),
        Some(key) => Err(ConfigError(format!(
            "classes.{class}: unknown setting `{key}`"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        assert!(Config::parse("[server]\nbogus = 1\n").is_err());
        assert!(Config::parse("[server]\nheader_timeout_ms = 0\n").is_err());
        assert!(Config::parse("[server]\nwal_groups_in_flight = 0\n").is_err());
        assert!(Config::parse("[server]\nwal_groups_in_flight = 9\n").is_err());
        assert!(Config::parse("[server]\nwal_groups_in_flight = 8\n").is_ok());
        assert!(Config::parse("[server]\nstorage_memtable_bytes_per_partition = 1000\n").is_err());
        assert!(
            Config::parse("[server]\nstorage_memtable_bytes_per_partition = 67108864\n").is_err()
        );
        assert!(Config::parse("[server]\nstorage_cache_bytes_per_partition = 0\n").is_err());
        assert!(Config::parse(
            "[server]\nstorage_cache_bytes_per_partition = 4194304\n\
             storage_memtable_bytes_per_partition = 4194304\nstorage_idle_flush_ms = 0\n"
        )
        .is_ok());
        assert!(Config::parse("[nope]\n").is_err());
        let config =
            Config::parse("[classes.ratelimit]\nlimit = 3\nidle_timeout_ms = 50\n").expect("valid");
        let (common, table) = config.class_settings("ratelimit").expect("valid");
        assert_eq!(common.idle_timeout_ms, 50);
        assert_eq!(table.get("limit").and_then(|v| v.as_integer()), Some(3));
    }

    #[test]
    fn sql_limits_are_read_per_class_and_bounded() {
        let config = Config::parse(
            "[classes.sql]\nsql_statement_time_ms = 250\nsql_bound_params_max = 10\n",
        )
        .expect("valid");
        let (common, table) = config.class_settings("sql").expect("valid");
        assert_eq!(common.sql.statement_time_ms, 250);
        assert_eq!(common.sql.bound_params_max, 10);
        assert_eq!(common.sql.columns_max, 100, "the rest keep their defaults");
        assert!(table.is_empty(), "the common keys are taken out");
        for bad in [
            "sql_statement_time_ms = 0",
            "sql_statement_time_ms = 600001",
            "sql_bound_params_max = 40000",
            "sql_columns_max = -1",
        ] {
            let config = Config::parse(&format!("[classes.sql]\n{bad}\n")).expect("parses");
            assert!(config.class_settings("sql").is_err(), "{bad}");
        }
        assert!(Config::parse("[server]\nsql_connections_max_per_shard = 0\n").is_err());
    }
}
