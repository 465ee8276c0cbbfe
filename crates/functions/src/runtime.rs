//! The wasmtime runtime: deploys components (validate, precompile, cache, link) and
//! invokes them with a memory limit and a deadline.
//!
//! One [`Runtime`] owns one `Engine` (Cranelift, component model, epoch interruption, a
//! pooling allocator), one `Linker` with the host calls, the compiled-component cache and
//! an epoch-ticker thread. Deploying yields a [`Function`] holding an `InstancePre`, so an
//! invocation only takes a slot from the pool, runs, and gives the slot back. Invocations
//! are synchronous on the caller's thread; run them on blocking threads from async code.
//! Each invocation gets a fresh instance: no guest state survives from one batch to the next.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, ResourceLimiter, Store, Trap};

use crate::bindings::function_world::{self, FunctionPre};
use crate::bindings::http_world::HttpFunctionPre;
use crate::bindings::{Event, HttpRequest, HttpResponse, Level, OutputEvent, Row};
use crate::cache::{ArtifactCache, CacheError};
use crate::error::{DeployError, InvokeError, RuntimeError};
use crate::host::Host;
use crate::limits::*;

/// Settings of a [`Runtime`].
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Directory of precompiled components, created if missing. It must belong to this
    /// runtime alone: artifacts found there are trusted once their checksum matches.
    pub cache_dir: PathBuf,
    /// Instances alive at once across all functions (pool slots).
    pub concurrent_instances_max: u32,
}

impl RuntimeConfig {
    pub fn new(cache_dir: impl Into<PathBuf>) -> Self {
        Self { cache_dir: cache_dir.into(), concurrent_instances_max: CONCURRENT_INSTANCES_MAX }
    }
}

/// Per-function bounds, fixed at deploy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeployOptions {
    /// Largest linear memory of one instance, at most [`MEMORY_BYTES_MAX`].
    pub memory_bytes_max: usize,
    /// Wall-clock budget of one invocation, at most [`DEADLINE_MS_MAX`].
    pub deadline_ms: u64,
}

impl Default for DeployOptions {
    fn default() -> Self {
        Self { memory_bytes_max: MEMORY_BYTES_DEFAULT, deadline_ms: DEADLINE_MS_DEFAULT }
    }
}

/// Where a deploy found its compiled code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheOutcome {
    /// A verified artifact in the cache directory; nothing was compiled.
    Hit,
    /// No artifact yet: compiled and stored.
    Miss,
    /// The artifact failed verification (the message says why): compiled and stored anew.
    Rebuilt(String),
}

/// The part of a runtime shared with its functions.
struct Shared {
    engine: Engine,
    ticker: EpochTicker,
}

/// Deploys and runs functions. Cheap to share behind an `Arc`; all methods take `&self`.
pub struct Runtime {
    shared: Arc<Shared>,
    linker: Linker<State>,
    cache: ArtifactCache,
}

/// Which world a component implements, with its pre-linked instance.
enum Exports {
    Function(FunctionPre<State>),
    Http(HttpFunctionPre<State>),
}

/// A deployed function: compiled, linked, ready to invoke from any thread.
pub struct Function {
    name: String,
    shared: Arc<Shared>,
    exports: Exports,
    host: Arc<dyn Host>,
    options: DeployOptions,
    cache_outcome: CacheOutcome,
    cache_key: String,
}

/// What an HTTP invocation returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpOutcome {
    pub response: HttpResponse,
    /// Events the function produced while handling the request.
    pub produced: Vec<OutputEvent>,
}

