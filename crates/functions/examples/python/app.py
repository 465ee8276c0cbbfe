"""The enrich function in Python, for runnel's `function` world (../../wit/function.wit).

For each event: looks up the event's key in the materialized table CUSTOMERS and returns
an event to topic "enriched" with the same key and headers, whose value is the event's
JSON object with one more field, `customer`: the row, or null when the key has no row
(or the event has no key). A null value (tombstone) counts as `{}`; a JSON value that is
not an object is wrapped as `{"value": ...}`. A value that is not UTF-8 JSON, or a failed
table call, fails the whole batch with an error message, so the platform retries it and
then dead-letters it. The same behaviour as ../js/app.js, byte for byte on the output.

Built by componentize-py (see ../build.sh); `wit_world` is the module it generates from
the WIT.
"""

import json
from typing import Any, List, Optional

import wit_world
from wit_world.imports import host
from wit_world.imports.types import Event, OutputEvent
from componentize_py_types import Err

TABLE = "CUSTOMERS"
OUTPUT_TOPIC = "enriched"


def _dumps(value: Any) -> bytes:
    # Compact and not ASCII-escaped, as JavaScript's JSON.stringify writes it.
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _parse_value(event: Event) -> dict:
    if event.value is None:
        return {}
    try:
        parsed = json.loads(event.value.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise Err(
            f"event at offset {event.offset} of {event.topic}/{event.partition}: "
            "value is not UTF-8 JSON"
        )
    if not isinstance(parsed, dict):
        return {"value": parsed}
    return parsed


def _lookup(key: Optional[bytes]) -> Any:
    if key is None:
        return None
    try:
        row = host.table_get(TABLE, key)
    except Err as e:
        raise Err(f"table-get {TABLE}: {e.value}")
    if row is None:
        return None
    try:
        return json.loads(row)
    except ValueError:
        raise Err(f"table-get {TABLE}: row is not JSON")


class WitWorld(wit_world.WitWorld):
    def handle(self, events: List[Event]) -> List[OutputEvent]:
        outputs = []
        for event in events:
            value = _parse_value(event)
            value["customer"] = _lookup(event.key)
            outputs.append(OutputEvent(OUTPUT_TOPIC, event.key, _dumps(value), event.headers))
        return outputs
