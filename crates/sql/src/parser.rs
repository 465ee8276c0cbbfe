//! The ksqlDB statement grammar on top of `sqlparser`'s tokenizer and expression parser.
//!
//! `sqlparser` parses expressions (operators, precedence, CASE, LIKE, IN, BETWEEN, function
//! calls, subscripts); everything around them — `CREATE STREAM ... WITH (...)`, `WINDOW
//! TUMBLING (...)`, `EMIT CHANGES`, `PRINT`, `TERMINATE`, ksqlDB's types — is parsed here, and
//! `sqlparser`'s expression tree is converted into ours ([`crate::ast::Expr`]) with identifiers
//! normalised the way ksqlDB does (unquoted ones upper-cased, back-quoted ones kept as written).

use std::collections::BTreeMap;
use std::sync::Arc;

use sqlparser::ast as sp;
use sqlparser::dialect::{Dialect, Precedence};
use sqlparser::parser::{Parser, ParserError};
use sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer, Word};

use crate::ast::*;
use crate::types::{DECIMAL_PRECISION_MAX, Field, SqlType, TYPE_NESTING_MAX};

/// Deepest nesting of expressions accepted (sqlparser's recursion counter), so that a hostile
/// statement is an error rather than a stack overflow.
pub const EXPRESSION_DEPTH_MAX: usize = 64;
/// Longest statement text accepted, in bytes.
pub const STATEMENT_BYTES_MAX: usize = 1 << 20;

/// A statement that does not parse, with the position (1-based line and column) when known.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct ParseError {
    pub message: String,
}

impl ParseError {
    fn new(message: impl Into<String>) -> ParseError {
        ParseError { message: message.into() }
    }
}

impl From<ParserError> for ParseError {
    fn from(e: ParserError) -> ParseError {
        let message = match e {
            ParserError::TokenizerError(m) | ParserError::ParserError(m) => m,
            ParserError::RecursionLimitExceeded => {
                format!("the statement nests expressions deeper than {EXPRESSION_DEPTH_MAX} levels")
            }
        };
        ParseError { message }
    }
}

/// ksqlDB's lexical rules: identifiers quoted with back-quotes, `->` binding tightest.
#[derive(Debug)]
struct KsqlDialect;

impl Dialect for KsqlDialect {
    fn is_identifier_start(&self, ch: char) -> bool {
        ch.is_ascii_alphabetic() || ch == '_' || ch == '$'
    }

    fn is_identifier_part(&self, ch: char) -> bool {
        ch.is_ascii_alphanumeric() || ch == '_' || ch == '$' || ch == '@'
    }

    fn is_delimited_identifier_start(&self, ch: char) -> bool {
        ch == '`'
    }

    fn supports_named_fn_args_with_assignment_operator(&self) -> bool {
        true
    }

    fn supports_named_fn_args_with_rarrow_operator(&self) -> bool {
        true
    }

    fn get_next_precedence(&self, parser: &Parser) -> Option<Result<u8, ParserError>> {
        match parser.peek_token().token {
            Token::Arrow => Some(Ok(self.prec_value(Precedence::DoubleColon))),
            _ => None,
        }
    }

    /// `CAST(expr AS type)` with ksqlDB's types (`STRUCT<A INT>`, `MAP<STRING, INT>`), which
    /// sqlparser's type grammar does not know: the type is parsed here and carried to the
    /// conversion as a custom type name in ksqlDB's canonical spelling.
    fn parse_prefix(&self, parser: &mut Parser) -> Option<Result<sp::Expr, ParserError>> {
        if let Some(params) = lambda_params(parser) {
            return Some(parser.parse_expr().map(|body| {
                sp::Expr::Lambda(sp::LambdaFunction {
                    params: sp::OneOrManyWithParens::Many(
                        params.into_iter().map(|name| sp::LambdaFunctionParameter { name, data_type: None }).collect(),
                    ),
                    body: Box::new(body),
                    syntax: sp::LambdaSyntax::Arrow,
                })
            }));
        }
        if !is_word(&parser.peek_token(), "CAST") || parser.peek_nth_token(1).token != Token::LParen {
            return None;
        }
        Some((|| {
            parser.next_token();
            parser.expect_token(&Token::LParen)?;
            let expr = parser.parse_expr()?;
            if !parse_word(parser, "AS") {
                return Err(ParserError::ParserError(format!("expected AS in CAST, found {}", parser.peek_token())));
            }
            let ty = parse_type(parser, 0).map_err(|e| ParserError::ParserError(e.message))?;
            parser.expect_token(&Token::RParen)?;
            Ok(sp::Expr::Cast {
                kind: sp::CastKind::Cast,
                expr: Box::new(expr),
                data_type: sp::DataType::Custom(sp::ObjectName::from(vec![sp::Ident::new(ty.to_string())]), vec![]),
                format: None,
            })
        })())
    }
}

/// Stack of the thread that parses: sqlparser's tree of a long operator chain (`1 + 1 + ...`,
/// which its recursion counter does not limit) is as deep as the chain is long, and dropping
/// it recurses; within [`STATEMENT_BYTES_MAX`] this stack holds the deepest such tree.
const PARSER_STACK_BYTES: usize = 256 << 20;

/// Runs `f` on a thread with [`PARSER_STACK_BYTES`] of stack (reserved, touched only as used).
fn with_parser_stack<T: Send>(f: impl FnOnce() -> Result<T, ParseError> + Send) -> Result<T, ParseError> {
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("sql-parser".into())
            .stack_size(PARSER_STACK_BYTES)
            .spawn_scoped(scope, f)
            .map_err(|e| ParseError::new(format!("cannot start the parser thread: {e}")))?
            .join()
            .unwrap_or_else(|_| Err(ParseError::new("the parser failed on this statement")))
    })
}

/// `(a, b) =>`: consumes the parameter list of a multi-parameter lambda (ksqlDB's REDUCE,
/// TRANSFORM over maps) and returns its names; leaves the parser untouched otherwise.
fn lambda_params(p: &mut Parser) -> Option<Vec<sp::Ident>> {
    if p.peek_token().token != Token::LParen {
        return None;
    }
    let mut names = Vec::new();
    let mut i = 1;
    loop {
        match p.peek_nth_token(i).token {
            Token::Word(w) => names.push(sp::Ident {
                value: w.value,
                quote_style: w.quote_style,
                span: sqlparser::tokenizer::Span::empty(),
            }),
            _ => return None,
        }
        match p.peek_nth_token(i + 1).token {
            Token::Comma => i += 2,
            Token::RParen => break,
            _ => return None,
        }
    }
    if p.peek_nth_token(i + 2).token != Token::RArrow {
        return None;
    }
    for _ in 0..i + 3 {
        p.next_token();
    }
    Some(names)
}

/// Parses one or more statements separated by `;`.
pub fn parse_statements(sql: &str) -> Result<Vec<Statement>, ParseError> {
    if sql.len() > STATEMENT_BYTES_MAX {
        return Err(ParseError::new(format!("statement text exceeds {STATEMENT_BYTES_MAX} bytes")));
    }
    with_parser_stack(|| parse_statements_here(sql))
}

fn parse_statements_here(sql: &str) -> Result<Vec<Statement>, ParseError> {
    let mut p = parser_for(sql)?;
    let mut statements = Vec::new();
    loop {
        while p.consume_token(&Token::SemiColon) {}
        if p.peek_token().token == Token::EOF {
            break;
        }
        statements.push(parse_statement(&mut p)?);
        if p.peek_token().token != Token::EOF && !p.consume_token(&Token::SemiColon) {
            return Err(unexpected(&p, "';' or the end of the statement"));
        }
    }
    Ok(statements)
}

