//! Bearer tokens for the OTLP and admin APIs (`[auth]`).
//!
//! Two separate sets: ingest tokens may only send telemetry, admin tokens
//! may only administer. Clients send `Authorization: Bearer <token>` (gRPC:
//! the `authorization` metadata entry), as the Collector's bearer-token
//! extension and the SDKs' header settings do. Tokens are kept as SHA-256
//! digests and never logged; a request is checked before its body is read.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The `[auth]` section.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSection {
    /// Require a token on the OTLP ports and the admin API (health
    /// endpoints stay open).
    pub enabled: bool,
    /// File with the ingest tokens, one per line (`#` starts a comment).
    pub ingest_tokens_file: PathBuf,
    /// File with the admin tokens, one per line. Members present the first
    /// one when they call each other's admin API (join, proxied changes).
    pub admin_tokens_file: PathBuf,
    /// Ingest tokens, comma-separated: for `OTELRAFT_AUTH__INGEST_TOKENS`
    /// (prefer the file; never write tokens into the TOML itself).
    pub ingest_tokens: String,
    /// Admin tokens, comma-separated: for `OTELRAFT_AUTH__ADMIN_TOKENS`.
    pub admin_tokens: String,
    /// Require an admin token on `/metrics` too.
    pub protect_metrics: bool,
}

/// What a token allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Sending telemetry to the OTLP ports.
    Ingest,
    /// The admin API.
    Admin,
}

/// Why a request was not let through.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization: Bearer` header.
    #[error("missing bearer token (Authorization: Bearer <token>)")]
    Missing,
    /// A token no set holds.
    #[error("unknown bearer token")]
    Unknown,
    /// A valid token of the other set.
    #[error("this token may not be used here: it is an {0} token")]
    WrongScope(&'static str),
}

impl AuthError {
    /// Never retryable: the client must send another token.
    pub fn retryable(&self) -> bool {
        false
    }

    /// 401 for a missing or unknown token, 403 for the wrong kind.
    pub fn forbidden(&self) -> bool {
        matches!(self, AuthError::WrongScope(_))
    }
}

type TokenDigest = [u8; 32];

fn digest(token: &str) -> TokenDigest {
    Sha256::digest(token.as_bytes()).into()
}

/// The token sets of a running node; `reload` replaces them while it runs.
pub struct Tokens {
    sets: std::sync::RwLock<Arc<TokenSets>>,
}

/// Both token sets as read from the configuration.
pub struct TokenSets {
    ingest: HashSet<TokenDigest>,
    admin: HashSet<TokenDigest>,
    /// The token this node presents to other members' admin APIs.
    member: Option<String>,
}

impl std::fmt::Debug for Tokens {
    // Never prints a token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sets = self.current();
        f.debug_struct("Tokens")
            .field("ingest", &sets.ingest.len())
            .field("admin", &sets.admin.len())
            .finish_non_exhaustive()
    }
}

/// Why the token configuration is unusable; names the field.
#[derive(Debug, thiserror::Error)]
#[error("config field `{field}`: {message}")]
pub struct AuthConfigError {
    /// The field at fault.
    pub field: &'static str,
    /// What is wrong.
    pub message: String,
}

impl AuthConfigError {
    /// Never retryable.
    pub fn retryable(&self) -> bool {
        false
    }
}

fn read_list(field: &'static str, path: &Path) -> Result<Vec<String>, AuthConfigError> {
    if path.as_os_str().is_empty() {
        return Ok(Vec::new());
    }
    let text = std::fs::read_to_string(path).map_err(|e| AuthConfigError {
        field,
        message: format!("cannot read {}: {e}", path.display()),
    })?;
    Ok(token_lines(&text))
}

/// The first token (or other secret) in the file at `path`, read as
/// [`token_lines`] reads it; the error says which file and why.
pub fn first_token_in(path: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    token_lines(&text)
        .into_iter()
        .next()
        .ok_or_else(|| format!("{} holds no secret", path.display()))
}

/// The tokens of a token file: one per line, `#` starts a comment, blank
/// lines are skipped. Shared by the server and the admin CLI.
pub fn token_lines(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or_default().trim())
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

fn split_list(inline: &str) -> Vec<String> {
    inline
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect()
}

impl Tokens {
    /// Loads the sets of `section`; `None` when auth is off. Both sets must
    /// hold at least one token, and no token may be in both.
    pub fn load(section: &AuthSection) -> Result<Option<Self>, AuthConfigError> {
        if !section.enabled {
            return Ok(None);
        }
        Ok(Some(Tokens {
            sets: std::sync::RwLock::new(Arc::new(TokenSets::read(section)?)),
        }))
    }

    /// Requests are checked against `sets` from now on (a reload: read
    /// them with [`TokenSets::read`] first, so nothing changes if the
    /// files are unusable).
    pub fn replace(&self, sets: TokenSets) {
        *self
            .sets
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(sets);
    }

