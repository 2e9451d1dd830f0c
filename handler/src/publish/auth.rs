//! Optional authentication of the HTTP publish API (a Holdfast addition;
//! Pushpin leaves it to the network). When a Basic credential or a JWT key
//! is configured, a request must carry `Authorization: Basic ...` with that
//! credential or `Authorization: Bearer <JWT>` signed HS256 with that key
//! (unexpired when it has `exp`), as gripcontrol sends with `control_iss` and
//! `key`; anything else gets 401.

use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};

/// What the publish API accepts.
#[derive(Clone, Default)]
pub struct Auth {
    basic: Option<String>,
    jwt: Option<(DecodingKey, Validation)>,
}

impl Auth {
    /// From the settings: `user:password` and a key (`base64:` allowed).
    pub fn new(basic: Option<&str>, key: Option<&str>) -> Result<Auth, String> {
        let jwt = match key.filter(|k| !k.is_empty()) {
            None => None,
            Some(key) => {
                let bytes = match key.strip_prefix("base64:") {
                    Some(data) => base64::engine::general_purpose::STANDARD
                        .decode(data.trim())
                        .map_err(|_| "publish key: invalid base64 after \"base64:\"".to_owned())?,
                    None => key.as_bytes().to_vec(),
                };
                let mut validation = Validation::new(Algorithm::HS256);
                validation.set_required_spec_claims::<&str>(&[]);
                validation.validate_aud = false;
                Some((DecodingKey::from_secret(&bytes), validation))
            }
        };
        Ok(Auth {
            basic: basic.filter(|b| !b.is_empty()).map(str::to_owned),
            jwt,
        })
    }

    /// Whether anything is required.
    pub fn is_open(&self) -> bool {
        self.basic.is_none() && self.jwt.is_none()
    }

    /// Whether a request with this `Authorization` header may publish.
    pub fn allows(&self, authorization: Option<&str>) -> bool {
        if self.is_open() {
            return true;
        }
        let Some((scheme, value)) = authorization.and_then(|a| a.trim().split_once(' ')) else {
            return false;
        };
        if scheme.eq_ignore_ascii_case("basic") {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(value.trim())
                .ok();
            return matches!((&self.basic, decoded), (Some(expected), Some(given)) if given == expected.as_bytes());
        }
        if scheme.eq_ignore_ascii_case("bearer") {
            if let Some((key, validation)) = &self.jwt {
                return jsonwebtoken::decode::<serde::de::IgnoredAny>(
                    value.trim(),
                    key,
                    validation,
                )
                .is_ok();
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header};

    fn bearer(key: &[u8], claims: serde_json::Value) -> String {
        let token = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(key),
        )
        .unwrap();
        format!("Bearer {token}")
    }

    #[test]
    fn open_when_nothing_configured() {
        assert!(Auth::new(None, None).unwrap().allows(None));
    }

    #[test]
    fn basic_and_bearer() {
        let auth = Auth::new(Some("pub:secret"), Some("k")).unwrap();
        let basic = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("pub:secret")
        );
        assert!(auth.allows(Some(&basic)));
        assert!(!auth.allows(Some("Basic cHViOndyb25n")));
        assert!(!auth.allows(Some("Basic ***")));
        assert!(!auth.allows(None));
        assert!(!auth.allows(Some("garbage")));
        assert!(auth.allows(Some(&bearer(b"k", serde_json::json!({"iss": "app"})))));
        assert!(auth.allows(Some(&bearer(
            b"k",
            serde_json::json!({"iss": "app", "exp": 4_000_000_000u64})
        ))));
        assert!(
            !auth.allows(Some(&bearer(
                b"k",
                serde_json::json!({"iss": "app", "exp": 1000})
            ))),
            "expired"
        );
        assert!(!auth.allows(Some(&bearer(b"other", serde_json::json!({"iss": "app"})))));
        assert!(!auth.allows(Some("Bearer not.a.jwt")));
        assert!(Auth::new(None, Some("base64:***")).is_err());
    }
}
