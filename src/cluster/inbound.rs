//! The receiving side of a forwarded call (`POST /internal/bookings/{id}`). Only calls signed
//! with the cluster secret, meant for this node, recent, within their deadline and never seen
//! before are admitted ([`Inbound::admit`]); `http` refuses the rest with 401 before the body is
//! even parsed, then routes the admitted action like any other, with the hops and what is left
//! of the deadline the caller passed on.
//!
//! Nodes of adjacent builds run side by side during a rolling upgrade, so a body is read
//! leniently ([`parse_call`]): unknown fields are ignored, and only what this build cannot honour
//! (a newer format version, an action it does not know) is refused, as [`Unsupported`], for the
//! sender to try again.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Deserializer};
use serde_json::Value;

use super::auth::{self, Refusal, Signature, Signed};
use super::offers::SYSTEM_ACTOR;
use super::router::{ForwardedCall, CALL_VERSION, MAX_HOPS};
use crate::auth::Principal;
use crate::config::Secret;
use crate::domain::action::{Action, Op};
use crate::domain::values::FieldError;
use crate::redis_conn::RedisConn;
use crate::redis_health::RedisHealth;

/// The signature headers of a call, as the caller sent them (see `cluster::auth`).
pub(crate) struct Presented<'a> {
    pub node: Option<&'a str>,
    pub to: Option<&'a str>,
    pub hops: Option<&'a str>,
    pub budget_ms: Option<&'a str>,
    pub timestamp_ms: Option<&'a str>,
    pub signature: Option<&'a str>,
    pub request_id: Option<&'a str>,
    pub path: &'a str,
}

/// What an admitted call carries besides the action.
pub(crate) struct Admitted {
    pub hops: u8,
    pub budget: Duration,
}

/// Checks calls from other nodes.
pub(crate) struct Inbound {
    secret: Secret,
    node_id: String,
    key_prefix: String,
    redis: RedisConn,
    health: Arc<RedisHealth>,
}

impl Inbound {
    pub fn new(
        secret: Secret,
        node_id: &str,
        key_prefix: &str,
        redis: RedisConn,
        health: Arc<RedisHealth>,
    ) -> Self {
        Self {
            secret,
            node_id: node_id.to_owned(),
            key_prefix: key_prefix.to_owned(),
            redis,
            health,
        }
    }

    /// Admits a call whose signature covers `presented` and `body`, or says why not.
    pub(crate) async fn admit(
        &self,
        presented: &Presented<'_>,
        body: &[u8],
    ) -> Result<Admitted, Refusal> {
        let number = |text: Option<&str>| text.and_then(auth::parse_number);
        let (
            Some(node),
            Some(to),
            Some(hops),
            Some(budget_ms),
            Some(timestamp_ms),
            Some(signature),
        ) = (
            presented.node,
            presented.to,
            number(presented.hops),
            number(presented.budget_ms),
            number(presented.timestamp_ms),
            presented.signature.and_then(Signature::parse),
        )
        else {
            return Err(Refusal::Missing);
        };
        let hops = u8::try_from(hops)
            .ok()
            .filter(|h| *h <= MAX_HOPS)
            .ok_or(Refusal::Missing)?;
        let signed = Signed {
            timestamp_ms,
            node,
            to,
            hops,
            budget_ms,
            request_id: presented.request_id.unwrap_or(""),
            path: presented.path,
            body,
        };
        let now = SystemTime::now();
        signed.verify(&self.secret, &signature, &self.node_id, now)?;
        self.first_sighting(&signature).await?;
        Ok(Admitted {
            hops,
            budget: signed.budget_left(now),
        })
    }

