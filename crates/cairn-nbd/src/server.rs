//! The NBD server on tokio: listener, connection limit, TLS policy and graceful shutdown.
//!
//! Invariants:
//! - A non-loopback address is served only with TLS, unless the configuration explicitly allows
//!   plain NBD there; with TLS configured, every connection must negotiate NBD_OPT_STARTTLS.
//! - At most [`limits::CONNECTIONS_MAX`] connections are served at once; request and reply bytes in
//!   flight are bounded per connection and across the whole server (one shared budget).
//! - [`NbdServerHandle::shutdown`] stops accepting, lets every connection finish the requests it has
//!   already read, and returns once all connection tasks have ended.

use std::net::SocketAddr;
use std::sync::Arc;

use cairn_export::Exports;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::{JoinHandle, JoinSet};

use crate::connection;
use crate::error::{Error, ErrorKind, Result};
use crate::limits;

/// Where and how to serve NBD.
#[derive(Clone)]
pub struct NbdServerConfig {
    /// Address to listen on (port 0 picks a free port; see [`NbdServerHandle::local_addr`]).
    pub addr: SocketAddr,
    /// TLS configuration; when set, every client must use NBD_OPT_STARTTLS.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Serve plain NBD on a non-loopback address (no authentication, no privacy).
    pub allow_insecure_non_loopback: bool,
}

impl Default for NbdServerConfig {
    fn default() -> Self {
        NbdServerConfig {
            addr: SocketAddr::from(([127, 0, 0, 1], 10809)),
            tls: None,
            allow_insecure_non_loopback: false,
        }
    }
}

impl std::fmt::Debug for NbdServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NbdServerConfig")
            .field("addr", &self.addr)
            .field("tls", &self.tls.is_some())
            .field(
                "allow_insecure_non_loopback",
                &self.allow_insecure_non_loopback,
            )
            .finish()
    }
}

/// What every connection of one server shares.
pub(crate) struct Shared {
    pub exports: Arc<dyn Exports>,
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Request and reply bytes in flight across all connections.
    pub daemon_bytes: Arc<Semaphore>,
}

/// A running server.
#[derive(Debug)]
pub struct NbdServerHandle {
    local_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl NbdServerHandle {
    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting, finishes the requests already received and closes every connection.
    pub async fn shutdown(self) -> Result<()> {
        // Receivers also treat a dropped sender as shutdown, so the send result does not matter.
        let _ = self.shutdown.send(true);
        self.task
            .await
            .map_err(|e| Error::new(ErrorKind::Server, "NBD server task failed").with_source(e))
    }
}

/// Serves every export of `exports` (the engine's `Storage` is one implementation) as an NBD
/// export of the same name.
pub async fn start(cfg: NbdServerConfig, exports: Arc<dyn Exports>) -> Result<NbdServerHandle> {
    if !cfg.addr.ip().is_loopback() && cfg.tls.is_none() && !cfg.allow_insecure_non_loopback {
        return Err(Error::new(
            ErrorKind::InsecureBind,
            format!(
                "Refusing plain NBD on non-loopback address {} without TLS",
                cfg.addr
            ),
        ));
    }
    let listener = TcpListener::bind(cfg.addr).await.map_err(|e| {
        Error::new(ErrorKind::Bind, format!("Cannot listen on {}", cfg.addr)).with_source(e)
    })?;
    let local_addr = listener
        .local_addr()
        .map_err(|e| Error::new(ErrorKind::Bind, "Cannot read the bound address").with_source(e))?;
    let shared = Arc::new(Shared {
        exports,
        tls: cfg.tls,
        daemon_bytes: Arc::new(Semaphore::new(limits::DAEMON_IN_FLIGHT_BYTES_MAX as usize)),
    });
    let (shutdown, shutdown_rx) = watch::channel(false);
    let task = tokio::spawn(accept_loop(listener, shared, shutdown_rx));
    tracing::info!(%local_addr, "NBD server listening");
    Ok(NbdServerHandle {
        local_addr,
        shutdown,
        task,
    })
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(limits::CONNECTIONS_MAX));
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => {
                let (socket, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of descriptors or similar: back off briefly instead of spinning.
                        tracing::warn!(error = %e, "NBD accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Ok(slot) = slots.clone().try_acquire_owned() else {
                    tracing::warn!(%peer, "NBD connection limit reached; closing");
                    continue;
                };
                // Latency matters more than packet count for request/reply traffic.
                let _ = socket.set_nodelay(true);
                let shared = shared.clone();
                let shutdown = shutdown.clone();
                connections.spawn(async move {
                    connection::serve(socket, peer, shared, shutdown).await;
                    drop(slot);
                });
            }
        }
    }
    while connections.join_next().await.is_some() {}
    tracing::info!("NBD server stopped");
}
