//! Serialization formats of keys and values, as ksqlDB names them: JSON, DELIMITED, KAFKA and
//! NONE. A record's bytes become a row of typed values and back.
//!
//! JSON follows ksqlDB: an object whose fields match columns case-insensitively (exact case
//! first); numbers convert to the column type when exact; TIMESTAMP as epoch milliseconds (or
//! an ISO string on input), DATE as epoch days, TIME as milliseconds of day, BYTES as base64,
//! DECIMAL as a number. A single-column schema may be "unwrapped" (the bare value).

use std::sync::Arc;

use serde::Deserialize;
use serde_json::{Map, Number, Value as Json};

use crate::expr::cast;
use crate::types::{Field, SqlType};
use crate::value::{Decimal, Value, base64, base64_decode};

/// Deepest JSON nesting accepted when reading a record.
pub const JSON_DEPTH_MAX: usize = 64;

/// A record that does not deserialize, with the reason (for the processing log).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct FormatError(pub String);

fn err(message: impl Into<String>) -> FormatError {
    FormatError(message.into())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    Json,
    Delimited,
    Kafka,
    None,
}

impl Format {
    pub fn parse(name: &str) -> Option<Format> {
        Some(match name.to_ascii_uppercase().as_str() {
            "JSON" => Format::Json,
            "DELIMITED" => Format::Delimited,
            "KAFKA" => Format::Kafka,
            "NONE" => Format::None,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Format::Json => "JSON",
            Format::Delimited => "DELIMITED",
            Format::Kafka => "KAFKA",
            Format::None => "NONE",
        }
    }
}

/// How a format reads and writes the columns of one side (key or value) of a record.
#[derive(Debug, Clone)]
pub struct Serde {
    pub format: Format,
    pub columns: Vec<Field>,
    /// JSON: a single column written and read as the bare value (`WRAP_SINGLE_VALUE=false`).
    pub unwrapped: bool,
    /// DELIMITED: the separator character.
    pub delimiter: char,
    /// JSON objects: columns no query reads (left NULL, their fields skipped unparsed);
    /// empty when every column is read.
    pub skip: Vec<bool>,
    /// Whether no two column names are equal ignoring ASCII case, so that a JSON field
    /// matching a column at all matches no other column (see [`ObjectVisitor`]). Worked out
    /// from `columns` when the serde is made; `columns` is not changed afterwards.
    names_distinct: bool,
    /// JSON: what goes before each column's value in an object, `{"NAME":` for the first
    /// column and `,"NAME":` for the others, written once here rather than for every record.
    json_prefixes: Vec<Box<[u8]>>,
}

impl Serde {
    pub fn new(format: Format, columns: Vec<Field>) -> Serde {
        let names_distinct = names_distinct(&columns);
        let json_prefixes = if format == Format::Json { json_prefixes(&columns) } else { Vec::new() };
        Serde { format, columns, unwrapped: false, delimiter: ',', skip: Vec::new(), names_distinct, json_prefixes }
    }

    /// Checks that the format can carry these columns, with an error naming the column.
    pub fn validate(&self, side: &str) -> Result<(), FormatError> {
        match self.format {
            Format::None if !self.columns.is_empty() => {
                Err(err(format!("{side} format NONE carries no columns, but {} are declared", self.columns.len())))
            }
            Format::Kafka if self.columns.len() > 1 => {
                Err(err(format!("{side} format KAFKA carries one column, but {} are declared", self.columns.len())))
            }
            Format::Kafka => match self.columns.first().map(|c| &c.ty) {
                None | Some(SqlType::Int | SqlType::Bigint | SqlType::Double | SqlType::String | SqlType::Bytes) => {
                    Ok(())
                }
                Some(other) => Err(err(format!(
                    "{side} format KAFKA supports INT, BIGINT, DOUBLE, STRING and BYTES, not {other} (column {})",
                    self.columns[0].name
                ))),
            },
            Format::Delimited => match self.columns.iter().find(|c| !c.ty.is_primitive()) {
                Some(c) => Err(err(format!(
                    "{side} format DELIMITED supports primitive types only, not {} (column {})",
                    c.ty, c.name
                ))),
                None => Ok(()),
            },
            _ => Ok(()),
        }
    }

    /// Appends this side's columns to `row` (as [`Serde::deserialize`] gives them), reading a
    /// JSON object straight into the row.
    pub fn deserialize_into(&self, bytes: Option<&[u8]>, row: &mut Vec<Value>) -> Result<(), FormatError> {
        if let (Format::Json, Some(b)) = (self.format, bytes)
            && !self.unwrapped
            && b.iter().find(|c| !c.is_ascii_whitespace()) == Some(&b'{')
        {
            return self.deserialize_object_into(b, row);
        }
        if bytes.is_none() {
            // As `deserialize` gives it, without a vector in between.
            row.extend(std::iter::repeat_n(Value::Null, self.columns.len()));
            return Ok(());
        }
        row.extend(self.deserialize(bytes)?);
        Ok(())
    }

