//! Values of SQL types, as rows carry them through operators.
//!
//! Composite values share their contents (`Arc`), so copying a row into an output or a state
//! store is cheap. A STRUCT value holds its fields by position; its type carries the names.

use std::cmp::Ordering;
use std::fmt;
use std::sync::Arc;

use crate::types::{DECIMAL_PRECISION_MAX, SqlType};

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Boolean(bool),
    Int(i32),
    Bigint(i64),
    Double(f64),
    Decimal(Decimal),
    String(Arc<str>),
    Bytes(Arc<[u8]>),
    /// Milliseconds since the Unix epoch (UTC).
    Timestamp(i64),
    /// Days since the Unix epoch.
    Date(i32),
    /// Milliseconds since midnight.
    Time(i32),
    Array(Arc<[Value]>),
    /// Entries in insertion order, keys unique.
    Map(Arc<[(Value, Value)]>),
    /// Fields by position.
    Struct(Arc<[Value]>),
}

impl Value {
    pub fn string(s: &str) -> Value {
        Value::String(Arc::from(s))
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Boolean(b) => Some(*b),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// The value as an i64 for INT, BIGINT, TIMESTAMP, DATE and TIME.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(i64::from(*i)),
            Value::Bigint(i) | Value::Timestamp(i) => Some(*i),
            Value::Date(d) => Some(i64::from(*d)),
            Value::Time(t) => Some(i64::from(*t)),
            _ => None,
        }
    }

    /// Any numeric value as a double (DECIMAL rounded to the nearest double).
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Int(i) => Some(f64::from(*i)),
            Value::Bigint(i) => Some(*i as f64),
            Value::Double(d) => Some(*d),
            Value::Decimal(d) => Some(d.to_f64()),
            _ => None,
        }
    }

    /// Compares two values of the same (or numerically comparable) type; `None` when either is
    /// null or they are not comparable. Doubles compare with NaN greatest, as Java does.
    pub fn compare(&self, other: &Value) -> Option<Ordering> {
        use Value::*;
        Some(match (self, other) {
            (Null, _) | (_, Null) => return None,
            (Boolean(a), Boolean(b)) => a.cmp(b),
            (Int(a), Int(b)) => a.cmp(b),
            (Bigint(a) | Timestamp(a), Bigint(b) | Timestamp(b)) => a.cmp(b),
            (Int(a), Bigint(b)) => i64::from(*a).cmp(b),
            (Bigint(a), Int(b)) => a.cmp(&i64::from(*b)),
            (Date(a), Date(b)) | (Time(a), Time(b)) => a.cmp(b),
            (String(a), String(b)) => a.cmp(b),
            (Bytes(a), Bytes(b)) => a.cmp(b),
            (Decimal(a), Decimal(b)) => a.cmp_value(b),
            (Decimal(a), Int(_) | Bigint(_)) => a.cmp_value(&self::Decimal::from_i64(other.as_i64()?)),
            (Int(_) | Bigint(_), Decimal(b)) => self::Decimal::from_i64(self.as_i64()?).cmp_value(b),
            (Double(_), _) | (_, Double(_)) => total_f64(self.as_f64()?, other.as_f64()?),
            (Array(a), Array(b)) => {
                for (x, y) in a.iter().zip(b.iter()) {
                    match x.compare(y)? {
                        Ordering::Equal => {}
                        o => return Some(o),
                    }
                }
                a.len().cmp(&b.len())
            }
            _ => return None,
        })
    }

    /// SQL equality: `None` (unknown) when either side is null.
    pub fn sql_eq(&self, other: &Value) -> Option<bool> {
        if self.is_null() || other.is_null() {
            return None;
        }
        match (self, other) {
            (Value::Map(a), Value::Map(b)) => {
                Some(a.len() == b.len() && a.iter().all(|(k, v)| b.iter().any(|(k2, v2)| k == k2 && v == v2)))
            }
            (Value::Struct(a), Value::Struct(b)) => Some(a == b),
            _ => self.compare(other).map(|o| o == Ordering::Equal),
        }
    }

    /// A hashable, comparable key for GROUP BY, joins and state stores: equal SQL values give
    /// equal keys.
    pub fn key_bytes(&self, out: &mut Vec<u8>) {
        match self {
            Value::Null => out.push(0),
            Value::Boolean(b) => out.extend_from_slice(&[1, u8::from(*b)]),
            Value::Int(i) => {
                out.push(2);
                out.extend_from_slice(&i64::from(*i).to_be_bytes());
            }
            Value::Bigint(i) | Value::Timestamp(i) => {
                out.push(2);
                out.extend_from_slice(&i.to_be_bytes());
            }
            Value::Date(d) | Value::Time(d) => {
                out.push(3);
                out.extend_from_slice(&d.to_be_bytes());
            }
            Value::Double(d) => {
                out.push(4);
                out.extend_from_slice(&d.to_bits().to_be_bytes());
            }
            Value::Decimal(d) => {
                out.push(5);
                let n = d.normalized();
                out.extend_from_slice(&n.unscaled.to_be_bytes());
                out.push(n.scale);
            }
            Value::String(s) => {
                out.push(6);
                out.extend_from_slice(&(s.len() as u64).to_be_bytes());
                out.extend_from_slice(s.as_bytes());
            }
            Value::Bytes(b) => {
                out.push(7);
                out.extend_from_slice(&(b.len() as u64).to_be_bytes());
                out.extend_from_slice(b);
            }
            Value::Array(items) | Value::Struct(items) => {
                out.push(8);
                out.extend_from_slice(&(items.len() as u64).to_be_bytes());
                items.iter().for_each(|v| v.key_bytes(out));
            }
            Value::Map(entries) => {
                out.push(9);
                out.extend_from_slice(&(entries.len() as u64).to_be_bytes());
                for (k, v) in entries.iter() {
                    k.key_bytes(out);
                    v.key_bytes(out);
                }
            }
        }
    }
}

