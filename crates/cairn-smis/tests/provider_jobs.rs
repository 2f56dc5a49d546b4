//! End-to-end tests of copy jobs: Terminate and Kill stop a running copy and remove its target,
//! refusals while a copy runs, a restart in the middle of a copy (the job ends as Exception and
//! nothing is left in either pool), and concurrent clients while a host writes over NBD.

mod provider_common;

use std::process::Stdio;
use std::time::Duration;

use cairn_engine::{VolumeId, VolumeOptions};
use provider_common::*;
use serde_json::json;
use tokio::io::AsyncWriteExt;

/// A 16 MiB fully written volume in pool0, copied at 2 MiB/s: a copy runs for about 8 s.
async fn slow_array(dir: &std::path::Path) -> (Array, VolumeId) {
    let storage = open_storage(dir, &[("pool0", 64 * MIB), ("pool1", 64 * MIB)]);
    let array =
        Array::start_with(dir, storage, |o| o.copy_rate_bytes_per_sec = Some(2 * MIB)).await;
    let (pool, src) = array
        .storage
        .create_volume("pool0", "slow src", 16 * MIB, VolumeOptions::default())
        .expect("volume");
    pool.write(src.id, 0, &pattern(9, 16 * MIB as usize))
        .expect("write");
    (array, src.id)
}

fn job_number(iid: &serde_json::Value) -> u64 {
    let s = iid.as_str().expect("job id");
    s.rsplit(':')
        .next()
        .and_then(|n| n.parse().ok())
        .expect("numeric job id")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminate_and_kill_stop_the_copy_and_remove_the_target() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (array, src) = slow_array(dir.path()).await;
    let src_hex = src.to_string();
    for (name, requested, final_state) in [("term copy", "4", 8), ("kill copy", "5", 9)] {
        let s = array
            .py("provider_start.py", &[&src_hex, name, "pool1"])
            .await;
        assert_eq!(s["rc"], 4096, "{s}");
        assert_eq!(s["view"]["JobState"], 4, "{s}");
        assert_eq!(
            (s["rc_detach"].clone(), s["rc_return"].clone()),
            (json!(6), json!(6)),
            "{s}"
        );
        let job = s["job"].as_str().expect("job").to_owned();
        let stop = array
            .py("provider_ops.py", &["stop", &job, requested])
            .await;
        assert_eq!(stop["rc"], 0, "{stop}");
        assert_eq!(stop["job"]["JobState"], final_state, "{stop}");
        assert!(stop["job"]["ErrorDescription"].as_str().is_some(), "{stop}");
        let target: VolumeId = s["target"].as_str().expect("target").parse().expect("id");
        assert!(
            array.storage.find_volume_by_id(target).is_none(),
            "target removed"
        );
        assert!(array.storage.find_volume(name).is_none(), "name free again");
        assert!(
            array.all_volumes().iter().all(|v| !v.hidden),
            "internal snapshot removed"
        );
        let again = array
            .py("provider_ops.py", &["stop", &job, requested])
            .await;
        assert_eq!(
            again["rc"], 4097,
            "a finished job cannot change state: {again}"
        );
    }
    array.assert_clean();
    array.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_in_the_middle_of_a_copy_fails_the_job_and_leaks_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pools = [("pool0", 64 * MIB), ("pool1", 64 * MIB)];
    let (array, src) = slow_array(dir.path()).await;
    let s = array
        .py(
            "provider_start.py",
            &[&src.to_string(), "interrupted", "pool1"],
        )
        .await;
    assert_eq!(s["rc"], 4096, "{s}");
    let job = job_number(&s["job"]);
    // The jobs file as a crash right now would leave it: the job running.
    let crash_image = std::fs::read(&array.jobs_path).expect("jobs file");
    // Stop the daemon under the copy: the pools close, the copy fails and cannot clean up.
    array.storage.close().expect("close pools");
    assert!(array
        .provider
        .jobs()
        .wait_finished(job, Duration::from_secs(60)));
    let Array {
        storage,
        provider,
        handle,
        jobs_path,
    } = array;
    handle.shutdown().await;
    drop((provider, storage));
    std::fs::write(&jobs_path, crash_image).expect("restore crash image");
    // Restart on the same files.
    let storage = open_storage(dir.path(), &pools);
    let leftovers = all_volumes(&storage).iter().filter(|v| v.hidden).count();
    assert_eq!(
        leftovers, 2,
        "the crash left the target and the internal snapshot"
    );
    let array = Array::start(dir.path(), storage).await;
    let rec = array.provider.jobs().get(job).expect("job kept");
    assert_eq!(rec.state, 10, "{rec:?}");
    assert!(
        rec.error
            .as_deref()
            .is_some_and(|e| e.contains("Interrupted")),
        "{rec:?}"
    );
    assert!(
        array.all_volumes().iter().all(|v| !v.hidden),
        "leftovers removed"
    );
    assert!(array.storage.find_volume("interrupted").is_none());
    array.assert_clean();
    for p in array.storage.pools() {
        let info = p.info();
        let expected = if p.name() == "pool0" { 1 } else { 0 };
        assert_eq!(info.volume_count, expected, "pool {}: {info:?}", p.name());
    }
    // The job is still reported, as an Exception with its error.
    let refs = array
        .py(
            "provider_ops.py",
            &["stop", &format!("CAIRN:JOB:{job}"), "4"],
        )
        .await;
    assert_eq!(refs["rc"], 4097, "{refs}");
    assert_eq!(refs["job"]["JobState"], 10, "{refs}");
    array.handle.shutdown().await;
}

