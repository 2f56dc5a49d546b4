//! The one user name and password that SMI-S clients must present (BRIEF §8).
//!
//! Resolution order, per field: the environment (`CAIRN_SMIS_USER`, `CAIRN_SMIS_PASSWORD`) overrides
//! the configuration (`[auth] user/password`). The user defaults to `admin`. When no password is
//! given anywhere, a random one is generated once, stored in `DATA_DIR/credentials` (mode 0600,
//! written to a temporary file and renamed so a crash never leaves half a password) and reused on
//! every later start; only the start that generated it reports it, so the daemon prints it once.
//!
//! Invariants: the password never appears in `Debug` output or logs; comparison with what a client
//! sends is constant-time in the stored values; user and password are non-empty, bounded in length
//! and free of control characters (a user additionally has no `:`, which Basic auth cannot carry).

use std::fmt;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rand::distributions::{Alphanumeric, DistString};
use rand::rngs::OsRng;

use crate::error::{Error, ErrorKind, Result};
use crate::limits::{CREDENTIAL_BYTES_MAX, DATA_FILE_BYTES_MAX, GENERATED_PASSWORD_CHARS};

/// Environment variable overriding the configured user.
pub const ENV_USER: &str = "CAIRN_SMIS_USER";
/// Environment variable overriding the configured password.
pub const ENV_PASSWORD: &str = "CAIRN_SMIS_PASSWORD";
/// User name when none is configured.
pub const DEFAULT_USER: &str = "admin";
/// Name of the generated-credentials file inside the data directory.
pub const CREDENTIALS_FILE_NAME: &str = "credentials";

/// Where the password in effect came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialSource {
    /// Given directly to [`Credentials::new`].
    Explicit,
    /// The configuration file.
    Config,
    /// `CAIRN_SMIS_PASSWORD`.
    Environment,
    /// Generated at this start and just written to `DATA_DIR/credentials`.
    Generated,
    /// Generated at an earlier start, read back from `DATA_DIR/credentials`.
    Stored,
}

/// The user name and password of the SMI-S service.
#[derive(Clone)]
pub struct Credentials {
    user: String,
    password: String,
    source: CredentialSource,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .field("source", &self.source)
            .finish()
    }
}

impl Credentials {
    /// Credentials given directly (tests, embedding). Validated like configured ones.
    pub fn new(user: impl Into<String>, password: impl Into<String>) -> Result<Credentials> {
        let (user, password) = (user.into(), password.into());
        validate_user(&user)?;
        validate_password(&password)?;
        Ok(Credentials {
            user,
            password,
            source: CredentialSource::Explicit,
        })
    }

    /// Resolves the credentials from configuration, the process environment and `data_dir`
    /// (see the module documentation). Creates `data_dir` if a password must be generated.
    pub fn resolve(
        config_user: Option<String>,
        config_password: Option<String>,
        data_dir: &Path,
    ) -> Result<Credentials> {
        let env_user = env_var(ENV_USER)?;
        let env_password = env_var(ENV_PASSWORD)?;
        Self::resolve_from(
            config_user,
            config_password,
            env_user,
            env_password,
            data_dir,
        )
    }

    /// [`Credentials::resolve`] with the environment passed in rather than read.
    pub fn resolve_from(
        config_user: Option<String>,
        config_password: Option<String>,
        env_user: Option<String>,
        env_password: Option<String>,
        data_dir: &Path,
    ) -> Result<Credentials> {
        let user = env_user
            .or(config_user)
            .unwrap_or_else(|| DEFAULT_USER.to_owned());
        validate_user(&user)?;
        let (password, source) = match (env_password, config_password) {
            (Some(p), _) => (p, CredentialSource::Environment),
            (None, Some(p)) => (p, CredentialSource::Config),
            (None, None) => load_or_generate(data_dir)?,
        };
        validate_password(&password)?;
        Ok(Credentials {
            user,
            password,
            source,
        })
    }

    /// The user name clients must send.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// Where the password came from.
    pub fn source(&self) -> CredentialSource {
        self.source
    }

    /// The password, only if it was generated at this start, so the daemon can print it once.
    pub fn generated_password(&self) -> Option<&str> {
        (self.source == CredentialSource::Generated).then_some(self.password.as_str())
    }

