//! `--since` values as operators write them, turned into the RFC 3339 UTC
//! time the API takes: RFC 3339 with or without a zone (local time), a date
//! (local midnight), a duration before now (`10m`, `2h`, `1h30m`) or epoch
//! seconds (`1700000000`, `1700000000.5`).

use chrono::{DateTime, Local, NaiveDate, NaiveDateTime, TimeZone, Utc};

/// Parses a time flag relative to `now`; the error says what is accepted.
pub fn parse_time(value: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    let value = value.trim();
    if let Ok(time) = DateTime::parse_from_rfc3339(value) {
        return Ok(time.with_timezone(&Utc));
    }
    for format in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(naive) = NaiveDateTime::parse_from_str(value, format) {
            return local(naive, value);
        }
    }
    if let Ok(date) = NaiveDate::parse_from_str(value, "%Y-%m-%d") {
        return local(date.and_hms_opt(0, 0, 0).expect("midnight"), value);
    }
    if let Some(ago) = duration(value) {
        return Ok(now - ago);
    }
    if let Ok(seconds) = value.parse::<f64>() {
        if seconds.is_finite() && seconds >= 0.0 {
            let whole = seconds.trunc() as i64;
            let nanos = ((seconds - seconds.trunc()) * 1e9).round() as u32;
            if let Some(time) = DateTime::from_timestamp(whole, nanos.min(999_999_999)) {
                return Ok(time);
            }
        }
    }
    Err(format!(
        "{value:?}: expected RFC 3339 (2024-05-01T12:00:00Z, or without a zone for local time), \
         a date (2024-05-01), a duration (10m, 2h, 1h30m) or epoch seconds"
    ))
}

fn local(naive: NaiveDateTime, value: &str) -> Result<DateTime<Utc>, String> {
    Local
        .from_local_datetime(&naive)
        .earliest()
        .map(|t| t.with_timezone(&Utc))
        .ok_or_else(|| format!("{value:?} does not exist in the local time zone"))
}

/// `10m`, `2h`, `1h30m`, `45s`, `1d`, `500ms`: a sum of numbers with units.
fn duration(value: &str) -> Option<chrono::TimeDelta> {
    let mut total = chrono::TimeDelta::zero();
    let mut rest = value;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .filter(|&n| n > 0)?;
        let number: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let millis_per_unit = match &rest[..unit_len] {
            "ms" => 1.0,
            "s" => 1e3,
            "m" => 60e3,
            "h" => 3600e3,
            "d" => 86400e3,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += chrono::TimeDelta::milliseconds((number * millis_per_unit).round() as i64);
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_accepted_form_parses() {
        let now = "2026-12-03T10:00:00Z".parse::<DateTime<Utc>>().unwrap();
        let at = |s: &str| parse_time(s, now).unwrap().to_rfc3339();
        assert_eq!(at("2026-12-03T07:15:37Z"), "2026-12-03T07:15:37+00:00");
        assert_eq!(at("2026-12-03T09:15:37+02:00"), "2026-12-03T07:15:37+00:00");
        assert_eq!(at("10m"), "2026-12-03T09:50:00+00:00");
        assert_eq!(at("1h30m"), "2026-12-03T08:30:00+00:00");
        assert_eq!(at("1700000000"), "2023-11-14T22:13:20+00:00");
        let local = Local.with_ymd_and_hms(2026, 12, 3, 7, 15, 37).unwrap();
        assert_eq!(
            at("2026-12-03T07:15:37"),
            local.with_timezone(&Utc).to_rfc3339()
        );
        let midnight = Local.with_ymd_and_hms(2026, 12, 3, 0, 0, 0).unwrap();
        assert_eq!(at("2026-12-03"), midnight.with_timezone(&Utc).to_rfc3339());
        for bad in ["yesterday", "", "10x", "m", "-5", "2026-13-01"] {
            assert!(parse_time(bad, now).is_err(), "{bad}");
        }
    }
}
