//! The open-loop schedule: when each request is meant to be sent.
//!
//! With `--rate R` over `C` connections, the run's requests are spaced
//! `1/R` apart and dealt to the connections in turn: request `n` of
//! connection `g` is meant to leave at `(n * C + g) / R` seconds into the
//! run. Latency is measured from that intended time, not from when the
//! request actually left, so a stalled server is charged for every request
//! it kept waiting — the coordinated-omission correction of wrk2, built
//! into the measurement instead of patched into the histogram afterwards.
//!
//! Each worker walks its own connections' share of that sequence in time
//! order with a cursor, so releasing a due request is O(1) whatever the
//! number of connections.
//!
//! ```
//! use loadgen::schedule::Schedule;
//! // 1,000 req/s over 4 connections; this thread holds connections 1 and 3.
//! let mut schedule = Schedule::new(1000.0, 4, vec![1, 3]);
//! assert_eq!(schedule.next_due_ns(), 1_000_000);
//! assert_eq!(schedule.pop_due(4_000_000), Some(0)); // connection 1 at 1 ms
//! assert_eq!(schedule.pop_due(4_000_000), Some(1)); // connection 3 at 3 ms
//! assert_eq!(schedule.pop_due(4_000_000), None);    // connection 1 again at 5 ms
//! ```

#[derive(Debug, Clone)]
pub struct Schedule {
    /// Nanoseconds between consecutive requests of the whole run.
    period_ns: f64,
    conns_total: u64,
    /// Global indices of this worker's connections, ascending.
    local: Vec<u64>,
    /// The cursor: round `round` of local connection `next`.
    round: u64,
    next: usize,
}

impl Schedule {
    /// The schedule for a run at `rate` requests per second over
    /// `conns_total` connections, of which this worker holds `local` (global
    /// indices, ascending).
    pub fn new(rate: f64, conns_total: u64, local: Vec<u64>) -> Schedule {
        assert!(rate.is_finite() && rate > 0.0, "the rate was validated");
        assert!(!local.is_empty(), "a worker holds at least one connection");
        assert!(local.windows(2).all(|pair| pair[0] < pair[1]));
        assert!(local.iter().all(|&g| g < conns_total));
        Schedule {
            period_ns: 1e9 / rate,
            conns_total,
            local,
            round: 0,
            next: 0,
        }
    }

    /// When request `n` of global connection `global` is meant to be sent,
    /// in nanoseconds of run time.
    pub fn intended_ns(&self, global: u64, n: u64) -> u64 {
        ((n * self.conns_total + global) as f64 * self.period_ns) as u64
    }

    /// When the next request of this worker is due.
    pub fn next_due_ns(&self) -> u64 {
        self.intended_ns(self.local[self.next], self.round)
    }

    /// The local index of the connection whose request is due by `now_ns`,
    /// advancing past it; `None` when the next one lies in the future.
    pub fn pop_due(&mut self, now_ns: u64) -> Option<usize> {
        if self.next_due_ns() > now_ns {
            return None;
        }
        let due = self.next;
        self.next += 1;
        if self.next == self.local.len() {
            self.next = 0;
            self.round += 1;
        }
        Some(due)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases_requests_in_time_order_at_the_rate() {
        // 10,000 req/s over 8 connections, split round-robin over 2 workers.
        let mut total = 0;
        let mut last_ns = 0;
        for local in [vec![0, 2, 4, 6], vec![1, 3, 5, 7]] {
            let mut schedule = Schedule::new(10_000.0, 8, local);
            let mut released = 0;
            while let Some(_conn) = schedule.pop_due(1_000_000_000) {
                released += 1;
            }
            // One second holds 10,000 requests, half of them this worker's.
            assert!((4_999..=5_001).contains(&released), "{released}");
            total += released;
            last_ns = last_ns.max(schedule.next_due_ns());
        }
        assert!((9_999..=10_001).contains(&total));
        assert!(last_ns > 1_000_000_000);
    }

    #[test]
    fn each_connection_keeps_its_own_interval() {
        let schedule = Schedule::new(100.0, 4, vec![0, 1, 2, 3]);
        // Every connection sends every 40 ms, staggered by 10 ms.
        assert_eq!(schedule.intended_ns(2, 0), 20_000_000);
        assert_eq!(schedule.intended_ns(2, 1), 60_000_000);
        assert_eq!(schedule.intended_ns(0, 3), 120_000_000);
    }

    #[test]
    fn a_long_stall_releases_everything_that_fell_due() {
        let mut schedule = Schedule::new(1_000.0, 2, vec![0, 1]);
        let mut per_conn = [0u32; 2];
        while let Some(conn) = schedule.pop_due(10_000_000) {
            per_conn[conn] += 1;
        }
        // Due at 0, 1, ..., 10 ms: eleven requests, alternating.
        assert_eq!(per_conn, [6, 5]);
    }
}
