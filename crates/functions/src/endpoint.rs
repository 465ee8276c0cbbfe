//! HTTP-endpoint functions: a function that runs on another platform (AWS Lambda, Cloud
//! Run, OpenFaaS, any HTTP server) and is invoked by POSTing each batch of events to its URL
//! as JSON. [`EndpointFunction::invoke`] has the shape of [`Function::invoke`](crate::Function::invoke),
//! so the trigger layer applies the same ordering, retry and dead-letter rules to both.
//!
//! # The protocol
//!
//! Request: `POST <url>` with `Content-Type: application/json`, the configured headers, and
//!
//! ```json
//! {"function": "enrich",
//!  "events": [{"topic": "orders", "partition": 0, "offset": 42,
//!              "timestamp_ms": 1700000000000,
//!              "key": "c-1", "value": "{\"order\":1}",
//!              "headers": [{"key": "trace", "value_base64": "AAEC/w=="}]}]}
//! ```
//!
//! Bytes (keys, values, header values) travel as one of two fields, so they round-trip
//! exactly whatever they hold:
//! - `"value": "<text>"` when the bytes are valid UTF-8 (the text is those bytes),
//! - `"value_base64": "<base64>"` otherwise (RFC 4648 standard alphabet, padded: `atob`,
//!   Python's `base64.b64decode`, Go's `base64.StdEncoding`),
//! - `"value": null` for a null key or value (a tombstone); header values are never null.
//!
//! A request carries exactly one of the two fields per bytes item. `offset` and
//! `timestamp_ms` are JSON integers (exact in JavaScript below 2^53).
//!
//! Response: any `2xx`. An empty body (or `204`) means no outputs; otherwise
//!
//! ```json
//! {"outputs": [{"topic": "enriched", "key": "c-1", "value": "{...}",
//!               "headers": [{"key": "trace", "value": "abc"}]}]}
//! ```
//!
//! with the same two spellings for bytes (either may be given; giving both is an error;
//! `key`/`value` absent or `null` means null; a header needs one of `value`/`value_base64`).
//! `headers` may be left out. Unknown fields are refused, so a typo (`"val"`) fails the
//! batch instead of silently producing nulls. Outputs are emitted in the order given.
//!
//! Any other outcome fails the invocation with an [`InvokeError`], which the trigger layer
//! retries and then dead-letters: a non-2xx status (the message has the status and the
//! start of the body; `429` and `503` say they are retried), a 3xx (redirects are not
//! followed: they could carry the `Authorization` header to another host and turn the POST
//! into a GET), no answer within the timeout, a connection or TLS failure, a body past
//! [`ENDPOINT_RESPONSE_BYTES_MAX`], or a body that is not the JSON above. A function must
//! therefore be idempotent: a batch may be delivered more than once.
//!
//! Secrets: configured header values are never logged and print as `<redacted>` in `Debug`;
//! the URL's query string (where some platforms put keys, `?code=...`) is left out of
//! errors and `Debug`, and credentials in the URL itself (`user:pass@`) are refused. The
//! client honours the usual `HTTPS_PROXY`/`NO_PROXY` environment variables.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{Read, Write};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use serde::de::{Deserializer, IgnoredAny, SeqAccess, Visitor};
use serde::ser::{SerializeMap, SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};
use ureq::Agent;
use ureq::http::{HeaderName, HeaderValue, Uri, header};

use crate::bindings::{Event, Header, OutputEvent};
use crate::error::{EndpointError, InvokeError};
use crate::limits::*;

