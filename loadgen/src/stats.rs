//! What one worker thread measured, and the merge of all of them.
//!
//! Each thread records into its own [`Stats`] with no sharing; the main
//! thread merges them once the run is over. Latencies go into an
//! HdrHistogram in nanoseconds with three significant digits, so every
//! percentile is within 0.1% of the true value.

use hdrhistogram::Histogram;

/// The longest latency the histogram holds exactly; longer ones (only
/// possible in open loop, where latency counts from the intended send time)
/// are recorded as this.
pub const LATENCY_NS_MAX: u64 = 3_600_000_000_000;
/// Status codes counted one by one; a higher code (no HTTP status, and no
/// RPC status durin defines) is counted as `STATUS_CODES - 1`.
const STATUS_CODES: usize = 1000;

/// Which protocol's status codes a [`Stats`] counts, which decides the codes
/// that are errors and how they are named in reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusKind {
    /// HTTP: 2xx and 3xx are answers, anything else an error, `status_<code>`.
    Http,
    /// durin RPC: 0 (`OK`) is an answer, anything else an error,
    /// `rpc_status_<code>`.
    Rpc,
}

impl StatusKind {
    pub fn is_success(self, status: u16) -> bool {
        match self {
            StatusKind::Http => (200..400).contains(&status),
            StatusKind::Rpc => status == durin_proto::rpc::status::OK,
        }
    }

    /// The name of an error status in `errors_by_kind`.
    pub fn error_name(self, status: u16) -> String {
        match self {
            StatusKind::Http => format!("status_{status}"),
            StatusKind::Rpc => format!("rpc_status_{status}"),
        }
    }
}

/// Why a connection failed, costing the requests it had in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    Timeout,
    Reset,
    Eof,
    Protocol,
    /// The server refused the RPC handshake.
    Refused,
    Io,
}

/// Failures other than an error status, each counted once per request it
/// cost (a connection that fails with three requests in flight counts three).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ErrorCounts {
    /// No response within `--timeout`.
    pub timeout: u64,
    /// The server reset the connection (`ECONNRESET`, `EPIPE`).
    pub reset: u64,
    /// The server closed the connection with requests unanswered.
    pub eof: u64,
    /// A connection attempt failed or timed out (counted per attempt).
    pub connect: u64,
    /// A response that could not be framed, or that answers no request.
    pub protocol: u64,
    /// The server refused the RPC handshake (counted per attempt).
    pub refused: u64,
    /// Any other socket error.
    pub io: u64,
}

impl ErrorCounts {
    pub fn total(&self) -> u64 {
        self.timeout + self.reset + self.eof + self.connect + self.protocol + self.refused + self.io
    }

    /// `(name, count)` for every kind, in a fixed order for reports.
    pub fn kinds(&self) -> [(&'static str, u64); 7] {
        [
            ("timeout", self.timeout),
            ("reset", self.reset),
            ("eof", self.eof),
            ("connect", self.connect),
            ("protocol", self.protocol),
            ("refused", self.refused),
            ("io", self.io),
        ]
    }

    /// Adds `count` failures of `kind`.
    pub fn add(&mut self, kind: Failure, count: u64) {
        let counter = match kind {
            Failure::Timeout => &mut self.timeout,
            Failure::Reset => &mut self.reset,
            Failure::Eof => &mut self.eof,
            Failure::Protocol => &mut self.protocol,
            Failure::Refused => &mut self.refused,
            Failure::Io => &mut self.io,
        };
        *counter += count;
    }

    fn merge(&mut self, other: &ErrorCounts) {
        self.timeout += other.timeout;
        self.reset += other.reset;
        self.eof += other.eof;
        self.connect += other.connect;
        self.protocol += other.protocol;
        self.refused += other.refused;
        self.io += other.io;
    }
}

#[derive(Debug, Clone)]
pub struct Stats {
    /// Whose status codes these are.
    pub kind: StatusKind,
    /// Latency of every response, in nanoseconds.
    pub latency_ns: Histogram<u64>,
    /// Responses received, whatever their status.
    pub responses_total: u64,
    /// Responses whose status is an error for `kind`.
    pub error_statuses_total: u64,
    /// Rate-limit checks answered OK but denied (RPC `ratelimit.check`):
    /// answers, not errors, counted apart so a run shows what it measured.
    pub denied_total: u64,
    status_counts: Box<[u64; STATUS_CODES]>,
    pub errors: ErrorCounts,
    /// Connections established, the first ones included.
    pub connects_total: u64,
    /// Open loop only: requests whose send time came but which were never
    /// sent before the run ended, because the target fell behind.
    pub unsent_total: u64,
    /// How long this thread ran, in nanoseconds.
    pub elapsed_ns: u64,
}

impl Stats {
    pub fn new(kind: StatusKind) -> Stats {
        Stats {
            kind,
            latency_ns: Histogram::new_with_bounds(1, LATENCY_NS_MAX, 3)
                .expect("the bounds are constants that HdrHistogram accepts"),
            responses_total: 0,
            error_statuses_total: 0,
            denied_total: 0,
            status_counts: Box::new([0; STATUS_CODES]),
            errors: ErrorCounts::default(),
            connects_total: 0,
            unsent_total: 0,
            elapsed_ns: 0,
        }
    }

