//! Bearer tokens on the remote API, for tools that cannot hold a client
//! certificate (decision 0032). The config holds each token's name, role
//! and salted hash, never the token:
//!
//! ```toml
//! [[api.tokens]]
//! name = "grafana"
//! role = "read-only"
//! hash = "sha256:<salt hex>:<hex of sha256(salt ‖ token)>"
//! ```
//!
//! `berth token hash` reads a token on stdin and prints that entry. A
//! request's `Authorization: Bearer <token>` is hashed with every entry's
//! salt and compared in constant time with every entry's hash (all of them,
//! whichever matches). Tokens are only accepted on the TLS listener; the
//! unix socket's access is its file mode and group.
//!
//! Tokens must be random (at least 128 bits: `berth token hash` refuses
//! fewer than 22 characters): a salted SHA-256 is then as good as a slow
//! password hash, and costs the agent nothing per request.

use std::io::Read;

use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::roles::Role;

/// The shortest token `berth token hash` accepts (22 base64 characters
/// are 132 bits).
pub const MIN_TOKEN_LEN: usize = 22;

const SALT_LEN: usize = 16;

/// One `[[api.tokens]]` entry.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenSettings {
    /// Who holds the token, for audit lines.
    pub name: String,
    /// `operator` or `read-only`.
    pub role: TokenRole,
    /// `sha256:<salt hex>:<hash hex>`.
    pub hash: String,
}

/// The role a token grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum TokenRole {
    #[serde(rename = "operator")]
    Operator,
    #[serde(rename = "read-only")]
    ReadOnly,
}

impl TokenRole {
    fn role(self) -> Role {
        match self {
            TokenRole::Operator => Role::Operator,
            TokenRole::ReadOnly => Role::ReadOnly,
        }
    }
}

/// A bad `[[api.tokens]]` entry or token.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("api.tokens {name:?}: hash {value:?}: {why}")]
    Hash {
        name: String,
        value: String,
        why: &'static str,
    },
    #[error("api.tokens: name {0:?} is given twice")]
    Duplicate(String),
    #[error("api.tokens: a token needs a name")]
    NoName,
    #[error("token: {0}")]
    Token(String),
    #[error("read a random salt from /dev/urandom: {0}")]
    Random(std::io::Error),
}

#[derive(Debug, Clone)]
struct Entry {
    name: String,
    role: Role,
    salt: Vec<u8>,
    hash: [u8; 32],
}

/// The configured tokens, parsed.
#[derive(Debug, Clone, Default)]
pub struct Tokens {
    entries: Vec<Entry>,
}

impl Tokens {
    /// Parses the entries; a malformed hash or a repeated name is an error
    /// (the agent refuses to start).
    pub fn new(settings: &[TokenSettings]) -> Result<Tokens, TokenError> {
        let mut entries: Vec<Entry> = Vec::new();
        for setting in settings {
            if setting.name.is_empty() {
                return Err(TokenError::NoName);
            }
            if entries.iter().any(|e| e.name == setting.name) {
                return Err(TokenError::Duplicate(setting.name.clone()));
            }
            let bad = |why| TokenError::Hash {
                name: setting.name.clone(),
                value: setting.hash.clone(),
                why,
            };
            let mut parts = setting.hash.split(':');
            let (Some("sha256"), Some(salt), Some(hash), None) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                return Err(bad("expected sha256:<salt hex>:<hash hex>"));
            };
            let salt = hex::decode(salt).map_err(|_| bad("the salt is not hex"))?;
            if salt.len() < 8 {
                return Err(bad("the salt is shorter than 8 bytes"));
            }
            let hash: [u8; 32] = hex::decode(hash)
                .ok()
                .and_then(|h| h.try_into().ok())
                .ok_or_else(|| bad("the hash is not 64 hex digits"))?;
            entries.push(Entry {
                name: setting.name.clone(),
                role: setting.role.role(),
                salt,
                hash,
            });
        }
        Ok(Tokens { entries })
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The name and role of the entry `token` matches. Every entry is
    /// hashed and compared, in constant time, whichever matches.
    pub fn check(&self, token: &str) -> Option<(&str, Role)> {
        let mut found = None;
        for entry in &self.entries {
            let digest = digest(&entry.salt, token.as_bytes());
            if constant_time_eq(&digest, &entry.hash) {
                found = Some((entry.name.as_str(), entry.role));
            }
        }
        found
    }
}

fn digest(salt: &[u8], token: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(salt);
    hasher.update(token);
    hasher.finalize().into()
}

/// Compares two digests without an early exit.
fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let mut difference = 0u8;
    for (x, y) in a.iter().zip(b) {
        difference |= x ^ y;
    }
    std::hint::black_box(difference) == 0
}