/// Where and how to call an HTTP-endpoint function. Validated by [`EndpointFunction::new`].
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointConfig {
    /// `http://` or `https://` URL the batches are POSTed to, at most
    /// [`ENDPOINT_URL_BYTES_MAX`] bytes, without credentials (`user:pass@`).
    pub url: String,
    /// Budget of one call, from connecting to the end of the response body, in
    /// `1..=ENDPOINT_TIMEOUT_MS_MAX`.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Extra request headers, for example `Authorization: Bearer ...`. Their values are
    /// secrets: never logged, redacted in `Debug`. At most [`ENDPOINT_HEADERS_MAX`].
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

fn default_timeout_ms() -> u64 {
    ENDPOINT_TIMEOUT_MS_DEFAULT
}

impl EndpointConfig {
    /// A config for `url` with the default timeout and no extra headers.
    pub fn new(url: impl Into<String>) -> Self {
        Self { url: url.into(), timeout_ms: ENDPOINT_TIMEOUT_MS_DEFAULT, headers: BTreeMap::new() }
    }

    pub fn with_timeout_ms(mut self, timeout_ms: u64) -> Self {
        self.timeout_ms = timeout_ms;
        self
    }

    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.insert(name.into(), value.into());
        self
    }

    /// The config as it may be shown (the REST API, `runnel fn describe`): header values
    /// and the URL's query string replaced by `<redacted>`.
    pub fn redacted(&self) -> EndpointConfig {
        EndpointConfig {
            url: redact_url(&self.url),
            timeout_ms: self.timeout_ms,
            headers: self.headers.keys().map(|k| (k.clone(), "<redacted>".to_string())).collect(),
        }
    }
}

impl fmt::Debug for EndpointConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EndpointConfig")
            .field("url", &redact_url(&self.url))
            .field("timeout_ms", &self.timeout_ms)
            .field("headers", &RedactedHeaders(self.headers.keys()))
            .finish()
    }
}

/// Prints header names with `<redacted>` values.
struct RedactedHeaders<I>(I);

impl<'a, I: Iterator<Item = &'a String> + Clone> fmt::Debug for RedactedHeaders<I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.0.clone().map(|name| (name, format_args!("<redacted>")))).finish()
    }
}

/// A function behind an HTTP endpoint, ready to invoke from any thread. Keeps a pool of
/// connections to its endpoint (HTTP/1.1 keep-alive), shared by concurrent invocations.
pub struct EndpointFunction {
    name: String,
    config: EndpointConfig,
    /// The URL without its query string, for errors and `Debug`.
    url_shown: String,
    headers: Vec<(HeaderName, HeaderValue)>,
    agent: Agent,
}

