//! What one worker measured in a WebSocket run, and the merge of all.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;

use crate::stats::LATENCY_NS_MAX;

/// Error kinds other than close codes and handshake statuses, each counted
/// once per event (a client that fails counts once, a message that times
/// out once).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WsErrorCounts {
    /// A message not delivered to all of its room within `--timeout`, or a
    /// client not joined within it.
    pub timeout: u64,
    /// The server reset a connection.
    pub reset: u64,
    /// The server closed a connection without a close frame.
    pub eof: u64,
    /// A connection attempt failed or timed out.
    pub connect: u64,
    /// A frame or handshake response that could not be read, or a delivery
    /// from a client of another room.
    pub protocol: u64,
    /// The server did not answer the closing handshake at the end.
    pub close_unanswered: u64,
    /// Any other socket error.
    pub io: u64,
}

impl WsErrorCounts {
    pub fn total(&self) -> u64 {
        self.kinds().iter().map(|&(_, count)| count).sum()
    }

    pub fn kinds(&self) -> [(&'static str, u64); 7] {
        [
            ("timeout", self.timeout),
            ("reset", self.reset),
            ("eof", self.eof),
            ("connect", self.connect),
            ("protocol", self.protocol),
            ("close_unanswered", self.close_unanswered),
            ("io", self.io),
        ]
    }

    fn merge(&mut self, other: &WsErrorCounts) {
        self.timeout += other.timeout;
        self.reset += other.reset;
        self.eof += other.eof;
        self.connect += other.connect;
        self.protocol += other.protocol;
        self.close_unanswered += other.close_unanswered;
        self.io += other.io;
    }
}

#[derive(Debug, Clone)]
pub struct WsStats {
    /// Latency of every delivery, in nanoseconds, from the message's send
    /// time (closed loop) or intended send time (open loop).
    pub latency_ns: Histogram<u64>,
    /// From the start of a client's connect to its own join message.
    pub join_ns: Histogram<u64>,
    /// Messages sent during the measured phase.
    pub messages_total: u64,
    /// Messages delivered during the measured phase (one per recipient).
    pub deliveries_total: u64,
    /// Messages that reached every other client of their room.
    pub completed_total: u64,
    pub joins_total: u64,
    pub leaves_total: u64,
    /// Server messages that are neither chat messages of loadgen's nor
    /// joins or leaves.
    pub other_messages_total: u64,
    pub pings_total: u64,
    /// Clients that connected and saw their own join.
    pub joined_total: u64,
    /// Open loop: messages that fell due but were never sent because the
    /// sender had too many undelivered.
    pub unsent_total: u64,
    pub errors: WsErrorCounts,
    /// Close frames the server sent during the run, by close code.
    pub close_codes: BTreeMap<u16, u64>,
    /// Handshakes answered with another status than 101, by status.
    pub handshake_statuses: BTreeMap<u16, u64>,
    /// From the start to the measured phase, in nanoseconds.
    pub connect_phase_ns: u64,
    /// Length of the measured phase, in nanoseconds.
    pub elapsed_ns: u64,
}

impl Default for WsStats {
    fn default() -> Self {
        WsStats::new()
    }
}

impl WsStats {
    pub fn new() -> WsStats {
        let histogram = || {
            Histogram::new_with_bounds(1, LATENCY_NS_MAX, 3)
                .expect("the bounds are constants that HdrHistogram accepts")
        };
        WsStats {
            latency_ns: histogram(),
            join_ns: histogram(),
            messages_total: 0,
            deliveries_total: 0,
            completed_total: 0,
            joins_total: 0,
            leaves_total: 0,
            other_messages_total: 0,
            pings_total: 0,
            joined_total: 0,
            unsent_total: 0,
            errors: WsErrorCounts::default(),
            close_codes: BTreeMap::new(),
            handshake_statuses: BTreeMap::new(),
            connect_phase_ns: 0,
            elapsed_ns: 0,
        }
    }

    pub fn record_delivery(&mut self, latency_ns: u64) {
        self.deliveries_total += 1;
        self.latency_ns.saturating_record(latency_ns.max(1));
    }

    pub fn record_join(&mut self, join_ns: u64) {
        self.joined_total += 1;
        self.join_ns.saturating_record(join_ns.max(1));
    }

    /// A close frame from the server with `code`.
    pub fn record_close(&mut self, code: u16) {
        *self.close_codes.entry(code).or_default() += 1;
    }

    pub fn record_handshake_status(&mut self, status: u16) {
        *self.handshake_statuses.entry(status).or_default() += 1;
    }

    pub fn errors_total(&self) -> u64 {
        self.errors.total()
            + self.close_codes.values().sum::<u64>()
            + self.handshake_statuses.values().sum::<u64>()
    }

    /// `(kind, count)` for every error that occurred: `handshake_<status>`,
    /// `close_<code>`, then the fixed kinds.
    pub fn error_kinds(&self) -> Vec<(String, u64)> {
        let mut kinds: Vec<(String, u64)> = self
            .handshake_statuses
            .iter()
            .map(|(status, &count)| (format!("handshake_{status}"), count))
            .collect();
        kinds.extend(
            self.close_codes
                .iter()
                .map(|(code, &count)| (format!("close_{code}"), count)),
        );
        kinds.extend(
            self.errors
                .kinds()
                .into_iter()
                .filter(|&(_, count)| count > 0)
                .map(|(kind, count)| (kind.to_string(), count)),
        );
        kinds
    }

    pub fn merge(&mut self, other: &WsStats) {
        self.latency_ns
            .add(&other.latency_ns)
            .expect("histograms with the same bounds always merge");
        self.join_ns
            .add(&other.join_ns)
            .expect("histograms with the same bounds always merge");
        self.messages_total += other.messages_total;
        self.deliveries_total += other.deliveries_total;
        self.completed_total += other.completed_total;
        self.joins_total += other.joins_total;
        self.leaves_total += other.leaves_total;
        self.other_messages_total += other.other_messages_total;
        self.pings_total += other.pings_total;
        self.joined_total += other.joined_total;
        self.unsent_total += other.unsent_total;
        self.errors.merge(&other.errors);
        for (&code, &count) in &other.close_codes {
            *self.close_codes.entry(code).or_default() += count;
        }
        for (&status, &count) in &other.handshake_statuses {
            *self.handshake_statuses.entry(status).or_default() += count;
        }
        self.connect_phase_ns = self.connect_phase_ns.max(other.connect_phase_ns);
        self.elapsed_ns = self.elapsed_ns.max(other.elapsed_ns);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_counts_histograms_and_error_kinds() {
        let mut a = WsStats::new();
        a.record_delivery(1_000);
        a.record_close(1011);
        a.errors.timeout = 2;
        let mut b = WsStats::new();
        b.record_delivery(3_000);
        b.record_close(1011);
        b.record_handshake_status(404);
        b.elapsed_ns = 9;
        a.merge(&b);
        assert_eq!(a.deliveries_total, 2);
        assert_eq!(a.latency_ns.len(), 2);
        assert_eq!(a.errors_total(), 5);
        assert_eq!(
            a.error_kinds(),
            [
                ("handshake_404".to_string(), 1),
                ("close_1011".to_string(), 2),
                ("timeout".to_string(), 2)
            ]
        );
        assert_eq!(a.elapsed_ns, 9);
    }
}
