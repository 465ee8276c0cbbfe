//! runnel's HTTP server, beside the Kafka listener in `runnel serve`: `GET /healthz`,
//! `GET /metrics` (Prometheus text format), `GET /openapi.json`, and a REST API under `/v1`
//! over the same in-process [`Log`] and [`GroupCoordinator`] the broker serves: topics (list,
//! create, describe, alter configs, delete), records (produce as JSON, consume as JSON or
//! newline-delimited JSON) and consumer groups (list, describe with lag); when the SQL
//! engine runs, ksqlDB's REST API ([`ksql`]); when functions run, their REST API under
//! `/v1/functions` and their HTTP routes under `/fn/NAME/...`.
//!
//! Blocking log calls run on tokio's blocking pool. Every error is JSON
//! (`{"error_code": 40401, "message": "..."}`, see [`error`]), with the status saying whose
//! fault it is; limits are in [`limits`].

// The OpenAPI document is one `serde_json::json!` literal, deeper than the default limit.
#![recursion_limit = "512"]

pub mod error;
mod functions;
mod groups;
pub mod ksql;
pub mod limits;
mod openapi;
mod records;
mod topics;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use runnel_broker::Broker;
use runnel_broker::group::GroupCoordinator;
use runnel_broker::metrics::Metrics;
use runnel_log::Log;
use serde::de::DeserializeOwned;
use tokio::net::TcpListener;

use crate::error::ApiError;
use crate::limits::{
    ACCEPT_RETRY_DELAY, CONNECTIONS_MAX, HEADER_READ_TIMEOUT, REQUEST_BODY_BYTES_MAX, SHUTDOWN_DRAIN_TIMEOUT,
};

pub use openapi::document as openapi_document;

/// Whether `/healthz` answers 200: set once `runnel serve` is ready, cleared when it stops.
#[derive(Clone, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::SeqCst);
    }

    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// What the handlers share.
pub(crate) struct Api {
    pub log: Arc<Log>,
    pub groups: Arc<GroupCoordinator>,
    pub metrics: Arc<Metrics>,
    /// Serialises read-modify-write changes of topic configs with the Kafka AlterConfigs APIs.
    pub config_lock: Arc<tokio::sync::Mutex<()>>,
    pub ready: Readiness,
    /// Round-robin position for records without a key or partition.
    pub next_partition: std::sync::atomic::AtomicU32,
    /// The SQL engine behind ksqlDB's REST API (`/ksql`, `/query`, ...), when it runs.
    pub sql: Option<Arc<ksql::Sql>>,
    /// The functions behind `/v1/functions` and `/fn/...`, when they run.
    pub functions: Option<Arc<runnel_functions::FunctionService>>,
}

pub(crate) type Shared = State<Arc<Api>>;

/// The HTTP server bound to its listener, ready to [`run`](HttpServer::run).
pub struct HttpServer {
    listener: TcpListener,
    local_addr: SocketAddr,
    api: Arc<Api>,
}

impl HttpServer {
    /// Binds `addr` (port 0 picks a free port) to serve the REST API of `broker`'s log and
    /// consumer groups.
    pub async fn bind(addr: SocketAddr, broker: &Broker) -> std::io::Result<HttpServer> {
        let listener = TcpListener::bind(addr).await?;
        let local_addr = listener.local_addr()?;
        let api = Arc::new(Api {
            log: broker.log(),
            groups: broker.groups(),
            metrics: broker.metrics(),
            config_lock: broker.topic_config_lock(),
            ready: Readiness::default(),
            next_partition: std::sync::atomic::AtomicU32::new(0),
            sql: None,
            functions: None,
        });
        Ok(HttpServer { listener, local_addr, api })
    }

    /// Serves ksqlDB's REST API (`/ksql`, `/query`, `/query-stream`, ...) over `engine`.
    pub fn with_sql(mut self, engine: Arc<runnel_sql::Engine>, cluster_id: String) -> HttpServer {
        if let Some(api) = Arc::get_mut(&mut self.api) {
            api.sql = Some(Arc::new(ksql::Sql::new(engine, cluster_id)));
        }
        self
    }

