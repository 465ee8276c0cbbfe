"""Test data and checks shared by every Python client's tests.

Records are deterministic: record i goes to partition i % partitions with key `key-<i>`, a value
naming the codec and i, five headers (one key repeated, one binary value) and the explicit
CreateTime timestamp base_ts + i. So for every partition the expected stream, its offsets and the
answer of a by-time offset lookup are known exactly.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

N = 10_000
PARTITIONS = 3
CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
DEADLINE_S = 60.0  # how long any "wait for the records" loop may take

CREATE_TIME = "CreateTime"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def now_ms() -> int:
    return int(time.time() * 1000)


def base_timestamp() -> int:
    # Ten minutes in the past: well inside retention, never in the future (brokers may reject
    # timestamps too far ahead), and the N records span only N ms after it.
    return (now_ms() - 600_000) // 1000 * 1000


@dataclass(frozen=True)
class Rec:
    i: int
    partition: int
    key: bytes
    value: bytes
    headers: tuple  # ((str, bytes), ...) in order, duplicates allowed
    ts: int


@dataclass(frozen=True)
class Got:
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple
    ts: int
    ts_type: str


def make_records(tag: str, n: int = N, partitions: int = PARTITIONS, base_ts: int | None = None) -> list[Rec]:
    base_ts = base_timestamp() if base_ts is None else base_ts
    out = []
    filler = b"0123456789abcdefghij"
    for i in range(n):
        value = f"{tag}|value-{i}|".encode() + filler * (i % 25)
        headers = (
            ("idx", str(i).encode()),
            ("tag", tag.encode()),
            ("dup", b"first"),
            ("dup", b"second"),
            ("bin", bytes([i % 256, 0, 255])),
        )
        out.append(Rec(i, i % partitions, f"key-{i:06d}".encode(), value, headers, base_ts + i))
    return out


def by_partition(recs: list[Rec], partitions: int = PARTITIONS) -> dict[int, list[Rec]]:
    out: dict[int, list[Rec]] = {p: [] for p in range(partitions)}
    for r in recs:
        out[r.partition].append(r)
    return out


def first_offset_at_or_after(recs_in_partition: list[Rec], ts: int) -> int | None:
    """Offset (position, since offsets start at 0) of the first record with timestamp >= ts."""
    for pos, r in enumerate(recs_in_partition):
        if r.ts >= ts:
            return pos
    return None


def _fmt(x) -> str:
    s = repr(x)
    return s if len(s) < 200 else s[:200] + "..."


def check_partition_streams(
    expected: dict[int, list[Rec]],
    got: dict[int, list[Got]],
    start_offsets: dict[int, int] | None = None,
    check_ts_type: bool = True,
) -> None:
    """Assert that each partition's consumed stream is exactly the expected records, in order,
    at consecutive offsets starting at start_offsets[p] (0 by default), with equal key, value,
    headers (order and duplicates included) and CreateTime timestamp."""
    problems = []
    for p, exp in expected.items():
        start = (start_offsets or {}).get(p, 0)
        stream = got.get(p, [])
        if len(stream) != len(exp):
            have = {g.offset for g in stream}
            missing = [start + k for k in range(len(exp)) if start + k not in have]
            dup = [o for o, c in _counts(g.offset for g in stream).items() if c > 1]
            problems.append(
                f"partition {p}: got {len(stream)} records, expected {len(exp)}; "
                f"missing offsets (first 10) {missing[:10]}; duplicated offsets (first 10) {dup[:10]}"
            )
        for k, (e, g) in enumerate(zip(exp, stream)):
            diffs = []
            if g.offset != start + k:
                diffs.append(f"offset {g.offset} != {start + k}")
            if g.key != e.key:
                diffs.append(f"key {_fmt(g.key)} != {_fmt(e.key)}")
            if g.value != e.value:
                diffs.append(f"value {_fmt(g.value)} != {_fmt(e.value)}")
            if tuple(g.headers) != e.headers:
                diffs.append(f"headers {_fmt(g.headers)} != {_fmt(e.headers)}")
            if g.ts != e.ts:
                diffs.append(f"timestamp {g.ts} != {e.ts}")
            if check_ts_type and g.ts_type != CREATE_TIME:
                diffs.append(f"timestamp type {g.ts_type} != {CREATE_TIME}")
            if diffs:
                problems.append(f"partition {p} position {k} (record i={e.i}): " + "; ".join(diffs))
            if len(problems) > 20:
                break
    assert not problems, "consumed records differ from produced ones:\n  " + "\n  ".join(problems[:20])


def _counts(it):
    d: dict = {}
    for x in it:
        d[x] = d.get(x, 0) + 1
    return d


def counts_reached(got: dict[int, list], want: dict[int, int]) -> bool:
    return all(len(got.get(p, [])) >= n for p, n in want.items())


def progress(got: dict[int, list], want: dict[int, int]) -> str:
    return ", ".join(f"p{p}: {len(got.get(p, []))}/{n}" for p, n in sorted(want.items()))


class Ownership:
    """Tracks which consumer of a group owns which partitions, from rebalance callbacks.

    On every assignment it checks that no newly assigned partition is still owned by another
    member: with the classic (eager) protocol every member revokes before rejoining, and the new
    assignment is handed out only after all members have rejoined, so a partition has exactly one
    owner per generation."""

    def __init__(self, members: list[str]):
        import threading

        self.lock = threading.Lock()
        self.owned: dict[str, set[int]] = {m: set() for m in members}
        self.violations: list[str] = []
        self.events: list[tuple[float, str, str, list[int]]] = []

    def assigned(self, member: str, partitions) -> None:
        parts = sorted(int(p) for p in partitions)
        with self.lock:
            self.events.append((time.monotonic(), member, "assign", parts))
            for other, owned in self.owned.items():
                if other != member:
                    clash = owned.intersection(parts)
                    if clash:
                        self.violations.append(
                            f"{member} was assigned {sorted(clash)} while {other} still owned them"
                        )
            self.owned[member].update(parts)

    def revoked(self, member: str, partitions) -> None:
        parts = sorted(int(p) for p in partitions)
        with self.lock:
            self.events.append((time.monotonic(), member, "revoke", parts))
            self.owned[member].difference_update(parts)

    def snapshot(self) -> dict[str, set[int]]:
        with self.lock:
            return {m: set(s) for m, s in self.owned.items()}

    def stable(self, total: int) -> bool:
        """Every member owns something, no partition has two owners, every partition has one."""
        snap = self.snapshot()
        union = set().union(*snap.values())
        disjoint = sum(len(s) for s in snap.values()) == len(union)
        return disjoint and union == set(range(total)) and all(snap.values())

    def describe(self) -> str:
        with self.lock:
            owned = {m: sorted(s) for m, s in self.owned.items()}
            ev = [f"{m} {k} {p}" for _, m, k, p in self.events[-12:]]
        return f"owned={owned}; last events={ev}"

    def n_events(self) -> int:
        with self.lock:
            return len(self.events)
