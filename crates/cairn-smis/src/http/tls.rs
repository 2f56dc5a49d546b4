//! The TLS identity of the daemon, shared by the HTTPS listener and the NBD server's STARTTLS.
//!
//! With a configured certificate and key (PEM), those are used. Otherwise a self-signed certificate
//! is created at the first start in `DATA_DIR/tls/cert.pem` and `DATA_DIR/tls/key.pem` (the key mode
//! 0600, each written to a temporary file and renamed) and reused by every later start; its subject
//! alternative names are `localhost`, `127.0.0.1` and the configured names (an entry that parses as
//! an IP address becomes an IP SAN, anything else a DNS name). Delete the directory to get a new one.
//!
//! Invariants: only the ring crypto provider is used (one crypto library in the build); a
//! half-written pair (key without certificate) is never loaded, it is replaced.

use std::fs;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::{Error, ErrorKind, Result};
use crate::http::credentials::{io_error, write_private_file};
use crate::limits::DATA_FILE_BYTES_MAX;

/// Where the TLS certificate comes from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsConfig {
    /// PEM certificate chain to use; with `key_path`, or neither.
    pub cert_path: Option<PathBuf>,
    /// PEM private key to use; with `cert_path`, or neither.
    pub key_path: Option<PathBuf>,
    /// Data directory holding the generated certificate (`tls/` inside it).
    pub data_dir: PathBuf,
    /// Extra subject alternative names of a generated certificate (host names or IP addresses).
    pub san: Vec<String>,
}

impl TlsConfig {
    /// A configuration that generates (or reuses) a self-signed certificate in `data_dir`.
    pub fn generated(data_dir: impl Into<PathBuf>) -> TlsConfig {
        TlsConfig {
            data_dir: data_dir.into(),
            ..TlsConfig::default()
        }
    }
}

/// Path of the generated certificate in `data_dir`.
pub fn generated_cert_path(data_dir: &Path) -> PathBuf {
    data_dir.join("tls").join("cert.pem")
}

/// Path of the generated private key in `data_dir`.
pub fn generated_key_path(data_dir: &Path) -> PathBuf {
    data_dir.join("tls").join("key.pem")
}

/// Loads the configured certificate, or the generated one (creating it if needed), and builds a
/// rustls server configuration on the ring provider with safe default protocol versions and no
/// client authentication. ALPN is left empty; a caller that needs it clones and sets it.
pub fn load_or_create_tls(cfg: &TlsConfig) -> Result<Arc<rustls::ServerConfig>> {
    let (cert_path, key_path) = match (&cfg.cert_path, &cfg.key_path) {
        (Some(c), Some(k)) => (c.clone(), k.clone()),
        (None, None) => ensure_generated(cfg)?,
        _ => {
            return Err(Error::new(
                ErrorKind::Config,
                "A TLS certificate and its key must be configured together",
            ))
        }
    };
    let certs = load_certs(&cert_path)?;
    let key = load_key(&key_path)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::with_source(ErrorKind::Tls, "Cannot select TLS versions", e))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            let context = format!(
                "{} does not match {}",
                key_path.display(),
                cert_path.display()
            );
            Error::with_source(ErrorKind::Tls, context, e)
        })?;
    Ok(Arc::new(config))
}

/// Makes sure the generated pair exists; returns its paths.
fn ensure_generated(cfg: &TlsConfig) -> Result<(PathBuf, PathBuf)> {
    let cert_path = generated_cert_path(&cfg.data_dir);
    let key_path = generated_key_path(&cfg.data_dir);
    if cert_path.is_file() && key_path.is_file() {
        return Ok((cert_path, key_path));
    }
    let (cert_pem, key_pem) = generate_self_signed(&cfg.san)?;
    let dir = cfg.data_dir.join("tls");
    // Key first: the certificate's presence marks a complete pair.
    write_private_file(&dir, &key_path, key_pem.as_bytes())?;
    write_private_file(&dir, &cert_path, cert_pem.as_bytes())?;
    tracing::info!(path = %cert_path.display(), "created a self-signed TLS certificate");
    Ok((cert_path, key_path))
}

