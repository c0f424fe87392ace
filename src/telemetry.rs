//! Logging set-up and the one helper that formats actor-message lines, so every line has the same
//! logfmt fields in the same order and one grep for `req=<id>` follows a request.

use std::time::Duration;

/// `env_logger` with default filter `info`, overridable by `RUST_LOG`.
pub fn init() {
    let _ = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_timestamp_millis()
        .try_init();
}

/// One line for one handled actor message.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ActorLine<'a> {
    pub node: &'a str,
    pub actor: &'a str,
    pub msg: &'a str,
    pub req: &'a str,
    pub token: i64,
    /// `ok` or `err:<api code>`.
    pub outcome: &'a str,
    pub waited: Duration,
    pub handled: Duration,
}

/// The log target of actor-message lines.
pub(crate) const ACTOR_TARGET: &str = "actors::booking";

pub(crate) fn actor_message(line: ActorLine<'_>) {
    // Every actor message is a mutation, so every line is `info`.
    log::info!(
        target: ACTOR_TARGET,
        "handled node={} actor={} msg={} req={} token={} outcome={} waited_us={} handled_us={}",
        line.node,
        line.actor,
        line.msg,
        line.req,
        line.token,
        line.outcome,
        line.waited.as_micros(),
        line.handled.as_micros(),
    );
}

/// A lease that changed hands outside a request (heartbeat, release); always `req=-`.
pub(crate) fn lease_event(node: &str, key: &str, what: &str, outcome: &str) {
    log::warn!(target: "lease::manager", "{what} node={node} lease={key} req=- outcome={outcome}");
}
