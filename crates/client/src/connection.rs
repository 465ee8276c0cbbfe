//! One TCP connection to a broker: size-prefixed frames, correlation ids, kafka-protocol
//! encoding and decoding, and the API versions agreed with the broker through ApiVersions.
//!
//! A broker answers a connection's requests in order, so a caller may pipeline: [`send`]
//! several requests, then [`receive`] their answers oldest first. [`into_split`] hands the
//! two directions to different tasks.
//!
//! [`send`]: Connection::send
//! [`receive`]: Connection::receive
//! [`into_split`]: Connection::into_split

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, Request, StrBytes};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use crate::error::{ConnectError, Error};

/// Largest response frame accepted; a bigger size prefix means a confused peer.
pub const RESPONSE_FRAME_BYTES_MAX: usize = 256 << 20;
/// How long to wait for the TCP connection and the ApiVersions handshake.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to wait for any one answer (long-polling fetches wait at most `max_wait_ms` less).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// ApiVersions version sent first: v3 (flexible, with the client's name) is served by every
/// broker since Kafka 2.4 and by runnel.
const API_VERSIONS_VERSION: i16 = 3;

/// The highest version of each API this client's code fills in correctly, where lower than
/// what kafka-protocol can encode: Produce v13 and Fetch v13+ name topics by id only.
const CLIENT_VERSION_CAPS: &[(ApiKey, i16)] = &[(ApiKey::Produce, 12), (ApiKey::Fetch, 12)];

/// The versions agreed with one broker: per API key, the highest version both sides support.
#[derive(Debug, Clone, Default)]
pub struct ApiVersions {
    broker: HashMap<i16, (i16, i16)>,
}

impl ApiVersions {
    fn from_response(response: &ApiVersionsResponse) -> ApiVersions {
        let broker = response.api_keys.iter().map(|k| (k.api_key, (k.min_version, k.max_version))).collect();
        ApiVersions { broker }
    }

    /// The version to use for `R`: the highest both the broker and this client support.
    pub fn pick<R: Request>(&self) -> Option<i16> {
        let (client_min, client_max) = client_range::<R>();
        let (broker_min, broker_max) = *self.broker.get(&R::KEY)?;
        let version = client_max.min(broker_max);
        (version >= client_min.max(broker_min)).then_some(version)
    }
}

/// The versions of `R` this client can speak.
pub fn client_range<R: Request>() -> (i16, i16) {
    let cap = ApiKey::try_from(R::KEY)
        .ok()
        .and_then(|key| CLIENT_VERSION_CAPS.iter().find(|(k, _)| *k == key))
        .map_or(i16::MAX, |(_, v)| *v);
    (R::VERSIONS.min, R::VERSIONS.max.min(cap))
}

/// The API's name for messages: `Metadata`, `OffsetCommit`.
pub fn api_name<R: Request>() -> String {
    ApiKey::try_from(R::KEY).map_or_else(|_| format!("API {}", R::KEY), |k| format!("{k:?}"))
}

/// A request sent and not yet answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pending {
    pub correlation_id: i32,
    pub version: i16,
}

/// A connection to one broker, with the API versions agreed at connect time.
#[derive(Debug)]
pub struct Connection {
    sender: RequestSender,
    receiver: ResponseReceiver,
}

