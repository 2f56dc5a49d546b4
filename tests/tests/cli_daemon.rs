//! The `cairn` CLI in daemon mode against the real daemon: every verb over SMI-S with `--json`
//! parsed, volume data checked over NBD with qemu-io (snapshot, restore, a cross-pool copy with
//! its progress), the remote form (`--url` with a pinned certificate), and the refusals a user
//! meets — a wrong password, an unknown volume, an offline-only option, no daemon running — each
//! one error line and exit code 1.

use std::path::Path;
use std::process::Command;

use cairn_tests::{cairn_bin, qemu_io, Daemon};
use serde_json::Value;

/// Two 1 GiB pools, every listener on an ephemeral loopback port, and no configured password (so
/// the daemon generates one in DATA_DIR/credentials, which the local CLI reads).
const CONFIG: &str = "[listen]\nsmis_http = \"127.0.0.1:0\"\nsmis_https = \"127.0.0.1:0\"\n\
                      nbd = \"127.0.0.1:0\"\niscsi = \"127.0.0.1:0\"\n\
                      [[pool]]\nname = \"pool0\"\npath = \"pool0.img\"\nsize = \"1GiB\"\n\
                      [[pool]]\nname = \"pool1\"\npath = \"pool1.img\"\nsize = \"1GiB\"\n";

struct Run {
    code: Option<i32>,
    out: String,
    err: String,
}

