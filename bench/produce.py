#!/usr/bin/env python3
"""Produce throughput of a real Kafka client against `runnel serve`, acks=all.

With acks=all, runnel answers a produce only once an fsync covers its batches. A client
pipelines up to `max.in.flight.requests.per.connection` requests; runnel appends a
connection's next produce while the previous one waits for its fsync, so one fsync covers
several of them. This prints MB/s for 1 KiB records in ~16 KiB batches (librdkafka through
confluent-kafka) with 1 and with 5 requests in flight, per producer count, and the bytes per
fsync from runnel's /metrics.

Usage: python3 bench/produce.py [--runnel target/release/runnel] [--mb 256]
       [--dir target/bench-data] (must be a real disk, not tmpfs)
MB = 10^6 bytes.
"""

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

try:
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic
except ImportError:
    subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", "confluent-kafka"])
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic

RECORD_BYTES = 1024
BATCH_BYTES = 16384


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def metric(http, name):
    """Sum of a Prometheus metric's samples (by exact name) from runnel's /metrics."""
    text = urllib.request.urlopen(f"http://{http}/metrics", timeout=10).read().decode()
    total = 0.0
    for line in text.splitlines():
        m = re.match(rf"^{re.escape(name)}(?:{{[^}}]*}})? ([0-9.eE+-]+)$", line)
        if m:
            total += float(m.group(1))
    return total


def run_case(kafka, http, topic, producers, in_flight, total_bytes):
    """MB/s of `producers` producers together writing `total_bytes` to one partition."""
    per_producer = total_bytes // RECORD_BYTES // producers
    value = os.urandom(RECORD_BYTES)
    errors = []
    fsyncs_before = metric(http, "runnel_log_fsync_duration_seconds_count")

    def produce():
        p = Producer({
            "bootstrap.servers": kafka,
            "acks": "all",
            "linger.ms": 5,
            "batch.size": BATCH_BYTES,
            "max.in.flight.requests.per.connection": in_flight,
            "enable.idempotence": False,
            "compression.type": "none",
            "queue.buffering.max.kbytes": 64 * 1024,
        })

        def delivered(err, _msg):
            if err is not None:
                errors.append(err)

        for _ in range(per_producer):
            while True:
                try:
                    p.produce(topic, value, on_delivery=delivered)
                    break
                except BufferError:
                    p.poll(0.01)
            p.poll(0)
        p.flush(120)

    start = time.monotonic()
    threads = [threading.Thread(target=produce) for _ in range(producers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    secs = time.monotonic() - start
    if errors:
        raise SystemExit(f"{len(errors)} records not delivered, first: {errors[0]}")
    fsyncs = metric(http, "runnel_log_fsync_duration_seconds_count") - fsyncs_before
    written = per_producer * producers * RECORD_BYTES
    return written / secs / 1e6, written / max(fsyncs, 1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runnel", default="target/release/runnel")
    ap.add_argument("--mb", type=int, default=256, help="MB produced per case")
    ap.add_argument("--dir", default="target/bench-data")
    args = ap.parse_args()
    os.makedirs(args.dir, exist_ok=True)
    data = tempfile.mkdtemp(prefix="produce-", dir=args.dir)
    kafka, http = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    server = subprocess.Popen(
        [args.runnel, "serve", "--data-dir", data, "--kafka-listener", kafka, "--http-listener", http,
         "--log-level", "warn"])
    try:
        for _ in range(600):
            try:
                urllib.request.urlopen(f"http://{http}/healthz", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        else:
            raise SystemExit("runnel did not answer /healthz within 60 s")
        admin = AdminClient({"bootstrap.servers": kafka})
        print(f"runnel {args.runnel}, data in {data}; {args.mb} MB of {RECORD_BYTES} B records per case, "
              f"batch.size={BATCH_BYTES}, acks=all, linger.ms=5")
        print(f"{'producers':>9} {'in flight':>9} {'MB/s':>8} {'B/fsync':>10}")
        case = 0
        for producers in (1, 4):
            for in_flight in (1, 5):
                case += 1
                topic = f"produce-bench-{case}"
                admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
                mbps, per_fsync = run_case(kafka, http, topic, producers, in_flight, args.mb * 10**6)
                print(f"{producers:>9} {in_flight:>9} {mbps:>8.1f} {per_fsync:>10.0f}")
        del admin  # closed before the server stops, so it logs no lost connection
    finally:
        server.terminate()
        server.wait(30)
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
