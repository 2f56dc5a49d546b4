//! cairn-cim: Cairn's pure CIM layer — the CIM object model, the CIM-XML (DSP0201) request decoder
//! and response encoder, the embedded class repository (DMTF CIM Schema 2.49 subset plus `Cairn_*`
//! classes), operation dispatch (DSP0200 intrinsic operations, pull operations, extrinsic methods)
//! over the [`Provider`] trait, and the interop namespace model ([`InteropProvider`]).
//!
//! No sockets, no engine: the HTTP server in `cairn-smis` hands each request to
//! [`CimServer::handle`] as an [`HttpCimRequest`] and sends back the [`CimHttpOutcome`].
//!
//! ```text
//! HttpCimRequest ─► header checks ─► xml::decode ─► dispatch (repository + Provider) ─► xml::encode ─► CimHttpOutcome
//! ```
//!
//! Invariants kept across the crate: CIM names compare case-insensitively; no input (headers, body)
//! can make it panic; every bound lives in [`limits`].
#![forbid(unsafe_code)]

pub mod class;
mod dispatch;
pub mod error;
pub mod instance;
pub mod interop;
pub mod limits;
pub mod path;
pub mod provider;
pub mod repository;
pub mod request;
mod server;
pub mod types;
pub mod xml;

pub use class::{Class, ClassProperty, Method, Parameter, Qualifier};
pub use error::{CimError, CimStatus, DecodeError, DecodeErrorKind};
pub use instance::{Instance, Property};
pub use interop::{InteropProvider, ObjectManagerInfo};
pub use path::{InstancePath, KeyBinding, KeyValue};
pub use provider::{MethodCall, MethodResult, Provider};
pub use repository::ClassRepository;
pub use server::{CimHttpOutcome, CimServer, HttpCimRequest};
pub use types::{CimDateTime, CimType, Value};
