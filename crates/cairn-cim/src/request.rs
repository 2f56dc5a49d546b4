//! The decoded form of one CIM-XML request (a SIMPLEREQ): which operation, on which namespace or
//! object, with which parameters — still untyped where the client sent no type.
//!
//! Invariants: `namespace` is normalised (no leading/trailing `/`); parameter values keep the
//! client's text until the dispatcher types them against the class repository.

use crate::instance::Instance;
use crate::path::InstancePath;
use crate::types::CimType;

/// One decoded request.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// MESSAGE ID, echoed in the response.
    pub message_id: String,
    pub call: Call,
}

/// An intrinsic (IMETHODCALL) or extrinsic (METHODCALL) call.
#[derive(Debug, Clone, PartialEq)]
pub enum Call {
    Intrinsic(IntrinsicCall),
    Extrinsic(ExtrinsicCall),
}

impl Call {
    /// The method name as the client spelled it.
    pub fn method(&self) -> &str {
        match self {
            Call::Intrinsic(c) => &c.method,
            Call::Extrinsic(c) => &c.method,
        }
    }
    /// The target namespace.
    pub fn namespace(&self) -> &str {
        match self {
            Call::Intrinsic(c) => &c.namespace,
            Call::Extrinsic(c) => &c.namespace,
        }
    }
}

/// IMETHODCALL: an intrinsic operation on a namespace.
#[derive(Debug, Clone, PartialEq)]
pub struct IntrinsicCall {
    pub method: String,
    pub namespace: String,
    pub params: Vec<ParamValue>,
}

/// METHODCALL: an extrinsic method on an instance or a class.
#[derive(Debug, Clone, PartialEq)]
pub struct ExtrinsicCall {
    pub method: String,
    pub namespace: String,
    pub target: MethodTarget,
    pub params: Vec<ParamValue>,
}

/// What an extrinsic method is invoked on.
#[derive(Debug, Clone, PartialEq)]
pub enum MethodTarget {
    /// An instance (LOCALINSTANCEPATH); the path's namespace is set.
    Instance(InstancePath),
    /// A class (LOCALCLASSPATH): a static method.
    Class(String),
}

/// One IPARAMVALUE or PARAMVALUE.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamValue {
    pub name: String,
    /// PARAMTYPE, if sent (wbemcli does not send it).
    pub param_type: Option<CimType>,
    /// `EmbeddedObject="instance"` (or `EmbeddedInstance`) was set.
    pub embedded_instance: bool,
    pub value: RawValue,
}

/// A parameter value as sent: text not yet typed.
#[derive(Debug, Clone, PartialEq)]
pub enum RawValue {
    /// An empty (I)PARAMVALUE or VALUE.NULL.
    Null,
    /// VALUE text.
    Scalar(String),
    /// VALUE.ARRAY; `None` elements are VALUE.NULL.
    Array(Vec<Option<String>>),
    /// VALUE.REFERENCE (INSTANCEPATH, LOCALINSTANCEPATH, INSTANCENAME, or a class path).
    Reference(InstancePath),
    /// VALUE.REFARRAY.
    RefArray(Vec<Option<InstancePath>>),
    /// CLASSNAME.
    ClassName(String),
    /// INSTANCENAME.
    InstanceName(InstancePath),
    /// INSTANCE.
    Instance(Instance),
    /// VALUE.NAMEDINSTANCE.
    NamedInstance(InstancePath, Instance),
}
