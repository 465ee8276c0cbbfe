//! Expressions compiled once into closures over typed values.
//!
//! [`compile`] resolves column names against a [`Scope`], checks types (reporting the
//! expression and the type it expected, when the statement is submitted), and returns a
//! [`Compiled`] expression whose `eval` runs per record without looking at the syntax tree
//! again. Semantics follow ksqlDB: three-valued logic with NULL; arithmetic widens INT <
//! BIGINT < DECIMAL < DOUBLE; integer overflow, division by zero and failed casts are
//! evaluation errors (the record goes to the processing log and the query goes on).

use std::cmp::Ordering;
use std::fmt;
use std::sync::Arc;

use crate::ast::{BinaryOp, Expr, Literal, UnaryOp};
use crate::functions::{self, FunctionImpl};
use crate::types::{DECIMAL_PRECISION_MAX, Field, SqlType, quote_ident};
use crate::value::{Decimal, Value, base64, base64_decode, format_double};

/// Most elements an ARRAY, MAP or STRUCT constructor, IN list or CASE may have.
pub const CONSTRUCTOR_ITEMS_MAX: usize = 10_000;

/// An expression that does not type-check, with a message naming it and what was expected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct TypeError(pub String);

/// An error while evaluating an expression for one record.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct EvalError(pub String);

pub(crate) fn eval_err(message: impl Into<String>) -> EvalError {
    EvalError(message.into())
}

type EvalFn = dyn Fn(&[Value]) -> Result<Value, EvalError> + Send + Sync;

/// A compiled expression: its type and its evaluator over a row laid out as its [`Scope`].
#[derive(Clone)]
pub struct Compiled {
    pub ty: SqlType,
    f: Arc<EvalFn>,
}

impl fmt::Debug for Compiled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Compiled({})", self.ty)
    }
}

impl Compiled {
    fn new(ty: SqlType, f: impl Fn(&[Value]) -> Result<Value, EvalError> + Send + Sync + 'static) -> Compiled {
        Compiled { ty, f: Arc::new(f) }
    }

    pub fn eval(&self, row: &[Value]) -> Result<Value, EvalError> {
        (self.f)(row)
    }

    /// Evaluates a predicate: NULL counts as false, as in WHERE.
    pub fn test(&self, row: &[Value]) -> Result<bool, EvalError> {
        Ok(matches!(self.eval(row)?, Value::Boolean(true)))
    }
}

/// One column visible to expressions, at a position of the row.
#[derive(Debug, Clone, PartialEq)]
pub struct ScopeColumn {
    /// The source (or its alias) the column belongs to, for `SOURCE.NAME`.
    pub source: Option<String>,
    pub name: String,
    pub ty: SqlType,
}

/// The columns an expression may reference; a row has one value per column, in this order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scope {
    pub columns: Vec<ScopeColumn>,
}

impl Scope {
    pub fn new(columns: Vec<ScopeColumn>) -> Scope {
        Scope { columns }
    }

    pub fn push(&mut self, source: Option<&str>, name: &str, ty: SqlType) {
        self.columns.push(ScopeColumn { source: source.map(str::to_string), name: name.to_string(), ty });
    }

    /// The position of a column; an unqualified name must be unique across sources.
    pub fn resolve(&self, source: Option<&str>, name: &str) -> Result<usize, TypeError> {
        let mut found = self
            .columns
            .iter()
            .enumerate()
            .rev() // later columns (lambda parameters) shadow earlier ones
            .filter(|(_, c)| c.name == name && (source.is_none() || c.source.as_deref() == source));
        let Some((index, column)) = found.next() else {
            let full = match source {
                Some(s) => format!("{}.{}", quote_ident(s), quote_ident(name)),
                None => quote_ident(name),
            };
            return Err(TypeError(format!("column {full} cannot be resolved")));
        };
        // Lambda parameters (no source) shadow the columns of the sources.
        if column.source.is_none() {
            return Ok(index);
        }
        if source.is_none() && found.any(|(_, c)| c.source != self.columns[index].source) {
            return Err(TypeError(format!(
                "column {} is ambiguous: qualify it with its source (for example {}.{})",
                quote_ident(name),
                self.columns[index].source.as_deref().map(quote_ident).unwrap_or_default(),
                quote_ident(name)
            )));
        }
        Ok(index)
    }
}

impl fmt::Display for Expr {
    /// SQL text for the expression, used in error messages and generated column names.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Column { source: Some(s), name } => write!(f, "{}.{}", quote_ident(s), quote_ident(name)),
            Expr::Column { source: None, name } => f.write_str(&quote_ident(name)),
            Expr::Literal(l) => write!(f, "{l}"),
            Expr::Unary { op: UnaryOp::Not, expr } => write!(f, "(NOT {expr})"),
            Expr::Unary { op: UnaryOp::Neg, expr } => write!(f, "-{expr}"),
            Expr::Binary { op, left, right } => write!(f, "({left} {op} {right})"),
            Expr::IsNull { expr, negated } => write!(f, "({expr} IS {}NULL)", if *negated { "NOT " } else { "" }),
            Expr::Like { expr, pattern, negated, .. } => {
                write!(f, "({expr} {}LIKE {pattern})", if *negated { "NOT " } else { "" })
            }
            Expr::Between { expr, low, high, negated } => {
                write!(f, "({expr} {}BETWEEN {low} AND {high})", if *negated { "NOT " } else { "" })
            }
            Expr::InList { expr, list, negated } => {
                write!(f, "({expr} {}IN (", if *negated { "NOT " } else { "" })?;
                join(f, list)?;
                f.write_str("))")
            }
            Expr::Case { operand, whens, otherwise } => {
                f.write_str("CASE")?;
                if let Some(o) = operand {
                    write!(f, " {o}")?;
                }
                for (w, t) in whens {
                    write!(f, " WHEN {w} THEN {t}")?;
                }
                if let Some(e) = otherwise {
                    write!(f, " ELSE {e}")?;
                }
                f.write_str(" END")
            }
            Expr::Cast { expr, ty } => write!(f, "CAST({expr} AS {ty})"),
            Expr::Function { name, args } => {
                write!(f, "{name}(")?;
                join(f, args)?;
                f.write_str(")")
            }
            Expr::Star => f.write_str("*"),
            Expr::Deref { expr, field } => write!(f, "{expr}->{}", quote_ident(field)),
            Expr::Subscript { expr, index } => write!(f, "{expr}[{index}]"),
            Expr::Array(items) => {
                f.write_str("ARRAY[")?;
                join(f, items)?;
                f.write_str("]")
            }
            Expr::Map(entries) => {
                f.write_str("MAP(")?;
                for (i, (k, v)) in entries.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{k}:={v}")?;
                }
                f.write_str(")")
            }
            Expr::Struct(fields) => {
                f.write_str("STRUCT(")?;
                for (i, (n, v)) in fields.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{}:={v}", quote_ident(n))?;
                }
                f.write_str(")")
            }
            Expr::Lambda { params, body } => {
                if params.len() == 1 {
                    write!(f, "{} => {body}", quote_ident(&params[0]))
                } else {
                    let names: Vec<_> = params.iter().map(|p| quote_ident(p)).collect();
                    write!(f, "({}) => {body}", names.join(", "))
                }
            }
        }
    }
}

