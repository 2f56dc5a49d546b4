//! Indications end to end: pywbem's WBEMSubscriptionManager subscribes to the real daemon, its
//! WBEMListener receives the lifecycle and modification indications of volume changes (exactly
//! once, in order, with the right embedded instances, nothing from a filter on another class),
//! still receives what it missed while it was down briefly, and the subscriptions survive a
//! restart of the daemon. `pywbemcli subscription list-filters` reads them back.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;

use cairn_tests::{python, test_config, Daemon};
use serde_json::Value;

/// Runs one step of tests/py/indications.py with the listener on `port`.
fn step(daemon: &Daemon, name: &str, port: u16) -> Value {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("py/indications.py");
    let url = format!("http://{}", daemon.listen.smis_http.expect("SMI-S HTTP"));
    let out = Command::new(python())
        .arg(script)
        .args([url.as_str(), "admin", "secret", name, &port.to_string()])
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

/// `pywbemcli subscription ARGS` against the daemon: its standard output.
fn pywbemcli(daemon: &Daemon, args: &[&str]) -> String {
    let bin = python().with_file_name("pywbemcli");
    let url = format!("http://{}", daemon.listen.smis_http.expect("SMI-S HTTP"));
    let out = Command::new(bin)
        .args([
            "-s",
            url.as_str(),
            "-u",
            "admin",
            "-p",
            "secret",
            "-n",
            "interop",
        ])
        .arg("subscription")
        .args(args)
        .output()
        .expect("run pywbemcli");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "pywbemcli subscription {args:?}: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

#[test]
fn subscribed_listeners_receive_volume_indications_across_outages_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = test_config(
        "[[pool]]\nname = \"pool0\"\npath = \"pool0.img\"\nsize = \"1GiB\"\n\
         [indications]\nretry_attempts = 20\nretry_interval_secs = 1\n",
    );
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap();
    let daemon = Daemon::start(&data, &config).unwrap();
    let first = step(&daemon, "subscribe", port);
    assert_eq!(first["received"], 5, "{first}");
    let filters = pywbemcli(&daemon, &["list-filters", "--summary"]);
    assert!(filters.contains('2'), "two filters listed: {filters}");
    daemon.stop().unwrap();

    let daemon = Daemon::start(&data, &config).unwrap();
    let second = step(&daemon, "restarted", port);
    let names = second["filters"].as_array().unwrap();
    assert_eq!(names.len(), 2, "{second}");
    let listed = pywbemcli(&daemon, &["list-subscriptions"]);
    assert!(
        listed.contains("lis"),
        "the destination is listed: {listed}"
    );
    daemon.stop().unwrap();
}
