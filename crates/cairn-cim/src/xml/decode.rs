//! Request decoder: CIM-XML body → `Request`.
//!
//! Accepts what real clients send (DSP0201 plus the quirks of wbemcli and pywbem): whitespace
//! between elements, `<NAMESPACE/>` and `<NAMESPACE></NAMESPACE>`, PARAMVALUE without PARAMTYPE,
//! KEYVALUE without TYPE, an empty PARAMVALUE as NULL, references as INSTANCEPATH, LOCALINSTANCEPATH,
//! INSTANCENAME or class paths. Invariants: never panics on any input; bounded by `limits`.

use crate::error::{DecodeError, DecodeErrorKind};
use crate::instance::{Instance, Property};
use crate::limits::{EMBEDDED_INSTANCE_DEPTH_MAX, REQUEST_BODY_BYTES_MAX};
use crate::path::{InstancePath, KeyBinding, KeyValue};
use crate::request::{
    Call, ExtrinsicCall, IntrinsicCall, MethodTarget, ParamValue, RawValue, Request,
};
use crate::types::{CimType, Value};
use crate::xml::dom::{self, Node};

/// Decodes one request body.
pub fn decode_request(body: &[u8]) -> Result<Request, DecodeError> {
    if body.len() > REQUEST_BODY_BYTES_MAX {
        return Err(DecodeError::not_valid("Request body too large"));
    }
    let root = dom::parse(body)?;
    if root.name != "CIM" {
        return Err(DecodeError::not_valid("Root element is not CIM"));
    }
    check_version(
        &root,
        "CIMVERSION",
        "2.",
        DecodeErrorKind::UnsupportedCimVersion,
    )?;
    check_version(
        &root,
        "DTDVERSION",
        "2.",
        DecodeErrorKind::UnsupportedDtdVersion,
    )?;
    let message = root.only_child()?;
    if message.name != "MESSAGE" {
        return Err(DecodeError::not_valid("CIM must hold MESSAGE"));
    }
    let message_id = message.req_attr("ID")?.to_owned();
    check_version(
        message,
        "PROTOCOLVERSION",
        "1.",
        DecodeErrorKind::UnsupportedProtocolVersion,
    )?;
    let req = message.only_child()?;
    match req.name.as_str() {
        "SIMPLEREQ" => {}
        "MULTIREQ" => {
            return Err(DecodeError {
                kind: DecodeErrorKind::MultipleRequests,
                detail: "MULTIREQ".into(),
            })
        }
        _ => return Err(DecodeError::not_valid("MESSAGE must hold SIMPLEREQ")),
    }
    // SIMPLEREQ may carry CORRELATOR elements before the call; they are ignored.
    let calls: Vec<&Node> = req
        .children
        .iter()
        .filter(|c| c.name != "CORRELATOR")
        .collect();
    let [call] = calls.as_slice() else {
        return Err(DecodeError::not_valid("SIMPLEREQ must hold one call"));
    };
    let call = match call.name.as_str() {
        "IMETHODCALL" => Call::Intrinsic(decode_imethodcall(call)?),
        "METHODCALL" => Call::Extrinsic(decode_methodcall(call)?),
        other => {
            return Err(DecodeError::not_valid(format!(
                "Unexpected {other} in SIMPLEREQ"
            )))
        }
    };
    Ok(Request { message_id, call })
}

fn check_version(
    n: &Node,
    attr: &str,
    prefix: &str,
    kind: DecodeErrorKind,
) -> Result<(), DecodeError> {
    let v = n.req_attr(attr)?;
    if v.starts_with(prefix) || v == prefix.trim_end_matches('.') {
        Ok(())
    } else {
        Err(DecodeError {
            kind,
            detail: format!("{attr} {v} is not supported"),
        })
    }
}

