//! Access tokens: HMAC-SHA256 signed JWTs naming the room, the participant and its role.
//!
//! ```
//! use madang::sfu::token::{Claims, mint, verify};
//! use madang::signal::Role;
//! let claims = Claims::new("disaster-room", "jongno", "Jongno-gu office", Role::Speaker, 1_000, 3_600);
//! let token = mint(b"city-secret", &claims).unwrap();
//! assert_eq!(verify(b"city-secret", &token, 2_000).unwrap(), claims);
//! ```

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::signal::{ErrorCode, Role};

/// What a token grants.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Room name.
    pub room: String,
    /// Participant identity (JWT `sub`), unique in the room.
    #[serde(rename = "sub")]
    pub identity: String,
    /// Display name.
    pub name: String,
    /// Role in the room.
    pub role: Role,
    /// Issued at, seconds since the Unix epoch.
    pub iat: u64,
    /// Expires at, seconds since the Unix epoch.
    pub exp: u64,
}

impl Claims {
    /// Claims issued at `now` (Unix seconds), valid for `ttl_secs`.
    pub fn new(
        room: &str,
        identity: &str,
        name: &str,
        role: Role,
        now: u64,
        ttl_secs: u64,
    ) -> Self {
        Self {
            room: room.to_owned(),
            identity: identity.to_owned(),
            name: name.to_owned(),
            role,
            iat: now,
            exp: now.saturating_add(ttl_secs),
        }
    }
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// Not a JWT, wrong algorithm, bad signature, or missing or malformed claims.
    #[error("invalid token")]
    Invalid,
    /// `exp` is in the past.
    #[error("token expired {seconds_ago} s ago")]
    Expired {
        /// How long ago.
        seconds_ago: u64,
    },
    /// The token names another room.
    #[error("token is for room {token_room:?}, not {requested:?}")]
    WrongRoom {
        /// Room in the token.
        token_room: String,
        /// Room asked for.
        requested: String,
    },
    /// The secret is empty, or a claim is empty.
    #[error("empty secret or claim")]
    Empty,
}

impl TokenError {
    /// The signal error code a client is told.
    pub fn code(&self) -> ErrorCode {
        match self {
            TokenError::Invalid | TokenError::Empty => ErrorCode::InvalidToken,
            TokenError::Expired { .. } => ErrorCode::TokenExpired,
            TokenError::WrongRoom { .. } => ErrorCode::WrongRoom,
        }
    }
}

/// Signs `claims` with `secret`.
pub fn mint(secret: &[u8], claims: &Claims) -> Result<String, TokenError> {
    if secret.is_empty() || claims.room.is_empty() || claims.identity.is_empty() {
        return Err(TokenError::Empty);
    }
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret),
    )
    .map_err(|_| TokenError::Invalid)
}

/// Checks signature and expiry (against `now`, Unix seconds) and returns the claims.
pub fn verify(secret: &[u8], token: &str, now: u64) -> Result<Claims, TokenError> {
    if secret.is_empty() {
        return Err(TokenError::Empty);
    }
    let mut validation = Validation::new(Algorithm::HS256);
    // Expiry is checked below against the caller's clock, so tests can use simulated time.
    validation.validate_exp = false;
    validation.required_spec_claims.clear();
    let data =
        jsonwebtoken::decode::<Claims>(token, &DecodingKey::from_secret(secret), &validation)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => TokenError::Expired { seconds_ago: 0 },
                _ => TokenError::Invalid,
            })?;
    let claims = data.claims;
    if claims.exp <= now {
        return Err(TokenError::Expired {
            seconds_ago: now - claims.exp,
        });
    }
    if claims.room.is_empty() || claims.identity.is_empty() {
        return Err(TokenError::Empty);
    }
    Ok(claims)
}

/// [`verify`], and also that the token is for `room`.
pub fn verify_for_room(
    secret: &[u8],
    token: &str,
    room: &str,
    now: u64,
) -> Result<Claims, TokenError> {
    let claims = verify(secret, token, now)?;
    if claims.room != room {
        return Err(TokenError::WrongRoom {
            token_room: claims.room,
            requested: room.to_owned(),
        });
    }
    Ok(claims)
}

/// Seconds since the Unix epoch, from the system clock.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims() -> Claims {
        Claims::new("room", "me", "Me", Role::Viewer, 100, 60)
    }

    #[test]
    fn refusals() {
        let t = mint(b"s", &claims()).unwrap();
        assert_eq!(verify(b"other", &t, 120), Err(TokenError::Invalid));
        assert_eq!(
            verify(b"s", &t, 160),
            Err(TokenError::Expired { seconds_ago: 0 })
        );
        assert_eq!(
            verify(b"s", &t, 200),
            Err(TokenError::Expired { seconds_ago: 40 })
        );
        assert_eq!(verify(b"s", "garbage", 120), Err(TokenError::Invalid));
        assert_eq!(verify(b"s", "", 120), Err(TokenError::Invalid));
        assert!(matches!(
            verify_for_room(b"s", &t, "other-room", 120),
            Err(TokenError::WrongRoom { .. })
        ));
        assert_eq!(mint(b"", &claims()), Err(TokenError::Empty));
        // A tampered payload fails the signature.
        let mut parts: Vec<String> = t.split('.').map(str::to_owned).collect();
        parts[1] = parts[1].replacen('e', "f", 1);
        assert_eq!(
            verify(b"s", &parts.join("."), 120),
            Err(TokenError::Invalid)
        );
        // Unsigned tokens ("alg": "none") are refused.
        let none = format!("eyJhbGciOiJub25lIn0.{}.", t.split('.').nth(1).unwrap());
        assert_eq!(verify(b"s", &none, 120), Err(TokenError::Invalid));
    }

    #[test]
    fn codes() {
        assert_eq!(TokenError::Invalid.code(), ErrorCode::InvalidToken);
        assert_eq!(
            TokenError::Expired { seconds_ago: 1 }.code(),
            ErrorCode::TokenExpired
        );
    }
}
