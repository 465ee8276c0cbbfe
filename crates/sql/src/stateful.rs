//! Planning the stateful queries: aggregations (GROUP BY, windows, HAVING) and joins (stream-
//! stream, stream-table, table-table on the primary key or a foreign key, n-way).
//!
//! A stateful query reads one or more sources. Their rows are concatenated left to right (each
//! source's system, key, value and header columns, as [`SourceDesc::scope`] lays them out), so
//! WHERE and the projection are compiled once over the combined row. The join tree is
//! left-deep, as the grammar builds it: every right side is a single source. Aggregations are
//! planned by rewriting the projection and HAVING: each GROUP BY expression becomes a column
//! `__K<i>` and each aggregate call a column `__A<j>` of the aggregate row, with WINDOWSTART
//! and WINDOWEND after them.
//!
//! All partitions of a query's sources are processed by one task, in timestamp order, so the
//! sources of a join need not be co-partitioned: runnel re-partitions by reading everything.

use std::sync::Arc;

use crate::aggregate::{self, AggregateCall};
use crate::ast::{BinaryOp, Expr, JoinKind, Query, Relation, SelectItem, SourceKind, WindowSpec};
use crate::catalog::{ROWOFFSET, ROWPARTITION, ROWTIME, SourceDesc, SqlError, sql_err};
use crate::expr::{Compiled, Scope, compile, compile_predicate};
use crate::plan::Purpose;
use crate::types::{Field, SqlType, quote_ident};
use crate::value::Value;

/// ksqlDB's default grace period of a window when none is given: 24 hours.
pub const DEFAULT_GRACE_MS: u64 = 24 * 3_600_000;
/// Most sources one query may join.
pub const JOIN_SOURCES_MAX: usize = 16;
/// Most windows one record may fall into (SIZE / ADVANCE BY of a hopping window).
pub const HOPPING_WINDOWS_MAX: u64 = 1_000;
pub const WINDOWSTART: &str = "WINDOWSTART";
pub const WINDOWEND: &str = "WINDOWEND";

/// One source a query reads.
#[derive(Debug, Clone)]
pub struct Input {
    pub source: Arc<SourceDesc>,
    pub alias: String,
    /// Where its columns start in the combined row.
    pub offset: usize,
    pub width: usize,
}

/// How the two sides of a join are matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinMode {
    /// Both streams: records within a time window of each other.
    StreamStream { before_ms: i64, after_ms: i64, grace_ms: Option<i64> },
    /// Each stream record looks up the table's current row.
    StreamTable,
    /// Both tables, on the right table's primary key equal to the left's primary key.
    TablePrimaryKey,
    /// Both tables, on the right table's primary key equal to an expression of the left row.
    TableForeignKey,
}

/// A join of the rows to the left (one source or an earlier join) with one source.
#[derive(Debug, Clone)]
pub struct JoinPlan {
    pub kind: JoinKind,
    pub mode: JoinMode,
    pub left: Box<Node>,
    /// The input index of the right source.
    pub right: usize,
    /// Width of the left rows and of the right rows.
    pub left_width: usize,
    pub right_width: usize,
    /// Join key expressions: over the left rows, and over the right source's rows.
    pub left_keys: Vec<Compiled>,
    pub right_keys: Vec<Compiled>,
    /// Conditions of ON beyond the equalities, over the joined row.
    pub residual: Option<Compiled>,
    /// Positions of the primary key columns in the left rows (tables).
    pub left_table_key: Vec<usize>,
}

#[derive(Debug, Clone)]
pub enum Node {
    Source(usize),
    Join(JoinPlan),
}

impl Node {
    /// Whether the rows of this node form a table (changes with old and new rows) or a stream.
    pub fn kind(&self, inputs: &[Input]) -> SourceKind {
        match self {
            Node::Source(i) => inputs[*i].source.kind,
            Node::Join(j) => match j.mode {
                JoinMode::TablePrimaryKey | JoinMode::TableForeignKey => SourceKind::Table,
                _ => SourceKind::Stream,
            },
        }
    }

    /// Every input index under this node.
    pub fn inputs(&self) -> Vec<usize> {
        match self {
            Node::Source(i) => vec![*i],
            Node::Join(j) => {
                let mut v = j.left.inputs();
                v.push(j.right);
                v
            }
        }
    }
}

/// The window of an aggregation, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    Tumbling { size: i64 },
    Hopping { size: i64, advance: i64 },
    Session { gap: i64 },
}

#[derive(Debug, Clone)]
pub struct WindowPlan {
    pub window: Window,
    pub grace: i64,
    pub retention: i64,
}

