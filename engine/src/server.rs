//! Starting a server: classes, storage layout, listeners, mesh, shards.
//!
//! ```no_run
//! use durin::server::{ServerBuilder, ServerOptions};
//! use durin::config::Config;
//! let running = ServerBuilder::new().start(ServerOptions::default(), Config::default())?;
//! println!("listening on {}", running.addr());
//! running.wait();
//! # Ok::<(), durin::server::ServerError>(())
//! ```

use std::fmt;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;

use durin_storage::{Layout, StoreOptions};

use crate::classes::counter::CounterClass;
use crate::classes::kv::KvClass;
use crate::classes::ratelimit::RateLimitClass;
use crate::config::{Config, ConfigError};
use crate::mesh::{self, ShardWaker};
use crate::metrics::ShardMetrics;
use crate::object::ObjectClass;
use crate::registry::{valid_class_name, ClassFactory, Registry};
use crate::shard::{self, ShardSetup};

/// Exit status when a shard's loop or storage fails while serving (a log
/// write or sync, the applier, a checkpoint): sysexits' `EX_SOFTWARE`.
/// Nothing that was not durable has been acknowledged; a restart replays
/// the log.
pub const EXIT_SHARD_STOPPED: i32 = 70;

/// Most shards a server runs.
pub const SHARDS_MAX: usize = 1024;
/// Listen backlog of each shard's listener.
const LISTEN_BACKLOG: i32 = 4096;

/// Where and how to run.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    pub listen: SocketAddr,
    /// The shared binary RPC port (`None`: no RPC).
    pub rpc_listen: Option<SocketAddr>,
    /// Shard i also takes RPC on `rpc_shard_base_port + i`; 0 picks a free
    /// range.
    pub rpc_shard_base_port: u16,
    pub data_dir: PathBuf,
    /// Number of shards (threads).
    pub shards: usize,
    /// CPU of each shard, in order; `None`: not pinned.
    pub cpus: Option<Vec<usize>>,
    /// Partitions of a new data directory (an existing one keeps its own);
    /// `None`: one per shard.
    pub partitions: Option<u32>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            rpc_listen: Some(SocketAddr::from(([127, 0, 0, 1], 7070))),
            rpc_shard_base_port: 7071,
            data_dir: PathBuf::from("durin-data"),
            shards: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpus: None,
            partitions: None,
        }
    }
}

/// Why a server did not start.
#[derive(Debug)]
#[non_exhaustive]
pub enum ServerError {
    /// The configuration or a class's settings are invalid.
    Config(ConfigError),
    /// The options are invalid.
    Options(String),
    /// The data directory could not be opened.
    Storage(durin_storage::Error),
    /// Binding the listen address failed.
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    /// A shard failed to start.
    Shard(String),
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerError::Config(e) => write!(f, "{e}"),
            ServerError::Options(e) => f.write_str(e),
            ServerError::Storage(e) => write!(f, "data directory: {e}"),
            ServerError::Listen { addr, source } => write!(f, "cannot listen on {addr}: {source}"),
            ServerError::Shard(e) => f.write_str(e),
        }
    }
}

impl std::error::Error for ServerError {}

/// Collects the classes a server serves, then starts it.
pub struct ServerBuilder {
    factories: Vec<(String, ClassFactory)>,
    idle_hook: Option<fn()>,
}

impl Default for ServerBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl ServerBuilder {
    /// A builder with the built-in classes `chat`, `counter`, `kv`,
    /// `ratelimit` and `sql`.
    pub fn new() -> Self {
        ServerBuilder::empty()
            .class_with_config("chat", crate::classes::chat::factory)
            .class_with_config("counter", |t| Ok(Arc::new(CounterClass::from_config(t)?)))
            .class_with_config("kv", |t| Ok(Arc::new(KvClass::from_config(t)?)))
            .class_with_config("ratelimit", |t| {
                Ok(Arc::new(RateLimitClass::from_config(t)?))
            })
            .class_with_config("sql", |t| {
                Ok(Arc::new(crate::classes::sql::SqlClass::from_config(t)?))
            })
    }

    /// A builder with no classes.
    pub fn empty() -> Self {
        ServerBuilder {
            factories: Vec::new(),
            idle_hook: None,
        }
    }

    /// A function each shard's applier thread runs once it has been idle
    /// for two `storage_idle_flush_ms` periods (after flushing its
    /// memtables): the `durin` binary passes mimalloc's `mi_collect`, so
    /// that memory freed on other threads goes back (see
    /// [`durin_storage::StoreOptions::idle_hook`]).
    pub fn idle_hook(mut self, hook: fn()) -> Self {
        self.idle_hook = Some(hook);
        self
    }

