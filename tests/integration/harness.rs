//! Starts the real `durin` binary and talks to it.
//!
//! A [`Server`] owns a temporary directory (data directory and config file)
//! and the child process. It waits for the one stdout line the server prints
//! once every shard is serving, keeps draining stdout and stderr so the child
//! never blocks on a full pipe, and kills the child with SIGKILL when dropped.
//! It can be killed and restarted on the same data directory, with another
//! core count, to check what survives.
//!
//! ```ignore
//! let server = Server::builder().cores(2).config("[server]\nbody_bytes_max = 10").start();
//! let mut conn = server.connect();
//! assert_eq!(conn.get("/healthz").text(), "ok");
//! ```

#![allow(dead_code)]

pub mod http;
pub mod json;
pub mod proxy;

pub use http::{Conn, Response};

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// How long a server may take from spawn to its "listening" line. Generous,
/// because tests run in parallel on small machines with debug builds.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);

/// How long a CLI invocation that should exit at once may run.
pub const CLI_TIMEOUT: Duration = Duration::from_secs(15);

/// The prefix of the one line the server prints to stdout when ready.
pub const READY_PREFIX: &str = "durin listening on http://";

/// Only the tail of the server's stderr is kept, so a chatty server cannot
/// make a test's memory grow without bound.
const STDERR_KEPT_BYTES_MAX: usize = 256 * 1024;

const CONFIG_FILE_NAME: &str = "durin.toml";
const DATA_DIR_NAME: &str = "data";

/// Path of the `durin` binary cargo built for this test run.
pub fn bin_path() -> &'static str {
    env!("CARGO_BIN_EXE_durin")
}

/// Settings for a server about to be started.
pub struct ServerBuilder {
    cores: usize,
    config_toml: Option<String>,
    env: Vec<(String, String)>,
    fd_limit: Option<u64>,
    data_dir: Option<PathBuf>,
}

impl ServerBuilder {
    pub fn cores(mut self, cores: usize) -> Self {
        self.cores = cores;
        self
    }

    /// TOML written to a file in the server's temp dir and passed as `--config`.
    pub fn config(mut self, toml: &str) -> Self {
        self.config_toml = Some(toml.to_string());
        self
    }

    /// Serve from this data directory instead of one in the server's
    /// temporary directory (a test that puts it on a filesystem of its own).
    pub fn data_dir(mut self, path: &Path) -> Self {
        self.data_dir = Some(path.to_path_buf());
        self
    }

    /// An environment variable for the server process.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    /// The server starts with this soft and hard `RLIMIT_NOFILE`.
    pub fn fd_limit(mut self, limit: u64) -> Self {
        self.fd_limit = Some(limit);
        self
    }

    pub fn start(self) -> Server {
        let dir = tempfile::Builder::new()
            .prefix("durin-it-")
            .tempdir()
            .expect("a temp dir can be created");
        let config_path = self.config_toml.map(|toml| {
            let path = dir.path().join(CONFIG_FILE_NAME);
            std::fs::write(&path, toml).expect("the config file can be written");
            path
        });
        let launch = Launch {
            config_path,
            env: self.env,
            fd_limit: self.fd_limit,
            data_dir: self
                .data_dir
                .unwrap_or_else(|| dir.path().join(DATA_DIR_NAME)),
        };
        let running = Running::spawn(self.cores, &launch);
        Server {
            dir,
            cores: self.cores,
            launch,
            running: Some(running),
        }
    }
}

/// A running (or killed, awaiting restart) `durin serve` child process.
pub struct Server {
    dir: tempfile::TempDir,
    cores: usize,
    launch: Launch,
    running: Option<Running>,
}

/// What every start of a server passes besides its data directory.
struct Launch {
    config_path: Option<PathBuf>,
    env: Vec<(String, String)>,
    fd_limit: Option<u64>,
    data_dir: PathBuf,
}

impl Server {
    /// Defaults: `--cores 2`, no config file.
    pub fn builder() -> ServerBuilder {
        ServerBuilder {
            cores: 2,
            config_toml: None,
            env: Vec::new(),
            fd_limit: None,
            data_dir: None,
        }
    }

    pub fn start(cores: usize) -> Server {
        Server::builder().cores(cores).start()
    }