/// GROUP BY with aggregate calls.
#[derive(Debug, Clone)]
pub struct AggregatePlan {
    /// GROUP BY expressions over the combined row.
    pub group_by: Vec<Compiled>,
    /// Each aggregate call and its value arguments over the combined row.
    pub calls: Vec<(AggregateCall, Vec<Compiled>)>,
    pub window: Option<WindowPlan>,
    /// HAVING over the aggregate row.
    pub having: Option<Compiled>,
    /// Only closed windows are emitted (EMIT FINAL).
    pub emit_final: bool,
    /// For each output key column: which GROUP BY expression it is.
    pub key_groups: Vec<usize>,
    /// Groups not updated for this long (stream time) are removed: a deletion is emitted.
    pub row_ttl_ms: Option<i64>,
}

/// A planned stateful query.
#[derive(Debug, Clone)]
pub struct StatefulPlan {
    pub inputs: Vec<Input>,
    pub root: Node,
    /// WHERE over the combined row.
    pub filter: Option<Compiled>,
    pub aggregate: Option<AggregatePlan>,
    /// Output columns in projection order: over the aggregate row with an aggregation, else
    /// over the combined row.
    pub columns: Vec<(Field, Compiled)>,
    /// Positions in `columns` of the output key columns.
    pub key: Vec<usize>,
    /// STREAM or TABLE.
    pub output: SourceKind,
    pub limit: Option<u64>,
    /// Which columns of the combined row the query reads (the others are not decoded).
    pub used: Vec<bool>,
}

impl StatefulPlan {
    pub fn key_fields(&self) -> Vec<Field> {
        self.key.iter().map(|&i| self.columns[i].0.clone()).collect()
    }

    pub fn value_fields(&self) -> Vec<Field> {
        (0..self.columns.len()).filter(|i| !self.key.contains(i)).map(|i| self.columns[i].0.clone()).collect()
    }

    pub fn fields(&self) -> Vec<Field> {
        self.columns.iter().map(|(f, _)| f.clone()).collect()
    }

    pub fn window(&self) -> Option<&WindowPlan> {
        self.aggregate.as_ref().and_then(|a| a.window.as_ref())
    }

    pub fn source_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.inputs.iter().map(|i| i.source.name.clone()).collect();
        names.dedup();
        names
    }
}

/// Whether a query needs state: a join, GROUP BY, a window or an aggregate call.
pub fn is_stateful(q: &Query) -> bool {
    matches!(q.from, Relation::Join(_))
        || !q.group_by.is_empty()
        || q.window.is_some()
        || q.having.is_some()
        || q.projection.iter().any(|item| match item {
            SelectItem::Expr { expr, .. } => contains_aggregate(expr),
            _ => false,
        })
}

fn contains_aggregate(e: &Expr) -> bool {
    let mut found = false;
    visit(e, &mut |x| {
        if let Expr::Function { name, .. } = x
            && aggregate::is_aggregate(name)
        {
            found = true;
        }
    });
    found
}

/// Calls `f` on every node of the expression, top-down.
pub(crate) fn visit(e: &Expr, f: &mut dyn FnMut(&Expr)) {
    f(e);
    let children: Vec<&Expr> = match e {
        Expr::Column { .. } | Expr::Literal(_) | Expr::Star => vec![],
        Expr::Unary { expr, .. } | Expr::IsNull { expr, .. } | Expr::Cast { expr, .. } | Expr::Deref { expr, .. } => {
            vec![expr]
        }
        Expr::Binary { left, right, .. } => vec![left, right],
        Expr::Like { expr, pattern, .. } => vec![expr, pattern],
        Expr::Between { expr, low, high, .. } => vec![expr, low, high],
        Expr::InList { expr, list, .. } => std::iter::once(expr.as_ref()).chain(list).collect(),
        Expr::Case { operand, whens, otherwise } => operand
            .iter()
            .map(|b| b.as_ref())
            .chain(whens.iter().flat_map(|(a, b)| [a, b]))
            .chain(otherwise.iter().map(|b| b.as_ref()))
            .collect(),
        Expr::Function { args, .. } | Expr::Array(args) => args.iter().collect(),
        Expr::Subscript { expr, index } => vec![expr, index],
        Expr::Map(entries) => entries.iter().flat_map(|(a, b)| [a, b]).collect(),
        Expr::Struct(fields) => fields.iter().map(|(_, e)| e).collect(),
        Expr::Lambda { body, .. } => vec![body],
    };
    for c in children {
        visit(c, f);
    }
}

