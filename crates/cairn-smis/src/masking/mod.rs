//! Host access over SMI-S: Group Masking and Mapping 1.5, Masking and Mapping 1.6 (see
//! [`expose`]) and iSCSI Target Ports 1.1, over the
//! access model a block protocol keeps ([`cairn_export::access::HostAccess`]).
//!
//! The model is read from the `HostAccess` at each request and shown as: initiator names as
//! `Cairn_StorageHardwareID`, groups as `Cairn_Initiator/Target/DeviceMaskingGroup` (their
//! members through `Cairn_MemberOfCollection`, volumes through `Cairn_OrderedMemberOfCollection`),
//! each view as a `Cairn_SCSIProtocolController` (NameFormat 1) with its three groups and its
//! volumes (`Cairn_ProtocolControllerForUnit`, DeviceNumber the LUN), and the target's ports (see
//! [`ports`]) with their negotiation settings (see [`settings`]), and each initiator's right to a
//! view's volumes as a privilege (see [`privilege`]).
//! [`methods`] changes the model through `HostAccess::apply` and nothing else.
//!
//! Invariants: no state is kept here, so the model and the target stay one truth; paths name
//! groups and views by their names (unique per kind), initiators by their lower-case names.

mod expose;
mod methods;
mod ports;
mod privilege;
mod settings;

use cairn_array::{ArrayBackend, VolumeId};
use cairn_cim::{Instance, InstancePath, ProfileRegistration, Value};
use cairn_export::access::{AccessModel, GroupKind, HostAccess};

use crate::interop::association;
use crate::model::{self, id_path, u16s, Identity};

pub use methods::{invoke_resolved, names as method_names};

const HWID_CLASS: &str = "Cairn_StorageHardwareID";
const SPC_CLASS: &str = "Cairn_SCSIProtocolController";
const GMMS_CLASS: &str = "Cairn_GroupMaskingMappingService";
const HWMS_CLASS: &str = "Cairn_StorageHardwareIDManagementService";
const GMMC_CLASS: &str = "Cairn_GroupMaskingMappingCapabilities";
const CCS_CLASS: &str = "Cairn_ControllerConfigurationService";
const PCMC_CLASS: &str = "Cairn_ProtocolControllerMaskingCapabilities";
const PCMC_ID: &str = "CAIRN:PCMC";

const HWID_PREFIX: &str = "CAIRN:HWID:";
const VIEW_PREFIX: &str = "CAIRN:VIEW:";
const GMMC_ID: &str = "CAIRN:GMMC";

/// The profiles host access adds, component profiles of Array: Group Masking and Mapping,
/// Masking and Mapping and iSCSI Target Ports.
pub const PROFILES: [(&str, &str, &str); 3] = [
    (
        "CAIRN:Profile:MaskingMapping",
        "Masking and Mapping",
        "1.6.0",
    ),
    (
        "CAIRN:Profile:GroupMaskingMapping",
        "Group Masking and Mapping",
        "1.5.0",
    ),
    (
        "CAIRN:Profile:iSCSITargetPorts",
        "iSCSI Target Ports",
        "1.1.0",
    ),
];

/// The concrete classes with instances once host access is wired, in enumeration order. The
/// group masking service is a `CIM_ControllerConfigurationService` too (a subclass): the
/// Masking and Mapping service comes before it, for clients that take the first of that class.
pub const CLASSES: [&str; 33] = [
    CCS_CLASS,
    PCMC_CLASS,
    GMMS_CLASS,
    GMMC_CLASS,
    HWMS_CLASS,
    HWID_CLASS,
    "Cairn_InitiatorMaskingGroup",
    "Cairn_TargetMaskingGroup",
    "Cairn_DeviceMaskingGroup",
    "Cairn_MemberOfCollection",
    "Cairn_OrderedMemberOfCollection",
    "Cairn_ServiceAffectsElement",
    SPC_CLASS,
    "Cairn_ProtocolControllerForUnit",
    "Cairn_AssociatedInitiatorMaskingGroup",
    "Cairn_AssociatedTargetMaskingGroup",
    "Cairn_AssociatedDeviceMaskingGroup",
    "Cairn_ConcreteDependency",
    "Cairn_iSCSIProtocolEndpoint",
    "Cairn_TCPProtocolEndpoint",
    "Cairn_IPProtocolEndpoint",
    "Cairn_BindsTo",
    "Cairn_HostedAccessPoint",
    "Cairn_SAPAvailableForElement",
    "Cairn_iSCSISessionSettings",
    "Cairn_iSCSIConnectionSettings",
    "Cairn_iSCSICapabilities",
    privilege::CLASSES[0],
    privilege::CLASSES[1],
    privilege::CLASSES[2],
    // Classes the array model also has instances of; host access adds its own.
    "Cairn_HostedService",
    "Cairn_ElementCapabilities",
    "Cairn_ElementSettingData",
];