/// The `hash` value for `token` with `salt`.
pub fn hash_with_salt(token: &str, salt: &[u8]) -> String {
    format!(
        "sha256:{}:{}",
        hex::encode(salt),
        hex::encode(digest(salt, token.as_bytes()))
    )
}

/// The config entry for a token read from `input` (its first line, the
/// trailing newline removed), with a fresh random salt.
pub fn config_entry(
    input: &mut impl Read,
    name: &str,
    role: TokenRole,
) -> Result<String, TokenError> {
    let mut text = String::new();
    input
        .take(64 * 1024)
        .read_to_string(&mut text)
        .map_err(|e| TokenError::Token(format!("read stdin: {e}")))?;
    let token = text.lines().next().unwrap_or("").trim_end_matches('\r');
    if token.len() < MIN_TOKEN_LEN {
        return Err(TokenError::Token(format!(
            "give a random token of at least {MIN_TOKEN_LEN} characters on stdin (e.g. `head -c 24 /dev/urandom | base64`)"
        )));
    }
    if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(TokenError::Token(
            "a token holds no spaces or control characters".into(),
        ));
    }
    if name.is_empty() || name.contains(['"', '\\', '\n']) {
        return Err(TokenError::Token(format!(
            "name {name:?}: give a plain name"
        )));
    }
    let mut salt = [0u8; SALT_LEN];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut salt))
        .map_err(TokenError::Random)?;
    let role = match role {
        TokenRole::Operator => "operator",
        TokenRole::ReadOnly => "read-only",
    };
    Ok(format!(
        "[[api.tokens]]\nname = \"{name}\"\nrole = \"{role}\"\nhash = \"{}\"\n",
        hash_with_salt(token, &salt)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setting(name: &str, role: TokenRole, hash: String) -> TokenSettings {
        TokenSettings {
            name: name.into(),
            role,
            hash,
        }
    }

    #[test]
    fn a_token_matches_its_entry_only() {
        let tokens = Tokens::new(&[
            setting(
                "ops",
                TokenRole::Operator,
                hash_with_salt("op-token-0123456789abcdef", b"saltsalt1"),
            ),
            setting(
                "grafana",
                TokenRole::ReadOnly,
                hash_with_salt("ro-token-0123456789abcdef", b"saltsalt2"),
            ),
        ])
        .unwrap();
        assert_eq!(
            tokens.check("op-token-0123456789abcdef"),
            Some(("ops", Role::Operator))
        );
        assert_eq!(
            tokens.check("ro-token-0123456789abcdef"),
            Some(("grafana", Role::ReadOnly))
        );
        assert_eq!(tokens.check("ro-token-0123456789abcdeF"), None);
        assert_eq!(tokens.check(""), None);
    }

    #[test]
    fn bad_entries_are_refused() {
        for hash in [
            "md5:00:00".to_string(),
            "sha256:zz:00".to_string(),
            "sha256:0011:".to_string() + &"0".repeat(64),
            format!("sha256:{}:abc", "00".repeat(16)),
            format!("sha256:{}:{}:x", "00".repeat(16), "0".repeat(64)),
        ] {
            let e = Tokens::new(&[setting("x", TokenRole::Operator, hash.clone())]).unwrap_err();
            assert!(e.to_string().starts_with("api.tokens \"x\""), "{hash}: {e}");
        }
        let good = hash_with_salt("t", b"12345678");
        let e = Tokens::new(&[
            setting("x", TokenRole::Operator, good.clone()),
            setting("x", TokenRole::ReadOnly, good),
        ])
        .unwrap_err();
        assert!(matches!(e, TokenError::Duplicate(_)));
    }

    #[test]
    fn the_config_entry_parses_and_matches_and_holds_no_token() {
        let token = "Zm9vYmFyYmF6cXV4cXV1eDEyMzQ1Njc4";
        let entry = config_entry(
            &mut format!("{token}\n").as_bytes(),
            "ci",
            TokenRole::ReadOnly,
        )
        .unwrap();
        assert!(!entry.contains(token));
        #[derive(Deserialize)]
        struct Api {
            tokens: Vec<TokenSettings>,
        }
        #[derive(Deserialize)]
        struct File {
            api: Api,
        }
        let file: File = toml::from_str(&entry).unwrap();
        let tokens = Tokens::new(&file.api.tokens).unwrap();
        assert_eq!(tokens.check(token), Some(("ci", Role::ReadOnly)));
        assert!(config_entry(&mut "short\n".as_bytes(), "ci", TokenRole::Operator).is_err());
    }
}