    pub fn start_with_config(cores: usize, toml: &str) -> Server {
        Server::builder().cores(cores).config(toml).start()
    }

    pub fn addr(&self) -> SocketAddr {
        self.running().addr
    }

    pub fn cores(&self) -> usize {
        self.cores
    }

    /// The server process's ID.
    pub fn pid(&self) -> u32 {
        self.running().child.id()
    }

    pub fn data_dir(&self) -> PathBuf {
        self.launch.data_dir.clone()
    }

    /// The exact line the server printed when it became ready.
    pub fn ready_line(&self) -> &str {
        &self.running().ready_line
    }

    /// Lines the server printed to stdout before the ready line.
    /// The shared RPC address and the first shard port, from the line the
    /// server prints before its ready line.
    pub fn rpc_addr(&self) -> (SocketAddr, u16) {
        let line = self
            .stdout_before_ready()
            .iter()
            .find_map(|l| l.strip_prefix("durin rpc listening on "))
            .unwrap_or_else(|| panic!("no rpc line in {:?}", self.stdout_before_ready()));
        let (addr, ports) = line
            .split_once(", shard ports ")
            .expect("rpc line names the shard ports");
        let base = ports
            .split('-')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("a base port");
        (addr.parse().expect("an rpc address"), base)
    }

    pub fn stdout_before_ready(&self) -> &[String] {
        &self.running().stdout_before_ready
    }

    /// Lines the server printed to stdout after the ready line, so far.
    pub fn stdout_after_ready(&self) -> Vec<String> {
        let lines = self
            .running()
            .stdout_lines
            .as_ref()
            .expect("set once ready");
        lines.try_iter().collect()
    }

    /// The tail of everything the server wrote to stderr so far.
    pub fn stderr(&self) -> String {
        match &self.running {
            Some(running) => running.stderr_text(),
            None => String::new(),
        }
    }

    /// Opens a new keep-alive connection; panics with the server's stderr if
    /// the connection is refused.
    pub fn connect(&self) -> Conn {
        let addr = self.addr();
        match Conn::connect(addr) {
            Ok(conn) => conn,
            Err(error) => panic!(
                "connecting to {addr} failed: {error}\n--- server stderr ---\n{}",
                self.stderr()
            ),
        }
    }

    /// The server's resident memory now, in bytes (`VmRSS`).
    pub fn rss_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("the server's /proc status can be read");
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS is in /proc status");
        kib * 1024
    }

    /// CPU time the server has used so far (user plus system), in clock
    /// ticks (`/proc/PID/stat` fields 14 and 15).
    pub fn cpu_ticks(&self) -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid()))
            .expect("the server's /proc stat can be read");
        // The command name may hold spaces; fields count from after it.
        let after_name = &stat[stat.rfind(')').expect("stat has the name in parentheses") + 2..];
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        let ticks = |i: usize| fields[i].parse::<u64>().expect("a tick count");
        ticks(11) + ticks(12)
    }

    /// SIGKILL and wait: nothing gets a chance to flush or shut down.
    pub fn kill9(&mut self) {
        if let Some(mut running) = self.running.take() {
            running.kill9();
        }
    }

    /// SIGTERM, then waits up to `timeout` for the process to exit (and
    /// SIGKILLs it past that, failing the test). Returns how it exited.
    pub fn terminate(&mut self, timeout: Duration) -> ExitStatus {
        let mut running = self.running.take().expect("the server is running");
        let pid = running.child.id() as libc::pid_t;
        // SAFETY: kill(2) on our own child's pid, which has not been
        // waited for yet.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = running.child.try_wait().expect("try_wait works") {
                return status;
            }
            if Instant::now() >= deadline {
                let stderr = running.stderr_text();
                running.kill9();
                panic!("the server did not exit within {timeout:?} of SIGTERM\n{stderr}");
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the server if it runs, then starts it again on the same data
    /// directory and config file with `cores` shards. The port changes.
    pub fn restart(&mut self, cores: usize) {
        self.kill9();
        self.cores = cores;
        self.running = Some(Running::spawn(cores, &self.launch));
    }

    /// Kills the server if it runs, then starts it again on the same data
    /// directory, config file and HTTP address with `cores` shards, so a
    /// client that reconnects to the old address (a browser page) finds the
    /// new server. Waits up to [`SAME_PORT_WAIT`] for the port to be free.
    pub fn restart_on_same_port(&mut self, cores: usize) {
        let addr = self.addr();
        self.kill9();
        wait_until_bindable(addr);
        self.cores = cores;
        self.running = Some(Running::spawn_listening(cores, &self.launch, addr));
    }

    /// Waits up to `timeout` for the server to exit on its own; returns how
    /// it exited, or `None` if it still runs. The server's stderr stays
    /// readable through [`stderr`](Self::stderr) until the next restart.
    pub fn wait_for_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let running = self.running.as_mut().expect("the server was started");
        wait_with_deadline(&mut running.child, timeout)
    }

    /// Panics, with the server's stderr, if the process has exited: errors a
    /// client can cause must never stop the server.
    pub fn assert_alive(&mut self) {
        let running = self.running.as_mut().expect("the server was started");
        if let Some(status) = running.child.try_wait().expect("try_wait works") {
            panic!(
                "the server exited ({status}) but should still be serving\n--- server stderr ---\n{}",
                running.stderr_text()
            );
        }
    }

    fn running(&self) -> &Running {
        self.running
            .as_ref()
            .expect("the server is running (call restart after kill9)")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut running) = self.running.take() {
            if thread::panicking() {
                let exited = running.child.try_wait().ok().flatten();
                eprintln!(
                    "--- durin server (exit: {exited:?}) stderr tail ---\n{}\n--- end of server stderr ---",
                    running.stderr_text()
                );
            }
            running.kill9();
        }
    }
}