fn decode_imethodcall(n: &Node) -> Result<IntrinsicCall, DecodeError> {
    let method = cim_name(n.req_attr("NAME")?)?;
    let mut namespace = None;
    let mut params = Vec::new();
    for c in &n.children {
        match c.name.as_str() {
            "LOCALNAMESPACEPATH" => namespace = Some(local_namespace(c)?),
            "IPARAMVALUE" => params.push(param_value(c)?),
            "RESPONSEDESTINATION" | "CORRELATOR" => {}
            other => {
                return Err(DecodeError::not_valid(format!(
                    "Unexpected {other} in IMETHODCALL"
                )))
            }
        }
    }
    let namespace = namespace
        .ok_or_else(|| DecodeError::not_valid("IMETHODCALL without LOCALNAMESPACEPATH"))?;
    Ok(IntrinsicCall {
        method,
        namespace,
        params,
    })
}

fn decode_methodcall(n: &Node) -> Result<ExtrinsicCall, DecodeError> {
    let method = cim_name(n.req_attr("NAME")?)?;
    let mut target = None;
    let mut params = Vec::new();
    for c in &n.children {
        match c.name.as_str() {
            "LOCALINSTANCEPATH" => target = Some(local_instance_path(c)?),
            "LOCALCLASSPATH" => {
                let (ns, class) = local_class_path(c)?;
                target = Some(InstancePath::new(class).in_namespace(ns));
            }
            "PARAMVALUE" => params.push(param_value(c)?),
            "RESPONSEDESTINATION" | "CORRELATOR" => {}
            other => {
                return Err(DecodeError::not_valid(format!(
                    "Unexpected {other} in METHODCALL"
                )))
            }
        }
    }
    let path = target.ok_or_else(|| DecodeError::not_valid("METHODCALL without a target path"))?;
    let namespace = path.namespace.clone().unwrap_or_default();
    let target = if path.keys.is_empty() && n.child("LOCALCLASSPATH").is_some() {
        MethodTarget::Class(path.class_name)
    } else {
        MethodTarget::Instance(path)
    };
    Ok(ExtrinsicCall {
        method,
        namespace,
        target,
        params,
    })
}

/// Element and attribute names for CIM are non-empty and contain no whitespace or markup.
pub(crate) fn cim_name(s: &str) -> Result<String, DecodeError> {
    let s = s.trim();
    if s.is_empty()
        || s.chars()
            .any(|c| c.is_whitespace() || c.is_control() || "<>&\"'".contains(c))
    {
        return Err(DecodeError::not_valid(format!("Invalid CIM name {s:?}")));
    }
    Ok(s.to_owned())
}

pub(crate) fn local_namespace(n: &Node) -> Result<String, DecodeError> {
    let mut parts = Vec::new();
    for c in &n.children {
        if c.name != "NAMESPACE" {
            return Err(DecodeError::not_valid(format!(
                "Unexpected {} in LOCALNAMESPACEPATH",
                c.name
            )));
        }
        let part = c.req_attr("NAME")?.trim_matches('/');
        if !part.is_empty() {
            parts.push(part.to_owned());
        }
    }
    if parts.is_empty() {
        return Err(DecodeError::not_valid("Empty LOCALNAMESPACEPATH"));
    }
    Ok(parts.join("/"))
}

/// NAMESPACEPATH: (host, namespace).
fn namespace_path(n: &Node) -> Result<(Option<String>, String), DecodeError> {
    let host = n
        .child("HOST")
        .map(|h| h.text.trim().to_owned())
        .filter(|h| !h.is_empty());
    let ns = n
        .child("LOCALNAMESPACEPATH")
        .ok_or_else(|| DecodeError::not_valid("NAMESPACEPATH without LOCALNAMESPACEPATH"))?;
    Ok((host, local_namespace(ns)?))
}

fn local_instance_path(n: &Node) -> Result<InstancePath, DecodeError> {
    let ns = n
        .child("LOCALNAMESPACEPATH")
        .ok_or_else(|| DecodeError::not_valid("LOCALINSTANCEPATH without namespace"))?;
    let name = n
        .child("INSTANCENAME")
        .ok_or_else(|| DecodeError::not_valid("LOCALINSTANCEPATH without INSTANCENAME"))?;
    let mut p = instance_name(name)?;
    p.namespace = Some(local_namespace(ns)?);
    Ok(p)
}