fn join(f: &mut fmt::Formatter<'_>, items: &[Expr]) -> fmt::Result {
    for (i, e) in items.iter().enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        write!(f, "{e}")?;
    }
    Ok(())
}

/// Compiles `expr` against `scope`.
pub fn compile(expr: &Expr, scope: &Scope) -> Result<Compiled, TypeError> {
    Compiler { scope: scope.clone() }.compile(expr)
}

/// Compiles a predicate, which must be BOOLEAN; `clause` names it in errors (`WHERE`).
pub fn compile_predicate(expr: &Expr, scope: &Scope, clause: &str) -> Result<Compiled, TypeError> {
    let c = compile(expr, scope)?;
    if c.ty != SqlType::Boolean {
        return Err(TypeError(format!("{clause} expression {expr} is {}, but must be BOOLEAN", c.ty)));
    }
    Ok(c)
}

/// The type of a literal (INT when an integer fits in 32 bits).
fn literal(l: &Literal) -> Result<Compiled, TypeError> {
    Ok(match l {
        Literal::Null => Compiled::new(SqlType::String, |_| Ok(Value::Null)),
        Literal::Boolean(b) => {
            let b = *b;
            Compiled::new(SqlType::Boolean, move |_| Ok(Value::Boolean(b)))
        }
        Literal::Integer(i) => match i32::try_from(*i) {
            Ok(v) => Compiled::new(SqlType::Int, move |_| Ok(Value::Int(v))),
            Err(_) => {
                let v = *i;
                Compiled::new(SqlType::Bigint, move |_| Ok(Value::Bigint(v)))
            }
        },
        Literal::Decimal(text) => {
            let d = Decimal::parse(text).filter(|d| d.precision() <= DECIMAL_PRECISION_MAX).ok_or_else(|| {
                TypeError(format!("decimal literal {text} has more than {DECIMAL_PRECISION_MAX} digits"))
            })?;
            let ty = SqlType::Decimal { precision: d.precision().max(d.scale), scale: d.scale };
            Compiled::new(ty, move |_| Ok(Value::Decimal(d)))
        }
        Literal::Double(d) => {
            let d = *d;
            Compiled::new(SqlType::Double, move |_| Ok(Value::Double(d)))
        }
        Literal::String(s) => {
            let v = Value::string(s);
            Compiled::new(SqlType::String, move |_| Ok(v.clone()))
        }
    })
}

fn is_null_literal(e: &Expr) -> bool {
    matches!(e, Expr::Literal(Literal::Null))
}

struct Compiler {
    scope: Scope,
}

