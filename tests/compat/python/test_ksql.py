"""ksqlDB's REST API with a ksqlDB client from PyPI (ksql-python-ng): create a stream, start a
persistent query, read a push query and a pull query, and see errors as ksqlDB reports them.
The client talks HTTP/1.1 (`/ksql`, `/query`, `/info`); records are produced with
confluent-kafka, as an application would.
"""

from __future__ import annotations

import json

import pytest
from confluent_kafka import Producer
from ksql import KSQLAPI
from ksql.errors import KSQLError

from common import DEADLINE_S, unique
from harness import wait_until


def rows_of(chunks) -> tuple[dict, list[list]]:
    """The header and rows of a /query answer (a JSON array streamed in chunks)."""
    text = "".join(chunks)
    doc = json.loads(text)
    header = doc[0]["header"]
    rows = [item["row"]["columns"] for item in doc[1:] if "row" in item]
    return header, rows


def test_stream_persistent_push_and_pull_queries(runnel):
    client = KSQLAPI(runnel.http_url, timeout=60)
    assert client.get_ksql_version() == "0.29.0"
    topic = unique("orders")
    client.ksql(
        f"CREATE STREAM orders_{topic[-8:]} (id BIGINT KEY, customer STRING, region STRING, amount DOUBLE) "
        f"WITH (KAFKA_TOPIC='{topic}', VALUE_FORMAT='JSON', PARTITIONS=3);"
    )
    stream = f"ORDERS_{topic[-8:].upper()}"
    status = client.ksql(
        f"CREATE STREAM eu_{stream} AS SELECT id, customer, amount * 2 AS doubled FROM {stream} WHERE region = 'EU' EMIT CHANGES;"
    )
    assert status[0]["commandStatus"]["status"] == "SUCCESS"
    query_id = status[0]["commandStatus"]["queryId"]
    assert query_id.startswith(f"CSAS_EU_{stream}")

    # An application produces JSON orders keyed by id (KAFKA format: 8-byte big-endian).
    p = Producer({"bootstrap.servers": runnel.bootstrap})
    for i in range(30):
        region = "EU" if i % 3 == 0 else "US"
        value = json.dumps({"customer": f"c{i % 5}", "region": region, "amount": i + 0.5})
        p.produce(topic, key=i.to_bytes(8, "big"), value=value.encode())
    assert p.flush(DEADLINE_S) == 0

    # Push query over the derived stream, from the beginning.
    chunks = client.query(
        f"SELECT * FROM eu_{stream} EMIT CHANGES LIMIT 10;", stream_properties={"auto.offset.reset": "earliest"}
    )
    header, rows = rows_of(chunks)
    assert header["schema"] == "`ID` BIGINT, `CUSTOMER` STRING, `DOUBLED` DOUBLE"
    assert sorted(r[0] for r in rows) == list(range(0, 30, 3))
    assert all(r[2] == (r[0] + 0.5) * 2 for r in rows)

    queries = client.ksql("SHOW QUERIES;")[0]["queries"]
    assert any(q["id"] == query_id and q["state"] == "RUNNING" for q in queries)
    described = client.ksql(f"DESCRIBE eu_{stream};")[0]["sourceDescription"]
    assert [f["name"] for f in described["fields"]] == ["ID", "CUSTOMER", "DOUBLED"]
    assert described["fields"][0]["type"] == "KEY"
    assert described["writeQueries"][0]["id"] == query_id


def test_table_pull_query_by_key(runnel):
    client = KSQLAPI(runnel.http_url, timeout=60)
    topic = unique("customers")
    table = f"CUSTOMERS_{topic[-8:].upper()}"
    client.ksql(
        f"CREATE TABLE {table} (id INT PRIMARY KEY, name STRING, type STRING) "
        f"WITH (KAFKA_TOPIC='{topic}', VALUE_FORMAT='JSON', PARTITIONS=2);"
    )
    client.ksql(f"INSERT INTO {table} (id, name, type) VALUES (5, 'Ada', 'Gold');")
    client.ksql(f"INSERT INTO {table} (id, name, type) VALUES (5, 'Ada', 'Platinum');")
    client.ksql(f"INSERT INTO {table} (id, name, type) VALUES (6, 'Bob', 'Gold');")

    def pulled():
        header, rows = rows_of(client.query(f"SELECT * FROM {table} WHERE id = 5;"))
        return rows == [[5, "Ada", "Platinum"]] and header

    header = wait_until(pulled, DEADLINE_S, "the pull query to see the latest row for key 5")
    assert header["schema"] == "`ID` INTEGER, `NAME` STRING, `TYPE` STRING"


def test_errors_are_ksqldb_errors(runnel):
    client = KSQLAPI(runnel.http_url, timeout=60)
    with pytest.raises(KSQLError) as e:
        client.ksql("CREATE STREAM broken (a INT) WITH (KAFKA_TOPIC='nope', VALUE_FORMAT='JSON');")
    assert e.value.error_code == 40001
    assert "PARTITIONS" in str(e.value)
    client.ksql(f"CREATE STREAM typed_{unique('t')[-6:]} (a INT) WITH (KAFKA_TOPIC='{unique('typed')}', VALUE_FORMAT='JSON', PARTITIONS=1);")
    with pytest.raises(KSQLError) as e:
        client.ksql("SELECT * FROM no_such_stream EMIT CHANGES;")
    assert "does not exist" in str(e.value)


def test_http2_inserts_stream_and_query_stream(runnel):
    """ksql-python-ng speaks HTTP/2 (h2c, prior knowledge) for /inserts-stream and /query-stream."""
    client = KSQLAPI(runnel.http_url, timeout=60)
    topic = unique("h2")
    stream = f"H2_{topic[-8:].upper()}"
    client.ksql(f"CREATE STREAM {stream} (id INT KEY, v STRING) WITH (KAFKA_TOPIC='{topic}', VALUE_FORMAT='JSON', PARTITIONS=1);")
    acks = client.inserts_stream(stream, [{"ID": 1, "V": "a"}, {"ID": 2, "V": "b"}, {"NOPE": 1}])
    assert [a["status"] for a in acks] == ["ok", "ok", "error"]
    assert "NOPE" in acks[2]["message"]
    rows = list(
        client.query(
            f"SELECT * FROM {stream} EMIT CHANGES LIMIT 2;",
            stream_properties={"auto.offset.reset": "earliest"},
            use_http2=True,
            parse=True,
        )
    )
    assert rows == [{"ID": 1, "V": "a"}, {"ID": 2, "V": "b"}]
