//! Acceptance 2: 100 keys times 1,000 events through an echo function with concurrency 8:
//! order per key is preserved at the output, every event is processed at least once, and
//! duplicates are counted and reported.

use std::collections::HashMap;
use std::time::Instant;

use runnel_functions::FunctionConfig;

use crate::stack::{Stack, fast, fixture};

const KEYS: usize = 100;
const EVENTS_PER_KEY: usize = 1_000;
const INPUT_PARTITIONS: u32 = 4;

#[test]
fn order_per_key_is_preserved_with_concurrency_8() {
    let stack = Stack::new();
    stack.create_topic("ordered-in", INPUT_PARTITIONS);
    stack.create_topic("echoed", INPUT_PARTITIONS);
    let keys: Vec<String> = (0..KEYS).map(|k| format!("key-{k}")).collect();
    let started = Instant::now();
    for partition in 0..INPUT_PARTITIONS {
        let mut records = Vec::new();
        let values: Vec<String> = (0..EVENTS_PER_KEY).map(|s| s.to_string()).collect();
        for value in &values {
            for key in keys.iter().skip(partition as usize).step_by(INPUT_PARTITIONS as usize) {
                records.push((key.as_str(), value.as_str()));
            }
        }
        stack.produce("ordered-in", partition, &records);
    }
    let produced = started.elapsed();

    let config = FunctionConfig { concurrency: 8, batch_size: 100, ..fast("ordered-in") };
    stack.service().deploy("echo", &fixture("echo.wat"), config).expect("deploy");
    stack.wait_until("every event echoed", || stack.count("echoed") >= KEYS * EVENTS_PER_KEY);
    stack.wait_caught_up("echo");
    let processed = started.elapsed() - produced;

    // Per key, in output order: a value above the highest seen must be the next one (no
    // gap, no reordering); one at or below it is a duplicate.
    let mut highest: HashMap<Vec<u8>, i64> = HashMap::new();
    let mut duplicates = 0usize;
    for record in stack.read_topic("echoed") {
        let key = record.key.expect("keyed").to_vec();
        let value: i64 = std::str::from_utf8(&record.value.expect("value")).unwrap().parse().unwrap();
        let top = highest.entry(key.clone()).or_insert(-1);
        if value <= *top {
            duplicates += 1;
        } else {
            assert_eq!(value, *top + 1, "key {} jumped from {top} to {value}", String::from_utf8_lossy(&key));
            *top = value;
        }
    }
    assert_eq!(highest.len(), KEYS);
    assert!(highest.values().all(|&v| v == EVENTS_PER_KEY as i64 - 1), "every event processed at least once");
    let info = stack.describe("echo");
    println!(
        "ordering: {} events, {KEYS} keys, concurrency 8: {duplicates} duplicates; {} invocations, \
         produced in {produced:?}, processed in {processed:?}",
        KEYS * EVENTS_PER_KEY,
        info.metrics.invocations
    );
    assert_eq!(info.metrics.errors, 0);
}
