//! Authentication of node-to-node calls. A forwarding node signs each call with HMAC-SHA256 under
//! the shared `cluster.secret`, naming the node it is meant for; the receiving node recomputes the
//! signature and refuses the call unless it matches, names this node, is recent (within
//! [`MAX_SKEW`]) and still inside the deadline the caller gave it. The secret never crosses the
//! network; the caller (`internal.rs`) also refuses a signature it has already seen, so a
//! captured call cannot be replayed.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::config::Secret;

/// The sending node's id.
pub const NODE_HEADER: &str = "x-ridelock-node";
/// The id of the node the call is meant for.
pub const TO_HEADER: &str = "x-ridelock-to";
/// How many times the call has been forwarded already (the first forward carries 1).
pub const HOPS_HEADER: &str = "x-ridelock-hops";
/// What is left of the original request's deadline, in milliseconds.
pub const BUDGET_HEADER: &str = "x-ridelock-budget-ms";
/// Milliseconds since the Unix epoch when the call was signed.
pub const TIMESTAMP_HEADER: &str = "x-ridelock-timestamp";
/// Hex HMAC-SHA256 of [`Signed::payload`].
pub const SIGNATURE_HEADER: &str = "x-ridelock-signature";

/// How far a call's timestamp may be from the receiver's clock, either way.
pub const MAX_SKEW: Duration = Duration::from_secs(10);

/// Everything a signature covers.
pub struct Signed<'a> {
    pub timestamp_ms: u64,
    pub node: &'a str,
    pub to: &'a str,
    pub hops: u8,
    pub budget_ms: u64,
    pub request_id: &'a str,
    pub path: &'a str,
    pub body: &'a [u8],
}

impl Signed<'_> {
    /// HMAC takes keys of any length, so the error arm is there for the type only.
    fn mac(&self, secret: &Secret) -> Result<Hmac<Sha256>, Refusal> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.expose().as_bytes())
            .map_err(|_| Refusal::BadSignature)?;
        let head = format!(
            "{}\n{}\n{}\n{}\n{}\n{}\n{}\n",
            self.timestamp_ms,
            self.node,
            self.to,
            self.hops,
            self.budget_ms,
            self.request_id,
            self.path
        );
        mac.update(head.as_bytes());
        mac.update(self.body);
        Ok(mac)
    }

    /// The signature to send, in hex.
    pub fn sign(&self, secret: &Secret) -> Result<String, Refusal> {
        Ok(hex(&self.mac(secret)?.finalize().into_bytes()))
    }

    /// Checks `signature` (hex) in constant time, that the call is meant for `me`, and its
    /// timestamp and deadline against `now`.
    pub fn verify(
        &self,
        secret: &Secret,
        signature: &str,
        me: &str,
        now: SystemTime,
    ) -> Result<(), Refusal> {
        let bytes = unhex(signature).ok_or(Refusal::BadSignature)?;
        self.mac(secret)?
            .verify_slice(&bytes)
            .map_err(|_| Refusal::BadSignature)?;
        if self.to != me {
            return Err(Refusal::WrongNode);
        }
        let sent = UNIX_EPOCH + Duration::from_millis(self.timestamp_ms);
        let skew = now
            .duration_since(sent)
            .or_else(|e| Ok::<_, ()>(e.duration()))
            .unwrap_or(Duration::MAX);
        if skew > MAX_SKEW {
            return Err(Refusal::Stale);
        }
        if self.budget_left(now).is_zero() {
            return Err(Refusal::Expired);
        }
        Ok(())
    }

    /// What is left of the caller's deadline at `now`: time the call spent travelling, or queued
    /// at a paused node, is gone. A receiver whose clock runs behind gains nothing from it.
    pub fn budget_left(&self, now: SystemTime) -> Duration {
        let budget = Duration::from_millis(self.budget_ms);
        let ends = UNIX_EPOCH + Duration::from_millis(self.timestamp_ms) + budget;
        ends.duration_since(now)
            .unwrap_or(Duration::ZERO)
            .min(budget)
    }
}

/// Why an internal call was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("missing cluster authentication headers")]
    Missing,
    #[error("cluster signature does not match")]
    BadSignature,
    #[error("cluster call timestamp too far from this node's clock")]
    Stale,
    #[error("cluster call meant for another node")]
    WrongNode,
    #[error("cluster call arrived after its deadline")]
    Expired,
    #[error("cluster call already seen (replayed)")]
    Replayed,
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(body: &[u8]) -> Signed<'_> {
        Signed {
            timestamp_ms: now_ms(),
            node: "n1",
            to: "n2",
            hops: 1,
            budget_ms: 4000,
            request_id: "req-1",
            path: "/internal/bookings/7",
            body,
        }
    }

    #[test]
    fn a_call_signed_with_the_cluster_secret_verifies() {
        let secret = Secret::new("s3cret");
        let signed = call(br#"{"op":"assign"}"#);
        let signature = signed.sign(&secret).unwrap();
        assert_eq!(
            signed.verify(&secret, &signature, "n2", SystemTime::now()),
            Ok(())
        );
    }

    #[test]
    fn a_call_for_another_node_or_past_its_deadline_is_refused() {
        let secret = Secret::new("s3cret");
        let signed = call(br#"{"op":"assign"}"#);
        let signature = signed.sign(&secret).unwrap();
        assert_eq!(
            signed.verify(&secret, &signature, "n3", SystemTime::now()),
            Err(Refusal::WrongNode)
        );
        let after_budget = SystemTime::now() + Duration::from_millis(4001);
        assert_eq!(
            signed.verify(&secret, &signature, "n2", after_budget),
            Err(Refusal::Expired)
        );
        let halfway = SystemTime::now() + Duration::from_millis(1000);
        assert!(signed.budget_left(halfway) <= Duration::from_millis(3000));
    }

    #[test]
    fn another_secret_a_changed_body_or_an_old_timestamp_is_refused() {
        let secret = Secret::new("s3cret");
        let signed = call(br#"{"op":"assign"}"#);
        let signature = signed.sign(&secret).unwrap();

        let other = Secret::new("guess");
        assert_eq!(
            signed.verify(&other, &signature, "n2", SystemTime::now()),
            Err(Refusal::BadSignature)
        );
        let tampered = call(br#"{"op":"cancel"}"#);
        assert_eq!(
            tampered.verify(&secret, &signature, "n2", SystemTime::now()),
            Err(Refusal::BadSignature)
        );
        let later = SystemTime::now() + MAX_SKEW + Duration::from_secs(1);
        assert_eq!(
            signed.verify(&secret, &signature, "n2", later),
            Err(Refusal::Stale)
        );
        assert_eq!(
            signed.verify(&secret, "not hex", "n2", SystemTime::now()),
            Err(Refusal::BadSignature)
        );
    }
}
