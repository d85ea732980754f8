//! Refresh tokens as handed to clients: 256 random bits plus an HMAC tag under
//! the `sessions.refresh_secret`, so forged or garbled tokens are refused
//! without a database round trip, and the refresh secret stays separate from
//! the access-token keys (as the seed services kept `JWT_REFRESH_SECRET`
//! apart from `JWT_SECRET`). The store only ever sees the SHA-256 of the
//! whole token ([`hash_refresh_token`]).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::store::{hash_refresh_token, new_refresh_token};

/// Bytes of the HMAC tag kept in the token (128 bits).
const TAG_BYTES: usize = 16;

/// Longest text accepted as a refresh token; anything longer is refused
/// before hashing.
pub const MAX_REFRESH_TOKEN_LEN: usize = 256;

/// Mints and checks refresh tokens under one secret.
#[derive(Clone)]
pub struct RefreshTokens {
    secret: Vec<u8>,
}

impl std::fmt::Debug for RefreshTokens {
    // Never print the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RefreshTokens(..)")
    }
}

impl RefreshTokens {
    /// Tokens tagged under `secret` (`sessions.refresh_secret`).
    pub fn new(secret: impl Into<Vec<u8>>) -> RefreshTokens {
        RefreshTokens {
            secret: secret.into(),
        }
    }

    fn tag(&self, random_part: &str) -> [u8; TAG_BYTES] {
        // HMAC accepts keys of any length; `new_from_slice` cannot fail for it.
        let mut mac = match Hmac::<Sha256>::new_from_slice(&self.secret) {
            Ok(mac) => mac,
            Err(_) => unreachable!("HMAC takes keys of any length"),
        };
        mac.update(random_part.as_bytes());
        let full = mac.finalize().into_bytes();
        let mut tag = [0u8; TAG_BYTES];
        tag.copy_from_slice(&full[..TAG_BYTES]);
        tag
    }

    /// A new token (`<random>.<tag>`, base64url) and the hash to store.
    pub fn mint(&self) -> (String, [u8; 32]) {
        let (random_part, _) = new_refresh_token();
        let token = format!(
            "{random_part}.{}",
            URL_SAFE_NO_PAD.encode(self.tag(&random_part))
        );
        let hash = hash_refresh_token(&token);
        (token, hash)
    }

    /// The storage hash of `token` when its tag is ours; `None` for anything
    /// forged, truncated, oversized or not in the token format.
    pub fn check(&self, token: &str) -> Option<[u8; 32]> {
        if token.len() > MAX_REFRESH_TOKEN_LEN {
            return None;
        }
        let (random_part, tag) = token.split_once('.')?;
        let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
        if random_part.is_empty() || tag.len() != TAG_BYTES {
            return None;
        }
        let expected = self.tag(random_part);
        if bool::from(expected.ct_eq(&tag[..])) {
            Some(hash_refresh_token(token))
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_tokens_check_out_and_hash_to_what_is_stored() {
        let tokens = RefreshTokens::new(b"refresh-secret".to_vec());
        let (token, hash) = tokens.mint();
        assert_eq!(tokens.check(&token), Some(hash));
        assert_eq!(hash, hash_refresh_token(&token));
        let (other, _) = tokens.mint();
        assert_ne!(token, other);
    }

    #[test]
    fn tokens_under_another_secret_or_altered_are_refused() {
        let ours = RefreshTokens::new(b"refresh-secret".to_vec());
        let theirs = RefreshTokens::new(b"another-secret".to_vec());
        let (token, _) = theirs.mint();
        assert_eq!(ours.check(&token), None);

        let (token, _) = ours.mint();
        let mut altered = token.clone().into_bytes();
        altered[0] = if altered[0] == b'A' { b'B' } else { b'A' };
        let altered = String::from_utf8(altered).expect("ascii");
        assert_eq!(ours.check(&altered), None);
        assert_eq!(
            ours.check(token.split('.').next().expect("random part")),
            None
        );
        assert_eq!(ours.check(""), None);
        assert_eq!(ours.check("."), None);
        assert_eq!(ours.check("abc.!!!"), None);
        assert_eq!(ours.check(&"a".repeat(MAX_REFRESH_TOKEN_LEN + 1)), None);
    }
}
