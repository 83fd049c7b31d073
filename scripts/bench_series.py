#!/usr/bin/env python3
"""Runs `seckill bench --baseline` several times, each against a fresh release server on a fresh SQLite file, and
prints every run and the medians.

On a shared 2-core machine one run's purchase/healthz ratio moves by ±15% from run to run (the two phases meet
different moments of the host's load), so a single run says little; the median of several does. Each run gets a
new server and database so that no run measures the previous one's orders, snapshot or WAL.

    scripts/bench_series.py --runs 9                  # every request reserves (100,000 users, 100,000 units)
    scripts/bench_series.py --runs 5 --stock 10000    # 100,000 users against 10,000 units
"""

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORRECTNESS = ("oversold", "unsold", "lost", "duplicate", "phantom")


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_ready(url, server, seconds=60):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the server exited with {server.returncode} before it was ready")
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=1) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"the server was not ready within {seconds} s")


def one_run(binary, args):
    """One fresh server, one bench; the bench's JSON report."""
    with tempfile.TemporaryDirectory(prefix="seckill-bench-") as folder:
        folder = Path(folder)
        url = f"http://127.0.0.1:{free_port()}"
        env = dict(
            os.environ,
            SECKILL__SERVER__LISTEN=url.removeprefix("http://"),
            SECKILL__DATABASE__URL=f"sqlite://{folder / 'seckill.db'}",
            SECKILL__LOG__LEVEL="warn",
            # Secrets of this run's own; the connection timeouts and caps stay at their defaults.
            SECKILL__SECRETS__DIR=str(folder / "secrets"),
            # The rate limits stay on, set high enough not to refuse one client's 100,000 purchases.
            SECKILL__LIMITS__IP__PER_SECOND="10000000",
            SECKILL__LIMITS__IP__BURST="10000000",
        )
        with open(folder / "server.log", "wb") as log:
            server = subprocess.Popen([binary, "serve"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_ready(url, server)
            report = folder / "report.json"
            bench = [binary, "bench", "--url", url, "--baseline", "--json", str(report),
                     "--admin-password-file", str(folder / "secrets" / "admin-password"),
                     "--users", str(args.users), "--stock", str(args.stock), "--concurrency", str(args.concurrency)]
            if args.stock_subscribers:
                bench += ["--stock-subscribers", str(args.stock_subscribers)]
            finished = subprocess.run(bench, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            if not report.exists():
                raise RuntimeError(f"the bench wrote no report: {finished.stderr.decode(errors='replace')[-2000:]}")
            return json.loads(report.read_text())
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=60)
            except subprocess.TimeoutExpired:
                server.kill()


def row(report):
    baseline = report.get("baseline") or {}
    return {
        "purchases_per_s": report["throughput_rps"],
        "healthz_per_s": baseline.get("healthz_rps"),
        "ratio": baseline.get("purchase_to_healthz_ratio"),
        "p50_ms": report["latency_ms"]["p50"],
        "p99_ms": report["latency_ms"]["p99"],
        "correctness": report["correctness"],
        "stock_feed": report.get("stock_feed"),
    }


def feed_line(feed):
    if not feed:
        return ""
    return (f"  feed: {feed['subscribers']} subscribers, rises={feed['rises']}, all saw the end="
            f"{feed['all_reached_final']}, lag p50 {feed['final_lag_ms']['p50']:.0f} ms max {feed['final_lag_ms']['max']:.0f} ms")


def spread(values):
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def summarize(rows):
    summary = {key: spread([r[key] for r in rows]) for key in ("purchases_per_s", "healthz_per_s", "ratio", "p50_ms", "p99_ms")}
    summary["runs"] = len(rows)
    summary["correctness"] = {key: sum(r["correctness"][key] for r in rows) for key in CORRECTNESS}
    summary["invariant_held_every_run"] = all(r["correctness"]["invariant_holds"] for r in rows)
    return summary


def correct(summary):
    return summary["invariant_held_every_run"] and not any(summary["correctness"].values())


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--stock", type=int, default=100_000)
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--stock-subscribers", type=int, default=0,
                        help="clients watching the sale on /ws/stock during each run")
    parser.add_argument("--binary", type=Path, help="a seckill binary to measure instead of building this checkout")
    parser.add_argument("--json", type=Path, help="also write every run and the summary here")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")

    binary = args.binary
    if binary is None:
        subprocess.run(["cargo", "build", "--release", "--locked"], cwd=ROOT, check=True)
        binary = ROOT / "target" / "release" / "seckill"

    rows = []
    print(f"{'run':>4} {'purchases/s':>12} {'healthz/s':>10} {'ratio':>6} {'p50 ms':>7} {'p99 ms':>7}  correctness")
    for run in range(1, args.runs + 1):
        r = row(one_run(binary, args))
        rows.append(r)
        counts = " ".join(f"{key}={r['correctness'][key]}" for key in CORRECTNESS)
        print(f"{run:>4} {r['purchases_per_s']:>12,.0f} {r['healthz_per_s']:>10,.0f} {r['ratio']:>6.3f} "
              f"{r['p50_ms']:>7.2f} {r['p99_ms']:>7.2f}  {counts} invariant={r['correctness']['invariant_holds']}"
              + feed_line(r["stock_feed"]), flush=True)

    summary = summarize(rows)
    print("\nmedian (min-max) over", len(rows), "runs:")
    for key in ("purchases_per_s", "healthz_per_s", "ratio", "p50_ms", "p99_ms"):
        s = summary[key]
        print(f"  {key:<16} {s['median']:>12,.3f}  ({s['min']:,.3f} - {s['max']:,.3f})")
    print("  correctness     ", summary["correctness"], "invariant held every run:", summary["invariant_held_every_run"])
    if args.json:
        args.json.write_text(json.dumps({"runs": rows, "summary": summary}, indent=2))
    return 0 if correct(summary) else 1


if __name__ == "__main__":
    sys.exit(main())