fn total_f64(a: f64, b: f64) -> Ordering {
    a.partial_cmp(&b).unwrap_or_else(|| a.is_nan().cmp(&b.is_nan()))
}

/// A fixed-point number: `unscaled / 10^scale`, at most [`DECIMAL_PRECISION_MAX`] digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decimal {
    pub unscaled: i128,
    pub scale: u8,
}

/// 10^n for n up to 38.
fn pow10(n: u8) -> Option<i128> {
    10i128.checked_pow(u32::from(n))
}

/// Divides, rounding half away from zero (Java's HALF_UP).
fn div_half_up(n: i128, d: i128) -> i128 {
    let q = n / d;
    let r = n % d;
    if r.unsigned_abs() * 2 >= d.unsigned_abs() { q + if (n < 0) != (d < 0) { -1 } else { 1 } } else { q }
}

impl Decimal {
    pub fn from_i64(i: i64) -> Decimal {
        Decimal { unscaled: i128::from(i), scale: 0 }
    }

    /// Parses `-12.340` exactly (scale from the digits after the point).
    pub fn parse(s: &str) -> Option<Decimal> {
        let s = s.trim();
        let (negative, digits) = match s.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, s.strip_prefix('+').unwrap_or(s)),
        };
        let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
        if (int.is_empty() && frac.is_empty()) || !int.chars().chain(frac.chars()).all(|c| c.is_ascii_digit()) {
            return None;
        }
        if int.len() + frac.len() > usize::from(DECIMAL_PRECISION_MAX) + 1 {
            return None;
        }
        let mut unscaled: i128 = 0;
        for c in int.chars().chain(frac.chars()) {
            unscaled = unscaled.checked_mul(10)?.checked_add(i128::from(c as u8 - b'0'))?;
        }
        let scale = u8::try_from(frac.len()).ok()?;
        Some(Decimal { unscaled: if negative { -unscaled } else { unscaled }, scale })
    }

    pub fn to_f64(self) -> f64 {
        self.unscaled as f64 / 10f64.powi(i32::from(self.scale))
    }

    /// Digits of the unscaled value.
    pub fn precision(self) -> u8 {
        let mut n = self.unscaled.unsigned_abs();
        let mut digits = 1;
        while n >= 10 {
            n /= 10;
            digits += 1;
        }
        digits
    }

    /// The same value at `scale` (rounding half up when reducing), or `None` on overflow.
    pub fn rescale(self, scale: u8) -> Option<Decimal> {
        if scale >= self.scale {
            let factor = pow10(scale - self.scale)?;
            Some(Decimal { unscaled: self.unscaled.checked_mul(factor)?, scale })
        } else {
            let factor = pow10(self.scale - scale)?;
            Some(Decimal { unscaled: div_half_up(self.unscaled, factor), scale })
        }
    }

    /// Rescales to `(precision, scale)`; `None` when the value has more integral digits than fit.
    pub fn fit(self, precision: u8, scale: u8) -> Option<Decimal> {
        let d = self.rescale(scale)?;
        if d.precision() > precision && d.unscaled != 0 { None } else { Some(d) }
    }

    fn normalized(self) -> Decimal {
        let mut d = self;
        while d.scale > 0 && d.unscaled % 10 == 0 {
            d.unscaled /= 10;
            d.scale -= 1;
        }
        d
    }

    pub fn cmp_value(&self, other: &Decimal) -> Ordering {
        let scale = self.scale.max(other.scale);
        match (self.rescale(scale), other.rescale(scale)) {
            (Some(a), Some(b)) => a.unscaled.cmp(&b.unscaled),
            _ => total_f64(self.to_f64(), other.to_f64()),
        }
    }

    pub fn checked_add(self, other: Decimal) -> Option<Decimal> {
        let scale = self.scale.max(other.scale);
        Some(Decimal { unscaled: self.rescale(scale)?.unscaled.checked_add(other.rescale(scale)?.unscaled)?, scale })
    }

    pub fn checked_sub(self, other: Decimal) -> Option<Decimal> {
        self.checked_add(Decimal { unscaled: other.unscaled.checked_neg()?, scale: other.scale })
    }

    pub fn checked_mul(self, other: Decimal) -> Option<Decimal> {
        Some(Decimal {
            unscaled: self.unscaled.checked_mul(other.unscaled)?,
            scale: self.scale.checked_add(other.scale).filter(|s| *s <= DECIMAL_PRECISION_MAX)?,
        })
    }

    /// `self / other` at `scale` digits after the point, rounding half up; `None` on division
    /// by zero or overflow.
    pub fn checked_div(self, other: Decimal, scale: u8) -> Option<Decimal> {
        if other.unscaled == 0 {
            return None;
        }
        // (a / 10^sa) / (b / 10^sb) = a * 10^(scale + sb - sa) / b, at `scale`.
        let shift = i32::from(scale) + i32::from(other.scale) - i32::from(self.scale);
        let (n, d) = if shift >= 0 {
            (self.unscaled.checked_mul(pow10(u8::try_from(shift).ok()?)?)?, other.unscaled)
        } else {
            (self.unscaled, other.unscaled.checked_mul(pow10(u8::try_from(-shift).ok()?)?)?)
        };
        Some(Decimal { unscaled: div_half_up(n, d), scale })
    }

    pub fn checked_rem(self, other: Decimal) -> Option<Decimal> {
        let scale = self.scale.max(other.scale);
        let (a, b) = (self.rescale(scale)?, other.rescale(scale)?);
        if b.unscaled == 0 {
            return None;
        }
        Some(Decimal { unscaled: a.unscaled % b.unscaled, scale })
    }
}

impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let digits = self.unscaled.unsigned_abs().to_string();
        let scale = usize::from(self.scale);
        let sign = if self.unscaled < 0 { "-" } else { "" };
        if scale == 0 {
            return write!(f, "{sign}{digits}");
        }
        let padded = format!("{digits:0>width$}", width = scale + 1);
        let (int, frac) = padded.split_at(padded.len() - scale);
        write!(f, "{sign}{int}.{frac}")
    }
}

/// Formats a DATE (days since the epoch) as `YYYY-MM-DD`.
pub fn format_date(days: i64) -> String {
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Formats a TIME (milliseconds since midnight) as `HH:MM:SS[.sss]`.
pub fn format_time(ms: i64) -> String {
    let (h, m, s, milli) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000);
    if milli == 0 { format!("{h:02}:{m:02}:{s:02}") } else { format!("{h:02}:{m:02}:{s:02}.{milli:03}") }
}

/// Formats a TIMESTAMP as ksqlDB prints it: `YYYY-MM-DDTHH:MM:SS.sss` (UTC).
pub fn format_timestamp(ms: i64) -> String {
    let days = ms.div_euclid(86_400_000);
    let in_day = ms.rem_euclid(86_400_000);
    let (h, m, s, milli) = (in_day / 3_600_000, in_day / 60_000 % 60, in_day / 1000 % 60, in_day % 1000);
    format!("{}T{h:02}:{m:02}:{s:02}.{milli:03}", format_date(days))
}

