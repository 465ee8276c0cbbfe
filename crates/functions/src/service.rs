//! [`FunctionService`]: deployed functions over one runtime, one event log and one SQL
//! engine. It keeps the deploy registry durable (components by hash on disk, specs in
//! `__runnel_functions`), runs each function's trigger (topic, table changes, cron timer;
//! HTTP requests come in through [`FunctionService::handle_http`]), and offers what the CLI
//! and REST layers need: deploy, pause, resume, delete, list, describe, logs, direct invoke,
//! HTTP requests and dead-letter replay.
//!
//! Output topics must exist: an output to a missing topic fails the invocation (retried,
//! then dead-lettered, so creating the topic and replaying recovers), unless
//! [`ServiceConfig::auto_create_output_topics`] is set, in which case it is created with
//! [`AUTO_CREATED_TOPIC_PARTITIONS`]. A typo in a topic name then shows up as dead letters
//! instead of a stray topic.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicU32;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use bytes::Bytes;
use runnel_sql::eventlog::{LogFailure, LogRecord, OutRecord};
use runnel_sql::{Engine, EventLog};
use serde::Serialize;

use crate::bindings::{Event, HttpRequest, HttpResponse, Level, OutputEvent};
use crate::endpoint::{EndpointConfig, EndpointFunction};
use crate::engine_host::{EngineHost, LogLine, now_ms};
use crate::error::{DeployError, EndpointError, InvokeError, RuntimeError};
use crate::handler::Handler;
use crate::limits::*;
use crate::metrics::{Metrics, MetricsSnapshot, PartitionLag};
use crate::registry::{
    ComponentStore, FUNCTIONS_TOPIC, POSITIONS_TOPIC, Position, PositionStore, StoreError, read_all, replay_key,
    trigger_key,
};
use crate::runtime::{DeployOptions, Runtime, RuntimeConfig, validate_name};
use crate::spec::{FunctionConfig, FunctionSpec, StartPosition, Trigger};
use crate::timer::{Clock, Schedule};
use crate::trigger::{
    DLQ_HEADER_FUNCTION, DLQ_HEADER_OFFSET, DLQ_HEADER_PARTITION, DLQ_HEADER_PREFIX, DLQ_HEADER_TOPIC, Deployed,
    FunctionState, Processed, Shared, Stop, TriggerHandle, event_of, process, table_topic, write_outputs_now,
};

/// Settings of a [`FunctionService`].
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// The service keeps `functions/components/` (uploaded components by SHA-256) and
    /// `functions/compiled/` (the runtime's precompiled artifacts) here.
    pub data_dir: PathBuf,
    /// Instances alive at once across all functions (the runtime's pool slots).
    pub concurrent_instances_max: u32,
    /// Fsync outputs before committing the positions of their inputs, so a crash cannot
    /// lose an output whose input is committed. Turn off only for benchmarks.
    pub sync_outputs: bool,
    /// Create a missing output topic (with [`AUTO_CREATED_TOPIC_PARTITIONS`]) instead of
    /// failing the invocation.
    pub auto_create_output_topics: bool,
    /// The time timer triggers fire by: the system clock, or a test's.
    pub clock: Clock,
}

impl ServiceConfig {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            concurrent_instances_max: CONCURRENT_INSTANCES_MAX,
            sync_outputs: true,
            auto_create_output_topics: false,
            clock: Clock::system(),
        }
    }
}

