//! The functions REST API under `/v1/functions` over a [`FunctionService`]: deploy (the
//! component as the request body, settings as query parameters), list, describe, pause,
//! resume, delete, invoke, replay dead letters and logs (followed as newline-delimited JSON);
//! and the functions' metrics for `/metrics`.
//!
//! Every service call blocks (deploying compiles the component; a deploy of a 15 MB
//! JavaScript component takes seconds), so each runs on tokio's blocking pool.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use runnel_broker::metrics::{family, histogram, labels};
use runnel_functions::{
    DeployError, EndpointConfig, EventJson, FunctionConfig, FunctionInfo, FunctionService, FunctionStatus, Header,
    HttpRequest, InvokeError, ServiceError, Trigger, output_json,
};
use serde::Deserialize;
use tokio::sync::mpsc;

use crate::error::ApiError;
use crate::limits::{
    FUNCTION_HTTP_BODY_BYTES_MAX, LOG_FOLLOW_POLL_INTERVAL, LOG_LINES_PER_RESPONSE_MAX, NDJSON_BUFFER_LINES,
};
use crate::{Api, Shared, blocking, json_body, json_line, ndjson_response};

pub(crate) fn routes() -> Router<Arc<Api>> {
    Router::new()
        .route("/v1/functions", get(list))
        .route("/v1/functions/{name}", get(describe).put(deploy).delete(delete))
        .route("/v1/functions/{name}/pause", post(pause))
        .route("/v1/functions/{name}/resume", post(resume))
        .route("/v1/functions/{name}/replay-dead-letters", post(replay_dead_letters))
        .route("/v1/functions/{name}/logs", get(logs))
        .route("/v1/functions/{name}/invoke", post(invoke))
        .route("/fn/{name}", any(http_route))
        .route("/fn/{name}/", any(http_route))
        .route("/fn/{name}/{*path}", any(http_route))
}

/// The service, or 404 when this server runs without functions.
fn service(api: &Api) -> Result<Arc<FunctionService>, ApiError> {
    api.functions.clone().ok_or_else(|| ApiError::NotFound("functions are not enabled on this server".to_string()))
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> ApiError {
        match e {
            ServiceError::NotFound(name) => ApiError::UnknownFunction(name),
            e @ ServiceError::InvalidConfig { .. } => ApiError::Invalid(e.to_string()),
            ServiceError::Deploy(e) => match e {
                e @ DeployError::TooLarge { .. } => ApiError::TooLarge(e.to_string()),
                e @ DeployError::Cache(_) => ApiError::Storage(e.to_string()),
                e => ApiError::Invalid(e.to_string()),
            },
            e @ (ServiceError::NotLoaded { .. } | ServiceError::Paused(_)) => ApiError::Unavailable(e.to_string()),
            e @ ServiceError::NotHttp(_) => ApiError::NotFound(e.to_string()),
            e @ ServiceError::Endpoint(_) => ApiError::Invalid(e.to_string()),
            ServiceError::Invoke(e) => e.into(),
            e => ApiError::Storage(e.to_string()),
        }
    }
}

impl From<InvokeError> for ApiError {
    fn from(e: InvokeError) -> ApiError {
        match e {
            e @ InvokeError::Timeout { .. } => ApiError::FunctionTimeout(e.to_string()),
            e => ApiError::FunctionFailed(e.to_string()),
        }
    }
}

async fn list(State(api): Shared) -> Result<Response, ApiError> {
    let service = service(&api)?;
    let functions: Vec<FunctionInfo> = blocking(move || Ok(service.list())).await?.into_iter().map(redacted).collect();
    Ok(Json(serde_json::json!({ "functions": functions })).into_response())
}

async fn describe(State(api): Shared, Path(name): Path<String>) -> Result<Json<FunctionInfo>, ApiError> {
    let service = service(&api)?;
    Ok(Json(redacted(blocking(move || Ok(service.describe(&name)?)).await?)))
}

/// A function as the API shows it: an endpoint's header values and URL query redacted.
fn redacted(mut info: FunctionInfo) -> FunctionInfo {
    info.spec = info.spec.redacted();
    info
}

/// Settings of a deploy, as query parameters; each absent one takes its default.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeployParams {
    /// `none`, `topic:NAME[@earliest|latest|MS]`, ...: see [`Trigger::parse`].
    trigger: Option<String>,
    concurrency: Option<u32>,
    retries: Option<u32>,
    retry_backoff_initial_ms: Option<u64>,
    retry_backoff_max_ms: Option<u64>,
    dead_letter_topic: Option<String>,
    batch_size: Option<u32>,
    batch_window_ms: Option<u64>,
    memory_bytes_max: Option<usize>,
    deadline_ms: Option<u64>,
}

