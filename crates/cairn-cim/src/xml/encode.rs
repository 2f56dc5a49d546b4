//! Response encoder: typed results → CIM-XML bytes.
//!
//! Invariants: every text and attribute value is escaped; every INSTANCE has CLASSNAME; RETURNVALUE
//! and out PARAMVALUEs carry PARAMTYPE; the response names the method exactly as the request did;
//! embedded instances are written as escaped INSTANCE text with `EmbeddedObject="instance"`.

use std::fmt::Write as _;

use crate::class::{Class, ClassProperty, Method, Parameter, Qualifier};
use crate::error::CimError;
use crate::instance::{Instance, Property};
use crate::path::{InstancePath, KeyValue};
use crate::types::{CimType, Value};

/// Host name written where DSP0201 requires an INSTANCEPATH (OBJECTPATH, VALUE.OBJECTWITHPATH,
/// pulled instances and paths) and the path has none; a reference without a host is written as
/// LOCALINSTANCEPATH instead.
pub const DEFAULT_HOST: &str = "localhost";

/// What an intrinsic operation returns inside IRETURNVALUE (plus pull parameters).
#[derive(Debug, Clone, PartialEq)]
pub enum IReturn {
    /// No IRETURNVALUE (DeleteInstance, CloseEnumeration).
    Nothing,
    Instance(Instance),
    /// VALUE.NAMEDINSTANCE per instance (EnumerateInstances); every instance has a path.
    NamedInstances(Vec<Instance>),
    /// INSTANCENAME per path (EnumerateInstanceNames).
    InstanceNames(Vec<InstancePath>),
    /// VALUE.OBJECTWITHPATH per instance (Associators, References).
    ObjectsWithPath(Vec<Instance>),
    /// OBJECTPATH per path (AssociatorNames, ReferenceNames).
    ObjectPaths(Vec<InstancePath>),
    Class(Box<Class>),
    Classes(Vec<Class>),
    ClassNames(Vec<String>),
    /// OBJECTPATH holding a CLASSPATH per class name (class-level AssociatorNames, ReferenceNames).
    ClassPaths {
        namespace: String,
        names: Vec<String>,
    },
    /// VALUE.OBJECTWITHPATH holding CLASSPATH and CLASS per class (class-level Associators, References).
    ClassesWithPath {
        namespace: String,
        classes: Vec<Class>,
    },
    /// VALUE.INSTANCEWITHPATH per instance, then EndOfSequence and EnumerationContext.
    PulledInstances {
        instances: Vec<Instance>,
        end_of_sequence: bool,
        context: Option<String>,
    },
    /// INSTANCEPATH per path, then EndOfSequence and EnumerationContext.
    PulledPaths {
        paths: Vec<InstancePath>,
        end_of_sequence: bool,
        context: Option<String>,
    },
}

/// What an extrinsic method returned.
#[derive(Debug, Clone, PartialEq)]
pub struct MethodReturn {
    /// Return value and its declared type.
    pub return_value: Option<Value>,
    pub return_type: CimType,
    /// Output parameters: name, declared type, is-array, value.
    pub out_params: Vec<OutParam>,
}

/// One output parameter.
#[derive(Debug, Clone, PartialEq)]
pub struct OutParam {
    pub name: String,
    pub ty: CimType,
    pub is_array: bool,
    pub value: Option<Value>,
}

/// Options for writing class definitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClassOptions {
    pub include_qualifiers: bool,
    pub include_class_origin: bool,
}

/// Encodes an IMETHODRESPONSE message.
pub fn imethod_response(
    message_id: &str,
    method: &str,
    result: &Result<IReturn, CimError>,
    opts: ClassOptions,
) -> Vec<u8> {
    let mut w = Writer::new();
    w.open_imethod(message_id, method);
    match result {
        Err(e) => w.error(e),
        Ok(r) => w.ireturn(r, opts),
    }
    w.s.push_str(IMETHOD_RESPONSE_END);
    w.close_message()
}

/// The start of an IMETHODRESPONSE message whose IRETURNVALUE is sent in parts: everything up
/// to and including `<IRETURNVALUE>`. The parts follow ([`ireturn_part`]), then
/// [`imethod_response_tail`]; together they are the bytes [`imethod_response`] writes for the
/// whole result.
pub fn imethod_response_head(message_id: &str, method: &str) -> Vec<u8> {
    let mut w = Writer::new();
    w.open_imethod(message_id, method);
    w.s.push_str("<IRETURNVALUE>");
    w.s.into_bytes()
}