impl Runtime {
    pub fn new(config: RuntimeConfig) -> Result<Self, RuntimeError> {
        let slots = config.concurrent_instances_max.max(1);
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(slots)
            // Toolchains (componentize-js/-py, wit-component) emit several core modules
            // per component: shims, adapters, the program itself.
            .max_core_instances_per_component(64)
            .total_core_instances(slots.saturating_mul(16))
            .max_memories_per_component(2)
            .total_memories(slots.saturating_mul(2))
            .max_tables_per_component(8)
            .total_tables(slots.saturating_mul(8))
            .table_elements(TABLE_ELEMENTS_MAX)
            .max_memory_size(MEMORY_BYTES_MAX)
            // Reset small memories by memset rather than madvise on reuse.
            .linear_memory_keep_resident(128 * 1024)
            .table_keep_resident(16 * 1024);
        let mut wasm = Config::new();
        wasm.wasm_component_model(true)
            .epoch_interruption(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&wasm).map_err(|e| RuntimeError::Engine(e.to_string()))?;
        let ticker = EpochTicker::start(&engine).map_err(RuntimeError::Ticker)?;
        let mut linker = Linker::new(&engine);
        // Both worlds import the same interfaces: one registration serves both.
        function_world::Function::add_to_linker::<State, HasSelf<State>>(&mut linker, |s| s)
            .map_err(|e| RuntimeError::Engine(e.to_string()))?;
        let cache = ArtifactCache::open(&config.cache_dir)?;
        Ok(Self { shared: Arc::new(Shared { engine, ticker }), linker, cache })
    }

    /// Validates, compiles (or loads from the cache) and links a component given as
    /// binary `.wasm` or text `.wat`, binding it to `host`.
    pub fn deploy(
        &self,
        name: &str,
        source: &[u8],
        host: Arc<dyn Host>,
        options: DeployOptions,
    ) -> Result<Function, DeployError> {
        validate_name(name)?;
        check_limit("memory_bytes_max", options.memory_bytes_max as u64, MEMORY_BYTES_MAX as u64)?;
        check_limit("deadline_ms", options.deadline_ms, DEADLINE_MS_MAX)?;
        if source.len() > COMPONENT_BYTES_MAX {
            return Err(DeployError::TooLarge { bytes: source.len(), max: COMPONENT_BYTES_MAX });
        }
        let wasm = wat::parse_bytes(source).map_err(|e| DeployError::Wat(e.to_string()))?;
        check_imports(&wasm)?;
        let engine = &self.shared.engine;
        let key = ArtifactCache::key(engine, &wasm);
        let (component, cache_outcome) = match self.cache.load(&key) {
            Ok(Some(artifact)) => match self.load(&artifact) {
                Ok(component) => (component, CacheOutcome::Hit),
                Err(reason) => (self.compile(&key, &wasm)?, CacheOutcome::Rebuilt(reason)),
            },
            Ok(None) => (self.compile(&key, &wasm)?, CacheOutcome::Miss),
            Err(e @ CacheError::Corrupt { .. }) => {
                tracing::warn!(function = name, error = %e, "rebuilding compiled component");
                (self.compile(&key, &wasm)?, CacheOutcome::Rebuilt(e.to_string()))
            }
            Err(e) => return Err(e.into()),
        };
        let pre = self.linker.instantiate_pre(&component).map_err(|e| DeployError::Link(format!("{e:#}")))?;
        let exports = if component.get_export_index(None, "handle-http").is_some() {
            Exports::Http(HttpFunctionPre::new(pre).map_err(|e| DeployError::Link(format!("{e:#}")))?)
        } else {
            Exports::Function(FunctionPre::new(pre).map_err(|e| DeployError::Link(format!("{e:#}")))?)
        };
        Ok(Function {
            name: name.to_string(),
            shared: self.shared.clone(),
            exports,
            host,
            options,
            cache_outcome,
            cache_key: key,
        })
    }

    /// Validates and compiles `wasm`, stores the artifact, and loads it.
    fn compile(&self, key: &str, wasm: &[u8]) -> Result<Component, DeployError> {
        let artifact =
            self.shared.engine.precompile_component(wasm).map_err(|e| DeployError::Compile(format!("{e:#}")))?;
        self.cache.remove(key)?;
        self.cache.store(key, &artifact)?;
        self.load(&artifact).map_err(DeployError::Compile)
    }

