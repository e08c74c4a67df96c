//! `loadgen ws`'s flags, checked into a [`WsRun`] before any socket opens.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use clap::{Args, ValueEnum};

use crate::cli::{CpuList, UsageError, CONNECTIONS_MAX, RATE_MAX};
use crate::duration;
use crate::socket;
use crate::target::Target;

/// Most clients one worker thread holds; more need more `--threads`. Each
/// has a receive and at times a send in flight, which must fit the ring's
/// completion queue.
pub const CLIENTS_PER_WORKER_MAX: usize = 30_000;
/// Most clients one source address connects, so that its ephemeral ports
/// (about 28,000 on Linux by default) do not run out.
pub const CLIENTS_PER_SOURCE_IP_MAX: usize = 20_000;
/// Source addresses 127.0.0.1 to 127.0.0.254.
pub const SOURCE_IPS_MAX: u8 = 254;
/// Descriptors kept back for the process itself (stdio, rings, ...).
const SPARE_FDS: u64 = 64;
/// What stands in the URL for the room's name.
pub const ROOM_PLACEHOLDER: &str = "{room}";
/// Longest `--room-prefix`.
const ROOM_PREFIX_BYTES_MAX: usize = 64;

#[derive(Debug, Args)]
pub struct WsArgs {
    /// Chat URL; each `{room}` is replaced by the room's name and a
    /// `name=c<i>` query parameter is added per client, e.g.
    /// 'ws://127.0.0.1:8080/chat/{room}/websocket'.
    #[arg(long)]
    pub url: String,
    /// Rooms, named `<room-prefix>0` to `<room-prefix><R-1>`.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=i64::from(CONNECTIONS_MAX)))]
    pub rooms: u32,
    /// Clients in each room; rooms × clients is at most 100,000.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=i64::from(CONNECTIONS_MAX)))]
    pub clients_per_room: u32,
    /// Which clients send: every client, the first of each room, or none
    /// (connect everyone, then hold the connections idle).
    #[arg(long, value_enum, default_value_t = Senders::All)]
    pub senders: Senders,
    /// Prefix of the room names.
    #[arg(long, default_value = "r")]
    pub room_prefix: String,
    /// How long the measured phase lasts, e.g. 10s, 500ms, 2m (at most 24h).
    #[arg(short = 'd', long, default_value = "10s", value_parser = duration::parse)]
    pub duration: Duration,
    /// Open loop at this many messages per second in total, latency counted
    /// from each message's intended send time. Without it, closed loop: a
    /// sender sends its next message once the last reached every other
    /// client of its room.
    #[arg(long, value_parser = parse_rate)]
    pub rate: Option<f64>,
    /// A message not delivered to all of its room within this is counted as
    /// a timeout; also the limit for one client to connect and join.
    #[arg(long, default_value = "5s", value_parser = duration::parse)]
    pub timeout: Duration,
    /// The limit for the whole connect phase; clients not joined by then are
    /// counted as timeouts and left out of the run.
    #[arg(long, default_value = "60s", value_parser = duration::parse)]
    pub connect_timeout: Duration,
    /// Bind client sockets round-robin to 127.0.0.1 .. 127.0.0.N [default:
    /// enough for at most 20,000 clients per address].
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=i64::from(SOURCE_IPS_MAX)))]
    pub source_ips: Option<u8>,
    /// Worker threads, each with its own io_uring ring; all clients of a
    /// room share one [default: the number of --cpus, else half the
    /// available CPUs, raised to hold 30,000 clients per thread].
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub threads: Option<u16>,
    /// CPUs to pin the worker threads to, e.g. `1` or `2-3,6`.
    #[arg(long, value_parser = parse_cpus)]
    pub cpus: Option<CpuList>,
    /// Print one JSON summary on stdout instead of the text report.
    #[arg(long)]
    pub json: bool,
    /// Allow targets other than this machine (127.0.0.0/8, ::1, localhost).
    #[arg(long)]
    pub allow_remote: bool,
}