impl DeployParams {
    fn config(self) -> Result<FunctionConfig, ApiError> {
        let defaults = FunctionConfig::default();
        let trigger = match self.trigger {
            Some(text) => Trigger::parse(&text).map_err(ApiError::InvalidParameter)?,
            None => defaults.trigger.clone(),
        };
        Ok(FunctionConfig {
            trigger,
            concurrency: self.concurrency.unwrap_or(defaults.concurrency),
            retries: self.retries.unwrap_or(defaults.retries),
            retry_backoff_initial_ms: self.retry_backoff_initial_ms.unwrap_or(defaults.retry_backoff_initial_ms),
            retry_backoff_max_ms: self.retry_backoff_max_ms.unwrap_or(defaults.retry_backoff_max_ms),
            dead_letter_topic: self.dead_letter_topic.or(defaults.dead_letter_topic),
            batch_size: self.batch_size.unwrap_or(defaults.batch_size),
            batch_window_ms: self.batch_window_ms.unwrap_or(defaults.batch_window_ms),
            memory_bytes_max: self.memory_bytes_max.unwrap_or(defaults.memory_bytes_max),
            deadline_ms: self.deadline_ms.unwrap_or(defaults.deadline_ms),
        })
    }
}

/// The body of a deploy of an HTTP-endpoint function (`Content-Type: application/json`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeployEndpoint {
    endpoint: EndpointConfig,
}

/// `PUT /v1/functions/{name}?trigger=...`: the body is the component (`.wasm`, or `.wat`
/// text), or with `Content-Type: application/json` an endpoint function's
/// `{"endpoint": {"url": ..., "timeout_ms": ..., "headers": {...}}}`. 201 with the spec for
/// a new function, 200 for a new version of an existing one.
async fn deploy(
    State(api): Shared,
    Path(name): Path<String>,
    params: Result<Query<DeployParams>, QueryRejection>,
    request: Request,
) -> Result<Response, ApiError> {
    let service = service(&api)?;
    let Query(params) = params.map_err(|e| ApiError::InvalidParameter(e.body_text()))?;
    let config = params.config()?;
    let is_json = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let limit = runnel_functions::limits::COMPONENT_BYTES_MAX;
    let component = axum::body::to_bytes(request.into_body(), limit)
        .await
        .map_err(|_| ApiError::TooLarge(format!("the component exceeds {limit} bytes")))?;
    if component.is_empty() {
        return Err(ApiError::MalformedBody("the body must be the component (.wasm or .wat)".to_string()));
    }
    let spec = if is_json {
        let body: DeployEndpoint = serde_json::from_slice(&component)
            .map_err(|e| ApiError::MalformedBody(format!("invalid JSON body: {e}")))?;
        blocking(move || Ok(service.deploy_endpoint(&name, body.endpoint, config)?)).await?
    } else {
        blocking(move || Ok(service.deploy(&name, &component, config)?)).await?
    };
    let status = if spec.version == 1 { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(spec.redacted())).into_response())
}