/// Parses exactly one statement (a trailing `;` is allowed).
pub fn parse_statement_text(sql: &str) -> Result<Statement, ParseError> {
    let mut all = parse_statements(sql)?;
    match all.len() {
        1 => Ok(all.remove(0)),
        0 => Err(ParseError::new("empty statement")),
        n => Err(ParseError::new(format!("expected one statement, found {n}"))),
    }
}

/// Parses a standalone expression.
pub fn parse_expression(sql: &str) -> Result<Expr, ParseError> {
    if sql.len() > STATEMENT_BYTES_MAX {
        return Err(ParseError::new(format!("expression text exceeds {STATEMENT_BYTES_MAX} bytes")));
    }
    with_parser_stack(|| {
        let mut p = parser_for(sql)?;
        let e = expr(&mut p)?;
        if p.peek_token().token != Token::EOF {
            return Err(unexpected(&p, "the end of the expression"));
        }
        Ok(e)
    })
}

/// Parses a type as ksqlDB writes it (`ARRAY<STRUCT<A INT>>`).
pub fn parse_type_text(text: &str) -> Result<SqlType, ParseError> {
    let mut p = parser_for(text)?;
    let ty = parse_type(&mut p, 0)?;
    if p.peek_token().token != Token::EOF {
        return Err(unexpected(&p, "the end of the type"));
    }
    Ok(ty)
}

static DIALECT: KsqlDialect = KsqlDialect;

/// A parser over `sql`'s tokens, with every `>>` split into two `>` so that nested types
/// (`ARRAY<ARRAY<INT>>`) close; ksqlDB has no shift operator.
fn parser_for(sql: &str) -> Result<Parser<'static>, ParseError> {
    let tokens = Tokenizer::new(&DIALECT, sql).tokenize_with_location().map_err(|e| ParseError::new(e.to_string()))?;
    let mut split = Vec::with_capacity(tokens.len());
    for t in tokens {
        if t.token == Token::ShiftRight {
            split.push(TokenWithSpan { token: Token::Gt, span: t.span });
            split.push(TokenWithSpan { token: Token::Gt, span: t.span });
        } else {
            split.push(t);
        }
    }
    Ok(Parser::new(&DIALECT).with_recursion_limit(EXPRESSION_DEPTH_MAX).with_tokens_with_locations(split))
}

fn unexpected(p: &Parser, expected: &str) -> ParseError {
    let t = p.peek_token();
    let found = if t.token == Token::EOF { "the end of the statement".to_string() } else { format!("'{}'", t.token) };
    ParseError::new(format!("line {}:{}: expected {expected}, found {found}", t.span.start.line, t.span.start.column))
}

fn is_word(t: &TokenWithSpan, word: &str) -> bool {
    matches!(&t.token, Token::Word(Word { value, quote_style: None, .. }) if value.eq_ignore_ascii_case(word))
}

/// Consumes `word` (unquoted, any case) if it is next.
fn parse_word(p: &mut Parser, word: &str) -> bool {
    if is_word(&p.peek_token(), word) {
        p.next_token();
        true
    } else {
        false
    }
}

/// Consumes the words in order if they are all next.
fn parse_words(p: &mut Parser, words: &[&str]) -> bool {
    if words.iter().enumerate().all(|(i, w)| is_word(&p.peek_nth_token(i), w)) {
        words.iter().for_each(|_| {
            p.next_token();
        });
        true
    } else {
        false
    }
}

fn expect_word(p: &mut Parser, word: &str) -> Result<(), ParseError> {
    if parse_word(p, word) { Ok(()) } else { Err(unexpected(p, word)) }
}

fn expect_token(p: &mut Parser, token: Token) -> Result<(), ParseError> {
    if p.consume_token(&token) { Ok(()) } else { Err(unexpected(p, &format!("'{token}'"))) }
}

/// ksqlDB's identifier rule: unquoted names are upper-cased, back-quoted ones kept.
fn normalise(ident: &sp::Ident) -> String {
    if ident.quote_style.is_some() { ident.value.clone() } else { ident.value.to_ascii_uppercase() }
}

fn identifier(p: &mut Parser) -> Result<String, ParseError> {
    match p.peek_token().token {
        Token::Word(w) => {
            p.next_token();
            Ok(if w.quote_style.is_some() { w.value } else { w.value.to_ascii_uppercase() })
        }
        _ => Err(unexpected(p, "a name")),
    }
}

/// A source or topic name: an identifier or a string literal.
fn name_or_string(p: &mut Parser) -> Result<String, ParseError> {
    match p.peek_token().token {
        Token::SingleQuotedString(s) => {
            p.next_token();
            Ok(s)
        }
        _ => identifier(p),
    }
}

fn uint(p: &mut Parser) -> Result<u64, ParseError> {
    match p.peek_token().token {
        Token::Number(n, _) => {
            p.next_token();
            n.parse().map_err(|_| ParseError::new(format!("expected a whole number, found {n}")))
        }
        _ => Err(unexpected(p, "a whole number")),
    }
}

fn parse_statement(p: &mut Parser) -> Result<Statement, ParseError> {
    if parse_word(p, "CREATE") {
        return create(p);
    }
    if parse_word(p, "INSERT") {
        return insert(p);
    }
    if is_word(&p.peek_token(), "SELECT") {
        return Ok(Statement::Query(Box::new(query(p)?)));
    }
    if parse_word(p, "SHOW") || parse_word(p, "LIST") {
        return show(p);
    }
    if parse_word(p, "DESCRIBE") {
        if parse_word(p, "FUNCTION") {
            return Ok(Statement::DescribeFunction { name: identifier(p)? });
        }
        if is_word(&p.peek_token(), "STREAMS") || is_word(&p.peek_token(), "TABLES") {
            return show(p);
        }
        let name = identifier(p)?;
        let extended = parse_word(p, "EXTENDED");
        return Ok(Statement::Describe { name, extended });
    }
    if parse_word(p, "EXPLAIN") {
        let next = p.peek_token();
        let is_statement = ["SELECT", "CREATE", "INSERT"].iter().any(|w| is_word(&next, w));
        return Ok(Statement::Explain(if is_statement {
            ExplainTarget::Statement(Box::new(parse_statement(p)?))
        } else {
            ExplainTarget::QueryId(identifier(p)?)
        }));
    }
    if parse_word(p, "DROP") {
        let kind = source_kind(p)?;
        let if_exists = parse_words(p, &["IF", "EXISTS"]);
        let name = identifier(p)?;
        let delete_topic = parse_words(p, &["DELETE", "TOPIC"]);
        return Ok(Statement::Drop { kind, if_exists, name, delete_topic });
    }
    if parse_word(p, "REPLAY") {
        parse_word(p, "QUERY");
        let query_id = identifier(p)?;
        expect_word(p, "FROM")?;
        let from = if parse_word(p, "BEGINNING") {
            ReplayFrom::Beginning
        } else if parse_word(p, "OFFSET") {
            ReplayFrom::Offset(uint(p)?)
        } else {
            match p.peek_token().token {
                Token::SingleQuotedString(s) => {
                    p.next_token();
                    ReplayFrom::Timestamp(s)
                }
                Token::Number(..) => ReplayFrom::TimestampMs(uint(p)?),
                _ => return Err(unexpected(p, "BEGINNING, OFFSET n, a timestamp in quotes or epoch milliseconds")),
            }
        };
        return Ok(Statement::Replay { query_id, from });
    }
    if parse_word(p, "TERMINATE") {
        if parse_word(p, "ALL") {
            return Ok(Statement::Terminate { query_id: None });
        }
        return Ok(Statement::Terminate { query_id: Some(identifier(p)?) });
    }
    if parse_word(p, "PRINT") {
        let topic = name_or_string(p)?;
        let mut from_beginning = false;
        let mut interval = None;
        let mut limit = None;
        loop {
            if parse_words(p, &["FROM", "BEGINNING"]) {
                from_beginning = true;
            } else if parse_word(p, "INTERVAL") || parse_word(p, "SAMPLE") {
                interval = Some(uint(p)?);
            } else if parse_word(p, "LIMIT") {
                limit = Some(uint(p)?);
            } else {
                break;
            }
        }
        return Ok(Statement::Print { topic, from_beginning, interval, limit });
    }
    if parse_word(p, "SET") {
        let property = string(p)?;
        expect_token(p, Token::Eq)?;
        let value = string(p)?;
        return Ok(Statement::Set { property, value });
    }
    if parse_word(p, "UNSET") {
        return Ok(Statement::Unset { property: string(p)? });
    }
    if parse_word(p, "DEFINE") {
        let name = variable_name(p)?;
        expect_token(p, Token::Eq)?;
        let value = string(p)?;
        return Ok(Statement::Define { name, value });
    }
    if parse_word(p, "UNDEFINE") {
        return Ok(Statement::Undefine { name: variable_name(p)? });
    }
    Err(unexpected(
        p,
        "a statement (CREATE, INSERT, SELECT, SHOW, LIST, DESCRIBE, EXPLAIN, DROP, TERMINATE, REPLAY, PRINT, SET, UNSET, DEFINE)",
    ))
}