/// The objects of `r` as they appear inside its IRETURNVALUE (a part of a streamed answer).
pub fn ireturn_part(r: &IReturn) -> Vec<u8> {
    let mut w = Writer::new();
    w.ireturn_content(r, NO_CLASS_OPTIONS);
    w.s.into_bytes()
}

/// The end of an IMETHODRESPONSE message begun by [`imethod_response_head`].
pub fn imethod_response_tail() -> Vec<u8> {
    let mut w = Writer::new();
    w.s.push_str("</IRETURNVALUE>");
    w.s.push_str(IMETHOD_RESPONSE_END);
    w.close_message()
}

const IMETHOD_RESPONSE_END: &str = "</IMETHODRESPONSE>";

/// Class output options for answers that hold no classes.
pub const NO_CLASS_OPTIONS: ClassOptions = ClassOptions {
    include_qualifiers: false,
    include_class_origin: false,
};

/// Encodes a METHODRESPONSE message.
pub fn method_response(
    message_id: &str,
    method: &str,
    result: &Result<MethodReturn, CimError>,
) -> Vec<u8> {
    let mut w = Writer::new();
    w.open_message(message_id);
    w.s.push_str("<METHODRESPONSE NAME=\"");
    w.attr_text(method);
    w.s.push_str("\">");
    match result {
        Err(e) => w.error(e),
        Ok(r) => {
            w.s.push_str("<RETURNVALUE PARAMTYPE=\"");
            w.s.push_str(r.return_type.xml_name());
            w.s.push_str("\">");
            if let Some(v) = &r.return_value {
                w.value(v);
            }
            w.s.push_str("</RETURNVALUE>");
            for p in &r.out_params {
                w.out_param(p);
            }
        }
    }
    w.s.push_str("</METHODRESPONSE>");
    w.close_message()
}

/// Escapes text for element content or a double-quoted attribute.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    escape_into(&mut out, s);
    out
}

fn escape_into(out: &mut String, s: &str) {
    let plain = |b: u8| b >= 0x20 && !matches!(b, b'&' | b'<' | b'>' | b'"' | b'\'');
    if s.bytes().all(plain) {
        out.push_str(s);
        return;
    }
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Other control characters are not allowed in XML 1.0 even as references; send them as
            // character references so nothing is silently lost (clients decode them).
            c if (c as u32) < 0x20 && !matches!(c, '\n' | '\t') => {
                let _ = write!(out, "&#{};", c as u32);
            }
            c => out.push(c),
        }
    }
}

/// Writes one INSTANCE element as text (used for embedded instances and tests).
pub fn instance_xml(inst: &Instance) -> String {
    let mut w = Writer::new();
    w.instance(inst);
    w.s
}

/// Writes one CLASS element as text.
pub fn class_xml(class: &Class, opts: ClassOptions) -> String {
    let mut w = Writer::new();
    w.class(class, opts);
    w.s
}

/// Writes any value as its VALUE, VALUE.ARRAY, VALUE.REFERENCE or VALUE.REFARRAY element.
pub fn value_xml(v: &Value) -> String {
    let mut w = Writer::new();
    w.value(v);
    w.s
}

/// Writes a reference's path as text: INSTANCEPATH with a host, LOCALINSTANCEPATH with a
/// namespace alone, INSTANCENAME with neither.
pub fn reference_xml(path: &InstancePath) -> String {
    let mut w = Writer::new();
    w.reference_target(path);
    w.s
}

struct Writer {
    s: String,
}

impl Writer {
    fn new() -> Writer {
        Writer {
            s: String::with_capacity(4096),
        }
    }

    fn text(&mut self, t: &str) {
        escape_into(&mut self.s, t);
    }

    fn attr_text(&mut self, t: &str) {
        escape_into(&mut self.s, t);
    }

    fn attr(&mut self, name: &str, value: &str) {
        self.s.push(' ');
        self.s.push_str(name);
        self.s.push_str("=\"");
        self.attr_text(value);
        self.s.push('"');
    }

    fn open_message(&mut self, id: &str) {
        self.s.push_str("<?xml version=\"1.0\" encoding=\"utf-8\" ?>\n<CIM CIMVERSION=\"2.0\" DTDVERSION=\"2.0\"><MESSAGE");
        self.attr("ID", id);
        self.s.push_str(" PROTOCOLVERSION=\"1.0\"><SIMPLERSP>");
    }

