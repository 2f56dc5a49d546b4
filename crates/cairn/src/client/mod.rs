//! The CLI as an SMI-S client of the daemon: finding it (`connect`), the HTTP(S) transport with
//! a pinned certificate (`transport`), one CIM-XML session (`session`), the array as SMI-S shows
//! it (`array`), and the verbs (`verbs`, `jobs`), each one SMI-S call (docs/smis.md, "The cairn
//! CLI").
//!
//! Invariant: what SMI-S has no method for (a 512-byte block size, read-only flags, hidden
//! volumes, pool creation and growth) is refused before anything is sent, naming `--pool-file`.

mod array;
mod connect;
mod jobs;
mod session;
mod transport;
mod verbs;

pub use connect::DaemonOptions;

use anyhow::Result;

use crate::Command;

/// Runs one command against the daemon `opts` names.
pub fn run(cmd: Command, opts: &DaemonOptions, json: bool) -> Result<()> {
    verbs::check_supported(&cmd)?;
    let session = session::Session::new(connect::transport(opts)?);
    verbs::run(cmd, &session, json)
}
