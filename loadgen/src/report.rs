//! The end-of-run report, as text for people or one JSON object for scripts.
//!
//! The JSON object always has `requests_per_sec`, `p50_us`, `p90_us`,
//! `p99_us`, `p999_us`, `max_us` and `errors` (the total), with the error
//! kinds broken down in `errors_by_kind` (`status_<code>` for each HTTP
//! error status, `rpc_status_<code>` for each RPC one, then `timeout`,
//! `reset`, `eof`, `connect`, `protocol`, `refused`, `io`). An HTTP run
//! names its `url`; an RPC run its `addr`, `class`, `shard_aware`, `shards`
//! and `denied` (rate-limit checks answered but not allowed).

use std::fmt::Write;

use hdrhistogram::Histogram;

use crate::stats::Stats;

/// What was run, for the report's header.
#[derive(Debug, Clone)]
pub struct RunInfo {
    pub mode: &'static str,
    /// The URL of an HTTP run, the address of an RPC run.
    pub target: String,
    pub method: String,
    /// What only an RPC run has.
    pub rpc: Option<RpcInfo>,
    pub keys: String,
    pub connections: usize,
    pub threads: usize,
    pub pipeline: usize,
    pub rate: Option<f64>,
    pub duration_s: f64,
}

/// The RPC side of a run's description.
#[derive(Debug, Clone)]
pub struct RpcInfo {
    pub class: String,
    /// Connections went to each shard's own port, with only its keys.
    pub shard_aware: bool,
    /// The shards the connections were spread over (1 unless shard-aware).
    pub shards: usize,
}

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Percentiles {
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
    pub mean_us: f64,
}

impl Percentiles {
    pub fn of(stats: &Stats) -> Percentiles {
        Percentiles::of_histogram(&stats.latency_ns)
    }

    /// The percentiles of a histogram of nanoseconds.
    pub fn of_histogram(h: &Histogram<u64>) -> Percentiles {
        let us = |ns: u64| ns as f64 / 1000.0;
        if h.is_empty() {
            return Percentiles {
                p50_us: 0.0,
                p90_us: 0.0,
                p99_us: 0.0,
                p999_us: 0.0,
                max_us: 0.0,
                mean_us: 0.0,
            };
        }
        Percentiles {
            p50_us: us(h.value_at_quantile(0.5)),
            p90_us: us(h.value_at_quantile(0.9)),
            p99_us: us(h.value_at_quantile(0.99)),
            p999_us: us(h.value_at_quantile(0.999)),
            max_us: us(h.max()),
            mean_us: h.mean() / 1000.0,
        }
    }
}

fn requests_per_sec(stats: &Stats) -> f64 {
    if stats.elapsed_ns == 0 {
        return 0.0;
    }
    stats.responses_total as f64 / (stats.elapsed_ns as f64 / 1e9)
}

/// `(kind, count)` for every error kind that occurred.
fn error_kinds(stats: &Stats) -> Vec<(String, u64)> {
    let mut kinds: Vec<(String, u64)> = stats
        .statuses()
        .filter(|&(status, _)| !stats.kind.is_success(status))
        .map(|(status, count)| (stats.kind.error_name(status), count))
        .collect();
    kinds.extend(
        stats
            .errors
            .kinds()
            .into_iter()
            .filter(|&(_, count)| count > 0)
            .map(|(kind, count)| (kind.to_string(), count)),
    );
    kinds
}