    fn open_imethod(&mut self, id: &str, method: &str) {
        self.open_message(id);
        self.s.push_str("<IMETHODRESPONSE NAME=\"");
        self.attr_text(method);
        self.s.push_str("\">");
    }

    fn close_message(mut self) -> Vec<u8> {
        self.s.push_str("</SIMPLERSP></MESSAGE></CIM>\n");
        self.s.into_bytes()
    }

    fn error(&mut self, e: &CimError) {
        let _ = write!(self.s, "<ERROR CODE=\"{}\"", e.status.code());
        self.attr("DESCRIPTION", &e.description);
        self.s.push_str("/>");
    }

    fn ireturn(&mut self, r: &IReturn, opts: ClassOptions) {
        match r {
            IReturn::Nothing => {}
            IReturn::PulledInstances {
                end_of_sequence,
                context,
                ..
            }
            | IReturn::PulledPaths {
                end_of_sequence,
                context,
                ..
            } => {
                self.wrapped(|w| w.ireturn_content(r, opts));
                self.pull_params(*end_of_sequence, context.as_deref());
            }
            _ => self.wrapped(|w| w.ireturn_content(r, opts)),
        }
    }

    /// What goes inside the IRETURNVALUE of `r` (nothing for `Nothing`).
    fn ireturn_content(&mut self, r: &IReturn, opts: ClassOptions) {
        match r {
            IReturn::Nothing => {}
            IReturn::Instance(i) => self.instance(i),
            IReturn::NamedInstances(v) => {
                self.instances_with_paths("VALUE.NAMEDINSTANCE", v, Writer::instance_name)
            }
            IReturn::InstanceNames(v) => v.iter().for_each(|p| self.instance_name(p)),
            IReturn::ObjectsWithPath(v) => {
                self.instances_with_paths("VALUE.OBJECTWITHPATH", v, Writer::instance_path)
            }
            IReturn::ObjectPaths(v) => {
                for p in v {
                    self.s.push_str("<OBJECTPATH>");
                    self.instance_path(p);
                    self.s.push_str("</OBJECTPATH>");
                }
            }
            IReturn::Class(c) => self.class(c, opts),
            IReturn::Classes(v) => v.iter().for_each(|c| self.class(c, opts)),
            IReturn::ClassPaths { namespace, names } => self.class_paths(namespace, names),
            IReturn::ClassesWithPath { namespace, classes } => {
                self.classes_with_paths(namespace, classes, opts)
            }
            IReturn::ClassNames(v) => self.class_names(v),
            IReturn::PulledInstances { instances, .. } => self.instances_with_paths(
                "VALUE.INSTANCEWITHPATH",
                instances,
                Writer::instance_path,
            ),
            IReturn::PulledPaths { paths, .. } => paths.iter().for_each(|p| self.instance_path(p)),
        }
    }

    /// Each instance inside element `tag`, after its path written by `path` (a path built from
    /// the class name when the instance has none).
    fn instances_with_paths(
        &mut self,
        tag: &str,
        instances: &[Instance],
        path: fn(&mut Writer, &InstancePath),
    ) {
        let start = self.s.len();
        for (n, i) in instances.iter().enumerate() {
            let _ = write!(self.s, "<{tag}>");
            match &i.path {
                Some(p) => path(self, p),
                None => path(self, &InstancePath::new(&i.class_name)),
            }
            self.instance(i);
            let _ = write!(self.s, "</{tag}>");
            if n == 0 {
                // The others are about the size of the first (a batch is of one class): room
                // for them at once rather than by doubling and copying the text again and again.
                let first = self.s.len() - start;
                self.s.reserve(first.saturating_mul(instances.len() - 1));
            }
        }
    }

    fn class_paths(&mut self, namespace: &str, names: &[String]) {
        for n in names {
            self.s.push_str("<OBJECTPATH>");
            self.class_path(namespace, n);
            self.s.push_str("</OBJECTPATH>");
        }
    }

    fn classes_with_paths(&mut self, namespace: &str, classes: &[Class], opts: ClassOptions) {
        for c in classes {
            self.s.push_str("<VALUE.OBJECTWITHPATH>");
            self.class_path(namespace, &c.name);
            self.class(c, opts);
            self.s.push_str("</VALUE.OBJECTWITHPATH>");
        }
    }

