//! The daemon's configuration: a TOML file (all sections optional) merged with BRIEF-defined defaults.
//!
//! ```toml
//! [[pool]]
//! name = "pool0"
//! path = "pool0.img"        # relative paths are inside the data directory; a block device works too
//! size = "16GiB"            # only used when the file does not exist yet
//! preallocate = false        # true: the whole file is allocated on the host (default: sparse,
//!                            # allocated 64 MiB ahead of use, wholly free chunks given back)
//!
//! [[pool]]                   # a Ceph RBD pool: its volumes are RBD images, served beside the rest
//! name = "ceph-rbd"
//! kind = "rbd"               # "file" (the default) is a Cairn pool on a file or device, as above
//! ceph_conf = "/etc/ceph/ceph.conf"
//! client = "cairn"           # the cephx user (client.cairn); default "admin"
//! keyring = "/etc/ceph/ceph.client.cairn.keyring"   # default: what ceph_conf names
//! rados_pool = "rbd"
//! op_timeout_secs = 30       # a Ceph operation failing after this long (EIO to the host) gives
//!                            # up the connection until the cluster answers again (1-120)
//!
//! [listen]
//! smis_http = "127.0.0.1:5988"   # "" disables a listener; port 0 picks a free one
//! smis_https = "127.0.0.1:5989"
//! nbd = "127.0.0.1:10809"
//! iscsi = "127.0.0.1:3260"
//!
//! [auth]
//! user = "admin"
//! password = "secret"
//!
//! [tls]
//! cert = "/etc/cairn/cert.pem"
//! key = "/etc/cairn/key.pem"
//! names = ["node1.example.com"]
//!
//! [engine]
//! commit_interval_ms = 1000      # 0 = commit only on flush and on volume operations
//! node_cache_mib = 64
//!
//! [nbd]
//! allow_insecure = false         # serve NBD without TLS on a non-loopback address
//!
//! [iscsi]
//! allow_insecure = false         # serve iSCSI without CHAP on a non-loopback address
//! target_name = "iqn.2026-01.org.cairn:node1"   # first start only; then DATA_DIR/iscsi-target-name
//! nop_interval_secs = 30         # ping an idle initiator; close it after twice this
//!
//! [[iscsi.views]]                # first start only (no DATA_DIR/iscsi-views.json yet)
//! name = "db-hosts"
//! initiators = ["iqn.1991-05.com.microsoft:db1"]
//! luns = [{ volume = "db", lun = 0 }]
//!
//! [indications]
//! retry_attempts = 3             # DeliveryRetryAttempts: further tries of a failed delivery
//! retry_interval_secs = 20       # DeliveryRetryInterval
//! removal_action = "remove"      # SubscriptionRemovalAction: "remove", "disable" or "ignore"
//! removal_interval_secs = 2592000   # SubscriptionRemovalTimeInterval of continuous failure
//! trusted_certs = ["listener.pem"]  # https listeners' certificates (PEM), trusted exactly
//! accept_any_certificate = ["https://10.0.0.5:5990/*"]   # destinations whose certificate is not checked
//! pool_free_alert_percent = 10   # LowSpaceWarningThreshold of pools no client set it on (0: none)
//!
//! [replication]
//! copy_rate = "200MiB"           # per second, for each copy into another pool (default: no limit)
//!
//! [location]                     # the array's CIM_Location (SMI-S)
//! name = "Lab 2"                 # Name and ElementName (default "<system name> location")
//! physical_position = "rack 4, slot 12"   # PhysicalPosition (default empty)
//! ```
//!
//! Invariant: after [`Config::load`] every pool has a valid name and an absolute path, and pool names
//! are unique across both kinds. A file pool takes `path`, `size` and `preallocate` only, an
//! RBD pool `ceph_conf`, `client`, `keyring`, `rados_pool` and `op_timeout_secs` only
//! (`ceph_conf` and `rados_pool` required); the default
//! pool is made only when no pool of either kind is configured.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::Deserialize;

