//! An event stream (Server-Sent Events) as a client reads it: opened with a token and, to
//! resume, a `Last-Event-ID`; read event by event, comments (heartbeats) counted apart.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

/// One event: its `id:`, its `event:` type and its `data:` as JSON.
#[derive(Debug, Clone)]
pub struct Event {
    pub id: i64,
    pub kind: String,
    pub data: Value,
}

/// An open stream.
pub struct EventStream {
    /// The answer's headers.
    pub headers: reqwest::header::HeaderMap,
    response: reqwest::Response,
    /// Text read and not yet parsed into events.
    pending: String,
    /// Comment lines seen (`: heartbeat`, `: connected`).
    pub comments: Vec<String>,
    /// The `retry:` the server asked for, in ms.
    pub retry_ms: Option<u64>,
    /// Events without an id (the ops stream's `lease`, `backend`, `node`), not yet looked for.
    live: Vec<(String, Value)>,
}

impl EventStream {
    /// Opens `url` as `subject` (`rider:3`, `ops:x`), resuming after `last_event_id` if given.
    /// Panics unless the server answers 200 with `text/event-stream`.
    pub async fn open(url: &str, subject: &str, last_event_id: Option<i64>) -> Self {
        let mut request = reqwest::Client::new()
            .get(url)
            .bearer_auth(super::auth::token(subject))
            .header("Accept", "text/event-stream");
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id.to_string());
        }
        let response = request.send().await.expect("stream opened");
        let status = response.status();
        let headers = response.headers().clone();
        if status != StatusCode::OK {
            let body = response.text().await.unwrap_or_default();
            panic!("stream {url} refused: {status} {body}");
        }
        assert_eq!(
            headers
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default(),
            "text/event-stream"
        );
        Self {
            headers,
            response,
            pending: String::new(),
            comments: Vec::new(),
            retry_ms: None,
            live: Vec::new(),
        }
    }

    /// The next event, waiting at most `within`; `None` if none came (or the stream ended).
    pub async fn next(&mut self, within: Duration) -> Option<Event> {
        let until = tokio::time::Instant::now() + within;
        loop {
            if let Some(event) = self.parse_one() {
                return Some(event);
            }
            let chunk = tokio::time::timeout_at(until, self.response.chunk()).await;
            match chunk {
                Ok(Ok(Some(bytes))) => self.pending.push_str(&String::from_utf8_lossy(&bytes)),
                Ok(Ok(None)) | Ok(Err(_)) | Err(_) => return None,
            }
        }
    }

    /// The next `count` events, each within `within`; panics with those read if one is missing.
    pub async fn take(&mut self, count: usize, within: Duration) -> Vec<Event> {
        let mut events = Vec::with_capacity(count);
        while events.len() < count {
            match self.next(within).await {
                Some(event) => events.push(event),
                None => panic!("{} of {count} events came: {events:#?}", events.len()),
            }
        }
        events
    }

    /// The first event without an id (`lease`, `backend`, `node`) of type `kind` that `wanted`
    /// accepts, waiting at most `within`; events with ids read meanwhile are passed over.
    pub async fn live_event(
        &mut self,
        kind: &str,
        within: Duration,
        wanted: impl Fn(&Value) -> bool,
    ) -> Option<Value> {
        let until = tokio::time::Instant::now() + within;
        loop {
            while self.parse_one().is_some() {}
            if let Some(at) = self
                .live
                .iter()
                .position(|(k, data)| k == kind && wanted(data))
            {
                return Some(self.live.remove(at).1);
            }
            let chunk = tokio::time::timeout_at(until, self.response.chunk()).await;
            match chunk {
                Ok(Ok(Some(bytes))) => self.pending.push_str(&String::from_utf8_lossy(&bytes)),
                Ok(Ok(None)) | Ok(Err(_)) | Err(_) => return None,
            }
        }
    }

    /// Whether the server ended the stream within `within` (no event in between).
    pub async fn ends_within(&mut self, within: Duration) -> bool {
        let until = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(until, self.response.chunk()).await {
                Ok(Ok(None)) | Ok(Err(_)) => return true,
                Ok(Ok(Some(bytes))) => self.pending.push_str(&String::from_utf8_lossy(&bytes)),
                Err(_) => return false,
            }
        }
    }

    /// Parses the first complete block of `pending` (blocks end with a blank line); comment-only
    /// blocks are recorded and skipped.
    fn parse_one(&mut self) -> Option<Event> {
        loop {
            let end = self.pending.find("\n\n")?;
            let block: String = self.pending.drain(..end + 2).collect();
            let (mut id, mut kind, mut data) = (None, None, None);
            for line in block.lines() {
                if let Some(comment) = line.strip_prefix(':') {
                    self.comments.push(comment.trim().to_owned());
                } else if let Some(value) = line.strip_prefix("id: ") {
                    id = value.parse::<i64>().ok();
                } else if let Some(value) = line.strip_prefix("event: ") {
                    kind = Some(value.to_owned());
                } else if let Some(value) = line.strip_prefix("data: ") {
                    data = Some(serde_json::from_str(value).expect("data is JSON"));
                } else if let Some(value) = line.strip_prefix("retry: ") {
                    self.retry_ms = value.parse().ok();
                } else if !line.is_empty() {
                    panic!("not an event-stream line: {line:?}");
                }
            }
            match (id, data) {
                (Some(id), Some(data)) => {
                    return Some(Event {
                        id,
                        kind: kind.unwrap_or_else(|| "message".to_owned()),
                        data,
                    })
                }
                (None, Some(data)) => self.live.push((kind.unwrap_or_default(), data)),
                _ => {}
            }
        }
    }
}
