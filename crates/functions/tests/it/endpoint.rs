//! HTTP-endpoint functions against a tiny HTTP/1.1 server on 127.0.0.1 run by each test:
//! the request JSON byte for byte (UTF-8 and non-UTF-8 keys, values and headers), the
//! outputs parsed back, and every failure a trigger must retry and dead-letter (status,
//! timeout, oversized or malformed response, refused connection), plus the configs refused
//! at construction and the secrets kept out of `Debug` and errors.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};

use runnel_functions::limits::{
    ENDPOINT_RESPONSE_BYTES_MAX, ENDPOINT_TIMEOUT_MS_MAX, OUTPUT_EVENTS_PER_INVOCATION_MAX,
};
use runnel_functions::{EndpointConfig, EndpointError, EndpointFunction, Event, Header, InvokeError, OutputEvent};
use serde_json::json;

/// A request as the server read it.
struct Request {
    request_line: String,
    /// Header names lowercased, in arrival order.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// Serves each connection's one request with `respond`, which writes the raw response;
/// requests are handed to the test through `requests`.
struct Server {
    url: String,
    requests: Receiver<Request>,
}

fn serve(respond: impl Fn(&Request, &mut TcpStream) + Send + Sync + 'static) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/fn/enrich", listener.local_addr().expect("address"));
    let (sender, requests) = mpsc::channel();
    let respond = Arc::new(respond);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let (sender, respond) = (sender.clone(), respond.clone());
            std::thread::spawn(move || handle(stream, &sender, &*respond));
        }
    });
    Server { url, requests }
}

fn handle(mut stream: TcpStream, sender: &Sender<Request>, respond: &(dyn Fn(&Request, &mut TcpStream) + Sync)) {
    let Ok(reader) = stream.try_clone() else { return };
    let mut reader = BufReader::new(reader);
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.trim_end().split_once(':') {
            headers.push((name.to_ascii_lowercase(), value.trim().to_string()));
        }
    }
    let length = headers.iter().find(|(n, _)| n == "content-length").and_then(|(_, v)| v.parse().ok()).unwrap_or(0);
    let mut body = vec![0; length];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let request = Request { request_line: request_line.trim_end().to_string(), headers, body };
    respond(&request, &mut stream);
    let _ = stream.flush();
    let _ = sender.send(request);
}

/// A complete response with `Connection: close`.
fn reply(status: &str, body: &[u8]) -> impl Fn(&Request, &mut TcpStream) + Send + Sync + 'static {
    let (status, body) = (status.to_string(), body.to_vec());
    move |_, stream| {
        let head = format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
        let _ = stream.write_all(head.as_bytes());
        let _ = stream.write_all(&body);
    }
}

fn function(url: &str) -> EndpointFunction {
    EndpointFunction::new("enrich", EndpointConfig::new(url)).expect("valid config")
}

fn event(offset: i64, key: Option<&[u8]>, value: Option<&[u8]>, headers: Vec<Header>) -> Event {
    Event {
        topic: "orders".to_string(),
        partition: 3,
        offset,
        timestamp_ms: 1_700_000_000_123,
        key: key.map(<[u8]>::to_vec),
        value: value.map(<[u8]>::to_vec),
        headers,
    }
}

