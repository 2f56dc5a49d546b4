//! End to end: the NBD server started in-process on 127.0.0.1:0 over a real engine pool, driven by
//! the real NBD clients as subprocesses (nbdinfo, nbdcopy from libnbd-bin; qemu-io from qemu-utils;
//! fio with its nbd engine). A missing client fails the test with a message naming the package.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::MetadataExt;
use std::process::{Command, Stdio};
use std::sync::Arc;

use cairn_engine::{ErrorKind, Pool, PoolOptions, Storage, VolumeId, VolumeInfo, VolumeOptions};
use cairn_io::{BlockDevice, CrashMode, CrashPoint, MemDevice, RecordingDevice};
use cairn_nbd::{start, NbdServerConfig, NbdServerHandle};

const MIB: u64 = 1 << 20;

/// A daemon in miniature: one pool, the NBD server on an ephemeral loopback port.
struct Daemon {
    rt: tokio::runtime::Runtime,
    storage: Arc<Storage>,
    pool: Arc<Pool>,
    server: Option<NbdServerHandle>,
    port: u16,
}

impl Daemon {
    fn on(dev: Arc<dyn BlockDevice>, opts: PoolOptions) -> Daemon {
        Self::with_config(
            dev,
            opts,
            NbdServerConfig {
                addr: "127.0.0.1:0".parse().unwrap(),
                ..Default::default()
            },
        )
    }

    fn new() -> Daemon {
        Self::on(Arc::new(MemDevice::new(1 << 30)), PoolOptions::default())
    }

    fn with_config(dev: Arc<dyn BlockDevice>, opts: PoolOptions, cfg: NbdServerConfig) -> Daemon {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let pool = Pool::create(dev, "p0", opts).expect("create pool");
        let storage = Arc::new(Storage::new());
        storage.add_pool(pool.clone()).unwrap();
        let server = rt
            .block_on(start(cfg, storage.clone()))
            .expect("start NBD server");
        let port = server.local_addr().port();
        Daemon {
            rt,
            storage,
            pool,
            server: Some(server),
            port,
        }
    }

    fn volume(&self, name: &str, size: u64, opts: VolumeOptions) -> VolumeInfo {
        self.storage
            .create_volume("p0", name, size, opts)
            .expect("create volume")
            .1
    }

    fn uri(&self, export: &str) -> String {
        format!("nbd://127.0.0.1:{}/{export}", self.port)
    }