    fn class_names(&mut self, names: &[String]) {
        for n in names {
            self.s.push_str("<CLASSNAME");
            self.attr("NAME", n);
            self.s.push_str("/>");
        }
    }

    fn wrapped(&mut self, body: impl FnOnce(&mut Writer)) {
        self.s.push_str("<IRETURNVALUE>");
        body(self);
        self.s.push_str("</IRETURNVALUE>");
    }

    fn pull_params(&mut self, end_of_sequence: bool, context: Option<&str>) {
        let _ = write!(
            self.s,
            "<PARAMVALUE NAME=\"EndOfSequence\" PARAMTYPE=\"boolean\"><VALUE>{}</VALUE></PARAMVALUE>",
            if end_of_sequence { "TRUE" } else { "FALSE" }
        );
        self.s
            .push_str("<PARAMVALUE NAME=\"EnumerationContext\" PARAMTYPE=\"string\">");
        if let Some(c) = context {
            self.s.push_str("<VALUE>");
            self.text(c);
            self.s.push_str("</VALUE>");
        }
        self.s.push_str("</PARAMVALUE>");
    }

    fn out_param(&mut self, p: &OutParam) {
        self.s.push_str("<PARAMVALUE");
        self.attr("NAME", &p.name);
        self.attr("PARAMTYPE", p.ty.xml_name());
        if p.ty == CimType::Instance {
            self.s.push_str(" EmbeddedObject=\"instance\"");
        }
        self.s.push('>');
        if let Some(v) = &p.value {
            self.value(v);
        }
        self.s.push_str("</PARAMVALUE>");
    }

    /// VALUE, VALUE.ARRAY, VALUE.REFERENCE or VALUE.REFARRAY for any value.
    fn value(&mut self, v: &Value) {
        match v {
            Value::Reference(p) => {
                self.s.push_str("<VALUE.REFERENCE>");
                self.reference_target(p);
                self.s.push_str("</VALUE.REFERENCE>");
            }
            Value::Array(CimType::Reference, items) => {
                self.s.push_str("<VALUE.REFARRAY>");
                items.iter().for_each(|i| self.value(i));
                self.s.push_str("</VALUE.REFARRAY>");
            }
            Value::Array(_, items) => {
                self.s.push_str("<VALUE.ARRAY>");
                items.iter().for_each(|i| self.value(i));
                self.s.push_str("</VALUE.ARRAY>");
            }
            Value::Instance(i) => {
                let xml = instance_xml(i);
                self.s.push_str("<VALUE>");
                self.text(&xml);
                self.s.push_str("</VALUE>");
            }
            scalar => {
                self.s.push_str("<VALUE>");
                self.scalar_text(scalar);
                self.s.push_str("</VALUE>");
            }
        }
    }

    /// The escaped text of scalar `v`, written straight into the output.
    fn scalar_text(&mut self, v: &Value) {
        match v {
            Value::String(s) => self.text(s),
            Value::DateTime(d) => self.text(d.as_str()),
            Value::Char16(c) => self.text(c.encode_utf8(&mut [0; 4])),
            // Booleans and numbers are digits, letters, '.', '+' and '-': nothing to escape.
            other => {
                let start = self.s.len();
                other.write_cim_text(&mut self.s);
                debug_assert!(
                    !self.s[start..].contains(['&', '<', '>', '"', '\'']),
                    "unescaped text {:?}",
                    &self.s[start..]
                );
            }
        }
    }

    /// The path inside a VALUE.REFERENCE: INSTANCEPATH with a host, LOCALINSTANCEPATH with a
    /// namespace alone (DSP0201; a client then reads the reference without a host, as
    /// the paths of its own enumerations), INSTANCENAME with neither.
    fn reference_target(&mut self, p: &InstancePath) {
        match (&p.host, &p.namespace) {
            (Some(_), _) => self.instance_path(p),
            (None, Some(ns)) => {
                self.s.push_str("<LOCALINSTANCEPATH>");
                self.local_namespace(ns);
                self.instance_name(p);
                self.s.push_str("</LOCALINSTANCEPATH>");
            }
            (None, None) => self.instance_name(p),
        }
    }

