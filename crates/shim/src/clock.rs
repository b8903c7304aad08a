//! Wall-clock timestamps for the shim's records, without a date library.
//!
//! The shim formats a time at start and at exit. After setup it has dropped
//! its code pages (see `resident`), so whatever the exit path runs is paged
//! in again for the container's last moments; a few lines of arithmetic cost
//! far fewer pages than a date library's formatting machinery.

use std::time::{SystemTime, UNIX_EPOCH};

/// Now, in RFC 3339 with nanoseconds, UTC: `2026-11-22T02:43:14.393000000Z`.
pub fn rfc3339_now() -> String {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    rfc3339(since.as_secs(), since.subsec_nanos())
}

/// Formats seconds and nanoseconds since the Unix epoch.
pub fn rfc3339(secs: u64, nanos: u32) -> String {
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard
/// Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_chrono_across_leap_years_and_month_ends() {
        for secs in [
            0u64,
            951_782_400,
            951_868_799,
            1_709_164_800,
            1_735_689_599,
            4_102_444_800,
            1_795_000_000,
        ] {
            for nanos in [0u32, 1, 999_999_999] {
                let ours = rfc3339(secs, nanos);
                let theirs = chrono::DateTime::from_timestamp(secs as i64, nanos)
                    .unwrap()
                    .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
                assert_eq!(ours, theirs, "{secs}.{nanos}");
            }
        }
    }

    #[test]
    fn now_parses_as_rfc3339() {
        assert!(chrono::DateTime::parse_from_rfc3339(&rfc3339_now()).is_ok());
    }
}
