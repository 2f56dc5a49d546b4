//! The producer: one thread that turns the array's changes into indications.
//!
//! The backend's change events (volumes, snapshots, pools, copies, whichever door made the
//! change) and the job table's changes only queue a signal; the thread then reads the changed
//! objects through the array model, compares them with the last state it saw and makes
//! `CIM_InstCreation`, `CIM_InstModification` (SourceInstance and PreviousInstance) and
//! `CIM_InstDeletion` for volumes, pools, jobs and StorageSynchronized, and `CIM_AlertIndication`
//! when a pool's free space falls below the threshold or a job ends in Exception. Each
//! indication is matched against every enabled subscription's filter and queued for its
//! destination.
//!
//! Invariants: the backend's thread never waits for the producer (a full signal queue drops the
//! event and counts it); a modification is sent only when a watched property changed; a pool's
//! modifications are at most one per [`INDICATION_POOL_SPACE_INTERVAL`]; the last state seen is
//! kept per object, so a deletion carries the object as it was.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use cairn_array::{ChangeEvent, VolumeId};
use cairn_cim::path::namespace_eq;
use cairn_cim::{CimDateTime, ClassRepository, Instance, Provider, Value};
use parking_lot::Mutex;

use super::deliver::Deliveries;
use super::query::Query;
use super::store::{Store, SUBSCRIPTION_ENABLED};
use crate::error::{Error, ErrorKind};
use crate::interop::CAIRN_NAMESPACE;
use crate::limits::{INDICATION_EVENTS_QUEUED_MAX, INDICATION_POOL_SPACE_INTERVAL};
use crate::model::{self, JOB_CLASS, POOL_CLASS, SYNC_CLASS, VOLUME_CLASS};
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
const POOL_WATCHED: [&str; 3] = [
    "RemainingManagedSpace",
    "TotalManagedSpace",
    "OperationalStatus",
];
const JOB_WATCHED: [&str; 3] = ["JobState", "PercentComplete", "OperationalStatus"];
const SYNC_WATCHED: [&str; 3] = ["CopyState", "ProgressStatus", "SyncState"];

enum Signal {
    Array(ChangeEvent),
    Jobs,
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
        let mut worker = Worker {
            array,
            store,
            deliveries,
            repo: ClassRepository::embedded(),
            seen: HashMap::new(),
            queries: HashMap::new(),
            pools_pending: HashSet::new(),
            pools_sent: HashMap::new(),
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
    repo: ClassRepository,
    /// The last state seen of each volume (`V:`), pool (`P:`), job (`J:`) and synchronization (`S:`).
    seen: HashMap<String, Instance>,
    /// Parsed filter queries by filter name, with the text they were parsed from.
    queries: HashMap<String, (String, Option<Query>)>,
    pools_pending: HashSet<String>,
    pools_sent: HashMap<String, Instant>,
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
        self.scan(VOLUME_CLASS, "V:", &VOLUME_WATCHED, false);
        self.scan(JOB_CLASS, "J:", &JOB_WATCHED, false);
        self.scan(SYNC_CLASS, "S:", &SYNC_WATCHED, false);
        let mut last_jobs = Instant::now();
        loop {
            match rx.recv_timeout(TICK) {
                Ok(Signal::Stop) | Err(RecvTimeoutError::Disconnected) => return,
                Ok(Signal::Array(e)) => self.on_event(e),
                Ok(Signal::Jobs) => {
                    self.scan(JOB_CLASS, "J:", &JOB_WATCHED, true);
                    last_jobs = Instant::now();
                }
                Err(RecvTimeoutError::Timeout) => {}
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
                let now = model::volume_instance(&self.array.identity, &v);
                self.update_volume(v.id, now);
                if v.replica.is_some() || self.has_syncs() {
                    self.scan(SYNC_CLASS, "S:", &SYNC_WATCHED, true);
                }
            }
            ChangeEvent::VolumeDeleted(id) => {
                self.update_volume(id, None);
                if self.has_syncs() {
                    self.scan(SYNC_CLASS, "S:", &SYNC_WATCHED, true);
                }
            }
            ChangeEvent::PoolChanged(p) => {
                self.pools_pending.insert(p.name);
            }
            ChangeEvent::CopyProgress { .. } => self.scan(JOB_CLASS, "J:", &JOB_WATCHED, true),
        }
    }

    fn has_syncs(&self) -> bool {
        self.seen.keys().any(|k| k.starts_with("S:"))
    }

