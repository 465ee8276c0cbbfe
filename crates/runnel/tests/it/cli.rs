//! The client commands (`runnel topic|group|produce|consume`) driven as a user would, against a
//! started `runnel serve`: bulk produce and consume back as JSON, topic administration, group
//! description with lag, offset resets (refused while a member is active), and the error for an
//! unreachable broker. Group members are played by the `runnel-client` crate.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use runnel_client::consumer_protocol::{PROTOCOL_TYPE_CONSUMER, encode_assignment, encode_subscription};
use runnel_client::{Client, OffsetSpec};
use serde_json::Value;

use super::{Serve, data_dir_arg};

/// Session timeout of the test's group members: far longer than any test step.
const MEMBER_SESSION_TIMEOUT_MS: i32 = 120_000;

fn start() -> (tempfile::TempDir, Serve) {
    let dir = tempfile::tempdir().unwrap();
    let data = data_dir_arg(dir.path());
    let serve = Serve::start(&["--kafka-listener", "127.0.0.1:0", "--data-dir", &data, "--log-level", "warn"], &[]);
    (dir, serve)
}

/// Runs `runnel ARGS` against `serve`, with `stdin` as standard input.
fn runnel_with_stdin(serve: &Serve, args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_runnel"))
        .args(args)
        .env("RUNNEL_BOOTSTRAP", serve.addr.to_string())
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run runnel");
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input).unwrap();
    }
    child.wait_with_output().expect("wait for runnel")
}

fn runnel(serve: &Serve, args: &[&str]) -> Output {
    runnel_with_stdin(serve, args, None)
}

/// Runs a command that must succeed and returns its stdout.
fn runnel_ok(serve: &Serve, args: &[&str]) -> String {
    let output = runnel(serve, args);
    assert!(output.status.success(), "runnel {args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).expect("UTF-8 output")
}

fn json(text: &str) -> Value {
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap()
}

/// `2026-11-26T10:00:37.500Z` for epoch milliseconds (Howard Hinnant's civil_from_days).
fn rfc3339(ms: i64) -> String {
    let days = ms.div_euclid(86_400_000);
    let rest = ms.rem_euclid(86_400_000);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rest / 3_600_000,
        rest / 60_000 % 60,
        rest / 1000 % 60,
        rest % 1000
    )
}

#[test]
fn rfc3339_helper_is_right() {
    assert_eq!(rfc3339(1_795_687_237_500), "2026-11-26T10:00:37.500Z");
    assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
}

#[test]
fn a_hundred_thousand_keyed_lines_are_produced_and_consumed_back_as_json() {
    let (dir, serve) = start();
    let created = json(&runnel_ok(&serve, &["topic", "create", "lines", "--partitions", "4", "--output", "json"]));
    assert_eq!(created["partitions"], 4, "{created}");

    const LINES: usize = 100_000;
    const KEYS: usize = 97;
    let file = dir.path().join("lines.txt");
    let mut text = String::with_capacity(LINES * 24);
    for i in 0..LINES {
        text.push_str(&format!("key-{}:value-{i}\n", i % KEYS));
    }
    std::fs::write(&file, text).unwrap();
    let summary = json(&runnel_ok(
        &serve,
        &[
            "produce",
            "lines",
            "--file",
            file.to_str().unwrap(),
            "--key-separator",
            ":",
            "--header",
            "source=test",
            "--output",
            "json",
        ],
    ));
    assert_eq!(summary["records"], LINES as u64, "{summary}");
    assert!(summary["bytes"].as_u64().unwrap() > 0, "{summary}");

    let stdout = runnel_ok(&serve, &["consume", "lines", "--output", "json"]);
    let mut next_offset: HashMap<i64, i64> = HashMap::new();
    let mut last_value_of_key: HashMap<String, usize> = HashMap::new();
    let mut partition_of_key: HashMap<String, i64> = HashMap::new();
    let mut seen = vec![false; LINES];
    let mut count = 0;
    for line in stdout.lines() {
        let record = json(line);
        count += 1;
        let partition = record["partition"].as_i64().unwrap();
        let offset = record["offset"].as_i64().unwrap();
        let expected = next_offset.entry(partition).or_insert(0);
        assert_eq!(offset, *expected, "offsets of partition {partition} are dense and in order");
        *expected += 1;
        assert_eq!(record["topic"], "lines");
        assert_eq!(record["headers"]["source"], "test");
        let key = record["key"].as_str().unwrap().to_string();
        let value = record["value"].as_str().unwrap();
        let i: usize = value.strip_prefix("value-").unwrap().parse().unwrap();
        assert_eq!(key, format!("key-{}", i % KEYS), "record {i} kept its key");
        assert!(!seen[i], "record {i} consumed twice");
        seen[i] = true;
        assert_eq!(*partition_of_key.entry(key.clone()).or_insert(partition), partition, "one partition per key");
        if let Some(previous) = last_value_of_key.insert(key.clone(), i) {
            assert!(previous < i, "records of key {key} are in production order");
        }
    }
    assert_eq!(count, LINES, "every record consumed once");
    assert!(next_offset.len() > 1, "keys spread over partitions");

    // --limit and a kcat format string.
    let first = runnel_ok(&serve, &["consume", "lines", "--partition", "0", "-c", "2", "--format", "%p:%o:%k=%v\\n"]);
    let lines: Vec<&str> = first.lines().collect();
    assert_eq!(lines.len(), 2, "{first}");
    assert!(lines[0].starts_with("0:0:key-"), "{first}");
}

