//! Acceptance 3 through the service: a function that loops, one that bombs its memory and
//! one that traps each dead-letter every event after their retries (one by one, with
//! headers saying where each came from), while a healthy function on the same service and
//! topic keeps processing; after a fixed version is deployed under the same names,
//! replaying the dead letters processes them, once.

use runnel_functions::{
    DLQ_HEADER_ATTEMPTS, DLQ_HEADER_ERROR, DLQ_HEADER_FUNCTION, DLQ_HEADER_OFFSET, DLQ_HEADER_PARTITION,
    DLQ_HEADER_TOPIC, FunctionConfig, ReplayReport,
};

use crate::fake::example;
use crate::stack::{Stack, fast, fixture, header};

const EVENTS: usize = 6;

#[test]
fn failing_functions_dead_letter_and_replay_after_a_fix() {
    let stack = Stack::new();
    stack.users_table();
    stack.create_topic("jobs", 2);
    stack.create_topic("echoed", 1);
    stack.create_topic("enriched", 1);
    stack.create_topic("enrich-misses", 1);
    let failing = [
        ("looper", "loop.wat", FunctionConfig { deadline_ms: 20, batch_size: 4, ..fast("jobs") }, "deadline"),
        (
            "bomb",
            "memory-bomb.wat",
            FunctionConfig { memory_bytes_max: 4 * 1024 * 1024, batch_size: 4, ..fast("jobs") },
            "memory limit",
        ),
        ("trapper", "trap.wat", FunctionConfig { batch_size: 4, ..fast("jobs") }, "divide by zero"),
    ];
    for (name, file, config, _) in &failing {
        stack.service().deploy(name, &example(file), config.clone()).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    stack.service().deploy("healthy", &fixture("echo.wat"), fast("jobs")).unwrap();

    let keys = ["alice", "bob"];
    let values: Vec<String> = (0..EVENTS).map(|i| format!("job-{i}")).collect();
    for (i, value) in values.iter().enumerate() {
        stack.produce("jobs", (i % 2) as u32, &[(keys[i % 2], value)]);
    }

    stack.wait_until("healthy echoed every job", || stack.count("echoed") == EVENTS);
    for (name, _, _, error) in &failing {
        let dlq = format!("{name}-dlq");
        stack.wait_until(&format!("{name} dead-lettered every job"), || stack.count(&dlq) == EVENTS);
        stack.wait_caught_up(name);
        let letters = stack.read_topic(&dlq);
        let mut origins: Vec<(String, String)> = letters
            .iter()
            .map(|r| {
                assert_eq!(header(r, DLQ_HEADER_FUNCTION), Some(*name));
                assert_eq!(header(r, DLQ_HEADER_TOPIC), Some("jobs"));
                let message = header(r, DLQ_HEADER_ERROR).unwrap_or_default();
                assert!(message.contains(error), "{name}: {message}");
                let attempts: u32 = header(r, DLQ_HEADER_ATTEMPTS).unwrap().parse().unwrap();
                assert!(attempts >= 2, "{name}: one try and one retry at least, got {attempts}");
                let at =
                    format!("{}@{}", header(r, DLQ_HEADER_PARTITION).unwrap(), header(r, DLQ_HEADER_OFFSET).unwrap());
                (at, String::from_utf8_lossy(r.value.as_deref().unwrap()).into_owned())
            })
            .collect();
        origins.sort();
        let mut expected: Vec<(String, String)> =
            (0..EVENTS).map(|i| (format!("{}@{}", i % 2, i / 2), values[i].clone())).collect();
        expected.sort();
        assert_eq!(origins, expected, "{name}: every event dead-lettered once, with its origin");
        let info = stack.describe(name);
        assert_eq!(info.metrics.dead_letters, EVENTS as u64);
        assert!(info.metrics.retries >= 1 && info.metrics.errors > info.metrics.retries);
    }
    let healthy = stack.describe("healthy");
    assert_eq!((healthy.metrics.errors, healthy.metrics.dead_letters), (0, 0));

    // The fix: enrich under the same names, keeping their positions; replay their dead
    // letters once each.
    for (name, _, _, _) in &failing {
        let spec = stack.service().deploy(name, &example("enrich.wat"), fast("jobs")).unwrap();
        assert_eq!(spec.version, 2);
        let report = stack.service().replay_dead_letters(name).unwrap();
        assert_eq!(report, ReplayReport { replayed: EVENTS as u64, dead_lettered_again: 0 }, "{name}");
    }
    assert_eq!(stack.count("enriched"), failing.len() * EVENTS);
    let enriched = stack.read_topic("enriched");
    assert!(enriched.iter().all(|r| header(r, "source-topic") == Some("jobs")), "original topic restored");
    for (name, _, _, _) in &failing {
        assert_eq!(stack.service().replay_dead_letters(name).unwrap(), ReplayReport::default());
    }
    // The new versions did not handle the already dead-lettered jobs again from the trigger.
    for (name, _, _, _) in &failing {
        stack.wait_caught_up(name);
    }
    assert_eq!(stack.count("enriched"), failing.len() * EVENTS);
}
