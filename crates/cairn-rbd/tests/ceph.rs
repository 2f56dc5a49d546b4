//! The safe layer against a real Ceph cluster: the one `tools/ceph-cluster.sh` starts, found
//! through `CAIRN_TEST_CEPH_CONF` (its `ceph.conf`; `.ci/run` sets it). Without it these tests
//! fail: they never pass silently with no cluster behind them.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use cairn_rbd::{limits, Cluster, ConnectOptions, ErrorKind, Extent, Image, Pool, IMAGE_FEATURES};

const POOL: &str = "rbd";

fn options() -> ConnectOptions {
    let conf = std::env::var_os("CAIRN_TEST_CEPH_CONF").expect(
        "CAIRN_TEST_CEPH_CONF must name the ceph.conf of a test cluster \
         (tools/ceph-cluster.sh start DIR; then CAIRN_TEST_CEPH_CONF=DIR/ceph.conf)",
    );
    ConnectOptions {
        conf_path: PathBuf::from(conf),
        client_name: "cairn".into(),
        keyring_path: None,
        op_timeout_s: cairn_rbd::limits::OP_TIMEOUT_S,
    }
}

fn pool() -> Pool {
    Cluster::connect(&options())
        .expect("connect to the test cluster")
        .pool(POOL)
        .expect("open pool rbd")
}

/// An image name no other test (or earlier run) uses.
fn unique(test: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos();
    format!("t-{test}-{}-{nanos}", std::process::id())
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(29).wrapping_add(seed) | 1)
        .collect()
}

/// Options for a cluster whose monitor address has nothing listening.
fn missing_cluster(dir: &std::path::Path) -> ConnectOptions {
    let conf = dir.join("ceph.conf");
    let fsid = "fsid = 00000000-0000-0000-0000-000000000001";
    std::fs::write(&conf, format!("[global]\n{fsid}\nmon_host = 127.0.0.1:9\n")).expect("conf");
    ConnectOptions {
        conf_path: conf,
        client_name: "client.admin".into(),
        keyring_path: Some(dir.join("missing.keyring")),
        op_timeout_s: cairn_rbd::limits::OP_TIMEOUT_S,
    }
}

#[test]
fn a_missing_cluster_fails_fast_with_unavailable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = missing_cluster(dir.path());
    let start = Instant::now();
    let e = Cluster::connect(&opts)
        .map(drop)
        .expect_err("nothing listens there");
    let bound = Duration::from_secs(u64::from(limits::MOUNT_TIMEOUT_S) * 3);
    assert!(
        start.elapsed() < bound,
        "connect took {:?}",
        start.elapsed()
    );
    assert!(
        matches!(e.kind(), ErrorKind::Unavailable | ErrorKind::NotFound),
        "{e}"
    );
}

#[test]
fn cluster_and_pool_have_stable_identities() {
    let cluster = Cluster::connect(&options()).expect("connect");
    let fsid = cluster.fsid().expect("fsid");
    assert_ne!(fsid, [0u8; 16]);
    assert_eq!(cluster.fsid().expect("fsid again"), fsid);
    let a = cluster.pool(POOL).expect("pool");
    let b = cluster.pool(POOL).expect("pool again");
    assert!(a.id() > 0);
    assert_eq!(a.id(), b.id());
    let e = cluster
        .pool("no-such-pool")
        .map(drop)
        .expect_err("missing pool");
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
}

