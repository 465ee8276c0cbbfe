//! The syntax tree of ksqlDB statements, independent of `sqlparser`'s own tree: names are
//! already normalised (unquoted identifiers upper-cased, as ksqlDB does) and literals typed.

use std::collections::BTreeMap;
use std::fmt;

use crate::types::SqlType;

/// STREAM or TABLE.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SourceKind {
    Stream,
    Table,
}

impl fmt::Display for SourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SourceKind::Stream => "STREAM",
            SourceKind::Table => "TABLE",
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Statement {
    /// `CREATE [OR REPLACE] STREAM|TABLE [IF NOT EXISTS] name (columns) WITH (...)`.
    CreateSource(CreateSource),
    /// `CREATE [OR REPLACE] STREAM|TABLE [IF NOT EXISTS] name [WITH (...)] AS SELECT ...`.
    CreateAsSelect(CreateAsSelect),
    /// `INSERT INTO target SELECT ...`.
    InsertInto {
        target: String,
        query: Box<Query>,
    },
    /// `INSERT INTO target [(columns)] VALUES (...)`.
    InsertValues {
        target: String,
        columns: Option<Vec<String>>,
        values: Vec<Expr>,
    },
    /// A push query (`EMIT CHANGES`) or a pull query.
    Query(Box<Query>),
    Show {
        what: ShowKind,
        extended: bool,
    },
    /// `DESCRIBE name [EXTENDED]` (or `DESCRIBE STREAMS|TABLES`, as `Show`).
    Describe {
        name: String,
        extended: bool,
    },
    DescribeFunction {
        name: String,
    },
    /// `EXPLAIN query_id` or `EXPLAIN statement`.
    Explain(ExplainTarget),
    Drop {
        kind: SourceKind,
        if_exists: bool,
        name: String,
        delete_topic: bool,
    },
    /// `REPLAY [QUERY] query_id FROM BEGINNING | FROM OFFSET n | FROM 'timestamp' | FROM ms`:
    /// resets a persistent query's input positions and re-derives its output from history.
    Replay {
        query_id: String,
        from: ReplayFrom,
    },
    /// `TERMINATE query_id` or `TERMINATE ALL`.
    Terminate {
        query_id: Option<String>,
    },
    /// `PRINT topic [FROM BEGINNING] [INTERVAL n] [LIMIT n]`.
    Print {
        topic: String,
        from_beginning: bool,
        interval: Option<u64>,
        limit: Option<u64>,
    },
    Set {
        property: String,
        value: String,
    },
    Unset {
        property: String,
    },
    Define {
        name: String,
        value: String,
    },
    Undefine {
        name: String,
    },
}