/// Runs `cairn ARGS` with `CAIRN_SMIS_PASSWORD` set to `password` (or unset) and no other
/// credentials in the environment.
fn run_with(password: Option<&str>, args: &[&str]) -> Run {
    let mut cmd = Command::new(cairn_bin());
    cmd.args(args)
        .env_remove("CAIRN_SMIS_USER")
        .env_remove("CAIRN_SMIS_PASSWORD")
        .stdin(std::process::Stdio::null());
    if let Some(p) = password {
        cmd.env("CAIRN_SMIS_PASSWORD", p);
    }
    let out = cmd.output().expect("run cairn");
    Run {
        code: out.status.code(),
        out: String::from_utf8_lossy(&out.stdout).into_owned(),
        err: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `cairn --json --data-dir DATA ARGS`, which must succeed; its JSON output.
fn json(data: &Path, args: &[&str]) -> Value {
    let mut full = vec!["--json", "--data-dir", data.to_str().unwrap()];
    full.extend_from_slice(args);
    let r = run_with(None, &full);
    assert_eq!(r.code, Some(0), "cairn {args:?}: {}", r.err);
    serde_json::from_str(&r.out).unwrap_or_else(|e| panic!("{args:?}: {e}: {}", r.out))
}

/// Asserts `cairn ARGS` exits 1 with one error line containing every one of `needles`.
fn refused(password: Option<&str>, args: &[&str], needles: &[&str]) {
    let r = run_with(password, args);
    assert_eq!(
        r.code,
        Some(1),
        "cairn {args:?} should be refused: {}{}",
        r.out,
        r.err
    );
    assert_eq!(r.err.trim().lines().count(), 1, "one error line: {}", r.err);
    for n in needles {
        assert!(r.err.contains(n), "cairn {args:?}: '{}' lacks '{n}'", r.err);
    }
}

fn names(list: &Value) -> Vec<&str> {
    let mut n: Vec<&str> = list
        .as_array()
        .expect("array")
        .iter()
        .map(|v| v["name"].as_str().expect("name"))
        .collect();
    n.sort_unstable();
    n
}

#[test]
fn every_verb_over_smis() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let daemon = Daemon::start(&data, CONFIG).unwrap();
    let d = data.to_str().unwrap();

    let pools = json(&data, &["pool", "list"]);
    assert_eq!(names(&pools), ["pool0", "pool1"]);
    let pool1 = json(&data, &["pool", "info", "pool1"]);
    assert_eq!(pool1["volume_count"], 0);
    assert!(
        pool1["data_bytes_free"].as_u64().unwrap() > 900 << 20,
        "{pool1}"
    );
    assert_eq!(
        pool1["generation"],
        Value::Null,
        "engine-only fields are null over SMI-S"
    );

    let vol = json(
        &data,
        &[
            "volume", "create", "vol1", "--size", "64MiB", "--pool", "pool0",
        ],
    );
    assert_eq!(
        (vol["name"].as_str(), vol["pool"].as_str()),
        (Some("vol1"), Some("pool0"))
    );
    assert_eq!(vol["size_bytes"], 64u64 << 20);
    assert_eq!(vol["logical_block_size"], 4096);
    assert_eq!(vol["id"].as_str().unwrap().len(), 32);
    let id = vol["id"].clone();
    assert!(qemu_io(
        &daemon,
        "vol1",
        &["write -P 0xaa 0 1M", "write -P 0xcc 32M 64k"]
    ));

    let snap = json(&data, &["snapshot", "create", "vol1", "vol1-snap"]);
    assert_eq!(snap["parent"], id);
    assert_eq!(snap["pool"], "pool0");
    assert!(qemu_io(&daemon, "vol1", &["write -P 0xbb 0 1M"]));
    assert_eq!(names(&json(&data, &["snapshot", "list"])), ["vol1-snap"]);
    assert!(qemu_io(&daemon, "vol1-snap", &["read -P 0xaa 0 1M"]));

    let restored = json(&data, &["snapshot", "restore", "vol1", "vol1-snap"]);
    assert_eq!(restored["id"], id);
    assert!(qemu_io(
        &daemon,
        "vol1",
        &["read -P 0xaa 0 1M", "read -P 0xcc 32M 64k"]
    ));

    let grown = json(&data, &["volume", "grow", "vol1", "--size", "100MiB"]);
    assert_eq!(grown["size_bytes"], 100u64 << 20);
    let renamed = json(&data, &["volume", "rename", "vol1-snap", "monday"]);
    assert_eq!(
        (renamed["name"].as_str(), &renamed["parent"]),
        (Some("monday"), &id)
    );
    assert!(qemu_io(&daemon, "monday", &["read -P 0xaa 0 1M"]));

    // A copy into the other pool runs as a job: progress lines, then the finished replica.
    let r = run_with(
        None,
        &[
            "--json",
            "--data-dir",
            d,
            "snapshot",
            "create",
            "vol1",
            "vol1-copy",
            "--pool",
            "pool1",
        ],
    );
    assert_eq!(r.code, Some(0), "{}", r.err);
    let copy: Value = serde_json::from_str(&r.out).unwrap();
    assert_eq!(
        (copy["pool"].as_str(), &copy["parent"]),
        (Some("pool1"), &id)
    );
    assert_eq!(copy["copying"], false);
    assert!(qemu_io(
        &daemon,
        "vol1-copy",
        &["read -P 0xaa 0 1M", "read -P 0xcc 32M 64k"]
    ));
    let r = run_with(
        None,
        &[
            "--data-dir",
            d,
            "snapshot",
            "create",
            "vol1",
            "vol1-copy2",
            "--pool",
            "pool1",
        ],
    );
    assert_eq!(r.code, Some(0), "{}", r.err);
    let percents: Vec<u64> = r
        .err
        .lines()
        .filter_map(|l| l.rsplit(": ").next()?.strip_suffix('%')?.parse().ok())
        .collect();
    assert!(
        percents.windows(2).all(|w| w[0] < w[1]),
        "progress only grows: {}",
        r.err
    );
    assert_eq!(
        percents.last(),
        Some(&100),
        "the wait ends at 100%: {}",
        r.err
    );

    let jobs = json(&data, &["job", "list"]);
    let jobs = jobs.as_array().unwrap();
    assert_eq!(jobs.len(), 2, "{jobs:?}");
    assert!(jobs
        .iter()
        .all(|j| j["state"] == "Completed" && j["percent_complete"] == 100));
    let first = jobs[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        json(&data, &["job", "show", &first])[0]["id"],
        first.as_str()
    );
    assert_eq!(jobs[0]["target"], copy["id"]);
    refused(
        None,
        &["--data-dir", d, "job", "cancel", &first],
        &[
            "RequestStateChange returned 4097",
            "Invalid State Transition",
        ],
    );
    refused(
        None,
        &["--data-dir", d, "job", "show", "999"],
        &["No job 999"],
    );

    // --no-wait answers with the job; a cancel either stops it or finds it already done.
    let job = json(
        &data,
        &[
            "snapshot",
            "create",
            "vol1",
            "vol1-copy3",
            "--pool",
            "pool1",
            "--no-wait",
        ],
    );
    let job_id = job["id"].as_str().unwrap().to_owned();
    assert!(job["target"].is_string(), "{job}");
    let r = run_with(None, &["--json", "--data-dir", d, "job", "cancel", &job_id]);
    match r.code {
        Some(0) => {
            let j: Value = serde_json::from_str(&r.out).unwrap();
            assert!(
                j[0]["state"] == "Terminated" || j[0]["state"] == "Completed",
                "{j}"
            );
        }
        _ => assert!(
            r.err.contains("4097 (Invalid State Transition)"),
            "{}",
            r.err
        ),
    }

    // Refusals: one line, exit 1, nothing changed.
    let before = json(&data, &["volume", "list"]);
    refused(
        None,
        &["--data-dir", d, "volume", "delete", "nope"],
        &["No volume named 'nope'"],
    );
    refused(
        None,
        &["--data-dir", d, "volume", "create", "v2", "--size", "1MiB"],
        &["several pools", "--pool"],
    );
    refused(
        None,
        &[
            "--data-dir",
            d,
            "volume",
            "create",
            "v2",
            "--size",
            "1MiB",
            "--block-size",
            "512",
        ],
        &["--pool-file"],
    );
    refused(
        None,
        &[
            "--data-dir",
            d,
            "volume",
            "set",
            "vol1",
            "--read-only",
            "true",
        ],
        &["--pool-file"],
    );
    refused(
        None,
        &["--data-dir", d, "volume", "rename", "vol1", "monday"],
        &["ModifyInstance failed", "CIM_ERR_ALREADY_EXISTS"],
    );
    refused(
        None,
        &["--data-dir", d, "volume", "grow", "vol1", "--size", "1MiB"],
        &["returned 4097 (Size Not Supported)"],
    );
    refused(
        Some("wrong"),
        &["--data-dir", d, "volume", "list"],
        &["401"],
    );
    assert_eq!(json(&data, &["volume", "list"]), before);

    // The remote form: HTTPS with the daemon's certificate pinned, user and password given.
    let password = std::fs::read_to_string(data.join("credentials")).unwrap();
    let https = format!("https://{}", daemon.listen.smis_https.unwrap());
    let cert = data.join("tls/cert.pem");
    let r = run_with(
        Some(password.trim()),
        &[
            "--json",
            "--url",
            &https,
            "--user",
            "admin",
            "--cacert",
            cert.to_str().unwrap(),
            "volume",
            "list",
        ],
    );
    assert_eq!(r.code, Some(0), "{}", r.err);
    assert_eq!(serde_json::from_str::<Value>(&r.out).unwrap(), before);
    refused(
        Some(password.trim()),
        &["--url", &https, "volume", "list"],
        &["--cacert"],
    );
    refused(
        Some(password.trim()),
        &[
            "--url",
            &https,
            "--cacert",
            dir.path().join("none.pem").to_str().unwrap(),
            "volume",
            "list",
        ],
        &["none.pem"],
    );

    // Deletes, then the pools hold nothing but what is left and check clean offline.
    assert_eq!(
        json(&data, &["snapshot", "delete", "monday"])["deleted"],
        "monday"
    );
    for name in ["vol1-copy", "vol1-copy2"] {
        json(&data, &["volume", "delete", name]);
    }
    let left = json(&data, &["volume", "list"]);
    assert!(
        names(&left)
            .iter()
            .all(|n| *n == "vol1" || *n == "vol1-copy3"),
        "{left}"
    );
    daemon.stop_cleanly();
    refused(
        None,
        &["--data-dir", d, "volume", "list"],
        &["No daemon is running", "--pool-file"],
    );
    for pool in ["pool0.img", "pool1.img"] {
        let path = data.join(pool);
        let check = json(
            &data,
            &["--pool-file", path.to_str().unwrap(), "pool", "check"],
        );
        assert_eq!(check["clean"], true, "{check}");
    }
}

#[test]
fn a_daemon_that_died_is_named_not_guessed() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let daemon = Daemon::start(&data, CONFIG).unwrap();
    daemon.kill().unwrap();
    // listen.json is still there; nothing answers at its addresses.
    refused(
        None,
        &["--data-dir", data.to_str().unwrap(), "pool", "list"],
        &["Cannot reach the daemon"],
    );
}

