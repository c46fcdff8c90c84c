//! Supabase-style authentication: a JWT in `Authorization: Bearer` (or the `apikey` header)
//! with `sub` = user id, `role` in {anon, authenticated, service_role}, `exp`, and `nbf`
//! when present. Tokens are signed with the HS256 secret (Supabase's legacy JWT secret, which
//! `kb token` also signs with) or by one of the asymmetric keys (ES256, RS256, ...) of a
//! configured JWKS, as Supabase's signing keys do. Audience and issuer are checked when
//! configured, and so is a maximum lifetime. The verified caller becomes a [`Caller`], whose
//! transaction acts as that user and role so row level security decides what it sees.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sqlx::{PgPool, Postgres, Transaction};
use uuid::Uuid;

use super::AppState;
use super::error::ApiError;
use crate::store::{self, Role};

/// Seconds of clock skew tolerated when checking `exp`, `nbf` and `iat`.
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
    /// A string or a list of strings; checked by the validation when an audience is configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// Every other claim (email, app_metadata, ...), kept for `request.jwt.claims`.
    #[serde(flatten)]
    pub other: serde_json::Map<String, serde_json::Value>,
}

/// A public key of the JWKS, with the one algorithm it verifies.
struct PublicKey {
    kid: Option<String>,
    algorithm: Algorithm,
    key: DecodingKey,
}

/// Signs and verifies tokens: the HS256 secret, and the public keys of a JWKS.
pub struct JwtKeys {
    encoding: EncodingKey,
    secret: DecodingKey,
    public: Vec<PublicKey>,
    validation: Validation,
    issuer: Option<String>,
    audience: Option<String>,
    max_lifetime: Option<Duration>,
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
    #[error("the JWKS is not valid: {0}")]
    Jwks(String),
}

impl JwtKeys {
    pub fn new(secret: &[u8]) -> Result<JwtKeys, SecretError> {
        if secret.len() < 32 {
            return Err(SecretError::TooShort);
        }
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = LEEWAY_SECS;
        validation.validate_nbf = true;
        validation.validate_aud = false;
        validation.set_required_spec_claims(&["exp"]);
        Ok(JwtKeys {
            encoding: EncodingKey::from_secret(secret),
            secret: DecodingKey::from_secret(secret),
            public: Vec::new(),
            validation,
            issuer: None,
            audience: None,
            max_lifetime: None,
        })
    }

    /// Also accepts tokens signed by the asymmetric keys of `jwks` (the `keys` of a JSON Web
    /// Key Set, as Supabase publishes at `/auth/v1/.well-known/jwks.json`). A key's algorithm
    /// is its `alg`, else follows from its type (EC P-256: ES256, P-384: ES384, RSA: RS256,
    /// Ed25519: EdDSA). Symmetric keys are refused: the HS256 secret has its own setting.
    pub fn with_jwks(mut self, jwks: &str) -> Result<JwtKeys, SecretError> {
        let set: JwkSet = serde_json::from_str(jwks).map_err(|e| SecretError::Jwks(e.to_string()))?;
        if set.keys.is_empty() {
            return Err(SecretError::Jwks("it has no keys".into()));
        }
        for jwk in &set.keys {
            let algorithm = jwk_algorithm(jwk)?;
            let key = DecodingKey::from_jwk(jwk).map_err(|e| SecretError::Jwks(e.to_string()))?;
            self.public.push(PublicKey { kid: jwk.common.key_id.clone(), algorithm, key });
        }
        Ok(self)
    }

    /// Requires `aud` to contain one of `audiences` (tokens minted here carry the first).
    pub fn with_audience(mut self, audiences: &[String]) -> JwtKeys {
        if !audiences.is_empty() {
            self.validation.set_audience(audiences);
            self.validation.validate_aud = true;
            self.validation.required_spec_claims.insert("aud".to_string());
            self.audience = audiences.first().cloned();
        }
        self
    }

    /// Requires `iss` to be `issuer` (tokens minted here carry it).
    pub fn with_issuer(mut self, issuer: &str) -> JwtKeys {
        self.validation.set_issuer(&[issuer]);
        self.validation.required_spec_claims.insert("iss".to_string());
        self.issuer = Some(issuer.to_string());
        self
    }

    /// Refuses tokens valid for longer than `max` (`exp - iat`; `iat` becomes required).
    pub fn with_max_lifetime(mut self, max: Duration) -> JwtKeys {
        self.max_lifetime = Some(max);
        self
    }

