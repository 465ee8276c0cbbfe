//! Table-change, cron and HTTP triggers through the service: a table trigger sees the
//! inserts, updates and deletes of a table populated through SQL, and follows the table
//! through DROP TABLE and CREATE TABLE; a cron trigger fires,
//! keeps its last fire time across a reopen and catches up one missed fire (never a flood);
//! `handle_http` serves a request; bad triggers are refused at deploy.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use bytes::Bytes;
use runnel_functions::{
    Clock, DLQ_HEADER_FUNCTION, DLQ_HEADER_OFFSET, DLQ_HEADER_PARTITION, DLQ_HEADER_TOPIC, FunctionConfig,
    FunctionStatus, Header, HttpRequest, HttpResponse, InvokeError, LogSource, ReplayReport, ServiceError, Trigger,
};
use runnel_sql::eventlog::{EventLog, LogRecord, OutRecord};

use crate::fake::example;
use crate::stack::{Stack, fast, fixture, header};

/// A whole second, so `* * * * * *` fires at T0 + k * 1000.
const T0: i64 = 1_800_000_000_000;

fn with_trigger(trigger: Trigger) -> FunctionConfig {
    FunctionConfig { trigger, ..fast("unused") }
}

fn value_text(record: &LogRecord) -> Option<String> {
    record.value.as_deref().map(|v| String::from_utf8_lossy(v).into_owned())
}

/// The `scheduled_ms` and `fired_ms` of a timer event echoed by echo.wat.
fn fire_times(record: &LogRecord) -> (i64, i64) {
    let value: serde_json::Value = serde_json::from_slice(record.value.as_deref().expect("a value")).unwrap();
    (value["scheduled_ms"].as_i64().expect("scheduled_ms"), value["fired_ms"].as_i64().expect("fired_ms"))
}

/// Waits until the timer of `name` has read the clock and committed its start, so that
/// moving a fake clock afterwards is seen as time passing.
fn wait_timer_started(stack: &Stack, name: &str) {
    stack.wait_until("the timer started", || {
        stack.service().logs(name, 0).unwrap().iter().any(|l| l.message.starts_with("timer started"))
    });
}

fn fake_clock(at_ms: i64) -> (Arc<AtomicI64>, Clock) {
    let now = Arc::new(AtomicI64::new(at_ms));
    let read = now.clone();
    (now, Clock::new(move || read.load(Ordering::SeqCst)))
}

#[test]
fn table_trigger_sees_inserts_updates_and_deletes() {
    let mut stack = Stack::new();
    stack.users_table();
    stack.create_topic("echoed", 1);
    let spec = stack.service().deploy("watch", &fixture("echo.wat"), with_trigger(Trigger::table("users"))).unwrap();
    assert_eq!(spec.trigger.to_string(), "table:users");

    // The rows the table had before the deploy (from the earliest offset).
    stack.wait_until("the two rows seen", || stack.count("echoed") == 2);
    // An update and a new row, through SQL.
    stack.sql(
        "INSERT INTO users (id, name) VALUES ('alice', 'Alicia'); \
         INSERT INTO users (id, name) VALUES ('carol', 'Carol');",
    );
    // A delete: a tombstone on the table's topic, which the table applies too.
    let tombstone = OutRecord { key: Some(Bytes::from("bob")), value: None, headers: Vec::new(), timestamp: T0 };
    stack.events.append("users", 0, &[tombstone], false).unwrap();
    stack.wait_until("bob deleted from the table", || matches!(stack.engine.table_get("users", b"bob"), Ok(None)));
    stack.wait_until("every change seen", || stack.count("echoed") == 5);

    let changes: Vec<(String, Option<String>)> = stack
        .read_topic("echoed")
        .iter()
        .map(|r| (String::from_utf8_lossy(r.key.as_deref().unwrap_or_default()).into_owned(), value_text(r)))
        .collect();
    let keys: Vec<&str> = changes.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["alice", "bob", "alice", "carol", "bob"], "in the table topic's order");
    assert!(changes[2].1.as_deref().is_some_and(|v| v.contains("Alicia")), "{changes:?}");
    assert_eq!(changes[4].1, None, "a delete is an event without a value");

    // Lag is reported like a topic trigger's.
    stack.wait_caught_up("watch");
    assert_eq!(stack.describe("watch").metrics.events, 5);

    // A restart with the table gone: the trigger reports it in the platform log and waits.
    stack.sql("DROP TABLE users;");
    stack.restart_service();
    stack.wait_until("the missing table logged", || {
        stack.service().logs("watch", 0).unwrap().iter().any(|l| {
            l.source == LogSource::Platform
                && l.message.contains("table trigger cannot start: table users does not exist")
        })
    });
    assert_eq!(stack.describe("watch").status, FunctionStatus::Running);
    assert!(stack.describe("watch").metrics.lag_by_partition.is_empty());
}