    /// Registers a class that takes no settings from the config file.
    pub fn class(self, name: &str, class: impl ObjectClass) -> Self {
        let class: Arc<dyn ObjectClass> = Arc::new(class);
        self.class_with_config(name, move |table| {
            crate::config::reject_unknown(table, "class")?;
            Ok(Arc::clone(&class))
        })
    }

    /// Registers a class built from its `[classes.NAME]` table. The factory
    /// removes the keys it understands; keys left over are refused.
    pub fn class_with_config(
        mut self,
        name: &str,
        factory: impl Fn(&mut toml::Table) -> Result<Arc<dyn ObjectClass>, ConfigError>
            + Send
            + Sync
            + 'static,
    ) -> Self {
        self.factories.retain(|(n, _)| n != name);
        self.factories.push((name.to_string(), Box::new(factory)));
        self
    }

    /// Starts every shard and returns once all of them serve.
    pub fn start(
        self,
        options: ServerOptions,
        mut config: Config,
    ) -> Result<RunningServer, ServerError> {
        if let Some((bad, _)) = self.factories.iter().find(|(n, _)| !valid_class_name(n)) {
            return Err(ServerError::Options(format!(
                "class name `{bad}` must be 1 to 64 characters of a-z, 0-9, - and _"
            )));
        }
        let shards = options.shards;
        if !(1..=SHARDS_MAX).contains(&shards) {
            return Err(ServerError::Options(format!(
                "the shard count must be between 1 and {SHARDS_MAX}"
            )));
        }
        if options.cpus.as_ref().is_some_and(|c| c.len() < shards) {
            return Err(ServerError::Options("fewer CPUs listed than shards".into()));
        }
        let registry =
            Arc::new(Registry::build(&self.factories, &config).map_err(ServerError::Config)?);
        let routes = Arc::new(
            crate::registry::resolve_routes(&config, &registry).map_err(ServerError::Config)?,
        );
        let partitions = options.partitions.unwrap_or(shards as u32);
        let layout =
            Layout::open_or_create(&options.data_dir, partitions).map_err(ServerError::Storage)?;
        // Before fjall opens anything: on a full disk the replay below
        // would fail part way, after fjall logged errors of its own.
        durin_storage::space::check_room_to_start(&layout, config.server.disk_free_bytes_min)
            .map_err(ServerError::Storage)?;
        let server = &config.server;
        let mut store_options = StoreOptions {
            wal_groups_in_flight: server.wal_groups_in_flight,
            cache_bytes_per_partition: server.storage_cache_bytes_per_partition,
            memtable_bytes_per_partition: server.storage_memtable_bytes_per_partition,
            idle_flush_ms: (server.storage_idle_flush_ms > 0)
                .then_some(server.storage_idle_flush_ms),
            idle_hook: self.idle_hook,
            ..StoreOptions::default()
        };
        let opening = std::time::Instant::now();
        let partitions = durin_storage::OpenPartitions::open_all(&layout, &store_options)
            .map_err(ServerError::Storage)?;
        log::info!(
            "opened {} partitions in {} ms",
            layout.partitions(),
            opening.elapsed().as_millis()
        );
        let replaying = std::time::Instant::now();
        let recovered =
            durin_storage::wal::recover_into(&layout, &partitions).map_err(ServerError::Storage)?;
        log::info!(
            "replayed {} log records in {} ms",
            recovered.records,
            replaying.elapsed().as_millis()
        );
        store_options.wal_run = recovered.next_run;
        // Syncing what was replayed and deleting its segments can take
        // seconds; the server serves meanwhile (until it is done, a crash
        // replays the same segments again, before the new ones).
        //
        // If it fails the process stops: those segments would stay, and a
        // later start would replay their old values over writes of this
        // run whose own segments a shard's checkpoint had deleted by then.
        let checkpoint = recovered.checkpoint;
        std::thread::Builder::new()
            .name("durin-recovery-checkpoint".into())
            .spawn(move || {
                if let Err(e) = checkpoint.finish() {
                    let full = if e.is_disk_full() { "the disk is full: " } else { "" };
                    eprintln!("durin: checkpoint after recovery failed: {full}{e}; stopping (the log stays and is replayed at the next start)");
                    std::process::exit(EXIT_SHARD_STOPPED);
                }
            })
            .map_err(|e| ServerError::Shard(format!("spawning the recovery checkpoint: {e}")))?;
        let partitions = Arc::new(partitions);
        fit_connections_to_fd_limit(&mut config.server, shards);
        let (http, addr) = bind_listeners(options.listen, shards)?;
        let rpc = match options.rpc_listen {
            Some(rpc_listen) => Some(bind_rpc_listeners(
                rpc_listen,
                options.rpc_shard_base_port,
                shards,
            )?),
            None => None,
        };
        let rpc_addrs = rpc.as_ref().map(|r| (r.addr, r.base_port));
        let mut listeners: Vec<Vec<std::os::fd::OwnedFd>> =
            http.into_iter().map(|fd| vec![fd]).collect();
        if let Some(rpc) = rpc {
            for ((set, shared), own) in listeners.iter_mut().zip(rpc.shared).zip(rpc.own) {
                set.push(shared);
                set.push(own);
            }
        }
        let wakers: Vec<Arc<ShardWaker>> = (0..shards)
            .map(|_| ShardWaker::new().map(Arc::new))
            .collect::<Result<_, _>>()
            .map_err(|e| ServerError::Shard(format!("eventfd: {e}")))?;
        let meshes = mesh::build(&wakers);
        let all_metrics: Arc<Vec<Arc<ShardMetrics>>> = Arc::new(
            (0..shards)
                .map(|_| Arc::new(ShardMetrics::default()))
                .collect(),
        );
        let stopping = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (ready_tx, ready_rx) = crossbeam_channel::bounded(shards);
        let mut handles = Vec::with_capacity(shards);
        for (index, (listener, mesh)) in listeners.into_iter().zip(meshes).enumerate() {
            let setup = ShardSetup {
                index: index as u32,
                shards: shards as u32,
                cpu: options.cpus.as_ref().map(|c| c[index]),
                server: config.server.clone(),
                listeners: listener,
                rpc_shard_base_port: rpc_addrs.map(|(_, base)| base),
                layout: layout.clone(),
                store_options: store_options.clone(),
                partitions: Arc::clone(&partitions),
                registry: Arc::clone(&registry),
                routes: Arc::clone(&routes),
                metrics: Arc::clone(&all_metrics[index]),
                all_metrics: Arc::clone(&all_metrics),
                waker: Arc::clone(&wakers[index]),
                stopping: Arc::clone(&stopping),
                mesh,
            };
            let ready = ready_tx.clone();
            let handle = std::thread::Builder::new()
                .name(format!("durin-shard-{index}"))
                .spawn(move || shard::run(setup, move |r| drop(ready.send(r))))
                .map_err(|e| ServerError::Shard(format!("spawning shard {index}: {e}")))?;
            handles.push(handle);
        }
        for _ in 0..shards {
            match ready_rx.recv() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(ServerError::Shard(e)),
                Err(_) => return Err(ServerError::Shard("a shard exited while starting".into())),
            }
        }
        Ok(RunningServer {
            addr,
            rpc: rpc_addrs,
            handles,
            stopping,
            wakers,
        })
    }
}

