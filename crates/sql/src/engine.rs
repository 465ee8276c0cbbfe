//! The SQL engine: executes statements against the catalog of streams and tables, runs
//! persistent queries, push queries and table materializations, and keeps its definitions
//! durably in a command topic, as ksqlDB keeps its command topic, so that a restart replays them
//! and every persistent query resumes from its committed positions (at least once).
//!
//! Internal topics: `__runnel_sql_commands` (every successful DDL statement, in order),
//! `__runnel_sql_offsets` (compacted: each persistent query's position per source partition)
//! and `__runnel_processing_log` (records that could not be read or evaluated, readable as the
//! stream `KSQL_PROCESSING_LOG`). Their names start with two underscores, so Kafka clients see
//! them as internal and cannot write to them.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::ast::{
    CreateAsSelect, CreateSource, Emit, ExplainTarget, Expr, Literal, Query, ShowKind, SourceKind, Statement,
};
use crate::catalog::{DEFAULT_PARTITIONS, SourceDesc, SourceOptions, SqlError, conform, describe_create, sql_err};
use crate::eventlog::{EventLog, LogRecord, OutRecord};
use crate::expr::{Scope, compile};
use crate::format::Serde;
use crate::functions::{FUNCTIONS, FunctionInfo};
use crate::parser::parse_statements;
use crate::plan::{Plan, Purpose, plan};
use crate::types::{Field, SqlType, quote_ident};
use crate::value::Value;

pub const COMMAND_TOPIC: &str = "__runnel_sql_commands";
pub const OFFSETS_TOPIC: &str = "__runnel_sql_offsets";
pub const PROCESSING_LOG_TOPIC: &str = "__runnel_processing_log";
pub const PROCESSING_LOG_STREAM: &str = "KSQL_PROCESSING_LOG";
/// Bytes read from a partition per read (materializations, PRINT, internal topics).
const READ_BYTES: usize = 1 << 20;
/// Bytes a stateless query reads per round, over all its source's partitions: larger rounds
/// mean fewer fsyncs per record (4 MiB per partition measured best for Nexmark q1).
const ROUND_BYTES: usize = 16 << 20;
/// Bounds of one partition's share of [`ROUND_BYTES`].
const ROUND_PARTITION_BYTES_MIN: usize = 256 << 10;
const ROUND_PARTITION_BYTES_MAX: usize = 4 << 20;

/// Bytes to read from each of `partitions` partitions in one round.
fn round_read_bytes(partitions: u32) -> usize {
    (ROUND_BYTES / partitions.max(1) as usize).clamp(ROUND_PARTITION_BYTES_MIN, ROUND_PARTITION_BYTES_MAX)
}
/// How long a query thread waits for new records before checking whether it was stopped.
const IDLE_WAIT: Duration = Duration::from_millis(200);
/// Rows a push query may have produced that its reader has not taken yet.
pub const PUSH_QUEUE_ROWS: usize = 10_000;
/// Most rows a pull query or a bounded PRINT returns.
pub const PULL_ROWS_MAX: usize = 100_000;
/// Most persistent queries at once.
pub const PERSISTENT_QUERIES_MAX: usize = 1_000;
/// Variable substitution: most bytes a statement may grow to.
const SUBSTITUTED_BYTES_MAX: usize = 1 << 20;

/// Session state of a client: properties (`SET`) and variables (`DEFINE`).
#[derive(Debug, Clone, Default)]
pub struct Session {
    pub properties: BTreeMap<String, String>,
    pub variables: BTreeMap<String, String>,
}

impl Session {
    fn earliest(&self) -> bool {
        self.properties.get("auto.offset.reset").is_some_and(|v| v.eq_ignore_ascii_case("earliest"))
    }

    /// Whether aggregations emit each changed row once per round (ksqlDB's record cache) rather
    /// than after every record: `cache.max.bytes.buffering` = 0 turns the cache off.
    fn cache(&self) -> bool {
        !["cache.max.bytes.buffering", "ksql.streams.cache.max.bytes.buffering"]
            .iter()
            .any(|k| self.properties.get(*k).is_some_and(|v| v.trim() == "0"))
    }
}

/// What a statement did or returned.
#[derive(Debug)]
pub enum Outcome {
    /// DDL and other commands: a status message (and the query started, if any).
    Status {
        message: String,
        query_id: Option<String>,
    },
    Sources {
        kind: SourceKind,
        sources: Vec<Arc<SourceDesc>>,
        extended: bool,
    },
    Topics(Vec<(String, u32)>),
    Queries(Vec<QueryInfo>),
    Properties(BTreeMap<String, String>),
    Variables(BTreeMap<String, String>),
    Functions(Vec<&'static FunctionInfo>),
    Function(&'static FunctionInfo),
    Source {
        source: Arc<SourceDesc>,
        extended: bool,
        readers: Vec<String>,
        writers: Vec<String>,
    },
    Query(QueryInfo),
    /// A finished result: pull queries, PRINT with LIMIT.
    Rows {
        columns: Vec<Field>,
        rows: Vec<Vec<Value>>,
    },
    /// A running push query or PRINT: rows arrive on the stream.
    Stream(PushStream),
}

/// What [`Engine::execute_each`] did: each statement's text and outcome, then the text and
/// error of the statement that failed, if one did.
pub type Executed = (Vec<(String, Outcome)>, Option<(String, SqlError)>);

/// A persistent query as SHOW QUERIES lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryInfo {
    pub id: String,
    pub statement: String,
    pub sink: Option<String>,
    pub sources: Vec<String>,
    pub state: String,
}

/// Rows of a push query as they arrive; dropping it stops the query.
#[derive(Debug)]
pub struct PushStream {
    pub id: String,
    pub columns: Vec<Field>,
    pub rows: mpsc::Receiver<Result<Vec<Value>, String>>,
    stop: Arc<AtomicBool>,
}

impl PushStream {
    /// A handle that stops the query from elsewhere (ksqlDB's `/close-query`).
    pub fn stopper(&self) -> Arc<AtomicBool> {
        self.stop.clone()
    }
}

impl Drop for PushStream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

struct RunningQuery {
    info: QueryInfo,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    failure: Arc<Mutex<Option<String>>>,
    /// Input records processed since it started.
    processed: Arc<AtomicU64>,
    /// Whether it keeps state in a changelog (aggregations, joins).
    stateful: bool,
    /// What it runs, to start it again (REPLAY).
    restart: Restart,
    /// Stateful queries: how their state was restored.
    restored: Arc<Mutex<Option<crate::runner::RestoreInfo>>>,
}

/// A persistent query's plan, sink and settings.
#[derive(Clone)]
struct Restart {
    plan: QueryPlan,
    sink: Arc<SourceDesc>,
    session: Session,
}

#[derive(Clone)]
enum QueryPlan {
    Stateless(Box<Plan>),
    Stateful(Box<crate::stateful::StatefulPlan>),
}

/// A table's current rows, kept by its materializer.
#[derive(Default)]
pub struct TableState {
    /// Key bytes -> full row (system, key, value and header columns).
    pub rows: RwLock<BTreeMap<Vec<u8>, Vec<Value>>>,
    stop: AtomicBool,
}

struct State {
    sources: BTreeMap<String, Arc<SourceDesc>>,
    queries: BTreeMap<String, RunningQuery>,
    tables: HashMap<String, (Arc<TableState>, Option<JoinHandle<()>>)>,
    /// Committed positions read at startup: query id -> partition -> next offset.
    committed: HashMap<String, HashMap<u32, i64>>,
}

pub struct Engine {
    log: Arc<dyn EventLog>,
    state: Mutex<State>,
    query_seq: AtomicU64,
    push_seq: AtomicU64,
    /// While replaying a stored CREATE ... AS SELECT or INSERT INTO: the id its query had.
    replay_query_id: Mutex<Option<String>>,
    /// Serializes statements that change the catalog (and their command-topic records).
    ddl: Mutex<()>,
    /// Where stateful queries keep their state snapshots (none: rebuilt from changelogs).
    state_dir: Option<std::path::PathBuf>,
}

fn commit_key(query: &str, partition: u32) -> String {
    format!("{query}/{partition}")
}

impl Engine {
    /// Opens the engine over `log`: creates the internal topics, then replays the command
    /// topic (definitions, persistent queries from their committed positions).
    pub fn open(log: Arc<dyn EventLog>) -> Result<Arc<Engine>, SqlError> {
        Engine::open_with_state(log, None)
    }

    /// Opens the engine with a directory for the local snapshots of stateful queries' state.
    pub fn open_with_state(
        log: Arc<dyn EventLog>,
        state_dir: Option<std::path::PathBuf>,
    ) -> Result<Arc<Engine>, SqlError> {
        if let Some(dir) = &state_dir {
            std::fs::create_dir_all(dir).map_err(|e| sql_err(format!("state directory {}: {e}", dir.display())))?;
        }
        let failure = |e: crate::eventlog::LogFailure| sql_err(format!("SQL engine internal topics: {e}"));
        log.create_topic(COMMAND_TOPIC, 1, false).map_err(failure)?;
        log.create_topic(OFFSETS_TOPIC, 1, true).map_err(failure)?;
        log.create_topic(PROCESSING_LOG_TOPIC, 1, false).map_err(failure)?;
        let engine = Arc::new(Engine {
            log: log.clone(),
            state: Mutex::new(State {
                sources: BTreeMap::new(),
                queries: BTreeMap::new(),
                tables: HashMap::new(),
                committed: HashMap::new(),
            }),
            query_seq: AtomicU64::new(0),
            push_seq: AtomicU64::new(0),
            replay_query_id: Mutex::new(None),
            ddl: Mutex::new(()),
            state_dir,
        });
        // Committed positions.
        let committed = read_commits(log.as_ref())?;
        engine.lock().committed = committed;
        // The processing log stream.
        let processing_log = format!(
            "CREATE STREAM {PROCESSING_LOG_STREAM} (LOGGER STRING, LEVEL STRING, TIME BIGINT, MESSAGE STRING) \
             WITH (KAFKA_TOPIC='{PROCESSING_LOG_TOPIC}', VALUE_FORMAT='JSON')"
        );
        engine.execute_replayed(&processing_log, &Session::default())?;
        // Replay the command topic.
        for r in read_all(log.as_ref(), COMMAND_TOPIC)? {
            let Some(value) = &r.value else { continue };
            let Ok(command) = serde_json::from_slice::<serde_json::Value>(value) else { continue };
            let statement = command["statement"].as_str().unwrap_or_default().to_string();
            let mut session = Session::default();
            if let Some(props) = command["properties"].as_object() {
                for (k, v) in props {
                    session.properties.insert(k.clone(), v.as_str().unwrap_or_default().to_string());
                }
            }
            if let Some(seq) = command["query_seq"].as_u64() {
                engine.query_seq.fetch_max(seq, Ordering::Relaxed);
            }
            *engine.replay_query_id.lock().unwrap_or_else(|e| e.into_inner()) =
                command["query_id"].as_str().map(str::to_string);
            if let Err(e) = engine.execute_replayed(&statement, &session) {
                tracing::warn!(%statement, error = %e, "a stored SQL statement no longer applies; skipped");
            }
        }
        Ok(engine)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn log(&self) -> &Arc<dyn EventLog> {
        &self.log
    }

    /// The source named `name`.
    pub fn source(&self, name: &str) -> Option<Arc<SourceDesc>> {
        self.lock().sources.get(name).cloned()
    }

    pub fn queries(&self) -> Vec<QueryInfo> {
        self.lock()
            .queries
            .values()
            .map(|q| {
                let mut info = q.info.clone();
                if let Some(f) = q.failure.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
                    info.state = format!("ERROR: {f}");
                }
                info
            })
            .collect()
    }

