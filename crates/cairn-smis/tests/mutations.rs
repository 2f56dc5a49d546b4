//! End-to-end robustness: seeded random mutations of a valid request (bytes flipped, inserted,
//! deleted, lines duplicated, truncation) are sent to the real server, one connection each, with the
//! write side closed after the request. Whatever the server answers, it is never a 500 (a panic in
//! the CIM handler or the HTTP layer), every connection ends, and the server keeps serving.

mod common;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use common::client::{cim_post, RawConn};
use common::TestServer;

/// admin:s3cret-pw
const AUTH: &str = "Authorization: Basic YWRtaW46czNjcmV0LXB3\r\n";
const HEADERS: &str =
    "CIMOperation: MethodCall\r\nCIMMethod: EnumerateInstanceNames\r\nCIMObject: root%2Fcairn\r\n";
const BODY: &str =
    "<?xml version=\"1.0\" encoding=\"utf-8\" ?><CIM CIMVERSION=\"2.0\" DTDVERSION=\"2.0\">\
<MESSAGE ID=\"77\" PROTOCOLVERSION=\"1.0\"><SIMPLEREQ><IMETHODCALL NAME=\"EnumerateInstanceNames\">\
<LOCALNAMESPACEPATH><NAMESPACE NAME=\"root\"/><NAMESPACE NAME=\"cairn\"/></LOCALNAMESPACEPATH>\
<IPARAMVALUE NAME=\"ClassName\"><CLASSNAME NAME=\"CIM_StorageVolume\"/></IPARAMVALUE>\
</IMETHODCALL></SIMPLEREQ></MESSAGE></CIM>";

const MUTATIONS: usize = 300;
const SEED: u64 = 0x5eed_ca12;

fn mutate(rng: &mut SmallRng, valid: &[u8]) -> Vec<u8> {
    let mut bytes = valid.to_vec();
    for _ in 0..rng.gen_range(1..=4) {
        if bytes.is_empty() {
            break;
        }
        let at = rng.gen_range(0..bytes.len());
        match rng.gen_range(0..5) {
            0 => bytes[at] = rng.gen(),
            1 => bytes.insert(
                at,
                *b"<>&;:\r\n\0 \xff"
                    .get(rng.gen_range(0..11))
                    .unwrap_or(&b'x'),
            ),
            2 => {
                bytes.remove(at);
            }
            3 => {
                let end = (at + rng.gen_range(1..64)).min(bytes.len());
                let copy = bytes[at..end].to_vec();
                bytes.splice(at..at, copy);
            }
            _ => bytes.truncate(at),
        }
    }
    bytes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutated_requests_never_break_the_server() {
    let server = TestServer::start().await;
    let valid = cim_post(&format!("{AUTH}{HEADERS}"), BODY);
    let mut rng = SmallRng::seed_from_u64(SEED);
    for i in 0..MUTATIONS {
        let request = mutate(&mut rng, &valid);
        let mut stream = tokio::net::TcpStream::connect(server.http_addr())
            .await
            .expect("connect");
        // The server may close before reading everything; a failed write is an answer too.
        let _ = stream.write_all(&request).await;
        let _ = stream.shutdown().await;
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer).await;
        let text = String::from_utf8_lossy(&answer);
        assert!(
            !text.contains("HTTP/1.1 500"),
            "mutation {i} (seed {SEED:#x}): {text}"
        );
    }
    let mut conn = RawConn::connect(server.http_addr()).await;
    let reply = conn.exchange(&valid).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    server.handle.shutdown().await;
}
