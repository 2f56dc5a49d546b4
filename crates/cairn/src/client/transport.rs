//! The CLI's HTTP(S) client for the daemon's SMI-S listener: one POST /cimom per call on its own
//! connection (hyper's HTTP/1 client), Basic authentication on every request, and TLS that trusts
//! exactly one certificate — the daemon's own (pinned), never a CA bundle.
//!
//! Invariants: a response body is read only up to `RESPONSE_BODY_BYTES_MAX`; every connect and
//! request has a deadline; plain HTTP is used only to a loopback address, so a password never
//! leaves the machine in the clear.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use base64::Engine as _;
use bytes::Bytes;
use cairn_cim::client::EncodedRequest;
use cairn_cim::limits::RESPONSE_BODY_BYTES_MAX;
use http_body_util::{BodyExt, Full, Limited};
use hyper::StatusCode;
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;

/// How long a TCP connect and TLS handshake may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one request may take unless its caller says otherwise (a job stop waits up to 30 s
/// inside the daemon).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// Where the daemon listens and how to trust it.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// Host name or address as given (TLS server name, `Host` header).
    pub host: String,
    pub addr: SocketAddr,
    /// The daemon's certificate (DER) for HTTPS; `None` for plain HTTP.
    pub pinned_cert: Option<CertificateDer<'static>>,
}

impl Endpoint {
    /// What the CLI prints when it cannot reach the daemon.
    pub fn describe(&self) -> String {
        let scheme = if self.pinned_cert.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.addr)
    }
}

/// User and password for Basic authentication.
#[derive(Clone)]
pub struct Login {
    pub user: String,
    pub password: String,
}

/// A connection factory for one endpoint; blocking calls over a private current-thread runtime.
pub struct Transport {
    endpoint: Endpoint,
    authorization: String,
    tls: Option<tokio_rustls::TlsConnector>,
    runtime: tokio::runtime::Runtime,
}

impl Transport {
    pub fn new(endpoint: Endpoint, login: &Login) -> Result<Transport> {
        if endpoint.pinned_cert.is_none() && !endpoint.addr.ip().is_loopback() {
            bail!(
                "Plain HTTP to {} would send the password in the clear: use https",
                endpoint.addr
            );
        }
        let tls = endpoint.pinned_cert.clone().map(pinned_tls).transpose()?;
        let credentials = format!("{}:{}", login.user, login.password);
        let authorization = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(credentials)
        );
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("Cannot start the async runtime")?;
        Ok(Transport {
            endpoint,
            authorization,
            tls,
            runtime,
        })
    }

    /// `host:port`, an IPv6 address in brackets.
    fn host_header(&self) -> String {
        let host = &self.endpoint.host;
        let port = self.endpoint.addr.port();
        if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        }
    }

    /// Sends one request and returns the response body of a 200 answer within `timeout`.
    pub fn post(&self, req: &EncodedRequest, timeout: Duration) -> Result<Vec<u8>> {
        let work = self.post_async(req);
        self.runtime
            .block_on(async { tokio::time::timeout(timeout, work).await })
            .map_err(|_| {
                anyhow!(
                    "The daemon at {} did not answer {} within {timeout:?}",
                    self.endpoint.describe(),
                    req.cim_method
                )
            })?
    }

    async fn post_async(&self, req: &EncodedRequest) -> Result<Vec<u8>> {
        let connect = TcpStream::connect(self.endpoint.addr);
        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, connect)
            .await
            .map_err(|_| anyhow!("Connecting to {} timed out", self.endpoint.describe()))?
            .with_context(|| {
                format!(
                    "Cannot reach the daemon at {} (is `cairn serve` running?)",
                    self.endpoint.describe()
                )
            })?;
        match &self.tls {
            None => self.exchange(TokioIo::new(tcp), req).await,
            Some(tls) => {
                let name = ServerName::try_from(self.endpoint.host.clone())
                    .with_context(|| format!("{} is not a host name", self.endpoint.host))?;
                let stream = tokio::time::timeout(CONNECT_TIMEOUT, tls.connect(name, tcp))
                    .await
                    .map_err(|_| anyhow!("TLS handshake with {} timed out", self.endpoint.addr))?
                    .with_context(|| {
                        format!(
                            "TLS with {} failed (is it the daemon whose certificate is pinned?)",
                            self.endpoint.addr
                        )
                    })?;
                self.exchange(TokioIo::new(stream), req).await
            }
        }
    }

    async fn exchange<S>(&self, io: TokioIo<S>, req: &EncodedRequest) -> Result<Vec<u8>>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
            .await
            .context("HTTP handshake with the daemon failed")?;
        let driver = tokio::spawn(conn);
        let request = hyper::Request::post("/cimom")
            .header(hyper::header::HOST, self.host_header())
            .header(
                hyper::header::CONTENT_TYPE,
                "application/xml; charset=\"utf-8\"",
            )
            .header(hyper::header::AUTHORIZATION, self.authorization.as_str())
            .header("CIMOperation", "MethodCall")
            .header("CIMMethod", req.cim_method.as_str())
            .header("CIMObject", req.cim_object.as_str())
            .body(Full::new(Bytes::from(req.body.clone())))
            .context("Cannot build the HTTP request")?;
        let response = sender
            .send_request(request)
            .await
            .context("The daemon closed the connection")?;
        let status = response.status();
        let cim_error = response
            .headers()
            .get("CIMError")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = Limited::new(response.into_body(), RESPONSE_BODY_BYTES_MAX)
            .collect()
            .await
            .map_err(|e| anyhow!("Reading the daemon's answer failed: {e}"))?
            .to_bytes();
        driver.abort();
        check_status(status, cim_error.as_deref())?;
        Ok(body.to_vec())
    }
}

fn check_status(status: StatusCode, cim_error: Option<&str>) -> Result<()> {
    match status {
        StatusCode::OK => Ok(()),
        StatusCode::UNAUTHORIZED => bail!(
            "The daemon refused the user name or password (HTTP 401): check --user and \
             CAIRN_SMIS_PASSWORD"
        ),
        other => bail!(
            "The daemon answered HTTP {other}{}",
            cim_error
                .map(|e| format!(" (CIMError: {e})"))
                .unwrap_or_default()
        ),
    }
}

/// A rustls client that accepts exactly the certificate `pinned` (the daemon's self-signed one).
fn pinned_tls(pinned: CertificateDer<'static>) -> Result<tokio_rustls::TlsConnector> {
    Ok(cairn_smis::trust::connector(vec![pinned], false)?)
}

/// The first certificate in PEM file `path`.
pub fn read_cert(path: &std::path::Path) -> Result<CertificateDer<'static>> {
    let text = std::fs::read(path).with_context(|| format!("Cannot read {}", path.display()))?;
    let first = rustls_pemfile::certs(&mut text.as_slice())
        .next()
        .ok_or_else(|| anyhow!("{} holds no certificate", path.display()))?
        .with_context(|| format!("{} is not a PEM certificate", path.display()))?;
    Ok(first)
}