/// One spawned child process and the threads draining its pipes.
struct Running {
    child: Child,
    addr: SocketAddr,
    ready_line: String,
    stdout_before_ready: Vec<String>,
    /// Later stdout lines; set once the server is ready.
    stdout_lines: Option<mpsc::Receiver<String>>,
    stderr: Arc<Mutex<Vec<u8>>>,
}

impl Running {
    fn spawn(cores: usize, launch: &Launch) -> Running {
        Running::spawn_listening(cores, launch, SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    fn spawn_listening(cores: usize, launch: &Launch, listen: SocketAddr) -> Running {
        let mut command = Command::new(bin_path());
        command
            .arg("serve")
            .args([
                "--listen",
                &listen.to_string(),
                "--rpc-listen",
                "127.0.0.1:0",
                "--data-dir",
            ])
            .arg(&launch.data_dir)
            .args(["--cores", &cores.to_string(), "--no-pin"]);
        if let Some(config) = &launch.config_path {
            command.arg("--config").arg(config);
        }
        command.envs(launch.env.iter().map(|(k, v)| (k, v)));
        if let Some(limit) = launch.fd_limit {
            use std::os::unix::process::CommandExt;
            let rlimit = libc::rlimit {
                rlim_cur: limit,
                rlim_max: limit,
            };
            // SAFETY: setrlimit is async-signal-safe, and the closure
            // touches nothing but a copied struct.
            unsafe {
                command.pre_exec(move || {
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &rlimit) == 0 {
                        Ok(())
                    } else {
                        Err(std::io::Error::last_os_error())
                    }
                });
            }
        }
        command
            .env("RUST_BACKTRACE", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command
            .spawn()
            .unwrap_or_else(|error| panic!("spawning {} failed: {error}", bin_path()));

        let stderr = Arc::new(Mutex::new(Vec::new()));
        let stderr_pipe = child.stderr.take().expect("stderr is piped");
        let stderr_drain = drain_to_tail(stderr_pipe, Arc::clone(&stderr));
        let stdout_pipe = child.stdout.take().expect("stdout is piped");
        let lines = forward_lines(stdout_pipe);

        let mut running = Running {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            ready_line: String::new(),
            stdout_before_ready: Vec::new(),
            stdout_lines: None,
            stderr,
        };
        running.wait_ready(&lines, stderr_drain);
        running.stdout_lines = Some(lines);
        running
    }

    /// Reads stdout lines until the ready line; fails with the server's
    /// stderr if it exits first or takes longer than [`STARTUP_TIMEOUT`].
    fn wait_ready(&mut self, lines: &mpsc::Receiver<String>, stderr_drain: thread::JoinHandle<()>) {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            match lines.recv_timeout(Duration::from_millis(50)) {
                Ok(line) => {
                    if let Some(rest) = line.strip_prefix(READY_PREFIX) {
                        match rest.parse() {
                            Ok(addr) => self.addr = addr,
                            Err(error) => self.fail_start(&format!(
                                "the ready line {line:?} does not end in an address ({error})"
                            )),
                        }
                        self.ready_line = line;
                        return;
                    }
                    self.stdout_before_ready.push(line);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if let Some(status) = self.child.try_wait().expect("try_wait works") {
                        self.fail_exited(status, stderr_drain);
                    }
                    if Instant::now() >= deadline {
                        self.fail_start(&format!(
                            "no ready line within {STARTUP_TIMEOUT:?}; stdout so far: {:?}",
                            self.stdout_before_ready
                        ));
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    // stdout closed: the process is exiting; give it a moment.
                    let status = wait_with_deadline(&mut self.child, Duration::from_secs(5));
                    match status {
                        Some(status) => self.fail_exited(status, stderr_drain),
                        None => self.fail_start("stdout closed before the ready line"),
                    }
                }
            }
        }
    }

    fn fail_exited(&mut self, status: ExitStatus, stderr_drain: thread::JoinHandle<()>) -> ! {
        // The pipe closes when the process exits, so the drain finishes.
        let _ = stderr_drain.join();
        panic!(
            "durin serve exited ({status}) before it was ready; stdout: {:?}\n--- server stderr ---\n{}",
            self.stdout_before_ready,
            self.stderr_text()
        );
    }

    fn fail_start(&mut self, why: &str) -> ! {
        let _ = self.child.kill();
        let _ = self.child.wait();
        panic!(
            "durin serve did not start: {why}\n--- server stderr ---\n{}",
            self.stderr_text()
        );
    }

    fn kill9(&mut self) {
        // Child::kill sends SIGKILL on Unix; an already-exited child is fine.
        let _ = self.child.kill();
        self.child
            .wait()
            .expect("waiting for the killed server works");
    }

    fn stderr_text(&self) -> String {
        let bytes = self.stderr.lock().expect("stderr lock is not poisoned");
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

/// How long [`Server::restart_on_same_port`] waits for the old port to be
/// free: a killed server's port can be taken for a moment, for instance as
/// the local port of another test's outgoing connection.
pub const SAME_PORT_WAIT: Duration = Duration::from_secs(5);

/// Waits until a listener can bind `addr` (std sets `SO_REUSEADDR`, as the
/// server does), or panics after [`SAME_PORT_WAIT`]. The server binds the
/// address right after; another process could take it in between, which
/// this narrows but cannot rule out.
fn wait_until_bindable(addr: SocketAddr) {
    let deadline = Instant::now() + SAME_PORT_WAIT;
    loop {
        match std::net::TcpListener::bind(addr) {
            Ok(_probe) => return,
            Err(error) if Instant::now() >= deadline => {
                panic!("{addr} is still not free {SAME_PORT_WAIT:?} after the server was killed: {error}")
            }
            Err(_) => thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// Copies a pipe into a buffer that keeps only the last
/// [`STDERR_KEPT_BYTES_MAX`] bytes.
fn drain_to_tail(
    mut pipe: impl Read + Send + 'static,
    tail: Arc<Mutex<Vec<u8>>>,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let mut chunk = [0u8; 8192];
        loop {
            match pipe.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    let mut kept = tail.lock().expect("stderr lock is not poisoned");
                    kept.extend_from_slice(&chunk[..n]);
                    if kept.len() > STDERR_KEPT_BYTES_MAX {
                        let excess = kept.len() - STDERR_KEPT_BYTES_MAX;
                        kept.drain(..excess);
                    }
                }
            }
        }
    })
}

/// Sends every stdout line to the returned channel and keeps draining the
/// pipe after the receiver is gone.
fn forward_lines(pipe: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (sender, receiver) = mpsc::channel();
    thread::spawn(move || {
        let mut reader = BufReader::new(pipe);
        let mut line = Vec::new();
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {
                    let text = String::from_utf8_lossy(&line);
                    let text = text.trim_end_matches(['\n', '\r']).to_string();
                    let _ = sender.send(text);
                }
            }
        }
    });
    receiver
}

fn wait_with_deadline(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait works") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// What a CLI invocation that exits on its own produced.
#[derive(Debug)]
pub struct CliOutput {
    /// `None` when the process was ended by a signal.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `durin ARGS...` and waits for it to exit; panics if it is still
/// running after [`CLI_TIMEOUT`] (it probably started serving instead of
/// rejecting its arguments).
pub fn run_cli(args: &[&str]) -> CliOutput {
    let mut child = Command::new(bin_path())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| panic!("spawning {} failed: {error}", bin_path()));
    let stdout = Arc::new(Mutex::new(Vec::new()));
    let stderr = Arc::new(Mutex::new(Vec::new()));
    let stdout_drain = drain_to_tail(child.stdout.take().expect("piped"), Arc::clone(&stdout));
    let stderr_drain = drain_to_tail(child.stderr.take().expect("piped"), Arc::clone(&stderr));
    let status = wait_with_deadline(&mut child, CLI_TIMEOUT);
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let _ = stdout_drain.join();
    let _ = stderr_drain.join();
    let text = |buffer: &Arc<Mutex<Vec<u8>>>| {
        String::from_utf8_lossy(&buffer.lock().expect("lock is not poisoned")).into_owned()
    };
    let output = CliOutput {
        code: status.and_then(|status| status.code()),
        stdout: text(&stdout),
        stderr: text(&stderr),
    };
    assert!(
        status.is_some(),
        "`durin {}` was still running after {CLI_TIMEOUT:?}; killed it. Output: {output:?}",
        args.join(" ")
    );
    output
}

/// Polls `check` every 20 ms until it returns true or `timeout` passes.
pub fn eventually(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// `POST /counter/{name}/increment`: checks the response is 200 with
/// `{"value": N}` and returns N.
pub fn increment(conn: &mut Conn, name: &str) -> u64 {
    let response = conn.post(&format!("/counter/{name}/increment"), b"");
    counter_value_of(&response, &format!("increment of counter {name:?}"))
}

/// `GET /counter/{name}`: checks the response is 200 with `{"value": N}` and
/// returns N.
pub fn counter_value(conn: &mut Conn, name: &str) -> u64 {
    let response = conn.get(&format!("/counter/{name}"));
    counter_value_of(&response, &format!("GET of counter {name:?}"))
}

/// Checks a counter response's status, type and shape and returns its value.
pub fn counter_value_of(response: &Response, context: &str) -> u64 {
    assert_eq!(response.status, 200, "{context}: {response}");
    response.assert_json_content_type();
    let body = response.json();
    body.assert_keys(&["value"]);
    body.u64_field("value")
}

/// An already-open keep-alive connection that a test uses before and after
/// doing something nasty on another connection, to check the nasty thing
/// disturbed nobody else.
pub struct Bystander {
    conn: Conn,
    counter: String,
    value: u64,
}

impl Bystander {
    /// Connects and makes one round trip, so the connection is established
    /// and served before the test goes on.
    pub fn open(server: &Server, counter: &str) -> Bystander {
        let mut bystander = Bystander {
            conn: server.connect(),
            counter: counter.to_string(),
            value: 0,
        };
        bystander.check("when first opened");
        bystander
    }

    /// `GET /healthz` and one increment on the same connection.
    pub fn check(&mut self, context: &str) {
        let health = self
            .conn
            .try_request("GET", "/healthz", &[], b"")
            .unwrap_or_else(|error| {
                panic!("bystander connection {context}: GET /healthz: {error}")
            });
        assert_eq!(
            (health.status, health.text().as_str()),
            (200, "ok"),
            "bystander connection {context}: GET /healthz gave {health}"
        );
        let path = format!("/counter/{}/increment", self.counter);
        let response = self
            .conn
            .try_request("POST", &path, &[], b"")
            .unwrap_or_else(|error| panic!("bystander connection {context}: POST {path}: {error}"));
        let value = counter_value_of(&response, &format!("bystander connection {context}"));
        assert_eq!(
            value,
            self.value + 1,
            "bystander connection {context}: counter value"
        );
        self.value = value;
    }
}
