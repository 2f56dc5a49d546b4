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
    assert!(daemon.stop().unwrap().success());
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
