//! Finding the daemon: on this machine through its data directory (`listen.json` for the
//! addresses, `tls/cert.pem` for the certificate to pin, `credentials` for a generated password),
//! or on another through `--url` with `--user` and a password from `CAIRN_SMIS_PASSWORD` or a
//! prompt.
//!
//! Invariant: HTTPS is preferred whenever the certificate to pin is known; plain HTTP only on
//! loopback (enforced again by the transport).

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};

use super::transport::{read_cert, Endpoint, Login, Transport};

/// Environment variable holding the SMI-S user (as for the daemon).
const ENV_USER: &str = "CAIRN_SMIS_USER";
/// Environment variable holding the SMI-S password (as for the daemon).
const ENV_PASSWORD: &str = "CAIRN_SMIS_PASSWORD";
/// User name when none is given (the daemon's default).
const DEFAULT_USER: &str = "admin";
/// Largest listen.json or credentials file the CLI reads.
const DATA_FILE_BYTES_MAX: u64 = 64 * 1024;

/// How the CLI reaches a daemon (the global options).
#[derive(Debug, Clone)]
pub struct DaemonOptions {
    pub data_dir: PathBuf,
    pub url: Option<String>,
    pub user: Option<String>,
    /// Certificate (PEM) to pin instead of the data directory's.
    pub cacert: Option<PathBuf>,
}

/// Connects (lazily: the first call opens a connection) to the daemon `opts` names.
pub fn transport(opts: &DaemonOptions) -> Result<Transport> {
    let user = opts
        .user
        .clone()
        .or_else(|| std::env::var(ENV_USER).ok())
        .unwrap_or_else(|| DEFAULT_USER.to_owned());
    let (endpoint, stored_password) = match &opts.url {
        Some(url) => (remote_endpoint(url, opts.cacert.as_deref())?, None),
        None => local_endpoint(&opts.data_dir, opts.cacert.as_deref())?,
    };
    let password = match std::env::var(ENV_PASSWORD).ok().or(stored_password) {
        Some(p) => p,
        None => rpassword::prompt_password(format!("Password for {user} at {}: ", endpoint.host))
            .map_err(|_| {
            anyhow!("No password: set {ENV_PASSWORD} or run from a terminal to be asked")
        })?,
    };
    Transport::new(endpoint, &Login { user, password })
}

fn read_small(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)?
        .take(DATA_FILE_BYTES_MAX)
        .read_to_string(&mut text)?;
    Ok(text)
}

/// The daemon on `data_dir`, and the password it generated there (if it did).
fn local_endpoint(data_dir: &Path, cacert: Option<&Path>) -> Result<(Endpoint, Option<String>)> {
    let listen_path = data_dir.join("listen.json");
    let listen = match read_small(&listen_path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "No daemon is running on {} (no listen.json): start `cairn serve --data-dir {}`, \
             or work on a pool file with --pool-file",
            data_dir.display(),
            data_dir.display()
        ),
        Err(e) => return Err(e).with_context(|| format!("Cannot read {}", listen_path.display())),
    };
    let listen: serde_json::Value = serde_json::from_str(&listen)
        .with_context(|| format!("{} is not JSON", listen_path.display()))?;
    let addr = |key: &str| -> Result<Option<SocketAddr>> {
        listen
            .get(key)
            .and_then(|v| v.as_str())
            .map(|a| {
                a.parse().with_context(|| {
                    format!("{key} in {} is not an address", listen_path.display())
                })
            })
            .transpose()
    };
    let cert_path = cacert
        .map(Path::to_path_buf)
        .unwrap_or_else(|| crate::tls::generated_cert_path(data_dir));
    let endpoint = match (addr("smis_https")?, addr("smis_http")?) {
        (Some(https), _) if cert_path.exists() => Endpoint {
            host: https.ip().to_string(),
            addr: https,
            pinned_cert: Some(read_cert(&cert_path)?),
        },
        (_, Some(http)) if http.ip().is_loopback() => Endpoint {
            host: http.ip().to_string(),
            addr: http,
            pinned_cert: None,
        },
        _ => bail!(
            "The daemon on {} has no SMI-S listener the CLI can use (HTTPS needs {}; HTTP must be \
             on loopback)",
            data_dir.display(),
            cert_path.display()
        ),
    };
    let password = match read_small(&data_dir.join("credentials")) {
        Ok(text) => text
            .lines()
            .next()
            .map(str::to_owned)
            .filter(|p| !p.is_empty()),
        Err(_) => None,
    };
    Ok((endpoint, password))
}

/// `https://host[:port]` (default 5989) or `http://host[:port]` (default 5988).
fn remote_endpoint(url: &str, cacert: Option<&Path>) -> Result<Endpoint> {
    let (tls, rest) = if let Some(rest) = url.strip_prefix("https://") {
        (true, rest)
    } else if let Some(rest) = url.strip_prefix("http://") {
        (false, rest)
    } else {
        bail!("--url {url}: give https://host:5989 (or http://127.0.0.1:5988)");
    };
    let authority = rest.split('/').next().unwrap_or(rest);
    let (host, port) = split_host_port(authority, if tls { 5989 } else { 5988 })?;
    let addr = (host.as_str(), port)
        .to_socket_addrs()
        .with_context(|| format!("Cannot resolve {host}"))?
        .next()
        .ok_or_else(|| anyhow!("{host} has no address"))?;
    let pinned_cert = match (tls, cacert) {
        (true, Some(path)) => Some(read_cert(path)?),
        (true, None) => bail!(
            "--url {url}: give --cacert with the daemon's certificate (DATA_DIR/tls/cert.pem on \
             that node) to trust it"
        ),
        (false, _) => None,
    };
    Ok(Endpoint {
        host,
        addr,
        pinned_cert,
    })
}

fn split_host_port(authority: &str, default_port: u16) -> Result<(String, u16)> {
    let bad = || anyhow!("{authority} is not host:port");
    if let Some(v6) = authority.strip_prefix('[') {
        let (host, rest) = v6.split_once(']').ok_or_else(bad)?;
        let port = match rest.strip_prefix(':') {
            Some(p) => p.parse().map_err(|_| bad())?,
            None if rest.is_empty() => default_port,
            None => return Err(bad()),
        };
        return Ok((host.to_owned(), port));
    }
    match authority.rsplit_once(':') {
        Some((host, port)) => Ok((host.to_owned(), port.parse().map_err(|_| bad())?)),
        None => Ok((authority.to_owned(), default_port)),
    }
}
