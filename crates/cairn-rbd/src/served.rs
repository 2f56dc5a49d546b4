//! What `cairn serve` exports from RBD pools: a pool that connects in the background, and the
//! union of several backends' exports.
//!
//! [`BackgroundPool`] connects on its own thread, so a daemon never waits for Ceph to start: while
//! the first attempt runs, a lookup waits for it (at most about [`limits::MOUNT_TIMEOUT_S`]); when
//! it fails the pool is unavailable (its volumes are not found, [`BackgroundPool::status`] says
//! why) and is tried again every [`limits::RECONNECT_INTERVAL_S`] until it connects.
//!
//! [`Combined`] answers for several backends side by side (Cairn's engine and RBD pools): a name
//! is looked up in each in order and the first that has it answers. Names are unique across the
//! backends because they share the daemon's `cairn_export::Registry` (see [`BackgroundPool::start_in`]),
//! so at most one backend has any name.

use std::sync::{Arc, Weak};
use std::time::Duration;

use cairn_export::{Error, ErrorKind, Exports, Registry, Result, Volume, VolumeInfo};
use parking_lot::{Condvar, Mutex};

use crate::cluster::ConnectOptions;
use crate::exports::RbdExports;
use crate::limits;

/// An RBD pool as configured: a Cairn pool name over a RADOS pool of a cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RbdPoolConfig {
    pub name: String,
    pub connect: ConnectOptions,
    pub rados_pool: String,
}

/// Where a [`BackgroundPool`] stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PoolStatus {
    /// The first connection attempt is still running.
    Connecting,
    /// Connected; its volumes are served.
    Available,
    /// The last attempt failed with this message; another follows.
    Unavailable(String),
}

struct Shared {
    status: Mutex<(PoolStatus, Option<Arc<RbdExports>>)>,
    settled: Condvar,
}

/// An RBD pool that connects in the background and then exports its volumes.
pub struct BackgroundPool {
    config: RbdPoolConfig,
    shared: Arc<Shared>,
}

impl BackgroundPool {
    /// Starts connecting, with a registry of its own; returns at once.
    pub fn start(config: RbdPoolConfig) -> Arc<BackgroundPool> {
        BackgroundPool::start_in(config, Registry::new())
    }

    /// Starts connecting, keeping names and leases in the daemon's `registry` under the
    /// configured pool name; returns at once.
    pub fn start_in(config: RbdPoolConfig, registry: Arc<Registry>) -> Arc<BackgroundPool> {
        let shared = Arc::new(Shared {
            status: Mutex::new((PoolStatus::Connecting, None)),
            settled: Condvar::new(),
        });
        let weak = Arc::downgrade(&shared);
        let cfg = config.clone();
        std::thread::Builder::new()
            .name(format!("rbd-connect-{}", config.name))
            .spawn(move || connect_until_available(&cfg, &registry, weak))
            .expect("a thread can be started");
        Arc::new(BackgroundPool { config, shared })
    }

    /// The configured pool.
    pub fn config(&self) -> &RbdPoolConfig {
        &self.config
    }

    /// Where it stands now.
    pub fn status(&self) -> PoolStatus {
        self.shared.status.lock().0.clone()
    }

    /// The connected pool, after waiting for the first attempt; `None` while unavailable.
    fn exports(&self) -> Option<Arc<RbdExports>> {
        let mut status = self.shared.status.lock();
        while status.0 == PoolStatus::Connecting {
            self.shared.settled.wait(&mut status);
        }
        status.1.clone()
    }

    /// The connected pool, or the error a request for one of its volumes gets meanwhile.
    pub fn available(&self) -> Result<Arc<RbdExports>> {
        self.exports().ok_or_else(|| {
            let why = match self.status() {
                PoolStatus::Unavailable(why) => why,
                other => format!("{other:?}"),
            };
            Error::new(
                ErrorKind::NotFound,
                format!("RBD pool {:?} is unavailable: {why}", self.config.name),
            )
        })
    }
}

/// The background thread: tries until connected or until the pool is dropped.
fn connect_until_available(cfg: &RbdPoolConfig, registry: &Arc<Registry>, shared: Weak<Shared>) {
    loop {
        let attempt =
            RbdExports::connect_in(&cfg.connect, &cfg.rados_pool, &cfg.name, registry.clone());
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let mut status = shared.status.lock();
        match attempt {
            Ok(exports) => {
                tracing::info!(pool = %cfg.name, rados_pool = %cfg.rados_pool, "RBD pool available");
                *status = (PoolStatus::Available, Some(Arc::new(exports)));
                shared.settled.notify_all();
                return;
            }
            Err(e) => {
                tracing::warn!(pool = %cfg.name, error = %e, "RBD pool unavailable");
                status.0 = PoolStatus::Unavailable(e.to_string());
                shared.settled.notify_all();
            }
        }
        drop(status);
        drop(shared);
        std::thread::sleep(Duration::from_secs(limits::RECONNECT_INTERVAL_S));
    }
}

impl Exports for BackgroundPool {
    fn list(&self) -> Result<Vec<VolumeInfo>> {
        self.exports().map_or(Ok(Vec::new()), |e| e.list())
    }

    fn info(&self, name: &str) -> Result<VolumeInfo> {
        self.available()?.info(name)
    }

    fn open(&self, name: &str) -> Result<Arc<dyn Volume>> {
        self.available()?.open(name)
    }
}

/// Several backends' exports as one.
pub struct Combined {
    backends: Vec<Arc<dyn Exports>>,
}

impl Combined {
    /// The union of `backends`; a name found in several is answered by the first.
    pub fn new(backends: Vec<Arc<dyn Exports>>) -> Combined {
        Combined { backends }
    }

    /// The first backend's answer that is not `NotFound`.
    fn first<T>(&self, name: &str, f: impl Fn(&dyn Exports) -> Result<T>) -> Result<T> {
        for backend in &self.backends {
            match f(backend.as_ref()) {
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                other => return other,
            }
        }
        Err(Error::new(ErrorKind::NotFound, format!("export {name:?}")))
    }
}

impl Exports for Combined {
    fn list(&self) -> Result<Vec<VolumeInfo>> {
        let mut all = Vec::new();
        for backend in &self.backends {
            for info in backend.list()? {
                if !all.iter().any(|a: &VolumeInfo| a.name == info.name) {
                    all.push(info);
                }
            }
        }
        all.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(all)
    }

    fn info(&self, name: &str) -> Result<VolumeInfo> {
        self.first(name, |b| b.info(name))
    }

    fn open(&self, name: &str) -> Result<Arc<dyn Volume>> {
        self.first(name, |b| b.open(name))
    }
}
