//! Extrinsic method invocation: resolve the target, find the method in the repository, type the
//! input parameters, call the provider, type the output for the response.
//!
//! Invariants: the provider only sees methods the target's class declares (others answer
//! CIM_ERR_METHOD_NOT_FOUND), parameters it declares (others answer CIM_ERR_INVALID_PARAMETER), and
//! the provider's own path of the target instance.

use super::coerce::coerce_param;
use super::Core;
use crate::class::Method;
use crate::error::CimError;
use crate::provider::{MethodCall, MethodName};
use crate::request::{ExtrinsicCall, MethodTarget, ParamValue};
use crate::types::CimType;
use crate::xml::encode::{MethodReturn, OutParam};

impl Core {
    pub fn extrinsic(&self, call: &ExtrinsicCall) -> Result<MethodReturn, CimError> {
        let ns = self.namespace(&call.namespace)?;
        let (target, class) = match &call.target {
            MethodTarget::Instance(path) => {
                self.known_class(&path.class_name)?;
                let inst = self.find_instance(&ns, path)?;
                let class = self.known_class(&inst.class_name)?;
                (inst.path, class)
            }
            MethodTarget::Class(name) => (None, self.known_class(name)?),
        };
        let method = class.method(&call.method).ok_or_else(|| {
            CimError::new(
                crate::CimStatus::MethodNotFound,
                format!("No method {} in {}", call.method, class.name),
            )
        })?;
        let params = typed_inputs(method, &call.params)?;
        let mc = MethodCall {
            namespace: &ns,
            target: target.as_ref(),
            class_name: &class.name,
            method: &method.name,
            params: &params,
        };
        let result = match self
            .methods
            .get(&MethodName::key(&class.name, &method.name))
        {
            Some(i) => self.provider.invoke_resolved(&mc, *i)?,
            None => self.provider.invoke_method(&mc)?,
        };
        Ok(MethodReturn {
            return_value: Some(result.return_value),
            return_type: method.return_type,
            out_params: typed_outputs(method, result.out_params),
        })
    }
}

/// The call's parameters typed by the method's declaration: each must be a declared input,
/// given once.
fn typed_inputs(
    method: &Method,
    given: &[ParamValue],
) -> Result<Vec<(String, Option<crate::Value>)>, CimError> {
    let mut params: Vec<(String, Option<crate::Value>)> = Vec::with_capacity(given.len());
    for pv in given {
        let decl = method
            .parameter(&pv.name)
            .filter(|d| d.is_in())
            .ok_or_else(|| {
                CimError::invalid_parameter(format!(
                    "Method {} has no input parameter {}",
                    method.name, pv.name
                ))
            })?;
        if params.iter().any(|(n, _)| n == &decl.name) {
            return Err(CimError::invalid_parameter(format!(
                "Parameter {} given twice",
                decl.name
            )));
        }
        params.push((decl.name.clone(), coerce_param(pv, decl)?));
    }
    Ok(params)
}

/// The provider's output parameters typed by the method's declaration where it declares them
/// (embedded instances keep their instance type), by their value otherwise.
fn typed_outputs(method: &Method, out: Vec<(String, crate::Value)>) -> Vec<OutParam> {
    out.into_iter()
        .map(|(name, value)| {
            let (vty, varr) = value.cim_type();
            let (name, ty, is_array) = match method.parameter(&name) {
                Some(d) if vty != CimType::Instance => (d.name.clone(), d.ty, d.is_array),
                Some(d) => (d.name.clone(), CimType::Instance, d.is_array),
                None => (name, vty, varr),
            };
            OutParam {
                name,
                ty,
                is_array,
                value: Some(value),
            }
        })
        .collect()
}
