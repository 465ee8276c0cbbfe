"""kafka-python (pure Python client) against runnel."""

from __future__ import annotations

import threading
import time

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka import errors as kerr
from kafka.admin import AlterConfigOp, ConfigResource, KafkaAdminClient, OffsetSpec
from kafka.consumer.subscription_state import ConsumerRebalanceListener

from common import (
    CODECS,
    DEADLINE_S,
    PARTITIONS,
    Got,
    Ownership,
    by_partition,
    check_partition_streams,
    counts_reached,
    first_offset_at_or_after,
    make_records,
    progress,
    unique,
)
from harness import wait_until

pytestmark = pytest.mark.timeout(300)

TS_TYPES = {0: "CreateTime", 1: "LogAppendTime"}
DEFAULT_SOURCES = {"DEFAULT_CONFIG", "STATIC_BROKER_CONFIG", "DYNAMIC_DEFAULT_BROKER_CONFIG"}


def admin(r) -> KafkaAdminClient:
    return KafkaAdminClient(bootstrap_servers=r.bootstrap, request_timeout_ms=30000)


def create_topic(a: KafkaAdminClient, name: str, partitions: int, configs: dict | None = None):
    return a.create_topics(
        {name: {"num_partitions": partitions, "replication_factor": 1, "configs": configs or {}}},
        timeout_ms=30000,
    )


def topic_configs(a: KafkaAdminClient, topic: str) -> dict:
    res = a.describe_configs([ConfigResource("TOPIC", topic)], config_filter="all")
    return res["topic"][topic]


def n_partitions(a: KafkaAdminClient, topic: str) -> int | None:
    for t in a.describe_topics([topic]):
        if t["name"] == topic and t.get("error_code", 0) == 0:
            return len(t["partitions"])
    return None


def produce_all(bootstrap: str, topic: str, recs, **conf) -> dict[int, tuple[int, int]]:
    cfg = dict(
        bootstrap_servers=bootstrap,
        acks="all",
        linger_ms=5,
        enable_idempotence=False,
        max_in_flight_requests_per_connection=1,
        batch_size=64 * 1024,
    )
    cfg.update(conf)
    p = KafkaProducer(**cfg)
    try:
        futs = [
            (r.i, p.send(topic, key=r.key, value=r.value, partition=r.partition, timestamp_ms=r.ts, headers=list(r.headers)))
            for r in recs
        ]
        p.flush(timeout=DEADLINE_S)
        out = {}
        for i, f in futs:
            md = f.get(timeout=DEADLINE_S)
            out[i] = (md.partition, md.offset)
        return out
    finally:
        p.close(timeout=10)


def new_consumer(bootstrap: str, **conf) -> KafkaConsumer:
    cfg = dict(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None, auto_offset_reset="earliest")
    cfg.update(conf)
    return KafkaConsumer(**cfg)


def to_got(m) -> Got:
    return Got(
        m.partition, m.offset, m.key, m.value, tuple(m.headers or ()), m.timestamp,
        TS_TYPES.get(m.timestamp_type, f"type{m.timestamp_type}"),
    )


def consume_assigned(c: KafkaConsumer, want: dict[int, int]) -> dict[int, list[Got]]:
    got: dict[int, list[Got]] = {p: [] for p in want}
    deadline = time.monotonic() + DEADLINE_S
    while not counts_reached(got, want):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {DEADLINE_S}s consuming: {progress(got, want)}")
        for tp, msgs in c.poll(timeout_ms=500, max_records=2000).items():
            got.setdefault(tp.partition, []).extend(to_got(m) for m in msgs)
    return got