/// Variable names keep their case (ksqlDB treats them case-insensitively by lower-casing).
fn variable_name(p: &mut Parser) -> Result<String, ParseError> {
    match p.peek_token().token {
        Token::Word(w) => {
            p.next_token();
            Ok(w.value.to_ascii_lowercase())
        }
        _ => Err(unexpected(p, "a variable name")),
    }
}

fn string(p: &mut Parser) -> Result<String, ParseError> {
    match p.peek_token().token {
        Token::SingleQuotedString(s) => {
            p.next_token();
            Ok(s)
        }
        _ => Err(unexpected(p, "a quoted string")),
    }
}

fn source_kind(p: &mut Parser) -> Result<SourceKind, ParseError> {
    if parse_word(p, "STREAM") {
        Ok(SourceKind::Stream)
    } else if parse_word(p, "TABLE") {
        Ok(SourceKind::Table)
    } else {
        Err(unexpected(p, "STREAM or TABLE"))
    }
}

fn show(p: &mut Parser) -> Result<Statement, ParseError> {
    let what = match p.peek_token().token {
        Token::Word(w) if w.quote_style.is_none() => match w.value.to_ascii_uppercase().as_str() {
            "STREAMS" => ShowKind::Streams,
            "TABLES" => ShowKind::Tables,
            "TOPICS" => ShowKind::Topics,
            "QUERIES" => ShowKind::Queries,
            "PROPERTIES" => ShowKind::Properties,
            "FUNCTIONS" => ShowKind::Functions,
            "VARIABLES" => ShowKind::Variables,
            _ => return Err(unexpected(p, "STREAMS, TABLES, TOPICS, QUERIES, PROPERTIES, FUNCTIONS or VARIABLES")),
        },
        _ => return Err(unexpected(p, "STREAMS, TABLES, TOPICS, QUERIES, PROPERTIES, FUNCTIONS or VARIABLES")),
    };
    p.next_token();
    let extended = parse_word(p, "EXTENDED");
    Ok(Statement::Show { what, extended })
}

fn create(p: &mut Parser) -> Result<Statement, ParseError> {
    let or_replace = parse_words(p, &["OR", "REPLACE"]);
    let kind = source_kind(p)?;
    let if_not_exists = parse_words(p, &["IF", "NOT", "EXISTS"]);
    let name = identifier(p)?;
    let columns = if p.consume_token(&Token::LParen) {
        let mut columns = Vec::new();
        loop {
            columns.push(column_def(p, kind)?);
            if !p.consume_token(&Token::Comma) {
                break;
            }
        }
        expect_token(p, Token::RParen)?;
        Some(columns)
    } else {
        None
    };
    let properties = if parse_word(p, "WITH") { properties(p)? } else { BTreeMap::new() };
    if parse_word(p, "AS") {
        if columns.is_some() {
            return Err(ParseError::new("CREATE ... AS SELECT takes its columns from the query, not from a list"));
        }
        let query = Box::new(query(p)?);
        return Ok(Statement::CreateAsSelect(CreateAsSelect {
            kind,
            or_replace,
            if_not_exists,
            name,
            properties,
            query,
        }));
    }
    Ok(Statement::CreateSource(CreateSource {
        kind,
        or_replace,
        if_not_exists,
        name,
        columns: columns.unwrap_or_default(),
        properties,
    }))
}

fn column_def(p: &mut Parser, kind: SourceKind) -> Result<ColumnDef, ParseError> {
    let name = identifier(p)?;
    let ty = parse_type(p, 0)?;
    let source = if parse_words(p, &["PRIMARY", "KEY"]) {
        if kind == SourceKind::Stream {
            return Err(ParseError::new(format!(
                "column {name}: streams have KEY columns, not PRIMARY KEY (tables have PRIMARY KEY)"
            )));
        }
        ColumnSource::Key
    } else if parse_word(p, "KEY") {
        if kind == SourceKind::Table {
            return Err(ParseError::new(format!("column {name}: tables need PRIMARY KEY, not KEY")));
        }
        ColumnSource::Key
    } else if parse_word(p, "HEADERS") {
        ColumnSource::Headers(None)
    } else if parse_word(p, "HEADER") {
        expect_token(p, Token::LParen)?;
        let key = string(p)?;
        expect_token(p, Token::RParen)?;
        ColumnSource::Headers(Some(key))
    } else {
        ColumnSource::Value
    };
    Ok(ColumnDef { name, ty, source })
}

fn properties(p: &mut Parser) -> Result<Properties, ParseError> {
    expect_token(p, Token::LParen)?;
    let mut props = BTreeMap::new();
    loop {
        let name = identifier(p)?.to_ascii_uppercase();
        expect_token(p, Token::Eq)?;
        let value = match p.next_token().token {
            Token::SingleQuotedString(s) => Literal::String(s),
            Token::Number(n, _) => number_literal(&n)?,
            Token::Minus => match p.next_token().token {
                Token::Number(n, _) => negate(number_literal(&n)?),
                t => return Err(ParseError::new(format!("expected a number after '-' in WITH, found '{t}'"))),
            },
            Token::Word(w) if w.value.eq_ignore_ascii_case("true") => Literal::Boolean(true),
            Token::Word(w) if w.value.eq_ignore_ascii_case("false") => Literal::Boolean(false),
            Token::Word(w) if w.value.eq_ignore_ascii_case("null") => Literal::Null,
            t => return Err(ParseError::new(format!("expected a value for {name}, found '{t}'"))),
        };
        if props.insert(name.clone(), value).is_some() {
            return Err(ParseError::new(format!("property {name} is given twice")));
        }
        if !p.consume_token(&Token::Comma) {
            break;
        }
    }
    expect_token(p, Token::RParen)?;
    Ok(props)
}