    /// A signed (HS256) token for `user` in `role`, valid for `ttl`.
    pub fn mint(&self, user: Option<Uuid>, role: Role, ttl: Duration) -> Result<String, jsonwebtoken::errors::Error> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        let audience = self.audience.clone().unwrap_or_else(|| role.as_str().to_string());
        let claims = Claims {
            sub: user.map(|u| u.to_string()),
            role: role.as_str().to_string(),
            exp: now.saturating_add(ttl.as_secs()),
            iat: Some(now),
            aud: Some(serde_json::Value::String(audience)),
            iss: self.issuer.clone(),
            other: serde_json::Map::new(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
    }

    /// The caller a token proves, or why it proves nothing.
    pub fn verify(&self, token: &str) -> Result<Caller, ApiError> {
        self.verify_claims(token).map(|(caller, _)| caller)
    }

    /// The caller a token proves and all of its claims (as `request.jwt.claims` holds them).
    pub fn verify_claims(&self, token: &str) -> Result<(Caller, Claims), ApiError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| ApiError::InvalidToken("malformed token"))?;
        let claims = match header.alg {
            Algorithm::HS256 => self.decode(token, &self.secret, Algorithm::HS256)?,
            alg => {
                // The key the header names, else each key of the token's algorithm in turn.
                let mut candidates = self
                    .public
                    .iter()
                    .filter(|k| k.algorithm == alg && (header.kid.is_none() || k.kid == header.kid))
                    .peekable();
                if candidates.peek().is_none() {
                    return Err(ApiError::InvalidToken("no configured key verifies this token's algorithm and key id"));
                }
                let mut outcome = Err(ApiError::InvalidToken("bad signature"));
                for candidate in candidates {
                    outcome = self.decode(token, &candidate.key, alg);
                    if !matches!(outcome, Err(ApiError::InvalidToken("bad signature"))) {
                        break;
                    }
                }
                outcome?
            }
        };
        if let Some(max) = self.max_lifetime {
            let iat = claims.iat.ok_or(ApiError::InvalidToken("iat is missing; this server limits token lifetimes"))?;
            if claims.exp.saturating_sub(iat) > max.as_secs() {
                return Err(ApiError::InvalidToken("the token is valid for longer than this server allows"));
            }
        }
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
        Ok((Caller { user, role }, claims))
    }

    fn decode(&self, token: &str, key: &DecodingKey, algorithm: Algorithm) -> Result<Claims, ApiError> {
        let mut validation = self.validation.clone();
        // Only the algorithm of the key: a token naming another one (or `none`) is refused.
        validation.algorithms = vec![algorithm];
        let data = jsonwebtoken::decode::<Claims>(token, key, &validation).map_err(|e| match e.kind() {
            ErrorKind::ExpiredSignature => ApiError::TokenExpired,
            ErrorKind::ImmatureSignature => ApiError::InvalidToken("the token is not valid yet (nbf)"),
            ErrorKind::InvalidSignature => ApiError::InvalidToken("bad signature"),
            ErrorKind::InvalidAudience => ApiError::InvalidToken("wrong audience (aud)"),
            ErrorKind::InvalidIssuer => ApiError::InvalidToken("wrong issuer (iss)"),
            ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
                ApiError::InvalidToken("the token's algorithm is not accepted")
            }
            ErrorKind::MissingRequiredClaim(_) => ApiError::InvalidToken("a required claim is missing"),
            _ => ApiError::InvalidToken("malformed token"),
        })?;
        Ok(data.claims)
    }
}

/// The one algorithm a JWK verifies.
fn jwk_algorithm(jwk: &Jwk) -> Result<Algorithm, SecretError> {
    let named = match jwk.common.key_algorithm {
        Some(KeyAlgorithm::ES256) => Some(Algorithm::ES256),
        Some(KeyAlgorithm::ES384) => Some(Algorithm::ES384),
        Some(KeyAlgorithm::RS256) => Some(Algorithm::RS256),
        Some(KeyAlgorithm::RS384) => Some(Algorithm::RS384),
        Some(KeyAlgorithm::RS512) => Some(Algorithm::RS512),
        Some(KeyAlgorithm::PS256) => Some(Algorithm::PS256),
        Some(KeyAlgorithm::PS384) => Some(Algorithm::PS384),
        Some(KeyAlgorithm::PS512) => Some(Algorithm::PS512),
        Some(KeyAlgorithm::EdDSA) => Some(Algorithm::EdDSA),
        Some(other) => return Err(SecretError::Jwks(format!("a key for {other:?} cannot verify JWTs here"))),
        None => None,
    };
    let by_type = match &jwk.algorithm {
        AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
            EllipticCurve::P256 => Algorithm::ES256,
            EllipticCurve::P384 => Algorithm::ES384,
            _ => return Err(SecretError::Jwks("only P-256 and P-384 elliptic curve keys are supported".into())),
        },
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        AlgorithmParameters::OctetKeyPair(_) => Algorithm::EdDSA,
        AlgorithmParameters::OctetKey(_) => {
            return Err(SecretError::Jwks("symmetric keys are not accepted in a JWKS; set KB_JWT_SECRET".into()));
        }
    };
    Ok(named.unwrap_or(by_type))
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
pub(crate) fn token_of(headers: &axum::http::HeaderMap) -> Result<&str, ApiError> {
    if let Some(value) = headers.get(axum::http::header::AUTHORIZATION) {
        let value = value.to_str().map_err(|_| ApiError::InvalidToken("malformed Authorization header"))?;
        let (scheme, token) = value.split_once(' ').ok_or(ApiError::InvalidToken("malformed Authorization header"))?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(ApiError::InvalidToken("only Bearer authorization is accepted"));
        }
        return Ok(token.trim());
    }
    match headers.get("apikey") {
        Some(value) => value.to_str().map_err(|_| ApiError::InvalidToken("malformed apikey header")),
        None => Err(ApiError::MissingToken),
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Caller, ApiError> {
        let caller = state.jwt.verify(token_of(&parts.headers)?)?;
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
