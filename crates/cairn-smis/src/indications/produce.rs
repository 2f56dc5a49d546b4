//! The producer: one thread that turns the array's changes into indications.
//!
//! The backend's change events (volumes, snapshots, pools, copies, whichever door made the
//! change) and the job table's changes only queue a signal; the thread then reads the changed
//! objects through the array model, compares them with the last state it saw and makes
//! `CIM_InstCreation`, `CIM_InstModification` (SourceInstance and PreviousInstance) and
//! `CIM_InstDeletion` for volumes, pools, jobs and StorageSynchronized, for the host-access
//! classes (hardware IDs, masking groups, views' SCSIProtocolControllers and their
//! ProtocolControllerForUnits) after each host-access method, and `CIM_AlertIndication`
//! (see [`crate::indications::alerts`]) when a pool fails or comes back, when its remaining space
//! crosses its LowSpaceWarningThreshold (either way) or runs out, and when a job ends in
//! Exception; a pool condition already true at start-up raises its alert once then. The pools
//! are read after their change events and every [`INDICATION_POOL_POLL_INTERVAL`] besides (host
//! writes and failures come with no event). Each indication is matched against every enabled
//! subscription's filter and queued for its destination.
//!
//! Invariants: the backend's thread never waits for the producer (a full signal queue drops the
//! event and counts it); a modification is sent only when a watched property changed; the pools
//! are read at most once per [`INDICATION_POOL_SPACE_INTERVAL`], so a pool's modifications are at
//! most one per interval; the last state seen is kept per object, so a deletion carries the
//! object as it was and an alert is sent once per crossing, never again for the same state (for
//! volumes and synchronizations, one per volume, as the backend's records: see
//! [`super::records`]).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use cairn_array::{ChangeEvent, Volume, VolumeId};
use cairn_cim::path::namespace_eq;
use cairn_cim::{CimDateTime, ClassRepository, Instance, Provider, Value};

use super::alerts;
use super::records::{self, SyncKey, Synced};
use parking_lot::Mutex;

use super::deliver::Deliveries;
use super::query::Query;
use super::store::{Store, SUBSCRIPTION_ENABLED};
use crate::error::{Error, ErrorKind};
use crate::interop::CAIRN_NAMESPACE;
use crate::limits::{
    INDICATION_EVENTS_QUEUED_MAX, INDICATION_POOL_POLL_INTERVAL, INDICATION_POOL_SPACE_INTERVAL,
};
use crate::model::{self, JOB_CLASS, POOL_CLASS};
use crate::provider::ArrayProvider;

/// How often the producer looks at pending pool changes and the job table without a signal.
const TICK: Duration = Duration::from_millis(250);

const VOLUME_WATCHED: [&str; 5] = [
    "ElementName",
    "NumberOfBlocks",
    "ConsumableBlocks",
    "BlockSize",
    "OperationalStatus",
];
const POOL_WATCHED: [&str; 4] = [
    "RemainingManagedSpace",
    "TotalManagedSpace",
    "OperationalStatus",
    "LowSpaceWarningThreshold",
];
const JOB_WATCHED: [&str; 3] = ["JobState", "PercentComplete", "OperationalStatus"];
const SYNC_WATCHED: [&str; 3] = ["CopyState", "ProgressStatus", "SyncState"];

/// The host-access classes with lifecycle indications (Masking and Mapping, Group Masking and
/// Mapping), in the order they are compared, and what their modifications watch.
const MASKING: [(&str, &[&str]); 6] = [
    ("Cairn_StorageHardwareID", &["StorageID"]),
    ("Cairn_InitiatorMaskingGroup", &["ElementName"]),
    ("Cairn_TargetMaskingGroup", &["ElementName"]),
    ("Cairn_DeviceMaskingGroup", &["ElementName"]),
    (
        "Cairn_SCSIProtocolController",
        &["ElementName", "OperationalStatus"],
    ),
    (
        "Cairn_ProtocolControllerForUnit",
        &["DeviceNumber", "DeviceAccess"],
    ),
];

enum Signal {
    Array(ChangeEvent),
    Jobs,
    /// A host-access method ran (see `Worker::host_access_changed`).
    HostAccess,
    Stop,
}

