//! The production [`CimHandler`]: `cairn_cim::CimServer`, and the server entry point taking it.
//!
//! Invariant: the mapping between the HTTP layer's [`CimCall`]/[`CimReply`] and cairn-cim's
//! `HttpCimRequest`/`CimHttpOutcome` is one to one; nothing is added or dropped.

use std::sync::Arc;

use cairn_cim::{CimHttpOutcome, CimServer, HttpCimRequest};

use crate::error::Result;
use crate::http::{start_with, CimCall, CimHandler, CimReply, SmisServerConfig, SmisServerHandle};

// A body the HTTP layer accepts must also be one the CIM decoder accepts.
const _: () =
    assert!(crate::limits::HTTP_BODY_BYTES_MAX <= cairn_cim::limits::REQUEST_BODY_BYTES_MAX);

impl CimHandler for CimServer {
    fn handle(&self, call: &CimCall<'_>) -> CimReply {
        let h = call.headers;
        let request = HttpCimRequest {
            cim_operation: h.operation.as_deref(),
            cim_method: h.method.as_deref(),
            cim_object: h.object.as_deref(),
            cim_protocol_version: h.protocol_version.as_deref(),
            body: call.body,
        };
        match CimServer::handle(self, &request) {
            CimHttpOutcome::Response(body) => CimReply::Response(body),
            CimHttpOutcome::BadRequest { cim_error } => CimReply::BadRequest { cim_error },
            CimHttpOutcome::NotImplemented { cim_error } => CimReply::NotImplemented { cim_error },
        }
    }
}

/// Binds the configured listeners and serves `cim` until [`SmisServerHandle::shutdown`].
/// Must run inside a tokio runtime.
pub async fn start(cfg: SmisServerConfig, cim: Arc<CimServer>) -> Result<SmisServerHandle> {
    start_with(cfg, cim).await
}
