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
/// HMAC-SHA256 of [`Signed::payload`]: 64 lower-case hex digits, nothing else.
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

    /// Checks `signature` in constant time, that the call is meant for `me`, and its timestamp
    /// and deadline against `now`.
    pub fn verify(
        &self,
        secret: &Secret,
        signature: &Signature,
        me: &str,
        now: SystemTime,
    ) -> Result<(), Refusal> {
        self.mac(secret)?
            .verify_slice(&signature.0)
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
    pub(crate) fn budget_left(&self, now: SystemTime) -> Duration {
        let budget = Duration::from_millis(self.budget_ms);
        let ends = UNIX_EPOCH + Duration::from_millis(self.timestamp_ms) + budget;
        ends.duration_since(now)
            .unwrap_or(Duration::ZERO)
            .min(budget)
    }
}

/// A signature as the header carries it, decoded. Only one text decodes to a given signature
/// (64 lower-case hex digits), and the replay check keys on the bytes, so a captured call can
/// not be sent again with its signature re-cased.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signature([u8; 32]);

impl Signature {
    pub fn parse(text: &str) -> Option<Self> {
        let digits = text.as_bytes();
        if digits.len() != 64 {
            return None;
        }
        let mut bytes = [0; 32];
        for (byte, pair) in bytes.iter_mut().zip(digits.chunks_exact(2)) {
            *byte = lower_hex_digit(pair[0])? << 4 | lower_hex_digit(pair[1])?;
        }
        Some(Self(bytes))
    }

    /// The canonical text: what [`Signed::sign`] sends and the replay check keys on.
    pub(crate) fn to_hex(self) -> String {
        hex(&self.0)
    }
}

fn lower_hex_digit(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        _ => None,
    }
}

/// A number header in its one canonical form: decimal digits, no sign, no leading zero, at most
/// 19 of them. `u64::from_str` would also take `+7` and `007`.
pub(crate) fn parse_number(text: &str) -> Option<u64> {
    let canonical = !text.is_empty()
        && text.len() <= 19
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'));
    canonical.then(|| text.parse().ok()).flatten()
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
            signed.verify(&secret, &parse(&signature), "n2", SystemTime::now()),
            Ok(())
        );
    }

    #[test]
    fn a_call_for_another_node_or_past_its_deadline_is_refused() {
        let secret = Secret::new("s3cret");
        let signed = call(br#"{"op":"assign"}"#);
        let signature = signed.sign(&secret).unwrap();
        assert_eq!(
            signed.verify(&secret, &parse(&signature), "n3", SystemTime::now()),
            Err(Refusal::WrongNode)
        );
        let after_budget = SystemTime::now() + Duration::from_millis(4001);
        assert_eq!(
            signed.verify(&secret, &parse(&signature), "n2", after_budget),
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
            signed.verify(&other, &parse(&signature), "n2", SystemTime::now()),
            Err(Refusal::BadSignature)
        );
        let tampered = call(br#"{"op":"cancel"}"#);
        assert_eq!(
            tampered.verify(&secret, &parse(&signature), "n2", SystemTime::now()),
            Err(Refusal::BadSignature)
        );
        let later = SystemTime::now() + MAX_SKEW + Duration::from_secs(1);
        assert_eq!(
            signed.verify(&secret, &parse(&signature), "n2", later),
            Err(Refusal::Stale)
        );
    }

    fn parse(text: &str) -> Signature {
        Signature::parse(text).unwrap()
    }

    #[test]
    fn a_signature_and_a_number_have_one_text_each() {
        let signature = call(b"{}").sign(&Secret::new("s3cret")).unwrap();
        assert_eq!(parse(&signature).to_hex(), signature);
        for other in [
            signature.to_uppercase(),
            format!("+{}", &signature[1..]),
            format!("{signature}0"),
            signature[..62].to_owned(),
            format!(" {}", &signature[1..]),
            "not hex".to_owned(),
        ] {
            assert_eq!(Signature::parse(&other), None, "{other}");
        }
        assert_eq!(parse_number("0"), Some(0));
        assert_eq!(parse_number("1700000000000"), Some(1_700_000_000_000));
        for other in [
            "+1",
            "01",
            "-1",
            "",
            " 1",
            "1 ",
            "1e3",
            "99999999999999999999",
        ] {
            assert_eq!(parse_number(other), None, "{other:?}");
        }
    }
}