fn negate(l: Literal) -> Literal {
    match l {
        Literal::Integer(i) => Literal::Integer(-i),
        Literal::Decimal(d) => Literal::Decimal(format!("-{d}")),
        Literal::Double(d) => Literal::Double(-d),
        other => other,
    }
}

fn number_literal(n: &str) -> Result<Literal, ParseError> {
    if n.contains(['e', 'E']) {
        n.parse().map(Literal::Double).map_err(|_| ParseError::new(format!("invalid number {n}")))
    } else if n.contains('.') {
        Ok(Literal::Decimal(n.to_string()))
    } else {
        n.parse().map(Literal::Integer).map_err(|_| ParseError::new(format!("number {n} does not fit in a BIGINT")))
    }
}

fn insert(p: &mut Parser) -> Result<Statement, ParseError> {
    expect_word(p, "INTO")?;
    let target = identifier(p)?;
    let columns = if p.peek_token().token == Token::LParen {
        p.next_token();
        let mut columns = vec![identifier(p)?];
        while p.consume_token(&Token::Comma) {
            columns.push(identifier(p)?);
        }
        expect_token(p, Token::RParen)?;
        Some(columns)
    } else {
        None
    };
    if parse_word(p, "VALUES") {
        expect_token(p, Token::LParen)?;
        let mut values = vec![expr(p)?];
        while p.consume_token(&Token::Comma) {
            values.push(expr(p)?);
        }
        expect_token(p, Token::RParen)?;
        if let Some(c) = &columns
            && c.len() != values.len()
        {
            return Err(ParseError::new(format!("{} columns but {} values", c.len(), values.len())));
        }
        return Ok(Statement::InsertValues { target, columns, values });
    }
    if columns.is_some() {
        return Err(unexpected(p, "VALUES"));
    }
    Ok(Statement::InsertInto { target, query: Box::new(query(p)?) })
}

/// Words that end an expression or a relation in a query.
const CLAUSE_WORDS: &[&str] = &[
    "FROM",
    "WHERE",
    "GROUP",
    "HAVING",
    "PARTITION",
    "EMIT",
    "LIMIT",
    "ORDER",
    "WINDOW",
    "JOIN",
    "INNER",
    "LEFT",
    "RIGHT",
    "FULL",
    "OUTER",
    "ON",
    "WITHIN",
    "GRACE",
];

fn at_clause_word(p: &Parser) -> bool {
    let t = p.peek_token();
    CLAUSE_WORDS.iter().any(|w| is_word(&t, w))
}

fn query(p: &mut Parser) -> Result<Query, ParseError> {
    expect_word(p, "SELECT")?;
    let mut projection = Vec::new();
    loop {
        projection.push(select_item(p)?);
        if !p.consume_token(&Token::Comma) {
            break;
        }
    }
    expect_word(p, "FROM")?;
    let from = relation(p)?;
    let window = if parse_word(p, "WINDOW") { Some(window(p)?) } else { None };
    let selection = if parse_word(p, "WHERE") { Some(expr(p)?) } else { None };
    let mut group_by = Vec::new();
    if parse_words(p, &["GROUP", "BY"]) {
        group_by.push(expr(p)?);
        while p.consume_token(&Token::Comma) {
            group_by.push(expr(p)?);
        }
    }
    let having = if parse_word(p, "HAVING") { Some(expr(p)?) } else { None };
    let mut partition_by = Vec::new();
    if parse_words(p, &["PARTITION", "BY"]) {
        partition_by.push(expr(p)?);
        while p.consume_token(&Token::Comma) {
            partition_by.push(expr(p)?);
        }
    }
    let mut order_by = Vec::new();
    if parse_words(p, &["ORDER", "BY"]) {
        loop {
            let e = expr(p)?;
            let descending = if parse_word(p, "DESC") {
                true
            } else {
                parse_word(p, "ASC");
                false
            };
            order_by.push(OrderBy { expr: e, descending });
            if !p.consume_token(&Token::Comma) {
                break;
            }
        }
    }
    let emit = if parse_word(p, "EMIT") {
        if parse_word(p, "CHANGES") {
            Some(Emit::Changes)
        } else if parse_word(p, "FINAL") {
            Some(Emit::Final)
        } else {
            return Err(unexpected(p, "CHANGES or FINAL"));
        }
    } else {
        None
    };
    let limit = if parse_word(p, "LIMIT") { Some(uint(p)?) } else { None };
    Ok(Query { projection, from, window, selection, group_by, having, partition_by, order_by, emit, limit })
}

fn select_item(p: &mut Parser) -> Result<SelectItem, ParseError> {
    if p.consume_token(&Token::Mul) {
        return Ok(SelectItem::Wildcard);
    }
    // `alias.*`
    if let (Token::Word(w), Token::Period, Token::Mul) =
        (p.peek_nth_token(0).token, p.peek_nth_token(1).token, p.peek_nth_token(2).token)
    {
        p.next_token();
        p.next_token();
        p.next_token();
        return Ok(SelectItem::QualifiedWildcard(if w.quote_style.is_some() {
            w.value
        } else {
            w.value.to_ascii_uppercase()
        }));
    }
    let e = expr(p)?;
    Ok(SelectItem::Expr { expr: e, alias: alias(p)? })
}

/// `AS name`, or a bare name that does not start the next clause.
fn alias(p: &mut Parser) -> Result<Option<String>, ParseError> {
    let bare = matches!(p.peek_token().token, Token::Word(_)) && !at_clause_word(p);
    if parse_word(p, "AS") || bare { identifier(p).map(Some) } else { Ok(None) }
}

fn source(p: &mut Parser) -> Result<Relation, ParseError> {
    let name = identifier(p)?;
    Ok(Relation::Source { name, alias: alias(p)? })
}

fn relation(p: &mut Parser) -> Result<Relation, ParseError> {
    let mut left = source(p)?;
    loop {
        let kind = if parse_word(p, "JOIN") || parse_words(p, &["INNER", "JOIN"]) {
            JoinKind::Inner
        } else if parse_words(p, &["LEFT", "JOIN"]) || parse_words(p, &["LEFT", "OUTER", "JOIN"]) {
            JoinKind::Left
        } else if parse_words(p, &["RIGHT", "JOIN"]) || parse_words(p, &["RIGHT", "OUTER", "JOIN"]) {
            JoinKind::Right
        } else if parse_words(p, &["FULL", "JOIN"]) || parse_words(p, &["FULL", "OUTER", "JOIN"]) {
            JoinKind::Full
        } else {
            return Ok(left);
        };
        let right = source(p)?;
        let mut within = None;
        let mut grace_ms = None;
        if parse_word(p, "WITHIN") {
            within = Some(if p.consume_token(&Token::LParen) {
                let before = duration(p)?;
                expect_token(p, Token::Comma)?;
                let after = duration(p)?;
                expect_token(p, Token::RParen)?;
                (before, after)
            } else {
                let both = duration(p)?;
                (both, both)
            });
            if parse_words(p, &["GRACE", "PERIOD"]) {
                grace_ms = Some(duration(p)?);
            }
        }
        expect_word(p, "ON")?;
        let on = expr(p)?;
        left = Relation::Join(Box::new(Join { kind, left, right, on, within, grace_ms }));
    }
}

