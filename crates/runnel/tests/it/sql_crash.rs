//! A running aggregation survives SIGKILL with its guarantee: the state of a stateful query is
//! exactly once (each input record counted once; state and input positions are committed in
//! one changelog batch), its output topic at least once. After `runnel serve` is killed in the
//! middle of counting and started again, the table equals a recount of the input: no update is
//! lost and none is counted twice.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{Serve, data_dir_arg};

const KEYS: usize = 50;
const RECORDS_PER_ROUND: usize = 40_000;
const ROUNDS: usize = 3;
const DEADLINE: Duration = Duration::from_secs(120);

fn sql_json(serve: &Serve, statement: &str) -> Vec<serde_json::Value> {
    let out = Command::new(env!("CARGO_BIN_EXE_runnel"))
        .args(["sql", "--server", &format!("http://{}", serve.http), "--output", "json", "-e", statement])
        .output()
        .expect("run runnel sql");
    assert!(out.status.success(), "{statement}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

fn produce(serve: &Serve, input: &str) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_runnel"))
        .args(["produce", "events", "--key-separator", "|"])
        .env("RUNNEL_BOOTSTRAP", serve.addr.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run runnel produce");
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "produce: {}", String::from_utf8_lossy(&out.stderr));
}

/// The COUNTS table as (n, total) per key.
fn counts(serve: &Serve) -> BTreeMap<String, (i64, i64)> {
    let rows = sql_json(serve, "SELECT k, n, total FROM counts;");
    rows.iter().skip(1).filter_map(|r| Some((r[0].as_str()?.to_string(), (r[1].as_i64()?, r[2].as_i64()?)))).collect()
}

#[test]
fn aggregation_killed_mid_count_resumes_without_lost_or_double_counted_updates() {
    let dir = tempfile::tempdir().unwrap();
    let data = data_dir_arg(dir.path());
    let args = ["--kafka-listener", "127.0.0.1:0", "--data-dir", &data, "--log-level", "warn"];
    let mut serve = Serve::start(&args, &[]);
    sql_json(
        &serve,
        "CREATE STREAM events (k STRING KEY, v INT) WITH (kafka_topic='events', value_format='JSON', partitions=4);
         SET 'auto.offset.reset' = 'earliest';
         CREATE TABLE counts AS SELECT k, COUNT(*) AS n, SUM(v) AS total FROM events GROUP BY k;",
    );
    let mut expected: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    let mut kills = 0;
    for round in 0..ROUNDS {
        let mut input = String::new();
        for i in 0..RECORDS_PER_ROUND {
            let key = format!("k{}", (i * 7 + round) % KEYS);
            let v = (i % 100) as i64;
            input.push_str(&format!("{key}|{{\"v\": {v}}}\n"));
            let e = expected.entry(key).or_default();
            e.0 += 1;
            e.1 += v;
        }
        // Every record is acknowledged (acks=all, fsynced) before the kill.
        produce(&serve, &input);
        // Kill while the query is counting: after it has counted something of this round, if
        // it has not finished it already.
        let deadline = Instant::now() + DEADLINE;
        let total: i64 = expected.values().map(|e| e.0).sum();
        loop {
            let seen: i64 = counts(&serve).values().map(|c| c.0).sum();
            if seen > total - RECORDS_PER_ROUND as i64 || Instant::now() > deadline {
                if seen < total {
                    kills += 1;
                }
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        serve.child.kill().expect("SIGKILL runnel serve");
        serve.child.wait().unwrap();
        serve = Serve::start(&args, &[]);
    }
    // After the last restart the table converges to the recount, and stays there.
    let deadline = Instant::now() + DEADLINE;
    let mut got = counts(&serve);
    while got != expected {
        let counted: i64 = got.values().map(|c| c.0).sum();
        let total: i64 = expected.values().map(|c| c.0).sum();
        assert!(counted <= total, "counted {counted} of {total}: some records were counted twice");
        assert!(Instant::now() < deadline, "the table did not converge: {got:?}");
        std::thread::sleep(Duration::from_millis(100));
        got = counts(&serve);
    }
    assert_eq!(got, expected);
    eprintln!("killed mid-aggregation {kills} of {ROUNDS} times");
    assert!(serve.terminate());
}
