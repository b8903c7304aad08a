//! A plugin's cgroup settings (decision 0041): the runtime-spec
//! `linux.resources` keys a plugin's `prepare` may return, each mapped to
//! the built-in isolator and resource-section field that applies it. berth
//! checks each value, refuses a key the container's own request sets, and
//! applies the rest through that built-in's `update`, the code that applies
//! a tenant's live update, with its own validation, on cgroup v1 and v2
//! alike. A plugin never writes a cgroup file itself.

use serde_json::{Map, Value};

/// The keys a plugin may set, as `linux_resources` paths, for messages.
pub const SUPPORTED: &str = "memory.limit, memory.reservation, pids.limit, blockIO.weight, \
     cpu.quota with cpu.period";

/// One plugin setting, translated: built-in isolator `isolator`'s section
/// field `field` takes `value`; `key` is the plugin's
/// `linux_resources` path it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Setting {
    pub key: &'static str,
    pub isolator: &'static str,
    pub field: &'static str,
    pub value: Value,
}

/// Why a plugin's `linux_resources` were refused: names the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("linux_resources.{key}: {why}")]
pub struct Refused {
    pub key: String,
    pub why: String,
}

fn refuse(key: impl Into<String>, why: impl Into<String>) -> Refused {
    Refused {
        key: key.into(),
        why: why.into(),
    }
}

/// Translates a plugin's `linux_resources` fragment. Every key must be
/// one berth applies ([`SUPPORTED`]) with a value in range; anything else
/// is refused, naming it.
///
/// ```
/// use berth::plugins::cgroup_settings::translate;
/// let fragment = serde_json::json!({"pids": {"limit": 17}, "cpu": {"quota": 50000, "period": 100000}});
/// let settings = translate(fragment.as_object().unwrap()).unwrap();
/// // In key order: cpu, then pids.
/// assert_eq!((settings[0].isolator, settings[0].field), ("cpu", "cpus"));
/// assert_eq!(settings[0].value, 0.5);
/// assert_eq!((settings[1].isolator, settings[1].field), ("pids", "pids_limit"));
/// assert!(translate(serde_json::json!({"cpu": {"shares": 2}}).as_object().unwrap()).is_err());
/// ```
pub fn translate(fragment: &Map<String, Value>) -> Result<Vec<Setting>, Refused> {
    let mut settings = Vec::new();
    for (group, keys) in fragment {
        let Some(keys) = keys.as_object() else {
            return Err(refuse(group.as_str(), "must be an object"));
        };
        match group.as_str() {
            "memory" => {
                for (key, value) in keys {
                    let (path, field, min): (&'static str, _, _) = match key.as_str() {
                        "limit" => ("memory.limit", "memory", 1),
                        "reservation" => ("memory.reservation", "memory_reservation", 0),
                        other => return Err(unsupported(&format!("memory.{other}"))),
                    };
                    let bytes = integer(path, value, min, i64::MAX as u64)?;
                    settings.push(setting(path, "memory", field, bytes.into()));
                }
            }
            "pids" => {
                for (key, value) in keys {
                    if key != "limit" {
                        return Err(unsupported(&format!("pids.{key}")));
                    }
                    // No -1 ("unlimited"): a plugin may bound, not unbound.
                    let limit = integer("pids.limit", value, 1, 4_194_304)?;
                    settings.push(setting("pids.limit", "pids", "pids_limit", limit.into()));
                }
            }
            "blockIO" => {
                for (key, value) in keys {
                    if key != "weight" {
                        return Err(unsupported(&format!("blockIO.{key}")));
                    }
                    let weight = integer("blockIO.weight", value, 10, 1000)?;
                    settings.push(setting(
                        "blockIO.weight",
                        "blkio",
                        "blkio_weight",
                        weight.into(),
                    ));
                }
            }
            "cpu" => {
                if let Some(other) = keys
                    .keys()
                    .find(|k| !matches!(k.as_str(), "quota" | "period"))
                {
                    return Err(unsupported(&format!("cpu.{other}")));
                }
                let (Some(quota), Some(period)) = (keys.get("quota"), keys.get("period")) else {
                    return Err(refuse("cpu", "quota and period come together"));
                };
                let quota = integer("cpu.quota", quota, 1000, 1 << 40)?;
                let period = integer("cpu.period", period, 1000, 1_000_000)?;
                let cpus = quota as f64 / period as f64;
                settings.push(setting("cpu.quota", "cpu", "cpus", cpus.into()));
            }
            other => return Err(unsupported(other)),
        }
    }
    Ok(settings)
}

