//! Point-in-time copies between the two kinds of pool in one daemon, over SMI-S with pywbem
//! (`tests/py/copyjob.py`): an RBD volume into a Cairn pool and a Cairn volume into an RBD pool,
//! each a job whose target is checked byte for byte — the Cairn target read over NBD with
//! qemu-img against `rbd export` of an RBD snapshot of the source taken at the same point, the
//! RBD target exported with `rbd export` against the data written before the copy — while the
//! host keeps writing the source during the job; and a copy terminated on request or cut by a
//! daemon restart, which ends as Terminated or Exception with nothing left in either pool.
//!
//! Copies are held to `[replication] copy_rate` so a job is still running when the test acts on
//! it. Needs the test cluster (`CAIRN_TEST_CEPH_CONF`); without it these tests fail.

use std::path::Path;
use std::process::Command;

use cairn_tests::ceph;
use cairn_tests::{cairn, qemu_io, smis_step, test_config, Daemon};
use serde_json::Value;

const MIB: u64 = 1 << 20;
/// Size of every source volume.
const SIZE: u64 = 16 * MIB;
/// What the host writes before the copy: (pattern, offset, length); RBD objects 0 to 3 and a
/// write across the boundary of two of them.
const BEFORE: [(u8, u64, u64); 3] = [
    (0x11, 0, 6 * MIB),
    (0x22, 7 * MIB + 4096, 64 << 10),
    (0x33, 12 * MIB - 8192, 2 * MIB),
];
/// What the host writes while the copy runs.
const DURING: [(u8, u64, u64); 2] = [(0x44, 0, MIB), (0x55, 15 * MIB, MIB)];
const JOB_RUNNING: u64 = 4;
const JOB_COMPLETED: u64 = 7;
const JOB_TERMINATED: u64 = 8;
const JOB_EXCEPTION: u64 = 10;

/// The config: Cairn pool `local` on a file, RBD pool `ceph` over RADOS pool `rados_pool`,
/// copies at 4 MiB/s. Each test has a RADOS pool of its own: a daemon starting removes what
/// interrupted copies left in its pools, which would be another test's running copy.
fn config(rados_pool: &str) -> String {
    ceph::ensure_pool(rados_pool);
    test_config(&format!(
        "[replication]\ncopy_rate = \"4MiB\"\n\
         [[pool]]\nname = \"local\"\npath = \"local.img\"\nsize = \"128MiB\"\n{}",
        ceph::pool_config("ceph", rados_pool)
    ))
}

/// One step of `tests/py/copyjob.py`.
fn job(daemon: &Daemon, args: &[&str]) -> Value {
    smis_step(daemon, "copyjob.py", args)
}

fn write_commands(writes: &[(u8, u64, u64)]) -> Vec<String> {
    writes
        .iter()
        .map(|(p, off, len)| format!("write -P 0x{p:02x} {off} {len}"))
        .collect()
}

/// The host writes `writes` into volume `name` over NBD.
fn host_writes(daemon: &Daemon, name: &str, writes: &[(u8, u64, u64)]) {
    let commands = write_commands(writes);
    let commands: Vec<&str> = commands.iter().map(String::as_str).collect();
    assert!(qemu_io(daemon, name, &commands), "writes into {name}");
}

/// A volume of [`SIZE`] bytes holding `writes` (zeros elsewhere).
fn contents(writes: &[(u8, u64, u64)]) -> Vec<u8> {
    let mut want = vec![0u8; SIZE as usize];
    for (p, off, len) in writes {
        want[*off as usize..(off + len) as usize].fill(*p);
    }
    want
}

/// Volume `name`'s bytes as a host reads them over NBD (qemu-img, raw).
fn read_over_nbd(daemon: &Daemon, name: &str, scratch: &Path) -> Vec<u8> {
    let url = format!("nbd://{}/{name}", daemon.listen.nbd.expect("NBD"));
    let out = scratch.join(format!("{name}.nbd.raw"));
    let done = Command::new("qemu-img")
        .args(["convert", "-f", "raw", "-O", "raw", &url])
        .arg(&out)
        .output()
        .expect("qemu-img (apt: qemu-utils)");
    assert!(
        done.status.success(),
        "qemu-img convert {url}: {}",
        String::from_utf8_lossy(&done.stderr)
    );
    std::fs::read(&out).expect("read the dump")
}

/// `rbd export` of `spec` (an image or `image@snapshot`) of RADOS pool `pool`.
fn rbd_export(pool: &str, spec: &str, scratch: &Path) -> Vec<u8> {
    let out = scratch.join(format!("{}.rbd.raw", spec.replace('@', "-")));
    ceph::rbd(pool, &["export", spec, out.to_str().expect("UTF-8")]);
    std::fs::read(&out).expect("read the export")
}