    /// The row of this side's columns from the record bytes (`None` = a null key or value).
    pub fn deserialize(&self, bytes: Option<&[u8]>) -> Result<Vec<Value>, FormatError> {
        let Some(bytes) = bytes else { return Ok(vec![Value::Null; self.columns.len()]) };
        match self.format {
            Format::None => Ok(Vec::new()),
            Format::Kafka => {
                let Some(col) = self.columns.first() else { return Ok(Vec::new()) };
                Ok(vec![kafka_read(bytes, &col.ty)?])
            }
            Format::Delimited => {
                let text = std::str::from_utf8(bytes).map_err(|_| err("DELIMITED record is not UTF-8"))?;
                let fields = split_delimited(text, self.delimiter);
                if fields.len() != self.columns.len() {
                    return Err(err(format!(
                        "DELIMITED record has {} fields, expected {}",
                        fields.len(),
                        self.columns.len()
                    )));
                }
                fields
                    .into_iter()
                    .zip(&self.columns)
                    .map(|(f, c)| match f {
                        None => Ok(Value::Null),
                        Some(text) => cast(Value::string(&text), &SqlType::String, &c.ty)
                            .map_err(|e| err(format!("column {}: {e}", c.name))),
                    })
                    .collect()
            }
            Format::Json => {
                let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
                if !self.unwrapped && first == Some(&b'{') {
                    return self.deserialize_object(bytes);
                }
                let json: Json = parse_json(bytes)?;
                if self.unwrapped || (self.columns.len() == 1 && !json.is_object()) {
                    let col = &self.columns[0];
                    return Ok(vec![from_json(&json, &col.ty).map_err(|e| err(format!("column {}: {e}", col.name)))?]);
                }
                let Json::Object(map) = json else {
                    return Err(err("JSON record is not an object"));
                };
                self.columns
                    .iter()
                    .map(|c| match lookup(&map, &c.name) {
                        None | Some(Json::Null) => Ok(Value::Null),
                        Some(v) => from_json(v, &c.ty).map_err(|e| err(format!("column {}: {e}", c.name))),
                    })
                    .collect()
            }
        }
    }

    /// The record bytes of this side's columns (`None` when every value is NULL for KAFKA, or
    /// for NONE).
    pub fn serialize(&self, values: &[Value]) -> Option<Vec<u8>> {
        match self.format {
            Format::None => None,
            Format::Kafka => {
                let (col, v) = (self.columns.first()?, values.first()?);
                kafka_write(v, &col.ty)
            }
            Format::Delimited => {
                let d = self.delimiter.to_string();
                let fields: Vec<String> = values
                    .iter()
                    .map(|v| match v {
                        Value::Null => String::new(),
                        Value::String(s) if s.contains(self.delimiter) || s.contains('"') || s.contains('\n') => {
                            format!("\"{}\"", s.replace('"', "\"\""))
                        }
                        other => cast(other.clone(), &SqlType::Bigint, &SqlType::String)
                            .map(|s| s.to_string())
                            .unwrap_or_else(|_| other.to_string()),
                    })
                    .collect();
                Some(fields.join(&d).into_bytes())
            }
            Format::Json => {
                let mut out = Vec::with_capacity(64 + 32 * self.columns.len());
                self.serialize_into(values, &mut out);
                Some(out)
            }
        }
    }

    /// [`Serde::serialize`] appending to `out`; `false` (nothing appended) where it gives
    /// `None`. JSON objects are written straight into `out`.
    pub fn serialize_into(&self, values: &[Value], out: &mut Vec<u8>) -> bool {
        if self.format != Format::Json {
            return match self.serialize(values) {
                Some(bytes) => {
                    out.extend_from_slice(&bytes);
                    true
                }
                None => false,
            };
        }
        if self.unwrapped && self.columns.len() == 1 {
            out.extend_from_slice(to_json(&values[0], &self.columns[0].ty).to_string().as_bytes());
            return true;
        }
        // Written directly, without building a JSON tree.
        debug_assert!(self.json_prefixes == json_prefixes(&self.columns), "columns changed after Serde::new");
        let written = self.columns.len().min(values.len());
        if written == 0 {
            out.push(b'{');
        }
        for ((prefix, c), v) in self.json_prefixes.iter().zip(&self.columns).zip(values) {
            out.extend_from_slice(prefix);
            write_json_value(out, v, &c.ty);
        }
        out.push(b'}');
        true
    }
}

impl Serde {
    /// A JSON object read field by field into the columns, without building the whole tree:
    /// each column's value is parsed on its own (and converted by [`from_json`]), other fields
    /// are skipped. serde_json bounds nesting (128 levels).
    fn deserialize_object(&self, bytes: &[u8]) -> Result<Vec<Value>, FormatError> {
        let mut row = Vec::with_capacity(self.columns.len());
        self.deserialize_object_into(bytes, &mut row)?;
        Ok(row)
    }

