#!/usr/bin/env python3
"""Charts of a bench/compare.sh session as SVG; Python 3 standard library only.

    plot.py RESULTS.jsonl PREFIX

writes PREFIX-throughput.svg (median throughput of each system, one panel
per workload, each panel on its own linear scale) and PREFIX-latency.svg
(median p50, p99 and p99.9 latency of each system, one panel per workload,
on a log scale). A system that did not run a workload is named in its panel
with the reason instead of a bar.
"""

import math
import os
import sys
from xml.sax.saxutils import escape

# Import results.py from beside this file, leaving no __pycache__ there.
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import results  # noqa: E402  (the loader and the table order)

COLORS = {
    "durin": "#d9480f",
    "workerd": "#1c7ed6",
    "redis-always": "#2b8a3e",
    "redis-everysec": "#74b816",
    "ceiling": "#868e96",
}
PERCENTILES = (("p50_us", "p50", 1.0), ("p99_us", "p99", 0.65), ("p999_us", "p99.9", 0.35))
# Panel titles, short enough for a panel's width.
TITLES = {
    "rl-uniform": "rate limit, 10k uniform keys",
    "rl-zipf": "rate limit, 10k Zipf keys",
    "rl-hot": "rate limit, one hot key",
    "counter": "counter increments, 10k keys",
    "chat-10": "chat, rooms of 10",
    "chat-100": "chat, rooms of 100",
}
PANEL_W, PANEL_H, COLUMNS = 360, 260, 3
PLOT_TOP, PLOT_BOTTOM, PLOT_LEFT, PLOT_RIGHT = 40, 200, 70, 345


def text(x, y, body, size=11, anchor="start", color="#212529", weight="normal", rotate=None):
    turn = f' transform="rotate({rotate} {x:.1f} {y:.1f})"' if rotate is not None else ""
    return (f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" '
            f'fill="{color}" font-weight="{weight}"{turn}>{escape(str(body))}</text>')


def rect(x, y, w, h, color, opacity=1.0):
    return (f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(w, 0):.1f}" height="{max(h, 0):.1f}" '
            f'fill="{color}" fill-opacity="{opacity}"/>')


def line(x1, y1, x2, y2, color="#dee2e6"):
    return f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" stroke="{color}"/>'


def short(value):
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= limit:
            return f"{value / limit:.3g}{suffix}"
    return f"{value:.3g}"