/// Rewrites an expression top-down: where `f` gives a replacement it is used, else the
/// children are rewritten.
fn rewrite(e: &Expr, f: &mut dyn FnMut(&Expr) -> Result<Option<Expr>, SqlError>) -> Result<Expr, SqlError> {
    if let Some(r) = f(e)? {
        return Ok(r);
    }
    let mut go = |x: &Expr| rewrite(x, f);
    let b = |x: Expr| Box::new(x);
    Ok(match e {
        Expr::Column { .. } | Expr::Literal(_) | Expr::Star => e.clone(),
        Expr::Unary { op, expr } => Expr::Unary { op: *op, expr: b(go(expr)?) },
        Expr::Binary { op, left, right } => Expr::Binary { op: *op, left: b(go(left)?), right: b(go(right)?) },
        Expr::IsNull { expr, negated } => Expr::IsNull { expr: b(go(expr)?), negated: *negated },
        Expr::Like { expr, pattern, escape, negated } => {
            Expr::Like { expr: b(go(expr)?), pattern: b(go(pattern)?), escape: *escape, negated: *negated }
        }
        Expr::Between { expr, low, high, negated } => {
            Expr::Between { expr: b(go(expr)?), low: b(go(low)?), high: b(go(high)?), negated: *negated }
        }
        Expr::InList { expr, list, negated } => Expr::InList {
            expr: b(go(expr)?),
            list: list.iter().map(&mut go).collect::<Result<_, _>>()?,
            negated: *negated,
        },
        Expr::Case { operand, whens, otherwise } => Expr::Case {
            operand: operand.as_ref().map(|o| go(o).map(b)).transpose()?,
            whens: whens.iter().map(|(w, t)| Ok((go(w)?, go(t)?))).collect::<Result<_, SqlError>>()?,
            otherwise: otherwise.as_ref().map(|o| go(o).map(b)).transpose()?,
        },
        Expr::Cast { expr, ty } => Expr::Cast { expr: b(go(expr)?), ty: ty.clone() },
        Expr::Function { name, args } => {
            Expr::Function { name: name.clone(), args: args.iter().map(&mut go).collect::<Result<_, _>>()? }
        }
        Expr::Deref { expr, field } => Expr::Deref { expr: b(go(expr)?), field: field.clone() },
        Expr::Subscript { expr, index } => Expr::Subscript { expr: b(go(expr)?), index: b(go(index)?) },
        Expr::Array(items) => Expr::Array(items.iter().map(&mut go).collect::<Result<_, _>>()?),
        Expr::Map(entries) => {
            Expr::Map(entries.iter().map(|(k, v)| Ok((go(k)?, go(v)?))).collect::<Result<_, SqlError>>()?)
        }
        Expr::Struct(fields) => {
            Expr::Struct(fields.iter().map(|(n, v)| Ok((n.clone(), go(v)?))).collect::<Result<_, SqlError>>()?)
        }
        Expr::Lambda { params, body } => Expr::Lambda { params: params.clone(), body: b(go(body)?) },
    })
}

/// The expression with every column qualified by the source the scope resolves it to, so
/// that `region` and `o.region` compare equal.
fn canonical(e: &Expr, scope: &Scope) -> Expr {
    rewrite(e, &mut |x| {
        Ok(match x {
            Expr::Column { source, name } => scope
                .resolve(source.as_deref(), name)
                .ok()
                .map(|i| Expr::Column { source: scope.columns[i].source.clone(), name: name.clone() }),
            _ => None,
        })
    })
    .unwrap_or_else(|_| e.clone())
}

fn type_err(e: crate::expr::TypeError) -> SqlError {
    sql_err(e.0)
}

/// The sources of a relation, left to right.
fn flatten(r: &Relation, out: &mut Vec<(String, String)>) -> Result<(), SqlError> {
    match r {
        Relation::Source { name, alias } => {
            out.push((name.clone(), alias.clone().unwrap_or_else(|| name.clone())));
            Ok(())
        }
        Relation::Join(j) => {
            flatten(&j.left, out)?;
            if !matches!(j.right, Relation::Source { .. }) {
                return Err(sql_err("the right side of a JOIN must be a stream or table, not a nested join"));
            }
            flatten(&j.right, out)
        }
    }
}

fn scope_of(inputs: &[Input], which: &[usize]) -> Scope {
    let mut scope = Scope::default();
    for &i in which {
        scope.columns.extend(inputs[i].source.scope(&inputs[i].alias).columns);
    }
    scope
}

/// Splits ON into its conjuncts.
fn conjuncts(e: &Expr, out: &mut Vec<Expr>) {
    match e {
        Expr::Binary { op: BinaryOp::And, left, right } => {
            conjuncts(left, out);
            conjuncts(right, out);
        }
        other => out.push(other.clone()),
    }
}

/// Whether every column of `e` resolves in `scope` (and it has at least one column).
fn only_in(e: &Expr, scope: &Scope) -> bool {
    let mut any = false;
    let mut all = true;
    visit(e, &mut |x| {
        if let Expr::Column { source, name } = x {
            any = true;
            if scope.resolve(source.as_deref(), name).is_err() {
                all = false;
            }
        }
    });
    any && all
}

