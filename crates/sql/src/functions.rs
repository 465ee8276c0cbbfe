//! Scalar functions of ksqlDB's families (strings, math, nulls, date and time, JSON,
//! collections, URLs), resolved by name and argument types when a statement is compiled.
//!
//! Each function is listed in [`FUNCTIONS`] (for `SHOW FUNCTIONS` and `DESCRIBE FUNCTION`) and
//! resolved in [`resolve`], which checks the argument types and returns the result type and the
//! implementation. Dates and times use UTC or fixed offsets (`+02:00`); named time zones need
//! a time zone database, which runnel does not ship yet.

use std::sync::Arc;

use crate::expr::{Compiled, EvalError, array_item, eval_err};
use crate::types::{Field, SqlType};
use crate::value::{Decimal, Value, days_from_civil};

type ScalarFn = Arc<dyn Fn(&[Value]) -> Result<Value, EvalError> + Send + Sync>;
type LazyFn = Arc<dyn Fn(&[Compiled], &[Value]) -> Result<Value, EvalError> + Send + Sync>;

/// How a function is called.
pub enum FunctionImpl {
    /// Returns NULL when any argument is NULL, without calling the function.
    Strict(ScalarFn),
    /// Called with NULL arguments too.
    Lenient(ScalarFn),
    /// Evaluates its arguments itself (COALESCE stops at the first non-NULL).
    Lazy(LazyFn),
}

/// What `SHOW FUNCTIONS` and `DESCRIBE FUNCTION` show.
#[derive(Debug, Clone, Copy)]
pub struct FunctionInfo {
    pub name: &'static str,
    pub category: &'static str,
    pub description: &'static str,
    pub aggregate: bool,
}

macro_rules! f {
    ($name:literal, $cat:literal, $desc:literal) => {
        FunctionInfo { name: $name, category: $cat, description: $desc, aggregate: false }
    };
    ($name:literal, $cat:literal, $desc:literal, aggregate) => {
        FunctionInfo { name: $name, category: $cat, description: $desc, aggregate: true }
    };
}

/// Every function, by category.
pub const FUNCTIONS: &[FunctionInfo] = &[
    f!("CONCAT", "STRING", "Concatenates strings (or bytes)."),
    f!("CONCAT_WS", "STRING", "Concatenates strings with a separator, skipping NULLs."),
    f!("LCASE", "STRING", "Lower-cases a string."),
    f!("UCASE", "STRING", "Upper-cases a string."),
    f!("INITCAP", "STRING", "Capitalises the first letter of each word."),
    f!("LEN", "STRING", "Length of a string in characters (or of bytes)."),
    f!("LENGTH", "STRING", "Alias of LEN."),
    f!("SUBSTRING", "STRING", "Substring from a 1-based position, with an optional length."),
    f!("TRIM", "STRING", "Removes leading and trailing whitespace."),
    f!("LTRIM", "STRING", "Removes leading whitespace."),
    f!("RTRIM", "STRING", "Removes trailing whitespace."),
    f!("REPLACE", "STRING", "Replaces every occurrence of a substring."),
    f!("INSTR", "STRING", "1-based position of a substring, 0 when absent."),
    f!("LPAD", "STRING", "Pads on the left to a length."),
    f!("RPAD", "STRING", "Pads on the right to a length."),
    f!("SPLIT", "STRING", "Splits a string by a delimiter into an array."),
    f!("REVERSE", "STRING", "Reverses a string."),
    f!("MASK", "STRING", "Masks letters (X, x) and digits (n)."),
    f!("CHR", "STRING", "The character of a Unicode code point."),
    f!("ENCODE", "STRING", "Re-encodes a string between hex, utf8, ascii and base64."),
    f!("ABS", "MATHEMATICAL", "Absolute value."),
    f!("CEIL", "MATHEMATICAL", "Smallest integer value not less than the argument."),
    f!("FLOOR", "MATHEMATICAL", "Largest integer value not greater than the argument."),
    f!("ROUND", "MATHEMATICAL", "Rounds half up, to an optional number of decimal places."),
    f!("SQRT", "MATHEMATICAL", "Square root."),
    f!("POWER", "MATHEMATICAL", "A number raised to a power."),
    f!("EXP", "MATHEMATICAL", "e raised to a power."),
    f!("LN", "MATHEMATICAL", "Natural logarithm."),
    f!("LOG", "MATHEMATICAL", "Logarithm, base 10 or a given base."),
    f!("SIGN", "MATHEMATICAL", "-1, 0 or 1 by the sign of a number."),
    f!("RANDOM", "MATHEMATICAL", "A random DOUBLE in [0, 1)."),
    f!("GREATEST", "MATHEMATICAL", "The greatest non-NULL argument."),
    f!("LEAST", "MATHEMATICAL", "The least non-NULL argument."),
    f!("COALESCE", "NULL", "The first non-NULL argument."),
    f!("IFNULL", "NULL", "The second argument when the first is NULL."),
    f!("NULLIF", "NULL", "NULL when both arguments are equal, else the first."),
    f!("UNIX_TIMESTAMP", "DATE / TIME", "Milliseconds since the epoch, now or of a TIMESTAMP."),
    f!("UNIX_DATE", "DATE / TIME", "Days since the epoch, today or of a DATE."),
    f!("FROM_UNIXTIME", "DATE / TIME", "The TIMESTAMP of milliseconds since the epoch."),
    f!("FROM_DAYS", "DATE / TIME", "The DATE of days since the epoch."),
    f!(
        "FORMAT_TIMESTAMP",
        "DATE / TIME",
        "Formats a TIMESTAMP with a pattern (yyyy-MM-dd HH:mm:ss.SSS), in UTC or an offset."
    ),
    f!("PARSE_TIMESTAMP", "DATE / TIME", "Parses a TIMESTAMP with a pattern, in UTC or an offset."),
    f!("FORMAT_DATE", "DATE / TIME", "Formats a DATE with a pattern."),
    f!("PARSE_DATE", "DATE / TIME", "Parses a DATE with a pattern."),
    f!("FORMAT_TIME", "DATE / TIME", "Formats a TIME with a pattern."),
    f!("PARSE_TIME", "DATE / TIME", "Parses a TIME with a pattern."),
    f!(
        "TIMESTAMPTOSTRING",
        "DATE / TIME",
        "Formats BIGINT milliseconds with a pattern (older form of FORMAT_TIMESTAMP)."
    ),
    f!("STRINGTOTIMESTAMP", "DATE / TIME", "Parses a string to BIGINT milliseconds with a pattern."),
    f!("DATETOSTRING", "DATE / TIME", "Formats INT days with a pattern."),
    f!("STRINGTODATE", "DATE / TIME", "Parses a string to INT days with a pattern."),
    f!("TIMESTAMPADD", "DATE / TIME", "Adds an amount of a unit to a TIMESTAMP."),
    f!("TIMESTAMPSUB", "DATE / TIME", "Subtracts an amount of a unit from a TIMESTAMP."),
    f!("DATEADD", "DATE / TIME", "Adds an amount of a unit to a DATE."),
    f!("DATESUB", "DATE / TIME", "Subtracts an amount of a unit from a DATE."),
    f!("EXTRACTJSONFIELD", "JSON", "Extracts a field from a JSON string with a JSONPath ($.a.b[0])."),
    f!("IS_JSON_STRING", "JSON", "Whether a string is valid JSON."),
    f!("JSON_ARRAY_LENGTH", "JSON", "Length of a JSON array."),
    f!("JSON_KEYS", "JSON", "Keys of a JSON object."),
    f!("JSON_RECORDS", "JSON", "Entries of a JSON object as a map of JSON strings."),
    f!("JSON_CONCAT", "JSON", "Merges JSON objects or concatenates JSON arrays."),
    f!("TO_JSON_STRING", "JSON", "Any value as a JSON string."),
    f!("ARRAY_LENGTH", "ARRAY", "Number of elements of an array."),
    f!("ARRAY_CONTAINS", "ARRAY", "Whether an array contains a value."),
    f!("ARRAY_DISTINCT", "ARRAY", "The distinct elements, in order of first appearance."),
    f!("ARRAY_EXCEPT", "ARRAY", "Distinct elements of the first array not in the second."),
    f!("ARRAY_INTERSECT", "ARRAY", "Distinct elements in both arrays."),
    f!("ARRAY_UNION", "ARRAY", "Distinct elements of either array."),
    f!("ARRAY_JOIN", "ARRAY", "Joins the elements as text with a delimiter (default ',')."),
    f!("ARRAY_MAX", "ARRAY", "The greatest element."),
    f!("ARRAY_MIN", "ARRAY", "The least element."),
    f!("ARRAY_REMOVE", "ARRAY", "The array without a value."),
    f!("ARRAY_SORT", "ARRAY", "Sorted elements, ASC or DESC."),
    f!("ARRAY_CONCAT", "ARRAY", "Concatenates two arrays."),
    f!("SLICE", "ARRAY", "Elements from a 1-based start to an end, inclusive."),
    f!("ELT", "ARRAY", "The n-th of the string arguments."),
    f!("FIELD", "ARRAY", "1-based position of a string among the arguments, 0 when absent."),
    f!("MAP_KEYS", "MAP", "Keys of a map."),
    f!("MAP_VALUES", "MAP", "Values of a map."),
    f!("MAP_UNION", "MAP", "Merges two maps; the second wins."),
    f!("AS_MAP", "MAP", "A map from an array of keys and an array of values."),
    f!("ENTRIES", "MAP", "Entries of a map as an array of STRUCT<K, V>, optionally sorted."),
    f!("TRANSFORM", "LAMBDA", "Applies a lambda to each element of an array or entry of a map."),
    f!("FILTER", "LAMBDA", "Keeps the elements or entries for which a lambda is true."),
    f!("REDUCE", "LAMBDA", "Folds an array with a lambda from a start value."),
    f!("URL_EXTRACT_HOST", "URL", "Host of a URL."),
    f!("URL_EXTRACT_PATH", "URL", "Path of a URL."),
    f!("URL_EXTRACT_PORT", "URL", "Port of a URL."),
    f!("URL_EXTRACT_PROTOCOL", "URL", "Scheme of a URL."),
    f!("URL_EXTRACT_QUERY", "URL", "Query string of a URL."),
    f!("URL_EXTRACT_FRAGMENT", "URL", "Fragment of a URL."),
    f!("URL_EXTRACT_PARAMETER", "URL", "Decoded value of a query parameter."),
    f!("URL_ENCODE_PARAM", "URL", "Percent-encodes a query parameter value."),
    f!("URL_DECODE_PARAM", "URL", "Decodes a percent-encoded query parameter value."),
    f!("COUNT", "AGGREGATE", "Number of rows (or of non-NULL values).", aggregate),
    f!("SUM", "AGGREGATE", "Sum of the values.", aggregate),
    f!("AVG", "AGGREGATE", "Average of the values.", aggregate),
    f!("MIN", "AGGREGATE", "Least value.", aggregate),
    f!("MAX", "AGGREGATE", "Greatest value.", aggregate),
    f!("COUNT_DISTINCT", "AGGREGATE", "Number of distinct values.", aggregate),
    f!("COLLECT_LIST", "AGGREGATE", "The values as an array.", aggregate),
    f!("COLLECT_SET", "AGGREGATE", "The distinct values as an array.", aggregate),
    f!("EARLIEST_BY_OFFSET", "AGGREGATE", "The value of the earliest row.", aggregate),
    f!("LATEST_BY_OFFSET", "AGGREGATE", "The value of the latest row.", aggregate),
    f!("TOPK", "AGGREGATE", "The k greatest values.", aggregate),
    f!("TOPKDISTINCT", "AGGREGATE", "The k greatest distinct values.", aggregate),
    f!("HISTOGRAM", "AGGREGATE", "Counts of each distinct value.", aggregate),
    f!("STDDEV_SAMP", "AGGREGATE", "Sample standard deviation.", aggregate),
];

