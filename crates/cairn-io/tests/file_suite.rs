//! The shared device suite on `FileDevice`: pread/pwrite and io_uring, each with O_DIRECT and
//! buffered, on a regular file; and on a loop device when `losetup` works here (skipped with a
//! printed reason otherwise). Plus what only files have: creation, locking, growth, hole punching.

mod suite;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use cairn_io::{uring_available, Backend, BlockDevice, FileDevice, IoErrorKind, OpenOptions};
use suite::{pattern, SUITE_SIZE_BYTES};

fn options(backend: Backend, direct: bool, size: u64) -> OpenOptions {
    OpenOptions {
        create_size_bytes: Some(size),
        direct,
        backend,
    }
}

/// A fresh sparse file device; the file is unlinked once open (the descriptor keeps it alive).
fn file_device(backend: Backend, direct: bool) -> Option<Arc<dyn BlockDevice>> {
    if backend == Backend::Uring {
        if let Err(reason) = uring_available() {
            println!("skipped: io_uring is not available here: {reason}");
            return None;
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let dev = FileDevice::open(
        dir.path().join("pool.img"),
        options(backend, direct, SUITE_SIZE_BYTES),
    )
    .unwrap();
    assert_eq!(dev.backend(), backend);
    Some(Arc::new(dev))
}

device_suite!(pread_direct, || file_device(Backend::Pread, true));
device_suite!(pread_buffered, || file_device(Backend::Pread, false));
device_suite!(uring_direct, || file_device(Backend::Uring, true));
device_suite!(uring_buffered, || file_device(Backend::Uring, false));
device_suite!(loop_device, loop_device);

/// A loop device over a fresh backing file, detached again when the device is dropped.
struct LoopDevice {
    dev: FileDevice,
    node: PathBuf,
    _dir: tempfile::TempDir,
}

impl std::fmt::Debug for LoopDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.dev.fmt(f)
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        // The device must be closed before it can be detached; `dev` is dropped after this body,
        // so detach lazily (-d on an open loop device marks it for auto-clear on last close).
        let _ = Command::new("losetup").arg("-d").arg(&self.node).status();
    }
}

impl BlockDevice for LoopDevice {
    fn size_bytes(&self) -> u64 {
        self.dev.size_bytes()
    }
    fn alignment(&self) -> u64 {
        self.dev.alignment()
    }
    fn refresh_size(&self) -> cairn_io::IoResult<u64> {
        self.dev.refresh_size()
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> cairn_io::IoResult<()> {
        self.dev.read_at(offset, buf)
    }
    fn write_at(&self, offset: u64, data: &[u8]) -> cairn_io::IoResult<()> {
        self.dev.write_at(offset, data)
    }
    fn write_batch(&self, writes: &[(u64, &[u8])]) -> cairn_io::IoResult<()> {
        self.dev.write_batch(writes)
    }
    fn read_batch(&self, reads: &mut [(u64, &mut [u8])]) -> cairn_io::IoResult<()> {
        self.dev.read_batch(reads)
    }
    fn flush(&self) -> cairn_io::IoResult<()> {
        self.dev.flush()
    }
    fn discard(&self, offset: u64, len: u64) -> cairn_io::IoResult<()> {
        self.dev.discard(offset, len)
    }
}

/// Attaches a loop device over a new file, or explains why it cannot.
fn attach_loop(size: u64) -> Result<(PathBuf, tempfile::TempDir), String> {
    let status = std::fs::read_to_string("/proc/self/status").map_err(|e| e.to_string())?;
    let root = status
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"));
    if !root {
        return Err("not running as root".into());
    }
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let backing = dir.path().join("backing.img");
    std::fs::File::create(&backing)
        .and_then(|f| f.set_len(size))
        .map_err(|e| e.to_string())?;
    let out = Command::new("losetup")
        .args(["--find", "--show"])
        .arg(&backing)
        .output()
        .map_err(|e| format!("cannot run losetup: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "losetup failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let node = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim().to_string());
    Ok((node, dir))
}

fn loop_device() -> Option<Arc<dyn BlockDevice>> {
    let (node, dir) = match attach_loop(SUITE_SIZE_BYTES) {
        Ok(attached) => attached,
        Err(reason) => {
            println!("skipped: no loop device: {reason}");
            return None;
        }
    };
    let dev = match FileDevice::open(&node, None) {
        Ok(dev) => dev,
        Err(e) => {
            let _ = Command::new("losetup").arg("-d").arg(&node).status();
            panic!("cannot open loop device {}: {e}", node.display());
        }
    };
    assert!(dev.is_block_device());
    assert_eq!(dev.size_bytes(), SUITE_SIZE_BYTES);
    Some(Arc::new(LoopDevice {
        dev,
        node,
        _dir: dir,
    }))
}

fn allocated_bytes(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().blocks() * 512
}

#[test]
fn second_open_of_a_pool_is_refused_until_the_first_closes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pool.img");
    let first = FileDevice::open(&path, Some(1 << 20)).unwrap();
    for backend in [Backend::Pread, Backend::Auto] {
        let err = FileDevice::open(&path, options(backend, true, 1 << 20)).unwrap_err();
        assert_eq!(err.kind, IoErrorKind::Open);
        assert!(err.to_string().contains("in use"), "message: {err}");
    }
    drop(first);
    FileDevice::open(&path, None).unwrap();
}

#[test]
fn second_open_of_a_loop_device_is_refused() {
    let (node, _dir) = match attach_loop(1 << 20) {
        Ok(attached) => attached,
        Err(reason) => {
            println!("skipped: no loop device: {reason}");
            return;
        }
    };
    let first = FileDevice::open(&node, None);
    let second = FileDevice::open(&node, None).map(|_| ());
    drop(first);
    let _ = Command::new("losetup").arg("-d").arg(&node).status();
    let err = second.expect_err("second open of a held loop device succeeded");
    assert_eq!(err.kind, IoErrorKind::Open);
    assert!(err.to_string().contains("in use"), "message: {err}");
}

#[test]
fn a_new_pool_file_is_sparse_and_sized() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pool.img");
    let dev = FileDevice::open(&path, Some(1 << 30)).unwrap();
    assert_eq!(dev.size_bytes(), 1 << 30);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 1 << 30);
    assert!(allocated_bytes(&path) < 1 << 20, "not sparse");
    drop(dev);
    let again = FileDevice::open(&path, Some(4096)).unwrap();
    assert_eq!(
        again.size_bytes(),
        1 << 30,
        "an existing file keeps its size"
    );
}