    fn current(&self) -> Arc<TokenSets> {
        self.sets
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

impl TokenSets {
    /// Reads and checks both sets of `section`.
    pub fn read(section: &AuthSection) -> Result<Self, AuthConfigError> {
        let mut ingest = read_list("auth.ingest_tokens_file", &section.ingest_tokens_file)?;
        ingest.extend(split_list(&section.ingest_tokens));
        let mut admin = read_list("auth.admin_tokens_file", &section.admin_tokens_file)?;
        admin.extend(split_list(&section.admin_tokens));
        if ingest.is_empty() {
            return Err(AuthConfigError {
                field: "auth.ingest_tokens_file",
                message: "auth.enabled is true but no ingest token is configured".into(),
            });
        }
        if admin.is_empty() {
            return Err(AuthConfigError {
                field: "auth.admin_tokens_file",
                message: "auth.enabled is true but no admin token is configured".into(),
            });
        }
        if let Some(short) = ingest.iter().chain(&admin).find(|t| t.len() < 16) {
            return Err(AuthConfigError {
                field: "auth",
                message: format!(
                    "a token of {} characters is too short to resist guessing; use at least 16",
                    short.len()
                ),
            });
        }
        let ingest: HashSet<TokenDigest> = ingest.iter().map(|t| digest(t)).collect();
        let member = admin.first().cloned();
        let admin: HashSet<TokenDigest> = admin.iter().map(|t| digest(t)).collect();
        if !ingest.is_disjoint(&admin) {
            return Err(AuthConfigError {
                field: "auth.admin_tokens_file",
                message: "a token is both an ingest and an admin token; the sets must be separate"
                    .into(),
            });
        }
        Ok(TokenSets {
            ingest,
            admin,
            member,
        })
    }
}

impl Tokens {
    /// Lets a request through if its `Authorization` header carries a
    /// token of `want`'s set.
    pub fn check(&self, authorization: Option<&[u8]>, want: Scope) -> Result<(), AuthError> {
        let token = authorization.and_then(bearer).ok_or(AuthError::Missing)?;
        let d = digest(token);
        let sets = self.current();
        let (own, other, other_name) = match want {
            Scope::Ingest => (&sets.ingest, &sets.admin, "admin"),
            Scope::Admin => (&sets.admin, &sets.ingest, "ingest"),
        };
        if own.contains(&d) {
            Ok(())
        } else if other.contains(&d) {
            Err(AuthError::WrongScope(other_name))
        } else {
            Err(AuthError::Unknown)
        }
    }

    /// The `Authorization` value this node sends to other members' admin
    /// APIs.
    pub fn member_authorization(&self) -> Option<String> {
        self.current()
            .member
            .as_ref()
            .map(|t| format!("Bearer {t}"))
    }
}

/// The token of a `Bearer` authorization value (scheme case-insensitive).
fn bearer(value: &[u8]) -> Option<&str> {
    let value = std::str::from_utf8(value).ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> Tokens {
        let section = AuthSection {
            enabled: true,
            ingest_tokens: "ingest-token-0001, ingest-token-0002".into(),
            admin_tokens: "admin-token-00001".into(),
            ..Default::default()
        };
        Tokens::load(&section).unwrap().unwrap()
    }

    #[test]
    fn tokens_are_checked_by_scope() {
        let t = tokens();
        assert_eq!(
            t.check(Some(b"Bearer ingest-token-0002"), Scope::Ingest),
            Ok(())
        );
        assert_eq!(
            t.check(Some(b"bearer  ingest-token-0001 "), Scope::Ingest),
            Ok(())
        );
        assert_eq!(t.check(None, Scope::Ingest), Err(AuthError::Missing));
        assert_eq!(
            t.check(Some(b"Basic abc"), Scope::Ingest),
            Err(AuthError::Missing)
        );
        assert_eq!(
            t.check(Some(b"Bearer nope-nope-nope-x"), Scope::Ingest),
            Err(AuthError::Unknown)
        );
        assert_eq!(
            t.check(Some(b"Bearer ingest-token-0001"), Scope::Admin),
            Err(AuthError::WrongScope("ingest"))
        );
        assert_eq!(
            t.check(Some(b"Bearer admin-token-00001"), Scope::Admin),
            Ok(())
        );
        assert_eq!(
            t.member_authorization().as_deref(),
            Some("Bearer admin-token-00001")
        );
    }

    #[test]
    fn unusable_token_settings_name_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("admin");
        std::fs::write(&file, "# admin tokens\nadmin-token-from-file\n\n").unwrap();
        let base = AuthSection {
            enabled: true,
            ingest_tokens: "ingest-token-0001".into(),
            admin_tokens_file: file.clone(),
            ..Default::default()
        };
        let t = Tokens::load(&base).unwrap().unwrap();
        assert_eq!(
            t.check(Some(b"Bearer admin-token-from-file"), Scope::Admin),
            Ok(())
        );
        let missing = AuthSection {
            admin_tokens_file: dir.path().join("absent"),
            ..base.clone()
        };
        let e = Tokens::load(&missing).unwrap_err().to_string();
        assert!(
            e.contains("auth.admin_tokens_file") && e.contains("absent"),
            "{e}"
        );
        let none = AuthSection {
            ingest_tokens: String::new(),
            ..base.clone()
        };
        let e = Tokens::load(&none).unwrap_err().to_string();
        assert!(e.contains("auth.ingest_tokens_file"), "{e}");
        let shared = AuthSection {
            ingest_tokens: "admin-token-from-file".into(),
            ..base.clone()
        };
        assert!(Tokens::load(&shared).is_err());
        let short = AuthSection {
            ingest_tokens: "short".into(),
            ..base
        };
        assert!(Tokens::load(&short)
            .unwrap_err()
            .to_string()
            .contains("too short"));
        assert!(Tokens::load(&AuthSection::default()).unwrap().is_none());
    }
}
