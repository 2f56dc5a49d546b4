//! The shared device suite on a raw block device: a loop device over a temporary file, when
//! `losetup` works here (as root); skipped with a printed reason otherwise.

mod suite;

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;

use cairn_io::{BlockDevice, FileDevice, IoErrorKind};
use suite::SUITE_SIZE_BYTES;

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
