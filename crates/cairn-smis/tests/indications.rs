//! The indication classes through the real CIM server, the real array model over a file-backed
//! engine pool and the real delivery tasks: CreateInstance refuses queries outside the subset,
//! bad destinations and creations past the limits with the right CIM errors; a listener that
//! accepts connections but never answers does not hold up another listener's indications; and a
//! copy job ending in Exception and a pool failing on its device raise their alerts.

mod provider_common;

use std::sync::Arc;

use bytes::Bytes;
use cairn_array::VolumeSpec;
use cairn_cim::xml::decode::decode_request;
use cairn_smis::limits::INDICATION_FILTERS_MAX;
use cairn_smis::{ArrayOptions, ArrayProvider, IndicationOptions, Indications};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use provider_common::{open_storage, MIB, SYSTEM};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

fn string_prop(name: &str, value: &str) -> String {
    format!("<PROPERTY NAME=\"{name}\" TYPE=\"string\"><VALUE>{value}</VALUE></PROPERTY>")
}

fn filter(name: &str, query: &str, language: &str) -> String {
    format!(
        "<INSTANCE CLASSNAME=\"CIM_IndicationFilter\">{}{}{}</INSTANCE>",
        string_prop("Name", name),
        string_prop("Query", query),
        string_prop("QueryLanguage", language)
    )
}

fn destination(name: &str, url: &str) -> String {
    format!(
        "<INSTANCE CLASSNAME=\"CIM_ListenerDestinationCIMXML\">{}{}</INSTANCE>",
        string_prop("Name", name),
        string_prop("Destination", url)
    )
}

fn reference(prop: &str, class: &str, name: &str) -> String {
    format!(
        "<PROPERTY.REFERENCE NAME=\"{prop}\"><VALUE.REFERENCE><INSTANCENAME CLASSNAME=\"{class}\">\
         <KEYBINDING NAME=\"Name\"><KEYVALUE>{name}</KEYVALUE></KEYBINDING></INSTANCENAME>\
         </VALUE.REFERENCE></PROPERTY.REFERENCE>"
    )
}

fn subscription(filter: &str, handler: &str) -> String {
    format!(
        "<INSTANCE CLASSNAME=\"CIM_IndicationSubscription\">{}{}</INSTANCE>",
        reference("Filter", "CIM_IndicationFilter", filter),
        reference("Handler", "CIM_ListenerDestinationCIMXML", handler)
    )
}

/// CreateInstance of `instance` in `interop`: the response body.
fn create(server: &cairn_cim::CimServer, instance: &str) -> String {
    let body = format!(
        "<?xml version=\"1.0\"?><CIM CIMVERSION=\"2.0\" DTDVERSION=\"2.0\"><MESSAGE ID=\"1\" \
         PROTOCOLVERSION=\"1.0\"><SIMPLEREQ><IMETHODCALL NAME=\"CreateInstance\"><LOCALNAMESPACEPATH>\
         <NAMESPACE NAME=\"interop\"/></LOCALNAMESPACEPATH><IPARAMVALUE NAME=\"NewInstance\">{instance}\
         </IPARAMVALUE></IMETHODCALL></SIMPLEREQ></MESSAGE></CIM>"
    );
    let request = decode_request(body.as_bytes()).expect("request decodes");
    String::from_utf8(server.respond(&request)).expect("utf-8")
}

fn error_code(response: &str) -> Option<u32> {
    let at = response.find("<ERROR CODE=\"")? + "<ERROR CODE=\"".len();
    let end = response[at..].find('"')?;
    response[at..at + end].parse().ok()
}

fn start(dir: &std::path::Path) -> (Arc<ArrayProvider>, Indications) {
    start_on(dir, open_storage(dir, &[("pool0", 256 * MIB)]))
}