/// The summary as one line of JSON.
pub fn json(info: &RunInfo, stats: &Stats) -> String {
    let p = Percentiles::of(stats);
    let mut out = String::with_capacity(1024);
    out.push('{');
    let _ = write!(out, "\"mode\":{}", json_string(info.mode));
    match &info.rpc {
        None => {
            let _ = write!(out, ",\"url\":{}", json_string(&info.target));
        }
        Some(rpc) => {
            let _ = write!(out, ",\"addr\":{}", json_string(&info.target));
            let _ = write!(out, ",\"class\":{}", json_string(&rpc.class));
            let _ = write!(out, ",\"shard_aware\":{}", rpc.shard_aware);
            let _ = write!(out, ",\"shards\":{}", rpc.shards);
        }
    }
    let _ = write!(out, ",\"method\":{}", json_string(&info.method));
    let _ = write!(out, ",\"keys\":{}", json_string(&info.keys));
    let _ = write!(out, ",\"connections\":{}", info.connections);
    let _ = write!(out, ",\"threads\":{}", info.threads);
    let _ = write!(out, ",\"pipeline\":{}", info.pipeline);
    match info.rate {
        Some(rate) => {
            let _ = write!(out, ",\"rate\":{rate}");
        }
        None => out.push_str(",\"rate\":null"),
    }
    let loop_kind = if info.rate.is_some() {
        "open"
    } else {
        "closed"
    };
    let _ = write!(out, ",\"loop\":\"{loop_kind}\"");
    let _ = write!(out, ",\"duration_s\":{:.3}", info.duration_s);
    let _ = write!(out, ",\"elapsed_s\":{:.3}", stats.elapsed_ns as f64 / 1e9);
    let _ = write!(out, ",\"requests\":{}", stats.responses_total);
    let _ = write!(out, ",\"requests_per_sec\":{:.1}", requests_per_sec(stats));
    let _ = write!(
        out,
        ",\"p50_us\":{:.1},\"p90_us\":{:.1},\"p99_us\":{:.1},\"p999_us\":{:.1},\"max_us\":{:.1},\"mean_us\":{:.1}",
        p.p50_us, p.p90_us, p.p99_us, p.p999_us, p.max_us, p.mean_us
    );
    out.push_str(",\"status\":{");
    for (i, (status, count)) in stats.statuses().enumerate() {
        let comma = if i == 0 { "" } else { "," };
        let _ = write!(out, "{comma}\"{status}\":{count}");
    }
    out.push('}');
    let _ = write!(out, ",\"errors\":{}", stats.errors_total());
    out.push_str(",\"errors_by_kind\":{");
    for (i, (kind, count)) in error_kinds(stats).iter().enumerate() {
        let comma = if i == 0 { "" } else { "," };
        let _ = write!(out, "{comma}\"{kind}\":{count}");
    }
    out.push('}');
    if info.rpc.is_some() {
        let _ = write!(out, ",\"denied\":{}", stats.denied_total);
    }
    let _ = write!(out, ",\"connects\":{}", stats.connects_total);
    let _ = write!(out, ",\"unsent\":{}", stats.unsent_total);
    out.push('}');
    out
}

/// The summary as a few aligned lines of text.
pub fn text(info: &RunInfo, stats: &Stats) -> String {
    let p = Percentiles::of(stats);
    let mut out = String::with_capacity(1024);
    let loop_kind = match info.rate {
        Some(rate) => format!("open loop at {} req/s", group(rate.round() as u64)),
        None => "closed loop".to_string(),
    };
    match &info.rpc {
        None => {
            let _ = writeln!(
                out,
                "loadgen {}: {} {}, keys {}",
                info.mode, info.method, info.target, info.keys
            );
        }
        Some(rpc) => {
            let routing = if rpc.shard_aware {
                format!("shard-aware over {} shard ports", rpc.shards)
            } else {
                "shared port".to_string()
            };
            let _ = writeln!(
                out,
                "loadgen {}: {}.{} at {} ({routing}), keys {}",
                info.mode, rpc.class, info.method, info.target, info.keys
            );
        }
    }
    let _ = writeln!(
        out,
        "  {} connections on {} thread{}, pipeline {}, {}, {}s",
        info.connections,
        info.threads,
        if info.threads == 1 { "" } else { "s" },
        info.pipeline,
        loop_kind,
        info.duration_s
    );
    let _ = writeln!(
        out,
        "  requests   {} in {:.2}s: {} req/s",
        group(stats.responses_total),
        stats.elapsed_ns as f64 / 1e9,
        group(requests_per_sec(stats).round() as u64)
    );
    let _ = writeln!(
        out,
        "  latency    p50 {} | p90 {} | p99 {} | p99.9 {} | max {} | mean {}",
        micros(p.p50_us),
        micros(p.p90_us),
        micros(p.p99_us),
        micros(p.p999_us),
        micros(p.max_us),
        micros(p.mean_us)
    );
    let statuses: Vec<String> = stats
        .statuses()
        .map(|(status, count)| format!("{status}: {}", group(count)))
        .collect();
    if !statuses.is_empty() {
        let _ = writeln!(out, "  statuses   {}", statuses.join(", "));
    }
    let kinds: Vec<String> = error_kinds(stats)
        .iter()
        .map(|(kind, count)| format!("{kind} {}", group(*count)))
        .collect();
    let _ = write!(out, "  errors     {}", group(stats.errors_total()));
    if !kinds.is_empty() {
        let _ = write!(out, " ({})", kinds.join(", "));
    }
    out.push('\n');
    if info.rpc.is_some() && stats.denied_total > 0 {
        let _ = writeln!(
            out,
            "  denied     {} rate-limit checks were answered but not allowed (not errors)",
            group(stats.denied_total)
        );
    }
    if stats.unsent_total > 0 {
        let _ = writeln!(
            out,
            "  unsent     {} requests fell due but were never sent: the target fell behind the rate",
            group(stats.unsent_total)
        );
    }
    out
}