    /// Serves the functions REST API (`/v1/functions`) and HTTP-triggered functions
    /// (`/fn/NAME/...`) of `service`, and adds their metrics to `/metrics`.
    pub fn with_functions(mut self, service: Arc<runnel_functions::FunctionService>) -> HttpServer {
        if let Some(api) = Arc::get_mut(&mut self.api) {
            api.functions = Some(service);
        }
        self
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The switch of `/healthz`.
    pub fn readiness(&self) -> Readiness {
        self.api.ready.clone()
    }

    /// Serves until `shutdown` completes, then stops accepting and lets open requests finish,
    /// for at most [`SHUTDOWN_DRAIN_TIMEOUT`]. At most [`CONNECTIONS_MAX`] connections are
    /// served at once; each request's headers must arrive within [`HEADER_READ_TIMEOUT`].
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
        let HttpServer { listener, api, .. } = self;
        let router = router(api);
        let connections = Arc::new(tokio::sync::Semaphore::new(CONNECTIONS_MAX));
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        tokio::pin!(shutdown);
        loop {
            let (stream, peer) = tokio::select! {
                () = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        tracing::warn!(error = %e, "HTTP accept failed");
                        tokio::time::sleep(ACCEPT_RETRY_DELAY).await;
                        continue;
                    }
                },
            };
            let Ok(permit) = connections.clone().try_acquire_owned() else {
                tracing::warn!(%peer, limit = CONNECTIONS_MAX, "too many HTTP connections: closing the new one");
                continue;
            };
            let service = hyper_util::service::TowerToHyperService::new(router.clone());
            let watcher = graceful.watcher();
            tokio::spawn(async move {
                // HTTP/1.1, or HTTP/2 with prior knowledge (ksqlDB clients stream queries and
                // inserts over h2c), told apart by the connection preface.
                let mut builder = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
                builder.http1().timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT);
                builder.http2().timer(hyper_util::rt::TokioTimer::new());
                let connection = builder.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
                if let Err(e) = watcher.watch(connection).await {
                    tracing::debug!(%peer, error = %e, "HTTP connection ended with an error");
                }
                drop(permit);
            });
        }
        drop(listener);
        if tokio::time::timeout(SHUTDOWN_DRAIN_TIMEOUT, graceful.shutdown()).await.is_err() {
            tracing::warn!("HTTP requests still open {SHUTDOWN_DRAIN_TIMEOUT:?} after shutdown began; leaving them");
        }
        Ok(())
    }
}

fn router(api: Arc<Api>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .merge(topics::routes())
        .merge(records::routes())
        .merge(groups::routes())
        .merge(ksql::routes())
        .merge(functions::routes())
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(REQUEST_BODY_BYTES_MAX))
        .layer(middleware::from_fn(json_errors))
        .with_state(api)
}

async fn healthz(State(api): Shared) -> Response {
    if api.ready.is_ready() {
        (StatusCode::OK, axum::Json(serde_json::json!({ "status": "ready" }))).into_response()
    } else {
        ApiError::NotReady("runnel is starting or stopping".to_string()).into_response()
    }
}

async fn metrics(State(api): Shared) -> Result<Response, ApiError> {
    let text = tokio::task::spawn_blocking(move || {
        let mut text = runnel_broker::metrics::encode(&api.metrics, &api.log, &api.groups);
        if let Some(service) = &api.functions {
            functions::encode_metrics(&mut text, &service.list());
        }
        text
    })
    .await?;
    let mut response = text.into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
    Ok(response)
}

async fn openapi() -> Response {
    axum::Json(openapi::document()).into_response()
}

async fn not_found(request: Request) -> ApiError {
    ApiError::NotFound(format!("no such path: {} {}", request.method(), request.uri().path()))
}

