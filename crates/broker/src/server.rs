//! The TCP side: accepting connections (at most [`CONNECTIONS_MAX`]), reading size-prefixed
//! request frames within the limits, answering each connection's requests in order, and
//! graceful shutdown (stop accepting, let in-flight requests finish). Requests are handled one
//! at a time, as Kafka does, with one exception: an acks=all produce, once appended, waits
//! for its fsync while the client's next pipelined produce is read and appended, so that one
//! fsync covers both (see [`connection_loop`]).

use std::collections::VecDeque;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, ResponseKind};
use runnel_log::{Log, PARTITIONS_MAX};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::{Instant, timeout, timeout_at};

use crate::group::GroupCoordinator;
use crate::handlers::{Context, Reply, supported_api_versions};
use crate::limits::{
    CONNECTION_IDLE_TIMEOUT, CONNECTIONS_MAX, FIRST_REQUEST_BYTES_MAX, PARTIAL_REQUEST_TIMEOUT,
    PRODUCES_AWAITING_FSYNC_PER_CONNECTION_MAX, REQUEST_BYTES_MAX, REQUEST_MEMORY_BYTES_MAX, RESPONSE_WRITE_TIMEOUT,
    SHUTDOWN_DRAIN_TIMEOUT,
};
use crate::state::{ProducerIds, cluster_id};
use crate::wire::{
    HEADER_PREFIX_BYTES, api_versions_fallback, decode_request, encode_response, header_prefix, unsupported_response,
};
use crate::{BrokerConfig, BrokerError};

/// Bytes of a frame buffer allocated before its data arrives; it grows as data does, so a
/// client announcing a large frame costs only what it actually sends.
const FRAME_BUFFER_INITIAL_BYTES: usize = 64 * 1024;
/// Bytes of a request frame read (and reserved from the request memory budget) at a time.
const FRAME_READ_CHUNK_BYTES: usize = 1024 * 1024;
/// Pause after a failed accept (e.g. out of file descriptors) before trying again.
const ACCEPT_RETRY_DELAY: Duration = Duration::from_millis(100);

/// A Kafka broker bound to its listener, ready to [`run`](Broker::run).
pub struct Broker {
    listener: TcpListener,
    local_addr: SocketAddr,
    context: Arc<Context>,
    shutdown: watch::Sender<bool>,
}

