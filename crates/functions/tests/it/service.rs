//! The function service end to end (acceptance 1 for WAT): the enrich example reads a table
//! populated through SQL and writes to an output topic from a topic trigger; the registry
//! and positions survive a restart; pause, resume, delete, logs and direct invocation.

use runnel_functions::{FunctionStatus, LogSource, ServiceError, Trigger};

use crate::fake::{event, example};
use crate::stack::{Stack, fast};

#[test]
fn enrich_reads_a_sql_table_and_writes_its_output_topic() {
    let mut stack = Stack::new();
    stack.users_table();
    stack.create_topic("orders", 2);
    stack.create_topic("enriched", 1);
    stack.create_topic("enrich-misses", 1);
    let spec = stack.service().deploy("enrich", &example("enrich.wat"), fast("orders")).expect("deploy");
    assert_eq!((spec.version, spec.dead_letter_topic.as_str()), (1, "enrich-dlq"));

    stack.produce("orders", 0, &[("alice", r#"{"amount":5}"#), ("carol", "c1")]);
    stack.produce("orders", 1, &[("bob", r#"{"amount":7}"#)]);
    stack.wait_until("3 enriched, 1 miss", || stack.count("enriched") == 3 && stack.count("enrich-misses") == 1);
    let mut values: Vec<String> = stack
        .read_topic("enriched")
        .iter()
        .map(|r| String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned())
        .collect();
    values.sort();
    assert_eq!(
        values,
        [
            "c1", // carol has no row: enriched with nothing
            r#"{"amount":5}{"ID":"alice","NAME":"Alice"}"#,
            r#"{"amount":7}{"ID":"bob","NAME":"Bob"}"#,
        ]
    );
    let miss = &stack.read_topic("enrich-misses")[0];
    assert_eq!(miss.key.as_deref(), Some(&b"carol"[..]));

    stack.wait_caught_up("enrich");
    let info = stack.describe("enrich");
    assert_eq!(info.status, FunctionStatus::Running);
    assert_eq!((info.metrics.events, info.metrics.outputs, info.metrics.errors), (3, 4, 0));
    assert!(info.metrics.invocations >= 1 && info.metrics.duration.count() == info.metrics.invocations);
    let logs = stack.service().logs("enrich", 0).unwrap();
    assert!(logs.iter().any(|l| l.source == LogSource::Function && l.message == "enriched a batch"), "{logs:?}");

    // The registry and the committed positions survive a restart: nothing is handled twice,
    // and new events are.
    stack.restart_service();
    let info = stack.describe("enrich");
    assert_eq!((info.spec.version, info.status), (1, FunctionStatus::Running));
    stack.produce("orders", 1, &[("alice", "again")]);
    stack.wait_until("the new event enriched", || stack.count("enriched") == 4);
    stack.wait_caught_up("enrich");
    assert_eq!(stack.count("enriched"), 4);
    assert_eq!(stack.describe("enrich").metrics.events, 1);
}

#[test]
fn pause_resume_delete_invoke_and_list() {
    let mut stack = Stack::new();
    stack.create_topic("in", 1);
    stack.create_topic("echoed", 1);
    let echo = crate::stack::fixture("echo.wat");
    stack.service().deploy("echo", &echo, fast("in")).expect("deploy");
    stack.produce("in", 0, &[("k", "1")]);
    stack.wait_until("first event echoed", || stack.count("echoed") == 1);
    stack.wait_caught_up("echo");

    let spec = stack.service().pause("echo").unwrap();
    assert!(spec.paused);
    stack.produce("in", 0, &[("k", "2"), ("k", "3")]);
    assert_eq!(stack.describe("echo").status, FunctionStatus::Paused);
    assert_eq!(stack.describe("echo").metrics.lag, 2);
    // Paused survives a restart.
    stack.restart_service();
    assert_eq!(stack.describe("echo").status, FunctionStatus::Paused);
    stack.service().resume("echo").unwrap();
    stack.wait_until("paused events echoed after resume", || stack.count("echoed") == 3);
    stack.wait_caught_up("echo");

    // Direct invocation: outputs returned, nothing written.
    let outputs = stack.service().invoke("echo", &[event(7, Some(b"x"), Some(b"y"))]).unwrap();
    assert_eq!(outputs.len(), 1);
    assert_eq!((outputs[0].topic.as_str(), outputs[0].value.as_deref()), ("echoed", Some(&b"y"[..])));
    assert_eq!(stack.count("echoed"), 3);
    stack.service().invoke_and_write("echo", &[event(8, Some(b"x"), Some(b"z"))]).unwrap();
    assert_eq!(stack.count("echoed"), 4);

    let listed = stack.service().list();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].spec.trigger, Trigger::topic("in"));

    stack.service().delete("echo").unwrap();
    assert!(matches!(stack.service().describe("echo"), Err(ServiceError::NotFound(_))));
    stack.restart_service();
    assert!(stack.service().list().is_empty());
    // Deployed again under the same name, it starts over (its positions were forgotten).
    stack.service().deploy("echo", &echo, fast("in")).unwrap();
    stack.wait_until("all 3 events echoed again", || stack.count("echoed") == 7);
    assert_eq!(stack.describe("echo").spec.version, 1);
}

#[test]
fn bad_configs_are_refused() {
    let stack = Stack::new();
    let echo = crate::stack::fixture("echo.wat");
    let zero = runnel_functions::FunctionConfig { concurrency: 0, ..fast("in") };
    assert!(matches!(
        stack.service().deploy("echo", &echo, zero),
        Err(ServiceError::InvalidConfig { field: "concurrency", .. })
    ));
    let internal = runnel_functions::FunctionConfig { dead_letter_topic: Some("__x".into()), ..fast("in") };
    assert!(matches!(stack.service().deploy("echo", &echo, internal), Err(ServiceError::InvalidConfig { .. })));
    assert!(matches!(stack.service().deploy("echo", b"(component", fast("in")), Err(ServiceError::Deploy(_))));
    assert!(stack.service().list().is_empty());
}