#[test]
fn request_json_carries_exact_bytes_and_headers_and_outputs_parse_back() {
    let outputs = json!({"outputs": [
        {"topic": "enriched", "key": "c-1", "value": "{\"order\":1}",
         "headers": [{"key": "trace", "value_base64": "AAEC/w=="}, {"key": "text", "value": "café"}]},
        {"topic": "enriched", "key_base64": "/wA=", "value": null},
        {"topic": "audit", "value_base64": "aGk"}
    ]});
    let server = serve(reply("200 OK", outputs.to_string().as_bytes()));
    let config = EndpointConfig::new(&server.url).with_header("Authorization", "Bearer s3cret");
    let function = EndpointFunction::new("enrich", config).expect("valid config");
    let events = vec![
        event(
            41,
            Some(b"c-1"),
            Some("{\"order\":1,\"note\":\"café ☕\"}".as_bytes()),
            vec![Header { key: "trace".to_string(), value: vec![0, 1, 2, 255] }],
        ),
        // Not UTF-8: base64. A null value (tombstone): null. An empty header value: text.
        event(42, Some(&[0xff, 0x00, b'k']), None, vec![Header { key: "empty".to_string(), value: vec![] }]),
        event(43, None, Some(&[0xc3, 0x28]), vec![]),
    ];

    let returned = function.invoke(&events).expect("invoke");

    let request = server.requests.recv().expect("one request");
    assert_eq!(request.request_line, "POST /fn/enrich HTTP/1.1");
    assert_eq!(request.header("content-type"), Some("application/json"));
    assert_eq!(request.header("authorization"), Some("Bearer s3cret"));
    let sent: serde_json::Value = serde_json::from_slice(&request.body).expect("request is JSON");
    assert_eq!(
        sent,
        json!({"function": "enrich", "events": [
            {"topic": "orders", "partition": 3, "offset": 41, "timestamp_ms": 1_700_000_000_123_i64,
             "key": "c-1", "value": "{\"order\":1,\"note\":\"café ☕\"}",
             "headers": [{"key": "trace", "value_base64": "AAEC/w=="}]},
            {"topic": "orders", "partition": 3, "offset": 42, "timestamp_ms": 1_700_000_000_123_i64,
             "key_base64": "/wBr", "value": null, "headers": [{"key": "empty", "value": ""}]},
            {"topic": "orders", "partition": 3, "offset": 43, "timestamp_ms": 1_700_000_000_123_i64,
             "key": null, "value_base64": "wyg=", "headers": []}
        ]})
    );
    assert_eq!(
        returned,
        vec![
            OutputEvent {
                topic: "enriched".to_string(),
                key: Some(b"c-1".to_vec()),
                value: Some(b"{\"order\":1}".to_vec()),
                headers: vec![
                    Header { key: "trace".to_string(), value: vec![0, 1, 2, 255] },
                    Header { key: "text".to_string(), value: "café".as_bytes().to_vec() },
                ],
            },
            OutputEvent { topic: "enriched".to_string(), key: Some(vec![0xff, 0]), value: None, headers: vec![] },
            // Unpadded base64 is accepted too.
            OutputEvent { topic: "audit".to_string(), key: None, value: Some(b"hi".to_vec()), headers: vec![] },
        ]
    );
}