    fn load(&self, artifact: &[u8]) -> Result<Component, String> {
        // SAFETY: `artifact` was produced by `Engine::precompile_component` of an engine
        // with the same settings (the cache key includes its compatibility hash), either
        // just now or earlier into the cache directory this runtime owns; bytes read back
        // have passed their SHA-256 check, so they are the bytes we wrote. wasmtime itself
        // checks the header, version and engine settings. `deserialize` copies the bytes
        // into its own mapping, so nothing can change them after the check.
        unsafe { Component::deserialize(&self.shared.engine, artifact) }
            .map_err(|e| format!("cannot load compiled component: {e:#}"))
    }
}

impl Function {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the component exports `handle-http` (the `http-function` world).
    pub fn is_http(&self) -> bool {
        matches!(self.exports, Exports::Http(_))
    }

    pub fn options(&self) -> DeployOptions {
        self.options
    }

    /// Whether the deploy reused a cached artifact.
    pub fn cache_outcome(&self) -> &CacheOutcome {
        &self.cache_outcome
    }

    /// The content hash naming the function's compiled artifact (also a version id).
    pub fn cache_key(&self) -> &str {
        &self.cache_key
    }

    /// Runs `handle` on a batch in a fresh instance. Returns the events the function
    /// produced (in call order) followed by the events it returned.
    pub fn invoke(&self, events: &[Event]) -> Result<Vec<OutputEvent>, InvokeError> {
        check_invoke_limit("input events", events.len(), INPUT_EVENTS_PER_INVOCATION_MAX)?;
        let (_ticking, mut store) = self.store();
        let returned = match &self.exports {
            Exports::Function(pre) => match pre.instantiate(&mut store) {
                Ok(instance) => instance.call_handle(&mut store, events),
                Err(e) => return Err(self.instantiate_error(&store, e)),
            },
            Exports::Http(pre) => match pre.instantiate(&mut store) {
                Ok(instance) => instance.call_handle(&mut store, events),
                Err(e) => return Err(self.instantiate_error(&store, e)),
            },
        };
        let returned = self
            .call_result(&store, returned)?
            .map_err(|message| InvokeError::Guest(truncate(message, GUEST_ERROR_BYTES_MAX)))?;
        let state = store.into_data();
        let mut outputs = state.produced;
        check_invoke_limit("output events", outputs.len() + returned.len(), OUTPUT_EVENTS_PER_INVOCATION_MAX)?;
        let returned_bytes: usize = returned.iter().map(output_bytes).sum();
        check_invoke_limit("output bytes", state.produced_bytes + returned_bytes, OUTPUT_BYTES_PER_INVOCATION_MAX)?;
        outputs.extend(returned);
        Ok(outputs)
    }

    /// Runs `handle-http` on a request in a fresh instance.
    pub fn invoke_http(&self, request: &HttpRequest) -> Result<HttpOutcome, InvokeError> {
        let Exports::Http(pre) = &self.exports else {
            return Err(InvokeError::NotHttp(self.name.clone()));
        };
        let (_ticking, mut store) = self.store();
        let result = match pre.instantiate(&mut store) {
            Ok(instance) => instance.call_handle_http(&mut store, request),
            Err(e) => return Err(self.instantiate_error(&store, e)),
        };
        let response = self
            .call_result(&store, result)?
            .map_err(|message| InvokeError::Guest(truncate(message, GUEST_ERROR_BYTES_MAX)))?;
        check_invoke_limit("response body bytes", response.body.len(), OUTPUT_BYTES_PER_INVOCATION_MAX)?;
        let state = store.into_data();
        Ok(HttpOutcome { response, produced: state.produced })
    }

    /// Creates an instance from the pool and drops it without calling it: runs the
    /// component's start functions under the same limits. For smoke checks and benchmarks.
    pub fn probe(&self) -> Result<(), InvokeError> {
        let (_ticking, mut store) = self.store();
        let result = match &self.exports {
            Exports::Function(pre) => pre.instantiate(&mut store).map(drop),
            Exports::Http(pre) => pre.instantiate(&mut store).map(drop),
        };
        result.map_err(|e| self.instantiate_error(&store, e))
    }

