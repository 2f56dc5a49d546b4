//! End-to-end: valid requests in every framing DSP0200 and HTTP/1.1 allow reach the real CIM
//! server and get a full answer: `M-POST` with its `Man`/`NN-` headers, path `/`, HTTP/1.0,
//! header names in any case, a chunked body, `Expect: 100-continue`, pipelined requests.

mod common;

use common::client::RawConn;
use common::fixture::VOLUME_COUNT;
use common::TestServer;

/// admin:s3cret-pw
const AUTH: &str = "Authorization: Basic YWRtaW46czNjcmV0LXB3\r\n";

const BODY: &str =
    "<?xml version=\"1.0\" encoding=\"utf-8\" ?><CIM CIMVERSION=\"2.0\" DTDVERSION=\"2.0\">\
<MESSAGE ID=\"77\" PROTOCOLVERSION=\"1.0\"><SIMPLEREQ><IMETHODCALL NAME=\"EnumerateInstanceNames\">\
<LOCALNAMESPACEPATH><NAMESPACE NAME=\"root\"/><NAMESPACE NAME=\"cairn\"/></LOCALNAMESPACEPATH>\
<IPARAMVALUE NAME=\"ClassName\"><CLASSNAME NAME=\"CIM_StorageVolume\"/></IPARAMVALUE>\
</IMETHODCALL></SIMPLEREQ></MESSAGE></CIM>";

fn request(line: &str, headers: &str) -> String {
    format!(
        "{line}\r\nHost: 127.0.0.1\r\n{AUTH}{headers}Content-Length: {}\r\n\r\n{BODY}",
        BODY.len()
    )
}

fn assert_volume_names(what: &str, reply: &common::client::Reply, cim_operation_header: &str) {
    assert_eq!(reply.status, 200, "{what}: {reply:?}");
    assert_eq!(
        reply.header(cim_operation_header),
        Some("MethodResponse"),
        "{what}: {reply:?}"
    );
    assert_eq!(
        reply.header("content-type"),
        Some("application/xml; charset=\"utf-8\""),
        "{what}"
    );
    let text = reply.text();
    assert_eq!(
        text.matches("<INSTANCENAME ").count(),
        VOLUME_COUNT,
        "{what}: {text}"
    );
}

const PLAIN: &str =
    "CIMOperation: MethodCall\r\nCIMMethod: EnumerateInstanceNames\r\nCIMObject: root/cairn\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_framings_are_served() {
    let server = TestServer::start().await;
    let mpost = "Man: http://www.dmtf.org/cim/mapping/http/v1.0 ; ns=73\r\n73-CIMOperation: MethodCall\r\n\
                 73-CIMMethod: EnumerateInstanceNames\r\n73-CIMObject: root%2Fcairn\r\n73-CIMProtocolVersion: 1.0\r\n";
    let lower = "cimoperation: MethodCall\r\ncimmethod: EnumerateInstanceNames\r\ncimobject: root%2Fcairn\r\n";
    let cases = [
        (
            "POST /cimom",
            request("POST /cimom HTTP/1.1", PLAIN),
            "cimoperation",
        ),
        ("POST /", request("POST / HTTP/1.1", PLAIN), "cimoperation"),
        (
            "M-POST",
            request("M-POST /cimom HTTP/1.1", mpost),
            "73-cimoperation",
        ),
        (
            "HTTP/1.0",
            request("POST /cimom HTTP/1.0", PLAIN),
            "cimoperation",
        ),
        (
            "lower-case headers",
            request("POST /cimom HTTP/1.1", lower),
            "cimoperation",
        ),
    ];
    for (what, req, op_header) in &cases {
        let mut conn = RawConn::connect(server.http_addr()).await;
        let reply = conn.exchange(req.as_bytes()).await;
        assert_volume_names(what, &reply, op_header);
        if *what == "M-POST" {
            assert_eq!(reply.header("ext"), Some(""), "{reply:?}");
            assert!(
                reply.header("opt").is_some_and(|o| o.ends_with("ns=73")),
                "{reply:?}"
            );
        }
    }
    // Chunked body, with Expect: 100-continue.
    let mut conn = RawConn::connect(server.http_addr()).await;
    let (a, b) = BODY.split_at(BODY.len() / 2);
    let chunked = format!(
        "POST /cimom HTTP/1.1\r\nHost: 127.0.0.1\r\n{AUTH}{PLAIN}Expect: 100-continue\r\n\
         Transfer-Encoding: chunked\r\n\r\n{:x}\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\n\r\n",
        a.len(),
        b.len()
    );
    assert_volume_names(
        "chunked",
        &conn.exchange(chunked.as_bytes()).await,
        "cimoperation",
    );
    // Three pipelined requests, answered in order on the same connection.
    let mut conn = RawConn::connect(server.http_addr()).await;
    let one = request("POST /cimom HTTP/1.1", PLAIN);
    conn.send(format!("{one}{one}{one}").as_bytes())
        .await
        .expect("send");
    for i in 0..3 {
        assert_volume_names(
            &format!("pipelined {i}"),
            &conn.read_reply().await,
            "cimoperation",
        );
    }
    server.handle.shutdown().await;
}
