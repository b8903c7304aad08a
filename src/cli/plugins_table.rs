//! The plugins part of `berth info`: each plugin's version, state and last
//! error (from `plugin` in its `/v1/info` isolator entry).

use super::table::render;
use crate::wire::info::Info;

/// A `PLUGIN` table, or nothing when no isolator is a plugin.
pub fn plugins(info: &Info) -> String {
    let text = |v: &serde_json::Value| match v {
        serde_json::Value::Null => "-".to_string(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let rows: Vec<Vec<String>> = info
        .isolators
        .iter()
        .filter_map(|i| Some((i, i.details.get("plugin").filter(|p| p.is_object())?)))
        .map(|(i, p)| {
            vec![
                i.name.clone(),
                text(&p["mode"]),
                text(&p["policy"]),
                text(&p["version"]),
                text(&p["protocol_version"]),
                text(&p["state"]),
                text(&p["last_error"]),
            ]
        })
        .collect();
    if rows.is_empty() {
        return String::new();
    }
    format!(
        "\n{}",
        render(
            &[
                "PLUGIN",
                "MODE",
                "POLICY",
                "VERSION",
                "PROTOCOL",
                "STATE",
                "LAST ERROR"
            ],
            &rows
        )
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::wire::info::Info;

    fn info(isolators: serde_json::Value) -> Info {
        serde_json::from_value(
            json!({"version": "0", "cgroup_mode": "v1", "isolators": isolators,
            "work_dir": "/w", "runtime_dir": "/r", "userns": null}),
        )
        .unwrap()
    }

    #[test]
    fn plugins_show_version_state_and_last_error() {
        let info = info(json!([
            {"name": "cpu"},
            {"name": "pool", "plugin": {"mode": "long-lived", "policy": "required", "version": "0.1.0",
             "protocol_version": 1, "state": "restarting", "last_error": "died: it exited"}},
        ]));
        let out = super::plugins(&info);
        assert!(out.contains("pool"), "{out}");
        assert!(
            out.contains("0.1.0") && out.contains("restarting") && out.contains("died: it exited"),
            "{out}"
        );
        assert!(!out.contains("cpu"), "{out}");
        assert_eq!(super::plugins(&self::info(json!([{"name": "cpu"}]))), "");
    }
}
