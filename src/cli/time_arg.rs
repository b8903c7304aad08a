//! Times as people type them on the command line (`--since`): RFC 3339
//! with or without a zone (local time without), a date (local midnight), a
//! duration back from now (`10m`, `2h`, `1h30m`, `3d`), or unix seconds.

use chrono::{DateTime, Local, NaiveDate, NaiveDateTime, TimeZone, Utc};

/// Parses `text` into an instant, durations counted back from `now`.
pub fn parse(text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    let text = text.trim();
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Ok(time.with_timezone(&Utc));
    }
    for format in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(naive) = NaiveDateTime::parse_from_str(text, format) {
            return local(naive, text);
        }
    }
    if let Ok(date) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return local(date.and_hms_opt(0, 0, 0).expect("midnight exists"), text);
    }
    if let Some(seconds) = epoch_seconds(text) {
        return DateTime::from_timestamp(
            seconds.trunc() as i64,
            (seconds.fract() * 1e9).round() as u32,
        )
        .ok_or_else(|| format!("{text:?} is out of range"));
    }
    if let Some(ago) = duration(text) {
        return Ok(now - ago);
    }
    Err(format!(
        "expected RFC 3339 (2026-12-03T07:15:37Z, or without a zone for local time), \
         a date (2026-12-03), a duration (10m, 2h, 1h30m) or unix seconds, got {text:?}"
    ))
}

fn local(naive: NaiveDateTime, text: &str) -> Result<DateTime<Utc>, String> {
    Local
        .from_local_datetime(&naive)
        .earliest()
        .map(|t| t.with_timezone(&Utc))
        .ok_or_else(|| format!("{text:?} does not exist in the local time zone"))
}

fn epoch_seconds(text: &str) -> Option<f64> {
    let digits = text.split_once('.').map_or(text, |(whole, _)| whole);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// `1h30m`, `10m`, `45s`, `3d`: at least one number-unit pair.
fn duration(text: &str) -> Option<chrono::Duration> {
    let mut total = chrono::Duration::zero();
    let mut number = String::new();
    let mut pairs = 0;
    for c in text.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let n: i64 = number.parse().ok()?;
        number.clear();
        total += match c {
            's' => chrono::Duration::seconds(n),
            'm' => chrono::Duration::minutes(n),
            'h' => chrono::Duration::hours(n),
            'd' => chrono::Duration::days(n),
            _ => return None,
        };
        pairs += 1;
    }
    (number.is_empty() && pairs > 0).then_some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        "2026-12-03T10:00:00Z".parse().unwrap()
    }

    #[test]
    fn every_form_people_type() {
        let utc = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        assert_eq!(
            parse("2026-12-03T07:15:37Z", now()),
            Ok(utc("2026-12-03T07:15:37Z"))
        );
        assert_eq!(
            parse("2026-12-03T08:15:37+01:00", now()),
            Ok(utc("2026-12-03T07:15:37Z"))
        );
        assert_eq!(parse("10m", now()), Ok(utc("2026-12-03T09:50:00Z")));
        assert_eq!(parse("1h30m", now()), Ok(utc("2026-12-03T08:30:00Z")));
        assert_eq!(parse("2d", now()), Ok(utc("2026-12-01T10:00:00Z")));
        assert_eq!(parse("1764746137", now()), Ok(utc("2025-12-03T07:15:37Z")));
        // Without a zone: local time, as `ps` prints it.
        let local_time = Local
            .with_ymd_and_hms(2026, 12, 3, 7, 15, 37)
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(parse("2026-12-03T07:15:37", now()), Ok(local_time));
        let midnight = Local
            .with_ymd_and_hms(2026, 12, 3, 0, 0, 0)
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(parse("2026-12-03", now()), Ok(midnight));
    }

    #[test]
    fn nonsense_is_refused_with_the_forms() {
        for bad in ["yesterday", "10x", "m", "", "1h30", "2026-13-01"] {
            let err = parse(bad, now()).unwrap_err();
            assert!(err.contains("expected RFC 3339"), "{bad}: {err}");
        }
    }
}