    /// Input records a persistent query has processed since it started (benchmarks, tests).
    pub fn query_processed(&self, id: &str) -> Option<u64> {
        self.lock().queries.get(id).map(|q| q.processed.load(Ordering::Relaxed))
    }

    /// A table's current row for a record key (the key's bytes as the table's topic carries
    /// them), as a JSON object of its key and value columns; `None` when the key has no row.
    /// Serverless functions read tables through this.
    pub fn table_get(&self, table: &str, key: &[u8]) -> Result<Option<serde_json::Value>, SqlError> {
        let (desc, state) = self.table_state(table)?;
        let keys = desc.key_serde().deserialize(Some(key)).map_err(|e| sql_err(format!("key of {table}: {e}")))?;
        let mut k = Vec::new();
        keys.iter().for_each(|v| v.key_bytes(&mut k));
        let rows = state.rows.read().unwrap_or_else(|e| e.into_inner());
        Ok(rows.get(&k).map(|row| table_row_json(&desc, row)))
    }

    /// Up to `limit` rows of a table whose record key starts with `prefix`, in key order, as
    /// (record key, JSON object) pairs.
    pub fn table_scan(
        &self,
        table: &str,
        prefix: &[u8],
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, serde_json::Value)>, SqlError> {
        let (desc, state) = self.table_state(table)?;
        let key_serde = desc.key_serde();
        let k = crate::catalog::SYSTEM_COLUMNS;
        let rows = state.rows.read().unwrap_or_else(|e| e.into_inner());
        let mut out = Vec::new();
        for row in rows.values() {
            if out.len() >= limit {
                break;
            }
            let key = key_serde.serialize(&row[k..k + desc.key_columns.len()]).unwrap_or_default();
            if key.starts_with(prefix) {
                out.push((key, table_row_json(&desc, row)));
            }
        }
        Ok(out)
    }

    fn table_state(&self, table: &str) -> Result<(Arc<SourceDesc>, Arc<TableState>), SqlError> {
        let name = if self.source(table).is_some() { table.to_string() } else { table.to_ascii_uppercase() };
        let desc = self.source(&name).ok_or_else(|| sql_err(format!("table {table} does not exist")))?;
        if desc.kind != SourceKind::Table {
            return Err(sql_err(format!("{table} is a stream, not a table")));
        }
        let state = self
            .lock()
            .tables
            .get(&name)
            .map(|(t, _)| t.clone())
            .ok_or_else(|| sql_err(format!("table {table} is not materialized")))?;
        Ok((desc, state))
    }

    /// How a stateful query's state was restored when it started (`None` until it is, and for
    /// stateless queries).
    pub fn query_restored(&self, id: &str) -> Option<crate::runner::RestoreInfo> {
        let q = self.lock().queries.get(id).map(|q| q.restored.clone())?;
        q.lock().map(|g| *g).unwrap_or_else(|e| *e.into_inner())
    }

    /// Stops every query thread (the log is shut down afterwards by its owner).
    pub fn shutdown(&self) {
        let (queries, tables) = {
            let mut st = self.lock();
            let queries: Vec<_> = std::mem::take(&mut st.queries).into_values().collect();
            let tables: Vec<_> = st.tables.drain().map(|(_, t)| t).collect();
            (queries, tables)
        };
        for mut q in queries {
            q.stop.store(true, Ordering::Relaxed);
            if let Some(t) = q.thread.take() {
                let _ = t.join();
            }
        }
        for (table, thread) in tables {
            table.stop.store(true, Ordering::Relaxed);
            if let Some(t) = thread {
                let _ = t.join();
            }
        }
    }

    /// Executes every statement of `sql` in order, stopping at the first error.
    pub fn execute(self: &Arc<Self>, sql: &str, session: &mut Session) -> Result<Vec<Outcome>, SqlError> {
        let text = substitute(sql, &session.variables)?;
        let statements = parse_statements(&text).map_err(|e| sql_err(e.message))?;
        let texts = split_statement_texts(&text, statements.len());
        let mut out = Vec::with_capacity(statements.len());
        for (statement, text) in statements.into_iter().zip(texts) {
            out.push(self.execute_one(statement, &text, session, false)?);
        }
        Ok(out)
    }

    /// Executes the statements of `sql` one by one, returning each one's text and outcome,
    /// and the text and error of the first that fails (the later ones are not run), as
    /// ksqlDB's `/ksql` endpoint reports them.
    pub fn execute_each(self: &Arc<Self>, sql: &str, session: &mut Session) -> Executed {
        let text = match substitute(sql, &session.variables) {
            Ok(t) => t,
            Err(e) => return (Vec::new(), Some((sql.to_string(), e))),
        };
        let statements = match parse_statements(&text) {
            Ok(s) => s,
            Err(e) => return (Vec::new(), Some((text, sql_err(e.message)))),
        };
        let texts = split_statement_texts(&text, statements.len());
        let mut done = Vec::with_capacity(statements.len());
        for (statement, text) in statements.into_iter().zip(texts) {
            match self.execute_one(statement, &text, session, false) {
                Ok(outcome) => done.push((text, outcome)),
                Err(e) => return (done, Some((text, e))),
            }
        }
        (done, None)
    }

    /// Inserts one row given as a JSON object of column values (ksqlDB's `/inserts-stream`).
    pub fn insert_json(&self, target: &str, row: &serde_json::Map<String, serde_json::Value>) -> Result<(), SqlError> {
        let sink = self.source(target).ok_or_else(|| sql_err(format!("{} does not exist", quote_ident(target))))?;
        let lookup = |name: &str| {
            row.get(name).or_else(|| row.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v))
        };
        for name in row.keys() {
            let known = sink.key_columns.iter().chain(&sink.value_columns).any(|f| f.name.eq_ignore_ascii_case(name))
                || name.eq_ignore_ascii_case("ROWTIME");
            if !known {
                return Err(sql_err(format!("{} has no column {name}", quote_ident(target))));
            }
        }
        let read = |fields: &[Field]| -> Result<Vec<Value>, SqlError> {
            fields
                .iter()
                .map(|f| match lookup(&f.name) {
                    None => Ok(Value::Null),
                    Some(j) => {
                        crate::format::from_json(j, &f.ty).map_err(|e| sql_err(format!("column {}: {e}", f.name)))
                    }
                })
                .collect()
        };
        let keys = read(&sink.key_columns)?;
        let values = read(&sink.value_columns)?;
        let timestamp = lookup("ROWTIME").and_then(|v| v.as_i64()).unwrap_or_else(crate::functions::now_ms);
        let (key_serde, value_serde) = (sink.key_serde(), sink.value_serde());
        let record = sink.encode(&key_serde, &value_serde, &keys, Some(&values), timestamp);
        let partition = partition_of(record.key.as_deref(), sink.partitions, 0);
        self.log.append(&sink.topic, partition, &[record], true).map(|_| ()).map_err(|e| sql_err(e.0))
    }

    fn execute_replayed(self: &Arc<Self>, sql: &str, session: &Session) -> Result<(), SqlError> {
        let statements = parse_statements(sql).map_err(|e| sql_err(e.message))?;
        let mut session = session.clone();
        for s in statements {
            self.execute_one(s, sql, &mut session, true)?;
        }
        Ok(())
    }

    fn record_command(&self, statement: &str, session: &Session, replay: bool) -> Result<(), SqlError> {
        self.record_query_command(statement, session, replay, None)
    }

    fn record_query_command(
        &self,
        statement: &str,
        session: &Session,
        replay: bool,
        query_id: Option<&str>,
    ) -> Result<(), SqlError> {
        if replay {
            return Ok(());
        }
        let command = serde_json::json!({
            "statement": statement,
            "properties": session.properties,
            "query_seq": self.query_seq.load(Ordering::Relaxed),
            "query_id": query_id,
        });
        let record = OutRecord {
            key: None,
            value: Some(command.to_string().into_bytes().into()),
            headers: Vec::new(),
            timestamp: crate::functions::now_ms(),
        };
        self.log
            .append(COMMAND_TOPIC, 0, &[record], true)
            .map(|_| ())
            .map_err(|e| sql_err(format!("could not store the statement in {COMMAND_TOPIC}: {e}")))
    }

