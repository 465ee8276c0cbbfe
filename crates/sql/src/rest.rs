//! ksqlDB's REST API entities: statement outcomes as the JSON that ksqlDB clients (the ksqlDB
//! CLI, ksql-python, the Java client) read from `/ksql`, `/query` and `/query-stream`.
//!
//! Only the JSON lives here; the HTTP server (crate `runnel-http`) routes requests to
//! [`crate::Engine`] and writes these documents.

use serde_json::{Value as Json, json};

use crate::ast::SourceKind;
use crate::catalog::SourceDesc;
use crate::engine::{Outcome, QueryInfo};
use crate::format::to_json;
use crate::types::{Field, SqlType};
use crate::value::Value;

/// The ksqlDB version runnel's REST API follows.
pub const KSQL_VERSION: &str = "0.29.0";
/// ksqlDB's error code for a statement refused by the server (bad request).
pub const ERROR_BAD_STATEMENT: u32 = 40001;
/// ksqlDB's error code for a malformed request.
pub const ERROR_BAD_REQUEST: u32 = 40000;
/// ksqlDB's error code for a failure on the server.
pub const ERROR_SERVER: u32 = 50000;
/// ksqlDB's error code for an unknown query id.
pub const ERROR_NOT_FOUND: u32 = 40400;

/// `{"@type": "statement_error", ...}`, the body of a 400 answer to `/ksql`.
pub fn statement_error(statement: &str, message: &str) -> Json {
    json!({
        "@type": "statement_error",
        "error_code": ERROR_BAD_STATEMENT,
        "message": message,
        "statementText": statement,
        "entities": [],
    })
}

/// `{"@type": "generic_error", ...}`.
pub fn generic_error(code: u32, message: &str) -> Json {
    json!({"@type": "generic_error", "error_code": code, "message": message})
}

/// A field's schema as ksqlDB describes it.
pub fn schema_json(ty: &SqlType) -> Json {
    let (name, fields, member) = match ty {
        SqlType::Boolean => ("BOOLEAN", Json::Null, Json::Null),
        SqlType::Int => ("INTEGER", Json::Null, Json::Null),
        SqlType::Bigint => ("BIGINT", Json::Null, Json::Null),
        SqlType::Double => ("DOUBLE", Json::Null, Json::Null),
        SqlType::Decimal { .. } => ("DECIMAL", Json::Null, Json::Null),
        SqlType::String => ("STRING", Json::Null, Json::Null),
        SqlType::Bytes => ("BYTES", Json::Null, Json::Null),
        SqlType::Timestamp => ("TIMESTAMP", Json::Null, Json::Null),
        SqlType::Date => ("DATE", Json::Null, Json::Null),
        SqlType::Time => ("TIME", Json::Null, Json::Null),
        SqlType::Array(item) => ("ARRAY", Json::Null, schema_json(item)),
        SqlType::Map(_, v) => ("MAP", Json::Null, schema_json(v)),
        SqlType::Struct(fs) => (
            "STRUCT",
            Json::Array(fs.iter().map(|f| json!({"name": f.name, "schema": schema_json(&f.ty)})).collect()),
            Json::Null,
        ),
    };
    let mut out = json!({"type": name, "fields": fields, "memberSchema": member});
    if let SqlType::Decimal { precision, scale } = ty {
        out["parameters"] = json!({"precision": precision, "scale": scale});
    }
    out
}

fn source_summary(s: &SourceDesc) -> Json {
    json!({
        "type": s.kind.to_string(),
        "name": s.name,
        "topic": s.topic,
        "keyFormat": s.key_format.name(),
        "valueFormat": s.value_format.name(),
        "isWindowed": false,
    })
}

fn query_json(q: &QueryInfo, sink_topic: Option<&str>) -> Json {
    json!({
        "queryString": q.statement,
        "sinks": q.sink.iter().collect::<Vec<_>>(),
        "sinkKafkaTopics": sink_topic.iter().collect::<Vec<_>>(),
        "id": q.id,
        "statusCount": {q.state.split(':').next().unwrap_or("RUNNING"): 1},
        "queryType": "PERSISTENT",
        "state": q.state,
    })
}

