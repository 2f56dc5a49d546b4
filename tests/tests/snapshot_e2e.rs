//! The product's headline, end to end through the real daemon: a host writes a volume over NBD
//! (qemu-io), a management client takes a snapshot over SMI-S (pywbem, CreateElementReplica
//! SyncType 7), the host overwrites the volume, and the snapshot's own NBD export still holds the
//! point-in-time data — also after the daemon is killed and restarted. Finally the pool checks clean.
//!
//! The same body runs over a Cairn pool and over an RBD pool (a RADOS pool of the test cluster,
//! `CAIRN_TEST_CEPH_CONF`; without it that test fails), where Ceph's own `rbd export` and
//! `rbd diff` check the data from the other side.

use std::path::Path;

use cairn_tests::ceph;
use cairn_tests::{cairn, qemu_io, smis_step, test_config, Daemon};
use serde_json::Value;

/// The kind of pool a test body runs against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Backend {
    /// A Cairn pool on a file.
    Cairn,
    /// An RBD pool over the test cluster's RADOS pool `ceph::SMIS_POOL`.
    Rbd,
}

impl Backend {
    /// The daemon config: pool `pool0` of this kind (beside a file pool for the RBD case).
    fn config(self) -> String {
        match self {
            Backend::Cairn => {
                test_config("[[pool]]\nname = \"pool0\"\npath = \"pool0.img\"\nsize = \"1GiB\"\n")
            }
            Backend::Rbd => {
                ceph::ensure_pool(ceph::SMIS_POOL);
                test_config(&format!(
                    "[[pool]]\nname = \"local\"\npath = \"local.img\"\nsize = \"64MiB\"\n{}",
                    ceph::pool_config("pool0", ceph::SMIS_POOL)
                ))
            }
        }
    }
}

#[test]
fn smis_snapshot_keeps_point_in_time_data_over_nbd() {
    snapshot_keeps_point_in_time_data(Backend::Cairn);
}

#[test]
fn smis_snapshot_of_an_rbd_volume_keeps_point_in_time_data_over_nbd_and_in_ceph() {
    snapshot_keeps_point_in_time_data(Backend::Rbd);
}

fn snapshot_keeps_point_in_time_data(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = backend.config();
    let daemon = Daemon::start(&data, &config).unwrap();
    let (vol1, snap1) = match backend {
        Backend::Cairn => ("vol1".to_string(), "vol1-snap".to_string()),
        Backend::Rbd => {
            let v = ceph::unique("vol1");
            (v.clone(), format!("{v}-snap"))
        }
    };
    let (vol1, snap1) = (vol1.as_str(), snap1.as_str());

    discovered_as_an_array(&daemon);
    create_written_and_snapshotted(&daemon, vol1, snap1);
    overwritten_while_the_snapshot_keeps_its_data(&daemon, vol1, snap1);

    if backend == Backend::Rbd {
        ceph_sees_point_in_time(vol1, snap1, dir.path());
    }

    // A crash (no shutdown): both acknowledged states survive a restart.
    daemon.kill().unwrap();
    let daemon = Daemon::start(&data, &config).unwrap();
    assert!(qemu_io(
        &daemon,
        snap1,
        &["read -P 0xaa 0 1M", "read -P 0xcc 32M 64k"]
    ));
    assert!(qemu_io(&daemon, vol1, &["read -P 0xbb 0 1M"]));

    // Deleting the source leaves the snapshot's data intact.
    assert_eq!(
        smis_step(&daemon, "array_steps.py", &["delete", vol1])["rc"],
        0
    );
    assert!(qemu_io(&daemon, snap1, &["read -P 0xaa 0 1M"]));
    if backend == Backend::Rbd {
        assert_eq!(
            smis_step(&daemon, "array_steps.py", &["delete", snap1])["rc"],
            0
        );
        daemon.stop_cleanly();
        return;
    }
    daemon.stop_cleanly();

    let pool = data.join("pool0.img");
    let (status, out, err) = cairn(&[
        "--json",
        "--pool-file",
        pool.to_str().unwrap(),
        "pool",
        "check",
    ])
    .unwrap();
    assert!(status.success(), "check: {out}{err}");
}
/// pywbem finds the interop namespace and the array's system.
fn discovered_as_an_array(daemon: &Daemon) {
    let profiles = smis_step(daemon, "array_steps.py", &["profiles"]);
    assert_eq!(profiles["interop"], "interop", "{profiles}");
    assert!(
        profiles["systems"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s == "Cairn_StorageSystem"),
        "{profiles}"
    );
}

