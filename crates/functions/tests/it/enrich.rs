//! The enrich example: lowering a batch, `table-get`, `produce`, `log`, and lifting the
//! output events, checked byte for byte.

use std::sync::Arc;

use runnel_functions::{Header, InvokeError, Level, OutputEvent};

use crate::fake::{FakeHost, deploy, event, runtime};

fn enriched(key: Option<&[u8]>, value: &[u8]) -> OutputEvent {
    OutputEvent {
        topic: "enriched".to_string(),
        key: key.map(<[u8]>::to_vec),
        value: Some(value.to_vec()),
        headers: vec![Header { key: "source-topic".to_string(), value: b"orders".to_vec() }],
    }
}

#[test]
fn enrich_outputs_are_byte_exact() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime(dir.path());
    let host = Arc::new(FakeHost::with_users());
    let function = deploy(&runtime, "enrich", "enrich.wat", host.clone());
    assert!(!function.is_http());

    let events = [
        event(10, Some(b"alice"), Some(br#"{"amount":5}"#)),
        event(11, Some(b"bob"), Some(b"x")),
        event(12, None, None),
        event(13, Some(b"alice"), None),
    ];
    let outputs = function.invoke(&events).expect("invoke");
    let expected = vec![
        // produced by the miss on "bob", before the returned events
        OutputEvent {
            topic: "enrich-misses".to_string(),
            key: Some(b"bob".to_vec()),
            value: Some(b"x".to_vec()),
            headers: vec![],
        },
        enriched(Some(b"alice"), br#"{"amount":5}{"name":"Alice"}"#),
        enriched(Some(b"bob"), b"x"),
        enriched(None, b""),
        enriched(Some(b"alice"), br#"{"name":"Alice"}"#),
    ];
    assert_eq!(outputs, expected);
    assert_eq!(host.logs(), vec![(Level::Debug, "enriched a batch".to_string())]);
}

#[test]
fn enrich_empty_batch_returns_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime(dir.path());
    let function = deploy(&runtime, "enrich", "enrich.wat", Arc::new(FakeHost::with_users()));
    assert_eq!(function.invoke(&[]).expect("invoke"), vec![]);
}

/// A batch whose lowered input and output need several pages: exercises `cabi_realloc`
/// growing memory on both sides of the call.
#[test]
fn enrich_large_batch_grows_guest_memory() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime(dir.path());
    let function = deploy(&runtime, "enrich", "enrich.wat", Arc::new(FakeHost::with_users()));
    let value = vec![7u8; 1000];
    let events: Vec<_> = (0..2_000).map(|i| event(i, Some(b"alice"), Some(&value))).collect();
    let outputs = function.invoke(&events).expect("invoke");
    assert_eq!(outputs.len(), 2_000);
    let mut expected_value = value.clone();
    expected_value.extend_from_slice(br#"{"name":"Alice"}"#);
    for output in &outputs {
        assert_eq!(output, &enriched(Some(b"alice"), &expected_value));
    }
}

#[test]
fn host_error_comes_back_as_guest_error() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime(dir.path());
    let host = FakeHost { table_error: Some("table users is not materialized".to_string()), ..FakeHost::default() };
    let function = deploy(&runtime, "enrich", "enrich.wat", Arc::new(host));
    let err = function.invoke(&[event(1, Some(b"alice"), Some(b"v"))]).expect_err("the table call fails");
    assert_eq!(err, InvokeError::Guest("table users is not materialized".to_string()));
}

#[test]
fn oversized_batch_is_refused_before_the_guest_runs() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime(dir.path());
    let host = Arc::new(FakeHost::with_users());
    let function = deploy(&runtime, "enrich", "enrich.wat", host.clone());
    let max = runnel_functions::limits::INPUT_EVENTS_PER_INVOCATION_MAX;
    let events: Vec<_> = (0..=max as i64).map(|i| event(i, None, None)).collect();
    assert!(matches!(function.invoke(&events), Err(InvokeError::Limit { what: "input events", .. })));
    assert!(host.logs().is_empty());
}
