//! What a deployed function is: its [`FunctionSpec`] (stored as JSON in the compacted
//! topic `__runnel_functions`), its [`Trigger`], and the [`FunctionConfig`] a deploy asks
//! for, with the checks against [`limits`](crate::limits).

use serde::{Deserialize, Serialize};

use crate::endpoint::EndpointConfig;

use crate::limits::*;

/// What makes a function run.
///
/// Stored as JSON tagged by `kind` (`{"kind":"topic","topic":..,"start":..}`, `"table"`,
/// `"cron"`, `"http"`, `"none"`); the CLI form is what [`Trigger::parse`] reads and
/// `Display` prints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Trigger {
    /// No trigger: the function runs only when invoked directly.
    None,
    /// Every partition of a topic, from committed positions (at least once).
    Topic { topic: String, start: StartPosition },
    /// Every change of a SQL table (CREATE TABLE or CREATE TABLE AS SELECT): the records of
    /// the topic backing it, consumed like a topic trigger. A deleted row is an event with
    /// no value (a tombstone). The table is looked up when the trigger starts.
    Table { table: String, start: StartPosition },
    /// A timer: a cron expression of 5 fields (minute hour day-of-month month day-of-week)
    /// or 6 (seconds first), in UTC. Each fire is one event: topic `""`, partition -1,
    /// offset and timestamp the scheduled fire time in milliseconds, key the function's
    /// name, value `{"scheduled_ms":..,"fired_ms":..}`. A restart runs at most one fire
    /// missed while stopped (the latest).
    Cron { expression: String },
    /// HTTP requests routed to the function (`/fn/NAME/...`, through
    /// [`FunctionService::handle_http`](crate::FunctionService::handle_http)); the
    /// component must export `handle-http`. No events.
    Http,
}

impl Trigger {
    /// A topic trigger starting at the earliest offset.
    pub fn topic(topic: impl Into<String>) -> Self {
        Trigger::Topic { topic: topic.into(), start: StartPosition::Earliest }
    }

    /// A table-change trigger starting at the earliest offset of the table's topic (so it
    /// sees the table's current rows first).
    pub fn table(table: impl Into<String>) -> Self {
        Trigger::Table { table: table.into(), start: StartPosition::Earliest }
    }

    /// A timer trigger firing on the cron expression `expression` (not checked here: see
    /// [`FunctionConfig::validate`]).
    pub fn cron(expression: impl Into<String>) -> Self {
        Trigger::Cron { expression: expression.into() }
    }

    /// Parses the CLI form: `none`, `http`, `topic:NAME`, `table:NAME` (both with an
    /// optional `@earliest`, `@latest` or `@TIMESTAMP_MS`), or `cron:EXPR` (5 or 6 fields,
    /// UTC; checked).
    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "none" => return Ok(Trigger::None),
            "http" => return Ok(Trigger::Http),
            _ => {}
        }
        if let Some(expression) = text.strip_prefix("cron:") {
            let expression = expression.trim();
            crate::timer::Schedule::parse(expression)?;
            return Ok(Trigger::Cron { expression: expression.to_string() });
        }
        let (kind, rest) = match (text.strip_prefix("topic:"), text.strip_prefix("table:")) {
            (Some(rest), _) => ("topic", rest),
            (None, Some(rest)) => ("table", rest),
            (None, None) => {
                return Err(format!(
                    "trigger {text:?} is not `none`, `http`, `topic:NAME[@START]`, `table:NAME[@START]` or \
                     `cron:EXPR` (START: earliest, latest or milliseconds since the epoch)"
                ));
            }
        };
        let (name, start) = match rest.split_once('@') {
            None => (rest, StartPosition::Earliest),
            Some((name, "earliest")) => (name, StartPosition::Earliest),
            Some((name, "latest")) => (name, StartPosition::Latest),
            Some((name, ms)) => match ms.parse() {
                Ok(ms) => (name, StartPosition::Timestamp { ms }),
                Err(_) => return Err(format!("trigger start {ms:?} is not earliest, latest or milliseconds")),
            },
        };
        if name.is_empty() {
            return Err(format!("trigger {kind} is empty"));
        }
        Ok(match kind {
            "topic" => Trigger::Topic { topic: name.to_string(), start },
            _ => Trigger::Table { table: name.to_string(), start },
        })
    }
}

impl std::fmt::Display for Trigger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (kind, name, start) = match self {
            Trigger::None => return f.write_str("none"),
            Trigger::Http => return f.write_str("http"),
            Trigger::Cron { expression } => return write!(f, "cron:{expression}"),
            Trigger::Topic { topic, start } => ("topic", topic, start),
            Trigger::Table { table, start } => ("table", table, start),
        };
        match start {
            StartPosition::Earliest => write!(f, "{kind}:{name}"),
            StartPosition::Latest => write!(f, "{kind}:{name}@latest"),
            StartPosition::Timestamp { ms } => write!(f, "{kind}:{name}@{ms}"),
        }
    }
}