pub fn info(name: &str) -> Option<&'static FunctionInfo> {
    FUNCTIONS.iter().find(|f| f.name == name)
}

pub fn is_aggregate(name: &str) -> bool {
    info(name).is_some_and(|f| f.aggregate)
}

/// Most characters a string function may produce (LPAD, RPAD, REPLACE, CONCAT).
pub const STRING_RESULT_CHARS_MAX: usize = 1 << 20;

fn strict(f: impl Fn(&[Value]) -> Result<Value, EvalError> + Send + Sync + 'static) -> FunctionImpl {
    FunctionImpl::Strict(Arc::new(f))
}

fn lenient(f: impl Fn(&[Value]) -> Result<Value, EvalError> + Send + Sync + 'static) -> FunctionImpl {
    FunctionImpl::Lenient(Arc::new(f))
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or_default()
}

fn int(v: &Value) -> i64 {
    v.as_i64().unwrap_or_default()
}

fn string(text: impl Into<Arc<str>>) -> Value {
    Value::String(text.into())
}

fn bounded(text: String) -> Result<Value, EvalError> {
    if text.len() > STRING_RESULT_CHARS_MAX {
        return Err(eval_err(format!("result longer than {STRING_RESULT_CHARS_MAX} characters")));
    }
    Ok(string(text))
}

fn signature_error(name: &str, types: &[SqlType]) -> String {
    let args: Vec<String> = types.iter().map(|t| t.to_string()).collect();
    format!("function {name} does not accept ({}); see DESCRIBE FUNCTION {name}", args.join(", "))
}

fn is_int(t: &SqlType) -> bool {
    matches!(t, SqlType::Int | SqlType::Bigint)
}