impl Connection {
    /// Connects to `addr` (host:port) and agrees API versions with ApiVersions.
    pub async fn connect(addr: &str, client_id: &str) -> Result<Connection, ConnectError> {
        let stream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
            Err(_) => {
                return Err(ConnectError::TimedOut { addr: addr.to_string(), timeout_secs: CONNECT_TIMEOUT.as_secs() });
            }
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                return Err(ConnectError::Refused { addr: addr.to_string() });
            }
            Ok(Err(e)) => return Err(ConnectError::Io { addr: addr.to_string(), error: e }),
            Ok(Ok(stream)) => stream,
        };
        stream.set_nodelay(true).ok();
        let (reader, writer) = stream.into_split();
        let mut connection = Connection {
            sender: RequestSender {
                addr: addr.to_string(),
                writer,
                next_correlation_id: 1,
                client_id: StrBytes::from_string(client_id.to_string()),
                versions: Arc::new(ApiVersions::default()),
                frame: BytesMut::new(),
            },
            receiver: ResponseReceiver { addr: addr.to_string(), reader: BufReader::new(reader) },
        };
        let request = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("runnel-client"))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
        let handshake = async {
            let pending = connection.sender.send_at(API_VERSIONS_VERSION, &request).await?;
            connection.receiver.receive::<ApiVersionsRequest>(pending).await
        };
        let response = match tokio::time::timeout(CONNECT_TIMEOUT, handshake).await {
            Err(_) => {
                return Err(ConnectError::TimedOut { addr: addr.to_string(), timeout_secs: CONNECT_TIMEOUT.as_secs() });
            }
            Ok(Err(e)) => return Err(ConnectError::Handshake { addr: addr.to_string(), detail: e.to_string() }),
            Ok(Ok(response)) => response,
        };
        if response.error_code != 0 {
            let detail = format!("error code {} (the broker may be older than Kafka 2.4)", response.error_code);
            return Err(ConnectError::Handshake { addr: addr.to_string(), detail });
        }
        connection.sender.versions = Arc::new(ApiVersions::from_response(&response));
        Ok(connection)
    }

    /// The broker's host:port as given to [`Connection::connect`].
    pub fn addr(&self) -> &str {
        &self.sender.addr
    }

    pub fn versions(&self) -> &ApiVersions {
        &self.sender.versions
    }

    /// The version to use for `R`, or [`Error::Unsupported`].
    pub fn version<R: Request>(&self) -> Result<i16, Error> {
        self.sender.version::<R>()
    }

    /// Sends `request` at `version` and waits for its answer.
    pub async fn call_at<R: Request>(&mut self, version: i16, request: &R) -> Result<R::Response, Error> {
        let pending = self.sender.send_at(version, request).await?;
        self.receiver.receive::<R>(pending).await
    }

    /// Sends `request` at the agreed version and waits for its answer.
    pub async fn call<R: Request>(&mut self, request: &R) -> Result<R::Response, Error> {
        let version = self.version::<R>()?;
        self.call_at(version, request).await
    }

    /// Sends without waiting: answers come back in the order requests were sent.
    pub async fn send<R: Request>(&mut self, version: i16, request: &R) -> Result<Pending, Error> {
        self.sender.send_at(version, request).await
    }

    /// Reads the answer to the oldest request sent and not yet received.
    pub async fn receive<R: Request>(&mut self, pending: Pending) -> Result<R::Response, Error> {
        self.receiver.receive::<R>(pending).await
    }

    /// The two directions, for a writer task and a reader task.
    pub fn into_split(self) -> (RequestSender, ResponseReceiver) {
        (self.sender, self.receiver)
    }
}

/// The sending half of a [`Connection`].
#[derive(Debug)]
pub struct RequestSender {
    addr: String,
    writer: OwnedWriteHalf,
    next_correlation_id: i32,
    client_id: StrBytes,
    versions: Arc<ApiVersions>,
    frame: BytesMut,
}

impl RequestSender {
    pub fn version<R: Request>(&self) -> Result<i16, Error> {
        self.versions.pick::<R>().ok_or_else(|| {
            let (client_min, client_max) = client_range::<R>();
            Error::Unsupported { addr: self.addr.clone(), api: api_name::<R>(), client_min, client_max }
        })
    }

    pub async fn send_at<R: Request>(&mut self, version: i16, request: &R) -> Result<Pending, Error> {
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id = self.next_correlation_id.wrapping_add(1);
        self.frame.clear();
        encode_request(&mut self.frame, &self.client_id, version, correlation_id, request)?;
        self.writer.write_all(&self.frame).await.map_err(|e| io_error::<R>(&self.addr, e))?;
        Ok(Pending { correlation_id, version })
    }

    /// Closes the sending direction (the broker sees end of stream after its last answer).
    pub async fn shutdown(&mut self) {
        self.writer.shutdown().await.ok();
    }
}

/// The receiving half of a [`Connection`].
#[derive(Debug)]
pub struct ResponseReceiver {
    addr: String,
    reader: BufReader<OwnedReadHalf>,
}

impl ResponseReceiver {
    pub async fn receive<R: Request>(&mut self, pending: Pending) -> Result<R::Response, Error> {
        let frame = match tokio::time::timeout(REQUEST_TIMEOUT, read_frame(&mut self.reader)).await {
            Err(_) => {
                return Err(Error::TimedOut {
                    addr: self.addr.clone(),
                    api: api_name::<R>(),
                    timeout_secs: REQUEST_TIMEOUT.as_secs(),
                });
            }
            Ok(Err(FrameError::Closed)) => return Err(Error::Closed { addr: self.addr.clone(), api: api_name::<R>() }),
            Ok(Err(FrameError::Io(e))) => return Err(io_error::<R>(&self.addr, e)),
            Ok(Err(FrameError::TooLarge(size))) => {
                let detail = format!("frame of {size} bytes (limit {RESPONSE_FRAME_BYTES_MAX})");
                return Err(Error::Protocol { addr: self.addr.clone(), api: api_name::<R>(), detail });
            }
            Ok(Ok(frame)) => frame,
        };
        decode_response::<R>(frame, pending).map_err(|detail| Error::Protocol {
            addr: self.addr.clone(),
            api: api_name::<R>(),
            detail,
        })
    }
}

fn io_error<R: Request>(addr: &str, e: std::io::Error) -> Error {
    if matches!(e.kind(), std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset) {
        return Error::Closed { addr: addr.to_string(), api: api_name::<R>() };
    }
    Error::Io { addr: addr.to_string(), api: api_name::<R>(), error: e }
}

