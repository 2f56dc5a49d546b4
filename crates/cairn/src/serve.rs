//! `cairn serve`: the daemon. Opens (or on first start creates) the configured pools, serves their
//! volumes (and those of RBD pools, which connect in the background) over NBD and iSCSI and the
//! array (both kinds of pool side by side) over SMI-S, writes the bound addresses to `DATA_DIR/listen.json`,
//! and on SIGINT/SIGTERM stops accepting, lets requests in flight finish, commits and closes every
//! pool, then exits 0.
//!
//! Invariants: a pool another process holds is refused (the device lock), never shared; listen.json
//! is written atomically and only once every listener is bound, so a reader never sees a partial
//! file or an address that is not yet accepting; the TLS identity is made or loaded once, before
//! any listener, and the same rustls configuration goes to every server that uses TLS.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use cairn_engine::{ErrorKind, Pool, PoolOptions, Registry, Storage};
use cairn_export::Exports;
use cairn_rbd::served::{BackgroundPool, Combined};
use serde_json::json;
use tracing::{info, warn};

use cairn_array::combined::Combined as CombinedArray;
use cairn_array::engine::EngineArray;
use cairn_array::ArrayBackend;
use cairn_rbd::array::RbdArray;
use cairn_smis::{
    ArrayOptions, ArrayProvider, Credentials, IndicationOptions, Indications, SmisServerConfig,
    SmisServerHandle,
};

use crate::config::{Config, PoolConfig};
use crate::device::open_device;
use crate::tls::{self, TlsSource};
use crate::ServeArgs;

pub fn run(args: ServeArgs) -> Result<()> {
    init_logging();
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("Cannot create data directory {}", args.data_dir.display()))?;
    let config = Config::load(&args.data_dir, args.config.as_deref())?;
    let storage = Arc::new(open_storage(&config)?);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("cairn-serve")
        .build()
        .context("Cannot start the async runtime")?;
    let served = runtime.block_on(serve(&config, storage.clone()));
    let closed = storage.close().context("Closing the pools failed");
    let _ = std::fs::remove_file(listen_file(&config.data_dir));
    served.and(closed)?;
    info!("stopped");
    Ok(())
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CAIRN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

fn engine_options(config: &Config, pool: &PoolConfig) -> PoolOptions {
    PoolOptions {
        commit_interval: config.commit_interval,
        node_cache_bytes: config.node_cache_bytes,
        preallocate: pool.preallocate,
    }
}

/// The engine pools over a new registry, which the RBD pools share (see [`host_exports`]).
fn open_storage(config: &Config) -> Result<Storage> {
    let storage = Storage::with_registry(Registry::new());
    for pool_config in &config.pools {
        let pool = open_or_create_pool(pool_config, engine_options(config, pool_config))?;
        let info = pool.info();
        info!(
            pool = %info.name,
            path = %pool_config.path.display(),
            size_bytes = info.size_bytes,
            volumes = info.volume_count,
            "pool open"
        );
        storage
            .add_pool(pool)
            .with_context(|| format!("Cannot add pool {}", pool_config.name))?;
    }
    Ok(storage)
}

/// Opens the pool at `cfg.path`; a missing file is created (sparse) and formatted as a new pool.
/// An existing file or device that is not a Cairn pool is refused, never formatted.
fn open_or_create_pool(cfg: &PoolConfig, opts: PoolOptions) -> Result<Arc<Pool>> {
    let is_new = !cfg.path.exists();
    if is_new {
        if let Some(parent) = cfg.path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("Cannot create {}", parent.display()))?;
        }
        let dev = open_device(&cfg.path, Some(cfg.create_size_bytes))?;
        info!(pool = %cfg.name, path = %cfg.path.display(), "creating pool");
        return Pool::create(dev, &cfg.name, opts)
            .with_context(|| format!("Cannot create pool {} on {}", cfg.name, cfg.path.display()));
    }
    let dev = open_device(&cfg.path, None)?;
    let pool = match Pool::open(dev, opts) {
        Ok(pool) => pool,
        Err(err) if err.kind() == ErrorKind::NotAPool => bail!(
            "{} is not a Cairn pool; create one with `cairn pool create {} --name {}`",
            cfg.path.display(),
            cfg.path.display(),
            cfg.name
        ),
        Err(err) => {
            return Err(err).with_context(|| format!("Cannot open pool {}", cfg.path.display()))
        }
    };
    if pool.name() != cfg.name {
        warn!(
            configured = %cfg.name,
            stored = %pool.name(),
            path = %cfg.path.display(),
            "pool file holds a pool of another name; using the stored name"
        );
    }
    Ok(pool)
}

