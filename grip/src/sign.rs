//! `Grip-Sig`: a compact JWT (HS256) with exactly `iss` and `exp` (now + 1 h),
//! as Pushpin signs every request it forwards; and the check that makes a
//! client with a valid signature from `upstream_key` trusted.

use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use std::time::{SystemTime, UNIX_EPOCH};

/// How long a signature is valid (Pushpin: one hour).
const LIFETIME_SECS: u64 = 3600;

/// Why a key setting could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// `base64:` followed by something that is not base64.
    #[error("sig key: invalid base64 after \"base64:\"")]
    Base64,
    /// `file:` naming a file that cannot be read.
    #[error("sig key: cannot read {path}: {source}")]
    File {
        /// The file named.
        path: String,
        /// Why it could not be read.
        source: std::io::Error,
    },
}

/// Key bytes from a setting: `base64:<data>`, `file:<path>` or the literal text.
pub fn key_bytes(spec: &str) -> Result<Vec<u8>, KeyError> {
    if let Some(data) = spec.strip_prefix("base64:") {
        base64::engine::general_purpose::STANDARD
            .decode(data.trim())
            .map_err(|_| KeyError::Base64)
    } else if let Some(path) = spec.strip_prefix("file:") {
        std::fs::read(path)
            .map(|mut bytes| {
                // A key file usually ends with a newline that is not key.
                while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                    bytes.pop();
                }
                bytes
            })
            .map_err(|source| KeyError::File {
                path: path.to_owned(),
                source,
            })
    } else {
        Ok(spec.as_bytes().to_vec())
    }
}

#[derive(Serialize, Deserialize)]
struct Claims {
    iss: String,
    exp: u64,
}

/// A signer for one issuer and key.
#[derive(Clone)]
pub struct Signer {
    iss: String,
    key_spec: String,
    key: EncodingKey,
}

impl Signer {
    /// A signer from an issuer and a key setting.
    pub fn new(iss: &str, key_spec: &str) -> Result<Signer, KeyError> {
        Ok(Signer {
            iss: iss.to_owned(),
            key_spec: key_spec.to_owned(),
            key: EncodingKey::from_secret(&key_bytes(key_spec)?),
        })
    }

    /// Issuer and key setting, for the handler to sign its own requests.
    pub fn spec(&self) -> (String, String) {
        (self.iss.clone(), self.key_spec.clone())
    }

    /// A fresh token.
    pub fn token(&self) -> Option<String> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_secs();
        let claims = Claims {
            iss: self.iss.clone(),
            exp: now + LIFETIME_SECS,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.key).ok()
    }
}

/// Checks signatures made with the upstream key.
#[derive(Clone)]
pub struct Verifier {
    key: DecodingKey,
    validation: Validation,
}

impl Verifier {
    /// A verifier from a key setting.
    pub fn new(key_spec: &str) -> Result<Verifier, KeyError> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp"]);
        validation.validate_aud = false;
        validation.leeway = 0;
        Ok(Verifier {
            key: DecodingKey::from_secret(&key_bytes(key_spec)?),
            validation,
        })
    }

    /// Whether `token` is signed with the key and not expired.
    pub fn verify(&self, token: &str) -> bool {
        jsonwebtoken::decode::<serde::de::IgnoredAny>(token, &self.key, &self.validation).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_verifies_with_same_key_only() {
        let token = Signer::new("pushpin", "changeme").unwrap().token().unwrap();
        assert!(Verifier::new("changeme").unwrap().verify(&token));
        assert!(!Verifier::new("other").unwrap().verify(&token));
        assert!(!Verifier::new("changeme").unwrap().verify("not.a.jwt"));
        assert!(!Verifier::new("changeme").unwrap().verify(""));
    }

    #[test]
    fn key_forms() {
        assert_eq!(key_bytes("base64:aGVsbG8=").unwrap(), b"hello");
        assert!(matches!(key_bytes("base64:***"), Err(KeyError::Base64)));
        assert_eq!(key_bytes("plain").unwrap(), b"plain");
        assert!(matches!(
            key_bytes("file:/nonexistent/key"),
            Err(KeyError::File { .. })
        ));
    }

    #[test]
    fn expired_token_is_rejected() {
        let key = EncodingKey::from_secret(b"k");
        let claims = Claims {
            iss: "x".into(),
            exp: 1000,
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &key).unwrap();
        assert!(!Verifier::new("k").unwrap().verify(&token));
    }
}