fn group_class(kind: GroupKind) -> (&'static str, &'static str) {
    match kind {
        GroupKind::Initiator => ("Cairn_InitiatorMaskingGroup", "CAIRN:IMG:"),
        GroupKind::Target => ("Cairn_TargetMaskingGroup", "CAIRN:TMG:"),
        GroupKind::Device => ("Cairn_DeviceMaskingGroup", "CAIRN:DMG:"),
    }
}

pub(crate) fn group_path(kind: GroupKind, name: &str) -> InstancePath {
    let (class, prefix) = group_class(kind);
    id_path(class, &format!("{prefix}{name}"))
}

/// The kind and name of the group `path` names.
pub(crate) fn group_of(path: &InstancePath) -> Option<(GroupKind, String)> {
    let iid = model::key_text(path, "InstanceID")?;
    [GroupKind::Initiator, GroupKind::Target, GroupKind::Device]
        .into_iter()
        .find_map(|k| {
            let (class, prefix) = group_class(k);
            let class_ok = path.class_name.eq_ignore_ascii_case(class)
                || path.class_name.to_ascii_lowercase().starts_with("cim_");
            let name = iid.strip_prefix(prefix).filter(|_| class_ok)?;
            Some((k, name.to_owned()))
        })
}

pub(crate) fn hwid_path(initiator: &str) -> InstancePath {
    id_path(HWID_CLASS, &format!("{HWID_PREFIX}{initiator}"))
}

pub(crate) fn hwid_of(path: &InstancePath) -> Option<&str> {
    model::key_text(path, "InstanceID")?.strip_prefix(HWID_PREFIX)
}

pub(crate) fn view_path(id: &Identity, name: &str) -> InstancePath {
    id.hosted(SPC_CLASS, "DeviceID", &format!("{VIEW_PREFIX}{name}"))
}

pub(crate) fn view_of(path: &InstancePath) -> Option<&str> {
    model::key_text(path, "DeviceID")?.strip_prefix(VIEW_PREFIX)
}

fn gmms_path(id: &Identity) -> InstancePath {
    id.hosted(GMMS_CLASS, "Name", "CAIRN:GroupMaskingMappingService")
}

fn ccs_path(id: &Identity) -> InstancePath {
    id.hosted(CCS_CLASS, "Name", "CAIRN:ControllerConfigurationService")
}

fn hwms_path(id: &Identity) -> InstancePath {
    id.hosted(
        HWMS_CLASS,
        "Name",
        "CAIRN:StorageHardwareIDManagementService",
    )
}

/// The registrations of [`PROFILES`], component profiles of `array_id`: the group masking
/// service and the target's iSCSI endpoints are their central elements.
pub fn registrations(
    id: &Identity,
    array_id: &str,
    access: &dyn HostAccess,
) -> Vec<ProfileRegistration> {
    PROFILES
        .iter()
        .map(|&(iid, name, version)| {
            let mut p = ProfileRegistration::snia(iid, name, version);
            p.component_of = vec![array_id.to_owned()];
            p.conforming_elements = match name {
                "Group Masking and Mapping" => vec![gmms_path(id)],
                "Masking and Mapping" => vec![ccs_path(id)],
                _ => ports::endpoint_paths(id, &access.target_ports()),
            };
            p
        })
        .collect()
}