#[test]
fn images_are_created_listed_resized_described_and_removed() {
    let pool = pool();
    let name = unique("life");
    pool.create_image(&name, 8 << 20).expect("create");
    let e = pool.create_image(&name, 8 << 20).expect_err("twice");
    assert_eq!(e.kind(), ErrorKind::Exists, "{e}");
    let image = pool.open_image(&name).expect("open");
    assert_eq!(image.size_bytes().expect("size"), 8 << 20);
    assert_eq!(
        image.features().expect("features") & IMAGE_FEATURES,
        IMAGE_FEATURES
    );
    let id = image.id().expect("id");
    let listed = pool.list_images().expect("list");
    assert!(
        listed.iter().any(|s| s.name == name && s.id == id),
        "{listed:?}"
    );
    image.resize(16 << 20).expect("grow");
    assert_eq!(image.size_bytes().expect("size"), 16 << 20);
    assert_eq!(image.metadata("cairn.name").expect("get"), None);
    let long = "a name with spaces ".repeat(40);
    image.set_metadata("cairn.name", &long).expect("set");
    assert_eq!(image.metadata("cairn.name").expect("get"), Some(long));
    image.lock_exclusive().expect("lock");
    let other = Cluster::connect(&options())
        .expect("a second client")
        .pool(POOL)
        .expect("pool");
    let rival = other.open_image(&name).expect("open by a second client");
    let e = rival.lock_exclusive().expect_err("the lock is held");
    assert_ne!(e.kind(), ErrorKind::NotFound, "{e}");
    let e = rival
        .write_at(0, &[1u8; 512])
        .expect_err("a write without the lock");
    assert_ne!(e.kind(), ErrorKind::NotFound, "{e}");
    drop(rival);
    let e = pool.remove_image(&name).expect_err("open images stay");
    assert_eq!(e.kind(), ErrorKind::InUse, "{e}");
    drop(image);
    pool.remove_image(&name).expect("remove");
    let e = pool.open_image(&name).map(drop).expect_err("gone");
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
}

const CHUNK: usize = 64 << 10;
const CHUNKS: usize = 64;

/// A new image of `2 * CHUNKS` chunks with chunk `2i` holding `pattern(CHUNK, i)`, written by
/// requests all in flight at once, then flushed.
fn every_other_chunk_written(pool: &Pool, name: &str) -> Image {
    pool.create_image(name, (CHUNK * CHUNKS * 2) as u64)
        .expect("create");
    let image = pool.open_image(name).expect("open");
    let writes: Vec<_> = (0..CHUNKS)
        .map(|i| {
            let data = pattern(CHUNK, i as u8);
            image
                .submit_write((i * CHUNK * 2) as u64, data)
                .expect("submit write")
        })
        .collect();
    for (i, w) in writes.into_iter().enumerate() {
        assert_eq!(w.wait().expect("write"), pattern(CHUNK, i as u8));
    }
    image.flush().expect("flush");
    image
}

#[test]
fn many_requests_in_flight_round_trip() {
    let pool = pool();
    let name = unique("aio");
    let image = every_other_chunk_written(&pool, &name);
    let reads: Vec<_> = (0..CHUNKS)
        .map(|i| {
            image
                .submit_read((i * CHUNK * 2) as u64, CHUNK)
                .expect("submit read")
        })
        .collect();
    for (i, r) in reads.into_iter().enumerate() {
        assert_eq!(
            r.wait().expect("read"),
            pattern(CHUNK, i as u8),
            "chunk {i}"
        );
    }
    let mut gap = vec![0xffu8; CHUNK];
    image.read_at(CHUNK as u64, &mut gap).expect("read gap");
    assert_eq!(gap, vec![0u8; CHUNK], "never written");
    let e = image
        .read_at(image.size_bytes().expect("size"), &mut gap)
        .expect_err("past end");
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    drop(image);
    pool.remove_image(&name).expect("remove");
}

#[test]
fn discarded_and_zeroed_ranges_read_zeros() {
    let pool = pool();
    let name = unique("zero");
    let image = every_other_chunk_written(&pool, &name);
    // Discard and both zeroings, unaligned to objects and to the discard granularity.
    image.discard(4096, 8192).expect("discard");
    image
        .write_zeroes(2 * CHUNK as u64 + 4096, 4096, false)
        .expect("zero");
    image
        .write_zeroes(4 * CHUNK as u64 + 8192, 4096, true)
        .expect("zero thick");
    let mut buf = vec![0u8; 3 * 4096];
    image.read_at(0, &mut buf).expect("read");
    assert_eq!(&buf[..4096], &pattern(CHUNK, 0)[..4096]);
    assert_eq!(
        &buf[4096..],
        &vec![0u8; 8192][..],
        "discarded range reads zeros"
    );
    for at in [2 * CHUNK as u64 + 4096, 4 * CHUNK as u64 + 8192] {
        let mut one = vec![0xffu8; 4096];
        image.read_at(at, &mut one).expect("read");
        assert_eq!(one, vec![0u8; 4096], "zeroed at {at}");
    }
    drop(image);
    pool.remove_image(&name).expect("remove");
}