fn listen_file(data_dir: &Path) -> PathBuf {
    data_dir.join("listen.json")
}

/// Writes `listen.json` through a temporary file and a rename, so readers see all of it or none.
fn write_listen_file(data_dir: &Path, value: &serde_json::Value) -> Result<()> {
    let tmp = data_dir.join("listen.json.tmp");
    std::fs::write(&tmp, format!("{value:#}\n"))
        .with_context(|| format!("Cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, listen_file(data_dir)).context("Cannot publish listen.json")
}

async fn serve(config: &Config, storage: Arc<Storage>) -> Result<()> {
    // Installed before anything is announced, so a signal sent right after "ready" is handled.
    let signals = Signals::install()?;
    let credentials = resolve_credentials(config)?;
    let tls = daemon_tls(config)?;
    let rbd_pools = start_rbd_pools(config, &storage);
    let exports = host_exports(&storage, &rbd_pools);
    let nbd = match config.nbd {
        Some(addr) => Some(start_nbd(config, addr, tls.clone(), exports.clone()).await?),
        None => None,
    };
    let iscsi = match config.iscsi {
        Some(addr) => Some(start_iscsi(config, addr, exports).await?),
        None => None,
    };
    let backend = array_backend(storage, rbd_pools.clone());
    let mut options = array_options(config);
    // SMI-S masking changes the iSCSI target's access model through the HostAccess trait.
    options.host_access = iscsi.as_ref().map(|h| h.host_access());
    let array = ArrayProvider::new(backend, options);
    let indications = Indications::start(
        &array,
        indication_options(config)?,
        tokio::runtime::Handle::current(),
    )
    .context("Cannot start indications")?;
    let smis = start_smis(config, credentials, tls, indications.cim_server(&array)).await?;
    let servers = Servers { nbd, iscsi, smis };
    servers.announce(&config.data_dir)?;
    signals.wait().await;
    info!("shutting down");
    servers.shutdown().await?;
    // Copies still running end as failed jobs with their targets removed, before the pools close.
    if !array.shutdown(cairn_smis::limits::COPY_SHUTDOWN_WAIT) {
        warn!("copy jobs did not stop in time; the next start cleans up after them");
    }
    indications.stop();
    // Hosts are gone: the RBD images kept open for them release their exclusive locks now.
    for pool in &rbd_pools {
        pool.close();
    }
    Ok(())
}

/// The SMI-S credentials; a password generated at this start is printed once (it is kept, mode
/// 0600, in DATA_DIR/credentials).
fn resolve_credentials(config: &Config) -> Result<Credentials> {
    let credentials = Credentials::resolve(
        config.auth_user.clone(),
        config.auth_password.clone(),
        &config.data_dir,
    )
    .context("Cannot set up SMI-S credentials")?;
    if let Some(password) = credentials.generated_password() {
        println!(
            "SMI-S credentials: user {} password {password} (saved in {})",
            credentials.user(),
            config.data_dir.join("credentials").display()
        );
    }
    Ok(credentials)
}

/// The listeners hosts and management stations reach the daemon on.
struct Servers {
    nbd: Option<cairn_nbd::NbdServerHandle>,
    iscsi: Option<cairn_iscsi::IscsiServerHandle>,
    smis: SmisServerHandle,
}

impl Servers {
    /// Publishes the bound addresses in `listen.json` and logs them: the daemon is ready.
    fn announce(&self, data_dir: &Path) -> Result<()> {
        let mut listen = serde_json::Map::new();
        listen.insert("pid".into(), json!(std::process::id()));
        let addrs = [
            ("nbd", self.nbd.as_ref().map(|h| h.local_addr())),
            ("iscsi", self.iscsi.as_ref().map(|h| h.local_addr())),
            ("smis_http", self.smis.http_addr()),
            ("smis_https", self.smis.https_addr()),
        ];
        for (key, addr) in addrs {
            if let Some(addr) = addr {
                listen.insert(key.into(), json!(addr.to_string()));
            }
        }
        let listen = serde_json::Value::Object(listen);
        write_listen_file(data_dir, &listen)?;
        info!(listen = %listen, "ready");
        Ok(())
    }

    /// Stops accepting on every listener and finishes the requests in flight.
    async fn shutdown(self) -> Result<()> {
        self.smis.shutdown().await;
        if let Some(nbd) = self.nbd {
            nbd.shutdown()
                .await
                .context("NBD server did not stop cleanly")?;
        }
        if let Some(iscsi) = self.iscsi {
            iscsi
                .shutdown()
                .await
                .context("iSCSI server did not stop cleanly")?;
        }
        Ok(())
    }
}

/// The RBD pools of the config, connecting in the background in the storage's registry (one name
/// space, one set of leases), so a Ceph outage never holds up the start: that pool is reported
/// unavailable (logged, its volumes not found, Lost Communication over SMI-S) and tried again
/// until it connects.
fn start_rbd_pools(config: &Config, storage: &Arc<Storage>) -> Vec<Arc<BackgroundPool>> {
    let start = |pool: &cairn_rbd::served::RbdPoolConfig| {
        info!(
            pool = %pool.name,
            rados_pool = %pool.rados_pool,
            ceph_conf = %pool.connect.conf_path.display(),
            "RBD pool connecting"
        );
        BackgroundPool::start_in(pool.clone(), storage.registry().clone())
    };
    config.rbd_pools.iter().map(start).collect()
}

/// What NBD and iSCSI serve: the engine's volumes and, beside them, each RBD pool's.
fn host_exports(storage: &Arc<Storage>, rbd_pools: &[Arc<BackgroundPool>]) -> Arc<dyn Exports> {
    if rbd_pools.is_empty() {
        return storage.clone();
    }
    let mut backends: Vec<Arc<dyn Exports>> = vec![storage.clone()];
    backends.extend(rbd_pools.iter().map(|p| p.clone() as Arc<dyn Exports>));
    Arc::new(Combined::new(backends))
}

/// What SMI-S serves: the engine's pools and, beside them, the RBD pools.
fn array_backend(
    storage: Arc<Storage>,
    rbd_pools: Vec<Arc<BackgroundPool>>,
) -> Arc<dyn ArrayBackend> {
    let engine: Arc<dyn ArrayBackend> = Arc::new(EngineArray::new(storage));
    if rbd_pools.is_empty() {
        return engine;
    }
    let rbd: Arc<dyn ArrayBackend> = Arc::new(RbdArray::new(rbd_pools));
    Arc::new(CombinedArray::new(vec![engine, rbd]))
}

fn system_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    format!(
        "CAIRN-{}",
        if host.is_empty() { "localhost" } else { &host }
    )
}

fn array_options(config: &Config) -> ArrayOptions {
    let mut opts = ArrayOptions::new(system_name());
    opts.jobs_path = Some(config.data_dir.join("jobs.json"));
    opts.pool_settings_path = Some(config.data_dir.join("pool-settings.json"));
    opts.low_space_warning_percent = config.indications.pool_free_alert_percent;
    opts.copy_rate_bytes_per_sec = config.copy_rate_bytes_per_sec;
    if let Some(name) = &config.location_name {
        opts.location.name.clone_from(name);
    }
    if let Some(position) = &config.location_position {
        opts.location.physical_position.clone_from(position);
    }
    opts
}

/// The indication settings of the config, the trusted listener certificates read.
fn indication_options(config: &Config) -> Result<IndicationOptions> {
    let s = &config.indications;
    let mut trusted_certs = Vec::new();
    for path in &s.trusted_certs {
        let pem = std::fs::read(path)
            .with_context(|| format!("Cannot read listener certificate {}", path.display()))?;
        for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
            trusted_certs.push(
                cert.with_context(|| format!("Invalid listener certificate {}", path.display()))?,
            );
        }
    }
    Ok(IndicationOptions {
        state_path: Some(config.data_dir.join("indications.json")),
        retry_attempts: s.retry_attempts,
        retry_interval: s.retry_interval,
        removal_action: s.removal_action,
        removal_interval: s.removal_interval,
        trusted_certs,
        accept_any_cert: s.accept_any_certificate.clone(),
    })
}