/// Resolves `name` for arguments of `types` (`nulls[i]` marks a NULL literal, which fits any
/// type): the result type and the implementation, or why the call is wrong.
pub fn resolve(name: &str, types: &[SqlType], nulls: &[bool]) -> Result<(SqlType, FunctionImpl), String> {
    use SqlType as T;
    let bad = || signature_error(name, types);
    let n = types.len();
    let fits = |i: usize, want: &T| types.get(i) == Some(want) || nulls.get(i) == Some(&true);
    // Checks of trailing (often optional) arguments: whether every argument from position `from`
    // on fits `want`, or is INT or BIGINT; true when there is none.
    let fit_from = |from: usize, want: &T| (from..n).all(|i| fits(i, want));
    let ints_from = |from: usize| types.iter().skip(from).all(is_int);
    let all = |want: &T| fit_from(0, want);
    Ok(match name {
        // ---------------------------------------------------------------- strings
        "LCASE" | "UCASE" | "TRIM" | "LTRIM" | "RTRIM" | "INITCAP" | "REVERSE" if n == 1 && all(&T::String) => {
            let op = name.to_string();
            (
                T::String,
                strict(move |a| {
                    let x = s(&a[0]);
                    Ok(string(match op.as_str() {
                        "LCASE" => x.to_lowercase(),
                        "UCASE" => x.to_uppercase(),
                        "TRIM" => x.trim().to_string(),
                        "LTRIM" => x.trim_start().to_string(),
                        "RTRIM" => x.trim_end().to_string(),
                        "REVERSE" => x.chars().rev().collect(),
                        _ => initcap(x),
                    }))
                }),
            )
        }
        "LEN" | "LENGTH" if n == 1 && (fits(0, &T::String) || fits(0, &T::Bytes)) => (
            T::Int,
            strict(|a| {
                Ok(Value::Int(match &a[0] {
                    Value::Bytes(b) => b.len() as i32,
                    v => s(v).chars().count() as i32,
                }))
            }),
        ),
        "CONCAT" if n >= 1 && all(&T::String) => {
            (T::String, lenient(|a| bounded(a.iter().filter_map(|v| v.as_str()).collect::<String>())))
        }
        "CONCAT" if n >= 1 && all(&T::Bytes) => (
            T::Bytes,
            lenient(|a| {
                let mut out = Vec::new();
                for v in a {
                    if let Value::Bytes(b) = v {
                        out.extend_from_slice(b);
                    }
                }
                Ok(Value::Bytes(out.into()))
            }),
        ),
        "CONCAT_WS" if n >= 2 && all(&T::String) => (
            T::String,
            lenient(|a| {
                let Some(sep) = a[0].as_str() else { return Ok(Value::Null) };
                bounded(a[1..].iter().filter_map(|v| v.as_str()).collect::<Vec<_>>().join(sep))
            }),
        ),
        "SUBSTRING" if (n == 2 || n == 3) && fits(0, &T::String) && ints_from(1) => (
            T::String,
            strict(|a| {
                let chars: Vec<char> = s(&a[0]).chars().collect();
                let len = chars.len() as i64;
                let pos = int(&a[1]);
                // 1-based; negative counts from the end; 0 behaves as 1 (as ksqlDB).
                let start = if pos > 0 {
                    pos - 1
                } else if pos < 0 {
                    (len + pos).max(0)
                } else {
                    0
                };
                let end = match a.get(2) {
                    Some(l) => (start + int(l).max(0)).min(len),
                    None => len,
                };
                Ok(string(if start >= len {
                    String::new()
                } else {
                    chars[start as usize..end.max(start) as usize].iter().collect()
                }))
            }),
        ),
        "REPLACE" if n == 3 && all(&T::String) => (
            T::String,
            strict(|a| {
                let (x, from, to) = (s(&a[0]), s(&a[1]), s(&a[2]));
                if from.is_empty() {
                    return Ok(a[0].clone());
                }
                let count = x.matches(from).count();
                if x.len() + count.saturating_mul(to.len()) > STRING_RESULT_CHARS_MAX {
                    return Err(eval_err(format!("result longer than {STRING_RESULT_CHARS_MAX} characters")));
                }
                Ok(string(x.replace(from, to)))
            }),
        ),
        "INSTR" if n >= 2 && fits(0, &T::String) && fits(1, &T::String) && ints_from(2) => (
            T::Int,
            strict(|a| {
                let (x, sub) = (s(&a[0]), s(&a[1]));
                let from = a.get(2).map(int).unwrap_or(1).max(1) as usize - 1;
                let skip: String = x.chars().skip(from).collect();
                Ok(Value::Int(match skip.find(sub) {
                    Some(byte) => (skip[..byte].chars().count() + from + 1) as i32,
                    None => 0,
                }))
            }),
        ),
        "LPAD" | "RPAD" if n == 3 && fits(0, &T::String) && is_int(&types[1]) && fits(2, &T::String) => {
            let left = name == "LPAD";
            (
                T::String,
                strict(move |a| {
                    let (x, len, pad) = (s(&a[0]), int(&a[1]), s(&a[2]));
                    if len < 0 || pad.is_empty() {
                        return Ok(Value::Null);
                    }
                    let len = len as usize;
                    if len > STRING_RESULT_CHARS_MAX {
                        return Err(eval_err(format!("LPAD/RPAD length above {STRING_RESULT_CHARS_MAX}")));
                    }
                    let chars: Vec<char> = x.chars().collect();
                    if chars.len() >= len {
                        return Ok(string(chars[..len].iter().collect::<String>()));
                    }
                    let fill: String = pad.chars().cycle().take(len - chars.len()).collect();
                    Ok(string(if left { format!("{fill}{x}") } else { format!("{x}{fill}") }))
                }),
            )
        }
        "SPLIT" if n == 2 && all(&T::String) => (
            T::Array(Arc::new(T::String)),
            strict(|a| {
                let (x, d) = (s(&a[0]), s(&a[1]));
                let parts: Vec<Value> = if d.is_empty() {
                    x.chars().map(|c| string(c.to_string())).collect()
                } else {
                    x.split(d).map(string).collect()
                };
                Ok(Value::Array(parts.into()))
            }),
        ),
        "MASK" if n == 1 && all(&T::String) => (
            T::String,
            strict(|a| {
                Ok(string(
                    s(&a[0])
                        .chars()
                        .map(|c| match c {
                            'A'..='Z' => 'X',
                            'a'..='z' => 'x',
                            '0'..='9' => 'n',
                            _ => '-',
                        })
                        .collect::<String>(),
                ))
            }),
        ),
        "CHR" if n == 1 && is_int(&types[0]) => (
            T::String,
            strict(|a| {
                Ok(u32::try_from(int(&a[0]))
                    .ok()
                    .and_then(char::from_u32)
                    .map(|c| string(c.to_string()))
                    .unwrap_or(Value::Null))
            }),
        ),
        "ENCODE" if n == 3 && all(&T::String) => (
            T::String,
            strict(|a| {
                let bytes = match s(&a[1]).to_ascii_lowercase().as_str() {
                    "hex" => hex_decode(s(&a[0])).ok_or_else(|| eval_err("invalid hex input"))?,
                    "base64" => {
                        crate::value::base64_decode(s(&a[0])).ok_or_else(|| eval_err("invalid base64 input"))?
                    }
                    "utf8" | "ascii" => s(&a[0]).as_bytes().to_vec(),
                    other => return Err(eval_err(format!("unknown encoding {other}: hex, utf8, ascii or base64"))),
                };
                Ok(string(match s(&a[2]).to_ascii_lowercase().as_str() {
                    "hex" => bytes.iter().map(|b| format!("{b:02x}")).collect::<String>(),
                    "base64" => crate::value::base64(&bytes),
                    "utf8" | "ascii" => String::from_utf8_lossy(&bytes).into_owned(),
                    other => return Err(eval_err(format!("unknown encoding {other}: hex, utf8, ascii or base64"))),
                }))
            }),
        ),
        // ---------------------------------------------------------------- math
        "ABS" if n == 1 && types[0].is_numeric() => (
            types[0].clone(),
            strict(|a| {
                Ok(match &a[0] {
                    Value::Int(i) => Value::Int(i.checked_abs().ok_or_else(|| eval_err("integer overflow in ABS"))?),
                    Value::Bigint(i) => {
                        Value::Bigint(i.checked_abs().ok_or_else(|| eval_err("integer overflow in ABS"))?)
                    }
                    Value::Double(d) => Value::Double(d.abs()),
                    Value::Decimal(d) => Value::Decimal(Decimal { unscaled: d.unscaled.abs(), scale: d.scale }),
                    _ => Value::Null,
                })
            }),
        ),
        "CEIL" | "FLOOR" if n == 1 && types[0].is_numeric() => {
            let ceil = name == "CEIL";
            let ty = match &types[0] {
                T::Decimal { precision, scale } => T::Decimal { precision: precision - scale + 1, scale: 0 },
                other => other.clone(),
            };
            (
                ty,
                strict(move |a| {
                    Ok(match &a[0] {
                        Value::Double(d) => Value::Double(if ceil { d.ceil() } else { d.floor() }),
                        Value::Decimal(d) => {
                            let p = 10i128.pow(u32::from(d.scale));
                            let (q, r) = (d.unscaled.div_euclid(p), d.unscaled.rem_euclid(p));
                            Value::Decimal(Decimal { unscaled: if ceil && r != 0 { q + 1 } else { q }, scale: 0 })
                        }
                        other => other.clone(),
                    })
                }),
            )
        }
        "ROUND" if (n == 1 || n == 2) && types[0].is_numeric() && ints_from(1) => {
            let ty = match (&types[0], n) {
                (T::Double, 1) => T::Bigint,
                (T::Decimal { precision, scale }, 1) => T::Decimal { precision: precision - scale + 1, scale: 0 },
                (other, _) => other.clone(),
            };
            let out = ty.clone();
            (
                ty,
                strict(move |a| {
                    let places = a.get(1).map(int).unwrap_or(0);
                    Ok(match (&a[0], &out) {
                        (Value::Double(d), T::Bigint) => Value::Bigint(round_half_up(*d, 0) as i64),
                        (Value::Double(d), _) => Value::Double(round_half_up(*d, places)),
                        (Value::Decimal(d), T::Decimal { scale, .. }) => {
                            let keep = u8::try_from(places.clamp(0, i64::from(d.scale))).unwrap_or(0);
                            let rounded = d.rescale(keep).ok_or_else(|| eval_err("overflow in ROUND"))?;
                            Value::Decimal(rounded.rescale(*scale).ok_or_else(|| eval_err("overflow in ROUND"))?)
                        }
                        (other, _) => other.clone(),
                    })
                }),
            )
        }
        "SQRT" | "EXP" | "LN" | "SIGN" if n == 1 && types[0].is_numeric() => {
            let op = name.to_string();
            let ty = if name == "SIGN" { T::Int } else { T::Double };
            (
                ty,
                strict(move |a| {
                    let x = a[0].as_f64().unwrap_or_default();
                    Ok(match op.as_str() {
                        "SQRT" => Value::Double(x.sqrt()),
                        "EXP" => Value::Double(x.exp()),
                        "LN" => Value::Double(x.ln()),
                        _ => Value::Int(if x > 0.0 {
                            1
                        } else if x < 0.0 {
                            -1
                        } else {
                            0
                        }),
                    })
                }),
            )
        }
        "LOG" if (n == 1 || n == 2) && types.iter().all(SqlType::is_numeric) => (
            T::Double,
            strict(|a| {
                Ok(Value::Double(match a {
                    [x] => x.as_f64().unwrap_or_default().log10(),
                    [b, x] => x.as_f64().unwrap_or_default().ln() / b.as_f64().unwrap_or_default().ln(),
                    _ => f64::NAN,
                }))
            }),
        ),
        "POWER" if n == 2 && types.iter().all(SqlType::is_numeric) => (
            T::Double,
            strict(|a| Ok(Value::Double(a[0].as_f64().unwrap_or_default().powf(a[1].as_f64().unwrap_or_default())))),
        ),
        "RANDOM" if n == 0 => (T::Double, lenient(|_| Ok(Value::Double(random_f64())))),
        "GREATEST" | "LEAST" if n >= 1 => {
            let ty = common_type(types, nulls).ok_or_else(bad)?;
            if !ty.is_orderable() {
                return Err(bad());
            }
            let greatest = name == "GREATEST";
            let (to, from): (T, Vec<T>) = (ty.clone(), types.to_vec());
            (
                ty,
                lenient(move |a| {
                    let mut best: Option<Value> = None;
                    for (v, t) in a.iter().zip(&from) {
                        if v.is_null() {
                            continue;
                        }
                        let v = crate::expr::cast(v.clone(), t, &to)?;
                        let better = match &best {
                            None => true,
                            Some(b) => {
                                v.compare(b)
                                    == Some(if greatest {
                                        std::cmp::Ordering::Greater
                                    } else {
                                        std::cmp::Ordering::Less
                                    })
                            }
                        };
                        if better {
                            best = Some(v);
                        }
                    }
                    Ok(best.unwrap_or(Value::Null))
                }),
            )
        }
        // ---------------------------------------------------------------- nulls
        "COALESCE" | "IFNULL" if n >= 1 && (name == "COALESCE" || n == 2) => {
            let ty = common_type(types, nulls).ok_or_else(bad)?;
            let (to, from) = (ty.clone(), types.to_vec());
            (
                ty,
                FunctionImpl::Lazy(Arc::new(move |args: &[Compiled], row: &[Value]| {
                    for (c, t) in args.iter().zip(&from) {
                        let v = c.eval(row)?;
                        if !v.is_null() {
                            return crate::expr::cast(v, t, &to);
                        }
                    }
                    Ok(Value::Null)
                })),
            )
        }
        "NULLIF" if n == 2 => {
            let ty = common_type(types, nulls).ok_or_else(bad)?;
            (ty, lenient(|a| Ok(if a[0].sql_eq(&a[1]) == Some(true) { Value::Null } else { a[0].clone() })))
        }
        // ---------------------------------------------------------------- date and time
        "UNIX_TIMESTAMP" if n == 0 => (T::Bigint, lenient(|_| Ok(Value::Bigint(now_ms())))),
        "UNIX_TIMESTAMP" if n == 1 && fits(0, &T::Timestamp) => (T::Bigint, strict(|a| Ok(Value::Bigint(int(&a[0]))))),
        "UNIX_DATE" if n == 0 => (T::Int, lenient(|_| Ok(Value::Int(now_ms().div_euclid(86_400_000) as i32)))),
        "UNIX_DATE" if n == 1 && fits(0, &T::Date) => (T::Int, strict(|a| Ok(Value::Int(int(&a[0]) as i32)))),
        "FROM_UNIXTIME" if n == 1 && is_int(&types[0]) => (T::Timestamp, strict(|a| Ok(Value::Timestamp(int(&a[0]))))),
        "FROM_DAYS" if n == 1 && is_int(&types[0]) => (
            T::Date,
            strict(|a| Ok(Value::Date(i32::try_from(int(&a[0])).map_err(|_| eval_err("days out of range"))?))),
        ),
        "FORMAT_TIMESTAMP" | "TIMESTAMPTOSTRING"
            if (n == 2 || n == 3)
                && (fits(0, &T::Timestamp) || (name == "TIMESTAMPTOSTRING" && is_int(&types[0])))
                && fit_from(1, &T::String) =>
        {
            (
                T::String,
                strict(|a| {
                    let offset = a.get(2).map(|z| parse_zone(s(z))).transpose()?.unwrap_or(0);
                    let pattern = DatePattern::compile(s(&a[1]))?;
                    Ok(string(pattern.format(int(&a[0]) + offset * 1000, offset)))
                }),
            )
        }
        "PARSE_TIMESTAMP" | "STRINGTOTIMESTAMP" if (n == 2 || n == 3) && all(&T::String) => {
            let ty = if name == "PARSE_TIMESTAMP" { T::Timestamp } else { T::Bigint };
            let out = ty.clone();
            (
                ty,
                strict(move |a| {
                    let offset = a.get(2).map(|z| parse_zone(s(z))).transpose()?.unwrap_or(0);
                    let pattern = DatePattern::compile(s(&a[1]))?;
                    let ms = pattern.parse(s(&a[0]), offset)?;
                    Ok(if out == T::Timestamp { Value::Timestamp(ms) } else { Value::Bigint(ms) })
                }),
            )
        }
        "FORMAT_DATE" | "DATETOSTRING"
            if n == 2
                && (fits(0, &T::Date) || (name == "DATETOSTRING" && is_int(&types[0])))
                && fits(1, &T::String) =>
        {
            (T::String, strict(|a| Ok(string(DatePattern::compile(s(&a[1]))?.format(int(&a[0]) * 86_400_000, 0)))))
        }
        "PARSE_DATE" | "STRINGTODATE" if n == 2 && all(&T::String) => {
            let typed = name == "PARSE_DATE";
            (
                if typed { T::Date } else { T::Int },
                strict(move |a| {
                    let days = DatePattern::compile(s(&a[1]))?.parse(s(&a[0]), 0)?.div_euclid(86_400_000) as i32;
                    Ok(if typed { Value::Date(days) } else { Value::Int(days) })
                }),
            )
        }
        "FORMAT_TIME" if n == 2 && fits(0, &T::Time) && fits(1, &T::String) => {
            (T::String, strict(|a| Ok(string(DatePattern::compile(s(&a[1]))?.format(int(&a[0]), 0)))))
        }
        "PARSE_TIME" if n == 2 && all(&T::String) => (
            T::Time,
            strict(|a| {
                Ok(Value::Time(DatePattern::compile(s(&a[1]))?.parse(s(&a[0]), 0)?.rem_euclid(86_400_000) as i32))
            }),
        ),
        "TIMESTAMPADD" | "TIMESTAMPSUB" | "DATEADD" | "DATESUB"
            if n == 3 && fits(0, &T::String) && is_int(&types[1]) =>
        {
            let date = name.starts_with("DATE");
            let target = if date { T::Date } else { T::Timestamp };
            if !fits(2, &target) {
                return Err(bad());
            }
            let sign = if name.ends_with("SUB") { -1 } else { 1 };
            (
                target,
                strict(move |a| {
                    let unit_ms = time_unit_ms(s(&a[0]))?;
                    let delta = int(&a[1])
                        .checked_mul(unit_ms)
                        .and_then(|d| d.checked_mul(sign))
                        .ok_or_else(|| eval_err("overflow"))?;
                    if date {
                        let days = (int(&a[2]) * 86_400_000 + delta).div_euclid(86_400_000);
                        Ok(Value::Date(i32::try_from(days).map_err(|_| eval_err("date out of range"))?))
                    } else {
                        Ok(Value::Timestamp(int(&a[2]).checked_add(delta).ok_or_else(|| eval_err("overflow"))?))
                    }
                }),
            )
        }
        // ---------------------------------------------------------------- JSON
        "EXTRACTJSONFIELD" if n == 2 && all(&T::String) => (
            T::String,
            strict(|a| {
                let Ok(doc) = serde_json::from_str::<serde_json::Value>(s(&a[0])) else { return Ok(Value::Null) };
                Ok(match json_path(&doc, s(&a[1]))? {
                    Some(serde_json::Value::String(text)) => string(text.as_str()),
                    Some(serde_json::Value::Null) | None => Value::Null,
                    Some(other) => string(other.to_string()),
                })
            }),
        ),
        "IS_JSON_STRING" if n == 1 && all(&T::String) => (
            T::Boolean,
            lenient(|a| {
                Ok(Value::Boolean(a[0].as_str().is_some_and(|t| serde_json::from_str::<serde_json::Value>(t).is_ok())))
            }),
        ),
        "JSON_ARRAY_LENGTH" if n == 1 && all(&T::String) => (
            T::Int,
            strict(|a| {
                Ok(match serde_json::from_str::<serde_json::Value>(s(&a[0])) {
                    Ok(serde_json::Value::Array(items)) => Value::Int(items.len() as i32),
                    _ => Value::Null,
                })
            }),
        ),
        "JSON_KEYS" if n == 1 && all(&T::String) => (
            T::Array(Arc::new(T::String)),
            strict(|a| {
                Ok(match serde_json::from_str::<serde_json::Value>(s(&a[0])) {
                    Ok(serde_json::Value::Object(map)) => {
                        Value::Array(map.keys().map(|k| string(k.as_str())).collect::<Vec<_>>().into())
                    }
                    _ => Value::Null,
                })
            }),
        ),
        "JSON_RECORDS" if n == 1 && all(&T::String) => (
            T::Map(Arc::new(T::String), Arc::new(T::String)),
            strict(|a| {
                Ok(match serde_json::from_str::<serde_json::Value>(s(&a[0])) {
                    Ok(serde_json::Value::Object(map)) => Value::Map(
                        map.iter().map(|(k, v)| (string(k.as_str()), string(v.to_string()))).collect::<Vec<_>>().into(),
                    ),
                    _ => Value::Null,
                })
            }),
        ),
        "JSON_CONCAT" if n >= 1 && all(&T::String) => (
            T::String,
            strict(|a| {
                let docs: Result<Vec<serde_json::Value>, _> = a.iter().map(|v| serde_json::from_str(s(v))).collect();
                let Ok(docs) = docs else { return Ok(Value::Null) };
                let merged = if docs.iter().all(|d| d.is_object()) {
                    let mut out = serde_json::Map::new();
                    for d in docs {
                        if let serde_json::Value::Object(m) = d {
                            out.extend(m);
                        }
                    }
                    serde_json::Value::Object(out)
                } else {
                    let mut out = Vec::new();
                    for d in docs {
                        match d {
                            serde_json::Value::Array(items) => out.extend(items),
                            other => out.push(other),
                        }
                    }
                    serde_json::Value::Array(out)
                };
                bounded(merged.to_string())
            }),
        ),
        "TO_JSON_STRING" if n == 1 => {
            let ty = types[0].clone();
            (T::String, lenient(move |a| bounded(crate::format::to_json(&a[0], &ty).to_string())))
        }
        // ---------------------------------------------------------------- arrays
        "ARRAY_LENGTH" if n == 1 && matches!(types[0], T::Array(_)) => (
            T::Int,
            strict(|a| {
                Ok(match &a[0] {
                    Value::Array(x) => Value::Int(x.len() as i32),
                    _ => Value::Null,
                })
            }),
        ),
        "ARRAY_CONTAINS"
            if n == 2
                && matches!(&types[0], T::Array(item) if **item == types[1] || nulls[1] || SqlType::widen_numeric(item, &types[1]).is_some()) =>
        {
            (
                T::Boolean,
                lenient(|a| {
                    Ok(match &a[0] {
                        Value::Array(items) => {
                            Value::Boolean(items.iter().any(|x| x == &a[1] || x.sql_eq(&a[1]) == Some(true)))
                        }
                        _ => Value::Null,
                    })
                }),
            )
        }
        "ARRAY_DISTINCT" if n == 1 && matches!(types[0], T::Array(_)) => {
            (types[0].clone(), strict(|a| Ok(Value::Array(distinct(items_of(&a[0])).into()))))
        }
        "ARRAY_EXCEPT" | "ARRAY_INTERSECT" | "ARRAY_UNION"
            if n == 2 && matches!(types[0], T::Array(_)) && types[0] == types[1] =>
        {
            let op = name.to_string();
            (
                types[0].clone(),
                strict(move |a| {
                    let (x, y) = (items_of(&a[0]), items_of(&a[1]));
                    let out = match op.as_str() {
                        "ARRAY_EXCEPT" => distinct(x.iter().filter(|v| !y.contains(v)).cloned().collect()),
                        "ARRAY_INTERSECT" => distinct(x.iter().filter(|v| y.contains(v)).cloned().collect()),
                        _ => distinct(x.iter().chain(y.iter()).cloned().collect()),
                    };
                    Ok(Value::Array(out.into()))
                }),
            )
        }
        "ARRAY_JOIN"
            if (n == 1 || n == 2)
                && matches!(&types[0], T::Array(item) if item.is_primitive())
                && fit_from(1, &T::String) =>
        {
            (
                T::String,
                lenient(|a| {
                    let Value::Array(items) = &a[0] else { return Ok(Value::Null) };
                    let sep = a.get(1).and_then(|v| v.as_str()).unwrap_or(",");
                    bounded(
                        items
                            .iter()
                            .map(|v| if v.is_null() { "null".to_string() } else { v.to_string() })
                            .collect::<Vec<_>>()
                            .join(sep),
                    )
                }),
            )
        }
        "ARRAY_MAX" | "ARRAY_MIN" if n == 1 && matches!(&types[0], T::Array(item) if item.is_orderable()) => {
            let T::Array(item) = &types[0] else { unreachable!() };
            let max = name == "ARRAY_MAX";
            (
                (**item).clone(),
                strict(move |a| {
                    let want = if max { std::cmp::Ordering::Greater } else { std::cmp::Ordering::Less };
                    let mut best: Option<&Value> = None;
                    let items = items_of(&a[0]);
                    for v in items.iter().filter(|v| !v.is_null()) {
                        if best.is_none_or(|b| v.compare(b) == Some(want)) {
                            best = Some(v);
                        }
                    }
                    Ok(best.cloned().unwrap_or(Value::Null))
                }),
            )
        }
        "ARRAY_REMOVE" if n == 2 && matches!(&types[0], T::Array(item) if **item == types[1] || nulls[1]) => (
            types[0].clone(),
            lenient(|a| {
                let Value::Array(items) = &a[0] else { return Ok(Value::Null) };
                Ok(Value::Array(items.iter().filter(|v| *v != &a[1]).cloned().collect::<Vec<_>>().into()))
            }),
        ),
        "ARRAY_SORT"
            if (n == 1 || n == 2)
                && matches!(&types[0], T::Array(item) if item.is_orderable())
                && fit_from(1, &T::String) =>
        {
            (
                types[0].clone(),
                strict(|a| {
                    let mut items = items_of(&a[0]);
                    let desc = a.get(1).is_some_and(|d| s(d).eq_ignore_ascii_case("DESC"));
                    // NULLs last, as ksqlDB.
                    items.sort_by(|x, y| match (x.is_null(), y.is_null()) {
                        (true, true) => std::cmp::Ordering::Equal,
                        (true, false) => std::cmp::Ordering::Greater,
                        (false, true) => std::cmp::Ordering::Less,
                        _ => {
                            let o = x.compare(y).unwrap_or(std::cmp::Ordering::Equal);
                            if desc { o.reverse() } else { o }
                        }
                    });
                    Ok(Value::Array(items.into()))
                }),
            )
        }
        "ARRAY_CONCAT" if n == 2 && matches!(types[0], T::Array(_)) && types[0] == types[1] => (
            types[0].clone(),
            lenient(|a| {
                if a[0].is_null() && a[1].is_null() {
                    return Ok(Value::Null);
                }
                let mut out = items_of(&a[0]);
                out.extend(items_of(&a[1]));
                Ok(Value::Array(out.into()))
            }),
        ),
        "SLICE" if n == 3 && matches!(types[0], T::Array(_)) && is_int(&types[1]) && is_int(&types[2]) => (
            types[0].clone(),
            strict(|a| {
                let items = items_of(&a[0]);
                let (from, to) = (int(&a[1]).max(1) as usize, int(&a[2]).max(0) as usize);
                Ok(Value::Array(
                    items.iter().skip(from - 1).take((to + 1).saturating_sub(from)).cloned().collect::<Vec<_>>().into(),
                ))
            }),
        ),
        "ELT" if n >= 1 && is_int(&types[0]) && fit_from(1, &T::String) => (
            T::String,
            lenient(|a| {
                Ok(match a[0].as_i64() {
                    Some(i) if i >= 1 => array_item(&a[1..], i),
                    _ => Value::Null,
                })
            }),
        ),
        "FIELD" if n >= 1 && all(&T::String) => (
            T::Int,
            lenient(|a| {
                if a[0].is_null() {
                    return Ok(Value::Int(0));
                }
                Ok(Value::Int(a[1..].iter().position(|v| v == &a[0]).map(|i| i as i32 + 1).unwrap_or(0)))
            }),
        ),
        // ---------------------------------------------------------------- maps
        "MAP_KEYS" | "MAP_VALUES" if n == 1 && matches!(types[0], T::Map(..)) => {
            let T::Map(k, v) = &types[0] else { unreachable!() };
            let keys = name == "MAP_KEYS";
            (
                T::Array(if keys { k.clone() } else { v.clone() }),
                strict(move |a| {
                    let Value::Map(entries) = &a[0] else { return Ok(Value::Null) };
                    Ok(Value::Array(
                        entries
                            .iter()
                            .map(|(k, v)| if keys { k.clone() } else { v.clone() })
                            .collect::<Vec<_>>()
                            .into(),
                    ))
                }),
            )
        }
        "MAP_UNION" if n == 2 && matches!(types[0], T::Map(..)) && types[0] == types[1] => (
            types[0].clone(),
            lenient(|a| {
                let mut out: Vec<(Value, Value)> = match &a[0] {
                    Value::Map(m) => m.to_vec(),
                    _ => Vec::new(),
                };
                if let Value::Map(m) = &a[1] {
                    for (k, v) in m.iter() {
                        match out.iter_mut().find(|(ek, _)| ek == k) {
                            Some(slot) => slot.1 = v.clone(),
                            None => out.push((k.clone(), v.clone())),
                        }
                    }
                }
                Ok(Value::Map(out.into()))
            }),
        ),
        "AS_MAP"
            if n == 2 && matches!(&types[0], T::Array(k) if k.is_primitive()) && matches!(types[1], T::Array(_)) =>
        {
            let (T::Array(k), T::Array(v)) = (&types[0], &types[1]) else { unreachable!() };
            (
                T::Map(k.clone(), v.clone()),
                strict(|a| {
                    let mut out: Vec<(Value, Value)> = Vec::new();
                    for (k, v) in items_of(&a[0]).into_iter().zip(items_of(&a[1])) {
                        match out.iter_mut().find(|(ek, _)| *ek == k) {
                            Some(slot) => slot.1 = v,
                            None => out.push((k, v)),
                        }
                    }
                    Ok(Value::Map(out.into()))
                }),
            )
        }
        "ENTRIES" if n == 2 && matches!(types[0], T::Map(..)) && fits(1, &T::Boolean) => {
            let T::Map(k, v) = &types[0] else { unreachable!() };
            let entry = T::Struct(
                vec![Field { name: "K".into(), ty: (**k).clone() }, Field { name: "V".into(), ty: (**v).clone() }]
                    .into(),
            );
            (
                T::Array(Arc::new(entry)),
                strict(|a| {
                    let Value::Map(entries) = &a[0] else { return Ok(Value::Null) };
                    let mut out: Vec<(Value, Value)> = entries.to_vec();
                    if a[1] == Value::Boolean(true) {
                        out.sort_by(|x, y| x.0.compare(&y.0).unwrap_or(std::cmp::Ordering::Equal));
                    }
                    Ok(Value::Array(
                        out.into_iter().map(|(k, v)| Value::Struct(vec![k, v].into())).collect::<Vec<_>>().into(),
                    ))
                }),
            )
        }
        // ---------------------------------------------------------------- URLs
        "URL_EXTRACT_HOST"
        | "URL_EXTRACT_PATH"
        | "URL_EXTRACT_PROTOCOL"
        | "URL_EXTRACT_QUERY"
        | "URL_EXTRACT_FRAGMENT"
            if n == 1 && all(&T::String) =>
        {
            let part = name.trim_start_matches("URL_EXTRACT_").to_string();
            (
                T::String,
                strict(move |a| {
                    let Some(url) = Url::parse(s(&a[0])) else { return Ok(Value::Null) };
                    Ok(match part.as_str() {
                        "HOST" => url.host.map(string).unwrap_or(Value::Null),
                        "PATH" => string(url.path),
                        "PROTOCOL" => url.scheme.map(string).unwrap_or(Value::Null),
                        "QUERY" => url.query.map(string).unwrap_or(Value::Null),
                        _ => url.fragment.map(string).unwrap_or(Value::Null),
                    })
                }),
            )
        }
        "URL_EXTRACT_PORT" if n == 1 && all(&T::String) => {
            (T::Int, strict(|a| Ok(Url::parse(s(&a[0])).and_then(|u| u.port).map(Value::Int).unwrap_or(Value::Null))))
        }
        "URL_EXTRACT_PARAMETER" if n == 2 && all(&T::String) => (
            T::String,
            strict(|a| {
                let Some(query) = Url::parse(s(&a[0])).and_then(|u| u.query) else { return Ok(Value::Null) };
                for pair in query.split('&') {
                    let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                    if percent_decode(k).as_deref() == Some(s(&a[1])) {
                        return Ok(percent_decode(v).map(string).unwrap_or(Value::Null));
                    }
                }
                Ok(Value::Null)
            }),
        ),
        "URL_ENCODE_PARAM" if n == 1 && all(&T::String) => (T::String, strict(|a| bounded(percent_encode(s(&a[0]))))),
        "URL_DECODE_PARAM" if n == 1 && all(&T::String) => (
            T::String,
            strict(|a| percent_decode(s(&a[0])).map(string).ok_or_else(|| eval_err("invalid percent-encoding"))),
        ),
        _ if info(name).is_some() => return Err(bad()),
        _ => return Err(format!("unknown function {name}: SHOW FUNCTIONS lists them")),
    })
}

