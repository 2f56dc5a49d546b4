//! A connection to a Ceph cluster and the pools opened through it.
//!
//! Invariants: a [`Cluster`] connects with `client_mount_timeout` and the RADOS operation timeouts
//! set (bounded by [`crate::limits`]), so a missing cluster fails within seconds instead of librados's 300 s;
//! the librados handle lives until the last [`Cluster`], [`Pool`] or [`crate::Image`] made from it
//! is dropped, and is shut down exactly once, after all of them.

use std::ffi::{CStr, CString};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{check, Error, ErrorKind, Result};
use crate::ffi;
use crate::limits;

/// How to reach a cluster: its configuration file, the cephx user and that user's keyring.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectOptions {
    /// The cluster's `ceph.conf` (monitor addresses, fsid).
    pub conf_path: PathBuf,
    /// The cephx entity, `client.NAME` or just `NAME`.
    pub client_name: String,
    /// The user's keyring; `None` keeps what the configuration file names.
    pub keyring_path: Option<PathBuf>,
    /// `rados_osd_op_timeout` and `rados_mon_op_timeout`: how long one operation waits before
    /// it fails (and the connection is given up), in seconds; [`limits::OP_TIMEOUT_S`] by
    /// default, at most [`limits::OP_TIMEOUT_S_MAX`].
    pub op_timeout_s: u32,
}

/// The librados handle, shut down when the last owner drops it.
pub(crate) struct Handle {
    pub(crate) raw: ffi::RadosT,
}

// SAFETY: a `rados_t` is thread-safe once connected (librados serialises on its own locks), and it
// is only mutated (configured) before it is shared.
unsafe impl Send for Handle {}
// SAFETY: as for `Send`; every call made through `&Handle` is one librados documents as
// thread-safe.
unsafe impl Sync for Handle {}

impl Drop for Handle {
    fn drop(&mut self) {
        // SAFETY: `raw` came from `rados_create2`, and every pool and image holds an `Arc` of this
        // handle, so none is left that could still use it.
        unsafe { ffi::rados_shutdown(self.raw) }
    }
}

/// A connected cluster.
#[derive(Clone)]
pub struct Cluster {
    handle: Arc<Handle>,
}

pub(crate) fn cstring(s: &str, what: &str) -> Result<CString> {
    CString::new(s).map_err(|_| {
        Error::new(
            ErrorKind::InvalidArgument,
            format!("{what} {s:?} holds a NUL byte"),
        )
    })
}

fn path_cstring(p: &Path, what: &str) -> Result<CString> {
    let s = p.to_str().ok_or_else(|| {
        Error::new(
            ErrorKind::InvalidArgument,
            format!("{what} {p:?} is not UTF-8"),
        )
    })?;
    cstring(s, what)
}

impl Handle {
    fn set(&self, option: &str, value: &str) -> Result<()> {
        let (o, v) = (cstring(option, "option")?, cstring(value, "value")?);
        // SAFETY: both strings outlive the call, which copies them.
        let rc = unsafe { ffi::rados_conf_set(self.raw, o.as_ptr(), v.as_ptr()) };
        check(rc.into(), || format!("setting {option} = {value}")).map(drop)
    }

    fn configure(&self, opts: &ConnectOptions) -> Result<()> {
        let conf = path_cstring(&opts.conf_path, "configuration file")?;
        // SAFETY: `conf` outlives the call, which only reads it.
        let rc = unsafe { ffi::rados_conf_read_file(self.raw, conf.as_ptr()) };
        check(rc.into(), || {
            format!("reading {}", opts.conf_path.display())
        })?;
        if let Some(keyring) = &opts.keyring_path {
            let keyring = keyring.to_str().ok_or_else(|| {
                Error::new(ErrorKind::InvalidArgument, "keyring path is not UTF-8")
            })?;
            self.set("keyring", keyring)?;
        }
        self.set("client_mount_timeout", &limits::MOUNT_TIMEOUT_S.to_string())?;
        let op_timeout_s = opts.op_timeout_s.clamp(1, limits::OP_TIMEOUT_S_MAX);
        self.set("rados_osd_op_timeout", &op_timeout_s.to_string())?;
        self.set("rados_mon_op_timeout", &op_timeout_s.to_string())?;
        // A discard must leave its whole range reading as zeros, also its unaligned edges.
        self.set("rbd_skip_partial_discard", "false")?;
        // librbd's cache stays writethrough until a client's first flush unless told otherwise,
        // and a host that never flushes (fio, a page cache that writes back slowly) would pay a
        // round trip per write. Writes without FUA need not be durable until a flush, which
        // NBD and iSCSI (write cache enabled) both say; every FUA and FLUSH is an rbd flush.
        self.set("rbd_cache_writethrough_until_flush", "false")
    }
}

