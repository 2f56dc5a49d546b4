//! Request encoder: one [`Operation`] → a CIM-XML body plus the `CIMMethod` and `CIMObject`
//! header values (DSP0200 §4.3) that go with it.
//!
//! Invariants: every text and attribute value is escaped; header values are percent-encoded so
//! they stay visible ASCII whatever the names hold; extrinsic parameters carry PARAMTYPE, and
//! embedded instances `EmbeddedObject="instance"`.

use std::fmt::Write as _;

use crate::instance::Instance;
use crate::path::{InstancePath, KeyValue};
use crate::types::{CimType, Value};
use crate::xml::encode::{escape, instance_xml, reference_xml, value_xml};

/// One operation a client can ask for.
#[derive(Debug, Clone, PartialEq)]
pub enum Operation {
    GetInstance {
        path: InstancePath,
    },
    EnumerateInstances {
        class_name: String,
    },
    EnumerateInstanceNames {
        class_name: String,
    },
    OpenEnumerateInstances {
        class_name: String,
        max_object_count: u32,
    },
    PullInstancesWithPath {
        context: String,
        max_object_count: u32,
    },
    CloseEnumeration {
        context: String,
    },
    Associators {
        object: InstancePath,
        assoc_class: Option<String>,
        result_class: Option<String>,
    },
    References {
        object: InstancePath,
        result_class: Option<String>,
    },
    /// Sets the properties of `instance` named in `property_list` on the instance at its path.
    ModifyInstance {
        instance: Instance,
        path: InstancePath,
        property_list: Vec<String>,
    },
    /// An extrinsic method on an instance; `params` are typed (a NULL is left out).
    InvokeMethod {
        target: InstancePath,
        method: String,
        params: Vec<(String, Value)>,
    },
}

impl Operation {
    /// The method name as it goes on the wire and in `CIMMethod`.
    pub fn method(&self) -> &str {
        match self {
            Operation::GetInstance { .. } => "GetInstance",
            Operation::EnumerateInstances { .. } => "EnumerateInstances",
            Operation::EnumerateInstanceNames { .. } => "EnumerateInstanceNames",
            Operation::OpenEnumerateInstances { .. } => "OpenEnumerateInstances",
            Operation::PullInstancesWithPath { .. } => "PullInstancesWithPath",
            Operation::CloseEnumeration { .. } => "CloseEnumeration",
            Operation::Associators { .. } => "Associators",
            Operation::References { .. } => "References",
            Operation::ModifyInstance { .. } => "ModifyInstance",
            Operation::InvokeMethod { method, .. } => method,
        }
    }
}

/// A request ready for HTTP: the body and its two CIM headers (`CIMOperation: MethodCall` is
/// always the same).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedRequest {
    pub body: Vec<u8>,
    pub cim_method: String,
    pub cim_object: String,
}

/// Encodes `op` on `namespace` (for a method, the target's namespace when it has one).
pub fn encode_request(message_id: &str, namespace: &str, op: &Operation) -> EncodedRequest {
    let mut s = String::with_capacity(1024);
    s.push_str("<?xml version=\"1.0\" encoding=\"utf-8\" ?>\n<CIM CIMVERSION=\"2.0\" DTDVERSION=\"2.0\"><MESSAGE ID=\"");
    s.push_str(&escape(message_id));
    s.push_str("\" PROTOCOLVERSION=\"1.0\"><SIMPLEREQ>");
    let cim_object = match op {
        Operation::InvokeMethod {
            target,
            method,
            params,
        } => {
            let ns = target.namespace.as_deref().unwrap_or(namespace);
            method_call(&mut s, ns, target, method, params);
            object_header(ns, target)
        }
        intrinsic => {
            imethod_call(&mut s, namespace, intrinsic);
            percent_encode(namespace)
        }
    };
    s.push_str("</SIMPLEREQ></MESSAGE></CIM>\n");
    EncodedRequest {
        body: s.into_bytes(),
        cim_method: percent_encode(op.method()),
        cim_object,
    }
}

fn local_namespace(s: &mut String, ns: &str) {
    s.push_str("<LOCALNAMESPACEPATH>");
    for part in ns.split('/').filter(|p| !p.is_empty()) {
        let _ = write!(s, "<NAMESPACE NAME=\"{}\"/>", escape(part));
    }
    s.push_str("</LOCALNAMESPACEPATH>");
}

/// INSTANCENAME of `path` (host and namespace left out).
fn instance_name(path: &InstancePath) -> String {
    let mut local = path.clone();
    local.host = None;
    local.namespace = None;
    reference_xml(&local)
}