pub(crate) fn instance_path(n: &Node) -> Result<InstancePath, DecodeError> {
    let nsp = n
        .child("NAMESPACEPATH")
        .ok_or_else(|| DecodeError::not_valid("INSTANCEPATH without NAMESPACEPATH"))?;
    let name = n
        .child("INSTANCENAME")
        .ok_or_else(|| DecodeError::not_valid("INSTANCEPATH without INSTANCENAME"))?;
    let (host, ns) = namespace_path(nsp)?;
    let mut p = instance_name(name)?;
    p.host = host;
    p.namespace = Some(ns);
    Ok(p)
}

fn local_class_path(n: &Node) -> Result<(String, String), DecodeError> {
    let ns = n
        .child("LOCALNAMESPACEPATH")
        .ok_or_else(|| DecodeError::not_valid("LOCALCLASSPATH without namespace"))?;
    let cn = n
        .child("CLASSNAME")
        .ok_or_else(|| DecodeError::not_valid("LOCALCLASSPATH without CLASSNAME"))?;
    Ok((local_namespace(ns)?, cim_name(cn.req_attr("NAME")?)?))
}

/// INSTANCENAME: class name plus KEYBINDING* | KEYVALUE | VALUE.REFERENCE.
pub(crate) fn instance_name(n: &Node) -> Result<InstancePath, DecodeError> {
    let mut p = InstancePath::new(cim_name(n.req_attr("CLASSNAME")?)?);
    for c in &n.children {
        let (name, value) = match c.name.as_str() {
            "KEYBINDING" => (
                cim_name(c.req_attr("NAME")?)?,
                key_binding_value(c.only_child()?)?,
            ),
            // A single unnamed key: DSP0201 allows it; the name is unknown here.
            "KEYVALUE" | "VALUE.REFERENCE" => (String::new(), key_binding_value(c)?),
            other => {
                return Err(DecodeError::not_valid(format!(
                    "Unexpected {other} in INSTANCENAME"
                )))
            }
        };
        p.keys.push(KeyBinding { name, value });
    }
    Ok(p)
}

fn key_binding_value(n: &Node) -> Result<KeyValue, DecodeError> {
    match n.name.as_str() {
        "KEYVALUE" => {
            let ty = match n.attr("TYPE") {
                Some(t) => Some(
                    CimType::from_xml_name(t)
                        .ok_or_else(|| DecodeError::not_valid(format!("Unknown TYPE {t}")))?,
                ),
                None => None,
            };
            Ok(match (n.attr("VALUETYPE").unwrap_or("string"), ty) {
                (_, Some(t))
                    if t.is_integer() || matches!(t, CimType::Real32 | CimType::Real64) =>
                {
                    KeyValue::Numeric(n.text.trim().to_owned(), Some(t))
                }
                (_, Some(CimType::Boolean)) | ("boolean", None) => {
                    match Value::parse(CimType::Boolean, &n.text) {
                        Some(Value::Boolean(b)) => KeyValue::Boolean(b),
                        _ => return Err(DecodeError::not_valid("Invalid boolean KEYVALUE")),
                    }
                }
                ("numeric", None) => KeyValue::Numeric(n.text.trim().to_owned(), None),
                _ => KeyValue::String(n.text.clone()),
            })
        }
        "VALUE.REFERENCE" => Ok(KeyValue::Reference(Box::new(value_reference(n)?))),
        other => Err(DecodeError::not_valid(format!(
            "Unexpected {other} in KEYBINDING"
        ))),
    }
}

/// VALUE.REFERENCE: one of the path forms.
pub(crate) fn value_reference(n: &Node) -> Result<InstancePath, DecodeError> {
    let c = n.only_child()?;
    match c.name.as_str() {
        "INSTANCEPATH" => instance_path(c),
        "LOCALINSTANCEPATH" => local_instance_path(c),
        "INSTANCENAME" => instance_name(c),
        "CLASSNAME" => Ok(InstancePath::new(cim_name(c.req_attr("NAME")?)?)),
        "LOCALCLASSPATH" => {
            let (ns, class) = local_class_path(c)?;
            Ok(InstancePath::new(class).in_namespace(ns))
        }
        "CLASSPATH" => {
            let nsp = c
                .child("NAMESPACEPATH")
                .ok_or_else(|| DecodeError::not_valid("CLASSPATH without NAMESPACEPATH"))?;
            let cn = c
                .child("CLASSNAME")
                .ok_or_else(|| DecodeError::not_valid("CLASSPATH without CLASSNAME"))?;
            let (host, ns) = namespace_path(nsp)?;
            let mut p = InstancePath::new(cim_name(cn.req_attr("NAME")?)?).in_namespace(ns);
            p.host = host;
            Ok(p)
        }
        other => Err(DecodeError::not_valid(format!(
            "Unexpected {other} in VALUE.REFERENCE"
        ))),
    }
}

