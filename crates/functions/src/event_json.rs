//! Events as JSON, for people: the input of `runnel fn test` and `runnel fn invoke` (one
//! event per line) and of `POST /v1/functions/NAME/invoke`, and how outputs are printed.
//! The shape is the one `runnel produce --format json` reads and `runnel consume --output
//! json` prints, so events captured from a topic can be fed to a function as they are:
//!
//! ```json
//! {"topic": "orders", "partition": 0, "offset": 5, "timestamp": 1764220000000,
//!  "key": "alice", "value": {"item": "book", "qty": 2}, "headers": {"trace": "abc"}}
//! ```
//!
//! Only what the function reads is needed; the rest has defaults. A key, value or header
//! value is `null` (none), a JSON string (its UTF-8 text), `{"base64": "..."}` (bytes that
//! are not text), or any other JSON (its compact text: an object value is stored as the
//! JSON text a producer would have written). Outputs print keys and values the same way:
//! text when UTF-8, else `{"base64": "..."}`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Deserialize;
use serde_json::{Map, Value as Json};

use crate::bindings::{Event, Header, OutputEvent};

/// Why an event's JSON is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid event: {0}")]
pub struct EventJsonError(String);

/// An input event as JSON (see the module documentation).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventJson {
    #[serde(default)]
    pub topic: String,
    #[serde(default)]
    pub partition: i32,
    /// The event's offset; by default its position in the input.
    #[serde(default)]
    pub offset: Option<i64>,
    /// Milliseconds since the Unix epoch; by default the time the input is read.
    #[serde(default)]
    pub timestamp: Option<i64>,
    #[serde(default)]
    pub key: Json,
    #[serde(default)]
    pub value: Json,
    /// Header names and values.
    #[serde(default)]
    pub headers: Map<String, Json>,
}

impl EventJson {
    /// The event, with `offset` and `timestamp` as defaults for those not given.
    pub fn into_event(self, offset: i64, timestamp: i64) -> Result<Event, EventJsonError> {
        let headers = self
            .headers
            .iter()
            .map(|(key, value)| {
                let value = bytes_of(&format!("header {key:?}"), value)?.unwrap_or_default();
                Ok(Header { key: key.clone(), value })
            })
            .collect::<Result<_, EventJsonError>>()?;
        Ok(Event {
            key: bytes_of("key", &self.key)?,
            value: bytes_of("value", &self.value)?,
            headers,
            topic: self.topic,
            partition: self.partition,
            offset: self.offset.unwrap_or(offset),
            timestamp_ms: self.timestamp.unwrap_or(timestamp),
        })
    }
}

/// Parses one event (a JSON object); `offset` and `timestamp` are the defaults.
pub fn parse_event(text: &str, offset: i64, timestamp: i64) -> Result<Event, EventJsonError> {
    let json: EventJson = serde_json::from_str(text).map_err(|e| EventJsonError(e.to_string()))?;
    json.into_event(offset, timestamp)
}

fn bytes_of(what: &str, json: &Json) -> Result<Option<Vec<u8>>, EventJsonError> {
    match json {
        Json::Null => Ok(None),
        Json::String(s) => Ok(Some(s.clone().into_bytes())),
        Json::Object(o) if o.len() == 1 && o.get("base64").is_some_and(Json::is_string) => {
            let text = o.get("base64").and_then(Json::as_str).unwrap_or_default();
            BASE64
                .decode(text.as_bytes())
                .map(Some)
                .map_err(|e| EventJsonError(format!("{what} is not valid base64: {e}")))
        }
        other => Ok(Some(other.to_string().into_bytes())),
    }
}

/// An output event as JSON (see the module documentation).
pub fn output_json(output: &OutputEvent) -> Json {
    let mut object = Map::new();
    object.insert("topic".to_string(), Json::String(output.topic.clone()));
    object.insert("key".to_string(), bytes_json(output.key.as_deref()));
    object.insert("value".to_string(), bytes_json(output.value.as_deref()));
    if !output.headers.is_empty() {
        let headers = output.headers.iter().map(|h| (h.key.clone(), bytes_json(Some(&h.value)))).collect();
        object.insert("headers".to_string(), Json::Object(headers));
    }
    Json::Object(object)
}

/// Bytes as text when they are UTF-8, else `{"base64": "..."}`; `null` for none.
fn bytes_json(bytes: Option<&[u8]>) -> Json {
    match bytes {
        None => Json::Null,
        Some(bytes) => match std::str::from_utf8(bytes) {
            Ok(text) => Json::String(text.to_string()),
            Err(_) => serde_json::json!({ "base64": BASE64.encode(bytes) }),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_parse_with_defaults() {
        let event = parse_event(r#"{"topic":"orders","key":"alice","value":{"qty":2}}"#, 7, 1000).unwrap();
        assert_eq!(event.topic, "orders");
        assert_eq!(event.key.as_deref(), Some(&b"alice"[..]));
        assert_eq!(event.value.as_deref(), Some(&br#"{"qty":2}"#[..]));
        assert_eq!((event.offset, event.timestamp_ms, event.partition), (7, 1000, 0));
        let event = parse_event(r#"{"value":{"base64":"/wA="},"headers":{"h":"v"},"offset":3,"timestamp":5}"#, 7, 1000)
            .unwrap();
        assert_eq!(event.value.as_deref(), Some(&[0xff, 0][..]));
        assert_eq!(event.key, None);
        assert_eq!((event.offset, event.timestamp_ms), (3, 5));
        assert_eq!(event.headers, vec![Header { key: "h".into(), value: b"v".to_vec() }]);
    }

    #[test]
    fn bad_events_are_refused() {
        for bad in [r#"{"value":{"base64":"%%"}}"#, r#"{"headers":[1]}"#, r#"{"colour":"red"}"#, r#"[1]"#, "{"] {
            assert!(parse_event(bad, 0, 0).is_err(), "{bad}");
        }
    }

    #[test]
    fn outputs_print_text_or_base64() {
        let output = OutputEvent {
            topic: "t".into(),
            key: Some(b"k".to_vec()),
            value: Some(vec![0xff]),
            headers: vec![Header { key: "h".into(), value: b"v".to_vec() }],
        };
        assert_eq!(
            output_json(&output),
            serde_json::json!({"topic":"t","key":"k","value":{"base64":"/w=="},"headers":{"h":"v"}})
        );
    }
}
