"""confluent-kafka (librdkafka) against runnel."""

from __future__ import annotations

import threading
import time

import pytest
from confluent_kafka import (
    OFFSET_BEGINNING,
    TIMESTAMP_CREATE_TIME,
    TIMESTAMP_LOG_APPEND_TIME,
    Consumer,
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    Producer,
    TopicCollection,
    TopicPartition,
)
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
    NewPartitions,
    NewTopic,
    OffsetSpec,
    ResourceType,
)

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
from harness import Runnel, wait_until
from kafka_proxy import DropProduceResponsesProxy

pytestmark = pytest.mark.timeout(300)

TS_TYPES = {TIMESTAMP_CREATE_TIME: "CreateTime", TIMESTAMP_LOG_APPEND_TIME: "LogAppendTime"}
DEFAULT_SOURCES = {"DEFAULT_CONFIG", "STATIC_BROKER_CONFIG", "DYNAMIC_DEFAULT_BROKER_CONFIG"}


# ---------------------------------------------------------------------------------------- helpers
def admin(r) -> AdminClient:
    return AdminClient({"bootstrap.servers": r.bootstrap})


def create_topic(a: AdminClient, name: str, partitions: int, config: dict | None = None) -> None:
    fs = a.create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=1, config=config or {})],
        operation_timeout=30,
        request_timeout=30,
    )
    fs[name].result(60)


def source_name(src) -> str:
    if isinstance(src, ConfigSource):
        return src.name
    return ConfigSource(src).name


def describe_topic_configs(a: AdminClient, topic: str) -> dict:
    res = ConfigResource(ResourceType.TOPIC, topic)
    return a.describe_configs([res], request_timeout=30)[res].result(60)


def partition_count(a: AdminClient, topic: str) -> int | None:
    md = a.list_topics(topic, timeout=30)
    t = md.topics.get(topic)
    if t is None or t.error is not None:
        return None
    return len(t.partitions)


def produce_all(bootstrap: str, topic: str, recs, **conf) -> dict[int, tuple[int, int]]:
    """Produce recs (explicit partition, key, value, headers, CreateTime); return i -> (partition, offset)."""
    delivered: dict[int, tuple[int, int]] = {}
    errors: list[str] = []
    cfg = {
        "bootstrap.servers": bootstrap,
        "acks": "all",
        "linger.ms": 5,
        "enable.idempotence": False,
        # No reordering on retry: the checks below expect per-partition send order.
        "max.in.flight.requests.per.connection": 1,
    }
    cfg.update(conf)
    p = Producer(cfg)

    def on_delivery(err, msg, i):
        if err is not None:
            errors.append(f"record {i}: {err}")
        else:
            delivered[i] = (msg.partition(), msg.offset())

    for r in recs:
        while True:
            try:
                p.produce(
                    topic,
                    key=r.key,
                    value=r.value,
                    partition=r.partition,
                    timestamp=r.ts,
                    headers=list(r.headers),
                    on_delivery=lambda err, msg, i=r.i: on_delivery(err, msg, i),
                )
                break
            except BufferError:
                p.poll(0.1)
        p.poll(0)
    remaining = p.flush(DEADLINE_S)
    assert remaining == 0, f"{remaining} records not delivered within {DEADLINE_S}s; errors: {errors[:5]}"
    assert not errors, f"{len(errors)} delivery errors, first: {errors[:5]}"
    assert len(delivered) == len(recs)
    return delivered


def to_got(msg) -> Got:
    ts_type, ts = msg.timestamp()
    return Got(
        msg.partition(),
        msg.offset(),
        msg.key(),
        msg.value(),
        tuple(msg.headers() or ()),
        ts,
        TS_TYPES.get(ts_type, f"type{ts_type}"),
    )


def new_consumer(bootstrap: str, **conf) -> Consumer:
    cfg = {
        "bootstrap.servers": bootstrap,
        "group.id": unique("assign-only"),
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
    }
    cfg.update(conf)
    return Consumer(cfg)


