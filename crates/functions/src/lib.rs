//! runnel's serverless functions: the WIT interface (`wit/function.wit`) and the wasmtime
//! runtime that deploys WebAssembly components and invokes them on batches of events or
//! HTTP requests, each invocation in a fresh pooled instance with a memory limit and a
//! deadline.
//!
//! [`FunctionService`] puts triggers, retries and dead letters on top of
//! [`Function::invoke`]: a durable deploy registry, topic and table-change triggers with
//! per-key ordering and bounded concurrency, cron timers, HTTP requests
//! ([`FunctionService::handle_http`]), metrics and logs per function. [`Trigger`] lists the
//! trigger kinds and their CLI forms. The rest of runnel provides
//! tables, logs and the clock through [`Host`] ([`EngineHost`] over the SQL engine).

mod bindings;
mod cache;
mod endpoint;
mod engine_host;
mod error;
mod event_json;
mod handler;
mod host;
pub mod limits;
mod metrics;
mod registry;
mod runtime;
mod service;
mod spec;
mod timer;
mod trigger;

pub use bindings::{Event, Header, HttpRequest, HttpResponse, Level, OutputEvent, Row};
pub use cache::CacheError;
pub use endpoint::{EndpointConfig, EndpointFunction};
pub use engine_host::{EngineHost, LogLine, LogSource, level_name};
pub use error::{DeployError, EndpointError, InvokeError, RuntimeError};
pub use event_json::{EventJson, EventJsonError, output_json, parse_event};
pub use host::Host;
pub use metrics::{DURATION_BUCKETS_US, DurationHistogram, MetricsSnapshot, PartitionLag};
pub use registry::{FUNCTIONS_TOPIC, POSITIONS_TOPIC, StoreError};
pub use runtime::{CacheOutcome, DeployOptions, Function, HttpOutcome, Runtime, RuntimeConfig};
pub use service::{FunctionInfo, FunctionService, FunctionStatus, ReplayReport, ServiceConfig, ServiceError};
pub use spec::{FunctionConfig, FunctionSpec, StartPosition, Trigger};
pub use timer::Clock;
pub use trigger::{
    DLQ_HEADER_ATTEMPTS, DLQ_HEADER_ERROR, DLQ_HEADER_FUNCTION, DLQ_HEADER_OFFSET, DLQ_HEADER_PARTITION,
    DLQ_HEADER_PREFIX, DLQ_HEADER_TOPIC,
};

/// The WIT package defining the `function` and `http-function` worlds, for tools that
/// generate guest bindings (`runnel fn wit`, say).
pub const WIT: &str = include_str!("../wit/function.wit");
