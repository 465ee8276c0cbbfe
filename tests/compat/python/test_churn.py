"""Consumer-group churn (issue 4, acceptance 2).

Six consumer processes (churn_consumer.py, confluent-kafka) join, leave gracefully (SIGTERM) and are
killed (SIGKILL) at random for CHURN_SECONDS while a producer writes with acks=all. An observer
polls the group's committed offsets throughout. At the end the group drains to the log end, and:

- every acknowledged record was consumed, with the value the producer sent;
- committed offsets never went backwards (as seen by the observer and in each member's log);
- a record consumed more than once was, every time but the last, consumed by a member that was then
  SIGKILLed, at or after that member's last commit of the partition (what at-least-once allows).

Timings are rates, never waits: every wait polls a condition with a deadline.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

import pytest
from confluent_kafka import Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from confluent_kafka import ConsumerGroupTopicPartitions

from common import unique
from harness import _die_with_parent, wait_until

CHURN_SECONDS = float(os.environ.get("RUNNEL_CHURN_SECONDS", "150"))
pytestmark = pytest.mark.timeout(int(CHURN_SECONDS) + 300)

MEMBERS_MAX = 6
PARTITIONS = 12
PRODUCE_PER_SECOND = 400
DRAIN_TIMEOUT_S = 180
WORKER = str(Path(__file__).with_name("churn_consumer.py"))


class Member:
    def __init__(self, n: int, bootstrap: str, group: str, topic: str, log_dir: Path):
        self.n = n
        self.log_path = log_dir / f"member-{n}.log"
        self.stderr = open(log_dir / f"member-{n}.stderr", "wb")
        self.proc = subprocess.Popen(
            [sys.executable, WORKER, bootstrap, group, topic, str(self.log_path)],
            stdout=subprocess.DEVNULL,
            stderr=self.stderr,
            preexec_fn=_die_with_parent,
        )
        self.killed = False

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        self.killed = True
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def leave(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(60)
        assert rc == 0, f"member {self.n} exited {rc} after SIGTERM"


def parse_member_log(path: Path):
    """Returns (consumed [(p, o, value)] in order, commits {p: [offset, ...]} in order, failures)."""
    consumed, commits, failures = [], defaultdict(list), []
    if not path.exists():
        return consumed, commits, failures
    for line in path.read_text().splitlines():
        parts = line.split(" ", 3)
        if parts[0] == "C" and len(parts) == 4:
            consumed.append((int(parts[1]), int(parts[2]), parts[3]))
        elif parts[0] == "K" and len(parts) == 3:
            commits[int(parts[1])].append(int(parts[2]))
        elif parts[0] == "F":
            failures.append(line)
    return consumed, commits, failures


def test_churning_group_consumes_every_acknowledged_record(fresh_runnel, tmp_path):
    r = fresh_runnel
    topic, group = unique("churn"), unique("churn-group")
    admin = AdminClient({"bootstrap.servers": r.bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS, replication_factor=1)])[topic].result(60)
    rng = random.Random(int(os.environ.get("RUNNEL_CHURN_SEED", str(time.time_ns()))))

    # ---------------------------------------------------------------- producer (acks=all)
    lock = threading.Lock()
    acked: dict[tuple[int, int], str] = {}
    produce_errors: list[str] = []
    stop = threading.Event()

    def on_delivery(err, msg):
        with lock:
            if err is None:
                acked[(msg.partition(), msg.offset())] = msg.value().decode()
            else:
                produce_errors.append(str(err))

    def produce_loop():
        p = Producer({"bootstrap.servers": r.bootstrap, "acks": "all", "enable.idempotence": True, "linger.ms": 5})
        i, started = 0, time.monotonic()
        while not stop.is_set():
            # Paced at PRODUCE_PER_SECOND: produce what is due, then serve delivery reports.
            due = int((time.monotonic() - started) * PRODUCE_PER_SECOND)
            while i < due:
                p.produce(topic, key=f"key-{i % 97}".encode(), value=f"v{i}".encode(), on_delivery=on_delivery)
                i += 1
            p.poll(0.01)
        assert p.flush(60) == 0, "producer could not flush"

    producer = threading.Thread(target=produce_loop, name="producer")
    producer.start()

    # ---------------------------------------------------------------- observer of committed offsets
    backwards: list[str] = []
    observed: dict[int, int] = {}

    def observe_once():
        request = [ConsumerGroupTopicPartitions(group, [TopicPartition(topic, q) for q in range(PARTITIONS)])]
        result = admin.list_consumer_group_offsets(request)[group].result(30)
        for tp in result.topic_partitions:
            if tp.offset < 0:
                continue
            if tp.offset < observed.get(tp.partition, -1):
                backwards.append(f"partition {tp.partition}: {observed[tp.partition]} -> {tp.offset}")
            observed[tp.partition] = max(tp.offset, observed.get(tp.partition, -1))
        return result

    def observe_loop():
        while not stop.is_set():
            try:
                observe_once()
            except Exception:
                pass  # the group may not exist yet
            stop.wait(0.5)

    observer = threading.Thread(target=observe_loop, name="observer")
    observer.start()

    # ---------------------------------------------------------------- churn
    members: list[Member] = []
    joined = killed = left = 0

    def start_member():
        nonlocal joined
        members.append(Member(len(members), r.bootstrap, group, topic, tmp_path))
        joined += 1

    try:
        for _ in range(3):
            start_member()
        churn_until = time.monotonic() + CHURN_SECONDS
        # Rounds of the three actions in a random order, at a random pace, so that each happens
        # about equally often.
        actions: list[str] = []
        while time.monotonic() < churn_until:
            stop.wait(rng.uniform(1.0, 5.0))  # the pace of churn, not a wait for a condition
            if not actions:
                actions = ["join", "kill", "leave"]
                rng.shuffle(actions)
            action = actions.pop()
            alive = [m for m in members if m.alive()]
            if action == "join" or len(alive) <= 1:
                if len(alive) < MEMBERS_MAX:
                    start_member()
            elif action == "kill":
                rng.choice(alive).kill()
                killed += 1
            else:
                rng.choice(alive).leave()
                left += 1
        print(f"churn: {joined} joined, {killed} killed, {left} left gracefully over {CHURN_SECONDS:.0f}s")
    finally:
        stop.set()
        producer.join(120)
        observer.join(60)

    # ---------------------------------------------------------------- drain
    try:
        while len([m for m in members if m.alive()]) < 2:
            start_member()
        ends = {q: 0 for q in range(PARTITIONS)}
        for (q, o) in acked:
            ends[q] = max(ends[q], o + 1)

        def drained():
            observe_once()
            return all(observed.get(q, 0) >= ends[q] for q in range(PARTITIONS))

        wait_until(drained, DRAIN_TIMEOUT_S, lambda: f"committed {observed} to reach {ends}", interval=0.5)
    finally:
        for m in members:
            if m.alive():
                m.leave()

    # ---------------------------------------------------------------- checks
    assert not produce_errors, produce_errors[:5]
    assert len(acked) > CHURN_SECONDS * PRODUCE_PER_SECOND * 0.5, f"only {len(acked)} records acknowledged"
    assert killed >= 3 and left >= 3, f"too little churn: {killed} killed, {left} left"
    assert not backwards, f"committed offsets went backwards: {backwards[:5]}"

    seen: dict[tuple[int, int], list[int]] = defaultdict(list)  # (p, o) -> members that consumed it
    last_commit: dict[int, dict[int, int]] = {}
    failures = []
    for m in members:
        consumed, commits, failed = parse_member_log(m.log_path)
        failures += [f"member {m.n}: {f}" for f in failed]
        for q, offsets in commits.items():
            assert offsets == sorted(offsets), f"member {m.n} committed partition {q} backwards: {offsets}"
        last_commit[m.n] = {q: offsets[-1] for q, offsets in commits.items()}
        for q, o, value in consumed:
            want = acked.get((q, o))
            assert want is None or want == value, f"partition {q} offset {o}: consumed {value!r}, produced {want!r}"
            seen[(q, o)].append(m.n)

    missing = sorted(k for k in acked if k not in seen)
    assert not missing, f"{len(missing)} acknowledged records never consumed, e.g. {missing[:5]}"

    unexplained = []
    duplicates = 0
    by_n = {m.n: m for m in members}
    for (q, o), who in seen.items():
        if len(who) < 2:
            continue
        duplicates += 1
        for n in who[:-1]:
            # A repeat is allowed only if that earlier consumer was killed before committing past it.
            if not (by_n[n].killed and o >= last_commit[n].get(q, -1)):
                unexplained.append(f"partition {q} offset {o} consumed by members {who}")
                break
    print(
        f"churn: {len(acked)} acknowledged, {len(seen)} distinct consumed, {duplicates} consumed twice "
        f"(all after a killed member's last commit), {len(failures)} failed commits"
    )
    assert not unexplained, f"{len(unexplained)} duplicates not explained by a kill, e.g. {unexplained[:5]}; failed commits: {failures[:5]}"
