//! Roles on the remote API: a client certificate's identity (its subject
//! CN, else its first DNS name) is looked up in `[api.roles]`. `operator`
//! may do everything; `read-only` may only read (see [`read_only_allows`]);
//! an identity in no list is refused with 403. Every refusal is a JSON
//! error and an audit line (target `berth::audit`: who, what, why).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::ApiError;

/// `[api.roles]`: identities per role.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoleSettings {
    /// Identities allowed every request.
    pub operator: Vec<String>,
    /// Identities allowed only the reads of [`read_only_allows`].
    #[serde(rename = "read-only")]
    pub read_only: Vec<String>,
}

/// What the middleware checks requests against: `[api.roles]` for
/// client certificates, `[[api.tokens]]` for bearer tokens.
#[derive(Debug, Clone, Default)]
pub struct Access {
    pub roles: RoleSettings,
    pub tokens: super::tokens::Tokens,
}

/// A role an identity holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Operator,
    ReadOnly,
}

impl RoleSettings {
    /// The role of `identity`, if any (operator wins when listed twice).
    pub fn role_of(&self, identity: &str) -> Option<Role> {
        if self.operator.iter().any(|n| n == identity) {
            Some(Role::Operator)
        } else if self.read_only.iter().any(|n| n == identity) {
            Some(Role::ReadOnly)
        } else {
            None
        }
    }
}

/// Who a TCP connection's client is: the identity its certificate names,
/// or `None` when the listener verifies no client certificates.
#[derive(Debug, Clone)]
pub struct Peer {
    pub identity: Option<String>,
    pub address: std::net::SocketAddr,
}

/// Whether the read-only role may make this request: GETs of the agent's
/// info, the container list, a container's inspect, logs and stats, the
/// event stream and the metrics. Not `wait` (it holds a connection open
/// for a container's whole life) and not `files` (a container's files may
/// hold secrets).
pub fn read_only_allows(method: &Method, path: &str) -> bool {
    if method != Method::GET && method != Method::HEAD {
        return false;
    }
    let parts: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    matches!(
        parts.as_slice(),
        ["", "metrics"]
            | ["", "v1", "info"]
            | ["", "v1", "events"]
            | ["", "v1", "containers"]
            | ["", "v1", "containers", _]
            | ["", "v1", "containers", _, "logs" | "stats"]
            | ["", "v1", "volumes"]
            | ["", "v1", "volumes", _]
    )
}

/// The middleware: refuses a request the connection's identity (or its
/// bearer token) may not make. A request with an `Authorization` header is
/// judged by its token alone.
pub async fn authorize(
    State(access): State<Arc<Access>>,
    request: Request,
    next: Next,
) -> Response {
    let peer = request.extensions().get::<Peer>().cloned();
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let address = peer
        .as_ref()
        .map(|p| p.address.to_string())
        .unwrap_or_default();
    let (who, role, unauthorized) = match request.headers().get(header::AUTHORIZATION) {
        Some(value) => match bearer(value) {
            Some(token) => match access.tokens.check(token) {
                Some((name, role)) => (format!("token {name}"), Some(role), None),
                None => (
                    "unknown token".to_string(),
                    None,
                    Some("the bearer token matches no [[api.tokens]] entry"),
                ),
            },
            None => (
                "(unsupported authorization)".to_string(),
                None,
                Some("only `Authorization: Bearer <token>` is accepted"),
            ),
        },
        None => {
            let identity = peer.as_ref().and_then(|p| p.identity.clone());
            let role = identity
                .as_deref()
                .and_then(|identity| access.roles.role_of(identity));
            let unauthorized = (peer.is_some() && identity.is_none())
                .then_some("no client certificate or bearer token identifies this request");
            let who = identity.unwrap_or_else(|| "(no client certificate)".to_string());
            (who, role, unauthorized)
        }
    };
    let refusal = match (role, unauthorized) {
        (_, Some(why)) => Some((StatusCode::UNAUTHORIZED, "unauthorized", why)),
        (Some(Role::Operator), None) => None,
        (Some(Role::ReadOnly), None) if read_only_allows(&method, &path) => None,
        (Some(Role::ReadOnly), None) => Some((
            StatusCode::FORBIDDEN,
            "forbidden",
            "the read-only role may not make this request",
        )),
        (None, None) => Some((
            StatusCode::FORBIDDEN,
            "forbidden",
            "this identity holds no role in [api.roles]",
        )),
    };
    match refusal {
        None => next.run(request).await,
        Some((status, code, why)) => {
            // `who` is the client's own text (its certificate's CN): logged
            // quoted and escaped, so it cannot forge a line.
            tracing::warn!(
                target: "berth::audit",
                who = ?who,
                peer = %address,
                method = %method,
                path = %path,
                status = status.as_u16(),
                why,
                "API request denied"
            );
            let mut response = ApiError::new(status, code, format!("{who}: {why}")).into_response();
            if status == StatusCode::UNAUTHORIZED && !access.tokens.is_empty() {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            response
        }
    }
}

/// The token of `Bearer <token>` (the scheme's case ignored).
fn bearer(value: &HeaderValue) -> Option<&str> {
    let value = value.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_only_mapping() {
        assert!(read_only_allows(&Method::GET, "/v1/containers"));
        assert!(read_only_allows(&Method::GET, "/v1/containers/a"));
        assert!(read_only_allows(&Method::GET, "/v1/containers/a/logs"));
        assert!(read_only_allows(&Method::GET, "/v1/containers/a/stats"));
        assert!(read_only_allows(&Method::GET, "/metrics"));
        assert!(!read_only_allows(&Method::POST, "/v1/containers"));
        assert!(!read_only_allows(&Method::DELETE, "/v1/containers/a"));
        assert!(!read_only_allows(&Method::GET, "/v1/containers/a/files"));
        assert!(!read_only_allows(&Method::GET, "/v1/containers/a/wait"));
        assert!(!read_only_allows(&Method::POST, "/v1/containers/a/kill"));
    }
}
