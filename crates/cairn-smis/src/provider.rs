//! [`ArrayProvider`]: the SMI-S array (Array, Block Services, Replication Services, Job Control
//! profiles) over an array backend (`cairn_array::ArrayBackend`), as a `cairn_cim::Provider`. Wrap it in
//! `cairn_cim::InteropProvider` to serve it (or use [`ArrayProvider::cim_server`]); it declares
//! its registered profiles through `Provider::registered_profiles` (Array with the system as its
//! central element, the component profiles referenced from it in the SNIA direction).
//!
//! Owns: the option set, the job table, the serialisation of management operations (one at a time;
//! the backend makes a replica with its record in one operation, so no request sees it half
//! done), and the routing of
//! intrinsic operations to [`crate::model`] and of extrinsic methods to [`crate::methods`].
//!
//! Invariant: the provider keeps no model state of its own beyond jobs and the volume index
//! ([`crate::index`]), which the backend's change events keep exact and which is brought to the
//! backend's state before each request reads it; every answer is computed from the array state at
//! the time of the request, reading only what the answer needs (a singleton reads nothing, a pool
//! the pools, one volume that volume and its pool, the associations of one volume that volume and
//! its replica relatives — see [`model::needs`] and [`Scope`]), so the cost of such a request does
//! not grow with the number of volumes. An instance the request's scope does not hold does not
//! exist (GetInstance answers CIM_ERR_NOT_FOUND without enumerating).

use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use crate::interop::{InteropProvider, ObjectManagerInfo, CAIRN_NAMESPACE, INTEROP_NAMESPACE};
use cairn_array::{ArrayBackend, IntoBackend, VolumeId};
use cairn_cim::path::namespace_eq;
use cairn_cim::{
    CimError, CimServer, Instance, InstancePath, MethodCall, MethodName, MethodResult, Page,
    ProfileRegistration, Provider, Value,
};
use parking_lot::Mutex;

use crate::error::ErrorKind;
use crate::index::{Scope, VolumeIndex};
use crate::jobs::Jobs;
use crate::limits::{JOB_TIME_BEFORE_REMOVAL_DEFAULT, LOW_SPACE_WARNING_PERCENT_DEFAULT};
use crate::model::{self, Identity, Needs, Snapshot};
use crate::pool_settings::{PoolSettings, LOW_SPACE_WARNING_PERCENT_MAX};
use crate::profiles::{self, SystemLocation};

/// What a daemon tells its array model.
#[derive(Debug, Clone)]
pub struct ArrayOptions {
    /// Name key of the Cairn_StorageSystem (unique per daemon).
    pub system_name: String,
    /// Software version shown in the model.
    pub version: String,
    /// The jobs state file (e.g. `<data dir>/jobs.json`); `None` keeps jobs in memory only.
    pub jobs_path: Option<PathBuf>,
    /// How long finished jobs stay enumerable.
    pub time_before_removal: Duration,
    /// Bandwidth limit of cross-pool copies (bytes per second); `None` = as fast as the pools go.
    pub copy_rate_bytes_per_sec: Option<u64>,
    /// The block protocol's access model: with it, Group Masking and Mapping and iSCSI Target
    /// Ports are served (`crate::masking`) and a mapped volume is In Use.
    pub host_access: Option<Arc<dyn cairn_export::access::HostAccess>>,
    /// The system's CIM_Location.
    pub location: SystemLocation,
    /// The pools' settings file (e.g. `<data dir>/pool-settings.json`, see
    /// [`crate::pool_settings`]); `None` keeps them in memory only.
    pub pool_settings_path: Option<PathBuf>,
    /// LowSpaceWarningThreshold of a pool no client has set it on (percent, 0 = no alert).
    pub low_space_warning_percent: u16,
}

impl ArrayOptions {
    /// Defaults for array `system_name`: this crate's version, jobs in memory, TimeBeforeRemoval
    /// [`JOB_TIME_BEFORE_REMOVAL_DEFAULT`], no copy bandwidth limit.
    pub fn new(system_name: impl Into<String>) -> ArrayOptions {
        let system_name = system_name.into();
        ArrayOptions {
            location: SystemLocation::unset(&system_name),
            system_name,
            version: env!("CARGO_PKG_VERSION").to_owned(),
            jobs_path: None,
            time_before_removal: JOB_TIME_BEFORE_REMOVAL_DEFAULT,
            copy_rate_bytes_per_sec: None,
            host_access: None,
            pool_settings_path: None,
            low_space_warning_percent: LOW_SPACE_WARNING_PERCENT_DEFAULT,
        }
    }
}

