//! Shared set-up of the array model's end-to-end tests: real file-backed engine pools in a
//! temporary directory, the real `ArrayProvider` inside the real `InteropProvider` and `CimServer`,
//! served by the real HTTP server on 127.0.0.1 (port picked by the system), and pywbem scripts
//! (`tests/py/provider_*.py`) run with the Python from `CAIRN_TEST_PYTHON` (default
//! `/work/venv/bin/python`).

#![allow(dead_code)] // each test binary uses its own part of this module

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cairn_engine::{Pool, PoolOptions, Storage, VolumeId, VolumeInfo};
use cairn_io::FileDevice;
use cairn_smis::http::{start, Credentials, SmisServerConfig, SmisServerHandle};
use cairn_smis::{ArrayOptions, ArrayProvider};

pub const USER: &str = "admin";
pub const PASSWORD: &str = "array-test-pw";
pub const SYSTEM: &str = "CAIRN-ARRAY-TEST";
pub const MIB: u64 = 1 << 20;

/// Opens (creating when missing) file pools `name.img` of the given sizes under `dir`.
pub fn open_storage(dir: &Path, pools: &[(&str, u64)]) -> Arc<Storage> {
    let storage = Storage::new();
    for (name, size) in pools {
        let path = dir.join(format!("{name}.img"));
        let exists = path.exists();
        let dev = FileDevice::open(&path, Some(*size)).expect("pool file");
        let opts = PoolOptions::default();
        let pool = if exists {
            Pool::open(Arc::new(dev), opts).expect("open pool")
        } else {
            Pool::create(Arc::new(dev), name, opts).expect("create pool")
        };
        storage.add_pool(pool).expect("add pool");
    }
    Arc::new(storage)
}

/// A running array: storage, provider and server.
pub struct Array {
    pub storage: Arc<Storage>,
    pub provider: Arc<ArrayProvider>,
    pub handle: SmisServerHandle,
    pub jobs_path: PathBuf,
}

impl Array {
    /// Serves `storage` with default options (jobs file `jobs.json` in `dir`).
    pub async fn start(dir: &Path, storage: Arc<Storage>) -> Array {
        Array::start_with(dir, storage, |_| {}).await
    }

    /// As [`Array::start`], with the options changed by `f`.
    pub async fn start_with(
        dir: &Path,
        storage: Arc<Storage>,
        f: impl FnOnce(&mut ArrayOptions),
    ) -> Array {
        let jobs_path = dir.join("jobs.json");
        let mut opts = ArrayOptions::new(SYSTEM);
        opts.jobs_path = Some(jobs_path.clone());
        f(&mut opts);
        let provider = ArrayProvider::new(storage.clone(), opts);
        let cim = provider.cim_server();
        let credentials = Credentials::new(USER, PASSWORD).expect("credentials");
        let mut cfg = SmisServerConfig::new(credentials, None);
        cfg.http_addr = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
        cfg.https_addr = None;
        let handle = start(cfg, cim).await.expect("server starts");
        Array {
            storage,
            provider,
            handle,
            jobs_path,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.handle.http_addr().expect("HTTP listener"))
    }

    /// Runs `tests/py/<script>` against this array; returns the JSON it printed last.
    pub async fn py(&self, script: &str, extra: &[&str]) -> serde_json::Value {
        run_py(script, &self.url(), extra).await
    }

    /// Every volume of every pool, hidden ones included.
    pub fn all_volumes(&self) -> Vec<VolumeInfo> {
        all_volumes(&self.storage)
    }

    /// Asserts every pool passes its check.
    pub fn assert_clean(&self) {
        assert_clean(&self.storage);
    }
}

pub fn all_volumes(storage: &Storage) -> Vec<VolumeInfo> {
    storage.pools().iter().flat_map(|p| p.volumes()).collect()
}

pub fn assert_clean(storage: &Storage) {
    for p in storage.pools() {
        p.wait_reclaim().expect("reclaim");
        let report = p.check().expect("check runs");
        assert!(
            report.is_clean(),
            "pool {} not clean: {:?}",
            p.name(),
            report.findings.len()
        );
    }
}

/// A deterministic pattern for `len` bytes, different per `seed`.
pub fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// Reads the whole volume `id`.
pub fn read_all(storage: &Storage, id: VolumeId) -> Vec<u8> {
    let (pool, v) = storage.find_volume_by_id(id).expect("volume exists");
    let mut buf = vec![0; v.size_bytes as usize];
    pool.read(id, 0, &mut buf).expect("read");
    buf
}

/// The Python interpreter that has pywbem.
pub fn python() -> PathBuf {
    let python = std::env::var_os("CAIRN_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/work/venv/bin/python"));
    assert!(
        python.exists(),
        "Python for the pywbem tests not found at {}: set CAIRN_TEST_PYTHON to a python with pywbem",
        python.display()
    );
    python
}

/// Runs `tests/py/<script> URL USER PASSWORD extra...`, failing the test unless it exits 0.
pub async fn run_py(script: &str, url: &str, extra: &[&str]) -> serde_json::Value {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("py");
    let out = tokio::process::Command::new(python())
        .arg(dir.join(script))
        .args([url, USER, PASSWORD])
        .args(extra)
        .kill_on_drop(true)
        .output()
        .await
        .expect("start python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{script} failed: {}\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line)
        .unwrap_or_else(|e| panic!("{script} printed no JSON ({e}): {stdout}"))
}