/// `n UNIT` as milliseconds (MILLISECOND(S), SECOND(S), MINUTE(S), HOUR(S), DAY(S)).
fn duration(p: &mut Parser) -> Result<u64, ParseError> {
    let n = uint(p)?;
    let unit = match p.peek_token().token {
        Token::Word(w) => w.value.to_ascii_uppercase(),
        _ => return Err(unexpected(p, "a time unit (MILLISECONDS, SECONDS, MINUTES, HOURS, DAYS)")),
    };
    let ms: u64 = match unit.trim_end_matches('S') {
        "MILLISECOND" => 1,
        "SECOND" => 1_000,
        "MINUTE" => 60_000,
        "HOUR" => 3_600_000,
        "DAY" => 86_400_000,
        _ => return Err(unexpected(p, "a time unit (MILLISECONDS, SECONDS, MINUTES, HOURS, DAYS)")),
    };
    p.next_token();
    n.checked_mul(ms).ok_or_else(|| ParseError::new(format!("duration {n} {unit} is too long")))
}

fn window(p: &mut Parser) -> Result<WindowSpec, ParseError> {
    let kind = identifier(p)?;
    expect_token(p, Token::LParen)?;
    let mut size = None;
    let mut advance = None;
    let mut retention = None;
    let mut grace = None;
    let mut gap = None;
    if kind == "SESSION" {
        gap = Some(duration(p)?);
        let _ = p.consume_token(&Token::Comma);
    }
    while !p.consume_token(&Token::RParen) {
        if parse_word(p, "SIZE") {
            size = Some(duration(p)?);
        } else if parse_words(p, &["ADVANCE", "BY"]) {
            advance = Some(duration(p)?);
        } else if parse_word(p, "RETENTION") {
            retention = Some(duration(p)?);
        } else if parse_words(p, &["GRACE", "PERIOD"]) {
            grace = Some(duration(p)?);
        } else {
            return Err(unexpected(p, "SIZE, ADVANCE BY, RETENTION or GRACE PERIOD"));
        }
        if !p.consume_token(&Token::Comma) {
            expect_token(p, Token::RParen)?;
            break;
        }
    }
    let need = |v: Option<u64>, what: &str| v.ok_or_else(|| ParseError::new(format!("{kind} window needs {what}")));
    match kind.as_str() {
        "TUMBLING" => {
            Ok(WindowSpec::Tumbling { size_ms: need(size, "SIZE")?, retention_ms: retention, grace_ms: grace })
        }
        "HOPPING" => {
            let size_ms = need(size, "SIZE")?;
            let advance_ms = need(advance, "ADVANCE BY")?;
            if advance_ms == 0 || advance_ms > size_ms {
                return Err(ParseError::new("HOPPING window: ADVANCE BY must be more than 0 and at most SIZE"));
            }
            Ok(WindowSpec::Hopping { size_ms, advance_ms, retention_ms: retention, grace_ms: grace })
        }
        "SESSION" => Ok(WindowSpec::Session {
            gap_ms: need(gap, "an inactivity gap")?,
            retention_ms: retention,
            grace_ms: grace,
        }),
        _ => Err(ParseError::new(format!("unknown window type {kind}: expected TUMBLING, HOPPING or SESSION"))),
    }
}

/// A ksqlDB type. `depth` bounds nesting.
fn parse_type(p: &mut Parser, depth: usize) -> Result<SqlType, ParseError> {
    if depth > TYPE_NESTING_MAX {
        return Err(ParseError::new(format!("types nest deeper than {TYPE_NESTING_MAX} levels")));
    }
    let name = match p.next_token().token {
        Token::Word(w) => w.value.to_ascii_uppercase(),
        t => return Err(ParseError::new(format!("expected a type, found '{t}'"))),
    };
    Ok(match name.as_str() {
        "BOOLEAN" | "BOOL" => SqlType::Boolean,
        "INT" | "INTEGER" => SqlType::Int,
        "BIGINT" => SqlType::Bigint,
        "DOUBLE" => SqlType::Double,
        "STRING" | "VARCHAR" => {
            // VARCHAR(n) is accepted and means STRING, as in ksqlDB.
            if p.consume_token(&Token::LParen) {
                uint(p)?;
                expect_token(p, Token::RParen)?;
            }
            SqlType::String
        }
        "BYTES" => SqlType::Bytes,
        "TIMESTAMP" => SqlType::Timestamp,
        "DATE" => SqlType::Date,
        "TIME" => SqlType::Time,
        "DECIMAL" => {
            expect_token(p, Token::LParen)?;
            let precision = uint(p)?;
            expect_token(p, Token::Comma)?;
            let scale = uint(p)?;
            expect_token(p, Token::RParen)?;
            if precision == 0 || precision > u64::from(DECIMAL_PRECISION_MAX) || scale > precision {
                return Err(ParseError::new(format!(
                    "DECIMAL({precision}, {scale}): precision must be 1 to {DECIMAL_PRECISION_MAX} and scale at most the precision"
                )));
            }
            SqlType::Decimal { precision: precision as u8, scale: scale as u8 }
        }
        "ARRAY" => {
            open_angle(p)?;
            let item = parse_type(p, depth + 1)?;
            close_angle(p)?;
            SqlType::Array(Arc::new(item))
        }
        "MAP" => {
            open_angle(p)?;
            let key = parse_type(p, depth + 1)?;
            if !key.is_primitive() {
                return Err(ParseError::new(format!("MAP keys must be a primitive type, not {key}")));
            }
            expect_token(p, Token::Comma)?;
            let value = parse_type(p, depth + 1)?;
            close_angle(p)?;
            SqlType::Map(Arc::new(key), Arc::new(value))
        }
        "STRUCT" => {
            open_angle(p)?;
            let mut fields: Vec<Field> = Vec::new();
            if !try_close_angle(p) {
                loop {
                    let name = identifier(p)?;
                    if fields.iter().any(|f| f.name == name) {
                        return Err(ParseError::new(format!("STRUCT field {name} is given twice")));
                    }
                    let ty = parse_type(p, depth + 1)?;
                    fields.push(Field { name, ty });
                    if !p.consume_token(&Token::Comma) {
                        break;
                    }
                }
                close_angle(p)?;
            }
            SqlType::Struct(fields.into())
        }
        other => return Err(ParseError::new(format!("unknown type {other}"))),
    })
}

fn open_angle(p: &mut Parser) -> Result<(), ParseError> {
    expect_token(p, Token::Lt)
}

/// `>` (a `>>` was split into two by [`parser_for`]).
fn close_angle(p: &mut Parser) -> Result<(), ParseError> {
    if try_close_angle(p) { Ok(()) } else { Err(unexpected(p, "'>'")) }
}

fn try_close_angle(p: &mut Parser) -> bool {
    p.consume_token(&Token::Gt)
}

/// Parses an expression with sqlparser and converts it.
fn expr(p: &mut Parser) -> Result<Expr, ParseError> {
    let e = p.parse_expr()?;
    convert(e, 0)
}

/// Subtrees are never printed in errors: printing recurses as deep as the tree.
const UNSUPPORTED_EXPRESSION: &str = "unsupported syntax in an expression (supported: arithmetic, comparison, AND, OR, \
     NOT, CASE, CAST, LIKE, IN, BETWEEN, IS NULL, function calls, ->, [], ARRAY[...], MAP(...), STRUCT(...))";

fn convert_box(e: sp::Expr, depth: usize) -> Result<Box<Expr>, ParseError> {
    convert(e, depth + 1).map(Box::new)
}

