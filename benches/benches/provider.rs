//! Management cost against array size: the SMI-S provider behind the real CIM server (CIM-XML
//! decoding, dispatch, the array model over Cairn's engine, encoding; no HTTP), at 100, 2,000 and
//! 10,000 volumes in one pool:
//! - GetInstance of one volume,
//! - a same-pool CreateElementReplica (SyncType 7, named), its engine commit included (the
//!   snapshot is deleted again outside the measured time, so the volume count stays put),
//! - EnumerateInstanceNames and EnumerateInstances of Cairn_StorageVolume,
//! - the same enumeration as pywbem and the CLI make it: OpenEnumerateInstances, then
//!   PullInstancesWithPath until the end, 1,000 volumes a batch,
//! - Associators of one volume (no filter: every association class that may refer to it).
//!
//! The targets at 10,000 volumes: GetInstance <= 0.5 ms, CreateElementReplica <= 2 ms,
//! EnumerateInstances of all volumes <= 1 s, Associators of one volume as at 100 volumes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_array::{ArrayBackend, VolumeId, VolumeSpec};
use cairn_benches::PatternDevice;
use cairn_cim::{CimHttpOutcome, CimServer, HttpCimRequest};
use cairn_engine::{Pool, PoolOptions, Storage};
use cairn_smis::{ArrayOptions, ArrayProvider};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};

const SYSTEM: &str = "BENCH-ARRAY";
const POOL_BYTES: u64 = 64 << 30;
const VOLUME_BYTES: u64 = 1 << 30;
const SCALES: [usize; 3] = [100, 2_000, 10_000];

struct Array {
    storage: Arc<Storage>,
    backend: Arc<dyn ArrayBackend>,
    server: Arc<CimServer>,
    first: VolumeId,
}

/// One pool on a compact in-memory device holding `volumes` volumes.
fn array(volumes: usize) -> Array {
    let storage = Arc::new(Storage::new());
    let opts = PoolOptions {
        commit_interval: None,
        ..PoolOptions::default()
    };
    let pool = Pool::create(Arc::new(PatternDevice::new(POOL_BYTES)), "pool0", opts);
    storage.add_pool(pool.expect("pool")).expect("add pool");
    let provider = ArrayProvider::new(storage.clone(), ArrayOptions::new(SYSTEM));
    let backend = provider.array().clone();
    let spec = VolumeSpec::default();
    let mut first = None;
    for i in 0..volumes {
        let v = backend
            .create_volume("pool0", &format!("vol{i:05}"), VOLUME_BYTES, &spec)
            .expect("volume");
        first.get_or_insert(v.id);
    }
    Array {
        storage,
        backend,
        server: provider.cim_server(),
        first: first.expect("at least one volume"),
    }
}

fn key(name: &str, value: &str) -> String {
    format!("<KEYBINDING NAME=\"{name}\"><KEYVALUE VALUETYPE=\"string\">{value}</KEYVALUE></KEYBINDING>")
}

fn hosted(class: &str, key_name: &str, value: &str) -> String {
    format!(
        "<INSTANCENAME CLASSNAME=\"{class}\">{}{}{}{}</INSTANCENAME>",
        key("SystemCreationClassName", "Cairn_StorageSystem"),
        key("SystemName", SYSTEM),
        key("CreationClassName", class),
        key(key_name, value)
    )
}

const NAMESPACE: &str =
    "<LOCALNAMESPACEPATH><NAMESPACE NAME=\"root\"/><NAMESPACE NAME=\"cairn\"/></LOCALNAMESPACEPATH>";

fn message(call: &str) -> Vec<u8> {
    format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?><CIM CIMVERSION=\"2.0\" DTDVERSION=\"2.0\">\
         <MESSAGE ID=\"1\" PROTOCOLVERSION=\"1.0\"><SIMPLEREQ>{call}</SIMPLEREQ></MESSAGE></CIM>"
    )
    .into_bytes()
}