fn source_description(s: &SourceDesc, extended: bool, readers: &[String], writers: &[String]) -> Json {
    let mut fields: Vec<Json> = Vec::new();
    for f in &s.key_columns {
        fields.push(json!({"name": f.name, "schema": schema_json(&f.ty), "type": "KEY"}));
    }
    for f in &s.value_columns {
        fields.push(json!({"name": f.name, "schema": schema_json(&f.ty)}));
    }
    for (f, which) in &s.header_columns {
        fields.push(json!({"name": f.name, "schema": schema_json(&f.ty), "type": "HEADER", "headerKey": which}));
    }
    let query_ref = |id: &String| json!({"queryString": "", "sinks": [], "sinkKafkaTopics": [], "id": id, "statusCount": {"RUNNING": 1}, "queryType": "PERSISTENT", "state": "RUNNING"});
    json!({
        "name": s.name,
        "windowType": Json::Null,
        "readQueries": readers.iter().map(query_ref).collect::<Vec<_>>(),
        "writeQueries": writers.iter().map(query_ref).collect::<Vec<_>>(),
        "fields": fields,
        "type": s.kind.to_string(),
        "timestamp": s.timestamp.as_ref().map(|(c, _)| c.clone()).unwrap_or_default(),
        "statistics": "",
        "errorStats": "",
        "extended": extended,
        "keyFormat": s.key_format.name(),
        "valueFormat": s.value_format.name(),
        "topic": s.topic,
        "partitions": s.partitions,
        "replication": 1,
        "statement": s.statement,
        "queryOffsetSummaries": [],
        "sourceConstraints": [],
    })
}

/// The `/ksql` entity of one finished statement. `sink_topic` names a query's output topic.
pub fn entity(outcome: &Outcome, statement: &str, sequence: u64, sink_topic: &dyn Fn(&str) -> Option<String>) -> Json {
    match outcome {
        Outcome::Status { message, query_id } => json!({
            "@type": "currentStatus",
            "statementText": statement,
            "commandId": format!("statement/{sequence}"),
            "commandStatus": {"status": "SUCCESS", "message": message, "queryId": query_id},
            "commandSequenceNumber": sequence,
            "warnings": [],
        }),
        Outcome::Sources { kind, sources, extended } => {
            let key = if *kind == SourceKind::Stream { "streams" } else { "tables" };
            if *extended {
                json!({
                    "@type": "source_descriptions",
                    "statementText": statement,
                    "sourceDescriptions": sources.iter().map(|s| source_description(s, true, &[], &[])).collect::<Vec<_>>(),
                    "warnings": [],
                })
            } else {
                json!({
                    "@type": key,
                    "statementText": statement,
                    key: sources.iter().map(|s| source_summary(s)).collect::<Vec<_>>(),
                    "warnings": [],
                })
            }
        }
        Outcome::Topics(topics) => json!({
            "@type": "kafka_topics",
            "statementText": statement,
            "topics": topics.iter().map(|(n, p)| json!({"name": n, "replicaInfo": vec![1; *p as usize]})).collect::<Vec<_>>(),
            "warnings": [],
        }),
        Outcome::Queries(queries) => json!({
            "@type": "queries",
            "statementText": statement,
            "queries": queries.iter().map(|q| query_json(q, q.sink.as_deref().and_then(sink_topic).as_deref())).collect::<Vec<_>>(),
            "warnings": [],
        }),
        Outcome::Properties(props) => json!({
            "@type": "properties",
            "statementText": statement,
            "properties": props.iter().map(|(k, v)| json!({"name": k, "scope": "KSQL", "value": v})).collect::<Vec<_>>(),
            "overwrittenProperties": [],
            "defaultProperties": [],
            "warnings": [],
        }),
        Outcome::Variables(vars) => json!({
            "@type": "variables",
            "statementText": statement,
            "variables": vars.iter().map(|(k, v)| json!({"name": k, "value": v})).collect::<Vec<_>>(),
            "warnings": [],
        }),
        Outcome::Functions(fns) => json!({
            "@type": "function_names",
            "statementText": statement,
            "functions": fns.iter().map(|f| json!({
                "name": f.name,
                "type": if f.aggregate { "AGGREGATE" } else { "SCALAR" },
                "category": f.category,
            })).collect::<Vec<_>>(),
            "warnings": [],
        }),
        Outcome::Function(f) => json!({
            "@type": "describe_function",
            "statementText": statement,
            "name": f.name,
            "description": f.description,
            "author": "runnel",
            "version": KSQL_VERSION,
            "path": "internal",
            "functions": [{"arguments": [], "returnType": "", "description": f.description, "argumentTypes": []}],
            "type": if f.aggregate { "AGGREGATE" } else { "SCALAR" },
            "warnings": [],
        }),
        Outcome::Source { source, extended, readers, writers } => json!({
            "@type": "sourceDescription",
            "statementText": statement,
            "sourceDescription": source_description(source, *extended, readers, writers),
            "warnings": [],
        }),
        Outcome::Query(q) => json!({
            "@type": "queryDescription",
            "statementText": statement,
            "queryDescription": {
                "id": q.id,
                "statementText": q.statement,
                "windowType": Json::Null,
                "fields": [],
                "sources": q.sources,
                "sinks": q.sink.iter().collect::<Vec<_>>(),
                "topology": "",
                "executionPlan": q.state,
                "overriddenProperties": {},
                "queryType": "PERSISTENT",
                "state": q.state,
            },
            "warnings": [],
        }),
        Outcome::Rows { columns, rows } => json!({
            "@type": "rows",
            "statementText": statement,
            "header": header(&format!("query_{sequence}"), columns),
            "rows": rows.iter().map(|r| row_json(r, columns)).collect::<Vec<_>>(),
            "warnings": [],
        }),
        Outcome::Stream(_) => statement_error(statement, "push queries and PRINT run on /query or /query-stream"),
    }
}