    fn deserialize_object_into(&self, bytes: &[u8], row: &mut Vec<Value>) -> Result<(), FormatError> {
        let base = row.len();
        row.resize(base + self.columns.len(), Value::Null);
        let mut de = serde_json::Deserializer::from_slice(bytes);
        // Which columns were matched, on the stack for the usual few columns.
        let mut small = [Seen::No; SEEN_ON_STACK];
        let mut large = Vec::new();
        let seen: &mut [Seen] = if self.columns.len() <= SEEN_ON_STACK {
            &mut small[..self.columns.len()]
        } else {
            large.resize(self.columns.len(), Seen::No);
            &mut large
        };
        debug_assert_eq!(self.names_distinct, names_distinct(&self.columns), "columns changed after Serde::new");
        let visitor = ObjectVisitor {
            columns: &self.columns,
            skip: &self.skip,
            out: &mut row[base..],
            seen,
            raw: Vec::new(),
            names_distinct: self.names_distinct,
        };
        let raw = serde::de::Deserializer::deserialize_map(&mut de, visitor)
            .map_err(|e| err(format!("invalid JSON: {e}")))?;
        de.end().map_err(|e| err(format!("invalid JSON: {e}")))?;
        for (i, json) in raw {
            let c = &self.columns[i];
            row[base + i] = match json {
                Json::Null => Value::Null,
                j => from_json(&j, &c.ty).map_err(|e| err(format!("column {}: {e}", c.name)))?,
            };
        }
        Ok(())
    }
}

/// [`Serde::json_prefixes`] for these columns.
fn json_prefixes(columns: &[Field]) -> Vec<Box<[u8]>> {
    columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let mut prefix = vec![if i == 0 { b'{' } else { b',' }];
            write_json_string(&mut prefix, &c.name);
            prefix.push(b':');
            prefix.into_boxed_slice()
        })
        .collect()
}

/// Whether `name` equals `column` ignoring ASCII case, and whether exactly.
fn name_matches(column: &[u8], name: &[u8]) -> (bool, bool) {
    if column.len() != name.len() {
        return (false, false);
    }
    let mut exact = true;
    for (&a, &b) in column.iter().zip(name) {
        if a != b {
            // Equal ignoring case only if they differ in the case bit and are letters.
            if a ^ b != 0x20 || !(a | 0x20).is_ascii_lowercase() {
                return (false, false);
            }
            exact = false;
        }
    }
    (true, exact)
}

/// Whether no two names are equal ignoring ASCII case.
fn names_distinct(columns: &[Field]) -> bool {
    columns.iter().enumerate().all(|(i, a)| columns[..i].iter().all(|b| !a.name.eq_ignore_ascii_case(&b.name)))
}

/// A field name's bytes with escapes expanded, borrowed from the input when it has none.
/// They are not checked to be UTF-8 as they are read: a name that matches a column is (column
/// names are), and [`ObjectVisitor`] checks the others, so a record with a field name that
/// is not UTF-8 is refused as before without paying for the check on every field.
struct FieldName<'de>(std::borrow::Cow<'de, [u8]>);

impl<'de> serde::Deserialize<'de> for FieldName<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = FieldName<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a field name")
            }
            fn visit_borrowed_bytes<E>(self, v: &'de [u8]) -> Result<FieldName<'de>, E> {
                Ok(FieldName(std::borrow::Cow::Borrowed(v)))
            }
            fn visit_bytes<E>(self, v: &[u8]) -> Result<FieldName<'de>, E> {
                Ok(FieldName(std::borrow::Cow::Owned(v.to_vec())))
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<FieldName<'de>, E> {
                Ok(FieldName(std::borrow::Cow::Borrowed(v.as_bytes())))
            }
            fn visit_str<E>(self, v: &str) -> Result<FieldName<'de>, E> {
                Ok(FieldName(std::borrow::Cow::Owned(v.as_bytes().to_vec())))
            }
        }
        d.deserialize_bytes(V)
    }
}

/// Reads an object's fields into the columns' slots of a row: per column, the exact name wins,
/// else the first case-insensitive match (as [`lookup`] chooses). Values needing conversion
/// from JSON are returned to be converted afterwards.
struct ObjectVisitor<'a> {
    columns: &'a [Field],
    skip: &'a [bool],
    out: &'a mut [Value],
    seen: &'a mut [Seen],
    raw: Vec<(usize, Json)>,
    /// See [`Serde::names_distinct`].
    names_distinct: bool,
}