    fn execute_one(
        self: &Arc<Self>,
        statement: Statement,
        text: &str,
        session: &mut Session,
        replay: bool,
    ) -> Result<Outcome, SqlError> {
        match statement {
            Statement::CreateSource(c) => {
                let _ddl = self.ddl.lock().unwrap_or_else(|e| e.into_inner());
                self.create_source(&c, text, session, replay)
            }
            Statement::CreateAsSelect(c) => {
                let _ddl = self.ddl.lock().unwrap_or_else(|e| e.into_inner());
                self.create_as_select(&c, text, session, replay)
            }
            Statement::InsertInto { target, query } => {
                let _ddl = self.ddl.lock().unwrap_or_else(|e| e.into_inner());
                self.insert_into(&target, &query, text, session, replay)
            }
            Statement::InsertValues { target, columns, values } => {
                self.insert_values(&target, columns.as_deref(), &values)
            }
            Statement::Query(q) => self.select(&q, session),
            Statement::Show { what, extended } => Ok(match what {
                ShowKind::Streams | ShowKind::Tables => {
                    let kind = if what == ShowKind::Streams { SourceKind::Stream } else { SourceKind::Table };
                    let sources = self.lock().sources.values().filter(|s| s.kind == kind).cloned().collect();
                    Outcome::Sources { kind, sources, extended }
                }
                ShowKind::Topics => {
                    Outcome::Topics(self.log.topics().into_iter().filter(|(n, _)| !n.starts_with('_')).collect())
                }
                ShowKind::Queries => Outcome::Queries(self.queries()),
                ShowKind::Properties => {
                    let mut props = default_properties();
                    props.extend(session.properties.clone());
                    Outcome::Properties(props)
                }
                ShowKind::Functions => Outcome::Functions(FUNCTIONS.iter().collect()),
                ShowKind::Variables => Outcome::Variables(session.variables.clone()),
            }),
            Statement::Describe { name, extended } => {
                let source =
                    self.source(&name).ok_or_else(|| sql_err(format!("{} does not exist", quote_ident(&name))))?;
                let queries = self.queries();
                let readers = queries.iter().filter(|q| q.sources.contains(&name)).map(|q| q.id.clone()).collect();
                let writers =
                    queries.iter().filter(|q| q.sink.as_deref() == Some(&name)).map(|q| q.id.clone()).collect();
                Ok(Outcome::Source { source, extended, readers, writers })
            }
            Statement::DescribeFunction { name } => crate::functions::info(&name)
                .map(Outcome::Function)
                .ok_or_else(|| sql_err(format!("function {name} does not exist: SHOW FUNCTIONS lists them"))),
            Statement::Explain(ExplainTarget::QueryId(id)) => self
                .queries()
                .into_iter()
                .find(|q| q.id == id)
                .map(Outcome::Query)
                .ok_or_else(|| sql_err(format!("query {id} does not exist"))),
            Statement::Explain(ExplainTarget::Statement(s)) => {
                let Statement::Query(q) = *s else {
                    return Err(sql_err("EXPLAIN takes a query id or a SELECT"));
                };
                let lookup = |n: &str| self.source(n);
                let p = plan(&q, &lookup, Purpose::Transient)?;
                Ok(Outcome::Query(QueryInfo {
                    id: String::new(),
                    statement: text.to_string(),
                    sink: None,
                    sources: vec![p.source.name.clone()],
                    state: format!(
                        "columns: {}",
                        p.fields()
                            .iter()
                            .map(|f| format!("{} {}", quote_ident(&f.name), f.ty))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                }))
            }
            Statement::Drop { kind, if_exists, name, delete_topic } => {
                let _ddl = self.ddl.lock().unwrap_or_else(|e| e.into_inner());
                self.drop_source(kind, if_exists, &name, delete_topic, text, session, replay)
            }
            Statement::Terminate { query_id } => {
                let _ddl = self.ddl.lock().unwrap_or_else(|e| e.into_inner());
                let ids: Vec<String> = match &query_id {
                    Some(id) => vec![id.clone()],
                    None => self.lock().queries.keys().cloned().collect(),
                };
                for id in &ids {
                    let q = self.lock().queries.remove(id);
                    match q {
                        Some(mut q) => {
                            q.stop.store(true, Ordering::Relaxed);
                            if let Some(t) = q.thread.take() {
                                let _ = t.join();
                            }
                            if q.stateful {
                                // Its state dies with it, as ksqlDB deletes a terminated
                                // query's internal topics.
                                crate::store::QueryStore::destroy(self.log.as_ref(), id, self.state_dir.as_deref())
                                    .map_err(|e| sql_err(e.0))?;
                            }
                        }
                        None if replay => {}
                        None => return Err(sql_err(format!("query {id} does not exist"))),
                    }
                }
                self.record_command(text, session, replay)?;
                Ok(Outcome::Status { message: format!("Query terminated: {}", ids.join(", ")), query_id: None })
            }
            Statement::Replay { query_id, from } => {
                let _ddl = self.ddl.lock().unwrap_or_else(|e| e.into_inner());
                self.replay_query(&query_id, &from)
            }
            Statement::Print { topic, from_beginning, interval, limit } => {
                self.print(&topic, from_beginning, interval, limit)
            }
            Statement::Set { property, value } => {
                session.properties.insert(property.clone(), value.clone());
                Ok(Outcome::Status {
                    message: format!("Successfully changed local property '{property}' to '{value}'."),
                    query_id: None,
                })
            }
            Statement::Unset { property } => {
                session.properties.remove(&property);
                Ok(Outcome::Status {
                    message: format!("Successfully unset local property '{property}'."),
                    query_id: None,
                })
            }
            Statement::Define { name, value } => {
                session.variables.insert(name, value);
                Ok(Outcome::Status { message: String::new(), query_id: None })
            }
            Statement::Undefine { name } => {
                session.variables.remove(&name);
                Ok(Outcome::Status { message: String::new(), query_id: None })
            }
        }
    }

    fn create_source(
        self: &Arc<Self>,
        c: &CreateSource,
        text: &str,
        session: &Session,
        replay: bool,
    ) -> Result<Outcome, SqlError> {
        if let Some(existing) = self.source(&c.name) {
            if c.if_not_exists || replay {
                return Ok(Outcome::Status {
                    message: format!("{} {} already exists", existing.kind, c.name),
                    query_id: None,
                });
            }
            if !c.or_replace {
                return Err(sql_err(format!(
                    "Cannot add {} {}: A {} with the same name already exists",
                    c.kind.to_string().to_lowercase(),
                    quote_ident(&c.name),
                    existing.kind.to_string().to_lowercase()
                )));
            }
            if existing.kind != c.kind {
                return Err(sql_err(format!("{} is a {}, not a {}", c.name, existing.kind, c.kind)));
            }
        }
        let topic = match c.properties.get("KAFKA_TOPIC") {
            Some(Literal::String(t)) => t.clone(),
            _ => String::new(),
        };
        let desc = describe_create(c, text, self.log.partitions(&topic))?;
        if self.log.partitions(&desc.topic).is_none() {
            self.log
                .create_topic(&desc.topic, desc.partitions, c.kind == SourceKind::Table)
                .map_err(|e| sql_err(e.0))?;
        }
        self.record_command(text, session, replay)?;
        let desc = Arc::new(desc);
        self.register(desc.clone());
        Ok(Outcome::Status {
            message: format!("{} created", if c.kind == SourceKind::Stream { "Stream" } else { "Table" }),
            query_id: None,
        })
    }

    /// Adds a source to the catalog; a table starts being materialized.
    fn register(self: &Arc<Self>, desc: Arc<SourceDesc>) {
        let table = (desc.kind == SourceKind::Table).then(|| {
            let state = Arc::new(TableState::default());
            let thread = spawn_named(format!("sql-table-{}", desc.name), {
                let (engine, desc, state) = (Arc::downgrade(self), desc.clone(), state.clone());
                move || {
                    if let Some(engine) = engine.upgrade() {
                        let log = engine.log.clone();
                        drop(engine);
                        materialize(log.as_ref(), &desc, &state)
                    }
                }
            });
            (state, thread)
        });
        let mut st = self.lock();
        if let Some((old, _)) = st.tables.remove(&desc.name) {
            old.stop.store(true, Ordering::Relaxed);
        }
        if let Some(t) = table {
            st.tables.insert(desc.name.clone(), t);
        }
        st.sources.insert(desc.name.clone(), desc);
    }

    /// Checks that the sink of a CREATE ... AS SELECT can be serialized (its key and value
    /// formats carry its columns), then creates its topic, compacted for a table; an existing
    /// topic with the same partition count is fine.
    fn create_sink_topic(&self, sink: &SourceDesc) -> Result<(), SqlError> {
        sink.key_serde().validate("KEY").map_err(|e| sql_err(e.0))?;
        sink.value_serde().validate("VALUE").map_err(|e| sql_err(e.0))?;
        self.log.create_topic(&sink.topic, sink.partitions, sink.kind == SourceKind::Table).map_err(|e| sql_err(e.0))
    }

    /// Records the statement of persistent query `id` in the command topic (unless replaying) and
    /// adds its sink to the catalog as written by `id`; the caller then starts the query.
    fn register_sink(
        self: &Arc<Self>,
        mut sink: SourceDesc,
        id: &str,
        text: &str,
        session: &Session,
        replay: bool,
    ) -> Result<Arc<SourceDesc>, SqlError> {
        self.record_query_command(text, session, replay, Some(id))?;
        sink.written_by = Some(id.to_string());
        let sink = Arc::new(sink);
        self.register(sink.clone());
        Ok(sink)
    }

    fn create_as_select(
        self: &Arc<Self>,
        c: &CreateAsSelect,
        text: &str,
        session: &Session,
        replay: bool,
    ) -> Result<Outcome, SqlError> {
        if self.source(&c.name).is_some() {
            if c.if_not_exists
                || replay
                    && !c.or_replace
                    && self.lock().queries.values().any(|q| q.info.sink.as_deref() == Some(&c.name))
            {
                return Ok(Outcome::Status { message: format!("{} already exists", c.name), query_id: None });
            }
            if !c.or_replace && !replay {
                return Err(sql_err(format!(
                    "Cannot add {}: a source with the same name already exists",
                    quote_ident(&c.name)
                )));
            }
        }
        if crate::stateful::is_stateful(&c.query) {
            return self.create_stateful(c, text, session, replay);
        }
        if c.query.emit == Some(Emit::Final) {
            return Err(sql_err("EMIT FINAL needs a windowed aggregation"));
        }
        let lookup = |n: &str| self.source(n);
        let p = plan(&c.query, &lookup, Purpose::Persistent)?;
        if p.source.kind != c.kind {
            return Err(sql_err(format!(
                "CREATE {} AS SELECT reads a {}: {} {} from a {} needs GROUP BY (aggregations come with the second part of the SQL engine)",
                c.kind, p.source.kind, c.kind, c.name, p.source.kind
            )));
        }
        if self.lock().queries.len() >= crate::engine::PERSISTENT_QUERIES_MAX {
            return Err(sql_err(format!("at most {PERSISTENT_QUERIES_MAX} persistent queries")));
        }
        let options = SourceOptions::from_properties(&c.properties, Some(p.source.value_format))?;
        let topic = options.topic.clone().unwrap_or_else(|| c.name.clone());
        let partitions =
            options.partitions.or(self.log.partitions(&topic)).unwrap_or(p.source.partitions.max(DEFAULT_PARTITIONS));
        let key_format = if c.properties.contains_key("KEY_FORMAT") || c.properties.contains_key("FORMAT") {
            options.key_format
        } else {
            p.source.key_format
        };
        let sink = SourceDesc {
            name: c.name.clone(),
            kind: c.kind,
            topic,
            partitions,
            key_format,
            value_format: options.value_format,
            key_columns: p.key_fields(),
            value_columns: p.value_fields(),
            header_columns: Vec::new(),
            timestamp: None,
            wrap_single_value: options.wrap_single_value,
            value_delimiter: options.value_delimiter,
            statement: text.to_string(),
            written_by: None,
            window: None,
            row_ttl_ms: None,
        };
        if options.row_ttl_ms.is_some() {
            return Err(sql_err("ROW_TTL applies to source tables and aggregations (CREATE TABLE ... GROUP BY)"));
        }
        self.create_sink_topic(&sink)?;
        let prefix = if c.kind == SourceKind::Stream { "CSAS" } else { "CTAS" };
        // CREATE OR REPLACE: the running query writing the sink stops, and the new one takes its
        // id, so it continues from the old query's committed positions (as in ksqlDB).
        let replaced = if c.or_replace {
            let writer = self
                .lock()
                .queries
                .values()
                .find(|q| q.info.sink.as_deref() == Some(&c.name))
                .map(|q| q.info.id.clone());
            if let Some(old) = &writer {
                let running = self.lock().queries.remove(old);
                if let Some(mut q) = running {
                    q.stop.store(true, Ordering::Relaxed);
                    if let Some(t) = q.thread.take() {
                        let _ = t.join();
                    }
                }
            }
            writer
        } else {
            None
        };
        let id = match replaced {
            Some(old) => {
                // A replayed statement may carry this id as well: take it so it is not reused.
                self.replay_query_id.lock().unwrap_or_else(|e| e.into_inner()).take();
                old
            }
            None => self.next_query_id(prefix, &c.name),
        };
        let sink = self.register_sink(sink, &id, text, session, replay)?;
        self.start_persistent(id.clone(), text, p, sink, session);
        Ok(query_created(id))
    }

    fn insert_into(
        self: &Arc<Self>,
        target: &str,
        query: &Query,
        text: &str,
        session: &Session,
        replay: bool,
    ) -> Result<Outcome, SqlError> {
        let sink = self.source(target).ok_or_else(|| sql_err(format!("{} does not exist", quote_ident(target))))?;
        if sink.kind != SourceKind::Stream {
            return Err(sql_err(format!("INSERT INTO writes to streams; {target} is a table")));
        }
        let lookup = |n: &str| self.source(n);
        if crate::stateful::is_stateful(query) {
            let p = crate::stateful::plan_stateful(query, &lookup, Purpose::Persistent)?;
            if p.output != SourceKind::Stream {
                return Err(sql_err("INSERT INTO a stream needs a query that gives a stream; this one gives a table"));
            }
            check_sink_schema(&p.key_fields(), &p.value_fields(), &sink)?;
            let id = self.next_query_id("INSERTQUERY", target);
            self.record_query_command(text, session, replay, Some(&id))?;
            self.start_stateful(id.clone(), text, p, sink, session);
            return Ok(query_created(id));
        }
        let p = plan(query, &lookup, Purpose::Persistent)?;
        check_sink_schema(&p.key_fields(), &p.value_fields(), &sink)?;
        let id = self.next_query_id("INSERTQUERY", target);
        self.record_query_command(text, session, replay, Some(&id))?;
        self.start_persistent(id.clone(), text, p, sink, session);
        Ok(query_created(id))
    }

    /// CREATE STREAM|TABLE ... AS SELECT with a join or an aggregation.
    fn create_stateful(
        self: &Arc<Self>,
        c: &CreateAsSelect,
        text: &str,
        session: &Session,
        replay: bool,
    ) -> Result<Outcome, SqlError> {
        let lookup = |n: &str| self.source(n);
        let p = crate::stateful::plan_stateful(&c.query, &lookup, Purpose::Persistent)?;
        if p.output != c.kind {
            let why = if p.aggregate.is_some() {
                "an aggregation (GROUP BY) gives a table"
            } else if p.output == SourceKind::Table {
                "a join of tables gives a table"
            } else {
                "a join with a stream gives a stream"
            };
            return Err(sql_err(format!(
                "CREATE {} AS SELECT: {why}; use CREATE {} {} AS SELECT ...",
                c.kind, p.output, c.name
            )));
        }
        if c.or_replace && self.lock().queries.values().any(|q| q.info.sink.as_deref() == Some(&c.name)) {
            return Err(sql_err(format!(
                "CREATE OR REPLACE cannot change a running aggregation or join: TERMINATE its query and DROP {} first, or REPLAY it",
                c.name
            )));
        }
        if self.lock().queries.len() >= PERSISTENT_QUERIES_MAX {
            return Err(sql_err(format!("at most {PERSISTENT_QUERIES_MAX} persistent queries")));
        }
        let first = &p.inputs[0].source;
        let options = SourceOptions::from_properties(&c.properties, Some(first.value_format))?;
        let topic = options.topic.clone().unwrap_or_else(|| c.name.clone());
        let widest = p.inputs.iter().map(|i| i.source.partitions).max().unwrap_or(DEFAULT_PARTITIONS);
        let partitions = options.partitions.or(self.log.partitions(&topic)).unwrap_or(widest.max(DEFAULT_PARTITIONS));
        let key_fields = p.key_fields();
        let key_format = if c.properties.contains_key("KEY_FORMAT") || c.properties.contains_key("FORMAT") {
            options.key_format
        } else {
            // The first source's key format when it can carry the key; else JSON.
            let inherited = crate::format::Serde::new(first.key_format, key_fields.clone());
            if inherited.validate("KEY").is_ok() { first.key_format } else { crate::format::Format::Json }
        };
        let window = p.window().map(|w| w.window);
        if window.is_some()
            && let Some(f) = p.value_fields().iter().find(|f| f.name == "WINDOWSTART" || f.name == "WINDOWEND")
        {
            return Err(sql_err(format!(
                "{} is a column of every windowed table already: give the selected one another name with AS",
                f.name
            )));
        }
        let sink = SourceDesc {
            name: c.name.clone(),
            kind: c.kind,
            topic,
            partitions,
            key_format,
            value_format: options.value_format,
            key_columns: key_fields,
            value_columns: p.value_fields(),
            header_columns: Vec::new(),
            timestamp: None,
            wrap_single_value: options.wrap_single_value,
            value_delimiter: options.value_delimiter,
            statement: text.to_string(),
            written_by: None,
            window,
            row_ttl_ms: options.row_ttl_ms,
        };
        if options.row_ttl_ms.is_some() && (p.aggregate.is_none() || window.is_some()) {
            return Err(sql_err(
                "ROW_TTL applies to source tables and non-windowed aggregations (windows have RETENTION)",
            ));
        }
        let mut p = p;
        if let Some(agg) = p.aggregate.as_mut() {
            agg.row_ttl_ms = options.row_ttl_ms;
        }
        if c.kind == SourceKind::Table && sink.key_columns.is_empty() {
            return Err(sql_err("the table has no key column: include its key in the projection"));
        }
        self.create_sink_topic(&sink)?;
        let prefix = if c.kind == SourceKind::Stream { "CSAS" } else { "CTAS" };
        let id = self.next_query_id(prefix, &c.name);
        let sink = self.register_sink(sink, &id, text, session, replay)?;
        self.start_stateful(id.clone(), text, p, sink, session);
        Ok(query_created(id))
    }

    fn start_stateful(
        self: &Arc<Self>,
        id: String,
        text: &str,
        p: crate::stateful::StatefulPlan,
        sink: Arc<SourceDesc>,
        session: &Session,
    ) {
        let stop = Arc::new(AtomicBool::new(false));
        let failure = Arc::new(Mutex::new(None));
        let processed = Arc::new(AtomicU64::new(0));
        let restart =
            Restart { plan: QueryPlan::Stateful(Box::new(p.clone())), sink: sink.clone(), session: session.clone() };
        let info = QueryInfo {
            id: id.clone(),
            statement: text.to_string(),
            sink: Some(sink.name.clone()),
            sources: p.source_names(),
            state: "RUNNING".into(),
        };
        let earliest = session.earliest();
        let cache = session.cache();
        let restored = Arc::new(Mutex::new(None));
        let thread = spawn_named(format!("sql-{id}"), {
            let (log, stop, failure, id, processed, state_dir, restored) = (
                self.log.clone(),
                stop.clone(),
                failure.clone(),
                id.clone(),
                processed.clone(),
                self.state_dir.clone(),
                restored.clone(),
            );
            move || {
                let running = crate::runner::Running {
                    log: &log,
                    id: &id,
                    sink: &sink,
                    state_dir: state_dir.as_deref(),
                    earliest,
                    cache,
                    stop: &stop,
                    processed: &processed,
                    restored: &restored,
                };
                if let Err(e) = crate::runner::run_stateful(Arc::new(p), running) {
                    tracing::error!(query = %id, error = %e, "persistent query failed");
                    *failure.lock().unwrap_or_else(|e| e.into_inner()) = Some(e);
                }
            }
        });
        self.lock()
            .queries
            .insert(id, RunningQuery { info, stop, thread, failure, processed, stateful: true, restart, restored });
    }

    /// A push query with a join or an aggregation.
    fn select_stateful(self: &Arc<Self>, q: &Query, session: &Session) -> Result<Outcome, SqlError> {
        let lookup = |n: &str| self.source(n);
        let p = crate::stateful::plan_stateful(q, &lookup, Purpose::Transient)?;
        if q.emit.is_none() {
            if p.inputs.len() == 1 && p.aggregate.is_some() && p.inputs[0].source.kind == SourceKind::Table {
                return self.pull_aggregate(p, &q.order_by);
            }
            return Err(sql_err(
                "a join or aggregation over streams is a push query: add EMIT CHANGES (pull queries read tables; create one with CREATE TABLE ... AS SELECT)",
            ));
        }
        let id = format!("transient_{}_{}", p.inputs[0].source.name, self.push_seq.fetch_add(1, Ordering::Relaxed) + 1);
        let (tx, rx) = mpsc::sync_channel(PUSH_QUEUE_ROWS);
        let stop = Arc::new(AtomicBool::new(false));
        let columns = p.fields();
        let earliest = session.earliest();
        spawn_named(format!("sql-{id}"), {
            let (log, stop) = (self.log.clone(), stop.clone());
            move || {
                if let Err(e) = crate::runner::run_stateful_push(log.as_ref(), Arc::new(p), earliest, &tx, &stop) {
                    let _ = tx.send(Err(e));
                }
            }
        });
        Ok(Outcome::Stream(PushStream { id, columns, rows: rx, stop }))
    }

    /// REPLAY: stops a persistent query, moves its input positions back (or forward) and starts
    /// it again. An aggregation or join also starts from empty state, and a table it writes is
    /// cleared first (a tombstone per key), so the table is re-derived from history. The reset
    /// positions and state are durable before it restarts; the statement itself is not stored.
    fn replay_query(self: &Arc<Self>, id: &str, from: &crate::ast::ReplayFrom) -> Result<Outcome, SqlError> {
        use crate::ast::ReplayFrom;
        let Some(mut q) = self.lock().queries.remove(id) else {
            return Err(sql_err(format!("query {id} does not exist (SHOW QUERIES lists them)")));
        };
        q.stop.store(true, Ordering::Relaxed);
        if let Some(t) = q.thread.take() {
            let _ = t.join();
        }
        let restart = q.restart.clone();
        let sources: Vec<Arc<SourceDesc>> = match &restart.plan {
            QueryPlan::Stateless(p) => vec![p.source.clone()],
            QueryPlan::Stateful(p) => p.inputs.iter().map(|i| i.source.clone()).collect(),
        };
        let position = |source: &SourceDesc, partition: u32| -> Result<i64, SqlError> {
            let (start, end) = self.log.offsets(&source.topic, partition).map_err(|e| sql_err(e.0))?;
            Ok(match from {
                ReplayFrom::Beginning => start,
                ReplayFrom::Offset(n) => (*n as i64).clamp(start, end),
                ReplayFrom::TimestampMs(ms) => {
                    self.log.offset_for_time(&source.topic, partition, *ms as i64).map_err(|e| sql_err(e.0))?
                }
                ReplayFrom::Timestamp(text) => {
                    let ms = crate::functions::parse_iso_timestamp(text).ok_or_else(|| {
                        sql_err(format!(
                            "cannot read {text:?} as a timestamp: use ISO 8601, e.g. '2026-11-27T10:00:00Z'"
                        ))
                    })?;
                    self.log.offset_for_time(&source.topic, partition, ms).map_err(|e| sql_err(e.0))?
                }
            })
        };
        let text = q.info.statement.clone();
        let result = (|| -> Result<(), SqlError> {
            match &restart.plan {
                QueryPlan::Stateless(_) => {
                    let source = &sources[0];
                    let mut commits = Vec::new();
                    for partition in 0..source.partitions {
                        commits.push(OutRecord {
                            key: Some(commit_key(id, partition).into_bytes().into()),
                            value: Some(position(source, partition)?.to_string().into_bytes().into()),
                            headers: Vec::new(),
                            timestamp: crate::functions::now_ms(),
                        });
                    }
                    self.log.append(OFFSETS_TOPIC, 0, &commits, true).map_err(|e| sql_err(e.0))?;
                    self.lock().committed.remove(id);
                }
                QueryPlan::Stateful(p) => {
                    let sink = &restart.sink;
                    if sink.kind == SourceKind::Table {
                        self.clear_table(sink)?;
                    }
                    crate::store::QueryStore::destroy(self.log.as_ref(), id, self.state_dir.as_deref())
                        .map_err(|e| sql_err(e.0))?;
                    let mut checkpoint = crate::store::Checkpoint { stream_time: i64::MIN, ..Default::default() };
                    for (i, input) in p.inputs.iter().enumerate() {
                        for partition in 0..input.source.partitions {
                            checkpoint.positions.insert((i as u32, partition), position(&input.source, partition)?);
                        }
                    }
                    let (mut store, _) =
                        crate::store::QueryStore::open(self.log.clone(), id, self.state_dir.as_deref())
                            .map_err(|e| sql_err(e.0))?;
                    store.commit(Vec::new(), &checkpoint).map_err(|e| sql_err(e.0))?;
                }
            }
            Ok(())
        })();
        // Started again whatever happened, so a failed REPLAY leaves the query running.
        match restart.plan {
            QueryPlan::Stateless(p) => self.start_persistent(id.to_string(), &text, *p, restart.sink, &restart.session),
            QueryPlan::Stateful(p) => self.start_stateful(id.to_string(), &text, *p, restart.sink, &restart.session),
        }
        result?;
        Ok(Outcome::Status { message: format!("Query {id} is replaying"), query_id: Some(id.to_string()) })
    }

    /// Writes a tombstone for every key of a table's topic whose latest record is not one.
    fn clear_table(&self, sink: &SourceDesc) -> Result<(), SqlError> {
        let mut live: BTreeMap<(u32, bytes::Bytes), bool> = BTreeMap::new();
        for r in read_all(self.log.as_ref(), &sink.topic)? {
            if let Some(k) = r.key {
                live.insert((r.partition, k), r.value.is_some());
            }
        }
        let mut by_partition: BTreeMap<u32, Vec<OutRecord>> = BTreeMap::new();
        for ((partition, key), alive) in live {
            if alive {
                by_partition.entry(partition).or_default().push(OutRecord {
                    key: Some(key),
                    value: None,
                    headers: Vec::new(),
                    timestamp: crate::functions::now_ms(),
                });
            }
        }
        for (partition, records) in by_partition {
            self.log.append(&sink.topic, partition, &records, true).map_err(|e| sql_err(e.0))?;
        }
        Ok(())
    }

    fn next_query_id(&self, prefix: &str, name: &str) -> String {
        if let Some(id) = self.replay_query_id.lock().unwrap_or_else(|e| e.into_inner()).take() {
            return id;
        }
        let n = self.query_seq.fetch_add(1, Ordering::Relaxed) + 1;
        if prefix == "INSERTQUERY" { format!("INSERTQUERY_{n}") } else { format!("{prefix}_{name}_{n}") }
    }

    fn start_persistent(self: &Arc<Self>, id: String, text: &str, p: Plan, sink: Arc<SourceDesc>, session: &Session) {
        let earliest = session.earliest();
        let restart =
            Restart { plan: QueryPlan::Stateless(Box::new(p.clone())), sink: sink.clone(), session: session.clone() };
        let stop = Arc::new(AtomicBool::new(false));
        let failure = Arc::new(Mutex::new(None));
        let stored = self.lock().committed.remove(&id);
        let committed = match stored {
            Some(c) => c,
            None => self.committed_positions(&id),
        };
        let info = QueryInfo {
            id: id.clone(),
            statement: text.to_string(),
            sink: Some(sink.name.clone()),
            sources: vec![p.source.name.clone()],
            state: "RUNNING".into(),
        };
        let processed = Arc::new(AtomicU64::new(0));
        let thread = spawn_named(format!("sql-{id}"), {
            let (log, stop, failure, id, processed) =
                (self.log.clone(), stop.clone(), failure.clone(), id.clone(), processed.clone());
            move || {
                if let Err(e) = run_persistent(log.as_ref(), &id, &p, &sink, &committed, earliest, &stop, &processed) {
                    tracing::error!(query = %id, error = %e, "persistent query failed");
                    *failure.lock().unwrap_or_else(|e| e.into_inner()) = Some(e);
                }
            }
        });
        self.lock().queries.insert(
            id,
            RunningQuery {
                info,
                stop,
                thread,
                failure,
                processed,
                stateful: false,
                restart,
                restored: Arc::new(Mutex::new(None)),
            },
        );
    }

    /// The last committed positions of a query, read from the offsets topic (a query replaced
    /// while the engine runs).
    fn committed_positions(&self, id: &str) -> HashMap<u32, i64> {
        read_commits(self.log.as_ref()).ok().and_then(|mut all| all.remove(id)).unwrap_or_default()
    }

    #[allow(clippy::too_many_arguments)]
    fn drop_source(
        &self,
        kind: SourceKind,
        if_exists: bool,
        name: &str,
        delete_topic: bool,
        text: &str,
        session: &Session,
        replay: bool,
    ) -> Result<Outcome, SqlError> {
        let Some(source) = self.source(name) else {
            if if_exists || replay {
                return Ok(Outcome::Status { message: format!("{name} does not exist"), query_id: None });
            }
            return Err(sql_err(format!("{} {} does not exist", kind, quote_ident(name))));
        };
        if source.kind != kind {
            return Err(sql_err(format!("{name} is a {}, not a {kind}: use DROP {}", source.kind, source.kind)));
        }
        let queries = self.queries();
        let users: Vec<String> = queries
            .iter()
            .filter(|q| q.sink.as_deref() == Some(name) || q.sources.iter().any(|s| s == name))
            .map(|q| q.id.clone())
            .collect();
        if !users.is_empty() {
            return Err(sql_err(format!(
                "Cannot drop {name}. The following queries read from or write into this source: [{}]. You need to terminate them before dropping {name}.",
                users.join(", ")
            )));
        }
        self.record_command(text, session, replay)?;
        {
            let mut st = self.lock();
            st.sources.remove(name);
            if let Some((table, _)) = st.tables.remove(name) {
                table.stop.store(true, Ordering::Relaxed);
            }
        }
        if delete_topic && !replay {
            self.log.delete_topic(&source.topic).map_err(|e| sql_err(e.0))?;
        }
        Ok(Outcome::Status {
            message: format!("Source `{name}` (topic: {}) was dropped.", source.topic),
            query_id: None,
        })
    }

    fn insert_values(&self, target: &str, columns: Option<&[String]>, values: &[Expr]) -> Result<Outcome, SqlError> {
        let sink = self.source(target).ok_or_else(|| sql_err(format!("{} does not exist", quote_ident(target))))?;
        let all: Vec<Field> = sink.key_columns.iter().chain(&sink.value_columns).cloned().collect();
        let names: Vec<String> = match columns {
            Some(c) => c.to_vec(),
            None => all.iter().map(|f| f.name.clone()).collect(),
        };
        if names.len() != values.len() {
            return Err(sql_err(format!("expected {} values, got {}", names.len(), values.len())));
        }
        let empty = Scope::default();
        let mut given: HashMap<String, Value> = HashMap::new();
        let mut rowtime = None;
        for (name, e) in names.iter().zip(values) {
            let c = compile(e, &empty).map_err(|err| sql_err(format!("value for {name}: {err}")))?;
            let v = c.eval(&[]).map_err(|err| sql_err(format!("value for {name}: {err}")))?;
            if name == "ROWTIME" {
                rowtime = v.as_i64();
                continue;
            }
            let Some(field) = all.iter().find(|f| &f.name == name) else {
                return Err(sql_err(format!("{} has no column {}", quote_ident(target), quote_ident(name))));
            };
            let v = conform(vec![(v, c.ty.clone())], std::slice::from_ref(field))?.remove(0);
            given.insert(name.clone(), v);
        }
        let keys: Vec<Value> = sink.key_columns.iter().map(|f| given.remove(&f.name).unwrap_or(Value::Null)).collect();
        let vals: Vec<Value> =
            sink.value_columns.iter().map(|f| given.remove(&f.name).unwrap_or(Value::Null)).collect();
        let (key_serde, value_serde) = (sink.key_serde(), sink.value_serde());
        let record =
            sink.encode(&key_serde, &value_serde, &keys, Some(&vals), rowtime.unwrap_or_else(crate::functions::now_ms));
        let partition = partition_of(record.key.as_deref(), sink.partitions, 0);
        self.log.append(&sink.topic, partition, &[record], true).map_err(|e| sql_err(e.0))?;
        Ok(Outcome::Status { message: String::new(), query_id: None })
    }

    fn select(self: &Arc<Self>, q: &Query, session: &Session) -> Result<Outcome, SqlError> {
        if crate::stateful::is_stateful(q) {
            return self.select_stateful(q, session);
        }
        let lookup = |n: &str| self.source(n);
        let p = plan(q, &lookup, Purpose::Transient)?;
        if q.emit.is_none() {
            let key = q.selection.as_ref().and_then(|w| key_lookup(w, &p.source));
            return self.pull(&p, &q.order_by, key);
        }
        if q.emit == Some(Emit::Final) {
            return Err(sql_err("EMIT FINAL needs a windowed aggregation"));
        }
        let id = format!("transient_{}_{}", p.source.name, self.push_seq.fetch_add(1, Ordering::Relaxed) + 1);
        let (tx, rx) = mpsc::sync_channel(PUSH_QUEUE_ROWS);
        let stop = Arc::new(AtomicBool::new(false));
        let columns = p.fields();
        let earliest = session.earliest();
        spawn_named(format!("sql-{id}"), {
            let (log, stop) = (self.log.clone(), stop.clone());
            move || {
                if let Err(e) = run_push(log.as_ref(), &p, earliest, &tx, &stop) {
                    let _ = tx.send(Err(e));
                }
            }
        });
        Ok(Outcome::Stream(PushStream { id, columns, rows: rx, stop }))
    }

    /// A pull query over a table's current rows (a key lookup when WHERE fixes the key).
    /// `key`: when WHERE fixes every key column, the key bytes (rows under them are read
    /// directly, not scanned; a windowed table has one row per window under the key).
    fn pull(&self, p: &Plan, order_by: &[crate::ast::OrderBy], key: Option<Vec<u8>>) -> Result<Outcome, SqlError> {
        if p.source.kind != SourceKind::Table {
            return Err(sql_err(format!(
                "Pull queries on streams are not supported: add EMIT CHANGES for a push query over {}",
                quote_ident(&p.source.name)
            )));
        }
        let table = self
            .lock()
            .tables
            .get(&p.source.name)
            .map(|(t, _)| t.clone())
            .ok_or_else(|| sql_err("table is not materialized"))?;
        let rows = table.rows.read().unwrap_or_else(|e| e.into_inner());
        let mut out = Vec::new();
        let limit = p.limit.map(|l| l as usize).unwrap_or(PULL_ROWS_MAX).min(PULL_ROWS_MAX);
        // With ORDER BY every matching row is collected, then sorted and cut to the limit.
        let collect = if order_by.is_empty() { limit } else { PULL_ROWS_MAX };
        let candidates: Box<dyn Iterator<Item = &Vec<Value>>> = match &key {
            Some(k) => Box::new(rows.range(k.clone()..).take_while(|(r, _)| r.starts_with(k)).map(|(_, v)| v)),
            None => Box::new(rows.values()),
        };
        for row in candidates {
            if out.len() >= collect {
                if !order_by.is_empty() {
                    return Err(sql_err(format!(
                        "more than {PULL_ROWS_MAX} rows to order: narrow the query with WHERE"
                    )));
                }
                break;
            }
            if let Some(f) = &p.filter
                && !f.test(row).map_err(|e| sql_err(e.0))?
            {
                continue;
            }
            out.push(
                p.columns.iter().map(|(_, c)| c.eval(row)).collect::<Result<Vec<_>, _>>().map_err(|e| sql_err(e.0))?,
            );
        }
        drop(rows);
        let columns = p.fields();
        order_rows(order_by, &columns, &mut out)?;
        out.truncate(limit);
        Ok(Outcome::Rows { columns, rows: out })
    }

    /// A pull query aggregating a table's current rows (GROUP BY over one consistent snapshot).
    fn pull_aggregate(
        &self,
        p: crate::stateful::StatefulPlan,
        order_by: &[crate::ast::OrderBy],
    ) -> Result<Outcome, SqlError> {
        let name = p.inputs[0].source.name.clone();
        let table = self
            .lock()
            .tables
            .get(&name)
            .map(|(t, _)| t.clone())
            .ok_or_else(|| sql_err("table is not materialized"))?;
        let limit = p.limit.map(|l| l as usize).unwrap_or(PULL_ROWS_MAX).min(PULL_ROWS_MAX);
        let columns = p.fields();
        let mut pipeline = crate::operators::Pipeline::new(Arc::new(p), true);
        {
            let rows = table.rows.read().unwrap_or_else(|e| e.into_inner());
            for row in rows.values() {
                pipeline.process_row(0, row.clone());
            }
        }
        if let Some(f) = pipeline.take_failures().first() {
            return Err(sql_err(format!("pull query: {}", f.message)));
        }
        let mut out: Vec<Vec<Value>> =
            pipeline.take_output().into_iter().filter(|e| !e.deleted).map(|e| e.row).take(PULL_ROWS_MAX).collect();
        order_rows(order_by, &columns, &mut out)?;
        out.truncate(limit);
        Ok(Outcome::Rows { columns, rows: out })
    }

    fn print(
        &self,
        topic: &str,
        from_beginning: bool,
        interval: Option<u64>,
        limit: Option<u64>,
    ) -> Result<Outcome, SqlError> {
        let partitions = self.log.partitions(topic).ok_or_else(|| sql_err(format!("topic {topic} does not exist")))?;
        let columns = vec![
            Field { name: "ROWTIME".into(), ty: SqlType::Bigint },
            Field { name: "PARTITION".into(), ty: SqlType::Int },
            Field { name: "OFFSET".into(), ty: SqlType::Bigint },
            Field { name: "KEY".into(), ty: SqlType::String },
            Field { name: "VALUE".into(), ty: SqlType::String },
        ];
        let (tx, rx) = mpsc::sync_channel(PUSH_QUEUE_ROWS);
        let stop = Arc::new(AtomicBool::new(false));
        let every = interval.unwrap_or(1).max(1);
        let id = format!("print_{topic}");
        spawn_named(format!("sql-print-{topic}"), {
            let (log, stop, topic) = (self.log.clone(), stop.clone(), topic.to_string());
            move || {
                let mut positions: Vec<i64> = (0..partitions)
                    .map(|p| match log.offsets(&topic, p) {
                        Ok((start, end)) => {
                            if from_beginning {
                                start
                            } else {
                                end
                            }
                        }
                        Err(_) => 0,
                    })
                    .collect();
                let (mut seen, mut sent) = (0u64, 0u64);
                while !stop.load(Ordering::Relaxed) {
                    let mut any = false;
                    for p in 0..partitions {
                        let Ok(batch) = log.read(&topic, p, positions[p as usize], READ_BYTES) else { continue };
                        positions[p as usize] = batch.next_offset;
                        for r in batch.records {
                            any = true;
                            seen += 1;
                            if (seen - 1) % every != 0 {
                                continue;
                            }
                            let text = |b: &Option<bytes::Bytes>| match b {
                                None => Value::Null,
                                Some(b) => Value::string(&String::from_utf8_lossy(b)),
                            };
                            let row = vec![
                                Value::Bigint(r.timestamp),
                                Value::Int(p as i32),
                                Value::Bigint(r.offset),
                                text(&r.key),
                                text(&r.value),
                            ];
                            if tx.send(Ok(row)).is_err() {
                                return;
                            }
                            sent += 1;
                            if limit.is_some_and(|l| sent >= l) {
                                return;
                            }
                        }
                    }
                    if !any {
                        let waits: Vec<(u32, i64)> = (0..partitions).map(|p| (p, positions[p as usize])).collect();
                        log.wait_any(&topic, &waits, IDLE_WAIT);
                    }
                }
            }
        });
        Ok(Outcome::Stream(PushStream { id, columns, rows: rx, stop }))
    }
}

/// A materialized row (system columns first) as a JSON object of its other columns.
fn table_row_json(desc: &SourceDesc, row: &[Value]) -> serde_json::Value {
    let columns = desc.columns();
    let values = &row[crate::catalog::SYSTEM_COLUMNS.min(row.len())..];
    crate::rest::row_object(values, &columns)
}

/// The key bytes of a table's rows when a WHERE clause fixes every key column with `=` to a
/// constant (in a conjunction); `None` when it does not, and the query scans.
fn key_lookup(selection: &Expr, source: &SourceDesc) -> Option<Vec<u8>> {
    fn conjuncts<'a>(e: &'a Expr, out: &mut Vec<&'a Expr>) {
        match e {
            Expr::Binary { op: crate::ast::BinaryOp::And, left, right } => {
                conjuncts(left, out);
                conjuncts(right, out);
            }
            other => out.push(other),
        }
    }
    let mut parts = Vec::new();
    conjuncts(selection, &mut parts);
    let mut key = Vec::new();
    for column in &source.key_columns {
        let value = parts.iter().find_map(|part| {
            let Expr::Binary { op: crate::ast::BinaryOp::Eq, left, right } = part else { return None };
            let constant = match (left.as_ref(), right.as_ref()) {
                (Expr::Column { name, .. }, c) | (c, Expr::Column { name, .. }) if name == &column.name => c,
                _ => return None,
            };
            let compiled = compile(constant, &Scope::default()).ok()?;
            let v = compiled.eval(&[]).ok()?;
            crate::expr::cast(v, &compiled.ty, &column.ty).ok().filter(|v| !v.is_null())
        })?;
        value.key_bytes(&mut key);
    }
    Some(key)
}

