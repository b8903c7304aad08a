//! The plugins part of `berth info`: each plugin's version, state and last
//! error (from `plugin` in its `/v1/info` isolator entry).

use super::table::render;

/// A `PLUGIN` table, or nothing when no isolator is a plugin.
pub fn plugins(info: &serde_json::Value) -> String {
    let text = |v: &serde_json::Value| match v {
        serde_json::Value::Null => "-".to_string(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let rows: Vec<Vec<String>> = info["isolators"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|i| i["plugin"].is_object())
        .map(|i| {
            let p = &i["plugin"];
            vec![
                text(&i["name"]),
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

    #[test]
    fn plugins_show_version_state_and_last_error() {
        let info = json!({"isolators": [
            {"name": "cpu"},
            {"name": "pool", "plugin": {"mode": "long-lived", "policy": "required", "version": "0.1.0",
             "protocol_version": 1, "state": "restarting", "last_error": "died: it exited"}},
        ]});
        let out = super::plugins(&info);
        assert!(out.contains("pool"), "{out}");
        assert!(
            out.contains("0.1.0") && out.contains("restarting") && out.contains("died: it exited"),
            "{out}"
        );
        assert!(!out.contains("cpu"), "{out}");
        assert_eq!(super::plugins(&json!({"isolators": [{"name": "cpu"}]})), "");
    }
}
