//! A point in time as the container record and the API carry it: held as a
//! real time, written as RFC 3339 UTC with nanoseconds
//! (`2024-05-01T12:00:00.123456789Z`, the text records always had), read
//! from any RFC 3339 text (an offset is converted to UTC).

use std::fmt;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A time of the container's life (created, started, finished).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub DateTime<Utc>);

impl Timestamp {
    /// The current time.
    pub fn now() -> Timestamp {
        Timestamp(Utc::now())
    }

    /// Parses RFC 3339 text.
    pub fn parse(text: &str) -> Option<Timestamp> {
        DateTime::parse_from_rfc3339(text)
            .ok()
            .map(|t| Timestamp(t.with_timezone(&Utc)))
    }

    /// The time since the epoch, in seconds with a fraction.
    pub fn unix_seconds(&self) -> f64 {
        self.0.timestamp_micros() as f64 / 1e6
    }

    /// How long after `earlier` this is (zero if it is not after).
    pub fn since(&self, earlier: &Timestamp) -> std::time::Duration {
        (self.0 - earlier.0).to_std().unwrap_or_default()
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.to_rfc3339_opts(SecondsFormat::Nanos, true))
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Timestamp::parse(&text).ok_or_else(|| {
            serde::de::Error::custom(format!("expected an RFC 3339 time, got {text:?}"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_as_records_always_had_it_and_read_back() {
        let text = "\"2024-05-01T12:00:00.123456789Z\"";
        let time: Timestamp = serde_json::from_str(text).unwrap();
        assert_eq!(serde_json::to_string(&time).unwrap(), text);
        let whole: Timestamp = serde_json::from_str("\"2024-05-01T12:00:00Z\"").unwrap();
        assert_eq!(whole.to_string(), "2024-05-01T12:00:00.000000000Z");
        let zoned: Timestamp = serde_json::from_str("\"2024-05-01T14:00:00+02:00\"").unwrap();
        assert_eq!(zoned, whole);
        assert_eq!(time.since(&whole).as_nanos(), 123_456_789);
        assert_eq!(whole.since(&time), std::time::Duration::ZERO);
        let err = serde_json::from_str::<Timestamp>("\"yesterday\"").unwrap_err();
        assert!(err.to_string().contains("RFC 3339"), "{err}");
    }
}
