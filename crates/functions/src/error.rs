//! Typed errors of the runtime: one enum per operation (start, deploy, invoke).

use crate::cache::CacheError;

/// The runtime could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RuntimeError {
    #[error("cannot configure the WebAssembly engine: {0}")]
    Engine(String),
    #[error(transparent)]
    Cache(#[from] CacheError),
    #[error("cannot start the epoch ticker thread: {0}")]
    Ticker(std::io::Error),
}

/// A component could not be deployed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeployError {
    #[error("function name {name:?} is invalid: {reason}")]
    InvalidName { name: String, reason: &'static str },
    #[error("component of {bytes} bytes exceeds the {max} byte limit")]
    TooLarge { bytes: usize, max: usize },
    #[error("cannot parse the component's text format: {0}")]
    Wat(String),
    #[error("component is invalid or cannot be compiled: {0}")]
    Compile(String),
    #[error("component does not fit the runnel:function world: {0}")]
    Link(String),
    #[error("{field} of {value} exceeds the maximum {max}")]
    Limit { field: &'static str, value: u64, max: u64 },
    #[error(transparent)]
    Cache(#[from] CacheError),
}

/// An HTTP-endpoint function's configuration is invalid (see `EndpointFunction::new`).
/// Messages never quote header values or the URL's query string.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EndpointError {
    #[error("endpoint function name is empty")]
    EmptyName,
    #[error("endpoint url is invalid: {reason}")]
    InvalidUrl { reason: String },
    #[error("endpoint url scheme {scheme:?} is not supported: use http:// or https://")]
    Scheme { scheme: String },
    #[error("endpoint url has no host")]
    MissingHost,
    #[error("endpoint timeout_ms must be at least 1")]
    ZeroTimeout,
    #[error("endpoint header {name:?} is invalid: {reason}")]
    InvalidHeader { name: String, reason: &'static str },
    #[error("endpoint {field} of {value} exceeds the maximum {max}")]
    Limit { field: &'static str, value: u64, max: u64 },
}

/// An invocation failed. Every variant is contained: the runtime and other functions go
/// on. The trigger decides whether to retry or dead-letter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvokeError {
    /// The guest trapped (unreachable, out-of-bounds access, division by zero, ...).
    #[error("function trapped: {0}")]
    Trap(String),
    /// The invocation ran past its deadline and was interrupted.
    #[error("function exceeded its deadline of {deadline_ms} ms")]
    Timeout { deadline_ms: u64 },
    /// The guest tried to grow its memory past its limit.
    #[error("function exceeded its memory limit of {memory_bytes_max} bytes")]
    OutOfMemory { memory_bytes_max: usize },
    /// The handler returned `err(message)`.
    #[error("function returned an error: {0}")]
    Guest(String),
    /// The invocation's input or output is past a bound in [`limits`](crate::limits).
    #[error("{what} of {value} exceeds the maximum {max}")]
    Limit { what: &'static str, value: u64, max: u64 },
    /// The function does not export `handle-http`.
    #[error("function {0} does not export handle-http")]
    NotHttp(String),
    /// No instance could be created (for example every pool slot is in use).
    #[error("cannot instantiate the function: {0}")]
    Instantiate(String),
    /// An HTTP-endpoint function's URL did not answer within its timeout.
    #[error("endpoint {url} did not answer within {timeout_ms} ms")]
    EndpointTimeout { url: String, timeout_ms: u64 },
    /// An HTTP-endpoint function's URL could not be reached: name resolution, connection,
    /// TLS or a broken HTTP exchange.
    #[error("cannot reach endpoint {url}: {reason}")]
    EndpointUnreachable { url: String, reason: String },
    /// An HTTP-endpoint function answered with a status outside 2xx (a 3xx included:
    /// redirects are not followed). `body` is an excerpt of its response, on one line, at
    /// most `ENDPOINT_ERROR_BODY_BYTES_MAX` bytes.
    #[error("endpoint {url} answered HTTP {status}{}: {body}", status_hint(*status))]
    EndpointStatus { url: String, status: u16, body: String },
    /// An HTTP-endpoint function's response body is past `ENDPOINT_RESPONSE_BYTES_MAX`.
    #[error("response of endpoint {url} exceeds the maximum of {bytes_max} bytes")]
    EndpointResponseTooLarge { url: String, bytes_max: u64 },
    /// An HTTP-endpoint function's response is not the documented JSON.
    #[error("response of endpoint {url} is invalid: {reason}")]
    EndpointResponse { url: String, reason: String },
}

/// A word on what a failure status means, after the number in [`InvokeError::EndpointStatus`].
fn status_hint(status: u16) -> &'static str {
    match status {
        429 => " (too many requests: the batch is retried after a backoff)",
        502..=504 => " (the endpoint or its gateway is unavailable: the batch is retried after a backoff)",
        300..=399 => " (redirects are not followed: configure the final URL)",
        _ => "",
    }
}
