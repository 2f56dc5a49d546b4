//! Indications (SNIA Indications profile, DMTF DSP1054): the indication service, the filters,
//! listener destinations and subscriptions clients create in `interop`, the indications made from
//! the array's changes, and their delivery to listeners as CIM-XML `ExportIndication` requests.
//!
//! - [`store`]: the durable subscription state (`indications.json`) and its limits.
//! - [`predefined`]: the filters the array serves from its start.
//! - [`query`]: the WQL / DMTF:CQL subset filters are written in.
//! - [`provider`]: [`IndicationProvider`], the CIM side (CreateInstance, DeleteInstance,
//!   ModifyInstance, enumeration), around the array model.
//! - [`alerts`]: which alerts a change of state raises, and what they carry.
//! - [`produce`]: a thread turning the backend's change events and the job table's changes into
//!   lifecycle, modification and alert indications, matched against the filters.
//! - [`deliver`]: one bounded queue and one task per destination, retries, removal of failing
//!   subscriptions, HTTP and HTTPS.
//!
//! Invariants: a backend change event is only queued by the backend's thread (never processed
//! there), so no method call waits for indications; a destination's indications leave in the
//! order they were made, each with the next SequenceNumber of that destination; no listener,
//! slow or dead, holds up another one.

pub mod alerts;
pub mod deliver;
pub mod predefined;
pub mod produce;
pub mod provider;
pub mod query;
mod records;
pub mod store;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use cairn_cim::CimServer;
use rustls::pki_types::CertificateDer;

use crate::interop::{InteropProvider, ObjectManagerInfo};
use crate::limits::{
    INDICATION_REMOVAL_INTERVAL_DEFAULT, INDICATION_RETRY_ATTEMPTS_DEFAULT,
    INDICATION_RETRY_INTERVAL_DEFAULT,
};
use crate::provider::ArrayProvider;

pub use deliver::Deliveries;
pub use provider::IndicationProvider;
pub use store::Store;

/// SubscriptionRemovalAction: delete the failing subscriptions.
pub const REMOVAL_ACTION_REMOVE: u16 = 2;
/// SubscriptionRemovalAction: disable them (SubscriptionState 4).
pub const REMOVAL_ACTION_DISABLE: u16 = 3;
/// SubscriptionRemovalAction: keep them.
pub const REMOVAL_ACTION_IGNORE: u16 = 4;

/// How indications are delivered (the indication service's properties and the TLS trust).
#[derive(Debug, Clone)]
pub struct IndicationOptions {
    /// The subscriptions file (e.g. `<data dir>/indications.json`); `None` keeps them in memory.
    pub state_path: Option<PathBuf>,
    /// DeliveryRetryAttempts: further attempts after a failed delivery before it is dropped.
    pub retry_attempts: u16,
    /// DeliveryRetryInterval: the wait between two attempts.
    pub retry_interval: Duration,
    /// SubscriptionRemovalAction (2 remove, 3 disable, 4 ignore).
    pub removal_action: u16,
    /// SubscriptionRemovalTimeInterval: how long a destination fails without a break before the
    /// removal action applies to its subscriptions.
    pub removal_interval: Duration,
    /// Certificates an https listener may present (DER, compared exactly: listeners such as
    /// Windows' present self-signed certificates).
    pub trusted_certs: Vec<CertificateDer<'static>>,
    /// Destination URLs (exact, or prefixes ending in `*`) whose certificate is accepted unchecked.
    pub accept_any_cert: Vec<String>,
}

impl Default for IndicationOptions {
    fn default() -> IndicationOptions {
        IndicationOptions {
            state_path: None,
            retry_attempts: INDICATION_RETRY_ATTEMPTS_DEFAULT,
            retry_interval: INDICATION_RETRY_INTERVAL_DEFAULT,
            removal_action: REMOVAL_ACTION_REMOVE,
            removal_interval: INDICATION_REMOVAL_INTERVAL_DEFAULT,
            trusted_certs: Vec::new(),
            accept_any_cert: Vec::new(),
        }
    }
}

/// The running indication service of one array.
pub struct Indications {
    pub(crate) provider: Arc<IndicationProvider>,
    pub(crate) producer: produce::Producer,
}

impl std::fmt::Debug for Indications {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Indications").finish_non_exhaustive()
    }
}

impl Indications {
    /// Starts indications for `array`: loads the subscriptions (a damaged file is moved aside and
    /// logged), subscribes to the backend's change events and the job table, and spawns the
    /// delivery tasks on `runtime`.
    pub fn start(
        array: &Arc<ArrayProvider>,
        opts: IndicationOptions,
        runtime: tokio::runtime::Handle,
    ) -> Result<Indications, crate::Error> {
        let predefined =
            predefined::filters(&array.opts.system_name, array.opts.host_access.is_some());
        let (store, error) = Store::load(opts.state_path.clone(), predefined);
        if let Some(e) = error {
            tracing::warn!(
                "indication subscriptions file unusable, moved aside: {}",
                e.report()
            );
        }
        let store = Arc::new(store);
        let opts = Arc::new(opts);
        let deliveries = Arc::new(Deliveries::new(store.clone(), opts.clone(), runtime)?);
        let provider = Arc::new(IndicationProvider::new(
            array.clone(),
            store.clone(),
            deliveries.clone(),
            opts,
        ));
        let producer = produce::Producer::start(array.clone(), store, deliveries)?;
        Ok(Indications { provider, producer })
    }

    /// The complete CIM server: the array model with the indication classes, inside the
    /// interop model.
    pub fn cim_server(&self, array: &ArrayProvider) -> Arc<CimServer> {
        let info = ObjectManagerInfo::new(array.opts.system_name.clone(), &array.opts.version);
        let interop = InteropProvider::new(self.provider.clone(), info);
        Arc::new(CimServer::new(Arc::new(interop)))
    }

    /// Indications dropped so far: change events past the event queue, and indications past a
    /// destination's queue or its retries.
    pub fn dropped(&self) -> u64 {
        self.producer.dropped() + self.provider.deliveries.dropped()
    }

    /// Stops making indications (the delivery tasks end with the runtime).
    pub fn stop(self) {
        self.producer.stop();
    }
}
