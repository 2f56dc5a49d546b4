//! The product's headline, end to end through the real daemon: a host writes a volume over NBD
//! (qemu-io), a management client takes a snapshot over SMI-S (pywbem, CreateElementReplica
//! SyncType 7), the host overwrites the volume, and the snapshot's own NBD export still holds the
//! point-in-time data — also after the daemon is killed and restarted. Finally the pool checks clean.

use std::path::PathBuf;
use std::process::Command;

use cairn_tests::{cairn, python, qemu_io, test_config, Daemon};
use serde_json::Value;

/// Runs one step of tests/py/array.py against the daemon and returns its JSON result.
fn array(daemon: &Daemon, step: &[&str]) -> Value {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("py/array.py");
    let url = format!("http://{}", daemon.listen.smis_http.expect("SMI-S HTTP"));
    let out = Command::new(python())
        .arg(script)
        .args([url.as_str(), "admin", "secret"])
        .args(step)
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "array.py {step:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("one JSON line")
}

/// Runs qemu-io commands on an NBD export of the daemon; true when every command succeeded.
#[test]
fn smis_snapshot_keeps_point_in_time_data_over_nbd() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = test_config("[[pool]]\nname = \"pool0\"\npath = \"pool0.img\"\nsize = \"1GiB\"\n");
    let daemon = Daemon::start(&data, &config).unwrap();

    let profiles = array(&daemon, &["profiles"]);
    assert_eq!(profiles["interop"], "interop", "{profiles}");
    assert!(
        profiles["systems"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s == "Cairn_StorageSystem"),
        "{profiles}"
    );

    let created = array(&daemon, &["create-volume", "pool0", "vol1", "67108000"]);
    assert_eq!(created["rc"], 0, "{created}");
    assert_eq!(
        created["size"], 67108864,
        "Size is rounded up to 4096 and returned"
    );

    assert!(qemu_io(
        &daemon,
        "vol1",
        &["write -P 0xaa 0 1M", "write -P 0xcc 32M 64k"]
    ));
    let snap = array(&daemon, &["snapshot", "vol1", "vol1-snap"]);
    assert_eq!(snap["rc"], 0, "{snap}");
    assert_eq!(snap["target"], "vol1-snap");
    let sync = &snap["sync"][0];
    assert_eq!(
        (sync["SyncType"].as_u64(), sync["CopyType"].as_u64()),
        (Some(7), Some(4)),
        "{snap}"
    );
    assert_eq!(sync["CopyState"], 4);
    assert!(sync["SyncState"].is_null());

    assert!(qemu_io(
        &daemon,
        "vol1",
        &["write -P 0xbb 0 1M", "write -z 32M 64k"]
    ));
    assert!(qemu_io(
        &daemon,
        "vol1-snap",
        &[
            "read -P 0xaa 0 1M",
            "read -P 0xcc 32M 64k",
            "read -P 0 1M 1M"
        ]
    ));
    assert!(qemu_io(
        &daemon,
        "vol1",
        &["read -P 0xbb 0 1M", "read -P 0 32M 64k"]
    ));
    assert!(
        !qemu_io(&daemon, "vol1-snap", &["read -P 0xbb 0 4k"]),
        "qemu-io must report a mismatch"
    );

    // A crash (no shutdown): both acknowledged states survive a restart.
    daemon.kill().unwrap();
    let daemon = Daemon::start(&data, &config).unwrap();
    assert!(qemu_io(
        &daemon,
        "vol1-snap",
        &["read -P 0xaa 0 1M", "read -P 0xcc 32M 64k"]
    ));
    assert!(qemu_io(&daemon, "vol1", &["read -P 0xbb 0 1M"]));

    // Deleting the source leaves the snapshot's data intact.
    assert_eq!(array(&daemon, &["delete", "vol1"])["rc"], 0);
    assert!(qemu_io(&daemon, "vol1-snap", &["read -P 0xaa 0 1M"]));
    assert!(daemon.stop().unwrap().success());

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