/// The instances of concrete class `class` host access shows (none for classes it does not own).
pub fn instances(
    id: &Identity,
    access: &dyn HostAccess,
    array: &dyn ArrayBackend,
    class: &str,
) -> Vec<Instance> {
    let c = class.to_ascii_lowercase();
    let target_ports = access.target_ports();
    if let Some(found) = ports::instances(id, &target_ports, &c) {
        return found;
    }
    if let Some(found) = settings::instances(id, &target_ports, &c) {
        return found;
    }
    let m = access.model();
    if let Some(found) = privilege::instances(id, &m, &c) {
        return found;
    }
    match c.as_str() {
        "cairn_groupmaskingmappingservice" => {
            vec![model::service(
                id,
                gmms_path(id),
                "Group masking and mapping service",
            )]
        }
        "cairn_storagehardwareidmanagementservice" => {
            vec![model::service(
                id,
                hwms_path(id),
                "Hardware ID management service",
            )]
        }
        "cairn_controllerconfigurationservice" => {
            vec![model::service(
                id,
                ccs_path(id),
                "Controller configuration service",
            )]
        }
        "cairn_groupmaskingmappingcapabilities" => vec![capabilities()],
        "cairn_protocolcontrollermaskingcapabilities" => vec![masking_capabilities()],
        "cairn_storagehardwareid" => m.initiators.iter().map(|i| hwid(i)).collect(),
        "cairn_initiatormaskinggroup" | "cairn_targetmaskinggroup" | "cairn_devicemaskinggroup" => {
            groups(&m, &c)
        }
        "cairn_scsiprotocolcontroller" => {
            let mut out = ports::node(id, &target_ports);
            out.extend(m.views.iter().map(|v| view(id, &v.name)));
            out
        }
        _ => associations(id, &m, array, &c),
    }
}

fn capabilities() -> Instance {
    Instance::new(GMMC_CLASS)
        .with("InstanceID", Value::string(GMMC_ID))
        .with(
            "ElementName",
            Value::string("Group masking and mapping capabilities"),
        )
        // iSCSI names only (IDType 5).
        .with(
            "ValidHardwareIdTypes",
            Value::Array(cairn_cim::CimType::Uint16, vec![Value::Uint16(5)]),
        )
        // Groups are nameable, may be empty, may be empty in a view, may be in several views.
        .with("SupportedInitiatorGroupFeatures", u16s(&[2, 4, 5, 8]))
        .with("SupportedTargetGroupFeatures", u16s(&[2, 4, 5, 8]))
        .with("SupportedDeviceGroupFeatures", u16s(&[2, 4, 5, 8]))
        // CreateGroup, DeleteGroup, AddMembers, RemoveMembers, CreateMaskingView,
        // DeleteMaskingView: all answered at once.
        .with(
            "SupportedSynchronousActions",
            u16s(&[19, 20, 21, 22, 23, 24]),
        )
        .with("SupportedAsynchronousActions", u16s(&[]))
        .with_path(id_path(GMMC_CLASS, GMMC_ID))
}

fn masking_capabilities() -> Instance {
    Instance::new(PCMC_CLASS)
        .with("InstanceID", Value::string(PCMC_ID))
        .with(
            "ElementName",
            Value::string("Masking and mapping capabilities"),
        )
        .with(
            "ValidHardwareIdTypes",
            Value::Array(cairn_cim::CimType::Uint16, vec![Value::Uint16(5)]),
        )
        // 3: a view may name several ports.
        .with("PortsPerView", Value::Uint16(3))
        .with("ClientSelectableDeviceNumbers", Value::Boolean(true))
        .with("AttachDeviceSupported", Value::Boolean(false))
        .with("OneHardwareIDPerView", Value::Boolean(false))
        .with("UniqueUnitNumbersPerPort", Value::Boolean(false))
        .with("PrivilegeDeniedSupported", Value::Boolean(false))
        .with(
            "ProtocolControllerRequiresAuthorizedIdentity",
            Value::Boolean(false),
        )
        .with(
            "ProtocolControllerSupportsCollections",
            Value::Boolean(true),
        )
        .with("ExposePathsSupported", Value::Boolean(true))
        .with("CreateProtocolControllerSupported", Value::Boolean(false))
        .with(
            "MaximumMapCount",
            Value::Uint16(cairn_export::limits::LUNS_PER_INITIATOR_MAX),
        )
        .with("SPCAllowsNoLUs", Value::Boolean(true))
        .with("SPCAllowsNoTargets", Value::Boolean(true))
        .with("SPCAllowsNoInitiators", Value::Boolean(true))
        .with("SPCSupportsDefaultViews", Value::Boolean(false))
        .with_path(id_path(PCMC_CLASS, PCMC_ID))
}