impl EndpointFunction {
    /// Validates `config` (scheme, host, limits, header syntax) for the function `name`
    /// (sent in each request as `"function"`). Nothing is sent until the first invocation.
    pub fn new(name: &str, config: EndpointConfig) -> Result<Self, EndpointError> {
        if name.is_empty() {
            return Err(EndpointError::EmptyName);
        }
        check_limit("function name bytes", name.len() as u64, FUNCTION_NAME_BYTES_MAX as u64)?;
        check_limit("url bytes", config.url.len() as u64, ENDPOINT_URL_BYTES_MAX as u64)?;
        validate_url(&config.url)?;
        if config.timeout_ms == 0 {
            return Err(EndpointError::ZeroTimeout);
        }
        check_limit("timeout_ms", config.timeout_ms, ENDPOINT_TIMEOUT_MS_MAX)?;
        check_limit("headers", config.headers.len() as u64, ENDPOINT_HEADERS_MAX as u64)?;
        let mut headers = Vec::with_capacity(config.headers.len());
        for (name, value) in &config.headers {
            headers.push(validate_header(name, value)?);
        }
        for (i, (a, _)) in headers.iter().enumerate() {
            if headers[..i].iter().any(|(b, _)| a == b) {
                return Err(EndpointError::InvalidHeader {
                    name: a.to_string(),
                    reason: "given twice (header names are case-insensitive)",
                });
            }
        }
        let agent: Agent = Agent::config_builder()
            .timeout_global(Some(Duration::from_millis(config.timeout_ms)))
            // Statuses are ours to interpret (and their bodies to quote).
            .http_status_as_error(false)
            // A redirect is returned as a response, hence an error: see the module docs.
            .max_redirects(0)
            .user_agent(concat!("runnel/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Ok(Self { name: name.to_string(), url_shown: redact_url(&config.url), config, headers, agent })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The endpoint's URL without its query string (which may hold a key).
    pub fn url(&self) -> &str {
        &self.url_shown
    }

    pub fn timeout_ms(&self) -> u64 {
        self.config.timeout_ms
    }

    /// POSTs `events` to the endpoint and returns the outputs it answers with, in order.
    /// Blocks the calling thread for up to the configured timeout; run it on a blocking
    /// thread from async code.
    pub fn invoke(&self, events: &[Event]) -> Result<Vec<OutputEvent>, InvokeError> {
        if events.len() > INPUT_EVENTS_PER_INVOCATION_MAX {
            return Err(limit("input events", events.len(), INPUT_EVENTS_PER_INVOCATION_MAX));
        }
        let body = self.encode_request(events)?;
        let mut request = self
            .agent
            .post(&self.config.url)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ACCEPT, "application/json");
        for (name, value) in &self.headers {
            request = request.header(name, value);
        }
        let mut response = request.send(&body[..]).map_err(|e| self.transport_error(e))?;
        let status = response.status();
        if !status.is_success() {
            let mut excerpt = Vec::with_capacity(ENDPOINT_ERROR_BODY_BYTES_MAX);
            // Best effort: the status alone already fails the call.
            let _ =
                response.body_mut().as_reader().take(ENDPOINT_ERROR_BODY_BYTES_MAX as u64).read_to_end(&mut excerpt);
            return Err(InvokeError::EndpointStatus {
                url: self.url_shown.clone(),
                status: status.as_u16(),
                body: excerpt_text(&excerpt),
            });
        }
        let body = response
            .body_mut()
            .with_config()
            .limit(ENDPOINT_RESPONSE_BYTES_MAX as u64)
            .read_to_vec()
            .map_err(|e| self.transport_error(e))?;
        decode_response(&body).map_err(|reason| match reason {
            DecodeError::Invalid(reason) => InvokeError::EndpointResponse { url: self.url_shown.clone(), reason },
            DecodeError::Limit(e) => e,
        })
    }

    /// The request body, refused past [`ENDPOINT_REQUEST_BYTES_MAX`] without buffering more.
    fn encode_request(&self, events: &[Event]) -> Result<Vec<u8>, InvokeError> {
        let mut writer = CappedWriter { buffer: Vec::new(), written: 0, max: ENDPOINT_REQUEST_BYTES_MAX };
        let request = RequestJson { function: &self.name, events };
        match serde_json::to_writer(&mut writer, &request) {
            Ok(()) if writer.written <= writer.max => Ok(writer.buffer),
            _ => Err(limit("endpoint request bytes", writer.written, ENDPOINT_REQUEST_BYTES_MAX)),
        }
    }

    fn transport_error(&self, error: ureq::Error) -> InvokeError {
        let url = self.url_shown.clone();
        match error {
            ureq::Error::Timeout(_) => InvokeError::EndpointTimeout { url, timeout_ms: self.config.timeout_ms },
            ureq::Error::Io(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                InvokeError::EndpointTimeout { url, timeout_ms: self.config.timeout_ms }
            }
            ureq::Error::BodyExceedsLimit(_) => {
                InvokeError::EndpointResponseTooLarge { url, bytes_max: ENDPOINT_RESPONSE_BYTES_MAX as u64 }
            }
            other => {
                // ureq's messages do not quote the URL today; make sure a query never leaks.
                let reason = other.to_string().replace(&self.config.url, &self.url_shown);
                InvokeError::EndpointUnreachable { url, reason }
            }
        }
    }
}

impl fmt::Debug for EndpointFunction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EndpointFunction")
            .field("name", &self.name)
            .field("url", &self.url_shown)
            .field("timeout_ms", &self.config.timeout_ms)
            .field("headers", &RedactedHeaders(self.config.headers.keys()))
            .finish_non_exhaustive()
    }
}