async fn start_smis(
    config: &Config,
    credentials: Credentials,
    tls: Option<Arc<rustls::ServerConfig>>,
    server: Arc<cairn_cim::CimServer>,
) -> Result<SmisServerHandle> {
    let mut cfg = SmisServerConfig::new(credentials, tls);
    cfg.http_addr = config.smis_http;
    cfg.https_addr = config.smis_https;
    cairn_smis::start(cfg, server)
        .await
        .context("Cannot start the SMI-S server")
}

/// True if NBD on `addr` must use STARTTLS: on loopback it is served in the clear; on any other
/// address it requires TLS unless the config explicitly allows plain NBD.
fn nbd_needs_tls(config: &Config, addr: std::net::SocketAddr) -> bool {
    !addr.ip().is_loopback() && !config.nbd_allow_insecure
}

/// The daemon's TLS identity, made or loaded once, if any listener needs it.
fn daemon_tls(config: &Config) -> Result<Option<Arc<rustls::ServerConfig>>> {
    let nbd = config.nbd.is_some_and(|addr| nbd_needs_tls(config, addr));
    if config.smis_https.is_none() && !nbd {
        return Ok(None);
    }
    let source = TlsSource {
        cert_path: config.tls_cert.clone(),
        key_path: config.tls_key.clone(),
        data_dir: config.data_dir.clone(),
        san: config.tls_names.clone(),
    };
    let identity = tls::load_or_create(&source).context("Cannot set up the TLS identity")?;
    Ok(Some(identity))
}