/// The array over `storage` and its indications, kept in `dir`.
fn start_on(
    dir: &std::path::Path,
    storage: Arc<cairn_engine::Storage>,
) -> (Arc<ArrayProvider>, Indications) {
    let array = ArrayProvider::new(storage, ArrayOptions::new(SYSTEM));
    let opts = IndicationOptions {
        state_path: Some(dir.join("indications.json")),
        retry_attempts: 0,
        ..IndicationOptions::default()
    };
    let ind = Indications::start(&array, opts, tokio::runtime::Handle::current()).expect("start");
    (array, ind)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_instance_refuses_what_it_cannot_honour() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (array, ind) = start(dir.path());
    let server = ind.cim_server(&array);
    let vols = "SELECT * FROM CIM_InstCreation WHERE SourceInstance ISA CIM_StorageVolume";
    let like = "SELECT * FROM CIM_InstCreation WHERE SourceInstance.CIM_StorageVolume::ElementName LIKE 'a%'";
    for (query, language, code) in [
        (like, "DMTF:CQL", 7),
        ("SELECT ElementName FROM CIM_InstCreation", "WQL", 7),
        (vols, "SQL", 7),
        ("SELECT * FROM CIM_StorageVolume", "WQL", 15),
        ("SELECT * FROM CIM_InstCreation WHERE (", "WQL", 15),
    ] {
        let r = create(&server, &filter("f", query, language));
        assert_eq!(error_code(&r), Some(code), "{query}: {r}");
    }
    let r = create(&server, &filter("f0", vols, "DMTF:CQL"));
    assert!(
        r.contains("<INSTANCENAME CLASSNAME=\"CIM_IndicationFilter\">"),
        "{r}"
    );
    assert_eq!(
        error_code(&create(&server, &filter("f0", vols, "WQL"))),
        Some(11)
    );
    for i in 1..INDICATION_FILTERS_MAX {
        let r = create(&server, &filter(&format!("f{i}"), vols, "WQL"));
        assert_eq!(error_code(&r), None, "{r}");
    }
    let r = create(&server, &filter("one too many", vols, "WQL"));
    assert_eq!(error_code(&r), Some(27), "{r}");
    let r = create(&server, &destination("d", "ftp://127.0.0.1/"));
    assert_eq!(error_code(&r), Some(4), "{r}");
    let r = create(&server, &subscription("f0", "no such destination"));
    assert_eq!(error_code(&r), Some(4), "{r}");
    ind.stop();
}

/// A listener answering ExportIndication as DSP0200 says; each request body goes to `tx`.
async fn listener(tx: mpsc::UnboundedSender<String>) -> String {
    let socket = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/", socket.local_addr().expect("addr"));
    tokio::spawn(async move {
        while let Ok((stream, _)) = socket.accept().await {
            let tx = tx.clone();
            let service =
                hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let tx = tx.clone();
                    async move {
                        let body = req.into_body().collect().await?.to_bytes();
                        let _ = tx.send(String::from_utf8_lossy(&body).into_owned());
                        let answer =
                            "<?xml version=\"1.0\"?><CIM CIMVERSION=\"2.0\" DTDVERSION=\"2.4\">\
                        <MESSAGE ID=\"1\" PROTOCOLVERSION=\"1.0\"><SIMPLEEXPRSP><EXPMETHODRESPONSE \
                        NAME=\"ExportIndication\"/></SIMPLEEXPRSP></MESSAGE></CIM>";
                        Ok::<_, hyper::Error>(hyper::Response::new(Full::new(Bytes::from(answer))))
                    }
                });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service),
            );
        }
    });
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_that_never_answers_holds_up_no_other() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (array, ind) = start(dir.path());
    let server = ind.cim_server(&array);
    // Accepts connections and keeps them open without ever reading or answering.
    let hole = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let hole_url = format!("http://{}/", hole.local_addr().expect("addr"));
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = hole.accept().await {
            held.push(s);
        }
    });
    let (tx, mut rx) = mpsc::unbounded_channel();
    let good_url = listener(tx).await;
    let vols = "SELECT * FROM CIM_InstCreation WHERE SourceInstance ISA CIM_StorageVolume";
    for r in [
        create(&server, &filter("vols", vols, "WQL")),
        create(&server, &destination("hole", &hole_url)),
        create(&server, &destination("good", &good_url)),
        create(&server, &subscription("vols", "hole")),
        create(&server, &subscription("vols", "good")),
    ] {
        assert_eq!(error_code(&r), None, "{r}");
    }
    let backend = array.array().clone();
    for name in ["first", "second"] {
        let b = backend.clone();
        tokio::task::spawn_blocking(move || {
            b.create_volume("pool0", name, MIB, &VolumeSpec::default())
        })
        .await
        .expect("join")
        .expect("create volume");
    }
    for (name, seq) in [("first", 0), ("second", 1)] {
        let body = rx.recv().await.expect("an indication");
        assert!(body.contains("CLASSNAME=\"CIM_InstCreation\""), "{body}");
        assert!(
            body.contains(&format!("&lt;VALUE&gt;{name}&lt;/VALUE&gt;")),
            "{name}: {body}"
        );
        assert!(
            body.contains(&format!(
                "<PROPERTY NAME=\"SequenceNumber\" TYPE=\"sint64\"><VALUE>{seq}</VALUE>"
            )),
            "{body}"
        );
    }
    ind.stop();
}