impl Broker {
    /// Binds the listener and opens the broker's state (cluster id, producer ids, groups).
    pub async fn bind(config: BrokerConfig, log: Arc<Log>) -> Result<Broker, BrokerError> {
        if config.default_partitions == 0 || config.default_partitions > PARTITIONS_MAX {
            return Err(BrokerError::Config(format!(
                "default partitions must be 1 to {PARTITIONS_MAX}, not {}",
                config.default_partitions
            )));
        }
        let listener = TcpListener::bind(config.listener)
            .await
            .map_err(|source| BrokerError::Bind { addr: config.listener, source })?;
        let local_addr = listener.local_addr()?;
        let (advertised_host, advertised_port) = match &config.advertised_listener {
            Some((host, port)) => (host.clone(), i32::from(*port)),
            None => {
                let ip = if local_addr.ip().is_unspecified() {
                    tracing::warn!(
                        listener = %local_addr,
                        "listening on all interfaces without an advertised listener: advertising 127.0.0.1 (set --advertised-kafka-listener)"
                    );
                    IpAddr::V4(Ipv4Addr::LOCALHOST)
                } else {
                    local_addr.ip()
                };
                (ip.to_string(), i32::from(local_addr.port()))
            }
        };
        let state_log = log.clone();
        let node_id = config.node_id;
        let group_config = config.groups.clone();
        let (cluster_id, producer_ids, groups) = tokio::task::spawn_blocking(move || {
            let data_dir = state_log.config().data_dir.clone();
            let cluster_id = cluster_id(&data_dir)?;
            let seen_max = state_log
                .topics()
                .iter()
                .flat_map(|t| (0..t.partitions).filter_map(|i| state_log.partition(&t.name, i)))
                .map(|p| p.producer_ids_max())
                .max()
                .unwrap_or(-1);
            let producer_ids = ProducerIds::open(&data_dir, seen_max)?;
            let groups = GroupCoordinator::open_with(state_log, node_id, group_config)?;
            Ok::<_, BrokerError>((cluster_id, producer_ids, groups))
        })
        .await
        .map_err(|e| BrokerError::Config(format!("opening broker state failed: {e}")))??;
        let (shutdown, shutdown_rx) = watch::channel(false);
        let context = Arc::new(Context {
            log,
            config,
            advertised_host,
            advertised_port,
            cluster_id,
            groups,
            producer_ids: Arc::new(producer_ids),
            config_lock: Arc::new(tokio::sync::Mutex::new(())),
            metrics: Arc::new(crate::metrics::Metrics::new()),
            shutdown: shutdown_rx,
            supported: supported_api_versions(),
        });
        Ok(Broker { listener, local_addr, context, shutdown })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The `host:port` clients are told to connect to.
    pub fn advertised_listener(&self) -> (String, i32) {
        (self.context.advertised_host.clone(), self.context.advertised_port)
    }

    /// The cluster id given to clients, kept in the data directory.
    pub fn cluster_id(&self) -> &str {
        &self.context.cluster_id
    }

    /// The log this broker serves.
    pub fn log(&self) -> Arc<Log> {
        self.context.log.clone()
    }

    /// The consumer group coordinator (for the HTTP API and metrics).
    pub fn groups(&self) -> Arc<GroupCoordinator> {
        self.context.groups.clone()
    }

    /// The request-path counters, shared with the HTTP API (which counts its own produce and
    /// consume there too).
    pub fn metrics(&self) -> Arc<crate::metrics::Metrics> {
        self.context.metrics.clone()
    }

    /// The lock serialising read-modify-write changes of topic configs; whoever else alters
    /// configs (the HTTP API) takes it too, so concurrent changes are never lost.
    pub fn topic_config_lock(&self) -> Arc<tokio::sync::Mutex<()>> {
        self.context.config_lock.clone()
    }

    /// Serves clients until `shutdown` completes; then stops accepting, lets in-flight
    /// requests finish (for at most [`SHUTDOWN_DRAIN_TIMEOUT`]), closes every connection and
    /// shuts the group coordinator down. The caller then shuts the log down.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), BrokerError> {
        let Broker { listener, context, shutdown: shutdown_tx, .. } = self;
        let connections = Arc::new(Semaphore::new(CONNECTIONS_MAX));
        let memory = Arc::new(Semaphore::new(REQUEST_MEMORY_BYTES_MAX));
        let mut tasks = JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let Ok(permit) = connections.clone().try_acquire_owned() else {
                            tracing::warn!(%peer, limit = CONNECTIONS_MAX, "too many connections: closing the new one");
                            continue;
                        };
                        if let Err(e) = stream.set_nodelay(true) {
                            tracing::debug!(%peer, error = %e, "cannot set TCP_NODELAY");
                        }
                        tasks.spawn(serve_connection(context.clone(), stream, peer, memory.clone(), permit));
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(ACCEPT_RETRY_DELAY).await;
                    }
                },
                Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                    if let Err(e) = done {
                        tracing::error!(error = %e, "connection task failed");
                    }
                }
            }
        }
        drop(listener);
        tracing::info!(connections = tasks.len(), "shutting down: no new connections, finishing in-flight requests");
        let _ = shutdown_tx.send(true);
        let drained = timeout(SHUTDOWN_DRAIN_TIMEOUT, async { while tasks.join_next().await.is_some() {} }).await;
        if drained.is_err() {
            tracing::warn!(
                connections = tasks.len(),
                "in-flight requests did not finish in time; closing their connections"
            );
            tasks.shutdown().await;
        }
        context.groups.shutdown();
        Ok(())
    }
}

/// Why a connection ended.
enum Close {
    Eof,
    Shutdown,
    Idle,
    Error(String),
}

async fn serve_connection(
    cx: Arc<Context>,
    mut stream: TcpStream,
    peer: SocketAddr,
    memory: Arc<Semaphore>,
    _permit: OwnedSemaphorePermit,
) {
    tracing::debug!(%peer, "connection opened");
    let _open = cx.metrics.connection_opened();
    let close = connection_loop(&cx, &mut stream, peer, &memory).await;
    match close {
        Close::Eof | Close::Shutdown => tracing::debug!(%peer, "connection closed"),
        Close::Idle => tracing::debug!(%peer, "closing idle connection"),
        Close::Error(reason) => tracing::warn!(%peer, reason, "closing connection"),
    }
    let _ = stream.shutdown().await;
}

/// A response of this connection not yet written, in request order.
enum Pending {
    Ready(Bytes),
    /// An appended acks=all produce waiting for its fsync, then encoding its response.
    Syncing(JoinHandle<Result<Bytes, String>>),
}

/// Why the next step of a connection's loop runs.
enum Wake {
    /// The first bytes of a request's size (or 0: end of stream, or the idle timeout).
    Read(Result<std::io::Result<usize>, tokio::time::error::Elapsed>),
    /// The oldest pending produce is fsynced: its response, or why the connection must close.
    Synced(Result<Bytes, String>),
    Shutdown,
}

