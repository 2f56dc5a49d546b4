//! The array model: how engine pools, volumes, replicas and jobs appear as CIM instances in
//! `root/cairn`, and the profile registrations the array declares for the interop model.
//!
//! Everything here is computed from a [`Snapshot`] of the array state taken for one request (from
//! the backend, or from the [`crate::index`] the backend's change events keep exact), so the model
//! can never disagree with the array.
//!
//! Invariants: every path carries its namespace; a volume's DeviceID is its 32-hex-digit engine id
//! and its Name the NAA 6 form of that id (see [`naa_name`]); every volume and snapshot is allocated
//! from exactly one pool; hidden engine volumes are not in the model except the targets of copy
//! jobs, from the moment the job is answered until the target is deleted (OperationalStatus
//! [8 Starting] while hidden or being copied, see [`in_model`]); a StorageSynchronized exists only
//! while both sides do.

use std::collections::HashMap;

use crate::interop::{association, CAIRN_NAMESPACE};
use cairn_array::replica::{
    COPY_STATE_SYNCHRONIZED, COPY_TYPE_UNSYNC_ASSOC, MODE_ASYNC, PROGRESS_COMPLETED,
    REPLICA_TYPE_BEFORE_DELTA, SYNC_TYPE_SNAPSHOT,
};
use cairn_array::{
    ArrayBackend, PoolHealth, PoolInfo, ReplicaKind, ReplicaRecord, Volume, VolumeId,
};
use cairn_cim::{
    CimDateTime, CimType, Instance, InstancePath, KeyValue, ProfileRegistration, Value,
};

use crate::jobs::{self, JobRecord};

pub const SYSTEM_CLASS: &str = "Cairn_StorageSystem";
pub const POOL_CLASS: &str = "Cairn_StoragePool";
pub const VOLUME_CLASS: &str = "Cairn_StorageVolume";
pub const SCS_CLASS: &str = "Cairn_StorageConfigurationService";
pub const RS_CLASS: &str = "Cairn_ReplicationService";
pub const SCC_CLASS: &str = "Cairn_StorageConfigurationCapabilities";
pub const RSC_CLASS: &str = "Cairn_ReplicationServiceCapabilities";
pub const JOB_CLASS: &str = "Cairn_ConcreteJob";
pub const SYNC_CLASS: &str = "Cairn_StorageSynchronized";
pub const PACKAGE_CLASS: &str = "Cairn_PhysicalPackage";
pub const SOFTWARE_CLASS: &str = "Cairn_SoftwareIdentity";

const POOL_ID_PREFIX: &str = "CAIRN:POOL:";
const PRIMORDIAL_POOL_ID: &str = "CAIRN:PRIMORDIAL";
const JOB_ID_PREFIX: &str = "CAIRN:JOB:";
const SCS_NAME: &str = "CAIRN:StorageConfigurationService";
const RS_NAME: &str = "CAIRN:ReplicationService";
const SCC_SERVICE_ID: &str = "CAIRN:SCC:SERVICE";
const SCC_POOL_PREFIX: &str = "CAIRN:SCC:POOL:";
const RSC_ID: &str = "CAIRN:RSC";
const SOFTWARE_ID: &str = "CAIRN:SOFTWARE";

/// Registered profiles of the array (numeric versions, SNIA): (InstanceID, name, version).
pub const ARRAY_PROFILE: (&str, &str, &str) = ("CAIRN:Profile:Array", "Array", "1.6.1");
pub const COMPONENT_PROFILES: [(&str, &str, &str); 5] = [
    ("CAIRN:Profile:BlockServices", "Block Services", "1.6.1"),
    (
        "CAIRN:Profile:ReplicationServices",
        "Replication Services",
        "1.6.1",
    ),
    ("CAIRN:Profile:JobControl", "Job Control", "1.5.0"),
    ("CAIRN:Profile:PhysicalPackage", "Physical Package", "1.5.0"),
    ("CAIRN:Profile:Software", "Software", "1.5.0"),
];

/// Identity of the array as the model shows it.
#[derive(Debug, Clone)]
pub struct Identity {
    pub system_name: String,
    pub version: String,
}

pub(crate) fn u16s(v: &[u16]) -> Value {
    Value::Array(
        CimType::Uint16,
        v.iter().map(|x| Value::Uint16(*x)).collect(),
    )
}

fn strings(v: &[&str]) -> Value {
    Value::Array(
        CimType::String,
        v.iter().map(|x| Value::string(*x)).collect(),
    )
}

// ---- paths ----------------------------------------------------------------------------------

impl Identity {
    pub fn system_path(&self) -> InstancePath {
        InstancePath::new(SYSTEM_CLASS)
            .in_namespace(CAIRN_NAMESPACE)
            .with_key("CreationClassName", SYSTEM_CLASS)
            .with_key("Name", &self.system_name)
    }

    pub(crate) fn hosted(&self, class: &str, key: &str, value: &str) -> InstancePath {
        InstancePath::new(class)
            .in_namespace(CAIRN_NAMESPACE)
            .with_key("SystemCreationClassName", SYSTEM_CLASS)
            .with_key("SystemName", &self.system_name)
            .with_key("CreationClassName", class)
            .with_key(key, value)
    }

    pub fn volume_path(&self, id: VolumeId) -> InstancePath {
        self.hosted(VOLUME_CLASS, "DeviceID", &id.to_string())
    }

    pub fn scs_path(&self) -> InstancePath {
        self.hosted(SCS_CLASS, "Name", SCS_NAME)
    }

    pub fn rs_path(&self) -> InstancePath {
        self.hosted(RS_CLASS, "Name", RS_NAME)
    }