/// The bodies `rx` receives within 30 s until `done` holds for them all.
async fn receive_until(
    rx: &mut mpsc::UnboundedReceiver<String>,
    done: impl Fn(&[String]) -> bool,
) -> Vec<String> {
    let mut got = Vec::new();
    while !done(&got) {
        let next = tokio::time::timeout(std::time::Duration::from_secs(30), rx.recv()).await;
        match next {
            Ok(Some(body)) => got.push(body),
            _ => panic!("no more indications; received {got:#?}"),
        }
    }
    got
}

fn message_id(body: &str) -> Option<&str> {
    let tag = "<PROPERTY NAME=\"MessageID\" TYPE=\"string\"><VALUE>";
    let at = body.find(tag)? + tag.len();
    body[at..].split('<').next()
}

/// A copy into a pool whose device starts failing every write: the copy ends in Exception and
/// its cleanup's metadata write fails the pool; each raises its alert (CRN3, CRN1) to a listener
/// subscribed to every CIM_AlertIndication, and the pool shows OperationalStatus Error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_copy_and_a_failing_pool_raise_their_alerts() {
    use cairn_cim::{MethodCall, Provider, Value};
    use cairn_engine::{Pool, PoolOptions};
    use cairn_io::MemDevice;
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = open_storage(dir.path(), &[("pool0", 64 * MIB)]);
    let dev = Arc::new(MemDevice::new(64 * MIB));
    let pool1 = Pool::create(dev.clone(), "pool1", PoolOptions::default()).expect("pool1");
    storage.add_pool(pool1).expect("add pool1");
    let mut opts = ArrayOptions::new(SYSTEM);
    opts.copy_rate_bytes_per_sec = Some(2 * MIB);
    let array = ArrayProvider::new(storage.clone(), opts);
    let ind_opts = IndicationOptions {
        retry_attempts: 0,
        ..IndicationOptions::default()
    };
    let ind =
        Indications::start(&array, ind_opts, tokio::runtime::Handle::current()).expect("start");
    let server = ind.cim_server(&array);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let url = listener(tx).await;
    for r in [
        create(
            &server,
            &filter("alerts", "SELECT * FROM CIM_AlertIndication", "WQL"),
        ),
        create(&server, &destination("lis", &url)),
        create(&server, &subscription("alerts", "lis")),
    ] {
        assert_eq!(error_code(&r), None, "{r}");
    }
    array
        .array()
        .create_volume("pool0", "src", 8 * MIB, &VolumeSpec::default())
        .expect("src");
    let engine_id = storage.find_volume("src").expect("engine volume").1.id;
    let pool0 = storage.pool("pool0").expect("pool0");
    pool0
        .write(
            engine_id,
            0,
            &provider_common::pattern(7, (8 * MIB) as usize),
        )
        .expect("write");
    let path_of = |class: &str, key: &str, value: &str| {
        array
            .enumerate_instances("root/cairn", class)
            .expect("enumerate")
            .into_iter()
            .find(|i| value.is_empty() || i.get(key) == Some(&Value::string(value)))
            .and_then(|i| i.path)
            .expect("instance")
    };
    let service = path_of("Cairn_ReplicationService", "", "");
    let source = path_of("Cairn_StorageVolume", "ElementName", "src");
    let target_pool = path_of("Cairn_StoragePool", "PoolID", "pool1");
    let a = array.clone();
    let rc = tokio::task::spawn_blocking(move || {
        let params = [
            ("ElementName".to_owned(), Some(Value::string("dst"))),
            ("SyncType".to_owned(), Some(Value::Uint16(7))),
            ("SourceElement".to_owned(), Some(Value::Reference(source))),
            ("TargetPool".to_owned(), Some(Value::Reference(target_pool))),
        ];
        a.invoke_method(&MethodCall {
            namespace: "root/cairn",
            target: Some(&service),
            class_name: "Cairn_ReplicationService",
            method: "CreateElementReplica",
            params: &params,
        })
    })
    .await
    .expect("join");
    assert_eq!(rc.expect("method").return_value, Value::Uint32(4096));
    // The copy is under way (2 MiB/s of 8 MiB): from now on every write to pool1 fails.
    dev.fail_writes_after(0);
    let got = receive_until(&mut rx, |got| got.len() >= 2).await;
    let mut ids: Vec<_> = got.iter().filter_map(|b| message_id(b)).collect();
    ids.sort();
    assert_eq!(ids, ["CRN1", "CRN3"], "{got:#?}");
    let pool = got
        .iter()
        .find(|b| message_id(b) == Some("CRN1"))
        .expect("CRN1");
    for prop in [
        "<PROPERTY NAME=\"AlertType\" TYPE=\"uint16\"><VALUE>5</VALUE>",
        "<PROPERTY NAME=\"PerceivedSeverity\" TYPE=\"uint16\"><VALUE>6</VALUE>",
        "<PROPERTY NAME=\"ProbableCause\" TYPE=\"uint16\"><VALUE>16</VALUE>",
        "CAIRN:POOL:pool1",
    ] {
        assert!(pool.contains(prop), "{prop}: {pool}");
    }
    let pools = array
        .enumerate_instances("root/cairn", "Cairn_StoragePool")
        .expect("pools");
    let failed = pools
        .iter()
        .find(|p| p.get("PoolID") == Some(&Value::string("pool1")))
        .expect("pool1");
    let error = Value::Array(cairn_cim::CimType::Uint16, vec![Value::Uint16(6)]);
    assert_eq!(failed.get("OperationalStatus"), Some(&error));
    ind.stop();
}