use cairn_rbd::served::RbdPoolConfig;
use cairn_rbd::ConnectOptions;

use crate::size::parse_size_bytes;

/// Size of the pool created on a first start with no pool configured.
pub const DEFAULT_POOL_SIZE_BYTES: u64 = 16 << 30;
pub const DEFAULT_POOL_NAME: &str = "pool0";
pub const DEFAULT_SMIS_HTTP: &str = "127.0.0.1:5988";
pub const DEFAULT_SMIS_HTTPS: &str = "127.0.0.1:5989";
pub const DEFAULT_NBD: &str = "127.0.0.1:10809";
pub const DEFAULT_ISCSI: &str = "127.0.0.1:3260";

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    pool: Vec<RawPool>,
    #[serde(default)]
    listen: RawListen,
    #[serde(default)]
    auth: RawAuth,
    #[serde(default)]
    tls: RawTls,
    #[serde(default)]
    engine: RawEngine,
    #[serde(default)]
    nbd: RawNbd,
    #[serde(default)]
    iscsi: RawIscsi,
    #[serde(default)]
    indications: RawIndications,
    #[serde(default)]
    location: RawLocation,
    #[serde(default)]
    replication: RawReplication,
}

/// `[replication]`: copies into another pool.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReplication {
    copy_rate: Option<String>,
}

/// `[location]`: the array's CIM_Location.
#[derive(Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
struct RawLocation {
    name: Option<String>,
    physical_position: Option<String>,
}