@pytest.mark.parametrize("codec", CODECS)
def test_produce_consume_codec(runnel, codec):
    a = admin(runnel)
    topic = unique(f"kp-{codec}")
    try:
        create_topic(a, topic, PARTITIONS)
    finally:
        a.close()
    recs = make_records(f"kp-{codec}")
    exp = by_partition(recs)
    delivered = produce_all(runnel.bootstrap, topic, recs, compression_type=None if codec == "none" else codec)
    for r in recs:
        assert delivered[r.i] == (r.partition, r.i // PARTITIONS), f"record {r.i} acked at {delivered[r.i]}"

    c = new_consumer(runnel.bootstrap)
    try:
        tps = [TopicPartition(topic, p) for p in exp]
        assert c.beginning_offsets(tps) == {tp: 0 for tp in tps}
        assert c.end_offsets(tps) == {tp: len(exp[tp.partition]) for tp in tps}

        c.assign(tps)
        c.seek_to_beginning()
        got = consume_assigned(c, {p: len(e) for p, e in exp.items()})
        check_partition_streams(exp, got)

        t_mid = recs[len(recs) // 2].ts
        found = c.offsets_for_times({tp: t_mid for tp in tps})
        start = {}
        for tp in tps:
            oat = found[tp]
            want = first_offset_at_or_after(exp[tp.partition], t_mid)
            assert oat is not None and oat.offset == want, f"offsets_for_times partition {tp.partition}: {oat}, expected {want}"
            assert oat.timestamp == exp[tp.partition][want].ts
            start[tp.partition] = oat.offset
        before = c.offsets_for_times({tp: recs[0].ts - 60_000 for tp in tps})
        assert {tp.partition: v.offset for tp, v in before.items()} == {p: 0 for p in exp}
        after = c.offsets_for_times({tp: recs[-1].ts + 60_000 for tp in tps})
        assert all(v is None for v in after.values()), f"lookup past the last timestamp: {after}"

        for tp in tps:
            c.seek(tp, start[tp.partition])
        exp_tail = {p: e[start[p]:] for p, e in exp.items()}
        got_tail = consume_assigned(c, {p: len(e) for p, e in exp_tail.items()})
        check_partition_streams(exp_tail, got_tail, start_offsets=start)
    finally:
        c.close()


def test_admin_topics_and_configs(runnel):
    a = admin(runnel)
    try:
        topic = unique("kp-admin")
        create_topic(a, topic, 3, {"retention.ms": "3600000", "max.message.bytes": "200000"})
        with pytest.raises(kerr.TopicAlreadyExistsError):
            create_topic(a, topic, 3)

        assert topic in a.list_topics()
        [desc] = a.describe_topics([topic])
        assert desc["error_code"] == 0
        assert sorted(p["partition_index"] for p in desc["partitions"]) == [0, 1, 2]
        assert all(p["leader_id"] >= 0 for p in desc["partitions"])

        cfg = topic_configs(a, topic)
        assert cfg["retention.ms"]["value"] == "3600000"
        assert cfg["retention.ms"]["config_source"] == "DYNAMIC_TOPIC_CONFIG"
        assert cfg["max.message.bytes"]["value"] == "200000"
        assert cfg["max.message.bytes"]["config_source"] == "DYNAMIC_TOPIC_CONFIG"
        assert cfg["cleanup.policy"]["value"] == "delete"
        assert cfg["cleanup.policy"]["config_source"] in DEFAULT_SOURCES
        # the default "modified" filter returns exactly the overrides
        modified = a.describe_configs([ConfigResource("TOPIC", topic)])["topic"][topic]
        assert set(modified) == {"retention.ms", "max.message.bytes"}, set(modified)

        # incremental alter (kafka-python picks IncrementalAlterConfigs when the broker has it)
        res = a.alter_configs(
            [
                ConfigResource(
                    "TOPIC",
                    topic,
                    configs={
                        "retention.ms": "7200000",
                        "max.message.bytes": (AlterConfigOp.DELETE, None),
                        "segment.bytes": "10485760",
                    },
                )
            ],
            incremental=True,
        )
        assert res == {"topic": {topic: "OK"}}, res
        cfg = topic_configs(a, topic)
        assert cfg["retention.ms"]["value"] == "7200000"
        assert cfg["segment.bytes"]["value"] == "10485760"
        assert cfg["segment.bytes"]["config_source"] == "DYNAMIC_TOPIC_CONFIG"
        assert cfg["max.message.bytes"]["config_source"] in DEFAULT_SOURCES
        assert cfg["max.message.bytes"]["value"] != "200000"

        a.create_partitions({topic: 5}, timeout_ms=30000)
        wait_until(lambda: n_partitions(a, topic) == 5, 30, lambda: f"5 partitions, have {n_partitions(a, topic)}")
        recs = make_records("kp-admin", n=100, partitions=5)
        produce_all(runnel.bootstrap, topic, recs)

        tp4 = TopicPartition(topic, 4)
        res = a.delete_records({tp4: 7}, timeout_ms=30000)
        assert res[tp4]["low_watermark"] == 7, res
        offs = a.list_partition_offsets({tp4: OffsetSpec.EARLIEST})
        assert offs[tp4].offset == 7
        offs = a.list_partition_offsets({tp4: OffsetSpec.LATEST})
        assert offs[tp4].offset == 20
        c = new_consumer(runnel.bootstrap)
        try:
            c.assign([tp4])
            c.seek_to_beginning()
            got = consume_assigned(c, {4: 13})
            check_partition_streams({4: by_partition(recs, 5)[4][7:]}, got, start_offsets={4: 7})
        finally:
            c.close()

        a.delete_topics([topic], timeout_ms=30000)
        wait_until(lambda: topic not in a.list_topics(), 30, f"{topic} gone from list_topics")
    finally:
        a.close()


def test_idempotent_producer(runnel):
    a = admin(runnel)
    topic = unique("kp-idem")
    try:
        create_topic(a, topic, PARTITIONS)
    finally:
        a.close()
    recs = make_records("kp-idem")
    half = len(recs) // 2
    conf = dict(enable_idempotence=True, max_in_flight_requests_per_connection=5, compression_type="zstd")
    delivered = {
        **produce_all(runnel.bootstrap, topic, recs[:half], **conf),
        **produce_all(runnel.bootstrap, topic, recs[half:], **conf),
    }
    for r in recs:
        assert delivered[r.i] == (r.partition, r.i // PARTITIONS), f"record {r.i} acked at {delivered[r.i]}"
    exp = by_partition(recs)
    c = new_consumer(runnel.bootstrap)
    try:
        c.assign([TopicPartition(topic, p) for p in exp])
        c.seek_to_beginning()
        check_partition_streams(exp, consume_assigned(c, {p: len(e) for p, e in exp.items()}))
    finally:
        c.close()


class _Listener(ConsumerRebalanceListener):
    def __init__(self, own: Ownership, member: str):
        self.own, self.member = own, member

    def on_partitions_revoked(self, revoked):
        self.own.revoked(self.member, [tp.partition for tp in revoked])

    def on_partitions_assigned(self, assigned):
        self.own.assigned(self.member, [tp.partition for tp in assigned])


def test_consumer_group(fresh_runnel):
    r = fresh_runnel
    topic, group = unique("kp-group"), unique("kp-group")
    nparts, per_part = 12, 250
    a = admin(r)
    try:
        create_topic(a, topic, nparts)
    finally:
        a.close()
    members = ["c0", "c1", "c2"]
    own = Ownership(members)
    received: dict[str, list] = {m: [] for m in members}
    errors: list[str] = []
    stop = threading.Event()

    def run(m):
        try:
            c = KafkaConsumer(
                bootstrap_servers=r.bootstrap,
                group_id=group,
                client_id=m,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                session_timeout_ms=30000,
                heartbeat_interval_ms=1000,
            )
            c.subscribe([topic], listener=_Listener(own, m))
            dirty = False
            while not stop.is_set():
                for tp, msgs in c.poll(timeout_ms=200, max_records=500).items():
                    received[m].extend((x.partition, x.offset, x.value) for x in msgs)
                    dirty = dirty or bool(msgs)
                if dirty:
                    try:
                        c.commit()
                        dirty = False
                    except (kerr.CommitFailedError, kerr.RebalanceInProgressError, kerr.IllegalGenerationError,
                            kerr.UnknownMemberIdError):
                        pass  # legal during a rebalance; retried on the next loop or by the next owner
            c.close(autocommit=False)
        except Exception as e:
            errors.append(f"{m}: {e!r}")

    threads = [threading.Thread(target=run, args=(m,), name=m, daemon=True) for m in members]
    for t in threads:
        t.start()
    a = admin(r)
    try:
        wait_until(lambda: own.stable(nparts) or errors, DEADLINE_S, lambda: f"stable 3-way assignment: {own.describe()}")
        assert not errors, errors
        events_at_stable = own.n_events()
        p = KafkaProducer(bootstrap_servers=r.bootstrap, acks="all", linger_ms=5)
        for i in range(nparts * per_part):
            p.send(topic, key=f"key-{i}".encode(), value=f"group-{i}".encode(), partition=i % nparts)
        p.flush(timeout=DEADLINE_S)
        p.close()
        want = {f"group-{i}".encode() for i in range(nparts * per_part)}

        def seen():
            return {v for m in members for (_, _, v) in list(received[m])}

        wait_until(lambda: seen() >= want or errors, DEADLINE_S, lambda: f"all records consumed: {len(seen())}/{len(want)}")

        def committed():
            res = a.list_group_offsets({group: None})[group]
            return {tp.partition: om.offset for tp, om in res.items() if tp.topic == topic}

        wait_until(lambda: committed() == {q: per_part for q in range(nparts)}, DEADLINE_S, lambda: f"committed at end: {committed()}")
    finally:
        stop.set()
        for t in threads:
            t.join(60)
        a.close()
    assert not errors, errors
    assert not own.violations, own.violations
    all_got = [x for m in members for x in received[m]]
    for part, off, v in all_got:
        assert v == f"group-{off * nparts + part}".encode(), f"partition {part} offset {off} holds {v!r}"
    dups = len(all_got) - len({(q, o) for q, o, _ in all_got})
    if own.n_events() == events_at_stable:
        assert dups == 0, f"{dups} records consumed twice without any rebalance"

    r.restart()
    a = admin(r)
    try:
        res = a.list_group_offsets({group: None})[group]
        assert {tp.partition: om.offset for tp, om in res.items()} == {q: per_part for q in range(nparts)}
    finally:
        a.close()
    extra = 5
    p = KafkaProducer(bootstrap_servers=r.bootstrap, acks="all", linger_ms=5)
    for i in range(nparts * extra):
        p.send(topic, key=b"after", value=f"after-{i}".encode(), partition=i % nparts)
    p.flush(timeout=DEADLINE_S)
    p.close()
    c = KafkaConsumer(bootstrap_servers=r.bootstrap, group_id=group, enable_auto_commit=False, auto_offset_reset="earliest")
    try:
        c.subscribe([topic])
        got = {q: [] for q in range(nparts)}
        want_n = {q: extra for q in range(nparts)}
        deadline = time.monotonic() + DEADLINE_S
        while not counts_reached(got, want_n):
            assert time.monotonic() < deadline, f"resumed consumer: {progress(got, want_n)}"
            for tp, msgs in c.poll(timeout_ms=500).items():
                got[tp.partition].extend((x.offset, x.value) for x in msgs)
        for q, lst in got.items():
            assert [o for o, _ in lst] == list(range(per_part, per_part + extra)), f"partition {q} resumed at {lst[:3]}"
            assert all(v.startswith(b"after-") for _, v in lst)
    finally:
        c.close(autocommit=False)