/// The SMI-S array model over an array backend.
pub struct ArrayProvider {
    pub(crate) array: Arc<dyn ArrayBackend>,
    pub(crate) opts: ArrayOptions,
    pub(crate) identity: Identity,
    pub(crate) jobs: Arc<Jobs>,
    /// Serialises management methods.
    pub(crate) ops: Mutex<()>,
    /// The volumes, kept by the backend's change events.
    index: Arc<VolumeIndex>,
    /// Counter behind generated names.
    pub(crate) names: AtomicU64,
    /// The pools' LowSpaceWarningThreshold.
    pub(crate) pool_settings: PoolSettings,
    /// Told after every host-access method (see [`ArrayProvider::watch_host_access`]).
    host_access_watcher: Mutex<Option<crate::jobs::Watcher>>,
}

impl std::fmt::Debug for ArrayProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArrayProvider")
            .field("system_name", &self.opts.system_name)
            .finish()
    }
}

impl ArrayProvider {
    /// The array over `backend` (an `ArrayBackend`, or Cairn's engine storage). Loads the jobs
    /// file, ends the jobs a restart interrupted (Exception, or Completed if their replica was
    /// already complete) and removes their leftover volumes. Problems with the jobs file are
    /// logged, never fatal.
    pub fn new(backend: impl IntoBackend, opts: ArrayOptions) -> Arc<ArrayProvider> {
        let array = backend.into_backend();
        let (jobs, error) = Jobs::load(opts.jobs_path.clone(), opts.time_before_removal);
        if let Some(e) = error {
            tracing::warn!(
                "jobs file unusable, moved aside, starting with no jobs: {}",
                e.report()
            );
        }
        let jobs = Arc::new(jobs);
        let (pool_settings, error) = PoolSettings::load(
            opts.pool_settings_path.clone(),
            opts.low_space_warning_percent,
        );
        if let Some(e) = error {
            tracing::warn!("pool settings file unusable, moved aside: {}", e.report());
        }
        let index = VolumeIndex::following(array.as_ref());
        crate::copy::recover(array.as_ref(), &jobs);
        jobs.save();
        let identity = Identity {
            system_name: opts.system_name.clone(),
            version: opts.version.clone(),
        };
        let seed = crate::jobs::now_unix_secs() & 0xffff_ffff;
        Arc::new(ArrayProvider {
            array,
            opts,
            identity,
            jobs,
            ops: Mutex::new(()),
            index,
            names: AtomicU64::new(seed),
            pool_settings,
            host_access_watcher: Mutex::new(None),
        })
    }

    /// The complete CIM server for this array: this provider inside an `InteropProvider` whose
    /// object manager is hosted by this array's Cairn_StorageSystem, over the embedded class
    /// repository. What `cairn serve` hands to the HTTP server.
    pub fn cim_server(self: &Arc<Self>) -> Arc<CimServer> {
        let info = ObjectManagerInfo::new(self.opts.system_name.clone(), &self.opts.version);
        let interop = InteropProvider::new(self.clone() as Arc<dyn Provider>, info);
        Arc::new(CimServer::new(Arc::new(interop)))
    }

    /// The array the model shows.
    pub fn array(&self) -> &Arc<dyn ArrayBackend> {
        &self.array
    }

    /// Path of the array's Cairn_StorageSystem (e.g. for `ObjectManagerInfo`).
    pub fn system_path(&self) -> InstancePath {
        self.identity.system_path()
    }

    /// Stops the running copies before the daemon closes its pools: each ends as Exception
    /// ("Interrupted: the daemon is stopping") with its target and internal snapshot removed.
    /// Waits up to `wait`; true if no copy is running any more. Copies still running when the
    /// pools close fail on their own, and the next start removes what they leave.
    pub fn shutdown(&self, wait: Duration) -> bool {
        self.jobs.stop_all(crate::jobs::JOB_STATE_EXCEPTION, wait)
    }

    /// Sets the callback told after every host-access method has run (whether it changed the
    /// access model or was refused), while the management lock is still held, so it must not
    /// call back into the provider. One; a second replaces it.
    pub fn watch_host_access(&self, watcher: crate::jobs::Watcher) {
        *self.host_access_watcher.lock() = Some(watcher);
    }

