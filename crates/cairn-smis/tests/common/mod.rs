//! Shared set-up of the end-to-end tests: a real server (real `CimServer`, real `InteropProvider`,
//! the fixture storage provider) on 127.0.0.1 with ports picked by the system, and the clients.

#![allow(dead_code)] // each test binary uses its own part of this module

pub mod client;
pub mod fixture;

use std::net::SocketAddr;
use std::sync::Arc;

use cairn_smis::http::{start, Credentials, SmisServerConfig, SmisServerHandle};

pub const USER: &str = "admin";
pub const PASSWORD: &str = "s3cret-pw";

/// A running server and what the tests need to reach it.
pub struct TestServer {
    pub handle: SmisServerHandle,
    pub fixture: Arc<fixture::Fixture>,
    pub data_dir: tempfile::TempDir,
}

impl TestServer {
    /// HTTP and HTTPS on 127.0.0.1, free ports, small body limit for the oversized-body checks.
    pub async fn start() -> TestServer {
        TestServer::start_as(USER, PASSWORD).await
    }

    /// As [`TestServer::start`], with other credentials.
    pub async fn start_as(user: &str, password: &str) -> TestServer {
        let data_dir = tempfile::tempdir().expect("tempdir");
        let credentials = Credentials::new(user, password).expect("credentials");
        let mut cfg = SmisServerConfig::new(credentials, Some(self_signed_tls()));
        cfg.http_addr = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
        cfg.https_addr = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
        let (cim, fixture) = fixture::cim_server();
        let handle = start(cfg, cim).await.expect("server starts");
        TestServer {
            handle,
            fixture,
            data_dir,
        }
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.handle.http_addr().expect("HTTP listener")
    }

    pub fn http_url(&self) -> String {
        format!("http://{}", self.http_addr())
    }

    pub fn https_url(&self) -> String {
        format!(
            "https://{}",
            self.handle.https_addr().expect("HTTPS listener")
        )
    }
}

/// A self-signed TLS identity for `localhost` and `127.0.0.1` (clients here do not verify it).
fn self_signed_tls() -> Arc<rustls::ServerConfig> {
    let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = rcgen::CertificateParams::new(names)
        .expect("names")
        .self_signed(&key)
        .expect("certificate");
    let key = rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).expect("key DER");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], key)
        .expect("TLS configuration");
    Arc::new(config)
}
