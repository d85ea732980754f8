//! Opaque refresh tokens: 256 random bits, handed to the client once and
//! stored only as their SHA-256, so a leaked database cannot be replayed.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use sha2::{Digest, Sha256};

/// Random bytes in a refresh token (256 bits, as the design requires).
const TOKEN_BYTES: usize = 32;

/// Mints a refresh token: 32 bytes from the operating system's CSPRNG,
/// base64url-encoded without padding (43 characters), and its SHA-256 — the
/// only form the store ever sees.
pub fn new_refresh_token() -> (String, [u8; 32]) {
    let mut bytes = [0u8; TOKEN_BYTES];
    // The OS RNG only fails on a broken system (no /dev/urandom, seccomp
    // denying getrandom); minting a guessable token instead would be worse.
    getrandom::fill(&mut bytes).expect("the operating system's random number generator failed");
    let token = URL_SAFE_NO_PAD.encode(bytes);
    let hash = hash_refresh_token(&token);
    (token, hash)
}

/// SHA-256 of a presented refresh token, the key it is stored and looked up by.
pub fn hash_refresh_token(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_tokens_are_256_bit_base64url_and_hash_to_their_digest() {
        let (token, hash) = new_refresh_token();
        assert_eq!(token.len(), 43);
        assert!(token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert_eq!(
            URL_SAFE_NO_PAD.decode(&token).map(|b| b.len()).ok(),
            Some(32)
        );
        assert_eq!(hash_refresh_token(&token), hash);
        let (other, other_hash) = new_refresh_token();
        assert_ne!(token, other);
        assert_ne!(hash, other_hash);
    }

    #[test]
    fn hash_is_sha256_of_the_token_text() {
        // SHA-256("abc"), FIPS 180-2 appendix B.1.
        assert_eq!(
            hash_refresh_token("abc"),
            [
                0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea, 0x41, 0x41, 0x40, 0xde, 0x5d, 0xae,
                0x22, 0x23, 0xb0, 0x03, 0x61, 0xa3, 0x96, 0x17, 0x7a, 0x9c, 0xb4, 0x10, 0xff, 0x61,
                0xf2, 0x00, 0x15, 0xad
            ]
        );
    }
}
