//! ksqlDB's REST API over runnel's SQL engine, so ksqlDB clients work unchanged:
//! `POST /ksql` (statements), `POST /query` (push and pull queries, a chunked JSON array),
//! `POST /query-stream` (one JSON document per line, or a JSON array), `POST /inserts-stream`,
//! `POST /close-query`, `GET /info`, `GET /healthcheck` and `GET /status`.
//!
//! Requests are JSON whatever their content type (ksqlDB clients send
//! `application/vnd.ksql.v1+json`). Errors are ksqlDB's: `{"@type": "statement_error" |
//! "generic_error", "error_code": 40001, "message": ...}` with status 400 (or 404, 500).

use std::collections::{BTreeMap, HashMap};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use runnel_sql::engine::PushStream;
use runnel_sql::rest;
use runnel_sql::{Engine, Outcome, Session};
use serde_json::{Value as Json, json};

use crate::{Api, Shared};

/// Rows formatted but not yet written to a slow client, per push query.
const PUSH_BUFFER_CHUNKS: usize = 256;
/// How often a push query's forwarder checks that its client is still there.
const CLIENT_CHECK_INTERVAL: Duration = Duration::from_millis(500);

/// The SQL engine and its running push queries, as the HTTP API holds them.
pub struct Sql {
    pub engine: Arc<Engine>,
    pub cluster_id: String,
    /// Push queries by id, for `/close-query`.
    running: std::sync::Mutex<HashMap<String, Arc<AtomicBool>>>,
}

impl Sql {
    pub fn new(engine: Arc<Engine>, cluster_id: String) -> Sql {
        Sql { engine, cluster_id, running: std::sync::Mutex::new(HashMap::new()) }
    }
}

pub(crate) fn routes() -> Router<Arc<Api>> {
    Router::new()
        .route("/ksql", post(ksql))
        .route("/query", post(query))
        .route("/query-stream", post(query_stream))
        .route("/inserts-stream", post(inserts_stream))
        .route("/close-query", post(close_query))
        .route("/info", get(info))
        .route("/healthcheck", get(healthcheck))
        .route("/status", get(status))
}

/// An error answer, small enough to return in a `Result`.
struct Refusal(StatusCode, Json);

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        ksql_json(self.0, self.1)
    }
}

fn ksql_json(status: StatusCode, body: Json) -> Response {
    let mut response = (status, body.to_string()).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn bad_request(message: &str) -> Response {
    ksql_json(StatusCode::BAD_REQUEST, rest::generic_error(rest::ERROR_BAD_REQUEST, message))
}

fn engine(api: &Api) -> Result<Arc<Engine>, Refusal> {
    match &api.sql {
        Some(sql) => Ok(sql.engine.clone()),
        None => Err(Refusal(
            StatusCode::SERVICE_UNAVAILABLE,
            rest::generic_error(rest::ERROR_SERVER, "the SQL engine is not running"),
        )),
    }
}

fn bad(message: &str) -> Refusal {
    Refusal(StatusCode::BAD_REQUEST, rest::generic_error(rest::ERROR_BAD_REQUEST, message))
}

/// The statement text and session of a request body (`ksql` or `sql`; `streamsProperties` or
/// `properties`; `sessionVariables`).
fn request(body: &[u8]) -> Result<(String, Session), Refusal> {
    let json: Json = serde_json::from_slice(body).map_err(|e| bad(&format!("the body is not JSON: {e}")))?;
    let text = json
        .get("ksql")
        .or_else(|| json.get("sql"))
        .and_then(Json::as_str)
        .ok_or_else(|| bad("the body needs a \"ksql\" (or \"sql\") string"))?
        .to_string();
    let mut session = Session::default();
    for key in ["streamsProperties", "properties"] {
        if let Some(props) = json.get(key).and_then(Json::as_object) {
            for (k, v) in props {
                let v = v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string());
                session.properties.insert(k.clone(), v);
            }
        }
    }
    if let Some(vars) = json.get("sessionVariables").and_then(Json::as_object) {
        for (k, v) in vars {
            let v = v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string());
            session.variables.insert(k.to_ascii_lowercase(), v);
        }
    }
    Ok((text, session))
}

async fn ksql(State(api): Shared, body: Bytes) -> Response {
    let engine = match engine(&api) {
        Ok(e) => e,
        Err(r) => return r.into_response(),
    };
    let (text, mut session) = match request(&body) {
        Ok(r) => r,
        Err(r) => return r.into_response(),
    };
    let result = tokio::task::spawn_blocking(move || {
        let (done, failed) = engine.execute_each(&text, &mut session);
        let sink_topic = |name: &str| engine.source(name).map(|s| s.topic.clone());
        let mut entities = Vec::new();
        for (i, (statement, outcome)) in done.iter().enumerate() {
            if matches!(outcome, Outcome::Stream(_)) {
                let message = "push queries and PRINT run on /query or /query-stream";
                let mut error = rest::statement_error(statement, message);
                error["entities"] = Json::Array(entities);
                return (StatusCode::BAD_REQUEST, error);
            }
            entities.push(rest::entity(outcome, statement, i as u64 + 1, &sink_topic));
        }
        match failed {
            None => (StatusCode::OK, Json::Array(entities)),
            Some((statement, e)) => {
                let mut error = rest::statement_error(&statement, &e.0);
                error["entities"] = Json::Array(entities);
                (StatusCode::BAD_REQUEST, error)
            }
        }
    })
    .await;
    match result {
        Ok((status, body)) => ksql_json(status, body),
        Err(e) => ksql_json(StatusCode::INTERNAL_SERVER_ERROR, rest::generic_error(rest::ERROR_SERVER, &e.to_string())),
    }
}

