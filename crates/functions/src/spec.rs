//! What a deployed function is: its [`FunctionSpec`] (stored as JSON in the compacted
//! topic `__runnel_functions`), its [`Trigger`], and the [`FunctionConfig`] a deploy asks
//! for, with the checks against [`limits`](crate::limits).

use serde::{Deserialize, Serialize};

use crate::limits::*;

/// What makes a function run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Trigger {
    /// No trigger: the function runs only when invoked directly.
    None,
    /// Every partition of a topic, from committed positions (at least once).
    Topic { topic: String, start: StartPosition },
}

impl Trigger {
    /// A topic trigger starting at the earliest offset.
    pub fn topic(topic: impl Into<String>) -> Self {
        Trigger::Topic { topic: topic.into(), start: StartPosition::Earliest }
    }

    /// Parses the CLI form: `none`, `topic:NAME`, `topic:NAME@earliest|latest|TIMESTAMP_MS`.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text == "none" {
            return Ok(Trigger::None);
        }
        let Some(rest) = text.strip_prefix("topic:") else {
            return Err(format!("trigger {text:?} is not `none` or `topic:NAME[@earliest|latest|TIMESTAMP_MS]`"));
        };
        let (topic, start) = match rest.split_once('@') {
            None => (rest, StartPosition::Earliest),
            Some((topic, "earliest")) => (topic, StartPosition::Earliest),
            Some((topic, "latest")) => (topic, StartPosition::Latest),
            Some((topic, ms)) => match ms.parse() {
                Ok(ms) => (topic, StartPosition::Timestamp { ms }),
                Err(_) => return Err(format!("trigger start {ms:?} is not earliest, latest or milliseconds")),
            },
        };
        if topic.is_empty() {
            return Err("trigger topic is empty".to_string());
        }
        Ok(Trigger::Topic { topic: topic.to_string(), start })
    }
}

impl std::fmt::Display for Trigger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Trigger::None => f.write_str("none"),
            Trigger::Topic { topic, start: StartPosition::Earliest } => write!(f, "topic:{topic}"),
            Trigger::Topic { topic, start: StartPosition::Latest } => write!(f, "topic:{topic}@latest"),
            Trigger::Topic { topic, start: StartPosition::Timestamp { ms } } => write!(f, "topic:{topic}@{ms}"),
        }
    }
}

/// Where a topic trigger starts in a partition it has no committed position for.
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
        if let Trigger::Topic { topic, .. } = &self.trigger
            && topic.is_empty()
        {
            return Err(("trigger", "topic is empty".to_string()));
        }
        Ok(())
    }
}

/// A deployed function as stored in `__runnel_functions` (key: the name).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionSpec {
    pub name: String,
    /// SHA-256 (hex) of the component binary in `<data_dir>/functions/components/`.
    pub component_sha256: String,
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
        for text in ["none", "topic:orders", "topic:orders@latest", "topic:orders@1700000000000"] {
            let trigger = Trigger::parse(text).expect(text);
            assert_eq!(trigger.to_string(), text);
        }
        assert_eq!(Trigger::parse("topic:orders@earliest"), Ok(Trigger::topic("orders")));
        for bad in ["", "topic:", "cron:* * *", "topic:x@soon"] {
            assert!(Trigger::parse(bad).is_err(), "{bad}");
        }
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