    pub fn package_path(&self) -> InstancePath {
        InstancePath::new(PACKAGE_CLASS)
            .in_namespace(CAIRN_NAMESPACE)
            .with_key("CreationClassName", PACKAGE_CLASS)
            .with_key("Tag", &self.system_name)
    }
}

pub(crate) fn id_path(class: &str, id: &str) -> InstancePath {
    InstancePath::new(class)
        .in_namespace(CAIRN_NAMESPACE)
        .with_key("InstanceID", id)
}

pub fn pool_path(name: &str) -> InstancePath {
    id_path(POOL_CLASS, &format!("{POOL_ID_PREFIX}{name}"))
}

pub(crate) fn primordial_path() -> InstancePath {
    id_path(POOL_CLASS, PRIMORDIAL_POOL_ID)
}

pub fn job_path(id: u64) -> InstancePath {
    id_path(JOB_CLASS, &format!("{JOB_ID_PREFIX}{id}"))
}

fn scc_service_path() -> InstancePath {
    id_path(SCC_CLASS, SCC_SERVICE_ID)
}

fn scc_pool_path(name: &str) -> InstancePath {
    id_path(SCC_CLASS, &format!("{SCC_POOL_PREFIX}{name}"))
}

fn rsc_path() -> InstancePath {
    id_path(RSC_CLASS, RSC_ID)
}

fn software_path() -> InstancePath {
    id_path(SOFTWARE_CLASS, SOFTWARE_ID)
}

pub fn sync_path(source: &InstancePath, target: &InstancePath) -> InstancePath {
    association(
        SYNC_CLASS,
        ("SystemElement", source.clone()),
        ("SyncedElement", target.clone()),
    )
    .path
    .unwrap_or_else(|| InstancePath::new(SYNC_CLASS))
    .in_namespace(CAIRN_NAMESPACE)
}

/// The text of key `name` (string or numeric) in `path`.
pub fn key_text<'a>(path: &'a InstancePath, name: &str) -> Option<&'a str> {
    match path.key(name)? {
        KeyValue::String(s) | KeyValue::Numeric(s, _) => Some(s.as_str()),
        _ => None,
    }
}

/// The reference key `name` in `path`.
pub fn key_ref<'a>(path: &'a InstancePath, name: &str) -> Option<&'a InstancePath> {
    match path.key(name)? {
        KeyValue::Reference(p) => Some(p),
        _ => None,
    }
}

/// The pool name a StoragePool path names (`None` for the primordial pool or a foreign path).
pub fn pool_name_of(path: &InstancePath) -> Option<&str> {
    key_text(path, "InstanceID")?.strip_prefix(POOL_ID_PREFIX)
}

/// The volume id a StorageVolume path names.
pub fn volume_id_of(path: &InstancePath) -> Option<VolumeId> {
    key_text(path, "DeviceID")?
        .trim()
        .to_ascii_lowercase()
        .parse()
        .ok()
}

/// The volumes a path names: its own DeviceID for a volume, the volume of a volume's storage
/// setting, the volumes its references name for an association.
pub fn volumes_named(path: &InstancePath) -> Vec<VolumeId> {
    if path.class_name.eq_ignore_ascii_case(VOLUME_CLASS) {
        return volume_id_of(path).into_iter().collect();
    }
    if path
        .class_name
        .eq_ignore_ascii_case(crate::profiles::SETTING_CLASS)
    {
        return crate::profiles::setting_volume_id(path)
            .into_iter()
            .collect();
    }
    path.keys
        .iter()
        .filter_map(|k| match &k.value {
            KeyValue::Reference(r) if r.class_name.eq_ignore_ascii_case(VOLUME_CLASS) => {
                volume_id_of(r)
            }
            _ => None,
        })
        .collect()
}

/// The job id a ConcreteJob path names.
pub fn job_id_of(path: &InstancePath) -> Option<u64> {
    key_text(path, "InstanceID")?
        .strip_prefix(JOB_ID_PREFIX)?
        .parse()
        .ok()
}

/// The SCSI NAA IEEE Registered Extended (type 6) form of a volume id, the same identity the
/// data protocols report (derived in `cairn_export`).
pub fn naa_name(id: VolumeId) -> String {
    cairn_export::naa_name(&id.0)
}

// ---- array state ----------------------------------------------------------------------------

/// One pool as the model sees it.
pub struct PoolView {
    pub info: PoolInfo,
    /// Volumes in the model (visible, or targets of running copies).
    pub volumes: Vec<Volume>,
}

/// The array state behind one request.
pub struct Snapshot {
    pub pools: Vec<PoolView>,
    /// Where each volume is in `pools` (pool, volume).
    at: HashMap<VolumeId, (usize, usize)>,
    /// The data bytes each volume is charged for, where its backend tells
    /// ([`Snapshot::with_space`]): SpaceConsumed of its AllocatedFromStoragePool.
    space: HashMap<VolumeId, u64>,
}

/// True for the array volumes the model shows: every visible volume, and the hidden volumes of a
/// copy job other than its internal snapshot — the target while it is copied (`CopyTarget`) and
/// once its copy is done but before it is unhidden (`Replica`/`Detached`). So the target of a copy
/// is in the model from the moment the method answers until it is deleted, whichever engine
/// operation of the completion has run last.
pub fn in_model(v: &Volume) -> bool {
    !v.hidden
        || v.replica
            .is_some_and(|t| t.job != 0 && t.kind != ReplicaKind::PointInTime)
}

