//! End-to-end: every request captured from real clients (pywbem, pywbemcli, wbemcli,
//! libstoragemgmt; `crates/cairn-cim/tests/data/cim-xml/`, see the README there for their origin)
//! is replayed byte for byte to the real server, all on one keep-alive connection per client, and
//! each gets a complete CIM-XML answer — or 401 for the captures sent without credentials.

mod common;

use std::path::{Path, PathBuf};

use common::client::RawConn;
use common::TestServer;

fn captures() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../cairn-cim/tests/data/cim-xml");
    let entries = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("captured requests missing at {}: {e}", dir.display()));
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "http"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 50,
        "expected the full capture set in {}",
        dir.display()
    );
    files
}

/// The value of the `MESSAGE ID` attribute in a CIM-XML document.
fn message_id(doc: &str) -> Option<&str> {
    let start = doc.find("<MESSAGE ID=\"")? + "<MESSAGE ID=\"".len();
    Some(&doc[start..start + doc[start..].find('"')?])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn captured_client_requests_are_answered() {
    // The captures carry `Authorization: Basic YWRtaW46c2VjcmV0` (admin/secret).
    let server = TestServer::start_as("admin", "secret").await;
    let mut conns: Vec<(String, RawConn)> = Vec::new();
    for path in captures() {
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let client = name.split('-').next().unwrap_or_default().to_owned();
        let request = std::fs::read(&path).expect("read capture");
        let idx = match conns.iter().position(|(c, _)| *c == client) {
            Some(i) => i,
            None => {
                conns.push((client.clone(), RawConn::connect(server.http_addr()).await));
                conns.len() - 1
            }
        };
        let reply = conns[idx].1.exchange(&request).await;
        if name.contains("-401") {
            assert_eq!(reply.status, 401, "{name}");
            continue;
        }
        assert_eq!(reply.status, 200, "{name}: {reply:?}");
        assert_eq!(
            reply.header("cimoperation"),
            Some("MethodResponse"),
            "{name}"
        );
        let text = reply.text();
        let sent = String::from_utf8_lossy(&request);
        assert_eq!(message_id(&text), message_id(&sent), "{name}: {text}");
        assert!(text.contains("METHODRESPONSE NAME=\""), "{name}: {text}");
    }
    server.handle.shutdown().await;
}
