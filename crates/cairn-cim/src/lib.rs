//! cairn-cim: Cairn's pure CIM layer — the CIM object model, the CIM-XML (DSP0201) request decoder
//! and response encoder, the embedded class repository (DMTF CIM Schema 2.49 subset plus `Cairn_*`
//! classes), operation dispatch (DSP0200 intrinsic operations, pull operations, extrinsic methods)
//! over the [`Provider`] trait. It knows no product: namespaces, profiles and the interop model
//! come from the provider it is given (Cairn's are in `cairn-smis`).
//!
//! The client half of the codec ([`client`]) encodes requests and decodes responses for management
//! clients such as the `cairn` CLI.
//!
//! No sockets, no engine: the HTTP server in `cairn-smis` hands each request to
//! [`CimServer::handle`] as an [`HttpCimRequest`] and sends back the [`CimHttpOutcome`].
//!
//! ```text
//! HttpCimRequest ─► header checks ─► xml::decode ─► dispatch (repository + Provider) ─► xml::encode ─► CimHttpOutcome
//! ```
//!
//! A storage provider names its concrete classes per namespace and enumerates their instances; the
//! dispatcher does the rest (subclass matching, associations, filtering, paging, typing):
//!
//! ```
//! use std::sync::Arc;
//! use cairn_cim::*;
//!
//! struct Array;
//! impl Provider for Array {
//!     fn namespaces(&self) -> Vec<String> { vec!["root/cairn".into()] }
//!     fn class_names(&self, ns: &str) -> Vec<String> {
//!         if ns == "root/cairn" { vec!["Cairn_StoragePool".into()] } else { Vec::new() }
//!     }
//!     fn enumerate_instances(&self, _ns: &str, _class: &str) -> Result<Vec<Instance>, CimError> {
//!         // No path given: the dispatcher builds it from the class's key properties.
//!         Ok(vec![Instance::new("Cairn_StoragePool").with("InstanceID", Value::string("CAIRN:pool0"))])
//!     }
//!     fn invoke_method(&self, call: &MethodCall<'_>) -> Result<MethodResult, CimError> {
//!         Err(CimError::not_supported(call.method))
//!     }
//! }
//!
//! let server = CimServer::new(Arc::new(Array));
//! let body = br#"<?xml version="1.0"?><CIM CIMVERSION="2.0" DTDVERSION="2.0"><MESSAGE ID="1" PROTOCOLVERSION="1.0"><SIMPLEREQ><IMETHODCALL NAME="EnumerateInstanceNames"><LOCALNAMESPACEPATH><NAMESPACE NAME="root"/><NAMESPACE NAME="cairn"/></LOCALNAMESPACEPATH><IPARAMVALUE NAME="ClassName"><CLASSNAME NAME="CIM_StoragePool"/></IPARAMVALUE></IMETHODCALL></SIMPLEREQ></MESSAGE></CIM>"#;
//! let out = server.handle(&HttpCimRequest {
//!     cim_operation: Some("MethodCall"),
//!     cim_method: Some("EnumerateInstanceNames"),
//!     cim_object: Some("root/cairn"),
//!     cim_protocol_version: None,
//!     body,
//! });
//! let CimHttpOutcome::Response(xml) = out else { panic!("not a response") };
//! assert!(String::from_utf8(xml).unwrap().contains("CAIRN:pool0"));
//! ```
//!
//! Invariants kept across the crate: CIM names compare case-insensitively; no input (headers, body)
//! can make it panic; every bound lives in [`limits`].
#![forbid(unsafe_code)]

pub mod class;
pub mod client;
mod dispatch;
pub mod error;
pub mod instance;
pub mod limits;
pub mod path;
pub mod provider;
pub mod repository;
pub mod request;
mod server;
pub mod types;
pub mod xml;

pub use class::{Class, ClassProperty, Method, Parameter, Qualifier};
pub use dispatch::CimStream;
pub use error::{CimError, CimStatus, DecodeError, DecodeErrorKind};
pub use instance::{association, Instance, Property};
pub use path::{InstancePath, KeyBinding, KeyValue};
pub use provider::{
    MethodCall, MethodName, MethodResult, Page, ProfileRegistration, Provider, ORGANIZATION_SNIA,
};
pub use repository::ClassRepository;
pub use server::{CimHttpOutcome, CimServer, HttpCimRequest};
pub use types::{CimDateTime, CimType, Value};
