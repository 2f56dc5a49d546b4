//! The shared suite of the array backend trait (`cairn_array::suite`) against Cairn's engine on
//! in-memory pools, and what only the engine does (restore, leases through its storage).

use std::ops::ControlFlow;
use std::sync::Arc;

use cairn_array::suite::{copy, lifecycle};
use cairn_array::{ArrayBackend, ErrorKind, IntoBackend, VolumeSpec};
use cairn_engine::{Pool, PoolOptions, Storage};

const MIB: u64 = 1 << 20;

/// Cairn's engine with pools `pool0` and `pool1` (64 MiB devices each), and the storage under it.
fn engine_backend() -> (Arc<dyn ArrayBackend>, Arc<Storage>) {
    let storage = Arc::new(Storage::new());
    for name in ["pool0", "pool1"] {
        let dev = Arc::new(cairn_io::MemDevice::new(64 * MIB));
        let pool = Pool::create(dev, name, PoolOptions::default()).expect("pool");
        storage.add_pool(pool).expect("add pool");
    }
    (storage.clone().into_backend(), storage)
}

#[test]
fn engine_lifecycle_names_records_and_events() {
    let (array, _) = engine_backend();
    lifecycle(array.as_ref());
}

#[test]
fn engine_copies_only_mapped_data_and_stops_on_request() {
    let (array, storage) = engine_backend();
    let v = array
        .create_volume("pool0", "src", 8 * MIB, &VolumeSpec::default())
        .expect("create");
    let data = vec![0xa5; 3 * MIB as usize];
    let pool0 = storage.pool("pool0").expect("pool0");
    pool0
        .write(cairn_engine::VolumeId(v.id.0), 4 * MIB, &data)
        .expect("write");
    assert_eq!(array.mapped_bytes(v.id).expect("mapped"), 3 * MIB);
    copy(array.as_ref(), v.id, None);
    copy(array.as_ref(), v.id, Some(0));
    copy(array.as_ref(), v.id, Some(1));
    let in_use = array.create_volume("pool1", "x", 4 * MIB, &VolumeSpec::default());
    let other = in_use.expect("x");
    let refused = array
        .copy_volume(v.id, other.id, &mut |_| ControlFlow::Continue(()))
        .expect_err("sizes differ");
    assert_eq!(refused.kind(), ErrorKind::InvalidArgument);
}

#[test]
fn engine_keeps_a_volume_in_use_while_hosts_hold_it() {
    let (array, storage) = engine_backend();
    let v = array
        .create_volume("pool0", "v", MIB, &VolumeSpec::default())
        .expect("create");
    let lease = storage
        .lease(cairn_engine::VolumeId(v.id.0))
        .expect("lease");
    let e = array.delete_volume(v.id).expect_err("in use");
    assert_eq!(e.kind(), ErrorKind::InUse);
    drop(lease);
    array.delete_volume(v.id).expect("delete");
}

#[test]
fn engine_restores_a_volume_from_its_snapshot() {
    let (array, storage) = engine_backend();
    let v = array
        .create_volume("pool0", "v", MIB, &VolumeSpec::default())
        .expect("create");
    let pool0 = storage.pool("pool0").expect("pool0");
    let id = cairn_engine::VolumeId(v.id.0);
    pool0.write(id, 0, &[1; 4096]).expect("write");
    let s = array
        .snapshot(v.id, "s", &VolumeSpec::default())
        .expect("snapshot");
    pool0.write(id, 0, &[2; 4096]).expect("write");
    array.restore(v.id, s.id).expect("restore");
    let mut back = [0; 4096];
    pool0.read(id, 0, &mut back).expect("read");
    assert_eq!(back, [1; 4096]);
}
