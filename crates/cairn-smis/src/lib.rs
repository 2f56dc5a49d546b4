//! cairn-smis: the SMI-S front end of Cairn.
//!
//! This crate serves CIM-XML (DMTF DSP0200/DSP0201) over HTTP and HTTPS. The HTTP side lives in
//! [`http`]: listeners (plain and TLS), routing of `POST`/`M-POST` to the CIM server from
//! `cairn-cim`, Basic authentication on every request, body limits, keep-alive and graceful
//! shutdown. Credentials ([`http::Credentials`]) are resolved from the configuration, the
//! environment and the data directory; HTTPS uses the rustls configuration the daemon hands in.
//!
//! Invariants kept by the crate as a whole: no unsafe code; every buffer and queue is bounded by a
//! constant in [`limits`]; input from the network or from disk never panics, it is answered with an
//! HTTP status or returned as an [`Error`]; passwords are never logged.
#![forbid(unsafe_code)]

pub mod error;
pub mod http;
pub mod limits;
pub mod trust;

pub use error::{Error, ErrorKind};
pub use http::{start, CredentialSource, Credentials, SmisServerConfig, SmisServerHandle};

// The SMI-S array model over an array backend (`cairn_array`): `ArrayProvider` (Array, Block Services, Replication
// Services, Copy Services, Thin Provisioning and Job Control profiles), its methods, jobs and cross-pool copies; with host access
// wired (`ArrayOptions::host_access`), Group Masking and Mapping and iSCSI Target Ports.
pub mod copy;
pub mod index;
pub mod indications;
pub mod interop;
pub mod jobs;
mod masking;
mod methods;
pub mod model;
pub mod pool_settings;
pub mod profiles;
pub mod provider;
pub mod retcode;

pub use indications::{IndicationOptions, Indications};
pub use interop::{InteropProvider, ObjectManagerInfo};
pub use provider::{ArrayOptions, ArrayProvider};