fn method_call(
    s: &mut String,
    ns: &str,
    target: &InstancePath,
    method: &str,
    params: &[(String, Value)],
) {
    let _ = write!(
        s,
        "<METHODCALL NAME=\"{}\"><LOCALINSTANCEPATH>",
        escape(method)
    );
    local_namespace(s, ns);
    s.push_str(&instance_name(target));
    s.push_str("</LOCALINSTANCEPATH>");
    for (name, value) in params {
        let (ty, _) = value.cim_type();
        let _ = write!(
            s,
            "<PARAMVALUE NAME=\"{}\" PARAMTYPE=\"{}\"",
            escape(name),
            ty.xml_name()
        );
        if ty == CimType::Instance {
            s.push_str(" EmbeddedObject=\"instance\"");
        }
        s.push('>');
        s.push_str(&value_xml(value));
        s.push_str("</PARAMVALUE>");
    }
    s.push_str("</METHODCALL>");
}

fn iparam(s: &mut String, name: &str, inner: &str) {
    let _ = write!(s, "<IPARAMVALUE NAME=\"{name}\">{inner}</IPARAMVALUE>");
}

fn class_name(name: &str) -> String {
    format!("<CLASSNAME NAME=\"{}\"/>", escape(name))
}

fn text_value(text: &str) -> String {
    format!("<VALUE>{}</VALUE>", escape(text))
}

fn imethod_call(s: &mut String, ns: &str, op: &Operation) {
    let _ = write!(s, "<IMETHODCALL NAME=\"{}\">", op.method());
    local_namespace(s, ns);
    iparams(s, op);
    s.push_str("</IMETHODCALL>");
}

/// The IPARAMVALUEs of one intrinsic operation, in the order DSP0200 lists them.
fn iparams(s: &mut String, op: &Operation) {
    match op {
        Operation::GetInstance { path } => iparam(s, "InstanceName", &instance_name(path)),
        Operation::EnumerateInstances { class_name: c }
        | Operation::EnumerateInstanceNames { class_name: c } => {
            iparam(s, "ClassName", &class_name(c))
        }
        Operation::OpenEnumerateInstances {
            class_name: c,
            max_object_count,
        } => {
            iparam(s, "ClassName", &class_name(c));
            iparam(
                s,
                "MaxObjectCount",
                &text_value(&max_object_count.to_string()),
            );
        }
        Operation::PullInstancesWithPath {
            context,
            max_object_count,
        } => {
            iparam(s, "EnumerationContext", &text_value(context));
            iparam(
                s,
                "MaxObjectCount",
                &text_value(&max_object_count.to_string()),
            );
        }
        Operation::CloseEnumeration { context } => {
            iparam(s, "EnumerationContext", &text_value(context))
        }
        Operation::Associators {
            object,
            assoc_class,
            result_class,
        } => {
            iparam(s, "ObjectName", &instance_name(object));
            optional_class(s, "AssocClass", assoc_class.as_deref());
            optional_class(s, "ResultClass", result_class.as_deref());
        }
        Operation::References {
            object,
            result_class,
        } => {
            iparam(s, "ObjectName", &instance_name(object));
            optional_class(s, "ResultClass", result_class.as_deref());
        }
        Operation::ModifyInstance {
            instance,
            path,
            property_list,
        } => modified_instance(s, instance, path, property_list),
        Operation::InvokeMethod { .. } => {
            unreachable!("extrinsic calls are written by method_call")
        }
    }
}

/// ModifyInstance's parameters: the named instance and the properties to change.
fn modified_instance(
    s: &mut String,
    instance: &Instance,
    path: &InstancePath,
    property_list: &[String],
) {
    let named = format!(
        "<VALUE.NAMEDINSTANCE>{}{}</VALUE.NAMEDINSTANCE>",
        instance_name(path),
        instance_xml(instance)
    );
    iparam(s, "ModifiedInstance", &named);
    let list: String = property_list.iter().map(|p| text_value(p)).collect();
    iparam(
        s,
        "PropertyList",
        &format!("<VALUE.ARRAY>{list}</VALUE.ARRAY>"),
    );
}

fn optional_class(s: &mut String, name: &str, class: Option<&str>) {
    if let Some(c) = class {
        iparam(s, name, &class_name(c));
    }
}

/// `CIMObject` of an extrinsic call: `namespace:Class.key="value",...` (DSP0207 untyped form).
fn object_header(ns: &str, target: &InstancePath) -> String {
    let mut obj = format!("{ns}:{}", target.class_name);
    for (i, k) in target.keys.iter().enumerate() {
        obj.push(if i == 0 { '.' } else { ',' });
        let value = match &k.value {
            KeyValue::String(v) => format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"")),
            KeyValue::Numeric(v, _) => v.clone(),
            KeyValue::Boolean(b) => if *b { "TRUE" } else { "FALSE" }.to_owned(),
            KeyValue::Reference(r) => format!("\"{}\"", r.to_string().replace('"', "\\\"")),
        };
        let _ = write!(obj, "{}={value}", k.name);
    }
    percent_encode(&obj)
}

/// Percent-encodes everything but unreserved characters and the path punctuation `/:.,=`.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~/:,=".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}
