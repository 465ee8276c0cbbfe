//! Times given on the command line: `2026-11-26T10:00:00[.sss][Z|±hh:mm]` datetimes (local
//! time when no zone is given, as Kafka's tools do), milliseconds since the Unix epoch, and
//! durations as ISO 8601 (`PT1H30M`, `P1DT2H`) or humane (`1h30m`, `90s`, `2d`, `500ms`); and
//! UTC times printed as RFC 3339 ([`format_ms`]).
//!
//! Hand-written rather than a date crate: the CLI needs one format in and one out, and the
//! civil-date arithmetic is twenty lines each way (Howard Hinnant's `days_from_civil` and
//! `civil_from_days`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch now.
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// Epoch milliseconds as an RFC 3339 UTC time with milliseconds: `2026-11-27T06:01:02.345Z`.
pub fn format_ms(ms: i64) -> String {
    let (days, in_day) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    let (year, month, day) = civil_from_days(days);
    let (hour, minute) = (in_day / 3_600_000, in_day / 60_000 % 60);
    let (second, milli) = (in_day / 1000 % 60, in_day % 1000);
    format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}.{milli:03}Z")
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        4 | 6 | 9 | 11 => 30,
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        _ => 31,
    }
}

fn number(s: &str, what: &str, input: &str) -> Result<u32, String> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("invalid {what} in {input:?} (expected YYYY-MM-DDTHH:MM:SS[.sss][Z|+hh:mm])"));
    }
    s.parse().map_err(|_| format!("invalid {what} in {input:?}"))
}

/// Parses a datetime, or a number of milliseconds since the Unix epoch, to epoch milliseconds.
pub fn parse_datetime(input: &str) -> Result<i64, String> {
    let s = input.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse().map_err(|_| format!("timestamp {s:?} is out of range"));
    }
    let usage = || format!("invalid datetime {input:?} (expected YYYY-MM-DDTHH:MM:SS[.sss][Z|+hh:mm])");
    let (date, rest) = s.split_once(['T', 't', ' ']).ok_or_else(usage)?;
    let mut parts = date.splitn(3, '-');
    let year = number(parts.next().unwrap_or(""), "year", input)? as i64;
    let month = number(parts.next().unwrap_or(""), "month", input)?;
    let day = number(parts.next().unwrap_or(""), "day", input)?;
    // The zone: Z, +hh:mm, -hh:mm (or +hhmm), or nothing (local time).
    let (time, zone_minutes) = if let Some(time) = rest.strip_suffix(['Z', 'z']) {
        (time, Some(0i64))
    } else if let Some(at) = rest.rfind(['+', '-']) {
        let (time, zone) = rest.split_at(at);
        let sign = if zone.starts_with('-') { -1 } else { 1 };
        let digits: String = zone[1..].chars().filter(|c| *c != ':').collect();
        if digits.len() != 4 {
            return Err(usage());
        }
        let hours = number(&digits[..2], "zone hours", input)? as i64;
        let minutes = number(&digits[2..], "zone minutes", input)? as i64;
        if hours > 23 || minutes > 59 {
            return Err(usage());
        }
        (time, Some(sign * (hours * 60 + minutes)))
    } else {
        (rest, None)
    };
    let (hms, fraction) = match time.split_once('.') {
        Some((hms, fraction)) => (hms, Some(fraction)),
        None => (time, None),
    };
    let mut parts = hms.splitn(3, ':');
    let hour = number(parts.next().unwrap_or(""), "hour", input)?;
    let minute = number(parts.next().unwrap_or(""), "minute", input)?;
    let second = match parts.next() {
        Some(s) => number(s, "second", input)?,
        None => 0,
    };
    let millis = match fraction {
        None => 0,
        Some(digits) => {
            if digits.is_empty() || digits.len() > 9 || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(usage());
            }
            // ".5" is 500 ms, ".123456" is 123 ms.
            format!("{:0<3}", &digits[..digits.len().min(3)]).parse::<i64>().map_err(|_| usage())?
        }
    };
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return Err(format!("invalid date in {input:?}"));
    }
    if hour > 23 || minute > 59 || second > 59 {
        return Err(format!("invalid time of day in {input:?}"));
    }
    let days = days_from_civil(year, month, day);
    let local_seconds = days * 86_400 + i64::from(hour) * 3600 + i64::from(minute) * 60 + i64::from(second);
    let epoch_seconds = match zone_minutes {
        Some(minutes) => local_seconds - minutes * 60,
        None => local_to_epoch(year, month, day, hour, minute, second).unwrap_or(local_seconds),
    };
    Ok(epoch_seconds * 1000 + millis)
}

/// Seconds since the epoch of a local wall-clock time, by the C library's `mktime` (which
/// knows the time zone database and daylight saving time).
fn local_to_epoch(year: i64, month: u32, day: u32, hour: u32, minute: u32, second: u32) -> Option<i64> {
    // SAFETY: `tm` is a plain C struct for which all-zero bytes is a valid value.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    tm.tm_year = i32::try_from(year - 1900).ok()?;
    tm.tm_mon = month as i32 - 1;
    tm.tm_mday = day as i32;
    tm.tm_hour = hour as i32;
    tm.tm_min = minute as i32;
    tm.tm_sec = second as i32;
    tm.tm_isdst = -1;
    // SAFETY: `tm` is a valid, exclusively borrowed `struct tm`; mktime only reads and
    // normalises it.
    let t = unsafe { libc::mktime(&mut tm) };
    (t != -1).then_some(t)
}

