//! What `cairn serve` exports from RBD pools: a pool that connects in the background, and the
//! union of several backends' exports.
//!
//! [`BackgroundPool`] connects on its own thread, so a daemon never waits for Ceph to start: while
//! the first attempt runs, a lookup waits for it (at most about [`limits::MOUNT_TIMEOUT_S`]; a
//! [`Exports::listing`] never waits); when it fails the pool is unavailable (its volumes are not
//! found, [`BackgroundPool::status`] says why) and is tried again every
//! [`limits::RECONNECT_INTERVAL_S`] until it connects. Once connected, a request that times out
//! makes the pool unavailable at once (Lost Communication over SMI-S, EIO to hosts) and the
//! thread connects anew, with a new RADOS client, onto which served images move with their
//! exclusive locks taken over (`crate::opened`): the pool recovers with no restart.
//!
//! [`Combined`] answers for several backends side by side (Cairn's engine and RBD pools): a name
//! is looked up in each in order and the first that has it answers. Names are unique across the
//! backends because they share the daemon's `cairn_export::Registry` (see [`BackgroundPool::start_in`]),
//! so at most one backend has any name.

use std::sync::{Arc, Weak};
use std::time::Duration;

use cairn_export::{Error, ErrorKind, Exports, Listing, Registry, Result, Volume, VolumeInfo};
use parking_lot::{Condvar, Mutex};

use crate::cluster::ConnectOptions;
use crate::exports::RbdExports;
use crate::limits;
use crate::opened::Link;

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
    /// Set by [`BackgroundPool::close`]: the background thread ends at its next step.
    stop: Mutex<bool>,
    wake: Condvar,
}

impl Shared {
    /// Sleeps for `d` unless told to stop; `false` once stopped.
    fn pause(&self, d: Duration) -> bool {
        let mut stop = self.stop.lock();
        if !*stop {
            self.wake.wait_for(&mut stop, d);
        }
        !*stop
    }
}

/// The pool's state, while neither dropped nor closed.
fn running(shared: &Weak<Shared>) -> Option<Arc<Shared>> {
    shared.upgrade().filter(|s| !*s.stop.lock())
}

