//! Optional authentication of the HTTP publish API (a Holdfast addition;
//! Pushpin leaves it to the network). When a Basic credential or a JWT key
//! is configured, a request must carry `Authorization: Basic ...` with that
//! credential or `Authorization: Bearer <JWT>` signed HS256 with that key
//! (unexpired when it has `exp`, valid when it has `nbf`, both within a
//! small leeway for clock skew), as gripcontrol sends with `control_iss` and
//! `key`; anything else gets 401 with the reason.

use crate::error::{AuthError, ConfigError};
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};

/// What the publish API accepts.
#[derive(Clone, Default)]
pub struct Auth {
    basic: Option<String>,
    jwt: Option<(DecodingKey, Validation)>,
    /// Clock skew allowed on `exp` and `nbf`, seconds.
    leeway: u64,
}

/// A token's time claims, checked here rather than by `jsonwebtoken`, which
/// skips a claim of the wrong type instead of refusing the token.
#[derive(serde::Deserialize)]
struct TimeClaims {
    exp: Option<serde_json::Value>,
    nbf: Option<serde_json::Value>,
}

/// A NumericDate (RFC 7519 2): seconds since 1970, not negative.
fn numeric_date(value: &serde_json::Value, claim: &'static str) -> Result<f64, AuthError> {
    value
        .as_f64()
        .filter(|&t| t >= 0.0 && value.is_number())
        .ok_or(AuthError::BadTime { claim })
}

impl Auth {
    /// From the settings: `user:password`, a key (`base64:` allowed) and
    /// the clock skew allowed, seconds.
    pub fn new(basic: Option<&str>, key: Option<&str>, leeway: u64) -> Result<Auth, ConfigError> {
        let jwt = match key.filter(|k| !k.is_empty()) {
            None => None,
            Some(key) => {
                let bytes = match key.strip_prefix("base64:") {
                    Some(data) => base64::engine::general_purpose::STANDARD
                        .decode(data.trim())
                        .map_err(|_| ConfigError::PublishKey)?,
                    None => key.as_bytes().to_vec(),
                };
                let mut validation = Validation::new(Algorithm::HS256);
                validation.set_required_spec_claims::<&str>(&[]);
                validation.validate_aud = false;
                validation.validate_exp = false;
                validation.validate_nbf = false;
                Some((DecodingKey::from_secret(&bytes), validation))
            }
        };
        Ok(Auth {
            basic: basic.filter(|b| !b.is_empty()).map(str::to_owned),
            jwt,
            leeway,
        })
    }

    /// Whether anything is required.
    pub fn is_open(&self) -> bool {
        self.basic.is_none() && self.jwt.is_none()
    }

    /// Whether a request with this `Authorization` header may publish; if
    /// not, why.
    pub fn check(&self, authorization: Option<&str>) -> Result<(), AuthError> {
        if self.is_open() {
            return Ok(());
        }
        let Some((scheme, value)) = authorization.and_then(|a| a.trim().split_once(' ')) else {
            return Err(AuthError::Missing);
        };
        if scheme.eq_ignore_ascii_case("basic") && self.basic.is_some() {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(value.trim())
                .ok();
            return match (&self.basic, decoded) {
                (Some(expected), Some(given)) if given == expected.as_bytes() => Ok(()),
                _ => Err(AuthError::WrongBasic),
            };
        }
        if let (true, Some((key, validation))) = (scheme.eq_ignore_ascii_case("bearer"), &self.jwt)
        {
            let token = jsonwebtoken::decode::<TimeClaims>(value.trim(), key, validation)
                .map_err(AuthError::BadToken)?;
            return self.check_times(&token.claims);
        }
        Err(AuthError::Scheme {
            scheme: scheme.to_owned(),
        })
    }

    fn check_times(&self, claims: &TimeClaims) -> Result<(), AuthError> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let leeway = self.leeway as f64;
        if let Some(exp) = &claims.exp {
            let exp = numeric_date(exp, "exp")?;
            if now > exp + leeway {
                return Err(AuthError::Expired { ago: now - exp });
            }
        }
        if let Some(nbf) = &claims.nbf {
            let nbf = numeric_date(nbf, "nbf")?;
            if now + leeway < nbf {
                return Err(AuthError::NotYet {
                    remaining: nbf - now,
                });
            }
        }
        Ok(())
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

    fn now() -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    }

    #[test]
    fn open_when_nothing_configured() {
        assert!(Auth::new(None, None, 5).unwrap().check(None).is_ok());
    }

    #[test]
    fn basic_and_bearer() {
        let auth = Auth::new(Some("pub:secret"), Some("k"), 5).unwrap();
        let basic = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("pub:secret")
        );
        assert!(auth.check(Some(&basic)).is_ok());
        assert!(auth.check(Some("Basic cHViOndyb25n")).is_err());
        assert!(auth.check(Some("Basic ***")).is_err());
        assert!(auth.check(None).is_err());
        assert!(auth.check(Some("garbage")).is_err());
        assert!(auth
            .check(Some(&bearer(b"k", serde_json::json!({"iss": "app"}))))
            .is_ok());
        assert!(auth
            .check(Some(&bearer(
                b"k",
                serde_json::json!({"iss": "app", "exp": 4_000_000_000u64})
            )))
            .is_ok());
        assert!(auth
            .check(Some(&bearer(b"other", serde_json::json!({"iss": "app"}))))
            .is_err());
        assert!(auth.check(Some("Bearer not.a.jwt")).is_err());
        assert!(Auth::new(None, Some("base64:***"), 5).is_err());
    }

    #[test]
    fn time_claims_are_checked_strictly() {
        let auth = Auth::new(None, Some("k"), 5).unwrap();
        let check = |claims: serde_json::Value| auth.check(Some(&bearer(b"k", claims)));
        let t = now();
        assert!(check(serde_json::json!({"exp": t + 60, "nbf": t - 60})).is_ok());
        assert!(
            check(serde_json::json!({"exp": t - 2})).is_ok(),
            "within the leeway"
        );
        assert!(
            check(serde_json::json!({"nbf": t + 2})).is_ok(),
            "within the leeway"
        );
        let refused = [
            (serde_json::json!({"exp": t - 30}), "expired"),
            (serde_json::json!({"exp": 1000}), "expired"),
            (serde_json::json!({"exp": -1}), "\"exp\" must be a number"),
            (
                serde_json::json!({"exp": "1000"}),
                "\"exp\" must be a number",
            ),
            (serde_json::json!({"nbf": t + 60}), "not valid for another"),
            (
                serde_json::json!({"nbf": "soon"}),
                "\"nbf\" must be a number",
            ),
        ];
        for (claims, reason) in refused {
            let err = check(claims.clone()).unwrap_err();
            assert!(err.to_string().contains(reason), "{claims}: {err}");
        }
        let lenient = Auth::new(None, Some("k"), 60).unwrap();
        assert!(lenient
            .check(Some(&bearer(b"k", serde_json::json!({"exp": t - 30}))))
            .is_ok());
    }
}