/// Reads and answers a connection's requests in order. An acks=all produce is answered once
/// its fsync is done; meanwhile (up to [`PRODUCES_AWAITING_FSYNC_PER_CONNECTION_MAX`]) the
/// client's next pipelined produce is read and appended, so that one fsync covers several of
/// its batches. Any other request first waits until every earlier response is written, so it
/// sees what they did, and its own (possibly large) response is never held in a queue.
async fn connection_loop(cx: &Context, stream: &mut TcpStream, peer: SocketAddr, memory: &Arc<Semaphore>) -> Close {
    let mut shutdown = cx.shutdown.clone();
    let client_host = peer.ip().to_string();
    let mut answered_any = false;
    let mut pending: VecDeque<Pending> = VecDeque::new();
    loop {
        if let Err(close) = write_finished(stream, &mut pending).await {
            return close;
        }
        if *shutdown.borrow() {
            return drain(stream, &mut pending).await.err().unwrap_or(Close::Shutdown);
        }
        let mut size_bytes = [0u8; 4];
        // `read` is cancel-safe: when a fsync finishes first, nothing was read.
        let wake = tokio::select! {
            read = timeout(CONNECTION_IDLE_TIMEOUT, stream.read(&mut size_bytes)) => Wake::Read(read),
            synced = oldest(&mut pending), if !pending.is_empty() => Wake::Synced(synced),
            _ = shutdown.changed() => Wake::Shutdown,
        };
        let first = match wake {
            Wake::Read(read) => read,
            Wake::Synced(Ok(response)) => {
                pending.pop_front();
                if let Err(close) = write_response(stream, &response).await {
                    return close;
                }
                continue;
            }
            Wake::Synced(Err(reason)) => return Close::Error(reason),
            Wake::Shutdown => return drain(stream, &mut pending).await.err().unwrap_or(Close::Shutdown),
        };
        let got = match first {
            Err(_) if pending.is_empty() => return Close::Idle,
            Err(_) => continue,
            Ok(Ok(0)) => return drain(stream, &mut pending).await.err().unwrap_or(Close::Eof),
            Ok(Ok(n)) => n,
            Ok(Err(e)) => return Close::Error(format!("read failed: {e}")),
        };
        let deadline = Instant::now() + PARTIAL_REQUEST_TIMEOUT;
        match timeout_at(deadline, stream.read_exact(&mut size_bytes[got..])).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Close::Error(format!("read failed: {e}")),
            Err(_) => return Close::Error("request size not received in time".to_string()),
        }
        let size = i32::from_be_bytes(size_bytes);
        let limit = if answered_any { REQUEST_BYTES_MAX } else { FIRST_REQUEST_BYTES_MAX };
        let size = match usize::try_from(size) {
            Ok(s) if (HEADER_PREFIX_BYTES..=limit).contains(&s) => s,
            _ => return Close::Error(format!("request frame of {size} bytes is outside 8 to {limit} bytes")),
        };
        // Memory is reserved as the frame's bytes arrive, not as announced, so that clients
        // announcing large frames and sending them slowly hold only what they actually sent.
        let mut deadline = deadline;
        let mut frame = Vec::with_capacity(size.min(FRAME_BUFFER_INITIAL_BYTES));
        let mut _memory: Option<OwnedSemaphorePermit> = None;
        while frame.len() < size {
            let chunk = (size - frame.len()).min(FRAME_READ_CHUNK_BYTES);
            // Waiting for memory (back-pressure from other connections) does not count against
            // this client's deadline.
            let waited = Instant::now();
            let Ok(permit) = memory.clone().acquire_many_owned(chunk as u32).await else {
                return Close::Shutdown;
            };
            deadline += waited.elapsed();
            match &mut _memory {
                Some(held) => held.merge(permit),
                None => _memory = Some(permit),
            }
            match timeout_at(deadline, (&mut *stream).take(chunk as u64).read_to_end(&mut frame)).await {
                Ok(Ok(n)) if n == chunk => {}
                Ok(Ok(_)) => return Close::Error("connection closed in the middle of a request".to_string()),
                Ok(Err(e)) => return Close::Error(format!("read failed: {e}")),
                Err(_) => {
                    return Close::Error(format!(
                        "request of {size} bytes not received within {PARTIAL_REQUEST_TIMEOUT:?}"
                    ));
                }
            }
        }
        let produce = header_prefix(&frame).is_ok_and(|p| p.api_key == ApiKey::Produce as i16);
        let room = if produce { PRODUCES_AWAITING_FSYNC_PER_CONNECTION_MAX - 1 } else { 0 };
        while pending.len() > room {
            if let Err(close) = write_oldest(stream, &mut pending).await {
                return close;
            }
        }
        match answer(cx, Bytes::from(frame), &client_host).await {
            Ok(None) => {}
            Ok(Some(Pending::Ready(response))) if pending.is_empty() => {
                if let Err(close) = write_response(stream, &response).await {
                    return close;
                }
            }
            Ok(Some(answer)) => pending.push_back(answer),
            Err(reason) => return Close::Error(reason),
        }
        answered_any = true;
    }
}