/// NBD writes by qemu-io: `rounds` passes over the first `blocks` 4 KiB blocks of `export`, pass
/// `r` filling every block with byte `0x10 + r`.
async fn nbd_writes(port: u16, export: &str, blocks: u64, rounds: u8) {
    let mut qemu = tokio::process::Command::new("/usr/bin/qemu-io")
        .args(["-f", "raw", &format!("nbd://127.0.0.1:{port}/{export}")])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("qemu-io (apt-get install qemu-utils)");
    let mut script = String::new();
    for r in 0..rounds {
        for b in 0..blocks {
            script.push_str(&format!("write -P {:#x} {} 4k\n", 0x10 + r, b * 4096));
        }
    }
    script.push_str("quit\n");
    let mut stdin = qemu.stdin.take().expect("stdin");
    stdin.write_all(script.as_bytes()).await.expect("commands");
    drop(stdin);
    assert!(qemu.wait().await.expect("qemu-io").success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_clients_snapshot_and_delete_while_nbd_writes_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = open_storage(dir.path(), &[("pool0", 128 * MIB), ("pool1", 64 * MIB)]);
    let array = Array::start(dir.path(), storage.clone()).await;
    let nbd_cfg = cairn_nbd::NbdServerConfig {
        addr: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        ..cairn_nbd::NbdServerConfig::default()
    };
    let nbd = cairn_nbd::start(nbd_cfg, storage.clone())
        .await
        .expect("NBD server");
    let (_, src) = storage
        .create_volume("pool0", "busy", 8 * MIB, VolumeOptions::default())
        .expect("volume");
    let (blocks, rounds) = (256u64, 4u8);
    let writer = tokio::spawn(nbd_writes(nbd.local_addr().port(), "busy", blocks, rounds));
    let url = array.url();
    let src_hex = src.id.to_string();
    let clients: Vec<_> = (0..8)
        .map(|c| {
            let (url, src_hex) = (url.clone(), src_hex.clone());
            tokio::spawn(async move {
                run_py("provider_stress.py", &url, &[&src_hex, &c.to_string(), "5"]).await
            })
        })
        .collect();
    let copy = array
        .py(
            "provider_replica.py",
            &["CreateElementReplica", &src_hex, "7", "busy copy", "pool1"],
        )
        .await;
    assert_eq!(
        (copy["rc"].clone(), copy["final"]["JobState"].clone()),
        (json!(4096), json!(7)),
        "{copy}"
    );
    for c in clients {
        let d = c.await.expect("client");
        assert_eq!(d["codes"], json!(vec![0; 10]), "{d}");
    }
    writer.await.expect("writer");
    let data = read_all(&storage, src.id);
    let last = 0x10 + rounds - 1;
    for b in 0..blocks as usize {
        let block = &data[b * 4096..(b + 1) * 4096];
        assert!(
            block.iter().all(|x| *x == last),
            "block {b}: an NBD write was lost"
        );
    }
    let names: Vec<String> = array.all_volumes().into_iter().map(|v| v.name).collect();
    assert_eq!(names.len(), 2, "every snapshot was returned: {names:?}");
    nbd.shutdown().await.expect("NBD shutdown");
    array.assert_clean();
    array.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_copy_holds_the_point_in_time_while_the_source_changes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (array, src) = slow_array(dir.path()).await;
    let before = read_all(&array.storage, src);
    let s = array
        .py(
            "provider_start.py",
            &[&src.to_string(), "pit copy", "pool1"],
        )
        .await;
    assert_eq!(s["rc"], 4096, "{s}");
    // Source I/O goes on during the copy.
    let (pool, _) = array.storage.find_volume_by_id(src).expect("source");
    pool.write(src, 0, &pattern(200, 16 * MIB as usize))
        .expect("write during copy");
    let job = job_number(&s["job"]);
    assert!(array
        .provider
        .jobs()
        .wait_finished(job, Duration::from_secs(120)));
    assert_eq!(array.provider.jobs().get(job).map(|j| j.state), Some(7));
    let target: VolumeId = s["target"].as_str().expect("target").parse().expect("id");
    assert_eq!(
        read_all(&array.storage, target),
        before,
        "the copy is the point in time"
    );
    assert_ne!(read_all(&array.storage, src), before);
    array.assert_clean();
    array.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_pool_filling_up_fails_the_job_cleanly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = open_storage(dir.path(), &[("pool0", 64 * MIB), ("small", 24 * MIB)]);
    let array = Array::start_with(dir.path(), storage, |o| {
        o.copy_rate_bytes_per_sec = Some(2 * MIB)
    })
    .await;
    let (pool, src) = array
        .storage
        .create_volume("pool0", "fills", 8 * MIB, VolumeOptions::default())
        .expect("volume");
    pool.write(src.id, 0, &pattern(4, 8 * MIB as usize))
        .expect("write");
    let s = array
        .py(
            "provider_start.py",
            &[&src.id.to_string(), "too big", "small"],
        )
        .await;
    assert_eq!(s["rc"], 4096, "{s}");
    // Something else takes the target pool's space while the copy runs.
    let (small, filler) = array
        .storage
        .create_volume("small", "filler", 64 * MIB, VolumeOptions::default())
        .expect("filler");
    let mut at = 0;
    while small
        .write(filler.id, at, &pattern(1, MIB as usize))
        .is_ok()
    {
        at += MIB;
    }
    let job = job_number(&s["job"]);
    assert!(array
        .provider
        .jobs()
        .wait_finished(job, Duration::from_secs(120)));
    let e = array
        .py(
            "provider_ops.py",
            &["error", s["job"].as_str().expect("job")],
        )
        .await;
    assert_eq!(e["rc"], 0, "{e}");
    assert_eq!(e["job"]["JobState"], 10, "{e}");
    assert_eq!(e["job"]["OperationalStatus"], json!([6, 17]), "{e}");
    assert_eq!(e["error_class"], "CIM_Error", "{e}");
    let message = e["message"].as_str().expect("message");
    assert!(message.contains("out of space"), "{e}");
    assert_eq!(e["job"]["ErrorDescription"], message, "{e}");
    assert!(
        array.storage.find_volume("too big").is_none(),
        "target removed"
    );
    assert!(
        array.all_volumes().iter().all(|v| !v.hidden),
        "internal snapshot removed"
    );
    array
        .storage
        .delete_volume(filler.id)
        .expect("delete filler");
    array.assert_clean();
    array.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_fails_running_copies_cleanly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (array, src) = slow_array(dir.path()).await;
    let s = array
        .py(
            "provider_start.py",
            &[&src.to_string(), "cut short", "pool1"],
        )
        .await;
    assert_eq!(s["rc"], 4096, "{s}");
    assert!(array.provider.shutdown(Duration::from_secs(30)));
    let job = array
        .provider
        .jobs()
        .get(job_number(&s["job"]))
        .expect("job");
    assert_eq!(job.state, 10, "{job:?}");
    let text = job.error.as_deref().unwrap_or_default();
    assert!(
        text.contains("daemon is stopping") && text.contains("target was removed"),
        "{job:?}"
    );
    assert!(array.storage.find_volume("cut short").is_none());
    assert!(array.all_volumes().iter().all(|v| !v.hidden));
    array.assert_clean();
    array.handle.shutdown().await;
}