/// A latency with a unit that keeps it readable.
pub(crate) fn micros(us: f64) -> String {
    if us >= 1_000_000.0 {
        format!("{:.2}s", us / 1e6)
    } else if us >= 1_000.0 {
        format!("{:.2}ms", us / 1e3)
    } else {
        format!("{us:.0}us")
    }
}

/// `1234567` as `1,234,567`.
pub fn group(value: u64) -> String {
    let digits = value.to_string();
    // The first group holds what is left over from groups of three.
    let head = match digits.len() % 3 {
        0 => 3.min(digits.len()),
        n => n,
    };
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    out.push_str(&digits[..head]);
    for group in digits.as_bytes()[head..].chunks(3) {
        out.push(',');
        out.push_str(std::str::from_utf8(group).expect("decimal digits are ASCII"));
    }
    out
}

pub(crate) fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::StatusKind;

    fn info() -> RunInfo {
        RunInfo {
            mode: "http",
            target: "http://127.0.0.1:1/\"q\"".into(),
            method: "GET".into(),
            rpc: None,
            keys: "hot".into(),
            connections: 2,
            threads: 1,
            pipeline: 1,
            rate: None,
            duration_s: 1.0,
        }
    }

    #[test]
    fn json_has_the_promised_fields() {
        let mut stats = Stats::new(StatusKind::Http);
        stats.record_response(200, 100_000);
        stats.record_response(429, 300_000);
        stats.errors.timeout = 2;
        stats.elapsed_ns = 2_000_000_000;
        let json = json(&info(), &stats);
        for field in [
            "\"requests\":2",
            "\"requests_per_sec\":1.0",
            "\"p50_us\":100.0",
            "\"p99_us\":300.",
            "\"p999_us\":300.",
            "\"errors\":3",
            "\"errors_by_kind\":{\"status_429\":1,\"timeout\":2}",
            "\"status\":{\"200\":1,\"429\":1}",
            "\"rate\":null",
            "\"url\":\"http://127.0.0.1:1/\\\"q\\\"\"",
        ] {
            assert!(json.contains(field), "{field} missing from {json}");
        }
        assert!(json.starts_with('{') && json.ends_with('}'));
    }

    #[test]
    fn text_reads_like_a_report() {
        let mut stats = Stats::new(StatusKind::Http);
        stats.record_response(200, 1_500_000);
        stats.elapsed_ns = 1_000_000_000;
        let text = text(&info(), &stats);
        assert!(text.contains("requests   1 in 1.00s: 1 req/s"), "{text}");
        assert!(text.contains("p50 1.50ms"), "{text}");
        assert!(text.contains("errors     0\n"), "{text}");
    }

    #[test]
    fn rpc_runs_name_their_statuses_and_denials() {
        let mut stats = Stats::new(StatusKind::Rpc);
        stats.record_response(0, 100_000);
        stats.record_response(2, 100_000);
        stats.denied_total = 1;
        stats.elapsed_ns = 1_000_000_000;
        let info = RunInfo {
            mode: "rpc",
            target: "127.0.0.1:7070".into(),
            method: "check".into(),
            rpc: Some(RpcInfo {
                class: "ratelimit".into(),
                shard_aware: true,
                shards: 2,
            }),
            ..info()
        };
        let json = json(&info, &stats);
        for field in [
            "\"addr\":\"127.0.0.1:7070\"",
            "\"class\":\"ratelimit\"",
            "\"shard_aware\":true",
            "\"errors\":1",
            "\"errors_by_kind\":{\"rpc_status_2\":1}",
            "\"status\":{\"0\":1,\"2\":1}",
            "\"denied\":1",
        ] {
            assert!(json.contains(field), "{field} missing from {json}");
        }
        assert!(!json.contains("\"url\""), "{json}");
        let text = text(&info, &stats);
        assert!(
            text.contains("ratelimit.check at 127.0.0.1:7070 (shard-aware"),
            "{text}"
        );
        assert!(text.contains("denied     1"), "{text}");
    }

    #[test]
    fn groups_thousands() {
        assert_eq!(group(0), "0");
        assert_eq!(group(999), "999");
        assert_eq!(group(1000), "1,000");
        assert_eq!(group(1_234_567), "1,234,567");
    }
}