#[test]
fn allocation_covers_what_was_written_and_nothing_far_from_it() {
    let pool = pool();
    let name = unique("diff");
    let object = 4u64 << 20;
    pool.create_image(&name, 8 * object).expect("create");
    let image = pool.open_image(&name).expect("open");
    assert_eq!(
        image.allocated(0, 8 * object).expect("empty"),
        Vec::<Extent>::new()
    );
    image
        .write_at(object + 4096, &pattern(4096, 1))
        .expect("write");
    image
        .write_at(6 * object, &pattern(8192, 2))
        .expect("write");
    image.flush().expect("flush");
    let extents = image.allocated(0, 8 * object).expect("allocated");
    let covered = |at: u64| {
        extents
            .iter()
            .any(|e| e.offset <= at && at < e.offset + e.len)
    };
    assert!(
        covered(object + 4096) && covered(6 * object + 4096),
        "{extents:?}"
    );
    for unwritten in [0, 3 * object, 7 * object + 4096] {
        assert!(!covered(unwritten), "{unwritten} in {extents:?}");
    }
    drop(image);
    pool.remove_image(&name).expect("remove");
}

#[test]
fn a_clone_of_a_snapshot_keeps_its_point_in_time_and_flattens_with_progress() {
    let pool = pool();
    let (src, child) = (unique("src"), unique("child"));
    pool.create_image(&src, 16 << 20).expect("create");
    let image = pool.open_image(&src).expect("open");
    image.write_at(0, &pattern(1 << 20, 7)).expect("before");
    image.snap_create("s1").expect("snap");
    pool.clone_image(&pool, &src, "s1", &child)
        .expect("clone (format 2, unprotected)");
    image.write_at(0, &pattern(1 << 20, 8)).expect("after");
    let clone = pool.open_image(&child).expect("open clone");
    let mut buf = vec![0u8; 1 << 20];
    clone.read_at(0, &mut buf).expect("read clone");
    assert_eq!(buf, pattern(1 << 20, 7), "the clone shows the snapshot");
    clone
        .write_at(4096, &pattern(4096, 9))
        .expect("the clone is writable");
    let mut calls = Vec::new();
    clone
        .flatten(&mut |done, total| calls.push((done, total)))
        .expect("flatten");
    assert!(!calls.is_empty(), "progress reported");
    assert!(calls.iter().all(|&(d, t)| d <= t), "{calls:?}");
    image
        .snap_remove("s1")
        .expect("the flattened clone no longer needs the snapshot");
    clone.read_at(0, &mut buf).expect("read flattened");
    let mut want = pattern(1 << 20, 7);
    want[4096..8192].copy_from_slice(&pattern(4096, 9));
    assert_eq!(buf, want);
    drop((image, clone));
    pool.remove_image(&child).expect("remove clone");
    pool.remove_image(&src).expect("remove source");
}

fn exports() -> cairn_rbd::exports::RbdExports {
    cairn_rbd::exports::RbdExports::connect(&options(), POOL).expect("connect exports")
}

