//! End-to-end: the bad-input table. Each malformed or hostile request gets its specified answer
//! from the real server (real `CimServer` behind it), and after each one the server still serves a
//! valid request on a new connection.

mod common;

use std::time::Instant;

use common::client::{cim_post, RawConn, Reply};
use common::fixture::VOLUME_COUNT;
use common::TestServer;

/// admin:s3cret-pw
const AUTH: &str = "Authorization: Basic YWRtaW46czNjcmV0LXB3\r\n";
const CIM_HEADERS: &str =
    "CIMOperation: MethodCall\r\nCIMMethod: EnumerateInstanceNames\r\nCIMObject: root%2Fcairn\r\n";

fn imethod(method: &str, namespace: &[&str], params: &str) -> String {
    let ns: String = namespace
        .iter()
        .map(|n| format!("<NAMESPACE NAME=\"{n}\"/>"))
        .collect();
    format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\" ?><CIM CIMVERSION=\"2.0\" DTDVERSION=\"2.0\">\
         <MESSAGE ID=\"1001\" PROTOCOLVERSION=\"1.0\"><SIMPLEREQ><IMETHODCALL NAME=\"{method}\">\
         <LOCALNAMESPACEPATH>{ns}</LOCALNAMESPACEPATH>{params}</IMETHODCALL></SIMPLEREQ></MESSAGE></CIM>"
    )
}

fn enumerate_volume_names() -> String {
    let class =
        "<IPARAMVALUE NAME=\"ClassName\"><CLASSNAME NAME=\"CIM_StorageVolume\"/></IPARAMVALUE>";
    imethod("EnumerateInstanceNames", &["root", "cairn"], class)
}

