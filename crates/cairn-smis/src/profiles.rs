//! The component profiles of Array that describe what the array already does rather than add
//! methods: Copy Services (the snapshots and clones Replication Services and CreateReplica make,
//! described by one `CIM_StorageReplicationCapabilities` per synchronization type), Thin
//! Provisioning (every volume thin: one `CIM_StorageSetting` per volume, the pools' space limits)
//! and the system's `CIM_Location` (from [`SystemLocation`], tied to the array's physical
//! package by `CIM_PhysicalElementLocation`).
//!
//! Invariants: every instance is computed from the [`Snapshot`] of the request and the options,
//! so a setting exists exactly while its volume does; StorageSynchronized is not touched here
//! (its deprecated SyncState stays NULL, CopyState and ProgressStatus carry the state).

use cairn_array::{Volume, VolumeId};
use cairn_cim::{Instance, InstancePath, ProfileRegistration, Value};

use crate::interop::association;
use crate::model::{id_path, u16s, Identity, Snapshot};

pub const SRC_CLASS: &str = "Cairn_StorageReplicationCapabilities";
pub const SETTING_CLASS: &str = "Cairn_StorageSetting";
pub const LOCATION_CLASS: &str = "Cairn_Location";

const SETTING_ID_PREFIX: &str = "CAIRN:SETTING:";
/// (InstanceID, SupportedSynchronizationType, what) of each StorageReplicationCapabilities: one
/// per synchronization type, as Copy Services asks.
const REPLICATION_TYPES: [(&str, u16, &str); 2] = [
    ("CAIRN:SRC:UnSyncAssocDelta", 5, "delta snapshots"),
    ("CAIRN:SRC:UnSyncUnAssoc", 6, "independent clones"),
];

/// Registered profiles declared here (InstanceID, name, version); each is a component of Array
/// with the storage configuration service as its central element.
pub const PROFILES: [(&str, &str, &str); 2] = [
    ("CAIRN:Profile:CopyServices", "Copy Services", "1.5.0"),
    (
        "CAIRN:Profile:ThinProvisioning",
        "Thin Provisioning",
        "1.6.0",
    ),
];

/// Concrete classes with instances served here (besides Cairn_ElementCapabilities, which the
/// model already lists).
pub const CLASSES: [&str; 5] = [
    SRC_CLASS,
    SETTING_CLASS,
    "Cairn_ElementSettingData",
    LOCATION_CLASS,
    "Cairn_PhysicalElementLocation",
];

/// Where the array stands (CIM_Location of the system), from the daemon's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemLocation {
    /// Name (the key) and ElementName of the location.
    pub name: String,
    /// PhysicalPosition: where in the location (room, rack, slot), free text.
    pub physical_position: String,
}

impl SystemLocation {
    /// A location named after the array with no position given.
    pub fn unset(system_name: &str) -> SystemLocation {
        SystemLocation {
            name: format!("{system_name} location"),
            physical_position: String::new(),
        }
    }
}

/// The instances of concrete class `class` (lowercase or not) served here.
pub fn instances(
    id: &Identity,
    location: &SystemLocation,
    snap: &Snapshot,
    class: &str,
) -> Vec<Instance> {
    match class.to_ascii_lowercase().as_str() {
        "cairn_storagereplicationcapabilities" => REPLICATION_TYPES
            .iter()
            .map(|(iid, ty, what)| replication_capabilities(iid, *ty, what))
            .collect(),
        "cairn_elementcapabilities" => REPLICATION_TYPES
            .iter()
            .map(|(iid, ..)| {
                association(
                    "Cairn_ElementCapabilities",
                    ("ManagedElement", id.scs_path()),
                    ("Capabilities", id_path(SRC_CLASS, iid)),
                )
                .with("Characteristics", u16s(&[3]))
            })
            .collect(),
        "cairn_storagesetting" => snap.volumes().map(|(_, v)| setting(v)).collect(),
        "cairn_elementsettingdata" => snap
            .volumes()
            .map(|(_, v)| {
                association(
                    "Cairn_ElementSettingData",
                    ("ManagedElement", id.volume_path(v.id)),
                    ("SettingData", setting_path(v.id)),
                )
                .with("IsCurrent", Value::Uint16(1))
                .with("IsDefault", Value::Uint16(2))
            })
            .collect(),
        "cairn_location" => vec![location_instance(location)],
        "cairn_physicalelementlocation" => vec![association(
            "Cairn_PhysicalElementLocation",
            ("Element", id.package_path()),
            ("PhysicalLocation", location_path(location)),
        )],
        _ => Vec::new(),
    }
}

