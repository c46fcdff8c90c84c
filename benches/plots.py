"""Plots of side-by-side search results: JSON files written by side_by_side.py or `kb bench search`
(the same `runs` schema), all runs treated alike. Run through side_by_side.sh:

    benches/side_by_side.sh plot --out-dir DIR a.json [b.json ...]

Writes into DIR:
- recall_latency.png:     recall@k vs p99 latency per series (unfiltered): a line through its effort
                          sweep, a star at kb's default effort, a lone marker for a one-run series;
- throughput_clients.png: queries/s vs client count per series, at its best setting;
- engines_p99.png:        p99 latency per series at its best setting (unfiltered);
- filtered.png:           the same per filter selectivity, for the series with filtered runs.
A series is an engine with an index family: a run's setting without its search effort (its last
probes= or ef_search= word, or kb's "(kb default effort)"), e.g. `kb-sql hnsw m=16 ef_construction=64`.
A series' best setting is its fastest (lowest p99) with recall >= 0.95, else its most accurate.
A series name found in several files is told apart by the file's name.
"""

import argparse
import json
import math
import os
import textwrap
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 (after choosing the backend)
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.ticker import LogFormatter  # noqa: E402

TARGET_RECALL = 0.95
DPI = 100
WIDE = (11, 6)  # inches; the legends sit outside the axes, on the right

# The search effort: a setting's last word with one of these prefixes is the swept parameter.
EFFORT_PREFIXES = ("probes=", "ef_search=")
# kb's own runs at the effort it uses when none is configured (not a number in the setting).
KB_DEFAULT = "(kb default effort)"
KB_DEFAULT_EFFORT = "kb default effort"
# Markers of one-run series in recall_latency.png; "*" is kept for the kb default effort.
LONE_MARKERS = ["s", "D", "^", "v", "P", "X", "p", "h", "<", ">"]
LEGEND_WIDTH = 44  # characters of a legend line
HATCHES = ["", "///", "...", "xxx", "\\\\\\"]


def split_setting(setting):
    """(family, effort, is_default) of a run's setting. The effort is its last probes=/ef_search=
    word, or "kb default effort" for kb's "(kb default effort)" runs, or "" when it has neither;
    the family is the rest of the setting (e.g. `hnsw m=16 ef_construction=64`)."""
    is_default = KB_DEFAULT in setting
    words = setting.replace(KB_DEFAULT, " ").split()
    effort = ""
    for i in reversed(range(len(words))):
        if words[i].startswith(EFFORT_PREFIXES):
            effort = words.pop(i)
            break
    if is_default and not effort:
        effort = KB_DEFAULT_EFFORT
    return " ".join(words), effort, is_default


def short_effort(effort):
    """An effort as a point label: `probes=8`, `ef=40`."""
    return effort.replace("ef_search=", "ef=")


def load(paths):
    """(runs, title): every run gets its `series` (qualified by its file's name when that series
    name is in several files), its `effort`, `default` (kb default effort) and a `color`, the same
    in every plot."""
    runs, titles = [], []
    for path in paths:
        stem = os.path.splitext(os.path.basename(path))[0]
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        for run in data["runs"]:
            family, effort, is_default = split_setting(run["setting"] or "")
            series = f"{run['engine']} {family}".strip()
            runs.append({**run, "file": stem, "series": series, "effort": effort, "default": is_default})
        m = data.get("machine", {})
        title = f"{data['rows']:,} rows, k={data['k']}, {m.get('cpu', '?')} ({m.get('cores', '?')} cores)"
        if title not in titles:
            titles.append(title)
    files_of = defaultdict(set)
    for run in runs:
        files_of[run["series"]].add(run["file"])
    for run in runs:
        if len(files_of[run["series"]]) > 1:
            run["series"] += f" ({run['file']})"
    names = sorted({r["series"] for r in runs})
    if len(names) <= 10:
        colors = [f"C{i}" for i in range(len(names))]
    else:
        # tab20 comes in dark/light pairs: all the dark ones first, so neighbours differ most.
        tab20 = plt.get_cmap("tab20").colors
        order = list(range(0, 20, 2)) + list(range(1, 20, 2))
        colors = [tab20[order[i % 20]] for i in range(len(names))]
    color_of = dict(zip(names, colors))
    for run in runs:
        run["color"] = color_of[run["series"]]
    return runs, "\n".join(titles)


def by_series(runs):
    groups = defaultdict(list)
    for run in runs:
        groups[run["series"]].append(run)
    return dict(sorted(groups.items()))


def run_name(run):
    """Series and effort, e.g. `kb-sql hnsw m=16 ef_construction=64, ef_search=320`."""
    return f"{run['series']}, {run['effort']}" if run["effort"] else run["series"]


def recall(run):
    """A run's recall, -1 where it has none (kb writes null when it measured none)."""
    return -1 if run.get("recall") is None else run["recall"]