/// True for a model volume hosts cannot use yet: the target of a running copy, or a copy that is
/// complete but not yet exported (still hidden). Shown with OperationalStatus [8 Starting]; methods
/// that would change or delete it answer 6 In Use until its job has ended.
pub fn is_copying(v: &Volume) -> bool {
    v.hidden || is_copy_target(v)
}

/// How much of the array state the instances of a class are computed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Needs {
    /// Nothing: the singletons and the associations between them.
    Nothing,
    /// The pools and their figures, no volume.
    Pools,
    /// The pools and every volume in the model.
    Volumes,
}

/// What the instances of concrete class `class` need from the array (lowercase or not).
pub fn needs(class: &str) -> Needs {
    match class.to_ascii_lowercase().as_str() {
        "cairn_storagepool"
        | "cairn_storageconfigurationcapabilities"
        | "cairn_hostedstoragepool"
        | "cairn_elementcapabilities" => Needs::Pools,
        "cairn_storagevolume"
        | "cairn_systemdevice"
        | "cairn_allocatedfromstoragepool"
        | "cairn_storagesynchronized"
        | "cairn_affectedjobelement"
        | "cairn_storagesetting"
        | "cairn_elementsettingdata" => Needs::Volumes,
        _ => Needs::Nothing,
    }
}

impl Snapshot {
    /// The state made of `pools`.
    pub fn new(pools: Vec<PoolView>) -> Snapshot {
        let mut at = HashMap::new();
        for (i, p) in pools.iter().enumerate() {
            for (j, v) in p.volumes.iter().enumerate() {
                at.insert(v.id, (i, j));
            }
        }
        Snapshot {
            pools,
            at,
            space: HashMap::new(),
        }
    }

    /// This state with the space each of its volumes consumes, as `array` tells it now (a
    /// volume its backend reports none for, or fails to, has none).
    pub fn with_space(mut self, array: &dyn ArrayBackend) -> Snapshot {
        for id in self.at.keys() {
            match array.space_consumed(*id) {
                Ok(Some(bytes)) => {
                    self.space.insert(*id, bytes);
                }
                Ok(None) => {}
                Err(e) => tracing::debug!("no SpaceConsumed for volume {id}: {e}"),
            }
        }
        self
    }

    /// No pool, no volume: what the singletons need.
    pub fn empty() -> Snapshot {
        Snapshot::new(Vec::new())
    }

    /// The part of the state that holds the volumes `ids` that are in the model, with their pools:
    /// what an instance naming those volumes is computed from.
    pub fn take_ids(array: &dyn ArrayBackend, ids: &[VolumeId]) -> Snapshot {
        let mut pools: Vec<PoolView> = Vec::new();
        for v in ids.iter().filter_map(|id| array.volume(*id)) {
            if !in_model(&v) {
                continue;
            }
            if let Some(view) = pools.iter_mut().find(|p| p.info.name == v.pool) {
                view.volumes.push(v);
            } else if let Some(info) = array.pool(&v.pool) {
                pools.push(PoolView {
                    info,
                    volumes: vec![v],
                });
            }
        }
        Snapshot::new(pools).with_space(array)
    }

    /// Every pool and every volume in the model, read from the backend now.
    pub fn take(array: &dyn ArrayBackend) -> Snapshot {
        let pools = array
            .pools()
            .into_iter()
            .map(|info| {
                let volumes = array
                    .volumes(&info.name)
                    .into_iter()
                    .filter(in_model)
                    .collect();
                PoolView { info, volumes }
            })
            .collect();
        Snapshot::new(pools).with_space(array)
    }

    pub fn volume(&self, id: VolumeId) -> Option<(&PoolView, &Volume)> {
        let (i, j) = *self.at.get(&id)?;
        let p = &self.pools[i];
        Some((p, &p.volumes[j]))
    }

    pub(crate) fn volumes(&self) -> impl Iterator<Item = (&PoolView, &Volume)> {
        self.pools
            .iter()
            .flat_map(|p| p.volumes.iter().map(move |v| (p, v)))
    }
}

/// A replica relationship (StorageSynchronized) as the model shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Relationship {
    pub source: VolumeId,
    pub tag: ReplicaRecord,
}

/// The relationship `v` is the replica side of, if its source still exists. A snapshot without a
/// replica record (made by the CLI, say) counts as a snapshot replica of its parent.
pub fn relationship(snap: &Snapshot, v: &Volume) -> Option<Relationship> {
    let tag = match v.replica {
        Some(t) if matches!(t.kind, ReplicaKind::Replica | ReplicaKind::CopyTarget) => t,
        Some(_) => return None,
        None => {
            let parent = v.parent?;
            ReplicaRecord {
                kind: ReplicaKind::Replica,
                source: parent,
                job: 0,
                sync_type: SYNC_TYPE_SNAPSHOT,
                copy_type: COPY_TYPE_UNSYNC_ASSOC,
                copy_state: COPY_STATE_SYNCHRONIZED,
                progress_status: PROGRESS_COMPLETED,
                replica_type: REPLICA_TYPE_BEFORE_DELTA,
            }
        }
    };
    snap.volume(tag.source)?;
    Some(Relationship {
        source: tag.source,
        tag,
    })
}

pub fn is_copy_target(v: &Volume) -> bool {
    v.replica.is_some_and(|t| t.kind == ReplicaKind::CopyTarget)
}

// ---- instances ------------------------------------------------------------------------------