#[derive(Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum PoolKind {
    #[default]
    File,
    Rbd,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPool {
    name: String,
    #[serde(default)]
    kind: PoolKind,
    path: Option<PathBuf>,
    size: Option<String>,
    #[serde(default)]
    preallocate: bool,
    ceph_conf: Option<PathBuf>,
    client: Option<String>,
    keyring: Option<PathBuf>,
    rados_pool: Option<String>,
    op_timeout_secs: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawListen {
    smis_http: Option<String>,
    smis_https: Option<String>,
    nbd: Option<String>,
    iscsi: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAuth {
    user: Option<String>,
    password: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    #[serde(default)]
    names: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEngine {
    commit_interval_ms: Option<u64>,
    node_cache_mib: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNbd {
    #[serde(default)]
    allow_insecure: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIscsi {
    #[serde(default)]
    allow_insecure: bool,
    target_name: Option<String>,
    nop_interval_secs: Option<u64>,
    #[serde(default)]
    views: Vec<cairn_iscsi::views::SeedView>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIndications {
    retry_attempts: Option<u16>,
    retry_interval_secs: Option<u64>,
    removal_action: Option<String>,
    removal_interval_secs: Option<u64>,
    #[serde(default)]
    trusted_certs: Vec<PathBuf>,
    #[serde(default)]
    accept_any_certificate: Vec<String>,
    pool_free_alert_percent: Option<u16>,
}

/// How indications are delivered (the `[indications]` section, defaults filled in).
#[derive(Debug, Clone)]
pub struct IndicationSettings {
    pub retry_attempts: u16,
    pub retry_interval: Duration,
    /// SubscriptionRemovalAction: 2 remove, 3 disable, 4 ignore.
    pub removal_action: u16,
    pub removal_interval: Duration,
    /// PEM files, absolute.
    pub trusted_certs: Vec<PathBuf>,
    pub accept_any_certificate: Vec<String>,
    /// LowSpaceWarningThreshold of a pool no client has set it on.
    pub pool_free_alert_percent: u16,
}

fn resolve_indications(data_dir: &Path, raw: RawIndications) -> Result<IndicationSettings> {
    let defaults = cairn_smis::IndicationOptions::default();
    let removal_action = match raw.removal_action.as_deref() {
        None => defaults.removal_action,
        Some("remove") => cairn_smis::indications::REMOVAL_ACTION_REMOVE,
        Some("disable") => cairn_smis::indications::REMOVAL_ACTION_DISABLE,
        Some("ignore") => cairn_smis::indications::REMOVAL_ACTION_IGNORE,
        Some(other) => bail!("removal_action must be remove, disable or ignore, not {other:?}"),
    };
    let percent = raw
        .pool_free_alert_percent
        .unwrap_or(cairn_smis::limits::LOW_SPACE_WARNING_PERCENT_DEFAULT);
    if percent > 100 {
        bail!("pool_free_alert_percent must be at most 100");
    }
    let secs = |v: Option<u64>, d: Duration| v.map(Duration::from_secs).unwrap_or(d);
    Ok(IndicationSettings {
        retry_attempts: raw.retry_attempts.unwrap_or(defaults.retry_attempts),
        retry_interval: secs(raw.retry_interval_secs, defaults.retry_interval),
        removal_action,
        removal_interval: secs(raw.removal_interval_secs, defaults.removal_interval),
        trusted_certs: raw.trusted_certs.iter().map(|p| data_dir.join(p)).collect(),
        accept_any_certificate: raw.accept_any_certificate,
        pool_free_alert_percent: percent,
    })
}

/// One pool the daemon opens (or creates on first start).
#[derive(Debug, Clone)]
pub struct PoolConfig {
    pub name: String,
    pub path: PathBuf,
    pub create_size_bytes: u64,
    /// Allocate the whole file on the host (`PoolOptions::preallocate`).
    pub preallocate: bool,
}

/// The resolved configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    pub pools: Vec<PoolConfig>,
    /// RBD pools, served beside `pools`.
    pub rbd_pools: Vec<RbdPoolConfig>,
    pub smis_http: Option<SocketAddr>,
    pub smis_https: Option<SocketAddr>,
    pub nbd: Option<SocketAddr>,
    pub auth_user: Option<String>,
    pub auth_password: Option<String>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub tls_names: Vec<String>,
    pub commit_interval: Option<Duration>,
    pub node_cache_bytes: usize,
    pub nbd_allow_insecure: bool,
    pub iscsi: Option<SocketAddr>,
    pub iscsi_allow_insecure: bool,
    pub iscsi_target_name: Option<String>,
    pub iscsi_nop_interval: Duration,
    /// Masking views that make `iscsi-views.json` when it does not exist yet.
    pub iscsi_seed_views: Vec<cairn_iscsi::views::SeedView>,
    pub indications: IndicationSettings,
    /// `[location]` name (None: the default), physical position.
    pub location_name: Option<String>,
    pub location_position: Option<String>,
    /// Bandwidth limit of each copy into another pool (bytes per second), if any.
    pub copy_rate_bytes_per_sec: Option<u64>,
}

impl Config {
    /// Reads `file` (if given) and fills in the defaults for `data_dir`.
    pub fn load(data_dir: &Path, file: Option<&Path>) -> Result<Config> {
        let raw = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("Cannot read config file {}", path.display()))?;
                toml::from_str::<RawConfig>(&text)
                    .with_context(|| format!("Invalid config file {}", path.display()))?
            }
            None => RawConfig::default(),
        };
        Self::resolve(data_dir, raw)
    }

    fn resolve(data_dir: &Path, raw: RawConfig) -> Result<Config> {
        let data_dir = absolute(data_dir)?;
        let no_pool = raw.pool.is_empty();
        let (rbd, file): (Vec<RawPool>, Vec<RawPool>) =
            raw.pool.into_iter().partition(|p| p.kind == PoolKind::Rbd);
        let rbd_pools = resolve_rbd_pools(&data_dir, rbd)?;
        let pools = resolve_pools(&data_dir, file, no_pool)?;
        if let Some(p) = pools
            .iter()
            .find(|p| rbd_pools.iter().any(|r| r.name == p.name))
        {
            bail!("Pool name '{}' appears twice in the config", p.name);
        }
        let engine_interval_ms = raw.engine.commit_interval_ms.unwrap_or(1000);
        Ok(Config {
            pools,
            rbd_pools,
            smis_http: listen_addr(raw.listen.smis_http, DEFAULT_SMIS_HTTP, "smis_http")?,
            smis_https: listen_addr(raw.listen.smis_https, DEFAULT_SMIS_HTTPS, "smis_https")?,
            nbd: listen_addr(raw.listen.nbd, DEFAULT_NBD, "nbd")?,
            auth_user: raw.auth.user,
            auth_password: raw.auth.password,
            tls_cert: raw.tls.cert.map(|p| data_dir.join(p)),
            tls_key: raw.tls.key.map(|p| data_dir.join(p)),
            tls_names: raw.tls.names,
            commit_interval: (engine_interval_ms > 0)
                .then(|| Duration::from_millis(engine_interval_ms)),
            node_cache_bytes: usize::try_from(raw.engine.node_cache_mib.unwrap_or(64) << 20)
                .context("node_cache_mib is too large")?,
            nbd_allow_insecure: raw.nbd.allow_insecure,
            iscsi: listen_addr(raw.listen.iscsi, DEFAULT_ISCSI, "iscsi")?,
            iscsi_allow_insecure: raw.iscsi.allow_insecure,
            iscsi_target_name: raw.iscsi.target_name,
            iscsi_nop_interval: Duration::from_secs(
                raw.iscsi.nop_interval_secs.unwrap_or(30).max(1),
            ),
            iscsi_seed_views: raw.iscsi.views,
            indications: resolve_indications(&data_dir, raw.indications)?,
            location_name: raw.location.name,
            location_position: raw.location.physical_position,
            copy_rate_bytes_per_sec: raw
                .replication
                .copy_rate
                .as_deref()
                .map(parse_size_bytes)
                .transpose()
                .context("replication.copy_rate")?,
            data_dir,
        })
    }
}

fn resolve_pools(data_dir: &Path, raw: Vec<RawPool>, no_pool: bool) -> Result<Vec<PoolConfig>> {
    if no_pool {
        return Ok(vec![PoolConfig {
            name: DEFAULT_POOL_NAME.to_string(),
            path: data_dir.join(format!("{DEFAULT_POOL_NAME}.img")),
            create_size_bytes: DEFAULT_POOL_SIZE_BYTES,
            preallocate: false,
        }]);
    }
    let mut pools: Vec<PoolConfig> = Vec::with_capacity(raw.len());
    for pool in raw {
        if pools.iter().any(|p| p.name == pool.name) {
            bail!("Pool name '{}' appears twice in the config", pool.name);
        }
        let Some(path) = &pool.path else {
            bail!("Pool '{}' needs a path (or kind = \"rbd\")", pool.name);
        };
        if pool.ceph_conf.is_some()
            || pool.client.is_some()
            || pool.keyring.is_some()
            || pool.rados_pool.is_some()
            || pool.op_timeout_secs.is_some()
        {
            bail!(
                "Pool '{}' is a file pool: Ceph keys need kind = \"rbd\"",
                pool.name
            );
        }
        let create_size_bytes = match &pool.size {
            Some(text) => parse_size_bytes(text)?,
            None => DEFAULT_POOL_SIZE_BYTES,
        };
        pools.push(PoolConfig {
            path: data_dir.join(path),
            name: pool.name,
            create_size_bytes,
            preallocate: pool.preallocate,
        });
    }
    Ok(pools)
}

fn resolve_rbd_pools(data_dir: &Path, raw: Vec<RawPool>) -> Result<Vec<RbdPoolConfig>> {
    let mut pools: Vec<RbdPoolConfig> = Vec::with_capacity(raw.len());
    for pool in raw {
        if pools.iter().any(|p| p.name == pool.name) {
            bail!("Pool name '{}' appears twice in the config", pool.name);
        }
        if pool.path.is_some() || pool.size.is_some() || pool.preallocate {
            bail!(
                "RBD pool '{}' takes no path, size or preallocate",
                pool.name
            );
        }
        let (Some(conf), Some(rados_pool)) = (pool.ceph_conf, pool.rados_pool) else {
            bail!("RBD pool '{}' needs ceph_conf and rados_pool", pool.name);
        };
        let op_timeout_s = pool
            .op_timeout_secs
            .unwrap_or(cairn_rbd::limits::OP_TIMEOUT_S);
        if !(1..=cairn_rbd::limits::OP_TIMEOUT_S_MAX).contains(&op_timeout_s) {
            bail!(
                "RBD pool '{}': op_timeout_secs must be 1 to {}",
                pool.name,
                cairn_rbd::limits::OP_TIMEOUT_S_MAX
            );
        }
        pools.push(RbdPoolConfig {
            name: pool.name,
            connect: ConnectOptions {
                conf_path: data_dir.join(conf),
                client_name: pool.client.unwrap_or_else(|| "admin".into()),
                keyring_path: pool.keyring.map(|k| data_dir.join(k)),
                op_timeout_s,
            },
            rados_pool,
        });
    }
    Ok(pools)
}

fn listen_addr(value: Option<String>, default: &str, key: &str) -> Result<Option<SocketAddr>> {
    let text = value.unwrap_or_else(|| default.to_string());
    if text.trim().is_empty() {
        return Ok(None);
    }
    text.trim()
        .parse()
        .map(Some)
        .with_context(|| format!("listen.{key} '{text}' is not an address such as 127.0.0.1:5988"))
}

fn absolute(path: &Path) -> Result<PathBuf> {
    if path.is_absolute() {
        return Ok(path.to_path_buf());
    }
    Ok(std::env::current_dir()
        .context("Cannot read the current directory")?
        .join(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config> {
        Config::resolve(Path::new("/data"), toml::from_str(text)?)
    }

    #[test]
    fn defaults_give_one_pool_on_loopback() {
        let cfg = parse("").unwrap();
        assert_eq!(cfg.pools.len(), 1);
        assert_eq!(cfg.pools[0].path, Path::new("/data/pool0.img"));
        assert_eq!(cfg.pools[0].create_size_bytes, 16 << 30);
        assert!(!cfg.pools[0].preallocate, "the default pool stays sparse");
        assert_eq!(cfg.smis_http, Some("127.0.0.1:5988".parse().unwrap()));
        assert_eq!(cfg.smis_https, Some("127.0.0.1:5989".parse().unwrap()));
        assert_eq!(cfg.nbd, Some("127.0.0.1:10809".parse().unwrap()));
        assert_eq!(cfg.iscsi, Some("127.0.0.1:3260".parse().unwrap()));
        assert_eq!(cfg.commit_interval, Some(Duration::from_secs(1)));
        assert_eq!(cfg.copy_rate_bytes_per_sec, None);
    }

    #[test]
    fn a_copy_rate_is_a_size_per_second() {
        let cfg = parse("[replication]\ncopy_rate = \"8MiB\"\n").unwrap();
        assert_eq!(cfg.copy_rate_bytes_per_sec, Some(8 << 20));
        assert!(parse("[replication]\ncopy_rate = \"fast\"\n").is_err());
    }

    #[test]
    fn pools_listeners_and_engine() {
        let cfg = parse(
            r#"
            [[pool]]
            name = "fast"
            path = "/dev/loop7"
            [[pool]]
            name = "slow"
            path = "slow.img"
            size = "1GiB"
            preallocate = true
            [listen]
            smis_https = ""
            nbd = "127.0.0.1:0"
            [engine]
            commit_interval_ms = 0
            "#,
        )
        .unwrap();
        assert_eq!(cfg.pools[0].path, Path::new("/dev/loop7"));
        assert_eq!(cfg.pools[1].path, Path::new("/data/slow.img"));
        assert_eq!(cfg.pools[1].create_size_bytes, 1 << 30);
        assert!(!cfg.pools[0].preallocate && cfg.pools[1].preallocate);
        assert_eq!(cfg.smis_https, None);
        assert_eq!(cfg.nbd, Some("127.0.0.1:0".parse().unwrap()));
        assert_eq!(cfg.commit_interval, None);
    }

    #[test]
    fn rbd_pools_beside_file_pools() {
        let cfg = parse(
            r#"
            [[pool]]
            name = "ceph-rbd"
            kind = "rbd"
            ceph_conf = "ceph/ceph.conf"
            client = "cairn"
            keyring = "/k/ceph.client.cairn.keyring"
            rados_pool = "rbd"
            [[pool]]
            name = "local"
            path = "local.img"
            "#,
        )
        .unwrap();
        assert_eq!(cfg.pools.len(), 1);
        assert_eq!(cfg.pools[0].name, "local");
        let rbd = &cfg.rbd_pools[0];
        assert_eq!(
            (rbd.name.as_str(), rbd.rados_pool.as_str()),
            ("ceph-rbd", "rbd")
        );
        assert_eq!(rbd.connect.conf_path, Path::new("/data/ceph/ceph.conf"));
        assert_eq!(rbd.connect.client_name, "cairn");
        let keyring = Path::new("/k/ceph.client.cairn.keyring");
        assert_eq!(rbd.connect.keyring_path.as_deref(), Some(keyring));
        let only = parse("[[pool]]\nname='r'\nkind='rbd'\nceph_conf='c'\nrados_pool='p'").unwrap();
        assert!(
            only.pools.is_empty(),
            "no default pool beside a configured RBD pool"
        );
        assert_eq!(only.rbd_pools[0].connect.client_name, "admin");
        assert_eq!(only.rbd_pools[0].connect.keyring_path, None);
        let timeout = cairn_rbd::limits::OP_TIMEOUT_S;
        assert_eq!(only.rbd_pools[0].connect.op_timeout_s, timeout);
        let short = parse(
            "[[pool]]\nname='r'\nkind='rbd'\nceph_conf='c'\nrados_pool='p'\nop_timeout_secs=3",
        );
        assert_eq!(short.unwrap().rbd_pools[0].connect.op_timeout_s, 3);
    }

    #[test]
    fn rejects_duplicates_and_unknown_keys() {
        assert!(parse("[[pool]]\nname='a'\npath='x'\n[[pool]]\nname='a'\npath='y'").is_err());
        assert!(parse("[listen]\nsmtp = '1'").is_err());
        let rbd = "kind='rbd'\nceph_conf='c'\nrados_pool='rbd'";
        assert!(parse(&format!(
            "[[pool]]\nname='a'\npath='x'\n[[pool]]\nname='a'\n{rbd}"
        ))
        .is_err());
        assert!(parse(&format!("[[pool]]\nname='a'\n{rbd}\npath='x'")).is_err());
        assert!(parse("[[pool]]\nname='a'\nkind='rbd'\nceph_conf='c'").is_err());
        assert!(parse("[[pool]]\nname='a'\npath='x'\nrados_pool='rbd'").is_err());
        assert!(parse("[[pool]]\nname='a'\npath='x'\nop_timeout_secs=3").is_err());
        assert!(parse(&format!("[[pool]]\nname='a'\n{rbd}\nop_timeout_secs=0")).is_err());
        assert!(parse(&format!("[[pool]]\nname='a'\n{rbd}\nop_timeout_secs=121")).is_err());
        assert!(parse("[[pool]]\nname='a'\nkind='nfs'\npath='x'").is_err());
        assert!(parse("[[pool]]\nname='a'").is_err());
        assert!(parse("[listen]\nnbd = 'nowhere'").is_err());
    }
}
