//! A Ceph outage under a running daemon: the test brings up a one-node cluster of its own
//! (`tools/ceph-cluster.sh` on free monitor ports in a temporary directory, never the shared
//! test cluster), serves an RBD pool from it beside a file pool, runs I/O over NBD, stops the
//! OSD and checks that requests fail cleanly and quickly (EIO over NBD, a method return code and
//! the pool's OperationalStatus Error / Lost Communication over SMI-S) while the file pool is
//! served; then starts the OSD again and checks that the same daemon, never restarted, serves the
//! volume again — over the NBD connection that saw the errors too — after taking the image's
//! exclusive lock over from its old connection (which Ceph then blocklists, so a write of the
//! outage cannot land later), with the data checked by `rbd export`.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use cairn_tests::{nbd, qemu_io, smis_step, test_config, Daemon};

const MIB: usize = 1 << 20;
/// The pool's `op_timeout_secs`: how long a request waits for the stopped OSD.
const OP_TIMEOUT_S: u64 = 3;
/// How long a request may take to fail during the outage: the timeout and some slack.
const FAIL_WITHIN: Duration = Duration::from_secs(OP_TIMEOUT_S + 7);
/// How long the daemon may take to serve the pool again once the OSD is back.
const RECOVER_WITHIN: Duration = Duration::from_secs(60);

/// A cluster of the test's own, stopped and removed when dropped.
struct OwnCluster {
    dir: tempfile::TempDir,
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tools/ceph-cluster.sh")
}

/// A port nothing listens on now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

