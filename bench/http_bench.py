"""Baton's HTTP API under load, each figure beside its floor measured in the same run.

Starts `baton serve` (release binary, a temp database, rate limits off) on loopback, creates a
run, then drives with wrk (Debian's `wrk`):
  - GET /api/v1/runs/{id}: requests/s and p99 latency, beside a bare axum route answering the
    same bytes (`baton bench --http-floor FILE`): what axum alone costs on this machine;
  - POST /api/v1/runs (an inline one-step echo workflow): run starts/s;
  - SSE fan-out: 1,000 subscribers on one run's GET /api/v1/runs/{id}/stream (the run waits on
    a human step while they connect), the time from the approval (its first new event) to the
    last subscriber receiving the event that ends the run. No floor for this one yet.
Prints JSON lines like the other benchmarks (`framework` baton / axum-floor).

Usage: python3 bench/http_bench.py [--baton target/release/baton] [--seconds 10] [--connections 64]
"""

import argparse
import asyncio
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
import urllib.request

ECHO = 'version: 1\nname: echo\nsteps:\n  - { id: hello, tool: echo, with: { text: hi } }\n'
ASK = ('version: 1\nname: ask\nsteps:\n  - { id: first, tool: echo, with: { text: one } }\n'
       '  - id: ok\n    human: { prompt: Ship it? }\n  - { id: last, tool: echo, with: { text: shipped } }\n')


def start(cmd, ready):
    """Starts `cmd`; returns (process, the stderr line matching `ready`, stdout lines read)."""
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = []
    while True:
        line = p.stderr.readline()
        if not line:
            raise SystemExit(f"{cmd[0]} stopped before it was ready")
        lines.append(line)
        m = re.search(ready, line)
        if m:
            return p, m, lines


def wrk(url, key, seconds, connections, script=None):
    cmd = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency"]
    if key:
        cmd += ["-H", f"Authorization: Bearer {key}"]
    if script:
        cmd += ["-s", script]
    out = subprocess.run(cmd + [url], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p99.group(2)]
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return rps, float(p99.group(1)) * scale, int(non2xx.group(1)) if non2xx else 0


def line(framework, workload, rps, p99, errors):
    print(json.dumps({"framework": framework, "workload": workload, "throughput_per_s": round(rps, 1),
                      "p99_ms": round(p99, 3), "non_2xx": errors}), flush=True)


def post(addr, key, path, body):
    req = urllib.request.Request(f"http://{addr}{path}", method="POST", data=json.dumps(body).encode(),
                                 headers={"Authorization": f"Bearer {key}",
                                          "Content-Type": "application/json"})
    return json.load(urllib.request.urlopen(req))


async def subscriber(addr, key, run, waiting, ended):
    host, port = addr.rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(f"GET /api/v1/runs/{run}/stream HTTP/1.1\r\nHost: {addr}\r\n"
                 f"Authorization: Bearer {key}\r\nAccept: text/event-stream\r\n\r\n".encode())
    await writer.drain()
    seen, signalled = b"", False
    while True:
        chunk = await reader.read(65536)
        if not chunk:
            raise SystemExit("an SSE stream ended before the run did")
        seen += chunk
        if not signalled and b"event: human_requested" in seen:
            signalled = True
            waiting.release()
        if b"event: run_succeeded" in seen:
            ended.append(time.monotonic())
            writer.close()
            return


async def sse_fan_out(addr, key, n):
    """Seconds from the approval to the last of `n` subscribers receiving the end event."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < n + 256:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, n + 256), hard))
    run = post(addr, key, "/api/v1/runs", {"source": ASK})["id"]
    waiting, ended = asyncio.Semaphore(0), []
    tasks = [asyncio.create_task(subscriber(addr, key, run, waiting, ended)) for _ in range(n)]
    for _ in range(n):
        await waiting.acquire()
    t0 = time.monotonic()
    await asyncio.to_thread(post, addr, key, f"/api/v1/runs/{run}/approve", {})
    await asyncio.gather(*tasks)
    return max(ended) - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--baton", default=os.environ.get("BATON", "target/release/baton"))
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--subscribers", type=int, default=1000)
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="baton-http-bench-")
    serve, m, _ = start([a.baton, "serve", "--addr", "127.0.0.1:0", "--rate-limit", "off",
                         "--db", os.path.join(tmp, "b.db")], r"baton serving on http://(\S+)")
    addr = m.group(1)
    key = serve.stdout.readline().strip()
    try:
        req = urllib.request.Request(f"http://{addr}/api/v1/runs", method="POST",
                                     data=json.dumps({"source": ECHO}).encode(),
                                     headers={"Authorization": f"Bearer {key}",
                                              "Content-Type": "application/json"})
        run = json.load(urllib.request.urlopen(req))["id"]
        time.sleep(0.5)
        get = urllib.request.Request(f"http://{addr}/api/v1/runs/{run}",
                                     headers={"Authorization": f"Bearer {key}"})
        body = urllib.request.urlopen(get).read()
        floor_file = os.path.join(tmp, "body.json")
        with open(floor_file, "wb") as f:
            f.write(body)
        floor, fm, _ = start([a.baton, "bench", "--http-floor", floor_file],
                             r"floor listening on http://(\S+)")
        try:
            rps, p99, err = wrk(f"http://{fm.group(1)}/", None, a.seconds, a.connections)
            line("axum-floor", "get_run", rps, p99, err)
        finally:
            floor.kill()
        rps, p99, err = wrk(f"http://{addr}/api/v1/runs/{run}", key, a.seconds, a.connections)
        line("baton", "get_run", rps, p99, err)
        script = os.path.join(tmp, "post.lua")
        with open(script, "w") as f:
            f.write('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
                    f"wrk.body = {json.dumps(json.dumps({'source': ECHO}))}\n")
        rps, p99, err = wrk(f"http://{addr}/api/v1/runs", key, a.seconds, a.connections, script)
        line("baton", "start_run", rps, p99, err)
        secs = asyncio.run(sse_fan_out(addr, key, a.subscribers))
        print(json.dumps({"framework": "baton", "workload": "sse_fan_out", "subscribers": a.subscribers,
                          "first_event_to_last_end_ms": round(secs * 1000, 1)}), flush=True)
    finally:
        serve.kill()


if __name__ == "__main__":
    sys.exit(main())
