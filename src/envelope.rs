//! The JSON success envelope of API.md, built in one place: `http` renders responses with it and
//! the booking actor stores the very same bytes as an idempotency key's answer.

use serde::Serialize;

/// `{"success": true, "message": …, "data": …}`, serialized straight to the body: no
/// `serde_json::Value` tree in between, which for a large answer (lock stats of 100,000 leases)
/// cost more memory than the leases.
#[derive(Serialize)]
pub(crate) struct Envelope<'a, T> {
    pub success: bool,
    pub message: &'a str,
    pub data: T,
}

/// A list: `data` is the array and `count` sits beside it.
#[derive(Serialize)]
pub(crate) struct ListEnvelope<'a, T> {
    pub success: bool,
    pub message: &'a str,
    pub data: &'a [T],
    pub count: usize,
}

/// The success body for `data`, as text: what an idempotency key stores, so a repeat gets the
/// very same bytes as the first answer.
pub(crate) fn success_body(message: &str, data: impl Serialize) -> String {
    serde_json::to_string(&Envelope {
        success: true,
        message,
        data,
    })
    .unwrap_or_default()
}