/// A self-signed certificate for `localhost`, `127.0.0.1` and `extra_names`: (certificate PEM, key PEM).
pub fn generate_self_signed(extra_names: &[String]) -> Result<(String, String)> {
    let mut names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
    for name in extra_names {
        if !names.contains(name) {
            names.push(name.clone());
        }
    }
    let tls_err =
        |e: rcgen::Error| Error::with_source(ErrorKind::Tls, "Cannot create certificate", e);
    let mut params = rcgen::CertificateParams::new(names).map_err(tls_err)?;
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::CommonName, "Cairn SMI-S provider");
    dn.push(rcgen::DnType::OrganizationName, "Cairn");
    params.distinguished_name = dn;
    let key = rcgen::KeyPair::generate().map_err(tls_err)?;
    let cert = params.self_signed(&key).map_err(tls_err)?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn read_bounded(path: &Path) -> Result<Vec<u8>> {
    let file = fs::File::open(path).map_err(|e| io_error("Cannot open", path, e))?;
    let mut bytes = Vec::new();
    file.take(DATA_FILE_BYTES_MAX + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| io_error("Cannot read", path, e))?;
    if bytes.len() as u64 > DATA_FILE_BYTES_MAX {
        let context = format!(
            "{} is larger than {DATA_FILE_BYTES_MAX} bytes",
            path.display()
        );
        return Err(Error::new(ErrorKind::Tls, context));
    }
    Ok(bytes)
}

fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let bytes = read_bounded(path)?;
    let certs = rustls_pemfile::certs(&mut BufReader::new(bytes.as_slice()))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| io_error("Cannot parse PEM in", path, e))?;
    if certs.is_empty() {
        let context = format!("{} holds no certificate", path.display());
        return Err(Error::new(ErrorKind::Tls, context));
    }
    Ok(certs)
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>> {
    let bytes = read_bounded(path)?;
    rustls_pemfile::private_key(&mut BufReader::new(bytes.as_slice()))
        .map_err(|e| io_error("Cannot parse PEM in", path, e))?
        .ok_or_else(|| {
            Error::new(
                ErrorKind::Tls,
                format!("{} holds no private key", path.display()),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn generates_once_and_reuses() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = TlsConfig {
            san: vec!["array.example".into(), "10.0.0.7".into()],
            ..TlsConfig::generated(dir.path())
        };
        load_or_create_tls(&cfg).unwrap();
        let cert = fs::read(generated_cert_path(dir.path())).unwrap();
        let key_mode = fs::metadata(generated_key_path(dir.path()))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(key_mode & 0o777, 0o600);
        load_or_create_tls(&cfg).unwrap();
        assert_eq!(
            fs::read(generated_cert_path(dir.path())).unwrap(),
            cert,
            "reused"
        );
    }

    #[test]
    fn key_without_certificate_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = TlsConfig::generated(dir.path());
        load_or_create_tls(&cfg).unwrap();
        let key = fs::read(generated_key_path(dir.path())).unwrap();
        fs::remove_file(generated_cert_path(dir.path())).unwrap();
        load_or_create_tls(&cfg).unwrap();
        assert_ne!(fs::read(generated_key_path(dir.path())).unwrap(), key);
    }

    #[test]
    fn configured_pair_is_used_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = generate_self_signed(&[]).unwrap();
        let (_, other_key) = generate_self_signed(&[]).unwrap();
        let (cp, kp, okp) = (
            dir.path().join("c.pem"),
            dir.path().join("k.pem"),
            dir.path().join("o.pem"),
        );
        fs::write(&cp, cert).unwrap();
        fs::write(&kp, key).unwrap();
        fs::write(&okp, other_key).unwrap();
        let data_dir = dir.path().join("data");
        let cfg = TlsConfig {
            cert_path: Some(cp.clone()),
            key_path: Some(kp),
            data_dir: data_dir.clone(),
            san: vec![],
        };
        load_or_create_tls(&cfg).unwrap();
        assert!(
            !generated_cert_path(&data_dir).exists(),
            "nothing generated"
        );
        let mismatched = TlsConfig {
            key_path: Some(okp),
            ..cfg.clone()
        };
        assert_eq!(
            load_or_create_tls(&mismatched).unwrap_err().kind(),
            ErrorKind::Tls
        );
        let half = TlsConfig {
            key_path: None,
            ..cfg.clone()
        };
        assert_eq!(
            load_or_create_tls(&half).unwrap_err().kind(),
            ErrorKind::Config
        );
        let garbage = TlsConfig {
            key_path: Some(cp),
            ..cfg
        };
        assert_eq!(
            load_or_create_tls(&garbage).unwrap_err().kind(),
            ErrorKind::Tls
        );
    }
}