fn hwid(initiator: &str) -> Instance {
    Instance::new(HWID_CLASS)
        .with(
            "InstanceID",
            Value::string(format!("{HWID_PREFIX}{initiator}")),
        )
        .with("StorageID", Value::string(initiator))
        .with("IDType", Value::Uint16(5))
        .with("ElementName", Value::string(initiator))
        .with_path(hwid_path(initiator))
}

fn group(kind: GroupKind, name: &str) -> Instance {
    let path = group_path(kind, name);
    let iid = model::key_text(&path, "InstanceID")
        .unwrap_or_default()
        .to_owned();
    Instance::new(path.class_name.clone())
        .with("InstanceID", Value::string(iid))
        .with("ElementName", Value::string(name))
        .with_path(path)
}

fn groups(m: &AccessModel, class: &str) -> Vec<Instance> {
    match class {
        "cairn_initiatormaskinggroup" => m
            .initiator_groups
            .iter()
            .map(|g| group(GroupKind::Initiator, &g.name))
            .collect(),
        "cairn_targetmaskinggroup" => m
            .target_groups
            .iter()
            .map(|g| group(GroupKind::Target, &g.name))
            .collect(),
        _ => m
            .device_groups
            .iter()
            .map(|g| group(GroupKind::Device, &g.name))
            .collect(),
    }
}

fn view(id: &Identity, name: &str) -> Instance {
    let path = view_path(id, name);
    let mut inst = Instance::new(SPC_CLASS);
    for k in [
        "SystemCreationClassName",
        "SystemName",
        "CreationClassName",
        "DeviceID",
    ] {
        if let Some(v) = model::key_text(&path, k) {
            inst.set(k, Some(Value::string(v)));
        }
    }
    inst.with("ElementName", Value::string(name))
        .with("Name", Value::string(name))
        .with("NameFormat", Value::Uint16(1))
        .with("OtherNameFormat", Value::string("Cairn masking view"))
        .with("OperationalStatus", u16s(&[2]))
        .with_path(path)
}

/// Volume path of `hex` if the volume is still in the model.
fn volume_path(id: &Identity, array: &dyn ArrayBackend, hex: &str) -> Option<InstancePath> {
    let vid: VolumeId = hex.parse().ok()?;
    array
        .volume(vid)
        .filter(model::in_model)
        .map(|_| id.volume_path(vid))
}

fn associations(
    id: &Identity,
    m: &AccessModel,
    array: &dyn ArrayBackend,
    c: &str,
) -> Vec<Instance> {
    match c {
        "cairn_memberofcollection" => members(id, m),
        "cairn_orderedmemberofcollection" => ordered_members(id, m, array),
        "cairn_serviceaffectselement" => service_affects_groups(id, m),
        "cairn_protocolcontrollerforunit" => units(id, m, array),
        "cairn_concretedependency" => view_dependencies(id, m),
        "cairn_hostedservice" => [gmms_path(id), ccs_path(id), hwms_path(id)]
            .into_iter()
            .map(|s| {
                association(
                    "Cairn_HostedService",
                    ("Antecedent", id.system_path()),
                    ("Dependent", s),
                )
            })
            .collect(),
        "cairn_elementcapabilities" => [
            id_path(GMMC_CLASS, GMMC_ID),
            id_path(PCMC_CLASS, PCMC_ID),
            settings::capabilities_path(),
        ]
        .into_iter()
        .map(|c| {
            association(
                "Cairn_ElementCapabilities",
                ("ManagedElement", id.system_path()),
                ("Capabilities", c),
            )
        })
        .collect(),
        _ => view_groups(id, m, c),
    }
}

