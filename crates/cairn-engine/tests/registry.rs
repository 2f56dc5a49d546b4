//! The daemon's registry under `Storage`: a name is reserved before a pool commits and freed if
//! the commit fails, the registry is never held while a pool commits, and a snapshot is created
//! with its tag in one commit, so no crash point leaves it without.

use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use cairn_engine::{
    BlockDevice, ErrorKind, IoError, Pool, PoolOptions, Storage, VolumeId, VolumeOptions,
};
use cairn_io::{CrashMode, CrashPoint, MemDevice, RecordingDevice};
use parking_lot::Mutex;

const MIB: u64 = 1 << 20;
/// How long a call that must not wait for another pool's commit may take before the test
/// reports it blocked (it finishes in microseconds; this only turns a hang into a failure).
const UNBLOCKED_WITHIN: Duration = Duration::from_secs(30);

fn opts() -> PoolOptions {
    PoolOptions {
        commit_interval: None,
        ..PoolOptions::default()
    }
}

/// A memory device whose flushes, once armed, announce themselves and wait to be released.
#[derive(Debug)]
struct GatedDevice {
    mem: MemDevice,
    gate: Mutex<Option<(mpsc::Sender<()>, mpsc::Receiver<()>)>>,
}

impl GatedDevice {
    fn new(size_bytes: u64) -> Arc<GatedDevice> {
        Arc::new(GatedDevice {
            mem: MemDevice::new(size_bytes),
            gate: Mutex::new(None),
        })
    }

    /// Arms the gate: the next flush sends on the first channel returned and waits for the
    /// second.
    fn arm(&self) -> (mpsc::Receiver<()>, mpsc::Sender<()>) {
        let (entered_tx, entered_rx) = mpsc::channel();
        let (release_tx, release_rx) = mpsc::channel();
        *self.gate.lock() = Some((entered_tx, release_rx));
        (entered_rx, release_tx)
    }
}

impl BlockDevice for GatedDevice {
    fn size_bytes(&self) -> u64 {
        self.mem.size_bytes()
    }
    fn alignment(&self) -> u64 {
        self.mem.alignment()
    }
    fn refresh_size(&self) -> Result<u64, IoError> {
        self.mem.refresh_size()
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), IoError> {
        self.mem.read_at(offset, buf)
    }
    fn write_at(&self, offset: u64, data: &[u8]) -> Result<(), IoError> {
        self.mem.write_at(offset, data)
    }
    fn flush(&self) -> Result<(), IoError> {
        let gate = self.gate.lock().take();
        if let Some((entered, release)) = gate {
            entered.send(()).expect("the test waits for the flush");
            release.recv().expect("the test releases the flush");
        }
        self.mem.flush()
    }
    fn discard(&self, offset: u64, len: u64) -> Result<(), IoError> {
        self.mem.discard(offset, len)
    }
}

/// Storage over pool `slow` on a gated device and pool `fast` in memory.
fn two_pools() -> (Arc<Storage>, Arc<GatedDevice>) {
    let storage = Arc::new(Storage::new());
    let gated = GatedDevice::new(32 * MIB);
    let slow = Pool::create(gated.clone(), "slow", opts()).expect("slow pool");
    let fast = Pool::create(Arc::new(MemDevice::new(32 * MIB)), "fast", opts()).expect("pool");
    storage.add_pool(slow).expect("add");
    storage.add_pool(fast).expect("add");
    (storage, gated)
}

/// While pool `slow` commits a new volume "x": lookups, leases and changes of other names in
/// pool `fast` go on, and a create of "x" in `fast` fails at once with "name exists".
#[test]
fn a_slow_commit_blocks_no_other_name_and_reserves_its_own() {
    let (storage, gated) = two_pools();
    let o = VolumeOptions::default();
    let (_, b) = storage
        .create_volume("fast", "b", MIB, o.clone())
        .expect("b");
    let (entered, release) = gated.arm();
    std::thread::scope(|scope| {
        let creating = scope.spawn(|| storage.create_volume("slow", "x", MIB, o.clone()));
        entered.recv().expect("the slow commit started");
        let (done_tx, done_rx) = mpsc::channel();
        let (storage, o) = (&storage, &o);
        scope.spawn(move || {
            let found = storage.find_volume("b").map(|(_, v)| v.id);
            let lease = storage.lease(b.id).map(|l| l.volume());
            let clash = storage.create_volume("fast", "x", MIB, o.clone());
            let other = storage
                .create_volume("fast", "y", MIB, o.clone())
                .map(|(_, v)| v.id);
            let renamed = storage.rename_volume(b.id, "b2").map(|v| v.name);
            done_tx
                .send((found, lease, clash, other, renamed))
                .expect("send");
        });
        let (found, lease, clash, other, renamed) = done_rx
            .recv_timeout(UNBLOCKED_WITHIN)
            .expect("calls on other names do not wait for the slow pool's commit");
        assert_eq!(found, Some(b.id));
        assert_eq!(lease.expect("lease"), b.id.0);
        let e = clash.expect_err("x is reserved by the slow create");
        assert_eq!(e.kind(), ErrorKind::AlreadyExists, "{e}");
        assert!(e.to_string().contains("\"x\" exists"), "{e}");
        other.expect("y");
        assert_eq!(renamed.expect("rename"), "b2");
        assert!(
            storage.find_volume("x").is_none(),
            "not created until committed"
        );
        release.send(()).expect("release");
        let (pool, x) = creating.join().expect("thread").expect("create x");
        assert_eq!(pool.name(), "slow");
        assert_eq!(storage.find_volume("x").map(|(_, v)| v.id), Some(x.id));
    });
}

