//! [`Combined`]: several array backends side by side as one array (Cairn's engine pools and
//! Ceph RBD pools in one daemon), so one SMI-S provider serves every pool.
//!
//! Dispatch: a call about a pool goes to the backend that lists the pool, a call about a volume
//! to the first backend (in the order given) that has the volume; listing calls join the
//! backends' answers in that order.
//!
//! Invariants: pool names are unique across the backends (the daemon's configuration refuses
//! duplicates) and so are volume names (every backend keeps them in the daemon's one
//! registry); volume ids are unique because each backend derives them from its own identity
//! (the engine's random ids, RBD's cluster fsid, pool id and image id).
//!
//! Copies: within one backend, that backend's; between two (an RBD pool into a Cairn pool or
//! back), the array layer's one mapped-extent copy ([`crate::copy`]) from the source backend's
//! [`VolumeData`] into the target's, reported to this array's listeners. Neither backend knows
//! the other.

use std::sync::Arc;

use crate::copy::{copy_reported, VolumeData};
use crate::error::{Error, ErrorKind, Result};
use crate::events::{Listener, Listeners};
use crate::replica::ReplicaRecord;
use crate::types::{CopyEnd, PoolCheck, PoolInfo, SizeRules, Volume, VolumeId, VolumeSpec};
use crate::{ArrayBackend, CopyControl};

/// Several backends as one array.
pub struct Combined {
    backends: Vec<Arc<dyn ArrayBackend>>,
    /// The subscribers of this array: every backend's events, and those of copies between two.
    listeners: Listeners,
}

impl Combined {
    /// The union of `backends` (at least one); earlier ones are asked first.
    pub fn new(backends: Vec<Arc<dyn ArrayBackend>>) -> Combined {
        assert!(!backends.is_empty(), "a combined array has a backend");
        Combined {
            backends,
            listeners: Listeners::default(),
        }
    }

    fn by_pool(&self, pool: &str) -> Result<&dyn ArrayBackend> {
        self.backends
            .iter()
            .find(|b| b.pool(pool).is_some())
            .map(|b| b.as_ref())
            .ok_or_else(|| Error::new(ErrorKind::NotFound, format!("Pool {pool:?}")))
    }

    fn by_volume(&self, id: VolumeId) -> Result<&dyn ArrayBackend> {
        self.backends
            .iter()
            .find(|b| b.volume(id).is_some())
            .map(|b| b.as_ref())
            .ok_or_else(|| Error::new(ErrorKind::NotFound, format!("Volume {id}")))
    }
}

impl ArrayBackend for Combined {
    /// Sizes every backend accepts.
    fn size_rules(&self) -> SizeRules {
        let all = self.backends.iter().map(|b| b.size_rules());
        all.reduce(|a, b| SizeRules {
            granularity_bytes: a.granularity_bytes.max(b.granularity_bytes),
            max_bytes: a.max_bytes.min(b.max_bytes),
        })
        .expect("a combined array has a backend")
    }

    fn pools(&self) -> Vec<PoolInfo> {
        self.backends.iter().flat_map(|b| b.pools()).collect()
    }

    fn pool(&self, name: &str) -> Option<PoolInfo> {
        self.backends.iter().find_map(|b| b.pool(name))
    }

    fn volumes(&self, pool: &str) -> Vec<Volume> {
        self.by_pool(pool)
            .map_or_else(|_| Vec::new(), |b| b.volumes(pool))
    }

    fn volume(&self, id: VolumeId) -> Option<Volume> {
        self.backends.iter().find_map(|b| b.volume(id))
    }

    fn volume_by_name(&self, name: &str) -> Option<Volume> {
        self.backends.iter().find_map(|b| b.volume_by_name(name))
    }

    fn create_volume(
        &self,
        pool: &str,
        name: &str,
        size_bytes: u64,
        spec: &VolumeSpec,
    ) -> Result<Volume> {
        self.by_pool(pool)?
            .create_volume(pool, name, size_bytes, spec)
    }