def recall_text(run):
    return "n/a" if recall(run) < 0 else f"{run['recall']:.3f}"


def ms_text(ms):
    return f"{ms:,.0f}" if ms >= 100 else f"{ms:.3g}"


def best(runs):
    good = [r for r in runs if recall(r) >= TARGET_RECALL]
    if good:
        return min(good, key=lambda r: r["p99_ms"])
    return max(runs, key=lambda r: (recall(r), -r["p99_ms"]))


class PlainLogFormatter(LogFormatter):
    """Labels the log ticks matplotlib would label, written 0.2, 5, 25000 (not 2x10^-1)."""

    def __call__(self, x, pos=None):
        return f"{x:g}" if super().__call__(x, pos) else ""


def log_axis(ax, which):
    """A log scale on ax's `which` ("x" or "y") axis, with plain tick labels."""
    (ax.set_xscale if which == "x" else ax.set_yscale)("log")
    axis = ax.xaxis if which == "x" else ax.yaxis
    axis.set_major_formatter(PlainLogFormatter())
    axis.set_minor_formatter(PlainLogFormatter(labelOnlyBase=False))
    axis.set_tick_params(which="minor", labelsize=7)


def legend_right(ax, handles=None, labels=None):
    """The legend outside the axes, on the right; long labels wrapped, so the axes keep their width."""
    if handles is None:
        handles, labels = ax.get_legend_handles_labels()
    if labels is None:
        labels = [h.get_label() for h in handles]
    labels = [textwrap.fill(label, LEGEND_WIDTH, subsequent_indent="   ") for label in labels]
    ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.01, 1), borderaxespad=0, fontsize=8)