    /// Remembers a verified signature for twice the accepted clock skew (after which its
    /// timestamp is refused anyway); a second call with it is a replay. If Redis cannot answer
    /// (or is known to be silent, and is not asked), the call is let through: it is signed,
    /// recent and meant for us. That trade is written down in docs/architecture.md.
    async fn first_sighting(&self, signature: &Signature) -> Result<(), Refusal> {
        if self.health.is_silent() {
            return Ok(());
        }
        let key = format!("{}seen:{}", self.key_prefix, signature.to_hex());
        let ttl_ms = u64::try_from((auth::MAX_SKEW * 2).as_millis()).unwrap_or(u64::MAX);
        let mut conn = self.redis.clone();
        let set: redis::RedisResult<Option<String>> = redis::cmd("SET")
            .arg(&key)
            .arg(1)
            .arg("NX")
            .arg("PX")
            .arg(ttl_ms)
            .query_async(&mut conn)
            .await;
        self.health.observe(&set);
        match set {
            Ok(Some(_)) => Ok(()),
            Ok(None) => Err(Refusal::Replayed),
            Err(error) => {
                log::warn!("replay check skipped node={} error={error}", self.node_id);
                Ok(())
            }
        }
    }
}

/// Why an admitted call's body is not run. Either way nothing was done with it.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CallError {
    /// Not a call at all, or a known action with bad fields: 400, naming the field.
    #[error(transparent)]
    Malformed(#[from] FieldError),
    /// A well-formed call from a newer build that this one cannot honour.
    #[error(transparent)]
    Unsupported(#[from] Unsupported),
}

/// What a newer build sent that this one cannot honour. The sender should try again: during a
/// rolling upgrade the booking soon moves to a node that can.
#[derive(Debug, thiserror::Error)]
pub enum Unsupported {
    #[error("call format version {0}; this build reads up to {CALL_VERSION}")]
    Version(u16),
    #[error("unknown action {0:?}")]
    Op(String),
}

/// A forwarded call's action as received: one this build knows, one it does not (a newer build's
/// op), or a known op whose fields do not read. Nothing fails while the call is parsed, so its
/// `v` is judged first: a newer format may change what any action's fields mean.
pub(crate) enum Offered {
    Known(Action),
    Unknown(String),
    Unreadable(String),
}

impl<'de> Deserialize<'de> for Offered {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Buffered, tag first, the way serde reads any internally tagged enum.
        let action = Value::deserialize(deserializer)?;
        if let Some(op) = action.get("op").filter(|op| Op::deserialize(*op).is_err()) {
            if let Some(name) = op.as_str() {
                return Ok(Self::Unknown(name.to_owned()));
            }
        }
        Ok(match Action::deserialize(action) {
            Ok(action) => Self::Known(action),
            Err(error) => Self::Unreadable(error.to_string()),
        })
    }
}

/// The booking action of an admitted call's body, if this build can honour it. The actor it
/// names must be a token subject, or the offer sweep of the node that sent it.
pub(crate) fn parse_call(body: &[u8]) -> Result<ForwardedCall, CallError> {
    let not_an_operation = |e: &dyn std::fmt::Display| {
        FieldError::new("body", format!("is not a booking operation: {e}"))
    };
    let call: ForwardedCall<Offered> =
        serde_json::from_slice(body).map_err(|e| not_an_operation(&e))?;
    match call.v {
        0 => return Err(FieldError::new("v", "must be at least 1").into()),
        v if v > CALL_VERSION => return Err(Unsupported::Version(v).into()),
        _ => {}
    }
    let action = match call.action {
        Offered::Known(action) => action,
        Offered::Unknown(op) => return Err(Unsupported::Op(op).into()),
        Offered::Unreadable(error) => return Err(not_an_operation(&error).into()),
    };
    let known = |s: &str| s == SYSTEM_ACTOR || Principal::from_subject(s).is_some();
    if call.actor.as_deref().is_some_and(|s| !known(s)) {
        return Err(FieldError::new("actor", "must be a token subject").into());
    }
    Ok(ForwardedCall {
        v: call.v,
        action,
        idempotency: call.idempotency,
        actor: call.actor,
    })
}