/// Where a topic or table trigger starts in a partition it has no committed position for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "at", rename_all = "snake_case")]
pub enum StartPosition {
    Earliest,
    Latest,
    /// The first record with a timestamp at or after `ms`.
    Timestamp {
        ms: i64,
    },
}

/// What a deploy asks for, besides the name and the component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionConfig {
    pub trigger: Trigger,
    /// Lanes: events of one key run in order on one lane; lanes run concurrently.
    pub concurrency: u32,
    /// Retries of a failed invocation before its events are retried one by one and then
    /// dead-lettered.
    pub retries: u32,
    pub retry_backoff_initial_ms: u64,
    pub retry_backoff_max_ms: u64,
    /// `None`: `<name>-dlq`, created if missing.
    pub dead_letter_topic: Option<String>,
    /// Most events per invocation.
    pub batch_size: u32,
    /// How long a lane waits for a batch to fill after its first event.
    pub batch_window_ms: u64,
    pub memory_bytes_max: usize,
    pub deadline_ms: u64,
}

impl Default for FunctionConfig {
    fn default() -> Self {
        Self {
            trigger: Trigger::None,
            concurrency: CONCURRENCY_DEFAULT,
            retries: RETRIES_DEFAULT,
            retry_backoff_initial_ms: RETRY_BACKOFF_INITIAL_MS_DEFAULT,
            retry_backoff_max_ms: RETRY_BACKOFF_MAX_MS_DEFAULT,
            dead_letter_topic: None,
            batch_size: BATCH_SIZE_DEFAULT,
            batch_window_ms: BATCH_WINDOW_MS_DEFAULT,
            memory_bytes_max: MEMORY_BYTES_DEFAULT,
            deadline_ms: DEADLINE_MS_DEFAULT,
        }
    }
}

impl FunctionConfig {
    /// Checks every field against its bound; names the first one out of range.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        let range = |field: &'static str, value: u64, min: u64, max: u64| {
            if value < min || value > max {
                return Err((field, format!("{value} is outside {min}..={max}")));
            }
            Ok(())
        };
        range("concurrency", self.concurrency.into(), 1, CONCURRENCY_MAX.into())?;
        range("retries", self.retries.into(), 0, RETRIES_MAX.into())?;
        range("retry_backoff_max_ms", self.retry_backoff_max_ms, 0, RETRY_BACKOFF_MS_MAX)?;
        range("retry_backoff_initial_ms", self.retry_backoff_initial_ms, 0, self.retry_backoff_max_ms)?;
        range("batch_size", self.batch_size.into(), 1, INPUT_EVENTS_PER_INVOCATION_MAX as u64)?;
        range("batch_window_ms", self.batch_window_ms, 0, BATCH_WINDOW_MS_MAX)?;
        range("memory_bytes_max", self.memory_bytes_max as u64, 64 * 1024, MEMORY_BYTES_MAX as u64)?;
        range("deadline_ms", self.deadline_ms, 1, DEADLINE_MS_MAX)?;
        if let Some(topic) = &self.dead_letter_topic
            && topic.is_empty()
        {
            return Err(("dead_letter_topic", "empty".to_string()));
        }
        match &self.trigger {
            Trigger::Topic { topic, .. } if topic.is_empty() => return Err(("trigger", "topic is empty".to_string())),
            Trigger::Table { table, .. } if table.is_empty() => return Err(("trigger", "table is empty".to_string())),
            Trigger::Cron { expression } => {
                crate::timer::Schedule::parse(expression).map_err(|reason| ("trigger", reason))?;
            }
            _ => {}
        }
        Ok(())
    }
}

/// A deployed function as stored in `__runnel_functions` (key: the name).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionSpec {
    pub name: String,
    /// SHA-256 (hex) of the component binary in `<data_dir>/functions/components/`; empty
    /// for an HTTP-endpoint function.
    pub component_sha256: String,
    /// Set for an HTTP-endpoint function: the URL its batches are POSTed to (instead of a
    /// component).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<EndpointConfig>,
    pub trigger: Trigger,
    pub concurrency: u32,
    pub retries: u32,
    pub retry_backoff_initial_ms: u64,
    pub retry_backoff_max_ms: u64,
    pub dead_letter_topic: String,
    pub batch_size: u32,
    pub batch_window_ms: u64,
    pub memory_bytes_max: usize,
    pub deadline_ms: u64,
    pub paused: bool,
    /// 1 for the first deploy of the name, one more for each later deploy.
    pub version: u64,
    /// When this version was deployed (milliseconds since the Unix epoch).
    pub deployed_at_ms: i64,
}

impl FunctionSpec {
    pub(crate) fn new(name: &str, sha256: String, config: &FunctionConfig, version: u64, at_ms: i64) -> Self {
        Self {
            name: name.to_string(),
            component_sha256: sha256,
            endpoint: None,
            trigger: config.trigger.clone(),
            concurrency: config.concurrency,
            retries: config.retries,
            retry_backoff_initial_ms: config.retry_backoff_initial_ms,
            retry_backoff_max_ms: config.retry_backoff_max_ms,
            dead_letter_topic: config.dead_letter_topic.clone().unwrap_or_else(|| format!("{name}-dlq")),
            batch_size: config.batch_size,
            batch_window_ms: config.batch_window_ms,
            memory_bytes_max: config.memory_bytes_max,
            deadline_ms: config.deadline_ms,
            paused: false,
            version,
            deployed_at_ms: at_ms,
        }
    }