def save(fig, ax, title, out_dir, name):
    ax.set_title(title, fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    path = os.path.join(out_dir, name)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    print(path)


def recall_latency(runs, title, out_dir):
    fig, ax = plt.subplots(figsize=WIDE, layout="constrained")
    lone, starred = 0, False
    for series, group in by_series([r for r in runs if recall(r) >= 0]).items():
        color = group[0]["color"]
        if len(group) == 1:  # nothing swept: one marker, named in full by the legend
            r = group[0]
            ax.plot(r["recall"], r["p99_ms"], linestyle="none", marker=LONE_MARKERS[lone % len(LONE_MARKERS)],
                    markersize=8, color=color, markeredgecolor="white", markeredgewidth=0.5, zorder=4,
                    label=run_name(r))  # above the stars, which may share its recall
            lone += 1
            continue
        sweep = sorted((r for r in group if not r["default"]), key=lambda r: (r["recall"], r["p99_ms"]))
        if sweep:
            ax.plot([r["recall"] for r in sweep], [r["p99_ms"] for r in sweep], marker="o", markersize=4,
                    color=color, label=series)
            for r in sweep:
                if r["effort"]:
                    # Below and right of the point: the lines rise to the right, so this is off them.
                    ax.annotate(short_effort(r["effort"]), (r["recall"], r["p99_ms"]), xytext=(4, -9),
                                textcoords="offset points", fontsize=6, color=color)
        for r in group:
            if r["default"]:  # apart from the sweep, which it would zig-zag
                ax.plot(r["recall"], r["p99_ms"], linestyle="none", marker="*", markersize=13, color=color,
                        markeredgecolor="black", markeredgewidth=0.5, zorder=3, label=None if sweep else series)
                starred = True
    ax.axvline(TARGET_RECALL, color="grey", linestyle="--", linewidth=1)
    log_axis(ax, "y")
    ax.set_xlabel("recall@k (vs exact)")
    ax.set_ylabel("p99 latency, one client (ms, log)")
    handles, labels = ax.get_legend_handles_labels()
    if starred:
        handles.append(Line2D([], [], linestyle="none", marker="*", markersize=12, color="lightgrey",
                              markeredgecolor="black", markeredgewidth=0.5))
        labels.append("kb default effort (series colour)")
    legend_right(ax, handles, labels)
    save(fig, ax, f"Recall vs p99 latency, unfiltered (points labelled with their search effort)\n{title}",
         out_dir, "recall_latency.png")


def throughput_clients(runs, title, out_dir):
    # Only runs with qps count: for kb's series those are the default-effort ones.
    fig, ax = plt.subplots(figsize=WIDE, layout="constrained")
    clients = set()
    for series, group in by_series([r for r in runs if r.get("qps")]).items():
        r = best(group)
        points = sorted((int(c), q) for c, q in r["qps"].items())
        clients.update(c for c, _ in points)
        ax.plot([c for c, _ in points], [q for _, q in points], marker="o", color=r["color"],
                label=f"{run_name(r)} (recall {recall_text(r)})")
    ax.set_xscale("log", base=2)
    log_axis(ax, "y")
    ax.set_xticks(sorted(clients), [str(c) for c in sorted(clients)])
    ax.set_xlabel("concurrent clients (one query per call each)")
    ax.set_ylabel("queries/s (log)")
    legend_right(ax)
    save(fig, ax, f"Throughput at each series' best setting with qps (recall >= {TARGET_RECALL} if reached)\n{title}",
         out_dir, "throughput_clients.png")


def p99_bars(groups, labels):
    """(fig, ax) of horizontal bars of best-setting p99: a row per series, in it a bar per group
    (`groups` is [{series: runs}], one per label; several are told apart by hatching), each
    labelled with its p99, the effort it used and its recall."""
    names = sorted({s for g in groups for s in g}, reverse=True)  # reversed: barh draws bottom-up
    fig, ax = plt.subplots(figsize=(WIDE[0], max(4.0, 1.8 + 0.3 * len(names) * len(groups))),
                           layout="constrained")
    height = 0.8 / len(groups)
    labelled = []  # (p99, its label's Text)
    for j, g in enumerate(groups):
        ys, picks = [], []
        for y, name in enumerate(names):
            if name in g:
                ys.append(y + ((len(groups) - 1) / 2 - j) * height)  # first group on top
                picks.append(best(g[name]))
        if not picks:
            continue
        bars = ax.barh(ys, [r["p99_ms"] for r in picks], height, color=[r["color"] for r in picks],
                       hatch=HATCHES[j % len(HATCHES)], edgecolor="white", linewidth=0)
        texts = [", ".join(t for t in (f"{ms_text(r['p99_ms'])} ms", r["effort"]) if t) + f", recall {recall_text(r)}"
                 for r in picks]
        labelled += zip((r["p99_ms"] for r in picks), ax.bar_label(bars, texts, fontsize=7, padding=3))
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.set_ylim(-0.6, len(names) - 0.4)
    log_axis(ax, "x")
    ax.set_xlabel(f"p99 ms, one client (log): best setting with recall >= {TARGET_RECALL}, else the most accurate")
    if len(groups) > 1:
        legend_right(ax, [Patch(facecolor="grey", edgecolor="white", hatch=HATCHES[j % len(HATCHES)],
                                        label=label) for j, label in enumerate(labels)])
    fit_labels(fig, ax, labelled)
    return fig, ax


def fit_labels(fig, ax, labelled):
    """Widens the log x axis of horizontal bars so each bar's label, `labelled` as (p99, Text),
    ends inside the axes: with the axes W pixels wide and the limits lo..hi, a bar ending at x
    takes the fraction log(x/lo) / log(hi/lo) of W, and its label (w pixels with its padding)
    fits when that fraction is <= 1 - w/W."""
    low = min(x for x, _ in labelled) / 1.5
    ax.set_xlim(low, max(x for x, _ in labelled))
    for _ in range(2):  # the layout, hence W, moves a little with the tick labels; once more settles it
        fig.canvas.draw()
        width = ax.get_window_extent().width
        renderer = fig.canvas.get_renderer()
        decades = 0.0
        for x, text in labelled:
            room = 1 - (text.get_window_extent(renderer).width + 12) / width  # 12 px: padding and a margin
            decades = max(decades, math.log10(x / low) / max(room, 0.2))  # 0.2: never squeeze bars to nothing
        ax.set_xlim(low, low * 10**decades)


def engines_p99(runs, title, out_dir):
    fig, ax = p99_bars([by_series(runs)], ["unfiltered"])
    save(fig, ax, f"p99 latency per series, one client, unfiltered\n{title}", out_dir, "engines_p99.png")


def filtered(runs, title, out_dir):
    """Series with filtered runs: unfiltered and per filter selectivity."""
    percents = sorted({r["filter_percent"] for r in runs if r["filter_percent"] is not None})
    names = {r["series"] for r in runs if r["filter_percent"] is not None}
    runs = [r for r in runs if r["series"] in names]
    groups = [by_series([r for r in runs if r["filter_percent"] is None])]
    groups += [by_series([r for r in runs if r["filter_percent"] == p]) for p in percents]
    fig, ax = p99_bars(groups, ["unfiltered"] + [f"filter: {p}% of rows" for p in percents])
    save(fig, ax, f"p99 latency with a filter, one client\n{title}", out_dir, "filtered.png")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out-dir", required=True, help="directory for the PNGs (created if missing)")
    p.add_argument("files", nargs="+", help="JSON results")
    args = p.parse_args()
    os.makedirs(args.out_dir, exist_ok=True)
    runs, title = load(args.files)
    unfiltered = [r for r in runs if r["filter_percent"] is None]
    recall_latency(unfiltered, title, args.out_dir)
    throughput_clients(unfiltered, title, args.out_dir)
    engines_p99(unfiltered, title, args.out_dir)
    if len(unfiltered) < len(runs):
        filtered(runs, title, args.out_dir)


if __name__ == "__main__":
    main()
