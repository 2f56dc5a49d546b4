//! The producer's last state seen of the per-volume objects (volumes and the
//! StorageSynchronized each replica is the target side of), kept as the backend's records
//! rather than as CIM instances: an array holds one of each per volume and snapshot, and a
//! record costs about a tenth of the instance made from it. An instance is made again from its
//! record only when an indication carries it. They are read from the volume index (see
//! [`crate::index`]), so a change costs the volumes it names, not a read of the pools.
//!
//! Invariants: an instance made from a record is the one the array model enumerates for that
//! record (the same model functions), with its path in the array's namespace; records are read
//! without the space the volumes consume (no watched property depends on it), so reading them
//! walks no volume tree.

use cairn_array::{Volume, VolumeId};
use cairn_cim::Instance;

use crate::interop::CAIRN_NAMESPACE;
use crate::model::{self, Identity, Relationship, Snapshot};

/// The key of a synchronization: its source and its replica.
pub(super) type SyncKey = (VolumeId, VolumeId);

/// A synchronization as last seen: the replica and its relationship.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Synced {
    replica: Volume,
    rel: Relationship,
}

impl Synced {
    /// Its StorageSynchronized instance.
    pub(super) fn instance(&self, id: &Identity) -> Instance {
        namespaced(model::synchronized(id, &self.replica, self.rel))
    }
}

/// The StorageVolume instance of `v` (a volume in the model).
pub(super) fn volume_instance(id: &Identity, v: &Volume) -> Option<Instance> {
    model::volume_instance(id, v).map(namespaced)
}

/// The synchronizations of `snap`, in its order.
pub(super) fn syncs(snap: &Snapshot) -> Vec<(SyncKey, Synced)> {
    snap.volumes()
        .filter_map(|(_, v)| {
            let rel = model::relationship(snap, v)?;
            let synced = Synced {
                replica: v.clone(),
                rel,
            };
            Some(((rel.source, v.id), synced))
        })
        .collect()
}

fn namespaced(mut i: Instance) -> Instance {
    if let Some(p) = i.path.take() {
        i.path = Some(p.in_namespace(CAIRN_NAMESPACE));
    }
    i
}
