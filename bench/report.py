"""Prints the JSON lines of a `make bench` run and the table of ratios (stdlib only).

Usage: python3 bench/report.py RESULTS.jsonl [--markdown]

The file holds the peers' JSON lines
  {"framework", "workload", "runs", "median_ms", "p95_ms", "throughput_per_s", "peak_rss_mb"}
and optionally {"meta": {...}} lines (date, load) written by mk/bench.mk.
For each workload: Baton's figure, each peer's, the ratio peer ÷ Baton (above 1: Baton is
faster), and Baton against the targets of the issue and of ../shared/peer-bench/README.md.
The figure is the median per run, or for the concurrent workloads the wall time
(runs ÷ throughput) and the peak RSS.
"""
import json
import sys

PEERS = [("langgraph", "LangGraph"), ("graph-flow", "graph-flow"), ("durare", "durare")]

# (workload, issue's ceiling, README goal); "graph-flow:chain10_sqlite" means graph-flow's
# figure for that workload in the same run. Values in ms (wall in s for concurrent rows).
TARGETS = {
    "chain10": (0.05, 0.005),
    "fanout8": (0.05, 0.02),
    "chain10_sqlite": (1.0, 0.3),
    "chain10_sqlite_full": (None, "graph-flow:chain10_sqlite"),
    "concurrent1000x10x50ms": (0.6, 0.51),
    "concurrent10000x10x50ms": (2.0, 0.55),
    "cold_start_one_step": (20.0, 5.0),
    # Issue 16: a direct message sent and taken by its receiver's next turn, in memory.
    "message_delivery": (0.02, None),
    # Issue 18: a recorded app-team run with real tools and sandbox; its orchestration (wall
    # time minus model and sandbox time) as a share of the run, and its replay from the log.
    "app_team_run": (None, None),
    "app_team_orchestration": ("2%", None),
    "app_team_replay": (1000.0, None),
}
RSS_TARGETS = {"concurrent10000x10x50ms": (300.0, 64.0)}

# Durability of the durable workloads (../shared/peer-bench/README.md): a ratio compares only
# figures of the same durability. "normal": WAL + synchronous=NORMAL (survives kill -9);
# "full": an fsync per commit (survives power loss). A peer's figure is shown in the row of its
# durability: LangGraph's and graph-flow's chain10_sqlite (FULL) in the chain10_sqlite_full row.
DURABILITY = {
    ("baton", "chain10_sqlite"): "normal",
    ("baton", "chain10_sqlite_full"): "full",
    ("langgraph", "chain10_sqlite"): "full",
    ("graph-flow", "chain10_sqlite"): "full",
    ("durare", "chain10_sqlite"): "normal",
}
DURABLE_ROWS = {"normal": "chain10_sqlite", "full": "chain10_sqlite_full"}


def peer_in_row(results, fam, w):
    """The peer's record shown in row `w`: for the durable rows, its figure of that row's
    durability (whatever the peer's workload was called), else its own figure for `w`."""
    if w in DURABLE_ROWS.values():
        want = DURABILITY.get(("baton", w))
        for (f, wl), rec in results.items():
            if f == fam and DURABILITY.get((f, wl)) == want:
                return rec
        return None
    return results.get((fam, w))
ORDER = list(TARGETS)


def family(framework):
    for key, _ in PEERS:
        if framework.startswith(key):
            return key
    return "baton" if framework == "baton" else framework


def is_concurrent(w):
    return w.startswith("concurrent")


def figure(rec):
    """The compared figure: wall seconds for concurrent workloads, else median ms."""
    if is_concurrent(rec["workload"]):
        return rec["runs"] / rec["throughput_per_s"] if rec["throughput_per_s"] else float("inf")
    return rec["median_ms"]


