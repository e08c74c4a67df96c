//! The end-of-run report of a WebSocket run, as text or one JSON object.
//!
//! The JSON object has the fields of the HTTP and RPC summaries where they
//! mean the same (`mode`, `url`, `threads`, `rate`, `loop`, `duration_s`,
//! `elapsed_s`, `p50_us` .. `max_us`, `mean_us`, `errors`,
//! `errors_by_kind`, `unsent`), and what a chat run adds: `rooms`,
//! `clients_per_room`, `clients`, `senders`, `source_ips`, `joined`,
//! `connect_s` (the connect phase), `join_p50_us` / `join_p99_us` /
//! `join_max_us` (connect to own join, per client), `messages` and
//! `messages_per_sec` (sent), `deliveries` and `deliveries_per_sec`,
//! `completed` (messages seen by every other client of their room),
//! `joins`, `leaves`, `other_messages` and `pings`. Latency percentiles are
//! of deliveries. `errors_by_kind` names `handshake_<status>`,
//! `close_<code>`, then `timeout`, `reset`, `eof`, `connect`, `protocol`,
//! `close_unanswered` and `io`.

use std::fmt::Write;

use super::plan::WsRun;
use super::stats::WsStats;
use crate::report::{group, json_string, micros, Percentiles};

fn per_sec(count: u64, elapsed_ns: u64) -> f64 {
    if elapsed_ns == 0 {
        return 0.0;
    }
    count as f64 / (elapsed_ns as f64 / 1e9)
}

/// The summary as one line of JSON.
pub fn json(run: &WsRun, stats: &WsStats) -> String {
    let p = Percentiles::of_histogram(&stats.latency_ns);
    let join = Percentiles::of_histogram(&stats.join_ns);
    let mut out = String::with_capacity(1024);
    let _ = write!(out, "{{\"mode\":\"ws\",\"url\":{}", json_string(&run.url));
    let _ = write!(
        out,
        ",\"rooms\":{},\"clients_per_room\":{},\"clients\":{},\"senders\":\"{}\"",
        run.rooms,
        run.clients_per_room,
        run.clients(),
        run.senders
    );
    let _ = write!(
        out,
        ",\"threads\":{},\"source_ips\":{}",
        run.threads,
        run.source_ips.len().max(1)
    );
    match run.rate {
        Some(rate) => {
            let _ = write!(out, ",\"rate\":{rate},\"loop\":\"open\"");
        }
        None => out.push_str(",\"rate\":null,\"loop\":\"closed\""),
    }
    let _ = write!(out, ",\"duration_s\":{:.3}", run.duration.as_secs_f64());
    let _ = write!(out, ",\"elapsed_s\":{:.3}", stats.elapsed_ns as f64 / 1e9);
    let _ = write!(
        out,
        ",\"connect_s\":{:.3}",
        stats.connect_phase_ns as f64 / 1e9
    );
    let _ = write!(out, ",\"joined\":{}", stats.joined_total);
    let _ = write!(
        out,
        ",\"join_p50_us\":{:.1},\"join_p99_us\":{:.1},\"join_max_us\":{:.1}",
        join.p50_us, join.p99_us, join.max_us
    );
    let _ = write!(
        out,
        ",\"messages\":{},\"messages_per_sec\":{:.1}",
        stats.messages_total,
        per_sec(stats.messages_total, stats.elapsed_ns)
    );
    let _ = write!(
        out,
        ",\"deliveries\":{},\"deliveries_per_sec\":{:.1},\"completed\":{}",
        stats.deliveries_total,
        per_sec(stats.deliveries_total, stats.elapsed_ns),
        stats.completed_total
    );
    let _ = write!(
        out,
        ",\"p50_us\":{:.1},\"p90_us\":{:.1},\"p99_us\":{:.1},\"p999_us\":{:.1},\"max_us\":{:.1},\"mean_us\":{:.1}",
        p.p50_us, p.p90_us, p.p99_us, p.p999_us, p.max_us, p.mean_us
    );
    let _ = write!(out, ",\"errors\":{}", stats.errors_total());
    out.push_str(",\"errors_by_kind\":{");
    for (i, (kind, count)) in stats.error_kinds().iter().enumerate() {
        let comma = if i == 0 { "" } else { "," };
        let _ = write!(out, "{comma}\"{kind}\":{count}");
    }
    out.push('}');
    let _ = write!(
        out,
        ",\"joins\":{},\"leaves\":{},\"other_messages\":{},\"pings\":{},\"unsent\":{}}}",
        stats.joins_total,
        stats.leaves_total,
        stats.other_messages_total,
        stats.pings_total,
        stats.unsent_total
    );
    out
}

/// The summary as a few aligned lines of text.
pub fn text(run: &WsRun, stats: &WsStats) -> String {
    let p = Percentiles::of_histogram(&stats.latency_ns);
    let join = Percentiles::of_histogram(&stats.join_ns);
    let mut out = String::with_capacity(1024);
    let loop_kind = match run.rate {
        Some(rate) => format!("open loop at {} msg/s", group(rate.round() as u64)),
        None => "closed loop".to_string(),
    };
    let _ = writeln!(out, "loadgen ws: {}", run.url);
    let _ = writeln!(
        out,
        "  {} rooms x {} clients, senders {}, {} thread{}, {}, {}s",
        group(run.rooms as u64),
        group(run.clients_per_room as u64),
        run.senders,
        run.threads,
        if run.threads == 1 { "" } else { "s" },
        loop_kind,
        run.duration.as_secs_f64()
    );
    let _ = writeln!(
        out,
        "  connect    {} of {} clients joined in {:.2}s: join p50 {} | p99 {} | max {}",
        group(stats.joined_total),
        group(run.clients() as u64),
        stats.connect_phase_ns as f64 / 1e9,
        micros(join.p50_us),
        micros(join.p99_us),
        micros(join.max_us)
    );
    let _ = writeln!(
        out,
        "  messages   {} sent in {:.2}s: {} msg/s",
        group(stats.messages_total),
        stats.elapsed_ns as f64 / 1e9,
        group(per_sec(stats.messages_total, stats.elapsed_ns).round() as u64)
    );
    let _ = writeln!(
        out,
        "  delivered  {}: {} deliveries/s ({} messages reached their whole room)",
        group(stats.deliveries_total),
        group(per_sec(stats.deliveries_total, stats.elapsed_ns).round() as u64),
        group(stats.completed_total)
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
    let _ = writeln!(
        out,
        "  server     {} joins, {} leaves, {} other messages, {} pings",
        group(stats.joins_total),
        group(stats.leaves_total),
        group(stats.other_messages_total),
        group(stats.pings_total)
    );
    let kinds: Vec<String> = stats
        .error_kinds()
        .iter()
        .map(|(kind, count)| format!("{kind} {}", group(*count)))
        .collect();
    let _ = write!(out, "  errors     {}", group(stats.errors_total()));
    if !kinds.is_empty() {
        let _ = write!(out, " ({})", kinds.join(", "));
    }
    out.push('\n');
    if stats.unsent_total > 0 {
        let _ = writeln!(
            out,
            "  unsent     {} messages fell due but were never sent: the target fell behind the rate",
            group(stats.unsent_total)
        );
    }
    out
}
