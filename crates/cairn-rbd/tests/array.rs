//! The array backend trait's shared suite (`cairn_array::suite`) against [`RbdArray`] on two
//! fresh RADOS pools of the test cluster (`CAIRN_TEST_CEPH_CONF`; without it these tests fail),
//! made and removed with Ceph's own tool as client.admin; data for the copy goes in over the
//! export layer, as a host writes it.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;

use cairn_array::suite::{copy, lifecycle};
use cairn_array::{ArrayBackend, ErrorKind, VolumeSpec};
use cairn_export::{Exports, Registry};
use cairn_rbd::array::RbdArray;
use cairn_rbd::served::{BackgroundPool, RbdPoolConfig};
use cairn_rbd::ConnectOptions;

const MIB: u64 = 1 << 20;

fn conf() -> PathBuf {
    PathBuf::from(std::env::var_os("CAIRN_TEST_CEPH_CONF").expect(
        "CAIRN_TEST_CEPH_CONF must name the ceph.conf of a test cluster \
         (tools/ceph-cluster.sh start DIR; then CAIRN_TEST_CEPH_CONF=DIR/ceph.conf)",
    ))
}

fn ceph(args: &[&str]) {
    let out = Command::new("ceph")
        .arg("-c")
        .arg(conf())
        .args(["--connect-timeout", "10"])
        .args(args)
        .output()
        .expect("ceph (apt: ceph-common)");
    assert!(
        out.status.success(),
        "ceph {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Two RADOS pools for one test, removed when dropped.
struct Pools(Vec<String>);

impl Pools {
    fn new(test: &str) -> Pools {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_nanos();
        let names: Vec<String> = (0..2)
            .map(|i| format!("rbdarray-{test}{i}-{}-{nanos}", std::process::id()))
            .collect();
        for n in &names {
            ceph(&["osd", "pool", "create", n, "8"]);
            ceph(&["osd", "pool", "application", "enable", n, "rbd"]);
        }
        Pools(names)
    }

    /// The backend over them as `pool0` and `pool1`, in one registry.
    fn array(&self) -> (RbdArray, Vec<Arc<BackgroundPool>>) {
        let registry = Registry::new();
        let pools: Vec<Arc<BackgroundPool>> = self
            .0
            .iter()
            .enumerate()
            .map(|(i, rados_pool)| {
                let config = RbdPoolConfig {
                    name: format!("pool{i}"),
                    connect: ConnectOptions {
                        conf_path: conf(),
                        client_name: "admin".into(),
                        keyring_path: None,
                        op_timeout_s: cairn_rbd::limits::OP_TIMEOUT_S,
                    },
                    rados_pool: rados_pool.clone(),
                };
                BackgroundPool::start_in(config, registry.clone())
            })
            .collect();
        (RbdArray::new(pools.clone()), pools)
    }
}

impl Drop for Pools {
    fn drop(&mut self) {
        for n in &self.0 {
            ceph(&["osd", "pool", "rm", n, n, "--yes-i-really-really-mean-it"]);
        }
    }
}

#[test]
fn rbd_lifecycle_names_records_and_events() {
    let pools = Pools::new("life");
    let (array, _) = pools.array();
    lifecycle(&array);
    let v2 = array.volume_by_name("v2").expect("v2");
    array.delete_volume(v2.id).expect("delete v2");
}

#[test]
fn rbd_copies_only_mapped_data_and_stops_on_request() {
    let pools = Pools::new("copy");
    let (array, exports) = pools.array();
    let v = array
        .create_volume("pool0", "src", 8 * MIB, &VolumeSpec::default())
        .expect("create");
    let host = exports[0].open("src").expect("open over the export layer");
    host.write(4 * MIB, &vec![0xa5; 3 * MIB as usize], true)
        .expect("write");
    let refused = array.delete_volume(v.id).expect_err("a host holds it");
    assert_eq!(refused.kind(), ErrorKind::InUse);
    drop(host);
    // Object granularity: the 3 MiB written at 4 MiB fill one 4 MiB object.
    assert_eq!(array.mapped_bytes(v.id).expect("mapped"), 4 * MIB);
    copy(&array, v.id, None);
    copy(&array, v.id, Some(0));
    copy(&array, v.id, Some(1));
    let other = array
        .create_volume("pool1", "x", 4 * MIB, &VolumeSpec::default())
        .expect("x");
    let refused = array
        .copy_volume(v.id, other.id, &mut |_| std::ops::ControlFlow::Continue(()))
        .expect_err("sizes differ");
    assert_eq!(refused.kind(), ErrorKind::InvalidArgument);
    let restore = array.restore(v.id, other.id).expect_err("not supported");
    assert_eq!(restore.kind(), ErrorKind::NotSupported);
    for id in [other.id, v.id] {
        array.delete_volume(id).expect("delete");
    }
}
