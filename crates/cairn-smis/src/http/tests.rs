//! Tests of the HTTP layer over real sockets, with a recording CIM handler in place of the CIM
//! server (the end-to-end tests in `tests/` use the real one). The client is a minimal raw
//! HTTP/1.1 writer and reader so that malformed and partial requests can be sent exactly.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use super::*;

/// Records what it was given; answers by the first body byte: `b` → BadRequest, `n` →
/// NotImplemented, `w` → waits on the gate first, anything else → a Response naming the headers.
struct Recorder {
    calls: AtomicUsize,
    gate: Mutex<Option<std::sync::mpsc::Receiver<()>>>,
    entered: Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
}

impl Recorder {
    fn new() -> Arc<Recorder> {
        Arc::new(Recorder {
            calls: AtomicUsize::new(0),
            gate: Mutex::new(None),
            entered: Mutex::new(None),
        })
    }
}

impl CimHandler for Recorder {
    fn handle(&self, call: &HttpCimRequest<'_>) -> CimHttpOutcome {
        self.calls.fetch_add(1, Ordering::SeqCst);
        match call.body.first() {
            Some(b'b') => CimHttpOutcome::BadRequest {
                cim_error: "request-not-well-formed",
            },
            Some(b'n') => CimHttpOutcome::NotImplemented {
                cim_error: "unsupported-protocol-version",
            },
            Some(b'w') => {
                if let Some(tx) = self.entered.lock().take() {
                    let _ = tx.send(());
                }
                let gate = self.gate.lock().take();
                if let Some(rx) = gate {
                    let _ = rx.recv();
                }
                CimHttpOutcome::Response(b"waited".to_vec())
            }
            _ => {
                let text = format!(
                    "{:?}|{:?}|{:?}|{:?}|{}",
                    call.cim_operation,
                    call.cim_method,
                    call.cim_object,
                    call.cim_protocol_version,
                    call.body.len()
                );
                CimHttpOutcome::Response(text.into_bytes())
            }
        }
    }
}

const AUTH: &str = "Authorization: Basic YWRtaW46c2VjcmV0\r\n"; // admin:secret

async fn start(handler: Arc<Recorder>, https: bool) -> SmisServerHandle {
    start_tuned(handler, https, |_| {}).await
}

/// A self-signed identity for `localhost` and `127.0.0.1`, made once for all tests: the server's
/// rustls configuration and the certificate a client trusts.
fn test_identity() -> &'static (
    Arc<rustls::ServerConfig>,
    rustls::pki_types::CertificateDer<'static>,
) {
    static IDENTITY: std::sync::OnceLock<(
        Arc<rustls::ServerConfig>,
        rustls::pki_types::CertificateDer<'static>,
    )> = std::sync::OnceLock::new();
    IDENTITY.get_or_init(|| {
        let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(names)
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let der = cert.der().clone();
        let key = rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![der.clone()], key)
            .unwrap();
        (Arc::new(config), der)
    })
}

async fn start_tuned<H: CimHandler>(
    handler: Arc<H>,
    https: bool,
    tune: impl FnOnce(&mut SmisServerConfig),
) -> SmisServerHandle {
    let creds = Credentials::new("admin", "secret").unwrap();
    let mut cfg = SmisServerConfig::new(creds, https.then(|| test_identity().0.clone()));
    cfg.http_addr = Some("127.0.0.1:0".parse().unwrap());
    cfg.https_addr = https.then(|| "127.0.0.1:0".parse().unwrap());
    cfg.body_bytes_max = 64 * 1024;
    tune(&mut cfg);
    start_with(cfg, handler).await.unwrap()
}

