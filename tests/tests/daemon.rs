//! `cairn serve` as an operator runs it: first start with no set-up creates the default pool, the
//! daemon announces its listeners, refuses a second daemon and the CLI on the pool it holds, and shuts
//! down cleanly on SIGTERM leaving a pool that checks clean; HTTPS and NBD's STARTTLS present the one
//! certificate the daemon makes at its first start.

use std::process::Command;

use cairn_tests::{cairn, python, test_config, Daemon};

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
    daemon.stop_cleanly();
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

/// pywbem over HTTPS, verifying the server against `ca_file` (or the system's roots when it is
/// empty); prints the number of registered profiles, or fails.
const PYWBEM_VERIFIED: &str = "
import sys, pywbem
url, ca = sys.argv[1], sys.argv[2] or None
conn = pywbem.WBEMConnection(url, ('admin', 'secret'), default_namespace='interop', ca_certs=ca)
print(len(conn.EnumerateInstanceNames('CIM_RegisteredProfile')))
";

/// Lists the exports of the NBD server on `port`, verifying it against the CA directory `ca_dir`
/// when one is given; true on success.
fn nbdinfo_list(port: u16, ca_dir: Option<&std::path::Path>) -> bool {
    let url = match ca_dir {
        Some(dir) => format!(
            "nbds://localhost:{port}/?tls-certificates={}",
            dir.display()
        ),
        None => format!("nbd://localhost:{port}/"),
    };
    let out = Command::new("nbdinfo")
        .args(["--list", &url])
        .output()
        .expect("nbdinfo (apt: libnbd-bin)");
    eprintln!("nbdinfo {url}: {}", String::from_utf8_lossy(&out.stderr));
    out.status.success()
}

fn pywbem_over_https(daemon: &Daemon, ca_file: &str) -> std::process::Output {
    let url = format!(
        "https://localhost:{}",
        daemon.listen.smis_https.unwrap().port()
    );
    // requests lets these override the CA file pywbem passes it.
    Command::new(python())
        .env_remove("REQUESTS_CA_BUNDLE")
        .env_remove("CURL_CA_BUNDLE")
        .args(["-c", PYWBEM_VERIFIED, &url, ca_file])
        .output()
        .expect("run python")
}

#[test]
fn https_and_nbd_starttls_present_the_one_daemon_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // NBD on a non-loopback address needs TLS; the client still connects over loopback.
    let config = "[listen]\nsmis_http = \"\"\nsmis_https = \"127.0.0.1:0\"\nnbd = \"0.0.0.0:0\"\niscsi = \"\"\n\
                  [auth]\nuser = \"admin\"\npassword = \"secret\"\n\
                  [[pool]]\nname = \"p\"\npath = \"p.img\"\nsize = \"64MiB\"\n";
    let daemon = Daemon::start(&data, config).unwrap();
    let cert_path = data.join("tls").join("cert.pem");
    let cert = std::fs::read(&cert_path).expect("certificate made at first start");
    let ca_dir = dir.path().join("ca");
    std::fs::create_dir_all(&ca_dir).unwrap();
    std::fs::write(ca_dir.join("ca-cert.pem"), &cert).unwrap();

    let nbd_port = daemon.listen.nbd.expect("NBD").port();
    assert!(
        nbdinfo_list(nbd_port, Some(&ca_dir)),
        "NBD STARTTLS verified by the certificate"
    );
    assert!(!nbdinfo_list(nbd_port, None), "plain NBD is refused there");

    let verified = pywbem_over_https(&daemon, cert_path.to_str().unwrap());
    let text = String::from_utf8_lossy(&verified.stdout);
    assert!(
        verified.status.success() && text.trim().parse::<u32>().is_ok_and(|n| n > 0),
        "HTTPS verified by the same certificate: {text}{}",
        String::from_utf8_lossy(&verified.stderr)
    );
    let unverified = pywbem_over_https(&daemon, "");
    assert!(
        !unverified.status.success(),
        "a self-signed certificate: the system roots refuse it"
    );
    daemon.stop_cleanly();

    // The next start presents the same certificate: it is made once, then loaded.
    let daemon = Daemon::start(&data, config).unwrap();
    assert_eq!(std::fs::read(&cert_path).unwrap(), cert);
    let port = daemon.listen.nbd.expect("NBD").port();
    assert!(nbdinfo_list(port, Some(&ca_dir)));
    daemon.stop_cleanly();
}
