//! The request line and header rules of DSP0200 that the HTTP layer owns: which method and path
//! reach the CIM server, the `M-POST` extension declaration (`Man:` with `ns=NN`) and its `NN-`
//! header prefix, and the extraction of the four CIM headers passed on raw to `cairn-cim`.
//!
//! Invariants: for `M-POST` only the prefixed CIM headers count (as DSP0200 requires); for `POST`
//! only the plain ones. Header values are handed on without interpretation (non-UTF-8 bytes are
//! replaced, which `cairn-cim` then reports as a header mismatch).

use hyper::header::HeaderMap;
use hyper::Method;

/// The extension URI DSP0200 defines for CIM operations over HTTP.
pub const CIM_MAPPING_URI: &str = "http://www.dmtf.org/cim/mapping/http/v1.0";

/// How the CIM headers of a request are named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderScheme {
    /// `POST`: `CIMOperation`, `CIMMethod`, ...
    Plain,
    /// `M-POST` with `Man: <mapping>; ns=NN`: `NN-CIMOperation`, ... (the prefix without the dash).
    Prefixed(String),
}

/// Why a request line does not reach the CIM server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A method other than `POST` and `M-POST`: 501.
    MethodNotImplemented,
    /// `M-POST` without a `Man` header declaring the CIM mapping: 510 (RFC 2774 §7).
    NotExtended,
    /// A path other than `/cimom` and `/`: 404.
    NotFound,
}

/// Decides whether a request with this method, path and headers is a CIM operation request.
pub fn classify(method: &Method, path: &str, headers: &HeaderMap) -> Result<HeaderScheme, Refusal> {
    let scheme = if method == Method::POST {
        HeaderScheme::Plain
    } else if method.as_str() == "M-POST" {
        HeaderScheme::Prefixed(mandatory_prefix(headers).ok_or(Refusal::NotExtended)?)
    } else {
        return Err(Refusal::MethodNotImplemented);
    };
    if path != "/cimom" && path != "/" {
        return Err(Refusal::NotFound);
    }
    Ok(scheme)
}

/// The `ns` prefix of the `Man` declaration of the CIM mapping, if any.
fn mandatory_prefix(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all("man")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(parse_declaration)
}

/// Parses one extension declaration `"uri" ; ns=NN` (the URI may be quoted) naming the CIM mapping.
fn parse_declaration(decl: &str) -> Option<String> {
    let mut parts = decl.split(';');
    let uri = parts.next()?.trim();
    let uri = uri
        .strip_prefix('"')
        .and_then(|u| u.strip_suffix('"'))
        .unwrap_or(uri);
    if uri != CIM_MAPPING_URI {
        return None;
    }
    parts.find_map(|p| {
        let (name, value) = p.split_once('=')?;
        let value = value.trim();
        let digits = (2..=8).contains(&value.len()) && value.bytes().all(|b| b.is_ascii_digit());
        (name.trim().eq_ignore_ascii_case("ns") && digits).then(|| value.to_owned())
    })
}

/// The CIM headers of one request, owned, as the HTTP layer hands them on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CimHeaderValues {
    /// `CIMOperation`.
    pub operation: Option<String>,
    /// `CIMMethod`.
    pub method: Option<String>,
    /// `CIMObject` (still percent-encoded).
    pub object: Option<String>,
    /// `CIMProtocolVersion`.
    pub protocol_version: Option<String>,
}

impl CimHeaderValues {
    /// Extracts the CIM headers named according to `scheme`.
    pub fn extract(headers: &HeaderMap, scheme: &HeaderScheme) -> CimHeaderValues {
        let get = |name: &str| {
            let value = match scheme {
                HeaderScheme::Plain => headers.get(name),
                HeaderScheme::Prefixed(ns) => headers.get(format!("{ns}-{name}")),
            };
            value.map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        };
        CimHeaderValues {
            operation: get("cimoperation"),
            method: get("cimmethod"),
            object: get("cimobject"),
            protocol_version: get("cimprotocolversion"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                hyper::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    fn mpost() -> Method {
        Method::from_bytes(b"M-POST").unwrap()
    }

    #[test]
    fn post_paths() {
        let h = HeaderMap::new();
        assert_eq!(
            classify(&Method::POST, "/cimom", &h),
            Ok(HeaderScheme::Plain)
        );
        assert_eq!(classify(&Method::POST, "/", &h), Ok(HeaderScheme::Plain));
        assert_eq!(
            classify(&Method::POST, "/cimomx", &h),
            Err(Refusal::NotFound)
        );
        assert_eq!(
            classify(&Method::GET, "/cimom", &h),
            Err(Refusal::MethodNotImplemented)
        );
        assert_eq!(
            classify(&Method::PUT, "/x", &h),
            Err(Refusal::MethodNotImplemented)
        );
    }

    #[test]
    fn mpost_declarations() {
        let ok = [
            ("http://www.dmtf.org/cim/mapping/http/v1.0 ; ns=73", "73"),
            ("\"http://www.dmtf.org/cim/mapping/http/v1.0\";ns=01", "01"),
            (
                "http://example.org/other; ns=11, http://www.dmtf.org/cim/mapping/http/v1.0; NS=42",
                "42",
            ),
        ];
        for (man, ns) in ok {
            let h = map(&[("man", man)]);
            let want = Ok(HeaderScheme::Prefixed(ns.into()));
            assert_eq!(classify(&mpost(), "/cimom", &h), want, "{man}");
        }
        let bad = [
            "http://www.dmtf.org/cim/mapping/http/v1.0",
            "http://www.dmtf.org/cim/mapping/http/v1.0; ns=",
            "http://www.dmtf.org/cim/mapping/http/v1.0; ns=7",
            "http://www.dmtf.org/cim/mapping/http/v1.0; ns=ab",
            "http://example.org/other; ns=11",
        ];
        for man in bad {
            let h = map(&[("man", man)]);
            assert_eq!(
                classify(&mpost(), "/cimom", &h),
                Err(Refusal::NotExtended),
                "{man}"
            );
        }
        assert_eq!(
            classify(&mpost(), "/cimom", &HeaderMap::new()),
            Err(Refusal::NotExtended)
        );
    }

    #[test]
    fn extracts_by_scheme() {
        let h = map(&[
            ("CIMOperation", "MethodCall"),
            ("CIMMethod", "GetClass"),
            ("73-CIMOperation", "MethodCall"),
            ("73-CIMMethod", "EnumerateInstances"),
            ("73-CIMObject", "root%2Fcairn"),
            ("73-CIMProtocolVersion", "1.0"),
        ]);
        let plain = CimHeaderValues::extract(&h, &HeaderScheme::Plain);
        assert_eq!(plain.method.as_deref(), Some("GetClass"));
        assert_eq!(plain.object, None);
        let pre = CimHeaderValues::extract(&h, &HeaderScheme::Prefixed("73".into()));
        assert_eq!(pre.operation.as_deref(), Some("MethodCall"));
        assert_eq!(pre.method.as_deref(), Some("EnumerateInstances"));
        assert_eq!(pre.object.as_deref(), Some("root%2Fcairn"));
        assert_eq!(pre.protocol_version.as_deref(), Some("1.0"));
    }
}
