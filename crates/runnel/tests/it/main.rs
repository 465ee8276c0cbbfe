//! End-to-end tests of the `runnel` binary: `runnel serve` on port 0 prints its ready line,
//! takes settings from flags, environment and a config file, survives hostile frames, and
//! exits 0 after SIGTERM with the log shut down cleanly.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, MetadataRequest, MetadataResponse, RequestHeader, ResponseHeader,
    TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, Request, StrBytes};

mod cli;
mod functions;
mod hostile;
mod sql;
mod sql_crash;

/// Guard against a hung test: no read from the broker waits longer than this.
const HANG_GUARD: Duration = Duration::from_secs(45);

struct Serve {
    child: Child,
    addr: SocketAddr,
    /// The HTTP listener.
    http: SocketAddr,
}

impl Serve {
    fn start(args: &[&str], env: &[(&str, &str)]) -> Serve {
        let mut child = Command::new(env!("CARGO_BIN_EXE_runnel"))
            .arg("serve")
            .args(args)
            .env_remove("RUNNEL_DATA_DIR")
            .env_remove("RUNNEL_KAFKA_LISTENER")
            .env_remove("RUNNEL_DEFAULT_PARTITIONS")
            // Never the default 127.0.0.1:8080: tests run in parallel.
            .env("RUNNEL_HTTP_LISTENER", "127.0.0.1:0")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start runnel serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).expect("read the ready line");
        // `runnel ready: kafka=HOST:PORT http=HOST:PORT`
        let (addr, http) = line
            .trim()
            .strip_prefix("runnel ready: kafka=")
            .and_then(|rest| rest.split_once(" http="))
            .unwrap_or_else(|| panic!("unexpected line {line:?}"));
        Serve { addr: addr.parse().expect("an address"), http: http.parse().expect("an address"), child }
    }

    fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(self.addr).expect("connect");
        s.set_read_timeout(Some(HANG_GUARD)).unwrap();
        s
    }

    /// Sends SIGTERM and returns whether the process exited with status 0.
    fn terminate(mut self) -> bool {
        let status = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status().unwrap();
        assert!(status.success());
        self.child.wait().expect("wait for runnel").success()
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn call<R: Request>(stream: &mut TcpStream, version: i16, request: &R) -> R::Response {
    let header =
        RequestHeader::default().with_request_api_key(R::KEY).with_request_api_version(version).with_correlation_id(9);
    let mut body = BytesMut::new();
    header.encode(&mut body, R::header_version(version)).unwrap();
    request.encode(&mut body, version).unwrap();
    send_frame(stream, &body);
    let mut frame = read_frame(stream).expect("a response");
    let header_version = ApiKey::try_from(R::KEY).unwrap().response_header_version(version);
    assert_eq!(ResponseHeader::decode(&mut frame, header_version).unwrap().correlation_id, 9);
    R::Response::decode(&mut frame, version).unwrap()
}

fn send_frame(stream: &mut TcpStream, body: &[u8]) {
    let mut frame = BytesMut::new();
    frame.put_i32(body.len() as i32);
    frame.put_slice(body);
    stream.write_all(&frame).unwrap();
}

fn read_frame(stream: &mut TcpStream) -> Option<Bytes> {
    let mut size = [0u8; 4];
    stream.read_exact(&mut size).ok()?;
    let mut frame = vec![0u8; i32::from_be_bytes(size) as usize];
    stream.read_exact(&mut frame).ok()?;
    Some(Bytes::from(frame))
}

fn partitions_of_new_topic(serve: &Serve, topic: &str) -> usize {
    let request = MetadataRequest::default().with_topics(Some(vec![
        MetadataRequestTopic::default().with_name(Some(TopicName(StrBytes::from_string(topic.to_string())))),
    ]));
    let response: MetadataResponse = call(&mut serve.connect(), 9, &request);
    assert_eq!(response.topics[0].error_code, 0);
    response.topics[0].partitions.len()
}

fn data_dir_arg(dir: &Path) -> String {
    dir.to_str().unwrap().to_string()
}

#[test]
fn serve_survives_hostile_frames_and_shuts_down_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let data = data_dir_arg(dir.path());
    let serve = Serve::start(&["--kafka-listener", "127.0.0.1:0", "--data-dir", &data, "--log-level", "warn"], &[]);

    // A 14-byte Metadata request claiming 2^31-1 topics: the decoder would reserve ~150 GB.
    let mut hostile = serve.connect();
    let mut body = BytesMut::new();
    body.put_i16(ApiKey::Metadata as i16);
    body.put_i16(1);
    body.put_i32(1);
    body.put_i16(-1);
    body.put_i32(i32::MAX);
    send_frame(&mut hostile, &body);
    assert!(read_frame(&mut hostile).is_none(), "the hostile connection is closed");

    let response: ApiVersionsResponse = call(&mut serve.connect(), 3, &ApiVersionsRequest::default());
    assert_eq!(response.error_code, 0, "the broker still serves");
    assert_eq!(partitions_of_new_topic(&serve, "after"), 1);

    assert!(serve.terminate(), "exit status 0 after SIGTERM");
    assert!(dir.path().join("clean-shutdown").exists(), "the log was shut down cleanly");
}

