//! Host access: which initiator sees which volume at which LUN, through which target port — the
//! access model a block protocol enforces and management (SMI-S masking) changes.
//!
//! The model is groups and views, as SMI-S Group Masking and Mapping has them: known initiator
//! names (hardware IDs), initiator groups (of those names), target-port groups (of the ports
//! [`HostAccess::target_ports`] lists), device groups (volumes, each with its LUN number) and
//! masking views, each naming one group of each kind. An initiator sees the volumes of every view
//! whose initiator group holds its name, through the ports of that view's target group. Each
//! port tells what a login through it starts from ([`LoginOffer`]), as the protocol negotiates it.
//!
//! Invariants (kept by every [`HostAccess`] implementation, which refuses a change that would
//! break one and then changes nothing): names are unique per kind; a group names only known
//! members; a view names existing groups; no initiator is given two volumes at one LUN nor one
//! volume at two LUNs; LUN numbers are below 256; a group in a view or an initiator in a group is
//! not deleted unless forced. Initiator names are kept in lower case (RFC 3722). Volumes are
//! named by their 128-bit id in 32 hex digits, so a rename does not move a mapping.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::error::Result;

/// Group of members of one kind, by name.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Group {
    pub name: String,
    /// Initiator names (lower case) or target port names.
    pub members: Vec<String>,
}

/// One volume of a device group at its LUN number.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mapped {
    /// The volume's id, 32 lower-case hex digits.
    pub volume: String,
    pub lun: u16,
}

/// A device group: volumes with their LUN numbers, in the order they were added.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceGroup {
    pub name: String,
    pub volumes: Vec<Mapped>,
}

/// A masking view: the volumes of its device group, seen by the initiators of its initiator
/// group through the ports of its target group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct View {
    pub name: String,
    pub initiator_group: String,
    pub target_group: String,
    pub device_group: String,
}

/// The whole access model.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessModel {
    /// Known initiator names (SMI-S StorageHardwareIDs), lower case.
    #[serde(default)]
    pub initiators: Vec<String>,
    #[serde(default)]
    pub initiator_groups: Vec<Group>,
    #[serde(default)]
    pub target_groups: Vec<Group>,
    #[serde(default)]
    pub device_groups: Vec<DeviceGroup>,
    #[serde(default)]
    pub views: Vec<View>,
}

/// The three kinds of masking group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupKind {
    Initiator,
    Target,
    Device,
}

/// One change to the model. Members are initiator names, target port names or volume ids, by
/// the group's kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// Makes an initiator name known.
    AddInitiator(String),
    /// Forgets an initiator name that no group holds.
    RemoveInitiator(String),
    CreateGroup {
        kind: GroupKind,
        name: String,
        members: Vec<String>,
    },
    /// Adds members; for a device group `luns` gives each volume's LUN (empty: the smallest free
    /// numbers).
    AddMembers {
        kind: GroupKind,
        name: String,
        members: Vec<String>,
        luns: Vec<u16>,
    },
    RemoveMembers {
        kind: GroupKind,
        name: String,
        members: Vec<String>,
    },
    /// Deletes a group; one in a view is refused unless `force`, which deletes those views too.
    DeleteGroup {
        kind: GroupKind,
        name: String,
        force: bool,
    },
    CreateView(View),
    DeleteView(String),
    /// Several changes, applied in order, all or none (Masking and Mapping's ExposePaths makes
    /// groups and a view in one call).
    All(Vec<Change>),
}

/// A target port: one portal of the target node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetPort {
    /// The port's name in target groups (e.g. `iqn.2026-01.org.cairn:node1,t,0x0001`).
    pub name: String,
    /// The target node's name (IQN).
    pub target_name: String,
    /// The listening address.
    pub addr: SocketAddr,
    /// What a login through this port starts from.
    pub login: LoginOffer,
}

/// A data digest or header digest (RFC 7143 §13.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Digest {
    None,
    Crc32c,
}