/// Sorts pull-query rows by ORDER BY expressions over the selected columns (NULLs last).
fn order_rows(order_by: &[crate::ast::OrderBy], columns: &[Field], rows: &mut [Vec<Value>]) -> Result<(), SqlError> {
    if order_by.is_empty() {
        return Ok(());
    }
    let mut scope = Scope::default();
    for f in columns {
        scope.push(None, &f.name, f.ty.clone());
    }
    let keys: Vec<(crate::expr::Compiled, bool)> = order_by
        .iter()
        .map(|o| {
            let e = crate::stateful::unqualified(&o.expr);
            compile(&e, &scope)
                .map(|c| (c, o.descending))
                .map_err(|e| sql_err(format!("ORDER BY {}: {e} (ORDER BY uses the selected columns)", o.expr)))
        })
        .collect::<Result<_, _>>()?;
    let mut keyed: Vec<(Vec<Value>, Vec<Value>)> = Vec::with_capacity(rows.len());
    for row in rows.iter() {
        let k = keys.iter().map(|(c, _)| c.eval(row).map_err(|e| sql_err(e.0))).collect::<Result<Vec<_>, _>>()?;
        keyed.push((k, row.clone()));
    }
    keyed.sort_by(|(a, _), (b, _)| {
        for ((x, y), (_, desc)) in a.iter().zip(b).zip(&keys) {
            let o = match (x.is_null(), y.is_null()) {
                (true, true) => std::cmp::Ordering::Equal,
                (true, false) => return std::cmp::Ordering::Greater,
                (false, true) => return std::cmp::Ordering::Less,
                _ => x.compare(y).unwrap_or(std::cmp::Ordering::Equal),
            };
            let o = if *desc { o.reverse() } else { o };
            if o != std::cmp::Ordering::Equal {
                return o;
            }
        }
        std::cmp::Ordering::Equal
    });
    for (slot, (_, row)) in rows.iter_mut().zip(keyed) {
        *slot = row;
    }
    Ok(())
}