/// The running producer thread.
pub(crate) struct Producer {
    tx: SyncSender<Signal>,
    dropped: Arc<AtomicU64>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Producer {
    pub(crate) fn start(
        array: Arc<ArrayProvider>,
        store: Arc<Store>,
        deliveries: Arc<Deliveries>,
    ) -> Result<Producer, Error> {
        let (tx, rx) = mpsc::sync_channel(INDICATION_EVENTS_QUEUED_MAX);
        let dropped = Arc::new(AtomicU64::new(0));
        let (events, count) = (tx.clone(), dropped.clone());
        array
            .array
            .subscribe(Arc::new(move |e: &ChangeEvent| {
                if events.try_send(Signal::Array(e.clone())).is_err() {
                    count.fetch_add(1, Ordering::Relaxed);
                }
            }))
            .map_err(|e| Error::with_source(ErrorKind::Config, "change events", e))?;
        let jobs = tx.clone();
        array.jobs.watch(Arc::new(move || {
            // A full queue already holds work; the producer reads the whole job table.
            let _ = jobs.try_send(Signal::Jobs);
        }));
        let (access, access_changed) = (tx.clone(), Arc::new(AtomicBool::new(false)));
        let changed_flag = access_changed.clone();
        array.watch_host_access(Arc::new(move || {
            // The flag is never lost; the signal only wakes the producer (a full queue will).
            changed_flag.store(true, Ordering::Release);
            let _ = access.try_send(Signal::HostAccess);
        }));
        let mut worker = Worker {
            array,
            store,
            deliveries,
            repo: ClassRepository::shared(),
            seen: HashMap::new(),
            volumes: HashMap::new(),
            syncs: HashMap::new(),
            queries: HashMap::new(),
            pools_changed: false,
            host_access_changed: access_changed,
            pools_read: Instant::now(),
            next_id: 0,
        };
        let thread = std::thread::Builder::new()
            .name("cairn-indications".into())
            .spawn(move || worker.run(rx))
            .map_err(|e| Error::with_source(ErrorKind::Io, "indication thread", e))?;
        Ok(Producer {
            tx,
            dropped,
            thread: Mutex::new(Some(thread)),
        })
    }

    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    pub(crate) fn stop(&self) {
        let _ = self.tx.send(Signal::Stop);
        if let Some(t) = self.thread.lock().take() {
            let _ = t.join();
        }
    }
}

struct Worker {
    array: Arc<ArrayProvider>,
    store: Arc<Store>,
    deliveries: Arc<Deliveries>,
    repo: Arc<ClassRepository>,
    /// The last state seen of each pool (`P:`), job (`J:`) and host-access instance
    /// (`M:<class>:`).
    seen: HashMap<String, Instance>,
    /// The last state seen of each volume in the model.
    volumes: HashMap<VolumeId, Volume>,
    /// The last state seen of each synchronization.
    syncs: HashMap<SyncKey, Synced>,
    /// Parsed filter queries by filter name, with the text they were parsed from.
    queries: HashMap<String, (String, Option<Query>)>,
    /// A pool change event came since the pools were last read.
    pools_changed: bool,
    /// When the pools were last read.
    pools_read: Instant,
    /// Set after a host-access method ran: the masking classes must be compared again.
    host_access_changed: Arc<AtomicBool>,
    next_id: u64,
}

fn key(prefix: &str, i: &Instance) -> String {
    let path = i.path.as_ref().map(|p| p.to_string()).unwrap_or_default();
    format!("{prefix}{path}")
}

fn changed(a: &Instance, b: &Instance, watched: &[&str]) -> bool {
    watched.iter().any(|p| a.get(p) != b.get(p))
}

impl Worker {
    fn run(&mut self, rx: Receiver<Signal>) {
        self.scan(POOL_CLASS, "P:", &POOL_WATCHED, false);
        self.startup_alerts();
        let snap = self.array.records();
        self.volumes = snap.volumes().map(|(_, v)| (v.id, v.clone())).collect();
        self.syncs = records::syncs(&snap).into_iter().collect();
        self.scan(JOB_CLASS, "J:", &JOB_WATCHED, false);
        self.scan_host_access(false);
        let mut last_jobs = Instant::now();
        loop {
            match rx.recv_timeout(TICK) {
                Ok(Signal::Stop) | Err(RecvTimeoutError::Disconnected) => return,
                Ok(Signal::Array(e)) => self.on_event(e),
                Ok(Signal::Jobs) => {
                    self.scan(JOB_CLASS, "J:", &JOB_WATCHED, true);
                    last_jobs = Instant::now();
                }
                Ok(Signal::HostAccess) | Err(RecvTimeoutError::Timeout) => {}
            }
            if self.host_access_changed.swap(false, Ordering::AcqRel) {
                self.scan_host_access(true);
            }
            self.flush_pools();
            if last_jobs.elapsed() >= TICK {
                // Finished jobs also leave when TimeBeforeRemoval passes, with no signal.
                self.scan(JOB_CLASS, "J:", &JOB_WATCHED, true);
                last_jobs = Instant::now();
            }
        }
    }

