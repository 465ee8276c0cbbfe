//! runnel's serverless functions: the WIT interface (`wit/function.wit`) and the wasmtime
//! runtime that deploys WebAssembly components and invokes them on batches of events or
//! HTTP requests, each invocation in a fresh pooled instance with a memory limit and a
//! deadline.
//!
//! Triggers (topics, table changes, HTTP routes, timers), retries and dead letters sit on
//! top of [`Function::invoke`]; the rest of runnel provides tables, logs and the clock
//! through [`Host`].

mod bindings;
mod cache;
mod error;
mod host;
pub mod limits;
mod runtime;

pub use bindings::{Event, Header, HttpRequest, HttpResponse, Level, OutputEvent, Row};
pub use cache::CacheError;
pub use error::{DeployError, InvokeError, RuntimeError};
pub use host::Host;
pub use runtime::{CacheOutcome, DeployOptions, Function, HttpOutcome, Runtime, RuntimeConfig};

/// The WIT package defining the `function` and `http-function` worlds, for tools that
/// generate guest bindings (`runnel fn wit`, say).
pub const WIT: &str = include_str!("../wit/function.wit");