/// Virtual block of the only mapping of the volume whose leaf the check test corrupts: past every
/// physical block of a 1 GiB pool, so the leaf is the one metadata block that holds this number.
const VICTIM_KEY: u64 = 3_000_001;

/// A host writing 64 KiB blocks over NBD until it is told to stop: qemu-io runs, one after the
/// other, of [`WRITER_BATCH`] writes each.
struct Writer {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    acknowledged: std::sync::Arc<std::sync::atomic::AtomicU64>,
    thread: std::thread::JoinHandle<Vec<u8>>,
}

/// Slots of 64 KiB the writer cycles through.
const WRITER_SLOTS: u64 = 256;
/// Writes of one qemu-io run.
const WRITER_BATCH: u64 = 16;

impl Writer {
    /// Starts writing to `export` and returns once the first writes are acknowledged.
    fn start(daemon: &Daemon, export: &str) -> Writer {
        use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
        use std::sync::Arc;
        let url = format!("nbd://{}/{export}", daemon.listen.nbd.expect("NBD"));
        let (stop, acknowledged) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicU64::new(0)),
        );
        let (stop_t, ack_t) = (stop.clone(), acknowledged.clone());
        let (first_tx, first_rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            // The pattern last written to each slot.
            let mut last = vec![0u8; WRITER_SLOTS as usize];
            let mut i = 0u64;
            while !stop_t.load(Ordering::Acquire) {
                let mut cmd = Command::new("qemu-io");
                cmd.args(["-f", "raw"]);
                let mut batch = Vec::new();
                for _ in 0..WRITER_BATCH {
                    let (slot, pattern) = (i % WRITER_SLOTS, (i % 250 + 1) as u8);
                    cmd.args(["-c", &format!("write -P {pattern} {} 64k", slot << 16)]);
                    batch.push((slot, pattern));
                    i += 1;
                }
                let out = cmd.arg(&url).output().expect("qemu-io (apt: qemu-utils)");
                let text = String::from_utf8_lossy(&out.stdout);
                assert!(out.status.success() && !text.contains("failed"), "{text}");
                for (slot, pattern) in batch {
                    last[slot as usize] = pattern;
                }
                ack_t.fetch_add(WRITER_BATCH, Ordering::AcqRel);
                let _ = first_tx.send(());
            }
            last
        });
        first_rx.recv().expect("the writer's first writes");
        Writer {
            stop,
            acknowledged,
            thread,
        }
    }

    fn acknowledged(&self) -> u64 {
        self.acknowledged.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Stops the writer; the pattern last written to each slot (0: never written).
    fn stop(self) -> Vec<u8> {
        self.stop.store(true, std::sync::atomic::Ordering::Release);
        self.thread.join().expect("writer")
    }
}

