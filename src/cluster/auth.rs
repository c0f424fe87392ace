//! Authentication of node-to-node calls. A forwarding node signs each call with HMAC-SHA256 under
//! the shared `cluster.secret`; the receiving node recomputes the signature and refuses the call
//! unless it matches and its timestamp is recent. The secret itself never crosses the network, and
//! a captured call stops being accepted after [`MAX_SKEW`].

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::config::Secret;

/// The sending node's id.
pub const NODE_HEADER: &str = "x-ridelock-node";
/// How many times the call has been forwarded already (the first forward carries 1).
pub const HOPS_HEADER: &str = "x-ridelock-hops";
/// What is left of the original request's deadline, in milliseconds.
pub const BUDGET_HEADER: &str = "x-ridelock-budget-ms";
/// Milliseconds since the Unix epoch when the call was signed.
pub const TIMESTAMP_HEADER: &str = "x-ridelock-timestamp";
/// Hex HMAC-SHA256 of [`Signed::payload`].
pub const SIGNATURE_HEADER: &str = "x-ridelock-signature";

/// How far a call's timestamp may be from the receiver's clock, either way.
pub const MAX_SKEW: Duration = Duration::from_secs(30);

/// Everything a signature covers.
pub struct Signed<'a> {
    pub timestamp_ms: u64,
    pub node: &'a str,
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
            "{}\n{}\n{}\n{}\n{}\n{}\n",
            self.timestamp_ms, self.node, self.hops, self.budget_ms, self.request_id, self.path
        );
        mac.update(head.as_bytes());
        mac.update(self.body);
        Ok(mac)
    }

    /// The signature to send, in hex.
    pub fn sign(&self, secret: &Secret) -> Result<String, Refusal> {
        Ok(hex(&self.mac(secret)?.finalize().into_bytes()))
    }

    /// Checks `signature` (hex) in constant time, and the timestamp against `now`.
    pub fn verify(&self, secret: &Secret, signature: &str, now: SystemTime) -> Result<(), Refusal> {
        let sent = UNIX_EPOCH + Duration::from_millis(self.timestamp_ms);
        let skew = now
            .duration_since(sent)
            .or_else(|e| Ok::<_, ()>(e.duration()))
            .unwrap_or(Duration::MAX);
        if skew > MAX_SKEW {
            return Err(Refusal::Stale);
        }
        let bytes = unhex(signature).ok_or(Refusal::BadSignature)?;
        self.mac(secret)?
            .verify_slice(&bytes)
            .map_err(|_| Refusal::BadSignature)
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
            signed.verify(&secret, &signature, SystemTime::now()),
            Ok(())
        );
    }

    #[test]
    fn another_secret_a_changed_body_or_an_old_timestamp_is_refused() {
        let secret = Secret::new("s3cret");
        let signed = call(br#"{"op":"assign"}"#);
        let signature = signed.sign(&secret).unwrap();

        let other = Secret::new("guess");
        assert_eq!(
            signed.verify(&other, &signature, SystemTime::now()),
            Err(Refusal::BadSignature)
        );
        let tampered = call(br#"{"op":"cancel"}"#);
        assert_eq!(
            tampered.verify(&secret, &signature, SystemTime::now()),
            Err(Refusal::BadSignature)
        );
        let later = SystemTime::now() + MAX_SKEW + Duration::from_secs(1);
        assert_eq!(
            signed.verify(&secret, &signature, later),
            Err(Refusal::Stale)
        );
        assert_eq!(
            signed.verify(&secret, "not hex", SystemTime::now()),
            Err(Refusal::BadSignature)
        );
    }
}