/// Platform log lines of function `name` containing `text`.
fn platform_lines(stack: &Stack, name: &str, text: &str) -> usize {
    let logs = stack.service().logs(name, 0).unwrap();
    logs.iter().filter(|l| l.source == LogSource::Platform && l.message.contains(text)).count()
}

/// The keys echoed so far, in order.
fn echoed_keys(stack: &Stack) -> Vec<String> {
    let echoed = stack.read_topic("echoed");
    echoed.iter().map(|r| String::from_utf8_lossy(r.key.as_deref().unwrap_or_default()).into_owned()).collect()
}

/// Regression: a table trigger read the topic its table had when the trigger started, so it
/// went on reading after a DROP TABLE and never followed the table created again on another
/// topic. Created again on the topic it had, the trigger goes on from its committed
/// positions.
#[test]
fn table_trigger_follows_a_table_dropped_and_created_again() {
    const DROPPED: &str = "table t was dropped; the trigger waits for it to exist again";
    let stack = Stack::new();
    stack.create_topic("echoed", 1);
    let create = |topic: &str, id: &str| {
        stack.sql(&format!(
            "CREATE TABLE t (id STRING PRIMARY KEY, name STRING) \
             WITH (kafka_topic='{topic}', value_format='JSON', partitions=1); \
             INSERT INTO t (id, name) VALUES ('{id}', 'on {topic}');"
        ))
    };
    create("t1", "a");
    stack.service().deploy("watch", &fixture("echo.wat"), with_trigger(Trigger::table("t"))).unwrap();
    stack.wait_until("the row on t1 seen", || stack.count("echoed") == 1);

    stack.sql("DROP TABLE t;");
    stack.wait_until("the drop logged", || platform_lines(&stack, "watch", DROPPED) == 1);
    create("t2", "b");
    stack.wait_until("the row on t2 seen", || stack.count("echoed") == 2);
    assert_eq!(echoed_keys(&stack), ["a", "b"]);
    assert_eq!(stack.read_topic("echoed")[1].value, stack.read_topic("t2")[0].value);

    // Created again on the topic it had: read on from the committed position, so row b is
    // not seen again (it would come before c on the one partition and lane).
    stack.sql("DROP TABLE t;");
    stack.wait_until("the second drop logged", || platform_lines(&stack, "watch", DROPPED) == 2);
    create("t2", "c");
    stack.wait_until("the row c seen", || echoed_keys(&stack).iter().any(|k| k == "c"));
    assert_eq!(echoed_keys(&stack), ["a", "b", "c"]);
    stack.wait_caught_up("watch");
    assert_eq!(stack.describe("watch").status, FunctionStatus::Running);
}

#[test]
fn table_trigger_follows_a_table_created_as_select() {
    let stack = Stack::new();
    stack.create_topic("echoed", 1);
    stack.sql(
        "CREATE STREAM clicks (uid STRING KEY, url STRING) \
         WITH (kafka_topic='clicks', value_format='JSON', partitions=1); \
         CREATE TABLE clicks_per_user AS SELECT uid, COUNT(*) AS n FROM clicks GROUP BY uid;",
    );
    stack.service().deploy("counts", &fixture("echo.wat"), with_trigger(Trigger::table("clicks_per_user"))).unwrap();
    stack.sql(
        "INSERT INTO clicks (uid, url) VALUES ('ann', '/a'); \
         INSERT INTO clicks (uid, url) VALUES ('ann', '/b');",
    );
    stack.wait_until("both counts seen", || {
        stack.read_topic("echoed").iter().any(|r| value_text(r).is_some_and(|v| v.contains('2')))
    });
    let first = &stack.read_topic("echoed")[0];
    assert_eq!(first.key.as_deref(), Some(&b"ann"[..]));
}

