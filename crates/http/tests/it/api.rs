//! Every endpoint, with its success and error answers.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{FetchRequest, OffsetCommitRequest, ProduceRequest};
use runnel_http::limits::REQUEST_BODY_BYTES_MAX;
use runnel_records::{BatchBuilder, Compression, Record};
use serde_json::{Value, json};

use crate::kafka::{Client, str_bytes, topic_name};
use crate::{Server, request};

fn create(server: &Server, name: &str, partitions: u32) {
    let r = server.post("/v1/topics", &json!({ "name": name, "partitions": partitions }));
    assert_eq!(r.status, 201, "{}", r.text());
}

#[test]
fn healthz_is_ready_only_when_told() {
    let server = Server::start();
    server.get("/healthz").assert_error(503);
    server.readiness.set(true);
    let r = server.get("/healthz");
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), json!({ "status": "ready" }));
}

#[test]
fn unknown_paths_and_methods_are_json_errors() {
    let server = Server::start();
    server.get("/nope").assert_error(404);
    let r = server.request("PUT", "/v1/topics", Some(b"{}"));
    r.assert_error(405);
    assert!(r.header("allow").is_some_and(|a| a.contains("GET") && a.contains("POST")), "{r:?}");
}

#[test]
fn topics_are_created_listed_described_altered_and_deleted() {
    let server = Server::start();
    let r = server
        .post("/v1/topics", &json!({ "name": "orders", "partitions": 3, "configs": { "retention.ms": "60000" } }));
    assert_eq!(r.status, 201, "{}", r.text());
    let created = r.json();
    assert_eq!(created["name"], "orders");
    assert_eq!(created["partitions"].as_array().unwrap().len(), 3);
    assert_eq!(created["id"].as_str().unwrap().len(), 32);

    let list = server.get("/v1/topics").json();
    let names: Vec<&str> = list["topics"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert!(names.contains(&"orders") && names.contains(&"__consumer_offsets"), "{list}");

    let described = server.get("/v1/topics/orders").json();
    let partition = &described["partitions"][1];
    assert_eq!((partition["partition"].as_u64(), partition["high_watermark"].as_i64()), (Some(1), Some(0)));
    let config =
        |d: &Value, name: &str| d["configs"].as_array().unwrap().iter().find(|c| c["name"] == name).cloned().unwrap();
    assert_eq!(
        config(&described, "retention.ms"),
        json!({ "name": "retention.ms", "value": "60000", "is_default": false })
    );

    // Set one config, reset another to its default; the rest keep their values.
    let altered = server.patch(
        "/v1/topics/orders/configs",
        &json!({ "configs": { "cleanup.policy": "compact", "retention.ms": null } }),
    );
    assert_eq!(altered.status, 200, "{}", altered.text());
    let altered = altered.json();
    assert_eq!(config(&altered, "cleanup.policy")["value"], "compact");
    assert_eq!(config(&altered, "retention.ms")["is_default"], true);
    assert_eq!(server.log.topic("orders").unwrap().config.cleanup_policy, runnel_log::CleanupPolicy::Compact);

    let r = server.delete("/v1/topics/orders");
    assert_eq!(r.status, 204);
    assert!(r.body.is_empty());
    assert!(server.log.topic("orders").is_none());
    server.delete("/v1/topics/orders").assert_error(404);
}

#[test]
fn topic_errors() {
    let server = Server::start();
    create(&server, "dup", 1);
    server.post("/v1/topics", &json!({ "name": "dup" })).assert_error(409);
    server.post("/v1/topics", &json!({ "name": "bad name!" })).assert_error(422);
    server.post("/v1/topics", &json!({ "name": ".." })).assert_error(422);
    server.post("/v1/topics", &json!({ "name": "__mine" })).assert_error(422);
    server.post("/v1/topics", &json!({ "name": "zero", "partitions": 0 })).assert_error(422);
    server.post("/v1/topics", &json!({ "name": "cfg", "configs": { "no.such": "1" } })).assert_error(422);
    server.post("/v1/topics", &json!({ "name": "cfg", "configs": { "retention.ms": "soon" } })).assert_error(422);
    server.post("/v1/topics", &json!({ "name": "extra", "colour": "red" })).assert_error(400);
    server.post("/v1/topics", &json!({ "partitions": 2 })).assert_error(400);
    server.post("/v1/topics", &json!(["array", 1])).assert_error(400);
    // The longest name the HTTP API creates is one the log can also delete.
    let longest = "n".repeat(runnel_http::limits::TOPIC_NAME_BYTES_MAX);
    create(&server, &longest, 1);
    assert_eq!(server.delete(&format!("/v1/topics/{longest}")).status, 204);
    server.post("/v1/topics", &json!({ "name": format!("{longest}n") })).assert_error(422);
    server.request("POST", "/v1/topics", Some(b"{\"name\": ")).assert_error(400);
    server.request("POST", "/v1/topics", Some(&vec![b' '; REQUEST_BODY_BYTES_MAX + 1])).assert_error(413);
    assert!(server.log.topic("cfg").is_none() && server.log.topic("zero").is_none());

    server.get("/v1/topics/missing").assert_error(404);
    server.delete("/v1/topics/__consumer_offsets").assert_error(422);
    server.patch("/v1/topics/missing/configs", &json!({ "configs": {} })).assert_error(404);
    server.patch("/v1/topics/dup/configs", &json!({ "configs": { "no.such": "1" } })).assert_error(422);
    server.patch("/v1/topics/dup/configs", &json!({ "configs": { "no.such": null } })).assert_error(422);
    server.patch("/v1/topics/dup/configs", &json!({ "retention.ms": "1" })).assert_error(400);
    server.patch("/v1/topics/__consumer_offsets/configs", &json!({ "configs": {} })).assert_error(422);
}

#[test]
fn records_are_produced_and_consumed_as_json() {
    let server = Server::start();
    create(&server, "events", 2);
    let r = server.post(
        "/v1/topics/events/records",
        &json!({ "records": [
            { "partition": 1, "key": "alice", "value": "{\"amount\": 12}", "headers": [{ "key": "source", "value": "web" }], "timestamp": 1000 },
            { "partition": 1, "key": null, "value": "second", "timestamp": 2000 },
            { "partition": 1, "key": "tomb", "value": null, "headers": [{ "key": "h" }], "timestamp": 3000 },
            { "partition": 0, "value": "elsewhere" }
        ]}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json(),
        json!({ "topic": "events", "offsets": [
            { "partition": 1, "offset": 0 }, { "partition": 1, "offset": 1 }, { "partition": 1, "offset": 2 },
            { "partition": 0, "offset": 0 }
        ]})
    );
    // Acknowledged means fsynced.
    assert_eq!(server.log.partition("events", 1).unwrap().durable_offset(), 3);

    let all = server.get("/v1/topics/events/records?partition=1").json();
    assert_eq!(all["next_offset"], 3);
    assert_eq!(all["high_watermark"], 3);
    let records = all["records"].as_array().unwrap();
    assert_eq!(records.len(), 3);
    assert_eq!(
        records[0],
        json!({ "partition": 1, "offset": 0, "timestamp": 1000, "key": "alice", "value": "{\"amount\": 12}",
                "headers": [{ "key": "source", "value": "web" }] })
    );
    assert_eq!(records[2]["value"], Value::Null);
    assert_eq!(records[2]["headers"], json!([{ "key": "h", "value": null }]));

    let page = server.get("/v1/topics/events/records?partition=1&offset=1&limit=1").json();
    assert_eq!(page["records"].as_array().unwrap().len(), 1);
    assert_eq!((page["records"][0]["offset"].as_i64(), page["next_offset"].as_i64()), (Some(1), Some(2)));

    let by_time = server.get("/v1/topics/events/records?partition=1&timestamp=1500").json();
    let offsets: Vec<i64> =
        by_time["records"].as_array().unwrap().iter().map(|r| r["offset"].as_i64().unwrap()).collect();
    assert_eq!(offsets, vec![1, 2]);
    let after_all = server.get("/v1/topics/events/records?partition=1&timestamp=9999").json();
    assert_eq!((after_all["records"].as_array().unwrap().len(), after_all["next_offset"].as_i64()), (0, Some(3)));
    let past_end = server.get("/v1/topics/events/records?partition=1&offset=50").json();
    assert!(past_end["records"].as_array().unwrap().is_empty());
}

#[test]
fn binary_data_goes_through_base64() {
    let server = Server::start();
    create(&server, "bin", 1);
    let key = [0u8, 159, 146, 150];
    let value = [255u8, 0, 1];
    let r = server.post(
        "/v1/topics/bin/records",
        &json!({ "encoding": "base64", "records": [
            { "key": BASE64.encode(key), "value": BASE64.encode(value), "headers": [{ "key": "k", "value": BASE64.encode([7u8]) }] }
        ]}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let got = server.get("/v1/topics/bin/records?encoding=base64").json();
    let record = &got["records"][0];
    assert_eq!(BASE64.decode(record["key"].as_str().unwrap()).unwrap(), key);
    assert_eq!(BASE64.decode(record["value"].as_str().unwrap()).unwrap(), value);
    assert_eq!(record["headers"][0]["value"], BASE64.encode([7u8]));
    // Not UTF-8: the string encoding refuses it and says what to do.
    let refused = server.get("/v1/topics/bin/records").assert_error(422);
    assert!(refused["message"].as_str().unwrap().contains("encoding=base64"), "{refused}");
    server
        .post("/v1/topics/bin/records", &json!({ "encoding": "base64", "records": [{ "value": "not base64!" }] }))
        .assert_error(422);
}

#[test]
fn ndjson_streams_one_record_per_line() {
    let server = Server::start();
    create(&server, "lines", 1);
    let records: Vec<Value> = (0..250).map(|i| json!({ "key": format!("k{i}"), "value": format!("v{i}") })).collect();
    assert_eq!(server.post("/v1/topics/lines/records", &json!({ "records": records })).status, 200);
    let r = server.get("/v1/topics/lines/records?format=ndjson&offset=10&limit=200");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/x-ndjson"));
    let lines: Vec<Value> = r.text().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 200);
    assert_eq!(lines[0]["offset"], 10);
    assert_eq!(lines[0]["value"], "v10");
    assert_eq!(lines[199]["offset"], 209);
}

#[test]
fn keyed_records_land_where_kafka_would_put_them() {
    let server = Server::start();
    create(&server, "keyed", 12);
    let r = server.post(
        "/v1/topics/keyed/records",
        &json!({ "records": [{ "key": "21", "value": "a" }, { "key": "21", "value": "b" }, { "key": "foobar", "value": "c" }] }),
    );
    let offsets = r.json()["offsets"].clone();
    // Kafka's default partitioner: (murmur2(key) & 0x7fffffff) % partitions.
    assert_eq!(offsets[0]["partition"], (-973932308i32 & 0x7fff_ffff) % 12);
    assert_eq!(offsets[1]["partition"], offsets[0]["partition"]);
    assert_eq!(offsets[2]["partition"], (-790332482i32 & 0x7fff_ffff) % 12);
}

#[test]
fn record_errors() {
    let server = Server::start();
    create(&server, "rec", 1);
    let one = json!({ "records": [{ "value": "x" }] });
    server.post("/v1/topics/missing/records", &one).assert_error(404);
    server.post("/v1/topics/rec/records", &json!({ "records": [{ "partition": 5, "value": "x" }] })).assert_error(404);
    server.post("/v1/topics/rec/records", &json!({ "records": [] })).assert_error(422);
    server.post("/v1/topics/__consumer_offsets/records", &one).assert_error(422);
    server.post("/v1/topics/rec/records", &json!({ "records": [{ "value": 12 }] })).assert_error(400);
    server.post("/v1/topics/rec/records", &json!({ "records": [{ "value": "x", "colour": 1 }] })).assert_error(400);
    server.request("POST", "/v1/topics/rec/records", Some(b"not json")).assert_error(400);
    // Serde would take arrays for structs (fields in order); the API takes objects only.
    server.post("/v1/topics/rec/records", &json!({ "records": [[null, "x"]] })).assert_error(400);
    server.post("/v1/topics/rec/records", &json!({ "records": [{ "headers": [["k", "v"]] }] })).assert_error(400);
    server.post("/v1/topics/rec/records", &json!(["string", [{ "value": "x" }]])).assert_error(400);
    let big = "x".repeat(REQUEST_BODY_BYTES_MAX);
    server.post("/v1/topics/rec/records", &json!({ "records": [{ "value": big }] })).assert_error(413);
    // A compacted topic takes keyed records only.
    let r = server.patch("/v1/topics/rec/configs", &json!({ "configs": { "cleanup.policy": "compact" } }));
    assert_eq!(r.status, 200);
    let e =
        server.post("/v1/topics/rec/records", &json!({ "records": [{ "key": "k", "value": "x" }, { "value": "x" }] }));
    assert!(e.assert_error(422)["message"].as_str().unwrap().contains("record 1 has no key"));
    let r = server.post("/v1/topics/rec/records", &json!({ "records": [{ "key": "k", "value": "x" }] }));
    assert_eq!(r.status, 200);
    server.patch("/v1/topics/rec/configs", &json!({ "configs": { "cleanup.policy": null } }));
    // A batch over the topic's max.message.bytes is refused whole.
    let r = server.patch("/v1/topics/rec/configs", &json!({ "configs": { "max.message.bytes": "1000" } }));
    assert_eq!(r.status, 200);
    server.post("/v1/topics/rec/records", &json!({ "records": [{ "value": "y".repeat(2000) }] })).assert_error(413);
    assert_eq!(server.log.partition("rec", 0).unwrap().high_watermark(), 1);

    server.get("/v1/topics/missing/records").assert_error(404);
    server.get("/v1/topics/rec/records?partition=3").assert_error(404);
    server.get("/v1/topics/rec/records?offset=0&timestamp=0").assert_error(400);
    server.get("/v1/topics/rec/records?limit=0").assert_error(400);
    server.get("/v1/topics/rec/records?limit=100000").assert_error(400);
    server.get("/v1/topics/rec/records?offset=abc").assert_error(400);
    server.get("/v1/topics/rec/records?offset=-1").assert_error(400);
    server.get("/v1/topics/rec/records?format=xml").assert_error(400);
    server.get("/v1/topics/rec/records?colour=red").assert_error(400);

    // Below the log start offset (records deleted): 400, with the range in the message.
    let r = server.post("/v1/topics/rec/configs", &json!({}));
    r.assert_error(405);
    let values: Vec<Value> = (0..3).map(|i| json!({ "value": format!("{i}") })).collect();
    server.patch("/v1/topics/rec/configs", &json!({ "configs": { "max.message.bytes": null } }));
    assert_eq!(server.post("/v1/topics/rec/records", &json!({ "records": values })).status, 200);
    server.log.partition("rec", 0).unwrap().delete_records_before(3).unwrap();
    let e = server.get("/v1/topics/rec/records?offset=2").assert_error(400);
    assert!(e["message"].as_str().unwrap().contains("log start offset 3"), "{e}");
    let from_start = server.get("/v1/topics/rec/records").json();
    assert_eq!(from_start["records"][0]["offset"], 3);
}

fn kafka_produce(client: &mut Client, topic: &str, values: &[&str]) {
    let mut builder = BatchBuilder::new();
    for v in values {
        builder.push(Record::new(None::<Vec<u8>>, Some(v.as_bytes().to_vec())).at(runnel_log::now_ms()));
    }
    let batch = builder.build(Compression::None).unwrap();
    let request = ProduceRequest::default().with_acks(-1).with_timeout_ms(5000).with_topic_data(vec![
        TopicProduceData::default()
            .with_name(topic_name(topic))
            .with_partition_data(vec![PartitionProduceData::default().with_index(0).with_records(Some(batch))]),
    ]);
    let response = client.call(9, &request);
    assert_eq!(response.responses[0].partition_responses[0].error_code, 0);
}

fn kafka_fetch(client: &mut Client, topic: &str, offset: i64) -> usize {
    let request = FetchRequest::default().with_max_wait_ms(0).with_max_bytes(1 << 20).with_topics(vec![
        FetchTopic::default().with_topic(topic_name(topic)).with_partitions(vec![
            FetchPartition::default().with_partition(0).with_fetch_offset(offset).with_partition_max_bytes(1 << 20),
        ]),
    ]);
    let response = client.call(12, &request);
    response.responses[0].partitions[0].records.as_ref().map_or(0, |r| r.len())
}

fn kafka_commit(client: &mut Client, group: &str, topic: &str, offset: i64) {
    let request = OffsetCommitRequest::default()
        .with_group_id(str_bytes(group).into())
        .with_generation_id_or_member_epoch(-1)
        .with_member_id(str_bytes(""))
        .with_topics(vec![OffsetCommitRequestTopic::default().with_name(topic_name(topic)).with_partitions(vec![
            OffsetCommitRequestPartition::default().with_partition_index(0).with_committed_offset(offset),
        ])]);
    let response = client.call(8, &request);
    assert_eq!(response.topics[0].partitions[0].error_code, 0);
}

#[test]
fn groups_are_listed_and_described_with_lag() {
    let server = Server::start();
    create(&server, "pay", 1);
    let values: Vec<Value> = (0..10).map(|i| json!({ "value": format!("{i}") })).collect();
    assert_eq!(server.post("/v1/topics/pay/records", &json!({ "records": values })).status, 200);
    assert_eq!(server.get("/v1/groups").json(), json!({ "groups": [] }));
    server.get("/v1/groups/audit").assert_error(404);

    let mut kafka = Client::connect(server.kafka);
    kafka_commit(&mut kafka, "audit", "pay", 4);
    let list = server.get("/v1/groups").json();
    assert_eq!(list["groups"][0]["group_id"], "audit");
    assert_eq!(list["groups"][0]["state"], "Empty");
    let d = server.get("/v1/groups/audit").json();
    assert_eq!(d["lag"], 6);
    assert_eq!(
        d["offsets"][0],
        json!({ "topic": "pay", "partition": 0, "committed_offset": 4, "high_watermark": 10, "lag": 6, "metadata": "" })
    );
    assert_eq!(d["leader"], Value::Null);
    assert_eq!(d["members"], json!([]));
}

/// The value of one sample in a Prometheus text exposition (0 if absent).
fn sample(text: &str, name_and_labels: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name_and_labels).and_then(|rest| rest.strip_prefix(' ')))
        .map_or(0.0, |v| v.parse().unwrap())
}

#[test]
fn metrics_count_http_and_kafka_traffic() {
    let server = Server::start();
    create(&server, "m", 1);
    let before = server.get("/metrics");
    assert_eq!(before.status, 200);
    assert_eq!(before.header("content-type"), Some("text/plain; version=0.0.4; charset=utf-8"));
    let before = before.text();
    assert!(before.contains("# TYPE runnel_log_fsync_duration_seconds histogram"), "{before}");

    let values: Vec<Value> = (0..5).map(|i| json!({ "value": format!("{i}") })).collect();
    assert_eq!(server.post("/v1/topics/m/records", &json!({ "records": values })).status, 200);
    assert_eq!(server.get("/v1/topics/m/records?limit=3").status, 200);
    let mut kafka = Client::connect(server.kafka);
    kafka_produce(&mut kafka, "m", &["a", "b"]);
    assert!(kafka_fetch(&mut kafka, "m", 5) > 0);
    kafka_commit(&mut kafka, "lagging", "m", 1);

    let after = server.get("/metrics").text();
    let topic = "{topic=\"m\"}";
    assert_eq!(sample(&after, &format!("runnel_topic_records_in_total{topic}")), 7.0, "{after}");
    assert!(sample(&after, &format!("runnel_topic_bytes_in_total{topic}")) > 0.0);
    // 3 over HTTP, then the 2 records of the Kafka batch read from offset 5.
    assert_eq!(sample(&after, &format!("runnel_topic_records_out_total{topic}")), 5.0, "{after}");
    assert!(sample(&after, &format!("runnel_topic_bytes_out_total{topic}")) > 0.0);
    assert!(sample(&after, "runnel_request_duration_seconds_count{api=\"Produce\"}") >= 1.0, "{after}");
    assert!(sample(&after, "runnel_request_duration_seconds_bucket{api=\"Fetch\",le=\"+Inf\"}") >= 1.0);
    assert_eq!(sample(&after, "runnel_connections"), 1.0);
    assert!(sample(&after, "runnel_partitions") >= 2.0);
    assert!(
        sample(&after, "runnel_log_fsync_duration_seconds_count")
            > sample(&before, "runnel_log_fsync_duration_seconds_count")
    );
    assert_eq!(sample(&after, "runnel_consumer_group_lag{group=\"lagging\",topic=\"m\",partition=\"0\"}"), 6.0);
    // Every sample line is `name{labels} value` with a numeric value.
    for line in after.lines().filter(|l| !l.starts_with('#')) {
        let (_, value) = line.rsplit_once(' ').unwrap();
        assert!(value == "+Inf" || value.parse::<f64>().is_ok(), "{line}");
    }
}

/// Every operation of the OpenAPI document is served, and answers with a status it declares.
#[test]
fn openapi_document_lists_what_is_served() {
    let server = Server::start();
    server.readiness.set(true);
    create(&server, "doc", 1);
    let doc = server.get("/openapi.json").json();
    assert_eq!(doc["openapi"], "3.0.3");
    let paths = doc["paths"].as_object().unwrap();
    let mut operations = 0;
    for (path, item) in paths {
        let concrete = path.replace("{topic}", "doc").replace("{group}", "nobody").replace("{name}", "nobody");
        for method in ["get", "post", "put", "patch", "delete"] {
            let Some(op) = item.get(method) else { continue };
            operations += 1;
            let body = op.get("requestBody").map(|_| b"{}".as_slice());
            let r = request(server.http, &method.to_uppercase(), &concrete, body);
            let declared = op["responses"].as_object().unwrap();
            assert!(declared.contains_key(&r.status.to_string()), "{method} {path}: {} {}", r.status, r.text());
        }
    }
    // 12 of topics, records and groups; 9 of functions (404 here: this server runs none).
    assert_eq!(operations, 21);
    // The delete above went through: the topic is gone.
    assert!(server.log.topic("doc").is_none());
}