/// Where REPLAY starts each input partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplayFrom {
    Beginning,
    /// The same offset in every partition (or the partition's start, if later).
    Offset(u64),
    /// The first record at or after a time, given as text (ISO 8601).
    Timestamp(String),
    /// The first record at or after a time in epoch milliseconds.
    TimestampMs(u64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShowKind {
    Streams,
    Tables,
    Topics,
    Queries,
    Properties,
    Functions,
    Variables,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ExplainTarget {
    QueryId(String),
    Statement(Box<Statement>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct CreateSource {
    pub kind: SourceKind,
    pub or_replace: bool,
    pub if_not_exists: bool,
    pub name: String,
    pub columns: Vec<ColumnDef>,
    pub properties: Properties,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CreateAsSelect {
    pub kind: SourceKind,
    pub or_replace: bool,
    pub if_not_exists: bool,
    pub name: String,
    pub properties: Properties,
    pub query: Box<Query>,
}

/// Where a column's value comes from in a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ColumnSource {
    Value,
    /// `KEY` (streams) or `PRIMARY KEY` (tables).
    Key,
    /// `HEADERS` (all headers, `ARRAY<STRUCT<KEY STRING, VALUE BYTES>>`) or `HEADER('k')`.
    Headers(Option<String>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct ColumnDef {
    pub name: String,
    pub ty: SqlType,
    pub source: ColumnSource,
}

/// `WITH (NAME = value, ...)`: names upper-cased.
pub type Properties = BTreeMap<String, Literal>;

#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    pub projection: Vec<SelectItem>,
    pub from: Relation,
    pub window: Option<WindowSpec>,
    pub selection: Option<Expr>,
    pub group_by: Vec<Expr>,
    pub having: Option<Expr>,
    pub partition_by: Vec<Expr>,
    /// Pull queries: the order of the rows (beyond ksqlDB).
    pub order_by: Vec<OrderBy>,
    pub emit: Option<Emit>,
    pub limit: Option<u64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OrderBy {
    pub expr: Expr,
    pub descending: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Emit {
    Changes,
    Final,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SelectItem {
    /// `*`
    Wildcard,
    /// `alias.*`
    QualifiedWildcard(String),
    Expr {
        expr: Expr,
        alias: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub enum Relation {
    Source { name: String, alias: Option<String> },
    Join(Box<Join>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinKind {
    Inner,
    Left,
    Right,
    Full,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Join {
    pub kind: JoinKind,
    pub left: Relation,
    pub right: Relation,
    pub on: Expr,
    /// Stream-stream joins: `WITHIN (before, after)` in milliseconds, and the grace period.
    pub within: Option<(u64, u64)>,
    pub grace_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum WindowSpec {
    Tumbling { size_ms: u64, retention_ms: Option<u64>, grace_ms: Option<u64> },
    Hopping { size_ms: u64, advance_ms: u64, retention_ms: Option<u64>, grace_ms: Option<u64> },
    Session { gap_ms: u64, retention_ms: Option<u64>, grace_ms: Option<u64> },
}

#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    Null,
    Boolean(bool),
    /// An integer literal (INT if it fits in 32 bits, else BIGINT).
    Integer(i64),
    /// A literal with a decimal point and no exponent: DECIMAL, kept as written.
    Decimal(String),
    /// A literal with an exponent: DOUBLE.
    Double(f64),
    String(String),
}

impl fmt::Display for Literal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Literal::Null => f.write_str("NULL"),
            Literal::Boolean(b) => f.write_str(if *b { "true" } else { "false" }),
            Literal::Integer(i) => write!(f, "{i}"),
            Literal::Decimal(d) => f.write_str(d),
            Literal::Double(d) => write!(f, "{d:E}"),
            Literal::String(s) => write!(f, "'{}'", s.replace('\'', "''")),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnaryOp {
    Not,
    Neg,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Eq,
    NotEq,
    Lt,
    LtEq,
    Gt,
    GtEq,
    And,
    Or,
    /// `||` string concatenation.
    Concat,
}

impl fmt::Display for BinaryOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BinaryOp::Add => "+",
            BinaryOp::Sub => "-",
            BinaryOp::Mul => "*",
            BinaryOp::Div => "/",
            BinaryOp::Mod => "%",
            BinaryOp::Eq => "=",
            BinaryOp::NotEq => "<>",
            BinaryOp::Lt => "<",
            BinaryOp::LtEq => "<=",
            BinaryOp::Gt => ">",
            BinaryOp::GtEq => ">=",
            BinaryOp::And => "AND",
            BinaryOp::Or => "OR",
            BinaryOp::Concat => "||",
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// A column, optionally qualified by a source name or alias.
    Column {
        source: Option<String>,
        name: String,
    },
    Literal(Literal),
    Unary {
        op: UnaryOp,
        expr: Box<Expr>,
    },
    Binary {
        op: BinaryOp,
        left: Box<Expr>,
        right: Box<Expr>,
    },
    IsNull {
        expr: Box<Expr>,
        negated: bool,
    },
    Like {
        expr: Box<Expr>,
        pattern: Box<Expr>,
        escape: Option<char>,
        negated: bool,
    },
    Between {
        expr: Box<Expr>,
        low: Box<Expr>,
        high: Box<Expr>,
        negated: bool,
    },
    InList {
        expr: Box<Expr>,
        list: Vec<Expr>,
        negated: bool,
    },
    Case {
        operand: Option<Box<Expr>>,
        whens: Vec<(Expr, Expr)>,
        otherwise: Option<Box<Expr>>,
    },
    Cast {
        expr: Box<Expr>,
        ty: SqlType,
    },
    /// A function call; `COUNT(*)` has the single argument `Star`.
    Function {
        name: String,
        args: Vec<Expr>,
    },
    /// `*` as a function argument.
    Star,
    /// `expr->field` (struct dereference).
    Deref {
        expr: Box<Expr>,
        field: String,
    },
    /// `expr[index]`: arrays from 1 (negative from the end), maps by key.
    Subscript {
        expr: Box<Expr>,
        index: Box<Expr>,
    },
    Array(Vec<Expr>),
    Map(Vec<(Expr, Expr)>),
    Struct(Vec<(String, Expr)>),
    /// `x => body` or `(x, y) => body` (arguments of TRANSFORM, FILTER, REDUCE).
    Lambda {
        params: Vec<String>,
        body: Box<Expr>,
    },
}

impl Expr {
    pub fn column(name: &str) -> Expr {
        Expr::Column { source: None, name: name.to_string() }
    }
}