impl ObjectVisitor<'_> {
    /// The column a field name matches, and whether exactly: the exact name wins, else the
    /// first case-insensitive match. Objects usually repeat the columns' order, so the column
    /// after the last one matched (`guess`) is tried first; with distinct names a match there
    /// is the only possible one, so the answer is the same as the full search's.
    fn column(&self, name: &[u8], guess: usize) -> (Option<usize>, bool) {
        if self.names_distinct
            && let Some(c) = self.columns.get(guess)
            && let (true, exact) = name_matches(c.name.as_bytes(), name)
        {
            return (Some(guess), exact);
        }
        let exact = self.columns.iter().position(|c| c.name.as_bytes() == name);
        let index = exact.or_else(|| self.columns.iter().position(|c| c.name.as_bytes().eq_ignore_ascii_case(name)));
        (index, exact.is_some())
    }
}

/// Columns whose match state is kept on the stack while reading a JSON object.
const SEEN_ON_STACK: usize = 64;

#[derive(Clone, Copy, PartialEq)]
enum Seen {
    No,
    CaseInsensitive,
    Exact,
}

/// A column's value as read: converted already (strings and integers, the common case), or
/// the field's JSON for [`from_json`].
enum Slot {
    Ready(Value),
    Raw(Json),
}

impl<'de> serde::de::Visitor<'de> for ObjectVisitor<'_> {
    type Value = Vec<(usize, Json)>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(mut self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut guess = 0;
        while let Some(FieldName(name)) = map.next_key()? {
            let (index, exact) = self.column(&name, guess);
            match index {
                Some(i) => guess = i + 1,
                None if std::str::from_utf8(&name).is_err() => {
                    return Err(serde::de::Error::custom("field name is not valid UTF-8"));
                }
                None => {}
            }
            match index {
                Some(i) if self.skip.get(i) == Some(&true) => {
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
                Some(i) if exact || self.seen[i] == Seen::No => {
                    let value = map.next_value_seed(ColumnSeed { ty: &self.columns[i].ty })?;
                    self.seen[i] = if exact { Seen::Exact } else { Seen::CaseInsensitive };
                    self.raw.retain(|(j, _)| *j != i);
                    match value {
                        Slot::Ready(v) => self.out[i] = v,
                        Slot::Raw(j) => {
                            self.out[i] = Value::Null;
                            self.raw.push((i, j));
                        }
                    }
                }
                _ => {
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
            }
        }
        Ok(self.raw)
    }
}

/// Reads one field for a column of type `ty`: a JSON string into STRING and a JSON integer into
/// INT or BIGINT directly; anything else as JSON, converted afterwards by [`from_json`] (so the
/// coercions are the same either way).
struct ColumnSeed<'a> {
    ty: &'a SqlType,
}

impl<'de> serde::de::DeserializeSeed<'de> for ColumnSeed<'_> {
    type Value = Slot;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Slot, D::Error> {
        match self.ty {
            SqlType::String | SqlType::Int | SqlType::Bigint => d.deserialize_any(self),
            _ => Json::deserialize(d).map(Slot::Raw),
        }
    }
}