/// Which clients of a room send messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Senders {
    All,
    One,
    None,
}

impl fmt::Display for Senders {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Senders::All => "all",
            Senders::One => "one",
            Senders::None => "none",
        })
    }
}

fn parse_cpus(text: &str) -> Result<CpuList, String> {
    socket::parse_cpu_list(text).map(CpuList)
}

fn parse_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate > 0.0 && rate <= RATE_MAX => Ok(rate),
        _ => Err(format!(
            "`{text}` is not a rate: messages per second, above 0 and at most {RATE_MAX}"
        )),
    }
}

/// Everything a WebSocket run needs, checked.
#[derive(Debug, Clone)]
pub struct WsRun {
    pub url: String,
    pub addr: SocketAddr,
    /// The `Host` header.
    pub authority: String,
    /// The path and query split at each `{room}`.
    pub path_parts: Vec<String>,
    /// `?` or `&`: what comes before the `name` parameter.
    pub name_separator: u8,
    pub room_prefix: String,
    pub rooms: usize,
    pub clients_per_room: usize,
    pub senders: Senders,
    pub rate: Option<f64>,
    pub duration: Duration,
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub threads: usize,
    pub cpus: Option<Vec<usize>>,
    /// Addresses to bind client sockets to in turn; empty: the kernel picks.
    pub source_ips: Vec<Ipv4Addr>,
    pub json: bool,
    pub warnings: Vec<String>,
}

impl WsRun {
    pub fn clients(&self) -> usize {
        self.rooms * self.clients_per_room
    }

    /// Senders in the whole run.
    pub fn senders_total(&self) -> usize {
        match self.senders {
            Senders::All => self.clients(),
            Senders::One => self.rooms,
            Senders::None => 0,
        }
    }
}

impl WsArgs {
    /// Checks the flags and prepares the run; resolves the target and
    /// raises the open-file limit.
    pub fn plan(&self) -> Result<WsRun, UsageError> {
        let target = parse_url(&self.url)?;
        if !self.allow_remote {
            target.check_loopback()?;
        }
        let addr = target.resolve()?;
        let mut warnings = Vec::new();
        let path = target.path_parts.join(crate::target::KEY_PLACEHOLDER);
        if !path.contains(ROOM_PLACEHOLDER) && self.rooms > 1 {
            warnings.push(format!(
                "the URL has no {ROOM_PLACEHOLDER}: all {} rooms are the same room",
                self.rooms
            ));
        }
        check_room_prefix(&self.room_prefix)?;
        let rooms = self.rooms as usize;
        let clients_per_room = self.clients_per_room as usize;
        let clients = rooms * clients_per_room;
        if clients > CONNECTIONS_MAX as usize {
            return Err(UsageError(format!(
                "{rooms} rooms of {clients_per_room} clients are {clients} clients, more than \
                 the {CONNECTIONS_MAX} allowed"
            )));
        }
        if clients_per_room < 2 && self.senders != Senders::None {
            return Err(UsageError(
                "a room of one client has nobody to deliver to; use --clients-per-room 2 or \
                 more, or --senders none"
                    .into(),
            ));
        }
        if self.rate.is_some() && self.senders == Senders::None {
            return Err(UsageError(
                "--rate needs senders; drop --senders none".into(),
            ));
        }
        let (threads, cpus) = self.plan_threads(rooms, clients_per_room)?;
        let source_ips = plan_source_ips(self.source_ips, clients, addr)?;
        check_open_files(clients)?;
        Ok(WsRun {
            url: self.url.clone(),
            addr,
            authority: target.authority.clone(),
            name_separator: if path.contains('?') { b'&' } else { b'?' },
            path_parts: path.split(ROOM_PLACEHOLDER).map(str::to_string).collect(),
            room_prefix: self.room_prefix.clone(),
            rooms,
            clients_per_room,
            senders: self.senders,
            rate: self.rate,
            duration: self.duration,
            timeout: self.timeout,
            connect_timeout: self.connect_timeout,
            threads,
            cpus,
            source_ips,
            json: self.json,
            warnings,
        })
    }