    fn shutdown(&mut self) {
        if let Some(server) = self.server.take() {
            self.rt
                .block_on(server.shutdown())
                .expect("graceful shutdown");
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// A client command; panics with the package to install if the program is missing.
fn client(program: &str) -> Command {
    let package = match program {
        "qemu-io" | "qemu-img" => "qemu-utils",
        "fio" => "fio",
        "openssl" => "openssl",
        _ => "libnbd-bin",
    };
    match Command::new("sh").arg("-c").arg(format!("command -v {program}")).output() {
        Ok(out) if out.status.success() => Command::new(program),
        _ => panic!("NBD client `{program}` is not installed: install the `{package}` package (apt-get install {package})"),
    }
}

/// Runs a command to completion; panics with its output unless it succeeded.
fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    stdout
}

/// Runs qemu-io commands against an export and checks that none reported a failure.
fn qemu_io(uri: &str, commands: &[&str]) -> String {
    qemu_io_with(&["-f", "raw"], uri, commands)
}

/// Like [`qemu_io`] but opens the export read-only (required for read-only exports).
fn qemu_io_read_only(uri: &str, commands: &[&str]) -> String {
    qemu_io_with(&["-r", "-f", "raw"], uri, commands)
}

fn qemu_io_with(options: &[&str], uri: &str, commands: &[&str]) -> String {
    let mut cmd = client("qemu-io");
    cmd.args(options);
    for c in commands {
        cmd.args(["-c", c]);
    }
    let out = run(cmd.arg(uri));
    assert!(
        !out.contains("failed") && !out.contains("error"),
        "qemu-io {commands:?} on {uri}:\n{out}"
    );
    out
}

fn pattern(len: usize, byte: u8) -> Vec<u8> {
    vec![byte; len]
}

/// Exports `alpha` (64 MiB), `beta` (32 MiB, 512-byte blocks, read-only) and hidden `gamma`;
/// returns alpha's id.
fn three_volumes(d: &Daemon) -> VolumeId {
    let alpha = d.volume("alpha", 64 * MIB, VolumeOptions::default());
    let ro = VolumeOptions {
        logical_block_size: 512,
        read_only: true,
        ..Default::default()
    };
    d.volume("beta", 32 * MIB, ro);
    d.volume(
        "gamma",
        16 * MIB,
        VolumeOptions {
            hidden: true,
            ..Default::default()
        },
    );
    alpha.id
}

#[test]
fn nbdinfo_lists_the_exports_but_hidden_ones() {
    let d = Daemon::new();
    three_volumes(&d);
    let list = run(client("nbdinfo").args(["--list", &d.uri("")]));
    assert!(list.contains("export=\"alpha\""), "{list}");
    assert!(list.contains("export=\"beta\""), "{list}");
    assert!(
        !list.contains("gamma"),
        "hidden volumes are not exported:\n{list}"
    );
    let missing = client("nbdinfo").arg(d.uri("gamma")).output().unwrap();
    assert!(
        !missing.status.success(),
        "a hidden volume cannot be opened"
    );
}

#[test]
fn nbdinfo_reports_sizes_block_sizes_and_flags() {
    let d = Daemon::new();
    three_volumes(&d);
    let info = run(client("nbdinfo").arg(d.uri("alpha")));
    for needle in [
        "export-size: 67108864",
        "base:allocation",
        "block_size_minimum: 4096",
        "block_size_preferred: 4096",
        "block_size_maximum: 33554432",
        "can_multi_conn: true",
        "can_flush: true",
        "can_fua: true",
        "can_trim: true",
        "can_zero: true",
        "is_read_only: false",
    ] {
        assert!(info.contains(needle), "missing {needle:?} in:\n{info}");
    }
    let info = run(client("nbdinfo").arg(d.uri("beta")));
    assert!(
        info.contains("export-size: 33554432") && info.contains("is_read_only: true"),
        "{info}"
    );
    assert!(info.contains("block_size_minimum: 512"), "{info}");
}

#[test]
fn nbdinfo_maps_allocation() {
    let d = Daemon::new();
    let alpha = three_volumes(&d);
    d.pool.write(alpha, MIB, &pattern(64 << 10, 0x5a)).unwrap();
    let map = run(client("nbdinfo").args(["--map", &d.uri("alpha")]));
    let runs: Vec<(u64, u64, u32)> = map
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (
                f[0].parse().unwrap(),
                f[1].parse().unwrap(),
                f[2].parse().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        runs,
        vec![
            (0, MIB, 3),
            (MIB, 64 << 10, 0),
            (MIB + (64 << 10), 63 * MIB - (64 << 10), 3)
        ],
        "{map}"
    );
}

#[test]
fn qemu_io_snapshot_export_keeps_old_data() {
    let d = Daemon::new();
    let vol = d.volume("vm1", 64 * MIB, VolumeOptions::default());
    let uri = d.uri("vm1");
    qemu_io(
        &uri,
        &[
            "write -P 0xa1 0 1M",
            "write -P 0xa2 8M 64k",
            "read -P 0xa1 0 1M",
        ],
    );

    d.storage
        .snapshot(
            vol.id,
            "vm1-snap",
            VolumeOptions {
                read_only: true,
                ..Default::default()
            },
        )
        .unwrap();
    qemu_io(&uri, &["write -P 0xb1 0 1M", "write -z 8M 64k"]);

    let snap = d.uri("vm1-snap");
    qemu_io_read_only(
        &snap,
        &[
            "read -P 0xa1 0 1M",
            "read -P 0xa2 8M 64k",
            "read -P 0 16M 1M",
        ],
    );
    qemu_io(&uri, &["read -P 0xb1 0 1M", "read -P 0 8M 64k"]);
    let info = run(client("nbdinfo").arg(&snap));
    assert!(info.contains("is_read_only: true"), "{info}");

    // The engine sees exactly what the clients wrote.
    let mut buf = vec![0u8; MIB as usize];
    d.pool.read(vol.id, 0, &mut buf).unwrap();
    assert!(buf.iter().all(|b| *b == 0xb1));
}

#[test]
fn nbdcopy_of_a_sparse_volume_is_sparse_and_identical() {
    let d = Daemon::new();
    let size = 64 * MIB;
    d.volume("sparse", size, VolumeOptions::default());
    let uri = d.uri("sparse");
    qemu_io(
        &uri,
        &[
            "write -P 0x11 0 64k",
            "write -P 0x22 8M 1M",
            "write -P 0x33 60M 4k",
        ],
    );

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("copy.raw");
    run(client("nbdcopy").args([uri.as_str(), out.to_str().unwrap()]));

    let mut expected = vec![0u8; size as usize];
    expected[..64 << 10].fill(0x11);
    expected[8 << 20..9 << 20].fill(0x22);
    expected[60 << 20..(60 << 20) + 4096].fill(0x33);
    let copy = std::fs::read(&out).unwrap();
    assert_eq!(copy.len(), expected.len());
    assert!(copy == expected, "copy differs from the volume");
    let allocated = std::fs::metadata(&out).unwrap().blocks() * 512;
    assert!(
        allocated < 4 * MIB,
        "copy of 1.1 MiB of data allocates {allocated} bytes: not sparse"
    );
}

#[test]
fn flush_on_one_connection_makes_writes_of_another_durable() {
    let rec = Arc::new(RecordingDevice::new(MemDevice::new(512 * MIB)));
    let opts = PoolOptions {
        commit_interval: None,
        ..Default::default()
    };
    let d = Daemon::on(rec.clone(), opts.clone());
    let vol = d.volume("mc", 64 * MIB, VolumeOptions::default());
    let uri = d.uri("mc");

    // Connection B stays open (interactive qemu-io) while connection A writes.
    let mut b = client("qemu-io")
        .args(["-f", "raw", &uri])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut b_in = b.stdin.take().unwrap();
    let mut b_out = BufReader::new(b.stdout.take().unwrap());
    writeln!(b_in, "read 0 4k").unwrap();
    let mut line = String::new();
    while !line.contains("read 4096/4096") {
        line.clear();
        assert!(
            b_out.read_line(&mut line).unwrap() > 0,
            "connection B ended early"
        );
    }
    assert_eq!(d.storage.users(vol.id), 1, "connection B holds a lease");

    // A: fio writes without FUA and closes without FLUSH (see tests/data/fio-02.c2s).
    let out = run(client("fio").args([
        "--name=a",
        "--ioengine=nbd",
        &format!("--uri={uri}"),
        "--rw=write",
        "--bs=64k",
        "--iodepth=4",
        "--size=2m",
        "--buffer_pattern=0x5c",
    ]));
    assert!(out.contains("err= 0"), "{out}");
    let read_volume = |image: MemDevice| {
        let pool = Pool::open(Arc::new(image), opts.clone()).expect("reopen crash image");
        let v = pool.volume_by_name("mc").expect("volume survives");
        let mut buf = vec![0u8; 2 * MIB as usize];
        pool.read(v.id, 0, &mut buf).unwrap();
        buf
    };
    let before = read_volume(rec.image_at(CrashPoint::new(rec.ops_len(), 1, CrashMode::Drop)));
    assert!(
        before.iter().all(|b| *b == 0),
        "unflushed writes must not be durable yet"
    );

    writeln!(b_in, "flush").unwrap();
    drop(b_in);
    assert!(b.wait().unwrap().success());
    let after = read_volume(rec.image_at(CrashPoint::new(rec.ops_len(), 2, CrashMode::Drop)));
    assert!(
        after.iter().all(|b| *b == 0x5c),
        "FLUSH on B made A's writes durable"
    );
}

#[test]
fn fio_verified_random_writes() {
    let d = Daemon::new();
    d.volume("fio", 64 * MIB, VolumeOptions::default());
    let scratch = tempfile::tempdir().unwrap();
    let out = run(client("fio").current_dir(scratch.path()).args([
        "--name=verify",
        "--ioengine=nbd",
        &format!("--uri={}", d.uri("fio")),
        "--rw=randwrite",
        "--bs=4k",
        "--iodepth=32",
        "--size=32m",
        "--verify=crc32c",
        "--do_verify=1",
        "--verify_fatal=1",
        "--verify_state_save=0",
    ]));
    assert!(out.contains("err= 0"), "{out}");
}

#[test]
fn a_connection_leases_its_volume_and_shutdown_is_graceful() {
    let mut d = Daemon::new();
    let vol = d.volume("leased", 16 * MIB, VolumeOptions::default());
    let mut c = client("qemu-io")
        .args(["-f", "raw", &d.uri("leased")])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut c_in = c.stdin.take().unwrap();
    let mut c_out = BufReader::new(c.stdout.take().unwrap());
    writeln!(c_in, "write -P 0x77 0 64k").unwrap();
    let mut line = String::new();
    while !line.contains("wrote 65536/65536") {
        line.clear();
        assert!(
            c_out.read_line(&mut line).unwrap() > 0,
            "client ended early"
        );
    }
    let err = d.storage.delete_volume(vol.id).expect_err("volume in use");
    assert_eq!(err.kind(), ErrorKind::InUse);

    d.shutdown();
    assert_eq!(
        d.storage.users(vol.id),
        0,
        "shutdown closed every connection"
    );
    drop(c_in);
    let _ = c.wait();
    d.storage.delete_volume(vol.id).expect("no user left");
}

#[test]
fn plain_nbd_on_a_non_loopback_address_needs_tls() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let storage = Arc::new(Storage::new());
    let cfg = NbdServerConfig {
        addr: "0.0.0.0:0".parse().unwrap(),
        ..Default::default()
    };
    let err = rt.block_on(start(cfg, storage)).expect_err("refused");
    assert_eq!(err.kind(), cairn_nbd::ErrorKind::InsecureBind);
}

/// A server configuration with a certificate for localhost and 127.0.0.1 signed by a test CA
/// made with openssl in `dir` (its certificate left there as `ca-cert.pem`).
fn server_config_signed_by_a_test_ca(dir: &std::path::Path) -> rustls::ServerConfig {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    let p = |f: &str| dir.join(f).to_str().unwrap().to_string();
    let ext = "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n";
    std::fs::write(p("leaf.ext"), ext).unwrap();
    run(client("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=Cairn test CA",
        ])
        .args(["-keyout", &p("ca-key.pem"), "-out", &p("ca-cert.pem")]));
    run(client("openssl")
        .args([
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
        ])
        .args(["-keyout", &p("server-key.pem"), "-out", &p("server.csr")]));
    run(client("openssl")
        .args([
            "x509",
            "-req",
            "-days",
            "2",
            "-in",
            &p("server.csr"),
            "-CA",
            &p("ca-cert.pem"),
        ])
        .args([
            "-CAkey",
            &p("ca-key.pem"),
            "-CAcreateserial",
            "-extfile",
            &p("leaf.ext"),
            "-out",
            &p("server-cert.pem"),
        ]));

    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(p("server-cert.pem"))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(p("server-key.pem")).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap()
}

