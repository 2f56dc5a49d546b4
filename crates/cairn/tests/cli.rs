//! The admin CLI in offline mode (`--pool-file`) on real file-backed pools (and on a loop device
//! where the machine allows it): every command's effect, its JSON output, one clear error line with
//! nothing changed on bad input, and the exit codes (1 refused, 2 usage).

use std::path::Path;
use std::process::Command;

use serde_json::Value;

fn cairn(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(args)
        .output()
        .expect("run cairn");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ok_json(args: &[&str]) -> Value {
    let mut full = vec!["--json"];
    full.extend_from_slice(args);
    let (ok, out, err) = cairn(&full);
    assert!(ok, "cairn {args:?} failed: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("bad JSON from {args:?}: {e}: {out}"))
}

fn exit_code(args: &[&str]) -> Option<i32> {
    Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(args)
        .output()
        .expect("run cairn")
        .status
        .code()
}

fn fails(args: &[&str], needle: &str) {
    let (ok, _, err) = cairn(args);
    assert!(!ok, "cairn {args:?} should fail");
    assert_eq!(exit_code(args), Some(1), "a refusal exits 1: {args:?}");
    assert!(
        err.to_lowercase().contains(&needle.to_lowercase()),
        "cairn {args:?}: error '{err}' does not mention '{needle}'"
    );
    assert_eq!(
        err.trim().lines().count(),
        1,
        "one error line expected: {err}"
    );
}

fn names(list: &Value) -> Vec<String> {
    let mut names: Vec<String> = list
        .as_array()
        .expect("array")
        .iter()
        .map(|v| v["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    names
}

fn new_pool(dir: &Path) -> String {
    let path = dir.join("p.img").to_str().unwrap().to_string();
    let info = ok_json(&[
        "--pool-file",
        &path,
        "pool",
        "create",
        "--name",
        "lab",
        "--size",
        "256MiB",
    ]);
    assert_eq!(info["name"], "lab");
    assert_eq!(info["size_bytes"], 256u64 << 20);
    path
}

#[test]
fn volume_and_snapshot_lifecycle() {
    let dir = tempfile::tempdir().unwrap();
    let pool = new_pool(dir.path());

    let vol = ok_json(&[
        "--pool-file",
        &pool,
        "volume",
        "create",
        "db 01",
        "--size",
        "64MiB",
    ]);
    assert_eq!(vol["size_bytes"], 64u64 << 20);
    assert_eq!(vol["logical_block_size"], 4096);
    assert_eq!(vol["id"].as_str().unwrap().len(), 32);
    let small = ok_json(&[
        "--pool-file",
        &pool,
        "volume",
        "create",
        "small",
        "--size",
        "1MiB",
        "--block-size",
        "512",
    ]);
    assert_eq!(small["logical_block_size"], 512);

    let snap = ok_json(&[
        "--pool-file",
        &pool,
        "snapshot",
        "create",
        "db 01",
        "db 01 @1",
    ]);
    assert_eq!(snap["parent"], vol["id"]);
    let snaps = ok_json(&["--pool-file", &pool, "snapshot", "list"]);
    assert_eq!(names(&snaps), ["db 01 @1"]);
    assert_eq!(
        names(&ok_json(&["--pool-file", &pool, "volume", "list"])),
        ["db 01", "db 01 @1", "small"]
    );

    let grown = ok_json(&[
        "--pool-file",
        &pool,
        "volume",
        "grow",
        "db 01",
        "--size",
        "128MiB",
    ]);
    assert_eq!(grown["size_bytes"], 128u64 << 20);
    let renamed = ok_json(&["--pool-file", &pool, "volume", "rename", "small", "tiny"]);
    assert_eq!(renamed["id"], small["id"]);
    let ro = ok_json(&[
        "--pool-file",
        &pool,
        "volume",
        "set",
        "tiny",
        "--read-only",
        "true",
    ]);
    assert_eq!(ro["read_only"], true);
    let rw = ok_json(&[
        "--pool-file",
        &pool,
        "volume",
        "set",
        "tiny",
        "--read-only",
        "false",
    ]);
    assert_eq!(rw["read_only"], false);

    let restored = ok_json(&[
        "--pool-file",
        &pool,
        "snapshot",
        "restore",
        "db 01",
        "db 01 @1",
    ]);
    assert_eq!(restored["id"], vol["id"]);
    assert_eq!(
        restored["size_bytes"],
        64u64 << 20,
        "restore brings the snapshot's size back"
    );

    ok_json(&["--pool-file", &pool, "volume", "delete", "db 01"]);
    assert_eq!(
        names(&ok_json(&["--pool-file", &pool, "snapshot", "list"])),
        ["db 01 @1"]
    );
    ok_json(&["--pool-file", &pool, "snapshot", "delete", "db 01 @1"]);
    assert_eq!(
        names(&ok_json(&["--pool-file", &pool, "volume", "list"])),
        ["tiny"]
    );

    let check = ok_json(&["--pool-file", &pool, "pool", "check"]);
    assert_eq!(check["clean"], true, "{check}");
    let info = ok_json(&["--pool-file", &pool, "pool", "info"]);
    assert_eq!(info["volume_count"], 1);
    assert_eq!(info["reclaim_pending"], false);
}

#[test]
fn bad_input_gets_one_error_line_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let pool = new_pool(dir.path());
    ok_json(&[
        "--pool-file",
        &pool,
        "volume",
        "create",
        "a",
        "--size",
        "1MiB",
    ]);
    let before = ok_json(&["--pool-file", &pool, "volume", "list"]);

    fails(
        &[
            "--pool-file",
            &pool,
            "volume",
            "create",
            "b",
            "--size",
            "5000",
        ],
        "4096",
    );
    fails(
        &[
            "--pool-file",
            &pool,
            "volume",
            "create",
            "a",
            "--size",
            "1MiB",
        ],
        "exists",
    );
    fails(
        &[
            "--pool-file",
            &pool,
            "volume",
            "create",
            "c/d",
            "--size",
            "1MiB",
        ],
        "name",
    );
    fails(
        &[
            "--pool-file",
            &pool,
            "volume",
            "create",
            " lead",
            "--size",
            "1MiB",
        ],
        "name",
    );
    fails(
        &[
            "--pool-file",
            &pool,
            "volume",
            "create",
            "e",
            "--size",
            "1MiB",
            "--block-size",
            "1024",
        ],
        "block",
    );
    fails(&["--pool-file", &pool, "volume", "delete", "nope"], "nope");
    fails(
        &[
            "--pool-file",
            &pool,
            "volume",
            "grow",
            "a",
            "--size",
            "4KiB",
        ],
        "",
    );
    fails(
        &["--pool-file", &pool, "snapshot", "create", "nope", "s"],
        "nope",
    );
    fails(
        &["--pool-file", &pool, "pool", "create", "--size", "64MiB"],
        "already",
    );
    assert_eq!(ok_json(&["--pool-file", &pool, "volume", "list"]), before);

    let missing = dir.path().join("missing.img");
    fails(
        &["--pool-file", missing.to_str().unwrap(), "pool", "create"],
        "--size",
    );
    assert!(!missing.exists());

    let junk = dir.path().join("junk.img");
    std::fs::write(&junk, vec![0x5au8; 1 << 20]).unwrap();
    fails(
        &["--pool-file", junk.to_str().unwrap(), "pool", "info"],
        "not a cairn pool",
    );
}

#[test]
fn corrupt_superblocks_are_reported_not_repaired() {
    let dir = tempfile::tempdir().unwrap();
    let pool = new_pool(dir.path());
    ok_json(&[
        "--pool-file",
        &pool,
        "volume",
        "create",
        "a",
        "--size",
        "1MiB",
    ]);
    let mut image = std::fs::read(&pool).unwrap();
    for b in &mut image[16..8192] {
        *b ^= 0xff;
    }
    std::fs::write(&pool, &image).unwrap();
    let (ok, _, err) = cairn(&["--pool-file", &pool, "pool", "info"]);
    assert!(!ok);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert_eq!(
        std::fs::read(&pool).unwrap(),
        image,
        "a failed open writes nothing"
    );
}

#[test]
fn pool_grows_with_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let pool = new_pool(dir.path());
    let info = ok_json(&["--pool-file", &pool, "pool", "grow", "--size", "512MiB"]);
    assert_eq!(info["size_bytes"], 512u64 << 20);
    assert!(info["data_bytes_total"].as_u64().unwrap() > 256 << 20);
    let check = ok_json(&["--pool-file", &pool, "pool", "check"]);
    assert_eq!(check["clean"], true);
}

/// The same lifecycle on a loop device, where this machine lets us attach one.
#[test]
fn pool_on_a_loop_device() {
    let dir = tempfile::tempdir().unwrap();
    let backing = dir.path().join("loop.img");
    std::fs::File::create(&backing)
        .unwrap()
        .set_len(128 << 20)
        .unwrap();
    let attach = Command::new("losetup")
        .args(["--find", "--show"])
        .arg(&backing)
        .output();
    let dev = match attach {
        Ok(out) if out.status.success() => {
            String::from_utf8(out.stdout).unwrap().trim().to_string()
        }
        other => {
            eprintln!("loop devices are not available here ({other:?}); file pools cover the rest");
            return;
        }
    };
    let result = std::panic::catch_unwind(|| {
        let info = ok_json(&["--pool-file", &dev, "pool", "create", "--name", "loop"]);
        assert_eq!(info["size_bytes"], 128u64 << 20);
        ok_json(&[
            "--pool-file",
            &dev,
            "volume",
            "create",
            "v",
            "--size",
            "8MiB",
        ]);
        ok_json(&["--pool-file", &dev, "snapshot", "create", "v", "v@1"]);
        assert_eq!(
            ok_json(&["--pool-file", &dev, "pool", "check"])["clean"],
            true
        );
    });
    let _ = Command::new("losetup").arg("-d").arg(&dev).status();
    result.unwrap();
}

#[test]
fn usage_errors_exit_2_and_daemon_only_verbs_say_so() {
    let dir = tempfile::tempdir().unwrap();
    let pool = new_pool(dir.path());
    assert_eq!(exit_code(&["volume", "frobnicate"]), Some(2));
    assert_eq!(
        exit_code(&["--pool-file", &pool, "volume", "create", "x"]),
        Some(2)
    );
    assert_eq!(
        exit_code(&[
            "--pool-file",
            &pool,
            "--url",
            "https://h:5989",
            "pool",
            "list"
        ]),
        Some(2)
    );
    fails(&["--pool-file", &pool, "job", "list"], "daemon");
    fails(
        &[
            "--pool-file",
            &pool,
            "volume",
            "create",
            "a",
            "--size",
            "1MiB",
            "--pool",
            "other",
        ],
        "lab",
    );
    fails(
        &[
            "--pool-file",
            &pool,
            "snapshot",
            "create",
            "a",
            "b",
            "--pool",
            "other",
        ],
        "",
    );
    let pools = ok_json(&["--pool-file", &pool, "pool", "list"]);
    assert_eq!(names(&pools), ["lab"]);
    assert_eq!(
        ok_json(&["--pool-file", &pool, "pool", "info", "lab"])["name"],
        "lab"
    );
}