#[test]
fn cron_trigger_fires_on_the_system_clock() {
    let stack = Stack::new();
    stack.create_topic("echoed", 1);
    let spec =
        stack.service().deploy("tick", &fixture("echo.wat"), with_trigger(Trigger::cron("* * * * * *"))).unwrap();
    assert_eq!(spec.trigger.to_string(), "cron:* * * * * *");
    stack.wait_until("a fire", || stack.count("echoed") >= 1);
    let fire = &stack.read_topic("echoed")[0];
    assert_eq!(fire.key.as_deref(), Some(&b"tick"[..]));
    let (scheduled_ms, fired_ms) = fire_times(fire);
    assert_eq!(scheduled_ms % 1000, 0);
    assert!(fired_ms >= scheduled_ms);
    assert!(stack.describe("tick").metrics.lag_by_partition.is_empty(), "timers have no lag");
    // Pause stops the timer thread (it sleeps interruptibly): nothing fires afterwards.
    stack.service().pause("tick").unwrap();
    let fired = stack.count("echoed");
    assert_eq!(stack.describe("tick").status, FunctionStatus::Paused);
    stack.service().delete("tick").unwrap();
    assert_eq!(stack.count("echoed"), fired);
}

#[test]
fn cron_trigger_catches_up_one_missed_fire_after_a_reopen() {
    let (now, clock) = fake_clock(T0);
    let mut stack = Stack::with_clock(clock);
    stack.create_topic("echoed", 1);
    stack.service().deploy("tick", &fixture("echo.wat"), with_trigger(Trigger::cron("* * * * * *"))).unwrap();
    wait_timer_started(&stack, "tick");
    now.store(T0 + 1_000, Ordering::SeqCst);
    stack.wait_until("the first fire", || stack.count("echoed") == 1);
    assert_eq!(fire_times(&stack.read_topic("echoed")[0]), (T0 + 1_000, T0 + 1_000));

    // Down for an hour: 3,600 fires missed. After the reopen the latest runs, once.
    drop(stack.service.take());
    now.store(T0 + 3_600_000, Ordering::SeqCst);
    stack.open_service();
    stack.wait_until("the catch-up fire", || stack.count("echoed") == 2);
    wait_timer_started(&stack, "tick");
    now.store(T0 + 3_601_000, Ordering::SeqCst);
    stack.wait_until("the next fire", || stack.count("echoed") == 3);
    let fires: Vec<(i64, i64)> = stack.read_topic("echoed").iter().map(fire_times).collect();
    assert_eq!(
        fires,
        [(T0 + 1_000, T0 + 1_000), (T0 + 3_600_000, T0 + 3_600_000), (T0 + 3_601_000, T0 + 3_601_000)],
        "one catch-up fire, then the schedule: no flood of missed fires"
    );
    let logs = stack.service().logs("tick", 0).unwrap();
    assert!(logs.iter().any(|l| l.message.contains("missed since") && l.message.contains("skipped")), "{logs:?}");
}