/// Reads until the server closes the connection; `true` if it did within `limit`.
async fn closed_within<S: AsyncRead + Unpin>(s: &mut BufReader<S>, limit: Duration) -> bool {
    let mut rest = Vec::new();
    tokio::time::timeout(limit, s.read_to_end(&mut rest))
        .await
        .is_ok()
}

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Reads one response (status line, headers, Content-Length body).
async fn read_reply<R: AsyncRead + Unpin>(r: &mut BufReader<R>) -> Reply {
    let mut line = String::new();
    r.read_line(&mut line).await.unwrap();
    let status = line
        .split(' ')
        .nth(1)
        .expect("status line")
        .parse()
        .unwrap();
    let mut headers = Vec::new();
    loop {
        line.clear();
        r.read_line(&mut line).await.unwrap();
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let (n, v) = l.split_once(':').unwrap();
        headers.push((n.trim().to_owned(), v.trim().to_owned()));
    }
    let mut reply = Reply {
        status,
        headers,
        body: Vec::new(),
    };
    let len: usize = reply
        .header("content-length")
        .map_or(0, |v| v.parse().unwrap());
    reply.body = vec![0; len];
    r.read_exact(&mut reply.body).await.unwrap();
    reply
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(s: &mut BufReader<S>, req: &str) -> Reply {
    s.get_mut().write_all(req.as_bytes()).await.unwrap();
    read_reply(s).await
}

async fn connect(addr: SocketAddr) -> BufReader<TcpStream> {
    BufReader::new(TcpStream::connect(addr).await.unwrap())
}

fn post(extra_headers: &str, body: &str) -> String {
    format!(
        "POST /cimom HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n{extra_headers}\r\n{body}",
        body.len()
    )
}

const CIM: &str = "CIMOperation: MethodCall\r\nCIMMethod: GetClass\r\nCIMObject: root%2Fcairn\r\n";

#[tokio::test]
async fn post_reaches_handler_with_headers_and_keeps_alive() {
    let rec = Recorder::new();
    let server = start(rec.clone(), false).await;
    let mut c = connect(server.http_addr().unwrap()).await;
    for _ in 0..3 {
        let r = exchange(
            &mut c,
            &post(&format!("{AUTH}{CIM}CIMProtocolVersion: 1.0\r\n"), "xyz"),
        )
        .await;
        assert_eq!(r.status, 200);
        assert_eq!(
            r.header("content-type"),
            Some("application/xml; charset=\"utf-8\"")
        );
        assert_eq!(r.header("cimoperation"), Some("MethodResponse"));
        let want = "Some(\"MethodCall\")|Some(\"GetClass\")|Some(\"root%2Fcairn\")|Some(\"1.0\")|3";
        assert_eq!(String::from_utf8_lossy(&r.body), want);
    }
    let r = exchange(&mut c, &post(AUTH, "")).await;
    assert_eq!(String::from_utf8_lossy(&r.body), "None|None|None|None|0");
    let root = exchange(&mut c, &post(AUTH, "q").replacen("/cimom", "/", 1)).await;
    assert_eq!(root.status, 200);
    assert_eq!(rec.calls.load(Ordering::SeqCst), 5);
    server.shutdown().await;
}

#[tokio::test]
async fn authentication_is_checked_first() {
    let rec = Recorder::new();
    let server = start(rec.clone(), false).await;
    let mut c = connect(server.http_addr().unwrap()).await;
    let bad = [
        String::new(),
        "Authorization: Basic YWRtaW46d3Jvbmc=\r\n".into(), // admin:wrong
        "Authorization: Basic\r\n".into(),
        "Authorization: Basic %%%\r\n".into(),
        "Authorization: Digest username=\"admin\"\r\n".into(),
        format!("{AUTH}{AUTH}"),
    ];
    for auth in &bad {
        let r = exchange(&mut c, &post(&format!("{auth}{CIM}"), "abc")).await;
        assert_eq!(r.status, 401, "{auth}");
        assert_eq!(r.header("www-authenticate"), Some("Basic realm=\"cairn\""));
    }
    // Unauthenticated requests learn nothing about methods, paths or sizes.
    let get = exchange(&mut c, "GET /cimom HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(get.status, 401);
    assert_eq!(rec.calls.load(Ordering::SeqCst), 0);
    let ok = exchange(&mut c, &post(&format!("{AUTH}{CIM}"), "abc")).await;
    assert_eq!(ok.status, 200, "same connection still serves");
    server.shutdown().await;
}

#[tokio::test]
async fn methods_paths_and_outcomes() {
    let rec = Recorder::new();
    let server = start(rec.clone(), false).await;
    let mut c = connect(server.http_addr().unwrap()).await;
    for method in ["GET", "PUT", "DELETE", "OPTIONS"] {
        let req = format!("{method} /cimom HTTP/1.1\r\nHost: x\r\n{AUTH}Content-Length: 0\r\n\r\n");
        assert_eq!(exchange(&mut c, &req).await.status, 501, "{method}");
    }
    let r = exchange(&mut c, &post(AUTH, "x").replacen("/cimom", "/other", 1)).await;
    assert_eq!(r.status, 404);
    let r = exchange(&mut c, &post(&format!("{AUTH}{CIM}"), "bad")).await;
    assert_eq!(
        (r.status, r.header("cimerror")),
        (400, Some("request-not-well-formed"))
    );
    assert_eq!(r.header("cimoperation"), None);
    let r = exchange(&mut c, &post(&format!("{AUTH}{CIM}"), "nope")).await;
    assert_eq!(
        (r.status, r.header("cimerror")),
        (501, Some("unsupported-protocol-version"))
    );
    assert_eq!(rec.calls.load(Ordering::SeqCst), 2);
    server.shutdown().await;
}

#[tokio::test]
async fn mpost_uses_prefixed_headers() {
    let rec = Recorder::new();
    let server = start(rec.clone(), false).await;
    let mut c = connect(server.http_addr().unwrap()).await;
    let man = "Man: http://www.dmtf.org/cim/mapping/http/v1.0 ; ns=73\r\n";
    let hdrs = "73-CIMOperation: MethodCall\r\n73-CIMMethod: EnumerateInstances\r\nCIMMethod: GetClass\r\n";
    let req = post(&format!("{AUTH}{man}{hdrs}"), "abcd").replacen("POST", "M-POST", 1);
    let r = exchange(&mut c, &req).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("73-cimoperation"), Some("MethodResponse"));
    assert_eq!(
        r.header("opt"),
        Some("http://www.dmtf.org/cim/mapping/http/v1.0 ; ns=73")
    );
    assert_eq!(r.header("ext"), Some(""));
    let want = "Some(\"MethodCall\")|Some(\"EnumerateInstances\")|None|None|4";
    assert_eq!(String::from_utf8_lossy(&r.body), want);
    let bad = exchange(
        &mut c,
        &post(&format!("{AUTH}{hdrs}"), "a").replacen("POST", "M-POST", 1),
    )
    .await;
    assert_eq!(bad.status, 510);
    let r = exchange(&mut c, &req.replace("abcd", "bxyz")).await;
    assert_eq!(
        (r.status, r.header("73-cimerror")),
        (400, Some("request-not-well-formed"))
    );
    server.shutdown().await;
}

#[tokio::test]
async fn oversized_bodies_get_413_without_being_read() {
    let rec = Recorder::new();
    let server = start(rec.clone(), false).await;
    let addr = server.http_addr().unwrap();
    // Declared too large: answered on the headers, before a single body byte is sent.
    let mut c = connect(addr).await;
    let head =
        format!("POST /cimom HTTP/1.1\r\nHost: x\r\n{AUTH}{CIM}Content-Length: 104857600\r\n\r\n");
    let r = exchange(&mut c, &head).await;
    assert_eq!(
        (r.status, r.header("cimerror")),
        (413, Some("request-not-valid"))
    );
    assert_eq!(r.header("connection"), Some("close"));
    // Chunked and too large: refused once the limit is passed.
    let mut c = connect(addr).await;
    let head =
        format!("POST /cimom HTTP/1.1\r\nHost: x\r\n{AUTH}{CIM}Transfer-Encoding: chunked\r\n\r\n");
    c.get_mut().write_all(head.as_bytes()).await.unwrap();
    let chunk = format!("{:x}\r\n{}\r\n", 16 * 1024, "a".repeat(16 * 1024));
    let mut sent = 0usize;
    let writer = async {
        // Stops at the first write error: the server closes once it has answered.
        while sent < 100 * 1024 * 1024 {
            if c.get_mut().write_all(chunk.as_bytes()).await.is_err() {
                break;
            }
            sent += chunk.len();
            if sent > 1024 * 1024 {
                break;
            }
        }
    };
    writer.await;
    let r = read_reply(&mut c).await;
    assert_eq!(r.status, 413);
    // Expect: 100-continue with a too-large declared size: no 100, straight 413.
    let mut c = connect(addr).await;
    let head = format!("POST /cimom HTTP/1.1\r\nHost: x\r\n{AUTH}{CIM}Expect: 100-continue\r\nContent-Length: 104857600\r\n\r\n");
    assert_eq!(exchange(&mut c, &head).await.status, 413);
    assert_eq!(rec.calls.load(Ordering::SeqCst), 0);
    let mut c = connect(addr).await;
    assert_eq!(
        exchange(&mut c, &post(AUTH, "fine")).await.status,
        200,
        "still serving"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn expect_continue_is_honoured() {
    let rec = Recorder::new();
    let server = start(rec.clone(), false).await;
    let mut c = connect(server.http_addr().unwrap()).await;
    let head = format!("POST /cimom HTTP/1.1\r\nHost: x\r\n{AUTH}{CIM}Expect: 100-continue\r\nContent-Length: 5\r\n\r\n");
    c.get_mut().write_all(head.as_bytes()).await.unwrap();
    let mut line = String::new();
    c.read_line(&mut line).await.unwrap();
    assert_eq!(line, "HTTP/1.1 100 Continue\r\n");
    line.clear();
    c.read_line(&mut line).await.unwrap();
    assert_eq!(line, "\r\n");
    c.get_mut().write_all(b"hello").await.unwrap();
    let r = read_reply(&mut c).await;
    assert_eq!(r.status, 200);
    assert!(String::from_utf8_lossy(&r.body).ends_with("|5"));
    server.shutdown().await;
}

#[tokio::test]
async fn shutdown_finishes_requests_in_flight() {
    let rec = Recorder::new();
    let (gate_tx, gate_rx) = std::sync::mpsc::channel();
    let (entered_tx, entered_rx) = tokio::sync::oneshot::channel();
    *rec.gate.lock() = Some(gate_rx);
    *rec.entered.lock() = Some(entered_tx);
    let server = start(rec.clone(), false).await;
    let addr = server.http_addr().unwrap();
    let mut c = connect(addr).await;
    c.get_mut()
        .write_all(post(AUTH, "wait").as_bytes())
        .await
        .unwrap();
    entered_rx.await.unwrap();
    let shutdown = tokio::spawn(server.shutdown());
    // The listener closes at once: a new connection is refused.
    let refused = loop {
        match TcpStream::connect(addr).await {
            Err(_) => break true,
            Ok(s) => {
                let mut s = BufReader::new(s);
                let mut buf = Vec::new();
                // Accepted just before the close: the server ends it without serving a request.
                s.get_mut().write_all(post(AUTH, "x").as_bytes()).await.ok();
                if s.read_to_end(&mut buf)
                    .await
                    .map_or(true, |_| buf.is_empty())
                {
                    continue;
                }
                break false;
            }
        }
    };
    assert!(refused);
    assert!(!shutdown.is_finished());
    gate_tx.send(()).unwrap();
    let r = read_reply(&mut c).await;
    assert_eq!((r.status, r.body.as_slice()), (200, &b"waited"[..]));
    assert_eq!(
        r.header("connection"),
        Some("close"),
        "graceful: no further requests"
    );
    shutdown.await.unwrap();
}

#[tokio::test]
async fn https_with_the_given_identity() {
    let rec = Recorder::new();
    let server = start(rec.clone(), true).await;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(test_identity().1.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    for name in ["localhost", "127.0.0.1"] {
        let tcp = TcpStream::connect(server.https_addr().unwrap())
            .await
            .unwrap();
        let server_name = rustls::pki_types::ServerName::try_from(name)
            .unwrap()
            .to_owned();
        let tls = connector.connect(server_name, tcp).await.unwrap();
        let mut c = BufReader::new(tls);
        assert_eq!(exchange(&mut c, &post(AUTH, "tls")).await.status, 200);
        assert_eq!(exchange(&mut c, &post("", "tls")).await.status, 401);
    }
    // Plain HTTP on the HTTPS port is not served.
    let mut c = connect(server.https_addr().unwrap()).await;
    c.get_mut()
        .write_all(post(AUTH, "x").as_bytes())
        .await
        .unwrap();
    let mut buf = Vec::new();
    let _ = c.read_to_end(&mut buf).await;
    assert!(!buf.starts_with(b"HTTP/1.1 200"));
    server.shutdown().await;
}

#[tokio::test]
async fn idle_and_stalled_connections_are_closed() {
    let rec = Recorder::new();
    let server = start_tuned(rec.clone(), false, |cfg| {
        cfg.header_read_timeout = Duration::from_millis(200);
        cfg.body_read_timeout = Duration::from_millis(200);
    })
    .await;
    let addr = server.http_addr().unwrap();
    // Idle after a request (keep-alive) and idle from the start.
    let mut used = connect(addr).await;
    assert_eq!(exchange(&mut used, &post(AUTH, "x")).await.status, 200);
    assert!(closed_within(&mut used, Duration::from_secs(10)).await);
    let mut idle = connect(addr).await;
    assert!(closed_within(&mut idle, Duration::from_secs(10)).await);
    // Headers that never end.
    let mut slow = connect(addr).await;
    slow.get_mut()
        .write_all(b"POST /cimom HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    assert!(closed_within(&mut slow, Duration::from_secs(10)).await);
    // A body that never comes: 408 and close.
    let mut stalled = connect(addr).await;
    let head = format!("POST /cimom HTTP/1.1\r\nHost: x\r\n{AUTH}Content-Length: 10\r\n\r\nabc");
    let r = exchange(&mut stalled, &head).await;
    assert_eq!((r.status, r.header("connection")), (408, Some("close")));
    assert_eq!(rec.calls.load(Ordering::SeqCst), 1);
    server.shutdown().await;
}

#[tokio::test]
async fn connection_limit_holds_back_new_connections() {
    let rec = Recorder::new();
    let server = start_tuned(rec.clone(), false, |cfg| cfg.connections_max = 1).await;
    let addr = server.http_addr().unwrap();
    let mut first = connect(addr).await;
    assert_eq!(exchange(&mut first, &post(AUTH, "1")).await.status, 200);
    // The kernel completes the second handshake, but the server does not take the connection
    // while the first one is open.
    let mut second = connect(addr).await;
    second
        .get_mut()
        .write_all(post(AUTH, "2").as_bytes())
        .await
        .unwrap();
    let early = tokio::time::timeout(Duration::from_millis(300), read_reply(&mut second)).await;
    assert!(early.is_err(), "served past the connection limit");
    drop(first);
    assert_eq!(read_reply(&mut second).await.status, 200);
    server.shutdown().await;
}

#[tokio::test]
async fn shutdown_closes_idle_connections_at_once() {
    let rec = Recorder::new();
    let server = start(rec.clone(), true).await;
    let mut idle = connect(server.http_addr().unwrap()).await;
    assert_eq!(exchange(&mut idle, &post(AUTH, "x")).await.status, 200);
    // The grace time is 30 s; an idle connection must not hold the shutdown that long.
    tokio::time::timeout(Duration::from_secs(10), server.shutdown())
        .await
        .unwrap();
    assert!(closed_within(&mut idle, Duration::from_secs(1)).await);
}

#[tokio::test]
async fn dropping_the_handle_stops_the_server() {
    let rec = Recorder::new();
    let server = start(rec.clone(), false).await;
    let addr = server.http_addr().unwrap();
    let mut open = connect(addr).await;
    assert_eq!(exchange(&mut open, &post(AUTH, "x")).await.status, 200);
    drop(server);
    assert!(closed_within(&mut open, Duration::from_secs(10)).await);
    let refused = tokio::time::timeout(Duration::from_secs(10), async {
        while TcpStream::connect(addr).await.is_ok() {
            tokio::task::yield_now().await;
        }
    });
    assert!(
        refused.await.is_ok(),
        "still accepting after the handle was dropped"
    );
}

/// A provider of `total` instances of one paged class whose pages from position `fail_from` on
/// fail, as a backend failing midway would.
struct Pages {
    total: usize,
    fail_from: usize,
}

const PAGED: &str = "Cairn_StorageVolume";

impl cairn_cim::Provider for Pages {
    fn namespaces(&self) -> Vec<String> {
        vec!["root/cairn".to_owned()]
    }
    fn class_names(&self, _ns: &str) -> Vec<String> {
        vec![PAGED.to_owned()]
    }
    fn enumerate_instances(
        &self,
        _ns: &str,
        _class: &str,
    ) -> Result<Vec<cairn_cim::Instance>, cairn_cim::CimError> {
        Ok((0..self.total).map(volume).collect())
    }
    fn enumerate_page(
        &self,
        _ns: &str,
        _class: &str,
        cursor: Option<&str>,
        max: usize,
    ) -> Result<Option<cairn_cim::Page>, cairn_cim::CimError> {
        let from: usize = cursor.map_or(0, |c| c.parse().expect("own cursor"));
        if from >= self.fail_from {
            return Err(cairn_cim::CimError::failed("Pool \"p\" failed"));
        }
        let to = (from + max).min(self.total);
        Ok(Some(cairn_cim::Page {
            instances: (from..to).map(volume).collect(),
            next: (to < self.total).then(|| to.to_string()),
        }))
    }
    fn invoke_method(
        &self,
        call: &cairn_cim::MethodCall<'_>,
    ) -> Result<cairn_cim::MethodResult, cairn_cim::CimError> {
        Err(cairn_cim::CimError::not_supported(call.method))
    }
}

fn volume(i: usize) -> cairn_cim::Instance {
    let id = format!("v{i:05}");
    let mut inst =
        cairn_cim::Instance::new(PAGED).with("DeviceID", cairn_cim::Value::string(id.clone()));
    inst.path = Some(cairn_cim::InstancePath::new(PAGED).with_key("DeviceID", id));
    inst
}

const ENUMERATE: &str = "<?xml version=\"1.0\"?><CIM CIMVERSION=\"2.0\" DTDVERSION=\"2.0\">\
    <MESSAGE ID=\"7\" PROTOCOLVERSION=\"1.0\"><SIMPLEREQ><IMETHODCALL NAME=\"EnumerateInstances\">\
    <LOCALNAMESPACEPATH><NAMESPACE NAME=\"root\"/><NAMESPACE NAME=\"cairn\"/></LOCALNAMESPACEPATH>\
    <IPARAMVALUE NAME=\"ClassName\"><CLASSNAME NAME=\"CIM_StorageVolume\"/></IPARAMVALUE>\
    </IMETHODCALL></SIMPLEREQ></MESSAGE></CIM>";

const ENUMERATE_HEADERS: &str =
    "CIMOperation: MethodCall\r\nCIMMethod: EnumerateInstances\r\nCIMObject: root%2Fcairn\r\n";

/// A chunked answer as read: its body, its trailer fields, and whether it ended with the last
/// chunk (`false`: the connection was broken off before it).
struct Chunked {
    reply: Reply,
    trailers: Vec<(String, String)>,
    complete: bool,
}

async fn read_chunked<R: AsyncRead + Unpin>(r: &mut BufReader<R>) -> Chunked {
    let reply = read_reply(r).await;
    assert_eq!(reply.header("transfer-encoding"), Some("chunked"));
    let mut out = Chunked {
        reply,
        trailers: Vec::new(),
        complete: false,
    };
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line).await.unwrap_or(0) == 0 {
            return out;
        }
        let size = usize::from_str_radix(line.trim(), 16).expect("chunk size");
        if size == 0 {
            break;
        }
        let mut chunk = vec![0; size + 2];
        if r.read_exact(&mut chunk).await.is_err() {
            return out;
        }
        out.reply.body.extend_from_slice(&chunk[..size]);
    }
    loop {
        line.clear();
        r.read_line(&mut line).await.unwrap();
        let l = line.trim_end();
        if l.is_empty() {
            out.complete = true;
            return out;
        }
        let (n, v) = l.split_once(':').unwrap();
        out.trailers
            .push((n.trim().to_owned(), v.trim().to_owned()));
    }
}

async fn enumerate_chunked(pages: Pages, te: &str) -> Chunked {
    let cim = Arc::new(cairn_cim::CimServer::new(Arc::new(pages)));
    let server = start_tuned(cim, false, |_| {}).await;
    let mut c = connect(server.http_addr().unwrap()).await;
    let req = post(&format!("{AUTH}{ENUMERATE_HEADERS}{te}"), ENUMERATE);
    c.get_mut().write_all(req.as_bytes()).await.unwrap();
    let answer = read_chunked(&mut c).await;
    server.shutdown().await;
    answer
}

#[tokio::test]
async fn a_long_enumeration_is_sent_chunked_batch_by_batch_and_whole() {
    let total = 2 * cairn_cim::limits::STREAM_BATCH_OBJECT_COUNT + 7;
    for te in ["", "TE: trailers\r\n"] {
        let pages = Pages {
            total,
            fail_from: usize::MAX,
        };
        let answer = enumerate_chunked(pages, te).await;
        assert!(answer.complete, "{te:?}");
        assert!(answer.trailers.is_empty());
        assert_eq!(answer.reply.status, 200);
        let body = String::from_utf8(answer.reply.body).unwrap();
        assert_eq!(body.matches("<VALUE.NAMEDINSTANCE>").count(), total);
        assert!(body.ends_with("</IRETURNVALUE></IMETHODRESPONSE></SIMPLERSP></MESSAGE></CIM>\n"));
        // The parts are exactly the answer computed whole.
        let whole = cairn_cim::CimServer::new(Arc::new(Pages {
            total,
            fail_from: usize::MAX,
        }));
        let request = cairn_cim::xml::decode::decode_request(ENUMERATE.as_bytes()).unwrap();
        assert_eq!(body.as_bytes(), whole.respond(&request).as_slice());
    }
}

#[tokio::test]
async fn an_error_midway_ends_the_answer_in_the_trailer() {
    let batch = cairn_cim::limits::STREAM_BATCH_OBJECT_COUNT;
    let pages = Pages {
        total: 3 * batch,
        fail_from: 2 * batch,
    };
    let answer = enumerate_chunked(pages, "TE: trailers\r\n").await;
    assert_eq!(
        answer.reply.header("trailer"),
        Some("CIMStatusCode, CIMStatusCodeDescription, CIMError")
    );
    assert!(answer.complete);
    let body = String::from_utf8(answer.reply.body).unwrap();
    assert_eq!(body.matches("<VALUE.NAMEDINSTANCE>").count(), 2 * batch);
    assert!(!body.contains("</CIM>"), "the answer must not look whole");
    let field = |name: &str| {
        answer
            .trailers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    assert_eq!(field("CIMStatusCode").as_deref(), Some("1"));
    assert_eq!(
        field("CIMStatusCodeDescription").as_deref(),
        Some("Pool \"p\" failed")
    );
    assert!(field("CIMError").is_some_and(|e| e.contains("CIM_Error")));
}

#[tokio::test]
async fn an_error_midway_breaks_off_the_answer_to_a_client_without_trailers() {
    let batch = cairn_cim::limits::STREAM_BATCH_OBJECT_COUNT;
    let pages = Pages {
        total: 3 * batch,
        fail_from: batch,
    };
    let answer = enumerate_chunked(pages, "").await;
    assert_eq!(answer.reply.header("trailer"), None);
    assert!(
        !answer.complete,
        "the connection ends before the last chunk"
    );
    let body = String::from_utf8(answer.reply.body).unwrap();
    assert!(!body.contains("</CIM>"));
}