fn check_limit(field: &'static str, value: u64, max: u64) -> Result<(), EndpointError> {
    if value > max {
        return Err(EndpointError::Limit { field, value, max });
    }
    Ok(())
}

fn limit(what: &'static str, value: usize, max: usize) -> InvokeError {
    InvokeError::Limit { what, value: value as u64, max: max as u64 }
}

fn validate_url(url: &str) -> Result<(), EndpointError> {
    let uri: Uri = url.parse().map_err(|e: ureq::http::uri::InvalidUri| EndpointError::InvalidUrl {
        // The parser's message does not quote the URL, which may hold a key.
        reason: e.to_string(),
    })?;
    match uri.scheme_str() {
        Some(scheme) if scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https") => {}
        Some(scheme) => return Err(EndpointError::Scheme { scheme: scheme.chars().take(16).collect() }),
        None => return Err(EndpointError::Scheme { scheme: String::new() }),
    }
    let Some(authority) = uri.authority() else {
        return Err(EndpointError::MissingHost);
    };
    if authority.as_str().contains('@') {
        return Err(EndpointError::InvalidUrl {
            reason: "credentials in the URL are refused: send them in a header (Authorization)".to_string(),
        });
    }
    if authority.host().is_empty() {
        return Err(EndpointError::MissingHost);
    }
    Ok(())
}

/// Headers the client sets itself (or that would break the exchange).
const RESERVED_HEADERS: [HeaderName; 6] = [
    header::CONTENT_TYPE,
    header::CONTENT_LENGTH,
    header::TRANSFER_ENCODING,
    header::HOST,
    header::CONNECTION,
    header::ACCEPT,
];

fn validate_header(name: &str, value: &str) -> Result<(HeaderName, HeaderValue), EndpointError> {
    let shown_name = || name.chars().take(64).collect::<String>();
    check_limit("header bytes", (name.len() + value.len()) as u64, ENDPOINT_HEADER_BYTES_MAX as u64)?;
    let header_name = HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| EndpointError::InvalidHeader { name: shown_name(), reason: "not a valid header name" })?;
    if RESERVED_HEADERS.contains(&header_name) {
        return Err(EndpointError::InvalidHeader { name: shown_name(), reason: "set by runnel itself" });
    }
    let mut header_value = HeaderValue::from_str(value).map_err(|_| EndpointError::InvalidHeader {
        name: shown_name(),
        reason: "value has characters not allowed in a header (control characters or non-ASCII)",
    })?;
    header_value.set_sensitive(true);
    Ok((header_name, header_value))
}

/// `scheme://host/path`: the query string (where some platforms put a key) becomes
/// `?<redacted>`, credentials before the host `<redacted>@`, and the fragment is dropped.
fn redact_url(url: &str) -> String {
    let url = url.split('#').next().unwrap_or_default();
    let (base, query) = match url.split_once('?') {
        Some((base, _)) => (base, "?<redacted>"),
        None => (url, ""),
    };
    let (scheme, rest) = base.split_once("://").unwrap_or(("", base));
    let (authority, path) = rest.find('/').map_or((rest, ""), |at| rest.split_at(at));
    let authority = match authority.rsplit_once('@') {
        Some((_, host)) => format!("<redacted>@{host}"),
        None => authority.to_string(),
    };
    let scheme = if base.contains("://") { format!("{scheme}://") } else { String::new() };
    format!("{scheme}{authority}{path}{query}")
}

/// A response body excerpt for an error message: one line, at most
/// [`ENDPOINT_ERROR_BODY_BYTES_MAX`] bytes.
fn excerpt_text(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut excerpt = String::with_capacity(ENDPOINT_ERROR_BODY_BYTES_MAX);
    for c in text.trim().chars().map(|c| if c.is_control() { ' ' } else { c }) {
        if excerpt.len() + c.len_utf8() > ENDPOINT_ERROR_BODY_BYTES_MAX {
            break;
        }
        excerpt.push(c);
    }
    if excerpt.is_empty() { "(empty body)".to_string() } else { excerpt }
}