    /// Whether `user` and `password` match, in time independent of where they differ.
    pub fn verify(&self, user: &[u8], password: &[u8]) -> bool {
        let user_ok = constant_time_eq(user, self.user.as_bytes());
        let password_ok = constant_time_eq(password, self.password.as_bytes());
        user_ok & password_ok
    }
}

/// Path of the generated-credentials file in `data_dir`.
pub fn credentials_path(data_dir: &Path) -> PathBuf {
    data_dir.join(CREDENTIALS_FILE_NAME)
}

/// Compares two byte strings in time that depends only on the longer length, never on where
/// (or whether) they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let len = a.len().max(b.len());
    let mut diff = u8::from(a.len() != b.len());
    for i in 0..len {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= x ^ y;
    }
    std::hint::black_box(diff) == 0
}

fn env_var(name: &str) -> Result<Option<String>> {
    match std::env::var(name) {
        Ok(v) => Ok(Some(v)),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => Err(Error::new(
            ErrorKind::Credentials,
            format!("{name} is not valid UTF-8"),
        )),
    }
}

fn validate_user(user: &str) -> Result<()> {
    validate_common("user name", user)?;
    if user.contains(':') {
        return Err(Error::new(ErrorKind::Credentials, "User name contains ':'"));
    }
    Ok(())
}

fn validate_password(password: &str) -> Result<()> {
    validate_common("password", password)
}

fn validate_common(what: &str, value: &str) -> Result<()> {
    if value.is_empty() {
        return Err(Error::new(ErrorKind::Credentials, format!("Empty {what}")));
    }
    if value.len() > CREDENTIAL_BYTES_MAX {
        return Err(Error::new(
            ErrorKind::Credentials,
            format!("The {what} is longer than {CREDENTIAL_BYTES_MAX} bytes"),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(Error::new(
            ErrorKind::Credentials,
            format!("The {what} contains control characters"),
        ));
    }
    Ok(())
}

/// Reads the stored password, or generates, stores and returns a new one.
fn load_or_generate(data_dir: &Path) -> Result<(String, CredentialSource)> {
    let path = credentials_path(data_dir);
    match read_stored(&path)? {
        Some(password) => Ok((password, CredentialSource::Stored)),
        None => {
            let password = Alphanumeric.sample_string(&mut OsRng, GENERATED_PASSWORD_CHARS);
            write_private_file(data_dir, &path, format!("{password}\n").as_bytes())?;
            Ok((password, CredentialSource::Generated))
        }
    }
}

/// The password stored in `path` (first line, trailing newline stripped), `None` if no file.
fn read_stored(path: &Path) -> Result<Option<String>> {
    let file = match fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error("Cannot open", path, e)),
    };
    let mode = file
        .metadata()
        .map_err(|e| io_error("Cannot stat", path, e))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        tracing::warn!(path = %path.display(), "credentials file is readable by group or others");
    }
    let mut text = String::new();
    file.take(DATA_FILE_BYTES_MAX)
        .read_to_string(&mut text)
        .map_err(|e| io_error("Cannot read", path, e))?;
    let password = text.lines().next().unwrap_or("").to_owned();
    if password.is_empty() {
        return Err(Error::new(
            ErrorKind::Credentials,
            format!(
                "{} holds no password; delete it to generate a new one",
                path.display()
            ),
        ));
    }
    Ok(Some(password))
}

/// Writes `bytes` to `path` with mode 0600 via a temporary file in the same directory and a rename
/// (also used by the daemon for its TLS key).
pub fn write_private_file(dir: &Path, path: &Path, bytes: &[u8]) -> Result<()> {
    fs::create_dir_all(dir).map_err(|e| io_error("Cannot create", dir, e))?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| io_error("Cannot create", &tmp, e))?;
    // The mode given to open() only applies to a new file; a stale temporary file keeps its own.
    file.set_permissions(fs::Permissions::from_mode(0o600))
        .map_err(|e| io_error("Cannot set permissions of", &tmp, e))?;
    file.write_all(bytes)
        .map_err(|e| io_error("Cannot write", &tmp, e))?;
    file.sync_all()
        .map_err(|e| io_error("Cannot sync", &tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| io_error("Cannot rename", &tmp, e))?;
    Ok(())
}

