//! The key format `hth_<access id>_<secret>`: generation, parsing and hashing.
//!
//! The access id gives an O(1) lookup; the secret is high-entropy random text, so
//! a salted SHA-256 is enough (a slow password hash would only add latency to
//! every request) and is compared in constant time.

use rand::Rng;
use rand::distr::Alphanumeric;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Length of the public access id: 12 lowercase alphanumerics ≈ 62 bits, plenty
/// to avoid collisions among keys.
const ACCESS_ID_LEN: usize = 12;
/// Length of the secret: 40 alphanumerics ≈ 238 bits.
const SECRET_LEN: usize = 40;
const PREFIX: &str = "hth_";

/// A freshly generated key, before it is stored.
#[derive(Debug, Clone)]
pub struct KeySecret {
    pub id: String,
    /// The whole key as shown to the user once.
    pub full_key: String,
    pub salt: String,
    pub secret_hash: String,
}

/// The parts of a key a client sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedKey<'a> {
    pub id: &'a str,
    pub secret: &'a str,
}

/// Makes a new random key and its salted hash.
pub fn generate_key() -> KeySecret {
    let mut rng = rand::rng();
    let id: String = (&mut rng)
        .sample_iter(Alphanumeric)
        .map(|c| (c as char).to_ascii_lowercase())
        .take(ACCESS_ID_LEN)
        .collect();
    let secret: String = (&mut rng)
        .sample_iter(Alphanumeric)
        .map(char::from)
        .take(SECRET_LEN)
        .collect();
    let salt: [u8; 16] = rng.random();
    let salt = hex(&salt);
    KeySecret {
        full_key: format!("{PREFIX}{id}_{secret}"),
        secret_hash: hash_secret(&salt, &secret),
        id,
        salt,
    }
}

/// Splits `hth_<id>_<secret>`; `None` if it is not of that form.
pub fn parse_key(key: &str) -> Option<ParsedKey<'_>> {
    let rest = key.strip_prefix(PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    let valid = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric());
    (valid(id) && valid(secret) && id.len() == ACCESS_ID_LEN).then_some(ParsedKey { id, secret })
}

/// Hex of SHA-256(salt ‖ secret).
pub fn hash_secret(salt: &str, secret: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(salt.as_bytes());
    hasher.update(secret.as_bytes());
    hex(&hasher.finalize())
}

/// Whether `secret` hashes to `expected_hash`, in constant time.
pub fn secret_matches(salt: &str, secret: &str, expected_hash: &str) -> bool {
    let actual = hash_secret(salt, secret);
    actual.as_bytes().ct_eq(expected_hash.as_bytes()).into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_parse_and_verify() {
        let key = generate_key();
        let parsed = parse_key(&key.full_key).expect("parses");
        assert_eq!(parsed.id, key.id);
        assert!(secret_matches(&key.salt, parsed.secret, &key.secret_hash));
        assert!(!secret_matches(&key.salt, "wrong", &key.secret_hash));
    }

    #[test]
    fn two_keys_differ_in_everything() {
        let (a, b) = (generate_key(), generate_key());
        assert_ne!(a.id, b.id);
        assert_ne!(a.salt, b.salt);
        assert_ne!(a.full_key, b.full_key);
    }

    #[test]
    fn malformed_keys_are_rejected() {
        for bad in [
            "",
            "hth_",
            "hth_abc",
            "sk-123",
            "hth_abcdefghijkl_",
            "hth_short_secret",
            "hth_abcdefghijkl_bad-secret",
        ] {
            assert!(parse_key(bad).is_none(), "{bad}");
        }
    }
}
