"""aiokafka (asyncio client) against runnel. Each test runs its own event loop (asyncio.run)."""

from __future__ import annotations

import asyncio
import time

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka import errors as aerr
from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic, RecordsToDelete
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

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

pytestmark = pytest.mark.timeout(300)

TS_TYPES = {0: "CreateTime", 1: "LogAppendTime"}
# DescribeConfigs config_source values
SOURCES = {1: "DYNAMIC_TOPIC_CONFIG", 2: "DYNAMIC_BROKER_CONFIG", 3: "DYNAMIC_DEFAULT_BROKER_CONFIG",
           4: "STATIC_BROKER_CONFIG", 5: "DEFAULT_CONFIG"}
DEFAULT_SOURCES = {"DEFAULT_CONFIG", "STATIC_BROKER_CONFIG", "DYNAMIC_DEFAULT_BROKER_CONFIG"}


async def poll_until(cond, timeout, what):
    """Async twin of harness.wait_until: poll an async predicate with a deadline."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            if await cond():
                return
        except Exception as e:
            last = e
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for: {what() if callable(what) else what}"
                                 + (f" (last error: {last!r})" if last else ""))
        await asyncio.sleep(0.1)


async def new_admin(r) -> AIOKafkaAdminClient:
    a = AIOKafkaAdminClient(bootstrap_servers=r.bootstrap, request_timeout_ms=30000)
    await a.start()
    return a


async def create_topic(a, name, partitions, configs=None):
    resp = await a.create_topics([NewTopic(name, partitions, 1, topic_configs=configs or {})], timeout_ms=30000)
    return {t[0]: t[1] for t in resp.topic_errors}[name]  # error code


async def topic_configs(a, topic) -> dict:
    [resp] = await a.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    obj = resp.to_object()
    [res] = obj["resources"]
    assert res["error_code"] == 0, res
    return {
        e["config_names"]: {"value": e["config_value"], "source": SOURCES.get(e.get("config_source"), e.get("config_source")),
                            "read_only": e["read_only"]}
        for e in res["config_entries"]
    }


async def n_partitions(a, topic):
    for t in await a.describe_topics([topic]):
        if t["topic"] == topic and t["error_code"] == 0:
            return len(t["partitions"])
    return None


async def produce_all(bootstrap, topic, recs, **conf):
    cfg = dict(bootstrap_servers=bootstrap, acks="all", linger_ms=5, enable_idempotence=False, max_batch_size=64 * 1024)
    cfg.update(conf)
    p = AIOKafkaProducer(**cfg)
    await p.start()
    try:
        futs = []
        for r in recs:
            futs.append(await p.send(topic, value=r.value, key=r.key, partition=r.partition, timestamp_ms=r.ts,
                                     headers=list(r.headers)))
        mds = await asyncio.wait_for(asyncio.gather(*futs), DEADLINE_S)
        return {r.i: (md.partition, md.offset) for r, md in zip(recs, mds)}
    finally:
        await p.stop()


async def new_consumer(bootstrap, **conf):
    cfg = dict(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None, auto_offset_reset="earliest")
    cfg.update(conf)
    c = AIOKafkaConsumer(**cfg)
    await c.start()
    return c


def to_got(m) -> Got:
    return Got(m.partition, m.offset, m.key, m.value, tuple(m.headers or ()), m.timestamp,
               TS_TYPES.get(m.timestamp_type, f"type{m.timestamp_type}"))


async def consume_assigned(c, want):
    got = {p: [] for p in want}
    deadline = time.monotonic() + DEADLINE_S
    while not counts_reached(got, want):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {DEADLINE_S}s consuming: {progress(got, want)}")
        for tp, msgs in (await c.getmany(timeout_ms=500, max_records=2000)).items():
            got.setdefault(tp.partition, []).extend(to_got(m) for m in msgs)
    return got


@pytest.mark.parametrize("codec", CODECS)
def test_produce_consume_codec(runnel, codec):
    async def main():
        a = await new_admin(runnel)
        topic = unique(f"aio-{codec}")
        try:
            assert await create_topic(a, topic, PARTITIONS) == 0
        finally:
            await a.close()
        recs = make_records(f"aio-{codec}")
        exp = by_partition(recs)
        delivered = await produce_all(runnel.bootstrap, topic, recs, compression_type=None if codec == "none" else codec)
        for r in recs:
            assert delivered[r.i] == (r.partition, r.i // PARTITIONS), f"record {r.i} acked at {delivered[r.i]}"

        c = await new_consumer(runnel.bootstrap)
        try:
            tps = [TopicPartition(topic, p) for p in exp]
            assert await c.beginning_offsets(tps) == {tp: 0 for tp in tps}
            assert await c.end_offsets(tps) == {tp: len(exp[tp.partition]) for tp in tps}
            c.assign(tps)
            await c.seek_to_beginning(*tps)
            check_partition_streams(exp, await consume_assigned(c, {p: len(e) for p, e in exp.items()}))

            t_mid = recs[len(recs) // 2].ts
            found = await c.offsets_for_times({tp: t_mid for tp in tps})
            start = {}
            for tp in tps:
                oat = found[tp]
                want = first_offset_at_or_after(exp[tp.partition], t_mid)
                assert oat is not None and oat.offset == want, f"offsets_for_times partition {tp.partition}: {oat}, expected {want}"
                assert oat.timestamp == exp[tp.partition][want].ts
                start[tp.partition] = oat.offset
            before = await c.offsets_for_times({tp: recs[0].ts - 60_000 for tp in tps})
            assert {tp.partition: v.offset for tp, v in before.items()} == {p: 0 for p in exp}
            after = await c.offsets_for_times({tp: recs[-1].ts + 60_000 for tp in tps})
            assert all(v is None for v in after.values()), f"lookup past the last timestamp: {after}"

            for tp in tps:
                c.seek(tp, start[tp.partition])
            exp_tail = {p: e[start[p]:] for p, e in exp.items()}
            got_tail = await consume_assigned(c, {p: len(e) for p, e in exp_tail.items()})
            check_partition_streams(exp_tail, got_tail, start_offsets=start)
        finally:
            await c.stop()

    asyncio.run(main())


def test_admin_topics_and_configs(runnel):
    async def main():
        a = await new_admin(runnel)
        try:
            topic = unique("aio-admin")
            assert await create_topic(a, topic, 3, {"retention.ms": "3600000", "max.message.bytes": "200000"}) == 0
            assert await create_topic(a, topic, 3) == aerr.TopicAlreadyExistsError.errno

            assert topic in await a.list_topics()
            [desc] = await a.describe_topics([topic])
            assert desc["error_code"] == 0
            assert sorted(p["partition"] for p in desc["partitions"]) == [0, 1, 2]
            assert all(p["leader"] >= 0 for p in desc["partitions"])

            cfg = await topic_configs(a, topic)
            assert cfg["retention.ms"]["value"] == "3600000"
            assert cfg["retention.ms"]["source"] == "DYNAMIC_TOPIC_CONFIG"
            assert cfg["max.message.bytes"]["value"] == "200000"
            assert cfg["cleanup.policy"]["value"] == "delete"
            assert cfg["cleanup.policy"]["source"] in DEFAULT_SOURCES
            assert not cfg["retention.ms"]["read_only"]

            # legacy AlterConfigs replaces the whole set of overrides: max.message.bytes, not
            # named here, goes back to its default
            responses = await a.alter_configs(
                [ConfigResource(ConfigResourceType.TOPIC, topic, {"retention.ms": "7200000", "segment.bytes": "10485760"})]
            )
            results = [res for resp in responses for res in resp.resources]
            assert [(res[0], res[3]) for res in results] == [(0, topic)], results
            cfg = await topic_configs(a, topic)
            assert cfg["retention.ms"]["value"] == "7200000"
            assert cfg["retention.ms"]["source"] == "DYNAMIC_TOPIC_CONFIG"
            assert cfg["segment.bytes"]["value"] == "10485760"
            assert cfg["max.message.bytes"]["source"] in DEFAULT_SOURCES
            assert cfg["max.message.bytes"]["value"] != "200000"

            await a.create_partitions({topic: NewPartitions(5)})
            await poll_until(lambda: _eq(n_partitions(a, topic), 5), 30, "5 partitions")
            recs = make_records("aio-admin", n=100, partitions=5)
            await produce_all(runnel.bootstrap, topic, recs)

            tp4 = TopicPartition(topic, 4)
            res = await a.delete_records({tp4: RecordsToDelete(7)}, timeout_ms=30000)
            assert res == {tp4: 7}
            c = await new_consumer(runnel.bootstrap)
            try:
                assert await c.beginning_offsets([tp4]) == {tp4: 7}
                assert await c.end_offsets([tp4]) == {tp4: 20}
                c.assign([tp4])
                await c.seek_to_beginning(tp4)
                got = await consume_assigned(c, {4: 13})
                check_partition_streams({4: by_partition(recs, 5)[4][7:]}, got, start_offsets={4: 7})
            finally:
                await c.stop()

            resp = await a.delete_topics([topic], timeout_ms=30000)
            assert dict(resp.topic_error_codes) == {topic: 0}, resp
            await poll_until(lambda: _not_in(topic, a.list_topics()), 30, f"{topic} gone from list_topics")
        finally:
            await a.close()

    asyncio.run(main())


async def _eq(coro, v):
    return (await coro) == v


async def _not_in(x, coro):
    return x not in await coro


def test_idempotent_producer(runnel):
    async def main():
        a = await new_admin(runnel)
        topic = unique("aio-idem")
        try:
            assert await create_topic(a, topic, PARTITIONS) == 0
        finally:
            await a.close()
        recs = make_records("aio-idem")
        half = len(recs) // 2
        d1 = await produce_all(runnel.bootstrap, topic, recs[:half], enable_idempotence=True, compression_type="snappy")
        d2 = await produce_all(runnel.bootstrap, topic, recs[half:], enable_idempotence=True, compression_type="snappy")
        delivered = {**d1, **d2}
        for r in recs:
            assert delivered[r.i] == (r.partition, r.i // PARTITIONS), f"record {r.i} acked at {delivered[r.i]}"
        exp = by_partition(recs)
        c = await new_consumer(runnel.bootstrap)
        try:
            tps = [TopicPartition(topic, p) for p in exp]
            c.assign(tps)
            await c.seek_to_beginning(*tps)
            check_partition_streams(exp, await consume_assigned(c, {p: len(e) for p, e in exp.items()}))
        finally:
            await c.stop()

    asyncio.run(main())


class _Listener(ConsumerRebalanceListener):
    def __init__(self, own, member):
        self.own, self.member = own, member

    async def on_partitions_revoked(self, revoked):
        self.own.revoked(self.member, [tp.partition for tp in revoked])

    async def on_partitions_assigned(self, assigned):
        self.own.assigned(self.member, [tp.partition for tp in assigned])


def test_consumer_group(fresh_runnel):
    r = fresh_runnel
    topic, group = unique("aio-group"), unique("aio-group")
    nparts, per_part = 12, 250
    members = ["c0", "c1", "c2"]
    own = Ownership(members)
    received = {m: [] for m in members}
    events_at_stable = [0]

    async def phase1():
        a = await new_admin(r)
        try:
            assert await create_topic(a, topic, nparts) == 0
            stop = asyncio.Event()

            async def run(m):
                c = AIOKafkaConsumer(bootstrap_servers=r.bootstrap, group_id=group, client_id=m, enable_auto_commit=False,
                                     auto_offset_reset="earliest", session_timeout_ms=30000, heartbeat_interval_ms=1000)
                await c.start()
                try:
                    c.subscribe([topic], listener=_Listener(own, m))
                    dirty = False
                    while not stop.is_set():
                        for tp, msgs in (await c.getmany(timeout_ms=200, max_records=500)).items():
                            received[m].extend((x.partition, x.offset, x.value) for x in msgs)
                            dirty = dirty or bool(msgs)
                        if dirty:
                            try:
                                await c.commit()
                                dirty = False
                            except (aerr.CommitFailedError, aerr.RebalanceInProgressError, aerr.IllegalGenerationError,
                                    aerr.UnknownMemberIdError):
                                pass  # legal during a rebalance; retried next loop or by the next owner
                finally:
                    await c.stop()

            tasks = [asyncio.create_task(run(m)) for m in members]

            async def check_tasks():
                for t in tasks:
                    if t.done():
                        t.result()  # raises the member's error

            try:
                async def stable():
                    await check_tasks()
                    return own.stable(nparts)

                await poll_until(stable, DEADLINE_S, lambda: f"stable 3-way assignment: {own.describe()}")
                events_at_stable[0] = own.n_events()

                p = AIOKafkaProducer(bootstrap_servers=r.bootstrap, acks="all", linger_ms=5)
                await p.start()
                try:
                    futs = [await p.send(topic, key=f"key-{i}".encode(), value=f"group-{i}".encode(), partition=i % nparts)
                            for i in range(nparts * per_part)]
                    await asyncio.wait_for(asyncio.gather(*futs), DEADLINE_S)
                finally:
                    await p.stop()
                want = {f"group-{i}".encode() for i in range(nparts * per_part)}

                def seen():
                    return {v for m in members for (_, _, v) in received[m]}

                async def all_seen():
                    await check_tasks()
                    return seen() >= want

                await poll_until(all_seen, DEADLINE_S, lambda: f"all records consumed: {len(seen())}/{len(want)}")

                async def committed():
                    res = await a.list_consumer_group_offsets(group)
                    return {tp.partition: om.offset for tp, om in res.items() if tp.topic == topic}

                async def all_committed():
                    await check_tasks()
                    return await committed() == {q: per_part for q in range(nparts)}

                await poll_until(all_committed, DEADLINE_S, "committed offsets at the end of every partition")
            finally:
                stop.set()
                await asyncio.wait_for(asyncio.gather(*tasks), 60)
        finally:
            await a.close()

    asyncio.run(phase1())
    assert not own.violations, own.violations
    all_got = [x for m in members for x in received[m]]
    for part, off, v in all_got:
        assert v == f"group-{off * nparts + part}".encode(), f"partition {part} offset {off} holds {v!r}"
    dups = len(all_got) - len({(q, o) for q, o, _ in all_got})
    if own.n_events() == events_at_stable[0]:
        assert dups == 0, f"{dups} records consumed twice without any rebalance"

    r.restart()
    extra = 5

    async def phase2():
        a = await new_admin(r)
        try:
            res = await a.list_consumer_group_offsets(group)
            assert {tp.partition: om.offset for tp, om in res.items()} == {q: per_part for q in range(nparts)}
        finally:
            await a.close()
        p = AIOKafkaProducer(bootstrap_servers=r.bootstrap, acks="all", linger_ms=5)
        await p.start()
        try:
            futs = [await p.send(topic, key=b"after", value=f"after-{i}".encode(), partition=i % nparts)
                    for i in range(nparts * extra)]
            await asyncio.gather(*futs)
        finally:
            await p.stop()
        c = AIOKafkaConsumer(bootstrap_servers=r.bootstrap, group_id=group, enable_auto_commit=False,
                             auto_offset_reset="earliest")
        await c.start()
        try:
            c.subscribe([topic])
            got = {q: [] for q in range(nparts)}
            want_n = {q: extra for q in range(nparts)}
            deadline = time.monotonic() + DEADLINE_S
            while not counts_reached(got, want_n):
                assert time.monotonic() < deadline, f"resumed consumer: {progress(got, want_n)}"
                for tp, msgs in (await c.getmany(timeout_ms=500)).items():
                    got[tp.partition].extend((x.offset, x.value) for x in msgs)
            for q, lst in got.items():
                assert [o for o, _ in lst] == list(range(per_part, per_part + extra)), f"partition {q} resumed at {lst[:3]}"
                assert all(v.startswith(b"after-") for _, v in lst)
        finally:
            await c.stop()

    asyncio.run(phase2())