impl Compiler {
    fn compile(&mut self, expr: &Expr) -> Result<Compiled, TypeError> {
        match expr {
            Expr::Column { source, name } => {
                let index = self.scope.resolve(source.as_deref(), name)?;
                let ty = self.scope.columns[index].ty.clone();
                Ok(Compiled::new(ty, move |row| Ok(row.get(index).cloned().unwrap_or(Value::Null))))
            }
            Expr::Literal(l) => literal(l),
            Expr::Unary { op: UnaryOp::Not, expr: inner } => {
                let c = self.expect(inner, &SqlType::Boolean, "NOT")?;
                Ok(Compiled::new(SqlType::Boolean, move |row| {
                    Ok(match c.eval(row)? {
                        Value::Boolean(b) => Value::Boolean(!b),
                        _ => Value::Null,
                    })
                }))
            }
            Expr::Unary { op: UnaryOp::Neg, expr: inner } => {
                let c = self.compile(inner)?;
                if !c.ty.is_numeric() {
                    return Err(TypeError(format!("cannot negate {inner}: it is {}, not a number", c.ty)));
                }
                Ok(Compiled::new(c.ty.clone(), move |row| negate(c.eval(row)?)))
            }
            Expr::Binary { op, left, right } => self.binary(*op, left, right),
            Expr::IsNull { expr: inner, negated } => {
                let c = self.compile(inner)?;
                let negated = *negated;
                Ok(Compiled::new(SqlType::Boolean, move |row| Ok(Value::Boolean(c.eval(row)?.is_null() != negated))))
            }
            Expr::Like { expr: inner, pattern, escape, negated } => {
                let c = self.expect(inner, &SqlType::String, "LIKE")?;
                let p = self.expect(pattern, &SqlType::String, "LIKE")?;
                let (escape, negated) = (*escape, *negated);
                // A constant pattern is compiled once.
                let constant = match pattern.as_ref() {
                    Expr::Literal(Literal::String(s)) => Some(LikePattern::new(s, escape)),
                    _ => None,
                };
                Ok(Compiled::new(SqlType::Boolean, move |row| {
                    let Value::String(s) = c.eval(row)? else { return Ok(Value::Null) };
                    let matched = match &constant {
                        Some(pattern) => pattern.matches(&s),
                        None => match p.eval(row)? {
                            Value::String(pat) => LikePattern::new(&pat, escape).matches(&s),
                            _ => return Ok(Value::Null),
                        },
                    };
                    Ok(Value::Boolean(matched != negated))
                }))
            }
            Expr::Between { expr: inner, low, high, negated } => {
                let ge = self.binary(BinaryOp::GtEq, inner, low)?;
                let le = self.binary(BinaryOp::LtEq, inner, high)?;
                let negated = *negated;
                Ok(Compiled::new(SqlType::Boolean, move |row| {
                    let v = and(ge.eval(row)?, le.eval(row)?);
                    Ok(if negated { not(v) } else { v })
                }))
            }
            Expr::InList { expr: inner, list, negated } => {
                if list.len() > CONSTRUCTOR_ITEMS_MAX {
                    return Err(TypeError(format!("IN lists may have at most {CONSTRUCTOR_ITEMS_MAX} items")));
                }
                let tests =
                    list.iter().map(|item| self.binary(BinaryOp::Eq, inner, item)).collect::<Result<Vec<_>, _>>()?;
                let negated = *negated;
                Ok(Compiled::new(SqlType::Boolean, move |row| {
                    let mut result = Value::Boolean(false);
                    for t in &tests {
                        match t.eval(row)? {
                            Value::Boolean(true) => {
                                result = Value::Boolean(true);
                                break;
                            }
                            Value::Null => result = Value::Null,
                            _ => {}
                        }
                    }
                    Ok(if negated { not(result) } else { result })
                }))
            }
            Expr::Case { operand, whens, otherwise } => self.case(operand.as_deref(), whens, otherwise.as_deref()),
            Expr::Cast { expr: inner, ty } => {
                let c = self.compile(inner)?;
                let from = c.ty.clone();
                if !castable(&from, ty) && !is_null_literal(inner) {
                    return Err(TypeError(format!("cannot CAST {inner} from {from} to {ty}")));
                }
                let to = ty.clone();
                Ok(Compiled::new(ty.clone(), move |row| cast(c.eval(row)?, &from, &to)))
            }
            Expr::Function { name, args } => self.function(name, args),
            Expr::Star => Err(TypeError("* is only allowed in COUNT(*) and SELECT *".into())),
            Expr::Deref { expr: inner, field } => {
                let c = self.compile(inner)?;
                let SqlType::Struct(fields) = &c.ty else {
                    return Err(TypeError(format!("{inner} is {}, not a STRUCT: -> needs a STRUCT", c.ty)));
                };
                let Some(index) = fields.iter().position(|f| &f.name == field) else {
                    let names: Vec<_> = fields.iter().map(|f| quote_ident(&f.name)).collect();
                    return Err(TypeError(format!(
                        "{inner} has no field {}; its fields are {}",
                        quote_ident(field),
                        names.join(", ")
                    )));
                };
                let ty = fields[index].ty.clone();
                Ok(Compiled::new(ty, move |row| {
                    Ok(match c.eval(row)? {
                        Value::Struct(values) => values.get(index).cloned().unwrap_or(Value::Null),
                        _ => Value::Null,
                    })
                }))
            }
            Expr::Subscript { expr: inner, index } => {
                let c = self.compile(inner)?;
                match c.ty.clone() {
                    SqlType::Array(item) => {
                        let i = self.compile(index)?;
                        if !matches!(i.ty, SqlType::Int | SqlType::Bigint) {
                            return Err(TypeError(format!("array index {index} is {}, but must be INTEGER", i.ty)));
                        }
                        Ok(Compiled::new((*item).clone(), move |row| {
                            let (Value::Array(items), Some(i)) = (c.eval(row)?, i.eval(row)?.as_i64()) else {
                                return Ok(Value::Null);
                            };
                            Ok(array_item(&items, i))
                        }))
                    }
                    SqlType::Map(key, value) => {
                        let k = self.expect(index, &key, "a map subscript")?;
                        Ok(Compiled::new((*value).clone(), move |row| {
                            let Value::Map(entries) = c.eval(row)? else { return Ok(Value::Null) };
                            let k = k.eval(row)?;
                            Ok(entries
                                .iter()
                                .find(|(ek, _)| ek.sql_eq(&k) == Some(true))
                                .map(|(_, v)| v.clone())
                                .unwrap_or(Value::Null))
                        }))
                    }
                    other => Err(TypeError(format!("{inner} is {other}: [] needs an ARRAY or a MAP"))),
                }
            }
            Expr::Array(items) => {
                if items.len() > CONSTRUCTOR_ITEMS_MAX {
                    return Err(TypeError(format!(
                        "ARRAY constructors may have at most {CONSTRUCTOR_ITEMS_MAX} items"
                    )));
                }
                let (ty, compiled) = self.common(items, "ARRAY elements")?;
                Ok(Compiled::new(SqlType::Array(Arc::new(ty)), move |row| {
                    Ok(Value::Array(compiled.iter().map(|c| c.eval(row)).collect::<Result<Vec<_>, _>>()?.into()))
                }))
            }
            Expr::Map(entries) => {
                if entries.len() > CONSTRUCTOR_ITEMS_MAX {
                    return Err(TypeError(format!(
                        "MAP constructors may have at most {CONSTRUCTOR_ITEMS_MAX} entries"
                    )));
                }
                let keys: Vec<Expr> = entries.iter().map(|(k, _)| k.clone()).collect();
                let values: Vec<Expr> = entries.iter().map(|(_, v)| v.clone()).collect();
                let (kt, kc) = self.common(&keys, "MAP keys")?;
                let (vt, vc) = self.common(&values, "MAP values")?;
                if !kt.is_primitive() {
                    return Err(TypeError(format!("MAP keys must be a primitive type, not {kt}")));
                }
                Ok(Compiled::new(SqlType::Map(Arc::new(kt), Arc::new(vt)), move |row| {
                    let mut out: Vec<(Value, Value)> = Vec::with_capacity(kc.len());
                    for (k, v) in kc.iter().zip(&vc) {
                        let (k, v) = (k.eval(row)?, v.eval(row)?);
                        // A later entry with the same key replaces the earlier one.
                        match out.iter_mut().find(|(ek, _)| *ek == k) {
                            Some(slot) => slot.1 = v,
                            None => out.push((k, v)),
                        }
                    }
                    Ok(Value::Map(out.into()))
                }))
            }
            Expr::Struct(fields) => {
                if fields.len() > CONSTRUCTOR_ITEMS_MAX {
                    return Err(TypeError(format!(
                        "STRUCT constructors may have at most {CONSTRUCTOR_ITEMS_MAX} fields"
                    )));
                }
                let mut types = Vec::new();
                let mut compiled = Vec::new();
                for (name, e) in fields {
                    if types.iter().any(|f: &Field| &f.name == name) {
                        return Err(TypeError(format!("STRUCT field {} is given twice", quote_ident(name))));
                    }
                    let c = self.compile(e)?;
                    types.push(Field { name: name.clone(), ty: c.ty.clone() });
                    compiled.push(c);
                }
                Ok(Compiled::new(SqlType::Struct(types.into()), move |row| {
                    Ok(Value::Struct(compiled.iter().map(|c| c.eval(row)).collect::<Result<Vec<_>, _>>()?.into()))
                }))
            }
            Expr::Lambda { .. } => {
                Err(TypeError(format!("lambda {expr} is only allowed as an argument of TRANSFORM, FILTER or REDUCE")))
            }
        }
    }

    /// Compiles `expr`, which must have type `want` (NULL literals take it).
    fn expect(&mut self, expr: &Expr, want: &SqlType, context: &str) -> Result<Compiled, TypeError> {
        if is_null_literal(expr) {
            return Ok(Compiled::new(want.clone(), |_| Ok(Value::Null)));
        }
        let c = self.compile(expr)?;
        if &c.ty != want {
            return Err(TypeError(format!("{context}: {expr} is {}, but must be {want}", c.ty)));
        }
        Ok(c)
    }

    /// Compiles expressions that must share one type (widening numbers, NULLs taking it).
    fn common(&mut self, exprs: &[Expr], what: &str) -> Result<(SqlType, Vec<Compiled>), TypeError> {
        let mut compiled: Vec<Compiled> = exprs.iter().map(|e| self.compile(e)).collect::<Result<_, _>>()?;
        let mut ty: Option<SqlType> = None;
        for (e, c) in exprs.iter().zip(&compiled) {
            if is_null_literal(e) {
                continue;
            }
            ty = Some(match ty {
                None => c.ty.clone(),
                Some(t) if t == c.ty => t,
                Some(t) => SqlType::widen_numeric(&t, &c.ty).ok_or_else(|| {
                    TypeError(format!("{what} must have one type, but {e} is {} while earlier ones are {t}", c.ty))
                })?,
            });
        }
        let ty = ty.unwrap_or(SqlType::String);
        for c in compiled.iter_mut() {
            if c.ty != ty {
                let (inner, from, to) = (c.clone(), c.ty.clone(), ty.clone());
                *c = Compiled::new(ty.clone(), move |row| cast(inner.eval(row)?, &from, &to));
            }
        }
        Ok((ty, compiled))
    }

