//! End to end over Ceph RBD: a volume made through the safe layer in an RBD pool is served by
//! `cairn serve` beside a file pool; qemu-io and qemu-img write and read it over NBD, and Ceph's
//! own tools (`rbd export`, `rbd diff`, `rbd import`) check and feed it from the other side, byte
//! for byte, so Cairn cannot hide a mistake from itself.
//!
//! Needs the test cluster: `CAIRN_TEST_CEPH_CONF` names its `ceph.conf` (`.ci/run` starts it with
//! `tools/ceph-cluster.sh`); without it the test fails.

use std::path::{Path, PathBuf};
use std::process::Command;

use cairn_rbd::exports::RbdExports;
use cairn_rbd::ConnectOptions;
use cairn_tests::{ceph, nbd, test_config, Daemon};

const MIB: usize = 1 << 20;
const SIZE_BYTES: usize = 16 * MIB;

fn ceph_conf() -> PathBuf {
    PathBuf::from(std::env::var_os("CAIRN_TEST_CEPH_CONF").expect(
        "CAIRN_TEST_CEPH_CONF must name the ceph.conf of a test cluster \
         (tools/ceph-cluster.sh start DIR; then CAIRN_TEST_CEPH_CONF=DIR/ceph.conf)",
    ))
}

fn unique(what: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos();
    format!("e2e-{what}-{}-{nanos}", std::process::id())
}

fn exports() -> RbdExports {
    let opts = ConnectOptions {
        conf_path: ceph_conf(),
        client_name: "cairn".into(),
        keyring_path: None,
        op_timeout_s: cairn_rbd::limits::OP_TIMEOUT_S,
    };
    RbdExports::connect(&opts, "rbd").expect("connect to the test cluster")
}

/// Runs Ceph's `rbd` tool as client.cairn on the test cluster; its stdout.
fn rbd(args: &[&str]) -> Vec<u8> {
    let conf = ceph_conf();
    let out = Command::new("rbd")
        .arg("-c")
        .arg(&conf)
        .args(["--id", "cairn", "-p", "rbd"])
        .args(args)
        .output()
        .expect("rbd (apt: ceph-common)");
    assert!(
        out.status.success(),
        "rbd {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("the tool runs (apt: qemu-utils)");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{cmd:?}: {text}");
    text
}

/// Runs qemu-io commands on an NBD export; every one must succeed.
fn qemu_io(url: &str, commands: &[&str]) {
    let mut cmd = Command::new("qemu-io");
    cmd.args(["-f", "raw"]);
    for c in commands {
        cmd.args(["-c", c]);
    }
    let text = run(cmd.arg(url));
    assert!(
        !text.contains("failed") && !text.contains("error"),
        "{commands:?}: {text}"
    );
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(13).wrapping_add(seed) ^ (i >> 12) as u8)
        .collect()
}

fn daemon(dir: &Path) -> Daemon {
    let conf = ceph_conf();
    let pools = format!(
        "[[pool]]\nname = \"local\"\npath = \"local.img\"\nsize = \"256MiB\"\n\
         [[pool]]\nname = \"ceph-rbd\"\nkind = \"rbd\"\nceph_conf = \"{}\"\n\
         client = \"cairn\"\nrados_pool = \"rbd\"\n",
        conf.display()
    );
    Daemon::start(&dir.join("data"), &test_config(&pools)).expect("cairn serve starts")
}

/// The extents `rbd diff` lists for an image, as (offset, length).
fn rbd_diff(image: &str) -> Vec<(u64, u64)> {
    let json: serde_json::Value =
        serde_json::from_slice(&rbd(&["diff", "--format", "json", image])).expect("JSON");
    json.as_array()
        .expect("a list")
        .iter()
        .map(|e| {
            (
                e["offset"].as_u64().expect("offset"),
                e["length"].as_u64().expect("length"),
            )
        })
        .collect()
}

#[test]
fn rbd_volume_over_nbd_matches_what_ceph_sees_both_ways() {
    let dir = tempfile::tempdir().expect("tempdir");
    let exports = exports();
    let name = unique("fwd");
    exports
        .create_volume(&name, SIZE_BYTES as u64)
        .expect("create through the safe layer");
    let image = exports.image_name(&name).expect("image name");
    let daemon = daemon(dir.path());
    let nbd = daemon.listen.nbd.expect("NBD listener");

    // Forward: patterns written over NBD, read back by Ceph.
    let url = format!("nbd://{nbd}/{name}");
    let mut want = vec![0u8; SIZE_BYTES];
    let data = pattern(2 * MIB, 7);
    let input = dir.path().join("in.raw");
    std::fs::write(&input, &data).expect("write input");
    let target = format!(
        "driver=nbd,host={},port={},export={name}",
        nbd.ip(),
        nbd.port()
    );
    run(Command::new("qemu-img")
        .args(["convert", "-n", "-f", "raw", "--target-image-opts"])
        .arg(&input)
        .arg(&target));
    want[..2 * MIB].copy_from_slice(&data);
    qemu_io(
        &url,
        &[
            "write -P 0xab 8M 64k",
            "write -z 12288 4096",
            "discard 1M 64k",
            "flush",
        ],
    );
    want[8 * MIB..8 * MIB + 65536].fill(0xab);
    want[12288..16384].fill(0);
    want[MIB..MIB + 65536].fill(0);
    let exported = dir.path().join("exported.raw");
    rbd(&["export", &image, exported.to_str().expect("utf-8 path")]);
    let got = std::fs::read(&exported).expect("read export");
    assert_eq!(got.len(), SIZE_BYTES);
    assert!(
        got == want,
        "Ceph's export differs from what was written over NBD"
    );
    let diff = rbd_diff(&image);
    let covered = |at: u64| diff.iter().any(|&(o, l)| o <= at && at < o + l);
    assert!(covered(0) && covered(8 << 20), "{diff:?}");
    assert!(
        !covered(12 << 20) && !covered(15 << 20),
        "never written: {diff:?}"
    );

    // Reverse: an image Ceph's tools made and named for Cairn, read over NBD.
    let rev = unique("rev");
    let rev_image = format!("cairn-e2e{:08x}", std::process::id());
    let data = pattern(SIZE_BYTES, 41);
    std::fs::write(&input, &data).expect("write input");
    rbd(&["import", input.to_str().expect("utf-8 path"), &rev_image]);
    rbd(&["image-meta", "set", &rev_image, "cairn.name", &rev]);
    let read_back = dir.path().join("read.raw");
    let rev_url = format!("nbd://{nbd}/{rev}");
    run(Command::new("qemu-img")
        .args(["convert", "-f", "raw", "-O", "raw", &rev_url])
        .arg(&read_back));
    let got = std::fs::read(&read_back).expect("read back");
    assert!(got == data, "NBD shows other bytes than Ceph imported");

    daemon.stop().expect("daemon stops");
    exports.delete_volume(&name).expect("delete");
    exports.delete_volume(&rev).expect("delete reverse");
}