    pub(crate) fn host_access_ran(&self) {
        if let Some(w) = self.host_access_watcher.lock().as_ref() {
            w();
        }
    }

    /// The job table (e.g. to wait for a job in tests or at shutdown).
    pub fn jobs(&self) -> &Arc<Jobs> {
        &self.jobs
    }

    fn tbr_secs(&self) -> u64 {
        self.opts.time_before_removal.as_secs()
    }

    /// The array state `scope` covers.
    fn read(&self, scope: Scope<'_>) -> Snapshot {
        self.index.snapshot(self.array.as_ref(), scope)
    }

    /// Every pool and volume in the model, from the index, without the space volumes consume.
    pub(crate) fn records(&self) -> Snapshot {
        self.index
            .snapshot_without_space(self.array.as_ref(), Scope::All)
    }

    /// The state the instances of class `class_name` are computed from.
    fn state_for(&self, class_name: &str) -> Snapshot {
        match model::needs(class_name) {
            Needs::Nothing => Snapshot::empty(),
            Needs::Pools => self.read(Scope::Pools),
            Needs::Volumes => self.read(Scope::All),
        }
    }

    /// The instances of `class_name` over `snap` and the jobs of this moment.
    fn instances(&self, snap: &Snapshot, class_name: &str) -> Vec<Instance> {
        // A job is in the model once its method is about to answer 4096 (its target is
        // recorded then): a copy refused while it was being prepared never shows a job that
        // vanishes without a final state.
        let jobs: Vec<_> = self
            .jobs
            .list()
            .into_iter()
            .filter(|j| j.target.is_some())
            .collect();
        let mut out = model::instances(&self.identity, snap, &jobs, self.tbr_secs(), class_name);
        for pool in out
            .iter_mut()
            .filter(|i| i.class_name.eq_ignore_ascii_case(model::POOL_CLASS))
        {
            let name = pool.path.as_ref().and_then(model::pool_name_of);
            if let Some(name) = name.map(str::to_owned) {
                let percent = self.pool_settings.low_space_warning_percent(&name);
                pool.set("LowSpaceWarningThreshold", Some(Value::Uint16(percent)));
            }
        }
        out.extend(profiles::instances(
            &self.identity,
            &self.opts.location,
            snap,
            class_name,
        ));
        if let Some(access) = &self.opts.host_access {
            out.extend(crate::masking::instances(
                &self.identity,
                access.as_ref(),
                self.array.as_ref(),
                class_name,
            ));
        }
        out
    }
}

/// The properties of `modified` ModifyInstance changes (those in `property_list`, when given).
fn changed_properties<'a>(
    modified: &'a Instance,
    property_list: Option<&'a [String]>,
) -> impl Iterator<Item = &'a cairn_cim::Property> {
    modified.properties.iter().filter(move |p| {
        property_list.is_none_or(|l| l.iter().any(|n| n.eq_ignore_ascii_case(&p.name)))
    })
}

impl ArrayProvider {
    /// ModifyInstance of a pool: LowSpaceWarningThreshold (0..=100) only, not of the primordial
    /// pool; any other property changed is CIM_ERR_NOT_SUPPORTED and changes nothing.
    fn modify_pool(
        &self,
        namespace: &str,
        path: &InstancePath,
        modified: &Instance,
        property_list: Option<&[String]>,
    ) -> Result<(), CimError> {
        let current = self
            .get_instance(namespace, path)?
            .ok_or_else(|| CimError::not_found(path))?;
        let name = model::pool_name_of(path)
            .ok_or_else(|| CimError::not_supported("The primordial pool has no settings"))?;
        let mut percent = None;
        for prop in changed_properties(modified, property_list) {
            if prop.name.eq_ignore_ascii_case("LowSpaceWarningThreshold") {
                let value = prop.value.as_ref().and_then(Value::as_u64);
                percent = Some(
                    value
                        .filter(|v| *v <= u64::from(LOW_SPACE_WARNING_PERCENT_MAX))
                        .and_then(|v| u16::try_from(v).ok())
                        .ok_or_else(|| {
                            CimError::invalid_parameter(
                                "LowSpaceWarningThreshold must be a percentage from 0 to 100",
                            )
                        })?,
                );
            } else if current.get(&prop.name) != prop.value.as_ref() {
                return Err(CimError::not_supported(format!(
                    "Property {} of a pool cannot be modified",
                    prop.name
                )));
            }
        }
        let Some(percent) = percent else {
            return Ok(());
        };
        let _op = self.ops.lock();
        self.pool_settings
            .set_low_space_warning_percent(name, percent)
            .map_err(|e| CimError::failed(e.report()))
    }
}