fn plan_join(
    r: &Relation,
    inputs: &[Input],
    next: &mut usize,
    equalities: &mut Vec<(Expr, Expr)>,
) -> Result<Node, SqlError> {
    match r {
        Relation::Source { .. } => {
            let i = *next;
            *next += 1;
            Ok(Node::Source(i))
        }
        Relation::Join(j) => {
            let left = plan_join(&j.left, inputs, next, equalities)?;
            let right = *next;
            *next += 1;
            let left_inputs = left.inputs();
            let left_scope = scope_of(inputs, &left_inputs);
            let right_scope = scope_of(inputs, &[right]);
            let mut both = left_inputs.clone();
            both.push(right);
            let joined_scope = scope_of(inputs, &both);
            let mut parts = Vec::new();
            conjuncts(&j.on, &mut parts);
            let (mut left_keys, mut right_keys, mut left_exprs, mut residual) = (vec![], vec![], vec![], vec![]);
            for part in parts {
                if let Expr::Binary { op: BinaryOp::Eq, left: a, right: b } = &part {
                    // Unqualified names must not be ambiguous across the joined sources.
                    compile(&part, &joined_scope).map_err(type_err)?;
                    let sides = if only_in(a, &left_scope) && only_in(b, &right_scope) {
                        Some((a, b))
                    } else if only_in(b, &left_scope) && only_in(a, &right_scope) {
                        Some((b, a))
                    } else {
                        None
                    };
                    if let Some((l, rr)) = sides {
                        let lc = compile(l, &left_scope).map_err(type_err)?;
                        let rc = compile(rr, &right_scope).map_err(type_err)?;
                        if SqlType::widen_numeric(&lc.ty, &rc.ty).is_none() && lc.ty != rc.ty {
                            return Err(sql_err(format!(
                                "cannot join on {l} = {rr}: {} and {} are different types",
                                lc.ty, rc.ty
                            )));
                        }
                        left_keys.push(lc);
                        right_keys.push(rc);
                        left_exprs.push(canonical(l, &left_scope));
                        equalities.push((canonical(l, &joined_scope), canonical(rr, &joined_scope)));
                        continue;
                    }
                }
                residual.push(part);
            }
            if left_keys.is_empty() {
                return Err(sql_err(format!(
                    "the join condition {} must compare a column of the left side with a column of the right side with =",
                    j.on
                )));
            }
            let residual = residual
                .into_iter()
                .reduce(|a, b| Expr::Binary { op: BinaryOp::And, left: Box::new(a), right: Box::new(b) })
                .map(|e| compile_predicate(&e, &joined_scope, "ON").map_err(type_err))
                .transpose()?;
            let left_kind = left.kind(inputs);
            let right_source = &inputs[right].source;
            // The primary key columns of the left rows, when they form a table.
            let left_table_key: Vec<usize> = match &left {
                Node::Source(i) if left_kind == SourceKind::Table => {
                    (0..inputs[*i].source.key_columns.len()).map(|k| crate::catalog::SYSTEM_COLUMNS + k).collect()
                }
                Node::Join(lj) if left_kind == SourceKind::Table => lj.left_table_key.clone(),
                _ => Vec::new(),
            };
            let right_is_key = |right_scope: &Scope| {
                right_keys.len() == right_source.key_columns.len()
                    && j_exprs_are_key(&j.on, right_scope, &right_source.key_columns, inputs, right)
            };
            let mode = match (left_kind, right_source.kind) {
                (SourceKind::Stream, SourceKind::Stream) => {
                    let Some((before, after)) = j.within else {
                        return Err(sql_err(
                            "stream-stream joins need a WITHIN clause, e.g. JOIN b WITHIN 1 HOUR ON a.id = b.id",
                        ));
                    };
                    JoinMode::StreamStream {
                        before_ms: before as i64,
                        after_ms: after as i64,
                        grace_ms: j.grace_ms.map(|g| g as i64),
                    }
                }
                (SourceKind::Stream, SourceKind::Table) => {
                    if j.within.is_some() {
                        return Err(sql_err("WITHIN applies to stream-stream joins only"));
                    }
                    if !matches!(j.kind, JoinKind::Inner | JoinKind::Left) {
                        return Err(sql_err("stream-table joins are INNER or LEFT"));
                    }
                    if !right_is_key(&right_scope) {
                        return Err(sql_err(format!(
                            "a stream-table join must use the table's primary key: ON ... = {}",
                            right_source
                                .key_columns
                                .iter()
                                .map(|k| format!("{}.{}", inputs[right].alias, k.name))
                                .collect::<Vec<_>>()
                                .join(", ")
                        )));
                    }
                    JoinMode::StreamTable
                }
                (SourceKind::Table, SourceKind::Stream) => {
                    return Err(sql_err(
                        "a table cannot be joined with a stream on its right: put the stream first (stream-table join)",
                    ));
                }
                (SourceKind::Table, SourceKind::Table) => {
                    if j.within.is_some() {
                        return Err(sql_err("WITHIN applies to stream-stream joins only"));
                    }
                    if !right_is_key(&right_scope) {
                        return Err(sql_err(format!(
                            "a table-table join must use the right table's primary key: ON ... = {}",
                            right_source
                                .key_columns
                                .iter()
                                .map(|k| format!("{}.{}", inputs[right].alias, k.name))
                                .collect::<Vec<_>>()
                                .join(", ")
                        )));
                    }
                    let left_is_key = left_exprs.len() == left_table_key.len()
                        && left_exprs.iter().zip(&left_table_key).all(|(e, &pos)| {
                            matches!(e, Expr::Column { source, name }
                                if left_scope.columns[pos].name == *name && left_scope.columns[pos].source == *source)
                        });
                    if left_is_key {
                        JoinMode::TablePrimaryKey
                    } else {
                        if !matches!(j.kind, JoinKind::Inner | JoinKind::Left) {
                            return Err(sql_err("foreign-key table-table joins are INNER or LEFT"));
                        }
                        JoinMode::TableForeignKey
                    }
                }
            };
            Ok(Node::Join(JoinPlan {
                kind: j.kind,
                mode,
                left: Box::new(left),
                right,
                left_width: left_scope.columns.len(),
                right_width: right_scope.columns.len(),
                left_keys,
                right_keys,
                residual,
                left_table_key,
            }))
        }
    }
}

