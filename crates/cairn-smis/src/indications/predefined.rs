//! The predefined filters: the `CIM_IndicationFilter` instances the array serves in `interop`
//! from its start, one per indication the profiles it registers list (Block Services, Thin
//! Provisioning, Job Control, Replication Services, every alert for the Array, and with host
//! access Masking and Mapping and Group Masking and Mapping), so a client
//! can subscribe to them without creating filters of its own.
//!
//! Invariants: every predefined query is in the subset [`super::query`] accepts (a test parses
//! them all); their names are `SNIA:<profile>:<indication>` (`CAIRN:` for Cairn's own alerts),
//! so no client filter is mistaken for one; they are not stored in the subscriptions file, cannot be deleted or modified by a client
//! and do not count against [`crate::limits::INDICATION_FILTERS_MAX`].

use super::store::{FilterRec, Keys};
use crate::interop::CAIRN_NAMESPACE;
use crate::model::SYSTEM_CLASS;

const CQL: &str = "DMTF:CQL";

/// A modification of `class` whose `property` changed.
fn changed(class: &str, property: &str) -> String {
    format!(
        "SELECT * FROM CIM_InstModification WHERE SourceInstance ISA {class} AND \
         SourceInstance.{class}::{property} <> PreviousInstance.{class}::{property}"
    )
}

fn lifecycle(indication: &str, class: &str) -> String {
    format!("SELECT * FROM {indication} WHERE SourceInstance ISA {class}")
}

fn alert(owning_entity: &str, message_id: &str) -> String {
    format!(
        "SELECT * FROM CIM_AlertIndication WHERE OwningEntity = '{owning_entity}' AND \
         MessageID = '{message_id}'"
    )
}

/// (organisation, profile, indication, query) of every predefined filter: SNIA for the
/// indications the profiles list, CAIRN for the alerts only Cairn sends.
fn table() -> Vec<(&'static str, &'static str, &'static str, String)> {
    const POOL: &str = "CIM_StoragePool";
    const VOLUME: &str = "CIM_StorageVolume";
    const JOB: &str = "CIM_ConcreteJob";
    const SYNC: &str = "CIM_StorageSynchronized";
    let bs = "Block Services";
    let tp = "Thin Provisioning";
    let jc = "Job Control";
    vec![
        (
            "SNIA",
            "Array",
            "AlertIndication",
            "SELECT * FROM CIM_AlertIndication".to_owned(),
        ),
        ("CAIRN", "Array", "PoolFailed", alert("CAIRN", "CRN1")),
        ("CAIRN", "Array", "PoolAvailable", alert("CAIRN", "CRN2")),
        (
            "SNIA",
            bs,
            "StoragePoolCreation",
            lifecycle("CIM_InstCreation", POOL),
        ),
        (
            "SNIA",
            bs,
            "StoragePoolDeletion",
            lifecycle("CIM_InstDeletion", POOL),
        ),
        (
            "SNIA",
            bs,
            "StoragePoolTotalManagedSpaceChange",
            changed(POOL, "TotalManagedSpace"),
        ),
        (
            "SNIA",
            bs,
            "StoragePoolRemainingManagedSpaceChange",
            changed(POOL, "RemainingManagedSpace"),
        ),
        (
            "SNIA",
            bs,
            "StoragePoolOperationalStatusChange",
            changed(POOL, "OperationalStatus"),
        ),
        (
            "SNIA",
            bs,
            "StorageVolumeCreation",
            lifecycle("CIM_InstCreation", VOLUME),
        ),
        (
            "SNIA",
            bs,
            "StorageVolumeDeletion",
            lifecycle("CIM_InstDeletion", VOLUME),
        ),
        (
            "SNIA",
            bs,
            "StorageVolumeOperationalStatusChange",
            changed(VOLUME, "OperationalStatus"),
        ),
        (
            "SNIA",
            bs,
            "StorageVolumeSizeChange",
            changed(VOLUME, "NumberOfBlocks"),
        ),
        (
            "SNIA",
            bs,
            "StorageVolumeElementNameChange",
            changed(VOLUME, "ElementName"),
        ),
        (
            "SNIA",
            tp,
            "StoragePoolLowSpaceWarning",
            alert("SNIA", "DRM28"),
        ),
        (
            "SNIA",
            tp,
            "StoragePoolLowSpaceCleared",
            alert("SNIA", "DRM30"),
        ),
        (
            "SNIA",
            jc,
            "JobCreation",
            lifecycle("CIM_InstCreation", JOB),
        ),
        (
            "SNIA",
            jc,
            "JobDeletion",
            lifecycle("CIM_InstDeletion", JOB),
        ),
        ("SNIA", jc, "JobStateChange", changed(JOB, "JobState")),
        (
            "SNIA",
            jc,
            "JobPercentCompleteChange",
            changed(JOB, "PercentComplete"),
        ),
        ("CAIRN", jc, "JobException", alert("CAIRN", "CRN3")),
        (
            "SNIA",
            "Replication Services",
            "SynchronizationCreation",
            lifecycle("CIM_InstCreation", SYNC),
        ),
        (
            "SNIA",
            "Replication Services",
            "SynchronizationDeletion",
            lifecycle("CIM_InstDeletion", SYNC),
        ),
        (
            "SNIA",
            "Replication Services",
            "SynchronizationCopyStateChange",
            changed(SYNC, "CopyState"),
        ),
    ]
}

