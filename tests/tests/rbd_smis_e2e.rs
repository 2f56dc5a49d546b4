//! SMI-S over an RBD pool beside a Cairn pool in one daemon, with pywbem (`tests/py/array_steps.py`,
//! `tests/py/volumes.py`), qemu-io over NBD and Ceph's own `rbd` tool: names unique across both
//! kinds of pool, grow (and the shrink refusal), rename, Restore answered Not Supported, a volume a
//! host holds refused as In Use, delete leaving nothing in Ceph; and a pool whose cluster cannot be
//! reached reported Error / Lost Communication while the daemon serves the rest; a point-in-time
//! copy from one RBD pool into another as a job, its data checked over NBD and with `rbd export`.
//!
//! Needs the test cluster: `CAIRN_TEST_CEPH_CONF` names its `ceph.conf` (`.ci/run` starts it with
//! `tools/ceph-cluster.sh`); without it these tests fail.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use cairn_tests::ceph;
use cairn_tests::{qemu_io, smis_step, test_config, Daemon};
use serde_json::Value;

const MIB: u64 = 1 << 20;

fn daemon(dir: &Path, rbd_pool: &str) -> Daemon {
    let pools =
        format!("[[pool]]\nname = \"local\"\npath = \"local.img\"\nsize = \"64MiB\"\n{rbd_pool}");
    Daemon::start(&dir.join("data"), &test_config(&pools)).expect("cairn serve starts")
}

/// The size Ceph reports for image `image` of the SMI-S test pool.
fn rbd_size(image: &str) -> u64 {
    let info: Value = serde_json::from_slice(&ceph::rbd(
        ceph::SMIS_POOL,
        &["info", "--format", "json", image],
    ))
    .expect("JSON");
    info["size"].as_u64().expect("size")
}

/// A qemu-io holding the export open (its NBD connection, and so a lease) until it is told to quit.
struct Host {
    child: std::process::Child,
}

impl Host {
    /// Opens `export` and waits for its first read to be answered.
    fn open(daemon: &Daemon, export: &str) -> Host {
        let url = format!("nbd://{}/{export}", daemon.listen.nbd.expect("NBD"));
        let mut child = Command::new("qemu-io")
            .args(["-f", "raw", &url])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("qemu-io (apt: qemu-utils)");
        let stdin = child.stdin.as_mut().expect("stdin");
        stdin.write_all(b"read 0 512\n").expect("command");
        let stdout = child.stdout.take().expect("stdout");
        let answered = BufReader::new(stdout)
            .lines()
            .map_while(|l| l.ok())
            .any(|l| l.contains("read 512/512 bytes"));
        assert!(answered, "qemu-io read {export}");
        Host { child }
    }

    fn close(mut self) {
        let stdin = self.child.stdin.as_mut().expect("stdin");
        stdin.write_all(b"quit\n").expect("quit");
        assert!(self.child.wait().expect("qemu-io exits").success());
    }
}

/// Grows `vol` (of `size` bytes, 0x5a in its first MiB) to 128 MiB, seen by Ceph and by a
/// host; a shrink back is refused with the current size. Returns the volume's image.
fn grown_and_shrink_refused(daemon: &Daemon, vol: &str, size: &str) -> String {
    let volumes = |args: &[&str]| smis_step(daemon, "volumes.py", args);
    let grown = volumes(&["grow", vol, &(128 * MIB).to_string()]);
    assert_eq!(
        (grown["rc"].as_u64(), grown["size"].as_u64()),
        (Some(0), Some(128 * MIB))
    );
    let image = ceph::image_of(ceph::SMIS_POOL, vol);
    assert_eq!(rbd_size(&image), 128 * MIB);
    assert!(qemu_io(
        daemon,
        vol,
        &["read -P 0x5a 0 1M", "read -P 0 100M 1M"]
    ));
    let shrink = volumes(&["grow", vol, size]);
    assert_eq!(
        (shrink["rc"].as_u64(), shrink["size"].as_u64()),
        (Some(4097), Some(128 * MIB))
    );
    image
}

