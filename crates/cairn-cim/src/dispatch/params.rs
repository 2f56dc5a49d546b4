//! Reading intrinsic-operation parameters (IPARAMVALUE) with DSP0200 defaults.
//!
//! Invariant: a parameter of the wrong shape or with unparseable text is CIM_ERR_INVALID_PARAMETER,
//! never a panic; a NULL parameter is treated as absent.

use crate::error::CimError;
use crate::path::InstancePath;
use crate::request::{ParamValue, RawValue};
use crate::types::{CimType, Value};

/// The IPARAMVALUEs of one intrinsic call.
pub(crate) struct Params<'a>(pub &'a [ParamValue]);

impl<'a> Params<'a> {
    /// Parameter `name` (case-insensitive), unless absent or NULL. Repeated parameters are refused.
    pub fn get(&self, name: &str) -> Result<Option<&'a RawValue>, CimError> {
        let mut found = self.0.iter().filter(|p| p.name.eq_ignore_ascii_case(name));
        let first = found.next();
        if found.next().is_some() {
            return Err(CimError::invalid_parameter(format!(
                "Parameter {name} given twice"
            )));
        }
        Ok(first
            .map(|p| &p.value)
            .filter(|v| !matches!(v, RawValue::Null)))
    }

    pub fn bool(&self, name: &str, default: bool) -> Result<bool, CimError> {
        match self.get(name)? {
            None => Ok(default),
            Some(RawValue::Scalar(s)) => match Value::parse(CimType::Boolean, s) {
                Some(Value::Boolean(b)) => Ok(b),
                _ => Err(bad(name)),
            },
            Some(_) => Err(bad(name)),
        }
    }

    pub fn u32(&self, name: &str) -> Result<Option<u32>, CimError> {
        match self.get(name)? {
            None => Ok(None),
            Some(RawValue::Scalar(s)) => match Value::parse(CimType::Uint32, s) {
                Some(Value::Uint32(v)) => Ok(Some(v)),
                _ => Err(bad(name)),
            },
            Some(_) => Err(bad(name)),
        }
    }

    pub fn string(&self, name: &str) -> Result<Option<&'a str>, CimError> {
        match self.get(name)? {
            None => Ok(None),
            Some(RawValue::Scalar(s)) => Ok(Some(s.as_str())),
            Some(_) => Err(bad(name)),
        }
    }

    /// A class name given as CLASSNAME (or, leniently, as a VALUE).
    pub fn class_name(&self, name: &str) -> Result<Option<&'a str>, CimError> {
        match self.get(name)? {
            None => Ok(None),
            Some(RawValue::ClassName(s)) => Ok(Some(s.as_str())),
            Some(RawValue::Scalar(s)) if !s.trim().is_empty() => Ok(Some(s.trim())),
            Some(_) => Err(bad(name)),
        }
    }

    /// An instance name (INSTANCENAME, or a VALUE.REFERENCE to an instance).
    pub fn instance_name(&self, name: &str) -> Result<Option<&'a InstancePath>, CimError> {
        match self.get(name)? {
            None => Ok(None),
            Some(RawValue::InstanceName(p)) | Some(RawValue::Reference(p)) => Ok(Some(p)),
            Some(_) => Err(bad(name)),
        }
    }

    /// An object name: an instance name, or a class name (returned as a keyless path).
    pub fn object_name(&self, name: &str) -> Result<Option<InstancePath>, CimError> {
        match self.get(name)? {
            None => Ok(None),
            Some(RawValue::InstanceName(p)) | Some(RawValue::Reference(p)) => Ok(Some(p.clone())),
            Some(RawValue::ClassName(c)) => Ok(Some(InstancePath::new(c.clone()))),
            Some(_) => Err(bad(name)),
        }
    }

    /// PropertyList: `None` = all properties; `Some(empty)` = none.
    pub fn property_list(&self) -> Result<Option<Vec<String>>, CimError> {
        match self.get("PropertyList")? {
            None => Ok(None),
            Some(RawValue::Array(items)) => Ok(Some(
                items
                    .iter()
                    .flatten()
                    .map(|s| s.trim().to_owned())
                    .collect(),
            )),
            Some(RawValue::Scalar(s)) => Ok(Some(vec![s.trim().to_owned()])),
            Some(_) => Err(bad("PropertyList")),
        }
    }
}

fn bad(name: &str) -> CimError {
    CimError::invalid_parameter(format!("Invalid value for parameter {name}"))
}

/// True if `name` is in the property list (or there is none).
pub(crate) fn listed(list: Option<&[String]>, name: &str) -> bool {
    list.is_none_or(|l| l.iter().any(|n| n.eq_ignore_ascii_case(name)))
}