/// Whether the right-side expressions of the equalities in `on` are exactly the right source's
/// key columns, in key order.
fn j_exprs_are_key(on: &Expr, right_scope: &Scope, key: &[Field], inputs: &[Input], right: usize) -> bool {
    let mut parts = Vec::new();
    conjuncts(on, &mut parts);
    let mut right_exprs = Vec::new();
    for part in &parts {
        if let Expr::Binary { op: BinaryOp::Eq, left: a, right: b } = part {
            if only_in(b, right_scope) && !only_in(a, right_scope) {
                right_exprs.push(b.as_ref());
            } else if only_in(a, right_scope) && !only_in(b, right_scope) {
                right_exprs.push(a.as_ref());
            }
        }
    }
    let alias = &inputs[right].alias;
    right_exprs.len() == key.len()
        && right_exprs.iter().zip(key).all(|(e, k)| {
            matches!(e, Expr::Column { source, name } if *name == k.name && source.as_ref().is_none_or(|s| s == alias || *s == inputs[right].source.name))
        })
}

fn window_plan(spec: &WindowSpec) -> Result<WindowPlan, SqlError> {
    let i = |v: u64| i64::try_from(v).map_err(|_| sql_err("window duration out of range"));
    let (window, size, retention, grace) = match spec {
        WindowSpec::Tumbling { size_ms, retention_ms, grace_ms } => {
            (Window::Tumbling { size: i(*size_ms)? }, *size_ms, *retention_ms, *grace_ms)
        }
        WindowSpec::Hopping { size_ms, advance_ms, retention_ms, grace_ms } => {
            if *advance_ms == 0 || advance_ms > size_ms {
                return Err(sql_err("ADVANCE BY must be greater than zero and at most SIZE"));
            }
            if size_ms / advance_ms > HOPPING_WINDOWS_MAX {
                return Err(sql_err(format!(
                    "SIZE / ADVANCE BY gives more than {HOPPING_WINDOWS_MAX} windows per record"
                )));
            }
            (Window::Hopping { size: i(*size_ms)?, advance: i(*advance_ms)? }, *size_ms, *retention_ms, *grace_ms)
        }
        WindowSpec::Session { gap_ms, retention_ms, grace_ms } => {
            (Window::Session { gap: i(*gap_ms)? }, *gap_ms, *retention_ms, *grace_ms)
        }
    };
    if size == 0 {
        return Err(sql_err("window SIZE must be greater than zero"));
    }
    let grace = i(grace.unwrap_or(DEFAULT_GRACE_MS))?;
    let retention = match retention {
        Some(r) => {
            let r = i(r)?;
            if r < i(size)? + grace {
                return Err(sql_err(format!(
                    "RETENTION must be at least SIZE + GRACE PERIOD ({} ms)",
                    i(size)? + grace
                )));
            }
            r
        }
        None => i(size)?.saturating_add(grace),
    };
    Ok(WindowPlan { window, grace, retention })
}