    /// Threads (never more than rooms, since a room is never split) and,
    /// when pinned, the CPU of each.
    fn plan_threads(
        &self,
        rooms: usize,
        clients_per_room: usize,
    ) -> Result<(usize, Option<Vec<usize>>), UsageError> {
        if clients_per_room > CLIENTS_PER_WORKER_MAX {
            return Err(UsageError(format!(
                "a room of {clients_per_room} clients does not fit one thread (at most \
                 {CLIENTS_PER_WORKER_MAX}); use more, smaller rooms"
            )));
        }
        let available = std::thread::available_parallelism().map_or(1, usize::from);
        let needed = (rooms * clients_per_room).div_ceil(CLIENTS_PER_WORKER_MAX);
        let requested = match (self.threads, &self.cpus) {
            (Some(threads), _) => usize::from(threads),
            (None, Some(CpuList(cpus))) => cpus.len(),
            (None, None) => (available / 2).max(1).max(needed),
        };
        let threads = requested.min(rooms);
        let per_thread = rooms.div_ceil(threads) * clients_per_room;
        if per_thread > CLIENTS_PER_WORKER_MAX {
            return Err(UsageError(format!(
                "{per_thread} clients on one thread are more than the {CLIENTS_PER_WORKER_MAX} \
                 allowed; raise --threads"
            )));
        }
        let cpus = self
            .cpus
            .as_ref()
            .map(|CpuList(cpus)| (0..threads).map(|i| cpus[i % cpus.len()]).collect());
        Ok((threads, cpus))
    }
}

/// Parses a `ws://` URL through the HTTP URL parser.
fn parse_url(url: &str) -> Result<Target, UsageError> {
    match url.split_once("://") {
        Some(("ws", rest)) => Ok(Target::parse(&format!("http://{rest}"))?),
        Some(("wss", _)) => Err(UsageError("wss is not supported; use ws://".into())),
        Some(("http", _)) => Err(UsageError(
            "a WebSocket URL starts with ws://; for HTTP load use `loadgen http`".into(),
        )),
        _ => Err(UsageError(format!(
            "`{url}` is not a WebSocket URL (e.g. ws://127.0.0.1:8080/chat/{{room}}/websocket)"
        ))),
    }
}

/// Room names go into the URL's path unescaped, so they keep to the
/// characters a path segment may hold as they are.
fn check_room_prefix(prefix: &str) -> Result<(), UsageError> {
    let plain = prefix
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
    if !plain || prefix.len() > ROOM_PREFIX_BYTES_MAX {
        return Err(UsageError(format!(
            "--room-prefix `{prefix}` must be at most {ROOM_PREFIX_BYTES_MAX} letters, digits, \
             `-`, `.`, `_` or `~`"
        )));
    }
    Ok(())
}

/// The addresses client sockets bind to: none (the kernel picks) for one
/// address, else 127.0.0.1 .. 127.0.0.N, which only reach a loopback
/// IPv4 target.
fn plan_source_ips(
    requested: Option<u8>,
    clients: usize,
    addr: SocketAddr,
) -> Result<Vec<Ipv4Addr>, UsageError> {
    let needed = clients.div_ceil(CLIENTS_PER_SOURCE_IP_MAX).max(1);
    let count = match requested {
        Some(count) => usize::from(count),
        None if needed > usize::from(SOURCE_IPS_MAX) => {
            unreachable!("clients are bounded by CONNECTIONS_MAX")
        }
        None => needed,
    };
    if count == 1 {
        return Ok(Vec::new());
    }
    let loopback_v4 = matches!(addr.ip(), IpAddr::V4(ip) if ip.is_loopback());
    if !loopback_v4 {
        return Err(UsageError(format!(
            "{count} source addresses (127.0.0.1..127.0.0.{count}) only reach an IPv4 loopback \
             target, not {addr}; pass --source-ips 1"
        )));
    }
    Ok((1..=count as u8)
        .map(|i| Ipv4Addr::new(127, 0, 0, i))
        .collect())
}

