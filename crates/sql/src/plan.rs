//! Planning a SELECT over one stream or table: the projection (with `*` expanded and output
//! column names chosen as ksqlDB chooses them), the filter, and which output columns form the
//! key (the source's key columns, or the PARTITION BY expression).
//!
//! Aggregations, windows and joins are planned by the second part of the SQL engine; here
//! they are refused with a clear error.

use std::sync::Arc;

use crate::ast::{Expr, Query, Relation, SelectItem, SourceKind};
use crate::catalog::{ROWOFFSET, ROWPARTITION, ROWTIME, SourceDesc, SqlError, sql_err};
use crate::expr::{Compiled, compile, compile_predicate};
use crate::types::{Field, quote_ident};

/// A planned stateless query.
#[derive(Debug, Clone)]
pub struct Plan {
    pub source: Arc<SourceDesc>,
    pub alias: String,
    pub filter: Option<Compiled>,
    /// Output columns in projection order.
    pub columns: Vec<(Field, Compiled)>,
    /// Positions in `columns` of the output key columns, in key order.
    pub key: Vec<usize>,
    /// The PARTITION BY expression, when the key is re-derived.
    pub partition_by: Option<Compiled>,
    pub limit: Option<u64>,
    /// Reads only the value columns the query uses.
    pub value_serde: crate::format::Serde,
}

impl Plan {
    pub fn key_fields(&self) -> Vec<Field> {
        self.key.iter().map(|&i| self.columns[i].0.clone()).collect()
    }

    pub fn value_fields(&self) -> Vec<Field> {
        (0..self.columns.len()).filter(|i| !self.key.contains(i)).map(|i| self.columns[i].0.clone()).collect()
    }

    /// All output fields in projection order.
    pub fn fields(&self) -> Vec<Field> {
        self.columns.iter().map(|(f, _)| f.clone()).collect()
    }
}

/// Whether the output of a persistent query must carry its key (CREATE ... AS SELECT, INSERT
/// INTO), or the query is transient (push and pull queries).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Persistent,
    Transient,
}

pub fn plan(
    query: &Query,
    lookup: &dyn Fn(&str) -> Option<Arc<SourceDesc>>,
    purpose: Purpose,
) -> Result<Plan, SqlError> {
    let (name, alias) = match &query.from {
        Relation::Source { name, alias } => (name.clone(), alias.clone().unwrap_or_else(|| name.clone())),
        Relation::Join(_) => {
            return Err(sql_err("joins are not supported yet: they come with the second part of the SQL engine"));
        }
    };
    if query.window.is_some() || !query.group_by.is_empty() || query.having.is_some() {
        return Err(sql_err(
            "WINDOW, GROUP BY and HAVING (aggregations) are not supported yet: they come with the second part of the SQL engine",
        ));
    }
    let source = lookup(&name).ok_or_else(|| sql_err(format!("{} does not exist", quote_ident(&name))))?;
    let scope = source.scope(&alias);
    let filter = query
        .selection
        .as_ref()
        .map(|w| compile_predicate(w, &scope, "WHERE"))
        .transpose()
        .map_err(|e| sql_err(e.0))?;

    // Expand the projection.
    let mut items: Vec<(Expr, Option<String>)> = Vec::new();
    for item in &query.projection {
        match item {
            SelectItem::Wildcard => {
                for f in source.columns() {
                    items.push((Expr::Column { source: Some(alias.clone()), name: f.name.clone() }, None));
                }
            }
            SelectItem::QualifiedWildcard(q) => {
                if q != &alias && q != &name {
                    return Err(sql_err(format!("{q}.* does not name the source of the query")));
                }
                for f in source.columns() {
                    items.push((Expr::Column { source: Some(alias.clone()), name: f.name.clone() }, None));
                }
            }
            SelectItem::Expr { expr, alias } => items.push((expr.clone(), alias.clone())),
        }
    }
    let mut columns: Vec<(Field, Compiled)> = Vec::new();
    let mut generated = 0;
    for (expr, given) in &items {
        let compiled = compile(expr, &scope).map_err(|e| sql_err(e.0))?;
        let name = match (given, expr) {
            (Some(n), _) => n.clone(),
            (None, Expr::Column { name, .. }) => name.clone(),
            (None, Expr::Deref { field, .. }) => field.clone(),
            (None, _) => {
                let n = format!("KSQL_COL_{generated}");
                generated += 1;
                n
            }
        };
        if columns.iter().any(|(f, _)| f.name == name) {
            return Err(sql_err(format!(
                "the projection has two columns named {}: give one of them another name with AS",
                quote_ident(&name)
            )));
        }
        if purpose == Purpose::Persistent && [ROWTIME, ROWPARTITION, ROWOFFSET].contains(&name.as_str()) {
            return Err(sql_err(format!("{name} is a system column: give it another name with AS")));
        }
        columns.push((Field { name, ty: compiled.ty.clone() }, compiled));
    }

    let same = |e: &Expr, other: &Expr| strip_source(e) == strip_source(other);
    let (key, partition_by) = if let Some(first) = query.partition_by.first() {
        if query.partition_by.len() > 1 {
            return Err(sql_err("PARTITION BY takes one expression for now"));
        }
        let compiled = compile(first, &scope).map_err(|e| sql_err(e.0))?;
        match items.iter().position(|(e, _)| same(e, first)) {
            Some(i) => (vec![i], Some(compiled)),
            None if purpose == Purpose::Persistent => {
                return Err(sql_err(format!(
                    "the projection must include the PARTITION BY expression {first} (for example SELECT {first}, ...)"
                )));
            }
            None => (Vec::new(), Some(compiled)),
        }
    } else {
        let mut key = Vec::new();
        for k in &source.key_columns {
            let col = Expr::Column { source: None, name: k.name.clone() };
            match items.iter().position(|(e, _)| same(e, &col)) {
                Some(i) => key.push(i),
                None if purpose == Purpose::Persistent => {
                    return Err(sql_err(format!(
                        "key missing from projection: the query must include the key column {} of {} in its projection (for example SELECT {}, ...)",
                        quote_ident(&k.name),
                        quote_ident(&source.name),
                        quote_ident(&k.name)
                    )));
                }
                None => {}
            }
        }
        (key, None)
    };
    if source.kind == SourceKind::Table && partition_by.is_some() {
        return Err(sql_err("PARTITION BY applies to streams; a table keeps its PRIMARY KEY"));
    }
    let value_serde = source.value_serde_reading(&crate::stateful::referenced_columns(query, &scope));
    Ok(Plan { source, alias, filter, columns, key, partition_by, limit: query.limit, value_serde })
}

fn strip_source(e: &Expr) -> Expr {
    match e {
        Expr::Column { name, .. } => Expr::Column { source: None, name: name.clone() },
        other => other.clone(),
    }
}
