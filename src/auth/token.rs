//! Verifying and minting the bearer JWTs of [`super`]. Keys and validation rules are built once,
//! at start-up, so a bad key file stops the server instead of failing every request.

use std::time::Duration;

use anyhow::{bail, Context};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use super::{AuthError, AuthMode, Principal};
use crate::config::AuthSettings;

/// The claims `ridelock token` writes.
#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    iss: String,
    aud: String,
    exp: u64,
    iat: u64,
}

/// What the server reads of a verified token. `iss`, `aud`, `exp` and `nbf` are checked by
/// [`Validation`] itself (which also takes `aud` as an array, as identity providers send it);
/// `exp` and `iat` again here, for the lifetime limit of the subject's role.
#[derive(Debug, Deserialize)]
struct Subject {
    sub: String,
    exp: u64,
    iat: Option<u64>,
}

/// Turns an `Authorization` header into a [`Principal`].
pub enum Authenticator {
    Jwt {
        /// The key tokens are signed with, then the secondary one (a key rotation), if any.
        keys: Vec<DecodingKey>,
        validation: Box<Validation>,
        limits: Lifetimes,
    },
    /// Every caller is trusted as an operator.
    Off,
}

/// The longest token lifetime accepted per role, and the clock skew allowed.
pub struct Lifetimes {
    rider: u64,
    driver: u64,
    ops: u64,
    leeway: u64,
}

impl Lifetimes {
    fn from_settings(settings: &AuthSettings) -> Self {
        Self {
            rider: settings.rider_max_ttl_secs,
            driver: settings.driver_max_ttl_secs,
            ops: settings.ops_max_ttl_secs,
            leeway: settings.leeway_secs,
        }
    }

    /// The longest lifetime `who` may hold a token for, seconds.
    pub(crate) fn max_for(&self, who: &Principal) -> u64 {
        match who {
            Principal::Rider(_) => self.rider,
            Principal::Driver(_) => self.driver,
            Principal::Ops(_) => self.ops,
        }
    }

    /// A verified token's lifetime against its role's limit at `now`: from `iat` when the
    /// token has one (which may not lie in the future), else from `now`.
    fn check(&self, who: &Principal, claims: &Subject, now: u64) -> Result<(), AuthError> {
        if claims.iat.is_some_and(|iat| iat > now + self.leeway) {
            return Err(AuthError::NotYetValid);
        }
        let issued = claims.iat.unwrap_or(now).min(now);
        if claims.exp.saturating_sub(issued) > self.max_for(who) + self.leeway {
            return Err(AuthError::TooLong);
        }
        Ok(())
    }
}

/// Longest token accepted; real ones are a few hundred bytes.
const MAX_TOKEN_LEN: usize = 4096;

