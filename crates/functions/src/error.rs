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
}