/// The snapshots of image `image`, in every namespace (a clone's removed parent snapshot waits
/// in the trash namespace while the clone lives).
fn snapshots(pool: &str, image: &str) -> Vec<Value> {
    let out = ceph::rbd(pool, &["snap", "ls", "--all", "--format", "json", image]);
    serde_json::from_slice::<Value>(&out)
        .expect("JSON")
        .as_array()
        .expect("a list")
        .clone()
}

/// The names of the volumes of the Cairn pool, hidden ones included, read offline from its file.
fn cairn_volumes(data: &Path) -> Vec<String> {
    let pool = data.join("local.img");
    let (status, out, err) = cairn(&[
        "--json",
        "--pool-file",
        pool.to_str().expect("UTF-8"),
        "volume",
        "list",
        "--all",
    ])
    .expect("cairn");
    assert!(status.success(), "volume list: {out}{err}");
    let list: Value = serde_json::from_str(&out).expect("JSON");
    let names = list.as_array().expect("a list").iter();
    names
        .map(|v| v["name"].as_str().expect("name").to_string())
        .collect()
}

/// Stops the daemon and checks the Cairn pool offline: it holds exactly `names` and checks clean.
fn stop_and_check_cairn_pool(daemon: Daemon, names: &[&str]) {
    let data = daemon.data_dir.clone();
    daemon.stop_cleanly();
    let mut left = cairn_volumes(&data);
    left.sort();
    assert_eq!(left, names, "volumes of the Cairn pool");
    let pool = data.join("local.img");
    let (status, out, err) = cairn(&[
        "--json",
        "--pool-file",
        pool.to_str().expect("UTF-8"),
        "pool",
        "check",
    ])
    .expect("cairn");
    assert!(status.success(), "check: {out}{err}");
}

/// Starts a copy of `source` into pool `pool` as `target`; the job's id once it has copied data.
fn start_copy(daemon: &Daemon, source: &str, target: &str, pool: &str) -> String {
    let started = job(daemon, &["start", source, target, pool]);
    assert_eq!(started["rc"], 4096, "{started}");
    let id = started["job"].as_str().expect("a job").to_string();
    let moving = job(daemon, &["progress", &id]);
    assert_eq!(moving["state"], JOB_RUNNING, "{moving}");
    id
}

/// Waits for job `id` to complete and checks its progress only grew, ending at 100.
fn completes(daemon: &Daemon, id: &str) {
    let done = job(daemon, &["wait", id]);
    assert_eq!(done["state"], JOB_COMPLETED, "{done}");
    let percents: Vec<u64> = done["percents"]
        .as_array()
        .expect("percents")
        .iter()
        .filter_map(Value::as_u64)
        .collect();
    assert!(percents.windows(2).all(|w| w[0] <= w[1]), "{done}");
    assert_eq!(percents.last(), Some(&100), "{done}");
}

fn create(daemon: &Daemon, pool: &str, name: &str) {
    let made = smis_step(
        daemon,
        "volumes.py",
        &["create", pool, name, &SIZE.to_string()],
    );
    assert_eq!(made["rc"], 0, "{made}");
}

fn delete(daemon: &Daemon, name: &str) {
    assert_eq!(
        smis_step(daemon, "array_steps.py", &["delete", name])["rc"],
        0
    );
}

#[test]
fn an_rbd_volume_copied_into_a_cairn_pool_holds_its_point_in_time() {
    const POOL: &str = "rbdcopy-e2e-rc";
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = Daemon::start(&dir.path().join("data"), &config(POOL)).expect("daemon");
    let (vol, copy) = (ceph::unique("rc-src"), ceph::unique("rc-dst"));
    create(&daemon, "ceph", &vol);
    host_writes(&daemon, &vol, &BEFORE);
    // Ceph's own record of the point in time, beside Cairn's.
    let image = ceph::image_of(POOL, &vol);
    let point = format!("{image}@point");
    ceph::rbd(POOL, &["snap", "create", &point]);

    let id = start_copy(&daemon, &vol, &copy, "local");
    host_writes(&daemon, &vol, &DURING);
    assert_eq!(job(&daemon, &["show", &id])["state"], JOB_RUNNING);
    completes(&daemon, &id);

    let at_point = rbd_export(POOL, &point, dir.path());
    assert!(
        at_point == contents(&BEFORE),
        "rbd export of {point} is the data written before the copy"
    );
    let target = read_over_nbd(&daemon, &copy, dir.path());
    assert!(
        target == at_point,
        "the Cairn copy differs from rbd export of {point}"
    );
    let mut now = BEFORE.to_vec();
    now.extend_from_slice(&DURING);
    assert!(read_over_nbd(&daemon, &vol, dir.path()) == contents(&now));
    let listed = smis_step(&daemon, "volumes.py", &["volume", &copy]);
    assert_eq!(listed["pool"], serde_json::json!(["local"]), "{listed}");

    ceph::rbd(POOL, &["snap", "rm", &point]);
    assert!(
        snapshots(POOL, &image).is_empty(),
        "the copy's own snapshot of {image} is gone"
    );
    delete(&daemon, &vol);
    stop_and_check_cairn_pool(daemon, &[copy.as_str()]);
}