pub(crate) fn io_error(what: &str, path: &Path, e: std::io::Error) -> Error {
    Error::with_source(ErrorKind::Io, format!("{what} {}", path.display()), e)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(
        cu: Option<&str>,
        cp: Option<&str>,
        eu: Option<&str>,
        ep: Option<&str>,
        dir: &Path,
    ) -> Result<Credentials> {
        let s = |v: Option<&str>| v.map(str::to_owned);
        Credentials::resolve_from(s(cu), s(cp), s(eu), s(ep), dir)
    }

    #[test]
    fn environment_overrides_config() {
        let dir = tempfile::tempdir().unwrap();
        let c = resolve(Some("cu"), Some("cp"), Some("eu"), Some("ep"), dir.path()).unwrap();
        assert_eq!(c.user(), "eu");
        assert_eq!(c.source(), CredentialSource::Environment);
        assert!(c.verify(b"eu", b"ep"));
        assert!(!c.verify(b"cu", b"cp"));
        let c = resolve(Some("cu"), Some("cp"), None, Some("ep"), dir.path()).unwrap();
        assert!(c.verify(b"cu", b"ep"));
        let c = resolve(Some("cu"), Some("cp"), Some("eu"), None, dir.path()).unwrap();
        assert!(c.verify(b"eu", b"cp"));
        assert_eq!(c.source(), CredentialSource::Config);
        assert!(c.generated_password().is_none());
        assert!(
            !credentials_path(dir.path()).exists(),
            "no file without need"
        );
    }

    #[test]
    fn password_without_user_means_admin() {
        let dir = tempfile::tempdir().unwrap();
        let c = resolve(None, Some("pw"), None, None, dir.path()).unwrap();
        assert_eq!(c.user(), DEFAULT_USER);
        assert!(c.verify(b"admin", b"pw"));
    }

    #[test]
    fn generated_once_then_reused() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let first = resolve(None, None, None, None, &data).unwrap();
        assert_eq!(first.source(), CredentialSource::Generated);
        let password = first.generated_password().unwrap().to_owned();
        assert_eq!(password.len(), GENERATED_PASSWORD_CHARS);
        assert!(password.chars().all(|c| c.is_ascii_alphanumeric()));
        assert!(first.verify(b"admin", password.as_bytes()));
        let path = credentials_path(&data);
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let second = resolve(None, None, None, None, &data).unwrap();
        assert_eq!(second.source(), CredentialSource::Stored);
        assert!(second.generated_password().is_none());
        assert!(second.verify(b"admin", password.as_bytes()));
        let other = resolve(None, None, None, None, dir.path().join("other").as_path()).unwrap();
        assert!(
            !other.verify(b"admin", password.as_bytes()),
            "each data dir its own password"
        );
    }

    #[test]
    fn stored_password_with_configured_user() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(credentials_path(dir.path()), "s3cret\n").unwrap();
        let c = resolve(Some("ops"), None, None, None, dir.path()).unwrap();
        assert!(c.verify(b"ops", b"s3cret"));
        assert_eq!(c.source(), CredentialSource::Stored);
    }

    #[test]
    fn empty_stored_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(credentials_path(dir.path()), "\n").unwrap();
        let e = resolve(None, None, None, None, dir.path()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Credentials);
    }

    #[test]
    fn invalid_values_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        for (u, p) in [
            ("a:b", "p"),
            ("", "p"),
            ("u", ""),
            ("u", "p\n"),
            ("u\t", "p"),
        ] {
            let e = resolve(Some(u), Some(p), None, None, dir.path()).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Credentials, "{u:?} {p:?}");
        }
        let long = "x".repeat(CREDENTIAL_BYTES_MAX + 1);
        assert!(Credentials::new("u", long).is_err());
    }

    #[test]
    fn debug_hides_password() {
        let c = Credentials::new("admin", "hunter2-secret").unwrap();
        let text = format!("{c:?}");
        assert!(text.contains("admin"));
        assert!(!text.contains("hunter2"));
    }

    #[test]
    fn constant_time_eq_cases() {
        assert!(constant_time_eq(b"", b""));
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(!constant_time_eq(b"ab", b"abc"));
        assert!(!constant_time_eq(b"abc\0", b"abc"));
        assert!(!constant_time_eq(b"", b"a"));
    }
}