#[test]
fn topics_are_created_listed_described_reconfigured_and_deleted() {
    let (_dir, serve) = start();
    let created = json(&runnel_ok(
        &serve,
        &["topic", "create", "orders", "--partitions", "3", "--config", "retention.ms=3600000", "--output", "json"],
    ));
    assert_eq!(created["created"], true, "{created}");
    let again = runnel(&serve, &["topic", "create", "orders"]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("TOPIC_ALREADY_EXISTS"), "{again:?}");
    let exists = json(&runnel_ok(&serve, &["topic", "create", "orders", "--if-not-exists", "--output", "json"]));
    assert_eq!(exists["created"], false);

    let list = json(&runnel_ok(&serve, &["topic", "list", "--output", "json"]));
    let names: Vec<&str> = list.as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, vec!["orders"], "internal topics are hidden: {list}");

    runnel_with_stdin(&serve, &["produce", "orders", "--partition", "1"], Some(b"a\nb\nc\n"));
    let config = |described: &Value, name: &str| -> Value {
        described["configs"].as_array().unwrap().iter().find(|c| c["name"] == name).cloned().unwrap_or(Value::Null)
    };
    let described = json(&runnel_ok(&serve, &["topic", "describe", "orders", "--output", "json"]));
    let partitions = described["partitions"].as_array().unwrap();
    assert_eq!(partitions.len(), 3, "{described}");
    assert_eq!(partitions[1]["log_start_offset"], 0);
    assert_eq!(partitions[1]["log_end_offset"], 3, "{described}");
    assert_eq!(partitions[0]["log_end_offset"], 0);
    assert_eq!(partitions[0]["leader"], 0);
    let retention = config(&described, "retention.ms");
    assert_eq!(retention["value"], "3600000", "{retention}");
    assert_eq!(retention["source"], "DYNAMIC_TOPIC_CONFIG");
    assert_eq!(config(&described, "cleanup.policy")["source"], "DEFAULT_CONFIG");

    runnel_ok(
        &serve,
        &[
            "topic",
            "alter-config",
            "orders",
            "--set",
            "cleanup.policy=compact",
            "--delete",
            "retention.ms",
            "--output",
            "json",
        ],
    );
    let described = json(&runnel_ok(&serve, &["topic", "describe", "orders", "--output", "json"]));
    assert_eq!(config(&described, "cleanup.policy")["value"], "compact");
    assert_eq!(config(&described, "cleanup.policy")["source"], "DYNAMIC_TOPIC_CONFIG");
    assert_eq!(config(&described, "retention.ms")["source"], "DEFAULT_CONFIG", "{described}");

    // CreatePartitions through the client crate.
    runtime().block_on(async {
        let mut client = Client::connect(&serve.addr.to_string()).await.unwrap();
        client.create_partitions("orders", 5).await.unwrap();
        let error = client.create_partitions("orders", 2).await.unwrap_err();
        assert_eq!(error.kafka().map(|k| k.name.as_str()), Some("INVALID_PARTITIONS"), "{error}");
    });
    let described = json(&runnel_ok(&serve, &["topic", "describe", "orders", "--output", "json"]));
    assert_eq!(described["partitions"].as_array().unwrap().len(), 5);

    let deleted = json(&runnel_ok(&serve, &["topic", "delete", "orders", "--output", "json"]));
    assert_eq!(deleted["deleted"], true);
    let list = json(&runnel_ok(&serve, &["topic", "list", "--output", "json"]));
    assert_eq!(list, serde_json::json!([]));
    let missing = runnel(&serve, &["topic", "describe", "orders"]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("UNKNOWN_TOPIC_OR_PARTITION"), "{missing:?}");
}