/// Where an enumeration of a paged class stands (the cursor text `P<n>` or `V[<position>]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PagePosition {
    /// The first `n` pool-level instances (AllocatedFromStoragePool of each pool) are returned.
    Pools(usize),
    /// The volumes up to this position in the index's creation order are (`None`: none yet).
    Volumes(Option<u64>),
}

impl PagePosition {
    fn parse(text: &str) -> Option<PagePosition> {
        let (kind, n) = text.split_at_checked(1)?;
        match kind {
            "P" => n.parse().ok().map(PagePosition::Pools),
            "V" if n.is_empty() => Some(PagePosition::Volumes(None)),
            "V" => n.parse().ok().map(|n| PagePosition::Volumes(Some(n))),
            _ => None,
        }
    }

    fn text(self) -> String {
        match self {
            PagePosition::Pools(n) => format!("P{n}"),
            PagePosition::Volumes(None) => "V".to_owned(),
            PagePosition::Volumes(Some(n)) => format!("V{n}"),
        }
    }
}

impl ArrayProvider {
    /// A page of the pool-level AllocatedFromStoragePool instances (primordial → each pool),
    /// after the first `done`; then the volumes' come.
    fn pool_page(&self, done: usize, max: usize) -> Page {
        let snap = self.read(Scope::Pools);
        let all = model::instances(&self.identity, &snap, &[], 0, ALLOCATED_CLASS);
        let total = all.len();
        let instances: Vec<Instance> = all.into_iter().skip(done).take(max).collect();
        let next = match done + instances.len() {
            n if n < total => PagePosition::Pools(n),
            _ => PagePosition::Volumes(None),
        };
        Page {
            instances,
            next: Some(next.text()),
        }
    }

    /// A page of the per-volume instances of paged class `class`, after position `after`.
    fn volume_page(&self, class: &str, after: Option<u64>, max: usize) -> Page {
        let sources = class.eq_ignore_ascii_case(model::SYNC_CLASS);
        let page = self.index.page(self.array.as_ref(), after, max, sources);
        let instances = model::page_instances(&self.identity, &page.snapshot, &page.ids, class)
            .unwrap_or_default();
        Page {
            instances,
            next: page.next.map(|n| PagePosition::Volumes(Some(n)).text()),
        }
    }
}

const ALLOCATED_CLASS: &str = "Cairn_AllocatedFromStoragePool";

impl ArrayProvider {
    /// The volume `object` names, when `assoc_class` is an association that names volumes and
    /// `object` is a volume of this array.
    fn volume_object(
        &self,
        namespace: &str,
        assoc_class: &str,
        object: &InstancePath,
    ) -> Option<VolumeId> {
        let volume_association = model::needs(assoc_class) == Needs::Volumes
            && !assoc_class.eq_ignore_ascii_case(model::VOLUME_CLASS);
        if !volume_association || is_interop(namespace) {
            return None;
        }
        model::volume_id_of(object).filter(|_| {
            model::key_text(object, "SystemName").is_none_or(|s| s == self.identity.system_name)
        })
    }
}

fn is_interop(ns: &str) -> bool {
    namespace_eq(ns, INTEROP_NAMESPACE)
}

impl Provider for ArrayProvider {
    fn namespaces(&self) -> Vec<String> {
        vec![INTEROP_NAMESPACE.to_owned(), CAIRN_NAMESPACE.to_owned()]
    }

    fn class_names(&self, namespace: &str) -> Vec<String> {
        if is_interop(namespace) {
            // The registrations reach `interop` through `registered_profiles`.
            return Vec::new();
        }
        let mut names: Vec<String> = model::CAIRN_CLASSES
            .iter()
            .chain(profiles::CLASSES.iter())
            .map(|s| (*s).to_owned())
            .collect();
        if self.opts.host_access.is_some() {
            for c in crate::masking::CLASSES {
                if !names.iter().any(|n| n.eq_ignore_ascii_case(c)) {
                    names.push(c.to_owned());
                }
            }
        }
        names
    }

