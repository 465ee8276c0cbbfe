//! Compact binary encoding of values and rows for state stores (aggregates, windows, joins).
//!
//! Every value is self-describing: a tag byte, then its payload. Integers (INT, BIGINT,
//! TIMESTAMP, DATE, TIME) are zigzag LEB128 varints, DOUBLE is its 8 IEEE 754 bytes (NaN
//! payloads kept), DECIMAL is its 16-byte unscaled `i128` and a scale byte, STRING and BYTES
//! are a varint length and the bytes, and ARRAY, MAP and STRUCT a varint count and their
//! elements (a MAP's as key, value pairs). A row is a varint count and its values.
//!
//! Decoding reads from a `&mut &[u8]`, advancing it past what it read, and never trusts the
//! input: truncated or corrupt bytes are a [`CodecError`], never a panic; a length or count is
//! checked against the bytes that remain before anything is allocated for it; and nesting is
//! bounded by [`NESTING_DEPTH_MAX`].
//!
//! The framing helpers ([`put_u64`], [`put_i64`], [`put_bytes`] and their `get_` pairs) are
//! for the runtime's store keys and entries. The fixed-width integers are big-endian and
//! order-preserving (`put_i64` flips the sign bit), so encoded keys sort like their numbers.

use std::sync::Arc;

use crate::types::DECIMAL_PRECISION_MAX;
use crate::value::{Decimal, Value};

/// Deepest nesting of ARRAY, MAP and STRUCT values [`decode_value`] accepts (levels); deeper
/// input is refused as corrupt rather than recursed into.
pub const NESTING_DEPTH_MAX: usize = 64;

/// Most bytes of a LEB128 varint holding a `u64` (bytes).
pub const VARINT_BYTES_MAX: usize = 10;

/// Most elements a decoder reserves room for ahead of reading them (elements); longer
/// sequences grow as their elements are actually read, so corrupt counts cost nothing.
pub const DECODE_PREALLOC_MAX: usize = 1024;

/// Truncated or corrupt encoded bytes.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct CodecError(pub String);

fn err(message: impl Into<String>) -> CodecError {
    CodecError(message.into())
}

const TAG_NULL: u8 = 0;
const TAG_FALSE: u8 = 1;
const TAG_TRUE: u8 = 2;
const TAG_INT: u8 = 3;
const TAG_BIGINT: u8 = 4;
const TAG_DOUBLE: u8 = 5;
const TAG_DECIMAL: u8 = 6;
const TAG_STRING: u8 = 7;
const TAG_BYTES: u8 = 8;
const TAG_TIMESTAMP: u8 = 9;
const TAG_DATE: u8 = 10;
const TAG_TIME: u8 = 11;
const TAG_ARRAY: u8 = 12;
const TAG_MAP: u8 = 13;
const TAG_STRUCT: u8 = 14;

/// Appends `v` as an unsigned LEB128 varint (1 to [`VARINT_BYTES_MAX`] bytes).
pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Reads an unsigned LEB128 varint; overlong or truncated encodings are errors.
pub fn get_varint(buf: &mut &[u8]) -> Result<u64, CodecError> {
    let mut v: u64 = 0;
    for i in 0..VARINT_BYTES_MAX {
        let Some((&b, rest)) = buf.split_first() else {
            return Err(err("truncated varint"));
        };
        *buf = rest;
        if i == VARINT_BYTES_MAX - 1 && b > 1 {
            return Err(err("varint overflows 64 bits"));
        }
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(err("varint longer than 10 bytes"))
}

fn put_zigzag(out: &mut Vec<u8>, v: i64) {
    put_varint(out, ((v << 1) ^ (v >> 63)) as u64);
}

fn get_zigzag(buf: &mut &[u8]) -> Result<i64, CodecError> {
    let u = get_varint(buf)?;
    Ok(((u >> 1) as i64) ^ -((u & 1) as i64))
}

fn get_zigzag_i32(buf: &mut &[u8], what: &str) -> Result<i32, CodecError> {
    let v = get_zigzag(buf)?;
    i32::try_from(v).map_err(|_| err(format!("{what} value {v} out of range")))
}

/// Takes exactly `n` bytes off the front of `buf`.
fn take<'a>(buf: &mut &'a [u8], n: usize, what: &str) -> Result<&'a [u8], CodecError> {
    if buf.len() < n {
        return Err(err(format!("truncated {what}: needs {n} bytes, {} left", buf.len())));
    }
    let (head, rest) = buf.split_at(n);
    *buf = rest;
    Ok(head)
}

fn take_array<const N: usize>(buf: &mut &[u8], what: &str) -> Result<[u8; N], CodecError> {
    let bytes = take(buf, N, what)?;
    let mut a = [0u8; N];
    a.copy_from_slice(bytes);
    Ok(a)
}