/// How a query's rows are written.
#[derive(Clone, Copy, PartialEq)]
enum Shape {
    /// `/query`: `[{"header":...},\n{"row":{"columns":[...]}},\n...]`.
    Query,
    /// `/query-stream` delimited: the header, then one JSON array per line.
    Delimited,
    /// `/query-stream` as JSON: `[{header}, [row], ...]`.
    JsonArray,
}

async fn query(State(api): Shared, body: Bytes) -> Response {
    run_query(api, body, Shape::Query).await
}

async fn query_stream(State(api): Shared, headers: HeaderMap, body: Bytes) -> Response {
    let delimited = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|accept| accept.contains("delimited") || !accept.contains("json"));
    run_query(api, body, if delimited { Shape::Delimited } else { Shape::JsonArray }).await
}

async fn run_query(api: Arc<Api>, body: Bytes, shape: Shape) -> Response {
    let engine = match engine(&api) {
        Ok(e) => e,
        Err(r) => return r.into_response(),
    };
    let (text, mut session) = match request(&body) {
        Ok(r) => r,
        Err(r) => return r.into_response(),
    };
    let statement = text.clone();
    let executed = tokio::task::spawn_blocking(move || engine.execute(&text, &mut session)).await;
    let mut outcomes = match executed {
        Ok(Ok(o)) => o,
        Ok(Err(e)) => return ksql_json(StatusCode::BAD_REQUEST, rest::statement_error(&statement, &e.0)),
        Err(e) => {
            return ksql_json(
                StatusCode::INTERNAL_SERVER_ERROR,
                rest::generic_error(rest::ERROR_SERVER, &e.to_string()),
            );
        }
    };
    if outcomes.len() != 1 {
        return ksql_json(
            StatusCode::BAD_REQUEST,
            rest::statement_error(&statement, "/query takes exactly one SELECT or PRINT statement"),
        );
    }
    let content_type = match shape {
        Shape::Delimited => "application/vnd.ksqlapi.delimited.v1",
        _ => "application/json",
    };
    let body = match outcomes.remove(0) {
        Outcome::Rows { columns, rows } => {
            let id = format!("pull_{}", runnel_sql::functions::now_ms());
            let mut out = String::new();
            push_header(&mut out, shape, &id, &columns);
            for row in &rows {
                push_row(&mut out, shape, &rest::row_json(row, &columns));
            }
            finish(&mut out, shape);
            Body::from(out)
        }
        Outcome::Stream(stream) => stream_body(&api, stream, shape),
        _ => {
            return ksql_json(
                StatusCode::BAD_REQUEST,
                rest::statement_error(&statement, "/query runs SELECT and PRINT; other statements go to /ksql"),
            );
        }
    };
    let mut response = Response::new(body);
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

fn push_header(out: &mut String, shape: Shape, id: &str, columns: &[runnel_sql::types::Field]) {
    match shape {
        Shape::Query => {
            out.push('[');
            out.push_str(&json!({"header": rest::header(id, columns)}).to_string());
        }
        Shape::Delimited => {
            out.push_str(&rest::stream_header(id, columns).to_string());
            out.push('\n');
        }
        Shape::JsonArray => {
            out.push('[');
            out.push_str(&rest::stream_header(id, columns).to_string());
        }
    }
}

fn push_row(out: &mut String, shape: Shape, row: &Json) {
    match shape {
        Shape::Query => {
            out.push_str(",\n");
            out.push_str(&json!({"row": {"columns": row}}).to_string());
        }
        Shape::Delimited => {
            out.push_str(&row.to_string());
            out.push('\n');
        }
        Shape::JsonArray => {
            out.push_str(",\n");
            out.push_str(&row.to_string());
        }
    }
}

fn finish(out: &mut String, shape: Shape) {
    if shape != Shape::Delimited {
        out.push_str("]\n");
    }
}

/// A push query's rows as a streamed body; the query stops when the client goes away or
/// `/close-query` names it.
fn stream_body(api: &Arc<Api>, stream: PushStream, shape: Shape) -> Body {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(PUSH_BUFFER_CHUNKS);
    let id = stream.id.clone();
    if let Some(sql) = &api.sql {
        sql.running.lock().unwrap_or_else(|e| e.into_inner()).insert(id.clone(), stream.stopper());
    }
    let api = api.clone();
    tokio::task::spawn_blocking(move || {
        let mut head = String::new();
        push_header(&mut head, shape, &stream.id, &stream.columns);
        let mut ok = tx.blocking_send(Ok(Bytes::from(head))).is_ok();
        let stopped = stream.stopper();
        while ok && !stopped.load(Ordering::Relaxed) {
            match stream.rows.recv_timeout(CLIENT_CHECK_INTERVAL) {
                Ok(Ok(row)) => {
                    let mut chunk = String::new();
                    push_row(&mut chunk, shape, &rest::row_json(&row, &stream.columns));
                    ok = tx.blocking_send(Ok(Bytes::from(chunk))).is_ok();
                }
                Ok(Err(e)) => {
                    let mut chunk = String::new();
                    let error = rest::generic_error(rest::ERROR_SERVER, &e);
                    match shape {
                        Shape::Delimited => chunk.push_str(&format!("{error}\n")),
                        _ => chunk.push_str(&format!(",\n{error}")),
                    }
                    let _ = tx.blocking_send(Ok(Bytes::from(chunk)));
                    break;
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => ok = !tx.is_closed(),
                // The query ended (LIMIT reached).
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        if ok {
            let mut tail = String::new();
            if shape == Shape::Query {
                tail.push_str(",\n{\"finalMessage\":\"Limit Reached\"}");
            }
            finish(&mut tail, shape);
            let _ = tx.blocking_send(Ok(Bytes::from(tail)));
        }
        if let Some(sql) = &api.sql {
            sql.running.lock().unwrap_or_else(|e| e.into_inner()).remove(&stream.id);
        }
        drop(stream);
    });
    Body::from_stream(ReceiverStream(rx))
}

/// A tokio receiver as a `Stream` of body chunks.
struct ReceiverStream(tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>);

impl futures_core::Stream for ReceiverStream {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.poll_recv(cx)
    }
}

async fn close_query(State(api): Shared, body: Bytes) -> Response {
    let Some(sql) = &api.sql else { return bad_request("the SQL engine is not running") };
    let id = serde_json::from_slice::<Json>(&body)
        .ok()
        .and_then(|j| j.get("queryId").and_then(Json::as_str).map(str::to_string));
    let Some(id) = id else { return bad_request("the body needs a \"queryId\" string") };
    match sql.running.lock().unwrap_or_else(|e| e.into_inner()).remove(&id) {
        Some(stop) => {
            stop.store(true, Ordering::Relaxed);
            StatusCode::OK.into_response()
        }
        None => bad_request(&format!("no push query with id {id}")),
    }
}

/// Rows as JSON lines after a `{"target": "STREAM"}` line; answers one status line per row.
async fn inserts_stream(State(api): Shared, body: Bytes) -> Response {
    let engine = match engine(&api) {
        Ok(e) => e,
        Err(r) => return r.into_response(),
    };
    let result = tokio::task::spawn_blocking(move || {
        let text = String::from_utf8_lossy(&body).into_owned();
        let mut lines = text.lines().filter(|l| !l.trim().is_empty());
        let target = lines
            .next()
            .and_then(|l| serde_json::from_str::<Json>(l).ok())
            .and_then(|j| j.get("target").and_then(Json::as_str).map(|t| t.to_ascii_uppercase()));
        let Some(target) = target else { return Err("the first line must be {\"target\": \"STREAM\"}".to_string()) };
        let mut out = String::new();
        for (seq, line) in lines.enumerate() {
            let status = match serde_json::from_str::<Json>(line) {
                Ok(Json::Object(row)) => match engine.insert_json(&target, &row) {
                    Ok(()) => json!({"status": "ok", "seq": seq}),
                    Err(e) => json!({"status": "error", "seq": seq, "error_code": rest::ERROR_BAD_STATEMENT, "message": e.0}),
                },
                _ => json!({"status": "error", "seq": seq, "error_code": rest::ERROR_BAD_REQUEST, "message": "a row must be a JSON object"}),
            };
            out.push_str(&status.to_string());
            out.push('\n');
        }
        Ok(out)
    })
    .await;
    match result {
        Ok(Ok(text)) => {
            let mut response = Response::new(Body::from(text));
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/vnd.ksqlapi.delimited.v1"));
            response
        }
        Ok(Err(message)) => bad_request(&message),
        Err(e) => ksql_json(StatusCode::INTERNAL_SERVER_ERROR, rest::generic_error(rest::ERROR_SERVER, &e.to_string())),
    }
}

async fn info(State(api): Shared) -> Response {
    let cluster = api.sql.as_ref().map(|s| s.cluster_id.clone()).unwrap_or_default();
    ksql_json(StatusCode::OK, rest::server_info(&cluster))
}

async fn healthcheck() -> Response {
    ksql_json(StatusCode::OK, rest::health())
}

async fn status() -> Response {
    ksql_json(StatusCode::OK, json!({"commandStatuses": BTreeMap::<String, Json>::new()}))
}
