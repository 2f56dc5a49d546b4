//! `CAIRN_IO_BACKEND` picks the engine of a device opened with `Backend::Auto`. This binary holds
//! one test only, so changing the environment races with nothing.

use cairn_io::{uring_available, Backend, FileDevice, OpenOptions, BACKEND_ENV};

fn open_auto(dir: &std::path::Path, name: &str) -> FileDevice {
    let options = OpenOptions {
        create_size_bytes: Some(1 << 20),
        ..OpenOptions::default()
    };
    FileDevice::open(dir.join(name), options).unwrap()
}

#[test]
fn the_environment_picks_the_engine() {
    let dir = tempfile::tempdir().unwrap();
    std::env::set_var(BACKEND_ENV, "pread");
    assert_eq!(open_auto(dir.path(), "a.img").backend(), Backend::Pread);
    let forced = OpenOptions {
        create_size_bytes: Some(1 << 20),
        direct: true,
        backend: Backend::Uring,
    };
    match uring_available() {
        Ok(()) => {
            let dev = FileDevice::open(dir.path().join("b.img"), forced).unwrap();
            assert_eq!(
                dev.backend(),
                Backend::Uring,
                "explicit options win over the variable"
            );
            std::env::set_var(BACKEND_ENV, "uring");
            assert_eq!(open_auto(dir.path(), "c.img").backend(), Backend::Uring);
            std::env::remove_var(BACKEND_ENV);
            assert_eq!(open_auto(dir.path(), "d.img").backend(), Backend::Uring);
        }
        Err(reason) => {
            println!("io_uring not available ({reason}): checking the fallback instead");
            std::env::remove_var(BACKEND_ENV);
            assert_eq!(open_auto(dir.path(), "d.img").backend(), Backend::Pread);
            let err = FileDevice::open(dir.path().join("b.img"), forced).unwrap_err();
            assert_eq!(err.kind, cairn_io::IoErrorKind::Open);
        }
    }
}