fn literal(v: sp::Value) -> Result<Literal, ParseError> {
    Ok(match v {
        sp::Value::Number(n, _) => number_literal(&n)?,
        sp::Value::SingleQuotedString(s) => Literal::String(s),
        sp::Value::Boolean(b) => Literal::Boolean(b),
        sp::Value::Null => Literal::Null,
        other => return Err(ParseError::new(format!("unsupported literal {other}"))),
    })
}

fn convert(e: sp::Expr, depth: usize) -> Result<Expr, ParseError> {
    if depth > EXPRESSION_DEPTH_MAX {
        return Err(ParseError::new(format!(
            "the statement nests expressions deeper than {EXPRESSION_DEPTH_MAX} levels"
        )));
    }
    use sp::Expr as S;
    Ok(match e {
        S::Identifier(ident) => Expr::Column { source: None, name: normalise(&ident) },
        S::CompoundIdentifier(parts) => match parts.as_slice() {
            [source, name] => Expr::Column { source: Some(normalise(source)), name: normalise(name) },
            _ => {
                return Err(ParseError::new(format!(
                    "{}: a column is NAME or SOURCE.NAME; use -> for struct fields",
                    parts.iter().map(|p| p.value.as_str()).collect::<Vec<_>>().join(".")
                )));
            }
        },
        S::Value(v) => Expr::Literal(literal(v.value)?),
        S::Nested(inner) => convert(*inner, depth + 1)?,
        S::UnaryOp { op, expr } => {
            let inner = convert_box(*expr, depth)?;
            match op {
                sp::UnaryOperator::Not => Expr::Unary { op: UnaryOp::Not, expr: inner },
                sp::UnaryOperator::Minus => match *inner {
                    Expr::Literal(l @ (Literal::Integer(_) | Literal::Decimal(_) | Literal::Double(_))) => {
                        Expr::Literal(negate(l))
                    }
                    other => Expr::Unary { op: UnaryOp::Neg, expr: Box::new(other) },
                },
                sp::UnaryOperator::Plus => *inner,
                other => return Err(ParseError::new(format!("unsupported operator {other}"))),
            }
        }
        S::BinaryOp { left, op, right } => {
            if op == sp::BinaryOperator::Arrow {
                let field = match *right {
                    S::Identifier(ident) => normalise(&ident),
                    _ => return Err(ParseError::new("expected a field name after ->")),
                };
                return Ok(Expr::Deref { expr: convert_box(*left, depth)?, field });
            }
            let op = match op {
                sp::BinaryOperator::Plus => BinaryOp::Add,
                sp::BinaryOperator::Minus => BinaryOp::Sub,
                sp::BinaryOperator::Multiply => BinaryOp::Mul,
                sp::BinaryOperator::Divide => BinaryOp::Div,
                sp::BinaryOperator::Modulo => BinaryOp::Mod,
                sp::BinaryOperator::Eq => BinaryOp::Eq,
                sp::BinaryOperator::NotEq => BinaryOp::NotEq,
                sp::BinaryOperator::Lt => BinaryOp::Lt,
                sp::BinaryOperator::LtEq => BinaryOp::LtEq,
                sp::BinaryOperator::Gt => BinaryOp::Gt,
                sp::BinaryOperator::GtEq => BinaryOp::GtEq,
                sp::BinaryOperator::And => BinaryOp::And,
                sp::BinaryOperator::Or => BinaryOp::Or,
                sp::BinaryOperator::StringConcat => BinaryOp::Concat,
                other => return Err(ParseError::new(format!("unsupported operator {other}"))),
            };
            Expr::Binary { op, left: convert_box(*left, depth)?, right: convert_box(*right, depth)? }
        }
        S::IsNull(e) => Expr::IsNull { expr: convert_box(*e, depth)?, negated: false },
        S::IsNotNull(e) => Expr::IsNull { expr: convert_box(*e, depth)?, negated: true },
        S::Like { negated, any: false, expr, pattern, escape_char } => {
            let escape = match escape_char.map(|e| *e) {
                None => None,
                Some(S::Value(sp::ValueWithSpan { value: sp::Value::SingleQuotedString(s), .. }))
                    if s.chars().count() == 1 =>
                {
                    s.chars().next()
                }
                Some(_) => return Err(ParseError::new("ESCAPE takes one quoted character")),
            };
            Expr::Like { expr: convert_box(*expr, depth)?, pattern: convert_box(*pattern, depth)?, escape, negated }
        }
        S::Between { expr, negated, low, high } => Expr::Between {
            expr: convert_box(*expr, depth)?,
            low: convert_box(*low, depth)?,
            high: convert_box(*high, depth)?,
            negated,
        },
        S::In { expr, target: sp::InTarget::List(list), negated, global: false } => Expr::InList {
            expr: convert_box(*expr, depth)?,
            list: list.into_iter().map(|e| convert(e, depth + 1)).collect::<Result<_, _>>()?,
            negated,
        },
        S::Case { operand, conditions, else_result, .. } => Expr::Case {
            operand: operand.map(|o| convert_box(*o, depth)).transpose()?,
            whens: conditions
                .into_iter()
                .map(|w| Ok((convert(w.condition, depth + 1)?, convert(w.result, depth + 1)?)))
                .collect::<Result<_, ParseError>>()?,
            otherwise: else_result.map(|e| convert_box(*e, depth)).transpose()?,
        },
        S::Cast { kind: sp::CastKind::Cast, expr, data_type, format: None } => {
            let ty = match data_type {
                sp::DataType::Custom(name, _) => parse_type_text(&name.to_string())?,
                other => parse_type_text(&other.to_string())?,
            };
            Expr::Cast { expr: convert_box(*expr, depth)?, ty }
        }
        S::Function(f) => function(f, depth)?,
        S::Array(a) => Expr::Array(a.elem.into_iter().map(|e| convert(e, depth + 1)).collect::<Result<_, _>>()?),
        S::Struct { values, fields } if fields.is_empty() => {
            let mut out = Vec::new();
            for v in values {
                match v {
                    S::BinaryOp { left, op: sp::BinaryOperator::Assignment, right } => {
                        let S::Identifier(name) = *left else {
                            return Err(ParseError::new("STRUCT fields are written NAME := value"));
                        };
                        out.push((normalise(&name), convert(*right, depth + 1)?));
                    }
                    _ => return Err(ParseError::new("STRUCT fields are written NAME := value")),
                }
            }
            Expr::Struct(out)
        }
        S::CompoundFieldAccess { root, access_chain } => {
            let mut out = convert(*root, depth + 1)?;
            for access in access_chain {
                out = match access {
                    sp::AccessExpr::Subscript(sp::Subscript::Index { index }) => {
                        Expr::Subscript { expr: Box::new(out), index: convert_box(index, depth)? }
                    }
                    _ => {
                        return Err(ParseError::new("only [index] subscripts are supported; use -> for struct fields"));
                    }
                };
            }
            out
        }
        S::Substring { expr, substring_from, substring_for, .. } => {
            let mut args = vec![convert(*expr, depth + 1)?];
            if let Some(from) = substring_from {
                args.push(convert(*from, depth + 1)?);
            }
            if let Some(len) = substring_for {
                args.push(convert(*len, depth + 1)?);
            }
            Expr::Function { name: "SUBSTRING".into(), args }
        }
        S::Trim { expr, trim_where: None, trim_what: None, trim_characters: None } => {
            Expr::Function { name: "TRIM".into(), args: vec![convert(*expr, depth + 1)?] }
        }
        S::Ceil { expr, field: sp::CeilFloorKind::DateTimeField(sp::DateTimeField::NoDateTime) } => {
            Expr::Function { name: "CEIL".into(), args: vec![convert(*expr, depth + 1)?] }
        }
        S::Floor { expr, field: sp::CeilFloorKind::DateTimeField(sp::DateTimeField::NoDateTime) } => {
            Expr::Function { name: "FLOOR".into(), args: vec![convert(*expr, depth + 1)?] }
        }
        S::Lambda(l) => {
            let params = match l.params {
                sp::OneOrManyWithParens::One(p) => vec![normalise(&p.name)],
                sp::OneOrManyWithParens::Many(ps) => ps.iter().map(|p| normalise(&p.name)).collect(),
            };
            Expr::Lambda { params, body: convert_box(*l.body, depth)? }
        }
        _ => return Err(ParseError::new(UNSUPPORTED_EXPRESSION)),
    })
}