#[test]
fn settings_come_from_flags_then_environment_then_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("runnel.toml");
    let data = dir.path().join("data");
    std::fs::write(
        &config,
        format!(
            "data-dir = {:?}\nkafka-listener = \"127.0.0.1:0\"\ndefault-partitions = 3\nlog-level = \"warn\"\n",
            data
        ),
    )
    .unwrap();
    let config_arg = config.to_str().unwrap();

    let from_file = Serve::start(&["--config", config_arg], &[]);
    assert_eq!(partitions_of_new_topic(&from_file, "file"), 3);
    assert!(from_file.terminate());
    assert!(data.join("topics").join("file").exists(), "data-dir came from the file");

    let from_env = Serve::start(&["--config", config_arg], &[("RUNNEL_DEFAULT_PARTITIONS", "2")]);
    assert_eq!(partitions_of_new_topic(&from_env, "env"), 2);
    assert!(from_env.terminate());

    let from_flag =
        Serve::start(&["--config", config_arg, "--default-partitions", "4"], &[("RUNNEL_DEFAULT_PARTITIONS", "2")]);
    assert_eq!(partitions_of_new_topic(&from_flag, "flag"), 4);
    assert!(from_flag.terminate());
}

#[test]
fn a_bad_config_file_is_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.toml");
    std::fs::write(&config, "no-such-setting = 1\n").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_runnel"))
        .args(["serve", "--config", config.to_str().unwrap()])
        .output()
        .expect("run runnel");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("invalid config file"), "{stderr}");
    assert!(output.stdout.is_empty(), "no ready line");
}

#[test]
fn bench_produces_and_consumes_against_a_started_server() {
    let dir = tempfile::tempdir().unwrap();
    let data = data_dir_arg(dir.path());
    let serve = Serve::start(&["--kafka-listener", "127.0.0.1:0", "--data-dir", &data, "--log-level", "warn"], &[]);
    let output = Command::new(env!("CARGO_BIN_EXE_runnel"))
        .args(["bench", "--duration", "2", "--output", "json", "--partitions", "4", "--bootstrap"])
        .arg(serve.addr.to_string())
        .output()
        .expect("run runnel bench");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "runnel bench failed: {stderr}");
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("one JSON object on stdout");
    assert!(report["produced_records"].as_u64().unwrap() > 0, "{report}");
    assert_eq!(report["errors"].as_u64(), Some(0), "{report}");
    for field in ["produced_records_per_sec", "produced_mb_per_sec", "acked_records", "consumed_records"] {
        assert!(report[field].is_number(), "{field} in {report}");
    }
    for field in ["latency_p50_ms", "latency_p99_ms", "latency_p999_ms"] {
        assert!(report.get(field).is_some(), "{field} in {report}");
    }
    assert!(serve.terminate());
}

#[test]
fn bench_says_how_to_fix_an_unreachable_broker() {
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = free.local_addr().unwrap().to_string();
    drop(free);
    let output = Command::new(env!("CARGO_BIN_EXE_runnel"))
        .args(["bench", "--duration", "1", "--bootstrap", &addr])
        .output()
        .expect("run runnel bench");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("cannot reach runnel at {addr}: connection refused (is \"runnel serve\" running?)")),
        "{stderr}"
    );
}