/// The address of the one metadata block (magic `CRNM`) of the pool file at `path` holding
/// `key` as a little-endian word.
fn block_holding(path: &Path, key: u64) -> u64 {
    let image = std::fs::read(path).expect("pool file");
    let found: Vec<u64> = image
        .chunks(4096)
        .enumerate()
        .filter(|(_, b)| {
            &b[..4] == b"CRNM" && b.chunks(8).any(|w| w == key.to_le_bytes().as_slice())
        })
        .map(|(i, _)| i as u64)
        .collect();
    assert_eq!(found.len(), 1, "one metadata block holds {key}: {found:?}");
    found[0]
}

/// An RBD pool named `gone` whose cluster (config in `dir`) is never reached: the daemon lists
/// it, and has no check for it.
fn unreachable_rbd_pool(dir: &Path) -> String {
    let conf = dir.join("missing-ceph.conf");
    std::fs::write(
        &conf,
        "[global]\nfsid = 00000000-0000-0000-0000-000000000001\nmon_host = 127.0.0.1:9\n",
    )
    .unwrap();
    format!(
        "[[pool]]\nname = \"gone\"\nkind = \"rbd\"\nceph_conf = \"{}\"\nclient = \"admin\"\n\
         keyring = \"{}\"\nrados_pool = \"rbd\"\n",
        conf.display(),
        dir.join("missing.keyring").display()
    )
}

/// Checks pool0 through the daemon again and again while a host keeps writing volume `host`:
/// clean every time, each from a newer commit, the host's writes acknowledged meanwhile and its
/// data there afterwards.
fn check_clean_while_a_host_writes(daemon: &Daemon, data: &Path) {
    let writer = Writer::start(daemon, "host");
    let before = writer.acknowledged();
    let mut generations = Vec::new();
    for _ in 0..3 {
        let check = json(data, &["pool", "check", "pool0"]);
        assert_eq!(
            (&check["clean"], &check["finding_count"], &check["pool"]),
            (&Value::Bool(true), &Value::from(0), &Value::from("pool0")),
            "{check}"
        );
        assert!(check["volumes"].as_u64().unwrap() >= 1, "{check}");
        generations.push(check["generation"].as_u64().unwrap());
    }
    let during = writer.acknowledged() - before;
    let last = writer.stop();
    assert!(during > 0, "the host's writes went on during the checks");
    assert!(
        generations.windows(2).all(|w| w[0] < w[1]),
        "each check starts from a newer commit: {generations:?}"
    );
    let reads: Vec<String> = last
        .iter()
        .enumerate()
        .filter(|(_, p)| **p != 0)
        .map(|(slot, p)| format!("read -P {p} {} 64k", slot << 16))
        .collect();
    let reads: Vec<&str> = reads.iter().map(String::as_str).collect();
    assert!(qemu_io(daemon, "host", &reads), "the host's data is there");
}