fn items_of(v: &Value) -> Vec<Value> {
    match v {
        Value::Array(items) => items.to_vec(),
        _ => Vec::new(),
    }
}

fn distinct(items: Vec<Value>) -> Vec<Value> {
    let mut seen = std::collections::HashSet::new();
    items
        .into_iter()
        .filter(|v| {
            let mut key = Vec::new();
            v.key_bytes(&mut key);
            seen.insert(key)
        })
        .collect()
}

/// The type every argument can be widened to (NULL literals fit any).
fn common_type(types: &[SqlType], nulls: &[bool]) -> Option<SqlType> {
    let mut ty: Option<SqlType> = None;
    for (t, null) in types.iter().zip(nulls) {
        if *null {
            continue;
        }
        ty = Some(match ty {
            None => t.clone(),
            Some(x) if &x == t => x,
            Some(x) => SqlType::widen_numeric(&x, t)?,
        });
    }
    Some(ty.unwrap_or(SqlType::String))
}

fn initcap(x: &str) -> String {
    let mut out = String::with_capacity(x.len());
    let mut start = true;
    for c in x.chars() {
        if c.is_whitespace() {
            start = true;
            out.push(c);
        } else if start {
            out.extend(c.to_uppercase());
            start = false;
        } else {
            out.extend(c.to_lowercase());
        }
    }
    out
}