async fn delete(State(api): Shared, Path(name): Path<String>) -> Result<StatusCode, ApiError> {
    let service = service(&api)?;
    blocking(move || Ok(service.delete(&name)?)).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn pause(State(api): Shared, Path(name): Path<String>) -> Result<Response, ApiError> {
    let service = service(&api)?;
    Ok(Json(blocking(move || Ok(service.pause(&name)?)).await?.redacted()).into_response())
}

async fn resume(State(api): Shared, Path(name): Path<String>) -> Result<Response, ApiError> {
    let service = service(&api)?;
    Ok(Json(blocking(move || Ok(service.resume(&name)?)).await?.redacted()).into_response())
}

async fn replay_dead_letters(State(api): Shared, Path(name): Path<String>) -> Result<Response, ApiError> {
    let service = service(&api)?;
    Ok(Json(blocking(move || Ok(service.replay_dead_letters(&name)?)).await?).into_response())
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct InvokeParams {
    /// Write the outputs to their topics (as a trigger would), not only return them.
    #[serde(default)]
    write: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InvokeRequest {
    events: Vec<EventJson>,
}

/// `POST /v1/functions/{name}/invoke`: runs the current version once on `{"events": [...]}`
/// (events as [`runnel_functions::parse_event`] reads them) and answers `{"outputs": [...]}`;
/// with `write=true` the outputs are also written to their topics. No retries: a failure is
/// the answer (500, or 504 past the deadline).
async fn invoke(
    State(api): Shared,
    Path(name): Path<String>,
    params: Result<Query<InvokeParams>, QueryRejection>,
    request: Request,
) -> Result<Response, ApiError> {
    let service = service(&api)?;
    let Query(params) = params.map_err(|e| ApiError::InvalidParameter(e.body_text()))?;
    let body: InvokeRequest = json_body(request, &["events"]).await?;
    let max = runnel_functions::limits::INPUT_EVENTS_PER_INVOCATION_MAX;
    if body.events.is_empty() || body.events.len() > max {
        return Err(ApiError::Invalid(format!("{} events: an invocation takes 1 to {max}", body.events.len())));
    }
    let now = now_ms();
    let events = body
        .events
        .into_iter()
        .enumerate()
        .map(|(i, e)| e.into_event(i as i64, now).map_err(|e| ApiError::Invalid(e.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    let outputs = blocking(move || {
        Ok(if params.write { service.invoke_and_write(&name, &events)? } else { service.invoke(&name, &events)? })
    })
    .await?;
    let outputs: Vec<_> = outputs.iter().map(output_json).collect();
    Ok(Json(serde_json::json!({ "outputs": outputs })).into_response())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Marks a response a function wrote, so its error statuses keep their bodies (they are
/// not the API's errors).
#[derive(Clone, Copy)]
pub(crate) struct FunctionAnswer;

/// Response headers a function may not set: the server frames the response itself.
const HOP_BY_HOP_HEADERS: [&str; 6] =
    ["connection", "content-length", "keep-alive", "transfer-encoding", "upgrade", "proxy-connection"];

/// `ANY /fn/{name}/{path}`: the request, with the path below `/fn/{name}` and its query
/// string, goes to the function's `handle-http` (in a fresh instance); its status, headers
/// and body are the answer. Errors are the API's JSON errors: 404 (no such function, or it
/// does not handle HTTP), 503 (paused or not loaded), 500 (it failed), 504 (its deadline).
async fn http_route(State(api): Shared, request: Request) -> Result<Response, ApiError> {
    let service = service(&api)?;
    let (parts, body) = request.into_parts();
    let full = parts.uri.path();
    let rest = full.strip_prefix("/fn/").unwrap_or(full);
    let (name, below) = match rest.find('/') {
        Some(at) => (&rest[..at], &rest[at..]),
        None => (rest, "/"),
    };
    let name = name.to_string();
    let path = match parts.uri.query() {
        Some(query) => format!("{below}?{query}"),
        None => below.to_string(),
    };
    let headers = parts
        .headers
        .iter()
        .map(|(k, v)| Header { key: k.as_str().to_string(), value: v.as_bytes().to_vec() })
        .collect();
    let body = axum::body::to_bytes(body, FUNCTION_HTTP_BODY_BYTES_MAX)
        .await
        .map_err(|_| ApiError::TooLarge(format!("the request body exceeds {FUNCTION_HTTP_BODY_BYTES_MAX} bytes")))?;
    let request = HttpRequest { method: parts.method.as_str().to_string(), path, headers, body: body.to_vec() };
    let answer = blocking(move || Ok(service.handle_http(&name, request)?)).await?;
    let status = StatusCode::from_u16(answer.status)
        .map_err(|_| ApiError::FunctionFailed(format!("the function answered status {}", answer.status)))?;
    let mut response = Response::new(Body::from(answer.body));
    *response.status_mut() = status;
    response.extensions_mut().insert(FunctionAnswer);
    for header in answer.headers {
        if HOP_BY_HOP_HEADERS.iter().any(|h| header.key.eq_ignore_ascii_case(h)) {
            continue;
        }
        match (header::HeaderName::from_bytes(header.key.as_bytes()), HeaderValue::from_bytes(&header.value)) {
            (Ok(name), Ok(value)) => {
                response.headers_mut().append(name, value);
            }
            _ => tracing::debug!(header = %header.key, "dropping a response header that is not valid HTTP"),
        }
    }
    Ok(response)
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LogParams {
    /// Lines written at or after this wall-clock time (ms since the Unix epoch); all kept
    /// lines when absent.
    since_ms: Option<i64>,
    /// Keep the response open and send new lines as they are written (NDJSON).
    #[serde(default)]
    follow: bool,
}

/// `GET /v1/functions/{name}/logs`: the kept lines as `{"lines": [...]}` (at most
/// [`LOG_LINES_PER_RESPONSE_MAX`], the newest), or with `follow=true` one JSON line each,
/// new ones as they come, until the client leaves, the function is deleted or the server
/// stops.
async fn logs(
    State(api): Shared,
    Path(name): Path<String>,
    params: Result<Query<LogParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let service = service(&api)?;
    let Query(params) = params.map_err(|e| ApiError::InvalidParameter(e.body_text()))?;
    let since_ms = params.since_ms.unwrap_or(i64::MIN);
    let first = {
        let (service, name) = (service.clone(), name.clone());
        blocking(move || Ok(service.logs(&name, since_ms)?)).await?
    };
    let skip = first.len().saturating_sub(LOG_LINES_PER_RESPONSE_MAX);
    let mut lines: Vec<_> = first.into_iter().skip(skip).collect();
    if !params.follow {
        return Ok(Json(serde_json::json!({ "lines": lines })).into_response());
    }
    let (tx, rx) = mpsc::channel(NDJSON_BUFFER_LINES);
    let ready = api.ready.clone();
    tokio::spawn(async move {
        let mut last_seq = lines.last().map(|l| l.seq);
        let mut last_ms = lines.last().map_or(since_ms, |l| l.at_ms);
        loop {
            for line in lines.drain(..) {
                if tx.send(json_line(&line)).await.is_err() {
                    return;
                }
            }
            tokio::select! {
                () = tx.closed() => return,
                () = tokio::time::sleep(LOG_FOLLOW_POLL_INTERVAL) => {}
            }
            if !ready.is_ready() {
                return;
            }
            let (service, name) = (service.clone(), name.clone());
            let next = tokio::task::spawn_blocking(move || service.logs(&name, last_ms)).await;
            match next {
                Ok(Ok(next)) => {
                    // Lines of the same millisecond as the last one sent come again: skip
                    // those already sent by their sequence number.
                    lines = next.into_iter().filter(|l| last_seq.is_none_or(|seq| l.seq > seq)).collect();
                    if let Some(line) = lines.last() {
                        (last_seq, last_ms) = (Some(line.seq), line.at_ms);
                    }
                }
                Ok(Err(e)) => {
                    let _ = tx.send(json_line(&ApiError::from(e).body())).await;
                    return;
                }
                Err(_) => return,
            }
        }
    });
    Ok(ndjson_response(rx))
}

/// The functions' metrics in the Prometheus text format, appended to `/metrics`.
pub(crate) fn encode_metrics(out: &mut String, functions: &[FunctionInfo]) {
    type Counter = (&'static str, &'static str, fn(&FunctionInfo) -> u64);
    let counters: [Counter; 6] = [
        (
            "runnel_function_invocations_total",
            "Invocations of the function's handler, failed ones and retries included.",
            |f| f.metrics.invocations,
        ),
        (
            "runnel_function_errors_total",
            "Failed invocations (trap, deadline, memory limit, guest error, outputs not written).",
            |f| f.metrics.errors,
        ),
        ("runnel_function_retries_total", "Invocations that retried a failed one.", |f| f.metrics.retries),
        ("runnel_function_dead_letters_total", "Events written to the dead-letter topic.", |f| f.metrics.dead_letters),
        ("runnel_function_events_total", "Trigger events done: handled or dead-lettered.", |f| f.metrics.events),
        ("runnel_function_outputs_total", "Output events written to their topics.", |f| f.metrics.outputs),
    ];
    for (name, help, get) in counters {
        family(out, name, "counter", help);
        for f in functions {
            let _ = writeln!(out, "{name}{} {}", labels(&[("function", &f.spec.name)]), get(f));
        }
    }
    let name = "runnel_function_duration_seconds";
    family(out, name, "histogram", "Time of one invocation of the function's handler.");
    for f in functions {
        let d = &f.metrics.duration;
        let mut running = 0;
        let cumulative: Vec<(f64, u64)> = d
            .bounds_us
            .iter()
            .zip(&d.counts)
            .map(|(bound, n)| {
                running += n;
                (*bound as f64 / 1e6, running)
            })
            .collect();
        histogram(out, name, &[("function", &f.spec.name)], &cumulative, d.sum_us as f64 / 1e6, d.count());
    }
    let name = "runnel_function_lag";
    family(out, name, "gauge", "Records of the trigger's partition not yet done by the function.");
    for f in functions {
        for p in &f.metrics.lag_by_partition {
            let partition = p.partition.to_string();
            let _ =
                writeln!(out, "{name}{} {}", labels(&[("function", &f.spec.name), ("partition", &partition)]), p.lag);
        }
    }
    let name = "runnel_function_up";
    family(out, name, "gauge", "1 when the function runs, 0 when paused or its component failed to load.");
    for f in functions {
        let state = match f.status {
            FunctionStatus::Running => "running",
            FunctionStatus::Paused => "paused",
            FunctionStatus::Failed { .. } => "failed",
        };
        let up = u8::from(f.status == FunctionStatus::Running);
        let _ = writeln!(out, "{name}{} {up}", labels(&[("function", &f.spec.name), ("state", state)]));
    }
}
