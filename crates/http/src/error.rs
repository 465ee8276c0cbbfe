//! The one error type of the HTTP API and its JSON form, `{"error_code": 40401, "message":
//! "..."}` (the Confluent REST Proxy's shape): the error code is the HTTP status followed by two
//! digits saying which error of that status it is. Internal errors are mapped to statuses here,
//! in one place.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use runnel_log::{AppendError, LogError, ReadError};

/// Every error the API answers with. `code()` is the `error_code` of the JSON body.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ApiError {
    /// The body is not JSON, or not of the expected shape (40001).
    MalformedBody(String),
    /// A query parameter is missing, malformed or contradicts another (40002).
    InvalidParameter(String),
    /// The offset asked for is below the partition's log start offset (40003).
    OffsetOutOfRange(String),
    /// No such topic (40401).
    UnknownTopic(String),
    /// The topic has no such partition (40402).
    UnknownPartition {
        topic: String,
        partition: i64,
    },
    /// No such consumer group (40403).
    UnknownGroup(String),
    /// No such path (40404).
    NotFound(String),
    /// No such function (40405).
    UnknownFunction(String),
    /// The path exists but not with this method (40501).
    MethodNotAllowed(String),
    /// The topic exists already (40901).
    TopicExists(String),
    /// The body is larger than the limit (41301), or the records make a batch over the topic's
    /// `max.message.bytes` (41302).
    TooLarge(String),
    BatchTooLarge(String),
    /// The request is well formed but its values are refused: a topic name, a partition count, a
    /// config, a record (42201).
    Invalid(String),
    /// Internal topics are written and deleted by runnel only (42202).
    InternalTopic(String),
    /// The log failed (50001).
    Storage(String),
    /// A function's invocation failed: it trapped, ran out of memory or returned an error
    /// (50002).
    FunctionFailed(String),
    /// The server is starting or stopping (50301).
    NotReady(String),
    /// The function cannot run now: paused, or its component failed to load (50302).
    Unavailable(String),
    /// A function's invocation ran past its deadline (50401).
    FunctionTimeout(String),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::MalformedBody(_) | ApiError::InvalidParameter(_) | ApiError::OffsetOutOfRange(_) => {
                StatusCode::BAD_REQUEST
            }
            ApiError::UnknownTopic(_)
            | ApiError::UnknownPartition { .. }
            | ApiError::UnknownGroup(_)
            | ApiError::NotFound(_)
            | ApiError::UnknownFunction(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::TopicExists(_) => StatusCode::CONFLICT,
            ApiError::TooLarge(_) | ApiError::BatchTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Invalid(_) | ApiError::InternalTopic(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Storage(_) | ApiError::FunctionFailed(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::NotReady(_) | ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::FunctionTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    pub fn code(&self) -> u32 {
        let n = match self {
            ApiError::MalformedBody(_) => 1,
            ApiError::InvalidParameter(_) => 2,
            ApiError::OffsetOutOfRange(_) => 3,
            ApiError::UnknownTopic(_) => 1,
            ApiError::UnknownPartition { .. } => 2,
            ApiError::UnknownGroup(_) => 3,
            ApiError::NotFound(_) => 4,
            ApiError::UnknownFunction(_) => 5,
            ApiError::MethodNotAllowed(_) => 1,
            ApiError::TopicExists(_) => 1,
            ApiError::TooLarge(_) => 1,
            ApiError::BatchTooLarge(_) => 2,
            ApiError::Invalid(_) => 1,
            ApiError::InternalTopic(_) => 2,
            ApiError::Storage(_) => 1,
            ApiError::FunctionFailed(_) => 2,
            ApiError::NotReady(_) => 1,
            ApiError::Unavailable(_) => 2,
            ApiError::FunctionTimeout(_) => 1,
        };
        u32::from(self.status().as_u16()) * 100 + n
    }

    pub fn message(&self) -> String {
        match self {
            ApiError::UnknownTopic(t) => format!("unknown topic {t:?}"),
            ApiError::UnknownPartition { topic, partition } => {
                format!("topic {topic:?} has no partition {partition}")
            }
            ApiError::UnknownGroup(g) => format!("unknown consumer group {g:?}"),
            ApiError::UnknownFunction(f) => format!("unknown function {f:?}"),
            ApiError::TopicExists(t) => format!("topic {t:?} already exists"),
            ApiError::MalformedBody(m)
            | ApiError::InvalidParameter(m)
            | ApiError::OffsetOutOfRange(m)
            | ApiError::NotFound(m)
            | ApiError::MethodNotAllowed(m)
            | ApiError::TooLarge(m)
            | ApiError::BatchTooLarge(m)
            | ApiError::Invalid(m)
            | ApiError::InternalTopic(m)
            | ApiError::Storage(m)
            | ApiError::FunctionFailed(m)
            | ApiError::NotReady(m)
            | ApiError::Unavailable(m)
            | ApiError::FunctionTimeout(m) => m.clone(),
        }
    }

    /// The JSON body.
    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({ "error_code": self.code(), "message": self.message() })
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status().is_server_error() {
            tracing::warn!(status = self.status().as_u16(), error = %self, "HTTP request failed");
        }
        (self.status(), Json(self.body())).into_response()
    }
}

impl From<LogError> for ApiError {
    fn from(e: LogError) -> ApiError {
        match e {
            LogError::TopicExists(t) => ApiError::TopicExists(t),
            LogError::UnknownTopic(t) => ApiError::UnknownTopic(t),
            e @ (LogError::InvalidTopicName { .. }
            | LogError::InvalidPartitions(_)
            | LogError::PartitionsCannotShrink { .. }
            | LogError::Config(_)) => ApiError::Invalid(e.to_string()),
            e => ApiError::Storage(e.to_string()),
        }
    }
}

impl From<AppendError> for ApiError {
    fn from(e: AppendError) -> ApiError {
        match e {
            e @ AppendError::MessageTooLarge { .. } => {
                ApiError::BatchTooLarge(format!("{e}: send fewer or smaller records per request"))
            }
            e @ (AppendError::InvalidBatch(_)
            | AppendError::OutOfOrderSequence { .. }
            | AppendError::ProducerFenced { .. }) => ApiError::Invalid(e.to_string()),
            e => ApiError::Storage(e.to_string()),
        }
    }
}

impl From<ReadError> for ApiError {
    fn from(e: ReadError) -> ApiError {
        match e {
            e @ ReadError::OffsetOutOfRange { .. } => ApiError::OffsetOutOfRange(e.to_string()),
            e => ApiError::Storage(e.to_string()),
        }
    }
}

impl From<tokio::task::JoinError> for ApiError {
    fn from(e: tokio::task::JoinError) -> ApiError {
        ApiError::Storage(format!("log call failed: {e}"))
    }
}