/// All instances of concrete class `class` in `root/cairn`.
pub fn instances(
    id: &Identity,
    snap: &Snapshot,
    jobs: &[JobRecord],
    tbr_secs: u64,
    class: &str,
) -> Vec<Instance> {
    let c = class.to_ascii_lowercase();
    match c.as_str() {
        "cairn_storagesystem" => vec![system(id)],
        "cairn_physicalpackage" => vec![package(id)],
        "cairn_softwareidentity" => vec![software(id)],
        "cairn_storagepool" => pools(snap),
        "cairn_storagevolume" => snap.volumes().map(|(_, v)| volume(id, v)).collect(),
        "cairn_storageconfigurationservice" => {
            vec![service(id, id.scs_path(), "Storage configuration service")]
        }
        "cairn_replicationservice" => vec![service(id, id.rs_path(), "Replication service")],
        "cairn_storageconfigurationcapabilities" => scc_all(snap),
        "cairn_replicationservicecapabilities" => vec![rsc()],
        "cairn_concretejob" => jobs.iter().map(|j| job_instance(j, tbr_secs)).collect(),
        _ => associations(id, snap, jobs, &c),
    }
}

fn associations(id: &Identity, snap: &Snapshot, jobs: &[JobRecord], c: &str) -> Vec<Instance> {
    let sys = id.system_path();
    match c {
        "cairn_hostedservice" => [id.scs_path(), id.rs_path()]
            .into_iter()
            .map(|s| {
                association(
                    "Cairn_HostedService",
                    ("Antecedent", sys.clone()),
                    ("Dependent", s),
                )
            })
            .collect(),
        "cairn_hostedstoragepool" => pool_paths(snap)
            .into_iter()
            .map(|p| {
                association(
                    "Cairn_HostedStoragePool",
                    ("GroupComponent", sys.clone()),
                    ("PartComponent", p),
                )
            })
            .collect(),
        "cairn_systemdevice" => snap.volumes().map(|(_, v)| system_device(id, v)).collect(),
        "cairn_allocatedfromstoragepool" => allocated(id, snap),
        "cairn_elementcapabilities" => element_capabilities(id, snap),
        "cairn_storagesynchronized" => snap
            .volumes()
            .filter_map(|(_, v)| relationship(snap, v).map(|rel| synchronized(id, v, rel)))
            .collect(),
        "cairn_affectedjobelement" | "cairn_owningjobelement" => {
            job_associations(id, snap, jobs, c)
        }
        _ => system_associations(id, c),
    }
}

/// The associations between a job and the service that owns it or the volume it creates.
fn job_associations(id: &Identity, snap: &Snapshot, jobs: &[JobRecord], c: &str) -> Vec<Instance> {
    if c == "cairn_owningjobelement" {
        return jobs
            .iter()
            .map(|j| {
                association(
                    "Cairn_OwningJobElement",
                    ("OwningElement", id.rs_path()),
                    ("OwnedElement", job_path(j.id)),
                )
            })
            .collect();
    }
    jobs.iter()
        .filter_map(|j| {
            let target = job_target(j, snap)?;
            Some(association(
                "Cairn_AffectedJobElement",
                ("AffectedElement", id.volume_path(target)),
                ("AffectingElement", job_path(j.id)),
            ))
        })
        .collect()
}

/// The associations of the system with its package and software (one instance each).
fn system_associations(id: &Identity, c: &str) -> Vec<Instance> {
    let sys = id.system_path();
    match c {
        "cairn_computersystempackage" => vec![association(
            "Cairn_ComputerSystemPackage",
            ("Antecedent", id.package_path()),
            ("Dependent", sys),
        )],
        "cairn_installedsoftwareidentity" => vec![association(
            "Cairn_InstalledSoftwareIdentity",
            ("System", sys),
            ("InstalledSoftware", software_path()),
        )],
        "cairn_elementsoftwareidentity" => vec![association(
            "Cairn_ElementSoftwareIdentity",
            ("Antecedent", software_path()),
            ("Dependent", sys),
        )],
        _ => Vec::new(),
    }
}

/// Concrete classes with instances in `root/cairn`.
pub const CAIRN_CLASSES: [&str; 21] = [
    "Cairn_StorageSystem",
    "Cairn_PhysicalPackage",
    "Cairn_SoftwareIdentity",
    "Cairn_StoragePool",
    "Cairn_StorageVolume",
    "Cairn_StorageConfigurationService",
    "Cairn_ReplicationService",
    "Cairn_StorageConfigurationCapabilities",
    "Cairn_ReplicationServiceCapabilities",
    "Cairn_ConcreteJob",
    "Cairn_HostedService",
    "Cairn_HostedStoragePool",
    "Cairn_SystemDevice",
    "Cairn_AllocatedFromStoragePool",
    "Cairn_ElementCapabilities",
    "Cairn_StorageSynchronized",
    "Cairn_AffectedJobElement",
    "Cairn_OwningJobElement",
    "Cairn_ComputerSystemPackage",
    "Cairn_InstalledSoftwareIdentity",
    "Cairn_ElementSoftwareIdentity",
];

fn system(id: &Identity) -> Instance {
    Instance::new(SYSTEM_CLASS)
        .with("CreationClassName", Value::string(SYSTEM_CLASS))
        .with("Name", Value::string(&id.system_name))
        .with("NameFormat", Value::string("Other"))
        .with("ElementName", Value::string(&id.system_name))
        .with("Caption", Value::string("Cairn storage array"))
        .with(
            "Description",
            Value::string(format!("Cairn storage array, version {}", id.version)),
        )
        .with("Dedicated", u16s(&[3, 15]))
        .with("OperationalStatus", u16s(&[2]))
        .with("HealthState", Value::Uint16(5))
        .with("EnabledState", Value::Uint16(2))
        .with("RequestedState", Value::Uint16(12))
        .with("IdentifyingDescriptions", strings(&["Cairn array name"]))
        .with("OtherIdentifyingInfo", strings(&[&id.system_name]))
        .with_path(id.system_path())
}

