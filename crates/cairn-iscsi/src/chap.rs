//! CHAP with MD5 (RFC 1994, as RFC 7143 §12.1.3 uses it): challenge, response check and the
//! target's answer for mutual CHAP.
//!
//! Invariants: a response is checked against the secret of the name the initiator gave, in time
//! independent of where it differs; an initiator challenge equal to the target's own is refused
//! (reflection); binary values are read from `0x` hex or `0b` base64 with bounded length.

use base64::Engine as _;
use md5::{Digest, Md5};

use crate::limits::CHAP_CHALLENGE_BYTES_MAX;

/// One CHAP name and secret.
#[derive(Clone, PartialEq, Eq)]
pub struct ChapCredential {
    pub name: String,
    pub secret: Vec<u8>,
}

impl std::fmt::Debug for ChapCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChapCredential")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// MD5(id || secret || challenge).
pub fn response(id: u8, secret: &[u8], challenge: &[u8]) -> [u8; 16] {
    let mut h = Md5::new();
    h.update([id]);
    h.update(secret);
    h.update(challenge);
    h.finalize().into()
}

/// Compares without an early exit.
pub fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Decodes a CHAP binary value (`0x...` hex or `0b...` base64).
pub fn decode_binary(v: &str) -> Option<Vec<u8>> {
    if v.len() > 2 + 2 * CHAP_CHALLENGE_BYTES_MAX {
        return None;
    }
    let bytes = if let Some(hex) = v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        decode_hex(hex)?
    } else if let Some(b64) = v.strip_prefix("0b").or_else(|| v.strip_prefix("0B")) {
        base64::engine::general_purpose::STANDARD.decode(b64).ok()?
    } else {
        return None;
    };
    (!bytes.is_empty() && bytes.len() <= CHAP_CHALLENGE_BYTES_MAX).then_some(bytes)
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    // An odd number of digits has an implied leading zero.
    let padded = if hex.len() % 2 == 1 {
        format!("0{hex}")
    } else {
        hex.to_string()
    };
    (0..padded.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(padded.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Encodes a binary value as `0x` hex.
pub fn encode_hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(2 + bytes.len() * 2);
    s.push_str("0x");
    for b in bytes {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md5_response_matches_rfc1321_vector() {
        // MD5("abc") with id 'a', secret "b", challenge "c".
        let r = response(b'a', b"b", b"c");
        assert_eq!(encode_hex(&r), "0x900150983cd24fb0d6963f7d28e17f72");
    }

    #[test]
    fn binary_values() {
        assert_eq!(decode_binary("0x0102ff"), Some(vec![1, 2, 255]));
        assert_eq!(decode_binary("0x102"), Some(vec![1, 2]));
        assert_eq!(decode_binary("0bAQL/"), Some(vec![1, 2, 255]));
        for bad in ["", "0x", "0xzz", "12", "0b***", "0xé1"] {
            assert_eq!(decode_binary(bad), None, "{bad}");
        }
        assert_eq!(
            decode_binary(&format!("0x{}", "00".repeat(CHAP_CHALLENGE_BYTES_MAX + 1))),
            None
        );
        assert!(same(b"ab", b"ab") && !same(b"ab", b"ac") && !same(b"a", b"ab"));
    }
}
