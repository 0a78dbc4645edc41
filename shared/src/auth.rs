//! Signed, expiring join tokens: the format behind the server's built-in
//! HMAC-SHA256 authenticator, and the minting function a game backend (or
//! the bots) uses to issue them.
//!
//! A token is `USER.EXPIRES.SIGNATURE`: `USER` is 1 to [`MAX_USER_BYTES`]
//! ASCII letters, digits, `-` or `_`; `EXPIRES` is a Unix time in seconds,
//! in decimal; `SIGNATURE` is the lowercase hex HMAC-SHA256, keyed with the
//! shared secret, of `USER.EXPIRES`. Pure: the current time is an argument.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// Longest user id in a token, in bytes.
pub const MAX_USER_BYTES: usize = 64;

/// Why a token was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not `USER.EXPIRES.SIGNATURE`, or a part out of its alphabet.
    #[error("malformed token")]
    Malformed,
    /// Well formed, but not signed with this secret.
    #[error("bad signature")]
    BadSignature,
    /// Validly signed, but its expiry time has passed.
    #[error("token expired")]
    Expired,
}

/// What a valid token says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claims {
    /// The user the token was issued to.
    pub user: String,
    /// Unix time, in seconds, after which the token is refused.
    pub expires: u64,
}

fn is_valid_user(user: &str) -> bool {
    (1..=MAX_USER_BYTES).contains(&user.len())
        && user
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn mac(secret: &[u8], user: &str, expires: u64) -> Hmac<Sha256> {
    // HMAC takes keys of any length: new_from_slice cannot fail.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap_or_else(|_| unreachable!());
    mac.update(user.as_bytes());
    mac.update(b".");
    mac.update(expires.to_string().as_bytes());
    mac
}

/// Issues a token for `user`, valid until `expires` (Unix seconds).
/// `None` if the user id is empty, too long or outside `[A-Za-z0-9_-]`.
#[must_use]
pub fn mint(secret: &[u8], user: &str, expires: u64) -> Option<String> {
    if !is_valid_user(user) {
        return None;
    }
    let signature = mac(secret, user, expires).finalize().into_bytes();
    let mut token = format!("{user}.{expires}.");
    for b in signature {
        token.push_str(&format!("{b:02x}"));
    }
    Some(token)
}

/// Checks a token's form, signature (in constant time) and expiry against
/// `now` (Unix seconds). A token expiring exactly at `now` is expired.
pub fn verify(secret: &[u8], token: &str, now: u64) -> Result<Claims, TokenError> {
    let mut parts = token.split('.');
    let (Some(user), Some(expires), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed);
    };
    if !is_valid_user(user)
        || expires.is_empty()
        || expires.len() > 20
        || !expires.bytes().all(|b| b.is_ascii_digit())
        || (expires.len() > 1 && expires.starts_with('0'))
    {
        return Err(TokenError::Malformed);
    }
    let expires: u64 = expires.parse().map_err(|_| TokenError::Malformed)?;
    let signature = decode_hex(signature).ok_or(TokenError::Malformed)?;
    mac(secret, user, expires)
        .verify_slice(&signature)
        .map_err(|_| TokenError::BadSignature)?;
    if expires <= now {
        return Err(TokenError::Expired);
    }
    Ok(Claims {
        user: user.to_owned(),
        expires,
    })
}

/// Lowercase hex of exactly 32 bytes.
fn decode_hex(hex: &str) -> Option<[u8; 32]> {
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let bytes = hex.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (o, pair) in out.iter_mut().zip(bytes.chunks_exact(2)) {
        *o = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SECRET: &[u8] = b"correct horse battery staple";

    #[test]
    fn a_minted_token_verifies_until_it_expires() {
        let token = mint(SECRET, "alice", 1_000).expect("valid user");
        assert_eq!(
            verify(SECRET, &token, 999),
            Ok(Claims {
                user: "alice".into(),
                expires: 1_000
            })
        );
        assert_eq!(verify(SECRET, &token, 1_000), Err(TokenError::Expired));
        assert_eq!(verify(SECRET, &token, u64::MAX), Err(TokenError::Expired));
    }

    #[test]
    fn signature_matches_openssl() {
        // Computed with: printf 'u.1' | openssl dgst -sha256 -hmac Jefe
        let token = mint(b"Jefe", "u", 1).expect("valid user");
        assert_eq!(
            token,
            "u.1.3f9b7bca4350e01e4c777bb7ed0617a20438117c5ad1685c7cf2446b6560660c"
        );
    }

    #[test]
    fn another_secret_or_any_edit_is_refused() {
        let token = mint(SECRET, "alice", 5_000).expect("valid user");
        assert_eq!(
            verify(b"other secret", &token, 0),
            Err(TokenError::BadSignature)
        );
        // Extending the expiry invalidates the signature.
        let forged = token.replacen("5000", "9000", 1);
        assert_eq!(verify(SECRET, &forged, 0), Err(TokenError::BadSignature));
        let other_user = token.replacen("alice", "alicf", 1);
        assert_eq!(
            verify(SECRET, &other_user, 0),
            Err(TokenError::BadSignature)
        );
        for bad in [
            "",
            "alice",
            "alice.5000",
            "alice.5000.zz",
            "alice.05000.00",
            "alice.-1.00",
            "al ice.5000.00",
            &format!("{token}.x"),
            &token.to_uppercase(),
        ] {
            assert_eq!(verify(SECRET, bad, 0), Err(TokenError::Malformed), "{bad}");
        }
    }

    #[test]
    fn user_ids_are_bounded_and_url_safe() {
        assert!(mint(SECRET, "", 1).is_none());
        assert!(mint(SECRET, "a.b", 1).is_none());
        assert!(mint(SECRET, &"u".repeat(MAX_USER_BYTES + 1), 1).is_none());
        assert!(mint(SECRET, &"u".repeat(MAX_USER_BYTES), 1).is_some());
    }

    proptest! {
        #[test]
        fn arbitrary_strings_never_verify_or_panic(token in ".{0,200}", now: u64) {
            prop_assert!(verify(SECRET, &token, now).is_err());
        }

        #[test]
        fn any_valid_claims_round_trip(user in "[A-Za-z0-9_-]{1,64}", expires in 1u64.., now: u64) {
            let token = mint(SECRET, &user, expires).expect("valid user");
            let result = verify(SECRET, &token, now);
            if now < expires {
                prop_assert_eq!(result, Ok(Claims { user, expires }));
            } else {
                prop_assert_eq!(result, Err(TokenError::Expired));
            }
        }
    }
}