/// Howard Hinnant's algorithm: days since 1970-01-01 to (year, month, day), proleptic Gregorian.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// (year, month, day) to days since 1970-01-01.
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

impl fmt::Display for Value {
    /// The text form used by CAST to STRING and by DELIMITED output.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => f.write_str("null"),
            Value::Boolean(b) => write!(f, "{b}"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Bigint(i) => write!(f, "{i}"),
            Value::Double(d) => f.write_str(&format_double(*d)),
            Value::Decimal(d) => write!(f, "{d}"),
            Value::String(s) => f.write_str(s),
            Value::Bytes(b) => f.write_str(&base64(b)),
            Value::Timestamp(t) => f.write_str(&format_timestamp(*t)),
            Value::Date(d) => f.write_str(&format_date(i64::from(*d))),
            Value::Time(t) => f.write_str(&format_time(i64::from(*t))),
            Value::Array(items) => {
                f.write_str("[")?;
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{v}")?;
                }
                f.write_str("]")
            }
            Value::Map(entries) => {
                f.write_str("{")?;
                for (i, (k, v)) in entries.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{k}={v}")?;
                }
                f.write_str("}")
            }
            Value::Struct(fields) => {
                f.write_str("Struct{")?;
                for (i, v) in fields.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{v}")?;
                }
                f.write_str("}")
            }
        }
    }
}

/// Java's `Double.toString` shape: always a decimal point (`1.0`), exponent for very large or
/// small magnitudes (`1.0E10`).
pub fn format_double(d: f64) -> String {
    if d.is_nan() {
        return "NaN".into();
    }
    if d.is_infinite() {
        return if d > 0.0 { "Infinity".into() } else { "-Infinity".into() };
    }
    let abs = d.abs();
    if abs != 0.0 && !(1e-3..1e7).contains(&abs) {
        let s = format!("{d:E}");
        let (mantissa, exp) = s.split_once('E').unwrap_or((&s, "0"));
        let mantissa = if mantissa.contains('.') { mantissa.to_string() } else { format!("{mantissa}.0") };
        return format!("{mantissa}E{exp}");
    }
    let s = format!("{d}");
    if s.contains('.') { s } else { format!("{s}.0") }
}

/// Standard base64 with padding (how ksqlDB shows BYTES as text).
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes standard base64 (padding optional); `None` on invalid input.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let text = text.trim_end_matches('=');
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for c in text.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