fn round_half_up(x: f64, places: i64) -> f64 {
    let factor = 10f64.powi(places.clamp(-300, 300) as i32);
    let y = x * factor;
    let r = if y >= 0.0 { (y + 0.5).floor() } else { -((-y + 0.5).floor()) };
    r / factor
}

fn random_f64() -> f64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static STATE: AtomicU64 = AtomicU64::new(0x9E37_79B9_7F4A_7C15);
    // splitmix64 over a shared counter: good enough for RANDOM(), lock-free.
    let mut z = STATE.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed) ^ now_ms() as u64;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

fn hex_decode(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok()).collect()
}

fn time_unit_ms(unit: &str) -> Result<i64, EvalError> {
    Ok(match unit.to_ascii_uppercase().trim_end_matches('S') {
        "MILLISECOND" => 1,
        "SECOND" => 1_000,
        "MINUTE" => 60_000,
        "HOUR" => 3_600_000,
        "DAY" => 86_400_000,
        other => {
            return Err(eval_err(format!("unknown time unit {other}: MILLISECONDS, SECONDS, MINUTES, HOURS or DAYS")));
        }
    })
}

/// A zone as seconds east of UTC: `UTC`, `Z`, `GMT`, `+02:00`, `-0530`, `UTC+1`.
fn parse_zone(zone: &str) -> Result<i64, EvalError> {
    let z = zone.trim();
    let rest = z.strip_prefix("UTC").or_else(|| z.strip_prefix("GMT")).unwrap_or(z);
    if rest.is_empty() || rest == "Z" {
        return Ok(0);
    }
    let unsupported = || {
        eval_err(format!(
            "time zone {zone} is not supported: use UTC or an offset such as +02:00 (named zones need a time zone database)"
        ))
    };
    let (sign, digits) = match rest.as_bytes().first() {
        Some(b'+') => (1, &rest[1..]),
        Some(b'-') => (-1, &rest[1..]),
        _ => return Err(unsupported()),
    };
    let digits: String = digits.chars().filter(|c| *c != ':').collect();
    let (h, m) = match digits.len() {
        1 | 2 => (digits.parse::<i64>().map_err(|_| unsupported())?, 0),
        4 => (
            digits[..2].parse::<i64>().map_err(|_| unsupported())?,
            digits[2..].parse::<i64>().map_err(|_| unsupported())?,
        ),
        _ => return Err(unsupported()),
    };
    if h > 18 || m > 59 {
        return Err(unsupported());
    }
    Ok(sign * (h * 3600 + m * 60))
}