/// Why a service operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServiceError {
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error(transparent)]
    Deploy(#[from] DeployError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("event log: {0}")]
    Log(#[from] LogFailure),
    #[error("function {0} does not exist")]
    NotFound(String),
    #[error(transparent)]
    Endpoint(#[from] EndpointError),
    #[error("{field} is invalid: {reason}")]
    InvalidConfig { field: &'static str, reason: String },
    #[error("function {name} is not loaded: {reason} (deploy it again)")]
    NotLoaded { name: String, reason: String },
    #[error(transparent)]
    Invoke(#[from] InvokeError),
    #[error("cannot write the outputs: {0}")]
    Output(String),
    #[error("cannot start the trigger of function {name}: {source}")]
    Thread { name: String, source: std::io::Error },
    /// An HTTP request for a paused function (HTTP 503).
    #[error("function {0} is paused (resume it to serve requests)")]
    Paused(String),
    /// An HTTP request for a function whose component does not export `handle-http`
    /// (HTTP 404 or 405 at the REST layer: there is no HTTP route).
    #[error("function {0} does not serve HTTP: its component does not export handle-http")]
    NotHttp(String),
}

/// Whether a function runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum FunctionStatus {
    /// Deployed and (if it has a trigger) consuming.
    Running,
    Paused,
    /// Its stored component could not be loaded at start.
    Failed {
        reason: String,
    },
}

/// What `describe` and `list` report about a function.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FunctionInfo {
    pub spec: FunctionSpec,
    pub status: FunctionStatus,
    pub metrics: MetricsSnapshot,
}

/// What a dead-letter replay did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReplayReport {
    /// Dead letters of the function run through its current version.
    pub replayed: u64,
    /// Of those, the ones that failed again (appended to the dead-letter topic anew).
    pub dead_lettered_again: u64,
}

struct Entry {
    state: Arc<FunctionState>,
    trigger: Mutex<Option<TriggerHandle>>,
    /// Serializes replays of the function's dead letters.
    replay: Mutex<()>,
}

/// Deployed functions, their triggers and their durable registry.
pub struct FunctionService {
    runtime: Runtime,
    engine: Arc<Engine>,
    shared: Arc<Shared>,
    store: ComponentStore,
    functions: RwLock<BTreeMap<String, Arc<Entry>>>,
    /// Serializes deploy, pause, resume and delete.
    admin: Mutex<()>,
}

impl FunctionService {
    /// Opens the service: creates the internal topics, replays the registry, loads every
    /// function's component and starts the triggers of those not paused. A function whose
    /// component cannot be loaded is kept with status `Failed`.
    pub fn open(config: ServiceConfig, log: Arc<dyn EventLog>, engine: Arc<Engine>) -> Result<Self, ServiceError> {
        log.create_topic(FUNCTIONS_TOPIC, 1, true)?;
        log.create_topic(POSITIONS_TOPIC, 1, true)?;
        let functions_dir = config.data_dir.join("functions");
        let store = ComponentStore::open(&functions_dir.join("components"))?;
        let runtime = Runtime::new(RuntimeConfig {
            cache_dir: functions_dir.join("compiled"),
            concurrent_instances_max: config.concurrent_instances_max,
        })?;
        let positions = PositionStore::load(log.clone())?;
        let mut specs: BTreeMap<String, FunctionSpec> = BTreeMap::new();
        for record in read_all(log.as_ref(), FUNCTIONS_TOPIC, 0)? {
            let Some(name) = record.key.as_deref().and_then(|k| std::str::from_utf8(k).ok()) else { continue };
            match record.value.as_deref().map(serde_json::from_slice::<FunctionSpec>) {
                Some(Ok(spec)) => {
                    specs.insert(name.to_string(), spec);
                }
                None => {
                    specs.remove(name);
                }
                Some(Err(e)) => tracing::error!(function = name, error = %e, "skipping an unreadable function spec"),
            }
        }
        let shared = Arc::new(Shared {
            log,
            positions,
            sync_outputs: config.sync_outputs,
            auto_create_output_topics: config.auto_create_output_topics,
            round_robin: AtomicU32::new(0),
            clock: config.clock.clone(),
        });
        let service =
            Self { runtime, engine, shared, store, functions: RwLock::new(BTreeMap::new()), admin: Mutex::new(()) };
        for (name, spec) in specs {
            let host = Arc::new(EngineHost::new(service.engine.clone()));
            let function = match &spec.endpoint {
                Some(endpoint) => {
                    EndpointFunction::new(&name, endpoint.clone()).map(Handler::Endpoint).map_err(|e| e.to_string())
                }
                None => service
                    .store
                    .get(&spec.component_sha256)
                    .map_err(|e| e.to_string())
                    .and_then(|wasm| {
                        service.runtime.deploy(&name, &wasm, host.clone(), options(&spec)).map_err(|e| e.to_string())
                    })
                    .map(Handler::Component),
            }
            .map(Arc::new);
            if let Err(reason) = &function {
                tracing::error!(function = %name, %reason, "cannot load a deployed function");
                host.platform_log(Level::Error, format!("cannot load version {}: {reason}", spec.version));
            }
            let entry = service.new_entry(name.clone(), host, Deployed { spec, function });
            service.start_trigger(&entry)?;
            service.write_functions().insert(name, entry);
        }
        Ok(service)
    }

    /// Deploys `component` (`.wasm` or `.wat`) as `name`: validated and compiled, stored
    /// by hash, recorded in the registry, then started. Deploying an existing name swaps
    /// the new version in between batches and keeps the trigger's committed positions
    /// (and its paused state); a changed trigger, concurrency or batching restarts the
    /// trigger's threads from the committed positions.
    pub fn deploy(&self, name: &str, component: &[u8], config: FunctionConfig) -> Result<FunctionSpec, ServiceError> {
        self.check_config(name, &config)?;
        let _admin = self.admin.lock().unwrap_or_else(|e| e.into_inner());
        let existing = self.entry(name).ok();
        let host = match &existing {
            Some(entry) => entry.state.host.clone(),
            None => Arc::new(EngineHost::new(self.engine.clone())),
        };
        let deploy_options =
            DeployOptions { memory_bytes_max: config.memory_bytes_max, deadline_ms: config.deadline_ms };
        let function = self.runtime.deploy(name, component, host.clone(), deploy_options)?;
        if config.trigger == Trigger::Http && !function.is_http() {
            return Err(ServiceError::InvalidConfig {
                field: "trigger",
                reason: "an http trigger needs a component exporting handle-http (the http-function world); \
                         this one exports only handle"
                    .to_string(),
            });
        }
        let wasm = wat::parse_bytes(component).map_err(|e| DeployError::Wat(e.to_string()))?;
        let sha256 = self.store.put(&wasm)?;
        let what = format!("component {}", &sha256[..12]);
        self.install(name, existing, host, Handler::Component(function), sha256, None, &config, &what)
    }

    /// Deploys `name` as an HTTP-endpoint function: its trigger's batches are POSTed to
    /// `endpoint.url` as JSON (see [`EndpointFunction`]) with the same ordering, retries and
    /// dead letters as a component. Like [`deploy`](Self::deploy) otherwise: a new version
    /// (a component replaced by an endpoint, or the reverse) keeps the positions. The
    /// header values are stored in the registry topic and never shown
    /// ([`FunctionSpec::redacted`]).
    pub fn deploy_endpoint(
        &self,
        name: &str,
        endpoint: EndpointConfig,
        config: FunctionConfig,
    ) -> Result<FunctionSpec, ServiceError> {
        validate_name(name)?;
        self.check_config(name, &config)?;
        if config.trigger == Trigger::Http {
            return Err(ServiceError::InvalidConfig {
                field: "trigger",
                reason: "an endpoint function handles events; call its URL directly for HTTP".to_string(),
            });
        }
        let function = EndpointFunction::new(name, endpoint.clone())?;
        let what = format!("endpoint {}", function.url());
        let _admin = self.admin.lock().unwrap_or_else(|e| e.into_inner());
        let existing = self.entry(name).ok();
        let host = match &existing {
            Some(entry) => entry.state.host.clone(),
            None => Arc::new(EngineHost::new(self.engine.clone())),
        };
        self.install(name, existing, host, Handler::Endpoint(function), String::new(), Some(endpoint), &config, &what)
    }

    /// The checks of a deploy that need no component: the settings' bounds, the dead-letter
    /// topic, and the trigger (its table exists, its cron expression fires).
    fn check_config(&self, name: &str, config: &FunctionConfig) -> Result<(), ServiceError> {
        config.validate().map_err(|(field, reason)| ServiceError::InvalidConfig { field, reason })?;
        if let Some(topic) = &config.dead_letter_topic
            && topic.starts_with("__")
        {
            return Err(ServiceError::InvalidConfig {
                field: "dead_letter_topic",
                reason: format!("{topic} is an internal topic"),
            });
        }
        let dead_letter_topic = config.dead_letter_topic.clone().unwrap_or_else(|| format!("{name}-dlq"));
        let trigger_topic = match &config.trigger {
            Trigger::Topic { topic, .. } => Some(topic.clone()),
            Trigger::Table { table, .. } => {
                let topic = table_topic(&self.engine, table)
                    .map_err(|reason| ServiceError::InvalidConfig { field: "trigger", reason })?;
                Some(topic)
            }
            Trigger::Cron { expression } => {
                let schedule = Schedule::parse(expression)
                    .map_err(|reason| ServiceError::InvalidConfig { field: "trigger", reason })?;
                let now = self.shared.clock.now_ms();
                if schedule.next_after(now).is_none() {
                    return Err(ServiceError::InvalidConfig {
                        field: "trigger",
                        reason: format!("cron expression {expression:?} never fires after {now} ms"),
                    });
                }
                None
            }
            Trigger::None | Trigger::Http => None,
        };
        if let Some(topic) = trigger_topic
            && topic == dead_letter_topic
        {
            return Err(ServiceError::InvalidConfig {
                field: "dead_letter_topic",
                reason: format!("{topic} is also the trigger topic: failures would loop"),
            });
        }
        Ok(())
    }

    /// Records a new version in the registry and swaps it in (or starts a new function).
    /// Called with the admin lock held.
    #[allow(clippy::too_many_arguments)]
    fn install(
        &self,
        name: &str,
        existing: Option<Arc<Entry>>,
        host: Arc<EngineHost>,
        handler: Handler,
        sha256: String,
        endpoint: Option<EndpointConfig>,
        config: &FunctionConfig,
        what: &str,
    ) -> Result<FunctionSpec, ServiceError> {
        let previous = existing.as_ref().map(|e| e.state.current());
        let mut spec = FunctionSpec::new(
            name,
            sha256.clone(),
            config,
            previous.as_ref().map_or(1, |p| p.spec.version + 1),
            now_ms(),
        );
        spec.endpoint = endpoint;
        spec.paused = previous.as_ref().is_some_and(|p| p.spec.paused);
        self.write_spec(name, Some(&spec))?;
        let deployed = Deployed { spec: spec.clone(), function: Ok(Arc::new(handler)) };
        match (existing, previous) {
            (Some(entry), Some(previous)) => {
                let restart = !previous.spec.same_trigger_shape(&spec) || previous.function.is_err();
                if restart {
                    let mut trigger = entry.trigger.lock().unwrap_or_else(|e| e.into_inner());
                    if let Some(running) = trigger.take() {
                        running.stop();
                    }
                    *entry.state.deployed.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(deployed);
                    drop(trigger);
                    self.start_trigger(&entry)?;
                } else {
                    *entry.state.deployed.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(deployed);
                }
                if previous.spec.component_sha256 != sha256 {
                    self.remove_component_if_unused(&previous.spec.component_sha256);
                }
            }
            _ => {
                let entry = self.new_entry(name.to_string(), host.clone(), deployed);
                self.start_trigger(&entry)?;
                self.write_functions().insert(name.to_string(), entry);
            }
        }
        host.platform_log(Level::Info, format!("version {} deployed ({what}, trigger {})", spec.version, spec.trigger));
        Ok(spec)
    }

    /// Stops the function's trigger (committing what is done) and records it as paused.
    pub fn pause(&self, name: &str) -> Result<FunctionSpec, ServiceError> {
        self.set_paused(name, true)
    }

    /// Restarts a paused function's trigger from its committed positions.
    pub fn resume(&self, name: &str) -> Result<FunctionSpec, ServiceError> {
        self.set_paused(name, false)
    }

    fn set_paused(&self, name: &str, paused: bool) -> Result<FunctionSpec, ServiceError> {
        let _admin = self.admin.lock().unwrap_or_else(|e| e.into_inner());
        let entry = self.entry(name)?;
        let current = entry.state.current();
        if current.spec.paused == paused {
            return Ok(current.spec.clone());
        }
        let mut spec = current.spec.clone();
        spec.paused = paused;
        self.write_spec(name, Some(&spec))?;
        if paused && let Some(running) = entry.trigger.lock().unwrap_or_else(|e| e.into_inner()).take() {
            running.stop();
        }
        *entry.state.deployed.write().unwrap_or_else(|e| e.into_inner()) =
            Arc::new(Deployed { spec: spec.clone(), function: current.function.clone() });
        if !paused {
            self.start_trigger(&entry)?;
        }
        entry.state.host.platform_log(Level::Info, if paused { "paused" } else { "resumed" }.to_string());
        Ok(spec)
    }

    /// Stops the function and removes it from the registry with its positions. Its
    /// dead-letter topic stays.
    pub fn delete(&self, name: &str) -> Result<(), ServiceError> {
        let _admin = self.admin.lock().unwrap_or_else(|e| e.into_inner());
        let entry = self.entry(name)?;
        if let Some(running) = entry.trigger.lock().unwrap_or_else(|e| e.into_inner()).take() {
            running.stop();
        }
        self.write_spec(name, None)?;
        let forget = self.shared.positions.keys_of(name).into_iter().map(|k| (k, None)).collect();
        self.shared.positions.commit(forget)?;
        self.write_functions().remove(name);
        self.remove_component_if_unused(&entry.state.current().spec.component_sha256);
        Ok(())
    }

    /// Every function, by name.
    pub fn list(&self) -> Vec<FunctionInfo> {
        let entries: Vec<_> = self.read_functions().values().cloned().collect();
        entries.iter().map(|e| self.info(e)).collect()
    }

    /// A function's spec, status and metrics (with its trigger lag).
    pub fn describe(&self, name: &str) -> Result<FunctionInfo, ServiceError> {
        let entry = self.entry(name)?;
        Ok(self.info(&entry))
    }

    /// The function's kept log lines (its own and the service's about it) written at or
    /// after `since_ms`, oldest first. Follow a log by asking again with the last line's
    /// `at_ms` and skipping lines whose `seq` was seen.
    pub fn logs(&self, name: &str, since_ms: i64) -> Result<Vec<LogLine>, ServiceError> {
        Ok(self.entry(name)?.state.host.logs(since_ms, 0))
    }

    /// Runs the current version on `events` once (no trigger, no retries) and returns the
    /// outputs without writing them.
    pub fn invoke(&self, name: &str, events: &[Event]) -> Result<Vec<OutputEvent>, ServiceError> {
        let entry = self.entry(name)?;
        let deployed = entry.state.current();
        let function = match &deployed.function {
            Ok(function) => function,
            Err(reason) => return Err(ServiceError::NotLoaded { name: name.to_string(), reason: reason.clone() }),
        };
        let started = Instant::now();
        let result = function.invoke(events);
        entry.state.metrics.invoked(started.elapsed());
        if result.is_err() {
            Metrics::add(&entry.state.metrics.errors, 1);
        }
        Ok(result?)
    }

    /// Like [`invoke`](Self::invoke), then writes the outputs to their topics as a trigger
    /// would.
    pub fn invoke_and_write(&self, name: &str, events: &[Event]) -> Result<Vec<OutputEvent>, ServiceError> {
        let outputs = self.invoke(name, events)?;
        let written = write_outputs_now(&self.shared, &outputs).map_err(ServiceError::Output)?;
        Metrics::add(&self.entry(name)?.state.metrics.outputs, written);
        Ok(outputs)
    }

    /// Serves an HTTP request routed to function `name` (`/fn/NAME/...`; `request.path` is
    /// the part below the route, with its query string) with the current version's
    /// `handle-http`, in a fresh instance on the caller's thread (run it on a blocking
    /// thread from async code). Events the handler produced (`produce`) are written to their
    /// topics as a trigger's outputs are, before the response is returned; no retries.
    ///
    /// Any function whose component exports `handle-http` serves requests, whatever its
    /// trigger (`http`, or a topic function that also answers HTTP). Counted in the
    /// function's metrics as an invocation (with its duration, and as an error if it fails).
    ///
    /// Errors, for the REST layer to map to a status:
    /// - [`ServiceError::NotFound`]: no such function (404);
    /// - [`ServiceError::Paused`]: the function is paused (503);
    /// - [`ServiceError::NotHttp`]: its component does not export `handle-http` (404);
    /// - [`ServiceError::NotLoaded`]: its stored component failed to load (503);
    /// - [`ServiceError::Invoke`] with [`InvokeError::Timeout`]: past its deadline (504);
    ///   with any other [`InvokeError`] (trap, out of memory, the handler's own error,
    ///   limits, no free instance): 500;
    /// - [`ServiceError::Output`]: the produced events could not be written (500).
    pub fn handle_http(&self, name: &str, request: HttpRequest) -> Result<HttpResponse, ServiceError> {
        let entry = self.entry(name)?;
        let deployed = entry.state.current();
        if deployed.spec.paused {
            return Err(ServiceError::Paused(name.to_string()));
        }
        let function = match &deployed.function {
            Ok(function) => function,
            Err(reason) => return Err(ServiceError::NotLoaded { name: name.to_string(), reason: reason.clone() }),
        };
        let Some(function) = function.component().filter(|f| f.is_http()) else {
            return Err(ServiceError::NotHttp(name.to_string()));
        };
        let metrics = &entry.state.metrics;
        let started = Instant::now();
        let result = function.invoke_http(&request);
        metrics.invoked(started.elapsed());
        let outcome = match result {
            Ok(outcome) => outcome,
            Err(InvokeError::NotHttp(_)) => return Err(ServiceError::NotHttp(name.to_string())),
            Err(e) => {
                Metrics::add(&metrics.errors, 1);
                return Err(e.into());
            }
        };
        match write_outputs_now(&self.shared, &outcome.produced) {
            Ok(written) => Metrics::add(&metrics.outputs, written),
            Err(e) => {
                Metrics::add(&metrics.errors, 1);
                entry.state.host.platform_log(Level::Warn, format!("an HTTP request's events were not written: {e}"));
                return Err(ServiceError::Output(e));
            }
        }
        Ok(outcome.response)
    }

    /// Runs the function's dead letters written so far, in order, through its current
    /// version (after a fix was deployed, say), with the usual retries; those that fail
    /// again are dead-lettered anew. A replay position per dead-letter partition is
    /// committed as it goes, so no dead letter is replayed twice by later calls.
    pub fn replay_dead_letters(&self, name: &str) -> Result<ReplayReport, ServiceError> {
        let entry = self.entry(name)?;
        let _replay = entry.replay.lock().unwrap_or_else(|e| e.into_inner());
        let deployed = entry.state.current();
        if let Err(reason) = &deployed.function {
            return Err(ServiceError::NotLoaded { name: name.to_string(), reason: reason.clone() });
        }
        let topic = deployed.spec.dead_letter_topic.clone();
        let batch_size = deployed.spec.batch_size.max(1) as usize;
        drop(deployed);
        let log = self.shared.log.as_ref();
        let mut report = ReplayReport::default();
        let Some(partitions) = log.partitions(&topic) else { return Ok(report) };
        let never = Stop::default();
        for partition in 0..partitions {
            let key = replay_key(name, partition);
            let (log_start, end) = log.offsets(&topic, partition)?;
            let mut from = self.shared.positions.get(&key, &topic).unwrap_or(log_start).max(log_start);
            while from < end {
                let batch = log.read(&topic, partition, from, TRIGGER_READ_BYTES_MAX)?;
                if batch.next_offset <= from {
                    break;
                }
                let events: Vec<Event> = batch
                    .records
                    .into_iter()
                    .filter(|r| r.offset < end)
                    .filter_map(|r| dead_letter_event(name, &topic, r))
                    .collect();
                for chunk in events.chunks(batch_size) {
                    if let Processed::Done { dead_lettered } = process(&self.shared, &entry.state, chunk, &never) {
                        report.replayed += chunk.len() as u64;
                        report.dead_lettered_again += dead_lettered as u64;
                    }
                }
                let position = batch.next_offset.min(end);
                self.shared
                    .positions
                    .commit(vec![(key.clone(), Some(Position { topic: topic.clone(), offset: position }))])?;
                from = position;
            }
        }
        entry.state.host.platform_log(
            Level::Info,
            format!("replayed {} dead letters, {} failed again", report.replayed, report.dead_lettered_again),
        );
        Ok(report)
    }

    /// Stops every trigger, committing what is done. Also done on drop.
    pub fn shutdown(&self) {
        let entries: Vec<_> = self.read_functions().values().cloned().collect();
        for entry in entries {
            if let Some(running) = entry.trigger.lock().unwrap_or_else(|e| e.into_inner()).take() {
                running.stop();
            }
        }
    }

    /// The runtime functions run on (for `runnel fn test`-style local use and benchmarks).
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    fn new_entry(&self, name: String, host: Arc<EngineHost>, deployed: Deployed) -> Arc<Entry> {
        Arc::new(Entry {
            state: Arc::new(FunctionState {
                name,
                host,
                metrics: Metrics::default(),
                deployed: RwLock::new(Arc::new(deployed)),
            }),
            trigger: Mutex::new(None),
            replay: Mutex::new(()),
        })
    }

    /// Starts the entry's trigger unless it is paused, not loaded, or already running.
    fn start_trigger(&self, entry: &Entry) -> Result<(), ServiceError> {
        let deployed = entry.state.current();
        if deployed.spec.paused || deployed.function.is_err() {
            return Ok(());
        }
        let mut trigger = entry.trigger.lock().unwrap_or_else(|e| e.into_inner());
        if trigger.is_none() {
            *trigger = TriggerHandle::start(self.shared.clone(), entry.state.clone(), &deployed.spec, &self.engine)
                .map_err(|source| ServiceError::Thread { name: entry.state.name.clone(), source })?;
        }
        Ok(())
    }

    fn entry(&self, name: &str) -> Result<Arc<Entry>, ServiceError> {
        self.read_functions().get(name).cloned().ok_or_else(|| ServiceError::NotFound(name.to_string()))
    }

    fn read_functions(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Arc<Entry>>> {
        self.functions.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write_functions(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Arc<Entry>>> {
        self.functions.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes a spec (or a tombstone) to the registry topic, fsynced.
    fn write_spec(&self, name: &str, spec: Option<&FunctionSpec>) -> Result<(), ServiceError> {
        let value = match spec {
            Some(spec) => {
                Some(Bytes::from(serde_json::to_vec(spec).map_err(|e| ServiceError::Log(LogFailure(e.to_string())))?))
            }
            None => None,
        };
        let record = OutRecord {
            key: Some(Bytes::from(name.as_bytes().to_vec())),
            value,
            headers: Vec::new(),
            timestamp: now_ms(),
        };
        self.shared.log.append_atomic(FUNCTIONS_TOPIC, 0, &[record])?;
        Ok(())
    }

    fn remove_component_if_unused(&self, sha256: &str) {
        if sha256.is_empty() {
            return; // an endpoint function has no component
        }
        let used = self.read_functions().values().any(|e| e.state.current().spec.component_sha256 == sha256);
        if !used {
            self.store.remove(sha256);
        }
    }

    fn info(&self, entry: &Entry) -> FunctionInfo {
        let deployed = entry.state.current();
        let status = match (&deployed.function, deployed.spec.paused) {
            (Err(reason), _) => FunctionStatus::Failed { reason: reason.clone() },
            (Ok(_), true) => FunctionStatus::Paused,
            (Ok(_), false) => FunctionStatus::Running,
        };
        let lag = self.lag(&deployed.spec);
        FunctionInfo { spec: deployed.spec.clone(), status, metrics: entry.state.metrics.snapshot(lag) }
    }

    /// End offset minus committed position, per partition of the trigger topic (for a
    /// table trigger, the table's topic). None for other triggers.
    fn lag(&self, spec: &FunctionSpec) -> Vec<PartitionLag> {
        let (topic, start) = match &spec.trigger {
            Trigger::Topic { topic, start } => (topic.clone(), start),
            Trigger::Table { table, start } => match table_topic(&self.engine, table) {
                Ok(topic) => (topic, start),
                Err(_) => return Vec::new(),
            },
            Trigger::None | Trigger::Cron { .. } | Trigger::Http => return Vec::new(),
        };
        let topic = topic.as_str();
        let log = self.shared.log.as_ref();
        let partitions = log.partitions(topic).unwrap_or(0);
        (0..partitions)
            .filter_map(|partition| {
                let (log_start, end_offset) = log.offsets(topic, partition).ok()?;
                let committed = match self.shared.positions.get(&trigger_key(&spec.name, partition), topic) {
                    Some(offset) => offset,
                    None => match start {
                        StartPosition::Earliest => log_start,
                        StartPosition::Latest => end_offset,
                        StartPosition::Timestamp { ms } => log.offset_for_time(topic, partition, *ms).ok()?,
                    },
                };
                let lag = u64::try_from(end_offset - committed).unwrap_or(0);
                Some(PartitionLag { partition, committed, end_offset, lag })
            })
            .collect()
    }
}

impl Drop for FunctionService {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn options(spec: &FunctionSpec) -> DeployOptions {
    DeployOptions { memory_bytes_max: spec.memory_bytes_max, deadline_ms: spec.deadline_ms }
}

/// The event a dead letter of function `name` was made from (its original topic,
/// partition and offset; the service's headers removed), or `None` for another
/// function's dead letter.
fn dead_letter_event(name: &str, dead_letter_topic: &str, record: LogRecord) -> Option<Event> {
    let header = |key: &str| {
        record
            .headers
            .iter()
            .rev()
            .find(|h| h.key == key)
            .and_then(|h| h.value.as_deref())
            .and_then(|v| std::str::from_utf8(v).ok())
            .map(str::to_string)
    };
    if header(DLQ_HEADER_FUNCTION).as_deref() != Some(name) {
        return None;
    }
    let topic = header(DLQ_HEADER_TOPIC);
    let partition = header(DLQ_HEADER_PARTITION).and_then(|p| p.parse().ok());
    let offset = header(DLQ_HEADER_OFFSET).and_then(|o| o.parse().ok());
    let mut event = event_of(dead_letter_topic, record);
    event.topic = topic.unwrap_or(event.topic);
    event.partition = partition.unwrap_or(event.partition);
    event.offset = offset.unwrap_or(event.offset);
    event.headers.retain(|h| !h.key.starts_with(DLQ_HEADER_PREFIX));
    Some(event)
}
