//! Streaming SQL in the ksqlDB dialect.
//!
//! [`parser`] turns statement text into [`ast`] trees (ksqlDB's grammar on `sqlparser`'s
//! tokenizer and expression parser); [`types`] holds ksqlDB's types.

pub mod aggregate;
pub mod ast;
pub mod catalog;
pub mod codec;
pub mod engine;
pub mod eventlog;
pub mod expr;
pub mod format;
pub mod functions;
pub mod operators;
pub mod parser;
pub mod plan;
pub mod rest;
pub mod runner;
pub mod stateful;
pub mod store;
pub mod types;
pub mod value;

pub use engine::{Engine, Outcome, PushStream, Session};
pub use eventlog::{EventLog, InProcessLog};
pub use parser::{ParseError, parse_expression, parse_statement_text, parse_statements, parse_type_text};
pub use types::SqlType;
pub use value::{Decimal, Value};
