//! SQL types in ksqlDB's vocabulary, as columns and expressions carry them.
//!
//! `SqlType` prints the way ksqlDB prints types (`ARRAY<STRUCT<`A` INTEGER>>`), so `DESCRIBE`
//! output and error messages read like ksqlDB's.

use std::fmt;
use std::sync::Arc;

/// Largest precision of a DECIMAL: its unscaled value is an `i128`.
pub const DECIMAL_PRECISION_MAX: u8 = 38;
/// Deepest nesting of ARRAY, MAP and STRUCT types accepted.
pub const TYPE_NESTING_MAX: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SqlType {
    Boolean,
    /// 32-bit signed integer (`INT`, `INTEGER`).
    Int,
    /// 64-bit signed integer.
    Bigint,
    /// 64-bit IEEE 754 float.
    Double,
    /// Fixed-point: `precision` digits of which `scale` after the point.
    Decimal {
        precision: u8,
        scale: u8,
    },
    /// UTF-8 text (`STRING`, `VARCHAR`).
    String,
    Bytes,
    /// Milliseconds since the Unix epoch, UTC.
    Timestamp,
    /// Days since the Unix epoch.
    Date,
    /// Milliseconds since midnight.
    Time,
    Array(Arc<SqlType>),
    /// ksqlDB maps have primitive keys (usually STRING).
    Map(Arc<SqlType>, Arc<SqlType>),
    /// Named fields in order.
    Struct(Arc<[Field]>),
}

/// A field of a STRUCT, or a column of a schema.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Field {
    pub name: String,
    pub ty: SqlType,
}

impl SqlType {
    pub fn is_numeric(&self) -> bool {
        matches!(self, SqlType::Int | SqlType::Bigint | SqlType::Double | SqlType::Decimal { .. })
    }

    /// Whether values of this type can be compared with `<`, `>`, ORDER BY and BETWEEN.
    pub fn is_orderable(&self) -> bool {
        self.is_numeric()
            || matches!(self, SqlType::String | SqlType::Boolean | SqlType::Timestamp | SqlType::Date | SqlType::Time)
    }

    pub fn is_primitive(&self) -> bool {
        !matches!(self, SqlType::Array(_) | SqlType::Map(..) | SqlType::Struct(_))
    }

    /// The DECIMAL that holds every value of an integer type exactly (as ksqlDB widens them).
    pub fn as_decimal(&self) -> Option<(u8, u8)> {
        match self {
            SqlType::Int => Some((10, 0)),
            SqlType::Bigint => Some((19, 0)),
            SqlType::Decimal { precision, scale } => Some((*precision, *scale)),
            _ => None,
        }
    }

    /// The type two numeric operands are widened to for arithmetic and comparison:
    /// INT < BIGINT < DECIMAL < DOUBLE, as in ksqlDB.
    pub fn widen_numeric(a: &SqlType, b: &SqlType) -> Option<SqlType> {
        use SqlType::*;
        if !a.is_numeric() || !b.is_numeric() {
            return None;
        }
        Some(match (a, b) {
            (Double, _) | (_, Double) => Double,
            (Decimal { .. }, _) | (_, Decimal { .. }) => {
                let (p1, s1) = a.as_decimal()?;
                let (p2, s2) = b.as_decimal()?;
                let scale = s1.max(s2);
                let integral = (p1 - s1).max(p2 - s2);
                Decimal { precision: (integral + scale).min(DECIMAL_PRECISION_MAX), scale }
            }
            (Bigint, _) | (_, Bigint) => Bigint,
            _ => Int,
        })
    }

    pub fn field(&self, name: &str) -> Option<&Field> {
        match self {
            SqlType::Struct(fields) => fields.iter().find(|f| f.name == name),
            _ => None,
        }
    }
}

/// Quotes an identifier the way ksqlDB prints it: backticks when it is not plain upper case.
pub fn quote_ident(name: &str) -> String {
    let plain = !name.is_empty()
        && name.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit());
    if plain { name.to_string() } else { format!("`{}`", name.replace('`', "``")) }
}

impl fmt::Display for SqlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SqlType::Boolean => f.write_str("BOOLEAN"),
            SqlType::Int => f.write_str("INTEGER"),
            SqlType::Bigint => f.write_str("BIGINT"),
            SqlType::Double => f.write_str("DOUBLE"),
            SqlType::Decimal { precision, scale } => write!(f, "DECIMAL({precision}, {scale})"),
            SqlType::String => f.write_str("STRING"),
            SqlType::Bytes => f.write_str("BYTES"),
            SqlType::Timestamp => f.write_str("TIMESTAMP"),
            SqlType::Date => f.write_str("DATE"),
            SqlType::Time => f.write_str("TIME"),
            SqlType::Array(t) => write!(f, "ARRAY<{t}>"),
            SqlType::Map(k, v) => write!(f, "MAP<{k}, {v}>"),
            SqlType::Struct(fields) => {
                f.write_str("STRUCT<")?;
                for (i, field) in fields.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{} {}", quote_ident(&field.name), field.ty)?;
                }
                f.write_str(">")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_like_ksqldb() {
        let t = SqlType::Array(Arc::new(SqlType::Struct(
            vec![Field { name: "A".into(), ty: SqlType::Int }, Field { name: "b".into(), ty: SqlType::String }].into(),
        )));
        assert_eq!(t.to_string(), "ARRAY<STRUCT<A INTEGER, `b` STRING>>");
        assert_eq!(SqlType::Decimal { precision: 10, scale: 2 }.to_string(), "DECIMAL(10, 2)");
    }

    #[test]
    fn numeric_widening() {
        use SqlType::*;
        assert_eq!(SqlType::widen_numeric(&Int, &Bigint), Some(Bigint));
        assert_eq!(SqlType::widen_numeric(&Int, &Double), Some(Double));
        assert_eq!(
            SqlType::widen_numeric(&Int, &Decimal { precision: 4, scale: 2 }),
            Some(Decimal { precision: 12, scale: 2 })
        );
        assert_eq!(SqlType::widen_numeric(&String, &Int), None);
    }
}