impl Cluster {
    /// Connects, failing within about [`limits::MOUNT_TIMEOUT_S`] if no monitor answers.
    pub fn connect(opts: &ConnectOptions) -> Result<Cluster> {
        let name = if opts.client_name.contains('.') {
            opts.client_name.clone()
        } else {
            format!("client.{}", opts.client_name)
        };
        let c_name = cstring(&name, "client name")?;
        let mut raw: ffi::RadosT = std::ptr::null_mut();
        // SAFETY: `raw` is written by the call; the strings outlive it and are copied.
        let rc = unsafe { ffi::rados_create2(&mut raw, c"ceph".as_ptr(), c_name.as_ptr(), 0) };
        check(rc.into(), || format!("creating a RADOS handle for {name}"))?;
        let handle = Handle { raw };
        handle.configure(opts)?;
        // SAFETY: the handle is configured and not yet shared; on failure `Drop` shuts it down.
        let rc = unsafe { ffi::rados_connect(handle.raw) };
        check(rc.into(), || {
            format!("connecting as {name} with {}", opts.conf_path.display())
        })
        .map_err(|e| match e.kind() {
            ErrorKind::InvalidArgument | ErrorKind::Io => {
                Error::new(ErrorKind::Unavailable, format!("connecting as {name}: {e}"))
            }
            _ => e,
        })?;
        Ok(Cluster {
            handle: Arc::new(handle),
        })
    }

    /// The cluster's fsid as 16 bytes.
    pub fn fsid(&self) -> Result<[u8; 16]> {
        let mut buf = [0u8; 64];
        // SAFETY: `buf` is ours and outlives the call, which writes at most `buf.len()` bytes.
        let rc =
            unsafe { ffi::rados_cluster_fsid(self.handle.raw, buf.as_mut_ptr().cast(), buf.len()) };
        check(rc.into(), || "reading the cluster fsid".into())?;
        let text = CStr::from_bytes_until_nul(&buf)
            .ok()
            .and_then(|s| s.to_str().ok())
            .unwrap_or("");
        parse_uuid(text).ok_or_else(|| {
            Error::new(
                ErrorKind::Io,
                format!("cluster fsid {text:?} is not a UUID"),
            )
        })
    }

    /// Opens the RADOS pool `name` for image operations.
    pub fn pool(&self, name: &str) -> Result<Pool> {
        let c_name = cstring(name, "pool name")?;
        let mut raw: ffi::RadosIoctxT = std::ptr::null_mut();
        // SAFETY: the handle is connected; `raw` is written by the call; `c_name` outlives it.
        let rc = unsafe { ffi::rados_ioctx_create(self.handle.raw, c_name.as_ptr(), &mut raw) };
        check(rc.into(), || format!("opening pool {name:?}"))?;
        Ok(Pool {
            raw,
            name: name.to_string(),
            cluster: self.handle.clone(),
        })
    }
}

/// A UUID's 32 hex digits (dashes ignored) as bytes.
fn parse_uuid(text: &str) -> Option<[u8; 16]> {
    let hex: Vec<u8> = text.bytes().filter(|&b| b != b'-').collect();
    if hex.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, pair) in hex.chunks(2).enumerate() {
        let s = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(s, 16).ok()?;
    }
    Some(out)
}

/// A pool's space, as [`Pool::usage`] reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Usage {
    pub used_bytes: u64,
    pub quota_bytes: Option<u64>,
    pub cluster_free_bytes: u64,
}

/// `s` as a JSON string literal (pool names are plain, but quote what must be quoted).
fn json_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `quota_max_bytes` of an `osd pool get-quota` JSON answer.
fn quota_max_bytes(answer: &str) -> Option<u64> {
    let at = answer.find("\"quota_max_bytes\"")? + "\"quota_max_bytes\"".len();
    let rest = answer[at..].trim_start().strip_prefix(':')?.trim_start();
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().ok()
}

