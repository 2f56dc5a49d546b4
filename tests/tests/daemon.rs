//! `cairn serve` as an operator runs it: first start with no set-up creates the default pool, the
//! daemon announces its listeners, refuses a second daemon and the CLI on the pool it holds, and shuts
//! down cleanly on SIGTERM leaving a pool that checks clean.

use cairn_tests::{cairn, test_config, Daemon};

#[test]
fn first_start_creates_default_pool_and_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let daemon = Daemon::start(&data, &test_config("")).unwrap();
    let pool = data.join("pool0.img");
    let meta = std::fs::metadata(&pool).expect("default pool file");
    assert_eq!(meta.len(), 16 << 30, "default pool is 16 GiB");
    {
        use std::os::unix::fs::MetadataExt;
        assert!(meta.blocks() * 512 < 1 << 30, "default pool file is sparse");
    }

    let listen = &daemon.listen;
    for addr in [listen.nbd, listen.smis_http, listen.smis_https] {
        let addr = addr.expect("every configured listener is announced in listen.json");
        assert!(addr.ip().is_loopback() && addr.port() != 0, "{addr}");
        std::net::TcpStream::connect(addr).expect("announced listener accepts");
    }

    // The CLI refuses a pool the daemon holds, naming the daemon.
    let (status, _, err) = cairn(&["--pool-file", pool.to_str().unwrap(), "pool", "info"]).unwrap();
    assert!(!status.success());
    assert!(err.contains("cairn serve") && err.contains("pid"), "{err}");

    // A second daemon on the same data directory is refused and changes nothing.
    let second = Daemon::start(&data, &test_config(""));
    assert!(second.is_err(), "a second daemon must be refused");

    let status = daemon.stop().unwrap();
    assert!(status.success(), "SIGTERM exits 0: {status:?}");
    assert!(!data.join("listen.json").exists());

    let (status, out, err) = cairn(&[
        "--json",
        "--pool-file",
        pool.to_str().unwrap(),
        "pool",
        "check",
    ])
    .unwrap();
    assert!(status.success(), "{out}{err}");
}

#[test]
fn configured_pools_are_created_and_reopened() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let pools = "[[pool]]\nname = \"fast\"\npath = \"fast.img\"\nsize = \"64MiB\"\n\
                 [[pool]]\nname = \"slow\"\npath = \"sub/slow.img\"\nsize = \"32MiB\"\n";
    let config = test_config(pools);
    Daemon::start(&data, &config).unwrap().stop().unwrap();
    for (file, name, size) in [
        ("fast.img", "fast", 64u64 << 20),
        ("sub/slow.img", "slow", 32 << 20),
    ] {
        let path = data.join(file);
        let (status, out, err) = cairn(&[
            "--json",
            "--pool-file",
            path.to_str().unwrap(),
            "pool",
            "info",
        ])
        .unwrap();
        assert!(status.success(), "{err}");
        let info: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(info["name"], name);
        assert_eq!(info["size_bytes"], size);
    }
    // Reopen (not re-create) on the next start.
    let daemon = Daemon::start(&data, &config).unwrap();
    assert!(daemon.stop().unwrap().success());
}

#[test]
fn a_file_that_is_not_a_pool_is_refused_not_formatted() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let junk = vec![0x11u8; 1 << 20];
    std::fs::write(data.join("pool0.img"), &junk).unwrap();
    assert!(Daemon::start(&data, &test_config("")).is_err());
    assert_eq!(std::fs::read(data.join("pool0.img")).unwrap(), junk);
}
