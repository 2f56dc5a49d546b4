//! The pull operations against the real array model over many volumes, with pywbem
//! (`tests/py/provider_pull.py`): an enumeration keeps a cursor and computes each batch when it
//! is pulled, so it pages across many batches without a duplicate, honours MaxObjectCount and
//! the property list in every batch, survives volumes deleted and created while it runs, and its
//! context closes, expires and is bounded in number.

mod provider_common;

use cairn_array::VolumeSpec;
use cairn_cim::limits::ENUMERATION_CONTEXTS_OPEN_MAX;
use provider_common::*;
use serde_json::json;

const VOLUMES: usize = 1_200;
const SNAPSHOTS: usize = 150;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulls_page_through_many_volumes_across_deletes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = open_storage(dir.path(), &[("pool0", 512 * MIB)]);
    let array = Array::start(dir.path(), storage).await;
    let backend = array.provider.array().clone();
    let spec = VolumeSpec::default();
    let mut first = Vec::new();
    for i in 0..VOLUMES {
        let v = backend
            .create_volume("pool0", &format!("v{i:04}"), MIB, &spec)
            .expect("volume");
        first.push(v.id);
    }
    for (i, id) in first.iter().take(SNAPSHOTS).enumerate() {
        backend
            .snapshot(*id, &format!("s{i:04}"), &spec)
            .expect("snapshot");
    }
    let total = VOLUMES + SNAPSHOTS;
    let o = array.py("provider_pull.py", &[]).await;

    let inst = &o["instances"];
    assert_eq!(inst["count"], total, "{o}");
    assert_eq!(inst["distinct"], total, "{o}");
    assert_eq!(inst["with_names"], total, "{o}");
    assert_eq!(inst["first"], 7, "{o}");
    assert_eq!(inst["largest_pull"], 50, "{o}");
    assert_eq!(inst["pulls"], (total - 7).div_ceil(50), "{o}");
    assert_eq!(o["paths"]["count"], total, "{o}");
    assert_eq!(o["paths"]["distinct"], total, "{o}");
    assert_eq!(o["paths"]["same_volumes"], true, "{o}");
    assert_eq!(o["CIM_StorageSynchronized"]["count"], SNAPSHOTS, "{o}");
    assert_eq!(o["CIM_StorageSynchronized"]["distinct"], SNAPSHOTS, "{o}");
    // One per volume, and the primordial pool's to pool0.
    assert_eq!(o["CIM_AllocatedFromStoragePool"]["count"], total + 1, "{o}");
    assert_eq!(
        o["CIM_AllocatedFromStoragePool"]["distinct"],
        total + 1,
        "{o}"
    );
    assert_eq!(o["CIM_SystemDevice"]["count"], total, "{o}");
    assert_eq!(o["CIM_SystemDevice"]["distinct"], total, "{o}");
    assert_eq!(o["property_list"], json!([["ElementName"]]), "{o}");
    assert_eq!(
        o["zero_first"],
        json!({"first": 0, "eos": false, "rest": total}),
        "{o}"
    );
    // CIM_ERR_INVALID_ENUMERATION_CONTEXT.
    assert_eq!(o["after_close"], 21, "{o}");
    assert_eq!(o["after_timeout"], 21, "{o}");

    let d = &o["during_changes"];
    assert_eq!(d["codes"], json!([0, 0, 0]), "{o}");
    assert_eq!(d["count"], d["distinct"], "no duplicate: {o}");
    assert_eq!(d["deleted_ahead_seen"], false, "{o}");
    assert_eq!(
        d["deleted_behind_seen"], true,
        "returned before its delete: {o}"
    );
    // Created behind no cursor position: it comes last, once.
    assert_eq!(d["late_seen"], 1, "{o}");
    assert_eq!(d["count"], total, "one deleted unseen, one created: {o}");

    // CIM_ERR_SERVER_LIMITS_EXCEEDED past the bound, room again after closing.
    let c = &o["contexts"];
    assert_eq!(c["opened"], ENUMERATION_CONTEXTS_OPEN_MAX, "{o}");
    assert_eq!(c["status"], 27, "{o}");
    assert_eq!(c["after_close"], 1, "{o}");
    array.assert_clean();
}
