//! The `http-function` world: a component exporting `handle-http` is deployed as one.

use std::sync::Arc;

use runnel_functions::{Header, HttpRequest, HttpResponse, InvokeError};

use crate::fake::{FakeHost, deploy, event, runtime};

#[test]
fn http_function_echoes_the_request() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime(dir.path());
    let function = deploy(&runtime, "echo", "http-echo.wat", Arc::new(FakeHost::default()));
    assert!(function.is_http());
    let headers = vec![Header { key: "content-type".to_string(), value: b"application/json".to_vec() }];
    let outcome = function
        .invoke_http(&HttpRequest {
            method: "POST".to_string(),
            path: "/orders?x=1".to_string(),
            headers: headers.clone(),
            body: br#"{"id":1}"#.to_vec(),
        })
        .expect("invoke_http");
    assert_eq!(outcome.response, HttpResponse { status: 200, headers, body: br#"{"id":1}"#.to_vec() });
    assert!(outcome.produced.is_empty());
    // It is also an event function.
    assert_eq!(function.invoke(&[event(1, None, None)]), Ok(vec![]));
}

#[test]
fn event_function_has_no_http_handler() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime(dir.path());
    let function = deploy(&runtime, "enrich", "enrich.wat", Arc::new(FakeHost::default()));
    let request = HttpRequest { method: "GET".to_string(), path: "/".to_string(), headers: vec![], body: vec![] };
    assert_eq!(function.invoke_http(&request), Err(InvokeError::NotHttp("enrich".to_string())));
}
