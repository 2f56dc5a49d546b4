//! End-to-end tests of the array model: real file pools, the real `ArrayProvider` behind the real
//! interop model, CIM server and HTTP server on loopback, driven by pywbem scripts. Data is checked
//! through the engine API after each client step.

mod provider_common;

use cairn_engine::{VolumeId, VolumeOptions};
use provider_common::*;
use serde_json::{json, Value};

fn vid(v: &Value) -> VolumeId {
    v.as_str().expect("device id").parse().expect("volume id")
}

/// Writes `pattern(seed)` over `[offset, offset + len)` of `id`.
fn write(array: &Array, id: VolumeId, offset: u64, len: usize, seed: u8) {
    let (pool, _) = array.storage.find_volume_by_id(id).expect("volume");
    pool.write(id, offset, &pattern(seed, len)).expect("write");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wbemserver_finds_the_array_profile_and_its_storage_system() {
    let dir = tempfile::tempdir().expect("tempdir");
    let array = Array::start(dir.path(), open_storage(dir.path(), &[("pool0", 64 * MIB)])).await;
    let d = array.py("provider_discovery.py", &[]).await;
    let profiles = d["profiles"].as_array().expect("profiles");
    for (name, version) in [
        ("Array", "1.6.1"),
        ("Block Services", "1.6.1"),
        ("Replication Services", "1.6.1"),
        ("Job Control", "1.5.0"),
        ("Server", "1.6.1"),
        ("Copy Services", "1.5.0"),
        ("Thin Provisioning", "1.6.0"),
    ] {
        assert!(
            profiles.contains(&json!(["11", name, version])),
            "{name}: {d}"
        );
    }
    assert_eq!(d["arrays"], 1, "{d}");
    assert_eq!(
        d["central"],
        json!([{"classname": "Cairn_StorageSystem", "namespace": "root/cairn", "Name": SYSTEM, "OperationalStatus": [2]}]),
        "{d}"
    );
    assert_eq!(
        d["components"],
        json!([
            "Block Services",
            "Copy Services",
            "Job Control",
            "Physical Package",
            "Replication Services",
            "Software",
            "Thin Provisioning"
        ]),
        "{d}"
    );
    array.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn libstoragemgmt_sequence_snapshots_copies_and_returns() {
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = open_storage(dir.path(), &[("pool0", 64 * MIB), ("pool1", 64 * MIB)]);
    let array = Array::start(dir.path(), storage).await;
    let (_, src) = array
        .storage
        .create_volume("pool0", "lsm source", 16 * MIB, VolumeOptions::default())
        .expect("volume");
    write(&array, src.id, 0, 256 * 1024, 1);
    write(&array, src.id, 9 * MIB, 3 * 1024 * 1024, 2);
    let d = array
        .py(
            "provider_lsm.py",
            &["lsm source", "lsm snap", "lsm copy", "pool1"],
        )
        .await;
    assert_eq!(d["array_version"], "1.6.1", "{d}");
    assert_eq!(d["namespace"], "root/cairn", "{d}");
    assert_eq!(d["system"], SYSTEM, "{d}");
    assert_eq!(
        d["rs_caps"],
        json!([{"types": [6, 7, 10, 11], "async": [2, 5], "sync": [2, 5]}]),
        "{d}"
    );
    assert_eq!(d["scs_caps"][0]["types"], json!([5]), "{d}");
    assert_eq!(d["scs_caps"][0]["features"], json!([3, 5, 12]), "{d}");
    assert!(
        d["scs_caps"][0]["copy_types"]
            .as_array()
            .expect("copy types")
            .contains(&json!(4)),
        "{d}"
    );
    assert_eq!(d["pools"], json!(["pool0", "pool1"]), "{d}");
    assert_eq!(d["primordial"], 1, "{d}");
    assert_eq!(d["pool_caps"], json!({"pool0": 1, "pool1": 1}), "{d}");
    assert_eq!(d["pool_usage"], json!([2]), "{d}");
    let s = &d["source"];
    assert_eq!(s["DeviceID"], src.id.to_string(), "{d}");
    let name = s["Name"].as_str().expect("Name");
    assert!(name.len() == 32 && name.starts_with('6'), "NAA 6 name: {d}");
    assert_eq!(
        (s["NameFormat"].clone(), s["NameNamespace"].clone()),
        (json!(9), json!(2)),
        "{d}"
    );
    assert_eq!(
        (s["BlockSize"].clone(), s["NumberOfBlocks"].clone()),
        (json!(4096), json!(4096)),
        "{d}"
    );
    assert_eq!(d["rc_snap"], 0, "{d}");
    assert_eq!(d["snap_name"], "lsm snap", "{d}");
    assert_eq!(d["rc_copy"], 4096, "{d}");
    assert_eq!(d["job_state"], 7, "{d}");
    assert_eq!(d["job_opstatus"], json!([2, 17]), "{d}");
    let percents: Vec<u64> = d["percents"]
        .as_array()
        .expect("percents")
        .iter()
        .map(|p| p.as_u64().expect("never NULL"))
        .collect();
    assert!(percents.windows(2).all(|w| w[0] <= w[1]), "{d}");
    assert_eq!(percents.last(), Some(&100), "{d}");
    assert_eq!(d["affected"], json!([d["copy_target"].clone()]), "{d}");
    assert_eq!(d["rc_return"], 0, "{d}");
    // The same-pool snapshot is gone; the copy is a full, independent replica in pool1.
    assert!(array
        .storage
        .find_volume_by_id(vid(&d["snap_device"]))
        .is_none());
    let copy = vid(&d["copy_target"]);
    let (pool, info) = array.storage.find_volume_by_id(copy).expect("copy exists");
    assert_eq!(
        (pool.name(), info.hidden, info.name.as_str()),
        ("pool1".to_owned(), false, "lsm copy")
    );
    assert_eq!(
        read_all(&array.storage, copy),
        read_all(&array.storage, src.id)
    );
    assert!(
        array.all_volumes().iter().all(|v| !v.hidden),
        "no internal volume left"
    );
    array.assert_clean();
    array.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_in_the_same_pool_keeps_the_old_data() {
    let dir = tempfile::tempdir().expect("tempdir");
    let array = Array::start(dir.path(), open_storage(dir.path(), &[("pool0", 64 * MIB)])).await;
    let (_, src) = array
        .storage
        .create_volume("pool0", "data vol", 8 * MIB, VolumeOptions::default())
        .expect("volume");
    write(&array, src.id, 0, 2 * 1024 * 1024, 10);
    let before = read_all(&array.storage, src.id);
    let src_hex = src.id.to_string();
    let d = array
        .py(
            "provider_replica.py",
            &["CreateElementReplica", &src_hex, "7", "snap one", "-"],
        )
        .await;
    assert_eq!(d["rc"], 0, "{d}");
    assert_eq!(d["target_name"], "snap one", "{d}");
    assert_eq!(d["target_opstatus"], json!([2]), "{d}");
    assert_eq!(
        d["relationship_at_return"],
        json!([{"source": src_hex, "target": d["target"].clone(), "SyncType": 7, "CopyType": 4, "CopyState": 4,
                "ProgressStatus": 2, "ReplicaType": 3, "Mode": 3, "SyncState": null}]),
        "{d}"
    );
    assert_eq!(d["pools_of_target"], json!(["CAIRN:POOL:pool0"]), "{d}");
    assert_eq!(d["source_refs"], 1, "{d}");
    let snap = vid(&d["target"]);
    // Overwrite the source: the snapshot still reads the old data.
    write(&array, src.id, 0, 2 * 1024 * 1024, 77);
    assert_eq!(read_all(&array.storage, snap), before);
    assert_ne!(read_all(&array.storage, src.id), before);
    // CreateReplica CopyType 4 takes the same path; ElementName NULL gets a generated name.
    let c = array
        .py(
            "provider_replica.py",
            &["CreateReplica", &src_hex, "4", "-", "-"],
        )
        .await;
    assert_eq!(c["rc"], 0, "{c}");
    assert!(
        c["target_name"]
            .as_str()
            .expect("name")
            .starts_with("data vol-snap-"),
        "{c}"
    );
    assert_eq!(c["relationship_at_return"][0]["SyncType"], 7, "{c}");
    // A clone (SyncType 8): full copy replica type.
    let k = array
        .py(
            "provider_replica.py",
            &["CreateElementReplica", &src_hex, "8", "clone one", "-"],
        )
        .await;
    assert_eq!(k["rc"], 0, "{k}");
    assert_eq!(k["relationship_at_return"][0]["ReplicaType"], 2, "{k}");
    assert_eq!(k["relationship_at_return"][0]["SyncType"], 8, "{k}");
    // Delete the source: its snapshots keep their data; the relationships go with it.
    let r = array.py("provider_ops.py", &["return", &src_hex]).await;
    assert_eq!(r["rc"], 0, "{r}");
    assert_eq!(read_all(&array.storage, snap), before);
    let refs = array
        .py("provider_ops.py", &["refs", &snap.to_string()])
        .await;
    assert_eq!(refs["refs"], 0, "{refs}");
    array.assert_clean();
    array.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_pool_replica_is_a_job_that_copies_the_point_in_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = open_storage(dir.path(), &[("pool0", 64 * MIB), ("pool1", 64 * MIB)]);
    // At 2 MiB/s the 2 MiB copy runs for about a second: long enough to see it running.
    let array = Array::start_with(dir.path(), storage, |o| {
        o.copy_rate_bytes_per_sec = Some(2 * MIB)
    })
    .await;
    let (_, src) = array
        .storage
        .create_volume("pool0", "copy src", 32 * MIB, VolumeOptions::default())
        .expect("volume");
    for (i, off) in [0u64, 5 * MIB, 17 * MIB, 31 * MIB].into_iter().enumerate() {
        write(&array, src.id, off, 512 * 1024, i as u8 + 3);
    }
    let expected = read_all(&array.storage, src.id);
    let src_hex = src.id.to_string();
    let d = array
        .py(
            "provider_replica.py",
            &["CreateElementReplica", &src_hex, "7", "far copy", "pool1"],
        )
        .await;
    assert_eq!(d["rc"], 4096, "{d}");
    assert!(
        d["out"].as_array().expect("out").contains(&json!("Job")),
        "{d}"
    );
    assert_eq!(
        d["target_opstatus"],
        json!([8]),
        "starting while copied: {d}"
    );
    let rel = &d["relationship_at_return"][0];
    assert_eq!(
        (rel["CopyState"].clone(), rel["ProgressStatus"].clone()),
        (json!(2), json!(6)),
        "{d}"
    );
    for v in d["job_views"].as_array().expect("views") {
        assert!(
            v["PercentComplete"].is_u64(),
            "PercentComplete never NULL: {d}"
        );
        assert_eq!(v["DeleteOnCompletion"], false, "{d}");
    }
    assert_eq!(d["final"]["JobState"], 7, "{d}");
    assert_eq!(d["final"]["PercentComplete"], 100, "{d}");
    assert_eq!(d["final"]["OperationalStatus"], json!([2, 17]), "{d}");
    assert_eq!(d["get_error_rc"], 0, "{d}");
    assert_eq!(d["get_error"], Value::Null, "{d}");
    assert_eq!(d["affected"], json!([d["target"].clone()]), "{d}");
    assert_eq!(d["owning"], json!(["Cairn_ReplicationService"]), "{d}");
    assert_eq!(d["target_opstatus_after"], json!([2]), "{d}");
    let rel = &d["relationship_after"][0];
    assert_eq!(
        (
            rel["CopyState"].clone(),
            rel["ProgressStatus"].clone(),
            rel["SyncType"].clone()
        ),
        (json!(4), json!(2), json!(7)),
        "{d}"
    );
    assert_eq!(d["pools_of_target"], json!(["CAIRN:POOL:pool1"]), "{d}");
    let copy = vid(&d["target"]);
    assert_eq!(read_all(&array.storage, copy), expected);
    // Only mapped extents were copied: the target maps exactly what the source maps.
    let (p1, _) = array.storage.find_volume_by_id(copy).expect("copy");
    let (p0, _) = array.storage.find_volume_by_id(src.id).expect("source");
    let mapped = |p: &cairn_engine::Pool, id| -> u64 {
        p.block_status(id, 0, 32 * MIB)
            .expect("status")
            .iter()
            .filter(|e| e.mapped)
            .map(|e| e.len)
            .sum()
    };
    assert_eq!(mapped(&p1, copy), mapped(&p0, src.id));
    assert_eq!(mapped(&p1, copy), 4 * 512 * 1024);
    // The internal snapshot is gone; the finished job can be deleted.
    assert!(array.all_volumes().iter().all(|v| !v.hidden));
    let job = d["job"].as_str().expect("job id");
    // CreateReplica CopyType 5 (UnSyncUnAssoc) into another pool: a copy with no relationship.
    let u = array
        .py(
            "provider_replica.py",
            &["CreateReplica", &src_hex, "5", "loose copy", "pool1"],
        )
        .await;
    assert_eq!(
        (u["rc"].clone(), u["final"]["JobState"].clone()),
        (json!(4096), json!(7)),
        "{u}"
    );
    assert_eq!(u["relationship_after"], json!([]), "{u}");
    assert_eq!(read_all(&array.storage, vid(&u["target"])), expected);
    let del = array.py("provider_ops.py", &["delete_job", job]).await;
    assert_eq!(
        del["after"], 6,
        "CIM_ERR_NOT_FOUND after DeleteInstance: {del}"
    );
    array.assert_clean();
    array.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_answer_their_codes_and_leave_nothing_behind() {
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = open_storage(dir.path(), &[("pool0", 64 * MIB), ("tiny", 8 * MIB)]);
    let array = Array::start(dir.path(), storage).await;
    let (_, src) = array
        .storage
        .create_volume("pool0", "big src", 32 * MIB, VolumeOptions::default())
        .expect("volume");
    write(&array, src.id, 0, 12 * 1024 * 1024, 5);
    array
        .storage
        .create_volume("pool0", "taken", 4 * MIB, VolumeOptions::default())
        .expect("volume");
    let before = array.all_volumes().len();
    let src_hex = src.id.to_string();
    let missing = VolumeId([0x5a; 16]).to_string();
    for (args, code) in [
        (["CreateElementReplica", &src_hex, "7", "taken", "-"], 5),
        (["CreateElementReplica", &src_hex, "7", "bad/name", "-"], 5),
        (["CreateElementReplica", &missing, "7", "x1", "-"], 5),
        (
            ["CreateElementReplica", &src_hex, "7", "x2", "nosuchpool"],
            5,
        ),
        (["CreateElementReplica", &src_hex, "6", "x3", "-"], 1),
        (["CreateElementReplica", &src_hex, "7", "taken", "tiny"], 5),
        (["CreateElementReplica", &src_hex, "7", "x4", "tiny"], 4),
        (["CreateReplica", &src_hex, "2", "x5", "-"], 1),
    ] {
        let d = array.py("provider_replica.py", &args).await;
        assert_eq!(d["rc"], code, "{args:?}: {d}");
        assert_eq!(
            array.all_volumes().len(),
            before,
            "{args:?} left a volume behind"
        );
    }
    assert!(
        array.provider.jobs().list().is_empty(),
        "no job kept for refused calls"
    );
    // A volume in use (an NBD connection holds a lease) cannot be returned to the pool.
    let lease = array.storage.lease(src.id).expect("lease");
    let r = array.py("provider_ops.py", &["return", &src_hex]).await;
    assert_eq!(r["rc"], 6, "{r}");
    drop(lease);
    let r = array.py("provider_ops.py", &["return", &missing]).await;
    assert_eq!(r["rc"], 5, "{r}");
    array.assert_clean();
    array.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn volumes_are_created_grown_and_replicas_modified() {
    let dir = tempfile::tempdir().expect("tempdir");
    let array = Array::start(dir.path(), open_storage(dir.path(), &[("pool0", 64 * MIB)])).await;
    let c = array
        .py(
            "provider_ops.py",
            &["create", "pool0", "new vol", "10000", "5"],
        )
        .await;
    assert_eq!(
        (c["rc"].clone(), c["out"]["Size"].clone()),
        (json!(0), json!(12288)),
        "{c}"
    );
    let vol = c["out"]["TheElement"].as_str().expect("element").to_owned();
    assert_eq!(
        array
            .storage
            .find_volume("new vol")
            .expect("created")
            .1
            .size_bytes,
        12288
    );
    let thick = array
        .py(
            "provider_ops.py",
            &["create", "pool0", "thick", "4096", "2"],
        )
        .await;
    assert_eq!(thick["rc"], 1, "{thick}");
    let huge = array
        .py(
            "provider_ops.py",
            &["create", "pool0", "huge", &u64::MAX.to_string(), "-"],
        )
        .await;
    assert_eq!(huge["rc"], 4097, "{huge}");
    assert!(array.storage.find_volume("huge").is_none());
    let grow = array.py("provider_ops.py", &["grow", &vol, "20000"]).await;
    assert_eq!(
        (grow["rc"].clone(), grow["out"]["Size"].clone()),
        (json!(0), json!(20480)),
        "{grow}"
    );
    let shrink = array.py("provider_ops.py", &["grow", &vol, "4096"]).await;
    assert_eq!(
        (shrink["rc"].clone(), shrink["out"]["Size"].clone()),
        (json!(4097), json!(20480)),
        "{shrink}"
    );
    let sizes = array.py("provider_ops.py", &["sizes", "pool0", "5"]).await;
    assert_eq!(sizes["rc"], 0, "{sizes}");
    assert_eq!(
        (
            sizes["out"]["MinimumVolumeSize"].clone(),
            sizes["out"]["VolumeSizeDivisor"].clone()
        ),
        (json!(4096), json!(4096)),
        "{sizes}"
    );
    let volume_type = array.py("provider_ops.py", &["sizes", "pool0", "3"]).await;
    assert_eq!(volume_type["rc"], 0, "{volume_type}");
    assert_eq!(
        array.py("provider_ops.py", &["sizes", "pool0", "2"]).await["rc"],
        3
    );
    // Restore (15): the source takes the snapshot's contents back.
    let vid_new: VolumeId = vol.parse().expect("id");
    write(&array, vid_new, 0, 8192, 1);
    let snap = array
        .py(
            "provider_replica.py",
            &["CreateElementReplica", &vol, "7", "restore point", "-"],
        )
        .await;
    assert_eq!(snap["rc"], 0, "{snap}");
    let snap_id = snap["target"].as_str().expect("target").to_owned();
    let old = read_all(&array.storage, vid_new);
    write(&array, vid_new, 0, 8192, 2);
    let r = array
        .py("provider_ops.py", &["modify", &vol, &snap_id, "15"])
        .await;
    assert_eq!(r["rc"], 0, "{r}");
    assert_eq!(read_all(&array.storage, vid_new), old);
    // Detach (8): the relationship is gone, the snapshot stays.
    let r = array
        .py("provider_ops.py", &["modify", &vol, &snap_id, "8"])
        .await;
    assert_eq!(r["rc"], 0, "{r}");
    assert_eq!(
        array.py("provider_ops.py", &["refs", &snap_id]).await["refs"],
        0
    );
    assert!(array.storage.find_volume("restore point").is_some());
    let again = array
        .py("provider_ops.py", &["modify", &vol, &snap_id, "8"])
        .await;
    assert_eq!(again["rc"], 5, "no relationship any more: {again}");
    // Return To ResourcePool (19) deletes the replica.
    let snap2 = array
        .py(
            "provider_replica.py",
            &["CreateElementReplica", &vol, "7", "to return", "-"],
        )
        .await;
    let snap2_id = snap2["target"].as_str().expect("target").to_owned();
    let r = array
        .py("provider_ops.py", &["modify", &vol, &snap2_id, "19"])
        .await;
    assert_eq!(r["rc"], 0, "{r}");
    assert!(array.storage.find_volume("to return").is_none());
    array.assert_clean();
    array.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_class_enumerates_completely() {
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = open_storage(dir.path(), &[("pool0", 64 * MIB), ("pool1", 64 * MIB)]);
    let array = Array::start(dir.path(), storage).await;
    let (_, src) = array
        .storage
        .create_volume("pool0", "vol a", 4 * MIB, VolumeOptions::default())
        .expect("volume");
    write(&array, src.id, 0, 4096, 1);
    let src_hex = src.id.to_string();
    let s = array
        .py(
            "provider_replica.py",
            &["CreateElementReplica", &src_hex, "7", "snap a", "-"],
        )
        .await;
    assert_eq!(s["rc"], 0, "{s}");
    let c = array
        .py(
            "provider_replica.py",
            &["CreateElementReplica", &src_hex, "8", "copy a", "pool1"],
        )
        .await;
    assert_eq!(c["final"]["JobState"], 7, "{c}");
    let d = array.py("provider_enumerate.py", &[]).await;
    assert_eq!(d["errors"], json!({}), "{d}");
    let n = |class: &str| {
        d["counts"][format!("root/cairn:{class}")]
            .as_u64()
            .unwrap_or(0)
    };
    assert_eq!(n("CIM_ComputerSystem"), 1, "{d}");
    assert_eq!(n("CIM_StoragePool"), 3, "{d}");
    assert_eq!(n("CIM_StorageVolume"), 3, "{d}");
    assert_eq!(n("CIM_StorageSynchronized"), 2, "{d}");
    assert_eq!(n("CIM_AllocatedFromStoragePool"), 2 + 3, "{d}");
    // Services and pools to their capabilities, the configuration service to the two
    // StorageReplicationCapabilities.
    assert_eq!(n("CIM_ElementCapabilities"), 2 + 2 + 2, "{d}");
    assert_eq!(n("CIM_StorageReplicationCapabilities"), 2, "{d}");
    assert_eq!(n("CIM_StorageSetting"), 3, "{d}");
    assert_eq!(n("CIM_ElementSettingData"), 3, "{d}");
    assert_eq!(n("CIM_Location"), 1, "{d}");
    assert_eq!(n("CIM_PhysicalElementLocation"), 1, "{d}");
    assert_eq!(n("CIM_SystemDevice"), 3, "{d}");
    assert_eq!(n("CIM_HostedStoragePool"), 3, "{d}");
    assert_eq!(n("CIM_HostedService"), 2, "{d}");
    assert_eq!(n("CIM_ConcreteJob"), 1, "{d}");
    assert_eq!(n("CIM_AffectedJobElement"), 1, "{d}");
    assert_eq!(n("CIM_OwningJobElement"), 1, "{d}");
    let i = |class: &str| {
        d["counts"][format!("interop:{class}")]
            .as_u64()
            .unwrap_or(0)
    };
    assert_eq!(i("CIM_RegisteredProfile"), 9, "{d}");
    assert_eq!(i("CIM_ReferencedProfile"), 7, "{d}");
    assert_eq!(i("CIM_ObjectManager"), 1, "{d}");
    array.handle.shutdown().await;
}

/// The rows of one way of reading AllocatedFromStoragePool: (pool InstanceID, dependent key,
/// SpaceConsumed).
fn space_rows(rows: &Value) -> Vec<(String, String, u64)> {
    rows.as_array()
        .expect("rows")
        .iter()
        .map(|r| {
            let text = |k: &str| r[k].as_str().expect("text").to_owned();
            let consumed = r["consumed"].as_u64().expect("SpaceConsumed");
            (text("pool"), text("dependent"), consumed)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn space_consumed_adds_up_to_the_pools_used_space() {
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = open_storage(dir.path(), &[("pool0", 64 * MIB), ("pool1", 64 * MIB)]);
    let array = Array::start(dir.path(), storage).await;
    let opts = VolumeOptions::default;
    let s = &array.storage;
    let (_, a) = s.create_volume("pool0", "a", 16 * MIB, opts()).expect("a");
    write(&array, a.id, 0, 4 * MIB as usize, 1);
    let (_, snap) = s.snapshot(a.id, "a snap", opts()).expect("snapshot");
    write(&array, a.id, 0, MIB as usize, 2); // redirected: the snapshot keeps 1 MiB alone
    let (_, b) = s.create_volume("pool0", "b", 16 * MIB, opts()).expect("b");
    write(&array, b.id, 0, 2 * MIB as usize, 3);
    let (_, gone) = s
        .create_volume("pool0", "gone", 16 * MIB, opts())
        .expect("gone");
    write(&array, gone.id, 0, 2 * MIB as usize, 4);
    s.delete_volume(gone.id).expect("delete");
    let (_, c) = s.create_volume("pool1", "c", 16 * MIB, opts()).expect("c");
    write(&array, c.id, 0, 3 * MIB as usize, 5);
    for p in s.pools() {
        p.wait_reclaim().expect("reclaim");
        p.flush().expect("flush");
    }
    let d = array.py("provider_space.py", &[]).await;
    let rows = space_rows(&d["allocated"]["enumerate"]);
    for way in ["pull", "get"] {
        assert_eq!(space_rows(&d["allocated"][way]), rows, "{way}: {d}");
    }
    let consumed = |dependent: &str| {
        rows.iter()
            .find(|r| r.1 == dependent)
            .unwrap_or_else(|| panic!("{dependent}: {d}"))
            .2
    };
    assert_eq!(
        consumed(&a.id.to_string()),
        4 * MIB,
        "3 MiB alone + 1 MiB shared: {d}"
    );
    assert_eq!(
        consumed(&snap.id.to_string()),
        MIB,
        "what only it preserves: {d}"
    );
    assert_eq!(consumed(&b.id.to_string()), 2 * MIB, "{d}");
    assert_eq!(consumed(&c.id.to_string()), 3 * MIB, "{d}");
    let mut primordial_sum = 0;
    for p in s.pools() {
        let info = p.info();
        let id = format!("CAIRN:POOL:{}", info.name);
        let pool = &d["pools"][&id];
        let (total, remaining) = (pool["total"].as_u64(), pool["remaining"].as_u64());
        let (total, remaining) = (total.expect("total"), remaining.expect("remaining"));
        let sum: u64 = rows.iter().filter(|r| r.0 == id).map(|r| r.2).sum();
        assert_eq!(
            sum, info.data_bytes_used,
            "{id}: Σ SpaceConsumed = data used: {d}"
        );
        // What is neither free nor a volume's: metadata but the two superblocks (outside
        // TotalManagedSpace), the allocator's headroom, and blocks freed by the last commit
        // (reusable at the next).
        let overhead = total - remaining - sum;
        let floor = info.metadata_bytes_used - 2 * cairn_engine::BLOCK_SIZE
            + cairn_engine::limits::DATA_ALLOC_HEADROOM_BLOCKS * cairn_engine::BLOCK_SIZE;
        assert!(
            (floor..floor + info.metadata_bytes_used).contains(&overhead),
            "{id}: overhead {overhead}, metadata and headroom {floor}: {d}"
        );
        primordial_sum += consumed(&id);
        assert_eq!(consumed(&id), info.size_bytes, "{d}");
    }
    let primordial = &d["pools"]["CAIRN:PRIMORDIAL"];
    assert_eq!(primordial["remaining"], 0, "{d}");
    assert_eq!(primordial["total"], primordial_sum, "{d}");
    array.handle.shutdown().await;
}
