#!/usr/bin/env python3
"""bench/compare.sh's records and tables; Python 3 standard library only.

The session's results file has one JSON object per line, each with a `kind`:

- `meta`: the machine and the settings (first line);
- `skip`: a system that does not run a workload at all, and why
  ("n/a: ...", "not installed: ...");
- `run`: one run of one system on one workload in one repetition, with
  `ok`, `throughput`, `unit`, `p50_us`, `p99_us`, `p999_us`, `errors`,
  `denied` (HTTP 429s, which a rate limiter is meant to give), `failure`
  when it failed, and the client's own summary under `raw`.

Subcommands:
  meta --set key=value ...      prints the meta line
  record --workload W --system S --rep N --format F --file OUT
         [--elapsed-s X] [--failure WHY]
                                prints a run line from a client's output
  skip --workload W --system S --reason WHY
                                prints a skip line
  describe                      one line of progress from a run line on stdin
  report RESULTS.jsonl OUT.md   writes the markdown tables
"""

import argparse
import csv
import io
import json
import os
import statistics
import sys

# The systems in table order, with what each one is.
SYSTEMS = {
    "durin": "durin serve --no-rpc, default config (fixed window, 100 per 60 s); "
    "a write is durable before its answer",
    "workerd": "the seed's classes in JavaScript on workerd, one process; storage on local "
    "disk (one SQLite file per object, fsync per write)",
    "redis-always": "redis-server, one thread; appendonly yes, appendfsync always "
    "(fsync before the reply, batched over the event loop); driven by redis-benchmark",
    "redis-everysec": "redis-server, one thread; appendonly yes, appendfsync everysec "
    "(up to a second of writes lost on a crash); driven by redis-benchmark",
    "ceiling": "bench's minimal io_uring HTTP server: a fixed 200 for any request, "
    "no routing, no storage",
}

# The workloads in report order, with their titles and what each system runs.
WORKLOADS = {
    "rl-uniform": (
        "Rate-limit checks, 10,000 uniform keys",
        "`loadgen http GET /ratelimit/{key} --keys uniform:10000`; redis: "
        "`redis-benchmark -r 10000 EVALSHA <limiter> 1 rl:__rand_int__`. " + "{first_touch}",
    ),
    "rl-zipf": (
        "Rate-limit checks, 10,000 Zipf keys (s = 1.1)",
        "`loadgen http GET /ratelimit/{key} --keys zipf:10000:1.1`",
    ),
    "rl-hot": (
        "Rate-limit checks, one hot key",
        "`loadgen http GET /ratelimit/hot`; redis: `redis-benchmark EVALSHA <limiter> 1 rl:hot`. "
        "After the first 100 checks of a window every check is refused (429)",
    ),
    "counter": (
        "Counter increments, 10,000 uniform keys",
        "`loadgen http POST /counter/{key}/increment --keys uniform:10000`; redis: "
        "`redis-benchmark -r 10000 INCR counter:__rand_int__`. " + "{first_touch}",
    ),
    "chat-10": (
        "Chat fan-out, rooms of 10",
        "`loadgen ws /chat/{room}/websocket --clients-per-room 10`; throughput is deliveries "
        "(messages received by clients) per second, latency is send to delivery",
    ),
    "chat-100": (
        "Chat fan-out, rooms of 100",
        "`loadgen ws /chat/{room}/websocket --clients-per-room 100`; throughput is deliveries "
        "(messages received by clients) per second, latency is send to delivery",
    ),
}


# Said of the workloads whose keys are mostly new to the store.
FIRST_TOUCH = (
    "Each run starts from an empty store, so most requests of a run create their "
    "object: for workerd that is a new SQLite file per key, which it creates and "
    "syncs on its one thread"
)


def tail(text, lines=2):
    return " ".join(text.strip().splitlines()[-lines:])