/// The oldest pending response, once its fsync is done (it must be [`Pending::Syncing`]:
/// ready ones are written before waiting).
async fn oldest(pending: &mut VecDeque<Pending>) -> Result<Bytes, String> {
    match pending.front_mut() {
        Some(Pending::Ready(response)) => Ok(response.clone()),
        Some(Pending::Syncing(wait)) => wait.await.unwrap_or_else(|e| Err(format!("produce task failed: {e}"))),
        None => std::future::pending().await,
    }
}

/// Writes the oldest pending response, waiting for its fsync if need be.
async fn write_oldest(stream: &mut TcpStream, pending: &mut VecDeque<Pending>) -> Result<(), Close> {
    let response = oldest(pending).await.map_err(Close::Error)?;
    pending.pop_front();
    write_response(stream, &response).await
}

/// Writes the pending responses that are ready, oldest first, up to the first still syncing.
async fn write_finished(stream: &mut TcpStream, pending: &mut VecDeque<Pending>) -> Result<(), Close> {
    while let Some(head) = pending.front() {
        match head {
            Pending::Syncing(wait) if !wait.is_finished() => break,
            _ => write_oldest(stream, pending).await?,
        }
    }
    Ok(())
}

/// Writes every pending response (at shutdown, or when the client has sent all it will).
async fn drain(stream: &mut TcpStream, pending: &mut VecDeque<Pending>) -> Result<(), Close> {
    while !pending.is_empty() {
        write_oldest(stream, pending).await?;
    }
    Ok(())
}

async fn write_response(stream: &mut TcpStream, response: &[u8]) -> Result<(), Close> {
    match timeout(RESPONSE_WRITE_TIMEOUT, stream.write_all(response)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(Close::Error(format!("write failed: {e}"))),
        Err(_) => Err(Close::Error("client did not read its response in time".to_string())),
    }
}

/// The response frame to one request frame (`None` for acks=0 produce; an acks=all produce's
/// once its fsync is done), or why the connection must be closed.
async fn answer(cx: &Context, frame: Bytes, client_host: &str) -> Result<Option<Pending>, String> {
    let prefix = header_prefix(&frame).map_err(|e| e.to_string())?;
    let (key, version) = (prefix.api_key, prefix.api_version);
    let range = cx.supported.iter().find(|(k, _, _)| *k == key).map(|&(_, min, max)| (min, max));
    let supported = range.is_some_and(|(min, max)| (min..=max).contains(&version));
    if key == ApiKey::ApiVersions as i16 && !supported {
        tracing::debug!(version, "ApiVersions of an unsupported version: answering with the v0 fallback");
        return api_versions_fallback(prefix.correlation_id, &cx.supported)
            .map(|r| Some(Pending::Ready(r)))
            .map_err(|e| e.to_string());
    }
    let api_key = match ApiKey::try_from(key) {
        Ok(api_key) if supported => api_key,
        _ => {
            tracing::debug!(api_key = key, version, "unsupported API or version");
            return Ok(Some(Pending::Ready(unsupported_response(prefix))));
        }
    };
    let (header, request) = decode_request(api_key, version, frame).map_err(|e| e.to_string())?;
    tracing::trace!(api = ?api_key, version, correlation_id = prefix.correlation_id, "request");
    let started = std::time::Instant::now();
    let reply = cx.handle(&header, request, client_host).await.map_err(|e| e.to_string())?;
    let correlation_id = prefix.correlation_id;
    let response = match reply {
        Reply::AfterSync(wait) => {
            let metrics = cx.metrics.clone();
            return Ok(Some(Pending::Syncing(tokio::spawn(async move {
                let body = ResponseKind::Produce(wait.await.map_err(|e| e.to_string())?);
                metrics.record_request(key, started.elapsed());
                encode_response(api_key, version, correlation_id, &body).map_err(|e| e.to_string())
            }))));
        }
        Reply::Response(body) => {
            Some(encode_response(api_key, version, correlation_id, &body).map_err(|e| e.to_string())?)
        }
        Reply::Nothing => None,
        Reply::Unsupported => Some(unsupported_response(prefix)),
    };
    cx.metrics.record_request(key, started.elapsed());
    Ok(response.map(Pending::Ready))
}
