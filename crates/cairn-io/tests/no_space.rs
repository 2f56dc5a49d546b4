//! A write the host file system refuses for lack of room fails with `NoSpace` on every engine.
//! The refusal comes from the file-size limit (`RLIMIT_FSIZE` → `EFBIG`, which Cairn counts as no
//! space): this binary holds one test only, so lowering the limit of its process disturbs nothing.

// Lowering the limit and ignoring SIGXFSZ need libc calls; this crate is the one allowed them.
#![allow(unsafe_code)]

use cairn_io::{uring_available, Backend, BlockDevice, FileDevice, IoErrorKind, OpenOptions};

const LIMIT_BYTES: u64 = 1 << 20;

#[test]
fn writes_past_the_file_size_limit_fail_with_no_space() {
    let dir = tempfile::tempdir().unwrap();
    let mut devices = Vec::new();
    for backend in [Backend::Pread, Backend::Uring] {
        if backend == Backend::Uring && uring_available().is_err() {
            println!("skipped io_uring: not available here");
            continue;
        }
        for direct in [true, false] {
            let path = dir.path().join(format!("{backend:?}-{direct}.img"));
            let options = OpenOptions {
                create_size_bytes: Some(4 * LIMIT_BYTES),
                direct,
                backend,
            };
            devices.push((
                format!("{backend:?} direct={direct}"),
                FileDevice::open(&path, options).unwrap(),
            ));
        }
    }
    // SAFETY: setting a signal disposition to SIG_IGN installs no handler code; SIGXFSZ would
    // otherwise kill the process instead of letting the write fail with EFBIG.
    unsafe { libc::signal(libc::SIGXFSZ, libc::SIG_IGN) };
    let limit = libc::rlimit {
        rlim_cur: LIMIT_BYTES,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: `limit` is a local that outlives the call; setrlimit only reads it.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_FSIZE, &limit) }, 0);
    for (name, dev) in &devices {
        dev.write_at(0, &[1u8; 4096]).unwrap();
        let err = dev.write_at(2 * LIMIT_BYTES, &[1u8; 4096]).unwrap_err();
        assert_eq!(err.kind, IoErrorKind::NoSpace, "{name}: {err}");
        let batch = [(0, &[2u8; 4096][..]), (3 * LIMIT_BYTES, &[2u8; 4096][..])];
        let err = dev.write_batch(&batch).unwrap_err();
        assert_eq!(err.kind, IoErrorKind::NoSpace, "{name} batch: {err}");
    }
}