fn package(id: &Identity) -> Instance {
    Instance::new(PACKAGE_CLASS)
        .with("CreationClassName", Value::string(PACKAGE_CLASS))
        .with("Tag", Value::string(&id.system_name))
        .with("ElementName", Value::string(&id.system_name))
        .with("Manufacturer", Value::string("Cairn"))
        .with("Model", Value::string("Cairn software-defined array"))
        .with("SerialNumber", Value::string(&id.system_name))
        .with("OperationalStatus", u16s(&[2]))
        .with_path(id.package_path())
}

fn software(id: &Identity) -> Instance {
    let mut parts = id.version.split('.').map(|p| p.parse::<u16>().unwrap_or(0));
    Instance::new(SOFTWARE_CLASS)
        .with("InstanceID", Value::string(SOFTWARE_ID))
        .with("ElementName", Value::string("Cairn"))
        .with("Manufacturer", Value::string("Cairn"))
        .with("VersionString", Value::string(&id.version))
        .with("MajorVersion", Value::Uint16(parts.next().unwrap_or(0)))
        .with("MinorVersion", Value::Uint16(parts.next().unwrap_or(0)))
        .with("RevisionNumber", Value::Uint16(parts.next().unwrap_or(0)))
        .with("Classifications", u16s(&[2, 3]))
        .with_path(software_path())
}

fn pool_paths(snap: &Snapshot) -> Vec<InstancePath> {
    let mut out = vec![primordial_path()];
    out.extend(snap.pools.iter().map(|p| pool_path(&p.info.name)));
    out
}

fn pools(snap: &Snapshot) -> Vec<Instance> {
    let total: u64 = snap.pools.iter().map(|p| p.info.size_bytes).sum();
    let mut out = vec![Instance::new(POOL_CLASS)
        .with("InstanceID", Value::string(PRIMORDIAL_POOL_ID))
        .with("PoolID", Value::string("primordial"))
        .with("ElementName", Value::string("Primordial pool"))
        .with("Name", Value::string("primordial"))
        .with("Primordial", Value::Boolean(true))
        .with("TotalManagedSpace", Value::Uint64(total))
        .with("RemainingManagedSpace", Value::Uint64(0))
        .with("Usage", Value::Uint16(2))
        .with("OperationalStatus", u16s(&[2]))
        .with("HealthState", Value::Uint16(5))
        .with_path(primordial_path())];
    out.extend(snap.pools.iter().map(pool));
    out
}

fn pool(p: &PoolView) -> Instance {
    let i = &p.info;
    // A pool the backend cannot reach: Error, Lost Communication; Major failure. A failed
    // pool: Error; Critical failure.
    let (op, health): (&[u16], u16) = match i.health {
        PoolHealth::Ok => (&[2], 5),
        PoolHealth::LostCommunication(_) => (&[6, 13], 20),
        PoolHealth::Failed(_) => (&[6], 25),
    };
    Instance::new(POOL_CLASS)
        .with(
            "InstanceID",
            Value::string(format!("{POOL_ID_PREFIX}{}", i.name)),
        )
        .with("PoolID", Value::string(&i.name))
        .with("ElementName", Value::string(&i.name))
        .with("Name", Value::string(&i.name))
        .with("Primordial", Value::Boolean(false))
        .with("TotalManagedSpace", Value::Uint64(i.data_bytes_total))
        .with("RemainingManagedSpace", Value::Uint64(i.data_bytes_free))
        .with(
            "ThinProvisionMetaDataSpace",
            Value::Uint64(i.metadata_bytes_total),
        )
        .with("ElementsShareSpace", Value::Boolean(true))
        // Thin Provisioning: the pool's space is its own (allocated when the pool was made).
        .with("SpaceLimitDetermination", Value::Uint16(2))
        .with("SpaceLimit", Value::Uint64(i.data_bytes_total))
        .with("Usage", Value::Uint16(2))
        .with("OperationalStatus", u16s(op))
        .with("HealthState", Value::Uint16(health))
        .with_path(pool_path(&i.name))
}

/// The StorageVolume instance of `v` as the model shows it, `None` for a volume the model does
/// not show (see [`in_model`]).
pub(crate) fn volume_instance(id: &Identity, v: &Volume) -> Option<Instance> {
    in_model(v).then(|| volume(id, v))
}

/// The number of properties [`volume`] sets.
const VOLUME_PROPERTIES: usize = 29;