/// Plans a stateful query. `lookup` finds sources by name.
pub fn plan_stateful(
    query: &Query,
    lookup: &dyn Fn(&str) -> Option<Arc<SourceDesc>>,
    purpose: Purpose,
) -> Result<StatefulPlan, SqlError> {
    let mut names = Vec::new();
    flatten(&query.from, &mut names)?;
    if names.len() > JOIN_SOURCES_MAX {
        return Err(sql_err(format!("at most {JOIN_SOURCES_MAX} sources in one query")));
    }
    let mut inputs = Vec::with_capacity(names.len());
    let mut offset = 0;
    for (name, alias) in &names {
        if inputs.iter().any(|i: &Input| &i.alias == alias) {
            return Err(sql_err(format!(
                "{} appears twice in FROM: give each an alias (FROM a x JOIN a y ...)",
                quote_ident(alias)
            )));
        }
        let source = lookup(name).ok_or_else(|| sql_err(format!("{} does not exist", quote_ident(name))))?;
        let width = source.scope(alias).columns.len();
        inputs.push(Input { source, alias: alias.clone(), offset, width });
        offset += width;
    }
    let mut equalities = Vec::new();
    let mut next = 0;
    let root = plan_join(&query.from, &inputs, &mut next, &mut equalities)?;
    let all: Vec<usize> = (0..inputs.len()).collect();
    let scope = scope_of(&inputs, &all);
    let joined = inputs.len() > 1;
    let filter =
        query.selection.as_ref().map(|w| compile_predicate(w, &scope, "WHERE").map_err(type_err)).transpose()?;

    // Expand the projection.
    let mut items: Vec<(Expr, Option<String>)> = Vec::new();
    let expand = |input: &Input, items: &mut Vec<(Expr, Option<String>)>| {
        for f in input.source.columns() {
            let name = if joined { Some(format!("{}_{}", input.alias, f.name)) } else { None };
            items.push((Expr::Column { source: Some(input.alias.clone()), name: f.name.clone() }, name));
        }
    };
    for item in &query.projection {
        match item {
            SelectItem::Wildcard => inputs.iter().for_each(|i| expand(i, &mut items)),
            SelectItem::QualifiedWildcard(q) => {
                let input = inputs
                    .iter()
                    .find(|i| &i.alias == q || &i.source.name == q)
                    .ok_or_else(|| sql_err(format!("{q}.* does not name a source of the query")))?;
                expand(input, &mut items);
            }
            SelectItem::Expr { expr, alias } => items.push((expr.clone(), alias.clone())),
        }
    }
    let output_name = |expr: &Expr, given: &Option<String>, generated: &mut usize| -> String {
        match (given, expr) {
            (Some(n), _) => n.clone(),
            (None, Expr::Column { name, .. }) => name.clone(),
            (None, Expr::Deref { field, .. }) => field.clone(),
            (None, _) => {
                let n = format!("KSQL_COL_{generated}");
                *generated += 1;
                n
            }
        }
    };

    let aggregating = !query.group_by.is_empty()
        || query.window.is_some()
        || items.iter().any(|(e, _)| contains_aggregate(e))
        || query.having.is_some();
    let mut columns: Vec<(Field, Compiled)> = Vec::new();
    let mut key = Vec::new();
    let mut generated = 0;
    let mut aggregate = None;
    let output;
    if aggregating {
        if query.group_by.is_empty() {
            return Err(sql_err(
                "aggregate functions need GROUP BY (ksqlDB has no global aggregation): e.g. GROUP BY region",
            ));
        }
        if !query.partition_by.is_empty() {
            return Err(sql_err("PARTITION BY cannot be combined with GROUP BY: the GROUP BY columns are the key"));
        }
        let group_canon: Vec<Expr> = query.group_by.iter().map(|g| canonical(g, &scope)).collect();
        let group_by: Vec<Compiled> =
            query.group_by.iter().map(|g| compile(g, &scope).map_err(type_err)).collect::<Result<_, _>>()?;
        let window = query.window.as_ref().map(window_plan).transpose()?;
        let retract = root.kind(&inputs) == SourceKind::Table;
        if retract && window.is_some() {
            return Err(sql_err("windowed aggregations read streams: a table has no event time to window by"));
        }
        // The aggregate row: group keys, aggregate results, WINDOWSTART, WINDOWEND.
        let mut calls: Vec<(AggregateCall, Vec<Compiled>, Expr)> = Vec::new();
        let mut agg_scope_tail: Vec<(String, SqlType)> = Vec::new();
        let mut replace = |e: &Expr, clause: &str| -> Result<Expr, SqlError> {
            rewrite(e, &mut |x| {
                let canon = canonical(x, &scope);
                if let Some(i) = group_canon.iter().position(|g| *g == canon) {
                    return Ok(Some(Expr::column(&format!("__K{i}"))));
                }
                match x {
                    Expr::Function { name, args } if aggregate::is_aggregate(name) => {
                        if let Some(j) = calls.iter().position(|(_, _, c)| *c == canon) {
                            return Ok(Some(Expr::column(&format!("__A{j}"))));
                        }
                        let star = matches!(args.as_slice(), [Expr::Star]);
                        let args: &[Expr] = if star { &[] } else { args };
                        let mut compiled = Vec::new();
                        let mut literals = Vec::new();
                        for a in args {
                            if contains_aggregate(a) {
                                return Err(sql_err(format!("aggregate calls cannot be nested: {x}")));
                            }
                            let c = compile(a, &scope).map_err(type_err)?;
                            let constant = compile(a, &Scope::default()).ok().and_then(|k| k.eval(&[]).ok());
                            literals.push(constant);
                            compiled.push(c);
                        }
                        let types: Vec<SqlType> = compiled.iter().map(|c| c.ty.clone()).collect();
                        let call = aggregate::resolve(name, star, &types, &literals).map_err(sql_err)?;
                        if retract && !call.supports_retract() {
                            return Err(sql_err(format!(
                                "{name} cannot aggregate a table (its rows change and are deleted); aggregate a stream instead"
                            )));
                        }
                        compiled.truncate(call.value_args());
                        let j = calls.len();
                        agg_scope_tail.push((format!("__A{j}"), call.return_type.clone()));
                        calls.push((call, compiled, canon));
                        Ok(Some(Expr::column(&format!("__A{j}"))))
                    }
                    Expr::Column { source, name } if name == WINDOWSTART || name == WINDOWEND => {
                        if window.is_none() {
                            return Err(sql_err(format!("{name} needs a WINDOW clause")));
                        }
                        let _ = source;
                        Ok(Some(Expr::column(name)))
                    }
                    Expr::Column { .. } => Err(sql_err(format!(
                        "non-aggregate {clause} expression {x} is not part of GROUP BY: add it to GROUP BY or use it inside an aggregate function"
                    ))),
                    _ => Ok(None),
                }
            })
        };
        let rewritten: Vec<(Expr, Expr, Option<String>)> = items
            .iter()
            .map(|(e, alias)| Ok((e.clone(), replace(e, "SELECT")?, alias.clone())))
            .collect::<Result<_, SqlError>>()?;
        let having = query.having.as_ref().map(|h| replace(h, "HAVING")).transpose()?;
        let mut agg_scope = Scope::default();
        for (i, g) in group_by.iter().enumerate() {
            agg_scope.push(None, &format!("__K{i}"), g.ty.clone());
        }
        for (name, ty) in &agg_scope_tail {
            agg_scope.push(None, name, ty.clone());
        }
        agg_scope.push(None, WINDOWSTART, SqlType::Bigint);
        agg_scope.push(None, WINDOWEND, SqlType::Bigint);
        let mut key_groups = Vec::new();
        for (original, e, given) in &rewritten {
            let compiled = compile(e, &agg_scope).map_err(type_err)?;
            let name = output_name(original, given, &mut generated);
            if let Expr::Column { name: k, .. } = e
                && let Some(g) = k.strip_prefix("__K").and_then(|n| n.parse::<usize>().ok())
                && !key_groups.contains(&g)
            {
                key.push(columns.len());
                key_groups.push(g);
            }
            columns.push((Field { name, ty: compiled.ty.clone() }, compiled));
        }
        if purpose == Purpose::Persistent && key_groups.len() < group_by.len() {
            let missing: Vec<String> = query
                .group_by
                .iter()
                .enumerate()
                .filter(|(i, _)| !key_groups.contains(i))
                .map(|(_, g)| g.to_string())
                .collect();
            return Err(sql_err(format!(
                "the projection must include every GROUP BY expression, as the key of the table; missing: {}",
                missing.join(", ")
            )));
        }
        let having = having.map(|h| compile_predicate(&h, &agg_scope, "HAVING").map_err(type_err)).transpose()?;
        let emit_final = query.emit == Some(crate::ast::Emit::Final);
        if emit_final && window.is_none() {
            return Err(sql_err("EMIT FINAL needs a windowed aggregation"));
        }
        aggregate = Some(AggregatePlan {
            group_by,
            calls: calls.into_iter().map(|(c, a, _)| (c, a)).collect(),
            window,
            having,
            emit_final,
            key_groups,
            row_ttl_ms: None,
        });
        output = SourceKind::Table;
    } else {
        if query.emit == Some(crate::ast::Emit::Final) {
            return Err(sql_err("EMIT FINAL needs a windowed aggregation"));
        }
        if !query.partition_by.is_empty() {
            return Err(sql_err("PARTITION BY is not supported on joins yet: the join key is the key"));
        }
        output = root.kind(&inputs);
        let canon_items: Vec<Expr> = items.iter().map(|(e, _)| canonical(e, &scope)).collect();
        for (e, given) in &items {
            let compiled = compile(e, &scope).map_err(type_err)?;
            let name = output_name(e, given, &mut generated);
            columns.push((Field { name, ty: compiled.ty.clone() }, compiled));
        }
        // The key: the join expression (streams) or the left table's primary key (tables).
        let Node::Join(j) = &root else {
            return Err(sql_err("internal: a stateful query without a join or an aggregation"));
        };
        if output == SourceKind::Table {
            let left_scope = scope_of(&inputs, &j.left.inputs());
            for &pos in &j.left_table_key {
                let col = &left_scope.columns[pos];
                let want = Expr::Column { source: col.source.clone(), name: col.name.clone() };
                let right_match = if j.mode == JoinMode::TablePrimaryKey {
                    equalities.iter().find(|(l, _)| *l == want).map(|(_, r)| r.clone())
                } else {
                    None
                };
                match canon_items.iter().position(|c| *c == want || Some(c) == right_match.as_ref()) {
                    Some(i) => {
                        // RIGHT and FULL joins have rows with no left side: their key comes
                        // from the right (ksqlDB keys them by the coalesced join key).
                        if let (Some(r), JoinKind::Right | JoinKind::Full) = (&right_match, j.kind) {
                            let both = Expr::Function { name: "COALESCE".into(), args: vec![want.clone(), r.clone()] };
                            let compiled = compile(&both, &scope).map_err(type_err)?;
                            columns[i].1 = compiled;
                        }
                        key.push(i)
                    }
                    None if purpose == Purpose::Persistent => {
                        return Err(sql_err(format!(
                            "key missing from projection: a table-table join is keyed by {}.{}; include it in the projection",
                            col.source.as_deref().unwrap_or_default(),
                            col.name
                        )));
                    }
                    None => {}
                }
            }
        } else {
            let (l, r) = equalities.last().cloned().ok_or_else(|| sql_err("internal: join without equality"))?;
            match canon_items.iter().position(|c| *c == l || *c == r) {
                Some(i) => key.push(i),
                None if purpose == Purpose::Persistent => {
                    return Err(sql_err(format!(
                        "key missing from projection: the join is keyed by its join expression; include {l} (or {r}) in the projection"
                    )));
                }
                None => {}
            }
        }
    }
    let mut seen = std::collections::HashSet::new();
    for (f, _) in &columns {
        if !seen.insert(f.name.clone()) {
            return Err(sql_err(format!(
                "the projection has two columns named {}: give one of them another name with AS",
                quote_ident(&f.name)
            )));
        }
        if purpose == Purpose::Persistent && [ROWTIME, ROWPARTITION, ROWOFFSET].contains(&f.name.as_str()) {
            return Err(sql_err(format!("{} is a system column: give it another name with AS", f.name)));
        }
    }
    let used = referenced_columns(query, &scope);
    Ok(StatefulPlan { inputs, root, filter, aggregate, columns, key, output, limit: query.limit, used })
}