fn function(f: sp::Function, depth: usize) -> Result<Expr, ParseError> {
    let name = match f.name.0.as_slice() {
        [sp::ObjectNamePart::Identifier(ident)] => ident.value.to_ascii_uppercase(),
        _ => return Err(ParseError::new(format!("unknown function {}", f.name))),
    };
    if f.filter.is_some() || f.over.is_some() || !f.within_group.is_empty() || f.null_treatment.is_some() {
        return Err(ParseError::new(format!("{name}: FILTER, OVER and WITHIN GROUP are not supported")));
    }
    let list = match f.args {
        sp::FunctionArguments::None => Vec::new(),
        sp::FunctionArguments::List(l) => {
            if l.duplicate_treatment.is_some() || !l.clauses.is_empty() {
                return Err(ParseError::new(format!("{name}: DISTINCT and clauses in arguments are not supported")));
            }
            l.args
        }
        sp::FunctionArguments::Subquery(_) => return Err(ParseError::new("subqueries are not supported")),
    };
    if name == "MAP" {
        let mut entries = Vec::new();
        for arg in list {
            match arg {
                sp::FunctionArg::Named { name: key, arg: sp::FunctionArgExpr::Expr(value), .. } => {
                    let key = match key.quote_style {
                        Some('\'') => Expr::Literal(Literal::String(key.value)),
                        _ => Expr::Column { source: None, name: normalise(&key) },
                    };
                    entries.push((key, convert(value, depth + 1)?));
                }
                sp::FunctionArg::ExprNamed { name: key, arg: sp::FunctionArgExpr::Expr(value), .. } => {
                    entries.push((convert(key, depth + 1)?, convert(value, depth + 1)?));
                }
                _ => return Err(ParseError::new("MAP entries are written key := value")),
            }
        }
        return Ok(Expr::Map(entries));
    }
    if name == "STRUCT" {
        let mut fields = Vec::new();
        for arg in list {
            match arg {
                sp::FunctionArg::Named {
                    name: field,
                    arg: sp::FunctionArgExpr::Expr(value),
                    operator: sp::FunctionArgOperator::Assignment,
                } => fields.push((normalise(&field), convert(value, depth + 1)?)),
                _ => return Err(ParseError::new("STRUCT fields are written NAME := value")),
            }
        }
        return Ok(Expr::Struct(fields));
    }
    let mut args = Vec::with_capacity(list.len());
    for arg in list {
        args.push(match arg {
            sp::FunctionArg::Unnamed(sp::FunctionArgExpr::Expr(e)) => convert(e, depth + 1)?,
            sp::FunctionArg::Unnamed(sp::FunctionArgExpr::Wildcard) => Expr::Star,
            // `x => body`: a one-parameter lambda, as ksqlDB writes them.
            sp::FunctionArg::Named {
                name: param,
                arg: sp::FunctionArgExpr::Expr(body),
                operator: sp::FunctionArgOperator::RightArrow,
            } => Expr::Lambda { params: vec![normalise(&param)], body: Box::new(convert(body, depth + 1)?) },
            _ => return Err(ParseError::new(format!("{name}: arguments are expressions, * or x => lambda"))),
        });
    }
    Ok(Expr::Function { name, args })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(sql: &str) -> Statement {
        parse_statement_text(sql).unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    #[test]
    fn create_stream_with_columns_keys_and_properties() {
        let s =
            one("CREATE STREAM orders (id BIGINT KEY, `customerId` INT, items ARRAY<STRUCT<sku STRING, qty INT>>, \
             m MAP<STRING, DECIMAL(10, 2)>, h BYTES HEADER('trace')) \
             WITH (kafka_topic='orders', value_format='JSON', partitions=3);");
        let Statement::CreateSource(c) = s else { panic!("{s:?}") };
        assert_eq!(c.kind, SourceKind::Stream);
        assert_eq!(c.name, "ORDERS");
        assert_eq!(c.columns[0], ColumnDef { name: "ID".into(), ty: SqlType::Bigint, source: ColumnSource::Key });
        assert_eq!(c.columns[1].name, "customerId");
        assert_eq!(c.columns[2].ty.to_string(), "ARRAY<STRUCT<SKU STRING, QTY INTEGER>>");
        assert_eq!(c.columns[3].ty.to_string(), "MAP<STRING, DECIMAL(10, 2)>");
        assert_eq!(c.columns[4].source, ColumnSource::Headers(Some("trace".into())));
        assert_eq!(c.properties["KAFKA_TOPIC"], Literal::String("orders".into()));
        assert_eq!(c.properties["PARTITIONS"], Literal::Integer(3));
    }

    #[test]
    fn nested_angle_brackets_close_with_one_token() {
        assert_eq!(parse_type_text("ARRAY<ARRAY<INT>>").unwrap().to_string(), "ARRAY<ARRAY<INTEGER>>");
        assert_eq!(
            parse_type_text("MAP<STRING, ARRAY<STRUCT<A INT>>>").unwrap().to_string(),
            "MAP<STRING, ARRAY<STRUCT<A INTEGER>>>"
        );
        assert!(parse_type_text("ARRAY<INT").is_err());
        assert!(parse_type_text("DECIMAL(50, 2)").is_err());
        let deep = format!("{}INT{}", "ARRAY<".repeat(100), ">".repeat(100));
        assert!(parse_type_text(&deep).unwrap_err().message.contains("nest"));
    }

    #[test]
    fn table_needs_primary_key_and_stream_key() {
        assert!(parse_statement_text("CREATE TABLE t (id INT KEY) WITH (kafka_topic='t')").is_err());
        assert!(parse_statement_text("CREATE STREAM s (id INT PRIMARY KEY) WITH (kafka_topic='t')").is_err());
        let Statement::CreateSource(c) = one("CREATE TABLE t (id INT PRIMARY KEY, v STRING) WITH (kafka_topic='t')")
        else {
            panic!()
        };
        assert_eq!(c.columns[0].source, ColumnSource::Key);
    }

    #[test]
    fn push_query_with_join_window_and_clauses() {
        let s = one(
            "SELECT o.id, c.name AS customer, COUNT(*) n FROM orders o LEFT JOIN customers AS c ON o.customer_id = c.id \
             WINDOW TUMBLING (SIZE 1 HOUR, GRACE PERIOD 10 MINUTES) WHERE o.region = 'EU' GROUP BY o.id, c.name \
             HAVING COUNT(*) > 1 EMIT CHANGES LIMIT 10",
        );
        let Statement::Query(q) = s else { panic!() };
        assert_eq!(q.projection.len(), 3);
        assert_eq!(
            q.projection[1],
            SelectItem::Expr {
                expr: Expr::Column { source: Some("C".into()), name: "NAME".into() },
                alias: Some("CUSTOMER".into())
            }
        );
        let SelectItem::Expr { expr: Expr::Function { name, args }, alias } = &q.projection[2] else { panic!() };
        assert_eq!((name.as_str(), args.as_slice(), alias.as_deref()), ("COUNT", &[Expr::Star][..], Some("N")));
        let Relation::Join(j) = &q.from else { panic!() };
        assert_eq!(j.kind, JoinKind::Left);
        assert_eq!(j.right, Relation::Source { name: "CUSTOMERS".into(), alias: Some("C".into()) });
        assert_eq!(
            q.window,
            Some(WindowSpec::Tumbling { size_ms: 3_600_000, retention_ms: None, grace_ms: Some(600_000) })
        );
        assert_eq!(q.group_by.len(), 2);
        assert_eq!(q.emit, Some(Emit::Changes));
        assert_eq!(q.limit, Some(10));
    }

    #[test]
    fn stream_stream_join_within() {
        let Statement::Query(q) =
            one("SELECT * FROM a JOIN b WITHIN (1 HOUR, 2 HOURS) GRACE PERIOD 5 SECONDS ON a.id = b.id EMIT CHANGES")
        else {
            panic!()
        };
        let Relation::Join(j) = &q.from else { panic!() };
        assert_eq!(j.within, Some((3_600_000, 7_200_000)));
        assert_eq!(j.grace_ms, Some(5_000));
        assert_eq!(q.projection, vec![SelectItem::Wildcard]);
    }

    #[test]
    fn expressions_convert_with_ksql_precedence_and_names() {
        let e = parse_expression("a->b->c + 1").unwrap();
        let Expr::Binary { op: BinaryOp::Add, left, .. } = e else { panic!("{e:?}") };
        assert_eq!(
            *left,
            Expr::Deref {
                expr: Box::new(Expr::Deref { expr: Box::new(Expr::column("A")), field: "B".into() }),
                field: "C".into()
            }
        );
        assert_eq!(
            parse_expression("CAST(x AS ARRAY<STRUCT<`a` INT>>)").unwrap(),
            Expr::Cast { expr: Box::new(Expr::column("X")), ty: parse_type_text("ARRAY<STRUCT<`a` INT>>").unwrap() }
        );
        assert_eq!(parse_expression("-5").unwrap(), Expr::Literal(Literal::Integer(-5)));
        assert_eq!(parse_expression("1.50").unwrap(), Expr::Literal(Literal::Decimal("1.50".into())));
        assert_eq!(parse_expression("1e3").unwrap(), Expr::Literal(Literal::Double(1000.0)));
        assert!(matches!(parse_expression("arr[1]").unwrap(), Expr::Subscript { .. }));
        assert!(matches!(parse_expression("MAP('a' := 1)").unwrap(), Expr::Map(m) if m.len() == 1));
        assert!(matches!(parse_expression("STRUCT(a := 1, b := 'x')").unwrap(), Expr::Struct(f) if f.len() == 2));
        assert!(matches!(
            parse_expression("TRANSFORM(arr, x => x + 1)").unwrap(),
            Expr::Function { args, .. } if matches!(&args[1], Expr::Lambda { params, .. } if params == &["X"])
        ));
        assert!(matches!(parse_expression("x NOT LIKE 'a%'").unwrap(), Expr::Like { negated: true, .. }));
        assert!(matches!(parse_expression("x NOT IN (1, 2)").unwrap(), Expr::InList { negated: true, .. }));
        assert!(matches!(parse_expression("CASE WHEN a THEN 1 ELSE 2 END").unwrap(), Expr::Case { .. }));
    }

    #[test]
    fn hostile_input_is_an_error_not_a_crash() {
        let deep = format!("{}1{}", "(".repeat(10_000), ")".repeat(10_000));
        assert!(parse_expression(&deep).is_err(), "deep parentheses");
        let long_chain = vec!["1"; 5_000].join(" + ");
        assert!(parse_expression(&long_chain).is_err(), "long chain");
        assert!(parse_statements("SELECT").is_err());
        assert!(parse_statements("CREATE STREAM").is_err());
        assert!(parse_statements(&"x".repeat(STATEMENT_BYTES_MAX + 1)).is_err());
        for sql in ["SELECT * FROM", "INSERT INTO t (a) VALUES (1, 2)", "PRINT", "SHOW NOTHING", "DROP VIEW v"] {
            assert!(parse_statements(sql).is_err(), "{sql}");
        }
    }

    #[test]
    fn other_statements() {
        assert_eq!(
            one("INSERT INTO s (a, b) VALUES (1, 'x')"),
            Statement::InsertValues {
                target: "S".into(),
                columns: Some(vec!["A".into(), "B".into()]),
                values: vec![Expr::Literal(Literal::Integer(1)), Expr::Literal(Literal::String("x".into()))],
            }
        );
        assert!(matches!(one("INSERT INTO s SELECT * FROM t EMIT CHANGES"), Statement::InsertInto { .. }));
        assert!(matches!(
            one(
                "CREATE OR REPLACE TABLE t WITH (kafka_topic='x') AS SELECT id, COUNT(*) FROM s GROUP BY id EMIT CHANGES"
            ),
            Statement::CreateAsSelect(CreateAsSelect { kind: SourceKind::Table, or_replace: true, .. })
        ));
        assert_eq!(one("SHOW STREAMS EXTENDED"), Statement::Show { what: ShowKind::Streams, extended: true });
        assert_eq!(one("LIST TOPICS"), Statement::Show { what: ShowKind::Topics, extended: false });
        assert_eq!(one("DESCRIBE orders EXTENDED"), Statement::Describe { name: "ORDERS".into(), extended: true });
        assert_eq!(one("DESCRIBE FUNCTION ucase"), Statement::DescribeFunction { name: "UCASE".into() });
        assert_eq!(
            one("DROP TABLE IF EXISTS t DELETE TOPIC"),
            Statement::Drop { kind: SourceKind::Table, if_exists: true, name: "T".into(), delete_topic: true }
        );
        assert_eq!(one("TERMINATE ALL"), Statement::Terminate { query_id: None });
        assert_eq!(one("TERMINATE CSAS_X_1"), Statement::Terminate { query_id: Some("CSAS_X_1".into()) });
        assert_eq!(
            one("PRINT 'orders' FROM BEGINNING LIMIT 5"),
            Statement::Print { topic: "orders".into(), from_beginning: true, interval: None, limit: Some(5) }
        );
        assert_eq!(
            one("SET 'auto.offset.reset' = 'earliest'"),
            Statement::Set { property: "auto.offset.reset".into(), value: "earliest".into() }
        );
        assert_eq!(one("UNSET 'auto.offset.reset'"), Statement::Unset { property: "auto.offset.reset".into() });
        assert_eq!(one("DEFINE Region = 'EU'"), Statement::Define { name: "region".into(), value: "EU".into() });
        assert!(matches!(one("EXPLAIN CSAS_X_1"), Statement::Explain(ExplainTarget::QueryId(_))));
        assert!(matches!(one("EXPLAIN SELECT * FROM t"), Statement::Explain(ExplainTarget::Statement(_))));
        assert_eq!(parse_statements("SHOW TABLES; SHOW QUERIES;").unwrap().len(), 2);
    }
}
