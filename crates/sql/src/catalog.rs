//! Streams and tables: what each is over (topic, formats), its columns, and how a record of
//! its topic becomes a row.
//!
//! A row of a source is laid out as: the system columns `ROWTIME` (BIGINT, the record
//! timestamp), `ROWPARTITION` (INT) and `ROWOFFSET` (BIGINT), then the key columns, the value
//! columns and the header columns, in declaration order.

use std::collections::BTreeMap;

use crate::ast::{ColumnSource, CreateSource, Literal, Properties, SourceKind};
use crate::eventlog::{LogRecord, OutRecord};
use crate::expr::{Scope, cast};
use crate::format::{Format, FormatError, Serde};
use crate::types::{Field, SqlType, quote_ident};
use crate::value::Value;

/// Partitions of a topic created by CREATE STREAM/TABLE without PARTITIONS, or by a query.
pub const DEFAULT_PARTITIONS: u32 = 1;
/// Most partitions a SQL statement may create.
pub const PARTITIONS_MAX: u32 = 10_000;
/// Most columns of a stream or table.
pub const COLUMNS_MAX: usize = 10_000;

pub const ROWTIME: &str = "ROWTIME";
pub const ROWPARTITION: &str = "ROWPARTITION";
pub const ROWOFFSET: &str = "ROWOFFSET";
pub const WINDOWSTART: &str = "WINDOWSTART";
pub const WINDOWEND: &str = "WINDOWEND";
/// Columns every source has before its own.
pub const SYSTEM_COLUMNS: usize = 3;

/// A statement refused when it is submitted: unknown names, type errors, bad properties.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct SqlError(pub String);

pub(crate) fn sql_err(message: impl Into<String>) -> SqlError {
    SqlError(message.into())
}

/// A stream or a table.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceDesc {
    pub name: String,
    pub kind: SourceKind,
    pub topic: String,
    pub partitions: u32,
    pub key_format: Format,
    pub value_format: Format,
    pub key_columns: Vec<Field>,
    pub value_columns: Vec<Field>,
    /// Header columns: all headers (`None`) or one header's value.
    pub header_columns: Vec<(Field, Option<String>)>,
    /// `TIMESTAMP` property: the value column that gives ROWTIME, and its format for strings.
    pub timestamp: Option<(String, Option<String>)>,
    /// JSON values written as a bare value when there is one value column.
    pub wrap_single_value: bool,
    pub value_delimiter: char,
    /// The statement that created it.
    pub statement: String,
    /// The persistent query writing it (CREATE ... AS SELECT), if any.
    pub written_by: Option<String>,
    /// A windowed table (a windowed aggregation's output): its keys carry the window, and
    /// its rows have WINDOWSTART and WINDOWEND after the key columns.
    pub window: Option<crate::stateful::Window>,
    /// Tables: rows not updated for this long (in the table's event time) are removed
    /// (`ROW_TTL`; beyond ksqlDB).
    pub row_ttl_ms: Option<i64>,
}

impl SourceDesc {
    /// The columns expressions over this source see, qualified by `alias`.
    pub fn scope(&self, alias: &str) -> Scope {
        let mut scope = Scope::default();
        scope.push(Some(alias), ROWTIME, SqlType::Bigint);
        scope.push(Some(alias), ROWPARTITION, SqlType::Int);
        scope.push(Some(alias), ROWOFFSET, SqlType::Bigint);
        for f in &self.key_columns {
            scope.push(Some(alias), &f.name, f.ty.clone());
        }
        if self.window.is_some() {
            scope.push(Some(alias), WINDOWSTART, SqlType::Bigint);
            scope.push(Some(alias), WINDOWEND, SqlType::Bigint);
        }
        for f in &self.value_columns {
            scope.push(Some(alias), &f.name, f.ty.clone());
        }
        for (f, _) in &self.header_columns {
            scope.push(Some(alias), &f.name, f.ty.clone());
        }
        scope
    }

    /// Columns before the value columns in a row: system, key and window columns.
    pub fn value_offset(&self) -> usize {
        SYSTEM_COLUMNS + self.key_columns.len() + if self.window.is_some() { 2 } else { 0 }
    }