def consume_assigned(c: Consumer, want: dict[int, int]) -> dict[int, list[Got]]:
    got: dict[int, list[Got]] = {p: [] for p in want}
    deadline = time.monotonic() + DEADLINE_S
    while not counts_reached(got, want):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {DEADLINE_S}s consuming: {progress(got, want)}")
        for msg in c.consume(1000, 0.5):
            if msg.error():
                raise KafkaException(msg.error())
            got.setdefault(msg.partition(), []).append(to_got(msg))
    return got


# ---------------------------------------------------------------------------------------- tests
@pytest.mark.parametrize("codec", CODECS)
def test_produce_consume_codec(runnel, codec):
    a = admin(runnel)
    topic = unique(f"ck-{codec}")
    create_topic(a, topic, PARTITIONS)
    recs = make_records(f"ck-{codec}")
    exp = by_partition(recs)

    delivered = produce_all(runnel.bootstrap, topic, recs, **{"compression.type": codec})
    for r in recs:
        assert delivered[r.i] == (r.partition, r.i // PARTITIONS), f"record {r.i} acked at {delivered[r.i]}"

    c = new_consumer(runnel.bootstrap)
    try:
        # watermarks: earliest 0, latest = count
        for p, e in exp.items():
            lo, hi = c.get_watermark_offsets(TopicPartition(topic, p), timeout=30)
            assert (lo, hi) == (0, len(e)), f"partition {p} watermarks"

        # from the beginning
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in exp])
        got = consume_assigned(c, {p: len(e) for p, e in exp.items()})
        check_partition_streams(exp, got)

        # from a timestamp: ListOffsets by time, then consume from the returned offsets
        t_mid = recs[len(recs) // 2].ts
        found = c.offsets_for_times([TopicPartition(topic, p, t_mid) for p in exp], timeout=30)
        start = {}
        for tp in found:
            assert tp.error is None, f"offsets_for_times error {tp.error} for partition {tp.partition}"
            assert tp.offset == first_offset_at_or_after(exp[tp.partition], t_mid), (
                f"offsets_for_times({t_mid}) partition {tp.partition} -> {tp.offset}"
            )
            start[tp.partition] = tp.offset
        assert set(start) == set(exp)
        # before the first record -> offset 0; after the last -> -1 (no such record)
        before = c.offsets_for_times([TopicPartition(topic, p, recs[0].ts - 60_000) for p in exp], timeout=30)
        assert {tp.partition: tp.offset for tp in before} == {p: 0 for p in exp}
        after = c.offsets_for_times([TopicPartition(topic, p, recs[-1].ts + 60_000) for p in exp], timeout=30)
        assert {tp.partition: tp.offset for tp in after} == {p: -1 for p in exp}

        c.unassign()
        c.assign([TopicPartition(topic, p, o) for p, o in start.items()])
        exp_tail = {p: e[start[p]:] for p, e in exp.items()}
        got_tail = consume_assigned(c, {p: len(e) for p, e in exp_tail.items()})
        check_partition_streams(exp_tail, got_tail, start_offsets=start)
    finally:
        c.close()


def test_admin_topics_and_configs(runnel):
    a = admin(runnel)
    topic = unique("ck-admin")
    create_topic(a, topic, 3, {"retention.ms": "3600000", "max.message.bytes": "200000"})

    # creating it again fails with TOPIC_ALREADY_EXISTS
    with pytest.raises(KafkaException) as ei:
        create_topic(a, topic, 3)
    assert ei.value.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS, ei.value

    # list + describe
    md = a.list_topics(timeout=30)
    assert topic in md.topics
    assert len(md.topics[topic].partitions) == 3
    assert len(md.brokers) == 1
    desc = a.describe_topics(TopicCollection([topic]), request_timeout=30)[topic].result(60)
    assert desc.name == topic
    assert [p.id for p in desc.partitions] == [0, 1, 2]
    for p in desc.partitions:
        assert p.leader is not None and p.leader.id in md.brokers, f"partition {p.id} leader {p.leader}"

    # describe configs: overrides are DYNAMIC_TOPIC_CONFIG, the rest come from defaults
    cfg = describe_topic_configs(a, topic)
    assert cfg["retention.ms"].value == "3600000"
    assert source_name(cfg["retention.ms"].source) == "DYNAMIC_TOPIC_CONFIG"
    assert not cfg["retention.ms"].is_default
    assert cfg["max.message.bytes"].value == "200000"
    assert source_name(cfg["max.message.bytes"].source) == "DYNAMIC_TOPIC_CONFIG"
    assert cfg["cleanup.policy"].value == "delete"
    assert source_name(cfg["cleanup.policy"].source) in DEFAULT_SOURCES

    # incremental alter: SET one, DELETE (revert to default) the other
    res = ConfigResource(
        ResourceType.TOPIC,
        topic,
        incremental_configs=[
            ConfigEntry("retention.ms", "7200000", incremental_operation=AlterConfigOpType.SET),
            ConfigEntry("max.message.bytes", None, incremental_operation=AlterConfigOpType.DELETE),
            ConfigEntry("segment.bytes", "10485760", incremental_operation=AlterConfigOpType.SET),
        ],
    )
    a.incremental_alter_configs([res], request_timeout=30)[res].result(60)
    cfg = describe_topic_configs(a, topic)
    assert cfg["retention.ms"].value == "7200000"
    assert source_name(cfg["retention.ms"].source) == "DYNAMIC_TOPIC_CONFIG"
    assert cfg["segment.bytes"].value == "10485760"
    assert source_name(cfg["segment.bytes"].source) == "DYNAMIC_TOPIC_CONFIG"
    assert source_name(cfg["max.message.bytes"].source) in DEFAULT_SOURCES
    assert cfg["max.message.bytes"].value != "200000"

    # create partitions 3 -> 5; the new partitions take writes
    a.create_partitions([NewPartitions(topic, 5)], request_timeout=30)[topic].result(60)
    wait_until(lambda: partition_count(a, topic) == 5, 30, lambda: f"5 partitions, have {partition_count(a, topic)}")
    recs = make_records("ck-admin", n=100, partitions=5)
    produce_all(runnel.bootstrap, topic, recs)

    # delete records below offset 7 in partition 4 (20 records there)
    tp = TopicPartition(topic, 4, 7)
    deleted = a.delete_records([tp], request_timeout=30)
    result = list(deleted.values())[0].result(60)
    assert result.low_watermark == 7
    lo = a.list_offsets({TopicPartition(topic, 4): OffsetSpec.earliest()}, request_timeout=30)
    assert list(lo.values())[0].result(60).offset == 7
    hi = a.list_offsets({TopicPartition(topic, 4): OffsetSpec.latest()}, request_timeout=30)
    assert list(hi.values())[0].result(60).offset == 20
    c = new_consumer(runnel.bootstrap)
    try:
        c.assign([TopicPartition(topic, 4, OFFSET_BEGINNING)])
        got = consume_assigned(c, {4: 13})
        exp = by_partition(recs, 5)[4][7:]
        check_partition_streams({4: exp}, got, start_offsets={4: 7})
    finally:
        c.close()

    # delete the topic; it disappears from the listing
    a.delete_topics([topic], operation_timeout=30, request_timeout=30)[topic].result(60)
    wait_until(lambda: topic not in a.list_topics(timeout=30).topics, 30, f"{topic} gone from list_topics")
    with pytest.raises(KafkaException) as ei:
        describe_topic_configs(a, topic)
    assert ei.value.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART, ei.value


def test_topic_auto_creation(runnel):
    topic = unique("ck-auto")
    [rec] = make_records("ck-auto", n=1, partitions=1)
    produce_all(runnel.bootstrap, topic, [rec])
    a = admin(runnel)
    assert partition_count(a, topic) == 1
    c = new_consumer(runnel.bootstrap)
    try:
        c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        check_partition_streams({0: [rec]}, consume_assigned(c, {0: 1}))
    finally:
        c.close()


def test_idempotent_producer(runnel):
    a = admin(runnel)
    topic = unique("ck-idem")
    create_topic(a, topic, PARTITIONS)
    recs = make_records("ck-idem")
    # Two producers one after the other: each gets its own producer id from InitProducerId.
    half = len(recs) // 2
    conf = {"enable.idempotence": True, "max.in.flight.requests.per.connection": 5, "compression.type": "lz4"}
    d1 = produce_all(runnel.bootstrap, topic, recs[:half], **conf)
    d2 = produce_all(runnel.bootstrap, topic, recs[half:], **conf)
    delivered = {**d1, **d2}
    for r in recs:
        assert delivered[r.i] == (r.partition, r.i // PARTITIONS), f"record {r.i} acked at {delivered[r.i]}"
    exp = by_partition(recs)
    c = new_consumer(runnel.bootstrap)
    try:
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in exp])
        check_partition_streams(exp, consume_assigned(c, {p: len(e) for p, e in exp.items()}))
    finally:
        c.close()