/// Renames `vol` to a name with spaces (kept in the image's metadata), then to one an NBD URL
/// carries as is; a rename to `local`, a name the Cairn pool holds, is refused. Returns the
/// last name.
fn renamed_twice(daemon: &Daemon, vol: &str, local: &str) -> String {
    let volumes = |args: &[&str]| smis_step(daemon, "volumes.py", args);
    let spaced = format!("{vol} renamed");
    assert!(volumes(&["rename", vol, &spaced])["error"].is_null());
    assert_eq!(volumes(&["volume", &spaced])["name"], spaced.as_str());
    let renamed = format!("{vol}-renamed");
    assert!(volumes(&["rename", &spaced, &renamed])["error"].is_null());
    assert_eq!(volumes(&["rename", &renamed, local])["error"], 11);
    assert_eq!(
        volumes(&["volume", &renamed])["pool"],
        serde_json::json!(["ceph"])
    );
    renamed
}

/// Neither `images` nor their trash entries are left in the SMI-S test pool.
fn nothing_left_in_ceph(images: &[&String]) {
    let left = String::from_utf8(ceph::rbd(ceph::SMIS_POOL, &["ls"])).expect("UTF-8");
    let trash = String::from_utf8(ceph::rbd(ceph::SMIS_POOL, &["trash", "ls"])).expect("UTF-8");
    for gone in images {
        assert!(
            !left.contains(gone.as_str()),
            "{gone} left in the pool: {left}"
        );
        assert!(
            !trash.contains(gone.as_str()),
            "{gone} left in the trash: {trash}"
        );
    }
}

#[test]
fn rbd_volumes_over_smis_grow_rename_refuse_and_delete_like_cairn_ones() {
    ceph::ensure_pool(ceph::SMIS_POOL);
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = daemon(dir.path(), &ceph::pool_config("ceph", ceph::SMIS_POOL));
    let array = |args: &[&str]| smis_step(&daemon, "array_steps.py", args);
    let volumes = |args: &[&str]| smis_step(&daemon, "volumes.py", args);
    let (vol, snap, local) = (ceph::unique("rv"), ceph::unique("rs"), ceph::unique("lv"));
    let size = (64 * MIB).to_string();

    // One name space across both kinds of pool.
    assert_eq!(array(&["create-volume", "local", &local, "4096"])["rc"], 0);
    assert_eq!(volumes(&["create", "ceph", &local, &size])["rc"], 5);
    assert_eq!(array(&["create-volume", "ceph", &vol, &size])["rc"], 0);
    let v = volumes(&["volume", &vol]);
    assert_eq!(v["pool"], serde_json::json!(["ceph"]), "{v}");
    assert_eq!(
        (v["block_size"].as_u64(), v["blocks"].as_u64()),
        (Some(512), Some(64 * MIB / 512))
    );
    let pools = volumes(&["pools"]);
    assert_eq!(pools["ceph"]["status"], serde_json::json!([2]), "{pools}");
    assert!(pools["ceph"]["total"].as_u64() > Some(0), "{pools}");
    assert!(qemu_io(&daemon, &vol, &["write -P 0x5a 0 1M"]));

    let image = grown_and_shrink_refused(&daemon, &vol, &size);

    // A snapshot answers 0; Restore is not supported over RBD.
    let made = array(&["snapshot", &vol, &snap]);
    assert_eq!(made["rc"], 0, "{made}");
    assert_eq!(array(&["snapshot", &vol, &snap])["rc"], 5, "a taken name");
    assert_eq!(volumes(&["restore", &vol, &snap])["rc"], 1);

    let renamed = renamed_twice(&daemon, &vol, &local);

    // In use while a host holds it; then deleted, the source first (its snapshot's clone keeps
    // reading it from the trash), and nothing is left in Ceph.
    let host = Host::open(&daemon, &renamed);
    assert_eq!(array(&["delete", &renamed])["rc"], 6);
    host.close();
    assert_eq!(array(&["delete", &renamed])["rc"], 0);
    assert!(qemu_io(&daemon, &snap, &["read -P 0x5a 0 1M"]));
    let snap_image = ceph::image_of(ceph::SMIS_POOL, &snap);
    assert_eq!(array(&["delete", &snap])["rc"], 0);
    nothing_left_in_ceph(&[&image, &snap_image]);
    daemon.stop_cleanly();
}

