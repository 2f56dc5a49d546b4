//! Opening pool devices for the daemon and the CLI, and naming the process that holds a pool when
//! the device lock refuses us.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;

use anyhow::{anyhow, Result};
use cairn_engine::{BlockDevice, IoErrorKind, PoolOptions};
use cairn_io::FileDevice;

/// Opens `path` (creating a sparse file of `create_size_bytes` if it is given and the file is
/// missing). A device held by another process is refused with a message naming that process.
pub fn open_device(path: &Path, create_size_bytes: Option<u64>) -> Result<Arc<dyn BlockDevice>> {
    match FileDevice::open(path, create_size_bytes) {
        Ok(dev) => Ok(Arc::new(dev)),
        Err(err) if err.kind == IoErrorKind::Open && path.exists() => match holder_of(path) {
            Some(holder) => Err(anyhow!(
                "Pool {} is held by {holder}; stop it or manage the pool through the daemon",
                path.display()
            )),
            None => Err(anyhow!(err).context(format!("Cannot open {}", path.display()))),
        },
        Err(err) => Err(anyhow!(err).context(format!("Cannot open {}", path.display()))),
    }
}

/// Engine options for a short-lived CLI command: every operation commits before it returns.
pub fn cli_pool_options() -> PoolOptions {
    PoolOptions {
        commit_interval: None,
        ..PoolOptions::default()
    }
}

/// The process holding an exclusive lock on `path`, as "cairn serve (pid N)", from /proc/locks.
fn holder_of(path: &Path) -> Option<String> {
    let ino = std::fs::metadata(path).ok()?.ino();
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    let pid = locks.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (pid, dev_ino) = (fields.get(4)?, fields.get(5)?);
        let lock_ino: u64 = dev_ino.rsplit(':').next()?.parse().ok()?;
        (lock_ino == ino).then(|| pid.to_string())
    })?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let command = cmdline
        .split(|b| *b == 0)
        .filter(|part| !part.is_empty())
        .take(2)
        .map(|part| {
            let text = String::from_utf8_lossy(part);
            text.rsplit('/').next().unwrap_or_default().to_string()
        })
        .collect::<Vec<_>>()
        .join(" ");
    Some(if command.is_empty() {
        format!("process {pid}")
    } else {
        format!("{command} (pid {pid})")
    })
}