#[test]
fn cron_dead_letters_replay_after_a_fix() {
    let (now, clock) = fake_clock(T0);
    let stack = Stack::with_clock(clock);
    stack.create_topic("echoed", 1);
    let config = with_trigger(Trigger::cron("* * * * * *"));
    stack.service().deploy("tick", &example("trap.wat"), config.clone()).unwrap();
    wait_timer_started(&stack, "tick");
    now.store(T0 + 1_000, Ordering::SeqCst);
    stack.wait_until("the failed fire dead-lettered", || stack.count("tick-dlq") == 1);
    let letter = &stack.read_topic("tick-dlq")[0];
    assert_eq!(header(letter, DLQ_HEADER_FUNCTION), Some("tick"));
    assert_eq!(header(letter, DLQ_HEADER_TOPIC), Some(""));
    assert_eq!(header(letter, DLQ_HEADER_PARTITION), Some("-1"));
    assert_eq!(header(letter, DLQ_HEADER_OFFSET), Some(T0 + 1_000).map(|t| t.to_string()).as_deref());

    stack.service().deploy("tick", &fixture("echo.wat"), config).unwrap();
    let report = stack.service().replay_dead_letters("tick").unwrap();
    assert_eq!(report, ReplayReport { replayed: 1, dead_lettered_again: 0 });
    let replayed = &stack.read_topic("echoed")[0];
    assert_eq!(replayed.key.as_deref(), Some(&b"tick"[..]));
    assert_eq!(fire_times(replayed).0, T0 + 1_000);
}

#[test]
fn http_requests_are_served_by_handle_http() {
    let stack = Stack::new();
    let spec = stack.service().deploy("api", &example("http-echo.wat"), with_trigger(Trigger::Http)).unwrap();
    assert_eq!(spec.trigger.to_string(), "http");
    let headers = vec![Header { key: "content-type".to_string(), value: b"text/plain".to_vec() }];
    let request = HttpRequest {
        method: "POST".to_string(),
        path: "/orders?limit=1".to_string(),
        headers: headers.clone(),
        body: b"hello".to_vec(),
    };
    let response = stack.service().handle_http("api", request.clone()).unwrap();
    assert_eq!(response, HttpResponse { status: 200, headers, body: b"hello".to_vec() });
    let metrics = stack.describe("api").metrics;
    assert_eq!((metrics.invocations, metrics.errors, metrics.duration.count()), (1, 0, 1));

    assert!(matches!(stack.service().handle_http("nope", request.clone()), Err(ServiceError::NotFound(_))));
    stack.service().pause("api").unwrap();
    assert!(matches!(stack.service().handle_http("api", request.clone()), Err(ServiceError::Paused(_))));
    stack.service().resume("api").unwrap();
    assert!(stack.service().handle_http("api", request.clone()).is_ok());

    // A handler that traps is an invocation error, counted as one.
    let trapping = fixture("wit-component-http-function.wat");
    stack.service().deploy("trapping", &trapping, with_trigger(Trigger::Http)).unwrap();
    match stack.service().handle_http("trapping", request.clone()) {
        Err(ServiceError::Invoke(InvokeError::Trap(_))) => {}
        other => panic!("not a trap: {other:?}"),
    }
    let metrics = stack.describe("trapping").metrics;
    assert_eq!((metrics.invocations, metrics.errors), (1, 1));

    // An event function has no HTTP route.
    stack.service().deploy("events", &fixture("echo.wat"), FunctionConfig::default()).unwrap();
    assert!(matches!(stack.service().handle_http("events", request), Err(ServiceError::NotHttp(_))));
}

#[test]
fn bad_triggers_are_refused_at_deploy() {
    let stack = Stack::new();
    stack.sql(
        "CREATE STREAM clicks (uid STRING KEY, url STRING) \
         WITH (kafka_topic='clicks', value_format='JSON', partitions=1);",
    );
    let echo = fixture("echo.wat");
    let refusal = |trigger: Trigger| match stack.service().deploy("f", &echo, with_trigger(trigger)) {
        Err(ServiceError::InvalidConfig { field: "trigger", reason }) => reason,
        other => panic!("not refused as a bad trigger: {other:?}"),
    };
    let reason = refusal(Trigger::cron("*/5 * * nonsense *"));
    assert!(reason.contains("cron expression") && reason.contains("invalid"), "{reason}");
    assert!(refusal(Trigger::cron("* * *")).contains("3 fields"));
    refusal(Trigger::cron("0 0 30 2 *"));
    assert_eq!(refusal(Trigger::table("missing")), "table missing does not exist");
    assert!(refusal(Trigger::table("clicks")).contains("is a stream, not a table"));
    let reason = refusal(Trigger::Http);
    assert!(reason.contains("handle-http"), "{reason}");
    assert!(stack.service().list().is_empty());
}
