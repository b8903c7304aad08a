//! The isolator plugin protocol's messages (docs/plugin-protocol.md): newline-
//! delimited JSON-RPC 2.0, berth the client, the plugin the server. One
//! home for both sides' types: the agent writes requests and reads replies
//! with these, and the JSON schemas in docs/plugin-protocol/ describe them.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use berth_isolator::{ContainerConfig, ContainerId, IsolatorError, Limitation, RecoveredContainer};

/// The protocol versions this berth speaks, newest first.
pub const VERSIONS: &[u32] = &[1];

/// The longest line (request, reply or notification) either side sends:
/// a longer reply is refused and the plugin restarted.
pub const MAX_LINE: usize = 1 << 20;

/// JSON-RPC error codes a plugin answers with; berth maps them onto
/// [`IsolatorError`] variants (and so onto API status codes).
pub mod code {
    /// The request is wrong: `data.field` names the field (a 400).
    pub const INVALID_CONFIG: i64 = -32001;
    /// The request conflicts with another container (a 409).
    pub const CONFLICT: i64 = -32002;
    /// A live update was refused; the old limits stay.
    pub const REFUSED: i64 = -32003;
    /// The host cannot do what was asked.
    pub const UNSUPPORTED: i64 = -32004;
    /// The plugin has no state for this container.
    pub const UNKNOWN_CONTAINER: i64 = -32005;
    /// The plugin does not speak any offered version (handshake only).
    pub const VERSION_MISMATCH: i64 = -32010;
    /// JSON-RPC: the method is not implemented (treated as "nothing to do").
    pub const METHOD_NOT_FOUND: i64 = -32601;
}

/// A request, berth to plugin.
#[derive(Debug, Serialize, Deserialize)]
pub struct Request {
    pub jsonrpc: String,
    pub id: u64,
    pub method: String,
    pub params: Value,
}

impl Request {
    pub fn new(id: u64, method: &str, params: Value) -> Self {
        Request {
            jsonrpc: "2.0".into(),
            id,
            method: method.into(),
            params,
        }
    }
}

/// A line from the plugin: a reply to a request (`id` set) or a
/// notification (`method` set, no `id`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Incoming {
    pub jsonrpc: String,
    #[serde(default)]
    pub id: Option<Value>,
    #[serde(default)]
    pub result: Option<Value>,
    #[serde(default)]
    pub error: Option<RpcError>,
    #[serde(default)]
    pub method: Option<String>,
    #[serde(default)]
    pub params: Option<Value>,
}

/// A JSON-RPC error object.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RpcError {
    pub code: i64,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

/// `handshake` params.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HandshakeParams {
    /// The protocol versions berth speaks.
    pub versions: Vec<u32>,
    /// The name the agent's config gives the plugin.
    pub name: String,
    /// berth's version.
    pub berth_version: String,
    /// The plugin's `[isolators.NAME]` table, as JSON (or null).
    pub settings: Value,
    /// A directory the plugin may keep state in (survives agent restarts).
    pub state_dir: String,
}

/// `handshake` result.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HandshakeResult {
    /// The version chosen, one of the offered ones.
    pub version: u32,
    /// The plugin's name: must equal the configured one.
    pub name: String,
    /// The plugin's own version, shown by `berth info`.
    #[serde(default)]
    pub plugin_version: Option<String>,
    /// The resource section it owns (always named after the plugin), with
    /// its JSON schema; null if it owns none.
    #[serde(default)]
    pub section: Option<SectionInfo>,
    /// What it supports on this host, shown by `GET /v1/info`.
    #[serde(default)]
    pub supports: Map<String, Value>,
}

/// The section a plugin owns.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SectionInfo {
    pub name: String,
    #[serde(default)]
    pub schema: Option<Value>,
}

/// `recover` params.
#[derive(Debug, Serialize)]
pub struct RecoverParams<'a> {
    pub containers: &'a [RecoveredContainer],
    pub orphans: &'a [ContainerId],
    /// True when this is a replay after the plugin (not the agent) restarted.
    pub replay: bool,
}

/// `validate` params.
#[derive(Debug, Serialize)]
pub struct ValidateParams<'a> {
    pub config: &'a ContainerConfig,
}

/// `prepare` params; the result is a [`berth_isolator::Contribution`].
#[derive(Debug, Serialize)]
pub struct PrepareParams<'a> {
    pub id: &'a ContainerId,
    pub config: &'a ContainerConfig,
}

