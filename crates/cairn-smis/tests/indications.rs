//! The indication classes through the real CIM server, the real array model over a file-backed
//! engine pool and the real delivery tasks: CreateInstance refuses queries outside the subset,
//! bad destinations and creations past the limits with the right CIM errors; and a listener that
//! accepts connections but never answers does not hold up another listener's indications.

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
    let storage = open_storage(dir, &[("pool0", 256 * MIB)]);
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