def fmt(rec):
    if rec is None:
        return "—"
    v = figure(rec)
    if "percent_of_run" in rec:
        return f"{v:.1f} ms ({rec['percent_of_run']:.2f} % of the run)"
    if "sandbox_ms" in rec:
        return f"{v / 1000:.2f} s (sandbox {rec['sandbox_ms'] / 1000:.2f} s, model {rec['model_ms']:.0f} ms)"
    if is_concurrent(rec["workload"]):
        return f"{v:.2f} s, {rec['peak_rss_mb']:.0f} MB"
    if v < 1:
        return f"{v * 1000:.1f} µs"
    if v < 1000:
        return f"{v:.2f} ms"
    return f"{v / 1000:.2f} s"


def fmt_value(w, v):
    if is_concurrent(w):
        return f"{v:.2f} s"
    return f"{v * 1000:.0f} µs" if v < 1 else f"{v:.2f} ms"


def ratio(base, other):
    if base is None or other is None:
        return "—"
    b, o = figure(base), figure(other)
    if not b:
        return "—"
    r = o / b
    return f"{r:.0f}×" if r >= 100 else f"{r:.1f}×" if r >= 10 else f"{r:.2f}×"


def verdict(w, rec, target, results):
    if target is None or rec is None:
        return "—"
    if isinstance(target, str) and target.endswith("%"):
        limit = float(target[:-1])
        ok = rec.get("percent_of_run", float("inf")) < limit
        return f"{'ok' if ok else 'MISSED'} (< {limit:g} % of the run)"
    if isinstance(target, str):
        fam, wl = target.split(":")
        peer = results.get((fam, wl))
        if peer is None:
            return "— (no peer figure)"
        target = figure(peer)
    ok = figure(rec) <= target
    text = f"{'ok' if ok else 'MISSED'} (≤ {fmt_value(w, target)})"
    return text


def rss_verdict(w, rec, idx):
    t = RSS_TARGETS.get(w)
    if t is None or rec is None:
        return ""
    ok = rec["peak_rss_mb"] <= t[idx]
    return f"; RSS {'ok' if ok else 'MISSED'} (≤ {t[idx]:.0f} MB)"


def main():
    if len(sys.argv) < 2:
        print(__doc__)
        return 2
    results, metas, lines = {}, [], []
    with open(sys.argv[1], encoding="utf-8") as f:
        for raw in f:
            raw = raw.strip()
            if not raw.startswith("{"):
                continue
            rec = json.loads(raw)
            if "meta" in rec:
                metas.append(rec["meta"])
                continue
            lines.append(raw)
            results[(family(rec["framework"]), rec["workload"])] = rec
    print("== JSON lines")
    for raw in lines:
        print(raw)
    for m in metas:
        print("== " + ", ".join(f"{k}: {v}" for k, v in m.items()))
    names = {f for f, _ in results}
    frameworks = {fam: next((r["framework"] for (f, _), r in results.items() if f == fam), label) for fam, label in PEERS}
    workloads = [w for w in ORDER if any((f, w) in results for f in names)]
    workloads += sorted({w for _, w in results} - set(workloads))
    header = ["workload", "baton"] + [frameworks[k] for k, _ in PEERS] + [f"÷ {label}" for _, label in PEERS] + ["issue target", "README goal"]
    rows = []
    for w in workloads:
        b = results.get(("baton", w))
        peers = [peer_in_row(results, k, w) for k, _ in PEERS]
        issue, goal = TARGETS.get(w, (None, None))
        rows.append(
            [w, fmt(b)]
            + [fmt(p) for p in peers]
            + [ratio(b, p) for p in peers]
            + [verdict(w, b, issue, results) + rss_verdict(w, b, 0), verdict(w, b, goal, results) + rss_verdict(w, b, 1)]
        )
    print()
    print("median per run (concurrent rows: wall = runs ÷ throughput, and peak RSS); ÷ peer = peer's figure ÷ Baton's (above 1: Baton is faster)")
    print("chain10_sqlite: synchronous NORMAL on both sides (survives kill -9); chain10_sqlite_full: an fsync per commit (survives power loss); a peer appears in the row of its own durability")
    if "--markdown" in sys.argv:
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
        for r in rows:
            print("| " + " | ".join(r) + " |")
    else:
        widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
        for r in [header] + rows:
            print("  ".join(str(c).ljust(widths[i]) for i, c in enumerate(r)).rstrip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