fn get_instance_body(id: VolumeId) -> Vec<u8> {
    let name = hosted("Cairn_StorageVolume", "DeviceID", &id.to_string());
    message(&format!(
        "<IMETHODCALL NAME=\"GetInstance\">{NAMESPACE}\
         <IPARAMVALUE NAME=\"InstanceName\">{name}</IPARAMVALUE></IMETHODCALL>"
    ))
}

/// EnumerateInstanceNames or EnumerateInstances (`operation`) of Cairn_StorageVolume.
fn enumerate_body(operation: &str) -> Vec<u8> {
    message(&format!(
        "<IMETHODCALL NAME=\"{operation}\">{NAMESPACE}<IPARAMVALUE NAME=\"ClassName\">\
         <CLASSNAME NAME=\"Cairn_StorageVolume\"/></IPARAMVALUE></IMETHODCALL>"
    ))
}

const PULL_BATCH: u32 = 1_000;

fn open_enumerate_body() -> Vec<u8> {
    message(&format!(
        "<IMETHODCALL NAME=\"OpenEnumerateInstances\">{NAMESPACE}<IPARAMVALUE NAME=\"ClassName\">\
         <CLASSNAME NAME=\"Cairn_StorageVolume\"/></IPARAMVALUE><IPARAMVALUE NAME=\"MaxObjectCount\">\
         <VALUE>{PULL_BATCH}</VALUE></IPARAMVALUE></IMETHODCALL>"
    ))
}

fn pull_body(context: &str) -> Vec<u8> {
    message(&format!(
        "<IMETHODCALL NAME=\"PullInstancesWithPath\">{NAMESPACE}<IPARAMVALUE \
         NAME=\"EnumerationContext\"><VALUE>{context}</VALUE></IPARAMVALUE><IPARAMVALUE \
         NAME=\"MaxObjectCount\"><VALUE>{PULL_BATCH}</VALUE></IPARAMVALUE></IMETHODCALL>"
    ))
}

/// The enumeration context a pull answer names, `None` at its end.
fn pull_context(answer: &str) -> Option<String> {
    const AT: &str = "NAME=\"EnumerationContext\" PARAMTYPE=\"string\"><VALUE>";
    let start = answer.find(AT)? + AT.len();
    let len = answer[start..].find("</VALUE>")?;
    Some(answer[start..start + len].to_owned())
}

/// Every volume by OpenEnumerateInstances and pulls; the number of instances seen.
fn enumerate_by_pull(server: &CimServer) -> usize {
    let mut answer = handle(
        server,
        "OpenEnumerateInstances",
        "root/cairn",
        &open_enumerate_body(),
    );
    let mut seen = answer.matches("<VALUE.INSTANCEWITHPATH").count();
    while let Some(context) = pull_context(&answer) {
        let body = pull_body(&context);
        answer = handle(server, "PullInstancesWithPath", "root/cairn", &body);
        seen += answer.matches("<VALUE.INSTANCEWITHPATH").count();
    }
    seen
}

fn associators_body(id: VolumeId) -> Vec<u8> {
    let name = hosted("Cairn_StorageVolume", "DeviceID", &id.to_string());
    message(&format!(
        "<IMETHODCALL NAME=\"Associators\">{NAMESPACE}\
         <IPARAMVALUE NAME=\"ObjectName\">{name}</IPARAMVALUE></IMETHODCALL>"
    ))
}

fn replica_body(source: VolumeId, name: &str) -> Vec<u8> {
    let service = hosted(
        "Cairn_ReplicationService",
        "Name",
        "CAIRN:ReplicationService",
    );
    let source = hosted("Cairn_StorageVolume", "DeviceID", &source.to_string());
    message(&format!(
        "<METHODCALL NAME=\"CreateElementReplica\"><LOCALINSTANCEPATH>{NAMESPACE}{service}\
         </LOCALINSTANCEPATH><PARAMVALUE NAME=\"ElementName\" PARAMTYPE=\"string\"><VALUE>{name}\
         </VALUE></PARAMVALUE><PARAMVALUE NAME=\"SyncType\" PARAMTYPE=\"uint16\"><VALUE>7</VALUE>\
         </PARAMVALUE><PARAMVALUE NAME=\"SourceElement\" PARAMTYPE=\"reference\"><VALUE.REFERENCE>\
         {source}</VALUE.REFERENCE></PARAMVALUE></METHODCALL>"
    ))
}