/// A commit that fails (a device error on flush) leaves the name free for any pool.
#[test]
fn a_failed_commit_frees_the_name() {
    let storage = Storage::new();
    let bad = Arc::new(MemDevice::new(32 * MIB));
    storage
        .add_pool(Pool::create(bad.clone(), "bad", opts()).expect("pool"))
        .expect("add");
    let good = Pool::create(Arc::new(MemDevice::new(32 * MIB)), "good", opts()).expect("pool");
    storage.add_pool(good).expect("add");
    bad.fail_flushes(true);
    let o = VolumeOptions::default();
    let e = storage
        .create_volume("bad", "v", MIB, o.clone())
        .expect_err("the commit fails");
    assert_ne!(e.kind(), ErrorKind::AlreadyExists, "{e}");
    assert!(storage.find_volume("v").is_none());
    let (p, _) = storage
        .create_volume("good", "v", MIB, o)
        .expect("the name is free");
    assert_eq!(p.name(), "good");
}

/// Opens the image a crash at `point` leaves and returns the tag of the volume `name`, if the
/// volume is there.
fn tag_after_crash(dev: &RecordingDevice, point: CrashPoint, name: &str) -> Option<Vec<u8>> {
    let image: Arc<dyn BlockDevice> = Arc::new(dev.image_at(point));
    let pool = Pool::open(image, opts()).expect("every crash image opens");
    pool.volume_by_name(name).map(|v| v.tag)
}

/// Crash points (every mode) from `from` to the end of the log at which `name` exists without
/// `tag`.
fn untagged_crash_points(dev: &RecordingDevice, from: usize, name: &str, tag: &[u8]) -> usize {
    let mut found = 0;
    for op in from..=dev.ops_len() {
        for (seed, mode) in CrashMode::ALL.into_iter().enumerate() {
            let point = CrashPoint::new(op, seed as u64, mode);
            if tag_after_crash(dev, point, name).is_some_and(|t| t != tag) {
                found += 1;
            }
        }
    }
    found
}

/// A storage over one recorded pool with a volume "src" holding data.
fn recorded() -> (Storage, Arc<RecordingDevice>, VolumeId) {
    let dev = Arc::new(RecordingDevice::new(MemDevice::new(32 * MIB)));
    let storage = Storage::new();
    storage
        .add_pool(Pool::create(dev.clone(), "p", opts()).expect("pool"))
        .expect("add");
    let (pool, src) = storage
        .create_volume("p", "src", MIB, VolumeOptions::default())
        .expect("src");
    pool.write(src.id, 0, &[7; 4096]).expect("write");
    pool.flush().expect("flush");
    (storage, dev, src.id)
}

/// A snapshot made with its tag is, at every crash point, absent or tagged; the same check
/// finds the window the old two-step way (snapshot, then tag) left open.
#[test]
fn no_crash_leaves_a_snapshot_without_its_tag() {
    let tag = b"replica record".to_vec();
    let (storage, dev, src) = recorded();
    let from = dev.ops_len();
    let opts = VolumeOptions {
        tag: tag.clone(),
        ..VolumeOptions::default()
    };
    let (_, snap) = storage.snapshot(src, "snap", opts).expect("snapshot");
    assert_eq!(snap.tag, tag);
    assert_eq!(untagged_crash_points(&dev, from, "snap", &tag), 0);
    let end = CrashPoint::new(dev.ops_len(), 0, CrashMode::Drop);
    assert_eq!(tag_after_crash(&dev, end, "snap"), Some(tag.clone()));

    let (storage, dev, src) = recorded();
    let from = dev.ops_len();
    let (_, snap) = storage
        .snapshot(src, "snap", VolumeOptions::default())
        .expect("snapshot");
    storage.set_tag(snap.id, &tag).expect("tag");
    assert!(
        untagged_crash_points(&dev, from, "snap", &tag) > 0,
        "two commits leave a crash point with the snapshot untagged"
    );
}

/// A volume is created with its tag too, and a tag over the limit is refused before anything
/// is made.
#[test]
fn a_volume_is_created_with_its_tag() {
    let storage = Storage::new();
    storage
        .add_pool(Pool::create(Arc::new(MemDevice::new(32 * MIB)), "p", opts()).expect("pool"))
        .expect("add");
    let with = |tag: Vec<u8>| VolumeOptions {
        tag,
        ..VolumeOptions::default()
    };
    let (_, v) = storage
        .create_volume("p", "v", MIB, with(b"record".to_vec()))
        .expect("create");
    assert_eq!(storage.find_volume("v").expect("v").1.tag, b"record");
    let e = storage
        .create_volume("p", "w", MIB, with(vec![0; 257]))
        .expect_err("tag too long");
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    let e = storage
        .snapshot(v.id, "w", with(vec![0; 257]))
        .expect_err("tag too long");
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    assert!(storage.find_volume("w").is_none());
    storage
        .create_volume("p", "w", MIB, VolumeOptions::default())
        .expect("the name is free");
}
