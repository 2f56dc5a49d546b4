//! A connection to a Ceph cluster and the pools opened through it.
//!
//! Invariants: a [`Cluster`] connects with `client_mount_timeout` and the RADOS operation timeouts
//! of [`crate::limits`] set, so a missing cluster fails within seconds instead of librados's 300 s;
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
        self.set("rados_osd_op_timeout", &limits::OP_TIMEOUT_S.to_string())?;
        self.set("rados_mon_op_timeout", &limits::OP_TIMEOUT_S.to_string())?;
        // A discard must leave its whole range reading as zeros, also its unaligned edges.
        self.set("rbd_skip_partial_discard", "false")
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

    /// The pool's numeric id, unique in its cluster and never reused.
    pub fn id(&self) -> i64 {
        // SAFETY: `raw` is a live I/O context.
        unsafe { ffi::rados_ioctx_get_id(self.raw) }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_uuid;

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