/// What a statement that starts persistent query `id` answers.
fn query_created(id: String) -> Outcome {
    Outcome::Status { message: format!("Created query with ID {id}"), query_id: Some(id) }
}

/// INSERT INTO: the query's result columns must be the sink's.
fn check_sink_schema(keys: &[Field], values: &[Field], sink: &SourceDesc) -> Result<(), SqlError> {
    if keys != sink.key_columns || values != sink.value_columns {
        let show = |fs: &[Field]| {
            fs.iter().map(|f| format!("{} {}", quote_ident(&f.name), f.ty)).collect::<Vec<_>>().join(", ")
        };
        return Err(sql_err(format!(
            "Incompatible schema between results and sink: result key ({}) value ({}), sink key ({}) value ({})",
            show(keys),
            show(values),
            show(&sink.key_columns),
            show(&sink.value_columns)
        )));
    }
    Ok(())
}

fn spawn_named(name: String, f: impl FnOnce() + Send + 'static) -> Option<JoinHandle<()>> {
    match std::thread::Builder::new().name(name.clone()).spawn(f) {
        Ok(t) => Some(t),
        Err(e) => {
            tracing::error!(thread = %name, error = %e, "cannot start a SQL thread");
            None
        }
    }
}

/// Every persistent query's committed positions (query id -> partition -> next offset), from
/// the offsets topic.
fn read_commits(log: &dyn EventLog) -> Result<HashMap<String, HashMap<u32, i64>>, SqlError> {
    let mut committed: HashMap<String, HashMap<u32, i64>> = HashMap::new();
    for r in read_all(log, OFFSETS_TOPIC)? {
        let (Some(k), Some(v)) = (&r.key, &r.value) else { continue };
        let (Ok(k), Ok(v)) = (std::str::from_utf8(k), std::str::from_utf8(v)) else { continue };
        if let (Some((query, p)), Ok(offset)) = (k.rsplit_once('/'), v.parse::<i64>())
            && let Ok(p) = p.parse::<u32>()
        {
            committed.entry(query.to_string()).or_default().insert(p, offset);
        }
    }
    Ok(committed)
}