fn param_value(n: &Node) -> Result<ParamValue, DecodeError> {
    let name = cim_name(n.req_attr("NAME")?)?;
    let param_type = match n.attr("PARAMTYPE").or_else(|| n.attr("TYPE")) {
        Some(t) => Some(
            CimType::from_xml_name(t)
                .ok_or_else(|| DecodeError::not_valid(format!("Unknown PARAMTYPE {t}")))?,
        ),
        None => None,
    };
    let embedded_instance = n
        .attr("EmbeddedObject")
        .or_else(|| n.attr("EMBEDDEDOBJECT"))
        .is_some_and(|v| v.eq_ignore_ascii_case("instance"))
        || n.attr("EmbeddedClassName").is_some();
    let value = match n.children.as_slice() {
        [] => RawValue::Null,
        [c] => raw_value(c)?,
        _ => {
            return Err(DecodeError::not_valid(format!(
                "Parameter {name} holds more than one value"
            )))
        }
    };
    Ok(ParamValue {
        name,
        param_type,
        embedded_instance,
        value,
    })
}

fn raw_value(c: &Node) -> Result<RawValue, DecodeError> {
    Ok(match c.name.as_str() {
        "VALUE" => RawValue::Scalar(c.text.clone()),
        "VALUE.NULL" => RawValue::Null,
        "VALUE.ARRAY" => RawValue::Array(
            c.children
                .iter()
                .map(|v| match v.name.as_str() {
                    "VALUE" => Ok(Some(v.text.clone())),
                    "VALUE.NULL" => Ok(None),
                    other => Err(DecodeError::not_valid(format!(
                        "Unexpected {other} in VALUE.ARRAY"
                    ))),
                })
                .collect::<Result<_, _>>()?,
        ),
        "VALUE.REFERENCE" => RawValue::Reference(value_reference(c)?),
        "VALUE.REFARRAY" => RawValue::RefArray(
            c.children
                .iter()
                .map(|v| match v.name.as_str() {
                    "VALUE.REFERENCE" => value_reference(v).map(Some),
                    "VALUE.NULL" => Ok(None),
                    other => Err(DecodeError::not_valid(format!(
                        "Unexpected {other} in VALUE.REFARRAY"
                    ))),
                })
                .collect::<Result<_, _>>()?,
        ),
        "CLASSNAME" => RawValue::ClassName(cim_name(c.req_attr("NAME")?)?),
        "INSTANCENAME" => RawValue::InstanceName(instance_name(c)?),
        "INSTANCE" => RawValue::Instance(instance(c, 0)?),
        "VALUE.NAMEDINSTANCE" => {
            let name = c.child("INSTANCENAME").ok_or_else(|| {
                DecodeError::not_valid("VALUE.NAMEDINSTANCE without INSTANCENAME")
            })?;
            let inst = c
                .child("INSTANCE")
                .ok_or_else(|| DecodeError::not_valid("VALUE.NAMEDINSTANCE without INSTANCE"))?;
            RawValue::NamedInstance(instance_name(name)?, instance(inst, 0)?)
        }
        other => {
            return Err(DecodeError::not_valid(format!(
                "Unexpected {other} in parameter"
            )))
        }
    })
}

