//! The OpenAPI 3.0 document served at `/openapi.json`, written by hand next to the handlers
//! (a derive macro crate would cost more compile time than this file). It is kept in sync by
//! the integration tests, which request every operation it lists and check each response's
//! status is declared, and by schemathesis in `tests/compat/python/test_http.py`, which checks
//! every response against these schemas.

use serde_json::{Value, json};

use runnel_functions::limits::{
    BATCH_WINDOW_MS_MAX, COMPONENT_BYTES_MAX, CONCURRENCY_MAX, DEADLINE_MS_MAX, FUNCTION_NAME_BYTES_MAX,
    INPUT_EVENTS_PER_INVOCATION_MAX, MEMORY_BYTES_MAX, RETRIES_MAX, RETRY_BACKOFF_MS_MAX,
};

use crate::limits::{
    CONFIG_CHANGES_MAX, CONSUME_LIMIT_DEFAULT, CONSUME_LIMIT_MAX, PRODUCE_RECORDS_MAX, RECORD_HEADERS_MAX,
    REQUEST_BODY_BYTES_MAX, TOPIC_NAME_BYTES_MAX,
};

/// Topic names as the API accepts them: Kafka's characters, and not made only of dots (which
/// URLs cannot carry as a path segment).
pub const TOPIC_NAME_PATTERN: &str = "^[A-Za-z0-9._-]*[A-Za-z0-9_-][A-Za-z0-9._-]*$";

fn error(description: &str) -> Value {
    json!({
        "description": description,
        "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } }
    })
}

fn ok(description: &str, schema: &str) -> Value {
    json!({
        "description": description,
        "content": { "application/json": { "schema": { "$ref": format!("#/components/schemas/{schema}") } } }
    })
}

fn body(schema: &str) -> Value {
    json!({
        "required": true,
        "content": { "application/json": { "schema": { "$ref": format!("#/components/schemas/{schema}") } } }
    })
}

fn topic_param() -> Value {
    json!({
        "name": "topic", "in": "path", "required": true, "description": "The topic's name.",
        "schema": { "type": "string", "minLength": 1, "maxLength": runnel_log::TOPIC_NAME_BYTES_MAX,
                    "pattern": TOPIC_NAME_PATTERN }
    })
}

/// Function names as the runtime accepts them.
pub const FUNCTION_NAME_PATTERN: &str = "^[A-Za-z0-9][A-Za-z0-9._-]*$";

fn nullable_string(description: &str) -> Value {
    json!({ "type": "string", "nullable": true, "description": description })
}

/// The whole document.
pub fn document() -> Value {
    let mut doc = core_document();
    let (paths, schemas) = functions();
    if let (Some(all), Value::Object(more)) = (doc["paths"].as_object_mut(), paths) {
        all.extend(more);
    }
    if let (Some(all), Value::Object(more)) = (doc["components"]["schemas"].as_object_mut(), schemas) {
        all.extend(more);
    }
    doc
}