fn setting(
    key: &'static str,
    isolator: &'static str,
    field: &'static str,
    value: Value,
) -> Setting {
    Setting {
        key,
        isolator,
        field,
        value,
    }
}

fn unsupported(key: &str) -> Refused {
    refuse(
        key,
        format!("not a setting berth applies for a plugin (it applies {SUPPORTED})"),
    )
}

fn integer(key: &str, value: &Value, min: u64, max: u64) -> Result<u64, Refused> {
    value
        .as_u64()
        .filter(|v| (min..=max).contains(v))
        .ok_or_else(|| {
            refuse(
                key,
                format!("{value} is not an integer from {min} to {max}"),
            )
        })
}

/// Whether the container's own request sets `setting`'s field: then the
/// plugin may not (the tenant's value and the plugin's would fight).
pub fn set_by_request(resources: &berth_isolator::Resources, setting: &Setting) -> bool {
    resources
        .raw_section(setting.isolator)
        .and_then(|section| section.get(setting.field))
        .is_some_and(|value| !value.is_null())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn t(v: Value) -> Result<Vec<Setting>, Refused> {
        translate(v.as_object().unwrap())
    }

    #[test]
    fn each_supported_key_maps_onto_its_built_in_section_field() {
        let s = t(json!({
            "memory": {"limit": 67108864, "reservation": 1048576},
            "pids": {"limit": 17},
            "blockIO": {"weight": 300},
            "cpu": {"quota": 25000, "period": 100000},
        }))
        .unwrap();
        let got: Vec<(&str, &str, Value)> = s
            .iter()
            .map(|s| (s.isolator, s.field, s.value.clone()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("blkio", "blkio_weight", json!(300)),
                ("cpu", "cpus", json!(0.25)),
                ("memory", "memory", json!(67108864)),
                ("memory", "memory_reservation", json!(1048576)),
                ("pids", "pids_limit", json!(17)),
            ]
        );
    }

    #[test]
    fn unknown_keys_and_groups_are_refused_by_name() {
        for (fragment, key) in [
            (json!({"cpu": {"shares": 2}}), "cpu.shares"),
            (json!({"memory": {"swap": 1}}), "memory.swap"),
            (json!({"hugepageLimits": []}), "hugepageLimits"),
            (json!({"devices": [{"allow": true}]}), "devices"),
            (json!({"pids": {"limit": 1, "../../x": 1}}), "pids.../../x"),
        ] {
            let e = t(fragment.clone()).unwrap_err();
            assert_eq!(e.key, key, "{fragment}: {e}");
        }
    }

    #[test]
    fn values_out_of_range_are_refused() {
        for (fragment, key) in [
            (json!({"pids": {"limit": -1}}), "pids.limit"),
            (json!({"pids": {"limit": 0}}), "pids.limit"),
            (json!({"pids": {"limit": "17"}}), "pids.limit"),
            (json!({"memory": {"limit": 0}}), "memory.limit"),
            (json!({"memory": {"limit": u64::MAX}}), "memory.limit"),
            (json!({"blockIO": {"weight": 5000}}), "blockIO.weight"),
            (json!({"cpu": {"quota": 100000}}), "cpu"),
            (json!({"cpu": {"quota": -1, "period": 100000}}), "cpu.quota"),
            (
                json!({"cpu": {"quota": 100000, "period": 10}}),
                "cpu.period",
            ),
        ] {
            let e = t(fragment.clone()).unwrap_err();
            assert_eq!(e.key, key, "{fragment}: {e}");
        }
    }

    #[test]
    fn a_field_the_request_sets_is_the_requests() {
        let resources = berth_isolator::Resources::with_section("pids", &json!({"pids_limit": 50}));
        let s = &t(json!({"pids": {"limit": 17}})).unwrap()[0];
        assert!(set_by_request(&resources, s));
        assert!(!set_by_request(&berth_isolator::Resources::new(), s));
    }
}
