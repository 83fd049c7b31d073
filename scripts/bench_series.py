#!/usr/bin/env python3
"""Runs `seckill bench --baseline` several times, each against a fresh release server on fresh backends, and
prints every run and the medians.

On a shared 2-core machine one run's purchase/healthz ratio moves by ±15% from run to run (the two phases meet
different moments of the host's load), so a single run says little; the median of several does. Each run gets a
new server and fresh backends so that no run measures the previous one's orders, snapshot or WAL: on the embedded
default a new SQLite file; on the production backends (`--backends production`: config/production.toml, so
PostgreSQL, the Kafka journal and Redis snapshots) a new PostgreSQL database (dropped afterwards), a Kafka topic and
consumer group and a Redis key prefix of the run's own. Latencies and throughput are also given as ratios to the
/healthz baseline of the same run.

    scripts/bench_series.py --runs 9                  # every request reserves (100,000 users, 100,000 units)
    scripts/bench_series.py --runs 5 --stock 10000    # 100,000 users against 10,000 units
    scripts/bench_series.py --runs 3 --report-dir reports/embedded          # and each run's HTML and JSON report
    scripts/bench_series.py --runs 3 --backends production --report-dir reports/production
"""

import argparse
import base64
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
import uuid
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORRECTNESS = ("oversold", "unsold", "lost", "duplicate", "phantom")
FIGURES = ("purchases_per_s", "healthz_per_s", "ratio", "p50_ms", "p50_vs_healthz", "p99_ms", "p99_vs_healthz",
           "selling_s", "reserving_per_s", "reserving_vs_healthz")


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


def secret():
    return base64.b64encode(os.urandom(32)).decode()


def psql(admin_url, statement):
    subprocess.run(["psql", "--quiet", "--no-psqlrc", admin_url, "-c", statement], check=True,
                   stdout=subprocess.DEVNULL)


@contextmanager
def embedded(folder, args):
    """The embedded default: a SQLite file and a secrets folder of the run's own; the admin's password is the one
    the service draws there."""
    yield ([], {"SECKILL__DATABASE__URL": f"sqlite://{folder / 'seckill.db'}",
                "SECKILL__SECRETS__DIR": str(folder / "secrets")},
           ["--admin-password-file", str(folder / "secrets" / "admin-password")])


@contextmanager
def production(folder, args):
    """config/production.toml's backends: a fresh PostgreSQL database (dropped afterwards), a Kafka topic and group
    and a Redis key prefix nobody else uses, and the secrets production will not draw itself."""
    own = f"seckill_bench_{uuid.uuid4().hex}"
    psql(args.postgres, f"CREATE DATABASE {own}")
    try:
        database = urllib.parse.urlsplit(args.postgres)._replace(path=f"/{own}").geturl()
        password = secret()
        env = {
            "SECKILL__DATABASE__URL": database,
            "SECKILL__JOURNAL__KAFKA__BROKERS": args.kafka_brokers,
            "SECKILL__JOURNAL__KAFKA__TOPIC": own,
            "SECKILL__JOURNAL__KAFKA__GROUP": own,
            "SECKILL__SNAPSHOTS__REDIS_URL": args.redis,
            "SECKILL__SNAPSHOTS__REDIS_PREFIX": own,
            "SECKILL__SECRETS__DIR": str(folder / "secrets"),
            "SECKILL__AUTH__JWT_SECRET": secret(),
            "SECKILL__PAYMENTS__WEBHOOK_SECRET": secret(),
            "SECKILL__ADMIN__PASSWORD": password,
            "SECKILL_BENCH_ADMIN_PASSWORD": password,
        }
        yield ["--config", str(ROOT / "config" / "production.toml")], env, []
    finally:
        psql(args.postgres, f"DROP DATABASE IF EXISTS {own} WITH (FORCE)")


BACKENDS = {"embedded": embedded, "production": production}