/// Every record of a topic, from the start to its end as of now.
fn read_all(log: &dyn EventLog, topic: &str) -> Result<Vec<LogRecord>, SqlError> {
    let mut out = Vec::new();
    for p in 0..log.partitions(topic).unwrap_or(0) {
        let (start, end) = log.offsets(topic, p).map_err(|e| sql_err(e.0))?;
        let mut at = start;
        while at < end {
            let batch = log.read(topic, p, at, READ_BYTES).map_err(|e| sql_err(e.0))?;
            if batch.next_offset <= at {
                break;
            }
            at = batch.next_offset;
            out.extend(batch.records);
        }
    }
    Ok(out)
}

/// The output partition of a record: by key hash, or the input partition for keyless records.
fn partition_of(key: Option<&[u8]>, partitions: u32, input_partition: u32) -> u32 {
    match key {
        Some(k) => runnel_records::partition_for_key(k, partitions),
        None => input_partition % partitions.max(1),
    }
}

/// A record that could not be read or evaluated, for the processing log.
fn processing_error(query: &str, kind: &str, r: &LogRecord, topic: &str, error: &str) -> OutRecord {
    let message = serde_json::json!({
        "type": kind,
        "errorMessage": error,
        "topic": topic,
        "partition": r.partition,
        "offset": r.offset,
    });
    let value = serde_json::json!({
        "LOGGER": query,
        "LEVEL": "ERROR",
        "TIME": crate::functions::now_ms(),
        "MESSAGE": message.to_string(),
    });
    OutRecord {
        key: None,
        value: Some(value.to_string().into_bytes().into()),
        headers: Vec::new(),
        timestamp: crate::functions::now_ms(),
    }
}