    /// The spec as it may be shown: an endpoint's header values and URL query redacted.
    pub fn redacted(&self) -> FunctionSpec {
        FunctionSpec { endpoint: self.endpoint.as_ref().map(EndpointConfig::redacted), ..self.clone() }
    }

    /// Whether `other` needs the trigger's threads restarted (rather than a swap of the
    /// function between batches).
    pub(crate) fn same_trigger_shape(&self, other: &FunctionSpec) -> bool {
        self.trigger == other.trigger
            && self.concurrency == other.concurrency
            && self.batch_size == other.batch_size
            && self.batch_window_ms == other.batch_window_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn triggers_parse_and_print() {
        for text in [
            "none",
            "http",
            "topic:orders",
            "topic:orders@latest",
            "topic:orders@1700000000000",
            "table:users",
            "table:users@latest",
            "table:USERS@1700000000000",
            "cron:*/5 * * * *",
            "cron:0 30 9 * * MON-FRI",
            "cron:* * * * * *",
        ] {
            let trigger = Trigger::parse(text).expect(text);
            assert_eq!(trigger.to_string(), text);
            assert_eq!(Trigger::parse(&trigger.to_string()).as_ref(), Ok(&trigger), "{text}");
        }
        assert_eq!(Trigger::parse("topic:orders@earliest"), Ok(Trigger::topic("orders")));
        assert_eq!(Trigger::parse("table:users@earliest"), Ok(Trigger::table("users")));
        assert_eq!(Trigger::parse("cron: 0 * * * * "), Ok(Trigger::cron("0 * * * *")));
        for bad in [
            "",
            "topic:",
            "table:",
            "table:@latest",
            "cron:* * *",
            "cron:",
            "cron:61 * * * *",
            "cron:* * * * * * 2030",
            "topic:x@soon",
            "table:x@soon",
            "HTTP",
            "http:x",
        ] {
            assert!(Trigger::parse(bad).is_err(), "{bad}");
        }
    }

    /// Specs stored before table, cron and http triggers existed still load.
    #[test]
    fn stored_triggers_keep_their_json_form() {
        let old = r#"{"kind":"topic","topic":"orders","start":{"at":"latest"}}"#;
        let trigger: Trigger = serde_json::from_str(old).unwrap();
        assert_eq!(trigger, Trigger::Topic { topic: "orders".into(), start: StartPosition::Latest });
        assert_eq!(serde_json::to_string(&trigger).unwrap(), old);
        assert_eq!(serde_json::from_str::<Trigger>(r#"{"kind":"none"}"#).unwrap(), Trigger::None);
        for trigger in [Trigger::table("users"), Trigger::cron("* * * * *"), Trigger::Http] {
            let json = serde_json::to_string(&trigger).unwrap();
            assert_eq!(serde_json::from_str::<Trigger>(&json).unwrap(), trigger, "{json}");
        }
        assert_eq!(serde_json::to_string(&Trigger::Http).unwrap(), r#"{"kind":"http"}"#);
        assert_eq!(
            serde_json::to_string(&Trigger::cron("0 * * * *")).unwrap(),
            r#"{"kind":"cron","expression":"0 * * * *"}"#
        );
    }

    #[test]
    fn a_bad_cron_expression_is_refused_by_validate() {
        let bad = FunctionConfig { trigger: Trigger::cron("* * nonsense"), ..FunctionConfig::default() };
        assert_eq!(bad.validate().map_err(|e| e.0), Err("trigger"));
        let good = FunctionConfig { trigger: Trigger::cron("0 0 * * *"), ..FunctionConfig::default() };
        assert!(good.validate().is_ok());
    }

    #[test]
    fn config_bounds_are_checked() {
        assert!(FunctionConfig::default().validate().is_ok());
        let bad = FunctionConfig { concurrency: 0, ..FunctionConfig::default() };
        assert_eq!(bad.validate().map_err(|e| e.0), Err("concurrency"));
        let bad = FunctionConfig { retry_backoff_initial_ms: 5, retry_backoff_max_ms: 1, ..FunctionConfig::default() };
        assert_eq!(bad.validate().map_err(|e| e.0), Err("retry_backoff_initial_ms"));
    }

    #[test]
    fn spec_round_trips_as_json() {
        let config = FunctionConfig { trigger: Trigger::topic("orders"), ..FunctionConfig::default() };
        let spec = FunctionSpec::new("f", "ab".repeat(32), &config, 3, 42);
        assert_eq!(spec.dead_letter_topic, "f-dlq");
        let json = serde_json::to_string(&spec).unwrap();
        assert_eq!(serde_json::from_str::<FunctionSpec>(&json).unwrap(), spec);
    }
}