fn volume(id: &Identity, v: &Volume) -> Instance {
    let lbs = u64::from(v.logical_block_size.max(1));
    let blocks = v.size_bytes / lbs;
    let naa = naa_name(v.id);
    let copying = is_copying(v);
    let inst = Instance::with_capacity(VOLUME_CLASS, VOLUME_PROPERTIES)
        .with("SystemCreationClassName", Value::string(SYSTEM_CLASS))
        .with("SystemName", Value::string(&id.system_name))
        .with("CreationClassName", Value::string(VOLUME_CLASS))
        .with("DeviceID", Value::string(v.id.to_string()))
        .with("ElementName", Value::string(&v.name))
        .with("Name", Value::string(&naa))
        .with("NameFormat", Value::Uint16(9))
        .with("NameNamespace", Value::Uint16(2))
        .with("IdentifyingDescriptions", strings(&["NAA;VPD83Type3"]))
        .with("OtherIdentifyingInfo", strings(&[&naa]))
        .with("BlockSize", Value::Uint64(lbs))
        .with("NumberOfBlocks", Value::Uint64(blocks))
        .with("ConsumableBlocks", Value::Uint64(blocks))
        .with("OperationalStatus", u16s(if copying { &[8] } else { &[2] }))
        .with("HealthState", Value::Uint16(5))
        .with("EnabledState", Value::Uint16(if copying { 10 } else { 2 }))
        .with("RequestedState", Value::Uint16(12))
        .with("Usage", Value::Uint16(2))
        .with("Access", Value::Uint16(if v.read_only { 1 } else { 3 }))
        .with("ThinlyProvisioned", Value::Boolean(true))
        .with("Primordial", Value::Boolean(false))
        .with("IsComposite", Value::Boolean(false))
        .with("CanDelete", Value::Boolean(!copying))
        .with("NoSinglePointOfFailure", Value::Boolean(false))
        .with("IsBasedOnUnderlyingRedundancy", Value::Boolean(false))
        .with("DataRedundancy", Value::Uint16(1))
        .with("PackageRedundancy", Value::Uint16(0))
        .with("ExtentStatus", u16s(&[2]))
        .with(
            "InstallDate",
            Value::DateTime(CimDateTime::from_unix_seconds(v.created_unix_secs)),
        )
        .with_path(id.volume_path(v.id));
    debug_assert_eq!(inst.properties.len(), VOLUME_PROPERTIES);
    inst
}

pub(crate) fn service(id: &Identity, path: InstancePath, what: &str) -> Instance {
    let mut inst = Instance::new(path.class_name.clone());
    for k in &path.keys {
        if let Some(s) = key_text(&path, &k.name) {
            inst.set(&k.name, Some(Value::string(s)));
        }
    }
    inst.with(
        "ElementName",
        Value::string(format!("{} {what}", id.system_name)),
    )
    .with("Description", Value::string(format!("Cairn {what}")))
    .with("Started", Value::Boolean(true))
    .with("EnabledState", Value::Uint16(2))
    .with("RequestedState", Value::Uint16(12))
    .with("OperationalStatus", u16s(&[2]))
    .with("HealthState", Value::Uint16(5))
    .with_path(path)
}

fn scc(path: InstancePath, what: &str) -> Instance {
    let iid = key_text(&path, "InstanceID").unwrap_or_default().to_owned();
    Instance::new(SCC_CLASS)
        .with("InstanceID", Value::string(iid))
        .with(
            "ElementName",
            Value::string(format!("Storage configuration capabilities of {what}")),
        )
        .with("SupportedStorageElementTypes", u16s(&[5]))
        .with("SupportedSynchronousActions", u16s(&[5, 6, 7]))
        .with("SupportedAsynchronousActions", u16s(&[]))
        .with("SupportedStorageElementFeatures", u16s(&[3, 5, 12]))
        .with("SupportedStoragePoolFeatures", u16s(&[]))
        .with("SupportedCopyTypes", u16s(&[4, 5]))
        .with("InitialReplicationState", Value::Uint16(2))
        .with("SupportedStorageElementUsage", u16s(&[2]))
        .with("SupportedStoragePoolUsage", u16s(&[2]))
        .with("ClientSettableElementUsage", u16s(&[]))
        .with("ClientSettablePoolUsage", u16s(&[]))
        .with(
            "ThinProvisionedClientSettableReserve",
            Value::Boolean(false),
        )
        .with("ThinProvisionedDefaultReserve", Value::Uint64(0))
        .with_path(path)
}

fn scc_all(snap: &Snapshot) -> Vec<Instance> {
    let mut out = vec![scc(scc_service_path(), "the service")];
    out.extend(snap.pools.iter().map(|p| {
        scc(
            scc_pool_path(&p.info.name),
            &format!("pool {}", p.info.name),
        )
    }));
    out
}

fn rsc() -> Instance {
    Instance::new(RSC_CLASS)
        .with("InstanceID", Value::string(RSC_ID))
        .with(
            "ElementName",
            Value::string("Replication service capabilities"),
        )
        .with("SupportedReplicationTypes", u16s(&[6, 7, 10, 11]))
        .with("SupportedAsynchronousActions", u16s(&[2, 5]))
        .with("SupportedSynchronousActions", u16s(&[2, 5]))
        .with("SupportedStorageObjects", u16s(&[2]))
        .with_path(rsc_path())
}

fn allocated(id: &Identity, snap: &Snapshot) -> Vec<Instance> {
    let mut out: Vec<Instance> = snap
        .pools
        .iter()
        .map(|p| {
            association(
                "Cairn_AllocatedFromStoragePool",
                ("Antecedent", primordial_path()),
                ("Dependent", pool_path(&p.info.name)),
            )
            .with("SpaceConsumed", Value::Uint64(p.info.size_bytes))
        })
        .collect();
    out.extend(
        snap.volumes()
            .map(|(p, v)| allocated_volume(id, snap, p, v)),
    );
    out
}

/// A volume's AllocatedFromStoragePool: SpaceConsumed is what its pool charges it for (see
/// `docs/smis.md`, Thin Provisioning), NULL where the backend does not tell.
fn allocated_volume(id: &Identity, snap: &Snapshot, p: &PoolView, v: &Volume) -> Instance {
    let a = association(
        "Cairn_AllocatedFromStoragePool",
        ("Antecedent", pool_path(&p.info.name)),
        ("Dependent", id.volume_path(v.id)),
    );
    match snap.space.get(&v.id) {
        Some(&bytes) => a.with("SpaceConsumed", Value::Uint64(bytes)),
        None => a,
    }
}

fn system_device(id: &Identity, v: &Volume) -> Instance {
    association(
        "Cairn_SystemDevice",
        ("GroupComponent", id.system_path()),
        ("PartComponent", id.volume_path(v.id)),
    )
}