/// What one input record became.
enum Step {
    /// An output row: key values, value values (None = tombstone), timestamp.
    Out(Vec<Value>, Option<Vec<Value>>, i64),
    Skip,
    Error(&'static str, String),
}

/// Buffers a stateless query reuses from record to record.
#[derive(Default)]
struct Scratch {
    /// The decoded input row.
    row: Vec<Value>,
    /// The projection; a key-less output moves it into [`Step::Out`], and the caller may hand
    /// it back once the output is encoded.
    out: Vec<Value>,
}

fn process(p: &Plan, key_serde: &Serde, value_serde: &Serde, r: &LogRecord, scratch: &mut Scratch) -> Step {
    let source = &p.source;
    let row = &mut scratch.row;
    match source.decode_into(key_serde, value_serde, r, row) {
        Ok(true) => {}
        Ok(false) => {
            // A table deletion: the key (decoded) with no value.
            return match key_serde.deserialize(r.key.as_deref()) {
                Ok(k) => Step::Out(p.key.iter().map(|&i| key_value(p, i, &k)).collect(), None, r.timestamp),
                Err(e) => Step::Error("DESERIALIZATION_ERROR", e.0),
            };
        }
        Err(e) => return Step::Error("DESERIALIZATION_ERROR", e.0),
    }
    let row = &*row;
    let passes = match &p.filter {
        None => true,
        Some(f) => match f.test(row) {
            Ok(b) => b,
            Err(e) => return Step::Error("EVALUATION_ERROR", e.0),
        },
    };
    if !passes && source.kind == SourceKind::Stream {
        return Step::Skip;
    }
    let mut out = std::mem::take(&mut scratch.out);
    out.clear();
    for (_, c) in &p.columns {
        match c.eval(row) {
            Ok(v) => out.push(v),
            Err(e) => return Step::Error("EVALUATION_ERROR", e.0),
        }
    }
    if !passes {
        let keys: Vec<Value> = p.key.iter().map(|&i| out[i].clone()).collect();
        // A table row that no longer matches is removed downstream.
        return if source.kind == SourceKind::Table {
            Step::Out(keys, None, row[0].as_i64().unwrap_or(r.timestamp))
        } else {
            Step::Skip
        };
    }
    if p.key.is_empty() {
        return Step::Out(Vec::new(), Some(out), row[0].as_i64().unwrap_or(r.timestamp));
    }
    // Moved out of the projection: key columns in key order, the rest in projection order.
    let mut keys: Vec<Value> = vec![Value::Null; p.key.len()];
    let mut values: Vec<Value> = Vec::with_capacity(out.len() - p.key.len().min(out.len()));
    for (i, v) in out.into_iter().enumerate() {
        match p.key.iter().position(|&k| k == i) {
            Some(k) => keys[k] = v,
            None => values.push(v),
        }
    }
    Step::Out(keys, Some(values), row[0].as_i64().unwrap_or(r.timestamp))
}

/// For a deletion: the key column's value from the decoded key (key columns are passed
/// through by name in table queries).
fn key_value(p: &Plan, output_index: usize, key: &[Value]) -> Value {
    let name = &p.columns[output_index].0.name;
    p.source.key_columns.iter().position(|f| &f.name == name).and_then(|i| key.get(i).cloned()).unwrap_or(Value::Null)
}

#[allow(clippy::too_many_arguments)]
fn run_persistent(
    log: &dyn EventLog,
    id: &str,
    p: &Plan,
    sink: &SourceDesc,
    committed: &HashMap<u32, i64>,
    earliest: bool,
    stop: &AtomicBool,
    processed: &AtomicU64,
) -> Result<(), String> {
    let source = &p.source;
    let (key_serde, value_serde) = (source.key_serde(), p.value_serde.clone());
    let (out_key, out_value) = (sink.key_serde(), sink.value_serde());
    let mut positions: Vec<i64> = Vec::with_capacity(source.partitions as usize);
    for part in 0..source.partitions {
        let (start, end) = log.offsets(&source.topic, part).map_err(|e| e.0)?;
        positions.push(committed.get(&part).copied().unwrap_or(if earliest { start } else { end }));
    }
    let mut scratch = Scratch::default();
    let mut key_bytes = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let mut outputs: BTreeMap<u32, EncodedOutputs> = BTreeMap::new();
        let mut errors = Vec::new();
        let mut advanced = Vec::new();
        let mut read = 0u64;
        for part in 0..source.partitions {
            let batch = log
                .read(&source.topic, part, positions[part as usize], round_read_bytes(source.partitions))
                .map_err(|e| e.0)?;
            if batch.next_offset == positions[part as usize] {
                continue;
            }
            read += batch.records.len() as u64;
            for r in &batch.records {
                match process(p, &key_serde, &value_serde, r, &mut scratch) {
                    Step::Out(keys, values, ts) => {
                        key_bytes.clear();
                        let has_key = out_key.serialize_into(&keys, &mut key_bytes);
                        let key = has_key.then_some(&key_bytes[..]);
                        let out = partition_of(key, sink.partitions, part);
                        let encoded = outputs.entry(out).or_default();
                        encoded.push(key, values.as_deref(), &out_value, ts);
                        if let Some(values) = values
                            && p.key.is_empty()
                        {
                            // The projection buffer, back for the next record.
                            scratch.out = values;
                        }
                    }
                    Step::Skip => {}
                    Step::Error(kind, e) => errors.push(processing_error(id, kind, r, &source.topic, &e)),
                }
            }
            positions[part as usize] = batch.next_offset;
            advanced.push(part);
        }
        if advanced.is_empty() {
            let waits: Vec<(u32, i64)> = (0..source.partitions).map(|q| (q, positions[q as usize])).collect();
            log.wait_any(&source.topic, &waits, IDLE_WAIT);
            continue;
        }
        // Outputs first (durably), then the positions: a crash in between repeats records
        // (at least once), never loses them.
        for (part, encoded) in outputs {
            log.append(&sink.topic, part, &encoded.into_records(), true).map_err(|e| e.0)?;
        }
        if !errors.is_empty() {
            let _ = log.append(PROCESSING_LOG_TOPIC, 0, &errors, false);
        }
        let commits: Vec<OutRecord> = advanced
            .iter()
            .map(|&part| OutRecord {
                key: Some(commit_key(id, part).into_bytes().into()),
                value: Some(positions[part as usize].to_string().into_bytes().into()),
                headers: Vec::new(),
                timestamp: crate::functions::now_ms(),
            })
            .collect();
        log.append(OFFSETS_TOPIC, 0, &commits, true).map_err(|e| e.0)?;
        // Counted once their outputs and positions are durable.
        processed.fetch_add(read, Ordering::Relaxed);
    }
    Ok(())
}

