//! HTTP Basic authentication (RFC 7617) of every CIM request.
//!
//! Invariants: the check runs on the headers alone, before any body byte is read; a missing,
//! repeated, oversized or malformed `Authorization` header is simply "not authorized" (never an
//! error that could reveal more); the comparison with the configured credentials is constant-time
//! (see [`Credentials::verify`]); nothing here logs header values.

use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;
use hyper::header::{HeaderMap, AUTHORIZATION};

use crate::http::credentials::Credentials;
use crate::limits::HTTP_AUTHORIZATION_BYTES_MAX;

/// Realm announced in `WWW-Authenticate`.
pub const REALM: &str = "cairn";

/// The `WWW-Authenticate` value of a 401 answer.
pub const WWW_AUTHENTICATE_VALUE: &str = "Basic realm=\"cairn\"";

/// Standard alphabet; padding optional, as some clients leave it out.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Whether the request's headers carry exactly one valid Basic `Authorization` for `credentials`.
pub fn is_authorized(headers: &HeaderMap, credentials: &Credentials) -> bool {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return false;
    };
    match parse_basic(value.as_bytes()) {
        Some((user, password)) => credentials.verify(&user, &password),
        None => false,
    }
}

/// Splits `Basic <base64(user:password)>` into user and password; `None` if malformed.
pub fn parse_basic(value: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    if value.len() > HTTP_AUTHORIZATION_BYTES_MAX {
        return None;
    }
    let value = std::str::from_utf8(value).ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = BASE64.decode(token.trim_start()).ok()?;
    let colon = decoded.iter().position(|&b| b == b':')?;
    let password = decoded[colon + 1..].to_vec();
    let mut user = decoded;
    user.truncate(colon);
    Some((user, password))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn headers(values: &[&[u8]]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(AUTHORIZATION, HeaderValue::from_bytes(v).unwrap());
        }
        h
    }

    #[test]
    fn parses_basic() {
        // admin:secret, as pywbem and wbemcli send it.
        let (u, p) = parse_basic(b"Basic YWRtaW46c2VjcmV0").unwrap();
        assert_eq!(
            (u.as_slice(), p.as_slice()),
            (&b"admin"[..], &b"secret"[..])
        );
        let (u, p) = parse_basic(b"basic   YTpiOmM=").unwrap();
        assert_eq!((u.as_slice(), p.as_slice()), (&b"a"[..], &b"b:c"[..]));
        let (u, p) = parse_basic(b"BASIC YTo").unwrap();
        assert_eq!((u.as_slice(), p.as_slice()), (&b"a"[..], &b""[..]));
    }

    #[test]
    fn refuses_malformed() {
        for v in [
            &b""[..],
            b"Basic",
            b"Basic ",
            b"Bearer YWRtaW46c2VjcmV0",
            b"Basic !!!!",
            b"Basic YWRtaW4=",
            b"BasicYWRtaW46c2VjcmV0",
            b"Basic YWRtaW46c2VjcmV0 extra",
            b"Basic \xff\xfe",
        ] {
            assert!(parse_basic(v).is_none(), "{}", String::from_utf8_lossy(v));
        }
        let long = format!("Basic {}", "A".repeat(HTTP_AUTHORIZATION_BYTES_MAX));
        assert!(parse_basic(long.as_bytes()).is_none());
    }

    #[test]
    fn checks_headers() {
        let creds = Credentials::new("admin", "secret").unwrap();
        assert!(is_authorized(
            &headers(&[b"Basic YWRtaW46c2VjcmV0"]),
            &creds
        ));
        assert!(!is_authorized(&headers(&[]), &creds));
        // admin:wrong
        assert!(!is_authorized(
            &headers(&[b"Basic YWRtaW46d3Jvbmc="]),
            &creds
        ));
        let twice: &[&[u8]] = &[b"Basic YWRtaW46c2VjcmV0", b"Basic YWRtaW46c2VjcmV0"];
        assert!(!is_authorized(&headers(twice), &creds));
    }
}