    fn on_event(&mut self, e: ChangeEvent) {
        match e {
            ChangeEvent::VolumeCreated(v) | ChangeEvent::VolumeChanged(v) => {
                // From the event's own volume, not a later read: two changes in quick succession
                // give two indications, each with the state its change made.
                let replica = v.replica.is_some();
                self.update_volume(v.id, model::in_model(&v).then_some(v));
                if replica || !self.syncs.is_empty() {
                    self.scan_syncs();
                }
            }
            ChangeEvent::VolumeDeleted(id) => {
                self.update_volume(id, None);
                if !self.syncs.is_empty() {
                    self.scan_syncs();
                }
            }
            ChangeEvent::PoolChanged(_) => self.pools_changed = true,
            ChangeEvent::CopyProgress { .. } => self.scan(JOB_CLASS, "J:", &JOB_WATCHED, true),
        }
    }

    /// Compares the host-access classes (views, their units, groups, hardware IDs).
    fn scan_host_access(&mut self, emit: bool) {
        if self.array.opts.host_access.is_none() {
            return;
        }
        for (class, watched) in MASKING {
            self.scan(class, &format!("M:{class}:"), watched, emit);
        }
    }

    /// Compares volume `id` as it is `now` (`None`: gone from the model) with its last state.
    fn update_volume(&mut self, id: VolumeId, now: Option<Volume>) {
        let before = match &now {
            Some(v) => self.volumes.insert(id, v.clone()),
            None => self.volumes.remove(&id),
        };
        let ident = &self.array.identity;
        let before = before.and_then(|v| records::volume_instance(ident, &v));
        let now = now.and_then(|v| records::volume_instance(ident, &v));
        self.report(before, now, &VOLUME_WATCHED);
    }

    /// Compares every synchronization with its last state; instances are made only for those
    /// that changed.
    fn scan_syncs(&mut self) {
        let now = records::syncs(&self.array.records());
        let mut gone = std::mem::take(&mut self.syncs);
        let ident = &self.array.identity;
        let mut changes = Vec::new();
        for (k, synced) in now {
            match gone.remove(&k) {
                None => changes.push((None, Some(synced.instance(ident)))),
                Some(b) if b != synced => {
                    changes.push((Some(b.instance(ident)), Some(synced.instance(ident))));
                }
                Some(_) => {}
            }
            self.syncs.insert(k, synced);
        }
        changes.extend(gone.values().map(|b| (Some(b.instance(ident)), None)));
        for (before, now) in changes {
            self.report(before, now, &SYNC_WATCHED);
        }
    }

    /// Compares every instance of `class` with the last state seen; `emit` false only records.
    fn scan(&mut self, class: &str, prefix: &str, watched: &[&str], emit: bool) {
        let now = match self.array.enumerate_instances(CAIRN_NAMESPACE, class) {
            Ok(list) => list,
            Err(e) => {
                tracing::debug!("{class} unreadable for indications: {e}");
                return;
            }
        };
        let mut gone: HashSet<String> = self
            .seen
            .keys()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect();
        for i in now {
            let mut i = i;
            if let Some(p) = i.path.take() {
                i.path = Some(p.in_namespace(CAIRN_NAMESPACE));
            }
            let k = key(prefix, &i);
            gone.remove(&k);
            self.update(&k, Some(i), watched, emit);
        }
        for k in gone {
            self.update(&k, None, watched, emit);
        }
    }

    /// Reads the pools after a change event, at most once per [`INDICATION_POOL_SPACE_INTERVAL`],
    /// and every [`INDICATION_POOL_POLL_INTERVAL`] without one.
    fn flush_pools(&mut self) {
        let since = self.pools_read.elapsed();
        let due = (self.pools_changed && since >= INDICATION_POOL_SPACE_INTERVAL)
            || since >= INDICATION_POOL_POLL_INTERVAL;
        if !due {
            return;
        }
        self.pools_changed = false;
        self.scan(POOL_CLASS, "P:", &POOL_WATCHED, true);
        self.pools_read = Instant::now();
    }

