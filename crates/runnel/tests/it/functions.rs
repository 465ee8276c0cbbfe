//! `runnel fn` as a user drives it against `runnel serve`: deploy a component with a topic
//! trigger, see it enrich events from a table made with `runnel sql`, list, describe, logs,
//! invoke, pause and resume, dead letters replayed after deploying a fix, `/metrics`, a
//! restart that keeps the function, delete; and `runnel fn test` with no server.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{Serve, data_dir_arg};

/// How long the test waits for a trigger to produce what it expects before failing.
const TRIGGER_DEADLINE: Duration = Duration::from_secs(60);

fn example(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../functions/examples").join(name);
    path.to_str().unwrap().to_string()
}

/// Runs `runnel ARGS` against `serve` (both its Kafka and HTTP listeners), with `stdin`.
fn runnel_in(serve: &Serve, args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_runnel"))
        .args(args)
        .env("RUNNEL_BOOTSTRAP", serve.addr.to_string())
        .env("RUNNEL_SERVER", format!("http://{}", serve.http))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run runnel");
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().expect("wait for runnel")
}

fn ok(serve: &Serve, args: &[&str]) -> String {
    let out = runnel_in(serve, args, b"");
    assert!(out.status.success(), "runnel {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn json_lines(text: &str) -> Vec<Value> {
    text.lines().filter(|l| !l.trim().is_empty()).map(|l| serde_json::from_str(l).expect("a JSON line")).collect()
}

/// The records of `topic` so far, polled until there are at least `count`.
fn wait_for_records(serve: &Serve, topic: &str, count: usize) -> Vec<Value> {
    let deadline = Instant::now() + TRIGGER_DEADLINE;
    loop {
        // A dead-letter topic appears with its first dead letter: until then, no records.
        let out = runnel_in(serve, &["consume", topic, "--from-beginning", "--output", "json"], b"");
        let records = if out.status.success() { json_lines(&String::from_utf8_lossy(&out.stdout)) } else { Vec::new() };
        if records.len() >= count {
            return records;
        }
        assert!(
            Instant::now() < deadline,
            "{topic} has {} records, not {count}, after {TRIGGER_DEADLINE:?}",
            records.len()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn function(serve: &Serve, name: &str) -> Value {
    let list: Value = serde_json::from_str(&ok(serve, &["fn", "list", "--output", "json"])).unwrap();
    list.as_array().unwrap().iter().find(|f| f["spec"]["name"] == name).cloned().unwrap_or(Value::Null)
}

#[test]
fn functions_are_deployed_operated_and_tested_from_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let data = data_dir_arg(dir.path());
    let args = ["--kafka-listener", "127.0.0.1:0", "--data-dir", &data, "--log-level", "warn"];
    let serve = Serve::start(&args, &[]);
    let sql = "CREATE TABLE users (id VARCHAR PRIMARY KEY, name VARCHAR) WITH (kafka_topic='users', partitions=1, value_format='JSON');
               INSERT INTO users (id, name) VALUES ('c-1', 'Ada');";
    ok(&serve, &["sql", "--server", &format!("http://{}", serve.http), "-e", sql]);
    for topic in ["orders", "enriched", "enrich-misses"] {
        ok(&serve, &["topic", "create", topic, "--partitions", "1"]);
    }

    let out =
        ok(&serve, &["fn", "deploy", "enrich", "--component", &example("enrich.wat"), "--trigger", "topic:orders"]);
    assert!(out.starts_with("deployed enrich version 1 "), "{out}");
    // The table is materialized asynchronously: the first event is produced once it has
    // its row, so the enrichment is deterministic.
    let deadline = Instant::now() + TRIGGER_DEADLINE;
    loop {
        let out = runnel_in(&serve, &["fn", "invoke", "enrich"], br#"{"key":"c-1","value":"{}"}"#);
        if String::from_utf8_lossy(&out.stdout).contains("Ada") {
            break;
        }
        assert!(Instant::now() < deadline, "table users never had c-1: {}", String::from_utf8_lossy(&out.stderr));
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = runnel_in(&serve, &["produce", "orders", "--key-separator", ":"], b"c-1:{\"order\":1}\n");
    assert!(out.status.success());
    let enriched = wait_for_records(&serve, "enriched", 1);
    assert_eq!(enriched[0]["key"], "c-1");
    assert_eq!(enriched[0]["value"], r#"{"order":1}{"ID":"c-1","NAME":"Ada"}"#);
    assert_eq!(enriched[0]["headers"]["source-topic"], "orders");

    let info = function(&serve, "enrich");
    assert_eq!(info["status"]["state"], "running");
    assert!(info["metrics"]["invocations"].as_u64().unwrap() >= 1, "{info}");
    let described: Value = serde_json::from_str(&ok(&serve, &["fn", "describe", "enrich"])).unwrap();
    assert_eq!(described["spec"]["trigger"]["topic"], "orders");
    let table = ok(&serve, &["fn", "list"]);
    assert!(table.lines().nth(1).is_some_and(|l| l.starts_with("enrich") && l.contains("topic:orders")), "{table}");
    assert!(ok(&serve, &["fn", "logs", "enrich"]).contains("enriched a batch"));

    // Invoke returns the outputs without writing them (unless --write).
    let out = runnel_in(&serve, &["fn", "invoke", "enrich"], b"{\"key\":\"c-9\",\"value\":\"{}\"}\n");
    let outputs = json_lines(&String::from_utf8(out.stdout).unwrap());
    assert_eq!(outputs.iter().map(|o| o["topic"].as_str().unwrap()).collect::<Vec<_>>(), ["enrich-misses", "enriched"]);
    assert_eq!(wait_for_records(&serve, "enriched", 1).len(), 1);

    ok(&serve, &["fn", "pause", "enrich"]);
    assert_eq!(function(&serve, "enrich")["status"]["state"], "paused");
    ok(&serve, &["fn", "resume", "enrich"]);
    assert_eq!(function(&serve, "enrich")["status"]["state"], "running");

    // A function that always traps dead-letters the event; a fixed version replays it.
    let trap = example("trap.wat");
    ok(&serve, &["fn", "deploy", "fixme", "--component", &trap, "--trigger", "topic:orders", "--retries", "0"]);
    let dead = wait_for_records(&serve, "fixme-dlq", 1);
    assert_eq!(dead[0]["headers"]["runnel.dlq.function"], "fixme");
    assert_eq!(dead[0]["headers"]["runnel.dlq.topic"], "orders");
    assert!(function(&serve, "fixme")["metrics"]["dead_letters"].as_u64().unwrap() >= 1);
    let out =
        ok(&serve, &["fn", "deploy", "fixme", "--component", &example("enrich.wat"), "--trigger", "topic:orders"]);
    assert!(out.starts_with("deployed fixme version 2 "), "{out}");
    assert_eq!(
        ok(&serve, &["fn", "replay-dead-letters", "fixme"]),
        "replayed 1 dead letters of fixme; 0 failed again\n"
    );
    assert_eq!(wait_for_records(&serve, "enriched", 2).len(), 2, "enrich's output and fixme's replayed one");

    let metrics = http_get(&serve, "/metrics");
    assert!(metrics.contains("runnel_function_invocations_total{function=\"enrich\"}"), "{metrics}");
    assert!(metrics.contains("runnel_function_dead_letters_total{function=\"fixme\"} 1"), "{metrics}");
    assert!(metrics.contains("runnel_function_lag{function=\"enrich\",partition=\"0\"}"), "{metrics}");

    // An HTTP function answers at /fn/NAME/...; a function without an HTTP handler does not.
    ok(&serve, &["fn", "deploy", "echo", "--component", &example("http-echo.wat"), "--trigger", "http"]);
    let answer = http_request(&serve, "POST", "/fn/echo/orders/7?verbose=1", b"ping");
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
    assert!(answer.ends_with("\r\n\r\nping"), "{answer}");
    assert!(answer.to_ascii_lowercase().contains("\r\nx-test: yes\r\n"), "the request's headers echoed: {answer}");
    let answer = http_request(&serve, "GET", "/fn/enrich/", b"");
    assert!(answer.starts_with("HTTP/1.1 404 ") && answer.contains("does not export handle-http"), "{answer}");
    ok(&serve, &["fn", "pause", "echo"]);
    assert!(http_request(&serve, "GET", "/fn/echo", b"").starts_with("HTTP/1.1 503 "));

    // An HTTP-endpoint function: batches POSTed as JSON, its outputs written, its failures
    // retried and dead-lettered like a component's; the secret header is never shown.
    let endpoint = Endpoint::start();
    let url = format!("http://{}/hook?code=secret-code", endpoint.addr);
    let out = ok(
        &serve,
        &[
            "fn",
            "deploy",
            "remote",
            "--url",
            &url,
            "--header",
            "Authorization=Bearer s3cret",
            "--trigger",
            "topic:orders",
        ],
    );
    assert!(out.starts_with("deployed remote version 1 (endpoint http://"), "{out}");
    assert!(!out.contains("secret"), "{out}");
    runnel_in(&serve, &["produce", "orders", "--key-separator", ":"], b"poison:{}\n");
    let dead = wait_for_records(&serve, "remote-dlq", 1);
    assert_eq!(dead[0]["key"], "poison");
    assert!(dead[0]["headers"]["runnel.dlq.error"].as_str().unwrap().contains("500"), "{}", dead[0]);
    let from_endpoint: Vec<Value> =
        wait_for_records(&serve, "enriched", 3).into_iter().filter(|r| r["value"] == "via endpoint").collect();
    assert_eq!(from_endpoint.len(), 1, "c-1's order, through the endpoint");
    assert_eq!(from_endpoint[0]["key"], "c-1");
    let seen = endpoint.requests();
    assert!(seen.iter().all(|r| r.contains("authorization: Bearer s3cret")), "{seen:?}");
    let described = ok(&serve, &["fn", "describe", "remote"]);
    assert!(!described.contains("s3cret") && !described.contains("secret-code"), "{described}");
    assert!(described.contains("<redacted>"), "{described}");

    // A bad component is refused with the runtime's reason; a missing function is named.
    let bad = dir.path().join("bad.wasm");
    std::fs::write(&bad, b"\0asm\x01\0\0\0garbage").unwrap();
    let out = runnel_in(&serve, &["fn", "deploy", "bad", "--component", bad.to_str().unwrap()], b"");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("HTTP 422"), "{}", String::from_utf8_lossy(&out.stderr));
    let out = runnel_in(&serve, &["fn", "describe", "nope"], b"");
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown function \"nope\" (HTTP 404)"));

    // A restart keeps both functions, their versions and their positions.
    assert!(serve.terminate());
    let serve = Serve::start(&args, &[]);
    assert_eq!(function(&serve, "fixme")["spec"]["version"], 2);
    assert_eq!(function(&serve, "enrich")["status"]["state"], "running");
    assert_eq!(function(&serve, "remote")["status"]["state"], "running", "the endpoint function is loaded again");
    ok(&serve, &["fn", "delete", "enrich"]);
    assert_eq!(function(&serve, "enrich"), Value::Null);

    // `fn test` runs a component on sample events locally, with tables from files.
    let users = dir.path().join("users.jsonl");
    std::fs::write(&users, "{\"key\":\"c-1\",\"value\":{\"name\":\"Ada\"}}\n").unwrap();
    let events = dir.path().join("events.jsonl");
    std::fs::write(&events, "{\"topic\":\"orders\",\"key\":\"c-1\",\"value\":{\"order\":1}}\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_runnel"))
        .args(["fn", "test", "--component", &example("enrich.wat"), "--input", events.to_str().unwrap()])
        .args(["--table", &format!("users={}", users.display())])
        .env("XDG_CACHE_HOME", dir.path().join("cache"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        json_lines(&String::from_utf8(out.stdout).unwrap()),
        [
            serde_json::json!({"topic":"enriched","key":"c-1","value":"{\"order\":1}{\"name\":\"Ada\"}","headers":{"source-topic":"orders"}})
        ]
    );
    assert_eq!(String::from_utf8_lossy(&out.stderr), "[debug] enriched a batch\n");
    let out = Command::new(env!("CARGO_BIN_EXE_runnel"))
        .args(["fn", "test", "--component", &trap, "--input", events.to_str().unwrap()])
        .env("XDG_CACHE_HOME", dir.path().join("cache"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("integer divide by zero"));
}

/// GETs a path of the server's HTTP API (the whole answer as text).
fn http_get(serve: &Serve, path: &str) -> String {
    http_request(serve, "GET", path, b"")
}

/// One HTTP/1.1 request with a header `X-Test: yes`; the whole answer as text.
fn http_request(serve: &Serve, method: &str, path: &str, body: &[u8]) -> String {
    use std::io::Read;
    let mut stream = std::net::TcpStream::connect(serve.http).unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nX-Test: yes\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    text
}

/// A stand-in for a function on another platform: answers each POSTed batch with one
/// output per event (`{"topic": "enriched", "key": <key>, "value": "via endpoint"}`), or 500
/// when an event's key is `poison`. Keeps every request's head and body.
struct Endpoint {
    addr: std::net::SocketAddr,
    seen: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Endpoint {
    fn start() -> Endpoint {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let kept = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let kept = kept.clone();
                std::thread::spawn(move || serve_endpoint(stream, &kept));
            }
        });
        Endpoint { addr, seen }
    }

    fn requests(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

/// Serves the requests of one keep-alive connection until the client closes it.
fn serve_endpoint(stream: std::net::TcpStream, seen: &std::sync::Mutex<Vec<String>>) {
    use std::io::{BufRead, BufReader, Read};
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    loop {
        let mut head = String::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            if line == "\r\n" {
                break;
            }
            head.push_str(&line.to_ascii_lowercase().replace("bearer s3cret", "Bearer s3cret"));
        }
        let length: usize =
            head.lines().find_map(|l| l.strip_prefix("content-length:")).map_or(0, |v| v.trim().parse().unwrap());
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        let batch: Value = serde_json::from_slice(&body).unwrap();
        seen.lock().unwrap().push(head);
        let events = batch["events"].as_array().unwrap();
        let answer = if events.iter().any(|e| e["key"] == "poison") {
            "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\n\r\nboom".to_string()
        } else {
            let outputs: Vec<Value> = events
                .iter()
                .map(|e| serde_json::json!({"topic": "enriched", "key": e["key"], "value": "via endpoint"}))
                .collect();
            let body = serde_json::json!({ "outputs": outputs }).to_string();
            format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len())
        };
        if writer.write_all(answer.as_bytes()).is_err() {
            return;
        }
    }
}