def test_idempotent_retries_are_deduplicated(tmp_path):
    """Lost Produce responses: the idempotent producer retries batches the broker already appended;
    the broker must answer them with the original offsets and not append them twice."""
    proxy = DropProduceResponsesProxy(drop_every=5, max_drops=4)
    r = Runnel("test_confluent_kafka.dedup", tmp_path / "data",
               ["--advertised-kafka-listener", f"127.0.0.1:{proxy.port}"])
    try:
        r.start()
        proxy.upstream = ("127.0.0.1", r.port)
        bootstrap = f"127.0.0.1:{proxy.port}"
        topic = unique("ck-dedup")
        create_topic(AdminClient({"bootstrap.servers": bootstrap}), topic, PARTITIONS)
        recs = make_records("ck-dedup", n=3000)
        delivered = produce_all(
            bootstrap, topic, recs,
            **{"enable.idempotence": True, "max.in.flight.requests.per.connection": 5, "linger.ms": 2,
               "batch.num.messages": 100, "retry.backoff.ms": 50, "reconnect.backoff.ms": 50,
               "reconnect.backoff.max.ms": 200},
        )
        assert proxy.dropped >= 1, f"the proxy dropped no Produce response ({proxy.produce_responses} seen)"
        for rec in recs:
            assert delivered[rec.i] == (rec.partition, rec.i // PARTITIONS), f"record {rec.i} acked at {delivered[rec.i]}"
        exp = by_partition(recs)
        c = new_consumer(bootstrap)
        try:
            c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in exp])
            got = consume_assigned(c, {p: len(e) for p, e in exp.items()})
            check_partition_streams(exp, got)
            for p, e in exp.items():
                lo, hi = c.get_watermark_offsets(TopicPartition(topic, p), timeout=30)
                assert (lo, hi) == (0, len(e)), f"partition {p}: {hi - len(e)} records appended twice"
        finally:
            c.close()
    finally:
        proxy.close()
        if r.running():
            r.close()