    fn snapshot(&self, source: VolumeId, name: &str, spec: &VolumeSpec) -> Result<Volume> {
        self.by_volume(source)?.snapshot(source, name, spec)
    }

    fn delete_volume(&self, id: VolumeId) -> Result<()> {
        self.by_volume(id)?.delete_volume(id)
    }

    fn grow_volume(&self, id: VolumeId, size_bytes: u64) -> Result<Volume> {
        self.by_volume(id)?.grow_volume(id, size_bytes)
    }

    fn rename_volume(&self, id: VolumeId, name: &str) -> Result<Volume> {
        self.by_volume(id)?.rename_volume(id, name)
    }

    fn set_replica(&self, id: VolumeId, record: ReplicaRecord) -> Result<Volume> {
        self.by_volume(id)?.set_replica(id, record)
    }

    fn set_hidden(&self, id: VolumeId, hidden: bool) -> Result<Volume> {
        self.by_volume(id)?.set_hidden(id, hidden)
    }

    fn restore(&self, volume: VolumeId, from: VolumeId) -> Result<()> {
        self.by_volume(volume)?.restore(volume, from)
    }

    fn volume_data(&self, id: VolumeId) -> Result<Box<dyn VolumeData>> {
        self.by_volume(id)?.volume_data(id)
    }

    fn space_consumed(&self, id: VolumeId) -> Result<Option<u64>> {
        self.by_volume(id)?.space_consumed(id)
    }

    fn copy_volume(
        &self,
        from: VolumeId,
        to: VolumeId,
        control: CopyControl<'_>,
    ) -> Result<CopyEnd> {
        let source = self.by_volume(from)?;
        let target = self.by_volume(to)?;
        if std::ptr::addr_eq(source, target) {
            return source.copy_volume(from, to, control);
        }
        let (from_data, to_data) = (source.volume_data(from)?, target.volume_data(to)?);
        copy_reported(
            (from, from_data.as_ref()),
            (to, to_data.as_ref()),
            &self.listeners,
            control,
        )
    }

    fn subscribe(&self, listener: Listener) -> Result<()> {
        for b in &self.backends {
            b.subscribe(listener.clone())?;
        }
        self.listeners.subscribe(listener)
    }

