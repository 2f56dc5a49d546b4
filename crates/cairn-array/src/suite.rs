//! The shared suite of the [`ArrayBackend`] trait, run against every implementation (Cairn's
//! engine in this crate's tests, RBD pools in `cairn-rbd`'s): names, sizes, replica records,
//! copies with progress and cancel, errors, and the change events of every change. Each check
//! panics on a failure; a backend's test calls them on a backend with pools `pool0` and `pool1`
//! (and nothing else in them). Test support, not an API for production code.

use std::ops::ControlFlow;
use std::sync::{Arc, Mutex};

use crate::replica::{SYNC_TYPE_CLONE, SYNC_TYPE_SNAPSHOT};
use crate::{
    ArrayBackend, ChangeEvent, CopyEnd, ErrorKind, ReplicaKind, ReplicaRecord, VolumeId, VolumeSpec,
};

const MIB: u64 = 1 << 20;

/// Records every event the backend reports.
pub fn recorder(array: &dyn ArrayBackend) -> Arc<Mutex<Vec<ChangeEvent>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    array
        .subscribe(Arc::new(move |e: &ChangeEvent| {
            sink.lock().expect("events").push(e.clone())
        }))
        .expect("subscribe");
    seen
}

pub fn volume_events(seen: &Mutex<Vec<ChangeEvent>>) -> Vec<ChangeEvent> {
    let mut all = seen.lock().expect("events");
    let out = all
        .iter()
        .filter(|e| !matches!(e, ChangeEvent::PoolChanged(_)))
        .cloned()
        .collect();
    all.clear();
    out
}

/// Creates, snapshots (with a record), grows, renames, detaches, hides and deletes volumes of
/// `pool0`, checking every answer and event.
pub fn lifecycle(array: &dyn ArrayBackend) {
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
pub fn copy(array: &dyn ArrayBackend, source: VolumeId, stop_after: Option<usize>) {
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
