//! The production [`CimHandler`]: `cairn_cim::CimServer`, and the server entry point taking it.
//!
//! Invariant: the HTTP layer and the CIM server speak the same request and outcome types
//! (`HttpCimRequest`, `CimHttpOutcome`), so nothing is added or dropped between them.

use std::sync::Arc;

use cairn_cim::{CimHttpOutcome, CimServer, HttpCimRequest};

use crate::error::Result;
use crate::http::{start_with, CimHandler, SmisServerConfig, SmisServerHandle};

// A body the HTTP layer accepts must also be one the CIM decoder accepts.
const _: () =
    assert!(crate::limits::HTTP_BODY_BYTES_MAX <= cairn_cim::limits::REQUEST_BODY_BYTES_MAX);

impl CimHandler for CimServer {
    fn handle(&self, request: &HttpCimRequest<'_>) -> CimHttpOutcome {
        CimServer::handle(self, request)
    }
}

/// Binds the configured listeners and serves `cim` until [`SmisServerHandle::shutdown`].
/// Must run inside a tokio runtime.
pub async fn start(cfg: SmisServerConfig, cim: Arc<CimServer>) -> Result<SmisServerHandle> {
    start_with(cfg, cim).await
}