def parse_loadgen_http(text):
    summary = json.loads(text.strip().splitlines()[-1])
    denied = int(summary.get("status", {}).get("429", 0))
    return summary, {
        "throughput": summary["requests_per_sec"],
        "unit": "req/s",
        "p50_us": summary["p50_us"],
        "p99_us": summary["p99_us"],
        "p999_us": summary["p999_us"],
        "errors": int(summary["errors"]) - denied,
        "denied": denied,
    }


def parse_loadgen_ws(text):
    summary = json.loads(text.strip().splitlines()[-1])
    return summary, {
        "throughput": summary["deliveries_per_sec"],
        "unit": "deliveries/s",
        "messages_per_sec": summary.get("messages_per_sec"),
        "p50_us": summary["p50_us"],
        "p99_us": summary["p99_us"],
        "p999_us": summary.get("p999_us"),
        "errors": int(summary["errors"]),
        "denied": 0,
    }


def parse_redis_benchmark(text):
    rows = list(csv.DictReader(io.StringIO(text)))
    if not rows:
        raise ValueError("redis-benchmark printed no CSV row")
    row = rows[-1]
    return row, {
        "throughput": float(row["rps"]),
        "unit": "req/s",
        "p50_us": float(row["p50_latency_ms"]) * 1000,
        "p99_us": float(row["p99_latency_ms"]) * 1000,
        "p999_us": None,
        # redis-benchmark stops at the first error reply, so a finished
        # run had none; it does not read the limiter's answers, so its
        # refusals are not counted.
        "errors": 0,
        "denied": None,
    }


PARSERS = {
    "loadgen-http": parse_loadgen_http,
    "loadgen-ws": parse_loadgen_ws,
    "redis-benchmark": parse_redis_benchmark,
}


def cmd_meta(args):
    meta = {"kind": "meta", "versions": {}, "status": {}}
    for item in args.set:
        key, _, value = item.partition("=")
        group, dot, name = key.partition(".")
        if dot and group in ("version", "status"):
            meta[group + "s" if group == "version" else group][name] = value
        else:
            meta[key] = value
    print(json.dumps(meta))


def cmd_record(args):
    record = {
        "kind": "run",
        "workload": args.workload,
        "system": args.system,
        "rep": args.rep,
        "elapsed_s": args.elapsed_s,
        "ok": False,
    }
    failure = args.failure
    text = ""
    if os.path.exists(args.file):
        with open(args.file, encoding="utf-8", errors="replace") as f:
            text = f.read()
    if text.strip() and args.format in PARSERS:
        try:
            raw, fields = PARSERS[args.format](text)
            record.update(fields)
            record["raw"] = raw
        except (ValueError, KeyError, IndexError, TypeError) as err:
            failure = failure or f"unreadable {args.format} output ({err}): {tail(text)}"
    elif not failure:
        failure = f"{args.format} printed nothing"
    if failure:
        record["failure"] = failure
    else:
        record["ok"] = True
    print(json.dumps(record))


def cmd_skip(args):
    print(json.dumps({"kind": "skip", "workload": args.workload, "system": args.system,
                      "reason": args.reason}))


def fmt_us(value):
    return "-" if value is None else f"{value:,.0f}"


def cmd_describe(_args):
    for line in sys.stdin:
        r = json.loads(line)
        where = f"run {r['rep']} {r['workload']} {r['system']}"
        if r["ok"]:
            print(f"compare: {where}: {r['throughput']:,.0f} {r['unit']}, p50 {fmt_us(r['p50_us'])} µs, "
                  f"p99 {fmt_us(r['p99_us'])} µs, errors {r['errors']}"
                  + (f", 429s {r['denied']}" if r.get("denied") else ""))
        else:
            print(f"compare: {where}: FAILED: {r['failure']}")


def load(path):
    meta, skips, runs = {}, {}, []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            r = json.loads(line)
            if r["kind"] == "meta":
                meta = r
            elif r["kind"] == "skip":
                skips[(r["workload"], r["system"])] = r["reason"]
            elif r["kind"] == "run":
                runs.append(r)
            elif r["kind"] == "sync_probe":
                meta.setdefault("sync_probes", []).append(r)
    return meta, skips, runs


