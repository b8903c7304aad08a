//! What a subscriber asks for: `since`, `until` and filters, from the
//! query of `GET /v1/events`. Values of one filter key are alternatives;
//! different keys must all match (Docker's rule).

use std::collections::BTreeMap;

use super::{parse_time, Event, Kind, Since, ACTIONS};

/// A query parameter that is wrong: the API's 400 names `field`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid {field}: {message}")]
pub struct FilterError {
    pub field: String,
    pub message: String,
}

fn invalid(field: &str, message: String) -> FilterError {
    FilterError {
        field: field.to_string(),
        message,
    }
}

/// Where a stream ends.
#[derive(Debug, Clone, PartialEq)]
pub enum Until {
    Seq(u64),
    Time(chrono::DateTime<chrono::Utc>),
}

/// A parsed events query.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    pub since: Since,
    pub until: Option<Until>,
    pub filter: Filter,
}

/// Which events a subscriber gets.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    kinds: Vec<Kind>,
    actions: Vec<String>,
    containers: Vec<String>,
    /// `K=V` (value must match) or `K` (label present).
    labels: Vec<(String, Option<String>)>,
}

/// `SEQ` (a number) or an RFC 3339 time (or Unix seconds with a fraction,
/// `1733300000.5`, as Docker's `--since`).
fn parse_point(
    field: &str,
    value: &str,
) -> Result<Result<u64, chrono::DateTime<chrono::Utc>>, FilterError> {
    if let Ok(seq) = value.parse::<u64>() {
        return Ok(Ok(seq));
    }
    if let Some(time) = parse_time(value) {
        return Ok(Err(time));
    }
    if let Ok(seconds) = value.parse::<f64>() {
        if seconds.is_finite() && seconds >= 0.0 {
            let nanos = (seconds.fract() * 1e9) as u32;
            if let Some(time) = chrono::DateTime::from_timestamp(seconds.trunc() as i64, nanos) {
                return Ok(Err(time));
            }
        }
    }
    Err(invalid(
        field,
        format!("expected an event number or an RFC 3339 time, got {value:?}"),
    ))
}

impl Query {
    /// Parses the query's `(key, value)` pairs.
    pub fn parse(pairs: &[(String, String)]) -> Result<Query, FilterError> {
        let mut query = Query {
            since: Since::Now,
            until: None,
            filter: Filter::default(),
        };
        let mut seen = std::collections::BTreeSet::new();
        for (key, value) in pairs {
            let once = |seen: &mut std::collections::BTreeSet<String>| {
                if seen.insert(key.clone()) {
                    Ok(())
                } else {
                    Err(invalid(key, "given more than once".into()))
                }
            };
            match key.as_str() {
                "since" => {
                    once(&mut seen)?;
                    query.since = match parse_point("since", value)? {
                        Ok(seq) => Since::Seq(seq),
                        Err(time) => Since::Time(time),
                    };
                }
                "until" => {
                    once(&mut seen)?;
                    query.until = Some(match parse_point("until", value)? {
                        Ok(seq) => Until::Seq(seq),
                        Err(time) => Until::Time(time),
                    });
                }
                "type" => {
                    let kind = Kind::ALL
                        .iter()
                        .find(|(name, _)| name == value)
                        .map(|(_, kind)| *kind)
                        .ok_or_else(|| {
                            invalid(
                                "type",
                                format!("expected container, image or agent, got {value:?}"),
                            )
                        })?;
                    query.filter.kinds.push(kind);
                }
                "action" => {
                    if !ACTIONS.contains(&value.as_str()) {
                        return Err(invalid(
                            "action",
                            format!("unknown action {value:?}; known: {}", ACTIONS.join(", ")),
                        ));
                    }
                    query.filter.actions.push(value.clone());
                }
                "container" => {
                    if berth_isolator::ContainerId::new(value.clone()).is_err() {
                        return Err(invalid(
                            "container",
                            format!("{value:?} is not a container id or name"),
                        ));
                    }
                    query.filter.containers.push(value.clone());
                }
                "label" => {
                    let (k, v) = match value.split_once('=') {
                        Some((k, v)) => (k, Some(v.to_string())),
                        None => (value.as_str(), None),
                    };
                    if k.is_empty() {
                        return Err(invalid(
                            "label",
                            format!("expected KEY or KEY=VALUE, got {value:?}"),
                        ));
                    }
                    query.filter.labels.push((k.to_string(), v));
                }
                other => return Err(invalid(
                    other,
                    "unknown parameter; expected since, until, type, action, container or label"
                        .into(),
                )),
            }
        }
        Ok(query)
    }
}

impl Filter {
    pub fn matches(&self, event: &Event) -> bool {
        let labels: &BTreeMap<String, String> = &event.actor.labels;
        // A reset concerns every subscriber.
        if event.action == "reset" {
            return true;
        }
        (self.kinds.is_empty() || self.kinds.contains(&event.kind))
            && (self.actions.is_empty() || self.actions.contains(&event.action))
            && (self.containers.is_empty()
                || (event.kind == Kind::Container
                    && self
                        .containers
                        .iter()
                        .any(|c| *c == event.actor.id || *c == event.actor.name)))
            && self.labels.iter().all(|(k, v)| match v {
                Some(v) => labels.get(k) == Some(v),
                None => labels.contains_key(k),
            })
    }
}

impl Until {
    /// Whether `event` is past the end.
    pub fn passed_by(&self, event: &Event) -> bool {
        match self {
            Until::Seq(seq) => event.seq > *seq,
            Until::Time(at) => parse_time(&event.time).is_some_and(|t| t > *at),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn bad_filters_name_their_field() {
        for (key, value) in [
            ("type", "volume"),
            ("action", "explode"),
            ("since", "yesterday"),
            ("until", "soon"),
            ("label", "=x"),
            ("container", "../x"),
            ("colour", "red"),
        ] {
            let e = Query::parse(&pairs(&[(key, value)])).unwrap_err();
            assert_eq!(e.field, key, "{e}");
        }
        let e = Query::parse(&pairs(&[("since", "1"), ("since", "2")])).unwrap_err();
        assert_eq!(e.field, "since");
    }

    #[test]
    fn points_parse() {
        let q = Query::parse(&pairs(&[
            ("since", "12"),
            ("until", "2026-12-04T10:00:00Z"),
        ]))
        .unwrap();
        assert_eq!(q.since, Since::Seq(12));
        assert!(matches!(q.until, Some(Until::Time(_))));
        let q = Query::parse(&pairs(&[("since", "1733300000.5")])).unwrap();
        assert!(matches!(q.since, Since::Time(_)));
    }
}
