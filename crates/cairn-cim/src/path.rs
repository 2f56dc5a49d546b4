//! Instance paths (CIM object names): host, namespace, class name and key bindings, with the
//! comparison rules CIM clients rely on.
//!
//! Invariants: names (classes, keys) compare case-insensitively; key values compare by value
//! (numeric keys with or without TYPE are equal when their numbers are, so `"007"` = `"7"`); a path
//! with no key bindings names a class (or a keyless singleton).

use std::fmt;

use crate::types::{CimType, Value};

/// The value of one key binding (`KEYVALUE` or `VALUE.REFERENCE`).
#[derive(Debug, Clone)]
pub enum KeyValue {
    String(String),
    Boolean(bool),
    /// A numeric key: its text, and the TYPE if the client sent one.
    Numeric(String, Option<CimType>),
    Reference(Box<InstancePath>),
}

impl KeyValue {
    /// Converts a typed value into a key value (arrays and embedded instances are not keys).
    pub fn from_value(v: &Value) -> Option<KeyValue> {
        let (ty, is_array) = v.cim_type();
        if is_array {
            return None;
        }
        Some(match v {
            Value::String(s) => KeyValue::String(s.clone()),
            Value::Char16(c) => KeyValue::String(c.to_string()),
            Value::DateTime(d) => KeyValue::String(d.as_str().to_owned()),
            Value::Boolean(b) => KeyValue::Boolean(*b),
            Value::Reference(p) => KeyValue::Reference(Box::new(p.clone())),
            Value::Instance(_) | Value::Array(..) => return None,
            other => KeyValue::Numeric(other.to_cim_text()?, Some(ty)),
        })
    }

    /// The `VALUETYPE` attribute of a `KEYVALUE` (`None` for references).
    pub fn value_type(&self) -> Option<&'static str> {
        match self {
            KeyValue::String(_) => Some("string"),
            KeyValue::Boolean(_) => Some("boolean"),
            KeyValue::Numeric(..) => Some("numeric"),
            KeyValue::Reference(_) => None,
        }
    }

    fn numeric(text: &str) -> Option<NumKey> {
        let t = text.trim();
        if let Ok(i) = t.parse::<i128>() {
            return Some(NumKey::Int(i));
        }
        t.parse::<f64>().ok().map(NumKey::Real)
    }
}

#[derive(PartialEq)]
enum NumKey {
    Int(i128),
    Real(f64),
}

impl PartialEq for KeyValue {
    fn eq(&self, other: &KeyValue) -> bool {
        match (self, other) {
            (KeyValue::String(a), KeyValue::String(b)) => a == b,
            (KeyValue::Boolean(a), KeyValue::Boolean(b)) => a == b,
            (KeyValue::Numeric(a, _), KeyValue::Numeric(b, _)) => {
                a.trim() == b.trim()
                    || matches!((KeyValue::numeric(a), KeyValue::numeric(b)), (Some(x), Some(y)) if x == y)
            }
            (KeyValue::Reference(a), KeyValue::Reference(b)) => a.same_object(b),
            // A client that sends a key without TYPE may still say VALUETYPE="string" for a number
            // or boolean; compare by text then.
            (KeyValue::String(s), KeyValue::Numeric(n, _))
            | (KeyValue::Numeric(n, _), KeyValue::String(s)) => {
                s.trim() == n.trim()
                    || matches!((KeyValue::numeric(s), KeyValue::numeric(n)), (Some(x), Some(y)) if x == y)
            }
            (KeyValue::String(s), KeyValue::Boolean(b))
            | (KeyValue::Boolean(b), KeyValue::String(s)) => {
                s.trim()
                    .eq_ignore_ascii_case(if *b { "true" } else { "false" })
            }
            _ => false,
        }
    }
}

/// One key binding: key property name and value.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyBinding {
    pub name: String,
    pub value: KeyValue,
}

/// A CIM instance path (or a class path when `keys` is empty).
#[derive(Debug, Clone, PartialEq)]
pub struct InstancePath {
    /// Host from an `INSTANCEPATH`; `None` for local paths.
    pub host: Option<String>,
    /// Namespace (`root/cairn`); `None` when the path is relative to the request's namespace.
    pub namespace: Option<String>,
    pub class_name: String,
    pub keys: Vec<KeyBinding>,
}

impl InstancePath {
    /// A path with no host and no namespace.
    pub fn new(class_name: impl Into<String>) -> InstancePath {
        InstancePath {
            host: None,
            namespace: None,
            class_name: class_name.into(),
            keys: Vec::new(),
        }
    }

    /// Builder: sets the namespace.
    pub fn in_namespace(mut self, namespace: impl Into<String>) -> InstancePath {
        self.namespace = Some(namespace.into());
        self
    }

    /// Builder: adds a string key.
    pub fn with_key(mut self, name: impl Into<String>, value: impl Into<String>) -> InstancePath {
        self.keys.push(KeyBinding {
            name: name.into(),
            value: KeyValue::String(value.into()),
        });
        self
    }

    /// Builder: adds a key of any type.
    pub fn with_key_value(mut self, name: impl Into<String>, value: KeyValue) -> InstancePath {
        self.keys.push(KeyBinding {
            name: name.into(),
            value,
        });
        self
    }

    /// The value of key `name` (case-insensitive).
    pub fn key(&self, name: &str) -> Option<&KeyValue> {
        self.keys
            .iter()
            .find(|k| k.name.eq_ignore_ascii_case(name))
            .map(|k| &k.value)
    }