def sync_probe_line(meta):
    """The disk's write + fdatasync latency, measured before and after the
    runs on the data directory's disk: the physical limit of every durable
    figure below."""
    probes = meta.get("sync_probes", [])
    if not probes:
        return "- disk sync probe: not run"
    parts = [f"{p.get('when', '?')}: p50 {fmt_us(p.get('p50_us'))} µs, p99 {fmt_us(p.get('p99_us'))} µs, "
             f"{fmt_us(p.get('syncs_per_s'))} syncs/s" for p in probes]
    return ("- disk sync probe (4 KiB write + fdatasync on the data directory's disk, "
            "`bench/src/bin/sync_probe.rs`): " + "; ".join(parts))


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def ordered(names, known):
    """The names in the order of `known`, unknown ones after."""
    return [n for n in known if n in names] + [n for n in names if n not in known]


def durin_ratio(runs, system):
    """The median over repetitions of durin's throughput over the system's."""
    if system == "durin":
        return None
    by_rep = {r["rep"]: r["throughput"] for r in runs if r["system"] == "durin" and r["ok"]}
    ratios = [by_rep[r["rep"]] / r["throughput"] for r in runs
              if r["system"] == system and r["ok"] and r["rep"] in by_rep and r["throughput"] > 0]
    return median(ratios)


def summarize(runs):
    """Medians and totals of one system's runs of one workload."""
    ok = [r for r in runs if r["ok"]]
    denied = [r["denied"] for r in ok if r.get("denied") is not None]
    return {
        "throughput": median([r["throughput"] for r in ok]),
        "unit": ok[0]["unit"] if ok else "",
        "messages_per_sec": median([r.get("messages_per_sec") for r in ok]),
        "p50_us": median([r["p50_us"] for r in ok]),
        "p99_us": median([r["p99_us"] for r in ok]),
        "p999_us": median([r["p999_us"] for r in ok]),
        "errors": sum(r["errors"] for r in ok),
        "denied": sum(denied) if denied else None,
        "ok": len(ok),
        "runs": ok,
        "failed": [r for r in runs if not r["ok"]],
        "each": ", ".join(f"{r['throughput']:,.0f}" for r in sorted(ok, key=lambda r: r["rep"])),
    }


def error_kinds(runs):
    """loadgen's error kinds summed over runs, 429s left out."""
    kinds = {}
    for r in runs:
        for kind, count in r.get("raw", {}).get("errors_by_kind", {}).items():
            if kind != "status_429":
                kinds[kind] = kinds.get(kind, 0) + count
    return ", ".join(f"{kind} {count:,}" for kind, count in sorted(kinds.items())) or "not broken down"


def table(workload, systems, skips, runs):
    chat = workload.startswith("chat-")
    unit = "deliveries/s" if chat else "req/s"
    head = ["system", f"{unit} (median)"]
    if chat:
        head.append("messages/s")
    head += ["p50 µs", "p99 µs", "p99.9 µs", "errors"]
    if not chat:
        head.append("429s")
    head += ["durin ÷ system", "runs"]
    lines = ["| " + " | ".join(head) + " |",
             "| --- |" + " ---: |" * (len(head) - 2) + " --- |"]
    notes = []
    mine = [r for r in runs if r["workload"] == workload]
    for system in systems:
        if (workload, system) in skips:
            cells = [system, skips[(workload, system)]] + [""] * (len(head) - 2)
            lines.append("| " + " | ".join(cells) + " |")
            continue
        s = summarize([r for r in mine if r["system"] == system])
        if s["ok"] == 0:
            why = s["failed"][0]["failure"] if s["failed"] else "no run"
            cells = [system, f"failed: {why}"] + [""] * (len(head) - 2)
            lines.append("| " + " | ".join(cells) + " |")
            continue
        ratio = durin_ratio(mine, system)
        cells = [system, f"{s['throughput']:,.0f}"]
        if chat:
            cells.append(f"{s['messages_per_sec']:,.0f}" if s["messages_per_sec"] is not None else "-")
        cells += [fmt_us(s["p50_us"]), fmt_us(s["p99_us"]), fmt_us(s["p999_us"]), f"{s['errors']:,}"]
        if not chat:
            cells.append("-" if s["denied"] is None else f"{s['denied']:,}")
        cells += ["-" if ratio is None else f"{ratio:.2f}", f"{s['ok']}: {s['each']}"]
        lines.append("| " + " | ".join(cells) + " |")
        if s["errors"]:
            notes.append(f"- {system}, errors by kind over all repetitions: {error_kinds(s['runs'])}")
        for r in s["failed"]:
            notes.append(f"- {system}, repetition {r['rep']} failed: {r['failure']}")
    return lines, notes