/// The masking rows of the table, served with host access only.
fn masking_table() -> Vec<(&'static str, &'static str, &'static str, String)> {
    const SPC: &str = "CIM_SCSIProtocolController";
    const PCFU: &str = "CIM_ProtocolControllerForUnit";
    const GROUP: &str = "CIM_MaskingGroup";
    let mm = "Masking and Mapping";
    let gmm = "Group Masking and Mapping";
    vec![
        (
            "SNIA",
            mm,
            "ProtocolControllerCreation",
            lifecycle("CIM_InstCreation", SPC),
        ),
        (
            "SNIA",
            mm,
            "ProtocolControllerDeletion",
            lifecycle("CIM_InstDeletion", SPC),
        ),
        (
            "SNIA",
            mm,
            "ProtocolControllerForUnitCreation",
            lifecycle("CIM_InstCreation", PCFU),
        ),
        (
            "SNIA",
            mm,
            "ProtocolControllerForUnitDeletion",
            lifecycle("CIM_InstDeletion", PCFU),
        ),
        (
            "SNIA",
            gmm,
            "MaskingGroupCreation",
            lifecycle("CIM_InstCreation", GROUP),
        ),
        (
            "SNIA",
            gmm,
            "MaskingGroupDeletion",
            lifecycle("CIM_InstDeletion", GROUP),
        ),
    ]
}

/// The predefined filters of the array system `system_name` (with the masking ones when the
/// array has `host_access`).
pub fn filters(system_name: &str, host_access: bool) -> Vec<FilterRec> {
    let mut rows = table();
    if host_access {
        rows.extend(masking_table());
    }
    rows.into_iter()
        .map(|(org, profile, what, query)| FilterRec {
            keys: Keys {
                system_creation_class_name: SYSTEM_CLASS.to_owned(),
                system_name: system_name.to_owned(),
                creation_class_name: super::provider::FILTER_CLASS.to_owned(),
                name: format!("{org}:{profile}:{what}"),
            },
            query,
            query_language: CQL.to_owned(),
            source_namespaces: vec![CAIRN_NAMESPACE.to_owned()],
            element_name: Some(format!("{profile}: {what}")),
            predefined: true,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_cim::ClassRepository;

    #[test]
    fn every_predefined_query_parses_and_names_are_unique() {
        let repo = ClassRepository::embedded();
        let all = filters("S", true);
        for f in &all {
            super::super::query::Query::parse(&f.query, &f.query_language, &repo)
                .unwrap_or_else(|e| panic!("{}: {e:?}", f.query));
        }
        let mut names: Vec<_> = all.iter().map(|f| &f.keys.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), all.len());
    }
}
