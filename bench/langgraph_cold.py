"""LangGraph's cold start, for side-by-side comparison with `baton bench w5`.

Times a fresh `python -c` that imports langgraph, builds a one-node graph (the peers' fake
model: "ok:" + prompt[:8]) and invokes it once; prints the peers' JSON line with the median
of --runs runs (after --warmup untimed ones). peak_rss_mb is the largest child's peak RSS.

Usage: python langgraph_cold.py [--runs 20] [--warmup 1]   (with the peers' virtualenv python)
"""
import argparse, json, resource, statistics, subprocess, sys, time

CHILD = """
import operator
from typing import Annotated, TypedDict
from langgraph.graph import END, START, StateGraph

class State(TypedDict):
    log: Annotated[list, operator.add]

def n0(state):
    prompt = "step0"
    return {"log": ["ok:" + prompt[:8]]}

g = StateGraph(State)
g.add_node("n0", n0)
g.add_edge(START, "n0")
g.add_edge("n0", END)
assert g.compile().invoke({"log": []})["log"] == ["ok:step0"]
"""


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--warmup", type=int, default=1)
    a = p.parse_args()
    times = []
    for i in range(a.warmup + a.runs):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", CHILD], check=True)
        if i >= a.warmup:
            times.append((time.perf_counter() - t) * 1000)
    times.sort()
    print(json.dumps({
        "framework": "langgraph",
        "workload": "cold_start_one_step",
        "runs": len(times),
        "median_ms": round(statistics.median(times), 4),
        "p95_ms": round(times[int(0.95 * (len(times) - 1))], 4),
        "throughput_per_s": round(1000 / statistics.median(times), 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1),
    }), flush=True)


if __name__ == "__main__":
    main()