#[test]
fn rbd_volumes_are_exported_by_their_cairn_name() {
    use cairn_export::{ErrorKind as K, Exports, Zeroing};
    let exports = exports();
    let (a_name, b_name) = (format!("{} a with spaces", unique("ex")), unique("ex-b"));
    let a_info = exports.create_volume(&a_name, 8 << 20).expect("create a");
    exports.create_volume(&b_name, 8 << 20).expect("create b");
    let e = exports.create_volume(&a_name, 8 << 20).expect_err("taken");
    assert_eq!(e.kind(), K::InUse, "{e}");
    let listed = exports.list().expect("list");
    assert!(listed.contains(&a_info), "{listed:?}");
    let rados = exports.image_name(&a_name).expect("image name");
    assert!(
        rados.starts_with(cairn_rbd::exports::IMAGE_PREFIX),
        "{rados}"
    );
    let image = pool().open_image(&rados).expect("the image behind it");
    assert_eq!(
        image.metadata("cairn.name").expect("meta"),
        Some(a_name.clone())
    );
    drop(image);
    assert_eq!(exports.info(&a_name).expect("info"), a_info);
    assert_ne!(exports.info(&b_name).expect("info").id, a_info.id);

    let a = exports.open(&a_name).expect("open a");
    let b = exports.open(&b_name).expect("open b");
    assert_eq!(a.naa_name(), a_info.naa_name());
    a.write(4 << 20, &pattern(65536, 3), true).expect("write a");
    let mut buf = vec![0xffu8; 65536];
    b.read(4 << 20, &mut buf).expect("read b");
    assert_eq!(buf, vec![0u8; 65536], "no write to a shows in b");
    a.read(4 << 20, &mut buf).expect("read a");
    assert_eq!(buf, pattern(65536, 3));
    let runs = a.block_status(0, 8 << 20).expect("status");
    let mapped = |at: u64| {
        runs.iter()
            .any(|r| r.mapped && r.offset <= at && at < r.offset + r.len)
    };
    assert!(mapped(4 << 20) && !mapped(0), "{runs:?}");
    assert_eq!(runs.iter().map(|r| r.len).sum::<u64>(), 8 << 20, "{runs:?}");
    a.trim(4 << 20, 4096).expect("trim");
    a.write_zeroes((4 << 20) + 8192, 4096, Zeroing::Allocate)
        .expect("zero");
    a.read(4 << 20, &mut buf).expect("read a");
    let mut want = pattern(65536, 3);
    want[..4096].fill(0);
    want[8192..12288].fill(0);
    assert_eq!(buf, want);
    assert_eq!(
        a.read(8 << 20, &mut buf).expect_err("past end").kind(),
        K::OutOfRange
    );
    assert_eq!(
        a.read(100, &mut buf).expect_err("misaligned").kind(),
        K::InvalidArgument
    );
    // Reads handed over together: each its own data or error.
    let (mut one, mut two, mut three) = (vec![0xffu8; 8192], vec![0xffu8; 4096], vec![0u8; 4096]);
    let mut reads: Vec<(u64, &mut [u8])> = vec![
        ((4 << 20) + 4096, &mut one[..]),
        (8 << 20, &mut two[..]),
        (0, &mut three[..]),
    ];
    let results = a.read_many(&mut reads);
    assert_eq!(results.len(), 3);
    assert!(results[0].is_ok() && results[2].is_ok(), "{results:?}");
    assert_eq!(
        results[1].as_ref().expect_err("past end").kind(),
        K::OutOfRange
    );
    assert_eq!(one, want[4096..12288]);
    assert_eq!(three, vec![0u8; 4096]);
    // Writes handed over together: each lands, or fails with its own error.
    let (w1, w2) = (pattern(8192, 21), pattern(4096, 22));
    let results = a.write_many(&[
        ((4 << 20) + 16384, &w1[..]),
        (8 << 20, &w2[..]),
        (4096, &w2[..]),
    ]);
    assert_eq!(results.len(), 3);
    assert!(results[0].is_ok() && results[2].is_ok(), "{results:?}");
    assert_eq!(
        results[1].as_ref().expect_err("past end").kind(),
        K::OutOfRange
    );
    a.read((4 << 20) + 16384, &mut one).expect("read back");
    assert_eq!(one, w1);
    a.read(4096, &mut three).expect("read back");
    assert_eq!(three, w2);

    let e = exports.delete_volume(&a_name).expect_err("leased");
    assert_eq!(e.kind(), K::InUse, "{e}");
    drop(a);
    exports.delete_volume(&a_name).expect("delete a");
    drop(b);
    exports.delete_volume(&b_name).expect("delete b");
    let e = exports.open(&a_name).map(drop).expect_err("gone");
    assert_eq!(e.kind(), K::NotFound, "{e}");
}

