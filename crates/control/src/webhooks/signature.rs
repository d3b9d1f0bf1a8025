//! Standard Webhooks signatures: `webhook-signature` is a space-separated list of
//! `v1,<base64 HMAC-SHA256(key, "{webhook-id}.{webhook-timestamp}.{body}")>`, where the key
//! is the base64 after `whsec_` in the secret. A message is genuine when any listed `v1`
//! signature matches any valid key (two keys during a rotation); signatures are compared in
//! constant time (`Mac::verify_slice`).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

use crate::error::{Error, Result};

/// The prefix of every secret.
pub const SECRET_PREFIX: &str = "whsec_";

/// How far a message's `webhook-timestamp` may be from the receiver's clock, in seconds.
pub const TOLERANCE_S: i64 = 300;

/// A new secret: `whsec_` and the base64 of 32 random bytes.
pub fn new_secret() -> String {
    let mut key = [0u8; 32];
    rand::rng().fill_bytes(&mut key);
    format!("{SECRET_PREFIX}{}", STANDARD.encode(key))
}

/// The key bytes of a `whsec_...` secret.
pub fn key_of(secret: &str) -> Result<Vec<u8>> {
    let b64 = secret.strip_prefix(SECRET_PREFIX).unwrap_or(secret);
    STANDARD
        .decode(b64)
        .ok()
        .filter(|k| !k.is_empty())
        .ok_or_else(|| Error::internal("a stored webhook secret is not `whsec_<base64>`"))
}

fn mac(key: &[u8], msg_id: &str, timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
    // HMAC takes a key of any length: `new_from_slice` cannot fail for it.
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of every length"));
    m.update(msg_id.as_bytes());
    m.update(b".");
    m.update(timestamp.to_string().as_bytes());
    m.update(b".");
    m.update(body);
    m
}

/// The `webhook-signature` value for a message: `v1,<base64>`.
pub fn sign(key: &[u8], msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    let tag = mac(key, msg_id, timestamp, body).finalize().into_bytes();
    format!("v1,{}", STANDARD.encode(tag))
}

/// Whether any `v1` signature of `header` matches the message under any of `keys`.
pub fn verify(keys: &[Vec<u8>], msg_id: &str, timestamp: i64, body: &[u8], header: &str) -> bool {
    let sigs: Vec<Vec<u8>> = header
        .split(' ')
        .filter_map(|s| s.strip_prefix("v1,"))
        .filter_map(|s| STANDARD.decode(s.trim()).ok())
        .collect();
    let mut ok = false;
    // Every pair is checked (no early exit), each in constant time.
    for key in keys {
        for sig in &sigs {
            ok |= mac(key, msg_id, timestamp, body).verify_slice(sig).is_ok();
        }
    }
    ok
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the Standard Webhooks specification.
    #[test]
    fn signs_the_specification_example() {
        let key = key_of("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = br#"{"test": 2432232314}"#;
        let sig = sign(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body);
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        let keys = [key];
        assert!(verify(
            &keys,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            body,
            &sig
        ));
        let listed = format!("v1,bm90IGl0 {sig}");
        assert!(verify(
            &keys,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            body,
            &listed
        ));
        for (id, ts, b) in [
            ("msg_other", 1614265330, &body[..]),
            ("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265331, &body[..]),
            ("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, &b"{}"[..]),
        ] {
            assert!(!verify(&keys, id, ts, b, &sig));
        }
        assert!(!verify(&keys, "m", 1, b"", "v2,abc"));
        assert!(!verify(&keys, "m", 1, b"", ""));
    }

    #[test]
    fn new_secrets_are_whsec_32_bytes_and_differ() {
        let (a, b) = (new_secret(), new_secret());
        assert!(a.starts_with("whsec_"));
        assert_eq!(key_of(&a).unwrap().len(), 32);
        assert_ne!(a, b);
    }
}