    /// Splits a record key into the key columns' bytes and the window (start, end) of a
    /// windowed table, as Kafka Streams lays them out: the key then the window start (8 bytes,
    /// big-endian) for time windows, the key then the end then the start for sessions.
    pub fn split_key<'a>(&self, key: Option<&'a [u8]>) -> Result<WindowedKey<'a>, FormatError> {
        let Some(window) = self.window else { return Ok((key, None)) };
        let key = key.ok_or_else(|| FormatError("a windowed key is missing".into()))?;
        let read = |b: &[u8]| -> i64 { i64::from_be_bytes(b.try_into().unwrap_or([0; 8])) };
        match window {
            crate::stateful::Window::Session { .. } => {
                if key.len() < 16 {
                    return Err(FormatError("a session-windowed key is shorter than 16 bytes".into()));
                }
                let (inner, tail) = key.split_at(key.len() - 16);
                Ok((Some(inner), Some((read(&tail[8..]), read(&tail[..8])))))
            }
            crate::stateful::Window::Tumbling { size } | crate::stateful::Window::Hopping { size, .. } => {
                if key.len() < 8 {
                    return Err(FormatError("a windowed key is shorter than 8 bytes".into()));
                }
                let (inner, tail) = key.split_at(key.len() - 8);
                let start = read(tail);
                Ok((Some(inner), Some((start, start.saturating_add(size)))))
            }
        }
    }

    /// The record key bytes for key bytes and a window.
    pub fn window_key(&self, key: Option<Vec<u8>>, window: Option<(i64, i64)>) -> Option<Vec<u8>> {
        let (Some(w), Some((start, end))) = (self.window, window) else { return key };
        let mut key = key.unwrap_or_default();
        if matches!(w, crate::stateful::Window::Session { .. }) {
            key.extend_from_slice(&end.to_be_bytes());
        }
        key.extend_from_slice(&start.to_be_bytes());
        Some(key)
    }

    /// Key, value and header columns (what `SELECT *` returns).
    pub fn columns(&self) -> Vec<Field> {
        let window: Vec<Field> = if self.window.is_some() {
            vec![
                Field { name: WINDOWSTART.into(), ty: SqlType::Bigint },
                Field { name: WINDOWEND.into(), ty: SqlType::Bigint },
            ]
        } else {
            Vec::new()
        };
        self.key_columns
            .iter()
            .chain(&window)
            .chain(&self.value_columns)
            .cloned()
            .chain(self.header_columns.iter().map(|(f, _)| f.clone()))
            .collect()
    }

    pub fn key_serde(&self) -> Serde {
        Serde::new(self.key_format, self.key_columns.clone())
    }

    pub fn value_serde(&self) -> Serde {
        let mut serde = Serde::new(self.value_format, self.value_columns.clone());
        serde.unwrapped = !self.wrap_single_value && self.value_columns.len() == 1;
        serde.delimiter = self.value_delimiter;
        serde
    }

    /// The value serde reading only the value columns marked in `used` (a mask over this
    /// source's scope, as [`SourceDesc::scope`] lays it out); the TIMESTAMP column is always read.
    pub fn value_serde_reading(&self, used: &[bool]) -> Serde {
        let mut serde = self.value_serde();
        let offset = self.value_offset();
        serde.skip = self
            .value_columns
            .iter()
            .enumerate()
            .map(|(i, f)| {
                !used.get(offset + i).copied().unwrap_or(true)
                    && self.timestamp.as_ref().is_none_or(|(column, _)| column != &f.name)
            })
            .collect();
        serde
    }

    /// The row of a record, or why it cannot be read. A table record with a null value is a
    /// deletion: `Ok(None)`.
    pub fn decode(&self, key: &Serde, value: &Serde, r: &LogRecord) -> Result<Option<Vec<Value>>, FormatError> {
        let mut row = Vec::new();
        Ok(self.decode_into(key, value, r, &mut row)?.then_some(row))
    }

    /// [`SourceDesc::decode`] into `row` (cleared first), so that a loop over records can
    /// reuse one row; `false` (and `row` empty) for a table deletion.
    pub fn decode_into(
        &self,
        key: &Serde,
        value: &Serde,
        r: &LogRecord,
        row: &mut Vec<Value>,
    ) -> Result<bool, FormatError> {
        row.clear();
        if self.kind == SourceKind::Table && r.value.is_none() {
            return Ok(false);
        }
        row.reserve(SYSTEM_COLUMNS + self.key_columns.len() + self.value_columns.len());
        row.push(Value::Bigint(r.timestamp));
        row.push(Value::Int(r.partition as i32));
        row.push(Value::Bigint(r.offset));
        let (key_bytes, window) = self.split_key(r.key.as_deref())?;
        key.deserialize_into(key_bytes, row)?;
        if let Some((start, end)) = window {
            row.push(Value::Bigint(start));
            row.push(Value::Bigint(end));
        }
        if self.value_format == Format::None {
            row.extend(std::iter::repeat_n(Value::Null, self.value_columns.len()));
        } else {
            value.deserialize_into(r.value.as_deref(), row)?;
        }
        for (_, which) in &self.header_columns {
            row.push(header_value(r, which.as_deref()));
        }
        if let Some((column, format)) = &self.timestamp {
            let index = self.value_offset()
                + self.value_columns.iter().position(|f| &f.name == column).unwrap_or(usize::MAX - self.value_offset());
            row[0] = match row.get(index) {
                Some(Value::Bigint(ms)) | Some(Value::Timestamp(ms)) => Value::Bigint(*ms),
                Some(Value::String(text)) => {
                    Value::Bigint(parse_timestamp_column(text, format.as_deref()).map_err(FormatError)?)
                }
                Some(Value::Null) | None => {
                    return Err(FormatError(format!("timestamp column {column} is null")));
                }
                Some(other) => return Err(FormatError(format!("timestamp column {column} holds {other}"))),
            };
        }
        Ok(true)
    }

    /// The record for a row laid out as key columns then value columns (system and header
    /// columns excluded).
    pub fn encode(
        &self,
        key: &Serde,
        value: &Serde,
        keys: &[Value],
        values: Option<&[Value]>,
        timestamp: i64,
    ) -> OutRecord {
        OutRecord {
            key: key.serialize(keys).map(Into::into),
            value: values.and_then(|v| value.serialize(v)).map(Into::into),
            headers: Vec::new(),
            timestamp,
        }
    }
}

