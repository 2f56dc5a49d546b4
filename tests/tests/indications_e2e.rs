//! Indications end to end: pywbem's WBEMSubscriptionManager subscribes to the real daemon, its
//! WBEMListener receives the lifecycle and modification indications of volume changes (exactly
//! once, in order, with the right embedded instances, nothing from a filter on another class),
//! still receives what it missed while it was down briefly, and the subscriptions survive a
//! restart of the daemon. `pywbemcli subscription` adds, lists and refuses filters and subscriptions.
//! A copy into another pool reports its job from Running to Completed and its synchronization
//! reaching Synchronized. An https listener receives only when its certificate is in the trust list.
//! A pool filled over NBD past the LowSpaceWarningThreshold a client set raises one low-space
//! alert and, once the space is back, one clearing alert, through the predefined filters. A
//! masking set made, narrowed and removed over SMI-S reports its controller, unit and groups.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

use cairn_tests::{python, test_config, Daemon};
use serde_json::Value;

/// Runs one step of tests/py/indications.py with the listener on `port`.
fn step(daemon: &Daemon, name: &str, port: u16) -> Value {
    step_with(daemon, name, &port.to_string(), &[])
}

/// Runs one step of tests/py/indications.py with the listener ports `ports` and more arguments.
fn step_with(daemon: &Daemon, name: &str, ports: &str, more: &[&str]) -> Value {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("py/indications.py");
    let url = format!("http://{}", daemon.listen.smis_http.expect("SMI-S HTTP"));
    let out = Command::new(python())
        .arg(script)
        .args([url.as_str(), "admin", "secret", name, ports])
        .args(more)
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "indications.py {name} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("one JSON line")
}

/// `pywbemcli subscription ARGS` against the daemon (in an empty home, so no connection file is
/// read or written): success and its standard and error output.
fn pywbemcli(daemon: &Daemon, home: &Path, args: &[&str]) -> (bool, String) {
    let bin = python().with_file_name("pywbemcli");
    assert!(
        bin.exists(),
        "{} not found: pip install pywbemtools",
        bin.display()
    );
    let url = format!("http://{}", daemon.listen.smis_http.expect("SMI-S HTTP"));
    let out = Command::new(bin)
        .env("HOME", home)
        .current_dir(home)
        .args(["-s", url.as_str(), "-u", "admin", "-p", "secret"])
        .arg("subscription")
        .args(args)
        .output()
        .expect("run pywbemcli");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn subscribed_listeners_receive_volume_indications_across_outages_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = test_config(
        "[[pool]]\nname = \"pool0\"\npath = \"pool0.img\"\nsize = \"1GiB\"\n\
         [indications]\nretry_attempts = 20\nretry_interval_secs = 1\n",
    );
    let port = free_port();
    let daemon = Daemon::start(&data, &config).unwrap();
    let first = step(&daemon, "subscribe", port);
    assert_eq!(first["received"], 8, "{first}");
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let (ok, filters) = pywbemcli(&daemon, &home, &["list-filters"]);
    assert!(ok && filters.contains("cairntest:vols"), "{filters}");
    let (ok, text) = pywbemcli(
        &daemon,
        &home,
        &[
            "add-destination",
            "cli",
            "-l",
            "http://127.0.0.1:9",
            "--permanent",
        ],
    );
    assert!(ok && text.contains("Added permanent destination"), "{text}");
    let pools = "SELECT * FROM CIM_InstDeletion WHERE SourceInstance ISA CIM_StoragePool";
    let (ok, text) = pywbemcli(
        &daemon,
        &home,
        &["add-filter", "clif", "-q", pools, "--permanent"],
    );
    assert!(ok, "{text}");
    let like =
        "SELECT * FROM CIM_InstDeletion WHERE SourceInstance.CIM_StoragePool::Name LIKE 'p%'";
    let (ok, text) = pywbemcli(
        &daemon,
        &home,
        &["add-filter", "bad", "-q", like, "--permanent"],
    );
    assert!(
        !ok && text.contains("CIM_ERR_NOT_SUPPORTED"),
        "LIKE is refused: {text}"
    );
    let (ok, text) = pywbemcli(
        &daemon,
        &home,
        &["add-subscription", "cli", "clif", "--permanent"],
    );
    assert!(
        ok && text.contains("Added permanent subscription"),
        "{text}"
    );
    let (ok, text) = pywbemcli(&daemon, &home, &["list"]);
    assert!(ok, "{text}");
    let subscriptions = text
        .lines()
        .find(|l| l.contains("CIM_IndicationSubscription"))
        .unwrap_or_default()
        .to_owned();
    assert!(subscriptions.contains(" 4 "), "four subscriptions: {text}");
    // The subscription's Filter and Handler references come back as the paths the client
    // enumerated (LOCALINSTANCEPATH, no host made up), so pywbemcli finds and removes it.
    let (ok, text) = pywbemcli(&daemon, &home, &["remove-subscription", "cli", "clif"]);
    assert!(ok && text.contains("Removed 1 subscription"), "{text}");
    let (ok, listed) = pywbemcli(&daemon, &home, &["list-subscriptions"]);
    assert!(ok && !listed.contains("clif"), "{listed}");
    daemon.stop().unwrap();

    let daemon = Daemon::start(&data, &config).unwrap();
    let second = step(&daemon, "restarted", port);
    let names = second["filters"].as_array().unwrap();
    assert_eq!(names.len(), 4, "{second}");
    let (ok, listed) = pywbemcli(&daemon, &home, &["list-subscriptions"]);
    assert!(
        ok && listed.contains("cairntest:lis") && !listed.contains("clif"),
        "{listed}"
    );
    daemon.stop().unwrap();
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
}

