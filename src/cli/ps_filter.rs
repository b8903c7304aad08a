//! `berth ps --filter KEY=VALUE`: state, name (the id) and label filters.
//! Values of one key are alternatives; different keys must all match, as
//! Docker's filters.

use crate::container::{ContainerView as Container, State};

/// The parsed filters.
#[derive(Debug, Default, PartialEq)]
pub struct Filter {
    states: Vec<State>,
    names: Vec<String>,
    /// `(key, Some(value))` for `label=K=V`, `(key, None)` for `label=K`.
    labels: Vec<(String, Option<String>)>,
}

impl Filter {
    /// Parses the `--filter` values; the error is the usage message.
    pub fn parse(values: &[String]) -> Result<Filter, String> {
        let mut filter = Filter::default();
        for value in values {
            let bad = |why: &str| format!("invalid --filter {value:?}: {why}");
            let (key, wanted) = value
                .split_once('=')
                .ok_or_else(|| bad("expected KEY=VALUE"))?;
            match key {
                "state" | "status" => filter.states.push(match wanted {
                    "created" | "starting" => State::Created,
                    "running" => State::Running,
                    "exited" => State::Exited,
                    "unknown" => State::Unknown,
                    _ => return Err(bad("a state is created, running, exited or unknown")),
                }),
                "name" | "id" => filter.names.push(wanted.to_string()),
                "label" => {
                    let (k, v) = match wanted.split_once('=') {
                        Some((k, v)) => (k, Some(v.to_string())),
                        None => (wanted, None),
                    };
                    if k.is_empty() {
                        return Err(bad("expected label=K or label=K=V"));
                    }
                    filter.labels.push((k.to_string(), v));
                }
                _ => return Err(bad("the keys are state, name and label")),
            }
        }
        Ok(filter)
    }

    /// Whether a state is asked for (then ended containers are listed
    /// without -a).
    pub fn has_state(&self) -> bool {
        !self.states.is_empty()
    }

    /// Whether a container passes every key's filter. A name matches the
    /// whole id or a part of it (Docker matches names by substring); each
    /// label given must be present (with that value, if one is given).
    pub fn matches(&self, container: &Container) -> bool {
        let state = self.states.is_empty() || self.states.contains(&container.state);
        let name = self.names.is_empty()
            || self
                .names
                .iter()
                .any(|n| container.id.as_str().contains(n.as_str()));
        let labels =
            self.labels
                .iter()
                .all(|(key, value)| match (container.labels.get(key), value) {
                    (Some(have), Some(want)) => have == want,
                    (Some(_), None) => true,
                    (None, _) => false,
                });
        state && name && labels
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_parse_and_bad_ones_are_refused() {
        let filter = Filter::parse(&[
            "state=running".into(),
            "state=exited".into(),
            "label=tier=web".into(),
            "label=canary".into(),
            "name=web".into(),
        ])
        .unwrap();
        assert_eq!(filter.states, vec![State::Running, State::Exited]);
        assert_eq!(
            filter.labels,
            vec![("tier".into(), Some("web".into())), ("canary".into(), None)]
        );
        assert!(filter.has_state());
        for bad in ["state", "state=sleeping", "color=red", "label=", "label==x"] {
            assert!(Filter::parse(&[bad.into()]).is_err(), "{bad}");
        }
    }
}