/// A pool out of space when the daemon starts: its alert (SNIA DRM29) reaches the subscription
/// kept across the restart once, before a volume made after start-up is reported, and no other
/// alert comes with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_out_of_space_at_start_up_raises_drm29_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (tx, mut rx) = mpsc::unbounded_channel();
    let url = listener(tx).await;
    let pools = [("pool0", 64 * MIB)];
    {
        let storage = open_storage(dir.path(), &pools);
        let (array, ind) = start_on(dir.path(), storage.clone());
        let server = ind.cim_server(&array);
        let vols = "SELECT * FROM CIM_InstCreation WHERE SourceInstance ISA CIM_StorageVolume";
        for r in [
            create(
                &server,
                &filter("alerts", "SELECT * FROM CIM_AlertIndication", "WQL"),
            ),
            create(&server, &filter("vols", vols, "WQL")),
            create(&server, &destination("lis", &url)),
            create(&server, &subscription("alerts", "lis")),
            create(&server, &subscription("vols", "lis")),
        ] {
            assert_eq!(error_code(&r), None, "{r}");
        }
        ind.stop();
        let v = array
            .array()
            .create_volume("pool0", "filler", 512 * MIB, &VolumeSpec::default())
            .expect("filler");
        let (pool, _) = storage
            .find_volume_by_id(cairn_engine::VolumeId(v.id.0))
            .expect("engine volume");
        // Mebibytes, then blocks, until a write finds no room (a commit frees nothing: there
        // is no overwrite).
        let id = cairn_engine::VolumeId(v.id.0);
        let mut at = 0;
        for chunk in [MIB, cairn_engine::BLOCK_SIZE] {
            let data = provider_common::pattern(3, chunk as usize);
            while pool.write(id, at, &data).is_ok() {
                at += chunk;
            }
        }
        pool.flush().expect("flush");
        assert_eq!(pool.info().data_bytes_free, 0, "the pool is full");
        storage.close().expect("close");
    }
    let (array, ind) = start_on(dir.path(), open_storage(dir.path(), &pools));
    let mut got = receive_until(&mut rx, |got| !got.is_empty()).await;
    // Made once the start-up alerts are out: its creation comes after anything queued before.
    array
        .array()
        .create_volume("pool0", "marker", MIB, &VolumeSpec::default())
        .expect("a volume needs metadata only");
    got.extend(receive_until(&mut rx, |got| got.iter().any(|b| b.contains("marker"))).await);
    let alerts: Vec<_> = got.iter().filter_map(|b| message_id(b)).collect();
    assert_eq!(alerts, ["DRM29"], "{got:#?}");
    assert!(got[0].contains("CAIRN:POOL:pool0"), "{}", got[0]);
    ind.stop();
}