/// What a case must get back.
enum Expect {
    Status(u16, Option<&'static str>),
    CimErrorCode(u32),
}

fn check(name: &str, reply: &Reply, expect: &Expect) {
    match expect {
        Expect::Status(status, cim_error) => {
            assert_eq!(reply.status, *status, "{name}: {reply:?}");
            assert_eq!(reply.header("cimerror"), *cim_error, "{name}: {reply:?}");
            if *status == 401 {
                assert_eq!(
                    reply.header("www-authenticate"),
                    Some("Basic realm=\"cairn\""),
                    "{name}"
                );
            }
        }
        Expect::CimErrorCode(code) => {
            assert_eq!(reply.status, 200, "{name}: {reply:?}");
            assert_eq!(
                reply.header("cimoperation"),
                Some("MethodResponse"),
                "{name}"
            );
            let text = reply.text();
            assert!(
                text.contains(&format!("<ERROR CODE=\"{code}\"")),
                "{name}: {text}"
            );
        }
    }
}

/// A valid request on a fresh connection is served completely.
async fn assert_still_serving(server: &TestServer, after: &str) {
    let mut conn = RawConn::connect(server.http_addr()).await;
    let reply = conn
        .exchange(&cim_post(
            &format!("{AUTH}{CIM_HEADERS}"),
            &enumerate_volume_names(),
        ))
        .await;
    assert_eq!(reply.status, 200, "after {after}: {reply:?}");
    let names = reply.text().matches("<INSTANCENAME ").count();
    assert_eq!(names, VOLUME_COUNT, "after {after}: {}", reply.text());
}

fn table() -> Vec<(&'static str, Vec<u8>, Expect)> {
    let valid = enumerate_volume_names();
    let laughs = format!(
        "<?xml version=\"1.0\"?><!DOCTYPE CIM [<!ENTITY a \"aaaaaaaaaa\">{}]><CIM>&j;</CIM>",
        (b'b'..=b'j')
            .map(|c| {
                let prev = (c - 1) as char;
                let refs = format!("&{prev};").repeat(10);
                format!("<!ENTITY {} \"{refs}\">", c as char)
            })
            .collect::<String>()
    );
    let deep = format!(
        "{}{}",
        "<VALUE.ARRAY>".repeat(10_000),
        "</VALUE.ARRAY>".repeat(10_000)
    );
    let deep = valid.replace(
        "</LOCALNAMESPACEPATH>",
        &format!("</LOCALNAMESPACEPATH>{deep}"),
    );
    let unknown_ns = valid.replace("<NAMESPACE NAME=\"cairn\"/>", "<NAMESPACE NAME=\"nope\"/>");
    let unknown_class = valid.replace("CIM_StorageVolume", "Cairn_NoSuchClass");
    let unknown_method = "<?xml version=\"1.0\" encoding=\"utf-8\" ?><CIM CIMVERSION=\"2.0\" DTDVERSION=\"2.0\">\
        <MESSAGE ID=\"1001\" PROTOCOLVERSION=\"1.0\"><SIMPLEREQ><METHODCALL NAME=\"NoSuchMethod\">\
        <LOCALCLASSPATH><LOCALNAMESPACEPATH><NAMESPACE NAME=\"root\"/><NAMESPACE NAME=\"cairn\"/>\
        </LOCALNAMESPACEPATH><CLASSNAME NAME=\"Cairn_StorageConfigurationService\"/></LOCALCLASSPATH>\
        </METHODCALL></SIMPLEREQ></MESSAGE></CIM>";
    let method_headers = "CIMOperation: MethodCall\r\nCIMMethod: NoSuchMethod\r\n\
        CIMObject: root%2Fcairn%3ACairn_StorageConfigurationService\r\n";
    let h = |extra: &str| format!("{AUTH}{extra}");
    let bad_auth = "Authorization: Basic YWRtaW46d3Jvbmc=\r\n"; // admin:wrong
    let with_method = |m: &str| {
        let mut r = cim_post(&h(CIM_HEADERS), &valid);
        r.splice(0..4, m.bytes());
        r
    };
    use Expect::*;
    vec![
        ("no auth", cim_post(CIM_HEADERS, &valid), Status(401, None)),
        ("wrong password", cim_post(&format!("{bad_auth}{CIM_HEADERS}"), &valid), Status(401, None)),
        ("malformed auth", cim_post(&format!("Authorization: Basic !!\r\n{CIM_HEADERS}"), &valid), Status(401, None)),
        ("not Basic", cim_post(&format!("Authorization: Bearer x\r\n{CIM_HEADERS}"), &valid), Status(401, None)),
        ("GET", with_method("GET"), Status(501, None)),
        ("PUT", with_method("PUT"), Status(501, None)),
        ("M-POST without Man", with_method("M-POST"), Status(510, None)),
        ("no CIMOperation", cim_post(&h("CIMMethod: EnumerateInstanceNames\r\nCIMObject: root%2Fcairn\r\n"), &valid), Status(400, Some("unsupported-operation"))),
        ("CIMOperation not MethodCall", cim_post(&h("CIMOperation: MethodResponse\r\nCIMMethod: EnumerateInstanceNames\r\nCIMObject: root%2Fcairn\r\n"), &valid), Status(400, Some("unsupported-operation"))),
        ("no CIMMethod", cim_post(&h("CIMOperation: MethodCall\r\nCIMObject: root%2Fcairn\r\n"), &valid), Status(400, Some("header-mismatch"))),
        ("no CIMObject", cim_post(&h("CIMOperation: MethodCall\r\nCIMMethod: EnumerateInstanceNames\r\n"), &valid), Status(400, Some("header-mismatch"))),
        ("CIMMethod mismatch", cim_post(&h("CIMOperation: MethodCall\r\nCIMMethod: GetClass\r\nCIMObject: root%2Fcairn\r\n"), &valid), Status(400, Some("header-mismatch"))),
        ("protocol version 2.0", cim_post(&h(&format!("{CIM_HEADERS}CIMProtocolVersion: 2.0\r\n")), &valid), Status(501, Some("unsupported-protocol-version"))),
        ("malformed XML", cim_post(&h(CIM_HEADERS), &valid.replace("</SIMPLEREQ>", "</SIMPLEREQ")), Status(400, Some("request-not-well-formed"))),
        ("not XML", cim_post(&h(CIM_HEADERS), "\u{0}\u{1}binary"), Status(400, Some("request-not-well-formed"))),
        ("billion laughs", cim_post(&h(CIM_HEADERS), &laughs), Status(400, Some("request-not-well-formed"))),
        ("deep nesting", cim_post(&h(CIM_HEADERS), &deep), Status(400, Some("request-not-valid"))),
        ("unknown namespace", cim_post(&h("CIMOperation: MethodCall\r\nCIMMethod: EnumerateInstanceNames\r\nCIMObject: root%2Fnope\r\n"), &unknown_ns), CimErrorCode(3)),
        ("unknown class", cim_post(&h(CIM_HEADERS), &unknown_class), CimErrorCode(5)),
        ("unknown method", cim_post(&h(method_headers), unknown_method), CimErrorCode(17)),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_table() {
    let server = TestServer::start().await;
    for (name, request, expect) in table() {
        let started = Instant::now();
        let mut conn = RawConn::connect(server.http_addr()).await;
        let reply = conn.exchange(&request).await;
        check(name, &reply, &expect);
        assert!(
            started.elapsed().as_secs() < 5,
            "{name} took {:?}",
            started.elapsed()
        );
        // Answers that read the whole request keep the connection: a second request works on it.
        if reply.header("connection") != Some("close") {
            let again = conn
                .exchange(&cim_post(
                    &format!("{AUTH}{CIM_HEADERS}"),
                    &enumerate_volume_names(),
                ))
                .await;
            assert_eq!(again.status, 200, "keep-alive after {name}: {again:?}");
        }
        assert_still_serving(&server, name).await;
    }
    server.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_megabyte_body_is_refused_unread() {
    let server = TestServer::start().await;
    let body_bytes: usize = 100 * 1024 * 1024;
    // Declared: the answer comes on the headers alone.
    let mut conn = RawConn::connect(server.http_addr()).await;
    let head = format!(
        "POST /cimom HTTP/1.1\r\nHost: 127.0.0.1\r\n{AUTH}{CIM_HEADERS}Content-Length: {body_bytes}\r\n\r\n"
    );
    let reply = conn.exchange(head.as_bytes()).await;
    assert_eq!(
        (reply.status, reply.header("cimerror")),
        (413, Some("request-not-valid"))
    );
    assert_eq!(reply.header("connection"), Some("close"));
    // Declared, with Expect: 100-continue: no 100, the 413 straight away.
    let mut conn = RawConn::connect(server.http_addr()).await;
    let head = head.replace("Content-Length", "Expect: 100-continue\r\nContent-Length");
    assert_eq!(conn.exchange(head.as_bytes()).await.status, 413);
    // Chunked, so the size is unknown up front: the server answers once past its limit, while the
    // client is still sending, and stops reading.
    let stream = tokio::net::TcpStream::connect(server.http_addr())
        .await
        .expect("connect");
    let (read_half, mut write_half) = stream.into_split();
    let head = format!(
        "POST /cimom HTTP/1.1\r\nHost: 127.0.0.1\r\n{AUTH}{CIM_HEADERS}Transfer-Encoding: chunked\r\n\r\n"
    );
    let answered = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let answered = answered.clone();
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            let chunk_bytes = 64 * 1024;
            let chunk = format!("{chunk_bytes:x}\r\n{}\r\n", "x".repeat(chunk_bytes));
            let mut sent = 0usize;
            write_half
                .write_all(head.as_bytes())
                .await
                .expect("send head");
            while sent < body_bytes && !answered.load(std::sync::atomic::Ordering::SeqCst) {
                if write_half.write_all(chunk.as_bytes()).await.is_err() {
                    break;
                }
                sent += chunk_bytes;
            }
            sent
        })
    };
    let reply = common::client::read_reply_from(read_half).await;
    answered.store(true, std::sync::atomic::Ordering::SeqCst);
    let sent = writer.await.expect("writer");
    assert_eq!(reply.status, 413, "{reply:?}");
    assert!(
        sent < body_bytes,
        "the server read the whole 100 MB body before answering"
    );
    assert_still_serving(&server, "100 MB body").await;
    server.handle.shutdown().await;
}
