//! End-to-end: real CIM clients (pywbem, pywbemcli, wbemcli) against the real server on loopback.
//!
//! Each test starts its own server (real `CimServer` and `InteropProvider` over the fixture
//! provider) on free ports and runs the clients as subprocesses. The Python scripts print what they
//! observed as JSON; the assertions are here.

mod common;

use common::client::{command, pywbemcli, run_ok, run_py, wbemcli};
use common::fixture::{ARRAY_PROFILE_VERSION, VOLUME_COUNT};
use common::{TestServer, PASSWORD, USER};
use serde_json::{json, Value};

fn profile(name: &str, version: &str) -> Value {
    json!(["11", name, version, "Uint16"])
}

fn assert_discovery(d: &Value) {
    assert_eq!(d["interop_ns"], "interop", "{d}");
    let namespaces = d["namespaces"].as_array().expect("namespaces");
    assert!(namespaces.contains(&json!("interop")), "{d}");
    assert!(namespaces.contains(&json!("root/cairn")), "{d}");
    assert_eq!(d["cimom_class"], "Cairn_ObjectManager", "{d}");
    assert!(!d["brand"].as_str().unwrap_or_default().is_empty(), "{d}");
    let profiles = d["profiles"].as_array().expect("profiles");
    assert!(profiles.contains(&profile("Server", "1.6.1")), "{d}");
    assert!(
        profiles.contains(&profile("Array", ARRAY_PROFILE_VERSION)),
        "{d}"
    );
    assert_eq!(d["server_profiles"], 1, "{d}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pywbem_wbemserver_discovers_interop_model() {
    let server = TestServer::start().await;
    let d = run_py("discovery.py", &server.http_url(), USER, PASSWORD, &[]).await;
    assert_discovery(&d);
    server.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pywbem_over_https_without_verification() {
    let server = TestServer::start().await;
    let d = run_py("discovery.py", &server.https_url(), USER, PASSWORD, &[]).await;
    assert_discovery(&d);
    server.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pywbem_get_class_registered_profile_has_value_maps() {
    let server = TestServer::start().await;
    let c = run_py("get_class.py", &server.http_url(), USER, PASSWORD, &[]).await;
    assert_eq!(c["classname"], "CIM_RegisteredProfile", "{c}");
    assert_eq!(c["org_type"], "uint16", "{c}");
    assert_eq!(c["version_type"], "string", "{c}");
    let map = c["org_valuemap"].as_array().expect("ValueMap");
    let values = c["org_values"].as_array().expect("Values");
    assert_eq!(map.len(), values.len(), "{c}");
    let snia = map.iter().position(|v| v == "11").expect("11 in ValueMap");
    assert_eq!(values[snia], "SNIA", "{c}");
    server.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pywbem_iter_enumerate_pages_with_pull_operations() {
    let server = TestServer::start().await;
    let extra = ["root/cairn", "CIM_StorageVolume", "2"];
    let p = run_py("paging.py", &server.http_url(), USER, PASSWORD, &extra).await;
    assert_eq!(p["count"], VOLUME_COUNT, "{p}");
    assert_eq!(p["distinct"], VOLUME_COUNT, "{p}");
    assert_eq!(p["ops"]["OpenEnumerateInstances"], 1, "{p}");
    // 7 instances, 2 per answer: the open returns 2, then three pulls (2, 2, 1).
    assert_eq!(p["ops"]["PullInstancesWithPath"], 3, "{p}");
    assert!(
        p["ops"].get("EnumerateInstances").is_none(),
        "no fallback: {p}"
    );
    server.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pywbem_traditional_operations_and_cim_errors() {
    let server = TestServer::start().await;
    let extra = [
        "root/cairn",
        "CIM_StorageVolume",
        "CIM_AllocatedFromStoragePool",
        "Cairn_StorageConfigurationService",
        "CreateOrModifyElementFromStoragePool",
    ];
    let o = run_py("operations.py", &server.http_url(), USER, PASSWORD, &extra).await;
    assert_eq!(o["names"], VOLUME_COUNT, "{o}");
    assert_eq!(o["instances"], VOLUME_COUNT, "{o}");
    assert_eq!(o["get_class"], "Cairn_StorageVolume", "{o}");
    assert_eq!(o["associators"], 1, "{o}");
    assert_eq!(o["references"], 1, "{o}");
    assert_eq!(o["invoke_return"], 1, "{o}");
    assert_eq!(o["err_namespace"], 3, "CIM_ERR_INVALID_NAMESPACE: {o}");
    assert_eq!(o["err_class"], 5, "CIM_ERR_INVALID_CLASS: {o}");
    assert_eq!(o["err_method"], 17, "CIM_ERR_METHOD_NOT_FOUND: {o}");
    let calls = server
        .fixture
        .method_calls
        .load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(calls, 1, "only the known method reaches the provider");
    server.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pywbem_wrong_password_is_auth_error() {
    let server = TestServer::start().await;
    for url in [server.http_url(), server.https_url()] {
        let a = run_py("auth_failure.py", &url, USER, "not-the-password", &[]).await;
        assert_eq!(a["outcome"], "AuthError", "{url}: {a}");
        let a = run_py("auth_failure.py", &url, "root", PASSWORD, &[]).await;
        assert_eq!(a["outcome"], "AuthError", "{url}: {a}");
    }
    let ok = run_py("auth_failure.py", &server.http_url(), USER, PASSWORD, &[]).await;
    assert_eq!(ok["outcome"], "no error", "{ok}");
    server.handle.shutdown().await;
}

/// Runs pywbemcli against the server with `args`; returns stdout.
async fn pywbemcli_out(url: &str, namespace: &str, pull: Option<&str>, args: &[&str]) -> String {
    let home = tempfile::tempdir().expect("tempdir");
    let mut cmd = command(pywbemcli());
    cmd.env("HOME", home.path()).current_dir(home.path());
    cmd.args([
        "-s",
        url,
        "-u",
        USER,
        "-p",
        PASSWORD,
        "--no-verify",
        "--timeout",
        "60",
    ]);
    cmd.args(["--default-namespace", namespace]);
    if let Some(pull) = pull {
        cmd.args(["--use-pull", pull]);
    }
    cmd.args(args);
    String::from_utf8_lossy(&run_ok(&mut cmd).await.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pywbemcli_lists_instances_and_classes_with_and_without_pull() {
    let server = TestServer::start().await;
    let url = server.http_url();
    for pull in [None, Some("yes"), Some("no")] {
        let out = pywbemcli_out(
            &url,
            "root/cairn",
            pull,
            &["instance", "enumerate", "CIM_StorageVolume", "--names-only"],
        )
        .await;
        let volumes = out
            .lines()
            .filter(|l| l.contains("Cairn_StorageVolume"))
            .count();
        assert_eq!(volumes, VOLUME_COUNT, "pull {pull:?}:\n{out}");
        let out = pywbemcli_out(
            &url,
            "interop",
            pull,
            &["instance", "enumerate", "CIM_RegisteredProfile"],
        )
        .await;
        assert!(
            out.contains("RegisteredName = \"Array\""),
            "pull {pull:?}:\n{out}"
        );
        assert!(
            out.contains("RegisteredName = \"Server\""),
            "pull {pull:?}:\n{out}"
        );
        let out = pywbemcli_out(
            &url,
            "root/cairn",
            pull,
            &["class", "enumerate", "--names-only", "--deep-inheritance"],
        )
        .await;
        assert!(out.contains("Cairn_StorageVolume"), "pull {pull:?}:\n{out}");
        assert!(out.contains("CIM_ManagedElement"), "pull {pull:?}:\n{out}");
    }
    let out = pywbemcli_out(
        &server.https_url(),
        "interop",
        None,
        &["class", "get", "CIM_RegisteredProfile"],
    )
    .await;
    assert!(out.contains("ValueMap"), "{out}");
    server.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wbemcli_enumerates_over_http() {
    let server = TestServer::start().await;
    let base = format!("http://{USER}:{PASSWORD}@{}/root/cairn", server.http_addr());
    let run_with = |op: &'static str, flag: Option<&str>, path: String| {
        let mut cmd = command(wbemcli());
        cmd.arg(op).args(flag).args(["-nl", &path]);
        cmd
    };
    let run = |op: &'static str, path: String| run_with(op, None, path);
    let out = run_ok(&mut run("ein", format!("{base}:CIM_StorageVolume"))).await;
    let text = String::from_utf8_lossy(&out.stdout);
    let names = text
        .lines()
        .filter(|l| l.contains("Cairn_StorageVolume."))
        .count();
    assert_eq!(names, VOLUME_COUNT, "{text}");
    let out = run_ok(&mut run("ei", format!("{base}:Cairn_StoragePool"))).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("PoolID=\"pool0\""), "{text}");
    let out = run_ok(&mut run("ecn", base.clone())).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("CIM_ManagedElement"), "{text}");
    let bad = format!(
        "http://{USER}:wrong@{}/root/cairn:CIM_StorageVolume",
        server.http_addr()
    );
    let out = run("ein", bad).output().await.expect("wbemcli runs");
    assert!(!out.status.success(), "wrong password must fail");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Invalid username/password"), "{err}");
    server.handle.shutdown().await;
}
