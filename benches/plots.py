"""Plots of side-by-side search results: JSON files written by side_by_side.py or `kb bench search`
(the same `runs` schema), all runs treated alike. Run through side_by_side.sh:

    benches/side_by_side.sh plot --out-dir DIR a.json [b.json ...]

Writes into DIR:
- recall_latency.png:   recall@k vs p99 latency, a line per engine through its settings (unfiltered);
- throughput_clients.png: queries/s vs client count per engine, at its best setting;
- engines_p99.png:      p99 latency per engine at its best setting (unfiltered);
- filtered.png:         the same per filter selectivity, when there are filtered runs.
An engine's best setting is its fastest (lowest p99) with recall >= 0.95, else its most accurate.
An engine found in several files is told apart by the file's name.
"""

import argparse
import json
import os
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 (after choosing the backend)
from matplotlib.ticker import LogFormatter  # noqa: E402

TARGET_RECALL = 0.95
DPI = 100


def load(paths):
    """(runs, title): every run gets a `series` name, its engine's qualified by the file if needed,
    and a `color`, the same in every plot."""
    files = []
    for path in paths:
        with open(path, encoding="utf-8") as f:
            files.append((os.path.splitext(os.path.basename(path))[0], json.load(f)))
    files_of = defaultdict(set)
    for name, data in files:
        for run in data["runs"]:
            files_of[run["engine"]].add(name)
    runs, titles = [], []
    for name, data in files:
        for run in data["runs"]:
            series = run["engine"] if len(files_of[run["engine"]]) == 1 else f"{run['engine']} ({name})"
            runs.append({**run, "series": series})
        m = data.get("machine", {})
        title = f"{data['rows']:,} rows, k={data['k']}, {m.get('cpu', '?')} ({m.get('cores', '?')} cores)"
        if title not in titles:
            titles.append(title)
    colors = {s: f"C{i % 10}" for i, s in enumerate(sorted({r["series"] for r in runs}))}
    for run in runs:
        run["color"] = colors[run["series"]]
    return runs, "\n".join(titles)


def by_series(runs):
    groups = defaultdict(list)
    for run in runs:
        groups[run["series"]].append(run)
    return dict(sorted(groups.items()))


def recall(run):
    """A run's recall, -1 where it has none (kb writes null when it measured none)."""
    return -1 if run.get("recall") is None else run["recall"]


def recall_text(run):
    return "n/a" if recall(run) < 0 else f"{run['recall']:.3f}"


def best(runs):
    good = [r for r in runs if recall(r) >= TARGET_RECALL]
    if good:
        return min(good, key=lambda r: r["p99_ms"])
    return max(runs, key=lambda r: (recall(r), -r["p99_ms"]))


def varying(settings):
    """Per setting, its words that differ between the settings (e.g. `ef_search=64`)."""
    common = set.intersection(*(set(s.split()) for s in settings))
    return {s: " ".join(w for w in s.split() if w not in common) for s in settings}


class PlainLogFormatter(LogFormatter):
    """Labels the log ticks matplotlib would label, written 0.2, 5, 25000 (not 2x10^-1)."""

    def __call__(self, x, pos=None):
        return f"{x:g}" if super().__call__(x, pos) else ""


def log_y(ax):
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(PlainLogFormatter())
    ax.yaxis.set_minor_formatter(PlainLogFormatter(labelOnlyBase=False))
    ax.tick_params(axis="y", which="minor", labelsize=7)


def save(fig, ax, title, out_dir, name):
    ax.set_title(title, fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    path = os.path.join(out_dir, name)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    print(path)


def recall_latency(runs, title, out_dir):
    fig, ax = plt.subplots(figsize=(8, 5))
    for series, group in by_series([r for r in runs if recall(r) >= 0]).items():
        group.sort(key=lambda r: (r["recall"], r["p99_ms"]))
        ax.plot([r["recall"] for r in group], [r["p99_ms"] for r in group], marker="o", label=series,
                color=group[0]["color"])
        labels = varying([r["setting"] for r in group]) if len(group) > 1 else {}
        for r in group:
            if labels.get(r["setting"]):
                ax.annotate(labels[r["setting"]], (r["recall"], r["p99_ms"]), fontsize=7,
                            xytext=(4, -10), textcoords="offset points")
    ax.axvline(TARGET_RECALL, color="grey", linestyle="--", linewidth=1)
    log_y(ax)
    ax.set_xlabel("recall@k (vs exact)")
    ax.set_ylabel("p99 latency, one client (ms, log)")
    ax.legend(fontsize=8)
    save(fig, ax, f"Recall vs p99 latency, unfiltered\n{title}", out_dir, "recall_latency.png")


def throughput_clients(runs, title, out_dir):
    fig, ax = plt.subplots(figsize=(8, 5))
    clients = set()
    for series, group in by_series([r for r in runs if r.get("qps")]).items():
        r = best(group)
        points = sorted((int(c), q) for c, q in r["qps"].items())
        clients.update(c for c, _ in points)
        ax.plot([c for c, _ in points], [q for _, q in points], marker="o", color=r["color"],
                label=f"{series}{': ' if r['setting'] else ''}{r['setting']} (recall {recall_text(r)})")
    ax.set_xscale("log", base=2)
    log_y(ax)
    ax.set_xticks(sorted(clients), [str(c) for c in sorted(clients)])
    ax.set_xlabel("concurrent clients (one query per call each)")
    ax.set_ylabel("queries/s (log)")
    ax.legend(fontsize=7)
    save(fig, ax, f"Throughput at each engine's best setting (recall >= {TARGET_RECALL} if reached)\n{title}",
         out_dir, "throughput_clients.png")


def p99_bars(ax, groups, labels):
    """Bars of best-setting p99 per series, grouped; `groups` is [{series: runs}] per label."""
    names = sorted({s for g in groups for s in g})
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        xs, picks = [], []
        for x, g in enumerate(groups):
            if name in g:
                xs.append(x + (i - (len(names) - 1) / 2) * width)
                picks.append(best(g[name]))
        bars = ax.bar(xs, [r["p99_ms"] for r in picks], width, label=name, color=picks[0]["color"])
        ax.bar_label(bars, [f"{r['p99_ms']:.3g} ms\nr={recall_text(r)}" for r in picks], fontsize=7)
    ax.set_xticks(range(len(labels)), labels)
    log_y(ax)
    ax.margins(y=0.2)
    ax.set_ylabel(f"p99 ms (log), best setting with recall >= {TARGET_RECALL},\nelse the most accurate (r = its recall)",
                  fontsize=8)
    ax.legend(fontsize=8)


def engines_p99(runs, title, out_dir):
    fig, ax = plt.subplots(figsize=(8, 5))
    p99_bars(ax, [by_series(runs)], ["unfiltered"])
    save(fig, ax, f"p99 latency per engine, one client, unfiltered\n{title}", out_dir, "engines_p99.png")


def filtered(runs, title, out_dir):
    percents = sorted({r["filter_percent"] for r in runs if r["filter_percent"] is not None})
    groups = [by_series([r for r in runs if r["filter_percent"] is None])]
    groups += [by_series([r for r in runs if r["filter_percent"] == p]) for p in percents]
    fig, ax = plt.subplots(figsize=(8, 5))
    p99_bars(ax, groups, ["unfiltered"] + [f"{p}% of rows" for p in percents])
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