#[test]
fn an_unavailable_pool_is_reported_and_the_others_still_serve() {
    use cairn_export::{ErrorKind as K, Exports};
    use cairn_rbd::served::{BackgroundPool, Combined, PoolStatus, RbdPoolConfig};
    let dir = tempfile::tempdir().expect("tempdir");
    let down = BackgroundPool::start(RbdPoolConfig {
        name: "down".into(),
        connect: missing_cluster(dir.path()),
        rados_pool: POOL.into(),
    });
    let up = BackgroundPool::start(RbdPoolConfig {
        name: "up".into(),
        connect: options(),
        rados_pool: POOL.into(),
    });
    let name = unique("served");
    up.available()
        .expect("the test cluster is up")
        .create_volume(&name, 1 << 20)
        .expect("create");
    let both = Combined::new(vec![down.clone(), up.clone()]);
    let listed = both.list().expect("list skips the unavailable pool");
    assert!(listed.iter().any(|v| v.name == name), "{listed:?}");
    let v = both.open(&name).expect("open through the pool that is up");
    v.write(0, &pattern(4096, 5), true).expect("write");
    assert!(
        matches!(down.status(), PoolStatus::Unavailable(_)),
        "{:?}",
        down.status()
    );
    assert_eq!(up.status(), PoolStatus::Available);
    let e = down.open(&name).map(drop).expect_err("down");
    assert_eq!(e.kind(), K::NotFound, "{e}");
    assert!(e.to_string().contains("unavailable"), "{e}");
    let e = both.open("no such volume").map(drop).expect_err("nowhere");
    assert_eq!(e.kind(), K::NotFound, "{e}");
    drop(v);
    up.available()
        .expect("up")
        .delete_volume(&name)
        .expect("delete");
}

/// A completion of [`submit`]: the request's tag and how it ended.
type Completed = (u64, cairn_export::IoDone);

/// Puts `io` in flight on the asynchronous side of `volume`, its completion sent to `tx`.
fn submit(
    volume: &dyn cairn_export::Volume,
    io: cairn_export::Io,
    tag: u64,
    tx: &std::sync::mpsc::Sender<Completed>,
) {
    let tx = tx.clone();
    let target = volume
        .asynchronous()
        .expect("an RBD volume completes by itself");
    let done = Box::new(move |done| tx.send((tag, done)).expect("the test waits"));
    assert!(target.submit(io, done).is_ok(), "a served image takes it");
}

/// The next `n` completions, each tag once, sorted by tag.
fn landed(rx: &std::sync::mpsc::Receiver<Completed>, n: usize) -> Vec<Completed> {
    let mut got: Vec<Completed> = (0..n)
        .map(|_| {
            rx.recv_timeout(Duration::from_secs(60))
                .expect("called back")
        })
        .collect();
    got.sort_by_key(|(tag, _)| *tag);
    let tags: Vec<u64> = got.iter().map(|(tag, _)| *tag).collect();
    assert_eq!(
        tags,
        (0..n as u64).collect::<Vec<_>>(),
        "each called back once"
    );
    got
}

/// Reads of the first `n` 64 KiB strides (4 KiB each), tagged by stride.
fn submit_reads(
    volume: &dyn cairn_export::Volume,
    n: u64,
    tx: &std::sync::mpsc::Sender<Completed>,
) {
    for i in 0..n {
        let buf = cairn_export::AlignedBuf::zeroed(4096);
        submit(
            volume,
            cairn_export::Io::Read {
                offset: i << 16,
                buf,
            },
            i,
            tx,
        );
    }
}

fn assert_patterns(got: Vec<Completed>) {
    for (i, done) in got {
        assert!(done.result.is_ok(), "{i}: {:?}", done.result.err());
        let buf = done.buf.expect("the read buffer comes back");
        assert!(buf[..] == pattern(4096, i as u8)[..], "stride {i}");
    }
}