/// One round's output records for one partition, encoded into one buffer (a record's key and
/// value are ranges of it) rather than a buffer per record.
#[derive(Default)]
struct EncodedOutputs {
    bytes: Vec<u8>,
    records: Vec<EncodedRecord>,
}

/// Where a record of [`EncodedOutputs`] is: key and value ranges (`None` for a null).
struct EncodedRecord {
    key: Option<std::ops::Range<usize>>,
    value: Option<std::ops::Range<usize>>,
    timestamp: i64,
}

impl EncodedOutputs {
    /// Adds a record: `key` as given, `values` (`None` for a tombstone) serialized with `serde`
    /// as [`SourceDesc::encode`] does.
    fn push(&mut self, key: Option<&[u8]>, values: Option<&[Value]>, serde: &Serde, timestamp: i64) {
        let key = key.map(|k| {
            let start = self.bytes.len();
            self.bytes.extend_from_slice(k);
            start..self.bytes.len()
        });
        let start = self.bytes.len();
        let value = match values {
            Some(v) if serde.serialize_into(v, &mut self.bytes) => Some(start..self.bytes.len()),
            _ => None,
        };
        self.records.push(EncodedRecord { key, value, timestamp });
    }

    /// The records, their keys and values slices of one shared buffer.
    fn into_records(self) -> Vec<OutRecord> {
        let bytes = bytes::Bytes::from(self.bytes);
        self.records
            .into_iter()
            .map(|EncodedRecord { key, value, timestamp }| OutRecord {
                key: key.map(|r| bytes.slice(r)),
                value: value.map(|r| bytes.slice(r)),
                headers: Vec::new(),
                timestamp,
            })
            .collect()
    }
}

fn run_push(
    log: &dyn EventLog,
    p: &Plan,
    earliest: bool,
    tx: &mpsc::SyncSender<Result<Vec<Value>, String>>,
    stop: &AtomicBool,
) -> Result<(), String> {
    let source = &p.source;
    let (key_serde, value_serde) = (source.key_serde(), p.value_serde.clone());
    let mut positions = Vec::with_capacity(source.partitions as usize);
    for part in 0..source.partitions {
        let (start, end) = log.offsets(&source.topic, part).map_err(|e| e.0)?;
        positions.push(if earliest { start } else { end });
    }
    let mut sent = 0u64;
    let mut scratch = Scratch::default();
    while !stop.load(Ordering::Relaxed) {
        let mut any = false;
        for part in 0..source.partitions {
            let batch = log
                .read(&source.topic, part, positions[part as usize], round_read_bytes(source.partitions))
                .map_err(|e| e.0)?;
            positions[part as usize] = batch.next_offset;
            for r in &batch.records {
                any = true;
                let Step::Out(keys, Some(values), _) = process(p, &key_serde, &value_serde, r, &mut scratch) else {
                    continue;
                };
                // Back in projection order.
                let mut row = vec![Value::Null; p.columns.len()];
                for (k, &i) in keys.into_iter().zip(&p.key) {
                    row[i] = k;
                }
                let mut rest = values.into_iter();
                for (i, slot) in row.iter_mut().enumerate() {
                    if !p.key.contains(&i) {
                        *slot = rest.next().unwrap_or(Value::Null);
                    }
                }
                if tx.send(Ok(row)).is_err() {
                    return Ok(());
                }
                sent += 1;
                if p.limit.is_some_and(|l| sent >= l) {
                    return Ok(());
                }
            }
        }
        if !any {
            let waits: Vec<(u32, i64)> = (0..source.partitions).map(|q| (q, positions[q as usize])).collect();
            log.wait_any(&source.topic, &waits, IDLE_WAIT);
        }
    }
    Ok(())
}

/// Keeps a source table's rows: upserts by key, deletes on tombstones.
fn materialize(log: &dyn EventLog, desc: &SourceDesc, state: &TableState) {
    let (key_serde, value_serde) = (desc.key_serde(), desc.value_serde());
    let mut positions: Vec<i64> =
        (0..desc.partitions).map(|p| log.offsets(&desc.topic, p).map(|o| o.0).unwrap_or(0)).collect();
    // ROW_TTL: rows by their time, and the table's event time.
    let mut by_time: std::collections::BTreeSet<(i64, Vec<u8>)> = std::collections::BTreeSet::new();
    let mut table_time = i64::MIN;
    let time_of = |row: &[Value]| row.first().and_then(Value::as_i64).unwrap_or(0);
    while !state.stop.load(Ordering::Relaxed) {
        let mut any = false;
        for part in 0..desc.partitions {
            let Ok(batch) = log.read(&desc.topic, part, positions[part as usize], READ_BYTES) else { continue };
            positions[part as usize] = batch.next_offset;
            if batch.records.is_empty() {
                continue;
            }
            any = true;
            let mut rows = state.rows.write().unwrap_or_else(|e| e.into_inner());
            for r in &batch.records {
                let mut key = Vec::new();
                let Ok((key_bytes, window)) = desc.split_key(r.key.as_deref()) else { continue };
                match key_serde.deserialize(key_bytes) {
                    Ok(k) => k.iter().for_each(|v| v.key_bytes(&mut key)),
                    Err(_) => continue,
                }
                if let Some((start, _)) = window {
                    key.extend_from_slice(&start.to_be_bytes());
                }
                let ttl = desc.row_ttl_ms.is_some();
                match desc.decode(&key_serde, &value_serde, r) {
                    Ok(Some(row)) => {
                        if ttl {
                            table_time = table_time.max(time_of(&row));
                            by_time.insert((time_of(&row), key.clone()));
                        }
                        if let Some(old) = rows.insert(key.clone(), row)
                            && ttl
                        {
                            let (t, new_t) = (time_of(&old), rows.get(&key).map(|r| time_of(r)));
                            if Some(t) != new_t {
                                by_time.remove(&(t, key));
                            }
                        }
                    }
                    Ok(None) => {
                        if let Some(old) = rows.remove(&key)
                            && ttl
                        {
                            by_time.remove(&(time_of(&old), key));
                        }
                    }
                    Err(_) => {}
                }
            }
            if let Some(ttl) = desc.row_ttl_ms {
                while let Some((t, _)) = by_time.first() {
                    if t.saturating_add(ttl) > table_time {
                        break;
                    }
                    if let Some((_, key)) = by_time.pop_first() {
                        rows.remove(&key);
                    }
                }
            }
        }
        if !any {
            let waits: Vec<(u32, i64)> = (0..desc.partitions).map(|q| (q, positions[q as usize])).collect();
            log.wait_any(&desc.topic, &waits, IDLE_WAIT);
        }
    }
}

/// The engine properties `SHOW PROPERTIES` lists before session overrides.
fn default_properties() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("auto.offset.reset".to_string(), "latest".to_string()),
        ("ksql.service.id".to_string(), "runnel".to_string()),
        ("ksql.persistence.wrap.single.values".to_string(), "true".to_string()),
    ])
}

/// Replaces `${name}` with session variables (ksqlDB's variable substitution).
pub fn substitute(sql: &str, variables: &BTreeMap<String, String>) -> Result<String, SqlError> {
    if !sql.contains("${") {
        return Ok(sql.to_string());
    }
    let mut out = String::with_capacity(sql.len());
    let mut rest = sql;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find('}').ok_or_else(|| sql_err("unclosed ${ in statement"))?;
        let name = after[..end].trim().to_ascii_lowercase();
        let value = variables
            .get(&name)
            .ok_or_else(|| sql_err(format!("variable {name} is not defined (DEFINE {name} = '...')")))?;
        out.push_str(value);
        if out.len() > SUBSTITUTED_BYTES_MAX {
            return Err(sql_err(format!("statement longer than {SUBSTITUTED_BYTES_MAX} bytes after substitution")));
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The text of each of `n` statements (split at top-level semicolons outside quotes), to store
/// and show; falls back to the whole text.
fn split_statement_texts(sql: &str, n: usize) -> Vec<String> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut quote: Option<char> = None;
    for c in sql.chars() {
        match (quote, c) {
            (None, '\'' | '`' | '"') => {
                quote = Some(c);
                current.push(c);
            }
            (Some(q), c) if c == q => {
                quote = None;
                current.push(c);
            }
            (None, ';') => {
                if !current.trim().is_empty() {
                    parts.push(format!("{};", current.trim()));
                }
                current.clear();
            }
            _ => current.push(c),
        }
    }
    if !current.trim().is_empty() {
        parts.push(format!("{};", current.trim()));
    }
    if parts.len() == n { parts } else { vec![sql.trim().to_string(); n] }
}