    /// True when both name the same object: the same key bindings (in any order, names
    /// case-insensitive, values by value). Host, namespace and class name are not compared here (the
    /// class may be named by a superclass); callers check class relationship and namespace.
    pub fn same_keys(&self, other: &InstancePath) -> bool {
        self.keys.len() == other.keys.len()
            && self
                .keys
                .iter()
                .all(|k| other.key(&k.name).is_some_and(|v| *v == k.value))
    }

    /// Same keys, same class name (case-insensitive), and same namespace when both have one.
    pub fn same_object(&self, other: &InstancePath) -> bool {
        let ns_ok = match (&self.namespace, &other.namespace) {
            (Some(a), Some(b)) => namespace_eq(a, b),
            _ => true,
        };
        ns_ok && self.class_name.eq_ignore_ascii_case(&other.class_name) && self.same_keys(other)
    }
}

impl fmt::Display for InstancePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(ns) = &self.namespace {
            write!(f, "{ns}:")?;
        }
        f.write_str(&self.class_name)?;
        for (i, k) in self.keys.iter().enumerate() {
            f.write_str(if i == 0 { "." } else { "," })?;
            match &k.value {
                KeyValue::String(s) => write!(
                    f,
                    "{}=\"{}\"",
                    k.name,
                    s.replace('\\', "\\\\").replace('"', "\\\"")
                )?,
                KeyValue::Boolean(b) => {
                    write!(f, "{}={}", k.name, if *b { "TRUE" } else { "FALSE" })?
                }
                KeyValue::Numeric(n, _) => write!(f, "{}={n}", k.name)?,
                KeyValue::Reference(p) => write!(
                    f,
                    "{}=\"{}\"",
                    k.name,
                    p.to_string().replace('\\', "\\\\").replace('"', "\\\"")
                )?,
            }
        }
        Ok(())
    }
}

/// Canonical form of a namespace name: no leading/trailing `/`.
pub fn normalize_namespace(ns: &str) -> &str {
    ns.trim_matches('/')
}

/// Namespace names compare case-insensitively, ignoring leading/trailing `/`.
pub fn namespace_eq(a: &str, b: &str) -> bool {
    normalize_namespace(a).eq_ignore_ascii_case(normalize_namespace(b))
}

/// The `CIMObject` header after percent-decoding: a namespace, optionally followed by `:` and an
/// object (class name, possibly with key bindings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CimObjectHeader {
    pub namespace: String,
    /// Class name of the target object, for extrinsic calls.
    pub class_name: Option<String>,
}

impl CimObjectHeader {
    /// Parses a raw header value (percent-encoded or not). `None` if it is not valid UTF-8 after
    /// decoding or has no namespace.
    pub fn parse(raw: &str) -> Option<CimObjectHeader> {
        let decoded = percent_decode(raw.trim())?;
        let (ns, obj) = match decoded.split_once(':') {
            Some((ns, obj)) => (ns, Some(obj)),
            None => (decoded.as_str(), None),
        };
        let ns = normalize_namespace(ns);
        if ns.is_empty() {
            return None;
        }
        let class_name = obj.map(|o| o.split('.').next().unwrap_or(o).trim().to_owned());
        Some(CimObjectHeader {
            namespace: ns.to_owned(),
            class_name,
        })
    }
}

/// Decodes `%XX` escapes (and leaves other bytes alone). `None` on a bad escape or invalid UTF-8.
pub fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_keys_match_with_or_without_type() {
        let a = InstancePath::new("X")
            .with_key_value("N", KeyValue::Numeric("7".into(), Some(CimType::Uint16)));
        let b = InstancePath::new("x").with_key_value("n", KeyValue::Numeric("007".into(), None));
        let c = InstancePath::new("X").with_key_value("N", KeyValue::String("7".into()));
        assert!(a.same_object(&b));
        assert!(a.same_object(&c));
        let d = InstancePath::new("X").with_key_value("N", KeyValue::Numeric("8".into(), None));
        assert!(!a.same_object(&d));
    }

    #[test]
    fn keys_compare_in_any_order_and_values_exactly() {
        let a = InstancePath::new("C").with_key("A", "1").with_key("B", "2");
        let b = InstancePath::new("C").with_key("b", "2").with_key("a", "1");
        assert!(a.same_object(&b));
        let c = InstancePath::new("C").with_key("A", "1").with_key("B", "x");
        assert!(!a.same_object(&c));
        let d = InstancePath::new("C").with_key("A", "1");
        assert!(!a.same_object(&d));
        let e = a.clone().in_namespace("root/cairn");
        let f = a.clone().in_namespace("interop");
        assert!(!e.same_object(&f));
    }

    #[test]
    fn cim_object_header_forms() {
        let h = CimObjectHeader::parse("root%2Fcairn%3ACAIRN_Service").expect("valid");
        assert_eq!(
            h,
            CimObjectHeader {
                namespace: "root/cairn".into(),
                class_name: Some("CAIRN_Service".into())
            }
        );
        let h = CimObjectHeader::parse("root/cairn:CIM_StoragePool.InstanceID=\"CAIRN:POOL-A\"")
            .expect("valid");
        assert_eq!(h.class_name.as_deref(), Some("CIM_StoragePool"));
        assert_eq!(
            CimObjectHeader::parse("interop").expect("valid").class_name,
            None
        );
        assert_eq!(CimObjectHeader::parse("%zz"), None);
        assert_eq!(CimObjectHeader::parse(""), None);
    }

    #[test]
    fn display_is_wbem_uri_like() {
        let p = InstancePath::new("CIM_StoragePool")
            .in_namespace("root/cairn")
            .with_key("InstanceID", "a\"b");
        assert_eq!(
            p.to_string(),
            "root/cairn:CIM_StoragePool.InstanceID=\"a\\\"b\""
        );
    }
}