/// An authentication method of the security stage (RFC 7143 §12.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthMethod {
    None,
    Chap,
}

/// The target's side of a login through one port (RFC 7143 §13): for each key, the value the
/// target's result function combines with the initiator's offer, so a negotiated value never
/// lies beyond it (a minimum never above it, a maximum never below it, a Boolean OR or AND with
/// it). Management shows it as iSCSI session and connection settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoginOffer {
    /// iSCSI versions served (VersionMin ..= VersionMax).
    pub version_min: u8,
    pub version_max: u8,
    /// MaxConnections (minimum).
    pub max_connections: u32,
    /// InitialR2T (OR): false when the target takes unsolicited data unless the initiator refuses.
    pub initial_r2t: bool,
    /// ImmediateData (AND).
    pub immediate_data: bool,
    /// MaxOutstandingR2T (minimum).
    pub max_outstanding_r2t: u32,
    /// FirstBurstLength (minimum, and never above MaxBurstLength).
    pub first_burst_bytes: u32,
    /// MaxBurstLength (minimum).
    pub max_burst_bytes: u32,
    /// DataSequenceInOrder and DataPDUInOrder (OR).
    pub data_sequence_in_order: bool,
    pub data_pdu_in_order: bool,
    /// DefaultTime2Wait (maximum).
    pub default_time2wait_secs: u32,
    /// DefaultTime2Retain (minimum).
    pub default_time2retain_secs: u32,
    /// ErrorRecoveryLevel (minimum).
    pub error_recovery_level: u8,
    /// The MaxRecvDataSegmentLength the target declares: the longest data segment it reads.
    pub recv_data_segment_bytes: u32,
    /// IFMarker/OFMarker (AND): markers are never used when false.
    pub markers: bool,
    /// Header and data digests accepted, the first being RFC 7143's default; the target takes
    /// the first of the initiator's list it accepts.
    pub digests: Vec<Digest>,
    /// The authentication method a login through the port uses (the only one it accepts).
    pub auth: AuthMethod,
}

/// The access model of a block protocol, as management changes it.
pub trait HostAccess: Send + Sync + std::fmt::Debug {
    /// The model now.
    fn model(&self) -> AccessModel;

    /// The target ports (one per listener).
    fn target_ports(&self) -> Vec<TargetPort>;

    /// Applies `change` durably (the model on disk is replaced whole) and makes live sessions see
    /// it; returns the new model. A refused change leaves everything as it was: unknown member,
    /// group or view → `NotFound`; a name taken → `AlreadyExists`; a LUN already used, a group
    /// in a view or an initiator in a group → `InUse`; a member not in the group, a bad LUN or
    /// too many LUNs → `InvalidArgument`; the model could not be saved → `Io`.
    fn apply(&self, change: Change) -> Result<AccessModel>;
}

impl AccessModel {
    /// The view named `name`.
    pub fn view(&self, name: &str) -> Option<&View> {
        self.views.iter().find(|v| v.name == name)
    }

    /// The initiator or target group `name` (`kind` must not be `Device`).
    pub fn group(&self, kind: GroupKind, name: &str) -> Option<&Group> {
        let groups = match kind {
            GroupKind::Initiator => &self.initiator_groups,
            GroupKind::Target => &self.target_groups,
            GroupKind::Device => return None,
        };
        groups.iter().find(|g| g.name == name)
    }

    /// The device group `name`.
    pub fn device_group(&self, name: &str) -> Option<&DeviceGroup> {
        self.device_groups.iter().find(|g| g.name == name)
    }

    /// True if any device group of any view holds volume `id` (hex).
    pub fn is_mapped(&self, id: &str) -> bool {
        self.views.iter().any(|v| {
            self.device_group(&v.device_group)
                .is_some_and(|g| g.volumes.iter().any(|m| m.volume == id))
        })
    }
}
