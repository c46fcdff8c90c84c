//! Supabase-style authentication: an HS256 JWT in `Authorization: Bearer` (or the `apikey`
//! header) with `sub` = user id, `role` in {anon, authenticated, service_role} and `exp`.
//! The verified caller becomes a [`Caller`], whose transaction acts as that user and role so
//! row level security decides what the request sees.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sqlx::{PgPool, Postgres, Transaction};
use uuid::Uuid;

use super::AppState;
use super::error::ApiError;
use crate::store::{self, Role};

/// Seconds of clock skew tolerated when checking `exp`.
const LEEWAY_SECS: u64 = 5;

/// The claims kb reads and writes; others are ignored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    pub role: String,
    pub exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
}

/// Signs and verifies tokens with one HS256 secret.
pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for JwtKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JwtKeys(..)")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("cannot read or create the JWT secret file {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("the JWT secret must be at least 32 bytes")]
    TooShort,
}

impl JwtKeys {
    pub fn new(secret: &[u8]) -> Result<JwtKeys, SecretError> {
        if secret.len() < 32 {
            return Err(SecretError::TooShort);
        }
        // Only HS256: a token naming another algorithm (or `none`) is refused outright.
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = LEEWAY_SECS;
        validation.validate_aud = false;
        validation.set_required_spec_claims(&["exp"]);
        Ok(JwtKeys {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
        })
    }

    /// A signed token for `user` in `role`, valid for `ttl`.
    pub fn mint(&self, user: Option<Uuid>, role: Role, ttl: Duration) -> Result<String, jsonwebtoken::errors::Error> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        let claims = Claims {
            sub: user.map(|u| u.to_string()),
            role: role.as_str().to_string(),
            exp: now.saturating_add(ttl.as_secs()),
            iat: Some(now),
            aud: Some(role.as_str().to_string()),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
    }

    /// The caller a token proves, or why it proves nothing.
    pub fn verify(&self, token: &str) -> Result<Caller, ApiError> {
        let data =
            jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation).map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => ApiError::TokenExpired,
                ErrorKind::InvalidSignature => ApiError::InvalidToken("bad signature"),
                ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
                    ApiError::InvalidToken("only HS256 tokens are accepted")
                }
                ErrorKind::MissingRequiredClaim(_) => ApiError::InvalidToken("a required claim is missing"),
                _ => ApiError::InvalidToken("malformed token"),
            })?;
        let claims = data.claims;
        let role = match claims.role.as_str() {
            "anon" => Role::Anon,
            "authenticated" => Role::Authenticated,
            "service_role" => Role::ServiceRole,
            _ => return Err(ApiError::InvalidToken("unknown role")),
        };
        let user = match (role, claims.sub.as_deref()) {
            (_, Some(sub)) => Uuid::parse_str(sub).map_err(|_| ApiError::InvalidToken("sub is not a user id"))?,
            (Role::Authenticated, None) => return Err(ApiError::InvalidToken("sub is missing")),
            (Role::Anon | Role::ServiceRole, None) => Uuid::nil(),
        };
        Ok(Caller { user, role })
    }
}

/// Reads the HS256 secret from `dir/jwt-secret`, creating it (mode 0600, random) on first
/// use. Safe when several processes start at once: the first to create the file wins.
pub fn load_or_create_secret(dir: &Path) -> Result<Vec<u8>, SecretError> {
    let path = dir.join("jwt-secret");
    let io = |source| SecretError::Io { path: path.display().to_string(), source };
    std::fs::create_dir_all(dir).map_err(io)?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(&path) {
        Ok(mut file) => {
            // Two v4 UUIDs: 244 random bits from the OS generator.
            let secret = format!("{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple());
            file.write_all(secret.as_bytes()).map_err(io)?;
            file.sync_all().map_err(io)?;
            Ok(secret.into_bytes())
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let secret = std::fs::read(&path).map_err(io)?;
            let trimmed = secret.trim_ascii().to_vec();
            if trimmed.len() < 32 {
                return Err(SecretError::TooShort);
            }
            Ok(trimmed)
        }
        Err(e) => Err(io(e)),
    }
}

/// Who a request acts as. Extracting it verifies the token; the anon role is refused, since
/// every data endpoint belongs to a user (or the service role).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    pub user: Uuid,
    pub role: Role,
}

impl Caller {
    /// The request's one transaction, acting as this caller under row level security.
    pub async fn begin(&self, pool: &PgPool) -> Result<Transaction<'static, Postgres>, ApiError> {
        Ok(store::begin_as(pool, self.user, self.role).await?)
    }

    pub fn is_service(&self) -> bool {
        self.role == Role::ServiceRole
    }
}

/// The token of a request: the bearer token if there is one, else the `apikey` header.
fn token_of(parts: &Parts) -> Result<&str, ApiError> {
    if let Some(value) = parts.headers.get(axum::http::header::AUTHORIZATION) {
        let value = value.to_str().map_err(|_| ApiError::InvalidToken("malformed Authorization header"))?;
        let (scheme, token) = value.split_once(' ').ok_or(ApiError::InvalidToken("malformed Authorization header"))?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(ApiError::InvalidToken("only Bearer authorization is accepted"));
        }
        return Ok(token.trim());
    }
    match parts.headers.get("apikey") {
        Some(value) => value.to_str().map_err(|_| ApiError::InvalidToken("malformed apikey header")),
        None => Err(ApiError::MissingToken),
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Caller, ApiError> {
        let caller = state.jwt.verify(token_of(parts)?)?;
        if caller.role == Role::Anon {
            return Err(ApiError::Forbidden("the anon role cannot use this endpoint; sign in"));
        }
        tracing::Span::current().record("user", tracing::field::display(caller.user));
        Ok(caller)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> JwtKeys {
        JwtKeys::new(b"0123456789abcdef0123456789abcdef").expect("test step")
    }

    #[test]
    fn a_minted_token_verifies_as_its_user_and_role() {
        let user = Uuid::new_v4();
        let token = keys().mint(Some(user), Role::Authenticated, Duration::from_secs(60)).expect("test step");
        assert_eq!(keys().verify(&token).expect("test step"), Caller { user, role: Role::Authenticated });
    }

    #[test]
    fn a_token_signed_with_another_secret_is_refused() {
        let other = JwtKeys::new(b"another-secret-another-secret-xx").expect("test step");
        let token = other.mint(Some(Uuid::new_v4()), Role::Authenticated, Duration::from_secs(60)).expect("test step");
        assert!(matches!(keys().verify(&token), Err(ApiError::InvalidToken(_))));
    }

    #[test]
    fn an_authenticated_token_needs_a_subject() {
        let token = keys().mint(None, Role::Authenticated, Duration::from_secs(60)).expect("test step");
        assert!(matches!(keys().verify(&token), Err(ApiError::InvalidToken(_))));
    }

    #[test]
    fn short_secrets_are_refused() {
        assert!(matches!(JwtKeys::new(b"short"), Err(SecretError::TooShort)));
    }

    #[test]
    fn the_secret_file_is_created_once_and_private() {
        let dir = tempfile::tempdir().expect("test step");
        let first = load_or_create_secret(dir.path()).expect("test step");
        let second = load_or_create_secret(dir.path()).expect("test step");
        assert_eq!(first, second);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("jwt-secret")).expect("test step").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