fn header_value(r: &LogRecord, which: Option<&str>) -> Value {
    match which {
        Some(name) => r
            .headers
            .iter()
            .rev()
            .find(|h| h.key == name)
            .and_then(|h| h.value.as_ref())
            .map(|v| Value::Bytes(v.to_vec().into()))
            .unwrap_or(Value::Null),
        None => Value::Array(
            r.headers
                .iter()
                .map(|h| {
                    Value::Struct(
                        vec![
                            Value::string(&h.key),
                            h.value.as_ref().map(|v| Value::Bytes(v.to_vec().into())).unwrap_or(Value::Null),
                        ]
                        .into(),
                    )
                })
                .collect::<Vec<_>>()
                .into(),
        ),
    }
}

fn parse_timestamp_column(text: &str, format: Option<&str>) -> Result<i64, String> {
    match format {
        None => crate::functions::parse_iso_timestamp(text).ok_or_else(|| format!("cannot parse timestamp {text:?}")),
        Some(pattern) => crate::functions::parse_with_pattern(text, pattern).map_err(|e| e.0),
    }
}

/// A record key split into the key columns' bytes and the window of a windowed table.
pub type WindowedKey<'a> = (Option<&'a [u8]>, Option<(i64, i64)>);

/// The type of the `HEADERS` column.
pub fn headers_type() -> SqlType {
    SqlType::Array(std::sync::Arc::new(SqlType::Struct(
        vec![Field { name: "KEY".into(), ty: SqlType::String }, Field { name: "VALUE".into(), ty: SqlType::Bytes }]
            .into(),
    )))
}