#[test]
fn a_cairn_volume_copied_into_an_rbd_pool_holds_its_point_in_time() {
    const POOL: &str = "rbdcopy-e2e-cr";
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = Daemon::start(&dir.path().join("data"), &config(POOL)).expect("daemon");
    let (vol, copy) = (ceph::unique("cr-src"), ceph::unique("cr-dst"));
    create(&daemon, "local", &vol);
    // Cairn's copy moves only what was written: more of it keeps the job running long enough.
    let mut before = BEFORE.to_vec();
    before.extend_from_slice(&[(0x66, 8 * MIB, 4 * MIB), (0x77, 14 * MIB, 2 * MIB)]);
    host_writes(&daemon, &vol, &before);

    let id = start_copy(&daemon, &vol, &copy, "ceph");
    host_writes(&daemon, &vol, &DURING);
    assert_eq!(job(&daemon, &["show", &id])["state"], JOB_RUNNING);
    completes(&daemon, &id);

    let image = ceph::image_of(POOL, &copy);
    assert!(
        rbd_export(POOL, &image, dir.path()) == contents(&before),
        "rbd export of the copy is the data written before the copy"
    );
    assert!(read_over_nbd(&daemon, &copy, dir.path()) == contents(&before));
    let listed = smis_step(&daemon, "volumes.py", &["volume", &copy]);
    assert_eq!(listed["pool"], serde_json::json!(["ceph"]), "{listed}");

    delete(&daemon, &copy);
    assert_eq!(ceph::find_image(POOL, &copy), None);
    stop_and_check_cairn_pool(daemon, &[vol.as_str()]);
}

#[test]
fn a_terminated_copy_from_rbd_into_cairn_leaves_nothing_behind() {
    const POOL: &str = "rbdcopy-e2e-t";
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = Daemon::start(&dir.path().join("data"), &config(POOL)).expect("daemon");
    let (vol, copy) = (ceph::unique("rt-src"), ceph::unique("rt-dst"));
    create(&daemon, "ceph", &vol);
    host_writes(&daemon, &vol, &BEFORE);

    let id = start_copy(&daemon, &vol, &copy, "local");
    assert_eq!(job(&daemon, &["cancel", &id])["rc"], 0);
    let ended = job(&daemon, &["wait", &id]);
    assert_eq!(ended["state"], JOB_TERMINATED, "{ended}");

    let image = ceph::image_of(POOL, &vol);
    assert!(
        snapshots(POOL, &image).is_empty(),
        "{:?}",
        snapshots(POOL, &image)
    );
    delete(&daemon, &vol);
    stop_and_check_cairn_pool(daemon, &[]);
}

#[test]
fn a_restart_during_a_copy_from_rbd_into_cairn_ends_it_in_exception_leaving_nothing() {
    restart_during_copy("ceph", "local", "rbdcopy-e2e-rr");
}

#[test]
fn a_restart_during_a_copy_from_cairn_into_rbd_ends_it_in_exception_leaving_nothing() {
    restart_during_copy("local", "ceph", "rbdcopy-e2e-cr2");
}

/// A copy from pool `from` into pool `to` cut by a crash of the daemon: after the restart the
/// job is Exception and neither pool holds anything of it.
fn restart_during_copy(from: &str, to: &str, rados_pool: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let config = config(rados_pool);
    let daemon = Daemon::start(&data, &config).expect("daemon");
    let (vol, copy) = (ceph::unique("rs-src"), ceph::unique("rs-dst"));
    create(&daemon, from, &vol);
    host_writes(&daemon, &vol, &BEFORE);
    let id = start_copy(&daemon, &vol, &copy, to);
    daemon.kill().expect("kill");

    let daemon = Daemon::start(&data, &config).expect("restart");
    let ended = job(&daemon, &["show", &id]);
    assert_eq!(ended["state"], JOB_EXCEPTION, "{ended}");
    assert_eq!(
        ceph::find_image(rados_pool, &copy),
        None,
        "the target is gone"
    );
    let trash = String::from_utf8(ceph::rbd(rados_pool, &["trash", "ls"])).expect("UTF-8");
    assert!(trash.trim().is_empty(), "nothing in the trash: {trash}");
    assert!(qemu_io(&daemon, &vol, &["read -P 0x11 0 6M"]));
    if from == "ceph" {
        let image = ceph::image_of(rados_pool, &vol);
        let left = snapshots(rados_pool, &image);
        assert!(
            left.is_empty(),
            "the copy's snapshot of {image} is gone: {left:?}"
        );
        delete(&daemon, &vol);
        stop_and_check_cairn_pool(daemon, &[]);
    } else {
        stop_and_check_cairn_pool(daemon, &[vol.as_str()]);
    }
}