/// Copy Services and Thin Provisioning, each a component of the Array profile `array_id`.
pub fn registrations(id: &Identity, array_id: &str) -> Vec<ProfileRegistration> {
    PROFILES
        .iter()
        .map(|(iid, name, version)| {
            let mut p = ProfileRegistration::snia(*iid, *name, *version);
            p.component_of = vec![array_id.to_owned()];
            p.conforming_elements = vec![id.scs_path()];
            p
        })
        .collect()
}

fn replication_capabilities(iid: &str, sync_type: u16, what: &str) -> Instance {
    Instance::new(SRC_CLASS)
        .with("InstanceID", Value::string(iid))
        .with(
            "ElementName",
            Value::string(format!("Replication capabilities: {what}")),
        )
        .with("SupportedSynchronizationType", Value::Uint16(sync_type))
        // Local Replica Creation: same pool answers at once, another pool runs a job.
        .with("SupportedSynchronousActions", u16s(&[2]))
        .with("SupportedAsynchronousActions", u16s(&[2]))
        // Synchronized: the point in time is fixed when the method answers.
        .with("InitialReplicationState", Value::Uint16(4))
        .with("PersistentReplicasSupported", Value::Boolean(true))
        .with("SpaceLimitSupported", Value::Boolean(false))
        .with("SpaceReservationSupported", Value::Boolean(false))
        .with("LocalMirrorSnapshotSupported", Value::Boolean(false))
        .with("RemoteMirrorSnapshotSupported", Value::Boolean(false))
        .with("BidirectionalConnectionsSupported", Value::Boolean(false))
        .with_path(id_path(SRC_CLASS, iid))
}

/// The volume whose StorageSetting `path` names.
pub fn setting_volume_id(path: &InstancePath) -> Option<VolumeId> {
    crate::model::key_text(path, "InstanceID")?
        .strip_prefix(SETTING_ID_PREFIX)?
        .to_ascii_lowercase()
        .parse()
        .ok()
}

fn setting_path(id: VolumeId) -> InstancePath {
    id_path(SETTING_CLASS, &format!("{SETTING_ID_PREFIX}{id}"))
}

/// The setting a thin volume was made with: no initial reserve, space consumed bounded by the
/// volume's size, one copy of the data on one package.
fn setting(v: &Volume) -> Instance {
    Instance::new(SETTING_CLASS)
        .with(
            "InstanceID",
            Value::string(format!("{SETTING_ID_PREFIX}{}", v.id)),
        )
        .with(
            "ElementName",
            Value::string(format!("Thin provisioning of {}", v.name)),
        )
        .with("ChangeableType", Value::Uint16(0))
        .with("ThinProvisionedInitialReserve", Value::Uint64(0))
        .with("SpaceLimit", Value::Uint64(v.size_bytes))
        .with("NoSinglePointOfFailure", Value::Boolean(false))
        .with("DataRedundancyGoal", Value::Uint16(1))
        .with("DataRedundancyMin", Value::Uint16(1))
        .with("DataRedundancyMax", Value::Uint16(1))
        .with("PackageRedundancyGoal", Value::Uint16(0))
        .with("PackageRedundancyMin", Value::Uint16(0))
        .with("PackageRedundancyMax", Value::Uint16(0))
        .with_path(setting_path(v.id))
}

fn location_path(l: &SystemLocation) -> InstancePath {
    InstancePath::new(LOCATION_CLASS)
        .in_namespace(crate::interop::CAIRN_NAMESPACE)
        .with_key("Name", &l.name)
        .with_key("PhysicalPosition", &l.physical_position)
}

fn location_instance(l: &SystemLocation) -> Instance {
    Instance::new(LOCATION_CLASS)
        .with("Name", Value::string(&l.name))
        .with("PhysicalPosition", Value::string(&l.physical_position))
        .with("ElementName", Value::string(&l.name))
        .with_path(location_path(l))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_setting_names_its_volume() {
        let id = VolumeId([0x5c; 16]);
        assert_eq!(setting_volume_id(&setting_path(id)), Some(id));
        let other = id_path(SETTING_CLASS, "CAIRN:POOL:pool0");
        assert_eq!(setting_volume_id(&other), None);
    }
}