/// `isolate` params.
#[derive(Debug, Serialize)]
pub struct IsolateParams<'a> {
    pub id: &'a ContainerId,
    pub pid: u32,
}

/// Params of `watch`, `usage`, `status`, `exit_limitation`, `cleanup`.
#[derive(Debug, Serialize)]
pub struct IdParams<'a> {
    pub id: &'a ContainerId,
}

/// `update` params.
#[derive(Debug, Serialize)]
pub struct UpdateParams<'a> {
    pub id: &'a ContainerId,
    pub resources: &'a berth_isolator::Resources,
}

/// `exit_limitation` result.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExitLimitationResult {
    #[serde(default)]
    pub limitation: Option<Limitation>,
}

/// `gc` params: the containers the agent knows; anything else the plugin
/// holds is leaked and may be reaped.
#[derive(Debug, Serialize)]
pub struct GcParams<'a> {
    pub live: &'a [ContainerId],
}

/// `gc` result.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GcResult {
    #[serde(default)]
    pub reaped: Vec<String>,
}

/// The `limitation` notification, plugin to berth, any time after `watch`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitationNotice {
    pub id: ContainerId,
    pub resource: String,
    pub message: String,
}

/// Reads one line of at most [`MAX_LINE`] bytes (without the newline).
/// `Ok(None)` at end of input; a longer line is an `InvalidData` error and
/// nothing past the limit is read.
pub fn read_line(input: &mut impl std::io::BufRead) -> std::io::Result<Option<Vec<u8>>> {
    let mut line = Vec::new();
    loop {
        let buf = input.fill_buf()?;
        if buf.is_empty() {
            return Ok(if line.is_empty() { None } else { Some(line) });
        }
        let (take, done) = match buf.iter().position(|b| *b == b'\n') {
            Some(i) => (i, true),
            None => (buf.len(), false),
        };
        if line.len() + take > MAX_LINE {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("a reply line longer than {MAX_LINE} bytes"),
            ));
        }
        line.extend_from_slice(&buf[..take]);
        input.consume(if done { take + 1 } else { take });
        if done {
            return Ok(Some(line));
        }
    }
}

/// Maps a plugin's error reply onto an [`IsolatorError`]. A field outside
/// the plugin's own section is named under it.
pub fn isolator_error(plugin: &str, error: RpcError) -> IsolatorError {
    let message = bounded(&error.message, 1024);
    let data = |key: &str| {
        error
            .data
            .as_ref()
            .and_then(|d| d.get(key))
            .and_then(Value::as_str)
            .map(|s| bounded(s, 256))
    };
    match error.code {
        code::INVALID_CONFIG => {
            let section = format!("resources.{plugin}");
            let field = match data("field") {
                Some(f) if f == section || f.starts_with(&format!("{section}.")) => f,
                Some(f) => format!("{section}.{f}"),
                None => section,
            };
            IsolatorError::invalid(field, message)
        }
        code::CONFLICT => IsolatorError::Conflict { message },
        code::REFUSED => IsolatorError::Refused { message },
        code::UNSUPPORTED => IsolatorError::Unsupported { message },
        code::UNKNOWN_CONTAINER => IsolatorError::UnknownContainer {
            id: data("id").unwrap_or_default(),
        },
        other => IsolatorError::Other(format!("plugin {plugin}: {message} (code {other})")),
    }
}