    /// A fresh store with the function's limits, and the guard that keeps its deadline
    /// ticking while it lives.
    fn store(&self) -> (Ticking, Store<State>) {
        let ticking = self.shared.ticker.enter();
        let mut store = Store::new(
            &self.shared.engine,
            State {
                host: self.host.clone(),
                limiter: MemoryLimiter { memory_bytes_max: self.options.memory_bytes_max, exceeded: false },
                produced: Vec::new(),
                produced_bytes: 0,
                log_lines: 0,
            },
        );
        store.limiter(|state| &mut state.limiter);
        // One tick may already be nearly over, hence the extra one: the deadline is a
        // lower bound, exact to EPOCH_TICK_MS.
        store.set_epoch_deadline(self.options.deadline_ms.div_ceil(EPOCH_TICK_MS) + 1);
        store.epoch_deadline_trap();
        (ticking, store)
    }

    fn call_result<R>(&self, store: &Store<State>, result: wasmtime::Result<R>) -> Result<R, InvokeError> {
        result.map_err(|e| self.classify(store, &e).unwrap_or_else(|| trap(&e)))
    }

    fn instantiate_error(&self, store: &Store<State>, e: wasmtime::Error) -> InvokeError {
        self.classify(store, &e).unwrap_or_else(|| match e.downcast_ref::<Trap>() {
            // A start function trapped.
            Some(_) => trap(&e),
            None => InvokeError::Instantiate(format!("{e:#}")),
        })
    }

    /// Timeout and memory-limit failures, which look like traps to wasmtime.
    fn classify(&self, store: &Store<State>, e: &wasmtime::Error) -> Option<InvokeError> {
        if store.data().limiter.exceeded {
            return Some(InvokeError::OutOfMemory { memory_bytes_max: self.options.memory_bytes_max });
        }
        if e.downcast_ref::<Trap>() == Some(&Trap::Interrupt) {
            return Some(InvokeError::Timeout { deadline_ms: self.options.deadline_ms });
        }
        None
    }
}

fn trap(e: &wasmtime::Error) -> InvokeError {
    InvokeError::Trap(truncate(format!("{e:#}"), GUEST_ERROR_BYTES_MAX))
}

impl std::fmt::Debug for Function {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Function")
            .field("name", &self.name)
            .field("http", &self.is_http())
            .field("options", &self.options)
            .field("cache_key", &self.cache_key)
            .finish_non_exhaustive()
    }
}

/// The data of one invocation's `Store`.
pub(crate) struct State {
    host: Arc<dyn Host>,
    limiter: MemoryLimiter,
    produced: Vec<OutputEvent>,
    produced_bytes: usize,
    log_lines: u32,
}

/// Fails (and remembers) any attempt to grow a memory past the function's limit, so the
/// failure is reported as `OutOfMemory` rather than a `memory.grow` returning -1 that the
/// guest may ignore.
struct MemoryLimiter {
    memory_bytes_max: usize,
    exceeded: bool,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.memory_bytes_max {
            self.exceeded = true;
            return Err(wasmtime::Error::msg(format!(
                "memory of {current} bytes cannot grow to {desired}: the limit is {} bytes",
                self.memory_bytes_max
            )));
        }
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= TABLE_ELEMENTS_MAX)
    }
}

impl function_world::runnel::function::types::Host for State {}

impl function_world::runnel::function::host::Host for State {
    fn table_get(&mut self, table: String, key: Vec<u8>) -> Result<Option<String>, String> {
        check_table_args(&table, &key)?;
        self.host.table_get(&table, &key)
    }

    fn table_scan(&mut self, table: String, prefix: Vec<u8>, limit: u32) -> Result<Vec<Row>, String> {
        check_table_args(&table, &prefix)?;
        let limit = limit.min(TABLE_SCAN_ROWS_MAX);
        let mut rows = self.host.table_scan(&table, &prefix, limit)?;
        rows.truncate(limit as usize);
        Ok(rows)
    }

