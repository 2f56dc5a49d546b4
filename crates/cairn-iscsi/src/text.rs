//! Text key=value data (RFC 7143 §6.1): parsing with bounds and encoding.
//!
//! Invariants: a parsed list holds at most [`TEXT_KEYS_MAX`] pairs, each key at most
//! [`KEY_BYTES_MAX`] bytes of the RFC's key characters and each value at most
//! [`VALUE_BYTES_MAX`] bytes; a key appears at most once; anything else is a [`TextError`].

use crate::limits::{KEY_BYTES_MAX, TEXT_BYTES_MAX, TEXT_KEYS_MAX, VALUE_BYTES_MAX};

/// Why text data was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TextError {
    TooLong,
    TooManyKeys,
    KeyTooLong,
    ValueTooLong,
    /// A pair without `=`, an empty key, a key with characters outside the RFC's set or a value
    /// that is not UTF-8.
    Malformed,
    /// The same key twice in one exchange.
    Duplicate(String),
}

impl std::fmt::Display for TextError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TextError::TooLong => f.write_str("text data too long"),
            TextError::TooManyKeys => f.write_str("too many keys"),
            TextError::KeyTooLong => f.write_str("key too long"),
            TextError::ValueTooLong => f.write_str("value too long"),
            TextError::Malformed => f.write_str("malformed key=value pair"),
            TextError::Duplicate(k) => write!(f, "key {k} sent twice"),
        }
    }
}

/// Ordered key=value pairs.
pub type Pairs = Vec<(String, String)>;

fn key_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b'+' | b'@' | b'_')
}

/// Parses NUL-terminated pairs (a missing final NUL is tolerated, as some initiators omit it).
pub fn parse(data: &[u8]) -> Result<Pairs, TextError> {
    if data.len() > TEXT_BYTES_MAX {
        return Err(TextError::TooLong);
    }
    let mut pairs = Pairs::new();
    for item in data.split(|&b| b == 0) {
        if item.is_empty() {
            continue;
        }
        if pairs.len() == TEXT_KEYS_MAX {
            return Err(TextError::TooManyKeys);
        }
        let eq = item
            .iter()
            .position(|&b| b == b'=')
            .ok_or(TextError::Malformed)?;
        let (key, value) = (&item[..eq], &item[eq + 1..]);
        if key.len() > KEY_BYTES_MAX {
            return Err(TextError::KeyTooLong);
        }
        if value.len() > VALUE_BYTES_MAX {
            return Err(TextError::ValueTooLong);
        }
        if key.is_empty() || !key.iter().all(|&c| key_char(c)) {
            return Err(TextError::Malformed);
        }
        let key = String::from_utf8(key.to_vec()).map_err(|_| TextError::Malformed)?;
        let value = String::from_utf8(value.to_vec()).map_err(|_| TextError::Malformed)?;
        if pairs.iter().any(|(k, _)| *k == key) {
            return Err(TextError::Duplicate(key));
        }
        pairs.push((key, value));
    }
    Ok(pairs)
}

/// Encodes pairs as `key=value\0` items.
pub fn encode(pairs: &[(String, String)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in pairs {
        out.extend_from_slice(k.as_bytes());
        out.push(b'=');
        out.extend_from_slice(v.as_bytes());
        out.push(0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_encodes() {
        let pairs = parse(b"InitiatorName=iqn.x:y\0SessionType=Normal\0").unwrap();
        assert_eq!(pairs[0], ("InitiatorName".into(), "iqn.x:y".into()));
        assert_eq!(
            encode(&pairs),
            b"InitiatorName=iqn.x:y\0SessionType=Normal\0"
        );
        assert_eq!(parse(b"A=1").unwrap().len(), 1);
        assert_eq!(parse(b"").unwrap().len(), 0);
    }

    #[test]
    fn malformed_text_is_refused() {
        assert_eq!(parse(b"novalue\0"), Err(TextError::Malformed));
        assert_eq!(parse(b"=x\0"), Err(TextError::Malformed));
        assert_eq!(parse(b"a b=x\0"), Err(TextError::Malformed));
        assert_eq!(parse(b"A=\xff\0"), Err(TextError::Malformed));
        assert_eq!(parse(b"A=1\0A=2\0"), Err(TextError::Duplicate("A".into())));
        let long_key = format!("{}=1", "k".repeat(KEY_BYTES_MAX + 1));
        assert_eq!(parse(long_key.as_bytes()), Err(TextError::KeyTooLong));
        let long_value = format!("k={}", "v".repeat(VALUE_BYTES_MAX + 1));
        assert_eq!(parse(long_value.as_bytes()), Err(TextError::ValueTooLong));
    }

    #[test]
    fn key_bombs_are_refused() {
        let bomb: Vec<u8> = (0..TEXT_KEYS_MAX + 1)
            .flat_map(|i| format!("X-k{i}=1\0").into_bytes())
            .collect();
        assert_eq!(parse(&bomb), Err(TextError::TooManyKeys));
        assert_eq!(
            parse(&vec![b'a'; TEXT_BYTES_MAX + 1]),
            Err(TextError::TooLong)
        );
    }
}