/// Turns every error that axum itself answers (405 with its `Allow` header, a body over the
/// limit, a path that does not decode) into the API's JSON error shape.
async fn json_errors(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let from_function = response.extensions().get::<functions::FunctionAnswer>().is_some();
    if !(status.is_client_error() || status.is_server_error()) || is_json || from_function {
        return response;
    }
    let error = match status {
        StatusCode::METHOD_NOT_ALLOWED => ApiError::MethodNotAllowed(format!("{method} is not allowed on {path}")),
        StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::TooLarge(format!("the request body exceeds {REQUEST_BODY_BYTES_MAX} bytes"))
        }
        StatusCode::NOT_FOUND => ApiError::NotFound(format!("no such path: {method} {path}")),
        s if s.is_server_error() => ApiError::Storage(format!("internal error ({s})")),
        _ => ApiError::InvalidParameter(format!("bad request: {method} {path} ({status})")),
    };
    let (mut parts, _) = response.into_parts();
    let body = serde_json::to_vec(&error.body()).unwrap_or_default();
    parts.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.status = error.status();
    Response::from_parts(parts, Body::from(body))
}

/// The request body as `T`: 413 beyond [`REQUEST_BODY_BYTES_MAX`], 400 if it is not a JSON
/// object of that shape. `nested` names the arrays of objects inside it (`records`,
/// `records.headers`): serde's derived structs also accept arrays of their fields in order, which
/// the API does not, so those are checked to hold objects first.
pub(crate) async fn json_body<T: DeserializeOwned>(request: Request, nested: &[&str]) -> Result<T, ApiError> {
    let bytes = axum::body::to_bytes(request.into_body(), REQUEST_BODY_BYTES_MAX)
        .await
        .map_err(|_| ApiError::TooLarge(format!("the request body exceeds {REQUEST_BODY_BYTES_MAX} bytes")))?;
    let value: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| ApiError::MalformedBody(format!("invalid JSON body: {e}")))?;
    if !value.is_object() {
        return Err(ApiError::MalformedBody("the body must be a JSON object".to_string()));
    }
    for path in nested {
        check_objects(&value, &path.split('.').collect::<Vec<_>>(), path)?;
    }
    serde_json::from_value(value).map_err(|e| ApiError::MalformedBody(format!("invalid JSON body: {e}")))
}

/// Checks that the array at `path` (and the arrays below it) hold only objects.
fn check_objects(value: &serde_json::Value, path: &[&str], name: &str) -> Result<(), ApiError> {
    let Some((first, rest)) = path.split_first() else { return Ok(()) };
    let Some(serde_json::Value::Array(items)) = value.get(*first) else { return Ok(()) };
    for item in items {
        if !item.is_object() {
            return Err(ApiError::MalformedBody(format!("invalid JSON body: {name} must hold objects")));
        }
        check_objects(item, rest, name)?;
    }
    Ok(())
}

/// Runs a blocking log call on tokio's blocking pool.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await?
}

/// A streamed `application/x-ndjson` response whose lines come from `lines` (a bounded
/// channel, so a slow client holds back the producer rather than memory).
pub(crate) fn ndjson_response(lines: tokio::sync::mpsc::Receiver<bytes::Bytes>) -> Response {
    let mut response = Body::from_stream(Lines(lines)).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-ndjson"));
    response
}

/// One line of NDJSON: `value` and a newline.
pub(crate) fn json_line(value: &impl serde::Serialize) -> bytes::Bytes {
    let mut line = serde_json::to_vec(value).unwrap_or_default();
    line.push(b'\n');
    bytes::Bytes::from(line)
}

/// An mpsc receiver as the body stream of a response.
struct Lines(tokio::sync::mpsc::Receiver<bytes::Bytes>);

impl futures_core::Stream for Lines {
    type Item = Result<bytes::Bytes, std::convert::Infallible>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.0.poll_recv(cx).map(|line| line.map(Ok))
    }
}