#[test]
fn empty_body_and_204_mean_no_outputs() {
    for (status, body) in [("204 No Content", ""), ("200 OK", ""), ("200 OK", " \n"), ("200 OK", r#"{"outputs":[]}"#)] {
        let server = serve(reply(status, body.as_bytes()));
        let outputs = function(&server.url).invoke(&[event(1, None, None, vec![])]);
        assert_eq!(outputs, Ok(vec![]), "{status} {body:?}");
    }
}

#[test]
fn error_status_fails_with_status_and_body_excerpt() {
    let server = serve(reply("500 Internal Server Error", b"boom\nat handler.js:12"));
    let error = function(&server.url).invoke(&[event(1, None, None, vec![])]).expect_err("500 fails");
    assert_eq!(
        error,
        InvokeError::EndpointStatus { url: server.url.clone(), status: 500, body: "boom at handler.js:12".to_string() }
    );
    assert_eq!(error.to_string(), format!("endpoint {} answered HTTP 500: boom at handler.js:12", server.url));

    for status in ["429 Too Many Requests", "503 Service Unavailable"] {
        let server = serve(reply(status, b""));
        let error = function(&server.url).invoke(&[]).expect_err("fails");
        let message = error.to_string();
        assert!(message.contains(&format!("HTTP {}", &status[..3])), "{message}");
        assert!(message.contains("retried"), "{message}");
        assert!(message.ends_with("(empty body)"), "{message}");
    }
}

#[test]
fn redirects_are_not_followed() {
    let server = serve(|_, stream| {
        let _ = stream.write_all(b"HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:1/elsewhere\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    });
    match function(&server.url).invoke(&[]) {
        Err(InvokeError::EndpointStatus { status: 302, .. }) => {}
        other => panic!("expected a 302 failure, got {other:?}"),
    }
    let request = server.requests.recv().expect("the request");
    assert_eq!(request.request_line, "POST /fn/enrich HTTP/1.1");
}

#[test]
fn no_answer_within_the_timeout_fails() {
    // The server holds the request until the test ends (the sender is dropped).
    let (hold, held) = mpsc::channel::<()>();
    let held = Mutex::new(held);
    let server = serve(move |_, _| {
        let _ = held.lock().map(|held| held.recv());
    });
    let config = EndpointConfig::new(&server.url).with_timeout_ms(200);
    let function = EndpointFunction::new("enrich", config).expect("valid config");
    assert_eq!(
        function.invoke(&[event(1, None, None, vec![])]),
        Err(InvokeError::EndpointTimeout { url: server.url.clone(), timeout_ms: 200 })
    );
    drop(hold);
}

#[test]
fn oversized_response_fails_without_reading_it_all() {
    let server = serve(|_, stream| {
        let length = ENDPOINT_RESPONSE_BYTES_MAX + 1;
        let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n");
        let _ = stream.write_all(head.as_bytes());
        let chunk = vec![b' '; 64 * 1024];
        let mut sent = 0;
        while sent < length {
            let n = chunk.len().min(length - sent);
            if stream.write_all(&chunk[..n]).is_err() {
                return; // the client stopped reading
            }
            sent += n;
        }
    });
    assert_eq!(
        function(&server.url).invoke(&[]),
        Err(InvokeError::EndpointResponseTooLarge {
            url: server.url.clone(),
            bytes_max: ENDPOINT_RESPONSE_BYTES_MAX as u64
        })
    );
}

#[test]
fn malformed_responses_fail_with_the_reason() {
    let cases = [
        (
            "<html>oops</html>",
            "not the expected JSON (expected value at line 1 column 1); the body starts with: <html>oops</html>",
        ),
        (
            r#"{"outputs":[{"topic":"t","value":"a","value_base64":"YQ=="}]}"#,
            "outputs[0].value and outputs[0].value_base64 are both set",
        ),
        (r#"{"outputs":[{"topic":"t","value_base64":"!!"}]}"#, "outputs[0].value_base64 is not base64"),
        (r#"{"outputs":[{"topic":"t","val":"a"}]}"#, "unknown field `val`"),
        (
            r#"{"outputs":[{"topic":"t","headers":[{"key":"h"}]}]}"#,
            "outputs[0].headers[0].value: a header needs value or value_base64",
        ),
        (r#"{"outputs":[{"value":"a"}]}"#, "missing field `topic`"),
        (r#"{"output":[]}"#, "unknown field `output`"),
    ];
    for (body, expected) in cases {
        let server = serve(reply("200 OK", body.as_bytes()));
        match function(&server.url).invoke(&[]) {
            Err(InvokeError::EndpointResponse { reason, .. }) => assert!(reason.contains(expected), "{body}: {reason}"),
            other => panic!("{body}: expected an invalid-response error, got {other:?}"),
        }
    }
}

#[test]
fn too_many_outputs_fail_with_the_count() {
    let outputs = vec![r#"{"topic":"t"}"#; OUTPUT_EVENTS_PER_INVOCATION_MAX + 7].join(",");
    let server = serve(reply("200 OK", format!(r#"{{"outputs":[{outputs}]}}"#).as_bytes()));
    assert_eq!(
        function(&server.url).invoke(&[]),
        Err(InvokeError::Limit {
            what: "output events",
            value: OUTPUT_EVENTS_PER_INVOCATION_MAX as u64 + 7,
            max: OUTPUT_EVENTS_PER_INVOCATION_MAX as u64
        })
    );
}

#[test]
fn refused_connection_fails_as_unreachable() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/", listener.local_addr().expect("address"));
    drop(listener);
    match function(&url).invoke(&[]) {
        Err(InvokeError::EndpointUnreachable { url: shown, reason }) => {
            assert_eq!(shown, url);
            assert!(!reason.is_empty());
        }
        other => panic!("expected unreachable, got {other:?}"),
    }
}

#[test]
fn invalid_configs_are_refused_at_construction() {
    let refused = |config: EndpointConfig| EndpointFunction::new("enrich", config).expect_err("refused");
    assert_eq!(refused(EndpointConfig::new("ftp://host/x")), EndpointError::Scheme { scheme: "ftp".to_string() });
    assert_eq!(refused(EndpointConfig::new("/relative/path")), EndpointError::Scheme { scheme: String::new() });
    assert!(matches!(refused(EndpointConfig::new("http://exa mple.com/")), EndpointError::InvalidUrl { .. }));
    assert!(matches!(refused(EndpointConfig::new("")), EndpointError::InvalidUrl { .. }));
    match refused(EndpointConfig::new("https://user:pw@example.com/")) {
        EndpointError::InvalidUrl { reason } => assert!(reason.contains("credentials"), "{reason}"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        refused(EndpointConfig::new(format!("https://example.com/{}", "a".repeat(4096)))),
        EndpointError::Limit { field: "url bytes", .. }
    ));
    assert_eq!(refused(EndpointConfig::new("https://example.com/").with_timeout_ms(0)), EndpointError::ZeroTimeout);
    assert_eq!(
        refused(EndpointConfig::new("https://example.com/").with_timeout_ms(ENDPOINT_TIMEOUT_MS_MAX + 1)),
        EndpointError::Limit { field: "timeout_ms", value: ENDPOINT_TIMEOUT_MS_MAX + 1, max: ENDPOINT_TIMEOUT_MS_MAX }
    );
    let header =
        |name: &str, value: &str| refused(EndpointConfig::new("https://example.com/").with_header(name, value));
    assert!(matches!(header("X-Key", "a\r\nInjected: 1"), EndpointError::InvalidHeader { .. }));
    assert!(matches!(header("Bad Name", "v"), EndpointError::InvalidHeader { .. }));
    assert!(matches!(header("Content-Type", "text/plain"), EndpointError::InvalidHeader { .. }));
    let twice = EndpointConfig::new("https://example.com/").with_header("x-key", "a").with_header("X-Key", "b");
    assert!(matches!(refused(twice), EndpointError::InvalidHeader { .. }));
    assert_eq!(
        EndpointFunction::new("", EndpointConfig::new("https://example.com/")).expect_err("refused"),
        EndpointError::EmptyName
    );
    // Accepted: https with a port, a query string, a custom header.
    let config = EndpointConfig::new("https://fn.example.com:8443/run?code=k").with_header("X-Api-Key", "k");
    EndpointFunction::new("enrich", config).expect("valid");
}

#[test]
fn secrets_stay_out_of_debug_and_errors() {
    let server = serve(reply("401 Unauthorized", b"bad token"));
    let url = format!("{}?code=k3y-in-query", server.url);
    let config = EndpointConfig::new(&url).with_header("Authorization", "Bearer s3cret-token");
    let function = EndpointFunction::new("enrich", config.clone()).expect("valid config");
    let error = function.invoke(&[]).expect_err("401 fails");

    let request = server.requests.recv().expect("one request");
    assert_eq!(request.header("authorization"), Some("Bearer s3cret-token"));
    assert_eq!(request.request_line, "POST /fn/enrich?code=k3y-in-query HTTP/1.1");
    for shown in [format!("{config:?}"), format!("{function:?}"), error.to_string(), format!("{error:?}")] {
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(!shown.contains("k3y"), "{shown}");
    }
    assert!(format!("{function:?}").contains(r#""Authorization": <redacted>"#), "{function:?}");
    // Even a config that is refused prints no credentials.
    let refused = EndpointConfig::new("https://user:pa55@example.com/x?code=k3y");
    assert_eq!(
        format!("{refused:?}"),
        r#"EndpointConfig { url: "https://<redacted>@example.com/x?<redacted>", timeout_ms: 30000, headers: {} }"#
    );
    assert_eq!(function.url(), format!("{}?<redacted>", server.url));
}