/// The default value type of a type, for documentation and tests.
pub fn type_of(v: &Value) -> Option<SqlType> {
    Some(match v {
        Value::Null => return None,
        Value::Boolean(_) => SqlType::Boolean,
        Value::Int(_) => SqlType::Int,
        Value::Bigint(_) => SqlType::Bigint,
        Value::Double(_) => SqlType::Double,
        Value::Decimal(d) => SqlType::Decimal { precision: d.precision().max(d.scale), scale: d.scale },
        Value::String(_) => SqlType::String,
        Value::Bytes(_) => SqlType::Bytes,
        Value::Timestamp(_) => SqlType::Timestamp,
        Value::Date(_) => SqlType::Date,
        Value::Time(_) => SqlType::Time,
        Value::Array(_) | Value::Map(_) | Value::Struct(_) => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_parse_print_and_compute_exactly() {
        let a = Decimal::parse("12.345").unwrap();
        assert_eq!(a.to_string(), "12.345");
        assert_eq!(Decimal::parse("-0.05").unwrap().to_string(), "-0.05");
        assert_eq!(a.rescale(2).unwrap().to_string(), "12.35");
        assert_eq!(Decimal::parse("-12.345").unwrap().rescale(2).unwrap().to_string(), "-12.35");
        let b = Decimal::parse("0.655").unwrap();
        assert_eq!(a.checked_add(b).unwrap().to_string(), "13.000");
        assert_eq!(a.checked_mul(b).unwrap().to_string(), "8.085975");
        assert_eq!(Decimal::from_i64(1).checked_div(Decimal::from_i64(3), 6).unwrap().to_string(), "0.333333");
        assert_eq!(Decimal::from_i64(2).checked_div(Decimal::from_i64(3), 2).unwrap().to_string(), "0.67");
        assert!(Decimal::from_i64(1).checked_div(Decimal::from_i64(0), 2).is_none());
        assert_eq!(a.fit(4, 2).unwrap().to_string(), "12.35");
        assert_eq!(Decimal::parse("123.4").unwrap().fit(4, 2), None);
        assert!(Decimal::parse("1.2.3").is_none());
        assert!(Decimal::parse(&"9".repeat(60)).is_none());
        assert_eq!(Decimal::parse("1.50").unwrap().cmp_value(&Decimal::parse("1.5").unwrap()), Ordering::Equal);
    }

    #[test]
    fn dates_and_times_round_trip() {
        assert_eq!(format_date(0), "1970-01-01");
        assert_eq!(format_date(19_000), "2022-01-08");
        assert_eq!(days_from_civil(2022, 1, 8), 19_000);
        assert_eq!(days_from_civil(1969, 12, 31), -1);
        assert_eq!(format_timestamp(1_600_000_000_123), "2020-09-13T12:26:40.123");
        assert_eq!(format_timestamp(-1), "1969-12-31T23:59:59.999");
        assert_eq!(format_time(3_723_004), "01:02:03.004");
    }

    #[test]
    fn doubles_print_like_java() {
        assert_eq!(format_double(1.0), "1.0");
        assert_eq!(format_double(0.1), "0.1");
        assert_eq!(format_double(1e10), "1.0E10");
        assert_eq!(format_double(-2.5e-5), "-2.5E-5");
    }

    #[test]
    fn comparisons_and_keys() {
        assert_eq!(Value::Int(1).compare(&Value::Bigint(2)), Some(Ordering::Less));
        assert_eq!(Value::Int(1).compare(&Value::Double(1.0)), Some(Ordering::Equal));
        assert_eq!(Value::Null.sql_eq(&Value::Null), None);
        let mut a = Vec::new();
        let mut b = Vec::new();
        Value::Int(5).key_bytes(&mut a);
        Value::Bigint(5).key_bytes(&mut b);
        assert_eq!(a, b, "INT 5 and BIGINT 5 group together");
        assert_eq!(base64(b"hello"), "aGVsbG8=");
        assert_eq!(base64_decode("aGVsbG8=").unwrap(), b"hello");
    }
}
