"""runnel's HTTP API against off-the-shelf tools: schemathesis fuzzes every operation of
`/openapi.json`, and `/metrics` is read with the Prometheus client's own text parser while
confluent-kafka produces and consumes.

schemathesis runs as its `st` CLI with `--checks all` except `positive_data_acceptance`, which
expects every schema-valid request to succeed. That heuristic contradicts documented behaviour the
schema cannot express: internal topics (`__consumer_offsets`) are read-only (422), topic configs
must be Kafka config names with valid values (422), `offset` and `timestamp` exclude each other
(400), and a topic that exists already is a conflict (409). Every such answer is declared in the
document, and the response checks (no 5xx, declared status codes, content types, headers and
schemas) and `negative_data_rejection` all run. Examples per operation are bounded so the run
takes well under a minute.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request

from confluent_kafka import Consumer, Producer
from prometheus_client.parser import text_string_to_metric_families

from common import DEADLINE_S, unique
from harness import target_dir, wait_until

SCHEMATHESIS_MAX_EXAMPLES = 25
SCHEMATHESIS_TIMEOUT_S = 240


def http(runnel, method: str, path: str, body: dict | None = None) -> tuple[int, bytes]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(runnel.http_url + path, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def metrics(runnel) -> dict[tuple[str, tuple], float]:
    """Every sample of /metrics, parsed by prometheus_client: (name, sorted labels) -> value."""
    status, body = http(runnel, "GET", "/metrics")
    assert status == 200, body
    samples = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def test_healthz_and_openapi(runnel):
    status, body = http(runnel, "GET", "/healthz")
    assert (status, json.loads(body)) == (200, {"status": "ready"})
    status, body = http(runnel, "GET", "/openapi.json")
    assert status == 200
    assert json.loads(body)["openapi"].startswith("3.")


def test_schemathesis_finds_no_server_error_and_no_schema_violation(runnel):
    st = shutil.which("st") or os.path.join(os.path.dirname(sys.executable), "st")
    assert os.path.exists(st), "schemathesis is not installed: bash tests/compat/install.sh"
    report_dir = target_dir() / "compat" / "schemathesis"
    report_dir.mkdir(parents=True, exist_ok=True)
    cmd = [
        st, "run", f"{runnel.http_url}/openapi.json",
        "--checks", "all",
        "--exclude-checks", "positive_data_acceptance",
        "--max-examples", str(SCHEMATHESIS_MAX_EXAMPLES),
        "--workers", "1",  # 2 threads trip a CPython 3.11 ast.parse race inside hypothesis
        "--seed", "20261126",
        # Creating a topic of 10,000 partitions (the most the schema allows) takes ~20 s in a debug build.
        "--request-timeout", "120",
        "--no-color",
        "--report", "junit", "--report-dir", str(report_dir),
    ]
    here = os.path.dirname(os.path.abspath(__file__))
    env = dict(os.environ, SCHEMATHESIS_HOOKS="schemathesis_hooks",
               PYTHONPATH=os.pathsep.join(filter(None, [here, os.environ.get("PYTHONPATH")])))
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=SCHEMATHESIS_TIMEOUT_S, cwd=report_dir,
                          env=env)
    output = done.stdout + done.stderr
    assert "Schema validation skipped" not in output, output[-5000:]
    assert done.returncode == 0, f"schemathesis found problems ({' '.join(cmd)}):\n{output[-20000:]}"
    # The server is still healthy after the fuzzing.
    assert http(runnel, "GET", "/healthz")[0] == 200


def test_metrics_parse_and_count_kafka_traffic(runnel):
    topic = unique("metered")
    status, body = http(runnel, "POST", "/v1/topics", {"name": topic, "partitions": 2})
    assert status == 201, body
    before = metrics(runnel)
    families = {f.name: f.type for f in text_string_to_metric_families(http(runnel, "GET", "/metrics")[1].decode())}
    assert families["runnel_request_duration_seconds"] == "histogram"
    assert families["runnel_log_fsync_duration_seconds"] == "histogram"
    assert families["runnel_topic_records_in"] == "counter"
    assert families["runnel_consumer_group_lag"] == "gauge"

    n = 200
    producer = Producer({"bootstrap.servers": runnel.bootstrap, "acks": "all"})
    for i in range(n):
        producer.produce(topic, key=f"k{i}".encode(), value=f"value {i}".encode())
    assert producer.flush(30) == 0

    group = unique("metered-group")
    consumer = Consumer({
        "bootstrap.servers": runnel.bootstrap,
        "group.id": group,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    })
    consumer.subscribe([topic])
    got = 0
    try:
        def consumed_all():
            nonlocal got
            for m in consumer.consume(num_messages=500, timeout=1.0):
                assert m.error() is None, m.error()
                got += 1
            return got >= n
        wait_until(consumed_all, DEADLINE_S, lambda: f"{got} of {n} records consumed")
        # Commit everything consumed: the group has no lag yet.
        consumer.commit(asynchronous=False)
    finally:
        consumer.close()

    after = metrics(runnel)
    label = (("topic", topic),)
    assert before.get(("runnel_topic_records_in_total", label), 0) == 0
    assert after[("runnel_topic_records_in_total", label)] == n
    assert after[("runnel_topic_bytes_in_total", label)] > 0
    assert after[("runnel_topic_records_out_total", label)] >= n
    assert after[("runnel_topic_bytes_out_total", label)] > 0
    for api in ("Produce", "Fetch", "JoinGroup", "OffsetCommit"):
        key = ("runnel_request_duration_seconds_count", (("api", api),))
        assert after.get(key, 0) > before.get(key, 0), api
    fsyncs = ("runnel_log_fsync_duration_seconds_count", ())
    assert after[fsyncs] > before[fsyncs]
    assert after[("runnel_partitions", ())] >= 3
    # Everything consumed was committed: no lag on either partition.
    lags = {k: v for k, v in after.items() if k[0] == "runnel_consumer_group_lag" and ("group", group) in k[1]}
    assert len(lags) == 2 and all(v == 0 for v in lags.values()), lags

    # More records: the lag follows the high watermark, and the counters move again.
    producer = Producer({"bootstrap.servers": runnel.bootstrap, "acks": "all"})
    for i in range(10):
        producer.produce(topic, value=b"late", partition=0)
    assert producer.flush(30) == 0
    later = metrics(runnel)
    assert later[("runnel_topic_records_in_total", label)] == n + 10
    lag0 = ("runnel_consumer_group_lag", (("group", group), ("partition", "0"), ("topic", topic)))
    assert later[lag0] == 10
    status, body = http(runnel, "GET", f"/v1/groups/{group}")
    assert status == 200, body
    assert json.loads(body)["lag"] == 10
