//! The headline path with a real host: data written over NBD (qemu-io against the real NBD server
//! on the same engine), a snapshot and a cross-pool replica made over SMI-S with pywbem, the
//! source overwritten over NBD, the replicas read back over NBD; a volume with an open NBD
//! connection cannot be returned to its pool; deleting the source leaves the replicas intact.

mod provider_common;

use std::process::Stdio;
use std::time::Duration;

use cairn_engine::VolumeOptions;
use cairn_nbd::NbdServerConfig;
use provider_common::*;
use serde_json::json;
use tokio::io::AsyncWriteExt;

fn qemu_io() -> &'static str {
    let path = "/usr/bin/qemu-io";
    assert!(
        std::path::Path::new(path).exists(),
        "qemu-io not found: apt-get install qemu-utils"
    );
    path
}

/// Runs one qemu-io command on export `name`; returns its standard output.
async fn qemu(port: u16, name: &str, command: &str) -> String {
    let out = tokio::process::Command::new(qemu_io())
        .args([
            "-f",
            "raw",
            "-c",
            command,
            &format!("nbd://127.0.0.1:{port}/{name}"),
        ])
        .kill_on_drop(true)
        .output()
        .await
        .expect("run qemu-io");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "qemu-io {command} on {name}: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Checks that `[0, 1 MiB)` of export `name` holds byte `byte` throughout.
async fn assert_reads(port: u16, name: &str, byte: u8) {
    let out = qemu(port, name, &format!("read -P {byte:#x} 0 1M")).await;
    assert!(
        out.contains("read 1048576/1048576") && !out.contains("verification failed"),
        "{name} should read {byte:#x}: {out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_made_over_smis_read_the_old_data_over_nbd() {
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = open_storage(dir.path(), &[("pool0", 64 * MIB), ("pool1", 64 * MIB)]);
    let array = Array::start(dir.path(), storage.clone()).await;
    let nbd_cfg = NbdServerConfig {
        addr: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        ..NbdServerConfig::default()
    };
    let nbd = cairn_nbd::start(nbd_cfg, storage.clone())
        .await
        .expect("NBD server");
    let port = nbd.local_addr().port();
    let (_, src) = storage
        .create_volume("pool0", "hostvol", 4 * MIB, VolumeOptions::default())
        .expect("volume");
    let src_hex = src.id.to_string();

    qemu(port, "hostvol", "write -P 0xaa 0 1M").await;
    let snap = array
        .py(
            "provider_replica.py",
            &["CreateElementReplica", &src_hex, "7", "hostsnap", "-"],
        )
        .await;
    assert_eq!(snap["rc"], 0, "{snap}");
    qemu(port, "hostvol", "write -P 0xbb 0 1M").await;
    assert_reads(port, "hostsnap", 0xaa).await;
    assert_reads(port, "hostvol", 0xbb).await;

    let copy = array
        .py(
            "provider_replica.py",
            &["CreateElementReplica", &src_hex, "7", "hostcopy", "pool1"],
        )
        .await;
    assert_eq!(
        (copy["rc"].clone(), copy["final"]["JobState"].clone()),
        (json!(4096), json!(7)),
        "{copy}"
    );
    qemu(port, "hostvol", "write -P 0xcc 0 1M").await;
    assert_reads(port, "hostcopy", 0xbb).await;

    // An open NBD connection holds the volume: ReturnToStoragePool answers In Use.
    let mut holder = tokio::process::Command::new(qemu_io())
        .args(["-f", "raw", &format!("nbd://127.0.0.1:{port}/hostvol")])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("qemu-io");
    let mut stdin = holder.stdin.take().expect("stdin");
    stdin.write_all(b"read 0 4k\n").await.expect("command");
    stdin.flush().await.expect("flush");
    wait_for(|| storage.users(src.id) > 0).await;
    let busy = array.py("provider_ops.py", &["return", &src_hex]).await;
    assert_eq!(busy["rc"], 6, "{busy}");
    stdin.write_all(b"quit\n").await.expect("quit");
    drop(stdin);
    holder.wait().await.expect("qemu-io exits");
    wait_for(|| storage.users(src.id) == 0).await;
    let gone = array.py("provider_ops.py", &["return", &src_hex]).await;
    assert_eq!(gone["rc"], 0, "{gone}");
    assert!(storage.find_volume("hostvol").is_none());

    // The replicas outlive their source.
    assert_reads(port, "hostsnap", 0xaa).await;
    assert_reads(port, "hostcopy", 0xbb).await;
    nbd.shutdown().await.expect("NBD shutdown");
    array.assert_clean();
    array.handle.shutdown().await;
}

/// Waits until `cond` holds: the NBD server takes and drops its lease as connections come and go.
async fn wait_for(cond: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not reached in 30 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