/// For each column of `scope`, whether the query may read it: every column a clause names
/// (an unqualified name marks every column of that name), and all of a source it selects `*`
/// from. Columns no query reads need not be decoded.
pub fn referenced_columns(query: &Query, scope: &Scope) -> Vec<bool> {
    let mut used = vec![false; scope.columns.len()];
    let mark = |e: &Expr, used: &mut Vec<bool>| {
        visit(e, &mut |x| {
            if let Expr::Column { source, name } = x {
                for (i, c) in scope.columns.iter().enumerate() {
                    if &c.name == name && (source.is_none() || c.source == *source) {
                        used[i] = true;
                    }
                }
            }
        })
    };
    for item in &query.projection {
        match item {
            SelectItem::Wildcard => used.iter_mut().for_each(|u| *u = true),
            SelectItem::QualifiedWildcard(q) => {
                let mut any = false;
                for (i, c) in scope.columns.iter().enumerate() {
                    if c.source.as_deref() == Some(q.as_str()) {
                        used[i] = true;
                        any = true;
                    }
                }
                if !any {
                    used.iter_mut().for_each(|u| *u = true);
                }
            }
            SelectItem::Expr { expr, .. } => mark(expr, &mut used),
        }
    }
    let clauses = query
        .selection
        .iter()
        .chain(&query.group_by)
        .chain(&query.having)
        .chain(&query.partition_by)
        .chain(query.order_by.iter().map(|o| &o.expr));
    for e in clauses {
        mark(e, &mut used);
    }
    fn joins(r: &Relation, out: &mut Vec<Expr>) {
        if let Relation::Join(j) = r {
            joins(&j.left, out);
            out.push(j.on.clone());
        }
    }
    let mut on = Vec::new();
    joins(&query.from, &mut on);
    for e in &on {
        mark(e, &mut used);
    }
    used
}

/// The expression with source qualifiers removed (`t.x` becomes `x`).
pub fn unqualified(e: &Expr) -> Expr {
    rewrite(e, &mut |x| {
        Ok(match x {
            Expr::Column { name, .. } => Some(Expr::Column { source: None, name: name.clone() }),
            _ => None,
        })
    })
    .unwrap_or_else(|_| e.clone())
}

/// Null values for `n` columns.
pub fn nulls(n: usize) -> Vec<Value> {
    vec![Value::Null; n]
}