#[test]
fn bad_opens_fail_with_open() {
    let dir = tempfile::tempdir().unwrap();
    let missing = FileDevice::open(dir.path().join("missing.img"), None).unwrap_err();
    assert_eq!(missing.kind, IoErrorKind::Open);
    let odd = FileDevice::open(dir.path().join("odd.img"), Some(5000)).unwrap_err();
    assert_eq!(odd.kind, IoErrorKind::Open);
    assert!(!dir.path().join("odd.img").exists());
    let not_a_file = FileDevice::open(dir.path(), None).unwrap_err();
    assert_eq!(not_a_file.kind, IoErrorKind::Open);
}

#[test]
fn growth_is_seen_after_refresh() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pool.img");
    let dev = FileDevice::open(&path, Some(1 << 20)).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(3 << 20)
        .unwrap();
    assert_eq!(dev.size_bytes(), 1 << 20);
    let err = dev.write_at(2 << 20, &[1u8; 4096]).unwrap_err();
    assert_eq!(err.kind, IoErrorKind::InvalidRange);
    assert_eq!(dev.refresh_size().unwrap(), 3 << 20);
    dev.write_at(2 << 20, &[1u8; 4096]).unwrap();
}

#[test]
fn discard_punches_a_hole_in_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pool.img");
    let dev = FileDevice::open(&path, Some(8 << 20)).unwrap();
    dev.write_at(1 << 20, &pattern(1, 4 << 20)).unwrap();
    dev.flush().unwrap();
    let before = allocated_bytes(&path);
    assert!(before >= 4 << 20);
    dev.discard(1 << 20, 4 << 20).unwrap();
    assert!(
        allocated_bytes(&path) <= before - (4 << 20),
        "hole not punched"
    );
    let mut buf = vec![1u8; 4 << 20];
    dev.read_at(1 << 20, &mut buf).unwrap();
    assert!(buf.iter().all(|&b| b == 0));
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 8 << 20);
}

/// Requests longer than one kernel request and caller memory that is not aligned (bounced under
/// O_DIRECT, in more than one round) on every engine.
#[test]
fn large_and_unaligned_transfers() {
    for backend in [Backend::Pread, Backend::Uring] {
        if backend == Backend::Uring && uring_available().is_err() {
            println!("skipped io_uring: not available here");
            continue;
        }
        let dir = tempfile::tempdir().unwrap();
        let dev =
            FileDevice::open(dir.path().join("p.img"), options(backend, true, 40 << 20)).unwrap();
        let data = pattern(11, (20 << 20) + 1);
        dev.write_at(4096, &data[1..]).unwrap();
        let mut out = vec![0u8; (20 << 20) + 1];
        dev.read_at(4096, &mut out[1..]).unwrap();
        assert!(
            out[1..] == data[1..],
            "{backend:?}: large unaligned read back"
        );
        let (a, b) = out[1..].split_at_mut(10 << 20);
        dev.read_batch(&mut [(4096, a), (4096 + (10 << 20), b)])
            .unwrap();
        assert!(
            out[1..] == data[1..],
            "{backend:?}: batched unaligned read back"
        );
    }
}

#[test]
fn direct_io_is_used_where_the_file_system_allows_it() {
    let dir = tempfile::tempdir().unwrap();
    let dev = FileDevice::open(
        dir.path().join("p.img"),
        options(Backend::Pread, true, 1 << 20),
    )
    .unwrap();
    println!(
        "O_DIRECT on the temp dir: {}, alignment {}",
        dev.is_direct(),
        dev.alignment()
    );
    assert!(dev.alignment() == 512 || dev.alignment() == 4096);
    let buffered = FileDevice::open(
        dir.path().join("b.img"),
        options(Backend::Pread, false, 1 << 20),
    )
    .unwrap();
    assert!(!buffered.is_direct());
    assert_eq!(buffered.alignment(), 512);
}

/// The lock is visible to other processes (what keeps a second daemon off a pool): util-linux
/// `flock -n` conflicts with it while the device is open and takes it once the device is closed.
#[test]
fn another_process_sees_the_lock() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pool.img");
    let try_lock = |path: &Path| {
        Command::new("flock")
            .args(["--nonblock", "--conflict-exit-code", "99"])
            .arg(path)
            .arg("true")
            .status()
    };
    let dev = FileDevice::open(&path, Some(1 << 20)).unwrap();
    let held = match try_lock(&path) {
        Ok(status) => status,
        Err(e) => {
            println!("skipped: cannot run util-linux flock: {e}");
            return;
        }
    };
    assert_eq!(
        held.code(),
        Some(99),
        "another process took the lock of an open device"
    );
    drop(dev);
    assert_eq!(try_lock(&path).unwrap().code(), Some(0));
}