    fn update_volume(&mut self, id: VolumeId, now: Option<Instance>) {
        let path = self.array.identity.volume_path(id);
        let k = format!("V:{}", path.in_namespace(CAIRN_NAMESPACE));
        self.update(&k, now, &VOLUME_WATCHED, true);
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

    /// Pool changes, at most one per pool per interval.
    fn flush_pools(&mut self) {
        if self.pools_pending.is_empty() {
            return;
        }
        let due: Vec<String> = self
            .pools_pending
            .iter()
            .filter(|p| {
                self.pools_sent
                    .get(*p)
                    .is_none_or(|t| t.elapsed() >= INDICATION_POOL_SPACE_INTERVAL)
            })
            .cloned()
            .collect();
        if due.is_empty() {
            return;
        }
        for p in &due {
            self.pools_pending.remove(p);
            self.pools_sent.insert(p.clone(), Instant::now());
        }
        self.scan(POOL_CLASS, "P:", &POOL_WATCHED, true);
    }

    fn update(&mut self, k: &str, now: Option<Instance>, watched: &[&str], emit: bool) {
        let before = match &now {
            Some(i) => self.seen.insert(k.to_owned(), i.clone()),
            None => self.seen.remove(k),
        };
        if !emit {
            return;
        }
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

    /// Alerts for a new state `now` of an object (its previous state `before`).
    fn alerts(&mut self, before: Option<&Instance>, now: &Instance) {
        let class = now.class_name.as_str();
        if class.eq_ignore_ascii_case(JOB_CLASS) {
            let state = |i: &Instance| i.get("JobState").and_then(Value::as_u64);
            if state(now) == Some(10) && before.and_then(state) != Some(10) {
                let msg = now
                    .get("ErrorDescription")
                    .and_then(Value::as_str)
                    .unwrap_or("The job ended in Exception")
                    .to_owned();
                self.alert(now, 4, 5, msg);
            }
        } else if class.eq_ignore_ascii_case(POOL_CLASS) {
            let limit = u64::from(self.array_free_alert_percent());
            let low = |i: &Instance| {
                let total = i
                    .get("TotalManagedSpace")
                    .and_then(Value::as_u64)
                    .unwrap_or(0);
                let free = i
                    .get("RemainingManagedSpace")
                    .and_then(Value::as_u64)
                    .unwrap_or(0);
                total > 0 && u128::from(free) * 100 < u128::from(total) * u128::from(limit)
            };
            if low(now) && before.is_some_and(|b| !low(b)) {
                let msg = format!("Pool free space below {limit}% of its capacity");
                self.alert(now, 3, 3, msg);
            }
        }
    }

    fn array_free_alert_percent(&self) -> u8 {
        self.deliveries.opts().pool_free_alert_percent
    }

    fn alert(&mut self, element: &Instance, alert_type: u16, severity: u16, message: String) {
        let now = Value::DateTime(CimDateTime::from_unix_seconds(crate::jobs::now_unix_secs()));
        let element_path = element
            .path
            .as_ref()
            .map(|p| p.to_string())
            .unwrap_or_default();
        self.next_id += 1;
        let ind = Instance::new("CIM_AlertIndication")
            .with(
                "IndicationIdentifier",
                Value::string(format!("CAIRN:{}", self.next_id)),
            )
            .with("IndicationTime", now.clone())
            .with("EventTime", now)
            .with("AlertingManagedElement", Value::string(element_path))
            .with("AlertingElementFormat", Value::Uint16(2))
            .with("AlertType", Value::Uint16(alert_type))
            .with("PerceivedSeverity", Value::Uint16(severity))
            .with("ProbableCause", Value::Uint16(1))
            .with("Description", Value::string(&message))
            .with("Message", Value::string(message))
            .with(
                "SystemCreationClassName",
                Value::string(crate::model::SYSTEM_CLASS),
            )
            .with("SystemName", Value::string(&self.array.opts.system_name))
            .with("ProviderName", Value::string("Cairn"))
            .with("OwningEntity", Value::string("Cairn"));
        self.dispatch(ind);
    }

    fn emit(&mut self, class: &str, source: Instance, previous: Option<Instance>) {
        let now = CimDateTime::from_unix_seconds(crate::jobs::now_unix_secs());
        let model_path = source
            .path
            .as_ref()
            .map(|p| p.to_string())
            .unwrap_or_default();
        self.next_id += 1;
        let mut ind = Instance::new(class)
            .with(
                "IndicationIdentifier",
                Value::string(format!("CAIRN:{}", self.next_id)),
            )
            .with("IndicationTime", Value::DateTime(now))
            .with("SourceInstanceModelPath", Value::string(model_path))
            .with("PerceivedSeverity", Value::Uint16(2))
            .with("SourceInstance", Value::Instance(Box::new(source)));
        if let Some(p) = previous {
            ind.set("PreviousInstance", Some(Value::Instance(Box::new(p))));
        }
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