    /// Counts one response.
    pub fn record_response(&mut self, status: u16, latency_ns: u64) {
        self.responses_total += 1;
        if !self.kind.is_success(status) {
            self.error_statuses_total += 1;
        }
        self.status_counts[usize::from(status).min(STATUS_CODES - 1)] += 1;
        self.latency_ns.saturating_record(latency_ns.max(1));
    }

    /// `(status, count)` for each status seen, in ascending order.
    pub fn statuses(&self) -> impl Iterator<Item = (u16, u64)> + '_ {
        self.status_counts
            .iter()
            .enumerate()
            .filter(|&(_, &count)| count > 0)
            .map(|(status, &count)| (status as u16, count))
    }

    /// Every error: error statuses plus failed requests and connects.
    pub fn errors_total(&self) -> u64 {
        self.error_statuses_total + self.errors.total()
    }

    pub fn merge(&mut self, other: &Stats) {
        assert_eq!(self.kind, other.kind, "one run speaks one protocol");
        self.latency_ns
            .add(&other.latency_ns)
            .expect("histograms with the same bounds always merge");
        self.responses_total += other.responses_total;
        self.error_statuses_total += other.error_statuses_total;
        self.denied_total += other.denied_total;
        for (mine, theirs) in self
            .status_counts
            .iter_mut()
            .zip(other.status_counts.iter())
        {
            *mine += theirs;
        }
        self.errors.merge(&other.errors);
        self.connects_total += other.connects_total;
        self.unsent_total += other.unsent_total;
        self.elapsed_ns = self.elapsed_ns.max(other.elapsed_ns);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_counts_and_histograms() {
        let mut a = Stats::new(StatusKind::Http);
        a.record_response(200, 1_000);
        a.record_response(429, 2_000);
        a.errors.timeout = 1;
        a.elapsed_ns = 5;
        let mut b = Stats::new(StatusKind::Http);
        b.record_response(200, 3_000);
        b.errors.reset = 2;
        b.elapsed_ns = 7;
        a.merge(&b);
        assert_eq!(a.responses_total, 3);
        assert_eq!(a.statuses().collect::<Vec<_>>(), [(200, 2), (429, 1)]);
        assert_eq!(a.error_statuses_total, 1);
        assert_eq!(a.errors_total(), 4);
        assert_eq!(a.latency_ns.len(), 3);
        assert!(a.latency_ns.equivalent(a.latency_ns.max(), 3_000));
        assert_eq!(a.elapsed_ns, 7);
    }

    #[test]
    fn clamps_what_the_histogram_cannot_hold() {
        let mut stats = Stats::new(StatusKind::Http);
        stats.record_response(200, 0);
        stats.record_response(200, u64::MAX);
        assert_eq!(stats.latency_ns.min(), 1);
        assert!(stats.latency_ns.max() >= LATENCY_NS_MAX);
    }

    #[test]
    fn rpc_statuses_fail_unless_ok() {
        let mut stats = Stats::new(StatusKind::Rpc);
        stats.record_response(0, 1_000);
        stats.record_response(3, 1_000);
        stats.record_response(200, 1_000);
        assert_eq!(stats.error_statuses_total, 2);
        assert_eq!(StatusKind::Rpc.error_name(3), "rpc_status_3");
        assert_eq!(StatusKind::Http.error_name(429), "status_429");
    }
}