/// Collects what is written up to `max` bytes, counts the rest, and fails past `max` so
/// the serializer stops early.
struct CappedWriter {
    buffer: Vec<u8>,
    written: usize,
    max: usize,
}

impl Write for CappedWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.written = self.written.saturating_add(data.len());
        if self.written > self.max {
            return Err(std::io::Error::other("request too large"));
        }
        self.buffer.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

// --- The request JSON ---

struct RequestJson<'a> {
    function: &'a str,
    events: &'a [Event],
}

impl Serialize for RequestJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(2))?;
        map.serialize_entry("function", self.function)?;
        map.serialize_entry("events", &Seq(self.events, EventJson))?;
        map.end()
    }
}

/// Serializes a slice through a wrapper.
struct Seq<'a, T, W>(&'a [T], fn(&'a T) -> W);

impl<'a, T, W: Serialize> Serialize for Seq<'a, T, W> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.0.len()))?;
        for item in self.0 {
            seq.serialize_element(&(self.1)(item))?;
        }
        seq.end()
    }
}

struct EventJson<'a>(&'a Event);

impl Serialize for EventJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let event = self.0;
        let mut map = serializer.serialize_map(Some(8))?;
        map.serialize_entry("topic", &event.topic)?;
        map.serialize_entry("partition", &event.partition)?;
        map.serialize_entry("offset", &event.offset)?;
        map.serialize_entry("timestamp_ms", &event.timestamp_ms)?;
        bytes_entry(&mut map, "key", "key_base64", event.key.as_deref())?;
        bytes_entry(&mut map, "value", "value_base64", event.value.as_deref())?;
        map.serialize_entry("headers", &Seq(&event.headers, HeaderJson))?;
        map.end()
    }
}

struct HeaderJson<'a>(&'a Header);

impl Serialize for HeaderJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(2))?;
        map.serialize_entry("key", &self.0.key)?;
        bytes_entry(&mut map, "value", "value_base64", Some(&self.0.value))?;
        map.end()
    }
}

/// `field: "<text>"` for UTF-8 bytes, `field_base64: "<base64>"` otherwise, `field: null`
/// for none.
fn bytes_entry<M: SerializeMap>(
    map: &mut M,
    field: &'static str,
    field_base64: &'static str,
    bytes: Option<&[u8]>,
) -> Result<(), M::Error> {
    match bytes {
        None => map.serialize_entry(field, &()),
        Some(bytes) => match std::str::from_utf8(bytes) {
            Ok(text) => map.serialize_entry(field, text),
            Err(_) => map.serialize_entry(field_base64, &STANDARD.encode(bytes)),
        },
    }
}

// --- The response JSON ---

/// Standard alphabet; padding accepted whether present or not.
const BASE64_LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResponseJson {
    #[serde(default)]
    outputs: BoundedOutputs,
}

/// At most [`OUTPUT_EVENTS_PER_INVOCATION_MAX`] outputs kept; the rest are only counted, so
/// a response of millions of tiny outputs cannot take memory out of proportion to its size.
#[derive(Default)]
struct BoundedOutputs {
    kept: Vec<OutputJson>,
    count: usize,
}

