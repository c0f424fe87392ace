//! Input at the edge: JSON bodies whose errors name the offending field, and positive integer ids
//! in paths and queries. Every refusal here is a 400 before anything is read or written.

use std::future::{ready, Future, Ready};
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::header::AUTHORIZATION;
use actix_web::{web, FromRequest, HttpMessage, HttpRequest};
use serde::de::DeserializeOwned;

use crate::auth::{AuthError, Authenticator, Principal};
use crate::domain::values::FieldError;
use crate::error::ApiError;
use crate::storage::idempotency::IdempotencyKey;

/// Largest JSON body accepted; a larger one is refused with 413 before it is read to the end.
pub(crate) const BODY_LIMIT: usize = 64 * 1024;

/// Deepest nesting of arrays and objects accepted in a body. Every body of API.md is one flat
/// object; the limit keeps a hostile body from costing more than its size.
const MAX_DEPTH: usize = 4;

/// A JSON body deserialized with the path of the first bad field kept for the error message.
/// The content type is not checked, so the tutorial's scripts work with or without the header.
pub struct Body<T>(pub T);

impl<T: DeserializeOwned + 'static> FromRequest for Body<T> {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let bytes = read(req, payload);
        Box::pin(async move { parse(&bytes.await?).map(Body).map_err(ApiError::from) })
    }
}

/// The body's bytes, at most [`BODY_LIMIT`] of them.
fn read(
    req: &HttpRequest,
    payload: &mut Payload,
) -> impl Future<Output = Result<web::Bytes, ApiError>> + 'static {
    let bytes = web::Bytes::from_request(req, payload);
    async move {
        let too_large = || ApiError::PayloadTooLarge { limit: BODY_LIMIT };
        let bytes = bytes.await.map_err(|e| {
            if matches!(
                e.as_error::<actix_web::error::PayloadError>(),
                Some(actix_web::error::PayloadError::Overflow)
            ) {
                return too_large();
            }
            FieldError::new("body", format!("could not be read: {e}")).into()
        })?;
        if bytes.len() > BODY_LIMIT {
            return Err(too_large());
        }
        Ok(bytes)
    }
}

/// A [`Body`] with the request's `Idempotency-Key`, fingerprinted with the method, path and the
/// body's bytes.
pub struct Keyed<T> {
    pub body: T,
    pub key: Option<IdempotencyKey>,
}

impl<T: DeserializeOwned + 'static> FromRequest for Keyed<T> {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let bytes = read(req, payload);
        let req = req.clone();
        Box::pin(async move {
            let bytes = bytes.await?;
            let key = idempotency_key(&req, &bytes)?;
            let body = parse(&bytes)?;
            Ok(Self { body, key })
        })
    }
}

/// Deserializes a JSON object body; an empty body counts as `{}` so missing fields are named.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, FieldError> {
    let text = bytes.trim_ascii();
    let text = if text.is_empty() { &b"{}"[..] } else { text };
    if text.first() != Some(&b'{') {
        return Err(FieldError::new("body", "must be a JSON object"));
    }
    if nesting(text) > MAX_DEPTH {
        return Err(FieldError::new(
            "body",
            format!("nests arrays or objects deeper than {MAX_DEPTH} levels"),
        ));
    }
    let mut de = serde_json::Deserializer::from_slice(text);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| body_error(&e))?;
    de.end()
        .map_err(|_| FieldError::new("body", "has more after the JSON object"))?;
    Ok(value)
}

/// `name` from a serde message `<prefix>name\``, for the names of our own fields (no backticks).
fn quoted_after<'a>(problem: &'a str, prefix: &str) -> Option<&'a str> {
    problem.strip_prefix(prefix)?.strip_suffix('`')
}

