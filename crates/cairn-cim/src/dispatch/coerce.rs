//! Typing extrinsic-method input parameters against their declaration in the class repository
//! (clients such as wbemcli send no PARAMTYPE, so the declaration is the only source of truth).
//!
//! Invariant: a value that does not fit the declared type is CIM_ERR_INVALID_PARAMETER.

use crate::class::Parameter;
use crate::error::CimError;
use crate::limits::EMBEDDED_INSTANCE_DEPTH_MAX;
use crate::request::{ParamValue, RawValue};
use crate::types::{CimType, Value};
use crate::xml::decode::embedded_instance;

/// Types one input parameter. `None` is NULL.
pub(crate) fn coerce_param(pv: &ParamValue, decl: &Parameter) -> Result<Option<Value>, CimError> {
    let embedded = pv.embedded_instance
        || (decl.ty == CimType::String
            && decl.qualifiers.iter().any(|q| {
                q.name.eq_ignore_ascii_case("EmbeddedInstance")
                    || q.name.eq_ignore_ascii_case("EmbeddedObject")
            }));
    let ty = if embedded { CimType::Instance } else { decl.ty };
    let bad = |why: &str| CimError::invalid_parameter(format!("Parameter {}: {why}", decl.name));
    let scalar = |text: &str| -> Result<Value, CimError> {
        match ty {
            CimType::Instance => embedded_instance(text, 1)
                .map(|i| Value::Instance(Box::new(i)))
                .map_err(|e| bad(&format!("bad embedded instance ({e})"))),
            CimType::Reference => Err(bad("expected a reference")),
            t => Value::parse(t, text).ok_or_else(|| bad(&format!("not a valid {t}"))),
        }
    };
    const _: () = assert!(EMBEDDED_INSTANCE_DEPTH_MAX >= 1);
    let value = match (&pv.value, decl.is_array) {
        (RawValue::Null, _) => return Ok(None),
        (RawValue::Scalar(s), false) => scalar(s)?,
        // A one-element array may arrive as a plain VALUE.
        (RawValue::Scalar(s), true) => Value::Array(ty, vec![scalar(s)?]),
        (RawValue::Array(items), true) => Value::Array(
            ty,
            items
                .iter()
                .map(|i| {
                    i.as_deref()
                        .ok_or_else(|| bad("NULL array element"))
                        .and_then(scalar)
                })
                .collect::<Result<_, _>>()?,
        ),
        (RawValue::Reference(p) | RawValue::InstanceName(p), false) if ty == CimType::Reference => {
            Value::Reference(p.clone())
        }
        (RawValue::Reference(p) | RawValue::InstanceName(p), true) if ty == CimType::Reference => {
            Value::Array(CimType::Reference, vec![Value::Reference(p.clone())])
        }
        (RawValue::RefArray(items), true) if ty == CimType::Reference => Value::Array(
            CimType::Reference,
            items
                .iter()
                .map(|i| {
                    i.clone()
                        .map(Value::Reference)
                        .ok_or_else(|| bad("NULL array element"))
                })
                .collect::<Result<_, _>>()?,
        ),
        (RawValue::Instance(i), false) if ty == CimType::Instance => {
            Value::Instance(Box::new(i.clone()))
        }
        _ => return Err(bad("value does not match the declared type")),
    };
    Ok(Some(value))
}