const SERVICE_OBJECT: &str = "root/cairn:Cairn_ReplicationService.CreationClassName=\"Cairn_ReplicationService\",Name=\"CAIRN:ReplicationService\",SystemCreationClassName=\"Cairn_StorageSystem\",SystemName=\"BENCH-ARRAY\"";

/// The response body of one request; panics on an HTTP-level refusal.
fn handle(server: &CimServer, method: &str, object: &str, body: &[u8]) -> String {
    let request = HttpCimRequest {
        cim_operation: Some("MethodCall"),
        cim_method: Some(method),
        cim_object: Some(object),
        cim_protocol_version: None,
        body,
    };
    match server.handle(&request) {
        CimHttpOutcome::Response(xml) => String::from_utf8(xml).expect("UTF-8"),
        CimHttpOutcome::Stream(parts) => {
            String::from_utf8(parts.collect_body().expect("whole answer")).expect("UTF-8")
        }
        other => panic!("{method}: {other:?}"),
    }
}

fn provider(c: &mut Criterion) {
    let mut group = c.benchmark_group("provider");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(4));
    for volumes in SCALES {
        let a = array(volumes);
        let get = get_instance_body(a.first);
        let answer = handle(&a.server, "GetInstance", "root/cairn", &get);
        assert!(answer.contains(&a.first.to_string()), "{answer}");
        group.bench_with_input(
            BenchmarkId::new("get_instance", volumes),
            &volumes,
            |b, _| b.iter(|| handle(&a.server, "GetInstance", "root/cairn", &get)),
        );

        let mut n = 0u64;
        group.bench_with_input(
            BenchmarkId::new("create_element_replica", volumes),
            &volumes,
            |b, _| {
                b.iter_custom(|iters| {
                    let mut measured = Duration::ZERO;
                    for _ in 0..iters {
                        n += 1;
                        let name = format!("snap{n}");
                        let body = replica_body(a.first, &name);
                        let started = Instant::now();
                        handle(&a.server, "CreateElementReplica", SERVICE_OBJECT, &body);
                        measured += started.elapsed();
                        let snap = a.backend.volume_by_name(&name).expect("replica made");
                        a.backend.delete_volume(snap.id).expect("delete replica");
                    }
                    measured
                })
            },
        );

        let names = enumerate_body("EnumerateInstanceNames");
        let answer = handle(&a.server, "EnumerateInstanceNames", "root/cairn", &names);
        assert_eq!(answer.matches("<INSTANCENAME").count(), volumes);
        group.bench_with_input(
            BenchmarkId::new("enumerate_volume_names", volumes),
            &volumes,
            |b, _| b.iter(|| handle(&a.server, "EnumerateInstanceNames", "root/cairn", &names)),
        );

        let all = enumerate_body("EnumerateInstances");
        let answer = handle(&a.server, "EnumerateInstances", "root/cairn", &all);
        assert_eq!(answer.matches("<VALUE.NAMEDINSTANCE").count(), volumes);
        group.bench_with_input(
            BenchmarkId::new("enumerate_volumes", volumes),
            &volumes,
            |b, _| b.iter(|| handle(&a.server, "EnumerateInstances", "root/cairn", &all)),
        );

        assert_eq!(enumerate_by_pull(&a.server), volumes);
        group.bench_with_input(
            BenchmarkId::new("enumerate_volumes_by_pull", volumes),
            &volumes,
            |b, _| b.iter(|| enumerate_by_pull(&a.server)),
        );

        let assoc = associators_body(a.first);
        let answer = handle(&a.server, "Associators", "root/cairn", &assoc);
        assert!(answer.contains("Cairn_StoragePool"), "{answer}");
        group.bench_with_input(
            BenchmarkId::new("associators_of_volume", volumes),
            &volumes,
            |b, _| b.iter(|| handle(&a.server, "Associators", "root/cairn", &assoc)),
        );
        a.storage.close().expect("close");
    }
    group.finish();
}

criterion_group!(benches, provider);
criterion_main!(benches);
