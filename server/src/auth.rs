//! The authentication hook: decides, from the token in a hello, who a player
//! is or whether to refuse them, before they join a room.
//!
//! A game implements [`Authenticator`] (look the token up in its session
//! store, call its account service, …) and puts it in
//! [`Config::auth`](crate::Config::auth). The server ships one implementation,
//! [`HmacTokens`]: stateless, expiring tokens signed with a shared secret
//! (`--auth-secret`), in the format of [`shared::auth`], which the game's
//! backend mints when a player logs in.
//!
//! Tokens are credentials: nothing here logs them, and [`AuthToken`]'s
//! `Debug` is redacted.
//!
//! [`AuthToken`]: shared::protocol::AuthToken

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::{SystemTime, UNIX_EPOCH};

use shared::auth::{self, TokenError};
use shared::protocol::DisconnectReason;

/// Who the authenticator says a player is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The account id, logged at join (never the token). A user plays one
    /// game at a time: a join ends the user's other session
    /// ([`Config::one_session_per_user`](crate::Config::one_session_per_user)),
    /// so an authenticator that names no account (every guest the same
    /// user) must turn that off.
    pub user: String,
}

/// Why an authenticator refused a hello; each maps to a typed
/// [`DisconnectReason`] the client receives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthRefusal {
    /// The hello carried no token.
    #[error("no token")]
    Missing,
    /// The token is not valid: malformed, forged, revoked, unknown.
    #[error("invalid token")]
    Invalid,
    /// The token was valid but has expired.
    #[error("expired token")]
    Expired,
}

impl From<AuthRefusal> for DisconnectReason {
    fn from(r: AuthRefusal) -> Self {
        match r {
            AuthRefusal::Missing => Self::AuthRequired,
            AuthRefusal::Invalid => Self::AuthInvalid,
            AuthRefusal::Expired => Self::AuthExpired,
        }
    }
}

/// The future an [`Authenticator`] returns.
pub type AuthFuture<'a> = Pin<Box<dyn Future<Output = Result<Identity, AuthRefusal>> + Send + 'a>>;

/// Decides whether a hello's token admits the player.
///
/// Called once per new join on the connection's task (never on a room's),
/// under the hello timeout: a slow lookup delays only that player, and one
/// slower than the timeout refuses them. Resumes skip it: the session token
/// proves the player already passed.
pub trait Authenticator: Send + Sync + fmt::Debug + 'static {
    /// `token` is `None` when the hello carried none.
    fn authenticate<'a>(&'a self, token: Option<&'a str>) -> AuthFuture<'a>;
}

/// The built-in authenticator: HMAC-SHA256 signed, expiring tokens
/// ([`shared::auth`]), checked against the system clock.
pub struct HmacTokens {
    secret: Vec<u8>,
}

impl HmacTokens {
    /// Verifies tokens signed with `secret`.
    #[must_use]
    pub fn new(secret: impl Into<Vec<u8>>) -> Self {
        Self {
            secret: secret.into(),
        }
    }

    /// The check itself, with the time given (Unix seconds).
    pub fn check(&self, token: Option<&str>, now: u64) -> Result<Identity, AuthRefusal> {
        let token = token.ok_or(AuthRefusal::Missing)?;
        match auth::verify(&self.secret, token, now) {
            Ok(claims) => Ok(Identity { user: claims.user }),
            Err(TokenError::Expired) => Err(AuthRefusal::Expired),
            Err(TokenError::Malformed | TokenError::BadSignature) => Err(AuthRefusal::Invalid),
        }
    }
}

impl fmt::Debug for HmacTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HmacTokens { secret: <redacted> }")
    }
}

/// Seconds since the Unix epoch (0 if the clock is before it).
#[must_use]
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Authenticator for HmacTokens {
    fn authenticate<'a>(&'a self, token: Option<&'a str>) -> AuthFuture<'a> {
        Box::pin(std::future::ready(self.check(token, unix_now())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_tokens_map_to_typed_refusals() {
        let auth = HmacTokens::new("s3cret");
        let good = auth::mint(b"s3cret", "alice", 100).expect("valid user");
        assert_eq!(
            auth.check(Some(&good), 99),
            Ok(Identity {
                user: "alice".into()
            })
        );
        assert_eq!(auth.check(Some(&good), 100), Err(AuthRefusal::Expired));
        assert_eq!(auth.check(None, 0), Err(AuthRefusal::Missing));
        let forged = auth::mint(b"guess", "alice", 100).expect("valid user");
        assert_eq!(auth.check(Some(&forged), 0), Err(AuthRefusal::Invalid));
        assert_eq!(auth.check(Some("garbage"), 0), Err(AuthRefusal::Invalid));
        assert_eq!(
            DisconnectReason::from(AuthRefusal::Expired),
            DisconnectReason::AuthExpired
        );
    }

    #[test]
    fn the_secret_is_not_in_debug_output() {
        assert!(!format!("{:?}", HmacTokens::new("s3cret")).contains("s3cret"));
    }
}
