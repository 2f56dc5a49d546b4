//! Shared helpers for the end-to-end tests: locating the built `cairn` binary, starting a daemon on a
//! temporary data directory with every listener on an ephemeral loopback port, and waiting for it to
//! say it is ready (its "ready" log line, written after `listen.json`) — never sleeping for readiness.
//!
//! Invariant: a [`Daemon`] that goes out of scope is killed, so a failing test leaves no process behind.
#![forbid(unsafe_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{bail, Context, Result};

pub mod ceph;
pub mod fixture;
pub mod iscsi;
pub mod nbd;

/// Longest time a daemon may take to open its pools and bind its listeners.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// The built `cairn` binary: `CAIRN_BIN`, or `cairn` next to the test executable's `deps/` directory.
pub fn cairn_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("CAIRN_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executable lives in target/<profile>/deps");
    let bin = dir.join("cairn");
    assert!(
        bin.exists(),
        "{} not found: `cargo test --workspace` builds it (or set CAIRN_BIN)",
        bin.display()
    );
    bin
}

/// The Python interpreter with pywbem: `CAIRN_TEST_PYTHON`, or `/work/venv/bin/python`.
pub fn python() -> PathBuf {
    let python = std::env::var_os("CAIRN_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/work/venv/bin/python"));
    assert!(
        python.exists(),
        "{} not found: set CAIRN_TEST_PYTHON to a python with pywbem (.ci/run makes one)",
        python.display()
    );
    python
}

/// Runs one step of the pywbem script `tests/py/SCRIPT` against the daemon's SMI-S HTTP
/// listener (user admin, password secret, as [`test_config`] sets); its one-line JSON result.
pub fn smis_step(daemon: &Daemon, script: &str, args: &[&str]) -> serde_json::Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("py")
        .join(script);
    let url = format!("http://{}", daemon.listen.smis_http.expect("SMI-S HTTP"));
    let out = Command::new(python())
        .arg(path)
        .args([url.as_str(), "admin", "secret"])
        .args(args)
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "{script} {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("one JSON line")
}

/// Runs `cairn ARGS` to completion and returns (status, stdout, stderr).
pub fn cairn(args: &[&str]) -> Result<(ExitStatus, String, String)> {
    let out = Command::new(cairn_bin())
        .args(args)
        .output()
        .context("cannot run cairn")?;
    Ok((
        out.status,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// Runs `qemu-io -f raw -c COMMAND... nbd://ADDR/EXPORT` against the daemon's NBD listener; true if
/// every command succeeded (qemu-io reports a failed `read -P` pattern check as "failed").
pub fn qemu_io(daemon: &Daemon, export: &str, commands: &[&str]) -> bool {
    let url = format!("nbd://{}/{export}", daemon.listen.nbd.expect("NBD"));
    let mut cmd = Command::new("qemu-io");
    cmd.args(["-f", "raw"]);
    for c in commands {
        cmd.args(["-c", c]);
    }
    let out = cmd.arg(&url).output().expect("qemu-io (apt: qemu-utils)");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    eprintln!("qemu-io {export} {commands:?}: {text}");
    out.status.success() && !text.contains("failed") && !text.contains("error")
}

/// Addresses the daemon bound, from its `listen.json`.
#[derive(Debug, Clone)]
pub struct Listen {
    pub smis_http: Option<SocketAddr>,
    pub smis_https: Option<SocketAddr>,
    pub nbd: Option<SocketAddr>,
    pub iscsi: Option<SocketAddr>,
}

/// A running `cairn serve` on a data directory.
pub struct Daemon {
    child: Option<Child>,
    pub data_dir: PathBuf,
    pub listen: Listen,
    log: mpsc::Receiver<String>,
}

/// Config for a test daemon: every listener on an ephemeral loopback port, periodic commit off
/// unless `extra` says otherwise, fixed credentials.
pub fn test_config(extra: &str) -> String {
    format!(
        "[listen]\nsmis_http = \"127.0.0.1:0\"\nsmis_https = \"127.0.0.1:0\"\nnbd = \"127.0.0.1:0\"\niscsi = \"127.0.0.1:0\"\n\
         [auth]\nuser = \"admin\"\npassword = \"secret\"\n{extra}"
    )
}

impl Daemon {
    /// Starts `cairn serve --data-dir DATA_DIR --config DATA_DIR/cairn.toml` with `config` and waits
    /// until it reports ready.
    pub fn start(data_dir: &Path, config: &str) -> Result<Daemon> {
        std::fs::create_dir_all(data_dir)?;
        let config_path = data_dir.join("cairn.toml");
        std::fs::write(&config_path, config)?;
        let mut child = Command::new(cairn_bin())
            .arg("serve")
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--config")
            .arg(&config_path)
            .env_remove("CAIRN_SMIS_USER")
            .env_remove("CAIRN_SMIS_PASSWORD")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("cannot start cairn serve")?;
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, log) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(|l| l.ok()) {
                eprintln!("[cairn] {line}");
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut daemon = Daemon {
            child: Some(child),
            data_dir: data_dir.to_path_buf(),
            listen: Listen {
                smis_http: None,
                smis_https: None,
                nbd: None,
                iscsi: None,
            },
            log,
        };
        daemon.wait_for_log("ready", READY_TIMEOUT)?;
        daemon.listen = read_listen(data_dir)?;
        Ok(daemon)
    }

    /// Waits until a log line containing `needle` appears (or the daemon exits / time runs out).
    pub fn wait_for_log(&mut self, needle: &str, timeout: Duration) -> Result<String> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.log.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return Ok(line),
                Ok(_) => continue,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    bail!("daemon did not log '{needle}' within {timeout:?}")
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = self.child.as_mut().and_then(|c| c.wait().ok());
                    bail!("daemon exited ({status:?}) before logging '{needle}'")
                }
            }
        }
    }

    /// The daemon's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running daemon").id()
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn stop(mut self) -> Result<ExitStatus> {
        self.terminate()
    }

    fn terminate(&mut self) -> Result<ExitStatus> {
        let pid = self.pid();
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .status()?;
        assert!(status.success(), "kill -TERM failed");
        let mut child = self.child.take().expect("running daemon");
        Ok(child.wait()?)
    }

    /// Sends SIGTERM and asserts the daemon shut down cleanly (exit status 0); otherwise panics
    /// with the status and every log line the daemon wrote since the last one waited for.
    pub fn stop_cleanly(mut self) {
        let status = self.terminate().expect("stop the daemon");
        if !status.success() {
            // The log channel closes when the daemon's stderr ends, so this takes every line.
            let tail: Vec<String> = self.log.iter().collect();
            panic!(
                "daemon exited with {status} after SIGTERM; its log since the last wait:\n{}",
                tail.join("\n")
            );
        }
    }

    /// Kills the daemon without letting it shut down (a crash).
    pub fn kill(mut self) -> Result<()> {
        self.child.as_mut().expect("running daemon").kill()?;
        let mut child = self.child.take().expect("running daemon");
        child.wait()?;
        Ok(())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn read_listen(data_dir: &Path) -> Result<Listen> {
    let path = data_dir.join("listen.json");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let value: serde_json::Value = serde_json::from_str(&text)?;
    let addr = |key: &str| -> Result<Option<SocketAddr>> {
        match value.get(key).and_then(|v| v.as_str()) {
            Some(text) => Ok(Some(text.parse().with_context(|| format!("bad {key}"))?)),
            None => Ok(None),
        }
    };
    Ok(Listen {
        smis_http: addr("smis_http")?,
        smis_https: addr("smis_https")?,
        nbd: addr("nbd")?,
        iscsi: addr("iscsi")?,
    })
}