/// A consumer group member played by the client crate: joins, leads, assigns itself every
/// partition of `topic`, and stays until dropped with [`Member::leave`].
struct Member {
    client: Client,
    group: String,
    member_id: String,
    generation: i32,
}

impl Member {
    async fn join(bootstrap: &str, group: &str, topic: &str, partitions: Vec<i32>) -> Member {
        let mut client = Client::connect(bootstrap).await.unwrap();
        let subscription = encode_subscription(&[topic]);
        let joined = client
            .join_group(group, "", PROTOCOL_TYPE_CONSUMER, &[("range", subscription)], MEMBER_SESSION_TIMEOUT_MS)
            .await
            .unwrap();
        assert!(joined.is_leader(), "the only member leads");
        let assignment = encode_assignment(&[(topic, partitions)]);
        let mine: Bytes = client
            .sync_group(group, &joined, PROTOCOL_TYPE_CONSUMER, &[(joined.member_id.clone(), assignment.clone())])
            .await
            .unwrap();
        assert_eq!(mine, assignment);
        Member { client, group: group.to_string(), member_id: joined.member_id, generation: joined.generation }
    }

    async fn commit(&mut self, offsets: &[(String, i32, i64)]) {
        self.client.commit_offsets_as(&self.group, self.generation, &self.member_id, offsets).await.unwrap();
    }

    async fn leave(mut self) {
        self.client.leave_group(&self.group, &self.member_id).await.unwrap();
    }
}

#[test]
fn group_describe_shows_assignments_and_lag_and_reset_waits_for_an_inactive_group() {
    let (_dir, serve) = start();
    runnel_ok(&serve, &["topic", "create", "events", "--partitions", "2"]);
    let mut input = String::new();
    for i in 0..50 {
        input.push_str(&format!("{{\"value\": \"e{i}\", \"partition\": {}}}\n", i % 2));
    }
    let produced = runnel_with_stdin(&serve, &["produce", "events", "--format", "json"], Some(input.as_bytes()));
    assert!(produced.status.success(), "{produced:?}");

    let rt = runtime();
    let bootstrap = serve.addr.to_string();
    let mut member = rt.block_on(Member::join(&bootstrap, "readers", "events", vec![0, 1]));
    rt.block_on(member.commit(&[("events".into(), 0, 10), ("events".into(), 1, 25)]));

    let described = json(&runnel_ok(&serve, &["group", "describe", "readers", "--output", "json"]));
    assert_eq!(described["state"], "Stable", "{described}");
    let members = described["members"].as_array().unwrap();
    assert_eq!(members.len(), 1);
    assert_eq!(members[0]["member_id"], member.member_id.as_str());
    assert_eq!(members[0]["assignment"], serde_json::json!([{"topic": "events", "partitions": [0, 1]}]));
    let offsets = described["offsets"].as_array().unwrap();
    let row = |p: i64| offsets.iter().find(|o| o["partition"] == p).cloned().unwrap();
    assert_eq!(row(0)["committed_offset"], 10);
    assert_eq!(row(0)["log_end_offset"], 25);
    assert_eq!(row(0)["lag"], 15, "{described}");
    assert_eq!(row(1)["lag"], 0);
    assert_eq!(row(1)["member_id"], member.member_id.as_str());
    assert_eq!(described["total_lag"], 15);
    let listed = json(&runnel_ok(&serve, &["group", "list", "--output", "json"]));
    assert_eq!(listed, serde_json::json!([{"group": "readers", "state": "Stable", "protocol_type": "consumer"}]));

    // Reset refuses while the member is active, with a dry run too.
    for mode in ["--execute", "--dry-run"] {
        let refused = runnel(&serve, &["group", "reset-offsets", "readers", "--all-topics", "--to-earliest", mode]);
        assert!(!refused.status.success());
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(
            stderr.contains("cannot reset the offsets of group \"readers\": it has 1 active member(s)"),
            "{stderr}"
        );
    }
    // The broker itself refuses an admin commit (generation -1, no member id) meanwhile.
    let refused = rt.block_on(async {
        let mut admin = Client::connect(&bootstrap).await.unwrap();
        admin.commit_offsets("readers", &[("events".into(), 0, 0)]).await.unwrap_err()
    });
    assert_eq!(refused.kafka().map(|k| k.name.as_str()), Some("UNKNOWN_MEMBER_ID"), "{refused}");
    let refused = runnel(&serve, &["group", "delete", "readers"]);
    assert!(String::from_utf8_lossy(&refused.stderr).contains("NON_EMPTY_GROUP"), "{refused:?}");

    rt.block_on(member.leave());
    let plan = json(&runnel_ok(
        &serve,
        &["group", "reset-offsets", "readers", "--topic", "events:0", "--to-earliest", "--output", "json"],
    ));
    assert_eq!(plan["executed"], false, "a dry run by default");
    assert_eq!(
        plan["offsets"],
        serde_json::json!([{"topic": "events", "partition": 0, "current_offset": 10, "new_offset": 0}])
    );
    let still = rt.block_on(async {
        let mut client = Client::connect(&bootstrap).await.unwrap();
        client.offset_fetch("readers", None).await.unwrap()
    });
    assert_eq!(still[0].offset, Some(10), "the dry run changed nothing");
    runnel_ok(&serve, &["group", "reset-offsets", "readers", "--all-topics", "--to-offset", "3", "--execute"]);
    let described = json(&runnel_ok(&serve, &["group", "describe", "readers", "--output", "json"]));
    assert_eq!(described["state"], "Empty");
    assert_eq!(described["total_lag"], 44, "both partitions at offset 3 of 25: {described}");

    let deleted = json(&runnel_ok(&serve, &["group", "delete", "readers", "--output", "json"]));
    assert_eq!(deleted["deleted"], true);
    assert!(!runnel(&serve, &["group", "describe", "readers"]).status.success(), "the group is gone");
}