/// Topics, records and consumer groups.
fn core_document() -> Value {
    let internal = error("Internal error: the log failed.");
    let too_large = error(&format!("The request body exceeds {REQUEST_BODY_BYTES_MAX} bytes."));
    let malformed = error("The body is not JSON or not of the documented shape.");
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "runnel HTTP API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": format!(
                "Topics, records, consumer groups and functions of a runnel server, beside its Kafka listener. \
                 Errors are JSON objects with an `error_code` (the HTTP status followed by two digits) and a \
                 `message`. Keys, values and header values are strings: UTF-8 text by default, or base64 \
                 (standard alphabet, padded) with `encoding` set to `base64`. Request bodies are at most \
                 {REQUEST_BODY_BYTES_MAX} bytes."
            )
        },
        "paths": {
            "/healthz": { "get": {
                "operationId": "health", "summary": "Whether the server is ready",
                "responses": {
                    "200": ok("Ready: the Kafka listener and the HTTP API are serving.", "Health"),
                    "503": error("Starting or stopping.")
                }
            }},
            "/metrics": { "get": {
                "operationId": "metrics", "summary": "Metrics in the Prometheus text format 0.0.4",
                "responses": {
                    "200": { "description": "Every metric.",
                             "content": { "text/plain": { "schema": { "type": "string" } } } },
                    "500": internal.clone()
                }
            }},
            "/openapi.json": { "get": {
                "operationId": "openapi", "summary": "This document",
                "responses": { "200": { "description": "The OpenAPI document.",
                                        "content": { "application/json": { "schema": { "type": "object" } } } } }
            }},
            "/v1/topics": {
                "get": {
                    "operationId": "listTopics", "summary": "Every topic, internal ones included",
                    "responses": { "200": ok("The topics, sorted by name.", "TopicList") }
                },
                "post": {
                    "operationId": "createTopic", "summary": "Create a topic",
                    "requestBody": body("CreateTopic"),
                    "responses": {
                        "201": ok("Created.", "TopicDescription"),
                        "400": malformed.clone(),
                        "409": error("The topic exists already."),
                        "413": too_large.clone(),
                        "422": error("An invalid name (or one starting with `__`), partition count or config."),
                        "500": internal.clone()
                    }
                }
            },
            "/v1/topics/{topic}": {
                "parameters": [topic_param()],
                "get": {
                    "operationId": "describeTopic", "summary": "A topic with its partitions' offsets and its configs",
                    "responses": {
                        "200": ok("The topic.", "TopicDescription"),
                        "404": error("No such topic.")
                    }
                },
                "delete": {
                    "operationId": "deleteTopic", "summary": "Delete a topic and its data",
                    "responses": {
                        "204": { "description": "Deleted." },
                        "404": error("No such topic."),
                        "422": error("Internal topics cannot be deleted."),
                        "500": internal.clone()
                    }
                }
            },
            "/v1/topics/{topic}/configs": {
                "parameters": [topic_param()],
                "patch": {
                    "operationId": "alterTopicConfigs",
                    "summary": "Set configs (or reset them to the default with null); others keep their values",
                    "requestBody": body("AlterConfigs"),
                    "responses": {
                        "200": ok("Every config of the topic after the change.", "ConfigList"),
                        "400": malformed.clone(),
                        "404": error("No such topic."),
                        "413": too_large.clone(),
                        "422": error("An unknown config, an invalid value, or an internal topic."),
                        "500": internal.clone()
                    }
                }
            },
            "/v1/topics/{topic}/records": {
                "parameters": [topic_param()],
                "post": {
                    "operationId": "produce",
                    "summary": "Append records; answered once they are fsynced (acks=all)",
                    "requestBody": body("ProduceRequest"),
                    "responses": {
                        "200": ok("The offset of every record, in request order.", "ProduceResponse"),
                        "400": malformed.clone(),
                        "404": error("No such topic or partition."),
                        "413": error("The body is too large, or a partition's records exceed the topic's max.message.bytes."),
                        "422": error("Too many or no records, invalid base64, a record without a key for a compacted topic, or an internal topic."),
                        "500": internal.clone()
                    }
                },
                "get": {
                    "operationId": "consume",
                    "summary": "Read records of one partition from an offset or a time",
                    "parameters": [
                        { "name": "partition", "in": "query", "description": "The partition (0 by default).",
                          "schema": { "type": "integer", "format": "int32", "minimum": 0, "maximum": 2147483647 } },
                        { "name": "offset", "in": "query",
                          "description": "First offset to read (the log start offset by default). Not with timestamp.",
                          "schema": { "type": "integer", "format": "int64", "minimum": 0 } },
                        { "name": "timestamp", "in": "query",
                          "description": "Read from the first record with a timestamp at or after this (ms since the Unix epoch). Not with offset.",
                          "schema": { "type": "integer", "format": "int64" } },
                        { "name": "limit", "in": "query", "description": "Most records to return.",
                          "schema": { "type": "integer", "minimum": 1, "maximum": CONSUME_LIMIT_MAX,
                                      "default": CONSUME_LIMIT_DEFAULT } },
                        { "name": "format", "in": "query",
                          "description": "`json`: one object; `ndjson`: one record per line, streamed (an error after the first line is the last line).",
                          "schema": { "type": "string", "enum": ["json", "ndjson"], "default": "json" } },
                        { "name": "encoding", "in": "query", "description": "How keys and values are written.",
                          "schema": { "$ref": "#/components/schemas/Encoding" } }
                    ],
                    "responses": {
                        "200": {
                            "description": "The records.",
                            "content": {
                                "application/json": { "schema": { "$ref": "#/components/schemas/ConsumeResponse" } },
                                "application/x-ndjson": { "schema": {
                                    "type": "array",
                                    "description": "One JSON object per line: records, and if reading fails after the first line, an error last.",
                                    "items": { "oneOf": [ { "$ref": "#/components/schemas/Record" },
                                                          { "$ref": "#/components/schemas/Error" } ] } } }
                            }
                        },
                        "400": error("Invalid parameters, or an offset below the log start offset."),
                        "404": error("No such topic or partition."),
                        "422": error("A record is not UTF-8 text: ask for encoding=base64."),
                        "500": internal.clone()
                    }
                }
            },
            "/v1/groups": { "get": {
                "operationId": "listGroups", "summary": "Every consumer group",
                "responses": { "200": ok("The groups, sorted by id.", "GroupList") }
            }},
            "/v1/groups/{group}": { "get": {
                "operationId": "describeGroup", "summary": "A consumer group with its members, committed offsets and lag",
                "parameters": [{ "name": "group", "in": "path", "required": true, "description": "The group id.",
                                 "schema": { "type": "string", "minLength": 1, "maxLength": 1024 } }],
                "responses": {
                    "200": ok("The group.", "GroupDescription"),
                    "404": error("No such group.")
                }
            }}
        },
        "components": { "schemas": {
            "Error": {
                "type": "object", "required": ["error_code", "message"],
                "properties": {
                    "error_code": { "type": "integer", "description": "The HTTP status followed by two digits." },
                    "message": { "type": "string" }
                }
            },
            "Health": { "type": "object", "required": ["status"],
                        "properties": { "status": { "type": "string", "enum": ["ready"] } } },
            "Encoding": { "type": "string", "enum": ["string", "base64"], "default": "string",
                          "description": "`string`: UTF-8 text; `base64`: base64 of the bytes (standard alphabet, padded)." },
            "TopicList": { "type": "object", "required": ["topics"], "properties": {
                "topics": { "type": "array", "items": { "type": "object", "required": ["name", "partitions", "internal"],
                    "properties": { "name": { "type": "string" }, "partitions": { "type": "integer" },
                                    "internal": { "type": "boolean" } } } } } },
            "CreateTopic": { "type": "object", "required": ["name"], "additionalProperties": false, "properties": {
                "name": { "type": "string", "minLength": 1, "maxLength": TOPIC_NAME_BYTES_MAX,
                          "pattern": TOPIC_NAME_PATTERN },
                "partitions": { "type": "integer", "minimum": 1, "maximum": runnel_log::PARTITIONS_MAX, "default": 1,
                                "nullable": true, "description": "1 if absent or null." },
                "configs": { "type": "object", "maxProperties": CONFIG_CHANGES_MAX,
                             "additionalProperties": { "type": "string" },
                             "description": "Topic configs by Kafka name, e.g. {\"retention.ms\": \"86400000\"}." } } },
            "PartitionInfo": { "type": "object",
                "required": ["partition", "log_start_offset", "high_watermark", "size_bytes"], "properties": {
                "partition": { "type": "integer" }, "log_start_offset": { "type": "integer" },
                "high_watermark": { "type": "integer" }, "size_bytes": { "type": "integer" } } },
            "ConfigEntry": { "type": "object", "required": ["name", "value", "is_default"], "properties": {
                "name": { "type": "string" }, "value": { "type": "string" }, "is_default": { "type": "boolean" } } },
            "ConfigList": { "type": "object", "required": ["configs"], "properties": {
                "configs": { "type": "array", "items": { "$ref": "#/components/schemas/ConfigEntry" } } } },
            "TopicDescription": { "type": "object", "required": ["name", "id", "internal", "partitions", "configs"],
                "properties": {
                    "name": { "type": "string" },
                    "id": { "type": "string", "description": "The topic id: 32 hex digits." },
                    "internal": { "type": "boolean" },
                    "partitions": { "type": "array", "items": { "$ref": "#/components/schemas/PartitionInfo" } },
                    "configs": { "type": "array", "items": { "$ref": "#/components/schemas/ConfigEntry" } } } },
            "AlterConfigs": { "type": "object", "required": ["configs"], "additionalProperties": false, "properties": {
                "configs": { "type": "object", "maxProperties": CONFIG_CHANGES_MAX,
                             "additionalProperties": { "type": "string", "nullable": true },
                             "description": "Config name to its new value, or null to reset it to the default." } } },
            "ProduceHeader": { "type": "object", "required": ["key"], "additionalProperties": false, "properties": {
                "key": { "type": "string" }, "value": nullable_string("In the request's encoding.") } },
            "ProduceRecord": { "type": "object", "additionalProperties": false, "properties": {
                "partition": { "type": "integer", "format": "int32", "minimum": 0, "maximum": 2147483647, "nullable": true,
                               "description": "Absent: by the key's murmur2 hash (as Kafka's default partitioner), or the next partition in turn." },
                "key": nullable_string("In the request's encoding."),
                "value": nullable_string("In the request's encoding; null is a tombstone."),
                "headers": { "type": "array", "maxItems": RECORD_HEADERS_MAX,
                             "items": { "$ref": "#/components/schemas/ProduceHeader" } },
                "timestamp": { "type": "integer", "format": "int64", "nullable": true,
                               "description": "Milliseconds since the Unix epoch; now if absent." } } },
            "ProduceRequest": { "type": "object", "required": ["records"], "additionalProperties": false, "properties": {
                "encoding": { "$ref": "#/components/schemas/Encoding" },
                "records": { "type": "array", "minItems": 1, "maxItems": PRODUCE_RECORDS_MAX,
                             "items": { "$ref": "#/components/schemas/ProduceRecord" } } } },
            "ProduceResponse": { "type": "object", "required": ["topic", "offsets"], "properties": {
                "topic": { "type": "string" },
                "offsets": { "type": "array", "items": { "type": "object", "required": ["partition", "offset"],
                    "properties": { "partition": { "type": "integer" }, "offset": { "type": "integer" } } } } } },
            "Header": { "type": "object", "required": ["key", "value"], "properties": {
                "key": { "type": "string" }, "value": nullable_string("In the requested encoding.") } },
            "Record": { "type": "object", "required": ["partition", "offset", "timestamp", "key", "value", "headers"],
                "properties": {
                    "partition": { "type": "integer" }, "offset": { "type": "integer" },
                    "timestamp": { "type": "integer" },
                    "key": nullable_string("In the requested encoding."),
                    "value": nullable_string("In the requested encoding."),
                    "headers": { "type": "array", "items": { "$ref": "#/components/schemas/Header" } } } },
            "ConsumeResponse": { "type": "object",
                "required": ["topic", "partition", "records", "next_offset", "high_watermark"], "properties": {
                "topic": { "type": "string" }, "partition": { "type": "integer" },
                "records": { "type": "array", "items": { "$ref": "#/components/schemas/Record" } },
                "next_offset": { "type": "integer", "description": "Where the next read should start." },
                "high_watermark": { "type": "integer" } } },
            "GroupState": { "type": "string",
                            "enum": ["Empty", "PreparingRebalance", "CompletingRebalance", "Stable", "Dead"] },
            "GroupList": { "type": "object", "required": ["groups"], "properties": {
                "groups": { "type": "array", "items": { "type": "object",
                    "required": ["group_id", "state", "protocol_type", "members"], "properties": {
                        "group_id": { "type": "string" }, "state": { "$ref": "#/components/schemas/GroupState" },
                        "protocol_type": { "type": "string" }, "members": { "type": "integer" } } } } } },
            "GroupDescription": { "type": "object",
                "required": ["group_id", "state", "protocol_type", "protocol", "generation", "leader", "members",
                             "offsets", "lag"],
                "properties": {
                    "group_id": { "type": "string" }, "state": { "$ref": "#/components/schemas/GroupState" },
                    "protocol_type": { "type": "string" },
                    "protocol": { "type": "string", "description": "The assignor of the current generation." },
                    "generation": { "type": "integer" },
                    "leader": nullable_string("The leader's member id."),
                    "members": { "type": "array", "items": { "type": "object",
                        "required": ["member_id", "group_instance_id", "client_id", "client_host"], "properties": {
                            "member_id": { "type": "string" },
                            "group_instance_id": nullable_string("Static membership id."),
                            "client_id": { "type": "string" }, "client_host": { "type": "string" } } } },
                    "offsets": { "type": "array", "items": { "type": "object",
                        "required": ["topic", "partition", "committed_offset", "high_watermark", "lag", "metadata"],
                        "properties": {
                            "topic": { "type": "string" }, "partition": { "type": "integer" },
                            "committed_offset": { "type": "integer" },
                            "high_watermark": { "type": "integer", "nullable": true,
                                                "description": "Null when the partition no longer exists." },
                            "lag": { "type": "integer", "nullable": true },
                            "metadata": { "type": "string" } } } },
                    "lag": { "type": "integer", "description": "The sum of the partitions' lag." } } }
        }}
    })
}