impl OwnCluster {
    fn start() -> OwnCluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let cluster = OwnCluster { dir };
        let (v2, v1) = (free_port(), free_port());
        let out = Command::new("bash")
            .arg(script())
            .arg("start")
            .arg(cluster.path())
            .env("CEPH_MON_PORT", v2.to_string())
            .env("CEPH_MON_PORT_V1", v1.to_string())
            .env("CEPH_OSD_BYTES", (2u64 << 30).to_string())
            .output()
            .expect("bash");
        assert!(
            out.status.success(),
            "ceph-cluster.sh start: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        cluster
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn conf(&self) -> PathBuf {
        self.path().join("ceph.conf")
    }

    /// `tools/ceph-cluster.sh WHAT DIR`, which must succeed.
    fn run(&self, what: &str) {
        let out = Command::new("bash")
            .arg(script())
            .arg(what)
            .arg(self.path())
            .output()
            .expect("bash");
        assert!(
            out.status.success(),
            "ceph-cluster.sh {what}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Ceph's `TOOL ARGS` on this cluster as client.admin; its stdout.
    fn tool(&self, tool: &str, args: &[&str]) -> String {
        let out = Command::new(tool)
            .arg("-c")
            .arg(self.conf())
            .args(args)
            .output()
            .expect("ceph-common");
        assert!(
            out.status.success(),
            "{tool} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for OwnCluster {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(script())
            .arg("stop")
            .arg(self.path())
            .status();
    }
}

/// A qemu-io holding one NBD connection open across the outage, fed commands one at a time.
struct Host {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
}

impl Host {
    fn open(daemon: &Daemon, export: &str) -> Host {
        let url = format!("nbd://{}/{export}", daemon.listen.nbd.expect("NBD"));
        let mut child = Command::new("qemu-io")
            .args(["-f", "raw", &url])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("qemu-io (apt: qemu-utils)");
        let stdin = child.stdin.take().expect("stdin");
        let (tx, lines) = mpsc::channel();
        for out in [
            Box::new(child.stdout.take().expect("stdout")) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().expect("stderr")),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines().map_while(|l| l.ok()) {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        Host {
            child,
            stdin,
            lines,
        }
    }

    /// Runs one read or write command; (succeeded, how long it took, what qemu-io said).
    fn run(&mut self, command: &str) -> (bool, Duration, String) {
        let start = Instant::now();
        writeln!(self.stdin, "{command}").expect("qemu-io takes a command");
        loop {
            let line = self
                .lines
                .recv_timeout(Duration::from_secs(120))
                .unwrap_or_else(|e| panic!("qemu-io said nothing after {command:?}: {e}"));
            eprintln!("[qemu-io] {line}");
            if line.contains("failed") {
                return (false, start.elapsed(), line);
            }
            if line.contains("wrote ") || line.contains("read ") {
                return (true, start.elapsed(), line);
            }
        }
    }

    fn close(mut self) {
        writeln!(self.stdin, "quit").expect("quit");
        let _ = self.child.wait();
    }
}

/// The pool `name`'s OperationalStatus over SMI-S.
fn pool_status(daemon: &Daemon, name: &str) -> serde_json::Value {
    smis_step(daemon, "volumes.py", &["pools"])[name]["status"].clone()
}

#[test]
fn an_osd_outage_fails_requests_cleanly_and_the_daemon_recovers_by_itself() {
    let cluster = OwnCluster::start();
    let pools = format!(
        "[[pool]]\nname = \"local\"\npath = \"local.img\"\nsize = \"64MiB\"\n\
         [[pool]]\nname = \"ceph\"\nkind = \"rbd\"\nceph_conf = \"{}\"\nclient = \"admin\"\n\
         rados_pool = \"rbd\"\nop_timeout_secs = {OP_TIMEOUT_S}\n",
        cluster.conf().display()
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let mut daemon =
        Daemon::start(&dir.path().join("data"), &test_config(&pools)).expect("cairn serve starts");
    let made = smis_step(
        &daemon,
        "array_steps.py",
        &["create-volume", "ceph", "vol", &(16 * MIB).to_string()],
    );
    assert_eq!(made["rc"], 0, "{made}");
    assert!(qemu_io(&daemon, "vol", &["write -P 0x11 0 1M", "flush"]));
    let mut host = Host::open(&daemon, "vol");
    assert!(host.run("read -P 0x11 0 64k").0);
    let mut raw = nbd::connect(daemon.listen.nbd.expect("NBD"), "vol");

    // The outage: the OSD stops; requests fail within the operation timeout, cleanly. A write
    // without FUA may still be taken into librbd's writeback cache (it is not durable yet).
    cluster.run("stop-osd");
    let start = Instant::now();
    let (error, _) = nbd::call(
        &mut raw,
        nbd::CMD_WRITE,
        2 * MIB as u64,
        &[0x44; 65536],
        65536,
    );
    assert!(error == 0 || error == nbd::EIO, "NBD error {error}");
    assert!(start.elapsed() < FAIL_WITHIN, "{:?}", start.elapsed());
    let (ok, took, said) = host.run("write -f -P 0x22 0 64k");
    assert!(!ok && said.contains("Input/output error"), "{said}");
    assert!(took < FAIL_WITHIN, "the write failed after {took:?}");
    let (ok, took, said) = host.run("read -P 0x11 0 64k");
    assert!(!ok && took < FAIL_WITHIN, "{said} after {took:?}");
    daemon
        .wait_for_log("RBD pool lost", FAIL_WITHIN)
        .expect("the pool is given up");
    let start = Instant::now();
    assert_eq!(pool_status(&daemon, "ceph"), serde_json::json!([6, 13]));
    assert_eq!(pool_status(&daemon, "local"), serde_json::json!([2]));
    let refused = smis_step(&daemon, "volumes.py", &["create", "ceph", "other", "4096"]);
    assert_eq!(refused["rc"], 4, "{refused}");
    assert!(!qemu_io(&daemon, "vol", &["read 0 4k"]), "a new host too");
    assert!(start.elapsed() < FAIL_WITHIN, "{:?}", start.elapsed());
    let local = smis_step(
        &daemon,
        "array_steps.py",
        &["create-volume", "local", "l", "4096"],
    );
    assert_eq!(local["rc"], 0, "the file pool is served meanwhile: {local}");

    // The OSD returns: the same daemon serves the pool again, the held connection included.
    cluster.run("start-osd");
    daemon
        .wait_for_log("RBD pool available", RECOVER_WITHIN)
        .expect("the pool is connected anew");
    assert_eq!(pool_status(&daemon, "ceph"), serde_json::json!([2]));
    let (ok, _, said) = host.run("read -P 0x11 0 1M");
    assert!(ok, "{said}");
    let (ok, _, said) = host.run("write -f -P 0x33 0 64k");
    assert!(ok, "{said}");
    // What the outage's handle held unflushed was lost with it: the next flush on every host
    // handle says so, once.
    assert_eq!(nbd::call(&mut raw, nbd::CMD_FLUSH, 0, &[], 0).0, nbd::EIO);
    assert_eq!(nbd::call(&mut raw, nbd::CMD_FLUSH, 0, &[], 0).0, 0);
    drop(raw);
    host.close();
    assert!(qemu_io(
        &daemon,
        "vol",
        &["read -P 0x33 0 64k", "read -P 0x11 64k 960k"]
    ));
    // The old connection's lock was broken, and with it that client blocklisted.
    let blocklist = cluster.tool(
        "ceph",
        &["--connect-timeout", "10", "osd", "blocklist", "ls"],
    );
    assert!(blocklist.contains("127.0.0.1"), "{blocklist}");

    // Ceph's own view: the write of the outage never landed over the newer data.
    let image = cluster
        .tool("rbd", &["-p", "rbd", "ls"])
        .lines()
        .find(|l| l.starts_with("cairn-"))
        .expect("the volume's image")
        .to_string();
    let exported = dir.path().join("vol.raw");
    cluster.tool(
        "rbd",
        &[
            "-p",
            "rbd",
            "export",
            &image,
            exported.to_str().expect("UTF-8"),
        ],
    );
    let mut want = vec![0u8; 16 * MIB];
    want[..MIB].fill(0x11);
    want[..65536].fill(0x33);
    let mut got = std::fs::read(&exported).expect("export");
    // The unflushed write of the outage landed whole or not at all (the host was told either).
    let unflushed = &mut got[2 * MIB..2 * MIB + 65536];
    assert!(unflushed.iter().all(|&b| b == 0) || unflushed.iter().all(|&b| b == 0x44));
    unflushed.fill(0);
    assert!(got == want);
    daemon.stop_cleanly();
}