/// Descriptors kept free for each shard beyond its connections: its
/// listeners, eventfd and ring, the log segments it writes, fjall's table
/// files as they grow, and the connections accepted at the cap only to be
/// refused.
const FDS_RESERVED_PER_SHARD: u64 = 64;
/// Descriptors kept free for the process as a whole (stdio, the applier
/// and checkpoint threads' files, what an embedding program opens).
const FDS_RESERVED_PER_PROCESS: u64 = 64;

/// Raises the soft limit on open descriptors to the hard limit (every
/// connection is one, and the usual soft limit of 1,024 is far below what
/// the connection cap allows), then lowers the per-shard connection cap if
/// the caps of all shards would still run the process out of descriptors:
/// a cap that is reached answers `503`, a descriptor limit that is reached
/// first makes accepts fail.
fn fit_connections_to_fd_limit(server: &mut crate::config::ServerConfig, shards: usize) {
    let Some(limit) = raise_fd_limit() else {
        return;
    };
    let open = open_fd_count().unwrap_or(0);
    let reserved = open + FDS_RESERVED_PER_PROCESS + FDS_RESERVED_PER_SHARD * shards as u64;
    let wanted = server.connections_max_per_shard as u64 * shards as u64;
    if wanted + reserved <= limit {
        return;
    }
    let fitting = (limit.saturating_sub(reserved) / shards as u64).max(1) as usize;
    log::warn!(
        "connections_max_per_shard lowered from {} to {fitting}: {shards} shards at {} connections \
         need more than the {limit} open files RLIMIT_NOFILE allows (raise the hard limit, e.g. \
         `ulimit -Hn`, to keep the configured cap)",
        server.connections_max_per_shard,
        server.connections_max_per_shard,
    );
    server.connections_max_per_shard = fitting;
}

/// Sets the soft `RLIMIT_NOFILE` to the hard limit; returns the limit now
/// in force (`None`: unlimited or unknown).
fn raise_fd_limit() -> Option<u64> {
    // SAFETY: getrlimit and setrlimit on a local struct.
    unsafe {
        let mut limit: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return None;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
            }
        }
        (limit.rlim_cur != libc::RLIM_INFINITY).then_some(limit.rlim_cur)
    }
}

