//! Listeners, connections and graceful shutdown of the SMI-S HTTP and HTTPS server.
//!
//! One accept loop per listener (HTTP, HTTPS). Each accepted connection is served by hyper's
//! HTTP/1.1 server (keep-alive on, bounded header buffer and count, header read timeout) on its
//! own task, after a bounded TLS handshake for HTTPS.
//!
//! Invariants: at most `connections_max` connections are open at once (one semaphore across both
//! listeners; the accept loops wait for a permit before accepting); every connection task is owned
//! by its listener's `JoinSet`, so none outlives the server; on shutdown the listeners close at once,
//! each connection finishes the request in flight and closes (hyper's graceful shutdown), and after
//! `shutdown_grace` whatever is left is dropped.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

use crate::error::{Error, ErrorKind, Result};
use crate::http::credentials::Credentials;
use crate::http::service::{serve, ServiceState};
use crate::http::CimHandler;
use crate::limits;

/// Default HTTP port of a CIM server (DSP0200).
pub const HTTP_PORT_DEFAULT: u16 = 5988;
/// Default HTTPS port of a CIM server (DSP0200).
pub const HTTPS_PORT_DEFAULT: u16 = 5989;

/// Configuration of the SMI-S HTTP/HTTPS server.
#[derive(Debug, Clone)]
pub struct SmisServerConfig {
    /// Plain HTTP listener (port 0 picks a free port); `None` for no HTTP.
    pub http_addr: Option<SocketAddr>,
    /// HTTPS listener (port 0 picks a free port); `None` for no HTTPS.
    pub https_addr: Option<SocketAddr>,
    /// The TLS identity HTTPS serves (the daemon's); required when `https_addr` is set.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// The one user and password clients must present.
    pub credentials: Credentials,
    /// Largest request body accepted; larger ones get 413.
    pub body_bytes_max: usize,
    /// Largest number of connections open at once, HTTP and HTTPS together.
    pub connections_max: usize,
    /// Time to receive a request's headers (also the idle time allowed between requests).
    pub header_read_timeout: Duration,
    /// Time to receive a request's body.
    pub body_read_timeout: Duration,
    /// Time to complete a TLS handshake.
    pub tls_handshake_timeout: Duration,
    /// Time a shutdown waits for requests in flight.
    pub shutdown_grace: Duration,
}

impl SmisServerConfig {
    /// The defaults of BRIEF §8: HTTP on 127.0.0.1:5988, and HTTPS on 127.0.0.1:5989 when a TLS
    /// identity is given; limits from [`crate::limits`].
    pub fn new(
        credentials: Credentials,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> SmisServerConfig {
        let localhost = |port| Some(SocketAddr::from((Ipv4Addr::LOCALHOST, port)));
        SmisServerConfig {
            http_addr: localhost(HTTP_PORT_DEFAULT),
            https_addr: tls.as_ref().and(localhost(HTTPS_PORT_DEFAULT)),
            tls,
            credentials,
            body_bytes_max: limits::HTTP_BODY_BYTES_MAX,
            connections_max: limits::HTTP_CONNECTIONS_MAX,
            header_read_timeout: limits::HTTP_HEADER_READ_TIMEOUT,
            body_read_timeout: limits::HTTP_BODY_READ_TIMEOUT,
            tls_handshake_timeout: limits::TLS_HANDSHAKE_TIMEOUT,
            shutdown_grace: limits::HTTP_SHUTDOWN_GRACE,
        }
    }
}

/// A running server: its bound addresses and the way to stop it. Dropping the handle without
/// calling [`SmisServerHandle::shutdown`] stops the server at once: the listeners close and open
/// connections are dropped, requests in flight included.
pub struct SmisServerHandle {
    http_addr: Option<SocketAddr>,
    https_addr: Option<SocketAddr>,
    shutdown: watch::Sender<bool>,
    listeners: JoinSet<()>,
}

impl std::fmt::Debug for SmisServerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmisServerHandle")
            .field("http_addr", &self.http_addr)
            .field("https_addr", &self.https_addr)
            .finish_non_exhaustive()
    }
}