    fn produce(&mut self, event: OutputEvent) -> Result<(), String> {
        let count = self.produced.len() + 1;
        if count > OUTPUT_EVENTS_PER_INVOCATION_MAX {
            return Err(format!(
                "produce: {count} events exceed the maximum {OUTPUT_EVENTS_PER_INVOCATION_MAX} per invocation"
            ));
        }
        let bytes = self.produced_bytes + output_bytes(&event);
        if bytes > OUTPUT_BYTES_PER_INVOCATION_MAX {
            return Err(format!(
                "produce: {bytes} bytes exceed the maximum {OUTPUT_BYTES_PER_INVOCATION_MAX} per invocation"
            ));
        }
        self.produced.push(event);
        self.produced_bytes = bytes;
        Ok(())
    }

    fn log(&mut self, level: Level, message: String) {
        self.log_lines = self.log_lines.saturating_add(1);
        if self.log_lines > LOG_LINES_PER_INVOCATION_MAX {
            if self.log_lines == LOG_LINES_PER_INVOCATION_MAX + 1 {
                self.host.log(Level::Warn, "log line limit reached: later lines of this invocation are dropped");
            }
            return;
        }
        self.host.log(level, &truncate(message, LOG_MESSAGE_BYTES_MAX));
    }

    fn now_ms(&mut self) -> i64 {
        self.host.now_ms()
    }
}

fn check_table_args(table: &str, key: &[u8]) -> Result<(), String> {
    if table.len() > TABLE_NAME_BYTES_MAX {
        return Err(format!("table name of {} bytes exceeds the maximum {TABLE_NAME_BYTES_MAX}", table.len()));
    }
    if key.len() > TABLE_KEY_BYTES_MAX {
        return Err(format!("key of {} bytes exceeds the maximum {TABLE_KEY_BYTES_MAX}", key.len()));
    }
    Ok(())
}

/// Bytes an output event carries, as counted against [`OUTPUT_BYTES_PER_INVOCATION_MAX`].
fn output_bytes(event: &OutputEvent) -> usize {
    event.topic.len()
        + event.key.as_ref().map_or(0, Vec::len)
        + event.value.as_ref().map_or(0, Vec::len)
        + event.headers.iter().map(|h| h.key.len() + h.value.len()).sum::<usize>()
}

/// Cuts `s` to at most `max` bytes at a character boundary.
fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

fn check_limit(field: &'static str, value: u64, max: u64) -> Result<(), DeployError> {
    if value > max {
        return Err(DeployError::Limit { field, value, max });
    }
    Ok(())
}

fn check_invoke_limit(what: &'static str, value: usize, max: usize) -> Result<(), InvokeError> {
    if value > max {
        return Err(InvokeError::Limit { what, value: value as u64, max: max as u64 });
    }
    Ok(())
}

/// What a component may import besides types: the `runnel:function` package's interfaces
/// (`host`, `types`), at any version.
const IMPORTABLE_PREFIX: &str = "runnel:function/";

/// Refuses a component whose top-level imports (other than types) name anything but the
/// `runnel:function` package (WASI, say) by reading its import section, in microseconds, before compiling it
/// (seconds for a 15 MB component). A component that does not parse is left to the
/// compiler, which says what is wrong with it.
fn check_imports(wasm: &[u8]) -> Result<(), DeployError> {
    use wasmtime::wasmparser::{ComponentTypeRef, Parser, Payload};
    // Nested modules and components have imports of their own, satisfied inside the
    // component: only those of the outermost one (depth 1) reach the host.
    let mut depth = 0usize;
    let mut refused = Vec::new();
    for payload in Parser::new(0).parse_all(wasm) {
        let Ok(payload) = payload else { return Ok(()) };
        match payload {
            Payload::Version { .. } => depth += 1,
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentImportSection(imports) if depth == 1 => {
                for import in imports {
                    let Ok(import) = import else { return Ok(()) };
                    // Type imports (`event`, `output-event`) bound types, not capabilities.
                    let is_type = matches!(import.ty, ComponentTypeRef::Type(_));
                    if !is_type && !import.name.name.starts_with(IMPORTABLE_PREFIX) {
                        refused.push(import.name.name.to_string());
                    }
                }
            }
            _ => {}
        }
    }
    if refused.is_empty() {
        return Ok(());
    }
    Err(DeployError::Link(format!(
        "the component imports {} but runnel provides only runnel:function/host (no WASI: build the component \
         without it, e.g. componentize-py --stub-wasi)",
        refused.join(", ")
    )))
}