    fn update(&mut self, k: &str, now: Option<Instance>, watched: &[&str], emit: bool) {
        let before = match &now {
            Some(i) => self.seen.insert(k.to_owned(), i.clone()),
            None => self.seen.remove(k),
        };
        if emit {
            self.report(before, now, watched);
        }
    }

    /// The indications (and alerts) an object's change from `before` to `now` makes.
    fn report(&mut self, before: Option<Instance>, now: Option<Instance>, watched: &[&str]) {
        match (before, now) {
            (None, Some(i)) => {
                self.alerts(None, &i);
                self.emit("CIM_InstCreation", i, None);
            }
            (Some(b), Some(i)) if changed(&b, &i, watched) => {
                self.alerts(Some(&b), &i);
                self.emit("CIM_InstModification", i, Some(b));
            }
            (Some(b), None) => self.emit("CIM_InstDeletion", b, None),
            _ => {}
        }
    }

    /// Raises the alerts of the pool conditions already true at start-up (a pool failed, out of
    /// reach, low on or out of space), once each: the pools are judged as first seen.
    fn startup_alerts(&mut self) {
        let pools: Vec<Instance> = self
            .seen
            .iter()
            .filter(|(k, _)| k.starts_with("P:"))
            .map(|(_, i)| i.clone())
            .collect();
        for pool in pools {
            self.alerts(None, &pool);
        }
    }

    /// The alerts a new state `now` of an object (its previous state `before`) raises.
    fn alerts(&mut self, before: Option<&Instance>, now: &Instance) {
        for alert in alerts::raised(before, now) {
            let ind = alert.indication(now, &self.array.opts.system_name);
            self.dispatch_new(ind);
        }
    }

    fn emit(&mut self, class: &str, source: Instance, previous: Option<Instance>) {
        let now = CimDateTime::from_unix_seconds(crate::jobs::now_unix_secs());
        let model_path = source
            .path
            .as_ref()
            .map(|p| p.to_string())
            .unwrap_or_default();
        let mut ind = Instance::new(class)
            .with("IndicationTime", Value::DateTime(now))
            .with("SourceInstanceModelPath", Value::string(model_path))
            .with("PerceivedSeverity", Value::Uint16(2))
            .with("SourceInstance", Value::Instance(Box::new(source)));
        if let Some(p) = previous {
            ind.set("PreviousInstance", Some(Value::Instance(Box::new(p))));
        }
        self.dispatch_new(ind);
    }

    /// Gives `ind` the next IndicationIdentifier and dispatches it.
    fn dispatch_new(&mut self, mut ind: Instance) {
        self.next_id += 1;
        let id = Value::string(format!("CAIRN:{}", self.next_id));
        ind.set("IndicationIdentifier", Some(id));
        self.dispatch(ind);
    }

    /// Queues `ind` for every enabled subscription whose filter it passes.
    fn dispatch(&mut self, ind: Instance) {
        let st = self.store.state();
        self.queries
            .retain(|name, _| st.filters.iter().any(|f| f.keys.name == *name));
        for sub in st
            .subscriptions
            .iter()
            .filter(|s| s.state == SUBSCRIPTION_ENABLED)
        {
            let Some(f) = st.filters.iter().find(|f| f.keys.name == sub.filter) else {
                continue;
            };
            let watches_us = f.source_namespaces.is_empty()
                || f.source_namespaces
                    .iter()
                    .any(|n| namespace_eq(n, CAIRN_NAMESPACE));
            if !watches_us {
                continue;
            }
            let repo = &self.repo;
            let entry = self
                .queries
                .entry(f.keys.name.clone())
                .or_insert_with(|| (String::new(), None));
            if entry.0 != f.query {
                *entry = (
                    f.query.clone(),
                    Query::parse(&f.query, &f.query_language, repo).ok(),
                );
            }
            if entry.1.as_ref().is_some_and(|q| q.matches(&ind, repo)) {
                let mut one = ind.clone();
                one.set("IndicationFilterName", Some(Value::string(&f.keys.name)));
                self.deliveries.send(&sub.handler, one);
            }
        }
    }
}