/// The classes with one instance per model volume (and, for AllocatedFromStoragePool, one per
/// pool besides): those an enumeration pages through by volume ([`page_instances`]).
pub const PAGED_CLASSES: [&str; 4] = [
    VOLUME_CLASS,
    "Cairn_SystemDevice",
    "Cairn_AllocatedFromStoragePool",
    SYNC_CLASS,
];

/// The instances of paged class `class` (see [`PAGED_CLASSES`]) that belong to the volumes
/// `ids` of `snap`, in that order: a volume, its SystemDevice, its AllocatedFromStoragePool, the
/// StorageSynchronized it is the replica side of (`snap` must hold its source). `None` for
/// another class.
pub fn page_instances(
    id: &Identity,
    snap: &Snapshot,
    ids: &[VolumeId],
    class: &str,
) -> Option<Vec<Instance>> {
    let class = PAGED_CLASSES
        .iter()
        .position(|c| c.eq_ignore_ascii_case(class))?;
    let volumes = ids.iter().filter_map(|v| snap.volume(*v));
    Some(match class {
        0 => volumes.map(|(_, v)| volume(id, v)).collect(),
        1 => volumes.map(|(_, v)| system_device(id, v)).collect(),
        2 => volumes
            .map(|(p, v)| allocated_volume(id, snap, p, v))
            .collect(),
        _ => volumes
            .filter_map(|(_, v)| relationship(snap, v).map(|rel| synchronized(id, v, rel)))
            .collect(),
    })
}

fn element_capabilities(id: &Identity, snap: &Snapshot) -> Vec<Instance> {
    let ec = |element: InstancePath, caps: InstancePath| {
        association(
            "Cairn_ElementCapabilities",
            ("ManagedElement", element),
            ("Capabilities", caps),
        )
        .with("Characteristics", u16s(&[2, 3]))
    };
    let mut out = vec![
        ec(id.scs_path(), scc_service_path()),
        ec(id.rs_path(), rsc_path()),
    ];
    out.extend(
        snap.pools
            .iter()
            .map(|p| ec(pool_path(&p.info.name), scc_pool_path(&p.info.name))),
    );
    out
}

pub(crate) fn synchronized(id: &Identity, v: &Volume, rel: Relationship) -> Instance {
    let t = rel.tag;
    let mut inst = association(
        SYNC_CLASS,
        ("SystemElement", id.volume_path(rel.source)),
        ("SyncedElement", id.volume_path(v.id)),
    )
    .with("SyncType", Value::Uint16(t.sync_type))
    .with("Mode", Value::Uint16(MODE_ASYNC))
    .with("CopyType", Value::Uint16(t.copy_type))
    .with("CopyState", Value::Uint16(t.copy_state))
    .with("ProgressStatus", Value::Uint16(t.progress_status))
    .with("ReplicaType", Value::Uint16(t.replica_type))
    .with("SyncMaintained", Value::Boolean(false))
    .with(
        "WhenEstablished",
        Value::DateTime(CimDateTime::from_unix_seconds(v.created_unix_secs)),
    );
    inst.set("SyncState", None);
    inst
}

/// The volume a job created, while it exists.
fn job_target(j: &JobRecord, snap: &Snapshot) -> Option<VolumeId> {
    let t: VolumeId = j.target.as_deref()?.parse().ok()?;
    snap.volume(t).map(|_| t)
}

fn job_status(state: u16) -> (&'static str, &'static [u16]) {
    match state {
        jobs::JOB_STATE_RUNNING => ("Running", &[2]),
        jobs::JOB_STATE_COMPLETED => ("Completed", &[2, 17]),
        jobs::JOB_STATE_TERMINATED => ("Terminated", &[10]),
        jobs::JOB_STATE_KILLED => ("Killed", &[10]),
        _ => ("Exception", &[6, 17]),
    }
}

pub fn job_instance(j: &JobRecord, tbr_secs: u64) -> Instance {
    let (status, op) = job_status(j.state);
    let end = j.finished_unix_secs.unwrap_or_else(jobs::now_unix_secs);
    let mut inst = Instance::new(JOB_CLASS)
        .with(
            "InstanceID",
            Value::string(format!("{JOB_ID_PREFIX}{}", j.id)),
        )
        .with("Name", Value::string("CreateElementReplica"))
        .with("ElementName", Value::string(&j.description))
        .with("Description", Value::string(&j.description))
        .with("JobState", Value::Uint16(j.state))
        .with("JobStatus", Value::string(status))
        .with("OperationalStatus", u16s(op))
        .with(
            "HealthState",
            Value::Uint16(if j.state == jobs::JOB_STATE_EXCEPTION {
                20
            } else {
                5
            }),
        )
        .with("PercentComplete", Value::Uint16(j.percent.min(100)))
        .with("DeleteOnCompletion", Value::Boolean(false))
        .with(
            "TimeBeforeRemoval",
            Value::DateTime(CimDateTime::interval_seconds(tbr_secs)),
        )
        .with(
            "TimeSubmitted",
            Value::DateTime(CimDateTime::from_unix_seconds(j.submitted_unix_secs)),
        )
        .with(
            "StartTime",
            Value::DateTime(CimDateTime::from_unix_seconds(j.submitted_unix_secs)),
        )
        .with(
            "TimeOfLastStateChange",
            Value::DateTime(CimDateTime::from_unix_seconds(j.last_change_unix_secs)),
        )
        .with(
            "ElapsedTime",
            Value::DateTime(CimDateTime::interval_seconds(
                end.saturating_sub(j.submitted_unix_secs),
            )),
        )
        .with("JobRunTimes", Value::Uint32(1))
        .with("LocalOrUtcTime", Value::Uint16(2))
        .with(
            "ErrorCode",
            Value::Uint16(if j.state == jobs::JOB_STATE_EXCEPTION {
                4
            } else {
                0
            }),
        )
        .with_path(job_path(j.id));
    inst.set("ErrorDescription", j.error.clone().map(Value::String));
    inst
}