/// Issue 4, acceptance 3: records with timestamps over a range, the group committed at the end,
/// `reset-offsets --to-datetime T --execute`, and the group's consumer starts at the first
/// record whose timestamp is at or after T.
#[test]
fn reset_to_datetime_starts_the_group_at_the_first_record_at_or_after_it() {
    let (_dir, serve) = start();
    runnel_ok(&serve, &["topic", "create", "clicks", "--partitions", "2"]);
    // One record a second for 100 s, an hour ago (whole seconds), alternating partitions.
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64;
    let base = (now_ms - 3_600_000) / 1000 * 1000;
    let mut input = String::new();
    for i in 0..100i64 {
        input.push_str(&format!(
            "{{\"key\": \"k{i}\", \"value\": \"click {i}\", \"partition\": {}, \"timestamp\": {}}}\n",
            i % 2,
            base + i * 1000
        ));
    }
    let produced = runnel_with_stdin(&serve, &["produce", "clicks", "--format", "json"], Some(input.as_bytes()));
    assert!(produced.status.success(), "{produced:?}");

    // The group reads everything and commits its positions (the end of each partition).
    let all = runnel_ok(&serve, &["consume", "clicks", "--group", "dashboards", "--output", "json"]);
    assert_eq!(all.lines().count(), 100);
    let described = json(&runnel_ok(&serve, &["group", "describe", "dashboards", "--output", "json"]));
    assert_eq!(described["total_lag"], 0, "{described}");

    // T falls between records 37 and 38: partition 0 resumes at record 38, partition 1 at 39.
    let t = base + 37_500;
    let plan = json(&runnel_ok(
        &serve,
        &[
            "group",
            "reset-offsets",
            "dashboards",
            "--all-topics",
            "--to-datetime",
            &rfc3339(t),
            "--execute",
            "--output",
            "json",
        ],
    ));
    assert_eq!(plan["executed"], true);
    let rt = runtime();
    let firsts = rt.block_on(async {
        let mut client = Client::connect(&serve.addr.to_string()).await.unwrap();
        let committed = client.offset_fetch("dashboards", None).await.unwrap();
        assert_eq!(committed.len(), 2, "{committed:?}");
        let mut firsts = BTreeMap::new();
        for c in committed {
            let offset = c.offset.expect("a committed offset");
            // The consumer of the group starts at its committed offset.
            let fetched = client.fetch("clicks", &[(c.partition, offset)], 1000).await.unwrap();
            let first = fetched[0].records.first().cloned().expect("a record at the committed offset");
            assert!(first.timestamp >= t, "partition {}: {} < T", c.partition, first.timestamp);
            // ...and the record before it is older than T.
            let before = client.fetch("clicks", &[(c.partition, offset - 1)], 1000).await.unwrap();
            assert!(before[0].records[0].timestamp < t, "partition {}", c.partition);
            firsts.insert(c.partition, String::from_utf8(first.value.unwrap().to_vec()).unwrap());
        }
        firsts
    });
    assert_eq!(firsts, BTreeMap::from([(0, "click 38".to_string()), (1, "click 39".to_string())]));

    // The same instant with a zone offset, and a --consume of the group, agree.
    let plus_two = rfc3339(t + 2 * 3_600_000).replace('Z', "+02:00");
    runnel_ok(
        &serve,
        &["group", "reset-offsets", "dashboards", "--topic", "clicks", "--to-datetime", &plus_two, "--execute"],
    );
    let resumed = runnel_ok(&serve, &["consume", "clicks", "--group", "dashboards", "--partition", "0", "-c", "1"]);
    assert_eq!(resumed, "click 38\n");

    // After every record: the log end. By duration (an hour and a half ago): the first record.
    let after = rfc3339(base + 200_000);
    let plan = json(&runnel_ok(
        &serve,
        &["group", "reset-offsets", "dashboards", "--all-topics", "--to-datetime", &after, "--output", "json"],
    ));
    let new_offsets: Vec<i64> =
        plan["offsets"].as_array().unwrap().iter().map(|o| o["new_offset"].as_i64().unwrap()).collect();
    assert_eq!(new_offsets, vec![50, 50], "{plan}");
    let plan = json(&runnel_ok(
        &serve,
        &["group", "reset-offsets", "dashboards", "--all-topics", "--by-duration", "1h30m", "--output", "json"],
    ));
    let new_offsets: Vec<i64> =
        plan["offsets"].as_array().unwrap().iter().map(|o| o["new_offset"].as_i64().unwrap()).collect();
    assert_eq!(new_offsets, vec![0, 0], "{plan}");

    // The latest offsets seen by the client agree with the CLI's view of the log end.
    let ends = rt.block_on(async {
        let mut client = Client::connect(&serve.addr.to_string()).await.unwrap();
        client.list_offsets("clicks", &[0, 1], OffsetSpec::Latest).await.unwrap()
    });
    assert!(ends.iter().all(|l| l.offset == Some(50)), "{ends:?}");
}

