//! External clients for the end-to-end tests: the Python interpreter with pywbem (from
//! `CAIRN_TEST_PYTHON`, default `/work/venv/bin/python`), `pywbemcli` beside it, `wbemcli` on the
//! `PATH`, and a raw HTTP/1.1 client for requests no library would send.
//!
//! A missing client is a test failure with a message saying what to install, never a skip.

use std::path::{Path, PathBuf};
use std::process::Output;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// The Python interpreter that has pywbem.
pub fn python() -> PathBuf {
    let python = std::env::var_os("CAIRN_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/work/venv/bin/python"));
    assert!(
        python.exists(),
        "Python for the pywbem tests not found at {}: set CAIRN_TEST_PYTHON to a python with \
         pywbem and pywbemtools installed (pip install pywbem pywbemtools)",
        python.display()
    );
    python
}

/// `pywbemcli` from the same environment as [`python`].
pub fn pywbemcli() -> PathBuf {
    let python = python();
    let cli = python.parent().unwrap_or(Path::new(".")).join("pywbemcli");
    assert!(
        cli.exists(),
        "pywbemcli not found at {} (beside {}): pip install pywbemtools in that environment",
        cli.display(),
        python.display()
    );
    cli
}

/// `wbemcli` (Debian package sblim-wbemcli) from the `PATH`.
pub fn wbemcli() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join("wbemcli"))
        .find(|p| p.is_file())
        .expect("wbemcli not found on PATH: apt-get install sblim-wbemcli")
}

fn scripts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("py")
}

/// A client command with an environment that cannot override its TLS settings: python-requests
/// lets `REQUESTS_CA_BUNDLE`/`CURL_CA_BUNDLE` turn verification back on even when pywbem turns
/// it off, so they are removed.
pub fn command(program: impl AsRef<std::ffi::OsStr>) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(program);
    cmd.env_remove("REQUESTS_CA_BUNDLE")
        .env_remove("CURL_CA_BUNDLE")
        .kill_on_drop(true);
    cmd
}

/// Runs a command to completion, failing the test with its output if it did not exit 0.
pub async fn run_ok(cmd: &mut tokio::process::Command) -> Output {
    let out = cmd.output().await.expect("cannot start client");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs `tests/py/<script>` with `url user password extra...`; returns the JSON it printed.
pub async fn run_py(
    script: &str,
    url: &str,
    user: &str,
    password: &str,
    extra: &[&str],
) -> serde_json::Value {
    let mut cmd = command(python());
    cmd.arg(scripts_dir().join(script))
        .args([url, user, password])
        .args(extra);
    let out = run_ok(&mut cmd).await;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{script} printed no JSON ({e}): {text}"))
}

/// One HTTP response as the raw client read it.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A raw HTTP/1.1 connection.
pub struct RawConn {
    stream: BufReader<TcpStream>,
}

impl RawConn {
    pub async fn connect(addr: std::net::SocketAddr) -> RawConn {
        RawConn {
            stream: BufReader::new(TcpStream::connect(addr).await.expect("connect")),
        }
    }

    /// Sends bytes as they are.
    pub async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.get_mut().write_all(bytes).await
    }

    /// Sends a request and reads its response.
    pub async fn exchange(&mut self, request: &[u8]) -> Reply {
        self.send(request).await.expect("send");
        self.read_reply().await
    }

    /// Reads one response: status line, headers, `Content-Length` body.
    pub async fn read_reply(&mut self) -> Reply {
        read_reply(&mut self.stream).await
    }
}

/// Reads one response from any byte stream.
pub async fn read_reply_from<R: AsyncRead + Unpin>(stream: R) -> Reply {
    read_reply(&mut BufReader::new(stream)).await
}

/// Reads one final response, skipping interim `1xx` ones.
async fn read_reply<R: AsyncRead + Unpin>(r: &mut BufReader<R>) -> Reply {
    loop {
        let reply = read_one(r).await;
        if !(100..200).contains(&reply.status) {
            return reply;
        }
    }
}

async fn read_one<R: AsyncRead + Unpin>(r: &mut BufReader<R>) -> Reply {
    let mut line = String::new();
    r.read_line(&mut line).await.expect("read status line");
    let status = line.split(' ').nth(1).and_then(|s| s.parse().ok());
    let status = status.unwrap_or_else(|| panic!("not an HTTP status line: {line:?}"));
    let mut headers = Vec::new();
    loop {
        line.clear();
        r.read_line(&mut line).await.expect("read header");
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let (n, v) = l.split_once(':').expect("header line");
        headers.push((n.trim().to_owned(), v.trim().to_owned()));
    }
    let mut reply = Reply {
        status,
        headers,
        body: Vec::new(),
    };
    let len = reply
        .header("content-length")
        .map_or(0, |v| v.parse().expect("Content-Length"));
    reply.body = vec![0; len];
    r.read_exact(&mut reply.body).await.expect("read body");
    reply
}

/// A CIM-XML operation request: `POST /cimom` with the given extra headers and body.
pub fn cim_post(extra_headers: &str, body: &str) -> Vec<u8> {
    format!(
        "POST /cimom HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/xml; charset=\"utf-8\"\r\n\
         Content-Length: {}\r\n{extra_headers}\r\n{body}",
        body.len()
    )
    .into_bytes()
}