impl<'de> Deserialize<'de> for BoundedOutputs {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Bounded;
        impl<'de> Visitor<'de> for Bounded {
            type Value = BoundedOutputs;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array of output events")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<BoundedOutputs, A::Error> {
                let mut outputs = BoundedOutputs::default();
                while outputs.kept.len() < OUTPUT_EVENTS_PER_INVOCATION_MAX {
                    match seq.next_element::<OutputJson>()? {
                        Some(output) => outputs.kept.push(output),
                        None => {
                            outputs.count = outputs.kept.len();
                            return Ok(outputs);
                        }
                    }
                }
                outputs.count = outputs.kept.len();
                while seq.next_element::<IgnoredAny>()?.is_some() {
                    outputs.count += 1;
                }
                Ok(outputs)
            }
        }
        deserializer.deserialize_seq(Bounded)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OutputJson {
    topic: String,
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    key_base64: Option<String>,
    #[serde(default)]
    value: Option<String>,
    #[serde(default)]
    value_base64: Option<String>,
    #[serde(default)]
    headers: Vec<HeaderResponseJson>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HeaderResponseJson {
    key: String,
    #[serde(default)]
    value: Option<String>,
    #[serde(default)]
    value_base64: Option<String>,
}

enum DecodeError {
    Invalid(String),
    Limit(InvokeError),
}

fn decode_response(body: &[u8]) -> Result<Vec<OutputEvent>, DecodeError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Vec::new());
    }
    let response: ResponseJson = serde_json::from_slice(body).map_err(|e| {
        let start = &body[..body.len().min(ENDPOINT_ERROR_BODY_BYTES_MAX)];
        DecodeError::Invalid(format!("not the expected JSON ({e}); the body starts with: {}", excerpt_text(start)))
    })?;
    let outputs = response.outputs;
    if outputs.count > OUTPUT_EVENTS_PER_INVOCATION_MAX {
        return Err(DecodeError::Limit(limit("output events", outputs.count, OUTPUT_EVENTS_PER_INVOCATION_MAX)));
    }
    let mut decoded = Vec::with_capacity(outputs.kept.len());
    let mut bytes_total = 0usize;
    for (i, output) in outputs.kept.into_iter().enumerate() {
        let at = |field: &str| format!("outputs[{i}].{field}");
        let key = bytes_field(&at("key"), output.key, output.key_base64)?;
        let value = bytes_field(&at("value"), output.value, output.value_base64)?;
        let mut headers = Vec::with_capacity(output.headers.len());
        for (j, h) in output.headers.into_iter().enumerate() {
            let field = at(&format!("headers[{j}].value"));
            let Some(value) = bytes_field(&field, h.value, h.value_base64)? else {
                return Err(DecodeError::Invalid(format!("{field}: a header needs value or value_base64")));
            };
            headers.push(Header { key: h.key, value });
        }
        let event = OutputEvent { topic: output.topic, key, value, headers };
        bytes_total += output_bytes(&event);
        decoded.push(event);
    }
    if bytes_total > OUTPUT_BYTES_PER_INVOCATION_MAX {
        return Err(DecodeError::Limit(limit("output bytes", bytes_total, OUTPUT_BYTES_PER_INVOCATION_MAX)));
    }
    Ok(decoded)
}

fn bytes_field(field: &str, text: Option<String>, base64: Option<String>) -> Result<Option<Vec<u8>>, DecodeError> {
    match (text, base64) {
        (Some(_), Some(_)) => Err(DecodeError::Invalid(format!("{field} and {field}_base64 are both set: give one"))),
        (Some(text), None) => Ok(Some(text.into_bytes())),
        (None, Some(encoded)) => BASE64_LENIENT
            .decode(encoded.as_bytes())
            .map(Some)
            .map_err(|e| DecodeError::Invalid(format!("{field}_base64 is not base64: {e}"))),
        (None, None) => Ok(None),
    }
}

/// Bytes an output event carries, as counted against [`OUTPUT_BYTES_PER_INVOCATION_MAX`]
/// (the same measure as the WebAssembly runtime's).
fn output_bytes(event: &OutputEvent) -> usize {
    event.topic.len()
        + event.key.as_ref().map_or(0, Vec::len)
        + event.value.as_ref().map_or(0, Vec::len)
        + event.headers.iter().map(|h| h.key.len() + h.value.len()).sum::<usize>()
}

// The trigger layer shares functions across lane threads.
const _: fn() = || {
    fn shared<T: Send + Sync>() {}
    shared::<EndpointFunction>();
};