/// Appends `v` as 8 big-endian bytes (byte order matches numeric order).
pub fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_be_bytes());
}

/// Reads 8 big-endian bytes written by [`put_u64`].
pub fn get_u64(buf: &mut &[u8]) -> Result<u64, CodecError> {
    Ok(u64::from_be_bytes(take_array(buf, "u64")?))
}

/// Appends `v` as 8 big-endian bytes with the sign bit flipped, so byte order matches numeric
/// order (negative before positive).
pub fn put_i64(out: &mut Vec<u8>, v: i64) {
    put_u64(out, (v as u64) ^ (1 << 63));
}

/// Reads an `i64` written by [`put_i64`].
pub fn get_i64(buf: &mut &[u8]) -> Result<i64, CodecError> {
    Ok((get_u64(buf)? ^ (1 << 63)) as i64)
}

/// Appends `bytes` with a varint length prefix.
pub fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// Reads bytes written by [`put_bytes`], borrowing them from `buf`.
pub fn get_bytes<'a>(buf: &mut &'a [u8]) -> Result<&'a [u8], CodecError> {
    let n = get_len(buf, 1, "byte string")?;
    take(buf, n, "byte string")
}

/// Reads a length or count whose items take at least `min_item_bytes` each, refusing counts
/// the remaining bytes cannot hold (so nothing is allocated for a corrupt count).
fn get_len(buf: &mut &[u8], min_item_bytes: usize, what: &str) -> Result<usize, CodecError> {
    let n = get_varint(buf)?;
    match usize::try_from(n) {
        Ok(n) if n.checked_mul(min_item_bytes).is_some_and(|b| b <= buf.len()) => Ok(n),
        _ => Err(err(format!("{what} of {n} items exceeds the {} bytes left", buf.len()))),
    }
}

/// Appends the self-describing encoding of `v`.
pub fn encode_value(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Null => out.push(TAG_NULL),
        Value::Boolean(b) => out.push(if *b { TAG_TRUE } else { TAG_FALSE }),
        Value::Int(i) => {
            out.push(TAG_INT);
            put_zigzag(out, i64::from(*i));
        }
        Value::Bigint(i) => {
            out.push(TAG_BIGINT);
            put_zigzag(out, *i);
        }
        Value::Double(d) => {
            out.push(TAG_DOUBLE);
            out.extend_from_slice(&d.to_bits().to_le_bytes());
        }
        Value::Decimal(d) => {
            out.push(TAG_DECIMAL);
            out.extend_from_slice(&d.unscaled.to_le_bytes());
            out.push(d.scale);
        }
        Value::String(s) => {
            out.push(TAG_STRING);
            put_bytes(out, s.as_bytes());
        }
        Value::Bytes(b) => {
            out.push(TAG_BYTES);
            put_bytes(out, b);
        }
        Value::Timestamp(t) => {
            out.push(TAG_TIMESTAMP);
            put_zigzag(out, *t);
        }
        Value::Date(d) => {
            out.push(TAG_DATE);
            put_zigzag(out, i64::from(*d));
        }
        Value::Time(t) => {
            out.push(TAG_TIME);
            put_zigzag(out, i64::from(*t));
        }
        Value::Array(items) | Value::Struct(items) => {
            out.push(if matches!(v, Value::Array(_)) { TAG_ARRAY } else { TAG_STRUCT });
            put_varint(out, items.len() as u64);
            items.iter().for_each(|item| encode_value(item, out));
        }
        Value::Map(entries) => {
            out.push(TAG_MAP);
            put_varint(out, entries.len() as u64);
            for (k, v) in entries.iter() {
                encode_value(k, out);
                encode_value(v, out);
            }
        }
    }
}

/// Reads one value written by [`encode_value`], advancing `buf` past it.
pub fn decode_value(buf: &mut &[u8]) -> Result<Value, CodecError> {
    decode_at(buf, 0)
}

fn decode_values(buf: &mut &[u8], count: usize, depth: usize) -> Result<Vec<Value>, CodecError> {
    let mut items = Vec::with_capacity(count.min(DECODE_PREALLOC_MAX));
    for _ in 0..count {
        items.push(decode_at(buf, depth)?);
    }
    Ok(items)
}