/// `2020-01-31T10:00:00[.sss][Z|±hh:mm]` (T or space) as milliseconds since the epoch; a
/// missing zone is UTC.
pub fn parse_iso_timestamp(text: &str) -> Option<i64> {
    let t = text.trim();
    let (date, rest) = t.split_at(t.find(['T', ' ']).unwrap_or(t.len()));
    let days = i64::from(parse_iso_date(date)?);
    let rest = rest.get(1..).unwrap_or("");
    if rest.is_empty() {
        return Some(days * 86_400_000);
    }
    let zone_at = rest.find(['Z', '+', '-']).unwrap_or(rest.len());
    let time = i64::from(parse_iso_time(&rest[..zone_at])?);
    let offset = if zone_at < rest.len() { parse_zone(&rest[zone_at..]).ok()? } else { 0 };
    Some(days * 86_400_000 + time - offset * 1000)
}

/// `YYYY-MM-DD` as days since the epoch.
pub fn parse_iso_date(text: &str) -> Option<i32> {
    let mut parts = text.trim().splitn(3, '-');
    let y: i64 = parts.next()?.parse().ok()?;
    let m: u32 = parts.next()?.parse().ok()?;
    let d: u32 = parts.next()?.parse().ok()?;
    if !(1..=12).contains(&m) || d == 0 || d > days_in_month(y, m) {
        return None;
    }
    i32::try_from(days_from_civil(y, m, d)).ok()
}

/// `HH:MM[:SS[.sss]]` as milliseconds since midnight.
pub fn parse_iso_time(text: &str) -> Option<i32> {
    let mut parts = text.trim().splitn(3, ':');
    let h: i32 = parts.next()?.parse().ok()?;
    let m: i32 = parts.next()?.parse().ok()?;
    let (s, ms) = match parts.next() {
        None => (0, 0),
        Some(sec) => {
            let (whole, frac) = sec.split_once('.').unwrap_or((sec, ""));
            let frac: String = frac.chars().chain(std::iter::repeat('0')).take(3).collect();
            (whole.parse().ok()?, frac.parse().ok()?)
        }
    };
    if !(0..24).contains(&h) || !(0..60).contains(&m) || !(0..60).contains(&s) {
        return None;
    }
    Some(((h * 60 + m) * 60 + s) * 1000 + ms)
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if is_leap(y) => 29,
        _ => 28,
    }
}

/// Parses `text` with a Java date pattern as UTC milliseconds since the epoch (the
/// `TIMESTAMP_FORMAT` of a source).
pub(crate) fn parse_with_pattern(text: &str, pattern: &str) -> Result<i64, EvalError> {
    DatePattern::compile(pattern)?.parse(text, 0)
}

/// Most letters of a date pattern.
const DATE_PATTERN_CHARS_MAX: usize = 256;

/// A Java `DateTimeFormatter` pattern: y, M (MMM names), d, H, h, m, s, S, a, E, X/x/Z (offsets),
/// quoted literals.
struct DatePattern {
    items: Vec<(char, usize)>,
}

const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];