/// Makes volume `victim` in pool0 with one mapping at [`VICTIM_KEY`], then damages its only
/// leaf in the pool file under the daemon; returns the leaf's address.
fn damage_a_leaf(daemon: &Daemon, data: &Path) -> u64 {
    use std::os::unix::fs::FileExt;
    let size = ((VICTIM_KEY + 1) * 4096).to_string();
    json(
        data,
        &[
            "volume", "create", "victim", "--size", &size, "--pool", "pool0",
        ],
    );
    let write = format!("write -P 0x77 {} 4k", VICTIM_KEY * 4096);
    assert!(qemu_io(daemon, "victim", &[&write]));
    let image = data.join("pool0.img");
    let leaf = block_holding(&image, VICTIM_KEY);
    let mut block = vec![0u8; 4096];
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&image)
        .unwrap();
    f.read_exact_at(&mut block, leaf * 4096).unwrap();
    block[100] ^= 0xff;
    f.write_all_at(&block, leaf * 4096).unwrap();
    f.sync_all().unwrap();
    leaf
}

/// `cairn --json ARGS`, which must exit 1 with the line "N finding(s) in pool 'pool0'"; its JSON
/// report, and the one BadBlock finding's line (it names `leaf`).
fn bad_leaf_reported(args: &[&str], leaf: u64) -> (Value, String) {
    let mut full = vec!["--json"];
    full.extend_from_slice(args);
    let r = run_with(None, &full);
    assert_eq!(r.code, Some(1), "{}{}", r.out, r.err);
    assert!(r.err.contains("finding(s) in pool 'pool0'"), "{}", r.err);
    let report: Value = serde_json::from_str(&r.out).unwrap();
    assert_eq!(report["clean"], false, "{report}");
    let findings = report["findings"].as_array().unwrap();
    assert_eq!(report["finding_count"], findings.len() as u64, "{report}");
    let bad: Vec<&str> = findings
        .iter()
        .map(|f| f["text"].as_str().unwrap())
        .filter(|t| t.starts_with("BadBlock"))
        .collect();
    assert_eq!(bad.len(), 1, "{report}");
    assert!(
        bad[0].starts_with(&format!("BadBlock block {leaf} at volume \"victim\"")),
        "{bad:?}"
    );
    let line = bad[0].to_owned();
    (report, line)
}

#[test]
fn pool_check_runs_online_in_the_daemon_while_a_host_writes_and_finds_a_bad_block() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = format!(
        "[listen]\nsmis_http = \"127.0.0.1:0\"\nsmis_https = \"127.0.0.1:0\"\n\
         nbd = \"127.0.0.1:0\"\niscsi = \"127.0.0.1:0\"\n\
         [[pool]]\nname = \"pool0\"\npath = \"pool0.img\"\nsize = \"1GiB\"\n{}",
        unreachable_rbd_pool(dir.path())
    );
    let daemon = Daemon::start(&data, &config).unwrap();
    let d = data.to_str().unwrap();
    json(
        &data,
        &[
            "volume", "create", "host", "--size", "16MiB", "--pool", "pool0",
        ],
    );
    check_clean_while_a_host_writes(&daemon, &data);

    // The daemon's check reports the damaged leaf with its tree path (exit 1), as text too.
    let leaf = damage_a_leaf(&daemon, &data);
    let (_, line) = bad_leaf_reported(&["--data-dir", d, "pool", "check", "pool0"], leaf);
    let human = run_with(None, &["--data-dir", d, "pool", "check", "pool0"]);
    assert_eq!(human.code, Some(1));
    assert!(human.out.lines().any(|l| l == line), "{}", human.out);

    // No check for a pool of another backend; and a name is needed among several pools.
    refused(
        None,
        &["--data-dir", d, "pool", "check", "gone"],
        &["CheckConsistency returned 1 (Not Supported)"],
    );
    refused(
        None,
        &["--data-dir", d, "pool", "check"],
        &["several pools"],
    );

    // Offline, once the daemon stopped, the same finding, with its fields.
    daemon.stop_cleanly();
    let image = data.join("pool0.img");
    let (offline, offline_line) = bad_leaf_reported(
        &["--pool-file", image.to_str().unwrap(), "pool", "check"],
        leaf,
    );
    assert_eq!(offline_line, line);
    let fields = offline["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["text"] == line.as_str())
        .expect("the line's finding");
    assert_eq!(
        (&fields["kind"], &fields["block"]),
        (&Value::from("BadBlock"), &Value::from(leaf))
    );
}