impl Authenticator {
    pub fn from_settings(settings: &AuthSettings) -> anyhow::Result<Self> {
        if settings.mode == AuthMode::Off {
            return Ok(Self::Off);
        }
        let algorithm = settings.algorithm()?;
        let mut keys = vec![match algorithm {
            Algorithm::HS256 => DecodingKey::from_secret(secret(settings)?),
            _ => rsa_key("auth.public_key_path", &settings.public_key_path)?,
        }];
        match algorithm {
            Algorithm::HS256 if !settings.secondary_secret.expose().is_empty() => {
                keys.push(DecodingKey::from_secret(
                    settings.secondary_secret.expose().as_bytes(),
                ));
            }
            Algorithm::RS256 if !settings.secondary_public_key_path.is_empty() => {
                keys.push(rsa_key(
                    "auth.secondary_public_key_path",
                    &settings.secondary_public_key_path,
                )?);
            }
            _ => {}
        }
        let mut validation = Validation::new(algorithm);
        validation.set_issuer(&[&settings.issuer]);
        validation.set_audience(&[&settings.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = settings.leeway_secs;
        Ok(Self::Jwt {
            keys,
            validation: Box::new(validation),
            limits: Lifetimes::from_settings(settings),
        })
    }

    pub fn mode(&self) -> AuthMode {
        match self {
            Self::Jwt { .. } => AuthMode::Jwt,
            Self::Off => AuthMode::Off,
        }
    }

    /// The caller named by `header` (the `Authorization` value, if any).
    pub fn authenticate(&self, header: Option<&str>) -> Result<Principal, AuthError> {
        let (keys, validation, limits) = match self {
            Self::Off => return Ok(Principal::Ops("anonymous".to_owned())),
            Self::Jwt {
                keys,
                validation,
                limits,
            } => (keys, validation, limits),
        };
        let header = header.ok_or(AuthError::Missing)?;
        let token = bearer(header).ok_or(AuthError::Malformed)?;
        let decode = |key| jsonwebtoken::decode::<Subject>(token, key, validation);
        let (first, others) = keys.split_first().ok_or(AuthError::Invalid)?;
        let mut outcome = decode(first);
        for key in others {
            // Only a signature another key may have made is worth a second try.
            if matches!(&outcome, Err(e) if *e.kind() == ErrorKind::InvalidSignature) {
                outcome = decode(key);
            }
        }
        let claims = outcome
            .map_err(|error| match error.kind() {
                ErrorKind::ExpiredSignature => AuthError::Expired,
                ErrorKind::ImmatureSignature => AuthError::NotYetValid,
                // Not three base64url parts at all; a token whose claims do not fit (`Json`)
                // is well formed but invalid.
                ErrorKind::InvalidToken | ErrorKind::Base64(_) | ErrorKind::Utf8(_) => {
                    AuthError::Malformed
                }
                _ => AuthError::Invalid,
            })?
            .claims;
        let principal = Principal::from_subject(&claims.sub).ok_or(AuthError::Invalid)?;
        limits.check(&principal, &claims, jsonwebtoken::get_current_timestamp())?;
        Ok(principal)
    }
}

/// The token of `Bearer <token>` (the scheme is case-insensitive), if it has a JWT's three parts.
fn bearer(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    let token = token.trim();
    let shaped = token.len() <= MAX_TOKEN_LEN
        && token.split('.').count() == 3
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    (scheme.eq_ignore_ascii_case("bearer") && shaped).then_some(token)
}

/// The HS256 key. Never empty: an empty key would sign and verify anyone's tokens.
fn secret(settings: &AuthSettings) -> anyhow::Result<&[u8]> {
    let secret = settings.secret.expose();
    if secret.is_empty() {
        bail!("auth.secret is empty: set it (RIDELOCK_AUTH__SECRET) or use RS256");
    }
    Ok(secret.as_bytes())
}

/// The RSA public key in the PEM file the setting `name` points at.
fn rsa_key(name: &str, path: &str) -> anyhow::Result<DecodingKey> {
    DecodingKey::from_rsa_pem(&pem(name, path)?)
        .with_context(|| format!("{name} is not an RSA PEM"))
}

/// The PEM file the setting `name` points at.
fn pem(name: &str, path: &str) -> anyhow::Result<Vec<u8>> {
    if path.is_empty() {
        bail!("{name} is not set, and RS256 needs it");
    }
    std::fs::read(path).with_context(|| format!("reading {name} {path}"))
}

/// A token for `subject` valid for `ttl`, signed with the configured secret (HS256) or private
/// key (RS256, `auth.private_key_path`): `ridelock token` and the tests. Refuses a lifetime the
/// server would refuse for the subject's role.
pub fn mint(settings: &AuthSettings, subject: &Principal, ttl: Duration) -> anyhow::Result<String> {
    let most = Lifetimes::from_settings(settings).max_for(subject);
    if ttl.as_secs() > most {
        bail!(
            "a {} token may live at most {most} s (auth.*_max_ttl_secs), not {} s",
            subject.to_string().split(':').next().unwrap_or("?"),
            ttl.as_secs()
        );
    }
    let algorithm = settings.algorithm()?;
    let key = match algorithm {
        Algorithm::HS256 => EncodingKey::from_secret(secret(settings)?),
        _ => EncodingKey::from_rsa_pem(&pem("auth.private_key_path", &settings.private_key_path)?)
            .context("auth.private_key_path is not an RSA PEM")?,
    };
    let now = jsonwebtoken::get_current_timestamp();
    let claims = Claims {
        sub: subject.to_string(),
        iss: settings.issuer.clone(),
        aud: settings.audience.clone(),
        exp: now.saturating_add(ttl.as_secs()),
        iat: now,
    };
    jsonwebtoken::encode(&Header::new(algorithm), &claims, &key).context("signing the token")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;
    use crate::domain::ids::RiderId;

    /// `claims` signed HS256 with `secret`, as an identity provider would.
    fn hs256(claims: &impl Serialize, secret: &str) -> jsonwebtoken::errors::Result<String> {
        jsonwebtoken::encode(
            &Header::default(),
            claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
    }

    fn settings(secret: &str) -> AuthSettings {
        AuthSettings {
            mode: AuthMode::Jwt,
            algorithm: "HS256".into(),
            secret: Secret::new(secret),
            public_key_path: String::new(),
            private_key_path: String::new(),
            issuer: "ridelock".into(),
            audience: "ridelock-api".into(),
            leeway_secs: 0,
            token_ttl_secs: 3600,
            secondary_secret: Secret::new(""),
            secondary_public_key_path: String::new(),
            scrape_token: Secret::new(""),
            rider_max_ttl_secs: 86_400,
            driver_max_ttl_secs: 86_400,
            ops_max_ttl_secs: 3600,
        }
    }

    fn verify(settings: &AuthSettings, header: &str) -> Result<Principal, AuthError> {
        Authenticator::from_settings(settings)
            .map_err(|_| AuthError::Invalid)?
            .authenticate(Some(header))
    }

    #[test]
    fn a_minted_token_names_its_subject() -> anyhow::Result<()> {
        let s = settings("a-secret-of-thirty-two-characters!!");
        let rider = Principal::Rider(RiderId(7));
        let token = mint(&s, &rider, Duration::from_secs(60))?;
        assert_eq!(verify(&s, &format!("Bearer {token}")), Ok(rider.clone()));
        assert_eq!(verify(&s, &format!("bearer  {token} ")), Ok(rider));
        Ok(())
    }

    #[test]
    fn every_bad_token_is_refused_with_its_reason() -> anyhow::Result<()> {
        let s = settings("a-secret-of-thirty-two-characters!!");
        let rider = Principal::Rider(RiderId(7));
        let good = mint(&s, &rider, Duration::from_secs(60))?;
        let other_key = mint(
            &settings("another-secret-entirely-32-chars!!"),
            &rider,
            Duration::from_secs(60),
        )?;
        let mut other_issuer = settings("a-secret-of-thirty-two-characters!!");
        other_issuer.issuer = "someone-else".into();
        let foreign = mint(&other_issuer, &rider, Duration::from_secs(60))?;
        let mut other_audience = settings("a-secret-of-thirty-two-characters!!");
        other_audience.audience = "another-api".into();
        let elsewhere = mint(&other_audience, &rider, Duration::from_secs(60))?;
        let expired_under = |secret: &str| {
            let now = jsonwebtoken::get_current_timestamp();
            let claims = Claims {
                sub: "rider:7".into(),
                iss: s.issuer.clone(),
                aud: s.audience.clone(),
                exp: now - 10,
                iat: now - 70,
            };
            hs256(&claims, secret)
        };
        let expired = expired_under(s.secret.expose())?;
        // The signature is checked before the claims: a forgery learns nothing from `exp`.
        let forged_and_expired = expired_under("another-secret-entirely-32-chars!!")?;
        let cases = [
            (format!("Basic {good}"), AuthError::Malformed),
            (good.clone(), AuthError::Malformed),
            ("Bearer not-a-jwt".to_owned(), AuthError::Malformed),
            ("Bearer a.b.c".to_owned(), AuthError::Malformed),
            (format!("Bearer {other_key}"), AuthError::Invalid),
            (format!("Bearer {foreign}"), AuthError::Invalid),
            (format!("Bearer {elsewhere}"), AuthError::Invalid),
            (format!("Bearer {expired}"), AuthError::Expired),
            (format!("Bearer {forged_and_expired}"), AuthError::Invalid),
        ];
        for (header, reason) in cases {
            assert_eq!(verify(&s, &header), Err(reason), "{header}");
        }
        let authenticator = Authenticator::from_settings(&s)?;
        assert_eq!(authenticator.authenticate(None), Err(AuthError::Missing));
        Ok(())
    }

    #[test]
    fn an_audience_list_and_a_missing_iat_are_fine_an_empty_secret_is_not() -> anyhow::Result<()> {
        let s = settings("a-secret-of-thirty-two-characters!!");
        let now = jsonwebtoken::get_current_timestamp();
        let claims = serde_json::json!({
            "sub": "driver:3",
            "iss": s.issuer,
            "aud": ["another-api", s.audience],
            "exp": now + 60,
        });
        let token = hs256(&claims, s.secret.expose())?;
        assert_eq!(
            verify(&s, &format!("Bearer {token}")),
            Ok(Principal::Driver(crate::domain::ids::DriverId(3)))
        );
        assert!(Authenticator::from_settings(&settings("")).is_err());
        Ok(())
    }

    #[test]
    fn lifetimes_and_nbf_are_bounded_and_a_secondary_key_verifies() -> anyhow::Result<()> {
        let mut s = settings("a-secret-of-thirty-two-characters!!");
        let now = jsonwebtoken::get_current_timestamp();
        let token = |sub: &str, iat: Option<u64>, exp: u64, nbf: Option<u64>, key: &str| {
            let mut claims = serde_json::json!({
                "sub": sub, "iss": "ridelock", "aud": "ridelock-api", "exp": exp,
            });
            if let Some(iat) = iat {
                claims["iat"] = iat.into();
            }
            if let Some(nbf) = nbf {
                claims["nbf"] = nbf.into();
            }
            hs256(&claims, key).map(|t| format!("Bearer {t}"))
        };
        let key = "a-secret-of-thirty-two-characters!!";
        let cases = [
            // An ops token for ten years, with or without iat.
            (
                token("ops:x", Some(now), now + 315_360_000, None, key)?,
                Err(AuthError::TooLong),
            ),
            (
                token("ops:x", None, now + 315_360_000, None, key)?,
                Err(AuthError::TooLong),
            ),
            // Issued long ago so that what is left looks short: the whole lifetime counts.
            (
                token("ops:x", Some(now - 7000), now + 60, None, key)?,
                Err(AuthError::TooLong),
            ),
            (token("ops:x", Some(now), now + 3600, None, key)?, Ok(())),
            (
                token("rider:1", Some(now), now + 86_400, None, key)?,
                Ok(()),
            ),
            (
                token("rider:1", Some(now), now + 86_401, None, key)?,
                Err(AuthError::TooLong),
            ),
            (
                token("rider:1", Some(now + 600), now + 900, None, key)?,
                Err(AuthError::NotYetValid),
            ),
            (
                token("rider:1", Some(now), now + 60, Some(now + 600), key)?,
                Err(AuthError::NotYetValid),
            ),
            (
                token("rider:1", Some(now), now + 60, Some(now - 1), key)?,
                Ok(()),
            ),
        ];
        for (header, expected) in &cases {
            assert_eq!(verify(&s, header).map(|_| ()), *expected, "{header}");
        }
        let next = "the-next-secret-of-thirty-two-chars";
        let rotated = token("driver:2", Some(now), now + 60, None, next)?;
        assert_eq!(verify(&s, &rotated), Err(AuthError::Invalid));
        s.secondary_secret = Secret::new(next);
        assert!(verify(&s, &rotated).is_ok());
        assert!(verify(&s, &token("driver:2", Some(now), now + 60, None, key)?).is_ok());
        assert!(mint(&s, &Principal::Ops("x".into()), Duration::from_secs(3601)).is_err());
        Ok(())
    }

    #[test]
    fn an_unknown_subject_is_invalid() -> anyhow::Result<()> {
        let s = settings("a-secret-of-thirty-two-characters!!");
        let now = jsonwebtoken::get_current_timestamp();
        let claims = Claims {
            sub: "admin:root".into(),
            iss: s.issuer.clone(),
            aud: s.audience.clone(),
            exp: now + 60,
            iat: now,
        };
        let token = hs256(&claims, s.secret.expose())?;
        assert_eq!(
            verify(&s, &format!("Bearer {token}")),
            Err(AuthError::Invalid)
        );
        Ok(())
    }

    #[test]
    fn off_trusts_everyone_as_an_operator() {
        let mut s = settings("");
        s.mode = AuthMode::Off;
        let auth = Authenticator::from_settings(&s).map_err(|_| ()).ok();
        assert_eq!(
            auth.and_then(|a| a.authenticate(None).ok()),
            Some(Principal::Ops("anonymous".into()))
        );
    }
}