fn name_param() -> Value {
    json!({
        "name": "name", "in": "path", "required": true, "description": "The function's name.",
        "schema": { "type": "string", "minLength": 1, "maxLength": FUNCTION_NAME_BYTES_MAX,
                    "pattern": FUNCTION_NAME_PATTERN }
    })
}

fn integer_query(name: &str, minimum: u64, maximum: u64, description: &str) -> Value {
    json!({ "name": name, "in": "query", "required": false, "description": description,
            "schema": { "type": "integer", "minimum": minimum, "maximum": maximum } })
}

/// The functions API under `/v1/functions`: its paths and its schemas.
fn functions() -> (Value, Value) {
    let unknown = error("No such function (or functions do not run on this server).");
    let internal = error("Internal error: the log or the function store failed.");
    let spec = ok("The function's stored settings.", "FunctionSpec");
    let paths = json!({
        "/v1/functions": { "get": {
            "operationId": "listFunctions", "summary": "Every function with its settings, state and metrics",
            "responses": { "200": ok("The functions, by name.", "FunctionList"), "404": unknown.clone() }
        }},
        "/v1/functions/{name}": {
            "parameters": [name_param()],
            "get": {
                "operationId": "describeFunction", "summary": "A function's settings, state and metrics",
                "responses": { "200": ok("The function.", "FunctionInfo"), "404": unknown.clone() }
            },
            "put": {
                "operationId": "deployFunction",
                "summary": "Deploy a component as the function, or a new version of it (keeps its positions)",
                "description": "The body is the component (`application/wasm` or `application/octet-stream`; `.wat` text too). An HTTP-endpoint function is deployed with `Content-Type: application/json` and the body `{\"endpoint\": {\"url\": \"https://...\", \"timeout_ms\": 30000, \"headers\": {\"Authorization\": \"...\"}}}` instead; header values are never shown again.",
                "parameters": [
                    { "name": "trigger", "in": "query", "required": false,
                      "description": "`none` (the default), `topic:NAME[@earliest|@latest|@MS]`, `table:NAME[@...]`, `cron:EXPR` or `http`.",
                      "schema": { "type": "string" } },
                    integer_query("concurrency", 1, CONCURRENCY_MAX.into(), "Lanes: keys handled at once (one key in order)."),
                    integer_query("retries", 0, RETRIES_MAX.into(), "Retries of a failed invocation before dead-lettering."),
                    integer_query("retry_backoff_initial_ms", 0, RETRY_BACKOFF_MS_MAX, "Wait before the first retry."),
                    integer_query("retry_backoff_max_ms", 0, RETRY_BACKOFF_MS_MAX, "Longest wait between retries."),
                    { "name": "dead_letter_topic", "in": "query", "required": false,
                      "description": "Where failed events go (default NAME-dlq).", "schema": { "type": "string", "minLength": 1 } },
                    integer_query("batch_size", 1, INPUT_EVENTS_PER_INVOCATION_MAX as u64, "Most events per invocation."),
                    integer_query("batch_window_ms", 0, BATCH_WINDOW_MS_MAX, "How long a batch waits to fill."),
                    integer_query("memory_bytes_max", 65_536, MEMORY_BYTES_MAX as u64, "Memory limit of one invocation."),
                    integer_query("deadline_ms", 1, DEADLINE_MS_MAX, "Deadline of one invocation.")
                ],
                "requestBody": { "required": true, "content": {
                    "application/octet-stream": { "schema": { "type": "string", "format": "binary", "maxLength": COMPONENT_BYTES_MAX } }
                }},
                "responses": {
                    "200": spec.clone(), "201": spec.clone(),
                    "400": error("An empty body or a bad query parameter."),
                    "404": unknown.clone(),
                    "413": error(&format!("The component exceeds {COMPONENT_BYTES_MAX} bytes.")),
                    "422": error("The name, a setting, or the component is refused (with the runtime's reason)."),
                    "500": internal.clone()
                }
            },
            "delete": {
                "operationId": "deleteFunction", "summary": "Remove a function and its positions (its dead letters stay)",
                "responses": { "204": { "description": "Deleted." }, "404": unknown.clone(), "500": internal.clone() }
            }
        },
        "/v1/functions/{name}/pause": { "parameters": [name_param()], "post": {
            "operationId": "pauseFunction", "summary": "Stop the function's trigger, keeping its positions",
            "responses": { "200": spec.clone(), "404": unknown.clone(), "500": internal.clone() }
        }},
        "/v1/functions/{name}/resume": { "parameters": [name_param()], "post": {
            "operationId": "resumeFunction", "summary": "Restart a paused function from its positions",
            "responses": { "200": spec.clone(), "404": unknown.clone(), "500": internal.clone() }
        }},
        "/v1/functions/{name}/replay-dead-letters": { "parameters": [name_param()], "post": {
            "operationId": "replayDeadLetters", "summary": "Run the function's dead letters through its current version",
            "responses": {
                "200": ok("What the replay did.", "ReplayReport"), "404": unknown.clone(),
                "500": internal.clone(), "503": error("The function's component failed to load.")
            }
        }},
        "/v1/functions/{name}/logs": { "parameters": [name_param()], "get": {
            "operationId": "functionLogs", "summary": "The function's kept log lines",
            "parameters": [
                { "name": "since_ms", "in": "query", "required": false,
                  "description": "Only lines written at or after this time (ms since the Unix epoch).",
                  "schema": { "type": "integer" } },
                { "name": "follow", "in": "query", "required": false,
                  "description": "Stream lines as NDJSON, new ones as they are written, until the client leaves.",
                  "schema": { "type": "boolean", "default": false } }
            ],
            "responses": {
                "200": { "description": "The lines, oldest first.", "content": {
                    "application/json": { "schema": { "$ref": "#/components/schemas/LogLines" } },
                    "application/x-ndjson": { "schema": { "type": "array",
                        "items": { "$ref": "#/components/schemas/LogLine" } } } } },
                "400": error("A bad query parameter."),
                "404": unknown.clone()
            }
        }},
        "/v1/functions/{name}/invoke": { "parameters": [name_param()], "post": {
            "operationId": "invokeFunction",
            "summary": "Run the function's current version once on events (no retries) and return its outputs",
            "parameters": [{ "name": "write", "in": "query", "required": false,
                             "description": "Also write the outputs to their topics.",
                             "schema": { "type": "boolean", "default": false } }],
            "requestBody": body("InvokeRequest"),
            "responses": {
                "200": ok("The outputs.", "InvokeResponse"),
                "400": error("The body is not JSON of the documented shape, or a bad query parameter."),
                "404": unknown.clone(),
                "413": error(&format!("The request body exceeds {REQUEST_BODY_BYTES_MAX} bytes.")),
                "422": error("No events, too many, or an event that cannot be read."),
                "500": error("The invocation failed (trap, memory limit, the function's error) or its outputs could not be written."),
                "503": error("The function's component failed to load."),
                "504": error("The invocation ran past its deadline.")
            }
        }}
    });
    let bytes = json!({ "nullable": true, "description":
        "null, UTF-8 text as a string, {\"base64\": \"...\"} for other bytes, or any other JSON (its text)." });
    let schemas = json!({
        "FunctionSpec": { "type": "object",
            "required": ["name", "component_sha256", "trigger", "concurrency", "retries", "dead_letter_topic",
                         "batch_size", "batch_window_ms", "memory_bytes_max", "deadline_ms", "paused", "version",
                         "deployed_at_ms"],
            "properties": {
                "name": { "type": "string" }, "component_sha256": { "type": "string" },
                "trigger": { "type": "object", "required": ["kind"], "properties": { "kind": { "type": "string" } } },
                "concurrency": { "type": "integer" }, "retries": { "type": "integer" },
                "dead_letter_topic": { "type": "string" }, "batch_size": { "type": "integer" },
                "batch_window_ms": { "type": "integer" }, "memory_bytes_max": { "type": "integer" },
                "deadline_ms": { "type": "integer" }, "paused": { "type": "boolean" },
                "version": { "type": "integer", "minimum": 1 }, "deployed_at_ms": { "type": "integer" } } },
        "FunctionInfo": { "type": "object", "required": ["spec", "status", "metrics"], "properties": {
            "spec": { "$ref": "#/components/schemas/FunctionSpec" },
            "status": { "type": "object", "required": ["state"], "properties": {
                "state": { "type": "string", "enum": ["running", "paused", "failed"] },
                "reason": { "type": "string", "description": "Why the component failed to load." } } },
            "metrics": { "type": "object",
                "required": ["invocations", "errors", "retries", "dead_letters", "events", "outputs", "lag"],
                "properties": {
                    "invocations": { "type": "integer" }, "errors": { "type": "integer" },
                    "retries": { "type": "integer" }, "dead_letters": { "type": "integer" },
                    "events": { "type": "integer" }, "outputs": { "type": "integer" },
                    "lag": { "type": "integer", "description": "Trigger records not yet done." } } } } },
        "FunctionList": { "type": "object", "required": ["functions"], "properties": {
            "functions": { "type": "array", "items": { "$ref": "#/components/schemas/FunctionInfo" } } } },
        "ReplayReport": { "type": "object", "required": ["replayed", "dead_lettered_again"], "properties": {
            "replayed": { "type": "integer" }, "dead_lettered_again": { "type": "integer" } } },
        "LogLine": { "type": "object", "required": ["seq", "at_ms", "level", "source", "message"], "properties": {
            "seq": { "type": "integer" }, "at_ms": { "type": "integer" },
            "level": { "type": "string", "enum": ["trace", "debug", "info", "warn", "error"] },
            "source": { "type": "string", "enum": ["function", "platform"] },
            "message": { "type": "string" } } },
        "LogLines": { "type": "object", "required": ["lines"], "properties": {
            "lines": { "type": "array", "items": { "$ref": "#/components/schemas/LogLine" } } } },
        "InvokeRequest": { "type": "object", "required": ["events"], "additionalProperties": false, "properties": {
            "events": { "type": "array", "minItems": 1, "maxItems": INPUT_EVENTS_PER_INVOCATION_MAX,
                "items": { "type": "object", "additionalProperties": false, "properties": {
                    "topic": { "type": "string" },
                    "partition": { "type": "integer", "minimum": 0, "maximum": i32::MAX },
                    "offset": { "type": "integer", "nullable": true, "minimum": 0, "maximum": i64::MAX },
                    "timestamp": { "type": "integer", "nullable": true, "minimum": 0, "maximum": i64::MAX,
                                   "description": "ms since the Unix epoch" },
                    "key": bytes.clone(), "value": bytes.clone(),
                    "headers": { "type": "object", "additionalProperties": bytes.clone() } } } } } },
        "InvokeResponse": { "type": "object", "required": ["outputs"], "properties": {
            "outputs": { "type": "array", "items": { "type": "object", "required": ["topic", "key", "value"],
                "properties": { "topic": { "type": "string" }, "key": bytes.clone(), "value": bytes.clone(),
                                "headers": { "type": "object" } } } } } }
    });
    (paths, schemas)
}