/// `vol1` made over SMI-S (its size rounded up), written over NBD, then snapshotted as `snap1`
/// (CreateElementReplica SyncType 7) with the synchronization of BRIEF §6's replica table.
fn create_written_and_snapshotted(daemon: &Daemon, vol1: &str, snap1: &str) {
    let created = smis_step(
        daemon,
        "array_steps.py",
        &["create-volume", "pool0", vol1, "67108000"],
    );
    assert_eq!(created["rc"], 0, "{created}");
    assert_eq!(
        created["size"], 67108864,
        "Size is rounded up to 4096 and returned"
    );

    assert!(qemu_io(
        daemon,
        vol1,
        &["write -P 0xaa 0 1M", "write -P 0xcc 32M 64k"]
    ));
    let snap = smis_step(daemon, "array_steps.py", &["snapshot", vol1, snap1]);
    assert_eq!(snap["rc"], 0, "{snap}");
    assert_eq!(snap["target"], snap1);
    let sync = &snap["sync"][0];
    assert_eq!(
        (sync["SyncType"].as_u64(), sync["CopyType"].as_u64()),
        (Some(7), Some(4)),
        "{snap}"
    );
    assert_eq!(sync["CopyState"], 4);
    assert!(sync["SyncState"].is_null());
}

/// The source overwritten over NBD: the snapshot reads the point-in-time data, the source the
/// new data.
fn overwritten_while_the_snapshot_keeps_its_data(daemon: &Daemon, vol1: &str, snap1: &str) {
    assert!(qemu_io(
        daemon,
        vol1,
        &["write -P 0xbb 0 1M", "write -z 32M 64k"]
    ));
    assert!(qemu_io(
        daemon,
        snap1,
        &[
            "read -P 0xaa 0 1M",
            "read -P 0xcc 32M 64k",
            "read -P 0 1M 1M"
        ]
    ));
    assert!(qemu_io(
        daemon,
        vol1,
        &["read -P 0xbb 0 1M", "read -P 0 32M 64k"]
    ));
    assert!(
        !qemu_io(daemon, snap1, &["read -P 0xbb 0 4k"]),
        "qemu-io must report a mismatch"
    );
}

/// From Ceph's side: `rbd export` of the snapshot's image holds the point-in-time data and zeros
/// elsewhere, and `rbd diff` of the source lists only the objects the host wrote.
fn ceph_sees_point_in_time(vol: &str, snap: &str, scratch: &Path) {
    const MIB: usize = 1 << 20;
    let image = ceph::image_of(ceph::SMIS_POOL, snap);
    let out = scratch.join("snap.raw");
    ceph::rbd(
        ceph::SMIS_POOL,
        &["export", &image, out.to_str().expect("UTF-8 path")],
    );
    let bytes = std::fs::read(&out).expect("exported image");
    std::fs::remove_file(&out).expect("remove export");
    assert_eq!(bytes.len(), 64 * MIB);
    let mut want = vec![0u8; 64 * MIB];
    want[..MIB].fill(0xaa);
    want[32 * MIB..32 * MIB + 64 * 1024].fill(0xcc);
    assert!(
        bytes == want,
        "rbd export of {snap:?} differs from its point in time"
    );

    let source = ceph::image_of(ceph::SMIS_POOL, vol);
    let diff: Value = serde_json::from_slice(&ceph::rbd(
        ceph::SMIS_POOL,
        &["diff", "--format", "json", &source],
    ))
    .expect("JSON");
    let objects = (4 * MIB) as u64;
    for e in diff.as_array().expect("a list") {
        let (offset, len) = (e["offset"].as_u64().unwrap(), e["length"].as_u64().unwrap());
        let in_first = offset + len <= objects;
        let in_second = offset >= 32 * MIB as u64 && offset + len <= 32 * MIB as u64 + objects;
        assert!(
            in_first || in_second,
            "rbd diff lists {offset}+{len}: {diff}"
        );
    }
}