#[test]
fn asynchronous_requests_land_right_even_after_every_handle_is_gone() {
    use cairn_export::{AlignedBuf, ErrorKind as K, Exports, Io};
    const N: u64 = 64;
    let exports = exports();
    let name = unique("async");
    exports.create_volume(&name, 8 << 20).expect("create");
    let volume = exports.open(&name).expect("open");
    let (tx, rx) = std::sync::mpsc::channel();
    for i in 0..N {
        let data = AlignedBuf::copy_of(&pattern(4096, i as u8));
        submit(
            &*volume,
            Io::Write {
                offset: i << 16,
                data,
            },
            i,
            &tx,
        );
    }
    for (i, done) in landed(&rx, N as usize) {
        assert!(done.result.is_ok(), "write {i}: {:?}", done.result.err());
        assert_eq!(
            done.buf.map(|b| b.len()),
            Some(4096),
            "the payload comes back"
        );
    }
    submit(&*volume, Io::Flush, 0, &tx);
    assert!(landed(&rx, 1).pop().expect("one").1.result.is_ok());
    submit_reads(&*volume, N, &tx);
    assert_patterns(landed(&rx, N as usize));

    // The checks and errors of the blocking path.
    let buf = AlignedBuf::zeroed(4096);
    submit(
        &*volume,
        Io::Read {
            offset: 8 << 20,
            buf,
        },
        0,
        &tx,
    );
    let e = landed(&rx, 1)
        .pop()
        .expect("one")
        .1
        .result
        .expect_err("past the end");
    assert_eq!(e.kind(), K::OutOfRange, "{e}");

    // Requests still in flight when every handle is dropped (the image closes only after
    // their callbacks, which still bring the data).
    submit_reads(&*volume, N, &tx);
    drop(volume);
    drop(exports);
    assert_patterns(landed(&rx, N as usize));
    let exports = self::exports();
    exports
        .delete_volume(&name)
        .expect("no handle is left open");
}

/// Reads `len` bytes at 0 of `name` through a handle of its own (a cache of its own, empty).
fn read_fresh(pool: &Pool, name: &str, len: usize) -> Vec<u8> {
    let mut got = vec![0u8; len];
    let image = pool.open_image(name).expect("open");
    image.read_at(0, &mut got).expect("read");
    got
}

#[test]
fn writes_wait_in_the_writeback_cache_until_a_flush_sends_them() {
    let (writer, other) = (pool(), pool());
    let name = unique("writeback");
    writer.create_image(&name, 4 << 20).expect("create");
    let data = pattern(64 << 10, 5);
    let image = writer.open_image(&name).expect("open");
    // librbd writes dirty data back after about a second on its own: an attempt whose read came
    // later than half of that says nothing, and is made again.
    let mut conclusive = false;
    for seed in 0..5u8 {
        let data = pattern(64 << 10, seed);
        let reader = other
            .open_image(&name)
            .expect("open a second client's handle");
        let mut seen = vec![0u8; data.len()];
        let start = Instant::now();
        image.write_at(0, &data).expect("write");
        reader.read_at(0, &mut seen).expect("read");
        if start.elapsed() < Duration::from_millis(500) {
            assert_ne!(
                seen, data,
                "a write without flush reached the cluster at once"
            );
            conclusive = true;
        }
        image.flush().expect("flush");
        assert_eq!(
            read_fresh(&other, &name, data.len()),
            data,
            "a flushed write"
        );
        if conclusive {
            break;
        }
    }
    assert!(conclusive, "no attempt read within 500 ms of its write");
    image.write_at(0, &data).expect("write");
    drop(image);
    assert_eq!(
        read_fresh(&other, &name, data.len()),
        data,
        "closing flushes"
    );
    writer.remove_image(&name).expect("remove");
}

#[test]
fn a_snapshot_another_client_takes_holds_the_lock_owners_unflushed_writes() {
    let (owner_pool, other) = (pool(), pool());
    let (src, child) = (unique("owner"), unique("owner-child"));
    owner_pool.create_image(&src, 4 << 20).expect("create");
    let owner = owner_pool.open_image(&src).expect("open");
    owner.lock_exclusive().expect("lock");
    let data = pattern(64 << 10, 3);
    owner.write_at(0, &data).expect("write, no flush");
    let manager = other.open_image(&src).expect("a second client's handle");
    manager
        .snap_create("s1")
        .expect("snap, done by the lock owner");
    other
        .clone_image(&other, &src, "s1", &child)
        .expect("clone");
    assert_eq!(read_fresh(&other, &child, data.len()), data);
    drop(manager);
    other.remove_image(&child).expect("remove clone");
    owner.snap_remove("s1").expect("snap remove");
    drop(owner);
    owner_pool.remove_image(&src).expect("remove");
}
