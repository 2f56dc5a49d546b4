//! Response decoder: a CIM-XML response body → [`Response`].
//!
//! Reads SIMPLERSP with IMETHODRESPONSE (instances, instance names, object paths, the pull
//! parameters EndOfSequence and EnumerationContext) or METHODRESPONSE (RETURNVALUE typed by
//! PARAMTYPE, out parameters: scalars, arrays, references, embedded instances), and ERROR with
//! its code and description. Invariants: the server decoder's bounds (`RESPONSE_BODY_BYTES_MAX`,
//! XML depth and counts in `dom`, `EMBEDDED_INSTANCE_DEPTH_MAX`); never panics on any input.

use crate::error::{CimError, CimStatus, DecodeError};
use crate::instance::Instance;
use crate::limits::RESPONSE_BODY_BYTES_MAX;
use crate::path::InstancePath;
use crate::types::{CimType, Value};
use crate::xml::decode::{
    cim_name, embedded_instance, instance, instance_name, instance_path, value_reference,
};
use crate::xml::dom::{self, Node};

/// One decoded response.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    pub message_id: String,
    /// The method name the response carries.
    pub method: String,
    /// The result, or the ERROR the server sent.
    pub reply: Result<Reply, CimError>,
}

/// What an intrinsic or extrinsic call returned.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    Intrinsic(IntrinsicReply),
    Method(MethodReply),
}

/// IRETURNVALUE plus the pull parameters, when present.
#[derive(Debug, Clone, PartialEq)]
pub struct IntrinsicReply {
    pub returned: Returned,
    pub end_of_sequence: Option<bool>,
    pub enumeration_context: Option<String>,
}

/// The objects inside IRETURNVALUE.
#[derive(Debug, Clone, PartialEq)]
pub enum Returned {
    /// No IRETURNVALUE, or an empty one.
    Nothing,
    /// INSTANCE, VALUE.NAMEDINSTANCE, VALUE.OBJECTWITHPATH or VALUE.INSTANCEWITHPATH elements;
    /// `path` is set where the response gave one.
    Instances(Vec<Instance>),
    /// INSTANCENAME, OBJECTPATH or INSTANCEPATH elements.
    Paths(Vec<InstancePath>),
    /// CLASSNAME elements.
    ClassNames(Vec<String>),
}

/// RETURNVALUE and the output parameters of an extrinsic method.
#[derive(Debug, Clone, PartialEq)]
pub struct MethodReply {
    pub return_value: Option<Value>,
    pub out_params: Vec<(String, Option<Value>)>,
}

impl MethodReply {
    /// Output parameter `name` (case-insensitive), unless absent or NULL.
    pub fn out(&self, name: &str) -> Option<&Value> {
        self.out_params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| v.as_ref())
    }
}

/// Decodes one response body.
pub fn decode_response(body: &[u8]) -> Result<Response, DecodeError> {
    if body.len() > RESPONSE_BODY_BYTES_MAX {
        return Err(DecodeError::not_valid("Response body too large"));
    }
    let root = dom::parse(body)?;
    if root.name != "CIM" {
        return Err(DecodeError::not_valid("Root element is not CIM"));
    }
    let message = root.only_child()?;
    if message.name != "MESSAGE" {
        return Err(DecodeError::not_valid("CIM must hold MESSAGE"));
    }
    let message_id = message.req_attr("ID")?.to_owned();
    let rsp = message.only_child()?;
    if rsp.name != "SIMPLERSP" {
        return Err(DecodeError::not_valid("MESSAGE must hold SIMPLERSP"));
    }
    let call = rsp.only_child()?;
    let method = cim_name(call.req_attr("NAME")?)?;
    let reply = match call.name.as_str() {
        "IMETHODRESPONSE" => or_error(call, |n| imethod(n).map(Reply::Intrinsic))?,
        "METHODRESPONSE" => or_error(call, |n| method_reply(n).map(Reply::Method))?,
        other => {
            return Err(DecodeError::not_valid(format!(
                "Unexpected {other} in SIMPLERSP"
            )))
        }
    };
    Ok(Response {
        message_id,
        method,
        reply,
    })
}

