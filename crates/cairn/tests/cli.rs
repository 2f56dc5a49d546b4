//! The admin CLI on real file-backed pools (and on a loop device where the machine allows it): every
//! command's effect, its JSON output, and one clear error line with nothing changed on bad input.

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

fn fails(args: &[&str], needle: &str) {
    let (ok, _, err) = cairn(args);
    assert!(!ok, "cairn {args:?} should fail");
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
    let info = ok_json(&["pool", "create", &path, "--name", "lab", "--size", "256MiB"]);
    assert_eq!(info["name"], "lab");
    assert_eq!(info["size_bytes"], 256u64 << 20);
    path
}

#[test]
fn volume_and_snapshot_lifecycle() {
    let dir = tempfile::tempdir().unwrap();
    let pool = new_pool(dir.path());

    let vol = ok_json(&["volume", "create", &pool, "db 01", "--size", "64MiB"]);
    assert_eq!(vol["size_bytes"], 64u64 << 20);
    assert_eq!(vol["logical_block_size"], 4096);
    assert_eq!(vol["id"].as_str().unwrap().len(), 32);
    let small = ok_json(&[
        "volume",
        "create",
        &pool,
        "small",
        "--size",
        "1MiB",
        "--block-size",
        "512",
    ]);
    assert_eq!(small["logical_block_size"], 512);

    let snap = ok_json(&["snapshot", "create", &pool, "db 01", "db 01 @1"]);
    assert_eq!(snap["parent"], vol["id"]);
    let snaps = ok_json(&["snapshot", "list", &pool]);
    assert_eq!(names(&snaps), ["db 01 @1"]);
    assert_eq!(
        names(&ok_json(&["volume", "list", &pool])),
        ["db 01", "db 01 @1", "small"]
    );

    let grown = ok_json(&["volume", "grow", &pool, "db 01", "--size", "128MiB"]);
    assert_eq!(grown["size_bytes"], 128u64 << 20);
    let renamed = ok_json(&["volume", "rename", &pool, "small", "tiny"]);
    assert_eq!(renamed["id"], small["id"]);
    let ro = ok_json(&["volume", "set", &pool, "tiny", "--read-only", "true"]);
    assert_eq!(ro["read_only"], true);
    let rw = ok_json(&["volume", "set", &pool, "tiny", "--read-only", "false"]);
    assert_eq!(rw["read_only"], false);

    let restored = ok_json(&["snapshot", "restore", &pool, "db 01", "db 01 @1"]);
    assert_eq!(restored["id"], vol["id"]);
    assert_eq!(
        restored["size_bytes"],
        64u64 << 20,
        "restore brings the snapshot's size back"
    );

    ok_json(&["volume", "delete", &pool, "db 01"]);
    assert_eq!(names(&ok_json(&["snapshot", "list", &pool])), ["db 01 @1"]);
    ok_json(&["snapshot", "delete", &pool, "db 01 @1"]);
    assert_eq!(names(&ok_json(&["volume", "list", &pool])), ["tiny"]);

    let check = ok_json(&["pool", "check", &pool]);
    assert_eq!(check["clean"], true, "{check}");
    let info = ok_json(&["pool", "info", &pool]);
    assert_eq!(info["volume_count"], 1);
    assert_eq!(info["reclaim_pending"], false);
}

#[test]
fn bad_input_gets_one_error_line_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let pool = new_pool(dir.path());
    ok_json(&["volume", "create", &pool, "a", "--size", "1MiB"]);
    let before = ok_json(&["volume", "list", &pool]);

    fails(&["volume", "create", &pool, "b", "--size", "5000"], "4096");
    fails(
        &["volume", "create", &pool, "a", "--size", "1MiB"],
        "exists",
    );
    fails(
        &["volume", "create", &pool, "c/d", "--size", "1MiB"],
        "name",
    );
    fails(
        &["volume", "create", &pool, " lead", "--size", "1MiB"],
        "name",
    );
    fails(
        &[
            "volume",
            "create",
            &pool,
            "e",
            "--size",
            "1MiB",
            "--block-size",
            "1024",
        ],
        "block",
    );
    fails(&["volume", "delete", &pool, "nope"], "nope");
    fails(&["volume", "grow", &pool, "a", "--size", "4KiB"], "");
    fails(&["snapshot", "create", &pool, "nope", "s"], "nope");
    fails(&["pool", "create", &pool, "--size", "64MiB"], "already");
    assert_eq!(ok_json(&["volume", "list", &pool]), before);

    let missing = dir.path().join("missing.img");
    fails(&["pool", "create", missing.to_str().unwrap()], "--size");
    assert!(!missing.exists());

    let junk = dir.path().join("junk.img");
    std::fs::write(&junk, vec![0x5au8; 1 << 20]).unwrap();
    fails(
        &["pool", "info", junk.to_str().unwrap()],
        "not a cairn pool",
    );
}

#[test]
fn corrupt_superblocks_are_reported_not_repaired() {
    let dir = tempfile::tempdir().unwrap();
    let pool = new_pool(dir.path());
    ok_json(&["volume", "create", &pool, "a", "--size", "1MiB"]);
    let mut image = std::fs::read(&pool).unwrap();
    for b in &mut image[16..8192] {
        *b ^= 0xff;
    }
    std::fs::write(&pool, &image).unwrap();
    let (ok, _, err) = cairn(&["pool", "info", &pool]);
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
    let info = ok_json(&["pool", "grow", &pool, "--size", "512MiB"]);
    assert_eq!(info["size_bytes"], 512u64 << 20);
    assert!(info["data_bytes_total"].as_u64().unwrap() > 256 << 20);
    let check = ok_json(&["pool", "check", &pool]);
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
        let info = ok_json(&["pool", "create", &dev, "--name", "loop"]);
        assert_eq!(info["size_bytes"], 128u64 << 20);
        ok_json(&["volume", "create", &dev, "v", "--size", "8MiB"]);
        ok_json(&["snapshot", "create", &dev, "v", "v@1"]);
        assert_eq!(ok_json(&["pool", "check", &dev])["clean"], true);
    });
    let _ = Command::new("losetup").arg("-d").arg(&dev).status();
    result.unwrap();
}