    fn enumerate_instances(
        &self,
        namespace: &str,
        class_name: &str,
    ) -> Result<Vec<Instance>, CimError> {
        if is_interop(namespace) {
            return Ok(Vec::new());
        }
        Ok(self.instances(&self.state_for(class_name), class_name))
    }

    /// The classes with an instance per volume are paged by volume, in the index's creation
    /// order (see [`crate::index::VolumeIndex::page`]); the others by the dispatcher.
    fn enumerate_page(
        &self,
        namespace: &str,
        class_name: &str,
        cursor: Option<&str>,
        max: usize,
    ) -> Result<Option<Page>, CimError> {
        let paged = model::PAGED_CLASSES
            .iter()
            .any(|c| c.eq_ignore_ascii_case(class_name));
        if is_interop(namespace) || !paged {
            return Ok(None);
        }
        let position = match cursor {
            Some(text) => PagePosition::parse(text)
                .ok_or_else(|| CimError::failed(format!("Bad enumeration position {text:?}")))?,
            None if class_name.eq_ignore_ascii_case(ALLOCATED_CLASS) => PagePosition::Pools(0),
            None => PagePosition::Volumes(None),
        };
        let max = max.max(1);
        Ok(Some(match position {
            PagePosition::Pools(done) => self.pool_page(done, max),
            PagePosition::Volumes(after) => self.volume_page(class_name, after, max),
        }))
    }

    fn get_instance(
        &self,
        namespace: &str,
        path: &InstancePath,
    ) -> Result<Option<Instance>, CimError> {
        if is_interop(namespace) {
            return Ok(None);
        }
        // Only the volumes the path names (if any), never every volume: an instance naming
        // volumes is computed from those volumes and their pools alone.
        let ids = model::volumes_named(path);
        let volume_class = path.class_name.eq_ignore_ascii_case(model::VOLUME_CLASS);
        let snap = match model::needs(&path.class_name) {
            Needs::Volumes if volume_class || !ids.is_empty() => self.read(Scope::Ids(&ids)),
            _ => self.state_for(&path.class_name),
        };
        let same = |i: &Instance| i.path.as_ref().is_some_and(|p| p.same_keys(path));
        self.instances(&snap, &path.class_name)
            .into_iter()
            .find(same)
            .map(Some)
            .ok_or_else(|| CimError::not_found(path))
    }

    /// For the associations that name volumes, when `object` is a volume: those computed from
    /// that volume alone, or, for StorageSynchronized, from it and its replica relatives.
    fn associations_referring_to(
        &self,
        namespace: &str,
        assoc_class: &str,
        object: &InstancePath,
    ) -> Result<Option<Vec<Instance>>, CimError> {
        let Some(id) = self.volume_object(namespace, assoc_class, object) else {
            return Ok(None);
        };
        let snap = if assoc_class.eq_ignore_ascii_case(model::SYNC_CLASS) {
            self.read(Scope::Around(id))
        } else {
            self.read(Scope::Ids(&[id]))
        };
        Ok(Some(self.instances(&snap, assoc_class)))
    }

    /// The StorageSynchronized of a volume, paged by its replicas (a volume may have thousands
    /// of snapshots): the first page is computed from the volume, its source and its first
    /// replicas, each later one from the volume and its next replicas, keeping only what names
    /// one of those replicas, so no association (and no replica) is on two pages.
    fn associations_page(
        &self,
        namespace: &str,
        assoc_class: &str,
        object: &InstancePath,
        cursor: Option<&str>,
        max: usize,
    ) -> Result<Option<Page>, CimError> {
        if !assoc_class.eq_ignore_ascii_case(model::SYNC_CLASS) {
            return Ok(None);
        }
        let Some(id) = self.volume_object(namespace, assoc_class, object) else {
            return Ok(None);
        };
        let after = match cursor {
            None => None,
            Some(text) => Some(
                text.strip_prefix('R')
                    .and_then(|t| t.parse().ok())
                    .ok_or_else(|| {
                        CimError::failed(format!("Bad association position {text:?}"))
                    })?,
            ),
        };
        let page = self
            .index
            .replicas_page(self.array.as_ref(), id, after, max);
        let mut instances = self.instances(&page.snapshot, assoc_class);
        if after.is_some() {
            instances.retain(|i| {
                model::volumes_named(i.path.as_ref().unwrap_or(&InstancePath::new(&i.class_name)))
                    .iter()
                    .any(|v| page.replicas.contains(v))
            });
        }
        Ok(Some(Page {
            instances,
            next: page.next.map(|n| format!("R{n}")),
        }))
    }