/// The ERROR in `n` if there is one, else what `ok` makes of `n`.
fn or_error(
    n: &Node,
    ok: impl FnOnce(&Node) -> Result<Reply, DecodeError>,
) -> Result<Result<Reply, CimError>, DecodeError> {
    match n.child("ERROR") {
        Some(e) => Ok(Err(error(e)?)),
        None => ok(n).map(Ok),
    }
}

fn error(n: &Node) -> Result<CimError, DecodeError> {
    let code = n.req_attr("CODE")?;
    let status = code
        .trim()
        .parse::<u32>()
        .ok()
        .and_then(CimStatus::from_code)
        .ok_or_else(|| DecodeError::not_valid(format!("Unknown ERROR CODE {code}")))?;
    Ok(CimError::new(
        status,
        n.attr("DESCRIPTION").unwrap_or_default(),
    ))
}

fn imethod(n: &Node) -> Result<IntrinsicReply, DecodeError> {
    let mut reply = IntrinsicReply {
        returned: Returned::Nothing,
        end_of_sequence: None,
        enumeration_context: None,
    };
    for c in &n.children {
        match (c.name.as_str(), c.attr("NAME")) {
            ("IRETURNVALUE", _) => reply.returned = returned(c)?,
            ("PARAMVALUE", Some(name)) if name.eq_ignore_ascii_case("EndOfSequence") => {
                let v = c.child("VALUE").map(|v| v.text.as_str()).unwrap_or("");
                match Value::parse(CimType::Boolean, v) {
                    Some(Value::Boolean(b)) => reply.end_of_sequence = Some(b),
                    _ => return Err(DecodeError::not_valid("Invalid EndOfSequence")),
                }
            }
            ("PARAMVALUE", Some(name)) if name.eq_ignore_ascii_case("EnumerationContext") => {
                reply.enumeration_context = c.child("VALUE").map(|v| v.text.clone());
            }
            (other, _) => {
                return Err(DecodeError::not_valid(format!(
                    "Unexpected {other} in IMETHODRESPONSE"
                )))
            }
        }
    }
    Ok(reply)
}

/// The objects of an IRETURNVALUE: all of one kind.
fn returned(n: &Node) -> Result<Returned, DecodeError> {
    let Some(first) = n.children.first() else {
        return Ok(Returned::Nothing);
    };
    let kind = first.name.as_str();
    if let Some(c) = n.children.iter().find(|c| c.name != kind) {
        return Err(DecodeError::not_valid(format!(
            "IRETURNVALUE mixes {kind} and {}",
            c.name
        )));
    }
    let each = |f: fn(&Node) -> Result<InstancePath, DecodeError>| {
        n.children.iter().map(f).collect::<Result<Vec<_>, _>>()
    };
    Ok(match kind {
        "INSTANCE" => Returned::Instances(
            n.children
                .iter()
                .map(|c| instance(c, 0))
                .collect::<Result<_, _>>()?,
        ),
        "VALUE.NAMEDINSTANCE" | "VALUE.OBJECTWITHPATH" | "VALUE.INSTANCEWITHPATH" => {
            Returned::Instances(
                n.children
                    .iter()
                    .map(instance_with_path)
                    .collect::<Result<_, _>>()?,
            )
        }
        "INSTANCENAME" => Returned::Paths(each(instance_name)?),
        "INSTANCEPATH" => Returned::Paths(each(instance_path)?),
        "OBJECTPATH" => Returned::Paths(each(|c| {
            let p = c.only_child()?;
            if p.name != "INSTANCEPATH" {
                return Err(DecodeError::not_valid("OBJECTPATH without INSTANCEPATH"));
            }
            instance_path(p)
        })?),
        "CLASSNAME" => Returned::ClassNames(
            n.children
                .iter()
                .map(|c| cim_name(c.req_attr("NAME")?))
                .collect::<Result<_, _>>()?,
        ),
        other => {
            return Err(DecodeError::not_valid(format!(
                "{other} in IRETURNVALUE is not read by this client"
            )))
        }
    })
}