impl<'de> serde::de::Visitor<'de> for ColumnSeed<'_> {
    type Value = Slot;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "a value for a {} column", self.ty)
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Slot, E> {
        Ok(match self.ty {
            SqlType::String => Slot::Ready(Value::String(Arc::from(v))),
            _ => Slot::Raw(Json::String(v.to_string())),
        })
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Slot, E> {
        Ok(match self.ty {
            SqlType::Bigint => Slot::Ready(Value::Bigint(v)),
            SqlType::Int if i32::try_from(v).is_ok() => Slot::Ready(Value::Int(v as i32)),
            _ => Slot::Raw(Json::from(v)),
        })
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Slot, E> {
        match i64::try_from(v) {
            Ok(i) => self.visit_i64(i),
            Err(_) => Ok(Slot::Raw(Json::from(v))),
        }
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Slot, E> {
        Ok(Slot::Raw(Number::from_f64(v).map(Json::Number).unwrap_or(Json::Null)))
    }

    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Slot, E> {
        Ok(Slot::Raw(Json::Bool(v)))
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Slot, E> {
        Ok(Slot::Raw(Json::Null))
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<Slot, E> {
        Ok(Slot::Raw(Json::Null))
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, seq: A) -> Result<Slot, A::Error> {
        Json::deserialize(serde::de::value::SeqAccessDeserializer::new(seq)).map(Slot::Raw)
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Slot, A::Error> {
        Json::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(Slot::Raw)
    }
}

fn write_json_string(out: &mut Vec<u8>, s: &str) {
    // serde_json escapes quotes, backslashes and control characters only: a string without
    // them (column names, most values) is written as it is.
    if !s.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\') {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
        return;
    }
    // Writing to a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// A value as JSON text, as [`to_json`] would write it.
fn write_json_value(out: &mut Vec<u8>, v: &Value, ty: &SqlType) {
    use std::io::Write;
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Boolean(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Int(i) => write_integer(out, i64::from(*i)),
        Value::Bigint(i) | Value::Timestamp(i) => write_integer(out, *i),
        Value::Double(d) if d.is_finite() => {
            let _ = serde_json::to_writer(&mut *out, d);
        }
        Value::Date(d) | Value::Time(d) => {
            let _ = write!(out, "{d}");
        }
        Value::String(s) => write_json_string(out, s),
        other => {
            let _ = serde_json::to_writer(&mut *out, &to_json(other, ty));
        }
    }
}

/// The decimal digits of 0 to 99, two bytes each.
const DIGIT_PAIRS: &[u8; 200] = b"\
0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";

/// Writes an integer in decimal without going through `fmt`, two digits at a time.
fn write_integer(out: &mut Vec<u8>, i: i64) {
    let mut buf = [0u8; 20];
    let mut at = buf.len();
    let mut n = i.unsigned_abs();
    while n >= 100 {
        let pair = (n % 100) as usize * 2;
        n /= 100;
        at -= 2;
        buf[at..at + 2].copy_from_slice(&DIGIT_PAIRS[pair..pair + 2]);
    }
    if n >= 10 {
        let pair = n as usize * 2;
        at -= 2;
        buf[at..at + 2].copy_from_slice(&DIGIT_PAIRS[pair..pair + 2]);
    } else {
        at -= 1;
        buf[at] = b'0' + n as u8;
    }
    if i < 0 {
        out.push(b'-');
    }
    out.extend_from_slice(&buf[at..]);
}

fn parse_json(bytes: &[u8]) -> Result<Json, FormatError> {
    // serde_json limits recursion to 128 levels itself; deeper documents are an error.
    let json: Json = serde_json::from_slice(bytes).map_err(|e| err(format!("invalid JSON: {e}")))?;
    if depth(&json) > JSON_DEPTH_MAX {
        return Err(err(format!("JSON nests deeper than {JSON_DEPTH_MAX} levels")));
    }
    Ok(json)
}

fn depth(j: &Json) -> usize {
    match j {
        Json::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        Json::Object(map) => 1 + map.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// A JSON field for a column: exact name first, then case-insensitive.
fn lookup<'a>(map: &'a Map<String, Json>, name: &str) -> Option<&'a Json> {
    map.get(name).or_else(|| map.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v))
}

/// CSV-like splitting: fields may be double-quoted (with "" for a quote); an empty field is NULL.
fn split_delimited(text: &str, delimiter: char) -> Vec<Option<String>> {
    let mut out = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut was_quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            '"' if quoted => quoted = false,
            '"' if field.is_empty() => {
                quoted = true;
                was_quoted = true;
            }
            c if c == delimiter && !quoted => {
                out.push(if field.is_empty() && !was_quoted { None } else { Some(std::mem::take(&mut field)) });
                was_quoted = false;
            }
            c => field.push(c),
        }
    }
    out.push(if field.is_empty() && !was_quoted { None } else { Some(field) });
    out
}

fn kafka_read(bytes: &[u8], ty: &SqlType) -> Result<Value, FormatError> {
    let fixed = |n: usize| -> Result<&[u8], FormatError> {
        if bytes.len() == n {
            Ok(bytes)
        } else {
            Err(err(format!("KAFKA {ty} needs {n} bytes, found {}", bytes.len())))
        }
    };
    Ok(match ty {
        SqlType::Int => Value::Int(i32::from_be_bytes(fixed(4)?.try_into().unwrap_or_default())),
        SqlType::Bigint => Value::Bigint(i64::from_be_bytes(fixed(8)?.try_into().unwrap_or_default())),
        SqlType::Double => Value::Double(f64::from_be_bytes(fixed(8)?.try_into().unwrap_or_default())),
        SqlType::String => {
            Value::String(Arc::from(std::str::from_utf8(bytes).map_err(|_| err("KAFKA STRING is not UTF-8"))?))
        }
        SqlType::Bytes => Value::Bytes(bytes.into()),
        other => return Err(err(format!("KAFKA format cannot read {other}"))),
    })
}

fn kafka_write(v: &Value, ty: &SqlType) -> Option<Vec<u8>> {
    Some(match (v, ty) {
        (Value::Null, _) => return None,
        (Value::Int(i), _) => i.to_be_bytes().to_vec(),
        (Value::Bigint(i), _) => i.to_be_bytes().to_vec(),
        (Value::Double(d), _) => d.to_be_bytes().to_vec(),
        (Value::String(s), _) => s.as_bytes().to_vec(),
        (Value::Bytes(b), _) => b.to_vec(),
        (other, _) => other.to_string().into_bytes(),
    })
}

/// A value as JSON, the way ksqlDB writes it.
pub fn to_json(v: &Value, ty: &SqlType) -> Json {
    match v {
        Value::Null => Json::Null,
        Value::Boolean(b) => Json::Bool(*b),
        Value::Int(i) => Json::from(*i),
        Value::Bigint(i) | Value::Timestamp(i) => Json::from(*i),
        Value::Date(d) | Value::Time(d) => Json::from(*d),
        Value::Double(d) => Number::from_f64(*d).map(Json::Number).unwrap_or(Json::Null),
        Value::Decimal(d) => {
            // Exact digits: serde_json's arbitrary-precision feature is off, so parse through
            // f64 only when the text round-trips; otherwise keep the digits as a string.
            let text = d.to_string();
            match text.parse::<f64>().ok().and_then(Number::from_f64) {
                Some(n) if Decimal::parse(&n.to_string()).is_some_and(|back| back.cmp_value(d).is_eq()) => {
                    Json::Number(n)
                }
                _ => Json::String(text),
            }
        }
        Value::String(s) => Json::String(s.to_string()),
        Value::Bytes(b) => Json::String(base64(b)),
        Value::Array(items) => {
            let item = match ty {
                SqlType::Array(t) => (**t).clone(),
                _ => SqlType::String,
            };
            Json::Array(items.iter().map(|x| to_json(x, &item)).collect())
        }
        Value::Map(entries) => {
            let vt = match ty {
                SqlType::Map(_, v) => (**v).clone(),
                _ => SqlType::String,
            };
            Json::Object(entries.iter().map(|(k, x)| (k.to_string(), to_json(x, &vt))).collect())
        }
        Value::Struct(values) => {
            let fields: &[Field] = match ty {
                SqlType::Struct(f) => f,
                _ => &[],
            };
            Json::Object(fields.iter().zip(values.iter()).map(|(f, x)| (f.name.clone(), to_json(x, &f.ty))).collect())
        }
    }
}

/// A JSON value as a value of `ty`, with ksqlDB's coercions.
pub fn from_json(j: &Json, ty: &SqlType) -> Result<Value, FormatError> {
    use SqlType as T;
    if j.is_null() {
        return Ok(Value::Null);
    }
    let mismatch = || err(format!("expected {ty}, found {}", short(j)));
    Ok(match ty {
        T::Boolean => match j {
            Json::Bool(b) => Value::Boolean(*b),
            Json::String(s) => cast(Value::string(s), &T::String, ty).map_err(|_| mismatch())?,
            _ => return Err(mismatch()),
        },
        T::Int | T::Bigint | T::Timestamp => {
            let i = match j {
                Json::Number(n) => match n.as_i64() {
                    Some(i) => i,
                    None => {
                        let f = n.as_f64().ok_or_else(mismatch)?;
                        if f.fract() != 0.0 || !f.is_finite() {
                            return Err(mismatch());
                        }
                        f as i64
                    }
                },
                Json::String(s) if *ty == T::Timestamp => {
                    return crate::functions::parse_iso_timestamp(s).map(Value::Timestamp).ok_or_else(mismatch);
                }
                Json::String(s) => s.trim().parse().map_err(|_| mismatch())?,
                _ => return Err(mismatch()),
            };
            match ty {
                T::Int => Value::Int(i32::try_from(i).map_err(|_| mismatch())?),
                T::Bigint => Value::Bigint(i),
                _ => Value::Timestamp(i),
            }
        }
        T::Double => match j {
            Json::Number(n) => Value::Double(n.as_f64().ok_or_else(mismatch)?),
            Json::String(s) => Value::Double(s.trim().parse().map_err(|_| mismatch())?),
            _ => return Err(mismatch()),
        },
        T::Decimal { precision, scale } => {
            let text = match j {
                Json::Number(n) => n.to_string(),
                Json::String(s) => s.clone(),
                _ => return Err(mismatch()),
            };
            let d = Decimal::parse(&text)
                .or_else(|| {
                    text.parse::<f64>().ok().and_then(|f| Decimal::parse(&format!("{f:.*}", usize::from(*scale))))
                })
                .ok_or_else(mismatch)?;
            Value::Decimal(d.fit(*precision, *scale).ok_or_else(|| err(format!("{text} does not fit {ty}")))?)
        }
        T::String => match j {
            Json::String(s) => Value::string(s),
            other => Value::string(&other.to_string()),
        },
        T::Bytes => match j {
            Json::String(s) => Value::Bytes(base64_decode(s).ok_or_else(mismatch)?.into()),
            _ => return Err(mismatch()),
        },
        T::Date => match j {
            Json::Number(n) => Value::Date(n.as_i64().and_then(|d| i32::try_from(d).ok()).ok_or_else(mismatch)?),
            Json::String(s) => Value::Date(crate::functions::parse_iso_date(s).ok_or_else(mismatch)?),
            _ => return Err(mismatch()),
        },
        T::Time => match j {
            Json::Number(n) => Value::Time(n.as_i64().and_then(|d| i32::try_from(d).ok()).ok_or_else(mismatch)?),
            Json::String(s) => Value::Time(crate::functions::parse_iso_time(s).ok_or_else(mismatch)?),
            _ => return Err(mismatch()),
        },
        T::Array(item) => match j {
            Json::Array(items) => {
                Value::Array(items.iter().map(|x| from_json(x, item)).collect::<Result<Vec<_>, _>>()?.into())
            }
            _ => return Err(mismatch()),
        },
        T::Map(k, v) => match j {
            Json::Object(map) => Value::Map(
                map.iter()
                    .map(|(key, x)| {
                        let key = cast(Value::string(key), &T::String, k).map_err(|e| err(e.0))?;
                        Ok((key, from_json(x, v)?))
                    })
                    .collect::<Result<Vec<_>, FormatError>>()?
                    .into(),
            ),
            _ => return Err(mismatch()),
        },
        T::Struct(fields) => match j {
            Json::Object(map) => Value::Struct(
                fields
                    .iter()
                    .map(|f| match lookup(map, &f.name) {
                        None => Ok(Value::Null),
                        Some(x) => from_json(x, &f.ty),
                    })
                    .collect::<Result<Vec<_>, _>>()?
                    .into(),
            ),
            _ => return Err(mismatch()),
        },
    })
}

/// A short description of a JSON value for errors (never the whole document).
fn short(j: &Json) -> String {
    match j {
        Json::Null => "null".into(),
        Json::Bool(b) => b.to_string(),
        Json::Number(n) => n.to_string(),
        Json::String(s) if s.chars().count() > 40 => format!("\"{}...\"", s.chars().take(40).collect::<String>()),
        Json::String(s) => format!("{s:?}"),
        Json::Array(_) => "an array".into(),
        Json::Object(_) => "an object".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_are_written_as_fmt_writes_them() {
        let mut cases = vec![0, 1, -1, 9, 10, 99, 100, 101, 999, 1000, -1000, i64::MAX, i64::MIN, 1_704_067_200_000];
        cases.extend(
            (0..64).map(|b| 1i64 << b).flat_map(|n| [n.wrapping_sub(1), n, n.wrapping_add(1), n.wrapping_neg()]),
        );
        for i in cases {
            let mut out = Vec::new();
            write_integer(&mut out, i);
            assert_eq!(String::from_utf8(out).unwrap(), i.to_string());
        }
    }

    #[test]
    fn strings_are_written_as_serde_json_writes_them() {
        for s in ["", "AUCTION", "caf\u{e9}", "a\"b", "back\\slash", "tab\there", "\u{1}", "\u{7f}", "\u{1F600}"] {
            let mut out = Vec::new();
            write_json_string(&mut out, s);
            assert_eq!(out, serde_json::to_vec(s).unwrap(), "{s:?}");
        }
    }

    #[test]
    fn name_matches_is_eq_ignore_ascii_case() {
        for a in 0..=255u8 {
            for b in 0..=255u8 {
                let (matches, exact) = name_matches(&[b'x', a], &[b'x', b]);
                assert_eq!(matches, [a].eq_ignore_ascii_case(&[b]), "{a} {b}");
                assert_eq!(exact, matches && a == b, "{a} {b}");
            }
        }
        // Every byte pair in the first and the second eight-byte word, at either end.
        for at in [0, 3, 7, 8, 9] {
            for a in 0..=255u8 {
                for b in 0..=255u8 {
                    let (mut x, mut y) = (*b"qWeRtYuIo9", *b"QwErTyUiO9");
                    (x[at], y[at]) = (a, b);
                    let (matches, exact) = name_matches(&x, &y);
                    assert_eq!(matches, x.eq_ignore_ascii_case(&y), "{at} {a} {b}");
                    assert!(!exact);
                    assert_eq!(name_matches(&x, &x), (true, true));
                }
            }
        }
        assert_eq!(name_matches(b"AUCTION", b"auction"), (true, false));
        assert_eq!(name_matches(b"", b""), (true, true));
        assert_eq!(name_matches(b"DATE_TIME", b"date_time"), (true, false));
        assert_eq!(name_matches(b"DATE_TIME", b"date\x7ftime"), (false, false));
        assert_eq!(name_matches(b"AUCTION", b"AUCTION"), (true, true));
        assert_eq!(name_matches(b"AUCTION", b"auctio"), (false, false));
    }

    #[test]
    fn field_names_match_columns_in_any_order() {
        // Columns named apart only by case: exact names must win wherever the fields are.
        let columns = |names: &[&str]| {
            names.iter().map(|n| Field { name: n.to_string(), ty: SqlType::Bigint }).collect::<Vec<_>>()
        };
        let serde = Serde::new(Format::Json, columns(&["A", "B", "C"]));
        let row = serde.deserialize(Some(br#"{"c":3,"b":2,"a":1}"#)).unwrap();
        assert_eq!(row, vec![Value::Bigint(1), Value::Bigint(2), Value::Bigint(3)]);
        let row = serde.deserialize(Some(br#"{"A":1,"x":9,"C":3}"#)).unwrap();
        assert_eq!(row, vec![Value::Bigint(1), Value::Null, Value::Bigint(3)]);
        let serde = Serde::new(Format::Json, columns(&["a", "A", "b"]));
        let row = serde.deserialize(Some(br#"{"a":1,"A":2,"b":3}"#)).unwrap();
        assert_eq!(row, vec![Value::Bigint(1), Value::Bigint(2), Value::Bigint(3)]);
        let row = serde.deserialize(Some(br#"{"A":2,"a":1,"B":3}"#)).unwrap();
        assert_eq!(row, vec![Value::Bigint(1), Value::Bigint(2), Value::Bigint(3)]);
        // A field name that is not UTF-8 is refused, matched or not.
        assert!(serde.deserialize(Some(b"{\"\xff\":1}")).is_err());
        assert!(serde.deserialize(Some(br#"{"\ud800":1}"#)).is_err());
    }

    fn cols(spec: &[(&str, SqlType)]) -> Vec<Field> {
        spec.iter().map(|(n, t)| Field { name: n.to_string(), ty: t.clone() }).collect()
    }

    #[test]
    fn json_round_trip_with_ksqldb_coercions() {
        let serde = Serde::new(
            Format::Json,
            cols(&[
                ("ID", SqlType::Bigint),
                ("AMOUNT", SqlType::Decimal { precision: 10, scale: 2 }),
                ("TS", SqlType::Timestamp),
                ("TAGS", SqlType::Array(Arc::new(SqlType::String))),
                ("camel", SqlType::Int),
            ]),
        );
        let row = serde
            .deserialize(Some(
                br#"{"id": 7, "Amount": 12.5, "ts": "2020-01-01T00:00:00Z", "tags": ["a"], "camel": "3"}"#,
            ))
            .unwrap();
        assert_eq!(row[0], Value::Bigint(7));
        assert_eq!(row[1], Value::Decimal(Decimal::parse("12.50").unwrap()));
        assert_eq!(row[2], Value::Timestamp(1_577_836_800_000));
        assert_eq!(row[4], Value::Int(3));
        let bytes = serde.serialize(&row).unwrap();
        assert_eq!(
            String::from_utf8(bytes).unwrap(),
            r#"{"ID":7,"AMOUNT":12.5,"TS":1577836800000,"TAGS":["a"],"camel":3}"#
        );
        assert!(serde.deserialize(Some(b"{not json")).is_err());
        assert!(serde.deserialize(Some(br#"{"id": "x"}"#)).unwrap_err().0.contains("column ID"));
        let deep = format!("{}{}", "[".repeat(100), "]".repeat(100));
        assert!(serde.deserialize(Some(deep.as_bytes())).is_err());
    }

    #[test]
    fn delimited_and_kafka() {
        let d =
            Serde::new(Format::Delimited, cols(&[("A", SqlType::Int), ("B", SqlType::String), ("C", SqlType::Double)]));
        assert_eq!(d.deserialize(Some(b"1,\"x,y\",")).unwrap(), vec![Value::Int(1), Value::string("x,y"), Value::Null]);
        assert_eq!(d.serialize(&[Value::Int(1), Value::string("x,y"), Value::Null]).unwrap(), b"1,\"x,y\",");
        assert!(d.deserialize(Some(b"1,2")).is_err());
        let k = Serde::new(Format::Kafka, cols(&[("K", SqlType::Bigint)]));
        assert_eq!(k.deserialize(Some(&5i64.to_be_bytes())).unwrap(), vec![Value::Bigint(5)]);
        assert!(k.deserialize(Some(b"abc")).is_err());
        assert!(Serde::new(Format::Kafka, cols(&[("K", SqlType::Boolean)])).validate("key").is_err());
    }
}
