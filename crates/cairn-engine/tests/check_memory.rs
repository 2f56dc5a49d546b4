//! Measures the resident memory `check` needs: a 4 TiB sparse pool file holding 1 GiB of data
//! (in one volume and its snapshots, partly overwritten so extents are shared and split) is
//! checked by a fresh process of this test binary, whose whole resident peak (`VmHWM`, the
//! binary included) must stay under 64 MiB.
//!
//! The pool is written through `SparseFile`: a `FileDevice` that leaves out the preallocation
//! of the metadata reserve (3% of 4 TiB would not fit a test machine's file system); the check
//! reads the file through a plain `FileDevice`.

mod support;

use std::process::Command;
use std::sync::Arc;

use cairn_engine::{check_device, BlockDevice, IoError, PoolOptions, VolumeOptions};
use cairn_io::FileDevice;

type IoResult<T> = std::result::Result<T, IoError>;

const MIB: u64 = 1 << 20;
const POOL_BYTES: u64 = 4 << 40;
const DATA_BYTES: u64 = 1 << 30;
const CHECK_RESIDENT_BYTES_MAX: u64 = 64 * MIB;
/// Set in the child process: the pool file to check.
const CHILD_ENV: &str = "CAIRN_CHECK_MEMORY_POOL";
const TEST_NAME: &str = "check_of_a_4_tib_pool_with_1_gib_of_data_stays_under_64_mib";

/// A pool file whose blocks are left to be allocated when written.
#[derive(Debug)]
struct SparseFile(FileDevice);

impl BlockDevice for SparseFile {
    fn size_bytes(&self) -> u64 {
        self.0.size_bytes()
    }
    fn alignment(&self) -> u64 {
        self.0.alignment()
    }
    fn refresh_size(&self) -> IoResult<u64> {
        self.0.refresh_size()
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> IoResult<()> {
        self.0.read_at(offset, buf)
    }
    fn write_at(&self, offset: u64, data: &[u8]) -> IoResult<()> {
        self.0.write_at(offset, data)
    }
    fn write_batch(&self, writes: &[(u64, &[u8])]) -> IoResult<()> {
        self.0.write_batch(writes)
    }
    fn flush(&self) -> IoResult<()> {
        self.0.flush()
    }
    fn discard(&self, offset: u64, len: u64) -> IoResult<()> {
        self.0.discard(offset, len)
    }
}
/// A `kB` field of `/proc/self/status`, in bytes.
fn status_bytes(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with(field))
        .unwrap_or_else(|| panic!("{field} missing from /proc/self/status"));
    let kb: u64 = line[field.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap();
    kb * 1024
}

/// Writes 1 GiB of distinct data, snapshotting and overwriting a quarter of it between passes.
fn fill(dev: Arc<dyn BlockDevice>) {
    let opts = PoolOptions {
        commit_interval: None,
        node_cache_bytes: 4 << 20,
        preallocate: false,
    };
    let p = support::create(dev, "big", opts).unwrap();
    let v = p
        .create_volume("v", 64 << 30, VolumeOptions::default())
        .unwrap();
    let chunk = 4 * MIB;
    let mut buf = vec![0u8; chunk as usize];
    let first = DATA_BYTES * 3 / 4;
    for (i, off) in (0..first).step_by(chunk as usize).enumerate() {
        buf.fill(i as u8);
        p.write(v.id, off, &buf).unwrap();
    }
    for s in 0..4u64 {
        p.snapshot(v.id, &format!("s{s}"), VolumeOptions::default())
            .unwrap();
        // Each pass overwrites a sixteenth, in small writes spread over the volume.
        let small = 64 * 1024;
        for k in 0..(DATA_BYTES / 16 / small) {
            buf[..small as usize].fill((s * 7 + k) as u8);
            let off = (k * 997 * small + s * small) % first;
            p.write(v.id, off, &buf[..small as usize]).unwrap();
        }
    }
    p.close().unwrap();
}

/// The child: checks the pool file and prints its resident peak.
fn check_child(path: &str) {
    let dev = Arc::new(FileDevice::open(path, None).unwrap());
    let report = check_device(dev).unwrap();
    assert!(report.is_clean(), "{:?}", report.findings);
    assert!(report.blocks_in_use >= DATA_BYTES / 4096, "{report:?}");
    println!(
        "blocks_in_use={} peak_bytes={}",
        report.blocks_in_use,
        status_bytes("VmHWM:")
    );
}

#[test]
fn check_of_a_4_tib_pool_with_1_gib_of_data_stays_under_64_mib() {
    if let Ok(path) = std::env::var(CHILD_ENV) {
        return check_child(&path);
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pool.img");
    fill(Arc::new(SparseFile(
        FileDevice::open(&path, Some(POOL_BYTES)).unwrap(),
    )));
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", TEST_NAME, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, &path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let field = |name: &str| -> u64 {
        let at = stdout
            .find(name)
            .unwrap_or_else(|| panic!("{name} in {stdout}"));
        let rest = &stdout[at + name.len()..];
        rest.split_whitespace().next().unwrap().parse().unwrap()
    };
    let (in_use, peak) = (field("blocks_in_use="), field("peak_bytes="));
    eprintln!(
        "check of a {} GiB pool file, {in_use} blocks in use: peak {} MiB resident",
        POOL_BYTES >> 30,
        peak / MIB
    );
    assert!(
        peak < CHECK_RESIDENT_BYTES_MAX,
        "check took {} MiB resident",
        peak / MIB
    );
}
