//! Zig-zag varints as used inside Kafka records (the same encoding as protobuf's sint64).

/// The longest varlong: 64 bits at 7 bits a byte.
pub const VARLONG_BYTES_MAX: usize = 10;

/// Reads a zig-zag varlong from `buf` at `*pos`, advancing `*pos`; `None` when truncated or overlong.
pub fn read_varlong(buf: &[u8], pos: &mut usize) -> Option<i64> {
    let mut value: u64 = 0;
    for i in 0..VARLONG_BYTES_MAX {
        let byte = *buf.get(*pos)?;
        *pos += 1;
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some(((value >> 1) as i64) ^ -((value & 1) as i64));
        }
    }
    None
}

/// Reads a zig-zag varint that must fit an `i32`.
pub fn read_varint(buf: &[u8], pos: &mut usize) -> Option<i32> {
    i32::try_from(read_varlong(buf, pos)?).ok()
}

/// Appends `value` as a zig-zag varlong.
pub fn write_varlong(out: &mut Vec<u8>, value: i64) {
    let mut v = ((value << 1) ^ (value >> 63)) as u64;
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// The number of bytes [`write_varlong`] uses for `value`.
pub fn varlong_len(value: i64) -> usize {
    let mut v = ((value << 1) ^ (value >> 63)) as u64;
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_extremes() {
        for v in [0, 1, -1, 63, -64, 64, i32::MAX as i64, i32::MIN as i64, i64::MAX, i64::MIN] {
            let mut out = Vec::new();
            write_varlong(&mut out, v);
            assert_eq!(out.len(), varlong_len(v));
            let mut pos = 0;
            assert_eq!(read_varlong(&out, &mut pos), Some(v));
            assert_eq!(pos, out.len());
        }
    }

    #[test]
    fn rejects_truncated_and_overlong() {
        let mut pos = 0;
        assert_eq!(read_varlong(&[0x80], &mut pos), None);
        let mut pos = 0;
        assert_eq!(read_varlong(&[0xff; 11], &mut pos), None);
    }
}
