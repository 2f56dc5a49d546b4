//! The shared suite of the array backend trait, run against every implementation (today Cairn's
//! engine, on in-memory pools): names, sizes, replica records, copies with progress and cancel,
//! errors, and the change events of every change.

use std::ops::ControlFlow;
use std::sync::{Arc, Mutex};

use cairn_array::replica::{SYNC_TYPE_CLONE, SYNC_TYPE_SNAPSHOT};
use cairn_array::{
    ArrayBackend, ChangeEvent, CopyEnd, ErrorKind, IntoBackend, ReplicaKind, ReplicaRecord,
    VolumeSpec,
};
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

/// Records every event the backend reports.
fn recorder(array: &dyn ArrayBackend) -> Arc<Mutex<Vec<ChangeEvent>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    array
        .subscribe(Arc::new(move |e: &ChangeEvent| {
            sink.lock().expect("events").push(e.clone())
        }))
        .expect("subscribe");
    seen
}

fn volume_events(seen: &Mutex<Vec<ChangeEvent>>) -> Vec<ChangeEvent> {
    let mut all = seen.lock().expect("events");
    let out = all
        .iter()
        .filter(|e| !matches!(e, ChangeEvent::PoolChanged(_)))
        .cloned()
        .collect();
    all.clear();
    out
}

fn lifecycle(array: &dyn ArrayBackend) {
    let seen = recorder(array);
    let pools: Vec<String> = array.pools().into_iter().map(|p| p.name).collect();
    assert_eq!(pools, ["pool0", "pool1"]);
    let plain = VolumeSpec::default();
    let v = array
        .create_volume("pool0", "v", MIB, &plain)
        .expect("create");
    assert_eq!(
        (v.pool.as_str(), v.size_bytes, v.replica),
        ("pool0", MIB, None)
    );
    assert_eq!(
        volume_events(&seen),
        [ChangeEvent::VolumeCreated(v.clone())]
    );
    let taken = array
        .create_volume("pool1", "v", MIB, &plain)
        .expect_err("name taken");
    assert_eq!(taken.kind(), ErrorKind::AlreadyExists);
    let missing = array
        .create_volume("nope", "w", MIB, &plain)
        .expect_err("no pool");
    assert_eq!(missing.kind(), ErrorKind::NotFound);

    let record = ReplicaRecord::replica(v.id, SYNC_TYPE_CLONE, 0);
    let spec = VolumeSpec {
        replica: Some(record),
        ..VolumeSpec::default()
    };
    let c = array.snapshot(v.id, "c", &spec).expect("clone");
    assert_eq!((c.parent, c.replica), (Some(v.id), Some(record)));
    assert_eq!(array.volume(c.id), Some(c.clone()));
    assert_eq!(array.volume_by_name("c"), Some(c.clone()));

    let grown = array.grow_volume(v.id, 2 * MIB).expect("grow");
    let renamed = array.rename_volume(v.id, "v2").expect("rename");
    let detached = array.set_replica(c.id, record.detached()).expect("detach");
    let hidden = array.set_hidden(c.id, true).expect("hide");
    assert_eq!(grown.size_bytes, 2 * MIB);
    assert_eq!(renamed.name, "v2");
    assert_eq!(
        detached.replica.map(|r| r.kind),
        Some(ReplicaKind::Detached)
    );
    assert!(hidden.hidden);
    array.delete_volume(c.id).expect("delete");
    assert_eq!(array.volume(c.id), None);
    let gone = array.delete_volume(c.id).expect_err("deleted twice");
    assert_eq!(gone.kind(), ErrorKind::NotFound);
    assert_eq!(
        volume_events(&seen),
        [
            ChangeEvent::VolumeCreated(c.clone()),
            ChangeEvent::VolumeChanged(grown),
            ChangeEvent::VolumeChanged(renamed),
            ChangeEvent::VolumeChanged(detached),
            ChangeEvent::VolumeChanged(hidden),
            ChangeEvent::VolumeDeleted(c.id),
        ]
    );
    let names: Vec<String> = array.volumes("pool0").into_iter().map(|v| v.name).collect();
    assert_eq!(names, ["v2"]);
}

/// Copies `source` into a new volume of pool1, stopping after `stop_after` steps if given.
fn copy(array: &dyn ArrayBackend, source: cairn_array::VolumeId, stop_after: Option<usize>) {
    let src = array.volume(source).expect("source");
    let spec = VolumeSpec {
        hidden: true,
        replica: Some(ReplicaRecord::copy_target(source, SYNC_TYPE_SNAPSHOT, 1)),
        ..VolumeSpec::default()
    };
    let name = format!("t{stop_after:?}");
    let t = array
        .create_volume("pool1", &name, src.size_bytes, &spec)
        .expect("target");
    let mapped = array.mapped_bytes(source).expect("mapped");
    let mut steps = Vec::new();
    let end = array
        .copy_volume(source, t.id, &mut |p| {
            steps.push(p.copied_bytes);
            match stop_after {
                Some(n) if steps.len() > n => ControlFlow::Break(()),
                _ => ControlFlow::Continue(()),
            }
        })
        .expect("copy");
    match stop_after {
        None => {
            assert_eq!(end, CopyEnd::Completed);
            assert_eq!(steps.first(), Some(&0), "asked before the first step");
            assert_eq!(steps.last(), Some(&mapped), "every mapped byte copied");
            assert_eq!(array.mapped_bytes(t.id).expect("mapped"), mapped);
        }
        Some(n) => {
            assert_eq!(end, CopyEnd::Stopped);
            assert_eq!(steps.len(), n + 1);
        }
    }
    array.delete_volume(t.id).expect("remove target");
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