def cmd_report(args):
    meta, skips, runs = load(args.results)
    stamp = meta.get("stamp", "")
    workloads = ordered(meta.get("workloads", "").split(","), list(WORKLOADS))
    systems = ordered(meta.get("systems", "").split(","), list(SYSTEMS))
    versions = meta.get("versions", {})
    out = [f"# durin beside its peers ({meta.get('date', '')})", ""]
    out += [
        f"- command: `{meta.get('command', '')}`",
        f"- machine: nproc {meta.get('nproc')}, kernel {meta.get('kernel')}, {meta.get('cpu')}, "
        f"{meta.get('memory')} memory",
        f"- placement: {meta.get('placement')}; durin and ceiling --cores {meta.get('cores')}; "
        f"loadgen and redis-benchmark {meta.get('client_threads')} thread(s)",
        f"- data directories on {meta.get('data_fs')}",
        sync_probe_line(meta),
        f"- each run {meta.get('duration')} against a freshly started server with an empty data "
        f"directory; {meta.get('reps')} repetitions, systems alternating within each; "
        f"{meta.get('connections')} connections (HTTP, redis), closed loop; chat: "
        f"{meta.get('chat_clients')} clients, senders {meta.get('chat_senders')}",
        f"- medians over repetitions; errors and 429s are totals; \"durin ÷ system\" is the median "
        f"over repetitions of durin's throughput over the system's in the same repetition",
        f"- loadgen: {meta.get('loadgen', '')}; raw runs: `compare-{stamp}.jsonl`",
        "",
        "Systems:",
        "",
    ]
    for system in systems:
        status = meta.get("status", {}).get(system)
        version = versions.get(system, "")
        out.append(f"- **{system}**{f' ({version})' if version else ''}: "
                   f"{status if status else SYSTEMS.get(system, '')}")
    out += ["", f"![throughput](compare-{stamp}-throughput.svg)", "",
            f"![latency](compare-{stamp}-latency.svg)", ""]
    for workload in workloads:
        title, how = WORKLOADS.get(workload, (workload, ""))
        out += [f"## {workload}: {title}", "", how.replace("{first_touch}", FIRST_TOUCH) + ".", ""]
        lines, notes = table(workload, systems, skips, runs)
        out += lines + [""]
        if notes:
            out += notes + [""]
    with open(args.out, "w", encoding="utf-8") as f:
        f.write("\n".join(out))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("meta")
    p.add_argument("--set", action="append", default=[])
    p.set_defaults(func=cmd_meta)
    p = sub.add_parser("record")
    p.add_argument("--workload", required=True)
    p.add_argument("--system", required=True)
    p.add_argument("--rep", type=int, required=True)
    p.add_argument("--format", required=True)
    p.add_argument("--file", required=True)
    p.add_argument("--elapsed-s", type=float, default=0.0)
    p.add_argument("--failure")
    p.set_defaults(func=cmd_record)
    p = sub.add_parser("skip")
    p.add_argument("--workload", required=True)
    p.add_argument("--system", required=True)
    p.add_argument("--reason", required=True)
    p.set_defaults(func=cmd_skip)
    p = sub.add_parser("describe")
    p.set_defaults(func=cmd_describe)
    p = sub.add_parser("report")
    p.add_argument("results")
    p.add_argument("out")
    p.set_defaults(func=cmd_report)
    args = parser.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