async fn start_nbd(
    config: &Config,
    addr: std::net::SocketAddr,
    tls: Option<Arc<rustls::ServerConfig>>,
    exports: Arc<dyn Exports>,
) -> Result<cairn_nbd::NbdServerHandle> {
    let cfg = cairn_nbd::NbdServerConfig {
        addr,
        tls: tls.filter(|_| nbd_needs_tls(config, addr)),
        allow_insecure_non_loopback: config.nbd_allow_insecure,
    };
    cairn_nbd::start(cfg, exports)
        .await
        .with_context(|| format!("Cannot serve NBD on {addr}"))
}

/// One target node per array: its IQN and LUN numbers live in the data directory, CHAP secrets
/// in `iscsi-chap.json` (mode 0600), masking views in `iscsi-views.json` (seeded from the config
/// on first start). A non-loopback portal
/// needs CHAP or `allow_insecure`.
async fn start_iscsi(
    config: &Config,
    addr: std::net::SocketAddr,
    exports: Arc<dyn Exports>,
) -> Result<cairn_iscsi::IscsiServerHandle> {
    let dir = &config.data_dir;
    let target_name = cairn_iscsi::node::load_or_create_target_name(
        &dir.join("iscsi-target-name"),
        config.iscsi_target_name.as_deref(),
        &system_name(),
    )
    .context("Cannot set up the iSCSI target name")?;
    let auth = cairn_iscsi::node::load_auth(&dir.join("iscsi-chap.json"))
        .context("Cannot read the iSCSI CHAP secrets")?;
    let cfg = cairn_iscsi::IscsiServerConfig {
        addr,
        target_name,
        auth,
        lun_map_path: dir.join("iscsi-luns.json"),
        views_path: dir.join("iscsi-views.json"),
        seed_views: config.iscsi_seed_views.clone(),
        reservations_path: dir.join("iscsi-reservations.json"),
        allow_insecure_non_loopback: config.iscsi_allow_insecure,
        nop_interval: config.iscsi_nop_interval,
    };
    cairn_iscsi::start(cfg, exports)
        .await
        .with_context(|| format!("Cannot serve iSCSI on {addr}"))
}

/// SIGTERM and SIGINT, either of which stops the daemon.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            term: signal(SignalKind::terminate()).context("Cannot install SIGTERM handler")?,
            int: signal(SignalKind::interrupt()).context("Cannot install SIGINT handler")?,
        })
    }

    async fn wait(mut self) {
        tokio::select! {
            _ = self.term.recv() => {},
            _ = self.int.recv() => {},
        }
    }
}