#[test]
fn a_copy_between_rbd_pools_is_a_job_holding_the_point_in_time() {
    const SECOND_POOL: &str = "rbdarray-e2e2";
    ceph::ensure_pool(ceph::SMIS_POOL);
    ceph::ensure_pool(SECOND_POOL);
    let dir = tempfile::tempdir().expect("tempdir");
    let pools =
        ceph::pool_config("ceph", ceph::SMIS_POOL) + &ceph::pool_config("ceph2", SECOND_POOL);
    let daemon = daemon(dir.path(), &pools);
    let (vol, copy) = (ceph::unique("cv"), ceph::unique("cc"));
    let created = smis_step(
        &daemon,
        "volumes.py",
        &["create", "ceph", &vol, &(16 * MIB).to_string()],
    );
    assert_eq!(created["rc"], 0, "{created}");
    assert!(qemu_io(
        &daemon,
        &vol,
        &["write -P 0x11 0 1M", "write -P 0x22 5M 64k"]
    ));

    let job = smis_step(&daemon, "volumes.py", &["copy", &vol, &copy, "ceph2"]);
    assert_eq!(
        (job["rc"].as_u64(), job["state"].as_u64()),
        (Some(4096), Some(7)),
        "{job}"
    );
    assert_eq!(
        job["percent"].as_array().and_then(|p| p.last()),
        Some(&Value::from(100))
    );
    assert!(qemu_io(&daemon, &vol, &["write -P 0x33 0 1M"]));
    assert!(qemu_io(
        &daemon,
        &copy,
        &[
            "read -P 0x11 0 1M",
            "read -P 0x22 5M 64k",
            "read -P 0 6M 1M"
        ]
    ));
    assert_eq!(
        smis_step(&daemon, "volumes.py", &["volume", &copy])["pool"],
        serde_json::json!(["ceph2"])
    );

    let image = ceph::image_of(SECOND_POOL, &copy);
    let out = dir.path().join("copy.raw");
    ceph::rbd(
        SECOND_POOL,
        &["export", &image, out.to_str().expect("UTF-8")],
    );
    let bytes = std::fs::read(&out).expect("export");
    let mut want = vec![0u8; 16 * MIB as usize];
    want[..MIB as usize].fill(0x11);
    want[5 * MIB as usize..5 * MIB as usize + 65536].fill(0x22);
    assert!(
        bytes == want,
        "rbd export of the copy differs from the point in time"
    );
    for name in [&copy, &vol] {
        assert_eq!(
            smis_step(&daemon, "array_steps.py", &["delete", name])["rc"],
            0
        );
    }
    daemon.stop_cleanly();
}

#[test]
fn an_unreachable_rbd_pool_is_reported_lost_and_the_rest_is_served() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A monitor address with nothing listening.
    let conf = dir.path().join("missing-ceph.conf");
    let fsid = "fsid = 00000000-0000-0000-0000-000000000001";
    std::fs::write(&conf, format!("[global]\n{fsid}\nmon_host = 127.0.0.1:9\n")).expect("conf");
    let pool = format!(
        "[[pool]]\nname = \"gone\"\nkind = \"rbd\"\nceph_conf = \"{}\"\nclient = \"admin\"\n\
         keyring = \"{}\"\nrados_pool = \"rbd\"\n",
        conf.display(),
        dir.path().join("missing.keyring").display()
    );
    let daemon = daemon(dir.path(), &pool);
    let pools = smis_step(&daemon, "volumes.py", &["pools"]);
    assert_eq!(
        pools["gone"]["status"],
        serde_json::json!([6, 13]),
        "{pools}"
    );
    assert_eq!(pools["gone"]["health"], 20, "{pools}");
    assert_eq!(pools["local"]["status"], serde_json::json!([2]), "{pools}");
    let v = ceph::unique("served");
    assert_eq!(
        smis_step(
            &daemon,
            "array_steps.py",
            &["create-volume", "local", &v, "4096"]
        )["rc"],
        0
    );
    assert_eq!(
        smis_step(&daemon, "volumes.py", &["create", "gone", "x", "4096"])["rc"],
        4
    );
    daemon.stop_cleanly();
}
