//! The test cluster from the tests' side: its configuration (`CAIRN_TEST_CEPH_CONF`, which
//! `.ci/run` sets after `tools/ceph-cluster.sh start`; without it a test that needs Ceph fails,
//! never skips), Ceph's own `ceph` and `rbd` tools as client.admin, and the pool config of a
//! daemon serving a RADOS pool.

use std::path::PathBuf;
use std::process::Command;

/// The RADOS pool the SMI-S tests over RBD make their volumes in (created when missing).
pub const SMIS_POOL: &str = "rbdarray-e2e";

/// The test cluster's `ceph.conf`.
pub fn ceph_conf() -> PathBuf {
    PathBuf::from(std::env::var_os("CAIRN_TEST_CEPH_CONF").expect(
        "CAIRN_TEST_CEPH_CONF must name the ceph.conf of a test cluster \
         (tools/ceph-cluster.sh start DIR; then CAIRN_TEST_CEPH_CONF=DIR/ceph.conf)",
    ))
}

fn tool(name: &str, args: &[&str]) -> Vec<u8> {
    let out = Command::new(name)
        .arg("-c")
        .arg(ceph_conf())
        .args(["--id", "admin"])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{name} (apt: ceph-common): {e}"));
    assert!(
        out.status.success(),
        "{name} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Runs `rbd ARGS` on RADOS pool `pool`; its stdout.
pub fn rbd(pool: &str, args: &[&str]) -> Vec<u8> {
    let mut all = vec!["-p", pool];
    all.extend_from_slice(args);
    tool("rbd", &all)
}

/// Makes RADOS pool `pool` (an RBD pool) unless it exists.
pub fn ensure_pool(pool: &str) {
    let pools = tool("ceph", &["--connect-timeout", "10", "osd", "pool", "ls"]);
    if String::from_utf8_lossy(&pools).lines().any(|l| l == pool) {
        return;
    }
    tool(
        "ceph",
        &[
            "--connect-timeout",
            "10",
            "osd",
            "pool",
            "create",
            pool,
            "8",
        ],
    );
    tool("rbd", &["pool", "init", pool]);
}

/// The RADOS name of the image of `pool` whose Cairn name is `name`.
pub fn image_of(pool: &str, name: &str) -> String {
    find_image(pool, name).unwrap_or_else(|| panic!("no image of {pool} is called {name:?}"))
}

/// The RADOS name of the image of `pool` whose Cairn name is `name`, if there is one.
pub fn find_image(pool: &str, name: &str) -> Option<String> {
    let list: serde_json::Value =
        serde_json::from_slice(&rbd(pool, &["ls", "--format", "json"])).expect("JSON");
    let images = list.as_array().expect("a list").iter();
    images
        .filter_map(|i| i.as_str().filter(|n| n.starts_with("cairn-")))
        .find(|image| {
            let meta = Command::new("rbd")
                .arg("-c")
                .arg(ceph_conf())
                .args([
                    "--id",
                    "admin",
                    "-p",
                    pool,
                    "image-meta",
                    "get",
                    *image,
                    "cairn.name",
                ])
                .output()
                .expect("rbd");
            String::from_utf8_lossy(&meta.stdout).trim_end() == name
        })
        .map(str::to_string)
}

/// The `[[pool]]` of a daemon config serving RADOS pool `rados_pool` as Cairn pool `name`.
pub fn pool_config(name: &str, rados_pool: &str) -> String {
    format!(
        "[[pool]]\nname = \"{name}\"\nkind = \"rbd\"\nceph_conf = \"{}\"\nclient = \"admin\"\n\
         rados_pool = \"{rados_pool}\"\n",
        ceph_conf().display()
    )
}

/// A name no other test (or earlier run) uses.
pub fn unique(what: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos();
    format!("{what}-{}-{nanos}", std::process::id())
}
