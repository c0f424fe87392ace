//! A server's answer as every suite reads it: status, the headers the tests look at, and the JSON
//! body, with the assertions on the API's envelope.

use reqwest::StatusCode;
use serde_json::{json, Value};

/// A JSON reply: status, body and the headers the tests read.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: StatusCode,
    pub body: Value,
    /// `X-Request-ID`, echoed.
    pub request_id: Option<String>,
    /// The node whose booking actor handled a booking action (`X-RideLock-Served-By`).
    pub served_by: Option<String>,
    /// `Retry-After`, on a 503.
    pub retry_after: Option<String>,
    /// `WWW-Authenticate`, on a 401.
    pub challenge: Option<String>,
}

/// Why no [`Reply`] could be read.
#[derive(Debug)]
pub enum ReadError {
    /// No answer: refused, reset, or timed out before a status came.
    Send(reqwest::Error),
    /// A status came, but the body could not be read.
    Body(StatusCode, reqwest::Error),
    /// A body came, and it was not JSON.
    NotJson(StatusCode, String),
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Send(error) => write!(f, "request not answered: {error}"),
            Self::Body(status, error) => write!(f, "body of a {status} not read: {error}"),
            Self::NotJson(status, text) => write!(f, "non-JSON body ({status}): {text}"),
        }
    }
}

impl Reply {
    /// Sends `request` and reads its answer.
    pub async fn send(request: reqwest::RequestBuilder) -> Result<Self, ReadError> {
        let response = request.send().await.map_err(ReadError::Send)?;
        Self::read(response).await
    }

    /// Reads an answer's status, headers and JSON body.
    pub async fn read(response: reqwest::Response) -> Result<Self, ReadError> {
        let status = response.status();
        let (request_id, served_by) = (
            header(&response, "x-request-id"),
            header(&response, "x-ridelock-served-by"),
        );
        let (retry_after, challenge) = (
            header(&response, "retry-after"),
            header(&response, "www-authenticate"),
        );
        let text = response
            .text()
            .await
            .map_err(|error| ReadError::Body(status, error))?;
        let body = serde_json::from_str(&text).map_err(|_| ReadError::NotJson(status, text))?;
        Ok(Self {
            status,
            body,
            request_id,
            served_by,
            retry_after,
            challenge,
        })
    }

    /// A reply with no headers (an answer the reader could not take as JSON, say).
    pub fn bare(status: StatusCode, body: Value) -> Self {
        Self {
            status,
            body,
            request_id: None,
            served_by: None,
            retry_after: None,
            challenge: None,
        }
    }

    pub fn data(&self) -> &Value {
        &self.body["data"]
    }

    pub fn error(&self) -> &str {
        self.body["error"].as_str().unwrap_or("")
    }

    /// Asserts the status alone.
    #[track_caller]
    pub fn expect_status(&self, status: u16) -> &Self {
        assert_eq!(
            self.status.as_u16(),
            status,
            "unexpected reply: {:#}",
            self.body
        );
        self
    }

    /// Asserts the status and, for failures, the envelope and `error` code.
    #[track_caller]
    pub fn expect(&self, status: u16, error: Option<&str>) -> &Self {
        self.expect_status(status);
        let success = (200..300).contains(&status);
        assert_eq!(
            self.body["success"],
            json!(success),
            "envelope: {:#}",
            self.body
        );
        assert!(
            self.body["message"].is_string(),
            "message missing: {:#}",
            self.body
        );
        if let Some(code) = error {
            assert_eq!(self.error(), code, "error code: {:#}", self.body);
        }
        self
    }

    /// Asserts a 400 that names `field`, in the message and in `data.field`.
    #[track_caller]
    pub fn expect_invalid(&self, field: &str) {
        self.expect(400, Some("invalid_request"));
        assert_eq!(
            self.body["data"]["field"],
            json!(field),
            "field: {:#}",
            self.body
        );
        let message = self.body["message"].as_str().unwrap_or("");
        assert!(
            message.contains(field),
            "message should name {field}: {message}"
        );
    }
}

/// A 400 naming `field`, with the case in the failure message.
#[track_caller]
pub fn assert_invalid(case: &str, reply: &Reply, field: &str) {
    assert_eq!(reply.status.as_u16(), 400, "{case}: {:#}", reply.body);
    assert_eq!(
        reply.body["data"]["field"],
        json!(field),
        "{case}: {:#}",
        reply.body
    );
    reply.expect_invalid(field);
}

/// A response header's value, when it is there and readable.
fn header(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}