/// The deepest nesting of `[` and `{` outside strings (an upper bound for malformed JSON, which
/// the parser then refuses anyway).
fn nesting(json: &[u8]) -> usize {
    let (mut depth, mut deepest, mut in_string, mut escaped) = (0usize, 0, false, false);
    for &b in json {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

fn body_error(error: &serde_path_to_error::Error<serde_json::Error>) -> FieldError {
    let inner = error.inner();
    let text = inner.to_string();
    // serde_json appends " at line L column C"; the key named in the message may hold anything.
    let problem = text
        .rsplit_once(" at line ")
        .map_or(&*text, |(head, _)| head);
    if let Some(field) = quoted_after(problem, "missing field `") {
        return FieldError::new(field, "is required");
    }
    if let Some(field) = problem
        .strip_prefix("unknown field `")
        .and_then(|rest| {
            rest.rsplit_once("`, expected")
                .or_else(|| rest.rsplit_once("`, there are no fields"))
        })
        .map(|(key, _)| key)
    {
        return FieldError::new(field, "is not a field of this request");
    }
    if let Some(field) = quoted_after(problem, "duplicate field `") {
        return FieldError::new(field, "is given twice");
    }
    if problem.starts_with("number out of range") {
        return FieldError::new(error.path().to_string(), "is out of range");
    }
    if inner.is_syntax() || inner.is_eof() {
        return FieldError::new("body", format!("is not valid JSON: {problem}"));
    }
    FieldError::new(error.path().to_string(), format!("is invalid: {problem}"))
}

/// The `Idempotency-Key` of a request whose body is not used: fingerprinted with the method and
/// path alone.
pub struct Idempotency(pub Option<IdempotencyKey>);

pub(crate) const IDEMPOTENCY_HEADER: &str = "idempotency-key";

impl FromRequest for Idempotency {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        std::future::ready(idempotency_key(req, &[]).map(Self))
    }
}

fn idempotency_key(req: &HttpRequest, body: &[u8]) -> Result<Option<IdempotencyKey>, ApiError> {
    let Some(value) = req.headers().get(IDEMPOTENCY_HEADER) else {
        return Ok(None);
    };
    let scope = caller(req)?.to_string();
    value
        .to_str()
        .ok()
        .and_then(|key| IdempotencyKey::new(&scope, key, req.method().as_str(), req.path(), body))
        .map(Some)
        .ok_or_else(|| {
            FieldError::new(
                "Idempotency-Key",
                "must be 1 to 255 printable ASCII characters",
            )
            .into()
        })
}

/// A positive integer id from a path or query segment.
pub fn id(raw: &str, field: &str) -> Result<i64, FieldError> {
    raw.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| FieldError::new(field, "must be a positive integer"))
}

/// A positive integer id from a JSON body.
pub(crate) fn body_id(value: i64, field: &str) -> Result<i64, FieldError> {
    (value > 0)
        .then_some(value)
        .ok_or_else(|| FieldError::new(field, "must be a positive integer"))
}

/// Deserializes an integer field written as `7` or `7.0`: JSON (and JSON Schema) does not tell
/// the two apart, so neither does the API. Fractions and values beyond i64 are refused.
pub(crate) fn whole_number<'de, D: serde::Deserializer<'de>>(de: D) -> Result<i64, D::Error> {
    struct Whole;
    impl serde::de::Visitor<'_> for Whole {
        type Value = i64;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an integer")
        }

        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<i64, E> {
            Ok(v)
        }

        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<i64, E> {
            i64::try_from(v).map_err(|_| E::custom("integer out of range"))
        }

        fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<i64, E> {
            // From 2^53 up, the JSON parser has already rounded the number it read (`…993.0`
            // arrives as `…992`), so a whole float is taken only below 2^53, where every one is
            // read exactly; larger ids must be written as integers.
            const EXACT: f64 = 9_007_199_254_740_992.0;
            if v.fract() == 0.0 && v.abs() < EXACT {
                Ok(v as i64)
            } else if v.fract() == 0.0 && v.is_finite() {
                Err(E::custom("must be written as an integer above 2^53"))
            } else {
                Err(E::custom("expected an integer"))
            }
        }
    }
    de.deserialize_any(Whole)
}

/// The authenticated caller of a request: 401 before the handler runs otherwise.
impl FromRequest for Principal {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(caller(req))
    }
}

/// The request's caller, verified once per request and then remembered with it (the handler
/// and the idempotency key both ask).
pub fn caller(req: &HttpRequest) -> Result<Principal, ApiError> {
    if let Some(known) = req.extensions().get::<Principal>() {
        return Ok(known.clone());
    }
    let Some(auth) = req.app_data::<actix_web::web::Data<Authenticator>>() else {
        return Err(ApiError::Internal(anyhow::anyhow!(
            "no authenticator registered"
        )));
    };
    let header = req
        .headers()
        .get(AUTHORIZATION)
        .map(|value| value.to_str().map_err(|_| AuthError::Malformed));
    let principal = match header {
        None => auth.authenticate(None),
        Some(Ok(text)) => auth.authenticate(Some(text)),
        Some(Err(error)) => Err(error),
    }?;
    req.extensions_mut().insert(principal.clone());
    Ok(principal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[expect(dead_code, reason = "only deserialized")]
    struct Probe {
        rider_id: i64,
        fare: f64,
    }

    /// The field a refused body is blamed on.
    fn blamed(json: &str) -> Option<String> {
        parse::<Probe>(json.as_bytes()).err().map(|e| e.field)
    }

    #[test]
    fn body_errors_name_the_field() {
        assert_eq!(blamed(r#"{"fare": 1.0}"#), Some("rider_id".into()));
        assert_eq!(
            blamed(r#"{"rider_id": "x", "fare": 1.0}"#),
            Some("rider_id".into())
        );
        assert_eq!(
            blamed(r#"{"rider_id": 1, "fare": "cheap"}"#),
            Some("fare".into())
        );
        assert_eq!(blamed(r#"{"rider_id": 1,"#), Some("body".into()));
        assert_eq!(blamed("[1, 2]"), Some("body".into()));
    }

    #[test]
    fn ids_must_be_positive_integers() {
        assert_eq!(id("42", "id"), Ok(42));
        for bad in ["0", "-1", "abc", "1.5", ""] {
            assert!(id(bad, "id").is_err(), "{bad}");
        }
    }
}