/// The CIM_Error describing a failed job.
pub fn job_error(j: &JobRecord) -> Option<Instance> {
    let message = j.error.clone()?;
    Some(
        Instance::new("CIM_Error")
            .with("ErrorType", Value::Uint16(4))
            .with("OwningEntity", Value::string("Cairn"))
            .with("MessageID", Value::string("CAIRN0001"))
            .with("Message", Value::string(message))
            .with("PerceivedSeverity", Value::Uint16(5))
            .with("ProbableCause", Value::Uint16(1))
            .with("CIMStatusCode", Value::Uint32(1))
            .with("CIMStatusCodeDescription", Value::string("CIM_ERR_FAILED")),
    )
}

// ---- interop --------------------------------------------------------------------------------

/// The array's profile registrations, for `InteropProvider`: Array with the system as its central
/// element, and the component profiles referenced from it (SNIA direction) with theirs.
pub fn registrations(id: &Identity) -> Vec<ProfileRegistration> {
    let (array_id, name, version) = ARRAY_PROFILE;
    let mut array = ProfileRegistration::snia(array_id, name, version);
    array.conforming_elements = vec![id.system_path()];
    let mut out = vec![array];
    for (iid, name, version) in COMPONENT_PROFILES {
        let mut p = ProfileRegistration::snia(iid, name, version);
        p.component_of = vec![array_id.to_owned()];
        p.conforming_elements = match name {
            "Block Services" => vec![id.scs_path()],
            "Replication Services" => vec![id.rs_path()],
            "Physical Package" => vec![id.package_path()],
            "Software" => vec![software_path()],
            _ => Vec::new(),
        };
        out.push(p);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn naa_names_are_type_6_and_32_digits() {
        let id = VolumeId([0xab; 16]);
        let n = naa_name(id);
        assert_eq!(n.len(), 32);
        assert!(n.starts_with('6'));
        assert_eq!(&n[1..], &id.to_string().to_ascii_uppercase()[1..]);
    }

    #[test]
    fn relationships_and_visibility_follow_the_tags() {
        use cairn_array::{IntoBackend, VolumeSpec};
        use cairn_engine::{Pool, PoolOptions, Storage};
        let storage = std::sync::Arc::new(Storage::new());
        let dev = std::sync::Arc::new(cairn_io::MemDevice::new(16 << 20));
        let pool = Pool::create(dev, "p", PoolOptions::default()).expect("pool");
        storage.add_pool(pool).expect("add");
        let array = storage.into_backend();
        let plain_spec = VolumeSpec::default();
        let src = array
            .create_volume("p", "src", 1 << 20, &plain_spec)
            .expect("volume");
        let plain = array
            .snapshot(src.id, "plain", &plain_spec)
            .expect("snapshot");
        let detached = array
            .snapshot(src.id, "detached", &plain_spec)
            .expect("snapshot");
        let tag = ReplicaRecord::replica(src.id, SYNC_TYPE_SNAPSHOT, 0).detached();
        array.set_replica(detached.id, tag).expect("tag");
        let hidden = |replica| VolumeSpec {
            hidden: true,
            replica: Some(replica),
            ..VolumeSpec::default()
        };
        let target = array
            .create_volume(
                "p",
                "target",
                1 << 20,
                &hidden(ReplicaRecord::copy_target(src.id, SYNC_TYPE_SNAPSHOT, 1)),
            )
            .expect("volume");
        array
            .snapshot(
                src.id,
                "pit",
                &hidden(ReplicaRecord::point_in_time(src.id, 1)),
            )
            .expect("snapshot");

        let snap = Snapshot::take(array.as_ref());
        let names: Vec<&str> = snap.pools[0]
            .volumes
            .iter()
            .map(|v| v.name.as_str())
            .collect();
        assert_eq!(names.len(), 4, "{names:?}");
        assert!(
            !names.contains(&"pit"),
            "internal snapshots are not in the model"
        );
        let rel = |id| relationship(&snap, snap.volume(id).expect("in model").1);
        let r = rel(plain.id).expect("untagged snapshot is a snapshot replica");
        assert_eq!(
            (r.source, r.tag.sync_type, r.tag.copy_state),
            (src.id, 7, 4)
        );
        assert_eq!(rel(detached.id), None);
        let t = rel(target.id).expect("a running copy is a relationship");
        assert_eq!((t.tag.copy_state, t.tag.progress_status), (2, 6));
        assert_eq!(rel(src.id), None);

        array.delete_volume(src.id).expect("delete source");
        let snap = Snapshot::take(array.as_ref());
        let plain_now = snap.volume(plain.id).expect("snapshot survives").1;
        assert_eq!(
            relationship(&snap, plain_now),
            None,
            "no relationship without a source"
        );
    }

    #[test]
    fn paths_parse_back() {
        let id = Identity {
            system_name: "S".into(),
            version: "0.1.0".into(),
        };
        let v = VolumeId([3; 16]);
        assert_eq!(volume_id_of(&id.volume_path(v)), Some(v));
        assert_eq!(pool_name_of(&pool_path("pool0")), Some("pool0"));
        assert_eq!(pool_name_of(&primordial_path()), None);
        assert_eq!(job_id_of(&job_path(42)), Some(42));
    }
}