/// Checks a function name: ASCII letters, digits, `-`, `_`, `.`, starting with a letter or
/// digit, at most [`FUNCTION_NAME_BYTES_MAX`] bytes (it names files and log lines).
pub(crate) fn validate_name(name: &str) -> Result<(), DeployError> {
    let invalid =
        |reason| Err(DeployError::InvalidName { name: name.chars().take(FUNCTION_NAME_BYTES_MAX).collect(), reason });
    if name.is_empty() {
        return invalid("empty");
    }
    if name.len() > FUNCTION_NAME_BYTES_MAX {
        return invalid("longer than FUNCTION_NAME_BYTES_MAX (128) bytes");
    }
    if !name.as_bytes()[0].is_ascii_alphanumeric() {
        return invalid("must start with an ASCII letter or digit");
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.') {
        return invalid("only ASCII letters, digits, '-', '_' and '.' are allowed");
    }
    Ok(())
}

/// Advances the engine's epoch every [`EPOCH_TICK_MS`] so deadlines fire, while at least one
/// store may run guest code (a [`Ticking`] guard is held); parked otherwise, so an idle
/// runtime costs no wake-ups. Stops when the runtime and all its functions are gone.
struct EpochTicker {
    state: Arc<TickerState>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Default)]
struct TickerState {
    /// Stores that may run guest code now.
    running: Mutex<usize>,
    /// Signalled when `running` leaves zero, and at stop.
    wake: Condvar,
    stop: AtomicBool,
}

/// Keeps the epoch advancing while held: one per store, from before its deadline is set
/// until it is dropped.
struct Ticking(Arc<TickerState>);

impl Drop for Ticking {
    fn drop(&mut self) {
        let mut running = self.0.running.lock().unwrap_or_else(|e| e.into_inner());
        *running -= 1;
    }
}

impl EpochTicker {
    fn start(engine: &Engine) -> std::io::Result<Self> {
        let state = Arc::new(TickerState::default());
        let engine = engine.weak();
        let thread = std::thread::Builder::new().name("runnel-fn-epoch".to_string()).spawn({
            let state = state.clone();
            move || {
                loop {
                    {
                        let mut running = state.running.lock().unwrap_or_else(|e| e.into_inner());
                        while *running == 0 && !state.stop.load(Ordering::Relaxed) {
                            running = state.wake.wait(running).unwrap_or_else(|e| e.into_inner());
                        }
                    }
                    if state.stop.load(Ordering::Relaxed) {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(EPOCH_TICK_MS));
                    match engine.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => break,
                    }
                }
            }
        })?;
        Ok(Self { state, thread: Some(thread) })
    }

    /// A guard keeping the epoch advancing while it is held.
    fn enter(&self) -> Ticking {
        let mut running = self.state.running.lock().unwrap_or_else(|e| e.into_inner());
        *running += 1;
        if *running == 1 {
            self.state.wake.notify_one();
        }
        Ticking(self.state.clone())
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::Relaxed);
        // Taken so the store of `stop` cannot slip between the thread's check and its wait.
        drop(self.state.running.lock().unwrap_or_else(|e| e.into_inner()));
        self.state.wake.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

// The trigger layer shares runtimes and functions across threads.
const _: fn() = || {
    fn shared<T: Send + Sync>() {}
    shared::<Runtime>();
    shared::<Function>();
};

#[cfg(test)]
mod tests {
    //! The bounds on host calls, driven directly (a guest would reach them through the
    //! generated bindings, which only add the canonical ABI).

    use std::sync::Mutex;

    use super::*;
    use crate::bindings::function_world::runnel::function::host::Host as GuestCalls;

    #[derive(Default)]
    struct Recorder {
        logs: Mutex<Vec<(Level, String)>>,
        scan_limits: Mutex<Vec<u32>>,
    }