def one_run(binary, args, run, label):
    """One fresh server on fresh backends, one bench; the bench's JSON report."""
    with tempfile.TemporaryDirectory(prefix="seckill-bench-") as folder:
        folder = Path(folder)
        url = f"http://127.0.0.1:{free_port()}"
        with BACKENDS[args.backends](folder, args) as (config, backend_env, credentials):
            env = dict(
                os.environ,
                SECKILL__SERVER__LISTEN=url.removeprefix("http://"),
                SECKILL__LOG__LEVEL="warn",
                # The rate limits stay on, set high enough not to refuse one client's 100,000 purchases; the
                # connection timeouts and caps stay at their defaults.
                SECKILL__LIMITS__IP__PER_SECOND="10000000",
                SECKILL__LIMITS__IP__BURST="10000000",
                **backend_env,
            )
            with open(folder / "server.log", "wb") as log:
                server = subprocess.Popen([binary, *config, "serve"], cwd=ROOT, env=env, stdout=log,
                                          stderr=subprocess.STDOUT)
            try:
                wait_ready(url, server)
                report = folder / "report.json"
                bench = [binary, "bench", "--url", url, "--baseline", "--json", str(report), *credentials,
                         "--label", label, "--users", str(args.users), "--stock", str(args.stock),
                         "--concurrency", str(args.concurrency)]
                if args.stock_subscribers:
                    bench += ["--stock-subscribers", str(args.stock_subscribers)]
                if args.report_dir:
                    bench += ["--report", str(args.report_dir / f"run-{run}.html")]
                finished = subprocess.run(bench, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                if not report.exists():
                    raise RuntimeError(f"the bench wrote no report: {finished.stderr.decode(errors='replace')[-2000:]}")
                if args.report_dir:
                    shutil.copy(report, args.report_dir / f"run-{run}.json")
                return json.loads(report.read_text())
            finally:
                server.send_signal(signal.SIGTERM)
                try:
                    server.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    server.kill()


def ratio(part, whole):
    return part / whole if part is not None and whole else None


def selling(report):
    """From the purchases' timeline: how long the sale took to reserve what it sold (to the end of the last interval
    with a 2xx), and how many reservations a second it made until then. With fewer units than buyers the rest of the
    phase is the sold-out answer, a different (and cheaper) path, which the phase's average mixes in."""
    points = report["timeline"]["points"]
    reserving = [point for point in points if point["succeeded"]]
    if not reserving:
        return None, None
    seconds = reserving[-1]["start_secs"] + reserving[-1]["secs"]
    return seconds, sum(point["succeeded"] for point in reserving) / seconds


def row(report):
    baseline = report.get("baseline") or {}
    healthz_latency = baseline.get("healthz_latency_ms") or {}
    latency = report["latency_ms"]
    selling_s, reserving_per_s = selling(report)
    return {
        "purchases_per_s": report["throughput_rps"],
        "healthz_per_s": baseline.get("healthz_rps"),
        "ratio": baseline.get("purchase_to_healthz_ratio"),
        "p50_ms": latency["p50"],
        "p50_vs_healthz": ratio(latency["p50"], healthz_latency.get("p50")),
        "p99_ms": latency["p99"],
        "p99_vs_healthz": ratio(latency["p99"], healthz_latency.get("p99")),
        "selling_s": selling_s,
        "reserving_per_s": reserving_per_s,
        "reserving_vs_healthz": ratio(reserving_per_s, baseline.get("healthz_rps")),
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
    summary = {key: spread([r[key] for r in rows]) for key in FIGURES}
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
    parser.add_argument("--report-dir", type=Path,
                        help="write each run's HTML report (run-N.html) and JSON report (run-N.json) into this folder")
    parser.add_argument("--backends", choices=sorted(BACKENDS), default="embedded",
                        help="embedded: a SQLite file (the default); production: config/production.toml, so "
                             "PostgreSQL, the Kafka journal and Redis snapshots (builds with --features kafka)")
    parser.add_argument("--postgres", default="postgres://postgres@127.0.0.1:5432/postgres",
                        help="production: where to create (and drop) each run's database")
    parser.add_argument("--kafka-brokers", default="127.0.0.1:9092", help="production: the Kafka-protocol broker")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379", help="production: the Redis for snapshots")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    if args.report_dir:
        # The bench runs from the checkout's root; the folder is named from where this script was started.
        args.report_dir = args.report_dir.resolve()
        args.report_dir.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory(prefix="seckill-bench-binary-") as binaries:
        measured = f"binary {args.binary}" if args.binary else describe_checkout()
        binary = args.binary or build(args.backends, Path(binaries))
        label = f"{args.backends} backends, {measured}, {socket.gethostname()} ({os.cpu_count()} cores)"
        print(label)
        rows = []
        print(f"{'run':>4} {'purchases/s':>12} {'healthz/s':>10} {'ratio':>6} {'p50 ms':>7} {'x hz':>5} "
              f"{'p99 ms':>7} {'x hz':>5}  correctness")
        for run in range(1, args.runs + 1):
            r = row(one_run(binary, args, run, label))
            rows.append(r)
            counts = " ".join(f"{key}={r['correctness'][key]}" for key in CORRECTNESS)
            print(f"{run:>4} {r['purchases_per_s']:>12,.0f} {r['healthz_per_s']:>10,.0f} {r['ratio']:>6.3f} "
                  f"{r['p50_ms']:>7.2f} {r['p50_vs_healthz']:>5.1f} {r['p99_ms']:>7.2f} {r['p99_vs_healthz']:>5.1f}  "
                  f"{counts} invariant={r['correctness']['invariant_holds']}" + feed_line(r["stock_feed"]), flush=True)

    summary = summarize(rows)
    print("\nmedian (min-max) over", len(rows), "runs:")
    for key in FIGURES:
        s = summary[key]
        print(f"  {key:<16} {s['median']:>12,.3f}  ({s['min']:,.3f} - {s['max']:,.3f})")
    print("  correctness     ", summary["correctness"], "invariant held every run:", summary["invariant_held_every_run"])
    if args.json:
        args.json.write_text(json.dumps({"label": label, "runs": rows, "summary": summary}, indent=2))
    return 0 if correct(summary) else 1


def build(backends, folder):
    """Builds the release binary (with the Kafka journal for production) and copies it out of the target folder,
    so that a build started meanwhile (another checkout sharing CARGO_TARGET_DIR) cannot replace it mid-series."""
    command = ["cargo", "build", "--release", "--locked"] + (["--features", "kafka"] if backends == "production" else [])
    subprocess.run(command, cwd=ROOT, check=True)
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    if not target.is_absolute():
        target = ROOT / target
    return shutil.copy2(target / "release" / "seckill", folder / "seckill")


def describe_checkout():
    """The commit measured, and whether the checkout had changes beside it."""
    try:
        return "commit " + subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT, check=True,
                                          capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "commit unknown"


if __name__ == "__main__":
    sys.exit(main())