/// The group masking service affects every masking group.
fn service_affects_groups(id: &Identity, m: &AccessModel) -> Vec<Instance> {
    let all = [
        (GroupKind::Initiator, &m.initiator_groups),
        (GroupKind::Target, &m.target_groups),
    ];
    let names = all
        .into_iter()
        .flat_map(|(k, gs)| gs.iter().map(move |g| group_path(k, &g.name)))
        .chain(
            m.device_groups
                .iter()
                .map(|g| group_path(GroupKind::Device, &g.name)),
        );
    names
        .map(|g| {
            association(
                "Cairn_ServiceAffectsElement",
                ("AffectingElement", gmms_path(id)),
                ("AffectedElement", g),
            )
        })
        .collect()
}

/// Every masking view depends on both services that can change it.
fn view_dependencies(id: &Identity, m: &AccessModel) -> Vec<Instance> {
    m.views
        .iter()
        .flat_map(|v| {
            [gmms_path(id), ccs_path(id)].map(|s| {
                association(
                    "Cairn_ConcreteDependency",
                    ("Antecedent", s),
                    ("Dependent", view_path(id, &v.name)),
                )
            })
        })
        .collect()
}

fn members(id: &Identity, m: &AccessModel) -> Vec<Instance> {
    let mut out: Vec<Instance> = m
        .initiator_groups
        .iter()
        .flat_map(|g| {
            g.members.iter().map(|i| {
                association(
                    "Cairn_MemberOfCollection",
                    ("Collection", group_path(GroupKind::Initiator, &g.name)),
                    ("Member", hwid_path(i)),
                )
            })
        })
        .collect();
    out.extend(m.target_groups.iter().flat_map(|g| {
        g.members.iter().map(|port| {
            association(
                "Cairn_MemberOfCollection",
                ("Collection", group_path(GroupKind::Target, &g.name)),
                ("Member", ports::endpoint_path(id, port)),
            )
        })
    }));
    out
}

fn ordered_members(id: &Identity, m: &AccessModel, array: &dyn ArrayBackend) -> Vec<Instance> {
    let mut out = Vec::new();
    for g in &m.device_groups {
        for (i, mapped) in g.volumes.iter().enumerate() {
            let Some(vol) = volume_path(id, array, &mapped.volume) else {
                continue;
            };
            let mut a = association(
                "Cairn_OrderedMemberOfCollection",
                ("Collection", group_path(GroupKind::Device, &g.name)),
                ("Member", vol),
            );
            a.set("AssignedSequence", Some(Value::Uint64(i as u64 + 1)));
            out.push(a);
        }
    }
    out
}

fn units(id: &Identity, m: &AccessModel, array: &dyn ArrayBackend) -> Vec<Instance> {
    let mut out = Vec::new();
    for v in &m.views {
        let Some(g) = m.device_group(&v.device_group) else {
            continue;
        };
        for mapped in &g.volumes {
            let Some(vol) = volume_path(id, array, &mapped.volume) else {
                continue;
            };
            let mut a = association(
                "Cairn_ProtocolControllerForUnit",
                ("Antecedent", view_path(id, &v.name)),
                ("Dependent", vol),
            );
            a.set("DeviceNumber", Some(Value::string(mapped.lun.to_string())));
            a.set("DeviceAccess", Some(Value::Uint16(2)));
            out.push(a);
        }
    }
    out
}

/// The Associated{Initiator,Target,Device}MaskingGroup of every view.
fn view_groups(id: &Identity, m: &AccessModel, c: &str) -> Vec<Instance> {
    let (class, kind) = match c {
        "cairn_associatedinitiatormaskinggroup" => (
            "Cairn_AssociatedInitiatorMaskingGroup",
            GroupKind::Initiator,
        ),
        "cairn_associatedtargetmaskinggroup" => {
            ("Cairn_AssociatedTargetMaskingGroup", GroupKind::Target)
        }
        "cairn_associateddevicemaskinggroup" => {
            ("Cairn_AssociatedDeviceMaskingGroup", GroupKind::Device)
        }
        _ => return Vec::new(),
    };
    m.views
        .iter()
        .map(|v| {
            let name = match kind {
                GroupKind::Initiator => &v.initiator_group,
                GroupKind::Target => &v.target_group,
                GroupKind::Device => &v.device_group,
            };
            association(
                class,
                ("Antecedent", group_path(kind, name)),
                ("Dependent", view_path(id, &v.name)),
            )
        })
        .collect()
}
