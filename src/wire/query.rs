//! Query strings of the API, as typed structs: the agent parses them
//! ([`parse`]), the CLI writes them ([`to_query`]). A bad value is refused
//! naming its parameter (`invalid follow: expected true or false, got
//! "maybe"`).

use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer, Serialize};

/// `DELETE /v1/containers/{id}` and `DELETE /v1/images/{ref}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RemoveQuery {
    /// Remove even if it runs (a container) or is used (an image).
    #[serde(default, deserialize_with = "flag", skip_serializing_if = "is_false")]
    pub force: bool,
}

/// `POST /v1/containers`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LaunchQuery {
    /// Answer with the container's output instead of its record: the
    /// framed stream of `GET .../logs?stream=all&frames=true&follow=true&exit=true`
    /// from its first byte, the exit frame last, the id in the
    /// `x-berth-container-id` header (decision 0042). `berth run` uses it.
    #[serde(default, deserialize_with = "flag", skip_serializing_if = "is_false")]
    pub attach: bool,
}

/// `GET /v1/containers/{id}/files` and `.../files/content` (which also
/// takes a [`Window`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FilesQuery {
    /// Relative to the sandbox; a leading `/` names the sandbox's root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

/// The part of a file or log to read: `offset` and `length` bytes, of
/// `GET .../files/content` and `GET .../logs` (parsed beside their own
/// query struct).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Window {
    /// Where to start reading.
    #[serde(
        default,
        deserialize_with = "count",
        skip_serializing_if = "Option::is_none"
    )]
    pub offset: Option<u64>,
    /// How much to read at most.
    #[serde(
        default,
        deserialize_with = "count",
        skip_serializing_if = "Option::is_none"
    )]
    pub length: Option<u64>,
}

/// `GET /v1/containers/{id}/logs` (which also takes a [`Window`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LogsQuery {
    /// `stdout` (default), `stderr` or `all`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    /// The last N lines.
    #[serde(
        default,
        deserialize_with = "count",
        skip_serializing_if = "Option::is_none"
    )]
    pub tail: Option<u64>,
    /// RFC 3339: nothing that arrived earlier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// RFC 3339: nothing that arrived later.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
    #[serde(default, deserialize_with = "flag", skip_serializing_if = "is_false")]
    pub follow: bool,
    #[serde(default, deserialize_with = "flag", skip_serializing_if = "is_false")]
    pub timestamps: bool,
    /// Both streams framed (needs `stream=all`).
    #[serde(default, deserialize_with = "flag", skip_serializing_if = "is_false")]
    pub frames: bool,
    /// End a followed framed body with an exit frame.
    #[serde(default, deserialize_with = "flag", skip_serializing_if = "is_false")]
    pub exit: bool,
    /// `raw` (default) or `jsonl`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
}

fn is_false(value: &bool) -> bool {
    !value
}

/// A flag: `true`, `1` or no value are true; `false` and `0` false.
fn flag<'de, D: Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    let text = String::deserialize(deserializer)?;
    match text.as_str() {
        "true" | "1" | "" => Ok(true),
        "false" | "0" => Ok(false),
        other => Err(D::Error::custom(format!(
            "expected true or false, got {other:?}"
        ))),
    }
}

/// A non-negative integer.
fn count<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
    let text = String::deserialize(deserializer)?;
    text.parse()
        .map(Some)
        .map_err(|_| D::Error::custom(format!("expected a non-negative integer, got {text:?}")))
}

/// A query string that does not fit its struct: the parameter and why.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid {field}: {message}")]
pub struct QueryError {
    /// The parameter at fault (`query` when none is).
    pub field: String,
    pub message: String,
}

/// Parses a query string (without the `?`) into `T`.
pub fn parse<T: DeserializeOwned>(query: &str) -> Result<T, QueryError> {
    let deserializer =
        serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
    serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let field = e.path().to_string();
        QueryError {
            field: if field.is_empty() || field == "." {
                "query".into()
            } else {
                field
            },
            message: e.into_inner().to_string(),
        }
    })
}

/// `path?query` with `value` as the query string (just `path` when it has
/// no parameters).
pub fn to_query<T: Serialize>(path: &str, value: &T) -> String {
    let query = serde_urlencoded::to_string(value).expect("a query struct serializes");
    match query.is_empty() {
        true => path.to_string(),
        false => format!("{path}?{query}"),
    }
}

/// A URL path segment: everything but unreserved characters
/// percent-encoded, so an id, name or image reference cannot change the
/// path.
pub fn segment(value: &str) -> String {
    const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(value, SEGMENT).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_round_trip() {
        let query = LogsQuery {
            stream: Some("all".into()),
            tail: Some(3),
            since: Some("2024-05-01T12:00:00+02:00".into()),
            follow: true,
            frames: true,
            ..Default::default()
        };
        let text = to_query("/x", &query);
        assert_eq!(
            text,
            "/x?stream=all&tail=3&since=2024-05-01T12%3A00%3A00%2B02%3A00&follow=true&frames=true"
        );
        let (_, q) = text.split_once('?').unwrap();
        assert_eq!(parse::<LogsQuery>(q).unwrap(), query);
        let files = FilesQuery {
            path: Some("a b/c&d".into()),
        };
        let text = to_query("/f", &files);
        assert_eq!(
            parse::<FilesQuery>(text.split_once('?').unwrap().1).unwrap(),
            files
        );
        assert_eq!(to_query("/r", &RemoveQuery::default()), "/r");
    }

    #[test]
    fn flags_and_counts_accept_what_they_did() {
        let force = |q: &str| parse::<RemoveQuery>(q).map(|r| r.force);
        assert_eq!(force(""), Ok(false));
        for yes in ["force", "force=", "force=true", "force=1"] {
            assert_eq!(force(yes), Ok(true), "{yes}");
        }
        for no in ["force=false", "force=0"] {
            assert_eq!(force(no), Ok(false), "{no}");
        }
        let bad = force("force=maybe").unwrap_err();
        assert_eq!(
            bad.to_string(),
            r#"invalid force: expected true or false, got "maybe""#
        );
        let bad = parse::<Window>("offset=-1").unwrap_err();
        assert_eq!(
            bad.to_string(),
            r#"invalid offset: expected a non-negative integer, got "-1""#
        );
        // Unknown parameters are ignored, as before.
        assert_eq!(force("other=x"), Ok(false));
    }

    #[test]
    fn segments_are_escaped() {
        assert_eq!(segment("web-1_a.b~"), "web-1_a.b~");
        assert_eq!(segment("a/b c"), "a%2Fb%20c");
        assert_eq!(
            segment("library/alpine:3.19@sha256:ab"),
            "library%2Falpine%3A3.19%40sha256%3Aab"
        );
    }
}