fn decode_at(buf: &mut &[u8], depth: usize) -> Result<Value, CodecError> {
    let [tag] = take_array(buf, "value tag")?;
    Ok(match tag {
        TAG_NULL => Value::Null,
        TAG_FALSE => Value::Boolean(false),
        TAG_TRUE => Value::Boolean(true),
        TAG_INT => Value::Int(get_zigzag_i32(buf, "INT")?),
        TAG_BIGINT => Value::Bigint(get_zigzag(buf)?),
        TAG_DOUBLE => Value::Double(f64::from_bits(u64::from_le_bytes(take_array(buf, "DOUBLE")?))),
        TAG_DECIMAL => {
            let unscaled = i128::from_le_bytes(take_array(buf, "DECIMAL")?);
            let [scale] = take_array(buf, "DECIMAL scale")?;
            if scale > DECIMAL_PRECISION_MAX {
                return Err(err(format!("DECIMAL scale {scale} exceeds {DECIMAL_PRECISION_MAX}")));
            }
            Value::Decimal(Decimal { unscaled, scale })
        }
        TAG_STRING => {
            let bytes = get_bytes(buf)?;
            let s = std::str::from_utf8(bytes).map_err(|e| err(format!("STRING is not UTF-8: {e}")))?;
            Value::String(Arc::from(s))
        }
        TAG_BYTES => Value::Bytes(Arc::from(get_bytes(buf)?)),
        TAG_TIMESTAMP => Value::Timestamp(get_zigzag(buf)?),
        TAG_DATE => Value::Date(get_zigzag_i32(buf, "DATE")?),
        TAG_TIME => Value::Time(get_zigzag_i32(buf, "TIME")?),
        TAG_ARRAY | TAG_STRUCT | TAG_MAP => {
            if depth >= NESTING_DEPTH_MAX {
                return Err(err(format!("values nested deeper than {NESTING_DEPTH_MAX} levels")));
            }
            if tag == TAG_MAP {
                let count = get_len(buf, 2, "MAP")?;
                let mut entries = Vec::with_capacity(count.min(DECODE_PREALLOC_MAX));
                for _ in 0..count {
                    let k = decode_at(buf, depth + 1)?;
                    let v = decode_at(buf, depth + 1)?;
                    entries.push((k, v));
                }
                Value::Map(entries.into())
            } else {
                let count = get_len(buf, 1, "ARRAY or STRUCT")?;
                let items = decode_values(buf, count, depth + 1)?;
                if tag == TAG_ARRAY { Value::Array(items.into()) } else { Value::Struct(items.into()) }
            }
        }
        other => return Err(err(format!("unknown value tag {other}"))),
    })
}

/// Appends a row: its value count, then each value.
pub fn encode_row(row: &[Value], out: &mut Vec<u8>) {
    put_varint(out, row.len() as u64);
    row.iter().for_each(|v| encode_value(v, out));
}