/// The schema text of a header: `` `ID` BIGINT, `NAME` STRING ``.
pub fn schema_text(columns: &[Field]) -> String {
    columns.iter().map(|c| format!("`{}` {}", c.name, c.ty)).collect::<Vec<_>>().join(", ")
}

/// The first element of a `/query` answer.
pub fn header(query_id: &str, columns: &[Field]) -> Json {
    json!({"queryId": query_id, "schema": schema_text(columns)})
}

/// A row's values as JSON, by their columns' types.
pub fn row_json(row: &[Value], columns: &[Field]) -> Json {
    Json::Array(row.iter().zip(columns).map(|(v, c)| value_json(v, &c.ty)).collect())
}

/// A row's values as a JSON object of column names (functions read table rows so).
pub fn row_object(row: &[Value], columns: &[Field]) -> Json {
    Json::Object(row.iter().zip(columns).map(|(v, c)| (c.name.clone(), value_json(v, &c.ty))).collect())
}

/// A value as ksqlDB's REST API writes it (TIMESTAMP as ISO text, DATE and TIME as text).
pub fn value_json(v: &Value, ty: &SqlType) -> Json {
    match v {
        Value::Timestamp(_) | Value::Date(_) | Value::Time(_) => Json::String(v.to_string()),
        other => to_json(other, ty),
    }
}

/// The first line of a `/query-stream` answer.
pub fn stream_header(query_id: &str, columns: &[Field]) -> Json {
    json!({
        "queryId": query_id,
        "columnNames": columns.iter().map(|c| c.name.clone()).collect::<Vec<_>>(),
        "columnTypes": columns.iter().map(|c| c.ty.to_string()).collect::<Vec<_>>(),
    })
}

/// `/info`.
pub fn server_info(cluster_id: &str) -> Json {
    json!({"KsqlServerInfo": {
        "version": KSQL_VERSION,
        "kafkaClusterId": cluster_id,
        "ksqlServiceId": "runnel",
        "serverStatus": "RUNNING",
    }})
}

/// `/healthcheck`.
pub fn health() -> Json {
    json!({"isHealthy": true, "details": {
        "metastore": {"isHealthy": true},
        "kafka": {"isHealthy": true},
        "commandRunner": {"isHealthy": true},
    }})
}
