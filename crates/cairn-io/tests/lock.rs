//! The exclusive lock a `FileDevice` takes: a second open, in this process or another, is refused
//! while the device is open and succeeds once it is closed. One test only, in its own binary: a
//! child between fork and exec holds copies of every descriptor (and so every lock), so no other
//! test may start a process while this one checks that a closed device is free again.

use std::path::Path;
use std::process::{Command, ExitStatus};

use cairn_io::{Backend, FileDevice, IoErrorKind, OpenOptions};

/// util-linux `flock -n PATH true`: exit code 99 if the lock is held elsewhere, 0 if taken.
fn lock_from_another_process(path: &Path) -> std::io::Result<ExitStatus> {
    Command::new("flock")
        .args(["--nonblock", "--conflict-exit-code", "99"])
        .arg(path)
        .arg("true")
        .status()
}

#[test]
fn a_pool_is_locked_while_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pool.img");
    let first = FileDevice::open(&path, Some(1 << 20)).unwrap();
    for backend in [Backend::Pread, Backend::Auto] {
        let options = OpenOptions {
            create_size_bytes: Some(1 << 20),
            direct: true,
            backend,
        };
        let err = FileDevice::open(&path, options).unwrap_err();
        assert_eq!(err.kind, IoErrorKind::Open);
        assert!(err.to_string().contains("in use"), "message: {err}");
    }
    let other = lock_from_another_process(&path);
    match &other {
        Ok(status) => assert_eq!(status.code(), Some(99), "another process took the lock"),
        Err(e) => println!("skipped the other-process check: cannot run util-linux flock: {e}"),
    }
    drop(first);
    if other.is_ok() {
        let status = lock_from_another_process(&path).unwrap();
        assert_eq!(status.code(), Some(0), "the lock outlived the device");
    }
    FileDevice::open(&path, None).unwrap();
}