/// Distinct 4 KiB blocks scattered over the first 16 MiB (37 is prime to 4096).
fn scattered(i: u64) -> u64 {
    (i * 37 % 4096) * 4096
}

/// `n` writes of `pattern(4096, i)` to `scattered(i)`, then `n` reads of the same blocks.
fn scattered_round_trip(n: u64) -> (Vec<u8>, Vec<u8>) {
    let (mut writes, mut reads) = (Vec::new(), Vec::new());
    for i in 0..n {
        let data = pattern(4096, i as u8);
        nbd::request(&mut writes, nbd::CMD_WRITE, i, scattered(i), &data, 4096);
        nbd::request(&mut reads, nbd::CMD_READ, i, scattered(i), &[], 4096);
    }
    (writes, reads)
}

/// Sends `wire` whole, then checks its `n` replies (each cookie once, read data the pattern).
fn nbd_exchange(s: &mut std::net::TcpStream, wire: &[u8], n: u64, data_len: usize) {
    std::io::Write::write_all(s, wire).expect("requests");
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..n {
        let (cookie, error, data) = nbd::reply(s, data_len);
        assert_eq!(error, 0, "request {cookie} failed");
        assert!(seen.insert(cookie), "cookie {cookie} answered twice");
        if data_len > 0 {
            assert!(
                data == pattern(4096, cookie as u8),
                "block {cookie} read back wrong"
            );
        }
    }
}

/// The RADOS pool of the test below: its own, so that no other test's daemon, starting meanwhile,
/// takes the image it is making for a half-made one.
const AIO_POOL: &str = "rbd-aio-e2e";

#[test]
fn many_nbd_requests_in_flight_land_right_and_dropped_connections_harm_nothing() {
    const N: u64 = 200;
    let dir = tempfile::tempdir().expect("tempdir");
    ceph::ensure_pool(AIO_POOL);
    let opts = ConnectOptions {
        conf_path: ceph_conf(),
        client_name: "admin".into(),
        keyring_path: None,
        op_timeout_s: cairn_rbd::limits::OP_TIMEOUT_S,
    };
    let exports = RbdExports::connect(&opts, AIO_POOL).expect("connect to the test cluster");
    let name = unique("aio");
    exports
        .create_volume(&name, SIZE_BYTES as u64)
        .expect("create through the safe layer");
    let image = exports.image_name(&name).expect("image name");
    let config = test_config(&ceph::pool_config("ceph-rbd", AIO_POOL));
    let daemon = Daemon::start(&dir.path().join("data"), &config).expect("cairn serve starts");
    let nbd = daemon.listen.nbd.expect("NBD listener");

    let (writes, reads) = scattered_round_trip(N);
    let mut c = nbd::connect(nbd, &name);
    nbd_exchange(&mut c, &writes, N, 0);
    let mut flush = Vec::new();
    nbd::request(&mut flush, nbd::CMD_FLUSH, 0, 0, &[], 0);
    nbd_exchange(&mut c, &flush, 1, 0);
    nbd_exchange(&mut c, &reads, N, 4096);

    // Connections dropped with their requests in flight: the replies land after them.
    for _ in 0..4 {
        let mut d = nbd::connect(nbd, &name);
        std::io::Write::write_all(&mut d, &writes).expect("writes");
        std::io::Write::write_all(&mut d, &reads).expect("reads");
        drop(d);
    }
    nbd_exchange(&mut c, &reads, N, 4096);
    drop(c);
    let mut e = nbd::connect(nbd, &name);
    nbd_exchange(&mut e, &reads, N, 4096);
    drop(e);

    // What Ceph sees is what was written.
    let exported = dir.path().join("exported.raw");
    ceph::rbd(
        AIO_POOL,
        &["export", &image, exported.to_str().expect("utf-8 path")],
    );
    let got = std::fs::read(&exported).expect("read export");
    for i in 0..N {
        let at = scattered(i) as usize;
        assert!(
            got[at..at + 4096] == pattern(4096, i as u8)[..],
            "block {i} in Ceph"
        );
    }
    // Every request called back: the images close and the daemon exits cleanly.
    let status = daemon.stop().expect("stop");
    assert!(status.success(), "{status:?}");
    exports.delete_volume(&name).expect("delete");
}
