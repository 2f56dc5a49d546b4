//! The daemon's TLS identity, made or loaded once at start and handed to every server that speaks
//! TLS: the SMI-S HTTPS listener and the NBD server's STARTTLS.
//!
//! With a configured certificate and key (PEM), those are used. Otherwise a self-signed certificate
//! is created at the first start in `DATA_DIR/tls/cert.pem` and `DATA_DIR/tls/key.pem` (the key mode
//! 0600, each written to a temporary file and renamed) and reused by every later start; its subject
//! alternative names are `localhost`, `127.0.0.1` and the configured names (an entry that parses as
//! an IP address becomes an IP SAN, anything else a DNS name). Delete the directory to get a new one.
//!
//! Invariants: only the ring crypto provider is used (one crypto library in the build); a
//! half-written pair (key without certificate) is never loaded, it is replaced; files read are
//! bounded by [`TLS_FILE_BYTES_MAX`].

use std::fs;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use cairn_smis::http::credentials::write_private_file;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Largest certificate or key file read.
pub const TLS_FILE_BYTES_MAX: u64 = 1 << 20;

/// Where the daemon's certificate comes from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsSource {
    /// PEM certificate chain to use; with `key_path`, or neither.
    pub cert_path: Option<PathBuf>,
    /// PEM private key to use; with `cert_path`, or neither.
    pub key_path: Option<PathBuf>,
    /// Data directory holding the generated certificate (`tls/` inside it).
    pub data_dir: PathBuf,
    /// Extra subject alternative names of a generated certificate (host names or IP addresses).
    pub san: Vec<String>,
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
/// client authentication. ALPN is left empty; a server that needs it clones and sets it.
pub fn load_or_create(src: &TlsSource) -> Result<Arc<rustls::ServerConfig>> {
    let (cert_path, key_path) = match (&src.cert_path, &src.key_path) {
        (Some(c), Some(k)) => (c.clone(), k.clone()),
        (None, None) => ensure_generated(src)?,
        _ => bail!("A TLS certificate and its key must be configured together"),
    };
    let certs = load_certs(&cert_path)?;
    let key = load_key(&key_path)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("Cannot select TLS versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .with_context(|| {
            format!(
                "TLS key {} does not match {}",
                key_path.display(),
                cert_path.display()
            )
        })?;
    Ok(Arc::new(config))
}

/// Makes sure the generated pair exists; returns its paths.
fn ensure_generated(src: &TlsSource) -> Result<(PathBuf, PathBuf)> {
    let cert_path = generated_cert_path(&src.data_dir);
    let key_path = generated_key_path(&src.data_dir);
    if cert_path.is_file() && key_path.is_file() {
        return Ok((cert_path, key_path));
    }
    let (cert_pem, key_pem) = generate_self_signed(&src.san)?;
    let dir = src.data_dir.join("tls");
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
    let context = "Cannot create a TLS certificate";
    let mut params = rcgen::CertificateParams::new(names).context(context)?;
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::CommonName, "Cairn storage array");
    dn.push(rcgen::DnType::OrganizationName, "Cairn");
    params.distinguished_name = dn;
    let key = rcgen::KeyPair::generate().context(context)?;
    let cert = params.self_signed(&key).context(context)?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn read_bounded(path: &Path) -> Result<Vec<u8>> {
    let file = fs::File::open(path).with_context(|| format!("Cannot open {}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(TLS_FILE_BYTES_MAX + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("Cannot read {}", path.display()))?;
    if bytes.len() as u64 > TLS_FILE_BYTES_MAX {
        bail!(
            "{} is larger than {TLS_FILE_BYTES_MAX} bytes",
            path.display()
        );
    }
    Ok(bytes)
}

fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let bytes = read_bounded(path)?;
    let certs = rustls_pemfile::certs(&mut BufReader::new(bytes.as_slice()))
        .collect::<std::result::Result<Vec<_>, _>>()
        .with_context(|| format!("Cannot parse PEM in {}", path.display()))?;
    if certs.is_empty() {
        bail!("{} holds no certificate", path.display());
    }
    Ok(certs)
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>> {
    let bytes = read_bounded(path)?;
    rustls_pemfile::private_key(&mut BufReader::new(bytes.as_slice()))
        .with_context(|| format!("Cannot parse PEM in {}", path.display()))?
        .with_context(|| format!("{} holds no private key", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn generated(dir: &Path) -> TlsSource {
        TlsSource {
            data_dir: dir.to_path_buf(),
            ..TlsSource::default()
        }
    }

    #[test]
    fn generates_once_and_reuses() {
        let dir = tempfile::tempdir().unwrap();
        let src = TlsSource {
            san: vec!["array.example".into(), "10.0.0.7".into()],
            ..generated(dir.path())
        };
        load_or_create(&src).unwrap();
        let cert = fs::read(generated_cert_path(dir.path())).unwrap();
        let key_mode = fs::metadata(generated_key_path(dir.path()))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(key_mode & 0o777, 0o600);
        load_or_create(&src).unwrap();
        assert_eq!(
            fs::read(generated_cert_path(dir.path())).unwrap(),
            cert,
            "reused"
        );
    }

    #[test]
    fn key_without_certificate_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let src = generated(dir.path());
        load_or_create(&src).unwrap();
        let key = fs::read(generated_key_path(dir.path())).unwrap();
        fs::remove_file(generated_cert_path(dir.path())).unwrap();
        load_or_create(&src).unwrap();
        assert_ne!(fs::read(generated_key_path(dir.path())).unwrap(), key);
    }

    fn failure(src: &TlsSource) -> String {
        format!("{:#}", load_or_create(src).expect_err("refused"))
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
        let src = TlsSource {
            cert_path: Some(cp.clone()),
            key_path: Some(kp),
            data_dir: data_dir.clone(),
            san: vec![],
        };
        load_or_create(&src).unwrap();
        assert!(
            !generated_cert_path(&data_dir).exists(),
            "nothing generated"
        );
        let mismatched = TlsSource {
            key_path: Some(okp),
            ..src.clone()
        };
        assert!(failure(&mismatched).contains("does not match"));
        let half = TlsSource {
            key_path: None,
            ..src.clone()
        };
        assert!(failure(&half).contains("configured together"));
        let garbage = TlsSource {
            key_path: Some(cp),
            ..src
        };
        assert!(failure(&garbage).contains("holds no private key"));
    }
}
