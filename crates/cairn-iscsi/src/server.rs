//! The iSCSI server on tokio: listener, connection limit, the insecure-portal policy, a periodic
//! rescan of the LUN table and graceful shutdown.
//!
//! Invariants:
//! - A portal on a non-loopback address is served only when CHAP is required for every
//!   initiator or the configuration explicitly allows it.
//! - At most [`limits::CONNECTIONS_MAX`] connections are served at once.
//! - [`IscsiServerHandle::shutdown`] stops accepting, lets every connection finish the commands
//!   it accepted, and returns once all connection tasks have ended.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use cairn_export::Exports;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::{JoinHandle, JoinSet};

use crate::connection;
use crate::error::{Error, ErrorKind, Result};
use crate::limits;
use crate::login::{Auth, LoginConfig};
use crate::pr::Reservations;
use crate::target::Target;
use crate::views::{Access, SeedView};
use cairn_export::access::{HostAccess, TargetPort};

/// How often the LUN table is compared with the exports (volumes created or deleted elsewhere).
const RESCAN_INTERVAL: Duration = Duration::from_secs(2);

/// Where and how to serve iSCSI.
#[derive(Clone, Debug)]
pub struct IscsiServerConfig {
    /// Portal address (port 0 picks a free port; see [`IscsiServerHandle::local_addr`]).
    pub addr: SocketAddr,
    /// The target node's IQN (lower case).
    pub target_name: String,
    /// CHAP credentials; with initiator credentials set, every login must pass CHAP.
    pub auth: Auth,
    /// The file that keeps LUN numbers across restarts.
    pub lun_map_path: PathBuf,
    /// The masking views file (missing: the seed views make it, or every initiator sees every
    /// export).
    pub views_path: PathBuf,
    /// The views that make the masking views file when there is none yet.
    pub seed_views: Vec<SeedView>,
    /// The file persistent reservations with APTPL 1 are kept in.
    pub reservations_path: PathBuf,
    /// Serve a non-loopback portal without CHAP.
    pub allow_insecure_non_loopback: bool,
    /// Idle time after which an initiator is pinged with a NOP-In (closed after twice that).
    pub nop_interval: Duration,
}

/// A running server.
#[derive(Debug)]
pub struct IscsiServerHandle {
    local_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
    access: Arc<Access>,
}

impl IscsiServerHandle {
    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The masking views, for management to change.
    pub fn host_access(&self) -> Arc<dyn HostAccess> {
        self.access.clone()
    }

    /// Stops accepting, finishes the commands already received and closes every connection.
    pub async fn shutdown(self) -> Result<()> {
        let _ = self.shutdown.send(true);
        self.task.await.map_err(|e| {
            Error::new(
                ErrorKind::Server,
                format!("iSCSI server task failed: {e}"),
                None,
            )
        })
    }
}

/// Serves `exports` as the LUNs of one target node.
pub async fn start(cfg: IscsiServerConfig, exports: Arc<dyn Exports>) -> Result<IscsiServerHandle> {
    check_portal_policy(&cfg)?;
    let login = LoginConfig {
        target_name: cfg.target_name.clone(),
        auth: cfg.auth.clone(),
    };
    let reservations = load_reservations(&cfg)?;
    let (listener, local_addr) = bind(cfg.addr).await?;
    let port = TargetPort {
        name: crate::node::target_port_name(&cfg.target_name),
        target_name: cfg.target_name.clone(),
        addr: local_addr,
        login: login.offer(),
    };
    let access = Arc::new(open_access(&cfg, port.clone(), exports.clone())?);
    let target = Target::new(
        login,
        exports,
        cfg.lun_map_path.clone(),
        (access.clone(), port.name, reservations),
        cfg.nop_interval,
    )
    .map_err(|e| {
        Error::new(
            ErrorKind::Bind,
            format!("Cannot set up the LUN map {}", cfg.lun_map_path.display()),
            Some(e),
        )
    })?;
    let (shutdown, shutdown_rx) = watch::channel(false);
    let task = tokio::spawn(accept_loop(listener, Arc::new(target), shutdown_rx));
    tracing::info!(%local_addr, target = %cfg.target_name, "iSCSI server listening");
    Ok(IscsiServerHandle {
        local_addr,
        shutdown,
        task,
        access,
    })
}

/// A portal on a non-loopback address needs CHAP unless the configuration allows it without.
fn check_portal_policy(cfg: &IscsiServerConfig) -> Result<()> {
    if cfg.addr.ip().is_loopback() || cfg.auth.chap_required() || cfg.allow_insecure_non_loopback {
        return Ok(());
    }
    Err(Error::new(
        ErrorKind::InsecureBind,
        format!(
            "Refusing an iSCSI portal on non-loopback address {} without CHAP",
            cfg.addr
        ),
        None,
    ))
}

/// The persistent reservations kept with APTPL 1 by an earlier run.
fn load_reservations(cfg: &IscsiServerConfig) -> Result<Reservations> {
    Reservations::load(&cfg.reservations_path).map_err(|e| {
        Error::new(
            ErrorKind::Bind,
            format!(
                "Cannot read the reservations {}",
                cfg.reservations_path.display()
            ),
            Some(e),
        )
    })
}

/// Binds the portal; returns the listener and the address actually bound.
async fn bind(addr: SocketAddr) -> Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| Error::new(ErrorKind::Bind, format!("Cannot listen on {addr}"), Some(e)))?;
    let local_addr = listener
        .local_addr()
        .map_err(|e| Error::new(ErrorKind::Bind, "Cannot read the bound address", Some(e)))?;
    Ok((listener, local_addr))
}

/// The masking views of the one target port (made from the seed views when there are none).
fn open_access(
    cfg: &IscsiServerConfig,
    port: TargetPort,
    exports: Arc<dyn Exports>,
) -> Result<Access> {
    Access::open(cfg.views_path.clone(), &cfg.seed_views, vec![port], exports).map_err(|e| {
        Error::new(
            ErrorKind::Bind,
            format!("Cannot set up the masking views: {e}"),
            None,
        )
    })
}

async fn accept_loop(
    listener: TcpListener,
    target: Arc<Target>,
    mut shutdown: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(limits::CONNECTIONS_MAX));
    let mut connections = JoinSet::new();
    let mut rescan = tokio::time::interval(RESCAN_INTERVAL);
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            _ = rescan.tick() => {
                let target = target.clone();
                // The listing runs on the blocking pool; a failure is retried at the next tick.
                let _ = tokio::task::spawn_blocking(move || target.luns()).await;
            }
            accepted = listener.accept() => {
                let (socket, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "iSCSI accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Ok(slot) = slots.clone().try_acquire_owned() else {
                    tracing::warn!(%peer, "iSCSI connection limit reached; closing");
                    continue;
                };
                let _ = socket.set_nodelay(true);
                let target = target.clone();
                let shutdown = shutdown.clone();
                connections.spawn(async move {
                    connection::serve(socket, peer, target, shutdown).await;
                    drop(slot);
                });
            }
        }
    }
    while connections.join_next().await.is_some() {}
    tracing::info!("iSCSI server stopped");
}