def nice_max(value):
    """The smallest 1, 2, 2.5 or 5 times a power of ten at or above `value`."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    return next(step * power for step in (1, 2, 2.5, 5, 10) if step * power >= value)


def panel_origin(index):
    return (index % COLUMNS) * PANEL_W, (index // COLUMNS) * PANEL_H + 30


def panel_frame(ox, oy, title):
    return [text(ox + PANEL_W / 2, oy + 18, title, size=12, anchor="middle", weight="bold"),
            line(ox + PLOT_LEFT, oy + PLOT_BOTTOM, ox + PLOT_RIGHT, oy + PLOT_BOTTOM, "#495057")]


def slot(ox, i, n):
    """The x and width of system i of n in a panel."""
    width = (PLOT_RIGHT - PLOT_LEFT) / max(n, 1)
    return ox + PLOT_LEFT + i * width, width


def system_label(ox, oy, i, n, system, reason=None):
    x, width = slot(ox, i, n)
    # One line per dash-separated part, so that long names do not overlap.
    parts = [text(x + width / 2, oy + PLOT_BOTTOM + 14 + 12 * k, word, size=10, anchor="middle")
             for k, word in enumerate(system.split("-"))]
    if reason:
        # The reason, cut to fit, written upward in the empty slot.
        parts.append(text(x + width / 2 + 3, oy + PLOT_BOTTOM - 6, reason[:32], size=9,
                          color="#868e96", rotate=-90))
    return parts


def throughput_panel(index, workload, systems, skips, runs):
    ox, oy = panel_origin(index)
    out = panel_frame(ox, oy, f"{workload}: {TITLES.get(workload, '')}")
    summaries = {}
    for system in systems:
        mine = [r for r in runs if r["workload"] == workload and r["system"] == system]
        summaries[system] = results.summarize(mine)
    values = [s["throughput"] for s in summaries.values() if s["throughput"] is not None]
    top = nice_max(max(values) if values else 1.0)
    unit = next((s["unit"] for s in summaries.values() if s["unit"]), "")
    height = PLOT_BOTTOM - PLOT_TOP
    for k in range(5):
        value = top * k / 4
        y = oy + PLOT_BOTTOM - height * k / 4
        out.append(line(ox + PLOT_LEFT, y, ox + PLOT_RIGHT, y))
        out.append(text(ox + PLOT_LEFT - 4, y + 4, short(value), size=10, anchor="end"))
    out.append(text(ox + 14, oy + (PLOT_TOP + PLOT_BOTTOM) / 2, unit, size=10, anchor="middle",
                    rotate=-90))
    for i, system in enumerate(systems):
        s = summaries[system]
        reason = skips.get((workload, system))
        if reason is None and s["throughput"] is None:
            reason = "failed"
        out += system_label(ox, oy, i, len(systems), system, reason)
        if reason:
            continue
        x, width = slot(ox, i, len(systems))
        bar = height * s["throughput"] / top
        out.append(rect(x + width * 0.15, oy + PLOT_BOTTOM - bar, width * 0.7, bar,
                        COLORS.get(system, "#495057")))
        out.append(text(x + width / 2, oy + PLOT_BOTTOM - bar - 4, short(s["throughput"]), size=10,
                        anchor="middle"))
    return out


def latency_panel(index, workload, systems, skips, runs):
    ox, oy = panel_origin(index)
    out = panel_frame(ox, oy, f"{workload}: {TITLES.get(workload, '')}")
    summaries = {}
    for system in systems:
        mine = [r for r in runs if r["workload"] == workload and r["system"] == system]
        summaries[system] = results.summarize(mine)
    values = [s[key] for s in summaries.values() for key, _, _ in PERCENTILES
              if s[key] is not None and s[key] > 0]
    low = 10 ** math.floor(math.log10(min(values))) if values else 1.0
    high = 10 ** math.ceil(math.log10(max(values))) if values else 10.0
    high = max(high, low * 10)
    height = PLOT_BOTTOM - PLOT_TOP

    def y_of(value):
        share = (math.log10(value) - math.log10(low)) / (math.log10(high) - math.log10(low))
        return oy + PLOT_BOTTOM - height * share

    decade = low
    while decade <= high * 1.0001:
        out.append(line(ox + PLOT_LEFT, y_of(decade), ox + PLOT_RIGHT, y_of(decade)))
        out.append(text(ox + PLOT_LEFT - 4, y_of(decade) + 4, short(decade), size=10, anchor="end"))
        decade *= 10
    out.append(text(ox + 14, oy + (PLOT_TOP + PLOT_BOTTOM) / 2, "µs (log)", size=10,
                    anchor="middle", rotate=-90))
    for i, system in enumerate(systems):
        s = summaries[system]
        reason = skips.get((workload, system))
        if reason is None and s["throughput"] is None:
            reason = "failed"
        out += system_label(ox, oy, i, len(systems), system, reason)
        if reason:
            continue
        x, width = slot(ox, i, len(systems))
        bar_w = width * 0.8 / len(PERCENTILES)
        for k, (key, _, opacity) in enumerate(PERCENTILES):
            if s[key] is None or s[key] <= 0:
                continue
            y = y_of(s[key])
            out.append(rect(x + width * 0.1 + k * bar_w, y, bar_w * 0.9, oy + PLOT_BOTTOM - y,
                            COLORS.get(system, "#495057"), opacity))
    return out


def legend_latency(y):
    out, x = [], 10
    for _, label, opacity in PERCENTILES:
        out.append(rect(x, y - 9, 12, 10, "#495057", opacity))
        out.append(text(x + 16, y, label, size=11))
        x += 70
    return out


def write_svg(path, title, panels, extra=()):
    rows = math.ceil(len(panels) / COLUMNS)
    # At least two panels wide, so that the title fits.
    width, height = PANEL_W * max(min(len(panels), COLUMNS), 2), rows * PANEL_H + 40
    body = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" font-family="sans-serif">',
            rect(0, 0, width, height, "#ffffff"),
            text(width / 2, 20, title, size=15, anchor="middle", weight="bold")]
    for panel in panels:
        body += panel
    body += list(extra)
    body.append("</svg>")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(body) + "\n")


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    meta, skips, runs = results.load(sys.argv[1])
    prefix = sys.argv[2]
    workloads = results.ordered(meta.get("workloads", "").split(","), list(results.WORKLOADS))
    systems = results.ordered(meta.get("systems", "").split(","), list(results.SYSTEMS))
    when = f"{meta.get('date', '')}, nproc {meta.get('nproc', '?')}, {meta.get('duration', '')} runs"
    write_svg(f"{prefix}-throughput.svg", f"Throughput, median of repetitions ({when})",
              [throughput_panel(i, w, systems, skips, runs) for i, w in enumerate(workloads)])
    rows = math.ceil(len(workloads) / COLUMNS)
    write_svg(f"{prefix}-latency.svg", f"Latency percentiles, median of repetitions ({when})",
              [latency_panel(i, w, systems, skips, runs) for i, w in enumerate(workloads)],
              legend_latency(rows * PANEL_H + 32))


if __name__ == "__main__":
    main()