/// INSTANCE with PROPERTY / PROPERTY.ARRAY / PROPERTY.REFERENCE (qualifiers are skipped).
/// `embed_depth` counts how deep this instance is embedded in string values.
pub(crate) fn instance(n: &Node, embed_depth: usize) -> Result<Instance, DecodeError> {
    let mut inst = Instance::new(cim_name(n.req_attr("CLASSNAME")?)?);
    for c in &n.children {
        let prop = match c.name.as_str() {
            "QUALIFIER" => continue,
            "PROPERTY" => scalar_property(c, embed_depth)?,
            "PROPERTY.ARRAY" => array_property(c)?,
            "PROPERTY.REFERENCE" => {
                let mut p =
                    Property::null(cim_name(c.req_attr("NAME")?)?, CimType::Reference, false);
                p.reference_class = c.attr("REFERENCECLASS").map(str::to_owned);
                if let Some(v) = c.child("VALUE.REFERENCE") {
                    p.value = Some(Value::Reference(value_reference(v)?));
                }
                p
            }
            other => {
                return Err(DecodeError::not_valid(format!(
                    "Unexpected {other} in INSTANCE"
                )))
            }
        };
        if inst.property(&prop.name).is_some() {
            return Err(DecodeError::not_valid(format!(
                "Property {} given twice",
                prop.name
            )));
        }
        inst.properties.push(prop);
    }
    Ok(inst)
}

fn property_type(c: &Node) -> Result<CimType, DecodeError> {
    let t = c.attr("TYPE").unwrap_or("string");
    CimType::from_xml_name(t).ok_or_else(|| DecodeError::not_valid(format!("Unknown TYPE {t}")))
}

fn scalar_property(c: &Node, embed_depth: usize) -> Result<Property, DecodeError> {
    let name = cim_name(c.req_attr("NAME")?)?;
    let ty = property_type(c)?;
    let embedded = c
        .attr("EmbeddedObject")
        .or_else(|| c.attr("EMBEDDEDOBJECT"))
        .is_some_and(|v| v.eq_ignore_ascii_case("instance"));
    let mut p = Property::null(name, if embedded { CimType::Instance } else { ty }, false);
    if let Some(v) = c.child("VALUE") {
        p.value = Some(if embedded {
            Value::Instance(Box::new(embedded_instance(&v.text, embed_depth + 1)?))
        } else {
            Value::parse(ty, &v.text)
                .ok_or_else(|| DecodeError::not_valid(format!("Bad {ty} value for {}", p.name)))?
        });
    }
    Ok(p)
}

fn array_property(c: &Node) -> Result<Property, DecodeError> {
    let name = cim_name(c.req_attr("NAME")?)?;
    let ty = property_type(c)?;
    let mut p = Property::null(name, ty, true);
    if let Some(arr) = c.child("VALUE.ARRAY") {
        let mut items = Vec::with_capacity(arr.children.len());
        for v in &arr.children {
            if v.name != "VALUE" {
                return Err(DecodeError::not_valid(format!(
                    "NULL element in array property {}",
                    p.name
                )));
            }
            items.push(
                Value::parse(ty, &v.text).ok_or_else(|| {
                    DecodeError::not_valid(format!("Bad {ty} value for {}", p.name))
                })?,
            );
        }
        p.value = Some(Value::Array(ty, items));
    }
    Ok(p)
}

/// Decodes the text of an embedded instance (an INSTANCE element escaped into a string).
pub(crate) fn embedded_instance(text: &str, embed_depth: usize) -> Result<Instance, DecodeError> {
    if embed_depth > EMBEDDED_INSTANCE_DEPTH_MAX {
        return Err(DecodeError::not_valid("Embedded instances nested too deep"));
    }
    let n = dom::parse(text.as_bytes())?;
    if n.name != "INSTANCE" {
        return Err(DecodeError::not_valid("Embedded object is not an INSTANCE"));
    }
    instance(&n, embed_depth)
}

/// Decodes one INSTANCE element given as text (e.g. an embedded instance).
pub fn decode_instance(text: &str) -> Result<Instance, DecodeError> {
    embedded_instance(text, 0)
}

/// Decodes one path element given as text: INSTANCEPATH, LOCALINSTANCEPATH or INSTANCENAME.
pub fn decode_instance_path(text: &str) -> Result<InstancePath, DecodeError> {
    let n = dom::parse(text.as_bytes())?;
    match n.name.as_str() {
        "INSTANCEPATH" => instance_path(&n),
        "LOCALINSTANCEPATH" => local_instance_path(&n),
        "INSTANCENAME" => instance_name(&n),
        other => Err(DecodeError::not_valid(format!(
            "{other} is not an instance path"
        ))),
    }
}