/// Raises the open-file limit to the hard one and refuses a run it cannot
/// hold.
fn check_open_files(clients: usize) -> Result<(), UsageError> {
    let limit = socket::raise_open_file_limit();
    if clients as u64 + SPARE_FDS > limit {
        return Err(UsageError(format!(
            "{clients} clients need {} open files, more than the limit of {limit} (the hard \
             limit, already raised to); raise it (ulimit -Hn, or LimitNOFILE) or run fewer clients",
            clients as u64 + SPARE_FDS
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    fn plan(args: &[&str]) -> Result<WsRun, UsageError> {
        let cli = Cli::try_parse_from(["loadgen", "ws"].iter().chain(args).copied())
            .expect("valid flags");
        match cli.command {
            Command::Ws(ws) => ws.plan(),
            _ => panic!("not ws"),
        }
    }

    const URL: &str = "ws://127.0.0.1:8080/chat/{room}/websocket";

    #[test]
    fn reads_the_issue_example() {
        let run = plan(&[
            "--url",
            URL,
            "--rooms",
            "4",
            "--clients-per-room",
            "3",
            "--senders",
            "one",
            "--duration",
            "10s",
            "--rate",
            "100",
            "--json",
            "--threads",
            "2",
        ])
        .unwrap();
        assert_eq!((run.rooms, run.clients_per_room, run.clients()), (4, 3, 12));
        assert_eq!(run.senders_total(), 4);
        assert_eq!(run.path_parts, ["/chat/", "/websocket"]);
        assert_eq!(run.name_separator, b'?');
        assert_eq!(run.authority, "127.0.0.1:8080");
        assert_eq!(run.threads, 2);
        assert!(run.source_ips.is_empty());
        assert!(run.warnings.is_empty());
    }

    #[test]
    fn appends_the_name_to_an_existing_query() {
        let run = plan(&["--url", "ws://localhost:1/chat/{room}?x=1"]).unwrap();
        assert_eq!(run.name_separator, b'&');
        assert_eq!(run.path_parts, ["/chat/", "?x=1"]);
    }

    #[test]
    fn refuses_what_cannot_run() {
        for (args, says) in [
            (vec!["--url", "ws://192.0.2.1/"], "--allow-remote"),
            (vec!["--url", "wss://127.0.0.1/"], "wss"),
            (vec!["--url", "http://127.0.0.1/"], "ws://"),
            (vec!["--url", URL, "--clients-per-room", "1"], "nobody"),
            (
                vec!["--url", URL, "--rooms", "1000", "--clients-per-room", "101"],
                "100000",
            ),
            (vec!["--url", URL, "--room-prefix", "a/b"], "--room-prefix"),
            (
                vec!["--url", URL, "--senders", "none", "--rate", "5"],
                "--rate",
            ),
            (
                vec!["--url", "ws://[::1]:1/", "--source-ips", "2"],
                "--source-ips 1",
            ),
            (
                vec![
                    "--url",
                    URL,
                    "--clients-per-room",
                    "40000",
                    "--senders",
                    "none",
                ],
                "smaller rooms",
            ),
        ] {
            let err = plan(&args).expect_err(&format!("{args:?} should be refused"));
            assert!(err.0.contains(says), "{args:?}: {err}");
        }
    }

    #[test]
    fn spreads_many_clients_over_threads_and_source_addresses() {
        let args = [
            "--url",
            URL,
            "--rooms",
            "100",
            "--clients-per-room",
            "1000",
            "--senders",
            "none",
        ];
        let Ok(run) = plan(&args) else {
            // This machine's hard limit on open files is below 100,000.
            return;
        };
        assert!(run.threads >= 4, "{}", run.threads);
        assert_eq!(run.source_ips.len(), 5);
        assert_eq!(run.source_ips[4], Ipv4Addr::new(127, 0, 0, 5));
        let err = plan(&[&args[..], &["--threads", "2"]].concat()).unwrap_err();
        assert!(err.0.contains("--threads"), "{err}");
    }
}