/// Reads a row written by [`encode_row`], advancing `buf` past it.
pub fn decode_row(buf: &mut &[u8]) -> Result<Vec<Value>, CodecError> {
    let count = get_len(buf, 1, "row")?;
    decode_values(buf, count, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(v: &Value) -> Value {
        let mut out = Vec::new();
        encode_value(v, &mut out);
        let mut buf = out.as_slice();
        let back = decode_value(&mut buf).unwrap();
        assert!(buf.is_empty(), "decode consumed everything of {v:?}");
        back
    }

    fn samples() -> Vec<Value> {
        let dec = |s: &str| Value::Decimal(Decimal::parse(s).unwrap());
        let scalars = vec![
            Value::Null,
            Value::Boolean(true),
            Value::Boolean(false),
            Value::Int(0),
            Value::Int(i32::MIN),
            Value::Int(i32::MAX),
            Value::Bigint(i64::MIN),
            Value::Bigint(i64::MAX),
            Value::Bigint(-1),
            Value::Double(0.0),
            Value::Double(-0.0),
            Value::Double(f64::INFINITY),
            Value::Double(-1.5e300),
            dec("-12.345"),
            dec("0.00"),
            Value::Decimal(Decimal { unscaled: i128::MIN, scale: 38 }),
            Value::Decimal(Decimal { unscaled: i128::MAX, scale: 0 }),
            Value::string(""),
            Value::string("héllo, wörld"),
            Value::Bytes(Arc::from(&[0u8, 255, 7][..])),
            Value::Bytes(Arc::from(&[][..])),
            Value::Timestamp(-1),
            Value::Timestamp(1_600_000_000_123),
            Value::Date(-719_468),
            Value::Time(86_399_999),
        ];
        let mut all = scalars.clone();
        all.push(Value::Array(scalars.clone().into()));
        all.push(Value::Array(Vec::new().into()));
        all.push(Value::Struct(vec![Value::Int(1), Value::Null, Value::string("x")].into()));
        all.push(Value::Map(
            vec![
                (Value::string("a"), Value::Array(vec![Value::Int(1), Value::Int(2)].into())),
                (Value::string("b"), Value::Null),
            ]
            .into(),
        ));
        all.push(Value::Array(
            vec![Value::Struct(vec![Value::Map(vec![(Value::Int(1), dec("-0.5"))].into())].into())].into(),
        ));
        all
    }

    #[test]
    fn every_variant_round_trips() {
        for v in samples() {
            assert_eq!(round_trip(&v), v);
        }
        match round_trip(&Value::Double(f64::NAN)) {
            Value::Double(d) => assert!(d.is_nan()),
            other => panic!("NaN came back as {other:?}"),
        }
        let row = samples();
        let mut out = Vec::new();
        encode_row(&row, &mut out);
        encode_row(&[], &mut out);
        let mut buf = out.as_slice();
        assert_eq!(decode_row(&mut buf).unwrap(), row);
        assert_eq!(decode_row(&mut buf).unwrap(), Vec::<Value>::new());
        assert!(buf.is_empty());
    }

    #[test]
    fn framing_helpers_round_trip_and_sort() {
        let mut out = Vec::new();
        put_u64(&mut out, 42);
        put_i64(&mut out, -7);
        put_bytes(&mut out, b"key");
        put_varint(&mut out, u64::MAX);
        let mut buf = out.as_slice();
        assert_eq!(get_u64(&mut buf).unwrap(), 42);
        assert_eq!(get_i64(&mut buf).unwrap(), -7);
        assert_eq!(get_bytes(&mut buf).unwrap(), b"key");
        assert_eq!(get_varint(&mut buf).unwrap(), u64::MAX);
        assert!(buf.is_empty());
        let enc = |v: i64| {
            let mut o = Vec::new();
            put_i64(&mut o, v);
            o
        };
        assert!(enc(i64::MIN) < enc(-1) && enc(-1) < enc(0) && enc(0) < enc(1) && enc(1) < enc(i64::MAX));
        assert!(get_u64(&mut &[1u8, 2, 3][..]).is_err());
        assert!(get_bytes(&mut &[5u8, 1][..]).is_err());
        assert!(get_varint(&mut &[0xffu8; 11][..]).is_err());
    }

    #[test]
    fn every_truncation_is_an_error() {
        for v in samples() {
            let mut out = Vec::new();
            encode_value(&v, &mut out);
            for cut in 0..out.len() {
                assert!(decode_value(&mut &out[..cut]).is_err(), "{v:?} cut at {cut} of {}", out.len());
            }
        }
        let mut out = Vec::new();
        encode_row(&samples(), &mut out);
        for cut in 0..out.len() {
            assert!(decode_row(&mut &out[..cut]).is_err());
        }
    }

    #[test]
    fn corrupt_input_is_refused() {
        // Unknown tag, huge counts, bad UTF-8, out-of-range INT, bad DECIMAL scale.
        assert!(decode_value(&mut &[99u8][..]).is_err());
        assert!(decode_value(&mut &[TAG_ARRAY, 0xff, 0xff, 0xff, 0xff, 0x0f][..]).is_err());
        assert!(decode_row(&mut &[0xffu8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01][..]).is_err());
        assert!(decode_value(&mut &[TAG_STRING, 2, 0xc3, 0x28][..]).is_err());
        let mut out = vec![TAG_INT];
        put_zigzag(&mut out, i64::from(i32::MAX) + 1);
        assert!(decode_value(&mut out.as_slice()).is_err());
        let mut out = vec![TAG_DECIMAL];
        out.extend_from_slice(&[0u8; 16]);
        out.push(39);
        assert!(decode_value(&mut out.as_slice()).is_err());
        // Nesting deeper than allowed.
        let mut deep = Value::Int(1);
        for _ in 0..=NESTING_DEPTH_MAX {
            deep = Value::Array(vec![deep].into());
        }
        let mut out = Vec::new();
        encode_value(&deep, &mut out);
        assert!(decode_value(&mut out.as_slice()).is_err());
        let mut shallow = Value::Int(1);
        for _ in 0..NESTING_DEPTH_MAX {
            shallow = Value::Array(vec![shallow].into());
        }
        assert_eq!(round_trip(&shallow), shallow);
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let encoded: Vec<Vec<u8>> = samples()
            .iter()
            .map(|v| {
                let mut out = Vec::new();
                encode_value(v, &mut out);
                out
            })
            .collect();
        for i in 0..20_000 {
            let bytes: Vec<u8> = if i % 2 == 0 {
                let len = (next() % 64) as usize;
                (0..len).map(|_| next() as u8).collect()
            } else {
                // Flip a few bytes of a valid encoding.
                let mut b = encoded[(next() % encoded.len() as u64) as usize].clone();
                for _ in 0..1 + next() % 3 {
                    let at = (next() % b.len() as u64) as usize;
                    b[at] = next() as u8;
                }
                b
            };
            let _ = decode_value(&mut bytes.as_slice());
            let _ = decode_row(&mut bytes.as_slice());
        }
    }
}