impl SmisServerHandle {
    /// The bound HTTP address, if HTTP is served.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_addr
    }

    /// The bound HTTPS address, if HTTPS is served.
    pub fn https_addr(&self) -> Option<SocketAddr> {
        self.https_addr
    }

    /// Stops accepting, lets requests in flight finish (up to the configured grace time), and
    /// returns once every connection is closed.
    pub async fn shutdown(mut self) {
        // An error means no receiver is left: every loop and connection already ended.
        let _ = self.shutdown.send(true);
        while self.listeners.join_next().await.is_some() {}
    }
}

/// Per-connection settings, copied from the configuration.
#[derive(Clone, Copy)]
struct ConnLimits {
    header_read_timeout: Duration,
    tls_handshake_timeout: Duration,
    shutdown_grace: Duration,
}

/// Binds the configured listeners and starts serving `cim`. Must run inside a tokio runtime.
pub async fn start_with<H: CimHandler + ?Sized>(
    cfg: SmisServerConfig,
    cim: Arc<H>,
) -> Result<SmisServerHandle> {
    if cfg.http_addr.is_none() && cfg.https_addr.is_none() {
        return Err(Error::new(
            ErrorKind::Config,
            "Neither HTTP nor HTTPS is configured",
        ));
    }
    if cfg.connections_max == 0 || cfg.body_bytes_max == 0 {
        return Err(Error::new(
            ErrorKind::Config,
            "Connection and body limits must be positive",
        ));
    }
    let tls = match cfg.https_addr {
        Some(addr) => Some(https_acceptor(addr, cfg.tls.as_deref())?),
        None => None,
    };
    let http = bind(cfg.http_addr).await?;
    let https = bind(cfg.https_addr).await?;
    let state = Arc::new(ServiceState {
        credentials: cfg.credentials.clone(),
        body_bytes_max: cfg.body_bytes_max,
        body_read_timeout: cfg.body_read_timeout,
        cim,
    });
    let conn_limits = ConnLimits {
        header_read_timeout: cfg.header_read_timeout,
        tls_handshake_timeout: cfg.tls_handshake_timeout,
        shutdown_grace: cfg.shutdown_grace,
    };
    let permits = Arc::new(Semaphore::new(cfg.connections_max));
    let (shutdown, _) = watch::channel(false);
    let mut listeners = JoinSet::new();
    let mut addrs = (None, None);
    for (listener, tls) in [(http, None), (https, tls)] {
        let Some((listener, addr)) = listener else {
            continue;
        };
        if tls.is_some() {
            addrs.1 = Some(addr)
        } else {
            addrs.0 = Some(addr)
        }
        tracing::info!(%addr, tls = tls.is_some(), "SMI-S listening");
        let accept = AcceptLoop {
            listener,
            tls,
            state: Arc::clone(&state),
            permits: Arc::clone(&permits),
            limits: conn_limits,
            shutdown: shutdown.subscribe(),
        };
        listeners.spawn(accept.run());
    }
    Ok(SmisServerHandle {
        http_addr: addrs.0,
        https_addr: addrs.1,
        shutdown,
        listeners,
    })
}

/// The acceptor of the HTTPS listener: the daemon's TLS identity, with ALPN set to HTTP/1.1.
fn https_acceptor(
    addr: SocketAddr,
    tls: Option<&rustls::ServerConfig>,
) -> Result<tokio_rustls::TlsAcceptor> {
    let Some(tls) = tls else {
        return Err(Error::new(
            ErrorKind::Config,
            format!("HTTPS on {addr} needs a TLS configuration"),
        ));
    };
    let mut server_config = tls.clone();
    server_config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(server_config)))
}

