//! A broker started in-process on port 0 over a temporary data directory, and a raw client.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, Request, StrBytes};
use runnel_broker::{Broker, BrokerConfig};
use runnel_log::{Log, LogConfig, SimStorage};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Guard against a hung test: no test waits on the broker longer than this.
pub const HANG_GUARD: Duration = Duration::from_secs(45);

pub struct TestBroker {
    pub addr: SocketAddr,
    pub log: Arc<Log>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), runnel_broker::BrokerError>>>,
    _dir: tempfile::TempDir,
}

impl TestBroker {
    pub async fn start() -> TestBroker {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut BrokerConfig)) -> TestBroker {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = Log::open(LogConfig::new(dir.path())).expect("open log");
        Self::start_over(log, dir, tweak).await
    }

    /// A broker whose log is in a simulated store (faults injected by the test); the broker's
    /// own state files stay in a real temporary directory.
    pub async fn start_simulated(storage: &SimStorage) -> TestBroker {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = Log::open_with(LogConfig::new(dir.path()), Arc::new(storage.clone())).expect("open simulated log");
        Self::start_over(log, dir, |_| {}).await
    }

    async fn start_over(log: Arc<Log>, dir: tempfile::TempDir, tweak: impl FnOnce(&mut BrokerConfig)) -> TestBroker {
        let mut config = BrokerConfig::new("127.0.0.1:0".parse().unwrap());
        tweak(&mut config);
        let broker = Broker::bind(config, log.clone()).await.expect("bind broker");
        let addr = broker.local_addr();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(broker.run(async move {
            let _ = stopped.await;
        }));
        TestBroker { addr, log, stop: Some(stop), task: Some(task), _dir: dir }
    }

    pub async fn client(&self) -> Client {
        Client::connect(self.addr).await
    }

    /// Shuts the broker down and waits for `run` to return.
    pub async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(HANG_GUARD, task)
                .await
                .expect("broker stops")
                .expect("broker task")
                .expect("broker run");
        }
        self.log.shutdown().expect("log shutdown");
    }
}

pub struct Client {
    pub stream: TcpStream,
    next_correlation_id: i32,
}

impl Client {
    pub async fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).await.expect("connect");
        Client { stream, next_correlation_id: 1 }
    }

    /// Sends a request without waiting for its answer; returns its correlation id.
    pub async fn send<R: Request>(&mut self, version: i16, request: &R) -> i32 {
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id += 1;
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("it")));
        let mut body = BytesMut::new();
        header.encode(&mut body, R::header_version(version)).expect("encode header");
        request.encode(&mut body, version).expect("encode request");
        self.send_frame(&body).await;
        correlation_id
    }

    pub async fn send_frame(&mut self, body: &[u8]) {
        let mut frame = BytesMut::with_capacity(body.len() + 4);
        frame.put_i32(body.len() as i32);
        frame.put_slice(body);
        self.stream.write_all(&frame).await.expect("write request");
    }

    /// The next response frame (without its size), or None when the broker closed the connection.
    pub async fn read_frame(&mut self) -> Option<Bytes> {
        tokio::time::timeout(HANG_GUARD, async {
            let mut size = [0u8; 4];
            self.stream.read_exact(&mut size).await.ok()?;
            let mut frame = vec![0u8; i32::from_be_bytes(size) as usize];
            self.stream.read_exact(&mut frame).await.ok()?;
            Some(Bytes::from(frame))
        })
        .await
        .expect("broker answers or closes within the hang guard")
    }

    pub async fn recv<R: Request>(&mut self, version: i16, correlation_id: i32) -> R::Response {
        let mut frame = self.read_frame().await.expect("a response, not a closed connection");
        let api_key = ApiKey::try_from(R::KEY).unwrap();
        let header =
            ResponseHeader::decode(&mut frame, api_key.response_header_version(version)).expect("response header");
        assert_eq!(header.correlation_id, correlation_id, "responses come in request order");
        let response = R::Response::decode(&mut frame, version).expect("decode response");
        assert!(!frame.has_remaining(), "the whole response frame is decoded");
        response
    }

    pub async fn call<R: Request>(&mut self, version: i16, request: &R) -> R::Response {
        let correlation_id = self.send(version, request).await;
        self.recv::<R>(version, correlation_id).await
    }

    /// Whether the broker has closed this connection (reads until EOF or an error).
    pub async fn is_closed_by_broker(&mut self) -> bool {
        let mut sink = [0u8; 1024];
        tokio::time::timeout(HANG_GUARD, async {
            loop {
                match self.stream.read(&mut sink).await {
                    Ok(0) | Err(_) => return true,
                    Ok(_) => continue,
                }
            }
        })
        .await
        .unwrap_or(false)
    }
}

pub fn name(s: &str) -> kafka_protocol::messages::TopicName {
    kafka_protocol::messages::TopicName(StrBytes::from_string(s.to_string()))
}

pub fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}