#[test]
fn starttls_with_rustls_serves_nbds_clients_only() {
    let dir = tempfile::tempdir().unwrap();
    let tls = server_config_signed_by_a_test_ca(dir.path());
    let cfg = NbdServerConfig {
        addr: "127.0.0.1:0".parse().unwrap(),
        tls: Some(Arc::new(tls)),
        ..Default::default()
    };
    let d = Daemon::with_config(
        Arc::new(MemDevice::new(256 * MIB)),
        PoolOptions::default(),
        cfg,
    );
    d.volume("secret", 8 * MIB, VolumeOptions::default());

    // libnbd wants ca-cert.pem in the certificates directory.
    let certs_dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        dir.path().join("ca-cert.pem"),
        certs_dir.path().join("ca-cert.pem"),
    )
    .unwrap();
    let uri = format!(
        "nbds://localhost:{}/secret?tls-certificates={}",
        d.port,
        certs_dir.path().display()
    );
    let info = run(client("nbdinfo").arg(&uri));
    assert!(
        info.contains("export-size: 8388608") && info.contains("with TLS"),
        "{info}"
    );

    let plain = client("nbdinfo").arg(d.uri("secret")).output().unwrap();
    assert!(
        !plain.status.success(),
        "plain NBD is refused when TLS is configured"
    );
    let plain_list = client("nbdinfo")
        .args(["--list", &d.uri("")])
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&plain_list.stdout).contains("secret"),
        "no export names before TLS"
    );
}