async fn bind(addr: Option<SocketAddr>) -> Result<Option<(TcpListener, SocketAddr)>> {
    let Some(addr) = addr else { return Ok(None) };
    let bind_err = |e| Error::with_source(ErrorKind::Bind, format!("Cannot listen on {addr}"), e);
    let listener = TcpListener::bind(addr).await.map_err(bind_err)?;
    let local = listener.local_addr().map_err(bind_err)?;
    Ok(Some((listener, local)))
}

struct AcceptLoop<H: ?Sized> {
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    state: Arc<ServiceState<H>>,
    permits: Arc<Semaphore>,
    limits: ConnLimits,
    shutdown: watch::Receiver<bool>,
}

impl<H: CimHandler + ?Sized> AcceptLoop<H> {
    async fn run(self) {
        let AcceptLoop {
            listener,
            tls,
            state,
            permits,
            limits,
            mut shutdown,
        } = self;
        let mut conns = JoinSet::new();
        loop {
            let next = async {
                let permit = Arc::clone(&permits).acquire_owned().await;
                (permit, listener.accept().await)
            };
            tokio::select! {
                () = stopped(&mut shutdown) => break,
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
                (permit, accepted) = next => match (permit, accepted) {
                    (Ok(permit), Ok((stream, peer))) => {
                        let conn = Connection {
                            tls: tls.clone(),
                            state: Arc::clone(&state),
                            limits,
                            shutdown: shutdown.clone(),
                        };
                        conns.spawn(async move {
                            conn.run(stream, peer).await;
                            drop(permit);
                        });
                    }
                    // The semaphore is never closed; the arm only exists for completeness.
                    (Err(_), _) => break,
                    (Ok(_), Err(e)) => accept_failed(e).await,
                },
            }
        }
        drop(listener);
        let drain = async { while conns.join_next().await.is_some() {} };
        if tokio::time::timeout(limits.shutdown_grace, drain)
            .await
            .is_err()
        {
            tracing::warn!(
                left = conns.len(),
                "dropping connections still busy after the grace time"
            );
        }
    }
}

/// An accept error is about one connection (reset before accept) or a resource limit (EMFILE);
/// pausing briefly lets other connections close instead of spinning on the error.
async fn accept_failed(e: std::io::Error) {
    tracing::warn!(error = %e, "accept failed");
    tokio::time::sleep(Duration::from_millis(50)).await;
}

struct Connection<H: ?Sized> {
    tls: Option<tokio_rustls::TlsAcceptor>,
    state: Arc<ServiceState<H>>,
    limits: ConnLimits,
    shutdown: watch::Receiver<bool>,
}

impl<H: CimHandler + ?Sized> Connection<H> {
    async fn run(self, stream: tokio::net::TcpStream, peer: SocketAddr) {
        let _ = stream.set_nodelay(true);
        let Some(acceptor) = self.tls.clone() else {
            return self.serve(stream).await;
        };
        match tokio::time::timeout(self.limits.tls_handshake_timeout, acceptor.accept(stream)).await
        {
            Ok(Ok(tls_stream)) => self.serve(tls_stream).await,
            Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
            Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
        }
    }

    async fn serve<S>(mut self, stream: S)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let state = Arc::clone(&self.state);
        let service = service_fn(move |req| serve(Arc::clone(&state), req));
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .keep_alive(true)
            .header_read_timeout(self.limits.header_read_timeout)
            .max_buf_size(limits::HTTP_HEADER_BUFFER_BYTES_MAX)
            .max_headers(limits::HTTP_HEADER_COUNT_MAX);
        let conn = builder.serve_connection(TokioIo::new(stream), service);
        tokio::pin!(conn);
        tokio::select! {
            res = conn.as_mut() => log_end(res),
            () = stopped(&mut self.shutdown) => {
                conn.as_mut().graceful_shutdown();
                log_end(conn.await);
            }
        }
    }
}

/// Resolves once a shutdown is requested (or the handle is gone).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is dropped here, so callers hold nothing across awaits.
    let _ = shutdown.wait_for(|stop| *stop).await.map(|_| ());
}

fn log_end(res: std::result::Result<(), hyper::Error>) {
    if let Err(e) = res {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}