    impl Host for Recorder {
        fn table_get(&self, _: &str, _: &[u8]) -> Result<Option<String>, String> {
            Ok(None)
        }
        fn table_scan(&self, _: &str, _: &[u8], limit: u32) -> Result<Vec<Row>, String> {
            self.scan_limits.lock().unwrap().push(limit);
            // A misbehaving host returning more than asked.
            Ok((0..limit + 5).map(|i| Row { key: i.to_be_bytes().to_vec(), value: "{}".to_string() }).collect())
        }
        fn log(&self, level: Level, message: &str) {
            self.logs.lock().unwrap().push((level, message.to_string()));
        }
        fn now_ms(&self) -> i64 {
            42
        }
    }

    fn state(host: Arc<Recorder>) -> State {
        State {
            host,
            limiter: MemoryLimiter { memory_bytes_max: MEMORY_BYTES_DEFAULT, exceeded: false },
            produced: Vec::new(),
            produced_bytes: 0,
            log_lines: 0,
        }
    }

    #[test]
    fn table_scan_limit_is_capped_and_extra_rows_dropped() {
        let host = Arc::new(Recorder::default());
        let mut state = state(host.clone());
        let rows = state.table_scan("t".into(), vec![], u32::MAX).unwrap();
        assert_eq!(rows.len(), TABLE_SCAN_ROWS_MAX as usize);
        assert_eq!(*host.scan_limits.lock().unwrap(), vec![TABLE_SCAN_ROWS_MAX]);
        let rows = state.table_scan("t".into(), vec![], 3).unwrap();
        assert_eq!(rows.len(), 3);
    }

    #[test]
    fn oversized_table_arguments_are_refused() {
        let mut state = state(Arc::new(Recorder::default()));
        let long_name = "t".repeat(TABLE_NAME_BYTES_MAX + 1);
        assert!(state.table_get(long_name.clone(), vec![]).is_err());
        assert!(state.table_scan(long_name, vec![], 1).is_err());
        let long_key = vec![0; TABLE_KEY_BYTES_MAX + 1];
        assert!(state.table_get("t".into(), long_key).is_err());
        assert_eq!(state.table_get("t".into(), vec![1]), Ok(None));
    }

    #[test]
    fn produce_stops_at_the_output_limits() {
        let mut state = state(Arc::new(Recorder::default()));
        let event =
            |value: Vec<u8>| OutputEvent { topic: "t".to_string(), key: None, value: Some(value), headers: vec![] };
        for _ in 0..OUTPUT_EVENTS_PER_INVOCATION_MAX {
            state.produce(event(vec![])).unwrap();
        }
        assert!(state.produce(event(vec![])).is_err());
        assert_eq!(state.produced.len(), OUTPUT_EVENTS_PER_INVOCATION_MAX);

        let mut state = super::tests::state(Arc::new(Recorder::default()));
        let big = vec![0; OUTPUT_BYTES_PER_INVOCATION_MAX];
        assert!(state.produce(event(big)).is_err());
        assert!(state.produced.is_empty());
    }

    #[test]
    fn log_lines_are_truncated_and_counted() {
        let host = Arc::new(Recorder::default());
        let mut state = state(host.clone());
        // A multi-byte character straddling the cut.
        let message = format!("{}é", "a".repeat(LOG_MESSAGE_BYTES_MAX - 1));
        state.log(Level::Info, message);
        for _ in 0..LOG_LINES_PER_INVOCATION_MAX + 10 {
            state.log(Level::Debug, "x".to_string());
        }
        let logs = host.logs.lock().unwrap();
        assert_eq!(logs[0].1, "a".repeat(LOG_MESSAGE_BYTES_MAX - 1));
        // The limit, plus one warning that later lines are dropped.
        assert_eq!(logs.len(), LOG_LINES_PER_INVOCATION_MAX as usize + 1);
        assert_eq!(logs.last().map(|l| l.0), Some(Level::Warn));
        assert_eq!(state.now_ms(), 42);
    }

    #[test]
    fn names_are_checked() {
        assert!(validate_name("enrich-orders_v2.1").is_ok());
        for bad in ["", "a/b", "a b", "..", ".hidden", "caf\u{e9}", &"x".repeat(FUNCTION_NAME_BYTES_MAX + 1)] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
    }
}