/// Appends the size-prefixed frame of a request.
fn encode_request<R: Request>(
    out: &mut BytesMut,
    client_id: &StrBytes,
    version: i16,
    correlation_id: i32,
    request: &R,
) -> Result<(), Error> {
    let header = RequestHeader::default()
        .with_request_api_key(R::KEY)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(client_id.clone()));
    let at = out.len();
    out.put_i32(0);
    header.encode(out, R::header_version(version)).map_err(encode_error::<R>)?;
    request.encode(out, version).map_err(encode_error::<R>)?;
    let size = out.len() - at - 4;
    let size =
        i32::try_from(size).map_err(|_| Error::Encode { api: api_name::<R>(), detail: "request too large".into() })?;
    out[at..at + 4].copy_from_slice(&size.to_be_bytes());
    Ok(())
}

/// kafka-protocol's errors are `anyhow::Error`; only their text is kept, so that this library
/// does not depend on anyhow.
fn encode_error<R: Request>(e: impl std::fmt::Display) -> Error {
    Error::Encode { api: api_name::<R>(), detail: e.to_string() }
}

fn decode_response<R: Request>(mut frame: Bytes, pending: Pending) -> Result<R::Response, String> {
    let api_key = ApiKey::try_from(R::KEY).map_err(|_| format!("unknown api key {}", R::KEY))?;
    let header = ResponseHeader::decode(&mut frame, api_key.response_header_version(pending.version))
        .map_err(|e| format!("bad response header: {e}"))?;
    if header.correlation_id != pending.correlation_id {
        return Err(format!(
            "answer to request {} where {} was expected",
            header.correlation_id, pending.correlation_id
        ));
    }
    let response = R::Response::decode(&mut frame, pending.version).map_err(|e| e.to_string())?;
    if frame.has_remaining() {
        return Err(format!("{} unread bytes after the response", frame.remaining()));
    }
    Ok(response)
}

enum FrameError {
    Closed,
    Io(std::io::Error),
    TooLarge(i32),
}

async fn read_frame<S: AsyncRead + Unpin>(reader: &mut S) -> Result<Bytes, FrameError> {
    let size = match reader.read_i32().await {
        Ok(size) => size,
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Err(FrameError::Closed),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Err(FrameError::Closed),
        Err(e) => return Err(FrameError::Io(e)),
    };
    let Some(len) = usize::try_from(size).ok().filter(|s| *s <= RESPONSE_FRAME_BYTES_MAX) else {
        return Err(FrameError::TooLarge(size));
    };
    let mut frame = vec![0u8; len];
    reader.read_exact(&mut frame).await.map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => FrameError::Closed,
        _ => FrameError::Io(e),
    })?;
    Ok(Bytes::from(frame))
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::api_versions_response::ApiVersion;
    use kafka_protocol::messages::{FetchRequest, MetadataRequest, ProduceRequest};
    use kafka_protocol::protocol::Message;

    use super::*;

    fn broker(ranges: &[(ApiKey, i16, i16)]) -> ApiVersions {
        let response = ApiVersionsResponse::default().with_api_keys(
            ranges
                .iter()
                .map(|&(k, min, max)| {
                    ApiVersion::default().with_api_key(k as i16).with_min_version(min).with_max_version(max)
                })
                .collect(),
        );
        ApiVersions::from_response(&response)
    }

    #[test]
    fn the_highest_version_both_sides_support_is_picked() {
        let versions = broker(&[(ApiKey::Metadata, 0, 9), (ApiKey::Produce, 3, 13), (ApiKey::Fetch, 13, 17)]);
        assert_eq!(versions.pick::<MetadataRequest>(), Some(9), "the broker's max");
        assert_eq!(versions.pick::<ProduceRequest>(), Some(12), "the client's cap");
        assert_eq!(versions.pick::<FetchRequest>(), None, "no overlap");
        assert_eq!(versions.pick::<ApiVersionsRequest>(), None, "not advertised");
        let newer = broker(&[(ApiKey::Metadata, 0, 99)]);
        assert_eq!(newer.pick::<MetadataRequest>(), Some(MetadataRequest::VERSIONS.max), "kafka-protocol's max");
    }

    #[tokio::test]
    async fn a_closed_port_is_an_actionable_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        drop(listener);
        let error = Connection::connect(&addr, "test").await.unwrap_err();
        assert_eq!(
            error.to_string(),
            format!("cannot reach runnel at {addr}: connection refused (is \"runnel serve\" running?)")
        );
    }

    #[tokio::test]
    async fn an_oversized_answer_is_refused_without_allocating_it() {
        let mut frame: &[u8] = &[0x7f, 0xff, 0xff, 0xff];
        assert!(matches!(read_frame(&mut frame).await, Err(FrameError::TooLarge(i32::MAX))));
        let mut frame: &[u8] = &[0xff, 0xff, 0xff, 0xff];
        assert!(matches!(read_frame(&mut frame).await, Err(FrameError::TooLarge(-1))));
        let mut frame: &[u8] = &[0, 0, 0, 2, 1];
        assert!(matches!(read_frame(&mut frame).await, Err(FrameError::Closed)));
    }
}