    fn instance_path(&mut self, p: &InstancePath) {
        self.s.push_str("<INSTANCEPATH><NAMESPACEPATH><HOST>");
        let host = p.host.as_deref().unwrap_or(DEFAULT_HOST);
        self.text(host);
        self.s.push_str("</HOST>");
        self.local_namespace(p.namespace.as_deref().unwrap_or(""));
        self.s.push_str("</NAMESPACEPATH>");
        self.instance_name(p);
        self.s.push_str("</INSTANCEPATH>");
    }

    fn class_path(&mut self, ns: &str, class_name: &str) {
        self.s.push_str("<CLASSPATH><NAMESPACEPATH><HOST>");
        self.text(DEFAULT_HOST);
        self.s.push_str("</HOST>");
        self.local_namespace(ns);
        self.s.push_str("</NAMESPACEPATH><CLASSNAME");
        self.attr("NAME", class_name);
        self.s.push_str("/></CLASSPATH>");
    }

    fn local_namespace(&mut self, ns: &str) {
        self.s.push_str("<LOCALNAMESPACEPATH>");
        for part in ns.split('/').filter(|p| !p.is_empty()) {
            self.s.push_str("<NAMESPACE");
            self.attr("NAME", part);
            self.s.push_str("/>");
        }
        self.s.push_str("</LOCALNAMESPACEPATH>");
    }

    fn instance_name(&mut self, p: &InstancePath) {
        self.s.push_str("<INSTANCENAME");
        self.attr("CLASSNAME", &p.class_name);
        self.s.push('>');
        for k in &p.keys {
            self.s.push_str("<KEYBINDING");
            self.attr("NAME", &k.name);
            self.s.push('>');
            match &k.value {
                KeyValue::Reference(r) => {
                    self.s.push_str("<VALUE.REFERENCE>");
                    self.reference_target(r);
                    self.s.push_str("</VALUE.REFERENCE>");
                }
                other => {
                    self.s.push_str("<KEYVALUE");
                    self.attr("VALUETYPE", other.value_type().unwrap_or("string"));
                    let (ty, text) = match other {
                        KeyValue::String(s) => (Some(CimType::String), s.as_str()),
                        KeyValue::Boolean(b) => {
                            (Some(CimType::Boolean), if *b { "TRUE" } else { "FALSE" })
                        }
                        KeyValue::Numeric(n, t) => (*t, n.as_str()),
                        KeyValue::Reference(_) => (None, ""),
                    };
                    if let Some(t) = ty {
                        self.attr("TYPE", t.xml_name());
                    }
                    self.s.push('>');
                    self.text(text);
                    self.s.push_str("</KEYVALUE>");
                }
            }
            self.s.push_str("</KEYBINDING>");
        }
        self.s.push_str("</INSTANCENAME>");
    }

    fn instance(&mut self, inst: &Instance) {
        self.s.push_str("<INSTANCE");
        self.attr("CLASSNAME", &inst.class_name);
        self.s.push('>');
        for p in &inst.properties {
            self.property(p);
        }
        self.s.push_str("</INSTANCE>");
    }

    fn property(&mut self, p: &Property) {
        let elem = match (p.ty, p.is_array) {
            (CimType::Reference, false) => "PROPERTY.REFERENCE",
            (_, true) => "PROPERTY.ARRAY",
            _ => "PROPERTY",
        };
        self.s.push('<');
        self.s.push_str(elem);
        self.attr("NAME", &p.name);
        if p.ty == CimType::Reference && !p.is_array {
            if let Some(rc) = &p.reference_class {
                self.attr("REFERENCECLASS", rc);
            }
        } else {
            self.attr("TYPE", p.ty.xml_name());
        }
        if let Some(co) = &p.class_origin {
            self.attr("CLASSORIGIN", co);
        }
        if p.ty == CimType::Instance {
            self.s.push_str(" EmbeddedObject=\"instance\"");
        }
        self.s.push('>');
        if let Some(v) = &p.value {
            self.value(v);
        }
        self.s.push_str("</");
        self.s.push_str(elem);
        self.s.push('>');
    }

    fn qualifiers(&mut self, qs: &[Qualifier], opts: ClassOptions) {
        if !opts.include_qualifiers {
            return;
        }
        for q in qs {
            self.s.push_str("<QUALIFIER");
            self.attr("NAME", &q.name);
            self.attr("TYPE", &q.ty);
            if q.propagated {
                self.s.push_str(" PROPAGATED=\"true\"");
            }
            if !q.overridable {
                self.s.push_str(" OVERRIDABLE=\"false\"");
            }
            if !q.tosubclass {
                self.s.push_str(" TOSUBCLASS=\"false\"");
            }
            if q.translatable {
                self.s.push_str(" TRANSLATABLE=\"true\"");
            }
            self.s.push('>');
            self.json_value(&q.value);
            self.s.push_str("</QUALIFIER>");
        }
    }