impl Handle {
    /// Runs one monitor command (JSON); its output.
    fn mon_command(&self, cmd: &str) -> Result<String> {
        let c_cmd = cstring(cmd, "monitor command")?;
        let mut argv = [c_cmd.as_ptr()];
        let (mut out, mut out_len) = (std::ptr::null_mut(), 0usize);
        let (mut status, mut status_len) = (std::ptr::null_mut(), 0usize);
        // SAFETY: `argv` holds one string that outlives the call; the four out-parameters are
        // ours and written by it; the buffers it allocates are freed below, once each.
        let rc = unsafe {
            ffi::rados_mon_command(
                self.raw,
                argv.as_mut_ptr(),
                1,
                std::ptr::null(),
                0,
                &mut out,
                &mut out_len,
                &mut status,
                &mut status_len,
            )
        };
        let text = if out.is_null() {
            String::new()
        } else {
            // SAFETY: librados gave `out_len` bytes at `out`, alive until freed just below.
            let bytes = unsafe { std::slice::from_raw_parts(out.cast::<u8>(), out_len) };
            String::from_utf8_lossy(bytes).into_owned()
        };
        for buf in [out, status] {
            if !buf.is_null() {
                // SAFETY: allocated by `rados_mon_command` for us, freed once.
                unsafe { ffi::rados_buffer_free(buf) };
            }
        }
        check(rc.into(), || format!("monitor command {cmd}"))?;
        Ok(text)
    }
}

/// An opened RADOS pool (a librados I/O context).
pub struct Pool {
    pub(crate) raw: ffi::RadosIoctxT,
    name: String,
    pub(crate) cluster: Arc<Handle>,
}

// SAFETY: an I/O context may be used from several threads for the calls this crate makes
// (librbd duplicates it for each image it opens); it is destroyed only in `Drop`.
unsafe impl Send for Pool {}
// SAFETY: as for `Send`.
unsafe impl Sync for Pool {}

impl Drop for Pool {
    fn drop(&mut self) {
        // SAFETY: `raw` came from `rados_ioctx_create`; images opened through it hold their own
        // duplicate, so none depends on it any more.
        unsafe { ffi::rados_ioctx_destroy(self.raw) }
    }
}

impl Pool {
    /// The pool's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The pool's space: bytes used by its objects, its byte quota (if one is set) and what the
    /// cluster has free (raw, before replication).
    pub fn usage(&self) -> Result<Usage> {
        let mut pool = ffi::RadosPoolStat::default();
        // SAFETY: `raw` is a live I/O context; `pool` is ours and written by the call.
        let rc = unsafe { ffi::rados_ioctx_pool_stat(self.raw, &mut pool) };
        check(rc.into(), || {
            format!("reading the usage of pool {:?}", self.name)
        })?;
        let mut cluster = ffi::RadosClusterStat::default();
        // SAFETY: the handle is connected; `cluster` is ours and written by the call.
        let rc = unsafe { ffi::rados_cluster_stat(self.cluster.raw, &mut cluster) };
        check(rc.into(), || "reading the cluster's usage".into())?;
        let quota = self.cluster.mon_command(&format!(
            r#"{{"prefix":"osd pool get-quota","pool":{},"format":"json"}}"#,
            json_string(&self.name)
        ))?;
        Ok(Usage {
            used_bytes: pool.num_bytes,
            quota_bytes: quota_max_bytes(&quota).filter(|&q| q > 0),
            cluster_free_bytes: cluster.kb_avail.saturating_mul(1024),
        })
    }

    /// The pool's numeric id, unique in its cluster and never reused.
    pub fn id(&self) -> i64 {
        // SAFETY: `raw` is a live I/O context.
        unsafe { ffi::rados_ioctx_get_id(self.raw) }
    }
}

#[cfg(test)]
mod tests {
    use super::{json_string, parse_uuid, quota_max_bytes};

    #[test]
    fn quota_answers_parse() {
        let a =
            r#"{"pool_name":"rbd","pool_id":1,"quota_max_objects":0,"quota_max_bytes":1048576}"#;
        assert_eq!(quota_max_bytes(a), Some(1 << 20));
        assert_eq!(quota_max_bytes(r#"{"quota_max_bytes" : 0}"#), Some(0));
        assert_eq!(quota_max_bytes("{}"), None);
        assert_eq!(json_string("a\"b"), r#""a\"b""#);
    }

    #[test]
    fn uuids_parse_with_or_without_dashes_and_nothing_else_does() {
        let want: [u8; 16] = std::array::from_fn(|i| (i as u8) * 17);
        let text = "00112233-4455-6677-8899-aabbccddeeff";
        assert_eq!(parse_uuid(text), Some(want));
        assert_eq!(parse_uuid(&text.replace('-', "")), Some(want));
        assert_eq!(parse_uuid("0011"), None);
        assert_eq!(parse_uuid(&text.replace('a', "g")), None);
    }
}