def test_consumer_group(fresh_runnel):
    r = fresh_runnel
    a = admin(r)
    topic = unique("ck-group")
    group = unique("ck-group")
    nparts, per_part = 12, 250
    create_topic(a, topic, nparts)
    members = ["c0", "c1", "c2"]
    own = Ownership(members)
    received: dict[str, list[tuple[int, int, bytes]]] = {m: [] for m in members}
    errors: list[str] = []
    stop = threading.Event()

    def run(m: str) -> None:
        try:
            c = Consumer(
                {
                    "bootstrap.servers": r.bootstrap,
                    "group.id": group,
                    "client.id": m,
                    "enable.auto.commit": False,
                    "auto.offset.reset": "earliest",
                    "partition.assignment.strategy": "range",
                    "session.timeout.ms": 30000,
                    "heartbeat.interval.ms": 1000,
                }
            )
            c.subscribe(
                [topic],
                on_assign=lambda _c, ps: own.assigned(m, [p.partition for p in ps]),
                on_revoke=lambda _c, ps: own.revoked(m, [p.partition for p in ps]),
            )
            dirty = False
            while not stop.is_set():
                for msg in c.consume(500, 0.2):
                    if msg.error():
                        errors.append(f"{m}: {msg.error()}")
                        continue
                    received[m].append((msg.partition(), msg.offset(), msg.value()))
                    dirty = True
                if dirty:
                    try:
                        c.commit(asynchronous=False)
                        dirty = False
                    except KafkaException as e:
                        # legal during a rebalance; the next loop (or the next owner) commits
                        if e.args[0].code() not in (
                            KafkaError.REBALANCE_IN_PROGRESS,
                            KafkaError.ILLEGAL_GENERATION,
                            KafkaError.UNKNOWN_MEMBER_ID,
                            KafkaError._NO_OFFSET,
                        ):
                            errors.append(f"{m}: commit failed: {e}")
            c.close()
        except Exception as e:  # surfaced by the main thread
            errors.append(f"{m}: {e!r}")

    threads = [threading.Thread(target=run, args=(m,), name=m, daemon=True) for m in members]
    for t in threads:
        t.start()
    try:
        wait_until(lambda: own.stable(nparts) or errors, DEADLINE_S, lambda: f"a stable 3-way assignment: {own.describe()}")
        assert not errors, errors
        # the coordinator's view agrees: 3 members, the 12 partitions split between them
        gd = a.describe_consumer_groups([group], request_timeout=30)[group].result(60)
        assert len(gd.members) == 3, gd
        assigned = [tp.partition for mem in gd.members for tp in mem.assignment.topic_partitions]
        assert sorted(assigned) == list(range(nparts)), f"describe_consumer_groups assignment {assigned}"
        events_at_stable = own.n_events()

        recs = [
            (i % nparts, f"key-{i}".encode(), f"group-{i}".encode()) for i in range(nparts * per_part)
        ]
        p = Producer({"bootstrap.servers": r.bootstrap, "acks": "all", "linger.ms": 5})
        for part, k, v in recs:
            p.produce(topic, key=k, value=v, partition=part)
            p.poll(0)
        assert p.flush(DEADLINE_S) == 0

        want = {v for _, _, v in recs}

        def seen():
            return {v for m in members for (_, _, v) in list(received[m])}

        wait_until(lambda: seen() >= want or errors, DEADLINE_S, lambda: f"all records consumed: {len(seen())}/{len(want)}")
        assert not errors, errors

        # committed offsets reach the end of every partition
        def committed():
            res = a.list_consumer_group_offsets(
                [ConsumerGroupTopicPartitions(group)], request_timeout=30
            )[group].result(60)
            return {tp.partition: tp.offset for tp in res.topic_partitions if tp.topic == topic}

        wait_until(lambda: committed() == {q: per_part for q in range(nparts)}, DEADLINE_S, lambda: f"committed offsets at the end: {committed()}")
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    assert not errors, errors
    assert not own.violations, own.violations

    # every record consumed, each at the offset it was produced at
    all_got = [x for m in members for x in received[m]]
    for part, off, v in all_got:
        assert v == f"group-{off * nparts + part}".encode(), f"partition {part} offset {off} holds {v!r}"
    dups = len(all_got) - len({(q, o) for q, o, _ in all_got})
    if own.n_events() == events_at_stable:
        assert dups == 0, f"{dups} records consumed twice without any rebalance"

    # committed offsets survive a graceful restart; a new member resumes from them
    r.restart()
    a = admin(r)
    res = a.list_consumer_group_offsets(
        [ConsumerGroupTopicPartitions(group)], request_timeout=30
    )[group].result(60)
    assert {tp.partition: tp.offset for tp in res.topic_partitions} == {q: per_part for q in range(nparts)}

    extra = 5
    p = Producer({"bootstrap.servers": r.bootstrap, "acks": "all", "linger.ms": 5})
    for i in range(nparts * extra):
        p.produce(topic, key=b"after", value=f"after-{i}".encode(), partition=i % nparts)
    assert p.flush(DEADLINE_S) == 0
    c = Consumer(
        {
            "bootstrap.servers": r.bootstrap,
            "group.id": group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    try:
        c.subscribe([topic])
        got: dict[int, list] = {q: [] for q in range(nparts)}
        want_n = {q: extra for q in range(nparts)}
        deadline = time.monotonic() + DEADLINE_S
        while not counts_reached(got, want_n):
            assert time.monotonic() < deadline, f"resumed consumer: {progress(got, want_n)}"
            for msg in c.consume(500, 0.5):
                if msg.error():
                    raise KafkaException(msg.error())
                got[msg.partition()].append((msg.offset(), msg.value()))
        for q, lst in got.items():
            offs = [o for o, _ in lst]
            assert offs == list(range(per_part, per_part + extra)), f"partition {q} resumed at offsets {offs}"
            assert all(v.startswith(b"after-") for _, v in lst)
    finally:
        c.close()