    /// A repository (JSON) value as VALUE or VALUE.ARRAY.
    fn json_value(&mut self, v: &serde_json::Value) {
        match v {
            serde_json::Value::Null => {}
            serde_json::Value::Array(items) => {
                self.s.push_str("<VALUE.ARRAY>");
                for i in items {
                    self.json_value(i);
                }
                self.s.push_str("</VALUE.ARRAY>");
            }
            scalar => {
                self.s.push_str("<VALUE>");
                match scalar {
                    serde_json::Value::Bool(b) => {
                        self.s.push_str(if *b { "TRUE" } else { "FALSE" })
                    }
                    serde_json::Value::String(t) => self.text(t),
                    other => self.text(&other.to_string()),
                }
                self.s.push_str("</VALUE>");
            }
        }
    }

    fn class(&mut self, c: &Class, opts: ClassOptions) {
        self.s.push_str("<CLASS");
        self.attr("NAME", &c.name);
        if let Some(sc) = &c.superclass {
            self.attr("SUPERCLASS", sc);
        }
        self.s.push('>');
        self.qualifiers(&c.qualifiers, opts);
        for p in &c.properties {
            self.class_property(p, opts);
        }
        for m in &c.methods {
            self.method(m, opts);
        }
        self.s.push_str("</CLASS>");
    }

    fn origin(&mut self, class_origin: &str, propagated: bool, opts: ClassOptions) {
        if opts.include_class_origin {
            self.attr("CLASSORIGIN", class_origin);
        }
        if propagated {
            self.s.push_str(" PROPAGATED=\"true\"");
        }
    }

    fn class_property(&mut self, p: &ClassProperty, opts: ClassOptions) {
        let elem = match (p.ty, p.is_array) {
            (CimType::Reference, _) => "PROPERTY.REFERENCE",
            (_, true) => "PROPERTY.ARRAY",
            _ => "PROPERTY",
        };
        self.s.push('<');
        self.s.push_str(elem);
        self.attr("NAME", &p.name);
        self.type_attr(p.ty, p.reference_class.as_deref());
        self.origin(&p.class_origin, p.propagated, opts);
        if p.ty == CimType::String
            && p.qualifiers
                .iter()
                .any(|q| q.name.eq_ignore_ascii_case("EmbeddedInstance"))
        {
            self.s.push_str(" EmbeddedObject=\"instance\"");
        }
        self.s.push('>');
        self.qualifiers(&p.qualifiers, opts);
        self.json_value(&p.default);
        self.s.push_str("</");
        self.s.push_str(elem);
        self.s.push('>');
    }

    /// `REFERENCECLASS` for a reference (when known), `TYPE` for anything else.
    fn type_attr(&mut self, ty: CimType, reference_class: Option<&str>) {
        if ty == CimType::Reference {
            if let Some(rc) = reference_class {
                self.attr("REFERENCECLASS", rc);
            }
        } else {
            self.attr("TYPE", ty.xml_name());
        }
    }

    fn method(&mut self, m: &Method, opts: ClassOptions) {
        self.s.push_str("<METHOD");
        self.attr("NAME", &m.name);
        self.attr("TYPE", m.return_type.xml_name());
        self.origin(&m.class_origin, m.propagated, opts);
        self.s.push('>');
        self.qualifiers(&m.qualifiers, opts);
        for p in &m.parameters {
            self.parameter(p, opts);
        }
        self.s.push_str("</METHOD>");
    }

    fn parameter(&mut self, p: &Parameter, opts: ClassOptions) {
        let elem = match (p.ty, p.is_array) {
            (CimType::Reference, false) => "PARAMETER.REFERENCE",
            (CimType::Reference, true) => "PARAMETER.REFARRAY",
            (_, true) => "PARAMETER.ARRAY",
            _ => "PARAMETER",
        };
        self.s.push('<');
        self.s.push_str(elem);
        self.attr("NAME", &p.name);
        self.type_attr(p.ty, p.reference_class.as_deref());
        self.s.push('>');
        self.qualifiers(&p.qualifiers, opts);
        self.s.push_str("</");
        self.s.push_str(elem);
        self.s.push('>');
    }
}