    fn case(
        &mut self,
        operand: Option<&Expr>,
        whens: &[(Expr, Expr)],
        otherwise: Option<&Expr>,
    ) -> Result<Compiled, TypeError> {
        if whens.len() > CONSTRUCTOR_ITEMS_MAX {
            return Err(TypeError(format!("CASE may have at most {CONSTRUCTOR_ITEMS_MAX} WHEN clauses")));
        }
        let conditions = whens
            .iter()
            .map(|(w, _)| match operand {
                Some(o) => self.binary(BinaryOp::Eq, o, w),
                None => self.expect(w, &SqlType::Boolean, "CASE WHEN"),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut results: Vec<Expr> = whens.iter().map(|(_, t)| t.clone()).collect();
        if let Some(e) = otherwise {
            results.push(e.clone());
        }
        let (ty, mut compiled) = self.common(&results, "CASE results")?;
        let otherwise = if otherwise.is_some() { compiled.pop() } else { None };
        Ok(Compiled::new(ty, move |row| {
            for (cond, result) in conditions.iter().zip(&compiled) {
                if cond.test(row)? {
                    return result.eval(row);
                }
            }
            match &otherwise {
                Some(e) => e.eval(row),
                None => Ok(Value::Null),
            }
        }))
    }

    fn binary(&mut self, op: BinaryOp, left: &Expr, right: &Expr) -> Result<Compiled, TypeError> {
        let mut l = self.compile(left)?;
        let mut r = self.compile(right)?;
        // A NULL literal takes the other side's type.
        if is_null_literal(left) {
            l.ty = r.ty.clone();
        }
        if is_null_literal(right) {
            r.ty = l.ty.clone();
        }
        match op {
            BinaryOp::And | BinaryOp::Or => {
                for (e, c) in [(left, &l), (right, &r)] {
                    if c.ty != SqlType::Boolean {
                        return Err(TypeError(format!("{op}: {e} is {}, but must be BOOLEAN", c.ty)));
                    }
                }
                Ok(Compiled::new(SqlType::Boolean, move |row| {
                    let a = l.eval(row)?;
                    // Short circuit: FALSE AND x, TRUE OR x.
                    match (op, &a) {
                        (BinaryOp::And, Value::Boolean(false)) => return Ok(a),
                        (BinaryOp::Or, Value::Boolean(true)) => return Ok(a),
                        _ => {}
                    }
                    let b = r.eval(row)?;
                    Ok(if op == BinaryOp::And { and(a, b) } else { or(a, b) })
                }))
            }
            BinaryOp::Concat => {
                for (e, c) in [(left, &l), (right, &r)] {
                    if c.ty != SqlType::String {
                        return Err(TypeError(format!("||: {e} is {}, but must be STRING", c.ty)));
                    }
                }
                Ok(Compiled::new(SqlType::String, move |row| {
                    Ok(match (l.eval(row)?, r.eval(row)?) {
                        (Value::String(a), Value::String(b)) => Value::String(format!("{a}{b}").into()),
                        _ => Value::Null,
                    })
                }))
            }
            BinaryOp::Eq | BinaryOp::NotEq | BinaryOp::Lt | BinaryOp::LtEq | BinaryOp::Gt | BinaryOp::GtEq => {
                let comparable = l.ty == r.ty
                    || SqlType::widen_numeric(&l.ty, &r.ty).is_some()
                    || matches!(
                        (&l.ty, &r.ty),
                        (SqlType::Timestamp, SqlType::String) | (SqlType::String, SqlType::Timestamp)
                    );
                if !comparable {
                    return Err(TypeError(format!(
                        "cannot compare {left} ({}) with {right} ({}): {op} needs comparable types",
                        l.ty, r.ty
                    )));
                }
                let equality = matches!(op, BinaryOp::Eq | BinaryOp::NotEq);
                if !equality && !l.ty.is_orderable() {
                    return Err(TypeError(format!("{op} cannot order values of type {}", l.ty)));
                }
                // ksqlDB compares a TIMESTAMP with a string literal by parsing the string.
                let (l, r) = match (&l.ty, &r.ty) {
                    (SqlType::Timestamp, SqlType::String) => (l, cast_to(r, SqlType::Timestamp)),
                    (SqlType::String, SqlType::Timestamp) => (cast_to(l, SqlType::Timestamp), r),
                    _ => (l, r),
                };
                Ok(Compiled::new(SqlType::Boolean, move |row| {
                    let (a, b) = (l.eval(row)?, r.eval(row)?);
                    if equality {
                        return Ok(match a.sql_eq(&b) {
                            Some(eq) => Value::Boolean(eq == (op == BinaryOp::Eq)),
                            None => Value::Null,
                        });
                    }
                    Ok(match a.compare(&b) {
                        None => Value::Null,
                        Some(o) => Value::Boolean(match op {
                            BinaryOp::Lt => o == Ordering::Less,
                            BinaryOp::LtEq => o != Ordering::Greater,
                            BinaryOp::Gt => o == Ordering::Greater,
                            _ => o != Ordering::Less,
                        }),
                    })
                }))
            }
            BinaryOp::Add | BinaryOp::Sub | BinaryOp::Mul | BinaryOp::Div | BinaryOp::Mod => {
                if op == BinaryOp::Add && l.ty == SqlType::String && r.ty == SqlType::String {
                    // ksqlDB accepts + for string concatenation.
                    return self.binary(BinaryOp::Concat, left, right);
                }
                let Some(ty) = SqlType::widen_numeric(&l.ty, &r.ty) else {
                    let bad = if l.ty.is_numeric() { (right, &r.ty) } else { (left, &l.ty) };
                    return Err(TypeError(format!("{op}: {} is {}, but must be a number", bad.0, bad.1)));
                };
                let ty = arithmetic_type(op, &l.ty, &r.ty, ty);
                let out = ty.clone();
                Ok(Compiled::new(ty, move |row| arithmetic(op, l.eval(row)?, r.eval(row)?, &out)))
            }
        }
    }

    fn function(&mut self, name: &str, args: &[Expr]) -> Result<Compiled, TypeError> {
        // TIMESTAMPADD(HOURS, 2, ts): the unit is a bare word, passed on as a string.
        if matches!(name, "TIMESTAMPADD" | "TIMESTAMPSUB" | "DATEADD" | "DATESUB")
            && let Some(Expr::Column { source: None, name: unit }) = args.first()
        {
            let mut rewritten = args.to_vec();
            rewritten[0] = Expr::Literal(Literal::String(unit.clone()));
            return self.function_call(name, &rewritten);
        }
        self.function_call(name, args)
    }

    fn function_call(&mut self, name: &str, args: &[Expr]) -> Result<Compiled, TypeError> {
        match name {
            "TRANSFORM" | "FILTER" | "REDUCE" => return self.higher_order(name, args),
            _ => {}
        }
        if functions::is_aggregate(name) {
            return Err(TypeError(format!(
                "{name} is an aggregate function: it needs GROUP BY (aggregations come with CREATE TABLE AS SELECT)"
            )));
        }
        let compiled = args.iter().map(|a| self.compile(a)).collect::<Result<Vec<_>, _>>()?;
        let types: Vec<SqlType> = args
            .iter()
            .zip(&compiled)
            .map(|(a, c)| if is_null_literal(a) { None } else { Some(c.ty.clone()) })
            .map(|t| t.unwrap_or(SqlType::String))
            .collect();
        let nulls: Vec<bool> = args.iter().map(is_null_literal).collect();
        let (ty, imp) = functions::resolve(name, &types, &nulls).map_err(TypeError)?;
        Ok(match imp {
            FunctionImpl::Strict(f) => Compiled::new(ty, move |row| {
                let values = compiled.iter().map(|c| c.eval(row)).collect::<Result<Vec<_>, _>>()?;
                if values.iter().any(Value::is_null) {
                    return Ok(Value::Null);
                }
                f(&values)
            }),
            FunctionImpl::Lenient(f) => Compiled::new(ty, move |row| {
                let values = compiled.iter().map(|c| c.eval(row)).collect::<Result<Vec<_>, _>>()?;
                f(&values)
            }),
            FunctionImpl::Lazy(f) => Compiled::new(ty, move |row| f(&compiled, row)),
        })
    }

    /// TRANSFORM(array, x => ...), TRANSFORM(map, (k, v) => k', (k, v) => v'), FILTER(array,
    /// x => bool), FILTER(map, (k, v) => bool), REDUCE(array, start, (s, x) => ...).
    fn higher_order(&mut self, name: &str, args: &[Expr]) -> Result<Compiled, TypeError> {
        let collection = args.first().ok_or_else(|| TypeError(format!("{name} needs a collection and a lambda")))?;
        let coll = self.compile(collection)?;
        let lambda = |e: &Expr, arity: usize| -> Result<(Vec<String>, Expr), TypeError> {
            match e {
                Expr::Lambda { params, body } if params.len() == arity => Ok((params.clone(), (**body).clone())),
                _ => Err(TypeError(format!("{name}: expected a lambda with {arity} parameter(s), found {e}"))),
            }
        };
        let base = self.scope.columns.len();
        let body = |this: &mut Compiler, params: &[String], types: &[SqlType], body: &Expr| {
            let mut inner = Compiler { scope: this.scope.clone() };
            for (p, t) in params.iter().zip(types) {
                inner.scope.push(None, p, t.clone());
            }
            inner.compile(body)
        };
        let eval_with = move |c: &Compiled, row: &[Value], extra: &[Value]| -> Result<Value, EvalError> {
            let mut r = Vec::with_capacity(base + extra.len());
            r.extend_from_slice(&row[..base.min(row.len())]);
            r.resize(base, Value::Null);
            r.extend_from_slice(extra);
            c.eval(&r)
        };
        match (name, coll.ty.clone(), args.len()) {
            ("TRANSFORM", SqlType::Array(item), 2) => {
                let (params, b) = lambda(&args[1], 1)?;
                let f = body(self, &params, &[(*item).clone()], &b)?;
                Ok(Compiled::new(SqlType::Array(Arc::new(f.ty.clone())), move |row| {
                    let Value::Array(items) = coll.eval(row)? else { return Ok(Value::Null) };
                    let out = items
                        .iter()
                        .map(|x| eval_with(&f, row, std::slice::from_ref(x)))
                        .collect::<Result<Vec<_>, _>>()?;
                    Ok(Value::Array(out.into()))
                }))
            }
            ("TRANSFORM", SqlType::Map(k, v), 3) => {
                let (pk, bk) = lambda(&args[1], 2)?;
                let (pv, bv) = lambda(&args[2], 2)?;
                let types = [(*k).clone(), (*v).clone()];
                let fk = body(self, &pk, &types, &bk)?;
                let fv = body(self, &pv, &types, &bv)?;
                Ok(Compiled::new(SqlType::Map(Arc::new(fk.ty.clone()), Arc::new(fv.ty.clone())), move |row| {
                    let Value::Map(entries) = coll.eval(row)? else { return Ok(Value::Null) };
                    let mut out = Vec::with_capacity(entries.len());
                    for (k, v) in entries.iter() {
                        let pair = [k.clone(), v.clone()];
                        out.push((eval_with(&fk, row, &pair)?, eval_with(&fv, row, &pair)?));
                    }
                    Ok(Value::Map(out.into()))
                }))
            }
            ("FILTER", SqlType::Array(item), 2) => {
                let (params, b) = lambda(&args[1], 1)?;
                let f = body(self, &params, &[(*item).clone()], &b)?;
                if f.ty != SqlType::Boolean {
                    return Err(TypeError(format!("FILTER: the lambda must return BOOLEAN, not {}", f.ty)));
                }
                Ok(Compiled::new(coll.ty.clone(), move |row| {
                    let Value::Array(items) = coll.eval(row)? else { return Ok(Value::Null) };
                    let mut out = Vec::new();
                    for x in items.iter() {
                        if eval_with(&f, row, std::slice::from_ref(x))? == Value::Boolean(true) {
                            out.push(x.clone());
                        }
                    }
                    Ok(Value::Array(out.into()))
                }))
            }
            ("FILTER", SqlType::Map(k, v), 2) => {
                let (params, b) = lambda(&args[1], 2)?;
                let f = body(self, &params, &[(*k).clone(), (*v).clone()], &b)?;
                if f.ty != SqlType::Boolean {
                    return Err(TypeError(format!("FILTER: the lambda must return BOOLEAN, not {}", f.ty)));
                }
                Ok(Compiled::new(coll.ty.clone(), move |row| {
                    let Value::Map(entries) = coll.eval(row)? else { return Ok(Value::Null) };
                    let mut out = Vec::new();
                    for (k, v) in entries.iter() {
                        if eval_with(&f, row, &[k.clone(), v.clone()])? == Value::Boolean(true) {
                            out.push((k.clone(), v.clone()));
                        }
                    }
                    Ok(Value::Map(out.into()))
                }))
            }
            ("REDUCE", SqlType::Array(item), 3) => {
                let start = self.compile(&args[1])?;
                let (params, b) = lambda(&args[2], 2)?;
                let f = body(self, &params, &[start.ty.clone(), (*item).clone()], &b)?;
                let ty = start.ty.clone();
                let f = if f.ty == ty {
                    f
                } else if SqlType::widen_numeric(&f.ty, &ty).as_ref() == Some(&ty) {
                    cast_to(f, ty.clone())
                } else {
                    return Err(TypeError(format!("REDUCE: the lambda returns {}, but the start value is {ty}", f.ty)));
                };
                Ok(Compiled::new(ty, move |row| {
                    let Value::Array(items) = coll.eval(row)? else { return Ok(Value::Null) };
                    let mut acc = start.eval(row)?;
                    for x in items.iter() {
                        acc = eval_with(&f, row, &[acc, x.clone()])?;
                    }
                    Ok(acc)
                }))
            }
            _ => Err(TypeError(format!(
                "{name} does not accept ({}): see DESCRIBE FUNCTION {name}",
                std::iter::once(coll.ty.to_string())
                    .chain(args[1..].iter().map(|a| a.to_string()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }
}

fn cast_to(c: Compiled, to: SqlType) -> Compiled {
    let from = c.ty.clone();
    let target = to.clone();
    Compiled::new(to, move |row| cast(c.eval(row)?, &from, &target))
}

fn not(v: Value) -> Value {
    match v {
        Value::Boolean(b) => Value::Boolean(!b),
        _ => Value::Null,
    }
}

fn and(a: Value, b: Value) -> Value {
    match (a, b) {
        (Value::Boolean(false), _) | (_, Value::Boolean(false)) => Value::Boolean(false),
        (Value::Boolean(true), Value::Boolean(true)) => Value::Boolean(true),
        _ => Value::Null,
    }
}

fn or(a: Value, b: Value) -> Value {
    match (a, b) {
        (Value::Boolean(true), _) | (_, Value::Boolean(true)) => Value::Boolean(true),
        (Value::Boolean(false), Value::Boolean(false)) => Value::Boolean(false),
        _ => Value::Null,
    }
}

fn negate(v: Value) -> Result<Value, EvalError> {
    Ok(match v {
        Value::Int(i) => Value::Int(i.checked_neg().ok_or_else(|| eval_err("integer overflow in negation"))?),
        Value::Bigint(i) => Value::Bigint(i.checked_neg().ok_or_else(|| eval_err("integer overflow in negation"))?),
        Value::Double(d) => Value::Double(-d),
        Value::Decimal(d) => Value::Decimal(Decimal { unscaled: -d.unscaled, scale: d.scale }),
        _ => Value::Null,
    })
}

/// ksqlDB's DECIMAL result types (as SQL Server's): add/sub keep the larger scale plus a carry
/// digit; mul adds precisions and scales; div keeps at least 6 digits of scale.
fn arithmetic_type(op: BinaryOp, l: &SqlType, r: &SqlType, widened: SqlType) -> SqlType {
    let SqlType::Decimal { .. } = widened else { return widened };
    let ((p1, s1), (p2, s2)) = (l.as_decimal().unwrap_or((19, 0)), r.as_decimal().unwrap_or((19, 0)));
    let (precision, scale) = match op {
        BinaryOp::Add | BinaryOp::Sub => {
            let scale = s1.max(s2);
            ((p1 - s1).max(p2 - s2) + scale + 1, scale)
        }
        BinaryOp::Mul => (p1 + p2 + 1, s1 + s2),
        BinaryOp::Div => {
            let scale = 6.max(s1 + p2 + 1);
            (p1 - s1 + s2 + scale, scale)
        }
        _ => {
            let scale = s1.max(s2);
            ((p1 - s1).min(p2 - s2) + scale, scale)
        }
    };
    let precision = precision.min(DECIMAL_PRECISION_MAX);
    SqlType::Decimal { precision, scale: scale.min(precision) }
}

fn to_decimal(v: &Value) -> Option<Decimal> {
    match v {
        Value::Decimal(d) => Some(*d),
        Value::Int(_) | Value::Bigint(_) => Some(Decimal::from_i64(v.as_i64()?)),
        _ => None,
    }
}

fn arithmetic(op: BinaryOp, a: Value, b: Value, ty: &SqlType) -> Result<Value, EvalError> {
    if a.is_null() || b.is_null() {
        return Ok(Value::Null);
    }
    let overflow = || eval_err(format!("numeric overflow in {a} {op} {b}"));
    Ok(match ty {
        SqlType::Int | SqlType::Bigint => {
            let (x, y) = (a.as_i64().ok_or_else(overflow)?, b.as_i64().ok_or_else(overflow)?);
            let r = match op {
                BinaryOp::Add => x.checked_add(y),
                BinaryOp::Sub => x.checked_sub(y),
                BinaryOp::Mul => x.checked_mul(y),
                BinaryOp::Div if y == 0 => return Err(eval_err(format!("division by zero: {a} / {b}"))),
                BinaryOp::Mod if y == 0 => return Err(eval_err(format!("division by zero: {a} % {b}"))),
                BinaryOp::Div => x.checked_div(y),
                _ => x.checked_rem(y),
            }
            .ok_or_else(overflow)?;
            if *ty == SqlType::Int { Value::Int(i32::try_from(r).map_err(|_| overflow())?) } else { Value::Bigint(r) }
        }
        SqlType::Double => {
            let (x, y) = (a.as_f64().ok_or_else(overflow)?, b.as_f64().ok_or_else(overflow)?);
            Value::Double(match op {
                BinaryOp::Add => x + y,
                BinaryOp::Sub => x - y,
                BinaryOp::Mul => x * y,
                BinaryOp::Div => x / y,
                _ => x % y,
            })
        }
        SqlType::Decimal { precision, scale } => {
            let (x, y) = (to_decimal(&a).ok_or_else(overflow)?, to_decimal(&b).ok_or_else(overflow)?);
            let r = match op {
                BinaryOp::Add => x.checked_add(y),
                BinaryOp::Sub => x.checked_sub(y),
                BinaryOp::Mul => x.checked_mul(y),
                BinaryOp::Div if y.unscaled == 0 => return Err(eval_err(format!("division by zero: {a} / {b}"))),
                BinaryOp::Div => x.checked_div(y, *scale),
                _ if y.unscaled == 0 => return Err(eval_err(format!("division by zero: {a} % {b}"))),
                _ => x.checked_rem(y),
            };
            Value::Decimal(r.and_then(|d| d.fit(*precision, *scale)).ok_or_else(overflow)?)
        }
        _ => Value::Null,
    })
}

/// An ARRAY element by ksqlDB's 1-based index (negative counts from the end); NULL when out of range.
pub(crate) fn array_item(items: &[Value], index: i64) -> Value {
    let len = items.len() as i64;
    let i = if index > 0 {
        index - 1
    } else if index < 0 {
        len + index
    } else {
        -1
    };
    if (0..len).contains(&i) { items[i as usize].clone() } else { Value::Null }
}

/// Whether CAST from `from` to `to` is allowed.
pub fn castable(from: &SqlType, to: &SqlType) -> bool {
    use SqlType::*;
    if from == to || *to == String {
        return true;
    }
    match (from, to) {
        (a, b) if a.is_numeric() && b.is_numeric() => true,
        (String, Boolean | Int | Bigint | Double | Decimal { .. } | Timestamp | Date | Time | Bytes) => true,
        (Boolean, Int | Bigint) | (Timestamp, Date | Time) | (Date, Timestamp) | (Bigint, Timestamp) => true,
        (Array(a), Array(b)) => castable(a, b),
        (Map(k1, v1), Map(k2, v2)) => castable(k1, k2) && castable(v1, v2),
        (Struct(a), Struct(b)) => {
            a.len() == b.len() && a.iter().zip(b.iter()).all(|(x, y)| x.name == y.name && castable(&x.ty, &y.ty))
        }
        _ => false,
    }
}

/// Converts a value between types (CAST); failures are evaluation errors.
pub fn cast(v: Value, from: &SqlType, to: &SqlType) -> Result<Value, EvalError> {
    use SqlType as T;
    if v.is_null() || from == to {
        return Ok(v);
    }
    let fail = |v: &Value| eval_err(format!("cannot cast {v} to {to}"));
    Ok(match to {
        T::String => match &v {
            Value::Bytes(b) => Value::String(base64(b).into()),
            Value::Double(d) => Value::String(format_double(*d).into()),
            _ => Value::String(v.to_string().into()),
        },
        T::Boolean => match &v {
            Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
                "true" | "t" | "yes" | "y" => Value::Boolean(true),
                "false" | "f" | "no" | "n" => Value::Boolean(false),
                _ => return Err(fail(&v)),
            },
            _ => return Err(fail(&v)),
        },
        T::Int | T::Bigint => {
            let i: i64 = match &v {
                Value::Int(_) | Value::Bigint(_) => v.as_i64().ok_or_else(|| fail(&v))?,
                Value::Boolean(b) => i64::from(*b),
                Value::Double(d) if d.is_finite() && d.trunc() >= i64::MIN as f64 && d.trunc() <= i64::MAX as f64 => {
                    d.trunc() as i64
                }
                Value::Decimal(d) => {
                    let t =
                        d.rescale(0).map(|_| d.unscaled / 10i128.pow(u32::from(d.scale))).ok_or_else(|| fail(&v))?;
                    i64::try_from(t).map_err(|_| fail(&v))?
                }
                Value::String(s) => s.trim().parse().map_err(|_| fail(&v))?,
                _ => return Err(fail(&v)),
            };
            if *to == T::Int { Value::Int(i32::try_from(i).map_err(|_| fail(&v))?) } else { Value::Bigint(i) }
        }
        T::Double => Value::Double(match &v {
            Value::String(s) => s.trim().parse().map_err(|_| fail(&v))?,
            other => other.as_f64().ok_or_else(|| fail(&v))?,
        }),
        T::Decimal { precision, scale } => {
            let d = match &v {
                Value::String(s) => Decimal::parse(s).ok_or_else(|| fail(&v))?,
                Value::Double(d) => Decimal::parse(&format!("{d:.*}", usize::from(*scale))).ok_or_else(|| fail(&v))?,
                other => to_decimal(other).ok_or_else(|| fail(&v))?,
            };
            Value::Decimal(d.fit(*precision, *scale).ok_or_else(|| fail(&v))?)
        }
        T::Timestamp => match &v {
            Value::String(s) => Value::Timestamp(functions::parse_iso_timestamp(s).ok_or_else(|| fail(&v))?),
            Value::Date(d) => Value::Timestamp(i64::from(*d) * 86_400_000),
            Value::Bigint(i) => Value::Timestamp(*i),
            _ => return Err(fail(&v)),
        },
        T::Date => match &v {
            Value::String(s) => Value::Date(functions::parse_iso_date(s).ok_or_else(|| fail(&v))?),
            Value::Timestamp(t) => Value::Date(i32::try_from(t.div_euclid(86_400_000)).map_err(|_| fail(&v))?),
            _ => return Err(fail(&v)),
        },
        T::Time => match &v {
            Value::String(s) => Value::Time(functions::parse_iso_time(s).ok_or_else(|| fail(&v))?),
            Value::Timestamp(t) => Value::Time(t.rem_euclid(86_400_000) as i32),
            _ => return Err(fail(&v)),
        },
        T::Bytes => match &v {
            Value::String(s) => Value::Bytes(base64_decode(s).ok_or_else(|| fail(&v))?.into()),
            _ => return Err(fail(&v)),
        },
        T::Array(item) => {
            let (Value::Array(items), T::Array(from_item)) = (&v, from) else { return Err(fail(&v)) };
            Value::Array(items.iter().map(|x| cast(x.clone(), from_item, item)).collect::<Result<Vec<_>, _>>()?.into())
        }
        T::Map(k, val) => {
            let (Value::Map(entries), T::Map(fk, fv)) = (&v, from) else { return Err(fail(&v)) };
            Value::Map(
                entries
                    .iter()
                    .map(|(a, b)| Ok((cast(a.clone(), fk, k)?, cast(b.clone(), fv, val)?)))
                    .collect::<Result<Vec<_>, EvalError>>()?
                    .into(),
            )
        }
        T::Struct(fields) => {
            let (Value::Struct(values), T::Struct(from_fields)) = (&v, from) else { return Err(fail(&v)) };
            Value::Struct(
                values
                    .iter()
                    .zip(from_fields.iter().zip(fields.iter()))
                    .map(|(x, (f1, f2))| cast(x.clone(), &f1.ty, &f2.ty))
                    .collect::<Result<Vec<_>, _>>()?
                    .into(),
            )
        }
    })
}

/// A LIKE pattern: `%` any run, `_` one character, `escape` making the next one literal.
struct LikePattern {
    parts: Vec<LikePart>,
}

#[derive(Debug, PartialEq)]
enum LikePart {
    Char(char),
    One,
    Any,
}

impl LikePattern {
    fn new(pattern: &str, escape: Option<char>) -> LikePattern {
        let mut parts = Vec::new();
        let mut chars = pattern.chars();
        while let Some(c) = chars.next() {
            parts.push(match c {
                c if Some(c) == escape => LikePart::Char(chars.next().unwrap_or(c)),
                '%' => {
                    if parts.last() == Some(&LikePart::Any) {
                        continue;
                    }
                    LikePart::Any
                }
                '_' => LikePart::One,
                c => LikePart::Char(c),
            });
        }
        LikePattern { parts }
    }

    /// Iterative matching with backtracking to the last `%` (linear in practice, never
    /// exponential).
    fn matches(&self, text: &str) -> bool {
        let text: Vec<char> = text.chars().collect();
        let (mut p, mut t) = (0, 0);
        let mut star: Option<(usize, usize)> = None;
        while t < text.len() {
            match self.parts.get(p) {
                Some(LikePart::Char(c)) if *c == text[t] => {
                    p += 1;
                    t += 1;
                }
                Some(LikePart::One) => {
                    p += 1;
                    t += 1;
                }
                Some(LikePart::Any) => {
                    star = Some((p, t));
                    p += 1;
                }
                _ => match star {
                    Some((sp, st)) => {
                        p = sp + 1;
                        t = st + 1;
                        star = Some((sp, st + 1));
                    }
                    None => return false,
                },
            }
        }
        self.parts[p..].iter().all(|x| *x == LikePart::Any)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parser::parse_expression;

    fn scope() -> Scope {
        let mut s = Scope::default();
        s.push(Some("O"), "ID", SqlType::Bigint);
        s.push(Some("O"), "AMOUNT", SqlType::Decimal { precision: 10, scale: 2 });
        s.push(Some("O"), "REGION", SqlType::String);
        s.push(Some("O"), "ITEMS", SqlType::Array(Arc::new(SqlType::Int)));
        s.push(Some("O"), "ADDR", SqlType::Struct(vec![Field { name: "CITY".into(), ty: SqlType::String }].into()));
        s.push(Some("C"), "ID", SqlType::Bigint);
        s
    }

    fn row() -> Vec<Value> {
        vec![
            Value::Bigint(7),
            Value::Decimal(Decimal::parse("12.50").unwrap()),
            Value::string("EU"),
            Value::Array(vec![Value::Int(1), Value::Int(2), Value::Int(3)].into()),
            Value::Struct(vec![Value::string("Paris")].into()),
            Value::Bigint(7),
        ]
    }

    fn eval(sql: &str) -> Value {
        let e = parse_expression(sql).unwrap();
        compile(&e, &scope()).unwrap_or_else(|err| panic!("{sql}: {err}")).eval(&row()).unwrap()
    }

    fn type_error(sql: &str) -> String {
        compile(&parse_expression(sql).unwrap(), &scope()).unwrap_err().0
    }

    #[test]
    fn arithmetic_widens_and_keeps_decimals_exact() {
        assert_eq!(eval("1 + 2"), Value::Int(3));
        assert_eq!(eval("o.id * 2"), Value::Bigint(14));
        assert_eq!(eval("amount + 1"), Value::Decimal(Decimal::parse("13.50").unwrap()));
        assert_eq!(eval("amount * 2.5"), Value::Decimal(Decimal::parse("31.250").unwrap()));
        assert_eq!(eval("7 / 2"), Value::Int(3));
        // DECIMAL(2,1) / INT (DECIMAL(10,0)): scale max(6, 1 + 10 + 1) = 12, as ksqlDB.
        assert_eq!(eval("7.0 / 2"), Value::Decimal(Decimal::parse("3.500000000000").unwrap()));
        assert_eq!(eval("1e0 / 4"), Value::Double(0.25));
        assert_eq!(eval("'a' + 'b'"), Value::string("ab"));
        let e = compile(&parse_expression("1 / 0").unwrap(), &scope()).unwrap();
        assert!(e.eval(&row()).unwrap_err().0.contains("division by zero"));
        let e = compile(&parse_expression("2147483647 + 1").unwrap(), &scope()).unwrap();
        assert!(e.eval(&row()).unwrap_err().0.contains("overflow"));
    }

    #[test]
    fn logic_is_three_valued() {
        assert_eq!(eval("NULL AND FALSE"), Value::Boolean(false));
        assert_eq!(eval("NULL OR TRUE"), Value::Boolean(true));
        assert_eq!(eval("NULL AND TRUE"), Value::Null);
        assert_eq!(eval("NOT (1 = NULL)"), Value::Null);
        assert_eq!(eval("1 IN (2, NULL)"), Value::Null);
        assert_eq!(eval("1 IN (2, NULL, 1)"), Value::Boolean(true));
        assert_eq!(eval("o.id BETWEEN 1 AND 10"), Value::Boolean(true));
        assert_eq!(eval("region IS NOT NULL"), Value::Boolean(true));
    }

    #[test]
    fn structure_access_case_cast_like() {
        assert_eq!(eval("items[1]"), Value::Int(1));
        assert_eq!(eval("items[-1]"), Value::Int(3));
        assert_eq!(eval("items[9]"), Value::Null);
        assert_eq!(eval("addr->city"), Value::string("Paris"));
        assert_eq!(eval("CASE WHEN region = 'EU' THEN 'europe' ELSE 'other' END"), Value::string("europe"));
        assert_eq!(eval("CASE region WHEN 'US' THEN 1 WHEN 'EU' THEN 2 END"), Value::Int(2));
        assert_eq!(eval("CAST(amount AS STRING)"), Value::string("12.50"));
        assert_eq!(eval("CAST('42' AS INT) + 1"), Value::Int(43));
        assert_eq!(eval("CAST(amount AS DECIMAL(4, 1))"), Value::Decimal(Decimal::parse("12.5").unwrap()));
        assert_eq!(eval("region LIKE 'E%'"), Value::Boolean(true));
        assert_eq!(eval("'a_c%' LIKE 'a!_c!%' ESCAPE '!'"), Value::Boolean(true));
        assert_eq!(eval("'abc' LIKE '%b%c'"), Value::Boolean(true));
        assert_eq!(eval("'abc' LIKE 'a%d'"), Value::Boolean(false));
        assert_eq!(eval("ARRAY[1, 2.5][2]"), Value::Decimal(Decimal::parse("2.5").unwrap()));
        assert_eq!(eval("MAP('a' := 1, 'b' := 2)['b']"), Value::Int(2));
        assert_eq!(eval("STRUCT(x := 1, y := 'z')->y"), Value::string("z"));
        assert_eq!(eval("TRANSFORM(items, x => x * 10)[3]"), Value::Int(30));
        assert_eq!(eval("FILTER(items, x => x > 1)[1]"), Value::Int(2));
        assert_eq!(eval("REDUCE(items, 0, (s, x) => s + x)"), Value::Int(6));
    }

    #[test]
    fn type_errors_name_the_expression_and_the_expected_type() {
        assert_eq!(type_error("region + 1"), "+: REGION is STRING, but must be a number");
        assert!(type_error("nope").contains("column NOPE cannot be resolved"));
        assert!(type_error("id").contains("ambiguous"));
        assert!(type_error("region = 1").contains("cannot compare REGION (STRING) with 1 (INTEGER)"));
        assert!(type_error("addr->zip").contains("no field ZIP"));
        assert!(type_error("NOT region").contains("must be BOOLEAN"));
        assert!(type_error("CAST(items AS INT)").contains("cannot CAST"));
        let e = compile_predicate(&parse_expression("region").unwrap(), &scope(), "WHERE").unwrap_err();
        assert_eq!(e.0, "WHERE expression REGION is STRING, but must be BOOLEAN");
    }
}