impl DatePattern {
    fn compile(pattern: &str) -> Result<DatePattern, EvalError> {
        if pattern.len() > DATE_PATTERN_CHARS_MAX {
            return Err(eval_err(format!("date pattern longer than {DATE_PATTERN_CHARS_MAX} characters")));
        }
        let chars: Vec<char> = pattern.chars().collect();
        let mut items = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            if c == '\'' {
                // 'literal' ('' is a quote)
                let mut j = i + 1;
                if chars.get(j) == Some(&'\'') {
                    items.push(('\0', '\'' as usize));
                    i += 2;
                    continue;
                }
                while j < chars.len() && chars[j] != '\'' {
                    items.push(('\0', chars[j] as usize));
                    j += 1;
                }
                i = j + 1;
                continue;
            }
            if c.is_ascii_alphabetic() {
                if !"yuMdHhmsSaEXxZ".contains(c) {
                    return Err(eval_err(format!("unsupported letter {c} in date pattern {pattern}")));
                }
                let mut n = 1;
                while chars.get(i + n) == Some(&c) {
                    n += 1;
                }
                items.push((c, n));
                i += n;
            } else {
                items.push(('\0', c as usize));
                i += 1;
            }
        }
        Ok(DatePattern { items })
    }

    /// Formats local milliseconds (already shifted by `offset_s`).
    fn format(&self, local_ms: i64, offset_s: i64) -> String {
        let days = local_ms.div_euclid(86_400_000);
        let ms = local_ms.rem_euclid(86_400_000);
        let (y, mo, d) = crate::value::civil_from_days(days);
        let (h, mi, s, milli) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000);
        let mut out = String::new();
        for &(c, n) in &self.items {
            match c {
                '\0' => out.push(char::from_u32(n as u32).unwrap_or('?')),
                'y' | 'u' if n == 2 => out.push_str(&format!("{:02}", y.rem_euclid(100))),
                'y' | 'u' => out.push_str(&format!("{y:0n$}")),
                'M' if n >= 4 => out.push_str(full_month(mo)),
                'M' if n == 3 => out.push_str(MONTHS[mo as usize - 1]),
                'M' => out.push_str(&format!("{mo:0n$}")),
                'd' => out.push_str(&format!("{d:0n$}")),
                'H' => out.push_str(&format!("{h:0n$}")),
                'h' => out.push_str(&format!("{:0n$}", if h % 12 == 0 { 12 } else { h % 12 })),
                'm' => out.push_str(&format!("{mi:0n$}")),
                's' => out.push_str(&format!("{s:0n$}")),
                'S' => {
                    let digits = format!("{milli:03}000000");
                    out.push_str(&digits[..n.min(9)]);
                }
                'a' => out.push_str(if h < 12 { "AM" } else { "PM" }),
                'E' => out.push_str(WEEKDAYS[days.rem_euclid(7) as usize]),
                _ => {
                    // X, x, Z: the offset.
                    if offset_s == 0 && c == 'X' {
                        out.push('Z');
                    } else {
                        let sign = if offset_s < 0 { '-' } else { '+' };
                        let (oh, om) = (offset_s.abs() / 3600, offset_s.abs() / 60 % 60);
                        if n >= 3 || c == 'Z' && n == 5 {
                            out.push_str(&format!("{sign}{oh:02}:{om:02}"));
                        } else {
                            out.push_str(&format!("{sign}{oh:02}{om:02}"));
                        }
                    }
                }
            }
        }
        out
    }

    /// Parses text into milliseconds since the epoch, reading fields as local time at
    /// `offset_s` unless the text carries an offset.
    fn parse(&self, text: &str, offset_s: i64) -> Result<i64, EvalError> {
        let fail = || eval_err(format!("cannot parse {text:?} with the pattern"));
        let chars: Vec<char> = text.chars().collect();
        let mut pos = 0;
        let (mut y, mut mo, mut d, mut h, mut mi, mut s, mut ms) = (1970i64, 1u32, 1u32, 0i64, 0i64, 0i64, 0i64);
        let mut pm: Option<bool> = None;
        let mut offset = offset_s;
        let number = |pos: &mut usize, max: usize| -> Result<i64, EvalError> {
            let start = *pos;
            if chars.get(*pos) == Some(&'-') || chars.get(*pos) == Some(&'+') {
                *pos += 1;
            }
            while *pos < chars.len() && chars[*pos].is_ascii_digit() && *pos - start < max {
                *pos += 1;
            }
            chars[start..*pos].iter().collect::<String>().parse().map_err(|_| fail())
        };
        for (i, &(c, n)) in self.items.iter().enumerate() {
            // A numeric field followed directly by another numeric field takes exactly n digits.
            let adjacent = self.items.get(i + 1).is_some_and(|(next, _)| *next != '\0');
            let width = if adjacent { n } else { 19 };
            match c {
                '\0' => {
                    if chars.get(pos) != char::from_u32(n as u32).as_ref() {
                        return Err(fail());
                    }
                    pos += 1;
                }
                'y' | 'u' => {
                    y = number(&mut pos, if n == 2 { 2 } else { width })?;
                    if n == 2 {
                        y += 2000;
                    }
                }
                'M' if n >= 3 => {
                    let word: String = chars[pos..].iter().take_while(|c| c.is_ascii_alphabetic()).collect();
                    let idx = (1..=12u32)
                        .find(|m| {
                            word.eq_ignore_ascii_case(MONTHS[*m as usize - 1])
                                || word.eq_ignore_ascii_case(full_month(*m))
                        })
                        .ok_or_else(fail)?;
                    mo = idx;
                    pos += word.chars().count();
                }
                'M' => mo = u32::try_from(number(&mut pos, width.min(2))?).map_err(|_| fail())?,
                'd' => d = u32::try_from(number(&mut pos, width.min(2))?).map_err(|_| fail())?,
                'H' | 'h' => h = number(&mut pos, width.min(2))?,
                'm' => mi = number(&mut pos, width.min(2))?,
                's' => s = number(&mut pos, width.min(2))?,
                'S' => {
                    let start = pos;
                    while pos < chars.len() && chars[pos].is_ascii_digit() && pos - start < n.max(1) {
                        pos += 1;
                    }
                    let digits: String = chars[start..pos].iter().chain(std::iter::repeat(&'0')).take(3).collect();
                    ms = digits.parse().map_err(|_| fail())?;
                }
                'a' => {
                    let word: String = chars[pos..].iter().take(2).collect();
                    pm = Some(word.eq_ignore_ascii_case("PM"));
                    pos += 2;
                }
                'E' => pos += chars[pos..].iter().take_while(|c| c.is_ascii_alphabetic()).count(),
                _ => {
                    let rest: String = chars[pos..].iter().collect();
                    if rest.starts_with('Z') {
                        offset = 0;
                        pos += 1;
                    } else {
                        let len = rest.chars().take_while(|c| matches!(c, '+' | '-' | ':' | '0'..='9')).count();
                        offset = parse_zone(&rest[..len]).map_err(|_| fail())?;
                        pos += len;
                    }
                }
            }
        }
        if pos != chars.len() {
            return Err(fail());
        }
        if let Some(pm) = pm {
            h = h % 12 + if pm { 12 } else { 0 };
        }
        if !(1..=12).contains(&mo)
            || d == 0
            || d > days_in_month(y, mo)
            || !(0..24).contains(&h)
            || !(0..60).contains(&mi)
            || !(0..60).contains(&s)
        {
            return Err(fail());
        }
        let days = days_from_civil(y, mo, d);
        Ok(((days * 24 + h) * 60 + mi) * 60_000 + s * 1000 + ms - offset * 1000)
    }
}

fn full_month(m: u32) -> &'static str {
    [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ][m as usize - 1]
}

/// A JSONPath subset as ksqlDB's EXTRACTJSONFIELD takes it: `$.a.b`, `$['a']`, `$.list[0]`.
fn json_path<'a>(doc: &'a serde_json::Value, path: &str) -> Result<Option<&'a serde_json::Value>, EvalError> {
    let Some(mut rest) = path.trim().strip_prefix('$') else {
        return Err(eval_err(format!("JSONPath {path} must start with $")));
    };
    let mut cur = doc;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            let Some(next) = cur.get(&r[..end]) else { return Ok(None) };
            cur = next;
            rest = &r[end..];
        } else if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']').ok_or_else(|| eval_err(format!("unclosed [ in JSONPath {path}")))?;
            let inner = r[..end].trim();
            let next = if let Some(key) = inner.strip_prefix('\'').and_then(|k| k.strip_suffix('\'')) {
                cur.get(key)
            } else if let Some(key) = inner.strip_prefix('"').and_then(|k| k.strip_suffix('"')) {
                cur.get(key)
            } else {
                let i: usize =
                    inner.parse().map_err(|_| eval_err(format!("bad index [{inner}] in JSONPath {path}")))?;
                cur.get(i)
            };
            let Some(next) = next else { return Ok(None) };
            cur = next;
            rest = &r[end + 1..];
        } else {
            return Err(eval_err(format!("unsupported JSONPath {path}")));
        }
    }
    Ok(Some(cur))
}

/// The parts of a URL (RFC 3986 shape, no normalisation).
struct Url {
    scheme: Option<String>,
    host: Option<String>,
    port: Option<i32>,
    path: String,
    query: Option<String>,
    fragment: Option<String>,
}

impl Url {
    fn parse(text: &str) -> Option<Url> {
        let (rest, fragment) = match text.split_once('#') {
            Some((r, f)) => (r, Some(f.to_string())),
            None => (text, None),
        };
        let (rest, query) = match rest.split_once('?') {
            Some((r, q)) => (r, Some(q.to_string())),
            None => (rest, None),
        };
        let (scheme, rest) = match rest.split_once("://") {
            Some((s, r)) if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)) => {
                (Some(s.to_string()), r)
            }
            _ => (None, rest),
        };
        let (authority, path) = if scheme.is_some() {
            let end = rest.find('/').unwrap_or(rest.len());
            (Some(&rest[..end]), rest[end..].to_string())
        } else {
            (None, rest.to_string())
        };
        let (host, port) = match authority {
            Some(a) => {
                let a = a.rsplit_once('@').map(|(_, h)| h).unwrap_or(a);
                match a.rsplit_once(':') {
                    Some((h, p)) if !h.ends_with(']') || a.starts_with('[') => {
                        (Some(h.to_string()), Some(p.parse().ok()?))
                    }
                    _ => (Some(a.to_string()), None),
                }
            }
            None => (None, None),
        };
        Some(Url { scheme, host, port, path, query, fragment })
    }
}

fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'*' => out.push(b as char),
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                out.push(u8::from_str_radix(text.get(i + 1..i + 3)?, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use crate::expr::{Scope, compile};
    use crate::parser::parse_expression;
    use crate::value::Value;

    fn eval(sql: &str) -> Value {
        let e = parse_expression(sql).unwrap();
        compile(&e, &Scope::default())
            .unwrap_or_else(|err| panic!("{sql}: {err}"))
            .eval(&[])
            .unwrap_or_else(|err| panic!("{sql}: {err}"))
    }

    fn s(sql: &str) -> String {
        match eval(sql) {
            Value::String(s) => s.to_string(),
            other => panic!("{sql} gave {other:?}"),
        }
    }

    #[test]
    fn strings() {
        assert_eq!(s("UCASE('abc')"), "ABC");
        assert_eq!(s("INITCAP('hello wORLD')"), "Hello World");
        assert_eq!(eval("LEN('héllo')"), Value::Int(5));
        assert_eq!(s("SUBSTRING('hello', 2, 3)"), "ell");
        assert_eq!(s("SUBSTRING('hello', -3)"), "llo");
        assert_eq!(s("CONCAT('a', NULL, 'b')"), "ab");
        assert_eq!(s("CONCAT_WS('-', 'a', NULL, 'b')"), "a-b");
        assert_eq!(s("REPLACE('aXbX', 'X', 'yy')"), "ayybyy");
        assert_eq!(eval("INSTR('hello', 'l')"), Value::Int(3));
        assert_eq!(s("LPAD('7', 3, '0')"), "007");
        assert_eq!(s("RPAD('ab', 5, 'xy')"), "abxyx");
        assert_eq!(s("ARRAY_JOIN(SPLIT('a,b,c', ','), '|')"), "a|b|c");
        assert_eq!(s("MASK('Ab-9')"), "Xx-n");
        assert_eq!(s("ENCODE('hi', 'utf8', 'hex')"), "6869");
        assert_eq!(eval("UCASE(NULL)"), Value::Null);
    }

    #[test]
    fn math_and_nulls() {
        assert_eq!(eval("ABS(-3)"), Value::Int(3));
        assert_eq!(s("CAST(ROUND(2.345, 2) AS STRING)"), "2.350");
        assert_eq!(eval("ROUND(2.5e0)"), Value::Bigint(3));
        assert_eq!(eval("CEIL(1.2e0)"), Value::Double(2.0));
        assert_eq!(s("CAST(FLOOR(-1.5) AS STRING)"), "-2");
        assert_eq!(eval("GREATEST(1, 5, NULL, 3)"), Value::Int(5));
        assert_eq!(eval("COALESCE(NULL, 2, 3)"), Value::Int(2));
        assert_eq!(eval("IFNULL(NULL, 'x')"), Value::string("x"));
        assert_eq!(eval("NULLIF(1, 1)"), Value::Null);
        assert_eq!(eval("SIGN(-2)"), Value::Int(-1));
        assert_eq!(eval("POWER(2, 10)"), Value::Double(1024.0));
    }

    #[test]
    fn dates_and_times() {
        assert_eq!(
            s("FORMAT_TIMESTAMP(FROM_UNIXTIME(1600000000123), 'yyyy-MM-dd HH:mm:ss.SSS')"),
            "2020-09-13 12:26:40.123"
        );
        assert_eq!(
            s("FORMAT_TIMESTAMP(FROM_UNIXTIME(1600000000123), 'yyyy-MM-dd''T''HH:mm:ssXXX', '+02:00')"),
            "2020-09-13T14:26:40+02:00"
        );
        assert_eq!(
            eval("UNIX_TIMESTAMP(PARSE_TIMESTAMP('2020-09-13 12:26:40.123', 'yyyy-MM-dd HH:mm:ss.SSS'))"),
            Value::Bigint(1_600_000_000_123)
        );
        assert_eq!(
            eval("STRINGTOTIMESTAMP('2020-09-13T14:26:40+0200', 'yyyy-MM-dd''T''HH:mm:ssZ')"),
            Value::Bigint(1_600_000_000_000)
        );
        assert_eq!(eval("STRINGTOTIMESTAMP('13 Sep 2020', 'dd MMM yyyy')"), Value::Bigint(1_599_955_200_000));
        assert_eq!(s("FORMAT_DATE(PARSE_DATE('2024-02-29', 'yyyy-MM-dd'), 'dd/MM/yyyy')"), "29/02/2024");
        assert_eq!(eval("UNIX_DATE(PARSE_DATE('1970-01-02', 'yyyy-MM-dd'))"), Value::Int(1));
        assert_eq!(
            s("CAST(TIMESTAMPADD(HOURS, 2, CAST('2020-01-01T00:00:00' AS TIMESTAMP)) AS STRING)"),
            "2020-01-01T02:00:00.000"
        );
        assert_eq!(s("FORMAT_TIME(PARSE_TIME('10:11:12', 'HH:mm:ss'), 'hh:mm a')"), "10:11 AM");
        let bad =
            compile(&parse_expression("PARSE_DATE('2023-02-30', 'yyyy-MM-dd')").unwrap(), &Scope::default()).unwrap();
        assert!(bad.eval(&[]).is_err());
        let zone = compile(
            &parse_expression("FORMAT_TIMESTAMP(FROM_UNIXTIME(0), 'HH', 'Europe/Paris')").unwrap(),
            &Scope::default(),
        )
        .unwrap();
        assert!(zone.eval(&[]).unwrap_err().0.contains("time zone"));
    }

    #[test]
    fn json_collections_urls() {
        assert_eq!(s(r#"EXTRACTJSONFIELD('{"a": {"b": [10, "x"]}}', '$.a.b[1]')"#), "x");
        assert_eq!(s(r#"EXTRACTJSONFIELD('{"a": {"b": [10, "x"]}}', '$.a.b[0]')"#), "10");
        assert_eq!(eval(r#"EXTRACTJSONFIELD('{"a": 1}', '$.z')"#), Value::Null);
        assert_eq!(eval(r#"JSON_ARRAY_LENGTH('[1, 2, 3]')"#), Value::Int(3));
        assert_eq!(eval(r#"IS_JSON_STRING('{bad')"#), Value::Boolean(false));
        assert_eq!(s(r#"ARRAY_JOIN(JSON_KEYS('{"a": 1, "b": 2}'))"#), "a,b");
        assert_eq!(eval("ARRAY_LENGTH(ARRAY_DISTINCT(ARRAY[1, 2, 1]))"), Value::Int(2));
        assert_eq!(eval("ARRAY_CONTAINS(ARRAY[1, 2], 2)"), Value::Boolean(true));
        assert_eq!(eval("ARRAY_MAX(ARRAY[3, 9, 1])"), Value::Int(9));
        assert_eq!(s("ARRAY_JOIN(ARRAY_SORT(ARRAY['b', 'a', 'c'], 'DESC'))"), "c,b,a");
        assert_eq!(eval("SLICE(ARRAY[1, 2, 3, 4], 2, 3)[2]"), Value::Int(3));
        assert_eq!(eval("MAP_KEYS(MAP('a' := 1))[1]"), Value::string("a"));
        assert_eq!(eval("AS_MAP(ARRAY['x'], ARRAY[5])['x']"), Value::Int(5));
        assert_eq!(eval("ENTRIES(MAP('b' := 2, 'a' := 1), true)[1]->K"), Value::string("a"));
        assert_eq!(s("ELT(2, 'a', 'b')"), "b");
        assert_eq!(eval("FIELD('b', 'a', 'b')"), Value::Int(2));
        assert_eq!(s("URL_EXTRACT_HOST('https://example.com:8443/a/b?q=1&x=y%20z#frag')"), "example.com");
        assert_eq!(eval("URL_EXTRACT_PORT('https://example.com:8443/a')"), Value::Int(8443));
        assert_eq!(s("URL_EXTRACT_PATH('https://example.com:8443/a/b?q=1')"), "/a/b");
        assert_eq!(s("URL_EXTRACT_PARAMETER('https://e.com/?q=1&x=y%20z', 'x')"), "y z");
        assert_eq!(s("URL_EXTRACT_PROTOCOL('https://e.com/')"), "https");
        assert_eq!(s("URL_ENCODE_PARAM('a b&c')"), "a+b%26c");
        assert_eq!(s("URL_DECODE_PARAM('a+b%26c')"), "a b&c");
    }

    #[test]
    fn wrong_arguments_are_type_errors() {
        for sql in ["UCASE(1)", "SUBSTRING('a', 'b')", "ABS('x')", "NOPE(1)", "ARRAY_MAX(1)"] {
            let e = compile(&parse_expression(sql).unwrap(), &Scope::default()).unwrap_err();
            assert!(e.0.contains("function") || e.0.contains("DESCRIBE FUNCTION"), "{sql}: {e}");
        }
        let e = compile(&parse_expression("COUNT(1)").unwrap(), &Scope::default()).unwrap_err();
        assert!(e.0.contains("aggregate"), "{e}");
    }
}