/// An instance with its path (INSTANCENAME or INSTANCEPATH) from one of the wrapper elements.
fn instance_with_path(n: &Node) -> Result<Instance, DecodeError> {
    let [path, inst] = n.children.as_slice() else {
        return Err(DecodeError::not_valid(format!(
            "{} must hold a path and an INSTANCE",
            n.name
        )));
    };
    if inst.name != "INSTANCE" {
        return Err(DecodeError::not_valid(format!(
            "{} without INSTANCE",
            n.name
        )));
    }
    let path = match path.name.as_str() {
        "INSTANCENAME" => instance_name(path)?,
        "INSTANCEPATH" => instance_path(path)?,
        other => {
            return Err(DecodeError::not_valid(format!(
                "Unexpected {other} in {}",
                n.name
            )))
        }
    };
    Ok(instance(inst, 0)?.with_path(path))
}

fn method_reply(n: &Node) -> Result<MethodReply, DecodeError> {
    let mut reply = MethodReply {
        return_value: None,
        out_params: Vec::new(),
    };
    for c in &n.children {
        match c.name.as_str() {
            "RETURNVALUE" => reply.return_value = typed_value(c)?,
            "PARAMVALUE" => {
                let name = cim_name(c.req_attr("NAME")?)?;
                reply.out_params.push((name, typed_value(c)?));
            }
            other => {
                return Err(DecodeError::not_valid(format!(
                    "Unexpected {other} in METHODRESPONSE"
                )))
            }
        }
    }
    Ok(reply)
}

/// The value of a RETURNVALUE or PARAMVALUE, typed by its PARAMTYPE (string when absent).
fn typed_value(n: &Node) -> Result<Option<Value>, DecodeError> {
    let ty_name = n.attr("PARAMTYPE").or_else(|| n.attr("TYPE"));
    let ty = match ty_name {
        Some(t) => CimType::from_xml_name(t)
            .ok_or_else(|| DecodeError::not_valid(format!("Unknown PARAMTYPE {t}")))?,
        None => CimType::String,
    };
    let embedded = n
        .attr("EmbeddedObject")
        .or_else(|| n.attr("EMBEDDEDOBJECT"))
        .is_some_and(|v| v.eq_ignore_ascii_case("instance"))
        || ty == CimType::Instance;
    let Some(v) = n.children.first() else {
        return Ok(None);
    };
    if n.children.len() > 1 {
        return Err(DecodeError::not_valid(format!(
            "{} holds more than one value",
            n.name
        )));
    }
    let scalar = |text: &str| -> Result<Value, DecodeError> {
        if embedded {
            Ok(Value::Instance(Box::new(embedded_instance(text, 1)?)))
        } else {
            Value::parse(ty, text)
                .ok_or_else(|| DecodeError::not_valid(format!("Bad {ty} value in {}", n.name)))
        }
    };
    Ok(Some(match v.name.as_str() {
        "VALUE" => scalar(&v.text)?,
        "VALUE.NULL" => return Ok(None),
        "VALUE.REFERENCE" => Value::Reference(value_reference(v)?),
        "VALUE.ARRAY" => {
            let items = v
                .children
                .iter()
                .map(|i| match i.name.as_str() {
                    "VALUE" => scalar(&i.text),
                    other => Err(DecodeError::not_valid(format!(
                        "Unexpected {other} in VALUE.ARRAY"
                    ))),
                })
                .collect::<Result<_, _>>()?;
            Value::Array(if embedded { CimType::Instance } else { ty }, items)
        }
        "VALUE.REFARRAY" => Value::Array(
            CimType::Reference,
            v.children
                .iter()
                .map(|i| match i.name.as_str() {
                    "VALUE.REFERENCE" => value_reference(i).map(Value::Reference),
                    other => Err(DecodeError::not_valid(format!(
                        "Unexpected {other} in VALUE.REFARRAY"
                    ))),
                })
                .collect::<Result<_, _>>()?,
        ),
        other => {
            return Err(DecodeError::not_valid(format!(
                "Unexpected {other} in {}",
                n.name
            )))
        }
    }))
}