/// Reads a string property.
fn prop_string(props: &Properties, name: &str) -> Result<Option<String>, SqlError> {
    match props.get(name) {
        None => Ok(None),
        Some(Literal::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(sql_err(format!("property {name} must be a quoted string, not {other}"))),
    }
}

fn prop_u32(props: &Properties, name: &str) -> Result<Option<u32>, SqlError> {
    match props.get(name) {
        None => Ok(None),
        Some(Literal::Integer(i)) => {
            u32::try_from(*i).map(Some).map_err(|_| sql_err(format!("property {name} out of range: {i}")))
        }
        Some(other) => Err(sql_err(format!("property {name} must be a whole number, not {other}"))),
    }
}

/// Properties a CREATE statement accepts.
pub const SOURCE_PROPERTIES: &[&str] = &[
    "KAFKA_TOPIC",
    "VALUE_FORMAT",
    "KEY_FORMAT",
    "FORMAT",
    "PARTITIONS",
    "REPLICAS",
    "TIMESTAMP",
    "TIMESTAMP_FORMAT",
    "VALUE_DELIMITER",
    "WRAP_SINGLE_VALUE",
    "RETENTION_MS",
    "ROW_TTL",
];

/// Formats and topic settings common to CREATE and CREATE ... AS SELECT.
#[derive(Debug, Clone)]
pub struct SourceOptions {
    pub topic: Option<String>,
    pub key_format: Format,
    pub value_format: Format,
    pub partitions: Option<u32>,
    pub timestamp: Option<(String, Option<String>)>,
    pub value_delimiter: char,
    pub wrap_single_value: bool,
    /// Tables: rows not updated for this long (in event time) are removed.
    pub row_ttl_ms: Option<i64>,
}

/// Parses a duration property: whole milliseconds, or `'n UNIT'` (MILLISECONDS, SECONDS,
/// MINUTES, HOURS, DAYS).
fn prop_duration(props: &Properties, name: &str) -> Result<Option<i64>, SqlError> {
    let bad = || sql_err(format!("{name} must be a duration such as '1 HOUR' or '30 MINUTES', or milliseconds"));
    let ms = match props.get(name) {
        None => return Ok(None),
        Some(Literal::Integer(i)) => *i,
        Some(Literal::String(text)) => {
            let mut words = text.split_whitespace();
            let (Some(n), Some(unit), None) = (words.next(), words.next(), words.next()) else { return Err(bad()) };
            let n: i64 = n.parse().map_err(|_| bad())?;
            let unit = unit.to_ascii_uppercase();
            let per = match unit.strip_suffix('S').unwrap_or(&unit) {
                "MILLISECOND" => 1,
                "SECOND" => 1_000,
                "MINUTE" => 60_000,
                "HOUR" => 3_600_000,
                "DAY" => 86_400_000,
                _ => return Err(bad()),
            };
            n.checked_mul(per).ok_or_else(bad)?
        }
        Some(_) => return Err(bad()),
    };
    if ms <= 0 {
        return Err(sql_err(format!("{name} must be positive")));
    }
    Ok(Some(ms))
}

impl SourceOptions {
    pub fn from_properties(
        props: &Properties,
        default_value_format: Option<Format>,
    ) -> Result<SourceOptions, SqlError> {
        if let Some(unknown) = props.keys().find(|k| !SOURCE_PROPERTIES.contains(&k.as_str())) {
            return Err(sql_err(format!("unknown property {unknown}; accepted: {}", SOURCE_PROPERTIES.join(", "))));
        }
        let format = |name: &str| -> Result<Option<Format>, SqlError> {
            prop_string(props, name)?
                .map(|f| {
                    Format::parse(&f).ok_or_else(|| {
                        sql_err(format!("{name} {f} is not supported: JSON, DELIMITED, KAFKA or NONE (Avro, Protobuf and JSON_SR need a schema registry)"))
                    })
                })
                .transpose()
        };
        let both = format("FORMAT")?;
        let value_format = format("VALUE_FORMAT")?.or(both).or(default_value_format).ok_or_else(|| {
            sql_err("VALUE_FORMAT (or FORMAT) is required, e.g. WITH (KAFKA_TOPIC='orders', VALUE_FORMAT='JSON')")
        })?;
        let key_format = format("KEY_FORMAT")?.or(both).unwrap_or(Format::Kafka);
        let partitions = prop_u32(props, "PARTITIONS")?;
        if let Some(p) = partitions
            && (p == 0 || p > PARTITIONS_MAX)
        {
            return Err(sql_err(format!("PARTITIONS must be 1 to {PARTITIONS_MAX}")));
        }
        let delimiter = match prop_string(props, "VALUE_DELIMITER")?.as_deref() {
            None => ',',
            Some("TAB") => '\t',
            Some("SPACE") => ' ',
            Some(d) if d.chars().count() == 1 => d.chars().next().unwrap_or(','),
            Some(d) => return Err(sql_err(format!("VALUE_DELIMITER must be one character, TAB or SPACE, not {d:?}"))),
        };
        let wrap = match props.get("WRAP_SINGLE_VALUE") {
            None => true,
            Some(Literal::Boolean(b)) => *b,
            Some(other) => return Err(sql_err(format!("WRAP_SINGLE_VALUE must be true or false, not {other}"))),
        };
        let timestamp = prop_string(props, "TIMESTAMP")?
            .map(|c| (normalise_column(&c), prop_string(props, "TIMESTAMP_FORMAT").ok().flatten()));
        Ok(SourceOptions {
            topic: prop_string(props, "KAFKA_TOPIC")?,
            key_format,
            value_format,
            partitions,
            timestamp,
            value_delimiter: delimiter,
            wrap_single_value: wrap,
            row_ttl_ms: prop_duration(props, "ROW_TTL")?,
        })
    }
}

/// A column named in a property string: quoted names keep their case, others are upper-cased.
fn normalise_column(name: &str) -> String {
    match name.strip_prefix('`').and_then(|n| n.strip_suffix('`')) {
        Some(quoted) => quoted.to_string(),
        None => name.to_ascii_uppercase(),
    }
}

/// Builds the description of `CREATE STREAM|TABLE name (columns) WITH (...)`.
pub fn describe_create(
    c: &CreateSource,
    statement: &str,
    topic_partitions: Option<u32>,
) -> Result<SourceDesc, SqlError> {
    let options = SourceOptions::from_properties(&c.properties, None)?;
    let topic = options
        .topic
        .clone()
        .ok_or_else(|| sql_err("KAFKA_TOPIC is required, e.g. WITH (KAFKA_TOPIC='orders', VALUE_FORMAT='JSON')"))?;
    if c.columns.len() > COLUMNS_MAX {
        return Err(sql_err(format!("at most {COLUMNS_MAX} columns")));
    }
    let mut key_columns = Vec::new();
    let mut value_columns = Vec::new();
    let mut header_columns = Vec::new();
    let mut seen = BTreeMap::new();
    for col in &c.columns {
        if [ROWTIME, ROWPARTITION, ROWOFFSET, "WINDOWSTART", "WINDOWEND"].contains(&col.name.as_str()) {
            return Err(sql_err(format!("{} is a reserved system column name", col.name)));
        }
        if seen.insert(col.name.clone(), ()).is_some() {
            return Err(sql_err(format!("column {} is declared twice", quote_ident(&col.name))));
        }
        let field = Field { name: col.name.clone(), ty: col.ty.clone() };
        match &col.source {
            ColumnSource::Key => key_columns.push(field),
            ColumnSource::Value => value_columns.push(field),
            ColumnSource::Headers(None) => {
                if col.ty != headers_type() {
                    return Err(sql_err(format!("HEADERS column {} must be {}", col.name, headers_type())));
                }
                header_columns.push((field, None));
            }
            ColumnSource::Headers(Some(k)) => {
                if col.ty != SqlType::Bytes {
                    return Err(sql_err(format!("HEADER('{k}') column {} must be BYTES", col.name)));
                }
                header_columns.push((field, Some(k.clone())));
            }
        }
    }
    if c.kind == SourceKind::Stream && options.row_ttl_ms.is_some() {
        return Err(sql_err("ROW_TTL applies to tables"));
    }
    if c.kind == SourceKind::Table && key_columns.is_empty() {
        return Err(sql_err(format!(
            "table {} needs a PRIMARY KEY column, e.g. CREATE TABLE {} (ID BIGINT PRIMARY KEY, ...)",
            c.name, c.name
        )));
    }
    if let Some((column, _)) = &options.timestamp {
        let Some(f) = value_columns.iter().find(|f| &f.name == column) else {
            return Err(sql_err(format!("TIMESTAMP column {column} is not a value column")));
        };
        if !matches!(f.ty, SqlType::Bigint | SqlType::Timestamp | SqlType::String) {
            return Err(sql_err(format!(
                "TIMESTAMP column {column} must be BIGINT, TIMESTAMP or STRING, not {}",
                f.ty
            )));
        }
    }
    let partitions = match (topic_partitions, options.partitions) {
        (Some(existing), Some(asked)) if existing != asked => {
            return Err(sql_err(format!("topic {topic} has {existing} partitions, but PARTITIONS={asked} was given")));
        }
        (Some(existing), _) => existing,
        (None, Some(asked)) => asked,
        (None, None) => {
            return Err(sql_err(format!(
                "topic {topic} does not exist: give PARTITIONS in the WITH clause to create it"
            )));
        }
    };
    let desc = SourceDesc {
        name: c.name.clone(),
        kind: c.kind,
        topic,
        partitions,
        key_format: options.key_format,
        value_format: options.value_format,
        key_columns,
        value_columns,
        header_columns,
        timestamp: options.timestamp,
        wrap_single_value: options.wrap_single_value,
        value_delimiter: options.value_delimiter,
        statement: statement.to_string(),
        written_by: None,
        window: None,
        row_ttl_ms: options.row_ttl_ms,
    };
    desc.key_serde().validate("KEY").map_err(|e| sql_err(e.0))?;
    desc.value_serde().validate("VALUE").map_err(|e| sql_err(e.0))?;
    Ok(desc)
}

/// Casts a row's values to the given columns' types (INSERT VALUES, query outputs).
pub fn conform(values: Vec<(Value, SqlType)>, columns: &[Field]) -> Result<Vec<Value>, SqlError> {
    values
        .into_iter()
        .zip(columns)
        .map(|((v, from), f)| cast(v, &from, &f.ty).map_err(|e| sql_err(format!("column {}: {e}", f.name))))
        .collect()
}