    fn check_pool(&self, pool: &str) -> Result<PoolCheck> {
        self.by_pool(pool)?.check_pool(pool)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::EngineArray;
    use cairn_engine::{Pool, PoolOptions, Registry, Storage};
    use cairn_io::MemDevice;

    const MIB: u64 = 1 << 20;

    /// Two engine backends, one pool each, over one registry (as the daemon's backends share one).
    fn two_backends() -> Combined {
        let registry = Registry::new();
        let backend = |pool: &str| -> Arc<dyn ArrayBackend> {
            let storage = Storage::with_registry(registry.clone());
            let dev = Arc::new(MemDevice::new(64 * MIB));
            let opts = PoolOptions {
                commit_interval: None,
                node_cache_bytes: 4 << 20,
                preallocate: false,
            };
            storage
                .add_pool(Pool::create(dev, pool, opts).expect("pool"))
                .expect("added");
            Arc::new(EngineArray::new(Arc::new(storage)))
        };
        Combined::new(vec![backend("a"), backend("b")])
    }

    #[test]
    fn calls_go_to_the_backend_of_the_pool_or_volume() {
        let array = two_backends();
        let names: Vec<String> = array.pools().into_iter().map(|p| p.name).collect();
        assert_eq!(names, ["a", "b"]);
        let spec = VolumeSpec::default();
        let va = array.create_volume("a", "va", MIB, &spec).expect("in a");
        let vb = array.create_volume("b", "vb", MIB, &spec).expect("in b");
        assert_eq!((va.pool.as_str(), vb.pool.as_str()), ("a", "b"));
        let sb = array.snapshot(vb.id, "sb", &spec).expect("snapshot in b");
        assert_eq!(sb.pool, "b");
        assert_eq!(array.volume_by_name("sb").map(|v| v.id), Some(sb.id));
        assert_eq!(array.volumes("b").len(), 2);
        assert_eq!(
            array.grow_volume(va.id, 2 * MIB).expect("grow").size_bytes,
            2 * MIB
        );
        array.delete_volume(sb.id).expect("delete");
        assert!(array.volume(sb.id).is_none());
        let kind = |r: Result<Volume>| r.map(drop).unwrap_err().kind();
        assert_eq!(
            kind(array.create_volume("c", "x", MIB, &spec)),
            ErrorKind::NotFound
        );
        assert_eq!(kind(array.snapshot(sb.id, "x", &spec)), ErrorKind::NotFound);
        let checked = array.check_pool("b").expect("checked");
        assert!(checked.findings.is_empty(), "{checked:?}");
        assert!(checked.volumes >= 1, "vb is in b: {checked:?}");
        assert_eq!(
            array.check_pool("c").unwrap_err().kind(),
            ErrorKind::NotFound
        );
    }

    #[test]
    fn names_are_unique_across_backends() {
        let array = two_backends();
        let spec = VolumeSpec::default();
        array.create_volume("a", "same", MIB, &spec).expect("in a");
        let taken = array.create_volume("b", "same", MIB, &spec).unwrap_err();
        assert_eq!(taken.kind(), ErrorKind::AlreadyExists);
    }

    #[test]
    fn a_copy_between_backends_moves_the_mapped_data_and_reports_progress() {
        use std::ops::ControlFlow;
        let array = two_backends();
        let events = Arc::new(parking_lot::Mutex::new(Vec::new()));
        let seen = events.clone();
        array
            .subscribe(Arc::new(move |e: &crate::ChangeEvent| {
                if let crate::ChangeEvent::CopyProgress { copied_bytes, .. } = e {
                    seen.lock().push(*copied_bytes);
                }
            }))
            .expect("subscribed");
        let spec = VolumeSpec::default();
        let size = 4 * MIB;
        let va = array.create_volume("a", "src", size, &spec).expect("in a");
        let source = array.volume_data(va.id).expect("data");
        source
            .write_at(MIB, &vec![0x5a; 1536 << 10])
            .expect("write");
        source.write_at(3 * MIB, &[0x6b; 4096]).expect("write");
        assert_eq!(
            array.mapped_bytes(va.id).expect("mapped"),
            (1536 << 10) + 4096
        );

        let vb = array.create_volume("b", "dst", size, &spec).expect("in b");
        let end = array
            .copy_volume(va.id, vb.id, &mut |_| ControlFlow::Continue(()))
            .expect("copied");
        assert_eq!(end, CopyEnd::Completed);
        let (mut want, mut got) = (vec![0u8; size as usize], vec![1u8; size as usize]);
        source.read_at(0, &mut want).expect("read");
        let target = array.volume_data(vb.id).expect("data");
        target.read_at(0, &mut got).expect("read");
        assert!(got == want, "the target holds the source's data");
        assert_eq!(
            array.mapped_bytes(vb.id).expect("mapped"),
            (1536 << 10) + 4096
        );
        assert_eq!(*events.lock(), [MIB, 1536 << 10, (1536 << 10) + 4096]);

        // Stopped after the first chunk: nothing more is written.
        let vc = array.create_volume("b", "part", size, &spec).expect("in b");
        let end = array
            .copy_volume(va.id, vc.id, &mut |p| {
                if p.copied_bytes >= MIB {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            })
            .expect("stopped");
        assert_eq!(end, CopyEnd::Stopped);
        assert_eq!(array.mapped_bytes(vc.id).expect("mapped"), MIB);

        let small = array.create_volume("b", "small", MIB, &spec).expect("in b");
        let refused = array
            .copy_volume(va.id, small.id, &mut |_| ControlFlow::Continue(()))
            .unwrap_err();
        assert_eq!(refused.kind(), ErrorKind::InvalidArgument);
    }
}