/// The daemon's own self-signed certificate and key (made at its first start).
fn identity(data: &Path) -> (String, String) {
    let file = |n: &str| data.join("tls").join(n).to_string_lossy().into_owned();
    (file("cert.pem"), file("key.pem"))
}

#[test]
fn https_listeners_are_trusted_only_with_a_listed_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let pool = "[[pool]]\nname = \"pool0\"\npath = \"pool0.img\"\nsize = \"64MiB\"\n";
    // Another daemon's identity serves as the trusted listener's certificate.
    let other = dir.path().join("other");
    Daemon::start(&other, &test_config(pool))
        .unwrap()
        .stop()
        .unwrap();
    let (trusted_cert, trusted_key) = identity(&other);
    let data = dir.path().join("data");
    let config = test_config(&format!(
        "{pool}[indications]\nretry_interval_secs = 1\ntrusted_certs = [\"{trusted_cert}\"]\n"
    ));
    let daemon = Daemon::start(&data, &config).unwrap();
    // The daemon's own certificate is not in its trust list.
    let (own_cert, own_key) = identity(&data);
    let ports = format!("{},{}", free_port(), free_port());
    let args = [
        trusted_cert.as_str(),
        trusted_key.as_str(),
        own_cert.as_str(),
        own_key.as_str(),
    ];
    let result = step_with(&daemon, "https", &ports, &args);
    assert_eq!(result["ok"], true, "{result}");
    daemon.stop().unwrap();
}

#[test]
fn a_copy_into_another_pool_reports_its_job_and_synchronization() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = test_config(
        "[[pool]]\nname = \"pool0\"\npath = \"pool0.img\"\nsize = \"1GiB\"\n\
         [[pool]]\nname = \"pool1\"\npath = \"pool1.img\"\nsize = \"1GiB\"\n",
    );
    let port = free_port();
    let daemon = Daemon::start(&data, &config).unwrap();
    let result = step(&daemon, "copy", port);
    assert_eq!(result["ok"], true, "{result}");
    assert_eq!(
        result["percents"].as_array().unwrap().last().unwrap(),
        100,
        "{result}"
    );
    daemon.stop().unwrap();
}

#[test]
fn a_pool_filled_past_its_threshold_alerts_once_and_clears_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config =
        test_config("[[pool]]\nname = \"pool0\"\npath = \"pool0.img\"\nsize = \"64MiB\"\n");
    let port = free_port();
    let daemon = Daemon::start(&data, &config).unwrap();
    let nbd = daemon.listen.nbd.expect("NBD").to_string();
    let result = step_with(&daemon, "alerts", &port.to_string(), &[nbd.as_str()]);
    assert_eq!(result["ok"], true, "{result}");
    // The threshold the client set last is in the pool settings file.
    daemon.stop().unwrap();
    let settings = std::fs::read_to_string(data.join("pool-settings.json")).unwrap();
    assert!(settings.contains("\"pool0\": 1"), "{settings}");
}

#[test]
fn masking_sets_report_their_controllers_units_and_groups() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config =
        test_config("[[pool]]\nname = \"pool0\"\npath = \"pool0.img\"\nsize = \"64MiB\"\n");
    let port = free_port();
    let daemon = Daemon::start(&data, &config).unwrap();
    let result = step(&daemon, "masking", port);
    assert_eq!(result["ok"], true, "{result}");
    assert_eq!(result["received"], 11, "{result}");
    daemon.stop().unwrap();
}