/// An RBD pool that connects in the background and then exports its volumes.
pub struct BackgroundPool {
    config: RbdPoolConfig,
    shared: Arc<Shared>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
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
            stop: Mutex::new(false),
            wake: Condvar::new(),
        });
        let weak = Arc::downgrade(&shared);
        let cfg = config.clone();
        let thread = std::thread::Builder::new()
            .name(format!("rbd-connect-{}", config.name))
            .spawn(move || keep_connected(&cfg, &registry, weak))
            .expect("a thread can be started");
        Arc::new(BackgroundPool {
            config,
            shared,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// The configured pool.
    pub fn config(&self) -> &RbdPoolConfig {
        &self.config
    }

    /// Where it stands now: a connection that has timed out is unavailable at once, before the
    /// background thread connects anew.
    pub fn status(&self) -> PoolStatus {
        let status = self.shared.status.lock();
        match &status.1 {
            Some(exports) => match exports.conn().lost() {
                Some(why) => PoolStatus::Unavailable(lost(&why)),
                None => status.0.clone(),
            },
            None => status.0.clone(),
        }
    }

    /// The connected pool, after waiting for the first attempt; `None` while unavailable.
    fn exports(&self) -> Option<Arc<RbdExports>> {
        let mut status = self.shared.status.lock();
        while status.0 == PoolStatus::Connecting {
            self.shared.settled.wait(&mut status);
        }
        status.1.clone().filter(|e| e.conn().lost().is_none())
    }

    /// Closes the images kept open for hosts (each as soon as no host holds it), so their
    /// exclusive locks are released before the daemon exits, and stops the background thread,
    /// waiting for it (at most one bounded connection attempt), so that the RADOS client it
    /// holds is shut down before the process exits rather than while it does. The pool is
    /// unavailable from then on.
    pub fn close(&self) {
        *self.shared.stop.lock() = true;
        self.shared.wake.notify_all();
        if let Some(thread) = self.thread.lock().take() {
            if thread.join().is_err() {
                tracing::error!(pool = %self.config.name, "the RBD pool's thread panicked");
            }
        }
        let mut status = self.shared.status.lock();
        let exports = status.1.take();
        status.0 = PoolStatus::Unavailable("closed".into());
        self.shared.settled.notify_all();
        drop(status);
        if let Some(exports) = exports {
            exports.link().close_all();
        }
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

fn lost(why: &str) -> String {
    format!("lost communication with the cluster: {why}")
}

/// The background thread, until the pool is closed or dropped: connects (trying again every
/// [`limits::RECONNECT_INTERVAL_S`]), then watches the connection, closing idle images, until
/// a request finds it lost, and connects anew — a new RADOS client, onto which the served
/// images move (see [`crate::opened`]).
fn keep_connected(cfg: &RbdPoolConfig, registry: &Arc<Registry>, shared: Weak<Shared>) {
    let link = Arc::new(Link::default());
    loop {
        let attempt = RbdExports::connect_linked(
            &cfg.connect,
            &cfg.rados_pool,
            &cfg.name,
            registry.clone(),
            link.clone(),
        );
        let Some(pool) = running(&shared) else {
            return;
        };
        match attempt {
            Ok(exports) => {
                let exports = Arc::new(exports);
                link.install(&exports);
                let mut status = pool.status.lock();
                *status = (PoolStatus::Available, Some(exports.clone()));
                pool.settled.notify_all();
                drop(status);
                drop(pool);
                tracing::info!(pool = %cfg.name, rados_pool = %cfg.rados_pool, "RBD pool available");
                let Some(why) = watch(&exports, &shared) else {
                    return;
                };
                tracing::warn!(pool = %cfg.name, error = %why, "RBD pool lost; connecting anew");
                let Some(pool) = running(&shared) else {
                    return;
                };
                *pool.status.lock() = (PoolStatus::Unavailable(lost(&why)), None);
                // Connects again at once: the cluster may already be back.
                continue;
            }
            Err(e) => {
                tracing::warn!(pool = %cfg.name, error = %e, "RBD pool unavailable");
                let mut status = pool.status.lock();
                *status = (PoolStatus::Unavailable(e.to_string()), None);
                pool.settled.notify_all();
            }
        }
        let paused = pool.pause(Duration::from_secs(limits::RECONNECT_INTERVAL_S));
        drop(pool);
        if !paused {
            return;
        }
    }
}

/// Watches a connected pool: closes its idle images until the connection is found lost (why)
/// or the pool is closed or dropped (`None`).
fn watch(exports: &Arc<RbdExports>, shared: &Weak<Shared>) -> Option<String> {
    loop {
        if !running(shared)?.pause(Duration::from_millis(limits::WATCH_INTERVAL_MS)) {
            return None;
        }
        if let Some(why) = exports.conn().lost() {
            return Some(why);
        }
        exports.link().close_expired();
    }
}

impl Exports for BackgroundPool {
    fn list(&self) -> Result<Vec<VolumeInfo>> {
        self.exports().map_or(Ok(Vec::new()), |e| e.list())
    }

    /// Never waits: while connecting or unavailable the listing is empty and incomplete.
    fn listing(&self) -> Result<Listing> {
        let current = self.shared.status.lock().1.clone();
        match current.filter(|e| e.conn().lost().is_none()) {
            Some(exports) => match exports.list() {
                Ok(volumes) => Ok(Listing {
                    volumes,
                    complete: true,
                }),
                Err(e) => {
                    tracing::warn!(pool = %self.config.name, error = %e, "RBD pool not listed");
                    Ok(Listing {
                        volumes: Vec::new(),
                        complete: false,
                    })
                }
            },
            None => Ok(Listing {
                volumes: Vec::new(),
                complete: false,
            }),
        }
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

    /// Every backend's listing; one that fails makes the whole incomplete, not an error, so
    /// the other backends' volumes stay listed.
    fn listing(&self) -> Result<Listing> {
        let mut all = Listing {
            volumes: Vec::new(),
            complete: true,
        };
        for backend in &self.backends {
            let part = backend.listing().unwrap_or_else(|e| {
                tracing::warn!(error = %e, "exports not listed");
                Listing {
                    volumes: Vec::new(),
                    complete: false,
                }
            });
            all.complete &= part.complete;
            for info in part.volumes {
                if !all.volumes.iter().any(|a| a.name == info.name) {
                    all.volumes.push(info);
                }
            }
        }
        all.volumes.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(all)
    }

    fn info(&self, name: &str) -> Result<VolumeInfo> {
        self.first(name, |b| b.info(name))
    }

    fn open(&self, name: &str) -> Result<Arc<dyn Volume>> {
        self.first(name, |b| b.open(name))
    }
}