/// How many descriptors the process has open now.
fn open_fd_count() -> Option<u64> {
    Some(std::fs::read_dir("/proc/self/fd").ok()?.count() as u64)
}

/// Binds one `SO_REUSEPORT` listener per shard on the same address. With
/// port 0 the first bind picks the port and the others join it.
fn bind_listeners(
    listen: SocketAddr,
    shards: usize,
) -> Result<(Vec<std::os::fd::OwnedFd>, SocketAddr), ServerError> {
    let err = |addr, source| ServerError::Listen { addr, source };
    let first = durin_net::socket::reuseport_listener(listen, LISTEN_BACKLOG)
        .map_err(|e| err(listen, e))?;
    let addr = durin_net::socket::local_addr(first.as_raw_fd()).map_err(|e| err(listen, e))?;
    let mut listeners = vec![first];
    for _ in 1..shards {
        listeners.push(
            durin_net::socket::reuseport_listener(addr, LISTEN_BACKLOG)
                .map_err(|e| err(addr, e))?,
        );
    }
    Ok((listeners, addr))
}

/// The RPC listeners: the shared port (one `SO_REUSEPORT` socket per
/// shard) and each shard's own port.
struct RpcListeners {
    addr: SocketAddr,
    base_port: u16,
    shared: Vec<std::os::fd::OwnedFd>,
    own: Vec<std::os::fd::OwnedFd>,
}

/// How many ranges of ports an automatic RPC base port tries.
const RPC_BASE_PORT_TRIES: usize = 32;

fn bind_rpc_listeners(
    listen: SocketAddr,
    base_port: u16,
    shards: usize,
) -> Result<RpcListeners, ServerError> {
    let (shared, addr) = bind_listeners(listen, shards)?;
    let err = |addr, source| ServerError::Listen { addr, source };
    let bind_range = |base: u16| -> std::io::Result<Vec<std::os::fd::OwnedFd>> {
        (0..shards)
            .map(|i| {
                let port = u16::try_from(usize::from(base) + i)
                    .map_err(|_| std::io::Error::other("shard ports run past 65535"))?;
                let mut at = addr;
                at.set_port(port);
                durin_net::socket::exclusive_listener(at, LISTEN_BACKLOG)
            })
            .collect()
    };
    if base_port != 0 {
        let own = bind_range(base_port).map_err(|e| {
            let mut at = addr;
            at.set_port(base_port);
            err(at, e)
        })?;
        return Ok(RpcListeners {
            addr,
            base_port,
            shared,
            own,
        });
    }
    // Pick a free range: let the kernel choose shard 0's port, then try to
    // take the ports after it; another range if one is taken.
    let mut last = None;
    for _ in 0..RPC_BASE_PORT_TRIES {
        let mut at = addr;
        at.set_port(0);
        let first =
            durin_net::socket::exclusive_listener(at, LISTEN_BACKLOG).map_err(|e| err(at, e))?;
        let base = durin_net::socket::local_addr(first.as_raw_fd())
            .map_err(|e| err(at, e))?
            .port();
        drop(first);
        match bind_range(base) {
            Ok(own) => {
                return Ok(RpcListeners {
                    addr,
                    base_port: base,
                    shared,
                    own,
                })
            }
            Err(e) => last = Some(e),
        }
    }
    Err(err(
        addr,
        last.unwrap_or_else(|| std::io::Error::other("no free port range")),
    ))
}

/// A started server.
pub struct RunningServer {
    addr: SocketAddr,
    rpc: Option<(SocketAddr, u16)>,
    handles: Vec<JoinHandle<()>>,
    stopping: Arc<std::sync::atomic::AtomicBool>,
    wakers: Vec<Arc<ShardWaker>>,
}

impl RunningServer {
    /// The address the server listens on (with the real port if 0 was
    /// asked for).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The number of shards.
    pub fn shards(&self) -> usize {
        self.handles.len()
    }

    /// The shared RPC address and the first shard's own RPC port, if RPC
    /// is on.
    pub fn rpc_addr(&self) -> Option<(SocketAddr, u16)> {
        self.rpc
    }

    /// Blocks while the shards run.
    pub fn wait(self) {
        for handle in self.handles {
            let _ = handle.join();
        }
    }

    /// Asks every shard to stop: new connections are refused, WebSockets
    /// are closed with 1001 (going away), other connections close once
    /// what they are owed is sent (responses wait for their writes to be
    /// durable, as always), and each shard ends once it has no connection
    /// left or after the server's `shutdown_timeout_ms`. [`wait`](Self::wait)
    /// returns when all have ended.
    pub fn stop(&self) {
        self.stopping
            .store(true, std::sync::atomic::Ordering::SeqCst);
        for waker in &self.wakers {
            waker.wake();
        }
    }
}