/// `s` cut to at most `max` bytes, on a char boundary.
pub fn bounded(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rpc(code: i64, data: Value) -> RpcError {
        RpcError {
            code,
            message: "bad".into(),
            data: Some(data),
        }
    }

    #[test]
    fn an_invalid_field_is_named_under_the_plugins_section() {
        let e = isolator_error(
            "pool",
            rpc(
                code::INVALID_CONFIG,
                json!({"field": "resources.pool.slots"}),
            ),
        );
        assert!(
            e.to_string().starts_with("invalid resources.pool.slots"),
            "{e}"
        );
        // A plugin cannot blame another isolator's field.
        let e = isolator_error(
            "pool",
            rpc(code::INVALID_CONFIG, json!({"field": "resources.cpu.cpus"})),
        );
        assert!(
            e.to_string()
                .starts_with("invalid resources.pool.resources.cpu.cpus"),
            "{e}"
        );
        let e = isolator_error("pool", rpc(code::INVALID_CONFIG, json!({"field": "slots"})));
        assert!(
            e.to_string().starts_with("invalid resources.pool.slots"),
            "{e}"
        );
        let e = isolator_error("pool", rpc(-1, Value::Null));
        assert!(matches!(e, IsolatorError::Other(_)));
    }

    /// The schemas in docs/plugin-protocol/ and these types are one
    /// contract: every method has its params schema, and the fields berth
    /// sends are the ones the schema lists.
    #[test]
    fn the_schemas_describe_what_berth_sends() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/plugin-protocol");
        let schema = |name: &str| -> Value {
            let path = dir.join(format!("{name}.schema.json"));
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        };
        let id = ContainerId::new("c1").unwrap();
        let config = ContainerConfig::for_command(id.clone(), ["true"]);
        let resources = berth_isolator::Resources::new();
        let sent: Vec<(&str, Value)> = vec![
            (
                "handshake",
                serde_json::to_value(HandshakeParams {
                    versions: VERSIONS.to_vec(),
                    name: "p".into(),
                    berth_version: "0".into(),
                    settings: Value::Null,
                    state_dir: "/x".into(),
                })
                .unwrap(),
            ),
            (
                "recover",
                serde_json::to_value(RecoverParams {
                    containers: &[],
                    orphans: &[],
                    replay: false,
                })
                .unwrap(),
            ),
            (
                "validate",
                serde_json::to_value(ValidateParams { config: &config }).unwrap(),
            ),
            (
                "prepare",
                serde_json::to_value(PrepareParams {
                    id: &id,
                    config: &config,
                })
                .unwrap(),
            ),
            (
                "isolate",
                serde_json::to_value(IsolateParams { id: &id, pid: 1 }).unwrap(),
            ),
            (
                "update",
                serde_json::to_value(UpdateParams {
                    id: &id,
                    resources: &resources,
                })
                .unwrap(),
            ),
            ("gc", serde_json::to_value(GcParams { live: &[] }).unwrap()),
            ("watch", serde_json::to_value(IdParams { id: &id }).unwrap()),
            ("usage", serde_json::to_value(IdParams { id: &id }).unwrap()),
            (
                "status",
                serde_json::to_value(IdParams { id: &id }).unwrap(),
            ),
            (
                "exit_limitation",
                serde_json::to_value(IdParams { id: &id }).unwrap(),
            ),
            (
                "cleanup",
                serde_json::to_value(IdParams { id: &id }).unwrap(),
            ),
        ];
        let methods = schema("message")["oneOf"][0]["properties"]["method"]["enum"].clone();
        assert_eq!(methods.as_array().unwrap().len(), sent.len());
        for (method, params) in sent {
            assert!(
                methods.as_array().unwrap().contains(&json!(method)),
                "{method}"
            );
            let schema = schema(&format!("{method}.params"));
            let mut listed: Vec<&String> =
                schema["properties"].as_object().unwrap().keys().collect();
            let mut required: Vec<&str> = schema["required"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap())
                .collect();
            let mut keys: Vec<&String> = params.as_object().unwrap().keys().collect();
            listed.sort();
            keys.sort();
            required.sort();
            assert_eq!(listed, keys, "{method}");
            assert_eq!(
                required,
                keys.iter().map(|k| k.as_str()).collect::<Vec<_>>(),
                "{method}"
            );
        }
        // The contribution schema lists the Contribution type's fields.
        let contribution = serde_json::to_value(berth_isolator::Contribution::default()).unwrap();
        let mut fields: Vec<&String> = contribution.as_object().unwrap().keys().collect();
        let prepare = schema("prepare.result");
        let mut listed: Vec<&String> = prepare["properties"].as_object().unwrap().keys().collect();
        fields.sort();
        listed.sort();
        assert_eq!(fields, listed);
    }

    #[test]
    fn lines_are_bounded() {
        let mut ok = std::io::Cursor::new(b"{}\nabc".to_vec());
        assert_eq!(read_line(&mut ok).unwrap().unwrap(), b"{}");
        assert_eq!(read_line(&mut ok).unwrap().unwrap(), b"abc");
        assert!(read_line(&mut ok).unwrap().is_none());
        let long = vec![b'x'; MAX_LINE + 10];
        let mut long = std::io::BufReader::new(std::io::Cursor::new(long));
        assert!(read_line(&mut long)
            .unwrap_err()
            .to_string()
            .contains("longer than"));
    }

    #[test]
    fn bounded_cuts_on_a_char_boundary() {
        assert_eq!(bounded("héllo", 2), "h...");
        assert_eq!(bounded("abc", 5), "abc");
    }
}