    fn delete_instance(&self, namespace: &str, path: &InstancePath) -> Result<(), CimError> {
        if is_interop(namespace) || !path.class_name.eq_ignore_ascii_case(model::JOB_CLASS) {
            return Err(CimError::not_supported(format!(
                "DeleteInstance of {}",
                path.class_name
            )));
        }
        let id = model::job_id_of(path).ok_or_else(|| CimError::not_found(path))?;
        match self.jobs.delete(id) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::JobRunning => Err(CimError::failed(format!(
                "Job {id} is still running: terminate it first"
            ))),
            Err(_) => Err(CimError::not_found(path)),
        }
    }

    /// Only a volume's ElementName can change (a rename); any other property sent with a value
    /// other than its current one is refused, so a client sending the whole instance works.
    fn modify_instance(
        &self,
        namespace: &str,
        path: &InstancePath,
        modified: &Instance,
        property_list: Option<&[String]>,
    ) -> Result<(), CimError> {
        let pool = path.class_name.eq_ignore_ascii_case(model::POOL_CLASS);
        if is_interop(namespace)
            || !(pool || path.class_name.eq_ignore_ascii_case(model::VOLUME_CLASS))
        {
            return Err(CimError::not_supported(format!(
                "ModifyInstance of {}",
                path.class_name
            )));
        }
        if pool {
            return self.modify_pool(namespace, path, modified, property_list);
        }
        let current = self
            .get_instance(namespace, path)?
            .ok_or_else(|| CimError::not_found(path))?;
        let mut name = None;
        for prop in changed_properties(modified, property_list) {
            if prop.name.eq_ignore_ascii_case("ElementName") {
                name = Some(
                    prop.value
                        .as_ref()
                        .and_then(cairn_cim::Value::as_str)
                        .ok_or_else(|| {
                            CimError::invalid_parameter("ElementName must be a non-NULL string")
                        })?,
                );
            } else if current.get(&prop.name) != prop.value.as_ref() {
                return Err(CimError::not_supported(format!(
                    "Property {} of a volume cannot be modified",
                    prop.name
                )));
            }
        }
        match name {
            Some(n) => crate::methods::rename_volume(self, path, n),
            None => Ok(()),
        }
    }

    fn registered_profiles(&self) -> Vec<ProfileRegistration> {
        let mut out = model::registrations(&self.identity);
        out.extend(profiles::registrations(
            &self.identity,
            model::ARRAY_PROFILE.0,
        ));
        if let Some(access) = &self.opts.host_access {
            let array_id = model::ARRAY_PROFILE.0;
            out.extend(crate::masking::registrations(
                &self.identity,
                array_id,
                access.as_ref(),
            ));
        }
        out
    }

    /// A call that did not come through the dispatcher (which resolves the method once).
    fn invoke_method(&self, call: &MethodCall<'_>) -> Result<MethodResult, CimError> {
        let implementation = self.methods().iter().position(|n| {
            n.class.eq_ignore_ascii_case(call.class_name)
                && n.method.eq_ignore_ascii_case(call.method)
        });
        match implementation {
            Some(i) => self.invoke_resolved(call, i),
            None => Ok(crate::methods::invoke_resolved(self, call, None)),
        }
    }

    /// The array's own methods, then the host-access methods when host access is wired.
    fn methods(&self) -> Vec<MethodName> {
        let mut out = crate::methods::names();
        if self.opts.host_access.is_some() {
            out.extend(crate::masking::method_names());
        }
        out
    }

    fn invoke_resolved(
        &self,
        call: &MethodCall<'_>,
        implementation: usize,
    ) -> Result<MethodResult, CimError> {
        if let Some(masking) = implementation.checked_sub(crate::methods::COUNT) {
            if let Some(result) = crate::masking::invoke_resolved(self, call, masking) {
                return Ok(result);
            }
        }
        Ok(crate::methods::invoke_resolved(
            self,
            call,
            Some(implementation),
        ))
    }
}