/// Parses a duration: ISO 8601 `PnDTnHnMn[.n]S` or humane `1h30m`, `90s`, `2d`, `500ms`.
pub fn parse_duration(input: &str) -> Result<Duration, String> {
    let s = input.trim();
    let usage = || format!("invalid duration {input:?} (expected e.g. PT1H30M, P1DT2H, 1h30m, 90s, 500ms)");
    if s.is_empty() {
        return Err(usage());
    }
    let mut total_ms: u128 = 0;
    let upper = s.to_ascii_uppercase();
    if let Some(iso) = upper.strip_prefix('P') {
        let (date, time) = match iso.split_once('T') {
            Some((d, t)) => (d, Some(t)),
            None => (iso, None),
        };
        let mut number = String::new();
        for c in date.chars() {
            match c {
                '0'..='9' => number.push(c),
                'D' | 'W' => {
                    let n: u128 = number.parse().map_err(|_| usage())?;
                    total_ms += n * if c == 'D' { 86_400_000 } else { 7 * 86_400_000 };
                    number.clear();
                }
                _ => return Err(usage()),
            }
        }
        if !number.is_empty() {
            return Err(usage());
        }
        if let Some(time) = time {
            if time.is_empty() {
                return Err(usage());
            }
            for c in time.chars() {
                match c {
                    '0'..='9' | '.' => number.push(c),
                    'H' | 'M' | 'S' => {
                        let n: f64 = number.parse().map_err(|_| usage())?;
                        let unit = match c {
                            'H' => 3_600_000.0,
                            'M' => 60_000.0,
                            _ => 1000.0,
                        };
                        total_ms += (n * unit).round() as u128;
                        number.clear();
                    }
                    _ => return Err(usage()),
                }
            }
            if !number.is_empty() {
                return Err(usage());
            }
        }
        if iso.is_empty() {
            return Err(usage());
        }
    } else {
        let bytes = s.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            let start = i;
            while i < bytes.len() && (bytes[i].is_ascii_digit() || bytes[i] == b'.') {
                i += 1;
            }
            let n: f64 = s[start..i].parse().map_err(|_| usage())?;
            let unit_start = i;
            while i < bytes.len() && bytes[i].is_ascii_alphabetic() {
                i += 1;
            }
            let unit = match &s[unit_start..i] {
                "ms" => 1.0,
                "s" | "sec" | "secs" => 1000.0,
                "m" | "min" | "mins" => 60_000.0,
                "h" | "hr" | "hrs" => 3_600_000.0,
                "d" | "day" | "days" => 86_400_000.0,
                "w" => 7.0 * 86_400_000.0,
                _ => return Err(usage()),
            };
            total_ms += (n * unit).round() as u128;
        }
    }
    u64::try_from(total_ms).map(Duration::from_millis).map_err(|_| usage())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_format_as_rfc3339() {
        for text in [
            "2026-11-27T06:01:02.345Z",
            "1970-01-01T00:00:00.000Z",
            "2000-02-29T23:59:59.999Z",
            "1969-12-31T23:59:59.000Z",
        ] {
            assert_eq!(format_ms(parse_datetime(text).unwrap()), text);
        }
    }

    #[test]
    fn datetimes_with_zones() {
        assert_eq!(parse_datetime("1970-01-01T00:00:00Z").unwrap(), 0);
        assert_eq!(parse_datetime("2026-11-26T10:00:00Z").unwrap(), 1_795_687_200_000);
        assert_eq!(parse_datetime("2026-11-26T10:00:00.250Z").unwrap(), 1_795_687_200_250);
        assert_eq!(parse_datetime("2026-11-26T10:00:00.5Z").unwrap(), 1_795_687_200_500);
        assert_eq!(parse_datetime("2026-11-26T12:00:00+02:00").unwrap(), 1_795_687_200_000);
        assert_eq!(parse_datetime("2026-11-26T05:30:00-04:30").unwrap(), 1_795_687_200_000);
        assert_eq!(parse_datetime("2024-02-29T00:00:00Z").unwrap(), 1_709_164_800_000);
        assert_eq!(parse_datetime("1795687200000").unwrap(), 1_795_687_200_000);
        for bad in ["2026-13-01T00:00:00Z", "2026-02-30T00:00:00Z", "2026-11-26", "yesterday", "2026-11-26T25:00:00Z"] {
            assert!(parse_datetime(bad).is_err(), "{bad}");
        }
        // Without a zone: local time, whatever the machine's zone is, within a day of UTC.
        let local = parse_datetime("2026-11-26T10:00:00").unwrap();
        assert!((local - 1_795_687_200_000).abs() <= 26 * 3_600_000);
    }

    #[test]
    fn durations_iso_and_humane() {
        assert_eq!(parse_duration("PT1H30M").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("P1DT2H").unwrap(), Duration::from_secs(93_600));
        assert_eq!(parse_duration("PT0.5S").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("P2D").unwrap(), Duration::from_secs(172_800));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2d").unwrap(), Duration::from_secs(172_800));
        for bad in ["", "P", "PT", "1x", "h", "P1H", "PT1D"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