#[test]
fn follow_waits_for_records_produced_later() {
    let (_dir, serve) = start();
    runnel_ok(&serve, &["topic", "create", "live", "--partitions", "1"]);
    let mut follower = Command::new(env!("CARGO_BIN_EXE_runnel"))
        .args(["consume", "live", "--follow", "-c", "2", "--bootstrap", &serve.addr.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    // Records produced after the follower started reach it; it exits after two (-c 2).
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut status = None;
    while Instant::now() < deadline {
        runnel_with_stdin(&serve, &["produce", "live"], Some(b"tick\n"));
        if let Some(s) = follower.try_wait().unwrap() {
            status = Some(s);
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let Some(status) = status else {
        let _ = follower.kill();
        let _ = follower.wait();
        panic!("the follower did not stop after two records");
    };
    assert!(status.success());
    let mut out = String::new();
    std::io::Read::read_to_string(&mut follower.stdout.take().unwrap(), &mut out).unwrap();
    assert_eq!(out, "tick\ntick\n");
}

#[test]
fn client_commands_say_how_to_fix_an_unreachable_broker() {
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = free.local_addr().unwrap().to_string();
    drop(free);
    for args in [
        vec!["topic", "list"],
        vec!["group", "describe", "g"],
        vec!["consume", "t"],
        vec!["produce", "t"],
        vec!["topic", "create", "t"],
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_runnel"))
            .args(&args)
            .args(["--bootstrap", &addr])
            .stdin(Stdio::null())
            .output()
            .expect("run runnel");
        assert!(!output.status.success(), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr
                .contains(&format!("cannot reach runnel at {addr}: connection refused (is \"runnel serve\" running?)")),
            "{args:?}: {stderr}"
        );
    }
}

#[test]
fn completions_are_printed_for_each_shell() {
    for shell in ["bash", "zsh", "fish"] {
        let output = Command::new(env!("CARGO_BIN_EXE_runnel")).args(["completions", shell]).output().unwrap();
        assert!(output.status.success());
        assert!(String::from_utf8_lossy(&output.stdout).contains("reset-offsets"), "{shell}");
    }
}
